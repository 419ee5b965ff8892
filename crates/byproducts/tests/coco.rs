//! COCO-AB streaming reader: hand-written records, last-add targets, bad and truncated input.

use labelscope_byproducts::coco::read_array;
use labelscope_byproducts::Point;
use labelscope_byproducts::ReadOptions;

const SKIP: ReadOptions = ReadOptions { skip_bad: true, threads: 0, progress: None };

const GOOD: &str = r#"[
 {"image_id": 9, "originalImageWidth": 640, "originalImageHeight": 480, "timeSpent": 5120,
  "categoryHistories": [{"ignored": [1, 2, {"deep": true}]}],
  "mouseTracking": [[1, 2, 3]],
  "actionHistories": [
   {"actionType": "add", "iconType": "dog", "pointTo": {"x": 0.1, "y": 0.2}},
   {"actionType": "add", "iconType": "cat", "pointTo": {"x": 0.5, "y": 0.5}},
   {"actionType": "move", "iconType": "dog", "pointTo": {"x": 0.3, "y": 0.3}},
   {"actionType": "remove", "iconType": "dog"},
   {"actionType": "add", "iconType": "dog", "pointTo": {"x": 0.7, "y": 0.8}}]},
 {"image_id": 10, "actionHistories": []}
]"#;

#[test]
fn records_stream_and_last_add_points_are_hand_computed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("coco_ab.json");
    std::fs::write(&p, GOOD).unwrap();
    let mut recs = Vec::new();
    let s = read_array(&p, &ReadOptions::default(), |r| recs.push(r)).unwrap();
    assert_eq!((s.records, s.skipped), (2, 0));
    assert_eq!(recs[0].image_id, 9);
    assert_eq!(recs[0].width, Some(640.0));
    assert_eq!(recs[0].actions.len(), 5);
    assert_eq!(
        recs[0].last_add_points(),
        vec![("dog".to_string(), Point { x: 0.7, y: 0.8 }), ("cat".to_string(), Point { x: 0.5, y: 0.5 })]
    );
    assert!(recs[1].last_add_points().is_empty());
}

#[test]
fn bad_records_and_broken_json_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.json");
    std::fs::write(&p, r#"[{"image_id": 1}, {"image_id": "x"}, {"image_id": 3}]"#).unwrap();
    let e = read_array(&p, &ReadOptions::default(), |_| {}).unwrap_err().to_string();
    assert!(e.contains("bad.json") && e.contains("record 1 (0-based)"), "{e}");
    let mut ids = Vec::new();
    let s = read_array(&p, &SKIP, |r| ids.push(r.image_id)).unwrap();
    assert_eq!(ids, [1, 3]);
    assert_eq!(s.skipped, 1);

    let t = dir.path().join("cut.json");
    std::fs::write(&t, &GOOD[..GOOD.len() / 2]).unwrap();
    let e = read_array(&t, &SKIP, |_| {}).unwrap_err().to_string();
    assert!(e.contains("cut.json") && e.contains("line "), "{e}");
    let n = dir.path().join("notarray.json");
    std::fs::write(&n, r#"{"image_id": 1}"#).unwrap();
    assert!(read_array(&n, &SKIP, |_| {}).is_err());
}
