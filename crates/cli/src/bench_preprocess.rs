//! `labelscope bench-preprocess`: images per second of decoding + a
//! preprocessing recipe + normalisation with the batched loader
//! (`labelscope_vision::loader`), for several thread counts.
//! `bench/preprocess_compare.py` runs Pillow + numpy beside it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use labelscope_vision::decode::DecodeOptions;
use labelscope_vision::loader::{Loader, LoaderConfig};
use labelscope_vision::preprocess::{Preprocess, Recipe};
use labelscope_vision::resample::Filter;

/// `labelscope bench-preprocess`.
#[derive(Debug, Args)]
pub struct BenchPreprocessArgs {
    /// Image files or folders (JPEG/PNG/WebP files directly inside a folder).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Recipe: resize256-crop224, square256-crop224, fixed480, fixed896, resize{S}-crop{C}, ...
    #[arg(long, default_value = "resize256-crop224")]
    pub recipe: String,
    /// Interpolation (default: the recipe's own).
    #[arg(long)]
    pub interpolation: Option<String>,
    /// Thread counts to measure, comma-separated.
    #[arg(long, default_value = "1,2")]
    pub threads: String,
    /// Passes over the images per thread count (after one warm-up pass); the best is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Repeat the file list this many times per pass (more images per timing).
    #[arg(long, default_value_t = 1)]
    pub copies: usize,
}

fn collect(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png" | "webp"))
                })
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        bail!("no images found in the given paths");
    }
    Ok(out)
}

/// Runs the benchmark; prints one JSON line per thread count.
pub fn run(a: BenchPreprocessArgs) -> Result<()> {
    let recipe: Recipe = a.recipe.parse()?;
    let mut pre = Preprocess::new(recipe);
    if let Some(f) = &a.interpolation {
        pre = pre.with_filter(f.parse::<Filter>()?);
    }
    if a.repeats == 0 || a.batch == 0 || a.copies == 0 {
        bail!("--repeats, --batch and --copies must be at least 1");
    }
    let files = collect(&a.images)?;
    let paths: Vec<PathBuf> = (0..a.copies).flat_map(|_| files.iter().cloned()).collect();
    let threads: Vec<usize> = a
        .threads
        .split(',')
        .map(|t| t.trim().parse::<usize>().ok().filter(|&t| t > 0))
        .collect::<Option<_>>()
        .context("--threads: expected comma-separated positive integers")?;
    for &t in &threads {
        let config = LoaderConfig {
            preprocess: pre,
            decode: DecodeOptions::default(),
            batch_size: a.batch,
            prefetch: 2,
            threads: t,
        };
        let mut best = f64::INFINITY;
        let mut checksum = 0f64;
        for pass in 0..=a.repeats {
            let start = Instant::now();
            let mut sum = 0f64;
            for batch in Loader::new(paths.clone(), config.clone())? {
                if let Some(e) = batch.first_error() {
                    bail!("{e}");
                }
                sum += batch.data.iter().step_by(97).map(|&v| f64::from(v)).sum::<f64>();
            }
            let secs = start.elapsed().as_secs_f64();
            if pass > 0 {
                best = best.min(secs);
            }
            checksum = sum;
        }
        println!(
            "{}",
            serde_json::json!({
                "bench": "preprocess",
                "impl": "labelscope",
                "recipe": recipe.to_string(),
                "interpolation": pre.filter.name(),
                "threads": t,
                "images": paths.len(),
                "seconds": best,
                "images_per_s": paths.len() as f64 / best,
                "checksum": checksum,
            })
        );
    }
    Ok(())
}
