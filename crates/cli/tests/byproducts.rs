//! `labelscope byproducts targets` end to end on hand-written releases.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_labelscope"))
}

fn rec(name: &str, showings: &str) -> String {
    format!("<annotation><filename>{name}</filename>{showings}</annotation>")
}

fn tgz(path: &std::path::Path, members: &[(String, String)]) {
    let f = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    {
        let mut b = tar::Builder::new(&mut gz);
        for (name, body) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        b.finish().unwrap();
    }
    gz.finish().unwrap();
}

#[test]
fn imagenet_targets_csv_modes_and_skip_bad() {
    let dir = tempfile::tempdir().unwrap();
    let sel = |x: f64, y: f64| {
        format!("<metadata><selected>True</selected><selectedRecord><x>{x}</x><y>{y}</y></selectedRecord></metadata>")
    };
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

    let o = bin().args(["byproducts", "targets", "--imagenet-ab"]).arg(&ab).arg("-o").arg(&out).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ab.tar.gz") && err.contains("t/n01443537_3.xml"), "{err}");
    assert!(!out.exists(), "no output on failure");

    let o = bin()
        .args(["byproducts", "targets", "--skip-bad", "--imagenet-ab"])
        .arg(&ab)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "image,class,x,y\nn01440764_1,n01440764,0.6,0.8\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 skipped"));

    let o = bin()
        .args(["byproducts", "targets", "--skip-bad", "--mode", "mean", "--imagenet-ab"])
        .arg(&ab)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    let f: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    assert!(
        (f[2].parse::<f64>().unwrap() - 0.4).abs() < 1e-12 && (f[3].parse::<f64>().unwrap() - 0.6).abs() < 1e-12,
        "{text}"
    );

    let o = bin()
        .args(["byproducts", "targets", "--mode", "last:0", "--imagenet-ab"])
        .arg(&ab)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("last:N"));
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
    let o = bin().args(["byproducts", "targets", "--coco-ab"]).arg(&js).arg("-o").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "image,class,x,y\n5,dog,0.25,0.5\n5,cup,0.75,0.125\n");
    let o = bin()
        .args(["byproducts", "targets", "--random-baseline", "3", "--coco-ab"])
        .arg(&js)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(!text.contains("0.25,0.5"));
}
