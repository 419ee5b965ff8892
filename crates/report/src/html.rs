//! Self-contained HTML pages: the report of a [`ResultSet`]
//! ([`html_report`]) and a generic page of sections with text, tables and
//! figures ([`html_page`]).

use std::fmt::Write as _;

use labelscope_core::{ResultRow, ResultSet};

use crate::csv::quote;
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
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0.3rem 0; }
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
    page_start(&mut h, title);
    meta_section(&mut h, meta);

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
            figure(&mut h, f);
        }
        h.push_str("</section>\n");
    }

    if !results.rows.is_empty() {
        long_table(&mut h, results);
    }
    page_end(&mut h);
    h
}

/// The doctype, the head (title, CSS) and the page's `<h1>`.
fn page_start(h: &mut String, title: &str) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n</header>\n",
        esc(title),
        esc(title)
    );
}

/// The "Run" section: a table of the `meta` pairs (nothing when empty).
fn meta_section(h: &mut String, meta: &[(String, String)]) {
    if !meta.is_empty() {
        h.push_str("<section>\n<h2>Run</h2>\n<table class=\"meta\">\n<tbody>\n");
        for (k, v) in meta {
            let _ = writeln!(h, "<tr><th scope=\"row\">{}</th><td>{}</td></tr>", esc(k), esc(v));
        }
        h.push_str("</tbody>\n</table>\n</section>\n");
    }
}

/// One inlined figure with its caption.
fn figure(h: &mut String, f: &Figure) {
    let _ = writeln!(h, "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>", inline_svg(&f.svg), esc(&f.title));
}

/// The sorting script and the end of the page.
fn page_end(h: &mut String) {
    let _ = write!(h, "<script>{JS}</script>\n</body>\n</html>\n");
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

// ---------------------------------------------------------------------------
// Generic pages.

/// A section of an [`html_page`]: a heading, then paragraphs, tables and
/// figures, in that order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Section {
    /// The section's `<h2>` heading.
    pub heading: String,
    /// Paragraphs of plain text (escaped, one `<p>` each).
    pub paragraphs: Vec<String>,
    /// Sortable tables.
    pub tables: Vec<Table>,
    /// Inlined SVG figures with captions.
    pub figures: Vec<Figure>,
}

/// A table of an [`html_page`], also writable as CSV ([`Table::to_csv`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Caption above the table (none when empty).
    pub caption: String,
    /// Column names.
    pub columns: Vec<String>,
    /// The rows. A row shorter than `columns` is padded with
    /// [`Cell::Empty`]; a longer one keeps its extra cells.
    pub rows: Vec<Vec<Cell>>,
}

/// One cell of a [`Table`].
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text, shown as it is (escaped).
    Text(String),
    /// A whole number.
    Int(i64),
    /// A number and the decimals to show in HTML (the CSV has full
    /// precision). NaN is shown as missing.
    Float(f64, usize),
    /// A rate in `[0, 1]`, shown in percent with two decimals (no `%` sign;
    /// say so in the column name). The CSV holds the raw rate. NaN is
    /// shown as missing.
    Percent(f64),
    /// No value, shown as `–`.
    Empty,
}

impl Cell {
    /// Whether the cell holds a number (for the column's alignment).
    fn is_number(&self) -> bool {
        matches!(self, Cell::Int(_) | Cell::Float(..) | Cell::Percent(_))
    }

    /// The cell as CSV field (unquoted numbers at full precision).
    fn csv_field(&self) -> String {
        match self {
            Cell::Text(s) => quote(s),
            Cell::Int(i) => i.to_string(),
            Cell::Float(v, _) | Cell::Percent(v) => v.to_string(),
            Cell::Empty => String::new(),
        }
    }
}

/// The cells of `row` padded with [`Cell::Empty`] to `n` cells.
fn padded(row: &[Cell], n: usize) -> impl Iterator<Item = &Cell> {
    row.iter().chain(std::iter::repeat_n(&Cell::Empty, n.saturating_sub(row.len())))
}

impl Table {
    /// Writes the table as RFC 4180 CSV: a header line of the column names,
    /// then one line per row (padded like the HTML table), lines ending in
    /// `\n`.
    ///
    /// Text is quoted when it contains a comma, a double quote, a carriage
    /// return or a newline (quotes doubled); `Int` is written as it is,
    /// `Float` at full precision (Rust's shortest round-trip `Display`,
    /// whatever its decimals), `Percent` as the raw rate and `Empty` as an
    /// empty field. The caption is not part of the CSV.
    pub fn to_csv(&self) -> String {
        let mut out = self.columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
        for row in &self.rows {
            let fields: Vec<String> = padded(row, self.columns.len()).map(Cell::csv_field).collect();
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        out
    }
}

/// A number for the `data-v` attribute, as JavaScript's `parseFloat` reads it.
fn js_number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        format!("{v}")
    }
}

/// A number shown with `decimals` decimals, infinities as `∞` and `−∞`.
fn show_number(v: f64, decimals: usize) -> String {
    if v.is_infinite() {
        if v > 0.0 { "∞" } else { "−∞" }.to_string()
    } else {
        // A sane bound: more decimals than this show nothing new.
        format!("{:.*}", decimals.min(40), v)
    }
}

/// One `<td>` of a generic table.
fn cell_html(h: &mut String, c: &Cell, numeric_column: bool) {
    let num = |h: &mut String, raw: f64, shown: String| {
        if raw.is_nan() {
            h.push_str("<td class=\"num na\">–</td>");
        } else {
            let _ = write!(h, "<td class=\"num\" data-v=\"{0}\" title=\"{0}\">{1}</td>", js_number(raw), esc(&shown));
        }
    };
    match c {
        Cell::Text(s) => {
            let _ = write!(h, "<td>{}</td>", esc(s));
        }
        Cell::Int(i) => {
            let _ = write!(h, "<td class=\"num\" data-v=\"{i}\">{i}</td>");
        }
        Cell::Float(v, d) => num(h, *v, show_number(*v, *d)),
        Cell::Percent(v) => num(h, *v, show_number(v * 100.0, 2)),
        Cell::Empty => {
            h.push_str(if numeric_column { "<td class=\"num na\">–</td>" } else { "<td class=\"na\">–</td>" })
        }
    }
}

/// A generic table as a sortable HTML table.
fn table_html(h: &mut String, t: &Table) {
    let width = t.rows.iter().map(Vec::len).fold(t.columns.len(), usize::max);
    // A column is numeric when it holds numbers and no text.
    let numeric: Vec<bool> = (0..width)
        .map(|j| {
            let cells = || t.rows.iter().filter_map(|r| r.get(j));
            cells().any(Cell::is_number) && !cells().any(|c| matches!(c, Cell::Text(_)))
        })
        .collect();
    h.push_str("<div class=\"scroll\">\n<table class=\"sortable\">\n");
    if !t.caption.is_empty() {
        let _ = writeln!(h, "<caption>{}</caption>", esc(&t.caption));
    }
    h.push_str("<thead><tr>");
    for (j, &is_num) in numeric.iter().enumerate() {
        let name = t.columns.get(j).map(String::as_str).unwrap_or("");
        let class = if is_num { " class=\"num\"" } else { "" };
        let _ = write!(h, "<th scope=\"col\"{class}>{}</th>", esc(name));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        h.push_str("<tr>");
        for (j, c) in padded(row, width).enumerate() {
            cell_html(h, c, numeric[j]);
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n</div>\n");
}

/// Renders a generic self-contained HTML page, for analyses whose results
/// are not a model × metric [`ResultSet`]: the same styles and table sorting
/// as [`html_report`], no external resources at all.
///
/// Layout: the title; the `meta` pairs in a "Run" table (left out when
/// empty); then each section as `<section>` with its `<h2>` heading, its
/// paragraphs (`<p>`), its tables and its figures. Tables are sortable by
/// clicking a column header: numbers are right-aligned and carry their raw
/// value in `data-v` (so they sort numerically) and in the tooltip; `Empty`
/// and NaN cells show `–` and sort last. Figures are inlined (see
/// [`Figure::svg`]) with their caption in a `<figcaption>`. Every text taken
/// from the inputs is HTML-escaped.
pub fn html_page(title: &str, meta: &[(String, String)], sections: &[Section]) -> String {
    let mut h = String::new();
    page_start(&mut h, title);
    meta_section(&mut h, meta);
    for s in sections {
        let _ = writeln!(h, "<section>\n<h2>{}</h2>", esc(&s.heading));
        for p in &s.paragraphs {
            let _ = writeln!(h, "<p>{}</p>", esc(p));
        }
        for t in &s.tables {
            table_html(&mut h, t);
        }
        for f in &s.figures {
            figure(&mut h, f);
        }
        h.push_str("</section>\n");
    }
    page_end(&mut h);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::plot::{heatmap_svg, lines_svg, svg_to_png, HeatmapSpec, LineSeries, LineSpec};

    fn example_table() -> Table {
        Table {
            caption: "agreement <script>alert(1)</script>".into(),
            columns: vec!["name".into(), "n".into(), "mean".into(), "rate (%)".into()],
            rows: vec![
                vec![
                    Cell::Text("a, \"quoted\"".into()),
                    Cell::Int(12),
                    Cell::Float(0.1 + 0.2, 3),
                    Cell::Percent(0.1234),
                ],
                vec![Cell::Text("<script>x</script>".into()), Cell::Int(-3), Cell::Float(f64::NAN, 2), Cell::Empty],
                // Short: padded with an empty cell.
                vec![Cell::Text("two\nlines".into()), Cell::Empty, Cell::Float(2.5, 1)],
            ],
        }
    }

    fn example_page() -> (String, Vec<Section>) {
        let heat = heatmap_svg(&HeatmapSpec {
            title: "box centers".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_range: (-0.25, 1.25),
            y_range: (-0.25, 1.25),
            cols: 30,
            rows: 30,
            values: (0..900).map(|i| ((i % 30) as f64 - 15.0).abs() * ((i / 30) as f64)).collect(),
            y_down: true,
            outline: Some([0.0, 0.0, 1.0, 1.0]),
            marker: Some((0.5, 0.6)),
        })
        .unwrap();
        let lines = lines_svg(&LineSpec {
            title: "agreement".into(),
            x_label: "threshold".into(),
            y_label: "agreement (%)".into(),
            series: vec![
                LineSeries {
                    name: "model a".into(),
                    points: (0..10).map(|i| (i as f64 / 10.0, 60.0 + i as f64 * 3.0)).collect(),
                },
                LineSeries {
                    name: "model b".into(),
                    points: (0..10).map(|i| (i as f64 / 10.0, 80.0 - i as f64 * 2.0)).collect(),
                },
            ],
            hlines: vec![("chance".into(), 50.0), ("humans".into(), 92.0)],
            y_range: None,
        })
        .unwrap();
        let sections = vec![
            Section {
                heading: "Agreement & <friends>".into(),
                paragraphs: vec!["Counts are per image; 1 < 2.".into()],
                tables: vec![example_table()],
                figures: vec![Figure { title: "centers <b>".into(), svg: heat.clone() }],
            },
            Section {
                heading: "Lines".into(),
                figures: vec![Figure { title: "by threshold".into(), svg: lines.clone() }],
                ..Section::default()
            },
        ];
        if let Some(dir) = std::env::var_os("LABELSCOPE_PLOT_DIR") {
            let dir = std::path::Path::new(&dir);
            for (name, svg) in [("heatmap", &heat), ("lines", &lines)] {
                std::fs::write(dir.join(format!("{name}.png")), svg_to_png(svg, 2.0).unwrap()).unwrap();
                std::fs::write(dir.join(format!("{name}.svg")), svg).unwrap();
            }
        }
        (heat, sections)
    }

    #[test]
    fn html_page_layout_and_escaping() {
        let (heat, sections) = example_page();
        let meta = vec![("command".to_string(), "labelscope byproducts <x>".to_string())];
        let html = html_page("Byproducts <&>", &meta, &sections);
        if let Some(dir) = std::env::var_os("LABELSCOPE_PLOT_DIR") {
            std::fs::write(std::path::Path::new(&dir).join("page.html"), &html).unwrap();
        }
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>Byproducts &lt;&amp;&gt;</title>"));
        assert!(html.contains("<h1>Byproducts &lt;&amp;&gt;</h1>"));
        for bad in ["http://", "https://", "src=", "href=", "<link", "@import", "url(", "<script>alert", "<script>x"] {
            assert!(!html.contains(bad), "HTML contains {bad:?}");
        }
        assert_eq!(html.matches("<script>").count(), 1, "only the sorting script");
        assert!(html.contains("<caption>agreement &lt;script&gt;alert(1)&lt;/script&gt;</caption>"));
        assert!(html.contains("<td>&lt;script&gt;x&lt;/script&gt;</td>"));
        assert!(html.contains("<h2>Run</h2>") && html.contains("labelscope byproducts &lt;x&gt;"));
        // Order: the run table, then the sections in order.
        let run = html.find("<h2>Run</h2>").unwrap();
        let first = html.find("<section>\n<h2>Agreement &amp; &lt;friends&gt;</h2>").unwrap();
        let second = html.find("<h2>Lines</h2>").unwrap();
        assert!(run < first && first < second);
        assert!(html.contains("<p>Counts are per image; 1 &lt; 2.</p>"));
        // Numbers: right-aligned, raw value in data-v.
        assert!(html.contains("<td class=\"num\" data-v=\"0.1234\" title=\"0.1234\">12.34</td>"), "percent");
        assert!(html.contains("<td class=\"num\" data-v=\"12\">12</td>"), "int");
        assert!(html.contains("data-v=\"0.30000000000000004\""), "float keeps full precision in data-v");
        assert!(html.contains(">0.300</td>"), "float shown with its decimals");
        // NaN and Empty: a dash, class na.
        assert_eq!(html.matches("<td class=\"num na\">–</td>").count(), 4, "NaN, two Empty and the padded cell");
        assert!(html.contains("<table class=\"sortable\">"));
        assert!(html.contains("<th scope=\"col\" class=\"num\">rate (%)</th>"));
        assert!(html.contains("<th scope=\"col\">name</th>"), "text column is left-aligned");
        // Figures inlined with captions.
        assert_eq!(html.matches("<svg ").count(), 2);
        assert!(html.contains(&inline_svg(&heat)));
        assert!(html.contains("<figcaption>centers &lt;b&gt;</figcaption>"));
        for tag in ["table", "section", "figure", "tr", "td", "th", "p", "caption"] {
            let open = html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count();
            let close = html.matches(&format!("</{tag}>")).count();
            assert_eq!(open, close, "<{tag}> unbalanced");
        }
        // Every row has as many cells as there are columns.
        let body = &html[html.find("<tbody>\n<tr><td>a,").unwrap()..];
        let body = &body[..body.find("</tbody>").unwrap()];
        let rows: Vec<&str> = body.split("<tr>").skip(1).collect();
        assert_eq!(rows.len(), 3);
        for row in rows {
            assert_eq!(row.matches("<td").count(), 4, "{row}");
        }
    }

    #[test]
    fn table_csv_quotes_and_keeps_raw_values() {
        let t = example_table();
        let text = t.to_csv();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("name,n,mean,rate (%)"));
        assert_eq!(lines.next(), Some("\"a, \"\"quoted\"\"\",12,0.30000000000000004,0.1234"));
        assert_eq!(lines.next(), Some("<script>x</script>,-3,NaN,"));
        assert!(text.ends_with("\"two\nlines\",,2.5,\n"));
        // And a CSV reader reads back the fields.
        let mut reader = ::csv::Reader::from_reader(text.as_bytes());
        let recs: Vec<::csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(&recs[0][0], "a, \"quoted\"");
        assert_eq!(recs[0][2].parse::<f64>().unwrap(), 0.1 + 0.2);
        assert_eq!(&recs[2][0], "two\nlines");
        assert_eq!(recs[2].len(), 4, "padded");
        let quoted_header = Table { caption: String::new(), columns: vec!["a,b".into()], rows: vec![] };
        assert_eq!(quoted_header.to_csv(), "\"a,b\"\n");
    }

    #[test]
    fn number_cells() {
        assert_eq!(js_number(f64::INFINITY), "Infinity");
        assert_eq!(js_number(-0.5), "-0.5");
        assert_eq!(show_number(f64::NEG_INFINITY, 2), "−∞");
        assert_eq!(show_number(1.0 / 3.0, 4), "0.3333");
        let mut h = String::new();
        cell_html(&mut h, &Cell::Empty, false);
        cell_html(&mut h, &Cell::Percent(f64::NAN), true);
        assert_eq!(h, "<td class=\"na\">–</td><td class=\"num na\">–</td>");
    }

    #[test]
    fn inline_svg_strips_prolog_and_namespaces() {
        let s = "<?xml version=\"1.0\"?>\n<!DOCTYPE svg>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\"></svg>";
        assert_eq!(inline_svg(s), "<svg width=\"1\"></svg>");
    }
}
