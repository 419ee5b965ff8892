//! COCO-AB records: one JSON array with an object per image,
//!
//! ```json
//! [{"image_id": 9, "originalImageWidth": 640, "originalImageHeight": 480,
//!   "timeSpent": 5120, "workerId": "W1",
//!   "actionHistories": [{"actionType": "add", "iconType": "dog",
//!                        "pointTo": {"x": 0.31, "y": 0.62}, "timeAt": 1630}, ...],
//!   ...}, ...]
//! ```
//!
//! read element by element from a buffered reader ([`read_array`]), so a
//! 400 MB release never sits in memory. `pointTo` is image-normalised.
//! Fields this reader does not use (`categoryHistories`, `mouseTracking`, …)
//! are skipped without being built.

use std::path::Path;

use serde::Deserialize;

use crate::stream::{open_counting, ordered_map, split_json_array, RawElement, ReadOptions};
use crate::{Error, Point, ReadSummary, Result};

/// One icon action.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Action {
    /// `add`, `move` or `remove` (kept as written).
    #[serde(rename = "actionType")]
    pub kind: String,
    /// The class name of the icon.
    #[serde(rename = "iconType")]
    pub icon: String,
    /// Where the icon was put (absent for some removals).
    #[serde(rename = "pointTo", default)]
    pub point: Option<Point>,
}

/// The byproducts of one COCO image.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CocoRecord {
    /// COCO image id.
    pub image_id: u64,
    /// Image width in pixels.
    #[serde(rename = "originalImageWidth", default)]
    pub width: Option<f64>,
    /// Image height in pixels.
    #[serde(rename = "originalImageHeight", default)]
    pub height: Option<f64>,
    /// Milliseconds spent on the image, when recorded.
    #[serde(rename = "timeSpent", default)]
    pub time_spent_ms: Option<f64>,
    /// Worker id, when recorded.
    #[serde(rename = "workerId", default)]
    pub worker: Option<String>,
    /// Icon actions in time order.
    #[serde(rename = "actionHistories", default)]
    pub actions: Vec<Action>,
}

impl CocoRecord {
    /// LUAB targets: per icon class, the point of its last `add` action, in
    /// order of first appearance.
    pub fn last_add_points(&self) -> Vec<(String, Point)> {
        let mut out: Vec<(String, Point)> = Vec::new();
        for a in self.actions.iter().filter(|a| a.kind == "add") {
            let Some(p) = a.point else { continue };
            match out.iter_mut().find(|(c, _)| *c == a.icon) {
                Some(slot) => slot.1 = p,
                None => out.push((a.icon.clone(), p)),
            }
        }
        out
    }
}

/// The message of a `serde_json` error without its (element-relative) position.
fn bare_message(e: &serde_json::Error) -> String {
    let m = e.to_string();
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m,
    }
}

/// Streams the records of a COCO-AB JSON array, calling `each` per record in
/// file order. The array is cut into records by one thread and the records
/// are parsed by [`ReadOptions::threads`] others, so memory stays at a few
/// records per thread whatever the file size. A record of the wrong shape is
/// an error naming its index, line and column, unless `skip_bad`; broken
/// JSON (truncation, syntax) is always an error with its line and column.
pub fn read_array(path: &Path, opts: &ReadOptions, each: impl FnMut(CocoRecord)) -> Result<ReadSummary> {
    read_array_of(path, opts, "an object with image_id and actionHistories", each)
}

/// [`read_array`] for any element type: each element of the JSON array is
/// deserialised as a `T` on the parser threads; an element of the wrong
/// shape is an error naming its index, line, column and `expected`, unless
/// `skip_bad`.
pub fn read_array_of<T: serde::de::DeserializeOwned + Send>(
    path: &Path,
    opts: &ReadOptions,
    expected: &str,
    mut each: impl FnMut(T),
) -> Result<ReadSummary> {
    let (reader, count) = open_counting(path)?;
    let mut summary = ReadSummary::default();
    let skip_bad = opts.skip_bad;
    ordered_map(
        opts.worker_threads(),
        opts.progress.map(|f| (&*count, f)),
        |push: &mut dyn FnMut(RawElement) -> bool| split_json_array(reader, path, push),
        |el: RawElement| match serde_json::from_slice::<T>(&el.bytes) {
            Ok(r) => Ok(r),
            Err(e) => Err((
                e.classify() == serde_json::error::Category::Data,
                format!("record {} (0-based), {}", el.index, el.position(&e)),
                bare_message(&e),
            )),
        },
        |o| match o {
            Ok(r) => {
                summary.records += 1;
                each(r);
                Ok(())
            }
            Err((true, at, msg)) if skip_bad => {
                summary.skip(format!("{at}: {msg}"));
                Ok(())
            }
            Err((true, at, msg)) => Err(Error::format(path, at, format!("{msg} (expected {expected})"))),
            Err((false, at, msg)) => Err(Error::format(path, at, format!("not valid JSON: {msg}"))),
        },
    )?;
    Ok(summary)
}
