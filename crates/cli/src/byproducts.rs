//! `labelscope byproducts`: LUAB point targets, analyses and synthetic
//! releases of annotation byproducts.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use labelscope_byproducts::analysis::{AnalysisOptions, ImagenetAnalysis};
use labelscope_byproducts::coco_analysis::CocoAnalysis;
use labelscope_byproducts::synth::{write_coco_ab, write_imagenet_ab, SynthConfig};
use labelscope_byproducts::targets::{imagenet_target, random_baseline, PointMode};
use labelscope_byproducts::{coco, imagenet, report, truth, Point, ReadOptions, ReadSummary};

/// `labelscope byproducts`.
#[derive(Debug, Args)]
pub struct ByproductsArgs {
    #[command(subcommand)]
    pub command: ByproductsCommand,
}

/// The byproduct tools.
#[derive(Debug, Subcommand)]
pub enum ByproductsCommand {
    /// Point targets (image, class, x, y in [0,1]) from an ImageNet-AB archive or a COCO-AB JSON.
    Targets(TargetsArgs),
    /// Analyse a release against ground truth: click accuracy and baselines, traces, click position in the
    /// box, COCO icon precision and recall, annotators; tables (CSV), plots (SVG, PNG) and report.html.
    #[command(alias = "analyze")]
    Analyse(AnalyseArgs),
    /// Write a synthetic release of any size with planted behaviour, and its ground truth.
    Synth(SynthArgs),
}

/// `labelscope byproducts analyse`.
#[derive(Debug, Args)]
pub struct AnalyseArgs {
    /// ImageNet-AB release (.tar.gz or .tar of per-image XML records).
    #[arg(long, requires = "boxes", required_unless_present = "coco_ab")]
    pub imagenet_ab: Option<PathBuf>,
    /// Ground-truth boxes for ImageNet-AB: a TSV in the val_boxes.tsv layout or a folder of ILSVRC XML files.
    #[arg(long)]
    pub boxes: Option<PathBuf>,
    /// COCO-AB release (one JSON array of per-image records).
    #[arg(long, requires = "instances")]
    pub coco_ab: Option<PathBuf>,
    /// COCO instance annotations (instances_*.json) for COCO-AB.
    #[arg(long)]
    pub instances: Option<PathBuf>,
    /// Output folder: report.html, one CSV per table, one SVG (and PNG) per plot.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Skip malformed records (counted and reported) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Parser threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Do not render PNG copies of the plots.
    #[arg(long)]
    pub no_png: bool,
    /// A click within this distance of the centre (image-normalised) is a centre click.
    #[arg(long, default_value_t = 0.1)]
    pub centre_radius: f64,
    /// Flag workers with at least this share of centre clicks…
    #[arg(long, default_value_t = 0.5)]
    pub flag_share: f64,
    /// …and at least this many clicks.
    #[arg(long, default_value_t = 10)]
    pub min_clicks: u64,
    /// Seed of the random-click baselines.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `labelscope byproducts synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Write a synthetic ImageNet-AB release (.tar.gz) here…
    #[arg(long, requires = "boxes")]
    pub imagenet_ab: Option<PathBuf>,
    /// …and its boxes (val_boxes.tsv layout) here.
    #[arg(long)]
    pub boxes: Option<PathBuf>,
    /// Write a synthetic COCO-AB release (JSON array) here…
    #[arg(long, requires = "instances", required_unless_present = "imagenet_ab")]
    pub coco_ab: Option<PathBuf>,
    /// …and its COCO instance annotations here.
    #[arg(long)]
    pub instances: Option<PathBuf>,
    /// Number of images.
    #[arg(long, default_value_t = 1000)]
    pub images: usize,
    /// Number of classes (ImageNet: first classes of the class table; COCO: at most 80).
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Number of ordinary workers.
    #[arg(long, default_value_t = 20)]
    pub workers: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Do not plant the centre-clicking worker W-CENTRE.
    #[arg(long)]
    pub no_centre_worker: bool,
    /// Mean click offset from the box centre in box units, `DX,DY` (x right, y down).
    #[arg(long, default_value = "0.12,-0.12", allow_hyphen_values = true)]
    pub offset: String,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `labelscope byproducts targets`.
#[derive(Debug, Args)]
pub struct TargetsArgs {
    /// ImageNet-AB release: a .tar.gz (or .tar) of per-image XML records.
    #[arg(long, conflicts_with = "coco_ab", required_unless_present = "coco_ab")]
    pub imagenet_ab: Option<PathBuf>,
    /// COCO-AB release: one JSON array of per-image records.
    #[arg(long)]
    pub coco_ab: Option<PathBuf>,
    /// ImageNet point: `final` (final click), `mean` (mean of selected clicks) or `last:N` (last N trace points).
    #[arg(long, default_value = "final")]
    pub mode: String,
    /// Write the seeded uniform random-point baseline (same coverage) instead of the byproduct points.
    #[arg(long, value_name = "SEED")]
    pub random_baseline: Option<u64>,
    /// Skip malformed records (counted and reported) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Output CSV (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also write the targets as a float32 .npy aligned with --image-list: shape (N, 2) for ImageNet,
    /// (N, C, 2) for COCO with the classes of --classes; NaN where an image (or class) has no target.
    #[arg(long, requires = "image_list")]
    pub npy: Option<PathBuf>,
    /// Image list for --npy: one image per line (ImageNet: file name or key; COCO: image id).
    #[arg(long)]
    pub image_list: Option<PathBuf>,
    /// Class list for a COCO --npy: one icon class name per line.
    #[arg(long)]
    pub classes: Option<PathBuf>,
}

fn parse_mode(s: &str) -> Result<PointMode> {
    Ok(match s {
        "final" => PointMode::FinalClick,
        "mean" => PointMode::MeanOfClicks,
        _ => match s.strip_prefix("last:").and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0) {
            Some(n) => PointMode::LastTrace(n),
            None => bail!("--mode {s:?}: expected final, mean or last:N with N >= 1"),
        },
    })
}

/// Runs `labelscope byproducts`.
pub fn run(args: ByproductsArgs) -> Result<()> {
    match args.command {
        ByproductsCommand::Targets(a) => targets(a),
        ByproductsCommand::Analyse(a) => analyse(a),
        ByproductsCommand::Synth(a) => synth(a),
    }
}

fn targets(a: TargetsArgs) -> Result<()> {
    let mode = parse_mode(&a.mode)?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} records {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let opts = ReadOptions { skip_bad: a.skip_bad, ..Default::default() };
    // (image, class, point or none)
    let mut rows: Vec<(String, String, Option<Point>)> = Vec::new();
    let summary: ReadSummary = if let Some(p) = &a.imagenet_ab {
        imagenet::read_archive(p, &opts, |r| {
            bar.inc(1);
            let t = imagenet_target(&r, mode);
            rows.push((r.image, r.wnid.unwrap_or_default(), t));
        })?
    } else if let Some(p) = &a.coco_ab {
        coco::read_array(p, &opts, |r| {
            bar.inc(1);
            for (class, pt) in r.last_add_points() {
                rows.push((r.image_id.to_string(), class, Some(pt)));
            }
        })?
    } else {
        bail!("give --imagenet-ab or --coco-ab");
    };
    bar.finish_and_clear();
    if let Some(seed) = a.random_baseline {
        let pts: Vec<Option<Point>> = rows.iter().map(|r| r.2).collect();
        for (r, b) in rows.iter_mut().zip(random_baseline(&pts, seed)) {
            r.2 = b;
        }
    }
    let mut out = String::from("image,class,x,y\n");
    let mut with = 0usize;
    for (image, class, p) in &rows {
        if let Some(p) = p {
            with += 1;
            let _ = writeln!(out, "{image},{class},{},{}", p.x, p.y);
        }
    }
    labelscope_core::atomic::write_atomic(&a.output, out.as_bytes())
        .with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!(
        "{} records read, {} skipped as malformed; {} targets written to {} ({} records without a target)",
        summary.records,
        summary.skipped,
        with,
        a.output.display(),
        rows.len() - with
    );
    report_skips(&summary);
    if let (Some(npy), Some(list)) = (&a.npy, &a.image_list) {
        write_aligned(npy, list, a.classes.as_deref(), a.coco_ab.is_some(), &rows)?;
    }
    Ok(())
}

fn report_skips(summary: &ReadSummary) {
    for r in &summary.skip_reasons {
        eprintln!("  skipped: {r}");
    }
    if summary.skipped > summary.skip_reasons.len() as u64 {
        eprintln!("  … and {} more", summary.skipped - summary.skip_reasons.len() as u64);
    }
}

/// Reads a list file: one non-empty line per entry, trimmed.
fn read_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

/// The image key of a list entry: the file stem of a name or path.
fn list_key(entry: &str) -> &str {
    let base = entry.rsplit('/').next().unwrap_or(entry);
    match base.rsplit_once('.') {
        Some((a, ext)) if !ext.is_empty() && ext.len() <= 5 && !a.is_empty() => a,
        _ => base,
    }
}

fn write_aligned(
    npy: &Path,
    list: &Path,
    classes: Option<&Path>,
    is_coco: bool,
    rows: &[(String, String, Option<Point>)],
) -> Result<()> {
    let images = read_list(list)?;
    let index: HashMap<&str, usize> = images.iter().enumerate().map(|(i, e)| (list_key(e), i)).collect();
    if index.len() != images.len() {
        bail!("{}: an image is listed twice", list.display());
    }
    let (shape, per, class_index) = if is_coco {
        let Some(cp) = classes else { bail!("--npy for COCO-AB needs --classes (one icon class name per line)") };
        let names = read_list(cp)?;
        let ci: HashMap<String, usize> = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        (vec![images.len(), names.len(), 2], names.len() * 2, Some(ci))
    } else {
        (vec![images.len(), 2], 2, None)
    };
    let mut data = vec![f32::NAN; images.len() * per];
    let (mut placed, mut unlisted, mut unknown_class) = (0usize, 0usize, 0usize);
    for (image, class, p) in rows {
        let Some(p) = p else { continue };
        let Some(&i) = index.get(image.as_str()) else {
            unlisted += 1;
            continue;
        };
        let off = match &class_index {
            Some(ci) => match ci.get(class) {
                Some(&c) => i * per + c * 2,
                None => {
                    unknown_class += 1;
                    continue;
                }
            },
            None => i * per,
        };
        data[off] = p.x as f32;
        data[off + 1] = p.y as f32;
        placed += 1;
    }
    crate::nnio::write_npy_f32(npy, &shape, &data, crate::nnio::FloatDtype::F32)?;
    eprintln!(
        "{placed} targets placed in {} (shape {shape:?}); {unlisted} targets of images not in {}{}",
        npy.display(),
        list.display(),
        if is_coco { format!(", {unknown_class} of classes not in the class list") } else { String::new() }
    );
    Ok(())
}

fn bytes_bar(path: &Path, quiet: bool, what: &str) -> indicatif::ProgressBar {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(len) };
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn analyse(a: AnalyseArgs) -> Result<()> {
    let opts = AnalysisOptions {
        centre_radius: a.centre_radius,
        flag_share: a.flag_share,
        min_clicks: a.min_clicks,
        seed: a.seed,
        ..Default::default()
    };
    if a.centre_radius.is_nan() || a.centre_radius <= 0.0 || !(0.0..=1.0).contains(&a.flag_share) {
        bail!("--centre-radius must be > 0 and --flag-share in [0, 1]");
    }
    let mut parts = Vec::new();
    let mut meta = vec![("command".to_string(), std::env::args().collect::<Vec<_>>().join(" "))];
    meta.push(("labelscope".to_string(), env!("CARGO_PKG_VERSION").to_string()));
    if let (Some(release), Some(boxes)) = (&a.imagenet_ab, &a.boxes) {
        let truth = truth::read_boxes(boxes)?;
        let bar = bytes_bar(release, a.quiet, "ImageNet-AB");
        let tick = |n: u64| bar.set_position(n);
        let ro = ReadOptions { skip_bad: a.skip_bad, threads: a.threads, progress: Some(&tick) };
        let mut an = ImagenetAnalysis::new(&truth, opts.clone());
        // Ground-truth lookups on the parser threads; accumulation here.
        let lookup = ImagenetAnalysis::new(&truth, opts.clone());
        let summary = imagenet::read_archive_map(
            release,
            &ro,
            |r| {
                let b = lookup.boxes_of(&r);
                (r, b)
            },
            |(r, b)| an.add_with_boxes(&r, b),
        )?;
        bar.finish_and_clear();
        let r = an.finish()?;
        eprintln!(
            "ImageNet-AB: {} records ({} skipped); final-click accuracy {:.2}% on {} images, centre {:.2}%; {} workers flagged",
            summary.records,
            summary.skipped,
            100.0 * r.click.value(),
            r.click.total,
            100.0 * r.centre.value(),
            r.workers.iter().filter(|w| w.flagged).count()
        );
        report_skips(&summary);
        meta.push(("ImageNet-AB release".into(), release.display().to_string()));
        meta.push(("ImageNet boxes".into(), boxes.display().to_string()));
        meta.push(("ImageNet-AB records (skipped)".into(), format!("{} ({})", summary.records, summary.skipped)));
        parts.push(report::imagenet_parts(&r)?);
    }
    if let (Some(release), Some(instances)) = (&a.coco_ab, &a.instances) {
        let truth = truth::read_coco_instances(instances)?;
        let bar = bytes_bar(release, a.quiet, "COCO-AB");
        let tick = |n: u64| bar.set_position(n);
        let ro = ReadOptions { skip_bad: a.skip_bad, threads: a.threads, progress: Some(&tick) };
        let mut an = CocoAnalysis::new(&truth, opts.clone());
        let summary = coco::read_array(release, &ro, |r| an.add(&r))?;
        bar.finish_and_clear();
        let r = an.finish();
        eprintln!(
            "COCO-AB: {} records ({} skipped); icon precision {:.2}% (masks), {:.2}% (boxes) on {} icons; {} workers flagged",
            summary.records,
            summary.skipped,
            100.0 * r.precision.value(),
            100.0 * r.box_precision.value(),
            r.precision.total,
            r.workers.iter().filter(|w| w.flagged).count()
        );
        report_skips(&summary);
        meta.push(("COCO-AB release".into(), release.display().to_string()));
        meta.push(("COCO instances".into(), instances.display().to_string()));
        meta.push(("COCO-AB records (skipped)".into(), format!("{} ({})", summary.records, summary.skipped)));
        parts.push(report::coco_parts(&r)?);
    }
    let files = report::write_report(&a.output, "Annotation byproducts", &meta, &parts, !a.no_png)?;
    eprintln!("{} files written to {} (open report.html)", files.len(), a.output.display());
    Ok(())
}

fn synth(a: SynthArgs) -> Result<()> {
    let offset = a
        .offset
        .split_once(',')
        .and_then(|(x, y)| Some((x.trim().parse::<f64>().ok()?, y.trim().parse::<f64>().ok()?)))
        .with_context(|| format!("--offset {:?}: expected DX,DY (two numbers)", a.offset))?;
    let cfg = SynthConfig {
        images: a.images,
        classes: a.classes,
        workers: a.workers,
        seed: a.seed,
        centre_worker: !a.no_centre_worker,
        offset,
        ..Default::default()
    };
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(a.images as u64) };
    let tick = |n: usize| bar.set_position(n as u64);
    if let (Some(release), Some(boxes)) = (&a.imagenet_ab, &a.boxes) {
        bar.reset();
        let s = write_imagenet_ab(release, boxes, &cfg, &tick)?;
        bar.finish_and_clear();
        eprintln!(
            "{}: {} records, {} bytes; {} boxes in {}",
            release.display(),
            s.records,
            s.bytes,
            s.objects,
            boxes.display()
        );
    }
    if let (Some(release), Some(instances)) = (&a.coco_ab, &a.instances) {
        bar.reset();
        let s = write_coco_ab(release, instances, &cfg, &tick)?;
        bar.finish_and_clear();
        eprintln!(
            "{}: {} records, {} bytes; {} instances in {}",
            release.display(),
            s.records,
            s.bytes,
            s.objects,
            instances.display()
        );
    }
    Ok(())
}
