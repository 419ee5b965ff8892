//! Project manifests: the images, candidate classes and task layout of an
//! annotation project, and how they are cut into HITs.
//!
//! ```json
//! {
//!   "name": "dogs-browse",
//!   "task": "browse",
//!   "images_per_page": 48,
//!   "pages_per_hit": 10,
//!   "pointer_nudge": false,
//!   "classes": {"n02085620": {"name": "Chihuahua", "description": "an old breed of tiny short-haired dog"}},
//!   "images": [
//!     {"name": "n02085620_10074", "file": "n02085620/n02085620_10074.JPEG", "class": "n02085620", "known_positive": true}
//!   ]
//! }
//! ```
//!
//! * `task`: `browse` (ImageNet-style candidate grids; the only task served
//!   so far).
//! * `images_per_page` (default 48) and `pages_per_hit` (default 10): the
//!   layout of the ImageNet and ImageNetV2 HITs.
//! * `pointer_nudge` (default false): the red-circle cursor and the
//!   instruction "click on the object".
//! * `classes`: optional names and descriptions by WordNet id; classes not
//!   listed take their name and gloss from the built-in ImageNet table.
//! * `images`: `name` (unique key, as in the releases), `file` (relative to
//!   the image folder; no `..`, not absolute), `class` (the candidate class
//!   the page asks about), `known_positive` (quality control: the image is
//!   known to show its class).
//!
//! Browse HITs hold one class: a class's candidates, in manifest order, are
//! cut into pages of `images_per_page`, and the pages into HITs of
//! `pages_per_hit` (the last page and HIT of a class may be shorter).

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use labelscope_core::classes::ClassTable;

use crate::{Error, Result};

/// The task types of the studio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// ImageNet-style: a grid of candidate images for one class; click the
    /// images that show it.
    Browse,
}

impl Task {
    /// The name used in manifests and the database.
    pub fn name(self) -> &'static str {
        match self {
            Task::Browse => "browse",
        }
    }
}

/// A class as a HIT shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassText {
    /// WordNet id (or the manifest's key).
    pub wnid: String,
    /// Display name.
    pub name: String,
    /// Description (WordNet gloss by default).
    pub description: String,
}

/// One image of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestImage {
    /// Unique key.
    pub name: String,
    /// Path relative to the image folder.
    pub file: String,
    /// Candidate class.
    pub class: String,
    /// Known to show its class.
    pub known_positive: bool,
}

/// A validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Project name.
    pub name: String,
    /// Task type.
    pub task: Task,
    /// Candidate images per page.
    pub images_per_page: usize,
    /// Pages per HIT.
    pub pages_per_hit: usize,
    /// Red-circle cursor and "click on the object".
    pub pointer_nudge: bool,
    /// Classes used by the images, by WordNet id.
    pub classes: BTreeMap<String, ClassText>,
    /// Images in manifest order.
    pub images: Vec<ManifestImage>,
    /// The manifest text as given (kept in the database).
    pub source: String,
}

/// One page of a HIT: positions in [`Manifest::images`] (or database ids
/// once stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageSpec<I> {
    /// The class the page asks about.
    pub class: String,
    /// The candidate images.
    pub images: Vec<I>,
}

/// What a HIT holds, as stored in the database (`hits.spec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitSpec {
    /// Task type.
    pub task: Task,
    /// Red-circle cursor and "click on the object".
    pub pointer_nudge: bool,
    /// Names and descriptions of the classes of the pages.
    pub classes: Vec<ClassText>,
    /// Pages, with image database ids.
    pub pages: Vec<PageSpec<i64>>,
}

const MAX_IMAGES_PER_PAGE: usize = 500;
const MAX_PAGES_PER_HIT: usize = 100;

fn field<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// Whether `file` is a safe relative path: not empty, not absolute, no `..`.
pub fn is_safe_relative(file: &str) -> bool {
    let p = Path::new(file);
    !file.is_empty()
        && !file.contains('\0')
        && !file.contains('\\')
        && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn from_path(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Manifest::parse(&text, path)
    }

    /// Parses and validates manifest text; errors name `path`, the key path
    /// and what was expected.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest> {
        let root: Value = serde_json::from_str(text).map_err(|e| {
            Error::format(path, format!("line {}, column {}", e.line(), e.column()), format!("not valid JSON: {e}"))
        })?;
        let obj = root.as_object().ok_or_else(|| Error::format(path, "top level", "expected a JSON object"))?;
        let known = ["name", "task", "images_per_page", "pages_per_hit", "pointer_nudge", "classes", "images"];
        if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Error::format(path, k.as_str(), format!("unknown key; expected one of {}", known.join(", "))));
        }
        let name = match field(obj, "name") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => s.trim().to_string(),
            _ => return Err(Error::format(path, "name", "expected a non-empty string (at most 200 bytes)")),
        };
        let task = match field(obj, "task") {
            Some(Value::String(s)) if s == "browse" => Task::Browse,
            Some(Value::String(s)) => {
                return Err(Error::format(
                    path,
                    "task",
                    format!("{s:?} is not a task this build serves; expected \"browse\""),
                ))
            }
            _ => return Err(Error::format(path, "task", "expected a string (\"browse\")")),
        };
        let count = |key: &str, default: usize, max: usize| -> Result<usize> {
            match field(obj, key) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .map(|n| n as usize)
                    .filter(|&n| n >= 1 && n <= max)
                    .ok_or_else(|| Error::format(path, key, format!("expected an integer from 1 to {max}"))),
            }
        };
        let images_per_page = count("images_per_page", 48, MAX_IMAGES_PER_PAGE)?;
        let pages_per_hit = count("pages_per_hit", 10, MAX_PAGES_PER_HIT)?;
        let pointer_nudge = match field(obj, "pointer_nudge") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(Error::format(path, "pointer_nudge", "expected true or false")),
        };
        let mut overrides: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        match field(obj, "classes") {
            None => {}
            Some(Value::Object(m)) => {
                for (wnid, v) in m {
                    let at = format!("classes.{wnid}");
                    let o = v
                        .as_object()
                        .ok_or_else(|| Error::format(path, &at, "expected an object {name, description}"))?;
                    let text = |k: &str| -> Result<Option<String>> {
                        match field(o, k) {
                            None => Ok(None),
                            Some(Value::String(s)) => Ok(Some(s.clone())),
                            Some(_) => Err(Error::format(path, format!("{at}.{k}"), "expected a string")),
                        }
                    };
                    overrides.insert(wnid.clone(), (text("name")?, text("description")?));
                }
            }
            Some(_) => return Err(Error::format(path, "classes", "expected an object keyed by WordNet id")),
        }
        let list = match field(obj, "images") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            _ => return Err(Error::format(path, "images", "expected a non-empty array of images")),
        };
        let table = ClassTable::imagenet();
        let mut images = Vec::with_capacity(list.len());
        let mut names = HashSet::with_capacity(list.len());
        let mut classes = BTreeMap::new();
        for (i, v) in list.iter().enumerate() {
            let at = |k: &str| format!("images[{i}].{k}");
            let o = v.as_object().ok_or_else(|| Error::format(path, format!("images[{i}]"), "expected an object"))?;
            if let Some(k) = o.keys().find(|k| !["name", "file", "class", "known_positive"].contains(&k.as_str())) {
                return Err(Error::format(path, at(k), "unknown key; expected name, file, class, known_positive"));
            }
            let s = |k: &str| -> Result<String> {
                match field(o, k) {
                    Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(Error::format(path, at(k), "expected a non-empty string")),
                }
            };
            let file = s("file")?;
            if !is_safe_relative(&file) {
                return Err(Error::format(
                    path,
                    at("file"),
                    format!("{file:?}: expected a path relative to the image folder (no `..`, not absolute)"),
                ));
            }
            let name = match field(o, "name") {
                None => Path::new(&file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                Some(_) => s("name")?,
            };
            if !names.insert(name.clone()) {
                return Err(Error::format(
                    path,
                    at("name"),
                    format!("{name:?} appears twice; image names must be unique"),
                ));
            }
            let class = s("class")?;
            let known_positive = match field(o, "known_positive") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(Error::format(path, at("known_positive"), "expected true or false")),
            };
            if !classes.contains_key(&class) {
                let builtin = table.index_of_wnid(&class).and_then(|k| table.get(k));
                let (oname, odesc) = overrides.get(&class).cloned().unwrap_or((None, None));
                let name = oname.or_else(|| builtin.map(|c| c.name().to_string())).ok_or_else(|| {
                    Error::format(
                        path,
                        at("class"),
                        format!("{class:?} is not an ImageNet WordNet id; give its name under \"classes\""),
                    )
                })?;
                let description = odesc.or_else(|| builtin.map(|c| c.gloss.clone())).unwrap_or_default();
                classes.insert(class.clone(), ClassText { wnid: class.clone(), name, description });
            }
            images.push(ManifestImage { name, file, class, known_positive });
        }
        Ok(Manifest {
            name,
            task,
            images_per_page,
            pages_per_hit,
            pointer_nudge,
            classes,
            images,
            source: text.to_string(),
        })
    }

    /// The HITs: for each, its pages as positions in [`Manifest::images`].
    pub fn hits(&self) -> Vec<Vec<PageSpec<usize>>> {
        let mut by_class: BTreeMap<&str, (usize, Vec<usize>)> = BTreeMap::new();
        for (i, im) in self.images.iter().enumerate() {
            let n = by_class.len();
            by_class.entry(&im.class).or_insert((n, Vec::new())).1.push(i);
        }
        // Classes in order of first appearance.
        let mut order: Vec<(&str, (usize, Vec<usize>))> = by_class.into_iter().collect();
        order.sort_by_key(|(_, (first, _))| *first);
        let mut hits = Vec::new();
        for (class, (_, members)) in order {
            let pages: Vec<PageSpec<usize>> = members
                .chunks(self.images_per_page)
                .map(|c| PageSpec { class: class.to_string(), images: c.to_vec() })
                .collect();
            for chunk in pages.chunks(self.pages_per_hit) {
                hits.push(chunk.to_vec());
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Manifest> {
        Manifest::parse(s, Path::new("m.json"))
    }

    fn images(n: usize, class: &str) -> String {
        (0..n)
            .map(|i| format!(r#"{{"file": "{class}/{class}_{i}.JPEG", "class": "{class}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn hits_follow_the_imagenet_layout() {
        let text = format!(
            r#"{{"name": "p", "task": "browse", "images": [{}, {}]}}"#,
            images(1000, "n01440764"),
            images(50, "n02085620")
        );
        let m = parse(&text).unwrap();
        assert_eq!((m.images_per_page, m.pages_per_hit), (48, 10));
        let hits = m.hits();
        // 1000 = 20 pages of 48 + one of 40 -> 21 pages -> HITs of 10, 10, 1; 50 -> 48 + 2 -> one HIT of 2 pages.
        assert_eq!(hits.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 1, 2]);
        assert_eq!(hits[2][0].images.len(), 1000 - 20 * 48);
        assert_eq!(hits[3][0].class, "n02085620");
        assert_eq!(hits[3][1].images, vec![1048, 1049]);
        assert_eq!(m.images[0].name, "n01440764_0");
        assert_eq!(m.classes["n01440764"].name, "tench");
        assert!(!m.classes["n01440764"].description.is_empty());
    }

    #[test]
    fn errors_name_the_key_and_what_was_expected() {
        let cases = [
            ("[1]", "top level", "JSON object"),
            ("{", "line 1", "not valid JSON"),
            (r#"{"task": "browse", "images": []}"#, "name", "non-empty string"),
            (r#"{"name": "p", "task": "draw", "images": []}"#, "task", "\"draw\""),
            (r#"{"name": "p", "task": "browse", "images": []}"#, "images", "non-empty array"),
            (r#"{"name": "p", "task": "browse", "imgs": []}"#, "imgs", "unknown key"),
            (r#"{"name": "p", "task": "browse", "images_per_page": 0, "images": [1]}"#, "images_per_page", "1 to 500"),
            (
                r#"{"name": "p", "task": "browse", "images": [{"file": "../x.jpg", "class": "n01440764"}]}"#,
                "images[0].file",
                "no `..`",
            ),
            (
                r#"{"name": "p", "task": "browse", "images": [{"file": "/etc/passwd", "class": "n01440764"}]}"#,
                "images[0].file",
                "relative",
            ),
            (
                r#"{"name": "p", "task": "browse", "images": [{"file": "a.jpg"}]}"#,
                "images[0].class",
                "non-empty string",
            ),
            (
                r#"{"name": "p", "task": "browse", "images": [{"file": "a.jpg", "class": "cat"}]}"#,
                "images[0].class",
                "not an ImageNet",
            ),
            (
                r#"{"name": "p", "task": "browse", "images": [{"file": "a.jpg", "class": "n01440764"}, {"file": "b/a.png", "class": "n01440764"}]}"#,
                "images[1].name",
                "appears twice",
            ),
            (
                r#"{"name": "p", "task": "browse", "images": [{"file": "a.jpg", "class": "n01440764", "known_positive": 1}]}"#,
                "images[0].known_positive",
                "true or false",
            ),
        ];
        for (text, at, what) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with("m.json: ") && e.contains(at) && e.contains(what), "{text} -> {e}");
        }
    }

    #[test]
    fn custom_classes_need_a_name() {
        let m = parse(
            r#"{"name": "p", "task": "browse", "classes": {"cat": {"name": "cat", "description": "a <small> feline"}},
                "images": [{"file": "a.jpg", "class": "cat"}]}"#,
        )
        .unwrap();
        assert_eq!(m.classes["cat"].description, "a <small> feline");
    }

    #[test]
    fn safe_paths() {
        for ok in ["a.jpg", "d/a.jpg", "./d/a.jpg", "d/./a b.jpg"] {
            assert!(is_safe_relative(ok), "{ok}");
        }
        for bad in ["", "/a.jpg", "../a.jpg", "d/../../a.jpg", "d\\..\\a.jpg", "a\0.jpg"] {
            assert!(!is_safe_relative(bad), "{bad:?}");
        }
    }
}
