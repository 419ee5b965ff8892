//! `labelscope features` end to end on a tiny random-weight DINO-layout ViT
//! (weights from tests/reference/vit_ref.py; the forward pass itself is
//! checked against numpy in crates/nn): one `.npy` per image with the right
//! shape and dtype, f16 equal to f32 rounded, resume, bad input, and the
//! output feeding `labelscope proposals --features-dir`.

mod common;
use common::*;

use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn features_then_proposals() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let script = repo_root().join("tests/reference/vit_ref.py");
    let python = std::env::var("LABELSCOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .arg(&script)
        .arg(&model)
        .args(["32", "2", "4", "4", "4", "16", "16", "3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "vit_ref.py failed in CI");
        eprintln!("skipping: {python} with numpy and scipy is not available");
        return;
    }
    let weights = model.join("model.safetensors");
    let imgs = dir.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for k in 0..3u32 {
        let img = image::RgbImage::from_fn(50 + k, 40, |x, y| {
            let inside = x > 12 && x < 30 && y > 10 && y < 28;
            image::Rgb(if inside { [220, 40, 40] } else { [30, 90 + (y as u8), 160] })
        });
        img.save(imgs.join(format!("im{k}.png"))).unwrap();
    }
    std::fs::write(imgs.join("notes.txt"), "not an image").unwrap();
    let (f16, f32d) = (dir.path().join("f16"), dir.path().join("f32"));
    let base = ["features", "--arch", "32:2:4:4", "--weights", s(&weights), "--images", s(&imgs), "--size", "32", "-q"];
    let mut a = base.to_vec();
    a.extend(["--out", s(&f16)]);
    labelscope_ok(&a);
    let mut b = base.to_vec();
    b.extend(["--out", s(&f32d), "--dtype", "f32"]);
    labelscope_ok(&b);
    for k in 0..3 {
        let h = labelscope_core::npy::read_npy(&f16.join(format!("im{k}.npy"))).unwrap();
        let f = labelscope_core::npy::read_npy(&f32d.join(format!("im{k}.npy"))).unwrap();
        assert_eq!(h.shape, vec![8, 8, 32]);
        assert_eq!(h.dtype.descr(false), "<f2");
        assert_eq!(f.dtype.descr(false), "<f4");
        let hv = h.to_f32_vec(Path::new("h"), "a").unwrap();
        let fv = f.to_f32_vec(Path::new("f"), "a").unwrap();
        for (x, y) in hv.iter().zip(&fv) {
            assert!((x - y).abs() <= y.abs() * 2f32.powi(-11) + 1e-7, "{x} vs {y}");
        }
    }
    // Resume: nothing recomputed.
    let o = labelscope(&a);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("3 already done"));
    // The features feed proposals.
    let run = dir.path().join("run");
    labelscope_ok(&["proposals", "--features-dir", s(&f16), "--no-crf", "--tau", "0.2", "--out", s(&run), "-q"]);
    assert!(run.join("shard-00000-of-00001.done.json").exists());
    // Bad input: a corrupt image names the file; --skip-bad goes on and exits 1 at the end.
    std::fs::write(imgs.join("zz.png"), b"\x89PNG broken").unwrap();
    let mut c = base.to_vec();
    let out3 = dir.path().join("f3");
    c.extend(["--out", s(&out3)]);
    let err = labelscope_err(&c);
    assert!(err.contains("zz.png"), "{err}");
    c.push("--skip-bad");
    let err = labelscope_err(&c);
    assert!(err.contains("zz.png") && err.contains("1 images could not be read"), "{err}");
    assert!(out3.join("im2.npy").exists());
    // Weights of another architecture: a clear error naming the file.
    let mut d = vec!["features", "--arch", "64:2:4:4", "--weights", s(&weights), "--images", s(&imgs), "--size", "32"];
    d.extend(["--out", s(&out3)]);
    let err = labelscope_err(&d);
    assert!(err.contains("model.safetensors"), "{err}");
}
