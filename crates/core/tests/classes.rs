//! The embedded class table against its sources: the published group sizes,
//! the ImageNetV2 class list in ../shared/data, and a fresh run of the
//! generator on Debian's WordNet database.

use labelscope_core::{ClassTable, Group};
use std::path::PathBuf;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

#[test]
fn group_sizes_are_the_published_ones() {
    let t = ClassTable::imagenet();
    assert_eq!(t.len(), 1000);
    let size = |g| t.members(g).len();
    assert_eq!(size(Group::Organism), 410);
    assert_eq!(size(Group::Object), 590);
    assert_eq!(size(Group::Animal), 398);
    assert_eq!(size(Group::Dog), 118);
    assert_eq!(size(Group::OrganismWithoutDog), 292);
    assert_eq!(size(Group::AnimalWithoutDog), 280);
    assert_eq!(t.members(Group::Dog), (151..=268).collect::<Vec<_>>());
    // Definitions hold class by class.
    for i in 0..1000 {
        assert_ne!(t.in_group(i, Group::Organism), t.in_group(i, Group::Object));
        assert_eq!(
            t.in_group(i, Group::OrganismWithoutDog),
            t.in_group(i, Group::Organism) && !t.in_group(i, Group::Dog)
        );
        assert_eq!(t.in_group(i, Group::AnimalWithoutDog), t.in_group(i, Group::Animal) && !t.in_group(i, Group::Dog));
        if t.in_group(i, Group::Animal) {
            assert!(t.in_group(i, Group::Organism));
        }
    }
    assert_eq!(t.get(0).unwrap().wnid, "n01440764");
    assert_eq!(t.resolve("n01440764"), Some(0));
    assert_eq!(t.resolve("999"), Some(999));
    assert_eq!(t.resolve("1000"), None);
}

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/imagenet/class_info.json");
    if p.exists() {
        Some(p)
    } else if in_ci() {
        panic!("CI=true but {} is missing", p.display());
    } else {
        eprintln!("skipping: {} missing", p.display());
        None
    }
}

#[test]
fn table_matches_class_info_json() {
    let Some(path) = shared() else { return };
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let t = ClassTable::imagenet();
    for (i, c) in v.as_array().unwrap().iter().enumerate() {
        let mine = t.get(i).unwrap();
        assert_eq!(c["cid"].as_u64(), Some(i as u64));
        assert_eq!(c["wnid"].as_str().unwrap(), mine.wnid);
        let names: Vec<&str> = c["synset"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(names, mine.names);
        assert_eq!(c["gloss"].as_str().unwrap(), mine.gloss);
    }
}

#[test]
fn generator_reproduces_the_embedded_table() {
    let Some(class_info) = shared() else { return };
    let wordnet = PathBuf::from("/usr/share/wordnet");
    if !wordnet.join("data.noun").exists() {
        if in_ci() {
            panic!("CI=true but WordNet (Debian wordnet-base) is not installed; .ci/run installs it");
        }
        eprintln!("skipping: wordnet-base not installed");
        return;
    }
    let wn = labelscope_core::wordnet::NounHypernyms::from_dir(&wordnet).unwrap();
    let text = labelscope_core::wordnet::generate_table_json(&class_info, &wn).unwrap();
    assert_eq!(text, labelscope_core::classes::IMAGENET_TABLE_JSON, "run `labelscope classes generate` and commit");
}
