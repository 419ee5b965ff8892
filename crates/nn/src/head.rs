//! The region labeler's classification head on frozen pooled features:
//! a linear layer or a 2-layer MLP, PyTorch-compatible (names, shapes,
//! default initialisation), with its configuration as JSON.
//!
//! Layers, in order (weights `[out, in]` as in `torch.nn.Linear`, `y = x·Wᵀ + b`):
//!
//! * [`HeadKind::Linear`]: `fc` = Linear(D → C). Tensors `fc.weight` `[C, D]`, `fc.bias` `[C]`.
//! * [`HeadKind::Mlp`]: `fc1` = Linear(D → hidden) → ReLU → Dropout(p) → `fc2` =
//!   Linear(hidden → C). Tensors `fc1.weight` `[hidden, D]`, `fc1.bias`,
//!   `fc2.weight` `[C, hidden]`, `fc2.bias`. Dropout acts only in training
//!   ([`RegionHead::forward_train`]): kept activations are scaled by `1/(1 − p)`
//!   (inverted dropout, as `torch.nn.Dropout`).
//!
//! The same module tree in PyTorch (`self.fc1`, `self.relu`, `self.drop`,
//! `self.fc2`, or `self.fc`) has the same `state_dict` names, so weights move
//! between the two as they are.
//!
//! Files: [`RegionHead::save`] writes the weights as `.safetensors` and the
//! [`HeadConfig`] next to them as `.json` (same stem), both atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use labelscope_core::rng::{mix64, Xoshiro256};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Hidden width of the MLP head unless configured otherwise.
pub const DEFAULT_HIDDEN: usize = 1024;
/// Dropout probability of the MLP head unless configured otherwise.
pub const DEFAULT_DROPOUT: f32 = 0.5;

/// Which head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// One linear layer, D → C.
    Linear,
    /// D → hidden → ReLU → Dropout(p) → C.
    Mlp,
}

/// The configuration of a [`RegionHead`] (stored as JSON next to its weights).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// Linear or MLP.
    pub kind: HeadKind,
    /// Input feature dimension D.
    pub in_dim: usize,
    /// Hidden width of the MLP (unused by the linear head; default 1024).
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Number of classes C.
    pub classes: usize,
    /// Dropout probability after the MLP's ReLU, in `[0, 1)` (unused by the
    /// linear head; default 0.5).
    #[serde(default = "default_dropout")]
    pub dropout: f32,
}

fn default_hidden() -> usize {
    DEFAULT_HIDDEN
}

fn default_dropout() -> f32 {
    DEFAULT_DROPOUT
}

impl HeadConfig {
    /// A linear head D → C.
    pub fn linear(in_dim: usize, classes: usize) -> Self {
        HeadConfig { kind: HeadKind::Linear, in_dim, hidden: DEFAULT_HIDDEN, classes, dropout: 0.0 }
    }

    /// An MLP head D → 1024 → C with dropout 0.5.
    pub fn mlp(in_dim: usize, classes: usize) -> Self {
        HeadConfig { kind: HeadKind::Mlp, in_dim, hidden: DEFAULT_HIDDEN, classes, dropout: DEFAULT_DROPOUT }
    }

    /// Checks the sizes (all > 0) and the dropout probability (`[0, 1)`).
    pub fn validate(&self) -> Result<()> {
        if self.in_dim == 0 || self.classes == 0 {
            return Err(Error::Invalid(format!(
                "head config: in_dim ({}) and classes ({}) must be positive",
                self.in_dim, self.classes
            )));
        }
        if self.kind == HeadKind::Mlp {
            if self.hidden == 0 {
                return Err(Error::Invalid("head config: hidden must be positive".into()));
            }
            if !(0.0..1.0).contains(&self.dropout) {
                return Err(Error::Invalid(format!("head config: dropout {} is not in [0, 1)", self.dropout)));
            }
        }
        Ok(())
    }

    /// The parameter names, in the fixed order used everywhere (init, optimiser, files).
    pub fn param_names(&self) -> &'static [&'static str] {
        match self.kind {
            HeadKind::Linear => &["fc.weight", "fc.bias"],
            HeadKind::Mlp => &["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"],
        }
    }

    /// The shape of every parameter, in [`HeadConfig::param_names`] order.
    pub fn param_shapes(&self) -> Vec<Vec<usize>> {
        match self.kind {
            HeadKind::Linear => vec![vec![self.classes, self.in_dim], vec![self.classes]],
            HeadKind::Mlp => vec![
                vec![self.hidden, self.in_dim],
                vec![self.hidden],
                vec![self.classes, self.hidden],
                vec![self.classes],
            ],
        }
    }

    /// Differences from `other` as `(field, self's value, other's value)`;
    /// fields the kind does not use (`hidden`, `dropout` of a linear head) are
    /// not compared.
    pub fn differences(&self, other: &HeadConfig) -> Vec<(&'static str, String, String)> {
        let mut out = Vec::new();
        let mut cmp = |name: &'static str, a: String, b: String| {
            if a != b {
                out.push((name, a, b));
            }
        };
        cmp("kind", format!("{:?}", self.kind).to_lowercase(), format!("{:?}", other.kind).to_lowercase());
        cmp("in_dim", self.in_dim.to_string(), other.in_dim.to_string());
        cmp("classes", self.classes.to_string(), other.classes.to_string());
        if self.kind == HeadKind::Mlp && other.kind == HeadKind::Mlp {
            cmp("hidden", self.hidden.to_string(), other.hidden.to_string());
            cmp("dropout", self.dropout.to_string(), other.dropout.to_string());
        }
        out
    }

    /// The configuration as pretty JSON.
    pub fn to_json(&self) -> String {
        // A plain struct of numbers and a unit enum always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a configuration from JSON (`source` names it in errors) and validates it.
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let cfg: HeadConfig = serde_json::from_str(text).map_err(|e| {
            Error::Invalid(format!("{source}: not a head config: {e} (line {}, column {})", e.line(), e.column()))
        })?;
        cfg.validate().map_err(|e| Error::Invalid(format!("{source}: {e}")))?;
        Ok(cfg)
    }

    /// Reads a JSON configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Invalid(format!("{}: cannot read the head config: {e}", path.display())))?;
        HeadConfig::from_json(&text, &path.display().to_string())
    }

    /// Writes the configuration as JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.to_json().as_bytes())
    }
}

/// Stream tags of the seeded random number generators (see [`stream`]).
pub(crate) mod tag {
    pub const INIT: u64 = 1;
    pub const SPLIT: u64 = 2;
    pub const SHUFFLE: u64 = 3;
    pub const DROPOUT: u64 = 4;
}

/// The random stream `(seed, tag, index)`: every random draw of the head and
/// its training comes from such a stream, a pure function of its three
/// numbers (so the training position fully determines the generator state).
pub(crate) fn stream(seed: u64, tag: u64, index: u64) -> Xoshiro256 {
    Xoshiro256::from_seed(mix64(seed ^ mix64(tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ mix64(index))))
}

/// A linear or MLP classification head (parameters are [`Var`]s, f32, on one device).
pub struct RegionHead {
    config: HeadConfig,
    device: Device,
    params: Vec<Var>,
}

impl std::fmt::Debug for RegionHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionHead").field("config", &self.config).field("device", &self.device).finish()
    }
}

impl RegionHead {
    /// A freshly initialised head with PyTorch `nn.Linear`'s default
    /// distribution: every weight and bias of a layer with `fan_in` inputs
    /// uniform in `[−1/√fan_in, 1/√fan_in]` (what `kaiming_uniform_(a=√5)`
    /// amounts to). Values are `(2u − 1)·bound` with `u` the 53-bit uniforms of
    /// the seeded xoshiro256** stream `(seed, init)`, drawn parameter by
    /// parameter in [`HeadConfig::param_names`] order, row-major.
    pub fn new(config: HeadConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut rng = stream(seed, tag::INIT, 0);
        let names = config.param_names();
        let mut params = Vec::with_capacity(names.len());
        for (name, shape) in names.iter().zip(config.param_shapes()) {
            let fan_in = if name.starts_with("fc2") { config.hidden } else { config.in_dim };
            let bound = 1.0 / (fan_in as f64).sqrt();
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|_| ((2.0 * rng.unit() - 1.0) * bound) as f32).collect();
            params.push(Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?);
        }
        Ok(RegionHead { config, device: device.clone(), params })
    }

    /// A head from named tensors (the names and shapes of
    /// [`HeadConfig::param_shapes`]; any float dtype, converted to f32).
    /// `source` names the origin in errors; extra tensors are ignored.
    pub fn from_tensors(
        config: HeadConfig,
        tensors: &HashMap<String, Tensor>,
        source: &Path,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut params = Vec::new();
        for (name, shape) in config.param_names().iter().zip(config.param_shapes()) {
            let t = tensors.get(*name).ok_or_else(|| Error::Weights {
                path: source.to_path_buf(),
                message: format!("missing tensor {name} (the {:?} head needs {:?})", config.kind, config.param_names()),
            })?;
            if t.dims() != shape.as_slice() {
                return Err(Error::Weights {
                    path: source.to_path_buf(),
                    message: format!("tensor {name} has shape {:?}, the head config needs {:?}", t.dims(), shape),
                });
            }
            if !t.dtype().is_float() {
                return Err(Error::Weights {
                    path: source.to_path_buf(),
                    message: format!("tensor {name} has dtype {:?}, expected a float type", t.dtype()),
                });
            }
            let t = t.to_dtype(DType::F32)?.to_device(device)?;
            // A fresh copy, so that training never writes into the caller's tensor.
            params.push(Var::from_tensor(&t.copy()?)?);
        }
        Ok(RegionHead { config, device: device.clone(), params })
    }

    /// Loads weights from a `.safetensors` file with the given configuration.
    pub fn load_weights(config: HeadConfig, path: &Path, device: &Device) -> Result<Self> {
        let tensors = read_safetensors(path, device)?;
        RegionHead::from_tensors(config, &tensors, path, device)
    }

    /// Loads `path` (`.safetensors`) with the configuration in the `.json`
    /// file of the same stem (as written by [`RegionHead::save`]).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let config = HeadConfig::load(&config_path(path))?;
        RegionHead::load_weights(config, path, device)
    }

    /// Writes the weights to `path` (`.safetensors`) and the configuration to
    /// the `.json` of the same stem, each atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_safetensors(&self.tensors(), path)?;
        self.config.save(&config_path(path))
    }

    /// The configuration.
    pub fn config(&self) -> &HeadConfig {
        &self.config
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The parameters as `(name, variable)`, in [`HeadConfig::param_names`] order.
    pub fn params(&self) -> impl Iterator<Item = (&'static str, &Var)> {
        self.config.param_names().iter().copied().zip(self.params.iter())
    }

    /// The parameters as named (detached) tensors.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.params().map(|(n, v)| (n.to_string(), v.as_detached_tensor())).collect()
    }

    /// Logits `[B, C]` of features `[B, D]` (any float dtype; evaluation mode,
    /// no dropout, no gradient tracking).
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        let x = self.check_input(features)?;
        let p: Vec<Tensor> = self.params.iter().map(|v| v.as_detached_tensor()).collect();
        self.forward_with(&x, &p, None)
    }

    /// Logits `[B, C]` in training mode: gradients flow to the parameters, and
    /// the MLP applies `dropout_mask` (`[B, hidden]`, already scaled: 0 or
    /// `1/(1 − p)`) after its ReLU. `None` = no dropout.
    pub fn forward_train(&self, features: &Tensor, dropout_mask: Option<&Tensor>) -> Result<Tensor> {
        let x = self.check_input(features)?;
        let p: Vec<Tensor> = self.params.iter().map(|v| v.as_tensor().clone()).collect();
        self.forward_with(&x, &p, dropout_mask)
    }

    /// The training dropout mask for a batch of `rows` rows at optimiser step
    /// `step` of a run seeded with `seed`, or `None` when the head has no
    /// dropout. Each of the `rows × hidden` activations is kept when the
    /// stream `(seed, dropout, step)`'s next 53-bit uniform is `≥ p` (so with
    /// probability `1 − p`), row-major; kept ones are scaled by `1/(1 − p)`.
    pub fn dropout_mask(&self, rows: usize, seed: u64, step: u64) -> Result<Option<Tensor>> {
        let p = self.config.dropout;
        if self.config.kind != HeadKind::Mlp || p <= 0.0 {
            return Ok(None);
        }
        let mut rng = stream(seed, tag::DROPOUT, step);
        let keep = (1.0 / (1.0 - f64::from(p))) as f32;
        let n = rows * self.config.hidden;
        let p = f64::from(p);
        let values: Vec<f32> = (0..n).map(|_| if rng.unit() >= p { keep } else { 0.0 }).collect();
        Ok(Some(Tensor::from_vec(values, (rows, self.config.hidden), &self.device)?))
    }

    fn check_input(&self, features: &Tensor) -> Result<Tensor> {
        let dims = features.dims();
        if dims.len() != 2 || dims[1] != self.config.in_dim {
            return Err(Error::Shape(format!(
                "head input has shape {:?}, expected [batch, {}] (the head's in_dim)",
                dims, self.config.in_dim
            )));
        }
        if !features.dtype().is_float() {
            return Err(Error::Shape(format!("head input has dtype {:?}, expected a float type", features.dtype())));
        }
        Ok(features.to_dtype(DType::F32)?.to_device(&self.device)?)
    }

    fn forward_with(&self, x: &Tensor, p: &[Tensor], mask: Option<&Tensor>) -> Result<Tensor> {
        let linear =
            |x: &Tensor, w: &Tensor, b: &Tensor| -> Result<Tensor> { Ok(x.matmul(&w.t()?)?.broadcast_add(b)?) };
        match self.config.kind {
            HeadKind::Linear => linear(x, &p[0], &p[1]),
            HeadKind::Mlp => {
                let mut h = linear(x, &p[0], &p[1])?.relu()?;
                if let Some(m) = mask {
                    if m.dims() != h.dims() {
                        return Err(Error::Shape(format!(
                            "dropout mask has shape {:?}, the hidden activations {:?}",
                            m.dims(),
                            h.dims()
                        )));
                    }
                    h = h.mul(m)?;
                }
                linear(&h, &p[2], &p[3])
            }
        }
    }

    /// The `k` most probable classes of every row of `features` `[B, D]`:
    /// `(softmax probability, class)`, most probable first, ties by lower
    /// class index; `k` is capped at the number of classes.
    pub fn predict_topk(&self, features: &Tensor, k: usize) -> Result<Vec<Vec<(f32, u32)>>> {
        let logits = self.forward(features)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        Ok(probs.iter().map(|row| topk_row(row, k)).collect())
    }
}

/// `(value, index)` of the `k` largest entries of `row`, largest first, ties by lower index.
pub(crate) fn topk_row(row: &[f32], k: usize) -> Vec<(f32, u32)> {
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let k = k.min(row.len());
    let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx.truncate(k);
    idx.into_iter().map(|i| (row[i as usize], i)).collect()
}

/// The `.json` configuration path next to a `.safetensors` weights path.
pub fn config_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Reads every tensor of a `.safetensors` file onto `device`.
pub(crate) fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Weights { path: path.to_path_buf(), message: format!("cannot read: {e}") })?;
    candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| Error::Weights { path: path.to_path_buf(), message: format!("not a safetensors file: {e}") })
}

/// Writes named tensors as `.safetensors`, atomically (temporary file in the
/// same directory, synced, renamed over `path`).
pub(crate) fn write_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let err = |m: String| Error::Weights { path: path.to_path_buf(), message: m };
    let tmp = temp_path(path)?;
    let result = (|| -> std::result::Result<(), String> {
        candle_core::safetensors::save(tensors, &tmp).map_err(|e| format!("cannot write: {e}"))?;
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| format!("cannot sync: {e}"))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename the temporary file: {e}"))
    })();
    if let Err(m) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(m));
    }
    Ok(())
}

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| Error::Invalid(format!("{}: not a file path", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id())))
}

/// Writes bytes atomically (labelscope-core's temporary file + rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    labelscope_core::atomic::write_atomic(path, bytes).map_err(|e| Error::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_orders_and_breaks_ties_by_index() {
        let row = [0.1, 0.4, 0.1, 0.4, 0.0];
        assert_eq!(topk_row(&row, 3), vec![(0.4, 1), (0.4, 3), (0.1, 0)]);
        assert_eq!(topk_row(&row, 9).len(), 5);
        assert!(topk_row(&row, 0).is_empty());
    }

    #[test]
    fn config_json_round_trip_and_defaults() {
        let cfg = HeadConfig::mlp(768, 1000);
        assert_eq!(HeadConfig::from_json(&cfg.to_json(), "x").unwrap(), cfg);
        let c = HeadConfig::from_json(r#"{"kind":"mlp","in_dim":4,"classes":3}"#, "x").unwrap();
        assert_eq!((c.hidden, c.dropout), (1024, 0.5));
        let e =
            HeadConfig::from_json(r#"{"kind":"mlp","in_dim":4,"classes":3,"dropout":1.0}"#, "cfg.json").unwrap_err();
        assert!(e.to_string().contains("cfg.json") && e.to_string().contains("dropout"), "{e}");
    }
}
