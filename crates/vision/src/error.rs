//! Typed errors of `labelscope-vision`.
//!
//! Errors caused by user input name the file (where there is one) and say
//! what was expected.

use std::path::PathBuf;

/// Result alias used throughout `labelscope-vision`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised by `labelscope-vision`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image file could not be opened or decoded.
    #[error("{}: {message}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What went wrong and what was expected.
        message: String,
    },
    /// Buffers whose sizes do not fit together (a mask that is not
    /// `height * width` long, an image of another size, ...).
    #[error("{what}: expected {expected}, found {found}")]
    Mismatch {
        /// Which input did not fit.
        what: String,
        /// The expected size or shape.
        expected: String,
        /// The size or shape found.
        found: String,
    },
    /// An invalid argument or parameter value.
    #[error("{0}")]
    Invalid(String),
    /// An error from `labelscope-core` (atomic file output, ...).
    #[error(transparent)]
    Core(#[from] labelscope_core::error::Error),
}

impl Error {
    /// A size mismatch on `what`.
    pub fn mismatch(what: impl Into<String>, expected: impl ToString, found: impl ToString) -> Self {
        Error::Mismatch { what: what.into(), expected: expected.to_string(), found: found.to_string() }
    }
}
