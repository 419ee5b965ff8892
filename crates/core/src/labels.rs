//! Ground-truth label sources, keyed by image id.
//!
//! Supported formats (detected from content, or forced with [`LabelFormat`]):
//!
//! | format | shape | image ids |
//! |---|---|---|
//! | [`LabelFormat::Real`] | JSON array of arrays of class indices | element `i` is `ILSVRC2012_val_{i+1:08}.JPEG` |
//! | [`LabelFormat::Inv2Ml`] | JSON object `{name: ["370", "359"]}` (indices as strings) | the keys |
//! | [`LabelFormat::Dataset`] | ImageNetV2 dataset JSON, `image_filenames` = `[[name, wnid], ...]` | the names |
//! | [`LabelFormat::GenericJson`] | JSON object `{name: [index or wnid, ...]}` (a single value is allowed) | the keys |
//! | [`LabelFormat::Delimited`] | CSV/TSV rows `name, label, label, ...` (index or wnid; a cell may hold several labels separated by spaces or `;`; repeated names are merged) | first column |
//! | [`LabelFormat::Expert`] | TFDS `imagenet2012_multilabel` v3 JSON (`initial_annots`, `problematic_images`, `imagenet_m`) | the keys of `initial_annots` |
//!
//! An empty label set means "no valid label": the image is left out of
//! multi-label metrics (ReaL semantics). Labels are stored sorted and without
//! duplicates.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::classes::ClassTable;
use crate::error::{Error, Result};
use crate::ids::{ilsvrc2012_val_name, join_key};

/// A label file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFormat {
    /// ImageNet-ReaL `real.json`.
    Real,
    /// INv2-ML json: `{name: ["index", ...]}`.
    Inv2Ml,
    /// ImageNetV2-style dataset json with `image_filenames` = `[[name, wnid], ...]` (single labels).
    Dataset,
    /// Generic JSON object `{name: [index|wnid, ...]}`.
    GenericJson,
    /// CSV/TSV rows `name, label, ...`.
    Delimited,
    /// Expert correct/wrong/unclear labels (TFDS `imagenet2012_multilabel` v3 schema).
    Expert,
}

impl LabelFormat {
    /// Every format, for help texts.
    pub const ALL: [LabelFormat; 6] = [
        LabelFormat::Real,
        LabelFormat::Inv2Ml,
        LabelFormat::Dataset,
        LabelFormat::GenericJson,
        LabelFormat::Delimited,
        LabelFormat::Expert,
    ];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            LabelFormat::Real => "real",
            LabelFormat::Inv2Ml => "inv2-ml",
            LabelFormat::Dataset => "dataset",
            LabelFormat::GenericJson => "json",
            LabelFormat::Delimited => "csv",
            LabelFormat::Expert => "expert",
        }
    }

    /// Parses a command-line name (`tsv` is accepted for `csv`).
    pub fn parse(s: &str) -> Option<LabelFormat> {
        if s == "tsv" {
            return Some(LabelFormat::Delimited);
        }
        LabelFormat::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// Multi-label (or single-label) ground truth: one sorted set of class indices per image.
#[derive(Debug, Clone)]
pub struct LabelSets {
    /// The file the labels came from.
    pub path: PathBuf,
    /// The format they were read as.
    pub format: LabelFormat,
    /// Image names as written in the file.
    pub names: Vec<String>,
    /// Label set of each image (same order as `names`).
    pub sets: Vec<Vec<u32>>,
    index: HashMap<String, usize>,
}

fn build_index(path: &Path, names: &[String]) -> Result<HashMap<String, usize>> {
    let mut index = HashMap::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        if let Some(prev) = index.insert(join_key(n).to_string(), i) {
            return Err(Error::format(
                path,
                format!("entry {}", i + 1),
                format!(
                    "image {:?} appears twice (first as entry {}, {:?}); every image id must be unique",
                    n,
                    prev + 1,
                    names[prev]
                ),
            ));
        }
    }
    Ok(index)
}

impl LabelSets {
    /// Builds label sets from (name, labels) pairs; labels are sorted and deduplicated.
    /// Two names with the same join key are an error naming both.
    pub fn new(path: &Path, format: LabelFormat, names: Vec<String>, mut sets: Vec<Vec<u32>>) -> Result<LabelSets> {
        for s in &mut sets {
            s.sort_unstable();
            s.dedup();
        }
        let index = build_index(path, &names)?;
        Ok(LabelSets { path: path.to_path_buf(), format, names, sets, index })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Position of an image by name (compared by [`join_key`]).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(join_key(name)).copied()
    }

    /// The label set of an image by name.
    pub fn get(&self, name: &str) -> Option<&[u32]> {
        self.position(name).map(|i| self.sets[i].as_slice())
    }

    /// Number of images whose set is empty.
    pub fn empty_count(&self) -> usize {
        self.sets.iter().filter(|s| s.is_empty()).count()
    }

    /// Serialises as ReaL-style JSON if the names are exactly the ILSVRC2012
    /// validation images `1..=n` in order, else as a generic JSON object.
    pub fn to_json(&self) -> String {
        let real_like = self.names.iter().enumerate().all(|(i, n)| join_key(n) == join_key(&ilsvrc2012_val_name(i)));
        let mut out = String::with_capacity(self.len() * 12);
        if real_like {
            out.push('[');
            for (i, s) in self.sets.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_list(&mut out, s);
            }
            out.push_str("]\n");
        } else {
            out.push('{');
            for (i, (n, s)) in self.names.iter().zip(&self.sets).enumerate() {
                if i > 0 {
                    out.push_str(",\n ");
                }
                out.push_str(&serde_json::to_string(n).unwrap_or_default());
                out.push_str(": ");
                push_list(&mut out, s);
            }
            out.push_str("}\n");
        }
        out
    }
}

fn push_list(out: &mut String, s: &[u32]) {
    out.push('[');
    for (j, c) in s.iter().enumerate() {
        if j > 0 {
            out.push_str(", ");
        }
        out.push_str(&c.to_string());
    }
    out.push(']');
}

/// Expert labels: for each image, the classes judged correct, wrong and unclear.
#[derive(Debug, Clone)]
pub struct ExpertLabels {
    /// The file the labels came from.
    pub path: PathBuf,
    /// Image names (keys of `initial_annots`).
    pub names: Vec<String>,
    /// Classes judged correct.
    pub correct: Vec<Vec<u32>>,
    /// Classes judged wrong.
    pub wrong: Vec<Vec<u32>>,
    /// Classes judged unclear.
    pub unclear: Vec<Vec<u32>>,
    /// Whether the image is listed in `problematic_images`.
    pub problematic: Vec<bool>,
    /// Whether the image is in the ImageNet-M subset (`imagenet_m`).
    pub imagenet_m: Vec<bool>,
    index: HashMap<String, usize>,
}

impl ExpertLabels {
    /// Number of annotated images.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no image is annotated.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Position of an image by name (compared by [`join_key`]).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(join_key(name)).copied()
    }

    /// The sets used as "acceptable" ground truth: `correct` (2020 strict) or
    /// `correct ∪ unclear` (2022).
    pub fn acceptable(&self, include_unclear: bool) -> Vec<Vec<u32>> {
        self.correct
            .iter()
            .zip(&self.unclear)
            .map(|(c, u)| {
                let mut s = c.clone();
                if include_unclear {
                    s.extend_from_slice(u);
                    s.sort_unstable();
                    s.dedup();
                }
                s
            })
            .collect()
    }

    /// The correct labels as plain label sets (problematic images get an empty set, i.e. are left out).
    pub fn as_label_sets(&self, include_unclear: bool) -> Result<LabelSets> {
        let mut sets = self.acceptable(include_unclear);
        for (s, &p) in sets.iter_mut().zip(&self.problematic) {
            if p {
                s.clear();
            }
        }
        LabelSets::new(&self.path, LabelFormat::Expert, self.names.clone(), sets)
    }
}

/// A loaded label source.
#[derive(Debug, Clone)]
pub enum LabelSource {
    /// Plain label sets.
    Sets(LabelSets),
    /// Expert correct/wrong/unclear labels.
    Expert(ExpertLabels),
}

impl LabelSource {
    /// The path it was read from.
    pub fn path(&self) -> &Path {
        match self {
            LabelSource::Sets(s) => &s.path,
            LabelSource::Expert(e) => &e.path,
        }
    }

    /// The format it was read as.
    pub fn format(&self) -> LabelFormat {
        match self {
            LabelSource::Sets(s) => s.format,
            LabelSource::Expert(_) => LabelFormat::Expert,
        }
    }

    /// The plain label sets (for expert labels: correct labels, problematic images emptied).
    pub fn to_sets(&self) -> Result<LabelSets> {
        match self {
            LabelSource::Sets(s) => Ok(s.clone()),
            LabelSource::Expert(e) => e.as_label_sets(false),
        }
    }
}

/// Reads a label file, detecting its format from content unless `format` is given.
pub fn load_labels(path: &Path, format: Option<LabelFormat>, classes: &ClassTable) -> Result<LabelSource> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::format(path, format!("byte {}", e.valid_up_to()), "expected UTF-8 text"))?;
    parse_labels(text, path, format, classes)
}

/// Parses label text (see [`load_labels`]); `path` is used for error messages.
pub fn parse_labels(text: &str, path: &Path, format: Option<LabelFormat>, classes: &ClassTable) -> Result<LabelSource> {
    let first = text.trim_start().chars().next();
    let Some(first) = first else {
        return Err(Error::format(path, "whole file", "the file is empty; expected labels"));
    };
    let wants_json = match format {
        Some(LabelFormat::Delimited) => false,
        Some(_) => true,
        None => first == '[' || first == '{',
    };
    if !wants_json {
        return parse_delimited(text, path, classes).map(LabelSource::Sets);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Error::format(path, format!("line {}, column {}", e.line(), e.column()), format!("invalid JSON: {e}"))
    })?;
    let detected = match (&value, format) {
        (_, Some(f)) => f,
        (Value::Array(_), None) => LabelFormat::Real,
        (Value::Object(o), None) => {
            if o.contains_key("initial_annots") {
                LabelFormat::Expert
            } else if o.contains_key("image_filenames") {
                LabelFormat::Dataset
            } else if o.values().all(|v| v.as_array().is_some_and(|a| a.iter().all(is_digit_string))) {
                LabelFormat::Inv2Ml
            } else {
                LabelFormat::GenericJson
            }
        }
        _ => return Err(Error::format(path, "top level", "expected a JSON array (ReaL) or object (other formats)")),
    };
    match detected {
        LabelFormat::Real => parse_real(&value, path, classes).map(LabelSource::Sets),
        LabelFormat::Dataset => parse_dataset(&value, path, classes).map(LabelSource::Sets),
        LabelFormat::Inv2Ml | LabelFormat::GenericJson => {
            parse_object(&value, path, detected, classes).map(LabelSource::Sets)
        }
        LabelFormat::Expert => parse_expert(&value, path, classes).map(LabelSource::Expert),
        LabelFormat::Delimited => unreachable!("handled above"),
    }
}

fn is_digit_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

fn class_range(classes: &ClassTable) -> String {
    format!("a class index 0..{} or a class id of the class table", classes.len().saturating_sub(1))
}

/// Resolves one JSON label value (number, digit string or wnid).
fn json_label(v: &Value, path: &Path, loc: impl FnOnce() -> String, classes: &ClassTable) -> Result<u32> {
    let resolved = match v {
        Value::Number(n) => n.as_u64().and_then(|i| usize::try_from(i).ok()).filter(|&i| i < classes.len()),
        Value::String(s) => classes.resolve(s),
        _ => None,
    };
    resolved.map(|i| i as u32).ok_or_else(|| {
        Error::format(path, loc(), format!("{v} is not a known class; expected {}", class_range(classes)))
    })
}

fn json_label_list(v: &Value, path: &Path, loc: &dyn Fn() -> String, classes: &ClassTable) -> Result<Vec<u32>> {
    match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(j, x)| json_label(x, path, || format!("{}, element {j}", loc()), classes))
            .collect(),
        Value::Null => Ok(vec![]),
        other => Ok(vec![json_label(other, path, loc, classes)?]),
    }
}

fn parse_real(value: &Value, path: &Path, classes: &ClassTable) -> Result<LabelSets> {
    let arr = value.as_array().ok_or_else(|| Error::format(path, "top level", "expected a JSON array of arrays"))?;
    if arr.is_empty() {
        return Err(Error::format(path, "top level", "the array is empty; expected one label list per image"));
    }
    let mut sets = Vec::with_capacity(arr.len());
    for (i, v) in arr.iter().enumerate() {
        let loc = || format!("element {i} ({})", ilsvrc2012_val_name(i));
        if !v.is_array() {
            return Err(Error::format(path, loc(), format!("expected an array of class indices, found {v}")));
        }
        sets.push(json_label_list(v, path, &loc, classes)?);
    }
    let names = (0..arr.len()).map(ilsvrc2012_val_name).collect();
    LabelSets::new(path, LabelFormat::Real, names, sets)
}

/// Reads the `image_filenames` list of an ImageNetV2-style dataset JSON:
/// (name, class index) pairs.
pub(crate) fn dataset_entries(value: &Value, path: &Path, classes: &ClassTable) -> Result<Vec<(String, u32)>> {
    let list = value
        .get("image_filenames")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::format(path, "key \"image_filenames\"", "expected an array of [name, wnid] pairs"))?;
    if list.is_empty() {
        return Err(Error::format(path, "key \"image_filenames\"", "the list is empty"));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let loc = || format!("image_filenames[{i}]");
        let pair = item.as_array().filter(|a| a.len() >= 2);
        let (Some(name), Some(label)) = (pair.and_then(|a| a[0].as_str()), pair.map(|a| &a[1])) else {
            return Err(Error::format(path, loc(), format!("expected a [name, wnid] pair, found {item}")));
        };
        let c = json_label(label, path, loc, classes)?;
        out.push((name.to_string(), c));
    }
    Ok(out)
}

fn parse_dataset(value: &Value, path: &Path, classes: &ClassTable) -> Result<LabelSets> {
    let entries = dataset_entries(value, path, classes)?;
    let (names, sets) = entries.into_iter().map(|(n, c)| (n, vec![c])).unzip();
    LabelSets::new(path, LabelFormat::Dataset, names, sets)
}

fn parse_object(value: &Value, path: &Path, format: LabelFormat, classes: &ClassTable) -> Result<LabelSets> {
    let obj =
        value.as_object().ok_or_else(|| Error::format(path, "top level", "expected a JSON object {name: [labels]}"))?;
    if obj.is_empty() {
        return Err(Error::format(path, "top level", "the object is empty; expected {name: [labels]}"));
    }
    let mut names = Vec::with_capacity(obj.len());
    let mut sets = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        let loc = || format!("key {k:?}");
        sets.push(json_label_list(v, path, &loc, classes)?);
        names.push(k.clone());
    }
    LabelSets::new(path, format, names, sets)
}

fn name_list(value: Option<&Value>, path: &Path, key: &str) -> Result<Vec<String>> {
    match value {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    Error::format(path, format!("{key}[{i}]"), format!("expected an image name, found {v}"))
                })
            })
            .collect(),
        Some(Value::Object(o)) => Ok(o.keys().cloned().collect()),
        Some(other) => {
            Err(Error::format(path, format!("key {key:?}"), format!("expected a list of image names, found {other}")))
        }
    }
}

fn parse_expert(value: &Value, path: &Path, classes: &ClassTable) -> Result<ExpertLabels> {
    let annots = value.get("initial_annots").and_then(Value::as_object).ok_or_else(|| {
        Error::format(path, "key \"initial_annots\"", "expected an object {name: {correct, wrong, unclear}}")
    })?;
    if annots.is_empty() {
        return Err(Error::format(path, "key \"initial_annots\"", "no annotated images"));
    }
    let mut names = Vec::with_capacity(annots.len());
    let (mut correct, mut wrong, mut unclear) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in annots {
        let obj = v.as_object().ok_or_else(|| {
            Error::format(
                path,
                format!("initial_annots key {k:?}"),
                "expected an object with correct/wrong/unclear lists",
            )
        })?;
        let get = |field: &str| -> Result<Vec<u32>> {
            let loc = || format!("initial_annots key {k:?}, field {field:?}");
            let mut s = json_label_list(obj.get(field).unwrap_or(&Value::Null), path, &loc, classes)?;
            s.sort_unstable();
            s.dedup();
            Ok(s)
        };
        correct.push(get("correct")?);
        wrong.push(get("wrong")?);
        unclear.push(get("unclear")?);
        names.push(k.clone());
    }
    let index = build_index(path, &names)?;
    let flags = |key: &str| -> Result<Vec<bool>> {
        let mut f = vec![false; names.len()];
        for (i, n) in name_list(value.get(key), path, key)?.iter().enumerate() {
            match index.get(join_key(n)) {
                Some(&p) => f[p] = true,
                None => {
                    return Err(Error::format(
                        path,
                        format!("{key}[{i}]"),
                        format!("image {n:?} is not a key of initial_annots"),
                    ))
                }
            }
        }
        Ok(f)
    };
    let problematic = flags("problematic_images")?;
    let imagenet_m = flags("imagenet_m")?;
    Ok(ExpertLabels { path: path.to_path_buf(), names, correct, wrong, unclear, problematic, imagenet_m, index })
}

/// Splits a delimited line; quotes are handled by the `csv` crate.
fn parse_delimited(text: &str, path: &Path, classes: &ClassTable) -> Result<LabelSets> {
    let first_line = text.lines().next().unwrap_or("");
    let delim = if first_line.contains('\t') { b'\t' } else { b',' };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delim)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut names: Vec<String> = Vec::new();
    let mut sets: Vec<Vec<u32>> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (row_no, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(row_no as u64 + 1);
            Error::format(path, format!("line {line}"), format!("malformed CSV: {e}"))
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(row_no as u64 + 1);
        let name = rec.get(0).unwrap_or("").trim();
        if name.is_empty() && rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        if name.is_empty() {
            return Err(Error::format(path, format!("line {line}, column 1"), "expected an image name"));
        }
        let mut labels = Vec::new();
        let mut header = false;
        for (col, cell) in rec.iter().enumerate().skip(1) {
            for tok in cell.split([' ', ';']).map(str::trim).filter(|t| !t.is_empty()) {
                match classes.resolve(tok) {
                    Some(c) => labels.push(c as u32),
                    None if names.is_empty() && sets.is_empty() && row_no == 0 => header = true,
                    None => {
                        return Err(Error::format(
                            path,
                            format!("line {line}, column {}", col + 1),
                            format!("{tok:?} is not a known class; expected {}", class_range(classes)),
                        ))
                    }
                }
            }
        }
        if header {
            continue;
        }
        match seen.get(join_key(name)) {
            Some(&p) => sets[p].extend(labels),
            None => {
                seen.insert(join_key(name).to_string(), names.len());
                names.push(name.to_string());
                sets.push(labels);
            }
        }
    }
    if names.is_empty() {
        return Err(Error::format(path, "whole file", "no label rows; expected lines `name, label, ...`"));
    }
    LabelSets::new(path, LabelFormat::Delimited, names, sets)
}

/// Rebuilds label sets from per-(image, class) rater scores, as ImageNet-ReaL
/// did: an image that has scores gets every class whose score is at least
/// `threshold`; an image that has no score keeps its original label from
/// `original` (an image list with original labels). The result follows the
/// order of `original`.
pub fn from_rater_scores(
    path: &Path,
    scores: &[(String, u32, f64)],
    threshold: f64,
    original: &[(String, u32)],
) -> Result<LabelSets> {
    let mut pos: HashMap<&str, usize> = HashMap::with_capacity(original.len());
    for (i, (n, _)) in original.iter().enumerate() {
        pos.insert(join_key(n), i);
    }
    let mut rated = vec![false; original.len()];
    let mut sets: Vec<Vec<u32>> = vec![Vec::new(); original.len()];
    for (row, (name, class, score)) in scores.iter().enumerate() {
        let Some(&i) = pos.get(join_key(name)) else {
            return Err(Error::format(path, format!("row {row}"), format!("image {name:?} is not in the image list")));
        };
        rated[i] = true;
        if *score >= threshold {
            sets[i].push(*class);
        }
    }
    for (i, (_, orig)) in original.iter().enumerate() {
        if !rated[i] {
            sets[i].push(*orig);
        }
    }
    let names = original.iter().map(|(n, _)| n.clone()).collect();
    LabelSets::new(path, LabelFormat::Real, names, sets)
}

impl LabelSets {
    /// The same labels with images sorted by name (byte order), as the
    /// ILSVRC2012 validation files are numbered.
    pub fn sorted_by_name(&self) -> Result<LabelSets> {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.sort_by(|&a, &b| self.names[a].cmp(&self.names[b]));
        let names = idx.iter().map(|&i| self.names[i].clone()).collect();
        let sets = idx.iter().map(|&i| self.sets[i].clone()).collect();
        LabelSets::new(&self.path, self.format, names, sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> &'static ClassTable {
        ClassTable::imagenet()
    }

    fn parse(text: &str) -> Result<LabelSource> {
        parse_labels(text, Path::new("labels.json"), None, t())
    }

    fn sets(text: &str) -> LabelSets {
        match parse(text).unwrap() {
            LabelSource::Sets(s) => s,
            LabelSource::Expert(_) => panic!("expected sets"),
        }
    }

    #[test]
    fn real_format() {
        let s = sets("[[], [970, 795], [230, 230]]");
        assert_eq!(s.format, LabelFormat::Real);
        assert_eq!(s.names[1], "ILSVRC2012_val_00000002.JPEG");
        assert_eq!(s.sets, vec![vec![], vec![795, 970], vec![230]]);
        assert_eq!(s.get("ILSVRC2012_val_00000002").unwrap(), &[795, 970]);
        assert_eq!(s.empty_count(), 1);
    }

    #[test]
    fn inv2_and_generic_and_dataset() {
        let s = sets(r#"{"a.jpeg": ["370", "359"], "b.jpeg": []}"#);
        assert_eq!(s.format, LabelFormat::Inv2Ml);
        assert_eq!(s.get("a").unwrap(), &[359, 370]);
        let s = sets(r#"{"a.jpg": ["n01440764", 3], "b.jpg": "n01443537"}"#);
        assert_eq!(s.format, LabelFormat::GenericJson);
        assert_eq!(s.get("a.jpg").unwrap(), &[0, 3]);
        assert_eq!(s.get("b.jpg").unwrap(), &[1]);
        let s = sets(r#"{"seed": 1, "image_filenames": [["x.JPEG", "n01440764"], ["y.JPEG", "n01443537"]]}"#);
        assert_eq!(s.format, LabelFormat::Dataset);
        assert_eq!(s.sets, vec![vec![0], vec![1]]);
    }

    #[test]
    fn delimited_with_header_and_long_format() {
        let text = "image,label\nx.jpg,3\nx.jpg,n01440764\ny.jpg,\"5 7\"\n";
        let s = match parse_labels(text, Path::new("l.csv"), None, t()).unwrap() {
            LabelSource::Sets(s) => s,
            _ => panic!(),
        };
        assert_eq!(s.format, LabelFormat::Delimited);
        assert_eq!(s.get("x").unwrap(), &[0, 3]);
        assert_eq!(s.get("y").unwrap(), &[5, 7]);
        let s = match parse_labels("a\t1\t2\nb\t999\n", Path::new("l.tsv"), None, t()).unwrap() {
            LabelSource::Sets(s) => s,
            _ => panic!(),
        };
        assert_eq!(s.sets, vec![vec![1, 2], vec![999]]);
    }

    #[test]
    fn errors_name_position() {
        let e = parse("[[1], [1000]]").unwrap_err().to_string();
        assert!(e.contains("labels.json") && e.contains("element 1") && e.contains("1000"), "{e}");
        let e = parse(r#"{"a.jpeg": ["n99999999"]}"#).unwrap_err().to_string();
        assert!(e.contains("key \"a.jpeg\"") && e.contains("n99999999"), "{e}");
        let e = parse("[[1], [2]").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("invalid JSON"), "{e}");
        let e = parse("   ").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = parse(r#"{"a.jpeg": [1], "a.png": [2]}"#).unwrap_err().to_string();
        assert!(e.contains("appears twice"), "{e}");
        let e = parse_labels("x.jpg,3\ny.jpg,abc\n", Path::new("l.csv"), None, t()).unwrap_err().to_string();
        assert!(e.contains("l.csv: line 2, column 2"), "{e}");
        let e = parse("[]").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn expert_schema() {
        let text = r#"{
          "initial_annots": {
            "ILSVRC2012_val_00000001.JPEG": {"correct": ["n01751748"], "wrong": ["n01443537"], "unclear": []},
            "ILSVRC2012_val_00000002.JPEG": {"correct": [], "wrong": [], "unclear": ["n01440764"]},
            "ILSVRC2012_val_00000003.JPEG": {"correct": ["n01440764", "n01443537"]}
          },
          "problematic_images": {"ILSVRC2012_val_00000002.JPEG": "ambiguous"},
          "imagenet_m": ["ILSVRC2012_val_00000003.JPEG"]
        }"#;
        let LabelSource::Expert(e) = parse(text).unwrap() else { panic!("expected expert") };
        assert_eq!(e.len(), 3);
        let p1 = e.position("ILSVRC2012_val_00000001").unwrap();
        assert_eq!(e.correct[p1], vec![65]); // n01751748 sea snake is class 65
        assert!(e.problematic[e.position("ILSVRC2012_val_00000002.JPEG").unwrap()]);
        assert!(e.imagenet_m[e.position("ILSVRC2012_val_00000003.JPEG").unwrap()]);
        let s = e.as_label_sets(true).unwrap();
        assert!(s.get("ILSVRC2012_val_00000002.JPEG").unwrap().is_empty(), "problematic images are left out");
        let bad = r#"{"initial_annots": {"a": {"correct": []}}, "imagenet_m": ["zzz"]}"#;
        let err = parse(bad).unwrap_err().to_string();
        assert!(err.contains("imagenet_m[0]") && err.contains("zzz"), "{err}");
    }

    #[test]
    fn rater_rebuild_and_json_roundtrip() {
        let orig =
            vec![("ILSVRC2012_val_00000002.JPEG".to_string(), 7), ("ILSVRC2012_val_00000001.JPEG".to_string(), 3)];
        let scores = vec![
            ("ILSVRC2012_val_00000002.JPEG".to_string(), 9, 0.8),
            ("ILSVRC2012_val_00000002.JPEG".to_string(), 7, 0.79),
            ("ILSVRC2012_val_00000002.JPEG".to_string(), 4, 1.0),
        ];
        let s = from_rater_scores(Path::new("r.npz"), &scores, 0.8, &orig).unwrap().sorted_by_name().unwrap();
        assert_eq!(s.sets, vec![vec![3], vec![4, 9]]);
        assert_eq!(s.to_json(), "[[3], [4, 9]]\n");
        let back = sets(&s.to_json());
        assert_eq!(back.sets, s.sets);
    }
}
