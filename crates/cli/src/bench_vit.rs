//! `labelscope bench-vit`: forward-pass time of a DINO-layout ViT, or with
//! `--model resnet50` of a torchvision-layout ResNet-50 classifier (logits),
//! on random input, on the CPU or a GPU, in f32, f16 or bf16 (see
//! BENCHMARKS.md; `bench/vit_compare.py` and `bench/resnet_compare.py` run
//! PyTorch beside it).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::Tensor;
use clap::Args;
use labelscope_nn::{ResNet, ResNetConfig, Vit, VitConfig, VitVariant};

use crate::nnio::Precision;

/// `labelscope bench-vit`.
#[derive(Debug, Args)]
pub struct BenchVitArgs {
    /// Model: `vit` (needs --arch) or `resnet50` (torchvision layout); random weights unless
    /// --weights is given.
    #[arg(long, default_value = "vit")]
    pub model: String,
    /// Weights (.safetensors; DINO layout for `vit`, torchvision layout for `resnet50`).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Device: cpu, cuda or cuda:N (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Precision of the weights and the computation (f16/bf16 for ResNets on a GPU only).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// ViT architecture DIM:DEPTH:HEADS:PATCH.
    #[arg(long, default_value = "")]
    pub arch: String,
    /// Square input size.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed forward passes (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

/// Runs the benchmark; prints one JSON line.
pub fn run(a: BenchVitArgs) -> Result<()> {
    match a.model.as_str() {
        "vit" => {}
        "resnet50" => return run_resnet(a),
        m => bail!("--model {m}: expected vit or resnet50"),
    }
    let v: Vec<usize> = a.arch.split(':').filter_map(|x| x.parse().ok()).collect();
    let &[dim, depth, heads, patch] = v.as_slice() else { bail!("--arch: expected DIM:DEPTH:HEADS:PATCH") };
    if a.repeats == 0 || a.batch == 0 {
        bail!("--repeats and --batch must be at least 1");
    }
    let cfg = VitConfig { patch, dim, depth, heads, mlp_ratio: 4 };
    let dev = crate::nnio::device(&a.device)?;
    let vit = match a.weights.as_deref() {
        Some(w) => Vit::from_safetensors(cfg, w, &dev)?,
        None => {
            // Random weights (candle's initialisers); the time does not depend on the values.
            let vars = candle_nn::VarMap::new();
            let vb = candle_nn::VarBuilder::from_varmap(&vars, candle_core::DType::F32, &dev);
            Vit::with_variant(cfg, VitVariant::dino(patch), vb)?
        }
    };
    let vit = if a.precision == Precision::F32 { vit } else { vit.to_dtype(a.precision.dtype())? };
    let x = Tensor::randn(0f32, 1f32, (a.batch, 3, a.size, a.size), &dev)?.to_dtype(a.precision.dtype())?;
    let med = median_time(a.repeats, || {
        let o = vit.forward(&x)?;
        let _ = o.keys.sum_all()?.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        Ok(())
    })?;
    println!("{}", report(&a, serde_json::json!({"arch": a.arch}), med));
    Ok(())
}

/// The JSON line of a run: `fields` plus the settings and the median time.
fn report(a: &BenchVitArgs, mut fields: serde_json::Value, med: f64) -> serde_json::Value {
    let more = serde_json::json!({"size": a.size, "batch": a.batch, "median_s": med,
        "images_per_s": a.batch as f64 / med, "device": a.device,
        "precision": format!("{:?}", a.precision).to_lowercase(),
        "threads": candle_core::utils::get_num_threads()});
    if let (Some(f), Some(m)) = (fields.as_object_mut(), more.as_object()) {
        f.extend(m.clone());
    }
    fields
}

/// Median seconds of `repeats` calls of `f` after one warm-up call.
fn median_time(repeats: usize, f: impl FnMut() -> Result<()>) -> Result<f64> {
    Ok(best_time(repeats, f)?.median)
}

/// Best and median of `repeats` timed calls after one warm-up call.
pub(crate) struct Timing {
    pub(crate) best: f64,
    pub(crate) median: f64,
}

/// Times `repeats` calls of `f` after one warm-up call.
pub(crate) fn best_time(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<Timing> {
    f()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(Timing { best: times[0], median: times[times.len() / 2] })
}

/// `--model resnet50`: logits of a ResNet-50 (random weights, BN running variance 1, unless
/// `--weights`).
fn run_resnet(a: BenchVitArgs) -> Result<()> {
    if a.repeats == 0 || a.batch == 0 {
        bail!("--repeats and --batch must be at least 1");
    }
    let dev = crate::nnio::device(&a.device)?;
    let net = match &a.weights {
        Some(w) => ResNet::load(w, &dev)?,
        None => {
            let mut get = |name: &str, shape: &[usize]| -> labelscope_nn::Result<Tensor> {
                Ok(if name.ends_with("running_var") || name.ends_with("bn3.weight") {
                    Tensor::ones(shape, candle_core::DType::F32, &dev)?
                } else {
                    Tensor::randn(0f32, 0.05, shape, &dev)?
                })
            };
            ResNet::build(ResNetConfig::resnet50(), &dev, &mut get)?
        }
    };
    let net = net.to_dtype(a.precision.dtype())?;
    let x = Tensor::randn(0f32, 1f32, (a.batch, 3, a.size, a.size), &dev)?;
    let med = median_time(a.repeats, || {
        let o = net.forward(&x)?;
        let _ = o.logits.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    println!("{}", report(&a, serde_json::json!({"model": "resnet50"}), med));
    Ok(())
}
