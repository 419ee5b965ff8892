//! Checks the ranking, set and interval metrics against an independent Python
//! reference (`tests/reference/metrics_ref.py`: scikit-learn, scipy, numpy) on
//! random data full of ties, empty ground-truth rows and classes without
//! positives.
//!
//! The Python interpreter is `$LABELSCOPE_PYTHON` (default `python3`). When it
//! or its packages are missing the tests print a message and pass, unless
//! `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use labelscope_core::metrics::intervals::clopper_pearson;
use labelscope_core::metrics::ranking::{per_class_ap, per_sample_ap};
use labelscope_core::metrics::sets::{predict_sets, summarize, Activation, SetSummary, Thresholds};
use serde_json::{json, Value};

/// Tolerance for AP and set metrics.
const TOL: f64 = 1e-10;
/// Tolerance for Clopper–Pearson bounds.
const TOL_CP: f64 = 1e-9;

/// SplitMix64, for reproducible test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unif(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Case {
    n: usize,
    c: usize,
    scores: Vec<f32>,
    gt: Vec<Vec<u32>>,
    weights: Vec<u32>,
    subset: Vec<usize>,
    configs: Vec<(Activation, Thresholds)>,
}

/// Random case: 10 % of rows without labels, the last 5 classes never
/// labelled, 8 % of rows with all scores equal, every fifth column continuous
/// and the others quantised to steps of 1/8 (many ties), positives shifted up.
fn make_case(seed: u64, n: usize, c: usize) -> Case {
    let mut rng = Rng(seed);
    let labelled = c - 5;
    let mut gt = Vec::with_capacity(n);
    for i in 0..n {
        let mut g: Vec<u32> = Vec::new();
        if rng.unif() >= 0.1 {
            let k = if i % 97 == 5 { labelled / 2 } else { 1 + rng.below(4) };
            for _ in 0..k {
                g.push(rng.below(labelled) as u32);
            }
            g.sort_unstable();
            g.dedup();
        }
        gt.push(g);
    }
    let mut scores = Vec::with_capacity(n * c);
    for g in &gt {
        if rng.unif() < 0.08 {
            let v = (rng.below(9) as f32 - 4.0) / 8.0;
            scores.resize(scores.len() + c, v);
            continue;
        }
        for j in 0..c {
            let shift = if g.binary_search(&(j as u32)).is_ok() { 1.5 } else { 0.0 };
            let x = rng.unif() * 6.0 - 3.0 + shift;
            let v = if j % 5 == 0 { x as f32 } else { ((x * 8.0).round() / 8.0) as f32 };
            scores.push(v);
        }
    }
    let weights = (0..n).map(|_| rng.below(4) as u32).collect();
    let subset = (0..n).filter(|_| rng.unif() < 0.5).collect();
    let configs = vec![
        (Activation::None, Thresholds::Fixed(0.5)),
        (Activation::Sigmoid, Thresholds::Fixed(0.5)),
        (Activation::Sigmoid, Thresholds::Fixed(0.8)),
        (Activation::Softmax, Thresholds::Fixed(4.0 / c as f64 + 0.013)),
        (Activation::None, Thresholds::Calibrated),
        (Activation::Sigmoid, Thresholds::Calibrated),
        (Activation::Softmax, Thresholds::Calibrated),
    ];
    Case { n, c, scores, gt, weights, subset, configs }
}

fn cp_cases() -> Vec<(u64, u64, f64)> {
    let mut v = Vec::new();
    for &n in &[1u64, 2, 3, 10, 57, 100, 1000, 12_345, 50_000, 100_000] {
        let mut ks = vec![0, 1, n.saturating_sub(1), n, n / 2, n / 10, n / 3, (n * 97) / 100];
        ks.sort_unstable();
        ks.dedup();
        for &k in &ks {
            for &alpha in &[0.05, 0.005, 0.32] {
                v.push((k, n, alpha));
            }
        }
    }
    v
}

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::None => "none",
        Activation::Sigmoid => "sigmoid",
        Activation::Softmax => "softmax",
    }
}

/// Runs the reference script on `case`; `None` when Python is unavailable
/// (and `CI` is not `true`).
fn run_reference(case: &Case, dir: &Path) -> Option<Value> {
    let bytes: Vec<u8> = case.scores.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(dir.join("scores.f32"), bytes).expect("write scores");
    std::fs::write(dir.join("gt.json"), serde_json::to_vec(&case.gt).expect("json")).expect("write gt");
    let configs: Vec<Value> = case
        .configs
        .iter()
        .map(|(a, t)| {
            let threshold = match t {
                Thresholds::Fixed(x) => json!(x),
                Thresholds::Calibrated => json!("calibrated"),
            };
            json!({"activation": activation_name(*a), "threshold": threshold})
        })
        .collect();
    let params = json!({
        "n": case.n,
        "c": case.c,
        "weights": case.weights,
        "subset": case.subset,
        "set_configs": configs,
        "cp": cp_cases().iter().map(|&(k, n, a)| json!([k, n, a])).collect::<Vec<_>>(),
    });
    std::fs::write(dir.join("params.json"), serde_json::to_vec(&params).expect("json")).expect("write params");

    let python = std::env::var("LABELSCOPE_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/metrics_ref.py");
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    let skip = |why: String| -> Option<Value> {
        if ci {
            panic!("{why} (CI=true, so this is an error)");
        }
        eprintln!("SKIPPED metrics reference comparison: {why}");
        None
    };
    let output = match Command::new(&python).arg(&script).arg(dir).output() {
        Ok(o) => o,
        Err(e) => return skip(format!("cannot run {python}: {e}")),
    };
    if output.status.code() == Some(3) {
        return skip(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    assert!(
        output.status.success(),
        "reference script failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("read expected.json");
    Some(serde_json::from_str(&text).expect("parse expected.json"))
}

/// Counts compared values and collects mismatches.
#[derive(Default)]
struct Checker {
    compared: usize,
    failures: Vec<String>,
    max_dev: f64,
}

impl Checker {
    fn num(&mut self, what: &str, got: f64, want: &Value, tol: f64) {
        self.compared += 1;
        match want.as_f64() {
            Some(w) => {
                let dev = (got - w).abs();
                self.max_dev = self.max_dev.max(dev);
                if dev.is_nan() || dev > tol {
                    self.failures.push(format!("{what}: got {got:.17}, want {w:.17} (|Δ| = {dev:e})"));
                }
            }
            None => self.failures.push(format!("{what}: got {got}, want {want}")),
        }
    }

    fn opt(&mut self, what: &str, got: Option<f64>, want: &Value, tol: f64) {
        match (got, want.is_null()) {
            (None, true) => self.compared += 1,
            (Some(g), false) => self.num(what, g, want, tol),
            _ => {
                self.compared += 1;
                self.failures.push(format!("{what}: got {got:?}, want {want}"));
            }
        }
    }

    fn int(&mut self, what: &str, got: u64, want: &Value) {
        self.compared += 1;
        if want.as_u64() != Some(got) {
            self.failures.push(format!("{what}: got {got}, want {want}"));
        }
    }

    fn opt_list(&mut self, what: &str, got: &[Option<f64>], want: &Value, tol: f64) {
        let want = want.as_array().unwrap_or_else(|| panic!("{what}: not a list"));
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            self.opt(&format!("{what}[{i}]"), *g, w, tol);
        }
    }

    fn summary(&mut self, what: &str, s: &SetSummary, want: &Value) {
        self.int(&format!("{what}.images"), s.images, &want["images"]);
        self.int(&format!("{what}.exact"), s.exact, &want["exact"]);
        self.int(&format!("{what}.macro_classes"), s.macro_classes, &want["macro_classes"]);
        let fields = [
            ("subset_accuracy", s.subset_accuracy()),
            ("mean_iou", s.mean_iou),
            ("micro_precision", s.micro_precision),
            ("micro_recall", s.micro_recall),
            ("micro_f1", s.micro_f1),
            ("macro_precision", s.macro_precision),
            ("macro_recall", s.macro_recall),
            ("macro_f1", s.macro_f1),
        ];
        for (name, got) in fields {
            self.num(&format!("{what}.{name}"), got, &want[name], TOL);
        }
    }

    fn finish(self, label: &str, min_compared: usize) {
        eprintln!("{label}: {} values compared, max |Δ| = {:e}", self.compared, self.max_dev);
        assert!(
            self.failures.is_empty(),
            "{label}: {} of {} values differ:\n{}",
            self.failures.len(),
            self.compared,
            self.failures.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
        );
        assert!(self.compared >= min_compared, "{label}: only {} values compared", self.compared);
    }
}

fn check_case(label: &str, seed: u64, n: usize, c: usize) {
    let case = make_case(seed, n, c);
    // The generator must produce what the comparison is meant to cover.
    assert!(case.gt.iter().any(|g| g.is_empty()));
    assert!(case.scores.chunks(c).any(|r| r.iter().all(|&v| v == r[0])));
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(want) = run_reference(&case, dir.path()) else {
        return;
    };
    let mut ck = Checker::default();

    // Ranking.
    let ap = per_sample_ap(&case.scores, n, c, &case.gt);
    ck.opt_list("per_sample_ap", &ap, &want["per_sample_ap"], TOL);
    let pc = per_class_ap(&case.scores, n, c, &case.gt, None);
    assert!(pc.ap.iter().any(|a| a.is_none()), "some classes must have no positives");
    ck.opt_list("class_ap", &pc.ap, &want["class_ap"], TOL);
    ck.opt_list("class_ap_voc", &pc.ap_voc, &want["class_ap_voc"], TOL);
    for (j, &p) in pc.positives.iter().enumerate() {
        ck.int(&format!("class_positives[{j}]"), p, &want["class_positives"][j]);
    }
    let pw = per_class_ap(&case.scores, n, c, &case.gt, Some(&case.weights));
    ck.opt_list("weighted.class_ap", &pw.ap, &want["weighted"]["class_ap"], TOL);
    ck.opt_list("weighted.class_ap_voc", &pw.ap_voc, &want["weighted"]["class_ap_voc"], TOL);
    for (j, &p) in pw.positives.iter().enumerate() {
        ck.int(&format!("weighted.class_positives[{j}]"), p, &want["weighted"]["class_positives"][j]);
    }
    // VOC differs from plain AP somewhere (otherwise the VOC check is vacuous).
    assert!(pc.ap.iter().zip(&pc.ap_voc).any(|(a, v)| matches!((a, v), (Some(a), Some(v)) if (a - v).abs() > 1e-6)));

    // Sets.
    let sets = want["sets"].as_array().expect("sets");
    assert_eq!(sets.len(), case.configs.len());
    for (k, ((activation, thresholds), want_set)) in case.configs.iter().zip(sets).enumerate() {
        let what = format!("sets[{k}] {activation:?} {thresholds:?}");
        let preds = predict_sets(&case.scores, n, c, *activation, *thresholds, &case.gt);
        let want_preds: Vec<Vec<u32>> = serde_json::from_value(want_set["pred"].clone()).expect("pred");
        for (i, (p, w)) in preds.iter().zip(&want_preds).enumerate() {
            ck.compared += 1;
            if p != w {
                ck.failures.push(format!("{what}: row {i} predicted {p:?}, want {w:?}"));
            }
        }
        // Summaries are compared on the reference's own predictions, so that
        // a prediction mismatch (reported above) does not cascade.
        ck.summary(&format!("{what} all"), &summarize(&want_preds, &case.gt, c, None), &want_set["all"]);
        ck.summary(
            &format!("{what} subset"),
            &summarize(&want_preds, &case.gt, c, Some(&case.subset)),
            &want_set["subset"],
        );
        ck.summary(&format!("{what} all (own preds)"), &summarize(&preds, &case.gt, c, None), &want_set["all"]);
    }

    // Clopper–Pearson.
    let cps = want["cp"].as_array().expect("cp");
    let cases = cp_cases();
    assert_eq!(cps.len(), cases.len());
    for (&(k, m, alpha), w) in cases.iter().zip(cps) {
        let (lo, hi) = clopper_pearson(k, m, alpha).expect("valid arguments");
        ck.num(&format!("cp({k},{m},{alpha}).lower"), lo, &w[0], TOL_CP);
        ck.num(&format!("cp({k},{m},{alpha}).upper"), hi, &w[1], TOL_CP);
    }

    let min = n + 2 * 3 * c + case.configs.len() * (n + 3 * 11) + 2 * cases.len();
    ck.finish(label, min);
}

#[test]
fn matches_reference_small() {
    check_case("n=300, c=40", 0x5EED_0001, 300, 40);
}

#[test]
fn matches_reference_medium() {
    check_case("n=2000, c=100", 0x5EED_0002, 2000, 100);
}
