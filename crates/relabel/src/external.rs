//! Filtering an external set of proposals (a COCO instances file with RLE
//! masks, e.g. from another discovery method) by the region labeler's
//! top-1 confidence.
//!
//! # Rule
//! Every annotation's mask is pooled on its image's cached patch grid
//! exactly as in `relabel infer` ([`crate::pool::project_mask`] with the
//! default [`crate::pool::Projection::Fraction`]: the area-weighted mean of
//! the cells under the mask), the head gives softmax probabilities, and the
//! proposal's *confidence* is the top-1 probability (its class: the most
//! probable, ties to the lower index). A proposal is **kept at threshold
//! `t` when its confidence is `≥ t`**. A mask that covers no cell of the
//! grid (empty, or entirely outside the grid rectangle of a crop recipe)
//! is not scored: it counts as `outside_grid` and is removed at every
//! threshold.
//!
//! # Input
//! `images` entries need `id`, `file_name`, `width`, `height`; annotations
//! need `id`, `image_id` and a `segmentation` RLE object `{"size": [h, w],
//! "counts": ...}` with compressed (string) or uncompressed (list) counts.
//! Images are matched to the cache by the join key of `file_name`. Errors
//! name the file and `annotations[k] (id N)`: malformed JSON (line and
//! column), an `image_id` not in `images`, an image not in the cache, an RLE
//! whose `size` is not the image's `[height, width]` or not the size of the
//! cached image (`images.jsonl`), undecodable counts, polygons.
//!
//! The grid is placed by the cache's `images.jsonl` when present, else by
//! the cache's recipe and the COCO image size
//! ([`crate::query::geometry_for`]).
//!
//! # Output
//! [`write_filtered`]: the input JSON with `annotations` restricted to the
//! kept ones (order and every other field unchanged), each kept annotation
//! getting `"labeler_class"` and `"labeler_confidence"`; written atomically.
//! [`FilterReport`]: per threshold, kept / removed counts (CSV or JSON,
//! [`write_report`]).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use labelscope_core::atomic::write_atomic;
use labelscope_core::ids::join_key;
use labelscope_core::rle::Rle;
use labelscope_nn::head::RegionHead;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::FeatureCache;
use crate::error::{Error, Result};
use crate::pool::{masked_average, project_mask, Grid, GridGeometry, Mask, Projection};
use crate::query::{cached_geometry, check_head, geometry_for};

/// The labeler's verdict on one annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalScore {
    /// Position in the input's `annotations`.
    pub index: usize,
    /// The annotation's `id`.
    pub id: u64,
    /// Cache id of its image.
    pub image: String,
    /// Top-1 class (`None` when outside the grid).
    pub class: Option<u32>,
    /// Top-1 probability (0 when outside the grid).
    pub confidence: f64,
    /// The mask covers no grid cell.
    pub outside_grid: bool,
}

/// One row of the threshold table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdRow {
    /// Threshold `t`.
    pub threshold: f64,
    /// Proposals with confidence `≥ t`.
    pub kept: usize,
    /// The others (outside-grid ones included).
    pub removed: usize,
    /// `kept / total` (0 for no proposals).
    pub kept_share: f64,
}

/// The report of a filtering run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterReport {
    /// The input file.
    pub input: String,
    /// Annotations in the input.
    pub proposals: usize,
    /// Of which covering no grid cell.
    pub outside_grid: usize,
    /// One row per threshold, in the order given.
    pub thresholds: Vec<ThresholdRow>,
}

#[derive(Deserialize)]
struct Img {
    id: u64,
    file_name: String,
    width: usize,
    height: usize,
}

#[derive(Deserialize)]
struct Ann {
    id: u64,
    image_id: u64,
    segmentation: Value,
}

fn fmt(path: &Path, location: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Format { path: path.to_path_buf(), location: location.into(), message: message.into() }
}

/// Decodes a `segmentation` RLE object of an `h × w` image.
fn parse_rle(seg: &Value, h: usize, w: usize) -> std::result::Result<Rle, String> {
    let obj = seg.as_object().ok_or_else(|| {
        "segmentation is not an RLE object {\"size\", \"counts\"} (polygons are not supported)".to_string()
    })?;
    let size: [usize; 2] = obj
        .get("size")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or_else(|| "segmentation.size: expected [height, width]".to_string())?;
    if size != [h, w] {
        return Err(format!("RLE size {size:?} does not match the image's [height, width] = [{h}, {w}]"));
    }
    match obj.get("counts") {
        Some(Value::String(s)) => Rle::from_counts_string(s, h, w).map_err(|e| e.to_string()),
        Some(Value::Array(a)) => {
            let counts: Option<Vec<u32>> = a.iter().map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok())).collect();
            let counts = counts.ok_or_else(|| "segmentation.counts: expected non-negative integers".to_string())?;
            Rle::from_uncompressed(counts, h, w).map_err(|e| e.to_string())
        }
        _ => Err("segmentation.counts: expected a string (compressed RLE) or a list of run lengths".into()),
    }
}

/// Annotations of one image: (index in the input, id, mask).
type ImageAnns = Vec<(usize, u64, Rle)>;

struct Parsed {
    value: Value,
    /// cache id → (geometry, [(annotation index, annotation id, rle)])
    images: BTreeMap<String, (GridGeometry, ImageAnns)>,
    total: usize,
}

fn parse_input(path: &Path, cache: &FeatureCache) -> Result<Parsed> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| fmt(path, format!("line {}, column {}", e.line(), e.column()), format!("malformed JSON: {e}")))?;
    let arr = |key: &str| -> Result<&Vec<Value>> {
        value
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| fmt(path, format!("key {key:?}"), "missing or not a list"))
    };
    let geo = cached_geometry(cache)?;
    let recipe = cache.meta().recipe.clone();
    let mut imgs: BTreeMap<u64, (String, usize, usize)> = BTreeMap::new();
    for (k, v) in arr("images")?.iter().enumerate() {
        let im: Img = serde_json::from_value(v.clone()).map_err(|e| {
            fmt(path, format!("images[{k}]"), format!("expected {{id, file_name, width, height}}: {e}"))
        })?;
        if imgs.insert(im.id, (join_key(&im.file_name).to_string(), im.width, im.height)).is_some() {
            return Err(fmt(path, format!("images[{k}]"), format!("image id {} appears twice", im.id)));
        }
    }
    let mut images: BTreeMap<String, (GridGeometry, ImageAnns)> = BTreeMap::new();
    let anns = arr("annotations")?;
    let total = anns.len();
    for (k, v) in anns.iter().enumerate() {
        let id_hint = v.get("id").and_then(Value::as_u64).map_or(String::new(), |i| format!(" (id {i})"));
        let loc = format!("annotations[{k}]{id_hint}");
        let a: Ann = serde_json::from_value(v.clone())
            .map_err(|e| fmt(path, &loc, format!("expected {{id, image_id, segmentation}}: {e}")))?;
        let (key, iw, ih) = imgs
            .get(&a.image_id)
            .ok_or_else(|| fmt(path, &loc, format!("image_id {} is not in `images`", a.image_id)))?;
        let f = cache.get(key).map_err(|_| {
            fmt(
                path,
                &loc,
                format!(
                    "its image {key:?} (image_id {}) is not in the feature cache {}",
                    a.image_id,
                    cache.dir().display()
                ),
            )
        })?;
        let geom = match geo.as_ref().and_then(|m| m.get(key)) {
            Some(g) => {
                if (g.image_w, g.image_h) != (*iw, *ih) {
                    return Err(fmt(
                        path,
                        &loc,
                        format!(
                            "image {key:?} is {iw}x{ih} (w x h) in this file but {}x{} in the feature cache: \
                             different images or decode settings",
                            g.image_w, g.image_h
                        ),
                    ));
                }
                *g
            }
            None => geometry_for(&recipe, Some((*iw, *ih)), (f.h, f.w))?,
        };
        let rle = parse_rle(&a.segmentation, *ih, *iw).map_err(|m| fmt(path, format!("{loc}.segmentation"), m))?;
        images.entry(key.clone()).or_insert_with(|| (geom, Vec::new())).1.push((k, a.id, rle));
    }
    Ok(Parsed { value, images, total })
}

/// The scored proposals of `coco` (in input order) and the parsed input JSON.
/// `progress(done, total)` counts images; `chunk` images per head call.
pub fn score_proposals(
    cache_dir: &Path,
    coco: &Path,
    head_path: &Path,
    chunk: usize,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Value, Vec<ProposalScore>)> {
    if chunk == 0 {
        return Err(Error::Invalid("chunk of 0 images: expected at least 1".into()));
    }
    let cache = FeatureCache::open(cache_dir)?;
    let head = RegionHead::load(head_path, device)?;
    check_head(&cache, &head)?;
    let parsed = parse_input(coco, &cache)?;
    let dim = cache.meta().dim;
    let mut out: Vec<Option<ProposalScore>> = vec![None; parsed.total];
    let list: Vec<(&String, &(GridGeometry, ImageAnns))> = parsed.images.iter().collect();
    progress(0, list.len());
    let mut done = 0;
    for part in list.chunks(chunk) {
        type Pooled = (Vec<(usize, u64, Vec<f32>)>, Vec<(usize, u64)>);
        let pooled: Vec<Result<Pooled>> = part
            .par_iter()
            .map(|(key, (geom, anns))| {
                let f = cache.get(key)?;
                let feats = f.patches_f32();
                let grid = Grid::new(f.h, f.w, dim, &feats)?;
                let mut rows = Vec::new();
                let mut outside = Vec::new();
                for (k, id, rle) in anns {
                    match project_mask(&Mask::Rle(rle), geom, f.h, f.w, Projection::Fraction, "proposal") {
                        Ok(w) => rows.push((*k, *id, masked_average(&grid, &w)?)),
                        Err(Error::Invalid(_)) => outside.push((*k, *id)),
                        Err(e) => return Err(e),
                    }
                }
                Ok((rows, outside))
            })
            .collect();
        let mut flat = Vec::new();
        let mut meta = Vec::new();
        for ((key, _), p) in part.iter().zip(pooled) {
            let (rows, outside) = p?;
            for (k, id) in outside {
                out[k] = Some(ProposalScore {
                    index: k,
                    id,
                    image: (*key).clone(),
                    class: None,
                    confidence: 0.0,
                    outside_grid: true,
                });
            }
            for (k, id, v) in rows {
                flat.extend(v);
                meta.push((k, id, (*key).clone()));
            }
        }
        if !meta.is_empty() {
            let x = Tensor::from_vec(flat, (meta.len(), dim), head.device())?;
            let top = head.predict_topk(&x, 1)?;
            for ((k, id, image), t) in meta.into_iter().zip(top) {
                let (p, c) = t.first().copied().unwrap_or((0.0, 0));
                out[k] = Some(ProposalScore {
                    index: k,
                    id,
                    image,
                    class: Some(c),
                    confidence: f64::from(p),
                    outside_grid: false,
                });
            }
        }
        done += part.len();
        progress(done, list.len());
    }
    let scores = out.into_iter().flatten().collect();
    Ok((parsed.value, scores))
}

/// Kept / removed counts of `scores` at each threshold (kept: confidence `≥ t`, not outside the grid).
pub fn threshold_table(scores: &[ProposalScore], thresholds: &[f64]) -> Vec<ThresholdRow> {
    let n = scores.len();
    thresholds
        .iter()
        .map(|&t| {
            let kept = scores.iter().filter(|s| !s.outside_grid && s.confidence >= t).count();
            ThresholdRow {
                threshold: t,
                kept,
                removed: n - kept,
                kept_share: if n == 0 { 0.0 } else { kept as f64 / n as f64 },
            }
        })
        .collect()
}

/// Checks the thresholds: finite, in `[0, 1]`, at least one.
pub fn check_thresholds(thresholds: &[f64]) -> Result<()> {
    if thresholds.is_empty() {
        return Err(Error::Invalid("no threshold given".into()));
    }
    if let Some(t) = thresholds.iter().find(|t| !(t.is_finite() && (0.0..=1.0).contains(*t))) {
        return Err(Error::Invalid(format!("threshold {t}: expected a probability in [0, 1]")));
    }
    Ok(())
}

/// Writes `input` with only the annotations kept at `threshold` (see the
/// module docs) to `out`, atomically; returns how many were kept.
pub fn write_filtered(input: &Value, scores: &[ProposalScore], threshold: f64, out: &Path) -> Result<usize> {
    check_thresholds(&[threshold])?;
    let mut v = input.clone();
    let by_index: BTreeMap<usize, &ProposalScore> = scores.iter().map(|s| (s.index, s)).collect();
    let anns = v
        .get_mut("annotations")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::Invalid("the input has no `annotations` list".into()))?;
    let old = std::mem::take(anns);
    for (k, mut a) in old.into_iter().enumerate() {
        let Some(s) = by_index.get(&k) else { continue };
        if s.outside_grid || s.confidence < threshold {
            continue;
        }
        if let (Some(o), Some(c)) = (a.as_object_mut(), s.class) {
            o.insert("labeler_class".into(), Value::from(c));
            o.insert("labeler_confidence".into(), Value::from(s.confidence));
        }
        anns.push(a);
    }
    let kept = anns.len();
    let text =
        serde_json::to_vec(&v).map_err(|e| Error::Invalid(format!("{}: cannot serialise: {e}", out.display())))?;
    write_atomic(out, &text)?;
    Ok(kept)
}

/// Writes the report atomically: CSV (`threshold,kept,removed,kept_share`)
/// when `path` ends in `.csv`, JSON ([`FilterReport`]) otherwise.
pub fn write_report(path: &Path, report: &FilterReport) -> Result<()> {
    let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let text = if csv {
        let mut s = String::from("threshold,kept,removed,kept_share\n");
        for r in &report.thresholds {
            s.push_str(&format!("{},{},{},{:.6}\n", r.threshold, r.kept, r.removed, r.kept_share));
        }
        s
    } else {
        serde_json::to_string_pretty(report)
            .map_err(|e| Error::Invalid(format!("{}: cannot serialise: {e}", path.display())))?
    };
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(index: usize, c: f64, outside: bool) -> ProposalScore {
        ProposalScore {
            index,
            id: index as u64 + 100,
            image: "a".into(),
            class: Some(0),
            confidence: c,
            outside_grid: outside,
        }
    }

    #[test]
    fn table_by_hand() {
        // confidences 0.9, 0.5, 0.3, 0.5 and one outside the grid
        let s = [
            score(0, 0.9, false),
            score(1, 0.5, false),
            score(2, 0.3, false),
            score(3, 0.5, false),
            score(4, 0.0, true),
        ];
        let t = threshold_table(&s, &[0.0, 0.5, 0.51, 1.0]);
        let kept: Vec<usize> = t.iter().map(|r| r.kept).collect();
        assert_eq!(kept, vec![4, 3, 1, 0]);
        assert_eq!(t[1].removed, 2);
        assert!((t[1].kept_share - 0.6).abs() < 1e-12);
        assert!(check_thresholds(&[0.5, 1.5]).is_err());
        assert!(check_thresholds(&[]).is_err());
    }

    #[test]
    fn rle_checks() {
        let m = Rle::encode(&[true, false, false, true], 2, 2).unwrap();
        let ok = serde_json::json!({"size": [2, 2], "counts": m.to_counts_string()});
        assert_eq!(parse_rle(&ok, 2, 2).unwrap(), m);
        let raw = serde_json::json!({"size": [2, 2], "counts": [0, 1, 2, 1]});
        assert_eq!(parse_rle(&raw, 2, 2).unwrap().decode(), vec![true, false, false, true]);
        assert!(parse_rle(&ok, 2, 3).unwrap_err().contains("does not match"));
        assert!(parse_rle(&serde_json::json!([[0, 0, 1, 1]]), 2, 2).unwrap_err().contains("polygons"));
    }
}
