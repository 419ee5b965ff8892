//! The models on an NVIDIA GPU (`--features cuda`): the committed PyTorch
//! fixtures of the CPU parity tests, run on `cuda:0` with the same bounds
//! (max |diff| ≤ 1e-4 in f32; gradients relative to their largest value),
//! plus f16 and bf16 within half-precision rounding of PyTorch's f32.
//!
//! Covered: the ResNet (its device path: logits, features, layer4 through
//! GradCAM, input gradients), the timm ViT classifier (logits, features,
//! GradCAM maps, input gradients) and the DINOv2 ViT with registers (CLS,
//! register and patch tokens, last block's q/k/v, on three grids).
//!
//! Without a GPU each test says so and passes; with `LABELSCOPE_REQUIRE_CUDA=1`
//! (the GPU check sets it) a missing GPU fails instead. `LABELSCOPE_NN_FIXTURES`
//! points at `crates/nn/tests/fixtures` when the test binary runs from another
//! checkout than the one it was built in.
#![cfg(feature = "cuda")]

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use labelscope_nn::{gradcam, input_gradient, ResNet, Vit, VitClassifier, VitConfig, VitOutput, VitVariant};

const CFG: VitConfig = VitConfig { patch: 4, dim: 24, depth: 2, heads: 4, mlp_ratio: 4 };

fn fixture(name: &str) -> PathBuf {
    std::env::var_os("LABELSCOPE_NN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
        .join(name)
}

/// `cuda:0`, or `None` (with a message) when there is none and none is required.
fn gpu() -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("LABELSCOPE_REQUIRE_CUDA").as_deref() == Ok("1") => {
            panic!("LABELSCOPE_REQUIRE_CUDA=1 but no CUDA device: {e}")
        }
        Err(e) => {
            eprintln!("no CUDA device ({e}): test skipped");
            None
        }
    }
}

fn load(dir: &Path, name: &str, dev: &Device) -> Tensor {
    let (s, v) = common::npy(&dir.join(format!("{name}.npy")));
    Tensor::from_vec(v, s, &Device::Cpu).unwrap().to_device(dev).unwrap()
}

/// Max |got − want| and max |want| for the fixture array `name`.
fn diff(got: &Tensor, dir: &Path, name: &str) -> (f32, f32) {
    let (shape, want) = common::npy(&dir.join(format!("{name}.npy")));
    assert_eq!(got.dims(), shape.as_slice(), "{name}: shape");
    let got = got.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (common::max_diff(&got, &want), want.iter().fold(0.0f32, |m, v| m.max(v.abs())))
}

/// Asserts that `got` is within `tol` of the fixture array `name` (max |diff|).
fn check(got: &Tensor, dir: &Path, name: &str, what: &str, tol: f32) {
    let (d, m) = diff(got, dir, name);
    eprintln!("{what} {name}: max |diff| {d:e} (max |value| {m:e}, tolerance {tol:e})");
    assert!(d <= tol, "{what} {name}: max |diff| {d} > {tol}");
}

#[test]
fn resnet_on_the_gpu_matches_pytorch() {
    let Some(dev) = gpu() else { return };
    let dir = fixture("resnet_torch");
    let m = ResNet::load(&dir.join("model.safetensors"), &dev).unwrap();
    assert!(m.uses_candle_ops(), "a GPU ResNet runs on candle's ops");
    let x = load(&dir, "input", &dev);
    let out = m.forward(&x).unwrap();
    assert!(out.logits.device().is_cuda());
    check(&out.logits, &dir, "logits", "resnet f32", 1e-4);
    check(&out.features, &dir, "features", "resnet f32", 1e-4);
    let classes = [1, 9];
    let g = gradcam(&m, &x, &classes).unwrap();
    check(&g.activation, &dir, "layer4", "resnet gradcam", 1e-4);
    check(&g.cams, &dir, "cam_raw", "resnet gradcam", 1e-4);
    let ig = input_gradient(&m, &x, &classes).unwrap();
    check(&ig, &dir, "input_grad", "resnet", 1e-4);
    for (dtype, rel) in [(DType::F16, 1e-2f32), (DType::BF16, 5e-2)] {
        let h = ResNet::load(&dir.join("model.safetensors"), &dev).unwrap().to_dtype(dtype).unwrap();
        let o = h.forward(&x).unwrap();
        assert_eq!(o.logits.dtype(), DType::F32);
        for name in ["logits", "features"] {
            let got = if name == "logits" { &o.logits } else { &o.features };
            let (_, m) = diff(got, &dir, name);
            check(got, &dir, name, &format!("resnet {dtype:?}"), rel * m.max(1.0));
        }
    }
}

#[test]
fn vit_classifier_on_the_gpu_matches_pytorch() {
    let Some(dev) = gpu() else { return };
    let dir = fixture("vit_timm_cls");
    let m = VitClassifier::from_safetensors(CFG, VitVariant::timm(4), &dir.join("model.safetensors"), &dev).unwrap();
    for case in ["square", "interp"] {
        let x = load(&dir, &format!("{case}_input"), &dev);
        let (_, c) = common::npy(&dir.join(format!("{case}_classes.npy")));
        let classes: Vec<usize> = c.iter().map(|&v| v as usize).collect();
        let o = m.forward(&x).unwrap();
        check(&o.logits, &dir, &format!("{case}_logits"), "vit classifier f32", 1e-4);
        check(&o.features, &dir, &format!("{case}_features"), "vit classifier f32", 1e-4);
        let g = gradcam(&m, &x, &classes).unwrap();
        let (_, mc) = diff(&g.cams, &dir, &format!("{case}_cam"));
        check(&g.cams, &dir, &format!("{case}_cam"), "vit classifier gradcam", 1e-4 * mc);
        let ig = input_gradient(&m, &x, &classes).unwrap();
        let (_, mg) = diff(&ig, &dir, &format!("{case}_input_grad"));
        check(&ig, &dir, &format!("{case}_input_grad"), "vit classifier", 1e-4 * mg);
        for (dtype, rel) in [(DType::F16, 1e-2f32), (DType::BF16, 5e-2)] {
            let o = m.to_dtype(dtype).unwrap().forward(&x).unwrap();
            let (_, ml) = diff(&o.logits, &dir, &format!("{case}_logits"));
            check(&o.logits, &dir, &format!("{case}_logits"), &format!("vit classifier {dtype:?}"), rel * ml.max(1.0));
        }
    }
}

#[test]
fn dinov2_features_on_the_gpu_match_pytorch() {
    let Some(dev) = gpu() else { return };
    let dir = fixture("vit_dinov2_reg");
    let v = VitVariant { pos_grid: 4, ..VitVariant::dinov2(true, false) };
    let vit = Vit::from_safetensors_with(CFG, v, &dir.join("model.safetensors"), &dev).unwrap();
    let outputs = |o: &VitOutput| {
        [
            ("cls", o.cls.clone()),
            ("registers", o.registers.clone()),
            ("patches", o.patches.clone()),
            ("keys", o.keys.clone()),
            ("queries", o.queries.clone()),
            ("values", o.values.clone()),
        ]
    };
    for case in ["square", "interp", "down"] {
        let x = load(&dir, &format!("{case}_input"), &dev);
        let o = vit.forward(&x).unwrap();
        for (name, t) in outputs(&o) {
            check(&t, &dir, &format!("{case}_{name}"), "dinov2 f32", 1e-4);
        }
        let h = vit.to_dtype(DType::BF16).unwrap().forward(&x.to_dtype(DType::BF16).unwrap()).unwrap();
        let (_, m) = diff(&h.patches, &dir, &format!("{case}_patches"));
        check(&h.patches, &dir, &format!("{case}_patches"), "dinov2 bf16", 5e-2 * m.max(1.0));
    }
}
