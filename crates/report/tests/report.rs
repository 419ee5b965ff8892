//! End-to-end tests of the report formats and plots.

use labelscope_core::{ResultRow, ResultSet};
use labelscope_report::plot::{
    bars_svg, buckets_from_results, least_squares, scatter_from_results, scatter_svg, svg_to_png, BarSeries, BarSpec,
    Point, ScatterSpec, Selector,
};
use labelscope_report::{csv::csv, html::html_report, markdown::markdown, table::terminal, Error, Figure};
use resvg::usvg;

fn row(model: &str, dataset: &str, metric: &str, subset: &str, value: f64, ci: Option<(f64, f64)>) -> ResultRow {
    let mut r = ResultRow::new(model, dataset, metric, subset, value).with_ci(ci);
    r.total = Some(50_000);
    r
}

/// A realistic result set: original vs ReaL top-1 of a few models, with
/// per-bucket breakdowns on ReaL.
fn sample() -> ResultSet {
    let models = [
        ("resnet50", 0.7613, 0.8290),
        ("resnet152", 0.7831, 0.8452),
        ("vit-b16", 0.8104, 0.8702),
        ("efficientnet-b7", 0.8430, 0.8890),
        ("alexnet", 0.5652, 0.6270),
        ("<b>&x", 0.7000, 0.7710),
        ("convnext-large, \"22k\"", 0.8654, 0.8990),
    ];
    let mut rows = Vec::new();
    for (m, orig, real) in models {
        let ci = |v: f64| Some((v - 0.0037, v + 0.0036));
        rows.push(row(m, "real", "orig-top1", "all", orig, ci(orig)));
        rows.push(row(m, "real", "top1", "all", real, ci(real)));
        rows.push(row(m, "real", "map-classes", "all", real - 0.05, None));
        for (i, b) in ["labels=1", "labels=2", "labels=3", "labels>=4"].iter().enumerate() {
            let v = real - 0.06 * i as f64;
            rows.push(row(m, "real", "top1", b, v, Some((v - 0.01 - 0.01 * i as f64, v + 0.01 + 0.01 * i as f64))));
        }
        rows.push(row(m, "v2", "top1", "all", orig - 0.11, ci(orig - 0.11)));
    }
    rows.push(row("resnet50", "real", "imagenet-m-errors", "all", 31.0, None));
    ResultSet { rows, notes: vec!["assumed the sorted (ILSVRC2012_val_00000001 ...) row order".into()] }
}

fn parse(svg: &str) -> usvg::Tree {
    usvg::Tree::from_str(svg, &usvg::Options::default()).unwrap_or_else(|e| panic!("SVG does not parse: {e}\n{svg}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn least_squares_exact_line() {
    // Points on y = 2x + 1.
    let pts = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (5.0, 11.0)];
    let (a, b, r2) = least_squares(&pts).unwrap();
    assert!(close(a, 1.0) && close(b, 2.0) && close(r2, 1.0), "{a} {b} {r2}");
}

#[test]
fn least_squares_closed_form() {
    // (0,1), (1,3), (2,2), (3,5): mean x = 1.5, mean y = 2.75;
    // dx = -1.5, -0.5, 0.5, 1.5; dy = -1.75, 0.25, -0.75, 2.25;
    // Sxx = 5, Sxy = 2.625 - 0.125 - 0.375 + 3.375 = 5.5,
    // Syy = 3.0625 + 0.0625 + 0.5625 + 5.0625 = 8.75.
    // slope = 5.5 / 5 = 1.1; intercept = 2.75 - 1.1 * 1.5 = 1.1;
    // R² = 5.5² / (5 * 8.75) = 30.25 / 43.75 = 121 / 175.
    let (a, b, r2) = least_squares(&[(0.0, 1.0), (1.0, 3.0), (2.0, 2.0), (3.0, 5.0)]).unwrap();
    assert!(close(a, 1.1), "{a}");
    assert!(close(b, 1.1), "{b}");
    assert!(close(r2, 121.0 / 175.0), "{r2}");
    // A falling line: (0,4), (2,0) -> slope -2, intercept 4.
    let (a, b, r2) = least_squares(&[(0.0, 4.0), (2.0, 0.0)]).unwrap();
    assert!(close(a, 4.0) && close(b, -2.0) && close(r2, 1.0));
}

#[test]
fn least_squares_degenerate() {
    assert!(least_squares(&[]).is_none());
    assert!(least_squares(&[(1.0, 2.0)]).is_none());
    assert!(least_squares(&[(1.0, 2.0), (1.0, 3.0)]).is_none(), "equal x");
    assert!(least_squares(&[(1.0, f64::NAN), (2.0, 3.0)]).is_none());
    // Constant y: a horizontal, exact fit.
    let (a, b, r2) = least_squares(&[(1.0, 2.0), (3.0, 2.0)]).unwrap();
    assert!(close(a, 2.0) && close(b, 0.0) && close(r2, 1.0));
}

#[test]
fn selector_parsing() {
    let s = Selector::parse("top1").unwrap();
    assert_eq!(s, Selector { dataset: None, metric: "top1".into(), subset: "all".into() });
    let s: Selector = "real:top1".parse().unwrap();
    assert_eq!(s, Selector { dataset: Some("real".into()), metric: "top1".into(), subset: "all".into() });
    let s = Selector::parse("real:top1@labels=2").unwrap();
    assert_eq!(s, Selector { dataset: Some("real".into()), metric: "top1".into(), subset: "labels=2".into() });
    let s = Selector::parse("map-classes@labels>=4").unwrap();
    assert_eq!(s, Selector { dataset: None, metric: "map-classes".into(), subset: "labels>=4".into() });
    let s = Selector::parse(" real : top5 @ group=dog ").unwrap();
    assert_eq!(s, Selector { dataset: Some("real".into()), metric: "top5".into(), subset: "group=dog".into() });
    assert_eq!(Selector::parse("real:top1@labels=2").unwrap().to_string(), "real:top1@labels=2");
    assert_eq!(Selector::parse("top1@all").unwrap().to_string(), "top1");
    for bad in ["", ":top1", "real:", "top1@", "real:@x", "  "] {
        assert!(matches!(Selector::parse(bad), Err(Error::Selector { .. })), "{bad:?} should not parse");
    }
}

#[test]
fn scatter_from_results_in_percent() {
    let rs = sample();
    let x = Selector::parse("orig-top1").unwrap();
    let y = Selector::parse("real:top1").unwrap();
    let spec = scatter_from_results(&rs, &x, &y, true, true).unwrap();
    assert_eq!(spec.points.len(), 7);
    let p = &spec.points[0];
    assert_eq!(p.label, "resnet50");
    assert!((p.x - 76.13).abs() < 1e-9 && (p.y - 82.90).abs() < 1e-9, "{p:?}");
    let (lo, hi) = p.y_ci.unwrap();
    assert!((lo - 82.53).abs() < 1e-9 && (hi - 83.26).abs() < 1e-9);
    assert_eq!(spec.x_label, "real orig-top1 (%)");
    assert_eq!(spec.y_label, "real top1 (%)");
    // `top1` alone is ambiguous (real and v2 have it).
    let amb = scatter_from_results(&rs, &Selector::parse("top1").unwrap(), &y, false, false);
    assert!(matches!(amb, Err(Error::Selector { .. })), "{amb:?}");
    let none = scatter_from_results(&rs, &Selector::parse("real:nope").unwrap(), &y, false, false);
    assert!(matches!(none, Err(Error::Empty(_))), "{none:?}");
    // Subset selectors and cross-dataset pairs.
    let sub = Selector::parse("real:top1@labels=2").unwrap();
    let v2 = Selector::parse("v2:top1").unwrap();
    let spec = scatter_from_results(&rs, &v2, &sub, false, true).unwrap();
    assert_eq!(spec.points.len(), 7);
    assert_eq!(spec.y_label, "real top1, labels=2 (%)");
}

#[test]
fn buckets_from_results_categories_and_series() {
    let rs = sample();
    let spec = buckets_from_results(&rs, None, "top1", "labels").unwrap();
    assert_eq!(spec.categories, ["labels=1", "labels=2", "labels=3", "labels>=4"]);
    assert_eq!(spec.series.len(), 7);
    assert_eq!(spec.series[0].name, "resnet50");
    assert!((spec.series[0].values[1].unwrap() - 76.90).abs() < 1e-9);
    assert!(spec.series[0].ci[1].is_some());
    assert_eq!(spec.y_label, "top1 (%)");
    assert!(matches!(buckets_from_results(&rs, None, "top1", "group"), Err(Error::Empty(_))));
    assert!(matches!(buckets_from_results(&rs, Some("v2"), "top1", "labels"), Err(Error::Selector { .. })));
}

fn scatter_example() -> ScatterSpec {
    scatter_from_results(
        &sample(),
        &Selector::parse("orig-top1").unwrap(),
        &Selector::parse("real:top1").unwrap(),
        true,
        true,
    )
    .unwrap()
}

#[test]
fn svgs_parse_and_escape() {
    let spec = scatter_example();
    let svg = scatter_svg(&spec).unwrap();
    let tree = parse(&svg);
    assert!(tree.size().width() > 100.0);
    assert!(svg.contains("&lt;b&gt;&amp;x"), "model name escaped");
    assert!(!svg.contains("<b>"));
    assert!(svg.contains("stroke-dasharray"), "y = x line");
    assert!(svg.contains("R²"), "fit legend");
    assert!(svg.contains(r#"font-family="DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif""#));
    assert!(!svg.contains(" id="), "no ids, so that figures can share a page");

    let bars = buckets_from_results(&sample(), Some("real"), "top1", "labels").unwrap();
    let svg = bars_svg(&bars).unwrap();
    parse(&svg);
    assert!(svg.contains("labels&gt;=4"));

    // Without CIs, without lines, a single point.
    let one = ScatterSpec {
        title: "one".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        points: vec![Point { label: "solo".into(), x: 3.0, y: 3.0, x_ci: None, y_ci: None }],
        diagonal: false,
        fit: true,
    };
    parse(&scatter_svg(&one).unwrap());
    // Negative values and a missing bar.
    let neg = BarSpec {
        title: "delta".into(),
        y_label: "points".into(),
        categories: vec!["a".into(), "b".into()],
        series: vec![BarSeries { name: "m".into(), values: vec![Some(-2.5), None], ci: vec![] }],
    };
    parse(&bars_svg(&neg).unwrap());
}

#[test]
fn plot_errors() {
    let mut spec = scatter_example();
    spec.points.clear();
    assert!(matches!(scatter_svg(&spec), Err(Error::Empty(_))));
    let mut spec = scatter_example();
    spec.points[2].y = f64::NAN;
    assert!(matches!(scatter_svg(&spec), Err(Error::NonFinite(_))));
    let mut spec = scatter_example();
    spec.points[0].x_ci = Some((f64::NEG_INFINITY, 1.0));
    assert!(matches!(scatter_svg(&spec), Err(Error::NonFinite(_))));

    let ok = BarSeries { name: "m".into(), values: vec![Some(1.0)], ci: vec![Some((0.5, 1.5))] };
    let spec = |categories: Vec<String>, series: Vec<BarSeries>| BarSpec {
        title: "t".into(),
        y_label: "y".into(),
        categories,
        series,
    };
    assert!(matches!(bars_svg(&spec(vec![], vec![ok.clone()])), Err(Error::Empty(_))));
    assert!(matches!(bars_svg(&spec(vec!["a".into()], vec![])), Err(Error::Empty(_))));
    let none = BarSeries { name: "m".into(), values: vec![None], ci: vec![] };
    assert!(matches!(bars_svg(&spec(vec!["a".into()], vec![none])), Err(Error::Empty(_))));
    let short = BarSeries { name: "m".into(), values: vec![], ci: vec![] };
    assert!(matches!(bars_svg(&spec(vec!["a".into()], vec![short])), Err(Error::Invalid(_))));
    let nan = BarSeries { name: "m".into(), values: vec![Some(f64::NAN)], ci: vec![] };
    assert!(matches!(bars_svg(&spec(vec!["a".into()], vec![nan])), Err(Error::NonFinite(_))));
    assert!(bars_svg(&spec(vec!["a".into()], vec![ok])).is_ok());

    assert!(matches!(svg_to_png("<svg", 1.0), Err(Error::Svg(_))));
    let svg = scatter_svg(&scatter_example()).unwrap();
    assert!(matches!(svg_to_png(&svg, 0.0), Err(Error::Invalid(_))));
    assert!(matches!(svg_to_png(&svg, f32::NAN), Err(Error::Invalid(_))));
    assert!(matches!(svg_to_png(&svg, 1000.0), Err(Error::Invalid(_))));
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn png_rendering() {
    let scatter = scatter_svg(&scatter_example()).unwrap();
    let bars = bars_svg(&buckets_from_results(&sample(), None, "top1", "labels").unwrap()).unwrap();
    let out_dir = std::env::var_os("LABELSCOPE_PLOT_DIR");
    for (name, svg) in [("scatter", &scatter), ("bars", &bars)] {
        let size = parse(svg).size();
        for scale in [1.0f32, 2.0] {
            let png = svg_to_png(svg, scale).unwrap();
            let (w, h) = png_size(&png);
            assert_eq!(w, (size.width() * scale).ceil() as u32, "{name} width");
            assert_eq!(h, (size.height() * scale).ceil() as u32, "{name} height");
            if let (Some(dir), true) = (&out_dir, scale == 2.0) {
                let dir = std::path::Path::new(dir);
                std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
                std::fs::write(dir.join(format!("{name}.svg")), svg).unwrap();
            }
        }
    }
}

#[test]
fn csv_round_trips_through_the_csv_crate() {
    let rs = sample();
    let text = csv(&rs);
    let mut reader = ::csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["model", "dataset", "metric", "subset", "correct", "total", "value", "ci_low", "ci_high"]);
    let records: Vec<::csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), rs.rows.len());
    for (rec, row) in records.iter().zip(&rs.rows) {
        assert_eq!(&rec[0], row.model);
        assert_eq!(&rec[1], row.dataset);
        assert_eq!(&rec[2], row.metric);
        assert_eq!(&rec[3], row.subset);
        assert_eq!(rec[4].is_empty(), row.correct.is_none());
        assert_eq!(rec[5].parse::<u64>().ok(), row.total);
        assert_eq!(rec[6].parse::<f64>().unwrap(), row.value, "full precision");
        assert_eq!(rec[7].parse::<f64>().ok(), row.ci_low);
        assert_eq!(rec[8].parse::<f64>().ok(), row.ci_high);
    }
    assert!(text.contains("\"convnext-large, \"\"22k\"\"\""), "quoted and doubled");
    // A multi-line name survives too.
    let mut rs = ResultSet::default();
    rs.rows.push(row("two\nlines", "d", "m", "all", 0.1 + 0.2, None));
    let text = csv(&rs);
    let rec = ::csv::Reader::from_reader(text.as_bytes()).records().next().unwrap().unwrap();
    assert_eq!(&rec[0], "two\nlines");
    assert_eq!(rec[6].parse::<f64>().unwrap(), 0.1 + 0.2);
    assert_eq!(&rec[7], "");
}

#[test]
fn html_is_self_contained_and_escaped() {
    let rs = sample();
    let scatter = scatter_svg(&scatter_example()).unwrap();
    let figs = [Figure { title: "ReaL vs original <top-1>".into(), svg: scatter }];
    let meta = vec![
        ("command".to_string(), "labelscope eval --labels real.json a.npy".to_string()),
        ("version".to_string(), "0.1.0".to_string()),
        ("date".to_string(), "2024-01-01".to_string()),
    ];
    let html = html_report("Report <&>", &rs, &figs, &meta);
    for bad in ["http://", "https://", "src=", "href=", "<link", "@import", "url("] {
        assert!(!html.contains(bad), "HTML contains {bad:?}");
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>Report &lt;&amp;&gt;</title>"));
    assert!(html.contains("&lt;b&gt;&amp;x"));
    assert!(!html.contains("<b>&x"), "raw model name must not appear");
    for m in rs.models() {
        let escaped = m.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
        assert!(html.contains(&escaped), "model {m:?} missing");
    }
    assert!(html.contains("ReaL vs original &lt;top-1&gt;"));
    assert!(html.contains("<svg "), "figure inlined");
    assert!(html.contains("<details>"));
    assert!(html.contains("labelscope eval --labels real.json a.npy"));
    assert!(html.contains("assumed the sorted"));
    assert!(html.contains("<script>") && html.contains("aria-sort"));
    assert_eq!(html.matches("<table class=\"pivot sortable\">").count(), 2, "one pivot per dataset");
    // Balanced basic structure.
    for tag in ["table", "section", "figure", "details", "tr", "td", "th"] {
        let open = html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count();
        let close = html.matches(&format!("</{tag}>")).count();
        assert_eq!(open, close, "<{tag}> unbalanced");
    }
    if let Some(dir) = std::env::var_os("LABELSCOPE_PLOT_DIR") {
        std::fs::write(std::path::Path::new(&dir).join("report.html"), &html).unwrap();
    }
}

#[test]
fn text_formats_on_the_sample() {
    let rs = sample();
    let t = terminal(&rs);
    let table: Vec<&str> = t.lines().take_while(|l| !l.starts_with('(')).collect();
    let w = table[0].chars().count();
    assert!(table.iter().all(|l| l.chars().count() == w), "{t}");
    assert!(t.contains("82.90 +-0.37"), "{t}");
    assert!(t.contains("note: assumed the sorted"));
    let md = markdown(&rs);
    assert!(md.contains("## real") && md.contains("## v2"));
    assert!(md.contains("&lt;b>&x"), "{md}");
    if let Some(dir) = std::env::var_os("LABELSCOPE_PLOT_DIR") {
        std::fs::write(std::path::Path::new(&dir).join("table.txt"), &t).unwrap();
        std::fs::write(std::path::Path::new(&dir).join("table.md"), &md).unwrap();
    }
}
