//! COCO-style JSON of proposals: merging shard logs, reading it back.
//!
//! The output has one category, `{"id": 1, "name": "fg"}`; images are numbered
//! 1, 2, … in id order and annotations 1, 2, … in image order and, within an
//! image, in discovery order. `segmentation` is COCO compressed RLE
//! (column-major, the `counts` string of pycocotools), `bbox` is
//! `[x, y, width, height]`, `area` the pixel count, `score` the cut's `1 − λ`.

use std::collections::BTreeMap;
use std::path::Path;

use labelscope_core::rle::{CocoRle, Rle};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{Entry, Shard};
use crate::pipeline::ImageRecord;
use crate::store::{done_path, read_records, shard_path, RunParams, ShardDone};

/// A COCO image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoImage {
    /// 1-based image number.
    pub id: u64,
    /// The image file name.
    pub file_name: String,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// A COCO annotation (one proposal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoAnnotation {
    /// 1-based annotation number.
    pub id: u64,
    /// The image's `id`.
    pub image_id: u64,
    /// Always 1 (`fg`) in our output.
    pub category_id: u64,
    /// Compressed RLE.
    pub segmentation: CocoRle,
    /// `[x, y, width, height]`.
    pub bbox: [f64; 4],
    /// Pixel count.
    pub area: f64,
    /// Score (`1 − λ` for our proposals; 1 when absent).
    #[serde(default = "one")]
    pub score: f64,
    /// Always 0.
    #[serde(default)]
    pub iscrowd: u8,
}

fn one() -> f64 {
    1.0
}

/// A COCO category.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoCategory {
    /// Category number.
    pub id: u64,
    /// Category name.
    pub name: String,
    /// Super-category name.
    #[serde(default)]
    pub supercategory: String,
}

/// A COCO instances file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CocoFile {
    /// Free-form description; ours holds the run parameters.
    #[serde(default)]
    pub info: serde_json::Value,
    /// The images.
    pub images: Vec<CocoImage>,
    /// The proposals.
    pub annotations: Vec<CocoAnnotation>,
    /// The categories.
    #[serde(default)]
    pub categories: Vec<CocoCategory>,
}

/// What a merge found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeSummary {
    /// Shards read.
    pub shards: usize,
    /// Shards without a completion marker (only with `allow_incomplete`).
    pub incomplete: Vec<String>,
    /// Images merged.
    pub images: usize,
    /// Proposals merged.
    pub proposals: usize,
}

/// Builds a COCO file from records (sorted by id; ids must be unique).
pub fn to_coco(mut records: Vec<ImageRecord>, info: serde_json::Value) -> Result<CocoFile> {
    records.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(w) = records.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(Error::Mismatch(format!("image {:?} appears in two shards", w[0].id)));
    }
    let mut images = Vec::with_capacity(records.len());
    let mut annotations = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        let image_id = i as u64 + 1;
        for p in r.proposals {
            annotations.push(CocoAnnotation {
                id: annotations.len() as u64 + 1,
                image_id,
                category_id: 1,
                segmentation: p.segmentation,
                bbox: p.bbox,
                area: p.area as f64,
                score: p.score,
                iscrowd: 0,
            });
        }
        images.push(CocoImage { id: image_id, file_name: r.file_name, width: r.width, height: r.height });
    }
    let categories = vec![CocoCategory { id: 1, name: "fg".into(), supercategory: "fg".into() }];
    Ok(CocoFile { info, images, annotations, categories })
}

/// Merges the shard logs of the run in `dir` into one COCO file. Every shard
/// of `run.json` must have its completion marker unless `allow_incomplete`;
/// with `expected`, every expected image must be present and no other.
pub fn merge(dir: &Path, expected: Option<&[Entry]>, allow_incomplete: bool) -> Result<(CocoFile, MergeSummary)> {
    let run_path = dir.join("run.json");
    let text = std::fs::read_to_string(&run_path).map_err(|e| Error::io(&run_path, e))?;
    let params: RunParams = serde_json::from_str(&text)
        .map_err(|e| Error::format(&run_path, format!("line {}", e.line()), format!("not a run description: {e}")))?;
    let mut summary = MergeSummary { shards: params.shards, ..Default::default() };
    let mut records = Vec::new();
    for index in 0..params.shards {
        let shard = Shard { index, count: params.shards };
        let done = done_path(dir, shard);
        let log = shard_path(dir, shard);
        if !done.exists() {
            if !allow_incomplete {
                return Err(Error::Mismatch(format!(
                    "shard {shard} has not finished ({} is missing); run it (again) or pass --allow-incomplete",
                    done.display()
                )));
            }
            summary.incomplete.push(shard.to_string());
            if !log.exists() {
                continue;
            }
        } else {
            let text = std::fs::read_to_string(&done).map_err(|e| Error::io(&done, e))?;
            let _: ShardDone = serde_json::from_str(&text)
                .map_err(|e| Error::format(&done, format!("line {}", e.line()), format!("not a shard marker: {e}")))?;
        }
        records.extend(read_records(&log)?);
    }
    if let Some(expected) = expected {
        let have: BTreeMap<&str, ()> = records.iter().map(|r| (r.id.as_str(), ())).collect();
        let want: BTreeMap<&str, ()> = expected.iter().map(|e| (e.id.as_str(), ())).collect();
        let missing: Vec<&str> = want.keys().filter(|k| !have.contains_key(*k)).copied().collect();
        let extra: Vec<&str> = have.keys().filter(|k| !want.contains_key(*k)).copied().collect();
        if !extra.is_empty() {
            return Err(Error::Mismatch(format!(
                "{} merged images are not in the image list (first: {:?})",
                extra.len(),
                &extra[..extra.len().min(5)]
            )));
        }
        if !missing.is_empty() && !allow_incomplete {
            return Err(Error::Mismatch(format!(
                "{} images of the image list have no proposals yet (first: {:?})",
                missing.len(),
                &missing[..missing.len().min(5)]
            )));
        }
    }
    let info = serde_json::json!({
        "description": "labelscope proposals",
        "version": env!("CARGO_PKG_VERSION"),
        "params": params,
    });
    let coco = to_coco(records, info)?;
    summary.images = coco.images.len();
    summary.proposals = coco.annotations.len();
    Ok((coco, summary))
}

/// Reads a COCO instances file with RLE segmentations.
pub fn read_coco(path: &Path) -> Result<CocoFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let coco: CocoFile = serde_json::from_slice(&bytes).map_err(|e| {
        Error::format(
            path,
            format!("line {}, column {}", e.line(), e.column()),
            format!("not a COCO instances file with compressed RLE segmentations: {e}"),
        )
    })?;
    let ids: BTreeMap<u64, &CocoImage> = coco.images.iter().map(|i| (i.id, i)).collect();
    for (k, a) in coco.annotations.iter().enumerate() {
        let Some(img) = ids.get(&a.image_id) else {
            return Err(Error::format(
                path,
                format!("annotations[{k}]"),
                format!("image_id {} is not in `images`", a.image_id),
            ));
        };
        if a.segmentation.size != [img.height, img.width] {
            return Err(Error::format(
                path,
                format!("annotations[{k}].segmentation.size"),
                format!(
                    "{:?} does not match the image's [height, width] = [{}, {}]",
                    a.segmentation.size, img.height, img.width
                ),
            ));
        }
    }
    Ok(coco)
}

/// Decodes an annotation's mask (row-major), naming the annotation on error.
pub fn decode_mask(path: &Path, index: usize, a: &CocoAnnotation) -> Result<Vec<bool>> {
    let [h, w] = a.segmentation.size;
    let rle = Rle::from_counts_string(&a.segmentation.counts, h, w)
        .map_err(|e| Error::format(path, format!("annotations[{index}].segmentation"), e.to_string()))?;
    Ok(rle.decode())
}
