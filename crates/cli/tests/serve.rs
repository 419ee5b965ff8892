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
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "server exited before listening");
        if let Some(rest) = line.trim().strip_prefix("labelscope studio listening on http://") {
            let addr = rest.parse().unwrap();
            // Keep draining the log so the server never blocks on it.
            std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
            return (child, addr);
        }
    }
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
    let out = dir.path().join("events.csv");
    let st = bin()
        .args(["studio", "export", "--project", "k9", "--format", "records-csv", "--db"])
        .arg(dir.path().join("studio.sqlite"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let rows = std::fs::read_to_string(&out).unwrap().lines().count() - 1;
    assert!(rows >= acked.len() * 2, "{rows} rows for {} acknowledged pages", acked.len());
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
