//! `labelscope._native`: the Rust side of the `labelscope` Python package.
//!
//! The Python modules (`python/labelscope/*.py`) normalise their inputs
//! (dtype, contiguity, torch tensors through the array protocol) and call the
//! functions here, which take C-contiguous `float32` / `int64` numpy arrays
//! and read them in place: a `float32` C-contiguous array is never copied.
//! Heavy work runs with the GIL released. Every input is checked before it
//! reaches the core (whose functions assert their shapes), so bad input is a
//! Python exception with a message, never a panic.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use labelscope_core::classes::ClassTable;
use labelscope_core::eval::{Dataset, EvalOptions, ScoreKind};
use labelscope_core::labels::{self, LabelFormat, LabelSource};
use labelscope_core::metrics::accumulate::{AccumulateError, BatchRows, HitAccumulator};
use labelscope_core::metrics::intervals::{clopper_pearson, Bootstrap};
use labelscope_core::metrics::sets::{Activation, Thresholds};
use labelscope_core::metrics::{ranking, sets, topk};
use labelscope_core::ncut::{self, NcutParams};
use labelscope_core::order::ImageOrder;
use labelscope_core::predictions::{PredictionData, Predictions, ScoreMatrix};
use labelscope_core::rle::Rle;
use numpy::{PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyIndexError, PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn err<E: std::fmt::Display>(e: E) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A read-only numpy `float32` array kept alive while the core reads it in place.
struct NumpyF32 {
    _owner: Py<PyAny>,
    ptr: *const f32,
    len: usize,
}

// SAFETY: the pointer is into the buffer of a numpy array that `_owner` keeps alive, is only
// read, and numpy buffers do not move; `Py<PyAny>` is Send + Sync.
unsafe impl Send for NumpyF32 {}
unsafe impl Sync for NumpyF32 {}

impl AsRef<[f32]> for NumpyF32 {
    fn as_ref(&self) -> &[f32] {
        // SAFETY: see the Send/Sync note; `len` elements were contiguous when taken.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The `[n, c]` values of a C-contiguous float32 array (a view, no copy).
fn scores_view<'a>(a: &'a PyReadonlyArray2<'_, f32>, what: &str) -> PyResult<(&'a [f32], usize, usize)> {
    let (s, n, c) = scores_slice(a, what)?;
    if let Some((i, _)) = labelscope_core::predictions::find_non_finite(s) {
        return Err(err(format!(
            "{what}: row {}, column {}: value {} is not finite",
            i / c.max(1),
            i % c.max(1),
            s[i]
        )));
    }
    Ok((s, n, c))
}

/// [`scores_view`] without the check for NaN (for callers that check as they read).
fn scores_slice<'a>(a: &'a PyReadonlyArray2<'_, f32>, what: &str) -> PyResult<(&'a [f32], usize, usize)> {
    let (n, c) = (a.shape()[0], a.shape()[1]);
    let s = a.as_slice().map_err(|_| err(format!("{what}: expected a C-contiguous float32 array")))?;
    Ok((s, n, c))
}

/// Label sets: one sorted set of class indices per image, with image names.
#[pyclass(module = "labelscope._native", name = "LabelSets", skip_from_py_object)]
#[derive(Clone)]
pub struct PyLabelSets {
    inner: labels::LabelSets,
    expert: Option<labels::ExpertLabels>,
}

fn check_classes(sets: &[Vec<u32>], n_classes: Option<usize>, what: &str) -> PyResult<()> {
    if let Some(c) = n_classes {
        for (i, s) in sets.iter().enumerate() {
            if let Some(&k) = s.iter().find(|&&k| k as usize >= c) {
                return Err(err(format!("{what}: image {i}: class {k} is not below the {c} classes")));
            }
        }
    }
    Ok(())
}

#[pymethods]
impl PyLabelSets {
    /// Label sets from a list of lists of class indices (and optional names; default "0", "1", ...).
    #[staticmethod]
    #[pyo3(signature = (sets, names=None))]
    fn from_lists(sets: Vec<Vec<i64>>, names: Option<Vec<String>>) -> PyResult<Self> {
        let names = names.unwrap_or_else(|| (0..sets.len()).map(|i| i.to_string()).collect());
        if names.len() != sets.len() {
            return Err(err(format!("{} names for {} label sets", names.len(), sets.len())));
        }
        let mut out = Vec::with_capacity(sets.len());
        for (i, s) in sets.iter().enumerate() {
            let mut v = Vec::with_capacity(s.len());
            for &k in s {
                if !(0..=u32::MAX as i64).contains(&k) {
                    return Err(err(format!("label sets: image {i}: class {k} is not a class index (>= 0)")));
                }
                v.push(k as u32);
            }
            out.push(v);
        }
        let inner = labels::LabelSets::new(Path::new("<python>"), LabelFormat::GenericJson, names, out).map_err(err)?;
        Ok(PyLabelSets { inner, expert: None })
    }

    /// Label sets from CSR arrays: the classes of image i are `indices[offsets[i]:offsets[i+1]]`.
    #[staticmethod]
    #[pyo3(signature = (indices, offsets, names=None))]
    fn from_csr(
        indices: PyReadonlyArray1<'_, i64>,
        offsets: PyReadonlyArray1<'_, i64>,
        names: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let idx = indices.as_slice().map_err(|_| err("indices: expected a contiguous int64 array"))?;
        let off = offsets.as_slice().map_err(|_| err("offsets: expected a contiguous int64 array"))?;
        if off.is_empty() || off[0] != 0 || *off.last().unwrap_or(&0) != idx.len() as i64 {
            return Err(err(format!(
                "offsets: expected offsets[0] == 0 and offsets[-1] == len(indices) = {}",
                idx.len()
            )));
        }
        let mut sets = Vec::with_capacity(off.len() - 1);
        for (i, w) in off.windows(2).enumerate() {
            if w[1] < w[0] {
                return Err(err(format!(
                    "offsets: position {}: {} is below {} (offsets must not decrease)",
                    i + 1,
                    w[1],
                    w[0]
                )));
            }
            sets.push(idx[w[0] as usize..w[1] as usize].to_vec());
        }
        PyLabelSets::from_lists(sets, names)
    }

    /// Number of images.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "LabelSets({} images, {} empty, format {:?}, from {:?})",
            self.inner.len(),
            self.inner.empty_count(),
            self.inner.format.name(),
            self.inner.path.display().to_string()
        )
    }

    /// Image names, in file order.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.inner.names.clone()
    }

    /// Label sets (lists of class indices), in file order.
    #[getter]
    fn sets(&self) -> Vec<Vec<u32>> {
        self.inner.sets.clone()
    }

    /// The file the labels were read from ("<python>" when built in memory).
    #[getter]
    fn path(&self) -> String {
        self.inner.path.display().to_string()
    }

    /// The format they were read as.
    #[getter]
    fn format(&self) -> &'static str {
        self.inner.format.name()
    }

    /// Number of images with an empty set (left out of every metric).
    #[getter]
    fn empty_count(&self) -> usize {
        self.inner.empty_count()
    }

    /// Whether these came from expert correct/wrong/unclear labels.
    #[getter]
    fn is_expert(&self) -> bool {
        self.expert.is_some()
    }

    /// The set of image `name` (matched by file name without folder or extension).
    fn get(&self, name: &str) -> PyResult<Vec<u32>> {
        self.inner
            .get(name)
            .map(<[u32]>::to_vec)
            .ok_or_else(|| PyKeyError::new_err(format!("no image {name:?} in {}", self.path())))
    }

    fn __contains__(&self, name: &str) -> bool {
        self.inner.position(name).is_some()
    }

    /// The sets as CSR arrays `(indices int64, offsets int64)`.
    fn to_csr<'py>(&self, py: Python<'py>) -> (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>) {
        let mut idx = Vec::new();
        let mut off = Vec::with_capacity(self.inner.len() + 1);
        off.push(0i64);
        for s in &self.inner.sets {
            idx.extend(s.iter().map(|&k| i64::from(k)));
            off.push(idx.len() as i64);
        }
        (PyArray1::from_vec(py, idx), PyArray1::from_vec(py, off))
    }

    /// The sets of `names`, in that order (an unknown name is a KeyError naming it).
    fn select(&self, names: Vec<String>) -> PyResult<PyLabelSets> {
        let mut sets = Vec::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            sets.push(
                self.inner
                    .get(n)
                    .ok_or_else(|| {
                        PyKeyError::new_err(format!("names[{i}] = {n:?} is not an image of {}", self.path()))
                    })?
                    .to_vec(),
            );
        }
        let inner = labels::LabelSets::new(&self.inner.path, self.inner.format, names, sets).map_err(err)?;
        Ok(PyLabelSets { inner, expert: None })
    }

    /// Writes the labels to `path` atomically as `json` ({name: [index, ...]}), `inv2-ml`
    /// ({name: ["index", ...]}), `csv` (name,label rows) or `real` (ReaL's list in file order).
    #[pyo3(signature = (path, format="json"))]
    fn save(&self, py: Python<'_>, path: PathBuf, format: &str) -> PyResult<()> {
        let text = match format {
            "json" => self.inner.to_json(),
            "inv2-ml" => {
                let m: serde_json::Map<String, serde_json::Value> = self
                    .inner
                    .names
                    .iter()
                    .zip(&self.inner.sets)
                    .map(|(n, s)| (n.clone(), serde_json::json!(s.iter().map(|k| k.to_string()).collect::<Vec<_>>())))
                    .collect();
                serde_json::to_string(&m).map_err(err)?
            }
            "real" => serde_json::to_string(&self.inner.sets).map_err(err)?,
            "csv" => {
                let mut t = String::from("image,label\n");
                for (n, s) in self.inner.names.iter().zip(&self.inner.sets) {
                    if n.contains([',', '"', '\n']) {
                        return Err(err(format!(
                            "image name {n:?}: commas, quotes and newlines cannot be written as csv"
                        )));
                    }
                    for k in s {
                        t.push_str(&format!("{n},{k}\n"));
                    }
                }
                t
            }
            other => return Err(err(format!("format {other:?}: expected json, inv2-ml, csv or real"))),
        };
        py.detach(|| labelscope_core::atomic::write_atomic(&path, text.as_bytes()))
            .map_err(|e| err(format!("{}: {e}", path.display())))
    }
}

fn class_table(classes: Option<PathBuf>) -> PyResult<ClassTable> {
    Ok(match classes {
        Some(p) => ClassTable::from_path(&p).map_err(err)?,
        None => ClassTable::imagenet().clone(),
    })
}

/// Loads a label file (format detected from the content unless given).
#[pyfunction]
#[pyo3(signature = (path, format=None, classes=None))]
fn load_labels(
    py: Python<'_>,
    path: PathBuf,
    format: Option<String>,
    classes: Option<PathBuf>,
) -> PyResult<PyLabelSets> {
    let table = class_table(classes)?;
    let fmt = match format {
        Some(f) => Some(LabelFormat::parse(&f).ok_or_else(|| {
            err(format!(
                "format {f:?}: expected one of {}",
                LabelFormat::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
            ))
        })?),
        None => None,
    };
    let src = py.detach(|| labels::load_labels(&path, fmt, &table)).map_err(err)?;
    Ok(match src {
        LabelSource::Sets(s) => PyLabelSets { inner: s, expert: None },
        LabelSource::Expert(e) => PyLabelSets { inner: e.as_label_sets(false).map_err(err)?, expert: Some(e) },
    })
}

/// Compares two label sets image by image: counts per relation (same, subset, superset, ...).
#[pyfunction]
#[pyo3(signature = (a, b, top=10))]
fn compare_labels(py: Python<'_>, a: &PyLabelSets, b: &PyLabelSets, top: usize) -> PyResult<Py<PyAny>> {
    let c = labelscope_core::analysis::compare(&a.inner, &b.inner, top);
    let v = serde_json::to_value(&c).map_err(err)?;
    json_to_py(py, &v)
}

/// Class pairs that occur together in at least `min_count` sets: (a, b, count) rows.
#[pyfunction]
#[pyo3(signature = (labels, min_count=1))]
fn cooccurrence(py: Python<'_>, labels: &PyLabelSets, min_count: u64) -> PyResult<Py<PyAny>> {
    let c = labelscope_core::analysis::cooccurrence(&labels.inner.sets, min_count);
    let v = serde_json::to_value(&c).map_err(err)?;
    json_to_py(py, &v)
}

fn json_to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<Py<PyAny>> {
    let json = py.import("json")?;
    Ok(json.call_method1("loads", (v.to_string(),))?.unbind())
}

/// The label sets of `n` prediction rows: those of `names` (through `select`, which refuses an
/// unknown or repeated name), or without names the labels' own sets in order (borrowed, no copy).
fn join<'a>(
    labels: &'a PyLabelSets,
    names: Option<Vec<String>>,
    n: usize,
    n_classes: usize,
) -> PyResult<Cow<'a, [Vec<u32>]>> {
    let sets = match names {
        Some(names) => {
            if names.len() != n {
                return Err(err(format!("{} names for {n} prediction rows", names.len())));
            }
            Cow::Owned(labels.select(names)?.inner.sets)
        }
        None => {
            if labels.inner.len() != n {
                return Err(err(format!(
                    "{n} prediction rows but {} label sets; pass names= to join them by image name",
                    labels.inner.len()
                )));
            }
            Cow::Borrowed(labels.inner.sets.as_slice())
        }
    };
    check_classes(&sets, Some(n_classes), "labels")?;
    Ok(sets)
}

/// Top-k hits of `indices` [n, w] (int64, best first) or the top-k of `scores` [n, c].
fn topk_rows(py: Python<'_>, pred: &Bound<'_, PyAny>, k: usize) -> PyResult<(Vec<u32>, usize, usize, Option<usize>)> {
    if let Ok(a) = pred.extract::<PyReadonlyArray2<'_, f32>>() {
        let (s, n, c) = scores_view(&a, "scores")?;
        if k > c {
            return Err(err(format!("k = {k} is larger than the {c} classes")));
        }
        let idx = py.detach(|| ranking::topk_from_scores(s, n, c, k));
        return Ok((idx, n, k, Some(c)));
    }
    let a = pred.extract::<PyReadonlyArray2<'_, i64>>()?;
    let (n, w) = (a.shape()[0], a.shape()[1]);
    let s = a.as_slice().map_err(|_| err("indices: expected a C-contiguous int64 array"))?;
    if k > w {
        return Err(err(format!("k = {k}: the predictions hold only {w} indices per image")));
    }
    let mut out = Vec::with_capacity(s.len());
    for (i, &v) in s.iter().enumerate() {
        if !(0..=u32::MAX as i64).contains(&v) {
            return Err(err(format!("indices: row {}, column {}: {v} is not a class index", i / w, i % w)));
        }
        out.push(v as u32);
    }
    Ok((out, n, w, None))
}

/// (correct, total, value, ci_low, ci_high) of top-k against label sets.
#[pyfunction]
#[pyo3(signature = (pred, labels, k=1, names=None, alpha=0.05))]
fn topk_accuracy(
    py: Python<'_>,
    pred: &Bound<'_, PyAny>,
    labels: &PyLabelSets,
    k: usize,
    names: Option<Vec<String>>,
    alpha: f64,
) -> PyResult<(u64, u64, f64, f64, f64)> {
    if k == 0 {
        return Err(err("k must be at least 1"));
    }
    let (idx, n, w, c) = topk_rows(py, pred, k)?;
    let gt = join(labels, names, n, c.unwrap_or(usize::MAX))?;
    let hits = topk::hits(&idx, w, &gt, k);
    let (correct, total) = topk::count(&hits, None);
    let (lo, hi) = if total > 0 { clopper_pearson(correct, total, alpha).map_err(err)? } else { (f64::NAN, f64::NAN) };
    Ok((correct, total, if total > 0 { correct as f64 / total as f64 } else { f64::NAN }, lo, hi))
}

/// Per-class AP, VOC AP and positives, as numpy arrays.
type ApArrays<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<u64>>);

/// Per-class AP (sklearn) and VOC AP, positives per class; NaN where a class has no positive.
#[pyfunction]
#[pyo3(signature = (scores, labels, names=None))]
fn per_class_ap<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray2<'py, f32>,
    labels: &PyLabelSets,
    names: Option<Vec<String>>,
) -> PyResult<ApArrays<'py>> {
    let (s, n, c) = scores_view(&scores, "scores")?;
    let gt = join(labels, names, n, c)?;
    let r = py.detach(|| ranking::per_class_ap(s, n, c, &gt, None));
    let f = |v: &[Option<f64>]| v.iter().map(|x| x.unwrap_or(f64::NAN)).collect::<Vec<_>>();
    Ok((PyArray1::from_vec(py, f(&r.ap)), PyArray1::from_vec(py, f(&r.ap_voc)), PyArray1::from_vec(py, r.positives)))
}

/// Per-image AP (NaN for images with an empty set).
#[pyfunction]
#[pyo3(signature = (scores, labels, names=None))]
fn per_sample_ap<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray2<'py, f32>,
    labels: &PyLabelSets,
    names: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (s, n, c) = scores_view(&scores, "scores")?;
    let gt = join(labels, names, n, c)?;
    let r = py.detach(|| ranking::per_sample_ap(s, n, c, &gt));
    Ok(PyArray1::from_vec(py, r.iter().map(|x| x.unwrap_or(f64::NAN)).collect()))
}

/// Bootstrap percentile interval of class-wise mAP (`resamples` resamples of the images).
#[pyfunction]
#[pyo3(signature = (scores, labels, names=None, resamples=1000, seed=0, alpha=0.05))]
fn map_bootstrap(
    py: Python<'_>,
    scores: PyReadonlyArray2<'_, f32>,
    labels: &PyLabelSets,
    names: Option<Vec<String>>,
    resamples: usize,
    seed: u64,
    alpha: f64,
) -> PyResult<(f64, f64)> {
    let (s, n, c) = scores_view(&scores, "scores")?;
    let gt = join(labels, names, n, c)?;
    if !(alpha > 0.0 && alpha < 1.0) || resamples == 0 {
        return Err(err(format!("alpha {alpha}, resamples {resamples}: expected 0 < alpha < 1 and resamples >= 1")));
    }
    let b = Bootstrap { resamples, seed, alpha };
    py.detach(|| b.bootstrap_percentile(n, |w| ranking::mean_defined(&ranking::per_class_ap(s, n, c, &gt, Some(w)).ap)))
        .ok_or_else(|| err("no bootstrap resample had a class with a positive"))
}

/// Set metrics of thresholded scores: a dict of the summary fields.
#[pyfunction]
#[pyo3(signature = (scores, labels, names=None, threshold=None, activation="none"))]
fn set_metrics(
    py: Python<'_>,
    scores: PyReadonlyArray2<'_, f32>,
    labels: &PyLabelSets,
    names: Option<Vec<String>>,
    threshold: Option<f64>,
    activation: &str,
) -> PyResult<Py<PyAny>> {
    let (s, n, c) = scores_view(&scores, "scores")?;
    let gt = join(labels, names, n, c)?;
    let act = parse_activation(activation)?;
    let th = match threshold {
        Some(t) if (0.0..=1.0).contains(&t) => Thresholds::Fixed(t),
        Some(t) => return Err(err(format!("threshold {t}: expected a probability in [0, 1] or None (calibrated)"))),
        None => Thresholds::Calibrated,
    };
    let summary = py.detach(|| {
        let pred = sets::predict_sets(s, n, c, act, th, &gt);
        sets::summarize(&pred, &gt, c, None)
    });
    let d = PyDict::new(py);
    d.set_item("images", summary.images)?;
    d.set_item("subset_accuracy", summary.subset_accuracy())?;
    d.set_item("exact", summary.exact)?;
    d.set_item("mean_iou", summary.mean_iou)?;
    d.set_item("micro_precision", summary.micro_precision)?;
    d.set_item("micro_recall", summary.micro_recall)?;
    d.set_item("micro_f1", summary.micro_f1)?;
    d.set_item("macro_precision", summary.macro_precision)?;
    d.set_item("macro_recall", summary.macro_recall)?;
    d.set_item("macro_f1", summary.macro_f1)?;
    d.set_item("macro_classes", summary.macro_classes)?;
    Ok(d.into_any().unbind())
}

fn parse_activation(a: &str) -> PyResult<Activation> {
    Ok(match a {
        "none" => Activation::None,
        "sigmoid" => Activation::Sigmoid,
        "softmax" => Activation::Softmax,
        other => return Err(err(format!("activation {other:?}: expected none, sigmoid or softmax"))),
    })
}

/// Clopper–Pearson interval of `k` successes out of `n`.
#[pyfunction]
#[pyo3(signature = (k, n, alpha=0.05))]
fn clopper_pearson_interval(k: u64, n: u64, alpha: f64) -> PyResult<(f64, f64)> {
    clopper_pearson(k, n, alpha).map_err(err)
}

/// The full evaluation of the CLI (`labelscope eval`): result rows as dicts.
#[pyfunction]
#[pyo3(signature = (pred, labels, names, model="model", dataset="dataset", original=None, ks=vec![1, 5],
                    alpha=0.05, bootstrap=1000, seed=0, scores=None, activation="sigmoid", threshold=Some(0.5),
                    breakdowns=true, allow_partial=false, classes=None))]
#[allow(clippy::too_many_arguments)]
fn evaluate(
    py: Python<'_>,
    pred: &Bound<'_, PyAny>,
    labels: &PyLabelSets,
    names: Vec<String>,
    model: &str,
    dataset: &str,
    original: Option<Vec<i64>>,
    ks: Vec<usize>,
    alpha: f64,
    bootstrap: usize,
    seed: u64,
    scores: Option<&str>,
    activation: &str,
    threshold: Option<f64>,
    breakdowns: bool,
    allow_partial: bool,
    classes: Option<PathBuf>,
) -> PyResult<(Py<PyAny>, Vec<String>)> {
    let table = class_table(classes)?;
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(err(format!("alpha {alpha}: expected a number between 0 and 1 (exclusive)")));
    }
    if ks.is_empty() || ks.contains(&0) {
        return Err(err("ks: expected positive integers such as (1, 5)"));
    }
    let data = if let Ok(a) = pred.extract::<PyReadonlyArray2<'_, f32>>() {
        let (s, n, c) = scores_view(&a, "scores")?;
        let holder = NumpyF32 { _owner: pred.clone().unbind(), ptr: s.as_ptr(), len: s.len() };
        PredictionData::Scores(ScoreMatrix::from_external(n, c, Arc::new(holder)))
    } else {
        let (idx, _, w, _) = topk_rows(py, pred, 1)?;
        PredictionData::TopK { k: w, indices: idx }
    };
    let order = ImageOrder { names, original: None, source: "names=".into() };
    let original = match original {
        Some(o) => {
            if o.len() != order.len() {
                return Err(err(format!("original: {} labels for {} images", o.len(), order.len())));
            }
            Some(
                o.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        u32::try_from(v)
                            .ok()
                            .filter(|&v| (v as usize) < table.len())
                            .ok_or_else(|| err(format!("original[{i}] = {v}: not a class index below {}", table.len())))
                    })
                    .collect::<PyResult<Vec<u32>>>()?,
            )
        }
        None => None,
    };
    let score_kind = match scores {
        None => None,
        Some("probs") => Some(ScoreKind::Probs),
        Some("logits") => Some(ScoreKind::Logits(parse_activation(activation)?)),
        Some(o) => return Err(err(format!("scores {o:?}: expected None, 'probs' or 'logits'"))),
    };
    let opts = EvalOptions {
        ks,
        alpha,
        bootstrap: (bootstrap > 0).then_some(Bootstrap { resamples: bootstrap, seed, alpha }),
        bootstrap_classwise: false,
        score_kind,
        thresholds: match threshold {
            Some(t) if (0.0..=1.0).contains(&t) => Thresholds::Fixed(t),
            Some(t) => {
                return Err(err(format!("threshold {t}: expected a probability in [0, 1] or None (calibrated)")))
            }
            None => Thresholds::Calibrated,
        },
        breakdowns,
        allow_partial,
    };
    let source = match &labels.expert {
        Some(e) => LabelSource::Expert(e.clone()),
        None => LabelSource::Sets(labels.inner.clone()),
    };
    let preds = Predictions { path: PathBuf::from("<python>"), model: model.to_string(), data, row_names: None };
    let (ev, notes) = py
        .detach(|| -> labelscope_core::Result<_> {
            let ds = Dataset::prepare(dataset, order, &source, original, &table, &opts)?;
            let ev = ds.evaluate(&preds, &opts)?;
            let mut notes = ds.notes.clone();
            notes.extend(ev.notes.iter().cloned());
            Ok((ev.rows, notes))
        })
        .map_err(err)?;
    let v = serde_json::to_value(&ev).map_err(err)?;
    Ok((json_to_py(py, &v)?, notes))
}

/// Per-batch accumulator of top-k hits keyed by image name (see the Python `ReaLAccumulator`;
/// the work is `labelscope_core::metrics::accumulate`).
#[pyclass(module = "labelscope._native", name = "Accumulator")]
pub struct PyAccumulator {
    inner: HitAccumulator,
}

/// A refusal of the accumulator as a Python exception: `KeyError` for an unknown image,
/// `IndexError` past the end of the order, else `ValueError`.
fn accumulate_err(e: AccumulateError) -> PyErr {
    match e {
        AccumulateError::Unknown { .. } | AccumulateError::OrderUnknown { .. } => PyKeyError::new_err(e.to_string()),
        AccumulateError::PastOrder { .. } => PyIndexError::new_err(e.to_string()),
        AccumulateError::NamesRequired { .. } => err("names= is required without an order"),
        e => err(e),
    }
}

#[pymethods]
impl PyAccumulator {
    #[new]
    #[pyo3(signature = (labels, ks=vec![1, 5], order=None))]
    fn new(labels: &PyLabelSets, ks: Vec<usize>, order: Option<Vec<String>>) -> PyResult<Self> {
        let inner = HitAccumulator::new(&labels.inner, &ks, order.as_deref()).map_err(accumulate_err)?;
        Ok(PyAccumulator { inner })
    }

    /// Adds a batch: `pred` [B, C] float32 scores or [B, w] int64 top indices; `names` the batch's
    /// image names (required without an order; checked against the order with one).
    #[pyo3(signature = (pred, names=None))]
    fn add(&mut self, py: Python<'_>, pred: &Bound<'_, PyAny>, names: Option<Vec<String>>) -> PyResult<()> {
        let kmax = self.inner.ks().iter().copied().max().unwrap_or(1);
        let names = names.as_deref();
        if let Ok(a) = pred.extract::<PyReadonlyArray2<'_, f32>>() {
            // NaN is checked as the rows are ranked: one pass over the batch.
            let (values, _, classes) = scores_slice(&a, "output")?;
            self.inner.add(BatchRows::Scores { values, classes }, names).map_err(accumulate_err)
        } else {
            let (indices, _, width, _) = topk_rows(py, pred, kmax)?;
            self.inner.add(BatchRows::TopK { indices: &indices, width }, names).map_err(accumulate_err)
        }
    }

    /// Images added so far.
    #[getter]
    fn count(&self) -> usize {
        self.inner.count()
    }

    /// Per k: (correct, total) over the images added (empty sets left out).
    fn counts(&self) -> Vec<(usize, u64, u64)> {
        self.inner.counts()
    }

    /// Names of the label file's images not added yet.
    fn missing(&self) -> Vec<String> {
        self.inner.missing()
    }
}

/// MaskCut on patch features [h, w, d]: boolean masks [k, h, w] and their eigenvalues.
#[pyfunction]
#[pyo3(signature = (features, max_masks=3, tau=0.15, eps=1e-5))]
fn maskcut<'py>(
    py: Python<'py>,
    features: numpy::PyReadonlyArray3<'py, f32>,
    max_masks: usize,
    tau: f32,
    eps: f32,
) -> PyResult<(Bound<'py, PyArray3<bool>>, Vec<f64>)> {
    let (h, w, d) = (features.shape()[0], features.shape()[1], features.shape()[2]);
    let f = features.as_slice().map_err(|_| err("features: expected a C-contiguous float32 array"))?;
    let params = NcutParams { tau, eps, max_masks };
    let masks = py.detach(|| ncut::maskcut_detailed(f, h, w, d, &params)).map_err(err)?;
    let flat: Vec<bool> = masks.iter().flat_map(|m| m.mask.iter().copied()).collect();
    let arr = PyArray1::from_vec(py, flat).reshape([masks.len(), h, w])?;
    Ok((arr, masks.iter().map(|m| m.eigenvalue).collect()))
}

/// TokenCut on patch features [h, w, d]: a boolean mask [h, w] and its box [row0, col0, row1, col1].
#[pyfunction]
#[pyo3(signature = (features, tau=0.2, eps=1e-5))]
fn tokencut<'py>(
    py: Python<'py>,
    features: numpy::PyReadonlyArray3<'py, f32>,
    tau: f32,
    eps: f32,
) -> PyResult<(Bound<'py, PyArray2<bool>>, [usize; 4])> {
    let (h, w, d) = (features.shape()[0], features.shape()[1], features.shape()[2]);
    let f = features.as_slice().map_err(|_| err("features: expected a C-contiguous float32 array"))?;
    let params = NcutParams { tau, eps, max_masks: 1 };
    let (mask, bbox) = py.detach(|| ncut::tokencut(f, h, w, d, &params)).map_err(err)?;
    Ok((PyArray1::from_vec(py, mask).reshape([h, w])?, bbox))
}

/// COCO RLE of a boolean mask [h, w] (row-major; counts run column-major as COCO's): the
/// compressed counts string.
#[pyfunction]
fn rle_encode(py: Python<'_>, mask: numpy::PyReadonlyArray2<'_, bool>) -> PyResult<(String, usize, usize)> {
    let (h, w) = (mask.shape()[0], mask.shape()[1]);
    let m = mask.as_slice().map_err(|_| err("mask: expected a C-contiguous bool array"))?;
    let r = py.detach(|| Rle::encode(m, h, w)).map_err(err)?;
    Ok((r.to_counts_string(), h, w))
}

fn rle_of(counts: &Bound<'_, PyAny>, h: usize, w: usize) -> PyResult<Rle> {
    if counts.is_instance_of::<pyo3::types::PyString>() {
        let s: String = counts.extract()?;
        return Rle::from_counts_string(&s, h, w).map_err(err);
    }
    if counts.is_instance_of::<pyo3::types::PyBytes>() {
        let b: Vec<u8> = counts.extract()?;
        let s = String::from_utf8(b).map_err(|_| err("counts: bytes are not ASCII"))?;
        return Rle::from_counts_string(&s, h, w).map_err(err);
    }
    let c: Vec<u32> = counts.extract().map_err(|_| err("counts: expected a string, bytes or a list of run lengths"))?;
    Rle::from_uncompressed(c, h, w).map_err(err)
}

/// Decodes COCO RLE counts (string, bytes or uncompressed list) of an h x w mask.
#[pyfunction]
fn rle_decode<'py>(
    py: Python<'py>,
    counts: &Bound<'py, PyAny>,
    h: usize,
    w: usize,
) -> PyResult<Bound<'py, PyArray2<bool>>> {
    let r = rle_of(counts, h, w)?;
    let m = py.detach(|| r.decode());
    PyArray1::from_vec(py, m).reshape([h, w])
}

/// Area, bbox [x, y, w, h] of an RLE.
#[pyfunction]
fn rle_area_bbox(counts: &Bound<'_, PyAny>, h: usize, w: usize) -> PyResult<(u64, [f64; 4])> {
    let r = rle_of(counts, h, w)?;
    Ok((r.area(), r.bbox()))
}

/// IoU of two RLEs of the same size.
#[pyfunction]
fn rle_iou(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>, h: usize, w: usize) -> PyResult<f64> {
    rle_of(a, h, w)?.iou(&rle_of(b, h, w)?).map_err(err)
}

/// Mapped points [n, 2] and whether each was kept.
type MappedPoints<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<bool>>);

/// Maps normalised points [n, 2] (x, y) of a width x height image through crops [n, 5]
/// (top, left, height, width, flip): the mapped points and whether each stays inside its crop.
#[pyfunction]
fn map_points_through_crops<'py>(
    py: Python<'py>,
    points: PyReadonlyArray2<'py, f64>,
    crops: PyReadonlyArray2<'py, f64>,
    width: f64,
    height: f64,
) -> PyResult<MappedPoints<'py>> {
    use labelscope_byproducts::targets::{map_through_crop, Crop};
    use labelscope_byproducts::Point;
    let p = points.as_array();
    let c = crops.as_array();
    if p.ncols() != 2 || c.ncols() != 5 || c.nrows() != p.nrows() {
        return Err(err(format!(
            "points {:?} and crops {:?}: expected [n, 2] and [n, 5] (top, left, height, width, flip)",
            p.shape(),
            c.shape()
        )));
    }
    let n = p.nrows();
    let mut out = Vec::with_capacity(2 * n);
    let mut inside = Vec::with_capacity(n);
    for r in 0..n {
        let crop = Crop { i: c[[r, 0]], j: c[[r, 1]], h: c[[r, 2]], w: c[[r, 3]], flip: c[[r, 4]] != 0.0 };
        match map_through_crop(Point { x: p[[r, 0]], y: p[[r, 1]] }, width, height, crop) {
            Some(q) => {
                out.extend([q.x, q.y]);
                inside.push(true);
            }
            None => {
                out.extend([f64::NAN, f64::NAN]);
                inside.push(false);
            }
        }
    }
    Ok((PyArray1::from_vec(py, out).reshape([n, 2])?, PyArray1::from_vec(py, inside)))
}

/// LUAB point targets from an ImageNet-AB archive: (image names, points [n, 2] with NaN for images
/// without a target). `mode`: "final-click", "mean-of-clicks" or "last-trace:N".
#[pyfunction]
#[pyo3(signature = (path, mode="final-click", random_seed=None))]
fn imagenet_ab_targets<'py>(
    py: Python<'py>,
    path: PathBuf,
    mode: &str,
    random_seed: Option<u64>,
) -> PyResult<(Vec<String>, Bound<'py, PyArray2<f64>>)> {
    use labelscope_byproducts::targets::{imagenet_target, random_baseline, PointMode};
    let m = match mode {
        "final-click" => PointMode::FinalClick,
        "mean-of-clicks" => PointMode::MeanOfClicks,
        other => match other.strip_prefix("last-trace:").and_then(|n| n.parse().ok()) {
            Some(n) => PointMode::LastTrace(n),
            None => return Err(err(format!("mode {other:?}: expected final-click, mean-of-clicks or last-trace:N"))),
        },
    };
    let (names, pts) = py
        .detach(|| -> labelscope_byproducts::Result<_> {
            let mut names = Vec::new();
            let mut pts = Vec::new();
            labelscope_byproducts::imagenet::read_archive(
                &path,
                &labelscope_byproducts::ReadOptions::default(),
                |r| {
                    pts.push(imagenet_target(&r, m));
                    names.push(r.image.clone());
                },
            )?;
            Ok((names, pts))
        })
        .map_err(err)?;
    let pts = match random_seed {
        Some(s) => random_baseline(&pts, s),
        None => pts,
    };
    let flat: Vec<f64> = pts.iter().flat_map(|p| p.map(|p| [p.x, p.y]).unwrap_or([f64::NAN; 2])).collect();
    Ok((names, PyArray1::from_vec(py, flat).reshape([pts.len(), 2])?))
}

/// LUAB per-class point targets from a COCO-AB release: (image id, icon class, x, y) rows of each
/// record's last placement of every icon; `random_seed` gives the random-point baseline.
#[pyfunction]
#[pyo3(signature = (path, random_seed=None))]
fn coco_ab_targets(py: Python<'_>, path: PathBuf, random_seed: Option<u64>) -> PyResult<Vec<(u64, String, f64, f64)>> {
    use labelscope_byproducts::targets::random_baseline;
    let rows = py
        .detach(|| -> labelscope_byproducts::Result<_> {
            let mut rows = Vec::new();
            labelscope_byproducts::coco::read_array(&path, &labelscope_byproducts::ReadOptions::default(), |r| {
                for (class, p) in r.last_add_points() {
                    rows.push((r.image_id, class, p));
                }
            })?;
            Ok(rows)
        })
        .map_err(err)?;
    let pts: Vec<Option<labelscope_byproducts::Point>> = rows.iter().map(|r| Some(r.2)).collect();
    let pts = match random_seed {
        Some(s) => random_baseline(&pts, s),
        None => pts,
    };
    Ok(rows.into_iter().zip(pts).filter_map(|((id, c, _), p)| p.map(|p| (id, c, p.x, p.y))).collect())
}

/// The class table (index, wnid, name) of the 1000 ImageNet classes or of a class-list file.
#[pyfunction]
#[pyo3(signature = (path=None))]
fn class_names(path: Option<PathBuf>) -> PyResult<Vec<(usize, String, String)>> {
    let t = class_table(path)?;
    Ok(t.classes().iter().enumerate().map(|(i, c)| (i, c.wnid.clone(), c.name().to_string())).collect())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLabelSets>()?;
    m.add_class::<PyAccumulator>()?;
    for f in [
        wrap_pyfunction!(load_labels, m)?,
        wrap_pyfunction!(compare_labels, m)?,
        wrap_pyfunction!(cooccurrence, m)?,
        wrap_pyfunction!(topk_accuracy, m)?,
        wrap_pyfunction!(per_class_ap, m)?,
        wrap_pyfunction!(per_sample_ap, m)?,
        wrap_pyfunction!(map_bootstrap, m)?,
        wrap_pyfunction!(set_metrics, m)?,
        wrap_pyfunction!(clopper_pearson_interval, m)?,
        wrap_pyfunction!(evaluate, m)?,
        wrap_pyfunction!(maskcut, m)?,
        wrap_pyfunction!(tokencut, m)?,
        wrap_pyfunction!(rle_encode, m)?,
        wrap_pyfunction!(rle_decode, m)?,
        wrap_pyfunction!(rle_area_bbox, m)?,
        wrap_pyfunction!(rle_iou, m)?,
        wrap_pyfunction!(map_points_through_crops, m)?,
        wrap_pyfunction!(imagenet_ab_targets, m)?,
        wrap_pyfunction!(coco_ab_targets, m)?,
        wrap_pyfunction!(class_names, m)?,
    ] {
        m.add_function(f)?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
