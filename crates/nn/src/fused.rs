//! Fused CPU kernels for the inference (no-gradient) path of the ViT.
//!
//! [`bias_gelu`] computes `gelu_erf(y + bias)` = `0.5·v·(1 + erf(v/√2))` of
//! `v = y + bias` in one pass over `y`, split across
//! `candle_core::utils::get_num_threads()` threads; candle's own elementwise
//! ops are single-threaded, take two passes (bias add, GELU) and evaluate
//! `erf` in f64 with branches. Here `erf` is [`erf_f32`], a branch-free
//! rational approximation in f32 that the compiler vectorises: at most
//! 4.2e-7 from the exact `erf` (checked against `libm`'s on a dense grid in
//! the tests), so the GELU differs from candle's by at most ~1e-6. Other
//! dtypes and devices fall back to candle's two ops. There is no backward:
//! the differentiable path keeps candle's ops.

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};

/// `erf(x)` in f32 without branches: `x·P(x²)/Q(x²)` on `x` clamped to
/// `[−4, 4]` (beyond, `erf` is ±1 to f32 precision), with `P` of degree 6
/// and `Q` of degree 4 in `x²` (the rational approximation used by
/// vectorised math libraries for single precision). Max |error| 4.2e-7.
#[inline(always)]
pub(crate) fn erf_f32(x: f32) -> f32 {
    const A: [f32; 7] = [
        -1.609_603_3e-2,
        -2.954_6e-3,
        -7.349_906_3e-4,
        -5.692_506_4e-5,
        -2.101_024e-6,
        2.770_681_4e-8,
        -2.726_142_3e-10,
    ];
    const B: [f32; 5] = [-1.426_473_9e-2, -7.373_329e-3, -1.682_827e-3, -2.133_740_6e-4, -1.456_607_2e-5];
    // Plain multiply-adds (not `mul_add`, which without the FMA target feature is a libm call).
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = A[6];
    p = p * x2 + A[5];
    p = p * x2 + A[4];
    p = p * x2 + A[3];
    p = p * x2 + A[2];
    p = p * x2 + A[1];
    p = p * x2 + A[0];
    let mut q = B[4];
    q = q * x2 + B[3];
    q = q * x2 + B[2];
    q = q * x2 + B[1];
    q = q * x2 + B[0];
    x * p / q
}

/// `0.5·v·(1 + erf(v/√2))` with [`erf_f32`].
#[inline(always)]
pub(crate) fn gelu_f32(v: f32) -> f32 {
    0.5 * v * (1.0 + erf_f32(v * std::f32::consts::FRAC_1_SQRT_2))
}

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
                    *ov = gelu_f32(xv + bv);
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
    fn erf_is_within_its_bound() {
        // Against libm's double-precision erf (an independent implementation) on a dense grid.
        let mut worst = 0f64;
        for i in -600_000..=600_000 {
            let x = i as f32 * 1e-5;
            let e = (f64::from(erf_f32(x)) - libm_erf(f64::from(x))).abs();
            worst = worst.max(e);
        }
        assert!(worst <= 4.5e-7, "max |erf error| {worst}");
        assert_eq!(erf_f32(0.0), 0.0);
        assert_eq!(erf_f32(-7.0), -erf_f32(7.0));
        assert!((erf_f32(1.0) - 0.842_700_8).abs() < 5e-7); // erf(1) = 0.8427007929...
    }

    fn libm_erf(x: f64) -> f64 {
        extern "C" {
            fn erf(x: f64) -> f64;
        }
        // SAFETY: the C library's pure function erf.
        unsafe { erf(x) }
    }

    #[test]
    fn bias_gelu_is_close_to_candle_ops() {
        let dev = Device::Cpu;
        let y = Tensor::randn(0f32, 2f32, (3, 7, 40), &dev).unwrap();
        let b = Tensor::randn(0f32, 1f32, 40, &dev).unwrap();
        let close = |got: Vec<f32>, want: Vec<f32>| {
            let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(d <= 2e-6, "max |diff| {d}");
        };
        let got: Vec<f32> = bias_gelu(&y, &b).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f32> = y.broadcast_add(&b).unwrap().gelu_erf().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        close(got, want);
        // A strided input is made contiguous first.
        let yt = y.transpose(0, 1).unwrap();
        let got: Vec<f32> = bias_gelu(&yt, &b).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f32> =
            yt.broadcast_add(&b).unwrap().gelu_erf().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        close(got, want);
    }
}
