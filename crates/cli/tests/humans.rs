//! `labelscope humans` end to end: hand-made participant files with numbers
//! counted by hand, and the shipped model predictions on the shared data
//! checked against a straightforward re-implementation over the raw files.

mod common;
use common::*;

use std::path::Path;

/// (correct, total) of the row for (participant, split, metric, subset).
fn counts(json: &serde_json::Value, who: &str, split: &str, metric: &str, subset: &str) -> Option<(u64, u64)> {
    json["rows"].as_array()?.iter().find_map(|r| {
        (r["model"] == who && r["dataset"] == split && r["metric"] == metric && r["subset"] == subset)
            .then(|| (r["correct"].as_u64().unwrap(), r["total"].as_u64().unwrap()))
    })
}

fn row<'a>(json: &'a serde_json::Value, who: &str, split: &str, metric: &str, subset: &str) -> &'a serde_json::Value {
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == who && r["dataset"] == split && r["metric"] == metric && r["subset"] == subset)
        .unwrap_or_else(|| panic!("no row {who} {split} {metric} {subset}"))
}

/// A little-endian `<i8` `.npy` file of shape `[rows, 1]`.
fn write_npy_top1(path: &Path, labels: &[i64]) {
    let dict = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': ({}, 1), }}", labels.len());
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header);
    for l in labels {
        bytes.extend(l.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Split `val` (images a–d) and split `v2` (images x, y); see the comments
/// for the hand counts.
#[test]
fn hand_made_participants_give_hand_counted_tables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = |name: &str, text: &str| std::fs::write(d.join(name), text).unwrap();
    // val: original labels a 0 (tench), b 151 (dog), c 500 (object), d 600 (object).
    w("val_images.csv", "image,label\na.jpg,0\nb.jpg,151\nc.jpg,500\nd.jpg,600\n");
    w("val_labels.json", r#"{"a.jpg": [0], "b.jpg": [151, 152], "c.jpg": [500], "d.jpg": [600, 601]}"#);
    w("val_problematic.txt", "c.jpg\n");
    std::fs::create_dir(d.join("val_humans")).unwrap();
    // Answers are joined by image id: a different order and spelling than the image list.
    w(
        "val_humans/h1.csv",
        "image,label,alternative,time\nval/d.JPEG,600,,20\nc.jpg,501,500,100\nb.jpg,152,,30\na.jpg,0,,10\n",
    );
    w(
        "val_humans/h2.json",
        r#"{"a.jpg": {"label": 1, "alternative": 0, "time": 50}, "b.jpg": {"label": "n02085620", "time": 90}}"#,
    );
    std::fs::create_dir(d.join("val_models")).unwrap();
    write_npy_top1(&d.join("val_models/m.npy"), &[0, 152, 500, 602]);
    // v2: x 0 with labels {0, 1}, y 1 with labels {1}.
    w("v2_images.csv", "image,label\nx.jpg,0\ny.jpg,1\n");
    w("v2_labels.json", r#"{"x.jpg": [0, 1], "y.jpg": [1]}"#);
    std::fs::create_dir(d.join("v2_humans")).unwrap();
    w("v2_humans/h1.tsv", "image\tlabel\ttime\ny.jpg\t1\t5\nx.jpg\t0\t5\n");
    std::fs::create_dir(d.join("v2_models")).unwrap();
    write_npy_top1(&d.join("v2_models/m.npy"), &[1, 2]);
    let p = |s: &str| d.join(s).display().to_string();
    let val = format!(
        "name=val,labels={},images={},models={},humans={},problematic={}",
        p("val_labels.json"),
        p("val_images.csv"),
        p("val_models"),
        p("val_humans"),
        p("val_problematic.txt")
    );
    let v2 = format!(
        "name=v2,labels={},images={},models={},humans={}",
        p("v2_labels.json"),
        p("v2_images.csv"),
        p("v2_models/m.npy"),
        p("v2_humans/h1.tsv")
    );
    let (html, plots, csv, md) = (p("out.html"), p("plots"), p("out.csv"), p("out.md"));
    let out = labelscope_ok(&[
        "humans",
        "--split",
        &val,
        "--split",
        &v2,
        "--json",
        "--html",
        &html,
        "--plots",
        &plots,
        "--csv",
        &csv,
        "--markdown",
        &md,
        "--scale",
        "logit",
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();

    // n02085620 (Chihuahua) is class 151.
    // val scope: a, b, c, d (all labelled, all answered by h1).
    // h1: a 0 ✓, b 152 ∈ {151,152} ✓, c 501 ✗ (alt 500 ✓), d 600 ✓.
    assert_eq!(counts(&j, "h1", "val", "multi-label", "all"), Some((3, 4)));
    assert_eq!(counts(&j, "h1", "val", "top1", "all"), Some((2, 4)));
    assert_eq!(counts(&j, "h1", "val", "multi-label-imputed", "all"), Some((4, 4)));
    assert_eq!(counts(&j, "h1", "val", "top1-imputed", "all"), Some((3, 4)));
    // h2 answered a (1 ✗, alt 0 ✓) and b (151 ✓).
    assert_eq!(counts(&j, "h2", "val", "multi-label", "all"), Some((1, 2)));
    assert_eq!(counts(&j, "h2", "val", "multi-label-imputed", "all"), Some((2, 2)));
    assert_eq!(counts(&j, "h2", "val", "top1", "all"), Some((1, 2)));
    // m: a ✓, b ✓ (top1 ✗), c ✓, d 602 ✗.
    assert_eq!(counts(&j, "m", "val", "multi-label", "all"), Some((3, 4)));
    assert_eq!(counts(&j, "m", "val", "top1", "all"), Some((2, 4)));
    assert_eq!(counts(&j, "m", "val", "multi-label-imputed", "all"), None);
    // Groups by original label: dog = b; organism-without-dog = a; object = c, d.
    assert_eq!(counts(&j, "m", "val", "multi-label", "group=dog"), Some((1, 1)));
    assert_eq!(counts(&j, "m", "val", "top1", "group=dog"), Some((0, 1)));
    assert_eq!(counts(&j, "h2", "val", "multi-label", "group=organism-without-dog"), Some((0, 1)));
    assert_eq!(counts(&j, "h1", "val", "multi-label", "group=object"), Some((1, 2)));
    // Median times: a (10, 50) → 30, b (30, 90) → 60, c 100, d 20; fast (< 60 s) = a, d.
    assert_eq!(counts(&j, "h1", "val", "multi-label", "fast"), Some((2, 2)));
    assert_eq!(counts(&j, "m", "val", "multi-label", "fast"), Some((1, 2)));
    assert_eq!(counts(&j, "h2", "val", "multi-label", "fast"), Some((0, 1)));
    // Problematic = c.
    assert_eq!(counts(&j, "m", "val", "multi-label", "problematic"), Some((1, 1)));
    assert_eq!(counts(&j, "h1", "val", "multi-label", "problematic"), Some((0, 1)));
    assert_eq!(counts(&j, "m", "val", "multi-label", "non-problematic"), Some((2, 3)));
    // One label: a, c; several: b, d.
    assert_eq!(counts(&j, "m", "val", "multi-label", "labels=1"), Some((2, 2)));
    assert_eq!(counts(&j, "m", "val", "multi-label", "labels>=2"), Some((1, 2)));
    assert_eq!(counts(&j, "h1", "val", "multi-label", "labels>=2"), Some((2, 2)));
    // v2: m x 1 ∈ {0,1} ✓, y 2 ✗; top1 both ✗. h1 both ✓.
    assert_eq!(counts(&j, "m", "v2", "multi-label", "all"), Some((1, 2)));
    assert_eq!(counts(&j, "m", "v2", "top1", "all"), Some((0, 2)));
    assert_eq!(counts(&j, "h1", "v2", "multi-label", "all"), Some((2, 2)));
    assert_eq!(counts(&j, "h1", "v2", "multi-label", "fast"), Some((2, 2)));
    assert_eq!(counts(&j, "h1", "v2", "multi-label", "problematic"), None, "no problematic file for v2");

    // Clopper–Pearson closed forms: x/n = n/n has low (α/2)^(1/n); 0/n has high 1 − (α/2)^(1/n).
    let r = row(&j, "h1", "val", "multi-label", "fast");
    assert!((r["ci_low"].as_f64().unwrap() - 0.025f64.sqrt()).abs() < 1e-9, "{r}");
    assert_eq!(r["ci_high"].as_f64(), Some(1.0));
    let r = row(&j, "m", "v2", "top1", "all");
    assert!((r["ci_high"].as_f64().unwrap() - (1.0 - 0.025f64.sqrt())).abs() < 1e-9, "{r}");
    assert_eq!(r["ci_low"].as_f64(), Some(0.0));

    // Split summaries: val has 2 of 4 multi-label images; v2 1 of 2.
    let splits = j["splits"].as_array().unwrap();
    assert_eq!(splits[0]["name"], "val");
    assert_eq!(splits[0]["scope_images"], 4);
    assert_eq!(splits[0]["scope_multi_label"], 2);
    assert_eq!(splits[0]["multi_label_share"].as_f64(), Some(0.5));
    assert_eq!(splits[0]["fast_images"], 2);
    assert_eq!(splits[0]["problematic_images"], 1);
    assert_eq!(splits[0]["median_times_s"], serde_json::json!([30.0, 60.0, 100.0, 20.0]));
    assert_eq!(splits[1]["multi_label_share"].as_f64(), Some(0.5));
    // Participants: kinds and escape-hatch counts.
    let h1 = j["participants"].as_array().unwrap().iter().find(|p| p["name"] == "h1" && p["split"] == "val").unwrap();
    assert_eq!(
        (h1["kind"].as_str(), h1["answered"].as_u64(), h1["alternatives"].as_u64()),
        (Some("human"), Some(4), Some(1))
    );
    let m = j["participants"].as_array().unwrap().iter().find(|p| p["name"] == "m").unwrap();
    assert_eq!(m["kind"], "model");

    // Files: CSV rows, Markdown, HTML with inline SVG, plots as SVG + PNG.
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv_text.lines().count(), 1 + j["rows"].as_array().unwrap().len());
    assert!(std::fs::read_to_string(&md).unwrap().contains("multi-label"));
    let html_text = std::fs::read_to_string(&html).unwrap();
    assert!(html_text.contains("<svg") && html_text.contains("logit scale") && html_text.contains("h2"));
    for f in ["scatter-val-vs-v2-logit", "median-time-val", "median-time-v2"] {
        let png = std::fs::read(Path::new(&plots).join(format!("{f}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{f}");
        assert!(std::fs::read_to_string(Path::new(&plots).join(format!("{f}.svg"))).unwrap().starts_with("<svg"));
    }
}

#[test]
fn bad_answer_files_are_errors_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("imgs.csv"), "image,label\na.jpg,0\n").unwrap();
    std::fs::write(d.join("labels.json"), r#"{"a.jpg": [0]}"#).unwrap();
    std::fs::write(d.join("bad.csv"), "image,label\na.jpg,0\nb.jpg,tiger\n").unwrap();
    let spec = format!(
        "name=s,labels={},images={},humans={}",
        d.join("labels.json").display(),
        d.join("imgs.csv").display(),
        d.join("bad.csv").display()
    );
    let err = labelscope_err(&["humans", "--split", &spec]);
    assert!(err.contains("bad.csv") && err.contains("line 3") && err.contains("tiger"), "{err}");
}

/// Straightforward re-implementation over the raw files: top-1 of a `<i8`
/// `[N, 5]` npy against label sets and original labels.
fn npy_top1(path: &Path) -> Vec<i64> {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(header.contains("'<i8'") && header.contains(", 5)"), "{header}");
    b[10 + hlen..].chunks(40).map(|row| i64::from_le_bytes(row[..8].try_into().unwrap())).collect()
}

#[test]
fn shared_data_resnet50_on_real_and_inv2_ml() {
    let Some(data) = shared_data() else { return };
    let dd = data.display().to_string();
    let val = format!(
        "name=imagenet,labels={dd}/imagenet/real.json,images={dd}/imagenet/val_original.json,models={dd}/predictions/imagenet-val/resnet50.npy"
    );
    let v2 = format!(
        "name=imagenetv2,labels={dd}/imagenetv2/inv2_ml_labels.json,images={dd}/imagenetv2/matched_frequency.json,models={dd}/predictions/imagenetv2-matched-frequency/resnet50.npy"
    );
    let out = labelscope_ok(&["humans", "--split", &val, "--split", &v2, "--json", "--groups", "dog"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();

    // Independent computation.
    let class_info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("imagenet/class_info.json")).unwrap()).unwrap();
    let wnid_index: std::collections::HashMap<String, i64> = class_info
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["wnid"].as_str().unwrap().to_string(), c["cid"].as_i64().unwrap()))
        .collect();
    let read = |p: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(data.join(p)).unwrap()).unwrap()
    };
    // ImageNet val: real.json element i is ILSVRC2012_val_{i+1:08}; prediction rows follow val_original.json.
    let real = read("imagenet/real.json");
    let order = read("imagenet/val_original.json");
    let preds = npy_top1(&data.join("predictions/imagenet-val/resnet50.npy"));
    let (mut ml, mut t1, mut n) = (0u64, 0u64, 0u64);
    let (mut dog_ml, mut dog_n) = (0u64, 0u64);
    for (row, entry) in order["image_filenames"].as_array().unwrap().iter().enumerate() {
        let name = entry[0].as_str().unwrap();
        let orig = wnid_index[entry[1].as_str().unwrap()];
        let num: usize = name.trim_start_matches("ILSVRC2012_val_").trim_end_matches(".JPEG").parse().unwrap();
        let set: Vec<i64> = real[num - 1].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        if set.is_empty() {
            continue;
        }
        n += 1;
        ml += u64::from(set.contains(&preds[row]));
        t1 += u64::from(preds[row] == orig);
        if (151..=268).contains(&orig) {
            dog_n += 1;
            dog_ml += u64::from(set.contains(&preds[row]));
        }
    }
    assert_eq!(counts(&j, "resnet50", "imagenet", "multi-label", "all"), Some((ml, n)));
    assert_eq!(counts(&j, "resnet50", "imagenet", "top1", "all"), Some((t1, n)));
    assert_eq!(counts(&j, "resnet50", "imagenet", "multi-label", "group=dog"), Some((dog_ml, dog_n)));
    // Published anchor (shared/data/README.md).
    assert_eq!((ml, n), (38_855, 46_837));
    eprintln!("imagenet resnet50: multi-label {ml}/{n}, top1 {t1}/{n}, dogs multi-label {dog_ml}/{dog_n}");

    // ImageNetV2: INv2-ML keys are "<sha1>.jpeg", indices as strings; rows follow matched_frequency.json.
    let inv2 = read("imagenetv2/inv2_ml_labels.json");
    let order = read("imagenetv2/matched_frequency.json");
    let preds = npy_top1(&data.join("predictions/imagenetv2-matched-frequency/resnet50.npy"));
    let (mut ml, mut t1, mut n, mut multi) = (0u64, 0u64, 0u64, 0u64);
    for (row, entry) in order["image_filenames"].as_array().unwrap().iter().enumerate() {
        let key = format!("{}.jpeg", entry[0].as_str().unwrap());
        let orig = wnid_index[entry[1].as_str().unwrap()];
        let set: Vec<i64> =
            inv2[&key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().parse().unwrap()).collect();
        if set.is_empty() {
            continue;
        }
        n += 1;
        multi += u64::from(set.len() >= 2);
        ml += u64::from(set.contains(&preds[row]));
        t1 += u64::from(preds[row] == orig);
    }
    assert_eq!(counts(&j, "resnet50", "imagenetv2", "multi-label", "all"), Some((ml, n)));
    assert_eq!(counts(&j, "resnet50", "imagenetv2", "top1", "all"), Some((t1, n)));
    let s = j["splits"].as_array().unwrap().iter().find(|s| s["name"] == "imagenetv2").unwrap();
    assert_eq!(s["scope_images"].as_u64(), Some(n));
    assert_eq!(s["scope_multi_label"].as_u64(), Some(multi));
    eprintln!("imagenetv2 resnet50: multi-label {ml}/{n}, top1 {t1}/{n}, multi-label images {multi}/{n}");
}
