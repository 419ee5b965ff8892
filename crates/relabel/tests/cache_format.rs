//! Feature cache: on-disk format, round trips, f16 rounding against hand
//! values, shards readable by an independent safetensors reader (core's) and
//! by a numpy-only Python reader (tests/reference/read_feature_cache.py).

use std::path::{Path, PathBuf};
use std::process::Command;

use labelscope_relabel::cache::{
    finalize, CacheSpec, CacheWriter, FeatureCache, ImageFeatures, Shard, TokenKind, HEADER_BYTES,
};

/// Test value of image `k`, record row `t` (row 0 is the CLS row when
/// stored), channel `c`: a multiple of 7/512 in [-6.84, 6.82], exact in
/// f32; about half of them need rounding to f16 (11 significant bits), some
/// are exact ties. The Python reference computes the same formula.
fn value(k: u64, t: usize, c: usize) -> f32 {
    let n = (k * 131 + t as u64 * 17 + c as u64 * 7) % 1000;
    (n as f32 - 500.0) * 0.013671875
}

/// Grid of image `k`: 1..3 rows, 2..3 columns.
fn grid(k: u64) -> (usize, usize) {
    (1 + (k % 3) as usize, 2 + (k % 2) as usize)
}

/// Round to the nearest f16, ties to even, by hand in f64: in the binade
/// [2^e, 2^(e+1)) (e >= -14; below, the subnormal spacing of 2^-14's binade)
/// f16 values are spaced 2^(e-10).
fn f16_round(x: f64) -> f64 {
    if x == 0.0 {
        return x;
    }
    let e = x.abs().log2().floor().max(-14.0);
    let spacing = 2f64.powf(e - 10.0);
    ((x.abs() / spacing).round_ties_even() * spacing).copysign(x)
}

struct Img {
    id: String,
    k: u64,
    h: usize,
    w: usize,
    patches: Vec<f32>,
    cls: Option<Vec<f32>>,
}

fn make(id: &str, k: u64, dim: usize, cls: bool) -> Img {
    let (h, w) = grid(k);
    let off = usize::from(cls);
    let patches = (0..h * w).flat_map(|t| (0..dim).map(move |c| value(k, t + off, c))).collect();
    let cls = cls.then(|| (0..dim).map(|c| value(k, 0, c)).collect());
    Img { id: id.to_string(), k, h, w, patches, cls }
}

fn view(img: &Img) -> ImageFeatures<'_> {
    ImageFeatures { id: &img.id, h: img.h, w: img.w, patches: &img.patches, cls: img.cls.as_deref() }
}

fn spec(dim: usize, cls: bool) -> CacheSpec {
    CacheSpec { backbone: "dino_vits8".into(), recipe: "resize256-crop224".into(), tokens: TokenKind::Patch, dim, cls }
}

/// 13 images, ids `img000`.. plus one with characters that need JSON escapes.
fn images(dim: usize, cls: bool) -> Vec<Img> {
    let mut v: Vec<Img> = (0..12).map(|k| make(&format!("img{k:03}"), k, dim, cls)).collect();
    v.push(make("we ird/ü\"x\\", 99, dim, cls));
    v
}

/// Writes `imgs` into `n` shards (shard order n-1..0, batches of 3 or
/// single appends), finishes each shard and finalizes. Returns the expected
/// storage order.
fn write_cache(dir: &Path, imgs: &[Img], dim: usize, cls: bool, n: usize) -> Vec<String> {
    let all: Vec<&str> = imgs.iter().map(|i| i.id.as_str()).collect();
    let mut per_shard = Vec::new();
    for s in (0..n).rev() {
        let shard = Shard::new(s, n).unwrap();
        let mine = shard.select(&all).unwrap();
        // Write in reverse sorted order, so storage order differs from sorted order.
        let todo: Vec<&Img> = mine.iter().rev().map(|id| imgs.iter().find(|i| &i.id == id).unwrap()).collect();
        let mut w = CacheWriter::open(dir, &spec(dim, cls), shard).unwrap();
        if s % 2 == 0 {
            for chunk in todo.chunks(3) {
                let batch: Vec<ImageFeatures> = chunk.iter().map(|i| view(i)).collect();
                assert_eq!(w.append_batch(&batch).unwrap(), chunk.len());
            }
        } else {
            for i in &todo {
                assert!(w.append(&view(i)).unwrap());
            }
            w.sync().unwrap();
        }
        w.finish(&mine).unwrap();
        per_shard.push((s, todo.iter().map(|i| i.id.clone()).collect::<Vec<_>>()));
    }
    per_shard.sort();
    finalize(dir, &all).unwrap();
    per_shard.into_iter().flat_map(|(_, ids)| ids).collect()
}

#[test]
fn round_trip_two_shards_with_cls() {
    let dir = tempfile::tempdir().unwrap();
    let (dim, cls) = (8, true);
    let imgs = images(dim, cls);
    let order = write_cache(dir.path(), &imgs, dim, cls, 2);

    // Layout: exactly these files.
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cache.json",
            "complete.json",
            "shard-00000-of-00002.done.json",
            "shard-00000-of-00002.index.jsonl",
            "shard-00000-of-00002.safetensors",
            "shard-00001-of-00002.done.json",
            "shard-00001-of-00002.index.jsonl",
            "shard-00001-of-00002.safetensors",
        ]
    );
    // cache.json read as plain JSON.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cache.json")).unwrap()).unwrap();
    assert_eq!(meta["format"], "labelscope-feature-cache");
    assert_eq!(meta["version"], 1);
    assert_eq!(meta["backbone"], "dino_vits8");
    assert_eq!(meta["recipe"], "resize256-crop224");
    assert_eq!(meta["tokens"], "patch");
    assert_eq!(meta["dim"], 8);
    assert_eq!(meta["cls"], true);
    assert_eq!(meta["dtype"], "F16");
    assert_eq!(meta["shards"], 2);
    assert_eq!(meta["header_bytes"], 4096);
    assert!(meta["created"]["by"].as_str().unwrap().starts_with("labelscope-relabel "));
    assert!(meta["created"]["unix_seconds"].as_u64().unwrap() > 1_700_000_000);

    let cache = FeatureCache::open(dir.path()).unwrap();
    assert_eq!(cache.len(), 13);
    assert_eq!(cache.summary().map(|s| s.images), Some(13));
    // Storage order: shard 0 in write order, then shard 1.
    assert_eq!(cache.ids().collect::<Vec<_>>(), order);
    cache.verify().unwrap();
    for img in &imgs {
        let f = cache.get(&img.id).unwrap();
        assert_eq!((f.id, f.h, f.w, f.dim), (img.id.as_str(), img.h, img.w, dim));
        let want: Vec<f32> = img.patches.iter().map(|&x| f16_round(f64::from(x)) as f32).collect();
        assert_eq!(f.patches_f32(), want, "{}", img.id);
        let want_cls: Vec<f32> = (0..dim).map(|c| f16_round(f64::from(value(img.k, 0, c))) as f32).collect();
        assert_eq!(f.cls_f32().unwrap(), want_cls);
        let mut out = vec![0f32; f.patches.len()];
        f.patches.copy_to_f32(&mut out).unwrap();
        assert_eq!(out, want);
    }
    // Iteration in storage order gives the same records as lookups by id.
    for (i, f) in cache.iter().enumerate() {
        let f = f.unwrap();
        assert_eq!(f.id, order[i]);
        assert_eq!(f.patches.as_bytes(), cache.get(&order[i]).unwrap().patches.as_bytes());
    }
    // Some values really were rounded (the test exercises rounding).
    let rounded =
        imgs.iter().flat_map(|i| i.patches.iter()).filter(|&&x| f16_round(f64::from(x)) != f64::from(x)).count();
    assert!(rounded > 50, "{rounded}");
}

#[test]
fn shards_are_valid_safetensors_for_an_independent_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (dim, cls) = (8, false);
    let imgs = images(dim, cls);
    write_cache(dir.path(), &imgs, dim, cls, 3);
    let cache = FeatureCache::open(dir.path()).unwrap();
    for s in 0..3 {
        let shard = Shard::new(s, 3).unwrap();
        let path = shard.data_path(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), HEADER_BYTES - 8);
        let st = labelscope_core::npy::SafeTensors::open(&path).unwrap();
        assert_eq!(st.names(), ["features"]);
        let t = st.read("features").unwrap();
        let rows: usize = cache.records().iter().filter(|r| r.shard == s).map(|r| r.h * r.w).sum();
        assert_eq!(t.shape(), [rows, dim]);
        let all = t.to_f32_vec(&path, "features").unwrap();
        // Index lines read as plain JSON: rows are contiguous in write order.
        let index = std::fs::read_to_string(shard.index_path(dir.path())).unwrap();
        let mut next = 0;
        for line in index.lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = r["id"].as_str().unwrap();
            let img = imgs.iter().find(|i| i.id == id).unwrap();
            assert_eq!(r["row"].as_u64().unwrap() as usize, next);
            assert_eq!((r["h"].as_u64().unwrap() as usize, r["w"].as_u64().unwrap() as usize), (img.h, img.w));
            let n = img.h * img.w * dim;
            let got = &all[next * dim..next * dim + n];
            let want: Vec<f32> = img.patches.iter().map(|&x| f16_round(f64::from(x)) as f32).collect();
            assert_eq!(got, &want[..], "{id}");
            next += img.h * img.w;
        }
        assert_eq!(next, rows);
    }
}

#[test]
fn f16_rounding_matches_hand_values() {
    let dir = tempfile::tempdir().unwrap();
    // value, expected f16 bits, expected value back (hand-computed; the decimals are the exact
    // binary values, more digits than an f32 literal needs):
    #[allow(clippy::excessive_precision)]
    let table: [(f32, u16, f32); 16] = [
        (1.0, 0x3C00, 1.0),
        (0.1, 0x2E66, 0.0999755859375),                 // 1638.4/16384 -> 1638 * 2^-14
        (1.0 / 3.0, 0x3555, 0.333251953125),            // 1365.33 * 2^-12 -> 1365 * 2^-12
        (65504.0, 0x7BFF, 65504.0),                     // largest finite
        (65519.0, 0x7BFF, 65504.0),                     // below the tie with infinity
        (1.0 + 1.0 / 2048.0, 0x3C00, 1.0),              // tie between 1 and 1+2^-10: even (1.0)
        (1.0 + 3.0 / 2048.0, 0x3C02, 1.001953125),      // tie between 1+2^-10 and 1+2^-9: even (1+2^-9)
        (2f32.powi(-24), 0x0001, 2f32.powi(-24)),       // smallest subnormal
        (2f32.powi(-25), 0x0000, 0.0),                  // tie between 0 and 2^-24: even (0)
        (3.0 * 2f32.powi(-25), 0x0002, 2f32.powi(-23)), // tie between 2^-24 and 2^-23: even
        (-2.5, 0xC100, -2.5),
        (0.0, 0x0000, 0.0),
        (-0.0, 0x8000, -0.0),
        (2f32.powi(-14), 0x0400, 2f32.powi(-14)), // smallest normal
        (2049.0, 0x6800, 2048.0),                 // spacing 2 above 2048: tie -> even (2048)
        (2051.0, 0x6802, 2052.0),                 // tie -> even (2052)
    ];
    let dim = 4;
    let values: Vec<f32> = table.iter().map(|t| t.0).collect();
    let spec = CacheSpec { backbone: "b".into(), recipe: "r".into(), tokens: TokenKind::Key, dim, cls: false };
    let mut w = CacheWriter::open(dir.path(), &spec, Shard::ALL).unwrap();
    w.append_batch(&[ImageFeatures { id: "x", h: 2, w: 2, patches: &values, cls: None }]).unwrap();
    w.finish(&["x"]).unwrap();
    let cache = FeatureCache::open(dir.path()).unwrap();
    let f = cache.get("x").unwrap();
    assert!(f.cls.is_none());
    for (i, &(x, bits, back)) in table.iter().enumerate() {
        assert_eq!(f.patches.bits(i), Some(bits), "{x}");
        let got = f.patches.get(i).unwrap();
        assert_eq!(got.to_bits(), back.to_bits(), "{x}: {got} vs {back}");
    }
    assert_eq!(f.patches.get(16), None);
}

#[test]
fn values_outside_f16_are_refused_naming_image_row_and_channel() {
    let dir = tempfile::tempdir().unwrap();
    let spec = CacheSpec { backbone: "b".into(), recipe: "r".into(), tokens: TokenKind::Patch, dim: 2, cls: false };
    let mut w = CacheWriter::open(dir.path(), &spec, Shard::ALL).unwrap();
    let ok = [1.0, 2.0];
    let big = [1.0, 2.0, 3.0, 65520.0]; // rounds to infinity
    let nan = [f32::NAN, 0.0];
    let batch = [
        ImageFeatures { id: "ok", h: 1, w: 1, patches: &ok, cls: None },
        ImageFeatures { id: "big", h: 1, w: 2, patches: &big, cls: None },
    ];
    let e = w.append_batch(&batch).unwrap_err().to_string();
    assert!(e.contains("\"big\"") && e.contains("row 1, channel 1") && e.contains("65504"), "{e}");
    // Nothing of the refused batch was written.
    assert!(w.is_empty());
    let e = w.append(&ImageFeatures { id: "nan", h: 1, w: 1, patches: &nan, cls: None }).unwrap_err().to_string();
    assert!(e.contains("\"nan\"") && e.contains("row 0, channel 0") && e.contains("not finite"), "{e}");
    assert!(w.append(&batch[0]).unwrap());
    w.finish(&["ok"]).unwrap();
    assert_eq!(FeatureCache::open(dir.path()).unwrap().get("ok").unwrap().patches_f32(), [1.0, 2.0]);
}

fn python_with_numpy() -> Option<&'static str> {
    let ok = Command::new("python3").args(["-c", "import numpy"]).output().map(|o| o.status.success()).unwrap_or(false);
    if ok {
        return Some("python3");
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("python3 with numpy is required when CI=true");
    }
    eprintln!("skipping: python3 with numpy is not available");
    None
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/read_feature_cache.py")
}

#[test]
fn numpy_reader_reads_what_rust_wrote() {
    let Some(py) = python_with_numpy() else { return };
    for (dim, cls, n) in [(8, true, 2), (5, false, 3)] {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let imgs = images(dim, cls);
        let order = write_cache(&cache_dir, &imgs, dim, cls, n);
        let expect = serde_json::json!({
            "images": imgs.iter().map(|i| (i.id.clone(), serde_json::json!(i.k))).collect::<serde_json::Map<_, _>>(),
        });
        let expect_path = dir.path().join("expect.json");
        std::fs::write(&expect_path, expect.to_string()).unwrap();
        let out_path = dir.path().join("out.json");
        let out = Command::new(py).arg(script()).arg(&cache_dir).arg(&expect_path).arg(&out_path).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
        assert_eq!(got["mismatches"], serde_json::json!([]), "{got}");
        assert_eq!(got["crc_failures"], serde_json::json!([]), "{got}");
        assert_eq!(got["order"], serde_json::json!(order));
        assert_eq!(
            got["checked_values"].as_u64().unwrap() as usize,
            imgs.iter().map(|i| i.h * i.w * dim).sum::<usize>()
        );
        for img in &imgs {
            assert_eq!(got["grids"][&img.id], serde_json::json!([img.h, img.w]), "{}", img.id);
            assert_eq!(got["has_cls"][&img.id], serde_json::json!(cls));
        }
    }
}
