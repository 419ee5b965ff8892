//! Running one shard of a proposals run over many images.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::features::{load_features, FeatureLayout};
use crate::manifest::{Entry, Shard};
use crate::pipeline::{propose, ImageRecord, ProposalParams};
use crate::store::{check_run_params, done_path, shard_path, RunParams, ShardDone, ShardWriter};

/// Options of a shard run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Cut and refinement parameters.
    pub params: ProposalParams,
    /// How to read the feature files.
    pub layout: FeatureLayout,
    /// Which shard to run.
    pub shard: Shard,
    /// The run's output folder.
    pub out_dir: PathBuf,
    /// Record failing images and go on (they are retried by the next run)
    /// instead of stopping at the first one.
    pub keep_going: bool,
    /// Images processed in parallel between two syncs of the log.
    pub batch: usize,
}

/// What a shard run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// The shard's log file.
    pub log: PathBuf,
    /// Images assigned to the shard.
    pub assigned: usize,
    /// Images found done in the log from an earlier run.
    pub resumed: usize,
    /// Images processed by this run.
    pub processed: usize,
    /// Proposals written by this run.
    pub proposals: usize,
    /// Images that failed, with the error (only with `keep_going`).
    pub failed: Vec<(String, String)>,
    /// Bytes of an incomplete line cut off the log on resume.
    pub truncated_bytes: u64,
    /// Whether the shard is complete (its marker was written).
    pub complete: bool,
}

/// The parameters recorded in `run.json`.
pub fn run_params(opts: &RunOptions) -> RunParams {
    RunParams {
        method: match opts.params.method {
            crate::pipeline::Method::MaskCut => "maskcut".into(),
            crate::pipeline::Method::TokenCut => "tokencut".into(),
        },
        tau: opts.params.ncut.tau,
        eps: opts.params.ncut.eps,
        max_masks: opts.params.ncut.max_masks,
        crf: opts.params.crf.is_some(),
        patch: opts.params.patch,
        shards: opts.shard.count,
    }
}

/// Proposals of one entry, as a record.
pub fn process_entry(entry: &Entry, params: &ProposalParams, layout: &FeatureLayout) -> Result<ImageRecord> {
    let feat = load_features(&entry.features, layout)?;
    let file_name = match &entry.image {
        Some(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| entry.id.clone()),
        None => entry.id.clone(),
    };
    let props = match (&entry.image, params.crf.is_some()) {
        (Some(path), true) => {
            let img = labelscope_vision::image::load_rgb(path)?;
            propose(&feat, Some(&img), None, params)?
        }
        (Some(path), false) => {
            let (w, h) = image::image_dimensions(path)
                .map_err(|e| Error::format(path, "header", format!("cannot read the image size: {e}")))?;
            propose(&feat, None, Some((w as usize, h as usize)), params)?
        }
        (None, _) => propose(&feat, None, entry.size, params)?,
    };
    props.to_record(&entry.id, &file_name)
}

/// Runs (or resumes) one shard of `entries` (sorted by id, unique), calling
/// `progress(n)` after every `n` newly finished images.
pub fn run_shard(entries: &[Entry], opts: &RunOptions, progress: &(dyn Fn(usize) + Sync)) -> Result<RunSummary> {
    check_run_params(&opts.out_dir, &run_params(opts))?;
    let mine = opts.shard.select(entries);
    let log = shard_path(&opts.out_dir, opts.shard);
    let mut writer = ShardWriter::open(&log)?;
    let mut summary = RunSummary {
        log: log.clone(),
        assigned: mine.len(),
        truncated_bytes: writer.truncated_bytes,
        ..Default::default()
    };
    let todo: Vec<&Entry> = mine.iter().copied().filter(|e| !writer.contains(&e.id)).collect();
    summary.resumed = mine.len() - todo.len();
    if summary.resumed > 0 {
        progress(summary.resumed);
    }
    for chunk in todo.chunks(opts.batch.max(1)) {
        let results: Vec<Result<ImageRecord>> = chunk
            .par_iter()
            .map(|e| process_entry(e, &opts.params, &opts.layout).map_err(|err| err.for_image(&e.id)))
            .collect();
        let mut first_err = None;
        for (entry, res) in chunk.iter().zip(results) {
            match res {
                Ok(rec) => {
                    summary.proposals += rec.proposals.len();
                    writer.append(&rec)?;
                    summary.processed += 1;
                }
                Err(e) if opts.keep_going => summary.failed.push((entry.id.clone(), e.to_string())),
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
        }
        writer.sync()?;
        progress(chunk.len());
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    if summary.failed.is_empty() {
        let done = ShardDone { shard: opts.shard.to_string(), images: mine.len(), proposals: count_proposals(&log)? };
        let json = serde_json::to_vec_pretty(&done).map_err(|e| Error::Invalid(e.to_string()))?;
        labelscope_core::atomic::write_atomic(&done_path(&opts.out_dir, opts.shard), &json)?;
        summary.complete = true;
    }
    Ok(summary)
}

fn count_proposals(log: &Path) -> Result<usize> {
    Ok(crate::store::read_records(log)?.iter().map(|r| r.proposals.len()).sum())
}
