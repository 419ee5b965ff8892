//! `labelscope proposals`: object proposals by normalized cuts (MaskCut /
//! TokenCut) on patch feature maps, one file or a sharded, resumable run over
//! many; `merge`, `eval` and `gallery` subcommands.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use labelscope_core::ncut::NcutParams;
use labelscope_proposals::coco::{merge, read_coco, to_coco};
use labelscope_proposals::features::{load_features, FeatureLayout};
use labelscope_proposals::manifest::{from_dirs, read_manifest, Entry, Shard};
use labelscope_proposals::pipeline::{propose, Method, ProposalParams, Recipe};
use labelscope_proposals::run::{run_shard, RunOptions};
use labelscope_vision::crf::CrfParams;

/// `labelscope proposals`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ProposalsArgs {
    #[command(subcommand)]
    command: Option<ProposalsCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum ProposalsCommand {
    /// Merge the shard logs of a run into one COCO JSON file.
    Merge(MergeArgs),
    /// Object recall at an IoU threshold and CorLoc against ground-truth boxes or masks.
    Eval(EvalArgs),
    /// Overlay PNGs and an HTML gallery of the proposals of a COCO file.
    Gallery(GalleryArgs),
}

/// A named set of defaults.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum RecipeArg {
    /// CutLER on ImageNet: tau 0.15, N 3, CRF on, ViT-B/8 keys at 480 px (patch 8).
    CutlerImagenet,
    /// Multi-label relabelling (2026): tau 0.75, N 4, CRF off, DINOv2/v3 /14 at 896 px (patch 14).
    Relabel2026,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["features", "manifest", "features_dir"])))]
struct RunArgs {
    /// One feature map [h, w, d] (.npy, .npz or .safetensors; float).
    #[arg(long, value_name = "FILE")]
    features: Option<PathBuf>,
    /// Many images: a TSV with columns features (required), id, image, width, height.
    #[arg(long, value_name = "TSV")]
    manifest: Option<PathBuf>,
    /// Many images: every .npy/.npz/.safetensors file of a folder (id = file name without extension).
    #[arg(long, value_name = "DIR")]
    features_dir: Option<PathBuf>,
    /// With --features-dir: the folder of the images (found by id with any image extension).
    #[arg(long, value_name = "DIR", requires = "features_dir")]
    images_dir: Option<PathBuf>,
    /// With --features: the image the features were computed from (CRF, size, overlay).
    #[arg(long, value_name = "FILE", requires = "features")]
    image: Option<PathBuf>,
    /// With --features and no --image: the output size of the masks, WIDTHxHEIGHT (default: the patch grid).
    #[arg(long, value_name = "WxH", requires = "features", conflicts_with = "image")]
    image_size: Option<String>,
    /// The array of a multi-array feature file.
    #[arg(long, value_name = "NAME")]
    array: Option<String>,
    /// The patch grid HxW of a token-sequence array [tokens, d].
    #[arg(long, value_name = "HxW")]
    grid: Option<String>,
    /// Leading tokens of a token sequence that are not patches (1 for CLS, 1+R with R registers).
    #[arg(long, default_value_t = 0, requires = "grid")]
    skip_tokens: usize,
    /// Defaults for tau, N, CRF and patch size.
    #[arg(long, value_enum, default_value = "cutler-imagenet")]
    recipe: RecipeArg,
    /// Cosine threshold of the affinity, in (-1, 1) [default: from the recipe].
    #[arg(long, allow_hyphen_values = true)]
    tau: Option<f32>,
    /// Affinity of dissimilar patches, in (0, 1].
    #[arg(long, default_value_t = 1e-5)]
    eps: f32,
    /// Maximum number of masks per image [default: from the recipe].
    #[arg(long)]
    max_masks: Option<usize>,
    /// TokenCut: one cut without the corner rule.
    #[arg(long)]
    tokencut: bool,
    /// Turn the dense CRF off.
    #[arg(long, conflicts_with = "crf")]
    no_crf: bool,
    /// Turn the dense CRF on (needs the images).
    #[arg(long)]
    crf: bool,
    /// Patch size in pixels (the CRF runs at grid x patch) [default: from the recipe].
    #[arg(long)]
    patch: Option<usize>,
    /// With --features: write the patch-grid masks as uint8 [n, h, w] (0/1, discovery order).
    #[arg(long, value_name = "OUT.npy", requires = "features")]
    grid_masks: Option<PathBuf>,
    /// With --features: write the proposals as a COCO JSON file.
    #[arg(long, short, value_name = "FILE", requires = "features")]
    output: Option<PathBuf>,
    /// With --features and --image: write an overlay PNG.
    #[arg(long, value_name = "PNG", requires = "image")]
    overlay: Option<PathBuf>,
    /// Many images: the run's output folder (run.json, shard logs).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Many images: run shard i of n (0-based), e.g. 3/16 ($SLURM_ARRAY_TASK_ID/16).
    #[arg(long, value_name = "i/n", default_value = "0/1")]
    shard: String,
    /// Many images: record failing images and go on (exit status 1 at the end; a rerun retries them).
    #[arg(long)]
    keep_going: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Images between two syncs of the shard log.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct MergeArgs {
    /// The run's output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The merged COCO JSON file.
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// Check that every image of this manifest is present.
    #[arg(long, value_name = "TSV", conflicts_with = "features_dir")]
    manifest: Option<PathBuf>,
    /// Check that every feature file of this folder is present.
    #[arg(long, value_name = "DIR")]
    features_dir: Option<PathBuf>,
    /// Merge what is there even if shards have not finished.
    #[arg(long)]
    allow_incomplete: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ConventionArg {
    /// Boxes are continuous: area (x1 - x0)(y1 - y0).
    Continuous,
    /// Pixel-inclusive boxes: area (x1 - x0 + 1)(y1 - y0 + 1), as in TokenCut's evaluation.
    PixelInclusive,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Proposals: a COCO JSON file (from `proposals merge` or `--output`).
    #[arg(long, value_name = "FILE")]
    proposals: PathBuf,
    /// Ground-truth boxes: TSV name, class, x0, y0, x1, y1 (the val_boxes.tsv layout).
    #[arg(long, value_name = "TSV", required_unless_present = "gt_masks")]
    boxes: Option<PathBuf>,
    /// Ground-truth masks: a COCO JSON file with RLE segmentations (images matched by file name).
    #[arg(long, value_name = "FILE")]
    gt_masks: Option<PathBuf>,
    /// IoU threshold.
    #[arg(long, default_value_t = 0.5)]
    iou: f64,
    /// Box corner convention (pixel-inclusive is TokenCut's and LOST's CorLoc evaluation).
    #[arg(long, value_enum, default_value = "pixel-inclusive")]
    convention: ConventionArg,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct GalleryArgs {
    /// Proposals: a COCO JSON file.
    #[arg(long, value_name = "FILE")]
    proposals: PathBuf,
    /// The folder of the images.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Output folder: one overlay PNG per image and index.html.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of images (the first in image order).
    #[arg(long, default_value_t = 60)]
    limit: usize,
    /// Longest side of the thumbnails embedded in index.html.
    #[arg(long, default_value_t = 256)]
    thumb: u32,
}

/// Runs the command.
pub fn run(a: ProposalsArgs) -> Result<()> {
    match a.command {
        Some(ProposalsCommand::Merge(m)) => merge_cmd(m),
        Some(ProposalsCommand::Eval(e)) => eval_cmd(e),
        Some(ProposalsCommand::Gallery(g)) => gallery_cmd(g),
        None => run_cmd(a.run),
    }
}

fn parse_pair(s: &str, what: &str) -> Result<(usize, usize)> {
    let bad = || anyhow::anyhow!("{what} {s:?}: expected two positive integers like 60x60");
    let (a, b) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a == 0 || b == 0 {
        return Err(bad());
    }
    Ok((a, b))
}

fn params_of(a: &RunArgs) -> Result<ProposalParams> {
    let recipe = match a.recipe {
        RecipeArg::CutlerImagenet => Recipe::CutlerImagenet,
        RecipeArg::Relabel2026 => Recipe::Relabel2026,
    };
    let d = recipe.defaults();
    let tau = a.tau.unwrap_or(d.tau);
    if !(tau > -1.0 && tau < 1.0) {
        bail!("--tau {tau}: must lie in (-1, 1)");
    }
    if !(a.eps > 0.0 && a.eps <= 1.0) {
        bail!("--eps {}: must lie in (0, 1]", a.eps);
    }
    let max_masks = a.max_masks.unwrap_or(d.max_masks);
    if max_masks == 0 {
        bail!("--max-masks must be at least 1");
    }
    let crf = if a.no_crf { false } else { a.crf || d.crf };
    let patch = a.patch.unwrap_or(d.patch);
    if patch == 0 {
        bail!("--patch must be at least 1");
    }
    Ok(ProposalParams {
        ncut: NcutParams { tau, eps: a.eps, max_masks },
        method: if a.tokencut { Method::TokenCut } else { Method::MaskCut },
        crf: crf.then(CrfParams::default),
        patch,
    })
}

fn layout_of(a: &RunArgs) -> Result<FeatureLayout> {
    Ok(FeatureLayout {
        array: a.array.clone(),
        grid: a.grid.as_deref().map(|g| parse_pair(g, "--grid")).transpose()?,
        skip_tokens: a.skip_tokens,
    })
}

fn run_cmd(a: RunArgs) -> Result<()> {
    if let Some(t) = a.threads {
        rayon::ThreadPoolBuilder::new().num_threads(t.max(1)).build_global().ok();
    }
    let params = params_of(&a)?;
    let layout = layout_of(&a)?;
    if let Some(f) = &a.features {
        return single(&a, f, &params, &layout);
    }
    let out = a.out.clone().context("--out DIR is required with --manifest or --features-dir")?;
    let entries: Vec<Entry> = match (&a.manifest, &a.features_dir) {
        (Some(m), _) => read_manifest(m)?,
        (None, Some(d)) => from_dirs(d, a.images_dir.as_deref(), params.crf.is_some())?,
        _ => unreachable!("clap requires one input"),
    };
    if params.crf.is_some() {
        if let Some(e) = entries.iter().find(|e| e.image.is_none()) {
            bail!("image {:?} has no image file but the CRF needs one; add images, or pass --no-crf", e.id);
        }
    }
    let shard = Shard::parse(&a.shard)?;
    let opts = RunOptions { params, layout, shard, out_dir: out.clone(), keep_going: a.keep_going, batch: a.batch };
    let assigned = shard.select(&entries).len();
    let bar = if a.quiet { ProgressBar::hidden() } else { ProgressBar::new(assigned as u64) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} shard {msg} [{bar:30}] {pos}/{len} images, {per_sec}, eta {eta}")
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .progress_chars("=> "),
    );
    bar.set_message(shard.to_string());
    let t0 = Instant::now();
    let summary = run_shard(&entries, &opts, &|n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "shard {shard}: {} images assigned, {} done earlier, {} processed in {:.1} s ({:.2} images/s), {} proposals → {}",
        summary.assigned,
        summary.resumed,
        summary.processed,
        secs,
        summary.processed as f64 / secs.max(1e-9),
        summary.proposals,
        summary.log.display()
    );
    if summary.truncated_bytes > 0 {
        eprintln!("note: cut {} bytes of an interrupted record off the log", summary.truncated_bytes);
    }
    if !summary.failed.is_empty() {
        for (id, e) in summary.failed.iter().take(20) {
            eprintln!("failed: {id}: {e}");
        }
        bail!("{} images failed (not written; run the shard again to retry them)", summary.failed.len());
    }
    Ok(())
}

fn single(a: &RunArgs, path: &Path, params: &ProposalParams, layout: &FeatureLayout) -> Result<()> {
    let feat = load_features(path, layout)?;
    let img = match &a.image {
        Some(p) => Some(labelscope_vision::image::load_rgb(p)?),
        None => None,
    };
    let size = a.image_size.as_deref().map(|s| parse_pair(s, "--image-size")).transpose()?;
    let props = propose(&feat, img.as_ref(), size, params).with_context(|| format!("{}", path.display()))?;
    let (h, w) = (feat.h, feat.w);
    // Validate every output before writing any.
    if let Some(o) = &a.overlay {
        if img.is_none() {
            bail!("--overlay {} needs --image", o.display());
        }
    }
    if let Some(out) = &a.grid_masks {
        let n = props.proposals.len();
        labelscope_core::atomic::write_atomic_with(out, |wr| {
            wr.write_all(&labelscope_core::npy::header_bytes("|u1", &[n, h, w]))?;
            for p in &props.proposals {
                let bytes: Vec<u8> = p.grid_mask.iter().map(|&b| u8::from(b)).collect();
                wr.write_all(&bytes)?;
            }
            Ok(())
        })?;
    }
    let id = a
        .image
        .as_deref()
        .map(|p| labelscope_core::ids::join_key(&p.to_string_lossy()).to_string())
        .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
    let file_name = a
        .image
        .as_deref()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| id.clone());
    let record = props.to_record(&id, &file_name)?;
    if let Some(out) = &a.output {
        let coco = to_coco(vec![record.clone()], serde_json::json!({"description": "labelscope proposals"}))?;
        let json = serde_json::to_vec(&coco)?;
        labelscope_core::atomic::write_atomic(out, &json)?;
    }
    if let (Some(o), Some(img)) = (&a.overlay, &img) {
        let masks: Vec<Vec<bool>> = props.proposals.iter().map(|p| p.mask.clone()).collect();
        let boxes: Vec<[f64; 4]> = record
            .proposals
            .iter()
            .map(|p| [p.bbox[0], p.bbox[1], p.bbox[0] + p.bbox[2], p.bbox[1] + p.bbox[3]])
            .collect();
        let over = labelscope_vision::overlay::draw_overlay(img, &masks, &boxes)?;
        labelscope_vision::overlay::save_png_atomic(&over, o)?;
    }
    if !a.quiet {
        println!(
            "{}: {}x{} grid, {} mask(s) at {}x{}{}",
            path.display(),
            h,
            w,
            props.proposals.len(),
            props.width,
            props.height,
            if props.dropped_by_crf > 0 {
                format!(" ({} dropped by the CRF rule)", props.dropped_by_crf)
            } else {
                String::new()
            }
        );
        for (k, p) in record.proposals.iter().enumerate() {
            println!(
                "  mask {k}: cut {}, {} px, bbox [x {:.0}, y {:.0}, w {:.0}, h {:.0}], score {:.4}",
                p.cut, p.area, p.bbox[0], p.bbox[1], p.bbox[2], p.bbox[3], p.score
            );
        }
    }
    Ok(())
}

fn merge_cmd(m: MergeArgs) -> Result<()> {
    let expected = match (&m.manifest, &m.features_dir) {
        (Some(p), _) => Some(read_manifest(p)?),
        (None, Some(d)) => Some(from_dirs(d, None, false)?),
        _ => None,
    };
    let (coco, summary) = merge(&m.out, expected.as_deref(), m.allow_incomplete)?;
    let json = serde_json::to_vec(&coco)?;
    labelscope_core::atomic::write_atomic(&m.output, &json)?;
    eprintln!(
        "merged {} shards: {} images, {} proposals → {}",
        summary.shards,
        summary.images,
        summary.proposals,
        m.output.display()
    );
    if !summary.incomplete.is_empty() {
        eprintln!("warning: unfinished shards: {}", summary.incomplete.join(", "));
    }
    Ok(())
}

fn gallery_cmd(g: GalleryArgs) -> Result<()> {
    let coco = read_coco(&g.proposals)?;
    let items = labelscope_proposals::gallery::render(&g.proposals, &coco, &g.images, &g.out, g.limit, g.thumb)?;
    let html =
        labelscope_proposals::gallery::html(&format!("Proposals: {}", g.proposals.display()), &items, &coco.info);
    let index = g.out.join("index.html");
    labelscope_core::atomic::write_atomic(&index, html.as_bytes())?;
    eprintln!("{} overlays and {} written", items.len(), index.display());
    Ok(())
}

fn eval_cmd(e: EvalArgs) -> Result<()> {
    use labelscope_proposals::eval::{
        coco_boxes, coco_masks, evaluate_boxes, evaluate_masks, read_boxes_tsv, BoxConvention,
    };
    let coco = read_coco(&e.proposals)?;
    let conv = match e.convention {
        ConventionArg::Continuous => BoxConvention::Continuous,
        ConventionArg::PixelInclusive => BoxConvention::PixelInclusive,
    };
    let mut reports = Vec::new();
    if let Some(b) = &e.boxes {
        let gt = read_boxes_tsv(b)?;
        let props = coco_boxes(&coco, conv);
        reports.push(
            evaluate_boxes(&props, &gt, e.iou, conv)
                .with_context(|| format!("{} vs {}", e.proposals.display(), b.display()))?,
        );
    }
    if let Some(m) = &e.gt_masks {
        let gt_coco = read_coco(m)?;
        let gt = coco_masks(m, &gt_coco)?;
        let props = coco_masks(&e.proposals, &coco)?;
        reports.push(
            evaluate_masks(&props, &gt, e.iou)
                .with_context(|| format!("{} vs {}", e.proposals.display(), m.display()))?,
        );
    }
    println!(
        "{:<6} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "gt", "images", "proposals", "objects", "recall", "corloc", "iou"
    );
    for r in &reports {
        println!(
            "{:<6} {:>7} {:>9} {:>8} {:>7.2}% {:>7.2}% {:>8}",
            r.kind,
            r.images,
            r.proposals,
            r.objects,
            100.0 * r.recall,
            100.0 * r.corloc,
            r.iou
        );
    }
    if let Some(j) = &e.json {
        let json = serde_json::to_vec_pretty(&serde_json::json!({"convention": conv, "results": reports}))?;
        labelscope_core::atomic::write_atomic(j, &json)?;
    }
    Ok(())
}
