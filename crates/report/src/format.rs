//! Helpers shared by the table formats: the pivot (one line per dataset,
//! model and subset, one column per metric), number formatting and escaping.

use std::collections::HashMap;

use labelscope_core::{ResultRow, ResultSet};

/// Whether `metric` is a rate (shown in percent): its name does not end in
/// `errors` and every one of its values lies in `[0, 1]`.
pub(crate) fn is_rate(results: &ResultSet, metric: &str) -> bool {
    !metric.ends_with("errors")
        && results
            .rows
            .iter()
            .filter(|r| r.metric == metric)
            .all(|r| r.value.is_finite() && (0.0..=1.0).contains(&r.value))
}

/// Formats a value: percent with two decimals for rates, an integer for
/// whole counts, three decimals otherwise.
pub(crate) fn fmt_value(v: f64, rate: bool) -> String {
    if !v.is_finite() {
        format!("{v}")
    } else if rate {
        format!("{:.2}", v * 100.0)
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// The half-width of the row's interval, formatted like its value.
pub(crate) fn fmt_half_width(row: &ResultRow, rate: bool) -> Option<String> {
    match (row.ci_low, row.ci_high) {
        (Some(lo), Some(hi)) => {
            let h = (hi - lo).abs() / 2.0;
            Some(if rate { format!("{:.2}", h * 100.0) } else { format!("{h:.3}") })
        }
        _ => None,
    }
}

/// The row's interval as `[low, high]`, formatted like its value.
pub(crate) fn fmt_interval(row: &ResultRow, rate: bool) -> Option<String> {
    match (row.ci_low, row.ci_high) {
        (Some(lo), Some(hi)) => {
            let f = |v: f64| {
                if rate {
                    format!("{:.2}", v * 100.0)
                } else {
                    format!("{v:.3}")
                }
            };
            Some(format!("[{}, {}]", f(lo), f(hi)))
        }
        _ => None,
    }
}

/// Escapes text for HTML and XML content and attribute values.
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && c != '\n' && c != '\t' && c != '\r' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// One line of a pivot table.
pub(crate) struct PivotLine<'a> {
    pub dataset: &'a str,
    pub model: &'a str,
    pub subset: &'a str,
    /// Whether this is the first line of its (dataset, model) group.
    pub first_of_model: bool,
    /// Whether this is the first line of its dataset.
    pub first_of_dataset: bool,
    /// One cell per metric of [`Pivot::metrics`].
    pub cells: Vec<Option<&'a ResultRow>>,
}

/// A pivot table: lines per (dataset, model, subset), columns per metric.
pub(crate) struct Pivot<'a> {
    /// Metric names, in first-seen order.
    pub metrics: Vec<&'a str>,
    /// Whether each metric is a rate (see [`is_rate`]).
    pub rate: Vec<bool>,
    pub lines: Vec<PivotLine<'a>>,
}

/// Builds the pivot of the rows of `dataset` (all datasets when `None`).
///
/// Datasets and models keep their first-seen order; within a model the
/// subset `all` comes first, then the other subsets in first-seen order.
/// When a (dataset, model, subset, metric) occurs more than once the first
/// row wins.
pub(crate) fn pivot<'a>(results: &'a ResultSet, dataset: Option<&str>) -> Pivot<'a> {
    let rows: Vec<&ResultRow> = results
        .rows
        .iter()
        .filter(|r| match dataset {
            Some(d) => r.dataset == d,
            None => true,
        })
        .collect();
    let mut metrics: Vec<&str> = Vec::new();
    let mut metric_index: HashMap<&str, usize> = HashMap::new();
    // datasets -> models -> subsets, all in first-seen order.
    type Models<'b> = Vec<(&'b str, Vec<&'b str>)>;
    let mut groups: Vec<(&str, Models)> = Vec::new();
    let mut cells: HashMap<(&str, &str, &str, &str), &ResultRow> = HashMap::new();
    for r in &rows {
        if !metric_index.contains_key(r.metric.as_str()) {
            metric_index.insert(&r.metric, metrics.len());
            metrics.push(&r.metric);
        }
        let d = match groups.iter().position(|(d, _)| *d == r.dataset) {
            Some(i) => i,
            None => {
                groups.push((&r.dataset, Vec::new()));
                groups.len() - 1
            }
        };
        let models = &mut groups[d].1;
        let m = match models.iter().position(|(m, _)| *m == r.model) {
            Some(i) => i,
            None => {
                models.push((&r.model, Vec::new()));
                models.len() - 1
            }
        };
        let subsets = &mut models[m].1;
        if !subsets.contains(&r.subset.as_str()) {
            subsets.push(&r.subset);
        }
        cells.entry((&r.dataset, &r.model, &r.subset, &r.metric)).or_insert(r);
    }
    let rate = metrics.iter().map(|m| is_rate(results, m)).collect();
    let mut lines = Vec::new();
    for (d, models) in &groups {
        let mut first_of_dataset = true;
        for (m, subsets) in models {
            let mut ordered: Vec<&str> = subsets.iter().copied().filter(|s| *s == "all").collect();
            ordered.extend(subsets.iter().copied().filter(|s| *s != "all"));
            for (i, s) in ordered.iter().enumerate() {
                lines.push(PivotLine {
                    dataset: d,
                    model: m,
                    subset: s,
                    first_of_model: i == 0,
                    first_of_dataset,
                    cells: metrics.iter().map(|k| cells.get(&(*d, *m, *s, *k)).copied()).collect(),
                });
                first_of_dataset = false;
            }
        }
    }
    Pivot { metrics, rate, lines }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, dataset: &str, metric: &str, subset: &str, value: f64) -> ResultRow {
        ResultRow::new(model, dataset, metric, subset, value)
    }

    #[test]
    fn pivot_orders_all_first_and_groups_models() {
        let rs = ResultSet {
            rows: vec![
                row("a", "real", "top1", "labels=1", 0.5),
                row("a", "real", "top1", "all", 0.6),
                row("b", "real", "top1", "all", 0.7),
                row("a", "real", "top5", "all", 0.9),
                row("a", "other", "errs", "all", 12.0),
            ],
            notes: vec![],
        };
        let p = pivot(&rs, None);
        assert_eq!(p.metrics, ["top1", "top5", "errs"]);
        assert_eq!(p.rate, [true, true, false]);
        let keys: Vec<_> = p.lines.iter().map(|l| (l.dataset, l.model, l.subset)).collect();
        assert_eq!(
            keys,
            [("real", "a", "all"), ("real", "a", "labels=1"), ("real", "b", "all"), ("other", "a", "all")]
        );
        assert_eq!(p.lines[0].cells[1].map(|r| r.value), Some(0.9));
        assert!(p.lines[1].cells[1].is_none());
        let only = pivot(&rs, Some("other"));
        assert_eq!(only.metrics, ["errs"]);
        assert_eq!(only.lines.len(), 1);
    }

    #[test]
    fn number_formats() {
        assert_eq!(fmt_value(0.761_34, true), "76.13");
        assert_eq!(fmt_value(42.0, false), "42");
        assert_eq!(fmt_value(1.5, false), "1.500");
        let mut r = row("a", "d", "top1", "all", 0.5);
        r.ci_low = Some(0.49);
        r.ci_high = Some(0.51);
        assert_eq!(fmt_half_width(&r, true).as_deref(), Some("1.00"));
        assert_eq!(fmt_interval(&r, true).as_deref(), Some("[49.00, 51.00]"));
        assert_eq!(escape_xml("<b>&x\"'"), "&lt;b&gt;&amp;x&quot;&#39;");
    }
}
