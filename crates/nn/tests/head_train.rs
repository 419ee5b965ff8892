//! The region head's training loop (`labelscope_nn::train`): resume gives
//! bit-identical weights, dropout and initialisation have the documented
//! distributions, bad labels / mismatching checkpoints are refused with the
//! row / field named, a separable dataset is learnt to 100 % held-out
//! accuracy, and top-k / f16 input / save + load behave.

use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor};
use labelscope_core::rng::Xoshiro256;
use labelscope_nn::{
    train, HeadConfig, HeadKind, OptimizerConfig, Progress, RegionHead, RunOptions, TrainConfig, TrainData,
};

/// N rows of D standard-normal features with labels uniform in 0..C (from
/// core's xoshiro, independent of the crate's own streams).
fn random_data(n: usize, d: usize, c: u32, seed: u64) -> TrainData {
    let mut r = Xoshiro256::from_seed(seed);
    let x: Vec<f32> = (0..n * d).map(|_| r.gauss() as f32).collect();
    let y: Vec<u32> = (0..n).map(|_| r.below(u64::from(c)) as u32).collect();
    TrainData::from_f32(x, d, y, &Device::Cpu).unwrap()
}

fn mlp(d: usize, hidden: usize, c: usize, dropout: f32) -> HeadConfig {
    HeadConfig { kind: HeadKind::Mlp, in_dim: d, hidden, classes: c, dropout }
}

fn bits(head: &RegionHead) -> Vec<(String, Vec<u32>)> {
    let mut v: Vec<(String, Vec<u32>)> = head
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()))
        .collect();
    v.sort();
    v
}

fn no_progress(_: &Progress) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn resume_case(cfg: TrainConfig, head: HeadConfig, stops: &[u64], every: Option<u64>) {
    let data = random_data(60, 6, 3, 11);
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();

    // Uninterrupted.
    let full_run = RunOptions { checkpoint_dir: Some(dir.path().join("full")), checkpoint_every: every, resume: false };
    let full = train(&data, head, &cfg, &full_run, &dev, no_progress).unwrap();
    assert!(full.completed);
    // 60 rows, 20 % held out → 48 training rows, batch 8 → 6 steps per epoch.
    assert_eq!(full.total_steps, 6 * cfg.epochs);
    assert_eq!(full.steps, full.total_steps);

    // Interrupted after each step in `stops` (the callback says stop), then resumed.
    let mut run = RunOptions { checkpoint_dir: Some(dir.path().join("cut")), checkpoint_every: every, resume: false };
    for &stop in stops {
        let out = train(&data, head, &cfg, &run, &dev, |p| match p {
            // Stop 0: before the first step (only checkpoint.json is written).
            Progress::Start { .. } if stop == 0 => ControlFlow::Break(()),
            Progress::Step { step, .. } if *step == stop => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .unwrap();
        assert!(!out.completed);
        assert_eq!(out.steps, stop);
        run.resume = true;
    }
    let mut starts = Vec::new();
    let resumed = train(&data, head, &cfg, &run, &dev, |p| {
        if let Progress::Start { start_step, .. } = p {
            starts.push(*start_step);
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(starts, vec![*stops.last().unwrap()]);
    assert!(resumed.completed);
    assert_eq!(bits(&resumed.head), bits(&full.head), "resumed weights differ from the uninterrupted run");
    assert_eq!(resumed.report, full.report);
    // The final checkpoints agree tensor by tensor, bit for bit (weights, optimiser state, counters).
    let a = candle_core::safetensors::load(dir.path().join("full/checkpoint.safetensors"), &dev).unwrap();
    let b = candle_core::safetensors::load(dir.path().join("cut/checkpoint.safetensors"), &dev).unwrap();
    let mut names: Vec<&String> = a.keys().collect();
    names.sort();
    let mut bnames: Vec<&String> = b.keys().collect();
    bnames.sort();
    assert_eq!(names, bnames);
    for n in names {
        let f = |t: &Tensor| t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let (x, y) = (f(&a[n]), f(&b[n]));
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()), "checkpoint tensor {n} differs");
    }
    // A completed run resumes to itself without stepping.
    let again = train(&data, head, &cfg, &run, &dev, no_progress).unwrap();
    assert_eq!(again.steps, full.steps);
    assert!(again.epochs.is_empty());
    assert_eq!(bits(&again.head), bits(&full.head));
}

fn base_config(optimizer: OptimizerConfig) -> TrainConfig {
    TrainConfig {
        epochs: 3,
        batch_size: 8,
        seed: 42,
        heldout_fraction: 0.2,
        optimizer,
        warmup_steps: 4,
        warmup_start_factor: 0.0,
        min_lr_factor: 0.05,
        label_smoothing: 0.1,
        no_decay_bias: true,
    }
}

#[test]
fn resume_mid_epoch_is_bit_identical_sgd_with_dropout() {
    // Stop 0 is before any step; step 7 is the first batch of epoch 1, step
    // 10 the middle of it, with dropout active (so the dropout and shuffle
    // streams must line up).
    let cfg = base_config(OptimizerConfig::sgd_nesterov(0.05, 1e-3));
    resume_case(cfg, mlp(6, 32, 3, 0.3), &[0, 7, 10], None);
}

#[test]
fn resume_at_epoch_end_and_periodic_checkpoints_adamw() {
    let cfg = base_config(OptimizerConfig::adamw(3e-3, 0.05));
    resume_case(cfg, mlp(6, 16, 3, 0.2), &[6, 13], Some(4));
    let lin = TrainConfig { no_decay_bias: false, ..cfg };
    resume_case(lin, HeadConfig::linear(6, 3), &[3], Some(5));
}

#[test]
fn dropout_mask_rate_and_scale() {
    let head = RegionHead::new(mlp(4, 64, 3, 0.3), 1, &Device::Cpu).unwrap();
    let m = head.dropout_mask(200, 9, 5).unwrap().unwrap();
    assert_eq!(m.dims(), &[200, 64]);
    let v = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let keep = 1.0f32 / 0.7;
    assert!(v.iter().all(|&x| x == 0.0 || x == keep), "mask values are 0 or 1/(1-p)");
    // 12800 Bernoulli(0.3) drops: sd of the rate = sqrt(0.3·0.7/12800) = 0.00405;
    // accept ±5 sd = ±0.0203.
    let rate = v.iter().filter(|&&x| x == 0.0).count() as f64 / v.len() as f64;
    assert!((rate - 0.3).abs() < 0.0203, "drop rate {rate}");
    // Mean of the mask ≈ 1 (the expected activation is unchanged).
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    assert!((mean - 1.0).abs() < 0.03, "mask mean {mean}");
    // Other steps draw other masks; the same step the same one.
    let again = head.dropout_mask(200, 9, 5).unwrap().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let other = head.dropout_mask(200, 9, 6).unwrap().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(again, v);
    assert_ne!(other, v);
    // No mask without dropout, nor for a linear head.
    assert!(RegionHead::new(mlp(4, 8, 3, 0.0), 1, &Device::Cpu).unwrap().dropout_mask(2, 0, 0).unwrap().is_none());
    let lin = RegionHead::new(HeadConfig::linear(4, 3), 1, &Device::Cpu).unwrap();
    assert!(lin.dropout_mask(2, 0, 0).unwrap().is_none());
}

#[test]
fn forward_train_applies_the_mask_after_relu() {
    // fc1 = [[1, 0], [0, 1], [1, 1]] with bias [0, 0, -5]; fc2 = [[1, 1, 1]], bias 0.5.
    // x = [2, -1]: fc1 → [2, -1, -4], ReLU → [2, 0, 0]; mask [0, 2, 2] → [0, 0, 0] → 0.5;
    // mask [2, 0, 2] → [4, 0, 0] → 4.5; no mask (eval) → 2.5.
    let dev = Device::Cpu;
    let cfg = mlp(2, 3, 1, 0.5);
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, &dev).unwrap();
    let map = [
        ("fc1.weight".to_string(), t(vec![1., 0., 0., 1., 1., 1.], &[3, 2])),
        ("fc1.bias".to_string(), t(vec![0., 0., -5.], &[3])),
        ("fc2.weight".to_string(), t(vec![1., 1., 1.], &[1, 3])),
        ("fc2.bias".to_string(), t(vec![0.5], &[1])),
    ]
    .into_iter()
    .collect();
    let head = RegionHead::from_tensors(cfg, &map, std::path::Path::new("hand"), &dev).unwrap();
    let x = t(vec![2., -1.], &[1, 2]);
    let run = |m: Option<Vec<f32>>| -> f32 {
        let m = m.map(|m| t(m, &[1, 3]));
        head.forward_train(&x, m.as_ref()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
    };
    assert_eq!(run(Some(vec![0., 2., 2.])), 0.5);
    assert_eq!(run(Some(vec![2., 0., 2.])), 4.5);
    assert_eq!(head.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0], 2.5);
}

#[test]
fn init_is_torch_default_uniform_and_seeded() {
    let cfg = mlp(100, 50, 10, 0.0);
    let head = RegionHead::new(cfg, 3, &Device::Cpu).unwrap();
    let t = head.tensors();
    // fan_in 100 → bound 0.1 for fc1; fan_in 50 → 1/√50 = 0.14142 for fc2.
    for (name, bound) in
        [("fc1.weight", 0.1), ("fc1.bias", 0.1), ("fc2.weight", 0.141_421_36), ("fc2.bias", 0.141_421_36)]
    {
        let v = t[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let n = v.len() as f64;
        assert!(v.iter().all(|x| f64::from(x.abs()) <= bound), "{name} outside ±{bound}");
        // Uniform(−b, b): mean 0 with sd b/√(3n), variance b²/3.
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        assert!(mean.abs() < 5.0 * bound / (3.0 * n).sqrt(), "{name}: mean {mean}");
        if v.len() >= 500 {
            let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
            // Var of a U(−b, b) sample variance: b⁴·(1/5 − 1/9)/n = 0.0889·b⁴/n; ±5 sd.
            let sd = (0.0889 / n).sqrt() * bound * bound;
            assert!((var - bound * bound / 3.0).abs() < 5.0 * sd, "{name}: variance {var}");
            let max = v.iter().fold(0.0f64, |m, &x| m.max(f64::from(x.abs())));
            assert!(max > 0.99 * bound, "{name}: largest |value| {max} should approach {bound}");
        }
    }
    assert_eq!(bits(&RegionHead::new(cfg, 3, &Device::Cpu).unwrap()), bits(&head));
    assert_ne!(bits(&RegionHead::new(cfg, 4, &Device::Cpu).unwrap()), bits(&head));
}

#[test]
fn label_outside_the_head_is_refused_with_its_row() {
    let mut y = vec![0u32; 10];
    y[6] = 3;
    let data = TrainData::from_f32(vec![0.5; 20], 2, y, &Device::Cpu).unwrap();
    let cfg = base_config(OptimizerConfig::sgd_nesterov(0.1, 0.0));
    let err = train(&data, HeadConfig::linear(2, 3), &cfg, &RunOptions::default(), &Device::Cpu, no_progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 6") && err.contains("class index 3") && err.contains("3 classes"), "{err}");
    // Wrong feature dimension.
    let err = train(&data, HeadConfig::linear(4, 5), &cfg, &RunOptions::default(), &Device::Cpu, no_progress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("dimension 2") && err.contains("in_dim is 4"), "{err}");
}

#[test]
fn non_finite_loss_and_empty_batch_are_refused_before_the_update() {
    use labelscope_nn::{LrSchedule, Trainer};
    let dev = Device::Cpu;
    let head = RegionHead::new(HeadConfig::linear(2, 3), 0, &dev).unwrap();
    let before = bits(&head);
    let schedule = LrSchedule { warmup_steps: 0, start_factor: 0.0, min_factor: 0.0, total_steps: 10 };
    let mut tr = Trainer::new(head, OptimizerConfig::sgd_nesterov(0.1, 0.0), true, schedule, 0.0, 0).unwrap();
    let x = Tensor::from_vec(vec![1.0f32, f32::NAN], (1, 2), &dev).unwrap();
    let err = tr.step(&x, &[0]).unwrap_err().to_string();
    assert!(err.contains("step 0") && err.contains("NaN"), "{err}");
    let empty = Tensor::zeros((0, 2), DType::F32, &dev).unwrap();
    assert!(tr.step(&empty, &[]).unwrap_err().to_string().contains("empty batch"));
    assert_eq!(tr.steps_done(), 0);
    assert_eq!(bits(tr.head()), before);
}

#[test]
fn mismatching_checkpoints_are_refused_naming_the_field() {
    let data = random_data(30, 4, 3, 5);
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig { epochs: 1, ..base_config(OptimizerConfig::sgd_nesterov(0.1, 0.0)) };
    let head = mlp(4, 8, 3, 0.1);
    let mut run = RunOptions { checkpoint_dir: Some(dir.path().join("ck")), ..Default::default() };
    // Resuming with nothing to resume.
    run.resume = true;
    let err = train(&data, head, &cfg, &run, &dev, no_progress).unwrap_err().to_string();
    assert!(err.contains("checkpoint.json") && err.contains("resume"), "{err}");
    run.resume = false;
    train(&data, head, &cfg, &run, &dev, no_progress).unwrap();
    // Exactly the two checkpoint files, no temporary left behind.
    let mut files: Vec<String> = std::fs::read_dir(dir.path().join("ck"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, vec!["checkpoint.json", "checkpoint.safetensors"]);
    // A fresh run into a directory holding a checkpoint.
    let err = train(&data, head, &cfg, &run, &dev, no_progress).unwrap_err().to_string();
    assert!(err.contains("already holds a checkpoint"), "{err}");
    run.resume = true;
    let cases: Vec<(HeadConfig, TrainConfig, &str)> = vec![
        (mlp(4, 16, 3, 0.1), cfg, "head.hidden: 8 in the checkpoint, 16 requested"),
        (HeadConfig::linear(4, 3), cfg, "head.kind: mlp in the checkpoint, linear requested"),
        (mlp(4, 8, 3, 0.2), cfg, "head.dropout"),
        (head, TrainConfig { seed: 1, ..cfg }, "train.seed: 42 in the checkpoint, 1 requested"),
        (head, TrainConfig { optimizer: OptimizerConfig::sgd_nesterov(0.2, 0.0), ..cfg }, "train.optimizer.lr"),
        (head, TrainConfig { optimizer: OptimizerConfig::adamw(0.1, 0.0), ..cfg }, "train.optimizer"),
    ];
    for (h, c, want) in cases {
        let err = train(&data, h, &c, &run, &dev, no_progress).unwrap_err().to_string();
        assert!(err.contains(want) && err.contains("does not match"), "want {want:?} in: {err}");
    }
    // Other data.
    let err = train(&random_data(30, 4, 3, 6), head, &cfg, &run, &dev, no_progress).unwrap_err().to_string();
    assert!(err.contains("labels differ"), "{err}");
    let err = train(&random_data(31, 4, 3, 5), head, &cfg, &run, &dev, no_progress).unwrap_err().to_string();
    assert!(err.contains("30 rows of dim 4 in the checkpoint, 31 rows"), "{err}");
    // The matching request still resumes.
    assert!(train(&data, head, &cfg, &run, &dev, no_progress).unwrap().completed);
}

/// Four well-separated clusters in 3-D (centres ±4 on two axes, noise sd 0.5).
fn separable(n_per_class: usize) -> TrainData {
    let mut r = Xoshiro256::from_seed(77);
    let centres = [[4.0, 4.0, 0.0], [-4.0, 4.0, 0.0], [4.0, -4.0, 0.0], [-4.0, -4.0, 0.0]];
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n_per_class * 4 {
        let c = i % 4;
        for centre in centres[c] {
            x.push((centre + 0.5 * r.gauss()) as f32);
        }
        y.push(c as u32);
    }
    TrainData::from_f32(x, 3, y, &Device::Cpu).unwrap()
}

#[test]
fn separable_data_reaches_full_heldout_accuracy() {
    let data = separable(50);
    for (head, opt) in [
        (HeadConfig::linear(3, 4), OptimizerConfig::sgd_nesterov(0.1, 1e-4)),
        (mlp(3, 32, 4, 0.1), OptimizerConfig::adamw(1e-2, 0.01)),
    ] {
        let cfg = TrainConfig {
            epochs: 10,
            batch_size: 16,
            heldout_fraction: 0.25,
            warmup_steps: 5,
            ..TrainConfig::new(opt)
        };
        let mut epochs = 0;
        let mut steps = 0;
        let out = train(&data, head, &cfg, &RunOptions::default(), &Device::Cpu, |p| {
            match p {
                Progress::Step { loss, .. } => {
                    assert!(loss.is_finite());
                    steps += 1;
                }
                Progress::Epoch(e) => {
                    assert_eq!(e.epoch, epochs);
                    assert!(e.heldout_top1.is_some());
                    epochs += 1;
                }
                Progress::Start { train_rows, heldout_rows, .. } => assert_eq!((*train_rows, *heldout_rows), (150, 50)),
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        // 150 training rows / 16 → 10 steps per epoch.
        assert_eq!((epochs, steps), (10, 100));
        assert_eq!(out.report.rows, 50);
        assert_eq!(out.report.top1, 50, "{:?}: {:?}", head.kind, out.report);
        assert_eq!(out.report.top1_accuracy(), Some(1.0));
        assert_eq!(out.report.top5, 50);
        assert_eq!(out.report.per_class.len(), 4);
        assert_eq!(out.report.per_class.iter().map(|c| c.total).sum::<u64>(), 50);
        assert!(out.report.per_class.iter().all(|c| c.top1 == c.total && c.total > 0));
        assert!(out.epochs.last().unwrap().mean_loss < out.epochs[0].mean_loss);
    }
}

#[test]
fn f16_features_train_like_f32() {
    // Values on a 1/8 grid are exact in f16, so f16 input must give the very same run.
    let data = separable(10);
    let x32 = data.features().affine(8.0, 0.0).unwrap().round().unwrap().affine(0.125, 0.0).unwrap();
    let d32 = TrainData::new(x32.clone(), data.labels().to_vec()).unwrap();
    let d16 = TrainData::new(x32.to_dtype(DType::F16).unwrap(), data.labels().to_vec()).unwrap();
    let cfg = TrainConfig { epochs: 2, batch_size: 8, ..TrainConfig::new(OptimizerConfig::adamw(1e-2, 0.0)) };
    let head = mlp(3, 8, 4, 0.0);
    let a = train(&d32, head, &cfg, &RunOptions::default(), &Device::Cpu, no_progress).unwrap();
    let b = train(&d16, head, &cfg, &RunOptions::default(), &Device::Cpu, no_progress).unwrap();
    assert_eq!(bits(&a.head), bits(&b.head));
    assert!(TrainData::new(x32.to_dtype(DType::U32).unwrap(), data.labels().to_vec()).is_err());
    assert!(TrainData::new(x32, vec![0; 3]).unwrap_err().to_string().contains("40 feature rows but 3 labels"));
}

#[test]
fn predict_topk_by_hand_and_save_load() {
    // Linear head with W = [[1, 0], [0, 1], [0, 0]], b = [0, 0, ln 2]: x = [ln 3, 0]
    // → logits [ln 3, 0, ln 2] → softmax [3, 1, 2] / 6.
    let dev = Device::Cpu;
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, &dev).unwrap();
    let map = [
        ("fc.weight".to_string(), t(vec![1., 0., 0., 1., 0., 0.], &[3, 2])),
        ("fc.bias".to_string(), t(vec![0., 0., 2f32.ln()], &[3])),
    ]
    .into_iter()
    .collect();
    let head = RegionHead::from_tensors(HeadConfig::linear(2, 3), &map, std::path::Path::new("hand"), &dev).unwrap();
    let x = t(vec![3f32.ln(), 0.0, 0.0, 0.0], &[2, 2]);
    let top = head.predict_topk(&x, 2).unwrap();
    assert_eq!(top.len(), 2);
    assert_eq!(top[0].iter().map(|p| p.1).collect::<Vec<_>>(), vec![0, 2]);
    assert!((top[0][0].0 - 0.5).abs() < 1e-6 && (top[0][1].0 - 1.0 / 3.0).abs() < 1e-6);
    // Row 2: logits [0, 0, ln 2] → [1/4, 1/4, 1/2]; tie of 0 and 1 broken by index.
    assert_eq!(top[1][0].1, 2);
    assert_eq!(top[1][1].1, 0);
    assert!((top[1][1].0 - 0.25).abs() < 1e-6);
    assert_eq!(head.predict_topk(&x, 10).unwrap()[0].len(), 3);
    assert!(head.predict_topk(&t(vec![0.0; 3], &[1, 3]), 1).unwrap_err().to_string().contains("[batch, 2]"));

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("head.safetensors");
    head.save(&p).unwrap();
    assert!(dir.path().join("head.json").exists());
    let back = RegionHead::load(&p, &dev).unwrap();
    assert_eq!(back.config(), head.config());
    assert_eq!(bits(&back), bits(&head));
    // Weights of another head are refused naming the tensor.
    let err = RegionHead::load_weights(HeadConfig::linear(2, 4), &p, &dev).unwrap_err().to_string();
    assert!(err.contains("fc.weight") && err.contains("[3, 2]") && err.contains("head.safetensors"), "{err}");
    let err = RegionHead::load_weights(mlp(2, 4, 3, 0.0), &p, &dev).unwrap_err().to_string();
    assert!(err.contains("missing tensor fc1.weight"), "{err}");
}

#[test]
fn without_heldout_rows_the_report_is_empty() {
    let data = separable(5);
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 4,
        heldout_fraction: 0.0,
        ..TrainConfig::new(OptimizerConfig::adamw(1e-2, 0.0))
    };
    let out = train(&data, HeadConfig::linear(3, 4), &cfg, &RunOptions::default(), &Device::Cpu, no_progress).unwrap();
    assert_eq!(out.report.rows, 0);
    assert_eq!(out.report.top1_accuracy(), None);
    assert_eq!(out.epochs.len(), 2);
    assert!(out.epochs.iter().all(|e| e.heldout_top1.is_none() && e.mean_loss.is_finite()));
    // 20 training rows / 4 → 5 steps per epoch.
    assert_eq!(out.total_steps, 10);
}
