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
//! * `task`: `browse` (ImageNet-style candidate grids), `tag` (COCO-style
//!   icon placement), `verify` (yes / no / maybe on proposed labels) or
//!   `region` (draw a box, pick its class) or `label` (pick one class for
//!   the image, optionally an alternative with the escape hatch).
//! * `images_per_page` (browse only; default 48) and `pages_per_hit`
//!   (default 10 for browse and region, 20 for tag, verify and label): the
//!   layout of the ImageNet / ImageNetV2 and COCO HITs. Tag, verify, region
//!   and label pages show one image.
//! * `pointer_nudge` (browse; default false): the red-circle cursor and the
//!   instruction "click on the object".
//! * `classes`: optional names and descriptions by class key; WordNet ids
//!   not listed take their name and gloss from the built-in ImageNet table.
//! * `categories` (tag): the icons, `[{"name": "dog", "superclass": "animal"}]`;
//!   default: the 80 COCO categories in their 12 supercategories.
//! * `images`: `name` (unique key, as in the releases), `file` (relative to
//!   the image folder; no `..`, not absolute) and, by task:
//!   * `class`: the candidate class a browse page asks about (required for
//!     browse; elsewhere the original label, shown by verify, never sent to
//!     a label page);
//!   * `known_positive` (browse): the image is known to show its class;
//!   * `gold`: an attention check with a known answer — browse: `true` /
//!     `false` (whether the image must be selected); verify: `{"label":
//!     "yes" | "no"}` for some of its proposed labels; label: a class key
//!     or an array of class keys (the answers counted right);
//!   * `proposed` (verify, required): the labels to verify (class keys);
//!   * `objects` (tag, region): known objects for quality control,
//!     `[{"category": "dog", "box": [x0, y0, x1, y1]}]` in pixels, or with
//!     `"segmentation": {"size": [h, w], "counts": "…" | [..]}` (COCO RLE);
//!   * `image_id` (tag): the COCO image id written in COCO-AB exports.
//!
//! Browse HITs hold one class: a class's candidates, in manifest order, are
//! cut into pages of `images_per_page`, and the pages into HITs of
//! `pages_per_hit` (the last page and HIT of a class may be shorter). The
//! other tasks cut the images, in manifest order, into HITs of
//! `pages_per_hit` one-image pages.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use labelscope_byproducts::synth::COCO_CATEGORIES;
use labelscope_core::classes::ClassTable;
use labelscope_core::rle::Rle;

use crate::{Error, Result};

/// The task types of the studio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// ImageNet-style: a grid of candidate images for one class; click the
    /// images that show it.
    Browse,
    /// COCO-style: drag class icons onto the objects of one image.
    Tag,
    /// ReaL-style: answer yes / no / maybe for each proposed label.
    Verify,
    /// Draw boxes and name their classes.
    Region,
    /// Free labelling (Shankar et al. 2020): pick one class for the image,
    /// optionally an alternative with the escape hatch.
    Label,
}

impl Task {
    /// Every task.
    pub const ALL: [Task; 5] = [Task::Browse, Task::Tag, Task::Verify, Task::Region, Task::Label];

    /// The name used in manifests and the database.
    pub fn name(self) -> &'static str {
        match self {
            Task::Browse => "browse",
            Task::Tag => "tag",
            Task::Verify => "verify",
            Task::Region => "region",
            Task::Label => "label",
        }
    }

    /// Parses a task name.
    pub fn parse(s: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Pages per HIT when the manifest does not say (ImageNet: 10, COCO: 20).
    pub fn default_pages_per_hit(self) -> usize {
        match self {
            Task::Browse | Task::Region => 10,
            Task::Tag | Task::Verify | Task::Label => 20,
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

/// A tag icon: a category and the superclass tab it is found under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    /// Category name (written as `iconType`).
    pub name: String,
    /// Superclass (tab) name.
    pub superclass: String,
}

/// The 12 COCO supercategories by category id.
fn coco_superclass(id: u32) -> &'static str {
    match id {
        1 => "person",
        2..=9 => "vehicle",
        10..=15 => "outdoor",
        16..=25 => "animal",
        26..=33 => "accessory",
        34..=43 => "sports",
        44..=51 => "kitchen",
        52..=61 => "food",
        62..=70 => "furniture",
        71..=77 => "electronic",
        78..=83 => "appliance",
        _ => "indoor",
    }
}

/// The 80 COCO categories with their supercategories, in id order.
pub fn coco_categories() -> Vec<Category> {
    COCO_CATEGORIES
        .iter()
        .map(|&(id, name)| Category { name: name.to_string(), superclass: coco_superclass(id).to_string() })
        .collect()
}

/// The shape of a known object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// `[x0, y0, x1, y1]` in pixels of the original image.
    Box([f64; 4]),
    /// A mask: `(height, width, COCO compressed counts)`.
    Mask(usize, usize, String),
}

/// A known object of an image (quality control of tag and region work).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownObject {
    /// Category (tag) or class key (region).
    pub category: String,
    /// Where it is.
    pub shape: Shape,
}

impl KnownObject {
    /// Whether the image-normalised point `(x, y)` of an image of
    /// `width × height` pixels lies on the object.
    pub fn contains(&self, x: f64, y: f64, width: f64, height: f64) -> bool {
        match &self.shape {
            Shape::Box(b) => {
                let (px, py) = (x * width, y * height);
                px >= b[0] && px <= b[2] && py >= b[1] && py <= b[3]
            }
            Shape::Mask(h, w, counts) => {
                let Ok(rle) = Rle::from_counts_string(counts, *h, *w) else { return false };
                let col = ((x * *w as f64) as usize).min(w.saturating_sub(1));
                let row = ((y * *h as f64) as usize).min(h.saturating_sub(1));
                // COCO runs go down the columns.
                let target = (col * h + row) as u64;
                let mut end = 0u64;
                for (k, &c) in rle.counts.iter().enumerate() {
                    end += u64::from(c);
                    if target < end {
                        return k % 2 == 1;
                    }
                }
                false
            }
        }
    }

    /// The object's box `[x0, y0, x1, y1]`, normalised to the image (masks
    /// use their own size; boxes need the image's `width × height`).
    pub fn normalised_box(&self, width: f64, height: f64) -> [f64; 4] {
        match &self.shape {
            Shape::Box(b) => [b[0] / width, b[1] / height, b[2] / width, b[3] / height],
            Shape::Mask(h, w, counts) => match Rle::from_counts_string(counts, *h, *w) {
                Ok(r) => {
                    let b = r.bbox();
                    [b[0] / *w as f64, b[1] / *h as f64, (b[0] + b[2]) / *w as f64, (b[1] + b[3]) / *h as f64]
                }
                Err(_) => [0.0; 4],
            },
        }
    }
}

/// Task data of an image that the page does not show as such (stored with
/// the image; gold answers and known objects never reach the browser).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageExtra {
    /// Labels to verify.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proposed: Vec<String>,
    /// Browse gold: whether the image must be selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold_selected: Option<bool>,
    /// Verify gold: the right answer (`yes` / `no`) for some proposed labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gold_answers: BTreeMap<String, String>,
    /// Label gold: the classes accepted as a right answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gold_labels: Vec<String>,
    /// Known objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<KnownObject>,
    /// COCO image id for COCO-AB exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<u64>,
}

impl ImageExtra {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == ImageExtra::default()
    }

    /// Parses the stored JSON (empty or absent: nothing set).
    pub fn from_stored(s: Option<&str>) -> ImageExtra {
        s.filter(|s| !s.is_empty()).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
    }
}

/// One image of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestImage {
    /// Unique key.
    pub name: String,
    /// Path relative to the image folder.
    pub file: String,
    /// Candidate class (browse) or original label.
    pub class: Option<String>,
    /// Known to show its class.
    pub known_positive: bool,
    /// Task data.
    pub extra: ImageExtra,
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
    /// Classes used by the images (candidate, original and proposed
    /// labels), by key.
    pub classes: BTreeMap<String, ClassText>,
    /// Tag icons (empty for other tasks).
    pub categories: Vec<Category>,
    /// The classes listed under `classes` in the manifest, by key (label:
    /// the choices besides the ImageNet table).
    pub listed_classes: Vec<String>,
    /// Images in manifest order.
    pub images: Vec<ManifestImage>,
    /// The manifest text as given (kept in the database).
    pub source: String,
}

/// One page of a HIT: positions in [`Manifest::images`] (or database ids
/// once stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageSpec<I> {
    /// The class the page asks about (browse) or the image's original label
    /// (empty when none).
    pub class: String,
    /// The images.
    pub images: Vec<I>,
}

/// What a HIT holds, as stored in the database (`hits.spec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitSpec {
    /// Task type.
    pub task: Task,
    /// Red-circle cursor and "click on the object".
    pub pointer_nudge: bool,
    /// Names and descriptions of the classes the pages use.
    pub classes: Vec<ClassText>,
    /// Tag icons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<Category>,
    /// Pages, with image database ids.
    pub pages: Vec<PageSpec<i64>>,
}

const MAX_IMAGES_PER_PAGE: usize = 500;
const MAX_PAGES_PER_HIT: usize = 100;
const MAX_PROPOSED: usize = 50;
const MAX_OBJECTS: usize = 500;

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

/// Keys an image may carry for a task.
fn image_keys(task: Task) -> &'static [&'static str] {
    match task {
        Task::Browse => &["name", "file", "class", "known_positive", "gold"],
        Task::Tag => &["name", "file", "class", "objects", "image_id"],
        Task::Verify => &["name", "file", "class", "proposed", "gold"],
        Task::Region => &["name", "file", "class", "objects"],
        Task::Label => &["name", "file", "class", "gold"],
    }
}

fn parse_objects(v: &Value, path: &Path, at: &str) -> Result<Vec<KnownObject>> {
    let list = v.as_array().ok_or_else(|| Error::format(path, at, "expected an array of objects"))?;
    if list.len() > MAX_OBJECTS {
        return Err(Error::format(path, at, format!("{} objects; at most {MAX_OBJECTS} are accepted", list.len())));
    }
    let mut out = Vec::with_capacity(list.len());
    for (k, o) in list.iter().enumerate() {
        let at = format!("{at}[{k}]");
        let o = o
            .as_object()
            .ok_or_else(|| Error::format(path, &at, "expected an object {category, box | segmentation}"))?;
        if let Some(key) = o.keys().find(|k| !["category", "box", "segmentation"].contains(&k.as_str())) {
            return Err(Error::format(
                path,
                format!("{at}.{key}"),
                "unknown key; expected category, box, segmentation",
            ));
        }
        let category = match field(o, "category") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(Error::format(path, format!("{at}.category"), "expected a non-empty string")),
        };
        let shape = match (field(o, "box"), field(o, "segmentation")) {
            (Some(b), None) => {
                let nums: Option<Vec<f64>> = b.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect());
                match nums {
                    Some(n) if n.len() == 4 && n.iter().all(|x| x.is_finite()) && n[0] <= n[2] && n[1] <= n[3] => {
                        Shape::Box([n[0], n[1], n[2], n[3]])
                    }
                    _ => {
                        return Err(Error::format(
                            path,
                            format!("{at}.box"),
                            "expected [x0, y0, x1, y1] in pixels with x0 <= x1 and y0 <= y1",
                        ))
                    }
                }
            }
            (None, Some(Value::Object(seg))) => {
                let sat = format!("{at}.segmentation");
                let size: Option<Vec<usize>> = field(seg, "size")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|x| x.as_u64().map(|n| n as usize)).collect());
                let (h, w) = match size {
                    Some(s) if s.len() == 2 && s[0] > 0 && s[1] > 0 && s[0] * s[1] <= 100_000_000 => (s[0], s[1]),
                    _ => return Err(Error::format(path, format!("{sat}.size"), "expected [height, width] (positive)")),
                };
                let rle = match field(seg, "counts") {
                    Some(Value::String(c)) => Rle::from_counts_string(c, h, w),
                    Some(Value::Array(a)) => match a
                        .iter()
                        .map(|x| x.as_u64().map(|n| n as u32))
                        .collect::<Option<Vec<_>>>()
                    {
                        Some(c) => Rle::from_uncompressed(c, h, w),
                        None => {
                            return Err(Error::format(path, format!("{sat}.counts"), "expected non-negative integers"))
                        }
                    },
                    _ => {
                        return Err(Error::format(
                            path,
                            format!("{sat}.counts"),
                            "expected a COCO RLE counts string or an array of run lengths",
                        ))
                    }
                }
                .map_err(|e| Error::format(path, format!("{sat}.counts"), e.to_string()))?;
                Shape::Mask(h, w, rle.to_counts_string())
            }
            _ => {
                return Err(Error::format(
                    path,
                    &at,
                    "expected exactly one of \"box\" ([x0, y0, x1, y1]) and \"segmentation\" (COCO RLE)",
                ))
            }
        };
        out.push(KnownObject { category, shape });
    }
    Ok(out)
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
        let known =
            ["name", "task", "images_per_page", "pages_per_hit", "pointer_nudge", "classes", "categories", "images"];
        if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Error::format(path, k.as_str(), format!("unknown key; expected one of {}", known.join(", "))));
        }
        let name = match field(obj, "name") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => s.trim().to_string(),
            _ => return Err(Error::format(path, "name", "expected a non-empty string (at most 200 bytes)")),
        };
        let tasks = "\"browse\", \"tag\", \"verify\", \"region\" or \"label\"";
        let task = match field(obj, "task") {
            Some(Value::String(s)) => Task::parse(s)
                .ok_or_else(|| Error::format(path, "task", format!("{s:?} is not a task; expected {tasks}")))?,
            _ => return Err(Error::format(path, "task", format!("expected a string ({tasks})"))),
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
        let images_per_page = if task == Task::Browse {
            count("images_per_page", 48, MAX_IMAGES_PER_PAGE)?
        } else {
            count("images_per_page", 1, 1).map_err(|_| {
                Error::format(path, "images_per_page", format!("{} pages show one image; expected 1", task.name()))
            })?
        };
        let pages_per_hit = count("pages_per_hit", task.default_pages_per_hit(), MAX_PAGES_PER_HIT)?;
        let pointer_nudge = match field(obj, "pointer_nudge") {
            None => false,
            Some(Value::Bool(b)) if *b && task != Task::Browse => {
                return Err(Error::format(path, "pointer_nudge", "only browse pages have the pointer nudge"))
            }
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
        let categories = match (task, field(obj, "categories")) {
            (Task::Tag, None) => coco_categories(),
            (Task::Tag, Some(Value::Array(a))) if !a.is_empty() && a.len() <= 1000 => {
                let mut out: Vec<Category> = Vec::with_capacity(a.len());
                for (i, c) in a.iter().enumerate() {
                    let at = format!("categories[{i}]");
                    let c: Category = serde_json::from_value(c.clone())
                        .map_err(|_| Error::format(path, &at, "expected {\"name\": string, \"superclass\": string}"))?;
                    if c.name.is_empty() || c.superclass.is_empty() {
                        return Err(Error::format(path, &at, "name and superclass must not be empty"));
                    }
                    if out.iter().any(|o| o.name == c.name) {
                        return Err(Error::format(path, &at, format!("{:?} appears twice", c.name)));
                    }
                    out.push(c);
                }
                out
            }
            (Task::Tag, Some(_)) => {
                return Err(Error::format(
                    path,
                    "categories",
                    "expected a non-empty array (at most 1000) of {name, superclass}",
                ))
            }
            (_, None) => Vec::new(),
            (_, Some(_)) => return Err(Error::format(path, "categories", "only tag projects have icon categories")),
        };
        let list = match field(obj, "images") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            _ => return Err(Error::format(path, "images", "expected a non-empty array of images")),
        };
        let table = ClassTable::imagenet();
        let mut classes = BTreeMap::new();
        let mut class_text = |class: &str, at: &str| -> Result<()> {
            if classes.contains_key(class) {
                return Ok(());
            }
            let builtin = table.index_of_wnid(class).and_then(|k| table.get(k));
            let (oname, odesc) = overrides.get(class).cloned().unwrap_or((None, None));
            let name = oname.or_else(|| builtin.map(|c| c.name().to_string())).ok_or_else(|| {
                Error::format(
                    path,
                    at,
                    format!("{class:?} is not an ImageNet WordNet id; give its name under \"classes\""),
                )
            })?;
            let description = odesc.or_else(|| builtin.map(|c| c.gloss.clone())).unwrap_or_default();
            classes.insert(class.to_string(), ClassText { wnid: class.to_string(), name, description });
            Ok(())
        };
        let allowed = image_keys(task);
        let mut images = Vec::with_capacity(list.len());
        let mut names = HashSet::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let at = |k: &str| format!("images[{i}].{k}");
            let o = v.as_object().ok_or_else(|| Error::format(path, format!("images[{i}]"), "expected an object"))?;
            if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(Error::format(
                    path,
                    at(k),
                    format!("unknown key for a {} project; expected {}", task.name(), allowed.join(", ")),
                ));
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
            let class = match (task, field(o, "class")) {
                (Task::Browse, _) => Some(s("class")?),
                (_, None) => None,
                (_, Some(_)) => Some(s("class")?),
            };
            if let Some(c) = &class {
                class_text(c, &at("class"))?;
            }
            let known_positive = match field(o, "known_positive") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(Error::format(path, at("known_positive"), "expected true or false")),
            };
            let mut extra = ImageExtra::default();
            if task == Task::Verify {
                let list = match field(o, "proposed") {
                    Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_PROPOSED => a,
                    _ => {
                        return Err(Error::format(
                            path,
                            at("proposed"),
                            format!("expected a non-empty array (at most {MAX_PROPOSED}) of labels to verify"),
                        ))
                    }
                };
                for (k, l) in list.iter().enumerate() {
                    let lat = format!("{}[{k}]", at("proposed"));
                    let l = l
                        .as_str()
                        .filter(|l| !l.is_empty())
                        .ok_or_else(|| Error::format(path, &lat, "expected a class key"))?;
                    if extra.proposed.iter().any(|p| p == l) {
                        return Err(Error::format(path, &lat, format!("{l:?} appears twice")));
                    }
                    class_text(l, &lat)?;
                    extra.proposed.push(l.to_string());
                }
            }
            match (task, field(o, "gold")) {
                (_, None) => {}
                (Task::Browse, Some(Value::Bool(b))) => extra.gold_selected = Some(*b),
                (Task::Browse, Some(_)) => {
                    return Err(Error::format(path, at("gold"), "expected true (must be selected) or false (must not)"))
                }
                (Task::Label, Some(g)) => {
                    let keys: Vec<&Value> = match g {
                        Value::Array(a) if !a.is_empty() => a.iter().collect(),
                        Value::String(_) => vec![g],
                        _ => {
                            return Err(Error::format(
                                path,
                                at("gold"),
                                "expected a class key or a non-empty array of class keys (the right answers)",
                            ))
                        }
                    };
                    for (k, l) in keys.into_iter().enumerate() {
                        let gat = if g.is_array() { format!("{}[{k}]", at("gold")) } else { at("gold") };
                        let l = l
                            .as_str()
                            .filter(|l| !l.is_empty())
                            .ok_or_else(|| Error::format(path, &gat, "expected a class key"))?;
                        class_text(l, &gat)?;
                        if !extra.gold_labels.iter().any(|x| x == l) {
                            extra.gold_labels.push(l.to_string());
                        }
                    }
                }
                (_, Some(Value::Object(m))) if !m.is_empty() => {
                    for (label, ans) in m {
                        let gat = format!("{}.{label}", at("gold"));
                        if !extra.proposed.contains(label) {
                            return Err(Error::format(path, &gat, "expected one of the image's proposed labels"));
                        }
                        match ans.as_str() {
                            Some(a @ ("yes" | "no")) => {
                                extra.gold_answers.insert(label.clone(), a.to_string());
                            }
                            _ => return Err(Error::format(path, &gat, "expected \"yes\" or \"no\"")),
                        }
                    }
                }
                (_, Some(_)) => {
                    return Err(Error::format(path, at("gold"), "expected an object {label: \"yes\" | \"no\"}"))
                }
            }
            if let Some(v) = field(o, "objects") {
                extra.objects = parse_objects(v, path, &at("objects"))?;
                for (k, ob) in extra.objects.iter().enumerate() {
                    let oat = format!("{}[{k}].category", at("objects"));
                    if task == Task::Tag && !categories.iter().any(|c| c.name == ob.category) {
                        return Err(Error::format(
                            path,
                            &oat,
                            format!("{:?} is not an icon category of the project", ob.category),
                        ));
                    }
                    if task == Task::Region {
                        class_text(&ob.category, &oat)?;
                    }
                }
            }
            if let Some(v) = field(o, "image_id") {
                extra.image_id = Some(
                    v.as_u64().ok_or_else(|| Error::format(path, at("image_id"), "expected a non-negative integer"))?,
                );
            }
            images.push(ManifestImage { name, file, class, known_positive, extra });
        }
        let listed_classes: Vec<String> = overrides.keys().cloned().collect();
        if task == Task::Label {
            // Listed classes are choices of a label project even when no image uses them.
            for k in &listed_classes {
                class_text(k, &format!("classes.{k}"))?;
            }
        }
        Ok(Manifest {
            name,
            task,
            images_per_page,
            pages_per_hit,
            pointer_nudge,
            classes,
            categories,
            listed_classes,
            images,
            source: text.to_string(),
        })
    }

    /// The HITs: for each, its pages as positions in [`Manifest::images`].
    pub fn hits(&self) -> Vec<Vec<PageSpec<usize>>> {
        if self.task != Task::Browse {
            // A label page must not tell the labeler the original label.
            let class = |i: usize| match self.task {
                Task::Label => String::new(),
                _ => self.images[i].class.clone().unwrap_or_default(),
            };
            let pages: Vec<PageSpec<usize>> =
                (0..self.images.len()).map(|i| PageSpec { class: class(i), images: vec![i] }).collect();
            return pages.chunks(self.pages_per_hit).map(<[_]>::to_vec).collect();
        }
        let mut by_class: BTreeMap<&str, (usize, Vec<usize>)> = BTreeMap::new();
        for (i, im) in self.images.iter().enumerate() {
            let n = by_class.len();
            by_class.entry(im.class.as_deref().unwrap_or("")).or_insert((n, Vec::new())).1.push(i);
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

    #[test]
    fn task_layouts_and_task_data() {
        let m = parse(
            r#"{"name": "t", "task": "tag", "images": [{"file": "a.jpg", "image_id": 139,
                          "objects": [{"category": "dog", "box": [1, 2, 30, 40]},
                                      {"category": "cat", "segmentation": {"size": [2, 2], "counts": [1, 2, 1]}}]},
                         {"file": "b.jpg"}]}"#,
        )
        .unwrap();
        assert_eq!((m.images_per_page, m.pages_per_hit), (1, 20));
        assert_eq!(m.categories.len(), 80);
        let mut supers: Vec<&str> = m.categories.iter().map(|c| c.superclass.as_str()).collect();
        supers.dedup();
        assert_eq!(supers.len(), 12, "{supers:?}");
        assert_eq!(m.categories.iter().find(|c| c.name == "toothbrush").unwrap().superclass, "indoor");
        assert_eq!(m.categories.iter().find(|c| c.name == "tv").unwrap().superclass, "electronic");
        assert_eq!(m.images[0].extra.image_id, Some(139));
        assert_eq!(m.images[0].class, None);
        // Column-major [1, 2, 1] on 2 x 2: pixels (row 1, col 0) and (row 0, col 1) are set.
        let cat = &m.images[0].extra.objects[1];
        assert!(cat.contains(0.25, 0.75, 2.0, 2.0) && cat.contains(0.75, 0.25, 2.0, 2.0));
        assert!(!cat.contains(0.25, 0.25, 2.0, 2.0) && !cat.contains(0.75, 0.75, 2.0, 2.0));
        assert!(m.images[0].extra.objects[0].contains(15.0 / 640.0, 20.0 / 480.0, 640.0, 480.0));
        assert_eq!(m.hits().len(), 1);
        assert_eq!(m.hits()[0].len(), 2);

        let m = parse(
            r#"{"name": "v", "task": "verify", "pages_per_hit": 2,
                          "images": [{"file": "a.jpg", "class": "n01440764", "proposed": ["n01440764", "n02085620"],
                                      "gold": {"n02085620": "no"}}, {"file": "b.jpg", "proposed": ["n01440764"]},
                                     {"file": "c.jpg", "proposed": ["n01440764"]}]}"#,
        )
        .unwrap();
        assert_eq!(m.images[0].extra.gold_answers["n02085620"], "no");
        assert_eq!(m.classes["n02085620"].name, "Chihuahua");
        assert_eq!(m.hits().iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
        let m = parse(
            r#"{"name": "b", "task": "browse", "images": [{"file": "a.jpg", "class": "n01440764", "gold": false}]}"#,
        )
        .unwrap();
        assert_eq!(m.images[0].extra.gold_selected, Some(false));
    }

    #[test]
    fn label_projects() {
        let m = parse(
            r#"{"name": "l", "task": "label", "classes": {"my-toy": {"name": "toy of mine"}},
                "images": [{"file": "a.jpg", "class": "n02085620", "gold": "n02085620"},
                           {"file": "b.jpg", "gold": ["n02123045", "my-toy", "n02123045"]}, {"file": "c.jpg"}]}"#,
        )
        .unwrap();
        assert_eq!((m.task, m.pages_per_hit), (Task::Label, 20));
        assert_eq!(m.images[0].extra.gold_labels, vec!["n02085620".to_string()]);
        assert_eq!(m.images[1].extra.gold_labels, vec!["n02123045".to_string(), "my-toy".to_string()]);
        assert_eq!(m.listed_classes, vec!["my-toy".to_string()]);
        assert_eq!(m.classes["my-toy"].name, "toy of mine");
        // The original label stays off the pages.
        let hits = m.hits();
        assert_eq!(hits[0].iter().map(|p| p.class.as_str()).collect::<Vec<_>>(), ["", "", ""]);
        for (text, at, what) in [
            (
                r#"{"name": "l", "task": "label", "images": [{"file": "a.jpg", "gold": "cat"}]}"#,
                "images[0].gold",
                "not an ImageNet",
            ),
            (
                r#"{"name": "l", "task": "label", "images": [{"file": "a.jpg", "gold": ["n02085620", 3]}]}"#,
                "images[0].gold[1]",
                "class key",
            ),
            (
                r#"{"name": "l", "task": "label", "images": [{"file": "a.jpg", "gold": true}]}"#,
                "images[0].gold",
                "class key",
            ),
            (
                r#"{"name": "l", "task": "label", "images": [{"file": "a.jpg", "proposed": ["n02085620"]}]}"#,
                "images[0].proposed",
                "unknown key for a label project",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(at) && e.contains(what), "{text} -> {e}");
        }
    }

    #[test]
    fn task_data_errors_name_the_key() {
        let cases = [
            (
                r#"{"name": "v", "task": "verify", "images": [{"file": "a.jpg"}]}"#,
                "images[0].proposed",
                "non-empty array",
            ),
            (
                r#"{"name": "v", "task": "verify", "images": [{"file": "a.jpg", "proposed": ["n01440764", "n01440764"]}]}"#,
                "images[0].proposed[1]",
                "appears twice",
            ),
            (
                r#"{"name": "v", "task": "verify", "images": [{"file": "a.jpg", "proposed": ["n01440764"], "gold": {"n02085620": "yes"}}]}"#,
                "images[0].gold.n02085620",
                "proposed labels",
            ),
            (
                r#"{"name": "v", "task": "verify", "images": [{"file": "a.jpg", "proposed": ["n01440764"], "gold": {"n01440764": "maybe"}}]}"#,
                "images[0].gold.n01440764",
                "\"yes\" or \"no\"",
            ),
            (
                r#"{"name": "t", "task": "tag", "images": [{"file": "a.jpg", "objects": [{"category": "unicorn", "box": [0, 0, 1, 1]}]}]}"#,
                "images[0].objects[0].category",
                "not an icon category",
            ),
            (
                r#"{"name": "t", "task": "tag", "images": [{"file": "a.jpg", "objects": [{"category": "dog", "box": [5, 0, 1, 1]}]}]}"#,
                "images[0].objects[0].box",
                "x0 <= x1",
            ),
            (
                r#"{"name": "t", "task": "tag", "images": [{"file": "a.jpg", "objects": [{"category": "dog", "segmentation": {"size": [2, 2], "counts": [1, 1]}}]}]}"#,
                "images[0].objects[0].segmentation.counts",
                "",
            ),
            (
                r#"{"name": "t", "task": "tag", "images": [{"file": "a.jpg", "objects": [{"category": "dog"}]}]}"#,
                "images[0].objects[0]",
                "exactly one of",
            ),
            (
                r#"{"name": "t", "task": "tag", "images_per_page": 4, "images": [{"file": "a.jpg"}]}"#,
                "images_per_page",
                "one image",
            ),
            (
                r#"{"name": "t", "task": "tag", "pointer_nudge": true, "images": [{"file": "a.jpg"}]}"#,
                "pointer_nudge",
                "only browse",
            ),
            (
                r#"{"name": "b", "task": "browse", "categories": [], "images": [{"file": "a.jpg", "class": "n01440764"}]}"#,
                "categories",
                "only tag",
            ),
            (
                r#"{"name": "t", "task": "tag", "categories": [{"name": "a", "superclass": "x"}, {"name": "a", "superclass": "y"}], "images": [{"file": "a.jpg"}]}"#,
                "categories[1]",
                "appears twice",
            ),
            (
                r#"{"name": "t", "task": "tag", "images": [{"file": "a.jpg", "proposed": ["n01440764"]}]}"#,
                "images[0].proposed",
                "unknown key for a tag project",
            ),
            (
                r#"{"name": "b", "task": "browse", "images": [{"file": "a.jpg", "class": "n01440764", "gold": "yes"}]}"#,
                "images[0].gold",
                "true (must be selected)",
            ),
            (
                r#"{"name": "t", "task": "tag", "images": [{"file": "a.jpg", "image_id": -3}]}"#,
                "images[0].image_id",
                "non-negative integer",
            ),
        ];
        for (text, at, what) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with("m.json: ") && e.contains(at) && e.contains(what), "{text} -> {e}");
        }
    }
}
