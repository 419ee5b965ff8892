//! Output files: TSV text by hand and read back, bad TSV lines, JSON with RLE
//! masks, dense and CSR arrays read back with core's independent .npy reader,
//! and the statistics table by hand.

use labelscope_core::npy::read_npy;
use labelscope_core::rle::Rle;
use labelscope_relabel::aggregate::Label;
use labelscope_relabel::output::{
    csr_paths, format_tsv, json_image, parse_tsv, read_json, read_tsv, write_csr, write_dense_npy, write_json,
    write_tsv, LabelStats, TsvRecord,
};
use labelscope_relabel::Error;
use std::path::Path;

fn records() -> Vec<TsvRecord> {
    vec![
        TsvRecord {
            filename: "ILSVRC2012_val_00000001.JPEG".into(),
            original: Some(65),
            labels: vec![(58, 0.61019), (65, 1.0), (3, 0.61019)],
        },
        TsvRecord { filename: "b.JPEG".into(), original: None, labels: vec![] },
        TsvRecord { filename: "c d.png".into(), original: Some(0), labels: vec![(7, 0.00004)] },
    ]
}

#[test]
fn tsv_text_by_hand_and_round_trip() {
    // sorted by probability, ties (3 and 58) by index; 4 decimals; no labels -> two empty fields
    let want = "ILSVRC2012_val_00000001.JPEG\t65\t65,3,58\t1.0000,0.6102,0.6102\n\
                b.JPEG\t-1\t\t\n\
                c d.png\t0\t7\t0.0000\n";
    assert_eq!(format_tsv(&records()).unwrap(), want);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("labels.tsv");
    write_tsv(&p, &records()).unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), want);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    let back = read_tsv(&p, Some(1000)).unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(back[0].labels, vec![(65, 1.0), (3, 0.6102), (58, 0.6102)]);
    assert_eq!((back[1].original, back[1].labels.len()), (None, 0));
    assert_eq!((back[2].filename.as_str(), back[2].labels.clone()), ("c d.png", vec![(7, 0.0)]));
    // CRLF line ends and blank lines are accepted
    let crlf = parse_tsv("a\t1\t2\t0.5000\r\n\r\n", Path::new("x.tsv"), None).unwrap();
    assert_eq!(crlf[0].labels, vec![(2, 0.5)]);
}

#[test]
fn bad_tsv_lines() {
    let bad = |line: &str, classes: Option<usize>, needle: &str| {
        let text = format!("ok.jpg\t1\t1\t1.0000\n{line}\n");
        match parse_tsv(&text, Path::new("labels.tsv"), classes) {
            Err(e @ Error::Format { .. }) => {
                let s = e.to_string();
                assert!(s.contains("labels.tsv") && s.contains("line 2") && s.contains(needle), "{s}");
            }
            other => panic!("{line:?}: expected a format error, got {other:?}"),
        }
    };
    bad("a.jpg\t1\t1", None, "3 tab-separated fields");
    bad("a.jpg\t1\t1\t1.0\textra", None, "5 tab-separated fields");
    bad("a.jpg\tx\t1\t1.0", None, "original index");
    bad("a.jpg\t-2\t1\t1.0", None, "original index");
    bad("a.jpg\t1\t1,2\t1.0", None, "2 class indices but 1 probabilities");
    bad("a.jpg\t1\tone\t1.0", None, "class index 1");
    bad("a.jpg\t1\t1\tmuch", None, "probability 1");
    bad("a.jpg\t1\t1\t1.5", None, "[0, 1]");
    bad("a.jpg\t1\t1\tNaN", None, "[0, 1]");
    bad("a.jpg\t1\t1,1\t0.5,0.4", None, "twice");
    bad("a.jpg\t1\t1000\t0.5", Some(1000), "outside [0, 1000)");
    bad("a.jpg\t1000\t1\t0.5", Some(1000), "original index 1000");
    bad("\t1\t1\t0.5", None, "empty file name");
    // writer refuses names that would break the layout, and out-of-range probabilities
    let mut r = records();
    r[1].filename = "a\tb".into();
    assert!(format_tsv(&r).is_err());
    let r = vec![TsvRecord { filename: "a".into(), original: None, labels: vec![(1, 1.5)] }];
    assert!(format_tsv(&r).is_err());
    let e = read_tsv(Path::new("/nonexistent/labels.tsv"), None).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/labels.tsv"), "{e}");
}

#[test]
fn json_with_rle_masks_and_proposal_ids() {
    // 2x2 masks. m0 = only the top-left pixel: column-major [1,0,0,0] -> counts
    // [0, 1, 3] -> COCO string "013". m1 = the right column: column-major
    // [0,0,1,1] -> counts [2, 2] -> "22".
    let m0 = Rle::encode(&[true, false, false, false], 2, 2).unwrap();
    let m1 = Rle::encode(&[false, true, false, true], 2, 2).unwrap();
    let labels = vec![
        Label { class: 1, value: 1.0, proposals: vec![], original: true, global: false },
        Label { class: 0, value: 0.75, proposals: vec![0, 1], original: false, global: false },
    ];
    let img = json_image("a.jpg", Some(1), (2, 2), &[m0.clone(), m1.clone()], Some(&[10, 11]), &labels, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("labels.json");
    write_json(&p, &[img]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let im = &v["images"][0];
    assert_eq!(im["file"], "a.jpg");
    assert_eq!(im["original"], 1);
    assert_eq!(im["proposals"][0]["id"], 10);
    assert_eq!(im["proposals"][0]["mask"]["counts"], "013");
    assert_eq!(im["proposals"][1]["mask"]["counts"], "22");
    assert_eq!(im["proposals"][1]["mask"]["size"], serde_json::json!([2, 2]));
    assert_eq!(im["labels"][1]["proposals"], serde_json::json!([10, 11]));
    assert_eq!(im["labels"][1]["p"], 0.75);
    assert_eq!(im["labels"][0]["original"], true);
    assert!(im["labels"][0].get("name").is_none());
    let back = read_json(&p).unwrap();
    assert_eq!(Rle::from_coco(&back.images[0].proposals[1].mask).unwrap(), m1);
    // errors: ids of another length, a label naming a missing proposal, a mask of another size
    assert!(json_image("a.jpg", None, (2, 2), std::slice::from_ref(&m0), Some(&[1, 2]), &[], None).is_err());
    assert!(json_image("a.jpg", None, (2, 2), std::slice::from_ref(&m0), None, &labels, None).is_err());
    assert!(json_image("a.jpg", None, (3, 2), &[m0], None, &[], None).is_err());
    std::fs::write(&p, "{\"images\": [}").unwrap();
    assert!(matches!(read_json(&p), Err(Error::Format { .. })));
}

#[test]
fn json_class_names() {
    let t = labelscope_core::ClassTable::imagenet();
    let labels = vec![Label { class: 0, value: 1.0, proposals: vec![], original: true, global: false }];
    let img = json_image("a.jpg", Some(0), (1, 1), &[], None, &labels, Some(t)).unwrap();
    assert_eq!(img.labels[0].name.as_deref(), Some(t.get(0).unwrap().name()));
}

fn rows() -> Vec<Vec<(u32, f32)>> {
    vec![vec![(2, 0.5), (0, 1.0)], vec![], vec![(1, 0.25), (3, 0.0)]]
}

#[test]
fn dense_npy_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("soft.npy");
    write_dense_npy(&p, &rows(), 4).unwrap();
    let a = read_npy(&p).unwrap();
    assert_eq!(a.shape(), &[3, 4]);
    let v = a.to_f32_vec(&p, "").unwrap();
    assert_eq!(v, vec![1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25, 0.0, 0.0]);
    assert!(write_dense_npy(&p, &[vec![(4, 0.5)]], 4).is_err());
}

#[test]
fn csr_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("soft");
    let paths = write_csr(&prefix, &rows(), 4).unwrap();
    assert_eq!(paths, csr_paths(&prefix));
    assert!(paths[0].to_string_lossy().ends_with("soft.indptr.npy"));
    // row 0: classes 0, 2 (sorted); row 1: none; row 2: class 1 (the explicit 0 is left out)
    let indptr = read_npy(&paths[0]).unwrap();
    assert_eq!(indptr.to_i64_vec(&paths[0], "").unwrap(), vec![0, 2, 2, 3]);
    let indices = read_npy(&paths[1]).unwrap();
    assert_eq!(indices.to_i64_vec(&paths[1], "").unwrap(), vec![0, 2, 1]);
    let values = read_npy(&paths[2]).unwrap();
    assert_eq!(values.to_f32_vec(&paths[2], "").unwrap(), vec![1.0, 0.5, 0.25]);
    use labelscope_core::npy::DType;
    assert_eq!((indptr.dtype, indices.dtype, values.dtype), (DType::I64, DType::I32, DType::F32));
    assert!(!indptr.big_endian && !indices.big_endian && !values.big_endian);
}

#[test]
fn statistics_by_hand() {
    // label counts at tau 0.5 (>= 0.5 counts): 0, 1, 1 (0.5 counts, 0.49 not), 3, 4, 5, 0
    let rows = vec![
        vec![],
        vec![(1, 0.9)],
        vec![(1, 0.5), (2, 0.49)],
        vec![(1, 0.6), (2, 0.7), (3, 0.8)],
        vec![(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0)],
        vec![(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0), (5, 0.5)],
        vec![(0, 0.2)],
    ];
    let s = LabelStats::from_labels(&rows, 0.5);
    assert_eq!(s.counts, [2, 2, 0, 1, 2]);
    // (0 + 1 + 1 + 3 + 4 + 5 + 0) / 7 = 2
    assert_eq!((s.images, s.mean), (7, 2.0));
    assert!((s.shares()[0] - 2.0 / 7.0).abs() < 1e-15);
    let t = s.to_table();
    assert!(t.contains("0 | 2 | 28.57%") && t.contains(">=4 | 2 | 28.57%") && t.contains("2 | 0 | 0.00%"), "{t}");
    assert!(t.contains("mean | 2.0000"), "{t}");
    let e = LabelStats::from_labels(&[], 0.5);
    assert_eq!((e.mean, e.shares()), (0.0, [0.0; 5]));
}
