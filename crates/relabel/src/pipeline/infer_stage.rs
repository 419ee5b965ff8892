//! Stage 4: per-proposal and whole-image predictions of the trained head.
//!
//! For every cached image (in id order) each proposal mask is pooled on the
//! patch grid (default projection, no dropout) and the head gives its top
//! `k` (default 5) `(class, probability)`; the whole image (all cells,
//! equal weights) gives the global prediction. Proposals whose mask covers
//! no cell of the grid rectangle are listed under `outside_grid`. The output
//! `predictions.jsonl` holds one [`ImagePredictions`] per line.

use std::path::Path;

use candle_core::{Device, Tensor};
use labelscope_nn::head::RegionHead;
use serde::{Deserialize, Serialize};

use super::{check_proposal_size, read_geometry, read_proposals, write_jsonl};
use crate::cache::FeatureCache;
use crate::error::{Error, Result};
use crate::pool::{masked_average, project_mask, Grid, Mask, Projection};
use rayon::prelude::*;

/// One proposal's prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalPrediction {
    /// COCO annotation id.
    pub id: u64,
    /// `(class, probability)`, most probable first.
    pub top: Vec<(u32, f32)>,
}

/// One line of `predictions.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePredictions {
    /// Image id.
    pub id: String,
    /// File name.
    pub file: String,
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Number of classes of the head.
    pub classes: usize,
    /// Per proposal.
    pub proposals: Vec<ProposalPrediction>,
    /// Proposals that cover no cell of the grid (not predicted).
    #[serde(default)]
    pub outside_grid: Vec<u64>,
    /// Whole-image prediction.
    pub global: Vec<(u32, f32)>,
}

/// Images pooled per head forward pass.
const INFER_CHUNK: usize = 256;

struct Pooled {
    /// The proposals' pooled features, then the whole image's.
    rows: Vec<Vec<f32>>,
    pids: Vec<u64>,
    outside: Vec<u64>,
}

fn topk(head: &RegionHead, rows: &[Vec<f32>], dim: usize, k: usize) -> Result<Vec<Vec<(u32, f32)>>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let flat: Vec<f32> = rows.concat();
    let x = Tensor::from_vec(flat, (rows.len(), dim), head.device())?;
    let t = head.predict_topk(&x, k)?;
    Ok(t.into_iter().map(|r| r.into_iter().map(|(p, c)| (c, p)).collect()).collect())
}

/// Runs inference into `out` (a `.jsonl` path; see the module docs).
pub fn infer(
    cache_dir: &Path,
    proposals: &Path,
    head_path: &Path,
    out: &Path,
    k: usize,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<ImagePredictions>> {
    let cache = FeatureCache::open(cache_dir)?;
    let geo = read_geometry(cache_dir)?;
    let props = read_proposals(proposals)?;
    let head = RegionHead::load(head_path, device)?;
    let dim = cache.meta().dim;
    if head.config().in_dim != dim {
        return Err(Error::Mismatch(format!(
            "{}: the head takes features of dimension {}, the cache {} holds {dim}",
            head_path.display(),
            head.config().in_dim,
            cache_dir.display()
        )));
    }
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
    let classes = head.config().classes;
    let mut out_lines = Vec::with_capacity(ids.len());
    // Images are pooled in parallel, a chunk at a time, and the head runs once per chunk.
    for chunk in ids.chunks(INFER_CHUNK) {
        let pooled: Vec<Result<Pooled>> = chunk
            .par_iter()
            .map(|id| {
                let g = geo
                    .get(*id)
                    .ok_or_else(|| Error::Invalid(format!("{}: no geometry for image {id:?}", cache_dir.display())))?;
                let f = cache.get(id)?;
                let feats = f.patches_f32();
                let grid = Grid::new(f.h, f.w, dim, &feats)?;
                let geom = g.grid_geometry();
                let mut rows = Vec::new();
                let mut pids = Vec::new();
                let mut outside = Vec::new();
                if let Some(p) = props.get(*id) {
                    check_proposal_size(proposals, id, p, g)?;
                    for (ann, _, rle) in &p.masks {
                        match project_mask(&Mask::Rle(rle), &geom, f.h, f.w, Projection::Fraction, "proposal") {
                            Ok(w) => {
                                rows.push(masked_average(&grid, &w)?);
                                pids.push(*ann);
                            }
                            Err(_) => outside.push(*ann),
                        }
                    }
                }
                rows.push(masked_average(&grid, &vec![1.0; f.h * f.w])?);
                Ok(Pooled { rows, pids, outside })
            })
            .collect();
        let pooled: Vec<Pooled> = pooled.into_iter().collect::<Result<_>>()?;
        let all: Vec<Vec<f32>> = pooled.iter().flat_map(|p| p.rows.iter().cloned()).collect();
        let mut preds = topk(&head, &all, dim, k)?.into_iter();
        for (id, p) in chunk.iter().zip(pooled) {
            let g = &geo[*id];
            let proposals: Vec<ProposalPrediction> =
                p.pids.into_iter().map(|id| ProposalPrediction { id, top: preds.next().unwrap_or_default() }).collect();
            let global = preds.next().unwrap_or_default();
            out_lines.push(ImagePredictions {
                id: id.to_string(),
                file: g.file.clone(),
                width: g.width,
                height: g.height,
                classes,
                proposals,
                outside_grid: p.outside,
                global,
            });
        }
        progress(out_lines.len(), ids.len());
    }
    write_jsonl(out, &out_lines)?;
    Ok(out_lines)
}

/// Reads `predictions.jsonl` (errors name the file and the line).
pub fn read_predictions(path: &Path) -> Result<Vec<ImagePredictions>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(line).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            location: format!("line {}", i + 1),
            message: format!("not an image prediction record: {e}"),
        })?);
    }
    Ok(out)
}
