//! Automatic multi-label relabeling (Chen, Harun & Kanan 2026): turn
//! object proposals and patch features into spatially grounded multi-labels.
//!
//! The stages are separate modules so each can be inspected and tested on
//! its own; the `labelscope relabel` command chains them.

#![warn(missing_docs)]

pub mod aggregate;
pub mod ambiguity;
pub mod cache;
pub mod error;
pub mod external;
pub mod labelmap;
pub mod output;
pub mod pipeline;
pub mod pool;
pub mod quality;
pub mod query;
pub mod select;

pub use error::{Error, Result};
