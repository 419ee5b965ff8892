//! Object proposals by normalized cuts over many images.
//!
//! `labelscope-core` holds the cut itself ([`labelscope_core::ncut`]) and the
//! COCO RLE codec ([`labelscope_core::rle`]); `labelscope-vision` the dense
//! CRF. This crate turns them into runs: feature files in ([`features`]),
//! recipes and per-image proposals at image resolution ([`pipeline`]), image
//! lists and shards ([`manifest`]), resumable shard logs ([`store`], [`run`]),
//! COCO JSON ([`coco`]), and overlay galleries ([`gallery`]).

pub mod coco;
pub mod error;
pub mod eval;
pub mod features;
pub mod gallery;
pub mod manifest;
pub mod pipeline;
pub mod run;
pub mod store;

pub use error::{Error, Result};
