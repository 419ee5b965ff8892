//! Errors of `labelscope-proposals`.

use std::path::{Path, PathBuf};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised while computing, storing, merging or evaluating proposals.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the core library (file formats, normalized cut, RLE).
    #[error(transparent)]
    Core(#[from] labelscope_core::Error),
    /// An error of the image library (decoding, CRF).
    #[error(transparent)]
    Vision(#[from] labelscope_vision::Error),
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
        /// Where in the file (`line 3`, `array "keys"`, ...).
        location: String,
        /// What was found and what was expected.
        message: String,
    },
    /// An error about one image of a run, with the image's id.
    #[error("image {id:?}: {source}")]
    Image {
        /// The image id.
        id: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// Inputs that do not fit together.
    #[error("{0}")]
    Mismatch(String),
    /// An invalid option value.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// A content error in `path` at `location`.
    pub fn format(path: impl AsRef<Path>, location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Format { path: path.as_ref().to_path_buf(), location: location.into(), message: message.into() }
    }

    /// Attaches the image id to an error.
    pub fn for_image(self, id: &str) -> Self {
        Error::Image { id: id.to_string(), source: Box::new(self) }
    }
}
