//! Training-region selection: label-map scores against the materialised
//! numpy computation of tests/reference/relabel_ref.py (fixtures/math/select.json),
//! the selection rule by hand, and bad maps.

use labelscope_relabel::pool::Mask;
use labelscope_relabel::select::{cell_weights, select, softmax, LabelMap, SelectOptions, Selected, Target};
use labelscope_relabel::Error;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/math").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn usz(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

#[test]
fn scores_match_materialised_upsample() {
    let cases = fixture("select.json");
    let mut n = 0;
    for (k, c) in cases.as_array().unwrap().iter().enumerate() {
        let shape: Vec<usize> = c["shape"].as_array().unwrap().iter().map(usz).collect();
        let data: Vec<f32> = c["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let classes = usz(&c["classes"]);
        let map = if c["kind"] == "relabel" {
            LabelMap::relabel(&data, &shape, classes).unwrap()
        } else {
            LabelMap::dense(&data, &shape).unwrap()
        };
        assert_eq!(map.classes(), classes);
        let (iw, ih) = (usz(&c["image_w"]), usz(&c["image_h"]));
        for m in c["masks"].as_array().unwrap() {
            let mask: Vec<bool> = m["mask"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() != 0).collect();
            let want: Vec<f64> = m["probs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let got = map.score(&Mask::Bool(&mask), iw, ih).unwrap();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-9, "case {k} class {i}: {a} vs {b}");
            }
            let (h, w) = map.size();
            let wts = cell_weights(&Mask::Bool(&mask), iw, ih, h, w).unwrap();
            assert!((wts.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            n += 1;
        }
    }
    assert_eq!(n, 20);
}

/// A 1x1 ReLabel map with top-2 logits 2 (class 0) and 1 (class 2) over 3
/// classes: every mask averages to the logits (2, 0, 1), whose softmax is
/// e^2 / (e^2 + 1 + e) = 7.389056 / 11.107338 = 0.665241 for class 0,
/// 0.090031 for class 1 and 0.244728 for class 2.
fn tiny_map() -> LabelMap {
    LabelMap::relabel(&[2.0, 1.0, 0.0, 2.0], &[2, 2, 1, 1], 3).unwrap()
}

#[test]
fn softmax_and_selection_by_hand() {
    let map = tiny_map();
    let full = [true; 6];
    let p = map.score(&Mask::Bool(&full), 3, 2).unwrap();
    assert!((p[0] - 0.665241).abs() < 1e-6 && (p[1] - 0.090031).abs() < 1e-6 && (p[2] - 0.244728).abs() < 1e-6);
    let s = softmax(&[0.0, 0.0]);
    assert_eq!(s, vec![0.5, 0.5]);

    let a = [true, false, false, false, false, false];
    let b = [false, false, false, false, true, true];
    let masks = [Mask::Bool(&a), Mask::Bool(&b)];
    // label 0 has probability 0.665 in every region: kept at tau 0.6, not at the default 0.75
    let opts = SelectOptions { tau: 0.6, ..SelectOptions::default() };
    let kept = select(&map, &masks, 3, 2, 0, &opts).unwrap();
    assert_eq!(kept.iter().map(|s| s.proposal).collect::<Vec<_>>(), vec![Some(0), Some(1)]);
    assert!(select(&map, &masks, 3, 2, 0, &SelectOptions::default()).unwrap().is_empty());
    // label 2 (0.245) fails, with the whole-image fallback the image comes back with label 2
    let fb = SelectOptions { tau: 0.6, whole_image_fallback: true, ..SelectOptions::default() };
    let r = select(&map, &masks, 3, 2, 2, &fb).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].proposal, r[0].class), (None, 2));
    assert!((r[0].prob - 0.244728).abs() < 1e-6);
    // own top-1: class 0 for label 2 as well
    let own = SelectOptions { tau: 0.6, target: Target::OwnTop1, whole_image_fallback: false };
    let r = select(&map, &masks, 3, 2, 2, &own).unwrap();
    assert_eq!(r.iter().map(|s| (s.proposal, s.class)).collect::<Vec<_>>(), vec![(Some(0), 0), (Some(1), 0)]);
}

#[test]
fn spatial_selection_by_hand() {
    // Dense 2-class map, 1x2 grid on a 4x1 image. Column weights of the left
    // cell are 1, .75, .25, 0 (PyTorch bilinear, align_corners=False).
    // Class 0 logits (4, 0), class 1 logits (0, 4).
    // Mask = left two pixels: cell weights (.875, .125) -> logits (3.5, 0.5),
    // p0 = 1 / (1 + e^-3) = 0.952574. Right two pixels: p0 = 0.047426.
    let map = LabelMap::dense(&[4.0, 0.0, 0.0, 4.0], &[2, 1, 2]).unwrap();
    let left = [true, true, false, false];
    let right = [false, false, true, true];
    let p = map.score(&Mask::Bool(&left), 4, 1).unwrap();
    assert!((p[0] - 0.952574).abs() < 1e-6, "{p:?}");
    let p = map.score(&Mask::Bool(&right), 4, 1).unwrap();
    assert!((p[0] - 0.047426).abs() < 1e-6, "{p:?}");
    let r = select(&map, &[Mask::Bool(&left), Mask::Bool(&right)], 4, 1, 1, &SelectOptions::default()).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].proposal, Some(1));
    assert!(matches!(r[0], Selected { class: 1, .. }));
}

#[test]
fn bad_maps_and_masks() {
    let inv = |r: Result<LabelMap, Error>| match r {
        Err(Error::Invalid(s)) => s,
        other => panic!("expected Invalid, got {other:?}"),
    };
    // class index outside [0, C), non-integer, duplicate, NaN logit
    let s = inv(LabelMap::relabel(&[2.0, 1.0, 0.0, 3.0], &[2, 2, 1, 1], 3));
    assert!(s.contains("class index") && s.contains("[0, 3)"), "{s}");
    assert!(inv(LabelMap::relabel(&[2.0, 1.0, 0.0, 1.5], &[2, 2, 1, 1], 3)).contains("1.5"));
    assert!(inv(LabelMap::relabel(&[2.0, 1.0, 1.0, 1.0], &[2, 2, 1, 1], 3)).contains("twice"));
    assert!(inv(LabelMap::relabel(&[f32::NAN, 1.0, 0.0, 1.0], &[2, 2, 1, 1], 3)).contains("NaN"));
    assert!(inv(LabelMap::dense(&[0.0, f32::NAN], &[2, 1, 1])).contains("NaN"));
    // wrong shapes and lengths
    assert!(matches!(LabelMap::relabel(&[0.0; 8], &[3, 2, 1, 1], 3), Err(Error::Mismatch(_))));
    assert!(matches!(LabelMap::relabel(&[0.0; 8], &[2, 4, 1], 3), Err(Error::Mismatch(_))));
    assert!(matches!(LabelMap::relabel(&[0.0; 7], &[2, 2, 2, 1], 3), Err(Error::Mismatch(_))));
    assert!(matches!(LabelMap::dense(&[0.0; 5], &[2, 1, 3]), Err(Error::Mismatch(_))));
    assert!(matches!(LabelMap::dense(&[0.0; 4], &[2, 2]), Err(Error::Mismatch(_))));
    // empty mask, mask of the wrong size, label outside the map
    let map = tiny_map();
    let empty = [false; 6];
    let e = select(&map, &[Mask::Bool(&empty)], 3, 2, 0, &SelectOptions::default()).unwrap_err().to_string();
    assert!(e.contains("proposal 0") && e.contains("empty mask"), "{e}");
    assert!(matches!(map.score(&Mask::Bool(&[true; 5]), 3, 2), Err(Error::Mismatch(_))));
    assert!(matches!(select(&map, &[], 3, 2, 3, &SelectOptions::default()), Err(Error::Invalid(_))));
}
