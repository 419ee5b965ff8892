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
//!
//! With patch dropout, region `k` of image `id` (`k` = the proposal's
//! position among the image's annotations, `u64::MAX` for the whole image)
//! uses the seed `mix64(seed ^ mix64(fnv1a(id) ^ mix64(k)))` (FNV-1a 64 of
//! the id's bytes), so the result does not depend on threading. Images are
//! processed in parallel, 256 at a time; the output is in id order.

use std::path::Path;

use labelscope_core::npy::read_npy;

use super::{
    check_proposal_size, check_proposals_cached, read_geometry, read_original_labels, read_proposals, write_jsonl,
    Regions,
};
use crate::cache::FeatureCache;
use crate::error::{Error, Result};
use crate::pool::{masked_average, patch_dropout, project_mask, Dropout, Grid, Mask, Projection};
use crate::select::{select, LabelMap, SelectOptions};
use labelscope_core::rng::mix64;
use rayon::prelude::*;

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
    /// Label maps in the folder whose id is not a cached image (a few names).
    pub unused_maps: Vec<String>,
    /// How many such maps there are.
    pub unused_map_count: usize,
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

/// Images processed in parallel per step.
const SELECT_CHUNK: usize = 256;

/// The kept regions of one image.
struct ImageRegions {
    file: String,
    proposals: usize,
    outside: usize,
    /// `(pooled features, class, annotation id, map probability)`.
    kept: Vec<(Vec<f32>, u32, Option<u64>, f64)>,
}

/// FNV-1a (64 bit) of a string: the per-image part of the dropout seed.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[allow(clippy::too_many_arguments)]
fn image_regions(
    cache: &FeatureCache,
    id: &str,
    g: &super::ImageGeometry,
    props: Option<&super::ImageProposals>,
    proposals: &Path,
    maps_dir: &Path,
    originals: &super::OriginalLabels,
    classes: usize,
    dim: usize,
    opts: &SelectStageOptions,
) -> Result<ImageRegions> {
    if let Some(p) = props {
        check_proposal_size(proposals, id, p, g)?;
    }
    let masks: &[(u64, usize, labelscope_core::rle::Rle)] = props.map_or(&[], |p| &p.masks);
    let map = load_map(&maps_dir.join(format!("{id}.npy")), Some(classes))?;
    let label = originals.get(id)?;
    let mm: Vec<Mask> = masks.iter().map(|(_, _, r)| Mask::Rle(r)).collect();
    let sel = select(&map, &mm, g.width, g.height, label, &opts.select).map_err(|e| match e {
        Error::Invalid(m) | Error::Mismatch(m) => {
            Error::Format { path: proposals.to_path_buf(), location: format!("image {id:?}"), message: m }
        }
        other => other,
    })?;
    let mut out = ImageRegions { file: g.file.clone(), proposals: mm.len(), outside: 0, kept: Vec::new() };
    if sel.is_empty() {
        return Ok(out);
    }
    let f = cache.get(id)?;
    let feats = f.patches_f32();
    let grid = Grid::new(f.h, f.w, dim, &feats)?;
    let geom = g.grid_geometry();
    let full = vec![true; g.width * g.height];
    for s in &sel {
        let (mask, ann, k) = match s.proposal {
            Some(k) => (mm[k], Some(masks[k].0), k as u64),
            None => (Mask::Bool(&full), None, u64::MAX),
        };
        let mut w = match project_mask(&mask, &geom, f.h, f.w, opts.projection, "proposal") {
            Ok(w) => w,
            Err(_) if ann.is_some() => {
                out.outside += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(d) = opts.dropout {
            let seed = mix64(d.seed ^ mix64(fnv1a(id) ^ mix64(k)));
            patch_dropout(&mut w, d.p, seed)?;
        }
        out.kept.push((masked_average(&grid, &w)?, s.class, ann, s.prob));
    }
    Ok(out)
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
    check_proposals_cached(&props, &cache, proposals, cache_dir)?;
    let mut ids: Vec<&str> = cache.ids().collect();
    ids.sort_unstable();
    let dim = cache.meta().dim;
    // The class count: given, or that of the first map (every map is checked against it).
    let classes = match (opts.classes, ids.first()) {
        (Some(c), _) => c,
        (None, Some(first)) => load_map(&maps_dir.join(format!("{first}.npy")), None)?.classes(),
        (None, None) => 0,
    };
    if !ids.is_empty() {
        originals.check_classes(classes, "the label maps")?;
    }
    let mut regions = Regions {
        dim,
        classes,
        features: Vec::new(),
        labels: Vec::new(),
        image: Vec::new(),
        proposal: Vec::new(),
        images: Vec::new(),
    };
    let mut lines = Vec::new();
    let mut rep = SelectReport { images: ids.len(), classes, ..Default::default() };
    let mut done = 0usize;
    for chunk in ids.chunks(SELECT_CHUNK) {
        let per: Vec<Result<ImageRegions>> = chunk
            .par_iter()
            .map(|id| {
                let g = geo.get(*id).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: no geometry for image {id:?}",
                        cache_dir.join(super::IMAGES_JSONL).display()
                    ))
                })?;
                image_regions(&cache, id, g, props.get(*id), proposals, maps_dir, &originals, classes, dim, opts)
            })
            .collect();
        for (id, r) in chunk.iter().zip(per) {
            let r = r?;
            let img_index = regions.images.len();
            regions.images.push(id.to_string());
            rep.proposals += r.proposals;
            rep.outside_grid += r.outside;
            if r.kept.is_empty() {
                rep.images_without_region += 1;
            }
            for (v, class, ann, prob) in r.kept {
                let row = regions.labels.len();
                regions.features.extend_from_slice(&v);
                regions.labels.push(class);
                regions.image.push(img_index);
                regions.proposal.push(ann);
                if ann.is_none() {
                    rep.whole_image += 1;
                }
                lines.push(RegionLine { row, image: id.to_string(), file: r.file.clone(), proposal: ann, class, prob });
            }
        }
        done += chunk.len();
        progress(done, ids.len());
    }
    rep.regions = regions.len();
    // Maps of ids that are not cached images: reported (a sign of mismatched ids).
    let rd = std::fs::read_dir(maps_dir).map_err(|e| Error::Io { path: maps_dir.to_path_buf(), source: e })?;
    let mut unused: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".npy").map(str::to_string)
        })
        .filter(|id| !cache.contains(id))
        .collect();
    unused.sort_unstable();
    rep.unused_map_count = unused.len();
    unused.truncate(5);
    rep.unused_maps = unused;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::Io { path: out_dir.to_path_buf(), source: e })?;
    write_jsonl(&out_dir.join("regions.jsonl"), &lines)?;
    regions.write(&out_dir.join("regions.safetensors"), opts.f16)?;
    Ok(rep)
}
