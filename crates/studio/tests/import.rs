//! Import of byproduct releases: synthetic ImageNet-AB and COCO-AB releases
//! (the byproducts crate's generator) imported into projects, exported
//! again, and both read by the byproducts readers: the same showings, clicks,
//! estimate times, traces and icon actions; workers only as keyed hashes,
//! one hash per release worker.

mod common;

use std::collections::HashMap;

use labelscope_byproducts::stream::ReadOptions;
use labelscope_byproducts::synth::{write_coco_ab, write_imagenet_ab, SynthConfig};
use labelscope_studio::db::Db;
use labelscope_studio::import::{import, ImportFormat};
use labelscope_studio::secret::WorkerKey;

/// Checks that `a -> b` is one-to-one over the pairs seen.
fn bijection<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    let mut fwd: HashMap<&str, &str> = HashMap::new();
    let mut back: HashMap<&str, &str> = HashMap::new();
    for (a, b) in pairs {
        assert_eq!(*fwd.entry(a).or_insert(b), b, "{a} maps to two values");
        assert_eq!(*back.entry(b).or_insert(a), a, "{b} comes from two values");
    }
}

#[test]
fn imagenet_ab_round_trip() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("imagenet-ab.tar.gz");
    let cfg = SynthConfig { images: 120, classes: 3, workers: 6, ..SynthConfig::default() };
    write_imagenet_ab(&release, &dir.path().join("boxes.tsv"), &cfg, &|_| {}).unwrap();
    let key = WorkerKey::from_bytes([9; 32]);
    let db_path = dir.path().join("s.sqlite").display().to_string();
    let out = dir.path().join("export.tar.gz");
    let summary = rt.block_on(async {
        let db = Db::open(&db_path).await.unwrap();
        db.migrate().await.unwrap();
        let s = import(&db, &key, "inab", ImportFormat::ImagenetAb, &release, 2, false).await.unwrap();
        // A second import under the same name is refused.
        let e = import(&db, &key, "inab", ImportFormat::ImagenetAb, &release, 2, false).await.unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        labelscope_studio::export::imagenet_ab(&db, "inab", &out).await.unwrap();
        // Quality control runs on imported work.
        let v = labelscope_studio::qc::project_verdicts(&db, "inab", None).await.unwrap();
        assert_eq!(v.len() as u64, s.assignments);
        s
    });
    let opts = ReadOptions::default();
    let mut before = Vec::new();
    labelscope_byproducts::imagenet::read_archive(&release, &opts, |r| before.push(r)).unwrap();
    let mut after = Vec::new();
    labelscope_byproducts::imagenet::read_archive(&out, &opts, |r| after.push(r)).unwrap();
    assert_eq!(summary.images, before.len());
    let showings: usize = before.iter().map(|r| r.showings.len()).sum();
    assert_eq!(summary.records as usize, showings);
    assert!(showings > before.len(), "several showings per image");
    let after: HashMap<&str, &labelscope_byproducts::imagenet::ImageRecord> =
        after.iter().map(|r| (r.image.as_str(), r)).collect();
    let mut workers = Vec::new();
    let mut hits = Vec::new();
    for b in &before {
        let a = after[b.image.as_str()];
        assert_eq!((&a.wnid, a.size), (&b.wnid, b.size), "{}", b.image);
        assert_eq!(a.showings.len(), b.showings.len(), "{}", b.image);
        for (x, y) in b.showings.iter().zip(&a.showings) {
            assert_eq!(
                (x.selected, x.click, &x.trace, &x.page),
                (y.selected, y.click, &y.trace, &y.page),
                "{}",
                b.image
            );
            match (x.estimate_time_ms, y.estimate_time_ms) {
                (Some(p), Some(q)) => assert!((p - q).abs() < 1e-6, "{}: {p} vs {q}", b.image),
                (p, q) => assert_eq!(p.is_some() && x.click.is_some() && x.selected, q.is_some(), "{}", b.image),
            }
            let w = y.worker.clone().unwrap();
            assert!(w.len() == 32 && Some(&w) != x.worker.as_ref());
            workers.push((x.worker.clone().unwrap(), w));
            hits.push((x.hit.clone().unwrap(), y.hit.clone().unwrap()));
        }
    }
    bijection(workers.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    bijection(hits.iter().map(|(a, b)| (a.as_str(), b.as_str())));
}

#[test]
fn coco_ab_round_trip_and_reimport() {
    coco_round_trip(None);
}

#[test]
fn coco_ab_round_trip_on_postgres() {
    let rt = common::runtime();
    if let Some(url) = common::pg_url(&rt, "import") {
        coco_round_trip(Some(url));
    }
}

fn coco_round_trip(db_url: Option<String>) {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("coco-ab.json");
    let cfg = SynthConfig { images: 150, classes: 12, workers: 5, ..SynthConfig::default() };
    write_coco_ab(&release, &dir.path().join("instances.json"), &cfg, &|_| {}).unwrap();
    let key = WorkerKey::from_bytes([5; 32]);
    let db_path = db_url.unwrap_or_else(|| dir.path().join("s.sqlite").display().to_string());
    let out = dir.path().join("export.json");
    let out2 = dir.path().join("export2.json");
    let (s1, s2) = rt.block_on(async {
        let db = Db::open(&db_path).await.unwrap();
        db.migrate().await.unwrap();
        let s1 = import(&db, &key, "coco", ImportFormat::CocoAb, &release, 2, false).await.unwrap();
        labelscope_studio::export::coco_ab(&db, "coco", &out).await.unwrap();
        // Our own export carries hitId / pageIndex: importing it keeps the HIT layout.
        let s2 = import(&db, &key, "again", ImportFormat::CocoAb, &out, 1, false).await.unwrap();
        labelscope_studio::export::coco_ab(&db, "again", &out2).await.unwrap();
        (s1, s2)
    });
    assert_eq!((s2.images, s2.hits, s2.records, s2.pages), (s1.images, s1.hits, s1.records, s1.pages));
    let opts = ReadOptions::default();
    let read = |p: &std::path::Path| {
        let mut v = Vec::new();
        labelscope_byproducts::coco::read_array(p, &opts, |r| v.push(r)).unwrap();
        v
    };
    let before = read(&release);
    let after = read(&out);
    let again = read(&out2);
    assert_eq!(before.len(), after.len());
    assert_eq!(s1.records as usize, before.len());
    let mut workers = Vec::new();
    // The export orders records by image; match them by (image, worker) through the hash.
    let by_image: HashMap<u64, Vec<&labelscope_byproducts::coco::CocoRecord>> =
        after.iter().fold(HashMap::new(), |mut m, r| {
            m.entry(r.image_id).or_default().push(r);
            m
        });
    for b in &before {
        let cands = &by_image[&b.image_id];
        let a = cands
            .iter()
            .find(|a| a.actions == b.actions && a.time_spent_ms == b.time_spent_ms)
            .unwrap_or_else(|| panic!("image {}: no exported record with the same actions", b.image_id));
        assert_eq!((a.width, a.height), (b.width, b.height));
        assert_eq!(a.last_add_points(), b.last_add_points());
        workers.push((b.worker.clone().unwrap(), a.worker.clone().unwrap()));
    }
    bijection(workers.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    // The re-import of our export gives the same records again; its worker ids (already
    // hashes) are hashed once more, one to one.
    let strip = |v: &[labelscope_byproducts::coco::CocoRecord]| {
        let mut x: Vec<_> = v
            .iter()
            .map(|r| (r.image_id, r.actions.len(), r.time_spent_ms.map(f64::to_bits), r.worker.clone()))
            .collect();
        x.sort();
        x
    };
    let (a, b) = (strip(&after), strip(&again));
    assert_eq!(a.len(), b.len());
    assert!(a.iter().zip(&b).all(|(x, y)| x.0 == y.0 && x.1 == y.1 && x.2 == y.2), "records differ after re-import");
    bijection(a.iter().zip(&b).map(|(x, y)| (x.3.as_deref().unwrap(), y.3.as_deref().unwrap())));
}

#[test]
fn import_errors_name_the_file() {
    let rt = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[{\"image_id\": 1}, {\"image_id\": \"x\"}]").unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    let key = WorkerKey::from_bytes([1; 32]);
    let db_path = dir.path().join("s.sqlite").display().to_string();
    rt.block_on(async {
        let db = Db::open(&db_path).await.unwrap();
        db.migrate().await.unwrap();
        let e = import(&db, &key, "p", ImportFormat::CocoAb, &bad, 1, false).await.unwrap_err().to_string();
        assert!(e.contains("bad.json") && e.contains("record 1"), "{e}");
        // Skipping malformed records imports the rest.
        let s = import(&db, &key, "p", ImportFormat::CocoAb, &bad, 1, true).await.unwrap();
        assert_eq!((s.records, s.skipped), (1, 1));
        let e = import(&db, &key, "q", ImportFormat::CocoAb, &empty, 1, false).await.unwrap_err().to_string();
        assert!(e.contains("no records"), "{e}");
        let e = import(&db, &key, "r", ImportFormat::ImagenetAb, &bad, 1, false).await.unwrap_err().to_string();
        assert!(e.contains("bad.json"), "{e}");
        // Nothing half-made: the failed imports left no project behind.
        let names: Vec<(i64, String)> = db.projects().await.unwrap().into_iter().map(|p| (p.0, p.1)).collect();
        assert_eq!(names.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(), ["p"]);
        // What undoes a failed second pass removes every row of the project.
        db.delete_project(names[0].0).await.unwrap();
        for t in ["projects", "images", "hits", "assignments", "pages", "records"] {
            assert_eq!(db.count(t).await.unwrap(), 0, "{t}");
        }
    });
}
