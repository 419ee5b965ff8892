//! Shared pieces of the inference-only CPU paths (`resnet_infer`, `vit_infer`): read access to a
//! tensor's f32 values, matrix products with `gemm` written straight into their output, and a
//! vectorisable f32 `exp`.

use std::sync::RwLockReadGuard;

use candle_core::{CpuStorage, Storage, Tensor};
use gemm::Parallelism;

/// A read view of the f32 values of a contiguous CPU tensor.
pub(crate) struct Raw<'a> {
    guard: RwLockReadGuard<'a, Storage>,
    start: usize,
    end: usize,
}

impl<'a> Raw<'a> {
    /// The view, or `None` when `t` is not a contiguous f32 tensor on the CPU.
    pub(crate) fn new(t: &'a Tensor) -> Option<Self> {
        let (guard, layout) = t.storage_and_layout();
        let (start, end) = layout.contiguous_offsets()?;
        if !matches!(&*guard, Storage::Cpu(CpuStorage::F32(_))) {
            return None;
        }
        Some(Raw { guard, start, end })
    }

    /// The values, in the tensor's row-major order.
    pub(crate) fn slice(&self) -> &[f32] {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.start..self.end],
            _ => &[], // excluded by `new`
        }
    }
}

/// A matrix operand: values and row/column strides (in elements).
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major contiguous `[rows, cols]` matrix.
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }

    /// Whether element `(rows − 1, cols − 1)` lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst [m, n] (row stride dst_rs, column stride 1) = beta · lhs [m, k] × rhs [k, n]`.
///
/// # Panics
/// If an operand is too short for its shape and strides (a programming error, not user input).
pub(crate) fn gemm_into(
    dst: &mut [f32],
    dst_rs: usize,
    (m, n, k): (usize, usize, usize),
    lhs: Mat,
    rhs: Mat,
    beta: f32,
    par: Parallelism,
) {
    assert!(lhs.fits(m, k) && rhs.fits(k, n) && Mat { data: dst, rs: dst_rs, cs: 1 }.fits(m, n), "gemm_into: operand too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for r in 0..m {
            dst[r * dst_rs..r * dst_rs + n].fill(0.0);
        }
        return;
    }
    // SAFETY: every element addressed by the shapes and strides lies inside its slice (asserted
    // above); `dst` is borrowed mutably, so it aliases neither input.
    unsafe { gemm_raw(dst.as_mut_ptr(), dst_rs, (m, n, k), lhs, rhs, beta, par) }
}

/// [`gemm_into`] on a raw destination pointer.
///
/// # Safety
/// `dst` must be valid for writes of every element `(i, j)` at `i·dst_rs + j`, `i < m`, `j < n`,
/// not aliased by `lhs`/`rhs` nor written by anyone else during the call; `lhs` and `rhs` must
/// hold every element their shapes and strides address.
pub(crate) unsafe fn gemm_raw(
    dst: *mut f32,
    dst_rs: usize,
    (m, n, k): (usize, usize, usize),
    lhs: Mat,
    rhs: Mat,
    beta: f32,
    par: Parallelism,
) {
    debug_assert!(lhs.fits(m, k) && rhs.fits(k, n));
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        false,
        lhs.data.as_ptr(),
        lhs.cs as isize,
        lhs.rs as isize,
        rhs.data.as_ptr(),
        rhs.cs as isize,
        rhs.rs as isize,
        0.0,
        beta,
        false,
        false,
        false,
        par,
    );
}

/// `row ← softmax(row)` = `exp(row − max) / Σ exp(row − max)`, with [`exp_f32`] and reductions
/// written with 16 lanes so that they vectorise. A NaN anywhere gives NaN everywhere.
pub(crate) fn softmax_in_place(row: &mut [f32]) {
    const L: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut mx = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for m in lanes {
        mx = mx.max(m);
    }
    for v in row.iter_mut() {
        *v = exp_f32(*v - mx);
    }
    let mut sums = [0f32; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for (s, &v) in sums.iter_mut().zip(c) {
            *s += v;
        }
    }
    let sum = sums.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// The parallelism of candle's own matrix products (`RAYON_NUM_THREADS` or all cores).
pub(crate) fn parallelism() -> Parallelism {
    let threads = candle_core::utils::get_num_threads();
    if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

/// `eˣ` in f32 without branches or table lookups, so that loops over slices vectorise:
/// `x = n·ln2 + r` with `|r| ≤ ln2/2`, `eʳ` by a degree-6 polynomial, `2ⁿ` built in the exponent
/// bits. Relative error ≤ 3e-7 on [−87, 88] (checked against the C library in the tests); below
/// −87.3 the result is 0 (subnormals flushed), above 88.7 it is +∞; NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Round to nearest by adding and subtracting 1.5·2²³ (`round` would be a libm call without
    // SSE4.1, which stops vectorisation); |xc·log2 e| < 129 is far inside the exact range.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.336_55, 88.722_84);
    let n = (xc * LOG2E + MAGIC) - MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // Taylor coefficients 1/k! (|r| ≤ 0.347: the degree-6 remainder is < 3e-8 relative).
    let mut p = 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2ⁿ for n in [−126, 128]: split in two factors so that n = 128 does not overflow the bits.
    let ni = n as i32;
    let h = ni >> 1;
    let s1 = f32::from_bits(((h + 127) as u32) << 23);
    let s2 = f32::from_bits(((ni - h + 127) as u32) << 23);
    let v = p * s1 * s2;
    let v = if x < -87.336_55 { 0.0 } else { v };
    let v = if x > 88.722_84 { f32::INFINITY } else { v };
    if x.is_nan() {
        x
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_its_bound() {
        extern "C" {
            fn exp(x: f64) -> f64;
        }
        let mut worst = 0f64;
        let mut i = -87_000_000i64;
        while i <= 88_000_000 {
            let x = i as f32 * 1e-6;
            // SAFETY: the C library's pure function exp.
            let want = unsafe { exp(f64::from(x)) };
            let rel = ((f64::from(exp_f32(x)) - want) / want).abs();
            worst = worst.max(rel);
            i += 997;
        }
        assert!(worst <= 3e-7, "max relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-100.0), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!((exp_f32(1.0) - std::f32::consts::E).abs() <= 1e-6);
    }

    #[test]
    fn softmax_matches_a_direct_computation() {
        for len in [1usize, 5, 16, 17, 197, 1000] {
            let mut row: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.3).collect();
            let mx = row.iter().copied().fold(f64::NEG_INFINITY, |a, b| a.max(f64::from(b)));
            let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - mx).exp()).collect();
            let total: f64 = e.iter().sum();
            softmax_in_place(&mut row);
            for (i, (&got, &ei)) in row.iter().zip(&e).enumerate() {
                assert!((f64::from(got) - ei / total).abs() <= 1e-6, "len {len}, [{i}]: {got} vs {}", ei / total);
            }
        }
        let mut row = vec![1.0, f32::NAN, 2.0];
        softmax_in_place(&mut row);
        assert!(row.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn gemm_into_matches_a_naive_product_with_strides() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        // rhs given transposed: element (kk, j) at j·k + kk.
        let bt: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let dst_rs = n + 2;
        let mut dst = vec![f32::NAN; m * dst_rs];
        gemm_into(&mut dst, dst_rs, (m, n, k), Mat::rows(&a, k), Mat { data: &bt, rs: 1, cs: k }, 0.5, Parallelism::None);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 0.5 * (0..k).map(|kk| a[i * k + kk] * bt[j * k + kk]).sum::<f32>();
                assert!((dst[i * dst_rs + j] - want).abs() < 1e-6, "({i}, {j})");
            }
            assert!(dst[i * dst_rs + n].is_nan(), "wrote past the row");
        }
    }
}
