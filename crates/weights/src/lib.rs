//! Model weights for labelscope: PyTorch checkpoints in, safetensors out.
//!
//! * [`pth`]: reads `torch.save` checkpoints (zip and legacy formats) with a
//!   pickle reader that never executes code ([`pickle`]), finds the state dict
//!   and copies tensors into C order;
//! * [`safetensors`]: writes `.safetensors` files atomically and reads them back;
//! * [`registry`]: known models (architecture, hyperparameters, official file,
//!   checksum) and their expected tensor names and shapes;
//! * [`convert()`]: the whole pipeline, [`verify()`] for existing files and
//!   [`read_config()`] for model loaders ([`mod@convert`]);
//! * [`fetch`]: download over plain HTTP (a local mirror) with the same checks.
#![warn(missing_docs)]

pub mod convert;
pub mod error;
pub mod fetch;
pub mod pickle;
pub mod pth;
pub mod registry;
pub mod safetensors;
pub mod sha256;
pub mod tensor;

pub use convert::{convert, read_config, verify, ConvertOptions, ConvertReport, VerifyReport};
pub use error::{Error, Result};
pub use registry::{ArchConfig, ModelSpec};
pub use tensor::{DType, Tensor};
