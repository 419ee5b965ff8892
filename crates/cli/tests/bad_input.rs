//! Bad input: each case gives a clear error naming the file and the
//! position, exits with status 1, prints nothing on standard output and
//! leaves no output file behind.

mod common;
use common::*;
use std::path::Path;

/// Writes a .npy file by hand (independent of the library's reader).
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// Three images a, b, c with labels, an image list, and a valid top-2 file.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { dir };
        f.write("labels.json", r#"{"a.jpg": [1, 2], "b.jpg": [3], "c.jpg": []}"#);
        f.write("images.txt", "a.jpg\nb.jpg\nc.jpg\n");
        write_npy(&f.path("good.npy"), "<i8", &[3, 2], &i64_bytes(&[1, 5, 4, 3, 0, 1]));
        f
    }
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
    fn p(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }
    fn eval(&self, labels: &str, preds: &str, images: &str) -> Vec<String> {
        vec![
            "eval".into(),
            "--labels".into(),
            self.p(labels),
            "--predictions".into(),
            self.p(preds),
            "--images".into(),
            self.p(images),
            "--output".into(),
            self.p("out.json"),
            "--json".into(),
        ]
    }
    fn err(&self, args: Vec<String>) -> String {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = labelscope_err(&a);
        assert!(!self.path("out.json").exists(), "no output file on failure");
        e
    }
}

#[test]
fn the_fixture_itself_evaluates() {
    let f = Fixture::new();
    let args = f.eval("labels.json", "good.npy", "images.txt");
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = labelscope_ok(&a);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    // a: top1 = 1 in {1,2} -> hit; b: top1 = 4 not in {3}, top2 hits; c: empty set, left out.
    assert_eq!(row_counts(&json, "good", "top1", "all"), Some((1, 2)));
    assert!(f.path("out.json").exists());
}

#[test]
fn malformed_json_labels() {
    let f = Fixture::new();
    f.write("bad.json", "{\"a.jpg\": [1, 2],\n \"b.jpg\": [3 }");
    let e = f.err(f.eval("bad.json", "good.npy", "images.txt"));
    assert!(e.contains("bad.json") && e.contains("line 2"), "{e}");
}

#[test]
fn malformed_csv_labels() {
    let f = Fixture::new();
    f.write("bad.csv", "a.jpg,1\nb.jpg,3\nc.jpg,zebra!\n");
    let e = f.err(f.eval("bad.csv", "good.npy", "images.txt"));
    assert!(e.contains("bad.csv") && e.contains("line 3, column 2") && e.contains("zebra!"), "{e}");
}

#[test]
fn class_index_out_of_range_in_labels_and_predictions() {
    let f = Fixture::new();
    f.write("big.json", r#"{"a.jpg": [1], "b.jpg": [1000], "c.jpg": []}"#);
    let e = f.err(f.eval("big.json", "good.npy", "images.txt"));
    assert!(e.contains("big.json") && e.contains("key \"b.jpg\"") && e.contains("1000"), "{e}");
    write_npy(&f.path("oob.npy"), "<i8", &[3, 2], &i64_bytes(&[1, 5, 4, 3000, 0, 1]));
    let e = f.err(f.eval("labels.json", "oob.npy", "images.txt"));
    assert!(e.contains("oob.npy") && e.contains("3000") && e.contains("row"), "{e}");
}

#[test]
fn unknown_wnid() {
    let f = Fixture::new();
    f.write("w.json", r#"{"a.jpg": ["n01440764"], "b.jpg": ["n99999999"], "c.jpg": []}"#);
    let e = f.err(f.eval("w.json", "good.npy", "images.txt"));
    assert!(e.contains("w.json") && e.contains("n99999999") && e.contains("b.jpg"), "{e}");
}

#[test]
fn duplicate_image_ids() {
    let f = Fixture::new();
    f.write("dup.txt", "a.jpg\nb.jpg\na.JPG\n");
    let e = f.err(f.eval("labels.json", "good.npy", "dup.txt"));
    assert!(e.contains("dup.txt") && e.contains("entry 3") && e.contains("twice"), "{e}");
    f.write("dup.csv", "a.jpg,1\nb.jpg,2\n");
    f.write("dupjson.json", r#"{"a.jpg": [1], "a.png": [2], "b.jpg": [3]}"#);
    let e = f.err(f.eval("dupjson.json", "good.npy", "images.txt"));
    assert!(e.contains("dupjson.json") && e.contains("twice"), "{e}");
}

#[test]
fn missing_image_ids_between_labels_and_predictions() {
    let f = Fixture::new();
    f.write("other.txt", "a.jpg\nx.jpg\ny.jpg\n");
    let e = f.err(f.eval("labels.json", "good.npy", "other.txt"));
    assert!(e.contains("2 of 3") && e.contains("\"b.jpg\"") && e.contains("--allow-partial"), "{e}");
    f.write("disjoint.txt", "x.jpg\ny.jpg\nz.jpg\n");
    let e = f.err(f.eval("labels.json", "good.npy", "disjoint.txt"));
    assert!(e.contains("share no image id") && e.contains("disjoint.txt"), "{e}");
    // With --allow-partial the shared image is evaluated.
    let mut args = f.eval("labels.json", "good.npy", "other.txt");
    args.push("--allow-partial".into());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let json: serde_json::Value = serde_json::from_str(&labelscope_ok(&a)).unwrap();
    assert_eq!(row_counts(&json, "good", "top1", "all"), Some((1, 1)));
}

#[test]
fn row_count_differs_from_image_list() {
    let f = Fixture::new();
    write_npy(&f.path("short.npy"), "<i8", &[2, 2], &i64_bytes(&[1, 5, 4, 3]));
    let e = f.err(f.eval("labels.json", "short.npy", "images.txt"));
    assert!(e.contains("short.npy") && e.contains("2 prediction rows") && e.contains("3 images"), "{e}");
}

#[test]
fn nan_and_inf_scores() {
    let f = Fixture::new();
    let mut s = vec![0.1f32; 3 * 1000];
    s[1000 + 7] = f32::NAN;
    s[2000 + 9] = f32::INFINITY;
    write_npy(&f.path("nan.npy"), "<f4", &[3, 1000], &f32_bytes(&s));
    let e = f.err(f.eval("labels.json", "nan.npy", "images.txt"));
    assert!(e.contains("nan.npy") && e.contains("row 1") && e.contains("column 7"), "{e}");
}

#[test]
fn wrong_dtype_and_shape() {
    let f = Fixture::new();
    write_npy(&f.path("obj.npy"), "|O", &[3, 2], &[0u8; 48]);
    let e = f.err(f.eval("labels.json", "obj.npy", "images.txt"));
    assert!(e.contains("obj.npy"), "{e}");
    // scores with the wrong number of classes
    write_npy(&f.path("narrow.npy"), "<f4", &[3, 10], &f32_bytes(&[0.5; 30]));
    let e = f.err(f.eval("labels.json", "narrow.npy", "images.txt"));
    assert!(e.contains("narrow.npy") && e.contains("10") && e.contains("1000"), "{e}");
    // truncated data
    write_npy(&f.path("trunc.npy"), "<i8", &[3, 2], &i64_bytes(&[1, 2, 3]));
    let e = f.err(f.eval("labels.json", "trunc.npy", "images.txt"));
    assert!(e.contains("trunc.npy"), "{e}");
    // not an npy at all
    f.write("junk.npy", "hello");
    let e = f.err(f.eval("labels.json", "junk.npy", "images.txt"));
    assert!(e.contains("junk.npy"), "{e}");
}

#[test]
fn empty_inputs() {
    let f = Fixture::new();
    f.write("empty.json", "");
    let e = f.err(f.eval("empty.json", "good.npy", "images.txt"));
    assert!(e.contains("empty.json") && e.contains("empty"), "{e}");
    f.write("empty.txt", "\n");
    let e = f.err(f.eval("labels.json", "good.npy", "empty.txt"));
    assert!(e.contains("empty.txt"), "{e}");
    write_npy(&f.path("zero.npy"), "<i8", &[0, 5], &[]);
    let e = f.err(f.eval("labels.json", "zero.npy", "images.txt"));
    assert!(e.contains("zero.npy"), "{e}");
    std::fs::create_dir(f.path("nodir")).unwrap();
    let e = f.err(f.eval("labels.json", "nodir", "images.txt"));
    assert!(e.contains("nodir"), "{e}");
}

#[test]
fn missing_files_and_bad_options() {
    let f = Fixture::new();
    let e = f.err(f.eval("nope.json", "good.npy", "images.txt"));
    assert!(e.contains("nope.json"), "{e}");
    let mut args = f.eval("labels.json", "good.npy", "images.txt");
    args.extend(["--threshold".into(), "1.5".into()]);
    let e = f.err(args);
    assert!(e.contains("--threshold"), "{e}");
    // usage errors exit with 2 (clap)
    let o = labelscope(&["eval", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn failed_output_write_names_the_file_and_leaves_no_temp_file() {
    let f = Fixture::new();
    f.write("out.json", "previous");
    let mut args = f.eval("labels.json", "good.npy", "images.txt");
    // point the CSV into a missing directory: the run fails after out.json was written atomically
    args.extend(["--csv".into(), f.p("missing/dir/out.csv")]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = labelscope(&a);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("out.csv"), "{err}");
    assert!(o.stdout.is_empty());
    // no temporary files left next to the outputs
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}
