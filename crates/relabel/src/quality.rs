//! Quality report: produced labels against a human label set.
//!
//! # Inputs
//! The produced labels are the TSV or the JSON output of the relabeling
//! ([`crate::output`]; told apart by content: a file whose first non-blank
//! character is `{` is JSON). A produced label counts when its value is
//! `≥ τ` (0.5 by default, the rule of [`crate::output::LabelStats`]). The
//! reference is any label file of `labelscope_core::labels` (ReaL, INv2-ML,
//! CSV, ...). Images are joined by id ([`labelscope_core::ids::join_key`]:
//! the base name without image extension), never by position.
//!
//! # What is computed
//! * The overlap groups of core's [`compare`] with A = the produced labels
//!   (at `p ≥ τ`) and B = the reference, under core's names: `B empty` (the
//!   reference has no valid label), `exact match`, `A ⊃ B` (produced has
//!   extra labels), `B ⊃ A` (produced misses labels; an image with no
//!   produced label is here) and `partial overlap` (of which `disjoint`
//!   share no class at all).
//! * Per class `c`, over the images in both files whose reference set is not
//!   empty (ReaL semantics: an empty reference means "no valid label", so the
//!   image is left out): `tp` = images with `c` in both sets, `fp` = `c`
//!   produced only, `fn` = `c` in the reference only; support = `tp + fn`,
//!   predicted = `tp + fp`; precision = `tp / (tp + fp)`, recall =
//!   `tp / (tp + fn)`, F1 = `2tp / (2tp + fp + fn)`, each undefined (`None`,
//!   empty in the CSV) when its denominator is 0. The table lists every
//!   class with support or predictions, by class index.
//! * Overall: micro precision/recall/F1 from the summed counts; macro
//!   precision/recall/F1 = the mean over the listed classes with undefined
//!   values counted as 0 (scikit-learn's `average="macro"`,
//!   `zero_division=0`, labels = those present in either source).
//! * Disagreements: the evaluated images whose group is `A ⊃ B`, `B ⊃ A` or
//!   `partial overlap`, in this order (the *gallery rule*): Jaccard
//!   similarity `|A ∩ B| / |A ∪ B|` increasing (most different first), then
//!   the size of the symmetric difference decreasing, then the produced
//!   file's image name in byte order. The gallery shows the first `N`.
//!
//! # Files written by [`write_report`] (all atomically)
//! | file | content |
//! |---|---|
//! | `report.html` | self-contained page: run, overlap groups, overall numbers, plots (group sizes; per-class precision against recall), the sortable per-class table, the gallery |
//! | `per_class.csv` | `class,name,support,predicted,tp,fp,fn,precision,recall,f1` (full precision, undefined = empty) |
//! | `per_class.md` | the same as a Markdown table (4 decimals) |
//! | `summary.json` | [`QualityReport`] (groups, overall, per class, the ordered disagreements) |
//! | `gallery/NNN-<id>.png`, `gallery/NNN-<id>.thumb.png` | the overlay of each gallery image at full size and as the thumbnail embedded in the page |
//!
//! # Gallery images
//! With an image folder, image `id` is the file whose join key is `id`.
//! The masks come from a JSON output (the `--labels` file itself when it is
//! JSON, or a separate one): each produced label with `p ≥ τ` that names
//! proposals is drawn as the union of their masks, in the order of the
//! label list, coloured with [`labelscope_vision::overlay::PALETTE`] (the
//! swatch next to the label in the page). An image that is not in the
//! folder, cannot be decoded, or whose size differs from the masks is shown
//! as a note in the page (with the label lists), never as an error.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use labelscope_core::analysis::{compare, Comparison, Relation};
use labelscope_core::atomic::write_atomic;
use labelscope_core::classes::ClassTable;
use labelscope_core::ids::join_key;
use labelscope_core::labels::{LabelFormat, LabelSets};
use labelscope_core::rle::Rle;
use labelscope_report::{bars_svg, scatter_svg, BarSeries, BarSpec, Point, ScatterSpec};
use labelscope_vision::overlay::{draw_overlay, save_png_atomic, PALETTE};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::output::{parse_tsv, JsonImage, JsonOutput};

/// Default threshold on produced label values.
pub const DEFAULT_TAU: f32 = 0.5;
/// Default number of gallery images.
pub const DEFAULT_GALLERY: usize = 50;
/// Default longest side of the gallery thumbnails, in pixels.
pub const DEFAULT_THUMB: u32 = 320;

/// One image of the produced labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducedImage {
    /// Image name as written in the file.
    pub file: String,
    /// `(class, value)` of every label in the file.
    pub labels: Vec<(u32, f32)>,
}

/// The produced labels (TSV or JSON output).
#[derive(Debug, Clone)]
pub struct Produced {
    /// The file read.
    pub path: PathBuf,
    /// Images in file order.
    pub images: Vec<ProducedImage>,
    /// The JSON output, when the file is JSON (it holds the masks).
    pub json: Option<JsonOutput>,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.to_path_buf(), source: e }
}

/// Parses the JSON output from `text` (`path` names the file in errors).
pub fn parse_json_output(text: &str, path: &Path) -> Result<JsonOutput> {
    serde_json::from_str(text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        location: format!("line {}, column {}", e.line(), e.column()),
        message: format!("{e}; expected the JSON output of `labelscope relabel` ({{\"images\": [...]}})"),
    })
}

/// Reads produced labels, TSV or JSON (see the module docs); `classes`
/// bounds the class indices when given.
pub fn load_produced(path: &Path, classes: Option<usize>) -> Result<Produced> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    if text.trim_start().starts_with('{') {
        let json = parse_json_output(&text, path)?;
        let mut images = Vec::with_capacity(json.images.len());
        for (i, im) in json.images.iter().enumerate() {
            let bad = |m: String| Error::Format {
                path: path.to_path_buf(),
                location: format!("images[{i}] ({:?})", im.file),
                message: m,
            };
            let mut labels = Vec::with_capacity(im.labels.len());
            for l in &im.labels {
                if let Some(nc) = classes {
                    if l.class as usize >= nc {
                        return Err(bad(format!("class {} outside [0, {nc})", l.class)));
                    }
                }
                if !(l.p.is_finite() && (0.0..=1.0).contains(&l.p)) {
                    return Err(bad(format!("value {} of class {}: expected a value in [0, 1]", l.p, l.class)));
                }
                labels.push((l.class, l.p));
            }
            images.push(ProducedImage { file: im.file.clone(), labels });
        }
        Ok(Produced { path: path.to_path_buf(), images, json: Some(json) })
    } else {
        let recs = parse_tsv(&text, path, classes)?;
        let images = recs.into_iter().map(|r| ProducedImage { file: r.filename, labels: r.labels }).collect();
        Ok(Produced { path: path.to_path_buf(), images, json: None })
    }
}

/// Reads a JSON output file (for its masks).
pub fn load_masks(path: &Path) -> Result<JsonOutput> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    parse_json_output(&text, path)
}

impl Produced {
    /// The label sets at `p ≥ tau` (two names with the same id are an error).
    pub fn sets(&self, tau: f32) -> Result<LabelSets> {
        let format = if self.json.is_some() { LabelFormat::GenericJson } else { LabelFormat::Delimited };
        let names = self.images.iter().map(|i| i.file.clone()).collect();
        let sets = self.images.iter().map(|i| i.labels.iter().filter(|l| l.1 >= tau).map(|l| l.0).collect()).collect();
        Ok(LabelSets::new(&self.path, format, names, sets)?)
    }
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassQuality {
    /// Class index.
    pub class: u32,
    /// Images with the class in the reference (`tp + fn`).
    pub support: u64,
    /// Images with the class produced (`tp + fp`).
    pub predicted: u64,
    /// In both.
    pub tp: u64,
    /// Produced only.
    pub fp: u64,
    /// In the reference only.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// `tp / (tp + fp)`.
    pub precision: Option<f64>,
    /// `tp / (tp + fn)`.
    pub recall: Option<f64>,
    /// `2tp / (2tp + fp + fn)`.
    pub f1: Option<f64>,
}

/// Overall numbers (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overall {
    /// Summed true positives.
    pub tp: u64,
    /// Summed false positives.
    pub fp: u64,
    /// Summed false negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Micro precision.
    pub micro_precision: Option<f64>,
    /// Micro recall.
    pub micro_recall: Option<f64>,
    /// Micro F1.
    pub micro_f1: Option<f64>,
    /// Macro precision (undefined = 0).
    pub macro_precision: f64,
    /// Macro recall (undefined = 0).
    pub macro_recall: f64,
    /// Macro F1 (undefined = 0).
    pub macro_f1: f64,
    /// Number of classes averaged.
    pub classes: usize,
}

/// An image where the produced labels and the reference disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreement {
    /// Image name in the produced file.
    pub image: String,
    /// Its overlap group.
    pub relation: Relation,
    /// Produced classes at `p ≥ τ`, sorted.
    pub produced: Vec<u32>,
    /// Reference classes, sorted.
    pub reference: Vec<u32>,
    /// `|A ∩ B| / |A ∪ B|`.
    pub jaccard: f64,
    /// `|A Δ B|`.
    pub sym_diff: usize,
}

/// The quality report (see the module docs).
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    /// The threshold on produced values.
    pub tau: f32,
    /// Core's comparison (A = produced, B = reference).
    pub comparison: Comparison,
    /// Images in both files with a non-empty reference (those counted per class).
    pub evaluated: u64,
    /// Images in both files whose reference set is empty (left out of the per-class counts).
    pub empty_reference: u64,
    /// Per class, by class index.
    pub classes: Vec<ClassQuality>,
    /// Overall numbers.
    pub overall: Overall,
    /// All disagreeing images, in the gallery order.
    pub disagreements: Vec<Disagreement>,
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// Compares produced label sets (already thresholded) with the reference;
/// `top` classes are kept per overlap group (core's `top_classes`).
pub fn evaluate(produced: &LabelSets, reference: &LabelSets, tau: f32, top: usize) -> QualityReport {
    let comparison = compare(produced, reference, top);
    let mut counts: BTreeMap<u32, [u64; 3]> = BTreeMap::new();
    let mut evaluated = 0;
    let mut empty_reference = 0;
    let mut disagreements = Vec::new();
    for (name, a) in produced.names.iter().zip(&produced.sets) {
        let Some(b) = reference.get(name) else { continue };
        if b.is_empty() {
            empty_reference += 1;
            continue;
        }
        evaluated += 1;
        let mut inter = 0usize;
        for &c in a {
            let e = counts.entry(c).or_default();
            if b.binary_search(&c).is_ok() {
                e[0] += 1;
                inter += 1;
            } else {
                e[1] += 1;
            }
        }
        for &c in b {
            if a.binary_search(&c).is_err() {
                counts.entry(c).or_default()[2] += 1;
            }
        }
        let rel = Relation::of(a, b);
        if matches!(rel, Relation::ASupersetOfB | Relation::BSupersetOfA | Relation::Partial) {
            let union = a.len() + b.len() - inter;
            disagreements.push(Disagreement {
                image: name.clone(),
                relation: rel,
                produced: a.clone(),
                reference: b.to_vec(),
                jaccard: inter as f64 / union as f64,
                sym_diff: union - inter,
            });
        }
    }
    disagreements.sort_by(|x, y| {
        x.jaccard
            .total_cmp(&y.jaccard)
            .then(y.sym_diff.cmp(&x.sym_diff))
            .then(x.image.as_bytes().cmp(y.image.as_bytes()))
    });
    let classes: Vec<ClassQuality> = counts
        .into_iter()
        .map(|(class, [tp, fp, fn_])| ClassQuality {
            class,
            support: tp + fn_,
            predicted: tp + fp,
            tp,
            fp,
            fn_,
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fn_),
            f1: ratio(2 * tp, 2 * tp + fp + fn_),
        })
        .collect();
    let (tp, fp, fn_) = classes.iter().fold((0, 0, 0), |s, c| (s.0 + c.tp, s.1 + c.fp, s.2 + c.fn_));
    let n = classes.len();
    let mean = |f: &dyn Fn(&ClassQuality) -> Option<f64>| {
        if n == 0 {
            0.0
        } else {
            classes.iter().map(|c| f(c).unwrap_or(0.0)).sum::<f64>() / n as f64
        }
    };
    let overall = Overall {
        tp,
        fp,
        fn_,
        micro_precision: ratio(tp, tp + fp),
        micro_recall: ratio(tp, tp + fn_),
        micro_f1: ratio(2 * tp, 2 * tp + fp + fn_),
        macro_precision: mean(&|c| c.precision),
        macro_recall: mean(&|c| c.recall),
        macro_f1: mean(&|c| c.f1),
        classes: n,
    };
    QualityReport { tau, comparison, evaluated, empty_reference, classes, overall, disagreements }
}

fn class_name(classes: &ClassTable, c: u32) -> String {
    classes.get(c as usize).map(|x| x.name().to_string()).unwrap_or_else(|| format!("class {c}"))
}

fn opt4(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The per-class table as CSV (see the module docs).
pub fn per_class_csv(r: &QualityReport, classes: &ClassTable) -> String {
    let mut s = String::from("class,name,support,predicted,tp,fp,fn,precision,recall,f1\n");
    let o = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for c in &r.classes {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{}",
            c.class,
            csv_field(&class_name(classes, c.class)),
            c.support,
            c.predicted,
            c.tp,
            c.fp,
            c.fn_,
            o(c.precision),
            o(c.recall),
            o(c.f1)
        );
    }
    s
}

/// The per-class table in Markdown: all classes by index (`limit = 0`), or
/// the `limit` classes with the largest support (ties by class index).
pub fn per_class_markdown(r: &QualityReport, classes: &ClassTable, limit: usize) -> String {
    let mut rows: Vec<&ClassQuality> = r.classes.iter().collect();
    if limit > 0 && limit < rows.len() {
        rows.sort_by(|x, y| y.support.cmp(&x.support).then(x.class.cmp(&y.class)));
        rows.truncate(limit);
    }
    let mut s = String::from(
        "| class | name | support | predicted | tp | fp | fn | precision | recall | F1 |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.class,
            md_cell(&class_name(classes, c.class)),
            c.support,
            c.predicted,
            c.tp,
            c.fp,
            c.fn_,
            opt4(c.precision),
            opt4(c.recall),
            opt4(c.f1)
        );
    }
    s
}

/// The overlap groups and the overall numbers in Markdown.
pub fn summary_markdown(r: &QualityReport, classes: &ClassTable) -> String {
    let c = &r.comparison;
    let mut s = format!(
        "A = produced labels (p >= {}), B = reference. {} images compared ({} only in A, {} only in B).\n\n\
         | group | images | share | most involved classes |\n|---|---:|---:|---|\n",
        r.tau, c.compared, c.only_a, c.only_b
    );
    for g in &c.groups {
        let top: Vec<String> =
            g.top_classes.iter().map(|(cl, n)| format!("{} ({n})", md_cell(&class_name(classes, *cl)))).collect();
        let _ = writeln!(s, "| {} | {} | {:.2}% | {} |", g.name, g.count, 100.0 * g.share, top.join(", "));
    }
    let _ = writeln!(s, "\n{} of the partial-overlap images share no class at all.\n", c.disjoint);
    let o = &r.overall;
    let _ = write!(
        s,
        "{} images evaluated per class ({} with an empty reference left out); {} classes.\n\n\
         | average | precision | recall | F1 |\n|---|---:|---:|---:|\n\
         | micro (tp {}, fp {}, fn {}) | {} | {} | {} |\n\
         | macro | {:.4} | {:.4} | {:.4} |\n",
        r.evaluated,
        r.empty_reference,
        o.classes,
        o.tp,
        o.fp,
        o.fn_,
        opt4(o.micro_precision),
        opt4(o.micro_recall),
        opt4(o.micro_f1),
        o.macro_precision,
        o.macro_recall,
        o.macro_f1
    );
    s
}

// ---------------------------------------------------------------------------
// Gallery

/// One produced label as shown in the gallery.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryLabel {
    /// Class index.
    pub class: u32,
    /// Produced value.
    pub p: f32,
    /// Also in the reference.
    pub in_reference: bool,
    /// Index of its mask's colour in [`PALETTE`] (cycled), when a mask was drawn.
    pub colour: Option<usize>,
}

/// One gallery entry.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryEntry {
    /// Position in the gallery order (0-based).
    pub rank: usize,
    /// The disagreement shown.
    pub item: Disagreement,
    /// Produced labels with `p ≥ τ`, in the file's order of decreasing value (ties by class).
    pub labels: Vec<GalleryLabel>,
    /// The full-size overlay, relative to the report folder.
    pub overlay: Option<String>,
    /// The thumbnail PNG embedded in the page.
    pub thumbnail_png: Option<Vec<u8>>,
    /// What went wrong with the picture, if anything (missing image, size mismatch, ...).
    pub note: Option<String>,
}

/// Where the gallery pictures come from.
#[derive(Debug, Clone, Copy, Default)]
pub struct GallerySources<'a> {
    /// The image folder.
    pub images_dir: Option<&'a Path>,
    /// The JSON output with the masks, and its path (for messages).
    pub masks: Option<(&'a Path, &'a JsonOutput)>,
}

fn safe_name(s: &str) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    out.truncate(80);
    out
}

fn image_index(dir: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut by_key = HashMap::new();
    let rd = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| io_err(dir, e))?;
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let name = ent.file_name().to_string_lossy().into_owned();
        by_key.insert(join_key(&name).to_string(), ent.path());
    }
    Ok(by_key)
}

/// The masks of `labels` in `im` (union of each label's proposals), or a note.
fn label_masks(
    masks_path: &Path,
    im: &JsonImage,
    labels: &mut [GalleryLabel],
) -> Result<std::result::Result<Vec<Vec<bool>>, String>> {
    let by_id: HashMap<usize, &crate::output::JsonProposal> = im.proposals.iter().map(|p| (p.id, p)).collect();
    let mut out = Vec::new();
    for gl in labels.iter_mut() {
        let Some(l) = im.labels.iter().find(|l| l.class == gl.class) else { continue };
        if l.proposals.is_empty() {
            continue;
        }
        let mut union = vec![false; im.width * im.height];
        for pid in &l.proposals {
            let p = by_id.get(pid).ok_or_else(|| Error::Format {
                path: masks_path.to_path_buf(),
                location: format!("image {:?}, label {}", im.file, l.class),
                message: format!("refers to proposal {pid}, which the image does not list"),
            })?;
            let rle = Rle::from_coco(&p.mask).map_err(|e| Error::Format {
                path: masks_path.to_path_buf(),
                location: format!("image {:?}, proposal {pid}", im.file),
                message: e.to_string(),
            })?;
            if rle.width != im.width || rle.height != im.height {
                return Ok(Err(format!(
                    "proposal {pid} mask is {}x{} but the image record says {}x{}; masks not drawn",
                    rle.width, rle.height, im.width, im.height
                )));
            }
            for (u, m) in union.iter_mut().zip(rle.decode()) {
                *u |= m;
            }
        }
        gl.colour = Some(out.len() % PALETTE.len());
        out.push(union);
    }
    Ok(Ok(out))
}

fn thumbnail(img: &labelscope_vision::RgbImage, side: u32) -> Result<labelscope_vision::RgbImage> {
    let (w, h) = (img.width(), img.height());
    let s = f64::from(side) / f64::from(w.max(h).max(1));
    if s >= 1.0 {
        return Ok(img.clone());
    }
    let (tw, th) = (((f64::from(w) * s).round() as u32).max(1), ((f64::from(h) * s).round() as u32).max(1));
    Ok(labelscope_vision::resize_rgb(img, tw, th)?)
}

/// Renders the first `limit` disagreements (overlays into `out/gallery/`).
pub fn render_gallery(
    r: &QualityReport,
    produced: &Produced,
    src: &GallerySources<'_>,
    out: &Path,
    limit: usize,
    thumb: u32,
) -> Result<Vec<GalleryEntry>> {
    let chosen: Vec<(usize, &Disagreement)> = r.disagreements.iter().take(limit).enumerate().collect();
    let values: HashMap<&str, &ProducedImage> = produced.images.iter().map(|i| (join_key(&i.file), i)).collect();
    let json_by_key: HashMap<&str, &JsonImage> =
        src.masks.map(|(_, j)| j.images.iter().map(|i| (join_key(&i.file), i)).collect()).unwrap_or_default();
    let files = match src.images_dir {
        Some(d) => Some(image_index(d)?),
        None => None,
    };
    let gdir = out.join("gallery");
    if src.images_dir.is_some() && !chosen.is_empty() {
        std::fs::create_dir_all(&gdir).map_err(|e| io_err(&gdir, e))?;
    }
    chosen
        .par_iter()
        .map(|&(rank, d)| {
            let key = join_key(&d.image);
            let mut labels: Vec<GalleryLabel> = values
                .get(key)
                .map(|pi| {
                    let mut v: Vec<(u32, f32)> = pi.labels.iter().copied().filter(|l| l.1 >= r.tau).collect();
                    v.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                    // A class listed twice keeps its largest value (the first after the sort).
                    let mut seen = std::collections::HashSet::new();
                    v.retain(|l| seen.insert(l.0));
                    v
                })
                .unwrap_or_default()
                .into_iter()
                .map(|(class, p)| GalleryLabel {
                    class,
                    p,
                    in_reference: d.reference.binary_search(&class).is_ok(),
                    colour: None,
                })
                .collect();
            let mut entry = GalleryEntry {
                rank,
                item: d.clone(),
                labels: Vec::new(),
                overlay: None,
                thumbnail_png: None,
                note: None,
            };
            let (Some(dir), Some(files)) = (src.images_dir, files.as_ref()) else {
                entry.note = Some("no image folder given (--images)".into());
                entry.labels = labels;
                return Ok(entry);
            };
            let Some(path) = files.get(key) else {
                entry.note = Some(format!("image {key:?} not found in {}", dir.display()));
                entry.labels = labels;
                return Ok(entry);
            };
            let rgb = match labelscope_vision::load_rgb(path) {
                Ok(x) => x,
                Err(e) => {
                    entry.note = Some(format!("cannot read the image: {e}"));
                    entry.labels = labels;
                    return Ok(entry);
                }
            };
            let (w, h) = (rgb.width() as usize, rgb.height() as usize);
            let mut masks = Vec::new();
            match (src.masks, json_by_key.get(key)) {
                (None, _) => entry.note = Some("no masks (no JSON output given)".into()),
                (Some((mp, _)), None) => {
                    entry.note = Some(format!("no record of this image in {}; masks not drawn", mp.display()))
                }
                (Some((mp, _)), Some(im)) => {
                    if (im.width, im.height) != (w, h) {
                        entry.note = Some(format!(
                            "{} is {w}x{h} but its record in {} says {}x{}; masks not drawn",
                            path.display(),
                            mp.display(),
                            im.width,
                            im.height
                        ));
                    } else {
                        match label_masks(mp, im, &mut labels)? {
                            Ok(m) => masks = m,
                            Err(note) => {
                                for l in labels.iter_mut() {
                                    l.colour = None;
                                }
                                entry.note = Some(note);
                            }
                        }
                    }
                }
            }
            let over = draw_overlay(&rgb, &masks, &[])?;
            let stem = format!("{rank:03}-{}", safe_name(key));
            let full = format!("gallery/{stem}.png");
            save_png_atomic(&over, out.join(&full))?;
            let tpath = gdir.join(format!("{stem}.thumb.png"));
            save_png_atomic(&thumbnail(&over, thumb)?, &tpath)?;
            entry.thumbnail_png = Some(std::fs::read(&tpath).map_err(|e| io_err(&tpath, e))?);
            entry.overlay = Some(full);
            entry.labels = labels;
            Ok(entry)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// HTML

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The SVG element alone: no XML declaration or doctype, no namespace
/// declarations (inline SVG in HTML does not need them).
fn strip_svg_prolog(svg: &str) -> String {
    let s = svg.find("<svg").map_or(svg, |i| &svg[i..]);
    s.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "").replace(" xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "")
}

const CSS: &str = "body{font-family:system-ui,'DejaVu Sans',Arial,sans-serif;margin:0 auto;max-width:1200px;\
padding:1.5rem;color:#1d1d1f;line-height:1.4}h2{border-bottom:1px solid #ddd;margin-top:2rem}\
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}th,td{padding:.25rem .6rem;\
border-bottom:1px solid #e6e6e6;text-align:left;vertical-align:top}th{background:#f4f4f6}\
td.num{text-align:right;font-variant-numeric:tabular-nums}table.sortable th{cursor:pointer}\
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}.grid{display:flex;flex-wrap:wrap;gap:14px}\
.card{width:360px;border:1px solid #ddd;border-radius:4px;padding:8px;font-size:.85rem}\
.card img{max-width:100%;display:block;margin:auto}.note{color:#a33}.sw{display:inline-block;width:.8em;\
height:.8em;margin-right:.3em;border:1px solid #555;vertical-align:middle}.extra{color:#b35900}\
.missing{color:#a33}.ok{color:#2a7a2a}ul.l{margin:.2rem 0;padding-left:1.1rem}";

const JS: &str = "document.querySelectorAll('table.sortable').forEach(function(t){var h=t.tHead.rows[0].cells;\
Array.prototype.forEach.call(h,function(th,col){th.addEventListener('click',function(){var asc=th.dataset.s!=='a';\
th.dataset.s=asc?'a':'d';var b=t.tBodies[0];var rows=Array.prototype.slice.call(b.rows);rows.sort(function(x,y){\
var u=x.cells[col].getAttribute('data-v'),v=y.cells[col].getAttribute('data-v');var c=(u!==null&&v!==null)?\
(parseFloat(u)-parseFloat(v)):x.cells[col].textContent.localeCompare(y.cells[col].textContent);return asc?c:-c;});\
rows.forEach(function(r){b.appendChild(r);});});});});";

fn num_cell(v: Option<f64>) -> String {
    match v {
        Some(x) => format!("<td class=\"num\" data-v=\"{x}\">{x:.4}</td>"),
        None => "<td class=\"num\" data-v=\"-1\">-</td>".into(),
    }
}

fn plot_err(e: labelscope_report::Error) -> Error {
    Error::Invalid(format!("report plot: {e}"))
}

/// The self-contained HTML page (see the module docs). `meta`: run
/// information shown first (inputs, threshold, ...).
pub fn html(
    r: &QualityReport,
    classes: &ClassTable,
    gallery: &[GalleryEntry],
    meta: &[(String, String)],
) -> Result<String> {
    let mut h = String::new();
    let title = "Relabeling quality report";
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n\
         <style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    h.push_str("<section><h2>Run</h2><table><tbody>\n");
    for (k, v) in meta {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    h.push_str("</tbody></table></section>\n");

    // Overlap groups.
    let c = &r.comparison;
    let _ = write!(
        h,
        "<section><h2>Overlap groups</h2><p>A = produced labels with p &ge; {}, B = reference. {} images compared \
         ({} only in A, {} only in B).</p>\n<table><thead><tr><th>group</th><th>images</th><th>share</th>\
         <th>most involved classes</th></tr></thead><tbody>\n",
        r.tau, c.compared, c.only_a, c.only_b
    );
    for g in &c.groups {
        let top: Vec<String> =
            g.top_classes.iter().map(|(cl, n)| format!("{} ({n})", esc(&class_name(classes, *cl)))).collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2}%</td><td>{}</td></tr>",
            esc(g.name),
            g.count,
            100.0 * g.share,
            top.join(", ")
        );
    }
    let _ = writeln!(
        h,
        "</tbody></table><p>{} of the partial-overlap images share no class at all (disjoint).</p></section>",
        c.disjoint
    );

    // Overall.
    let o = &r.overall;
    let _ = write!(
        h,
        "<section><h2>Overall</h2><p>{} images evaluated per class ({} with an empty reference left out), {} classes. \
         Macro averages count undefined values as 0.</p>\n<table><thead><tr><th>average</th><th>precision</th>\
         <th>recall</th><th>F1</th><th>counts</th></tr></thead><tbody>\n<tr><td>micro</td>{}{}{}<td>tp {}, fp {}, fn {}</td></tr>\n\
         <tr><td>macro</td>{}{}{}<td>{} classes</td></tr>\n</tbody></table></section>\n",
        r.evaluated,
        r.empty_reference,
        o.classes,
        num_cell(o.micro_precision),
        num_cell(o.micro_recall),
        num_cell(o.micro_f1),
        o.tp,
        o.fp,
        o.fn_,
        num_cell(Some(o.macro_precision)),
        num_cell(Some(o.macro_recall)),
        num_cell(Some(o.macro_f1)),
        o.classes
    );

    // Plots.
    h.push_str("<section><h2>Plots</h2>\n");
    if c.compared > 0 {
        let spec = BarSpec {
            title: "Overlap groups".into(),
            y_label: "images".into(),
            categories: c.groups.iter().map(|g| g.name.to_string()).collect(),
            series: vec![BarSeries {
                name: "images".into(),
                values: c.groups.iter().map(|g| Some(g.count as f64)).collect(),
                ci: Vec::new(),
            }],
        };
        let svg = bars_svg(&spec).map_err(plot_err)?;
        let _ = writeln!(
            h,
            "<figure>{}<figcaption>Images per overlap group.</figcaption></figure>",
            strip_svg_prolog(&svg)
        );
    }
    let defined: Vec<(&ClassQuality, f64, f64)> =
        r.classes.iter().filter_map(|q| Some((q, q.recall?, q.precision?))).collect();
    if defined.is_empty() {
        h.push_str("<p>No class has both a precision and a recall; no precision–recall plot.</p>\n");
    } else {
        let label = defined.len() <= 40;
        let pts: Vec<Point> = defined
            .iter()
            .map(|&(q, x, y)| Point {
                label: if label { class_name(classes, q.class) } else { String::new() },
                x,
                y,
                x_ci: None,
                y_ci: None,
            })
            .collect();
        let spec = ScatterSpec {
            title: "Per-class precision against recall".into(),
            x_label: "recall".into(),
            y_label: "precision".into(),
            points: pts,
            diagonal: true,
            fit: false,
        };
        let svg = scatter_svg(&spec).map_err(plot_err)?;
        let _ = writeln!(
            h,
            "<figure>{}<figcaption>One point per class with both values defined.</figcaption></figure>",
            strip_svg_prolog(&svg)
        );
    }
    h.push_str("</section>\n");

    // Per-class table.
    h.push_str(
        "<section><h2>Per class</h2><p>Click a column header to sort.</p><div style=\"overflow-x:auto\">\
         <table class=\"sortable\" id=\"per-class\"><thead><tr><th>class</th><th>name</th><th>support</th>\
         <th>predicted</th><th>tp</th><th>fp</th><th>fn</th><th>precision</th><th>recall</th><th>F1</th></tr></thead><tbody>\n",
    );
    for q in &r.classes {
        let _ = writeln!(
            h,
            "<tr><td class=\"num\" data-v=\"{0}\">{0}</td><td>{1}</td><td class=\"num\" data-v=\"{2}\">{2}</td>\
             <td class=\"num\" data-v=\"{3}\">{3}</td><td class=\"num\" data-v=\"{4}\">{4}</td>\
             <td class=\"num\" data-v=\"{5}\">{5}</td><td class=\"num\" data-v=\"{6}\">{6}</td>{7}{8}{9}</tr>",
            q.class,
            esc(&class_name(classes, q.class)),
            q.support,
            q.predicted,
            q.tp,
            q.fp,
            q.fn_,
            num_cell(q.precision),
            num_cell(q.recall),
            num_cell(q.f1)
        );
    }
    h.push_str("</tbody></table></div></section>\n");

    // Gallery.
    let _ = write!(
        h,
        "<section><h2>Disagreements</h2><p>{} of {} disagreeing images, ordered by Jaccard similarity of the two \
         sets (lowest first), then by the number of classes in exactly one set (most first), then by image id. \
         Produced labels: <span class=\"ok\">in both</span>, <span class=\"extra\">produced only</span>; reference \
         labels: <span class=\"missing\">missing from the produced labels</span>.</p>\n<div class=\"grid\">\n",
        gallery.len(),
        r.disagreements.len()
    );
    for e in gallery {
        let d = &e.item;
        let _ = write!(h, "<div class=\"card\" data-image=\"{}\">", esc(&d.image));
        if let (Some(png), Some(full)) = (&e.thumbnail_png, &e.overlay) {
            let _ = write!(
                h,
                "<a href=\"{}\"><img alt=\"{}\" src=\"data:image/png;base64,{}\"></a>",
                esc(full),
                esc(&d.image),
                labelscope_proposals::gallery::base64(png)
            );
        }
        let _ = write!(
            h,
            "<div><b>{}</b> &middot; {} &middot; Jaccard {:.4}</div>",
            esc(&d.image),
            esc(d.relation.name()),
            d.jaccard
        );
        if let Some(n) = &e.note {
            let _ = write!(h, "<div class=\"note\">{}</div>", esc(n));
        }
        h.push_str("<div>produced:</div><ul class=\"l\">");
        if e.labels.is_empty() {
            h.push_str("<li>(none)</li>");
        }
        for l in &e.labels {
            let sw = l.colour.map_or(String::new(), |k| {
                let [r, g, b] = PALETTE[k];
                format!("<span class=\"sw\" style=\"background:rgb({r},{g},{b})\"></span>")
            });
            let _ = write!(
                h,
                "<li class=\"{}\">{sw}{} ({}) p={:.4}</li>",
                if l.in_reference { "ok" } else { "extra" },
                esc(&class_name(classes, l.class)),
                l.class,
                l.p
            );
        }
        h.push_str("</ul><div>reference:</div><ul class=\"l\">");
        for &c in &d.reference {
            let ok = d.produced.binary_search(&c).is_ok();
            let _ = write!(
                h,
                "<li class=\"{}\">{} ({})</li>",
                if ok { "ok" } else { "missing" },
                esc(&class_name(classes, c)),
                c
            );
        }
        h.push_str("</ul></div>\n");
    }
    let _ = write!(h, "</div></section>\n<script>{JS}</script>\n</body>\n</html>\n");
    Ok(h)
}

/// Paths written by [`write_report`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    /// `report.html`.
    pub html: PathBuf,
    /// `per_class.csv`.
    pub csv: PathBuf,
    /// `per_class.md`.
    pub markdown: PathBuf,
    /// `summary.json`.
    pub summary: PathBuf,
    /// Gallery entries rendered.
    pub gallery: usize,
}

/// Writes every file of the report into `out` (created if needed; see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn write_report(
    out: &Path,
    r: &QualityReport,
    produced: &Produced,
    classes: &ClassTable,
    src: &GallerySources<'_>,
    limit: usize,
    thumb: u32,
    meta: &[(String, String)],
) -> Result<ReportFiles> {
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let gallery = render_gallery(r, produced, src, out, limit, thumb)?;
    let page = html(r, classes, &gallery, meta)?;
    let files = ReportFiles {
        html: out.join("report.html"),
        csv: out.join("per_class.csv"),
        markdown: out.join("per_class.md"),
        summary: out.join("summary.json"),
        gallery: gallery.len(),
    };
    let summary = serde_json::to_string_pretty(r).map_err(|e| Error::Invalid(format!("cannot serialise: {e}")))?;
    write_atomic(&files.csv, per_class_csv(r, classes).as_bytes())?;
    write_atomic(&files.markdown, per_class_markdown(r, classes, 0).as_bytes())?;
    write_atomic(&files.summary, summary.as_bytes())?;
    write_atomic(&files.html, page.as_bytes())?;
    Ok(files)
}
