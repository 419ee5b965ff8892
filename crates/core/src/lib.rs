//! # labelscope-core
//!
//! The dependency-light heart of labelscope: the class table, image ids,
//! label sets in every supported format, prediction files, the metrics and
//! the label-set analyses. No image decoding, no neural networks, no web
//! server: those live in other crates (see `ARCHITECTURE.md`).
#![warn(missing_docs)]

pub mod analysis;
pub mod atomic;
pub mod classes;
pub mod entropy;
pub mod error;
pub mod eval;
pub mod humans;
pub mod ids;
pub mod labels;
pub mod metrics;
pub mod ncut;
pub mod npy;
pub mod order;
pub mod predictions;
pub mod results;
pub mod rle;
pub mod rng;
pub mod votes;
pub mod wordnet;

pub use classes::{ClassInfo, ClassTable, Group};
pub use error::{Error, Result};
pub use results::{ResultRow, ResultSet};
