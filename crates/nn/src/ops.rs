//! Differentiable building blocks on candle's own ops, shared by the models
//! that run on any device ([`crate::resnet`]'s device path and the trainable
//! networks of [`crate::multitask`]), with workarounds for two candle 0.9
//! convolution bugs.

#[cfg(test)]
use candle_core::DType;
use candle_core::Tensor;

use crate::error::{Error, Result};

/// 2-D convolution of `x` `[B, Ci, H, W]` with `w` `[Co, Ci, k, k]` (zero `padding`, `stride`, no
/// dilation or groups), plus `bias` `[Co]` when given: `[B, Co, Ho, Wo]`, on any device, with
/// gradients.
///
/// Two candle 0.9 bugs are worked around:
/// * its CPU convolution mistakes a contiguous input with as many channels as rows and columns
///   (`C == H == W`) for a channels-last one (the strides coincide) and reads the data wrongly
///   (huggingface/candle#3404, fixed upstream by #3405): such inputs are given to it with
///   column-major planes (the same values, other strides);
/// * its backward derives one output padding from the height and applies it to both sides, so the
///   gradient of a strided convolution has the wrong width when `(H + 2p − k) mod s` differs from
///   `(W + 2p − k) mod s`: zero rows or columns at the end that no window reaches give both sides
///   the same remainder without changing the output.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, padding: usize, stride: usize) -> Result<Tensor> {
    let (_, ci, h, wd) = x.dims4()?;
    let (co, _, k, _) = w.dims4()?;
    if stride == 0 || h + 2 * padding < k || wd + 2 * padding < k {
        return Err(Error::Shape(format!(
            "convolution of a {h}×{wd} input with a {k}×{k} kernel, padding {padding}, stride {stride}"
        )));
    }
    let (rh, rw) = ((h + 2 * padding - k) % stride, (wd + 2 * padding - k) % stride);
    let x = match rh.cmp(&rw) {
        std::cmp::Ordering::Less => x.pad_with_zeros(2, 0, rw - rh)?,
        std::cmp::Ordering::Greater => x.pad_with_zeros(3, 0, rh - rw)?,
        std::cmp::Ordering::Equal => x.clone(),
    };
    let (_, _, h, wd) = x.dims4()?;
    let x =
        if x.device().is_cpu() && ci == h && h == wd { x.transpose(2, 3)?.contiguous()?.transpose(2, 3)? } else { x };
    let y = x.conv2d(w, padding, stride, 1, 1)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, co, 1, 1))?)?,
        None => y,
    })
}

/// torchvision's `MaxPool2d(3, stride 2, padding 1)` on `[B, C, H, W]` from differentiable ops
/// (candle 0.9 has no backward for a pooling window larger than its stride): the maximum of the
/// nine stride-2 views of the edge-padded map (edge padding never wins a maximum the window's own
/// pixel would not, so the result equals PyTorch's `-inf` padding). At exact ties candle's
/// `maximum` splits the gradient, where PyTorch gives it to the first maximum.
pub fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if h == 0 || w == 0 {
        return Err(Error::Shape(format!("max pooling of an empty {h}×{w} map")));
    }
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    // Room for views of 2·ho rows starting at offsets 0..=2.
    let p = x.pad_with_same(2, 1, (2 * ho + 2).saturating_sub(h + 1))?;
    let p = p.pad_with_same(3, 1, (2 * wo + 2).saturating_sub(w + 1))?;
    let mut out: Option<Tensor> = None;
    for i in 0..3 {
        for j in 0..3 {
            let v = p
                .narrow(2, i, 2 * ho)?
                .narrow(3, j, 2 * wo)?
                .reshape((b, c, ho, 2, wo, 2))?
                .narrow(3, 0, 1)?
                .narrow(5, 0, 1)?
                .reshape((b, c, ho, wo))?;
            out = Some(match out {
                None => v,
                Some(m) => m.maximum(&v)?,
            });
        }
    }
    out.ok_or_else(|| Error::Invalid("empty pooling window".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104729) % 1013) as f32 / 1013.0 - 0.5).collect()
    }

    /// Direct sums: the output, and the gradients of Σ out·g for x and w.
    #[allow(clippy::type_complexity)]
    fn direct(
        x: &[f32],
        (b, ci, h, w): (usize, usize, usize, usize),
        wt: &[f32],
        (co, k): (usize, usize),
        (p, s): (usize, usize),
        g: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let mut out = vec![0f32; b * co * ho * wo];
        let mut gx = vec![0f32; x.len()];
        let mut gw = vec![0f32; wt.len()];
        for n in 0..b {
            for o in 0..co {
                for y in 0..ho {
                    for xx in 0..wo {
                        let oi = ((n * co + o) * ho + y) * wo + xx;
                        for c in 0..ci {
                            for i in 0..k {
                                for j in 0..k {
                                    let (iy, ix) =
                                        ((y * s + i) as isize - p as isize, (xx * s + j) as isize - p as isize);
                                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                        continue;
                                    }
                                    let xi = ((n * ci + c) * h + iy as usize) * w + ix as usize;
                                    let wi = ((o * ci + c) * k + i) * k + j;
                                    out[oi] += x[xi] * wt[wi];
                                    gx[xi] += g[oi] * wt[wi];
                                    gw[wi] += g[oi] * x[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
        (out, gx, gw)
    }

    fn max_diff(a: &Tensor, b: &[f32]) -> f32 {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    /// Output and both gradients against direct sums, including the two shapes candle 0.9 gets
    /// wrong: `C == H == W` (forward) and strided convolutions whose sides have different
    /// remainders (backward: 4×5 with a 3×3 kernel, 6×3 with 1×1, 5×4 with 7×7).
    #[test]
    fn conv2d_matches_direct_sums() {
        let dev = Device::Cpu;
        for &(b, ci, h, w, co, k, p, s) in &[
            (1, 4, 4, 4, 5, 3, 1, 2),
            (2, 4, 4, 4, 3, 3, 1, 1),
            (1, 8, 8, 8, 4, 1, 0, 1),
            (2, 3, 4, 5, 4, 3, 1, 2),
            (1, 2, 6, 3, 3, 1, 0, 2),
            (1, 3, 5, 4, 2, 7, 3, 2),
            (2, 3, 9, 7, 2, 3, 1, 2),
        ] {
            let xv = values(b * ci * h * w, 1);
            let wv = values(co * ci * k * k, 2);
            let x = Var::from_vec(xv.clone(), (b, ci, h, w), &dev).unwrap();
            let wt = Var::from_vec(wv.clone(), (co, ci, k, k), &dev).unwrap();
            let bias = Tensor::from_vec(values(co, 3), co, &dev).unwrap();
            let y = conv2d(x.as_tensor(), wt.as_tensor(), Some(&bias), p, s).unwrap();
            let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
            assert_eq!(y.dims(), &[b, co, ho, wo]);
            let gv = values(b * co * ho * wo, 4);
            let g = Tensor::from_vec(gv.clone(), (b, co, ho, wo), &dev).unwrap();
            let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let (mut want, gx, gw) = direct(&xv, (b, ci, h, w), &wv, (co, k), (p, s), &gv);
            let bv = bias.to_vec1::<f32>().unwrap();
            for (i, v) in want.iter_mut().enumerate() {
                *v += bv[(i / (ho * wo)) % co];
            }
            let case = format!("{b}×{ci}×{h}×{w}, {co} kernels {k}×{k}, padding {p}, stride {s}");
            let d = max_diff(&y, &want);
            assert!(d < 1e-5, "{case}: output differs by {d}");
            let d = max_diff(grads.get(x.as_tensor()).unwrap(), &gx);
            assert!(d < 1e-5, "{case}: input gradient differs by {d}");
            let d = max_diff(grads.get(wt.as_tensor()).unwrap(), &gw);
            assert!(d < 1e-5, "{case}: kernel gradient differs by {d}");
        }
    }

    /// The pooled map against a direct 3×3 window maximum with `-inf` padding, odd and even sides.
    #[test]
    fn max_pool_matches_direct_windows() {
        let dev = Device::Cpu;
        for &(h, w) in &[(1, 1), (2, 3), (5, 4), (8, 8), (7, 9)] {
            let xv = values(2 * 3 * h * w, 5);
            let x = Tensor::from_vec(xv.clone(), (2, 3, h, w), &dev).unwrap();
            let y = max_pool_3x3_s2(&x).unwrap();
            let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
            let mut want = vec![f32::NEG_INFINITY; 6 * ho * wo];
            for pl in 0..6 {
                for oy in 0..ho {
                    for ox in 0..wo {
                        for iy in (2 * oy).saturating_sub(1)..(2 * oy + 2).min(h) {
                            for ix in (2 * ox).saturating_sub(1)..(2 * ox + 2).min(w) {
                                let v = xv[(pl * h + iy) * w + ix];
                                let o = &mut want[(pl * ho + oy) * wo + ox];
                                *o = o.max(v);
                            }
                        }
                    }
                }
            }
            assert_eq!(y.dims(), &[2, 3, ho, wo]);
            assert_eq!(max_diff(&y, &want), 0.0, "{h}×{w}");
        }
        assert!(max_pool_3x3_s2(&Tensor::zeros((1, 1, 0, 3), DType::F32, &dev).unwrap()).is_err());
    }
}
