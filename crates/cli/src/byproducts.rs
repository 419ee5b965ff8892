//! `labelscope byproducts`: LUAB point targets from annotation byproducts.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use labelscope_byproducts::targets::{imagenet_target, random_baseline, PointMode};
use labelscope_byproducts::{coco, imagenet, Point, ReadSummary};

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
    }
}

fn targets(a: TargetsArgs) -> Result<()> {
    let mode = parse_mode(&a.mode)?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} records {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    // (image, class, point or none)
    let mut rows: Vec<(String, String, Option<Point>)> = Vec::new();
    let summary: ReadSummary = if let Some(p) = &a.imagenet_ab {
        imagenet::read_archive(p, a.skip_bad, |r| {
            bar.inc(1);
            let t = imagenet_target(&r, mode);
            rows.push((r.image, r.wnid.unwrap_or_default(), t));
        })?
    } else if let Some(p) = &a.coco_ab {
        coco::read_array(p, a.skip_bad, |r| {
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
    for r in &summary.skip_reasons {
        eprintln!("  skipped: {r}");
    }
    Ok(())
}
