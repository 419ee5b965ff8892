//! One self-contained HTML report.

use std::fmt::Write as _;

use labelscope_core::{ResultRow, ResultSet};

use crate::format::{escape_xml as esc, fmt_half_width, fmt_interval, fmt_value, pivot};

/// A figure of the HTML report.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Caption under the figure.
    pub title: String,
    /// An SVG document, such as the output of
    /// [`scatter_svg`](crate::plot::scatter_svg) or
    /// [`bars_svg`](crate::plot::bars_svg). It is inlined as markup (not
    /// escaped), so it must come from a trusted source; an XML declaration,
    /// a doctype and the SVG/XLink namespace declarations are removed (HTML
    /// does not need them).
    pub svg: String,
}

const CSS: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
  margin: 0 auto; max-width: 1200px; padding: 1.5rem; color: #1d1d1f; background: #ffffff; line-height: 1.4; }
h1 { font-size: 1.6rem; margin: 0 0 0.3rem 0; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 0.5rem 0; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #e6e6e6; text-align: left; vertical-align: top; }
th { background: #f4f4f6; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.meta th { background: none; position: static; font-weight: 600; white-space: nowrap; }
table.meta td { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; word-break: break-all; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \2195"; color: #aaa; font-size: 0.8em; }
table.sortable th[aria-sort="ascending"]::after { content: " \25B2"; color: #333; }
table.sortable th[aria-sort="descending"]::after { content: " \25BC"; color: #333; }
tr.sub td { color: #555; }
tr.sub td.subset { padding-left: 1.4rem; }
tbody tr:hover td { background: #fafae6; }
td.na { color: #bbb; }
.ci { color: #777; font-size: 0.85em; }
.legend { color: #666; font-size: 0.85rem; }
ul.notes li { margin: 0.2rem 0; }
figure { margin: 1.5rem 0; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: 0.9rem; margin-top: 0.3rem; }
details { margin-top: 1rem; }
summary { cursor: pointer; font-weight: 600; }
.scroll { overflow-x: auto; }
"#;

const JS: &str = r#"
document.querySelectorAll('table.sortable').forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col], y = b.cells[col];
        var xv = x.getAttribute('data-v'), yv = y.getAttribute('data-v');
        var xm = x.classList.contains('na'), ym = y.classList.contains('na');
        if (xm || ym) { return xm === ym ? 0 : (xm ? 1 : -1); }
        var c = (xv !== null && yv !== null) ? parseFloat(xv) - parseFloat(yv)
                                             : x.textContent.localeCompare(y.textContent);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"#;

/// Renders one self-contained HTML page: no external resources at all
/// (inline CSS, inline SVG figures, a few lines of inline JavaScript that
/// sort a table when a column header is clicked).
///
/// Sections, in order: the title; a table of the `meta` pairs (such as
/// command, inputs, version, date); per dataset a sortable pivot table (one
/// line per model and subset, one column per metric; rates in percent, the
/// half-width of the interval after `±`, exact bounds and counts in the
/// cell's tooltip); the notes; the figures; and the long table (one line
/// per result row, full precision) in a collapsed `<details>`. Every text
/// taken from the inputs is HTML-escaped.
pub fn html_report(title: &str, results: &ResultSet, figures: &[Figure], meta: &[(String, String)]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n</header>\n",
        esc(title),
        esc(title)
    );

    if !meta.is_empty() {
        h.push_str("<section>\n<h2>Run</h2>\n<table class=\"meta\">\n<tbody>\n");
        for (k, v) in meta {
            let _ = writeln!(h, "<tr><th scope=\"row\">{}</th><td>{}</td></tr>", esc(k), esc(v));
        }
        h.push_str("</tbody>\n</table>\n</section>\n");
    }

    h.push_str("<section>\n<h2>Results</h2>\n");
    let datasets = results.datasets();
    if datasets.is_empty() {
        h.push_str("<p>No results.</p>\n");
    }
    for d in &datasets {
        pivot_table(&mut h, results, d);
    }
    if !datasets.is_empty() {
        h.push_str(
            "<p class=\"legend\">Rates in percent; ± is half the width of the interval. Hover a cell for the exact \
             interval and counts; click a column header to sort.</p>\n",
        );
    }
    h.push_str("</section>\n");

    if !results.notes.is_empty() {
        h.push_str("<section>\n<h2>Notes</h2>\n<ul class=\"notes\">\n");
        for n in &results.notes {
            let _ = writeln!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>\n</section>\n");
    }

    if !figures.is_empty() {
        h.push_str("<section>\n<h2>Figures</h2>\n");
        for f in figures {
            let _ =
                writeln!(h, "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>", inline_svg(&f.svg), esc(&f.title));
        }
        h.push_str("</section>\n");
    }

    if !results.rows.is_empty() {
        long_table(&mut h, results);
    }
    let _ = write!(h, "<script>{JS}</script>\n</body>\n</html>\n");
    h
}

/// The per-dataset pivot table.
fn pivot_table(h: &mut String, results: &ResultSet, dataset: &str) {
    let p = pivot(results, Some(dataset));
    let _ = writeln!(h, "<h3>{}</h3>\n<div class=\"scroll\">\n<table class=\"pivot sortable\">", esc(dataset));
    h.push_str("<thead><tr><th scope=\"col\">model</th><th scope=\"col\">subset</th>");
    for (m, &rate) in p.metrics.iter().zip(&p.rate) {
        let unit = if rate { " (%)" } else { "" };
        let _ = write!(h, "<th scope=\"col\" class=\"num\">{}{unit}</th>", esc(m));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for l in &p.lines {
        let class = if l.subset == "all" { "" } else { " class=\"sub\"" };
        let _ = write!(h, "<tr{class}><td>{}</td><td class=\"subset\">{}</td>", esc(l.model), esc(l.subset));
        for (c, &rate) in l.cells.iter().zip(&p.rate) {
            match c {
                None => h.push_str("<td class=\"num na\">–</td>"),
                Some(r) => {
                    let hw = fmt_half_width(r, rate).map(|x| format!(" <span class=\"ci\">±{}</span>", esc(&x)));
                    let _ = write!(
                        h,
                        "<td class=\"num\" data-v=\"{}\" title=\"{}\">{}{}</td>",
                        r.value,
                        esc(&tooltip(r, rate)),
                        esc(&fmt_value(r.value, rate)),
                        hw.unwrap_or_default()
                    );
                }
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</div>\n");
}

/// Tooltip of a pivot cell: the interval and the counts.
fn tooltip(r: &ResultRow, rate: bool) -> String {
    let mut parts = Vec::new();
    if let Some(i) = fmt_interval(r, rate) {
        parts.push(format!("interval {i}"));
    }
    match (r.correct, r.total) {
        (Some(c), Some(t)) => parts.push(format!("{c} / {t}")),
        (None, Some(t)) => parts.push(format!("n = {t}")),
        _ => {}
    }
    parts.join("; ")
}

/// All rows, CSV-like, in a collapsed block.
fn long_table(h: &mut String, results: &ResultSet) {
    let _ = writeln!(
        h,
        "<section>\n<details>\n<summary>All result rows ({})</summary>\n<div class=\"scroll\">\n\
         <table class=\"long sortable\">",
        results.rows.len()
    );
    h.push_str("<thead><tr>");
    for (i, c) in crate::csv::HEADER.iter().enumerate() {
        let class = if i >= 4 { " class=\"num\"" } else { "" };
        let _ = write!(h, "<th scope=\"col\"{class}>{c}</th>");
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for r in &results.rows {
        h.push_str("<tr>");
        for s in [&r.model, &r.dataset, &r.metric, &r.subset] {
            let _ = write!(h, "<td>{}</td>", esc(s));
        }
        let nums = [r.correct.map(|v| v as f64), r.total.map(|v| v as f64), Some(r.value), r.ci_low, r.ci_high];
        for v in nums {
            match v {
                Some(v) => {
                    let _ = write!(h, "<td class=\"num\" data-v=\"{v}\">{v}</td>");
                }
                None => h.push_str("<td class=\"num na\"></td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</div>\n</details>\n</section>\n");
}

/// Prepares an SVG document for inlining into HTML.
fn inline_svg(svg: &str) -> String {
    let mut s = svg.trim();
    // Drop an XML declaration and a doctype.
    loop {
        let t = s.trim_start();
        let skip = if t.starts_with("<?xml") {
            t.find("?>").map(|i| i + 2)
        } else if t.starts_with("<!DOCTYPE") || t.starts_with("<!doctype") {
            t.find('>').map(|i| i + 1)
        } else {
            None
        };
        match skip {
            Some(i) => s = &t[i..],
            None => {
                s = t;
                break;
            }
        }
    }
    s.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "").replace(" xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_svg_strips_prolog_and_namespaces() {
        let s = "<?xml version=\"1.0\"?>\n<!DOCTYPE svg>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\"></svg>";
        assert_eq!(inline_svg(s), "<svg width=\"1\"></svg>");
    }
}
