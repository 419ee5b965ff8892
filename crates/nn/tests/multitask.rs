//! LUAB multitask training on generated images: a coloured square at a
//! random place on noise; the class is its colour and the point its centre.
//! The point head must learn the location (validation localisation error
//! falls well below what the mean point gives); with the random-point
//! baseline it must not. A run stopped and resumed equals the uninterrupted
//! run, epoch for epoch.

use std::ops::ControlFlow;

use candle_core::Device;
use labelscope_core::rng::Xoshiro256;
use labelscope_nn::multitask::{
    crop_resize, random_resized_crop, smooth_l1, train_multitask, transform_point, MultitaskConfig, MultitaskData,
};

const S: usize = 32;

fn data(n: usize, seed: u64) -> MultitaskData {
    let mut rng = Xoshiro256::from_seed(seed);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut points = Vec::new();
    for i in 0..n {
        let class = (i % 2) as u32;
        let cx = 6 + rng.below(21) as usize;
        let cy = 6 + rng.below(21) as usize;
        let mut img = vec![0.0f32; 3 * S * S];
        for c in 0..3 {
            for p in 0..S * S {
                img[c * S * S + p] = (0.1 * rng.gauss()) as f32 - 0.2;
            }
        }
        let colour: [f32; 3] = if class == 0 { [0.8, -0.3, -0.3] } else { [-0.3, -0.3, 0.8] };
        for y in cy - 4..cy + 4 {
            for x in cx - 4..cx + 4 {
                for c in 0..3 {
                    img[c * S * S + y * S + x] = colour[c];
                }
            }
        }
        images.push(img);
        labels.push(class);
        points.push(Some((cx as f64 / S as f64, cy as f64 / S as f64)));
    }
    MultitaskData { size: S, images, labels, points, soft: None, masks: None, class_points: None }
}

fn config(random_points: bool, epochs: u64) -> MultitaskConfig {
    MultitaskConfig { lambda: 4.0, random_points, ..MultitaskConfig::new(2, epochs, 32, 3e-3, 5) }
}

#[test]
fn the_point_head_learns_the_planted_location_and_the_random_baseline_does_not() {
    let (train, val) = (data(384, 1), data(96, 2));
    let dev = Device::Cpu;
    let (_, real) =
        train_multitask(&train, &val, &config(false, 12), None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    let (_, random) =
        train_multitask(&train, &val, &config(true, 12), None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    let first = real[0].val_localisation_error;
    let last = real.last().unwrap().val_localisation_error;
    let base = random.last().unwrap().val_localisation_error;
    // What always answering the mean point would score on the validation points.
    let (mx, my) = val.points.iter().flatten().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let m = (mx / val.points.len() as f64, my / val.points.len() as f64);
    let mean_err: f64 =
        val.points.iter().flatten().map(|p| ((p.0 - m.0).powi(2) + (p.1 - m.1).powi(2)).sqrt()).sum::<f64>()
            / val.points.len() as f64;
    eprintln!(
        "localisation error: real points {first:.3} -> {last:.3}; random-point baseline {base:.3}; mean point {mean_err:.3}; \
         accuracy {:.3}",
        real.last().unwrap().val_accuracy
    );
    assert!(last < 0.5 * mean_err, "the point head did not learn the location: {last} vs mean point {mean_err}");
    assert!(last < first, "validation localisation error must fall: {first} -> {last}");
    assert!(base > 0.8 * mean_err, "the random-point baseline learnt locations: {base} vs {mean_err}");
    assert!(real.last().unwrap().val_accuracy > 0.95);
}

#[test]
fn a_resumed_run_equals_the_uninterrupted_one() {
    let (train, val) = (data(64, 3), data(16, 4));
    let dev = Device::Cpu;
    let (_, straight) =
        train_multitask(&train, &val, &config(false, 3), None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Stop after the first epoch, then resume.
    let (_, a) =
        train_multitask(&train, &val, &config(false, 3), Some(dir.path()), false, &dev, |_| ControlFlow::Break(()))
            .unwrap();
    assert_eq!(a.len(), 1);
    let e =
        train_multitask(&train, &val, &config(false, 3), Some(dir.path()), false, &dev, |_| ControlFlow::Continue(()));
    assert!(e.err().unwrap().to_string().contains("resume"), "a run folder is not silently restarted");
    let (_, b) =
        train_multitask(&train, &val, &config(false, 3), Some(dir.path()), true, &dev, |_| ControlFlow::Continue(()))
            .unwrap();
    let resumed: Vec<_> = a.into_iter().chain(b).collect();
    assert_eq!(resumed.len(), 3);
    for (x, y) in straight.iter().zip(&resumed) {
        assert_eq!(x.epoch, y.epoch);
        assert!(
            (x.loss - y.loss).abs() < 1e-6 && (x.val_localisation_error - y.val_localisation_error).abs() < 1e-6,
            "{x:?} vs {y:?}"
        );
    }
}

#[test]
fn crops_points_and_losses() {
    // A point inside the crop moves with it; one outside is dropped; the flip mirrors x.
    assert_eq!(transform_point((0.5, 0.5), 100, 100, [25, 25, 50, 50], false), Some((0.5, 0.5)));
    assert_eq!(transform_point((0.3, 0.5), 100, 100, [25, 25, 50, 50], true), Some((0.9, 0.5)));
    assert_eq!(transform_point((0.1, 0.5), 100, 100, [25, 25, 50, 50], false), None);
    let mut rng = Xoshiro256::from_seed(9);
    for _ in 0..200 {
        let [x, y, w, h] = random_resized_crop(&mut rng, 64, 48, (0.5, 1.0), (0.75, 4.0 / 3.0));
        assert!(w > 0 && h > 0 && x + w <= 64 && y + h <= 48);
        let share = (w * h) as f64 / (64.0 * 48.0);
        assert!((0.45..=1.0).contains(&share), "{share}");
    }
    // The whole image at its own size is the identity; a flip reverses the columns.
    let img: Vec<f32> = (0..3 * 4 * 4).map(|v| v as f32).collect();
    assert_eq!(crop_resize(&img, 4, 4, [0, 0, 4, 4], 4, false), img);
    let f = crop_resize(&img, 4, 4, [0, 0, 4, 4], 4, true);
    assert_eq!(&f[..4], &[3.0, 2.0, 1.0, 0.0]);
    // A 2x2 crop upsampled to 4x4: corners keep the corner values, the centre averages.
    let up = crop_resize(&img, 4, 4, [1, 1, 2, 2], 4, false);
    assert_eq!(up[0], img[5]);
    assert_eq!(up[15], img[10]);
    // smooth-L1: 0.5 d^2 below 1, d - 0.5 above.
    let dev = Device::Cpu;
    let p = candle_core::Tensor::new(&[0.0f32, 0.0, 3.0, -0.5], &dev).unwrap();
    let t = candle_core::Tensor::new(&[0.5f32, 0.0, 0.0, 0.5], &dev).unwrap();
    let l = smooth_l1(&p, &t).unwrap().to_scalar::<f32>().unwrap();
    assert!((l - (0.125 + 0.0 + 2.5 + 0.5) / 4.0).abs() < 1e-6, "{l}");
}

/// Two squares of two of three colours per image; soft targets 1 for the colours present.
fn multilabel(n: usize, seed: u64) -> MultitaskData {
    let mut rng = Xoshiro256::from_seed(seed);
    let colours: [[f32; 3]; 3] = [[0.8, -0.3, -0.3], [-0.3, 0.8, -0.3], [-0.3, -0.3, 0.8]];
    let mut d = MultitaskData {
        size: S,
        images: Vec::new(),
        labels: Vec::new(),
        points: Vec::new(),
        soft: Some(Vec::new()),
        masks: None,
        class_points: None,
    };
    for i in 0..n {
        let a = i % 3;
        let b = (a + 1 + (i / 3) % 2) % 3;
        let mut img = vec![-0.2f32; 3 * S * S];
        let mut pts = Vec::new();
        for (k, &c) in [a, b].iter().enumerate() {
            let (cx, cy) = (5 + rng.below(8) as usize + 16 * k, 5 + rng.below(22) as usize);
            pts.push((c as u32, (cx as f64 / S as f64, cy as f64 / S as f64)));
            for y in cy - 4..cy + 4 {
                for x in cx - 4..cx + 4 {
                    for ch in 0..3 {
                        img[ch * S * S + y * S + x] = colours[c][ch];
                    }
                }
            }
        }
        let mut t = vec![0.0f32; 3];
        t[a] = 1.0;
        t[b] = 1.0;
        d.images.push(img);
        d.labels.push(a as u32);
        d.points.push(None);
        d.soft.as_mut().unwrap().push(t);
        pts.sort_by_key(|p| p.0);
        d.class_points.get_or_insert_with(Vec::new).push(pts);
    }
    d
}

#[test]
fn multi_label_bce_with_smoothing_bias_init_and_no_head_decay() {
    use labelscope_nn::multitask::{bce_with_logits, bias_init};
    // The bias makes the first predictions the mean targets.
    let b = bias_init(&[vec![1.0, 0.0, 0.5], vec![1.0, 0.0, 0.0]], 3);
    assert!(
        (b[0] - (0.9999f32 / 0.0001).ln()).abs() < 1e-3 && b[1] < -9.0 && (b[2] - (0.25f32 / 0.75).ln()).abs() < 1e-6
    );
    // BCE against the closed form.
    let dev = Device::Cpu;
    let z = candle_core::Tensor::new(&[[2.0f32, -1.0]], &dev).unwrap();
    let t = candle_core::Tensor::new(&[[1.0f32, 0.25]], &dev).unwrap();
    let got = bce_with_logits(&z, &t).unwrap().to_scalar::<f32>().unwrap();
    let s = |x: f64| 1.0 / (1.0 + (-x).exp());
    let want = (-(s(2.0)).ln() - (0.25 * s(-1.0).ln() + 0.75 * (1.0 - s(-1.0)).ln())) / 2.0;
    assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
    let (mut train, mut val) = (multilabel(240, 7), multilabel(60, 8));
    train.class_points = None;
    val.class_points = None;
    let cfg = MultitaskConfig {
        lambda: 0.0,
        smoothing: (0.05, 0.95),
        bias_init: true,
        head_decay: false,
        ..MultitaskConfig::new(3, 8, 32, 3e-3, 1)
    };
    let (_, logs) = train_multitask(&train, &val, &cfg, None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    let last = logs.last().unwrap();
    eprintln!(
        "multi-label: top-1 in the label set {:.3}, loss {:.4} -> {:.4}",
        last.val_accuracy, logs[0].loss, last.loss
    );
    assert!(last.val_accuracy > 0.9, "{logs:?}");
    assert!(last.loss < logs[0].loss);
    // Bad targets are refused.
    let mut bad = train.clone();
    bad.soft.as_mut().unwrap()[3] = vec![1.5, 0.0, 0.0];
    let e =
        train_multitask(&bad, &val, &cfg, None, false, &dev, |_| ControlFlow::Continue(())).err().unwrap().to_string();
    assert!(e.contains("image 3"), "{e}");
}

/// Object (core) colour and a corner patch (spurious) colour both give the class; `swap` flips
/// the corner patch (the counterfactual test set).
fn cue_data(n: usize, seed: u64, swap: bool) -> MultitaskData {
    let mut rng = Xoshiro256::from_seed(seed);
    let mut d = MultitaskData {
        size: S,
        images: Vec::new(),
        labels: Vec::new(),
        points: Vec::new(),
        soft: None,
        masks: Some(Vec::new()),
        class_points: None,
    };
    for i in 0..n {
        let class = i % 2;
        let mut img = vec![0.0f32; 3 * S * S];
        for v in img.iter_mut() {
            *v = (0.1 * rng.gauss()) as f32;
        }
        let obj: [f32; 3] = if class == 0 { [0.7, 0.7, -0.3] } else { [-0.3, 0.7, 0.7] };
        let patch_class = if swap { 1 - class } else { class };
        let patch: [f32; 3] = if patch_class == 0 { [0.9, -0.5, -0.5] } else { [-0.5, -0.5, 0.9] };
        let (cx, cy) = (10 + rng.below(14) as usize, 10 + rng.below(14) as usize);
        let mut mask = vec![false; S * S];
        for y in cy - 4..cy + 4 {
            for x in cx - 4..cx + 4 {
                mask[y * S + x] = true;
                for c in 0..3 {
                    img[c * S * S + y * S + x] = obj[c];
                }
            }
        }
        for y in 0..2 {
            for x in 0..2 {
                for c in 0..3 {
                    img[c * S * S + y * S + x] = patch[c];
                }
            }
        }
        d.images.push(img);
        d.labels.push(class as u32);
        d.points.push(None);
        d.masks.as_mut().unwrap().push(mask);
    }
    d
}

#[test]
fn corm_noise_stays_off_the_core_and_the_penalty_estimates_the_gradient_norm() {
    use candle_core::{Module, Tensor, Var};
    use candle_nn::{VarBuilder, VarMap};
    use labelscope_nn::multitask::{directional_derivative, noise_non_core, Corm, SmallCnn};
    let dev = Device::Cpu;
    // Noise: core pixels untouched, the others moved.
    let d = cue_data(1, 1, false);
    let core = &d.masks.as_ref().unwrap()[0];
    let mut img = d.images[0].clone();
    noise_non_core(&mut img, core, 1.0, &mut Xoshiro256::from_seed(3));
    for ch in 0..3 {
        for (px, &on) in core.iter().enumerate() {
            let k = ch * S * S + px;
            assert_eq!(on, img[k] == d.images[0][k], "pixel {px}");
        }
    }
    // The estimator: E[d^2] over directions v (normal off the core, 0 on it) equals the squared
    // norm of the loss's input gradient over the non-core pixels.
    let varmap = VarMap::new();
    let net = SmallCnn::new(VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &dev), S, 2, 1).unwrap();
    let flat: Vec<f32> = d.images[0].clone();
    let xv = Var::from_tensor(&Tensor::from_vec(flat.clone(), (1, 3, S, S), &dev).unwrap()).unwrap();
    let loss = |logits: &Tensor| labelscope_nn::cross_entropy(logits, &[0], 0.0);
    let l = loss(&net.class_head.forward(&net.features(xv.as_tensor()).unwrap()).unwrap()).unwrap();
    let g = l.backward().unwrap().get(xv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want: f64 = g.iter().enumerate().filter(|(k, _)| !core[k % (S * S)]).map(|(_, &v)| f64::from(v).powi(2)).sum();
    let x = Tensor::from_vec(flat, (1, 3, S, S), &dev).unwrap();
    let mut rng = Xoshiro256::from_seed(4);
    let trials = 2000;
    let mut sum = 0.0;
    for _ in 0..trials {
        let v: Vec<f32> = (0..3 * S * S).map(|k| if core[k % (S * S)] { 0.0 } else { rng.gauss() as f32 }).collect();
        let v = Tensor::from_vec(v, (1, 3, S, S), &dev).unwrap();
        let dd = directional_derivative(&net, &x, &v, 1e-2, &loss).unwrap().to_scalar::<f32>().unwrap();
        sum += f64::from(dd).powi(2);
    }
    let got = sum / trials as f64;
    eprintln!("input-gradient norm^2 over non-core pixels: autograd {want:.4e}, estimate {got:.4e}");
    assert!((got / want - 1.0).abs() < 0.15, "estimate {got} vs {want}");
    // A CoRM run without masks is refused; with them it trains.
    let cfg = MultitaskConfig {
        lambda: 0.0,
        corm: Some(Corm { p: 0.5, sigma: 0.5, penalty: 0.1, eps: 1e-2 }),
        ..MultitaskConfig::new(2, 1, 16, 3e-3, 2)
    };
    let mut no_masks = cue_data(32, 5, false);
    no_masks.masks = None;
    let e =
        train_multitask(&no_masks, &no_masks, &cfg, None, false, &dev, |_| ControlFlow::Continue(())).err().unwrap();
    assert!(e.to_string().contains("core masks"), "{e}");
    let data = cue_data(32, 5, false);
    let (_, logs) = train_multitask(&data, &data, &cfg, None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    assert!(logs[0].loss.is_finite());
}

#[test]
fn the_trainable_resnet_matches_the_pytorch_checked_runtime_and_trains() {
    use candle_core::{DType, Tensor};
    use candle_nn::{VarBuilder, VarMap};
    use labelscope_nn::multitask::{BackboneChoice, SmallCnn};
    use labelscope_nn::{ResNet, ResNetConfig};
    let dev = Device::Cpu;
    let weights =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet_torch/model.safetensors");
    let cfg = ResNetConfig { blocks: [2, 1, 2, 1], stem: 8, widths: [4, 8, 8, 16], classes: 10 };
    let (bm, hm) = (VarMap::new(), VarMap::new());
    let net = SmallCnn::resnet(
        VarBuilder::from_varmap(&bm, DType::F32, &dev),
        VarBuilder::from_varmap(&hm, DType::F32, &dev),
        &cfg,
        10,
        1,
    )
    .unwrap();
    let mut bm = bm;
    bm.load(&weights).unwrap();
    net.set_train(false);
    // The same torchvision weights through the inference runtime (checked against PyTorch in resnet_torch.rs).
    let reference = ResNet::load(&weights, &dev).unwrap();
    let mut rng = Xoshiro256::from_seed(21);
    let x: Vec<f32> = (0..2 * 3 * 64 * 64).map(|_| rng.gauss() as f32).collect();
    let x = Tensor::from_vec(x, (2, 3, 64, 64), &dev).unwrap();
    let got = net.features(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = reference.forward(&x).unwrap().features.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("trainable ResNet (eval) vs runtime features: max |diff| {d:.2e}");
    // The fixture's own input (224 px) against PyTorch's features, and other sizes against the
    // runtime: 64 and 63 px give layer inputs with C == H == W (8 channels on 8 x 8), which candle
    // 0.9's convolution gets wrong without the workaround in `conv_forward`.
    let a = labelscope_core::npy::read_npy(&weights.with_file_name("input.npy")).unwrap();
    let xi = Tensor::from_vec(a.to_f32_vec(&weights, "x").unwrap(), a.shape.clone(), &dev).unwrap();
    let f = labelscope_core::npy::read_npy(&weights.with_file_name("features.npy")).unwrap();
    let torch = f.to_f32_vec(&weights, "f").unwrap();
    let mine = net.features(&xi).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let dt = mine.iter().zip(&torch).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(dt < 1e-4, "vs PyTorch: {dt}");
    for side in [96usize, 63] {
        let x: Vec<f32> = (0..3 * side * side).map(|_| rng.gauss() as f32).collect();
        let x = Tensor::from_vec(x, (1, 3, side, side), &dev).unwrap();
        let a = net.features(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = reference.forward(&x).unwrap().features.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let d = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(d < 1e-4, "side {side}: {d}");
    }
    // Started from those weights, it learns the colour task; the run goes through BatchNorm in
    // training mode and validates with the running statistics.
    let (train, val) = (data(128, 31), data(32, 32));
    let cfg = MultitaskConfig {
        lambda: 0.0,
        backbone: BackboneChoice::ResNet {
            blocks: [2, 1, 2, 1],
            stem: 8,
            widths: [4, 8, 8, 16],
            weights: Some(weights),
        },
        ..MultitaskConfig::new(2, 8, 16, 3e-3, 3)
    };
    let (_, logs) = train_multitask(&train, &val, &cfg, None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    eprintln!("ResNet backbone: val accuracy {:?}", logs.iter().map(|l| l.val_accuracy).collect::<Vec<_>>());
    assert!(logs.last().unwrap().val_accuracy > 0.85 && logs.last().unwrap().loss < logs[0].loss, "{logs:?}");
}

/// Multi-label LUAB with a point per class present (COCO-AB icons): the point head regresses
/// one point per class, and must learn where each colour is; the random-point baseline must not.
#[test]
fn per_class_points_are_learnt_and_the_random_baseline_is_not() {
    let (train, val) = (multilabel(288, 11), multilabel(72, 12));
    let dev = Device::Cpu;
    let cfg =
        |random_points| MultitaskConfig { lambda: 4.0, random_points, ..MultitaskConfig::new(3, 12, 32, 3e-3, 2) };
    let (net, real) =
        train_multitask(&train, &val, &cfg(false), None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(net.point_slots(), 3);
    let (_, random) =
        train_multitask(&train, &val, &cfg(true), None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    // The per-class mean point's error: the best a head that cannot see the image can do.
    let pairs: Vec<(u32, (f64, f64))> = val.class_points.as_ref().unwrap().iter().flatten().copied().collect();
    let mean_err: f64 = {
        let mut m = [(0.0, 0.0, 0usize); 3];
        for &(c, (x, y)) in &pairs {
            let e = &mut m[c as usize];
            e.0 += x;
            e.1 += y;
            e.2 += 1;
        }
        pairs
            .iter()
            .map(|&(c, (x, y))| {
                let e = m[c as usize];
                ((x - e.0 / e.2 as f64).powi(2) + (y - e.1 / e.2 as f64).powi(2)).sqrt()
            })
            .sum::<f64>()
            / pairs.len() as f64
    };
    let (first, last, base) = (
        real[0].val_localisation_error,
        real.last().unwrap().val_localisation_error,
        random.last().unwrap().val_localisation_error,
    );
    eprintln!("per-class points: {first:.3} -> {last:.3}; random-point baseline {base:.3}; per-class mean point {mean_err:.3}");
    assert!(last < 0.6 * mean_err, "per-class points not learnt: {last} vs {mean_err}");
    assert!(base > 0.8 * mean_err, "the random baseline learnt locations: {base} vs {mean_err}");
    // A class index past the class list is refused with the image named.
    let mut bad = train.clone();
    bad.class_points.as_mut().unwrap()[5].push((7, (0.5, 0.5)));
    let e = train_multitask(&bad, &val, &cfg(false), None, false, &dev, |_| ControlFlow::Continue(()))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("image 5") && e.contains("class 7"), "{e}");
}

/// The trainable ViT backbone: started from the PyTorch-checked fixture weights it gives
/// PyTorch's CLS features (and, at a larger side, the runtime's features with the position
/// embedding resampled the same way); from scratch it learns the planted task.
#[test]
fn the_trainable_vit_matches_pytorch_and_learns() {
    use candle_core::Tensor;
    use labelscope_nn::multitask::BackboneChoice;
    use labelscope_nn::{Vit, VitConfig, VitVariant};
    let dev = Device::Cpu;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit_torch");
    let weights = fixture.join("model.safetensors");
    let vit = |w: Option<std::path::PathBuf>, patch, dim, depth, heads| BackboneChoice::Vit {
        patch,
        dim,
        depth,
        heads,
        mlp_ratio: 4,
        dinov2: false,
        registers: false,
        weights: w,
    };
    let npy = |name: &str| {
        let a = labelscope_core::npy::read_npy(&fixture.join(name)).unwrap();
        (a.shape.clone(), a.to_f32_vec(&fixture, name).unwrap())
    };
    let (shape, x) = npy("square_input.npy");
    let side = shape[2];
    let mut d = data(2, 1);
    d.size = side;
    d.images = vec![vec![0.0; 3 * side * side]; 2];
    d.points = vec![None, None];
    let cfg = MultitaskConfig {
        backbone: vit(Some(weights.clone()), 4, 32, 2, 4),
        augment: false,
        ..MultitaskConfig::new(2, 0, 2, 1e-3, 0)
    };
    let (net, logs) = train_multitask(&d, &d, &cfg, None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    assert!(logs.is_empty());
    let xt = Tensor::from_vec(x, (shape[0], shape[1], shape[2], shape[3]), &dev).unwrap();
    let got = net.features(&xt).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (_, want) = npy("square_cls.npy");
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("trainable ViT vs PyTorch CLS: max |diff| {diff:.2e}");
    assert!(diff <= 1e-4, "{diff}");
    // At 24 px (a 6 x 6 grid) the position embedding is resampled once at load.
    let mut d24 = d.clone();
    d24.size = 24;
    d24.images = vec![vec![0.0; 3 * 24 * 24]; 2];
    let (net24, _) = train_multitask(&d24, &d24, &cfg, None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    let reference = Vit::from_safetensors_with(
        VitConfig { patch: 4, dim: 32, depth: 2, heads: 4, mlp_ratio: 4 },
        VitVariant { pos_grid: 4, ..VitVariant::dino(4) },
        &weights,
        &dev,
    )
    .unwrap();
    let mut rng = Xoshiro256::from_seed(3);
    let x: Vec<f32> = (0..2 * 3 * 24 * 24).map(|_| rng.gauss() as f32).collect();
    let x = Tensor::from_vec(x, (2, 3, 24, 24), &dev).unwrap();
    let a = net24.features(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.forward(&x).unwrap().cls.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diff = a.iter().zip(&b).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff <= 1e-4, "resampled position embedding: {diff}");
    // A file without a tensor the backbone needs is named.
    let mut other = cfg.clone();
    other.backbone = vit(Some(weights.clone()), 4, 32, 3, 4);
    let e =
        train_multitask(&d, &d, &other, None, false, &dev, |_| ControlFlow::Continue(())).err().unwrap().to_string();
    assert!(e.contains("blocks.2"), "{e}");
    // From scratch on the planted squares (32 px, 8 px patches): the class is learnt and the
    // point head beats the mean point.
    let (train, val) = (data(256, 1), data(64, 2));
    let cfg =
        MultitaskConfig { backbone: vit(None, 8, 32, 2, 2), lambda: 4.0, ..MultitaskConfig::new(2, 30, 32, 2e-3, 4) };
    let (_, logs) = train_multitask(&train, &val, &cfg, None, false, &dev, |_| ControlFlow::Continue(())).unwrap();
    let last = logs.last().unwrap();
    eprintln!(
        "ViT from scratch: loss {:.3} -> {:.3}, val accuracy {:.3}, localisation {:.3} -> {:.3}",
        logs[0].loss, last.loss, last.val_accuracy, logs[0].val_localisation_error, last.val_localisation_error
    );
    assert!(last.val_accuracy > 0.95, "{logs:?}");
    let pts: Vec<(f64, f64)> = val.points.iter().flatten().copied().collect();
    let m = pts.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0 / pts.len() as f64, a.1 + p.1 / pts.len() as f64));
    let mean_err =
        pts.iter().map(|p| ((p.0 - m.0).powi(2) + (p.1 - m.1).powi(2)).sqrt()).sum::<f64>() / pts.len() as f64;
    assert!(
        last.loss < logs[0].loss && last.val_localisation_error < 0.5 * mean_err,
        "mean point {mean_err}: {logs:?}"
    );
}
