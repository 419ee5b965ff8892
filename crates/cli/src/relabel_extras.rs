//! `labelscope relabel label-map | soft-target | filter-proposals |
//! feature-entropy` (issue 10, relabeling extras): soft spatial label maps
//! and crop soft targets, filtering external proposals by the labeler's
//! confidence, and the k-NN entropy of features. docs/relabel.md
//! ("Relabeling extras") describes the files and formulas.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use labelscope_core::entropy::{knn_entropy, Duplicates};
use labelscope_core::npy::{header_bytes, read_array};
use labelscope_relabel::external::{
    check_thresholds, score_proposals, threshold_table, write_filtered, write_report, FilterReport,
};
use labelscope_relabel::labelmap::{
    export_label_maps, MapOptions, MapSet, Normalize, Pooling, ScoreKind, SoftTargetOptions,
};
use serde_json::json;

fn bar(len: u64, what: &str, quiet: bool) -> Result<indicatif::ProgressBar> {
    let b = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(len) };
    b.set_style(
        indicatif::ProgressStyle::with_template(&format!("{what} [{{bar:30}}] {{pos}}/{{len}} eta {{eta}}"))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .progress_chars("=> "),
    );
    Ok(b)
}

fn parse_box(s: &str) -> Result<[f64; 4]> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 4 {
        bail!("box {s:?}: expected x0,y0,x1,y1 (4 comma-separated numbers)");
    }
    let mut out = [0.0; 4];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .with_context(|| format!("box {s:?}: {p:?} is not a finite number"))?;
    }
    Ok(out)
}

fn parse_list(s: &str, flag: &str) -> Result<Vec<f64>> {
    s.split(',')
        .map(|p| p.trim().parse::<f64>().with_context(|| format!("{flag} {s:?}: {p:?} is not a number")))
        .collect()
}

// ---------------------------------------------------------------------------
// label-map
// ---------------------------------------------------------------------------

/// What the label maps store.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScoresArg {
    /// The head's logits (ReLabel).
    Logits,
    /// Softmax probabilities.
    Probs,
}

/// `labelscope relabel label-map`.
#[derive(Debug, Args)]
pub struct LabelMapArgs {
    /// Feature cache folder.
    #[arg(long, value_name = "DIR")]
    pub cache: PathBuf,
    /// Region head weights (.safetensors with its .json next to it).
    #[arg(long, value_name = "FILE")]
    pub head: PathBuf,
    /// Output folder: {id}.npy ([2, k, h, w] float32) and labelmaps.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Classes kept per cell.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Half-size r of the window averaged around each patch (0 = the patch token alone).
    #[arg(long, default_value_t = 0)]
    pub window: usize,
    /// Store logits (ReLabel) or softmax probabilities.
    #[arg(long, value_enum, default_value = "logits")]
    pub scores: ScoresArg,
    /// Images per head call.
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    /// Device of the head: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `relabel label-map`.
pub fn run_label_map(a: LabelMapArgs) -> Result<()> {
    let dev = crate::nnio::device(&a.device)?;
    let opts = MapOptions {
        k: a.top_k,
        window: a.window,
        scores: match a.scores {
            ScoresArg::Logits => ScoreKind::Logits,
            ScoresArg::Probs => ScoreKind::Probs,
        },
        chunk: a.chunk,
    };
    let mut pb: Option<indicatif::ProgressBar> = None;
    let s = export_label_maps(&a.cache, &a.head, &a.out, &opts, &dev, |done, total| {
        let b = pb.get_or_insert_with(|| {
            bar(total as u64, "label maps", a.quiet).unwrap_or_else(|_| indicatif::ProgressBar::hidden())
        });
        b.set_position(done as u64);
    })?;
    if let Some(b) = pb {
        b.finish_and_clear();
    }
    println!(
        "{} label maps ({} classes, top {}, window {}) in {}; {} placed by images.jsonl",
        s.images,
        s.classes,
        a.top_k,
        a.window,
        a.out.display(),
        s.with_geometry
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// soft-target
// ---------------------------------------------------------------------------

/// Pooling of a box over the map.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PoolingArg {
    /// torchvision RoI-align (aligned=True), as ReLabel.
    RoiAlign,
    /// Exact area-weighted mean of the covered cells.
    Area,
}

/// Normalisation of the pooled scores.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NormalizeArg {
    /// Softmax over all classes (ReLabel).
    Softmax,
    /// Divide by the sum (maps of probabilities).
    Sum,
    /// None.
    None,
}

/// `labelscope relabel soft-target`.
#[derive(Debug, Args)]
pub struct SoftTargetArgs {
    /// Label-map folder from `relabel label-map`.
    #[arg(long, value_name = "DIR")]
    pub maps: PathBuf,
    /// Image id (with --box).
    #[arg(long, value_name = "ID", requires = "bbox", conflicts_with = "boxes")]
    pub image: Option<String>,
    /// A crop box x0,y0,x1,y1 in pixels of the original image (repeat for several).
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1", requires = "image")]
    pub bbox: Vec<String>,
    /// CSV of boxes with the header image,x0,y0,x1,y1 (one row per box).
    #[arg(long, value_name = "FILE")]
    pub boxes: Option<PathBuf>,
    /// Pooling.
    #[arg(long, value_enum, default_value = "roi-align")]
    pub pooling: PoolingArg,
    /// RoI-align sampling ratio (samples per axis); adaptive (ceil of the box size in cells) when left out.
    #[arg(long)]
    pub sampling_ratio: Option<usize>,
    /// Normalisation of the pooled scores.
    #[arg(long, value_enum, default_value = "softmax")]
    pub normalize: NormalizeArg,
    /// Write the dense targets [boxes, classes] as a float32 .npy (rows in box order).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Classes printed per box.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn read_box_csv(path: &Path) -> Result<Vec<(String, [f64; 4])>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.starts_with("image")) {
            continue;
        }
        let (id, rest) = line
            .split_once(',')
            .with_context(|| format!("{}: line {}: expected image,x0,y0,x1,y1", path.display(), n + 1))?;
        let b = parse_box(rest).with_context(|| format!("{}: line {}", path.display(), n + 1))?;
        out.push((id.trim().to_string(), b));
    }
    Ok(out)
}

/// Runs `relabel soft-target`.
pub fn run_soft_target(a: SoftTargetArgs) -> Result<()> {
    let set = MapSet::open(&a.maps)?;
    let boxes: Vec<(String, [f64; 4])> = match (&a.image, &a.boxes) {
        (Some(id), None) => a.bbox.iter().map(|b| Ok((id.clone(), parse_box(b)?))).collect::<Result<_>>()?,
        (None, Some(p)) => read_box_csv(p)?,
        _ => bail!("give --image with --box, or --boxes FILE"),
    };
    if a.sampling_ratio == Some(0) {
        bail!("--sampling-ratio 0: expected a positive count");
    }
    let opts = SoftTargetOptions {
        pooling: match a.pooling {
            PoolingArg::RoiAlign => Pooling::RoiAlign(a.sampling_ratio),
            PoolingArg::Area => Pooling::Area,
        },
        normalize: match a.normalize {
            NormalizeArg::Softmax => Normalize::Softmax,
            NormalizeArg::Sum => Normalize::Sum,
            NormalizeArg::None => Normalize::None,
        },
    };
    let classes = set.index().classes;
    let mut targets: Vec<f32> = Vec::with_capacity(boxes.len() * classes);
    let mut cached: Option<(String, labelscope_relabel::labelmap::SoftLabelMap)> = None;
    for (k, (id, b)) in boxes.iter().enumerate() {
        if cached.as_ref().map(|c| &c.0) != Some(id) {
            cached = Some((id.clone(), set.get(id).with_context(|| format!("box {} (image {id:?})", k + 1))?));
        }
        let map = &cached.as_ref().map(|c| &c.1).context("label map")?;
        let t = map.soft_target(*b, &opts).with_context(|| format!("box {} (image {id:?}, {b:?})", k + 1))?;
        targets.extend(t);
    }
    if let Some(out) = &a.out {
        labelscope_core::atomic::write_atomic_with(out, |w| {
            w.write_all(&header_bytes("<f4", &[boxes.len(), classes]))?;
            let bytes: Vec<u8> = targets.iter().flat_map(|x| x.to_le_bytes()).collect();
            w.write_all(&bytes)
        })?;
        if !a.json {
            println!("{} soft targets of {classes} classes written to {}", boxes.len(), out.display());
            return Ok(());
        }
    }
    let rows: Vec<_> = boxes
        .iter()
        .enumerate()
        .map(|(k, (id, b))| {
            let t = &targets[k * classes..(k + 1) * classes];
            let mut idx: Vec<usize> = (0..classes).collect();
            idx.sort_by(|&x, &y| t[y].total_cmp(&t[x]).then(x.cmp(&y)));
            idx.truncate(a.top);
            (id, b, idx.into_iter().map(|c| (c, t[c])).collect::<Vec<_>>())
        })
        .collect();
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(id, b, top)| {
                json!({"image": id, "box": b, "top": top.iter().map(|&(c, p)| json!({"class": c, "p": p})).collect::<Vec<_>>()})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (id, b, top) in rows {
            let s: Vec<String> = top.iter().map(|(c, p)| format!("{c}:{p:.4}")).collect();
            println!("{id}\t{},{},{},{}\t{}", b[0], b[1], b[2], b[3], s.join(" "));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// filter-proposals
// ---------------------------------------------------------------------------

/// `labelscope relabel filter-proposals`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Feature cache folder.
    #[arg(long, value_name = "DIR")]
    pub cache: PathBuf,
    /// Region head weights.
    #[arg(long, value_name = "FILE")]
    pub head: PathBuf,
    /// External proposals: COCO instances JSON with RLE segmentations.
    #[arg(long, value_name = "FILE")]
    pub proposals: PathBuf,
    /// Thresholds of the kept/removed table (comma-separated probabilities).
    #[arg(long, default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")]
    pub thresholds: String,
    /// Threshold of the filtered output (keep top-1 confidence >= T).
    #[arg(long, value_name = "T", default_value_t = 0.5)]
    pub threshold: f64,
    /// Filtered COCO JSON (written atomically).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The table as CSV (.csv) or JSON (any other extension).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Images per head call.
    #[arg(long, default_value_t = 256)]
    pub chunk: usize,
    /// Device of the head.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `relabel filter-proposals`.
pub fn run_filter(a: FilterArgs) -> Result<()> {
    let thresholds = parse_list(&a.thresholds, "--thresholds")?;
    check_thresholds(&thresholds).context("--thresholds")?;
    check_thresholds(&[a.threshold]).context("--threshold")?;
    let dev = crate::nnio::device(&a.device)?;
    let mut pb: Option<indicatif::ProgressBar> = None;
    let (input, scores) = score_proposals(&a.cache, &a.proposals, &a.head, a.chunk, &dev, |done, total| {
        let b = pb.get_or_insert_with(|| {
            bar(total as u64, "images", a.quiet).unwrap_or_else(|_| indicatif::ProgressBar::hidden())
        });
        b.set_position(done as u64);
    })?;
    if let Some(b) = pb {
        b.finish_and_clear();
    }
    let report = FilterReport {
        input: a.proposals.display().to_string(),
        proposals: scores.len(),
        outside_grid: scores.iter().filter(|s| s.outside_grid).count(),
        thresholds: threshold_table(&scores, &thresholds),
    };
    println!(
        "{}: {} proposals, {} outside the feature grid",
        a.proposals.display(),
        report.proposals,
        report.outside_grid
    );
    println!("{:>9} {:>8} {:>8} {:>8}", "threshold", "kept", "removed", "kept %");
    for r in &report.thresholds {
        println!("{:>9} {:>8} {:>8} {:>7.2}%", r.threshold, r.kept, r.removed, 100.0 * r.kept_share);
    }
    if let Some(p) = &a.report {
        write_report(p, &report)?;
    }
    if let Some(out) = &a.out {
        let kept = write_filtered(&input, &scores, a.threshold, out)?;
        println!("kept {kept} of {} at confidence >= {} -> {}", scores.len(), a.threshold, out.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// feature-entropy
// ---------------------------------------------------------------------------

/// Duplicate rows.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DuplicatesArg {
    /// Keep one copy of each distinct row.
    Remove,
    /// Stop with an error.
    Error,
}

/// `labelscope relabel feature-entropy`.
#[derive(Debug, Args)]
pub struct EntropyArgs {
    /// Feature matrices [N, d] (.npy, .npz or .safetensors; any float dtype), e.g. the
    /// penultimate features of a single-label and a multi-label model on the same images.
    #[arg(long = "features", value_name = "FILE", required = true)]
    pub features: Vec<PathBuf>,
    /// Array name inside .npz / .safetensors files.
    #[arg(long)]
    pub array: Option<String>,
    /// Neighbour order k.
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// What to do with duplicate rows.
    #[arg(long, value_enum, default_value = "remove")]
    pub duplicates: DuplicatesArg,
    /// Write the table as CSV (.csv) or JSON (other extensions), atomically.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `relabel feature-entropy`.
pub fn run_entropy(a: EntropyArgs) -> Result<()> {
    let mut rows = Vec::new();
    for p in &a.features {
        let (arr, what) = read_array(p, a.array.as_deref(), &[])?;
        let &[n, d] = arr.shape() else {
            bail!("{}: {what} has shape {:?}; expected [N, d]", p.display(), arr.shape());
        };
        let data = arr.to_f64_vec(p, &what)?;
        let dup = match a.duplicates {
            DuplicatesArg::Remove => Duplicates::Remove,
            DuplicatesArg::Error => Duplicates::Error,
        };
        let e = knn_entropy(&data, n, d, a.k, dup).with_context(|| p.display().to_string())?;
        rows.push((p.display().to_string(), e));
    }
    let as_json = || {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, e)| {
                json!({"file": p, "points": e.points, "used": e.used, "duplicates_removed": e.duplicates_removed,
                       "dim": e.dim, "k": e.k, "entropy_nats": e.entropy, "entropy_per_dim": e.entropy / e.dim as f64,
                       "mean_log_eps": e.mean_log_eps})
            })
            .collect();
        serde_json::Value::from(v)
    };
    if let Some(out) = &a.out {
        let text = if out.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            let mut s = String::from("file,points,used,duplicates_removed,dim,k,entropy_nats,entropy_per_dim\n");
            for (p, e) in &rows {
                s.push_str(&format!(
                    "{},{},{},{},{},{},{},{}\n",
                    p.replace(',', ";"),
                    e.points,
                    e.used,
                    e.duplicates_removed,
                    e.dim,
                    e.k,
                    e.entropy,
                    e.entropy / e.dim as f64
                ));
            }
            s
        } else {
            serde_json::to_string_pretty(&as_json())?
        };
        labelscope_core::atomic::write_atomic(out, text.as_bytes())?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&as_json())?);
        return Ok(());
    }
    println!("k-NN entropy (Kozachenko-Leonenko, k = {}, Euclidean radius, nats)", a.k);
    println!("{:>8} {:>8} {:>6} {:>5} {:>14} {:>10}  file", "points", "used", "dups", "dim", "H (nats)", "H / dim");
    for (p, e) in &rows {
        println!(
            "{:>8} {:>8} {:>6} {:>5} {:>14.6} {:>10.6}  {p}",
            e.points,
            e.used,
            e.duplicates_removed,
            e.dim,
            e.entropy,
            e.entropy / e.dim as f64
        );
    }
    Ok(())
}
