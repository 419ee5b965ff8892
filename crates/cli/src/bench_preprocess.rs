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
    /// Start a new loader (threads, buffers) for every pass and report the best pass, instead
    /// of one loader streaming all passes and the rate after the warm-up pass.
    #[arg(long)]
    pub fresh_loader: bool,
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
        let (images, secs, checksum) = if a.fresh_loader {
            fresh_loaders(&paths, &config, a.repeats)?
        } else {
            stream(&paths, &config, a.repeats)?
        };
        println!(
            "{}",
            serde_json::json!({
                "bench": "preprocess",
                "impl": "labelscope",
                "mode": if a.fresh_loader { "fresh loader per pass, best pass" } else { "one loader, after the warm-up pass" },
                "recipe": recipe.to_string(),
                "interpolation": pre.filter.name(),
                "threads": t,
                "images": images,
                "seconds": secs,
                "images_per_s": images as f64 / secs,
                "checksum": checksum,
            })
        );
    }
    Ok(())
}

/// Reads a batch's values as a consumer would (a sparse checksum), failing on a bad image.
fn consume(batch: &labelscope_vision::loader::Batch) -> Result<f64> {
    if let Some(e) = batch.first_error() {
        bail!("{e}");
    }
    Ok(batch.data.iter().step_by(97).map(|&v| f64::from(v)).sum::<f64>())
}

/// A new loader per pass: (images of a pass, seconds of the best timed pass, checksum of a pass).
fn fresh_loaders(paths: &[PathBuf], config: &LoaderConfig, repeats: usize) -> Result<(usize, f64, f64)> {
    let (mut best, mut checksum) = (f64::INFINITY, 0f64);
    for pass in 0..=repeats {
        let start = Instant::now();
        let mut sum = 0f64;
        for batch in Loader::new(paths.to_vec(), config.clone())? {
            sum += consume(&batch)?;
        }
        if pass > 0 {
            best = best.min(start.elapsed().as_secs_f64());
        }
        checksum = sum;
    }
    Ok((paths.len(), best, checksum))
}

/// One loader over the warm-up pass and `repeats` timed passes, as in a long run: (images after
/// the batch that ends the warm-up pass, their seconds from that batch's arrival to the last
/// batch's, checksum of all).
fn stream(paths: &[PathBuf], config: &LoaderConfig, repeats: usize) -> Result<(usize, f64, f64)> {
    let all: Vec<PathBuf> = (0..=repeats).flat_map(|_| paths.iter().cloned()).collect();
    let total = all.len();
    let (mut done, mut sum) = (0usize, 0f64);
    let mut warm: Option<(Instant, usize)> = None;
    for batch in Loader::new(all, config.clone())? {
        sum += consume(&batch)?;
        done += batch.paths.len();
        if warm.is_none() && done >= paths.len() {
            warm = Some((Instant::now(), done));
        }
    }
    let end = Instant::now();
    match warm {
        Some((t, at)) if total > at => Ok((total - at, (end - t).as_secs_f64(), sum)),
        _ => bail!("too few images after the warm-up pass to time: use more --copies or --repeats"),
    }
}
