//! `labelscope relabel report` and `labelscope relabel query` end to end.
//!
//! The report runs on the hand-made fixtures of the relabel crate
//! (crates/relabel/tests/fixtures/quality; the numbers are worked out in
//! crates/relabel/tests/quality_report.rs): 7 images compared, 1 exact
//! match (1/7 = 14.29%), micro P/R/F1 = 5/8, 5/9, 10/17, macro 0.5,
//! 0.3125, (6/7 + 2/3)/4 = 0.3810; cat: support 4, 3 produced, tp 3,
//! fp 0, fn 1, P 1, R 0.75, F1 6/7. Gallery order: img4, img6, img5, img2, img3.
//!
//! The query runs on a hand-written cache (dim 3, 2×2 grid of 224×224 with
//! cells 2·e0, 2·e1, 2·e2, 2·e2) and a linear head W = I, b = (0, 0, 0.5):
//! box 0,0,112,112 pools cell (0,0) exactly → logits (2, 0, 0.5).

#[path = "support/region_model.rs"]
mod region_model;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use labelscope_core::rle::Rle;
use labelscope_relabel::output::{JsonImage, JsonLabel, JsonOutput, JsonProposal};
use region_model::{write_cache, write_head};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_labelscope"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../relabel/tests/fixtures/quality")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn report_on_hand_made_labels() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    image::RgbImage::from_pixel(8, 6, image::Rgb([90, 90, 90])).save(images.join("img4.png")).unwrap();
    // Masks for img4 (car = columns 0..4); img6 has no image file.
    let mask: Vec<bool> = (0..6).flat_map(|_| (0..8).map(|x| x < 4)).collect();
    let json = JsonOutput {
        images: vec![JsonImage {
            file: "img4.JPEG".into(),
            original: Some(2),
            width: 8,
            height: 6,
            proposals: vec![JsonProposal { id: 0, mask: Rle::encode(&mask, 6, 8).unwrap().to_coco() }],
            labels: vec![JsonLabel {
                class: 2,
                name: None,
                p: 0.95,
                proposals: vec![0],
                original: true,
                global: false,
            }],
        }],
    };
    let masks = dir.path().join("produced.json");
    std::fs::write(&masks, serde_json::to_string(&json).unwrap()).unwrap();
    let out = dir.path().join("report");
    let o = run(&[
        "relabel",
        "report",
        "--labels",
        s(&fixtures().join("produced.tsv")),
        "--reference",
        s(&fixtures().join("reference.json")),
        "--classes",
        s(&fixtures().join("classes.txt")),
        "--images",
        s(&images),
        "--proposals",
        s(&masks),
        "--gallery",
        "2",
        "--out",
        s(&out),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    for want in [
        "7 images compared (1 only in A, 1 only in B)",
        "| exact match | 1 | 14.29% |",
        "| micro (tp 5, fp 3, fn 4) | 0.6250 | 0.5556 | 0.5882 |",
        "| macro | 0.5000 | 0.3125 | 0.3810 |",
        "| 0 | cat | 4 | 3 | 3 | 0 | 1 | 1.0000 | 0.7500 | 0.8571 |",
        "| 2 | car | 0 | 2 | 0 | 2 | 0 | 0.0000 | - | 0.0000 |",
        "5 disagreeing images, 2 in the gallery.",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("data-image=\"img4.JPEG\"") && html.contains("data-image=\"img6.JPEG\""));
    assert!(!html.contains("data-image=\"img5.JPEG\""));
    assert!(html.contains("not found in"));
    assert_eq!(html.matches("data:image/png;base64,").count(), 1);
    assert!(out.join("gallery/000-img4.png").exists());
    let csv = std::fs::read_to_string(out.join("per_class.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(out.join("summary.json").exists() && out.join("per_class.md").exists());
}

#[test]
fn report_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let o = run(&[
        "relabel",
        "report",
        "--labels",
        s(&fixtures().join("produced.tsv")),
        "--reference",
        s(&dir.path().join("missing.json")),
        "--out",
        s(&out),
    ]);
    let (_, e) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(e.contains("missing.json"), "{e}");
    let o = run(&[
        "relabel",
        "report",
        "--labels",
        s(&fixtures().join("produced.tsv")),
        "--reference",
        s(&fixtures().join("reference.json")),
        "--tau",
        "1.5",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("--tau 1.5"));
    // No shared id.
    let other = dir.path().join("other.json");
    std::fs::write(&other, "{\"zzz.jpg\": [1]}").unwrap();
    let o = run(&[
        "relabel",
        "report",
        "--labels",
        s(&fixtures().join("produced.tsv")),
        "--reference",
        s(&other),
        "--classes",
        s(&fixtures().join("classes.txt")),
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("share no image id"), "{}", text(&o).1);
}

#[test]
fn query_closed_form_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    write_cache(&cache);
    let head = dir.path().join("head.safetensors");
    write_head(&head, 3);
    let classes = fixtures().join("classes.txt");
    let base = ["relabel", "query", "--cache", s(&cache), "--head", s(&head), "--classes", s(&classes)];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        run(&v)
    };

    let o = with(&["--image", "a", "--box", "0,0,112,112", "--top", "3", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // softmax(2, 0, 0.5): e^2 / (e^2 + 1 + e^0.5), ...
    let z = [2.0f64, 0.0, 0.5];
    let sum: f64 = z.iter().map(|x| x.exp()).sum();
    let want = [(0u64, "cat", z[0].exp() / sum), (2, "car", z[2].exp() / sum), (1, "dog", z[1].exp() / sum)];
    let rows = v["classes"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (r, (c, n, p)) in rows.iter().zip(want) {
        assert_eq!(r["class"].as_u64(), Some(c));
        assert_eq!(r["name"], n);
        assert!((r["p"].as_f64().unwrap() - p).abs() < 1e-6, "{r} vs {p}");
    }
    assert_eq!(v["geometry"]["image_w"], 224);

    // Text table; the same cell given in original pixels of a 448x448 image
    // (resize256-crop224 of a square: resized 256, crop 16..240 → grid on 28..420).
    let o = with(&["--image", "a", "--box", "28,28,73,73", "--image-size", "448,448", "--top", "1"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains(&format!("{:>8.4} {:>6}  cat", want[0].2, 0)), "{out}");

    // The pipeline's images.jsonl gives the same geometry without --image-size.
    std::fs::write(
        cache.join("images.jsonl"),
        "{\"id\":\"a\",\"file\":\"a.jpg\",\"width\":448,\"height\":448,\"x0\":28,\"y0\":28,\"x1\":420,\"y1\":420}\n",
    )
    .unwrap();
    let o = with(&["--image", "a", "--box", "28,28,73,73", "--top", "1", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["geometry"]["source"], "images.jsonl");
    assert_eq!(v["geometry"]["image_w"], 448);
    assert_eq!(v["classes"][0]["class"], 0);
    assert!((v["classes"][0]["p"].as_f64().unwrap() - want[0].2).abs() < 1e-6);
    let o = with(&["--image", "a", "--box", "0,0,500,10"]);
    assert!(text(&o).1.contains("not inside the 448x448 image"), "{}", text(&o).1);
    std::fs::remove_file(cache.join("images.jsonl")).unwrap();

    let fail = |extra: &[&str], needle: &[&str]| {
        let o = with(extra);
        let (_, e) = text(&o);
        assert_ne!(o.status.code(), Some(0), "{extra:?} succeeded");
        for n in needle {
            assert!(e.contains(n), "{extra:?}: {n:?} not in {e}");
        }
    };
    fail(&["--image", "nope", "--box", "0,0,10,10"], &["\"nope\""]);
    fail(&["--image", "a", "--box", "0,0,300,10"], &["not inside the 224x224 image"]);
    fail(&["--image", "a", "--box", "5,5,5,10"], &["empty"]);
    fail(&["--image", "a", "--box", "0,0,10"], &["--box", "x0,y0,x1,y1"]);
    fail(&["--image", "a", "--box", "0,0,10,10", "--image-size", "0,5"], &["--image-size"]);
    let head4 = dir.path().join("head4.safetensors");
    write_head(&head4, 4);
    let o = run(&["relabel", "query", "--cache", s(&cache), "--head", s(&head4), "--image", "a", "--box", "0,0,10,10"]);
    let (_, e) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(e.contains("4-dimensional") && e.contains("3-dimensional") && e.contains("head4.safetensors"), "{e}");
}
