//! Human labelers as first-class participants (Shankar et al. 2020,
//! "Evaluating machine accuracy on ImageNet").
//!
//! Every participant — a model (one prediction file) or a human labeler (one
//! answers file) — gives one label per image. This module reads human answer
//! files, turns model prediction files into the same shape (their top-1),
//! joins both to a split's images by the join key ([`crate::ids::join_key`],
//! never by position) and computes the paper's tables as [`ResultRow`]s.
//!
//! # Answer files
//!
//! CSV/TSV (the delimiter is a tab when the header line holds one, else a
//! comma), with a header naming the columns, in any order:
//!
//! | column | aliases | required | content |
//! |---|---|---|---|
//! | `image` | `name`, `filename`, `file`, `image_id`, `id` | yes | the image name (joined by its join key) |
//! | `label` | `answer` | yes | the labeler's answer: a class index or a WordNet id |
//! | `alternative` | `alt`, `escape` | no | the alternative label given with the "escape hatch"; empty = none |
//! | `time` | `time_s`, `seconds` | no | labelling time of the image in seconds; empty = unknown |
//!
//! JSON, either an object keyed by image name, whose values are a label or an
//! object `{"label": ..., "alternative": ..., "time": ...}`, or an array of
//! objects `{"image": ..., "label": ..., "alternative": ..., "time": ...}`.
//! Labels are class indices (numbers or digit strings) or WordNet ids;
//! `alternative` and `time` may be absent or `null`.
//!
//! An image listed twice is an error naming both places.
//!
//! # The tables (see [`evaluate_split`])
//!
//! * Scope of a split: the images of its image list with a non-empty label set;
//!   when the split has human participants, only the images that at least one
//!   human answered. Each participant is scored over the images of the scope
//!   (or subset) it answered; models answer every image.
//! * Metrics: `multi-label` (the answer is in the image's label set), `top1`
//!   (the answer is the image's original label; needs original labels), and
//!   for humans `multi-label-imputed` / `top1-imputed`: the same after
//!   replacing every answer that carries an alternative by that alternative.
//!   Each count carries a Clopper–Pearson interval.
//! * Subsets: `all`; `group=NAME` for each requested class group, by the
//!   group of the image's original label; `fast` (median labelling time over
//!   the humans who gave a time for the image below the threshold; images
//!   without any time are in no time subset); `problematic` /
//!   `non-problematic` (images listed / not listed in the split's
//!   problematic-images file); `labels=1` / `labels>=2` (images with exactly
//!   one / at least two labels in their set).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::classes::{ClassTable, Group};
use crate::error::{Error, Result};
use crate::ids::join_key;
use crate::labels::LabelSets;
use crate::metrics::intervals::clopper_pearson;
use crate::metrics::ranking::topk_from_scores;
use crate::order::ImageOrder;
use crate::predictions::{PredictionData, Predictions};
use crate::results::ResultRow;

/// One participant's answer for one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// The label given (class index).
    pub label: u32,
    /// The alternative label given with the escape hatch, if any.
    pub alternative: Option<u32>,
    /// Labelling time in seconds, if recorded.
    pub time_s: Option<f64>,
}

impl Answer {
    /// The answer after escape-hatch imputation: the alternative when there is one.
    pub fn imputed(&self) -> u32 {
        self.alternative.unwrap_or(self.label)
    }
}

/// Whether a participant is a model or a human labeler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParticipantKind {
    /// A model (a prediction file; its answer is the top-1 prediction).
    Model,
    /// A human labeler (an answers file).
    Human,
}

impl ParticipantKind {
    /// `model` or `human`.
    pub fn name(self) -> &'static str {
        match self {
            ParticipantKind::Model => "model",
            ParticipantKind::Human => "human",
        }
    }
}

/// One participant's answers on one split, keyed by image join key.
#[derive(Debug, Clone)]
pub struct Participant {
    /// Participant name (the file stem).
    pub name: String,
    /// Model or human.
    pub kind: ParticipantKind,
    /// The file the answers came from.
    pub path: PathBuf,
    /// Answers by image join key.
    pub answers: HashMap<String, Answer>,
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

impl Participant {
    /// A model participant: the top-1 prediction of each row of `preds`,
    /// keyed by the image of that row in `order`.
    pub fn from_predictions(preds: &Predictions, order: &ImageOrder, n_classes: usize) -> Result<Participant> {
        if preds.rows() != order.len() {
            return Err(Error::Mismatch(format!(
                "{}: {} prediction rows, but the image order ({}) has {} images",
                preds.path.display(),
                preds.rows(),
                order.source,
                order.len()
            )));
        }
        preds.validate_classes(n_classes)?;
        let top1: Vec<u32> = match &preds.data {
            PredictionData::TopK { k, indices } => indices.chunks(*k).map(|r| r[0]).collect(),
            PredictionData::Scores(m) => topk_from_scores(m.as_slice(), m.rows(), m.cols(), 1),
        };
        let answers = order
            .names
            .iter()
            .zip(top1)
            .map(|(n, l)| (join_key(n).to_string(), Answer { label: l, alternative: None, time_s: None }))
            .collect();
        Ok(Participant { name: preds.model.clone(), kind: ParticipantKind::Model, path: preds.path.clone(), answers })
    }

    /// Number of answers that carry an escape-hatch alternative.
    pub fn alternatives(&self) -> usize {
        self.answers.values().filter(|a| a.alternative.is_some()).count()
    }
}

/// Reads a human labeler's answers file (CSV/TSV or JSON, detected from
/// content; see the module documentation). The participant is named after
/// the file stem.
pub fn load_answers(path: &Path, classes: &ClassTable) -> Result<Participant> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let t = text.trim_start();
    let entries = if t.starts_with('{') || t.starts_with('[') {
        parse_answers_json(&text, path, classes)?
    } else {
        parse_answers_csv(&text, path, classes)?
    };
    if entries.is_empty() {
        return Err(Error::format(path, "whole file", "no answers found (expected at least one image)"));
    }
    let mut answers: HashMap<String, Answer> = HashMap::with_capacity(entries.len());
    let mut seen: HashMap<String, String> = HashMap::with_capacity(entries.len());
    for (loc, name, a) in entries {
        let key = join_key(&name).to_string();
        if let Some(prev) = seen.insert(key.clone(), loc.clone()) {
            return Err(Error::format(
                path,
                loc,
                format!("image {name:?} is answered twice (first at {prev}); give one answer per image"),
            ));
        }
        answers.insert(key, a);
    }
    Ok(Participant { name: stem(path), kind: ParticipantKind::Human, path: path.to_path_buf(), answers })
}

fn resolve_label(classes: &ClassTable, v: &Value, path: &Path, loc: &str, what: &str) -> Result<u32> {
    let idx = match v {
        Value::Number(n) => n.as_u64().and_then(|i| usize::try_from(i).ok()).filter(|&i| i < classes.len()),
        Value::String(s) => classes.resolve(s),
        _ => None,
    };
    idx.map(|i| i as u32).ok_or_else(|| {
        Error::format(
            path,
            loc,
            format!("{what}: expected a class index below {} or a class id, found {v}", classes.len()),
        )
    })
}

fn parse_time(v: &Value, path: &Path, loc: &str) -> Result<Option<f64>> {
    let t = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match t {
        Some(t) if t.is_finite() && t >= 0.0 => Ok(Some(t)),
        _ => Err(Error::format(path, loc, format!("time: expected a number of seconds >= 0, found {v}"))),
    }
}

fn answer_from_object(
    o: &serde_json::Map<String, Value>,
    path: &Path,
    loc: &str,
    classes: &ClassTable,
) -> Result<Answer> {
    let label = o
        .get("label")
        .or_else(|| o.get("answer"))
        .ok_or_else(|| Error::format(path, loc, "expected a field \"label\""))?;
    let label = resolve_label(classes, label, path, loc, "label")?;
    let alternative = match o.get("alternative") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(v) => Some(resolve_label(classes, v, path, loc, "alternative")?),
    };
    let time_s = match o.get("time") {
        None => None,
        Some(v) => parse_time(v, path, loc)?,
    };
    Ok(Answer { label, alternative, time_s })
}

type Entry = (String, String, Answer);

fn parse_answers_json(text: &str, path: &Path, classes: &ClassTable) -> Result<Vec<Entry>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Error::format(path, format!("line {}, column {}", e.line(), e.column()), format!("invalid JSON: {e}"))
    })?;
    let mut out = Vec::new();
    match value {
        Value::Object(map) => {
            for (name, v) in map {
                let loc = format!("key {name:?}");
                let a = match &v {
                    Value::Object(o) => answer_from_object(o, path, &loc, classes)?,
                    other => Answer {
                        label: resolve_label(classes, other, path, &loc, "label")?,
                        alternative: None,
                        time_s: None,
                    },
                };
                out.push((loc, name, a));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let loc = format!("element {i}");
                let o = v
                    .as_object()
                    .ok_or_else(|| Error::format(path, &loc, "expected an object {\"image\": ..., \"label\": ...}"))?;
                let name = o
                    .get("image")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::format(path, &loc, "expected a string field \"image\""))?
                    .to_string();
                let a = answer_from_object(o, path, &loc, classes)?;
                out.push((loc, name, a));
            }
        }
        _ => return Err(Error::format(path, "top level", "expected a JSON object keyed by image or an array")),
    }
    Ok(out)
}

fn column(headers: &[String], names: &[&str]) -> Option<usize> {
    headers.iter().position(|h| names.contains(&h.as_str()))
}

fn parse_answers_csv(text: &str, path: &Path, classes: &ClassTable) -> Result<Vec<Entry>> {
    let first = text.lines().next().unwrap_or("");
    let delimiter = if first.contains('\t') { b'\t' } else { b',' };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Error::format(path, "line 1", format!("unreadable header: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let image = column(&headers, &["image", "name", "filename", "file", "image_id", "id"]).ok_or_else(|| {
        Error::format(path, "line 1", format!("the header {headers:?} has no image column (expected \"image\")"))
    })?;
    let label = column(&headers, &["label", "answer"]).ok_or_else(|| {
        Error::format(path, "line 1", format!("the header {headers:?} has no label column (expected \"label\")"))
    })?;
    let alternative = column(&headers, &["alternative", "alt", "escape"]);
    let time = column(&headers, &["time", "time_s", "seconds"]);
    let mut out = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            Error::format(path, format!("line {line}"), format!("unreadable CSV row: {e}"))
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let cell = |i: usize| rec.get(i).unwrap_or("");
        let name = cell(image);
        if name.is_empty() {
            return Err(Error::format(path, format!("line {line}, column {}", image + 1), "expected an image name"));
        }
        let lab_loc = format!("line {line}, column {}", label + 1);
        let lab = classes.resolve(cell(label)).ok_or_else(|| {
            Error::format(
                path,
                &lab_loc,
                format!("label: expected a class index below {} or a class id, found {:?}", classes.len(), cell(label)),
            )
        })? as u32;
        let alt = match alternative.map(cell) {
            None | Some("") => None,
            Some(s) => Some(classes.resolve(s).ok_or_else(|| {
                Error::format(
                    path,
                    format!("line {line}, column {}", alternative.unwrap_or(0) + 1),
                    format!("alternative: expected a class index below {} or a class id, found {s:?}", classes.len()),
                )
            })? as u32),
        };
        let t = match time {
            None => None,
            Some(c) => {
                parse_time(&Value::String(cell(c).to_string()), path, &format!("line {line}, column {}", c + 1))?
            }
        };
        out.push((format!("line {line}"), name.to_string(), Answer { label: lab, alternative: alt, time_s: t }));
    }
    Ok(out)
}

/// Reads a problematic-images file: a text file with one image name per line
/// (blank lines and `#` comments ignored; a CSV line counts by its first
/// cell), a JSON array of names, a JSON object keyed by name, or a JSON object
/// with a `problematic_images` array or object (the expert-labels schema).
/// Returns the join keys.
pub fn load_problematic(path: &Path) -> Result<HashSet<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let t = text.trim_start();
    let mut out = HashSet::new();
    if t.starts_with('{') || t.starts_with('[') {
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::format(path, format!("line {}, column {}", e.line(), e.column()), format!("invalid JSON: {e}"))
        })?;
        let value = match value {
            Value::Object(mut o) if o.contains_key("problematic_images") => {
                o.remove("problematic_images").unwrap_or(Value::Null)
            }
            v => v,
        };
        match value {
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    let s = v.as_str().ok_or_else(|| {
                        Error::format(path, format!("element {i}"), format!("expected an image name, found {v}"))
                    })?;
                    out.insert(join_key(s).to_string());
                }
            }
            Value::Object(o) => out.extend(o.keys().map(|k| join_key(k).to_string())),
            _ => return Err(Error::format(path, "top level", "expected an array of image names or an object")),
        }
    } else {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name = line.split(['\t', ',']).next().unwrap_or(line).trim().trim_matches('"');
            out.insert(join_key(name).to_string());
        }
    }
    Ok(out)
}

/// One split (for example ImageNet val or ImageNetV2): its images, label
/// sets, original labels and problematic flags, aligned by image.
#[derive(Debug, Clone)]
pub struct Split {
    /// Split name used in result rows (column `dataset`).
    pub name: String,
    /// Image names, in image-list order.
    pub names: Vec<String>,
    /// Label set of each image (empty = no valid label or not in the label file).
    pub gt: Vec<Vec<u32>>,
    /// Original label of each image, when the image list carries them.
    pub original: Option<Vec<u32>>,
    /// Whether each image is marked problematic (None: no problematic file).
    pub problematic: Option<Vec<bool>>,
    /// Notes on the join.
    pub notes: Vec<String>,
}

impl Split {
    /// Joins `labels` and the `problematic` keys to the images of `order` by join key.
    pub fn new(name: &str, order: &ImageOrder, labels: &LabelSets, problematic: Option<&HashSet<String>>) -> Split {
        let mut notes = Vec::new();
        let gt: Vec<Vec<u32>> =
            order.names.iter().map(|n| labels.get(n).map(<[u32]>::to_vec).unwrap_or_default()).collect();
        let missing = order.names.iter().filter(|n| labels.position(n).is_none()).count();
        if missing > 0 {
            notes.push(format!(
                "{name}: {missing} of {} images of {} have no entry in {} and are left out",
                order.len(),
                order.source,
                labels.path.display()
            ));
        }
        let problematic = problematic.map(|p| {
            let flags: Vec<bool> = order.names.iter().map(|n| p.contains(join_key(n))).collect();
            let matched = flags.iter().filter(|&&f| f).count();
            if matched < p.len() {
                notes.push(format!(
                    "{name}: {} names of the problematic-images file are not images of the split",
                    p.len() - matched
                ));
            }
            flags
        });
        Split {
            name: name.to_string(),
            names: order.names.clone(),
            gt,
            original: order.original.clone(),
            problematic,
            notes,
        }
    }
}

/// Options of [`evaluate_split`].
#[derive(Debug, Clone)]
pub struct StudyOptions {
    /// Significance level of the Clopper–Pearson intervals (0.05: 95%).
    pub alpha: f64,
    /// An image is "fast" when the median labelling time of the humans is below this (seconds).
    pub fast_threshold_s: f64,
    /// Class groups to break down by (by the group of the original label).
    pub groups: Vec<Group>,
}

impl Default for StudyOptions {
    fn default() -> Self {
        StudyOptions {
            alpha: 0.05,
            fast_threshold_s: 60.0,
            groups: vec![Group::Dog, Group::OrganismWithoutDog, Group::Object],
        }
    }
}

/// Per-split facts that do not depend on a participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// Split name.
    pub name: String,
    /// Images in the image list.
    pub images: usize,
    /// Images with a non-empty label set.
    pub labelled_images: usize,
    /// Labelled images with at least two labels.
    pub labelled_multi_label: usize,
    /// Images in the scope (labelled and, when there are humans, answered by one).
    pub scope_images: usize,
    /// Images of the scope with at least two labels.
    pub scope_multi_label: usize,
    /// `scope_multi_label / scope_images` (0 for an empty scope).
    pub multi_label_share: f64,
    /// Images of the scope in the `fast` subset.
    pub fast_images: usize,
    /// Images of the scope marked problematic (None without a problematic file).
    pub problematic_images: Option<usize>,
    /// The fast-image threshold in seconds.
    pub fast_threshold_s: f64,
    /// Median human labelling time (seconds) of every image of the scope that has one, in image-list order.
    pub median_times_s: Vec<f64>,
}

/// One participant on one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantSummary {
    /// Participant name.
    pub name: String,
    /// Model or human.
    pub kind: ParticipantKind,
    /// Split name.
    pub split: String,
    /// The file read.
    pub path: String,
    /// Images of the scope the participant answered.
    pub answered: usize,
    /// Of those, answers with an escape-hatch alternative.
    pub alternatives: usize,
    /// Of those, answers with a labelling time.
    pub timed: usize,
}

/// Everything [`evaluate_split`] computes for one split.
#[derive(Debug, Clone, Default)]
pub struct SplitResult {
    /// Result rows (model = participant, dataset = split).
    pub rows: Vec<ResultRow>,
    /// The split's summary.
    pub summary: Option<SplitSummary>,
    /// One entry per participant.
    pub participants: Vec<ParticipantSummary>,
    /// Notes (skipped tables and why).
    pub notes: Vec<String>,
}

/// The median of `v` (the mean of the two middle values for an even count); None when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Computes the tables of one split for every participant (see the module
/// documentation for the rules). Participants' answers for images outside
/// the split are ignored.
pub fn evaluate_split(
    split: &Split,
    participants: &[Participant],
    classes: &ClassTable,
    opts: &StudyOptions,
) -> Result<SplitResult> {
    if !(opts.alpha > 0.0 && opts.alpha < 1.0) {
        return Err(Error::Invalid(format!("alpha {}: expected a number between 0 and 1", opts.alpha)));
    }
    let mut names = HashSet::new();
    for p in participants {
        if !names.insert(p.name.as_str()) {
            return Err(Error::Invalid(format!(
                "split {}: two participants are named {:?} (the second from {}); rename one file",
                split.name,
                p.name,
                p.path.display()
            )));
        }
    }
    let mut out = SplitResult { notes: split.notes.clone(), ..Default::default() };
    let keys: Vec<&str> = split.names.iter().map(|n| join_key(n)).collect();
    let humans: Vec<&Participant> = participants.iter().filter(|p| p.kind == ParticipantKind::Human).collect();
    let scope: Vec<usize> = (0..keys.len())
        .filter(|&r| !split.gt[r].is_empty())
        .filter(|&r| humans.is_empty() || humans.iter().any(|h| h.answers.contains_key(keys[r])))
        .collect();
    for h in &humans {
        let outside = h.answers.keys().filter(|k| !keys.contains(&k.as_str())).count();
        if outside > 0 {
            out.notes.push(format!(
                "{}: {outside} answers of {} are for images not in split {} and are ignored",
                h.path.display(),
                h.name,
                split.name
            ));
        }
    }
    // Median human time per image of the scope.
    let medians: Vec<Option<f64>> = scope
        .iter()
        .map(|&r| {
            let mut t: Vec<f64> = humans.iter().filter_map(|h| h.answers.get(keys[r]).and_then(|a| a.time_s)).collect();
            median(&mut t)
        })
        .collect();
    // Subsets as lists of rows (all subsets are within the scope).
    let mut subsets: Vec<(String, Vec<usize>)> = vec![("all".into(), scope.clone())];
    match (&split.original, classes.has_groups()) {
        (Some(orig), true) => {
            for &g in &opts.groups {
                let rows = scope.iter().copied().filter(|&r| classes.in_group(orig[r] as usize, g)).collect();
                subsets.push((format!("group={}", g.name()), rows));
            }
        }
        (None, _) if !opts.groups.is_empty() => out.notes.push(format!(
            "split {}: no original labels in the image list: top1 and class-group tables are skipped",
            split.name
        )),
        (Some(_), false) if !opts.groups.is_empty() => {
            out.notes.push("the class table has no groups: class-group tables are skipped".into())
        }
        _ => {}
    }
    let timed = medians.iter().any(Option::is_some);
    let fast: Vec<usize> = scope
        .iter()
        .zip(&medians)
        .filter(|(_, m)| m.is_some_and(|m| m < opts.fast_threshold_s))
        .map(|(&r, _)| r)
        .collect();
    if timed {
        subsets.push(("fast".into(), fast.clone()));
    } else if !humans.is_empty() {
        out.notes.push(format!("split {}: no labelling times: the fast-images table is skipped", split.name));
    }
    if let Some(p) = &split.problematic {
        subsets.push(("problematic".into(), scope.iter().copied().filter(|&r| p[r]).collect()));
        subsets.push(("non-problematic".into(), scope.iter().copied().filter(|&r| !p[r]).collect()));
    }
    subsets.push(("labels=1".into(), scope.iter().copied().filter(|&r| split.gt[r].len() == 1).collect()));
    subsets.push(("labels>=2".into(), scope.iter().copied().filter(|&r| split.gt[r].len() >= 2).collect()));

    for p in participants {
        let answers: Vec<Option<&Answer>> = keys.iter().map(|k| p.answers.get(*k)).collect();
        let answered: Vec<&Answer> = scope.iter().filter_map(|&r| answers[r]).collect();
        out.participants.push(ParticipantSummary {
            name: p.name.clone(),
            kind: p.kind,
            split: split.name.clone(),
            path: p.path.display().to_string(),
            answered: answered.len(),
            alternatives: answered.iter().filter(|a| a.alternative.is_some()).count(),
            timed: answered.iter().filter(|a| a.time_s.is_some()).count(),
        });
        let mut metrics: Vec<(&str, bool, bool)> = vec![("multi-label", false, false)];
        if split.original.is_some() {
            metrics.push(("top1", true, false));
        }
        if p.kind == ParticipantKind::Human {
            metrics.push(("multi-label-imputed", false, true));
            if split.original.is_some() {
                metrics.push(("top1-imputed", true, true));
            }
        }
        for (metric, against_original, imputed) in metrics {
            for (subset, rows) in &subsets {
                let (mut c, mut t) = (0u64, 0u64);
                for &r in rows {
                    let Some(a) = answers[r] else { continue };
                    let label = if imputed { a.imputed() } else { a.label };
                    let hit = match (&split.original, against_original) {
                        (Some(o), true) => o[r] == label,
                        _ => split.gt[r].binary_search(&label).is_ok(),
                    };
                    t += 1;
                    c += u64::from(hit);
                }
                if t == 0 {
                    continue;
                }
                let ci = clopper_pearson(c, t, opts.alpha)?;
                out.rows.push(
                    ResultRow::new(&p.name, &split.name, metric, subset, c as f64 / t as f64)
                        .with_counts(c, t)
                        .with_ci(Some(ci)),
                );
            }
        }
    }
    let labelled: Vec<usize> = (0..keys.len()).filter(|&r| !split.gt[r].is_empty()).collect();
    let scope_multi = scope.iter().filter(|&&r| split.gt[r].len() >= 2).count();
    out.summary = Some(SplitSummary {
        name: split.name.clone(),
        images: keys.len(),
        labelled_images: labelled.len(),
        labelled_multi_label: labelled.iter().filter(|&&r| split.gt[r].len() >= 2).count(),
        scope_images: scope.len(),
        scope_multi_label: scope_multi,
        multi_label_share: if scope.is_empty() { 0.0 } else { scope_multi as f64 / scope.len() as f64 },
        fast_images: fast.len(),
        problematic_images: split.problematic.as_ref().map(|p| scope.iter().filter(|&&r| p[r]).count()),
        fast_threshold_s: opts.fast_threshold_s,
        median_times_s: medians.into_iter().flatten().collect(),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::LabelFormat;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn order(names: &[&str], original: Option<Vec<u32>>) -> ImageOrder {
        ImageOrder { names: names.iter().map(|s| s.to_string()).collect(), original, source: "test".into() }
    }

    fn sets(names: &[&str], sets: Vec<Vec<u32>>) -> LabelSets {
        LabelSets::new(
            Path::new("labels.json"),
            LabelFormat::GenericJson,
            names.iter().map(|s| s.to_string()).collect(),
            sets,
        )
        .unwrap()
    }

    fn human(name: &str, answers: &[(&str, u32, Option<u32>, Option<f64>)]) -> Participant {
        Participant {
            name: name.into(),
            kind: ParticipantKind::Human,
            path: PathBuf::from(format!("{name}.csv")),
            answers: answers
                .iter()
                .map(|&(k, l, a, t)| (k.to_string(), Answer { label: l, alternative: a, time_s: t }))
                .collect(),
        }
    }

    fn model(name: &str, answers: &[(&str, u32)]) -> Participant {
        Participant {
            name: name.into(),
            kind: ParticipantKind::Model,
            path: PathBuf::from(format!("{name}.npy")),
            answers: answers
                .iter()
                .map(|&(k, l)| (k.to_string(), Answer { label: l, alternative: None, time_s: None }))
                .collect(),
        }
    }

    fn counts(r: &SplitResult, who: &str, metric: &str, subset: &str) -> Option<(u64, u64)> {
        r.rows
            .iter()
            .find(|x| x.model == who && x.metric == metric && x.subset == subset)
            .map(|x| (x.correct.unwrap(), x.total.unwrap()))
    }

    #[test]
    fn csv_and_json_answers_join_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let c = ClassTable::imagenet();
        let p = write(
            dir.path(),
            "alice.csv",
            "image,label,alternative,time\nval/a.JPEG,n01440764,,12.5\nb.jpg,3,n01443537,\nc,7,,\n",
        );
        let a = load_answers(&p, c).unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(a.kind, ParticipantKind::Human);
        assert_eq!(a.answers["a"], Answer { label: 0, alternative: None, time_s: Some(12.5) });
        // n01443537 is class 1 (goldfish).
        assert_eq!(a.answers["b"], Answer { label: 3, alternative: Some(1), time_s: None });
        assert_eq!(a.answers["c"].label, 7);
        assert_eq!(a.alternatives(), 1);
        // TSV with the columns in another order.
        let p = write(dir.path(), "bob.tsv", "time\tlabel\timage\n3\t5\ta.png\n");
        let b = load_answers(&p, c).unwrap();
        assert_eq!(b.answers["a"], Answer { label: 5, alternative: None, time_s: Some(3.0) });
        // JSON object and array forms.
        let p = write(
            dir.path(),
            "carol.json",
            r#"{"a.jpg": 4, "b.jpg": {"label": "n01440764", "alternative": 2, "time": 70}}"#,
        );
        let j = load_answers(&p, c).unwrap();
        assert_eq!(j.answers["a"].label, 4);
        assert_eq!(j.answers["b"], Answer { label: 0, alternative: Some(2), time_s: Some(70.0) });
        let p = write(dir.path(), "dan.json", r#"[{"image": "x.jpeg", "label": "9", "time": null}]"#);
        assert_eq!(load_answers(&p, c).unwrap().answers["x"].label, 9);
    }

    #[test]
    fn answer_errors_name_file_and_place() {
        let dir = tempfile::tempdir().unwrap();
        let c = ClassTable::imagenet();
        let p = write(dir.path(), "e1.csv", "image,label\na,1\nb,1000\n");
        let e = load_answers(&p, c).unwrap_err().to_string();
        assert!(e.contains("e1.csv") && e.contains("line 3") && e.contains("label"), "{e}");
        let p = write(dir.path(), "e2.csv", "image,label\na.jpg,1\na.JPEG,2\n");
        let e = load_answers(&p, c).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("twice") && e.contains("line 2"), "{e}");
        let p = write(dir.path(), "e3.csv", "picture,label\na,1\n");
        let e = load_answers(&p, c).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("image column"), "{e}");
        let p = write(dir.path(), "e4.json", r#"{"a": {"label": 1, "time": -2}}"#);
        let e = load_answers(&p, c).unwrap_err().to_string();
        assert!(e.contains("key \"a\"") && e.contains("time"), "{e}");
        let p = write(dir.path(), "e5.csv", "image,label,time\na,1,slow\n");
        let e = load_answers(&p, c).unwrap_err().to_string();
        assert!(e.contains("line 2, column 3"), "{e}");
    }

    #[test]
    fn problematic_file_forms() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "p.txt", "# comment\nval/a.JPEG\nb.jpg,reason\n\n");
        let s = load_problematic(&p).unwrap();
        assert_eq!(s, HashSet::from(["a".to_string(), "b".to_string()]));
        let p = write(dir.path(), "p.json", r#"{"problematic_images": {"c.jpg": "ambiguous"}, "initial_annots": {}}"#);
        assert_eq!(load_problematic(&p).unwrap(), HashSet::from(["c".to_string()]));
        let p = write(dir.path(), "q.json", r#"["d.png"]"#);
        assert_eq!(load_problematic(&p).unwrap(), HashSet::from(["d".to_string()]));
    }

    #[test]
    fn median_rule() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5.0]), Some(5.0));
        assert_eq!(median(&mut [9.0, 1.0, 4.0]), Some(4.0));
        assert_eq!(median(&mut [70.0, 10.0, 50.0, 90.0]), Some(60.0));
    }

    /// Six images, two humans, one model; every number below is counted by hand.
    ///
    /// | image | labels | original | class group of original | problematic |
    /// |---|---|---|---|---|
    /// | i1 | {0} | 0 (tench, organism) | organism-without-dog | no |
    /// | i2 | {151, 152} | 151 (dog) | dog | no |
    /// | i3 | {500} | 500 (object) | object | yes |
    /// | i4 | {600, 601} | 600 (object) | object | no |
    /// | i5 | {} (no valid label: out of scope) | 1 | | no |
    /// | i6 | {700} | 700 (object) | object | no |
    ///
    /// h1: i1→0 (t 10), i2→152 (t 30), i3→501 alt 500 (t 100), i4→600 (t 20), i5→1 (t 5)
    /// h2: i1→1 alt 0 (t 50), i2→151 (t 90), i3→500 (t 40)            (i4, i6 not answered)
    /// m:  i1→0, i2→152, i3→500, i4→602, i5→1, i6→700
    ///
    /// Scope: labelled and answered by a human = i1, i2, i3, i4 (i5 empty, i6 unanswered).
    /// Medians: i1 (10,50)→30, i2 (30,90)→60, i3 (100,40)→70, i4 (20)→20; fast (<60) = i1, i4.
    #[test]
    fn hand_counted_tables() {
        let c = ClassTable::imagenet();
        let names = ["i1.jpg", "i2.jpg", "i3.jpg", "i4.jpg", "i5.jpg", "i6.jpg"];
        let o = order(&names, Some(vec![0, 151, 500, 600, 1, 700]));
        let l = sets(&names, vec![vec![0], vec![151, 152], vec![500], vec![600, 601], vec![], vec![700]]);
        let prob = HashSet::from(["i3".to_string()]);
        let split = Split::new("val", &o, &l, Some(&prob));
        let h1 = human(
            "h1",
            &[
                ("i1", 0, None, Some(10.0)),
                ("i2", 152, None, Some(30.0)),
                ("i3", 501, Some(500), Some(100.0)),
                ("i4", 600, None, Some(20.0)),
                ("i5", 1, None, Some(5.0)),
            ],
        );
        let h2 = human(
            "h2",
            &[("i1", 1, Some(0), Some(50.0)), ("i2", 151, None, Some(90.0)), ("i3", 500, None, Some(40.0))],
        );
        let m = model("m", &[("i1", 0), ("i2", 152), ("i3", 500), ("i4", 602), ("i5", 1), ("i6", 700)]);
        let r = evaluate_split(&split, &[h1, h2, m], c, &StudyOptions::default()).unwrap();
        let s = r.summary.as_ref().unwrap();
        assert_eq!((s.images, s.labelled_images, s.labelled_multi_label), (6, 5, 2));
        assert_eq!((s.scope_images, s.scope_multi_label), (4, 2));
        assert!((s.multi_label_share - 0.5).abs() < 1e-15);
        assert_eq!(s.fast_images, 2);
        assert_eq!(s.problematic_images, Some(1));
        assert_eq!(s.median_times_s, vec![30.0, 60.0, 70.0, 20.0]);

        // h1 on scope {i1..i4}: multi-label hits i1, i2 (152 ∈ {151,152}), i4 → 3/4;
        // top1 hits i1, i4 → 2/4; imputed: i3 becomes 500 → multi 4/4, top1 3/4.
        assert_eq!(counts(&r, "h1", "multi-label", "all"), Some((3, 4)));
        assert_eq!(counts(&r, "h1", "top1", "all"), Some((2, 4)));
        assert_eq!(counts(&r, "h1", "multi-label-imputed", "all"), Some((4, 4)));
        assert_eq!(counts(&r, "h1", "top1-imputed", "all"), Some((3, 4)));
        // h2 answered i1..i3: multi hits i2, i3 → 2/3; imputed i1 → 0: 3/3.
        assert_eq!(counts(&r, "h2", "multi-label", "all"), Some((2, 3)));
        assert_eq!(counts(&r, "h2", "top1", "all"), Some((2, 3)));
        assert_eq!(counts(&r, "h2", "multi-label-imputed", "all"), Some((3, 3)));
        // The model is scored over the scope only (not i5, i6): i1, i2, i3 hit, i4 (602) misses.
        assert_eq!(counts(&r, "m", "multi-label", "all"), Some((3, 4)));
        assert_eq!(counts(&r, "m", "top1", "all"), Some((2, 4)));
        assert_eq!(counts(&r, "m", "multi-label-imputed", "all"), None, "models have no imputed rows");
        // Groups: dog = i2; organism-without-dog = i1; object = i3, i4.
        assert_eq!(counts(&r, "h1", "multi-label", "group=dog"), Some((1, 1)));
        assert_eq!(counts(&r, "h1", "top1", "group=dog"), Some((0, 1)));
        assert_eq!(counts(&r, "h2", "multi-label", "group=organism-without-dog"), Some((0, 1)));
        assert_eq!(counts(&r, "h1", "multi-label", "group=object"), Some((1, 2)));
        assert_eq!(counts(&r, "m", "multi-label", "group=object"), Some((1, 2)));
        // Fast = i1, i4: h1 2/2, h2 answered only i1 (miss) 0/1, m 1/2.
        assert_eq!(counts(&r, "h1", "multi-label", "fast"), Some((2, 2)));
        assert_eq!(counts(&r, "h2", "multi-label", "fast"), Some((0, 1)));
        assert_eq!(counts(&r, "m", "multi-label", "fast"), Some((1, 2)));
        // Problematic = i3: h1 0/1 (1/1 imputed), rest: h1 3/3, m 2/3.
        assert_eq!(counts(&r, "h1", "multi-label", "problematic"), Some((0, 1)));
        assert_eq!(counts(&r, "h1", "multi-label-imputed", "problematic"), Some((1, 1)));
        assert_eq!(counts(&r, "h1", "multi-label", "non-problematic"), Some((3, 3)));
        assert_eq!(counts(&r, "m", "multi-label", "non-problematic"), Some((2, 3)));
        // One label = i1, i3; several = i2, i4.
        assert_eq!(counts(&r, "m", "multi-label", "labels=1"), Some((2, 2)));
        assert_eq!(counts(&r, "m", "multi-label", "labels>=2"), Some((1, 2)));
        assert_eq!(counts(&r, "m", "top1", "labels>=2"), Some((0, 2)));
        assert_eq!(counts(&r, "h2", "multi-label", "labels>=2"), Some((1, 1)));
        // Participant summaries.
        let ps: Vec<(&str, usize, usize, usize)> =
            r.participants.iter().map(|p| (p.name.as_str(), p.answered, p.alternatives, p.timed)).collect();
        assert_eq!(ps, vec![("h1", 4, 1, 4), ("h2", 3, 1, 3), ("m", 4, 0, 0)]);
        // Intervals: 2/2 has upper bound 1 and lower bound (alpha/2)^(1/2).
        let row = r.rows.iter().find(|x| x.model == "h1" && x.metric == "multi-label" && x.subset == "fast").unwrap();
        assert!((row.ci_low.unwrap() - 0.025f64.sqrt()).abs() < 1e-9, "{row:?}");
        assert_eq!(row.ci_high, Some(1.0));
    }

    #[test]
    fn without_humans_scope_is_every_labelled_image_and_names_must_differ() {
        let c = ClassTable::imagenet();
        let names = ["a", "b", "c"];
        let split = Split::new("v2", &order(&names, None), &sets(&names, vec![vec![1], vec![2, 3], vec![]]), None);
        let m = model("m", &[("a", 1), ("b", 4), ("c", 0)]);
        let r = evaluate_split(&split, std::slice::from_ref(&m), c, &StudyOptions::default()).unwrap();
        assert_eq!(counts(&r, "m", "multi-label", "all"), Some((1, 2)));
        assert_eq!(counts(&r, "m", "top1", "all"), None, "no original labels");
        assert!(r.notes.iter().any(|n| n.contains("no original labels")));
        let e = evaluate_split(&split, &[m.clone(), m], c, &StudyOptions::default()).unwrap_err().to_string();
        assert!(e.contains("two participants"), "{e}");
    }

    #[test]
    fn model_participant_is_the_top1_of_each_row() {
        let o = order(&["x.jpg", "y.jpg"], None);
        let preds = Predictions {
            path: PathBuf::from("m.npy"),
            model: "m".into(),
            data: PredictionData::TopK { k: 2, indices: vec![5, 6, 7, 8] },
            row_names: None,
        };
        let p = Participant::from_predictions(&preds, &o, 1000).unwrap();
        assert_eq!(p.answers["x"].label, 5);
        assert_eq!(p.answers["y"].label, 7);
        let short = order(&["x.jpg"], None);
        assert!(Participant::from_predictions(&preds, &short, 1000).is_err());
    }
}
