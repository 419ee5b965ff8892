//! Exports of the stored byproducts.
//!
//! * [`imagenet_ab`] — the published ImageNet-AB layout: a `.tar.gz` with
//!   one ILSVRC-style XML document per image and one `metadata` section per
//!   showing (worker, HIT, page, `selected`, the final click as
//!   `selectedRecord`, `estimateTime` = final click time − first trace
//!   sample time, and the mouse trace), readable by `labelscope byproducts`.
//! * [`coco_ab`] — the published COCO-AB layout (tag projects): one JSON
//!   array with an object per (image, showing): `image_id`, sizes,
//!   `timeSpent`, `workerId` (the keyed hash), `actionHistories`,
//!   `categoryHistories`, `mouseTracking`; readable by `labelscope
//!   byproducts`.
//! * [`jsonl_records`] — every stored record as one JSON line (any task).
//! * [`csv_records`] and [`csv_events`] — a flat form for analysis: one row
//!   per (image, showing), and one row per recorded event (hover, trace
//!   sample, click, icon action, tab, answer, box drawing, class choice,
//!   escape hatch) with its normalised position and time.
//! * [`answers_csv`] — label projects: one answers file per labeler
//!   (`image,label,alternative,time`), read by `labelscope humans`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::db::{Db, ExportRow};
use crate::{Error, Result};

fn xml_text(s: &str) -> String {
    labelscope_report::escape_xml(s)
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

fn list<'a>(d: &'a Value, key: &str) -> &'a [Value] {
    d.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// A stored record with its parsed JSON.
type Showing = (ExportRow, Value);

async fn rows_of(db: &Db, project: &str) -> Result<Vec<(ExportRow, Value)>> {
    let (pid, _) = db
        .project_by_name(project)
        .await?
        .ok_or_else(|| Error::Invalid(format!("no project named {project:?} in the database")))?;
    let rows = db.export_rows(pid).await?;
    rows.into_iter()
        .map(|r| {
            let v: Value = serde_json::from_str(&r.data)
                .map_err(|e| Error::Schema(format!("stored record of image {} is unreadable: {e}", r.image)))?;
            Ok((r, v))
        })
        .collect()
}

/// One image's XML document in the ImageNet-AB layout.
pub fn image_xml(image: &str, class: Option<&str>, showings: &[(ExportRow, Value)], project: &str) -> String {
    let mut x = String::with_capacity(1024);
    x.push_str("<annotation>\n");
    if let Some(c) = class {
        let _ = writeln!(x, "  <folder>{}</folder>", xml_text(c));
    }
    let _ = writeln!(x, "  <filename>{}</filename>", xml_text(image));
    if let Some((_, d)) = showings.first() {
        if let (Some(w), Some(h)) = (
            d.get("originalSize").and_then(|s| s.get("width")).and_then(num),
            d.get("originalSize").and_then(|s| s.get("height")).and_then(num),
        ) {
            let _ = writeln!(
                x,
                "  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n  </size>"
            );
        }
    }
    for (r, d) in showings {
        x.push_str("  <metadata>\n");
        let _ = writeln!(x, "    <workerId>{}</workerId>", xml_text(&r.worker));
        let _ = writeln!(x, "    <hitId>{}-{}</hitId>", xml_text(project), r.hit);
        let _ = writeln!(x, "    <assignmentId>{}</assignmentId>", r.assignment);
        let _ = writeln!(x, "    <page>{}</page>", r.page + 1);
        let _ = writeln!(x, "    <selected>{}</selected>", if r.selected { "True" } else { "False" });
        let trace = list(d, "mouseTracking");
        let clicks = list(d, "selectedRecord");
        if r.selected {
            if let Some(c) = clicks.last() {
                if let (Some(cx), Some(cy)) = (c.get("x").and_then(num), c.get("y").and_then(num)) {
                    let _ = writeln!(
                        x,
                        "    <selectedRecord>\n      <x>{cx}</x>\n      <y>{cy}</y>\n    </selectedRecord>"
                    );
                }
                let first = trace
                    .first()
                    .and_then(|p| p.get("time"))
                    .or_else(|| list(d, "hoveredRecord").first().and_then(|h| h.get("time")))
                    .and_then(num);
                if let (Some(t0), Some(tc)) = (first, c.get("time").and_then(num)) {
                    let _ = writeln!(x, "    <estimateTime>{}</estimateTime>", tc - t0);
                }
            }
        }
        for p in trace {
            if let (Some(t), Some(px), Some(py)) =
                (p.get("time").and_then(num), p.get("x").and_then(num), p.get("y").and_then(num))
            {
                let _ = writeln!(
                    x,
                    "    <mouseTracking>\n      <time>{t}</time>\n      <x>{px}</x>\n      <y>{py}</y>\n    </mouseTracking>"
                );
            }
        }
        x.push_str("  </metadata>\n");
    }
    x.push_str("</annotation>\n");
    x
}

/// Writes the project's records as an ImageNet-AB `.tar.gz` (atomically);
/// members are `{class}/{image}.xml`. Returns the number of images.
pub async fn imagenet_ab(db: &Db, project: &str, out: &Path) -> Result<u64> {
    let rows = rows_of(db, project).await?;
    let mut by_image: BTreeMap<(Option<String>, String), Vec<Showing>> = BTreeMap::new();
    for (r, v) in rows {
        by_image.entry((r.class.clone(), r.image.clone())).or_default().push((r, v));
    }
    let members = by_image.iter().map(|((class, image), showings)| {
        let name = match class {
            Some(c) => format!("{c}/{image}.xml"),
            None => format!("{image}.xml"),
        };
        (name, image_xml(image, class.as_deref(), showings, project))
    });
    Ok(labelscope_byproducts::imagenet::write_archive(out, members)?)
}

/// Writes a tag project's records in the COCO-AB layout (atomically), one
/// array element per line. Returns the number of records.
pub async fn coco_ab(db: &Db, project: &str, out: &Path) -> Result<u64> {
    let (_, task) = crate::qc::project_task(db, project).await?;
    if task != crate::manifest::Task::Tag {
        return Err(Error::Invalid(format!(
            "project {project:?} is a {} project; the COCO-AB layout holds tag (icon) records",
            task.name()
        )));
    }
    let rows = rows_of(db, project).await?;
    let mut n = 0u64;
    labelscope_core::atomic::write_atomic_with(out, |w| {
        let mut w = std::io::BufWriter::new(w);
        w.write_all(b"[\n")?;
        for (k, (r, d)) in rows.iter().enumerate() {
            let extra = crate::manifest::ImageExtra::from_stored(r.extra.as_deref());
            let g = |a: &str, b: &str| d.get(a).and_then(|s| s.get(b)).cloned().unwrap_or(Value::Null);
            let rec = serde_json::json!({
                "image_id": extra.image_id.unwrap_or(r.image_id as u64),
                "file_name": r.image,
                "originalImageWidth": g("originalSize", "width"),
                "originalImageHeight": g("originalSize", "height"),
                "imageWidth": g("onPageSize", "width"),
                "imageHeight": g("onPageSize", "height"),
                "timeSpent": d.get("timeSpent").cloned().unwrap_or(Value::Null),
                "workerId": r.worker,
                "assignmentId": r.assignment,
                "hitId": r.hit,
                "pageIndex": r.page,
                "actionHistories": d.get("actionHistories").cloned().unwrap_or(Value::Array(Vec::new())),
                "categoryHistories": d.get("categoryHistories").cloned().unwrap_or(Value::Array(Vec::new())),
                "mouseTracking": d.get("mouseTracking").cloned().unwrap_or(Value::Array(Vec::new())),
            });
            w.write_all(rec.to_string().as_bytes())?;
            w.write_all(if k + 1 < rows.len() { b",\n" } else { b"\n" })?;
            n += 1;
        }
        w.write_all(b"]\n")?;
        w.flush()
    })?;
    Ok(n)
}

/// Writes every stored record as JSON lines (full fidelity, any task):
/// `{"image", "class", "hit", "assignment", "worker", "page", "selected",
/// "record"}` per line, `record` being the validated submission of that
/// image. Returns the number of lines.
pub async fn jsonl_records(db: &Db, project: &str, out: &Path) -> Result<u64> {
    let rows = rows_of(db, project).await?;
    labelscope_core::atomic::write_atomic_with(out, |w| {
        let mut w = std::io::BufWriter::new(w);
        for (r, d) in &rows {
            let line = serde_json::json!({"image": r.image, "class": r.class, "hit": r.hit, "assignment": r.assignment,
                                          "worker": r.worker, "page": r.page, "selected": r.selected, "record": d});
            w.write_all(line.to_string().as_bytes())?;
            w.write_all(b"\n")?;
        }
        w.flush()
    })?;
    Ok(rows.len() as u64)
}

/// The labels a record gave, in words: browse nothing; tag the final icons;
/// verify `label=answer`; region the box labels; `;`-separated.
fn labels_of(d: &Value) -> String {
    let mut out: Vec<String> = Vec::new();
    for i in list(d, "icons") {
        out.extend(i.get("iconType").and_then(Value::as_str).map(str::to_string));
    }
    for a in list(d, "answers") {
        if let (Some(l), Some(x)) = (a.get("label").and_then(Value::as_str), a.get("answer").and_then(Value::as_str)) {
            out.push(format!("{l}={x}"));
        }
    }
    for r in list(d, "regions") {
        out.extend(r.get("label").and_then(Value::as_str).map(str::to_string));
    }
    if let Some(l) = d.get("label").and_then(Value::as_str) {
        out.push(l.to_string());
        if let Some(a) = d.get("alternative").and_then(Value::as_str) {
            out.push(format!("alternative={a}"));
        }
    }
    out.join(";")
}

/// A CSV field: quoted (with doubled quotes) when it holds a comma, quote
/// or line break.
pub fn csv_text(s: &str) -> String {
    csv_field(s)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// Writes one CSV row per (image, showing): who, where, the selection, the
/// final click, counts of events, sizes. Returns the number of rows.
pub async fn csv_records(db: &Db, project: &str, out: &Path) -> Result<u64> {
    let rows = rows_of(db, project).await?;
    let mut n = 0u64;
    labelscope_core::atomic::write_atomic_with(out, |w| {
        let mut w = std::io::BufWriter::new(w);
        writeln!(
            w,
            "image,class,hit,assignment,worker,page,selected,clicks,final_click_x,final_click_y,final_click_ms,\
             trace_samples,hovers,original_width,original_height,on_page_width,on_page_height,page_x,page_y,\
             labels,actions"
        )?;
        for (r, d) in &rows {
            let clicks = list(d, "selectedRecord");
            let last = clicks.last();
            let g = |v: &Value, a: &str, b: &str| v.get(a).and_then(|s| s.get(b)).and_then(num);
            writeln!(
                w,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&r.image),
                csv_field(r.class.as_deref().unwrap_or("")),
                r.hit,
                r.assignment,
                r.worker,
                r.page,
                u8::from(r.selected),
                clicks.len(),
                opt(last.and_then(|c| c.get("x")).and_then(num)),
                opt(last.and_then(|c| c.get("y")).and_then(num)),
                opt(last.and_then(|c| c.get("time")).and_then(num)),
                list(d, "mouseTracking").len(),
                list(d, "hoveredRecord")
                    .iter()
                    .filter(|h| h.get("action").and_then(Value::as_str) == Some("enter"))
                    .count(),
                opt(g(d, "originalSize", "width")),
                opt(g(d, "originalSize", "height")),
                opt(g(d, "onPageSize", "width")),
                opt(g(d, "onPageSize", "height")),
                opt(g(d, "imagePosition", "x")),
                opt(g(d, "imagePosition", "y")),
                csv_field(&labels_of(d)),
                list(d, "actionHistories").len()
                    + list(d, "answerHistory").len()
                    + list(d, "regions").len()
                    + list(d, "labelHistory").len()
                    + list(d, "escapeHistory").len(),
            )?;
            n += 1;
        }
        w.flush()
    })?;
    Ok(n)
}

/// One flat event: time, kind, x, y, detail.
type Event<'a> = (f64, &'a str, Option<f64>, Option<f64>, String);

/// Writes one CSV row per recorded event: `kind` is `enter`, `leave`,
/// `trace`, `click` (browse), `add` / `move` / `remove` (tag icons; `x`, `y`
/// where the icon went, or where it was for a removal; `detail` the
/// category), `tab` (tag superclass; `detail` the superclass, `keyboard`
/// when opened by the arrow keys), `answer` (verify; `detail`
/// `label=answer`), `draw` (region box drawing; `detail` the region's
/// position and label), `choose` (label; `detail` `label=KEY` or
/// `alternative=KEY`) or `escape` (label; `detail` `on` / `off`); `x`, `y` are image-normalised (empty when there is
/// no point). Returns the number of rows.
pub async fn csv_events(db: &Db, project: &str, out: &Path) -> Result<u64> {
    let rows = rows_of(db, project).await?;
    let mut n = 0u64;
    labelscope_core::atomic::write_atomic_with(out, |w| {
        let mut w = std::io::BufWriter::new(w);
        writeln!(w, "image,assignment,page,kind,time_ms,x,y,detail")?;
        for (r, d) in &rows {
            let image = csv_field(&r.image);
            let mut events: Vec<Event> = Vec::new();
            let time = |p: &Value| p.get("time").or_else(|| p.get("timeAt")).and_then(num).unwrap_or(0.0);
            let xy = |p: Option<&Value>| {
                (p.and_then(|p| p.get("x")).and_then(num), p.and_then(|p| p.get("y")).and_then(num))
            };
            for h in list(d, "hoveredRecord") {
                let kind = if h.get("action").and_then(Value::as_str) == Some("leave") { "leave" } else { "enter" };
                events.push((time(h), kind, None, None, String::new()));
            }
            for (key, kind) in [("mouseTracking", "trace"), ("selectedRecord", "click")] {
                for p in list(d, key) {
                    let (x, y) = xy(Some(p));
                    events.push((time(p), kind, x, y, String::new()));
                }
            }
            for a in list(d, "actionHistories") {
                let kind = match a.get("actionType").and_then(Value::as_str) {
                    Some("move") => "move",
                    Some("remove") => "remove",
                    _ => "add",
                };
                let (x, y) = xy(a.get("pointTo").or_else(|| a.get("pointFrom")));
                let icon = a.get("iconType").and_then(Value::as_str).unwrap_or_default().to_string();
                events.push((time(a), kind, x, y, icon));
            }
            for c in list(d, "categoryHistories") {
                let mut detail = c.get("superclass").and_then(Value::as_str).unwrap_or_default().to_string();
                if c.get("keyboard").and_then(Value::as_bool) == Some(true) {
                    detail.push_str(" (keyboard)");
                }
                events.push((time(c), "tab", None, None, detail));
            }
            for a in list(d, "answerHistory") {
                let detail = format!(
                    "{}={}",
                    a.get("label").and_then(Value::as_str).unwrap_or_default(),
                    a.get("answer").and_then(Value::as_str).unwrap_or_default()
                );
                events.push((time(a), "answer", None, None, detail));
            }
            for c in list(d, "labelHistory") {
                let detail = format!(
                    "{}={}",
                    c.get("target").and_then(Value::as_str).unwrap_or_default(),
                    c.get("label").and_then(Value::as_str).unwrap_or_default()
                );
                events.push((time(c), "choose", None, None, detail));
            }
            for e in list(d, "escapeHistory") {
                let on = e.get("checked").and_then(Value::as_bool) == Some(true);
                events.push((time(e), "escape", None, None, if on { "on" } else { "off" }.to_string()));
            }
            for (k, reg) in list(d, "regions").iter().enumerate() {
                let detail = format!("region {k}: {}", reg.get("label").and_then(Value::as_str).unwrap_or_default());
                for p in list(reg, "drawTrace") {
                    let (x, y) = xy(Some(p));
                    events.push((time(p), "draw", x, y, detail.clone()));
                }
            }
            // Stable sort: events at the same time keep the order above.
            events.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (t, kind, x, y, detail) in events {
                writeln!(
                    w,
                    "{image},{},{},{kind},{t},{},{},{}",
                    r.assignment,
                    r.page,
                    opt(x),
                    opt(y),
                    csv_field(&detail)
                )?;
                n += 1;
            }
        }
        w.flush()
    })?;
    Ok(n)
}

/// How [`answers_csv`] writes classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerClasses {
    /// The class keys as stored (WordNet ids for ImageNet classes).
    Keys,
    /// ImageNet class indices (0–999); a class outside the ImageNet table is an error.
    Indices,
}

/// What [`answers_csv`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswersWritten {
    /// The files, one per labeler, in worker-hash order.
    pub files: Vec<std::path::PathBuf>,
    /// Answers (rows) over all files.
    pub rows: u64,
}

/// Writes a label project's answers as one answers file per labeler into
/// the folder `out` (created if missing): `{worker hash}.csv` with the
/// columns `image,label,alternative,time` — the image name, the class
/// chosen, the escape-hatch alternative (empty without one) and the page
/// time in seconds — the format `labelscope humans` reads, the participant
/// being named by the keyed worker hash. Rows follow the project's image
/// order. Assignments in `exclude` are left out. Each file is written
/// atomically (temporary file, then rename). Files of an earlier export are
/// replaced; any other answer file in `out` (`.csv`, `.tsv`, `.json`, such
/// as the file of a labeler now left out) is an error naming it, before
/// anything is written, since `labelscope humans` would read it too.
pub async fn answers_csv(
    db: &Db,
    project: &str,
    out: &Path,
    classes: AnswerClasses,
    exclude: &std::collections::HashSet<i64>,
) -> Result<AnswersWritten> {
    let (_, task) = crate::qc::project_task(db, project).await?;
    if task != crate::manifest::Task::Label {
        return Err(Error::Invalid(format!(
            "project {project:?} is a {} project; answers files hold the one class per image of a label project",
            task.name()
        )));
    }
    let table = labelscope_core::classes::ClassTable::imagenet();
    let class = |key: &str, image: &str| -> Result<String> {
        match classes {
            AnswerClasses::Keys => Ok(key.to_string()),
            AnswerClasses::Indices => table.index_of_wnid(key).map(|k| k.to_string()).ok_or_else(|| {
                Error::Invalid(format!(
                    "image {image:?}: class {key:?} is not an ImageNet class, so it has no class index; \
                     export class keys instead"
                ))
            }),
        }
    };
    let mut by_worker: BTreeMap<String, String> = BTreeMap::new();
    let mut seen: std::collections::HashSet<(String, i64)> = std::collections::HashSet::new();
    let mut rows = 0u64;
    // Records come ordered by image, then submission: a labeler's first answer of an image counts.
    for (r, d) in rows_of(db, project).await? {
        if exclude.contains(&r.assignment) || !seen.insert((r.worker.clone(), r.image_id)) {
            continue;
        }
        let Some(label) = d.get("label").and_then(Value::as_str) else {
            return Err(Error::Schema(format!("stored label record of image {:?} has no label", r.image)));
        };
        let alternative = match d.get("alternative").and_then(Value::as_str) {
            Some(a) => class(a, &r.image)?,
            None => String::new(),
        };
        let time = d.get("timeSpent").and_then(num).map(|ms| (ms / 1000.0).to_string()).unwrap_or_default();
        let text = by_worker.entry(r.worker.clone()).or_insert_with(|| "image,label,alternative,time\n".to_string());
        let _ = writeln!(
            text,
            "{},{},{},{time}",
            csv_field(&r.image),
            csv_field(&class(label, &r.image)?),
            csv_field(&alternative)
        );
        rows += 1;
    }
    for worker in by_worker.keys() {
        // Worker hashes are hex digests: safe file names (checked all the same).
        if worker.is_empty() || !worker.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(Error::Schema(format!("worker hash {worker:?} is not usable as a file name")));
        }
    }
    let names: std::collections::HashSet<String> = by_worker.keys().map(|w| format!("{w}.csv")).collect();
    let others = other_answer_files(out, &names)?;
    if !others.is_empty() {
        let shown: Vec<&str> = others.iter().take(5).map(String::as_str).collect();
        let more = if others.len() > 5 { format!(" and {} more", others.len() - 5) } else { String::new() };
        return Err(Error::Invalid(format!(
            "{}: the folder already holds answer files that this export does not write ({}{more}); \
             `labelscope humans` would read them as labelers too (e.g. those of an earlier export whose \
             assignments are now left out). Export into an empty folder, or move those files away",
            out.display(),
            shown.join(", ")
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut files = Vec::with_capacity(by_worker.len());
    for (worker, text) in &by_worker {
        let path = out.join(format!("{worker}.csv"));
        labelscope_core::atomic::write_atomic(&path, text.as_bytes())?;
        files.push(path);
    }
    Ok(AnswersWritten { files, rows })
}

/// The files of the folder `dir` that `labelscope humans` reads as answer
/// files (not hidden; `.csv`, `.tsv` or `.json`) and whose names are not in
/// `names`, sorted; none when `dir` does not exist.
fn other_answer_files(dir: &Path, names: &std::collections::HashSet<String>) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut others = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let answer_like = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["csv", "tsv", "json"].contains(&e.to_ascii_lowercase().as_str()));
        if answer_like && !name.starts_with('.') && path.is_file() && !names.contains(&name) {
            others.push(name);
        }
    }
    others.sort();
    Ok(others)
}
