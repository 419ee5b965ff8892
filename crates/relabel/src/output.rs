//! Output files of the relabeling: TSV, JSON, dense and sparse arrays, statistics.
//!
//! Every writer is atomic (temporary file in the destination folder, then
//! rename; [`labelscope_core::atomic`]).
//!
//! # TSV (the published layout)
//! One line per image, no header, fields separated by one tab:
//! `filename<TAB>original index<TAB>idx,idx,...<TAB>p,p,...`, for example
//! `ILSVRC2012_val_00000001.JPEG<TAB>65<TAB>65,58<TAB>1.0000,0.6102`. Labels are sorted by
//! decreasing probability, ties by increasing index; probabilities are
//! written with 4 decimals (so values below 0.00005 are written `0.0000`).
//! An unknown original label is written `-1`. An image with no labels has
//! the last two fields empty (`name<TAB>65<TAB><TAB>`). File names must not
//! contain tabs or line breaks. Lines end with `\n`.
//!
//! [`read_tsv`] reads this layout back. Empty lines and a `\r` before the
//! line end are accepted; any other deviation (field count, numbers, a
//! probability outside `[0, 1]`, lists of different lengths, a repeated
//! class, a class outside `[0, C)` when `C` is given) is an
//! [`Error::Format`] naming the file and the line.
//!
//! # JSON
//! [`write_json`] writes `{"images": [JsonImage, ...]}`: per image the file
//! name, original label, image size, its proposals (`id` and the mask as a
//! COCO compressed RLE `{"size": [h, w], "counts": "..."}`) and its labels
//! (`class`, optional `name`, `p`, the ids of the proposals that gave the
//! value, and whether the original label / the global prediction gave it).
//!
//! # Soft-label arrays
//! [`write_dense_npy`]: `<f4` `[N, C]` `.npy`, row `i` = image `i`.
//! [`write_csr`]: CSR as three `.npy` files next to each other, for
//! `scipy.sparse.csr_matrix((values, indices, indptr), shape=(N, C))`:
//! `<prefix>.indptr.npy` (`<i8` `[N + 1]`), `<prefix>.indices.npy`
//! (`<i4` `[nnz]`, increasing within a row) and `<prefix>.values.npy`
//! (`<f4` `[nnz]`); entries with value 0 are left out.
//!
//! # Statistics
//! [`LabelStats::from_labels`]: a label counts when its value is `≥ tau`
//! (0.5 by default in the table); the share of images with k = 0, 1, 2, 3,
//! ≥ 4 such labels and the mean number per image.

use std::path::{Path, PathBuf};

use labelscope_core::atomic::write_atomic_with;
use labelscope_core::classes::ClassTable;
use labelscope_core::npy::header_bytes;
use labelscope_core::rle::{CocoRle, Rle};
use serde::{Deserialize, Serialize};

use crate::aggregate::Label;
use crate::error::{Error, Result};

/// One image's labels as written to / read from the TSV.
#[derive(Debug, Clone, PartialEq)]
pub struct TsvRecord {
    /// File name.
    pub filename: String,
    /// Original label (`None` = unknown, written `-1`).
    pub original: Option<u32>,
    /// `(class, probability)`; written sorted (see the module docs).
    pub labels: Vec<(u32, f32)>,
}

fn core_err(e: labelscope_core::Error) -> Error {
    Error::Core(e)
}

fn sorted(labels: &[(u32, f32)]) -> Vec<(u32, f32)> {
    let mut v = labels.to_vec();
    v.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    v
}

/// The TSV text of `records` (see the module docs).
pub fn format_tsv(records: &[TsvRecord]) -> Result<String> {
    let mut s = String::new();
    for (i, r) in records.iter().enumerate() {
        if r.filename.is_empty() || r.filename.contains(['\t', '\n', '\r']) {
            return Err(Error::Invalid(format!(
                "record {i}: file name {:?} is empty or holds a tab or line break",
                r.filename
            )));
        }
        for &(c, p) in &r.labels {
            if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
                return Err(Error::Invalid(format!("record {i} ({}): probability {p} of class {c}", r.filename)));
            }
        }
        let l = sorted(&r.labels);
        let idx: Vec<String> = l.iter().map(|e| e.0.to_string()).collect();
        let ps: Vec<String> = l.iter().map(|e| format!("{:.4}", e.1)).collect();
        let orig = r.original.map_or("-1".to_string(), |o| o.to_string());
        s.push_str(&format!("{}\t{orig}\t{}\t{}\n", r.filename, idx.join(","), ps.join(",")));
    }
    Ok(s)
}

/// Writes the TSV atomically.
pub fn write_tsv(path: &Path, records: &[TsvRecord]) -> Result<()> {
    let text = format_tsv(records)?;
    write_atomic_with(path, |w| w.write_all(text.as_bytes())).map_err(core_err)
}

/// Reads a TSV written by [`write_tsv`]; `classes` bounds the indices when given.
pub fn read_tsv(path: &Path, classes: Option<usize>) -> Result<Vec<TsvRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    parse_tsv(&text, path, classes)
}

/// Parses TSV text; `path` names the file in errors.
pub fn parse_tsv(text: &str, path: &Path, classes: Option<usize>) -> Result<Vec<TsvRecord>> {
    let mut out = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let bad =
            |m: String| Error::Format { path: path.to_path_buf(), location: format!("line {}", n + 1), message: m };
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 4 {
            return Err(bad(format!(
                "{} tab-separated fields; expected 4 (filename, original index, indices, probabilities)",
                f.len()
            )));
        }
        if f[0].is_empty() {
            return Err(bad("empty file name".into()));
        }
        let original = match f[1] {
            "-1" => None,
            s => {
                Some(s.parse::<u32>().map_err(|_| bad(format!("original index {s:?}: expected a class index or -1")))?)
            }
        };
        let list = |s: &str| -> Vec<String> {
            if s.is_empty() {
                Vec::new()
            } else {
                s.split(',').map(|x| x.to_string()).collect()
            }
        };
        let (ix, ps) = (list(f[2]), list(f[3]));
        if ix.len() != ps.len() {
            return Err(bad(format!("{} class indices but {} probabilities", ix.len(), ps.len())));
        }
        let mut labels = Vec::with_capacity(ix.len());
        for (k, (i, p)) in ix.iter().zip(&ps).enumerate() {
            let c: u32 = i.parse().map_err(|_| bad(format!("class index {} ({i:?}): expected an integer", k + 1)))?;
            if let Some(nc) = classes {
                if c as usize >= nc {
                    return Err(bad(format!("class index {c} outside [0, {nc})")));
                }
            }
            let v: f32 = p.parse().map_err(|_| bad(format!("probability {} ({p:?}): expected a number", k + 1)))?;
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(bad(format!("probability {p} of class {c}: expected a value in [0, 1]")));
            }
            if labels.iter().any(|e: &(u32, f32)| e.0 == c) {
                return Err(bad(format!("class {c} listed twice")));
            }
            labels.push((c, v));
        }
        if let (Some(o), Some(nc)) = (original, classes) {
            if o as usize >= nc {
                return Err(bad(format!("original index {o} outside [0, {nc})")));
            }
        }
        out.push(TsvRecord { filename: f[0].to_string(), original, labels });
    }
    Ok(out)
}

/// A proposal of the JSON output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonProposal {
    /// Proposal id (as referenced by [`JsonLabel::proposals`]).
    pub id: usize,
    /// The mask, COCO compressed RLE.
    pub mask: CocoRle,
}

/// A label of the JSON output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonLabel {
    /// Class index.
    pub class: u32,
    /// Class name, when a class table was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Label value.
    pub p: f32,
    /// Ids of the proposals that gave the value.
    pub proposals: Vec<usize>,
    /// The original label gave the value.
    pub original: bool,
    /// The global prediction gave the value.
    pub global: bool,
}

/// One image of the JSON output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonImage {
    /// File name.
    pub file: String,
    /// Original label.
    pub original: Option<u32>,
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Proposals.
    pub proposals: Vec<JsonProposal>,
    /// Labels (decreasing value, ties by class).
    pub labels: Vec<JsonLabel>,
}

/// The whole JSON file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonOutput {
    /// Images.
    pub images: Vec<JsonImage>,
}

/// Builds a [`JsonImage`] from aggregated `labels` whose proposal indices
/// refer to `masks` (index `k` gets the id `ids[k]`, or `k` without `ids`).
pub fn json_image(
    file: &str,
    original: Option<u32>,
    (width, height): (usize, usize),
    masks: &[Rle],
    ids: Option<&[usize]>,
    labels: &[Label],
    classes: Option<&ClassTable>,
) -> Result<JsonImage> {
    if let Some(ids) = ids {
        if ids.len() != masks.len() {
            return Err(Error::Mismatch(format!("{file}: {} proposal ids for {} masks", ids.len(), masks.len())));
        }
    }
    let id = |k: usize| ids.map_or(k, |v| v[k]);
    let mut proposals = Vec::with_capacity(masks.len());
    for (k, m) in masks.iter().enumerate() {
        if m.width != width || m.height != height {
            return Err(Error::Mismatch(format!(
                "{file}: proposal {k} mask is {}x{}; the image is {width}x{height}",
                m.width, m.height
            )));
        }
        proposals.push(JsonProposal { id: id(k), mask: m.to_coco() });
    }
    let mut out = Vec::with_capacity(labels.len());
    for l in labels {
        if let Some(&k) = l.proposals.iter().find(|&&k| k >= masks.len()) {
            return Err(Error::Mismatch(format!(
                "{file}: label {} refers to proposal {k}, but there are {} masks",
                l.class,
                masks.len()
            )));
        }
        let name = match classes {
            Some(t) => Some(
                t.get(l.class as usize)
                    .ok_or_else(|| Error::Invalid(format!("{file}: class {} not in the class table", l.class)))?
                    .name()
                    .to_string(),
            ),
            None => None,
        };
        out.push(JsonLabel {
            class: l.class,
            name,
            p: l.value,
            proposals: l.proposals.iter().map(|&k| id(k)).collect(),
            original: l.original,
            global: l.global,
        });
    }
    Ok(JsonImage { file: file.to_string(), original, width, height, proposals, labels: out })
}

/// Writes the JSON output atomically.
pub fn write_json(path: &Path, images: &[JsonImage]) -> Result<()> {
    #[derive(Serialize)]
    struct Out<'a> {
        images: &'a [JsonImage],
    }
    let text = serde_json::to_string(&Out { images })
        .map_err(|e| Error::Invalid(format!("{}: cannot serialise: {e}", path.display())))?;
    write_atomic_with(path, |w| w.write_all(text.as_bytes())).map_err(core_err)
}

/// Reads a JSON output file back.
pub fn read_json(path: &Path) -> Result<JsonOutput> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        location: format!("line {}, column {}", e.line(), e.column()),
        message: e.to_string(),
    })
}

fn check_rows(rows: &[Vec<(u32, f32)>], classes: usize) -> Result<()> {
    for (i, r) in rows.iter().enumerate() {
        for &(c, v) in r {
            if c as usize >= classes {
                return Err(Error::Invalid(format!("image {i}: class {c} outside [0, {classes})")));
            }
            if !v.is_finite() {
                return Err(Error::Invalid(format!("image {i}: value {v} of class {c}")));
            }
        }
    }
    Ok(())
}

fn write_npy<T: Copy>(path: &Path, descr: &str, shape: &[usize], data: &[T], le: impl Fn(T) -> Vec<u8>) -> Result<()> {
    write_atomic_with(path, |w| {
        w.write_all(&header_bytes(descr, shape))?;
        let mut buf = Vec::with_capacity(1 << 16);
        for &x in data {
            buf.extend_from_slice(&le(x));
            if buf.len() >= 1 << 16 {
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        w.write_all(&buf)
    })
    .map_err(core_err)
}

/// Writes the dense `<f4` `[N, C]` soft-label matrix (a class listed twice in a row keeps its largest value).
pub fn write_dense_npy(path: &Path, rows: &[Vec<(u32, f32)>], classes: usize) -> Result<()> {
    check_rows(rows, classes)?;
    let mut data = vec![0.0f32; rows.len() * classes];
    for (i, r) in rows.iter().enumerate() {
        for &(c, v) in r {
            let d = &mut data[i * classes + c as usize];
            *d = d.max(v);
        }
    }
    write_npy(path, "<f4", &[rows.len(), classes], &data, |x: f32| x.to_le_bytes().to_vec())
}

/// The three paths written by [`write_csr`] for `prefix`: indptr, indices, values.
pub fn csr_paths(prefix: &Path) -> [PathBuf; 3] {
    let with = |s: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(s);
        PathBuf::from(p)
    };
    [with(".indptr.npy"), with(".indices.npy"), with(".values.npy")]
}

/// Writes the CSR soft-label files (see the module docs); returns their paths.
pub fn write_csr(prefix: &Path, rows: &[Vec<(u32, f32)>], classes: usize) -> Result<[PathBuf; 3]> {
    check_rows(rows, classes)?;
    let mut indptr: Vec<i64> = Vec::with_capacity(rows.len() + 1);
    let mut indices: Vec<i32> = Vec::new();
    let mut values: Vec<f32> = Vec::new();
    indptr.push(0);
    for r in rows {
        let mut r: Vec<(u32, f32)> = r.iter().copied().filter(|e| e.1 != 0.0).collect();
        r.sort_by(|x, y| x.0.cmp(&y.0).then(y.1.total_cmp(&x.1)));
        r.dedup_by_key(|e| e.0);
        for (c, v) in r {
            indices.push(c as i32);
            values.push(v);
        }
        indptr.push(indices.len() as i64);
    }
    let paths = csr_paths(prefix);
    write_npy(&paths[0], "<i8", &[indptr.len()], &indptr, |x: i64| x.to_le_bytes().to_vec())?;
    write_npy(&paths[1], "<i4", &[indices.len()], &indices, |x: i32| x.to_le_bytes().to_vec())?;
    write_npy(&paths[2], "<f4", &[values.len()], &values, |x: f32| x.to_le_bytes().to_vec())?;
    Ok(paths)
}

/// Label-count statistics (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelStats {
    /// The threshold used.
    pub tau: f32,
    /// Number of images.
    pub images: u64,
    /// Images with 0, 1, 2, 3 and ≥ 4 labels.
    pub counts: [u64; 5],
    /// Mean number of labels per image (0 for no images).
    pub mean: f64,
}

impl LabelStats {
    /// Counts labels with value `≥ tau` in each image (a class listed twice counts once).
    pub fn from_labels(rows: &[Vec<(u32, f32)>], tau: f32) -> LabelStats {
        let mut counts = [0u64; 5];
        let mut total = 0u64;
        for r in rows {
            let mut cls: Vec<u32> = r.iter().filter(|e| e.1 >= tau).map(|e| e.0).collect();
            cls.sort_unstable();
            cls.dedup();
            counts[cls.len().min(4)] += 1;
            total += cls.len() as u64;
        }
        let images = rows.len() as u64;
        let mean = if images == 0 { 0.0 } else { total as f64 / images as f64 };
        LabelStats { tau, images, counts, mean }
    }

    /// The share of images in each of the five groups (0 for no images).
    pub fn shares(&self) -> [f64; 5] {
        self.counts.map(|c| if self.images == 0 { 0.0 } else { c as f64 / self.images as f64 })
    }

    /// A Markdown table: one row per group with count and percentage, then the mean.
    pub fn to_table(&self) -> String {
        let names = ["0", "1", "2", "3", ">=4"];
        let mut s = format!("labels per image (p >= {}) | images | share\n---|---:|---:\n", self.tau);
        for (k, (n, sh)) in self.counts.iter().zip(self.shares()).enumerate() {
            s.push_str(&format!("{} | {n} | {:.2}%\n", names[k], 100.0 * sh));
        }
        s.push_str(&format!("mean | {:.4} | ({} images)\n", self.mean, self.images));
        s
    }
}
