//! `labelscope bench-spurious`: images/s of each spurious-feature metric
//! (clean accuracy, the three ablations, RFS, GradCAM alignment) with a
//! ResNet-50 or ViT-S/16 classifier of random weights on generated 224 px
//! images with elliptical masks, and of the ablations alone (no model).
//! See BENCHMARKS.md.

use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use labelscope_core::rng::Xoshiro256;
use labelscope_nn::{Classifier, ResNet, ResNetConfig};
use labelscope_spurious::ablation::{self, Ablation};
use labelscope_spurious::evaluate::{evaluate_batch, ClassMap, Evaluation, NoiseOptions, Options, Sample};
use labelscope_spurious::noise::NoiseMode;
use labelscope_spurious::planar::{Mask, Planar};

/// `labelscope bench-spurious`.
#[derive(Debug, Args)]
pub struct BenchSpuriousArgs {
    /// Classifier: resnet50 or vit_small_patch16_224 (random weights).
    #[arg(long, default_value = "resnet50")]
    pub model: String,
    /// Generated images.
    #[arg(long, default_value_t = 32)]
    pub images: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Image side.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

fn model(name: &str, dev: &Device) -> Result<Classifier> {
    match name {
        "resnet50" => {
            let mut get = |n: &str, shape: &[usize]| -> labelscope_nn::Result<Tensor> {
                Ok(if n.ends_with("running_var") || n.ends_with("bn3.weight") {
                    Tensor::ones(shape, DType::F32, dev)?
                } else {
                    Tensor::randn(0f32, 0.05, shape, dev)?
                })
            };
            Ok(Classifier::ResNet(ResNet::build(ResNetConfig::resnet50(), dev, &mut get)?))
        }
        "vit_small_patch16_224" => {
            let arch = labelscope_nn::vit_classifier::ClassifierArch::from_name(name)
                .ok_or_else(|| anyhow::anyhow!("unknown architecture {name}"))?;
            let cfg = arch.config();
            let varmap = candle_nn::VarMap::new();
            let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, dev);
            let m = labelscope_nn::vit_classifier::VitClassifier::new(
                cfg,
                labelscope_nn::VitVariant::timm(cfg.patch),
                1000,
                vb,
            )?;
            Ok(Classifier::Vit(m))
        }
        other => bail!("--model {other:?}: expected resnet50 or vit_small_patch16_224"),
    }
}

fn samples(n: usize, size: usize) -> Vec<Sample> {
    let mut rng = Xoshiro256::from_seed(1);
    (0..n)
        .map(|i| {
            let mut img = Planar::filled(size, size, [0.0; 3]);
            let (fx, fy) = (1.0 + 4.0 * rng.unit(), 1.0 + 4.0 * rng.unit());
            for y in 0..size {
                for x in 0..size {
                    let (u, v) = (x as f64 / size as f64, y as f64 / size as f64);
                    img.set(0, x, y, (0.5 + 0.5 * (fx * 6.3 * u).sin()) as f32);
                    img.set(1, x, y, (0.5 + 0.5 * (fy * 6.3 * v).cos()) as f32);
                    img.set(2, x, y, (0.5 + 0.5 * ((fx + fy) * 3.1 * (u + v)).sin()) as f32);
                }
            }
            let (cx, cy, rx, ry) =
                (0.3 + 0.4 * rng.unit(), 0.3 + 0.4 * rng.unit(), 0.1 + 0.2 * rng.unit(), 0.1 + 0.2 * rng.unit());
            let bits = (0..size * size)
                .map(|p| {
                    let (u, v) = ((p % size) as f64 / size as f64, (p / size) as f64 / size as f64);
                    ((u - cx) / rx).powi(2) + ((v - cy) / ry).powi(2) <= 1.0
                })
                .collect();
            Sample { id: format!("s{i}"), class: i % 1000, image: img, mask: Mask { width: size, height: size, bits } }
        })
        .collect()
}

/// Runs the benchmark; prints a Markdown table and one JSON line per metric.
pub fn run(a: BenchSpuriousArgs) -> Result<()> {
    if a.images == 0 || a.batch == 0 {
        bail!("--images and --batch must be at least 1");
    }
    let dev = crate::nnio::device(&a.device)?;
    let net = crate::spurious::Net::new(model(&a.model, &dev)?, dev);
    let data = samples(a.images, a.size);
    let map = ClassMap::identity((0..1000).map(|k| format!("c{k}")).collect());
    // The ablations alone.
    let mut rows = Vec::new();
    for ab in [Ablation::Gray, Ablation::GrayBbox, Ablation::Tile] {
        let t = Instant::now();
        for s in &data {
            std::hint::black_box(ablation::apply(ab, &s.image, &s.mask)?);
        }
        rows.push((format!("{} ablation alone (no model)", ab.name()), a.images as f64 / t.elapsed().as_secs_f64()));
    }
    let runs: Vec<(String, Options)> = vec![
        (
            "clean accuracy (forward only)".into(),
            Options { ablations: vec![Ablation::None], noise: None, saliency: false },
        ),
        ("gray".into(), Options { ablations: vec![Ablation::Gray], noise: None, saliency: false }),
        ("gray-bbox".into(), Options { ablations: vec![Ablation::GrayBbox], noise: None, saliency: false }),
        ("tile".into(), Options { ablations: vec![Ablation::Tile], noise: None, saliency: false }),
        (
            "RFS, 1 trial (foreground + background: 2 forwards)".into(),
            Options {
                ablations: Vec::new(),
                noise: Some(NoiseOptions { sigma: 0.25, mode: NoiseMode::Linf, trials: 1, seed: 0 }),
                saliency: false,
            },
        ),
        (
            "GradCAM alignment (forward + backward)".into(),
            Options { ablations: Vec::new(), noise: None, saliency: true },
        ),
    ];
    // Warm-up.
    let mut e = Evaluation::default();
    evaluate_batch(&net, &map, &data[..a.batch.min(data.len())], 0, &runs[0].1, &mut e)?;
    for (name, opts) in &runs {
        let mut e = Evaluation::default();
        let t = Instant::now();
        for (k, chunk) in data.chunks(a.batch).enumerate() {
            evaluate_batch(&net, &map, chunk, k * a.batch, opts, &mut e)?;
        }
        rows.push((name.clone(), a.images as f64 / t.elapsed().as_secs_f64()));
    }
    println!("| metric ({}, {} images of {} px, batch {}) | images/s |", a.model, a.images, a.size, a.batch);
    println!("|---|---:|");
    for (name, ips) in &rows {
        println!("| {name} | {ips:.2} |");
    }
    for (name, ips) in &rows {
        println!(
            "{}",
            serde_json::json!({"model": a.model, "metric": name, "images_per_s": ips, "images": a.images,
                               "batch": a.batch, "size": a.size, "threads": candle_core::utils::get_num_threads()})
        );
    }
    Ok(())
}
