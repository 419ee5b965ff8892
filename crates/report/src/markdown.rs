//! Pivot tables in GitHub-flavoured Markdown.

use labelscope_core::ResultSet;

use crate::format::{fmt_half_width, fmt_value, pivot};

/// Renders `results` as Markdown: per dataset a `## DATASET` section holding
/// a pivot table (one line per model and subset, one column per metric of
/// that dataset in first-seen order; the model cell is left blank on the
/// subset lines that follow the model's first line), then a legend line,
/// then the notes as a list.
///
/// Cells read like `76.13 ±0.38` (percent and the half-width of the
/// interval) for rates, plain numbers for counts, and `–` when missing.
/// Names are escaped so that `|`, `\`, `<` and line breaks cannot break the
/// table or open an HTML tag.
pub fn markdown(results: &ResultSet) -> String {
    let mut out = String::new();
    let datasets = results.datasets();
    if datasets.is_empty() {
        out.push_str("_No results._\n");
    }
    let mut any_rate = false;
    let mut any_ci = false;
    for d in datasets {
        let p = pivot(results, Some(d));
        out.push_str(&format!("## {}\n\n", escape(d)));
        let mut head = vec!["model".to_string(), "subset".to_string()];
        head.extend(p.metrics.iter().map(|m| escape(m)));
        out.push_str(&format!("| {} |\n", head.join(" | ")));
        let mut align = vec![":---".to_string(), ":---".to_string()];
        align.extend(p.metrics.iter().map(|_| "---:".to_string()));
        out.push_str(&format!("|{}|\n", align.join("|")));
        for l in &p.lines {
            let mut cells = vec![if l.first_of_model { escape(l.model) } else { String::new() }, escape(l.subset)];
            for (c, &rate) in l.cells.iter().zip(&p.rate) {
                cells.push(match c {
                    None => "–".to_string(),
                    Some(r) => {
                        any_rate |= rate;
                        let v = fmt_value(r.value, rate);
                        match fmt_half_width(r, rate) {
                            Some(h) => {
                                any_ci = true;
                                format!("{v} ±{h}")
                            }
                            None => v,
                        }
                    }
                });
            }
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out.push('\n');
    }
    let mut legend = Vec::new();
    if any_rate {
        legend.push("Rates in percent.");
    }
    if any_ci {
        legend.push("±: half the width of the interval.");
    }
    if !legend.is_empty() {
        out.push_str(&format!("_{}_\n\n", legend.join(" ")));
    }
    if !results.notes.is_empty() {
        out.push_str("**Notes**\n\n");
        for n in &results.notes {
            out.push_str(&format!("- {}\n", escape(n)));
        }
        out.push('\n');
    }
    out
}

/// Escapes text for a Markdown table cell.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use labelscope_core::ResultRow;

    fn row(model: &str, dataset: &str, metric: &str, subset: &str, value: f64) -> ResultRow {
        ResultRow::new(model, dataset, metric, subset, value)
            .with_counts(1, 2)
            .with_ci(Some((value - 0.01, value + 0.01)))
    }

    #[test]
    fn sections_and_escaping() {
        let rs = ResultSet {
            rows: vec![
                row("a|b", "real", "top1", "all", 0.5),
                row("a|b", "real", "top1", "labels=2", 0.25),
                row("c", "v2", "top5", "all", 0.75),
            ],
            notes: vec!["x <y>".into()],
        };
        let md = markdown(&rs);
        assert!(md.contains("## real\n"), "{md}");
        assert!(md.contains("## v2\n"), "{md}");
        assert!(md.contains("| a\\|b | all | 50.00 ±1.00 |"), "{md}");
        assert!(md.contains("|  | labels=2 | 25.00 ±1.00 |"), "{md}");
        assert!(md.contains("- x &lt;y>"), "{md}");
        // Every table line of the first section has the same number of unescaped pipes.
        let pipes = |l: &str| l.replace("\\|", "").matches('|').count();
        let lines: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert!(lines[..4].iter().all(|l| pipes(l) == 4), "{md}");
    }
}
