//! Output files of `eval`, and the `plot` and `report` commands, on the
//! real data: formats agree with each other, plots are real images, the
//! HTML report is self-contained, and the leaderboard is ranked.

mod common;
use common::*;

fn eval_to(dir: &std::path::Path, labels: &str, preds: &str, images: &str, out: &str) -> serde_json::Value {
    let o = dir.join(out);
    let stdout = labelscope_ok(&[
        "eval",
        "--labels",
        labels,
        "--predictions",
        preds,
        "--images",
        images,
        "--output",
        o.to_str().unwrap(),
        "--csv",
        dir.join(format!("{out}.csv")).to_str().unwrap(),
        "--markdown",
        dir.join(format!("{out}.md")).to_str().unwrap(),
        "--html",
        dir.join(format!("{out}.html")).to_str().unwrap(),
        "--plots",
        dir.join(format!("{out}-plots")).to_str().unwrap(),
        "--json",
    ]);
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&o).unwrap()).unwrap();
    assert_eq!(printed, written, "--json and --output carry the same results");
    printed
}

#[test]
fn eval_outputs_plots_and_report() {
    let Some(data) = shared_data() else { return };
    let d = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let val = eval_to(
        dir,
        &format!("{d}/imagenet/real.json"),
        &format!("{d}/predictions/imagenet-val"),
        &format!("{d}/imagenet/val_original.json"),
        "val.json",
    );
    eval_to(
        dir,
        &format!("{d}/imagenetv2/inv2_ml_labels.json"),
        &format!("{d}/predictions/imagenetv2-matched-frequency"),
        &format!("{d}/imagenetv2/matched_frequency.json"),
        "v2.json",
    );

    // Leaderboard: models ranked by top1 (subset all), best first.
    let rows = val["rows"].as_array().unwrap();
    let top1: Vec<f64> = rows
        .iter()
        .filter(|r| r["metric"] == "top1" && r["subset"] == "all")
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert_eq!(top1.len(), 8);
    assert!(top1.windows(2).all(|w| w[0] >= w[1]), "{top1:?}");
    assert_eq!(rows[0]["model"], "pnasnet5large");

    // CSV has one line per row plus the header, and the same values.
    let csv = std::fs::read_to_string(dir.join("val.json.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), rows.len() + 1);
    assert!(lines[0].starts_with("model,dataset,metric,subset,correct,total,value"));
    let first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first[0], rows[0]["model"].as_str().unwrap());
    assert_eq!(first[6].parse::<f64>().unwrap(), rows[0]["value"].as_f64().unwrap());

    let md = std::fs::read_to_string(dir.join("val.json.md")).unwrap();
    assert!(md.contains("| pnasnet5large") && md.contains("## real"), "{md}");

    // HTML: self-contained and complete.
    let html = std::fs::read_to_string(dir.join("val.json.html")).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "no external references");
    assert!(html.contains("<svg") && html.contains("resnet50") && html.contains("val_original.json"));

    // Plots: PNG and SVG for the scatter and the bucket bars.
    let plots = dir.join("val.json-plots");
    for name in ["real-scatter-orig-top1-vs-top1", "real-top1-by-labels", "real-top1-by-group"] {
        let png = std::fs::read(plots.join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}.png is a PNG");
        let svg = std::fs::read_to_string(plots.join(format!("{name}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("resnet50"), "{name}.svg");
    }

    // ImageNet vs ImageNetV2 scatter with the y = x line and the fit.
    let png = dir.join("v1-v2.png");
    labelscope_ok(&[
        "plot",
        "--results",
        dir.join("val.json").to_str().unwrap(),
        dir.join("v2.json").to_str().unwrap(),
        "--x",
        "real:orig-top1",
        "--y",
        "inv2_ml_labels:orig-top1",
        "--diagonal",
        "--fit",
        "--output",
        png.to_str().unwrap(),
    ]);
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let svg = dir.join("v1-v2.svg");
    labelscope_ok(&[
        "plot",
        "--results",
        dir.join("val.json").to_str().unwrap(),
        dir.join("v2.json").to_str().unwrap(),
        "--x",
        "real:orig-top1",
        "--y",
        "inv2_ml_labels:orig-top1",
        "--fit",
        "--output",
        svg.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    for m in ["alexnet", "pnasnet5large", "fv_64k"] {
        assert!(text.contains(m), "{m} in scatter");
    }
    // Bars per class group from the results file.
    let bars = dir.join("groups.svg");
    labelscope_ok(&[
        "plot",
        "--results",
        dir.join("val.json").to_str().unwrap(),
        "--bars",
        "real:top1",
        "--buckets",
        "group",
        "--output",
        bars.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&bars).unwrap().contains("group=dog"));
    // Report from two results files.
    let report = dir.join("both.html");
    labelscope_ok(&[
        "report",
        "--results",
        dir.join("val.json").to_str().unwrap(),
        dir.join("v2.json").to_str().unwrap(),
        "--output",
        report.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("inv2_ml_labels") && html.contains("real"));
    // A metric that does not exist is a clear error.
    let e = labelscope_err(&[
        "plot",
        "--results",
        dir.join("val.json").to_str().unwrap(),
        "--x",
        "real:nope",
        "--y",
        "real:top1",
        "--output",
        dir.join("x.svg").to_str().unwrap(),
    ]);
    assert!(e.contains("nope"), "{e}");
    assert!(!dir.join("x.svg").exists());
}
