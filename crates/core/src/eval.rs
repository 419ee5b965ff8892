//! The evaluation engine: joins an image order, a label source and
//! prediction files, and produces [`ResultRow`]s.
//!
//! Metric names (column `metric` of the result rows):
//!
//! | metric | from | definition |
//! |---|---|---|
//! | `top{k}` | top-k or scores | any of the k best predictions is in the image's label set (the `--labels` source); images with an empty set are left out |
//! | `orig-top{k}` | top-k or scores | the same against the original single label (needs original labels) |
//! | `expert-2020-strict` | expert labels | see [`crate::metrics::expert`] |
//! | `expert-2022-balanced` | expert labels + original labels | see [`crate::metrics::expert`] |
//! | `imagenet-m-top1` | expert labels | on ImageNet-M, top-1 ∈ correct ∪ unclear (a count ratio) |
//! | `imagenet-m-errors` | expert labels | number of mistakes on ImageNet-M (the value is the count) |
//! | `map-samples` | scores | mean over images of the AP of the image's labels over the ranked classes |
//! | `map-classes` | scores | mean over classes with positives of the non-interpolated AP (scikit-learn semantics) |
//! | `map-classes-voc` | scores | the same with VOC all-points interpolation |
//! | `subset-acc`, `set-iou`, `micro-*`, `macro-*` | scores + `--scores` | set metrics, see [`crate::metrics::sets`] |
//!
//! Count metrics (`top{k}`, `orig-top{k}`, `expert-2020-strict`,
//! `imagenet-m-top1`, `subset-acc`) carry `correct`/`total` and a
//! Clopper–Pearson interval; the others have `correct`/`total` null.
//!
//! Subsets: `all`; `labels=1`, `labels=2`, `labels=3`, `labels>=4` (number of
//! labels in the image's set); `group=NAME` (class group of the image's
//! original label).

use crate::classes::{ClassTable, Group};
use crate::error::{Error, Result};
use crate::ids::join_key;
use crate::labels::{ExpertLabels, LabelSource};
use crate::metrics::intervals::{clopper_pearson, Bootstrap};
use crate::metrics::sets::{Activation, Thresholds};
use crate::metrics::{expert, ranking, sets, topk};
use crate::order::ImageOrder;
use crate::predictions::{PredictionData, Predictions};
use crate::results::ResultRow;

/// What the score columns of a prediction file are, for set metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScoreKind {
    /// Probabilities (used as they are).
    Probs,
    /// Logits, turned into probabilities by the given activation.
    Logits(Activation),
}

/// Options of an evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The k of the top-k metrics (those larger than the width of a top-k file are skipped).
    pub ks: Vec<usize>,
    /// Significance level of the intervals (0.05 gives 95% intervals).
    pub alpha: f64,
    /// Bootstrap for mAP and class-balanced accuracy (None: no bootstrap intervals).
    pub bootstrap: Option<Bootstrap>,
    /// Also bootstrap class-wise mAP (one full pass over the scores per resample).
    pub bootstrap_classwise: bool,
    /// What the scores are; set metrics are computed only when this is given.
    pub score_kind: Option<ScoreKind>,
    /// Thresholds for set metrics.
    pub thresholds: Thresholds,
    /// Emit per-bucket and per-group rows.
    pub breakdowns: bool,
    /// Evaluate the intersection when labels and predictions do not cover the same images.
    pub allow_partial: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            ks: vec![1, 5],
            alpha: 0.05,
            bootstrap: Some(Bootstrap { resamples: 1000, seed: 0, alpha: 0.05 }),
            bootstrap_classwise: false,
            score_kind: None,
            thresholds: Thresholds::Fixed(0.5),
            breakdowns: true,
            allow_partial: false,
        }
    }
}

/// A label source joined to an image order: everything that does not depend
/// on the model, prepared once and shared by all prediction files.
#[derive(Debug)]
pub struct Dataset {
    /// Dataset name used in result rows.
    pub name: String,
    /// Row order of the prediction files.
    pub order: ImageOrder,
    /// Label set of each row; empty = left out.
    pub gt: Vec<Vec<u32>>,
    /// Original label of each row, when known.
    pub original: Option<Vec<u32>>,
    /// Expert labels and each row's position in them.
    pub expert: Option<(ExpertLabels, Vec<Option<usize>>)>,
    /// Breakdown subsets: (name, rows).
    pub subsets: Vec<(String, Vec<usize>)>,
    /// Number of classes.
    pub n_classes: usize,
    /// Notes on the join (images left out, ...).
    pub notes: Vec<String>,
}

fn first_names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = it.take(5).map(|s| format!("{s:?}")).collect();
    v.join(", ")
}

impl Dataset {
    /// Joins `labels` to `order` by image id. `original` (aligned with the
    /// order) overrides original labels carried by the order itself.
    pub fn prepare(
        name: &str,
        order: ImageOrder,
        labels: &LabelSource,
        original: Option<Vec<u32>>,
        classes: &ClassTable,
        opts: &EvalOptions,
    ) -> Result<Dataset> {
        let mut notes = Vec::new();
        let original = original.or_else(|| order.original.clone());
        let (sets, expert) = match labels {
            LabelSource::Sets(s) => (s.clone(), None),
            LabelSource::Expert(e) => (e.as_label_sets(false)?, Some(e.clone())),
        };
        // Join: row -> label position.
        let position: Vec<Option<usize>> = order.names.iter().map(|n| sets.position(n)).collect();
        let missing_rows: Vec<&String> =
            order.names.iter().zip(&position).filter(|(_, p)| p.is_none()).map(|(n, _)| n).collect();
        let order_keys: std::collections::HashSet<&str> = order.names.iter().map(|n| join_key(n)).collect();
        let unused_labels: Vec<&String> = sets.names.iter().filter(|n| !order_keys.contains(join_key(n))).collect();
        let src = labels.path().display();
        if missing_rows.len() == order.len() {
            return Err(Error::Mismatch(format!(
                "the labels ({src}) and the image order ({}) share no image id (labels e.g. {}; order e.g. {}): \
                 is --images the list these predictions were made on?",
                order.source,
                first_names(sets.names.iter().take(2)),
                first_names(order.names.iter().take(2))
            )));
        }
        if !unused_labels.is_empty() && !opts.allow_partial {
            return Err(Error::Mismatch(format!(
                "{} of {} images of the labels ({src}) are not in the image order ({}), e.g. {}; \
                 pass --allow-partial to evaluate on the images they share",
                unused_labels.len(),
                sets.len(),
                order.source,
                first_names(unused_labels.iter().copied())
            )));
        }
        if !missing_rows.is_empty() {
            if expert.is_some() {
                notes.push(format!(
                    "{} of {} prediction rows have no expert annotation and are left out",
                    missing_rows.len(),
                    order.len()
                ));
            } else if !opts.allow_partial {
                return Err(Error::Mismatch(format!(
                    "{} of {} images of the image order ({}) have no entry in the labels ({src}), e.g. {}; \
                     pass --allow-partial to evaluate on the images they share",
                    missing_rows.len(),
                    order.len(),
                    order.source,
                    first_names(missing_rows.iter().copied())
                )));
            } else {
                notes.push(format!(
                    "--allow-partial: {} of {} prediction rows have no labels and are left out",
                    missing_rows.len(),
                    order.len()
                ));
            }
        }
        if !unused_labels.is_empty() {
            notes.push(format!("--allow-partial: {} labelled images have no prediction row", unused_labels.len()));
        }
        let gt: Vec<Vec<u32>> = position.iter().map(|p| p.map(|i| sets.sets[i].clone()).unwrap_or_default()).collect();
        let empty = position.iter().filter(|p| p.is_some_and(|i| sets.sets[i].is_empty())).count();
        if empty > 0 {
            notes.push(format!(
                "{empty} images have an empty label set (no valid label) and are left out of label-set metrics"
            ));
        }
        let expert = expert.map(|e| {
            let pos = order.names.iter().map(|n| e.position(n)).collect();
            (e, pos)
        });
        if let Some(o) = &original {
            if o.len() != order.len() {
                return Err(Error::Mismatch(format!(
                    "original labels have {} entries but the image order has {} rows",
                    o.len(),
                    order.len()
                )));
            }
        }
        let mut subsets = Vec::new();
        if opts.breakdowns {
            for (label, lo, hi) in
                [("labels=1", 1, 1), ("labels=2", 2, 2), ("labels=3", 3, 3), ("labels>=4", 4, usize::MAX)]
            {
                let rows: Vec<usize> = (0..gt.len()).filter(|&r| (lo..=hi).contains(&gt[r].len())).collect();
                subsets.push((label.to_string(), rows));
            }
            match (&original, classes.has_groups()) {
                (Some(o), true) => {
                    for g in Group::ALL {
                        let rows: Vec<usize> = (0..gt.len()).filter(|&r| classes.in_group(o[r] as usize, g)).collect();
                        subsets.push((format!("group={}", g.name()), rows));
                    }
                }
                (None, _) => notes.push(
                    "no original labels (give --images with [name, wnid] pairs or --original): \
                     orig-top-k and class-group breakdowns are skipped"
                        .into(),
                ),
                (Some(_), false) => {
                    notes.push("the class table has no groups: class-group breakdowns are skipped".into())
                }
            }
        }
        Ok(Dataset { name: name.to_string(), order, gt, original, expert, subsets, n_classes: classes.len(), notes })
    }

    /// Evaluates one prediction file.
    pub fn evaluate(&self, preds: &Predictions, opts: &EvalOptions) -> Result<Evaluation> {
        Evaluator { ds: self, preds, opts, rows: Vec::new(), notes: Vec::new() }.run()
    }
}

/// Rows and notes of one model's evaluation.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Result rows.
    pub rows: Vec<ResultRow>,
    /// Notes (warnings) about this model.
    pub notes: Vec<String>,
}

struct Evaluator<'a> {
    ds: &'a Dataset,
    preds: &'a Predictions,
    opts: &'a EvalOptions,
    rows: Vec<ResultRow>,
    notes: Vec<String>,
}

impl Evaluator<'_> {
    /// A metric that is not a count ratio: `correct` and `total` stay null.
    fn push_value(&mut self, metric: &str, subset: &str, value: f64, ci: Option<(f64, f64)>) {
        self.rows.push(ResultRow::new(&self.preds.model, &self.ds.name, metric, subset, value).with_ci(ci));
    }

    fn push_count(&mut self, metric: &str, subset: &str, c: u64, t: u64) -> Result<()> {
        if t == 0 {
            return Ok(());
        }
        let ci = clopper_pearson(c, t, self.opts.alpha)?;
        let row = ResultRow::new(&self.preds.model, &self.ds.name, metric, subset, c as f64 / t as f64);
        self.rows.push(row.with_counts(c, t).with_ci(Some(ci)));
        Ok(())
    }

    /// Counts per-row hits over `all` and every breakdown subset.
    fn push_hits(&mut self, metric: &str, hits: &[Option<bool>]) -> Result<()> {
        let (c, t) = topk::count(hits, None);
        self.push_count(metric, "all", c, t)?;
        for (name, rows) in &self.ds.subsets {
            let (c, t) = topk::count(hits, Some(rows));
            self.push_count(metric, name, c, t)?;
        }
        Ok(())
    }

    fn run(mut self) -> Result<Evaluation> {
        let ds = self.ds;
        let n = ds.order.len();
        if self.preds.rows() != n {
            return Err(Error::Mismatch(format!(
                "{}: {} prediction rows, but the image order ({}) has {} images",
                self.preds.path.display(),
                self.preds.rows(),
                ds.order.source,
                n
            )));
        }
        self.preds.validate_classes(ds.n_classes)?;
        let kmax = self.opts.ks.iter().copied().max().unwrap_or(1);
        let (topk_idx, width) = match &self.preds.data {
            PredictionData::TopK { k, indices } => (std::borrow::Cow::Borrowed(indices.as_slice()), *k),
            PredictionData::Scores(m) => {
                let w = kmax.min(m.cols());
                (std::borrow::Cow::Owned(ranking::topk_from_scores(m.as_slice(), m.rows(), m.cols(), w)), w)
            }
        };
        let ks: Vec<usize> = self.opts.ks.iter().copied().filter(|&k| k >= 1 && k <= width).collect();
        for &k in &self.opts.ks {
            if k > width {
                self.notes.push(format!("top{k} skipped: the file holds only {width} predictions per image"));
            }
        }
        for &k in &ks {
            let h = topk::hits(&topk_idx, width, &ds.gt, k);
            if k == 1 {
                let (c, t) = topk::count(&h, None);
                if t >= 1000 && (c as f64 / t as f64) < 5.0 / ds.n_classes as f64 {
                    self.notes.push(format!(
                        "top1 is {:.2}%, close to chance: check that the image order ({}) is the row order of the file",
                        100.0 * c as f64 / t as f64,
                        ds.order.source
                    ));
                }
            }
            self.push_hits(&format!("top{k}"), &h)?;
        }
        if let Some(orig) = &ds.original {
            let gt: Vec<Vec<u32>> = orig.iter().map(|&o| vec![o]).collect();
            for &k in &ks {
                let h = topk::hits(&topk_idx, width, &gt, k);
                self.push_hits(&format!("orig-top{k}"), &h)?;
            }
        }
        if let Some((labels, pos)) = &ds.expert {
            let top1: Vec<u32> = (0..n).map(|r| topk_idx[r * width]).collect();
            let rows = expert::ExpertRows { labels, position: pos };
            let res = expert::evaluate(&top1, &rows, ds.original.as_deref(), ds.n_classes);
            let strict = expert::hits_2020(&top1, &rows);
            self.push_hits("expert-2020-strict", &strict)?;
            match (res.balanced, &ds.original) {
                (Some(b), Some(orig)) => {
                    let h22 = expert::hits_2022(&top1, &rows);
                    let ci = self.opts.bootstrap.as_ref().and_then(|bs| {
                        bs.bootstrap_percentile(n, |w| expert::class_balanced(&h22, orig, ds.n_classes, Some(w)).1)
                    });
                    self.push_value("expert-2022-balanced", "all", b, ci);
                }
                _ => self
                    .notes
                    .push("expert-2022-balanced needs original labels (--images with wnids or --original)".into()),
            }
            if res.imagenet_m_total > 0 {
                let (errors, total) = (res.imagenet_m_errors, res.imagenet_m_total);
                self.push_count("imagenet-m-top1", "all", total - errors, total)?;
                self.push_value("imagenet-m-errors", "all", errors as f64, None);
            }
        }
        if let PredictionData::Scores(m) = &self.preds.data {
            self.score_metrics(m.as_slice(), m.rows(), m.cols())?;
        }
        Ok(Evaluation { rows: self.rows, notes: self.notes })
    }

    fn score_metrics(&mut self, scores: &[f32], n: usize, c: usize) -> Result<()> {
        let ds = self.ds;
        let gt = &ds.gt;
        // Sample-wise mAP.
        let sap = ranking::per_sample_ap(scores, n, c, gt);
        let mut subsets: Vec<(String, Option<&[usize]>)> = vec![("all".into(), None)];
        subsets.extend(ds.subsets.iter().map(|(s, r)| (s.clone(), Some(r.as_slice()))));
        for (name, rows) in &subsets {
            let vals: Vec<f64> = match rows {
                None => sap.iter().flatten().copied().collect(),
                Some(rs) => rs.iter().filter_map(|&r| sap[r]).collect(),
            };
            if vals.is_empty() {
                continue;
            }
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let ci = self.opts.bootstrap.as_ref().and_then(|b| b.bootstrap_mean(&vals));
            self.push_value("map-samples", name, mean, ci);
        }
        // Class-wise mAP.
        let pc = ranking::per_class_ap(scores, n, c, gt, None);
        let (ci, ci_voc) = match (&self.opts.bootstrap, self.opts.bootstrap_classwise) {
            (Some(b), true) => {
                let ci = b.bootstrap_percentile(n, |w| {
                    ranking::mean_defined(&ranking::per_class_ap(scores, n, c, gt, Some(w)).ap)
                });
                let ci_voc = b.bootstrap_percentile(n, |w| {
                    ranking::mean_defined(&ranking::per_class_ap(scores, n, c, gt, Some(w)).ap_voc)
                });
                (ci, ci_voc)
            }
            _ => (None, None),
        };
        if let Some(v) = ranking::mean_defined(&pc.ap) {
            self.push_value("map-classes", "all", v, ci);
        }
        if let Some(v) = ranking::mean_defined(&pc.ap_voc) {
            self.push_value("map-classes-voc", "all", v, ci_voc);
        }
        // Set metrics.
        let Some(kind) = self.opts.score_kind else {
            return Ok(());
        };
        let activation = match kind {
            ScoreKind::Probs => Activation::None,
            ScoreKind::Logits(a) => a,
        };
        let pred_sets = sets::predict_sets(scores, n, c, activation, self.opts.thresholds, gt);
        let all = sets::summarize(&pred_sets, gt, c, None);
        self.push_set_summary("all", &all, true)?;
        for (name, rows) in &ds.subsets {
            let s = sets::summarize(&pred_sets, gt, c, Some(rows));
            self.push_set_summary(name, &s, false)?;
        }
        Ok(())
    }

    fn push_set_summary(&mut self, subset: &str, s: &sets::SetSummary, with_macro: bool) -> Result<()> {
        if s.images == 0 {
            return Ok(());
        }
        self.push_count("subset-acc", subset, s.exact, s.images)?;
        self.push_value("set-iou", subset, s.mean_iou, None);
        self.push_value("micro-precision", subset, s.micro_precision, None);
        self.push_value("micro-recall", subset, s.micro_recall, None);
        self.push_value("micro-f1", subset, s.micro_f1, None);
        if with_macro {
            self.push_value("macro-precision", subset, s.macro_precision, None);
            self.push_value("macro-recall", subset, s.macro_recall, None);
            self.push_value("macro-f1", subset, s.macro_f1, None);
        }
        Ok(())
    }
}
