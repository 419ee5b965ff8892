//! `labelscope relabel`: automatic multi-label relabeling (issue 5). Each
//! stage is a subcommand over files (`labelscope_relabel::pipeline`);
//! `relabel run` chains them in one folder. docs/relabel.md is the guide.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use labelscope_nn::head::{HeadConfig, HeadKind};
use labelscope_nn::optim::OptimizerConfig;
use labelscope_nn::train::{Progress, TrainConfig};
use labelscope_nn::{Vit, VitConfig, VitVariant};
use labelscope_relabel::aggregate::{AggregateOptions, Global, Local};
use labelscope_relabel::cache::{Shard, TokenKind};
use labelscope_relabel::pipeline::aggregate_stage::{
    aggregate_labels, AggregateOutputs, AggregateReport, AggregateStageOptions,
};
use labelscope_relabel::pipeline::cache_stage::{build_cache, image_list, CacheEvent, CacheStageOptions};
use labelscope_relabel::pipeline::infer_stage::infer;
use labelscope_relabel::pipeline::select_stage::{select_regions, SelectStageOptions};
use labelscope_relabel::pipeline::train_stage::{head_path, train_head};
use labelscope_relabel::pool::{Dropout, Projection};
use labelscope_relabel::select::{SelectOptions, Target};
use labelscope_vision::decode::DecodeOptions;
use labelscope_vision::preprocess::{Preprocess, Recipe};

/// `labelscope relabel`.
#[derive(Debug, Args)]
pub struct RelabelArgs {
    #[command(subcommand)]
    pub command: RelabelCommand,
}

/// The stages of `labelscope relabel`.
#[derive(Debug, Subcommand)]
pub enum RelabelCommand {
    /// Stage 1: run a ViT once per image into a sharded f16 feature cache (resumable).
    Cache(Box<CacheArgs>),
    /// Stage 2: score proposals against label maps, pool the kept ones into training regions.
    Select(Box<SelectArgs>),
    /// Stage 3: train the region labeler (MLP or linear head) on the regions.
    Train(Box<TrainArgs>),
    /// Stage 4: top-k classes per proposal and for the whole image.
    Infer(Box<InferArgs>),
    /// Stage 5: image labels (Local-Hard/Soft + global), ambiguity fixes, TSV/JSON/npy/CSR, statistics.
    Aggregate(Box<AggregateArgs>),
    /// All stages into one folder, skipping the stages whose outputs are complete.
    Run(Box<RunArgs>),
    /// Compare produced labels with a human label set: overlap groups, per-class precision/recall, a gallery of disagreements.
    Report(Box<crate::relabel_quality::QualityArgs>),
    /// Ranked classes for a box of one image (ROI-align on the cached patch features + the region labeler).
    Query(Box<crate::relabel_quality::QueryArgs>),
    /// Soft spatial label maps: the region labeler on every patch of every cached image ({id}.npy, [2, k, h, w]).
    LabelMap(Box<crate::relabel_extras::LabelMapArgs>),
    /// Soft targets of crop boxes by RoI-align over the label maps (ReLabel recipe).
    SoftTarget(Box<crate::relabel_extras::SoftTargetArgs>),
    /// Filter external COCO proposals by the labeler's top-1 confidence; kept/removed per threshold.
    FilterProposals(Box<crate::relabel_extras::FilterArgs>),
    /// k-NN (Kozachenko-Leonenko) entropy of feature matrices [N, d], in nats.
    FeatureEntropy(Box<crate::relabel_extras::EntropyArgs>),
}

/// Runs `labelscope relabel`.
pub fn run(a: RelabelArgs) -> Result<()> {
    match a.command {
        RelabelCommand::Cache(c) => cmd_cache(*c),
        RelabelCommand::Select(s) => cmd_select(*s),
        RelabelCommand::Train(t) => cmd_train(*t),
        RelabelCommand::Infer(i) => cmd_infer(*i),
        RelabelCommand::Aggregate(g) => cmd_aggregate(*g),
        RelabelCommand::Run(r) => cmd_run(*r),
        RelabelCommand::Report(q) => crate::relabel_quality::run_quality(*q),
        RelabelCommand::Query(q) => crate::relabel_quality::run_query(*q),
        RelabelCommand::LabelMap(x) => crate::relabel_extras::run_label_map(*x),
        RelabelCommand::SoftTarget(x) => crate::relabel_extras::run_soft_target(*x),
        RelabelCommand::FilterProposals(x) => crate::relabel_extras::run_filter(*x),
        RelabelCommand::FeatureEntropy(x) => crate::relabel_extras::run_entropy(*x),
    }
}

// ---------------------------------------------------------------------------
// Option groups
// ---------------------------------------------------------------------------

/// The backbone.
#[derive(Debug, Args, Clone)]
pub struct BackboneArgs {
    /// A built-in ViT architecture (dino-vits16, dino-vits8, dino-vitb16, dino-vitb8, dinov2-vits14, ...).
    #[arg(long, conflicts_with_all = ["arch", "config"])]
    pub model: Option<String>,
    /// A DINO-layout ViT given as DIM:DEPTH:HEADS:PATCH (MLP ratio 4).
    #[arg(long, value_name = "D:L:H:P", conflicts_with = "config")]
    pub arch: Option<String>,
    /// A DINO-layout ViT described by a JSON file {"patch", "dim", "depth", "heads", "mlp_ratio"}.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The weights (.safetensors, DINO or DINOv2 tensor layout).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
}

#[derive(serde::Deserialize)]
struct ArchJson {
    patch: usize,
    dim: usize,
    depth: usize,
    heads: usize,
    #[serde(default = "four")]
    mlp_ratio: usize,
}

fn four() -> usize {
    4
}

impl BackboneArgs {
    fn name(&self) -> String {
        match (&self.model, &self.arch, &self.config) {
            (Some(m), _, _) => m.clone(),
            (_, Some(a), _) => format!("vit-{a}"),
            (_, _, Some(c)) => c.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "vit".into()),
            _ => "vit".into(),
        }
    }

    fn load(&self, device: &candle_core::Device) -> Result<Vit> {
        let (cfg, variant) = match (&self.model, &self.arch, &self.config) {
            (Some(m), _, _) => labelscope_nn::preset(m)
                .ok_or_else(|| anyhow::anyhow!("--model {m:?}: not a built-in ViT architecture"))?,
            (None, Some(s), _) => crate::nnio::parse_arch(s)?,
            (None, None, Some(p)) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
                let j: ArchJson = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: line {}, column {}: expected {{\"patch\", \"dim\", \"depth\", \"heads\", \"mlp_ratio\"}}: {e}",
                        p.display(),
                        e.line(),
                        e.column()
                    )
                })?;
                let cfg =
                    VitConfig { patch: j.patch, dim: j.dim, depth: j.depth, heads: j.heads, mlp_ratio: j.mlp_ratio };
                (cfg, VitVariant::dino(j.patch))
            }
            (None, None, None) => bail!("give the backbone: --model, --arch or --config"),
        };
        Vit::from_safetensors_with(cfg, variant, &self.weights, device)
            .with_context(|| format!("loading {}", self.weights.display()))
    }
}

/// Stage 1 options.
#[derive(Debug, Args, Clone)]
pub struct CacheOpts {
    /// Preprocessing recipe: fixed{N} (whole image), resize{S}-crop{C}, square{S}-crop{C}.
    #[arg(long, default_value = "fixed448")]
    pub recipe: String,
    /// Interpolation (default: the recipe's).
    #[arg(long)]
    pub interpolation: Option<String>,
    /// Which tokens to cache.
    #[arg(long, value_enum, default_value = "patch")]
    pub tokens: TokensArg,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Do not apply the EXIF orientation (must match how the proposals decoded the images).
    #[arg(long)]
    pub no_exif_orientation: bool,
    /// Record unreadable images, leave them out and go on (exit status 1 at the end).
    #[arg(long)]
    pub skip_bad: bool,
}

/// Cached tokens.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TokensArg {
    /// Patch tokens after the final norm.
    Patch,
    /// Keys of the last block's attention.
    Keys,
}

/// Stage 2 options.
#[derive(Debug, Args, Clone)]
pub struct SelectOpts {
    /// Keep a proposal when the label map's probability of the target class exceeds this.
    #[arg(long, default_value_t = 0.75)]
    pub tau_sel: f64,
    /// Target class: the image's original label, or the proposal's own top-1 class.
    #[arg(long, value_enum, default_value = "label")]
    pub target: TargetArg,
    /// When no proposal is kept, train on the whole image with its original label.
    #[arg(long)]
    pub whole_image_fallback: bool,
    /// Number of classes (required for ReLabel [2, k, h, w] maps).
    #[arg(long)]
    pub classes: Option<usize>,
    /// Mask projection onto the patch grid: `fraction` (area-weighted) or `threshold:T`.
    #[arg(long, default_value = "fraction")]
    pub projection: String,
    /// Patch dropout rate for the training regions (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub patch_dropout: f64,
    /// Seed of the patch dropout.
    #[arg(long, default_value_t = 0)]
    pub dropout_seed: u64,
    /// Store the region features as f16 (default f32).
    #[arg(long)]
    pub f16: bool,
}

/// Selection target.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TargetArg {
    /// The image's original label.
    Label,
    /// The proposal's own top-1 class.
    OwnTop1,
}

/// Stage 3 options.
#[derive(Debug, Args, Clone)]
pub struct TrainOpts {
    /// Head: 2-layer MLP or linear.
    #[arg(long, value_enum, default_value = "mlp")]
    pub head: HeadArg,
    /// Hidden width of the MLP.
    #[arg(long, default_value_t = 1024)]
    pub hidden: usize,
    /// Dropout after the MLP's ReLU.
    #[arg(long, default_value_t = 0.5)]
    pub head_dropout: f32,
    /// Optimiser: SGD with Nesterov momentum 0.9, or AdamW.
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptimArg,
    /// Base learning rate (default 0.1 for SGD, 0.001 for AdamW).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weight decay (default 1e-4 for SGD, 0.01 for AdamW).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    pub epochs: u64,
    /// Regions per optimiser step.
    #[arg(long, default_value_t = 256)]
    pub train_batch_size: usize,
    /// Linear warm-up steps before the cosine schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: u64,
    /// Label smoothing of the cross-entropy.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Share of regions held out for the accuracy report.
    #[arg(long, default_value_t = 0.1)]
    pub heldout: f64,
    /// Seed of initialisation, split, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also checkpoint every this many steps (besides every epoch end).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
}

/// Head kind.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum HeadArg {
    /// D → hidden → ReLU → dropout → C.
    Mlp,
    /// D → C.
    Linear,
}

/// Optimiser.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OptimArg {
    /// SGD, Nesterov momentum 0.9.
    Sgd,
    /// AdamW.
    Adamw,
}

/// Stage 5 options.
#[derive(Debug, Args, Clone)]
pub struct AggOpts {
    /// Local rule: soft (max probability over proposals) or hard (1 above --tau).
    #[arg(long, value_enum, default_value = "soft")]
    pub local: LocalArg,
    /// Threshold of Local-Hard.
    #[arg(long, default_value_t = 0.5)]
    pub tau: f64,
    /// Global signal merged by element-wise max.
    #[arg(long, value_enum, default_value = "original")]
    pub global: GlobalArg,
    /// Calibration label set for the ambiguity fixes (e.g. real.json; any format `labelscope` reads).
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    /// Class table (names, wnids) for the calibration file and the JSON names; default ImageNet-1k.
    #[arg(long, value_name = "FILE")]
    pub class_table: Option<PathBuf>,
    /// Co-occurrence prior propagation p' = clip(C·p, 0, 1) over the candidate pairs.
    #[arg(long)]
    pub prior: bool,
    /// Asymmetric threshold pairing over the candidate pairs.
    #[arg(long)]
    pub pairing: bool,
    /// Candidate pairs need at least this many calibration images with both classes.
    #[arg(long, default_value_t = 5)]
    pub min_count: u64,
    /// Candidate pairs need an overlap score N_ab / min(N_a, N_b) of at least this.
    #[arg(long, default_value_t = 0.5)]
    pub min_score: f64,
}

/// Local rule.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LocalArg {
    /// Element-wise max of the proposals' probabilities.
    Soft,
    /// 1 for classes whose max probability exceeds --tau.
    Hard,
}

/// Global signal.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GlobalArg {
    /// None.
    None,
    /// The original label (value 1).
    Original,
    /// The labeler's whole-image prediction.
    Prediction,
}

fn bar(len: u64, what: &str, quiet: bool) -> Result<indicatif::ProgressBar> {
    let b = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(len) };
    b.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} {{msg}} eta {{eta}}"
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .progress_chars("=> "),
    );
    Ok(b)
}

// ---------------------------------------------------------------------------
// Stage 1
// ---------------------------------------------------------------------------

/// `labelscope relabel cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Images: a folder (recursive, sorted) or a text file with one path per line.
    #[arg(long, value_name = "DIR|LIST")]
    pub images: PathBuf,
    /// The cache folder (created; an existing one is resumed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub opts: CacheOpts,
    /// Write shard i of n (0-based) of the sorted ids.
    #[arg(long, value_name = "i/n", default_value = "0/1")]
    pub shard: String,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn run_cache_stage(
    images: &Path,
    out: &Path,
    bb: &BackboneArgs,
    o: &CacheOpts,
    shard: &str,
    device: &str,
    quiet: bool,
) -> Result<()> {
    let dev = crate::nnio::device(device)?;
    let recipe: Recipe = o.recipe.parse()?;
    let mut pre = Preprocess::new(recipe);
    if let Some(f) = &o.interpolation {
        pre = pre.with_filter(f.parse()?);
    }
    let vit = bb.load(&dev)?;
    let items = crate::nnio::list_images(images)?;
    let list = image_list(items.into_iter().map(|i| (i.name, i.path)))?;
    let opts = CacheStageOptions {
        backbone: bb.name(),
        preprocess: pre,
        decode: DecodeOptions { exif_orientation: !o.no_exif_orientation, ..DecodeOptions::default() },
        tokens: match o.tokens {
            TokensArg::Patch => TokenKind::Patch,
            TokensArg::Keys => TokenKind::Key,
        },
        batch_size: o.batch_size,
        shard: Shard::parse(shard)?,
        skip_bad: o.skip_bad,
    };
    let b = bar(0, "cache", quiet)?;
    let rep = build_cache(out, &list, &vit, &opts, |e| match e {
        CacheEvent::Start { todo, .. } => b.set_length(*todo as u64),
        CacheEvent::Batch(n) => b.inc(*n as u64),
    })?;
    b.finish_and_clear();
    eprintln!(
        "cache {}: shard {} holds {} images ({} written now, {} already there, {} skipped){}",
        out.display(),
        opts.shard,
        rep.shard_images - rep.skipped.len(),
        rep.written,
        rep.already,
        rep.skipped.len(),
        if rep.finalized.is_some() { "; cache complete" } else { "; other shards pending" }
    );
    if rep.recovery.dropped_records > 0 || rep.recovery.data_bytes_cut > 0 || rep.recovery.index_bytes_cut > 0 {
        eprintln!(
            "resumed: cut {} incomplete records ({} data bytes, {} index bytes)",
            rep.recovery.dropped_records, rep.recovery.data_bytes_cut, rep.recovery.index_bytes_cut
        );
    }
    if !rep.skipped.is_empty() {
        for s in rep.skipped.iter().take(20) {
            eprintln!("skipped {}: {}", s.file, s.error);
        }
        bail!("{} images could not be read (listed in the cache's *.skipped.jsonl)", rep.skipped.len());
    }
    Ok(())
}

fn cmd_cache(a: CacheArgs) -> Result<()> {
    run_cache_stage(&a.images, &a.out, &a.backbone, &a.opts, &a.shard, &a.device, a.quiet)
}

// ---------------------------------------------------------------------------
// Stage 2
// ---------------------------------------------------------------------------

/// `labelscope relabel select`.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// The feature cache folder.
    #[arg(long, value_name = "DIR")]
    pub cache: PathBuf,
    /// Proposals (COCO JSON with RLE masks, from `labelscope proposals`).
    #[arg(long, value_name = "FILE")]
    pub proposals: PathBuf,
    /// Folder of label maps `{id}.npy` ([2, k, h, w] ReLabel or [C, h, w] dense).
    #[arg(long, value_name = "DIR")]
    pub maps: PathBuf,
    /// Original labels: lines `name<TAB>index` (or `name,index`), or JSON {name: index}.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Output folder: regions.safetensors and regions.jsonl.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub opts: SelectOpts,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn select_options(o: &SelectOpts) -> Result<SelectStageOptions> {
    let projection = match o.projection.as_str() {
        "fraction" => Projection::Fraction,
        s => match s.strip_prefix("threshold:").and_then(|t| t.parse::<f64>().ok()) {
            Some(t) if t > 0.0 && t <= 1.0 => Projection::Threshold(t),
            _ => bail!("--projection {s:?}: expected `fraction` or `threshold:T` with 0 < T <= 1"),
        },
    };
    if !(0.0..1.0).contains(&o.patch_dropout) {
        bail!("--patch-dropout {}: expected 0 <= p < 1", o.patch_dropout);
    }
    Ok(SelectStageOptions {
        select: SelectOptions {
            tau: o.tau_sel,
            target: match o.target {
                TargetArg::Label => Target::ImageLabel,
                TargetArg::OwnTop1 => Target::OwnTop1,
            },
            whole_image_fallback: o.whole_image_fallback,
        },
        classes: o.classes,
        projection,
        dropout: (o.patch_dropout > 0.0).then_some(Dropout { p: o.patch_dropout, seed: o.dropout_seed }),
        f16: o.f16,
    })
}

#[allow(clippy::too_many_arguments)]
fn run_select_stage(
    cache: &Path,
    proposals: &Path,
    maps: &Path,
    labels: &Path,
    out: &Path,
    o: &SelectOpts,
    quiet: bool,
) -> Result<()> {
    let opts = select_options(o)?;
    let b = bar(0, "select", quiet)?;
    let rep = select_regions(cache, proposals, maps, labels, out, &opts, |i, n| {
        b.set_length(n as u64);
        b.set_position(i as u64);
    })?;
    b.finish_and_clear();
    eprintln!(
        "select: {} images, {} proposals -> {} regions ({} whole-image fallbacks, {} outside the grid), {} images without a region, {} classes -> {}",
        rep.images,
        rep.proposals,
        rep.regions,
        rep.whole_image,
        rep.outside_grid,
        rep.images_without_region,
        rep.classes,
        out.join("regions.safetensors").display()
    );
    if rep.unused_map_count > 0 {
        eprintln!(
            "warning: {} label maps in {} are for ids that are not cached images (e.g. {})",
            rep.unused_map_count,
            maps.display(),
            rep.unused_maps.join(", ")
        );
    }
    Ok(())
}

fn cmd_select(a: SelectArgs) -> Result<()> {
    run_select_stage(&a.cache, &a.proposals, &a.maps, &a.labels, &a.out, &a.opts, a.quiet)
}

// ---------------------------------------------------------------------------
// Stage 3
// ---------------------------------------------------------------------------

/// `labelscope relabel train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// regions.safetensors from `relabel select`.
    #[arg(long, value_name = "FILE")]
    pub regions: PathBuf,
    /// Output folder: head.safetensors + head.json, heldout.json, checkpoints/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub opts: TrainOpts,
    /// Continue from the checkpoint in OUT/checkpoints.
    #[arg(long)]
    pub resume: bool,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

fn run_train_stage(regions: &Path, out: &Path, o: &TrainOpts, resume: bool, device: &str, quiet: bool) -> Result<()> {
    let dev = crate::nnio::device(device)?;
    let optimizer = match o.optimizer {
        OptimArg::Sgd => OptimizerConfig::sgd_nesterov(o.lr.unwrap_or(0.1), o.weight_decay.unwrap_or(1e-4)),
        OptimArg::Adamw => OptimizerConfig::adamw(o.lr.unwrap_or(1e-3), o.weight_decay.unwrap_or(0.01)),
    };
    let mut cfg = TrainConfig::new(optimizer);
    cfg.epochs = o.epochs;
    cfg.batch_size = o.train_batch_size;
    cfg.seed = o.seed;
    cfg.heldout_fraction = o.heldout;
    cfg.warmup_steps = o.warmup_steps;
    cfg.label_smoothing = o.label_smoothing;
    let head = HeadConfig {
        kind: match o.head {
            HeadArg::Mlp => HeadKind::Mlp,
            HeadArg::Linear => HeadKind::Linear,
        },
        in_dim: 0,
        hidden: o.hidden,
        classes: 0,
        dropout: o.head_dropout,
    };
    let b = bar(0, "train", quiet)?;
    let mut last_acc = String::new();
    let s = train_head(regions, out, head, &cfg, resume, o.checkpoint_every, &dev, |p| {
        match p {
            Progress::Start { total_steps, start_step, .. } => {
                b.set_length(*total_steps);
                b.set_position(*start_step);
            }
            Progress::Step { step, loss, .. } => {
                b.set_position(*step);
                b.set_message(format!("loss {loss:.4}{last_acc}"));
            }
            Progress::Epoch(e) => {
                if let Some(a) = e.heldout_top1 {
                    last_acc = format!(", held-out top-1 {:.1}%", 100.0 * a);
                }
            }
        }
        ControlFlow::Continue(())
    })?;
    b.finish_and_clear();
    let Some(s) = s else { bail!("training stopped early; continue with --resume") };
    let acc = |v: Option<f64>| v.map_or("n/a".to_string(), |a| format!("{:.2}%", 100.0 * a));
    println!(
        "trained {:?} head ({} -> {} classes) on {} regions, {} steps; held-out {} regions: top-1 {}, top-5 {}",
        s.head.kind,
        s.head.in_dim,
        s.head.classes,
        s.regions,
        s.steps,
        s.report.rows,
        acc(s.heldout_top1),
        acc(s.heldout_top5)
    );
    eprintln!("head: {}; report: {}", head_path(out).display(), out.join("heldout.json").display());
    Ok(())
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    run_train_stage(&a.regions, &a.out, &a.opts, a.resume, &a.device, a.quiet)
}

// ---------------------------------------------------------------------------
// Stage 4
// ---------------------------------------------------------------------------

/// `labelscope relabel infer`.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// The feature cache folder.
    #[arg(long, value_name = "DIR")]
    pub cache: PathBuf,
    /// Proposals (COCO JSON).
    #[arg(long, value_name = "FILE")]
    pub proposals: PathBuf,
    /// The trained head (head.safetensors, with head.json next to it).
    #[arg(long, value_name = "FILE")]
    pub head: PathBuf,
    /// Output predictions (.jsonl).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Classes kept per prediction.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Images per head forward pass (and per resumable chunk of the output).
    #[arg(long, default_value_t = labelscope_relabel::pipeline::infer_stage::DEFAULT_CHUNK)]
    pub chunk: usize,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

#[allow(clippy::too_many_arguments)]
fn run_infer_stage(
    cache: &Path,
    proposals: &Path,
    head: &Path,
    out: &Path,
    k: usize,
    chunk: usize,
    device: &str,
    quiet: bool,
) -> Result<()> {
    if k == 0 {
        bail!("--top-k must be at least 1");
    }
    let dev = crate::nnio::device(device)?;
    let b = bar(0, "infer", quiet)?;
    let p = infer(cache, proposals, head, out, k, chunk, &dev, |i, n| {
        b.set_length(n as u64);
        b.set_position(i as u64);
    })?;
    b.finish_and_clear();
    eprintln!(
        "infer: {} images ({} from an interrupted run), {} proposals, {} outside the grid -> {}",
        p.images,
        p.resumed,
        p.proposals,
        p.outside_grid,
        out.display()
    );
    Ok(())
}

fn cmd_infer(a: InferArgs) -> Result<()> {
    run_infer_stage(&a.cache, &a.proposals, &a.head, &a.out, a.top_k, a.chunk, &a.device, a.quiet)
}

// ---------------------------------------------------------------------------
// Stage 5
// ---------------------------------------------------------------------------

/// `labelscope relabel aggregate`.
#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// predictions.jsonl from `relabel infer`.
    #[arg(long, value_name = "FILE")]
    pub predictions: PathBuf,
    /// Original labels (needed with --global original).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub opts: AggOpts,
    /// Proposals (COCO JSON): needed for --json (masks).
    #[arg(long, value_name = "FILE")]
    pub proposals: Option<PathBuf>,
    /// Output TSV (published layout).
    #[arg(long, value_name = "FILE")]
    pub tsv: Option<PathBuf>,
    /// Output JSON with per-label proposal ids and RLE masks.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Output dense soft labels [N, C] (.npy, float32).
    #[arg(long, value_name = "FILE")]
    pub dense: Option<PathBuf>,
    /// Output CSR soft labels: PREFIX.indptr.npy, PREFIX.indices.npy, PREFIX.values.npy.
    #[arg(long, value_name = "PREFIX")]
    pub csr: Option<PathBuf>,
}

fn agg_options(o: &AggOpts) -> Result<AggregateStageOptions> {
    if !(0.0..=1.0).contains(&o.tau) {
        bail!("--tau {}: expected a value in [0, 1]", o.tau);
    }
    Ok(AggregateStageOptions {
        aggregate: AggregateOptions {
            local: match o.local {
                LocalArg::Soft => Local::Soft,
                LocalArg::Hard => Local::Hard { tau: o.tau },
            },
            global: match o.global {
                GlobalArg::None => Global::None,
                GlobalArg::Original => Global::Original,
                GlobalArg::Prediction => Global::Prediction,
            },
        },
        prior: o.prior,
        pairing: o.pairing,
        min_count: o.min_count,
        min_score: o.min_score,
        ..AggregateStageOptions::default()
    })
}

fn run_aggregate_stage(
    predictions: &Path,
    labels: Option<&Path>,
    o: &AggOpts,
    proposals: Option<&Path>,
    outputs: &AggregateOutputs,
) -> Result<AggregateReport> {
    let opts = agg_options(o)?;
    if (o.prior || o.pairing) && o.calibration.is_none() {
        bail!("--prior and --pairing need --calibration");
    }
    let table = match &o.class_table {
        Some(p) => Some(labelscope_core::ClassTable::from_path(p)?),
        None => None,
    };
    let cal = match &o.calibration {
        Some(p) => {
            let t = table.clone().unwrap_or_else(|| labelscope_core::ClassTable::imagenet().clone());
            Some(labelscope_core::labels::load_labels(p, None, &t)?.to_sets()?.sets)
        }
        None => None,
    };
    let rep = aggregate_labels(predictions, labels, cal.as_deref(), proposals, table.as_ref(), &opts, outputs)?;
    print!("{}", rep.stats.to_table());
    if o.calibration.is_some() {
        println!("ambiguous candidate pairs: {}; labels added by pairing: {}", rep.pairs.len(), rep.added);
    }
    for (what, p) in [("TSV", &outputs.tsv), ("JSON", &outputs.json), ("dense", &outputs.dense), ("CSR", &outputs.csr)]
    {
        if let Some(p) = p {
            eprintln!("{what}: {}", p.display());
        }
    }
    Ok(rep)
}

fn cmd_aggregate(a: AggregateArgs) -> Result<()> {
    let outputs = AggregateOutputs { tsv: a.tsv, json: a.json, dense: a.dense, csr: a.csr };
    if outputs.tsv.is_none() && outputs.json.is_none() && outputs.dense.is_none() && outputs.csr.is_none() {
        eprintln!("no output file given (--tsv, --json, --dense, --csr): printing the statistics only");
    }
    run_aggregate_stage(&a.predictions, a.labels.as_deref(), &a.opts, a.proposals.as_deref(), &outputs)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Stage 6: everything
// ---------------------------------------------------------------------------

/// `labelscope relabel run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Images: a folder or a list file.
    #[arg(long, value_name = "DIR|LIST")]
    pub images: PathBuf,
    /// Proposals (COCO JSON).
    #[arg(long, value_name = "FILE")]
    pub proposals: PathBuf,
    /// Folder of label maps `{id}.npy`.
    #[arg(long, value_name = "DIR")]
    pub maps: PathBuf,
    /// Original labels.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Output folder (cache/, regions/, head/, predictions.jsonl, labels.tsv, labels.json, soft.npy).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub cache: CacheOpts,
    #[command(flatten)]
    pub select: SelectOpts,
    #[command(flatten)]
    pub train: TrainOpts,
    #[command(flatten)]
    pub agg: AggOpts,
    /// Classes kept per prediction.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

fn cmd_run(a: RunArgs) -> Result<()> {
    let out = &a.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cache = out.join("cache");
    if cache.join("complete.json").exists() && cache.join(labelscope_relabel::pipeline::IMAGES_JSONL).exists() {
        eprintln!("cache: complete, skipped ({})", cache.display());
    } else {
        run_cache_stage(&a.images, &cache, &a.backbone, &a.cache, "0/1", &a.device, a.quiet)?;
    }
    let regions_dir = out.join("regions");
    let regions = regions_dir.join("regions.safetensors");
    if regions.exists() {
        eprintln!("select: {} exists, skipped", regions.display());
    } else {
        run_select_stage(&cache, &a.proposals, &a.maps, &a.labels, &regions_dir, &a.select, a.quiet)?;
    }
    let head_dir = out.join("head");
    let head = head_path(&head_dir);
    if head.exists() {
        eprintln!("train: {} exists, skipped", head.display());
    } else {
        let resume = head_dir.join("checkpoints").join(labelscope_nn::train::CHECKPOINT_SAFETENSORS).exists();
        run_train_stage(&regions, &head_dir, &a.train, resume, &a.device, a.quiet)?;
    }
    let preds = out.join("predictions.jsonl");
    if preds.exists() {
        eprintln!("infer: {} exists, skipped", preds.display());
    } else {
        let chunk = labelscope_relabel::pipeline::infer_stage::DEFAULT_CHUNK;
        run_infer_stage(&cache, &a.proposals, &head, &preds, a.top_k, chunk, &a.device, a.quiet)?;
    }
    let outputs = AggregateOutputs {
        tsv: Some(out.join("labels.tsv")),
        json: Some(out.join("labels.json")),
        dense: Some(out.join("soft.npy")),
        csr: None,
    };
    run_aggregate_stage(&preds, Some(&a.labels), &a.agg, Some(&a.proposals), &outputs)?;
    Ok(())
}
