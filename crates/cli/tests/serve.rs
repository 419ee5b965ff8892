//! `labelscope serve` as a process: pages acknowledged before a `kill -9`
//! are all there after a restart, and `studio export` writes them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_labelscope"))
}

fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(addr)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&out[..end]).to_string();
    let status: u16 =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other("bad status"))?;
    let v = serde_json::from_slice(&out[end + 4..]).unwrap_or(Value::Null);
    Ok((status, v))
}

/// Starts the server and returns it with its address (read from its log).
fn serve(dir: &Path, first: bool) -> (Child, SocketAddr) {
    let mut cmd = bin();
    cmd.args(["serve", "--db"])
        .arg(dir.join("studio.sqlite"))
        .arg("--images")
        .arg(dir.join("images"))
        .args(["--addr", "127.0.0.1:0"]);
    if first {
        cmd.arg("--manifest").arg(dir.join("m.json")).arg("--links").arg(dir.join("links.txt"));
    }
    listening(cmd)
}

/// Spawns a `serve` command and waits for its address (read from its log). The child goes back
/// to the caller, which stops it; if the server exits first, it is reaped before the panic.
#[allow(clippy::zombie_processes)]
fn listening(mut cmd: Command) -> (Child, SocketAddr) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut log = String::new();
    loop {
        line.clear();
        if err.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server exited before listening:\n{log}");
        }
        log.push_str(&line);
        if let Some(rest) = line.trim().strip_prefix("labelscope studio listening on http://") {
            let addr = rest.parse().unwrap();
            // Keep draining the log so the server never blocks on it.
            std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
            return (child, addr);
        }
    }
}

/// `labelscope studio export --format records-csv` of a project; the CSV text.
fn export_records(dir: &Path, project: &str) -> String {
    let out = dir.join("records.csv");
    let st = bin()
        .args(["studio", "export", "--project", project, "--format", "records-csv", "--db"])
        .arg(dir.join("studio.sqlite"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(&out).unwrap()
}

fn page(a: i64, key: &str, ids: &[i64]) -> Vec<u8> {
    let images: Vec<Value> = ids
        .iter()
        .map(|&id| {
            json!({"imageID": id, "originalSize": {"width": 4, "height": 3}, "onPageSize": {"width": 4, "height": 3},
                   "imagePosition": {"x": 0, "y": 0}, "hoveredRecord": [], "mouseTracking": [{"x": 0.5, "y": 0.5, "time": 1}],
                   "selectedRecord": [{"x": 0.5, "y": 0.5, "time": 2}], "selected": true})
        })
        .collect();
    json!({"assignment": a, "key": key, "time_spent_ms": 3, "images": images}).to_string().into_bytes()
}

#[test]
fn acknowledged_pages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut list = Vec::new();
    for i in 0..40 {
        std::fs::write(images.join(format!("im{i}.png")), b"png").unwrap();
        list.push(json!({"file": format!("im{i}.png"), "class": "n01440764"}));
    }
    let manifest = json!({"name": "k9", "task": "browse", "images_per_page": 2, "pages_per_hit": 20, "images": list});
    std::fs::write(dir.path().join("m.json"), manifest.to_string()).unwrap();

    let (mut child, addr) = serve(dir.path(), true);
    let links = std::fs::read_to_string(dir.path().join("links.txt")).unwrap();
    let token = links.lines().next().unwrap().rsplit('/').next().unwrap().to_string();
    assert_eq!(links.lines().count(), 1);

    // Four workers submit their 20 pages as fast as they can; the server is
    // killed while they do.
    let acked: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..4 {
        let (acked, stop, token) = (acked.clone(), stop.clone(), token.clone());
        threads.push(std::thread::spawn(move || {
            let worker = format!("worker{w}");
            let Ok((200, v)) = http(
                addr,
                "POST",
                &format!("/api/hit/{token}/start"),
                json!({"worker": worker}).to_string().as_bytes(),
            ) else {
                return;
            };
            let (a, key) = (v["assignment"].as_i64().unwrap(), v["key"].as_str().unwrap().to_string());
            for p in 0..20 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let q = format!("/api/hit/{token}/page/{p}?assignment={a}&key={key}");
                let Ok((200, pv)) = http(addr, "GET", &q, b"") else { return };
                let ids: Vec<i64> =
                    pv["images"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
                match http(addr, "POST", &format!("/api/hit/{token}/page/{p}"), &page(a, &key, &ids)) {
                    Ok((200, r)) if r["status"] == "saved" => acked.lock().unwrap().push((worker.clone(), p)),
                    Ok((st, r)) => panic!("page {p}: {st} {r}"),
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill once some pages are acknowledged, while others are in flight.
    let t0 = std::time::Instant::now();
    while acked.lock().unwrap().len() < 25 && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 25, "only {} pages acknowledged", acked.len());

    // Restart: every acknowledged page is stored.
    let (mut child, addr) = serve(dir.path(), false);
    for w in 0..4 {
        let worker = format!("worker{w}");
        let (st, v) =
            http(addr, "POST", &format!("/api/hit/{token}/start"), json!({"worker": worker}).to_string().as_bytes())
                .unwrap();
        assert_eq!(st, 200);
        let submitted: Vec<usize> =
            v["submitted"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as usize).collect();
        for (_, p) in acked.iter().filter(|(wk, _)| *wk == worker) {
            assert!(submitted.contains(p), "{worker} page {p} was acknowledged but is lost; stored: {submitted:?}");
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // Export: one record per image per acknowledged (or later committed) page.
    let rows = export_records(dir.path(), "k9").lines().count() - 1;
    assert!(rows >= acked.len() * 2, "{rows} rows for {} acknowledged pages", acked.len());

    // Quality control: every image is selected and none is a known positive,
    // so exactly the assignments with at least 18 of 20 pages are accepted.
    let qc =
        bin().args(["studio", "qc", "--project", "k9", "--db"]).arg(dir.path().join("studio.sqlite")).output().unwrap();
    assert!(qc.status.success(), "{}", String::from_utf8_lossy(&qc.stderr));
    let text = String::from_utf8(qc.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("assignment,hit,worker,pages,hit_pages,"), "{text}");
    assert_eq!(lines.len(), 5, "{text}");
    let col = |name: &str| lines[0].split(',').position(|h| h == name).unwrap_or_else(|| panic!("no {name}: {text}"));
    let (pages_col, hit_pages_col, accepted_col) = (col("pages"), col("hit_pages"), col("accepted"));
    for l in &lines[1..] {
        let f: Vec<&str> = l.split(',').collect();
        let pages: u32 = f[pages_col].parse().unwrap();
        assert_eq!(f[hit_pages_col], "20");
        assert_eq!(f[accepted_col], if pages >= 18 { "1" } else { "0" }, "{l}");
    }
}

#[test]
fn bad_manifest_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    std::fs::write(
        dir.path().join("m.json"),
        r#"{"name": "x", "task": "browse", "images": [{"file": "missing.jpg", "class": "n01440764"}]}"#,
    )
    .unwrap();
    let out = bin()
        .args(["studio", "create", "--db"])
        .arg(dir.path().join("s.sqlite"))
        .arg("--manifest")
        .arg(dir.path().join("m.json"))
        .arg("--images")
        .arg(dir.path().join("images"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("m.json") && err.contains("images[0].file") && err.contains("missing.jpg"), "{err}");
}

/// Where the browser test's Node modules are (installed by `.ci/run`).
fn e2e_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../studio/e2e")
}

/// The Chromium binary when it and the Node modules are installed; `None`
/// (skip) otherwise, which fails under `CI=true`.
fn chromium() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready = Path::new(&chromium).exists() && e2e_dir().join("node_modules/playwright-core").exists();
    if !ready {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but Chromium ({chromium}) or crates/studio/e2e/node_modules is missing (.ci/run installs them)"
        );
        eprintln!("skipped: needs {chromium} and `npm ci` in crates/studio/e2e");
        return None;
    }
    Some(chromium)
}

/// Runs a Playwright script of crates/studio/e2e; fails the test with its output when it fails.
fn node(chromium: &str, script: &str, args: &[&str]) {
    let run = Command::new("node").arg(e2e_dir().join(script)).args(args).env("CHROMIUM", chromium).output().unwrap();
    assert!(
        run.status.success(),
        "browser run {script} failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// `labelscope studio export --format records-jsonl`: the stored records, in order.
fn export_jsonl(dir: &Path, project: &str) -> Vec<Value> {
    let out = dir.join(format!("{project}.jsonl"));
    let o = bin()
        .args(["studio", "export", "--project", project, "--format", "records-jsonl", "--db"])
        .arg(dir.join("studio.sqlite"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A project folder with `n` generated PNGs (`{prefix}{i}.png`, w × h) and the manifest of `task`.
fn project_dir(
    prefix: &str,
    n: usize,
    (w, h): (u32, u32),
    manifest: impl Fn(Vec<Value>) -> Value,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut list = Vec::new();
    for i in 0..n {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x as usize + i) as u8, y as u8, 90]));
        let file = if n == 1 && prefix == "a" { "a.png".to_string() } else { format!("{prefix}{i}.png") };
        img.save(images.join(&file)).unwrap();
        list.push(json!({"file": file}));
    }
    std::fs::write(dir.path().join("m.json"), manifest(list).to_string()).unwrap();
    dir
}

fn first_link(dir: &Path, addr: SocketAddr) -> String {
    let links = std::fs::read_to_string(dir.join("links.txt")).unwrap();
    let token = links.lines().next().unwrap().rsplit('/').next().unwrap().to_string();
    format!("http://{addr}/hit/{token}")
}

fn close(f: f64, want: f64, pixels: f64) -> bool {
    (f - want).abs() <= 1.0 / pixels + 1e-9
}

#[test]
fn tag_task_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let dir = project_dir("t", 2, (400, 300), |images| {
        json!({"name": "tags", "task": "tag", "images": images, "categories": [
            {"name": "dog", "superclass": "animal"}, {"name": "cat", "superclass": "animal"},
            {"name": "person", "superclass": "person"}, {"name": "car", "superclass": "vehicle"}]})
    });
    let (mut child, addr) = serve(dir.path(), true);
    let out = dir.path().join("did.json");
    node(&chromium, "tag.mjs", &[&first_link(dir.path(), addr), out.to_str().unwrap()]);
    child.kill().unwrap();
    child.wait().unwrap();
    let did: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let recs = export_jsonl(dir.path(), "tags");
    assert_eq!(recs.len(), 2);
    assert_eq!(did["pages"][0]["used"], 1, "a placed category's icon is marked used");
    for (d, r) in did["pages"].as_array().unwrap().iter().zip(&recs) {
        assert_eq!(r["page"], d["page"]);
        let rec = &r["record"];
        let (w, h) = (d["width"].as_f64().unwrap(), d["height"].as_f64().unwrap());
        let want = d["actions"].as_array().unwrap();
        let got = rec["actionHistories"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{rec}");
        for (g, x) in got.iter().zip(want) {
            assert_eq!((&g["actionType"], &g["iconType"]), (&x["type"], &x["icon"]), "{g}");
            let p = if x["type"] == "remove" { &g["pointFrom"] } else { &g["pointTo"] };
            let (px, py) = (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap());
            assert!(close(px, x["x"].as_f64().unwrap(), w) && close(py, x["y"].as_f64().unwrap(), h), "{g} vs {x}");
        }
        let tabs: Vec<(Value, Value)> = rec["categoryHistories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["superclass"].clone(), c["keyboard"].clone()))
            .collect();
        let want_tabs: Vec<(Value, Value)> =
            d["tabs"].as_array().unwrap().iter().map(|c| (c["superclass"].clone(), c["keyboard"].clone())).collect();
        assert_eq!(tabs, want_tabs);
        assert_eq!(rec["originalSize"], json!({"width": 400.0, "height": 300.0}));
        assert!(rec["timeSpent"].as_f64().unwrap() > 0.0);
    }
    // The move starts where the add put the icon; the final icons.
    let a0 = &recs[0]["record"]["actionHistories"];
    assert_eq!(a0[1]["pointFrom"], a0[0]["pointTo"]);
    let icons: Vec<&str> =
        recs[0]["record"]["icons"].as_array().unwrap().iter().map(|i| i["iconType"].as_str().unwrap()).collect();
    assert_eq!(icons, ["dog", "cat"]);
    assert_eq!(recs[1]["record"]["icons"].as_array().unwrap().len(), 1);
    assert!(!recs[0]["record"]["mouseTracking"].as_array().unwrap().is_empty(), "mouse trace recorded");
    // And the COCO-AB export holds the same actions.
    let coco = dir.path().join("coco.json");
    let o = bin()
        .args(["studio", "export", "--project", "tags", "--format", "coco-ab", "--db"])
        .arg(dir.path().join("studio.sqlite"))
        .arg("-o")
        .arg(&coco)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let arr: Value = serde_json::from_slice(&std::fs::read(&coco).unwrap()).unwrap();
    assert_eq!(arr[0]["actionHistories"], recs[0]["record"]["actionHistories"]);
}

#[test]
fn verify_task_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let dir = project_dir("v", 2, (300, 200), |images| {
        let images: Vec<Value> = images
            .into_iter()
            .map(|mut i| {
                i["class"] = json!("n02085620");
                i["proposed"] = json!(["n02085620", "n02123045"]);
                i
            })
            .collect();
        json!({"name": "checks", "task": "verify", "images": images})
    });
    let (mut child, addr) = serve(dir.path(), true);
    let out = dir.path().join("did.json");
    node(&chromium, "verify.mjs", &[&first_link(dir.path(), addr), out.to_str().unwrap()]);
    child.kill().unwrap();
    child.wait().unwrap();
    let did: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(did["labels"], json!(["n02085620", "n02123045"]));
    let recs = export_jsonl(dir.path(), "checks");
    assert_eq!(recs.len(), 2);
    for (d, r) in did["pages"].as_array().unwrap().iter().zip(&recs) {
        let rec = &r["record"];
        assert_eq!(d["early"], true, "submit waits for every label");
        let answers: Vec<Value> =
            rec["answers"].as_array().unwrap().iter().map(|a| json!([a["label"], a["answer"]])).collect();
        assert_eq!(Value::Array(answers), d["answers"]);
        assert_eq!(rec["answerHistory"].as_array().unwrap().len() as u64, d["clicks"].as_u64().unwrap());
        for f in ["wrong_original_label", "drawing", "heavy_edit", "inappropriate"] {
            let want = d["flags"].as_array().unwrap().iter().any(|x| x == f);
            assert_eq!(rec["flags"][f], json!(want), "{f}");
        }
        assert_eq!(rec["alternative"], d["alternative"]);
    }
    assert_eq!(recs[0]["record"]["answerHistory"][0]["answer"], "maybe", "the changed answer is kept");
    assert!(!recs[0]["record"]["mouseTracking"].as_array().unwrap().is_empty());
    // Aggregation of the one worker: Chihuahua yes on both images; tabby no / maybe.
    let labels = dir.path().join("labels.json");
    let o = bin()
        .args(["studio", "aggregate", "--project", "checks", "--method", "majority", "--db"])
        .arg(dir.path().join("studio.sqlite"))
        .arg("-o")
        .arg(&labels)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sets: Value = serde_json::from_slice(&std::fs::read(&labels).unwrap()).unwrap();
    assert_eq!(sets, json!({"v0": [151], "v1": [151]}));
}

/// Draws a box in the Region page; returns the stored record of the page.
fn region_run(chromium: &str, dir: &Path, extra: &[&str], query: &str) -> (Value, Value) {
    let mut cmd = bin();
    cmd.args(["serve", "--db"])
        .arg(dir.join("studio.sqlite"))
        .arg("--images")
        .arg(dir.join("images"))
        .args(["--addr", "127.0.0.1:0", "--manifest"])
        .arg(dir.join("m.json"))
        .arg("--links")
        .arg(dir.join("links.txt"))
        .args(extra);
    let (mut child, addr) = listening(cmd);
    let out = dir.join("did.json");
    node(chromium, "region.mjs", &[&first_link(dir, addr), out.to_str().unwrap(), query]);
    child.kill().unwrap();
    child.wait().unwrap();
    let did: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let recs = export_jsonl(dir, "boxes");
    assert_eq!(recs.len(), 1);
    (did["pages"][0].clone(), recs[0]["record"].clone())
}

#[path = "support/region_model.rs"]
mod region_model;

#[test]
fn region_task_in_headless_chromium_with_search_and_with_the_region_model() {
    let Some(chromium) = chromium() else { return };
    let manifest = |images: Vec<Value>| json!({"name": "boxes", "task": "region", "images": images});
    // Class-name search.
    let dir = project_dir("a", 1, (448, 448), manifest);
    let (d, rec) = region_run(&chromium, dir.path(), &[], "tabby");
    assert_eq!(d["model"], false);
    let r = &rec["regions"][0];
    assert_eq!(rec["regions"].as_array().unwrap().len(), 1, "the cancelled box is not stored");
    assert_eq!(
        (r["label"].as_str(), r["source"].as_str(), r["query"].as_str()),
        (Some("n02123045"), Some("search"), Some("tabby"))
    );
    let (w, h) = (d["width"].as_f64().unwrap(), d["height"].as_f64().unwrap());
    let want = d["box"].as_array().unwrap();
    for (k, key) in ["x0", "y0", "x1", "y1"].iter().enumerate() {
        let size = if k % 2 == 0 { w } else { h };
        assert!(close(r["box"][key].as_f64().unwrap(), want[k].as_f64().unwrap(), size), "{key}: {r}");
    }
    assert!(r["drawTrace"].as_array().unwrap().len() >= 3, "drawing trace: {r}");

    // The relabel region query: a cache of image "a" and a head over the classes cat, dog, car.
    let dir = project_dir("a", 1, (448, 448), manifest);
    let cache = dir.path().join("cache");
    region_model::write_cache(&cache);
    let head = dir.path().join("head.safetensors");
    region_model::write_head(&head, 3);
    let classes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../relabel/tests/fixtures/quality/classes.txt");
    let args = [
        "--region-cache",
        cache.to_str().unwrap(),
        "--region-head",
        head.to_str().unwrap(),
        "--classes",
        classes.to_str().unwrap(),
    ];
    let (d, rec) = region_run(&chromium, dir.path(), &args, "");
    assert_eq!(d["model"], true);
    let r = &rec["regions"][0];
    assert_eq!(r["source"], "model");
    // The same box through `labelscope relabel query` on the 448 x 448 image: the same ranking.
    let b: Vec<f64> = ["x0", "y0", "x1", "y1"].iter().map(|k| r["box"][k].as_f64().unwrap() * 448.0).collect();
    let o = bin()
        .args(["relabel", "query", "--cache", cache.to_str().unwrap(), "--head", head.to_str().unwrap(), "--classes"])
        .arg(&classes)
        .args(["--image", "a", "--image-size", "448,448", "--top", "3", "--json", "--box"])
        .arg(format!("{},{},{},{}", b[0], b[1], b[2], b[3]))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let q: Value = serde_json::from_slice(&o.stdout).unwrap();
    // The class list's ids are c0, c1, ... by index.
    let names: Vec<String> =
        q["classes"].as_array().unwrap().iter().map(|c| format!("c{}", c["class"].as_u64().unwrap())).collect();
    let stored: Vec<&str> = r["suggestions"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(stored, names);
    assert_eq!(r["label"].as_str(), Some(names[0].as_str()));
    assert_eq!(d["wnid"].as_str(), Some(names[0].as_str()));
}

#[test]
fn browse_task_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut list = Vec::new();
    for i in 0..7 {
        let img = image::RgbImage::from_fn(200, 100, |x, y| image::Rgb([(x + i) as u8, y as u8, 128]));
        img.save(images.join(format!("n01440764_{i}.png"))).unwrap();
        list.push(json!({"file": format!("n01440764_{i}.png"), "class": "n01440764"}));
    }
    let manifest = json!({"name": "web", "task": "browse", "images_per_page": 4, "pages_per_hit": 10,
                          "pointer_nudge": true, "images": list});
    std::fs::write(dir.path().join("m.json"), manifest.to_string()).unwrap();
    let (mut child, addr) = serve(dir.path(), true);
    let links = std::fs::read_to_string(dir.path().join("links.txt")).unwrap();
    let token = links.lines().next().unwrap().rsplit('/').next().unwrap().to_string();
    let out = dir.path().join("did.json");
    node(&chromium, "browse.mjs", &[&format!("http://{addr}/hit/{token}"), "2", out.to_str().unwrap()]);
    child.kill().unwrap();
    child.wait().unwrap();
    let did: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(did["nudge"], json!(true), "the pointer-nudge instruction is shown");
    let did = did["images"].as_array().unwrap().clone();
    assert_eq!(did.len(), 7);

    // What the database holds, through the CSV export.
    let text = export_records(dir.path(), "web");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_string).collect()).collect();
    assert_eq!(rows.len(), 7);
    let images_of_page: std::collections::HashMap<String, i64> =
        rows.iter().map(|r| (r[col("image")].clone(), r[col("page")].parse().unwrap())).collect();
    assert_eq!(images_of_page.values().filter(|&&p| p == 0).count(), 4);
    // Map image ids of the browser run to names through the order of the manifest (ids follow it).
    let first_id = did.iter().map(|d| d["imageID"].as_i64().unwrap()).min().unwrap();
    for d in &did {
        let name = format!("n01440764_{}", d["imageID"].as_i64().unwrap() - first_id);
        let r = rows.iter().find(|r| r[col("image")] == name).unwrap_or_else(|| panic!("{name} not exported"));
        let clicks = d["clicks"].as_u64().unwrap();
        assert_eq!(r[col("clicks")], clicks.to_string(), "{name}");
        assert_eq!(r[col("selected")], if clicks % 2 == 1 { "1" } else { "0" }, "{name}");
        assert_eq!((r[col("original_width")].as_str(), r[col("original_height")].as_str()), ("200", "100"), "{name}");
        assert!(r[col("trace_samples")].parse::<u32>().unwrap() >= 3, "{name}: trace recorded");
        assert!(r[col("hovers")].parse::<u32>().unwrap() >= 1, "{name}: hover recorded");
        if clicks > 0 {
            // The scripted click lands at a known fraction of the image (within a pixel of 150x75).
            let x: f64 = r[col("final_click_x")].parse().unwrap();
            let y: f64 = r[col("final_click_y")].parse().unwrap();
            let (fx, fy) = (d["x"].as_f64().unwrap(), d["y"].as_f64().unwrap());
            let (w, h) = (d["width"].as_f64().unwrap(), d["height"].as_f64().unwrap());
            assert!((x - fx).abs() <= 1.0 / w && (y - fy).abs() <= 1.0 / h, "{name}: click ({x}, {y}) vs ({fx}, {fy})");
        }
    }
}

#[test]
fn label_task_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let dir = project_dir("l", 2, (300, 200), |images| {
        let images: Vec<Value> = images
            .into_iter()
            .map(|mut i| {
                i["gold"] = json!("n02085620");
                i
            })
            .collect();
        json!({"name": "labels", "task": "label", "images": images})
    });
    let (mut child, addr) = serve(dir.path(), true);
    let out = dir.path().join("did.json");
    node(&chromium, "label.mjs", &[&first_link(dir.path(), addr), out.to_str().unwrap()]);
    child.kill().unwrap();
    child.wait().unwrap();
    let did: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let recs = export_jsonl(dir.path(), "labels");
    assert_eq!(recs.len(), 2);
    for (d, r) in did["pages"].as_array().unwrap().iter().zip(&recs) {
        assert_eq!((&d["early"], &d["waits"]), (&json!(true), &json!(true)), "submit waits for the choices");
        let rec = &r["record"];
        assert_eq!(rec["labelHistory"].as_array().unwrap().len() as u64, d["choices"].as_u64().unwrap());
        assert_eq!(rec["escape"], json!(d["alternative"] != ""));
    }
    assert!(!recs[0]["record"]["mouseTracking"].as_array().unwrap().is_empty(), "mouse trace recorded");
    // The answers export: one file for the one labeler, named by the worker hash, as clicked.
    let answers = dir.path().join("answers");
    let o = bin()
        .args(["studio", "export", "--project", "labels", "--format", "answers-csv", "--db"])
        .arg(dir.path().join("studio.sqlite"))
        .arg("-o")
        .arg(&answers)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files: Vec<_> = std::fs::read_dir(&answers).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    let stem = files[0].file_stem().unwrap().to_str().unwrap().to_string();
    assert!(stem.len() == 32 && stem.chars().all(|c| c.is_ascii_hexdigit()), "{stem}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["image", "label", "alternative", "time"]);
    assert_eq!(rows.len(), 3, "{text}");
    for (row, d) in rows[1..].iter().zip(did["pages"].as_array().unwrap()) {
        assert_eq!(row[0], format!("l{}", d["page"]));
        assert_eq!((row[1], row[2]), (d["label"].as_str().unwrap(), d["alternative"].as_str().unwrap()));
        assert!(row[3].parse::<f64>().unwrap() > 0.0, "page time in seconds: {text}");
    }
    // Gold (Chihuahua) on both images: page 1 right, page 2 (tench) wrong.
    let o = bin()
        .args(["studio", "qc", "--project", "labels", "--db"])
        .arg(dir.path().join("studio.sqlite"))
        .output()
        .unwrap();
    let qc = String::from_utf8_lossy(&o.stdout);
    assert!(qc.lines().nth(1).is_some_and(|l| l.contains(",1,2,0,0,0,")), "{qc}");
}
