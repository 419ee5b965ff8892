//! Score files end to end on data from `labelscope bench --generate-only`
//! (quantised scores, so ranks have ties; 1-4 labels per image, a few empty
//! sets), every number checked against an independent computation:
//!
//! * every score metric against the numpy + scikit-learn peer
//!   (bench/reference_eval.py);
//! * every container written by tests/reference/convert_scores.py (numpy and a
//!   hand-written safetensors) giving the rows of the `.npy`, and F16 against
//!   the peer run on the f16-rounded scores;
//! * set metrics with calibrated and fixed thresholds, on probabilities, on
//!   log-odds (sigmoid) and on shifted log-probabilities (softmax) against
//!   tests/reference/set_metrics_ref.py (numpy + scikit-learn);
//! * the `labels=k` breakdowns against numpy means over the rows with k labels;
//! * the seeded bootstrap.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// `labelscope bench --generate-only --rows N` into a fresh temporary directory.
fn generate(rows: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rows = rows.to_string();
    labelscope_ok(&["bench", "--generate-only", "--rows", &rows, "--dir", dir.path().to_str().unwrap()]);
    for f in ["scores.npy", "labels.json", "images.txt"] {
        assert!(dir.path().join(f).exists(), "bench --generate-only did not write {f}");
    }
    dir
}

/// `labelscope eval` on `dir`'s labels and image list, bootstrap off, JSON out.
fn eval(dir: &Path, preds: &Path, breakdowns: bool, extra: &[&str]) -> Value {
    let labels = dir.join("labels.json");
    let images = dir.join("images.txt");
    let mut args = vec![
        "eval",
        "--labels",
        labels.to_str().unwrap(),
        "--predictions",
        preds.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--json",
    ];
    if !breakdowns {
        args.push("--no-breakdowns");
    }
    if !extra.contains(&"--bootstrap") {
        args.extend(["--bootstrap", "0"]);
    }
    args.extend_from_slice(extra);
    serde_json::from_str(&labelscope_ok(&args)).expect("eval --json prints JSON")
}

/// The row of `metric` on `subset` (one model per run).
fn row<'a>(json: &'a Value, metric: &str, subset: &str) -> &'a Value {
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == metric && r["subset"] == subset)
        .unwrap_or_else(|| panic!("no {metric} row on subset {subset}"))
}

fn value(json: &Value, metric: &str, subset: &str) -> f64 {
    row(json, metric, subset)["value"].as_f64().unwrap()
}

fn counts(json: &Value, metric: &str, subset: &str) -> (u64, u64) {
    let r = row(json, metric, subset);
    (r["correct"].as_u64().unwrap(), r["total"].as_u64().unwrap())
}

/// Values of the `all` rows by metric name.
fn all_values(json: &Value) -> HashMap<String, f64> {
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["subset"] == "all")
        .map(|r| (r["metric"].as_str().unwrap().to_string(), r["value"].as_f64().unwrap()))
        .collect()
}

/// The rows without the model name (which follows the file name).
fn rows_without_model(json: &Value) -> Vec<Value> {
    let mut rows = json["rows"].as_array().unwrap().clone();
    for r in &mut rows {
        r.as_object_mut().unwrap().remove("model");
    }
    rows
}

fn pair(v: &Value) -> (u64, u64) {
    (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
}

/// bench/reference_eval.py DIR: {metric: value}.
fn reference_eval(dir: &Path) -> Option<Value> {
    let script = repo_root().join("bench/reference_eval.py");
    python_reference(script.to_str().unwrap(), &[dir.to_str().unwrap()])
}

/// Checks every metric of a reference_eval.py result against the `all` rows.
fn assert_matches_reference(json: &Value, want: &Value, what: &str) {
    let got = all_values(json);
    let want = want.as_object().unwrap();
    assert_eq!(want.len(), 13, "reference_eval.py computes 13 metrics");
    for (metric, v) in want {
        let v = v.as_f64().unwrap();
        assert!(v > 0.0 && v < 1.0, "{what}: degenerate reference {metric} = {v}");
        let g = got.get(metric).unwrap_or_else(|| panic!("{what}: labelscope has no {metric} row"));
        assert!((g - v).abs() < 1e-10, "{what} {metric}: labelscope {g} vs reference {v}");
    }
}

/// Number of images with a non-empty label set in the generated labels.json.
fn labelled_images(dir: &Path) -> u64 {
    let labels: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("labels.json")).unwrap()).unwrap();
    labels.as_object().unwrap().values().filter(|s| !s.as_array().unwrap().is_empty()).count() as u64
}

#[test]
fn npy_score_metrics_match_the_scikit_learn_peer() {
    let tmp = generate(3000);
    let dir = tmp.path();
    let Some(want) = reference_eval(dir) else { return };
    let json = eval(dir, &dir.join("scores.npy"), false, &["--scores", "probs"]);
    assert_matches_reference(&json, &want, "scores.npy");
    // Count metrics: totals are the labelled images (empty sets left out, with a note).
    let labelled = labelled_images(dir);
    assert!(labelled > 2800 && labelled < 3000, "the generator leaves ~2% of the sets empty: {labelled}");
    for m in ["top1", "top5", "subset-acc"] {
        let (c, t) = counts(&json, m, "all");
        assert_eq!(t, labelled, "{m} total");
        assert!(c > 0 && c < t, "{m}: {c}/{t}");
    }
    let notes = json["notes"].as_array().unwrap();
    let empty = 3000 - labelled;
    assert!(
        notes.iter().any(|n| n.as_str().unwrap().starts_with(&format!("{empty} images have an empty label set"))),
        "{notes:?}"
    );
    // Non-count metrics carry no counts and, with --bootstrap 0, no interval.
    let m = row(&json, "map-samples", "all");
    assert!(m["correct"].is_null() && m["total"].is_null() && m["ci_low"].is_null() && m["ci_high"].is_null(), "{m}");
}

#[test]
fn every_container_gives_the_rows_of_the_npy() {
    let tmp = generate(1000);
    let dir = tmp.path();
    let f16_dir = tempfile::tempdir().unwrap();
    let Some(conv) =
        python_reference("convert_scores.py", &[dir.to_str().unwrap(), "--more", f16_dir.path().to_str().unwrap()])
    else {
        return;
    };
    assert_eq!(conv["written"].as_array().unwrap().len(), 9, "{conv}");
    let base = eval(dir, &dir.join("scores.npy"), true, &["--scores", "probs"]);
    let base_rows = rows_without_model(&base);
    // all + labels=1..labels>=4, 13 metrics on `all`, 8 (no macro) on each bucket
    assert!(base_rows.len() >= 13 + 4 * 8, "{} rows", base_rows.len());
    assert_eq!(base["rows"][0]["model"], "scores");
    // f32-exact containers: identical rows (values, counts, subsets, order).
    for (file, extra) in [
        ("scores_npz.npz", vec!["--array", "probs"]),
        ("scores_npz.npz", vec![]), // `other` and `probs`: "probs" is a preferred name
        ("scores_two.npz", vec![]), // `junk` (same shape, stored first) and `probs`
        ("scores_two.npz", vec!["--array", "probs"]),
        ("scores_npzc.npz", vec![]), // compressed
        ("scores_f64.npy", vec![]),
        ("scores_st.safetensors", vec![]),
        ("scores_csv.csv", vec![]), // header, image names in the first column
    ] {
        let mut args = vec!["--scores", "probs"];
        args.extend(extra.iter().copied());
        let got = eval(dir, &dir.join(file), true, &args);
        let model = Path::new(file).file_stem().unwrap().to_str().unwrap();
        assert_eq!(got["rows"][0]["model"], model);
        assert_eq!(rows_without_model(&got), base_rows, "{file} {extra:?} differs from scores.npy");
    }
    // --array picks the other array: different numbers (this comparison can fail).
    let junk = eval(dir, &dir.join("scores_two.npz"), true, &["--scores", "probs", "--array", "junk"]);
    assert_ne!(rows_without_model(&junk), base_rows);
    assert!(value(&junk, "map-samples", "all") < value(&base, "map-samples", "all") - 0.3);

    // F16 safetensors: the reference run on the f16-rounded scores.
    let Some(want16) = reference_eval(f16_dir.path()) else { return };
    let f16 = eval(dir, &dir.join("scores_f16.safetensors"), true, &["--scores", "probs"]);
    assert_matches_reference(&f16, &want16, "scores_f16.safetensors");
    // The rounding is visible (scores >= 0.5 lose their last bit), so a reader that widened
    // the F16 values wrongly, or read the f32 values, would not pass the check above.
    let f32_values = all_values(&base);
    let differ = want16
        .as_object()
        .unwrap()
        .iter()
        .filter(|(m, v)| (v.as_f64().unwrap() - f32_values[m.as_str()]).abs() > 1e-12);
    assert!(differ.count() > 0, "f16 rounding changes no metric: the F16 check would be vacuous");
    // And the f16 values widened to f32 by numpy give exactly the same rows.
    let rounded = eval(f16_dir.path(), &f16_dir.path().join("scores.npy"), true, &["--scores", "probs"]);
    assert_eq!(rows_without_model(&f16), rows_without_model(&rounded));
}

#[test]
fn set_metrics_with_calibrated_thresholds_and_logits_match_numpy() {
    let tmp = generate(1500);
    let dir = tmp.path();
    let scratch = tempfile::tempdir().unwrap();
    let Some(_) =
        python_reference("convert_scores.py", &[dir.to_str().unwrap(), "--more", scratch.path().to_str().unwrap()])
    else {
        return;
    };
    // (file, labelscope flags, reference case, expected note)
    let cases: [(&str, &[&str], &str, &str); 7] = [
        ("scores.npy", &["--scores", "probs"], "scores.npy,none,0.5", "probabilities, threshold 0.5"),
        ("scores.npy", &["--scores", "probs", "--threshold", "0.3"], "scores.npy,none,0.3", "threshold 0.3"),
        (
            "scores.npy",
            &["--scores", "probs", "--threshold", "calibrated"],
            "scores.npy,none,calibrated",
            "probabilities, per-class calibrated thresholds",
        ),
        (
            "logits.npy",
            &["--scores", "logits", "--activation", "sigmoid"],
            "logits.npy,sigmoid,0.5",
            "sigmoid of logits, threshold 0.5",
        ),
        (
            "logits.npy",
            &["--scores", "logits", "--activation", "sigmoid", "--threshold", "calibrated"],
            "logits.npy,sigmoid,calibrated",
            "sigmoid of logits, per-class calibrated",
        ),
        (
            "logits_softmax.npy",
            &["--scores", "logits", "--activation", "softmax", "--threshold", "0.005"],
            "logits_softmax.npy,softmax,0.005",
            "softmax of logits, threshold 0.005",
        ),
        (
            "logits_softmax.npy",
            &["--scores", "logits", "--threshold", "calibrated"], // softmax is the default activation
            "logits_softmax.npy,softmax,calibrated",
            "softmax of logits, per-class calibrated",
        ),
    ];
    let mut args = vec!["sets", dir.to_str().unwrap()];
    args.extend(cases.iter().map(|c| c.2));
    let Some(want) = python_reference("set_metrics_ref.py", &args) else { return };
    let labelled = labelled_images(dir);
    let mut micro_f1 = HashMap::new();
    for (file, flags, case, note) in cases {
        let w = &want[case];
        // The case is not degenerate: some images get several labels, some fall back to the argmax.
        let (predicted, fallback) = (w["predicted"].as_u64().unwrap(), w["fallback"].as_u64().unwrap());
        assert!(predicted > labelled && predicted < 3 * labelled, "{case}: {predicted} predicted labels");
        assert!(fallback > 0 && fallback < labelled / 2, "{case}: {fallback} argmax fallbacks");
        let json = eval(dir, &dir.join(file), false, flags);
        assert_eq!(counts(&json, "subset-acc", "all"), pair(&w["subset-acc-counts"]), "{case}");
        for m in [
            "subset-acc",
            "set-iou",
            "micro-precision",
            "micro-recall",
            "micro-f1",
            "macro-precision",
            "macro-recall",
            "macro-f1",
        ] {
            let (g, v) = (value(&json, m, "all"), w[m].as_f64().unwrap());
            assert!((g - v).abs() < 1e-10, "{case} {m}: labelscope {g} vs numpy {v}");
        }
        let notes = json["notes"].as_array().unwrap();
        assert!(notes.iter().any(|n| n.as_str().unwrap().contains(note)), "{case}: no note {note:?} in {notes:?}");
        micro_f1.insert(case, value(&json, "micro-f1", "all"));
    }
    // The thresholds matter (each comparison above could pass by accident only if they did not).
    assert_ne!(micro_f1["scores.npy,none,0.5"], micro_f1["scores.npy,none,calibrated"]);
    assert_ne!(micro_f1["scores.npy,none,0.5"], micro_f1["scores.npy,none,0.3"]);
    assert_ne!(micro_f1["logits_softmax.npy,softmax,0.005"], micro_f1["logits_softmax.npy,softmax,calibrated"]);
}

#[test]
fn label_count_breakdowns_match_numpy() {
    let tmp = generate(2000);
    let dir = tmp.path();
    let Some(want) = python_reference("set_metrics_ref.py", &["buckets", dir.to_str().unwrap(), "scores.npy"]) else {
        return;
    };
    let json = eval(dir, &dir.join("scores.npy"), true, &["--scores", "probs"]);
    let buckets = ["labels=1", "labels=2", "labels=3", "labels>=4"];
    let mut images = 0;
    for subset in std::iter::once("all").chain(buckets) {
        let w = &want[subset];
        let n = w["images"].as_u64().unwrap();
        assert!(n > 20, "{subset}: only {n} images");
        if subset != "all" {
            images += n;
        }
        let (g, v) = (value(&json, "map-samples", subset), w["map-samples"].as_f64().unwrap());
        assert!((g - v).abs() < 1e-10, "{subset} map-samples: labelscope {g} vs numpy {v}");
        for m in ["top1", "top5"] {
            assert_eq!(counts(&json, m, subset), pair(&w[m]), "{subset} {m}");
        }
        assert_eq!(counts(&json, "subset-acc", subset), pair(&w["subset-acc-counts"]), "{subset}");
        for m in ["set-iou", "micro-precision", "micro-recall", "micro-f1"] {
            let (g, v) = (value(&json, m, subset), w[m].as_f64().unwrap());
            assert!((g - v).abs() < 1e-10, "{subset} {m}: labelscope {g} vs numpy {v}");
        }
    }
    // The buckets partition the labelled images.
    assert_eq!(images, want["all"]["images"].as_u64().unwrap());
    assert_eq!(images, labelled_images(dir));
    // The per-bucket means differ (a bucket row that repeated `all` would be caught).
    let all = value(&json, "map-samples", "all");
    assert!(buckets.iter().all(|b| (value(&json, "map-samples", b) - all).abs() > 1e-6));
    // No original labels in images.txt: no class-group rows, and a note says so.
    assert!(json["rows"].as_array().unwrap().iter().all(|r| !r["subset"].as_str().unwrap().starts_with("group=")));
    let notes = json["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().starts_with("no original labels")), "{notes:?}");
}

#[test]
fn bootstrap_interval_is_seeded_and_has_the_expected_width() {
    let tmp = generate(1000);
    let dir = tmp.path();
    let Some(want) = python_reference("set_metrics_ref.py", &["buckets", dir.to_str().unwrap(), "scores.npy"]) else {
        return;
    };
    let scores = dir.join("scores.npy");
    let run = |seed: &str| -> (f64, f64, f64) {
        let json = eval(dir, &scores, false, &["--bootstrap", "200", "--seed", seed]);
        let r = row(&json, "map-samples", "all");
        (r["value"].as_f64().unwrap(), r["ci_low"].as_f64().unwrap(), r["ci_high"].as_f64().unwrap())
    };
    let a = run("7");
    let v = want["all"]["map-samples"].as_f64().unwrap();
    assert!((a.0 - v).abs() < 1e-10, "map-samples: labelscope {} vs numpy {v}", a.0);
    assert!(a.1 < a.0 && a.0 < a.2, "interval {a:?} does not contain the value");
    // Width of a 95% percentile interval of a mean ~ 2 * 1.96 * sd / sqrt(n); 200 resamples are noisy.
    let n = want["all"]["images"].as_f64().unwrap();
    let expected = 2.0 * 1.96 * want["sap_std"].as_f64().unwrap() / n.sqrt();
    let ratio = (a.2 - a.1) / expected;
    assert!((0.6..1.4).contains(&ratio), "interval width {} vs normal approximation {expected}", a.2 - a.1);
    assert_eq!(a, run("7"), "same seed, same interval");
    let b = run("8");
    assert_eq!(a.0, b.0, "the value does not depend on the seed");
    assert_ne!((a.1, a.2), (b.1, b.2), "another seed, another interval");
}
