//! DINOv2-layout ViTs (`labelscope_nn::vit` with [`VitVariant::dinov2`]-style
//! variants) against PyTorch on the committed fixtures made by
//! `tests/reference/make_vit_family_torch_fixture.py` (torch 2.15 CPU):
//!
//! * `vit_dinov2_reg`: 4 register tokens, LayerScale, MLP FFN, the `*_reg`
//!   hub models' antialiased size-based position-embedding resampling;
//! * `vit_dinov2_swiglu`: no registers, LayerScale, ViT-g's fused SwiGLU FFN,
//!   the plain hub models' `scale_factor = (g + 0.1)/s` resampling.
//!
//! Each on the trained 4×4 grid, an upsampled (6×5) and a downsampled grid;
//! CLS, register and patch tokens after the final norm and the last block's
//! q/k/v without prefix tokens, on the fast and on the differentiable path.
//! Max |diff| ≤ 1e-4 (f32).

mod common;

use common::{max_diff, npy};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use labelscope_nn::{Ffn, PosInterp, Vit, VitConfig, VitOutput, VitVariant};


fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

const CFG: VitConfig = VitConfig { patch: 4, dim: 24, depth: 2, heads: 4, mlp_ratio: 4 };

fn input(dir: &Path, case: &str) -> Tensor {
    let (s, x) = npy(&dir.join(format!("{case}_input.npy")));
    Tensor::from_vec(x, (s[0], s[1], s[2], s[3]), &Device::Cpu).unwrap()
}

fn outputs(o: &VitOutput) -> Vec<(&'static str, Vec<f32>)> {
    vec![
        ("cls", flat(&o.cls)),
        ("registers", flat(&o.registers)),
        ("patches", flat(&o.patches)),
        ("keys", flat(&o.keys)),
        ("queries", flat(&o.queries)),
        ("values", flat(&o.values)),
    ]
}

fn check(fixture_name: &str, variant: VitVariant) {
    let dir = fixture(fixture_name);
    let vit = Vit::from_safetensors_with(CFG, variant, &dir.join("model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(vit.pos_grid(), 4);
    for case in ["square", "interp", "down"] {
        let x = input(&dir, case);
        let (_, _, hh, ww) = x.dims4().unwrap();
        let fast = vit.forward(&x).unwrap();
        let diff = vit.forward_diff(&x).unwrap();
        assert_eq!(fast.grid, (hh / 4, ww / 4));
        assert_eq!(fast.registers.dims()[1], variant.registers);
        for ((name, got), (_, got_diff)) in outputs(&fast).into_iter().zip(outputs(&diff)) {
            let (_, want) = npy(&dir.join(format!("{case}_{name}.npy")));
            let d = max_diff(&got, &want);
            let dd = max_diff(&got_diff, &want);
            let fd = max_diff(&got, &got_diff);
            eprintln!("{fixture_name} {case} {name}: fast {d:e}, differentiable {dd:e}, fast vs differentiable {fd:e}");
            assert!(d <= 1e-4 && dd <= 1e-4, "{fixture_name} {case} {name}: max |diff| fast {d}, differentiable {dd}");
            assert!(fd <= 1e-5, "{fixture_name} {case} {name}: fast vs differentiable {fd}");
        }
    }
}

fn reg_variant() -> VitVariant {
    VitVariant { pos_grid: 4, ..VitVariant::dinov2(true, false) }
}

#[test]
fn dinov2_registers_layerscale_match_pytorch() {
    let v = reg_variant();
    assert_eq!((v.registers, v.layer_scale, v.ffn, v.pos_interp), (4, true, Ffn::Mlp, PosInterp::SIZE_ANTIALIAS));
    check("vit_dinov2_reg", v);
}

#[test]
fn dinov2_swiglu_matches_pytorch() {
    let v = VitVariant { pos_grid: 4, ..VitVariant::dinov2(false, true) };
    assert_eq!((v.registers, v.ffn, v.pos_interp), (0, Ffn::SwiGlu, PosInterp::DINO));
    check("vit_dinov2_swiglu", v);
    let dir = fixture("vit_dinov2_swiglu");
    let vit = Vit::from_safetensors_with(CFG, v, &dir.join("model.safetensors"), &Device::Cpu).unwrap();
    // (int(2*96/3)+7)//8*8, read from mlp.w12's shape.
    assert_eq!(vit.ffn_hidden(), 64);
}

/// The fixture tells the resampling modes apart: the `*_reg` model with the
/// non-antialiased DINO resampling is off on the interpolated grids (and
/// identical on the trained one).
#[test]
fn resampling_mode_matters() {
    let dir = fixture("vit_dinov2_reg");
    let v = VitVariant { pos_interp: PosInterp::DINO, ..reg_variant() };
    let vit = Vit::from_safetensors_with(CFG, v, &dir.join("model.safetensors"), &Device::Cpu).unwrap();
    for (case, differs) in [("square", false), ("interp", true), ("down", true)] {
        let o = vit.forward(&input(&dir, case)).unwrap();
        let (_, want) = npy(&dir.join(format!("{case}_patches.npy")));
        let d = max_diff(&flat(&o.patches), &want);
        assert_eq!(d > 1e-3, differs, "{case}: max |diff| {d}");
    }
}

#[test]
fn missing_dinov2_tensors_are_named() {
    let dir = fixture("vit_dinov2_swiglu");
    // The SwiGLU weights read as registers + MLP: the first missing tensor is named.
    let err = Vit::from_safetensors_with(CFG, reg_variant(), &dir.join("model.safetensors"), &Device::Cpu)
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("model.safetensors") && err.contains("register_tokens"), "{err}");
    let v = VitVariant { registers: 0, ..reg_variant() };
    let err = Vit::from_safetensors_with(CFG, v, &dir.join("model.safetensors"), &Device::Cpu)
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("mlp.fc1"), "{err}");
    // Input not a multiple of the patch size.
    let vit = Vit::from_safetensors_with(
        CFG,
        VitVariant { pos_grid: 4, ..VitVariant::dinov2(false, true) },
        &dir.join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let x = Tensor::zeros((1, 3, 15, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = vit.forward(&x).unwrap_err().to_string();
    assert!(err.contains("multiples of the patch size 4"), "{err}");
}
