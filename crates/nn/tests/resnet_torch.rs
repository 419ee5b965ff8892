//! The ResNet forward pass (`labelscope_nn::resnet`) against PyTorch/torchvision:
//! a tiny Bottleneck ResNet in the torchvision layout with randomised
//! BatchNorm statistics (fixture by `tests/reference/make_resnet_torch_fixture.py`,
//! torch 2.15 / torchvision 0.29, reference computed in float64). Logits,
//! pooled features and the layer4 activation, on the plain (`forward`) and
//! the hooked gradient (`forward_hooked`) paths: max |diff| ≤ 1e-4 (f32).
//! Also: clear errors for broken weights, and ResNet-50's real shapes.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use labelscope_nn::{CamLayout, CamTarget, Error, ResNet, ResNetConfig};

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

fn max_diff(got: &Tensor, name: &str) -> f32 {
    let (shape, want) = npy(name);
    assert_eq!(got.dims(), shape.as_slice(), "{name}: shape");
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    got.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The fixture's `fc.bias` repeated for `rows` images, `[rows, 10]`.
fn fc_bias_rows(rows: usize) -> Tensor {
    candle_core::safetensors::load(fixture().join("model.safetensors"), &Device::Cpu).unwrap()["fc.bias"]
        .unsqueeze(0)
        .unwrap()
        .broadcast_as((rows, 10))
        .unwrap()
        .contiguous()
        .unwrap()
}

fn model() -> ResNet {
    ResNet::load(&fixture().join("model.safetensors"), &Device::Cpu).unwrap()
}

/// A deterministic `[b, 3, h, w]` input with values spread over [-2, 2).
fn spread_input(b: usize, h: usize, w: usize) -> Tensor {
    let v: Vec<f32> = (0..b * 3 * h * w).map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * 4.0).collect();
    Tensor::from_vec(v, (b, 3, h, w), &Device::Cpu).unwrap()
}

/// Runs `forward_hooked` (`hooked`) or `forward_cam` on `x` with a hook that keeps the activation
/// and passes it on; returns the logits and the max |diff| against PyTorch of the layer4 activation
/// and of the logits.
fn hooked_pass(m: &ResNet, x: &Tensor, hooked: bool) -> (Tensor, f32, f32) {
    let mut seen = None;
    let mut hook = |a: &Tensor| -> labelscope_nn::Result<Tensor> {
        seen = Some(a.clone());
        Ok(a.clone())
    };
    let (logits, layout) = if hooked { m.forward_hooked(x, &mut hook) } else { m.forward_cam(x, &mut hook) }.unwrap();
    assert_eq!(layout, CamLayout::ChannelsFirst);
    let da = max_diff(seen.as_ref().expect("the hook was not called"), "layer4");
    let dl = max_diff(&logits, "logits");
    (logits, da, dl)
}

#[test]
fn config_is_read_from_the_tensors() {
    let m = model();
    let want = ResNetConfig { blocks: [2, 1, 2, 1], stem: 8, widths: [4, 8, 8, 16], classes: 10 };
    assert_eq!(m.config(), &want);
    // torch: sum(p.numel() for p in model.parameters()) printed by the generator.
    assert_eq!(m.num_parameters(), 13906);
}

#[test]
fn forward_matches_pytorch() {
    let m = model();
    let x = tensor("input");
    let out = m.forward(&x).unwrap();
    let dl = max_diff(&out.logits, "logits");
    let df = max_diff(&out.features, "features");
    eprintln!("fast path: max |diff| logits {dl:.2e}, features {df:.2e}");
    assert!(dl <= 1e-4 && df <= 1e-4, "logits {dl}, features {df}");
}

#[test]
fn hooked_forward_matches_pytorch() {
    let m = model();
    let x = tensor("input");
    let (_, da, dl) = hooked_pass(&m, &x, true);
    eprintln!("hooked path: max |diff| layer4 {da:.2e}, logits {dl:.2e}");
    assert!(da <= 1e-4 && dl <= 1e-4, "layer4 {da}, logits {dl}");

    // The forward pass continues with what the hook returns.
    let mut zero = |a: &Tensor| -> labelscope_nn::Result<Tensor> { Ok(a.zeros_like()?) };
    let (logits0, _) = m.forward_hooked(&x, &mut zero).unwrap();
    let fc_b = fc_bias_rows(2);
    let d = (logits0 - fc_b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-7, "zeroed layer4 must give logits = fc.bias, diff {d}");
}

fn load_err(tensors: &HashMap<String, Tensor>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.safetensors");
    candle_core::safetensors::save(tensors, &path).unwrap();
    match ResNet::load(&path, &Device::Cpu) {
        Err(e @ Error::Weights { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("broken.safetensors"), "{msg}");
            msg
        }
        Err(e) => panic!("expected Error::Weights, got {e}"),
        Ok(_) => panic!("broken weights loaded"),
    }
}

#[test]
fn broken_weights_are_clear_errors() {
    let full = candle_core::safetensors::load(fixture().join("model.safetensors"), &Device::Cpu).unwrap();
    let mut t = full.clone();
    t.remove("layer3.1.bn2.running_var");
    let msg = load_err(&t);
    assert!(msg.contains("missing tensor \"layer3.1.bn2.running_var\""), "{msg}");

    let mut t = full.clone();
    t.insert("layer2.0.conv2.weight".into(), Tensor::zeros((8, 8, 3, 1), DType::F32, &Device::Cpu).unwrap());
    let msg = load_err(&t);
    assert!(
        msg.contains("\"layer2.0.conv2.weight\"") && msg.contains("[8, 8, 3, 1]") && msg.contains("[8, 8, 3, 3]"),
        "{msg}"
    );

    let mut t = full.clone();
    t.remove("layer1.0.downsample.0.weight");
    let msg = load_err(&t);
    assert!(msg.contains("\"layer1.0.downsample.0.weight\""), "{msg}");

    let mut t = full;
    t.remove("fc.weight");
    let msg = load_err(&t);
    assert!(msg.contains("\"fc.weight\""), "{msg}");

    let m = model();
    let bad = Tensor::zeros((1, 4, 64, 64), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(m.forward(&bad), Err(Error::Shape(_))));
}

#[test]
fn resnet50_real_shapes() {
    let vb = candle_nn::VarBuilder::zeros(DType::F32, &Device::Cpu);
    let m = ResNet::from_var_builder(ResNetConfig::resnet50(), vb).unwrap();
    // torchvision.models.resnet50(): sum(p.numel() for p in model.parameters())
    assert_eq!(m.num_parameters(), 25_557_032);
    let x = Tensor::zeros((1, 3, 224, 224), DType::F32, &Device::Cpu).unwrap();
    let mut shape = None;
    let mut hook = |a: &Tensor| -> labelscope_nn::Result<Tensor> {
        shape = Some(a.dims().to_vec());
        Ok(a.clone())
    };
    let (logits, _) = m.forward_hooked(&x, &mut hook).unwrap();
    assert_eq!(logits.dims(), &[1, 1000]);
    assert_eq!(shape.unwrap(), vec![1, 2048, 7, 7]);
    assert_eq!(m.forward(&x).unwrap().features.dims(), &[1, 2048]);
}

/// Full-size check, run by hand: `LABELSCOPE_RESNET50_DIR` holds `resnet50.safetensors` (e.g. from
/// `bench/resnet_compare.py`), `input.npy` `[2, 3, 224, 224]` and torchvision's `logits.npy`, and
/// `cam_raw.npy` / `input_grad.npy` (GradCAM at layer4, d score / d input) for classes [5, 700].
#[test]
fn resnet50_matches_pytorch_when_given() {
    let Ok(dir) = std::env::var("LABELSCOPE_RESNET50_DIR") else {
        eprintln!("skipping: LABELSCOPE_RESNET50_DIR is not set");
        return;
    };
    let dir = PathBuf::from(dir);
    let m = ResNet::load(&dir.join("resnet50.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(m.num_parameters(), 25_557_032);
    let read = |n: &str| {
        let p = dir.join(n);
        let a = labelscope_core::npy::read_npy(&p).unwrap();
        Tensor::from_vec(a.to_f32_vec(&p, "array").unwrap(), a.shape.clone(), &Device::Cpu).unwrap()
    };
    let want = read("logits.npy");
    let got = m.forward(&read("input.npy")).unwrap().logits;
    let d = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let mx = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    eprintln!("ResNet-50: max |diff| logits {d:.2e} (max |logit| {mx:.2})");
    assert!(d <= 1e-3 * mx.max(1.0), "{d}");
    // GradCAM and input gradients for classes [5, 700] (torch autograd, float64).
    let x = read("input.npy");
    let cam = labelscope_nn::gradcam(&m, &x, &[5, 700]).unwrap().cams;
    let g = labelscope_nn::input_gradient(&m, &x, &[5, 700]).unwrap();
    for (name, got) in [("cam_raw.npy", cam), ("input_grad.npy", g)] {
        let want = read(name);
        let d = (got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let mx = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        eprintln!("ResNet-50: max |diff| {name} {d:.2e} (max {mx:.3e})");
        assert!(d <= 1e-4 * mx, "{name}: {d}");
    }
}

/// The inference path (`forward`: plain buffers, groups of 8 images, fused epilogues) computes the
/// same function as the differentiable candle path (`forward_differentiable`, checked against
/// PyTorch above) on batches larger than a group, odd and non-square sizes (padding and stride
/// edges), and an input that gradients track (which must take the differentiable path).
#[test]
fn inference_path_equals_the_differentiable_path() {
    let m = model();
    for (b, h, w) in [(11, 37, 45), (1, 32, 32), (3, 64, 33)] {
        let x = spread_input(b, h, w);
        let fast = m.forward(&x).unwrap();
        let slow = m.forward_differentiable(&x).unwrap();
        assert_eq!(fast.logits.dims(), &[b, 10]);
        assert_eq!(fast.features.dims(), slow.features.dims());
        for (a, s, what) in [(&fast.logits, &slow.logits, "logits"), (&fast.features, &slow.features, "features")] {
            let d = (a - s).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d <= 1e-4, "{b}×{h}×{w} {what}: max |diff| {d}");
        }
        // Image i's outputs do not depend on the other images of its group.
        let one = m.forward(&x.narrow(0, b - 1, 1).unwrap()).unwrap();
        let last = fast.logits.narrow(0, b - 1, 1).unwrap();
        let d = (one.logits - last).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d <= 1e-5, "{b}×{h}×{w}: last image alone differs by {d}");
    }
    // A tracked input (a Var) keeps the differentiable path: gradients flow.
    let x = candle_core::Var::from_tensor(&tensor("input")).unwrap();
    let out = m.forward(x.as_tensor()).unwrap();
    let grads = out.logits.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(x.as_tensor()).is_some(), "no gradient for a tracked input");
}

/// GradCAM's pass (`forward_cam`: the layers up to `layer4` on the inference path, then the hook,
/// pooling and `fc` on candle's ops) sees the same activation and gives the same logits as
/// PyTorch, and the logits follow what the hook returns.
#[test]
fn cam_forward_matches_pytorch() {
    let m = model();
    let x = tensor("input");
    let (logits, da, dl) = hooked_pass(&m, &x, false);
    assert!(da <= 1e-4 && dl <= 1e-4, "layer4 {da}, logits {dl}");
    let mut double = |a: &Tensor| -> labelscope_nn::Result<Tensor> { Ok((a * 2.0)?) };
    let (logits2, _) = m.forward_cam(&x, &mut double).unwrap();
    let fc_b = fc_bias_rows(2);
    // fc is affine: doubling the activation doubles logits − bias.
    let want = ((&logits - &fc_b).unwrap() * 2.0).unwrap();
    let d = ((logits2 - fc_b).unwrap() - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-5, "logits must follow the hook's tensor: {d}");
}

/// The path that non-CPU devices take (`with_candle_ops`: candle's `conv2d`, strided views and
/// `maximum`, `[B, C, H, W]` throughout), run here on the CPU: the same logits, features and layer4
/// activation as PyTorch, and the same function as the CPU paths on odd and non-square sizes (the
/// pooling window's padding at both ends of odd and even sides). 32×32 gives `layer2` an 8×8
/// input with 8 channels, the shape on which candle's CPU `conv2d` misreads its layout (worked
/// around in `conv_nchw`).
#[test]
fn candle_ops_path_matches_pytorch() {
    let m = model().with_candle_ops();
    assert!(m.uses_candle_ops() && !model().uses_candle_ops());
    let x = tensor("input");
    let out = m.forward(&x).unwrap();
    let dl = max_diff(&out.logits, "logits");
    let df = max_diff(&out.features, "features");
    let (_, da, dh) = hooked_pass(&m, &x, false);
    eprintln!("candle ops: max |diff| logits {dl:.2e}, features {df:.2e}, layer4 {da:.2e}, hooked logits {dh:.2e}");
    assert!(dl <= 1e-4 && df <= 1e-4 && da <= 1e-4 && dh <= 1e-4, "{dl} {df} {da} {dh}");

    let cpu = model();
    for (b, h, w) in [(3, 37, 45), (1, 32, 32), (2, 64, 33)] {
        let x = spread_input(b, h, w);
        let a = m.forward(&x).unwrap();
        let c = cpu.forward(&x).unwrap();
        for (g, want, what) in [(&a.logits, &c.logits, "logits"), (&a.features, &c.features, "features")] {
            assert_eq!(g.dims(), want.dims(), "{what}");
            let d = (g - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d <= 1e-4, "{b}×{h}×{w} {what}: max |diff| {d}");
        }
    }
}

/// Half precision runs on the candle-ops path (the GPU path): f16 outputs against PyTorch's f32
/// ones within half-precision rounding (relative to the largest |value|), not identical to f32
/// (so the half path really ran), outputs back as f32, gradients refused. The CPU kernels refuse
/// half precision, and bf16 is refused on the CPU.
#[test]
fn half_precision_on_the_candle_ops_path() {
    let e = model().to_dtype(DType::F16).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("f32 only"), "{e}");
    let e = model().with_candle_ops().to_dtype(DType::BF16).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("bf16 needs a CUDA device"), "{e}");
    assert!(model().to_dtype(DType::U8).is_err());
    let m = model().with_candle_ops().to_dtype(DType::F16).unwrap();
    assert_eq!(m.dtype(), DType::F16);
    let x = tensor("input");
    let out = m.forward(&x).unwrap();
    assert_eq!(out.logits.dtype(), DType::F32, "outputs come back as f32");
    for (got, name) in [(&out.logits, "logits"), (&out.features, "features")] {
        let (_, want) = npy(name);
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let d = max_diff(got, name);
        eprintln!("f16 {name}: max |diff| vs torch f32 = {d:e} (largest |value| {scale})");
        assert!(d <= 5e-3 * scale, "f16 {name}: max |diff| {d}");
        assert!(d > 1e-6, "f16 {name}: identical to f32, the half path did not run");
    }
    let e = labelscope_nn::gradcam(&m, &x, &[1, 9]).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("need the model in f32"), "{e}");
    // Back to f32 from f16 weights: the f32 path again, within f16 rounding of the weights.
    let back = m.to_dtype(DType::F32).unwrap();
    assert_eq!(back.dtype(), DType::F32);
    let d = max_diff(&back.forward(&x).unwrap().logits, "logits");
    assert!(d <= 1e-2, "f32 from f16 weights: max |diff| {d}");
}
