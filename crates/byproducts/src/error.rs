//! Errors of the byproduct readers and analyses.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong reading or analysing annotation byproducts. Every
/// variant names the file and, where there is one, the position in it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file (or a member of an archive) is not in the expected layout.
    #[error("{path}: {location}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Where in it: archive member and byte offset, record index, line.
        location: String,
        /// What was found and what was expected.
        message: String,
    },
    /// Invalid arguments to an analysis (empty input, bad parameter).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A layout error at `location` of `path`.
    pub fn format(path: impl Into<PathBuf>, location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Format { path: path.into(), location: location.into(), message: message.into() }
    }
}
