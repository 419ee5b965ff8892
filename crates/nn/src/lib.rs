//! The neural runtime of labelscope, on candle, from local `.safetensors`
//! weights (CPU by default; the `cuda` feature adds NVIDIA GPUs):
//!
//! * [`vit`]: DINO, DINOv2 (registers, LayerScale, SwiGLU) and timm-layout
//!   ViTs — CLS, register and patch tokens, the last block's q/k/v;
//! * [`vit_classifier`]: timm ViT/DeiT classifiers; [`resnet`]: torchvision
//!   Bottleneck ResNets; [`classifier`]: either, chosen by name;
//! * [`gradcam`](mod@gradcam): GradCAM and input gradients for any [`CamTarget`].
//!
//! Every model is checked against PyTorch on committed fixtures (see the
//! crate's tests and `tests/reference/`).

pub mod classifier;
pub mod error;
pub mod gradcam;
pub mod head;
pub mod multitask;
pub mod ops;
pub mod optim;
pub mod resnet;
mod resnet_infer;
mod cpu;
mod vit_infer;
pub mod train;
pub mod vit;
pub mod vit_classifier;

pub use classifier::{Classifier, Logits, CLASSIFIERS};
pub use error::{Error, Result};
pub use gradcam::{
    argmax_rows, gradcam, gradcam_by, gradcam_predicted, input_gradient, upsample_normalize, CamLayout, CamTarget,
    GradCamOutput,
};
pub use head::{HeadConfig, HeadKind, RegionHead};
pub use optim::{cross_entropy, LrSchedule, Optimizer, OptimizerConfig};
pub use resnet::{ResNet, ResNetConfig, ResNetOutput};
pub use train::{
    evaluate, train, ClassCounts, EpochSummary, HeldOutReport, Progress, RunOptions, StepStats, TrainConfig, TrainData,
    TrainOutcome, Trainer,
};
pub use vit::{preset, Ffn, PosInterp, Vit, VitConfig, VitOutput, VitVariant};
pub use vit_classifier::{ClassifierArch, ClassifierOutput, VitClassifier};
