//! The conversion pipeline (`.pth` checkpoint to `.safetensors`) and the
//! verification of existing files.
//!
//! A converted file's `__metadata__` holds (all values are strings, as the
//! safetensors format requires):
//!
//! | key | value |
//! |---|---|
//! | `format` | `pt` |
//! | `config` | the [`ArchConfig`] JSON: `{"labelscope_arch": "resnet50", "layers": [3, 4, 6, 3], ...}` |
//! | `labelscope_arch` | the architecture tag alone (`dino_vit`, `dinov2`, `timm_vit`, `resnet50`) |
//! | `labelscope_model` | the registry name (`custom` for a config given by the user) |
//! | `source_file`, `source_sha256` | the checkpoint's file name and SHA-256 |
//! | `state_dict_key` | where the state dict was inside the checkpoint (`teacher`, `model`; empty: the top level) |
//!
//! Model code reads the architecture back with [`read_config`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::pth::{rename, Checkpoint};
use crate::registry::{self, ArchConfig, ChecksumCheck, KeyMapping, ModelSpec, TensorInfo};
use crate::tensor::{DType, Tensor};

/// Options of [`convert`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Where the state dict is in the checkpoint (`"teacher"`, `"model.ema"`);
    /// `None` picks the root or a usual key (see [`crate::pth::find_state_dict`]).
    pub key: Option<String>,
    /// Registry model the tensors must match exactly (names, shapes, float dtypes);
    /// its architecture's [`KeyMapping`] is applied.
    pub model: Option<String>,
    /// A custom architecture instead of a registry model (e.g. another depth).
    pub config: Option<ArchConfig>,
    /// Name prefixes to strip, in addition to the architecture's.
    pub strip_prefixes: Vec<String>,
    /// Tensors whose name (after stripping) starts with one of these are left
    /// out, in addition to the architecture's.
    pub drop_prefixes: Vec<String>,
    /// Convert floating-point tensors to this type (F16, BF16, F32, F64);
    /// `None` keeps the checkpoint's types.
    pub dtype: Option<DType>,
    /// Accept a checkpoint whose SHA-256 differs from the registry's (a
    /// fine-tuned or re-saved file of the same architecture).
    pub allow_unofficial: bool,
}

/// What [`convert`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertReport {
    /// Registry name (`custom` for a user config, empty without a model).
    pub model: String,
    /// Tensors written.
    pub tensors: usize,
    /// Tensor data bytes written.
    pub bytes: u64,
    /// Size of the output file.
    pub file_bytes: u64,
    /// Elements over all tensors.
    pub parameters: u64,
    /// Key path of the state dict inside the checkpoint (`""`: the root).
    pub state_dict_key: String,
    /// Original names of the tensors left out by the key mapping.
    pub dropped: Vec<String>,
    /// Tensors whose type was converted.
    pub converted_dtype: usize,
    /// The metadata written.
    pub metadata: BTreeMap<String, String>,
    /// SHA-256 (hex) of the input checkpoint.
    pub source_sha256: String,
    /// The input's checksum against the registry.
    pub checksum: ChecksumCheck,
}

/// SHA-256 (hex) of a whole file, read in 1 MiB blocks.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut s = crate::sha256::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        s.update(&buf[..n]);
    }
    Ok(s.hex())
}

/// The model a check is made against: a registry entry or a user config.
struct Target {
    name: String,
    spec: Option<&'static ModelSpec>,
    config: ArchConfig,
}

fn target(model: Option<&str>, config: Option<&ArchConfig>) -> Result<Option<Target>> {
    match (model, config) {
        (Some(_), Some(_)) => Err(Error::Invalid("give a registry model or an architecture config, not both".into())),
        (Some(m), None) => {
            let spec = registry::model(m)?;
            Ok(Some(Target { name: spec.name.clone(), spec: Some(spec), config: spec.config.clone() }))
        }
        (None, Some(c)) => {
            c.validate().map_err(|m| Error::Invalid(format!("architecture config: {m}")))?;
            Ok(Some(Target { name: "custom".into(), spec: None, config: c.clone() }))
        }
        (None, None) => Ok(None),
    }
}

fn infos(tensors: &BTreeMap<String, Tensor>) -> BTreeMap<String, TensorInfo> {
    tensors.iter().map(|(n, t)| (n.clone(), TensorInfo { dtype: t.dtype, shape: t.shape.clone() })).collect()
}

/// Checks tensors against the target; the error names the file, the first
/// problem, and registry models the tensors do match.
fn check(path: &Path, t: &Target, infos: &BTreeMap<String, TensorInfo>) -> Result<()> {
    t.config.check(infos).map_err(|message| {
        let others: Vec<&str> = registry::matching_models(infos).into_iter().filter(|m| *m != t.name).collect();
        let message = if others.is_empty() {
            message
        } else {
            format!(
                "{message} (the tensors match registry model(s) {}: weights of another architecture?)",
                others.join(", ")
            )
        };
        Error::Model { path: path.to_path_buf(), model: t.name.clone(), message }
    })
}

fn checksum(path: &Path, t: &Target, sha: &str, allow_unofficial: bool, what: &str) -> Result<ChecksumCheck> {
    let Some(spec) = t.spec else { return Ok(ChecksumCheck::Unknown) };
    let c = spec.check_sha256(sha);
    if let ChecksumCheck::Mismatch { expected } = &c {
        if !allow_unofficial {
            return Err(Error::Checksum {
                path: path.to_path_buf(),
                model: spec.name.clone(),
                message: format!(
                    "SHA-256 {what}{sha} does not match the published {expected} of {} ({}): a damaged \
                     download or another checkpoint; allow it explicitly (--allow-unofficial) for fine-tuned \
                     weights of this architecture",
                    spec.name, spec.official_file
                ),
            });
        }
    }
    Ok(c)
}

/// Converts the PyTorch checkpoint `input` into the safetensors file `output`
/// (written atomically; nothing is written when a check fails). With a model,
/// its key mapping is applied and the tensors must match its names, shapes
/// and float dtypes; the input's SHA-256 must match the published one where
/// the registry has it (unless `allow_unofficial`). The output is read back
/// and compared with what was written.
pub fn convert(input: &Path, output: &Path, opts: &ConvertOptions) -> Result<ConvertReport> {
    let target = target(opts.model.as_deref(), opts.config.as_ref())?;
    if let Some(d) = opts.dtype {
        if !d.is_float() {
            return Err(Error::Invalid(format!("dtype {d}: only floating-point types can be targets")));
        }
    }
    if output.exists() && same_file(input, output) {
        return Err(Error::Invalid(format!("{}: the output would overwrite the input", output.display())));
    }
    let mut mapping = target.as_ref().map(|t| t.config.key_mapping()).unwrap_or_default();
    mapping.strip_prefixes.extend(opts.strip_prefixes.iter().cloned());
    mapping.drop_prefixes.extend(opts.drop_prefixes.iter().cloned());
    let (key_path, tensors, dropped) = load_mapped(input, opts.key.as_deref(), &mapping)?;
    let mut tensors = tensors;
    let mut converted_dtype = 0;
    if let Some(want) = opts.dtype {
        for t in tensors.values_mut() {
            if t.dtype.is_float() && t.dtype != want {
                *t = t.to_dtype(want);
                converted_dtype += 1;
            }
        }
    }
    if let Some(t) = &target {
        check(input, t, &infos(&tensors))?;
    }
    let source_sha256 = file_sha256(input)?;
    let checksum = match &target {
        Some(t) => checksum(input, t, &source_sha256, opts.allow_unofficial, "")?,
        None => ChecksumCheck::Unknown,
    };
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    if let Some(t) = &target {
        metadata.insert("config".into(), t.config.to_json());
        metadata.insert("labelscope_arch".into(), t.config.arch_name().into());
        metadata.insert("labelscope_model".into(), t.name.clone());
    }
    let source = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    metadata.insert("source_file".into(), source);
    metadata.insert("source_sha256".into(), source_sha256.clone());
    metadata.insert("state_dict_key".into(), key_path.clone());
    let file_bytes = crate::safetensors::write(output, &tensors, &metadata)?;
    if let Err(e) = read_back(output, &tensors) {
        let _ = std::fs::remove_file(output);
        return Err(e);
    }
    Ok(ConvertReport {
        model: target.map(|t| t.name).unwrap_or_default(),
        tensors: tensors.len(),
        bytes: tensors.values().map(|t| t.data.len() as u64).sum(),
        file_bytes,
        parameters: tensors.values().map(|t| t.numel() as u64).sum(),
        state_dict_key: key_path,
        dropped,
        converted_dtype,
        metadata,
        source_sha256,
        checksum,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Opens a checkpoint, picks its state dict and applies `mapping`.
/// Returns the key path, the tensors and the dropped names.
pub fn load_mapped(
    input: &Path,
    key: Option<&str>,
    mapping: &KeyMapping,
) -> Result<(String, BTreeMap<String, Tensor>, Vec<String>)> {
    let mut ckpt = Checkpoint::open(input)?;
    let (key_path, tensors) = ckpt.state_dict(key)?;
    drop(ckpt);
    let (tensors, dropped) = rename(tensors, mapping, input)?;
    if tensors.is_empty() {
        return Err(Error::format(input, "state dict", format!("every tensor was dropped by {mapping:?}")));
    }
    Ok((key_path, tensors, dropped))
}

/// Reads `path` back (memory-mapped when large) and compares it with `tensors`.
fn read_back(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let st = labelscope_core::npy::SafeTensors::open(path)?;
    let names = st.names();
    if names.len() != tensors.len() {
        return Err(Error::format(
            path,
            "header",
            format!("{} tensors read back, {} written", names.len(), tensors.len()),
        ));
    }
    for (name, (want_name, t)) in names.iter().zip(tensors) {
        let a = st.read(name)?;
        if name != want_name || a.shape != t.shape || a.raw_bytes() != t.data.as_slice() {
            return Err(Error::format(
                path,
                format!("tensor {name:?}"),
                "the file read back differs from what was written",
            ));
        }
    }
    Ok(())
}

/// The architecture stored in a converted file's metadata (`None` when the
/// file has no `config`, e.g. it was converted without a model).
pub fn read_config(path: &Path) -> Result<Option<ArchConfig>> {
    let md = crate::safetensors::read_metadata(path)?;
    match md.get("config") {
        None => Ok(None),
        Some(json) => ArchConfig::from_json(json, &format!("{}: __metadata__ \"config\"", path.display())).map(Some),
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// The model checked against.
    pub model: String,
    /// `true` for a `.safetensors` file, `false` for a PyTorch checkpoint.
    pub safetensors: bool,
    /// Tensors in the file (after the key mapping for a checkpoint).
    pub tensors: usize,
    /// Trained parameters of the architecture (buffers not counted).
    pub parameters: u64,
    /// Tensors per dtype.
    pub dtypes: BTreeMap<String, usize>,
    /// SHA-256 of the source checkpoint (recorded in a converted file's
    /// metadata, or computed for a checkpoint).
    pub source_sha256: Option<String>,
    /// The source's checksum against the registry.
    pub checksum: ChecksumCheck,
}

/// Verifies an existing file against a model: a `.safetensors` file (names,
/// shapes and float dtypes; its recorded config must be the model's; the
/// source SHA-256 in its metadata against the registry) or a PyTorch
/// checkpoint (the same checks after the key mapping, and the file's own
/// SHA-256). Without `model` or `config`, the model named in the file's
/// metadata is used.
pub fn verify(
    path: &Path,
    model: Option<&str>,
    config: Option<&ArchConfig>,
    allow_unofficial: bool,
) -> Result<VerifyReport> {
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut magic)).map_err(|e| Error::io(path, e))?;
    let is_ckpt = (n == 4 && &magic == b"PK\x03\x04") || (n >= 2 && magic[0] == 0x80 && magic[1] <= 5);
    let (target, infos, source_sha256) = if is_ckpt {
        let target = target(model, config)?.ok_or_else(|| {
            Error::Invalid(format!("{}: a PyTorch checkpoint has no recorded model; name one", path.display()))
        })?;
        let (_, tensors, _) = load_mapped(path, None, &target.config.key_mapping())?;
        (target, infos(&tensors), Some(file_sha256(path)?))
    } else {
        let st = labelscope_core::npy::SafeTensors::open(path)?;
        let md = crate::safetensors::read_metadata(path)?;
        let recorded = read_config(path)?;
        let target = match target(model, config)? {
            Some(t) => t,
            None => match md.get("labelscope_model").map(String::as_str) {
                Some(m) if m != "custom" => target(Some(m), None)?.ok_or_else(|| Error::Invalid(String::new()))?,
                _ => match &recorded {
                    Some(c) => target(None, Some(c))?.ok_or_else(|| Error::Invalid(String::new()))?,
                    None => {
                        return Err(Error::Invalid(format!(
                            "{}: the file records no model or config; name the model",
                            path.display()
                        )))
                    }
                },
            },
        };
        let mut infos = BTreeMap::new();
        for name in st.names() {
            let a = st.read(&name)?;
            let dtype = crate::safetensors::dtype_from_core(a.dtype).ok_or_else(|| {
                Error::format(path, format!("tensor {name:?}"), format!("unsupported dtype {:?}", a.dtype))
            })?;
            infos.insert(name, TensorInfo { dtype, shape: a.shape.clone() });
        }
        // The tensors first (the error names the first bad one), then the recorded architecture.
        check(path, &target, &infos)?;
        if let Some(c) = &recorded {
            if *c != target.config {
                return Err(Error::Model {
                    path: path.to_path_buf(),
                    model: target.name.clone(),
                    message: format!(
                        "the tensors fit, but the metadata records the architecture {}, expected {}",
                        c.to_json(),
                        target.config.to_json()
                    ),
                });
            }
        }
        (target, infos, md.get("source_sha256").cloned())
    };
    check(path, &target, &infos)?;
    let checksum = match &source_sha256 {
        Some(sha) => {
            let what = if is_ckpt { "" } else { "(of the source checkpoint, from the metadata) " };
            checksum(path, &target, sha, allow_unofficial, what)?
        }
        None => ChecksumCheck::Unknown,
    };
    let mut dtypes = BTreeMap::new();
    for i in infos.values() {
        *dtypes.entry(i.dtype.to_string()).or_insert(0) += 1;
    }
    Ok(VerifyReport {
        model: target.name.clone(),
        safetensors: !is_ckpt,
        tensors: infos.len(),
        parameters: target.config.parameter_count(),
        dtypes,
        source_sha256,
        checksum,
    })
}
