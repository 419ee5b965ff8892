//! Training the [`RegionHead`] on in-memory frozen features: seeded
//! held-out split and shuffling, [`Optimizer`] + [`LrSchedule`] +
//! [`cross_entropy`], a progress callback, atomic resumable checkpoints and
//! a held-out accuracy report.
//!
//! # Randomness
//!
//! Every random draw comes from a xoshiro256** stream that is a pure
//! function of the run's seed and a position: initialisation `(seed, init)`,
//! the held-out split `(seed, split)`, the order of epoch e `(seed, shuffle, e)`,
//! the dropout mask of step k `(seed, dropout, k)`. The generator state of a
//! run is therefore its seed and its step, which is what a checkpoint stores;
//! a resumed run draws exactly what the uninterrupted run would have drawn.
//!
//! * Split: a Fisher–Yates permutation of the rows; its first
//!   `round(heldout_fraction · N)` rows are held out; the rest, in ascending
//!   order, are the training rows.
//! * Epoch e: a Fisher–Yates shuffle of the training rows (for i from n−1
//!   down to 1, swap i with a uniform j ≤ i), cut into batches of
//!   `batch_size` in that order; the last batch may be smaller (nothing is
//!   dropped). Steps per epoch: ⌈n_train / batch_size⌉.
//!
//! # Checkpoints
//!
//! A checkpoint directory holds `checkpoint.json` (the head and training
//! configuration and a fingerprint of the data: rows, dimension, FNV-1a of
//! the labels; written once when the run starts) and
//! `checkpoint.safetensors`, replaced atomically (temporary file + rename)
//! at the end of every epoch, every `checkpoint_every` steps and when the
//! progress callback stops the run. Its tensors: `model.<param>` (weights,
//! f32), `optim.<param>.{momentum_buffer | exp_avg, exp_avg_sq}` and
//! `optim.<param>.step`, `train.step` and `train.epoch` (I64 `[1]`: optimiser
//! steps done, current epoch), `train.rng_seed` (U32 `[2]`: the seed, low and
//! high half; with the step it is the generator state) and
//! `train.epoch_loss` (F64 `[2]`: the running loss sum and row count of the
//! current epoch). All progress lives in the one safetensors file, so a
//! crash leaves either the old or the new checkpoint, never a mix.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::head::{read_safetensors, stream, tag, topk_row, write_atomic, write_safetensors, HeadConfig, RegionHead};
use crate::optim::{cross_entropy, LrSchedule, Optimizer, OptimizerConfig};

/// The name of a checkpoint's configuration file inside its directory.
pub const CHECKPOINT_JSON: &str = "checkpoint.json";
/// The name of a checkpoint's state file inside its directory.
pub const CHECKPOINT_SAFETENSORS: &str = "checkpoint.safetensors";
const CHECKPOINT_FORMAT: &str = "labelscope-head-checkpoint/1";

/// Features `[N, D]` and their class labels, in memory (on the training device).
#[derive(Debug, Clone)]
pub struct TrainData {
    features: Tensor,
    labels: Vec<u32>,
}

impl TrainData {
    /// Features `[N, D]` (f32, f16 or bf16; kept in their dtype, each batch is
    /// converted to f32) and `N` labels.
    pub fn new(features: Tensor, labels: Vec<u32>) -> Result<Self> {
        let dims = features.dims();
        if dims.len() != 2 {
            return Err(Error::Shape(format!("training features have shape {dims:?}, expected [rows, dim]")));
        }
        if !matches!(features.dtype(), DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::Shape(format!(
                "training features have dtype {:?}, expected f32, f16 or bf16",
                features.dtype()
            )));
        }
        if dims[0] != labels.len() {
            return Err(Error::Shape(format!("{} feature rows but {} labels", dims[0], labels.len())));
        }
        Ok(TrainData { features, labels })
    }

    /// Row-major f32 features with `dim` columns, on `device`.
    pub fn from_f32(values: Vec<f32>, dim: usize, labels: Vec<u32>, device: &Device) -> Result<Self> {
        if dim == 0 || values.len() != labels.len() * dim {
            return Err(Error::Shape(format!(
                "{} feature values are not {} rows of {dim}",
                values.len(),
                labels.len()
            )));
        }
        let n = labels.len();
        TrainData::new(Tensor::from_vec(values, (n, dim), device)?, labels)
    }

    /// Number of rows N.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Feature dimension D.
    pub fn dim(&self) -> usize {
        self.features.dims()[1]
    }

    /// The features `[N, D]`.
    pub fn features(&self) -> &Tensor {
        &self.features
    }

    /// The labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Checks that every label is a class of a `classes`-class head; the
    /// error names the first offending row.
    pub fn check_labels(&self, classes: usize) -> Result<()> {
        match self.labels.iter().position(|&y| y as usize >= classes) {
            None => Ok(()),
            Some(row) => Err(Error::Invalid(format!(
                "labels row {row}: class index {} is outside the head's {classes} classes (valid: 0..={})",
                self.labels[row],
                classes.saturating_sub(1)
            ))),
        }
    }

    fn batch(&self, rows: &[u32]) -> Result<(Tensor, Vec<u32>)> {
        let idx = Tensor::from_slice(rows, rows.len(), self.features.device())?;
        let x = self.features.index_select(&idx, 0)?.to_dtype(DType::F32)?;
        Ok((x, rows.iter().map(|&r| self.labels[r as usize]).collect()))
    }

    fn fingerprint(&self) -> DataFingerprint {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for y in &self.labels {
            for b in y.to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        DataFingerprint { rows: self.len() as u64, dim: self.dim() as u64, labels_fnv1a: format!("{h:016x}") }
    }
}

/// Everything that shapes a training run (besides the head and the data).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training rows.
    pub epochs: u64,
    /// Rows per optimiser step.
    pub batch_size: usize,
    /// Seed of initialisation, split, shuffling and dropout.
    pub seed: u64,
    /// Share of the rows held out for evaluation, in `[0, 1)`.
    pub heldout_fraction: f64,
    /// Optimiser and base learning rate.
    pub optimizer: OptimizerConfig,
    /// Linear warm-up steps (see [`LrSchedule`]).
    pub warmup_steps: u64,
    /// Learning-rate factor at step 0 of the warm-up.
    pub warmup_start_factor: f64,
    /// Factor the cosine decays to at the last step.
    pub min_lr_factor: f64,
    /// Label smoothing ε of the cross-entropy.
    pub label_smoothing: f64,
    /// Exempt the biases from weight decay.
    pub no_decay_bias: bool,
}

impl TrainConfig {
    /// Defaults around an optimiser: 10 epochs, batch 256, seed 0, 10 % held
    /// out, no warm-up, cosine to 0, no label smoothing, no decay on biases.
    pub fn new(optimizer: OptimizerConfig) -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 256,
            seed: 0,
            heldout_fraction: 0.1,
            optimizer,
            warmup_steps: 0,
            warmup_start_factor: 0.0,
            min_lr_factor: 0.0,
            label_smoothing: 0.0,
            no_decay_bias: true,
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        self.optimizer.validate()?;
        let bad = |m: String| Err(Error::Invalid(format!("training config: {m}")));
        if self.batch_size == 0 {
            return bad("batch_size must be positive".into());
        }
        if !(0.0..1.0).contains(&self.heldout_fraction) {
            return bad(format!("heldout_fraction {} is not in [0, 1)", self.heldout_fraction));
        }
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return bad(format!("label_smoothing {} is not in [0, 1]", self.label_smoothing));
        }
        if !self.warmup_start_factor.is_finite() || !self.min_lr_factor.is_finite() {
            return bad("warmup_start_factor and min_lr_factor must be finite".into());
        }
        Ok(())
    }

    /// The schedule of a run of `total_steps` steps.
    pub fn schedule(&self, total_steps: u64) -> LrSchedule {
        LrSchedule {
            warmup_steps: self.warmup_steps,
            start_factor: self.warmup_start_factor,
            min_factor: self.min_lr_factor,
            total_steps,
        }
    }
}

/// Where checkpoints go and whether to continue from one.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Checkpoint directory (created if missing); `None` = no checkpoints.
    pub checkpoint_dir: Option<PathBuf>,
    /// Also checkpoint every this many steps (besides every epoch end).
    pub checkpoint_every: Option<u64>,
    /// Continue from the checkpoint in `checkpoint_dir` (which must exist and
    /// match the requested head, configuration and data). Without it, a
    /// directory that already holds a checkpoint is refused.
    pub resume: bool,
}

/// What the progress callback is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Before the first step (also when resuming).
    Start {
        /// Training rows.
        train_rows: usize,
        /// Held-out rows.
        heldout_rows: usize,
        /// Steps per epoch.
        steps_per_epoch: u64,
        /// Steps of the whole run.
        total_steps: u64,
        /// Steps already done (non-zero when resuming).
        start_step: u64,
    },
    /// After an optimiser step.
    Step {
        /// Current epoch (0-based).
        epoch: u64,
        /// Steps done so far, including this one.
        step: u64,
        /// Steps of the whole run.
        total_steps: u64,
        /// This batch's loss.
        loss: f32,
        /// The learning rate this step used.
        lr: f64,
    },
    /// After an epoch, with its held-out evaluation.
    Epoch(EpochSummary),
}

/// The loss and held-out accuracy of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// The epoch (0-based).
    pub epoch: u64,
    /// Mean training loss over the epoch's rows.
    pub mean_loss: f64,
    /// Held-out top-1 accuracy (`None` without held-out rows).
    pub heldout_top1: Option<f64>,
    /// Held-out top-5 accuracy.
    pub heldout_top5: Option<f64>,
}

/// Held-out counts of one class (rows whose label is the class).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    /// Held-out rows of the class.
    pub total: u64,
    /// Of them, predicted top-1.
    pub top1: u64,
    /// Of them, within the top 5.
    pub top5: u64,
}

/// Held-out accuracy of a head.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldOutReport {
    /// Held-out rows.
    pub rows: u64,
    /// Rows whose label is the top-1 prediction.
    pub top1: u64,
    /// Rows whose label is among the 5 most probable classes (all of them when C ≤ 5).
    pub top5: u64,
    /// Counts per class (index = class).
    pub per_class: Vec<ClassCounts>,
}

impl HeldOutReport {
    /// Top-1 accuracy (`None` without rows).
    pub fn top1_accuracy(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.top1 as f64 / self.rows as f64)
    }

    /// Top-5 accuracy (`None` without rows).
    pub fn top5_accuracy(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.top5 as f64 / self.rows as f64)
    }
}

/// The result of [`train`].
#[derive(Debug)]
pub struct TrainOutcome {
    /// The trained head (at the last step done).
    pub head: RegionHead,
    /// Held-out accuracy of that head.
    pub report: HeldOutReport,
    /// Steps done (in total, including those before a resume).
    pub steps: u64,
    /// Steps of the whole run.
    pub total_steps: u64,
    /// False when the progress callback stopped the run early.
    pub completed: bool,
    /// The epochs finished in this call.
    pub epochs: Vec<EpochSummary>,
}

/// The loss and learning rate of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The batch loss before the update.
    pub loss: f32,
    /// The learning rate used.
    pub lr: f64,
}

/// A head with its optimiser, schedule and step counter: one
/// [`Trainer::step`] per batch. [`train`] drives it; use it directly to
/// train on batches of your own.
pub struct Trainer {
    head: RegionHead,
    optimizer: Optimizer,
    schedule: LrSchedule,
    smoothing: f64,
    seed: u64,
    step: u64,
}

impl Trainer {
    /// A trainer at step 0. `no_decay_bias` exempts the `*.bias` parameters
    /// from weight decay; `seed` drives the dropout masks.
    pub fn new(
        head: RegionHead,
        optimizer: OptimizerConfig,
        no_decay_bias: bool,
        schedule: LrSchedule,
        label_smoothing: f64,
        seed: u64,
    ) -> Result<Self> {
        let params =
            head.params().map(|(n, v)| (n.to_string(), v.clone(), !(no_decay_bias && n.ends_with(".bias")))).collect();
        let optimizer = Optimizer::new(optimizer, params)?;
        Ok(Trainer { head, optimizer, schedule, smoothing: label_smoothing, seed, step: 0 })
    }

    /// One optimiser step on a batch `x` `[B, D]` with labels `y`: dropout
    /// mask of this step, forward, cross-entropy, backward, update at the
    /// scheduled rate `lr · factor(step)`.
    ///
    /// Errors (before any update): an empty batch, a label outside the
    /// classes, a non-finite loss (naming the step).
    pub fn step(&mut self, x: &Tensor, y: &[u32]) -> Result<StepStats> {
        if y.is_empty() {
            return Err(Error::Shape(format!("step {}: empty batch", self.step)));
        }
        let lr = self.optimizer.config().lr() * self.schedule.factor(self.step);
        let mask = self.head.dropout_mask(y.len(), self.seed, self.step)?;
        let logits = self.head.forward_train(x, mask.as_ref())?;
        let loss = cross_entropy(&logits, y, self.smoothing)?;
        let value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(Error::Invalid(format!(
                "step {}: the loss is {value} (non-finite features, or a learning rate too large?)",
                self.step
            )));
        }
        let grads = loss.backward()?;
        self.optimizer.step(&grads, lr)?;
        self.step += 1;
        Ok(StepStats { loss: value, lr })
    }

    /// Steps done.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// The head.
    pub fn head(&self) -> &RegionHead {
        &self.head
    }

    /// The head, leaving the trainer.
    pub fn into_head(self) -> RegionHead {
        self.head
    }

    fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out: HashMap<String, Tensor> =
            self.head.tensors().into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
        for (n, t) in self.optimizer.state_tensors()? {
            out.insert(format!("optim.{n}"), t);
        }
        Ok(out)
    }
}

/// The `checkpoint.json` contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CheckpointConfig {
    format: String,
    head: HeadConfig,
    train: TrainConfig,
    data: DataFingerprint,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DataFingerprint {
    rows: u64,
    dim: u64,
    labels_fnv1a: String,
}

/// Held-out split of `n` rows: `(train rows ascending, held-out rows)`.
fn split(n: usize, fraction: f64, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    fisher_yates(&mut perm, seed, tag::SPLIT, 0);
    let held = ((fraction * n as f64).round() as usize).min(n);
    let mut heldout = perm[..held].to_vec();
    let mut train = perm[held..].to_vec();
    heldout.sort_unstable();
    train.sort_unstable();
    (train, heldout)
}

fn fisher_yates(v: &mut [u32], seed: u64, tag: u64, index: u64) {
    let mut rng = stream(seed, tag, index);
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Top-1/top-5 counts of `head` on the given rows of `data` (evaluation mode).
pub fn evaluate(head: &RegionHead, data: &TrainData, rows: &[u32]) -> Result<HeldOutReport> {
    let classes = head.config().classes;
    data.check_labels(classes)?;
    let mut report = HeldOutReport { per_class: vec![ClassCounts::default(); classes], ..Default::default() };
    for chunk in rows.chunks(1024) {
        let (x, y) = data.batch(chunk)?;
        let logits = head.forward(&x)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        for (row, &label) in logits.iter().zip(&y) {
            let top = topk_row(row, 5);
            let c = &mut report.per_class[label as usize];
            c.total += 1;
            report.rows += 1;
            if top.first().is_some_and(|t| t.1 == label) {
                c.top1 += 1;
                report.top1 += 1;
            }
            if top.iter().any(|t| t.1 == label) {
                c.top5 += 1;
                report.top5 += 1;
            }
        }
    }
    Ok(report)
}

/// Differences of two JSON values as dotted paths (`optimizer.lr: a vs b`).
fn json_differences(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = format!("{prefix}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => json_differences(&path, u, v, out),
                    (u, v) => out.push(format!(
                        "{path}: {} in the checkpoint, {} requested",
                        u.map_or("absent".into(), |u| u.to_string()),
                        v.map_or("absent".into(), |v| v.to_string())
                    )),
                }
            }
        }
        _ if a != b => out.push(format!("{prefix}: {a} in the checkpoint, {b} requested")),
        _ => {}
    }
}

fn check_checkpoint_config(path: &Path, found: &CheckpointConfig, want: &CheckpointConfig) -> Result<()> {
    let mismatch =
        |m: String| Error::Invalid(format!("{}: the checkpoint does not match the requested run: {m}", path.display()));
    if found.format != want.format {
        return Err(mismatch(format!("format {:?}, expected {:?}", found.format, want.format)));
    }
    if let Some((field, a, b)) = found.head.differences(&want.head).into_iter().next() {
        return Err(mismatch(format!("head.{field}: {a} in the checkpoint, {b} requested")));
    }
    let mut diffs = Vec::new();
    let to_value = |c: &TrainConfig| serde_json::to_value(c).unwrap_or(serde_json::Value::Null);
    json_differences("train", &to_value(&found.train), &to_value(&want.train), &mut diffs);
    if let Some(d) = diffs.into_iter().next() {
        return Err(mismatch(d));
    }
    let (f, w) = (&found.data, &want.data);
    if f.rows != w.rows || f.dim != w.dim {
        return Err(mismatch(format!(
            "data: {} rows of dim {} in the checkpoint, {} rows of dim {} given",
            f.rows, f.dim, w.rows, w.dim
        )));
    }
    if f.labels_fnv1a != w.labels_fnv1a {
        return Err(mismatch(format!(
            "data: the labels differ (FNV-1a {} in the checkpoint, {} given)",
            f.labels_fnv1a, w.labels_fnv1a
        )));
    }
    Ok(())
}

fn scalar_i64(tensors: &HashMap<String, Tensor>, name: &str, path: &Path) -> Result<i64> {
    let err = |m: String| Error::Weights { path: path.to_path_buf(), message: m };
    let t = tensors.get(name).ok_or_else(|| err(format!("missing {name}")))?;
    let v = t.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(err(format!("{name}: expected one value, found {}", v.len()))),
    }
}

/// Trains a head of configuration `head` on `data` as `cfg` says,
/// checkpointing and resuming as `run` says, reporting to `progress` (return
/// [`ControlFlow::Break`] to stop: a checkpoint is written, if configured,
/// and the outcome says `completed: false`).
///
/// Errors: a label outside the head's classes (naming the row), features of
/// another dimension than the head's input, no training rows, a checkpoint
/// whose configuration or data differs from the request (naming the field).
pub fn train(
    data: &TrainData,
    head: HeadConfig,
    cfg: &TrainConfig,
    run: &RunOptions,
    device: &Device,
    mut progress: impl FnMut(&Progress) -> ControlFlow<()>,
) -> Result<TrainOutcome> {
    head.validate()?;
    cfg.validate()?;
    if data.dim() != head.in_dim {
        return Err(Error::Shape(format!(
            "training features have dimension {}, the head's in_dim is {}",
            data.dim(),
            head.in_dim
        )));
    }
    data.check_labels(head.classes)?;
    let data = if data.features.device().same_device(device) {
        data.clone()
    } else {
        TrainData::new(data.features.to_device(device)?, data.labels.clone())?
    };
    let (train_rows, heldout_rows) = split(data.len(), cfg.heldout_fraction, cfg.seed);
    if train_rows.is_empty() {
        return Err(Error::Invalid(format!(
            "no training rows: {} rows with heldout_fraction {}",
            data.len(),
            cfg.heldout_fraction
        )));
    }
    let bs = cfg.batch_size;
    let steps_per_epoch = train_rows.len().div_ceil(bs) as u64;
    let total_steps = cfg.epochs * steps_per_epoch;
    let mut trainer = Trainer::new(
        RegionHead::new(head, cfg.seed, device)?,
        cfg.optimizer,
        cfg.no_decay_bias,
        cfg.schedule(total_steps),
        cfg.label_smoothing,
        cfg.seed,
    )?;
    let want = CheckpointConfig { format: CHECKPOINT_FORMAT.into(), head, train: *cfg, data: data.fingerprint() };
    let mut epoch_loss = (0.0f64, 0u64);

    let ckpt = run.checkpoint_dir.as_ref().map(|d| (d.join(CHECKPOINT_JSON), d.join(CHECKPOINT_SAFETENSORS)));
    if let Some((json_path, st_path)) = &ckpt {
        if run.resume {
            let text = std::fs::read_to_string(json_path).map_err(|e| {
                Error::Invalid(format!("{}: cannot read the checkpoint to resume: {e}", json_path.display()))
            })?;
            let found: CheckpointConfig = serde_json::from_str(&text).map_err(|e| {
                Error::Invalid(format!(
                    "{}: not a head checkpoint: {e} (line {}, column {})",
                    json_path.display(),
                    e.line(),
                    e.column()
                ))
            })?;
            check_checkpoint_config(json_path, &found, &want)?;
            // No state file yet: the run stopped before its first checkpoint; start at step 0.
            if st_path.exists() {
                load_state(&mut trainer, st_path, &mut epoch_loss, steps_per_epoch, total_steps, device)?;
            }
        } else {
            if json_path.exists() || st_path.exists() {
                return Err(Error::Invalid(format!(
                    "{}: already holds a checkpoint; resume it or choose another directory",
                    json_path.parent().unwrap_or(Path::new(".")).display()
                )));
            }
            let dir = json_path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Invalid(format!("{}: cannot create the checkpoint directory: {e}", dir.display()))
            })?;
            let text = serde_json::to_string_pretty(&want)
                .map_err(|e| Error::Invalid(format!("cannot serialise the checkpoint config: {e}")))?;
            write_atomic(json_path, text.as_bytes())?;
        }
    }
    let save = |trainer: &Trainer, epoch_loss: (f64, u64)| -> Result<()> {
        let Some((_, st_path)) = &ckpt else { return Ok(()) };
        let mut t = trainer.state_tensors()?;
        let step = trainer.step;
        t.insert("train.step".into(), Tensor::from_vec(vec![step as i64], 1, &Device::Cpu)?);
        t.insert("train.epoch".into(), Tensor::from_vec(vec![(step / steps_per_epoch) as i64], 1, &Device::Cpu)?);
        let seed = vec![cfg.seed as u32, (cfg.seed >> 32) as u32];
        t.insert("train.rng_seed".into(), Tensor::from_vec(seed, 2, &Device::Cpu)?);
        t.insert(
            "train.epoch_loss".into(),
            Tensor::from_vec(vec![epoch_loss.0, epoch_loss.1 as f64], 2, &Device::Cpu)?,
        );
        write_safetensors(&t, st_path)
    };

    let start_step = trainer.step;
    let flow = progress(&Progress::Start {
        train_rows: train_rows.len(),
        heldout_rows: heldout_rows.len(),
        steps_per_epoch,
        total_steps,
        start_step,
    });
    let mut epochs = Vec::new();
    let mut stopped = flow.is_break();
    let mut order = Vec::new();
    let mut order_epoch = u64::MAX;
    while !stopped && trainer.step < total_steps {
        let epoch = trainer.step / steps_per_epoch;
        if order_epoch != epoch {
            order.clone_from(&train_rows);
            fisher_yates(&mut order, cfg.seed, tag::SHUFFLE, epoch);
            order_epoch = epoch;
        }
        let b = (trainer.step % steps_per_epoch) as usize;
        let rows = &order[b * bs..((b + 1) * bs).min(order.len())];
        let (x, y) = data.batch(rows)?;
        let stats = trainer.step(&x, &y)?;
        epoch_loss.0 += f64::from(stats.loss) * rows.len() as f64;
        epoch_loss.1 += rows.len() as u64;
        let step = trainer.step;
        stopped |= progress(&Progress::Step { epoch, step, total_steps, loss: stats.loss, lr: stats.lr }).is_break();
        let epoch_end = step % steps_per_epoch == 0;
        if epoch_end {
            let report = evaluate(&trainer.head, &data, &heldout_rows)?;
            let summary = EpochSummary {
                epoch,
                mean_loss: epoch_loss.0 / epoch_loss.1.max(1) as f64,
                heldout_top1: report.top1_accuracy(),
                heldout_top5: report.top5_accuracy(),
            };
            epoch_loss = (0.0, 0);
            stopped |= progress(&Progress::Epoch(summary.clone())).is_break();
            epochs.push(summary);
        }
        if epoch_end || stopped || run.checkpoint_every.is_some_and(|n| n > 0 && step % n == 0) {
            save(&trainer, epoch_loss)?;
        }
    }
    let report = evaluate(&trainer.head, &data, &heldout_rows)?;
    let steps = trainer.step;
    Ok(TrainOutcome { head: trainer.into_head(), report, steps, total_steps, completed: steps >= total_steps, epochs })
}

fn load_state(
    trainer: &mut Trainer,
    path: &Path,
    epoch_loss: &mut (f64, u64),
    steps_per_epoch: u64,
    total_steps: u64,
    device: &Device,
) -> Result<()> {
    let err = |m: String| Error::Weights { path: path.to_path_buf(), message: m };
    let t = read_safetensors(path, device)?;
    let model: HashMap<String, Tensor> =
        t.iter().filter_map(|(k, v)| k.strip_prefix("model.").map(|n| (n.to_string(), v.clone()))).collect();
    let loaded = RegionHead::from_tensors(*trainer.head.config(), &model, path, device)?;
    for ((_, dst), (_, src)) in trainer.head.params().zip(loaded.params()) {
        dst.set(src.as_tensor())?;
    }
    trainer.optimizer.load_state(|name| t.get(&format!("optim.{name}")).cloned(), path)?;
    let step = scalar_i64(&t, "train.step", path)?;
    let epoch = scalar_i64(&t, "train.epoch", path)?;
    if step < 0 || step as u64 > total_steps || epoch as u64 != step as u64 / steps_per_epoch {
        return Err(err(format!(
            "train.step {step} / train.epoch {epoch} do not fit a run of {total_steps} steps, {steps_per_epoch} per epoch"
        )));
    }
    let seed = t
        .get("train.rng_seed")
        .ok_or_else(|| err("missing train.rng_seed".into()))?
        .to_dtype(DType::U32)?
        .to_vec1::<u32>()?;
    let stored = match seed.as_slice() {
        [lo, hi] => u64::from(*lo) | (u64::from(*hi) << 32),
        _ => return Err(err("train.rng_seed: expected 2 values".into())),
    };
    if stored != trainer.seed {
        return Err(err(format!("train.rng_seed is {stored}, the run's seed {}", trainer.seed)));
    }
    let el = t
        .get("train.epoch_loss")
        .ok_or_else(|| err("missing train.epoch_loss".into()))?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    *epoch_loss = match el.as_slice() {
        [s, n] => (*s, *n as u64),
        _ => return Err(err("train.epoch_loss: expected 2 values".into())),
    };
    trainer.step = step as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_seeded_partition() {
        let (tr, ho) = split(10, 0.25, 3);
        // round(2.5) = 3 held out.
        assert_eq!((tr.len(), ho.len()), (7, 3));
        let mut all: Vec<u32> = tr.iter().chain(&ho).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(split(10, 0.25, 3), (tr, ho));
        assert_ne!(split(10, 0.25, 3).1, split(10, 0.25, 4).1);
    }

    #[test]
    fn json_differences_name_the_path() {
        let a = serde_json::json!({"optimizer": {"lr": 0.1, "type": "sgd"}, "epochs": 3});
        let b = serde_json::json!({"optimizer": {"lr": 0.2, "type": "sgd"}, "epochs": 3});
        let mut d = Vec::new();
        json_differences("train", &a, &b, &mut d);
        assert_eq!(d, vec!["train.optimizer.lr: 0.1 in the checkpoint, 0.2 requested".to_string()]);
    }
}
