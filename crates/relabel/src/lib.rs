//! Automatic multi-label relabeling (Chen, Harun & Kanan 2026): turn
//! object proposals and patch features into spatially grounded multi-labels.
//!
//! The stages are separate modules so each can be inspected and tested on
//! its own; the `labelscope relabel` command chains them.

#![warn(missing_docs)]

pub mod error;

pub use error::{Error, Result};
