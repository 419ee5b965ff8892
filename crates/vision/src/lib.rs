//! Image-side operations of labelscope: decoding, mask resampling, dense-CRF
//! refinement of binary masks and overlays.
//!
//! * [`image`]: JPEG/PNG decoding to RGB and bilinear resizing;
//! * [`decode`], [`resample`], [`preprocess`], [`loader`]: Pillow-exact
//!   decoding and resizing, torchvision crops and normalisation, named
//!   recipes and a batched parallel loader;
//! * [`mask`]: patch-grid upsampling, hole filling, IoU, bounding boxes;
//! * [`crf`]: dense-CRF refinement (MaskCut post-processing), fast
//!   (permutohedral lattice) and brute force;
//! * [`permutohedral`]: the permutohedral-lattice Gaussian filter;
//! * [`overlay`]: mask and box overlays, atomic PNG output.

#![warn(missing_docs)]

pub mod crf;
pub mod decode;
pub mod error;
pub mod image;
pub mod jpeg;
pub mod loader;
pub mod mask;
pub mod overlay;
pub mod permutohedral;
pub mod preprocess;
pub mod resample;

pub use crate::crf::{brute_force, dense_crf, refine, CrfOutput, CrfParams, DenseCrf};
pub use crate::error::{Error, Result};
pub use crate::image::{load_rgb, resize_rgb, RgbImage};
pub use crate::mask::{bbox, fill_holes, iou, upsample_nearest};
pub use crate::overlay::{draw_overlay, save_png_atomic};
