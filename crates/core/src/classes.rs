//! The class table: index, WordNet id, names, gloss and class groups.
//!
//! The 1000-class ImageNet table is embedded (`data/imagenet_classes.json`,
//! written by `labelscope classes generate` from the ImageNetV2 class list and
//! Debian's `wordnet-base` database). Other datasets supply their own class
//! list with [`ClassTable::from_path`].
//!
//! # Class groups
//! Groups are defined on the WordNet 3.0 noun hierarchy, by the closure of
//! hypernym (`@`) and instance-hypernym (`@i`) pointers of the class synset:
//!
//! | group | definition | ImageNet-1k size |
//! |---|---|---|
//! | `organism` | `organism.n.01` (n00004475) is an ancestor | 410 |
//! | `object` | every class that is not an organism | 590 |
//! | `animal` | `animal.n.01` (n00015388) is an ancestor | 398 |
//! | `dog` | `dog.n.01` (n02084071) is an ancestor (indices 151–268) | 118 |
//! | `organism-without-dog` | organism and not dog | 292 |
//! | `animal-without-dog` | animal and not dog | 280 |

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A named group of classes (see the module documentation for definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// Descendants of `organism.n.01`.
    Organism,
    /// Classes that are not organisms.
    Object,
    /// Descendants of `animal.n.01`.
    Animal,
    /// Descendants of `dog.n.01`.
    Dog,
    /// Organisms that are not dogs.
    OrganismWithoutDog,
    /// Animals that are not dogs.
    AnimalWithoutDog,
}

impl Group {
    /// Every group, in display order.
    pub const ALL: [Group; 6] =
        [Group::Organism, Group::Object, Group::Animal, Group::Dog, Group::OrganismWithoutDog, Group::AnimalWithoutDog];

    /// The kebab-case name used in files, on the command line and in result rows.
    pub fn name(self) -> &'static str {
        match self {
            Group::Organism => "organism",
            Group::Object => "object",
            Group::Animal => "animal",
            Group::Dog => "dog",
            Group::OrganismWithoutDog => "organism-without-dog",
            Group::AnimalWithoutDog => "animal-without-dog",
        }
    }

    /// Parses a group name as written by [`Group::name`].
    pub fn parse(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// One class of a [`ClassTable`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassInfo {
    /// Position in the table (the class index used by predictions and labels).
    pub index: usize,
    /// WordNet id such as `n01440764`; for user class lists without WordNet ids, the class name.
    pub wnid: String,
    /// Synonyms, most common first.
    pub names: Vec<String>,
    /// WordNet gloss (may be empty).
    #[serde(default)]
    pub gloss: String,
    /// Groups this class belongs to.
    #[serde(default)]
    pub groups: Vec<Group>,
}

impl ClassInfo {
    /// The first name, or the wnid if there is none.
    pub fn name(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or(&self.wnid)
    }
}

#[derive(Deserialize)]
struct EmbeddedTable {
    classes: Vec<ClassInfo>,
}

/// A table of classes, indexable by position and by WordNet id.
#[derive(Debug, Clone)]
pub struct ClassTable {
    classes: Vec<ClassInfo>,
    masks: Vec<u8>,
    by_wnid: HashMap<String, usize>,
    has_groups: bool,
}

/// The embedded ImageNet-1k table, as written by the generator.
pub const IMAGENET_TABLE_JSON: &str = include_str!("../data/imagenet_classes.json");

impl ClassTable {
    /// The embedded 1000-class ImageNet table.
    pub fn imagenet() -> &'static ClassTable {
        static TABLE: OnceLock<ClassTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            let table: EmbeddedTable = serde_json::from_str(IMAGENET_TABLE_JSON)
                .expect("embedded class table is valid JSON (checked by tests)");
            ClassTable::from_classes(table.classes).expect("embedded class table is consistent (checked by tests)")
        })
    }

    /// Builds a table from class records; their `index` must be `0..n` in order and wnids unique.
    pub fn from_classes(classes: Vec<ClassInfo>) -> Result<ClassTable> {
        let mut by_wnid = HashMap::with_capacity(classes.len());
        let mut masks = Vec::with_capacity(classes.len());
        let mut has_groups = false;
        for (i, c) in classes.iter().enumerate() {
            if c.index != i {
                return Err(Error::Invalid(format!("class table: entry {i} has index {}, expected {i}", c.index)));
            }
            if by_wnid.insert(c.wnid.clone(), i).is_some() {
                return Err(Error::Invalid(format!(
                    "class table: id {:?} appears twice (second at index {i})",
                    c.wnid
                )));
            }
            has_groups |= !c.groups.is_empty();
            masks.push(c.groups.iter().fold(0u8, |m, g| m | g.bit()));
        }
        Ok(ClassTable { classes, masks, by_wnid, has_groups })
    }

    /// Reads a user-supplied class list, which replaces the ImageNet table.
    ///
    /// Accepted forms, detected from content:
    /// * a JSON array of objects with `wnid` (and optionally `synset`/`names`, `gloss`),
    ///   in index order (the ImageNetV2 `class_info.json` form);
    /// * a JSON array of strings (ids in index order);
    /// * a text file with one class per line: `id`, or `id<TAB>name[, name...]`;
    ///   blank lines and lines starting with `#` are ignored.
    pub fn from_path(path: &Path) -> Result<ClassTable> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let trimmed = text.trim_start();
        let classes = if trimmed.starts_with('[') {
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::format(path, format!("line {}, column {}", e.line(), e.column()), format!("invalid JSON: {e}"))
            })?;
            let items = value.as_array().ok_or_else(|| Error::format(path, "top level", "expected a JSON array"))?;
            let mut classes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let loc = format!("element {i}");
                let (wnid, names, gloss) = match item {
                    serde_json::Value::String(s) => (s.clone(), vec![], String::new()),
                    serde_json::Value::Object(o) => {
                        let wnid = o
                            .get("wnid")
                            .and_then(|v| v.as_str())
                            .ok_or_else(|| Error::format(path, &loc, "expected a string field \"wnid\""))?
                            .to_string();
                        let names = o
                            .get("synset")
                            .or_else(|| o.get("names"))
                            .and_then(|v| v.as_array())
                            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                            .unwrap_or_default();
                        let gloss = o.get("gloss").and_then(|v| v.as_str()).unwrap_or("").to_string();
                        (wnid, names, gloss)
                    }
                    _ => return Err(Error::format(path, loc, "expected a string or an object with \"wnid\"")),
                };
                classes.push(ClassInfo { index: i, wnid, names, gloss, groups: vec![] });
            }
            classes
        } else {
            let mut classes = Vec::new();
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (id, names) = match line.split_once('\t') {
                    Some((id, rest)) => (
                        id.trim().to_string(),
                        rest.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
                    ),
                    None => (line.to_string(), vec![]),
                };
                classes.push(ClassInfo { index: classes.len(), wnid: id, names, gloss: String::new(), groups: vec![] });
            }
            classes
        };
        if classes.is_empty() {
            return Err(Error::format(path, "whole file", "expected at least one class"));
        }
        ClassTable::from_classes(classes).map_err(|e| Error::format(path, "class list", e.to_string()))
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// True if the table has no classes.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// All classes in index order.
    pub fn classes(&self) -> &[ClassInfo] {
        &self.classes
    }

    /// The class at `index`.
    pub fn get(&self, index: usize) -> Option<&ClassInfo> {
        self.classes.get(index)
    }

    /// Index of a WordNet id (or class id of a user table).
    pub fn index_of_wnid(&self, wnid: &str) -> Option<usize> {
        self.by_wnid.get(wnid).copied()
    }

    /// Resolves a label token: a decimal class index (`"370"`) or a class id (`"n01440764"`).
    pub fn resolve(&self, token: &str) -> Option<usize> {
        let t = token.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse::<usize>().ok().filter(|&i| i < self.len());
        }
        self.index_of_wnid(t)
    }

    /// Whether the table carries group information (the embedded ImageNet table does).
    pub fn has_groups(&self) -> bool {
        self.has_groups
    }

    /// Whether class `index` belongs to `group`.
    pub fn in_group(&self, index: usize, group: Group) -> bool {
        self.masks.get(index).is_some_and(|m| m & group.bit() != 0)
    }

    /// Indices of the classes in `group`, ascending.
    pub fn members(&self, group: Group) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.in_group(i, group)).collect()
    }
}
