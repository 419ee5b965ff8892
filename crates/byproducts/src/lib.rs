//! Annotation byproducts: what annotators' browsers recorded while they
//! labelled ImageNet (ImageNet-AB: mouse traces and the click that selected
//! an image) and COCO (COCO-AB: icon drag-and-drop actions), streamed and
//! parsed in parallel, turned into LUAB point targets and analysed against
//! ground truth.
//!
//! * [`stream`] — read options, the order-preserving parallel pipeline and
//!   the JSON array splitter.
//! * [`imagenet`] — ImageNet-AB records from a `.tar.gz` release, member by member.
//! * [`coco`] — COCO-AB records from one large JSON array, element by element.
//! * [`targets`] — LUAB targets (final click, mean of clicks, last trace
//!   points), the seeded random-point baseline, and mapping a point through
//!   a random-resized crop and flip.
//! * [`truth`] — ground-truth boxes (TSV, ILSVRC XML) and COCO instances.
//! * [`analytics`], [`analysis`], [`coco_analysis`] — click localisation and
//!   its baselines, traces, box-relative positions, icon precision and
//!   recall, action sequences, annotators, re-selection.
//! * [`report`] — tables (CSV), plots (SVG/PNG) and the HTML report.
//! * [`synth`] — synthetic releases with planted behaviour.
#![warn(missing_docs)]

pub mod analysis;
pub mod analytics;
pub mod coco;
#[cfg(feature = "report")]
pub mod coco_analysis;
pub mod error;
mod hash;
pub mod imagenet;
#[cfg(feature = "report")]
pub mod report;
pub mod stream;
pub mod synth;
pub mod targets;
pub mod truth;

pub use error::{Error, Result};
pub use stream::ReadOptions;

/// A point in image-normalised coordinates: `x` from the left edge, `y` from
/// the top edge, both in `[0, 1]` for points inside the image.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Horizontal position, 0 = left edge, 1 = right edge.
    pub x: f64,
    /// Vertical position, 0 = top edge, 1 = bottom edge.
    pub y: f64,
}

/// What a streaming read did: records delivered and records skipped in
/// `--skip-bad` mode (with the first few reasons).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadSummary {
    /// Records parsed and handed to the callback.
    pub records: u64,
    /// Records skipped because they were malformed (only with `skip_bad`).
    pub skipped: u64,
    /// The messages of the first skipped records (at most 20).
    pub skip_reasons: Vec<String>,
}

impl ReadSummary {
    pub(crate) fn skip(&mut self, reason: String) {
        self.skipped += 1;
        if self.skip_reasons.len() < 20 {
            self.skip_reasons.push(reason);
        }
    }
}
