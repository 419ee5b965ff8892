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

use std::fmt;
use std::path::Path;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::Deserialize;

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

struct Each<'a, F> {
    each: &'a mut F,
    skip_bad: bool,
    summary: &'a mut ReadSummary,
    bad: &'a mut Option<String>,
}

impl<'de, F: FnMut(CocoRecord)> Visitor<'de> for Each<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of per-image records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let mut index = 0u64;
        while let Some(raw) = seq.next_element::<Box<serde_json::value::RawValue>>()? {
            match serde_json::from_str::<CocoRecord>(raw.get()) {
                Ok(r) => {
                    self.summary.records += 1;
                    (self.each)(r)
                }
                Err(e) if self.skip_bad => self.summary.skip(format!("record {index}: {e}")),
                Err(e) => {
                    *self.bad = Some(format!("record {index} (0-based): {e}"));
                    return Err(serde::de::Error::custom("bad record"));
                }
            }
            index += 1;
        }
        Ok(())
    }
}

impl<'de, F: FnMut(CocoRecord)> DeserializeSeed<'de> for Each<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

/// Streams the records of a COCO-AB JSON array, calling `each` per record.
/// A record of the wrong shape is an error naming its index, unless
/// `skip_bad`; broken JSON (truncation, syntax) is always an error with its
/// line and column.
pub fn read_array(path: &Path, skip_bad: bool, mut each: impl FnMut(CocoRecord)) -> Result<ReadSummary> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 20, file));
    let mut summary = ReadSummary::default();
    let mut bad = None;
    let seed = Each { each: &mut each, skip_bad, summary: &mut summary, bad: &mut bad };
    if let Err(e) = seed.deserialize(&mut de).and_then(|()| de.end()) {
        if let Some(msg) = bad {
            return Err(Error::format(path, msg, "expected an object with image_id and actionHistories"));
        }
        return Err(Error::format(path, format!("line {}, column {}", e.line(), e.column()), e.to_string()));
    }
    Ok(summary)
}
