//! API tests of the Tag, Verify and Region tasks on a real server over
//! SQLite (and PostgreSQL when `LABELSCOPE_TEST_POSTGRES` is set; required
//! when `CI=true`): submissions, quality control against gold answers and
//! known objects, vote aggregation against a hand count, COCO-AB export
//! read back by the byproducts reader, region suggestions.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::{get_page, http, json_of, runtime, start_hit};
use labelscope_core::classes::ClassTable;
use labelscope_studio::aggregate::{aggregate, Method};
use labelscope_studio::db::Db;
use labelscope_studio::manifest::Manifest;
use labelscope_studio::qc::project_verdicts;
use labelscope_studio::secret::WorkerKey;
use labelscope_studio::server::{self, RegionSuggester, ServerConfig};
use serde_json::{json, Value};

struct Studio {
    addr: SocketAddr,
    db: Db,
    tokens: Vec<String>,
    dir: tempfile::TempDir,
}

fn start(
    rt: &tokio::runtime::Runtime,
    db_url: Option<String>,
    manifest: &Value,
    suggester: Option<Arc<dyn RegionSuggester>>,
) -> Studio {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for im in manifest["images"].as_array().unwrap() {
        std::fs::write(images.join(im["file"].as_str().unwrap()), b"not really a picture").unwrap();
    }
    let mpath = dir.path().join("m.json");
    std::fs::write(&mpath, manifest.to_string()).unwrap();
    let m = Manifest::from_path(&mpath).unwrap();
    labelscope_studio::project::check_files(&m, &images, &mpath).unwrap();
    let target = db_url.unwrap_or_else(|| dir.path().join("studio.sqlite").display().to_string());
    let (db, tokens, addr) = rt.block_on(async {
        let db = Db::open(&target).await.unwrap();
        db.migrate().await.unwrap();
        let created = labelscope_studio::project::create(&db, &m).await.unwrap();
        let config = ServerConfig { images: images.clone(), max_body: 1 << 20, suggester };
        let addr = common::spawn_server(db.clone(), WorkerKey::from_bytes([3; 32]), &config);
        (db, created.tokens, addr)
    });
    Studio { addr, db, tokens, dir }
}

fn begin(s: &Studio, hit: usize, worker: &str) -> (i64, String) {
    start_hit(s.addr, &s.tokens[hit], worker)
}

fn page(s: &Studio, hit: usize, i: usize, assignment: &(i64, String)) -> Value {
    get_page(s.addr, &s.tokens[hit], i, assignment)
}

fn submit(s: &Studio, hit: usize, i: usize, (a, key): &(i64, String), mut body: Value) -> (u16, Value) {
    body["assignment"] = json!(a);
    body["key"] = json!(key);
    body["time_spent_ms"] = json!(5000);
    let (st, out) =
        http(s.addr, "POST", &format!("/api/hit/{}/page/{i}", s.tokens[hit]), Some(body.to_string().as_bytes()));
    (st, if out.is_empty() { Value::Null } else { json_of(&out) })
}

fn sizes(id: i64) -> Value {
    json!({"imageID": id, "originalSize": {"width": 640, "height": 480}, "onPageSize": {"width": 800, "height": 600},
           "imagePosition": {"x": 8, "y": 120}})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

// ---------------------------------------------------------------- tag

fn tag_manifest() -> Value {
    // Image 0: a dog box; image 1: a cat mask (column-major RLE of a 4 x 4
    // mask whose right half is set: 8 zeros then 8 ones); images 2-4: none.
    let images: Vec<Value> = (0..5)
        .map(|i| {
            let mut v = json!({"file": format!("{i:012}.jpg"), "image_id": 1000 + i});
            if i == 0 {
                v["objects"] = json!([{"category": "dog", "box": [64, 48, 320, 240]}]);
            }
            if i == 1 {
                v["objects"] = json!([{"category": "cat", "segmentation": {"size": [4, 4], "counts": [8, 8]}}]);
            }
            v
        })
        .collect();
    json!({"name": "coco-tag", "task": "tag", "pages_per_hit": 5, "images": images})
}

fn tag_page(id: i64, icons: &[(&str, f64, f64)]) -> Value {
    let mut actions = Vec::new();
    let mut t = 500.0;
    for &(c, x, y) in icons {
        actions.push(json!({"actionType": "add", "iconType": c, "pointTo": {"x": x, "y": y}, "timeAt": t}));
        t += 300.0;
    }
    with(
        sizes(id),
        json!({"timeSpent": t, "actionHistories": actions,
               "categoryHistories": [{"superclass": "animal", "timeAt": 200, "keyboard": true}],
               "mouseTracking": [{"x": 0.2, "y": 0.3, "timeAt": 100}, {"x": 0.25, "y": 0.35, "timeAt": 116}]}),
    )
}

fn tag_flow(s: &Studio, rt: &tokio::runtime::Runtime) {
    let (st, body) = http(s.addr, "GET", &format!("/hit/{}", s.tokens[0]), None);
    let html = String::from_utf8(body).unwrap();
    assert_eq!(st, 200);
    assert!(html.contains("/static/tag.js") && html.contains("\"superclass\":\"animal\""), "{html}");
    // Worker A: icons on the known objects (dog at (0.25, 0.25) = (160, 120) inside the box;
    // cat at (0.75, 0.5) = on the right half) and a moved, removed and re-added icon on page 2.
    let a = begin(s, 0, "A");
    let ids: Vec<i64> = (0..5).map(|i| page(s, 0, i, &a)["images"][0]["id"].as_i64().unwrap()).collect();
    assert_eq!(submit(s, 0, 0, &a, tag_page(ids[0], &[("dog", 0.25, 0.25)])).0, 200);
    assert_eq!(submit(s, 0, 1, &a, tag_page(ids[1], &[("cat", 0.75, 0.5), ("person", 0.1, 0.1)])).0, 200);
    let mut p2 = tag_page(ids[2], &[("car", 0.5, 0.5)]);
    p2["actionHistories"].as_array_mut().unwrap().extend([
        json!({"actionType": "move", "iconType": "car", "pointFrom": {"x": 0.5, "y": 0.5}, "pointTo": {"x": 0.6, "y": 0.4}, "timeAt": 900}),
        json!({"actionType": "remove", "iconType": "car", "timeAt": 1000}),
        json!({"actionType": "add", "iconType": "car", "pointTo": {"x": 0.7, "y": 0.3}, "timeAt": 1100}),
    ]);
    assert_eq!(submit(s, 0, 2, &a, p2).0, 200);
    assert_eq!(submit(s, 0, 3, &a, tag_page(ids[3], &[])).0, 200);
    assert_eq!(submit(s, 0, 4, &a, tag_page(ids[4], &[])).0, 200);
    // Refused: a second icon of a category, an icon of another page's image, a move of nothing.
    let b = begin(s, 0, "B");
    let (st, e) = submit(s, 0, 0, &b, tag_page(ids[0], &[("dog", 0.1, 0.1), ("dog", 0.2, 0.2)]));
    assert!(st == 422 && e["error"].as_str().unwrap().contains("one icon per category"), "{st} {e}");
    assert_eq!(submit(s, 0, 0, &b, tag_page(ids[1], &[])).0, 422);
    // Worker B: 4 of 5 pages (16 of 20 rule: 0.8 passes), icons off the objects: 0 of 2 localised.
    assert_eq!(submit(s, 0, 0, &b, tag_page(ids[0], &[("dog", 0.9, 0.9)])).0, 200);
    assert_eq!(submit(s, 0, 1, &b, tag_page(ids[1], &[("cat", 0.2, 0.5)])).0, 200);
    assert_eq!(submit(s, 0, 2, &b, tag_page(ids[2], &[])).0, 200);
    assert_eq!(submit(s, 0, 3, &b, tag_page(ids[3], &[])).0, 200);
    // Worker C: 3 of 5 pages, icons on the objects.
    let c = begin(s, 0, "C");
    for (i, &id) in ids.iter().enumerate().take(3) {
        let icons: &[(&str, f64, f64)] = if i == 0 { &[("dog", 0.3, 0.3)] } else { &[] };
        assert_eq!(submit(s, 0, i, &c, tag_page(id, icons)).0, 200);
    }

    let v = rt.block_on(project_verdicts(&s.db, "coco-tag", None)).unwrap();
    let by = |a: i64| v.iter().find(|x| x.assignment == a).unwrap();
    // A: dog in the box, cat on the mask, person (no known person) off: 2 of 3 = 0.667 < 0.75.
    assert_eq!(by(a.0).objects, (2, 3));
    assert_eq!(by(a.0).reasons, vec!["icon localisation accuracy 0.667 (2 of 3) < 0.75".to_string()]);
    assert_eq!(by(b.0).objects, (0, 2));
    assert_eq!(by(b.0).reasons.len(), 1, "{:?}", by(b.0).reasons);
    assert_eq!(by(c.0).objects, (1, 1));
    assert_eq!(by(c.0).reasons, vec!["3 of 5 pages completed < 4.0".to_string()]);
    // The statistics page shows the known-object accuracy per worker.
    let admin = server::admin_key(&WorkerKey::from_bytes([3; 32]));
    let (st, body) = http(s.addr, "GET", &format!("/admin/workers?key={admin}"), None);
    let html = String::from_utf8(body).unwrap();
    assert_eq!(st, 200);
    assert!(
        html.contains("known-object accuracy") && html.contains("0.667 (2 of 3)") && html.contains("0.000 (0 of 2)"),
        "{html}"
    );

    // COCO-AB export, read back by the byproducts reader.
    let out = s.dir.path().join("coco-ab.json");
    let n = rt.block_on(labelscope_studio::export::coco_ab(&s.db, "coco-tag", &out)).unwrap();
    assert_eq!(n, 5 + 4 + 3);
    let mut recs = Vec::new();
    let opts = labelscope_byproducts::stream::ReadOptions::default();
    labelscope_byproducts::coco::read_array(&out, &opts, |r| recs.push(r)).unwrap();
    assert_eq!(recs.len(), 12);
    let r2 = recs.iter().find(|r| r.image_id == 1002 && r.actions.len() == 4).unwrap();
    assert_eq!(r2.actions.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>(), ["add", "move", "remove", "add"]);
    let last = r2.last_add_points();
    assert_eq!(last.len(), 1);
    assert_eq!((last[0].0.as_str(), last[0].1.x, last[0].1.y), ("car", 0.7, 0.3));
    assert_eq!(r2.width, Some(640.0));
    assert!(recs.iter().all(|r| r.worker.as_deref().is_some_and(|w| w.len() == 32 && w != "A" && w != "B")));
    // Exports of the wrong task are refused.
    let e = rt.block_on(labelscope_studio::export::imagenet_ab(&s.db, "nope", &out)).unwrap_err();
    assert!(e.to_string().contains("no project"), "{e}");

    // Flat CSV: labels per record and one event row per action and tab.
    let csv = s.dir.path().join("records.csv");
    rt.block_on(labelscope_studio::export::csv_records(&s.db, "coco-tag", &csv)).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.lines().next().unwrap().ends_with(",labels,actions"));
    assert!(text.lines().any(|l| l.contains(",cat;person,2")), "{text}");
    let ev = s.dir.path().join("events.csv");
    rt.block_on(labelscope_studio::export::csv_events(&s.db, "coco-tag", &ev)).unwrap();
    let text = std::fs::read_to_string(&ev).unwrap();
    assert!(text.contains(",move,900,0.6,0.4,car") && text.contains(",tab,200,,,animal (keyboard)"), "{text}");
    fuzz(s, tag_page(ids[4], &[("dog", 0.5, 0.5), ("cat", 0.2, 0.2)]));
}

/// Fuzzed submissions of page 4 (or 3) of HIT 0 by a new worker: 4xx, never 5xx; then the
/// valid body is still accepted.
fn fuzz(s: &Studio, body: Value) {
    let a = begin(s, 0, "fuzzer");
    let last = s_pages(s, &a) - 1;
    let mut good = body;
    good["assignment"] = json!(a.0);
    good["key"] = json!(a.1);
    good["time_spent_ms"] = json!(100);
    let url = format!("/api/hit/{}/page/{last}", s.tokens[0]);
    let good = good.to_string().into_bytes();
    let saved = common::fuzz_posts(s.addr, &url, &good, 300);
    assert!(saved < 300);
    let (st, _) = http(s.addr, "POST", &url, Some(&good));
    assert_eq!(st, 200);
}

fn s_pages(s: &Studio, (a, key): &(i64, String)) -> usize {
    let (_, body) = http(s.addr, "GET", &format!("/api/hit/{}/page/0?assignment={a}&key={key}", s.tokens[0]), None);
    json_of(&body)["pages"].as_u64().unwrap() as usize
}

// ---------------------------------------------------------------- verify

const DOG: &str = "n02085620"; // Chihuahua
const CAT: &str = "n02123045"; // tabby

fn verify_manifest() -> Value {
    let images: Vec<Value> = (0..4)
        .map(|i| {
            let mut v = json!({"file": format!("v{i}.jpg"), "class": DOG, "proposed": [DOG, CAT]});
            if i == 3 {
                v["gold"] = json!({CAT: "no"});
            }
            v
        })
        .collect();
    json!({"name": "real-verify", "task": "verify", "pages_per_hit": 4, "images": images})
}

fn verify_page(id: i64, dog: &str, cat: &str) -> Value {
    with(
        sizes(id),
        json!({"answers": [{"label": DOG, "answer": dog, "time": 900}, {"label": CAT, "answer": cat, "time": 1500}],
               "answerHistory": [{"label": DOG, "answer": "maybe", "time": 400}, {"label": DOG, "answer": dog, "time": 900},
                                 {"label": CAT, "answer": cat, "time": 1500}],
               "flags": {"wrong_original_label": false, "drawing": false, "heavy_edit": false, "inappropriate": false},
               "alternative": "", "mouseTracking": [{"x": 0.5, "y": 0.5, "time": 50}]}),
    )
}

fn verify_flow(s: &Studio, rt: &tokio::runtime::Runtime) {
    let w0 = begin(s, 0, "w0");
    let p = page(s, 0, 0, &w0);
    assert_eq!(p["proposed"][1]["wnid"], CAT);
    assert_eq!(p["proposed"][1]["name"], "tabby");
    assert_eq!(p["class"]["wnid"], DOG);
    assert!(!p.to_string().contains("gold"), "gold answers must not reach the page: {p}");
    let ids: Vec<i64> = (0..4).map(|i| page(s, 0, i, &w0)["images"][0]["id"].as_i64().unwrap()).collect();
    // Answers (dog, cat) per worker and image. w4 says yes to everything, so it fails the
    // gold check on image 3 (cat: no).
    let plan: [[(&str, &str); 4]; 5] = [
        [("yes", "no"), ("yes", "yes"), ("no", "no"), ("yes", "no")],
        [("yes", "no"), ("yes", "yes"), ("no", "maybe"), ("yes", "no")],
        [("yes", "no"), ("maybe", "yes"), ("no", "no"), ("yes", "no")],
        [("yes", "yes"), ("yes", "no"), ("yes", "no"), ("yes", "no")],
        [("yes", "yes"), ("yes", "yes"), ("yes", "yes"), ("yes", "yes")],
    ];
    let mut assignments = Vec::new();
    for (w, answers) in plan.iter().enumerate() {
        let a = if w == 0 { w0.clone() } else { begin(s, 0, &format!("w{w}")) };
        for (i, (d, c)) in answers.iter().enumerate() {
            let (st, e) = submit(s, 0, i, &a, verify_page(ids[i], d, c));
            assert_eq!(st, 200, "{e}");
        }
        assignments.push(a.0);
    }
    // A missing answer and a final answer that is not the last click are refused.
    let mut bad = verify_page(ids[0], "yes", "no");
    bad["answers"].as_array_mut().unwrap().pop();
    let extra = begin(s, 0, "w9");
    assert_eq!(submit(s, 0, 0, &extra, bad).0, 422);
    let mut bad = verify_page(ids[0], "yes", "no");
    bad["answers"][0]["answer"] = json!("maybe");
    assert_eq!(submit(s, 0, 0, &extra, bad).0, 422);

    let v = rt.block_on(project_verdicts(&s.db, "real-verify", None)).unwrap();
    let w4 = v.iter().find(|x| x.assignment == assignments[4]).unwrap();
    assert_eq!(w4.gold, (0, 1));
    assert!(!w4.accepted);
    assert!(v.iter().filter(|x| assignments[..4].contains(&x.assignment)).all(|x| x.accepted && x.gold == (1, 1)));

    // Majority (maybe = half) by hand, over all five workers: image 0 dog 5/5, cat 2/5;
    // image 1 dog 4.5/5, cat 4/5; image 2 dog 2/5, cat 1.5/5; image 3 dog 5/5, cat 1/5.
    let all = HashSet::new();
    let m = rt.block_on(aggregate(&s.db, "real-verify", Method::Majority(Default::default()), 0.8, &all)).unwrap();
    let want = [1.0, 0.4, 0.9, 0.8, 0.4, 0.3, 1.0, 0.2];
    for (it, w) in m.items.iter().zip(want) {
        assert!((it.probability.unwrap() - w).abs() < 1e-12, "{it:?} vs {w}");
    }
    assert_eq!(m.votes, 40);
    assert_eq!(m.workers, 5);
    let names: Vec<String> = (0..4).map(|i| format!("v{i}")).collect();
    assert_eq!(m.sets.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), names);
    assert_eq!(m.sets[1].1, vec![DOG.to_string(), CAT.to_string()]);
    assert!(m.sets[2].1.is_empty());
    // Leaving out the rejected worker w4: image 1 cat 3/4 < 0.8 is dropped.
    let rejected: HashSet<i64> = [assignments[4]].into();
    let m = rt.block_on(aggregate(&s.db, "real-verify", Method::Majority(Default::default()), 0.8, &rejected)).unwrap();
    assert_eq!(m.sets[1].1, vec![DOG.to_string()]);
    assert_eq!(m.votes, 32);
    // Label sets in evaluation form: ImageNet class indices (Chihuahua 151, tabby 281).
    let table = ClassTable::imagenet();
    let sets = m.label_sets(Path::new("labels.json")).unwrap();
    assert_eq!(sets.get("v1"), Some(&[table.index_of_wnid(DOG).unwrap() as u32][..]));
    assert_eq!(table.index_of_wnid(DOG), Some(151));
    let json: Value = serde_json::from_str(&sets.to_json()).unwrap();
    assert_eq!(json["v0"], json!([151]));
    // Dawid–Skene: the four consistent workers agree on image 0 dog and image 3 cat; the
    // posteriors order the items like the vote shares do at the ends.
    let ds = rt.block_on(aggregate(&s.db, "real-verify", Method::DawidSkene(Default::default()), 0.8, &all)).unwrap();
    let p: Vec<f64> = ds.items.iter().map(|i| i.probability.unwrap()).collect();
    assert!(p[0] > 0.95 && p[6] > 0.95 && p[7] < 0.05 && p[4] < 0.5, "{p:?}");
    assert!(ds.em.is_some());
    let csv = labelscope_studio::aggregate::items_csv(&ds);
    assert_eq!(csv.lines().count(), 9);
    assert!(csv.starts_with("image,label,yes,no,maybe,probability,kept\nv0,n02085620,5,0,0,"), "{csv}");
    // The label sets read back as evaluation ground truth.
    let back = labelscope_core::labels::parse_labels(&sets.to_json(), Path::new("labels.json"), None, table).unwrap();
    let back = back.to_sets().unwrap();
    assert_eq!(back.get("v1"), Some(&[151][..]));
    assert_eq!(back.get("v2"), Some(&[][..]));
    assert_eq!(back.get("v3"), Some(&[151][..]));
    fuzz(s, verify_page(ids[3], "yes", "no"));
}

// ---------------------------------------------------------------- region

struct Fake;

impl RegionSuggester for Fake {
    fn suggest(&self, name: &str, _file: &Path, bbox: [f64; 4], k: usize) -> Result<Vec<(String, f64)>, String> {
        // Left half of the image: "my-toy"; right half: tabby.
        let mut v = if bbox[2] <= 0.5 {
            vec![("my-toy".to_string(), 0.7), (CAT.to_string(), 0.2)]
        } else {
            vec![(CAT.to_string(), 0.9), ("my-toy".to_string(), 0.05)]
        };
        v.truncate(k);
        assert!(name.starts_with('r'));
        Ok(v)
    }

    fn knows(&self, key: &str) -> bool {
        key == "my-toy" || key == CAT
    }

    fn class_name(&self, key: &str) -> Option<String> {
        (key == "my-toy").then(|| "toy of mine".to_string())
    }
}

fn region_manifest() -> Value {
    json!({"name": "boxes", "task": "region", "images": [
        {"file": "r0.jpg", "objects": [{"category": CAT, "box": [320, 0, 640, 240]}]},
        {"file": "r1.jpg"}]})
}

fn region(label: &str, b: [f64; 4], source: &str, t: f64) -> Value {
    json!({"box": {"x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3]}, "label": label, "query": "", "source": source,
           "suggestions": [label], "drawTrace": [{"x": b[0], "y": b[1], "time": t - 300.0}, {"x": b[2], "y": b[3], "time": t - 100.0}],
           "time": t})
}

fn region_flow(s: &Studio, model: bool, rt: &tokio::runtime::Runtime) {
    let a = begin(s, 0, "R");
    let id0 = page(s, 0, 0, &a)["images"][0]["id"].as_i64().unwrap();
    let sug = |q: &str| {
        let (st, body) =
            http(s.addr, "GET", &format!("/api/hit/{}/suggest/0?assignment={}&key={}{q}", s.tokens[0], a.0, a.1), None);
        (st, json_of(&body))
    };
    let (st, r) = sug("&q=tabby");
    assert_eq!(st, 200);
    assert_eq!((r["source"].as_str(), r["suggestions"][0]["wnid"].as_str()), (Some("search"), Some(CAT)));
    let (st, r) = sug("&x0=0.1&y0=0.1&x1=0.4&y1=0.4");
    assert_eq!(st, 200);
    if model {
        assert_eq!(r["source"], "model");
        assert_eq!(r["suggestions"][0], json!({"wnid": "my-toy", "name": "toy of mine", "score": 0.7}));
    } else {
        // No model and no query: nothing to search for.
        assert_eq!(r["source"], "search");
        assert_eq!(r["suggestions"], json!([]));
    }
    assert_eq!(sug("&x0=0.5&y0=0.1&x1=0.4&y1=0.4").0, 422);
    assert_eq!(sug("&x0=0.5").0, 422);
    let (st, _) =
        http(s.addr, "GET", &format!("/api/hit/{}/suggest/0?assignment={}&key=wrong&q=cat", s.tokens[0], a.0), None);
    assert_eq!(st, 403);
    // A model class is accepted only when the server has the model.
    let toy = with(
        sizes(id0),
        json!({"regions": [region("my-toy", [0.1, 0.1, 0.4, 0.4], "model", 1000.0)], "mouseTracking": []}),
    );
    let (st, e) = submit(s, 0, 0, &a, toy.clone());
    if model {
        assert_eq!(st, 200, "{e}");
    } else {
        assert!(st == 422 && e["error"].as_str().unwrap().contains("not a class"), "{st} {e}");
        let ok = with(
            sizes(id0),
            json!({"regions": [region(CAT, [0.5, 0.0, 1.0, 0.5], "search", 1000.0), region(CAT, [0.0, 0.5, 0.3, 1.0], "search", 2000.0)],
                   "mouseTracking": []}),
        );
        assert_eq!(submit(s, 0, 0, &a, ok).0, 200);
        // One of two boxes matches the known tabby (IoU 1): 0.5 < 0.75.
        let v = rt.block_on(project_verdicts(&s.db, "boxes", None)).unwrap();
        assert_eq!(v[0].objects, (1, 2));
        assert!(!v[0].accepted);
        let id1 = page(s, 0, 1, &a)["images"][0]["id"].as_i64().unwrap();
        fuzz(
            s,
            with(
                sizes(id1),
                json!({"regions": [region(CAT, [0.5, 0.0, 1.0, 0.5], "search", 1000.0)], "mouseTracking": []}),
            ),
        );
    }
}

// ---------------------------------------------------------------- runs

#[test]
fn tag_on_sqlite() {
    let rt = runtime();
    let s = start(&rt, None, &tag_manifest(), None);
    tag_flow(&s, &rt);
}

#[test]
fn verify_on_sqlite() {
    let rt = runtime();
    let s = start(&rt, None, &verify_manifest(), None);
    verify_flow(&s, &rt);
}

#[test]
fn region_with_and_without_a_model() {
    let rt = runtime();
    let s = start(&rt, None, &region_manifest(), None);
    region_flow(&s, false, &rt);
    let s = start(&rt, None, &region_manifest(), Some(Arc::new(Fake)));
    region_flow(&s, true, &rt);
}

#[test]
fn tag_and_verify_on_postgres() {
    let rt = runtime();
    let Some(url) = common::pg_url(&rt, "tag") else { return };
    let s = start(&rt, Some(url), &tag_manifest(), None);
    tag_flow(&s, &rt);
    let url = common::pg_url(&rt, "verify").unwrap();
    let s = start(&rt, Some(url), &verify_manifest(), None);
    verify_flow(&s, &rt);
}
