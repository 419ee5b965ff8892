//! `labelscope proposals` end to end: the `--grid-masks` contract, every
//! feature container and layout, bad input (clear error, exit 1, no output
//! written), a sharded run interrupted and resumed, merge to COCO JSON
//! (checked with pycocotools by tests/reference/proposals_ref.py), the CRF
//! path, evaluation against boxes, and the gallery.

mod common;
use common::*;

use std::path::{Path, PathBuf};

use labelscope_core::ncut::{maskcut, NcutParams};
use labelscope_core::npy::{header_bytes, read_npy};
use labelscope_core::rng::Xoshiro256 as Rng;

/// Two blobs on a background; blob rectangles shift with `variant`.
fn blob_features(h: usize, w: usize, d: usize, variant: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::from_seed(seed);
    let protos: Vec<Vec<f64>> = (0..3).map(|_| (0..d).map(|_| rng.gauss()).collect()).collect();
    let v = variant % 3;
    let mut f = Vec::with_capacity(h * w * d);
    for r in 0..h {
        for c in 0..w {
            let k = if (h / 4 + v..h / 2 + v).contains(&r) && (w / 5..w / 2).contains(&c) {
                1
            } else if (h / 2 + 1..h - 2).contains(&r) && (w / 2 + 1 + v..w - 2).contains(&c) {
                2
            } else {
                0
            };
            let noise = if k == 0 { 0.9 } else { 0.4 };
            for p in &protos[k] {
                f.push((p + noise * rng.gauss()) as f32);
            }
        }
    }
    f
}

fn write_f32_npy(path: &Path, shape: &[usize], v: &[f32]) {
    let mut b = header_bytes("<f4", shape);
    b.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    std::fs::write(path, b).unwrap();
}

fn read_masks(path: &Path) -> (Vec<usize>, Vec<u8>) {
    let a = read_npy(path).unwrap();
    assert_eq!(a.dtype.descr(false), "|u1", "grid masks are uint8");
    (a.shape.clone(), a.raw_bytes().to_vec())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const H: usize = 12;
const W: usize = 16;
const D: usize = 24;

#[test]
fn grid_masks_contract_and_containers() {
    let dir = tempfile::tempdir().unwrap();
    let feat = blob_features(H, W, D, 0, 7);
    let f = dir.path().join("f.npy");
    write_f32_npy(&f, &[H, W, D], &feat);
    let out = dir.path().join("m.npy");
    labelscope_ok(&[
        "proposals",
        "--features",
        s(&f),
        "--tau",
        "0.2",
        "--max-masks",
        "3",
        "--no-crf",
        "--grid-masks",
        s(&out),
    ]);
    let (shape, bytes) = read_masks(&out);
    let want = maskcut(&feat, H, W, D, &NcutParams { tau: 0.2, eps: 1e-5, max_masks: 3 }).unwrap();
    assert!(!want.is_empty() && want.len() <= 3);
    assert_eq!(shape, vec![want.len(), H, W]);
    let flat: Vec<u8> = want.iter().flatten().map(|&b| u8::from(b)).collect();
    assert_eq!(bytes, flat, "grid masks equal the library's MaskCut (checked against numpy/scipy in core)");
    assert!(bytes.iter().all(|&b| b <= 1));

    // [1, h, w, d] and a token sequence with a CLS token give the same masks.
    let f4 = dir.path().join("f4.npy");
    write_f32_npy(&f4, &[1, H, W, D], &feat);
    let mut tok = vec![0.5f32; D];
    tok.extend_from_slice(&feat);
    let ft = dir.path().join("tok.npy");
    write_f32_npy(&ft, &[1 + H * W, D], &tok);
    for extra in [vec!["--features", s(&f4)], vec!["--features", s(&ft), "--grid", "12x16", "--skip-tokens", "1"]] {
        let o2 = dir.path().join("m2.npy");
        let mut args = vec!["proposals", "--tau", "0.2", "--no-crf", "--grid-masks", s(&o2)];
        args.extend(extra);
        labelscope_ok(&args);
        assert_eq!(read_masks(&o2).1, bytes, "{args:?}");
    }

    // TokenCut: one mask.
    let o3 = dir.path().join("m3.npy");
    labelscope_ok(&[
        "proposals",
        "--features",
        s(&f),
        "--tokencut",
        "--tau",
        "0.2",
        "--no-crf",
        "--grid-masks",
        s(&o3),
    ]);
    assert_eq!(read_masks(&o3).0, vec![1, H, W]);
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.npy");
    std::fs::write(&out, b"keep me").unwrap();
    let good = dir.path().join("good.npy");
    write_f32_npy(&good, &[H, W, D], &blob_features(H, W, D, 0, 3));

    let ints = dir.path().join("ints.npy");
    let mut b = header_bytes("<i4", &[2, 2, 2]);
    b.extend([0u8; 32]);
    std::fs::write(&ints, b).unwrap();
    let mut nan = blob_features(H, W, D, 0, 3);
    nan[(2 * W + 5) * D + 1] = f32::NAN;
    let nanf = dir.path().join("nan.npy");
    write_f32_npy(&nanf, &[H, W, D], &nan);
    let mut zero = blob_features(H, W, D, 0, 3);
    zero[(3 * W + 4) * D..(3 * W + 5) * D].iter_mut().for_each(|v| *v = 0.0);
    let zerof = dir.path().join("zero.npy");
    write_f32_npy(&zerof, &[H, W, D], &zero);
    let tiny = dir.path().join("tiny.npy");
    write_f32_npy(&tiny, &[1, 3, 2], &[1.0; 6]);
    let flat = dir.path().join("flat.npy");
    write_f32_npy(&flat, &[H * W, D], &blob_features(H, W, D, 0, 3));

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--features", s(&ints)], vec!["ints.npy", "float"]),
        (vec!["--features", s(&nanf)], vec!["nan.npy", "row 2, col 5", "NaN"]),
        (vec!["--features", s(&zerof)], vec!["zero.npy", "row 3, col 4"]),
        (vec!["--features", s(&tiny)], vec!["tiny.npy", "fewer than 4"]),
        (vec!["--features", s(&flat)], vec!["flat.npy", "--grid"]),
        (vec!["--features", s(&good), "--tau", "1.5"], vec!["--tau", "(-1, 1)"]),
        (vec!["--features", s(&good), "--tau", "-1"], vec!["--tau", "(-1, 1)"]),
        (vec!["--features", s(&good), "--max-masks", "0"], vec!["--max-masks"]),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["proposals", "--no-crf", "--grid-masks", s(&out)];
        args.extend(extra.iter().copied());
        let err = labelscope_err(&args);
        for n in needles {
            assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
        }
        assert_eq!(std::fs::read(&out).unwrap(), b"keep me", "{args:?} touched the output");
    }
    // The CRF needs an image.
    let err = labelscope_err(&["proposals", "--features", s(&good), "--grid-masks", s(&out)]);
    assert!(err.contains("CRF") && err.contains("--no-crf"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
}

fn write_png(path: &Path, w: u32, h: u32, seed: u64) {
    let mut rng = Rng::from_seed(seed);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let inside = x > w / 4 && x < w / 2 && y > h / 4 && y < h * 2 / 3;
        let base = if inside { [200u8, 60, 40] } else { [40, 90, 160] };
        let n = (rng.gauss() * 10.0) as i32;
        image::Rgb(base.map(|c| (c as i32 + n).clamp(0, 255) as u8))
    });
    img.save(path).unwrap();
}

fn make_run_inputs(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let (f, i) = (dir.join("feats"), dir.join("imgs"));
    std::fs::create_dir_all(&f).unwrap();
    std::fs::create_dir_all(&i).unwrap();
    for k in 0..n {
        write_f32_npy(&f.join(format!("img{k:02}.npy")), &[H, W, D], &blob_features(H, W, D, k, 100 + k as u64));
        write_png(&i.join(format!("img{k:02}.png")), 40 + 3 * k as u32, 30 + 2 * k as u32, k as u64);
    }
    (f, i)
}

#[test]
fn sharded_run_resumes_and_merges_to_pycocotools_compatible_coco() {
    let dir = tempfile::tempdir().unwrap();
    let (f, i) = make_run_inputs(dir.path(), 7);
    let run = dir.path().join("run");
    let base = [
        "proposals",
        "--features-dir",
        s(&f),
        "--images-dir",
        s(&i),
        "--no-crf",
        "--tau",
        "0.2",
        "--out",
        s(&run),
        "-q",
    ];
    for shard in ["0/2", "1/2"] {
        let mut a = base.to_vec();
        a.extend(["--shard", shard]);
        labelscope_ok(&a);
    }
    let log1 = run.join("shard-00001-of-00002.jsonl");
    let full = std::fs::read_to_string(&log1).unwrap();
    let lines: Vec<&str> = full.lines().collect();
    assert_eq!(lines.len(), 3, "shard 1/2 of 7 images holds 3");
    // Merge before a shard finishes is refused.
    let coco = dir.path().join("coco.json");
    std::fs::remove_file(run.join("shard-00001-of-00002.done.json")).unwrap();
    let err = labelscope_err(&["proposals", "merge", "--out", s(&run), "-o", s(&coco)]);
    assert!(err.contains("shard 1/2") && err.contains("not finished"), "{err}");
    assert!(!coco.exists());
    // Interrupt shard 1 in the middle of its second record, then resume.
    let cut = lines[0].len() + 1 + lines[1].len() / 2;
    std::fs::write(&log1, &full.as_bytes()[..cut]).unwrap();
    let mut a = base.to_vec();
    a.extend(["--shard", "1/2"]);
    let o = labelscope(&a);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 done earlier"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&log1).unwrap(), full, "resumed log equals the uninterrupted one");
    // A different tau in the same folder is refused.
    let mut a = base.to_vec();
    a[7] = "0.3";
    a.extend(["--shard", "0/2"]);
    assert!(labelscope_err(&a).contains("other parameters"));

    labelscope_ok(&["proposals", "merge", "--out", s(&run), "-o", s(&coco), "--features-dir", s(&f)]);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&coco).unwrap()).unwrap();
    assert_eq!(json["images"].as_array().unwrap().len(), 7);
    assert_eq!(json["categories"][0]["name"], "fg");

    // Every image: grid masks from the single-file command, then pycocotools decodes the merged file.
    let mut cases = serde_json::Map::new();
    for k in 0..7 {
        let m = dir.path().join(format!("grid{k}.npy"));
        let feat = f.join(format!("img{k:02}.npy"));
        labelscope_ok(&["proposals", "--features", s(&feat), "--tau", "0.2", "--no-crf", "--grid-masks", s(&m), "-q"]);
        cases.insert(format!("img{k:02}.png"), serde_json::json!({"grid_masks": s(&m)}));
    }
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec(&cases).unwrap()).unwrap();
    let Some(r) = python_reference("proposals_ref.py", &[s(&coco), s(&cases_path)]) else { return };
    let r = r.as_object().unwrap();
    assert_eq!(r.len(), 7);
    for (name, v) in r {
        assert_eq!(v["count"], v["expected_count"], "{name}");
        for key in ["equal", "area_ok", "bbox_ok"] {
            assert!(v[key].as_array().unwrap().iter().all(|b| b.as_bool().unwrap()), "{name}: {key} {v}");
        }
    }
}

#[test]
fn crf_run_gallery_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let (f, i) = make_run_inputs(dir.path(), 3);
    let run = dir.path().join("run");
    labelscope_ok(&[
        "proposals",
        "--features-dir",
        s(&f),
        "--images-dir",
        s(&i),
        "--crf",
        "--patch",
        "4",
        "--tau",
        "0.2",
        "--out",
        s(&run),
        "-q",
    ]);
    let coco = dir.path().join("coco.json");
    labelscope_ok(&["proposals", "merge", "--out", s(&run), "-o", s(&coco)]);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&coco).unwrap()).unwrap();
    assert_eq!(json["info"]["params"]["crf"], true);
    assert_eq!(json["images"].as_array().unwrap().len(), 3);

    // Masks against themselves: every object found, every first proposal a hit (images with proposals).
    let ev = dir.path().join("ev.json");
    labelscope_ok(&["proposals", "eval", "--proposals", s(&coco), "--gt-masks", s(&coco), "--json", s(&ev)]);
    let ev: serde_json::Value = serde_json::from_slice(&std::fs::read(&ev).unwrap()).unwrap();
    let r = &ev["results"][0];
    assert_eq!(r["kind"], "masks");
    assert_eq!(r["found"], r["objects"]);
    assert_eq!(r["corloc_hits"], r["images_with_proposals"]);

    // One image with its image: COCO JSON at the image size and an overlay PNG.
    let (one_json, one_png) = (dir.path().join("one.json"), dir.path().join("one.png"));
    let feat0 = f.join("img00.npy");
    let img0 = i.join("img00.png");
    let out = labelscope_ok(&[
        "proposals",
        "--features",
        s(&feat0),
        "--image",
        s(&img0),
        "--patch",
        "4",
        "--tau",
        "0.2",
        "--output",
        s(&one_json),
        "--overlay",
        s(&one_png),
    ]);
    assert!(out.contains("mask(s) at 40x30"), "{out}");
    let one: serde_json::Value = serde_json::from_slice(&std::fs::read(&one_json).unwrap()).unwrap();
    assert_eq!(one["images"][0]["file_name"], "img00.png");
    assert_eq!((one["images"][0]["width"].as_u64(), one["images"][0]["height"].as_u64()), (Some(40), Some(30)));
    let ov = image::open(&one_png).unwrap();
    assert_eq!((ov.width(), ov.height()), (40, 30));
    // The same image's record in the run is identical.
    let first_ann = json["annotations"].as_array().unwrap().iter().find(|a| a["image_id"] == 1).cloned();
    assert_eq!(
        one["annotations"].as_array().unwrap().first().cloned().map(|a| a["segmentation"].clone()),
        first_ann.map(|a| a["segmentation"].clone())
    );

    let gal = dir.path().join("gallery");
    labelscope_ok(&["proposals", "gallery", "--proposals", s(&coco), "--images", s(&i), "--out", s(&gal)]);
    let html = std::fs::read_to_string(gal.join("index.html")).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 3);
    // An image of another size than the proposals is an error naming it; nothing is written.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    for k in 0..3 {
        write_png(&other.join(format!("img{k:02}.png")), 20, 20, 9);
    }
    let gal2 = dir.path().join("gallery2");
    let err =
        labelscope_err(&["proposals", "gallery", "--proposals", s(&coco), "--images", s(&other), "--out", s(&gal2)]);
    assert!(err.contains("img00.png") && err.contains("20x20"), "{err}");
    assert!(!gal2.join("index.html").exists());
    // Ground-truth masks of another size: a clear error.
    let gt = dir.path().join("gt.json");
    let mut g = json.clone();
    for im in g["images"].as_array_mut().unwrap() {
        im["width"] = serde_json::json!(7);
    }
    std::fs::write(&gt, serde_json::to_vec(&g).unwrap()).unwrap();
    let err = labelscope_err(&["proposals", "eval", "--proposals", s(&coco), "--gt-masks", s(&gt)]);
    assert!(err.contains("gt.json") && err.contains("segmentation.size"), "{err}");
    for k in 0..3 {
        let p = gal.join(format!("img{k:02}.png"));
        let img = image::open(&p).unwrap();
        assert_eq!((img.width(), img.height()), (40 + 3 * k, 30 + 2 * k));
    }
}

#[test]
fn eval_against_val_boxes_matches_python() {
    let Some(data) = shared_data() else { return };
    let boxes = data.join("imagenet/val_boxes.tsv");
    let text = std::fs::read_to_string(&boxes).unwrap();
    let mut rng = Rng::from_seed(5);
    let mut images = Vec::new();
    let mut anns = Vec::new();
    for (k, line) in text.lines().take(1500).enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let b: Vec<f64> = f[2..6].iter().map(|v| v.parse().unwrap()).collect();
        let (w, h) = ((b[2] + 40.0).ceil() as usize, (b[3] + 40.0).ceil() as usize);
        let empty = labelscope_core::rle::Rle::from_uncompressed(vec![(w * h) as u32], h, w).unwrap().to_coco();
        images.push(serde_json::json!({"id": k + 1, "file_name": f[0], "width": w, "height": h}));
        // 0-3 proposals: jittered copies of the ground-truth box (some hit, some miss) and random boxes.
        for _ in 0..(rng.next_u64() % 4) {
            let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
            let (x, y, pw, ph) = if rng.unit() < 0.7 {
                let j = 0.6 * rng.unit();
                (
                    (b[0] + (rng.unit() - 0.5) * j * bw).max(0.0).round(),
                    (b[1] + (rng.unit() - 0.5) * j * bh).max(0.0).round(),
                    (bw * (1.0 + (rng.unit() - 0.5) * j)).round().max(1.0),
                    (bh * (1.0 + (rng.unit() - 0.5) * j)).round().max(1.0),
                )
            } else {
                (
                    (rng.unit() * b[2]).round(),
                    (rng.unit() * b[3]).round(),
                    1.0 + (rng.unit() * 60.0).round(),
                    1.0 + (rng.unit() * 60.0).round(),
                )
            };
            anns.push(serde_json::json!({
                "id": anns.len() + 1, "image_id": k + 1, "category_id": 1, "segmentation": empty,
                "bbox": [x, y, pw, ph], "area": 0.0, "score": 1.0, "iscrowd": 0
            }));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let coco = dir.path().join("p.json");
    let doc = serde_json::json!({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "fg"}]});
    std::fs::write(&coco, serde_json::to_vec(&doc).unwrap()).unwrap();
    let Some(want) = python_reference("corloc_ref.py", &[s(&coco), s(&boxes), "0.5"]) else { return };
    for conv in ["continuous", "pixel-inclusive"] {
        let out = dir.path().join(format!("{conv}.json"));
        labelscope_ok(&[
            "proposals",
            "eval",
            "--proposals",
            s(&coco),
            "--boxes",
            s(&boxes),
            "--convention",
            conv,
            "--json",
            s(&out),
        ]);
        let got: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let r = &got["results"][0];
        let w = &want[conv];
        for k in ["images", "objects", "found", "corloc_hits"] {
            assert_eq!(r[k], w[k], "{conv}: {k}");
        }
        let (found, objects) = (r["found"].as_u64().unwrap(), r["objects"].as_u64().unwrap());
        assert!(found > 300 && found < objects, "{conv}: the data must have hits and misses ({found}/{objects})");
        assert!((r["recall"].as_f64().unwrap() - found as f64 / objects as f64).abs() < 1e-12);
    }
}
