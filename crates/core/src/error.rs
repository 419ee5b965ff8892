//! Typed errors for every fallible operation in the core library.
//!
//! Every error that comes from user input names the file and the position
//! (line, row, key or array) and says what was expected, so that the
//! command-line front end can print it unchanged.

use std::path::{Path, PathBuf};

/// Result alias used throughout `labelscope-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised by `labelscope-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but its content is not what was expected.
    #[error("{}: {location}: {message}", path.display())]
    Format {
        /// The file involved.
        path: PathBuf,
        /// Where in the file: `line 3`, `row 17, column 2`, `key "abc.jpeg"`, `array "scores"`.
        location: String,
        /// What was found and what was expected.
        message: String,
    },
    /// Inputs that are each well formed but do not fit together
    /// (image ids that do not join, row counts that differ, ...).
    #[error("{0}")]
    Mismatch(String),
    /// An invalid argument or option value.
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
}
