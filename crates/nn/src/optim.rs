//! Optimisers with PyTorch's update rules, a warm-up + cosine learning-rate
//! schedule, and cross-entropy with label smoothing — for training the
//! [`RegionHead`](crate::head::RegionHead).
//!
//! Update rules, per parameter `p` with gradient `g` at learning rate `lr`
//! (the scheduled rate of this step):
//!
//! * **SGD** (`torch.optim.SGD`): `d = g + wd·p`; with momentum μ > 0 the
//!   buffer is `b = d` on the parameter's first step and
//!   `b = μ·b + (1 − dampening)·d` after; then `d = d + μ·b` (Nesterov) or
//!   `d = b`; `p ← p − lr·d`. Nesterov needs momentum > 0 and dampening 0
//!   (as torch).
//! * **AdamW** (`torch.optim.AdamW`), with t the 1-based step:
//!   `p ← p·(1 − lr·wd)` (decoupled decay), `m ← m + (g − m)·(1 − β₁)`,
//!   `v ← β₂·v + (1 − β₂)·g²`, `p ← p − (lr / (1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + ε)`
//!   (ε outside the square root).
//!
//! With "no weight decay on biases" ([`Optimizer::new`]'s `decay` flags), the
//! bias vectors get `wd = 0` — the two parameter groups
//! `[{weights, wd}, {biases, wd: 0}]` of a torch optimiser.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An optimiser and its hyper-parameters (`lr` is the base rate the schedule scales).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// `torch.optim.SGD`.
    Sgd {
        /// Base learning rate.
        lr: f64,
        /// Momentum μ (0 = none).
        momentum: f64,
        /// Dampening of the momentum buffer (torch's default 0).
        #[serde(default)]
        dampening: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 weight decay, added to the gradient.
        weight_decay: f64,
    },
    /// `torch.optim.AdamW`.
    Adamw {
        /// Base learning rate.
        lr: f64,
        /// β₁ (torch default 0.9).
        beta1: f64,
        /// β₂ (torch default 0.999).
        beta2: f64,
        /// ε, added outside the square root (torch default 1e-8).
        eps: f64,
        /// Decoupled weight decay (torch default 0.01).
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    /// SGD with Nesterov momentum 0.9 and the given rate and weight decay.
    pub fn sgd_nesterov(lr: f64, weight_decay: f64) -> Self {
        OptimizerConfig::Sgd { lr, momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay }
    }

    /// AdamW with torch's default betas (0.9, 0.999) and ε 1e-8.
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        OptimizerConfig::Adamw { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay }
    }

    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adamw { lr, .. } => lr,
        }
    }

    /// Checks the hyper-parameters (torch's own checks).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("optimizer: {m}")));
        match *self {
            OptimizerConfig::Sgd { lr, momentum, dampening, nesterov, weight_decay } => {
                if !nonneg(lr) || !nonneg(momentum) || !nonneg(weight_decay) || !dampening.is_finite() {
                    return bad(format!(
                        "lr {lr}, momentum {momentum}, weight_decay {weight_decay} must be finite and ≥ 0 (dampening {dampening} finite)"
                    ));
                }
                if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                    return bad("Nesterov momentum requires momentum > 0 and dampening 0".into());
                }
            }
            OptimizerConfig::Adamw { lr, beta1, beta2, eps, weight_decay } => {
                if !nonneg(lr) || !nonneg(eps) || !nonneg(weight_decay) {
                    return bad(format!("lr {lr}, eps {eps}, weight_decay {weight_decay} must be finite and ≥ 0"));
                }
                if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
                    return bad(format!("betas ({beta1}, {beta2}) must be in [0, 1)"));
                }
            }
        }
        Ok(())
    }
}

fn nonneg(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

/// One optimised parameter.
struct Slot {
    name: String,
    var: Var,
    weight_decay: f64,
    /// SGD: the momentum buffer; AdamW: m.
    buf1: Option<Tensor>,
    /// AdamW: v.
    buf2: Option<Tensor>,
    /// Steps this parameter has taken (AdamW's t).
    steps: u64,
}

/// An optimiser over a fixed list of parameters, with its state.
pub struct Optimizer {
    config: OptimizerConfig,
    slots: Vec<Slot>,
}

impl Optimizer {
    /// An optimiser over `params` — `(name, variable, decay)`, where `decay`
    /// false exempts the parameter from weight decay (biases, when "no decay
    /// on biases" is chosen).
    pub fn new(config: OptimizerConfig, params: Vec<(String, Var, bool)>) -> Result<Self> {
        config.validate()?;
        let wd = match config {
            OptimizerConfig::Sgd { weight_decay, .. } | OptimizerConfig::Adamw { weight_decay, .. } => weight_decay,
        };
        let slots = params
            .into_iter()
            .map(|(name, var, decay)| Slot {
                name,
                var,
                weight_decay: if decay { wd } else { 0.0 },
                buf1: None,
                buf2: None,
                steps: 0,
            })
            .collect();
        Ok(Optimizer { config, slots })
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// One update of every parameter that has a gradient in `grads`, at rate
    /// `lr` (parameters without a gradient are skipped, as torch skips
    /// `grad is None`).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else { continue };
            let g = g.detach();
            let p = slot.var.as_detached_tensor();
            let wd = slot.weight_decay;
            slot.steps += 1;
            let new_p = match self.config {
                OptimizerConfig::Sgd { momentum, dampening, nesterov, .. } => {
                    let mut d = if wd != 0.0 { g.add(&p.affine(wd, 0.0)?)? } else { g };
                    if momentum != 0.0 {
                        let buf = match slot.buf1.take() {
                            None => d.copy()?,
                            Some(b) => b.affine(momentum, 0.0)?.add(&d.affine(1.0 - dampening, 0.0)?)?,
                        };
                        d = if nesterov { d.add(&buf.affine(momentum, 0.0)?)? } else { buf.clone() };
                        slot.buf1 = Some(buf);
                    }
                    p.sub(&d.affine(lr, 0.0)?)?
                }
                OptimizerConfig::Adamw { beta1, beta2, eps, .. } => {
                    let p = if wd != 0.0 { p.affine(1.0 - lr * wd, 0.0)? } else { p };
                    let m = match slot.buf1.take() {
                        None => g.zeros_like()?,
                        Some(m) => m,
                    };
                    let v = match slot.buf2.take() {
                        None => g.zeros_like()?,
                        Some(v) => v,
                    };
                    let m = m.add(&g.sub(&m)?.affine(1.0 - beta1, 0.0)?)?;
                    let v = v.affine(beta2, 0.0)?.add(&g.sqr()?.affine(1.0 - beta2, 0.0)?)?;
                    let t = slot.steps as i32;
                    let bc1 = 1.0 - beta1.powi(t);
                    let bc2 = 1.0 - beta2.powi(t);
                    let step_size = lr / bc1;
                    let denom = v.sqrt()?.affine(1.0 / bc2.sqrt(), eps)?;
                    let new_p = p.sub(&m.div(&denom)?.affine(step_size, 0.0)?)?;
                    slot.buf1 = Some(m);
                    slot.buf2 = Some(v);
                    new_p
                }
            };
            slot.var.set(&new_p)?;
        }
        Ok(())
    }

    /// The state as named tensors: `<param>.momentum_buffer` (SGD, after the
    /// first step), `<param>.exp_avg` and `<param>.exp_avg_sq` (AdamW), and
    /// `<param>.step` (I64 `[1]`, the parameter's step count).
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        let (n1, n2) = match self.config {
            OptimizerConfig::Sgd { .. } => ("momentum_buffer", ""),
            OptimizerConfig::Adamw { .. } => ("exp_avg", "exp_avg_sq"),
        };
        for s in &self.slots {
            let dev = s.var.device();
            out.push((format!("{}.step", s.name), Tensor::from_vec(vec![s.steps as i64], 1, dev)?));
            if let Some(b) = &s.buf1 {
                out.push((format!("{}.{n1}", s.name), b.clone()));
            }
            if let Some(b) = &s.buf2 {
                out.push((format!("{}.{n2}", s.name), b.clone()));
            }
        }
        Ok(out)
    }

    /// Restores the state written by [`Optimizer::state_tensors`]; `get`
    /// looks a tensor up by name, `source` names the file in errors.
    pub fn load_state(&mut self, get: impl Fn(&str) -> Option<Tensor>, source: &std::path::Path) -> Result<()> {
        let err = |m: String| Error::Weights { path: source.to_path_buf(), message: m };
        let sgd = matches!(self.config, OptimizerConfig::Sgd { .. });
        for s in &mut self.slots {
            let name = format!("{}.step", s.name);
            let t = get(&name).ok_or_else(|| err(format!("missing optimiser state {name}")))?;
            let v = t.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
            s.steps = match v.as_slice() {
                [n] if *n >= 0 => *n as u64,
                _ => return Err(err(format!("{name}: expected one non-negative step count, found {v:?}"))),
            };
            let shape = s.var.dims().to_vec();
            let buf = |suffix: &str, required: bool| -> Result<Option<Tensor>> {
                let name = format!("{}.{suffix}", s.name);
                match get(&name) {
                    None if required => Err(err(format!("missing optimiser state {name}"))),
                    None => Ok(None),
                    Some(t) if t.dims() != shape.as_slice() => {
                        Err(err(format!("{name} has shape {:?}, the parameter {:?}", t.dims(), shape)))
                    }
                    Some(t) => Ok(Some(t.to_dtype(DType::F32)?.to_device(s.var.device())?)),
                }
            };
            let has_steps = s.steps > 0;
            let (b1, b2) = if sgd {
                let momentum = matches!(self.config, OptimizerConfig::Sgd { momentum, .. } if momentum != 0.0);
                (buf("momentum_buffer", has_steps && momentum)?, None)
            } else {
                (buf("exp_avg", has_steps)?, buf("exp_avg_sq", has_steps)?)
            };
            s.buf1 = b1;
            s.buf2 = b2;
        }
        Ok(())
    }
}

/// Linear warm-up then cosine decay, as a factor of the base learning rate
/// (a `torch.optim.lr_scheduler.LambdaLR` lambda, stepped once per
/// optimiser step). For the 0-based step k, with W = `warmup_steps`,
/// s = `start_factor`, m = `min_factor`, T = `total_steps`:
///
/// ```text
/// k <  W:  s + (1 − s)·k/W
/// k >= W:  m + (1 − m)·½·(1 + cos(π·min(1, (k − W) / max(1, T − W))))
/// ```
///
/// So step 0 runs at `s·lr` (0 by default), step W at the full rate, and the
/// rate reaches `m·lr` at step T (and stays there).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Warm-up steps W (0 = none).
    pub warmup_steps: u64,
    /// Factor at step 0, s (default 0).
    pub start_factor: f64,
    /// Final factor m (default 0).
    pub min_factor: f64,
    /// Total steps T of the run.
    pub total_steps: u64,
}

impl LrSchedule {
    /// The factor of step `k` (0-based).
    pub fn factor(&self, k: u64) -> f64 {
        let (w, s, m) = (self.warmup_steps, self.start_factor, self.min_factor);
        if k < w {
            return s + (1.0 - s) * k as f64 / w as f64;
        }
        let span = self.total_steps.saturating_sub(w).max(1) as f64;
        let progress = ((k - w) as f64 / span).min(1.0);
        m + (1.0 - m) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Mean cross-entropy of `logits` `[B, C]` against class indices `labels`
/// (`B` of them, each `< C`) with label smoothing ε
/// (`torch.nn.functional.cross_entropy(..., label_smoothing=ε)`): the target
/// distribution is `(1 − ε)·onehot(y) + ε/C`, so the loss of a row is
/// `−(1 − ε)·log p_y − (ε/C)·Σ_c log p_c`. Differentiable.
pub fn cross_entropy(logits: &Tensor, labels: &[u32], smoothing: f64) -> Result<Tensor> {
    let (b, c) = logits.dims2()?;
    if labels.len() != b {
        return Err(Error::Shape(format!("{} labels for {b} logit rows", labels.len())));
    }
    if !(0.0..=1.0).contains(&smoothing) {
        return Err(Error::Invalid(format!("label smoothing {smoothing} is not in [0, 1]")));
    }
    let off = (smoothing / c as f64) as f32;
    let on = (1.0 - smoothing + smoothing / c as f64) as f32;
    let mut target = vec![off; b * c];
    for (i, &y) in labels.iter().enumerate() {
        let y = y as usize;
        if y >= c {
            return Err(Error::Invalid(format!("label of row {i} is class {y}, outside the {c} classes")));
        }
        target[i * c + y] = on;
    }
    let target = Tensor::from_vec(target, (b, c), logits.device())?;
    // log-softmax with the row maximum as a constant shift (it cancels exactly).
    let max = logits.max_keepdim(1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(1)?.log()?;
    let logp = shifted.broadcast_sub(&lse)?;
    Ok(logp.mul(&target)?.sum_all()?.affine(-1.0 / b as f64, 0.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_formula_by_hand() {
        let s = LrSchedule { warmup_steps: 4, start_factor: 0.2, min_factor: 0.1, total_steps: 12 };
        // Warm-up: 0.2 + 0.8·k/4.
        assert!((s.factor(0) - 0.2).abs() < 1e-15);
        assert!((s.factor(2) - 0.6).abs() < 1e-15);
        assert!((s.factor(4) - 1.0).abs() < 1e-15);
        // Halfway through the cosine (k = 8 of 4..12): 0.1 + 0.9·0.5 = 0.55.
        assert!((s.factor(8) - 0.55).abs() < 1e-15);
        assert!((s.factor(12) - 0.1).abs() < 1e-15);
        assert!((s.factor(100) - 0.1).abs() < 1e-15);
    }

    #[test]
    fn cross_entropy_by_hand() {
        // Logits [0, ln 3] → p = [1/4, 3/4]. Label 1, ε = 0.2:
        // −0.8·ln(3/4) − 0.1·(ln(1/4) + ln(3/4)) = 0.23014 + 0.16740 = 0.39754...
        let l = Tensor::new(&[[0.0f32, 3f32.ln()]], &Device::Cpu).unwrap();
        let v = cross_entropy(&l, &[1], 0.2).unwrap().to_scalar::<f32>().unwrap();
        let want = -0.8 * (0.75f64).ln() - 0.1 * ((0.25f64).ln() + (0.75f64).ln());
        assert!((f64::from(v) - want).abs() < 1e-6, "{v} vs {want}");
        assert!(cross_entropy(&l, &[2], 0.0).unwrap_err().to_string().contains("row 0"));
    }
}
