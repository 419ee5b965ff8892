//! Annotation byproducts: what annotators' browsers recorded while they
//! labelled ImageNet (ImageNet-AB: mouse traces and the click that selected
//! an image) and COCO (COCO-AB: icon drag-and-drop actions), read in a
//! streaming way, turned into LUAB point targets and analysed against ground
//! truth boxes.
//!
//! * [`imagenet`] — ImageNet-AB records (ILSVRC-style XML with `metadata`
//!   sections) from a `.tar.gz` release or a folder, streamed member by member.
//! * [`coco`] — COCO-AB records from one large JSON array, streamed element by element.
//! * [`targets`] — LUAB targets (final click, mean of clicks, last trace
//!   points), the seeded random-point baseline,
//!   and mapping a point through a random-resized crop and flip.
//! * [`analytics`] — click localisation accuracy against boxes, the centre
//!   click and Gaussian-around-the-centre baselines.

pub mod analysis;
pub mod analytics;
pub mod coco;
pub mod coco_analysis;
pub mod error;
pub mod imagenet;
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
