//! `labelscope bench-ncut`: times the normalized cut and MaskCut on generated
//! feature maps (see BENCHMARKS.md). The side-by-side comparison with
//! `scipy.linalg.eigh` is `bench/ncut_compare.py`.
//!
//! For each grid it writes into `--dir`:
//! - `features_{h}x{w}x{d}.npy`: the generated `f32 [h, w, d]` feature map;
//! - `eigvec_{h}x{w}x{d}.npy`: our eigenvector `x` of the first cut (`f64 [h*w]`);
//!
//! and times, as the median of `--repeats` runs after one warm-up run,
//! [`second_eigenvector`] (normalisation + affinity + eigenvector), a whole
//! [`normalized_cut`] with the corner rule, and [`maskcut`] with `--masks` cuts.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use labelscope_core::ncut::{maskcut, normalized_cut, second_eigenvector, NcutParams};
use labelscope_core::npy::header_bytes;
use labelscope_core::rng::Xoshiro256;
use serde_json::json;

/// `labelscope bench-ncut`.
#[derive(Debug, Args)]
pub struct BenchNcutArgs {
    /// Patch grids `HxW`, repeatable or comma-separated (default 60x60 and 64x64).
    #[arg(long = "grid", value_delimiter = ',')]
    pub grids: Vec<String>,
    /// Feature dimension d.
    #[arg(long, default_value_t = 768)]
    pub dim: usize,
    /// Seed of the generated features.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Timed runs of each measurement (the median is reported), after one warm-up run.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Directory for the generated features and our eigenvectors (`.npy`).
    #[arg(long, default_value = "bench-out/ncut")]
    pub dir: PathBuf,
    /// Cosine threshold tau of the affinity.
    #[arg(long, default_value_t = 0.15)]
    pub tau: f32,
    /// Affinity of dissimilar patches.
    #[arg(long, default_value_t = 1e-5)]
    pub eps: f32,
    /// Number of MaskCut cuts N.
    #[arg(long, default_value_t = 3)]
    pub masks: usize,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also time a whole run (`labelscope proposals` over a folder, all cores) on this many
    /// generated images per grid, with and without the CRF: images/s for the cost estimate.
    #[arg(long, default_value_t = 0)]
    pub run_images: usize,
    /// Skip the full-pipeline timings (MaskCut + masks at image size, with and without the dense CRF).
    #[arg(long)]
    pub no_pipeline: bool,
}

/// Patch size of a grid for the pipeline timings: the MaskCut recipes'
/// 480 px / patch 8 (60x60) and 896 px / patch 14 (64x64); patch 8 otherwise.
fn patch_for(h: usize, w: usize) -> usize {
    match (h, w) {
        (64, 64) => 14,
        _ => 8,
    }
}

/// An RGB image of `(w * patch) x (h * patch)` pixels that follows the feature
/// map: three fixed projections of each patch's features give its colour,
/// plus per-pixel noise, so region boundaries are colour edges.
fn image_for(f: &[f32], h: usize, w: usize, d: usize, patch: usize, seed: u64) -> image::RgbImage {
    let mut rng = Xoshiro256::from_seed(seed);
    let dirs: Vec<Vec<f64>> = (0..3).map(|_| (0..d).map(|_| gauss(&mut rng)).collect()).collect();
    let proj: Vec<[f64; 3]> = (0..h * w)
        .map(|i| {
            let x = &f[i * d..(i + 1) * d];
            std::array::from_fn(|c| x.iter().zip(&dirs[c]).map(|(a, b)| *a as f64 * b).sum::<f64>() / (d as f64).sqrt())
        })
        .collect();
    image::RgbImage::from_fn((w * patch) as u32, (h * patch) as u32, |x, y| {
        let p = proj[(y as usize / patch) * w + x as usize / patch];
        image::Rgb(std::array::from_fn(|c| (128.0 + 40.0 * p[c] + 6.0 * gauss(&mut rng)).clamp(0.0, 255.0) as u8))
    })
}

/// Parses `HxW` (also `H×W` or `H*W`).
fn parse_grid(s: &str) -> Result<(usize, usize)> {
    let t = s.trim();
    let parts: Vec<&str> = t.split(['x', 'X', '×', '*']).collect();
    let [h, w] = parts.as_slice() else { bail!("--grid {t:?}: expected HxW, such as 60x60") };
    let h: usize = h.trim().parse().with_context(|| format!("--grid {t:?}: bad height"))?;
    let w: usize = w.trim().parse().with_context(|| format!("--grid {t:?}: bad width"))?;
    if h.checked_mul(w).is_none_or(|n| n < 4) {
        bail!("--grid {t:?}: the grid needs at least 4 patches");
    }
    Ok((h, w))
}

fn gauss(rng: &mut Xoshiro256) -> f64 {
    let u = rng.unit().max(1e-300);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * rng.unit()).cos()
}

/// A structured feature map resembling ViT keys: a component shared by all
/// patches, a background that drifts smoothly between two prototypes, 3–5
/// elliptical objects of random size and place with their own prototypes, and
/// per-patch noise. Same-object cosines are about 0.7, cross-region cosines
/// about 0.1 (so tau = 0.15 separates them with some noise-induced edges).
pub fn generate(h: usize, w: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256::from_seed(seed);
    let vec = |rng: &mut Xoshiro256| (0..d).map(|_| gauss(rng)).collect::<Vec<f64>>();
    let common = vec(&mut rng);
    let bg = [vec(&mut rng), vec(&mut rng)];
    let k = 3 + rng.below(3) as usize;
    let objects: Vec<(f64, f64, f64, f64, Vec<f64>)> = (0..k)
        .map(|_| {
            let (cr, cc) = (rng.unit() * h as f64, rng.unit() * w as f64);
            let (rr, rc) = ((0.08 + 0.17 * rng.unit()) * h as f64, (0.08 + 0.17 * rng.unit()) * w as f64);
            (cr, cc, rr.max(1.0), rc.max(1.0), vec(&mut rng))
        })
        .collect();
    let mut f = Vec::with_capacity(h * w * d);
    for r in 0..h {
        for c in 0..w {
            // The last object containing the patch wins.
            let obj = objects.iter().rev().find(|(cr, cc, rr, rc, _)| {
                let (dr, dc) = ((r as f64 - cr) / rr, (c as f64 - cc) / rc);
                dr * dr + dc * dc <= 1.0
            });
            let t = (r + c) as f64 / (h + w) as f64;
            for j in 0..d {
                let base = match obj {
                    Some(o) => o.4[j],
                    None => (1.0 - t) * bg[0][j] + t * bg[1][j],
                };
                f.push((0.4 * common[j] + base + 0.7 * gauss(&mut rng)) as f32);
            }
        }
    }
    f
}

fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    labelscope_core::atomic::write_atomic_with(path, |out| {
        out.write_all(&header_bytes(descr, shape))?;
        out.write_all(data)
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Median wall time in milliseconds of `repeats` runs of `f`, after one warm-up run.
fn median_ms<T>(repeats: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, f64, T)> {
    let mut last = f()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        last = f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let m = times.len();
    let median = if m % 2 == 1 { times[m / 2] } else { 0.5 * (times[m / 2 - 1] + times[m / 2]) };
    Ok((median, times[0], last))
}

/// Writes `a.run_images` generated feature maps and images for grid `h x w`
/// and times whole shard runs over them (all cores), without and with the CRF.
fn run_throughput(a: &BenchNcutArgs, h: usize, w: usize, d: usize, params: NcutParams) -> Result<serde_json::Value> {
    use labelscope_proposals::features::FeatureLayout;
    use labelscope_proposals::manifest::{from_dirs, Shard};
    use labelscope_proposals::pipeline::{Method, ProposalParams};
    use labelscope_proposals::run::{run_shard, RunOptions};
    let input = a.dir.join(format!("run_{h}x{w}x{d}"));
    let (fdir, idir) = (input.join("features"), input.join("images"));
    std::fs::create_dir_all(&fdir).with_context(|| format!("creating {}", fdir.display()))?;
    std::fs::create_dir_all(&idir).with_context(|| format!("creating {}", idir.display()))?;
    let patch = patch_for(h, w);
    for k in 0..a.run_images {
        let fpath = fdir.join(format!("img{k:05}.npy"));
        let ipath = idir.join(format!("img{k:05}.png"));
        if fpath.exists() && ipath.exists() {
            continue;
        }
        let f = generate(h, w, d, a.seed.wrapping_add(1000 + k as u64));
        let bytes: Vec<u8> = f.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy(&fpath, "<f4", &[h, w, d], &bytes)?;
        let img = image_for(&f, h, w, d, patch, a.seed.wrapping_add(k as u64));
        labelscope_vision::overlay::save_png_atomic(&img, &ipath)?;
    }
    let mut out = serde_json::Map::new();
    for crf in [false, true] {
        let entries = from_dirs(&fdir, Some(&idir), true)?;
        let out_dir = input.join(if crf { "out-crf" } else { "out-nocrf" });
        if out_dir.exists() {
            std::fs::remove_dir_all(&out_dir).with_context(|| format!("removing {}", out_dir.display()))?;
        }
        let opts = RunOptions {
            params: ProposalParams {
                ncut: params,
                method: Method::MaskCut,
                crf: crf.then(labelscope_vision::crf::CrfParams::default),
                patch,
            },
            layout: FeatureLayout::default(),
            shard: Shard::ALL,
            out_dir,
            keep_going: false,
            batch: 64,
        };
        let t = Instant::now();
        let summary = run_shard(&entries, &opts, &|_| {})?;
        let secs = t.elapsed().as_secs_f64();
        let ips = summary.processed as f64 / secs;
        println!(
            "        run over {} images ({}x{} px, all cores){}: {secs:.2} s, {ips:.2} images/s",
            summary.processed,
            w * patch,
            h * patch,
            if crf { " with CRF" } else { " without CRF" }
        );
        out.insert(if crf { "crf_images_per_s" } else { "no_crf_images_per_s" }.into(), json!(ips));
    }
    out.insert("images".into(), json!(a.run_images));
    Ok(serde_json::Value::Object(out))
}

/// Runs the benchmark.
pub fn run(a: BenchNcutArgs) -> Result<()> {
    if a.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    if a.dim == 0 {
        bail!("--dim must be at least 1");
    }
    let grids: Vec<(usize, usize)> = if a.grids.is_empty() {
        vec![(60, 60), (64, 64)]
    } else {
        a.grids.iter().map(|g| parse_grid(g)).collect::<Result<_>>()?
    };
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let d = a.dim;
    let params = NcutParams { tau: a.tau, eps: a.eps, max_masks: a.masks };
    let threads = rayon::current_num_threads();
    println!(
        "normalized cut, d = {d}, tau = {}, eps = {}, MaskCut N = {}, median of {} runs after 1 warm-up, {threads} threads",
        a.tau, a.eps, a.masks, a.repeats
    );
    println!(
        "{:>7} {:>6} {:>14} {:>14} {:>16} {:>7} {:>10}",
        "grid", "n", "eigvec ms", "one cut ms", "maskcut ms", "masks", "lambda"
    );
    let mut rows = Vec::new();
    for &(h, w) in &grids {
        let n = h * w;
        // The map depends on the seed and the grid only (not on the order of --grid).
        let f = generate(h, w, d, a.seed ^ ((h as u64) << 32 | w as u64));
        let feat_name = format!("features_{h}x{w}x{d}.npy");
        let bytes: Vec<u8> = f.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy(&a.dir.join(&feat_name), "<f4", &[h, w, d], &bytes)?;

        let (eig_ms, eig_min, (lambda, x)) = median_ms(a.repeats, || Ok(second_eigenvector(&f, h, w, d, &params)?))?;
        let eig_name = format!("eigvec_{h}x{w}x{d}.npy");
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy(&a.dir.join(&eig_name), "<f8", &[n], &bytes)?;
        let (cut_ms, cut_min, cut) = median_ms(a.repeats, || Ok(normalized_cut(&f, h, w, d, &params, true)?))?;
        let (mc_ms, mc_min, masks) = median_ms(a.repeats, || Ok(maskcut(&f, h, w, d, &params)?))?;
        let areas: Vec<usize> = masks.iter().map(|m| m.iter().filter(|&&b| b).count()).collect();
        println!(
            "{:>7} {n:>6} {eig_ms:>14.2} {cut_ms:>14.2} {mc_ms:>16.2} {:>7} {lambda:>10.5}",
            format!("{h}x{w}"),
            masks.len()
        );
        let pipeline = if a.no_pipeline {
            serde_json::Value::Null
        } else {
            use labelscope_proposals::features::FeatureMap;
            use labelscope_proposals::pipeline::{propose, Method, ProposalParams};
            let patch = patch_for(h, w);
            let img = image_for(&f, h, w, d, patch, a.seed);
            let fm = FeatureMap { h, w, d, data: f.clone() };
            let mut pp = ProposalParams { ncut: params, method: Method::MaskCut, crf: None, patch };
            let (plain_ms, _, plain) = median_ms(a.repeats, || Ok(propose(&fm, Some(&img), None, &pp)?))?;
            pp.crf = Some(labelscope_vision::crf::CrfParams::default());
            let (crf_ms, _, crf) = median_ms(a.repeats, || Ok(propose(&fm, Some(&img), None, &pp)?))?;
            println!(
                "        full MaskCut at {}x{} px (patch {patch}): {plain_ms:.1} ms without CRF ({} masks), {crf_ms:.1} ms with CRF ({} masks, {} dropped)",
                img.width(),
                img.height(),
                plain.proposals.len(),
                crf.proposals.len(),
                crf.dropped_by_crf
            );
            json!({
                "image": [img.width(), img.height()], "patch": patch,
                "no_crf_ms": plain_ms, "no_crf_masks": plain.proposals.len(),
                "crf_ms": crf_ms, "crf_masks": crf.proposals.len(), "crf_dropped": crf.dropped_by_crf,
            })
        };
        let run = if a.run_images > 0 { run_throughput(&a, h, w, d, params)? } else { serde_json::Value::Null };
        rows.push(json!({
            "run": run,
            "h": h, "w": w, "d": d, "n": n,
            "features": feat_name,
            "eigvec": eig_name,
            "eigenvalue": lambda,
            "eigvec_ms": eig_ms, "eigvec_min_ms": eig_min,
            "cut_ms": cut_ms, "cut_min_ms": cut_min,
            "cut_mask_area": cut.mask.iter().filter(|&&b| b).count(),
            "maskcut_ms": mc_ms, "maskcut_min_ms": mc_min,
            "maskcut_areas": areas,
            "pipeline": pipeline,
        }));
    }
    let out = json!({
        "tool": "labelscope bench-ncut",
        "version": env!("CARGO_PKG_VERSION"),
        "seed": a.seed,
        "tau": a.tau,
        "eps": a.eps,
        "maskcut_n": a.masks,
        "repeats": a.repeats,
        "threads": threads,
        "dir": a.dir.display().to_string(),
        "grids": rows,
    });
    let text = serde_json::to_string_pretty(&out)?;
    labelscope_core::atomic::write_atomic(&a.dir.join("bench.json"), text.as_bytes())?;
    if let Some(path) = &a.json {
        labelscope_core::atomic::write_atomic(path, text.as_bytes())?;
        println!("results in {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_parse() {
        assert_eq!(parse_grid("60x60").unwrap(), (60, 60));
        assert_eq!(parse_grid(" 32X48 ").unwrap(), (32, 48));
        assert!(parse_grid("60").is_err());
        assert!(parse_grid("1x2").is_err());
        assert!(parse_grid("ax3").is_err());
    }

    #[test]
    fn generated_map_has_a_meaningful_cut() {
        let (h, w, d) = (20, 20, 64);
        let f = generate(h, w, d, 3);
        assert_eq!(f.len(), h * w * d);
        let p = NcutParams { tau: 0.15, eps: 1e-5, max_masks: 3 };
        let masks = maskcut(&f, h, w, d, &p).unwrap();
        assert!(!masks.is_empty());
    }
}
