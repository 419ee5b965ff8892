//! Quality report on 300 random images against an independent reference:
//! tests/fixtures/quality/sklearn_ref.py (scikit-learn's
//! `precision_recall_fscore_support` for per-class, micro and macro values;
//! Python sets for the overlap groups and the gallery order) wrote the
//! label files and `random/expected.json` next to it.

use std::path::{Path, PathBuf};

use labelscope_core::analysis::Relation;
use labelscope_core::classes::ClassTable;
use labelscope_core::labels::load_labels;
use labelscope_relabel::quality::{evaluate, load_produced};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quality/random")
}

fn close(a: Option<f64>, b: &Value, what: &str) {
    match (a, b.as_f64()) {
        (None, None) => {}
        (Some(x), Some(y)) => assert!((x - y).abs() < 1e-12, "{what}: {x} vs {y}"),
        _ => panic!("{what}: {a:?} vs {b}"),
    }
}

#[test]
fn matches_scikit_learn() {
    let want: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap();
    let classes = ClassTable::from_classes(
        (0..12)
            .map(|i| labelscope_core::ClassInfo {
                index: i,
                wnid: format!("k{i}"),
                names: vec![],
                gloss: String::new(),
                groups: vec![],
            })
            .collect(),
    )
    .unwrap();
    let tau = want["tau"].as_f64().unwrap() as f32;
    let produced = load_produced(&dir().join("produced.tsv"), Some(12)).unwrap();
    let b = load_labels(&dir().join("reference.json"), None, &classes).unwrap().to_sets().unwrap();
    let r = evaluate(&produced.sets(tau).unwrap(), &b, tau, 3);

    let g = &want["groups"];
    let count = |rel: Relation| r.comparison.groups.iter().find(|x| x.relation == rel).unwrap().count;
    assert_eq!(count(Relation::BEmpty), g["b_empty"].as_u64().unwrap());
    assert_eq!(count(Relation::Exact), g["exact"].as_u64().unwrap());
    assert_eq!(count(Relation::ASupersetOfB), g["a_superset"].as_u64().unwrap());
    assert_eq!(count(Relation::BSupersetOfA), g["b_superset"].as_u64().unwrap());
    assert_eq!(count(Relation::Partial), g["partial"].as_u64().unwrap());
    assert_eq!(r.comparison.disjoint, want["disjoint"].as_u64().unwrap());
    assert_eq!(r.evaluated, want["evaluated"].as_u64().unwrap());

    let wc = want["classes"].as_array().unwrap();
    assert_eq!(r.classes.len(), wc.len());
    for (q, w) in r.classes.iter().zip(wc) {
        assert_eq!(u64::from(q.class), w["class"].as_u64().unwrap());
        assert_eq!(q.support, w["support"].as_u64().unwrap());
        close(q.precision, &w["precision"], &format!("precision of {}", q.class));
        close(q.recall, &w["recall"], &format!("recall of {}", q.class));
        close(q.f1, &w["f1"], &format!("f1 of {}", q.class));
    }
    let o = &r.overall;
    close(o.micro_precision, &want["micro"][0], "micro precision");
    close(o.micro_recall, &want["micro"][1], "micro recall");
    close(o.micro_f1, &want["micro"][2], "micro f1");
    close(Some(o.macro_precision), &want["macro"][0], "macro precision");
    close(Some(o.macro_recall), &want["macro"][1], "macro recall");
    close(Some(o.macro_f1), &want["macro"][2], "macro f1");

    assert_eq!(r.disagreements.len() as u64, want["disagreements"].as_u64().unwrap());
    let first: Vec<&str> = r.disagreements.iter().take(20).map(|d| d.image.as_str()).collect();
    let wf: Vec<&str> = want["gallery_first"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(first, wf);
}
