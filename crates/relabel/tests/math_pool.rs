//! Region pooling: mask fractions and ROI-align against the numpy brute force
//! of tests/reference/relabel_ref.py (fixtures/math/*.json), plus hand-computed cases.

use labelscope_core::rle::Rle;
use labelscope_relabel::pool::{
    cell_fractions, masked_average, patch_dropout, pool_mask, pool_masks, project_mask, roi_align, Dropout, Grid,
    GridGeometry, Mask, PoolOptions, Projection,
};
use labelscope_relabel::Error;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/math").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn usz(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

fn geom_of(c: &Value) -> GridGeometry {
    let g = f64s(&c["geom"]);
    GridGeometry { image_w: usz(&c["image_w"]), image_h: usz(&c["image_h"]), x0: g[0], y0: g[1], x1: g[2], y1: g[3] }
}

fn mask_of(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() != 0).collect()
}

/// Deterministic pseudo-random features (no need for a reference: the test
/// computes the expected weighted mean itself from the reference fractions).
fn features(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919 % 113) as f32 - 56.0) / 17.0).collect()
}

#[test]
fn fractions_match_brute_force() {
    let cases = fixture("fractions.json");
    for (k, c) in cases.as_array().unwrap().iter().enumerate() {
        let g = geom_of(c);
        let (h, w) = (usz(&c["h"]), usz(&c["w"]));
        let m = mask_of(&c["mask"]);
        let want = f64s(&c["fractions"]);
        let got = cell_fractions(&Mask::Bool(&m), &g, h, w).unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-12, "case {k} cell {i}: {a} vs {b}");
        }
        // the same mask as u8 and as an RLE gives the same fractions
        let u: Vec<u8> = m.iter().map(|&b| b as u8 * 255).collect();
        assert_eq!(cell_fractions(&Mask::U8(&u), &g, h, w).unwrap(), got);
        let rle = Rle::encode(&m, g.image_h, g.image_w).unwrap();
        assert_eq!(cell_fractions(&Mask::Rle(&rle), &g, h, w).unwrap(), got);

        // Fraction pooling = Σ f_i x_i / Σ f_i with the reference fractions
        let dim = 3;
        let feats = features(h * w * dim);
        let grid = Grid::new(h, w, dim, &feats).unwrap();
        let pooled = pool_mask(&grid, &g, &Mask::Bool(&m), &PoolOptions::default()).unwrap();
        let tot: f64 = want.iter().sum();
        for d in 0..dim {
            let e: f64 = (0..h * w).map(|i| want[i] * f64::from(feats[i * dim + d])).sum::<f64>() / tot;
            assert!((f64::from(pooled[d]) - e).abs() < 1e-5, "case {k} dim {d}: {} vs {e}", pooled[d]);
        }

        // Threshold(0.37): cells with reference fraction >= 0.37, or the most covered ones
        let t = 0.37;
        let max = want.iter().copied().fold(0.0, f64::max);
        let cut = if want.iter().any(|&f| f >= t) { t } else { max };
        let expect: Vec<f64> = want.iter().map(|&f| if f >= cut - 1e-9 && f > 0.0 { 1.0 } else { 0.0 }).collect();
        let wts = project_mask(&Mask::Bool(&m), &g, h, w, Projection::Threshold(t), "m").unwrap();
        assert_eq!(wts, expect, "case {k}");
    }
}

#[test]
fn threshold_one_on_a_full_mask_keeps_every_covered_cell() {
    // 13x9 image on a 2x3 grid: cells of 4.33 x 4.5 pixels, all fully covered,
    // even if the area sum rounds just below 1.
    let m = vec![true; 13 * 9];
    let g = GridGeometry::whole(13, 9);
    let w = project_mask(&Mask::Bool(&m), &g, 3, 2, Projection::Threshold(1.0), "m").unwrap();
    assert_eq!(w, vec![1.0; 6]);
}

#[test]
fn crop_window_by_hand() {
    // 4x4 image, grid 1x1 covering the crop window [1, 3) x [1, 3) (4 pixels).
    // Mask = pixel (1,1) and (0,0): only (1,1) lies in the window -> fraction 1/4.
    let mut m = vec![false; 16];
    m[0] = true;
    m[5] = true;
    let g = GridGeometry { image_w: 4, image_h: 4, x0: 1.0, y0: 1.0, x1: 3.0, y1: 3.0 };
    assert_eq!(cell_fractions(&Mask::Bool(&m), &g, 1, 1).unwrap(), vec![0.25]);
    // window [0.5, 2.5): pixel (0,0) overlaps 0.5 x 0.5 = 0.25, pixel (1,1) fully 1 -> 1.25 / 4
    let g = GridGeometry { image_w: 4, image_h: 4, x0: 0.5, y0: 0.5, x1: 2.5, y1: 2.5 };
    assert_eq!(cell_fractions(&Mask::Bool(&m), &g, 1, 1).unwrap(), vec![0.3125]);
}

#[test]
fn masked_average_by_hand() {
    // 1x3 grid, dim 2: features (1,10), (2,20), (4,40); weights 0.5, 0, 1.5
    // -> ((0.5*1 + 1.5*4)/2, (0.5*10 + 1.5*40)/2) = (3.25, 32.5)
    let f = [1.0, 10.0, 2.0, 20.0, 4.0, 40.0];
    let g = Grid::new(1, 3, 2, &f).unwrap();
    assert_eq!(masked_average(&g, &[0.5, 0.0, 1.5]).unwrap(), vec![3.25, 32.5]);
    assert!(masked_average(&g, &[0.0; 3]).is_err());
    assert!(matches!(masked_average(&g, &[1.0; 2]), Err(Error::Mismatch(_))));
}

#[test]
fn dropout_pools_the_kept_cells() {
    // 4x4 image, 4x4 grid (one pixel per cell), mask = 8 pixels; p = 0.5 drops 4.
    let mut m = vec![false; 16];
    for i in [0, 1, 2, 3, 5, 6, 9, 10] {
        m[i] = true;
    }
    let g = GridGeometry::whole(4, 4);
    let feats: Vec<f32> = (0..16).map(|i| i as f32).collect();
    let grid = Grid::new(4, 4, 1, &feats).unwrap();
    let mut w = project_mask(&Mask::Bool(&m), &g, 4, 4, Projection::Fraction, "m").unwrap();
    assert_eq!(patch_dropout(&mut w, 0.5, 42).unwrap(), 4);
    let kept: Vec<usize> = (0..16).filter(|&i| w[i] > 0.0).collect();
    assert_eq!(kept.len(), 4);
    assert!(kept.iter().all(|&i| m[i]), "only foreground cells are kept");
    let expect = kept.iter().map(|&i| i as f32).sum::<f32>() / 4.0;
    let opts = PoolOptions { projection: Projection::Fraction, dropout: Some(Dropout { p: 0.5, seed: 42 }) };
    assert_eq!(pool_mask(&grid, &g, &Mask::Bool(&m), &opts).unwrap(), vec![expect]);
    // another seed gives (almost surely) another subset, still of 4 foreground cells
    let mut w2 = project_mask(&Mask::Bool(&m), &g, 4, 4, Projection::Fraction, "m").unwrap();
    patch_dropout(&mut w2, 0.5, 43).unwrap();
    assert_eq!(w2.iter().filter(|&&v| v > 0.0).count(), 4);
}

#[test]
fn batch_equals_single_and_names_the_bad_mask() {
    let g = GridGeometry::whole(6, 4);
    let feats = features(2 * 3 * 4);
    let grid = Grid::new(2, 3, 4, &feats).unwrap();
    let a: Vec<bool> = (0..24).map(|i| i % 3 == 0).collect();
    let b: Vec<bool> = (0..24).map(|i| i < 7).collect();
    let opts = PoolOptions::default();
    let out = pool_masks(&grid, &g, &[Mask::Bool(&a), Mask::Bool(&b)], &opts).unwrap();
    assert_eq!(out[0], pool_mask(&grid, &g, &Mask::Bool(&a), &opts).unwrap());
    assert_eq!(out[1], pool_mask(&grid, &g, &Mask::Bool(&b), &opts).unwrap());
    let empty = vec![false; 24];
    let e = pool_masks(&grid, &g, &[Mask::Bool(&a), Mask::Bool(&empty)], &opts).unwrap_err().to_string();
    assert!(e.contains("mask 1") && e.contains("covers no cell"), "{e}");
}

#[test]
fn bad_inputs() {
    let g = GridGeometry::whole(4, 4);
    let empty = vec![false; 16];
    let e = project_mask(&Mask::Bool(&empty), &g, 2, 2, Projection::Fraction, "proposal 3").unwrap_err();
    assert!(matches!(&e, Error::Invalid(s) if s.contains("proposal 3")), "{e}");
    // mask entirely outside the crop window
    let mut corner = vec![false; 16];
    corner[0] = true;
    let crop = GridGeometry { image_w: 4, image_h: 4, x0: 2.0, y0: 2.0, x1: 4.0, y1: 4.0 };
    assert!(matches!(
        project_mask(&Mask::Bool(&corner), &crop, 2, 2, Projection::Fraction, "m"),
        Err(Error::Invalid(_))
    ));
    // wrong mask size, RLE of another size
    assert!(matches!(cell_fractions(&Mask::Bool(&[true; 15]), &g, 2, 2), Err(Error::Mismatch(_))));
    let rle = Rle::encode(&[true; 6], 2, 3).unwrap();
    assert!(matches!(cell_fractions(&Mask::Rle(&rle), &g, 2, 2), Err(Error::Mismatch(_))));
    // grid of wrong length, empty sizes, bad geometry
    assert!(matches!(Grid::new(2, 2, 3, &[0.0; 11]), Err(Error::Mismatch(_))));
    assert!(Grid::new(0, 2, 3, &[]).is_err());
    let bad = GridGeometry { x1: 0.0, ..g };
    assert!(cell_fractions(&Mask::Bool(&corner), &bad, 2, 2).is_err());
    // degenerate boxes, sampling ratio 0
    let f = [0.0f32; 4];
    let grid = Grid::new(2, 2, 1, &f).unwrap();
    assert!(roi_align(&grid, &g, [1.0, 1.0, 1.0, 3.0], None).is_err());
    assert!(roi_align(&grid, &g, [1.0, 1.0, 3.0, f64::NAN], None).is_err());
    assert!(roi_align(&grid, &g, [1.0, 1.0, 3.0, 3.0], Some(0)).is_err());
}

#[test]
fn roi_align_by_hand() {
    // 2x2 grid on a 2x2 image, features 0,1,2,3. The whole-image box maps to
    // [-0.5, 1.5) in grid coordinates; adaptive sampling takes 2x2 samples at
    // y, x in {0, 1}: exactly the four cells -> mean 1.5.
    let f = [0.0f32, 1.0, 2.0, 3.0];
    let grid = Grid::new(2, 2, 1, &f).unwrap();
    let g = GridGeometry::whole(2, 2);
    assert_eq!(roi_align(&grid, &g, [0.0, 0.0, 2.0, 2.0], None).unwrap(), vec![1.5]);
    // a 1x1 box [0.5, 1.5)^2: one sample at (0.5, 0.5) -> bilinear mean of all four = 1.5;
    // box [0, 1) x [1, 2): sample at grid (y, x) = (1, 0) -> cell (1, 0) = 2
    assert_eq!(roi_align(&grid, &g, [0.5, 0.5, 1.5, 1.5], None).unwrap(), vec![1.5]);
    assert_eq!(roi_align(&grid, &g, [0.0, 1.0, 1.0, 2.0], None).unwrap(), vec![2.0]);
    // a box far outside: every sample beyond -1 -> 0
    assert_eq!(roi_align(&grid, &g, [10.0, 10.0, 12.0, 12.0], None).unwrap(), vec![0.0]);
}

#[test]
fn roi_align_matches_reference() {
    let cases = fixture("roi_align.json");
    let mut checked = 0;
    for c in cases.as_array().unwrap() {
        let (h, w, dim) = (usz(&c["h"]), usz(&c["w"]), usz(&c["dim"]));
        let feats: Vec<f32> = f64s(&c["features"]).into_iter().map(|v| v as f32).collect();
        let grid = Grid::new(h, w, dim, &feats).unwrap();
        let g = geom_of(c);
        for b in c["boxes"].as_array().unwrap() {
            let bx = f64s(&b["box"]);
            let sr = usz(&b["sampling_ratio"]);
            let got = roi_align(&grid, &g, [bx[0], bx[1], bx[2], bx[3]], (sr > 0).then_some(sr)).unwrap();
            let want = f64s(&b["pooled"]);
            for (a, e) in got.iter().zip(&want) {
                assert!((f64::from(*a) - e).abs() < 1e-5, "box {bx:?} sr {sr}: {a} vs {e}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 54);
}
