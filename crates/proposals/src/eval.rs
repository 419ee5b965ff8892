//! Object-discovery evaluation: object recall at an IoU threshold and CorLoc.
//!
//! - **Recall**: a ground-truth object counts as found when at least one
//!   proposal of its image overlaps it with IoU ≥ the threshold; recall is
//!   found objects ÷ objects.
//! - **CorLoc**: an image counts when its *first* proposal (the first in the
//!   file: discovery order for our files) overlaps at least one ground-truth
//!   object of the image with IoU ≥ the threshold; an image without proposals
//!   counts as a miss. CorLoc is hits ÷ images.
//!
//! Both are computed over the images of the proposals file; an image of the
//! proposals without ground truth is an error (it would silently change the
//! denominator). Ground-truth images without proposals are not counted
//! (evaluate a merged run with every image to include them).
//!
//! Boxes: ground truth `[x0, y0, x1, y1]` as in `val_boxes.tsv`; a COCO
//! proposal box `[x, y, w, h]` (pycocotools `toBbox`, `w` = columns covered)
//! becomes `[x, y, x + w, y + h]` with [`BoxConvention::Continuous`]
//! (area `(x1 − x0)(y1 − y0)`), or `[x, y, x + w − 1, y + h − 1]` with
//! [`BoxConvention::PixelInclusive`] (corners are pixel indices, area
//! `(x1 − x0 + 1)(y1 − y0 + 1)`, intersections likewise), the convention of
//! TokenCut's and LOST's CorLoc evaluation.

use std::collections::BTreeMap;
use std::path::Path;

use labelscope_core::ids::join_key;
use labelscope_core::rle::Rle;
use serde::Serialize;

use crate::coco::CocoFile;
use crate::error::{Error, Result};

/// How box corners are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoxConvention {
    /// Continuous coordinates: `x1` is the right edge.
    Continuous,
    /// Pixel indices: `x1` is the last pixel column (widths get `+ 1`).
    PixelInclusive,
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes.
pub fn box_iou(a: &[f64; 4], b: &[f64; 4], conv: BoxConvention) -> f64 {
    let one = match conv {
        BoxConvention::Continuous => 0.0,
        BoxConvention::PixelInclusive => 1.0,
    };
    let iw = (a[2].min(b[2]) - a[0].max(b[0]) + one).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1]) + one).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f64; 4]| (r[2] - r[0] + one).max(0.0) * (r[3] - r[1] + one).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Reads ground-truth boxes from a TSV of `name, class, x0, y0, x1, y1`
/// (the `val_boxes.tsv` layout; several lines per image allowed), keyed by
/// join key (file name without image extension).
pub fn read_boxes_tsv(path: &Path) -> Result<BTreeMap<String, Vec<[f64; 4]>>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out: BTreeMap<String, Vec<[f64; 4]>> = BTreeMap::new();
    for (ln, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let loc = |col: usize| format!("line {}, column {}", ln + 1, col + 1);
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            return Err(Error::format(
                path,
                format!("line {}", ln + 1),
                format!("{} tab-separated fields; expected 6: name, class, x0, y0, x1, y1", f.len()),
            ));
        }
        let mut b = [0f64; 4];
        for k in 0..4 {
            b[k] = f[2 + k]
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| Error::format(path, loc(2 + k), format!("{:?} is not a finite number", f[2 + k])))?;
        }
        if b[2] < b[0] || b[3] < b[1] {
            return Err(Error::format(
                path,
                format!("line {}", ln + 1),
                format!("box {b:?} has x1 < x0 or y1 < y0; expected x0, y0, x1, y1"),
            ));
        }
        out.entry(join_key(f[0].trim()).to_string()).or_default().push(b);
    }
    if out.is_empty() {
        return Err(Error::format(path, "line 1", "no boxes"));
    }
    Ok(out)
}

/// The proposal boxes `[x0, y0, x1, y1]` of a COCO file per image (join key
/// of `file_name`), in file order, converted with `conv` (module docs).
pub fn coco_boxes(coco: &CocoFile, conv: BoxConvention) -> BTreeMap<String, Vec<[f64; 4]>> {
    let names: BTreeMap<u64, String> = coco.images.iter().map(|i| (i.id, join_key(&i.file_name).to_string())).collect();
    let mut out: BTreeMap<String, Vec<[f64; 4]>> = names.values().map(|k| (k.clone(), Vec::new())).collect();
    let one = if conv == BoxConvention::PixelInclusive { 1.0 } else { 0.0 };
    for a in &coco.annotations {
        if let Some(k) = names.get(&a.image_id) {
            let [x, y, w, h] = a.bbox;
            out.entry(k.clone()).or_default().push([x, y, x + w - one, y + h - one]);
        }
    }
    out
}

/// Recall and CorLoc.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalizationReport {
    /// What was compared: `boxes` or `masks`.
    pub kind: String,
    /// IoU threshold.
    pub iou: f64,
    /// Images evaluated.
    pub images: usize,
    /// Images with at least one proposal.
    pub images_with_proposals: usize,
    /// Proposals.
    pub proposals: usize,
    /// Ground-truth objects.
    pub objects: usize,
    /// Objects matched by some proposal.
    pub found: usize,
    /// `found / objects`.
    pub recall: f64,
    /// Images whose first proposal matches an object.
    pub corloc_hits: usize,
    /// `corloc_hits / images`.
    pub corloc: f64,
}

fn report<T>(
    kind: &str,
    proposals: &BTreeMap<String, Vec<T>>,
    gt: &BTreeMap<String, Vec<T>>,
    threshold: f64,
    iou: impl Fn(&T, &T) -> Result<f64>,
) -> Result<LocalizationReport> {
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(Error::Invalid(format!("IoU threshold {threshold}: expected a value in (0, 1]")));
    }
    let mut r = LocalizationReport {
        kind: kind.into(),
        iou: threshold,
        images: proposals.len(),
        images_with_proposals: 0,
        proposals: 0,
        objects: 0,
        found: 0,
        recall: 0.0,
        corloc_hits: 0,
        corloc: 0.0,
    };
    for (id, props) in proposals {
        let objs = gt.get(id).ok_or_else(|| {
            Error::Mismatch(format!("image {id:?} has proposals but no ground truth; evaluate images that have it"))
        })?;
        r.proposals += props.len();
        r.objects += objs.len();
        if !props.is_empty() {
            r.images_with_proposals += 1;
        }
        for o in objs {
            let mut hit = false;
            for p in props {
                if iou(p, o)? >= threshold {
                    hit = true;
                    break;
                }
            }
            r.found += usize::from(hit);
        }
        if let Some(first) = props.first() {
            let mut hit = false;
            for o in objs {
                if iou(first, o)? >= threshold {
                    hit = true;
                    break;
                }
            }
            r.corloc_hits += usize::from(hit);
        }
    }
    if r.images == 0 {
        return Err(Error::Invalid("no images to evaluate".into()));
    }
    r.recall = if r.objects > 0 { r.found as f64 / r.objects as f64 } else { 0.0 };
    r.corloc = r.corloc_hits as f64 / r.images as f64;
    Ok(r)
}

/// Recall and CorLoc of proposal boxes against ground-truth boxes.
pub fn evaluate_boxes(
    proposals: &BTreeMap<String, Vec<[f64; 4]>>,
    gt: &BTreeMap<String, Vec<[f64; 4]>>,
    threshold: f64,
    conv: BoxConvention,
) -> Result<LocalizationReport> {
    report("boxes", proposals, gt, threshold, |a, b| Ok(box_iou(a, b, conv)))
}

/// Recall and CorLoc of proposal masks against ground-truth masks (pixel IoU).
pub fn evaluate_masks(
    proposals: &BTreeMap<String, Vec<Rle>>,
    gt: &BTreeMap<String, Vec<Rle>>,
    threshold: f64,
) -> Result<LocalizationReport> {
    report("masks", proposals, gt, threshold, |a, b| Ok(a.iou(b)?))
}

/// The masks of a COCO file per image (join key of `file_name`), in file order.
pub fn coco_masks(path: &Path, coco: &CocoFile) -> Result<BTreeMap<String, Vec<Rle>>> {
    let names: BTreeMap<u64, String> = coco.images.iter().map(|i| (i.id, join_key(&i.file_name).to_string())).collect();
    let mut out: BTreeMap<String, Vec<Rle>> = names.values().map(|k| (k.clone(), Vec::new())).collect();
    for (k, a) in coco.annotations.iter().enumerate() {
        if let Some(name) = names.get(&a.image_id) {
            let rle = Rle::from_coco(&a.segmentation)
                .map_err(|e| Error::format(path, format!("annotations[{k}].segmentation"), e.to_string()))?;
            out.entry(name.clone()).or_default().push(rle);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_iou_by_hand() {
        // [0,0,10,10] and [5,0,15,10]: continuous inter 5*10 = 50, union 200-50 = 150.
        let (a, b) = ([0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]);
        assert!((box_iou(&a, &b, BoxConvention::Continuous) - 50.0 / 150.0).abs() < 1e-15);
        // Pixel-inclusive: inter 6*11 = 66, areas 121 each, union 176.
        assert!((box_iou(&a, &b, BoxConvention::PixelInclusive) - 66.0 / 176.0).abs() < 1e-15);
        // Touching edges: continuous 0, pixel-inclusive share a column (11 / 231).
        let c = [10.0, 0.0, 20.0, 10.0];
        assert_eq!(box_iou(&a, &c, BoxConvention::Continuous), 0.0);
        assert!((box_iou(&a, &c, BoxConvention::PixelInclusive) - 11.0 / 231.0).abs() < 1e-15);
    }

    #[test]
    fn recall_and_corloc_by_hand() {
        let mut gt = BTreeMap::new();
        gt.insert("a".to_string(), vec![[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]);
        gt.insert("b".to_string(), vec![[0.0, 0.0, 10.0, 10.0]]);
        gt.insert("c".to_string(), vec![[0.0, 0.0, 4.0, 4.0]]);
        let mut p = BTreeMap::new();
        // a: first proposal misses both (IoU 0), second finds object 2 → recall 1 of 2, no CorLoc.
        p.insert("a".to_string(), vec![[50.0, 50.0, 60.0, 60.0], [20.0, 20.0, 30.0, 31.0]]);
        // b: first proposal IoU 0.5 exactly (50 / 100 ... [0,0,10,5]: inter 50, union 100) → hit.
        p.insert("b".to_string(), vec![[0.0, 0.0, 10.0, 5.0]]);
        // c: no proposals → miss.
        p.insert("c".to_string(), vec![]);
        let r = evaluate_boxes(&p, &gt, 0.5, BoxConvention::Continuous).unwrap();
        assert_eq!((r.images, r.objects, r.found, r.corloc_hits, r.proposals), (3, 4, 2, 1, 3));
        assert!((r.recall - 0.5).abs() < 1e-15 && (r.corloc - 1.0 / 3.0).abs() < 1e-15);
        p.insert("zz".to_string(), vec![]);
        let err = evaluate_boxes(&p, &gt, 0.5, BoxConvention::Continuous).unwrap_err().to_string();
        assert!(err.contains("\"zz\""), "{err}");
        assert!(evaluate_boxes(&p, &gt, 0.0, BoxConvention::Continuous).is_err());
    }

    #[test]
    fn boxes_tsv_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.tsv");
        std::fs::write(&p, "x.JPEG\t1\t0\t0\t5\t5\nx.JPEG\t2\t1\t1\t2\t2\ny.JPEG\t3\t0\tq\t1\t1\n").unwrap();
        let err = read_boxes_tsv(&p).unwrap_err().to_string();
        assert!(err.contains("b.tsv") && err.contains("line 3, column 4") && err.contains("\"q\""), "{err}");
        std::fs::write(&p, "x.JPEG\t1\t0\t0\t5\t5\nx.JPEG\t2\t1\t1\t2\t2\n").unwrap();
        let b = read_boxes_tsv(&p).unwrap();
        assert_eq!(b["x"].len(), 2);
        std::fs::write(&p, "x.JPEG\t1\t5\t0\t0\t5\n").unwrap();
        assert!(read_boxes_tsv(&p).unwrap_err().to_string().contains("x1 < x0"));
    }
}
