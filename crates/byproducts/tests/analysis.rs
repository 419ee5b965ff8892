//! The ImageNet-AB and COCO-AB analyses on hand-written fixtures whose every
//! statistic is computed by hand in the comments, and the ground-truth readers.

use labelscope_byproducts::analysis::{AnalysisOptions, ImagenetAnalysis, Rate};
use labelscope_byproducts::coco::CocoRecord;
use labelscope_byproducts::coco_analysis::CocoAnalysis;
use labelscope_byproducts::imagenet::parse_record;
use labelscope_byproducts::truth::{
    parse_ilsvrc_xml, read_boxes_tsv, read_coco_instances, BoxTruth, CocoObject, CocoTruth, Mask, TruthBox,
};
use labelscope_byproducts::Point;
use labelscope_core::rle::Rle;

/// (key, images, selected, (accuracy hits, total), (centre hits, total), median time, flagged).
type GroupRow<'a> = (&'a str, u64, u64, (u64, u64), (u64, u64), f64, bool);

fn group_rows(g: &[labelscope_byproducts::analysis::GroupStats]) -> Vec<GroupRow<'_>> {
    g.iter()
        .map(|g| {
            (
                g.key.as_str(),
                g.images,
                g.selected,
                (g.accuracy.hits, g.accuracy.total),
                (g.centre.hits, g.centre.total),
                g.median_time_ms,
                g.flagged,
            )
        })
        .collect()
}

fn near(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

fn rate(r: &Rate, hits: u64, total: u64) {
    assert_eq!((r.hits, r.total), (hits, total), "{r:?}");
}

fn showing(
    worker: &str,
    hit: &str,
    page: u32,
    selected: bool,
    click: Option<(f64, f64)>,
    time: f64,
    trace: &[(f64, f64, f64)],
) -> String {
    let mut s = format!(
        "<metadata><workerId>{worker}</workerId><hitId>{hit}</hitId><page>{page}</page><selected>{}</selected>",
        if selected { "True" } else { "False" }
    );
    if let Some((x, y)) = click {
        s += &format!("<selectedRecord><x>{x}</x><y>{y}</y></selectedRecord>");
    }
    s += &format!("<estimateTime>{time}</estimateTime>");
    for (t, x, y) in trace {
        s += &format!("<mouseTracking><time>{t}</time><x>{x}</x><y>{y}</y></mouseTracking>");
    }
    s + "</metadata>"
}

fn record(key: &str, size: Option<(u32, u32)>, showings: &[String]) -> String {
    let size = size.map(|(w, h)| format!("<size><width>{w}</width><height>{h}</height></size>")).unwrap_or_default();
    format!("<annotation><filename>{key}.JPEG</filename>{size}{}</annotation>", showings.concat())
}

fn tb(wnid: &str, rect: [f64; 4], size: (u32, u32)) -> TruthBox {
    TruthBox { wnid: wnid.into(), rect, size: Some(size) }
}

#[test]
fn imagenet_analysis_is_hand_computed() {
    let mut truth = BoxTruth::new();
    // A: the class box [0.1, 0.1, 0.45, 0.45] (centre outside); a box of another class is ignored.
    truth.insert(
        "n01440764_1",
        vec![
            tb("n01440764", [10.0, 10.0, 45.0, 45.0], (100, 100)),
            tb("n01443537", [50.0, 50.0, 100.0, 100.0], (100, 100)),
        ],
    );
    // B: [0.5, 0, 1, 1] (the centre is on its left edge, which counts as inside).
    truth.insert("n01440764_2", vec![tb("n01440764", [100.0, 0.0, 200.0, 100.0], (200, 100))]);
    // D: a box, but D is never shown.
    truth.insert("n01440764_3", vec![tb("n01440764", [0.0, 0.0, 10.0, 10.0], (10, 10))]);
    let recs = [
        record(
            "n01440764_1",
            Some((100, 100)),
            &[
                // Click at 0 + 200 ms; the sample at 300 ms comes after the click.
                showing(
                    "W1",
                    "H1",
                    1,
                    true,
                    Some((0.3, 0.2)),
                    200.0,
                    &[(0.0, 0.9, 0.9), (100.0, 0.6, 0.6), (200.0, 0.3, 0.2), (300.0, 0.8, 0.1)],
                ),
                showing("W2", "H2", 1, false, None, 50.0, &[]),
            ],
        ),
        record(
            "n01440764_2",
            Some((200, 100)),
            &[
                showing("W3", "H3", 1, true, Some((0.5, 0.5)), 100.0, &[]),
                showing("W3", "H3", 2, true, Some((0.75, 0.25)), 300.0, &[]),
            ],
        ),
        record("n01443537_5", None, &[showing("W1", "H1", 2, true, Some((0.52, 0.49)), 400.0, &[])]),
        record("n01440764_3", Some((10, 10)), &[]),
    ];
    let opts = AnalysisOptions { min_clicks: 2, flag_share: 0.5, sigmas: vec![0.0], ..Default::default() };
    let mut an = ImagenetAnalysis::new(&truth, opts);
    for (i, x) in recs.iter().enumerate() {
        an.add(&parse_record(x, &format!("r{i}.xml")).unwrap());
    }
    let r = an.finish().unwrap();

    let c = r.coverage;
    assert_eq!((c.records, c.showings, c.selected_showings, c.shown, c.reselected), (4, 5, 4, 3, 3));
    assert_eq!((c.with_click, c.with_trace, c.with_any, c.with_boxes), (3, 1, 3, 3));
    // Scored: A (hit, centre fails) and B (hit, centre inside); C has no boxes.
    rate(&r.click, 2, 2);
    rate(&r.centre, 1, 2);
    rate(&r.click_where_centre_fails, 1, 1);
    assert_eq!(r.sigma_curve, vec![(0.0, 0.5)]);
    // Trace of A up to the click: (0.9, 0.9) miss, (0.6, 0.6) miss, (0.3, 0.2) hit.
    rate(&r.last_n[0].1, 1, 1);
    rate(&r.last_n[1].1, 0, 1);
    rate(&r.last_n[2].1, 0, 1);
    rate(&r.last_n[3].1, 0, 0);
    // Trace quantile q picks sample round(2q): q <= 0.2 → 0, 0.3..0.7 → 1, q >= 0.8 → 2.
    for (k, (q, rt)) in r.trace_quantile.iter().enumerate() {
        near(*q, k as f64 / 10.0);
        rate(rt, (k >= 8) as u64, 1);
    }
    // Time quantile: the last sample at or before 200q ms: only q = 1 reaches the click sample.
    for (k, (_, rt)) in r.time_quantile.iter().enumerate() {
        rate(rt, (k == 10) as u64, 1);
    }
    // Box-normalised: A (0.2/0.35, 0.1/0.35), B (0.5, 0.25).
    let (u, v) = r.box_mean.0.mean();
    near(u, (0.2 / 0.35 + 0.5) / 2.0);
    near(v, (0.1 / 0.35 + 0.25) / 2.0);
    assert_eq!(r.box_mean.1.n, 2);
    assert_eq!(r.box_hist.total(), 2);
    // Bins of 0.1 from -0.5: A u = 0.571 → 10, v = 0.286 → 7; B u = 0.5 → 10, v = 0.25 → 7.
    assert_eq!(r.box_hist.counts[7 * 20 + 10], 2);
    assert_eq!(r.centre_heat.total(), 3);
    assert_eq!(r.click_heat.total(), 3);

    let w = group_rows(&r.workers);
    assert_eq!(
        w,
        vec![
            // W1: A (hit, far from the centre) and C (unscored, near the centre); pages H1/1 200 ms, H1/2 400 ms.
            ("W1", 2, 2, (1, 1), (1, 2), 300.0, true),
            ("W2", 1, 0, (0, 0), (0, 0), 50.0, false),
            // W3: (0.5, 0.5) on the edge (hit, centre) and (0.75, 0.25) (hit); pages 100 and 300 ms.
            ("W3", 2, 2, (2, 2), (1, 2), 200.0, true),
        ]
    );
    let hits: Vec<(&str, u64, u64)> = r.hits.iter().map(|g| (g.key.as_str(), g.images, g.selected)).collect();
    assert_eq!(hits, vec![("H1", 2, 2), ("H2", 1, 0), ("H3", 2, 2)]);
    let pages: Vec<(&str, f64)> = r.pages.iter().map(|g| (g.key.as_str(), g.median_time_ms)).collect();
    assert_eq!(pages, vec![("H1/1", 200.0), ("H1/2", 400.0), ("H2/1", 50.0), ("H3/1", 100.0), ("H3/2", 300.0)]);
}

fn poly(pts: &[(f64, f64)]) -> Mask {
    Mask::Polygons(vec![pts.iter().map(|&(x, y)| Point { x, y }).collect()])
}

fn obj(category: &str, bbox: [f64; 4], area: f64, mask: Mask) -> CocoObject {
    CocoObject { category: category.into(), bbox, area, mask }
}

#[test]
fn coco_analysis_is_hand_computed() {
    let mut t = CocoTruth::default();
    for id in 1..=3 {
        t.sizes.insert(id, (100.0, 100.0));
    }
    // 10 × 10 cat mask: columns 5..9, rows 0..3 (column-major runs).
    let cat = Rle::from_uncompressed(vec![50, 4, 6, 4, 6, 4, 6, 4, 6, 4, 6], 10, 10).unwrap();
    t.objects.insert(
        1,
        vec![
            obj("dog", [0.1, 0.1, 0.5, 0.5], 0.08, poly(&[(0.1, 0.1), (0.5, 0.1), (0.1, 0.5)])),
            obj("dog", [0.6, 0.6, 0.9, 0.9], 0.09, poly(&[(0.6, 0.6), (0.9, 0.6), (0.9, 0.9), (0.6, 0.9)])),
            obj("cat", [0.5, 0.0, 1.0, 0.4], 0.2, Mask::Rle(cat)),
        ],
    );
    t.objects.insert(
        2,
        vec![obj("dog", [0.0, 0.0, 1.0, 1.0], 1.0, poly(&[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]))],
    );
    let recs = r#"[
      {"image_id": 1, "workerId": "A", "timeSpent": 1000, "actionHistories": [
        {"actionType": "add", "iconType": "dog", "pointTo": {"x": 0.2, "y": 0.2}},
        {"actionType": "move", "iconType": "dog", "pointTo": {"x": 0.3, "y": 0.3}},
        {"actionType": "add", "iconType": "cat", "pointTo": {"x": 0.7, "y": 0.2}},
        {"actionType": "remove", "iconType": "cat"},
        {"actionType": "add", "iconType": "cat", "pointTo": {"x": 0.8, "y": 0.35}},
        {"actionType": "add", "iconType": "person", "pointTo": {"x": 0.5, "y": 0.5}}]},
      {"image_id": 2, "workerId": "B", "timeSpent": 3000, "actionHistories": [
        {"actionType": "add", "iconType": "dog", "pointTo": {"x": 0.5, "y": 0.5}}]},
      {"image_id": 3, "workerId": "A", "timeSpent": 2000, "actionHistories": []},
      {"image_id": 4, "workerId": "B", "timeSpent": 5000, "actionHistories": [
        {"actionType": "add", "iconType": "dog", "pointTo": {"x": 0.1, "y": 0.1}}]}
    ]"#;
    let recs: Vec<CocoRecord> = serde_json::from_str(recs).unwrap();
    let opts = AnalysisOptions { min_clicks: 1, flag_share: 0.9, ..Default::default() };
    let mut an = CocoAnalysis::new(&t, opts);
    for r in &recs {
        an.add(r);
    }
    let r = an.finish();
    assert_eq!((r.records, r.with_actions, r.matched), (4, 3, 3));
    // Image 1: dog (0.2, 0.2) inside the triangle; cat (0.8, 0.35) → pixel (8, 3), on; person absent. Image 2: dog on.
    rate(&r.precision, 3, 4);
    rate(&r.box_precision, 3, 4);
    type ClassRow<'a> = (&'a str, (u64, u64), u64, (u64, u64));
    let classes: Vec<ClassRow> = r
        .classes
        .iter()
        .map(|c| (c.class.as_str(), (c.recall.hits, c.recall.total), c.objects, (c.precision.hits, c.precision.total)))
        .collect();
    assert_eq!(classes, vec![("cat", (1, 1), 1, (1, 1)), ("dog", (2, 2), 3, (2, 2)), ("person", (0, 0), 0, (0, 1))]);
    near(r.classes[1].mean_size, (0.08 + 0.09 + 1.0) / 3.0);
    near(r.classes[0].mean_size, 0.2);
    assert!(r.classes[2].mean_size.is_nan());
    // Both classes with objects have recall 1: the fit is flat and exact.
    let (a, b, r2) = r.recall_fit.unwrap();
    near(a, 1.0);
    near(b, 0.0);
    near(r2, 1.0);
    assert_eq!(
        r.sequences,
        vec![("add".to_string(), 3), ("add-move".to_string(), 1), ("add-remove-add".to_string(), 1)]
    );
    // Box-normalised: dog (0.25, 0.25), cat (0.6, 0.875), image-2 dog (0.5, 0.5).
    let (u, v) = r.box_mean.0.mean();
    near(u, (0.25 + 0.6 + 0.5) / 3.0);
    near(v, (0.25 + 0.875 + 0.5) / 3.0);
    assert_eq!(r.icon_heat.total(), 5);
    assert_eq!(r.centre_heat.total(), 4);
    let w = group_rows(&r.workers);
    assert_eq!(w, vec![("A", 2, 3, (2, 3), (1, 3), 1500.0, false), ("B", 2, 2, (1, 1), (1, 1), 4000.0, true)]);
}

#[test]
fn truth_readers_parse_and_report_positions() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("boxes.tsv");
    std::fs::write(&p, "a/b/n01440764_1.JPEG\t0\t1\t2\t30\t40\n\nx.JPEG\t1\t0\t0\t5\t5\n").unwrap();
    let t = read_boxes_tsv(&p).unwrap();
    assert_eq!(t["n01440764_1"], vec![TruthBox { wnid: "n01440764".into(), rect: [1.0, 2.0, 30.0, 40.0], size: None }]);
    assert_eq!(&*t["x"][0].wnid, "n01443537");
    for (body, want) in [
        ("a.JPEG\t0\t1\t2\t3\n", "line 1: 5 fields"),
        ("a.JPEG\t0\t1\t2\t3\t4\nb.JPEG\t1000\t1\t2\t3\t4\n", "line 2: class index 1000"),
        ("a.JPEG\tx\t1\t2\t3\t4\n", "line 1: class index \"x\""),
        ("a.JPEG\t0\t1\t2\tnan\t4\n", "line 1: field 5"),
        ("a.JPEG\t0\t5\t2\t3\t4\n", "line 1: box"),
    ] {
        std::fs::write(&p, body).unwrap();
        let e = read_boxes_tsv(&p).unwrap_err().to_string();
        assert!(e.contains("boxes.tsv") && e.contains(want), "{e} (wanted {want})");
    }

    let xml = "<annotation><filename>n01440764_7</filename><size><width>200</width><height>100</height></size>\
               <object><name>n01440764</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>\
               </annotation>";
    let (key, boxes) = parse_ilsvrc_xml(xml, "x.xml").unwrap();
    assert_eq!(key, "n01440764_7");
    assert_eq!(
        boxes,
        vec![TruthBox { wnid: "n01440764".into(), rect: [10.0, 20.0, 30.0, 40.0], size: Some((200, 100)) }]
    );
    let e = parse_ilsvrc_xml(
        "<annotation><object><name>n</name><bndbox><xmin>a</xmin></bndbox></object></annotation>",
        "y.xml",
    )
    .unwrap_err();
    assert!(e.contains("y.xml") && e.contains("<xmin>"), "{e}");

    let ip = dir.path().join("instances.json");
    std::fs::write(
        &ip,
        r#"{"images": [{"id": 5, "width": 200, "height": 100}],
            "categories": [{"id": 18, "name": "dog"}],
            "annotations": [
              {"image_id": 5, "category_id": 18, "bbox": [20, 10, 100, 50], "area": 2500, "segmentation": [[20, 10, 120, 10, 20, 60]]},
              {"image_id": 5, "category_id": 18, "bbox": [0, 0, 10, 10], "iscrowd": 1, "segmentation": {"counts": [0, 2], "size": [1, 2]}},
              {"image_id": 5, "category_id": 18, "bbox": [0, 0, 2, 1], "segmentation": {"counts": [1, 1], "size": [1, 2]}}]}"#,
    )
    .unwrap();
    let t = read_coco_instances(&ip).unwrap();
    let o = &t.objects[&5];
    assert_eq!(o.len(), 2, "the crowd annotation is left out");
    assert_eq!(o[0].bbox, [0.1, 0.1, 0.6, 0.6]);
    near(o[0].area, 2500.0 / 20000.0);
    assert!(o[0].mask.contains(Point { x: 0.2, y: 0.2 }) && !o[0].mask.contains(Point { x: 0.55, y: 0.55 }));
    assert!(!o[1].mask.contains(Point { x: 0.2, y: 0.5 }) && o[1].mask.contains(Point { x: 0.8, y: 0.5 }));
    std::fs::write(
        &ip,
        r#"{"images": [], "categories": [], "annotations": [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]}]}"#,
    )
    .unwrap();
    let e = read_coco_instances(&ip).unwrap_err().to_string();
    assert!(e.contains("annotations[0]") && e.contains("image_id 9"), "{e}");
}
