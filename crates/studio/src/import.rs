//! Import of byproduct releases into the studio database: an ImageNet-AB
//! `.tar.gz` (ILSVRC-style XML with one `metadata` section per showing)
//! becomes a browse project, a COCO-AB JSON array a tag project, so that
//! published byproducts and new collections share quality control, exports
//! and analyses.
//!
//! The release is read twice, streaming (never whole in memory): the first
//! pass finds the images and the HIT / page layout, the second stores the
//! records in batches (one transaction each); when the second pass fails,
//! the new project is deleted again, so a failed import leaves nothing.
//!
//! * Images: ImageNet-AB keys (`filename`), with `{wnid}/{key}.JPEG` as
//!   their file and the key's WordNet id as class; COCO-AB `image_id`s,
//!   named `file_name` when present, else the 12-digit id (`{id}.jpg`). The
//!   files need not exist: imported HITs are for analysis, not for serving.
//! * HITs and pages: ImageNet-AB `hitId` and `page` (pages in numeric
//!   order); COCO-AB `hitId` and `pageIndex` when present (the studio's own
//!   exports), else one HIT per worker with their records in file order.
//! * Workers: only the keyed hash of the release's `workerId` is stored.
//! * Records take the studio's layout of the task: ImageNet-AB's final
//!   click becomes `selectedRecord` at the time `estimateTime` after the
//!   first trace sample (or after an `enter` at 0 when there is no trace),
//!   so that an ImageNet-AB export gives back the same `estimateTime`;
//!   COCO-AB actions, tabs and traces are kept as they are, with the final
//!   `icons` replayed from the actions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use labelscope_byproducts::imagenet::ImageRecord;
use labelscope_byproducts::stream::ReadOptions;
use labelscope_core::classes::ClassTable;

use crate::db::{Db, ImageRow, ImportIds, ImportRow};
use crate::manifest::{coco_categories, Category, ClassText, HitSpec, ImageExtra, PageSpec, Task};
use crate::secret::{new_token, token_hash, WorkerKey};
use crate::{Error, Result};

/// Release layouts that can be imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// ImageNet-AB `.tar.gz`.
    ImagenetAb,
    /// COCO-AB JSON array.
    CocoAb,
}

/// What an import stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Images of the new project.
    pub images: usize,
    /// HITs.
    pub hits: usize,
    /// Assignments (HIT, worker).
    pub assignments: u64,
    /// Pages.
    pub pages: u64,
    /// Records (showings).
    pub records: u64,
    /// Malformed records skipped (with `skip_bad`).
    pub skipped: u64,
}

/// A COCO-AB element, with the fields the studio keeps.
#[derive(Debug, Deserialize)]
struct CocoIn {
    image_id: u64,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(rename = "originalImageWidth", default)]
    width: Option<f64>,
    #[serde(rename = "originalImageHeight", default)]
    height: Option<f64>,
    #[serde(rename = "imageWidth", default)]
    page_width: Option<f64>,
    #[serde(rename = "imageHeight", default)]
    page_height: Option<f64>,
    #[serde(rename = "timeSpent", default)]
    time_spent: Option<f64>,
    #[serde(rename = "workerId", default)]
    worker: Option<Value>,
    #[serde(rename = "hitId", default)]
    hit: Option<Value>,
    #[serde(rename = "pageIndex", default)]
    page: Option<u64>,
    #[serde(rename = "actionHistories", default)]
    actions: Vec<Value>,
    #[serde(rename = "categoryHistories", default)]
    categories: Vec<Value>,
    #[serde(rename = "mouseTracking", default)]
    trace: Vec<Value>,
}

fn text_of(v: &Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    }
}

fn page_number(p: &Option<String>) -> u64 {
    p.as_deref().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// The first pass: images, and per HIT key its pages (key → image positions).
#[derive(Default)]
struct Layout {
    names: Vec<(String, Option<String>, ImageExtra)>,
    by_key: HashMap<String, usize>,
    hits: BTreeMap<String, BTreeMap<u64, BTreeSet<usize>>>,
    icons: BTreeSet<String>,
}

impl Layout {
    fn image(&mut self, key: &str, class: Option<String>, extra: ImageExtra) -> usize {
        if let Some(&k) = self.by_key.get(key) {
            return k;
        }
        self.by_key.insert(key.to_string(), self.names.len());
        self.names.push((key.to_string(), class, extra));
        self.names.len() - 1
    }
}

/// HIT and page keys of a COCO-AB element (the same in both passes).
fn coco_keys(r: &CocoIn, worker_pages: &mut HashMap<String, u64>) -> (String, u64) {
    let worker = text_of(&r.worker).unwrap_or_default();
    match (text_of(&r.hit), r.page) {
        (Some(h), Some(p)) => (format!("hit {h}"), p),
        _ => {
            let n = worker_pages.entry(worker.clone()).or_insert(0);
            *n += 1;
            (format!("worker {worker}"), *n - 1)
        }
    }
}

fn coco_name(r: &CocoIn) -> String {
    r.file_name.clone().unwrap_or_else(|| format!("{:012}", r.image_id))
}

fn read_options(threads: usize, skip_bad: bool) -> ReadOptions<'static> {
    ReadOptions { skip_bad, threads, progress: None }
}

fn first_pass(format: ImportFormat, path: &Path, threads: usize, skip_bad: bool) -> Result<(Layout, u64)> {
    let mut l = Layout::default();
    let opts = read_options(threads, skip_bad);
    let summary = match format {
        ImportFormat::ImagenetAb => labelscope_byproducts::imagenet::read_archive(path, &opts, |r: ImageRecord| {
            let extra = ImageExtra::default();
            let k = l.image(&r.image, r.wnid.clone(), extra);
            for s in &r.showings {
                let hit = format!("hit {}", s.hit.as_deref().unwrap_or("-"));
                l.hits.entry(hit).or_default().entry(page_number(&s.page)).or_default().insert(k);
            }
        })?,
        ImportFormat::CocoAb => {
            let mut worker_pages = HashMap::new();
            let s = labelscope_byproducts::coco::read_array_of(
                path,
                &opts,
                "a COCO-AB record with image_id",
                |r: CocoIn| {
                    let extra = ImageExtra { image_id: Some(r.image_id), ..ImageExtra::default() };
                    let k = l.image(&coco_name(&r), None, extra);
                    for a in &r.actions {
                        if let Some(i) = a.get("iconType").and_then(Value::as_str) {
                            l.icons.insert(i.to_string());
                        }
                    }
                    let (hit, page) = coco_keys(&r, &mut worker_pages);
                    l.hits.entry(hit).or_default().entry(page).or_default().insert(k);
                },
            )?;
            s
        }
    };
    Ok((l, summary.skipped))
}

/// Final icons of a COCO-AB action list (add and move place, remove takes away).
fn replay(actions: &[Value]) -> Vec<Value> {
    let mut icons: Vec<(String, Value)> = Vec::new();
    for a in actions {
        let Some(icon) = a.get("iconType").and_then(Value::as_str) else { continue };
        let at = icons.iter().position(|(c, _)| c == icon);
        match (a.get("actionType").and_then(Value::as_str), at, a.get("pointTo")) {
            (Some("remove"), Some(k), _) => {
                icons.remove(k);
            }
            (Some("add" | "move"), Some(k), Some(p)) => icons[k].1 = p.clone(),
            (Some("add" | "move"), None, Some(p)) => icons.push((icon.to_string(), p.clone())),
            _ => {}
        }
    }
    icons.into_iter().map(|(c, p)| json!({"iconType": c, "x": p["x"], "y": p["y"]})).collect()
}

fn imagenet_rows(
    r: &ImageRecord,
    image_id: i64,
    hits: &HashMap<String, (i64, HashMap<u64, i64>)>,
    key: &WorkerKey,
) -> Vec<ImportRow> {
    let mut out = Vec::with_capacity(r.showings.len());
    for s in &r.showings {
        let Some((hit_id, pages)) = hits.get(&format!("hit {}", s.hit.as_deref().unwrap_or("-"))) else { continue };
        let Some(&page_index) = pages.get(&page_number(&s.page)) else { continue };
        let trace: Vec<Value> =
            s.trace.iter().map(|p| json!({"x": p.point.x, "y": p.point.y, "time": p.time_ms})).collect();
        let t0 = s.trace.first().map(|p| p.time_ms);
        let hovered = if t0.is_none() && s.estimate_time_ms.is_some() {
            json!([{"action": "enter", "time": 0.0}])
        } else {
            json!([])
        };
        let clicks = match (s.selected, s.click) {
            (true, Some(c)) => {
                let time = t0.unwrap_or(0.0) + s.estimate_time_ms.unwrap_or(0.0);
                json!([{"x": c.x, "y": c.y, "time": time}])
            }
            _ => json!([]),
        };
        let mut data = json!({"imageID": image_id, "hoveredRecord": hovered, "mouseTracking": trace,
                              "selectedRecord": clicks, "selected": s.selected, "imported": true});
        if let Some((w, h)) = r.size {
            data["originalSize"] = json!({"width": w, "height": h});
        }
        if let Some(e) = s.estimate_time_ms {
            data["estimateTime"] = json!(e);
        }
        out.push(ImportRow {
            hit_id: *hit_id,
            worker_hash: key.hash_worker(s.worker.as_deref().unwrap_or("")),
            page_index,
            image_id,
            selected: s.selected,
            data: data.to_string(),
        });
    }
    out
}

fn coco_row(
    r: &CocoIn,
    image_id: i64,
    hits: &HashMap<String, (i64, HashMap<u64, i64>)>,
    worker_pages: &mut HashMap<String, u64>,
    key: &WorkerKey,
) -> Option<ImportRow> {
    let (hit, page) = coco_keys(r, worker_pages);
    let (hit_id, pages) = hits.get(&hit)?;
    let page_index = *pages.get(&page)?;
    let icons = replay(&r.actions);
    let mut data = json!({"imageID": image_id, "timeSpent": r.time_spent, "actionHistories": r.actions,
                          "categoryHistories": r.categories, "mouseTracking": r.trace, "icons": icons,
                          "imported": true});
    if let (Some(w), Some(h)) = (r.width, r.height) {
        data["originalSize"] = json!({"width": w, "height": h});
    }
    if let (Some(w), Some(h)) = (r.page_width, r.page_height) {
        data["onPageSize"] = json!({"width": w, "height": h});
    }
    Some(ImportRow {
        hit_id: *hit_id,
        worker_hash: key.hash_worker(&text_of(&r.worker).unwrap_or_default()),
        page_index,
        image_id,
        selected: data["icons"].as_array().is_some_and(|a| !a.is_empty()),
        data: data.to_string(),
    })
}

/// Records stored per transaction.
const BATCH: usize = 5000;

/// Imports the release at `path` as a new project called `project`;
/// `threads` parser threads (0: one per core); `skip_bad` skips malformed
/// records (counted) instead of stopping.
pub async fn import(
    db: &Db,
    key: &WorkerKey,
    project: &str,
    format: ImportFormat,
    path: &Path,
    threads: usize,
    skip_bad: bool,
) -> Result<ImportSummary> {
    if db.project_by_name(project).await?.is_some() {
        return Err(Error::Invalid(format!("a project named {project:?} already exists")));
    }
    let owned: PathBuf = path.to_path_buf();
    let (layout, skipped) = tokio::task::spawn_blocking(move || first_pass(format, &owned, threads, skip_bad))
        .await
        .map_err(|e| Error::Invalid(format!("import stopped: {e}")))??;
    if layout.names.is_empty() {
        return Err(Error::Invalid(format!("{}: no records to import", path.display())));
    }
    let task = match format {
        ImportFormat::ImagenetAb => Task::Browse,
        ImportFormat::CocoAb => Task::Tag,
    };
    let rows: Vec<ImageRow> = layout
        .names
        .iter()
        .map(|(name, class, extra)| ImageRow {
            id: 0,
            name: name.clone(),
            file: match (format, class) {
                (ImportFormat::ImagenetAb, Some(c)) => format!("{c}/{name}.JPEG"),
                (ImportFormat::ImagenetAb, None) => format!("{name}.JPEG"),
                (ImportFormat::CocoAb, _) => format!("{name}.jpg"),
            },
            class: class.clone(),
            known_positive: false,
            extra: (!extra.is_empty()).then(|| serde_json::to_string(extra).unwrap_or_default()),
        })
        .collect();
    let hit_keys: Vec<&String> = layout.hits.keys().collect();
    let mut hit_rows = Vec::with_capacity(hit_keys.len());
    for k in &hit_keys {
        let pages: Vec<Vec<usize>> = layout.hits[*k].values().map(|s| s.iter().copied().collect()).collect();
        hit_rows.push((token_hash(&new_token()?), pages));
    }
    let table = ClassTable::imagenet();
    let mut categories = coco_categories();
    for icon in &layout.icons {
        if !categories.iter().any(|c| &c.name == icon) {
            categories.push(Category { name: icon.clone(), superclass: "other".into() });
        }
    }
    let source = json!({"imported": path.display().to_string(), "format": match format {
        ImportFormat::ImagenetAb => "imagenet-ab",
        ImportFormat::CocoAb => "coco-ab",
    }})
    .to_string();
    let names = &layout.names;
    let (project_id, hit_ids) = db
        .insert_project(project, task.name(), &source, &rows, &hit_rows, |k, pages| {
            let mut classes: Vec<ClassText> = Vec::new();
            let specs: Vec<PageSpec<i64>> = pages
                .iter()
                .zip(&hit_rows[k].1)
                .map(|(ids, pos)| {
                    let class = pos.first().and_then(|&p| names[p].1.clone()).unwrap_or_default();
                    if !class.is_empty() && !classes.iter().any(|c| c.wnid == class) {
                        let builtin = table.index_of_wnid(&class).and_then(|i| table.get(i));
                        classes.push(ClassText {
                            wnid: class.clone(),
                            name: builtin.map(|c| c.name().to_string()).unwrap_or_else(|| class.clone()),
                            description: builtin.map(|c| c.gloss.clone()).unwrap_or_default(),
                        });
                    }
                    PageSpec { class, images: ids.clone() }
                })
                .collect();
            let spec = HitSpec {
                task,
                pointer_nudge: false,
                classes,
                categories: if task == Task::Tag { categories.clone() } else { Vec::new() },
                pages: specs,
            };
            serde_json::to_string(&spec).unwrap_or_default()
        })
        .await?;
    // Image ids by key, HIT ids and page positions by key, for the second pass.
    let stored = db.project_images(project_id).await?;
    let image_ids: HashMap<String, i64> = stored.into_iter().map(|r| (r.name, r.id)).collect();
    let hits: HashMap<String, (i64, HashMap<u64, i64>)> = hit_keys
        .iter()
        .zip(&hit_ids)
        .map(|(k, &id)| {
            let pages = layout.hits[*k].keys().enumerate().map(|(i, &p)| (p, i as i64)).collect();
            ((*k).clone(), (id, pages))
        })
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<ImportRow>>(4);
    let owned: PathBuf = path.to_path_buf();
    let key2 = key.clone();
    let reader = tokio::task::spawn_blocking(move || -> Result<()> {
        let opts = read_options(threads, skip_bad);
        let mut batch = Vec::with_capacity(BATCH);
        let mut open = true;
        let flush = |batch: &mut Vec<ImportRow>, open: &mut bool| {
            if *open && !batch.is_empty() && tx.blocking_send(std::mem::take(batch)).is_err() {
                *open = false;
            }
            batch.clear();
        };
        match format {
            ImportFormat::ImagenetAb => {
                labelscope_byproducts::imagenet::read_archive(&owned, &opts, |r: ImageRecord| {
                    if let Some(&id) = image_ids.get(&r.image) {
                        batch.extend(imagenet_rows(&r, id, &hits, &key2));
                    }
                    if batch.len() >= BATCH {
                        flush(&mut batch, &mut open);
                    }
                })?;
            }
            ImportFormat::CocoAb => {
                let mut worker_pages = HashMap::new();
                labelscope_byproducts::coco::read_array_of(
                    &owned,
                    &opts,
                    "a COCO-AB record with image_id",
                    |r: CocoIn| {
                        if let Some(&id) = image_ids.get(&coco_name(&r)) {
                            batch.extend(coco_row(&r, id, &hits, &mut worker_pages, &key2));
                        }
                        if batch.len() >= BATCH {
                            flush(&mut batch, &mut open);
                        }
                    },
                )?;
            }
        }
        flush(&mut batch, &mut open);
        Ok(())
    });
    let mut summary =
        ImportSummary { images: layout.names.len(), hits: hit_ids.len(), skipped, ..ImportSummary::default() };
    let mut ids = ImportIds::default();
    let mut failed = None;
    while let Some(batch) = rx.recv().await {
        match db.import_batch(&batch, &mut ids).await {
            Ok((a, p)) => {
                summary.assignments += a;
                summary.pages += p;
                summary.records += batch.len() as u64;
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(rx);
    let read = reader.await.map_err(|e| Error::Invalid(format!("import stopped: {e}"))).and_then(|r| r);
    if let Some(e) = failed.or(read.err()) {
        // Leave nothing half-imported behind.
        db.delete_project(project_id).await?;
        return Err(e);
    }
    Ok(summary)
}
