//! Stage 4: per-proposal and whole-image predictions of the trained head.
//!
//! For every cached image (in id order) each proposal mask is pooled on the
//! patch grid (default projection, no dropout) and the head gives its top
//! `k` (default 5) `(class, probability)`; the whole image (all cells,
//! equal weights) gives the global prediction. Proposals whose mask covers
//! no cell of the grid rectangle are listed under `outside_grid`. The output
//! `predictions.jsonl` holds one [`ImagePredictions`] per line, in id order.
//!
//! Images are pooled in parallel and the head runs once per chunk of
//! `chunk` images (default 256).
//!
//! Resume: lines are appended (and synced) to `OUT.partial` a chunk at a
//! time, with the run's inputs in `OUT.partial.json` (paths, FNV-1a of the
//! head and proposals files, `k`, `chunk`); the finished file is renamed to
//! `OUT`. Re-running after an interruption checks that the inputs are the
//! same and that the lines are the first images in id order, cuts the file
//! back to its last complete chunk (the head's results depend on the batch
//! at the last bit, so this keeps the output byte-identical to an
//! uninterrupted run) and continues after it: no image is predicted twice or
//! left out.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use labelscope_nn::head::RegionHead;
use serde::{Deserialize, Serialize};

use super::{check_proposal_size, check_proposals_cached, parse_jsonl, read_geometry, read_proposals};
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

/// Images pooled per head forward pass unless told otherwise.
pub const DEFAULT_CHUNK: usize = 256;

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
#[allow(clippy::too_many_arguments)]
pub fn infer(
    cache_dir: &Path,
    proposals: &Path,
    head_path: &Path,
    out: &Path,
    k: usize,
    chunk: usize,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<InferSummary> {
    if chunk == 0 {
        return Err(Error::Invalid("chunk of 0 images: expected at least 1".into()));
    }
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
    check_proposals_cached(&props, &cache, proposals, cache_dir)?;
    let mut ids: Vec<&str> = cache.ids().collect();
    ids.sort_unstable();
    let classes = head.config().classes;
    // Resume: the partial file holds the first images (in id order) of an
    // interrupted run with the same inputs.
    let part = partial_path(out);
    let run = PartialRun {
        cache: cache_dir.display().to_string(),
        proposals: proposals.display().to_string(),
        proposals_fnv1a: file_fnv1a(proposals)?,
        head: head_path.display().to_string(),
        head_fnv1a: file_fnv1a(head_path)?,
        top_k: k,
        chunk,
    };
    let (resumed, mut summary) = open_partial(&part, &run, &ids)?;
    let mut done = resumed;
    progress(done, ids.len());
    // Images are pooled in parallel, a chunk at a time, and the head runs once per chunk.
    for chunk in ids[resumed..].chunks(run.chunk) {
        let mut out_lines = Vec::with_capacity(chunk.len());
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
        append_sync(&part, &out_lines)?;
        summary.images += out_lines.len();
        summary.proposals += out_lines.iter().map(|l| l.proposals.len()).sum::<usize>();
        summary.outside_grid += out_lines.iter().map(|l| l.outside_grid.len()).sum::<usize>();
        done += chunk.len();
        progress(done, ids.len());
    }
    std::fs::rename(&part, out).map_err(|e| Error::Io { path: out.to_path_buf(), source: e })?;
    let _ = std::fs::remove_file(run_path(out));
    summary.resumed = resumed;
    Ok(summary)
}

/// What [`infer`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InferSummary {
    /// Images in the output.
    pub images: usize,
    /// Proposals predicted.
    pub proposals: usize,
    /// Proposals outside the grid.
    pub outside_grid: usize,
    /// Images taken from an interrupted run.
    pub resumed: usize,
}

/// The inputs of an interrupted run (`OUT.partial.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PartialRun {
    cache: String,
    proposals: String,
    proposals_fnv1a: u64,
    head: String,
    head_fnv1a: u64,
    top_k: usize,
    chunk: usize,
}

fn with_suffix(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The file an unfinished run appends to (`OUT.partial`).
pub fn partial_path(out: &Path) -> PathBuf {
    with_suffix(out, ".partial")
}

fn run_path(out: &Path) -> PathBuf {
    with_suffix(out, ".partial.json")
}

fn file_fnv1a(path: &Path) -> Result<u64> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    Ok(bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)))
}

fn append_sync(path: &Path, lines: &[ImagePredictions]) -> Result<()> {
    let io = |e| Error::Io { path: path.to_path_buf(), source: e };
    let mut text = String::new();
    for l in lines {
        text.push_str(&serde_json::to_string(l).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?);
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Opens (or starts) the partial output: returns how many images of `ids`
/// it already holds, after cutting an incomplete last line. A partial file
/// of other inputs, or whose images are not the first of `ids`, is an error.
fn open_partial(part: &Path, run: &PartialRun, ids: &[&str]) -> Result<(usize, InferSummary)> {
    let rp = with_suffix(part, ".json");
    let io = |p: &Path, e| Error::Io { path: p.to_path_buf(), source: e };
    let text = match std::fs::read_to_string(part) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(part, e)),
    };
    if text.is_empty() {
        let j = serde_json::to_string(run).map_err(|e| Error::Invalid(format!("{}: {e}", rp.display())))?;
        labelscope_core::atomic::write_atomic(&rp, j.as_bytes())?;
        std::fs::write(part, b"").map_err(|e| io(part, e))?;
        return Ok((0, InferSummary::default()));
    }
    let prev: Option<PartialRun> = std::fs::read_to_string(&rp).ok().and_then(|t| serde_json::from_str(&t).ok());
    if prev.as_ref() != Some(run) {
        return Err(Error::Invalid(format!(
            "{}: an unfinished run with other inputs (head, proposals, cache or top-k; see {}); delete both files to start over",
            part.display(),
            rp.display()
        )));
    }
    // Keep whole chunks only, so the resumed run batches the images exactly as an
    // uninterrupted run (the head's float results depend on the batch at the last bit).
    let mut ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    ends.truncate(ends.len() / run.chunk * run.chunk);
    let complete = &text[..ends.last().copied().unwrap_or(0)];
    let mut sum = InferSummary::default();
    for (i, line) in complete.lines().enumerate() {
        let p: ImagePredictions = serde_json::from_str(line).map_err(|e| Error::Format {
            path: part.to_path_buf(),
            location: format!("line {}", i + 1),
            message: format!("not an image prediction record: {e}"),
        })?;
        if ids.get(i) != Some(&p.id.as_str()) {
            return Err(Error::Format {
                path: part.to_path_buf(),
                location: format!("line {}", i + 1),
                message: format!(
                    "image {:?}; expected {:?} (the images in id order); delete the file to start over",
                    p.id,
                    ids.get(i)
                ),
            });
        }
        sum.images += 1;
        sum.proposals += p.proposals.len();
        sum.outside_grid += p.outside_grid.len();
    }
    if complete.len() != text.len() {
        let f = std::fs::OpenOptions::new().write(true).open(part).map_err(|e| io(part, e))?;
        f.set_len(complete.len() as u64).map_err(|e| io(part, e))?;
        f.sync_all().map_err(|e| io(part, e))?;
    }
    Ok((sum.images, sum))
}

/// Reads `predictions.jsonl` (errors name the file and the line).
pub fn read_predictions(path: &Path) -> Result<Vec<ImagePredictions>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    parse_jsonl(path, &text, "an image prediction record")
}
