//! Helpers shared by the parity tests of labelscope-nn.
#![allow(dead_code)]

use std::path::Path;

/// Shape and values (as f32) of a `.npy` fixture.
pub fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = labelscope_core::npy::read_npy(path).unwrap();
    (a.shape.clone(), a.to_f32_vec(path, "array").unwrap())
}

/// Largest absolute difference of two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
