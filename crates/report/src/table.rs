//! The plain-ASCII terminal table.

use labelscope_core::ResultSet;

use crate::format::{fmt_half_width, fmt_value, pivot};

/// Renders `results` as an aligned plain-ASCII pivot table.
///
/// One line per (dataset, model, subset) and one column per metric, metrics
/// in first-seen order. Within a model the `all` line comes first and the
/// other subsets follow it, with the dataset and model cells left blank
/// where they repeat the line above. Rates are shown in percent with two
/// decimals, count metrics as they are; where an interval exists the cell
/// reads `76.13 +-0.38`, the half-width of the interval (exact bounds are in
/// the CSV). Missing cells read `-`. Every line of the table has the same
/// width; a legend line and then the notes (`note: ...`) follow the table.
///
/// An empty result set gives the line `no results` (and the notes).
pub fn terminal(results: &ResultSet) -> String {
    let mut out = String::new();
    let p = pivot(results, None);
    if p.lines.is_empty() {
        out.push_str("no results\n");
    } else {
        out.push_str(&render_table(&p));
        let any_rate = p.rate.iter().any(|&r| r);
        let any_ci = results.rows.iter().any(|r| r.ci_low.is_some() && r.ci_high.is_some());
        let mut legend = Vec::new();
        if any_rate {
            legend.push("rates in percent");
        }
        if any_ci {
            legend.push("+-x: half the width of the interval");
        }
        if !legend.is_empty() {
            out.push_str(&format!("({})\n", legend.join("; ")));
        }
    }
    for n in &results.notes {
        out.push_str("note: ");
        out.push_str(&clean(n));
        out.push('\n');
    }
    out
}

/// Replaces control characters so that a name cannot break the layout.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad_right(s: &str, w: usize) -> String {
    let mut out = s.to_string();
    out.push_str(&" ".repeat(w.saturating_sub(width(s))));
    out
}

fn pad_left(s: &str, w: usize) -> String {
    let mut out = " ".repeat(w.saturating_sub(width(s)));
    out.push_str(s);
    out
}

fn render_table(p: &crate::format::Pivot<'_>) -> String {
    const SEP: &str = "  ";
    // Text columns.
    let text: Vec<[String; 3]> = p
        .lines
        .iter()
        .map(|l| {
            [
                if l.first_of_dataset { clean(l.dataset) } else { String::new() },
                if l.first_of_model { clean(l.model) } else { String::new() },
                clean(l.subset),
            ]
        })
        .collect();
    let heads = ["dataset", "model", "subset"];
    let text_w: Vec<usize> =
        (0..3).map(|c| text.iter().map(|t| width(&t[c])).max().unwrap_or(0).max(heads[c].len())).collect();
    // Metric columns: value and half-width, each right-aligned.
    // Per line, per metric: (value, half-width).
    type Cell = Option<(String, Option<String>)>;
    let values: Vec<Vec<Cell>> = p
        .lines
        .iter()
        .map(|l| {
            l.cells
                .iter()
                .zip(&p.rate)
                .map(|(c, &rate)| c.map(|r| (fmt_value(r.value, rate), fmt_half_width(r, rate))))
                .collect()
        })
        .collect();
    let n = p.metrics.len();
    let mut vw = vec![0usize; n];
    let mut hw = vec![0usize; n];
    for line in &values {
        for (j, c) in line.iter().enumerate() {
            if let Some((v, h)) = c {
                vw[j] = vw[j].max(width(v));
                if let Some(h) = h {
                    hw[j] = hw[j].max(width(h));
                }
            }
        }
    }
    let cell_w: Vec<usize> = (0..n)
        .map(|j| {
            let inner = vw[j] + if hw[j] > 0 { 3 + hw[j] } else { 0 };
            inner.max(width(p.metrics[j])).max(1)
        })
        .collect();

    let mut header: Vec<String> = (0..3).map(|c| pad_right(heads[c], text_w[c])).collect();
    header.extend((0..n).map(|j| pad_left(&clean(p.metrics[j]), cell_w[j])));
    let rule: Vec<String> = text_w.iter().chain(cell_w.iter()).map(|&w| "-".repeat(w)).collect();
    let rule = rule.join(SEP);

    let mut out = String::new();
    out.push_str(&header.join(SEP));
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for (i, (t, line)) in text.iter().zip(&values).enumerate() {
        if i > 0 && p.lines[i].first_of_dataset {
            out.push_str(&rule);
            out.push('\n');
        }
        let mut cells: Vec<String> = (0..3).map(|c| pad_right(&t[c], text_w[c])).collect();
        for (j, c) in line.iter().enumerate() {
            let s = match c {
                None => "-".to_string(),
                Some((v, h)) => {
                    let mut s = pad_left(v, vw[j]);
                    if hw[j] > 0 {
                        match h {
                            Some(h) => {
                                s.push(' ');
                                s.push_str(&pad_left(&format!("+-{h}"), hw[j] + 2));
                            }
                            None => s.push_str(&" ".repeat(3 + hw[j])),
                        }
                    }
                    s
                }
            };
            cells.push(pad_left(&s, cell_w[j]));
        }
        out.push_str(&cells.join(SEP));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use labelscope_core::ResultRow;

    fn row(model: &str, dataset: &str, metric: &str, subset: &str, value: f64, ci: Option<(f64, f64)>) -> ResultRow {
        ResultRow::new(model, dataset, metric, subset, value).with_ci(ci)
    }

    fn sample() -> ResultSet {
        ResultSet {
            rows: vec![
                row("resnet50", "real", "top1", "all", 0.7613, Some((0.7575, 0.7650))),
                row("resnet50", "real", "top1", "labels=2", 0.5, Some((0.4, 0.6))),
                row("resnet50", "real", "map-classes", "all", 0.81234, None),
                row("vit-huge-patch14", "real", "top1", "all", 0.9012, Some((0.899, 0.903))),
                row("vit-huge-patch14", "real", "imagenet-m-errors", "all", 17.0, None),
                row("resnet50", "v2", "top1", "all", 0.63, Some((0.62, 0.64))),
            ],
            notes: vec!["assumed sorted order".into()],
        }
    }

    #[test]
    fn table_lines_align() {
        let t = terminal(&sample());
        let table: Vec<&str> = t.lines().take_while(|l| !l.starts_with('(')).collect();
        assert_eq!(table.len(), 2 + 4 + 1, "{t}");
        let w = table[0].chars().count();
        for l in &table {
            assert_eq!(l.chars().count(), w, "misaligned line {l:?} in\n{t}");
        }
        assert!(t.is_ascii(), "{t}");
        assert!(t.contains("76.13  +-0.38"), "{t}");
        assert!(t.contains("50.00 +-10.00"), "{t}");
        assert!(t.contains("81.23"), "{t}");
        assert!(t.contains("17"), "{t}");
        assert!(t.ends_with("note: assumed sorted order\n"), "{t}");
        // The subset line has blank dataset and model cells.
        let sub = table.iter().find(|l| l.contains("labels=2")).unwrap();
        assert!(sub.starts_with("   "), "{sub}");
        // Numbers are right-aligned: the top1 column ends at the same place.
        let col_end = table[0].find("top1").unwrap() + 4;
        for l in &table[2..] {
            let c = l.as_bytes()[col_end - 1];
            assert!(c.is_ascii_digit() || c == b'-' || c == b' ', "{l}");
        }
    }

    #[test]
    fn empty_results() {
        let rs = ResultSet { rows: vec![], notes: vec!["n".into()] };
        assert_eq!(terminal(&rs), "no results\nnote: n\n");
    }
}
