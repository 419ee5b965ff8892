//! Stage 3: train the region labeler on `regions.safetensors`
//! ([`labelscope_nn::train::train`]): the head goes to
//! `OUT/head.safetensors` + `OUT/head.json`, checkpoints to
//! `OUT/checkpoints/` (resumable with `resume`), and the held-out report with
//! the per-epoch loss and accuracy to `OUT/heldout.json`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::Device;
use labelscope_nn::head::HeadConfig;
use labelscope_nn::train::{train, EpochSummary, HeldOutReport, Progress, RunOptions, TrainConfig, TrainData};
use serde::{Deserialize, Serialize};

use super::Regions;
use crate::error::{Error, Result};

/// The content of `heldout.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Regions in the file.
    pub regions: usize,
    /// Head configuration.
    pub head: HeadConfig,
    /// Training configuration.
    pub train: TrainConfig,
    /// Steps done.
    pub steps: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// Held-out top-1 accuracy (`None` without held-out rows).
    pub heldout_top1: Option<f64>,
    /// Held-out top-5 accuracy.
    pub heldout_top5: Option<f64>,
    /// The held-out counts, also per class.
    pub report: HeldOutReport,
    /// The epochs run in this call.
    pub epochs: Vec<EpochSummary>,
}

/// The head file in a training output folder.
pub fn head_path(out_dir: &Path) -> PathBuf {
    out_dir.join("head.safetensors")
}

/// Trains a head of `head` (its `in_dim` and `classes` are taken from the
/// region file when 0) on `regions` into `out_dir` (see the module docs).
/// Returns `None` when the progress callback stopped the run (a checkpoint
/// is left for `resume`).
#[allow(clippy::too_many_arguments)]
pub fn train_head(
    regions: &Path,
    out_dir: &Path,
    mut head: HeadConfig,
    cfg: &TrainConfig,
    resume: bool,
    checkpoint_every: Option<u64>,
    device: &Device,
    progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<Option<TrainSummary>> {
    let r = Regions::read(regions)?;
    if r.is_empty() {
        return Err(Error::Invalid(format!("{}: no training regions (nothing was selected)", regions.display())));
    }
    if head.in_dim == 0 {
        head.in_dim = r.dim;
    }
    if head.classes == 0 {
        head.classes = r.classes;
    }
    if head.in_dim != r.dim {
        return Err(Error::Mismatch(format!(
            "{}: features of dimension {}, the head takes {}",
            regions.display(),
            r.dim,
            head.in_dim
        )));
    }
    if let Some((row, &c)) = r.labels.iter().enumerate().find(|(_, &c)| c as usize >= head.classes) {
        return Err(Error::Format {
            path: regions.to_path_buf(),
            location: format!("tensor \"labels\" row {row}"),
            message: format!("class {c} outside the head's {} classes", head.classes),
        });
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Io { path: out_dir.to_path_buf(), source: e })?;
    let data = TrainData::from_f32(r.features.clone(), r.dim, r.labels.clone(), device)?;
    let run = RunOptions { checkpoint_dir: Some(out_dir.join("checkpoints")), checkpoint_every, resume };
    let outcome = train(&data, head, cfg, &run, device, progress)?;
    if !outcome.completed {
        return Ok(None);
    }
    outcome.head.save(&head_path(out_dir))?;
    let s = TrainSummary {
        regions: r.len(),
        head,
        train: *cfg,
        steps: outcome.steps,
        total_steps: outcome.total_steps,
        heldout_top1: outcome.report.top1_accuracy(),
        heldout_top5: outcome.report.top5_accuracy(),
        report: outcome.report,
        epochs: outcome.epochs,
    };
    let text = serde_json::to_string_pretty(&s).map_err(|e| Error::Invalid(format!("heldout.json: {e}")))?;
    labelscope_core::atomic::write_atomic(&out_dir.join("heldout.json"), text.as_bytes())?;
    Ok(Some(s))
}
