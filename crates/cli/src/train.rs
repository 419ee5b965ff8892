//! `labelscope train`: training with richer supervision. `train dfr` is deep
//! feature reweighting: the last layer retrained, as multinomial logistic
//! regression on cached penultimate features (`labelscope classify
//! --features`), on a subset balanced between the top- and bottom-scored
//! images of every class (`labelscope_spurious::dfr`), with checkpoints
//! (resumable), a progress bar, a per-epoch metrics log, a loss plot, and an
//! evaluation of the new layer on another split, per group.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::{Args, Subcommand};
use labelscope_core::classes::ClassTable;
use labelscope_core::ids::join_key;
use labelscope_nn::optim::OptimizerConfig;
use labelscope_nn::train::{train, Progress, RunOptions, TrainConfig, TrainData};
use labelscope_nn::HeadConfig;
use serde_json::json;

/// `labelscope train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(subcommand)]
    pub command: TrainCommand,
}

/// Training recipes.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Deep feature reweighting: retrain the last layer on a spurious-balanced subset.
    Dfr(Box<DfrArgs>),
    /// LUAB multitask: a small CNN with a class head and a point head (annotation byproduct points).
    Luab(Box<LuabArgs>),
    /// Multi-label BCE on soft or hard relabels (--multilabel; --points adds the LUAB point loss).
    Bce(Box<LuabArgs>),
    /// CoRM-style: noise on non-core (non-mask) pixels and an input-gradient penalty there (--masks).
    Corm(Box<LuabArgs>),
}

/// `labelscope train luab`.
#[derive(Debug, Args)]
pub struct LuabArgs {
    /// Training images (a folder; matched to the CSVs by file stem).
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// True classes: CSV `image,class`.
    #[arg(long, value_name = "FILE")]
    labels: PathBuf,
    /// Points: CSV `image,x,y` or `image,class,x,y` (x, y in [0, 1]; `labelscope byproducts
    /// targets`). Single-label: an image's point is its row (of its true class when there is a
    /// class column). With --multilabel and a class column: a point per class (the point head
    /// regresses one per class). Images without a row train the class head only.
    #[arg(long, value_name = "FILE")]
    points: Option<PathBuf>,
    /// Multi-label targets: CSV `image,class,p` (p in [0, 1]; soft or hard relabels); the class loss
    /// becomes binary cross-entropy.
    #[arg(long, value_name = "FILE")]
    multilabel: Option<PathBuf>,
    /// Multi-label: map targets into LO,HI (label smoothing range), e.g. 0.05,0.95.
    #[arg(long, default_value = "0,1")]
    smoothing: String,
    /// Multi-label: start the class head's bias at the logit of each class's mean target.
    #[arg(long)]
    bias_init: bool,
    /// No weight decay on the class head.
    #[arg(long)]
    no_head_decay: bool,
    /// CoRM: core (object) masks, a folder of images named like the training images (> 0 is core).
    #[arg(long, value_name = "DIR")]
    masks: Option<PathBuf>,
    /// CoRM: probability that an image gets noise on its non-core pixels.
    #[arg(long, default_value_t = 0.5)]
    corm_p: f64,
    /// CoRM: standard deviation of that noise (normalised input units).
    #[arg(long, default_value_t = 0.5)]
    corm_sigma: f64,
    /// CoRM: weight of the input-gradient norm penalty over non-core pixels (0 = none).
    #[arg(long, default_value_t = 0.0)]
    corm_penalty: f64,
    /// Class list (default: the 1000 ImageNet classes).
    #[arg(long, value_name = "FILE")]
    classes: Option<PathBuf>,
    /// Share of the images held out for validation (seeded).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Input side (images resized to size x size, bilinear; a multiple of 8).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Backbone: `small` (a four-layer CNN), `resnet50` (torchvision ResNet-50 layout), `resnet`
    /// (the ResNet described by --backbone-weights), a ViT (`vit-ti16`, `vit-s16`, `vit-s8`,
    /// `vit-b16`, a DINO preset such as `dino-vits16` or `dinov2-vits14-reg`, or
    /// `vit:PATCH,DIM,DEPTH,HEADS`; CLS features).
    #[arg(long, default_value = "small")]
    backbone: String,
    /// Start the backbone from these weights (.safetensors; torchvision names for a ResNet, timm /
    /// DINO names for a ViT; `labelscope weights convert`).
    #[arg(long, value_name = "FILE")]
    backbone_weights: Option<PathBuf>,
    /// Weight of the point loss.
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// Passes over the training images.
    #[arg(long, default_value_t = 30)]
    epochs: u64,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No random-resized-crop / flip.
    #[arg(long)]
    no_augment: bool,
    /// The random-point baseline: every point replaced by a seeded uniform random one.
    #[arg(long)]
    random_points: bool,
    /// Continue the run in --out from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Output folder: metrics.jsonl, loss.svg, localisation.svg, summary.json, multitask.safetensors.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Device: cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// `labelscope train dfr`.
#[derive(Debug, Args)]
pub struct DfrArgs {
    /// Penultimate features [N, F] (.npy; `labelscope classify --features`).
    #[arg(long, value_name = "FILE")]
    features: PathBuf,
    /// The features' rows: one image name per line (`images.txt` of classify).
    #[arg(long, value_name = "FILE")]
    images: PathBuf,
    /// True classes: CSV `image,class` (class index, WordNet id or name of the class list).
    #[arg(long, value_name = "FILE")]
    labels: PathBuf,
    /// Scores that rank the images of a class: a CSV with an `image` column (e.g. per_image.csv of
    /// `labelscope spurious`).
    #[arg(long, value_name = "FILE")]
    scores: PathBuf,
    /// The column of --scores to rank by (e.g. cam_iou, tile_confidence).
    #[arg(long)]
    score_column: String,
    /// Images taken from each end of every class's ranking.
    #[arg(long, default_value_t = 50)]
    per_class: usize,
    /// Class list of the layer (default: the 1000 ImageNet classes).
    #[arg(long, value_name = "FILE")]
    classes: Option<PathBuf>,
    /// Passes over the subset.
    #[arg(long, default_value_t = 100)]
    epochs: u64,
    /// Learning rate (AdamW).
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// L2 penalty (decoupled weight decay) on the weights.
    #[arg(long, default_value_t = 1e-3)]
    weight_decay: f64,
    /// Rows per step.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share of the subset held out for the per-epoch accuracy.
    #[arg(long, default_value_t = 0.0)]
    heldout: f64,
    /// Evaluate the new layer on these features (.npy) ...
    #[arg(long, value_name = "FILE", requires_all = ["eval_images", "eval_labels"])]
    eval_features: Option<PathBuf>,
    /// ... whose rows are these images ...
    #[arg(long, value_name = "FILE")]
    eval_images: Option<PathBuf>,
    /// ... with these classes (CSV image,class) ...
    #[arg(long, value_name = "FILE")]
    eval_labels: Option<PathBuf>,
    /// ... and these groups (CSV image,group; accuracy per group and the worst group).
    #[arg(long, value_name = "FILE")]
    eval_groups: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Output folder: head.safetensors (+ head.json), dfr.json, metrics.jsonl, loss.svg, checkpoints/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Device: cpu, cuda or cuda:N (CUDA needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn read_lines(p: &Path) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(p)
        .with_context(|| format!("cannot read {}", p.display()))?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// A CSV with a header: rows as maps from column name to cell.
fn read_csv(p: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .with_context(|| format!("{}: empty file", p.display()))?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let rows = lines.map(|l| l.split(',').map(|s| s.trim().to_string()).collect()).collect();
    Ok((header, rows))
}

/// `image -> class` from a CSV `image,class` (header optional).
fn read_labels(p: &Path, table: &ClassTable) -> Result<HashMap<String, usize>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("image,")) {
            continue;
        }
        let (img, class) =
            line.split_once(',').with_context(|| format!("{} line {}: expected `image,class`", p.display(), i + 1))?;
        let class = class.trim();
        let k = table
            .resolve(class)
            .or_else(|| table.classes().iter().position(|c| c.names.iter().any(|n| n.eq_ignore_ascii_case(class))))
            .with_context(|| {
                format!(
                    "{} line {}: {class:?} is not a class of the class list ({} classes)",
                    p.display(),
                    i + 1,
                    table.len()
                )
            })?;
        out.insert(join_key(img.trim()).to_string(), k);
    }
    Ok(out)
}

fn features(p: &Path, rows: usize) -> Result<(Vec<f32>, usize)> {
    let a = labelscope_core::npy::read_npy(p)?;
    if a.shape.len() != 2 || a.shape[0] != rows {
        bail!("{}: shape {:?}; expected [{rows}, F] (one row per listed image)", p.display(), a.shape);
    }
    Ok((a.to_f32_vec(p, "features")?, a.shape[1]))
}

/// Runs `labelscope train ...`.
pub fn run(a: TrainArgs) -> Result<()> {
    match a.command {
        TrainCommand::Dfr(d) => dfr(*d),
        TrainCommand::Luab(l) => {
            if l.points.is_none() {
                bail!("train luab needs --points (the byproduct point targets)");
            }
            luab(*l)
        }
        TrainCommand::Bce(l) => {
            if l.multilabel.is_none() {
                bail!("train bce needs --multilabel (CSV image,class,p)");
            }
            luab(*l)
        }
        TrainCommand::Corm(l) => {
            if l.masks.is_none() {
                bail!("train corm needs --masks (the core masks)");
            }
            luab(*l)
        }
    }
}

fn dfr(a: DfrArgs) -> Result<()> {
    let dev = crate::nnio::device(&a.device)?;
    let table = match &a.classes {
        Some(p) => ClassTable::from_path(p)?,
        None => ClassTable::imagenet().clone(),
    };
    let names = read_lines(&a.images)?;
    let (values, dim) = features(&a.features, names.len())?;
    let labels = read_labels(&a.labels, &table)?;
    let (header, rows) = read_csv(&a.scores)?;
    let ic = header
        .iter()
        .position(|h| h == "image")
        .with_context(|| format!("{}: no `image` column", a.scores.display()))?;
    let sc = header.iter().position(|h| *h == a.score_column).with_context(|| {
        format!("{}: no column {:?}; columns: {}", a.scores.display(), a.score_column, header.join(", "))
    })?;
    let mut score_of: HashMap<String, f64> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let (Some(img), Some(v)) = (r.get(ic), r.get(sc)) else { continue };
        if v.is_empty() {
            continue;
        }
        let v: f64 = v.parse().with_context(|| {
            format!("{} row {}: {:?} in {} is not a number", a.scores.display(), i + 2, v, a.score_column)
        })?;
        score_of.insert(join_key(img).to_string(), v);
    }
    // Rows with a label; their scores.
    let mut kept_rows = Vec::new();
    let mut classes = Vec::new();
    let mut scores = Vec::new();
    let mut unlabelled = 0usize;
    for (i, n) in names.iter().enumerate() {
        match labels.get(join_key(n)) {
            Some(&c) => {
                kept_rows.push(i);
                classes.push(c);
                scores.push(score_of.get(join_key(n)).copied());
            }
            None => unlabelled += 1,
        }
    }
    let subset = labelscope_spurious::dfr::balanced_subset(&classes, &scores, a.per_class);
    if subset.rows.is_empty() {
        bail!("no image has both a label and a score; nothing to train on");
    }
    let rows: Vec<usize> = subset.rows.iter().map(|&k| kept_rows[k]).collect();
    let mut x = Vec::with_capacity(rows.len() * dim);
    let mut y = Vec::with_capacity(rows.len());
    for (&r, &k) in rows.iter().zip(&subset.rows) {
        x.extend_from_slice(&values[r * dim..(r + 1) * dim]);
        y.push(classes[k] as u32);
    }
    let data = TrainData::from_f32(x, dim, y, &dev)?;
    let mut cfg = TrainConfig::new(OptimizerConfig::adamw(a.lr, a.weight_decay));
    cfg.epochs = a.epochs;
    cfg.batch_size = a.batch;
    cfg.seed = a.seed;
    cfg.heldout_fraction = a.heldout;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let run = RunOptions { checkpoint_dir: Some(a.out.join("checkpoints")), checkpoint_every: None, resume: a.resume };
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("train dfr {bar:40} {pos}/{len} steps, loss {msg}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut log = String::new();
    let outcome = train(&data, HeadConfig::linear(dim, table.len()), &cfg, &run, &dev, |p| {
        match p {
            Progress::Start { total_steps, start_step, .. } => {
                bar.set_length(*total_steps);
                bar.set_position(*start_step);
            }
            Progress::Step { loss, .. } => {
                bar.inc(1);
                bar.set_message(format!("{loss:.4}"));
            }
            Progress::Epoch(e) => {
                log.push_str(&serde_json::to_string(e).unwrap_or_default());
                log.push('\n');
            }
        }
        ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    outcome.head.save(&a.out.join("head.safetensors"))?;
    // Append this call's epochs to the log (a resumed run continues it).
    let log_path = a.out.join("metrics.jsonl");
    let mut all = if a.resume { std::fs::read_to_string(&log_path).unwrap_or_default() } else { String::new() };
    all.push_str(&log);
    labelscope_core::atomic::write_atomic(&log_path, all.as_bytes())?;
    let points: Vec<(f64, f64)> = all
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["epoch"].as_f64()? + 1.0, v["mean_loss"].as_f64()?)))
        .collect();
    let svg = labelscope_report::plot::lines_svg(&labelscope_report::plot::LineSpec {
        title: "DFR: training loss".into(),
        x_label: "epoch".into(),
        y_label: "cross-entropy".into(),
        series: vec![labelscope_report::plot::LineSeries { name: "train".into(), points }],
        hlines: Vec::new(),
        y_range: None,
    })?;
    labelscope_core::atomic::write_atomic(&a.out.join("loss.svg"), svg.as_bytes())?;
    // Evaluation of the new layer.
    let mut eval = serde_json::Value::Null;
    if let (Some(f), Some(i), Some(l)) = (&a.eval_features, &a.eval_images, &a.eval_labels) {
        let names = read_lines(i)?;
        let (v, d) = features(f, names.len())?;
        if d != dim {
            bail!("{}: {d} features per row; the layer takes {dim}", f.display());
        }
        let labels = read_labels(l, &table)?;
        let groups: HashMap<String, String> = match &a.eval_groups {
            Some(g) => {
                let (h, rows) = read_csv(g)?;
                let gi = h
                    .iter()
                    .position(|x| x == "group")
                    .with_context(|| format!("{}: no `group` column", g.display()))?;
                let ii = h
                    .iter()
                    .position(|x| x == "image")
                    .with_context(|| format!("{}: no `image` column", g.display()))?;
                rows.iter().filter_map(|r| Some((join_key(r.get(ii)?).to_string(), r.get(gi)?.clone()))).collect()
            }
            None => HashMap::new(),
        };
        let x = Tensor::from_vec(v, (names.len(), d), &dev)?;
        let top = outcome.head.predict_topk(&x, 1)?;
        let mut by_group: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let (mut n, mut ok) = (0u64, 0u64);
        for (name, t) in names.iter().zip(&top) {
            let Some(&c) = labels.get(join_key(name)) else { continue };
            let right = t.first().is_some_and(|p| p.1 as usize == c);
            n += 1;
            ok += u64::from(right);
            if let Some(g) = groups.get(join_key(name)) {
                let e = by_group.entry(g.clone()).or_insert((0, 0));
                e.0 += 1;
                e.1 += u64::from(right);
            }
        }
        let worst =
            by_group.iter().map(|(g, (n, k))| (g.clone(), *k as f64 / *n as f64)).min_by(|a, b| a.1.total_cmp(&b.1));
        eval = json!({"images": n, "accuracy": if n > 0 { ok as f64 / n as f64 } else { f64::NAN },
            "groups": by_group.iter().map(|(g, (n, k))| (g.clone(), json!({"images": n, "accuracy": *k as f64 / *n as f64}))).collect::<serde_json::Map<_, _>>(),
            "worst_group": worst.map(|(g, acc)| json!({"group": g, "accuracy": acc}))});
    }
    let per_class: serde_json::Map<String, serde_json::Value> = subset
        .per_class
        .iter()
        .map(|(c, (n, k))| {
            (table.get(*c).map(|x| x.wnid.clone()).unwrap_or_else(|| c.to_string()), json!({"scored": n, "chosen": k}))
        })
        .collect();
    let summary = json!({
        "features": a.features.display().to_string(), "dim": dim, "classes": table.len(),
        "score_column": a.score_column, "per_class": a.per_class, "subset": subset.rows.len(),
        "unscored": subset.unscored, "unlabelled": unlabelled, "subset_per_class": per_class,
        "epochs": a.epochs, "lr": a.lr, "weight_decay": a.weight_decay, "seed": a.seed, "steps": outcome.steps,
        "completed": outcome.completed, "heldout_top1": outcome.report.top1_accuracy(), "eval": eval,
    });
    labelscope_core::atomic::write_atomic(&a.out.join("dfr.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "DFR: {} images ({} per class from each end of the {} ranking; {} unscored, {} unlabelled), {} steps; layer in {}",
        subset.rows.len(),
        a.per_class,
        a.score_column,
        subset.unscored,
        unlabelled,
        outcome.steps,
        a.out.join("head.safetensors").display()
    );
    if let Some(acc) = summary["eval"]["accuracy"].as_f64() {
        let _ = writeln!(
            err,
            "evaluation: accuracy {:.4}{}",
            acc,
            summary["eval"]["worst_group"]
                .as_object()
                .map(|w| format!(", worst group {} {:.4}", w["group"], w["accuracy"].as_f64().unwrap_or(f64::NAN)))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// A ViT backbone named on the command line: `vit-ti16`, `vit-s16`, `vit-s8`, `vit-b16` (timm /
/// DINO layout), a DINO preset of [`labelscope_nn::preset`], or `vit:PATCH,DIM,DEPTH,HEADS`.
fn vit_backbone(name: &str, weights: Option<PathBuf>) -> Result<Option<labelscope_nn::multitask::BackboneChoice>> {
    use labelscope_nn::multitask::BackboneChoice;
    let plain = |patch, dim, depth, heads| (patch, dim, depth, heads, false, false);
    let shape = match name {
        "vit-ti16" => plain(16, 192, 12, 3),
        "vit-s16" => plain(16, 384, 12, 6),
        "vit-s8" => plain(8, 384, 12, 6),
        "vit-b16" => plain(16, 768, 12, 12),
        _ => {
            if let Some(spec) = name.strip_prefix("vit:") {
                let v: Vec<usize> = spec
                    .split(',')
                    .map(|t| t.trim().parse::<usize>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .ok()
                    .filter(|v| v.len() == 4 && v.iter().all(|&x| x > 0) && v[1] % v[3] == 0)
                    .with_context(|| {
                        format!("--backbone {name:?}: expected vit:PATCH,DIM,DEPTH,HEADS (positive; HEADS divides DIM)")
                    })?;
                plain(v[0], v[1], v[2], v[3])
            } else if let Some((cfg, variant)) = labelscope_nn::preset(name) {
                if variant.ffn != labelscope_nn::Ffn::Mlp {
                    bail!("--backbone {name:?}: the SwiGLU FFN of ViT-g is not trainable here; use a smaller preset");
                }
                (cfg.patch, cfg.dim, cfg.depth, cfg.heads, variant.layer_scale, variant.registers > 0)
            } else {
                return Ok(None);
            }
        }
    };
    let (patch, dim, depth, heads, dinov2, registers) = shape;
    Ok(Some(BackboneChoice::Vit { patch, dim, depth, heads, mlp_ratio: 4, dinov2, registers, weights }))
}

fn luab(a: LuabArgs) -> Result<()> {
    use labelscope_nn::multitask::{train_multitask, MultitaskConfig, MultitaskData};
    use labelscope_vision::preprocess::{IMAGENET_MEAN, IMAGENET_STD};
    if a.size < 8 || !a.size.is_multiple_of(8) {
        bail!("--size {}: expected a multiple of 8", a.size);
    }
    let dev = crate::nnio::device(&a.device)?;
    if !(0.0..1.0).contains(&a.val_fraction) {
        bail!("--val-fraction {}: expected a number in [0, 1)", a.val_fraction);
    }
    let table = match &a.classes {
        Some(p) => ClassTable::from_path(p)?,
        None => ClassTable::imagenet().clone(),
    };
    let labels = read_labels(&a.labels, &table)?;
    // Points by image: (class or None, point, CSV row).
    type Row = (Option<usize>, (f64, f64), usize);
    let mut points: HashMap<String, Vec<Row>> = HashMap::new();
    let empty = PathBuf::new();
    let points_path = a.points.as_ref().unwrap_or(&empty);
    let (header, rows) = if a.points.is_some() {
        read_csv(points_path)?
    } else {
        (vec!["image".into(), "x".into(), "y".into()], Vec::new())
    };
    let col = |n: &str| {
        header.iter().position(|h| h == n).with_context(|| format!("{}: no `{n}` column", points_path.display()))
    };
    let (ic, xc, yc) = (col("image")?, col("x")?, col("y")?);
    let cc = header.iter().position(|h| h == "class");
    for (i, r) in rows.iter().enumerate() {
        let at = || format!("{} row {}", points_path.display(), i + 2);
        let num = |k: usize| -> Result<f64> {
            let v: f64 = r.get(k).with_context(at)?.parse().with_context(|| format!("{}: not a number", at()))?;
            if !(0.0..=1.0).contains(&v) {
                bail!("{}: {v} is outside [0, 1]", at());
            }
            Ok(v)
        };
        let class = match cc {
            Some(k) => {
                let name = r.get(k).with_context(at)?;
                Some(
                    table
                        .resolve(name)
                        .with_context(|| format!("{}: {name:?} is not a class of the class list", at()))?,
                )
            }
            None => None,
        };
        let image = join_key(r.get(ic).with_context(at)?).to_string();
        let list = points.entry(image.clone()).or_default();
        if let Some(&(_, _, first)) = list.iter().find(|(c, _, _)| *c == class) {
            bail!(
                "{}: a second point for image {image:?}{} (the first is on row {first})",
                at(),
                class
                    .map(|c| format!(" and class {:?}", table.get(c).map(|x| x.name()).unwrap_or("?")))
                    .unwrap_or_default()
            );
        }
        list.push((class, (num(xc)?, num(yc)?), i + 2));
    }
    // Multi-label runs with a `class` column regress a point per class (COCO-AB icons); otherwise
    // an image's point is its one row, or the row of its true class.
    let per_class = a.multilabel.is_some() && cc.is_some();
    // Sorted by stem.
    let files: Vec<(String, PathBuf)> =
        crate::nnio::images_by_stem(&a.images)?.into_iter().filter(|(stem, _)| labels.contains_key(stem)).collect();
    let smoothing = {
        let v: Vec<f64> = a
            .smoothing
            .split(',')
            .map(|t| t.trim().parse::<f64>())
            .collect::<std::result::Result<Vec<f64>, _>>()
            .ok()
            .filter(|v| v.len() == 2)
            .with_context(|| format!("--smoothing {:?}: expected LO,HI", a.smoothing))?;
        (v[0], v[1])
    };
    // Multi-label targets by image.
    let mut soft: Option<HashMap<String, Vec<f32>>> = None;
    if let Some(m) = &a.multilabel {
        let (h, rows) = read_csv(m)?;
        let c = |n: &str| h.iter().position(|x| x == n).with_context(|| format!("{}: no `{n}` column", m.display()));
        let (ic, cc, pc) = (c("image")?, c("class")?, c("p")?);
        let mut map: HashMap<String, Vec<f32>> = HashMap::new();
        for (i, r) in rows.iter().enumerate() {
            let at = || format!("{} row {}", m.display(), i + 2);
            let class = r.get(cc).with_context(at)?;
            let k = table
                .resolve(class)
                .with_context(|| format!("{}: {class:?} is not a class of the class list", at()))?;
            let p: f32 = r.get(pc).with_context(at)?.parse().with_context(|| format!("{}: p is not a number", at()))?;
            if !(0.0..=1.0).contains(&p) {
                bail!("{}: p = {p} is outside [0, 1]", at());
            }
            map.entry(join_key(r.get(ic).with_context(at)?).to_string()).or_insert_with(|| vec![0.0; table.len()])[k] =
                p;
        }
        soft = Some(map);
    }
    if files.len() < 2 {
        bail!("{}: fewer than two images with a label in {}", a.images.display(), a.labels.display());
    }
    let recipe = labelscope_vision::preprocess::Recipe::Fixed { size: a.size as u32 };
    let n = a.size * a.size;
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(files.len() as u64) };
    let mut all = MultitaskData {
        size: a.size,
        images: Vec::new(),
        labels: Vec::new(),
        points: Vec::new(),
        soft: None,
        masks: None,
        class_points: if per_class { Some(Vec::new()) } else { None },
    };
    for (stem, path) in &files {
        let img = labelscope_vision::decode::decode_file(path, &labelscope_vision::decode::DecodeOptions::default())
            .with_context(|| format!("image {}", path.display()))?;
        let img = recipe.apply(&img, labelscope_vision::resample::Filter::Bilinear)?;
        let mut planar = vec![0.0f32; 3 * n];
        for (p, px) in img.as_raw().chunks_exact(3).enumerate() {
            for c in 0..3 {
                planar[c * n + p] = (f32::from(px[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
        all.images.push(planar);
        all.labels.push(labels[stem] as u32);
        let mine = points.get(stem).map(Vec::as_slice).unwrap_or_default();
        if let Some(cp) = all.class_points.as_mut() {
            cp.push(mine.iter().filter_map(|&(c, p, _)| Some((c? as u32, p))).collect());
            all.points.push(None);
        } else {
            all.points.push(mine.iter().find(|(c, _, _)| c.is_none() || *c == Some(labels[stem])).map(|x| x.1));
        }
        if let Some(mdir) = &a.masks {
            let mp = ["png", "jpg", "jpeg", "JPEG", "PNG"]
                .iter()
                .map(|e| mdir.join(format!("{stem}.{e}")))
                .find(|p| p.is_file())
                .with_context(|| format!("no mask for {stem} in {}", mdir.display()))?;
            let m = labelscope_vision::decode::decode_file(&mp, &labelscope_vision::decode::DecodeOptions::default())
                .with_context(|| format!("mask {}", mp.display()))?;
            let m = recipe.apply(&m, labelscope_vision::resample::Filter::Bilinear)?;
            let bits: Vec<bool> = m.pixels().map(|p| p.0.iter().any(|&v| v > 0)).collect();
            all.masks.get_or_insert_with(Vec::new).push(bits);
        }
        if let Some(m) = &soft {
            // An image without rows has its original label as its only target.
            let t = m.get(stem).cloned().unwrap_or_else(|| {
                let mut t = vec![0.0; table.len()];
                t[labels[stem]] = 1.0;
                t
            });
            all.soft.get_or_insert_with(Vec::new).push(t);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Seeded split.
    let mut order: Vec<usize> = (0..files.len()).collect();
    let mut rng = labelscope_core::rng::Xoshiro256::from_seed(a.seed ^ 0x5eed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let held = ((a.val_fraction * files.len() as f64).round() as usize).min(files.len() - 1);
    let pick = |rows: &[usize]| MultitaskData {
        size: a.size,
        images: rows.iter().map(|&i| all.images[i].clone()).collect(),
        labels: rows.iter().map(|&i| all.labels[i]).collect(),
        points: rows.iter().map(|&i| all.points[i]).collect(),
        soft: all.soft.as_ref().map(|s| rows.iter().map(|&i| s[i].clone()).collect()),
        masks: all.masks.as_ref().map(|s| rows.iter().map(|&i| s[i].clone()).collect()),
        class_points: all.class_points.as_ref().map(|s| rows.iter().map(|&i| s[i].clone()).collect()),
    };
    let (val, train) = (pick(&order[..held]), pick(&order[held..]));
    let backbone = match (a.backbone.as_str(), &a.backbone_weights) {
        ("small", None) => labelscope_nn::multitask::BackboneChoice::Small,
        ("small", Some(_)) => {
            bail!("--backbone-weights needs a ResNet or ViT --backbone (resnet50, resnet, vit-s16, ...)")
        }
        ("resnet50", w) | ("resnet", w @ Some(_)) => {
            let shape = match w {
                Some(p) => labelscope_nn::ResNet::load(p, &Device::Cpu)
                    .with_context(|| format!("--backbone-weights {}", p.display()))?
                    .config()
                    .clone(),
                None => labelscope_nn::ResNetConfig::resnet50(),
            };
            if a.backbone == "resnet50" && (shape.blocks != [3, 4, 6, 3] || shape.widths != [64, 128, 256, 512]) {
                bail!(
                    "--backbone-weights describe blocks {:?}, widths {:?}; not a ResNet-50 (use --backbone resnet)",
                    shape.blocks,
                    shape.widths
                );
            }
            if a.size < 32 {
                bail!("--size {}: a ResNet backbone needs at least 32 px", a.size);
            }
            labelscope_nn::multitask::BackboneChoice::ResNet {
                blocks: shape.blocks,
                stem: shape.stem,
                widths: shape.widths,
                weights: w.clone(),
            }
        }
        ("resnet", None) => bail!("--backbone resnet needs --backbone-weights (its shape is read from them)"),
        (other, w) => match vit_backbone(other, w.clone())? {
            Some(b) => {
                if let labelscope_nn::multitask::BackboneChoice::Vit { patch, .. } = b {
                    if !a.size.is_multiple_of(patch) {
                        bail!("--size {}: a ViT backbone with {patch} px patches needs a multiple of {patch}", a.size);
                    }
                }
                b
            }
            None => bail!(
                "--backbone {other:?}: expected small, resnet50, resnet, vit-ti16, vit-s16, vit-s8, vit-b16, a DINO \
                 preset (dino-vits16, dinov2-vits14, dinov2-vits14-reg, ...) or vit:PATCH,DIM,DEPTH,HEADS"
            ),
        },
    };
    let cfg = MultitaskConfig {
        backbone,
        lambda: a.lambda,
        weight_decay: a.weight_decay,
        augment: !a.no_augment,
        random_points: a.random_points,
        smoothing,
        bias_init: a.bias_init,
        head_decay: !a.no_head_decay,
        corm: a.masks.as_ref().map(|_| labelscope_nn::multitask::Corm {
            p: a.corm_p,
            sigma: a.corm_sigma,
            penalty: a.corm_penalty,
            eps: 1e-2,
        }),
        ..MultitaskConfig::new(table.len(), a.epochs, a.batch, a.lr, a.seed)
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(a.epochs) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("train luab {bar:40} epoch {pos}/{len}, {msg}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let log_path = a.out.join("metrics.jsonl");
    let mut log = if a.resume { std::fs::read_to_string(&log_path).unwrap_or_default() } else { String::new() };
    bar.set_position(log.lines().count() as u64);
    let (_, epochs) = train_multitask(&train, &val, &cfg, Some(&a.out), a.resume, &dev, |e| {
        log.push_str(&serde_json::to_string(e).unwrap_or_default());
        log.push('\n');
        // The log is rewritten every epoch, so an interrupted run keeps its history.
        let _ = labelscope_core::atomic::write_atomic(&log_path, log.as_bytes());
        bar.inc(1);
        bar.set_message(format!(
            "loss {:.4}, val acc {:.3}, loc err {:.3}",
            e.loss, e.val_accuracy, e.val_localisation_error
        ));
        ControlFlow::Continue(())
    })?;
    bar.finish_and_clear();
    let entries: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let series = |key: &str| -> Vec<(f64, f64)> {
        entries.iter().filter_map(|v| Some((v["epoch"].as_f64()? + 1.0, v[key].as_f64()?))).collect()
    };
    use labelscope_report::plot::{lines_svg, LineSeries, LineSpec};
    let plot = |title: &str, y: &str, s: Vec<LineSeries>| {
        lines_svg(&LineSpec {
            title: title.into(),
            x_label: "epoch".into(),
            y_label: y.into(),
            series: s,
            hlines: Vec::new(),
            y_range: None,
        })
    };
    let loss = plot(
        "LUAB: training loss",
        "loss",
        vec![
            LineSeries { name: "total".into(), points: series("loss") },
            LineSeries { name: "cross-entropy".into(), points: series("ce") },
            LineSeries { name: "point (smooth-L1)".into(), points: series("point_loss") },
        ],
    )?;
    labelscope_core::atomic::write_atomic(&a.out.join("loss.svg"), loss.as_bytes())?;
    // No validation images (--val-fraction 0): no validation plot.
    let val_series = (series("val_accuracy"), series("val_localisation_error"));
    if val_series.0.is_empty() && val_series.1.is_empty() {
        let _ = std::fs::remove_file(a.out.join("localisation.svg"));
    } else {
        let loc = plot(
            "LUAB: validation",
            "value",
            vec![
                LineSeries { name: "accuracy".into(), points: val_series.0 },
                LineSeries { name: "localisation error".into(), points: val_series.1 },
            ],
        )?;
        labelscope_core::atomic::write_atomic(&a.out.join("localisation.svg"), loc.as_bytes())?;
    }
    let last = entries.last().cloned().unwrap_or(serde_json::Value::Null);
    let summary = json!({"config": cfg, "train_images": train.images.len(), "val_images": val.images.len(),
        "train_points": train.point_count(), "per_class_points": per_class, "epochs_run": epochs.len(), "last": last});
    labelscope_core::atomic::write_atomic(
        &a.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    let _ = writeln!(
        std::io::stderr(),
        "LUAB{}: {} training / {} validation images, {} epochs; last: {}",
        if a.random_points { " (random-point baseline)" } else { "" },
        train.images.len(),
        val.images.len(),
        entries.len(),
        last
    );
    Ok(())
}
