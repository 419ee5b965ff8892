//! COCO RLE (`labelscope_core::rle`) against pycocotools from PyPI
//! (`tests/reference/rle_ref.py`): on empty, full, single-pixel, 1×N, N×1,
//! noise masks of several densities and blob masks up to 500×375, our counts
//! string must equal pycocotools' byte for byte, our decoding of
//! pycocotools' string must give the mask back, and area, toBbox and iou
//! must agree. Skips (with a message) without Python/pycocotools, except
//! when `CI=true`, where it fails.

use std::path::PathBuf;
use std::process::Command;

use labelscope_core::npy::header_bytes;
use labelscope_core::rle::Rle;
use labelscope_core::rng::Xoshiro256;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn python() -> String {
    std::env::var("LABELSCOPE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn masks() -> Vec<(usize, usize, Vec<bool>)> {
    let mut rng = Xoshiro256::from_seed(42);
    let mut out = vec![
        (1, 1, vec![false]),
        (1, 1, vec![true]),
        (4, 3, vec![false; 12]),
        (4, 3, vec![true; 12]),
        (1, 9, (0..9).map(|i| i % 3 == 0).collect()),
        (9, 1, (0..9).map(|i| i % 4 != 0).collect()),
    ];
    for (h, w) in [(5, 7), (7, 5)] {
        for corner in [0, w - 1, (h - 1) * w, h * w - 1] {
            let mut m = vec![false; h * w];
            m[corner] = true;
            out.push((h, w, m));
        }
    }
    for &(h, w) in &[(13, 17), (64, 48), (375, 500), (500, 375)] {
        for density in [0.02, 0.3, 0.5, 0.9] {
            out.push((h, w, (0..h * w).map(|_| rng.unit() < density).collect()));
        }
        // Blobs: a few discs, which give long runs (multi-group and negative deltas).
        let mut m = vec![false; h * w];
        for _ in 0..4 {
            let (cy, cx) = (rng.unit() * h as f64, rng.unit() * w as f64);
            let r = (0.05 + 0.3 * rng.unit()) * h.min(w) as f64;
            for y in 0..h {
                for x in 0..w {
                    if (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2) < r * r {
                        m[y * w + x] = true;
                    }
                }
            }
        }
        out.push((h, w, m));
    }
    out
}

#[test]
fn identical_to_pycocotools() {
    let ok =
        Command::new(python()).args(["-c", "import numpy, pycocotools"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        if in_ci() {
            panic!("CI=true but {} with numpy and pycocotools is not available", python());
        }
        eprintln!("skipping: {} with numpy and pycocotools is not available", python());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = masks();
    let mut files = Vec::new();
    for (k, (h, w, m)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("m{k}.npy"));
        let mut b = header_bytes("|u1", &[*h, *w]);
        b.extend(m.iter().map(|&v| u8::from(v)));
        std::fs::write(&p, b).unwrap();
        files.push(p.to_string_lossy().into_owned());
    }
    let manifest = dir.path().join("files.json");
    std::fs::write(&manifest, serde_json::to_vec(&files).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/rle_ref.py");
    let out = Command::new(python()).arg(script).arg(&manifest).output().unwrap();
    assert!(out.status.success(), "rle_ref.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let want: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(want.len(), cases.len());
    let rles: Vec<Rle> = cases.iter().map(|(h, w, m)| Rle::encode(m, *h, *w).unwrap()).collect();
    let mut ious = 0;
    for (k, ((h, w, m), r)) in cases.iter().zip(&rles).enumerate() {
        let theirs = want[k]["counts"].as_str().unwrap();
        assert_eq!(r.to_counts_string(), theirs, "case {k} ({h}x{w}): counts string");
        let back = Rle::from_counts_string(theirs, *h, *w).unwrap();
        assert_eq!(&back.decode(), m, "case {k}: decoding pycocotools' string");
        assert_eq!(r.area(), want[k]["area"].as_u64().unwrap(), "case {k}: area");
        let bbox: Vec<f64> = want[k]["bbox"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(r.bbox().to_vec(), bbox, "case {k}: toBbox");
        if let Some(iou) = want[k]["iou_next"].as_f64() {
            let ours = r.iou(&rles[k + 1]).unwrap();
            assert!((ours - iou).abs() < 1e-12, "case {k}: iou {ours} vs {iou}");
            ious += 1;
        }
    }
    assert!(ious >= 10, "only {ious} iou pairs compared");
}
