//! Feature cache: an on-disk, sharded, memory-mappable store of per-image
//! patch features, so that training and relabeling never run the backbone
//! twice on an image.
//!
//! # Layout
//! A cache is one folder:
//!
//! | file | content |
//! |---|---|
//! | `cache.json` | [`CacheMeta`]: format name and version, backbone, recipe, token kind, `dim`, whether a CLS row is stored, dtype (`F16`), number of shards, header size, creation info |
//! | `shard-IIIII-of-NNNNN.safetensors` | the features of shard `I` of `N`: one concatenated `F16` tensor `features` of shape `[rows, dim]` |
//! | `shard-IIIII-of-NNNNN.index.jsonl` | the shard's index, append-only, one JSON object per image and line: `{"id", "row", "h", "w", "crc32"}` |
//! | `shard-IIIII-of-NNNNN.done.json` | [`ShardDone`], written atomically when the shard holds all its images |
//! | `complete.json` | [`CacheSummary`], written by [`finalize`] after checking every shard against the manifest |
//!
//! ## Shard data file
//! A valid safetensors file whose header has a **fixed size**: bytes `0..8`
//! hold the header length `HEADER_BYTES − 8 = 4088` (u64, little endian),
//! bytes `8..4096` the JSON header padded with spaces:
//!
//! ```text
//! {"__metadata__":{"format":"labelscope-feature-cache","version":"1","shard":"0/4","images":"17","complete":"true"},
//!  "features":{"dtype":"F16","shape":[rows,dim],"data_offsets":[0,rows*dim*2]}}
//! ```
//!
//! From byte [`HEADER_BYTES`] (4096) on follow the rows, each `dim` f16
//! values (IEEE binary16, little endian). Image records are contiguous row
//! ranges in the order they were written: a record starting at `row` holds
//! first its CLS row (only when `cache.json` says `"cls": true`) and then
//! its `h × w` patch rows in row-major grid order. So the patch features of
//! an image are `features[row + cls : row + cls + h*w].reshape(h, w, dim)`.
//! `crc32` is zlib's CRC-32 (`zlib.crc32` in Python) of the record's bytes
//! (CLS row and patch rows).
//!
//! Why one concatenated tensor rather than one tensor per image: the header
//! stays a few hundred bytes whatever the number of images, so it can be
//! reserved up front and rewritten in place while the shard grows (a
//! per-image header would have to be rewritten, and the data moved, on every
//! append); a read is one offset computation into one memory map per shard
//! with no header parse per image; the data starts page-aligned (4096), so
//! every row is 2-byte aligned and rows of `dim` a multiple of 32 start on a
//! 64-byte boundary; and a reader in storage order streams the file
//! sequentially.
//!
//! ## Writing, durability and resume
//! [`CacheWriter`] writes one shard (`--shard i/n`, [`Shard`]: shard `i`
//! holds the ids at sorted positions `p` with `p mod n = i`, the rule of
//! `labelscope-proposals`). [`CacheWriter::append`] converts an image's
//! features to f16 (round to nearest, ties to even; values that do not fit
//! in f16 are an error) and writes its rows; [`CacheWriter::sync`] (called
//! by [`CacheWriter::append_batch`]) makes a batch durable in this order:
//! rows and the updated header, `fsync` of the data file, then the index
//! lines, `fsync` of the index. An index line therefore only ever refers to
//! rows already on disk, and the data file is a valid safetensors file after
//! every batch. After a crash (even `kill -9`) at any point, reopening the
//! shard keeps the longest prefix of index lines that are complete (end in a
//! newline) *and* whose rows are fully present in the data file, cuts the
//! index and the data file back to that prefix, rewrites the header, and
//! continues; images already present are skipped. [`CacheWriter::finish`]
//! checks that the shard holds exactly its list of images and writes the
//! completion marker. [`finalize`] checks that every shard is complete and
//! that the ids of all shards together equal the manifest.
//! One writer per shard at a time: shards are independent files, so
//! different shards can be written concurrently (one process each), but two
//! writers of the same shard are not detected and would interleave records.
//!
//! ## Reading
//! [`FeatureCache::open`] reads `cache.json` and every shard's index, maps
//! each data file and checks it against its completion marker and header
//! (exact length, shape, dtype), so truncated or mismatched shards are
//! reported at open time naming the file. [`FeatureCache::get`] returns
//! borrowed f16 views ([`F16View`]) into the map without reading the rest of
//! the shard, with converting helpers to `f32`. Checksums are verified on
//! each read with [`OpenOptions::verify_checksums`], or for the whole cache
//! with [`FeatureCache::verify`]. [`FeatureCache::iter`] walks all images in
//! storage order (shard 0 in write order, then shard 1, ...), the fastest
//! order for a full pass. The files must not be modified while a cache is
//! open (in particular, do not resume a writer on it).
//!
//! ## Reading from Python (numpy only)
//! ```python
//! import json, numpy as np
//! from pathlib import Path
//!
//! def read_feature_cache(folder):
//!     folder = Path(folder)
//!     meta = json.loads((folder / "cache.json").read_text())
//!     n, cls, out = meta["shards"], int(meta["cls"]), {}
//!     for i in range(n):
//!         stem = f"shard-{i:05d}-of-{n:05d}"
//!         path = folder / f"{stem}.safetensors"
//!         with open(path, "rb") as f:
//!             hlen = int.from_bytes(f.read(8), "little")
//!             header = json.loads(f.read(hlen))
//!         rows, dim = header["features"]["shape"]
//!         if rows == 0:
//!             continue
//!         feats = np.memmap(path, dtype="<f2", mode="r", offset=8 + hlen, shape=(rows, dim))
//!         for line in (folder / f"{stem}.index.jsonl").read_text().splitlines():
//!             r = json.loads(line)
//!             s = r["row"] + cls
//!             out[r["id"]] = feats[s : s + r["h"] * r["w"]].reshape(r["h"], r["w"], dim)
//!     return meta, out
//! ```
//! (`safetensors.numpy.load_file(path)["features"]` reads the same tensor;
//! checked by hand with safetensors 0.8, also on a shard that is still being
//! written, whose header always describes the rows synced so far.)
//! The committed script `tests/reference/read_feature_cache.py` does this and
//! is run by the tests on a cache written here.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions as FsOpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use labelscope_core::npy::f32_to_f16;
use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `format` value of `cache.json`.
pub const FORMAT: &str = "labelscope-feature-cache";
/// The format version written and read by this module.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the fixed safetensors header region of a shard data file
/// (8-byte length + JSON padded with spaces); the rows start here.
pub const HEADER_BYTES: u64 = 4096;
/// Name of the tensor in every shard data file.
pub const TENSOR_NAME: &str = "features";
/// The only dtype stored.
pub const DTYPE: &str = "F16";
/// Largest finite f16 value.
pub const F16_MAX: f32 = 65504.0;

/// How many names error messages list before giving a count.
const LIST_NAMES: usize = 5;

// ---------------------------------------------------------------------------
// Shards
// ---------------------------------------------------------------------------

/// `i/n`: the `i`-th (0-based) of `n` shards. Shard `i` holds the ids at
/// sorted positions `p` with `p mod n = i` (the rule of
/// `labelscope-proposals`' manifests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// 0-based index, `< count`.
    pub index: usize,
    /// Number of shards, at least 1.
    pub count: usize,
}

impl Shard {
    /// The whole cache as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `i/n` with `0 ≤ i < n`.
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || Error::Invalid(format!("shard {s:?}: expected i/n with 0 <= i < n, such as 3/16"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count).map_err(|_| bad())
    }

    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::Invalid(format!("shard {index}/{count}: expected 0 <= i < n")));
        }
        Ok(Shard { index, count })
    }

    /// The file-name stem of this shard, `shard-00003-of-00016`.
    pub fn stem(&self) -> String {
        format!("shard-{:05}-of-{:05}", self.index, self.count)
    }

    /// The ids of this shard, sorted: `ids` is sorted, and the ids at
    /// positions `p mod n = i` are kept. Duplicate ids are an error.
    pub fn select<S: AsRef<str>>(&self, ids: &[S]) -> Result<Vec<String>> {
        let mut all: Vec<&str> = ids.iter().map(|s| s.as_ref()).collect();
        all.sort_unstable();
        if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Invalid(format!("image id {:?} appears twice in the list of images", w[0])));
        }
        Ok(all
            .into_iter()
            .enumerate()
            .filter(|(p, _)| p % self.count == self.index)
            .map(|(_, s)| s.to_string())
            .collect())
    }

    /// The data file of this shard in `dir`.
    pub fn data_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.safetensors", self.stem()))
    }

    /// The index log of this shard in `dir`.
    pub fn index_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.index.jsonl", self.stem()))
    }

    /// The completion marker of this shard in `dir`.
    pub fn done_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.done.json", self.stem()))
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

// ---------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------

/// Which tokens of the backbone are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Output patch tokens of the last block (after the final norm).
    Patch,
    /// Keys of the last block's attention (TokenCut/MaskCut features).
    Key,
    /// Queries of the last block's attention.
    Query,
    /// Values of the last block's attention.
    Value,
    /// Cells of a convolutional feature map.
    Map,
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenKind::Patch => "patch",
            TokenKind::Key => "key",
            TokenKind::Query => "query",
            TokenKind::Value => "value",
            TokenKind::Map => "map",
        })
    }
}

/// What a writer stores: the identity of the features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    /// Backbone name (for example `dino_vits8`).
    pub backbone: String,
    /// Preprocessing recipe (for example `resize256-crop224`).
    pub recipe: String,
    /// Which tokens.
    pub tokens: TokenKind,
    /// Feature dimension (values per row).
    pub dim: usize,
    /// Whether every image also stores its CLS token (one extra row).
    pub cls: bool,
}

/// When and by what a cache was created (not compared between runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// Program and version, `labelscope-relabel 0.1.0`.
    pub by: String,
    /// Seconds since the Unix epoch.
    pub unix_seconds: u64,
}

/// The content of `cache.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version, [`FORMAT_VERSION`].
    pub version: u32,
    /// Backbone name.
    pub backbone: String,
    /// Preprocessing recipe.
    pub recipe: String,
    /// Which tokens.
    pub tokens: TokenKind,
    /// Feature dimension.
    pub dim: usize,
    /// Whether each record starts with a CLS row.
    pub cls: bool,
    /// Always [`DTYPE`].
    pub dtype: String,
    /// Number of shards.
    pub shards: usize,
    /// Size of each data file's header region, [`HEADER_BYTES`].
    pub header_bytes: u64,
    /// Creation info.
    pub created: Created,
}

/// What a reader expects of a cache; `None` accepts anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// Backbone name.
    pub backbone: Option<String>,
    /// Recipe.
    pub recipe: Option<String>,
    /// Token kind.
    pub tokens: Option<TokenKind>,
    /// Feature dimension.
    pub dim: Option<usize>,
    /// Whether CLS rows are stored.
    pub cls: Option<bool>,
}

impl From<&CacheSpec> for Expect {
    fn from(s: &CacheSpec) -> Expect {
        Expect {
            backbone: Some(s.backbone.clone()),
            recipe: Some(s.recipe.clone()),
            tokens: Some(s.tokens),
            dim: Some(s.dim),
            cls: Some(s.cls),
        }
    }
}

fn mismatch(path: &Path, key: &str, found: impl std::fmt::Display, wanted: impl std::fmt::Display) -> Error {
    Error::Mismatch(format!(
        "{}: key {key:?}: the cache holds {found}, but {wanted} was asked for; \
         features of another backbone, recipe or layout belong in another cache folder",
        path.display()
    ))
}

impl CacheMeta {
    /// The metadata of a new cache of `spec` with `shards` shards.
    pub fn new(spec: &CacheSpec, shards: usize) -> CacheMeta {
        let unix_seconds =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        CacheMeta {
            format: FORMAT.to_string(),
            version: FORMAT_VERSION,
            backbone: spec.backbone.clone(),
            recipe: spec.recipe.clone(),
            tokens: spec.tokens,
            dim: spec.dim,
            cls: spec.cls,
            dtype: DTYPE.to_string(),
            shards,
            header_bytes: HEADER_BYTES,
            created: Created { by: format!("labelscope-relabel {}", env!("CARGO_PKG_VERSION")), unix_seconds },
        }
    }

    /// The path of `cache.json` in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("cache.json")
    }

    /// Reads and checks `dir/cache.json` (format, version, dtype, sizes).
    pub fn read(dir: &Path) -> Result<CacheMeta> {
        let path = CacheMeta::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
        let meta: CacheMeta = serde_json::from_str(&text).map_err(|e| Error::Format {
            path: path.clone(),
            location: format!("line {}, column {}", e.line(), e.column()),
            message: format!("not a feature cache description: {e}"),
        })?;
        let bad = |key: &str, message: String| Error::Format {
            path: path.clone(),
            location: format!("key {key:?}"),
            message,
        };
        if meta.format != FORMAT {
            return Err(bad("format", format!("{:?}; expected {FORMAT:?}", meta.format)));
        }
        if meta.version != FORMAT_VERSION {
            return Err(bad(
                "version",
                format!("format version {}; this program reads version {FORMAT_VERSION}", meta.version),
            ));
        }
        if meta.dtype != DTYPE {
            return Err(bad("dtype", format!("{:?}; expected {DTYPE:?}", meta.dtype)));
        }
        if meta.header_bytes != HEADER_BYTES {
            return Err(bad("header_bytes", format!("{}; expected {HEADER_BYTES}", meta.header_bytes)));
        }
        if meta.dim == 0 {
            return Err(bad("dim", "0; expected a positive feature dimension".into()));
        }
        if meta.shards == 0 {
            return Err(bad("shards", "0; expected at least one shard".into()));
        }
        Ok(meta)
    }

    /// Checks the metadata (read from `path`) against what is expected; the
    /// error names the file and the first key that differs.
    pub fn check(&self, path: &Path, expect: &Expect) -> Result<()> {
        if let Some(b) = &expect.backbone {
            if &self.backbone != b {
                return Err(mismatch(path, "backbone", format!("{:?}", self.backbone), format!("{b:?}")));
            }
        }
        if let Some(r) = &expect.recipe {
            if &self.recipe != r {
                return Err(mismatch(path, "recipe", format!("{:?}", self.recipe), format!("{r:?}")));
            }
        }
        if let Some(t) = expect.tokens {
            if self.tokens != t {
                return Err(mismatch(
                    path,
                    "tokens",
                    format!("{:?}", self.tokens.to_string()),
                    format!("{:?}", t.to_string()),
                ));
            }
        }
        if let Some(d) = expect.dim {
            if self.dim != d {
                return Err(mismatch(path, "dim", format!("dim {}", self.dim), format!("dim {d}")));
            }
        }
        if let Some(c) = expect.cls {
            if self.cls != c {
                return Err(mismatch(path, "cls", format!("cls = {}", self.cls), format!("cls = {c}")));
            }
        }
        Ok(())
    }

    /// Rows of one image record with an `h × w` grid.
    pub fn record_rows(&self, h: usize, w: usize) -> u64 {
        (h as u64) * (w as u64) + u64::from(self.cls)
    }

    fn row_bytes(&self) -> u64 {
        self.dim as u64 * 2
    }
}

/// Writes `dir/cache.json` for `spec` and `shards`, or checks that the one
/// there describes the same features and shard count.
fn ensure_meta(dir: &Path, spec: &CacheSpec, shards: usize) -> Result<CacheMeta> {
    let path = CacheMeta::path(dir);
    if path.exists() {
        let meta = CacheMeta::read(dir)?;
        meta.check(&path, &Expect::from(spec))?;
        if meta.shards != shards {
            return Err(Error::Mismatch(format!(
                "{}: key \"shards\": the cache is split into {} shards, but shard i/{shards} was asked for",
                path.display(),
                meta.shards
            )));
        }
        return Ok(meta);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?;
    let meta = CacheMeta::new(spec, shards);
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::Invalid(e.to_string()))?;
    labelscope_core::atomic::write_atomic(&path, &json)?;
    Ok(meta)
}

/// The completion marker of one shard (`shard-…done.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDone {
    /// `i/n`.
    pub shard: String,
    /// Images in the shard.
    pub images: usize,
    /// Rows in the data file.
    pub rows: u64,
    /// Length of the data file in bytes.
    pub data_bytes: u64,
    /// Length of the index log in bytes.
    pub index_bytes: u64,
}

/// The content of `complete.json`, written by [`finalize`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSummary {
    /// Number of shards.
    pub shards: usize,
    /// Images in the cache.
    pub images: usize,
    /// Rows in all data files.
    pub rows: u64,
    /// Bytes of all data files.
    pub data_bytes: u64,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        location: format!("line {}, column {}", e.line(), e.column()),
        message: format!("not {what}: {e}"),
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::Invalid(e.to_string()))?;
    labelscope_core::atomic::write_atomic(path, &json)?;
    Ok(())
}

fn list_some<'a>(names: impl IntoIterator<Item = &'a str>, total: usize) -> String {
    let shown: Vec<String> = names.into_iter().take(LIST_NAMES).map(|s| format!("{s:?}")).collect();
    if total > shown.len() {
        format!("{} and {} more", shown.join(", "), total - shown.len())
    } else {
        shown.join(", ")
    }
}

// ---------------------------------------------------------------------------
// Checksums and f16 encoding
// ---------------------------------------------------------------------------

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// zlib's CRC-32 (reflected polynomial `0xEDB88320`, initial and final
/// value `0xFFFFFFFF`), as `zlib.crc32` in Python.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// Appends `values` as little-endian f16 (round to nearest even) to `out`;
/// a value that is not finite or does not fit in f16 is an error naming
/// the image, the row and the channel.
fn encode_f16(values: &[f32], dim: usize, first_row: usize, id: &str, what: &str, out: &mut Vec<u8>) -> Result<()> {
    out.reserve(values.len() * 2);
    for (k, &x) in values.iter().enumerate() {
        let h = f32_to_f16(x);
        if h & 0x7c00 == 0x7c00 {
            let (row, ch) = (first_row + k / dim, k % dim);
            return Err(Error::Invalid(format!(
                "image {id:?}: {what} value {x} at row {row}, channel {ch} {}",
                if x.is_finite() { "does not fit in f16 (largest finite value 65504)" } else { "is not finite" }
            )));
        }
        out.extend_from_slice(&h.to_le_bytes());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Shard data header
// ---------------------------------------------------------------------------

fn header_region(meta: &CacheMeta, shard: Shard, rows: u64, images: usize, complete: bool) -> Result<Vec<u8>> {
    let data = rows * meta.row_bytes();
    let json = serde_json::json!({
        "__metadata__": {
            "format": FORMAT,
            "version": FORMAT_VERSION.to_string(),
            "shard": shard.to_string(),
            "images": images.to_string(),
            "complete": complete.to_string(),
        },
        TENSOR_NAME: { "dtype": DTYPE, "shape": [rows, meta.dim], "data_offsets": [0, data] },
    });
    let mut text = serde_json::to_vec(&json).map_err(|e| Error::Invalid(e.to_string()))?;
    let room = (HEADER_BYTES - 8) as usize;
    if text.len() > room {
        return Err(Error::Invalid(format!("shard header of {} bytes does not fit in {room} bytes", text.len())));
    }
    text.resize(room, b' ');
    let mut out = Vec::with_capacity(HEADER_BYTES as usize);
    out.extend_from_slice(&(HEADER_BYTES - 8).to_le_bytes());
    out.extend_from_slice(&text);
    Ok(out)
}

/// Checks the header region of a mapped data file against the expected rows.
fn check_header(bytes: &[u8], path: &Path, meta: &CacheMeta, shard: Shard, rows: u64) -> Result<()> {
    let bad = |location: &str, message: String| Error::Format {
        path: path.to_path_buf(),
        location: location.to_string(),
        message,
    };
    let Some(len) = bytes.get(..8) else {
        return Err(bad("header", format!("the file is {} bytes long; expected at least {HEADER_BYTES}", bytes.len())));
    };
    let mut b8 = [0u8; 8];
    b8.copy_from_slice(len);
    let hlen = u64::from_le_bytes(b8);
    if hlen != HEADER_BYTES - 8 {
        return Err(bad(
            "header",
            format!("header length field {hlen}; a feature cache shard has {}", HEADER_BYTES - 8),
        ));
    }
    let text = &bytes[8..HEADER_BYTES as usize];
    let v: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| bad("header", format!("the safetensors header is not JSON: {e}")))?;
    let t = v.get(TENSOR_NAME).ok_or_else(|| bad("header", format!("no tensor {TENSOR_NAME:?}")))?;
    let loc = format!("header, tensor {TENSOR_NAME:?}");
    let dtype = t.get("dtype").and_then(|d| d.as_str()).unwrap_or("");
    if dtype != DTYPE {
        return Err(bad(&loc, format!("dtype {dtype:?}; expected {DTYPE:?}")));
    }
    let want_shape = serde_json::json!([rows, meta.dim]);
    if t.get("shape") != Some(&want_shape) {
        return Err(bad(
            &loc,
            format!(
                "shape {}; the index and completion marker say {want_shape}",
                t.get("shape").map_or("missing".to_string(), |s| s.to_string())
            ),
        ));
    }
    let want_off = serde_json::json!([0, rows * meta.row_bytes()]);
    if t.get("data_offsets") != Some(&want_off) {
        return Err(bad(&loc, format!("data_offsets {:?}; expected {want_off}", t.get("data_offsets"))));
    }
    let sh = v.pointer("/__metadata__/shard").and_then(|s| s.as_str()).unwrap_or("");
    if sh != shard.to_string() {
        return Err(bad("header, __metadata__.shard", format!("{sh:?}; expected \"{shard}\"")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Index log
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IndexLine {
    id: String,
    row: u64,
    h: usize,
    w: usize,
    crc32: u32,
}

struct ParsedIndex {
    lines: Vec<IndexLine>,
    /// Byte offset just after each line's newline.
    ends: Vec<u64>,
    /// Bytes after the last newline (an incomplete line).
    tail: u64,
}

fn parse_index(bytes: &[u8], path: &Path, meta: &CacheMeta) -> Result<ParsedIndex> {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let mut lines = Vec::new();
    let mut ends = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut next_row = 0u64;
    let mut start = 0usize;
    for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
        if start >= complete {
            break;
        }
        let lineno = i + 1;
        let loc = |extra: &str| format!("line {lineno}{extra}");
        let rec: IndexLine = serde_json::from_slice(line).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            location: loc(&format!(", column {}", e.column())),
            message: format!("not an index record {{\"id\", \"row\", \"h\", \"w\", \"crc32\"}}: {e}"),
        })?;
        let bad = |key: &str, message: String| Error::Format {
            path: path.to_path_buf(),
            location: loc(&format!(", key {key:?}")),
            message,
        };
        if rec.id.is_empty() {
            return Err(bad("id", "empty image id".into()));
        }
        if rec.h == 0 || rec.w == 0 {
            return Err(bad("h", format!("grid {}x{}; expected positive h and w", rec.h, rec.w)));
        }
        if rec.row != next_row {
            return Err(bad(
                "row",
                format!("{}; records are contiguous, so this one must start at row {next_row}", rec.row),
            ));
        }
        if let Some(first) = seen.insert(rec.id.clone(), lineno) {
            return Err(bad("id", format!("image {:?} appears twice (first on line {first})", rec.id)));
        }
        next_row += meta.record_rows(rec.h, rec.w);
        start += line.len() + 1;
        ends.push(start as u64);
        lines.push(rec);
    }
    Ok(ParsedIndex { lines, ends, tail: (bytes.len() - complete) as u64 })
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

/// The features of one image, as produced by the backbone.
#[derive(Debug, Clone, Copy)]
pub struct ImageFeatures<'a> {
    /// Image id (any non-empty string).
    pub id: &'a str,
    /// Grid height.
    pub h: usize,
    /// Grid width.
    pub w: usize,
    /// `h × w × dim` values, row-major over the grid.
    pub patches: &'a [f32],
    /// The CLS token (`dim` values); required exactly when the cache stores CLS rows.
    pub cls: Option<&'a [f32]>,
}

/// What reopening a shard found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Images kept (already done).
    pub images: usize,
    /// Complete index lines dropped because their rows were not all in the data file.
    pub dropped_records: usize,
    /// Bytes cut from the end of the index log.
    pub index_bytes_cut: u64,
    /// Bytes cut from the end of the data file (a file shorter than its
    /// header is re-grown to the header, which counts as 0 here).
    pub data_bytes_cut: u64,
    /// Whether a completion marker that no longer matched the files was removed.
    pub stale_marker_removed: bool,
}

/// Writes one shard of a cache (see the module docs).
#[derive(Debug)]
pub struct CacheWriter {
    dir: PathBuf,
    meta: CacheMeta,
    shard: Shard,
    data_path: PathBuf,
    index_path: PathBuf,
    data: File,
    index: File,
    ids: HashSet<String>,
    images: usize,
    /// Rows written to the data file (synced or not).
    rows: u64,
    index_len: u64,
    pending: Vec<IndexLine>,
    header_dirty: bool,
    complete: bool,
    recovery: Recovery,
}

struct Encoded {
    id: String,
    h: usize,
    w: usize,
    bytes: Vec<u8>,
    crc32: u32,
}

impl CacheWriter {
    /// Opens (or creates) shard `shard` of the cache in `dir` for `spec`:
    /// writes or checks `cache.json`, then resumes the shard (see the module
    /// docs): incomplete trailing data is cut back to the last complete
    /// record, the images already present are remembered and skipped.
    pub fn open(dir: &Path, spec: &CacheSpec, shard: Shard) -> Result<CacheWriter> {
        if spec.dim == 0 {
            return Err(Error::Invalid("feature cache: dim must be positive".into()));
        }
        let meta = ensure_meta(dir, spec, shard.count)?;
        let (data_path, index_path, done_path) = (shard.data_path(dir), shard.index_path(dir), shard.done_path(dir));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| Error::Io { path: p, source: e }
        };
        let open = |p: &Path| FsOpenOptions::new().read(true).write(true).create(true).truncate(false).open(p);
        let mut index = open(&index_path).map_err(io(&index_path))?;
        let data = open(&data_path).map_err(io(&data_path))?;
        let mut bytes = Vec::new();
        index.read_to_end(&mut bytes).map_err(io(&index_path))?;
        let parsed = parse_index(&bytes, &index_path, &meta)?;
        let data_len = data.metadata().map_err(io(&data_path))?.len();

        // Keep the longest prefix of complete lines whose rows are all on disk.
        let mut keep = 0;
        let mut rows = 0u64;
        for rec in &parsed.lines {
            let end = rec.row + meta.record_rows(rec.h, rec.w);
            if HEADER_BYTES + end * meta.row_bytes() > data_len {
                break;
            }
            rows = end;
            keep += 1;
        }
        let index_keep = if keep == 0 { 0 } else { parsed.ends[keep - 1] };
        let data_keep = HEADER_BYTES + rows * meta.row_bytes();
        let mut recovery = Recovery {
            images: keep,
            dropped_records: parsed.lines.len() - keep,
            index_bytes_cut: bytes.len() as u64 - index_keep,
            data_bytes_cut: data_len.saturating_sub(data_keep),
            stale_marker_removed: false,
        };
        let changed = index_keep != bytes.len() as u64 || data_keep != data_len;
        debug_assert!(parsed.tail <= recovery.index_bytes_cut);
        if index_keep != bytes.len() as u64 {
            index.set_len(index_keep).map_err(io(&index_path))?;
            index.sync_data().map_err(io(&index_path))?;
        }
        if data_keep != data_len {
            data.set_len(data_keep).map_err(io(&data_path))?;
        }
        let mut lines = parsed.lines;
        lines.truncate(keep);

        let mut complete = false;
        if done_path.exists() {
            let done: ShardDone = read_json(&done_path, "a shard completion marker")?;
            let now = ShardDone {
                shard: shard.to_string(),
                images: keep,
                rows,
                data_bytes: data_keep,
                index_bytes: index_keep,
            };
            if done == now && !changed {
                complete = true;
            } else {
                // The files changed after the shard was completed: the marker
                // (and any finalize summary) no longer describes them.
                std::fs::remove_file(&done_path).map_err(io(&done_path))?;
                let summary = dir.join("complete.json");
                if summary.exists() {
                    std::fs::remove_file(&summary).map_err(io(&summary))?;
                }
                recovery.stale_marker_removed = true;
            }
        }
        let ids: HashSet<String> = lines.into_iter().map(|l| l.id).collect();
        let mut w = CacheWriter {
            dir: dir.to_path_buf(),
            meta,
            shard,
            data_path,
            index_path,
            data,
            index,
            images: ids.len(),
            ids,
            rows,
            index_len: index_keep,
            pending: Vec::new(),
            header_dirty: true,
            complete,
            recovery,
        };
        if !w.complete {
            // Rewrite the header for the kept rows (also creates it for a new shard).
            w.write_header(false)?;
            w.data.sync_data().map_err(io(&w.data_path))?;
            w.header_dirty = false;
        }
        Ok(w)
    }

    /// The cache metadata.
    pub fn meta(&self) -> &CacheMeta {
        &self.meta
    }

    /// The shard written.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// What opening the shard found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Whether the shard already had a valid completion marker when opened.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Whether image `id` is in the shard (written, synced or not).
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Number of images in the shard.
    pub fn len(&self) -> usize {
        self.images
    }

    /// Whether the shard holds no image.
    pub fn is_empty(&self) -> bool {
        self.images == 0
    }

    /// The ids of `ids` not yet in the shard, in the given order: the work left.
    pub fn missing<'a, S: AsRef<str>>(&self, ids: &'a [S]) -> Vec<&'a str> {
        ids.iter().map(|s| s.as_ref()).filter(|s| !self.ids.contains(*s)).collect()
    }

    fn encode(&self, img: &ImageFeatures<'_>) -> Result<Encoded> {
        let dim = self.meta.dim;
        let id = img.id;
        if id.is_empty() {
            return Err(Error::Invalid("feature cache: empty image id".into()));
        }
        if img.h == 0 || img.w == 0 {
            return Err(Error::Invalid(format!("image {id:?}: grid {}x{}; expected positive h and w", img.h, img.w)));
        }
        let want = img.h.checked_mul(img.w).and_then(|n| n.checked_mul(dim));
        if want != Some(img.patches.len()) {
            return Err(Error::Mismatch(format!(
                "image {id:?}: {} patch values; a {}x{} grid of dim {dim} needs {}",
                img.patches.len(),
                img.h,
                img.w,
                want.map_or_else(|| "too many".to_string(), |n| n.to_string())
            )));
        }
        let mut bytes = Vec::with_capacity((self.meta.record_rows(img.h, img.w) * self.meta.row_bytes()) as usize);
        match (self.meta.cls, img.cls) {
            (true, Some(c)) => {
                if c.len() != dim {
                    return Err(Error::Mismatch(format!(
                        "image {id:?}: CLS token of {} values; expected dim {dim}",
                        c.len()
                    )));
                }
                encode_f16(c, dim, 0, id, "CLS", &mut bytes)?;
            }
            (true, None) => {
                return Err(Error::Mismatch(format!(
                    "image {id:?}: no CLS token, but the cache ({}) stores one per image (\"cls\": true)",
                    CacheMeta::path(&self.dir).display()
                )))
            }
            (false, Some(_)) => {
                return Err(Error::Mismatch(format!(
                    "image {id:?}: a CLS token was given, but the cache ({}) stores none (\"cls\": false)",
                    CacheMeta::path(&self.dir).display()
                )))
            }
            (false, None) => {}
        }
        encode_f16(img.patches, dim, usize::from(self.meta.cls), id, "patch", &mut bytes)?;
        let crc32 = crc32(&bytes);
        Ok(Encoded { id: id.to_string(), h: img.h, w: img.w, bytes, crc32 })
    }

    fn refuse_if_complete(&self, id: &str) -> Result<()> {
        if self.complete {
            return Err(Error::Mismatch(format!(
                "image {id:?}: shard {} is complete ({}); it takes no new images",
                self.shard,
                self.shard.done_path(&self.dir).display()
            )));
        }
        Ok(())
    }

    fn write_encoded(&mut self, e: Encoded) -> Result<()> {
        let pos = HEADER_BYTES + self.rows * self.meta.row_bytes();
        let path = &self.data_path;
        self.data.seek(SeekFrom::Start(pos)).map_err(|err| Error::Io { path: path.clone(), source: err })?;
        self.data.write_all(&e.bytes).map_err(|err| Error::Io { path: path.clone(), source: err })?;
        let rows = self.meta.record_rows(e.h, e.w);
        self.pending.push(IndexLine { id: e.id.clone(), row: self.rows, h: e.h, w: e.w, crc32: e.crc32 });
        self.rows += rows;
        self.images += 1;
        self.ids.insert(e.id);
        self.header_dirty = true;
        Ok(())
    }

    /// Appends one image (its rows go to the data file now; it becomes
    /// durable, and visible to a resume, at the next [`CacheWriter::sync`]).
    /// Returns `false`, writing nothing, when the image is already present.
    pub fn append(&mut self, img: &ImageFeatures<'_>) -> Result<bool> {
        if self.ids.contains(img.id) {
            return Ok(false);
        }
        self.refuse_if_complete(img.id)?;
        let e = self.encode(img)?;
        self.write_encoded(e)?;
        Ok(true)
    }

    /// Appends a batch (converted in parallel; nothing is written when any
    /// image is invalid), skipping images already present or repeated in the
    /// batch, then syncs. Returns the number of images written.
    pub fn append_batch(&mut self, batch: &[ImageFeatures<'_>]) -> Result<usize> {
        let mut seen = HashSet::new();
        let todo: Vec<&ImageFeatures<'_>> =
            batch.iter().filter(|f| !self.ids.contains(f.id) && seen.insert(f.id)).collect();
        if let Some(f) = todo.first() {
            self.refuse_if_complete(f.id)?;
        }
        let encoded: Vec<Encoded> = todo.par_iter().map(|f| self.encode(f)).collect::<Result<_>>()?;
        let n = encoded.len();
        for e in encoded {
            self.write_encoded(e)?;
        }
        self.sync()?;
        Ok(n)
    }

    fn write_header(&mut self, complete: bool) -> Result<()> {
        let header = header_region(&self.meta, self.shard, self.rows, self.images, complete)?;
        let path = &self.data_path;
        self.data.seek(SeekFrom::Start(0)).map_err(|e| Error::Io { path: path.clone(), source: e })?;
        self.data.write_all(&header).map_err(|e| Error::Io { path: path.clone(), source: e })
    }

    /// Makes everything appended so far durable: header and rows, `fsync` of
    /// the data file, then the index lines, `fsync` of the index.
    pub fn sync(&mut self) -> Result<()> {
        if self.header_dirty {
            self.write_header(false)?;
            self.data.sync_data().map_err(|e| Error::Io { path: self.data_path.clone(), source: e })?;
            self.header_dirty = false;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for line in &self.pending {
            serde_json::to_writer(&mut text, line).map_err(|e| Error::Invalid(e.to_string()))?;
            text.push(b'\n');
        }
        let ipath = &self.index_path;
        self.index.seek(SeekFrom::Start(self.index_len)).map_err(|e| Error::Io { path: ipath.clone(), source: e })?;
        self.index.write_all(&text).map_err(|e| Error::Io { path: ipath.clone(), source: e })?;
        self.index.sync_data().map_err(|e| Error::Io { path: ipath.clone(), source: e })?;
        self.index_len += text.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Completes the shard: syncs, checks that it holds exactly the images
    /// of `expected` (this shard's ids; see [`Shard::select`]), marks the
    /// header complete and writes the completion marker.
    pub fn finish<S: AsRef<str>>(mut self, expected: &[S]) -> Result<ShardDone> {
        self.sync()?;
        let want: HashSet<&str> = expected.iter().map(|s| s.as_ref()).collect();
        let mut missing: Vec<&str> = want.iter().copied().filter(|s| !self.ids.contains(*s)).collect();
        let index = self.index_path.display();
        if !missing.is_empty() {
            missing.sort_unstable();
            return Err(Error::Mismatch(format!(
                "shard {} ({index}) is not complete: {} of its {} images are missing: {}",
                self.shard,
                missing.len(),
                want.len(),
                list_some(missing.iter().copied(), missing.len())
            )));
        }
        let mut extra: Vec<&str> = self.ids.iter().map(String::as_str).filter(|s| !want.contains(s)).collect();
        if !extra.is_empty() {
            extra.sort_unstable();
            return Err(Error::Mismatch(format!(
                "shard {} ({index}) holds {} images that are not in its list of images: {}",
                self.shard,
                extra.len(),
                list_some(extra.iter().copied(), extra.len())
            )));
        }
        self.write_header(true)?;
        self.data.sync_data().map_err(|e| Error::Io { path: self.data_path.clone(), source: e })?;
        let done = ShardDone {
            shard: self.shard.to_string(),
            images: self.images,
            rows: self.rows,
            data_bytes: HEADER_BYTES + self.rows * self.meta.row_bytes(),
            index_bytes: self.index_len,
        };
        write_json(&self.shard.done_path(&self.dir), &done)?;
        Ok(done)
    }
}

// ---------------------------------------------------------------------------
// Finalize
// ---------------------------------------------------------------------------

/// Checks that every shard of the cache in `dir` is complete and valid and
/// that the ids of all shards together are exactly `manifest`; then writes
/// `complete.json`. Errors list what is missing (a few names and a count).
pub fn finalize<S: AsRef<str>>(dir: &Path, manifest: &[S]) -> Result<CacheSummary> {
    let meta = CacheMeta::read(dir)?;
    let incomplete: Vec<String> = (0..meta.shards)
        .map(|i| Shard { index: i, count: meta.shards })
        .filter(|s| !s.done_path(dir).exists())
        .map(|s| s.to_string())
        .collect();
    if !incomplete.is_empty() {
        return Err(Error::Mismatch(format!(
            "{}: {} of {} shards are not complete (no completion marker): {}; run them (--shard i/n) to finish",
            dir.display(),
            incomplete.len(),
            meta.shards,
            list_some(incomplete.iter().map(String::as_str), incomplete.len())
        )));
    }
    let cache = FeatureCache::open(dir)?;
    let mut want: HashSet<&str> = HashSet::with_capacity(manifest.len());
    for s in manifest {
        if !want.insert(s.as_ref()) {
            return Err(Error::Invalid(format!("image id {:?} appears twice in the manifest", s.as_ref())));
        }
    }
    let mut missing: Vec<&str> = want.iter().copied().filter(|s| !cache.contains(s)).collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        return Err(Error::Mismatch(format!(
            "{}: {} of the manifest's {} images are not in the cache: {}",
            dir.display(),
            missing.len(),
            want.len(),
            list_some(missing.iter().copied(), missing.len())
        )));
    }
    let mut extra: Vec<&str> = cache.ids().filter(|s| !want.contains(s)).collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        return Err(Error::Mismatch(format!(
            "{}: {} images of the cache are not in the manifest: {}",
            dir.display(),
            extra.len(),
            list_some(extra.iter().copied(), extra.len())
        )));
    }
    let summary = CacheSummary {
        shards: meta.shards,
        images: cache.len(),
        rows: cache.rows,
        data_bytes: cache.shards.iter().map(|s| s.map.len() as u64).sum(),
    };
    write_json(&dir.join("complete.json"), &summary)?;
    Ok(summary)
}

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

/// Options of [`FeatureCache::open_with`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// What the cache must hold (backbone, recipe, tokens, dim, cls).
    pub expect: Expect,
    /// Verify each record's CRC-32 on every read.
    pub verify_checksums: bool,
}

/// Where an image is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Image id.
    pub id: String,
    /// Shard index.
    pub shard: usize,
    /// First row of the record in the shard's tensor (the CLS row if stored).
    pub row: u64,
    /// Grid height.
    pub h: usize,
    /// Grid width.
    pub w: usize,
    /// CRC-32 of the record's bytes.
    pub crc32: u32,
}

#[derive(Debug)]
struct ShardMap {
    path: PathBuf,
    map: Mmap,
}

/// f16 bits to `f32`, exact, with one branch that is almost never taken (so
/// loops over it vectorise): the exponent and mantissa bits shifted into an
/// `f32` are the value times 2^-112 (for subnormal halves too, as an `f32`
/// subnormal), so one multiplication by 2^112 rescales them exactly;
/// infinities and NaNs get the all-ones exponent instead.
#[inline]
fn half_to_f32(h: u16) -> f32 {
    let em = u32::from(h & 0x7fff) << 13;
    let sign = u32::from(h & 0x8000) << 16;
    let mut f = f32::from_bits(em) * f32::from_bits(0x7780_0000); // 2^112
    if em >= 0x7c00 << 13 {
        f = f32::from_bits(em | 0x7f80_0000);
    }
    f32::from_bits(f.to_bits() | sign)
}

/// A borrowed run of little-endian f16 values inside a shard's memory map.
#[derive(Debug, Clone, Copy)]
pub struct F16View<'a> {
    bytes: &'a [u8],
}

impl<'a> F16View<'a> {
    /// A view of `bytes` (little-endian f16; the length must be even).
    pub fn new(bytes: &'a [u8]) -> Result<F16View<'a>> {
        if !bytes.len().is_multiple_of(2) {
            return Err(Error::Invalid(format!("{} bytes are not a whole number of f16 values", bytes.len())));
        }
        Ok(F16View { bytes })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.bytes.len() / 2
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The raw little-endian bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The f16 bits of value `i`.
    pub fn bits(&self, i: usize) -> Option<u16> {
        self.bytes.get(2 * i..2 * i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    /// Value `i` as `f32` (exact).
    pub fn get(&self, i: usize) -> Option<f32> {
        self.bits(i).map(half_to_f32)
    }

    /// All values as `f32`.
    pub fn iter(&self) -> impl Iterator<Item = f32> + 'a {
        self.bytes.chunks_exact(2).map(|b| half_to_f32(u16::from_le_bytes([b[0], b[1]])))
    }

    /// All values converted to `f32`.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        self.iter().collect()
    }

    /// Converts into `out`, which must have [`F16View::len`] elements.
    pub fn copy_to_f32(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.len() {
            return Err(Error::Mismatch(format!("output of {} values for {} f16 values", out.len(), self.len())));
        }
        for (o, b) in out.iter_mut().zip(self.bytes.chunks_exact(2)) {
            *o = half_to_f32(u16::from_le_bytes([b[0], b[1]]));
        }
        Ok(())
    }
}

/// The features of one image, borrowed from the cache's memory maps.
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    /// Image id.
    pub id: &'a str,
    /// Grid height.
    pub h: usize,
    /// Grid width.
    pub w: usize,
    /// Feature dimension.
    pub dim: usize,
    /// `h × w × dim` patch values, row-major over the grid.
    pub patches: F16View<'a>,
    /// The CLS token, when the cache stores it.
    pub cls: Option<F16View<'a>>,
}

impl Features<'_> {
    /// The patch features as `f32`, `[h * w, dim]` row-major.
    pub fn patches_f32(&self) -> Vec<f32> {
        self.patches.to_f32_vec()
    }

    /// The CLS token as `f32`.
    pub fn cls_f32(&self) -> Option<Vec<f32>> {
        self.cls.map(|c| c.to_f32_vec())
    }
}

/// A complete feature cache opened for reading (see the module docs).
#[derive(Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    meta: CacheMeta,
    shards: Vec<ShardMap>,
    records: Vec<Record>,
    by_id: HashMap<String, usize>,
    rows: u64,
    verify: bool,
    summary: Option<CacheSummary>,
}

impl FeatureCache {
    /// Opens the cache in `dir`; every shard must be complete.
    pub fn open(dir: &Path) -> Result<FeatureCache> {
        FeatureCache::open_with(dir, &OpenOptions::default())
    }

    /// Opens the cache in `dir`, checking `cache.json` against `opts.expect`
    /// and every shard against its completion marker and header.
    pub fn open_with(dir: &Path, opts: &OpenOptions) -> Result<FeatureCache> {
        let meta = CacheMeta::read(dir)?;
        meta.check(&CacheMeta::path(dir), &opts.expect)?;
        let mut shards = Vec::with_capacity(meta.shards);
        let mut records: Vec<Record> = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut total_rows = 0;
        for i in 0..meta.shards {
            let shard = Shard { index: i, count: meta.shards };
            let done_path = shard.done_path(dir);
            if !done_path.exists() {
                return Err(Error::Mismatch(format!(
                    "shard {shard} of {} is not complete: no {}; run it (--shard {shard}) to finish it",
                    dir.display(),
                    done_path.display()
                )));
            }
            let done: ShardDone = read_json(&done_path, "a shard completion marker")?;
            let index_path = shard.index_path(dir);
            let bytes = std::fs::read(&index_path).map_err(|e| Error::Io { path: index_path.clone(), source: e })?;
            if bytes.len() as u64 != done.index_bytes {
                return Err(Error::Format {
                    path: index_path,
                    location: "length".into(),
                    message: format!(
                        "{} bytes, but {} says {}: the index was truncated or changed after the shard was completed",
                        bytes.len(),
                        done_path.display(),
                        done.index_bytes
                    ),
                });
            }
            let parsed = parse_index(&bytes, &index_path, &meta)?;
            if parsed.tail != 0 {
                return Err(Error::Format {
                    path: index_path,
                    location: format!("line {}", parsed.lines.len() + 1),
                    message: "incomplete last line: the shard was interrupted; run it again to finish it".into(),
                });
            }
            let rows = parsed.lines.last().map_or(0, |l| l.row + meta.record_rows(l.h, l.w));
            if parsed.lines.len() != done.images || rows != done.rows {
                return Err(Error::Format {
                    path: index_path,
                    location: "records".into(),
                    message: format!(
                        "{} images in {rows} rows, but {} says {} images in {} rows",
                        parsed.lines.len(),
                        done_path.display(),
                        done.images,
                        done.rows
                    ),
                });
            }
            let data_path = shard.data_path(dir);
            let file = File::open(&data_path).map_err(|e| Error::Io { path: data_path.clone(), source: e })?;
            let len = file.metadata().map_err(|e| Error::Io { path: data_path.clone(), source: e })?.len();
            let want = HEADER_BYTES + rows * meta.row_bytes();
            if len != want || len != done.data_bytes {
                return Err(Error::Format {
                    path: data_path,
                    location: "length".into(),
                    message: format!(
                        "{len} bytes; expected {want} ({HEADER_BYTES} header bytes + {rows} rows x {} values x 2 bytes){}",
                        meta.dim,
                        if len < want { ": the shard is truncated" } else { "" }
                    ),
                });
            }
            // SAFETY: the map is read-only; the module documents that the
            // files of an open cache must not be modified.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::Io { path: data_path.clone(), source: e })?;
            check_header(&map, &data_path, &meta, shard, rows)?;
            for l in parsed.lines {
                if let Some(&other) = by_id.get(&l.id) {
                    let o = &records[other];
                    return Err(Error::Format {
                        path: index_path.clone(),
                        location: format!("id {:?}", l.id),
                        message: format!(
                            "the image is also in {}; every image belongs to one shard",
                            Shard { index: o.shard, count: meta.shards }.index_path(dir).display()
                        ),
                    });
                }
                by_id.insert(l.id.clone(), records.len());
                records.push(Record { id: l.id, shard: i, row: l.row, h: l.h, w: l.w, crc32: l.crc32 });
            }
            total_rows += rows;
            shards.push(ShardMap { path: data_path, map });
        }
        let summary_path = dir.join("complete.json");
        let summary = if summary_path.exists() { Some(read_json(&summary_path, "a cache summary")?) } else { None };
        Ok(FeatureCache {
            dir: dir.to_path_buf(),
            meta,
            shards,
            records,
            by_id,
            rows: total_rows,
            verify: opts.verify_checksums,
            summary,
        })
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metadata (`cache.json`).
    pub fn meta(&self) -> &CacheMeta {
        &self.meta
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the cache holds no image.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether image `id` is in the cache.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// The `complete.json` summary, when [`finalize`] has run.
    pub fn summary(&self) -> Option<&CacheSummary> {
        self.summary.as_ref()
    }

    /// Image ids in storage order.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.records.iter().map(|r| r.id.as_str())
    }

    /// Where every image is stored, in storage order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The features of image `id`.
    pub fn get(&self, id: &str) -> Result<Features<'_>> {
        match self.by_id.get(id) {
            Some(&i) => self.get_index(i),
            None => Err(Error::Mismatch(format!(
                "image {id:?} is not in the feature cache {} ({} images in {} shards)",
                self.dir.display(),
                self.records.len(),
                self.meta.shards
            ))),
        }
    }

    /// The features of the `i`-th image in storage order.
    pub fn get_index(&self, i: usize) -> Result<Features<'_>> {
        let r = self.records.get(i).ok_or_else(|| {
            Error::Invalid(format!("image position {i}: the cache holds {} images", self.records.len()))
        })?;
        let bytes = self.record_bytes(r);
        if self.verify {
            self.check_crc(r, bytes)?;
        }
        let cls_bytes = if self.meta.cls { self.meta.dim * 2 } else { 0 };
        let (cls, patches) = bytes.split_at(cls_bytes);
        Ok(Features {
            id: &r.id,
            h: r.h,
            w: r.w,
            dim: self.meta.dim,
            patches: F16View { bytes: patches },
            cls: self.meta.cls.then_some(F16View { bytes: cls }),
        })
    }

    /// All images in storage order (sequential reads of each shard).
    pub fn iter(&self) -> impl Iterator<Item = Result<Features<'_>>> + '_ {
        (0..self.records.len()).map(|i| self.get_index(i))
    }

    fn record_bytes(&self, r: &Record) -> &[u8] {
        let rb = self.meta.row_bytes();
        let start = (HEADER_BYTES + r.row * rb) as usize;
        let end = start + (self.meta.record_rows(r.h, r.w) * rb) as usize;
        // In bounds: open checked the file length against the index.
        &self.shards[r.shard].map[start..end]
    }

    fn check_crc(&self, r: &Record, bytes: &[u8]) -> Result<()> {
        let got = crc32(bytes);
        if got != r.crc32 {
            let rows = self.meta.record_rows(r.h, r.w);
            return Err(Error::Format {
                path: self.shards[r.shard].path.clone(),
                location: format!("image {:?} (rows {}..{})", r.id, r.row, r.row + rows),
                message: format!(
                    "checksum mismatch: the index says crc32 {:#010x}, the data has {got:#010x}; the shard is damaged",
                    r.crc32
                ),
            });
        }
        Ok(())
    }

    /// Verifies every record's checksum (in parallel); the error names the
    /// first damaged image's shard file and lists the damaged ids.
    pub fn verify(&self) -> Result<()> {
        let bad: Vec<usize> = (0..self.records.len())
            .into_par_iter()
            .filter(|&i| {
                let r = &self.records[i];
                crc32(self.record_bytes(r)) != r.crc32
            })
            .collect();
        if let Some(&first) = bad.first() {
            let r = &self.records[first];
            let e = self.check_crc(r, self.record_bytes(r));
            let detail = e.err().map(|e| e.to_string()).unwrap_or_default();
            return Err(Error::Mismatch(format!(
                "{} of {} images have damaged features: {}; first: {detail}",
                bad.len(),
                self.records.len(),
                list_some(bad.iter().map(|&i| self.records[i].id.as_str()), bad.len())
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_to_f32_is_exact_for_every_half() {
        for h in 0..=u16::MAX {
            let (got, want) = (half_to_f32(h), labelscope_core::npy::f16_to_f32(h));
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{h:#06x}: {got} vs {want}");
        }
        // By hand: 1.0, -2.5, 65504, smallest subnormal 2^-24, -0.0, +inf.
        assert_eq!(half_to_f32(0x3C00), 1.0);
        assert_eq!(half_to_f32(0xC100), -2.5);
        assert_eq!(half_to_f32(0x7BFF), 65504.0);
        assert_eq!(half_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(half_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(half_to_f32(0x7C00), f32::INFINITY);
    }

    #[test]
    fn crc32_check_value() {
        // The CRC-32 check value of the ASCII digits "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn header_region_is_fixed_size() {
        let spec =
            CacheSpec { backbone: "b".into(), recipe: "r".into(), tokens: TokenKind::Patch, dim: 384, cls: true };
        let meta = CacheMeta::new(&spec, 4);
        let h = header_region(&meta, Shard { index: 3, count: 4 }, 123_456_789_012, 1_000_000, true).unwrap();
        assert_eq!(h.len() as u64, HEADER_BYTES);
        assert_eq!(&h[..8], &4088u64.to_le_bytes());
        assert_eq!(h[8], b'{');
    }

    #[test]
    fn shard_parse_and_select() {
        assert_eq!(Shard::parse("3/16").unwrap().stem(), "shard-00003-of-00016");
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let ids = ["e", "a", "d", "b", "c"];
        // Sorted: a b c d e; positions mod 2 = 1 are b, d.
        assert_eq!(Shard::parse("1/2").unwrap().select(&ids).unwrap(), ["b", "d"]);
        assert_eq!(Shard::parse("0/2").unwrap().select(&ids).unwrap(), ["a", "c", "e"]);
        assert!(Shard::ALL.select(&["a", "a"]).is_err());
    }
}
