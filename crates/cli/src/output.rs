//! Writing results: standard output in the chosen format, and files
//! (JSON, CSV, Markdown, HTML, plots), each written atomically.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use labelscope_core::atomic::write_atomic;
use labelscope_core::ResultSet;
use labelscope_report::html::{html_report, Figure};
use labelscope_report::plot::{self, Selector};

use crate::args::{EvalArgs, FormatArg, PlotArgs, ReportArgs};

fn write(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn json_text(results: &ResultSet) -> Result<String> {
    let mut s = serde_json::to_string_pretty(results)?;
    s.push('\n');
    Ok(s)
}

/// The standard figures for a result set: ImageNet vs ReaL-style scatter
/// (original top-1 against label-set top-1) when there are several models,
/// and per-bucket bars of top-1.
pub fn default_figures(results: &ResultSet) -> Vec<(String, Figure)> {
    let mut figs = Vec::new();
    let metrics = results.metrics();
    for dataset in results.datasets() {
        let ds = Some(dataset.to_string());
        if results.models().len() >= 2 && metrics.contains(&"orig-top1") && metrics.contains(&"top1") {
            let x = Selector { dataset: ds.clone(), metric: "orig-top1".into(), subset: "all".into() };
            let y = Selector { dataset: ds.clone(), metric: "top1".into(), subset: "all".into() };
            if let Ok(mut spec) = plot::scatter_from_results(results, &x, &y, true, true) {
                spec.title = format!("{dataset}: original-label top-1 vs label-set top-1");
                spec.x_label = "top-1 against the original label (%)".into();
                spec.y_label = format!("top-1 against {dataset} (%)");
                if let Ok(svg) = plot::scatter_svg(&spec) {
                    figs.push((
                        format!("{dataset}-scatter-orig-top1-vs-top1"),
                        Figure { title: spec.title.clone(), svg },
                    ));
                }
            }
        }
        for (family, what) in [("labels", "number of labels"), ("group", "class group of the original label")] {
            if let Ok(mut spec) = plot::buckets_from_results(results, Some(dataset), "top1", family) {
                spec.title = format!("{dataset}: top-1 by {what}");
                if let Ok(svg) = plot::bars_svg(&spec) {
                    figs.push((format!("{dataset}-top1-by-{family}"), Figure { title: spec.title.clone(), svg }));
                }
            }
        }
    }
    figs
}

fn write_figures(dir: &Path, figs: &[(String, Figure)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, fig) in figs {
        let safe: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        write(&dir.join(format!("{safe}.svg")), &fig.svg)?;
        let png = plot::svg_to_png(&fig.svg, 2.0)?;
        write_atomic(&dir.join(format!("{safe}.png")), &png)?;
    }
    Ok(())
}

/// Prints and writes the results of `eval`.
pub fn emit_eval(a: &EvalArgs, results: &ResultSet, meta: &[(String, String)]) -> Result<()> {
    let format = if a.out.json { FormatArg::Json } else { a.out.format };
    // Files first, so that a failure to write leaves standard output untouched.
    if let Some(p) = &a.out.output {
        write(p, &json_text(results)?)?;
    }
    if let Some(p) = &a.out.csv {
        write(p, &labelscope_report::csv::csv(results))?;
    }
    if let Some(p) = &a.out.markdown {
        write(p, &labelscope_report::markdown::markdown(results))?;
    }
    let figs = if a.out.plots.is_some() || a.out.html.is_some() { default_figures(results) } else { vec![] };
    if let Some(dir) = &a.out.plots {
        write_figures(dir, &figs)?;
    }
    if let Some(p) = &a.out.html {
        let mut m = vec![("command".to_string(), std::env::args().collect::<Vec<_>>().join(" "))];
        m.push(("labelscope version".into(), env!("CARGO_PKG_VERSION").into()));
        m.extend(meta.iter().cloned());
        let figures: Vec<Figure> = figs.into_iter().map(|(_, f)| f).collect();
        write(p, &html_report("labelscope evaluation", results, &figures, &m))?;
    }
    match format {
        FormatArg::Json => print!("{}", json_text(results)?),
        FormatArg::Csv => print!("{}", labelscope_report::csv::csv(results)),
        FormatArg::Markdown => print!("{}", labelscope_report::markdown::markdown(results)),
        FormatArg::Table => print!("{}", labelscope_report::table::terminal(results)),
    }
    Ok(())
}

/// Reads and merges results files.
pub fn load_results(paths: &[PathBuf]) -> Result<ResultSet> {
    let mut all = ResultSet::default();
    for p in paths {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let r: ResultSet = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: line {}, column {}: not a labelscope results file: {e}",
                p.display(),
                e.line(),
                e.column()
            )
        })?;
        all.rows.extend(r.rows);
        all.notes.extend(r.notes);
    }
    if all.rows.is_empty() {
        bail!("no result rows in {}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    Ok(all)
}

/// `labelscope plot`.
pub fn plot(a: PlotArgs) -> Result<()> {
    let results = load_results(&a.results)?;
    let svg = if let Some(metric) = &a.bars {
        let sel = Selector::parse(metric)?;
        let mut spec = plot::buckets_from_results(&results, sel.dataset.as_deref(), &sel.metric, &a.buckets)?;
        if let Some(t) = &a.title {
            spec.title = t.clone();
        }
        plot::bars_svg(&spec)?
    } else {
        let (Some(x), Some(y)) = (&a.x, &a.y) else {
            bail!("give --x and --y for a scatter plot, or --bars METRIC for a bar chart");
        };
        let mut spec =
            plot::scatter_from_results(&results, &Selector::parse(x)?, &Selector::parse(y)?, a.diagonal, a.fit)?;
        if let Some(t) = &a.title {
            spec.title = t.clone();
        }
        plot::scatter_svg(&spec)?
    };
    let ext = a.output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => write(&a.output, &svg)?,
        Some("png") => write_atomic(&a.output, &plot::svg_to_png(&svg, 2.0)?)?,
        _ => bail!("{}: the output must end in .svg or .png", a.output.display()),
    }
    eprintln!("wrote {}", a.output.display());
    Ok(())
}

/// `labelscope report`.
pub fn report(a: ReportArgs) -> Result<()> {
    let results = load_results(&a.results)?;
    let figs: Vec<Figure> = default_figures(&results).into_iter().map(|(_, f)| f).collect();
    let mut meta = vec![("labelscope version".to_string(), env!("CARGO_PKG_VERSION").to_string())];
    for p in &a.results {
        meta.push(("results file".into(), p.display().to_string()));
    }
    write(&a.output, &html_report(&a.title, &results, &figs, &meta))?;
    eprintln!("wrote {}", a.output.display());
    Ok(())
}
