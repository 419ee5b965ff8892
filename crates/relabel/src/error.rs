//! Errors of `labelscope-relabel`.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised by the relabeling stages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the core library (file formats, label sets, RLE).
    #[error(transparent)]
    Core(#[from] labelscope_core::Error),
    /// An error of the neural runtime (models, the region head, training).
    #[error(transparent)]
    Nn(#[from] labelscope_nn::Error),
    /// An error of the image library (decoding, overlays).
    #[error(transparent)]
    Vision(#[from] labelscope_vision::Error),
    /// An error of the proposals library (proposal files, COCO).
    #[error(transparent)]
    Proposals(#[from] labelscope_proposals::Error),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is not what was expected.
    #[error("{}: {location}: {message}", path.display())]
    Format {
        /// The file involved.
        path: PathBuf,
        /// Where in the file (`line 3`, `key "labels"`, ...).
        location: String,
        /// What was found and what was expected.
        message: String,
    },
    /// Inputs that do not fit together (shapes, ids, class counts).
    #[error("{0}")]
    Mismatch(String),
    /// An argument or value outside its allowed range.
    #[error("{0}")]
    Invalid(String),
}
