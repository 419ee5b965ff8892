//! `labelscope relabel report` (quality report of produced labels against a
//! human label set) and `labelscope relabel query` (ranked classes of a box).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use labelscope_core::classes::ClassTable;
use labelscope_core::labels::load_labels;
use labelscope_nn::head::RegionHead;
use labelscope_relabel::cache::FeatureCache;
use labelscope_relabel::quality::{self, GallerySources};
use labelscope_relabel::query;
use serde_json::json;

use crate::args::ClassArgs;

/// `labelscope relabel report`.
#[derive(Debug, Args)]
pub struct QualityArgs {
    /// Produced labels: the TSV or the JSON output of `labelscope relabel` (told apart by content).
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Human labels to compare with, in any label format (ReaL real.json, INv2-ML, CSV/TSV,
    /// JSON {name: [labels]}, expert labels); images are joined by id (base name without extension).
    #[arg(long, value_name = "FILE")]
    pub reference: PathBuf,
    /// A produced label counts when its value is >= TAU.
    #[arg(long, default_value_t = quality::DEFAULT_TAU)]
    pub tau: f32,
    /// Folder with the images (found by id), drawn in the gallery of disagreements.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// The JSON output with the masks drawn in the gallery (default: --labels when it is JSON).
    #[arg(long, value_name = "FILE")]
    pub proposals: Option<PathBuf>,
    /// Number of disagreeing images in the gallery (most different first: Jaccard similarity
    /// increasing, then the number of differing classes decreasing, then the image id).
    #[arg(long, default_value_t = quality::DEFAULT_GALLERY)]
    pub gallery: usize,
    /// Longest side of the thumbnails embedded in the page, in pixels.
    #[arg(long, default_value_t = quality::DEFAULT_THUMB)]
    pub thumb: u32,
    /// Classes shown in the terminal's per-class table (those with the most reference labels);
    /// 0 = all. The files always hold all of them.
    #[arg(long, default_value_t = 20)]
    pub show_classes: usize,
    /// Classes listed per overlap group.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Output folder: report.html, per_class.csv, per_class.md, summary.json, gallery/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub class_args: ClassArgs,
}

/// `labelscope relabel query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Feature cache folder (`labelscope relabel` features).
    #[arg(long, value_name = "DIR")]
    pub cache: PathBuf,
    /// Region head weights (.safetensors, with its .json configuration next to it).
    #[arg(long, value_name = "FILE")]
    pub head: PathBuf,
    /// Image id in the cache.
    #[arg(long, value_name = "ID")]
    pub image: String,
    /// The box `x0,y0,x1,y1` in pixels of the original image when its geometry is known
    /// (--image-size, or the pipeline's images.jsonl in the cache folder), else of the network
    /// input (the recipe's output, e.g. 224x224 for resize256-crop224; grid cells when the
    /// cache's recipe is not a known one).
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1")]
    pub bbox: String,
    /// Original image size `W,H`: the grid is then placed on the original image by the
    /// cache's recipe (the centre-crop window for resize/square-crop recipes). Overrides the
    /// cache's images.jsonl.
    #[arg(long, value_name = "W,H")]
    pub image_size: Option<String>,
    /// Number of classes listed.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Device of the head: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub class_args: ClassArgs,
}

fn class_table(a: &ClassArgs) -> Result<ClassTable> {
    Ok(match &a.classes {
        Some(p) => ClassTable::from_path(p)?,
        None => ClassTable::imagenet().clone(),
    })
}

fn name_of(classes: &ClassTable, c: u32) -> String {
    classes.get(c as usize).map(|x| x.name().to_string()).unwrap_or_else(|| format!("class {c}"))
}

/// Runs `labelscope relabel report`.
pub fn run_quality(a: QualityArgs) -> Result<()> {
    if !(a.tau.is_finite() && (0.0..=1.0).contains(&a.tau)) {
        bail!("--tau {}: expected a value in [0, 1]", a.tau);
    }
    let classes = class_table(&a.class_args)?;
    let produced = quality::load_produced(&a.labels, Some(classes.len()))?;
    let reference = load_labels(&a.reference, None, &classes)?.to_sets()?;
    let sets = produced.sets(a.tau)?;
    let r = quality::evaluate(&sets, &reference, a.tau, a.top);
    if r.comparison.compared == 0 {
        bail!("{} and {} share no image id", a.labels.display(), a.reference.display());
    }
    let extra_masks = match &a.proposals {
        Some(p) => Some(quality::load_masks(p)?),
        None => None,
    };
    let masks = match (&a.proposals, &extra_masks) {
        (Some(p), Some(m)) => Some((p.as_path(), m)),
        _ => produced.json.as_ref().map(|m| (a.labels.as_path(), m)),
    };
    let src = GallerySources { images_dir: a.images.as_deref(), masks };
    let show = |p: &Option<PathBuf>| p.as_ref().map_or("-".to_string(), |p| p.display().to_string());
    let meta = vec![
        ("produced labels".to_string(), a.labels.display().to_string()),
        ("reference".to_string(), a.reference.display().to_string()),
        ("tau".to_string(), a.tau.to_string()),
        ("images".to_string(), show(&a.images)),
        ("masks".to_string(), masks.map_or("-".to_string(), |m| m.0.display().to_string())),
        ("gallery".to_string(), format!("up to {} images", a.gallery)),
        ("labelscope".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ];
    let files = quality::write_report(&a.out, &r, &produced, &classes, &src, a.gallery, a.thumb, &meta)
        .with_context(|| format!("writing the report into {}", a.out.display()))?;
    println!("{}", quality::summary_markdown(&r, &classes));
    let n = r.classes.len();
    if a.show_classes > 0 && a.show_classes < n {
        println!(
            "Per class ({} of {n} with the most reference labels; all in {}):\n",
            a.show_classes,
            files.csv.display()
        );
    } else {
        println!("Per class:\n");
    }
    println!("{}", quality::per_class_markdown(&r, &classes, a.show_classes));
    println!(
        "{} disagreeing images, {} in the gallery.\nwrote {}, {}, {}, {}",
        r.disagreements.len(),
        files.gallery,
        files.html.display(),
        files.csv.display(),
        files.markdown.display(),
        files.summary.display()
    );
    Ok(())
}

fn parse_floats<const N: usize>(s: &str, flag: &str, what: &str) -> Result<[f64; N]> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != N {
        bail!("{flag} {s:?}: expected {what} ({N} comma-separated numbers)");
    }
    let mut out = [0.0; N];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .with_context(|| format!("{flag} {s:?}: {p:?} is not a finite number; expected {what}"))?;
    }
    Ok(out)
}

fn image_size(s: &str) -> Result<(usize, usize)> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let bad = || format!("--image-size {s:?}: expected W,H (two positive integers)");
    if parts.len() != 2 {
        bail!(bad());
    }
    let w: usize = parts[0].parse().ok().filter(|&v| v > 0).with_context(bad)?;
    let h: usize = parts[1].parse().ok().filter(|&v| v > 0).with_context(bad)?;
    Ok((w, h))
}

/// Runs `labelscope relabel query`.
pub fn run_query(a: QueryArgs) -> Result<()> {
    let bbox = parse_floats::<4>(&a.bbox, "--box", "x0,y0,x1,y1")?;
    let size = a.image_size.as_deref().map(image_size).transpose()?;
    if a.top == 0 {
        bail!("--top 0: expected at least one class");
    }
    let classes = class_table(&a.class_args)?;
    let dev = crate::nnio::device(&a.device)?;
    let cache = FeatureCache::open(&a.cache)?;
    let head = RegionHead::load(&a.head, &dev).with_context(|| format!("loading the head {}", a.head.display()))?;
    query::check_head(&cache, &head).with_context(|| format!("head {}", a.head.display()))?;
    let f = cache.get(&a.image)?;
    let cached = if size.is_none() { query::cached_geometry(&cache)? } else { None };
    let (geom, source) = match cached.as_ref().and_then(|m| m.get(&a.image)) {
        Some(g) => (*g, "images.jsonl"),
        None => (
            query::geometry_for(&cache.meta().recipe, size, (f.h, f.w))?,
            if size.is_some() { "--image-size" } else { "network input" },
        ),
    };
    let top = query::region_classes(&cache, &a.image, &geom, bbox, &head, a.top)?;
    print_query(&a, &cache.meta().recipe, (&geom, source), bbox, &top, &classes)
}

fn print_query(
    a: &QueryArgs,
    recipe: &str,
    (g, source): (&labelscope_relabel::pool::GridGeometry, &str),
    bbox: [f64; 4],
    top: &[(u32, f32)],
    classes: &ClassTable,
) -> Result<()> {
    if a.json {
        let rows: Vec<_> = top.iter().map(|&(c, p)| json!({"class": c, "name": name_of(classes, c), "p": p})).collect();
        let v = json!({
            "image": a.image,
            "box": bbox,
            "geometry": {"image_w": g.image_w, "image_h": g.image_h, "x0": g.x0, "y0": g.y0, "x1": g.x1, "y1": g.y1,
                         "recipe": recipe, "source": source},
            "classes": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "image {:?}, box {},{},{},{} on a {}x{} image (grid covers x {:.2}..{:.2}, y {:.2}..{:.2}; recipe {recipe}, geometry from {source})",
        a.image, bbox[0], bbox[1], bbox[2], bbox[3], g.image_w, g.image_h, g.x0, g.x1, g.y0, g.y1
    );
    println!("{:>4} {:>8} {:>6}  name", "rank", "p", "class");
    for (i, &(c, p)) in top.iter().enumerate() {
        println!("{:>4} {:>8.4} {:>6}  {}", i + 1, p, c, name_of(classes, c));
    }
    Ok(())
}
