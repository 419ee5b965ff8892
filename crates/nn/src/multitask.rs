//! LUAB multitask training (Han et al., ICCV 2023): a backbone with a class
//! head and a point-regression head on the penultimate features, trained
//! with `CE(y) + λ · smooth-L1(h(x), Z)` where the point term applies only to
//! samples that have a point `Z` (the annotator's click, normalised to the
//! image). The random-point baseline replaces every point by a uniform
//! random one (seeded per sample), which must not teach the head anything.
//!
//! * Multi-label: with soft (or hard) targets per class
//!   ([`MultitaskData::soft`]; e.g. from `labelscope relabel`) the class
//!   loss is the mean binary cross-entropy with logits over samples and
//!   classes instead of the cross-entropy; targets can be squeezed into a
//!   smoothing range `[lo, hi]` (`t' = lo + (hi − lo)·t`), the class head's
//!   bias can start at the logit of each class's mean target
//!   ([`bias_init`]), and the class head can be exempt from weight decay.
//! * CoRM-style core-feature training ([`Corm`]): with core masks
//!   ([`MultitaskData::masks`], the object), each sample gets, with
//!   probability `p`, Gaussian noise `σ·z` on its non-core pixels (after
//!   augmentation, in the normalised input's units); optionally the loss
//!   is penalised by `penalty · d²`, where `d = (S(x + εv) − S(x − εv)) / 2ε`
//!   is the directional derivative, along a random direction `v` (standard
//!   normal on the non-core pixels, zero on the core), of the summed
//!   log-probabilities `S` (Ross et al.'s "right for the right reasons"
//!   score, whose gradient does not vanish as the model grows confident, as
//!   the loss's would): `E[d²]` is the squared norm of the input gradient
//!   over the non-core pixels (summed over the batch, divided by its size²),
//!   computed with two extra forward passes and first-order gradients only.
//! * Augmentation: torchvision's `RandomResizedCrop` (scale `[0.5, 1]`,
//!   ratio `[3/4, 4/3]`, ten attempts then the central crop) and a
//!   horizontal flip with probability ½; the point goes through the same
//!   crop and flip and is kept only when it lies inside the crop.
//! * Backbone ([`BackboneChoice`]): a trainable four-layer CNN whose
//!   penultimate features are its flattened last feature map (it keeps
//!   positions, so a linear point head can read them); a
//!   [`TrainableResNet`] (global-average features); or a [`crate::Vit`]
//!   through its differentiable forward pass (CLS features). ResNet and ViT
//!   can start from pretrained weights.
//! * Per-class points ([`MultitaskData::class_points`], multi-label LUAB):
//!   the point head regresses a point per class and the point loss is the
//!   mean smooth-L1 over the (sample, class) pairs that have a point.
//! * Randomness: initialisation, augmentation, shuffling and the random
//!   points come from xoshiro256** streams keyed by `(seed, purpose,
//!   epoch, sample)`, so a resumed run draws what the uninterrupted run
//!   would have drawn.
//! * Checkpoints: `multitask.safetensors` (parameters `model.*`, optimiser
//!   state `optim.*`, `train.epoch`) written atomically after every epoch;
//!   `resume` continues from it.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder, VarMap};
use labelscope_core::rng::{mix64, Xoshiro256};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::head::{read_safetensors, write_safetensors};
use crate::optim::{cross_entropy, Optimizer, OptimizerConfig};

/// A crop `[x0, y0, width, height]` in pixels of the source image.
pub type Crop = [usize; 4];

/// torchvision's `RandomResizedCrop.get_params` on a `w × h` image: up to
/// ten attempts at an area share in `scale` and an aspect ratio
/// log-uniform in `ratio`, else the central crop clamped to `ratio`.
pub fn random_resized_crop(rng: &mut Xoshiro256, w: usize, h: usize, scale: (f64, f64), ratio: (f64, f64)) -> Crop {
    let area = (w * h) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * (scale.0 + (scale.1 - scale.0) * rng.unit());
        let r = (lr0 + (lr1 - lr0) * rng.unit()).exp();
        let cw = (target * r).sqrt().round() as usize;
        let ch = (target / r).sqrt().round() as usize;
        if cw > 0 && ch > 0 && cw <= w && ch <= h {
            let x0 = rng.below((w - cw + 1) as u64) as usize;
            let y0 = rng.below((h - ch + 1) as u64) as usize;
            return [x0, y0, cw, ch];
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio.0 {
        (w, ((w as f64 / ratio.0).round() as usize).min(h))
    } else if in_ratio > ratio.1 {
        (((h as f64 * ratio.1).round() as usize).min(w), h)
    } else {
        (w, h)
    };
    [(w - cw) / 2, (h - ch) / 2, cw, ch]
}

/// A point `(x, y)` normalised to a `w × h` image, after cropping to `crop`
/// (and a horizontal flip of the crop); `None` when it falls outside the crop.
pub fn transform_point(p: (f64, f64), w: usize, h: usize, crop: Crop, flip: bool) -> Option<(f64, f64)> {
    let (px, py) = (p.0 * w as f64, p.1 * h as f64);
    let x = (px - crop[0] as f64) / crop[2] as f64;
    let y = (py - crop[1] as f64) / crop[3] as f64;
    if !(0.0..=1.0).contains(&x) || !(0.0..=1.0).contains(&y) {
        return None;
    }
    Some((if flip { 1.0 - x } else { x }, y))
}

/// Bilinear resize (`align_corners = false`, no antialiasing) of `crop` of a
/// planar `3 × h × w` image to `size × size`, flipped horizontally when asked.
pub fn crop_resize(img: &[f32], w: usize, h: usize, crop: Crop, size: usize, flip: bool) -> Vec<f32> {
    let mut out = vec![0.0f32; 3 * size * size];
    let [x0, y0, cw, ch] = crop;
    for oy in 0..size {
        let sy = ((oy as f64 + 0.5) * ch as f64 / size as f64 - 0.5).clamp(0.0, (ch - 1) as f64);
        let (y1, fy) = (sy.floor() as usize, sy - sy.floor());
        let y2 = (y1 + 1).min(ch - 1);
        for ox in 0..size {
            let tx = if flip { size - 1 - ox } else { ox };
            let sx = ((tx as f64 + 0.5) * cw as f64 / size as f64 - 0.5).clamp(0.0, (cw - 1) as f64);
            let (x1, fx) = (sx.floor() as usize, sx - sx.floor());
            let x2 = (x1 + 1).min(cw - 1);
            for c in 0..3 {
                let at = |x: usize, y: usize| f64::from(img[c * w * h + (y0 + y) * w + x0 + x]);
                let v = (1.0 - fy) * ((1.0 - fx) * at(x1, y1) + fx * at(x2, y1))
                    + fy * ((1.0 - fx) * at(x1, y2) + fx * at(x2, y2));
                out[c * size * size + oy * size + ox] = v as f32;
            }
        }
    }
    out
}

/// A trainable torchvision-layout Bottleneck ResNet (BatchNorm in training
/// mode updates its running statistics; evaluation uses them), with the
/// torchvision tensor names (`conv1`, `bn1`, `layer{1-4}.{k}.{conv1, bn1,
/// conv2, bn2, conv3, bn3, downsample.0, downsample.1}`), so that
/// torchvision weights converted by `labelscope weights convert` can start
/// it. Its features are the global average of `layer4` (`4 · widths[3]`).
pub struct TrainableResNet {
    conv1: Conv2d,
    bn1: candle_nn::BatchNorm,
    layers: Vec<Vec<TrainBlock>>,
    dim: usize,
}

struct TrainBlock {
    c1: Conv2d,
    b1: candle_nn::BatchNorm,
    c2: Conv2d,
    b2: candle_nn::BatchNorm,
    c3: Conv2d,
    b3: candle_nn::BatchNorm,
    down: Option<(Conv2d, candle_nn::BatchNorm)>,
}

/// `c.forward(x)` through [`crate::ops::conv2d`], which works around two candle 0.9 convolution
/// bugs (inputs with `C == H == W` on the CPU, and the gradient of strided convolutions of
/// non-square inputs).
pub fn conv_forward(c: &Conv2d, x: &Tensor) -> Result<Tensor> {
    let cfg = c.config();
    if cfg.dilation != 1 || cfg.groups != 1 {
        return Ok(c.forward(x)?);
    }
    crate::ops::conv2d(x, c.weight(), c.bias(), cfg.padding, cfg.stride)
}

fn conv(vb: &VarBuilder, name: &str, ci: usize, co: usize, k: usize, stride: usize) -> Result<Conv2d> {
    let cfg = Conv2dConfig { padding: k / 2, stride, ..Default::default() };
    Ok(candle_nn::conv2d_no_bias(ci, co, k, cfg, vb.pp(name))?)
}

fn bn(vb: &VarBuilder, name: &str, c: usize) -> Result<candle_nn::BatchNorm> {
    let cfg = candle_nn::BatchNormConfig { eps: 1e-5, remove_mean: true, affine: true, momentum: 0.1 };
    Ok(candle_nn::batch_norm(c, cfg, vb.pp(name))?)
}

impl TrainableResNet {
    /// Creates the network's variables in `vb` (torchvision names).
    pub fn new(vb: VarBuilder, cfg: &crate::ResNetConfig) -> Result<Self> {
        let conv1 = conv(&vb, "conv1", 3, cfg.stem, 7, 2)?;
        let bn1 = bn(&vb, "bn1", cfg.stem)?;
        let mut layers = Vec::new();
        let mut cin = cfg.stem;
        for l in 0..4 {
            let w = cfg.widths[l];
            let mut blocks = Vec::new();
            for k in 0..cfg.blocks[l] {
                let stride = if k == 0 && l > 0 { 2 } else { 1 };
                let p = format!("layer{}.{k}", l + 1);
                let v = vb.pp(&p);
                let down = if k == 0 && (stride != 1 || cin != 4 * w) {
                    Some((conv(&v, "downsample.0", cin, 4 * w, 1, stride)?, bn(&v, "downsample.1", 4 * w)?))
                } else {
                    None
                };
                blocks.push(TrainBlock {
                    c1: conv(&v, "conv1", cin, w, 1, 1)?,
                    b1: bn(&v, "bn1", w)?,
                    c2: conv(&v, "conv2", w, w, 3, stride)?,
                    b2: bn(&v, "bn2", w)?,
                    c3: conv(&v, "conv3", w, 4 * w, 1, 1)?,
                    b3: bn(&v, "bn3", 4 * w)?,
                    down,
                });
                cin = 4 * w;
            }
            layers.push(blocks);
        }
        Ok(TrainableResNet { conv1, bn1, layers, dim: cin })
    }

    /// Features `[B, 4 · widths[3]]` (global average of layer4); `train`
    /// selects batch statistics (and updates the running ones).
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        use candle_nn::ModuleT;
        let mut t = self.bn1.forward_t(&conv_forward(&self.conv1, x)?, train)?.relu()?;
        t = crate::ops::max_pool_3x3_s2(&t)?;
        for layer in &self.layers {
            for b in layer {
                let identity = match &b.down {
                    Some((c, n)) => n.forward_t(&conv_forward(c, &t)?, train)?,
                    None => t.clone(),
                };
                let y = b.b1.forward_t(&conv_forward(&b.c1, &t)?, train)?.relu()?;
                let y = b.b2.forward_t(&conv_forward(&b.c2, &y)?, train)?.relu()?;
                let y = b.b3.forward_t(&conv_forward(&b.c3, &y)?, train)?;
                t = (y + identity)?.relu()?;
            }
        }
        Ok(t.mean((2, 3))?)
    }

    /// Feature width.
    pub fn feature_dim(&self) -> usize {
        self.dim
    }
}

/// Which backbone a multitask network has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum BackboneChoice {
    /// [`SmallCnn`]'s four convolutions.
    Small,
    /// A [`TrainableResNet`] of this shape, optionally started from
    /// torchvision-named `.safetensors` weights.
    ResNet {
        /// Blocks per layer.
        blocks: [usize; 4],
        /// Stem channels.
        stem: usize,
        /// Bottleneck widths.
        widths: [usize; 4],
        /// Pretrained backbone weights.
        weights: Option<PathBuf>,
    },
    /// A ViT ([`crate::Vit`], timm/DINO tensor names) whose features are the
    /// CLS token after the final norm, trained through its differentiable
    /// forward pass.
    Vit {
        /// Patch side in pixels (the input side must be a multiple of it).
        patch: usize,
        /// Embedding width D.
        dim: usize,
        /// Blocks.
        depth: usize,
        /// Attention heads.
        heads: usize,
        /// FFN hidden size as a multiple of D.
        mlp_ratio: usize,
        /// DINOv2 layout (layer scale; 4 register tokens when `registers`).
        dinov2: bool,
        /// DINOv2 with registers.
        registers: bool,
        /// Pretrained backbone weights; a position embedding of another
        /// grid is resampled once to the training grid (bicubic, as at
        /// inference) and trained from there.
        weights: Option<PathBuf>,
    },
}

impl BackboneChoice {
    /// The ViT shape of a `Vit` choice and its variant for `size`-pixel inputs.
    fn vit_shape(&self, size: usize) -> Option<(crate::VitConfig, crate::VitVariant)> {
        match *self {
            BackboneChoice::Vit { patch, dim, depth, heads, mlp_ratio, dinov2, registers, .. } => {
                let cfg = crate::VitConfig { patch, dim, depth, heads, mlp_ratio };
                let mut v =
                    if dinov2 { crate::VitVariant::dinov2(registers, false) } else { crate::VitVariant::dino(patch) };
                v.pos_grid = size / patch.max(1);
                Some((cfg, v))
            }
            _ => None,
        }
    }
}

enum Body {
    Small(Vec<Conv2d>),
    ResNet(TrainableResNet),
    Vit(crate::Vit),
}

/// A multitask network: a backbone and its class and point heads. With
/// [`SmallCnn::new`] the backbone is a small trainable CNN: four 3×3
/// convolutions (16, 32, 64, 64 channels; strides 1, 2, 2, 2) with ReLU,
/// whose penultimate features are the flattened last map (`64 · (size/8)²`
/// values, so positions survive); [`SmallCnn::resnet`] puts a
/// [`TrainableResNet`] under the heads.
pub struct SmallCnn {
    body: Body,
    train: std::cell::Cell<bool>,
    /// The class head.
    pub class_head: Linear,
    /// The point head (2 outputs, x and y, per point slot: one slot, or
    /// one per class for per-class points).
    pub point_head: Linear,
    point_slots: usize,
}

impl SmallCnn {
    /// Features per image for `size × size` inputs.
    pub fn feature_dim(size: usize) -> usize {
        64 * (size / 8) * (size / 8)
    }

    /// Creates the network's variables in `vb` (Kaiming-uniform
    /// convolutions); the point head has `2 · point_slots` outputs.
    pub fn new(vb: VarBuilder, size: usize, classes: usize, point_slots: usize) -> Result<Self> {
        if size < 8 || !size.is_multiple_of(8) {
            return Err(Error::Invalid(format!("image side {size}: expected a multiple of 8")));
        }
        let chans = [3, 16, 32, 64, 64];
        let mut convs = Vec::new();
        for k in 0..4 {
            let cfg = Conv2dConfig { padding: 1, stride: if k == 0 { 1 } else { 2 }, ..Default::default() };
            convs.push(candle_nn::conv2d(chans[k], chans[k + 1], 3, cfg, vb.pp(format!("conv{k}")))?);
        }
        let f = SmallCnn::feature_dim(size);
        Ok(SmallCnn {
            body: Body::Small(convs),
            train: std::cell::Cell::new(false),
            class_head: candle_nn::linear(f, classes, vb.pp("class_head"))?,
            point_head: candle_nn::linear(f, 2 * point_slots.max(1), vb.pp("point_head"))?,
            point_slots: point_slots.max(1),
        })
    }

    /// A [`crate::Vit`] backbone of `cfg` and `variant` (its variables in
    /// `backbone`; CLS features) under heads whose variables go to `heads`.
    pub fn vit(
        backbone: VarBuilder,
        heads: VarBuilder,
        cfg: crate::VitConfig,
        variant: crate::VitVariant,
        classes: usize,
        point_slots: usize,
    ) -> Result<Self> {
        let v = crate::Vit::with_variant(cfg, variant, backbone)?;
        let f = cfg.dim;
        Ok(SmallCnn {
            body: Body::Vit(v),
            train: std::cell::Cell::new(false),
            class_head: candle_nn::linear(f, classes, heads.pp("class_head"))?,
            point_head: candle_nn::linear(f, 2 * point_slots.max(1), heads.pp("point_head"))?,
            point_slots: point_slots.max(1),
        })
    }

    /// Point slots of the point head.
    pub fn point_slots(&self) -> usize {
        self.point_slots
    }

    /// A [`TrainableResNet`] backbone (its variables in `backbone`) under
    /// heads whose variables go to `heads`.
    pub fn resnet(
        backbone: VarBuilder,
        heads: VarBuilder,
        cfg: &crate::ResNetConfig,
        classes: usize,
        point_slots: usize,
    ) -> Result<Self> {
        let r = TrainableResNet::new(backbone, cfg)?;
        let f = r.feature_dim();
        Ok(SmallCnn {
            body: Body::ResNet(r),
            train: std::cell::Cell::new(false),
            class_head: candle_nn::linear(f, classes, heads.pp("class_head"))?,
            point_head: candle_nn::linear(f, 2 * point_slots.max(1), heads.pp("point_head"))?,
            point_slots: point_slots.max(1),
        })
    }

    /// Training mode (batch statistics in BatchNorm) or evaluation mode.
    pub fn set_train(&self, train: bool) {
        self.train.set(train);
    }

    /// Penultimate features `[B, F]` of `x` `[B, 3, size, size]`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        match &self.body {
            Body::Small(convs) => {
                let mut t = x.clone();
                for c in convs {
                    t = conv_forward(c, &t)?.relu()?;
                }
                Ok(t.flatten_from(1)?)
            }
            Body::ResNet(r) => r.features_t(x, self.train.get()),
            Body::Vit(v) => Ok(v.forward_diff(x)?.cls),
        }
    }
}

/// A per-class point: the class and the point, normalised to the image.
pub type ClassPoint = (u32, (f64, f64));

/// Training data in memory: planar `3 × size × size` images (normalised),
/// class labels and optional points.
#[derive(Debug, Clone)]
pub struct MultitaskData {
    /// Image side.
    pub size: usize,
    /// Images, `3 · size²` values each.
    pub images: Vec<Vec<f32>>,
    /// Classes.
    pub labels: Vec<u32>,
    /// Points normalised to the image, when the sample has one.
    pub points: Vec<Option<(f64, f64)>>,
    /// Per-class points instead (multi-label LUAB, e.g. COCO-AB icon
    /// placements): for each sample, `(class, point)` for the classes it
    /// has a point for. When set, `points` is ignored and the point head
    /// regresses one point per class (`2 · classes` outputs); the point
    /// loss is the mean smooth-L1 over the (sample, class) pairs present.
    pub class_points: Option<Vec<Vec<ClassPoint>>>,
    /// Multi-label targets in `[0, 1]` per class (`None`: single-label
    /// cross-entropy on `labels`).
    pub soft: Option<Vec<Vec<f32>>>,
    /// Core (object) masks, `size²` values each, for [`Corm`].
    pub masks: Option<Vec<Vec<bool>>>,
}

impl MultitaskData {
    /// The `(slot, point)` targets of sample `i`: slot 0 and its point, or
    /// its per-class points.
    pub fn targets(&self, i: usize) -> Vec<(usize, (f64, f64))> {
        match &self.class_points {
            Some(c) => c.get(i).map(|v| v.iter().map(|&(k, p)| (k as usize, p)).collect()).unwrap_or_default(),
            None => self.points.get(i).copied().flatten().map(|p| vec![(0, p)]).unwrap_or_default(),
        }
    }

    /// Number of (sample, slot) point targets.
    pub fn point_count(&self) -> usize {
        (0..self.images.len()).map(|i| self.targets(i).len()).sum()
    }
}

/// CoRM-style training on core features (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Corm {
    /// Probability that a sample gets noise on its non-core pixels.
    pub p: f64,
    /// Standard deviation of that noise.
    pub sigma: f64,
    /// Weight of the input-gradient penalty over non-core pixels (0: none).
    pub penalty: f64,
    /// Step of the finite difference.
    pub eps: f64,
}

/// Settings of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MultitaskConfig {
    /// The backbone under the heads.
    pub backbone: BackboneChoice,
    /// Number of classes.
    pub classes: usize,
    /// Weight λ of the point loss.
    pub lambda: f64,
    /// Passes over the training data.
    pub epochs: u64,
    /// Samples per step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Seed.
    pub seed: u64,
    /// Random-resized-crop and flip.
    pub augment: bool,
    /// The random-point baseline: every point replaced by a uniform random one.
    pub random_points: bool,
    /// Multi-label: targets mapped to `[lo, hi]` (`(0, 1)` = unchanged).
    pub smoothing: (f64, f64),
    /// Multi-label: start the class head's bias at the logit of each class's mean target.
    pub bias_init: bool,
    /// Weight decay on the class head too (false: only the backbone and the point head decay).
    pub head_decay: bool,
    /// CoRM-style noise and penalty on non-core pixels (needs masks).
    pub corm: Option<Corm>,
}

impl MultitaskConfig {
    /// Defaults around the essentials: λ = 1, weight decay 1e-4, augmentation on, real points,
    /// no smoothing, no bias init, decay everywhere.
    pub fn new(classes: usize, epochs: u64, batch_size: usize, lr: f64, seed: u64) -> Self {
        MultitaskConfig {
            backbone: BackboneChoice::Small,
            classes,
            lambda: 1.0,
            epochs,
            batch_size,
            lr,
            weight_decay: 1e-4,
            seed,
            augment: true,
            random_points: false,
            smoothing: (0.0, 1.0),
            bias_init: false,
            head_decay: true,
            corm: None,
        }
    }
}

/// The class-head bias that makes the initial predictions the classes'
/// mean targets: `log(p / (1 − p))` of each class's mean, clamped to
/// `[1e-4, 1 − 1e-4]`.
pub fn bias_init(targets: &[Vec<f32>], classes: usize) -> Vec<f32> {
    let n = targets.len().max(1) as f64;
    (0..classes)
        .map(|c| {
            let p = (targets.iter().map(|t| f64::from(t[c])).sum::<f64>() / n).clamp(1e-4, 1.0 - 1e-4);
            (p / (1.0 - p)).ln() as f32
        })
        .collect()
}

/// Mean binary cross-entropy with logits, `max(z, 0) − z·t + log(1 + e^−|z|)`.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let relu = logits.relu()?;
    let soft = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok(((relu - (logits * targets)?)? + soft)?.mean_all()?)
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochLog {
    /// Epoch (0-based).
    pub epoch: u64,
    /// Mean total loss.
    pub loss: f64,
    /// Mean class loss (cross-entropy, or binary cross-entropy for multi-label targets).
    pub ce: f64,
    /// Mean smooth-L1 point loss over the samples with a point.
    pub point_loss: f64,
    /// Validation accuracy.
    pub val_accuracy: f64,
    /// Validation localisation error: mean Euclidean distance between the
    /// predicted and the true point (normalised units), over samples with a point.
    pub val_localisation_error: f64,
}

/// Adds `σ·z` (standard normal `z` from `rng`, plane by plane) to the
/// non-core pixels of a planar `3 × n` image whose core mask has `n` pixels.
pub fn noise_non_core(img: &mut [f32], core: &[bool], sigma: f64, rng: &mut Xoshiro256) {
    let n = core.len();
    for ch in 0..3 {
        for (px, &on) in core.iter().enumerate() {
            if !on {
                img[ch * n + px] += (sigma * rng.gauss()) as f32;
            }
        }
    }
}

/// The central difference `(L(x + εv) − L(x − εv)) / 2ε` of `loss` (on the
/// class logits) along `v`: the directional derivative of the loss at `x`,
/// differentiable with respect to the network's parameters.
pub fn directional_derivative(
    net: &SmallCnn,
    x: &Tensor,
    v: &Tensor,
    eps: f64,
    loss: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let step = (v * eps)?;
    let up = loss(&net.class_head.forward(&net.features(&(x + &step)?)?)?)?;
    let down = loss(&net.class_head.forward(&net.features(&(x - &step)?)?)?)?;
    Ok(((up - down)? / (2.0 * eps))?)
}

/// Smooth-L1 (Huber with β = 1) averaged over every element.
pub fn smooth_l1(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    let d = (pred - target)?.abs()?;
    let quad = (d.sqr()? * 0.5)?;
    let lin = (&d - 0.5)?;
    let small = d.lt(1.0)?;
    Ok(small.where_cond(&quad, &lin)?.mean_all()?)
}

fn stream(seed: u64, purpose: u64, a: u64, b: u64) -> Xoshiro256 {
    Xoshiro256::from_seed(mix64(seed ^ mix64(purpose) ^ mix64(a.wrapping_mul(0x9e37_79b9) ^ mix64(b + 1))))
}

/// The model's validation numbers on `data` (no augmentation): top-1
/// accuracy and the mean Euclidean error of the predicted points over the
/// (sample, slot) targets present.
pub fn validate(net: &SmallCnn, data: &MultitaskData, device: &Device) -> Result<(f64, f64)> {
    let n = data.images.len();
    if n == 0 {
        return Ok((f64::NAN, f64::NAN));
    }
    let (mut right, mut err, mut with_point) = (0usize, 0.0f64, 0usize);
    for start in (0..n).step_by(64) {
        let end = (start + 64).min(n);
        let flat: Vec<f32> = data.images[start..end].iter().flatten().copied().collect();
        let x = Tensor::from_vec(flat, (end - start, 3, data.size, data.size), device)?;
        let f = net.features(&x)?;
        let logits = net.class_head.forward(&f)?.to_vec2::<f32>()?;
        let pts = net.point_head.forward(&f)?.to_vec2::<f32>()?;
        for (k, i) in (start..end).enumerate() {
            let best = (0..logits[k].len()).max_by(|&a, &b| logits[k][a].total_cmp(&logits[k][b])).unwrap_or(0);
            // Multi-label: the top-1 is right when its target is at least 0.5.
            right += usize::from(match &data.soft {
                Some(t) => t[i][best] >= 0.5,
                None => best as u32 == data.labels[i],
            });
            for (slot, (px, py)) in data.targets(i) {
                let (qx, qy) = (f64::from(pts[k][2 * slot]), f64::from(pts[k][2 * slot + 1]));
                err += ((qx - px).powi(2) + (qy - py).powi(2)).sqrt();
                with_point += 1;
            }
        }
    }
    Ok((right as f64 / n as f64, if with_point > 0 { err / with_point as f64 } else { f64::NAN }))
}

/// Sets every variable of a ViT backbone from `path` (timm/DINO names;
/// other tensors in the file, such as a classifier head, are ignored); a
/// position embedding of another grid is resampled to `variant.pos_grid`.
fn load_vit_backbone(map: &VarMap, path: &Path, variant: crate::VitVariant, device: &Device) -> Result<()> {
    let file = read_safetensors(path, device)?;
    let vars = map.data().lock().map_err(|_| Error::Invalid("variable map poisoned".into()))?;
    for (name, var) in vars.iter() {
        let t = file.get(name.as_str()).ok_or_else(|| Error::Weights {
            path: path.to_path_buf(),
            message: format!("no tensor {name:?}; cannot start the ViT backbone from it (expected timm/DINO names)"),
        })?;
        let t = t.to_dtype(DType::F32)?;
        let t = if name == "pos_embed" && t.dims() != var.dims() {
            crate::vit::interpolate_pos_embed_with(&t, variant.pos_grid, variant.pos_grid, variant.pos_interp)?
        } else {
            t
        };
        if t.dims() != var.dims() {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                message: format!("tensor {name:?} has shape {:?}; the backbone expects {:?}", t.dims(), var.dims()),
            });
        }
        var.set(&t)?;
    }
    Ok(())
}

/// The checkpoint file of a run folder.
pub const MULTITASK_CHECKPOINT: &str = "multitask.safetensors";

/// Trains [`SmallCnn`] on `train` with `cfg`, validating on `val` after
/// every epoch; checkpoints into `dir` (resuming from it when `resume`).
/// `progress` gets every epoch's log; returning `Break` stops after a
/// checkpoint. Returns the network and the logs of the epochs run.
pub fn train_multitask(
    train: &MultitaskData,
    val: &MultitaskData,
    cfg: &MultitaskConfig,
    dir: Option<&Path>,
    resume: bool,
    device: &Device,
    mut progress: impl FnMut(&EpochLog) -> ControlFlow<()>,
) -> Result<(SmallCnn, Vec<EpochLog>)> {
    if cfg.batch_size == 0 || train.images.is_empty() {
        return Err(Error::Invalid("training needs at least one sample and a batch size of at least 1".into()));
    }
    if !(cfg.lambda.is_finite() && cfg.lambda >= 0.0) {
        return Err(Error::Invalid(format!("lambda {}: expected a number >= 0", cfg.lambda)));
    }
    if let Some(bad) = train.labels.iter().find(|&&l| l as usize >= cfg.classes) {
        return Err(Error::Invalid(format!("label {bad} is not below the {} classes", cfg.classes)));
    }
    if let Some(t) = &train.soft {
        if t.len() != train.images.len() {
            return Err(Error::Invalid(format!("{} multi-label targets for {} images", t.len(), train.images.len())));
        }
        let bad =
            t.iter().enumerate().find(|(_, r)| r.len() != cfg.classes || r.iter().any(|v| !(0.0..=1.0).contains(v)));
        if let Some((i, row)) = bad {
            return Err(Error::Invalid(format!(
                "multi-label target of image {i}: {} values {row:?}; expected {} values in [0, 1]",
                row.len(),
                cfg.classes
            )));
        }
    }
    if let Some(c) = cfg.corm {
        let m = train.masks.as_ref().ok_or_else(|| Error::Invalid("CoRM training needs core masks".into()))?;
        if m.len() != train.images.len() || m.iter().any(|x| x.len() != train.size * train.size) {
            return Err(Error::Invalid(format!(
                "core masks: expected {} masks of {} pixels",
                train.images.len(),
                train.size * train.size
            )));
        }
        if !((0.0..=1.0).contains(&c.p) && c.sigma >= 0.0 && c.penalty >= 0.0 && c.eps > 0.0) {
            return Err(Error::Invalid(format!(
                "CoRM settings {c:?}: expected p in [0, 1], sigma, penalty >= 0, eps > 0"
            )));
        }
    }
    let slots = if train.class_points.is_some() { cfg.classes } else { 1 };
    if val.class_points.is_some() != train.class_points.is_some() {
        return Err(Error::Invalid("per-class points in one of the training and validation sets only".into()));
    }
    for d in [train, val] {
        if let Some(c) = &d.class_points {
            if c.len() != d.images.len() {
                return Err(Error::Invalid(format!("{} per-class point lists for {} images", c.len(), d.images.len())));
            }
            let bad = c
                .iter()
                .enumerate()
                .find_map(|(i, v)| v.iter().find(|(k, _)| *k as usize >= cfg.classes).map(|x| (i, x.0)));
            if let Some((i, k)) = bad {
                return Err(Error::Invalid(format!(
                    "per-class point of image {i}: class {k} is not below the {} classes",
                    cfg.classes
                )));
            }
        }
    }
    let (lo, hi) = cfg.smoothing;
    if !(0.0 <= lo && lo < hi && hi <= 1.0) {
        return Err(Error::Invalid(format!("smoothing range ({lo}, {hi}): expected 0 <= lo < hi <= 1")));
    }
    let size = train.size;
    let varmap = VarMap::new();
    let backbone_map = VarMap::new();
    // Seeded initialisation: candle's own initialisers draw from a global generator, so the
    // variables are created with its defaults and then overwritten from our stream.
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let (net, pretrained) = match &cfg.backbone {
        BackboneChoice::Small => (SmallCnn::new(vb, size, cfg.classes, slots)?, None),
        BackboneChoice::ResNet { blocks, stem, widths, weights } => {
            let rc = crate::ResNetConfig { blocks: *blocks, stem: *stem, widths: *widths, classes: cfg.classes };
            let bb = VarBuilder::from_varmap(&backbone_map, DType::F32, device);
            (SmallCnn::resnet(bb, vb, &rc, cfg.classes, slots)?, weights.clone())
        }
        choice @ BackboneChoice::Vit { patch, weights, .. } => {
            if *patch == 0 || !size.is_multiple_of(*patch) {
                return Err(Error::Invalid(format!("image side {size}: expected a multiple of the ViT patch {patch}")));
            }
            let (vc, variant) = choice.vit_shape(size).ok_or_else(|| Error::Invalid("not a ViT".into()))?;
            let bb = VarBuilder::from_varmap(&backbone_map, DType::F32, device);
            (SmallCnn::vit(bb, vb, vc, variant, cfg.classes, slots)?, weights.clone())
        }
    };
    let collect = |m: &VarMap, prefix: &str| -> Result<Vec<(String, Var)>> {
        Ok(m.data()
            .lock()
            .map_err(|_| Error::Invalid("variable map poisoned".into()))?
            .iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
            .collect())
    };
    let mut names = collect(&varmap, "")?;
    names.extend(collect(&backbone_map, "backbone.")?);
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (name, var)) in names.iter().enumerate() {
        let dims = var.dims().to_vec();
        // BatchNorm (ResNet) and LayerNorm (ViT: `norm`, `norm1`, `norm2`) start as the identity.
        let is_bn = name.contains(".bn")
            || name.contains("bn1.")
            || name.contains("downsample.1")
            || name.contains(".norm")
            || name.starts_with("backbone.norm");
        let constant = if name.ends_with("running_mean") || (is_bn && name.ends_with("bias")) {
            Some(0.0)
        } else if name.ends_with("running_var") || (is_bn && name.ends_with("weight")) || name.ends_with(".gamma") {
            Some(1.0)
        } else {
            None
        };
        let fan_in: usize = if dims.len() > 1 { dims[1..].iter().product() } else { 1 };
        let token = name.ends_with("cls_token") || name.ends_with("pos_embed") || name.ends_with("register_tokens");
        let bound = if name.ends_with("bias") {
            0.0
        } else if token {
            // Learned tokens and position embeddings: small (timm draws them with std 0.02).
            0.02
        } else {
            (6.0 / fan_in as f64).sqrt() * 0.5
        };
        let mut rng = stream(cfg.seed, 1, i as u64, 0);
        let vals: Vec<f32> = (0..var.elem_count())
            .map(|_| constant.unwrap_or_else(|| (2.0 * rng.unit() - 1.0) * bound) as f32)
            .collect();
        var.set(&Tensor::from_vec(vals, dims.as_slice(), device)?)?;
    }
    if let (Some(w), Some((_, variant))) = (&pretrained, cfg.backbone.vit_shape(size)) {
        load_vit_backbone(&backbone_map, w, variant, device)?;
    } else if let Some(w) = &pretrained {
        let mut m = backbone_map;
        m.load(w).map_err(|e| Error::Weights {
            path: w.clone(),
            message: format!("cannot start the ResNet backbone from it: {e} (expected torchvision-named tensors)"),
        })?;
    }
    if let (true, Some(t)) = (cfg.bias_init, &train.soft) {
        if let Some((_, b)) = names.iter().find(|(n, _)| n == "class_head.bias") {
            b.set(&Tensor::from_vec(bias_init(t, cfg.classes), cfg.classes, device)?)?;
        }
    }
    let params: Vec<(String, Var, bool)> = names
        .iter()
        .map(|(n, v)| (n.clone(), v.clone(), !n.ends_with("bias") && (cfg.head_decay || !n.starts_with("class_head"))))
        .collect();
    let mut opt = Optimizer::new(OptimizerConfig::adamw(cfg.lr, cfg.weight_decay), params)?;
    let mut start_epoch = 0u64;
    let ckpt: Option<PathBuf> = dir.map(|d| d.join(MULTITASK_CHECKPOINT));
    if let Some(p) = &ckpt {
        if p.exists() && !resume {
            return Err(Error::Invalid(format!(
                "{} exists; continue it with resume or choose another folder",
                p.display()
            )));
        }
        if resume {
            let t = read_safetensors(p, device)?;
            for (n, v) in &names {
                let saved = t.get(&format!("model.{n}")).ok_or_else(|| Error::Weights {
                    path: p.clone(),
                    message: format!("no tensor model.{n}; not a checkpoint of this network"),
                })?;
                v.set(saved)?;
            }
            opt.load_state(|k| t.get(&format!("optim.{k}")).cloned(), p)?;
            start_epoch = t
                .get("train.epoch")
                .and_then(|e| e.to_vec1::<i64>().ok())
                .and_then(|v| v.first().copied())
                .unwrap_or(0) as u64;
        }
    }
    let n = train.images.len();
    let mut logs = Vec::new();
    for epoch in start_epoch..cfg.epochs {
        net.set_train(true);
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = stream(cfg.seed, 2, epoch, 0);
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let (mut sum, mut sum_ce, mut sum_pt, mut pt_rows) = (0.0f64, 0.0f64, 0.0f64, 0usize);
        for batch in order.chunks(cfg.batch_size) {
            let mut xs = Vec::with_capacity(batch.len() * 3 * size * size);
            let mut ys = Vec::with_capacity(batch.len());
            let mut soft = Vec::new();
            let mut directions: Vec<f32> = Vec::new();
            let mut targets = Vec::new();
            let mut with = Vec::new();
            for (k, &i) in batch.iter().enumerate() {
                let mut r = stream(cfg.seed, 3, epoch, i as u64);
                let mut points = train.targets(i);
                if cfg.random_points {
                    for (slot, p) in points.iter_mut() {
                        let mut pr = stream(cfg.seed, 4, i as u64, *slot as u64);
                        *p = (pr.unit(), pr.unit());
                    }
                }
                let mut geometry = None;
                let (mut img, kept) = if cfg.augment {
                    let crop = random_resized_crop(&mut r, size, size, (0.5, 1.0), (0.75, 4.0 / 3.0));
                    let flip = r.unit() < 0.5;
                    geometry = Some((crop, flip));
                    (
                        crop_resize(&train.images[i], size, size, crop, size, flip),
                        points
                            .iter()
                            .filter_map(|&(slot, p)| transform_point(p, size, size, crop, flip).map(|q| (slot, q)))
                            .collect(),
                    )
                } else {
                    (train.images[i].clone(), points)
                };
                if let (Some(c), Some(masks)) = (cfg.corm, &train.masks) {
                    // The core mask through the same crop and flip (bilinear, then > 0.5).
                    let core: Vec<bool> = match geometry {
                        Some((crop, flip)) => {
                            let plane: Vec<f32> = masks[i].iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
                            let three: Vec<f32> = plane.iter().chain(&plane).chain(&plane).copied().collect();
                            crop_resize(&three, size, size, crop, size, flip)[..size * size]
                                .iter()
                                .map(|&v| v > 0.5)
                                .collect()
                        }
                        None => masks[i].clone(),
                    };
                    let mut nr = stream(cfg.seed, 5, epoch, i as u64);
                    if nr.unit() < c.p {
                        noise_non_core(&mut img, &core, c.sigma, &mut nr);
                    }
                    if c.penalty > 0.0 {
                        for _ in 0..3 {
                            for &on in &core {
                                directions.push(if on { 0.0 } else { nr.gauss() as f32 });
                            }
                        }
                    }
                }
                xs.extend(img);
                ys.push(train.labels[i]);
                if let Some(t) = &train.soft {
                    soft.extend(t[i].iter().map(|&v| (lo + (hi - lo) * f64::from(v)) as f32));
                }
                for (slot, (px, py)) in kept {
                    targets.extend([px as f32, py as f32]);
                    // Row of the (sample, slot) pair in the point head's output seen as [B·slots, 2].
                    with.push((k * slots + slot) as u32);
                }
            }
            let x = Tensor::from_vec(xs, (batch.len(), 3, size, size), device)?;
            let f = net.features(&x)?;
            let soft_t = if train.soft.is_some() {
                Some(Tensor::from_vec(soft, (batch.len(), cfg.classes), device)?)
            } else {
                None
            };
            let class_loss = |logits: &Tensor| -> Result<Tensor> {
                match &soft_t {
                    Some(t) => bce_with_logits(logits, t),
                    None => cross_entropy(logits, &ys, 0.0),
                }
            };
            let ce = class_loss(&net.class_head.forward(&f)?)?;
            let mut loss = ce.clone();
            if let (Some(c), false) = (cfg.corm, directions.is_empty()) {
                let v = Tensor::from_vec(directions, (batch.len(), 3, size, size), device)?;
                // "Right for the right reasons": the summed log-probabilities, whose input gradient
                // does not vanish as the model grows confident (the loss's own gradient would).
                let score = |logits: &Tensor| -> Result<Tensor> {
                    Ok((candle_nn::ops::log_softmax(logits, 1)?.sum_all()? / logits.dim(0)? as f64)?)
                };
                let d = directional_derivative(&net, &x, &v, c.eps, &score)?;
                loss = (loss + (d.sqr()? * c.penalty)?)?;
            }
            let mut pt_val = 0.0;
            if !with.is_empty() && cfg.lambda > 0.0 {
                let idx = Tensor::from_vec(with.clone(), with.len(), device)?;
                let all = net.point_head.forward(&f)?.reshape((batch.len() * slots, 2))?;
                let pred = all.index_select(&idx, 0)?;
                let tgt = Tensor::from_vec(targets, (with.len(), 2), device)?;
                let pl = smooth_l1(&pred, &tgt)?;
                pt_val = f64::from(pl.to_scalar::<f32>()?);
                loss = (loss + (pl * cfg.lambda)?)?;
            }
            let grads = loss.backward()?;
            opt.step(&grads, cfg.lr)?;
            let b = batch.len() as f64;
            sum += f64::from(loss.to_scalar::<f32>()?) * b;
            sum_ce += f64::from(ce.to_scalar::<f32>()?) * b;
            sum_pt += pt_val * with.len() as f64;
            pt_rows += with.len();
        }
        net.set_train(false);
        let (acc, loc) = validate(&net, val, device)?;
        let log = EpochLog {
            epoch,
            loss: sum / n as f64,
            ce: sum_ce / n as f64,
            point_loss: if pt_rows > 0 { sum_pt / pt_rows as f64 } else { f64::NAN },
            val_accuracy: acc,
            val_localisation_error: loc,
        };
        if let Some(p) = &ckpt {
            let mut t: HashMap<String, Tensor> = HashMap::new();
            for (name, v) in &names {
                t.insert(format!("model.{name}"), v.as_tensor().clone());
            }
            for (k, v) in opt.state_tensors()? {
                t.insert(format!("optim.{k}"), v);
            }
            t.insert("train.epoch".into(), Tensor::from_vec(vec![epoch as i64 + 1], 1, device)?);
            write_safetensors(&t, p)?;
        }
        let stop = progress(&log).is_break();
        logs.push(log);
        if stop {
            break;
        }
    }
    Ok((net, logs))
}
