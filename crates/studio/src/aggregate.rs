//! Vote aggregation of Verify projects: from every annotator's yes / no /
//! maybe answers to a probability per (image, proposed label), then label
//! sets by a threshold (ImageNet-ReaL kept a label at 0.8), in the formats
//! of `labelscope eval`.
//!
//! * [`Method::Majority`]: the share of yes among the answers (maybe counts
//!   half, or is left out with [`labelscope_core::votes::MaybePolicy::Ignore`]).
//! * [`Method::DawidSkene`]: the binary Dawid–Skene posterior of "the label
//!   applies" (per-worker confusion over yes / no / maybe;
//!   [`labelscope_core::votes::dawid_skene`]).
//!
//! Items are every (image, proposed label) pair of the project; a pair
//! nobody answered has no probability and is never kept. Workers are the
//! keyed worker hashes; assignments in `exclude` (e.g. rejected by quality
//! control) do not vote.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_json::Value;

use labelscope_core::classes::ClassTable;
use labelscope_core::labels::{LabelFormat, LabelSets};
use labelscope_core::votes::{dawid_skene, majority, threshold_sets, Answer, DsOptions, MaybePolicy, Vote};

use crate::db::Db;
use crate::manifest::{ImageExtra, Task};
use crate::{Error, Result};

/// How votes become probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Share of yes.
    Majority(MaybePolicy),
    /// Dawid–Skene posterior.
    DawidSkene(DsOptions),
}

/// One (image, proposed label) pair with its votes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Image key.
    pub image: String,
    /// Proposed label (class key).
    pub label: String,
    /// Yes, no and maybe answers.
    pub votes: [u32; 3],
    /// Probability that the label applies (`None`: no answers).
    pub probability: Option<f64>,
    /// Whether the label is kept (probability ≥ threshold).
    pub kept: bool,
}

/// The aggregated project.
#[derive(Debug, Clone)]
pub struct Aggregated {
    /// Every item, by image (manifest order) then proposed order.
    pub items: Vec<Item>,
    /// Kept labels per image (class keys), in manifest order of the images.
    pub sets: Vec<(String, Vec<String>)>,
    /// Workers who voted.
    pub workers: usize,
    /// Votes used.
    pub votes: usize,
    /// Dawid–Skene: iterations run and whether it converged.
    pub em: Option<(usize, bool)>,
}

impl Aggregated {
    /// The label sets as ImageNet class indices (for `labelscope eval`);
    /// a kept label that is not an ImageNet WordNet id is an error naming it.
    pub fn label_sets(&self, path: &Path) -> Result<LabelSets> {
        let table = ClassTable::imagenet();
        let mut names = Vec::with_capacity(self.sets.len());
        let mut sets = Vec::with_capacity(self.sets.len());
        for (image, labels) in &self.sets {
            let mut s = Vec::with_capacity(labels.len());
            for l in labels {
                let k = table.index_of_wnid(l).ok_or_else(|| {
                    Error::Invalid(format!(
                        "image {image:?}: kept label {l:?} is not an ImageNet WordNet id, so it has no class index; \
                         write the label sets by key instead (--by-key)"
                    ))
                })?;
                s.push(k as u32);
            }
            names.push(image.clone());
            sets.push(s);
        }
        LabelSets::new(path, LabelFormat::GenericJson, names, sets).map_err(Error::from)
    }

    /// The label sets by class key: `{image: [key, ...]}` (JSON text).
    pub fn sets_by_key_json(&self) -> String {
        let m: serde_json::Map<String, Value> = self
            .sets
            .iter()
            .map(|(i, l)| (i.clone(), Value::Array(l.iter().map(|x| Value::String(x.clone())).collect())))
            .collect();
        let mut s = Value::Object(m).to_string();
        s.push('\n');
        s
    }
}

/// Aggregates the answers of a Verify project.
pub async fn aggregate(
    db: &Db,
    project: &str,
    method: Method,
    threshold: f64,
    exclude: &HashSet<i64>,
) -> Result<Aggregated> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(Error::Invalid(format!("threshold {threshold}: expected a number from 0 to 1")));
    }
    let (pid, task) = crate::qc::project_task(db, project).await?;
    if task != Task::Verify {
        return Err(Error::Invalid(format!(
            "project {project:?} is a {} project; only verify projects have votes to aggregate",
            task.name()
        )));
    }
    let images = db.project_images(pid).await?;
    let mut items: Vec<Item> = Vec::new();
    let mut index: BTreeMap<(i64, String), usize> = BTreeMap::new();
    let mut pairs: Vec<(usize, u32)> = Vec::new();
    for (k, im) in images.iter().enumerate() {
        for (j, l) in ImageExtra::from_stored(im.extra.as_deref()).proposed.into_iter().enumerate() {
            index.insert((im.id, l.clone()), items.len());
            pairs.push((k, j as u32));
            items.push(Item { image: im.name.clone(), label: l, votes: [0; 3], probability: None, kept: false });
        }
    }
    let mut workers: BTreeMap<String, u32> = BTreeMap::new();
    let mut votes = Vec::new();
    for r in db.export_rows(pid).await? {
        if exclude.contains(&r.assignment) {
            continue;
        }
        let d: Value = serde_json::from_str(&r.data)
            .map_err(|e| Error::Schema(format!("stored record of image {:?} is unreadable: {e}", r.image)))?;
        let n = workers.len() as u32;
        let w = *workers.entry(r.worker.clone()).or_insert(n);
        for a in d["answers"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let (Some(label), Some(ans)) = (a["label"].as_str(), a["answer"].as_str()) else { continue };
            let Some(&item) = index.get(&(r.image_id, label.to_string())) else { continue };
            let answer = Answer::parse(ans)?;
            items[item].votes[answer.index()] += 1;
            votes.push(Vote { item: item as u32, worker: w, answer });
        }
    }
    let (probs, em): (Vec<Option<f64>>, Option<(usize, bool)>) = match method {
        Method::Majority(policy) => (majority(items.len(), &votes, policy)?, None),
        Method::DawidSkene(opts) => {
            let r = dawid_skene(items.len(), workers.len(), &votes, &opts)?;
            let voted: Vec<bool> = items.iter().map(|i| i.votes.iter().sum::<u32>() > 0).collect();
            (r.posterior.iter().zip(&voted).map(|(&p, &v)| v.then_some(p)).collect(), Some((r.iterations, r.converged)))
        }
    };
    let kept = threshold_sets(&probs, &pairs, images.len(), threshold)?;
    for (it, p) in items.iter_mut().zip(&probs) {
        it.probability = *p;
        it.kept = p.is_some_and(|p| p >= threshold);
    }
    let mut sets = Vec::with_capacity(images.len());
    let mut start = 0usize;
    for (k, im) in images.iter().enumerate() {
        let n = pairs[start..].iter().take_while(|(i, _)| *i == k).count();
        let labels: Vec<String> = kept[k].iter().map(|&j| items[start + j as usize].label.clone()).collect();
        sets.push((im.name.clone(), labels));
        start += n;
    }
    Ok(Aggregated { items, sets, workers: workers.len(), votes: votes.len(), em })
}

/// The items as CSV: `image,label,yes,no,maybe,probability,kept`.
pub fn items_csv(a: &Aggregated) -> String {
    let mut s = String::from("image,label,yes,no,maybe,probability,kept\n");
    for it in &a.items {
        let p = it.probability.map(|p| format!("{p:.6}")).unwrap_or_default();
        s.push_str(&format!(
            "{},{},{},{},{},{p},{}\n",
            crate::export::csv_text(&it.image),
            crate::export::csv_text(&it.label),
            it.votes[0],
            it.votes[1],
            it.votes[2],
            u8::from(it.kept)
        ));
    }
    s
}
