//! `crf::brute_force` against the independent numpy implementation of the
//! same model in `tests/reference/crf_ref.py` (repository root).
//!
//! The Python interpreter is `$LABELSCOPE_PYTHON` (default `python3`). When it
//! or numpy is missing the test is skipped, unless `CI` is set, where it fails.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use labelscope_vision::crf::{brute_force, dense_crf, CrfParams};
use labelscope_vision::RgbImage;

fn python() -> String {
    std::env::var("LABELSCOPE_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn python_ready() -> bool {
    let ok = Command::new(python()).args(["-c", "import numpy"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("CI is set but {} with numpy is not available", python());
        }
        eprintln!("skipping: {} with numpy is not available", python());
    }
    ok
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Case {
    img: RgbImage,
    grid: Vec<bool>,
    gh: usize,
    gw: usize,
}

fn cases() -> Vec<Case> {
    let mut r = Lcg(42);
    let mut out = Vec::new();
    // Blob with noise, grid dividing the image.
    let img = RgbImage::from_fn(20, 16, |x, y| {
        let inside = (x as i32 - 8).pow(2) + (y as i32 - 8).pow(2) < 30;
        let v = if inside { [200u8, 50, 40] } else { [60, 100, 180] };
        image::Rgb(v.map(|c| c.saturating_add((x * 7 + y * 13) as u8 % 17)))
    });
    let grid: Vec<bool> = (0..20).map(|i| (1..3).contains(&(i / 5)) && (1..3).contains(&(i % 5))).collect();
    out.push(Case { img, grid, gh: 4, gw: 5 });
    // Random image, random mask, sizes not multiples of the grid.
    let img = RgbImage::from_fn(17, 13, |_, _| {
        image::Rgb([(r.next() * 255.0) as u8, (r.next() * 255.0) as u8, (r.next() * 255.0) as u8])
    });
    let grid: Vec<bool> = (0..12).map(|_| r.next() < 0.5).collect();
    out.push(Case { img, grid, gh: 3, gw: 4 });
    // Gradient, half mask.
    let img = RgbImage::from_fn(24, 18, |x, y| image::Rgb([(x * 10) as u8, (y * 14) as u8, 90]));
    let grid: Vec<bool> = (0..24).map(|i| i % 6 < 3).collect();
    out.push(Case { img, grid, gh: 4, gw: 6 });
    out
}

fn case_json(c: &Case, p: &CrfParams) -> serde_json::Value {
    serde_json::json!({
        "h": c.img.height(), "w": c.img.width(), "gh": c.gh, "gw": c.gw,
        "rgb": c.img.as_raw(),
        "grid": c.grid.iter().map(|&b| b as u8).collect::<Vec<_>>(),
        "sxy_g": p.gaussian_sxy, "w_g": p.gaussian_weight, "sxy_b": p.bilateral_sxy,
        "srgb": p.bilateral_srgb, "w_b": p.bilateral_weight, "iters": p.iterations,
    })
}

#[test]
fn brute_force_matches_numpy_reference() {
    if !python_ready() {
        return;
    }
    let p = CrfParams::default();
    let cases = cases();
    let input = serde_json::Value::Array(cases.iter().map(|c| case_json(c, &p)).collect()).to_string();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/crf_ref.py");
    let mut child =
        Command::new(python()).arg(&script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start python");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write cases");
    let out = child.wait_with_output().expect("run crf_ref.py");
    assert!(out.status.success(), "crf_ref.py failed");
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON answer");
    for (k, (c, a)) in cases.iter().zip(&answers).enumerate() {
        let want_q: Vec<f64> = a["q"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let bf = brute_force(&c.grid, c.gh, c.gw, &c.img, &p).unwrap();
        let max_dq = bf.foreground.iter().zip(&want_q).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        let mut label_diff = 0;
        for (i, (&l, q)) in bf.labels.iter().zip(&want_q).enumerate() {
            if l != (*q > 0.5) && (q - 0.5).abs() > 1e-4 {
                label_diff += 1;
                eprintln!("case {k} pixel {i}: rust {l}, numpy Q1 {q}");
            }
        }
        let fast = dense_crf(&c.grid, c.gh, c.gw, &c.img, &p).unwrap();
        let agree =
            fast.labels.iter().zip(&want_q).filter(|(l, q)| **l == (**q > 0.5)).count() as f64 / want_q.len() as f64;
        println!("case {k}: brute force max |dQ| vs numpy {max_dq:.2e}; fast labels agree {:.2}%", 100.0 * agree);
        assert!(max_dq < 1e-5, "case {k}: brute force differs from numpy by {max_dq}");
        assert_eq!(label_diff, 0, "case {k}");
    }
}
