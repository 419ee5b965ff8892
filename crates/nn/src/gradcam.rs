//! GradCAM and input gradients for classifiers that implement [`CamTarget`].
//!
//! GradCAM (Selvaraju et al. 2017) for an image `b` and a class `k_b`:
//! 1. the forward pass is intercepted at the model's target layer, whose
//!    activation `A` is replaced by a gradient-tracked copy
//!    ([`candle_core::Var`]) of `A.detach()`;
//! 2. the score `Σ_b logits[b, k_b]` is differentiated, giving `G = ∂score/∂A`;
//! 3. with `A` and `G` as `[B, C, h, w]` (token layouts are reshaped, see
//!    [`CamLayout::Tokens`]), the channel weights are `w_bc = mean_{h,w} G_bc`
//!    and the map is `cam_b = ReLU(Σ_c w_bc A_bc)` → `[B, h, w]`.
//!
//! [`upsample_normalize`] resizes maps to the input size (bilinear,
//! `align_corners = false`, as PyTorch's `F.interpolate`) and scales each
//! image's map to `[0, 1]` by its own minimum and maximum.
//! [`input_gradient`] is `∂score/∂x` for saliency maps.
//!
//! Every op on the hooked forward pass must have a backward in candle; models
//! keep a separate fast path for plain inference.

use candle_core::{DType, Tensor, Var, D};

use crate::error::{Error, Result};

/// Where a model exposes its GradCAM target activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CamLayout {
    /// `[B, C, h, w]` feature map (ResNet layer4 output).
    ChannelsFirst,
    /// `[B, prefix + h*w, D]` token sequence (ViT): the `prefix` leading tokens (CLS, registers) are
    /// dropped and the rest reshaped row-major to `[B, D, h, w]` (the usual ViT reshape transform).
    Tokens {
        /// Number of leading non-patch tokens (CLS, registers).
        prefix: usize,
        /// Patch grid `(h, w)`.
        grid: (usize, usize),
    },
}

/// A classifier whose forward pass can be intercepted at its GradCAM target layer.
pub trait CamTarget {
    /// Runs the forward pass on `x` `[B,3,H,W]` and returns the logits `[B, classes]`; at the
    /// target layer it calls `hook(&activation)` and continues the forward pass with the tensor the
    /// hook returns (the hook returns a tensor equal in value: a `Var` standing for it). Returns the
    /// layout of the activation the hook saw.
    fn forward_hooked(
        &self,
        x: &Tensor,
        hook: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, CamLayout)>;

    /// As [`CamTarget::forward_hooked`] when only gradients at and after the hooked activation
    /// are wanted (GradCAM): a model may skip the differentiable path, and cut the graph, before
    /// the target layer. By default the same as `forward_hooked`.
    fn forward_cam(&self, x: &Tensor, hook: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<(Tensor, CamLayout)> {
        self.forward_hooked(x, hook)
    }
}

/// GradCAM results for one batch.
#[derive(Debug)]
pub struct GradCamOutput {
    /// Logits of the hooked forward pass, `[B, classes]`.
    pub logits: Tensor,
    /// Raw maps `ReLU(Σ_c w_bc A_bc)`, `[B, h, w]` at the target layer's resolution.
    pub cams: Tensor,
    /// Channel weights `w_bc` (gradient means), `[B, C]`.
    pub weights: Tensor,
    /// The target activation as `[B, C, h, w]`.
    pub activation: Tensor,
    /// The layout the model reported.
    pub layout: CamLayout,
    /// The target class of each image.
    pub classes: Vec<usize>,
}

/// Checks `classes` against the batch and the logits, and returns `Σ_b logits[b, classes[b]]`.
fn class_score(logits: &Tensor, classes: &[usize]) -> Result<Tensor> {
    let (b, n) = logits.dims2()?;
    if classes.len() != b {
        return Err(Error::Shape(format!(
            "{} target classes for a batch of {b} images; expected one class per image",
            classes.len()
        )));
    }
    if let Some((i, &k)) = classes.iter().enumerate().find(|(_, &k)| k >= n) {
        return Err(Error::Invalid(format!(
            "target class {k} of image {i} is out of range: the model has {n} classes"
        )));
    }
    let mut mask = vec![0f32; b * n];
    for (i, &k) in classes.iter().enumerate() {
        mask[i * n + k] = 1.0;
    }
    let mask = Tensor::from_vec(mask, (b, n), logits.device())?.to_dtype(logits.dtype())?;
    Ok((logits * mask)?.sum_all()?)
}

/// Brings an activation (or its gradient) of `layout` to `[B, C, h, w]`.
pub fn to_channels_first(t: &Tensor, layout: CamLayout) -> Result<Tensor> {
    match layout {
        CamLayout::ChannelsFirst => {
            t.dims4()
                .map_err(|_| Error::Shape(format!("GradCAM target of shape {:?}; expected [B, C, h, w]", t.dims())))?;
            Ok(t.clone())
        }
        CamLayout::Tokens { prefix, grid: (h, w) } => {
            let (b, n, d) = t.dims3().map_err(|_| {
                Error::Shape(format!("GradCAM target of shape {:?}; expected [B, tokens, D]", t.dims()))
            })?;
            if n != prefix + h * w {
                return Err(Error::Shape(format!(
                    "GradCAM target has {n} tokens; expected {prefix} prefix tokens + {h}x{w} patches"
                )));
            }
            Ok(t.narrow(1, prefix, h * w)?.transpose(1, 2)?.contiguous()?.reshape((b, d, h, w))?)
        }
    }
}

/// GradCAM maps of `model` on `x` `[B, 3, H, W]` for one target class per image.
pub fn gradcam(model: &dyn CamTarget, x: &Tensor, classes: &[usize]) -> Result<GradCamOutput> {
    gradcam_by(model, x, |_| Ok(classes.to_vec()))
}

/// GradCAM maps for each image's predicted (top-1) class, ties to the lower
/// index, from one forward pass (the classes are read off the hooked pass's
/// own logits before the backward pass).
pub fn gradcam_predicted(model: &dyn CamTarget, x: &Tensor) -> Result<GradCamOutput> {
    gradcam_by(model, x, argmax_rows)
}

/// The index of each row's largest value (ties to the lower index).
pub fn argmax_rows(logits: &Tensor) -> Result<Vec<usize>> {
    let rows = logits.detach().to_dtype(DType::F32)?.to_device(&candle_core::Device::Cpu)?.to_vec2::<f32>()?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut best = 0;
            for (i, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = i;
                }
            }
            best
        })
        .collect())
}

/// GradCAM maps where `choose(logits)` gives the target classes from the
/// logits of the same (hooked) forward pass.
pub fn gradcam_by(
    model: &dyn CamTarget,
    x: &Tensor,
    choose: impl FnOnce(&Tensor) -> Result<Vec<usize>>,
) -> Result<GradCamOutput> {
    let mut saved: Option<(Tensor, Var)> = None;
    let mut hook = |a: &Tensor| -> Result<Tensor> {
        let a = a.detach();
        let var = Var::from_tensor(&a)?;
        let t = var.as_tensor().clone();
        saved = Some((a, var));
        Ok(t)
    };
    let (logits, layout) = model.forward_cam(&x.detach(), &mut hook)?;
    let (act, var) = saved.ok_or_else(|| Error::Invalid("the model did not call the GradCAM hook".into()))?;
    let classes = choose(&logits)?;
    let score = class_score(&logits, &classes)?;
    let grads = score.backward()?;
    let grad = match grads.get(var.as_tensor()) {
        Some(g) => g.clone(),
        // The score does not depend on the activation: all gradients are zero.
        None => act.zeros_like()?,
    };
    let a = to_channels_first(&act, layout)?;
    let g = to_channels_first(&grad, layout)?;
    let weights = g.mean(D::Minus1)?.mean(D::Minus1)?; // [B, C]
    let cams = a.broadcast_mul(&weights.unsqueeze(2)?.unsqueeze(3)?)?.sum(1)?.relu()?;
    Ok(GradCamOutput { logits: logits.detach(), cams, weights, activation: a, layout, classes })
}

/// Resizes maps `[B, h, w]` to `size = (H, W)` (bilinear, `align_corners = false`) and scales each
/// map to `[0, 1]` by its minimum and maximum (`(m - min) / (max - min)`; a constant map becomes 0).
pub fn upsample_normalize(cams: &Tensor, size: (usize, usize)) -> Result<Tensor> {
    let (b, _, _) =
        cams.dims3().map_err(|_| Error::Shape(format!("CAMs of shape {:?}; expected [B, h, w]", cams.dims())))?;
    let up =
        cams.detach().to_dtype(DType::F32)?.unsqueeze(1)?.upsample_bilinear2d(size.0, size.1, false)?.squeeze(1)?;
    let flat = up.reshape((b, size.0 * size.1))?;
    let mn = flat.min_keepdim(1)?;
    let mx = flat.max_keepdim(1)?;
    let range = (&mx - &mn)?;
    let vals = range.to_vec2::<f32>()?;
    let inv: Vec<f32> = vals.iter().map(|r| if r[0] > 0.0 { 1.0 / r[0] } else { 0.0 }).collect();
    let inv = Tensor::from_vec(inv, (b, 1), cams.device())?;
    let out = flat.broadcast_sub(&mn)?.broadcast_mul(&inv)?;
    Ok(out.reshape((b, size.0, size.1))?)
}

/// The gradient `∂(Σ_b logits[b, classes[b]])/∂x` of `model` at `x` `[B, 3, H, W]`, same shape as `x`.
pub fn input_gradient(model: &dyn CamTarget, x: &Tensor, classes: &[usize]) -> Result<Tensor> {
    let xv = Var::from_tensor(&x.detach())?;
    let mut hook = |a: &Tensor| -> Result<Tensor> { Ok(a.clone()) };
    let (logits, _) = model.forward_hooked(xv.as_tensor(), &mut hook)?;
    let score = class_score(&logits, classes)?;
    let grads = score.backward()?;
    match grads.get(xv.as_tensor()) {
        Some(g) => Ok(g.clone()),
        None => Ok(x.zeros_like()?),
    }
}
