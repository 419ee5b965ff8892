//! Prediction files: top-k class indices or score matrices of one model.
//!
//! # Formats (chosen by file extension)
//! * `.npy` — one array (see [`crate::npy`]);
//! * `.npz` and `.safetensors` — the array named by
//!   [`PredictionOptions::array`]; else the only array; else the first of
//!   [`PREFERRED_ARRAY_NAMES`] present;
//! * `.csv` (comma), `.tsv` (tab), `.txt` (tab or comma if the first line holds
//!   one, else runs of whitespace) — one row per image, see below.
//!
//! # Kind
//! Integer arrays are top-k class indices, best first: shape `[N, k]`, or `[N]`
//! for top-1. Float arrays are scores (logits or probabilities), shape
//! `[N, C]` with `C` the number of classes. [`PredictionOptions::kind`]
//! overrides this; forcing top-k on float data requires every value to be a
//! whole number. Indices must be non-negative; scores must be finite (no NaN,
//! no infinity). Scores in `f64`, `f16` or `bf16` are converted to `f32`;
//! little-endian `f32` arrays are used in place from a memory map.
//!
//! # Delimited text
//! * An optional header line is recognised when its first cell is empty or
//!   any of its other cells is not a number.
//! * When the first cell of the first data line is not a number, the first
//!   column holds image names ([`Predictions::row_names`]).
//! * The remaining cells are the predictions: when every one of them is written
//!   as an integer (no decimal point, no exponent), the file holds top-k
//!   indices, otherwise scores.
//! * Blank lines and lines starting with `#` are skipped. Every data line must
//!   have as many cells as the first; empty or unparsable cells are errors
//!   that name the line and the (1-based) column.
//!
//! # Row and column numbers
//! Errors about array elements name the row and column counted from 0, as in
//! NumPy (`a[row, column]`); errors about text files name the line and the
//! column counted from 1, as in an editor.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::npy::{self, F32Values, NpyArray, Npz, SafeTensors};

/// Array names tried, in order, when an `.npz` or `.safetensors` file holds
/// several arrays and none was chosen.
pub const PREFERRED_ARRAY_NAMES: &[&str] =
    &["scores", "logits", "probs", "probabilities", "predictions", "preds", "topk", "top5"];

/// File extensions [`Predictions::load`] reads.
pub const SUPPORTED_EXTENSIONS: &[&str] = &["npy", "npz", "safetensors", "csv", "tsv", "txt"];

/// File extensions [`discover`] picks up in a directory (`.txt` is left out:
/// directories often hold unrelated text files).
pub const DIRECTORY_EXTENSIONS: &[&str] = &["npy", "npz", "safetensors", "csv", "tsv"];

/// What a prediction file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PredictionKind {
    /// Class indices, best first.
    TopK,
    /// One score per class.
    Scores,
}

impl PredictionKind {
    /// The name used on the command line: `topk` or `scores`.
    pub fn name(self) -> &'static str {
        match self {
            PredictionKind::TopK => "topk",
            PredictionKind::Scores => "scores",
        }
    }

    /// Parses `topk` (also `top-k`, `indices`) or `scores` (also `logits`, `probs`).
    pub fn parse(s: &str) -> Option<PredictionKind> {
        match s.to_ascii_lowercase().as_str() {
            "topk" | "top-k" | "top_k" | "indices" => Some(PredictionKind::TopK),
            "scores" | "logits" | "probs" | "probabilities" => Some(PredictionKind::Scores),
            _ => None,
        }
    }
}

/// Options for [`Predictions::load`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PredictionOptions {
    /// The array to read from an `.npz` or `.safetensors` file (ignored for other formats).
    pub array: Option<String>,
    /// Overrides the kind inferred from the element type.
    pub kind: Option<PredictionKind>,
}

/// A row-major `rows × cols` matrix of `f32` scores, owned or viewed in place
/// in a memory-mapped file.
#[derive(Debug, Clone)]
pub struct ScoreMatrix {
    rows: usize,
    cols: usize,
    values: F32Values,
}

impl ScoreMatrix {
    /// A matrix over `data` (row-major).
    ///
    /// # Panics
    /// If `data.len() != rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(Some(data.len()), rows.checked_mul(cols), "ScoreMatrix::from_vec: data length must be rows * cols");
        ScoreMatrix { rows, cols, values: F32Values::from_vec(data) }
    }

    /// A matrix over values held elsewhere (no copy), e.g. a numpy array
    /// kept alive by `holder`.
    ///
    /// # Panics
    /// If the holder's length is not `rows * cols`.
    pub fn from_external(rows: usize, cols: usize, holder: std::sync::Arc<dyn AsRef<[f32]> + Send + Sync>) -> Self {
        let values = F32Values::from_external(holder);
        assert_eq!(
            Some(values.len()),
            rows.checked_mul(cols),
            "ScoreMatrix::from_external: length must be rows * cols"
        );
        ScoreMatrix { rows, cols, values }
    }

    fn from_values(rows: usize, cols: usize, values: F32Values) -> Self {
        debug_assert_eq!(values.len(), rows * cols);
        ScoreMatrix { rows, cols, values }
    }

    /// Number of rows (images).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (classes).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        self.values.as_slice()
    }

    /// Row `i`.
    ///
    /// # Panics
    /// If `i >= self.rows()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.as_slice()[i * self.cols..(i + 1) * self.cols]
    }

    /// Whether the values are read in place from a memory-mapped file.
    pub fn is_memory_mapped(&self) -> bool {
        self.values.is_memory_mapped()
    }
}

/// The content of a prediction file.
#[derive(Debug, Clone)]
pub enum PredictionData {
    /// Top-k class indices, best first.
    TopK {
        /// Indices per row (`k >= 1`).
        k: usize,
        /// Row-major `[rows, k]`.
        indices: Vec<u32>,
    },
    /// One score per class.
    Scores(ScoreMatrix),
}

impl PredictionData {
    /// Number of rows (images).
    pub fn rows(&self) -> usize {
        match self {
            PredictionData::TopK { k, indices } => indices.len().checked_div(*k).unwrap_or(0),
            PredictionData::Scores(m) => m.rows(),
        }
    }

    /// The kind of data.
    pub fn kind(&self) -> PredictionKind {
        match self {
            PredictionData::TopK { .. } => PredictionKind::TopK,
            PredictionData::Scores(_) => PredictionKind::Scores,
        }
    }
}

/// The predictions of one model, loaded from one file.
#[derive(Debug, Clone)]
pub struct Predictions {
    /// The file read.
    pub path: PathBuf,
    /// The model name: the file stem (`resnet50` for `preds/resnet50.npy`).
    pub model: String,
    /// Indices or scores.
    pub data: PredictionData,
    /// Image names from the first column of a delimited text file, one per row.
    pub row_names: Option<Vec<String>>,
}

/// The location of an element: `row r, column c`, inside `what` when given.
fn elem_loc(what: &str, row: usize, col: usize) -> String {
    if what.is_empty() {
        format!("row {row}, column {col}")
    } else {
        format!("{what}, row {row}, column {col}")
    }
}

fn or_data(what: &str) -> String {
    if what.is_empty() {
        "data".into()
    } else {
        what.into()
    }
}

enum Format {
    Npy,
    Npz,
    SafeTensors,
    Text(Option<u8>),
}

fn format_of(path: &Path) -> Result<Format> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    Ok(match ext.as_str() {
        "npy" => Format::Npy,
        "npz" => Format::Npz,
        "safetensors" => Format::SafeTensors,
        "csv" => Format::Text(Some(b',')),
        "tsv" => Format::Text(Some(b'\t')),
        "txt" => Format::Text(None),
        _ => {
            return Err(Error::Invalid(format!(
                "{}: unknown prediction file type {:?}; supported extensions: {}",
                path.display(),
                ext,
                SUPPORTED_EXTENSIONS.iter().map(|e| format!(".{e}")).collect::<Vec<_>>().join(", ")
            )))
        }
    })
}

impl Predictions {
    /// Reads a prediction file (see the module documentation for formats and rules).
    pub fn load(path: &Path, opts: &PredictionOptions) -> Result<Predictions> {
        let (data, row_names) = match format_of(path)? {
            Format::Npy => (from_array(npy::read_npy(path)?, path, "", opts.kind)?, None),
            Format::Npz => {
                let mut npz = Npz::open(path)?;
                let name = npy::choose_array(&npz.names(), opts.array.as_deref(), PREFERRED_ARRAY_NAMES, path)?;
                let array = npz.read(&name)?;
                (from_array(array, path, &format!("array {name:?}"), opts.kind)?, None)
            }
            Format::SafeTensors => {
                let st = SafeTensors::open(path)?;
                let name = npy::choose_array(&st.names(), opts.array.as_deref(), PREFERRED_ARRAY_NAMES, path)?;
                let array = st.read(&name)?;
                (from_array(array, path, &format!("tensor {name:?}"), opts.kind)?, None)
            }
            Format::Text(delimiter) => read_text(path, delimiter, opts.kind)?,
        };
        let model = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Predictions { path: path.to_path_buf(), model, data, row_names })
    }

    /// Number of rows (images).
    pub fn rows(&self) -> usize {
        self.data.rows()
    }

    /// Checks the predictions against a class table of `n_classes` classes:
    /// every top-k index must be below `n_classes`, and a score matrix must
    /// have exactly `n_classes` columns.
    pub fn validate_classes(&self, n_classes: usize) -> Result<()> {
        match &self.data {
            PredictionData::TopK { k, indices } => {
                let k = (*k).max(1);
                let bad = indices.par_iter().filter(|&&i| i as usize >= n_classes).count();
                let Some(first) = indices.iter().position(|&i| i as usize >= n_classes) else {
                    return Ok(());
                };
                let (row, col) = (first / k, first % k);
                let image = match self.row_names.as_ref().and_then(|n| n.get(row)) {
                    Some(name) => format!(" (image {name:?})"),
                    None => String::new(),
                };
                Err(Error::format(
                    &self.path,
                    format!("row {row}, column {col}"),
                    format!(
                        "class index {} is out of range: the class table has {n_classes} classes (indices 0..{n_classes}){image}; \
                         {bad} index(es) out of range in total (rows and columns count from 0)",
                        indices[first]
                    ),
                ))
            }
            PredictionData::Scores(m) => {
                if m.cols() == n_classes {
                    Ok(())
                } else {
                    Err(Error::Mismatch(format!(
                        "{}: the score matrix has {} columns, but the class table has {n_classes} classes",
                        self.path.display(),
                        m.cols()
                    )))
                }
            }
        }
    }
}

/// Turns an array into prediction data (kind inference, shape and value checks).
fn from_array(array: NpyArray, path: &Path, what: &str, kind: Option<PredictionKind>) -> Result<PredictionData> {
    let dtype = array.dtype;
    if dtype.is_string() || dtype == npy::DType::Bool {
        return Err(Error::format(
            path,
            or_data(what),
            format!("found an array of {dtype}; expected integer class indices or float scores"),
        ));
    }
    let kind = kind.unwrap_or(if dtype.is_integer() { PredictionKind::TopK } else { PredictionKind::Scores });
    let shape = array.shape().to_vec();
    match kind {
        PredictionKind::TopK => {
            let (rows, k) = match shape[..] {
                [n] => (n, 1),
                [n, k] => (n, k),
                _ => {
                    return Err(Error::format(
                        path,
                        or_data(what),
                        format!("found shape {shape:?}; top-k indices need shape [rows, k] (or [rows] for top-1)"),
                    ))
                }
            };
            check_not_empty(rows, k, &shape, path, what)?;
            let indices = if dtype.is_integer() {
                let values = array.to_i64_vec(path, what)?;
                let mut out = Vec::with_capacity(values.len());
                for (i, v) in values.into_iter().enumerate() {
                    out.push(index_from_i64(v).map_err(|m| Error::format(path, elem_loc(what, i / k, i % k), m))?);
                }
                out
            } else {
                let values = array.to_f64_vec(path, what)?;
                let mut out = Vec::with_capacity(values.len());
                for (i, v) in values.into_iter().enumerate() {
                    out.push(index_from_f64(v).map_err(|m| Error::format(path, elem_loc(what, i / k, i % k), m))?);
                }
                out
            };
            Ok(PredictionData::TopK { k, indices })
        }
        PredictionKind::Scores => {
            let [rows, cols] = shape[..] else {
                let hint = if shape.len() == 1 && dtype.is_integer() {
                    "; a 1-D integer array holds top-1 indices (use the top-k kind)"
                } else {
                    ""
                };
                return Err(Error::format(
                    path,
                    or_data(what),
                    format!("found shape {shape:?}; scores need shape [rows, classes]{hint}"),
                ));
            };
            check_not_empty(rows, cols, &shape, path, what)?;
            let values = array.into_f32_values(path, what)?;
            check_finite(values.as_slice(), |first, count| {
                Error::format(
                    path,
                    elem_loc(what, first / cols, first % cols),
                    format!(
                        "found {}; scores must be finite, and {count} value(s) are NaN or infinite in total",
                        values.as_slice()[first]
                    ),
                )
            })?;
            Ok(PredictionData::Scores(ScoreMatrix::from_values(rows, cols, values)))
        }
    }
}

fn check_not_empty(rows: usize, cols: usize, shape: &[usize], path: &Path, what: &str) -> Result<()> {
    if rows == 0 {
        return Err(Error::format(path, or_data(what), format!("no prediction rows (shape {shape:?})")));
    }
    if cols == 0 {
        return Err(Error::format(path, or_data(what), format!("no prediction columns (shape {shape:?})")));
    }
    Ok(())
}

fn index_from_i64(v: i64) -> std::result::Result<u32, String> {
    if v < 0 {
        return Err(format!("found class index {v}; expected a non-negative index"));
    }
    u32::try_from(v).map_err(|_| format!("found class index {v}; expected an index below {}", u64::from(u32::MAX) + 1))
}

fn index_from_f64(v: f64) -> std::result::Result<u32, String> {
    if !v.is_finite() || v.fract() != 0.0 {
        return Err(format!("found {v}; top-k class indices must be whole numbers"));
    }
    if v < 0.0 {
        return Err(format!("found class index {v}; expected a non-negative index"));
    }
    if v > f64::from(u32::MAX) {
        return Err(format!("found class index {v}; expected an index below {}", u64::from(u32::MAX) + 1));
    }
    Ok(v as u32)
}

/// Fails with `error(first_position, count)` when `values` holds NaN or infinities.
fn check_finite(values: &[f32], error: impl FnOnce(usize, usize) -> Error) -> Result<()> {
    match find_non_finite(values) {
        None => Ok(()),
        Some((first, count)) => Err(error(first, count)),
    }
}

/// The position of the first NaN or infinity in `values` and how many there
/// are; `None` when every value is finite.
///
/// Counting is branch-free and vectorises; above a few million values it runs
/// in parallel chunks (below that, waking the thread pool costs more than it
/// saves, e.g. for one batch of a validation loop). The position is only
/// searched for on failure.
pub fn find_non_finite(values: &[f32]) -> Option<(usize, usize)> {
    const CHUNK: usize = 1 << 16;
    let count: usize = if values.len() <= 32 * CHUNK {
        values.chunks(CHUNK).map(count_non_finite).sum()
    } else {
        values.par_chunks(CHUNK).map(count_non_finite).sum()
    };
    if count == 0 {
        return None;
    }
    Some((values.iter().position(|x| !x.is_finite()).unwrap_or(0), count))
}

/// NaNs and infinities in at most 2³² values: with AVX2 where present.
fn count_non_finite(values: &[f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { count_non_finite_avx2(values) };
        }
    }
    count_non_finite_body(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn count_non_finite_avx2(values: &[f32]) -> usize {
    count_non_finite_body(values)
}

#[inline(always)]
fn count_non_finite_body(values: &[f32]) -> usize {
    values.iter().map(|&x| non_finite_bit(x)).sum::<u32>() as usize
}

/// 1 for a NaN or an infinity, else 0, branch-free: the exponent bits are all
/// ones exactly when the magnitude's bits exceed those of the largest finite
/// value. The signed 32-bit compare vectorises even on baseline SSE2, so
/// counting loops built on it do too.
#[inline(always)]
pub(crate) fn non_finite_bit(x: f32) -> u32 {
    u32::from((x.to_bits() & 0x7fff_ffff) as i32 > 0x7f7f_ffff)
}

// ---------------------------------------------------------------------------
// Delimited text
// ---------------------------------------------------------------------------

enum TextValues {
    Ints(Vec<i64>),
    Floats(Vec<f32>),
}

/// Accumulates rows of a delimited text file.
struct TextSink<'a> {
    path: &'a Path,
    seen_first: bool,
    /// Number of cells per data row (names included), set by the first data row.
    width: Option<(usize, u64)>,
    has_names: bool,
    names: Vec<String>,
    values: TextValues,
    lines: Vec<u64>,
    /// First non-finite value (line, column) and their count.
    non_finite: (Option<(u64, usize, f64)>, usize),
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

impl TextSink<'_> {
    fn push(&mut self, line: u64, cells: &mut [&str]) -> Result<()> {
        if !self.seen_first {
            self.seen_first = true;
            if let Some(first) = cells.first_mut() {
                *first = first.trim_start_matches('\u{feff}').trim();
            }
            let header = match &*cells {
                [] => false,
                [only] => !only.is_empty() && !is_number(only),
                [first, rest @ ..] => first.is_empty() || rest.iter().any(|c| !c.is_empty() && !is_number(c)),
            };
            if header {
                return Ok(());
            }
        }
        let (width, first_line) = match self.width {
            Some(w) => w,
            None => {
                self.has_names = cells.first().is_some_and(|c| !is_number(c));
                if cells.len() <= usize::from(self.has_names) {
                    return Err(Error::format(
                        self.path,
                        format!("line {line}"),
                        "found no prediction values; expected class indices or scores after the image name",
                    ));
                }
                self.width = Some((cells.len(), line));
                (cells.len(), line)
            }
        };
        if cells.len() != width {
            return Err(Error::format(
                self.path,
                format!("line {line}"),
                format!("found {} cells; expected {width} like line {first_line}, the first data line", cells.len()),
            ));
        }
        let mut values = &cells[..];
        if self.has_names {
            let name = cells[0];
            if name.is_empty() {
                return Err(Error::format(self.path, format!("line {line}, column 1"), "empty image name"));
            }
            self.names.push(name.to_string());
            values = &cells[1..];
        }
        let offset = 1 + usize::from(self.has_names);
        for (j, cell) in values.iter().enumerate() {
            let loc = || format!("line {line}, column {}", j + offset);
            if cell.is_empty() {
                return Err(Error::format(self.path, loc(), "empty cell; expected a number"));
            }
            if let TextValues::Ints(ints) = &mut self.values {
                if let Ok(v) = cell.parse::<i64>() {
                    ints.push(v);
                    continue;
                }
                let floats = ints.iter().map(|&v| v as f32).collect();
                self.values = TextValues::Floats(floats);
            }
            let v: f64 = cell
                .parse()
                .map_err(|_| Error::format(self.path, loc(), format!("found {cell:?}; expected a number")))?;
            if !v.is_finite() {
                if self.non_finite.0.is_none() {
                    self.non_finite.0 = Some((line, j + offset, v));
                }
                self.non_finite.1 += 1;
            }
            if let TextValues::Floats(f) = &mut self.values {
                f.push(v as f32);
            }
        }
        self.lines.push(line);
        Ok(())
    }

    fn finish(self, kind: Option<PredictionKind>) -> Result<(PredictionData, Option<Vec<String>>)> {
        let path = self.path;
        let Some((width, _)) = self.width else {
            let what = if self.seen_first { "only a header line" } else { "the file is empty" };
            return Err(Error::format(path, "data", format!("no prediction rows ({what})")));
        };
        let cols = width - usize::from(self.has_names);
        let rows = self.lines.len();
        let lines = &self.lines;
        let loc = |i: usize| format!("line {}, column {}", lines[i / cols], i % cols + 1 + usize::from(self.has_names));
        let kind = kind.unwrap_or(match self.values {
            TextValues::Ints(_) => PredictionKind::TopK,
            TextValues::Floats(_) => PredictionKind::Scores,
        });
        let data = match (kind, self.values) {
            (PredictionKind::TopK, TextValues::Ints(ints)) => {
                let mut indices = Vec::with_capacity(ints.len());
                for (i, v) in ints.into_iter().enumerate() {
                    indices.push(index_from_i64(v).map_err(|m| Error::format(path, loc(i), m))?);
                }
                PredictionData::TopK { k: cols, indices }
            }
            (PredictionKind::TopK, TextValues::Floats(floats)) => {
                if let Some((line, col, v)) = self.non_finite.0 {
                    return Err(Error::format(
                        path,
                        format!("line {line}, column {col}"),
                        format!("found {v}; top-k class indices must be whole numbers"),
                    ));
                }
                let mut indices = Vec::with_capacity(floats.len());
                for (i, v) in floats.into_iter().enumerate() {
                    indices.push(index_from_f64(f64::from(v)).map_err(|m| Error::format(path, loc(i), m))?);
                }
                PredictionData::TopK { k: cols, indices }
            }
            (PredictionKind::Scores, values) => {
                if let Some((line, col, v)) = self.non_finite.0 {
                    return Err(Error::format(
                        path,
                        format!("line {line}, column {col}"),
                        format!(
                            "found {v}; scores must be finite, and {} value(s) are NaN or infinite in total",
                            self.non_finite.1
                        ),
                    ));
                }
                let data = match values {
                    TextValues::Ints(ints) => ints.into_iter().map(|v| v as f32).collect(),
                    TextValues::Floats(f) => f,
                };
                // Finite f64 values can still overflow f32.
                check_finite(&data, |first, count| {
                    Error::format(
                        path,
                        loc(first),
                        format!(
                            "found a value too large for 32-bit floats; scores must be finite, and {count} value(s) \
                             overflow in total"
                        ),
                    )
                })?;
                PredictionData::Scores(ScoreMatrix::from_vec(rows, cols, data))
            }
        };
        Ok((data, self.has_names.then_some(self.names)))
    }
}

/// Reads a delimited text file; `delimiter` is `None` for `.txt` (sniffed).
fn read_text(
    path: &Path,
    delimiter: Option<u8>,
    kind: Option<PredictionKind>,
) -> Result<(PredictionData, Option<Vec<String>>)> {
    let io = |e| Error::io(path, e);
    let delimiter = match delimiter {
        Some(d) => Some(d),
        None => {
            // Sniff from the first line that is neither blank nor a comment.
            let reader = BufReader::new(File::open(path).map_err(io)?);
            let mut found = None;
            for (i, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| {
                    Error::format(path, format!("line {}", i + 1), format!("cannot read the line: {e}"))
                })?;
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                found = if t.contains('\t') {
                    Some(b'\t')
                } else if t.contains(',') {
                    Some(b',')
                } else {
                    None
                };
                break;
            }
            found
        }
    };
    let mut sink = TextSink {
        path,
        seen_first: false,
        width: None,
        has_names: false,
        names: Vec::new(),
        values: TextValues::Ints(Vec::new()),
        lines: Vec::new(),
        non_finite: (None, 0),
    };
    let file = File::open(path).map_err(io)?;
    match delimiter {
        Some(d) => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(d)
                .comment(Some(b'#'))
                .trim(csv::Trim::All)
                .from_reader(BufReader::new(file));
            let mut record = csv::StringRecord::new();
            loop {
                match reader.read_record(&mut record) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        let loc = e.position().map_or_else(|| "data".to_string(), |p| format!("line {}", p.line()));
                        let message = format!("cannot read the line: {e}");
                        return Err(match e.into_kind() {
                            csv::ErrorKind::Io(e) => Error::io(path, e),
                            _ => Error::format(path, loc, message),
                        });
                    }
                }
                let line = record.position().map_or(0, |p| p.line());
                let mut cells: Vec<&str> = record.iter().collect();
                sink.push(line, &mut cells)?;
            }
        }
        None => {
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let n = i as u64 + 1;
                let line =
                    line.map_err(|e| Error::format(path, format!("line {n}"), format!("cannot read the line: {e}")))?;
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                let mut cells: Vec<&str> = t.split_whitespace().collect();
                sink.push(n, &mut cells)?;
            }
        }
    }
    sink.finish(kind)
}

// ---------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------

/// The prediction files named by `spec`:
/// * an existing file: that file;
/// * a directory: every file in it (not recursive, hidden files skipped) with
///   one of [`DIRECTORY_EXTENSIONS`], sorted by name;
/// * a pattern with `*` (any run of characters) and `?` (one character) in the
///   last path component, such as `preds/resnet*.npy`: the matching files,
///   sorted by name (names starting with `.` only match a pattern starting with `.`).
///
/// Finding nothing is an [`Error::Invalid`] naming `spec`.
pub fn discover(spec: &str) -> Result<Vec<PathBuf>> {
    let path = Path::new(spec);
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_dir() {
            return Ok(vec![path.to_path_buf()]);
        }
        let mut found: Vec<(String, PathBuf)> = list_dir(path)?
            .into_iter()
            .filter(|(name, p)| {
                !name.starts_with('.')
                    && std::fs::metadata(p).is_ok_and(|m| !m.is_dir())
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| DIRECTORY_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
            })
            .collect();
        if found.is_empty() {
            return Err(Error::Invalid(format!(
                "{spec}: the directory holds no prediction files ({})",
                DIRECTORY_EXTENSIONS.iter().map(|e| format!("*.{e}")).collect::<Vec<_>>().join(", ")
            )));
        }
        found.sort();
        return Ok(found.into_iter().map(|(_, p)| p).collect());
    }
    let pattern = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !pattern.contains(['*', '?']) {
        return Err(Error::Invalid(format!("{spec}: no such file or directory")));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if parent.is_some_and(|p| p.to_string_lossy().contains(['*', '?'])) {
        return Err(Error::Invalid(format!(
            "{spec}: wildcards (* and ?) are only supported in the last path component"
        )));
    }
    let dir = parent.unwrap_or(Path::new("."));
    let pat: Vec<char> = pattern.chars().collect();
    let mut found: Vec<(String, PathBuf)> = match list_dir(dir) {
        Ok(entries) => entries
            .into_iter()
            .filter(|(name, p)| {
                (!name.starts_with('.') || pattern.starts_with('.'))
                    && glob_match(&pat, &name.chars().collect::<Vec<_>>())
                    && std::fs::metadata(p).is_ok_and(|m| !m.is_dir())
            })
            .map(|(name, p)| {
                let p = if parent.is_none() { PathBuf::from(&name) } else { p };
                (name, p)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if found.is_empty() {
        return Err(Error::Invalid(format!("{spec}: no files match")));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// `(file name, path)` of every entry of `dir` whose name is valid UTF-8.
fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

/// Whether `name` matches `pat`, where `*` matches any run of characters and `?` one character.
fn glob_match(pat: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pat.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::tests::{npy, safetensors_bytes, shared_data};
    use std::io::Write;

    #[test]
    fn non_finite_values_are_found_and_counted() {
        let edge = [
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001), // signalling NaN
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            -0.0,
            f32::from_bits(1), // smallest subnormal
            f32::MIN_POSITIVE,
        ];
        let mut x = 5u64;
        // Lengths around vector widths and the chunk size; edge values at random places.
        for len in [0usize, 1, 7, 8, 9, 33, 1000, (1 << 16) + 3, 3 << 16] {
            let mut v: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            for e in edge.iter().take(len.min(edge.len())) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                v[(x >> 33) as usize % len] = *e;
            }
            let want = v.iter().filter(|x| !x.is_finite()).count();
            let first = v.iter().position(|x| !x.is_finite());
            assert_eq!(find_non_finite(&v), first.map(|f| (f, want)), "length {len}");
        }
        assert_eq!(find_non_finite(&[f32::MAX, f32::MIN, f32::INFINITY]), Some((2, 1)));
    }

    fn le<T: Copy, const N: usize>(values: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|&v| f(v)).collect()
    }

    fn load(path: &Path) -> Result<Predictions> {
        Predictions::load(path, &PredictionOptions::default())
    }

    fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn topk(p: &Predictions) -> (usize, &[u32]) {
        match &p.data {
            PredictionData::TopK { k, indices } => (*k, indices),
            other => panic!("expected top-k, got {other:?}"),
        }
    }

    fn scores(p: &Predictions) -> &ScoreMatrix {
        match &p.data {
            PredictionData::Scores(m) => m,
            other => panic!("expected scores, got {other:?}"),
        }
    }

    #[test]
    fn npy_int_dtypes_are_topk() {
        let dir = tempfile::tempdir().unwrap();
        let p =
            write(dir.path(), "m.npy", npy("<i8", false, "(2, 3)", &le(&[1i64, 2, 3, 4, 5, 6], i64::to_le_bytes), 1));
        let pr = load(&p).unwrap();
        assert_eq!((pr.model.as_str(), pr.rows()), ("m", 2));
        assert_eq!(topk(&pr), (3, &[1, 2, 3, 4, 5, 6][..]));
        assert_eq!(pr.data.kind(), PredictionKind::TopK);
        let p = write(dir.path(), "top1.npy", npy(">u2", false, "(3,)", &le(&[7u16, 8, 9], u16::to_be_bytes), 1));
        assert_eq!(topk(&load(&p).unwrap()), (1, &[7, 8, 9][..]));
        let p = write(dir.path(), "neg.npy", npy("<i4", false, "(2, 2)", &le(&[1i32, 2, 3, -4], i32::to_le_bytes), 1));
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("row 1, column 1") && e.contains("-4"), "{e}");
        let p = write(dir.path(), "empty.npy", npy("<i8", false, "(0, 5)", &[], 1));
        assert!(load(&p).unwrap_err().to_string().contains("no prediction rows"));
        let p = write(dir.path(), "s.npy", npy("|S2", false, "(1,)", b"ab", 1));
        assert!(load(&p).unwrap_err().to_string().contains("expected integer class indices or float scores"));
        let p = write(dir.path(), "x.json", "[]");
        assert!(load(&p).unwrap_err().to_string().contains(".npy, .npz, .safetensors, .csv, .tsv, .txt"));
    }

    #[test]
    fn npy_float_scores_and_kind_override() {
        let dir = tempfile::tempdir().unwrap();
        let v = [0.1f64, 0.9, 2.0, 1.0];
        let p = write(dir.path(), "f.npy", npy("<f8", false, "(2, 2)", &le(&v, f64::to_le_bytes), 1));
        let pr = load(&p).unwrap();
        let m = scores(&pr);
        assert_eq!((m.rows(), m.cols()), (2, 2));
        assert_eq!(m.row(1), [2.0, 1.0]);
        assert_eq!(m.as_slice(), [0.1f32, 0.9, 2.0, 1.0]);
        // Forced top-k from floats: [2, 1] fine, 0.1 not.
        let forced = PredictionOptions { kind: Some(PredictionKind::TopK), ..Default::default() };
        let e = Predictions::load(&p, &forced).unwrap_err().to_string();
        assert!(e.contains("row 0, column 0") && e.contains("whole numbers"), "{e}");
        let p2 = write(dir.path(), "g.npy", npy("<f4", false, "(1, 2)", &le(&[3f32, 1.0], f32::to_le_bytes), 1));
        assert_eq!(topk(&Predictions::load(&p2, &forced).unwrap()), (2, &[3, 1][..]));
        // Forced scores from integers.
        let p3 = write(dir.path(), "h.npy", npy("<i8", false, "(1, 2)", &le(&[3i64, 1], i64::to_le_bytes), 1));
        let forced = PredictionOptions { kind: Some(PredictionKind::Scores), ..Default::default() };
        assert_eq!(scores(&Predictions::load(&p3, &forced).unwrap()).as_slice(), [3.0, 1.0]);
        // 1-D floats are not scores.
        let p4 = write(dir.path(), "i.npy", npy("<f4", false, "(2,)", &[0; 8], 1));
        assert!(load(&p4).unwrap_err().to_string().contains("[rows, classes]"));
        // f16 scores are converted.
        let p5 =
            write(dir.path(), "j.npy", npy("<f2", false, "(1, 2)", &le(&[0x3c00u16, 0x3800], u16::to_le_bytes), 1));
        assert_eq!(scores(&load(&p5).unwrap()).as_slice(), [1.0, 0.5]);
    }

    #[test]
    fn large_f32_npy_is_memory_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let v: Vec<f32> = (0..200 * 1000).map(|i| (i % 1000) as f32).collect();
        let p = write(dir.path(), "big.npy", npy("<f4", false, "(200, 1000)", &le(&v, f32::to_le_bytes), 1));
        let pr = load(&p).unwrap();
        let m = scores(&pr);
        assert!(m.is_memory_mapped());
        assert_eq!(m.row(199)[999], 999.0);
        pr.validate_classes(1000).unwrap();
        assert!(matches!(pr.validate_classes(999), Err(Error::Mismatch(_))));
    }

    #[test]
    fn rejects_nan_and_inf_naming_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = vec![0.5f32; 3 * 4];
        v[6] = f32::NAN;
        v[7] = f32::INFINITY;
        v[11] = f32::NEG_INFINITY;
        let p = write(dir.path(), "nan.npy", npy("<f4", false, "(3, 4)", &le(&v, f32::to_le_bytes), 1));
        let e = load(&p).unwrap_err();
        let Error::Format { location, message, .. } = &e else { panic!("{e}") };
        assert_eq!(location, "row 1, column 2");
        assert!(message.contains("NaN") && message.contains("3 value(s)"), "{message}");
        let p = write(dir.path(), "inf.csv", "0.5,0.5\n0.1,inf\n");
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("line 2, column 2") && e.contains("1 value(s)"), "{e}");
    }

    #[test]
    fn validate_classes_reports_out_of_range_index() {
        let dir = tempfile::tempdir().unwrap();
        let p =
            write(dir.path(), "m.npy", npy("<i8", false, "(2, 2)", &le(&[1i64, 2, 1000, 1001], i64::to_le_bytes), 1));
        let pr = load(&p).unwrap();
        pr.validate_classes(1002).unwrap();
        let e = pr.validate_classes(1000).unwrap_err();
        let Error::Format { location, message, .. } = &e else { panic!("{e}") };
        assert_eq!(location, "row 1, column 0");
        assert!(message.contains("1000") && message.contains("2 index(es)"), "{message}");
    }

    fn npz(path: &Path, members: &[(&str, Vec<u8>)]) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, bytes) in members {
            zip.start_file(format!("{name}.npy"), zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn npz_array_choice() {
        let dir = tempfile::tempdir().unwrap();
        let s = npy("<f4", false, "(1, 2)", &le(&[0.25f32, 0.75], f32::to_le_bytes), 1);
        let i = npy("<i8", false, "(1, 1)", &le(&[4i64], i64::to_le_bytes), 1);
        let p = dir.path().join("a.npz");
        npz(&p, &[("ids", i.clone()), ("logits", s.clone())]);
        assert_eq!(scores(&load(&p).unwrap()).as_slice(), [0.25, 0.75]);
        let by_name = PredictionOptions { array: Some("ids".into()), ..Default::default() };
        assert_eq!(topk(&Predictions::load(&p, &by_name).unwrap()), (1, &[4][..]));
        let missing = PredictionOptions { array: Some("nope".into()), ..Default::default() };
        let e = Predictions::load(&p, &missing).unwrap_err().to_string();
        assert!(e.contains("\"nope\"") && e.contains("ids, logits"), "{e}");
        let p = dir.path().join("b.npz");
        npz(&p, &[("x", i.clone()), ("y", s.clone())]);
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("x, y") && e.contains("--array NAME"), "{e}");
        let p = dir.path().join("c.npz");
        npz(&p, &[("whatever", i)]);
        assert_eq!(topk(&load(&p).unwrap()), (1, &[4][..]));
    }

    #[test]
    fn safetensors_predictions() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<f32> = (0..300 * 300).map(|i| (i % 7) as f32).collect();
        let p = write(
            dir.path(),
            "vit.safetensors",
            safetensors_bytes(&[
                ("logits", "F32", &[300, 300], le(&big, f32::to_le_bytes)),
                ("half", "F16", &[1, 2], le(&[0x3c00u16, 0xc000], u16::to_le_bytes)),
                ("bf", "BF16", &[1, 1], le(&[0x3f80u16], u16::to_le_bytes)),
            ]),
        );
        let pr = load(&p).unwrap();
        assert_eq!(pr.model, "vit");
        assert!(scores(&pr).is_memory_mapped());
        assert_eq!(scores(&pr).as_slice(), &big[..]);
        let half = PredictionOptions { array: Some("half".into()), ..Default::default() };
        let pr = Predictions::load(&p, &half).unwrap();
        assert!(!scores(&pr).is_memory_mapped());
        assert_eq!(scores(&pr).as_slice(), [1.0, -2.0]);
        let bf = PredictionOptions { array: Some("bf".into()), ..Default::default() };
        assert_eq!(scores(&Predictions::load(&p, &bf).unwrap()).as_slice(), [1.0]);
        let p = write(dir.path(), "bad.safetensors", safetensors_bytes(&[("logits", "F32", &[2, 2], vec![0; 12])]));
        assert!(load(&p).unwrap_err().to_string().contains("needs 16"));
    }

    #[test]
    fn csv_with_header_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "m.csv",
            "\u{feff}image,top1,top2\nILSVRC2012_val_00000001.JPEG,65,970\n\n# note\nb.JPEG, 1 ,2\n",
        );
        let pr = load(&p).unwrap();
        assert_eq!(topk(&pr), (2, &[65, 970, 1, 2][..]));
        assert_eq!(pr.row_names.as_deref().unwrap(), ["ILSVRC2012_val_00000001.JPEG", "b.JPEG"]);
        let e = pr.validate_classes(100).unwrap_err().to_string();
        assert!(e.contains("row 0, column 1") && e.contains("ILSVRC2012_val_00000001.JPEG"), "{e}");
        // Scores without names, pandas-style header with an empty first cell.
        let p = write(dir.path(), "s.tsv", "\t0\t1\n0\t0.5\t1.5\n1\t2\t3\n");
        let pr = load(&p).unwrap();
        assert!(pr.row_names.is_none());
        assert_eq!(scores(&pr).as_slice(), [0.0, 0.5, 1.5, 1.0, 2.0, 3.0]);
        // Whitespace-separated .txt, integers → top-k; forced scores.
        let p = write(dir.path(), "w.txt", "1  2 3\n4 5 6\n");
        assert_eq!(topk(&load(&p).unwrap()), (3, &[1, 2, 3, 4, 5, 6][..]));
        let forced = PredictionOptions { kind: Some(PredictionKind::Scores), ..Default::default() };
        assert_eq!(scores(&Predictions::load(&p, &forced).unwrap()).row(1), [4.0, 5.0, 6.0]);
        let p = write(dir.path(), "c.txt", "a,1.5\n");
        assert_eq!(scores(&load(&p).unwrap()).as_slice(), [1.5]);
        // A float cell after integers switches to scores.
        let p = write(dir.path(), "mix.csv", "1,2\n3,4.5\n");
        assert_eq!(scores(&load(&p).unwrap()).as_slice(), [1.0, 2.0, 3.0, 4.5]);
        let forced = PredictionOptions { kind: Some(PredictionKind::TopK), ..Default::default() };
        let e = Predictions::load(&p, &forced).unwrap_err().to_string();
        assert!(e.contains("line 2, column 2") && e.contains("whole numbers"), "{e}");
    }

    #[test]
    fn csv_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("ragged.csv", "a,1,2\nb,3,4\nc,5\n", "line 3", "found 2 cells; expected 3"),
            ("empty_cell.csv", "1,2\n3,\n", "line 2, column 2", "empty cell"),
            ("bad.csv", "x,1,2\ny,3,zz\n", "line 2, column 3", "\"zz\""),
            ("neg.csv", "h1,h2\n1,2\n3,-4\n", "line 3, column 2", "-4"),
            ("empty.csv", "", "data", "no prediction rows"),
            ("header_only.csv", "image,pred\n", "data", "no prediction rows"),
            ("names_only.csv", "a\nb\n", "line", "no prediction values"),
        ];
        for (name, text, loc, msg) in cases {
            let p = write(dir.path(), name, text);
            let e = load(&p).unwrap_err();
            let Error::Format { location, message, .. } = &e else { panic!("{name}: {e}") };
            assert!(location.starts_with(loc) && message.contains(msg), "{name}: {e}");
        }
    }

    #[test]
    fn glob_matching() {
        let m = |p: &str, n: &str| glob_match(&p.chars().collect::<Vec<_>>(), &n.chars().collect::<Vec<_>>());
        assert!(m("*.npy", "resnet50.npy"));
        assert!(m("res*50*", "resnet50.npy"));
        assert!(m("?esnet??.npy", "resnet50.npy"));
        assert!(m("*", ""));
        assert!(!m("*.npy", "resnet50.npz"));
        assert!(!m("?", ""));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn discover_dir_and_glob() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.npy", "a.csv", "c.npz", "notes.txt", "README.md", ".hidden.npy", "d.safetensors"] {
            write(dir.path(), name, "");
        }
        std::fs::create_dir(dir.path().join("sub.npy")).unwrap();
        let d = dir.path().to_str().unwrap();
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        assert_eq!(names(discover(d).unwrap()), ["a.csv", "b.npy", "c.npz", "d.safetensors"]);
        assert_eq!(names(discover(&format!("{d}/*.np?")).unwrap()), ["b.npy", "c.npz"]);
        assert_eq!(names(discover(&format!("{d}/*t*")).unwrap()), ["d.safetensors", "notes.txt"]);
        assert_eq!(discover(&format!("{d}/b.npy")).unwrap(), [dir.path().join("b.npy")]);
        let e = discover(&format!("{d}/*.json")).unwrap_err();
        assert!(matches!(&e, Error::Invalid(m) if m.contains("*.json")), "{e}");
        assert!(discover(&format!("{d}/nothing.npy")).is_err());
        assert!(discover(&format!("{d}/*/x.npy")).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(discover(empty.path().to_str().unwrap()).is_err());
    }

    #[test]
    fn real_resnet50_topk() {
        let Some(path) = shared_data("predictions/imagenet-val/resnet50.npy") else {
            return;
        };
        let pr = load(&path).unwrap();
        assert_eq!(pr.model, "resnet50");
        let (k, indices) = topk(&pr);
        assert_eq!((pr.rows(), k), (50_000, 5));
        assert_eq!(indices[..5], [394, 0, 395, 391, 389]);
        assert_eq!(indices[indices.len() - 5..], [999, 700, 543, 605, 772]);
        pr.validate_classes(1000).unwrap();
    }
}
