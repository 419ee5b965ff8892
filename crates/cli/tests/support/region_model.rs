//! A hand-written feature cache and region head for tests of the region
//! query: image "a", dim 3, a 2×2 grid of the 224×224 network input
//! (`resize256-crop224`) with cells 2·e0, 2·e1, 2·e2, 2·e2; a linear head
//! W = I, b = (0, 0, 0.5).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use labelscope_nn::head::{HeadConfig, RegionHead};
use labelscope_relabel::cache::{CacheSpec, CacheWriter, ImageFeatures, Shard, TokenKind};

/// Writes the cache into `dir`.
pub fn write_cache(dir: &Path) {
    let spec = CacheSpec {
        backbone: "hand".into(),
        recipe: "resize256-crop224".into(),
        tokens: TokenKind::Patch,
        dim: 3,
        cls: false,
    };
    let mut w = CacheWriter::open(dir, &spec, Shard::ALL).unwrap();
    let a = [2.0f32, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 2.0];
    w.append_batch(&[ImageFeatures { id: "a", h: 2, w: 2, patches: &a, cls: None }]).unwrap();
    w.finish(&["a"]).unwrap();
}

/// Writes the head (3 classes over `in_dim` features) to `path`.
pub fn write_head(path: &Path, in_dim: usize) {
    let mut wv = vec![0.0f32; 3 * in_dim];
    for i in 0..3 {
        wv[i * in_dim + i] = 1.0;
    }
    let mut t = HashMap::new();
    t.insert("fc.weight".to_string(), Tensor::from_vec(wv, (3, in_dim), &Device::Cpu).unwrap());
    t.insert("fc.bias".to_string(), Tensor::from_vec(vec![0.0f32, 0.0, 0.5], 3, &Device::Cpu).unwrap());
    let h = RegionHead::from_tensors(HeadConfig::linear(in_dim, 3), &t, Path::new("hand"), &Device::Cpu).unwrap();
    h.save(path).unwrap();
}
