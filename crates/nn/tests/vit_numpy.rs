//! The DINO ViT forward pass (`labelscope_nn::vit`) against an independent
//! numpy implementation (`tests/reference/vit_ref.py`) on random weights:
//! CLS and patch tokens after the final norm and the last block's
//! queries/keys/values, on the training grid and on a non-square grid that
//! needs the bicubic position-embedding interpolation. Max abs difference
//! ≤ 1e-4 (f32). Skips without Python/numpy/scipy unless `CI=true`.

mod common;

use common::{max_diff, npy};
use std::path::PathBuf;
use std::process::Command;

use candle_core::{Device, Tensor};
use labelscope_nn::{Vit, VitConfig};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn python() -> String {
    std::env::var("LABELSCOPE_PYTHON").unwrap_or_else(|_| "python3".into())
}


#[test]
fn forward_matches_numpy() {
    let ok = Command::new(python()).args(["-c", "import numpy, scipy"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!in_ci(), "CI=true but {} with numpy and scipy is not available", python());
        eprintln!("skipping: {} with numpy and scipy is not available", python());
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/vit_ref.py");
    // (dim, depth, heads, patch, side, height, width): the training grid, then a 6x5 grid from a 4x4 embedding.
    for (case, &(dim, depth, heads, patch, side, height, width)) in
        [(32usize, 2usize, 4usize, 4usize, 4usize, 16usize, 16usize), (48, 3, 6, 4, 4, 24, 20)].iter().enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<String> =
            [dim, depth, heads, patch, side, height, width, 7 + case].iter().map(|v| v.to_string()).collect();
        let out = Command::new(python()).arg(&script).arg(dir.path()).args(&args).output().unwrap();
        assert!(out.status.success(), "vit_ref.py failed: {}", String::from_utf8_lossy(&out.stderr));
        let cfg = VitConfig { patch, dim, depth, heads, mlp_ratio: 4 };
        let dev = Device::Cpu;
        let vit = Vit::from_safetensors(cfg, &dir.path().join("model.safetensors"), &dev).unwrap();
        let (shape, x) = npy(&dir.path().join("input.npy"));
        let x = Tensor::from_vec(x, (shape[0], shape[1], shape[2], shape[3]), &dev).unwrap();
        let o = vit.forward(&x).unwrap();
        assert_eq!(o.grid, (height / patch, width / patch));
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (name, got) in [
            ("cls", flat(&o.cls)),
            ("patches", flat(&o.patches)),
            ("keys", flat(&o.keys)),
            ("queries", flat(&o.queries)),
            ("values", flat(&o.values)),
        ] {
            let (_, want) = npy(&dir.path().join(format!("{name}.npy")));
            let d = max_diff(&got, &want);
            eprintln!("case {case} {name}: max |diff| = {d:e}");
            assert!(d <= 1e-4, "case {case} {name}: max |diff| = {d}");
        }
    }
}

#[test]
fn wrong_input_and_weights_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    // A file with only a cls_token: the first missing tensor is named.
    let header = br#"{"cls_token":{"dtype":"F32","shape":[1,1,8],"data_offsets":[0,32]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend_from_slice(&[0u8; 32]);
    std::fs::write(&p, b).unwrap();
    let cfg = VitConfig { patch: 4, dim: 8, depth: 1, heads: 2, mlp_ratio: 4 };
    let err = Vit::from_safetensors(cfg, &p, &Device::Cpu).err().expect("must fail").to_string();
    assert!(err.contains("w.safetensors"), "{err}");
    let err =
        Vit::from_safetensors(cfg, &dir.path().join("missing.safetensors"), &Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("missing.safetensors"), "{err}");
    let bad = VitConfig { heads: 3, ..cfg };
    assert!(Vit::from_safetensors(bad, &p, &Device::Cpu).is_err());
}

/// Parity with PyTorch on the committed fixture made by
/// `tests/reference/make_vit_torch_fixture.py` (torch 2.15 CPU): the trained
/// grid and a 6x5 grid through `F.interpolate(mode="bicubic")`.
#[test]
fn forward_matches_pytorch_fixture() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit_torch");
    let cfg = VitConfig { patch: 4, dim: 32, depth: 2, heads: 4, mlp_ratio: 4 };
    let dev = Device::Cpu;
    let vit = Vit::from_safetensors(cfg, &dir.join("model.safetensors"), &dev).unwrap();
    for case in ["square", "interp"] {
        let (shape, x) = npy(&dir.join(format!("{case}_input.npy")));
        let x = Tensor::from_vec(x, (shape[0], shape[1], shape[2], shape[3]), &dev).unwrap();
        let o = vit.forward(&x).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (name, got) in [
            ("cls", flat(&o.cls)),
            ("patches", flat(&o.patches)),
            ("keys", flat(&o.keys)),
            ("queries", flat(&o.queries)),
            ("values", flat(&o.values)),
        ] {
            let (_, want) = npy(&dir.join(format!("{case}_{name}.npy")));
            let d = max_diff(&got, &want);
            eprintln!("torch {case} {name}: max |diff| = {d:e}");
            assert!(d <= 1e-4, "{case} {name}: max |diff| = {d}");
        }
    }
}
