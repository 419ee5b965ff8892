//! `labelscope relabel label-map | soft-target | filter-proposals |
//! feature-entropy` end to end, on the hand-written cache of
//! support/region_model.rs: image "a", dim 3, a 2×2 grid with cells
//! 2·e0, 2·e1, 2·e2, 2·e2, and the linear head W = I, b = (0, 0, 0.5), so
//! the cells' logits are (2, 0, 0.5), (0, 2, 0.5), (0, 0, 2.5), (0, 0, 2.5).
//! Every expected number below is worked out from those by hand.

#[path = "support/region_model.rs"]
mod region_model;

use std::path::Path;
use std::process::{Command, Output};

use labelscope_core::rle::Rle;
use region_model::{write_cache, write_head};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labelscope")).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "failed: {err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn npy_f32(p: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = labelscope_core::npy::read_npy(p).unwrap();
    (a.shape().to_vec(), a.to_f32_vec(p, "array").unwrap())
}

fn softmax(v: &[f64]) -> Vec<f64> {
    let s: f64 = v.iter().map(|x| x.exp()).sum();
    v.iter().map(|x| x.exp() / s).collect()
}

#[test]
fn label_maps_and_soft_targets() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    write_cache(&cache);
    let head = dir.path().join("head.safetensors");
    write_head(&head, 3);
    let maps = dir.path().join("maps");
    ok(&run(&[
        "relabel",
        "label-map",
        "--cache",
        s(&cache),
        "--head",
        s(&head),
        "--out",
        s(&maps),
        "--top-k",
        "2",
        "--quiet",
    ]));

    // [2, k=2, 2, 2]: top-1 logits (2, 2, 2.5, 2.5) of classes (0, 1, 2, 2);
    // second (0.5, 0.5, 0, 0) of classes (2, 2, 0, 0) (ties 0 = 0 go to class 0).
    let (shape, data) = npy_f32(&maps.join("a.npy"));
    assert_eq!(shape, vec![2, 2, 2, 2]);
    assert_eq!(data, vec![2.0, 2.0, 2.5, 2.5, 0.5, 0.5, 0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0]);
    let idx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(maps.join("labelmaps.json")).unwrap()).unwrap();
    assert_eq!(idx["classes"], 3);
    assert_eq!(idx["scores"], "logits");
    // no images.jsonl: the grid covers the 224 × 224 network input
    assert_eq!(idx["images"][0]["x1"], 224.0);
    assert_eq!(idx["images"][0]["h"], 2);

    // Whole image, RoI-align (adaptive: samples on the 4 cell centres), softmax:
    // mean logits (0.5, 0.5, (0.5 + 0.5 + 2.5 + 2.5)/4 = 1.5).
    // Box on cell (0, 0): logits (2, 0, 0.5).
    let out = dir.path().join("t.npy");
    let base = ["relabel", "soft-target", "--maps", s(&maps), "--image", "a"];
    let mut args = base.to_vec();
    args.extend(["--box", "0,0,224,224", "--box", "0,0,112,112", "--out", s(&out)]);
    ok(&run(&args));
    let (shape, t) = npy_f32(&out);
    assert_eq!(shape, vec![2, 3]);
    let want: Vec<f64> = [softmax(&[0.5, 0.5, 1.5]), softmax(&[2.0, 0.0, 0.5])].concat();
    for (g, w) in t.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() < 1e-6, "{t:?} vs {want:?}");
    }

    // Fractional box 0,0,168,112 with area pooling, no normalisation:
    // cell (0,0) covers 112·112, cell (0,1) 56·112 → weights 2/3, 1/3:
    // (2·2/3, 2·1/3, 0.5) = (4/3, 2/3, 1/2).
    let mut args = base.to_vec();
    args.extend(["--box", "0,0,168,112", "--pooling", "area", "--normalize", "none", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&run(&args))).unwrap();
    let top = &v[0]["top"];
    let got: Vec<(u64, f64)> =
        top.as_array().unwrap().iter().map(|e| (e["class"].as_u64().unwrap(), e["p"].as_f64().unwrap())).collect();
    let want = [(0u64, 4.0 / 3.0), (1, 2.0 / 3.0), (2, 0.5)];
    for ((gc, gp), (wc, wp)) in got.iter().zip(&want) {
        assert_eq!(gc, wc);
        assert!((gp - wp).abs() < 1e-6, "{got:?}");
    }

    // The same boxes from a CSV give the same rows.
    let csv = dir.path().join("boxes.csv");
    std::fs::write(&csv, "image,x0,y0,x1,y1\na,0,0,224,224\na,0,0,112,112\n").unwrap();
    let out2 = dir.path().join("t2.npy");
    ok(&run(&["relabel", "soft-target", "--maps", s(&maps), "--boxes", s(&csv), "--out", s(&out2)]));
    assert_eq!(npy_f32(&out2).1, t);

    // Unknown image and a box outside the grid are errors.
    let o = run(&["relabel", "soft-target", "--maps", s(&maps), "--image", "zz", "--box", "0,0,1,1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"zz\""));
}

fn coco(dir: &Path, anns: serde_json::Value) -> std::path::PathBuf {
    let p = dir.join("props.json");
    let v = serde_json::json!({
        "info": {"tool": "other"},
        "images": [{"id": 1, "file_name": "a.JPEG", "width": 224, "height": 224}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "object"}],
    });
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    p
}

fn rect(x0: usize, y0: usize, x1: usize, y1: usize) -> serde_json::Value {
    let m: Vec<bool> = (0..224).flat_map(|y| (0..224).map(move |x| x >= x0 && x < x1 && y >= y0 && y < y1)).collect();
    serde_json::to_value(Rle::encode(&m, 224, 224).unwrap().to_coco()).unwrap()
}

#[test]
fn filter_external_proposals() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    write_cache(&cache);
    // The grid covers the whole 224 × 224 image: cells of 112 px.
    std::fs::write(
        cache.join("images.jsonl"),
        "{\"id\":\"a\",\"file\":\"a.JPEG\",\"width\":224,\"height\":224,\"x0\":0,\"y0\":0,\"x1\":224,\"y1\":224}\n",
    )
    .unwrap();
    let head = dir.path().join("head.safetensors");
    write_head(&head, 3);
    // id 5: inside cell (0,0) → logits (2, 0, 0.5), p = e²/(e² + 1 + e^0.5) = 0.7361, class 0
    // id 6: inside cell (1,0) → (0, 0, 2.5), p = e^2.5/(e^2.5 + 2) = 0.8590, class 2
    // id 7: cells (0,0) and (0,1) fully, equal weights → (1, 1, 0.5), p = e/(2e + e^0.5) = 0.3837, class 0
    // id 8: empty mask → outside the grid, removed at every threshold
    let anns = serde_json::json!([
        {"id": 5, "image_id": 1, "category_id": 1, "segmentation": rect(10, 10, 100, 100), "extra": "kept as is"},
        {"id": 6, "image_id": 1, "category_id": 1, "segmentation": rect(10, 120, 100, 200)},
        {"id": 7, "image_id": 1, "category_id": 1, "segmentation": rect(0, 0, 224, 112)},
        {"id": 8, "image_id": 1, "category_id": 1, "segmentation": rect(0, 0, 0, 0)},
    ]);
    let props = coco(dir.path(), anns);
    let (e, e5, e25) = (1f64.exp(), 0.5f64.exp(), 2.5f64.exp());
    let p5 = e * e / (e * e + 1.0 + e5);
    let p6 = e25 / (e25 + 2.0);
    let p7 = e / (2.0 * e + e5);
    assert!(p7 < 0.5 && p5 > 0.7 && p5 < 0.8 && p6 > 0.8 && p6 < 0.9);
    let out = dir.path().join("filtered.json");
    let csv = dir.path().join("report.csv");
    let json = dir.path().join("report.json");
    let base = ["relabel", "filter-proposals", "--cache", s(&cache), "--head", s(&head), "--quiet"];
    let mut args = base.to_vec();
    args.extend(["--proposals", s(&props), "--thresholds", "0.3,0.5,0.8,0.9", "--threshold", "0.5"]);
    args.extend(["--out", s(&out), "--report", s(&csv)]);
    let stdout = ok(&run(&args));
    assert!(stdout.contains("4 proposals, 1 outside"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        "threshold,kept,removed,kept_share\n0.3,3,1,0.750000\n0.5,2,2,0.500000\n0.8,1,3,0.250000\n0.9,0,4,0.000000\n"
    );
    let f: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let kept = f["annotations"].as_array().unwrap();
    assert_eq!(kept.len(), 2);
    assert_eq!((kept[0]["id"].as_u64(), kept[1]["id"].as_u64()), (Some(5), Some(6)));
    assert_eq!((kept[0]["labeler_class"].as_u64(), kept[1]["labeler_class"].as_u64()), (Some(0), Some(2)));
    assert!((kept[0]["labeler_confidence"].as_f64().unwrap() - p5).abs() < 1e-5);
    assert!((kept[1]["labeler_confidence"].as_f64().unwrap() - p6).abs() < 1e-5);
    assert_eq!(kept[0]["extra"], "kept as is");
    assert_eq!(f["info"]["tool"], "other");
    assert_eq!(f["images"].as_array().unwrap().len(), 1);

    let mut args = base.to_vec();
    args.extend(["--proposals", s(&props), "--thresholds", "0.38,0.39", "--report", s(&json)]);
    ok(&run(&args));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // p7 = 0.3837 lies between the two thresholds
    assert_eq!(r["thresholds"][0]["kept"], 3);
    assert_eq!(r["thresholds"][1]["kept"], 2);
    assert_eq!(r["outside_grid"], 1);

    // Bad inputs: each error names the file and the annotation.
    let err = |anns: serde_json::Value| -> String {
        let bad = dir.path().join("bad");
        std::fs::create_dir_all(&bad).unwrap();
        let p = coco(&bad, anns);
        let mut args = base.to_vec();
        args.extend(["--proposals", s(&p)]);
        let o = run(&args);
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e1 = err(serde_json::json!([
        {"id": 5, "image_id": 1, "segmentation": rect(10, 10, 100, 100)},
        {"id": 7, "image_id": 9, "segmentation": rect(10, 10, 100, 100)},
    ]));
    assert!(e1.contains("props.json") && e1.contains("annotations[1] (id 7)") && e1.contains("image_id 9"), "{e1}");
    let small: Vec<bool> = vec![true; 100];
    let e2 = err(serde_json::json!([
        {"id": 11, "image_id": 1, "segmentation": serde_json::to_value(Rle::encode(&small, 10, 10).unwrap().to_coco()).unwrap()},
    ]));
    assert!(e2.contains("annotations[0] (id 11).segmentation") && e2.contains("does not match"), "{e2}");
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"images\": [").unwrap();
    let mut args = base.to_vec();
    args.extend(["--proposals", s(&broken)]);
    let o = run(&args);
    let e3 = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e3.contains("broken.json") && e3.contains("line 1"), "{e3}");
}

fn write_npy(p: &Path, descr: &str, shape: &[usize], bytes: &[u8]) {
    let mut v = labelscope_core::npy::header_bytes(descr, shape);
    v.extend_from_slice(bytes);
    std::fs::write(p, v).unwrap();
}

#[test]
fn feature_entropy_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    // x = 0, 1, 3, 6, 10 (f32) and the same plus a duplicate of 3 (f64).
    // k = 3: third-neighbour distances 6, 5, 3, 5, 9;
    // H = ψ(5) − ψ(3) + ln 2 + (1/5) ln(6·5·3·5·9) = 7/12 + ln 2 + ln(4050)/5.
    let a = dir.path().join("single.npy");
    let x32: Vec<u8> = [0f32, 1.0, 3.0, 6.0, 10.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&a, "<f4", &[5, 1], &x32);
    let b = dir.path().join("multi.npy");
    let x64: Vec<u8> = [0f64, 1.0, 3.0, 6.0, 3.0, 10.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&b, "<f8", &[6, 1], &x64);
    let csv = dir.path().join("h.csv");
    let o = run(&["relabel", "feature-entropy", "--features", s(&a), "--features", s(&b), "--json", "--out", s(&csv)]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let want = 7.0 / 12.0 + 2f64.ln() + 4050f64.ln() / 5.0;
    for (i, dups) in [(0, 0), (1, 1)] {
        let h = v[i]["entropy_nats"].as_f64().unwrap();
        assert!((h - want).abs() < 1e-9, "{h} vs {want}");
        assert_eq!(v[i]["duplicates_removed"], dups);
        assert_eq!(v[i]["used"], 5);
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.starts_with("file,points,used,duplicates_removed,dim,k,entropy_nats,entropy_per_dim\n"));
    // duplicates as an error
    let o = run(&["relabel", "feature-entropy", "--features", s(&b), "--duplicates", "error"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("multi.npy") && e.contains("point 4 is a duplicate of point 2"), "{e}");
}
