//! Score files end to end: every score metric of `labelscope eval` against
//! the numpy + scikit-learn peer script (bench/reference_eval.py) on
//! generated data with ties, and every score container giving the same rows.

mod common;
use common::*;
use std::collections::HashMap;
use std::path::Path;

fn values(json: &serde_json::Value) -> HashMap<String, f64> {
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["subset"] == "all")
        .map(|r| (r["metric"].as_str().unwrap().to_string(), r["value"].as_f64().unwrap()))
        .collect()
}

fn eval(dir: &Path, preds: &str, extra: &[&str]) -> serde_json::Value {
    let labels = dir.join("labels.json");
    let images = dir.join("images.txt");
    let p = dir.join(preds);
    let mut args = vec![
        "eval",
        "--labels",
        labels.to_str().unwrap(),
        "--predictions",
        p.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--no-breakdowns",
        "--bootstrap",
        "0",
        "--json",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&labelscope_ok(&args)).unwrap()
}

fn generate(rows: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    labelscope_ok(&["bench", "--generate-only", "--rows", rows, "--dir", dir.path().to_str().unwrap()]);
    dir
}

fn reference_script() -> String {
    repo_root().join("bench/reference_eval.py").to_str().unwrap().to_string()
}

#[test]
fn score_metrics_match_scikit_learn() {
    let tmp = generate("3000");
    let dir = tmp.path();
    let Some(want) = python_reference(&reference_script(), &[dir.to_str().unwrap()]) else { return };
    let got = values(&eval(dir, "scores.npy", &["--scores", "probs"]));
    let want = want.as_object().unwrap();
    assert_eq!(want.len(), 13);
    for (metric, v) in want {
        let g = got.get(metric).unwrap_or_else(|| panic!("labelscope has no {metric} row"));
        assert!((g - v.as_f64().unwrap()).abs() < 1e-10, "{metric}: labelscope {g} vs reference {v}");
    }
}

#[test]
fn every_score_container_gives_the_same_rows() {
    let tmp = generate("600");
    let dir = tmp.path();
    let Some(conv) = python_reference("convert_scores.py", &[dir.to_str().unwrap()]) else { return };
    assert_eq!(conv["written"].as_array().unwrap().len(), 6);
    let base = eval(dir, "scores.npy", &["--scores", "probs"]);
    let base_rows = base["rows"].as_array().unwrap().len();
    assert!(base_rows > 10);
    for (file, extra) in [
        ("scores_npz.npz", vec!["--array", "probs"]),
        ("scores_npz.npz", vec![]), // "probs" is a preferred array name
        ("scores_npzc.npz", vec![]),
        ("scores_f64.npy", vec![]),
        ("scores_st.safetensors", vec![]),
        ("scores_csv.csv", vec![]),
    ] {
        let mut args = vec!["--scores", "probs"];
        args.extend(extra);
        let got = eval(dir, file, &args);
        let mut a = base["rows"].as_array().unwrap().clone();
        let b = got["rows"].as_array().unwrap();
        for r in &mut a {
            r["model"] = b[0]["model"].clone();
        }
        assert_eq!(&a, b, "{file} differs from scores.npy");
    }
    // Logits through the sigmoid give the probabilities back: the same set metrics.
    let logits = values(&eval(dir, "logits.npy", &["--scores", "logits", "--activation", "sigmoid"]));
    let probs = values(&base);
    for m in ["subset-acc", "set-iou", "micro-f1", "macro-f1", "top1", "top5", "map-samples"] {
        assert!((logits[m] - probs[m]).abs() < 1e-9, "{m}: {} vs {}", logits[m], probs[m]);
    }
    // Calibrated thresholds differ from 0.5 and the run says which rule it used.
    let cal = eval(dir, "scores.npy", &["--scores", "probs", "--threshold", "calibrated"]);
    assert!(cal["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("calibrated")));
    assert_ne!(values(&cal)["micro-f1"], probs["micro-f1"]);
    // Without --scores there are no set metrics, only ranking metrics.
    let plain = values(&eval(dir, "scores.npy", &[]));
    assert!(plain.contains_key("map-classes") && !plain.contains_key("micro-f1"));
}

#[test]
fn bootstrap_is_seeded() {
    let tmp = generate("400");
    let dir = tmp.path();
    let run = |seed: &str| -> (f64, f64, f64) {
        let labels = dir.join("labels.json");
        let images = dir.join("images.txt");
        let p = dir.join("scores.npy");
        let out = labelscope_ok(&[
            "eval",
            "--labels",
            labels.to_str().unwrap(),
            "--predictions",
            p.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--bootstrap",
            "200",
            "--seed",
            seed,
            "--json",
        ]);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let r = json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"] == "map-samples" && r["subset"] == "all")
            .unwrap()
            .clone();
        (r["value"].as_f64().unwrap(), r["ci_low"].as_f64().unwrap(), r["ci_high"].as_f64().unwrap())
    };
    let a = run("7");
    assert!(a.1 < a.0 && a.0 < a.2, "{a:?}");
    assert_eq!(a, run("7"));
    assert_ne!(a, run("8"));
}
