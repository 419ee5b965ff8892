//! Stage 2: training regions. For every cached image (in id order): its
//! proposals are scored against its label map and selected
//! ([`crate::select::select`]), and the kept ones are pooled on the cached
//! patch grid ([`crate::pool`]), giving `regions.safetensors`
//! ([`super::Regions`]) and `regions.jsonl` (one line per region:
//! `{"row", "image", "file", "proposal", "class", "prob"}`, `proposal` the
//! COCO annotation id or `null` for the whole image).
//!
//! Label maps are `{id}.npy` in the maps folder: `[2, k, h, w]` ReLabel maps
//! (the number of classes must be given) or dense `[C, h, w]` maps; every
//! map must have the same number of classes. Checked, with errors naming the
//! file: a missing map, a map of another class count, an original label
//! outside the classes, proposals for an image that is not cached or of
//! another size than the cached image, empty masks. A kept proposal whose
//! mask covers no cell of the grid rectangle (possible with crop recipes:
//! it lies outside the crop) is left out and counted.

use std::path::Path;

use labelscope_core::npy::read_npy;

use super::{check_proposal_size, read_geometry, read_original_labels, read_proposals, write_jsonl, Regions};
use crate::cache::FeatureCache;
use crate::error::{Error, Result};
use crate::pool::{pool_mask, project_mask, Dropout, Grid, Mask, PoolOptions, Projection};
use crate::select::{select, LabelMap, SelectOptions};

/// Options of [`select_regions`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SelectStageOptions {
    /// Selection rule (τ_sel, target, whole-image fallback).
    pub select: SelectOptions,
    /// Number of classes; required for ReLabel maps, checked against dense maps.
    pub classes: Option<usize>,
    /// Mask projection for pooling.
    pub projection: Projection,
    /// Patch dropout of the pooled regions (training augmentation).
    pub dropout: Option<Dropout>,
    /// Store the features as f16 (default f32).
    pub f16: bool,
}

/// One line of `regions.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegionLine {
    /// Row in `regions.safetensors`.
    pub row: usize,
    /// Image id.
    pub image: String,
    /// File name.
    pub file: String,
    /// COCO annotation id (`None` = whole image).
    pub proposal: Option<u64>,
    /// Class the region is trained on.
    pub class: u32,
    /// The label map's probability of that class over the region.
    pub prob: f64,
}

/// What [`select_regions`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectReport {
    /// Images seen.
    pub images: usize,
    /// Proposals scored.
    pub proposals: usize,
    /// Regions written (including whole-image fallbacks).
    pub regions: usize,
    /// Of them, whole-image fallbacks.
    pub whole_image: usize,
    /// Images with no region.
    pub images_without_region: usize,
    /// Kept proposals left out because they cover no cell of the grid.
    pub outside_grid: usize,
    /// Number of classes.
    pub classes: usize,
}

fn load_map(path: &Path, classes: Option<usize>) -> Result<LabelMap> {
    if !path.exists() {
        return Err(Error::Invalid(format!(
            "{}: label map missing (expected one `{{id}}.npy` per image)",
            path.display()
        )));
    }
    let a = read_npy(path)?;
    let shape = a.shape().to_vec();
    let data = a.to_f32_vec(path, "label map")?;
    let wrap = |e: Error| match e {
        Error::Invalid(m) | Error::Mismatch(m) => {
            Error::Format { path: path.to_path_buf(), location: "array".into(), message: m }
        }
        other => other,
    };
    match shape.len() {
        4 => {
            let c = classes.ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: a ReLabel map [2, k, h, w]: give the number of classes (--classes)",
                    path.display()
                ))
            })?;
            LabelMap::relabel(&data, &shape, c).map_err(wrap)
        }
        3 => {
            let m = LabelMap::dense(&data, &shape).map_err(wrap)?;
            if let Some(c) = classes {
                if m.classes() != c {
                    return Err(Error::Format {
                        path: path.to_path_buf(),
                        location: "shape".into(),
                        message: format!("{shape:?}: {} classes, expected {c}", m.classes()),
                    });
                }
            }
            Ok(m)
        }
        _ => Err(Error::Format {
            path: path.to_path_buf(),
            location: "shape".into(),
            message: format!("{shape:?}: expected a ReLabel map [2, k, h, w] or a dense map [C, h, w]"),
        }),
    }
}

/// Runs the selection stage into `out_dir` (see the module docs).
pub fn select_regions(
    cache_dir: &Path,
    proposals: &Path,
    maps_dir: &Path,
    labels: &Path,
    out_dir: &Path,
    opts: &SelectStageOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<SelectReport> {
    let cache = FeatureCache::open(cache_dir)?;
    let geo = read_geometry(cache_dir)?;
    let props = read_proposals(proposals)?;
    let originals = read_original_labels(labels)?;
    for id in props.keys() {
        if !cache.contains(id) {
            return Err(Error::Format {
                path: proposals.to_path_buf(),
                location: format!("image {id:?}"),
                message: format!("not in the feature cache {}", cache_dir.display()),
            });
        }
    }
    let mut ids: Vec<&str> = cache.ids().collect();
    ids.sort_unstable();
    let dim = cache.meta().dim;
    let mut classes = opts.classes;
    let mut regions = Regions {
        dim,
        classes: 0,
        features: Vec::new(),
        labels: Vec::new(),
        image: Vec::new(),
        proposal: Vec::new(),
        images: Vec::new(),
    };
    let mut lines = Vec::new();
    let mut rep = SelectReport { images: ids.len(), ..Default::default() };
    let empty = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let g = geo.get(*id).ok_or_else(|| {
            Error::Invalid(format!("{}: no geometry for image {id:?}", cache_dir.join(super::IMAGES_JSONL).display()))
        })?;
        let p = props.get(*id);
        if let Some(p) = p {
            check_proposal_size(proposals, id, p, g)?;
        }
        let masks = p.map_or(&empty, |p| &p.masks);
        let map = load_map(&maps_dir.join(format!("{id}.npy")), classes)?;
        let c = *classes.get_or_insert(map.classes());
        if map.classes() != c {
            return Err(Error::Format {
                path: maps_dir.join(format!("{id}.npy")),
                location: "shape".into(),
                message: format!("{} classes; the other maps have {c}", map.classes()),
            });
        }
        let label = originals.get(id)?;
        if label as usize >= c {
            originals.check_classes(c, "the label maps")?;
        }
        let mm: Vec<Mask> = masks.iter().map(|(_, _, r)| Mask::Rle(r)).collect();
        rep.proposals += mm.len();
        let sel = select(&map, &mm, g.width, g.height, label, &opts.select).map_err(|e| match e {
            Error::Invalid(m) | Error::Mismatch(m) => {
                Error::Format { path: proposals.to_path_buf(), location: format!("image {id:?}"), message: m }
            }
            other => other,
        })?;
        let f = cache.get(id)?;
        let feats = f.patches_f32();
        let grid = Grid::new(f.h, f.w, dim, &feats)?;
        let geom = g.grid_geometry();
        let img_index = regions.images.len();
        let mut any = false;
        let full = vec![true; g.width * g.height];
        for s in &sel {
            let (mask, ann) = match s.proposal {
                Some(k) => (mm[k], Some(masks[k].0)),
                None => (Mask::Bool(&full), None),
            };
            if project_mask(&mask, &geom, f.h, f.w, opts.projection, "proposal").is_err() && ann.is_some() {
                rep.outside_grid += 1;
                continue;
            }
            let row = regions.labels.len();
            let po = PoolOptions {
                projection: opts.projection,
                dropout: opts.dropout.map(|d| Dropout {
                    p: d.p,
                    seed: labelscope_core::rng::mix64(d.seed ^ labelscope_core::rng::mix64(row as u64)),
                }),
            };
            let v = pool_mask(&grid, &geom, &mask, &po)?;
            regions.features.extend_from_slice(&v);
            regions.labels.push(s.class);
            regions.image.push(img_index);
            regions.proposal.push(ann);
            if ann.is_none() {
                rep.whole_image += 1;
            }
            lines.push(RegionLine {
                row,
                image: id.to_string(),
                file: g.file.clone(),
                proposal: ann,
                class: s.class,
                prob: s.prob,
            });
            any = true;
        }
        regions.images.push(id.to_string());
        if !any {
            rep.images_without_region += 1;
        }
        progress(n + 1, ids.len());
    }
    let c = classes.unwrap_or(0);
    regions.classes = c;
    rep.classes = c;
    rep.regions = regions.len();
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Io { path: out_dir.to_path_buf(), source: e })?;
    write_jsonl(&out_dir.join("regions.jsonl"), &lines)?;
    regions.write(&out_dir.join("regions.safetensors"), opts.f16)?;
    Ok(rep)
}
