//! Helpers shared by the studio's integration tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::Value;

/// A minimal HTTP/1.1 client: returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let body = body.unwrap_or(b"");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) before reading a large body.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text_end = out.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&out[..text_end]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = out[text_end + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

pub fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// Starts the HIT `token` as `worker`: (assignment id, assignment key).
pub fn start_hit(addr: SocketAddr, token: &str, worker: &str) -> (i64, String) {
    let body = serde_json::json!({ "worker": worker }).to_string();
    let (st, body) = http(addr, "POST", &format!("/api/hit/{token}/start"), Some(body.as_bytes()));
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    (v["assignment"].as_i64().unwrap(), v["key"].as_str().unwrap().to_string())
}

/// Page `i` of the HIT `token` for the assignment `(a, key)`.
pub fn get_page(addr: SocketAddr, token: &str, i: usize, (a, key): &(i64, String)) -> Value {
    let (st, body) = http(addr, "GET", &format!("/api/hit/{token}/page/{i}?assignment={a}&key={key}"), None);
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    json_of(&body)
}

/// A small multi-threaded runtime for the servers under test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A xorshift generator (deterministic fuzzing).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Posts `rounds` mutations of the valid body `good` to `url`: byte-level
/// (flipped, removed, inserted JSON specials, truncation) for half of them,
/// and structural for the other half (a random value anywhere in the JSON
/// replaced by another type, an out-of-range number, a long string, a huge
/// array, or a key removed). Every answer must be below 500. Returns how
/// many were accepted (200).
pub fn fuzz_posts(addr: SocketAddr, url: &str, good: &[u8], rounds: usize) -> usize {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ good.len() as u64);
    let specials: &[&[u8]] =
        &[b"null", b"-1", b"1e400", b"\"", b"[", b"}", b"{}", b"\"\\ud800\"", b"9999999999999999999999", b"true"];
    let parsed: Value = serde_json::from_slice(good).unwrap();
    let mut saved = 0;
    for round in 0..rounds {
        let b = if round % 2 == 0 {
            let mut b = good.to_vec();
            for _ in 0..1 + rng.below(4) {
                if b.is_empty() {
                    break;
                }
                let pos = rng.below(b.len());
                match rng.below(4) {
                    0 => b[pos] = rng.below(256) as u8,
                    1 => {
                        b.remove(pos);
                    }
                    2 => {
                        let sp = specials[rng.below(specials.len())];
                        b.splice(pos..pos, sp.iter().copied());
                    }
                    _ => b.truncate(pos),
                }
            }
            b
        } else {
            let mut v = parsed.clone();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut v, &mut rng);
            }
            v.to_string().into_bytes()
        };
        let (st, body) = http(addr, "POST", url, Some(&b));
        assert!(st < 500, "round {round}: {st} {}", String::from_utf8_lossy(&body));
        if st == 200 {
            saved += 1;
        }
    }
    saved
}

/// Replaces one random value inside `v` (never the assignment or key, so
/// that the validators behind authorisation are reached).
fn mutate(v: &mut Value, rng: &mut Rng) {
    let descend = rng.below(4) != 0;
    match v {
        Value::Object(m) if descend => {
            let keys: Vec<String> = m.keys().filter(|k| *k != "assignment" && *k != "key").cloned().collect();
            if !keys.is_empty() {
                let k = keys[rng.below(keys.len())].clone();
                if rng.below(8) == 0 {
                    m.remove(&k);
                } else if let Some(child) = m.get_mut(&k) {
                    mutate(child, rng);
                }
                return;
            }
        }
        Value::Array(a) if descend && !a.is_empty() => {
            let i = rng.below(a.len());
            mutate(&mut a[i], rng);
            return;
        }
        _ => {}
    }
    *v = match rng.below(10) {
        0 => Value::Null,
        1 => serde_json::json!(-1),
        2 => serde_json::json!(1e300),
        3 => serde_json::json!("x".repeat(rng.below(5000))),
        4 => serde_json::json!([]),
        5 => serde_json::json!({}),
        6 => serde_json::json!(true),
        7 => Value::Array(vec![serde_json::json!({"x": 0.5, "y": 0.5, "time": 1}); 25_000]),
        8 => serde_json::json!("</script><img src=x onerror=alert(1)>"),
        _ => serde_json::json!(u64::MAX),
    };
}

/// A fresh schema on the PostgreSQL server of `LABELSCOPE_TEST_POSTGRES` (its URL), or `None`
/// (skip) when the variable is not set, which fails under `CI=true`.
pub fn pg_url(rt: &tokio::runtime::Runtime, tag: &str) -> Option<String> {
    let Ok(url) = std::env::var("LABELSCOPE_TEST_POSTGRES") else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but LABELSCOPE_TEST_POSTGRES is not set");
        eprintln!("skipped: set LABELSCOPE_TEST_POSTGRES=postgres://... to run against PostgreSQL");
        return None;
    };
    let schema = format!("t{}_{tag}", std::process::id());
    rt.block_on(async {
        let db = labelscope_studio::db::Db::open(&url).await.unwrap();
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
            .execute(db.pool())
            .await
            .unwrap();
        db.close().await;
    });
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

/// Serves the studio router over `db` on 127.0.0.1 (a free port) from a task of `rt`; the address.
pub fn spawn_server(
    db: labelscope_studio::db::Db,
    key: labelscope_studio::secret::WorkerKey,
    config: &labelscope_studio::server::ServerConfig,
) -> SocketAddr {
    let router = labelscope_studio::server::router(db, key, config).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, router).await.unwrap()
    });
    addr
}
