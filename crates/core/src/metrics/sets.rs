//! Set metrics: scores are turned into a predicted label set per image
//! ([`predict_sets`]) which is compared with the ground-truth set
//! ([`row_stats`], [`summarize`]).
//!
//! Same data layout as [`crate::metrics::ranking`]: `scores` is a row-major
//! `n × c` matrix of finite `f32`, `gt[i]` a sorted, deduplicated list of class
//! indices, and an empty `gt[i]` means "no valid label" (the image is left out
//! of every metric). Class indices `>= c` are ignored.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;

/// How raw scores are mapped to per-class probabilities before thresholding.
///
/// All activations are computed in `f64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Use the scores as they are (they already are probabilities, or the
    /// thresholds are meant for raw scores).
    None,
    /// Logistic sigmoid per score, `1 / (1 + e^{−x})` (evaluated as
    /// `e^x / (1 + e^x)` for negative `x` to avoid overflow).
    Sigmoid,
    /// Softmax over the row, `e^{x_j − max} / Σ_k e^{x_k − max}` (the maximum
    /// is subtracted for numerical stability; the sum runs in column order).
    Softmax,
}

/// Which threshold turns a probability into a predicted label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Thresholds {
    /// Class `j` is predicted when its probability `p >= t` (the same `t` for
    /// every class).
    Fixed(f64),
    /// Per-class thresholds calibrated on the data itself: class `j` gets the
    /// threshold that gives it as many predictions as it has ground-truth
    /// labels (`n_j`, counted over the rows with a non-empty ground truth),
    /// i.e. the `n_j`-th largest probability of column `j` among those rows.
    /// When several rows tie at that value they are all predicted, so a class
    /// may receive more than `n_j` predictions. Classes with `n_j = 0` are
    /// never predicted.
    Calibrated,
}

/// Applies `activation` to one row of scores, writing `f64` probabilities.
fn activate(row: &[f32], activation: Activation, out: &mut Vec<f64>) {
    out.clear();
    match activation {
        Activation::None => out.extend(row.iter().map(|&x| f64::from(x))),
        Activation::Sigmoid => out.extend(row.iter().map(|&x| sigmoid(f64::from(x)))),
        Activation::Softmax => {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            out.extend(row.iter().map(|&x| (f64::from(x) - max).exp()));
            let sum: f64 = out.iter().sum();
            for p in out.iter_mut() {
                *p /= sum;
            }
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `f64` ordered by `total_cmp`, for the calibration heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ord64(f64);

impl Eq for Ord64 {}

impl PartialOrd for Ord64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ord64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Bounded min-heaps keeping the `cap[j]` largest values of every column.
struct TopHeaps {
    heaps: Vec<BinaryHeap<Reverse<Ord64>>>,
}

impl TopHeaps {
    fn new(cap: &[usize]) -> Self {
        TopHeaps { heaps: cap.iter().map(|_| BinaryHeap::new()).collect() }
    }

    #[inline]
    fn push(&mut self, j: usize, cap: usize, v: f64) {
        let h = &mut self.heaps[j];
        if h.len() < cap {
            h.push(Reverse(Ord64(v)));
        } else if let Some(mut top) = h.peek_mut() {
            if v > top.0 .0 {
                *top = Reverse(Ord64(v));
            }
        }
    }

    fn merge(mut self, other: TopHeaps, cap: &[usize]) -> TopHeaps {
        for (j, h) in other.heaps.into_iter().enumerate() {
            for Reverse(Ord64(v)) in h {
                self.push(j, cap[j], v);
            }
        }
        self
    }
}

/// Per-class calibrated thresholds (`+∞` for classes without labels).
fn calibrate(scores: &[f32], c: usize, activation: Activation, gt: &[Vec<u32>]) -> Vec<f64> {
    let mut cap = vec![0usize; c];
    for labels in gt {
        for &g in labels {
            if (g as usize) < c {
                cap[g as usize] += 1;
            }
        }
    }
    let n = gt.len();
    let threads = rayon::current_num_threads().max(1);
    let rows_per_chunk = n.div_ceil(threads * 2).max(64);
    let heaps = scores
        .par_chunks(c * rows_per_chunk)
        .zip(gt.par_chunks(rows_per_chunk))
        .map(|(block, labels)| {
            let mut heaps = TopHeaps::new(&cap);
            let mut buf = Vec::with_capacity(c);
            for (row, labels) in block.chunks(c).zip(labels) {
                if labels.is_empty() {
                    continue;
                }
                activate(row, activation, &mut buf);
                for (j, &p) in buf.iter().enumerate() {
                    if cap[j] > 0 {
                        heaps.push(j, cap[j], p);
                    }
                }
            }
            heaps
        })
        .reduce(|| TopHeaps::new(&cap), |a, b| a.merge(b, &cap));
    heaps
        .heaps
        .iter()
        .zip(&cap)
        .map(|(h, &k)| match h.peek() {
            // The heap holds min(k, #included rows) = k values: every labelled
            // row is an included row.
            Some(Reverse(Ord64(v))) if k > 0 && h.len() == k => *v,
            _ => f64::INFINITY,
        })
        .collect()
}

/// Predicted label sets from scores.
///
/// For every row with a non-empty `gt[i]`: apply `activation` to the row, then
/// predict class `j` when `p_j >= threshold_j` (see [`Thresholds`]). If no
/// class reaches its threshold, the prediction falls back to the single class
/// with the highest raw score (the lowest class index among ties; the
/// activations are monotone, so this is the argmax of the probabilities
/// without the ties that saturation to 0 or 1 would create).
///
/// Rows with an empty `gt[i]` get an empty set: they are excluded from every
/// metric. A NaN fixed threshold predicts nothing, so every row falls back to
/// its argmax. Calibration reads the matrix once, row by row, keeping a
/// bounded min-heap per class; the prediction pass reads it once more. Both
/// run rows in parallel.
///
/// # Panics
///
/// If `scores.len() != n * c` or `gt.len() != n`.
pub fn predict_sets(
    scores: &[f32],
    n: usize,
    c: usize,
    activation: Activation,
    thresholds: Thresholds,
    gt: &[Vec<u32>],
) -> Vec<Vec<u32>> {
    super::ranking::check_shape(scores, n, c, gt);
    if c == 0 {
        return vec![Vec::new(); n];
    }
    let per_class: Option<Vec<f64>> = match thresholds {
        Thresholds::Fixed(_) => None,
        Thresholds::Calibrated => Some(calibrate(scores, c, activation, gt)),
    };
    scores
        .par_chunks(c)
        .zip(gt.par_iter())
        .map_init(Vec::<f64>::new, |buf, (row, labels)| {
            if labels.is_empty() {
                return Vec::new();
            }
            activate(row, activation, buf);
            let mut pred: Vec<u32> = match (&per_class, thresholds) {
                (Some(t), _) => {
                    buf.iter().zip(t).enumerate().filter(|(_, (p, t))| p >= t).map(|(j, _)| j as u32).collect()
                }
                (None, Thresholds::Fixed(t)) => {
                    buf.iter().enumerate().filter(|(_, &p)| p >= t).map(|(j, _)| j as u32).collect()
                }
                (None, Thresholds::Calibrated) => Vec::new(),
            };
            if pred.is_empty() {
                let mut best = 0usize;
                for (j, &s) in row.iter().enumerate() {
                    if s > row[best] {
                        best = j;
                    }
                }
                pred.push(best as u32);
            }
            pred
        })
        .collect()
}

/// Comparison of one predicted set with one ground-truth set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowStats {
    /// Classes in both sets.
    pub tp: u32,
    /// Predicted classes not in the ground truth.
    pub fp: u32,
    /// Ground-truth classes not predicted.
    pub fn_: u32,
    /// The two sets are equal.
    pub exact: bool,
    /// Jaccard index `|P ∩ G| / |P ∪ G|`; 1 when both sets are empty.
    pub iou: f64,
}

/// Compares a predicted set with a ground-truth set. Both must be sorted and
/// deduplicated.
pub fn row_stats(pred: &[u32], gt: &[u32]) -> RowStats {
    let (mut a, mut b, mut tp) = (0usize, 0usize, 0u32);
    while a < pred.len() && b < gt.len() {
        match pred[a].cmp(&gt[b]) {
            std::cmp::Ordering::Less => a += 1,
            std::cmp::Ordering::Greater => b += 1,
            std::cmp::Ordering::Equal => {
                tp += 1;
                a += 1;
                b += 1;
            }
        }
    }
    let fp = pred.len() as u32 - tp;
    let fn_ = gt.len() as u32 - tp;
    let union = tp + fp + fn_;
    RowStats {
        tp,
        fp,
        fn_,
        exact: fp == 0 && fn_ == 0,
        iou: if union == 0 { 1.0 } else { f64::from(tp) / f64::from(union) },
    }
}

/// Aggregate set metrics, see [`summarize`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SetSummary {
    /// Images considered (non-empty ground truth).
    pub images: u64,
    /// Images whose predicted set equals the ground truth (subset accuracy =
    /// `exact / images`).
    pub exact: u64,
    /// Mean Jaccard index over the images (scikit-learn
    /// `jaccard_score(average="samples")`).
    pub mean_iou: f64,
    /// `ΣTP / (ΣTP + ΣFP)` over all classes (0 when nothing is predicted).
    pub micro_precision: f64,
    /// `ΣTP / (ΣTP + ΣFN)` over all classes.
    pub micro_recall: f64,
    /// `2ΣTP / (2ΣTP + ΣFP + ΣFN)`, the harmonic mean of the two above.
    pub micro_f1: f64,
    /// Mean per-class precision over the classes present in the ground truth
    /// (a class that is never predicted has precision 0).
    pub macro_precision: f64,
    /// Mean per-class recall over the classes present in the ground truth.
    pub macro_recall: f64,
    /// Mean of the per-class F1 (`2PR/(P+R)`, 0 when `P + R = 0`) over the
    /// classes present in the ground truth (scikit-learn's macro F1, not the
    /// F1 of the macro precision and recall).
    pub macro_f1: f64,
    /// Number of classes present in the ground truth, the macro denominator.
    pub macro_classes: u64,
}

impl SetSummary {
    /// Subset accuracy `exact / images` (0 when there are no images).
    pub fn subset_accuracy(&self) -> f64 {
        ratio(self.exact, self.images)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Set metrics over all rows, or over the row indices in `rows`.
///
/// A row index listed twice in `rows` counts twice.
/// Rows with an empty ground truth are skipped. Micro averages sum TP, FP and
/// FN over **all** classes (a prediction of a class absent from the ground
/// truth is a false positive). Macro averages are taken over the classes
/// **present in the ground truth** of the considered rows, per class with
/// scikit-learn's `zero_division=0` convention. Every rate is 0 when there is
/// nothing to average (no images, no predictions, no classes). Class indices
/// `>= c` are ignored in the per-class counts.
///
/// # Panics
///
/// If `preds.len() != gt.len()` or a row index in `rows` is out of range.
pub fn summarize(preds: &[Vec<u32>], gt: &[Vec<u32>], c: usize, rows: Option<&[usize]>) -> SetSummary {
    assert_eq!(preds.len(), gt.len(), "preds has {} rows, gt has {}", preds.len(), gt.len());
    let mut tp = vec![0u64; c];
    let mut fp = vec![0u64; c];
    let mut fn_ = vec![0u64; c];
    let (mut images, mut exact, mut iou_sum) = (0u64, 0u64, 0.0f64);
    let (mut stp, mut sfp, mut sfn) = (0u64, 0u64, 0u64);
    let mut visit = |i: usize| {
        let (p, g) = (&preds[i], &gt[i]);
        if g.is_empty() {
            return;
        }
        let s = row_stats(p, g);
        images += 1;
        exact += u64::from(s.exact);
        iou_sum += s.iou;
        stp += u64::from(s.tp);
        sfp += u64::from(s.fp);
        sfn += u64::from(s.fn_);
        for &j in p {
            if (j as usize) < c {
                if g.binary_search(&j).is_ok() {
                    tp[j as usize] += 1;
                } else {
                    fp[j as usize] += 1;
                }
            }
        }
        for &j in g {
            if (j as usize) < c && p.binary_search(&j).is_err() {
                fn_[j as usize] += 1;
            }
        }
    };
    match rows {
        Some(r) => r.iter().for_each(|&i| visit(i)),
        None => (0..preds.len()).for_each(&mut visit),
    }
    let (mut mp, mut mr, mut mf, mut classes) = (0.0f64, 0.0f64, 0.0f64, 0u64);
    for j in 0..c {
        if tp[j] + fn_[j] == 0 {
            continue;
        }
        classes += 1;
        let p = ratio(tp[j], tp[j] + fp[j]);
        let r = ratio(tp[j], tp[j] + fn_[j]);
        mp += p;
        mr += r;
        mf += if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
    }
    let k = classes.max(1) as f64;
    SetSummary {
        images,
        exact,
        mean_iou: if images == 0 { 0.0 } else { iou_sum / images as f64 },
        micro_precision: ratio(stp, stp + sfp),
        micro_recall: ratio(stp, stp + sfn),
        micro_f1: ratio(2 * stp, 2 * stp + sfp + sfn),
        macro_precision: mp / k,
        macro_recall: mr / k,
        macro_f1: mf / k,
        macro_classes: classes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_thresholds_and_fallback() {
        #[rustfmt::skip]
        let scores = vec![
            0.9, 0.5, 0.2,   // {0, 1} (0.5 >= 0.5)
            0.1, 0.3, 0.3,   // nothing ≥ 0.5 → argmax with tie → {1}
            0.7, 0.8, 0.9,   // excluded (empty gt)
        ];
        let gt = vec![vec![0], vec![2], vec![]];
        let p = predict_sets(&scores, 3, 3, Activation::None, Thresholds::Fixed(0.5), &gt);
        assert_eq!(p, vec![vec![0, 1], vec![1], vec![]]);
        // Sigmoid(0) = 0.5 exactly: a logit of 0 reaches a 0.5 threshold.
        let p = predict_sets(
            &[0.0, -1.0, 3.0, -0.5],
            2,
            2,
            Activation::Sigmoid,
            Thresholds::Fixed(0.5),
            &[vec![0], vec![1]],
        );
        assert_eq!(p, vec![vec![0], vec![0]]);
        // Softmax of [0, ln 3] is [0.25, 0.75].
        let l3 = 3f32.ln();
        let p = predict_sets(&[0.0, l3], 1, 2, Activation::Softmax, Thresholds::Fixed(0.7), &[vec![0]]);
        assert_eq!(p, vec![vec![1]]);
        let p = predict_sets(&[0.0, l3], 1, 2, Activation::Softmax, Thresholds::Fixed(0.2), &[vec![0]]);
        assert_eq!(p, vec![vec![0, 1]]);
    }

    #[test]
    fn calibrated_thresholds() {
        // Class 0 has 2 labels → threshold = 2nd largest of column 0 among
        // included rows = 0.6 (the 0.99 of the excluded row does not count).
        // Class 1 has 1 label, column 1 has a tie at the top (0.8, 0.8): both
        // are admitted. Class 2 has no labels → never predicted.
        #[rustfmt::skip]
        let scores = vec![
            0.6, 0.8, 0.9,
            0.7, 0.8, 0.1,
            0.1, 0.2, 0.3,
            0.99, 0.99, 0.99,
        ];
        let gt = vec![vec![0], vec![0, 1], vec![1], vec![]];
        let p = predict_sets(&scores, 4, 3, Activation::None, Thresholds::Calibrated, &gt);
        // Row 2 predicts nothing → falls back to argmax (class 2).
        assert_eq!(p, vec![vec![0, 1], vec![0, 1], vec![2], vec![]]);
    }

    #[test]
    fn row_stats_counts() {
        let s = row_stats(&[1, 3, 5], &[3, 4]);
        assert_eq!((s.tp, s.fp, s.fn_, s.exact), (1, 2, 1, false));
        assert!((s.iou - 0.25).abs() < 1e-15);
        let s = row_stats(&[2], &[2]);
        assert!(s.exact && s.iou == 1.0);
        assert_eq!(row_stats(&[], &[]).iou, 1.0);
    }

    #[test]
    fn summary_hand_example() {
        // c = 4. Row 0: pred {0,1}, gt {0} → tp0, fp1.
        //        Row 1: pred {2},   gt {2} → exact, tp2.
        //        Row 2: pred {0},   gt {1,2} → fp0, fn1, fn2.
        //        Row 3: empty gt → skipped.
        let preds = vec![vec![0, 1], vec![2], vec![0], vec![3]];
        let gt = vec![vec![0], vec![2], vec![1, 2], vec![]];
        let s = summarize(&preds, &gt, 4, None);
        assert_eq!((s.images, s.exact, s.macro_classes), (3, 1, 3));
        // IoU: 1/2, 1, 0 → 0.5.
        assert!((s.mean_iou - 0.5).abs() < 1e-15);
        // Micro: TP 2, FP 2, FN 2.
        assert!((s.micro_precision - 0.5).abs() < 1e-15);
        assert!((s.micro_recall - 0.5).abs() < 1e-15);
        assert!((s.micro_f1 - 0.5).abs() < 1e-15);
        // Per class: 0: P 1/2, R 1, F 2/3; 1: P 0 (fp only), R 0, F 0;
        //            2: P 1, R 1/2, F 2/3. Class 3 absent from gt.
        assert!((s.macro_precision - 0.5).abs() < 1e-15);
        assert!((s.macro_recall - 0.5).abs() < 1e-15);
        assert!((s.macro_f1 - 4.0 / 9.0).abs() < 1e-15);
        assert!((s.subset_accuracy() - 1.0 / 3.0).abs() < 1e-15);
        // Subset of rows.
        let s = summarize(&preds, &gt, 4, Some(&[1, 3]));
        assert_eq!((s.images, s.exact, s.macro_classes), (1, 1, 1));
        assert_eq!(s.macro_f1, 1.0);
        let s = summarize(&preds, &gt, 4, Some(&[]));
        assert_eq!((s.images, s.micro_f1, s.macro_f1), (0, 0.0, 0.0));
    }
}
