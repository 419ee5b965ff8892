//! The evaluation loop: a model, images with their object masks and true
//! classes → accuracy and true-class confidence under each ablation, RFS
//! under foreground / background noise, and saliency alignment.
//!
//! The model is anything that implements [`Model`] (the CLI wraps the
//! neural runtime's classifiers; the tests use hand-made ones). Images
//! reach it in `[0, 1]`, after the recipe's resize and crop; it normalises
//! them itself. Images whose mask is empty are not scored: they are listed
//! in [`Evaluation::empty_masks`].
//!
//! Noise trials are seeded per image and trial (`seed`, the image's
//! position, the trial number), so results do not depend on batching; a
//! trial uses the same normal samples for the foreground and the
//! background run.

use std::collections::BTreeMap;

use labelscope_core::metrics::intervals::Bootstrap;
use labelscope_core::rng::{mix64, Xoshiro256};

use crate::ablation::{self, Ablation, TileStats};
use crate::noise::{noised, rfs, NoiseMode, Region};
use crate::planar::{Mask, Planar};
use crate::saliency::{alignment, Alignment};
use crate::score::Outcomes;
use crate::{Error, Result};

/// A classifier under test.
pub trait Model {
    /// Number of output classes.
    fn classes(&self) -> usize;

    /// Softmax probabilities `[classes]` per image (images in `[0, 1]`, all
    /// of one size).
    fn probabilities(&self, batch: &[&Planar]) -> Result<Vec<Vec<f32>>>;

    /// Saliency maps (GradCAM) of the given output classes, one per image,
    /// min–max scaled to `[0, 1]` and at the image size (row-major); `None`
    /// when the model has none.
    fn cams(&self, batch: &[&Planar], classes: &[usize]) -> Result<Option<Vec<Vec<f32>>>>;
}

/// How evaluation classes map onto the model's outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassMap {
    /// Evaluation class names.
    pub names: Vec<String>,
    /// Per evaluation class, the model outputs that count as it (the first
    /// is the one GradCAM explains).
    pub outputs: Vec<Vec<usize>>,
    /// Predict only among the mapped outputs (a 1000-way model read as a
    /// 15-way one) instead of over every output.
    pub restrict: bool,
}

impl ClassMap {
    /// The identity map over `names` (a model trained on these classes).
    pub fn identity(names: Vec<String>) -> ClassMap {
        let outputs = (0..names.len()).map(|i| vec![i]).collect();
        ClassMap { names, outputs, restrict: false }
    }

    /// The 15 Hard ImageNet classes on a 1000-way ImageNet model. The
    /// class Hard ImageNet calls "sunglasses" is ImageNet 837 (`sunglasses,
    /// dark glasses, shades`); Hard ImageNet's code uses 836 (`sunglass`, a
    /// burning lens), so both count.
    pub fn hard_imagenet_on_imagenet() -> ClassMap {
        let names = HARD_IMAGENET.iter().map(|(n, _)| n.to_string()).collect();
        let outputs = HARD_IMAGENET.iter().map(|(_, o)| o.to_vec()).collect();
        ClassMap { names, outputs, restrict: false }
    }

    /// Checks the map against a model with `classes` outputs.
    pub fn check(&self, classes: usize) -> Result<()> {
        if self.names.len() != self.outputs.len() || self.names.is_empty() {
            return Err(Error::Invalid("class map: one list of outputs per class name is needed".into()));
        }
        for (n, o) in self.names.iter().zip(&self.outputs) {
            if o.is_empty() {
                return Err(Error::Invalid(format!("class map: {n:?} maps to no model output")));
            }
            if let Some(&bad) = o.iter().find(|&&k| k >= classes) {
                return Err(Error::Invalid(format!(
                    "class map: {n:?} maps to output {bad}, but the model has {classes} outputs; expected a head of \
                     the class list's size or a map onto the model's classes"
                )));
            }
        }
        Ok(())
    }

    /// Whether `probs` predict evaluation class `class`, and the
    /// probability mass of its outputs (its confidence).
    pub fn judge(&self, probs: &[f32], class: usize) -> (bool, f64) {
        let mine = &self.outputs[class];
        let conf: f64 = mine.iter().map(|&k| f64::from(probs[k])).sum();
        let best = if self.restrict {
            self.outputs.iter().flatten().copied().max_by(|&a, &b| probs[a].total_cmp(&probs[b]).then(b.cmp(&a)))
        } else {
            (0..probs.len()).max_by(|&a, &b| probs[a].total_cmp(&probs[b]).then(b.cmp(&a)))
        };
        (best.is_some_and(|b| mine.contains(&b)), conf)
    }
}

/// The 15 Hard ImageNet classes and their ImageNet-1k outputs.
pub const HARD_IMAGENET: [(&str, &[usize]); 15] = [
    ("dog sled", &[537]),
    ("howler monkey", &[379]),
    ("seat belt", &[785]),
    ("ski", &[795]),
    ("sunglasses", &[837, 836]),
    ("swimming cap", &[433]),
    ("balance beam", &[416]),
    ("gymnastic horizontal bar", &[602]),
    ("patio", &[706]),
    ("hockey puck", &[746]),
    ("miniskirt", &[655]),
    ("keyboard space bar", &[810]),
    ("volleyball", &[890]),
    ("baseball player", &[981]),
    ("snorkel", &[801]),
];

/// One image to score.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Image id.
    pub id: String,
    /// Evaluation class.
    pub class: usize,
    /// The image in `[0, 1]`.
    pub image: Planar,
    /// The object mask, the image's size.
    pub mask: Mask,
}

/// Noise settings of the RFS measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseOptions {
    /// Noise scale.
    pub sigma: f64,
    /// L∞ (per value) or L2 (per image).
    pub mode: NoiseMode,
    /// Trials per image.
    pub trials: usize,
    /// Seed.
    pub seed: u64,
}

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Ablations ([`Ablation::None`] is the clean accuracy).
    pub ablations: Vec<Ablation>,
    /// RFS noise, if any.
    pub noise: Option<NoiseOptions>,
    /// Saliency alignment (needs [`Model::cams`]).
    pub saliency: bool,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Per condition (`none`, `gray`, `gray-bbox`, `tile`, `noise-fg`,
    /// `noise-bg`), the per-image outcomes.
    pub conditions: BTreeMap<String, Outcomes>,
    /// Per scored image: `(id, class, alignment)`.
    pub alignments: Vec<(String, usize, Alignment)>,
    /// Images left out because their mask is empty.
    pub empty_masks: Vec<String>,
    /// Tile ablation totals.
    pub tile: TileStats,
    /// Images scored.
    pub scored: usize,
    /// Per scored image, its noise results (with noise).
    pub noise: Vec<NoiseRow>,
}

/// The noise results of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseRow {
    /// Evaluation class.
    pub class: usize,
    /// Trials run.
    pub trials: u32,
    /// Trials right under foreground noise.
    pub fg_correct: u32,
    /// Trials right under background noise.
    pub bg_correct: u32,
}

/// The RFS of an evaluation, overall and per class.
#[derive(Debug, Clone, PartialEq)]
pub struct RfsSummary {
    /// Class-balanced accuracy under foreground noise.
    pub a_fg: f64,
    /// Class-balanced accuracy under background noise.
    pub a_bg: f64,
    /// RFS.
    pub rfs: f64,
    /// 95 % bootstrap interval of the RFS over images (1000 resamples).
    pub interval: Option<(f64, f64)>,
    /// Per class: `(a_fg, a_bg, rfs)`.
    pub per_class: BTreeMap<usize, (f64, f64, f64)>,
}

fn noise_seed(seed: u64, image: usize, trial: usize) -> u64 {
    mix64(seed ^ mix64(image as u64 + 1) ^ mix64((trial as u64 + 1) << 32))
}

/// Scores `samples` (in batches of `batch`) and adds them to `into`;
/// `first` is the position of the first sample in the whole run (noise
/// seeds).
pub fn evaluate_batch(
    model: &dyn Model,
    map: &ClassMap,
    samples: &[Sample],
    first: usize,
    opts: &Options,
    into: &mut Evaluation,
) -> Result<()> {
    map.check(model.classes())?;
    let mut kept: Vec<(usize, &Sample)> = Vec::with_capacity(samples.len());
    for (k, s) in samples.iter().enumerate() {
        if s.class >= map.names.len() {
            return Err(Error::Invalid(format!(
                "image {:?}: class {} is not one of the {} classes of the map",
                s.id,
                s.class,
                map.names.len()
            )));
        }
        s.image.check_mask(&s.mask).map_err(|e| Error::Invalid(format!("image {:?}: {e}", s.id)))?;
        if s.mask.count() == 0 {
            into.empty_masks.push(s.id.clone());
        } else {
            kept.push((first + k, s));
        }
    }
    if kept.is_empty() {
        return Ok(());
    }
    into.scored += kept.len();
    let mut score = |name: &str, images: &[Planar]| -> Result<()> {
        let refs: Vec<&Planar> = images.iter().collect();
        let probs = model.probabilities(&refs)?;
        let out = into.conditions.entry(name.to_string()).or_default();
        for ((_, s), p) in kept.iter().zip(&probs) {
            let (ok, conf) = map.judge(p, s.class);
            out.push(s.class, ok, conf);
        }
        Ok(())
    };
    for &a in &opts.ablations {
        let mut images = Vec::with_capacity(kept.len());
        for (_, s) in &kept {
            images.push(match a {
                Ablation::Tile => {
                    let (img, st) = ablation::tile(&s.image, &s.mask)?;
                    into.tile.components += st.components;
                    into.tile.fallbacks += st.fallbacks;
                    img
                }
                other => ablation::apply(other, &s.image, &s.mask)?,
            });
        }
        score(a.name(), &images)?;
    }
    if let Some(n) = opts.noise {
        let start = into.noise.len();
        into.noise.extend(kept.iter().map(|(_, s)| NoiseRow {
            class: s.class,
            trials: 0,
            fg_correct: 0,
            bg_correct: 0,
        }));
        for trial in 0..n.trials {
            for region in [Region::Foreground, Region::Background] {
                let mut images = Vec::with_capacity(kept.len());
                for &(pos, s) in &kept {
                    let mut rng = Xoshiro256::from_seed(noise_seed(n.seed, pos, trial));
                    images.push(noised(&s.image, &s.mask, region, n.sigma, n.mode, &mut rng)?);
                }
                let refs: Vec<&Planar> = images.iter().collect();
                let probs = model.probabilities(&refs)?;
                let name = if region == Region::Foreground { "noise-fg" } else { "noise-bg" };
                let out = into.conditions.entry(name.to_string()).or_default();
                for (k, ((_, s), p)) in kept.iter().zip(&probs).enumerate() {
                    let (ok, conf) = map.judge(p, s.class);
                    out.push(s.class, ok, conf);
                    let row = &mut into.noise[start + k];
                    if region == Region::Foreground {
                        row.trials += 1;
                        row.fg_correct += u32::from(ok);
                    } else {
                        row.bg_correct += u32::from(ok);
                    }
                }
            }
        }
    }
    if opts.saliency {
        let refs: Vec<&Planar> = kept.iter().map(|(_, s)| &s.image).collect();
        let classes: Vec<usize> = kept.iter().map(|(_, s)| map.outputs[s.class][0]).collect();
        let cams = model
            .cams(&refs, &classes)?
            .ok_or_else(|| Error::Invalid("saliency alignment needs a model with GradCAM".into()))?;
        for ((_, s), cam) in kept.iter().zip(&cams) {
            into.alignments.push((s.id.clone(), s.class, alignment(cam, &s.mask)?));
        }
    }
    Ok(())
}

impl Evaluation {
    /// The RFS from the per-image noise results (`None` without noise).
    pub fn rfs(&self) -> Option<RfsSummary> {
        if self.noise.is_empty() {
            return None;
        }
        // Per class (images, trials, foreground right, background right), weighted by `w`.
        let tally = |w: Option<&[u32]>| {
            let mut m: BTreeMap<usize, (u64, u64, u64)> = BTreeMap::new();
            for (i, r) in self.noise.iter().enumerate() {
                let k = u64::from(w.map_or(1, |w| w[i]));
                if k == 0 {
                    continue;
                }
                let e = m.entry(r.class).or_insert((0, 0, 0));
                e.0 += k * u64::from(r.trials);
                e.1 += k * u64::from(r.fg_correct);
                e.2 += k * u64::from(r.bg_correct);
            }
            m
        };
        let balanced = |m: &BTreeMap<usize, (u64, u64, u64)>| {
            let n = m.len() as f64;
            let f = m.values().map(|e| e.1 as f64 / e.0 as f64).sum::<f64>() / n;
            let b = m.values().map(|e| e.2 as f64 / e.0 as f64).sum::<f64>() / n;
            (f, b)
        };
        let all = tally(None);
        let (a_fg, a_bg) = balanced(&all);
        let per_class = all
            .iter()
            .map(|(&c, e)| {
                let (x, y) = (e.1 as f64 / e.0 as f64, e.2 as f64 / e.0 as f64);
                (c, (x, y, rfs(x, y)))
            })
            .collect();
        let interval = (self.noise.len() > 1)
            .then(|| {
                Bootstrap::default().bootstrap_percentile(self.noise.len(), |w| {
                    let (f, b) = balanced(&tally(Some(w)));
                    Some(rfs(f, b))
                })
            })
            .flatten();
        Some(RfsSummary { a_fg, a_bg, rfs: rfs(a_fg, a_bg), interval, per_class })
    }
}
