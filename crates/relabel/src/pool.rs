//! Region pooling on a patch feature grid.
//!
//! # Geometry
//! A backbone turns an image into an `h × w` grid of patch features
//! ([`Grid`], row-major `[h * w, dim]`). The grid covers a rectangle of the
//! *original* image, given by [`GridGeometry`] in continuous pixel
//! coordinates `[x0, x1) × [y0, y1)`: the whole image for recipes that resize
//! to a fixed size, the crop window (mapped back to original pixels) for
//! resize + crop recipes. Cell `(i, j)` (row `i`, column `j`) covers the
//! sub-rectangle `[x0 + j·cw, x0 + (j+1)·cw) × [y0 + i·ch, y0 + (i+1)·ch)`
//! with `cw = (x1 − x0) / w`, `ch = (y1 − y0) / h`.
//!
//! # Mask projection
//! A mask ([`Mask`]) is binary, at the original image resolution
//! (`image_h × image_w`, row-major). Pixel `(x, y)` is the unit square
//! `[x, x+1) × [y, y+1)`. The *fraction* of cell `(i, j)` is the area of the
//! cell covered by mask pixels divided by the cell's area, computed exactly
//! (pixels partially inside a cell count with their overlap area). Parts of a
//! cell outside the image count as uncovered. The weight of a cell then
//! follows the [`Projection`]:
//! - [`Projection::Fraction`] (default): the weight is the fraction, so
//!   pooling is the area-weighted mean of the cells;
//! - [`Projection::Threshold`]`(t)` with `0 < t ≤ 1`: cells whose fraction is
//!   `≥ t` get weight 1, the others 0; when no cell reaches `t`, the cell(s)
//!   with the largest fraction (all ties) get weight 1. Both comparisons
//!   allow [`FRACTION_TOLERANCE`] for rounding (a fully covered cell may come
//!   out as `1 − 1e-16`).
//!
//! A projection whose weights are all zero (an empty mask, or a mask entirely
//! outside the grid rectangle) is an [`Error::Invalid`] naming the mask.
//!
//! # Masked average
//! `pooled = Σ_i w_i f_i / Σ_i w_i`, accumulated in `f64`, returned as `f32`.
//!
//! # Patch dropout (training)
//! [`patch_dropout`] drops `floor(p · n)` of the `n` foreground cells
//! (weight > 0), at most `n − 1` (so at least one cell is always kept), chosen
//! uniformly with a partial Fisher–Yates shuffle driven by
//! [`Xoshiro256::from_seed`]`(seed)` over the foreground cells in row-major
//! order. Dropped cells get weight 0. In the batch helper [`pool_masks`],
//! mask `k` uses the seed `mix64(seed ^ mix64(k))`, so results do not depend
//! on threading.
//!
//! # ROI-align
//! [`roi_align`] pools a box with the semantics of
//! `torchvision.ops.roi_align(output_size=(1, 1), aligned=True)`: the box is
//! mapped to grid coordinates (`gx = (x − x0) · w / (x1 − x0)`, likewise for
//! `y`; for a whole-image geometry this is torchvision's `spatial_scale`),
//! shifted by −0.5, and the single output bin is the mean of
//! `gh × gw` bilinear samples at the centres of a regular sub-grid of the box,
//! where `gh = ceil(box height in cells)` (adaptive, torchvision's
//! `sampling_ratio = -1`) or a fixed `sampling_ratio`. A sample is 0 when it
//! lies more than one cell outside the grid (`y < −1`, `y > h`, ...); otherwise
//! its coordinates are clamped to `[0, h − 1]` / `[0, w − 1]` before bilinear
//! interpolation of the four neighbouring cell centres. Boxes with zero or
//! negative width or height are an error (torchvision returns zeros there).

use labelscope_core::rle::Rle;
use labelscope_core::rng::{mix64, Xoshiro256};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// A patch feature grid: `features` holds `h * w` rows of `dim` values, row-major
/// (cell `(i, j)` starts at `(i * w + j) * dim`).
#[derive(Debug, Clone, Copy)]
pub struct Grid<'a> {
    /// Rows of cells.
    pub h: usize,
    /// Columns of cells.
    pub w: usize,
    /// Feature dimension.
    pub dim: usize,
    /// `[h * w, dim]` features.
    pub features: &'a [f32],
}

impl<'a> Grid<'a> {
    /// A grid, checking that `features.len() == h * w * dim` and that no size is 0.
    pub fn new(h: usize, w: usize, dim: usize, features: &'a [f32]) -> Result<Grid<'a>> {
        if h == 0 || w == 0 || dim == 0 {
            return Err(Error::Invalid(format!("feature grid {h}x{w}x{dim}: every size must be positive")));
        }
        let n = h.checked_mul(w).and_then(|c| c.checked_mul(dim));
        if n != Some(features.len()) {
            return Err(Error::Mismatch(format!(
                "feature grid {h}x{w} with dim {dim} needs {h}*{w}*{dim} values; got {}",
                features.len()
            )));
        }
        Ok(Grid { h, w, dim, features })
    }

    /// The feature vector of cell `(i, j)`.
    pub fn cell(&self, i: usize, j: usize) -> &'a [f32] {
        let s = (i * self.w + j) * self.dim;
        &self.features[s..s + self.dim]
    }
}

/// The rectangle of the original image that a grid covers (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridGeometry {
    /// Original image width in pixels.
    pub image_w: usize,
    /// Original image height in pixels.
    pub image_h: usize,
    /// Left edge of the covered rectangle (pixels, continuous).
    pub x0: f64,
    /// Top edge.
    pub y0: f64,
    /// Right edge (exclusive).
    pub x1: f64,
    /// Bottom edge (exclusive).
    pub y1: f64,
}

impl GridGeometry {
    /// A grid covering the whole `image_w × image_h` image.
    pub fn whole(image_w: usize, image_h: usize) -> GridGeometry {
        GridGeometry { image_w, image_h, x0: 0.0, y0: 0.0, x1: image_w as f64, y1: image_h as f64 }
    }

    /// Checks that the image is non-empty and the rectangle finite with positive size.
    pub fn validate(&self) -> Result<()> {
        if self.image_w == 0 || self.image_h == 0 {
            return Err(Error::Invalid(format!(
                "image of {}x{} pixels: must be non-empty",
                self.image_w, self.image_h
            )));
        }
        let ok = [self.x0, self.y0, self.x1, self.y1].iter().all(|v| v.is_finite());
        if !ok || self.x1 <= self.x0 || self.y1 <= self.y0 {
            return Err(Error::Invalid(format!(
                "grid rectangle x {}..{}, y {}..{}: expected finite edges with x0 < x1 and y0 < y1",
                self.x0, self.x1, self.y0, self.y1
            )));
        }
        Ok(())
    }
}

/// Slack of the [`Projection::Threshold`] comparisons.
pub const FRACTION_TOLERANCE: f64 = 1e-9;

/// How mask fractions become cell weights (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Projection {
    /// Weight = covered fraction of the cell (weighted mean).
    #[default]
    Fraction,
    /// Weight 1 for cells covered at least this much (`0 < t ≤ 1`), with a
    /// fallback to the most covered cell(s).
    Threshold(f64),
}

/// A binary mask at the original image resolution, row-major (`mask[y * width + x]`).
#[derive(Debug, Clone, Copy)]
pub enum Mask<'a> {
    /// `true` = inside.
    Bool(&'a [bool]),
    /// Non-zero = inside.
    U8(&'a [u8]),
    /// A COCO RLE (its size must be the image size).
    Rle(&'a Rle),
}

impl Mask<'_> {
    /// The runs of set pixels of each row, `[start, end)` column ranges,
    /// after checking the mask has `width × height` pixels.
    pub fn row_runs(&self, width: usize, height: usize) -> Result<Vec<Vec<(usize, usize)>>> {
        let decoded;
        let bits: &[bool] = match *self {
            Mask::Bool(b) => b,
            Mask::U8(u) => {
                check_len(u.len(), width, height)?;
                return Ok(runs_of(width, height, |i| u[i] != 0));
            }
            Mask::Rle(r) => {
                if r.width != width || r.height != height {
                    return Err(Error::Mismatch(format!(
                        "RLE mask is {}x{} (w x h); the image is {width}x{height}",
                        r.width, r.height
                    )));
                }
                decoded = r.decode();
                &decoded
            }
        };
        check_len(bits.len(), width, height)?;
        Ok(runs_of(width, height, |i| bits[i]))
    }
}

fn check_len(len: usize, width: usize, height: usize) -> Result<()> {
    if Some(len) != width.checked_mul(height) {
        return Err(Error::Mismatch(format!(
            "mask has {len} pixels; the image is {width}x{height} = {} pixels",
            width.saturating_mul(height)
        )));
    }
    Ok(())
}

fn runs_of(width: usize, height: usize, set: impl Fn(usize) -> bool) -> Vec<Vec<(usize, usize)>> {
    (0..height)
        .map(|y| {
            let base = y * width;
            let mut runs = Vec::new();
            let mut x = 0;
            while x < width {
                if set(base + x) {
                    let s = x;
                    while x < width && set(base + x) {
                        x += 1;
                    }
                    runs.push((s, x));
                } else {
                    x += 1;
                }
            }
            runs
        })
        .collect()
}

/// Overlaps of the interval `[a, b)` with the `n` cells `[o + k·s, o + (k+1)·s)`:
/// `(k, length)` for every cell with a positive overlap.
fn interval_overlaps(a: f64, b: f64, o: f64, s: f64, n: usize, out: &mut Vec<(usize, f64)>) {
    out.clear();
    let first = ((a - o) / s).floor();
    let last = ((b - o) / s).ceil();
    let k0 = first.max(0.0) as usize;
    let k1 = (last.min(n as f64).max(0.0)) as usize;
    for k in k0..k1 {
        let e0 = o + k as f64 * s;
        let e1 = o + (k + 1) as f64 * s;
        let len = b.min(e1) - a.max(e0);
        if len > 0.0 {
            out.push((k, len));
        }
    }
}

/// The covered fraction of each of the `h × w` cells (row-major), in `[0, 1]`.
pub fn cell_fractions(mask: &Mask, geom: &GridGeometry, h: usize, w: usize) -> Result<Vec<f64>> {
    geom.validate()?;
    if h == 0 || w == 0 {
        return Err(Error::Invalid(format!("grid of {h}x{w} cells: must be non-empty")));
    }
    let runs = mask.row_runs(geom.image_w, geom.image_h)?;
    let cw = (geom.x1 - geom.x0) / w as f64;
    let ch = (geom.y1 - geom.y0) / h as f64;
    let mut area = vec![0.0f64; h * w];
    let mut row = vec![0.0f64; w];
    let mut ov = Vec::new();
    let mut oy = Vec::new();
    for (y, rr) in runs.iter().enumerate() {
        if rr.is_empty() {
            continue;
        }
        interval_overlaps(y as f64, y as f64 + 1.0, geom.y0, ch, h, &mut oy);
        if oy.is_empty() {
            continue;
        }
        row.iter_mut().for_each(|v| *v = 0.0);
        for &(a, b) in rr {
            interval_overlaps(a as f64, b as f64, geom.x0, cw, w, &mut ov);
            for &(j, len) in &ov {
                row[j] += len;
            }
        }
        for &(i, ly) in &oy {
            let dst = &mut area[i * w..(i + 1) * w];
            for (d, r) in dst.iter_mut().zip(&row) {
                *d += ly * r;
            }
        }
    }
    let cell = cw * ch;
    Ok(area.into_iter().map(|a| (a / cell).clamp(0.0, 1.0)).collect())
}

/// The cell weights of a mask under `projection` (see the module docs);
/// `what` names the mask in the error for an empty projection.
pub fn project_mask(
    mask: &Mask,
    geom: &GridGeometry,
    h: usize,
    w: usize,
    projection: Projection,
    what: &str,
) -> Result<Vec<f64>> {
    let frac = cell_fractions(mask, geom, h, w)?;
    let max = frac.iter().copied().fold(0.0f64, f64::max);
    if max <= 0.0 {
        return Err(Error::Invalid(format!(
            "{what}: the mask covers no cell of the {h}x{w} grid (empty, or entirely outside the grid rectangle \
             x {}..{}, y {}..{})",
            geom.x0, geom.x1, geom.y0, geom.y1
        )));
    }
    match projection {
        Projection::Fraction => Ok(frac),
        Projection::Threshold(t) => {
            if !(t > 0.0 && t <= 1.0) {
                return Err(Error::Invalid(format!("projection threshold {t}: expected 0 < t <= 1")));
            }
            let any = frac.iter().any(|&f| f >= t - FRACTION_TOLERANCE);
            let cut = if any { t } else { max } - FRACTION_TOLERANCE;
            Ok(frac.iter().map(|&f| if f > 0.0 && f >= cut { 1.0 } else { 0.0 }).collect())
        }
    }
}

/// Drops `floor(p · n)` of the `n` foreground cells (weight > 0), keeping at
/// least one, by setting their weight to 0; returns how many were dropped.
/// `0 ≤ p < 1`.
pub fn patch_dropout(weights: &mut [f64], p: f64, seed: u64) -> Result<usize> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::Invalid(format!("patch dropout rate {p}: expected 0 <= p < 1")));
    }
    let mut fg: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
    let n = fg.len();
    let drop = ((p * n as f64).floor() as usize).min(n.saturating_sub(1));
    let mut rng = Xoshiro256::from_seed(seed);
    for k in 0..drop {
        let r = k + rng.below((n - k) as u64) as usize;
        fg.swap(k, r);
        weights[fg[k]] = 0.0;
    }
    Ok(drop)
}

/// `Σ w_i f_i / Σ w_i` over the cells of `grid`.
pub fn masked_average(grid: &Grid, weights: &[f64]) -> Result<Vec<f32>> {
    if weights.len() != grid.h * grid.w {
        return Err(Error::Mismatch(format!(
            "{} cell weights for a {}x{} grid ({} cells)",
            weights.len(),
            grid.h,
            grid.w,
            grid.h * grid.w
        )));
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(Error::Invalid("cell weights must be finite and non-negative".into()));
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(Error::Invalid("cell weights sum to 0: nothing to pool".into()));
    }
    let mut acc = vec![0.0f64; grid.dim];
    for (c, &wt) in weights.iter().enumerate() {
        if wt == 0.0 {
            continue;
        }
        let f = &grid.features[c * grid.dim..(c + 1) * grid.dim];
        for (a, &v) in acc.iter_mut().zip(f) {
            *a += wt * f64::from(v);
        }
    }
    Ok(acc.into_iter().map(|a| (a / total) as f32).collect())
}

/// Patch dropout settings for [`PoolOptions`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// Fraction of foreground cells to drop, `0 ≤ p < 1`.
    pub p: f64,
    /// RNG seed.
    pub seed: u64,
}

/// Options of [`pool_mask`] / [`pool_masks`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoolOptions {
    /// Projection rule.
    pub projection: Projection,
    /// Optional patch dropout (training only).
    pub dropout: Option<Dropout>,
}

/// Projects `mask`, optionally applies dropout, and returns the masked average.
pub fn pool_mask(grid: &Grid, geom: &GridGeometry, mask: &Mask, opts: &PoolOptions) -> Result<Vec<f32>> {
    pool_one(grid, geom, mask, opts, "mask", opts.dropout.map(|d| d.seed))
}

fn pool_one(
    grid: &Grid,
    geom: &GridGeometry,
    mask: &Mask,
    opts: &PoolOptions,
    what: &str,
    seed: Option<u64>,
) -> Result<Vec<f32>> {
    let mut wts = project_mask(mask, geom, grid.h, grid.w, opts.projection, what)?;
    if let (Some(d), Some(seed)) = (opts.dropout, seed) {
        patch_dropout(&mut wts, d.p, seed)?;
    }
    masked_average(grid, &wts)
}

/// Pools many masks of one image (in parallel). Mask `k` is named `mask k` in
/// errors; with dropout it uses the seed `mix64(seed ^ mix64(k))`.
pub fn pool_masks(grid: &Grid, geom: &GridGeometry, masks: &[Mask], opts: &PoolOptions) -> Result<Vec<Vec<f32>>> {
    masks
        .par_iter()
        .enumerate()
        .map(|(k, m)| {
            let seed = opts.dropout.map(|d| mix64(d.seed ^ mix64(k as u64)));
            pool_one(grid, geom, m, opts, &format!("mask {k}"), seed)
        })
        .collect()
}

/// Where a RoI-align box samples an `h × w` grid: the box's top-left corner and size in cell
/// units (cell centres at integers), and the number of samples along each axis.
struct RoiSamples {
    rx0: f64,
    ry0: f64,
    rw: f64,
    rh: f64,
    gw: usize,
    gh: usize,
}

/// The checks and sample layout shared by [`roi_align`] and [`roi_align_weights`].
fn roi_samples(
    h: usize,
    w: usize,
    geom: &GridGeometry,
    bbox: [f64; 4],
    sampling_ratio: Option<usize>,
) -> Result<RoiSamples> {
    geom.validate()?;
    if h == 0 || w == 0 {
        return Err(Error::Invalid(format!("grid of {h}x{w} cells: must be non-empty")));
    }
    if bbox.iter().any(|v| !v.is_finite()) || bbox[2] <= bbox[0] || bbox[3] <= bbox[1] {
        return Err(Error::Invalid(format!("box {bbox:?}: expected finite [x0, y0, x1, y1] with x0 < x1 and y0 < y1")));
    }
    if sampling_ratio == Some(0) {
        return Err(Error::Invalid("sampling ratio 0: expected a positive count (or adaptive)".into()));
    }
    let sx = w as f64 / (geom.x1 - geom.x0);
    let sy = h as f64 / (geom.y1 - geom.y0);
    let (rw, rh) = ((bbox[2] - bbox[0]) * sx, (bbox[3] - bbox[1]) * sy);
    Ok(RoiSamples {
        rx0: (bbox[0] - geom.x0) * sx - 0.5,
        ry0: (bbox[1] - geom.y0) * sy - 0.5,
        rw,
        rh,
        gw: sampling_ratio.unwrap_or_else(|| rw.ceil() as usize).max(1),
        gh: sampling_ratio.unwrap_or_else(|| rh.ceil() as usize).max(1),
    })
}

/// ROI-align of the box `[x0, y0, x1, y1]` (original image pixels) to one
/// vector (see the module docs). `sampling_ratio`: `None` = adaptive.
pub fn roi_align(grid: &Grid, geom: &GridGeometry, bbox: [f64; 4], sampling_ratio: Option<usize>) -> Result<Vec<f32>> {
    let (h, w) = (grid.h, grid.w);
    let RoiSamples { rx0, ry0, rw, rh, gw, gh } = roi_samples(h, w, geom, bbox, sampling_ratio)?;
    let mut acc = vec![0.0f64; grid.dim];
    let mut add = |i: usize, j: usize, wt: f64| {
        if wt != 0.0 {
            for (a, &v) in acc.iter_mut().zip(grid.cell(i, j)) {
                *a += wt * f64::from(v);
            }
        }
    };
    for iy in 0..gh {
        let y = ry0 + (iy as f64 + 0.5) * rh / gh as f64;
        for ix in 0..gw {
            let x = rx0 + (ix as f64 + 0.5) * rw / gw as f64;
            if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
                continue;
            }
            let (yl, yh, ly) = bilinear_index(y.max(0.0), h);
            let (xl, xh, lx) = bilinear_index(x.max(0.0), w);
            add(yl, xl, (1.0 - ly) * (1.0 - lx));
            add(yl, xh, (1.0 - ly) * lx);
            add(yh, xl, ly * (1.0 - lx));
            add(yh, xh, ly * lx);
        }
    }
    let count = (gh * gw) as f64;
    Ok(acc.into_iter().map(|a| (a / count) as f32).collect())
}

/// The cell weights of [`roi_align`] on an `h × w` grid: `out[i * w + j]`
/// is the share of the box's bilinear samples that falls on cell `(i, j)`,
/// so `roi_align(grid, ...) = Σ out[c] · cell c` (the weights sum to the
/// share of samples inside the grid's one-cell border, 1 for boxes inside
/// the grid rectangle). Same rules and errors as [`roi_align`].
pub fn roi_align_weights(
    h: usize,
    w: usize,
    geom: &GridGeometry,
    bbox: [f64; 4],
    sampling_ratio: Option<usize>,
) -> Result<Vec<f64>> {
    let RoiSamples { rx0, ry0, rw, rh, gw, gh } = roi_samples(h, w, geom, bbox, sampling_ratio)?;
    // Separable: the sample weights are products of a row and a column part.
    let axis = |r0: f64, len: f64, g: usize, n: usize| -> Vec<f64> {
        let mut acc = vec![0.0f64; n];
        for s in 0..g {
            let v = r0 + (s as f64 + 0.5) * len / g as f64;
            if v < -1.0 || v > n as f64 {
                continue;
            }
            let (lo, hi, f) = bilinear_index(v.max(0.0), n);
            acc[lo] += 1.0 - f;
            acc[hi] += f;
        }
        acc.iter_mut().for_each(|a| *a /= g as f64);
        acc
    };
    let ay = axis(ry0, rh, gh, h);
    let ax = axis(rx0, rw, gw, w);
    Ok(ay.iter().flat_map(|&y| ax.iter().map(move |&x| y * x)).collect())
}

/// torchvision's index rule: `(low, high, frac)` for a clamped coordinate `v ≥ 0`.
fn bilinear_index(v: f64, n: usize) -> (usize, usize, f64) {
    let low = v.floor() as usize;
    if low >= n - 1 {
        (n - 1, n - 1, 0.0)
    } else {
        (low, low + 1, v - low as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_by_hand() {
        // 4x4 image, 2x2 grid (cells of 2x2 pixels). Mask: pixels (0,0),(1,0),(2,0) in row 0.
        let mut m = vec![false; 16];
        m[0] = true;
        m[1] = true;
        m[2] = true;
        let f = cell_fractions(&Mask::Bool(&m), &GridGeometry::whole(4, 4), 2, 2).unwrap();
        // cell (0,0): 2 px of 4 -> 0.5; cell (0,1): 1 of 4 -> 0.25
        assert_eq!(f, vec![0.5, 0.25, 0.0, 0.0]);
    }

    #[test]
    fn partial_pixels() {
        // 3x1 image (w=3, h=1), 2x1 grid: cells cover x in [0,1.5) and [1.5,3).
        // Mask pixel x=1 only: overlaps 0.5 with each cell of width 1.5 -> 1/3 each.
        let m = [0u8, 1, 0];
        let f = cell_fractions(&Mask::U8(&m), &GridGeometry::whole(3, 1), 1, 2).unwrap();
        assert!((f[0] - 1.0 / 3.0).abs() < 1e-12 && (f[1] - 1.0 / 3.0).abs() < 1e-12, "{f:?}");
    }

    #[test]
    fn threshold_and_fallback() {
        let mut m = vec![false; 16];
        m[0] = true;
        m[1] = true;
        m[2] = true;
        let g = GridGeometry::whole(4, 4);
        let w = project_mask(&Mask::Bool(&m), &g, 2, 2, Projection::Threshold(0.25), "m").unwrap();
        assert_eq!(w, vec![1.0, 1.0, 0.0, 0.0]);
        // nothing reaches 0.9: the most covered cell (0.5) is used
        let w = project_mask(&Mask::Bool(&m), &g, 2, 2, Projection::Threshold(0.9), "m").unwrap();
        assert_eq!(w, vec![1.0, 0.0, 0.0, 0.0]);
        assert!(project_mask(&Mask::Bool(&m), &g, 2, 2, Projection::Threshold(0.0), "m").is_err());
    }

    #[test]
    fn dropout_keeps_one_and_is_seeded() {
        let mut a = vec![1.0; 10];
        assert_eq!(patch_dropout(&mut a, 0.5, 7).unwrap(), 5);
        assert_eq!(a.iter().filter(|&&v| v > 0.0).count(), 5);
        let mut b = vec![1.0; 10];
        patch_dropout(&mut b, 0.5, 7).unwrap();
        assert_eq!(a, b);
        let mut one = vec![0.0, 0.3, 0.0];
        assert_eq!(patch_dropout(&mut one, 0.99, 1).unwrap(), 0);
        assert_eq!(one, vec![0.0, 0.3, 0.0]);
        let mut two = vec![0.2, 0.3];
        assert_eq!(patch_dropout(&mut two, 0.99, 1).unwrap(), 1);
        assert!(patch_dropout(&mut two, 1.0, 1).is_err());
    }
}
