//! The neural runtime of labelscope: self-supervised ViTs (DINO layout) for
//! patch features and attention keys, on candle, from local `.safetensors`
//! weights. CPU by default; the `cuda` feature adds NVIDIA GPUs.
//!
//! Work in progress (issue "Neural runtime"): the DINO ViT forward pass with
//! position-embedding interpolation and last-block keys/queries/values is
//! here and checked against an independent numpy forward pass; image
//! preprocessing, classifiers, gradients and the weight converter follow.

pub mod classifier;
pub mod error;
pub mod gradcam;
pub mod resnet;
pub mod vit;
pub mod vit_classifier;

pub use classifier::{Classifier, Logits, CLASSIFIERS};
pub use error::{Error, Result};
pub use gradcam::{gradcam, input_gradient, upsample_normalize, CamLayout, CamTarget, GradCamOutput};
pub use resnet::{ResNet, ResNetConfig, ResNetOutput};
pub use vit::{preset, Ffn, PosInterp, Vit, VitConfig, VitOutput, VitVariant};
pub use vit_classifier::{ClassifierArch, ClassifierOutput, VitClassifier};
