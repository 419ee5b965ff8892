//! `labelscope weights convert` → `labelscope classify` / `labelscope gradcam`
//! end to end against the PyTorch peer pipeline (Pillow decoding, torchvision
//! Resize/CenterCrop/ToTensor/Normalize, a tiny torchvision-layout ResNet
//! saved with `torch.save`, GradCAM at layer4 via autograd), from the
//! committed fixture made by `tests/reference/make_classify_fixture.py`; then
//! `labelscope eval` on what `classify` wrote; and bad input.

mod common;

use std::path::{Path, PathBuf};

use common::{labelscope, labelscope_err, labelscope_ok, repo_root};

fn fixture() -> PathBuf {
    repo_root().join("crates/cli/tests/fixtures/classify")
}

/// The fixture's `model.pth` converted by `labelscope weights convert` (once per test process).
fn weights() -> PathBuf {
    static ONCE: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tiny_resnet.safetensors");
        let f = fixture();
        labelscope_ok(&[
            "weights", "convert", "--config", s(&f.join("config.json")), "--input", s(&f.join("model.pth")),
            "--output", s(&out),
        ]);
        (dir, out)
    })
    .1
    .clone()
}

fn npy_f32(p: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = labelscope_core::npy::read_npy(p).unwrap();
    (a.shape.clone(), a.to_f32_vec(p, "array").unwrap())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn classify_matches_torchvision_pipeline_and_feeds_eval() {
    let out = tempfile::tempdir().unwrap();
    let images = fixture().join("images");
    labelscope_ok(&[
        "classify", "--model", "resnet", "--weights", s(&weights()), "--images", s(&images), "--out",
        s(out.path()), "--recipe", "resize72-crop64", "--topk", "5", "--logits", "f32", "--features", "f16", "-q",
    ]);
    let names: Vec<String> =
        std::fs::read_to_string(fixture().join("names.txt")).unwrap().lines().map(String::from).collect();
    let listed: Vec<String> =
        std::fs::read_to_string(out.path().join("images.txt")).unwrap().lines().map(String::from).collect();
    assert_eq!(listed, names, "row order");
    let (shape, got) = npy_f32(&out.path().join("logits.npy"));
    let (eshape, want) = npy_f32(&fixture().join("logits.npy"));
    assert_eq!(shape, eshape);
    let d = max_diff(&got, &want);
    eprintln!("classify logits vs torchvision+torch: max |diff| = {d:.3e}");
    assert!(d <= 1e-4, "logits differ from the PyTorch pipeline by {d}");
    // Top-5 from the torch logits, computed here.
    let top = labelscope_core::npy::read_npy(&out.path().join("top5.npy")).unwrap();
    assert_eq!(top.shape, vec![names.len(), 5]);
    let top = top.to_f32_vec(&out.path().join("top5.npy"), "top5").unwrap();
    for (i, row) in want.chunks(10).enumerate() {
        let mut idx: Vec<usize> = (0..10).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let got: Vec<usize> = top[i * 5..(i + 1) * 5].iter().map(|&v| v as usize).collect();
        assert_eq!(got, idx[..5], "top-5 of {}", names[i]);
    }
    let (fshape, _) = npy_f32(&out.path().join("features.npy"));
    assert_eq!(fshape, vec![names.len(), 128]);
    // eval reads the outputs back: labels = torch's top-1 for the first three images, class 0 for the rest.
    let mut labels = serde_json::Map::new();
    let mut expect_correct = 0;
    for (i, (name, row)) in names.iter().zip(want.chunks(10)).enumerate() {
        let arg = (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        let label = if i < 3 { arg } else { 0 };
        expect_correct += usize::from(label == arg);
        labels.insert(name.clone(), serde_json::json!([label]));
    }
    let lp = out.path().join("labels.json");
    std::fs::write(&lp, serde_json::Value::Object(labels).to_string()).unwrap();
    let json = labelscope_ok(&[
        "eval", "--labels", s(&lp), "--predictions", s(&out.path().join("top5.npy")), "--images",
        s(&out.path().join("images.txt")), "--json", "--no-breakdowns",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let row = v["rows"].as_array().unwrap().iter().find(|r| r["metric"] == "top1").expect("a top1 row");
    assert_eq!(row["correct"].as_u64(), Some(expect_correct as u64), "{row}");
    assert_eq!(row["total"].as_u64(), Some(names.len() as u64), "{row}");
}

#[test]
fn gradcam_matches_torch_autograd() {
    let out = tempfile::tempdir().unwrap();
    labelscope_ok(&[
        "gradcam", "--model", "resnet", "--weights", s(&weights()), "--images", s(&fixture().join("images")),
        "--out", s(out.path()), "--recipe", "resize72-crop64", "--overlay", "--batch", "2", "-q",
    ]);
    let names: Vec<String> =
        std::fs::read_to_string(fixture().join("names.txt")).unwrap().lines().map(String::from).collect();
    let (_, want) = npy_f32(&fixture().join("cam.npy"));
    let mut worst = 0f32;
    for (i, name) in names.iter().enumerate() {
        let id = labelscope_core::ids::join_key(name).to_string();
        let (shape, got) = npy_f32(&out.path().join(format!("{id}.npy")));
        assert_eq!(shape, vec![64, 64]);
        worst = worst.max(max_diff(&got, &want[i * 4096..(i + 1) * 4096]));
        let png = image::open(out.path().join(format!("{id}.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (64, 64));
    }
    eprintln!("gradcam maps vs torch: max |diff| = {worst:.3e}");
    assert!(worst <= 1e-4, "GradCAM maps differ from torch by {worst}");
    let tsv = std::fs::read_to_string(out.path().join("cams.tsv")).unwrap();
    assert_eq!(tsv.lines().count(), names.len() + 1);
    // A fixed class (torch's top-1 of every image but b_grey): same maps; the logits in
    // cams.tsv come from GradCAM's own forward pass and equal torch's.
    let fixed = tempfile::tempdir().unwrap();
    labelscope_ok(&[
        "gradcam", "--model", "resnet", "--weights", s(&weights()), "--images", s(&fixture().join("images")),
        "--out", s(fixed.path()), "--recipe", "resize72-crop64", "--class", "1", "-q",
    ]);
    let (_, logits) = npy_f32(&fixture().join("logits.npy"));
    let tsv_fixed = std::fs::read_to_string(fixed.path().join("cams.tsv")).unwrap();
    for (i, (name, line)) in names.iter().zip(tsv_fixed.lines().skip(1)).enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!((cols[0], cols[1]), (name.as_str(), "1"), "{line}");
        let logit: f32 = cols[2].parse().unwrap();
        assert!((logit - logits[i * 10 + 1]).abs() <= 1e-4, "{name}: logit {logit} vs torch {}", logits[i * 10 + 1]);
        let top1 = (0..10).max_by(|&a, &b| logits[i * 10 + a].total_cmp(&logits[i * 10 + b])).unwrap();
        if top1 == 1 {
            let id = labelscope_core::ids::join_key(name).to_string();
            let (_, got) = npy_f32(&fixed.path().join(format!("{id}.npy")));
            let d = max_diff(&got, &want[i * 4096..(i + 1) * 4096]);
            assert!(d <= 1e-4, "{name}: fixed-class GradCAM differs from torch by {d}");
        }
    }
    // Input-gradient saliency: a map in [0, 1] with both ends reached.
    let sal = tempfile::tempdir().unwrap();
    labelscope_ok(&[
        "gradcam", "--model", "resnet", "--weights", s(&weights()), "--images", s(&fixture().join("images")),
        "--out", s(sal.path()), "--recipe", "resize72-crop64", "--method", "input-gradient", "--class", "3", "-q",
    ]);
    let (_, m) = npy_f32(&sal.path().join("a_rgb.npy"));
    let (mn, mx) = m.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(mn == 0.0 && (mx - 1.0).abs() < 1e-6, "{mn} {mx}");
    assert!(std::fs::read_to_string(sal.path().join("cams.tsv")).unwrap().lines().skip(1).all(|l| l.split('\t').nth(1) == Some("3")));
}

#[test]
fn bad_images_are_named_and_skippable() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = dir.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    std::fs::copy(fixture().join("images/a_rgb.png"), imgs.join("a.png")).unwrap();
    let full = std::fs::read(fixture().join("images/e_photo.jpg")).unwrap();
    std::fs::write(imgs.join("b_truncated.jpg"), &full[..full.len() / 3]).unwrap();
    std::fs::write(imgs.join("c_garbage.png"), b"this is not a png").unwrap();
    let out = dir.path().join("out");
    let w = weights();
    let base = [
        "classify", "--model", "resnet", "--weights", s(&w), "--images", s(&imgs), "--out", s(&out),
        "--recipe", "resize72-crop64", "-q",
    ];
    let err = labelscope_err(&base);
    assert!(err.contains("b_truncated.jpg") || err.contains("c_garbage.png"), "{err}");
    assert!(!out.join("images.txt").exists() && !out.join("top5.npy").exists(), "no output without --skip-bad");
    let mut args = base.to_vec();
    args.push("--skip-bad");
    let o = labelscope(&args);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2 images could not be read"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("images.txt")).unwrap(), "a.png\n");
    let skipped = std::fs::read_to_string(out.join("skipped.tsv")).unwrap();
    assert!(skipped.contains("b_truncated.jpg") && skipped.contains("c_garbage.png"), "{skipped}");
}

#[test]
fn wrong_weights_and_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = fixture().join("images");
    // DINO ViT weights given as a ResNet.
    let vit = repo_root().join("crates/nn/tests/fixtures/vit_torch/model.safetensors");
    let err = labelscope_err(&["classify", "--model", "resnet50", "--weights", s(&vit), "--images", s(&imgs), "--out", s(dir.path())]);
    assert!(err.contains("model.safetensors") && err.contains("conv1"), "{err}");
    // The tiny ResNet is not a ResNet-50.
    let err = labelscope_err(&["classify", "--model", "resnet50", "--weights", s(&weights()), "--images", s(&imgs), "--out", s(dir.path())]);
    assert!(err.contains("expected ResNet-50"), "{err}");
    let err = labelscope_err(&["classify", "--model", "alexnet", "--weights", s(&weights()), "--images", s(&imgs), "--out", s(dir.path())]);
    assert!(err.contains("unknown classifier") && err.contains("resnet50"), "{err}");
    let err = labelscope_err(&[
        "classify", "--model", "resnet", "--weights", s(&weights()), "--images", s(&imgs), "--out", s(dir.path()),
        "--recipe", "resize256-cropx",
    ]);
    assert!(err.contains("recipe"), "{err}");
    let err = labelscope_err(&[
        "classify", "--model", "resnet", "--weights", s(&weights()), "--images", s(&imgs), "--out", s(dir.path()),
        "--device", "cuda",
    ]);
    assert!(err.contains("without CUDA") || err.contains("CUDA"), "{err}");
    let err = labelscope_err(&[
        "classify", "--model", "resnet", "--weights", s(&weights()), "--images", s(&imgs), "--out", s(dir.path()),
        "--precision", "f16",
    ]);
    assert!(err.contains("f32 only"), "{err}");
    let err = labelscope_err(&[
        "gradcam", "--model", "resnet", "--weights", s(&weights()), "--images", s(&imgs), "--out", s(dir.path()),
        "--class", "10",
    ]);
    assert!(err.contains("--class"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written on refused runs");
}

/// `bench-preprocess` in both modes on the fixture images: the streaming run reads every pass
/// (its checksum is the passes' sum, 3 × one fresh loader's), times what follows the batch that
/// ends the warm-up pass, and refuses a run with nothing left to time.
#[test]
fn bench_preprocess_streams_all_passes() {
    let imgs = fixture().join("images");
    let dir = imgs.to_str().unwrap();
    let run = |batch: &str, extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["bench-preprocess", "--threads", "1", "--repeats", "2", "--batch", batch];
        args.extend_from_slice(extra);
        args.push(dir);
        serde_json::from_str(labelscope_ok(&args).trim()).unwrap()
    };
    // One image per batch: the checksum (every 97th value of each batch) sees the same values.
    let fresh = run("1", &["--fresh-loader"]);
    let stream = run("1", &[]);
    assert_eq!((fresh["images"].as_u64(), stream["images"].as_u64()), (Some(5), Some(10)));
    let (f, s) = (fresh["checksum"].as_f64().unwrap(), stream["checksum"].as_f64().unwrap());
    assert!(f.abs() > 1.0 && (s - 3.0 * f).abs() <= 1e-9 * s.abs(), "stream {s}, fresh {f}");
    assert!(stream["images_per_s"].as_f64().unwrap() > 0.0);
    // Batches of 2 over 15 images: the warm-up pass ends in the third batch (image 6).
    assert_eq!(run("2", &[])["images"], 15 - 6);
    let err = labelscope_err(&["bench-preprocess", "--threads", "1", "--repeats", "1", "--batch", "32", dir]);
    assert!(err.contains("too few images after the warm-up pass"), "{err}");
}

/// `bench-vit` with random weights: a tiny ViT in f32 and f16 on the CPU, reported with its
/// settings; a GPU on a build without CUDA, half precision for the ResNet's CPU kernels and a bad
/// architecture are refused.
#[test]
fn bench_vit_runs_on_random_weights() {
    let tiny = ["bench-vit", "--arch", "24:1:4:4", "--size", "32", "--batch", "2", "--repeats", "1"];
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = tiny.to_vec();
        args.extend_from_slice(extra);
        serde_json::from_str(labelscope_ok(&args).trim()).unwrap()
    };
    let o = run(&[]);
    assert_eq!((o["device"].as_str(), o["precision"].as_str(), o["batch"].as_u64()), (Some("cpu"), Some("f32"), Some(2)));
    assert!(o["images_per_s"].as_f64().unwrap() > 0.0, "{o}");
    assert_eq!(run(&["--precision", "f16"])["precision"], "f16");
    let mut cuda = tiny.to_vec();
    cuda.extend_from_slice(&["--device", "cuda"]);
    if !cfg!(feature = "cuda") {
        assert!(labelscope_err(&cuda).contains("without CUDA"));
    }
    let err = labelscope_err(&["bench-vit", "--model", "resnet50", "--size", "32", "--repeats", "1", "--precision", "f16"]);
    assert!(err.contains("f32 only"), "{err}");
    let err = labelscope_err(&["bench-vit", "--arch", "24:1:4", "--repeats", "1"]);
    assert!(err.contains("--arch"), "{err}");
}
