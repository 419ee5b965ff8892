//! Aggregating per-proposal predictions into image labels.
//!
//! # Inputs
//! Each proposal's prediction is a [`Prediction`]: a sparse top-k list of
//! `(class, probability)` (classes not listed have probability 0) or a dense
//! vector of `C` probabilities. Probabilities must be finite and in `[0, 1]`,
//! classes in `[0, C)`, and a sparse list must not repeat a class.
//!
//! # Rules
//! Every signal gives a value per class:
//! - [`Local::Hard`]`{ tau }`: proposal `k` gives 1 to every class whose
//!   probability is `> tau`, 0 otherwise, so a class gets 1 when its
//!   maximum probability over the proposals exceeds `tau` (compared in
//!   `f32`, the type of the probabilities, so `0.6 > 0.6` is false);
//! - [`Local::Soft`]: proposal `k` gives its probability, so a class gets
//!   the element-wise maximum over the proposals;
//! - [`Global::Original`]: the original label gets 1;
//! - [`Global::Prediction`]: the labeler's global (whole-image) prediction
//!   gives its probabilities;
//! - [`Global::None`]: no global signal.
//!
//! The image label of a class is the maximum of all its signal values.
//! Classes whose label is 0 are left out. Labels are sorted by decreasing
//! value, ties by increasing class index.
//!
//! # Provenance
//! Each label records its sources: the proposals (indices into the input
//! slice) whose value equals the label's value, and whether the original
//! label or the global prediction reached it, so that the JSON output can
//! show which regions gave each label.
//!
//! The default ([`AggregateOptions::default`]) is Local-Soft merged with the
//! original label.

use crate::error::{Error, Result};

/// One proposal's (or the global) class probabilities.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// Top-k `(class, probability)` pairs; unlisted classes have probability 0.
    Sparse(Vec<(u32, f32)>),
    /// `C` probabilities.
    Dense(Vec<f32>),
}

impl Prediction {
    /// The non-zero `(class, probability)` entries after checking them against `classes`;
    /// `what` names the prediction in errors.
    pub fn entries(&self, classes: usize, what: &str) -> Result<Vec<(u32, f32)>> {
        let check = |c: usize, p: f32| -> Result<()> {
            if c >= classes {
                return Err(Error::Invalid(format!("{what}: class {c} outside [0, {classes})")));
            }
            if !(p.is_finite() && (0.0..=1.0).contains(&p)) {
                return Err(Error::Invalid(format!(
                    "{what}: probability {p} of class {c}: expected a value in [0, 1]"
                )));
            }
            Ok(())
        };
        match self {
            Prediction::Sparse(v) => {
                let mut seen: Vec<u32> = Vec::with_capacity(v.len());
                for &(c, p) in v {
                    check(c as usize, p)?;
                    if seen.contains(&c) {
                        return Err(Error::Invalid(format!("{what}: class {c} listed twice")));
                    }
                    seen.push(c);
                }
                Ok(v.iter().copied().filter(|&(_, p)| p > 0.0).collect())
            }
            Prediction::Dense(v) => {
                if v.len() != classes {
                    return Err(Error::Mismatch(format!(
                        "{what}: dense prediction of {} values for {classes} classes",
                        v.len()
                    )));
                }
                for (c, &p) in v.iter().enumerate() {
                    check(c, p)?;
                }
                Ok(v.iter().enumerate().filter(|(_, &p)| p > 0.0).map(|(c, &p)| (c as u32, p)).collect())
            }
        }
    }
}

/// The local (per-proposal) rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Local {
    /// Classes whose max probability over proposals is `> tau` get 1.
    Hard {
        /// Threshold.
        tau: f64,
    },
    /// Element-wise maximum over proposals.
    Soft,
}

/// The global signal merged (element-wise max) with the local labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    /// Nothing merged.
    None,
    /// The original label, set to 1.
    Original,
    /// The labeler's whole-image prediction.
    Prediction,
}

/// Aggregation options; the default is Local-Soft + original.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggregateOptions {
    /// Local rule.
    pub local: Local,
    /// Global signal.
    pub global: Global,
}

impl Default for AggregateOptions {
    fn default() -> Self {
        AggregateOptions { local: Local::Soft, global: Global::Original }
    }
}

/// One output label with its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Class index.
    pub class: u32,
    /// Label value in `(0, 1]`.
    pub value: f32,
    /// Proposals (input indices) whose value equals `value`.
    pub proposals: Vec<usize>,
    /// The original label reached `value`.
    pub original: bool,
    /// The global prediction reached `value`.
    pub global: bool,
}

/// Per-image input of [`aggregate`].
#[derive(Debug, Clone, Copy)]
pub struct ImageInput<'a> {
    /// Per-proposal predictions.
    pub proposals: &'a [Prediction],
    /// The original label (needed with [`Global::Original`]).
    pub original: Option<u32>,
    /// The global prediction (needed with [`Global::Prediction`]).
    pub global: Option<&'a Prediction>,
}

/// Aggregates one image's predictions into labels (see the module docs).
pub fn aggregate(input: &ImageInput, classes: usize, opts: &AggregateOptions) -> Result<Vec<Label>> {
    if let Local::Hard { tau } = opts.local {
        if !(0.0..=1.0).contains(&tau) {
            return Err(Error::Invalid(format!("Local-Hard threshold {tau}: expected 0 <= tau <= 1")));
        }
    }
    // signal values per class: (value, source) with source = Some(k) for proposal k
    let mut signals: Vec<(u32, f32, Source)> = Vec::new();
    for (k, p) in input.proposals.iter().enumerate() {
        for (c, v) in p.entries(classes, &format!("proposal {k}"))? {
            let v = match opts.local {
                Local::Soft => v,
                Local::Hard { tau } => {
                    if v > tau as f32 {
                        1.0
                    } else {
                        continue;
                    }
                }
            };
            signals.push((c, v, Source::Proposal(k)));
        }
    }
    match opts.global {
        Global::None => {}
        Global::Original => {
            let o = input
                .original
                .ok_or_else(|| Error::Invalid("merging the original label, but the image has none".into()))?;
            if o as usize >= classes {
                return Err(Error::Invalid(format!("original label {o} outside [0, {classes})")));
            }
            signals.push((o, 1.0, Source::Original));
        }
        Global::Prediction => {
            let g = input
                .global
                .ok_or_else(|| Error::Invalid("merging the global prediction, but the image has none".into()))?;
            for (c, v) in g.entries(classes, "global prediction")? {
                signals.push((c, v, Source::Global));
            }
        }
    }
    signals.sort_by_key(|&(c, _, _)| c);
    let mut out: Vec<Label> = Vec::new();
    for group in signals.chunk_by(|x, y| x.0 == y.0) {
        let value = group.iter().map(|s| s.1).fold(0.0f32, f32::max);
        if value <= 0.0 {
            continue;
        }
        let mut l = Label { class: group[0].0, value, proposals: Vec::new(), original: false, global: false };
        for &(_, v, s) in group {
            if v == value {
                match s {
                    Source::Proposal(k) => l.proposals.push(k),
                    Source::Original => l.original = true,
                    Source::Global => l.global = true,
                }
            }
        }
        out.push(l);
    }
    sort_labels(&mut out);
    Ok(out)
}

/// Sorts by decreasing value, ties by increasing class.
pub fn sort_labels(labels: &mut [Label]) {
    labels.sort_by(|a, b| b.value.total_cmp(&a.value).then(a.class.cmp(&b.class)));
}

/// The labels as a dense vector of `classes` values.
pub fn to_dense(labels: &[Label], classes: usize) -> Result<Vec<f32>> {
    let mut v = vec![0.0f32; classes];
    for l in labels {
        *v.get_mut(l.class as usize)
            .ok_or_else(|| Error::Invalid(format!("label class {} outside [0, {classes})", l.class)))? = l.value;
    }
    Ok(v)
}

/// The labels as sparse `(class, value)` pairs, in their order.
pub fn to_sparse(labels: &[Label]) -> Vec<(u32, f32)> {
    labels.iter().map(|l| (l.class, l.value)).collect()
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Proposal(usize),
    Original,
    Global,
}
