//! Expert labels end to end: a fixture in the TFDS `imagenet2012_multilabel`
//! schema built from real data by tests/reference/expert_fixture.py, which
//! also computes the expected metrics independently (numpy).

mod common;
use common::*;

#[test]
fn expert_metrics_of_eight_models_match_reference() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("expert.json");
    let Some(want) = python_reference("expert_fixture.py", &[data.to_str().unwrap(), fixture.to_str().unwrap()]) else {
        return;
    };
    let d = data.to_str().unwrap();
    let out = labelscope_ok(&[
        "eval",
        "--labels",
        fixture.to_str().unwrap(),
        "--predictions",
        &format!("{d}/predictions/imagenet-val"),
        "--images",
        &format!("{d}/imagenet/val_original.json"),
        "--json",
        "--bootstrap",
        "200",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let find = |model: &str, metric: &str| -> serde_json::Value {
        json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == model && r["metric"] == metric && r["subset"] == "all")
            .unwrap_or_else(|| panic!("no {metric} row for {model}"))
            .clone()
    };
    let models = want["models"].as_object().unwrap();
    assert_eq!(models.len(), 8);
    for (model, w) in models {
        let strict = (w["strict"][0].as_u64().unwrap(), w["strict"][1].as_u64().unwrap());
        assert_eq!(row_counts(&json, model, "expert-2020-strict", "all"), Some(strict), "{model}");
        // With expert labels as --labels, top1 has label-set semantics: a prediction among the
        // correct labels, problematic images and images without a correct label left out.
        let top1 = (w["top1"][0].as_u64().unwrap(), w["top1"][1].as_u64().unwrap());
        assert_eq!(row_counts(&json, model, "top1", "all"), Some(top1), "{model}");
        assert!(top1.1 < strict.1, "the fixture has non-problematic images without a correct label");
        let b = find(model, "expert-2022-balanced");
        let v = b["value"].as_f64().unwrap();
        assert!((v - w["balanced"].as_f64().unwrap()).abs() < 1e-12, "{model}: {v} vs {}", w["balanced"]);
        assert!(b["correct"].is_null() && b["total"].is_null());
        let (lo, hi) = (b["ci_low"].as_f64().unwrap(), b["ci_high"].as_f64().unwrap());
        assert!(lo < v && v < hi, "{model}: bootstrap interval [{lo}, {hi}] around {v}");
        let errors = w["m_errors"].as_u64().unwrap();
        let total = w["m_total"].as_u64().unwrap();
        assert_eq!(find(model, "imagenet-m-errors")["value"].as_f64(), Some(errors as f64), "{model}");
        assert_eq!(row_counts(&json, model, "imagenet-m-top1", "all"), Some((total - errors, total)), "{model}");
    }
    // The 46,900-odd unannotated rows are left out with a note.
    let notes = json["notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n.as_str().unwrap().contains("have no expert annotation")), "{notes:?}");

    let info = labelscope_ok(&["labels", "info", fixture.to_str().unwrap()]);
    assert!(info.contains("format expert"), "{info}");
    assert!(info.contains(&format!("problematic: {}", want["problematic"])), "{info}");
    assert!(info.contains(&format!("ImageNet-M: {}", want["imagenet_m"])), "{info}");
}
