//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Evaluate ImageNet-style classifiers against multi-label ground truth \
(ImageNet-ReaL, INv2-ML, expert labels), analyse label sets, and plot the results.";

const AFTER: &str = "\
Examples (from a checkout of the repository, with the public data in ../shared/data):
  # ReaL and original top-1/top-5 of 8 published models, with breakdowns
  labelscope eval --labels ../shared/data/imagenet/real.json \\
      --predictions ../shared/data/predictions/imagenet-val \\
      --images ../shared/data/imagenet/val_original.json

  # the same for ImageNetV2 against INv2-ML, as JSON for scripts
  labelscope eval --labels ../shared/data/imagenetv2/inv2_ml_labels.json \\
      --predictions ../shared/data/predictions/imagenetv2-matched-frequency \\
      --images ../shared/data/imagenetv2/matched_frequency.json --json

  # which class pairs co-occur (candidates for ambiguous pairs)
  labelscope cooccur --labels ../shared/data/imagenet/real.json --top 20

Row order: prediction files are matrices whose rows are images. Which image each row is
comes from --images (never guessed silently). The predictions in ../shared/data are in
val_original.json order (sorted by wnid), not in file-name order.";

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(name = "labelscope", version, about = ABOUT, after_help = AFTER, max_term_width = 100)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate prediction files against a label source (top-k, ReaL, expert, mAP, set metrics).
    Eval(Box<EvalArgs>),
    /// Compare two label sources image by image (exact, superset, subset, partial, empty).
    CompareLabels(CompareArgs),
    /// Class-pair co-occurrence counts and confidences of a multi-label source.
    Cooccur(CooccurArgs),
    /// Label-file tools: rebuild from rater scores, summarise a label file.
    #[command(subcommand)]
    Labels(LabelsCommand),
    /// Show the class table and its groups, or regenerate the embedded table.
    #[command(subcommand)]
    Classes(ClassesCommand),
    /// Draw a plot from one or more results files written by `eval --output`.
    Plot(PlotArgs),
    /// Write a self-contained HTML report from one or more results files.
    Report(ReportArgs),
    /// Measure the speed of the metrics on generated data (see BENCHMARKS.md).
    Bench(BenchArgs),
    /// Patch features or attention keys of a DINO ViT for a folder of images (one .npy per image).
    Features(Box<crate::features::FeaturesArgs>),
    /// Object proposals by normalized cuts (MaskCut / TokenCut) on patch feature maps.
    Proposals(Box<crate::proposals::ProposalsArgs>),
    /// Measure the normalized cut and MaskCut on generated feature maps (see BENCHMARKS.md).
    BenchNcut(crate::bench_ncut::BenchNcutArgs),
    /// Measure the ViT forward pass on random input (see BENCHMARKS.md).
    BenchVit(crate::bench_vit::BenchVitArgs),
    /// Model weights: convert PyTorch checkpoints to safetensors, verify them, list the registry.
    Weights(crate::weights::WeightsArgs),
    /// Measure image decoding + preprocessing (images/s; see BENCHMARKS.md).
    BenchPreprocess(crate::bench_preprocess::BenchPreprocessArgs),
    /// Run an ImageNet classifier (ResNet-50, ViT/DeiT) on images: top-k, logits, features for `eval`.
    Classify(Box<crate::classify::ClassifyArgs>),
    /// GradCAM maps or input-gradient saliency of a classifier for a folder of images.
    Gradcam(Box<crate::gradcam::GradcamArgs>),
    /// Spurious-feature metrics (Hard ImageNet): accuracy under object ablations, RFS, GradCAM alignment.
    Spurious(Box<crate::spurious::SpuriousArgs>),
    /// Training with richer supervision: DFR (last layer on a spurious-balanced subset).
    Train(crate::train::TrainArgs),
    /// Measure the spurious-feature metrics (images/s; see BENCHMARKS.md).
    BenchSpurious(crate::bench_spurious::BenchSpuriousArgs),
    /// Automatic multi-label relabeling: feature cache, training regions, region labeler, aggregation, outputs.
    Relabel(crate::relabel::RelabelArgs),
    /// Measure region pooling + labeler inference and head training (see BENCHMARKS.md).
    BenchRelabel(crate::bench_relabel::BenchRelabelArgs),
    /// Annotation byproducts (ImageNet-AB, COCO-AB): LUAB point targets.
    Byproducts(crate::byproducts::ByproductsArgs),
    /// Serve the annotation studio: task pages that record mouse traces, hovers and clicks.
    Serve(crate::studio::ServeArgs),
    /// Annotation studio administration: migrate, create projects, export byproducts.
    Studio(crate::studio::StudioArgs),
    /// Models and human labelers as participants: multi-label / top-1 tables per split and subset, plots.
    Humans(Box<crate::humans::HumansArgs>),
}

/// How the score columns are to be read for set metrics.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ScoresArg {
    /// The columns are logits; --activation turns them into probabilities.
    Logits,
    /// The columns are probabilities, used as they are.
    Probs,
}

/// Activation applied to logits.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ActivationArg {
    /// Softmax over the classes of each image (single-label-trained models).
    Softmax,
    /// Independent sigmoid per class (multi-label-trained models).
    Sigmoid,
}

/// Forced kind of prediction file.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum KindArg {
    /// Top-k class indices, best first.
    Topk,
    /// Scores (logits or probabilities) per class.
    Scores,
}

/// Output format on standard output.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum FormatArg {
    /// Aligned table for people.
    #[default]
    Table,
    /// One JSON object with `rows` (same as --json).
    Json,
    /// CSV with one row per result.
    Csv,
    /// Markdown tables.
    Markdown,
}

/// Options shared by commands that read labels.
#[derive(Debug, Args, Clone)]
pub struct ClassArgs {
    /// Class list replacing the built-in ImageNet-1k table: a text file with one class id per
    /// line (optionally `id<TAB>names`), a JSON array of ids, or a class_info.json-style array.
    #[arg(long, value_name = "FILE")]
    pub classes: Option<PathBuf>,
}

/// `labelscope eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Ground truth: ReaL real.json, INv2-ML json, ImageNetV2 dataset json, CSV/TSV
    /// (name, labels...), JSON {name: [labels]}, or expert labels (TFDS imagenet2012_multilabel
    /// schema). The format is detected from content. A `.npz` of ReaL-style rater scores is
    /// thresholded at --rater-threshold (images without scores keep their original label).
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Threshold for rater-score (.npz) labels.
    #[arg(long, default_value_t = 0.8)]
    pub rater_threshold: f64,
    /// Force the label format instead of detecting it.
    #[arg(long, value_name = "FORMAT", value_parser = ["real", "inv2-ml", "dataset", "json", "csv", "tsv", "expert"])]
    pub labels_format: Option<String>,
    /// Prediction files: .npy (top-k int [N,k] or scores float [N,C]), .npz, .safetensors, .csv;
    /// a directory of them, or a glob such as 'preds/*.npy'. May be repeated.
    #[arg(long, value_name = "FILE|DIR|GLOB", required = true, num_args = 1..)]
    pub predictions: Vec<String>,
    /// Row order of the prediction files: an ImageNetV2 dataset json ([name, wnid] pairs, which
    /// also gives original labels), a text file of names, a CSV whose first column is the name,
    /// or a built-in order: `ilsvrc2012-val` (the 50,000 validation images sorted by file name).
    #[arg(long, value_name = "FILE|NAME")]
    pub images: Option<String>,
    /// Original single labels (any label format with one label per image, e.g. val_original.json);
    /// by default taken from --images when it carries them.
    #[arg(long, value_name = "FILE")]
    pub original: Option<PathBuf>,
    #[command(flatten)]
    pub class_args: ClassArgs,
    /// Dataset name in the results (default: the --labels file stem).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Array name inside .npz / .safetensors files.
    #[arg(long, value_name = "NAME")]
    pub array: Option<String>,
    /// Force the kind of the prediction files instead of detecting it from the dtype.
    #[arg(long, value_enum)]
    pub prediction_kind: Option<KindArg>,
    /// What the score columns are; needed for set metrics (subset accuracy, IoU, P/R/F1).
    #[arg(long, value_enum)]
    pub scores: Option<ScoresArg>,
    /// Activation for --scores logits.
    #[arg(long, value_enum, default_value = "softmax")]
    pub activation: ActivationArg,
    /// Set-metric threshold on probabilities: a number, or `calibrated` (per class, so that each
    /// class gets as many positives as it has labels). An empty set falls back to the argmax.
    #[arg(long, default_value = "0.5")]
    pub threshold: String,
    /// The k of top-k metrics, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    pub k: Vec<usize>,
    /// Significance level of intervals: 0.05 gives 95% Clopper-Pearson / bootstrap intervals.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Bootstrap resamples for mAP and class-balanced accuracy intervals (0 turns them off).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also bootstrap class-wise mAP (one pass over all scores per resample: slow).
    #[arg(long)]
    pub bootstrap_classwise: bool,
    /// Only the `all` subset (no per-bucket / per-group rows).
    #[arg(long)]
    pub no_breakdowns: bool,
    /// Evaluate the images that labels and predictions share when they do not cover the same images.
    #[arg(long)]
    pub allow_partial: bool,
    /// Rank models (leaderboard order) by this metric on subset `all`, best first; `file` keeps
    /// the order of the files. The default ranks by top1 when present.
    #[arg(long, default_value = "top1", value_name = "METRIC|file")]
    pub sort: String,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Where the result rows of `eval` and `humans` go: standard output in one format, and files.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print one JSON object with `rows` on standard output (same as --format json).
    #[arg(long)]
    pub json: bool,
    /// Output format on standard output.
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// Also write the results (JSON; `eval`'s can be read by `plot` and `report`) to this file.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also write the result rows as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Also write Markdown to this file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write a self-contained HTML report (tables and plots) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the plots (SVG and PNG) to this directory.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
}

/// `labelscope compare-labels`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Label source A.
    pub a: PathBuf,
    /// Label source B.
    pub b: PathBuf,
    /// Classes to list per group.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[command(flatten)]
    pub class_args: ClassArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `labelscope cooccur`.
#[derive(Debug, Args)]
pub struct CooccurArgs {
    /// Multi-label source.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Only pairs seen at least this often.
    #[arg(long, default_value_t = 1)]
    pub min_count: u64,
    /// Only the first N pairs (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top: usize,
    #[command(flatten)]
    pub class_args: ClassArgs,
    /// Print JSON (`rows` of {a, b, count, freq_a, freq_b, conf_a_given_b, conf_b_given_a}).
    #[arg(long)]
    pub json: bool,
}

/// `labelscope labels ...`.
#[derive(Debug, Subcommand)]
pub enum LabelsCommand {
    /// Rebuild multi-labels from ReaL-style rater scores: every class scoring at least the
    /// threshold; images without scores keep their original label.
    Rebuild {
        /// Rater scores (.npz with `tensor` scores and `info` (file name, class) pairs).
        #[arg(long, value_name = "FILE")]
        scores: PathBuf,
        /// Original labels and image list (e.g. val_original.json).
        #[arg(long, value_name = "FILE")]
        original: PathBuf,
        /// Score threshold.
        #[arg(long, default_value_t = 0.8)]
        threshold: f64,
        /// Output JSON (ReaL array form for the ILSVRC2012 validation images, else {name: [labels]}).
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
    },
    /// Print a summary of a label file: format, images, empty sets, label-count histogram.
    Info {
        /// Label file.
        labels: PathBuf,
        #[command(flatten)]
        class_args: ClassArgs,
    },
}

/// `labelscope classes ...`.
#[derive(Debug, Subcommand)]
pub enum ClassesCommand {
    /// List the classes (index, wnid, name, groups), optionally one group only.
    List {
        /// Only this group: organism, object, animal, dog, organism-without-dog, animal-without-dog.
        #[arg(long)]
        group: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Group sizes.
    Groups,
    /// Regenerate the embedded table from class_info.json and WordNet 3.0 (Debian wordnet-base).
    Generate {
        /// ImageNetV2 class_info.json.
        #[arg(long, value_name = "FILE")]
        class_info: PathBuf,
        /// WordNet dict directory holding data.noun.
        #[arg(long, default_value = "/usr/share/wordnet", value_name = "DIR")]
        wordnet: PathBuf,
        /// Output file.
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
    },
}

/// `labelscope plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Results files written by `eval --output` (JSON with `rows`).
    #[arg(long, required = true, num_args = 1..)]
    pub results: Vec<PathBuf>,
    /// Scatter x axis: [DATASET:]METRIC[@SUBSET], e.g. `imagenet:orig-top1`.
    #[arg(long)]
    pub x: Option<String>,
    /// Scatter y axis: [DATASET:]METRIC[@SUBSET], e.g. `real:top1`.
    #[arg(long)]
    pub y: Option<String>,
    /// Draw the y = x line.
    #[arg(long)]
    pub diagonal: bool,
    /// Draw the least-squares line.
    #[arg(long)]
    pub fit: bool,
    /// Instead of a scatter: bars of METRIC per bucket, e.g. `top1` (with --buckets).
    #[arg(long, conflicts_with_all = ["x", "y"])]
    pub bars: Option<String>,
    /// Bucket family for --bars: `labels` (number of labels) or `group` (class group).
    #[arg(long, default_value = "labels")]
    pub buckets: String,
    /// Plot title.
    #[arg(long)]
    pub title: Option<String>,
    /// Output file: .svg or .png.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
}

/// `labelscope report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results files written by `eval --output`.
    #[arg(long, required = true, num_args = 1..)]
    pub results: Vec<PathBuf>,
    /// Report title.
    #[arg(long, default_value = "labelscope report")]
    pub title: String,
    /// Output HTML file.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
}

/// `labelscope bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Rows (images) of the generated score matrix.
    #[arg(long, default_value_t = 50_000)]
    pub rows: usize,
    /// Columns (classes).
    #[arg(long, default_value_t = 1000)]
    pub classes: usize,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for the generated inputs (scores.npy, labels.json); reused when present.
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
    /// Only generate the inputs.
    #[arg(long)]
    pub generate_only: bool,
}
