//! Stage 1: run a ViT once per image into a [`crate::cache`] folder.
//!
//! Per shard (`--shard i/n`, [`Shard`]) the images are processed in sorted-id
//! order, in batches. For each batch: the images are decoded and
//! preprocessed in parallel, the backbone runs on the batch, the batch's
//! geometry lines ([`ImageGeometry`]) are appended to `SHARD.images.jsonl`
//! and synced, then the features go to the cache ([`CacheWriter::append_batch`],
//! which syncs). A crash between the two leaves geometry lines for images
//! the cache does not hold; they are harmless (the merged file keeps only
//! cached ids, a re-done image writes the same line again and the last one
//! wins). Resuming skips the images the shard already holds
//! ([`CacheWriter::missing`]), so nothing is duplicated or dropped.
//!
//! Unreadable images stop the stage, or with `skip_bad` are recorded in
//! `SHARD.skipped.jsonl` (`{"id", "file", "error"}`), left out of the shard
//! and of the manifest. When the last shard finishes, [`finalize`] checks the
//! whole cache and `images.jsonl` is written (sorted by id).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use labelscope_core::ids::join_key;
use labelscope_nn::Vit;
use labelscope_vision::decode::{decode_bytes_partial, DecodeOptions};
use labelscope_vision::preprocess::Preprocess;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{jsonl_text, parse_jsonl, read_geometry_log, recipe_rect, write_jsonl, ImageGeometry, IMAGES_JSONL};
use crate::cache::{finalize, CacheSpec, CacheSummary, CacheWriter, ImageFeatures, Recovery, Shard, TokenKind};
use crate::error::{Error, Result};

/// An image to cache.
#[derive(Debug, Clone)]
pub struct CacheImage {
    /// Its id (join key of `file`).
    pub id: String,
    /// The name as listed (relative path).
    pub file: String,
    /// Where to read it.
    pub path: PathBuf,
}

/// Builds the image list from `(name, path)` pairs; two names with the same
/// id are an error.
pub fn image_list(items: impl IntoIterator<Item = (String, PathBuf)>) -> Result<Vec<CacheImage>> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for (file, path) in items {
        let id = join_key(&file).to_string();
        if let Some(prev) = seen.insert(id.clone(), file.clone()) {
            return Err(Error::Invalid(format!("images {prev:?} and {file:?} have the same id {id:?}")));
        }
        out.push(CacheImage { id, file, path });
    }
    Ok(out)
}

/// Options of [`build_cache`].
#[derive(Debug, Clone)]
pub struct CacheStageOptions {
    /// Backbone name stored in `cache.json`.
    pub backbone: String,
    /// Preprocessing (its recipe is stored in `cache.json`).
    pub preprocess: Preprocess,
    /// Decoding options.
    pub decode: DecodeOptions,
    /// Which tokens to store ([`TokenKind::Patch`] or [`TokenKind::Key`]).
    pub tokens: TokenKind,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Which shard to write.
    pub shard: Shard,
    /// Leave unreadable images out instead of stopping.
    pub skip_bad: bool,
}

/// What [`build_cache`] reports to its progress callback.
#[derive(Debug, Clone)]
pub enum CacheEvent {
    /// Before the first batch.
    Start {
        /// Images of this shard.
        shard_images: usize,
        /// Of them, still to do.
        todo: usize,
    },
    /// After a batch (images of the batch, written or skipped).
    Batch(usize),
}

/// A skipped image (line of `SHARD.skipped.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Image id.
    pub id: String,
    /// File name.
    pub file: String,
    /// Why.
    pub error: String,
}

/// The result of [`build_cache`].
#[derive(Debug, Clone)]
pub struct CacheStageReport {
    /// Images of this shard (including skipped ones).
    pub shard_images: usize,
    /// Images written in this call.
    pub written: usize,
    /// Images already in the shard.
    pub already: usize,
    /// Images left out as unreadable (in this and earlier calls).
    pub skipped: Vec<Skipped>,
    /// What reopening the shard repaired.
    pub recovery: Recovery,
    /// Set when every shard is complete and the cache was finalized.
    pub finalized: Option<CacheSummary>,
}

/// A decoded and preprocessed image with its size, or why it failed.
type Loaded = std::result::Result<(Vec<f32>, u32, u32), String>;

fn geometry_path(dir: &Path, shard: Shard) -> PathBuf {
    dir.join(format!("{}.images.jsonl", shard.stem()))
}

fn skipped_path(dir: &Path, shard: Shard) -> PathBuf {
    dir.join(format!("{}.skipped.jsonl", shard.stem()))
}

fn read_skipped(path: &Path) -> Result<Vec<Skipped>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_jsonl(path, &text, "a skipped-image record"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Io { path: path.to_path_buf(), source: e }),
    }
}

fn append_lines<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let io = |e| Error::Io { path: path.to_path_buf(), source: e };
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    f.write_all(jsonl_text(path, items)?.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Runs the backbone on the images of `opts.shard` into the cache folder
/// `dir` (see the module docs); finalizes the cache when every shard is done.
pub fn build_cache(
    dir: &Path,
    images: &[CacheImage],
    vit: &Vit,
    opts: &CacheStageOptions,
    mut progress: impl FnMut(&CacheEvent),
) -> Result<CacheStageReport> {
    if opts.batch_size == 0 {
        return Err(Error::Invalid("batch size 0: expected at least 1".into()));
    }
    if !matches!(opts.tokens, TokenKind::Patch | TokenKind::Key) {
        return Err(Error::Invalid(format!("tokens {}: the cache stage stores patch tokens or keys", opts.tokens)));
    }
    let (ow, oh) = opts.preprocess.recipe.output_size();
    let p = vit.config().patch;
    if !(ow as usize).is_multiple_of(p) || !(oh as usize).is_multiple_of(p) {
        return Err(Error::Invalid(format!(
            "recipe {} gives {ow}x{oh} images; the ViT's patch {p} must divide both sides",
            opts.preprocess.recipe
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?;
    let spec = CacheSpec {
        backbone: opts.backbone.clone(),
        recipe: opts.preprocess.recipe.to_string(),
        tokens: opts.tokens,
        dim: vit.config().dim,
        cls: false,
    };
    let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
    let by_id: BTreeMap<&str, &CacheImage> = images.iter().map(|i| (i.id.as_str(), i)).collect();
    let mine = opts.shard.select(&ids)?;
    let gpath = geometry_path(dir, opts.shard);
    let spath = skipped_path(dir, opts.shard);
    let mut skipped = read_skipped(&spath)?;
    let mut writer = CacheWriter::open(dir, &spec, opts.shard)?;
    let recovery = writer.recovery().clone();
    let mut written = 0usize;
    let already;
    if writer.is_complete() {
        already = writer.len();
        progress(&CacheEvent::Start { shard_images: mine.len(), todo: 0 });
    } else {
        // Keep the geometry log to complete, parseable lines (cut an interrupted last line).
        let geo = read_geometry_log(&gpath)?;
        let keep: Vec<&ImageGeometry> = geo.values().collect();
        write_jsonl(&gpath, &keep)?;
        let skipped_ids: std::collections::HashSet<String> = skipped.iter().map(|s| s.id.clone()).collect();
        let todo: Vec<&str> = writer.missing(&mine).into_iter().filter(|id| !skipped_ids.contains(*id)).collect();
        already = writer.len();
        progress(&CacheEvent::Start { shard_images: mine.len(), todo: todo.len() });
        let len = opts.preprocess.image_len();
        for chunk in todo.chunks(opts.batch_size) {
            let loaded: Vec<Loaded> = chunk
                .par_iter()
                .map(|id| {
                    let im = by_id[id];
                    let bytes =
                        std::fs::read(&im.path).map_err(|e| format!("{}: cannot read: {e}", im.path.display()))?;
                    let img =
                        decode_bytes_partial(&bytes, &im.path, &opts.decode, |w, h| opts.preprocess.source_rect(w, h))
                            .map_err(|e| e.to_string())?;
                    let mut out = vec![0f32; len];
                    opts.preprocess.run_into(&img, &mut out).map_err(|e| format!("{}: {e}", im.path.display()))?;
                    Ok((out, img.width(), img.height()))
                })
                .collect();
            let mut data = Vec::with_capacity(len * chunk.len());
            let mut ok: Vec<(&str, u32, u32)> = Vec::new();
            let mut bad = Vec::new();
            for (id, r) in chunk.iter().zip(loaded) {
                match r {
                    Ok((v, w, h)) => {
                        data.extend_from_slice(&v);
                        ok.push((id, w, h));
                    }
                    Err(e) if opts.skip_bad => {
                        bad.push(Skipped { id: id.to_string(), file: by_id[id].file.clone(), error: e })
                    }
                    Err(e) => {
                        return Err(Error::Invalid(format!("{e} (use --skip-bad to leave unreadable images out)")))
                    }
                }
            }
            if !bad.is_empty() {
                append_lines(&spath, &bad)?;
                skipped.extend(bad);
            }
            if !ok.is_empty() {
                let x = Tensor::from_vec(data, (ok.len(), 3, oh as usize, ow as usize), vit.device())?;
                let out = vit.forward(&x)?;
                let t = match opts.tokens {
                    TokenKind::Key => out.keys,
                    _ => out.patches,
                };
                let (gh, gw) = out.grid;
                let feats: Vec<Vec<Vec<f32>>> = t.to_dtype(candle_core::DType::F32)?.to_vec3()?;
                let flat: Vec<Vec<f32>> = feats.into_iter().map(|img| img.concat()).collect();
                let geo: Vec<ImageGeometry> = ok
                    .iter()
                    .map(|&(id, w, h)| {
                        let (x0, y0, x1, y1) = recipe_rect(opts.preprocess.recipe, w, h);
                        ImageGeometry {
                            id: id.to_string(),
                            file: by_id[id].file.clone(),
                            width: w as usize,
                            height: h as usize,
                            x0,
                            y0,
                            x1,
                            y1,
                        }
                    })
                    .collect();
                append_lines(&gpath, &geo)?;
                let batch: Vec<ImageFeatures> = ok
                    .iter()
                    .zip(&flat)
                    .map(|(&(id, _, _), f)| ImageFeatures { id, h: gh, w: gw, patches: f, cls: None })
                    .collect();
                written += writer.append_batch(&batch)?;
            }
            progress(&CacheEvent::Batch(chunk.len()));
        }
        let skipped_ids: std::collections::HashSet<&str> = skipped.iter().map(|s| s.id.as_str()).collect();
        let expected: Vec<&str> = mine.iter().map(|s| s.as_str()).filter(|id| !skipped_ids.contains(id)).collect();
        writer.finish(&expected)?;
    }
    let finalized = finalize_if_complete(dir, opts.shard.count, &ids)?;
    Ok(CacheStageReport { shard_images: mine.len(), written, already, skipped, recovery, finalized })
}

/// When every shard of the cache in `dir` has its completion marker:
/// finalizes it against `ids` minus the skipped images and writes
/// `images.jsonl`. Returns `None` while shards are missing.
pub fn finalize_if_complete(dir: &Path, shards: usize, ids: &[&str]) -> Result<Option<CacheSummary>> {
    let all: Vec<Shard> = (0..shards).map(|i| Shard::new(i, shards)).collect::<Result<_>>()?;
    if !all.iter().all(|s| s.done_path(dir).exists()) {
        return Ok(None);
    }
    let mut skipped = std::collections::HashSet::new();
    let mut geo = BTreeMap::new();
    for s in &all {
        for k in read_skipped(&skipped_path(dir, *s))? {
            skipped.insert(k.id);
        }
        geo.extend(read_geometry_log(&geometry_path(dir, *s))?);
    }
    let manifest: Vec<&str> = ids.iter().copied().filter(|id| !skipped.contains(*id)).collect();
    let summary = finalize(dir, &manifest)?;
    let mut lines = Vec::with_capacity(manifest.len());
    let mut sorted = manifest.clone();
    sorted.sort_unstable();
    for id in sorted {
        let g = geo
            .remove(id)
            .ok_or_else(|| Error::Invalid(format!("{}: no geometry line for cached image {id:?}", dir.display())))?;
        lines.push(g);
    }
    write_jsonl(&dir.join(IMAGES_JSONL), &lines)?;
    Ok(Some(summary))
}
