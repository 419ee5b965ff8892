//! Inference-only CPU kernels of the ViT's fast path (f32): linear layers whose bias, GELU,
//! LayerScale and residual add are applied in the pass that follows the matrix product, and the
//! whole multi-head attention (`softmax(q·kᵀ·scale)·v` for every image and head) from the fused
//! `qkv` activation without copying q, k and v out of it.
//!
//! Each function returns `None` when its inputs are not contiguous f32 CPU tensors; the caller
//! then takes candle's ops, which compute the same values. There is no backward: the
//! differentiable path never calls these.

use candle_core::Tensor;
use gemm::Parallelism;
use rayon::prelude::*;

use crate::cpu::{softmax_in_place, gemm_into, gemm_raw, parallelism, Mat, Raw};

/// What happens to `y = x·Wᵀ + b` before it is stored.
pub(crate) enum Epilogue<'a> {
    /// `y`.
    None,
    /// `gelu_erf(y)` (erf in f32, see `fused`).
    Gelu,
    /// `residual + gamma ⊙ y` (`gamma` = LayerScale, `[M]`, or none).
    Residual { residual: &'a Tensor, gamma: Option<&'a Tensor> },
}

/// Rows of an elementwise pass handed to one rayon task at least.
const MIN_ROWS: usize = 16;

/// `epilogue(x Wᵀ + bias)` for `x` `[B, n, K]`, `w` `[M, K]`, `bias` `[M]`: `[B, n, M]`.
pub(crate) fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    epilogue: Epilogue,
) -> candle_core::Result<Option<Tensor>> {
    let (b, n, k) = x.dims3()?;
    let (m, kw) = w.dims2()?;
    if kw != k {
        candle_core::bail!("linear: input width {k}, weight [{m}, {kw}]");
    }
    let (Some(xr), Some(wr)) = (Raw::new(x), Raw::new(w)) else {
        return Ok(None);
    };
    let br = match bias {
        Some(t) => match Raw::new(t) {
            Some(r) if r.slice().len() == m => Some(r),
            _ => return Ok(None),
        },
        None => None,
    };
    let (res, gamma) = match &epilogue {
        Epilogue::Residual { residual, gamma } => {
            if residual.dims() != [b, n, m] {
                candle_core::bail!("linear: residual {:?}, output [{b}, {n}, {m}]", residual.dims());
            }
            let Some(r) = Raw::new(residual) else { return Ok(None) };
            let g = match gamma {
                Some(t) => match Raw::new(t) {
                    Some(g) if g.slice().len() == m => Some(g),
                    _ => return Ok(None),
                },
                None => None,
            };
            (Some(r), g)
        }
        _ => (None, None),
    };
    let rows = b * n;
    let mut out = vec![0f32; rows * m];
    // x [rows, K] × Wᵀ [K, M]: Wᵀ(kk, j) = W[j, kk] at j·K + kk.
    gemm_into(&mut out, m, (rows, m, k), Mat::rows(xr.slice(), k), Mat { data: wr.slice(), rs: 1, cs: k }, 1.0, parallelism());
    let bias = br.as_ref().map(|r| r.slice());
    let gamma = gamma.as_ref().map(|r| r.slice());
    let res = res.as_ref().map(|r| r.slice());
    let gelu = matches!(epilogue, Epilogue::Gelu);
    out.par_chunks_mut(m).with_min_len(MIN_ROWS).enumerate().for_each(|(r, row)| {
        if let Some(bv) = bias {
            for (v, &c) in row.iter_mut().zip(bv) {
                *v += c;
            }
        }
        if gelu {
            for v in row.iter_mut() {
                *v = crate::vit::fused::gelu_f32(*v);
            }
        }
        if let Some(res) = res {
            let rr = &res[r * m..(r + 1) * m];
            match gamma {
                Some(g) => {
                    for ((v, &ri), &gi) in row.iter_mut().zip(rr).zip(g) {
                        *v = ri + gi * *v;
                    }
                }
                None => {
                    for (v, &ri) in row.iter_mut().zip(rr) {
                        *v += ri;
                    }
                }
            }
        }
    });
    Ok(Some(Tensor::from_vec(out, (b, n, m), x.device())?))
}

/// A destination pointer shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedDst(*mut f32);
// SAFETY: the tasks of `attention` write disjoint column blocks of the output (one per head and
// image), and the buffer outlives the parallel loop.
unsafe impl Send for SharedDst {}
unsafe impl Sync for SharedDst {}

impl SharedDst {
    /// The pointer (a method, so that closures capture the whole `Send + Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Multi-head attention from `qkv` `[B, n, 3·D]` (q, k, v side by side, each `heads × hd`):
/// `o[b, t, h·hd..(h+1)·hd] = softmax(q_bh · k_bhᵀ · scale) · v_bh`, `[B, n, D]`.
pub(crate) fn attention(qkv: &Tensor, heads: usize, scale: f32) -> candle_core::Result<Option<Tensor>> {
    let (b, n, d3) = qkv.dims3()?;
    if heads == 0 || d3 % (3 * heads) != 0 {
        candle_core::bail!("attention: width {d3} is not 3 × {heads} heads");
    }
    let Some(raw) = Raw::new(qkv) else { return Ok(None) };
    let src = raw.slice();
    let d = d3 / 3;
    let hd = d / heads;
    let mut out = vec![0f32; b * n * d];
    let dst = SharedDst(out.as_mut_ptr());
    (0..b * heads).into_par_iter().for_each_init(
        || vec![0f32; n * n],
        |scores, task| {
            let (bi, h) = (task / heads, task % heads);
            let base = bi * n * d3;
            let q = Mat { data: &src[base + h * hd..], rs: d3, cs: 1 };
            // kᵀ(c, j) = k[j, c]
            let kt = Mat { data: &src[base + d + h * hd..], rs: 1, cs: d3 };
            let v = Mat { data: &src[base + 2 * d + h * hd..], rs: d3, cs: 1 };
            gemm_into(scores, n, (n, n, hd), q, kt, scale, Parallelism::None);
            for row in scores.chunks_exact_mut(n) {
                softmax_in_place(row);
            }
            let probs = Mat::rows(scores, n);
            let ptr = dst.get();
            // SAFETY: rows bi·n..(bi+1)·n, columns h·hd..(h+1)·hd of `out` ([B·n, D], row stride
            // D) are written by this task only; `out` lives until after the loop.
            unsafe { gemm_raw(ptr.add(bi * n * d + h * hd), d, (n, hd, n), probs, v, 1.0, Parallelism::None) };
        },
    );
    Ok(Some(Tensor::from_vec(out, (b, n, d), qkv.device())?))
}
