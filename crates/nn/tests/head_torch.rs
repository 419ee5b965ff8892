//! Training parity of the region head against PyTorch (fixture by
//! `tests/reference/make_head_torch_fixture.py`, torch 2.15, reference in
//! float64): an MLP (8 → 16 → ReLU → Dropout(0) → 5) and a linear head
//! (8 → 5), from the same initial weights, trained 12 steps on the same
//! explicit batches (the last one of 5 rows) with
//!
//! * SGD (lr 0.1, Nesterov momentum 0.9, weight decay 0.01 on every
//!   parameter), warm-up 3 steps from factor 0, cosine to factor 0.1,
//!   label smoothing 0.1;
//! * AdamW (lr 0.01, betas (0.9, 0.999), eps 1e-8, weight decay 0.05, none
//!   on biases), warm-up 3 steps from factor 0.1, cosine to 0, label
//!   smoothing 0.2.
//!
//! Checked: every step's learning rate against torch's LambdaLR (1e-12),
//! every step's loss and the final weights (max |diff| ≤ 1e-5).

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use labelscope_nn::{HeadConfig, HeadKind, LrSchedule, OptimizerConfig, RegionHead, Trainer};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/head")
}

fn f64s(name: &str) -> Vec<f64> {
    let p = fixture().join(name);
    labelscope_core::npy::read_npy(&p).unwrap().to_f64_vec(&p, "array").unwrap()
}

fn i64s(name: &str) -> Vec<i64> {
    let p = fixture().join(name);
    labelscope_core::npy::read_npy(&p).unwrap().to_i64_vec(&p, "array").unwrap()
}

fn head_config(head: &str) -> HeadConfig {
    match head {
        "mlp" => HeadConfig { kind: HeadKind::Mlp, in_dim: 8, hidden: 16, classes: 5, dropout: 0.0 },
        _ => HeadConfig::linear(8, 5),
    }
}

fn run_case(head: &str, opt: &str) {
    let dev = Device::Cpu;
    let (xs, x) = common::npy(&fixture().join("x.npy"));
    assert_eq!(xs, vec![40, 8]);
    let y: Vec<u32> = i64s("y.npy").into_iter().map(|v| v as u32).collect();
    let index = i64s("batch_index.npy");
    let sizes = i64s("batch_sizes.npy");
    let x = Tensor::from_vec(x, (40, 8), &dev).unwrap();

    let cfg = head_config(head);
    let init = RegionHead::load_weights(cfg, &fixture().join(format!("init_{head}.safetensors")), &dev).unwrap();
    let (optimizer, no_decay_bias, schedule, smoothing) = match opt {
        "sgd" => (
            OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay: 0.01 },
            false,
            LrSchedule { warmup_steps: 3, start_factor: 0.0, min_factor: 0.1, total_steps: 12 },
            0.1,
        ),
        _ => (
            OptimizerConfig::Adamw { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 },
            true,
            LrSchedule { warmup_steps: 3, start_factor: 0.1, min_factor: 0.0, total_steps: 12 },
            0.2,
        ),
    };
    let mut trainer = Trainer::new(init, optimizer, no_decay_bias, schedule, smoothing, 0).unwrap();

    let case = format!("{head}_{opt}");
    let want_losses = f64s(&format!("{case}_losses.npy"));
    let want_lrs = f64s(&format!("{case}_lrs.npy"));
    assert_eq!(sizes.len(), 12);
    let mut start = 0usize;
    for (k, &size) in sizes.iter().enumerate() {
        let rows: Vec<u32> = index[start..start + size as usize].iter().map(|&r| r as u32).collect();
        start += size as usize;
        let idx = Tensor::from_slice(&rows, rows.len(), &dev).unwrap();
        let xb = x.index_select(&idx, 0).unwrap();
        let yb: Vec<u32> = rows.iter().map(|&r| y[r as usize]).collect();
        let stats = trainer.step(&xb, &yb).unwrap();
        assert!((stats.lr - want_lrs[k]).abs() < 1e-12, "{case} step {k}: lr {} vs torch {}", stats.lr, want_lrs[k]);
        let dl = (f64::from(stats.loss) - want_losses[k]).abs();
        assert!(dl <= 1e-5, "{case} step {k}: loss {} vs torch {} (diff {dl:e})", stats.loss, want_losses[k]);
    }
    assert_eq!(trainer.steps_done(), 12);

    let want = candle_core::safetensors::load(fixture().join(format!("{case}_final.safetensors")), &dev).unwrap();
    let got = trainer.head().tensors();
    assert_eq!(got.len(), want.len());
    let init = candle_core::safetensors::load(fixture().join(format!("init_{head}.safetensors")), &dev).unwrap();
    for (name, w) in &want {
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let g = got.get(name).unwrap_or_else(|| panic!("{case}: no {name}"));
        assert_eq!(g.dims(), w.dims(), "{case} {name}");
        let d = common::max_diff(&flat(g), &flat(w));
        // The training must have moved the weights far more than the tolerance.
        let moved = common::max_diff(&flat(&init[name]), &flat(w));
        assert!(moved > 1e-2, "{case} {name}: torch moved the weights only {moved}");
        eprintln!("{case} {name}: max |diff| {d:e}, moved {moved}");
        assert!(d <= 1e-5, "{case} {name}: max |diff| {d:e} vs torch");
    }
}

#[test]
fn mlp_sgd_nesterov_matches_torch() {
    run_case("mlp", "sgd");
}

#[test]
fn mlp_adamw_matches_torch() {
    run_case("mlp", "adamw");
}

#[test]
fn linear_sgd_nesterov_matches_torch() {
    run_case("linear", "sgd");
}

#[test]
fn linear_adamw_matches_torch() {
    run_case("linear", "adamw");
}
