//! Feature cache: bad input and mismatches give errors that name the file
//! and the key or position.

use std::path::Path;

use labelscope_relabel::cache::{
    finalize, CacheSpec, CacheWriter, Expect, FeatureCache, ImageFeatures, OpenOptions, Shard, TokenKind,
};

const DIM: usize = 4;

fn spec() -> CacheSpec {
    CacheSpec {
        backbone: "dino_vits8".into(),
        recipe: "resize256-crop224".into(),
        tokens: TokenKind::Patch,
        dim: DIM,
        cls: false,
    }
}

/// Image `k`: a 1 x 2 grid of values k + c/4 (exact in f16).
fn patches(k: usize) -> Vec<f32> {
    (0..2 * DIM).map(|c| k as f32 + c as f32 / 4.0).collect()
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|k| format!("img{k:02}")).collect()
}

/// A finished single-shard cache of `n` images.
fn build(dir: &Path, n: usize) {
    let ids = ids(n);
    let values: Vec<Vec<f32>> = (0..n).map(patches).collect();
    let mut w = CacheWriter::open(dir, &spec(), Shard::ALL).unwrap();
    let batch: Vec<ImageFeatures> =
        (0..n).map(|k| ImageFeatures { id: &ids[k], h: 1, w: 2, patches: &values[k], cls: None }).collect();
    w.append_batch(&batch).unwrap();
    w.finish(&ids).unwrap();
}

fn open_expecting(dir: &Path, expect: Expect) -> String {
    FeatureCache::open_with(dir, &OpenOptions { expect, verify_checksums: false }).unwrap_err().to_string()
}

#[test]
fn opening_with_other_features_names_cache_json_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3);
    let e = open_expecting(dir.path(), Expect { backbone: Some("dino_vitb16".into()), ..Expect::default() });
    assert!(e.contains("cache.json") && e.contains("key \"backbone\""), "{e}");
    assert!(e.contains("\"dino_vits8\"") && e.contains("\"dino_vitb16\""), "{e}");
    let e = open_expecting(dir.path(), Expect { recipe: Some("square256-crop224".into()), ..Expect::default() });
    assert!(e.contains("cache.json") && e.contains("key \"recipe\"") && e.contains("square256-crop224"), "{e}");
    let e = open_expecting(dir.path(), Expect { dim: Some(768), ..Expect::default() });
    assert!(e.contains("cache.json") && e.contains("key \"dim\"") && e.contains("dim 4") && e.contains("768"), "{e}");
    let e = open_expecting(dir.path(), Expect { tokens: Some(TokenKind::Key), ..Expect::default() });
    assert!(e.contains("key \"tokens\"") && e.contains("\"patch\"") && e.contains("\"key\""), "{e}");
    let e = open_expecting(dir.path(), Expect { cls: Some(true), ..Expect::default() });
    assert!(e.contains("key \"cls\""), "{e}");
    // The matching expectation opens.
    FeatureCache::open_with(dir.path(), &OpenOptions { expect: Expect::from(&spec()), verify_checksums: true })
        .unwrap();

    // A writer with other features or another shard count is refused too.
    let other = CacheSpec { backbone: "dinov2_vits14".into(), ..spec() };
    let e = CacheWriter::open(dir.path(), &other, Shard::ALL).unwrap_err().to_string();
    assert!(e.contains("cache.json") && e.contains("key \"backbone\"") && e.contains("dinov2_vits14"), "{e}");
    let other = CacheSpec { dim: 8, ..spec() };
    let e = CacheWriter::open(dir.path(), &other, Shard::ALL).unwrap_err().to_string();
    assert!(e.contains("key \"dim\""), "{e}");
    let e = CacheWriter::open(dir.path(), &spec(), Shard::parse("1/4").unwrap()).unwrap_err().to_string();
    assert!(e.contains("cache.json") && e.contains("key \"shards\"") && e.contains("1 shards"), "{e}");
}

#[test]
fn bad_cache_json_names_the_position_or_key() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 2);
    let path = dir.path().join("cache.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"version\": 1", "\"version\": 2")).unwrap();
    let e = FeatureCache::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("cache.json") && e.contains("key \"version\"") && e.contains("version 2"), "{e}");
    std::fs::write(&path, text.replace("\"patch\"", "\"pixels\"")).unwrap();
    let e = FeatureCache::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("cache.json") && e.contains("line ") && e.contains("pixels"), "{e}");
    std::fs::write(&path, "{").unwrap();
    let e = FeatureCache::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("cache.json") && e.contains("line 1"), "{e}");
    std::fs::remove_file(&path).unwrap();
    let e = FeatureCache::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("cache.json"), "{e}");
}

#[test]
fn unknown_id_names_the_id_and_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3);
    let cache = FeatureCache::open(dir.path()).unwrap();
    let e = cache.get("img99").unwrap_err().to_string();
    assert!(e.contains("\"img99\"") && e.contains("not in the feature cache") && e.contains("3 images"), "{e}");
    assert!(!cache.contains("img99") && cache.contains("img02"));
    assert!(cache.get_index(3).is_err());
    // Values of a present image, by hand: image 2 is 2 + c/4.
    assert_eq!(cache.get("img02").unwrap().patches_f32(), [2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 3.75]);
}

#[test]
fn damaged_bytes_are_caught_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3);
    let data = Shard::ALL.data_path(dir.path());
    let mut bytes = std::fs::read(&data).unwrap();
    // Image 1 occupies rows 2..4, i.e. bytes 4096 + 2*8 .. 4096 + 4*8.
    bytes[4096 + 2 * 8 + 5] ^= 0x40;
    std::fs::write(&data, &bytes).unwrap();
    // Same length: open succeeds, plain reads do not check.
    let cache = FeatureCache::open(dir.path()).unwrap();
    assert!(cache.get("img01").is_ok());
    let e = cache.verify().unwrap_err().to_string();
    assert!(
        e.contains("1 of 3 images") && e.contains("\"img01\"") && e.contains("shard-00000-of-00001.safetensors"),
        "{e}"
    );
    let checked =
        FeatureCache::open_with(dir.path(), &OpenOptions { verify_checksums: true, ..Default::default() }).unwrap();
    let e = checked.get("img01").unwrap_err().to_string();
    assert!(e.contains("shard-00000-of-00001.safetensors") && e.contains("image \"img01\" (rows 2..4)"), "{e}");
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(checked.get("img00").is_ok() && checked.get("img02").is_ok());
}

#[test]
fn truncated_or_changed_shards_are_reported_at_open() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3);
    let shard = Shard::ALL;
    let data = shard.data_path(dir.path());
    let original = std::fs::read(&data).unwrap();
    // 3 images x 2 rows x 4 values x 2 bytes after the 4096-byte header.
    assert_eq!(original.len(), 4096 + 48);
    std::fs::write(&data, &original[..4096 + 40]).unwrap();
    let e = FeatureCache::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("shard-00000-of-00001.safetensors") && e.contains("4136 bytes; expected 4144"), "{e}");
    assert!(e.contains("truncated"), "{e}");
    // A header that does not describe the rows.
    let mut bad = original.clone();
    let text = String::from_utf8(bad[8..4096].to_vec()).unwrap().replace("[6,4]", "[5,4]");
    bad[8..4096].copy_from_slice(text.as_bytes());
    std::fs::write(&data, &bad).unwrap();
    let e = FeatureCache::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("shard-00000-of-00001.safetensors") && e.contains("tensor \"features\"") && e.contains("shape"),
        "{e}"
    );
    std::fs::write(&data, &original).unwrap();
    FeatureCache::open(dir.path()).unwrap();

    // The index cut after completion.
    let index = shard.index_path(dir.path());
    let text = std::fs::read(&index).unwrap();
    std::fs::write(&index, &text[..text.len() - 3]).unwrap();
    let e = FeatureCache::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("shard-00000-of-00001.index.jsonl") && e.contains("truncated or changed"), "{e}");
    std::fs::write(&index, &text).unwrap();
    // No completion marker: the shard is not complete.
    std::fs::remove_file(shard.done_path(dir.path())).unwrap();
    let e = FeatureCache::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("shard 0/1") && e.contains("not complete") && e.contains("done.json"), "{e}");
}

#[test]
fn damaged_index_lines_are_errors_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 3);
    let index = Shard::ALL.index_path(dir.path());
    let text = std::fs::read_to_string(&index).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // A complete line that is not a record.
    std::fs::write(&index, format!("{}\n{{\"id\":\"x\"}}\n{}\n", lines[0], lines[2])).unwrap();
    let e = CacheWriter::open(dir.path(), &spec(), Shard::ALL).unwrap_err().to_string();
    assert!(e.contains("shard-00000-of-00001.index.jsonl") && e.contains("line 2"), "{e}");
    // An image twice.
    std::fs::write(&index, format!("{}\n{}\n", lines[0], lines[0].replace("\"row\":0", "\"row\":2"))).unwrap();
    let e = CacheWriter::open(dir.path(), &spec(), Shard::ALL).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("appears twice") && e.contains("line 1"), "{e}");
    // Rows that do not follow on.
    std::fs::write(&index, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
    let e = CacheWriter::open(dir.path(), &spec(), Shard::ALL).unwrap_err().to_string();
    assert!(e.contains("line 2, key \"row\"") && e.contains("must start at row 2"), "{e}");
    // The user's file is left as it was.
    assert_eq!(std::fs::read_to_string(&index).unwrap(), format!("{}\n{}\n", lines[0], lines[2]));
}

#[test]
fn finish_and_finalize_list_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let all = ids(10);
    let s0 = Shard::parse("0/2").unwrap();
    let s1 = Shard::parse("1/2").unwrap();
    let mine0 = s0.select(&all).unwrap();
    let mine1 = s1.select(&all).unwrap();
    assert_eq!(mine0, ["img00", "img02", "img04", "img06", "img08"]);
    let values = patches(0);
    let write = |w: &mut CacheWriter, ids: &[String]| {
        let batch: Vec<ImageFeatures> =
            ids.iter().map(|id| ImageFeatures { id, h: 1, w: 2, patches: &values, cls: None }).collect();
        w.append_batch(&batch).unwrap();
    };
    let mut w = CacheWriter::open(dir.path(), &spec(), s0).unwrap();
    write(&mut w, &mine0[..2]);
    let e = w.finish(&mine0).unwrap_err().to_string();
    assert!(e.contains("shard 0/2") && e.contains("3 of its 5 images are missing"), "{e}");
    assert!(e.contains("\"img04\", \"img06\", \"img08\""), "{e}");
    let mut w = CacheWriter::open(dir.path(), &spec(), s0).unwrap();
    write(&mut w, &mine0[2..]);
    write(&mut w, &["stray".to_string()]);
    let e = w.finish(&mine0).unwrap_err().to_string();
    assert!(e.contains("1 images that are not in its list") && e.contains("\"stray\""), "{e}");
    // Without the stray image (list it to finish), shard 0 completes.
    let mut with_stray = mine0.clone();
    with_stray.push("stray".into());
    CacheWriter::open(dir.path(), &spec(), s0).unwrap().finish(&with_stray).unwrap();

    let e = finalize(dir.path(), &all).unwrap_err().to_string();
    assert!(e.contains("1 of 2 shards are not complete") && e.contains("\"1/2\""), "{e}");
    let mut w = CacheWriter::open(dir.path(), &spec(), s1).unwrap();
    write(&mut w, &mine1);
    w.finish(&mine1).unwrap();
    // The manifest has 8 more images than the cache: 5 listed, then a count.
    let mut manifest = all.clone();
    manifest.extend((0..8).map(|k| format!("zz{k}")));
    manifest.push("stray".into());
    let e = finalize(dir.path(), &manifest).unwrap_err().to_string();
    assert!(e.contains("8 of the manifest's 19 images are not in the cache"), "{e}");
    assert!(e.contains("\"zz0\", \"zz1\", \"zz2\", \"zz3\", \"zz4\" and 3 more"), "{e}");
    let e = finalize(dir.path(), &all).unwrap_err().to_string();
    assert!(e.contains("1 images of the cache are not in the manifest: \"stray\""), "{e}");
    let mut dup = all.clone();
    dup.push("img03".into());
    let e = finalize(dir.path(), &dup).unwrap_err().to_string();
    assert!(e.contains("\"img03\" appears twice"), "{e}");
    manifest.truncate(10);
    manifest.push("stray".into());
    let summary = finalize(dir.path(), &manifest).unwrap();
    assert_eq!((summary.shards, summary.images, summary.rows), (2, 11, 22));
    assert_eq!(summary.data_bytes, 2 * 4096 + 22 * 8);
}

#[test]
fn wrong_shapes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = CacheWriter::open(dir.path(), &spec(), Shard::ALL).unwrap();
    let v = patches(0);
    let e = w.append(&ImageFeatures { id: "a", h: 2, w: 2, patches: &v, cls: None }).unwrap_err().to_string();
    assert!(e.contains("\"a\"") && e.contains("8 patch values") && e.contains("2x2 grid of dim 4 needs 16"), "{e}");
    let e = w.append(&ImageFeatures { id: "a", h: 1, w: 2, patches: &v, cls: Some(&v[..4]) }).unwrap_err().to_string();
    assert!(e.contains("\"a\"") && e.contains("stores none") && e.contains("cache.json"), "{e}");
    let e = w.append(&ImageFeatures { id: "a", h: 0, w: 2, patches: &[], cls: None }).unwrap_err().to_string();
    assert!(e.contains("grid 0x2"), "{e}");
    let e = w.append(&ImageFeatures { id: "", h: 1, w: 2, patches: &v, cls: None }).unwrap_err().to_string();
    assert!(e.contains("empty image id"), "{e}");
    assert!(w.is_empty());
    let with_cls = CacheSpec { cls: true, ..spec() };
    let d2 = tempfile::tempdir().unwrap();
    let mut w = CacheWriter::open(d2.path(), &with_cls, Shard::ALL).unwrap();
    let e = w.append(&ImageFeatures { id: "a", h: 1, w: 2, patches: &v, cls: None }).unwrap_err().to_string();
    assert!(e.contains("no CLS token"), "{e}");
    let e = w.append(&ImageFeatures { id: "a", h: 1, w: 2, patches: &v, cls: Some(&v[..3]) }).unwrap_err().to_string();
    assert!(e.contains("CLS token of 3 values; expected dim 4"), "{e}");
}
