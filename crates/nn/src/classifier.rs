//! One type for every ImageNet classifier this crate runs, chosen by name:
//! torchvision ResNet-50 ([`crate::resnet`]) and the timm ViT/DeiT models
//! ([`crate::vit_classifier`]).
//!
//! [`Classifier::load`] takes a model name (see [`CLASSIFIERS`]) and a
//! `.safetensors` file in that model's layout (what `labelscope weights
//! convert` writes); [`Classifier::forward`] gives logits and the
//! penultimate features; the type implements [`CamTarget`], so
//! [`crate::gradcam()`] and [`crate::input_gradient`] work on either family.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::gradcam::{CamLayout, CamTarget};
use crate::resnet::ResNet;
use crate::vit_classifier::{ClassifierArch, VitClassifier};

/// The classifier names [`Classifier::load`] accepts, with what they are.
pub const CLASSIFIERS: &[(&str, &str)] = &[
    ("resnet50", "torchvision ResNet-50 (v1.5; also resnet50_v2 weights), GradCAM target layer4"),
    ("resnet", "any torchvision-layout Bottleneck ResNet (shapes read from the file)"),
    ("deit_small_patch16_224", "DeiT-S/16 (timm layout), GradCAM target blocks[-1].norm1"),
    ("deit_base_patch16_224", "DeiT-B/16 (timm layout), GradCAM target blocks[-1].norm1"),
    ("vit_small_patch16_224", "timm ViT-S/16, GradCAM target blocks[-1].norm1"),
    ("vit_base_patch16_224", "timm ViT-B/16, GradCAM target blocks[-1].norm1"),
];

/// A loaded classifier of either family.
pub enum Classifier {
    /// A torchvision-layout Bottleneck ResNet.
    ResNet(ResNet),
    /// A timm-layout ViT/DeiT.
    Vit(VitClassifier),
}

/// Logits and features of one batch.
#[derive(Debug)]
pub struct Logits {
    /// `[B, classes]`.
    pub logits: Tensor,
    /// Penultimate features `[B, F]` (ResNet: pooled layer4, 2048; ViT: pre-logits CLS token).
    pub features: Tensor,
}

impl Classifier {
    /// Loads the classifier `name` (one of [`CLASSIFIERS`]; `-` and `_` are alike) from `path`.
    pub fn load(name: &str, path: &Path, device: &Device) -> Result<Self> {
        let key = name.replace('-', "_");
        if key == "resnet50" || key == "resnet50_v2" {
            let model = ResNet::load(path, device)?;
            let cfg = model.config();
            if cfg.blocks != [3, 4, 6, 3] || cfg.widths != [64, 128, 256, 512] || cfg.stem != 64 {
                return Err(Error::Weights {
                    path: path.to_path_buf(),
                    message: format!(
                        "the tensors describe a ResNet with blocks {:?}, widths {:?}, stem {}; expected ResNet-50 \
                         (blocks [3, 4, 6, 3], widths [64, 128, 256, 512], stem 64)",
                        cfg.blocks, cfg.widths, cfg.stem
                    ),
                });
            }
            return Ok(Classifier::ResNet(model));
        }
        if key == "resnet" {
            // Any Bottleneck ResNet in the torchvision layout (shapes read from the file).
            return Ok(Classifier::ResNet(ResNet::load(path, device)?));
        }
        match ClassifierArch::from_name(&key) {
            Some(arch) => Ok(Classifier::Vit(VitClassifier::from_safetensors_arch(arch, path, device)?)),
            None => Err(Error::Invalid(format!(
                "unknown classifier {name:?}; expected one of: {}",
                CLASSIFIERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The classifier computing in `dtype`: f32 for every model; f16 and
    /// bf16 for the ViT/DeiT models (see [`crate::Vit::to_dtype`]) and for
    /// ResNets on a GPU (see [`ResNet::to_dtype`]: their CPU kernels are f32
    /// only).
    pub fn to_dtype(self, dtype: DType) -> Result<Self> {
        match (self, dtype) {
            (m, DType::F32) => Ok(m),
            (Classifier::Vit(m), _) => Ok(Classifier::Vit(m.to_dtype(dtype)?)),
            (Classifier::ResNet(m), _) => Ok(Classifier::ResNet(m.to_dtype(dtype)?)),
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        match self {
            Classifier::ResNet(m) => m.config().classes,
            Classifier::Vit(m) => m.classes(),
        }
    }

    /// Number of learnable parameters.
    pub fn num_parameters(&self) -> usize {
        match self {
            Classifier::ResNet(m) => m.num_parameters(),
            Classifier::Vit(m) => m.num_parameters(),
        }
    }

    /// The input sizes the model accepts: `Some(p)` when H and W must be multiples of `p` (ViT patch).
    pub fn patch(&self) -> Option<usize> {
        match self {
            Classifier::ResNet(_) => None,
            Classifier::Vit(m) => Some(m.vit().config().patch),
        }
    }

    /// Logits and features of `x` `[B, 3, H, W]` (normalised RGB), fast path.
    pub fn forward(&self, x: &Tensor) -> Result<Logits> {
        match self {
            Classifier::ResNet(m) => {
                let o = m.forward(x)?;
                Ok(Logits { logits: o.logits, features: o.features })
            }
            Classifier::Vit(m) => {
                let o = m.forward(x)?;
                Ok(Logits { logits: o.logits, features: o.features })
            }
        }
    }
}

impl CamTarget for Classifier {
    fn forward_hooked(
        &self,
        x: &Tensor,
        hook: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, CamLayout)> {
        match self {
            Classifier::ResNet(m) => m.forward_hooked(x, hook),
            Classifier::Vit(m) => m.forward_hooked(x, hook),
        }
    }

    fn forward_cam(&self, x: &Tensor, hook: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<(Tensor, CamLayout)> {
        match self {
            Classifier::ResNet(m) => m.forward_cam(x, hook),
            Classifier::Vit(m) => m.forward_cam(x, hook),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let e = match Classifier::load("alexnet", Path::new("/nonexistent.safetensors"), &Device::Cpu) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("alexnet must be refused"),
        };
        assert!(e.contains("alexnet") && e.contains("resnet50") && e.contains("deit_small_patch16_224"), "{e}");
    }

    #[test]
    fn missing_file_is_named() {
        for name in ["resnet50", "deit-small-patch16-224"] {
            let e = match Classifier::load(name, Path::new("/nonexistent/w.safetensors"), &Device::Cpu) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("a missing file must be refused"),
            };
            assert!(e.contains("/nonexistent/w.safetensors"), "{name}: {e}");
        }
    }
}
