//! Normalized-cut object proposals on a patch feature map: TokenCut and
//! MaskCut (as used by CutLER).
//!
//! The input is a row-major `f32` feature map of shape `[h, w, d]`; patch
//! `i = row * w + col`. Every rule below is implemented exactly as stated and
//! mirrored by the independent reference `tests/reference/ncut_ref.py`.
//!
//! # One cut ([`normalized_cut`])
//!
//! 1. **Normalisation.** Each patch feature is divided by its L2 norm. A patch
//!    with zero norm, or any non-finite value, is an [`Error::Invalid`] naming
//!    the patch `(row, col)`.
//! 2. **Affinity.** `A_ij = 1` if `cos(f_i, f_j) > tau`, else `eps`, including
//!    `i == j` (`cos = 1 > tau`, so the diagonal is 1). `tau` must lie in
//!    `(-1, 1)` and `eps` in `(0, 1]`. The cosines are computed in `f32`
//!    arithmetic from the normalised features. Internally `A = eps + (1 - eps) B`
//!    with `B` a 0/1 matrix stored as a bitset, so `A v = eps * sum(v) + (1 - eps) B v`.
//! 3. **Eigenvector.** With `D = diag(row sums of A)`, `x` is the eigenvector of
//!    the second-smallest eigenvalue of `(D - A) x = λ D x`. It is computed from
//!    the symmetric problem on `M = D^{-1/2} A D^{-1/2}`: the largest eigenpair
//!    of `M` is known (`μ = 1`, `y1 ∝ sqrt(diag D)`) and deflated; the largest
//!    eigenpair `(μ, y)` of `M` on the complement of `y1` is found by Lanczos
//!    with full reorthogonalisation (converged when the Ritz residual is at most
//!    `1e-10`), falling back to a dense symmetric eigensolver (Householder
//!    tridiagonalisation + implicit QL) when Lanczos does not converge. The
//!    result must satisfy `‖M y − μ y‖ ≤ 1e-6 ‖M‖` (here `‖M‖ = 1`), else an
//!    error is returned. Then `x = D^{-1/2} y` with `‖y‖ = 1` (so `xᵀ D x = 1`).
//!    **Sign convention** (the eigenvector's sign is otherwise arbitrary, and
//!    the corner rule is not sign-symmetric): `x` is negated if needed so that
//!    its entry of largest magnitude (lowest index on ties) is positive.
//! 4. **Bipartition** ([`bipartition`]): foreground = `x > mean(x)`; seed =
//!    `argmax |x|`. With the corner rule (MaskCut), if at least 3 of the 4
//!    corner patches are foreground the partition is flipped; otherwise (and
//!    always without the corner rule, TokenCut) it is flipped if the seed is
//!    not foreground. A flip sets `x := -x`, recomputes foreground as
//!    `x > mean(x)` of the flipped vector and re-picks the seed as `argmax x`
//!    of the flipped vector (not of `|x|`). The mask is the 4-connected
//!    component of the foreground containing the seed (empty if the seed is not
//!    foreground, which only a constant vector can cause). All argmax ties go
//!    to the lowest index. The returned eigenvector is the one before any flip.
//!
//! # MaskCut ([`maskcut`])
//!
//! Up to `max_masks` cuts. Before each cut after the first, the features of
//! every patch covered by an earlier cut's mask (kept **or** dropped) are set to
//! zero. A zeroed patch has cosine exactly 0 with every patch, itself included,
//! so its affinities are `1` if `0 > tau` (i.e. `tau < 0`) and `eps` otherwise,
//! with no special case for the diagonal. The iteration stops early when every
//! patch is zeroed. For cut `k` with mask `raw_k`:
//! - `excl_k = raw_k AND NOT union(masks returned so far)`;
//! - the mask is dropped if `IoU(raw_k, raw_{k-1}) > 0.5` (the previous cut's
//!   raw mask, whether it was kept or not; IoU of two empty masks is 0) or if
//!   `|excl_k| ≤ 0.01 · n`;
//! - otherwise `excl_k` is returned. A dropped mask does not end the
//!   iteration: its patches are still zeroed and the next cut runs.
//!
//! # TokenCut ([`tokencut`])
//!
//! A single cut without the corner rule, plus the inclusive bounding box
//! `[row0, col0, row1, col1]` of its mask in patch coordinates.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Parameters of the normalized cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NcutParams {
    /// Cosine threshold: `A_ij = 1` if `cos > tau`, else `eps`. Must be in `(-1, 1)`.
    pub tau: f32,
    /// Affinity of dissimilar patches. Must be in `(0, 1]`.
    pub eps: f32,
    /// Maximum number of cuts of MaskCut (at least 1).
    pub max_masks: usize,
}

impl Default for NcutParams {
    /// `tau = 0.15`, `eps = 1e-5`, `max_masks = 3` (CutLER's MaskCut defaults).
    fn default() -> Self {
        NcutParams { tau: 0.15, eps: 1e-5, max_masks: 3 }
    }
}

/// The result of one normalized cut.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// The selected patches, `h * w`, row-major.
    pub mask: Vec<bool>,
    /// The generalized eigenvector `x` (`xᵀ D x = 1`, sign convention of the module docs), before any flip.
    pub eigenvector: Vec<f32>,
    /// The seed patch (index `row * w + col`) after the flip rule.
    pub seed: usize,
    /// Whether the partition was flipped.
    pub flipped: bool,
}

/// Residual tolerance of a Lanczos Ritz pair to count as converged.
const LANCZOS_TOL: f64 = 1e-10;
/// Accepted residual `‖M y − μ y‖ / ‖M‖` of the returned eigenpair.
const RESIDUAL_TOL: f64 = 1e-6;
/// Largest Krylov dimension before falling back to the dense solver.
const LANCZOS_MAX: usize = 400;
/// Problems up to this size go straight to the dense solver.
const DENSE_DIRECT: usize = 24;

fn check_shape(len: usize, h: usize, w: usize, d: usize) -> Result<usize> {
    let n = h.checked_mul(w).ok_or_else(|| Error::Invalid(format!("grid {h}x{w} is too large")))?;
    if n < 4 {
        return Err(Error::Invalid(format!("the grid must have at least 4 patches, got {h}x{w}")));
    }
    if d == 0 {
        return Err(Error::Invalid("the feature dimension d must be at least 1".into()));
    }
    let want = n.checked_mul(d).ok_or_else(|| Error::Invalid("feature map is too large".into()))?;
    if len != want {
        return Err(Error::Invalid(format!(
            "expected {h}*{w}*{d} = {want} feature values (row-major [h, w, d]), got {len}"
        )));
    }
    Ok(n)
}

fn check_params(p: &NcutParams) -> Result<()> {
    if !(p.tau > -1.0 && p.tau < 1.0) {
        return Err(Error::Invalid(format!("tau must be in (-1, 1), got {}", p.tau)));
    }
    if !(p.eps > 0.0 && p.eps <= 1.0) {
        return Err(Error::Invalid(format!("eps must be in (0, 1], got {}", p.eps)));
    }
    Ok(())
}

/// L2-normalised features, rows padded to a multiple of 8 values (zeros) and
/// the row count padded to a multiple of `ROWS_PAD` (zero rows).
struct Normalized {
    n: usize,
    dp: usize,
    data: Vec<f32>,
}

const ROWS_PAD: usize = 12;

fn normalize(features: &[f32], w: usize, d: usize, n: usize) -> Result<Normalized> {
    let dp = d.div_ceil(8) * 8;
    let np = n.div_ceil(ROWS_PAD) * ROWS_PAD;
    let mut data = vec![0f32; np * dp];
    // Rows in parallel; the reported error is the one of the lowest patch index.
    let bad = data
        .par_chunks_mut(dp)
        .take(n)
        .enumerate()
        .filter_map(|(i, out)| {
            let f = &features[i * d..(i + 1) * d];
            if f.iter().any(|v| !v.is_finite()) {
                return Some((i, "has a non-finite feature value"));
            }
            let norm = f.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
            if norm == 0.0 {
                return Some((i, "has a zero feature vector (norm 0)"));
            }
            for (o, &v) in out[..d].iter_mut().zip(f) {
                *o = (v as f64 / norm) as f32;
            }
            None
        })
        .min_by_key(|&(i, _)| i);
    if let Some((i, what)) = bad {
        return Err(Error::Invalid(format!("patch (row {}, col {}) {what}", i / w, i % w)));
    }
    Ok(Normalized { n, dp, data })
}

/// The 0/1 matrix `B` as a bitset (row-major, `stride` bytes a row, bit `j % 8` of byte `j / 8`).
struct Affinity {
    n: usize,
    stride: usize,
    bits: Vec<u8>,
    eps: f64,
}

const MR: usize = 3;
const NR: usize = 4;

/// `acc[r][c] = sum_k a_r[k] * b_c[k]` over 8-lane accumulators (identical order for every pair).
#[inline(always)]
fn kernel_body(a: &[f32], b: &[f32], dp: usize, out: &mut [[f32; NR]; MR]) {
    let mut acc = [[[0f32; 8]; NR]; MR];
    let mut k = 0;
    while k < dp {
        let mut av = [[0f32; 8]; MR];
        for (r, x) in av.iter_mut().enumerate() {
            x.copy_from_slice(&a[r * dp + k..r * dp + k + 8]);
        }
        for c in 0..NR {
            let bv: &[f32] = &b[c * dp + k..c * dp + k + 8];
            for r in 0..MR {
                for l in 0..8 {
                    acc[r][c][l] += av[r][l] * bv[l];
                }
            }
        }
        k += 8;
    }
    for r in 0..MR {
        for c in 0..NR {
            let v = &acc[r][c];
            out[r][c] = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
        }
    }
}

/// AVX2/FMA version of [`kernel_body`]: the same accumulation order (8 lanes,
/// chunk by chunk, then the same horizontal sum), with explicit intrinsics.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)]
unsafe fn kernel_avx2(a: &[f32], b: &[f32], dp: usize, out: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    assert!(a.len() >= MR * dp && b.len() >= NR * dp && dp.is_multiple_of(8));
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); NR]; MR];
    let mut k = 0;
    while k < dp {
        // SAFETY: k + 8 <= dp and the slices hold MR (NR) rows of dp values (asserted above).
        let av: [__m256; MR] = std::array::from_fn(|r| unsafe { _mm256_loadu_ps(pa.add(r * dp + k)) });
        for c in 0..NR {
            let bv = unsafe { _mm256_loadu_ps(pb.add(c * dp + k)) };
            for r in 0..MR {
                acc[r][c] = _mm256_fmadd_ps(av[r], bv, acc[r][c]);
            }
        }
        k += 8;
    }
    for r in 0..MR {
        for c in 0..NR {
            let mut v = [0f32; 8];
            unsafe { _mm256_storeu_ps(v.as_mut_ptr(), acc[r][c]) };
            out[r][c] = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
        }
    }
}

fn kernel(a: &[f32], b: &[f32], dp: usize, out: &mut [[f32; NR]; MR], avx2: bool) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when the CPU supports AVX2 and FMA (checked at run time).
        unsafe { kernel_avx2(a, b, dp, out) };
        return;
    }
    let _ = avx2;
    kernel_body(a, b, dp, out)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn affinity(norm: &Normalized, tau: f32, eps: f32) -> Affinity {
    let (n, dp) = (norm.n, norm.dp);
    let stride = n.div_ceil(8);
    let mut bits = vec![0u8; n * stride];
    let avx2 = has_avx2();
    const TILE: usize = 48;
    // Phase 1: the upper block triangle. Row tiles of TILE rows (a multiple of
    // MR and 8); in each, column tiles from the tile's own first row on.
    bits.par_chunks_mut(stride * TILE).enumerate().for_each(|(t, rows)| {
        let i0 = t * TILE;
        let i1 = (i0 + TILE).min(n);
        let mut out = [[0f32; NR]; MR];
        let mut j0 = i0;
        while j0 < n {
            let j1 = (j0 + TILE).min(n);
            let mut i = i0;
            while i < i1 {
                let a = &norm.data[i * dp..(i + MR) * dp];
                let mut j = j0;
                while j < j1 {
                    kernel(a, &norm.data[j * dp..(j + NR) * dp], dp, &mut out, avx2);
                    for (r, o) in out.iter().enumerate() {
                        let ii = i + r;
                        if ii >= i1 {
                            break;
                        }
                        for (c, &v) in o.iter().enumerate() {
                            let jj = j + c;
                            if jj < n && v > tau {
                                rows[(ii - i0) * stride + jj / 8] |= 1 << (jj % 8);
                            }
                        }
                    }
                    j += NR;
                }
                i += MR;
            }
            j0 += TILE;
        }
    });
    // Phase 2: mirror into the lower block triangle, 8 rows (one byte column) at a time.
    // The dot products are bitwise symmetric (same accumulation order for (i, j) and (j, i)).
    let lower: Vec<Vec<u8>> = (0..stride)
        .into_par_iter()
        .map(|g| {
            let tile_start = (8 * g / TILE) * TILE;
            let mut part = vec![0u8; 8 * stride];
            for j in 0..tile_start {
                let byte = bits[j * stride + g];
                if byte == 0 {
                    continue;
                }
                for r in 0..8 {
                    if byte >> r & 1 == 1 {
                        part[r * stride + j / 8] |= 1 << (j % 8);
                    }
                }
            }
            part
        })
        .collect();
    for (g, part) in lower.iter().enumerate() {
        for r in 0..8 {
            let i = 8 * g + r;
            if i >= n {
                break;
            }
            for (b, &p) in bits[i * stride..(i + 1) * stride].iter_mut().zip(&part[r * stride..(r + 1) * stride]) {
                *b |= p;
            }
        }
    }
    Affinity { n, stride, bits, eps: eps as f64 }
}

impl Affinity {
    fn row_sums(&self) -> Vec<f64> {
        let n = self.n as f64;
        (0..self.n)
            .map(|i| {
                let ones: u32 = self.bits[i * self.stride..(i + 1) * self.stride].iter().map(|b| b.count_ones()).sum();
                self.eps * n + (1.0 - self.eps) * ones as f64
            })
            .collect()
    }

    /// `out = A v = eps * sum(v) + (1 - eps) * B v`. `B v` uses a per-call
    /// table of the 16 partial sums of every 4-bit group of `v` (small enough
    /// to stay in cache), so a row costs one lookup per 4 columns.
    fn matvec(&self, v: &[f64], out: &mut [f64]) {
        let s = self.stride;
        let mut table = vec![0f64; 2 * s * 16];
        for (g, t) in table.chunks_mut(16).enumerate() {
            for b in 1..16usize {
                let j = g * 4 + b.trailing_zeros() as usize;
                t[b] = t[b & (b - 1)] + if j < self.n { v[j] } else { 0.0 };
            }
        }
        let total: f64 = v.iter().sum();
        let (eps, one_m) = (self.eps, 1.0 - self.eps);
        out.par_chunks_mut(64).enumerate().for_each(|(c, o)| {
            for (r, oi) in o.iter_mut().enumerate() {
                let i = c * 64 + r;
                let row = &self.bits[i * s..(i + 1) * s];
                let (mut a0, mut a1) = (0f64, 0f64);
                for (t, &b) in table.chunks_exact(32).zip(row) {
                    a0 += t[(b & 15) as usize];
                    a1 += t[16 + (b >> 4) as usize];
                }
                *oi = eps * total + one_m * (a0 + a1);
            }
        });
    }

    fn dense(&self) -> Vec<f64> {
        let n = self.n;
        let mut a = vec![self.eps; n * n];
        for i in 0..n {
            for j in 0..n {
                if self.bits[i * self.stride + j / 8] >> (j % 8) & 1 == 1 {
                    a[i * n + j] = 1.0;
                }
            }
        }
        a
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

fn normalize_vec(v: &mut [f64]) -> f64 {
    let nrm = dot(v, v).sqrt();
    if nrm > 0.0 {
        v.iter_mut().for_each(|x| *x /= nrm);
    }
    nrm
}

/// Deterministic pseudo-random start vector (SplitMix64).
fn random_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut s = crate::rng::SplitMix64(seed);
    (0..n).map(|_| (s.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5).collect()
}

/// Largest eigenpair of the symmetric operator `matvec` restricted to the
/// orthogonal complement of the unit vectors `deflate`, by Lanczos with full
/// reorthogonalisation. `None` when not converged within `kmax` steps.
fn lanczos_largest(
    n: usize,
    matvec: &dyn Fn(&[f64], &mut [f64]),
    deflate: &[Vec<f64>],
    kmax: usize,
    tol: f64,
) -> Option<(f64, Vec<f64>)> {
    let dim = n.checked_sub(deflate.len())?;
    if dim == 0 {
        return None;
    }
    let kmax = kmax.min(dim);
    let orth = |w: &mut [f64], basis: &[Vec<f64>]| {
        for _ in 0..2 {
            for q in deflate.iter().chain(basis) {
                let c = dot(q, w);
                axpy(-c, q, w);
            }
        }
    };
    let mut basis: Vec<Vec<f64>> = Vec::new();
    let mut alpha: Vec<f64> = Vec::new();
    let mut beta: Vec<f64> = Vec::new(); // beta[k] couples k and k+1
    let mut seed = 0x5EED_u64;
    let mut q = random_vec(n, seed);
    orth(&mut q, &basis);
    if normalize_vec(&mut q) == 0.0 {
        return None;
    }
    let mut w = vec![0f64; n];
    let mut next_check = 20.min(kmax);
    loop {
        matvec(&q, &mut w);
        let a = dot(&q, &w);
        basis.push(q.clone());
        alpha.push(a);
        orth(&mut w, &basis);
        let b = normalize_vec(&mut w);
        let k = basis.len();
        let breakdown = b <= 1e-10 * (1.0 + a.abs());
        // A breakdown means the Krylov space of the (random, hence generic)
        // start vector is invariant: it holds a vector of every eigenspace
        // that start vector touches, and its Ritz pairs are exact.
        if breakdown || k >= next_check || k == kmax {
            // Eigen-decomposition of the tridiagonal T (k x k).
            let mut d = alpha.clone();
            let mut e = vec![0f64; k];
            e[1..k].copy_from_slice(&beta[..k - 1]);
            let mut z = identity(k);
            tql2(&mut d, &mut e, &mut z, k).ok()?;
            let top = k - 1;
            let s = &z[top * k..(top + 1) * k]; // column-major: eigenvector `top` is contiguous
            let resid = if breakdown { 0.0 } else { b * s[k - 1].abs() };
            if resid <= tol || k == dim {
                let mut y = vec![0f64; n];
                for (qj, &sj) in basis.iter().zip(s) {
                    axpy(sj, qj, &mut y);
                }
                if normalize_vec(&mut y) == 0.0 {
                    return None;
                }
                return Some((d[top], y));
            }
            if k == kmax {
                return None;
            }
            next_check = k + (k / 4).max(10);
            next_check = next_check.min(kmax);
        }
        if breakdown {
            // Invariant subspace: continue with a fresh vector orthogonal to everything so far.
            beta.push(0.0);
            let mut fresh = None;
            for _ in 0..5 {
                seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut r = random_vec(n, seed);
                orth(&mut r, &basis);
                if normalize_vec(&mut r) > 1e-8 {
                    fresh = Some(r);
                    break;
                }
            }
            q = fresh?;
        } else {
            beta.push(b);
            std::mem::swap(&mut q, &mut w);
        }
    }
}

fn identity(n: usize) -> Vec<f64> {
    let mut z = vec![0f64; n * n];
    for i in 0..n {
        z[i * n + i] = 1.0;
    }
    z
}

/// Householder reduction of the symmetric row-major `v` (n x n) to tridiagonal
/// form: on return `d` holds the diagonal, `e[1..]` the sub-diagonal and `v`
/// the accumulated orthogonal transformation (row-major).
fn tred2(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    let ix = |r: usize, c: usize| r * n + c;
    for j in 0..n {
        d[j] = v[ix(n - 1, j)];
    }
    for i in (1..n).rev() {
        let mut scale = 0.0;
        let mut h = 0.0;
        for dk in d.iter().take(i) {
            scale += dk.abs();
        }
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[ix(i - 1, j)];
                v[ix(i, j)] = 0.0;
                v[ix(j, i)] = 0.0;
            }
        } else {
            for dk in d.iter_mut().take(i) {
                *dk /= scale;
                h += *dk * *dk;
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for ej in e.iter_mut().take(i) {
                *ej = 0.0;
            }
            for j in 0..i {
                f = d[j];
                v[ix(j, i)] = f;
                g = e[j] + v[ix(j, j)] * f;
                for k in j + 1..i {
                    g += v[ix(k, j)] * d[k];
                    e[k] += v[ix(k, j)] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for k in j..i {
                    v[ix(k, j)] -= f * e[k] + g * d[k];
                }
                d[j] = v[ix(i - 1, j)];
                v[ix(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    for i in 0..n - 1 {
        v[ix(n - 1, i)] = v[ix(i, i)];
        v[ix(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[ix(k, i + 1)] / h;
            }
            for j in 0..=i {
                let mut g = 0.0;
                for k in 0..=i {
                    g += v[ix(k, i + 1)] * v[ix(k, j)];
                }
                for k in 0..=i {
                    v[ix(k, j)] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[ix(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[ix(n - 1, j)];
        v[ix(n - 1, j)] = 0.0;
    }
    v[ix(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL on a symmetric tridiagonal matrix (`d` diagonal, `e[1..]`
/// sub-diagonal). `z` is column-major (`z[c * n + r]`, eigenvector `c`
/// contiguous) and is multiplied by the rotations. On return the eigenvalues
/// in `d` are ascending, with the matching columns of `z`.
fn tql2(d: &mut [f64], e: &mut [f64], z: &mut [f64], n: usize) -> Result<()> {
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            let mut iter = 0;
            loop {
                iter += 1;
                if iter > 100 {
                    return Err(Error::Invalid("dense eigensolver (implicit QL) did not converge".into()));
                }
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for di in d.iter_mut().take(n).skip(l + 2) {
                    *di -= h;
                }
                f += h;
                p = d[m];
                let mut c = 1.0;
                let mut c2 = c;
                let mut c3 = c;
                let el1 = e[l + 1];
                let mut s = 0.0;
                let mut s2 = 0.0;
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    let (lo, hi) = z.split_at_mut((i + 1) * n);
                    let zi = &mut lo[i * n..];
                    let zi1 = &mut hi[..n];
                    for k in 0..n {
                        let hk = zi1[k];
                        zi1[k] = s * zi[k] + c * hk;
                        zi[k] = c * zi[k] - s * hk;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    // Selection sort, ascending.
    for i in 0..n.saturating_sub(1) {
        let mut k = i;
        for j in i + 1..n {
            if d[j] < d[k] {
                k = j;
            }
        }
        if k != i {
            d.swap(i, k);
            for r in 0..n {
                z.swap(i * n + r, k * n + r);
            }
        }
    }
    Ok(())
}

/// All eigenpairs of the symmetric row-major `n x n` matrix `a`
/// (Householder tridiagonalisation + implicit QL). Returns the eigenvalues in
/// ascending order and the eigenvectors, vector `k` at `[k * n..(k + 1) * n]`.
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if n == 0 || a.len() != n * n {
        return Err(Error::Invalid(format!("expected a non-empty square matrix of {n}x{n} values, got {}", a.len())));
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid("matrix has non-finite values".into()));
    }
    let mut v = a.to_vec();
    let mut d = vec![0f64; n];
    let mut e = vec![0f64; n];
    tred2(&mut v, &mut d, &mut e, n);
    // Transpose to column-major for the QL rotations.
    let mut z = vec![0f64; n * n];
    for r in 0..n {
        for c in 0..n {
            z[c * n + r] = v[r * n + c];
        }
    }
    tql2(&mut d, &mut e, &mut z, n)?;
    Ok((d, z))
}

/// Largest eigenpair of a symmetric `n x n` operator on the orthogonal
/// complement of the unit vectors in `deflate`, by Lanczos with full
/// reorthogonalisation (`None` if not converged within `kmax` steps to Ritz
/// residual `tol`). Exposed for tests.
pub fn lanczos_top(
    n: usize,
    matvec: &dyn Fn(&[f64], &mut [f64]),
    deflate: &[Vec<f64>],
    kmax: usize,
    tol: f64,
) -> Option<(f64, Vec<f64>)> {
    lanczos_largest(n, matvec, deflate, kmax, tol)
}

fn second_eigen_internal(aff: &Affinity) -> Result<(f64, Vec<f64>)> {
    let n = aff.n;
    let dsum = aff.row_sums();
    let dis: Vec<f64> = dsum.iter().map(|&x| 1.0 / x.sqrt()).collect();
    let mut y1: Vec<f64> = dsum.iter().map(|&x| x.sqrt()).collect();
    normalize_vec(&mut y1);
    let matvec = |v: &[f64], out: &mut [f64]| {
        let u: Vec<f64> = v.iter().zip(&dis).map(|(a, b)| a * b).collect();
        aff.matvec(&u, out);
        out.iter_mut().zip(&dis).for_each(|(o, s)| *o *= s);
    };
    let deflate = vec![y1.clone()];
    let found = if n > DENSE_DIRECT { lanczos_largest(n, &matvec, &deflate, LANCZOS_MAX, LANCZOS_TOL) } else { None };
    let (mu, y) = match found {
        Some(p) => p,
        None => {
            let a = aff.dense();
            let mut m = vec![0f64; n * n];
            for i in 0..n {
                for j in 0..n {
                    m[i * n + j] = dis[i] * a[i * n + j] * dis[j];
                }
            }
            let (vals, vecs) = symmetric_eigen(&m, n)?;
            // Largest is μ = 1 (y1); the second-largest is the wanted one.
            let k = n - 2;
            let mut y = vecs[k * n..(k + 1) * n].to_vec();
            normalize_vec(&mut y);
            (vals[k], y)
        }
    };
    let mut my = vec![0f64; n];
    matvec(&y, &mut my);
    let resid = my.iter().zip(&y).map(|(a, b)| (a - mu * b).powi(2)).sum::<f64>().sqrt();
    if resid.is_nan() || resid > RESIDUAL_TOL {
        return Err(Error::Invalid(format!(
            "eigensolver did not converge: residual ‖My − μy‖ = {resid:e} exceeds {RESIDUAL_TOL:e}·‖M‖"
        )));
    }
    let mut x: Vec<f64> = y.iter().zip(&dis).map(|(a, b)| a * b).collect();
    let top = argmax_by(&x, |v| v.abs());
    if x[top] < 0.0 {
        x.iter_mut().for_each(|v| *v = -*v);
    }
    Ok((1.0 - mu, x))
}

/// The generalized eigenvector `x` of the second-smallest eigenvalue `λ` of
/// `(D − A) x = λ D x` for the feature map `[h, w, d]` (steps 1–3 of the module
/// docs), as `(λ, x)` with `xᵀ D x = 1` and the module's sign convention.
pub fn second_eigenvector(
    features: &[f32],
    h: usize,
    w: usize,
    d: usize,
    params: &NcutParams,
) -> Result<(f64, Vec<f64>)> {
    let n = check_shape(features.len(), h, w, d)?;
    check_params(params)?;
    let norm = normalize(features, w, d, n)?;
    second_eigen_internal(&affinity(&norm, params.tau, params.eps))
}

fn argmax_by(x: &[f64], key: impl Fn(f64) -> f64) -> usize {
    let mut best = 0;
    for i in 1..x.len() {
        if key(x[i]) > key(x[best]) {
            best = i;
        }
    }
    best
}

/// The 4-connected component of `fg` containing `seed` (empty when `seed` is not foreground).
pub fn component4(fg: &[bool], h: usize, w: usize, seed: usize) -> Vec<bool> {
    let mut out = vec![false; fg.len()];
    if seed >= fg.len() || fg.len() != h * w || !fg[seed] {
        return out;
    }
    let mut stack = vec![seed];
    out[seed] = true;
    while let Some(i) = stack.pop() {
        let (r, c) = (i / w, i % w);
        let mut push = |j: usize| {
            if fg[j] && !out[j] {
                out[j] = true;
                stack.push(j);
            }
        };
        if r > 0 {
            push(i - w);
        }
        if r + 1 < h {
            push(i + w);
        }
        if c > 0 {
            push(i - 1);
        }
        if c + 1 < w {
            push(i + 1);
        }
    }
    out
}

fn bipartition_f64(x: &[f64], h: usize, w: usize, corner_rule: bool) -> (Vec<bool>, usize, bool) {
    let n = x.len();
    let mean = x.iter().sum::<f64>() / n as f64;
    let fg: Vec<bool> = x.iter().map(|&v| v > mean).collect();
    let seed = argmax_by(x, |v| v.abs());
    let corners = [0, w - 1, (h - 1) * w, h * w - 1];
    let n_corner = corners.iter().filter(|&&c| fg[c]).count();
    let flipped = if corner_rule && n_corner >= 3 { true } else { !fg[seed] };
    if flipped {
        let xf: Vec<f64> = x.iter().map(|v| -v).collect();
        let mean_f = xf.iter().sum::<f64>() / n as f64;
        let fgf: Vec<bool> = xf.iter().map(|&v| v > mean_f).collect();
        let seed_f = argmax_by(&xf, |v| v);
        (component4(&fgf, h, w, seed_f), seed_f, true)
    } else {
        (component4(&fg, h, w, seed), seed, false)
    }
}

/// Step 4 of the module docs on a given eigenvector `x` (`h * w` values):
/// foreground `x > mean(x)`, the seed and flip rules (the corner rule when
/// `corner_rule`), and the seed's 4-connected component.
pub fn bipartition(x: &[f32], h: usize, w: usize, corner_rule: bool) -> Result<Cut> {
    let n = h.checked_mul(w).filter(|&n| n >= 4 && n == x.len()).ok_or_else(|| {
        Error::Invalid(format!("expected an eigenvector of h*w = {h}*{w} values (at least 4), got {}", x.len()))
    })?;
    let _ = n;
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid("eigenvector has non-finite values".into()));
    }
    let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (mask, seed, flipped) = bipartition_f64(&xd, h, w, corner_rule);
    Ok(Cut { mask, eigenvector: x.to_vec(), seed, flipped })
}

fn cut_normalized(norm: &Normalized, h: usize, w: usize, params: &NcutParams, corner_rule: bool) -> Result<(f64, Cut)> {
    let aff = affinity(norm, params.tau, params.eps);
    let (lambda, x) = second_eigen_internal(&aff)?;
    let (mask, seed, flipped) = bipartition_f64(&x, h, w, corner_rule);
    Ok((lambda, Cut { mask, eigenvector: x.iter().map(|&v| v as f32).collect(), seed, flipped }))
}

/// One normalized cut of the feature map `[h, w, d]` (module docs, steps 1–4);
/// `corner_rule` selects MaskCut's flip rule (true) or TokenCut's (false).
pub fn normalized_cut(
    features: &[f32],
    h: usize,
    w: usize,
    d: usize,
    params: &NcutParams,
    corner_rule: bool,
) -> Result<Cut> {
    Ok(normalized_cut_with_eigenvalue(features, h, w, d, params, corner_rule)?.1)
}

/// [`normalized_cut`] that also returns the eigenvalue `λ` of the cut.
pub fn normalized_cut_with_eigenvalue(
    features: &[f32],
    h: usize,
    w: usize,
    d: usize,
    params: &NcutParams,
    corner_rule: bool,
) -> Result<(f64, Cut)> {
    let n = check_shape(features.len(), h, w, d)?;
    check_params(params)?;
    let norm = normalize(features, w, d, n)?;
    cut_normalized(&norm, h, w, params, corner_rule)
}

fn iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let uni = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if uni == 0 {
        0.0
    } else {
        inter as f64 / uni as f64
    }
}

/// MaskCut: up to `params.max_masks` cuts with the corner rule, zeroing the
/// patches of earlier cuts, dropping near-duplicates and tiny masks (module
/// docs). The returned masks are pairwise disjoint.
pub fn maskcut(features: &[f32], h: usize, w: usize, d: usize, params: &NcutParams) -> Result<Vec<Vec<bool>>> {
    Ok(maskcut_detailed(features, h, w, d, params)?.into_iter().map(|m| m.mask).collect())
}

/// One mask returned by [`maskcut_detailed`].
#[derive(Debug, Clone, PartialEq)]
pub struct MaskCutMask {
    /// The patches of the mask, `h * w`, row-major (earlier masks' patches excluded).
    pub mask: Vec<bool>,
    /// The eigenvalue `λ` of the cut that produced the mask (smaller = cleaner cut).
    pub eigenvalue: f64,
    /// The 0-based index of that cut (cuts whose mask was dropped count too).
    pub cut: usize,
}

/// [`maskcut`] with the eigenvalue and cut index of each returned mask.
pub fn maskcut_detailed(
    features: &[f32],
    h: usize,
    w: usize,
    d: usize,
    params: &NcutParams,
) -> Result<Vec<MaskCutMask>> {
    let n = check_shape(features.len(), h, w, d)?;
    check_params(params)?;
    if params.max_masks == 0 {
        return Err(Error::Invalid("max_masks must be at least 1".into()));
    }
    let mut norm = normalize(features, w, d, n)?;
    let dp = norm.dp;
    let mut zeroed = vec![false; n];
    let mut union = vec![false; n];
    let mut prev_raw: Option<Vec<bool>> = None;
    let mut out = Vec::new();
    for k in 0..params.max_masks {
        if zeroed.iter().all(|&z| z) {
            break;
        }
        let (lambda, cut) = cut_normalized(&norm, h, w, params, true)?;
        let raw = cut.mask;
        for i in 0..n {
            if raw[i] && !zeroed[i] {
                zeroed[i] = true;
                norm.data[i * dp..(i + 1) * dp].iter_mut().for_each(|v| *v = 0.0);
            }
        }
        let excl: Vec<bool> = raw.iter().zip(&union).map(|(&r, &u)| r && !u).collect();
        let area = excl.iter().filter(|&&b| b).count();
        let dup = prev_raw.as_ref().is_some_and(|p| iou(&raw, p) > 0.5);
        if !dup && (area as f64) > 0.01 * n as f64 {
            union.iter_mut().zip(&excl).for_each(|(u, &e)| *u |= e);
            out.push(MaskCutMask { mask: excl, eigenvalue: lambda, cut: k });
        }
        prev_raw = Some(raw);
    }
    Ok(out)
}

/// TokenCut: one cut without the corner rule; returns the mask and its
/// inclusive bounding box `[row0, col0, row1, col1]` in patch coordinates.
pub fn tokencut(
    features: &[f32],
    h: usize,
    w: usize,
    d: usize,
    params: &NcutParams,
) -> Result<(Vec<bool>, [usize; 4])> {
    let cut = normalized_cut(features, h, w, d, params, false)?;
    let mut bbox = [usize::MAX, usize::MAX, 0, 0];
    for (i, _) in cut.mask.iter().enumerate().filter(|(_, &m)| m) {
        let (r, c) = (i / w, i % w);
        bbox = [bbox[0].min(r), bbox[1].min(c), bbox[2].max(r), bbox[3].max(c)];
    }
    if bbox[0] == usize::MAX {
        return Err(Error::Invalid("TokenCut produced an empty mask (constant eigenvector)".into()));
    }
    Ok((cut.mask, bbox))
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn rand(s: &mut SplitMix64) -> f64 {
        (s.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn gauss(s: &mut SplitMix64) -> f64 {
        let u = rand(s).max(1e-300);
        let v = rand(s);
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    #[test]
    fn flip_rules() {
        // 3x3; corners 0,2,6,8.
        // Corner rule: 3 corners foreground -> flip, seed = argmax(-x).
        let x = [1.0f32, 0.0, 1.0, 0.0, -2.0, 0.0, 1.0, 0.0, -0.5];
        let c = bipartition(&x, 3, 3, true).unwrap();
        assert!(c.flipped);
        assert_eq!(c.seed, 4);
        // flipped: -x > mean(-x) = -0.5/9*-1... foreground of -x: {4, 8}? -x = [-1,0,-1,0,2,0,-1,0,0.5], mean=-0.5/9
        // foreground = {1,3,4,5,7,8} (0 > -0.055), component of 4.
        let want: Vec<bool> = [false, true, false, true, true, true, false, true, true].to_vec();
        assert_eq!(c.mask, want);
        // Without the corner rule: seed = argmax|x| = 4 (x=-2), not foreground -> flip too.
        let t = bipartition(&x, 3, 3, false).unwrap();
        assert!(t.flipped);
        assert_eq!(t.seed, 4);
        // Seed foreground, 2 corners foreground -> no flip under either rule.
        let x = [1.0f32, 0.0, 1.0, 0.0, 3.0, 0.0, -1.0, 0.0, -1.0];
        for rule in [true, false] {
            let c = bipartition(&x, 3, 3, rule).unwrap();
            assert!(!c.flipped);
            assert_eq!(c.seed, 4);
            assert_eq!(c.mask, vec![false, false, false, false, true, false, false, false, false]);
        }
        // Corner rule overrides a foreground seed; TokenCut does not flip.
        let x = [1.0f32, -1.0, 1.0, -1.0, 5.0, -1.0, 1.0, -1.0, -3.0];
        let m = bipartition(&x, 3, 3, true).unwrap();
        assert!(m.flipped);
        assert_eq!(m.seed, 8); // argmax(-x) = 3 at index 8 (not argmax |x| = 4)
                               // Foreground of -x = {1, 3, 5, 7, 8}; 1 and 3 only touch the seed's component diagonally.
        assert_eq!(m.mask, vec![false, false, false, false, false, true, false, true, true]);
        let t = bipartition(&x, 3, 3, false).unwrap();
        assert!(!t.flipped);
        assert_eq!(t.seed, 4);
        // Ties: lowest index.
        let x = [2.0f32, -1.0, -1.0, 2.0, -1.0, -1.0, 0.0, 0.0, 0.0];
        let t = bipartition(&x, 3, 3, false).unwrap();
        assert_eq!(t.seed, 0);
    }

    #[test]
    fn four_connectivity() {
        // Diagonal-only touching pixels are separate components.
        let fg = [true, false, false, false, true, false, false, true, true];
        assert_eq!(component4(&fg, 3, 3, 0), vec![true, false, false, false, false, false, false, false, false]);
        assert_eq!(component4(&fg, 3, 3, 8), vec![false, false, false, false, true, false, false, true, true]);
        assert_eq!(component4(&fg, 3, 3, 1), vec![false; 9]);
        // Row wrap-around is not adjacency (index 2 and 3 in a 3-wide grid).
        let fg = [false, false, true, true, false, false];
        assert_eq!(component4(&fg, 2, 3, 2), vec![false, false, true, false, false, false]);
    }

    #[test]
    fn dense_solver_diagonalises() {
        let mut s = SplitMix64(7);
        for &n in &[1usize, 2, 3, 7, 30] {
            let mut a = vec![0f64; n * n];
            for i in 0..n {
                for j in 0..=i {
                    let v = gauss(&mut s);
                    a[i * n + j] = v;
                    a[j * n + i] = v;
                }
            }
            let (vals, vecs) = symmetric_eigen(&a, n).unwrap();
            for k in 0..n {
                let v = &vecs[k * n..(k + 1) * n];
                for i in 0..n {
                    let av: f64 = (0..n).map(|j| a[i * n + j] * v[j]).sum();
                    assert!((av - vals[k] * v[i]).abs() < 1e-10, "n={n} k={k}");
                }
                assert!((dot(v, v) - 1.0).abs() < 1e-10);
                if k > 0 {
                    assert!(vals[k] >= vals[k - 1]);
                }
            }
        }
    }

    #[test]
    fn lanczos_matches_dense() {
        let mut s = SplitMix64(11);
        for &n in &[5usize, 40, 150] {
            let mut a = vec![0f64; n * n];
            for i in 0..n {
                for j in 0..=i {
                    let v = gauss(&mut s);
                    a[i * n + j] = v;
                    a[j * n + i] = v;
                }
            }
            let (vals, vecs) = symmetric_eigen(&a, n).unwrap();
            // Deflate the top eigenvector; Lanczos must find the second-largest.
            let top = vecs[(n - 1) * n..].to_vec();
            let mv = |v: &[f64], o: &mut [f64]| {
                for i in 0..n {
                    o[i] = (0..n).map(|j| a[i * n + j] * v[j]).sum();
                }
            };
            let (mu, y) = lanczos_top(n, &mv, &[top], n, 1e-10).expect("converged");
            assert!((mu - vals[n - 2]).abs() < 1e-9, "n={n}: {mu} vs {}", vals[n - 2]);
            let c = dot(&y, &vecs[(n - 2) * n..(n - 1) * n]).abs();
            assert!(c > 1.0 - 1e-8, "n={n}: cos {c}");
        }
    }

    fn blobs(h: usize, w: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut s = SplitMix64(seed);
        let protos: Vec<Vec<f64>> = (0..3).map(|_| (0..d).map(|_| gauss(&mut s)).collect()).collect();
        let mut f = Vec::with_capacity(h * w * d);
        for r in 0..h {
            for c in 0..w {
                let k = if r < h / 3 && c < w / 3 {
                    1
                } else if r > h / 2 && c > w / 2 {
                    2
                } else {
                    0
                };
                for j in 0..d {
                    f.push((protos[k][j] + 0.3 * gauss(&mut s)) as f32);
                }
            }
        }
        f
    }

    #[test]
    fn maskcut_masks_are_disjoint_and_valid() {
        let (h, w, d) = (12, 14, 16);
        let f = blobs(h, w, d, 3);
        let p = NcutParams { tau: 0.2, eps: 1e-5, max_masks: 3 };
        let masks = maskcut(&f, h, w, d, &p).unwrap();
        assert!(!masks.is_empty());
        let mut seen = vec![false; h * w];
        for m in &masks {
            assert!(m.iter().filter(|&&b| b).count() as f64 > 0.01 * (h * w) as f64);
            for i in 0..h * w {
                assert!(!(m[i] && seen[i]), "masks overlap");
                seen[i] |= m[i];
            }
        }
        let (m, bbox) = tokencut(&f, h, w, d, &p).unwrap();
        for (i, &b) in m.iter().enumerate() {
            if b {
                let (r, c) = (i / w, i % w);
                assert!(r >= bbox[0] && r <= bbox[2] && c >= bbox[1] && c <= bbox[3]);
            }
        }
    }

    #[test]
    fn generalized_eigen_equation_holds() {
        let (h, w, d) = (9, 10, 8);
        let f = blobs(h, w, d, 5);
        let p = NcutParams { tau: 0.3, eps: 1e-5, max_masks: 1 };
        let (lam, x) = second_eigenvector(&f, h, w, d, &p).unwrap();
        let norm = normalize(&f, w, d, h * w).unwrap();
        let aff = affinity(&norm, p.tau, p.eps);
        let a = aff.dense();
        let n = h * w;
        let dd = aff.row_sums();
        for i in 0..n {
            let lx: f64 = dd[i] * x[i] - (0..n).map(|j| a[i * n + j] * x[j]).sum::<f64>();
            assert!((lx - lam * dd[i] * x[i]).abs() < 1e-6);
        }
        let xdx: f64 = (0..n).map(|i| dd[i] * x[i] * x[i]).sum();
        assert!((xdx - 1.0).abs() < 1e-9);
        // Small grids use the dense path and agree on the eigenvalue.
        let aff2 = affinity(&norm, p.tau, p.eps);
        let (lam2, _) = second_eigen_internal(&aff2).unwrap();
        assert!((lam - lam2).abs() < 1e-12);
    }

    #[test]
    fn affinity_matches_brute_force() {
        let mut s = SplitMix64(21);
        for &(h, w, d) in &[(2usize, 2usize, 3usize), (11, 10, 20), (13, 9, 8)] {
            let n = h * w;
            let f: Vec<f32> = (0..n * d).map(|_| gauss(&mut s) as f32).collect();
            let norm = normalize(&f, w, d, n).unwrap();
            let aff = affinity(&norm, 0.1, 1e-5);
            let a = aff.dense();
            for i in 0..n {
                for j in 0..n {
                    assert_eq!(a[i * n + j], a[j * n + i], "symmetry at ({i}, {j})");
                    let c: f64 =
                        (0..d).map(|k| norm.data[i * norm.dp + k] as f64 * norm.data[j * norm.dp + k] as f64).sum();
                    if (c - 0.1).abs() > 1e-5 {
                        assert_eq!(a[i * n + j] == 1.0, c > 0.1, "({i}, {j}) cos {c}");
                    }
                }
            }
            let v: Vec<f64> = (0..n).map(|_| gauss(&mut s)).collect();
            let mut out = vec![0f64; n];
            aff.matvec(&v, &mut out);
            for i in 0..n {
                let want: f64 = (0..n).map(|j| a[i * n + j] * v[j]).sum();
                assert!((out[i] - want).abs() < 1e-10);
            }
        }
    }

    #[test]
    fn simd_and_portable_kernels_agree() {
        let mut s = SplitMix64(5);
        let dp = 40;
        let a: Vec<f32> = (0..MR * dp).map(|_| gauss(&mut s) as f32).collect();
        let b: Vec<f32> = (0..NR * dp).map(|_| gauss(&mut s) as f32).collect();
        let (mut o1, mut o2) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
        kernel(&a, &b, dp, &mut o1, false);
        kernel(&a, &b, dp, &mut o2, has_avx2());
        for r in 0..MR {
            for c in 0..NR {
                let want: f64 = (0..dp).map(|k| a[r * dp + k] as f64 * b[c * dp + k] as f64).sum();
                assert!((o1[r][c] as f64 - want).abs() < 1e-4);
                assert!((o2[r][c] as f64 - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let p = NcutParams::default();
        assert!(normalized_cut(&[1.0; 3], 1, 3, 1, &p, true).is_err());
        assert!(normalized_cut(&[1.0; 8], 2, 2, 1, &p, true).is_err());
        let mut f = vec![1.0f32; 2 * 3 * 2];
        f[2 * 4] = 0.0;
        f[2 * 4 + 1] = 0.0;
        let e = normalized_cut(&f, 2, 3, 2, &p, true).unwrap_err().to_string();
        assert!(e.contains("row 1, col 1"), "{e}");
        f[0] = f32::NAN;
        assert!(normalized_cut(&f, 2, 3, 2, &p, true).is_err());
        let bad = NcutParams { tau: 1.0, ..p };
        assert!(normalized_cut(&[1.0; 8], 2, 2, 2, &bad, true).is_err());
        assert!(maskcut(&[1.0; 8], 2, 2, 2, &NcutParams { max_masks: 0, ..p }).is_err());
    }

    fn time_one(name: &str, f: &[f32]) {
        let p = NcutParams { tau: 0.2, eps: 1e-5, max_masks: 1 };
        let (h, w, d) = (60, 60, 768);
        let _ = normalized_cut(f, h, w, d, &p, true).unwrap();
        let t = std::time::Instant::now();
        let reps = 5;
        for _ in 0..reps {
            let _ = normalized_cut(f, h, w, d, &p, true).unwrap();
        }
        let per = t.elapsed().as_secs_f64() / reps as f64;
        let norm = normalize(f, w, d, h * w).unwrap();
        let t = std::time::Instant::now();
        let aff = affinity(&norm, p.tau, p.eps);
        let ta = t.elapsed().as_secs_f64();
        let ones: u64 = aff.bits.iter().map(|b| b.count_ones() as u64).sum();
        let t = std::time::Instant::now();
        let _ = second_eigen_internal(&aff).unwrap();
        let te = t.elapsed().as_secs_f64();
        eprintln!(
            "{name}: one cut 60x60x768 = {:.1} ms (affinity {:.1} ms, eigenvector {:.1} ms, B density {:.4}, threads {})",
            per * 1e3,
            ta * 1e3,
            te * 1e3,
            ones as f64 / (3600.0 * 3600.0),
            rayon::current_num_threads()
        );
    }

    #[test]
    #[ignore]
    fn timing_60x60x768() {
        let mut s = SplitMix64(1);
        let n = 3600 * 768;
        let g: Vec<f32> = (0..n).map(|_| gauss(&mut s) as f32).collect();
        time_one("gaussian random", &g);
        let u: Vec<f32> = (0..n).map(|_| rand(&mut s) as f32).collect();
        time_one("uniform [0,1) random", &u);
        let b = blobs(60, 60, 768, 9);
        time_one("three blobs", &b);
        // A smooth field: four prototypes mixed with weights that vary across the grid, plus noise.
        let protos: Vec<Vec<f64>> = (0..4).map(|_| (0..768).map(|_| gauss(&mut s)).collect()).collect();
        let mut f = Vec::with_capacity(n);
        for r in 0..60 {
            for c in 0..60 {
                let (y, x) = (r as f64 / 60.0 * 3.0, c as f64 / 60.0 * 3.0);
                let wts = [y.sin(), x.cos(), (x + y).sin(), (x - 2.0 * y).cos()];
                for j in 0..768 {
                    let v: f64 = (0..4).map(|k| wts[k] * protos[k][j]).sum::<f64>() + 0.8 * gauss(&mut s);
                    f.push(v as f32);
                }
            }
        }
        time_one("smooth field", &f);
    }
}
