//! The annotation studio behind `labelscope serve`: web annotation tasks that
//! record the byproducts annotators leave (mouse traces, hovers, clicks with
//! their times), stored in SQLite (embedded default) or PostgreSQL, and
//! exported in the published ImageNet-AB and COCO-AB layouts.
//!
//! * [`manifest`] — project manifests and how they are cut into HITs.
//! * [`project`] — creating a project (images, HITs, link tokens).
//! * [`db`] — the schema, migrations and every query.
//! * [`server`] — the axum server: task pages, JSON API, images, statistics.
//! * [`browse`], [`tag`], [`verify`], [`region`], [`label`] — validation of
//!   the five tasks' page submissions (ImageNet Browse, COCO Tag, ReaL-style
//!   Verify, Region boxes with class suggestions, free Label with the escape
//!   hatch); [`fields`] holds their shared field checks.
//! * [`qc`] — HIT rejection rules (known-positive recall, selections, pages,
//!   gold answers, icon localisation against known objects).
//! * [`aggregate`] — Verify votes to label probabilities (majority,
//!   Dawid–Skene) and label sets.
//! * [`export`] — ImageNet-AB archives, COCO-AB arrays, flat CSV of the
//!   stored records and per-labeler answers files (`labelscope humans`).
//! * [`import`] — ImageNet-AB and COCO-AB releases into projects.
//! * [`secret`] — HIT tokens and the keyed worker-id hash.
#![warn(missing_docs)]

pub mod aggregate;
pub mod browse;
pub mod db;
pub mod error;
pub mod export;
pub mod fields;
pub mod import;
pub mod label;
pub mod manifest;
pub mod project;
pub mod qc;
pub mod region;
pub mod secret;
pub mod server;
pub mod tag;
pub mod verify;

pub use error::{Error, Result};
