//! Selecting training regions: scoring proposals against a dense label map.
//!
//! # Label maps
//! A [`LabelMap`] covers the whole image with an `h × w` grid of class
//! scores (logits), in one of two forms:
//! - a ReLabel map `[2, k, h, w]` (`k = 5` in the published maps): channel 0
//!   holds the top-`k` logits of each location, channel 1 their class indices
//!   stored as floats. Classes not listed at a location have logit 0. Class
//!   indices must be integers in `[0, C)` and distinct at each location;
//! - a dense map `[C, h, w]` of logits.
//!
//! NaN or infinite values, wrong shapes and class indices outside `[0, C)`
//! are errors.
//!
//! # Scoring rule
//! The map is bilinearly resized to the image size with the semantics of
//! PyTorch `F.interpolate(mode="bilinear", align_corners=False)` (source
//! coordinate `(x + 0.5)·w/W − 0.5`, negative values clamped to 0, the upper
//! neighbour clamped to the last cell), the resized logits are averaged over
//! the mask pixels, and a softmax over the `C` classes gives the proposal's
//! class probabilities.
//!
//! No `C × H × W` upsample is materialised: the average of the bilinear
//! interpolant over the mask is linear in the map, so it equals
//! `Σ_cells W_cell · logits_cell` with the cell weights
//! `W_cell = (1/|M|) Σ_{p ∈ M} bilinear weight of the cell at pixel p`
//! ([`cell_weights`]; they sum to 1). The bilinear weight is separable, so
//! the weights cost one pass over the mask rows.
//!
//! # Selection
//! [`select`] keeps a proposal when its probability for the image's label
//! ([`Target::ImageLabel`], default) or for its own top-1 class
//! ([`Target::OwnTop1`]; ties go to the lower index) is strictly greater than
//! `tau` (default 0.75). With `whole_image_fallback`, when no proposal is kept
//! the whole image is returned as a region with the original label.

use crate::error::{Error, Result};
use crate::pool::Mask;

/// A dense label map over the whole image (see the module docs).
#[derive(Debug, Clone)]
pub struct LabelMap {
    classes: usize,
    h: usize,
    w: usize,
    /// Per location (row-major): its `(class, logit)` entries.
    entries: Vec<Vec<(u32, f64)>>,
}

impl LabelMap {
    /// A ReLabel map of shape `[2, k, h, w]` (`data` in C order) for `classes` classes.
    pub fn relabel(data: &[f32], shape: &[usize], classes: usize) -> Result<LabelMap> {
        let &[two, k, h, w] = shape else {
            return Err(Error::Mismatch(format!("ReLabel map of shape {shape:?}: expected [2, k, h, w]")));
        };
        if two != 2 || k == 0 || h == 0 || w == 0 || classes == 0 {
            return Err(Error::Mismatch(format!(
                "ReLabel map of shape {shape:?} for {classes} classes: expected [2, k, h, w] with k, h, w > 0"
            )));
        }
        check_len(data.len(), shape)?;
        let plane = h * w;
        let mut entries = Vec::with_capacity(plane);
        for loc in 0..plane {
            let mut e: Vec<(u32, f64)> = Vec::with_capacity(k);
            for r in 0..k {
                let logit = data[r * plane + loc];
                let cls = data[(k + r) * plane + loc];
                let (y, x) = (loc / w, loc % w);
                if !logit.is_finite() {
                    return Err(Error::Invalid(format!("ReLabel map: logit [0, {r}, {y}, {x}] is {logit}")));
                }
                if !(cls.is_finite() && cls >= 0.0 && cls.fract() == 0.0 && (cls as usize) < classes) {
                    return Err(Error::Invalid(format!(
                        "ReLabel map: class index [1, {r}, {y}, {x}] is {cls}; expected an integer in [0, {classes})"
                    )));
                }
                let c = cls as u32;
                if e.iter().any(|&(d, _)| d == c) {
                    return Err(Error::Invalid(format!("ReLabel map: class {c} listed twice at location ({y}, {x})")));
                }
                e.push((c, f64::from(logit)));
            }
            entries.push(e);
        }
        Ok(LabelMap { classes, h, w, entries })
    }

    /// A dense score map of shape `[C, h, w]` (`data` in C order).
    pub fn dense(data: &[f32], shape: &[usize]) -> Result<LabelMap> {
        let &[c, h, w] = shape else {
            return Err(Error::Mismatch(format!("dense score map of shape {shape:?}: expected [C, h, w]")));
        };
        if c == 0 || h == 0 || w == 0 {
            return Err(Error::Mismatch(format!("dense score map of shape {shape:?}: every size must be positive")));
        }
        check_len(data.len(), shape)?;
        let plane = h * w;
        let mut entries = vec![Vec::with_capacity(c); plane];
        for (k, chunk) in data.chunks(plane).enumerate() {
            for (loc, &v) in chunk.iter().enumerate() {
                if !v.is_finite() {
                    return Err(Error::Invalid(format!(
                        "dense score map: value [{k}, {}, {}] is {v}",
                        loc / w,
                        loc % w
                    )));
                }
                entries[loc].push((k as u32, f64::from(v)));
            }
        }
        Ok(LabelMap { classes: c, h, w, entries })
    }

    /// Number of classes `C`.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// `(h, w)` of the map grid.
    pub fn size(&self) -> (usize, usize) {
        (self.h, self.w)
    }

    /// The averaged logits `Σ_cells W_cell · logits_cell` for cell weights `weights` (length `h·w`).
    pub fn weighted_logits(&self, weights: &[f64]) -> Result<Vec<f64>> {
        if weights.len() != self.h * self.w {
            return Err(Error::Mismatch(format!(
                "{} cell weights for a {}x{} label map",
                weights.len(),
                self.h,
                self.w
            )));
        }
        let mut out = vec![0.0f64; self.classes];
        for (e, &wt) in self.entries.iter().zip(weights) {
            if wt != 0.0 {
                for &(c, l) in e {
                    out[c as usize] += wt * l;
                }
            }
        }
        Ok(out)
    }

    /// The class probabilities of a mask (`image_w × image_h`, row-major): softmax of the averaged logits.
    pub fn score(&self, mask: &Mask, image_w: usize, image_h: usize) -> Result<Vec<f64>> {
        let wts = cell_weights(mask, image_w, image_h, self.h, self.w)?;
        Ok(softmax(&self.weighted_logits(&wts)?))
    }
}

fn check_len(len: usize, shape: &[usize]) -> Result<()> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(len) {
        return Err(Error::Mismatch(format!("map of shape {shape:?} needs {n:?} values; got {len}")));
    }
    Ok(())
}

/// Numerically stable softmax (max subtracted).
pub fn softmax(x: &[f64]) -> Vec<f64> {
    let m = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Bilinear (align_corners=False) source weights along one axis: for each of
/// the `out` output positions, `(low, high, weight of low, weight of high)`.
fn axis_weights(input: usize, out: usize) -> Vec<(usize, usize, f64, f64)> {
    let scale = input as f64 / out as f64;
    (0..out)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let low = (src.floor() as usize).min(input - 1);
            let high = if low < input - 1 { low + 1 } else { low };
            let l1 = (src - low as f64).clamp(0.0, 1.0);
            (low, high, 1.0 - l1, l1)
        })
        .collect()
}

/// The `h × w` cell weights of a mask for a map resized to `image_w × image_h`
/// (see the module docs): they sum to 1. An empty mask is an error.
pub fn cell_weights(mask: &Mask, image_w: usize, image_h: usize, h: usize, w: usize) -> Result<Vec<f64>> {
    if image_w == 0 || image_h == 0 || h == 0 || w == 0 {
        return Err(Error::Invalid(format!("image {image_w}x{image_h}, map {h}x{w}: sizes must be positive")));
    }
    let runs = mask.row_runs(image_w, image_h)?;
    let ax = axis_weights(w, image_w);
    let ay = axis_weights(h, image_h);
    // Prefix sums of each column's weights along x make a run cost O(w).
    let mut prefix = vec![vec![0.0f64; image_w + 1]; w];
    for (x, &(lo, hi, a, b)) in ax.iter().enumerate() {
        for (j, p) in prefix.iter_mut().enumerate() {
            let mut v = 0.0;
            if j == lo {
                v += a;
            }
            if j == hi {
                v += b;
            }
            p[x + 1] = p[x] + v;
        }
    }
    let mut out = vec![0.0f64; h * w];
    let mut row = vec![0.0f64; w];
    let mut count = 0u64;
    for (y, rr) in runs.iter().enumerate() {
        if rr.is_empty() {
            continue;
        }
        row.iter_mut().for_each(|v| *v = 0.0);
        for &(s, e) in rr {
            count += (e - s) as u64;
            for (r, p) in row.iter_mut().zip(&prefix) {
                *r += p[e] - p[s];
            }
        }
        let (lo, hi, a, b) = ay[y];
        for (i, f) in [(lo, a), (hi, b)] {
            if f != 0.0 {
                for (d, r) in out[i * w..(i + 1) * w].iter_mut().zip(&row) {
                    *d += f * r;
                }
            }
        }
    }
    if count == 0 {
        return Err(Error::Invalid("empty mask: no pixel to average the label map over".into()));
    }
    let n = count as f64;
    out.iter_mut().for_each(|v| *v /= n);
    Ok(out)
}

/// Which class a proposal must be confident about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// The image's (original) label.
    #[default]
    ImageLabel,
    /// The proposal's own top-1 class.
    OwnTop1,
}

/// Options of [`select`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelectOptions {
    /// Keep proposals whose target probability is `> tau`.
    pub tau: f64,
    /// Which class is tested.
    pub target: Target,
    /// Return the whole image with the original label when nothing is kept.
    pub whole_image_fallback: bool,
}

impl Default for SelectOptions {
    fn default() -> Self {
        SelectOptions { tau: 0.75, target: Target::ImageLabel, whole_image_fallback: false }
    }
}

/// One selected training region.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    /// Index of the proposal in the input, `None` for the whole-image fallback.
    pub proposal: Option<usize>,
    /// The class the region is labelled with.
    pub class: u32,
    /// The map's probability for that class over the region.
    pub prob: f64,
}

/// Scores `masks` of one `image_w × image_h` image with `map` and keeps the
/// confident ones (see the module docs). `label` is the image's label.
pub fn select(
    map: &LabelMap,
    masks: &[Mask],
    image_w: usize,
    image_h: usize,
    label: u32,
    opts: &SelectOptions,
) -> Result<Vec<Selected>> {
    if label as usize >= map.classes {
        return Err(Error::Invalid(format!("image label {label} outside the map's classes [0, {})", map.classes)));
    }
    if !(0.0..=1.0).contains(&opts.tau) {
        return Err(Error::Invalid(format!("selection threshold {}: expected 0 <= tau <= 1", opts.tau)));
    }
    let mut out = Vec::new();
    for (k, m) in masks.iter().enumerate() {
        let p = map.score(m, image_w, image_h).map_err(|e| match e {
            Error::Invalid(s) => Error::Invalid(format!("proposal {k}: {s}")),
            Error::Mismatch(s) => Error::Mismatch(format!("proposal {k}: {s}")),
            other => other,
        })?;
        let (class, prob) = match opts.target {
            Target::ImageLabel => (label, p[label as usize]),
            Target::OwnTop1 => {
                let mut best = 0;
                for (c, &v) in p.iter().enumerate() {
                    if v > p[best] {
                        best = c;
                    }
                }
                (best as u32, p[best])
            }
        };
        if prob > opts.tau {
            out.push(Selected { proposal: Some(k), class, prob });
        }
    }
    if out.is_empty() && opts.whole_image_fallback {
        let full = vec![true; image_w * image_h];
        let p = map.score(&Mask::Bool(&full), image_w, image_h)?;
        out.push(Selected { proposal: None, class: label, prob: p[label as usize] });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_weights_match_pytorch_rule() {
        // 2 -> 4: src = (o+0.5)/2 - 0.5 = -0.25 (->0), 0.25, 0.75, 1.25
        let a = axis_weights(2, 4);
        assert_eq!(a[0], (0, 1, 1.0, 0.0));
        assert_eq!(a[1], (0, 1, 0.75, 0.25));
        assert_eq!(a[2], (0, 1, 0.25, 0.75));
        assert_eq!(a[3], (1, 1, 0.75, 0.25)); // clamped high neighbour: weights sum to 1 on cell 1
    }

    #[test]
    fn full_mask_weights_by_hand() {
        // 2x1 map (w=2, h=1) on a 4x1 image: per-column cell-0 weights 1, .75, .25, 0 -> mean 0.5
        let full = [true; 4];
        let w = cell_weights(&Mask::Bool(&full), 4, 1, 1, 2).unwrap();
        assert!((w[0] - 0.5).abs() < 1e-12 && (w[1] - 0.5).abs() < 1e-12, "{w:?}");
        let left = [true, true, false, false];
        let w = cell_weights(&Mask::Bool(&left), 4, 1, 1, 2).unwrap();
        // (1 + .75)/2 = .875 and (0 + .25)/2 = .125
        assert!((w[0] - 0.875).abs() < 1e-12 && (w[1] - 0.125).abs() < 1e-12, "{w:?}");
    }
}
