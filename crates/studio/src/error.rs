//! Errors of the studio library.

use std::path::PathBuf;

/// What can go wrong in the studio.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user-supplied file (manifest, import) is malformed; names the file,
    /// the position (key path or line) and what was expected.
    #[error("{}: {at}: {msg}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Where in the file (a JSON key path such as `images[3].file`, or a line).
        at: String,
        /// What was wrong and what was expected.
        msg: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database refused a statement or could not be reached.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The database holds something this version cannot use (for example a
    /// newer schema).
    #[error("database: {0}")]
    Schema(String),
    /// A request or argument is invalid.
    #[error("{0}")]
    Invalid(String),
    /// An error of the byproducts library (exports).
    #[error(transparent)]
    Byproducts(#[from] labelscope_byproducts::Error),
    /// An error of the core library (atomic writes, label formats).
    #[error(transparent)]
    Core(#[from] labelscope_core::error::Error),
}

impl Error {
    /// A [`Error::Format`] error.
    pub fn format(path: impl Into<PathBuf>, at: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Format { path: path.into(), at: at.into(), msg: msg.into() }
    }

    /// An [`Error::Io`] error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }
}

/// Result with the studio's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
