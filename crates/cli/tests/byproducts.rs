//! `labelscope byproducts` end to end: targets on hand-written releases
//! (CSV and aligned .npy), and synth + analyse on synthetic releases checked
//! against the independent Python reference (tests/reference/byproducts_ref.py).

mod common;

use std::path::Path;

use common::{labelscope, labelscope_err, python_reference, shared_data};

/// Runs labelscope with `args`, asserts success, returns standard error.
fn ok(args: &[&str]) -> String {
    let o = labelscope(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "labelscope {args:?} failed:\n{err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn rec(name: &str, showings: &str) -> String {
    format!("<annotation><filename>{name}</filename>{showings}</annotation>")
}

fn tgz(path: &Path, members: &[(String, String)]) {
    labelscope_byproducts::imagenet::write_archive(path, members.iter().map(|(n, b)| (n, b))).unwrap();
}

fn sel(x: f64, y: f64) -> String {
    format!("<metadata><selected>True</selected><selectedRecord><x>{x}</x><y>{y}</y></selectedRecord></metadata>")
}

#[test]
fn imagenet_targets_csv_modes_and_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    let members = vec![
        ("t/n01440764_1.xml".to_string(), rec("n01440764_1", &format!("{}{}", sel(0.2, 0.4), sel(0.6, 0.8)))),
        ("t/n01443537_2.xml".to_string(), rec("n01443537_2", "<metadata><selected>False</selected></metadata>")),
        (
            "t/n01443537_3.xml".to_string(),
            "<annotation><metadata><selected>oops</selected></metadata></annotation>".to_string(),
        ),
    ];
    let ab = dir.path().join("ab.tar.gz");
    tgz(&ab, &members);
    let out = dir.path().join("t.csv");
    let base = ["byproducts", "targets", "--imagenet-ab", s(&ab), "-o", s(&out)];

    let err = labelscope_err(&base);
    assert!(err.contains("ab.tar.gz") && err.contains("t/n01443537_3.xml"), "{err}");
    assert!(!out.exists(), "no output on failure");

    let err = ok(&[&base[..], &["--skip-bad"]].concat());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "image,class,x,y\nn01440764_1,n01440764,0.6,0.8\n");
    assert!(err.contains("1 skipped"), "{err}");

    ok(&[&base[..], &["--skip-bad", "--mode", "mean"]].concat());
    let text = std::fs::read_to_string(&out).unwrap();
    let f: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    assert!(
        (f[2].parse::<f64>().unwrap() - 0.4).abs() < 1e-12 && (f[3].parse::<f64>().unwrap() - 0.6).abs() < 1e-12,
        "{text}"
    );

    let err = labelscope_err(&[&base[..], &["--mode", "last:0"]].concat());
    assert!(err.contains("last:N"), "{err}");
}

#[test]
fn targets_as_arrays_aligned_with_an_image_list() {
    let dir = tempfile::tempdir().unwrap();
    let members = vec![
        ("t/n01440764_1.xml".to_string(), rec("n01440764_1", &sel(0.25, 0.5))),
        ("t/n01440764_2.xml".to_string(), rec("n01440764_2", "<metadata><selected>False</selected></metadata>")),
        ("t/n01440764_9.xml".to_string(), rec("n01440764_9", &sel(0.75, 0.125))),
    ];
    let ab = dir.path().join("ab.tar.gz");
    tgz(&ab, &members);
    // The list order is the training set's; _3 has no record, _9 is not listed.
    let list = dir.path().join("train.txt");
    std::fs::write(&list, "n01440764/n01440764_2.JPEG\nn01440764/n01440764_3.JPEG\nn01440764/n01440764_1.JPEG\n")
        .unwrap();
    let (csv, npy) = (dir.path().join("t.csv"), dir.path().join("t.npy"));
    let err = ok(&[
        "byproducts",
        "targets",
        "--imagenet-ab",
        s(&ab),
        "-o",
        s(&csv),
        "--npy",
        s(&npy),
        "--image-list",
        s(&list),
    ]);
    assert!(err.contains("1 targets placed") && err.contains("1 targets of images not in"), "{err}");
    let a = labelscope_core::npy::read_npy(&npy).unwrap();
    assert_eq!(a.shape, vec![3, 2]);
    let v = a.to_f32_vec(&npy, "targets").unwrap();
    assert!(v[..4].iter().all(|x| x.is_nan()), "{v:?}");
    assert_eq!(&v[4..], &[0.25, 0.5]);

    // COCO: (N, C, 2) with the class list's order.
    let js = dir.path().join("coco_ab.json");
    std::fs::write(
        &js,
        r#"[{"image_id": 5, "actionHistories": [
            {"actionType": "add", "iconType": "dog", "pointTo": {"x": 0.25, "y": 0.5}},
            {"actionType": "add", "iconType": "kite", "pointTo": {"x": 0.5, "y": 0.5}}]},
            {"image_id": 7, "actionHistories": [{"actionType": "add", "iconType": "cup", "pointTo": {"x": 0.75, "y": 0.125}}]}]"#,
    )
    .unwrap();
    let (ids, classes) = (dir.path().join("ids.txt"), dir.path().join("classes.txt"));
    std::fs::write(&ids, "7\n5\n").unwrap();
    std::fs::write(&classes, "cup\ndog\n").unwrap();
    let base = ["byproducts", "targets", "--coco-ab", s(&js), "-o", s(&csv), "--npy", s(&npy), "--image-list", s(&ids)];
    let err = labelscope_err(&base);
    assert!(err.contains("--classes"), "{err}");
    let err = ok(&[&base[..], &["--classes", s(&classes)]].concat());
    assert!(err.contains("2 targets placed") && err.contains("1 of classes not in the class list"), "{err}");
    let a = labelscope_core::npy::read_npy(&npy).unwrap();
    assert_eq!(a.shape, vec![2, 2, 2]);
    let v = a.to_f32_vec(&npy, "targets").unwrap();
    assert_eq!(&v[..2], &[0.75, 0.125]);
    assert!(v[2].is_nan() && v[3].is_nan() && v[4].is_nan() && v[5].is_nan());
    assert_eq!(&v[6..], &[0.25, 0.5]);
}

#[test]
fn coco_targets_are_last_adds_and_baseline_keeps_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let js = dir.path().join("coco_ab.json");
    std::fs::write(
        &js,
        r#"[{"image_id": 5, "actionHistories": [
            {"actionType": "add", "iconType": "dog", "pointTo": {"x": 0.1, "y": 0.2}},
            {"actionType": "add", "iconType": "dog", "pointTo": {"x": 0.25, "y": 0.5}},
            {"actionType": "add", "iconType": "cup", "pointTo": {"x": 0.75, "y": 0.125}}]}]"#,
    )
    .unwrap();
    let out = dir.path().join("c.csv");
    ok(&["byproducts", "targets", "--coco-ab", s(&js), "-o", s(&out)]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "image,class,x,y\n5,dog,0.25,0.5\n5,cup,0.75,0.125\n");
    ok(&["byproducts", "targets", "--random-baseline", "3", "--coco-ab", s(&js), "-o", s(&out)]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(!text.contains("0.25,0.5"));
}

fn csv_row(path: &Path, first: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().find(|l| l.starts_with(first)).unwrap_or_else(|| panic!("{first} in {}", path.display()));
    line.split(',').map(str::to_string).collect()
}

#[test]
fn synth_and_analyse_agree_with_the_python_reference() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (inr, inb, cor, coi, out) = (p("ab.tar.gz"), p("boxes.tsv"), p("coco.json"), p("inst.json"), p("report"));
    let files = ["--imagenet-ab", s(&inr), "--boxes", s(&inb), "--coco-ab", s(&cor), "--instances", s(&coi)];
    let synth = ["byproducts", "synth", "--images", "1500", "--classes", "12", "--seed", "5", "-q"];
    let err = ok(&[&synth[..], &files[..]].concat());
    assert!(err.contains("1500 records"), "{err}");
    let err = ok(&[&["byproducts", "analyse", "-o", s(&out), "-q"][..], &files[..]].concat());
    assert!(err.contains("1 workers flagged"), "{err}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for h in ["ImageNet-AB: click localisation", "ImageNet-AB: annotators", "COCO-AB: action sequences", "W-CENTRE"] {
        assert!(html.contains(h), "{h} missing from report.html");
    }
    assert!(!html.contains("src=\"http"), "self-contained");
    for f in ["imagenet_sigma_curve", "imagenet_box_heatmap", "coco_recall_vs_size", "coco_action_sequences"] {
        assert!(std::fs::read_to_string(out.join(format!("{f}.svg"))).unwrap().starts_with("<svg"));
        assert!(std::fs::read(out.join(format!("{f}.png"))).unwrap().starts_with(b"\x89PNG"));
    }
    let flagged = csv_row(&out.join("imagenet_workers.csv"), "W-CENTRE,");
    assert_eq!(flagged.last().unwrap(), "uninformative");

    let Some(data) = shared_data() else { return };
    let class_info = data.join("imagenet/class_info.json");
    let Some(py) = python_reference("byproducts_ref.py", &["imagenet", s(&inr), s(&inb), s(&class_info)]) else {
        return;
    };
    let final_click = csv_row(&out.join("imagenet_click_accuracy.csv"), "final click,");
    let centre = csv_row(&out.join("imagenet_click_accuracy.csv"), "centre click,");
    let fails = csv_row(&out.join("imagenet_click_accuracy.csv"), "final click where");
    assert_eq!(py["records"], 1500);
    assert_eq!(final_click[1].parse::<u64>().unwrap(), py["scored"].as_u64().unwrap());
    assert_eq!(final_click[2].parse::<u64>().unwrap(), py["hits"].as_u64().unwrap());
    assert_eq!(centre[2].parse::<u64>().unwrap(), py["centre_hits"].as_u64().unwrap());
    assert_eq!(fails[1].parse::<u64>().unwrap(), py["centre_fails"].as_u64().unwrap());
    assert_eq!(fails[2].parse::<u64>().unwrap(), py["hits_where_centre_fails"].as_u64().unwrap());
    let with_click = csv_row(&out.join("imagenet_coverage.csv"), "with a final click");
    assert_eq!(with_click[1].parse::<u64>().unwrap(), py["with_click"].as_u64().unwrap());

    let Some(py) = python_reference("byproducts_ref.py", &["coco", s(&cor), s(&coi)]) else { return };
    let boxes = csv_row(&out.join("coco_summary.csv"), "icon precision (boxes)");
    let masks = csv_row(&out.join("coco_summary.csv"), "icon precision (masks)");
    let icons = py["icons"].as_u64().unwrap();
    assert_eq!(boxes[1].parse::<u64>().unwrap(), icons);
    let hits = (boxes[2].parse::<f64>().unwrap() * icons as f64).round() as u64;
    assert_eq!(hits, py["box_hits"].as_u64().unwrap());
    if let Some(m) = py["mask_hits"].as_u64() {
        // pycocotools rasterises polygons; labelscope tests points against them exactly.
        let ours = masks[2].parse::<f64>().unwrap();
        assert!((ours - m as f64 / icons as f64).abs() < 0.01, "{ours} vs {m}/{icons}");
    }
}

#[test]
fn analyse_reports_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (inr, inb, out) = (p("ab.tar.gz"), p("boxes.tsv"), p("report"));
    ok(&["byproducts", "synth", "--imagenet-ab", s(&inr), "--boxes", s(&inb), "--images", "300", "-q"]);
    let err = labelscope_err(&[
        "byproducts",
        "analyse",
        "--imagenet-ab",
        s(&inr),
        "--boxes",
        s(&p("none.tsv")),
        "-o",
        s(&out),
    ]);
    assert!(err.contains("none.tsv"), "{err}");
    // A truncated release: an error naming the archive and the last good member, even with --skip-bad.
    let bytes = std::fs::read(&inr).unwrap();
    let cut = p("cut.tar.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = labelscope_err(&[
        "byproducts",
        "analyse",
        "--imagenet-ab",
        s(&cut),
        "--boxes",
        s(&inb),
        "-o",
        s(&out),
        "--skip-bad",
        "-q",
    ]);
    assert!(err.contains("cut.tar.gz") && (err.contains("member") || err.contains("truncated")), "{err}");
    assert!(!out.join("report.html").exists(), "no report on failure");
    // A box file with a bad line names it.
    std::fs::write(&inb, "a.JPEG\t0\t1\t2\n").unwrap();
    let err = labelscope_err(&["byproducts", "analyse", "--imagenet-ab", s(&inr), "--boxes", s(&inb), "-o", s(&out)]);
    assert!(err.contains("boxes.tsv") && err.contains("line 1"), "{err}");
    let err = labelscope_err(&[
        "byproducts",
        "synth",
        "--coco-ab",
        s(&p("c.json")),
        "--instances",
        s(&p("i.json")),
        "--classes",
        "81",
    ]);
    assert!(err.contains("classes <= 80"), "{err}");
}
