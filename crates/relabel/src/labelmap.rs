//! Soft spatial label maps from the region labeler, and soft targets for a
//! crop by RoI-align over a map (the ReLabel recipe, Yun et al. 2021).
//!
//! # Maps
//! [`compute_map`] applies the trained region head to every cell of an
//! image's cached `h × w` patch grid. The input of cell `(i, j)` is the mean
//! of the patch features in the window `[i − r, i + r] × [j − r, j + r]`
//! clipped to the grid (`r` = [`MapOptions::window`], default 0: the patch
//! token alone). The head's `C` logits of each cell are kept as the top `k`
//! (default 5) entries, most probable first (ties by lower class index),
//! either as logits ([`ScoreKind::Logits`], default, what ReLabel stores)
//! or as softmax probabilities over the `C` classes ([`ScoreKind::Probs`]).
//!
//! # Files
//! [`export_label_maps`] writes a folder:
//! - `{id}.npy`: `<f4`, shape `[2, k, h, w]`, C order: `[0, r, i, j]` is the
//!   `r`-th score of cell `(i, j)`, `[1, r, i, j]` its class index (an
//!   integer stored as a float, exact below 2²⁴). This is ReLabel's layout,
//!   so `labelscope relabel select --maps` reads these files too (it then
//!   takes the map to cover the whole image);
//! - `labelmaps.json` ([`MapIndex`]): `format` (`labelscope-labelmap/1`),
//!   `classes`, `k`, `scores` (`logits` / `probs`), `window`, the cache and
//!   head paths, and per image `{id, file, width, height, x0, y0, x1, y1, h,
//!   w}`: the rectangle `[x0, x1) × [y0, y1)` of the original `width ×
//!   height` image that the grid covers (from the cache's `images.jsonl`, or
//!   the network input / grid cells when the cache has none, as in
//!   [`crate::query::geometry_for`]).
//!
//! In Python: `m = np.load(f"{id}.npy"); scores, classes = m[0], m[1].astype(int)`;
//! the dense map is `d = np.zeros((C, h, w)); np.put_along_axis(d, classes, scores, 0)`.
//!
//! # Soft target of a crop
//! [`SoftLabelMap::soft_target`], for a box `[x0, y0, x1, y1]` in pixels of
//! the original image:
//! 1. the stored entries are scattered into a dense `[C, h, w]` map, classes
//!    not listed at a cell being 0 (as ReLabel does);
//! 2. the box is pooled to one `C`-vector by cell weights `W` (computed once
//!    per box, so no dense map is built): [`Pooling::RoiAlign`] (default)
//!    uses torchvision's `roi_align(output_size=1, aligned=True)` on the grid
//!    placed on the image by the map's rectangle ([`roi_align_weights`]:
//!    bilinear samples at the centres of a `gh × gw` sub-grid of the box,
//!    `gh = ceil(box height in cells)` unless a sampling ratio is given,
//!    averaged; samples more than one cell outside the grid count as 0);
//!    [`Pooling::Area`] is the exact area-weighted mean of the
//!    piecewise-constant cells under the box (parts of the box outside the
//!    grid rectangle are left out; a box that misses the rectangle is an
//!    error). For a box whose edges lie on cell edges the two are equal:
//!    the adaptive samples fall on the cell centres;
//! 3. the pooled vector `v` is normalised: [`Normalize::Softmax`] (default,
//!    ReLabel: `softmax(v)` over all `C` classes, unlisted classes at 0),
//!    [`Normalize::Sum`] (`v / Σ v`, for maps of probabilities) or
//!    [`Normalize::None`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use labelscope_core::atomic::write_atomic_with;
use labelscope_core::npy::{header_bytes, read_npy};
use labelscope_nn::head::RegionHead;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cache::FeatureCache;
use crate::error::{Error, Result};
use crate::pipeline::ImageGeometry;
use crate::pool::{roi_align_weights, GridGeometry};
use crate::query::{check_head, geometry_for};

/// The `format` value of [`MapIndex`].
pub const MAP_FORMAT: &str = "labelscope-labelmap/1";
/// The index file of a label-map folder.
pub const INDEX_FILE: &str = "labelmaps.json";

/// What the stored scores are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// The head's logits (ReLabel).
    #[default]
    Logits,
    /// Softmax probabilities over all classes.
    Probs,
}

/// Options of [`compute_map`] / [`export_label_maps`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapOptions {
    /// Entries kept per cell.
    pub k: usize,
    /// Half-size `r` of the averaging window (0 = the patch token alone).
    pub window: usize,
    /// Logits or probabilities.
    pub scores: ScoreKind,
    /// Images per head call in [`export_label_maps`].
    pub chunk: usize,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions { k: 5, window: 0, scores: ScoreKind::Logits, chunk: 64 }
    }
}

/// How a box is pooled over the map (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// torchvision RoI-align (`aligned=True`); `None` = adaptive sampling.
    RoiAlign(Option<usize>),
    /// Exact area-weighted mean of the covered cells.
    Area,
}

impl Default for Pooling {
    fn default() -> Self {
        Pooling::RoiAlign(None)
    }
}

/// How the pooled vector is normalised (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Normalize {
    /// Softmax over all classes (ReLabel).
    #[default]
    Softmax,
    /// Divide by the sum.
    Sum,
    /// The pooled scores as they are.
    None,
}

/// Options of [`SoftLabelMap::soft_target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoftTargetOptions {
    /// Pooling.
    pub pooling: Pooling,
    /// Normalisation.
    pub normalize: Normalize,
}

/// The top-`k` class scores of every cell of one image's grid.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftLabelMap {
    /// Number of classes `C`.
    pub classes: usize,
    /// Entries per cell.
    pub k: usize,
    /// Grid rows.
    pub h: usize,
    /// Grid columns.
    pub w: usize,
    /// Where the grid lies on the original image.
    pub geometry: GridGeometry,
    /// `[k, h, w]` scores, C order (entry `r` of cell `(i, j)` at `(r * h + i) * w + j`).
    pub scores: Vec<f32>,
    /// `[k, h, w]` class indices, same order.
    pub indices: Vec<u32>,
}

/// `(value, index)` of the `k` largest entries, largest first, ties by lower index.
fn top_k(row: &[f64], k: usize) -> Vec<(f64, u32)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    idx.sort_by(|a, b| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b)));
    idx.truncate(k);
    idx.into_iter().map(|i| (row[i as usize], i)).collect()
}

impl SoftLabelMap {
    /// A map from the dense `[h * w, C]` cell scores (row-major over the
    /// grid), keeping the top `k` of each cell as `kind` (`dense` holds logits).
    pub fn from_logits(
        dense: &[f32],
        (h, w): (usize, usize),
        classes: usize,
        k: usize,
        kind: ScoreKind,
        geometry: GridGeometry,
    ) -> Result<SoftLabelMap> {
        if h == 0 || w == 0 || classes == 0 || k == 0 || k > classes {
            return Err(Error::Invalid(format!(
                "label map {h}x{w} with {classes} classes and k = {k}: sizes must be positive and k <= classes"
            )));
        }
        if dense.len() != h * w * classes {
            return Err(Error::Mismatch(format!("{} scores for a {h}x{w} grid of {classes} classes", dense.len())));
        }
        let plane = h * w;
        let mut scores = vec![0.0f32; k * plane];
        let mut indices = vec![0u32; k * plane];
        for cell in 0..plane {
            let row = &dense[cell * classes..(cell + 1) * classes];
            if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                return Err(Error::Invalid(format!("cell ({}, {}): score {v} is not finite", cell / w, cell % w)));
            }
            let mut r64: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            if kind == ScoreKind::Probs {
                let m = r64.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = r64.iter().map(|v| (v - m).exp()).sum();
                r64.iter_mut().for_each(|v| *v = (*v - m).exp() / s);
            }
            for (r, (v, c)) in top_k(&r64, k).into_iter().enumerate() {
                scores[r * plane + cell] = v as f32;
                indices[r * plane + cell] = c;
            }
        }
        Ok(SoftLabelMap { classes, k, h, w, geometry, scores, indices })
    }

    /// The `<f4` `[2, k, h, w]` array in C order (see the module docs).
    pub fn to_array(&self) -> Vec<f32> {
        let mut v = self.scores.clone();
        v.extend(self.indices.iter().map(|&c| c as f32));
        v
    }

    /// Writes `[2, k, h, w]` `.npy` atomically.
    pub fn write_npy(&self, path: &Path) -> Result<()> {
        let data = self.to_array();
        write_atomic_with(path, |wr| {
            wr.write_all(&header_bytes("<f4", &[2, self.k, self.h, self.w]))?;
            let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            wr.write_all(&bytes)
        })?;
        Ok(())
    }

    /// Reads a `[2, k, h, w]` `.npy` map of `classes` classes placed by `geometry`;
    /// `grid` = the `(h, w)` it must have, when known.
    pub fn read_npy(
        path: &Path,
        classes: usize,
        geometry: GridGeometry,
        grid: Option<(usize, usize)>,
    ) -> Result<SoftLabelMap> {
        let bad = |m: String| Error::Format { path: path.to_path_buf(), location: "array".into(), message: m };
        let a = read_npy(path)?;
        let &[two, k, h, w] = a.shape() else {
            return Err(bad(format!("shape {:?}; expected [2, k, h, w]", a.shape())));
        };
        if two != 2 || k == 0 || h == 0 || w == 0 || k > classes {
            return Err(bad(format!("shape {:?}; expected [2, k, h, w] with 0 < k <= {classes}", a.shape())));
        }
        if let Some(g) = grid {
            if g != (h, w) {
                return Err(bad(format!("a {h}x{w} grid; the index says {}x{}", g.0, g.1)));
            }
        }
        let data = a.to_f32_vec(path, "label map")?;
        let n = k * h * w;
        let scores = data[..n].to_vec();
        if let Some(p) = scores.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("score [0, {}, {}, {}] is {}", p / (h * w), p / w % h, p % w, scores[p])));
        }
        let mut indices = Vec::with_capacity(n);
        for (p, &c) in data[n..].iter().enumerate() {
            if !(c.is_finite() && c >= 0.0 && c.fract() == 0.0 && (c as usize) < classes) {
                return Err(bad(format!(
                    "class index [1, {}, {}, {}] is {c}; expected an integer in [0, {classes})",
                    p / (h * w),
                    p / w % h,
                    p % w
                )));
            }
            indices.push(c as u32);
        }
        Ok(SoftLabelMap { classes, k, h, w, geometry, scores, indices })
    }

    /// The cell weights of `bbox` under `pooling` (length `h * w`).
    pub fn box_weights(&self, bbox: [f64; 4], pooling: Pooling) -> Result<Vec<f64>> {
        match pooling {
            Pooling::RoiAlign(s) => roi_align_weights(self.h, self.w, &self.geometry, bbox, s),
            Pooling::Area => area_weights(self.h, self.w, &self.geometry, bbox),
        }
    }

    /// The pooled, unnormalised `C`-vector of cell weights `weights`.
    pub fn pool(&self, weights: &[f64]) -> Result<Vec<f64>> {
        let plane = self.h * self.w;
        if weights.len() != plane {
            return Err(Error::Mismatch(format!("{} cell weights for a {}x{} map", weights.len(), self.h, self.w)));
        }
        let mut v = vec![0.0f64; self.classes];
        for (cell, &wt) in weights.iter().enumerate() {
            if wt == 0.0 {
                continue;
            }
            for r in 0..self.k {
                let e = r * plane + cell;
                v[self.indices[e] as usize] += wt * f64::from(self.scores[e]);
            }
        }
        Ok(v)
    }

    /// The soft target (a `C`-vector) of the crop `bbox = [x0, y0, x1, y1]`
    /// in original-image pixels (see the module docs).
    pub fn soft_target(&self, bbox: [f64; 4], opts: &SoftTargetOptions) -> Result<Vec<f32>> {
        let wts = self.box_weights(bbox, opts.pooling)?;
        let v = self.pool(&wts)?;
        Ok(normalize(&v, opts.normalize)?.into_iter().map(|x| x as f32).collect())
    }
}

/// Applies `how` to a pooled vector.
pub fn normalize(v: &[f64], how: Normalize) -> Result<Vec<f64>> {
    Ok(match how {
        Normalize::None => v.to_vec(),
        Normalize::Softmax => {
            let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = v.iter().map(|x| (x - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|x| x / s).collect()
        }
        Normalize::Sum => {
            let s: f64 = v.iter().sum();
            if s.is_nan() || s <= 0.0 || v.iter().any(|x| *x < 0.0) {
                return Err(Error::Invalid(format!(
                    "sum normalisation of pooled scores summing to {s} (or with negative entries): \
                     use it with maps of probabilities (--scores probs), or softmax"
                )));
            }
            v.iter().map(|x| x / s).collect()
        }
    })
}

/// Exact area weights of `bbox` over the `h × w` cells placed by `geom`:
/// overlap area of the box with each cell over the area of the box inside
/// the grid rectangle (they sum to 1).
pub fn area_weights(h: usize, w: usize, geom: &GridGeometry, bbox: [f64; 4]) -> Result<Vec<f64>> {
    geom.validate()?;
    if bbox.iter().any(|v| !v.is_finite()) || bbox[2] <= bbox[0] || bbox[3] <= bbox[1] {
        return Err(Error::Invalid(format!("box {bbox:?}: expected finite [x0, y0, x1, y1] with x0 < x1 and y0 < y1")));
    }
    let cw = (geom.x1 - geom.x0) / w as f64;
    let ch = (geom.y1 - geom.y0) / h as f64;
    let overlap = |a: f64, b: f64, o: f64, s: f64, n: usize| -> Vec<f64> {
        (0..n).map(|c| (b.min(o + (c + 1) as f64 * s) - a.max(o + c as f64 * s)).max(0.0)).collect()
    };
    let oy = overlap(bbox[1], bbox[3], geom.y0, ch, h);
    let ox = overlap(bbox[0], bbox[2], geom.x0, cw, w);
    let total = oy.iter().sum::<f64>() * ox.iter().sum::<f64>();
    if total <= 0.0 {
        return Err(Error::Invalid(format!(
            "box {bbox:?} does not overlap the grid rectangle x {}..{}, y {}..{}",
            geom.x0, geom.x1, geom.y0, geom.y1
        )));
    }
    Ok(oy.iter().flat_map(|&y| ox.iter().map(move |&x| y * x / total)).collect())
}

/// The head inputs of one image: `[h * w, dim]` window means (see the module docs).
pub fn window_features(patches: &[f32], h: usize, w: usize, dim: usize, r: usize) -> Vec<f32> {
    if r == 0 {
        return patches.to_vec();
    }
    let mut out = vec![0.0f32; h * w * dim];
    let mut acc = vec![0.0f64; dim];
    for i in 0..h {
        for j in 0..w {
            acc.iter_mut().for_each(|a| *a = 0.0);
            let (i0, i1) = (i.saturating_sub(r), (i + r).min(h - 1));
            let (j0, j1) = (j.saturating_sub(r), (j + r).min(w - 1));
            for y in i0..=i1 {
                for x in j0..=j1 {
                    let f = &patches[(y * w + x) * dim..(y * w + x + 1) * dim];
                    acc.iter_mut().zip(f).for_each(|(a, &v)| *a += f64::from(v));
                }
            }
            let n = ((i1 - i0 + 1) * (j1 - j0 + 1)) as f64;
            let o = &mut out[(i * w + j) * dim..(i * w + j + 1) * dim];
            o.iter_mut().zip(&acc).for_each(|(o, a)| *o = (a / n) as f32);
        }
    }
    out
}

/// The label map of one image from its `[h * w, dim]` patch features.
pub fn compute_map(
    head: &RegionHead,
    patches: &[f32],
    (h, w): (usize, usize),
    geometry: GridGeometry,
    opts: &MapOptions,
) -> Result<SoftLabelMap> {
    let dim = head.config().in_dim;
    if patches.len() != h * w * dim {
        return Err(Error::Mismatch(format!("{} patch values for a {h}x{w} grid of dimension {dim}", patches.len())));
    }
    let x = window_features(patches, h, w, dim, opts.window);
    let logits = head.forward(&Tensor::from_vec(x, (h * w, dim), head.device())?)?;
    let dense: Vec<f32> = logits.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
    SoftLabelMap::from_logits(&dense, (h, w), head.config().classes, opts.k, opts.scores, geometry)
}

/// One image of [`MapIndex`]: the image and its grid rectangle (the fields
/// of a line of the cache's `images.jsonl`, at the top level of the JSON
/// object) and the grid size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapImage {
    /// Image id (the map is `{id}.npy`), file name (the id when unknown),
    /// original size and grid rectangle.
    #[serde(flatten)]
    pub image: ImageGeometry,
    /// Grid rows.
    pub h: usize,
    /// Grid columns.
    pub w: usize,
}

impl MapImage {
    /// The grid geometry.
    pub fn geometry(&self) -> GridGeometry {
        self.image.grid_geometry()
    }
}

/// `labelmaps.json` (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapIndex {
    /// [`MAP_FORMAT`].
    pub format: String,
    /// Number of classes.
    pub classes: usize,
    /// Entries per cell.
    pub k: usize,
    /// What the scores are.
    pub scores: ScoreKind,
    /// Averaging window half-size.
    pub window: usize,
    /// The feature cache the maps come from.
    pub cache: String,
    /// The head.
    pub head: String,
    /// Images, in id order.
    pub images: Vec<MapImage>,
}

/// An opened label-map folder.
#[derive(Debug, Clone)]
pub struct MapSet {
    dir: PathBuf,
    index: MapIndex,
    by_id: BTreeMap<String, usize>,
}

impl MapSet {
    /// Reads `labelmaps.json` of `dir`.
    pub fn open(dir: &Path) -> Result<MapSet> {
        let path = dir.join(INDEX_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
        let index: MapIndex = serde_json::from_str(&text).map_err(|e| Error::Format {
            path: path.clone(),
            location: format!("line {}, column {}", e.line(), e.column()),
            message: format!("not a label-map index: {e}"),
        })?;
        if index.format != MAP_FORMAT {
            return Err(Error::Format {
                path,
                location: "key \"format\"".into(),
                message: format!("{:?}; expected {MAP_FORMAT:?}", index.format),
            });
        }
        let by_id = index.images.iter().enumerate().map(|(i, m)| (m.image.id.clone(), i)).collect();
        Ok(MapSet { dir: dir.to_path_buf(), index, by_id })
    }

    /// The index.
    pub fn index(&self) -> &MapIndex {
        &self.index
    }

    /// Reads the map of image `id`.
    pub fn get(&self, id: &str) -> Result<SoftLabelMap> {
        let &i = self.by_id.get(id).ok_or_else(|| {
            Error::Mismatch(format!("image {id:?} is not in the label maps {}", self.dir.join(INDEX_FILE).display()))
        })?;
        let m = &self.index.images[i];
        let map = SoftLabelMap::read_npy(
            &self.dir.join(format!("{id}.npy")),
            self.index.classes,
            m.geometry(),
            Some((m.h, m.w)),
        )?;
        Ok(map)
    }
}

/// What [`export_label_maps`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSummary {
    /// Maps written.
    pub images: usize,
    /// Classes.
    pub classes: usize,
    /// Images placed by the cache's `images.jsonl` (the others by the recipe).
    pub with_geometry: usize,
}

/// Writes the label maps of every cached image into `out_dir` (see the
/// module docs); `progress(done, total)` after each chunk of images.
pub fn export_label_maps(
    cache_dir: &Path,
    head_path: &Path,
    out_dir: &Path,
    opts: &MapOptions,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<MapSummary> {
    if opts.chunk == 0 {
        return Err(Error::Invalid("chunk of 0 images: expected at least 1".into()));
    }
    let cache = FeatureCache::open(cache_dir)?;
    let head = RegionHead::load(head_path, device)?;
    check_head(&cache, &head)?;
    let classes = head.config().classes;
    if opts.k == 0 || opts.k > classes {
        return Err(Error::Invalid(format!("k = {}: expected 1 <= k <= {classes} (the head's classes)", opts.k)));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Io { path: out_dir.to_path_buf(), source: e })?;
    // images.jsonl (when the cache has one): the grid geometry and file name of each image.
    let log_path = cache.dir().join(crate::pipeline::IMAGES_JSONL);
    let geo = if log_path.exists() { Some(crate::pipeline::read_geometry_log(&log_path)?) } else { None };
    let mut ids: Vec<String> = cache.ids().map(str::to_string).collect();
    ids.sort_unstable();
    let recipe = cache.meta().recipe.clone();
    let mut images = Vec::with_capacity(ids.len());
    let mut with_geometry = 0;
    progress(0, ids.len());
    for (c, chunk) in ids.chunks(opts.chunk).enumerate() {
        let done: Vec<Result<(MapImage, bool)>> = chunk
            .par_iter()
            .map(|id| {
                let f = cache.get(id)?;
                let (image, known) = match geo.as_ref().and_then(|m| m.get(id)) {
                    Some(g) => (g.clone(), true),
                    None => {
                        let g = geometry_for(&recipe, None, (f.h, f.w))?;
                        let image = ImageGeometry {
                            id: id.clone(),
                            file: id.clone(),
                            width: g.image_w,
                            height: g.image_h,
                            x0: g.x0,
                            y0: g.y0,
                            x1: g.x1,
                            y1: g.y1,
                        };
                        (image, false)
                    }
                };
                let geom = image.grid_geometry();
                let map = compute_map(&head, &f.patches_f32(), (f.h, f.w), geom, opts)?;
                map.write_npy(&out_dir.join(format!("{id}.npy")))?;
                let m = MapImage { image, h: f.h, w: f.w };
                Ok((m, known))
            })
            .collect();
        for d in done {
            let (m, known) = d?;
            with_geometry += usize::from(known);
            images.push(m);
        }
        progress((c * opts.chunk + chunk.len()).min(ids.len()), ids.len());
    }
    let index = MapIndex {
        format: MAP_FORMAT.into(),
        classes,
        k: opts.k,
        scores: opts.scores,
        window: opts.window,
        cache: cache_dir.display().to_string(),
        head: head_path.display().to_string(),
        images,
    };
    let path = out_dir.join(INDEX_FILE);
    let text = serde_json::to_string_pretty(&index)
        .map_err(|e| Error::Invalid(format!("{}: cannot serialise: {e}", path.display())))?;
    labelscope_core::atomic::write_atomic(&path, text.as_bytes())?;
    Ok(MapSummary { images: index.images.len(), classes, with_geometry })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×4 map of 6 classes, k = 2, with distinct values per cell.
    fn sample() -> SoftLabelMap {
        let (h, w, c) = (3, 4, 6);
        let dense: Vec<f32> =
            (0..h * w * c).map(|i| (((i * 37) % 23) as f32 - 11.0) * 0.25 + (i / c) as f32 * 0.01).collect();
        SoftLabelMap::from_logits(&dense, (h, w), c, 2, ScoreKind::Logits, GridGeometry::whole(40, 30)).unwrap()
    }

    /// The dense `[C, h, w]` map: stored entries, 0 elsewhere.
    fn dense_of(m: &SoftLabelMap) -> Vec<f64> {
        let plane = m.h * m.w;
        let mut d = vec![0.0; m.classes * plane];
        for r in 0..m.k {
            for cell in 0..plane {
                d[m.indices[r * plane + cell] as usize * plane + cell] = f64::from(m.scores[r * plane + cell]);
            }
        }
        d
    }

    /// Brute force: the mean of the piecewise-constant map over an `n × n`
    /// midpoint grid of the box (each sample takes the value of the cell it lies in).
    fn brute_area(m: &SoftLabelMap, b: [f64; 4], n: usize) -> Vec<f64> {
        let g = m.geometry;
        let (cw, ch) = ((g.x1 - g.x0) / m.w as f64, (g.y1 - g.y0) / m.h as f64);
        let d = dense_of(m);
        let mut acc = vec![0.0; m.classes];
        for sy in 0..n {
            let y = b[1] + (sy as f64 + 0.5) * (b[3] - b[1]) / n as f64;
            let i = ((y - g.y0) / ch).floor() as usize;
            for sx in 0..n {
                let x = b[0] + (sx as f64 + 0.5) * (b[2] - b[0]) / n as f64;
                let j = ((x - g.x0) / cw).floor() as usize;
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += d[c * m.h * m.w + i * m.w + j];
                }
            }
        }
        acc.iter().map(|a| a / (n * n) as f64).collect()
    }

    /// Brute force of RoI-align's limit: the mean over an `n × n` midpoint
    /// grid of the box of the bilinear interpolant through the cell centres
    /// (clamped at the border), written independently of the library.
    fn brute_bilinear(m: &SoftLabelMap, b: [f64; 4], n: usize) -> Vec<f64> {
        let g = m.geometry;
        let d = dense_of(m);
        let plane = m.h * m.w;
        let mut acc = vec![0.0; m.classes];
        let interp = |u: f64, len: usize| -> (usize, usize, f64) {
            let u = u.clamp(0.0, (len - 1) as f64);
            let lo = (u.floor() as usize).min(len - 1);
            let hi = (lo + 1).min(len - 1);
            (lo, hi, u - lo as f64)
        };
        for sy in 0..n {
            let y = b[1] + (sy as f64 + 0.5) * (b[3] - b[1]) / n as f64;
            let (i0, i1, fy) = interp((y - g.y0) / (g.y1 - g.y0) * m.h as f64 - 0.5, m.h);
            for sx in 0..n {
                let x = b[0] + (sx as f64 + 0.5) * (b[2] - b[0]) / n as f64;
                let (j0, j1, fx) = interp((x - g.x0) / (g.x1 - g.x0) * m.w as f64 - 0.5, m.w);
                for (c, a) in acc.iter_mut().enumerate() {
                    let v = |i: usize, j: usize| d[c * plane + i * m.w + j];
                    *a += (1.0 - fy) * ((1.0 - fx) * v(i0, j0) + fx * v(i0, j1))
                        + fy * ((1.0 - fx) * v(i1, j0) + fx * v(i1, j1));
                }
            }
        }
        acc.iter().map(|a| a / (n * n) as f64).collect()
    }

    fn softmax(v: &[f64]) -> Vec<f64> {
        let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = v.iter().map(|x| (x - m).exp()).sum();
        v.iter().map(|x| (x - m).exp() / s).collect()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (c, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol, "class {c}: {x} vs {y} (tol {tol})\n{a:?}\n{b:?}");
        }
    }

    #[test]
    fn topk_by_hand() {
        // one cell, logits (1, 3, 2): top-2 = (3, class 1), (2, class 2)
        let m = SoftLabelMap::from_logits(&[1.0, 3.0, 2.0], (1, 1), 3, 2, ScoreKind::Logits, GridGeometry::whole(1, 1))
            .unwrap();
        assert_eq!((m.scores.clone(), m.indices.clone()), (vec![3.0, 2.0], vec![1, 2]));
        let p = SoftLabelMap::from_logits(&[1.0, 3.0, 2.0], (1, 1), 3, 1, ScoreKind::Probs, GridGeometry::whole(1, 1))
            .unwrap();
        let e = [1f64.exp(), 3f64.exp(), 2f64.exp()];
        assert!((f64::from(p.scores[0]) - e[1] / e.iter().sum::<f64>()).abs() < 1e-6);
    }

    #[test]
    fn cell_aligned_boxes_are_area_means() {
        // Boxes on cell edges (cells are 10 × 10 px): RoI-align (adaptive)
        // = the plain mean of the covered cells, computed here directly.
        let m = sample();
        let d = dense_of(&m);
        for (i0, i1, j0, j1) in [(0, 1, 0, 1), (0, 3, 0, 4), (1, 3, 1, 3), (0, 2, 2, 4), (2, 3, 0, 4)] {
            let b = [j0 as f64 * 10.0, i0 as f64 * 10.0, j1 as f64 * 10.0, i1 as f64 * 10.0];
            let mut want = vec![0.0; m.classes];
            for i in i0..i1 {
                for j in j0..j1 {
                    for (c, wv) in want.iter_mut().enumerate() {
                        *wv += d[c * 12 + i * 4 + j] / ((i1 - i0) * (j1 - j0)) as f64;
                    }
                }
            }
            let roi = m.pool(&m.box_weights(b, Pooling::RoiAlign(None)).unwrap()).unwrap();
            close(&roi, &want, 1e-12);
            let area = m.pool(&m.box_weights(b, Pooling::Area).unwrap()).unwrap();
            close(&area, &want, 1e-12);
            let t = m.soft_target(b, &SoftTargetOptions::default()).unwrap();
            let t: Vec<f64> = t.iter().map(|&x| f64::from(x)).collect();
            close(&t, &softmax(&want), 1e-6);
        }
    }

    #[test]
    fn fractional_boxes_against_fine_sampling() {
        let m = sample();
        for b in [[3.3, 2.1, 27.9, 18.4], [0.0, 0.0, 13.7, 29.2], [12.5, 7.25, 39.0, 30.0], [5.5, 5.5, 6.5, 6.1]] {
            // Area pooling vs a 2000×2000 midpoint count of the covered cells.
            let area = m.pool(&m.box_weights(b, Pooling::Area).unwrap()).unwrap();
            close(&area, &brute_area(&m, b, 2000), 5e-3);
            // RoI-align with a fine sampling ratio vs the bilinear interpolant's
            // mean over a 1000×1000 grid (both converge to the same integral).
            let roi = m.pool(&m.box_weights(b, Pooling::RoiAlign(Some(400))).unwrap()).unwrap();
            close(&roi, &brute_bilinear(&m, b, 1000), 2e-3);
        }
    }

    #[test]
    fn sum_normalisation() {
        let m = SoftLabelMap::from_logits(
            &[0.0, 2.0, 1.0, 1.0, 0.0, 3.0],
            (1, 2),
            3,
            2,
            ScoreKind::Probs,
            GridGeometry::whole(2, 1),
        )
        .unwrap();
        let o = SoftTargetOptions { pooling: Pooling::Area, normalize: Normalize::Sum };
        let t = m.soft_target([0.0, 0.0, 1.0, 1.0], &o).unwrap();
        // cell 0 probs of (0, 2, 1): top-2 = classes 1, 2 -> renormalised e²/(e²+e), e/(e²+e)
        let e = std::f64::consts::E;
        assert!((f64::from(t[1]) - e * e / (e * e + e)).abs() < 1e-6 && t[0] == 0.0, "{t:?}");
        // logits with negative entries cannot be sum-normalised
        let neg = SoftLabelMap::from_logits(&[-1.0, -2.0], (1, 1), 2, 2, ScoreKind::Logits, GridGeometry::whole(1, 1))
            .unwrap();
        assert!(neg.soft_target([0.0, 0.0, 1.0, 1.0], &o).is_err());
    }

    #[test]
    fn weights_match_pool_roi_align() {
        // roi_align_weights applied to a feature grid = pool::roi_align on it.
        let m = sample();
        let feats: Vec<f32> = (0..12 * 5).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
        let grid = crate::pool::Grid::new(3, 4, 5, &feats).unwrap();
        for b in [[3.3, 2.1, 27.9, 18.4], [0.0, 0.0, 40.0, 30.0], [-5.0, -5.0, 12.0, 9.0]] {
            let direct = crate::pool::roi_align(&grid, &m.geometry, b, None).unwrap();
            let w = m.box_weights(b, Pooling::RoiAlign(None)).unwrap();
            for c in 0..5 {
                let v: f64 = (0..12).map(|cell| w[cell] * f64::from(feats[cell * 5 + c])).sum();
                assert!((v - f64::from(direct[c])).abs() < 1e-5, "{b:?} {c}: {v} vs {}", direct[c]);
            }
        }
    }

    #[test]
    fn npy_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        let p = dir.path().join("a.npy");
        m.write_npy(&p).unwrap();
        let back = SoftLabelMap::read_npy(&p, 6, m.geometry, Some((3, 4))).unwrap();
        assert_eq!(back, m);
        // the raw file: header + [2, 2, 3, 4] little-endian f32, scores then indices
        let bytes = std::fs::read(&p).unwrap();
        let a = read_npy(&p).unwrap();
        assert_eq!(a.shape(), &[2, 2, 3, 4]);
        let tail = &bytes[bytes.len() - 4 * 48..];
        let first = f32::from_le_bytes(tail[..4].try_into().unwrap());
        assert_eq!(first, m.scores[0]);
        let idx0 = f32::from_le_bytes(tail[4 * 24..4 * 25].try_into().unwrap());
        assert_eq!(idx0, m.indices[0] as f32);
        assert!(SoftLabelMap::read_npy(&p, 6, m.geometry, Some((4, 3))).is_err());
        assert!(SoftLabelMap::read_npy(&p, 3, m.geometry, None).is_err());
    }
}
