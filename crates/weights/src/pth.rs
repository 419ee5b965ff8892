//! PyTorch checkpoints written by `torch.save`.
//!
//! * Zip format (PyTorch >= 1.6, the default): the archive holds
//!   `<prefix>/data.pkl` (the pickled object tree), `<prefix>/data/<key>` (one
//!   raw storage per key), `<prefix>/byteorder` (`little` or `big`; absent
//!   means little) and `<prefix>/version`. The prefix is any name.
//! * Legacy format (`_use_new_zipfile_serialization=False`, PyTorch < 1.6):
//!   five pickles in a row (the magic number `0x1950a86a20f9469cfc6c`, the
//!   protocol version 1001, a system-info dict, the object tree, the sorted list
//!   of storage keys), then for each key an int64 element count and the raw
//!   little-endian storage bytes.
//!
//! The pickles are decoded by [`crate::pickle`], which never runs code;
//! tensors are then copied out of their storages into C order.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::pickle::{unpickle, unpickle_prefix, TensorRef, Value};
use crate::registry::KeyMapping;
use crate::tensor::{c_strides, Tensor};

/// Keys under which training scripts commonly nest the state dict, tried in order.
pub const STATE_DICT_KEYS: &[&str] =
    &["state_dict", "model_state_dict", "model", "teacher", "model_ema", "module", "net", "network", "params"];

/// Most nesting levels followed when looking for or flattening a state dict.
const MAX_DEPTH: usize = 32;

/// Where the storages of a checkpoint are.
enum Storages {
    /// Zip members `<prefix>data/<key>`.
    Zip { archive: zip::ZipArchive<File>, big_endian: bool },
    /// The legacy file's bytes and, per key, the byte range of its data.
    Legacy { bytes: Vec<u8>, ranges: HashMap<String, (usize, usize)> },
}

/// A `torch.save` checkpoint: the decoded object tree plus access to its storages.
pub struct Checkpoint {
    path: PathBuf,
    storages: Storages,
    prefix: String,
    root: Value,
}

/// The magic number that starts a legacy checkpoint, as little-endian bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("path", &self.path).field("prefix", &self.prefix).finish()
    }
}

fn zip_err(path: &Path, location: &str, e: zip::result::ZipError) -> Error {
    match e {
        zip::result::ZipError::Io(io) => Error::format(path, location, format!("cannot read: {io}")),
        other => Error::format(path, location, other.to_string()),
    }
}

impl Checkpoint {
    /// Opens `path` and decodes its `data.pkl`.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
        if n >= 2 && magic[0] == 0x80 && magic[1] <= 5 {
            drop(file);
            return Self::open_legacy(path);
        }
        if n < 4 || &magic != b"PK\x03\x04" {
            return Err(Error::format(
                path,
                "start of file",
                "not a PyTorch checkpoint: expected a zip archive (torch.save) or a pickle (legacy torch.save)",
            ));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| zip_err(path, "zip directory", e))?;
        let pkl = archive
            .file_names()
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .map(str::to_string)
            .min()
            .ok_or_else(|| {
                Error::format(path, "zip directory", "no <name>/data.pkl member: not a torch.save archive")
            })?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        let pickle = read_member(&mut archive, path, &pkl)?;
        let big_endian = match archive.index_for_name(&format!("{prefix}byteorder")) {
            Some(_) => {
                let b = read_member(&mut archive, path, &format!("{prefix}byteorder"))?;
                match std::str::from_utf8(&b).map(str::trim) {
                    Ok("little") => false,
                    Ok("big") => true,
                    _ => {
                        return Err(Error::format(
                            path,
                            format!("zip member {prefix}byteorder"),
                            "expected \"little\" or \"big\"",
                        ))
                    }
                }
            }
            None => false,
        };
        let root = unpickle(&pickle, path)?;
        Ok(Checkpoint { path: path.to_path_buf(), storages: Storages::Zip { archive, big_endian }, prefix, root })
    }

    /// Opens a legacy (pre-1.6, `_use_new_zipfile_serialization=False`) checkpoint.
    fn open_legacy(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (magic, mut pos) = unpickle_prefix(&bytes, path, 0)?;
        let ok = match &magic {
            Value::BigInt(b) => b.as_slice() == LEGACY_MAGIC,
            _ => false,
        };
        if !ok {
            return Err(Error::format(
                path,
                "start of file",
                "a pickle, but not a PyTorch checkpoint (no torch.save magic number); plain pickles are not read",
            ));
        }
        let next = |what: &str, pos: &mut usize| -> Result<Value> {
            if *pos >= bytes.len() {
                return Err(Error::format(path, format!("byte {pos}"), format!("the file ends before the {what}")));
            }
            let (v, n) = unpickle_prefix(&bytes[*pos..], path, *pos)?;
            *pos += n;
            Ok(v)
        };
        match next("protocol version", &mut pos)? {
            Value::Int(1001) => {}
            other => {
                return Err(Error::format(
                    path,
                    "legacy header",
                    format!("protocol version is {other:?}, expected 1001"),
                ))
            }
        }
        let info = next("system info", &mut pos)?;
        if matches!(info.get("little_endian"), Some(Value::Bool(false))) {
            return Err(Error::format(path, "legacy header", "big-endian legacy checkpoints are not supported"));
        }
        let root = next("object tree", &mut pos)?;
        let keys = match next("storage key list", &mut pos)? {
            Value::List(k) => k,
            other => {
                return Err(Error::format(
                    path,
                    format!("byte {pos}"),
                    format!("the storage key list is a {}, expected a list", other.type_name()),
                ))
            }
        };
        let mut dtypes: HashMap<String, crate::tensor::DType> = HashMap::new();
        collect_storages(&root, 0, &mut dtypes);
        let mut ranges = HashMap::new();
        for k in keys {
            let Value::Str(k) = k else {
                return Err(Error::format(path, "storage key list", "a storage key is not a string"));
            };
            let dtype = *dtypes.get(&k).ok_or_else(|| {
                Error::format(path, format!("storage {k:?}"), "the storage is listed but no tensor refers to it")
            })?;
            let loc = format!("storage {k:?} at byte {pos}");
            let head = bytes.get(pos..pos + 8).ok_or_else(|| {
                Error::format(path, loc.as_str(), format!("the file ends early: it is {} bytes long", bytes.len()))
            })?;
            let mut a = [0u8; 8];
            a.copy_from_slice(head);
            let numel = usize::try_from(i64::from_le_bytes(a))
                .map_err(|_| Error::format(path, loc.as_str(), "negative element count"))?;
            let len = numel.checked_mul(dtype.itemsize()).filter(|&l| l <= bytes.len() - pos - 8).ok_or_else(|| {
                Error::format(
                    path,
                    loc.as_str(),
                    format!(
                        "{numel} elements of {dtype} do not fit in the {} bytes left: the file is truncated",
                        bytes.len() - pos - 8
                    ),
                )
            })?;
            ranges.insert(k, (pos + 8, pos + 8 + len));
            pos += 8 + len;
        }
        if pos != bytes.len() {
            return Err(Error::format(
                path,
                format!("byte {pos}"),
                format!("{} bytes follow the last storage", bytes.len() - pos),
            ));
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            storages: Storages::Legacy { bytes, ranges },
            prefix: String::new(),
            root,
        })
    }

    /// `true` for a legacy (non-zip) checkpoint.
    pub fn is_legacy(&self) -> bool {
        matches!(self.storages, Storages::Legacy { .. })
    }

    /// The decoded object tree.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// The archive prefix (the folder name inside the zip, with its `/`; empty for legacy files).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Reads the state dict chosen by [`find_state_dict`] and copies every
    /// tensor out into C order. Returns the key path used (`""` for the root)
    /// and the tensors by (flattened) name; non-tensor entries are skipped.
    pub fn state_dict(&mut self, key: Option<&str>) -> Result<(String, BTreeMap<String, Tensor>)> {
        let (key_path, dict) =
            find_state_dict(&self.root, key).map_err(|m| Error::format(&self.path, "data.pkl", m))?;
        let mut refs = Vec::new();
        flatten(dict, "", 0, &mut refs).map_err(|m| Error::format(&self.path, "data.pkl", m))?;
        if refs.is_empty() {
            let loc = if key_path.is_empty() { "the top level".to_string() } else { format!("{key_path:?}") };
            return Err(Error::format(&self.path, "data.pkl", format!("no tensors found in {loc}")));
        }
        // Each storage is read once and freed after its last tensor, so that the
        // peak memory is the tensors plus the largest storage, not twice the model.
        let mut uses: HashMap<String, usize> = HashMap::new();
        for (_, t) in &refs {
            *uses.entry(t.storage.key.clone()).or_default() += 1;
        }
        let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
        let mut out = BTreeMap::new();
        for (name, t) in refs {
            if !storages.contains_key(&t.storage.key) {
                let bytes = self.storage_bytes(&t)?;
                storages.insert(t.storage.key.clone(), bytes);
            }
            let storage = storages.get(&t.storage.key).map(Vec::as_slice).unwrap_or(&[]);
            let tensor =
                materialize(&t, storage).map_err(|m| Error::format(&self.path, format!("tensor {name:?}"), m))?;
            if let Some(n) = uses.get_mut(&t.storage.key) {
                *n -= 1;
                if *n == 0 {
                    storages.remove(&t.storage.key);
                }
            }
            if out.insert(name.clone(), tensor).is_some() {
                return Err(Error::format(&self.path, "data.pkl", format!("two tensors are named {name:?}")));
            }
        }
        Ok((key_path, out))
    }

    fn storage_bytes(&mut self, t: &TensorRef) -> Result<Vec<u8>> {
        let item = t.storage.dtype.itemsize();
        let (member, mut bytes, big_endian) = match &mut self.storages {
            Storages::Zip { archive, big_endian } => {
                let member = format!("{}data/{}", self.prefix, t.storage.key);
                let bytes = read_member(archive, &self.path, &member)?;
                (format!("zip member {member}"), bytes, *big_endian)
            }
            Storages::Legacy { bytes, ranges } => {
                let (a, b) = *ranges.get(&t.storage.key).ok_or_else(|| {
                    Error::format(&self.path, format!("storage {:?}", t.storage.key), "not in the storage key list")
                })?;
                (format!("storage {:?}", t.storage.key), bytes[a..b].to_vec(), false)
            }
        };
        let need = t
            .storage
            .numel
            .checked_mul(item)
            .ok_or_else(|| Error::format(&self.path, member.as_str(), "storage size overflows".to_string()))?;
        if bytes.len() < need {
            return Err(Error::format(
                &self.path,
                member.as_str(),
                format!(
                    "the storage holds {} bytes, but {} elements of {} need {need}",
                    bytes.len(),
                    t.storage.numel,
                    t.storage.dtype
                ),
            ));
        }
        bytes.truncate(need);
        if big_endian && item > 1 {
            for c in bytes.chunks_exact_mut(item) {
                c.reverse();
            }
        }
        Ok(bytes)
    }
}

/// Records the dtype of every storage referenced in `v`.
fn collect_storages(v: &Value, depth: usize, out: &mut HashMap<String, crate::tensor::DType>) {
    if depth > 600 {
        return;
    }
    match v {
        Value::Storage(s) => {
            out.insert(s.key.clone(), s.dtype);
        }
        Value::Tensor(t) => {
            out.insert(t.storage.key.clone(), t.storage.dtype);
        }
        Value::Tuple(items) | Value::List(items) => items.iter().for_each(|i| collect_storages(i, depth + 1, out)),
        Value::Dict(items) => items.iter().for_each(|(_, i)| collect_storages(i, depth + 1, out)),
        _ => {}
    }
}

/// Reads a whole zip member.
fn read_member(archive: &mut zip::ZipArchive<File>, path: &Path, name: &str) -> Result<Vec<u8>> {
    let loc = format!("zip member {name}");
    let mut f = archive.by_name(name).map_err(|e| zip_err(path, &loc, e))?;
    // The size field is not trusted for the allocation: read_to_end grows as data arrives.
    let mut buf = Vec::with_capacity(usize::try_from(f.size().min(1 << 26)).unwrap_or(0));
    f.read_to_end(&mut buf).map_err(|e| Error::format(path, loc.as_str(), format!("cannot read: {e}")))?;
    Ok(buf)
}

/// Picks the state dict inside a checkpoint's object tree.
///
/// With `key`, follows it (dot-separated for several levels, e.g.
/// `"model.ema"`, though an exact key containing dots is tried first).
/// Without, uses the root if it holds tensors directly, otherwise the first
/// of [`STATE_DICT_KEYS`] present, repeatedly. Returns the key path taken and
/// the dict; the error message lists the keys that exist.
pub fn find_state_dict<'v>(root: &'v Value, key: Option<&str>) -> std::result::Result<(String, &'v Value), String> {
    let keys_of = |v: &Value| -> String {
        match v {
            Value::Dict(items) => items
                .iter()
                .map(|(k, _)| match k {
                    Value::Str(s) => format!("{s:?}"),
                    other => format!("<{}>", other.type_name()),
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => String::new(),
        }
    };
    if !matches!(root, Value::Dict(_)) {
        return Err(format!("the checkpoint holds a {}, expected a dict of tensors", root.type_name()));
    }
    if let Some(key) = key {
        if let Some(v) = root.get(key) {
            return check_dict(key, v).map(|v| (key.to_string(), v));
        }
        let mut cur = root;
        for part in key.split('.') {
            cur = cur
                .get(part)
                .ok_or_else(|| format!("no key {part:?} (of {key:?}) in the checkpoint; it has: {}", keys_of(cur)))?;
        }
        return check_dict(key, cur).map(|v| (key.to_string(), v));
    }
    let mut cur = root;
    let mut path: Vec<&str> = Vec::new();
    for _ in 0..MAX_DEPTH {
        let Value::Dict(items) = cur else { break };
        if items.iter().any(|(_, v)| matches!(v, Value::Tensor(_))) {
            break;
        }
        match STATE_DICT_KEYS.iter().find(|k| matches!(cur.get(k), Some(Value::Dict(_)))) {
            Some(k) => {
                path.push(k);
                cur = cur.get(k).unwrap_or(cur);
            }
            None => {
                if path.is_empty() && items.iter().all(|(_, v)| !matches!(v, Value::Dict(_))) {
                    return Err(format!("no tensors and no state dict in the checkpoint; it has: {}", keys_of(cur)));
                }
                break;
            }
        }
    }
    Ok((path.join("."), cur))
}

fn check_dict<'v>(key: &str, v: &'v Value) -> std::result::Result<&'v Value, String> {
    match v {
        Value::Dict(_) => Ok(v),
        other => Err(format!("{key:?} holds a {}, expected a dict of tensors", other.type_name())),
    }
}

/// Collects the tensors of a (possibly nested) dict; nested names are joined with `.`.
fn flatten(
    v: &Value,
    prefix: &str,
    depth: usize,
    out: &mut Vec<(String, TensorRef)>,
) -> std::result::Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("dicts nested more than {MAX_DEPTH} levels deep at {prefix:?}"));
    }
    let Value::Dict(items) = v else { return Ok(()) };
    for (k, v) in items {
        let k = match k {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => continue,
        };
        let name = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
        match v {
            Value::Tensor(t) => out.push((name, t.clone())),
            Value::Dict(_) => flatten(v, &name, depth + 1, out)?,
            _ => {}
        }
    }
    Ok(())
}

/// Copies the view `t` of `storage` (already little endian) into C order.
fn materialize(t: &TensorRef, storage: &[u8]) -> std::result::Result<Tensor, String> {
    let item = t.storage.dtype.itemsize();
    let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("the shape overflows")?;
    let out_len = numel.checked_mul(item).ok_or("the shape overflows")?;
    let mut data = Vec::new();
    if numel > 0 {
        let last = t
            .shape
            .iter()
            .zip(&t.strides)
            .try_fold(t.offset, |a, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| a.checked_add(x)))
            .ok_or("the strides overflow")?;
        if last >= t.storage.numel {
            return Err(format!(
                "shape {:?}, strides {:?} and offset {} reach element {last}, but the storage {:?} has {}",
                t.shape, t.strides, t.offset, t.storage.key, t.storage.numel
            ));
        }
        data.reserve_exact(out_len);
        if t.strides == c_strides(&t.shape) {
            let b = t.offset * item;
            data.extend_from_slice(&storage[b..b + out_len]);
        } else {
            let nd = t.shape.len();
            let mut idx = vec![0usize; nd];
            for _ in 0..numel {
                let e = t.offset + idx.iter().zip(&t.strides).map(|(i, s)| i * s).sum::<usize>();
                data.extend_from_slice(&storage[e * item..(e + 1) * item]);
                for d in (0..nd).rev() {
                    idx[d] += 1;
                    if idx[d] < t.shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
    }
    Ok(Tensor { dtype: t.storage.dtype, shape: t.shape.clone(), strides: t.strides.clone(), offset: t.offset, data })
}

/// Applies a [`KeyMapping`]: removes any of its prefixes from the start of
/// every name, repeatedly (so `module.backbone.x` with `["module.",
/// "backbone."]` becomes `x`), then drops the tensors whose new name starts
/// with one of its drop prefixes or ends with one of its drop suffixes.
/// Returns the kept tensors and the original names of the dropped ones; two
/// tensors ending up with the same name is an error.
pub fn rename(
    tensors: BTreeMap<String, Tensor>,
    mapping: &KeyMapping,
    path: &Path,
) -> Result<(BTreeMap<String, Tensor>, Vec<String>)> {
    let mut out = BTreeMap::new();
    let mut dropped = Vec::new();
    let prefixes = &mapping.strip_prefixes;
    for (name, t) in tensors {
        let mut n = name.as_str();
        while let Some(p) = prefixes.iter().find(|p| !p.is_empty() && n.starts_with(p.as_str())) {
            n = &n[p.len()..];
        }
        if mapping.drop_prefixes.iter().any(|d| n.starts_with(d.as_str()))
            || mapping.drop_suffixes.iter().any(|d| n.ends_with(d.as_str()))
        {
            dropped.push(name);
            continue;
        }
        if n.is_empty() {
            return Err(Error::format(path, format!("tensor {name:?}"), "the name is empty after prefix stripping"));
        }
        if let Some(old) = out.insert(n.to_string(), t) {
            drop(old);
            return Err(Error::format(
                path,
                format!("tensor {name:?}"),
                format!("after stripping prefixes {prefixes:?} two tensors are named {n:?}"),
            ));
        }
    }
    Ok((out, dropped))
}
