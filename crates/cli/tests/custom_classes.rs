//! A user-supplied class list replaces the ImageNet table.

mod common;
use common::*;

#[test]
fn custom_class_list_with_csv_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    std::fs::write(p("classes.txt"), "# three classes\ncat\tcat, kitty\ndog\nbird\n").unwrap();
    std::fs::write(p("labels.csv"), "image,labels\na.png,cat\nb.png,dog;bird\nc.png,2\n").unwrap();
    // CSV scores with an image-name column: the names give the row order, no --images needed.
    std::fs::write(p("model.csv"), "image,cat,dog,bird\nc.png,0.1,0.2,0.7\na.png,0.9,0.05,0.05\nb.png,0.2,0.3,0.5\n")
        .unwrap();
    let out = labelscope_ok(&[
        "eval",
        "--classes",
        &p("classes.txt"),
        "--labels",
        &p("labels.csv"),
        "--predictions",
        &p("model.csv"),
        "--k",
        "1,2",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    // By hand: c -> bird (2) correct; a -> cat correct; b -> bird in {dog, bird} correct.
    assert_eq!(row_counts(&json, "model", "top1", "all"), Some((3, 3)));
    assert_eq!(row_counts(&json, "model", "top2", "all"), Some((3, 3)));
    // class-wise AP by hand: cat: positive a has the top score -> 1; dog: positive b (0.3) is
    // ranked first among 0.2, 0.05, 0.3 -> 1; bird: positives b (0.5), c (0.7) are the two
    // highest -> 1.
    let map = json["rows"].as_array().unwrap().iter().find(|r| r["metric"] == "map-classes").unwrap();
    assert_eq!(map["value"].as_f64(), Some(1.0));
    // A class name outside the list is an error naming the line.
    std::fs::write(p("bad.csv"), "a.png,cat\nb.png,zebra\n").unwrap();
    let e = labelscope_err(&[
        "eval",
        "--classes",
        &p("classes.txt"),
        "--labels",
        &p("bad.csv"),
        "--predictions",
        &p("model.csv"),
    ]);
    assert!(e.contains("bad.csv: line 2, column 2") && e.contains("zebra"), "{e}");
}
