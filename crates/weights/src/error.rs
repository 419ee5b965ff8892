//! Typed errors of `labelscope-weights`.
//!
//! Every error caused by a file names the file and the place inside it (a zip
//! member, a pickle byte offset, a tensor name), so that the command-line front
//! end can print it unchanged.

use std::path::{Path, PathBuf};

/// Result alias used throughout `labelscope-weights`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised by `labelscope-weights`.
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
    /// The file was read but its content is malformed or unsupported.
    #[error("{}: {location}: {message}", path.display())]
    Format {
        /// The file involved.
        path: PathBuf,
        /// Where in the file: `pickle, byte 1234`, `zip member "archive/data/0"`, `tensor "x"`.
        location: String,
        /// What was found and what was expected.
        message: String,
    },
    /// The pickle refers to a Python global that this reader refuses to
    /// interpret (anything that is not a known tensor or container constructor).
    #[error("{}: pickle, byte {offset}: refusing to load the Python global {name:?}: only tensors, storages and dicts are allowed", path.display())]
    ForbiddenGlobal {
        /// The checkpoint.
        path: PathBuf,
        /// Byte offset of the opcode inside the pickle.
        offset: usize,
        /// `module.name` of the global.
        name: String,
    },
    /// The tensors do not match the model they are declared to be (names,
    /// shapes or dtypes; the message names the first mismatching tensor).
    #[error("{}: does not match model {model}: {message}", path.display())]
    Model {
        /// The checkpoint or converted file.
        path: PathBuf,
        /// Registry name of the model (or `custom` for a config file).
        model: String,
        /// The first problem found, and the unexpected tensors.
        message: String,
    },
    /// The file's SHA-256 differs from the published one.
    #[error("{}: {message}", path.display())]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Registry name of the model.
        model: String,
        /// The checksums compared and what to do.
        message: String,
    },
    /// An invalid argument or option value.
    #[error("{0}")]
    Invalid(String),
    /// An error from `labelscope-core` (safetensors reading, atomic writing).
    #[error(transparent)]
    Core(#[from] labelscope_core::Error),
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
