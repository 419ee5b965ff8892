//! Errors of `labelscope-nn`.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised by the neural runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A weights file is missing a tensor, has a tensor of the wrong shape or dtype, or cannot be read.
    #[error("{}: {message}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// The first problem found (names the tensor).
        message: String,
    },
    /// An input of the wrong shape.
    #[error("{0}")]
    Shape(String),
    /// An invalid configuration or option.
    #[error("{0}")]
    Invalid(String),
    /// An error of the tensor library.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
