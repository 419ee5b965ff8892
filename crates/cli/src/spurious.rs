//! `labelscope spurious`: Hard ImageNet-style spurious-feature metrics of a
//! classifier on images with object masks — accuracy and true-class
//! confidence under the Gray / Gray-BBox / Tile ablations, RFS under
//! foreground / background noise, GradCAM alignment with the masks — per
//! class and overall, with intervals, optionally side by side with an
//! earlier run; `results.json`, `per_class.csv`, `per_image.csv` and a
//! self-contained `report.html` with example ablations and CAM overlays.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use labelscope_core::classes::ClassTable;
use labelscope_core::metrics::intervals::Bootstrap;
use labelscope_report::html::{html_page, Cell, Figure, Section, Table};
use labelscope_spurious::ablation::{self, Ablation};
use labelscope_spurious::evaluate::{evaluate_batch, ClassMap, Evaluation, Model, NoiseOptions, Options, Sample};
use labelscope_spurious::noise::NoiseMode;
use labelscope_spurious::planar::{Mask, Planar};
use labelscope_vision::decode::{decode_file, DecodeOptions};
use labelscope_vision::preprocess::{Recipe, IMAGENET_MEAN, IMAGENET_STD};
use labelscope_vision::resample::Filter;
use serde_json::{json, Value};

use crate::nnio::Precision;

/// Which class list the evaluation uses and how it maps onto the model.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MapKind {
    /// The 15 Hard ImageNet classes on a 1000-way ImageNet model (sunglasses: outputs 837 and 836).
    HardImagenet,
    /// The same 15 classes on a 15-way head (outputs 0..14 in Hard ImageNet's order).
    HardImagenet15,
    /// The model's own classes (the built-in ImageNet table, or --classes).
    Model,
}

/// Noise scaling of the RFS measurement.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum NoiseArg {
    /// Per value: x + sigma * m * z.
    Linf,
    /// The whole noise image has L2 norm sigma.
    L2,
}

/// `labelscope spurious`.
#[derive(Debug, Args)]
pub struct SpuriousArgs {
    #[command(flatten)]
    model: crate::nnio::ModelArgs,
    /// Images and masks in Hard ImageNet's release layout: masks in DIR/<split>/<wnid>_<image>.* (any
    /// image extension), images found in --image-root.
    #[arg(long, value_name = "DIR", conflicts_with = "masks")]
    hard_imagenet: Option<PathBuf>,
    /// Split of --hard-imagenet: train or val.
    #[arg(long, default_value = "val")]
    split: String,
    /// ImageNet folder of --hard-imagenet's images: <root>/<split>/<wnid>/<image>.JPEG or
    /// <root>/<split>/<image>.JPEG.
    #[arg(long, value_name = "DIR")]
    image_root: Option<PathBuf>,
    /// Generic layout: folder of masks named like the images (same file stem; > 0 is object).
    #[arg(long, value_name = "DIR", requires_all = ["images", "labels"], conflicts_with = "coco_instances")]
    masks: Option<PathBuf>,
    /// Masks from COCO instances (polygons or RLE; crowd annotations left out): an image's mask is
    /// the union of its objects; images are matched by id (`000000000139.jpg` is image 139).
    #[arg(long, value_name = "FILE", requires_all = ["images", "labels"])]
    coco_instances: Option<PathBuf>,
    /// Generic layout: folder of images.
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Generic layout: CSV `image,class` (file stem, then a class name of the class list, an index or a
    /// WordNet id).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Class list and its mapping onto the model's outputs.
    #[arg(long, value_enum, default_value = "hard-imagenet")]
    class_map: MapKind,
    /// Predict only among the class list's outputs (a 1000-way model read as a 15-way one).
    #[arg(long)]
    restrict: bool,
    /// Class list of --class-map model (default: the built-in ImageNet table).
    #[arg(long, value_name = "FILE")]
    classes: Option<PathBuf>,
    /// Preprocessing (Hard ImageNet: square256-crop224); masks take the same geometry, then > 0.
    #[arg(long, default_value = "square256-crop224")]
    recipe: String,
    /// Ablations (comma-separated): none, gray, gray-bbox, tile.
    #[arg(long, default_value = "none,gray,gray-bbox,tile")]
    ablations: String,
    /// RFS noise scale (0: no RFS).
    #[arg(long, default_value_t = 0.25)]
    sigma: f64,
    /// RFS noise mode.
    #[arg(long, value_enum, default_value = "linf")]
    noise: NoiseArg,
    /// RFS trials per image.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip the GradCAM saliency alignment.
    #[arg(long)]
    no_saliency: bool,
    /// Images per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// At most this many images (in dataset order).
    #[arg(long)]
    limit: Option<usize>,
    /// An earlier run's results.json to show side by side (another model or training recipe).
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    /// Example images (ablations and CAM overlays) in the report.
    #[arg(long, default_value_t = 6)]
    examples: usize,
    /// Output folder: results.json, per_class.csv, per_image.csv, report.html.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// One image of the dataset before loading.
struct Item {
    id: String,
    image: PathBuf,
    mask: MaskSource,
    class: usize,
}

/// Where an image's object mask comes from.
enum MaskSource {
    /// A mask image.
    File(PathBuf),
    /// The union of COCO objects (polygons or RLE), rasterised at the image's size.
    Coco(Vec<labelscope_byproducts::truth::CocoObject>),
}

fn resolve_class(map: &ClassMap, table: &ClassTable, token: &str) -> Option<usize> {
    let t = token.trim();
    if let Some(k) =
        map.names.iter().position(|n| n.eq_ignore_ascii_case(t) || n.replace(' ', "_").eq_ignore_ascii_case(t))
    {
        return Some(k);
    }
    // A WordNet id or an index of one of the map's outputs.
    let idx = table.resolve(t)?;
    map.outputs.iter().position(|o| o.contains(&idx))
}

/// The rows of a CSV `image,class` (header and `#` lines skipped) with their images in `idir`:
/// `(position for errors, image key, image file, class)`.
fn labelled_images(
    labels: &Path,
    idir: &Path,
    map: &ClassMap,
    table: &ClassTable,
) -> Result<Vec<(String, String, PathBuf, usize)>> {
    let images = crate::nnio::images_by_stem(idir)?;
    let text = std::fs::read_to_string(labels).with_context(|| format!("cannot read {}", labels.display()))?;
    let mut out = Vec::new();
    for (line, row) in text.lines().enumerate() {
        let row = row.trim();
        if row.is_empty() || row.starts_with('#') || (line == 0 && row.to_ascii_lowercase().starts_with("image,")) {
            continue;
        }
        let at = format!("{} line {}", labels.display(), line + 1);
        let Some((id, class)) = row.split_once(',') else {
            bail!("{at}: expected `image,class`");
        };
        let id = id.trim();
        let class = resolve_class(map, table, class)
            .with_context(|| format!("{at}: {:?} is not a class of --class-map", class.trim()))?;
        let image = images.get(id).with_context(|| format!("{at}: no image {id:?} in {}", idir.display()))?;
        out.push((at, id.to_string(), image.clone(), class));
    }
    Ok(out)
}

fn dataset(a: &SpuriousArgs, map: &ClassMap, table: &ClassTable) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    if let Some(dir) = &a.hard_imagenet {
        let root = a.image_root.as_ref().context("--hard-imagenet needs --image-root (the ImageNet folder)")?;
        let mdir = dir.join(&a.split);
        for (stem, mask) in crate::nnio::images_by_stem(&mdir)? {
            let Some((wnid, image)) = stem.split_once('_') else {
                bail!("{}: mask name {stem:?} is not <wnid>_<image>", mdir.display());
            };
            let class = resolve_class(map, table, wnid).with_context(|| {
                format!("{}: {wnid:?} (from {stem:?}) is not a class of --class-map", mask.display())
            })?;
            let candidates = [
                root.join(&a.split).join(wnid).join(format!("{image}.JPEG")),
                root.join(&a.split).join(format!("{image}.JPEG")),
            ];
            let img = candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
                format!(
                    "image of mask {}: none of {} exists",
                    mask.display(),
                    candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                )
            })?;
            items.push(Item { id: stem.clone(), image: img, mask: MaskSource::File(mask), class });
        }
    } else if let (Some(coco), Some(idir), Some(labels)) = (&a.coco_instances, &a.images, &a.labels) {
        let truth = labelscope_byproducts::truth::read_coco_instances(coco)?;
        for (at, id, image, class) in labelled_images(labels, idir, map, table)? {
            let coco_id: u64 = id.parse().with_context(|| {
                format!("{at}: {id:?} is not a COCO image id (expected a number such as 000000000139)")
            })?;
            let objects = truth.objects.get(&coco_id).cloned().unwrap_or_default();
            items.push(Item { id, image, mask: MaskSource::Coco(objects), class });
        }
    } else if let (Some(mdir), Some(idir), Some(labels)) = (&a.masks, &a.images, &a.labels) {
        let masks = crate::nnio::images_by_stem(mdir)?;
        for (at, id, image, class) in labelled_images(labels, idir, map, table)? {
            let mask = masks.get(&id).with_context(|| format!("{at}: no mask {id:?} in {}", mdir.display()))?;
            items.push(Item { id, image, mask: MaskSource::File(mask.clone()), class });
        }
    } else {
        bail!(
            "give the images and masks: --hard-imagenet DIR --image-root DIR, --images DIR --masks DIR --labels FILE, or \
             --images DIR --coco-instances FILE --labels FILE"
        );
    }
    if let Some(n) = a.limit {
        items.truncate(n);
    }
    if items.is_empty() {
        bail!("no images with masks found");
    }
    Ok(items)
}

fn load(item: &Item, recipe: Recipe, filter: Filter) -> Result<Sample> {
    let opts = DecodeOptions::default();
    let img = decode_file(&item.image, &opts).with_context(|| format!("image {}", item.image.display()))?;
    let (mask_img, mask_name) = match &item.mask {
        MaskSource::File(p) => {
            (decode_file(p, &opts).with_context(|| format!("mask {}", p.display()))?, p.display().to_string())
        }
        MaskSource::Coco(objects) => {
            let (w, h) = img.dimensions();
            let m = labelscope_vision::RgbImage::from_fn(w, h, |x, y| {
                let p = labelscope_byproducts::Point {
                    x: (f64::from(x) + 0.5) / f64::from(w),
                    y: (f64::from(y) + 0.5) / f64::from(h),
                };
                let on = objects.iter().any(|o| o.mask.contains(p));
                image::Rgb(if on { [255; 3] } else { [0; 3] })
            });
            (m, format!("COCO objects of {}", item.id))
        }
    };
    if mask_img.dimensions() != img.dimensions() {
        bail!(
            "mask {} is {}x{} but its image {} is {}x{}; expected the same size",
            mask_name,
            mask_img.width(),
            mask_img.height(),
            item.image.display(),
            img.width(),
            img.height()
        );
    }
    let img = recipe.apply(&img, filter)?;
    let m = recipe.apply(&mask_img, filter)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let gray: Vec<u8> = m.pixels().map(|p| p.0[0].max(p.0[1]).max(p.0[2])).collect();
    Ok(Sample {
        id: item.id.clone(),
        class: item.class,
        image: Planar::from_rgb8(w, h, img.as_raw())?,
        mask: Mask::from_gray8(w, h, &gray)?,
    })
}

/// The neural runtime's classifier as a [`Model`].
pub(crate) struct Net {
    model: labelscope_nn::Classifier,
    device: Device,
}

impl Net {
    /// Wraps a classifier running on `device`.
    pub(crate) fn new(model: labelscope_nn::Classifier, device: Device) -> Net {
        Net { model, device }
    }

    fn input(&self, batch: &[&Planar]) -> labelscope_spurious::Result<Tensor> {
        let (w, h) = (batch[0].width, batch[0].height);
        let n = w * h;
        let mut data = Vec::with_capacity(batch.len() * 3 * n);
        for im in batch {
            for c in 0..3 {
                data.extend(im.data[c * n..(c + 1) * n].iter().map(|&v| (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c]));
            }
        }
        Tensor::from_vec(data, (batch.len(), 3, h, w), &self.device).map_err(err)
    }
}

fn err(e: impl std::fmt::Display) -> labelscope_spurious::Error {
    labelscope_spurious::Error::Invalid(e.to_string())
}

impl Model for Net {
    fn classes(&self) -> usize {
        self.model.classes()
    }

    fn probabilities(&self, batch: &[&Planar]) -> labelscope_spurious::Result<Vec<Vec<f32>>> {
        let x = self.input(batch)?;
        let logits = self.model.forward(&x).map_err(err)?.logits;
        let rows = logits.to_dtype(candle_core::DType::F32).map_err(err)?.to_vec2::<f32>().map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f64> = r.iter().map(|&z| f64::from(z - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.iter().map(|&v| (v / s) as f32).collect()
            })
            .collect())
    }

    fn cams(&self, batch: &[&Planar], classes: &[usize]) -> labelscope_spurious::Result<Option<Vec<Vec<f32>>>> {
        let x = self.input(batch)?;
        let out = labelscope_nn::gradcam::gradcam(&self.model, &x, classes).map_err(err)?;
        let up =
            labelscope_nn::gradcam::upsample_normalize(&out.cams, (batch[0].height, batch[0].width)).map_err(err)?;
        let n = batch[0].height * batch[0].width;
        let flat = up.reshape((batch.len(), n)).map_err(err)?.to_vec2::<f32>().map_err(err)?;
        Ok(Some(flat))
    }
}

fn class_map(a: &SpuriousArgs, model_classes: usize) -> Result<(ClassMap, ClassTable)> {
    let table = match &a.classes {
        Some(p) => ClassTable::from_path(p)?,
        None => ClassTable::imagenet().clone(),
    };
    let mut map = match a.class_map {
        MapKind::HardImagenet => ClassMap::hard_imagenet_on_imagenet(),
        MapKind::HardImagenet15 => {
            let names = labelscope_spurious::evaluate::HARD_IMAGENET.iter().map(|(n, _)| n.to_string()).collect();
            ClassMap::identity(names)
        }
        MapKind::Model => {
            if table.len() != model_classes {
                bail!(
                    "the model has {model_classes} outputs but the class list has {} classes; give the head's class list \
                     with --classes",
                    table.len()
                );
            }
            ClassMap::identity(table.classes().iter().map(|c| c.name().to_string()).collect())
        }
    };
    map.restrict = a.restrict;
    map.check(model_classes).context("--class-map")?;
    Ok((map, table))
}

fn summary_json(e: &Evaluation, map: &ClassMap) -> Result<Value> {
    let mut conditions = serde_json::Map::new();
    for (name, o) in &e.conditions {
        if let Some(s) = o.summary()? {
            let per_class: serde_json::Map<String, Value> = s
                .per_class
                .iter()
                .map(|(c, (n, k, conf))| {
                    (
                        map.names[*c].clone(),
                        json!({"n": n, "correct": k, "accuracy": *k as f64 / *n as f64, "confidence": conf}),
                    )
                })
                .collect();
            conditions.insert(
                name.clone(),
                json!({"n": s.n, "correct": s.correct, "accuracy": s.accuracy, "interval": [s.interval.0, s.interval.1],
                       "balanced_accuracy": s.balanced_accuracy, "confidence": s.confidence, "per_class": per_class}),
            );
        }
    }
    let rfs = e.rfs().map(|r| {
        let per: serde_json::Map<String, Value> = r
            .per_class
            .iter()
            .map(|(c, (f, b, x))| (map.names[*c].clone(), json!({"a_fg": f, "a_bg": b, "rfs": x})))
            .collect();
        json!({"a_fg": r.a_fg, "a_bg": r.a_bg, "rfs": r.rfs, "interval": r.interval.map(|i| vec![i.0, i.1]), "per_class": per})
    });
    let saliency = if e.alignments.is_empty() {
        Value::Null
    } else {
        let b = Bootstrap::default();
        let mean_ci = |v: Vec<f64>| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            json!({"mean": m, "interval": b.bootstrap_mean(&v).map(|i| vec![i.0, i.1]), "n": v.len()})
        };
        let mut per_class = serde_json::Map::new();
        for (c, name) in map.names.iter().enumerate() {
            let v: Vec<f64> = e.alignments.iter().filter(|a| a.1 == c).map(|a| a.2.iou).collect();
            if !v.is_empty() {
                per_class.insert(name.clone(), json!({"iou": v.iter().sum::<f64>() / v.len() as f64, "n": v.len()}));
            }
        }
        json!({
            "iou": mean_ci(e.alignments.iter().map(|a| a.2.iou).collect()),
            "dice": mean_ci(e.alignments.iter().map(|a| a.2.dice).collect()),
            "density_gap": mean_ci(e.alignments.iter().filter_map(|a| a.2.density_gap).collect()),
            "per_class": per_class,
        })
    };
    Ok(json!({"scored": e.scored, "empty_masks": e.empty_masks, "tile": {"components": e.tile.components,
              "fallbacks": e.tile.fallbacks}, "conditions": conditions, "rfs": rfs, "saliency": saliency}))
}

fn png_data_uri(w: usize, h: usize, rgb: &[u8]) -> Result<String> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes)
        .write_image(rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .context("encoding an example image")?;
    Ok(format!("data:image/png;base64,{}", base64(&bytes)))
}

use image::ImageEncoder as _;

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                s.push(T[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// A CAM over an image: red with the map's value as opacity (60 % at most).
fn overlay(img: &Planar, cam: &[f32]) -> Vec<u8> {
    let mut rgb = img.to_rgb8();
    for (p, &v) in cam.iter().enumerate() {
        let a = 0.6 * v.clamp(0.0, 1.0);
        for (c, target) in [255.0f32, 0.0, 0.0].iter().enumerate() {
            let x = f32::from(rgb[3 * p + c]);
            rgb[3 * p + c] = (x * (1.0 - a) + target * a).round() as u8;
        }
    }
    rgb
}

fn example_figure(samples: &[(Sample, Option<Vec<f32>>)], ablations: &[Ablation]) -> Result<Option<Figure>> {
    if samples.is_empty() {
        return Ok(None);
    }
    let cell = 224.0;
    let cols = ablations.len() + 1;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\">",
        cols as f64 * (cell + 8.0),
        samples.len() as f64 * (cell + 24.0) + 20.0,
        cols as f64 * (cell + 8.0),
        samples.len() as f64 * (cell + 24.0) + 20.0
    );
    for (k, a) in ablations.iter().enumerate() {
        svg.push_str(&format!("<text x=\"{}\" y=\"14\" font-size=\"13\">{}</text>", k as f64 * (cell + 8.0), a.name()));
    }
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"14\" font-size=\"13\">GradCAM (true class)</text>",
        ablations.len() as f64 * (cell + 8.0)
    ));
    for (r, (s, cam)) in samples.iter().enumerate() {
        let y = 20.0 + r as f64 * (cell + 24.0);
        for (k, &a) in ablations.iter().enumerate() {
            let img = ablation::apply(a, &s.image, &s.mask)?;
            let uri = png_data_uri(img.width, img.height, &img.to_rgb8())?;
            svg.push_str(&format!(
                "<image x=\"{}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" href=\"{uri}\"/>",
                k as f64 * (cell + 8.0)
            ));
        }
        if let Some(cam) = cam {
            let uri = png_data_uri(s.image.width, s.image.height, &overlay(&s.image, cam))?;
            svg.push_str(&format!(
                "<image x=\"{}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" href=\"{uri}\"/>",
                ablations.len() as f64 * (cell + 8.0)
            ));
        }
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text>",
            y + cell + 15.0,
            labelscope_report::escape_xml(&s.id)
        ));
    }
    svg.push_str("</svg>");
    Ok(Some(Figure { title: "Examples: each ablation of the image, and the GradCAM of its true class".into(), svg }))
}

fn pct(v: Option<&Value>) -> Cell {
    v.and_then(Value::as_f64).map(Cell::Percent).unwrap_or(Cell::Empty)
}

/// Runs `labelscope spurious`.
pub fn run(a: SpuriousArgs) -> Result<()> {
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let recipe: Recipe = a.recipe.parse()?;
    let filter = recipe.default_filter();
    let mut ablations = Vec::new();
    for t in a.ablations.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        ablations.push(
            Ablation::parse(t).with_context(|| format!("--ablations: {t:?}; expected none, gray, gray-bbox, tile"))?,
        );
    }
    if !(a.sigma.is_finite() && a.sigma >= 0.0) {
        bail!("--sigma {}: expected a number >= 0", a.sigma);
    }
    let compare: Option<Value> = match &a.compare {
        Some(p) => Some(
            serde_json::from_slice(&std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?)
                .with_context(|| format!("{}: not a results.json of labelscope spurious", p.display()))?,
        ),
        None => None,
    };
    let device = crate::nnio::device(&a.device)?;
    let model = labelscope_nn::Classifier::load(&a.model.model, &a.model.weights, &device)?;
    if a.model.precision != Precision::F32 {
        bail!("--precision: GradCAM and the metrics run in f32");
    }
    let (map, table) = class_map(&a, model.classes())?;
    let items = dataset(&a, &map, &table)?;
    let net = Net { model, device };
    let opts = Options {
        ablations: ablations.clone(),
        noise: (a.sigma > 0.0 && a.trials > 0).then_some(NoiseOptions {
            sigma: a.sigma,
            mode: if a.noise == NoiseArg::L2 { NoiseMode::L2 } else { NoiseMode::Linf },
            trials: a.trials,
            seed: a.seed,
        }),
        saliency: !a.no_saliency,
    };
    let bar = if a.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(items.len() as u64) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut e = Evaluation::default();
    let mut examples: Vec<(Sample, Option<Vec<f32>>)> = Vec::new();
    let mut per_image: Vec<String> = Vec::new();
    for (b, chunk) in items.chunks(a.batch).enumerate() {
        let samples: Vec<Sample> = chunk.iter().map(|it| load(it, recipe, filter)).collect::<Result<_>>()?;
        let before: BTreeMap<String, usize> = e.conditions.iter().map(|(k, v)| (k.clone(), v.rows.len())).collect();
        let aligned = e.alignments.len();
        evaluate_batch(&net, &map, &samples, b * a.batch, &opts, &mut e)?;
        // Per-image rows of this batch: the conditions' new rows are the scored images in order.
        let scored: Vec<&Sample> = samples.iter().filter(|s| s.mask.count() > 0).collect();
        for (k, s) in scored.iter().enumerate() {
            let mut row = format!("{},{}", s.id, map.names[s.class].replace(',', " "));
            for ab in &ablations {
                let o = &e.conditions[ab.name()];
                let r = o.rows[before.get(ab.name()).copied().unwrap_or(0) + k];
                row.push_str(&format!(",{},{:.6}", u8::from(r.1), r.2));
            }
            let noise_row = (e.noise.len() + k).checked_sub(scored.len()).and_then(|i| e.noise.get(i));
            if let Some(n) = noise_row.filter(|_| opts.noise.is_some()) {
                row.push_str(&format!(",{},{},{}", n.trials, n.fg_correct, n.bg_correct));
            }
            if let Some(al) = e.alignments.get(aligned + k) {
                row.push_str(&format!(
                    ",{:.6},{:.6},{}",
                    al.2.iou,
                    al.2.dice,
                    al.2.density_gap.map(|g| format!("{g:.6}")).unwrap_or_default()
                ));
            }
            per_image.push(row);
        }
        if examples.len() < a.examples {
            let take: Vec<Sample> = scored.iter().take(a.examples - examples.len()).map(|s| (*s).clone()).collect();
            let cams = if opts.saliency && !take.is_empty() {
                let refs: Vec<&Planar> = take.iter().map(|s| &s.image).collect();
                let classes: Vec<usize> = take.iter().map(|s| map.outputs[s.class][0]).collect();
                net.cams(&refs, &classes)?.map(|v| v.into_iter().map(Some).collect::<Vec<_>>())
            } else {
                None
            };
            let cams = cams.unwrap_or_else(|| vec![None; take.len()]);
            examples.extend(take.into_iter().zip(cams));
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let mut results = summary_json(&e, &map)?;
    results["model"] = json!(a.model.model);
    results["weights"] = json!(a.model.weights.display().to_string());
    results["recipe"] = json!(recipe.to_string());
    results["class_map"] = json!({"kind": format!("{:?}", a.class_map), "restrict": map.restrict,
        "classes": map.names.iter().zip(&map.outputs).map(|(n, o)| json!({"name": n, "outputs": o})).collect::<Vec<_>>()});
    results["noise"] =
        json!({"sigma": a.sigma, "mode": format!("{:?}", a.noise).to_lowercase(), "trials": a.trials, "seed": a.seed});
    results["seconds"] = json!(secs);
    labelscope_core::atomic::write_atomic(
        &a.out.join("results.json"),
        serde_json::to_string_pretty(&results)?.as_bytes(),
    )?;
    // per_image.csv
    let mut header = String::from("image,class");
    for ab in &ablations {
        header.push_str(&format!(",{0}_correct,{0}_confidence", ab.name()));
    }
    if opts.noise.is_some() {
        header.push_str(",noise_trials,noise_fg_correct,noise_bg_correct");
    }
    if opts.saliency {
        header.push_str(",cam_iou,cam_dice,cam_density_gap");
    }
    let mut csv = header + "\n";
    for r in &per_image {
        csv.push_str(r);
        csv.push('\n');
    }
    labelscope_core::atomic::write_atomic(&a.out.join("per_image.csv"), csv.as_bytes())?;
    // Tables.
    let cond_names: Vec<String> =
        results["conditions"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let mut overall = Table {
        caption: "Accuracy (%) and mean true-class confidence per condition".into(),
        columns: vec![
            "condition".into(),
            "images".into(),
            "accuracy (%)".into(),
            "95% CI low".into(),
            "95% CI high".into(),
            "class-balanced (%)".into(),
            "confidence".into(),
        ],
        rows: Vec::new(),
    };
    if compare.is_some() {
        overall.columns.push("compared run: accuracy (%)".into());
    }
    for c in &cond_names {
        let v = &results["conditions"][c];
        let mut row = vec![
            Cell::Text(c.clone()),
            Cell::Int(v["n"].as_i64().unwrap_or(0)),
            pct(v.get("accuracy")),
            pct(v["interval"].get(0)),
            pct(v["interval"].get(1)),
            pct(v.get("balanced_accuracy")),
            v["confidence"].as_f64().map(|x| Cell::Float(x, 4)).unwrap_or(Cell::Empty),
        ];
        if let Some(cmp) = &compare {
            row.push(pct(cmp["conditions"].get(c).and_then(|x| x.get("accuracy"))));
        }
        overall.rows.push(row);
    }
    let mut per_class = Table {
        caption: "Per class: accuracy (%) per condition, RFS, CAM IoU".into(),
        columns: std::iter::once("class".to_string())
            .chain(cond_names.iter().map(|c| format!("{c} (%)")))
            .chain(["RFS".to_string(), "CAM IoU".to_string()])
            .collect(),
        rows: Vec::new(),
    };
    let mut class_csv = per_class.columns.join(",") + "\n";
    for name in &map.names {
        if !cond_names.iter().any(|c| results["conditions"][c]["per_class"].get(name).is_some()) {
            continue;
        }
        let mut row = vec![Cell::Text(name.clone())];
        let mut line = name.replace(',', " ");
        for c in &cond_names {
            let v = results["conditions"][c]["per_class"].get(name).and_then(|x| x.get("accuracy"));
            row.push(pct(v));
            line.push_str(&format!(",{}", v.and_then(Value::as_f64).map(|x| x.to_string()).unwrap_or_default()));
        }
        let rfs = results["rfs"]["per_class"].get(name).and_then(|x| x["rfs"].as_f64());
        let iou = results["saliency"]["per_class"].get(name).and_then(|x| x["iou"].as_f64());
        row.push(rfs.map(|x| Cell::Float(x, 3)).unwrap_or(Cell::Empty));
        row.push(iou.map(|x| Cell::Float(x, 3)).unwrap_or(Cell::Empty));
        line.push_str(&format!(
            ",{},{}\n",
            rfs.map(|x| x.to_string()).unwrap_or_default(),
            iou.map(|x| x.to_string()).unwrap_or_default()
        ));
        class_csv.push_str(&line);
        per_class.rows.push(row);
    }
    labelscope_core::atomic::write_atomic(&a.out.join("per_class.csv"), class_csv.as_bytes())?;
    let mut paragraphs = vec![format!(
        "{} images scored ({} left out: empty mask). Recipe {}; class map {:?}{}; the sunglasses class counts ImageNet outputs 837 (sunglasses) and 836 (sunglass) under the Hard ImageNet map.",
        e.scored,
        e.empty_masks.len(),
        recipe,
        a.class_map,
        if map.restrict { ", predictions restricted to the mapped outputs" } else { "" }
    )];
    if let Some(r) = results["rfs"].as_object() {
        paragraphs.push(format!(
            "RFS {:.3} (95% bootstrap interval {}), class-balanced accuracy under foreground noise {:.2}%, under background noise {:.2}% (sigma {}, {} mode, {} trials).",
            r["rfs"].as_f64().unwrap_or(f64::NAN),
            r["interval"].as_array().map(|i| format!("{:.3} to {:.3}", i[0].as_f64().unwrap_or(0.0), i[1].as_f64().unwrap_or(0.0))).unwrap_or_else(|| "–".into()),
            100.0 * r["a_fg"].as_f64().unwrap_or(f64::NAN),
            100.0 * r["a_bg"].as_f64().unwrap_or(f64::NAN),
            a.sigma,
            format!("{:?}", a.noise).to_lowercase(),
            a.trials
        ));
    }
    if let Some(s) = results["saliency"].as_object() {
        paragraphs.push(format!(
            "GradCAM of the true class against the mask: mean IoU {:.3}, Dice {:.3}, density gap {:.3}.",
            s["iou"]["mean"].as_f64().unwrap_or(f64::NAN),
            s["dice"]["mean"].as_f64().unwrap_or(f64::NAN),
            s["density_gap"]["mean"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    if e.tile.fallbacks > 0 {
        paragraphs.push(format!(
            "Tile: {} of {} components had no clear neighbour and were filled with gray.",
            e.tile.fallbacks, e.tile.components
        ));
    }
    let mut sections =
        vec![Section { heading: "Summary".into(), paragraphs, tables: vec![overall, per_class], figures: Vec::new() }];
    let mut shown = ablations.clone();
    if !shown.contains(&Ablation::None) {
        shown.insert(0, Ablation::None);
    }
    if let Some(f) = example_figure(&examples, &shown)? {
        sections.push(Section { heading: "Examples".into(), figures: vec![f], ..Default::default() });
    }
    let meta = vec![
        ("model".to_string(), a.model.model.clone()),
        ("weights".to_string(), a.model.weights.display().to_string()),
        ("command".to_string(), std::env::args().collect::<Vec<_>>().join(" ")),
        ("seconds".to_string(), format!("{secs:.1}")),
    ];
    let html = html_page("Spurious-feature metrics", &meta, &sections);
    labelscope_core::atomic::write_atomic(&a.out.join("report.html"), html.as_bytes())?;
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "{} images in {secs:.1} s ({:.2} images/s); results in {}",
        items.len(),
        items.len() as f64 / secs.max(1e-9),
        a.out.display()
    );
    if !e.empty_masks.is_empty() {
        let _ = writeln!(
            err,
            "{} images have an empty mask and were not scored (listed in results.json)",
            e.empty_masks.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        a: SpuriousArgs,
    }

    fn args(extra: &[&str]) -> SpuriousArgs {
        let mut v = vec!["labelscope", "--model", "resnet", "--weights", "w.safetensors", "--out", "o"];
        v.extend_from_slice(extra);
        Wrap::try_parse_from(v).unwrap().a
    }

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn hard_imagenet_layout() {
        let dir = tempfile::tempdir().unwrap();
        let (hi, root) = (dir.path().join("hi"), dir.path().join("imagenet"));
        // Masks: dog sled, and both ImageNet "sunglass(es)" ids; images in the class folder or flat.
        touch(&hi.join("val/n03218198_ILSVRC2012_val_00000001.JPEG"));
        touch(&hi.join("val/n04355933_ILSVRC2012_val_00000002.JPEG"));
        touch(&hi.join("val/n04356056_ILSVRC2012_val_00000003.png"));
        touch(&hi.join("val/notes.txt"));
        touch(&root.join("val/n03218198/ILSVRC2012_val_00000001.JPEG"));
        touch(&root.join("val/ILSVRC2012_val_00000002.JPEG"));
        touch(&root.join("val/n04356056/ILSVRC2012_val_00000003.JPEG"));
        let a = args(&["--hard-imagenet", hi.to_str().unwrap(), "--image-root", root.to_str().unwrap()]);
        let map = ClassMap::hard_imagenet_on_imagenet();
        let items = dataset(&a, &map, ClassTable::imagenet()).unwrap();
        let got: Vec<(&str, &str)> = items.iter().map(|i| (i.id.as_str(), map.names[i.class].as_str())).collect();
        assert_eq!(
            got,
            [
                ("n03218198_ILSVRC2012_val_00000001", "dog sled"),
                ("n04355933_ILSVRC2012_val_00000002", "sunglasses"),
                ("n04356056_ILSVRC2012_val_00000003", "sunglasses")
            ]
        );
        assert!(items[1].image.ends_with("val/ILSVRC2012_val_00000002.JPEG"));
        // A mask without its image, a class outside the map, a missing --image-root.
        touch(&hi.join("val/n03218198_missing.JPEG"));
        let e = dataset(&a, &map, ClassTable::imagenet()).err().unwrap().to_string();
        assert!(e.contains("n03218198_missing.JPEG") && e.contains("none of"), "{e}");
        std::fs::remove_file(hi.join("val/n03218198_missing.JPEG")).unwrap();
        touch(&hi.join("val/n01440764_tench.JPEG"));
        let e = format!("{:#}", dataset(&a, &map, ClassTable::imagenet()).err().unwrap());
        assert!(e.contains("n01440764") && e.contains("--class-map"), "{e}");
        let a = args(&["--hard-imagenet", hi.to_str().unwrap()]);
        let e = dataset(&a, &map, ClassTable::imagenet()).err().unwrap().to_string();
        assert!(e.contains("--image-root"), "{e}");
    }
}
