//! `labelscope spurious` end to end on the tiny random-weight ResNet of the
//! classify fixture: the clean condition agrees with `labelscope classify`
//! on the same recipe (top-1 and softmax confidence), empty masks are listed
//! and not scored, outputs and the report are written, bad input is named.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_labelscope"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = bin().args(args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fails(args: &[&str]) -> String {
    let o = bin().args(args).output().unwrap();
    assert!(!o.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify")
}

/// A data set of 8 generated images with rectangle masks (image 3's mask is empty), classes c0..c9.
fn data(dir: &Path) {
    let (images, masks) = (dir.join("images"), dir.join("masks"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    let mut labels = String::from("image,class\n");
    for i in 0..8u32 {
        let img = image::RgbImage::from_fn(80, 60, |x, y| {
            image::Rgb([((x * 3 + i * 29) % 256) as u8, ((y * 5 + i * 41) % 256) as u8, ((x * y + i) % 256) as u8])
        });
        img.save(images.join(format!("im{i}.png"))).unwrap();
        let m = image::GrayImage::from_fn(80, 60, |x, y| {
            let on = i != 3 && (10 + i * 3..40 + i * 3).contains(&x) && (15..45).contains(&y);
            image::Luma([if on { 255 } else { 0 }])
        });
        m.save(masks.join(format!("im{i}.png"))).unwrap();
        labels.push_str(&format!("im{i},c{}\n", i % 10));
    }
    std::fs::write(dir.join("labels.csv"), labels).unwrap();
    std::fs::write(dir.join("classes.txt"), (0..10).map(|k| format!("c{k}\n")).collect::<String>()).unwrap();
}

#[test]
fn spurious_on_the_tiny_resnet_agrees_with_classify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    data(d);
    let weights = d.join("tiny.safetensors");
    let f = fixture();
    ok(&[
        "weights",
        "convert",
        "--config",
        s(&f.join("config.json")),
        "--input",
        s(&f.join("model.pth")),
        "--output",
        s(&weights),
    ]);
    let recipe = "square72-crop64";
    let cls = d.join("cls");
    ok(&[
        "classify",
        "--model",
        "resnet",
        "--weights",
        s(&weights),
        "--images",
        s(&d.join("images")),
        "--out",
        s(&cls),
        "--recipe",
        recipe,
        "--logits",
        "f32",
        "-q",
    ]);
    let out = d.join("out");
    let (im, ma, la, cl) = (d.join("images"), d.join("masks"), d.join("labels.csv"), d.join("classes.txt"));
    let common = [
        "--model",
        "resnet",
        "--weights",
        s(&weights),
        "--images",
        s(&im),
        "--masks",
        s(&ma),
        "--labels",
        s(&la),
        "--class-map",
        "model",
        "--classes",
        s(&cl),
        "--recipe",
        recipe,
        "--batch",
        "3",
        "-q",
    ];
    let mut args: Vec<&str> = vec!["spurious"];
    args.extend_from_slice(&common);
    args.extend_from_slice(&["--out", s(&out), "--sigma", "0.2", "--trials", "2"]);
    let err = ok(&args);
    assert!(err.contains("1 images have an empty mask"), "{err}");
    let r: Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["scored"], 7);
    assert_eq!(r["empty_masks"], serde_json::json!(["im3"]));
    for c in ["none", "gray", "gray-bbox", "tile", "noise-fg", "noise-bg"] {
        let n = r["conditions"][c]["n"].as_u64().unwrap();
        assert_eq!(n, if c.starts_with("noise") { 14 } else { 7 }, "{c}");
    }
    assert!(r["rfs"]["rfs"].as_f64().is_some());
    assert!(r["saliency"]["iou"]["mean"].as_f64().unwrap() >= 0.0);
    // The clean condition equals classify's top-1 and softmax on the same recipe.
    let names: Vec<String> =
        std::fs::read_to_string(cls.join("images.txt")).unwrap().lines().map(String::from).collect();
    let logits = labelscope_core::npy::read_npy(&cls.join("logits.npy")).unwrap();
    let logits = logits.to_f32_vec(&cls.join("logits.npy"), "logits").unwrap();
    let csv = std::fs::read_to_string(out.join("per_image.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let mut checked = 0;
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let id = cells[0];
        let i: usize = id[2..].parse().unwrap();
        let row = names.iter().position(|n| n.contains(&format!("im{i}"))).unwrap();
        let z = &logits[row * 10..(row + 1) * 10];
        let top = (0..10).max_by(|&a, &b| z[a].total_cmp(&z[b]).then(b.cmp(&a))).unwrap();
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = z.iter().map(|&v| f64::from(v - m).exp()).sum();
        let p = f64::from(z[i % 10] - m).exp() / sum;
        assert_eq!(cells[col("none_correct")], if top == i % 10 { "1" } else { "0" }, "{id}");
        let conf: f64 = cells[col("none_confidence")].parse().unwrap();
        assert!((conf - p).abs() < 1e-4, "{id}: {conf} vs {p}");
        checked += 1;
    }
    assert_eq!(checked, 7);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Examples") && html.contains("data:image/png;base64,") && html.contains("RFS"));
    assert!(std::fs::read_to_string(out.join("per_class.csv")).unwrap().starts_with("class,"));
    // Side by side with the first run.
    let out2 = d.join("out2");
    let mut args: Vec<&str> = vec!["spurious"];
    args.extend_from_slice(&common);
    let first = out.join("results.json");
    args.extend_from_slice(&["--out", s(&out2), "--compare", s(&first), "--no-saliency", "--sigma", "0"]);
    ok(&args);
    let html = std::fs::read_to_string(out2.join("report.html")).unwrap();
    assert!(html.contains("compared run"));
    let r2: Value = serde_json::from_slice(&std::fs::read(out2.join("results.json")).unwrap()).unwrap();
    assert_eq!(r2["conditions"]["none"]["accuracy"], r["conditions"]["none"]["accuracy"], "deterministic");
    assert!(r2["rfs"].is_null() && r2["saliency"].is_null());

    // Bad input: a mask of another size, an unknown class, the wrong head for the class list.
    image::GrayImage::new(10, 10).save(d.join("masks/im5.png")).unwrap();
    let mut args: Vec<&str> = vec!["spurious"];
    args.extend_from_slice(&common);
    let bad = d.join("bad");
    args.extend_from_slice(&["--out", s(&bad)]);
    let e = fails(&args);
    assert!(e.contains("im5.png") && e.contains("10x10") && e.contains("80x60"), "{e}");
    std::fs::write(d.join("labels.csv"), "image,class\nim0,zebra\n").unwrap();
    let e = fails(&args);
    assert!(e.contains("labels.csv line 2") && e.contains("zebra"), "{e}");
    let e = fails(&[
        "spurious",
        "--model",
        "resnet",
        "--weights",
        s(&weights),
        "--images",
        s(&d.join("images")),
        "--masks",
        s(&d.join("masks")),
        "--labels",
        s(&d.join("labels.csv")),
        "--out",
        s(&d.join("bad")),
    ]);
    assert!(e.contains("--class-map") && e.contains("10 outputs"), "{e}");
}

#[test]
fn coco_instances_give_the_masks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 1..=2u32 {
        image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 3) as u8, (y * 4) as u8, (i * 50) as u8]))
            .save(images.join(format!("{i:012}.png")))
            .unwrap();
    }
    // Image 1: a polygon (a rectangle) and an uncompressed RLE; image 2: only a crowd annotation (left out).
    let instances = serde_json::json!({
        "images": [{"id": 1, "width": 64, "height": 64}, {"id": 2, "width": 64, "height": 64}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [10, 10, 20, 20],
             "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]},
            {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 1, 64],
             "segmentation": {"size": [64, 64], "counts": [0, 64, 4032]}},
            {"id": 3, "image_id": 2, "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 10, 10],
             "segmentation": {"size": [64, 64], "counts": [0, 100, 3996]}}
        ]
    });
    std::fs::write(d.join("instances.json"), instances.to_string()).unwrap();
    std::fs::write(d.join("labels.csv"), "image,class\n000000000001,c1\n000000000002,c2\n").unwrap();
    std::fs::write(d.join("classes.txt"), (0..10).map(|k| format!("c{k}\n")).collect::<String>()).unwrap();
    let weights = d.join("tiny.safetensors");
    let f = fixture();
    ok(&[
        "weights",
        "convert",
        "--config",
        s(&f.join("config.json")),
        "--input",
        s(&f.join("model.pth")),
        "--output",
        s(&weights),
    ]);
    let (im, inst, la, cl, out) =
        (d.join("images"), d.join("instances.json"), d.join("labels.csv"), d.join("classes.txt"), d.join("out"));
    let err = ok(&[
        "spurious",
        "--model",
        "resnet",
        "--weights",
        s(&weights),
        "--images",
        s(&im),
        "--coco-instances",
        s(&inst),
        "--labels",
        s(&la),
        "--class-map",
        "model",
        "--classes",
        s(&cl),
        "--recipe",
        "fixed64",
        "--trials",
        "1",
        "--no-saliency",
        "--out",
        s(&out),
        "-q",
    ]);
    assert!(err.contains("1 images have an empty mask"), "{err}");
    let r: Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["scored"], 1);
    assert_eq!(r["empty_masks"], serde_json::json!(["000000000002"]));
    // Two objects (the 64 px images are not resized): the polygon and the first column, two components under Tile.
    assert_eq!(r["tile"]["components"], 2);
}
