//! Dense (fully connected) CRF refinement of a binary mask, as in the
//! MaskCut post-processing of CutLER (Krähenbühl & Koltun 2011 mean-field
//! inference with Gaussian edge potentials).
//!
//! # Model
//!
//! Two labels, 0 = background and 1 = foreground, on the `N = H * W` pixels.
//!
//! * **Unary.** A two-channel logit map `[1 - m, m]` on the `gh x gw` patch
//!   grid (`m` = 0/1 patch mask) is upsampled bilinearly to `H x W` with the
//!   `align_corners = False` convention of `torch.nn.functional.interpolate`
//!   (source coordinate `(y + 0.5) * gh / H - 0.5`, clamped to the grid), then
//!   soft-maxed over the two channels: `p_l`, and `U_l = -ln p_l`.
//! * **Kernels.** `k_g(i, j) = exp(-|p_i - p_j|² / (2 sxy_g²))` on pixel
//!   positions `p = (x, y)` ("Gaussian", `sxy_g = 3`, weight `w_g = 7`) and
//!   `k_b(i, j) = exp(-|p_i - p_j|² / (2 sxy_b²) - |c_i - c_j|² / (2 srgb²))` on
//!   positions and RGB colours `c` in 0..=255 ("bilateral", `sxy_b = 50`,
//!   `srgb = 5`, weight `w_b = 10`). Both sums include `j = i`.
//! * **Normalisation** (pydensecrf's default `NORMALIZE_SYMMETRIC`): with
//!   `n_i = (Σ_j k(i, j))^{-1/2}`, the filtered message of a field `Q` is
//!   `F(Q)_i = n_i Σ_j k(i, j) n_j Q_j`.
//! * **Mean field** (Potts compatibility): `Q⁰ = softmax(-U)`; each of the
//!   `iterations` steps computes, for each label `l`,
//!   `E_l = -U_l + w_g F_g(Q_l) + w_b F_b(Q_l)` and `Q = softmax(E)`.
//! * **Result.** Per pixel, label 1 if `Q_1 > Q_0` (ties go to background).
//!
//! # Implementations
//!
//! [`dense_crf`] is the fast version: `F_g` is an exact separable Gaussian
//! convolution truncated at `ceil(4 sxy_g)` pixels (the neglected kernel mass
//! is below `e^{-8}` of the centre weight per tap), and `F_b` uses the
//! permutohedral lattice ([`crate::permutohedral`]) on the 5-D features
//! `(x / sxy_b, y / sxy_b, r / srgb, g / srgb, b / srgb)`, whose kernel
//! approximates `k_b` up to a constant factor (the factor cancels in the
//! symmetric normalisation). Because the filters are linear and
//! `Q_0 = 1 - Q_1`, only `Q_1` is filtered: `F(Q_0) = F(1) - F(Q_1)`.
//! [`brute_force`] evaluates the same model with exact `O(N²)` sums over all
//! pixel pairs, in `f64`, filtering both labels independently.

use crate::error::{Error, Result};
use crate::image::RgbImage;
use crate::mask::{fill_holes, iou, upsample_nearest};
use crate::permutohedral::Permutohedral;

/// Parameters of the dense CRF; [`Default`] gives the CutLER / MaskCut values.
#[derive(Debug, Clone, PartialEq)]
pub struct CrfParams {
    /// Standard deviation (pixels) of the position-only Gaussian kernel (default 3).
    pub gaussian_sxy: f32,
    /// Weight of the position-only Gaussian kernel in the Potts pairwise term (default 7).
    pub gaussian_weight: f32,
    /// Standard deviation (pixels) of the position part of the bilateral kernel (default 50).
    pub bilateral_sxy: f32,
    /// Standard deviation (0..=255 intensity units) of the colour part of the bilateral kernel (default 5).
    pub bilateral_srgb: f32,
    /// Weight of the bilateral kernel in the Potts pairwise term (default 10).
    pub bilateral_weight: f32,
    /// Number of mean-field iterations (default 10).
    pub iterations: usize,
    /// [`refine`] rejects (returns `None` for) a refined mask whose IoU with the
    /// upsampled input mask is below this value (default 0.5).
    pub min_iou: f64,
}

impl Default for CrfParams {
    fn default() -> Self {
        CrfParams {
            gaussian_sxy: 3.0,
            gaussian_weight: 7.0,
            bilateral_sxy: 50.0,
            bilateral_srgb: 5.0,
            bilateral_weight: 10.0,
            iterations: 10,
            min_iou: 0.5,
        }
    }
}

impl CrfParams {
    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("gaussian_sxy", self.gaussian_sxy),
            ("bilateral_sxy", self.bilateral_sxy),
            ("bilateral_srgb", self.bilateral_srgb),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::Invalid(format!("CRF parameter {name} = {v}, expected a positive number")));
            }
        }
        for (name, v) in [("gaussian_weight", self.gaussian_weight), ("bilateral_weight", self.bilateral_weight)] {
            if !v.is_finite() {
                return Err(Error::Invalid(format!("CRF parameter {name} = {v}, expected a finite number")));
            }
        }
        if !(0.0..=1.0).contains(&self.min_iou) {
            return Err(Error::Invalid(format!(
                "CRF parameter min_iou = {}, expected a value in [0, 1]",
                self.min_iou
            )));
        }
        Ok(())
    }
}

/// Result of CRF inference on an `height x width` image.
#[derive(Debug, Clone, PartialEq)]
pub struct CrfOutput {
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Final foreground marginal `Q_1` per pixel (row-major).
    pub foreground: Vec<f32>,
    /// Final labels (`true` = foreground: `Q_1 > Q_0`), row-major.
    pub labels: Vec<bool>,
}

/// The two pairwise kernels of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Position-only Gaussian kernel (`gaussian_sxy`).
    Gaussian,
    /// Bilateral kernel on position and colour (`bilateral_sxy`, `bilateral_srgb`).
    Bilateral,
}

fn image_dims(image: &RgbImage) -> Result<(usize, usize)> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::Invalid(format!("CRF: empty image ({w}x{h})")));
    }
    Ok((h as usize, w as usize))
}

/// Unary log-probabilities `(ln p_0, ln p_1)` per pixel from a patch-grid
/// mask, as described in the [module documentation](self).
/// Errors if `grid.len() != gh * gw` or a size is zero.
pub fn unary_log_probs(
    grid: &[bool],
    gh: usize,
    gw: usize,
    height: usize,
    width: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    if gh.checked_mul(gw) != Some(grid.len()) {
        return Err(Error::mismatch("patch-grid mask length", format!("{gh}x{gw}"), grid.len()));
    }
    if gh == 0 || gw == 0 || height == 0 || width == 0 {
        return Err(Error::Invalid(format!(
            "CRF unary: sizes must be non-zero (grid {gh}x{gw}, image {height}x{width})"
        )));
    }
    let ys = crate::image::linear_taps(gh, height);
    let xs = crate::image::linear_taps(gw, width);
    let g = |y: usize, x: usize| if grid[y * gw + x] { 1.0f32 } else { 0.0 };
    let mut lp0 = Vec::with_capacity(height * width);
    let mut lp1 = Vec::with_capacity(height * width);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let top = g(y0, x0) * (1.0 - fx) + g(y0, x1) * fx;
            let bot = g(y1, x0) * (1.0 - fx) + g(y1, x1) * fx;
            let m = top * (1.0 - fy) + bot * fy;
            // Logits (1 - m, m): ln p_1 = -ln(1 + e^{(1 - m) - m}), ln p_0 = -ln(1 + e^{m - (1 - m)}).
            let t = 2.0 * m - 1.0;
            lp1.push(-softplus(-t));
            lp0.push(-softplus(t));
        }
    }
    Ok((lp0, lp1))
}

/// `ln(1 + e^x)`, stable.
fn softplus(x: f32) -> f32 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Separable, truncated (radius `ceil(4 sxy)`) Gaussian convolution of a
/// `h x w` field with zero padding: `Σ_j exp(-|p_i - p_j|² / (2 sxy²)) v_j`.
fn spatial_filter(v: &[f32], h: usize, w: usize, sxy: f32) -> Vec<f32> {
    let r = (4.0 * sxy).ceil() as usize;
    let taps: Vec<f32> = (0..=r).map(|t| (-((t * t) as f32) / (2.0 * sxy * sxy)).exp()).collect();
    let mut tmp = vec![0f32; h * w];
    for y in 0..h {
        let row = &v[y * w..(y + 1) * w];
        let out = &mut tmp[y * w..(y + 1) * w];
        for x in 0..w {
            let lo = x.saturating_sub(r);
            let hi = (x + r).min(w - 1);
            let mut s = 0.0;
            for (xx, &val) in row.iter().enumerate().take(hi + 1).skip(lo) {
                s += taps[xx.abs_diff(x)] * val;
            }
            out[x] = s;
        }
    }
    let mut out = vec![0f32; h * w];
    for y in 0..h {
        let lo = y.saturating_sub(r);
        let hi = (y + r).min(h - 1);
        let dst = &mut out[y * w..(y + 1) * w];
        for yy in lo..=hi {
            let t = taps[yy.abs_diff(y)];
            let src = &tmp[yy * w..(yy + 1) * w];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += t * s;
            }
        }
    }
    out
}

/// Bilateral feature vectors `(x / sxy, y / sxy, r / srgb, g / srgb, b / srgb)`, row-major, 5 per pixel.
fn bilateral_features(image: &RgbImage, sxy: f32, srgb: f32) -> Vec<f32> {
    let (w, h) = image.dimensions();
    let mut f = Vec::with_capacity(w as usize * h as usize * 5);
    for (x, y, p) in image.enumerate_pixels() {
        debug_assert!(x < w && y < h);
        f.extend_from_slice(&[
            x as f32 / sxy,
            y as f32 / sxy,
            p.0[0] as f32 / srgb,
            p.0[1] as f32 / srgb,
            p.0[2] as f32 / srgb,
        ]);
    }
    f
}

/// Spatial feature vectors `(x / sxy, y / sxy)`, row-major.
fn spatial_features(h: usize, w: usize, sxy: f32) -> Vec<f32> {
    (0..h).flat_map(|y| (0..w).flat_map(move |x| [x as f32 / sxy, y as f32 / sxy])).collect()
}

/// A fast, symmetrically normalised kernel filter `F(Q)_i = n_i Σ_j k(i, j) n_j Q_j`.
enum FastKernel {
    Spatial { h: usize, w: usize, sxy: f32, norm: Vec<f32> },
    Lattice { lattice: Permutohedral, norm: Vec<f32> },
}

impl FastKernel {
    fn new(kind: Kernel, image: &RgbImage, params: &CrfParams) -> Result<Self> {
        let (h, w) = image_dims(image)?;
        let inv_sqrt = |s: Vec<f32>| s.into_iter().map(|v| 1.0 / (v.max(1e-20)).sqrt()).collect::<Vec<f32>>();
        Ok(match kind {
            Kernel::Gaussian => {
                let sxy = params.gaussian_sxy;
                let norm = inv_sqrt(spatial_filter(&vec![1.0; h * w], h, w, sxy));
                FastKernel::Spatial { h, w, sxy, norm }
            }
            Kernel::Bilateral => {
                let f = bilateral_features(image, params.bilateral_sxy, params.bilateral_srgb);
                let lattice = Permutohedral::new(&f, 5)?;
                let norm = inv_sqrt(lattice.filter(&vec![1.0; h * w])?);
                FastKernel::Lattice { lattice, norm }
            }
        })
    }

    fn apply(&self, q: &[f32]) -> Result<Vec<f32>> {
        let norm = match self {
            FastKernel::Spatial { norm, .. } | FastKernel::Lattice { norm, .. } => norm,
        };
        let scaled: Vec<f32> = q.iter().zip(norm).map(|(a, b)| a * b).collect();
        let mut out = match self {
            FastKernel::Spatial { h, w, sxy, .. } => spatial_filter(&scaled, *h, *w, *sxy),
            FastKernel::Lattice { lattice, .. } => lattice.filter(&scaled)?,
        };
        for (o, n) in out.iter_mut().zip(norm) {
            *o *= n;
        }
        Ok(out)
    }
}

fn check_field(q: &[f32], image: &RgbImage) -> Result<(usize, usize)> {
    let (h, w) = image_dims(image)?;
    if q.len() != h * w {
        return Err(Error::mismatch("CRF field length", format!("{h}x{w} = {}", h * w), q.len()));
    }
    Ok((h, w))
}

/// Applies one symmetrically normalised kernel `F(Q)_i = n_i Σ_j k(i, j) n_j Q_j`
/// with the fast method used by [`dense_crf`]. Exposed for testing against
/// [`normalized_filter_exact`]. Errors if `q.len()` is not the pixel count.
pub fn normalized_filter_fast(kind: Kernel, image: &RgbImage, params: &CrfParams, q: &[f32]) -> Result<Vec<f32>> {
    params.validate()?;
    check_field(q, image)?;
    FastKernel::new(kind, image, params)?.apply(q)
}

/// Exact `O(N²)` kernel matrix (row-major, `f64`) of `kind`, and its symmetric normalisation vector.
fn exact_kernel(kind: Kernel, image: &RgbImage, params: &CrfParams) -> Result<(Vec<f64>, Vec<f64>)> {
    let (h, w) = image_dims(image)?;
    let n = h * w;
    if n > 10_000 {
        return Err(Error::Invalid(format!("brute-force CRF: {h}x{w} image is too large (at most 10000 pixels)")));
    }
    let (feats, d) = match kind {
        Kernel::Gaussian => (spatial_features(h, w, params.gaussian_sxy), 2),
        Kernel::Bilateral => (bilateral_features(image, params.bilateral_sxy, params.bilateral_srgb), 5),
    };
    let mut k = vec![0f64; n * n];
    for i in 0..n {
        let fi = &feats[i * d..(i + 1) * d];
        for j in 0..n {
            let fj = &feats[j * d..(j + 1) * d];
            let d2: f64 = fi.iter().zip(fj).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
            k[i * n + j] = (-0.5 * d2).exp();
        }
    }
    let norm: Vec<f64> = (0..n).map(|i| 1.0 / k[i * n..(i + 1) * n].iter().sum::<f64>().sqrt()).collect();
    Ok((k, norm))
}

fn exact_apply(k: &[f64], norm: &[f64], q: &[f64]) -> Vec<f64> {
    let n = q.len();
    let scaled: Vec<f64> = q.iter().zip(norm).map(|(a, b)| a * b).collect();
    (0..n).map(|i| norm[i] * k[i * n..(i + 1) * n].iter().zip(&scaled).map(|(a, b)| a * b).sum::<f64>()).collect()
}

/// Exact `O(N²)` version of [`normalized_filter_fast`]. Errors for images of
/// more than 10000 pixels.
pub fn normalized_filter_exact(kind: Kernel, image: &RgbImage, params: &CrfParams, q: &[f64]) -> Result<Vec<f64>> {
    params.validate()?;
    let (h, w) = image_dims(image)?;
    if q.len() != h * w {
        return Err(Error::mismatch("CRF field length", format!("{h}x{w} = {}", h * w), q.len()));
    }
    let (k, norm) = exact_kernel(kind, image, params)?;
    Ok(exact_apply(&k, &norm, q))
}

/// Fast dense-CRF inference on one image, set up once and reused for many
/// masks: the kernels (the bilateral lattice, the normalisations and `F(1)`)
/// depend on the image only, so MaskCut's several masks of one image share
/// them.
pub struct DenseCrf {
    params: CrfParams,
    h: usize,
    w: usize,
    kernels: [(FastKernel, f32); 2],
    f_ones: Vec<Vec<f32>>,
}

impl DenseCrf {
    /// Builds the kernels of `image`. Errors on an empty image or invalid parameters.
    pub fn new(image: &RgbImage, params: &CrfParams) -> Result<Self> {
        params.validate()?;
        let (h, w) = image_dims(image)?;
        let kernels = [
            (FastKernel::new(Kernel::Gaussian, image, params)?, params.gaussian_weight),
            (FastKernel::new(Kernel::Bilateral, image, params)?, params.bilateral_weight),
        ];
        // F(1) per kernel, for F(Q_0) = F(1) - F(Q_1).
        let ones = vec![1.0f32; h * w];
        let f_ones: Vec<Vec<f32>> = kernels.iter().map(|(k, _)| k.apply(&ones)).collect::<Result<_>>()?;
        Ok(DenseCrf { params: params.clone(), h, w, kernels, f_ones })
    }

    /// Mean-field inference for the patch-grid mask `grid` (`gh x gw`, row-major).
    pub fn infer(&self, grid: &[bool], gh: usize, gw: usize) -> Result<CrfOutput> {
        let (h, w) = (self.h, self.w);
        let n = h * w;
        let (lp0, lp1) = unary_log_probs(grid, gh, gw, h, w)?;
        // diff = E_1 - E_0; Q_1 = sigmoid(diff).
        let mut diff: Vec<f32> = lp1.iter().zip(&lp0).map(|(a, b)| a - b).collect();
        let mut q1: Vec<f32> = diff.iter().map(|&d| sigmoid(d)).collect();
        for _ in 0..self.params.iterations {
            for (i, d) in diff.iter_mut().enumerate() {
                *d = lp1[i] - lp0[i];
            }
            for ((kernel, weight), f1) in self.kernels.iter().zip(&self.f_ones) {
                let fq = kernel.apply(&q1)?;
                // w F(Q_1) - w (F(1) - F(Q_1)).
                for i in 0..n {
                    diff[i] += weight * (2.0 * fq[i] - f1[i]);
                }
            }
            for (q, &d) in q1.iter_mut().zip(&diff) {
                *q = sigmoid(d);
            }
        }
        let labels = diff.iter().map(|&d| d > 0.0).collect();
        Ok(CrfOutput { height: h, width: w, foreground: q1, labels })
    }

    /// [`refine`] with the kernels of this image.
    pub fn refine(&self, grid_mask: &[bool], gh: usize, gw: usize) -> Result<Option<Vec<bool>>> {
        let (h, w) = (self.h, self.w);
        let up = upsample_nearest(grid_mask, gh, gw, h, w)?;
        let crf = self.infer(grid_mask, gh, gw)?;
        let filled = fill_holes(&crf.labels, h, w)?;
        Ok(if iou(&filled, &up)? < self.params.min_iou { None } else { Some(filled) })
    }
}

/// Fast dense-CRF inference (see the [module documentation](self) for the
/// model) of the patch-grid mask `grid` (`gh x gw`, row-major) on `image`.
/// For several masks of one image, [`DenseCrf`] sets the kernels up once.
///
/// Errors on a grid of the wrong length, an empty image or invalid parameters.
pub fn dense_crf(grid: &[bool], gh: usize, gw: usize, image: &RgbImage, params: &CrfParams) -> Result<CrfOutput> {
    DenseCrf::new(image, params)?.infer(grid, gh, gw)
}

/// Brute-force dense-CRF inference: the same model as [`dense_crf`] with
/// exact `O(N²)` kernel sums in `f64`, both labels filtered independently.
/// For testing; errors for images of more than 10000 pixels.
pub fn brute_force(grid: &[bool], gh: usize, gw: usize, image: &RgbImage, params: &CrfParams) -> Result<CrfOutput> {
    params.validate()?;
    let (h, w) = image_dims(image)?;
    let n = h * w;
    let (lp0, lp1) = unary_log_probs(grid, gh, gw, h, w)?;
    let kernels = [
        (exact_kernel(Kernel::Gaussian, image, params)?, params.gaussian_weight as f64),
        (exact_kernel(Kernel::Bilateral, image, params)?, params.bilateral_weight as f64),
    ];
    let u: [Vec<f64>; 2] = [lp0.iter().map(|&v| v as f64).collect(), lp1.iter().map(|&v| v as f64).collect()];
    let softmax = |e: &[Vec<f64>; 2]| -> [Vec<f64>; 2] {
        let mut q = [vec![0.0; n], vec![0.0; n]];
        for i in 0..n {
            let mx = e[0][i].max(e[1][i]);
            let a = (e[0][i] - mx).exp();
            let b = (e[1][i] - mx).exp();
            q[0][i] = a / (a + b);
            q[1][i] = b / (a + b);
        }
        q
    };
    let mut q = softmax(&u);
    for _ in 0..params.iterations {
        let mut e = u.clone();
        for (label, el) in e.iter_mut().enumerate() {
            for ((k, norm), weight) in &kernels {
                let f = exact_apply(k, norm, &q[label]);
                for (v, fv) in el.iter_mut().zip(f) {
                    *v += weight * fv;
                }
            }
        }
        q = softmax(&e);
    }
    let labels = (0..n).map(|i| q[1][i] > q[0][i]).collect();
    Ok(CrfOutput { height: h, width: w, foreground: q[1].iter().map(|&v| v as f32).collect(), labels })
}

/// MaskCut post-processing of one patch-grid mask: upsample it to the image
/// size ([`upsample_nearest`]), run [`dense_crf`] (unary from the grid mask),
/// fill holes ([`fill_holes`]), and return the refined mask, or `None` when
/// its IoU with the upsampled (pre-CRF) mask is below `params.min_iou`
/// (an empty refined mask has IoU 0 and is rejected).
///
/// Errors on a grid of the wrong length, an empty image or invalid parameters.
pub fn refine(
    grid_mask: &[bool],
    gh: usize,
    gw: usize,
    image: &RgbImage,
    params: &CrfParams,
) -> Result<Option<Vec<bool>>> {
    DenseCrf::new(image, params)?.refine(grid_mask, gh, gw)
}
