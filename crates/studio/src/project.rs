//! Creating projects from manifests.

use std::path::Path;

use crate::db::{Db, ImageRow};
use crate::manifest::{ClassText, HitSpec, Manifest, PageSpec};
use crate::secret::{new_token, token_hash};
use crate::{Error, Result};

/// A created project: its id and one link token per HIT (shown once; the
/// database keeps only their hashes).
#[derive(Debug, Clone)]
pub struct Created {
    /// Project id.
    pub project_id: i64,
    /// HIT tokens, in HIT order.
    pub tokens: Vec<String>,
}

/// Checks that every image file of the manifest exists inside `images`
/// (following symbolic links, the file must stay inside the folder).
pub fn check_files(manifest: &Manifest, images: &Path, manifest_path: &Path) -> Result<()> {
    let root = images.canonicalize().map_err(|e| Error::io(images, e))?;
    for (i, im) in manifest.images.iter().enumerate() {
        let at = format!("images[{i}].file");
        let full = root.join(&im.file);
        let real = full.canonicalize().map_err(|e| {
            Error::format(
                manifest_path,
                &at,
                format!("{}: {e} (expected a file inside {})", full.display(), root.display()),
            )
        })?;
        if !real.starts_with(&root) || !real.is_file() {
            return Err(Error::format(
                manifest_path,
                &at,
                format!("{}: expected a regular file inside {}", full.display(), root.display()),
            ));
        }
    }
    Ok(())
}

/// Stores the project of `manifest` (images and HITs) in one transaction.
pub async fn create(db: &Db, manifest: &Manifest) -> Result<Created> {
    let rows: Vec<ImageRow> = manifest
        .images
        .iter()
        .map(|im| ImageRow {
            id: 0,
            name: im.name.clone(),
            file: im.file.clone(),
            class: im.class.clone(),
            known_positive: im.known_positive,
            extra: (!im.extra.is_empty()).then(|| serde_json::to_string(&im.extra).unwrap_or_default()),
        })
        .collect();
    let hits = manifest.hits();
    let tokens: Vec<String> = hits.iter().map(|_| new_token()).collect::<Result<_>>()?;
    let hit_rows: Vec<(String, Vec<Vec<usize>>)> = hits
        .iter()
        .zip(&tokens)
        .map(|(pages, t)| (token_hash(t), pages.iter().map(|p| p.images.clone()).collect()))
        .collect();
    let nudge = manifest.pointer_nudge;
    let task = manifest.task;
    let (project_id, _) = db
        .insert_project(&manifest.name, task.name(), &manifest.source, &rows, &hit_rows, |k, pages| {
            let mut texts: Vec<ClassText> = Vec::new();
            let mut add = |c: &str| {
                if !texts.iter().any(|t| t.wnid == c) {
                    texts.extend(manifest.classes.get(c).cloned());
                }
            };
            // Label pages choose among the ImageNet classes and the classes the manifest lists
            // (never only those of the HIT's images: that would hint at the answers).
            if task == crate::manifest::Task::Label {
                for c in &manifest.listed_classes {
                    add(c);
                }
            }
            for p in &hits[k] {
                add(&p.class);
                for &i in &p.images {
                    for l in &manifest.images[i].extra.proposed {
                        add(l);
                    }
                }
            }
            let spec = HitSpec {
                task,
                pointer_nudge: nudge,
                classes: texts,
                categories: manifest.categories.clone(),
                pages: pages
                    .iter()
                    .zip(&hits[k])
                    .map(|(ids, p)| PageSpec { class: p.class.clone(), images: ids.clone() })
                    .collect(),
            };
            serde_json::to_string(&spec).unwrap_or_default()
        })
        .await?;
    Ok(Created { project_id, tokens })
}
