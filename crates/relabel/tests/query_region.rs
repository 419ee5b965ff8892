//! Region query on a small hand-written cache with a hand-set linear head,
//! checked against closed-form softmax values.
//!
//! Cache: dim 3, recipe `resize256-crop224`, image `a` with a 2×2 grid whose
//! cells hold constant directions: (0,0) = 2·e0, (0,1) = 2·e1, (1,0) =
//! (1,1) = 2·e2 (all exact in f16). Head: linear, W = identity, bias
//! b = (0, 0, 0.5), so the logits of a pooled vector v are v + b.
//!
//! Without an image size the grid covers the 224×224 network input, cells
//! of 112 px; ROI-align (aligned) maps x to grid x/112 − 0.5, so:
//! - box 0,0,112,112: one sample (1 cell) at grid (0, 0) → v = (2, 0, 0),
//!   logits (2, 0, 0.5);
//! - box 0,0,224,224: 2×2 samples at the four cell centres → v = mean =
//!   (0.5, 0.5, 1), logits (0.5, 0.5, 1.5);
//! - box 56,0,168,112: one sample at grid (0.5, 0) → v = (1, 1, 0),
//!   logits (1, 1, 0.5).
//!
//! softmax(z)_i = exp(z_i) / Σ exp(z_j), computed here in f64.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use labelscope_nn::head::{HeadConfig, RegionHead};
use labelscope_relabel::cache::{CacheSpec, CacheWriter, FeatureCache, ImageFeatures, Shard, TokenKind};
use labelscope_relabel::pool::GridGeometry;
use labelscope_relabel::query::{cached_geometry, geometry_for, region_classes, region_classes_many};

fn cache(dir: &Path) -> FeatureCache {
    let spec = CacheSpec {
        backbone: "hand".into(),
        recipe: "resize256-crop224".into(),
        tokens: TokenKind::Patch,
        dim: 3,
        cls: false,
    };
    let mut w = CacheWriter::open(dir, &spec, Shard::ALL).unwrap();
    #[rustfmt::skip]
    let a = [2.0, 0.0, 0.0,   0.0, 2.0, 0.0,
             0.0, 0.0, 2.0,   0.0, 0.0, 2.0];
    let b = [1.0f32; 3 * 3];
    w.append_batch(&[
        ImageFeatures { id: "a", h: 2, w: 2, patches: &a, cls: None },
        ImageFeatures { id: "b", h: 1, w: 3, patches: &b, cls: None },
    ])
    .unwrap();
    w.finish(&["a", "b"]).unwrap();
    FeatureCache::open(dir).unwrap()
}

fn head(in_dim: usize) -> RegionHead {
    let mut wv = vec![0.0f32; 3 * in_dim];
    for i in 0..3.min(in_dim) {
        wv[i * in_dim + i] = 1.0;
    }
    let mut t = HashMap::new();
    t.insert("fc.weight".to_string(), Tensor::from_vec(wv, (3, in_dim), &Device::Cpu).unwrap());
    t.insert("fc.bias".to_string(), Tensor::from_vec(vec![0.0f32, 0.0, 0.5], 3, &Device::Cpu).unwrap());
    RegionHead::from_tensors(HeadConfig::linear(in_dim, 3), &t, Path::new("hand"), &Device::Cpu).unwrap()
}

fn softmax(z: [f64; 3]) -> [f64; 3] {
    let s: f64 = z.iter().map(|v| v.exp()).sum();
    z.map(|v| v.exp() / s)
}

fn check(got: &[(u32, f32)], want: &[(u32, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0, "{got:?} vs {want:?}");
        assert!((f64::from(g.1) - w.1).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

#[test]
fn closed_form_answers() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let h = head(3);
    let g = geometry_for(&c.meta().recipe, None, (2, 2)).unwrap();
    assert_eq!(g, GridGeometry::whole(224, 224));

    let p = softmax([2.0, 0.0, 0.5]);
    check(&region_classes(&c, "a", &g, [0.0, 0.0, 112.0, 112.0], &h, 3).unwrap(), &[(0, p[0]), (2, p[2]), (1, p[1])]);
    let p = softmax([0.5, 0.5, 1.5]);
    // Top 2; classes 0 and 1 tie, the lower index comes first.
    check(&region_classes(&c, "a", &g, [0.0, 0.0, 224.0, 224.0], &h, 2).unwrap(), &[(2, p[2]), (0, p[0])]);
    let p = softmax([1.0, 1.0, 0.5]);
    check(&region_classes(&c, "a", &g, [56.0, 0.0, 168.0, 112.0], &h, 5).unwrap(), &[(0, p[0]), (1, p[1]), (2, p[2])]);

    // Several boxes at once give the same answers, in order.
    let many = region_classes_many(&c, "a", &g, &[[56.0, 0.0, 168.0, 112.0], [0.0, 0.0, 112.0, 112.0]], &h, 1).unwrap();
    let (p1, p2) = (softmax([1.0, 1.0, 0.5]), softmax([2.0, 0.0, 0.5]));
    check(&many[0], &[(0, p1[0])]);
    check(&many[1], &[(0, p2[0])]);
}

#[test]
fn geometry_of_the_recipe_on_the_original_image() {
    // 320x240 with resize256-crop224: shorter side 240 → 256, so the resized
    // image is int(256·320/240) = 341 × 256; the centre crop starts at
    // left = round((341−224)/2) = round(58.5) = 58 (half to even), top = 16.
    // In original pixels: x 58·320/341 .. 282·320/341, y 16·240/256 = 15 .. 240·240/256 = 225.
    let g = geometry_for("resize256-crop224", Some((320, 240)), (2, 2)).unwrap();
    assert_eq!((g.image_w, g.image_h), (320, 240));
    assert!((g.x0 - 58.0 * 320.0 / 341.0).abs() < 1e-9 && (g.x1 - 282.0 * 320.0 / 341.0).abs() < 1e-9, "{g:?}");
    assert!((g.y0 - 15.0).abs() < 1e-12 && (g.y1 - 225.0).abs() < 1e-12, "{g:?}");
    // square256-crop224 on 100x50: crop 16..240 of 256 → x 6.25..93.75, y 3.125..
    let s = geometry_for("square256-crop224", Some((100, 50)), (2, 2)).unwrap();
    assert!((s.x0 - 6.25).abs() < 1e-12 && (s.x1 - 93.75).abs() < 1e-12 && (s.y0 - 3.125).abs() < 1e-12, "{s:?}");
    // fixed recipes and unknown recipes with a size: the whole image.
    assert_eq!(geometry_for("fixed480", Some((320, 240)), (30, 30)).unwrap(), GridGeometry::whole(320, 240));
    assert_eq!(geometry_for("mine", Some((320, 240)), (3, 4)).unwrap(), GridGeometry::whole(320, 240));
    // Unknown recipe and no size: grid cells.
    assert_eq!(geometry_for("mine", None, (3, 4)).unwrap(), GridGeometry::whole(4, 3));

    // The top-left quarter of cell (0,0) in original pixels: half a cell
    // wide and high, so one sample, at grid (−0.25, −0.25), clamped to cell (0,0).
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let bx = [g.x0, g.y0, g.x0 + (g.x1 - g.x0) / 4.0, g.y0 + (g.y1 - g.y0) / 4.0];
    let p = softmax([2.0, 0.0, 0.5]);
    check(&region_classes(&c, "a", &g, bx, &head(3), 1).unwrap(), &[(0, p[0])]);
}

#[test]
fn errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    let g = GridGeometry::whole(224, 224);
    let h = head(3);
    let e = region_classes(&c, "nope", &g, [0.0, 0.0, 10.0, 10.0], &h, 1).unwrap_err().to_string();
    assert!(e.contains("\"nope\"") && e.contains("not in the feature cache"), "{e}");
    let e = region_classes(&c, "a", &g, [0.0, 0.0, 300.0, 100.0], &h, 1).unwrap_err().to_string();
    assert!(e.contains("not inside the 224x224 image"), "{e}");
    let e = region_classes(&c, "a", &g, [-1.0, 0.0, 30.0, 100.0], &h, 1).unwrap_err().to_string();
    assert!(e.contains("not inside"), "{e}");
    let e = region_classes(&c, "a", &g, [10.0, 10.0, 10.0, 20.0], &h, 1).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let e = region_classes(&c, "a", &g, [0.0, f64::NAN, 10.0, 20.0], &h, 1).unwrap_err().to_string();
    assert!(e.contains("not finite"), "{e}");
    let e = region_classes(&c, "a", &g, [0.0, 0.0, 10.0, 20.0], &head(4), 1).unwrap_err().to_string();
    assert!(e.contains("4-dimensional") && e.contains("3-dimensional"), "{e}");
    let e = region_classes(&c, "a", &g, [0.0, 0.0, 10.0, 20.0], &h, 0).unwrap_err().to_string();
    assert!(e.contains("k = 0"), "{e}");
}

#[test]
fn geometry_written_by_the_pipeline_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache(dir.path());
    assert_eq!(cached_geometry(&c).unwrap(), None);
    // images.jsonl (the pipeline's side file): image a is 448x448, the grid on 28..420 (one
    // complete line; the unfinished last line is ignored).
    std::fs::write(
        dir.path().join("images.jsonl"),
        "{\"id\":\"a\",\"file\":\"a.jpg\",\"width\":448,\"height\":448,\"x0\":28,\"y0\":28,\"x1\":420,\"y1\":420}\n{\"id\":\"b\"",
    )
    .unwrap();
    let g = cached_geometry(&c).unwrap().unwrap();
    assert_eq!(g.len(), 1);
    let ga = g["a"];
    assert_eq!(ga, GridGeometry { image_w: 448, image_h: 448, x0: 28.0, y0: 28.0, x1: 420.0, y1: 420.0 });
    // Cells are 196 px; the box 28..73 is under a quarter cell: one sample, clamped to cell (0,0).
    let p = softmax([2.0, 0.0, 0.5]);
    check(&region_classes(&c, "a", &ga, [28.0, 28.0, 73.0, 73.0], &head(3), 1).unwrap(), &[(0, p[0])]);
    // Cell (1,1) (= 2·e2) of the grid: box 224..420 is exactly one cell, one sample at its centre.
    let p = softmax([0.0, 0.0, 2.5]);
    check(&region_classes(&c, "a", &ga, [224.0, 224.0, 420.0, 420.0], &head(3), 1).unwrap(), &[(2, p[2])]);
}
