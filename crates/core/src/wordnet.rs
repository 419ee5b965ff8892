//! A reader for the WordNet 3.0 noun database (`data.noun`, as shipped by
//! Debian's `wordnet-base`) and the generator of the embedded class table.
//!
//! Only what the class groups need is parsed: each synset's offset and its
//! hypernym (`@`) and instance-hypernym (`@i`) pointers to other nouns.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::classes::{ClassInfo, Group};
use crate::error::{Error, Result};

/// WordNet id of `organism.n.01`.
pub const ORGANISM: &str = "n00004475";
/// WordNet id of `animal.n.01`.
pub const ANIMAL: &str = "n00015388";
/// WordNet id of `dog.n.01`.
pub const DOG: &str = "n02084071";

/// Hypernym graph of WordNet nouns, keyed by wnid (`n` + 8-digit offset).
#[derive(Debug, Default)]
pub struct NounHypernyms {
    parents: HashMap<String, Vec<String>>,
}

impl NounHypernyms {
    /// Parses the text of `data.noun`. `path` is used in error messages only.
    pub fn parse(text: &str, path: &Path) -> Result<NounHypernyms> {
        let mut parents = HashMap::new();
        for (lineno, line) in text.lines().enumerate() {
            // License header lines start with two spaces.
            if line.starts_with(' ') || line.is_empty() {
                continue;
            }
            let bad = |what: &str| Error::format(path, format!("line {}", lineno + 1), what.to_string());
            let data = line.split(" | ").next().unwrap_or(line);
            let f: Vec<&str> = data.split_ascii_whitespace().collect();
            if f.len() < 4 {
                return Err(bad("expected `offset lex_filenum ss_type w_cnt ...`"));
            }
            let offset = f[0];
            let w_cnt = usize::from_str_radix(f[3], 16).map_err(|_| bad("expected a hexadecimal word count"))?;
            let p_pos = 4 + 2 * w_cnt;
            let p_cnt: usize =
                f.get(p_pos).and_then(|s| s.parse().ok()).ok_or_else(|| bad("expected a pointer count"))?;
            let mut ps = Vec::new();
            for k in 0..p_cnt {
                let base = p_pos + 1 + 4 * k;
                let (sym, target, pos) = match (f.get(base), f.get(base + 1), f.get(base + 2)) {
                    (Some(a), Some(b), Some(c)) => (*a, *b, *c),
                    _ => return Err(bad("pointer list ends early")),
                };
                if (sym == "@" || sym == "@i") && pos == "n" {
                    ps.push(format!("n{target}"));
                }
            }
            parents.insert(format!("n{offset}"), ps);
        }
        Ok(NounHypernyms { parents })
    }

    /// Reads and parses `data.noun` from a WordNet `dict` directory.
    pub fn from_dir(dir: &Path) -> Result<NounHypernyms> {
        let path = dir.join("data.noun");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        NounHypernyms::parse(&text, &path)
    }

    /// Whether `wnid` is a known noun synset.
    pub fn contains(&self, wnid: &str) -> bool {
        self.parents.contains_key(wnid)
    }

    /// Every ancestor of `wnid` (hypernym closure), `wnid` itself included.
    pub fn ancestors(&self, wnid: &str) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut stack = vec![wnid.to_string()];
        while let Some(w) = stack.pop() {
            if seen.insert(w.clone()) {
                if let Some(ps) = self.parents.get(&w) {
                    stack.extend(ps.iter().cloned());
                }
            }
        }
        seen
    }

    /// The groups of a class given its wnid.
    pub fn groups_of(&self, wnid: &str) -> Vec<Group> {
        let anc = self.ancestors(wnid);
        let organism = anc.contains(ORGANISM);
        let animal = anc.contains(ANIMAL);
        let dog = anc.contains(DOG);
        let mut g = Vec::new();
        if organism {
            g.push(Group::Organism);
        } else {
            g.push(Group::Object);
        }
        if animal {
            g.push(Group::Animal);
        }
        if dog {
            g.push(Group::Dog);
        }
        if organism && !dog {
            g.push(Group::OrganismWithoutDog);
        }
        if animal && !dog {
            g.push(Group::AnimalWithoutDog);
        }
        g
    }
}

/// Builds the class table JSON (the format of `data/imagenet_classes.json`)
/// from a class list in the ImageNetV2 `class_info.json` form and WordNet.
pub fn generate_table_json(class_info: &Path, wordnet: &NounHypernyms) -> Result<String> {
    let table = crate::classes::ClassTable::from_path(class_info)?;
    let mut classes: Vec<ClassInfo> = table.classes().to_vec();
    for c in &mut classes {
        if !wordnet.contains(&c.wnid) {
            return Err(Error::format(
                class_info,
                format!("class {}", c.index),
                format!("wnid {} is not a WordNet 3.0 noun synset", c.wnid),
            ));
        }
        c.groups = wordnet.groups_of(&c.wnid);
    }
    let doc = serde_json::json!({
        "generator": "labelscope classes generate",
        "sources": {
            "classes": "modestyachts/ImageNetV2 class_info.json (MIT licence, see LICENSE-ImageNetV2)",
            "groups": "WordNet 3.0 noun hypernym closure (Debian wordnet-base, WordNet licence)",
        },
        "classes": classes,
    });
    let mut s = serde_json::to_string_pretty(&doc).map_err(|e| Error::Invalid(e.to_string()))?;
    s.push('\n');
    Ok(s)
}
