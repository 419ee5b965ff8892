//! GradCAM and input gradients (`labelscope_nn::gradcam`) of the tiny
//! torchvision-layout ResNet against PyTorch autograd (fixture by
//! `tests/reference/make_resnet_torch_fixture.py`, float64 reference): raw
//! maps at layer4, maps upsampled (bilinear, align_corners=False) and min-max
//! scaled, and d score / d input, for score = Σ_b logits[b, class_b].
//! Max |diff| ≤ 1e-4 (f32).

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use labelscope_nn::{gradcam, input_gradient, upsample_normalize, Error, ResNet};

const CLASSES: [usize; 2] = [1, 9];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet_torch")
}

fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    common::npy(&fixture().join(format!("{name}.npy")))
}

fn tensor(name: &str) -> Tensor {
    let (shape, v) = npy(name);
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Max |got - want| and max |want| (so that a test on an all-zero reference cannot pass silently).
fn diff(got: &Tensor, name: &str) -> (f32, f32) {
    let (shape, want) = npy(name);
    assert_eq!(got.dims(), shape.as_slice(), "{name}: shape");
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let d = got.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    (d, want.iter().fold(0.0f32, |m, v| m.max(v.abs())))
}

fn model() -> ResNet {
    ResNet::load(&fixture().join("model.safetensors"), &Device::Cpu).unwrap()
}

#[test]
fn gradcam_matches_pytorch() {
    let m = model();
    let x = tensor("input");
    let out = gradcam(&m, &x, &CLASSES).unwrap();
    let (dl, _) = diff(&out.logits, "logits");
    let (da, _) = diff(&out.activation, "layer4");
    let (dc, mc) = diff(&out.cams, "cam_raw");
    let up = upsample_normalize(&out.cams, (64, 80)).unwrap();
    let (du, mu) = diff(&up, "cam_up");
    eprintln!("gradcam: max |diff| logits {dl:.2e}, layer4 {da:.2e}, cam_raw {dc:.2e} (max {mc:.3}), cam_up {du:.2e}");
    assert!(mc > 0.1 && mu > 0.99, "degenerate reference");
    assert!(dl <= 1e-4 && da <= 1e-4 && dc <= 1e-4 && du <= 1e-4);
}

#[test]
fn input_gradient_matches_pytorch() {
    let m = model();
    let x = tensor("input");
    let g = input_gradient(&m, &x, &CLASSES).unwrap();
    let (d, mg) = diff(&g, "input_grad");
    eprintln!("input gradient: max |diff| {d:.2e} (max |grad| {mg:.3})");
    assert!(mg > 1e-3, "degenerate reference");
    assert!(d <= 1e-4, "{d}");
}

#[test]
fn bad_classes_are_errors() {
    let m = model();
    let x = tensor("input");
    assert!(matches!(gradcam(&m, &x, &[1]), Err(Error::Shape(_))));
    assert!(matches!(gradcam(&m, &x, &[1, 10]), Err(Error::Invalid(_))));
    assert!(matches!(input_gradient(&m, &x, &[10, 0]), Err(Error::Invalid(_))));
}

/// GradCAM and input gradients on the path that non-CPU devices take (`with_candle_ops`), run on
/// the CPU, against the same PyTorch references. The 64×80 input gives `layer4`'s strided
/// convolutions a 4×5 input, the case whose gradient candle's `conv2d` backward gets wrong
/// (worked around in `conv_nchw`).
#[test]
fn candle_ops_gradients_match_pytorch() {
    let m = model().with_candle_ops();
    let x = tensor("input");
    let out = gradcam(&m, &x, &CLASSES).unwrap();
    let (dl, _) = diff(&out.logits, "logits");
    let (dc, mc) = diff(&out.cams, "cam_raw");
    let g = input_gradient(&m, &x, &CLASSES).unwrap();
    let (dg, mg) = diff(&g, "input_grad");
    eprintln!(
        "candle ops: max |diff| logits {dl:.2e}, cam_raw {dc:.2e} (max {mc:.3}), input grad {dg:.2e} (max {mg:.3})"
    );
    assert!(mc > 0.1 && mg > 1e-3, "degenerate reference");
    assert!(dl <= 1e-4 && dc <= 1e-4 && dg <= 1e-4, "{dl} {dc} {dg}");
}
