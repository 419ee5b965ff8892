//! API tests of the Label task (free labelling with the escape hatch) on a
//! real server over SQLite (and PostgreSQL when `LABELSCOPE_TEST_POSTGRES`
//! is set; required when `CI=true`): pages submitted as the browser does,
//! refused submissions, gold-answer quality control, the per-labeler answers
//! export compared row by row with what was submitted, and the exported
//! files scored by `labelscope_core::humans` against a hand-made label set.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{get_page, http, json_of, runtime, start_hit};
use labelscope_core::classes::ClassTable;
use labelscope_core::humans::{evaluate_split, load_answers, Split, StudyOptions};
use labelscope_studio::db::Db;
use labelscope_studio::export::{answers_csv, AnswerClasses};
use labelscope_studio::manifest::Manifest;
use labelscope_studio::qc::project_verdicts;
use labelscope_studio::secret::WorkerKey;
use labelscope_studio::server::ServerConfig;
use serde_json::{json, Value};

const DOG: &str = "n02085620"; // Chihuahua, index 151
const CAT: &str = "n02123045"; // tabby, index 281
const TENCH: &str = "n01440764"; // index 0

struct Studio {
    addr: SocketAddr,
    db: Db,
    tokens: Vec<String>,
    dir: tempfile::TempDir,
}

fn key() -> WorkerKey {
    WorkerKey::from_bytes([5; 32])
}

fn manifest() -> Value {
    json!({"name": "free-label", "task": "label", "pages_per_hit": 4,
           "classes": {"my-toy": {"name": "toy of mine", "description": "a toy"}},
           "images": [{"file": "l0.jpg", "class": DOG}, {"file": "l1.jpg", "class": CAT},
                      {"file": "l2.jpg", "class": TENCH}, {"file": "l3.jpg", "class": DOG, "gold": DOG}]})
}

fn start(rt: &tokio::runtime::Runtime, db_url: Option<String>) -> Studio {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..4 {
        std::fs::write(images.join(format!("l{i}.jpg")), b"not really a picture").unwrap();
    }
    let mpath = dir.path().join("m.json");
    std::fs::write(&mpath, manifest().to_string()).unwrap();
    let m = Manifest::from_path(&mpath).unwrap();
    labelscope_studio::project::check_files(&m, &images, &mpath).unwrap();
    let target = db_url.unwrap_or_else(|| dir.path().join("studio.sqlite").display().to_string());
    let (db, tokens, addr) = rt.block_on(async {
        let db = Db::open(&target).await.unwrap();
        db.migrate().await.unwrap();
        let created = labelscope_studio::project::create(&db, &m).await.unwrap();
        let config = ServerConfig { images: images.clone(), max_body: 1 << 20, suggester: None };
        let addr = common::spawn_server(db.clone(), key(), &config);
        (db, created.tokens, addr)
    });
    Studio { addr, db, tokens, dir }
}

fn begin(s: &Studio, worker: &str) -> (i64, String) {
    start_hit(s.addr, &s.tokens[0], worker)
}

fn page(s: &Studio, i: usize, assignment: &(i64, String)) -> Value {
    get_page(s.addr, &s.tokens[0], i, assignment)
}

/// A page as label.js sends it: the label chosen after a first, changed
/// choice; with `alternative`, the escape hatch ticked and the alternative
/// chosen.
fn label_page(id: i64, label: &str, alternative: Option<&str>) -> Value {
    let mut history = vec![
        json!({"target": "label", "label": TENCH, "query": "ten", "time": 800}),
        json!({"target": "label", "label": label, "query": "x", "time": 1500}),
    ];
    let mut escapes = Vec::new();
    if let Some(a) = alternative {
        escapes.push(json!({"checked": true, "time": 1800}));
        history.push(json!({"target": "alternative", "label": a, "query": "y", "time": 2600}));
    }
    json!({"imageID": id, "originalSize": {"width": 640, "height": 480}, "onPageSize": {"width": 640, "height": 480},
           "imagePosition": {"x": 8, "y": 120}, "label": label, "escape": alternative.is_some(),
           "alternative": alternative, "labelHistory": history, "escapeHistory": escapes,
           "mouseTracking": [{"x": 0.5, "y": 0.5, "time": 40}, {"x": 0.52, "y": 0.5, "time": 56}]})
}

fn submit(s: &Studio, i: usize, (a, key): &(i64, String), mut body: Value, time_ms: u64) -> (u16, Value) {
    body["assignment"] = json!(a);
    body["key"] = json!(key);
    body["time_spent_ms"] = json!(time_ms);
    body["viewport"] = json!({"width": 1400, "height": 900});
    let (st, out) =
        http(s.addr, "POST", &format!("/api/hit/{}/page/{i}", s.tokens[0]), Some(body.to_string().as_bytes()));
    (st, if out.is_empty() { Value::Null } else { json_of(&out) })
}

/// What each worker submits per page: (label, alternative, page time in ms).
type Plan = [(&'static str, Option<&'static str>, u64)];

const A: &Plan = &[(DOG, None, 4000), (DOG, Some(CAT), 6500), (TENCH, None, 12345), (DOG, None, 3000)];
const B: &Plan = &[(CAT, Some(DOG), 8000), (CAT, None, 2500), (DOG, None, 70000), (CAT, None, 1000)];

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn flow(s: &Studio, rt: &tokio::runtime::Runtime) {
    // The task page loads the label script; the page JSON carries neither the original label
    // nor the gold answer.
    let (st, body) = http(s.addr, "GET", &format!("/hit/{}", s.tokens[0]), None);
    let html = String::from_utf8(body).unwrap();
    assert!(st == 200 && html.contains("/static/label.js") && html.contains("label the image"), "{html}");
    let (st, js) = http(s.addr, "GET", "/static/label.js", None);
    assert!(st == 200 && String::from_utf8_lossy(&js).contains("escapeHistory"));
    let a = begin(s, "A");
    let ids: Vec<i64> = (0..4).map(|i| page(s, i, &a)["images"][0]["id"].as_i64().unwrap()).collect();
    let p3 = page(s, 3, &a);
    assert_eq!(p3["class"], Value::Null, "{p3}");
    assert!(!p3.to_string().contains(DOG) && !p3.to_string().contains("gold"), "{p3}");

    // The class search of the Region task answers label pages (search only, no model).
    let sug = |q: &str| {
        let (st, body) =
            http(s.addr, "GET", &format!("/api/hit/{}/suggest/0?assignment={}&key={}{q}", s.tokens[0], a.0, a.1), None);
        (st, json_of(&body))
    };
    let (st, r) = sug("&q=tabby");
    assert_eq!(st, 200);
    assert_eq!((r["source"].as_str(), r["model"].as_bool()), (Some("search"), Some(false)));
    assert_eq!(r["suggestions"][0]["wnid"], CAT);
    let (_, r) = sug("&q=toy%20of");
    assert_eq!(r["suggestions"][0], json!({"wnid": "my-toy", "name": "toy of mine", "score": 2.0}));
    assert_eq!(sug("&x0=0.1&y0=0.1&x1=0.4&y1=0.4").1["suggestions"], json!([]));

    // Bad input: 422 naming the field.
    let d = begin(s, "D");
    let mut missing = label_page(ids[0], DOG, None);
    missing.as_object_mut().unwrap().remove("label");
    let mut alt_without_escape = label_page(ids[0], DOG, None);
    alt_without_escape["alternative"] = json!(CAT);
    let cases = vec![
        (label_page(ids[0], "cat", None), "submission.label: \"cat\" is not a class of this project"),
        (missing, "submission.label: expected a class key"),
        (alt_without_escape, "submission.alternative: an alternative is given only with the escape hatch"),
        (label_page(ids[0], DOG, Some("tabby cat")), "submission.alternative: \"tabby cat\" is not a class"),
        (label_page(ids[0], DOG, Some(DOG)), "submission.alternative: \"n02085620\" is the label itself"),
        (label_page(ids[1], DOG, None), "submission.imageID"),
    ];
    for (body, what) in cases {
        let (st, e) = submit(s, 0, &d, body, 1000);
        assert_eq!(st, 422, "{what}: {e}");
        assert!(e["error"].as_str().unwrap().contains(what), "{what}: {e}");
    }
    let mut no_alt = label_page(ids[0], DOG, Some(CAT));
    no_alt["alternative"] = Value::Null;
    let (st, e) = submit(s, 0, &d, no_alt, 1000);
    assert!(st == 422 && e["error"].as_str().unwrap().contains("escape hatch is marked"), "{e}");

    // A and B label every page; C labels one page with a project class.
    let b = begin(s, "B");
    for (w, plan) in [(&a, A), (&b, B)] {
        for (i, &(l, alt, ms)) in plan.iter().enumerate() {
            let (st, e) = submit(s, i, w, label_page(ids[i], l, alt), ms);
            assert_eq!(st, 200, "{e}");
        }
    }
    let c = begin(s, "C");
    assert_eq!(submit(s, 0, &c, label_page(ids[0], "my-toy", None), 2000).0, 200);
    // A repeated submission changes nothing.
    let (st, r) = submit(s, 0, &a, label_page(ids[0], CAT, None), 9999);
    assert_eq!((st, r["status"].as_str()), (200, Some("already_saved")));

    // Quality control: the gold image l3 is a Chihuahua; B said tabby; C did 1 of 4 pages.
    let v = rt.block_on(project_verdicts(&s.db, "free-label", None)).unwrap();
    let by = |x: i64| v.iter().find(|r| r.assignment == x).unwrap();
    assert_eq!((by(a.0).gold, by(a.0).accepted), ((1, 1), true));
    assert_eq!(by(b.0).gold, (0, 1));
    assert_eq!(by(b.0).reasons, vec!["accuracy on gold answers 0.000 (0 of 1) < 0.75".to_string()]);
    assert_eq!(by(c.0).reasons, vec!["1 of 4 pages completed < 3.6".to_string()]);

    // The export: one file per labeler, named by the keyed worker hash, rows as submitted.
    let k = key();
    let (ha, hb, hc) = (k.hash_worker("A"), k.hash_worker("B"), k.hash_worker("C"));
    let out = s.dir.path().join("answers");
    let none = HashSet::new();
    let w = rt.block_on(answers_csv(&s.db, "free-label", &out, AnswerClasses::Keys, &none)).unwrap();
    assert_eq!(w.rows, 9);
    let mut want_files: Vec<PathBuf> = [&ha, &hb, &hc].iter().map(|h| out.join(format!("{h}.csv"))).collect();
    want_files.sort();
    assert_eq!(w.files, want_files);
    assert_eq!(
        read(&out.join(format!("{ha}.csv"))),
        "image,label,alternative,time\n\
         l0,n02085620,,4\n\
         l1,n02085620,n02123045,6.5\n\
         l2,n01440764,,12.345\n\
         l3,n02085620,,3\n"
    );
    assert_eq!(
        read(&out.join(format!("{hb}.csv"))),
        "image,label,alternative,time\n\
         l0,n02123045,n02085620,8\n\
         l1,n02123045,,2.5\n\
         l2,n02085620,,70\n\
         l3,n02123045,,1\n"
    );
    assert_eq!(read(&out.join(format!("{hc}.csv"))), "image,label,alternative,time\nl0,my-toy,,2\n");
    // Class indices: C's project class has none, which is an error naming it; without C's
    // assignment the files hold ImageNet indices.
    let idx = s.dir.path().join("answers-idx");
    let e = rt.block_on(answers_csv(&s.db, "free-label", &idx, AnswerClasses::Indices, &none)).unwrap_err();
    assert!(e.to_string().contains("\"my-toy\"") && e.to_string().contains("\"l0\""), "{e}");
    let without_c: HashSet<i64> = [c.0].into();
    let w = rt.block_on(answers_csv(&s.db, "free-label", &idx, AnswerClasses::Indices, &without_c)).unwrap();
    assert_eq!((w.rows, w.files.len()), (8, 2));
    assert_eq!(
        read(&idx.join(format!("{ha}.csv"))),
        "image,label,alternative,time\nl0,151,,4\nl1,151,281,6.5\nl2,0,,12.345\nl3,151,,3\n"
    );
    // Exporting again into the same folder replaces its own files; leaving C out now would
    // leave C's earlier file behind for `humans` to read, so that is refused before any write.
    let before_a = read(&out.join(format!("{ha}.csv")));
    let w = rt.block_on(answers_csv(&s.db, "free-label", &out, AnswerClasses::Keys, &none)).unwrap();
    assert_eq!((w.rows, w.files.len()), (9, 3));
    std::fs::write(out.join(format!("{ha}.csv")), "stale").unwrap();
    let e = rt.block_on(answers_csv(&s.db, "free-label", &out, AnswerClasses::Keys, &without_c)).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&format!("{hc}.csv")) && msg.contains(&out.display().to_string()), "{msg}");
    assert!(!msg.contains(&format!("{ha}.csv")), "{msg}");
    assert_eq!(read(&out.join(format!("{ha}.csv"))), "stale", "nothing written after the refusal");
    // Hidden files and other extensions are not answer files; a user's JSON answers file is.
    std::fs::write(out.join(".notes.csv"), "x").unwrap();
    std::fs::write(out.join("README.txt"), "x").unwrap();
    std::fs::remove_file(out.join(format!("{hc}.csv"))).unwrap();
    std::fs::write(out.join("extra.JSON"), "{}").unwrap();
    let e = rt.block_on(answers_csv(&s.db, "free-label", &out, AnswerClasses::Keys, &without_c)).unwrap_err();
    assert!(e.to_string().contains("(extra.JSON)"), "{e}");
    std::fs::remove_file(out.join("extra.JSON")).unwrap();
    let w = rt.block_on(answers_csv(&s.db, "free-label", &out, AnswerClasses::Keys, &without_c)).unwrap();
    assert_eq!((w.rows, w.files.len()), (8, 2));
    assert_eq!(read(&out.join(format!("{ha}.csv"))), before_a);
    // Other tasks' projects have no answers files.
    let e = rt.block_on(answers_csv(&s.db, "nope", &idx, AnswerClasses::Keys, &none)).unwrap_err();
    assert!(e.to_string().contains("no project"), "{e}");
    // The flat exports show the choices.
    let ev = s.dir.path().join("events.csv");
    rt.block_on(labelscope_studio::export::csv_events(&s.db, "free-label", &ev)).unwrap();
    let text = read(&ev);
    assert!(text.contains(",choose,2600,,,alternative=n02123045") && text.contains(",escape,1800,,,on"), "{text}");

    score(&out.join(format!("{ha}.csv")), &out.join(format!("{hb}.csv")), &ha, &hb);
    fuzz(s, &ids);
}

/// The exported files of A and B scored by `labelscope humans`' library on a hand-made split.
fn score(fa: &Path, fb: &Path, ha: &str, hb: &str) {
    let table = ClassTable::imagenet();
    let pa = load_answers(fa, table).unwrap();
    let pb = load_answers(fb, table).unwrap();
    assert_eq!((pa.name.as_str(), pb.name.as_str()), (ha, hb));
    assert_eq!((pa.alternatives(), pb.alternatives()), (1, 1));
    // Label sets: l0 {151}, l1 {281}, l2 {0}, l3 {151, 152}; original labels 151, 281, 0, 151.
    let split = Split {
        name: "tiny".into(),
        names: (0..4).map(|i| format!("l{i}")).collect(),
        gt: vec![vec![151], vec![281], vec![0], vec![151, 152]],
        original: Some(vec![151, 281, 0, 151]),
        problematic: None,
        notes: Vec::new(),
    };
    let opts = StudyOptions { fast_threshold_s: 10.0, groups: Vec::new(), ..StudyOptions::default() };
    let r = evaluate_split(&split, &[pa, pb], table, &opts).unwrap();
    let counts = |who: &str, metric: &str, subset: &str| {
        let row = r.rows.iter().find(|x| x.model == who && x.metric == metric && x.subset == subset);
        row.map(|x| (x.correct.unwrap(), x.total.unwrap()))
    };
    // A: 151 ok, 151 wrong (alternative 281 right), 0 ok, 151 ok -> 3/4; imputed 4/4.
    assert_eq!(counts(ha, "multi-label", "all"), Some((3, 4)));
    assert_eq!(counts(ha, "multi-label-imputed", "all"), Some((4, 4)));
    assert_eq!(counts(ha, "top1", "all"), Some((3, 4)));
    // B: 281 wrong (alternative 151 right), 281 ok, 151 wrong, 281 wrong -> 1/4; imputed 2/4.
    assert_eq!(counts(hb, "multi-label", "all"), Some((1, 4)));
    assert_eq!(counts(hb, "multi-label-imputed", "all"), Some((2, 4)));
    // Median times in seconds: l0 (4, 8) 6; l1 (6.5, 2.5) 4.5; l2 (12.345, 70) 41.17; l3 (3, 1) 2:
    // below 10 s are l0, l1, l3. A there: right, wrong, right; B: wrong, right, wrong.
    assert_eq!(counts(ha, "multi-label", "fast"), Some((2, 3)));
    assert_eq!(counts(hb, "multi-label", "fast"), Some((1, 3)));
}

/// Mutated submissions of page 3 by a new worker: 4xx, never 5xx; the valid body is then saved.
fn fuzz(s: &Studio, ids: &[i64]) {
    let a = begin(s, "fuzzer");
    let mut good = label_page(ids[3], DOG, Some(CAT));
    good["assignment"] = json!(a.0);
    good["key"] = json!(a.1);
    good["time_spent_ms"] = json!(100);
    let url = format!("/api/hit/{}/page/3", s.tokens[0]);
    let good = good.to_string().into_bytes();
    assert!(common::fuzz_posts(s.addr, &url, &good, 200) < 200);
    assert_eq!(http(s.addr, "POST", &url, Some(&good)).0, 200);
}

#[test]
fn label_on_sqlite() {
    let rt = runtime();
    let s = start(&rt, None);
    flow(&s, &rt);
}

#[test]
fn label_on_postgres() {
    let rt = runtime();
    let Some(url) = common::pg_url(&rt, "label") else { return };
    let s = start(&rt, Some(url));
    flow(&s, &rt);
}
