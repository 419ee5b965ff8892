//! Errors of the spurious-feature metrics.

use std::path::PathBuf;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that does not make sense (sizes, parameters).
    #[error("{0}")]
    Invalid(String),
    /// A file that cannot be read, with what was expected.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// From the core crate.
    #[error(transparent)]
    Core(#[from] labelscope_core::error::Error),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
