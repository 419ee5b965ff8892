//! Spurious-feature metrics in the style of Hard ImageNet (Moayeri et al.,
//! NeurIPS 2022): how much a classifier's decisions rest on the object
//! rather than its surroundings.
//!
//! * [`planar`] — images as planar RGB in `[0, 1]` (after the recipe's
//!   resize and crop, before normalisation) and binary masks.
//! * [`ablation`] — object ablations: Gray, Gray-BBox, Tile.
//! * [`noise`] — foreground / background Gaussian noise and the relative
//!   foreground sensitivity (RFS).
//! * [`saliency`] — alignment of a saliency map (GradCAM) with the object
//!   mask: IoU, Dice, density gap.
//! * [`score`] — class-balanced accuracy and the other summaries.
//! * [`dfr`] — the balanced subset of deep feature reweighting.
//! * [`evaluate`] — the loop over a [`evaluate::Model`] and images with masks.
#![warn(missing_docs)]

pub mod ablation;
pub mod dfr;
pub mod error;
pub mod evaluate;
pub mod noise;
pub mod planar;
pub mod saliency;
pub mod score;

pub use error::{Error, Result};
