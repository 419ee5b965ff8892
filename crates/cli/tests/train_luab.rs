//! `labelscope train luab` end to end on generated PNGs: outputs, the
//! per-epoch log, resume, and named errors. (That the point head learns is
//! checked in crates/nn/tests/multitask.rs.)

use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_labelscope")).args(args).output().unwrap()
}

/// `train <cmd>` on the generated data of `d` into `out`, with the common options and `extra`.
fn train_args(d: &Path, cmd: &str, out: &str, extra: &[&str]) -> Vec<String> {
    let p = |s: &str| d.join(s).display().to_string();
    let mut v: Vec<String> = vec!["train".into(), cmd.into()];
    for (flag, value) in [
        ("--images", p("images")),
        ("--labels", p("labels.csv")),
        ("--classes", p("classes.txt")),
        ("--size", "32".into()),
        ("--batch", "8".into()),
        ("--out", p(out)),
    ] {
        v.push(flag.into());
        v.push(value);
    }
    v.push("-q".into());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run_all(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_labelscope")).args(args).output().unwrap()
}

fn data(d: &Path) {
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let (mut labels, mut points) = (String::from("image,class\n"), String::from("image,class,x,y\n"));
    for i in 0..24u32 {
        let (cx, cy) = (6 + (i * 7) % 20, 6 + (i * 11) % 20);
        let img = image::RgbImage::from_fn(32, 32, |x, y| {
            let on = x.abs_diff(cx) < 4 && y.abs_diff(cy) < 4;
            if on {
                if i % 2 == 0 {
                    image::Rgb([230, 20, 20])
                } else {
                    image::Rgb([20, 20, 230])
                }
            } else {
                image::Rgb([60, 60, 60])
            }
        });
        img.save(images.join(format!("g{i}.png"))).unwrap();
        labels.push_str(&format!("g{i},c{}\n", i % 2));
        if i % 4 != 3 {
            points.push_str(&format!("g{i},c{},{},{}\n", i % 2, cx as f64 / 32.0, cy as f64 / 32.0));
        }
    }
    std::fs::write(d.join("labels.csv"), labels).unwrap();
    std::fs::write(d.join("points.csv"), points).unwrap();
    std::fs::write(d.join("classes.txt"), "c0\nc1\n").unwrap();
}

#[test]
fn luab_runs_logs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    data(d);
    let p = |s: &str| d.join(s).display().to_string();
    let points = p("points.csv");
    let base = |epochs: &str| {
        train_args(d, "luab", "out", &["--points", &points, "--epochs", epochs, "--val-fraction", "0.25"])
    };
    let args = base("2");
    let o = run_all(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(d.join("out/metrics.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2);
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("out/summary.json")).unwrap()).unwrap();
    assert_eq!((s["train_images"].as_u64(), s["val_images"].as_u64()), (Some(18), Some(6)));
    assert!(s["last"]["val_localisation_error"].as_f64().unwrap() >= 0.0);
    for f in ["loss.svg", "localisation.svg", "multitask.safetensors"] {
        assert!(d.join("out").join(f).exists(), "{f}");
    }
    // The same folder again: refused without --resume; with it, the run continues to 3 epochs.
    let o = run_all(&args);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("resume"));
    let mut args = base("3");
    args.push("--resume".into());
    let o = run_all(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(d.join("out/metrics.jsonl")).unwrap();
    let epochs: Vec<u64> =
        log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, vec![0, 1, 2]);
    // A point outside the image is named.
    std::fs::write(d.join("points.csv"), "image,class,x,y\ng0,c0,1.5,0.2\n").unwrap();
    let o = run_all(&train_args(d, "luab", "bad", &["--points", &points, "--epochs", "1"]));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("points.csv row 2") && e.contains("outside [0, 1]"), "{e}");
}

#[test]
fn bce_on_relabels_runs_and_checks_its_targets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    data(d);
    // Soft relabels: each image also half-shows the other class.
    let mut ml = String::from("image,class,p\n");
    for i in 0..24 {
        ml.push_str(&format!("g{i},c{},1\ng{i},c{},0.5\n", i % 2, (i + 1) % 2));
    }
    std::fs::write(d.join("ml.csv"), ml).unwrap();
    let p = |s: &str| d.join(s).display().to_string();
    let args = |ml: &str, out: &str| {
        let ml = p(ml);
        train_args(
            d,
            "bce",
            out,
            &[
                "--multilabel",
                &ml,
                "--epochs",
                "2",
                "--smoothing",
                "0.05,0.95",
                "--bias-init",
                "--no-head-decay",
                "--lambda",
                "0",
            ],
        )
    };
    let a = args("ml.csv", "bce");
    let o = run_all(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("bce/summary.json")).unwrap()).unwrap();
    assert_eq!(s["config"]["smoothing"], serde_json::json!([0.05, 0.95]));
    assert_eq!((s["config"]["bias_init"].as_bool(), s["config"]["head_decay"].as_bool()), (Some(true), Some(false)));
    assert!(s["last"]["ce"].as_f64().unwrap() > 0.0);
    std::fs::write(d.join("bad.csv"), "image,class,p\ng0,c1,2\n").unwrap();
    let a = args("bad.csv", "bad");
    let o = run_all(&a);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("bad.csv row 2") && e.contains("outside [0, 1]"), "{e}");
    // train bce without targets, train luab without points: refused.
    let o = run(&["train", "bce", "--images", &p("images"), "--labels", &p("labels.csv"), "--out", &p("x")]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--multilabel"));
}

#[test]
fn corm_runs_with_masks_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    data(d);
    let masks = d.join("masks");
    std::fs::create_dir_all(&masks).unwrap();
    for i in 0..24u32 {
        let (cx, cy) = (6 + (i * 7) % 20, 6 + (i * 11) % 20);
        image::GrayImage::from_fn(32, 32, |x, y| {
            image::Luma([if x.abs_diff(cx) < 4 && y.abs_diff(cy) < 4 { 255 } else { 0 }])
        })
        .save(masks.join(format!("g{i}.png")))
        .unwrap();
    }
    let p = |s: &str| d.join(s).display().to_string();
    let m = p("masks");
    let args = |out: &str| {
        train_args(
            d,
            "corm",
            out,
            &[
                "--masks",
                &m,
                "--epochs",
                "1",
                "--corm-p",
                "1",
                "--corm-sigma",
                "0.5",
                "--corm-penalty",
                "0.1",
                "--lambda",
                "0",
            ],
        )
    };
    let a = args("corm");
    let o = run_all(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("corm/summary.json")).unwrap()).unwrap();
    assert_eq!(s["config"]["corm"]["penalty"], 0.1);
    assert!(s["last"]["loss"].as_f64().unwrap().is_finite());
    std::fs::remove_file(masks.join("g5.png")).unwrap();
    let a = args("corm2");
    let o = run_all(&a);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("no mask for g5"), "{e}");
}

#[test]
fn a_resnet_backbone_from_torchvision_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    data(d);
    let w = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nn/tests/fixtures/resnet_torch/model.safetensors");
    let w = w.display().to_string();
    let points = d.join("points.csv").display().to_string();
    let o = run_all(&train_args(
        d,
        "luab",
        "r",
        &["--points", &points, "--epochs", "1", "--backbone", "resnet", "--backbone-weights", &w],
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("r/summary.json")).unwrap()).unwrap();
    assert_eq!(s["config"]["backbone"]["ResNet"]["blocks"], serde_json::json!([2, 1, 2, 1]));
    let o = run_all(&train_args(
        d,
        "luab",
        "r2",
        &["--points", &points, "--backbone", "resnet50", "--backbone-weights", &w],
    ));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("not a ResNet-50"), "{e}");
    let o = run_all(&train_args(d, "luab", "r3", &["--points", &points, "--backbone-weights", &w]));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("a ResNet or ViT --backbone"));
}

#[test]
fn a_vit_backbone_and_per_class_points() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    data(d);
    let p = |s: &str| d.join(s).display().to_string();
    // Multi-label targets and a point per class present: both classes on every even image.
    let (mut ml, mut pc) = (String::from("image,class,p\n"), String::from("image,class,x,y\n"));
    for i in 0..24 {
        ml.push_str(&format!("g{i},c{},1\n", i % 2));
        pc.push_str(&format!("g{i},c{},0.25,0.5\n", i % 2));
        if i % 2 == 0 {
            ml.push_str(&format!("g{i},c1,1\n"));
            pc.push_str(&format!("g{i},c1,0.75,0.5\n"));
        }
    }
    std::fs::write(d.join("ml.csv"), ml).unwrap();
    std::fs::write(d.join("pc.csv"), &pc).unwrap();
    let (ml, pcp) = (p("ml.csv"), p("pc.csv"));
    let run_vit = |out: &str, backbone: &str, extra: &[&str]| {
        let mut a: Vec<&str> = vec!["--multilabel", &ml, "--points", &pcp, "--epochs", "1", "--val-fraction", "0"];
        a.extend(["--backbone", backbone]);
        a.extend(extra);
        run_all(&train_args(d, "bce", out, &a))
    };
    let o = run_vit("v", "vit:8,16,1,2", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("v/summary.json")).unwrap()).unwrap();
    assert_eq!(s["per_class_points"], serde_json::json!(true));
    assert_eq!(s["train_points"].as_u64(), Some(36), "24 images, 12 with two points");
    assert_eq!(s["config"]["backbone"]["Vit"]["patch"].as_u64(), Some(8));
    // Started from the PyTorch-checked fixture ViT (4 px patches, D 32, 2 blocks, 4 heads; its
    // 4 x 4 position grid resampled to 8 x 8).
    let w = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nn/tests/fixtures/vit_torch/model.safetensors");
    let w = w.display().to_string();
    let o = run_vit("vw", "vit:4,32,2,4", &["--backbone-weights", &w]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run_vit("vw2", "vit:4,32,3,4", &["--backbone-weights", &w]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("blocks.2"), "{e}");
    // Bad specifications and inputs are named.
    let o = run_vit("x1", "vit:8,15,1,2", &[]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("HEADS divides DIM"));
    let o = run_vit("x2", "vit:12,24,1,2", &[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("multiple of 12"), "{e}");
    let o = run_vit("x3", "vitt", &[]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("vit:PATCH,DIM,DEPTH,HEADS"));
    std::fs::write(d.join("pc.csv"), format!("{pc}g3,c0,0.1,0.1\ng3,c0,0.2,0.2\n")).unwrap();
    let o = run_vit("x4", "small", &[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("pc.csv row 39") && e.contains("second point") && e.contains("row 38"),
        "{e}"
    );
    std::fs::write(d.join("pc.csv"), "image,class,x,y\ng3,zebra,0.1,0.1\n").unwrap();
    let o = run_vit("x5", "small", &[]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("pc.csv row 2") && e.contains("zebra"), "{e}");
}
