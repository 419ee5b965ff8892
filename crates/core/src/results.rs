//! Result rows: the one shape every evaluation produces and every output
//! format (terminal table, JSON, CSV, Markdown, HTML, plots) consumes.

use serde::{Deserialize, Serialize};

/// One measured number.
///
/// `correct`/`total` are set for metrics that are a count ratio (accuracy) and
/// `None` otherwise (mAP, F1, IoU). `ci_low`/`ci_high` are the interval bounds
/// when one was computed (Clopper–Pearson for counts, bootstrap percentile for
/// the rest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// Model name (the prediction file stem).
    pub model: String,
    /// Dataset / label source name.
    pub dataset: String,
    /// Metric name, such as `top1`, `map-classes`, `macro-f1`.
    pub metric: String,
    /// Subset of images: `all`, `labels=2`, `labels>=4`, `group=dog`, ...
    pub subset: String,
    /// Numerator for count metrics.
    pub correct: Option<u64>,
    /// Denominator for count metrics.
    pub total: Option<u64>,
    /// The value, in `[0, 1]` for rates.
    pub value: f64,
    /// Lower interval bound.
    pub ci_low: Option<f64>,
    /// Upper interval bound.
    pub ci_high: Option<f64>,
}

impl ResultRow {
    /// A row with a value only (no counts, no interval).
    pub fn new(model: &str, dataset: &str, metric: &str, subset: &str, value: f64) -> ResultRow {
        ResultRow {
            model: model.to_string(),
            dataset: dataset.to_string(),
            metric: metric.to_string(),
            subset: subset.to_string(),
            correct: None,
            total: None,
            value,
            ci_low: None,
            ci_high: None,
        }
    }

    /// Sets `correct`/`total`.
    pub fn with_counts(mut self, correct: u64, total: u64) -> ResultRow {
        self.correct = Some(correct);
        self.total = Some(total);
        self
    }

    /// Sets the interval bounds (or clears them with `None`).
    pub fn with_ci(mut self, ci: Option<(f64, f64)>) -> ResultRow {
        self.ci_low = ci.map(|c| c.0);
        self.ci_high = ci.map(|c| c.1);
        self
    }
}

/// A collection of result rows plus free-form notes (assumptions made, warnings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultSet {
    /// The rows, in the order they were computed.
    pub rows: Vec<ResultRow>,
    /// Human-readable notes: which row order was assumed, how many images were left out, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl ResultSet {
    /// Distinct model names in first-seen order.
    pub fn models(&self) -> Vec<&str> {
        distinct(self.rows.iter().map(|r| r.model.as_str()))
    }

    /// Distinct metric names in first-seen order.
    pub fn metrics(&self) -> Vec<&str> {
        distinct(self.rows.iter().map(|r| r.metric.as_str()))
    }

    /// Distinct dataset names in first-seen order.
    pub fn datasets(&self) -> Vec<&str> {
        distinct(self.rows.iter().map(|r| r.dataset.as_str()))
    }

    /// The row for (model, dataset, metric, subset), if present.
    pub fn find(&self, model: &str, dataset: &str, metric: &str, subset: &str) -> Option<&ResultRow> {
        self.rows.iter().find(|r| r.model == model && r.dataset == dataset && r.metric == metric && r.subset == subset)
    }
}

fn distinct<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for s in it {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}
