//! Sharded, resumable storage of a run.
//!
//! A run writes into one output folder:
//! - `run.json`: the parameters of the run. Every shard checks that its own
//!   parameters are the same, so shards of different runs never mix.
//! - `shard-IIIII-of-NNNNN.jsonl`: an append-only log, one [`ImageRecord`]
//!   per line, written in the shard's order and synced to disk in batches.
//!   Every complete line is a finished image. When a run is interrupted, the
//!   last line may be incomplete; the next run of the same shard cuts it off,
//!   skips the images already present and appends the rest, so no image is
//!   lost or written twice.
//! - `shard-IIIII-of-NNNNN.done.json`: written (atomically) when a shard has
//!   processed all its images; `merge` requires one per shard.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::Shard;
use crate::pipeline::ImageRecord;

/// The parameters of a run, as stored in `run.json` and in the COCO output's `info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunParams {
    /// `maskcut` or `tokencut`.
    pub method: String,
    /// Cosine threshold τ.
    pub tau: f32,
    /// Affinity of dissimilar patches ε.
    pub eps: f32,
    /// Maximum number of masks N.
    pub max_masks: usize,
    /// Whether the dense CRF ran.
    pub crf: bool,
    /// Patch size in pixels.
    pub patch: usize,
    /// Number of shards of the run.
    pub shards: usize,
}

/// The completion marker of one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardDone {
    /// `i/n`.
    pub shard: String,
    /// Images assigned to the shard.
    pub images: usize,
    /// Proposals written by the shard.
    pub proposals: usize,
}

/// Writes `run.json` in `dir`, or checks that the one there has the same parameters.
pub fn check_run_params(dir: &Path, params: &RunParams) -> Result<()> {
    let path = dir.join("run.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let old: RunParams = serde_json::from_str(&text)
            .map_err(|e| Error::format(&path, format!("line {}", e.line()), format!("not a run description: {e}")))?;
        if &old != params {
            return Err(Error::Mismatch(format!(
                "{} holds a run with other parameters ({}); use another output folder or the same parameters (this run: {})",
                path.display(),
                serde_json::to_string(&old).unwrap_or_default(),
                serde_json::to_string(params).unwrap_or_default()
            )));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json = serde_json::to_vec_pretty(params).map_err(|e| Error::Invalid(e.to_string()))?;
    labelscope_core::atomic::write_atomic(&path, &json)?;
    Ok(())
}

/// The log file of `shard` in `dir`.
pub fn shard_path(dir: &Path, shard: Shard) -> PathBuf {
    dir.join(format!("{}.jsonl", shard.stem()))
}

/// The completion marker of `shard` in `dir`.
pub fn done_path(dir: &Path, shard: Shard) -> PathBuf {
    dir.join(format!("{}.done.json", shard.stem()))
}

/// Appends records to a shard log (see the module docs).
#[derive(Debug)]
pub struct ShardWriter {
    path: PathBuf,
    file: File,
    done: HashSet<String>,
    /// Bytes of an incomplete last line cut off when the log was opened.
    pub truncated_bytes: u64,
}

impl ShardWriter {
    /// Opens (or creates) the log at `path`, reading the ids already done and
    /// cutting off an incomplete last line. A complete line that is not a
    /// record, or an id present twice, is an error naming the line.
    pub fn open(path: &Path) -> Result<ShardWriter> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut file =
            OpenOptions::new().read(true).append(true).create(true).open(path).map_err(|e| Error::io(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let mut done = HashSet::new();
        for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let rec = parse_record(line, path, i + 1)?;
            if !done.insert(rec.id.clone()) {
                return Err(Error::format(
                    path,
                    format!("line {}", i + 1),
                    format!("image {:?} appears twice", rec.id),
                ));
            }
        }
        let truncated_bytes = (bytes.len() - complete) as u64;
        if truncated_bytes > 0 {
            file.set_len(complete as u64).map_err(|e| Error::io(path, e))?;
            file.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
        }
        Ok(ShardWriter { path: path.to_path_buf(), file, done, truncated_bytes })
    }

    /// Whether image `id` is already in the log.
    pub fn contains(&self, id: &str) -> bool {
        self.done.contains(id)
    }

    /// Number of images in the log.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Appends one record as one line (written with a single `write` call).
    pub fn append(&mut self, rec: &ImageRecord) -> Result<()> {
        if self.done.contains(&rec.id) {
            return Err(Error::Mismatch(format!("image {:?} is already in {}", rec.id, self.path.display())));
        }
        let mut line = serde_json::to_vec(rec).map_err(|e| Error::Invalid(e.to_string()))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|e| Error::io(&self.path, e))?;
        self.done.insert(rec.id.clone());
        Ok(())
    }

    /// Flushes the log to disk (`fsync`).
    pub fn sync(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

fn parse_record(line: &[u8], path: &Path, lineno: usize) -> Result<ImageRecord> {
    serde_json::from_slice(line).map_err(|e| {
        Error::format(
            path,
            format!("line {lineno}, column {}", e.column()),
            format!("not a proposals record ({e}); the log is damaged, remove this line to recompute the image"),
        )
    })
}

/// Reads every record of a finished shard log. An incomplete last line is an
/// error (the shard was interrupted and must be run again to finish).
pub fn read_records(path: &Path) -> Result<Vec<ImageRecord>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut lineno = 0;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        lineno += 1;
        if line.last() != Some(&b'\n') {
            return Err(Error::format(
                path,
                format!("line {lineno}"),
                "incomplete last line: the shard was interrupted; run it again to finish it",
            ));
        }
        if line.len() > 1 {
            out.push(parse_record(&line[..line.len() - 1], path, lineno)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> ImageRecord {
        ImageRecord {
            id: id.into(),
            file_name: format!("{id}.JPEG"),
            width: 4,
            height: 3,
            grid: [2, 2],
            dropped_by_crf: 0,
            proposals: Vec::new(),
        }
    }

    #[test]
    fn resume_cuts_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        let mut w = ShardWriter::open(&p).unwrap();
        w.append(&rec("a")).unwrap();
        w.append(&rec("b")).unwrap();
        w.sync().unwrap();
        assert!(w.append(&rec("a")).is_err());
        drop(w);
        // Simulate a crash in the middle of writing "c".
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(br#"{"id":"c","file_na"#).unwrap();
        drop(f);
        assert!(read_records(&p).unwrap_err().to_string().contains("interrupted"));
        let mut w = ShardWriter::open(&p).unwrap();
        assert_eq!(w.truncated_bytes, br#"{"id":"c","file_na"#.len() as u64);
        assert!(w.contains("a") && w.contains("b") && !w.contains("c"));
        w.append(&rec("c")).unwrap();
        drop(w);
        let ids: Vec<String> = read_records(&p).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn damaged_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        std::fs::write(&p, "{\"id\":1}\n").unwrap();
        let err = ShardWriter::open(&p).unwrap_err().to_string();
        assert!(err.contains("s.jsonl") && err.contains("line 1"), "{err}");
        // Nothing was removed from the user's file.
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"id\":1}\n");
    }

    #[test]
    fn run_params_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let a =
            RunParams { method: "maskcut".into(), tau: 0.15, eps: 1e-5, max_masks: 3, crf: false, patch: 8, shards: 2 };
        check_run_params(dir.path(), &a).unwrap();
        check_run_params(dir.path(), &a).unwrap();
        let b = RunParams { tau: 0.2, ..a };
        let err = check_run_params(dir.path(), &b).unwrap_err().to_string();
        assert!(err.contains("other parameters"), "{err}");
    }
}
