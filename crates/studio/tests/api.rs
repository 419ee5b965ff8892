//! API tests of the studio server: a real server on 127.0.0.1 over a
//! temporary SQLite database (and PostgreSQL when `LABELSCOPE_TEST_POSTGRES`
//! names a server; required when `CI=true`).

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{get_page, http, json_of, runtime, start_hit};

use labelscope_studio::db::Db;
use labelscope_studio::manifest::Manifest;
use labelscope_studio::secret::WorkerKey;
use labelscope_studio::server::{self, ServerConfig};
use serde_json::{json, Value};

struct Studio {
    addr: SocketAddr,
    db: Db,
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
    key: WorkerKey,
}

fn manifest_text(n: usize) -> String {
    let images: Vec<Value> = (0..n)
        .map(|i| json!({"file": format!("n01440764/n01440764_{i}.JPEG"), "class": "n01440764", "known_positive": i % 4 == 0}))
        .chain((0..3).map(|i| json!({"file": format!("cat/c{i}.png"), "class": "cat"})))
        .collect();
    json!({
        "name": "demo", "task": "browse", "images_per_page": 4, "pages_per_hit": 2,
        "classes": {"cat": {"name": "cat </script><script>alert(1)</script>", "description": "a <b>small</b> feline & friend"}},
        "images": images
    })
    .to_string()
}

fn start(rt: &tokio::runtime::Runtime, db_url: Option<String>) -> Studio {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(images.join("n01440764")).unwrap();
    std::fs::create_dir_all(images.join("cat")).unwrap();
    for i in 0..10 {
        std::fs::write(images.join(format!("n01440764/n01440764_{i}.JPEG")), format!("jpeg {i}")).unwrap();
    }
    for i in 0..3 {
        std::fs::write(images.join(format!("cat/c{i}.png")), format!("png {i}")).unwrap();
    }
    std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
    let mpath = dir.path().join("m.json");
    std::fs::write(&mpath, manifest_text(10)).unwrap();
    let manifest = Manifest::from_path(&mpath).unwrap();
    labelscope_studio::project::check_files(&manifest, &images, &mpath).unwrap();
    let target = db_url.unwrap_or_else(|| dir.path().join("studio.sqlite").display().to_string());
    let key = WorkerKey::from_bytes([7; 32]);
    let (db, tokens, addr) = rt.block_on(async {
        let db = Db::open(&target).await.unwrap();
        db.migrate().await.unwrap();
        let created = labelscope_studio::project::create(&db, &manifest).await.unwrap();
        let config = ServerConfig { images: images.clone(), max_body: 256 << 10, suggester: None };
        let addr = common::spawn_server(db.clone(), key.clone(), &config);
        (db, created.tokens, addr)
    });
    Studio { addr, db, tokens, _dir: dir, key }
}

fn record(id: i64, clicks: &[(f64, f64, f64)]) -> Value {
    json!({
        "imageID": id, "originalSize": {"width": 500, "height": 375}, "onPageSize": {"width": 150, "height": 112.5},
        "imagePosition": {"x": 10, "y": 20},
        "hoveredRecord": [{"action": "enter", "time": 50}, {"action": "leave", "time": 900}],
        "mouseTracking": [{"x": 0.1, "y": 0.2, "time": 60}, {"x": 0.3, "y": 0.4, "time": 80}],
        "selectedRecord": clicks.iter().map(|&(x, y, t)| json!({"x": x, "y": y, "time": t})).collect::<Vec<_>>(),
        "selected": clicks.len() % 2 == 1,
    })
}

fn begin(s: &Studio, hit: usize, worker: &str) -> (i64, String) {
    start_hit(s.addr, &s.tokens[hit], worker)
}

fn page_ids(s: &Studio, hit: usize, page: usize, a: i64, key: &str) -> Vec<i64> {
    get_page(s.addr, &s.tokens[hit], page, &(a, key.to_string()))["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

fn full_flow(s: &Studio, rt: &tokio::runtime::Runtime) {
    // 10 tench images in pages of 4 -> pages 4, 4, 2 -> HITs of 2 and 1 pages; 3 cats -> one HIT.
    assert_eq!(s.tokens.len(), 3);
    let (st, body) = http(s.addr, "GET", &format!("/hit/{}?worker=W%3Cb%3E", s.tokens[0]), None);
    assert_eq!(st, 200);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("tench"), "{html}");
    assert!(!html.contains("W<b>"), "worker id must be escaped: {html}");

    let (a, key) = begin(s, 0, "A1B2C3");
    let ids = page_ids(s, 0, 0, a, &key);
    assert_eq!(ids.len(), 4);
    let records: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(k, &id)| match k {
            0 => record(id, &[(0.25, 0.75, 500.0)]),
            1 => record(id, &[(0.5, 0.5, 300.0), (0.5, 0.5, 400.0)]),
            _ => record(id, &[]),
        })
        .collect();
    let sub = json!({"assignment": a, "key": key, "time_spent_ms": 4000, "images": records}).to_string();
    let url = format!("/api/hit/{}/page/0", s.tokens[0]);
    let (st, body) = http(s.addr, "POST", &url, Some(sub.as_bytes()));
    assert_eq!((st, json_of(&body)["status"].clone()), (200, json!("saved")));
    // A retried submission is acknowledged and changes nothing.
    let (st, body) = http(s.addr, "POST", &url, Some(sub.as_bytes()));
    assert_eq!((st, json_of(&body)["status"].clone()), (200, json!("already_saved")));
    rt.block_on(async {
        assert_eq!(s.db.count("pages").await.unwrap(), 1);
        assert_eq!(s.db.count("records").await.unwrap(), 4);
    });
    // The stored click is the submitted one, in image coordinates.
    let rows = rt.block_on(async {
        let (pid, _) = s.db.project_by_name("demo").await.unwrap().unwrap();
        s.db.export_rows(pid).await.unwrap()
    });
    let first = rows.iter().find(|r| r.selected).unwrap();
    let d: Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(d["selectedRecord"][0], json!({"x": 0.25, "y": 0.75, "time": 500.0}));
    assert_eq!(first.worker, s.key.hash_worker("A1B2C3"));
    assert!(!rows.iter().any(|r| r.worker.contains("A1B2C3")));
    assert_eq!(rows.iter().filter(|r| r.selected).count(), 1);

    // Quality control: one of the HIT's two pages is not enough.
    let verdicts = rt.block_on(labelscope_studio::qc::project_verdicts(&s.db, "demo", None)).unwrap();
    let v = verdicts.iter().find(|v| v.assignment == a).unwrap();
    assert_eq!((v.pages, v.selections, v.known), ((1, 2), (1, 4), (1, 1)));
    assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
    assert!(v.reasons[0].contains("1 of 2 pages"), "{:?}", v.reasons);

    let stats = rt.block_on(async {
        let (pid, _) = s.db.project_by_name("demo").await.unwrap().unwrap();
        s.db.worker_stats(pid).await.unwrap()
    });
    let w = stats.iter().find(|w| w.worker == s.key.hash_worker("A1B2C3")).unwrap();
    assert_eq!((w.assignments, w.pages, w.shown, w.selected, w.known_shown, w.known_selected), (1, 1, 4, 1, 1, 1));

    // Restarting the assignment reports the submitted page.
    let (st, body) = http(s.addr, "POST", &format!("/api/hit/{}/start", s.tokens[0]), Some(br#"{"worker": "A1B2C3"}"#));
    assert_eq!(st, 200);
    assert_eq!(json_of(&body)["submitted"], json!([0]));

    // Autosave and restore.
    let draft = json!({"assignment": a, "key": key, "draft": {"images": [record(ids[0], &[])]}}).to_string();
    let (st, _) = http(s.addr, "PUT", &format!("/api/hit/{}/draft/1", s.tokens[0]), Some(draft.as_bytes()));
    assert_eq!(st, 204);
    let (_, body) = http(s.addr, "GET", &format!("/api/hit/{}/page/1?assignment={a}&key={key}", s.tokens[0]), None);
    assert_eq!(json_of(&body)["draft"]["images"][0]["imageID"], json!(ids[0]));

    // Wrong key, other HIT's assignment, unknown token.
    let bad = json!({"assignment": a, "key": "0", "time_spent_ms": 1, "images": []}).to_string();
    assert_eq!(http(s.addr, "POST", &url, Some(bad.as_bytes())).0, 403);
    let (b, bkey) = begin(s, 2, "other");
    let cross = json!({"assignment": b, "key": bkey, "time_spent_ms": 1, "images": []}).to_string();
    assert_eq!(http(s.addr, "POST", &url, Some(cross.as_bytes())).0, 403);
    assert_eq!(http(s.addr, "GET", "/hit/00000000000000000000000000000000", None).0, 404);
    assert_eq!(http(s.addr, "GET", "/hit/..%2F..%2Fetc%2Fpasswd", None).0, 404);

    // Images: only those of the HIT; no path from the request.
    let (st, body) = http(s.addr, "GET", &format!("/img/{}/{}", s.tokens[0], ids[0]), None);
    assert_eq!(st, 200);
    assert!(body.starts_with(b"jpeg "));
    let cat_ids = page_ids(s, 2, 0, b, &bkey);
    assert_eq!(http(s.addr, "GET", &format!("/img/{}/{}", s.tokens[0], cat_ids[0]), None).0, 404);
    for p in ["/img/x/..%2Fsecret.txt", "/static/..%2F..%2FCargo.toml", "/static/secret.txt", "/images/secret.txt"] {
        let (st, body) = http(s.addr, "GET", p, None);
        assert!((400..500).contains(&st) && !String::from_utf8_lossy(&body).contains("outside"), "{p}: {st}");
    }

    // Class text is escaped in the page, including inside the embedded JSON.
    let (_, body) = http(s.addr, "GET", &format!("/hit/{}", s.tokens[2]), None);
    let html = String::from_utf8(body).unwrap();
    // The data element and our two script files, nothing else.
    assert_eq!(html.matches("<script").count(), 3, "{html}");
    let (_, body) = http(s.addr, "GET", &format!("/api/hit/{}/page/0?assignment={b}&key={bkey}", s.tokens[2]), None);
    assert_eq!(json_of(&body)["class"]["description"], json!("a <b>small</b> feline & friend"));

    // Admin page: key required; worker hashes only.
    let admin = server::admin_key(&s.key);
    assert_eq!(http(s.addr, "GET", "/admin/workers?key=nope", None).0, 403);
    let (st, body) = http(s.addr, "GET", &format!("/admin/workers?key={admin}"), None);
    assert_eq!(st, 200);
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(&s.key.hash_worker("A1B2C3")) && !html.contains("A1B2C3"), "{html}");

    // Request size limit.
    let big = vec![b' '; 300 << 10];
    assert_eq!(http(s.addr, "POST", &url, Some(&big)).0, 413);
}

fn fuzz(s: &Studio) {
    let (a, key) = begin(s, 1, "fuzzer");
    let ids = page_ids(s, 1, 0, a, &key);
    let good = json!({"assignment": a, "key": key, "time_spent_ms": 10,
                      "images": ids.iter().map(|&i| record(i, &[(0.5, 0.5, 100.0)])).collect::<Vec<_>>()})
    .to_string()
    .into_bytes();
    let url = format!("/api/hit/{}/page/0", s.tokens[1]);
    let saved = common::fuzz_posts(s.addr, &url, &good, 400);
    // Most mutations are rejected; the server is still healthy afterwards.
    assert!(saved < 400);
    let (st, _) = http(s.addr, "POST", &url, Some(&good));
    assert_eq!(st, 200);
}

fn export_round_trip(s: &Studio, rt: &tokio::runtime::Runtime, dir: &Path) {
    let out = dir.join("ab.tar.gz");
    let n = rt.block_on(labelscope_studio::export::imagenet_ab(&s.db, "demo", &out)).unwrap();
    assert!(n >= 4);
    let mut recs = Vec::new();
    labelscope_byproducts::imagenet::read_archive(&out, &Default::default(), |r| recs.push(r)).unwrap();
    assert_eq!(recs.len() as u64, n);
    let selected: Vec<_> = recs.iter().flat_map(|r| &r.showings).filter(|s| s.selected).collect();
    assert!(selected
        .iter()
        .any(|sh| sh.click.map(|c| (c.x, c.y)) == Some((0.25, 0.75)) && sh.estimate_time_ms == Some(440.0)));
    let tench = recs.iter().find(|r| r.image == "n01440764_0").unwrap();
    assert_eq!(tench.wnid.as_deref(), Some("n01440764"));
    assert_eq!(tench.size, Some((500, 375)));
    assert_eq!(tench.showings[0].trace.len(), 2);
    let csv = dir.join("records.csv");
    let rows = rt.block_on(labelscope_studio::export::csv_records(&s.db, "demo", &csv)).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count() as u64, rows + 1);
    assert!(text.contains(",1,1,0.25,0.75,500,"), "{text}");
    let ev = dir.join("events.csv");
    let events = rt.block_on(labelscope_studio::export::csv_events(&s.db, "demo", &ev)).unwrap();
    assert!(events > rows);
}

#[test]
fn sqlite_full_flow_fuzz_and_export() {
    let rt = runtime();
    let s = start(&rt, None);
    full_flow(&s, &rt);
    fuzz(&s);
    let dir = tempfile::tempdir().unwrap();
    export_round_trip(&s, &rt, dir.path());
}

#[test]
fn postgres_full_flow() {
    let rt = runtime();
    let Some(url) = common::pg_url(&rt, "api") else { return };
    let s = start(&rt, Some(url));
    full_flow(&s, &rt);
    fuzz(&s);
    let dir = tempfile::tempdir().unwrap();
    export_round_trip(&s, &rt, dir.path());
}

#[test]
fn migrations_are_idempotent_and_refuse_newer_schemas() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    migrations(&rt, dir.path().join("m.sqlite").display().to_string(), true);
}

#[test]
fn migrations_on_postgres() {
    let rt = runtime();
    if let Some(url) = common::pg_url(&rt, "migrate") {
        migrations(&rt, url, false);
    }
}

fn migrations(rt: &tokio::runtime::Runtime, path: String, sqlite: bool) {
    rt.block_on(async {
        let db = Db::open(&path).await.unwrap();
        assert_eq!(db.schema_version().await.unwrap(), 0);
        assert!(db.check_schema().await.is_err());
        // A database made by the first release keeps its rows through the later migrations.
        assert_eq!(db.migrate_to(1).await.unwrap(), vec![1]);
        assert_eq!(db.schema_version().await.unwrap(), 1);
        sqlx::raw_sql(
            "INSERT INTO projects (name, task, manifest, created_ms) VALUES ('old', 'browse', '{}', 0); \
             INSERT INTO images (project_id, name, file, class, known_positive) VALUES (1, 'a', 'a.jpg', 'n01440764', 1);",
        )
        .execute(db.pool())
        .await
        .unwrap();
        assert_eq!(db.migrate().await.unwrap(), vec![2, 3]);
        assert_eq!(db.migrate().await.unwrap(), Vec::<i64>::new());
        let images = db.project_images(1).await.unwrap();
        assert_eq!((images[0].name.as_str(), images[0].known_positive, images[0].extra.as_deref()), ("a", true, None));
        db.check_schema().await.unwrap();
        if sqlite {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(db.pool()).await.unwrap();
            assert_eq!(mode, "wal");
        }
        sqlx::query("INSERT INTO labelscope_migrations (version, name, applied_ms) VALUES (99, 'future', 0)")
            .execute(db.pool())
            .await
            .unwrap();
        let e = db.migrate().await.unwrap_err().to_string();
        assert!(e.contains("newer"), "{e}");
    });
}
