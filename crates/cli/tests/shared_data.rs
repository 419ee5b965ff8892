//! End-to-end checks on the real public data in ../shared/data against
//! numbers computed independently by tests/reference/shared_ref.py (numpy)
//! and against published anchors.

mod common;
use common::*;

fn reference(data: &std::path::Path) -> Option<serde_json::Value> {
    python_reference("shared_ref.py", &[data.to_str().unwrap()])
}

#[test]
fn real_topk_of_eight_models_matches_reference() {
    let Some(data) = shared_data() else { return };
    let Some(reference) = reference(&data) else { return };
    let d = data.to_str().unwrap();
    let out = labelscope_ok(&[
        "eval",
        "--labels",
        &format!("{d}/imagenet/real.json"),
        "--predictions",
        &format!("{d}/predictions/imagenet-val"),
        "--images",
        &format!("{d}/imagenet/val_original.json"),
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let models = reference["val"].as_object().unwrap();
    assert_eq!(models.len(), 8);
    for (model, r) in models {
        for (metric, key) in
            [("top1", "real_top1"), ("top5", "real_top5"), ("orig-top1", "orig_top1"), ("orig-top5", "orig_top5")]
        {
            let want = (r[key][0].as_u64().unwrap(), r[key][1].as_u64().unwrap());
            assert_eq!(row_counts(&json, model, metric, "all"), Some(want), "{model} {metric}");
        }
    }
    // Published anchor (shared/data/README.md): resnet50 ReaL top-1 = 38,855 / 46,837.
    assert_eq!(row_counts(&json, "resnet50", "top1", "all"), Some((38_855, 46_837)));
    // Every row has the contract's fields; values are correct/total for counts.
    for r in json["rows"].as_array().unwrap() {
        for k in ["model", "dataset", "metric", "subset", "correct", "total", "value", "ci_low", "ci_high"] {
            assert!(r.get(k).is_some(), "row lacks {k}: {r}");
        }
        if let (Some(c), Some(t)) = (r["correct"].as_u64(), r["total"].as_u64()) {
            let v = r["value"].as_f64().unwrap();
            assert!((v - c as f64 / t as f64).abs() < 1e-12);
            assert!(r["ci_low"].as_f64().unwrap() <= v && v <= r["ci_high"].as_f64().unwrap());
        }
    }
    // The label-count buckets partition the images with a label.
    let parts: u64 = ["labels=1", "labels=2", "labels=3", "labels>=4"]
        .iter()
        .map(|s| row_counts(&json, "resnet50", "top1", s).unwrap().1)
        .sum();
    assert_eq!(parts, 46_837);
    // organism + object partition all images, and the dog group has 118 classes x 50 images.
    let org = row_counts(&json, "resnet50", "orig-top1", "group=organism").unwrap().1;
    let obj = row_counts(&json, "resnet50", "orig-top1", "group=object").unwrap().1;
    assert_eq!((org, obj), (410 * 50, 590 * 50));
    assert_eq!(row_counts(&json, "resnet50", "orig-top1", "group=dog").unwrap().1, 118 * 50);
}

#[test]
fn inv2_ml_topk_of_eight_models_matches_reference() {
    let Some(data) = shared_data() else { return };
    let Some(reference) = reference(&data) else { return };
    let d = data.to_str().unwrap();
    let out = labelscope_ok(&[
        "eval",
        "--labels",
        &format!("{d}/imagenetv2/inv2_ml_labels.json"),
        "--predictions",
        &format!("{d}/predictions/imagenetv2-matched-frequency/*.npy"),
        "--images",
        &format!("{d}/imagenetv2/matched_frequency.json"),
        "--json",
        "--no-breakdowns",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let models = reference["v2"].as_object().unwrap();
    assert_eq!(models.len(), 8);
    for (model, r) in models {
        for (metric, key) in [("top1", "inv2_top1"), ("top5", "inv2_top5"), ("orig-top1", "orig_top1")] {
            let want = (r[key][0].as_u64().unwrap(), r[key][1].as_u64().unwrap());
            assert_eq!(row_counts(&json, model, metric, "all"), Some(want), "{model} {metric}");
        }
    }
    // 129 INv2-ML sets are empty (shared/data/README.md).
    assert_eq!(row_counts(&json, "resnet50", "top1", "all").unwrap().1, 10_000 - 129);
}

#[test]
fn rebuilt_real_json_equals_the_published_file() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rebuilt.json");
    let d = data.to_str().unwrap();
    labelscope_ok(&[
        "labels",
        "rebuild",
        "--scores",
        &format!("{d}/imagenet/real_rater_scores.npz"),
        "--original",
        &format!("{d}/imagenet/val_original.json"),
        "--threshold",
        "0.8",
        "--output",
        out.to_str().unwrap(),
    ]);
    let mine: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let real: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("imagenet/real.json")).unwrap()).unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 50_000);
    // real.json lists labels in ascending order except in a few sets; compare as sets.
    let norm = |v: &serde_json::Value| -> Vec<Vec<u64>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let mut x: Vec<u64> = s.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
                x.sort();
                x
            })
            .collect()
    };
    let (a, b) = (norm(&mine), norm(&real));
    let diff = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(diff, 0, "{diff} images differ from real.json");
    // A different threshold gives a different result (the check can fail).
    labelscope_ok(&[
        "labels",
        "rebuild",
        "--scores",
        &format!("{d}/imagenet/real_rater_scores.npz"),
        "--original",
        &format!("{d}/imagenet/val_original.json"),
        "--threshold",
        "0.5",
        "--output",
        out.to_str().unwrap(),
    ]);
    let loose: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_ne!(norm(&loose), b);
    // The rater scores can also be given to eval directly: the published ReaL anchor again.
    let json: serde_json::Value = serde_json::from_str(&labelscope_ok(&[
        "eval",
        "--labels",
        &format!("{d}/imagenet/real_rater_scores.npz"),
        "--predictions",
        &format!("{d}/predictions/imagenet-val/resnet50.npy"),
        "--images",
        &format!("{d}/imagenet/val_original.json"),
        "--json",
        "--no-breakdowns",
    ]))
    .unwrap();
    assert_eq!(row_counts(&json, "resnet50", "top1", "all"), Some((38_855, 46_837)));
}

#[test]
fn cooccurrence_and_comparison_match_reference() {
    let Some(data) = shared_data() else { return };
    let Some(reference) = reference(&data) else { return };
    let d = data.to_str().unwrap();
    let out = labelscope_ok(&["cooccur", "--labels", &format!("{d}/imagenet/real.json"), "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len() as u64, reference["cooccur_pairs"].as_u64().unwrap());
    let mut by_pair = std::collections::HashMap::new();
    for r in rows {
        by_pair.insert((r["a"].as_u64().unwrap(), r["b"].as_u64().unwrap()), r.clone());
    }
    for want in reference["cooccur_top"].as_array().unwrap() {
        let w: Vec<u64> = want.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        let r = &by_pair[&(w[0], w[1])];
        assert_eq!(r["count"].as_u64().unwrap(), w[2]);
        assert_eq!(r["freq_a"].as_u64().unwrap(), w[3]);
        assert_eq!(r["freq_b"].as_u64().unwrap(), w[4]);
        let conf = r["conf_a_given_b"].as_f64().unwrap();
        assert!((conf - w[2] as f64 / w[4] as f64).abs() < 1e-12);
    }
    // Sorted by count, descending.
    assert!(rows.windows(2).all(|p| p[0]["count"].as_u64() >= p[1]["count"].as_u64()));

    let out = labelscope_ok(&[
        "compare-labels",
        &format!("{d}/imagenet/val_original.json"),
        &format!("{d}/imagenet/real.json"),
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<u64> = json["groups"].as_array().unwrap().iter().map(|g| g["count"].as_u64().unwrap()).collect();
    let want: Vec<u64> =
        reference["compare_orig_real"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(json["compared"].as_u64(), Some(50_000));
}

#[test]
fn fifty_thousand_rows_without_order_say_which_order_was_assumed() {
    let Some(data) = shared_data() else { return };
    let d = data.to_str().unwrap();
    let o = labelscope(&[
        "eval",
        "--labels",
        &format!("{d}/imagenet/real.json"),
        "--predictions",
        &format!("{d}/predictions/imagenet-val/resnet50.npy"),
        "--json",
    ]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("assumed the built-in order `ilsvrc2012-val`"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let notes = json["notes"].as_array().unwrap();
    // The shared predictions are in wnid order, so the assumed order is wrong, and the
    // near-chance warning says so.
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("close to chance")), "{notes:?}");
}
