//! ViT/DeiT image classifiers in the timm layout (`vit_small_patch16_224`,
//! `vit_base_patch16_224`, `deit_small_patch16_224`, `deit_base_patch16_224`):
//! the [`crate::vit`] trunk (CLS token, position embedding, blocks, final
//! `norm`) and a linear `head` on the CLS token:
//! `logits = head(norm(x)[:, 0])`; the pre-logits CLS vector `norm(x)[:, 0]`
//! is returned as the image's features.
//!
//! [`VitClassifier`] implements [`CamTarget`] with the target layer of the
//! usual ViT GradCAM recipe: the last block's `norm1` output, as tokens
//! ([`CamLayout::Tokens`], prefix = CLS + registers).

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use crate::error::{Error, Result};
use crate::gradcam::{CamLayout, CamTarget};
use crate::vit::{linear_to, open_safetensors, weights_error, Vit, VitConfig, VitVariant};

/// A known classifier architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifierArch {
    /// DeiT-S/16 at 224 px (D 384, 12 blocks, 6 heads), 22,050,664 parameters.
    DeitSmall16,
    /// DeiT-B/16 at 224 px (D 768, 12 blocks, 12 heads), 86,567,656 parameters.
    DeitBase16,
    /// timm `vit_small_patch16_224` (same shapes as DeiT-S).
    VitSmall16,
    /// timm `vit_base_patch16_224` (same shapes as DeiT-B).
    VitBase16,
}

impl ClassifierArch {
    /// The architecture of a timm model name (`deit_small_patch16_224`, ...; `-` and `_` alike).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.replace('-', "_").as_str() {
            "deit_small_patch16_224" => Some(ClassifierArch::DeitSmall16),
            "deit_base_patch16_224" => Some(ClassifierArch::DeitBase16),
            "vit_small_patch16_224" => Some(ClassifierArch::VitSmall16),
            "vit_base_patch16_224" => Some(ClassifierArch::VitBase16),
            _ => None,
        }
    }

    /// The trunk configuration.
    pub fn config(self) -> VitConfig {
        match self {
            ClassifierArch::DeitSmall16 | ClassifierArch::VitSmall16 => VitConfig::small(16),
            ClassifierArch::DeitBase16 | ClassifierArch::VitBase16 => VitConfig::base(16),
        }
    }
}

/// A ViT classifier with loaded weights.
pub struct VitClassifier {
    vit: Vit,
    head: Linear,
    classes: usize,
}

/// Outputs of [`VitClassifier::forward`].
#[derive(Debug)]
pub struct ClassifierOutput {
    /// Logits `[B, classes]`.
    pub logits: Tensor,
    /// Pre-logits features (the CLS token after the final norm), `[B, D]`.
    pub features: Tensor,
    /// Patch grid `(h, w)`.
    pub grid: (usize, usize),
}

impl VitClassifier {
    /// Builds a classifier with `classes` outputs: the trunk of `cfg`/`variant` (see
    /// [`Vit::with_variant`]) and `head.weight` `[classes, D]`, `head.bias` `[classes]`.
    pub fn new(cfg: VitConfig, variant: VitVariant, classes: usize, vb: VarBuilder) -> Result<Self> {
        if classes == 0 {
            return Err(Error::Invalid("a classifier needs at least one class".into()));
        }
        let vit = Vit::with_variant(cfg, variant, vb.clone())?;
        let head = linear(cfg.dim, classes, vb.pp("head"))?;
        Ok(VitClassifier { vit, head, classes })
    }

    /// Loads a timm-layout `.safetensors` file (f32 on `device`); the number of classes is read
    /// from `head.weight`.
    pub fn from_safetensors(
        cfg: VitConfig,
        variant: VitVariant,
        path: &std::path::Path,
        device: &Device,
    ) -> Result<Self> {
        let vb = open_safetensors(path, device)?;
        let classes = vb
            .get_unchecked("head.weight")
            .map_err(|e| Error::Weights { path: path.to_path_buf(), message: e.to_string() })?
            .dims()
            .first()
            .copied()
            .unwrap_or(0);
        VitClassifier::new(cfg, variant, classes, vb).map_err(|e| weights_error(path, e))
    }

    /// Loads one of the known timm classifiers.
    pub fn from_safetensors_arch(arch: ClassifierArch, path: &std::path::Path, device: &Device) -> Result<Self> {
        let cfg = arch.config();
        VitClassifier::from_safetensors(cfg, VitVariant::timm(cfg.patch), path, device)
    }

    /// The classifier with its weights in `dtype` (see [`Vit::to_dtype`]);
    /// logits and features are returned as f32.
    pub fn to_dtype(&self, dtype: DType) -> Result<VitClassifier> {
        Ok(VitClassifier { vit: self.vit.to_dtype(dtype)?, head: linear_to(&self.head, dtype)?, classes: self.classes })
    }

    /// The trunk.
    pub fn vit(&self) -> &Vit {
        &self.vit
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Number of parameters (trunk and head).
    pub fn num_parameters(&self) -> usize {
        self.vit.num_parameters() + self.head.weight().elem_count() + self.head.bias().map_or(0, |b| b.elem_count())
    }

    fn run(&self, x: &Tensor, diff: bool, hook: Option<crate::vit::Hook<'_>>, cut: bool) -> Result<ClassifierOutput> {
        let t = self.vit.trunk(x, diff, hook, cut)?;
        let features = t.tokens.narrow(1, 0, 1)?.squeeze(1)?;
        let logits = self.head.forward(&features)?.to_dtype(DType::F32)?;
        Ok(ClassifierOutput { logits, features: features.to_dtype(DType::F32)?, grid: t.grid })
    }

    /// Logits and pre-logits features of `x` `[B, 3, H, W]` on the fast path.
    pub fn forward(&self, x: &Tensor) -> Result<ClassifierOutput> {
        self.run(x, false, None, false)
    }

    /// As [`VitClassifier::forward`] through differentiable ops only.
    pub fn forward_diff(&self, x: &Tensor) -> Result<ClassifierOutput> {
        self.run(x, true, None, false)
    }
}

impl CamTarget for VitClassifier {
    fn forward_hooked(
        &self,
        x: &Tensor,
        hook: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, CamLayout)> {
        self.hooked(x, hook, false)
    }

    fn forward_cam(&self, x: &Tensor, hook: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<(Tensor, CamLayout)> {
        self.hooked(x, hook, true)
    }
}

impl VitClassifier {
    fn hooked(
        &self,
        x: &Tensor,
        hook: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
        cut: bool,
    ) -> Result<(Tensor, CamLayout)> {
        if self.vit.dtype() != DType::F32 {
            return Err(Error::Invalid(format!(
                "gradients (GradCAM, saliency) need the model in f32, not {:?}",
                self.vit.dtype()
            )));
        }
        let o = self.run(x, true, Some(hook), cut)?;
        Ok((o.logits, CamLayout::Tokens { prefix: self.vit.prefix_tokens(), grid: o.grid }))
    }
}
