//! Turns the analyses into tables (CSV), plots (SVG and PNG) and one
//! self-contained HTML report.

use std::path::{Path, PathBuf};

use labelscope_report::{
    bars_svg, heatmap_svg, html_page, lines_svg, scatter_svg, svg_to_png, BarSeries, BarSpec, Cell, Figure,
    HeatmapSpec, LineSeries, LineSpec, ScatterSpec, Section, Table,
};

use crate::analysis::{GroupStats, Hist2, ImagenetReport, Mean2, Rate};
use crate::coco_analysis::CocoReport;
use crate::{Error, Result};

/// The parts of a report: HTML sections, and the same tables and figures
/// under file names.
#[derive(Debug, Clone, Default)]
pub struct ReportParts {
    /// Sections of the HTML page.
    pub sections: Vec<Section>,
    /// `(file stem, table)` for the CSV files.
    pub tables: Vec<(String, Table)>,
    /// `(file stem, SVG)` for the plot files.
    pub figures: Vec<(String, String)>,
}

/// Rows of a per-group table shown in the HTML page (the CSV has all).
pub const HTML_ROWS: usize = 200;

fn rep(e: labelscope_report::Error) -> Error {
    Error::Invalid(format!("plot: {e}"))
}

fn int(v: u64) -> Cell {
    Cell::Int(v as i64)
}

fn pct(r: &Rate) -> Cell {
    Cell::Percent(r.value())
}

fn table(caption: &str, columns: &[&str], rows: Vec<Vec<Cell>>) -> Table {
    Table { caption: caption.to_string(), columns: columns.iter().map(|c| c.to_string()).collect(), rows }
}

impl ReportParts {
    fn table(&mut self, section: &mut Section, stem: &str, t: Table) {
        let mut shown = t.clone();
        if shown.rows.len() > HTML_ROWS {
            shown.caption = format!("{} (first {HTML_ROWS} of {} rows; all in {stem}.csv)", t.caption, t.rows.len());
            shown.rows.truncate(HTML_ROWS);
        }
        section.tables.push(shown);
        self.tables.push((stem.to_string(), t));
    }

    /// The mean, the marginal histograms and the heat map of points in box
    /// coordinates, as `{prefix}_box_position`, `_box_histogram`, `_box_heatmap`.
    fn box_position(
        &mut self,
        s: &mut Section,
        prefix: &str,
        what: &str,
        plural: &str,
        hist: &Hist2,
        mean: &(Mean2, Mean2),
    ) -> Result<()> {
        let caption = format!("Mean box-normalised {what}");
        self.table(s, &format!("{prefix}_box_position"), table(&caption, &BOX_COLUMNS, box_position_rows(mean)));
        self.table(s, &format!("{prefix}_box_histogram"), marginal_table(hist));
        let title = format!("{plural} relative to the box");
        let svg = heat(&title, "u", "v", hist, Some([0.0, 0.0, 1.0, 1.0]), Some(mean.0.mean()))?;
        let caption = format!("{plural} in box-normalised coordinates (dashed: the box; cross: the mean)");
        self.figure(s, &format!("{prefix}_box_heatmap"), &caption, svg);
        Ok(())
    }

    fn figure(&mut self, section: &mut Section, stem: &str, caption: &str, svg: String) {
        section.figures.push(Figure { title: caption.to_string(), svg: svg.clone() });
        self.figures.push((stem.to_string(), svg));
    }
}

fn heat(
    title: &str,
    x: &str,
    y: &str,
    h: &Hist2,
    outline: Option<[f64; 4]>,
    marker: Option<(f64, f64)>,
) -> Result<String> {
    heatmap_svg(&HeatmapSpec {
        title: title.to_string(),
        x_label: x.to_string(),
        y_label: y.to_string(),
        x_range: h.x_range,
        y_range: h.y_range,
        cols: h.cols,
        rows: h.rows,
        values: h.counts.iter().map(|&c| c as f64).collect(),
        y_down: true,
        outline,
        marker: marker.filter(|m| m.0.is_finite() && m.1.is_finite()),
    })
    .map_err(rep)
}

/// Column names of a group table that differ between the releases.
struct GroupNames<'a> {
    what: &'a str,
    selected: &'a str,
    rate: &'a str,
    time: &'a str,
}

const IMAGENET_GROUP: GroupNames<'static> =
    GroupNames { what: "worker", selected: "selected", rate: "selection rate (%)", time: "median time per page (ms)" };

fn group_table(caption: &str, n: &GroupNames, groups: &[GroupStats]) -> Table {
    let rows = groups
        .iter()
        .map(|g| {
            vec![
                Cell::Text(g.key.clone()),
                int(g.images),
                int(g.selected),
                if n.rate.ends_with("(%)") {
                    Cell::Percent(g.selection_rate)
                } else {
                    Cell::Float(g.selection_rate, 2)
                },
                int(g.accuracy.total),
                pct(&g.accuracy),
                Cell::Float(g.median_time_ms, 0),
                int(g.centre.total),
                pct(&g.centre),
                Cell::Text(if g.flagged { "uninformative".into() } else { String::new() }),
            ]
        })
        .collect();
    table(
        caption,
        &[
            n.what,
            "images",
            n.selected,
            n.rate,
            "clicks scored",
            "click accuracy (%)",
            n.time,
            "clicks",
            "centre-bias score (%)",
            "flag",
        ],
        rows,
    )
}

fn box_position_rows(means: &(Mean2, Mean2)) -> Vec<Vec<Cell>> {
    let row = |name: &str, m: &Mean2| {
        let (u, v) = m.mean();
        vec![
            Cell::Text(name.into()),
            int(m.n),
            Cell::Float(u, 4),
            Cell::Float(v, 4),
            Cell::Float(u - 0.5, 4),
            Cell::Float(0.5 - v, 4),
        ]
    };
    vec![row("all scored", &means.0), row("inside the box", &means.1)]
}

const BOX_COLUMNS: [&str; 6] =
    ["points", "n", "mean u", "mean v", "rightward shift (u - 0.5)", "upward shift (0.5 - v)"];

fn marginal_table(h: &Hist2) -> Table {
    let (xs, ys) = h.marginals();
    let w = (h.x_range.1 - h.x_range.0) / h.cols as f64;
    let rows = (0..h.cols.max(h.rows))
        .map(|k| {
            vec![
                Cell::Float(h.x_range.0 + k as f64 * w, 2),
                Cell::Float(h.x_range.0 + (k + 1) as f64 * w, 2),
                xs.get(k).map(|&c| int(c)).unwrap_or(Cell::Empty),
                ys.get(k).map(|&c| int(c)).unwrap_or(Cell::Empty),
            ]
        })
        .collect();
    table(
        &format!("Histogram of box-normalised positions ({} outside [-0.5, 1.5]²)", h.outside),
        &["bin from", "bin to", "u (left → right)", "v (top → bottom)"],
        rows,
    )
}

/// The ImageNet-AB part of the report.
pub fn imagenet_parts(r: &ImagenetReport) -> Result<ReportParts> {
    let mut p = ReportParts::default();
    let c = &r.coverage;
    let share = |n: u64| Cell::Percent(if c.records == 0 { f64::NAN } else { n as f64 / c.records as f64 });

    let mut s = Section { heading: "ImageNet-AB: coverage and re-selection".into(), ..Default::default() };
    s.paragraphs.push(format!(
        "{} records, {} showings ({} selected). {} of the images were re-selected at least once and {} have some \
         byproduct (a click or a mouse trace).",
        c.records,
        c.showings,
        c.selected_showings,
        fmt_pct(c.reselected, c.records),
        fmt_pct(c.with_any, c.records)
    ));
    let rows = vec![
        vec![Cell::Text("records (images)".into()), int(c.records), share(c.records)],
        vec![Cell::Text("shown at least once".into()), int(c.shown), share(c.shown)],
        vec![Cell::Text("re-selected at least once".into()), int(c.reselected), share(c.reselected)],
        vec![Cell::Text("with a final click (LUAB target)".into()), int(c.with_click), share(c.with_click)],
        vec![Cell::Text("with a mouse trace".into()), int(c.with_trace), share(c.with_trace)],
        vec![Cell::Text("with any byproduct".into()), int(c.with_any), share(c.with_any)],
        vec![Cell::Text("with ground-truth boxes of the class".into()), int(c.with_boxes), share(c.with_boxes)],
        vec![Cell::Text("showings".into()), int(c.showings), Cell::Empty],
        vec![Cell::Text("selected showings".into()), int(c.selected_showings), Cell::Empty],
    ];
    p.table(&mut s, "imagenet_coverage", table("Coverage", &["images", "count", "share of records (%)"], rows));
    p.sections.push(s);

    let mut s = Section { heading: "ImageNet-AB: click localisation".into(), ..Default::default() };
    s.paragraphs.push(format!(
        "A click is correct when it falls inside a ground-truth box of the image's class. Final clicks: {}; the \
         centre click: {}; final clicks on the {} images where the centre click fails: {}.",
        fmt_rate(&r.click),
        fmt_rate(&r.centre),
        r.click_where_centre_fails.total,
        fmt_rate(&r.click_where_centre_fails)
    ));
    let mut rows = vec![
        vec![Cell::Text("final click".into()), int(r.click.total), int(r.click.hits), pct(&r.click)],
        vec![Cell::Text("centre click".into()), int(r.centre.total), int(r.centre.hits), pct(&r.centre)],
        vec![
            Cell::Text("final click where the centre click fails".into()),
            int(r.click_where_centre_fails.total),
            int(r.click_where_centre_fails.hits),
            pct(&r.click_where_centre_fails),
        ],
    ];
    for &(sigma, acc) in &r.sigma_curve {
        let name = if sigma.is_infinite() {
            "uniform random click (σ = ∞)".to_string()
        } else {
            format!("Gaussian click, σ = {sigma}")
        };
        rows.push(vec![Cell::Text(name), int(r.click.total), Cell::Empty, Cell::Percent(acc)]);
    }
    p.table(
        &mut s,
        "imagenet_click_accuracy",
        table("Click accuracy", &["clicks", "images", "inside", "accuracy (%)"], rows),
    );
    let finite: Vec<(f64, f64)> = r.sigma_curve.iter().copied().filter(|(s, _)| s.is_finite()).collect();
    if !finite.is_empty() {
        let mut hlines = vec![("final click".to_string(), r.click.value())];
        if let Some(&(_, u)) = r.sigma_curve.iter().find(|(s, _)| s.is_infinite()) {
            hlines.push(("uniform click (σ = ∞)".to_string(), u));
        }
        hlines.retain(|h| h.1.is_finite());
        let svg = lines_svg(&LineSpec {
            title: "Random clicks around the centre vs the final click".into(),
            x_label: "σ of the Gaussian around the centre (image-normalised)".into(),
            y_label: "accuracy".into(),
            series: vec![LineSeries { name: "Gaussian click".into(), points: finite }],
            hlines,
            y_range: Some((0.0, 1.0)),
        })
        .map_err(rep)?;
        p.figure(&mut s, "imagenet_sigma_curve", "Accuracy of a Gaussian-around-the-centre click by σ", svg);
    }
    p.sections.push(s);

    let mut s = Section { heading: "ImageNet-AB: mouse traces before the click".into(), ..Default::default() };
    s.paragraphs.push(
        "Trace samples up to the click (first sample time + estimateTime) of the final selected showing. N = 1 is \
         the last sample; quantile q picks the sample at position q of the trace, or the position at time q between \
         entering the image and the click."
            .into(),
    );
    let rows = r.last_n.iter().map(|(n, rate)| vec![int(*n as u64), int(rate.total), pct(rate)]).collect();
    p.table(
        &mut s,
        "imagenet_trace_last_n",
        table("N-th trace sample before the click", &["N", "traces", "accuracy (%)"], rows),
    );
    let rows = r
        .trace_quantile
        .iter()
        .zip(&r.time_quantile)
        .map(|((q, a), (_, b))| vec![Cell::Float(*q, 1), int(a.total), pct(a), pct(b)])
        .collect();
    p.table(
        &mut s,
        "imagenet_trace_quantiles",
        table("Trace and time quantiles", &["q", "traces", "by trace quantile (%)", "by time quantile (%)"], rows),
    );
    let pts = |v: Vec<(f64, f64)>| v.into_iter().filter(|p| p.1.is_finite()).collect::<Vec<_>>();
    let last: Vec<(f64, f64)> = pts(r.last_n.iter().map(|(n, rate)| (*n as f64, rate.value())).collect());
    if !last.is_empty() {
        let mut hl = vec![("final click".to_string(), r.click.value())];
        hl.retain(|h| h.1.is_finite());
        let svg = lines_svg(&LineSpec {
            title: "Accuracy of the N-th trace sample before the click".into(),
            x_label: "N (1 = last sample before the click)".into(),
            y_label: "accuracy".into(),
            series: vec![LineSeries { name: "trace sample".into(), points: last }],
            hlines: hl,
            y_range: Some((0.0, 1.0)),
        })
        .map_err(rep)?;
        p.figure(&mut s, "imagenet_trace_last_n", "Trace samples before the click", svg);
        let svg = lines_svg(&LineSpec {
            title: "Accuracy along the trace".into(),
            x_label: "quantile between entering the image (0) and the click (1)".into(),
            y_label: "accuracy".into(),
            series: vec![
                LineSeries {
                    name: "trace quantile".into(),
                    points: pts(r.trace_quantile.iter().map(|(q, a)| (*q, a.value())).collect()),
                },
                LineSeries {
                    name: "time quantile".into(),
                    points: pts(r.time_quantile.iter().map(|(q, a)| (*q, a.value())).collect()),
                },
            ],
            hlines: vec![],
            y_range: Some((0.0, 1.0)),
        })
        .map_err(rep)?;
        p.figure(&mut s, "imagenet_trace_quantiles", "Trace and time quantiles", svg);
    }
    p.sections.push(s);

    let mut s = Section { heading: "ImageNet-AB: where in the box people click".into(), ..Default::default() };
    let (u, v) = r.box_mean.1.mean();
    s.paragraphs.push(format!(
        "Final clicks in the coordinates of their box (the smallest box of the class containing the click, else the \
         nearest): u = 0 left edge, 1 right edge; v = 0 top, 1 bottom. Clicks inside the box average (u, v) = \
         ({u:.3}, {v:.3}); a systematic top-right bias shows as u > 0.5 and v < 0.5."
    ));
    p.box_position(&mut s, "imagenet", "click", "Final clicks", &r.box_hist, &r.box_mean)?;
    p.figure(
        &mut s,
        "imagenet_box_centres",
        "Centres of the ground-truth boxes",
        heat("Box centres", "x", "y", &r.centre_heat, None, Some((0.5, 0.5)))?,
    );
    p.figure(
        &mut s,
        "imagenet_click_heatmap",
        "Final clicks",
        heat("Final clicks", "x", "y", &r.click_heat, None, Some((0.5, 0.5)))?,
    );
    p.sections.push(s);

    let s = annotators(&mut p, "ImageNet-AB", r)?;
    p.sections.push(s);
    Ok(p)
}

fn annotators(p: &mut ReportParts, name: &str, r: &ImagenetReport) -> Result<Section> {
    let mut s = Section { heading: format!("{name}: annotators"), ..Default::default() };
    let flagged: Vec<&str> = r.workers.iter().filter(|w| w.flagged).map(|w| w.key.as_str()).collect();
    s.paragraphs.push(flag_text(&flagged, r.workers.len()));
    p.table(&mut s, "imagenet_workers", group_table("Per worker", &IMAGENET_GROUP, &r.workers));
    worker_scatter(p, &mut s, "imagenet_workers_scatter", &r.workers)?;
    p.table(&mut s, "imagenet_hits", group_table("Per HIT", &GroupNames { what: "HIT", ..IMAGENET_GROUP }, &r.hits));
    let page = GroupNames { what: "HIT/page", time: "time on the page (ms)", ..IMAGENET_GROUP };
    p.table(&mut s, "imagenet_pages", group_table("Per page", &page, &r.pages));
    Ok(s)
}

fn flag_text(flagged: &[&str], n: usize) -> String {
    if flagged.is_empty() {
        format!("No worker of {n} is flagged as uninformative.")
    } else {
        format!(
            "{} of {n} workers are flagged as uninformative (most clicks near the image centre): {}.",
            flagged.len(),
            flagged.join(", ")
        )
    }
}

fn worker_scatter(p: &mut ReportParts, s: &mut Section, stem: &str, workers: &[GroupStats]) -> Result<()> {
    let points: Vec<labelscope_report::Point> = workers
        .iter()
        .filter(|w| w.accuracy.total > 0 && w.centre.total > 0)
        .map(|w| labelscope_report::Point {
            label: if w.flagged { w.key.clone() } else { String::new() },
            x: w.centre.value(),
            y: w.accuracy.value(),
            x_ci: None,
            y_ci: None,
        })
        .collect();
    if points.is_empty() {
        return Ok(());
    }
    let svg = scatter_svg(&ScatterSpec {
        title: "Workers: centre bias vs click accuracy".into(),
        x_label: "centre-bias score (share of clicks near the centre)".into(),
        y_label: "click accuracy".into(),
        points,
        diagonal: false,
        fit: false,
    })
    .map_err(rep)?;
    p.figure(s, stem, "One point per worker; flagged workers are named", svg);
    Ok(())
}

/// The COCO-AB part of the report.
pub fn coco_parts(r: &CocoReport) -> Result<ReportParts> {
    let mut p = ReportParts::default();
    let mut s = Section { heading: "COCO-AB: coverage and icon precision".into(), ..Default::default() };
    s.paragraphs.push(format!(
        "{} records, {} with at least one action, {} matched to the instance annotations. Final icons (the last \
         `add` of each class) on a mask of their class: {}; inside a box of their class: {}.",
        r.records,
        r.with_actions,
        r.matched,
        fmt_rate(&r.precision),
        fmt_rate(&r.box_precision)
    ));
    let rows = vec![
        vec![Cell::Text("records".into()), int(r.records), Cell::Empty],
        vec![Cell::Text("with actions".into()), int(r.with_actions), Cell::Empty],
        vec![Cell::Text("matched to the ground truth".into()), int(r.matched), Cell::Empty],
        vec![Cell::Text("icon precision (masks)".into()), int(r.precision.total), pct(&r.precision)],
        vec![Cell::Text("icon precision (boxes)".into()), int(r.box_precision.total), pct(&r.box_precision)],
    ];
    p.table(&mut s, "coco_summary", table("Summary", &["", "count", "rate (%)"], rows));
    let rows = r
        .classes
        .iter()
        .map(|c| {
            vec![
                Cell::Text(c.class.clone()),
                int(c.objects),
                Cell::Float(c.mean_size, 4),
                int(c.recall.total),
                pct(&c.recall),
                int(c.precision.total),
                pct(&c.precision),
            ]
        })
        .collect();
    p.table(
        &mut s,
        "coco_classes",
        table(
            "Per class",
            &[
                "class",
                "objects",
                "mean object size (image fraction)",
                "images with the class",
                "recall (%)",
                "icons",
                "precision (%)",
            ],
            rows,
        ),
    );
    if let Some((a, b, r2)) = r.recall_fit {
        s.paragraphs.push(format!("Recall ≈ {a:.3} + {b:.3} · log10(mean object size), R² = {r2:.3}."));
    }
    let points: Vec<labelscope_report::Point> = r
        .classes
        .iter()
        .filter(|c| c.recall.total > 0 && c.mean_size > 0.0)
        .map(|c| labelscope_report::Point {
            label: c.class.clone(),
            x: c.mean_size.log10(),
            y: c.recall.value(),
            x_ci: None,
            y_ci: None,
        })
        .collect();
    if points.len() >= 2 {
        let svg = scatter_svg(&ScatterSpec {
            title: "Class-wise recall vs mean object size".into(),
            x_label: "log10 mean object size (fraction of the image)".into(),
            y_label: "recall".into(),
            points,
            diagonal: false,
            fit: true,
        })
        .map_err(rep)?;
        p.figure(
            &mut s,
            "coco_recall_vs_size",
            "Recall of icons per class against mean object size, with the least-squares line",
            svg,
        );
    }
    p.sections.push(s);

    let mut s = Section { heading: "COCO-AB: icons relative to the boxes".into(), ..Default::default() };
    let (u, v) = r.box_mean.1.mean();
    s.paragraphs
        .push(format!("Icons inside their box average (u, v) = ({u:.3}, {v:.3}) in box-normalised coordinates."));
    p.box_position(&mut s, "coco", "icon", "Icons", &r.box_hist, &r.box_mean)?;
    p.figure(
        &mut s,
        "coco_icon_heatmap",
        "Final icon positions",
        heat("Icons", "x", "y", &r.icon_heat, None, Some((0.5, 0.5)))?,
    );
    p.figure(
        &mut s,
        "coco_object_centres",
        "Centres of the object boxes",
        heat("Object centres", "x", "y", &r.centre_heat, None, Some((0.5, 0.5)))?,
    );
    p.sections.push(s);

    let mut s = Section { heading: "COCO-AB: action sequences".into(), ..Default::default() };
    let total: u64 = r.sequences.iter().map(|x| x.1).sum();
    let rows = r
        .sequences
        .iter()
        .map(|(k, n)| vec![Cell::Text(k.clone()), int(*n), Cell::Percent(*n as f64 / total.max(1) as f64)])
        .collect();
    p.table(
        &mut s,
        "coco_action_sequences",
        table("Per-icon action sequences", &["sequence", "icons", "share (%)"], rows),
    );
    let top: Vec<&(String, u64)> = r.sequences.iter().take(12).collect();
    if !top.is_empty() {
        let svg = bars_svg(&BarSpec {
            title: "Per-icon action sequences".into(),
            y_label: "icons".into(),
            categories: top.iter().map(|x| x.0.clone()).collect(),
            series: vec![BarSeries {
                name: "icons".into(),
                values: top.iter().map(|x| Some(x.1 as f64)).collect(),
                ci: vec![],
            }],
        })
        .map_err(rep)?;
        p.figure(&mut s, "coco_action_sequences", "The most frequent action sequences", svg);
    }
    p.sections.push(s);

    let mut s = Section { heading: "COCO-AB: annotators".into(), ..Default::default() };
    let flagged: Vec<&str> = r.workers.iter().filter(|w| w.flagged).map(|w| w.key.as_str()).collect();
    s.paragraphs.push(flag_text(&flagged, r.workers.len()));
    let names =
        GroupNames { what: "worker", selected: "icons", rate: "icons per image", time: "median time per image (ms)" };
    p.table(&mut s, "coco_workers", group_table("Per worker", &names, &r.workers));
    worker_scatter(&mut p, &mut s, "coco_workers_scatter", &r.workers)?;
    p.sections.push(s);
    Ok(p)
}

fn fmt_rate(r: &Rate) -> String {
    if r.total == 0 {
        "n/a (no data)".into()
    } else {
        format!("{:.2}% ({} of {})", 100.0 * r.value(), r.hits, r.total)
    }
}

fn fmt_pct(n: u64, d: u64) -> String {
    if d == 0 {
        "n/a".into()
    } else {
        format!("{:.2}%", 100.0 * n as f64 / d as f64)
    }
}

/// Writes `report.html` (all sections of all `parts`), one CSV per table and
/// one SVG (and, with `png`, one PNG) per figure into `dir`, each file
/// atomically. Returns the files written.
pub fn write_report(
    dir: &Path,
    title: &str,
    meta: &[(String, String)],
    parts: &[ReportParts],
    png: bool,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    let mut put = |name: String, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        labelscope_core::atomic::write_atomic(&path, bytes)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        written.push(path);
        Ok(())
    };
    let sections: Vec<Section> = parts.iter().flat_map(|p| p.sections.iter().cloned()).collect();
    for p in parts {
        for (stem, t) in &p.tables {
            put(format!("{stem}.csv"), t.to_csv().as_bytes())?;
        }
        for (stem, svg) in &p.figures {
            put(format!("{stem}.svg"), svg.as_bytes())?;
            if png {
                put(format!("{stem}.png"), &svg_to_png(svg, 2.0).map_err(rep)?)?;
            }
        }
    }
    put("report.html".into(), html_page(title, meta, &sections).as_bytes())?;
    Ok(written)
}
