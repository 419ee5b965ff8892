//! Expert labels (TFDS `imagenet2012_multilabel` v3 schema) end to end:
//!
//! * a fixture built from real data by tests/reference/expert_ref.py, which
//!   also computes the 2020 strict accuracy, the 2022 class-balanced accuracy
//!   and the ImageNet-M errors of the 8 models in ../shared/data
//!   independently (numpy); `problematic_images` both as a list and as an
//!   object;
//! * a seven-image fixture worked out by hand (no Python, no shared data).

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

/// The `all` row of `metric` for `model`.
fn row<'a>(json: &'a Value, model: &str, metric: &str) -> &'a Value {
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model && r["metric"] == metric && r["subset"] == "all")
        .unwrap_or_else(|| panic!("no {metric} row for {model}"))
}

fn pair(v: &Value) -> (u64, u64) {
    (v[0].as_u64().unwrap(), v[1].as_u64().unwrap())
}

fn eval_expert(fixture: &Path, data: &Path) -> Value {
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
        "0",
    ]);
    serde_json::from_str(&out).unwrap()
}

fn check_against_reference(json: &Value, want: &Value, form: &str) {
    let models = want["models"].as_object().unwrap();
    assert_eq!(models.len(), 8);
    let found: std::collections::BTreeSet<&str> =
        json["rows"].as_array().unwrap().iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(found.len(), 8, "{form}: models in the output {found:?}");
    let m_size = want["imagenet_m"].as_u64().unwrap();
    assert!(m_size > 0);
    for (model, w) in models {
        // 2020 strict: (correct, total) over the annotated, non-problematic images.
        let strict = pair(&w["strict"]);
        assert!(strict.0 > 0 && strict.0 < strict.1, "{model}: {strict:?}");
        let r = row(json, model, "expert-2020-strict");
        assert_eq!(pair(&Value::Array(vec![r["correct"].clone(), r["total"].clone()])), strict, "{form} {model}");
        let v = r["value"].as_f64().unwrap();
        assert!((v - strict.0 as f64 / strict.1 as f64).abs() < 1e-15, "{form} {model}: strict value {v}");
        assert!(r["ci_low"].as_f64().unwrap() <= v && v <= r["ci_high"].as_f64().unwrap(), "{form} {model}: {r}");

        // 2022 class-balanced: a value (no counts), no interval with --bootstrap 0.
        let b = row(json, model, "expert-2022-balanced");
        let (got, exp) = (b["value"].as_f64().unwrap(), w["balanced"].as_f64().unwrap());
        assert!((got - exp).abs() < 1e-12, "{form} {model}: balanced labelscope {got} vs numpy {exp}");
        assert!(b["correct"].is_null() && b["total"].is_null() && b["ci_low"].is_null(), "{form} {model}: {b}");
        // The check tells the class mean from the image mean, and the 2022 rule from the 2020 one.
        let lenient = pair(&w["lenient"]);
        assert!(lenient.0 > strict.0, "{model}: unclear labels never matter in the fixture");
        let image_mean = lenient.0 as f64 / lenient.1 as f64;
        assert!((got - image_mean).abs() > 1e-9, "{model}: class mean equals image mean");
        assert_eq!(w["balanced_classes"].as_u64(), Some(60));

        // ImageNet-M: the value of imagenet-m-errors is the count (no counts on that row, as
        // eval.rs documents); the subset size is the total of imagenet-m-top1.
        let errors = w["m_errors"].as_u64().unwrap();
        assert_eq!(w["m_total"].as_u64(), Some(m_size));
        let e = row(json, model, "imagenet-m-errors");
        assert_eq!(e["value"].as_f64(), Some(errors as f64), "{form} {model}: ImageNet-M errors");
        let t = row(json, model, "imagenet-m-top1");
        assert_eq!(
            (t["correct"].as_u64(), t["total"].as_u64()),
            (Some(m_size - errors), Some(m_size)),
            "{form} {model}: ImageNet-M top-1 counts"
        );
    }
    // The weakest model makes more ImageNet-M mistakes than the strongest: errors are not all 0.
    let errs = |m: &str| want["models"][m]["m_errors"].as_u64().unwrap();
    assert!(errs("fv_64k") > errs("pnasnet5large"), "{want}");

    // The 47,000 rows without an annotation are left out, with a note.
    let notes = json["notes"].as_array().unwrap();
    let unannotated = 50_000 - want["images"].as_u64().unwrap();
    let note = format!("{unannotated} of 50000 prediction rows have no expert annotation and are left out");
    assert!(notes.iter().any(|n| n.as_str() == Some(note.as_str())), "{form}: no note {note:?} in {notes:?}");
}

#[test]
fn expert_metrics_of_eight_models_match_numpy() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("expert_list.json");
    let object = dir.path().join("expert_object.json");
    let Some(want) =
        python_reference("expert_ref.py", &[data.to_str().unwrap(), list.to_str().unwrap(), object.to_str().unwrap()])
    else {
        return;
    };
    assert_eq!(want["images"].as_u64(), Some(3000));
    let problematic = want["problematic"].as_u64().unwrap();
    assert!((100..300).contains(&problematic), "{problematic} problematic images");
    let by_list = eval_expert(&list, &data);
    check_against_reference(&by_list, &want, "list form");
    let by_object = eval_expert(&object, &data);
    check_against_reference(&by_object, &want, "object form");
}

#[test]
fn labels_info_counts_problematic_and_imagenet_m() {
    let Some(data) = shared_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("expert_list.json");
    let object = dir.path().join("expert_object.json");
    let Some(want) =
        python_reference("expert_ref.py", &[data.to_str().unwrap(), list.to_str().unwrap(), object.to_str().unwrap()])
    else {
        return;
    };
    let counts: Vec<u64> = want["label_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(counts[0] > 0 && counts[2] > 0, "{counts:?}");
    for fixture in [&list, &object] {
        let info = labelscope_ok(&["labels", "info", fixture.to_str().unwrap()]);
        let expect = [
            format!("{}: format expert, {} images", fixture.display(), want["images"]),
            format!("  empty sets: {}", counts[0]),
            format!("  1 label: {}", counts[1]),
            format!("  2 labels: {}", counts[2]),
            format!("  3 labels: {}", counts[3]),
            format!("  >=4 labels: {}", counts[4]),
            format!("  problematic: {}", want["problematic"]),
            format!("  ImageNet-M: {}", want["imagenet_m"]),
        ];
        let lines: Vec<&str> = info.lines().collect();
        for e in &expect {
            assert!(lines.contains(&e.as_str()), "`labels info` lacks {e:?}:\n{info}");
        }
    }
}

/// Seven images worked out by hand. Classes: 0 n01440764, 1 n01443537,
/// 2 n01484850, 3 n01491361, 4 n01494475, 5 n01496331.
///
/// | image | original | correct | unclear | wrong | flags       | top-1 | 2020 | 2022 |
/// |-------|----------|---------|---------|-------|-------------|-------|------|------|
/// | 1     | 0        | 0       | 1       |       | ImageNet-M  | 1     | no   | yes  |
/// | 2     | 0        | 2, 0    |         | 3     |             | 2     | yes  | yes  |
/// | 3     | 0        | 0       |         | 3     |             | 3     | no   | no   |
/// | 4     | 1        | 1       |         |       | problematic | 1     | –    | –    |
/// | 5     | 1        | –       | 4       |       |             | 4     | no   | yes  |
/// | 6     | 2        | 2       |         |       | ImageNet-M  | 5     | no   | no   |
/// | 7     | 2        | not annotated                   |       | 2     | –    | –    |
///
/// 2020 strict = 1/5. 2022 per class: 0 → 2/3, 1 → 1/1, 2 → 0/1, so the
/// class-balanced accuracy is (2/3 + 1 + 0) / 3 = 5/9 (the image mean would
/// be 3/5). ImageNet-M: image 6 is a mistake, image 1 is not (unclear): 1 error of 2.
#[test]
fn hand_worked_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let name = |i: u32| format!("ILSVRC2012_val_{i:08}.JPEG");
    let wnid = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"];
    let annot = |c: &[usize], u: &[usize], w: &[usize]| {
        let l = |s: &[usize]| Value::from(s.iter().map(|&x| wnid[x]).collect::<Vec<_>>());
        serde_json::json!({"correct": l(c), "unclear": l(u), "wrong": l(w)})
    };
    for (problematic, file) in
        [(serde_json::json!([name(4)]), "list.json"), (serde_json::json!({ name(4): "ambiguous" }), "object.json")]
    {
        let fixture = serde_json::json!({
            "initial_annots": {
                name(1): annot(&[0], &[1], &[]),
                name(2): annot(&[2, 0], &[], &[3]),
                name(3): annot(&[0], &[], &[3]),
                name(4): annot(&[1], &[], &[]),
                name(5): annot(&[], &[4], &[]),
                name(6): annot(&[2], &[], &[]),
            },
            "problematic_images": problematic,
            "imagenet_m": [name(1), name(6)],
        });
        let labels = dir.path().join(file);
        std::fs::write(&labels, fixture.to_string()).unwrap();
        let original = [0, 0, 0, 1, 1, 2, 2];
        let images = dir.path().join("images.json");
        let pairs: Vec<Value> = (0..7).map(|i| serde_json::json!([name(i as u32 + 1), wnid[original[i]]])).collect();
        std::fs::write(&images, serde_json::json!({ "image_filenames": pairs }).to_string()).unwrap();
        let preds = dir.path().join("hand.csv");
        let top1 = [1, 2, 3, 1, 4, 5, 2];
        let csv: String = (0..7).map(|i| format!("{},{}\n", name(i as u32 + 1), top1[i])).collect();
        std::fs::write(&preds, csv).unwrap();
        let out = labelscope_ok(&[
            "eval",
            "--labels",
            labels.to_str().unwrap(),
            "--predictions",
            preds.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--json",
            "--bootstrap",
            "0",
        ]);
        let json: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(row_counts(&json, "hand", "expert-2020-strict", "all"), Some((1, 5)), "{file}");
        let b = row(&json, "hand", "expert-2022-balanced")["value"].as_f64().unwrap();
        assert!((b - 5.0 / 9.0).abs() < 1e-15, "{file}: balanced {b}, expected 5/9");
        assert_eq!(row(&json, "hand", "imagenet-m-errors")["value"].as_f64(), Some(1.0), "{file}");
        assert_eq!(row_counts(&json, "hand", "imagenet-m-top1", "all"), Some((1, 2)), "{file}");
        let notes = json["notes"].as_array().unwrap();
        let note = "1 of 7 prediction rows have no expert annotation and are left out";
        assert!(notes.iter().any(|n| n.as_str() == Some(note)), "{file}: {notes:?}");

        let info = labelscope_ok(&["labels", "info", labels.to_str().unwrap()]);
        assert!(info.starts_with(&format!("{}: format expert, 6 images\n", labels.display())), "{info}");
        for e in ["  empty sets: 2", "  1 label: 3", "  2 labels: 1", "  problematic: 1", "  ImageNet-M: 2"] {
            assert!(info.lines().any(|l| l == e), "{file}: `labels info` lacks {e:?}:\n{info}");
        }
    }
}
