//! `labelscope bench-vit`: forward-pass time of a DINO-layout ViT, or with
//! `--model resnet50` of a torchvision-layout ResNet-50 classifier (logits),
//! on random input (see BENCHMARKS.md; `bench/vit_compare.py` and
//! `bench/resnet_compare.py` run PyTorch beside it).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use labelscope_nn::{ResNet, ResNetConfig, Vit, VitConfig};

/// `labelscope bench-vit`.
#[derive(Debug, Args)]
pub struct BenchVitArgs {
    /// Model: `vit` (needs --weights and --arch) or `resnet50` (torchvision layout; random weights
    /// unless --weights is given).
    #[arg(long, default_value = "vit")]
    pub model: String,
    /// Weights (.safetensors; DINO layout for `vit`, torchvision layout for `resnet50`).
    #[arg(long)]
    pub weights: Option<PathBuf>,
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
    let Some(weights) = a.weights.as_deref() else { bail!("--model vit needs --weights") };
    let v: Vec<usize> = a.arch.split(':').filter_map(|x| x.parse().ok()).collect();
    let &[dim, depth, heads, patch] = v.as_slice() else { bail!("--arch: expected DIM:DEPTH:HEADS:PATCH") };
    if a.repeats == 0 || a.batch == 0 {
        bail!("--repeats and --batch must be at least 1");
    }
    let cfg = VitConfig { patch, dim, depth, heads, mlp_ratio: 4 };
    let dev = Device::Cpu;
    let vit = Vit::from_safetensors(cfg, weights, &dev)?;
    let x = Tensor::randn(0f32, 1f32, (a.batch, 3, a.size, a.size), &dev)?;
    vit.forward(&x)?;
    let mut times = Vec::new();
    for _ in 0..a.repeats {
        let t = Instant::now();
        let o = vit.forward(&x)?;
        let _ = o.keys.sum_all()?.to_scalar::<f32>()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    println!(
        "{}",
        serde_json::json!({"arch": a.arch, "size": a.size, "batch": a.batch, "median_s": med,
            "images_per_s": a.batch as f64 / med, "threads": candle_core::utils::get_num_threads()})
    );
    Ok(())
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
    let dev = Device::Cpu;
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
    let x = Tensor::randn(0f32, 1f32, (a.batch, 3, a.size, a.size), &dev)?;
    let med = median_time(a.repeats, || {
        let o = net.forward(&x)?;
        let _ = o.logits.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    println!(
        "{}",
        serde_json::json!({"model": "resnet50", "size": a.size, "batch": a.batch, "median_s": med,
            "images_per_s": a.batch as f64 / med, "threads": candle_core::utils::get_num_threads()})
    );
    Ok(())
}
