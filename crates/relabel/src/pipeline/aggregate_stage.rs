//! Stage 5: image labels from `predictions.jsonl`.
//!
//! Per image, the proposals' top-k lists (unlisted classes = 0) and the
//! global prediction go through [`crate::aggregate::aggregate`] with the
//! chosen rules (default Local-Soft + original). Then, when a calibration
//! label set is given, the candidate ambiguous pairs
//! ([`Calibration::candidate_pairs`] with `min_count`, `min_score`) drive
//! (a) prior propagation ([`Prior::propagate_sparse`], applied to every
//! image) and/or (b) threshold pairing ([`fit_thresholds`] on all images'
//! labels after (a), then [`apply_thresholds`]). Labels whose value is
//! raised or added by (a)/(b) keep their provenance from the aggregation
//! (an added label has none).
//!
//! Outputs (each optional): the TSV, the JSON with proposal ids and masks
//! (needs the proposals file), a dense `[N, C]` `.npy`, CSR arrays; and the
//! statistics ([`LabelStats`], labels with value `≥ stats_tau`, 0.5 by
//! default).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use labelscope_core::classes::ClassTable;
use labelscope_core::rle::Rle;

use super::infer_stage::read_predictions;
use super::{read_original_labels, read_proposals};
use crate::aggregate::{aggregate, AggregateOptions, Global, ImageInput, Label, Prediction};
use crate::ambiguity::{apply_thresholds, fit_thresholds, AmbiguousPair, Calibration, PairThreshold, Prior};
use crate::error::{Error, Result};
use crate::output::{json_image, write_csr, write_dense_npy, write_json, write_tsv, LabelStats, TsvRecord};

/// Options of [`aggregate_labels`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggregateStageOptions {
    /// Local and global rules.
    pub aggregate: AggregateOptions,
    /// Apply prior propagation (needs a calibration set).
    pub prior: bool,
    /// Apply threshold pairing (needs a calibration set).
    pub pairing: bool,
    /// Candidate pairs need `N_ab ≥ min_count` in the calibration set.
    pub min_count: u64,
    /// Candidate pairs need an overlap score `≥ min_score`.
    pub min_score: f64,
    /// A class is present for pairing when its value is `≥ present`.
    pub present: f32,
    /// Threshold of the statistics.
    pub stats_tau: f32,
}

impl Default for AggregateStageOptions {
    fn default() -> Self {
        AggregateStageOptions {
            aggregate: AggregateOptions::default(),
            prior: false,
            pairing: false,
            min_count: 5,
            min_score: 0.5,
            present: 0.5,
            stats_tau: 0.5,
        }
    }
}

/// Where to write (each `None` = not written).
#[derive(Debug, Clone, Default)]
pub struct AggregateOutputs {
    /// TSV in the published layout.
    pub tsv: Option<PathBuf>,
    /// JSON with proposals and provenance.
    pub json: Option<PathBuf>,
    /// Dense `[N, C]` `.npy`.
    pub dense: Option<PathBuf>,
    /// CSR prefix.
    pub csr: Option<PathBuf>,
}

/// What [`aggregate_labels`] produced.
#[derive(Debug, Clone)]
pub struct AggregateReport {
    /// Image ids, in output order.
    pub ids: Vec<String>,
    /// Final labels per image, sorted by decreasing value.
    pub labels: Vec<Vec<(u32, f32)>>,
    /// Statistics.
    pub stats: LabelStats,
    /// Candidate pairs used (empty without calibration).
    pub pairs: Vec<AmbiguousPair>,
    /// Fitted thresholds (pairing only).
    pub thresholds: Vec<PairThreshold>,
    /// Labels added by pairing.
    pub added: u64,
}

fn sparse(v: &[(u32, f32)]) -> Prediction {
    Prediction::Sparse(v.to_vec())
}

/// Runs the aggregation stage (see the module docs). `calibration` is the
/// calibration label set (one class set per image); `proposals` the COCO
/// file, needed for the JSON output; `class_names` names the JSON labels.
pub fn aggregate_labels(
    predictions: &Path,
    labels: Option<&Path>,
    calibration: Option<&[Vec<u32>]>,
    proposals: Option<&Path>,
    class_names: Option<&ClassTable>,
    opts: &AggregateStageOptions,
    outputs: &AggregateOutputs,
) -> Result<AggregateReport> {
    let preds = read_predictions(predictions)?;
    let classes = preds.first().map_or(0, |p| p.classes);
    if let Some((i, p)) = preds.iter().enumerate().find(|(_, p)| p.classes != classes) {
        return Err(Error::Format {
            path: predictions.to_path_buf(),
            location: format!("line {}", i + 1),
            message: format!("{} classes; the first line has {classes}", p.classes),
        });
    }
    let originals = match labels {
        Some(l) => {
            let o = read_original_labels(l)?;
            o.check_classes(classes, &format!("the head of {}", predictions.display()))?;
            Some(o)
        }
        None => None,
    };
    if opts.aggregate.global == Global::Original && originals.is_none() {
        return Err(Error::Invalid("the global signal `original` needs the original labels".into()));
    }
    if (opts.prior || opts.pairing) && calibration.is_none() {
        return Err(Error::Invalid("prior propagation and threshold pairing need a calibration label set".into()));
    }
    let mut agg: Vec<Vec<Label>> = Vec::with_capacity(preds.len());
    let mut orig: Vec<Option<u32>> = Vec::with_capacity(preds.len());
    for (i, p) in preds.iter().enumerate() {
        let o = match &originals {
            Some(ol) => match ol.labels.get(&p.id) {
                Some(&(c, _)) => Some(c),
                None if opts.aggregate.global == Global::Original => {
                    return Err(Error::Format {
                        path: ol.path.clone(),
                        location: "whole file".into(),
                        message: format!(
                            "no original label for image {:?} ({} line {})",
                            p.id,
                            predictions.display(),
                            i + 1
                        ),
                    })
                }
                None => None,
            },
            None => None,
        };
        let props: Vec<Prediction> = p.proposals.iter().map(|q| sparse(&q.top)).collect();
        let global = sparse(&p.global);
        let input = ImageInput { proposals: &props, original: o, global: Some(&global) };
        let l = aggregate(&input, classes, &opts.aggregate).map_err(|e| Error::Format {
            path: predictions.to_path_buf(),
            location: format!("line {}", i + 1),
            message: e.to_string(),
        })?;
        agg.push(l);
        orig.push(o);
    }
    let mut soft: Vec<Vec<(u32, f32)>> = agg.iter().map(|l| l.iter().map(|x| (x.class, x.value)).collect()).collect();
    let mut pairs = Vec::new();
    let mut thresholds = Vec::new();
    let mut added = 0;
    if let Some(cal) = calibration {
        let c = Calibration::from_sets(cal, classes)?;
        pairs = c.candidate_pairs(opts.min_count, opts.min_score);
        if opts.prior {
            let prior = Prior::new(&pairs, classes)?;
            for s in soft.iter_mut() {
                *s = prior.propagate_sparse(s)?;
            }
        }
        if opts.pairing {
            thresholds = fit_thresholds(&pairs, &soft, opts.present)?;
            added = apply_thresholds(&thresholds, &mut soft, opts.present)?;
        }
    }
    for s in soft.iter_mut() {
        s.retain(|e| e.1 > 0.0);
        s.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    }
    // Final labels with the aggregation's provenance.
    let finals: Vec<Vec<Label>> = soft
        .iter()
        .zip(&agg)
        .map(|(s, a)| {
            let by: HashMap<u32, &Label> = a.iter().map(|l| (l.class, l)).collect();
            s.iter()
                .map(|&(c, v)| match by.get(&c) {
                    Some(l) => Label { value: v, ..(*l).clone() },
                    None => Label { class: c, value: v, proposals: Vec::new(), original: false, global: false },
                })
                .collect()
        })
        .collect();
    if let Some(p) = &outputs.tsv {
        let recs: Vec<TsvRecord> = preds
            .iter()
            .zip(&soft)
            .zip(&orig)
            .map(|((p, s), &o)| TsvRecord { filename: p.file.clone(), original: o, labels: s.clone() })
            .collect();
        write_tsv(p, &recs)?;
    }
    if let Some(jp) = &outputs.json {
        let pp = proposals.ok_or_else(|| Error::Invalid("the JSON output needs the proposals file (masks)".into()))?;
        let props = read_proposals(pp)?;
        let mut images = Vec::with_capacity(preds.len());
        for ((p, l), &o) in preds.iter().zip(&finals).zip(&orig) {
            let by_ann: HashMap<u64, &Rle> =
                props.get(&p.id).map(|ip| ip.masks.iter().map(|(a, _, r)| (*a, r)).collect()).unwrap_or_default();
            let mut masks = Vec::with_capacity(p.proposals.len());
            let mut ids = Vec::with_capacity(p.proposals.len());
            for q in &p.proposals {
                let r = by_ann.get(&q.id).ok_or_else(|| Error::Format {
                    path: pp.to_path_buf(),
                    location: format!("image {:?}", p.id),
                    message: format!("no annotation {} (named in {})", q.id, predictions.display()),
                })?;
                masks.push((*r).clone());
                ids.push(q.id as usize);
            }
            images.push(json_image(&p.file, o, (p.width, p.height), &masks, Some(&ids), l, class_names)?);
        }
        write_json(jp, &images)?;
    }
    if let Some(d) = &outputs.dense {
        write_dense_npy(d, &soft, classes)?;
    }
    if let Some(c) = &outputs.csr {
        write_csr(c, &soft, classes)?;
    }
    let stats = LabelStats::from_labels(&soft, opts.stats_tau);
    Ok(AggregateReport {
        ids: preds.iter().map(|p| p.id.clone()).collect(),
        labels: soft,
        stats,
        pairs,
        thresholds,
        added,
    })
}
