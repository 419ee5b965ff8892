//! The timm-layout ViT/DeiT classifier (`labelscope_nn::VitClassifier`) and
//! its GradCAM against PyTorch on the committed fixture `vit_timm_cls` made by
//! `tests/reference/make_vit_family_torch_fixture.py` (torch 2.15 CPU): a tiny
//! classifier (D 24, 2 blocks, 4 heads, patch 4, 10 classes), a batch of two
//! on the trained grid and one image on a 5×6 grid (timm's antialiased
//! position-embedding resampling).
//!
//! Checked: logits and pre-logits features (fast and differentiable paths),
//! GradCAM on `blocks[-1].norm1` with the ViT reshape transform (channel
//! weights, raw maps, maps upsampled to the input and min-max scaled) from a
//! PyTorch forward hook + autograd, and the input gradient. Max |diff| ≤ 1e-4
//! (for the gradients, channel weights and raw maps: ≤ 1e-4 × their largest |value|).

mod common;

use common::{max_diff, npy};
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use labelscope_nn::{
    gradcam, input_gradient, upsample_normalize, CamLayout, ClassifierArch, VitClassifier, VitConfig, VitVariant,
};

fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|x| x.abs()).fold(0.0, f32::max)
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit_timm_cls")
}

fn model() -> VitClassifier {
    let cfg = VitConfig { patch: 4, dim: 24, depth: 2, heads: 4, mlp_ratio: 4 };
    VitClassifier::from_safetensors(cfg, VitVariant::timm(4), &dir().join("model.safetensors"), &Device::Cpu).unwrap()
}

fn case_input(case: &str) -> (Tensor, Vec<usize>) {
    let (s, x) = npy(&dir().join(format!("{case}_input.npy")));
    let (_, c) = npy(&dir().join(format!("{case}_classes.npy")));
    (Tensor::from_vec(x, (s[0], s[1], s[2], s[3]), &Device::Cpu).unwrap(), c.iter().map(|&v| v as usize).collect())
}

fn compare(case: &str, name: &str, got: &[f32]) {
    let (_, want) = npy(&dir().join(format!("{case}_{name}.npy")));
    let d = max_diff(got, &want);
    // Gradients and maps are small: their tolerance is relative to their largest value.
    let tol = if matches!(name, "cam_weights" | "cam" | "input_grad") { 1e-4 * max_abs(&want) } else { 1e-4 };
    eprintln!("{case} {name}: max |diff| = {d:e} (max |value| {:e}, tolerance {tol:e})", max_abs(&want));
    assert!(d <= tol, "{case} {name}: max |diff| = {d} > {tol}");
}

#[test]
fn logits_and_features_match_pytorch() {
    let m = model();
    assert_eq!(m.classes(), 10);
    for case in ["square", "interp"] {
        let (x, _) = case_input(case);
        let fast = m.forward(&x).unwrap();
        let diff = m.forward_diff(&x).unwrap();
        compare(case, "logits", &flat(&fast.logits));
        compare(case, "features", &flat(&fast.features));
        compare(case, "logits", &flat(&diff.logits));
        compare(case, "features", &flat(&diff.features));
        let fd = max_diff(&flat(&fast.logits), &flat(&diff.logits));
        assert!(fd <= 1e-5, "{case}: fast vs differentiable logits {fd}");
    }
}

/// f16 weights and compute against PyTorch's f32 outputs: close within the
/// half-precision rounding (relative to the largest |value|), not identical
/// to f32 (so the half-precision path really ran), and gradients refused.
/// bf16 is refused on the CPU (no bf16 matrix product in candle's CPU backend).
#[test]
fn half_precision_is_close_to_pytorch_f32() {
    let m32 = model();
    let e = m32.to_dtype(DType::BF16).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("bf16 needs a CUDA device"), "{e}");
    for (dtype, rel) in [(DType::F16, 5e-3f32)] {
        let m = m32.to_dtype(dtype).unwrap();
        assert_eq!(m.vit().dtype(), dtype);
        for case in ["square", "interp"] {
            let (x, classes) = case_input(case);
            let o = m.forward(&x).unwrap();
            assert_eq!(o.logits.dtype(), DType::F32, "outputs come back as f32");
            for (name, got) in [("logits", flat(&o.logits)), ("features", flat(&o.features))] {
                let (_, want) = npy(&dir().join(format!("{case}_{name}.npy")));
                let d = max_diff(&got, &want);
                let tol = rel * max_abs(&want).max(1.0);
                eprintln!("{dtype:?} {case} {name}: max |diff| vs torch f32 = {d:e} (tolerance {tol:e})");
                assert!(d <= tol, "{dtype:?} {case} {name}: max |diff| {d} > {tol}");
                assert!(d > 1e-6, "{dtype:?} {case} {name}: identical to f32, the half path did not run");
            }
            let e = gradcam(&m, &x, &classes).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("f32"), "{e}");
        }
    }
}

/// GradCAM for the predicted classes (one pass) equals GradCAM for the
/// classes taken from a separate forward pass.
#[test]
fn gradcam_predicted_is_gradcam_of_the_argmax() {
    let m = model();
    for case in ["square", "interp"] {
        let (x, _) = case_input(case);
        let logits = m.forward(&x).unwrap().logits.to_vec2::<f32>().unwrap();
        let want: Vec<usize> =
            logits.iter().map(|r| (0..r.len()).fold(0, |b, i| if r[i] > r[b] { i } else { b })).collect();
        let p = labelscope_nn::gradcam_predicted(&m, &x).unwrap();
        assert_eq!(p.classes, want, "{case}");
        let g = gradcam(&m, &x, &want).unwrap();
        assert_eq!(flat(&p.cams), flat(&g.cams), "{case}");
    }
}

#[test]
fn gradcam_and_input_gradient_match_pytorch() {
    let m = model();
    for case in ["square", "interp"] {
        let (x, classes) = case_input(case);
        let (_, _, hh, ww) = x.dims4().unwrap();
        let g = gradcam(&m, &x, &classes).unwrap();
        assert_eq!(g.layout, CamLayout::Tokens { prefix: 1, grid: (hh / 4, ww / 4) });
        compare(case, "logits", &flat(&g.logits));
        compare(case, "cam_weights", &flat(&g.weights));
        compare(case, "cam", &flat(&g.cams));
        // Non-trivial maps: some positive and some zeroed values.
        let cams = flat(&g.cams);
        assert!(cams.iter().any(|&v| v > 1e-3), "{case}: all-zero CAM");
        let up = upsample_normalize(&g.cams, (hh, ww)).unwrap();
        compare(case, "cam_upsampled", &flat(&up));
        let ig = input_gradient(&m, &x, &classes).unwrap();
        assert_eq!(ig.dims(), x.dims());
        compare(case, "input_grad", &flat(&ig));
    }
}

#[test]
fn full_size_classifiers_have_the_real_parameter_counts() {
    let dev = Device::Cpu;
    for (name, want) in [
        ("deit_small_patch16_224", 22_050_664usize),
        ("vit_small_patch16_224", 22_050_664),
        ("deit_base_patch16_224", 86_567_656),
        ("vit-base-patch16-224", 86_567_656),
    ] {
        let arch = ClassifierArch::from_name(name).unwrap();
        let cfg = arch.config();
        let vb = candle_nn::VarBuilder::zeros(candle_core::DType::F32, &dev);
        let m = VitClassifier::new(cfg, VitVariant::timm(cfg.patch), 1000, vb).unwrap();
        assert_eq!(m.num_parameters(), want, "{name}");
        assert_eq!(m.vit().pos_grid(), 14, "{name}");
    }
    assert!(ClassifierArch::from_name("deit_tiny_patch16_224").is_none());
}

#[test]
fn bad_target_classes_are_errors() {
    let m = model();
    let (x, _) = case_input("square");
    assert!(gradcam(&m, &x, &[3]).is_err(), "one class for two images");
    let err = gradcam(&m, &x, &[3, 10]).unwrap_err().to_string();
    assert!(err.contains("10"), "{err}");
}
