//! `labelscope bench-relabel`: speed of region pooling + labeler inference on
//! cached features, and of head training (issue 5, BENCHMARKS.md;
//! `bench/relabel_compare.py` runs numpy + PyTorch beside it on the same files).
//!
//! # What is generated
//! Everything comes from `--seed` with the xoshiro256** generator of
//! `labelscope-core` and is written to `--dir` (`--export` is an alias; a
//! temporary folder removed at the end when not given):
//!
//! * `masks.npy` (`<u4`, all COCO RLE counts concatenated, uncompressed,
//!   column-major as pycocotools) and `mask_offsets.npy` (`<i8`,
//!   `images × proposals + 1` offsets into it): `--proposals` masks per image,
//!   each a random axis-parallel ellipse (centre uniform in the middle 60 %
//!   of the image, radii uniform in 8–30 % of the side), at
//!   `--image-size`² pixels. Mask `p` of image `i` is entry `i·P + p`.
//! * `cache-DIMxGRID/`: a [`FeatureCache`] (one shard, f16) of `--images`
//!   images `img000000`, `img000001`, … with a `GRID × GRID` grid of `DIM`
//!   values per cell, uniform in `[−2, 2)` (16-bit steps) before the f16
//!   rounding, written with [`CacheWriter`] in batches of 64.
//! * `head-DIM.safetensors` + `.json`: the MLP head (hidden 1024, dropout 0.5,
//!   `--classes`) used for inference, PyTorch initialisation from the seed.
//! * `check-DIMxGRID-pooled.npy` (`<f4` `[K·P, DIM]`), `check-DIMxGRID-top5-p.npy`
//!   (`<f4` `[K·P, 5]`) and `check-DIMxGRID-top5-c.npy` (`<i8`): pooled
//!   vectors and top-5 of the first `K = --check-images` images, for the
//!   Python side to compare with its own.
//! * `generated.json` (images, image size, proposals, seed) and
//!   `cache-DIMxGRID/bench-generated.json`: what generated the masks and each
//!   cache; a later run with `--dir` reuses the files whose parameters match
//!   (every value depends only on the seed, the sizes and DIMxGRID, not on
//!   the order of `--configs`).
//!
//! # What is timed
//! Per feature configuration, each the best of `--repeats` passes after one
//! warm-up pass:
//! * `pool`: every image read from the memory-mapped cache (f16 → f32), its
//!   masks projected to the grid (fraction rule, whole-image geometry) and
//!   pooled ([`pool_masks`]); images in batches of `--batch-images`, the
//!   images of a batch in parallel;
//! * `pool+infer`: the same, plus [`RegionHead::predict_topk`] (top-5) on
//!   each batch's `batch-images × P` pooled vectors;
//! * `train`: `--train-steps` [`Trainer::step`]s of `--train-batch` rows
//!   (random features and labels), SGD with Nesterov momentum 0.9, lr 0.1,
//!   weight decay 1e-4 (not on biases), cosine schedule, for the MLP (hidden
//!   1024, dropout 0.5) and the linear head.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::bench_vit::best_time;
use candle_core::{Device, Tensor};
use clap::Args;
use labelscope_core::npy::header_bytes;
use labelscope_core::rle::Rle;
use labelscope_core::rng::{mix64, Xoshiro256};
use labelscope_nn::{HeadConfig, LrSchedule, OptimizerConfig, RegionHead, Trainer};
use labelscope_relabel::cache::{finalize, CacheSpec, CacheWriter, FeatureCache, ImageFeatures, Shard, TokenKind};
use labelscope_relabel::pool::{pool_masks, Grid, GridGeometry, Mask, PoolOptions};
use rayon::prelude::*;
use serde_json::{json, Value};

/// `labelscope bench-relabel`.
#[derive(Debug, Args)]
pub struct BenchRelabelArgs {
    /// Images in each synthetic feature cache.
    #[arg(long, default_value_t = 2000)]
    pub images: usize,
    /// Feature configurations DIMxGRID, comma-separated (384x28: ViT-S/16 at 448 px; 768x28: ViT-B/16 at 448 px).
    #[arg(long, default_value = "384x28,768x28", value_delimiter = ',')]
    pub configs: Vec<String>,
    /// Side of the (square) images the masks are drawn at, in pixels.
    #[arg(long, default_value_t = 448)]
    pub image_size: usize,
    /// Proposals (masks) per image.
    #[arg(long, default_value_t = 4)]
    pub proposals: usize,
    /// Classes of the head.
    #[arg(long, default_value_t = 1000)]
    pub classes: usize,
    /// Images per inference batch (batch × proposals pooled vectors per forward pass).
    #[arg(long, default_value_t = 64)]
    pub batch_images: usize,
    /// Rows per training step.
    #[arg(long, default_value_t = 256)]
    pub train_batch: usize,
    /// Training steps per timed pass.
    #[arg(long, default_value_t = 20)]
    pub train_steps: usize,
    /// Timed passes (after one warm-up pass); the best is reported.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Parts to run, comma-separated: pool, infer, train.
    #[arg(long, default_value = "pool,infer,train", value_delimiter = ',')]
    pub parts: Vec<String>,
    /// Images whose pooled vectors and top-5 are written for the Python side's check.
    #[arg(long, default_value_t = 8)]
    pub check_images: usize,
    /// Seed of every generated value.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Folder for the generated files (kept; reused when the parameters match). Default: a temporary folder.
    #[arg(long, visible_alias = "export")]
    pub dir: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One feature configuration.
#[derive(Debug, Clone, Copy)]
struct FeatCfg {
    dim: usize,
    grid: usize,
}

impl FeatCfg {
    fn name(&self) -> String {
        format!("{}x{}", self.dim, self.grid)
    }
}

fn parse_configs(list: &[String]) -> Result<Vec<FeatCfg>> {
    list.iter()
        .map(|s| {
            let v: Vec<&str> = s.trim().split('x').collect();
            match v.as_slice() {
                [d, g] => match (d.parse::<usize>(), g.parse::<usize>()) {
                    (Ok(dim), Ok(grid)) if dim > 0 && grid > 0 => Ok(FeatCfg { dim, grid }),
                    _ => bail!("--configs entry {s:?}: expected DIMxGRID with positive integers, like 384x28"),
                },
                _ => bail!("--configs entry {s:?}: expected DIMxGRID, like 384x28"),
            }
        })
        .collect()
}

/// Runs `labelscope bench-relabel`.
pub fn run(a: BenchRelabelArgs) -> Result<()> {
    let configs = parse_configs(&a.configs)?;
    if configs.is_empty() {
        bail!("--configs: give at least one DIMxGRID");
    }
    for (name, v) in [
        ("--images", a.images),
        ("--image-size", a.image_size),
        ("--proposals", a.proposals),
        ("--classes", a.classes),
        ("--batch-images", a.batch_images),
        ("--train-batch", a.train_batch),
        ("--train-steps", a.train_steps),
        ("--repeats", a.repeats),
    ] {
        if v == 0 {
            bail!("{name} must be at least 1");
        }
    }
    if a.image_size < 16 {
        bail!("--image-size {}: expected at least 16 pixels", a.image_size);
    }
    for p in &a.parts {
        if !matches!(p.as_str(), "pool" | "infer" | "train") {
            bail!("--parts entry {p:?}: expected pool, infer or train");
        }
    }
    let (dir, temporary) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => {
            let d = std::env::temp_dir().join(format!("labelscope-bench-relabel-{}", std::process::id()));
            (d, true)
        }
    };
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out = run_in(&a, &configs, &dir);
    if temporary {
        let _ = fs::remove_dir_all(&dir);
    }
    let report = out?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn run_in(a: &BenchRelabelArgs, configs: &[FeatCfg], dir: &Path) -> Result<Value> {
    let load_start = loadavg();
    let gen_key = json!({
        "format": 1, "images": a.images, "image_size": a.image_size, "proposals": a.proposals, "seed": a.seed,
    });
    let key_path = dir.join("generated.json");
    let reuse = read_json(&key_path) == Some(gen_key.clone());
    if !reuse {
        let _ = fs::remove_file(&key_path);
    }
    let ids: Vec<String> = (0..a.images).map(|i| format!("img{i:06}")).collect();
    let t = Instant::now();
    let masks = if reuse {
        read_masks(dir, a.images * a.proposals, a.image_size)?
    } else {
        let m = generate_masks(a.images * a.proposals, a.image_size, a.seed);
        write_masks(dir, &m)?;
        fs::write(&key_path, serde_json::to_string_pretty(&gen_key)?)
            .with_context(|| format!("cannot write {}", key_path.display()))?;
        m
    };
    let mask_s = t.elapsed().as_secs_f64();
    let mean_area: f64 = masks.iter().map(|m| m.area() as f64).sum::<f64>()
        / (masks.len() as f64 * (a.image_size * a.image_size) as f64);
    let geom = GridGeometry::whole(a.image_size, a.image_size);
    let dev = Device::Cpu;
    let mut results = Vec::new();
    for cfg in configs {
        let cfg_seed = mix64(a.seed ^ mix64(((cfg.dim as u64) << 20) | cfg.grid as u64));
        let cdir = dir.join(format!("cache-{}", cfg.name()));
        let marker = cdir.join("bench-generated.json");
        let cache_key = json!({"generation": gen_key, "config": cfg.name()});
        let t = Instant::now();
        let cache_reused = reuse && read_json(&marker) == Some(cache_key.clone());
        if !cache_reused {
            if cdir.exists() {
                fs::remove_dir_all(&cdir).with_context(|| format!("cannot remove {}", cdir.display()))?;
            }
            generate_cache(&cdir, &ids, *cfg, cfg_seed)?;
            fs::write(&marker, serde_json::to_string(&cache_key)?)
                .with_context(|| format!("cannot write {}", marker.display()))?;
        }
        let gen_s = t.elapsed().as_secs_f64();
        let cache = FeatureCache::open(&cdir)?;
        let head_path = dir.join(format!("head-{}.safetensors", cfg.dim));
        let head = RegionHead::new(HeadConfig::mlp(cfg.dim, a.classes), mix64(a.seed ^ 7), &dev)?;
        head.save(&head_path)?;
        let cache_bytes: u64 = fs::read_dir(&cdir)?.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();

        // The check files: pooled vectors and top-5 of the first images.
        let k = a.check_images.min(a.images);
        let pooled = pool_range(&cache, &ids, &masks, &geom, a.proposals, 0..k)?;
        let top = head.predict_topk(&Tensor::from_vec(pooled.clone(), (k * a.proposals, cfg.dim), &dev)?, 5)?;
        let stem = format!("check-{}", cfg.name());
        write_npy(&dir.join(format!("{stem}-pooled.npy")), "<f4", &[k * a.proposals, cfg.dim], &f32_bytes(&pooled))?;
        let p: Vec<f32> = top.iter().flat_map(|r| r.iter().map(|x| x.0)).collect();
        let c: Vec<u8> = top.iter().flat_map(|r| r.iter().flat_map(|x| i64::from(x.1).to_le_bytes())).collect();
        let width = top.first().map_or(0, |r| r.len());
        write_npy(&dir.join(format!("{stem}-top5-p.npy")), "<f4", &[k * a.proposals, width], &f32_bytes(&p))?;
        write_npy(&dir.join(format!("{stem}-top5-c.npy")), "<i8", &[k * a.proposals, width], &c)?;

        let mut r = json!({
            "config": cfg.name(), "dim": cfg.dim, "grid": cfg.grid, "cache_bytes": cache_bytes,
            "generate_s": gen_s, "reused": cache_reused,
        });
        let n = a.images as f64;
        if a.parts.iter().any(|p| p == "pool") {
            let t = best_time(a.repeats, || {
                pass(&cache, &ids, &masks, &geom, a, None)?;
                Ok(())
            })?;
            r["pool"] = json!({"best_s": t.best, "median_s": t.median, "images_per_s": n / t.best,
                "regions_per_s": n * a.proposals as f64 / t.best});
        }
        if a.parts.iter().any(|p| p == "infer") {
            let t = best_time(a.repeats, || {
                pass(&cache, &ids, &masks, &geom, a, Some(&head))?;
                Ok(())
            })?;
            r["pool_infer"] = json!({"best_s": t.best, "median_s": t.median, "images_per_s": n / t.best,
                "regions_per_s": n * a.proposals as f64 / t.best});
        }
        if a.parts.iter().any(|p| p == "train") {
            let mut tr = serde_json::Map::new();
            for (kind, hc) in
                [("mlp", HeadConfig::mlp(cfg.dim, a.classes)), ("linear", HeadConfig::linear(cfg.dim, a.classes))]
            {
                tr.insert(kind.into(), bench_train(a, hc, mix64(cfg_seed ^ 200))?);
            }
            r["train"] = Value::Object(tr);
        }
        results.push(r);
    }
    Ok(json!({
        "benchmark": "bench-relabel",
        "threads": rayon::current_num_threads(),
        "candle_threads": candle_core::utils::get_num_threads(),
        "images": a.images, "image_size": a.image_size, "proposals": a.proposals, "classes": a.classes,
        "batch_images": a.batch_images, "train_batch": a.train_batch, "train_steps": a.train_steps,
        "repeats": a.repeats, "seed": a.seed, "mask_mean_area": mean_area, "masks_s": mask_s,
        "dir": dir.display().to_string(), "loadavg_start": load_start, "loadavg_end": loadavg(),
        "results": results,
    }))
}

/// Pooled vectors (`[count · P, dim]`, row-major) of the images in `range`, in parallel.
fn pool_range(
    cache: &FeatureCache,
    ids: &[String],
    masks: &[Rle],
    geom: &GridGeometry,
    proposals: usize,
    range: std::ops::Range<usize>,
) -> Result<Vec<f32>> {
    let opts = PoolOptions::default();
    let per: Vec<Vec<Vec<f32>>> = range
        .into_par_iter()
        .map(|i| -> Result<Vec<Vec<f32>>> {
            let f = cache.get(&ids[i])?;
            let values = f.patches_f32();
            let grid = Grid::new(f.h, f.w, f.dim, &values)?;
            let ms: Vec<Mask> = masks[i * proposals..(i + 1) * proposals].iter().map(Mask::Rle).collect();
            Ok(pool_masks(&grid, geom, &ms, &opts)?)
        })
        .collect::<Result<_>>()?;
    Ok(per.into_iter().flatten().flatten().collect())
}

/// One pass over all images in batches; with a head, top-5 of every batch. Returns a checksum.
fn pass(
    cache: &FeatureCache,
    ids: &[String],
    masks: &[Rle],
    geom: &GridGeometry,
    a: &BenchRelabelArgs,
    head: Option<&RegionHead>,
) -> Result<f64> {
    let dim = cache.meta().dim;
    let mut sum = 0.0f64;
    let mut start = 0;
    while start < ids.len() {
        let end = (start + a.batch_images).min(ids.len());
        let pooled = pool_range(cache, ids, masks, geom, a.proposals, start..end)?;
        match head {
            Some(h) => {
                let rows = (end - start) * a.proposals;
                let top = h.predict_topk(&Tensor::from_vec(pooled, (rows, dim), &Device::Cpu)?, 5)?;
                sum += top.iter().map(|r| f64::from(r[0].0)).sum::<f64>();
            }
            None => sum += pooled.iter().step_by(dim).map(|&v| f64::from(v)).sum::<f64>(),
        }
        start = end;
    }
    Ok(sum)
}

/// Training throughput of one head kind: regions/s of `--train-steps` steps.
fn bench_train(a: &BenchRelabelArgs, hc: HeadConfig, seed: u64) -> Result<Value> {
    let dev = Device::Cpu;
    let rows = a.train_batch * a.train_steps;
    let mut rng = Xoshiro256::from_seed(seed);
    let x: Vec<f32> = (0..rows * hc.in_dim).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect();
    let y: Vec<u32> = (0..rows).map(|_| rng.below(hc.classes as u64) as u32).collect();
    let x = Tensor::from_vec(x, (rows, hc.in_dim), &dev)?;
    let head = RegionHead::new(hc, seed, &dev)?;
    let total = (a.train_steps * (a.repeats + 1)) as u64;
    let schedule = LrSchedule { warmup_steps: 0, start_factor: 0.0, min_factor: 0.0, total_steps: total };
    let mut trainer = Trainer::new(head, OptimizerConfig::sgd_nesterov(0.1, 1e-4), true, schedule, 0.0, seed)?;
    let mut losses = Vec::new();
    let t = best_time(a.repeats, || {
        for s in 0..a.train_steps {
            let xb = x.narrow(0, s * a.train_batch, a.train_batch)?;
            let st = trainer.step(&xb, &y[s * a.train_batch..(s + 1) * a.train_batch])?;
            losses.push(st.loss);
        }
        Ok(())
    })?;
    let regions = (a.train_steps * a.train_batch) as f64;
    Ok(json!({
        "kind": format!("{:?}", hc.kind).to_lowercase(), "hidden": hc.hidden, "dropout": hc.dropout,
        "batch": a.train_batch, "steps": a.train_steps, "best_s": t.best, "median_s": t.median,
        "regions_per_s": regions / t.best, "first_loss": losses.first().copied(), "last_loss": losses.last().copied(),
    }))
}

/// Random ellipse masks (see the module docs), in parallel, deterministic in `seed`.
fn generate_masks(count: usize, size: usize, seed: u64) -> Vec<Rle> {
    (0..count)
        .into_par_iter()
        .map(|k| {
            let mut rng = Xoshiro256::from_seed(mix64(seed ^ mix64(k as u64 + 1)));
            let s = size as f64;
            let cx = (0.2 + 0.6 * rng.unit()) * s;
            let cy = (0.2 + 0.6 * rng.unit()) * s;
            let rx = (0.08 + 0.22 * rng.unit()) * s;
            let ry = (0.08 + 0.22 * rng.unit()) * s;
            let mut m = vec![false; size * size];
            for y in 0..size {
                let dy = (y as f64 + 0.5 - cy) / ry;
                if dy.abs() >= 1.0 {
                    continue;
                }
                let half = rx * (1.0 - dy * dy).sqrt();
                let x0 = (cx - half - 0.5).ceil().max(0.0) as usize;
                let x1 = ((cx + half - 0.5).floor() + 1.0).clamp(0.0, s) as usize;
                for v in &mut m[y * size + x0.min(x1)..y * size + x1] {
                    *v = true;
                }
            }
            // Cannot fail: the mask has size*size pixels.
            Rle::encode(&m, size, size).unwrap_or(Rle { height: size, width: size, counts: vec![(size * size) as u32] })
        })
        .collect()
}

fn write_masks(dir: &Path, masks: &[Rle]) -> Result<()> {
    let mut counts: Vec<u8> = Vec::new();
    let mut offsets: Vec<u8> = Vec::with_capacity((masks.len() + 1) * 8);
    let mut n = 0i64;
    offsets.extend_from_slice(&n.to_le_bytes());
    for m in masks {
        for c in &m.counts {
            counts.extend_from_slice(&c.to_le_bytes());
        }
        n += m.counts.len() as i64;
        offsets.extend_from_slice(&n.to_le_bytes());
    }
    write_npy(&dir.join("masks.npy"), "<u4", &[n as usize], &counts)?;
    write_npy(&dir.join("mask_offsets.npy"), "<i8", &[masks.len() + 1], &offsets)
}

fn read_masks(dir: &Path, count: usize, size: usize) -> Result<Vec<Rle>> {
    use labelscope_core::npy::read_array;
    let cp = dir.join("masks.npy");
    let op = dir.join("mask_offsets.npy");
    let counts = read_array(&cp, None, &[])?.0.to_i64_vec(&cp, "mask counts")?;
    let offsets = read_array(&op, None, &[])?.0.to_i64_vec(&op, "mask offsets")?;
    if offsets.len() != count + 1 {
        bail!("{}: {} offsets, expected {}", op.display(), offsets.len(), count + 1);
    }
    (0..count)
        .map(|k| {
            let (s, e) = (offsets[k] as usize, offsets[k + 1] as usize);
            if s > e || e > counts.len() {
                bail!("{}: offsets {k}..{} out of range", op.display(), k + 1);
            }
            let c: Vec<u32> = counts[s..e].iter().map(|&v| v as u32).collect();
            Rle::from_uncompressed(c, size, size).with_context(|| format!("{}: mask {k}", cp.display()))
        })
        .collect()
}

fn generate_cache(cdir: &Path, ids: &[String], cfg: FeatCfg, seed: u64) -> Result<()> {
    let spec = CacheSpec {
        backbone: format!("synthetic-{}", cfg.name()),
        recipe: "synthetic".into(),
        tokens: TokenKind::Patch,
        dim: cfg.dim,
        cls: false,
    };
    let mut w = CacheWriter::open(cdir, &spec, Shard::new(0, 1)?)?;
    let n = cfg.grid * cfg.grid * cfg.dim;
    for (b, chunk) in ids.chunks(64).enumerate() {
        let values: Vec<Vec<f32>> = (0..chunk.len())
            .into_par_iter()
            .map(|j| {
                let mut rng = Xoshiro256::from_seed(mix64(seed ^ mix64((b * 64 + j) as u64)));
                let mut v = Vec::with_capacity(n + 3);
                while v.len() < n {
                    let r = rng.next_u64();
                    for q in 0..4 {
                        v.push(((r >> (16 * q)) & 0xffff) as f32 / 16384.0 - 2.0);
                    }
                }
                v.truncate(n);
                v
            })
            .collect();
        let batch: Vec<ImageFeatures> = chunk
            .iter()
            .zip(&values)
            .map(|(id, v)| ImageFeatures { id, h: cfg.grid, w: cfg.grid, patches: v, cls: None })
            .collect();
        w.append_batch(&batch)?;
    }
    w.finish(ids)?;
    finalize(cdir, ids)?;
    Ok(())
}

/// The 1-minute load average (Linux `/proc/loadavg`), recorded because the machine may be shared.
fn loadavg() -> Option<f64> {
    fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(&header_bytes(descr, shape))
        .and_then(|_| f.write_all(data))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn print_table(r: &Value) {
    println!(
        "bench-relabel: {} images, {} proposals/image at {}x{} px, {} classes, {} threads, best of {}",
        r["images"], r["proposals"], r["image_size"], r["image_size"], r["classes"], r["threads"], r["repeats"]
    );
    println!("{:<10} {:<28} {:>12} {:>13}", "features", "part", "images/s", "regions/s");
    let empty = Vec::new();
    for c in r["results"].as_array().unwrap_or(&empty) {
        let name = c["config"].as_str().unwrap_or("?");
        for (key, label) in [("pool", "pool"), ("pool_infer", "pool + MLP top-5")] {
            if let Some(ips) = c[key]["images_per_s"].as_f64() {
                let rps = c[key]["regions_per_s"].as_f64().unwrap_or(f64::NAN);
                println!("{name:<10} {label:<28} {ips:>12.1} {rps:>13.1}");
            }
        }
        for kind in ["mlp", "linear"] {
            if let Some(rps) = c["train"][kind]["regions_per_s"].as_f64() {
                let label = format!("train {kind} (batch {})", c["train"][kind]["batch"]);
                println!("{name:<10} {label:<28} {:>12} {rps:>13.1}", "");
            }
        }
    }
}
