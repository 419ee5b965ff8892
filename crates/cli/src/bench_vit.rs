//! `labelscope bench-vit`: forward-pass time of a DINO-layout ViT on random
//! input (see BENCHMARKS.md; `bench/vit_compare.py` runs PyTorch beside it).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use labelscope_nn::{Vit, VitConfig};

/// `labelscope bench-vit`.
#[derive(Debug, Args)]
pub struct BenchVitArgs {
    /// Weights (.safetensors, DINO layout).
    #[arg(long)]
    pub weights: PathBuf,
    /// Architecture DIM:DEPTH:HEADS:PATCH.
    #[arg(long)]
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
    let v: Vec<usize> = a.arch.split(':').filter_map(|x| x.parse().ok()).collect();
    let &[dim, depth, heads, patch] = v.as_slice() else { bail!("--arch: expected DIM:DEPTH:HEADS:PATCH") };
    if a.repeats == 0 || a.batch == 0 {
        bail!("--repeats and --batch must be at least 1");
    }
    let cfg = VitConfig { patch, dim, depth, heads, mlp_ratio: 4 };
    let dev = Device::Cpu;
    let vit = Vit::from_safetensors(cfg, &a.weights, &dev)?;
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
