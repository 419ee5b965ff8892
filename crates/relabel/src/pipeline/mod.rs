//! The relabeling pipeline as file-to-file stages (what `labelscope relabel
//! <stage>` runs). Each stage reads the previous stages' files and writes
//! its own, atomically, so every step can be inspected and re-run on its own.
//! docs/relabel.md is the user guide; this is the reference.
//!
//! | stage | function | reads | writes |
//! |---|---|---|---|
//! | cache | [`cache_stage::build_cache`] | images, a ViT | a [`crate::cache`] folder plus `SHARD.images.jsonl` logs and, when every shard is done, `images.jsonl` ([`ImageGeometry`] per image) |
//! | select | [`select_stage::select_regions`] | cache, proposals (COCO), label maps `{id}.npy`, original labels | `regions.safetensors` ([`Regions`]) and `regions.jsonl` |
//! | train | [`train_stage::train_head`] | `regions.safetensors` | `head.safetensors` + `head.json`, `heldout.json`, `checkpoints/` |
//! | infer | [`infer_stage::infer`] | cache, proposals, head | `predictions.jsonl` ([`infer_stage::ImagePredictions`] per line) |
//! | aggregate | [`aggregate_stage::aggregate_labels`] | `predictions.jsonl`, original labels | TSV, JSON, `.npy`, CSR, statistics |
//!
//! # Image ids
//! Every file is keyed by image id: the [`join_key`] of the image's file name
//! (`a/b/n01_0001.JPEG` → `n01_0001`). The cache stores ids, COCO `images`
//! are matched through `file_name`, label maps are `{id}.npy`, and the
//! original-label file is matched through its first column.
//!
//! # Geometry (`images.jsonl`)
//! Pooling needs, per image, the original size and the rectangle of the
//! original image the patch grid covers ([`crate::pool::GridGeometry`]). The
//! cache stage writes one JSON object per line: `{"id", "file", "width",
//! "height", "x0", "y0", "x1", "y1"}`, `width × height` being the decoded
//! image (after the EXIF orientation when it is applied, the same image the
//! proposals were computed on) and the rectangle given by [`recipe_rect`]:
//! - `fixed{N}`: the whole image;
//! - `resize{S}-crop{C}`: the image is scaled to `(w', h')` (torchvision's
//!   `Resize(S)`, [`shorter_side_size`]) and cropped at `(left, top)`
//!   ([`center_crop_offsets`]); the rectangle is
//!   `[left · W/w', (left + C) · W/w') × [top · H/h', (top + C) · H/h')`;
//! - `square{S}-crop{C}`: the same with `w' = h' = S`.
//!
//! # Original labels
//! [`read_original_labels`]: a text file of lines `name<TAB>index` (or
//! `name,index`; `#` comments and empty lines are skipped, a header line
//! `filename,label` / `name<TAB>label` is allowed as the first line), or a
//! JSON object `{"name": index, ...}`. Names are matched by join key; an id
//! given twice, or an index that is not a non-negative integer, is an error
//! naming the file and the line (or key).

pub mod aggregate_stage;
pub mod cache_stage;
pub mod infer_stage;
pub mod select_stage;
pub mod train_stage;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use labelscope_core::ids::join_key;
use labelscope_core::rle::Rle;
use labelscope_vision::preprocess::{center_crop_offsets, shorter_side_size, Recipe};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pool::GridGeometry;

/// Name of the merged geometry file in a cache folder.
pub const IMAGES_JSONL: &str = "images.jsonl";

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.to_path_buf(), source }
}

fn format_err(path: &Path, location: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Format { path: path.to_path_buf(), location: location.into(), message: message.into() }
}

/// One image's geometry (a line of `images.jsonl`, see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageGeometry {
    /// Image id (join key).
    pub id: String,
    /// The file name as listed.
    pub file: String,
    /// Decoded width in pixels.
    pub width: usize,
    /// Decoded height in pixels.
    pub height: usize,
    /// Left edge of the grid rectangle.
    pub x0: f64,
    /// Top edge.
    pub y0: f64,
    /// Right edge (exclusive).
    pub x1: f64,
    /// Bottom edge (exclusive).
    pub y1: f64,
}

impl ImageGeometry {
    /// The pooling geometry.
    pub fn grid_geometry(&self) -> GridGeometry {
        GridGeometry { image_w: self.width, image_h: self.height, x0: self.x0, y0: self.y0, x1: self.x1, y1: self.y1 }
    }
}

/// The rectangle `(x0, y0, x1, y1)` of a `width × height` image that the
/// output of `recipe` shows (see the module docs).
pub fn recipe_rect(recipe: Recipe, width: u32, height: u32) -> (f64, f64, f64, f64) {
    let (w, h, crop) = match recipe {
        Recipe::Fixed { .. } => return (0.0, 0.0, f64::from(width), f64::from(height)),
        Recipe::ResizeCrop { resize, crop } => {
            let (w, h) = shorter_side_size(width, height, resize);
            (w, h, crop)
        }
        Recipe::SquareCrop { square, crop } => (square, square, crop),
    };
    let (left, top) = center_crop_offsets(w, h, crop, crop);
    let sx = f64::from(width) / f64::from(w.max(1));
    let sy = f64::from(height) / f64::from(h.max(1));
    let (l, t, c) = (left as f64, top as f64, f64::from(crop));
    (l * sx, t * sy, (l + c) * sx, (t + c) * sy)
}

/// Reads the geometry lines of a JSONL file: complete lines only (a last
/// line without a newline is ignored, it is an interrupted write); the same
/// id twice keeps the last line.
pub fn read_geometry_log(path: &Path) -> Result<BTreeMap<String, ImageGeometry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_err(path, e)),
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let lines: Vec<ImageGeometry> = parse_jsonl(path, complete, "an image geometry record")?;
    Ok(lines.into_iter().map(|g| (g.id.clone(), g)).collect())
}

/// Reads `images.jsonl` of a finished cache folder.
pub fn read_geometry(cache_dir: &Path) -> Result<BTreeMap<String, ImageGeometry>> {
    let path = cache_dir.join(IMAGES_JSONL);
    if !path.exists() {
        return Err(Error::Invalid(format!(
            "{}: missing; the cache is not finished (run `labelscope relabel cache` for every shard)",
            path.display()
        )));
    }
    read_geometry_log(&path)
}

/// Parses the JSON lines of `text`, read from `path`; empty lines are
/// skipped, errors name the file, the line and `what` was expected.
pub(crate) fn parse_jsonl<T: serde::de::DeserializeOwned>(path: &Path, text: &str, what: &str) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line)
                .map_err(|e| format_err(path, format!("line {}", i + 1), format!("not {what}: {e}")))?,
        );
    }
    Ok(out)
}

/// `items` as lines of JSON (each ending in a newline); `path` names errors.
pub(crate) fn jsonl_text<T: Serialize>(path: &Path, items: &[T]) -> Result<String> {
    let mut text = String::new();
    for it in items {
        let line = serde_json::to_string(it)
            .map_err(|e| Error::Invalid(format!("{}: cannot serialise: {e}", path.display())))?;
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

/// Writes lines of JSON values atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    labelscope_core::atomic::write_atomic(path, jsonl_text(path, items)?.as_bytes())?;
    Ok(())
}

/// Checks that every image of the proposals file is in the feature cache.
pub(crate) fn check_proposals_cached<V>(
    props: &BTreeMap<String, V>,
    cache: &crate::cache::FeatureCache,
    proposals: &Path,
    cache_dir: &Path,
) -> Result<()> {
    match props.keys().find(|id| !cache.contains(id)) {
        Some(id) => Err(format_err(
            proposals,
            format!("image {id:?}"),
            format!("not in the feature cache {}", cache_dir.display()),
        )),
        None => Ok(()),
    }
}

/// The original label of every image: id → (label, the name as written).
#[derive(Debug, Clone, Default)]
pub struct OriginalLabels {
    /// The file read.
    pub path: PathBuf,
    /// id → (class, where it was written, e.g. `line 3`).
    pub labels: HashMap<String, (u32, String)>,
}

impl OriginalLabels {
    /// The label of `id`, or an error naming the file.
    pub fn get(&self, id: &str) -> Result<u32> {
        self.labels
            .get(id)
            .map(|v| v.0)
            .ok_or_else(|| format_err(&self.path, "whole file", format!("no original label for image {id:?}")))
    }

    /// Checks every label against `classes`; the error names the file and line.
    pub fn check_classes(&self, classes: usize, what: &str) -> Result<()> {
        let mut bad: Vec<(&String, &(u32, String))> =
            self.labels.iter().filter(|(_, v)| v.0 as usize >= classes).collect();
        bad.sort_by(|a, b| a.1 .1.cmp(&b.1 .1));
        if let Some((id, (c, loc))) = bad.first() {
            return Err(format_err(
                &self.path,
                loc.clone(),
                format!("image {id:?} has class {c}, outside the {classes} classes of {what}"),
            ));
        }
        Ok(())
    }
}

/// Reads an original-label file (see the module docs).
pub fn read_original_labels(path: &Path) -> Result<OriginalLabels> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    let mut labels = HashMap::new();
    let mut put = |name: &str, class: u32, loc: String| -> Result<()> {
        let id = join_key(name).to_string();
        if id.is_empty() {
            return Err(format_err(path, loc, "empty image name"));
        }
        if let Some((_, prev)) = labels.insert(id.clone(), (class, loc.clone())) {
            return Err(format_err(path, loc, format!("image {id:?} is listed twice (first at {prev})")));
        }
        Ok(())
    };
    if text.trim_start().starts_with('{') {
        let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
            format_err(
                path,
                format!("line {}, column {}", e.line(), e.column()),
                format!("expected {{name: index}}: {e}"),
            )
        })?;
        for (k, val) in v {
            let c = val.as_u64().and_then(|c| u32::try_from(c).ok()).ok_or_else(|| {
                format_err(path, format!("key {k:?}"), format!("{val}: expected a non-negative class index"))
            })?;
            put(&k, c, format!("key {k:?}"))?;
        }
    } else {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let loc = format!("line {}", i + 1);
            let (name, value) = line
                .split_once('\t')
                .or_else(|| line.rsplit_once(','))
                .ok_or_else(|| format_err(path, loc.clone(), "expected `name<TAB>index` or `name,index`"))?;
            let value = value.trim();
            match value.parse::<u32>() {
                Ok(c) => put(name.trim(), c, loc)?,
                Err(_) if i == 0 => continue, // header line
                Err(_) => return Err(format_err(path, loc, format!("{value:?}: expected a non-negative class index"))),
            }
        }
    }
    if labels.is_empty() {
        return Err(format_err(path, "whole file", "no labels; expected lines `name<TAB>index`"));
    }
    Ok(OriginalLabels { path: path.to_path_buf(), labels })
}

/// The proposals of one image, from a COCO file.
#[derive(Debug, Clone)]
pub struct ImageProposals {
    /// The COCO `file_name`.
    pub file: String,
    /// Width from COCO `images`.
    pub width: usize,
    /// Height from COCO `images`.
    pub height: usize,
    /// `(annotation id, position in `annotations`, mask)`.
    pub masks: Vec<(u64, usize, Rle)>,
}

/// Reads a COCO proposals file, grouped by image id (join key of
/// `file_name`). Masks are checked: decodable, of the image's size, and not
/// empty; errors name the file and `annotations[k]`.
pub fn read_proposals(path: &Path) -> Result<BTreeMap<String, ImageProposals>> {
    let coco = labelscope_proposals::coco::read_coco(path)?;
    let mut by_num: HashMap<u64, String> = HashMap::new();
    let mut out: BTreeMap<String, ImageProposals> = BTreeMap::new();
    for (k, im) in coco.images.iter().enumerate() {
        let id = join_key(&im.file_name).to_string();
        if out.contains_key(&id) {
            return Err(format_err(path, format!("images[{k}]"), format!("image id {id:?} appears twice")));
        }
        by_num.insert(im.id, id.clone());
        out.insert(
            id,
            ImageProposals { file: im.file_name.clone(), width: im.width, height: im.height, masks: Vec::new() },
        );
    }
    for (k, a) in coco.annotations.iter().enumerate() {
        let loc = format!("annotations[{k}]");
        let id = by_num
            .get(&a.image_id)
            .ok_or_else(|| format_err(path, loc.clone(), format!("image_id {} is not in `images`", a.image_id)))?;
        let [h, w] = a.segmentation.size;
        let rle = Rle::from_counts_string(&a.segmentation.counts, h, w)
            .map_err(|e| format_err(path, format!("{loc}.segmentation"), e.to_string()))?;
        if rle.area() == 0 {
            return Err(format_err(path, format!("{loc}.segmentation"), "the mask is empty (no pixel set)"));
        }
        if let Some(p) = out.get_mut(id) {
            p.masks.push((a.id, k, rle));
        }
    }
    Ok(out)
}

/// Checks that an image's proposals match the cached image size.
pub fn check_proposal_size(path: &Path, id: &str, p: &ImageProposals, g: &ImageGeometry) -> Result<()> {
    if p.width != g.width || p.height != g.height {
        return Err(format_err(
            path,
            format!("image {id:?}"),
            format!(
                "the proposals are for a {}x{} image, the cached image is {}x{} (w x h): different images or decode settings",
                p.width, p.height, g.width, g.height
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Minimal safetensors writing/reading for the region file
// ---------------------------------------------------------------------------

/// A tensor to write: name, safetensors dtype (`F32`, `F16`, `I64`), shape, little-endian bytes.
pub(crate) struct RawTensor {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

pub(crate) fn write_safetensors(path: &Path, tensors: &[RawTensor], metadata: &BTreeMap<String, String>) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata).unwrap_or_default());
    let mut off = 0usize;
    for t in tensors {
        let end = off + t.data.len();
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [off, end]}),
        );
        off = end;
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while !(8 + h.len()).is_multiple_of(8) {
        h.push(b' ');
    }
    labelscope_core::atomic::write_atomic_with(path, |w: &mut dyn Write| {
        w.write_all(&(h.len() as u64).to_le_bytes())?;
        w.write_all(&h)?;
        for t in tensors {
            w.write_all(&t.data)?;
        }
        Ok(())
    })?;
    Ok(())
}

pub(crate) struct SafeFile {
    pub path: PathBuf,
    pub header: serde_json::Map<String, serde_json::Value>,
    pub bytes: Vec<u8>,
    pub data_start: usize,
}

impl SafeFile {
    pub fn read(path: &Path) -> Result<SafeFile> {
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        let bad = |m: &str| format_err(path, "header", m.to_string());
        if bytes.len() < 8 {
            return Err(bad("shorter than the 8-byte safetensors header length"));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[..8]);
        let hlen = u64::from_le_bytes(n) as usize;
        if hlen > bytes.len() - 8 {
            return Err(bad("the header length runs past the end of the file"));
        }
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..8 + hlen]).map_err(|e| bad(&format!("not a JSON object: {e}")))?;
        Ok(SafeFile { path: path.to_path_buf(), header, bytes, data_start: 8 + hlen })
    }

    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.header.get("__metadata__")?.get(key)?.as_str()
    }

    /// `(dtype, shape, bytes)` of tensor `name`.
    pub fn tensor(&self, name: &str) -> Result<(String, Vec<usize>, &[u8])> {
        let loc = format!("tensor {name:?}");
        let t = self.header.get(name).ok_or_else(|| format_err(&self.path, loc.clone(), "missing"))?;
        let dtype = t.get("dtype").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let shape: Vec<usize> = t
            .get("shape")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_u64().map(|x| x as usize)).collect())
            .unwrap_or_default();
        let offs: Vec<usize> = t
            .get("data_offsets")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_u64().map(|x| x as usize)).collect())
            .unwrap_or_default();
        let &[a, b] = offs.as_slice() else {
            return Err(format_err(&self.path, loc, "no data_offsets [begin, end]"));
        };
        let size = match dtype.as_str() {
            "F32" => 4,
            "F16" => 2,
            "I64" => 8,
            other => return Err(format_err(&self.path, loc, format!("dtype {other:?}; expected F32, F16 or I64"))),
        };
        let n: usize = shape.iter().product();
        let (s, e) = (self.data_start + a, self.data_start + b);
        if b < a || e > self.bytes.len() || b - a != n * size {
            return Err(format_err(&self.path, loc, format!("data offsets {a}..{b} do not fit the shape {shape:?}")));
        }
        Ok((dtype, shape, &self.bytes[s..e]))
    }

    pub fn f32s(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let (dtype, shape, b) = self.tensor(name)?;
        let v = match dtype.as_str() {
            "F32" => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            "F16" => {
                b.chunks_exact(2).map(|c| labelscope_core::npy::f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()
            }
            _ => {
                return Err(format_err(
                    &self.path,
                    format!("tensor {name:?}"),
                    format!("dtype {dtype}; expected F32 or F16"),
                ))
            }
        };
        Ok((shape, v))
    }

    pub fn i64s(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>)> {
        let (dtype, shape, b) = self.tensor(name)?;
        if dtype != "I64" {
            return Err(format_err(&self.path, format!("tensor {name:?}"), format!("dtype {dtype}; expected I64")));
        }
        let v =
            b.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect();
        Ok((shape, v))
    }
}

/// The training regions of `regions.safetensors`.
///
/// Tensors: `features` `[R, D]` (`F16` or `F32`), `labels` `[R]` (`I64`,
/// the class each region is trained on), `image` `[R]` (`I64`, index into
/// the `images` metadata list), `proposal` `[R]` (`I64`, the COCO annotation
/// id, −1 for the whole-image fallback). Metadata: `format` =
/// `labelscope-relabel-regions`, `classes` (C), `dim` (D), `images` (JSON
/// list of image ids).
#[derive(Debug, Clone, PartialEq)]
pub struct Regions {
    /// Feature dimension D.
    pub dim: usize,
    /// Number of classes C of the label maps.
    pub classes: usize,
    /// `[R * D]` pooled features.
    pub features: Vec<f32>,
    /// `[R]` classes.
    pub labels: Vec<u32>,
    /// `[R]` image index.
    pub image: Vec<usize>,
    /// `[R]` annotation id (`None` = whole image).
    pub proposal: Vec<Option<u64>>,
    /// Image ids.
    pub images: Vec<String>,
}

/// `format` metadata of the region file.
pub const REGIONS_FORMAT: &str = "labelscope-relabel-regions";

impl Regions {
    /// Number of regions.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no region.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Writes the file atomically, features as f16 or f32.
    pub fn write(&self, path: &Path, f16: bool) -> Result<()> {
        let r = self.len();
        let feats: Vec<u8> = if f16 {
            let mut out = Vec::with_capacity(self.features.len() * 2);
            for (i, &v) in self.features.iter().enumerate() {
                let h = labelscope_core::npy::f32_to_f16(v);
                if !v.is_finite() || (h & 0x7c00) == 0x7c00 {
                    return Err(Error::Invalid(format!(
                        "{}: region {} channel {}: value {v} does not fit in f16 (use f32)",
                        path.display(),
                        i / self.dim.max(1),
                        i % self.dim.max(1)
                    )));
                }
                out.extend_from_slice(&h.to_le_bytes());
            }
            out
        } else {
            self.features.iter().flat_map(|v| v.to_le_bytes()).collect()
        };
        let i64s = |v: Vec<i64>| v.into_iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let tensors = [
            RawTensor {
                name: "features".into(),
                dtype: if f16 { "F16" } else { "F32" },
                shape: vec![r, self.dim],
                data: feats,
            },
            RawTensor {
                name: "labels".into(),
                dtype: "I64",
                shape: vec![r],
                data: i64s(self.labels.iter().map(|&c| i64::from(c)).collect()),
            },
            RawTensor {
                name: "image".into(),
                dtype: "I64",
                shape: vec![r],
                data: i64s(self.image.iter().map(|&c| c as i64).collect()),
            },
            RawTensor {
                name: "proposal".into(),
                dtype: "I64",
                shape: vec![r],
                data: i64s(self.proposal.iter().map(|p| p.map_or(-1, |v| v as i64)).collect()),
            },
        ];
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), REGIONS_FORMAT.to_string());
        meta.insert("classes".to_string(), self.classes.to_string());
        meta.insert("dim".to_string(), self.dim.to_string());
        meta.insert("images".to_string(), serde_json::to_string(&self.images).unwrap_or_default());
        write_safetensors(path, &tensors, &meta)
    }

    /// Reads a region file, checking shapes and metadata (errors name the file and the key).
    pub fn read(path: &Path) -> Result<Regions> {
        let f = SafeFile::read(path)?;
        let meta = |k: &str| -> Result<&str> {
            f.metadata(k).ok_or_else(|| format_err(path, format!("__metadata__ {k:?}"), "missing"))
        };
        if meta("format")? != REGIONS_FORMAT {
            return Err(format_err(path, "__metadata__ \"format\"", format!("expected {REGIONS_FORMAT:?}")));
        }
        let num = |k: &str| -> Result<usize> {
            meta(k)?.parse::<usize>().map_err(|_| format_err(path, format!("__metadata__ {k:?}"), "expected a count"))
        };
        let classes = num("classes")?;
        let dim = num("dim")?;
        let images: Vec<String> = serde_json::from_str(meta("images")?)
            .map_err(|e| format_err(path, "__metadata__ \"images\"", format!("expected a JSON list of ids: {e}")))?;
        let (fs, features) = f.f32s("features")?;
        let (_, labels) = f.i64s("labels")?;
        let (_, image) = f.i64s("image")?;
        let (_, proposal) = f.i64s("proposal")?;
        let r = labels.len();
        if fs != [r, dim] || image.len() != r || proposal.len() != r {
            return Err(format_err(
                path,
                "tensor \"features\"",
                format!(
                    "shape {fs:?} with {r} labels, {} images, {} proposals; expected [{r}, {dim}] and {r} of each",
                    image.len(),
                    proposal.len()
                ),
            ));
        }
        let mut lab = Vec::with_capacity(r);
        for (i, &c) in labels.iter().enumerate() {
            if c < 0 || c as usize >= classes {
                return Err(format_err(
                    path,
                    format!("tensor \"labels\" row {i}"),
                    format!("class {c} outside [0, {classes})"),
                ));
            }
            lab.push(c as u32);
        }
        let mut img = Vec::with_capacity(r);
        for (i, &k) in image.iter().enumerate() {
            if k < 0 || k as usize >= images.len() {
                return Err(format_err(
                    path,
                    format!("tensor \"image\" row {i}"),
                    format!("index {k} outside the {} images", images.len()),
                ));
            }
            img.push(k as usize);
        }
        Ok(Regions {
            dim,
            classes,
            features,
            labels: lab,
            image: img,
            proposal: proposal.into_iter().map(|p| u64::try_from(p).ok()).collect(),
            images,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_rectangles() {
        // fixed: whole image.
        assert_eq!(recipe_rect(Recipe::Fixed { size: 448 }, 640, 480), (0.0, 0.0, 640.0, 480.0));
        // resize256-crop224 of 640x480: Resize(256) -> 341x256 (int(256*640/480) = 341);
        // CenterCrop(224): left = round((341-224)/2) = round(58.5) = 58, top = round(16) = 16.
        // x: 58*640/341 = 108.8563..., (58+224)*640/341 = 529.2668...; y: 16*480/256 = 30, 240*480/256 = 450.
        let (x0, y0, x1, y1) = recipe_rect(Recipe::RESIZE256_CROP224, 640, 480);
        assert!((x0 - 58.0 * 640.0 / 341.0).abs() < 1e-12 && (x1 - 282.0 * 640.0 / 341.0).abs() < 1e-12);
        assert_eq!((y0, y1), (30.0, 450.0));
        // square256-crop224 of 100x50: left = top = 16; x 16*100/256 = 6.25 .. 240*100/256 = 93.75; y 3.125 .. 46.875.
        assert_eq!(recipe_rect(Recipe::SquareCrop { square: 256, crop: 224 }, 100, 50), (6.25, 3.125, 93.75, 46.875));
    }

    #[test]
    fn original_labels_tsv_json_and_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.tsv");
        std::fs::write(&p, "name\tlabel\n# c\na/x.png\t3\ny.JPEG\t0\n\n").unwrap();
        let l = read_original_labels(&p).unwrap();
        assert_eq!(l.get("x").unwrap(), 3);
        assert_eq!(l.get("y").unwrap(), 0);
        assert!(l.get("z").unwrap_err().to_string().contains("l.tsv"));
        let e = l.check_classes(3, "the head").unwrap_err().to_string();
        assert!(e.contains("l.tsv") && e.contains("line 3") && e.contains("class 3"), "{e}");
        std::fs::write(&p, "x.png\t1\nx.jpg\t2\n").unwrap();
        let e = read_original_labels(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("twice"), "{e}");
        std::fs::write(&p, "x.png\t1\ny.png\tcat\n").unwrap();
        assert!(read_original_labels(&p).unwrap_err().to_string().contains("line 2"));
        std::fs::write(&p, r#"{"a.png": 2, "b": -1}"#).unwrap();
        assert!(read_original_labels(&p).unwrap_err().to_string().contains("key \"b\""));
    }

    #[test]
    fn regions_round_trip_and_checks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.safetensors");
        let r = Regions {
            dim: 2,
            classes: 3,
            features: vec![0.5, -1.0, 2.0, 0.25],
            labels: vec![2, 0],
            image: vec![0, 1],
            proposal: vec![Some(7), None],
            images: vec!["a".into(), "b".into()],
        };
        for f16 in [false, true] {
            r.write(&p, f16).unwrap();
            assert_eq!(Regions::read(&p).unwrap(), r); // all values exact in f16
        }
        let mut bad = r.clone();
        bad.labels[1] = 3;
        bad.classes = 4;
        bad.write(&p, false).unwrap();
        let mut text = std::fs::read(&p).unwrap();
        // patch "classes":"4" -> "3" in the header: the label 3 is then out of range
        let pos = text.windows(13).position(|w| w == b"\"classes\":\"4\"").unwrap();
        text[pos + 11] = b'3';
        std::fs::write(&p, &text).unwrap();
        let e = Regions::read(&p).unwrap_err().to_string();
        assert!(e.contains("labels\" row 1") && e.contains("class 3"), "{e}");
    }
}
