//! `labelscope humans`: models and human labelers as participants of the
//! same study (Shankar et al. 2020). See docs/humans.md.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use labelscope_core::atomic::write_atomic;
use labelscope_core::humans::{
    self, evaluate_split, Participant, ParticipantKind, ParticipantSummary, Split, SplitSummary, StudyOptions,
};
use labelscope_core::labels;
use labelscope_core::order::ImageOrder;
use labelscope_core::predictions::{self, PredictionOptions, Predictions};
use labelscope_core::{ClassTable, Group, ResultRow, ResultSet};
use labelscope_report::html::{html_page, Cell, Figure, Section, Table};
use labelscope_report::plot::{
    histogram_svg, rate_scatter_svg, svg_to_png, AxisScale, HistogramSpec, RatePoint, RateScatterSpec,
};
use serde::Serialize;

use crate::args::{ClassArgs, FormatArg, OutputArgs};

/// `labelscope humans`.
#[derive(Debug, Args)]
pub struct HumansArgs {
    /// One split, as comma-separated KEY=VALUE pairs: `name=NAME` (required), `labels=FILE`
    /// (required; any label format of `eval`), `images=FILE|ilsvrc2012-val` (required: the image
    /// list that gives the row order of the model files and the original labels), `models=FILE|DIR|GLOB`
    /// and `humans=FILE|DIR|GLOB` (each repeatable), `problematic=FILE`. Repeat --split for each split.
    #[arg(long, value_name = "SPEC", required = true)]
    pub split: Vec<String>,
    #[command(flatten)]
    pub class_args: ClassArgs,
    /// Significance level of the Clopper-Pearson intervals (0.05: 95%).
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// An image is "fast" when the median labelling time of the humans is below this (seconds).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub fast_threshold: f64,
    /// Class groups to break down by, comma separated (by the group of the original label).
    #[arg(long, value_delimiter = ',', default_value = "dog,organism-without-dog,object")]
    pub groups: Vec<String>,
    /// Axis scale of the scatter plot.
    #[arg(long, default_value = "probit", value_parser = ["linear", "probit", "logit"])]
    pub scale: String,
    /// Metric of the scatter plot: `multi-label` or `top1`.
    #[arg(long, default_value = "multi-label", value_parser = ["multi-label", "top1"])]
    pub scatter_metric: String,
    /// Splits on the scatter plot's x and y axes (default: the first two --split).
    #[arg(long, value_name = "SPLIT")]
    pub scatter_x: Option<String>,
    /// See --scatter-x.
    #[arg(long, value_name = "SPLIT")]
    pub scatter_y: Option<String>,
    /// Bin width of the median-time histogram, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub bin_width: f64,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// One parsed `--split`.
#[derive(Debug, Default, PartialEq)]
struct SplitSpec {
    name: String,
    labels: PathBuf,
    images: String,
    models: Vec<String>,
    humans: Vec<String>,
    problematic: Option<PathBuf>,
}

fn parse_split(spec: &str) -> Result<SplitSpec> {
    let mut s = SplitSpec::default();
    let (mut labels, mut images) = (None, None);
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            bail!("--split {spec:?}: {part:?} is not KEY=VALUE");
        };
        let v = v.trim().to_string();
        match k.trim() {
            "name" => s.name = v,
            "labels" => labels = Some(PathBuf::from(v)),
            "images" => images = Some(v),
            "models" => s.models.push(v),
            "humans" => s.humans.push(v),
            "problematic" => s.problematic = Some(PathBuf::from(v)),
            other => bail!(
                "--split {spec:?}: unknown key {other:?} (expected name, labels, images, models, humans, problematic)"
            ),
        }
    }
    if s.name.is_empty() {
        bail!("--split {spec:?}: name=NAME is required");
    }
    s.labels = labels.with_context(|| format!("--split {spec:?}: labels=FILE is required"))?;
    s.images = images.with_context(|| format!("--split {spec:?}: images=FILE is required"))?;
    if s.models.is_empty() && s.humans.is_empty() {
        bail!("--split {spec:?}: give at least one models=... or humans=...");
    }
    Ok(s)
}

/// Answer files named by a spec: a file, a glob, or a directory (its `.csv`, `.tsv`, `.json` files).
fn answer_files(spec: &str) -> Result<Vec<PathBuf>> {
    let p = Path::new(spec);
    if p.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("reading {}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                f.is_file()
                    && !f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
                    && f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| ["csv", "tsv", "json"].contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        v.sort();
        if v.is_empty() {
            bail!("{spec}: the directory holds no answer files (*.csv, *.tsv, *.json)");
        }
        return Ok(v);
    }
    Ok(predictions::discover(spec)?)
}

/// The JSON document of `labelscope humans`.
#[derive(Debug, Serialize)]
pub struct HumansOutput {
    /// Per-split facts.
    pub splits: Vec<SplitSummary>,
    /// Every participant on every split.
    pub participants: Vec<ParticipantSummary>,
    /// The result rows (model = participant, dataset = split).
    pub rows: Vec<ResultRow>,
    /// Notes.
    pub notes: Vec<String>,
}

fn load_split(spec: &SplitSpec, classes: &ClassTable) -> Result<(Split, Vec<Participant>)> {
    let order = match ImageOrder::builtin(&spec.images) {
        Some(o) => o,
        None => ImageOrder::load(Path::new(&spec.images), classes)?,
    };
    let sets = labels::load_labels(&spec.labels, None, classes)?.to_sets()?;
    let problematic = match &spec.problematic {
        Some(p) => Some(humans::load_problematic(p)?),
        None => None,
    };
    let split = Split::new(&spec.name, &order, &sets, problematic.as_ref());
    let mut participants = Vec::new();
    for m in &spec.models {
        for f in predictions::discover(m)? {
            let preds = Predictions::load(&f, &PredictionOptions::default())?;
            participants.push(Participant::from_predictions(&preds, &order, classes.len())?);
        }
    }
    for h in &spec.humans {
        for f in answer_files(h)? {
            participants.push(humans::load_answers(&f, classes)?);
        }
    }
    Ok((split, participants))
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn pct(r: &ResultRow) -> String {
    match (r.ci_low, r.ci_high) {
        (Some(lo), Some(hi)) => format!("{:.2} [{:.2}, {:.2}]", 100.0 * r.value, 100.0 * lo, 100.0 * hi),
        _ => format!("{:.2}", 100.0 * r.value),
    }
}

fn summary_lines(out: &HumansOutput) -> Vec<String> {
    out.splits
        .iter()
        .map(|s| {
            let mut line = format!(
                "{}: {} images, {} labelled ({} multi-label); scope {} images, {} multi-label ({:.2}%)",
                s.name,
                s.images,
                s.labelled_images,
                s.labelled_multi_label,
                s.scope_images,
                s.scope_multi_label,
                100.0 * s.multi_label_share,
            );
            // The fast subset exists only where humans gave times.
            if !s.median_times_s.is_empty() {
                line.push_str(&format!("; {} fast (median time < {} s)", s.fast_images, s.fast_threshold_s));
            }
            if let Some(p) = s.problematic_images {
                line.push_str(&format!("; {p} problematic"));
            }
            line
        })
        .collect()
}

fn figures(out: &HumansOutput, a: &HumansArgs, split_names: &[String]) -> Result<Vec<(String, Figure)>> {
    let mut figs = Vec::new();
    let scale = AxisScale::parse(&a.scale).context("--scale")?;
    let x = a.scatter_x.clone().or_else(|| split_names.first().cloned());
    let y = a.scatter_y.clone().or_else(|| split_names.get(1).cloned());
    if let (Some(x), Some(y)) = (x, y) {
        for n in [&x, &y] {
            if !split_names.contains(n) {
                bail!("--scatter-x/--scatter-y {n:?}: no such split (have {})", split_names.join(", "));
            }
        }
        let find = |who: &str, split: &str| {
            out.rows
                .iter()
                .find(|r| r.model == who && r.dataset == split && r.metric == a.scatter_metric && r.subset == "all")
        };
        let mut points = Vec::new();
        let mut seen = Vec::new();
        for p in &out.participants {
            if seen.contains(&p.name) {
                continue;
            }
            seen.push(p.name.clone());
            if let (Some(rx), Some(ry)) = (find(&p.name, &x), find(&p.name, &y)) {
                points.push(RatePoint {
                    label: p.name.clone(),
                    series: usize::from(p.kind == ParticipantKind::Human),
                    x: rx.value,
                    y: ry.value,
                    x_ci: rx.ci_low.zip(rx.ci_high),
                    y_ci: ry.ci_low.zip(ry.ci_high),
                });
            }
        }
        if !points.is_empty() {
            let spec = RateScatterSpec {
                title: format!("{} accuracy: {x} vs {y}", a.scatter_metric),
                x_label: format!("{} on {x}", a.scatter_metric),
                y_label: format!("{} on {y}", a.scatter_metric),
                scale,
                series: vec!["models".into(), "humans".into()],
                points,
                fit_series: Some(0),
                diagonal: true,
            };
            let svg = rate_scatter_svg(&spec)?;
            figs.push((format!("scatter-{x}-vs-{y}-{}", scale.name()), Figure { title: spec.title, svg }));
        }
    }
    for s in &out.splits {
        if s.median_times_s.is_empty() {
            continue;
        }
        let spec = HistogramSpec {
            title: format!("{}: median human labelling time per image", s.name),
            x_label: "median time (s)".into(),
            y_label: "images".into(),
            values: s.median_times_s.clone(),
            bin_width: a.bin_width,
            marker: Some((format!("{} s", s.fast_threshold_s), s.fast_threshold_s)),
        };
        let svg = histogram_svg(&spec)?;
        figs.push((format!("median-time-{}", s.name), Figure { title: spec.title, svg }));
    }
    Ok(figs)
}

fn html(out: &HumansOutput, figs: Vec<Figure>) -> String {
    let mut sections =
        vec![Section { heading: "Splits".into(), paragraphs: summary_lines(out), tables: vec![], figures: vec![] }];
    for s in &out.splits {
        let subsets: Vec<&str> = {
            let mut v: Vec<&str> = Vec::new();
            for r in out.rows.iter().filter(|r| r.dataset == s.name) {
                if !v.contains(&r.subset.as_str()) {
                    v.push(&r.subset);
                }
            }
            v
        };
        let mut tables = Vec::new();
        for metric in ["multi-label", "top1", "multi-label-imputed", "top1-imputed"] {
            let rows: Vec<&ResultRow> = out.rows.iter().filter(|r| r.dataset == s.name && r.metric == metric).collect();
            if rows.is_empty() {
                continue;
            }
            let mut columns = vec!["participant".to_string(), "kind".to_string()];
            columns.extend(subsets.iter().map(|x| format!("{x} (%)")));
            let mut table_rows = Vec::new();
            for p in out.participants.iter().filter(|p| p.split == s.name) {
                let mut row = vec![Cell::Text(p.name.clone()), Cell::Text(p.kind.name().into())];
                let mut any = false;
                for sub in &subsets {
                    match rows.iter().find(|r| r.model == p.name && r.subset == *sub) {
                        Some(r) => {
                            any = true;
                            row.push(Cell::Text(pct(r)));
                        }
                        None => row.push(Cell::Empty),
                    }
                }
                if any {
                    table_rows.push(row);
                }
            }
            tables.push(Table {
                caption: format!("{}: {metric} accuracy, % [95% Clopper–Pearson interval]", s.name),
                columns,
                rows: table_rows,
            });
        }
        sections.push(Section { heading: format!("Split {}", s.name), paragraphs: vec![], tables, figures: vec![] });
    }
    sections.push(Section { heading: "Plots".into(), paragraphs: vec![], tables: vec![], figures: figs });
    if !out.notes.is_empty() {
        sections.push(Section {
            heading: "Notes".into(),
            paragraphs: out.notes.clone(),
            tables: vec![],
            figures: vec![],
        });
    }
    let meta = vec![
        ("command".to_string(), std::env::args().collect::<Vec<_>>().join(" ")),
        ("labelscope version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
    ];
    html_page("labelscope: humans and models", &meta, &sections)
}

/// Runs `labelscope humans`.
pub fn run(a: HumansArgs) -> Result<()> {
    let classes = match &a.class_args.classes {
        Some(p) => ClassTable::from_path(p)?,
        None => ClassTable::imagenet().clone(),
    };
    if !(a.fast_threshold.is_finite() && a.fast_threshold > 0.0) {
        bail!("--fast-threshold {}: expected a positive number of seconds", a.fast_threshold);
    }
    let groups = a
        .groups
        .iter()
        .filter(|g| !g.is_empty())
        .map(|g| {
            Group::parse(g).with_context(|| {
                let all: Vec<&str> = Group::ALL.iter().map(|g| g.name()).collect();
                format!("--groups {g:?}: unknown group (expected one of {})", all.join(", "))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let opts = StudyOptions { alpha: a.alpha, fast_threshold_s: a.fast_threshold, groups };
    let specs = a.split.iter().map(|s| parse_split(s)).collect::<Result<Vec<_>>>()?;
    let mut names: Vec<String> = Vec::new();
    for s in &specs {
        if names.contains(&s.name) {
            bail!("two --split are named {:?}", s.name);
        }
        names.push(s.name.clone());
    }
    let mut out = HumansOutput { splits: vec![], participants: vec![], rows: vec![], notes: vec![] };
    for spec in &specs {
        let (split, participants) = load_split(spec, &classes)?;
        let r = evaluate_split(&split, &participants, &classes, &opts)?;
        out.rows.extend(r.rows);
        out.participants.extend(r.participants);
        out.splits.extend(r.summary);
        out.notes.extend(r.notes);
    }
    // A name used by a model on one split and a human on another would mix two participants.
    for p in &out.participants {
        if out.participants.iter().any(|q| q.name == p.name && q.kind != p.kind) {
            bail!("{:?} is a model on one split and a human on another: rename one of the files", p.name);
        }
    }
    let mut json = serde_json::to_string_pretty(&out)?;
    json.push('\n');
    let results = ResultSet { rows: out.rows.clone(), notes: out.notes.clone() };
    if let Some(p) = &a.out.output {
        write_text(p, &json)?;
    }
    if let Some(p) = &a.out.csv {
        write_text(p, &labelscope_report::csv::csv(&results))?;
    }
    if let Some(p) = &a.out.markdown {
        let mut md = String::new();
        for l in summary_lines(&out) {
            md.push_str(&format!("- {l}\n"));
        }
        md.push('\n');
        md.push_str(&labelscope_report::markdown::markdown(&results));
        write_text(p, &md)?;
    }
    let figs = if a.out.plots.is_some() || a.out.html.is_some() { figures(&out, &a, &names)? } else { vec![] };
    if let Some(dir) = &a.out.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, f) in &figs {
            let safe: String =
                name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
            write_text(&dir.join(format!("{safe}.svg")), &f.svg)?;
            write_atomic(&dir.join(format!("{safe}.png")), &svg_to_png(&f.svg, 2.0)?)?;
        }
    }
    if let Some(p) = &a.out.html {
        write_text(p, &html(&out, figs.into_iter().map(|(_, f)| f).collect()))?;
    }
    let format = if a.out.json { FormatArg::Json } else { a.out.format };
    match format {
        FormatArg::Json => print!("{json}"),
        FormatArg::Csv => print!("{}", labelscope_report::csv::csv(&results)),
        FormatArg::Markdown => print!("{}", labelscope_report::markdown::markdown(&results)),
        FormatArg::Table => {
            for l in summary_lines(&out) {
                println!("{l}");
            }
            println!();
            print!("{}", labelscope_report::table::terminal(&results));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_specs() {
        let s = parse_split("name=v2, labels=l.json,images=i.json,models=a,models=b/*.npy,humans=h,problematic=p.txt")
            .unwrap();
        assert_eq!(s.name, "v2");
        assert_eq!(s.labels, PathBuf::from("l.json"));
        assert_eq!(s.models, vec!["a", "b/*.npy"]);
        assert_eq!(s.humans, vec!["h"]);
        assert_eq!(s.problematic, Some(PathBuf::from("p.txt")));
        assert!(parse_split("labels=l,images=i,models=m").unwrap_err().to_string().contains("name=NAME"));
        assert!(parse_split("name=a,labels=l,images=i").unwrap_err().to_string().contains("models"));
        assert!(parse_split("name=a,labels=l,images=i,model=m").unwrap_err().to_string().contains("unknown key"));
    }
}
