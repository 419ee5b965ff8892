//! Fused CPU kernels for the inference (no-gradient) path of the ViT.
//!
//! [`bias_gelu`] computes `gelu_erf(y + bias)` in one pass over `y`, split
//! across `candle_core::utils::get_num_threads()` threads; candle's own
//! elementwise ops are single-threaded and take two passes (bias add, GELU).
//! It evaluates exactly candle's `GeluErf` (`0.5·v·(1 + erf(v/√2))`) on
//! `y + bias` rounded to f32, so the values equal
//! `y.broadcast_add(bias)?.gelu_erf()`. Other dtypes and devices fall back
//! to those two ops. There is no backward: the differentiable path keeps
//! candle's ops.

use candle_core::op::{GeluErf, UnaryOpT};
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};

struct BiasGelu;

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "labelscope-bias-gelu-erf"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (Some((a1, b1)), Some((a2, b2))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("bias_gelu: non-contiguous input")
        };
        let x = &s1.as_slice::<f32>()?[a1..b1];
        let bias = &s2.as_slice::<f32>()?[a2..b2];
        let h = bias.len();
        if h == 0 || !x.len().is_multiple_of(h) {
            candle_core::bail!("bias_gelu: {} values are not rows of the bias length {h}", x.len())
        }
        let rows = x.len() / h;
        let mut out = vec![0f32; x.len()];
        let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
        let per = rows.div_ceil(threads) * h;
        let work = |o: &mut [f32], xi: &[f32]| {
            for (orow, xrow) in o.chunks_exact_mut(h).zip(xi.chunks_exact(h)) {
                for ((ov, &xv), &bv) in orow.iter_mut().zip(xrow).zip(bias) {
                    *ov = GeluErf::f32(xv + bv);
                }
            }
        };
        if threads == 1 {
            work(&mut out, x);
        } else {
            std::thread::scope(|s| {
                for (o, xi) in out.chunks_mut(per).zip(x.chunks(per)) {
                    s.spawn(move || work(o, xi));
                }
            });
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `gelu_erf(y + bias)` with `bias` `[H]` broadcast over the last dimension `H` of `y`.
pub(crate) fn bias_gelu(y: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let fused = matches!(y.device(), Device::Cpu)
        && y.dtype() == DType::F32
        && bias.dtype() == DType::F32
        && bias.rank() == 1
        && y.dims().last() == bias.dims().first();
    if fused {
        y.contiguous()?.apply_op2_no_bwd(&bias.contiguous()?, &BiasGelu)
    } else {
        y.broadcast_add(bias)?.gelu_erf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_gelu_equals_candle_ops() {
        let dev = Device::Cpu;
        let y = Tensor::randn(0f32, 2f32, (3, 7, 40), &dev).unwrap();
        let b = Tensor::randn(0f32, 1f32, 40, &dev).unwrap();
        let got: Vec<f32> = bias_gelu(&y, &b).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f32> = y.broadcast_add(&b).unwrap().gelu_erf().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, want);
        // A strided input is made contiguous first.
        let yt = y.transpose(0, 1).unwrap();
        let got: Vec<f32> = bias_gelu(&yt, &b).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f32> =
            yt.broadcast_add(&b).unwrap().gelu_erf().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, want);
    }
}
