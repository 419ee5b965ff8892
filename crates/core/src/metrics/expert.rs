//! Accuracy against expert correct/wrong/unclear labels.
//!
//! Two named variants, as published:
//!
//! * **2020 strict** (Shankar et al., "Evaluating machine accuracy on
//!   ImageNet", ICML 2020): images listed as problematic are removed; a top-1
//!   prediction is correct when it is among the labels judged *correct*;
//!   accuracy is the mean over images.
//! * **2022 class-balanced** (Vasudevan et al., "When does dough become a
//!   bagel?", NeurIPS 2022): problematic images removed; a prediction is
//!   correct when it is among the *correct or unclear* labels; accuracy is the
//!   mean over original classes of the per-class accuracy (classes of the
//!   image's original ImageNet label).
//! * **ImageNet-M errors**: on the images of the ImageNet-M subset, the number
//!   of top-1 predictions that are neither correct nor unclear (2022 rule).

use crate::labels::ExpertLabels;

/// Per-row view of expert labels aligned with prediction rows.
pub struct ExpertRows<'a> {
    /// The expert labels.
    pub labels: &'a ExpertLabels,
    /// For each prediction row, its position in `labels` (None: not annotated).
    pub position: &'a [Option<usize>],
}

/// The result of an expert-label evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpertResult {
    /// 2020 strict: correct predictions.
    pub strict_correct: u64,
    /// 2020 strict: evaluated (annotated, non-problematic) images.
    pub strict_total: u64,
    /// 2022: per original class (correct, total) over non-problematic images; classes with no image are (0, 0).
    pub per_class: Vec<(u64, u64)>,
    /// 2022 class-balanced accuracy: mean of per-class accuracies over classes with images; None without original labels.
    pub balanced: Option<f64>,
    /// ImageNet-M: wrong predictions.
    pub imagenet_m_errors: u64,
    /// ImageNet-M: images of the subset present in the predictions.
    pub imagenet_m_total: u64,
}

/// Per-row 2022-rule correctness (`pred ∈ correct ∪ unclear`) for annotated
/// non-problematic rows, `None` otherwise.
pub fn hits_2022(top1: &[u32], rows: &ExpertRows) -> Vec<Option<bool>> {
    hits(top1, rows, true)
}

/// Per-row 2020-rule correctness (`pred ∈ correct`) for annotated
/// non-problematic rows, `None` otherwise.
pub fn hits_2020(top1: &[u32], rows: &ExpertRows) -> Vec<Option<bool>> {
    hits(top1, rows, false)
}

fn hits(top1: &[u32], rows: &ExpertRows, with_unclear: bool) -> Vec<Option<bool>> {
    let l = rows.labels;
    rows.position
        .iter()
        .zip(top1)
        .map(|(pos, &p)| {
            let i = (*pos)?;
            if l.problematic[i] {
                return None;
            }
            Some(l.correct[i].binary_search(&p).is_ok() || (with_unclear && l.unclear[i].binary_search(&p).is_ok()))
        })
        .collect()
}

/// Class-balanced accuracy from per-row hits and original labels over the
/// rows in `subset` (all when None): (per-class (correct, total), mean over classes with images).
pub fn class_balanced(
    hits: &[Option<bool>],
    original: &[u32],
    n_classes: usize,
    subset: Option<&[u32]>,
) -> (Vec<(u64, u64)>, Option<f64>) {
    let mut per = vec![(0u64, 0u64); n_classes];
    let mut add = |r: usize| {
        if let Some(h) = hits[r] {
            let c = original[r] as usize;
            if c < n_classes {
                per[c].1 += 1;
                per[c].0 += h as u64;
            }
        }
    };
    match subset {
        Some(w) => {
            for (r, &m) in w.iter().enumerate() {
                for _ in 0..m {
                    add(r);
                }
            }
        }
        None => (0..hits.len()).for_each(&mut add),
    }
    let accs: Vec<f64> = per.iter().filter(|(_, t)| *t > 0).map(|&(c, t)| c as f64 / t as f64).collect();
    let mean = if accs.is_empty() { None } else { Some(accs.iter().sum::<f64>() / accs.len() as f64) };
    (per, mean)
}

/// Evaluates top-1 predictions (one per row) against expert labels.
pub fn evaluate(top1: &[u32], rows: &ExpertRows, original: Option<&[u32]>, n_classes: usize) -> ExpertResult {
    let strict = hits_2020(top1, rows);
    let (strict_correct, strict_total) = super::topk::count(&strict, None);
    let h22 = hits_2022(top1, rows);
    let (per_class, balanced) = match original {
        Some(o) => class_balanced(&h22, o, n_classes, None),
        None => (vec![], None),
    };
    let l = rows.labels;
    let (mut m_err, mut m_tot) = (0, 0);
    for (pos, &p) in rows.position.iter().zip(top1) {
        if let Some(i) = *pos {
            if l.imagenet_m[i] {
                m_tot += 1;
                let ok = l.correct[i].binary_search(&p).is_ok() || l.unclear[i].binary_search(&p).is_ok();
                m_err += (!ok) as u64;
            }
        }
    }
    ExpertResult {
        strict_correct,
        strict_total,
        per_class,
        balanced,
        imagenet_m_errors: m_err,
        imagenet_m_total: m_tot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{parse_labels, LabelSource};
    use std::path::Path;

    #[test]
    fn strict_balanced_and_imagenet_m_by_hand() {
        // 4 annotated images; image d is problematic.
        let text = r#"{"initial_annots": {
            "a": {"correct": [1], "wrong": [], "unclear": [2]},
            "b": {"correct": [1, 3], "wrong": [4], "unclear": []},
            "c": {"correct": [5], "wrong": [], "unclear": [6]},
            "d": {"correct": [7], "wrong": [], "unclear": []}},
            "problematic_images": ["d"], "imagenet_m": ["a", "c"]}"#;
        let LabelSource::Expert(l) =
            parse_labels(text, Path::new("e.json"), None, crate::ClassTable::imagenet()).unwrap()
        else {
            panic!()
        };
        // prediction rows: a, b, c, d, e (e is not annotated)
        let pos: Vec<Option<usize>> = ["a", "b", "c", "d", "e"].iter().map(|n| l.position(n)).collect();
        let top1 = [2, 3, 9, 7, 1];
        let original = [1, 1, 5, 7, 0];
        let rows = ExpertRows { labels: &l, position: &pos };
        let r = evaluate(&top1, &rows, Some(&original), 10);
        // 2020: a wrong (2 is only unclear), b right, c wrong; d problematic; e unannotated
        assert_eq!((r.strict_correct, r.strict_total), (1, 3));
        // 2022: a right (unclear counts), b right, c wrong. Class 1: 2/2, class 5: 0/1 -> mean 0.5
        assert_eq!(r.per_class[1], (2, 2));
        assert_eq!(r.per_class[5], (0, 1));
        assert_eq!(r.balanced, Some(0.5));
        // ImageNet-M = {a, c}: a ok, c wrong
        assert_eq!((r.imagenet_m_errors, r.imagenet_m_total), (1, 2));
    }
}
