//! Known models: architecture, hyperparameters, the official checkpoint and
//! its checksum, and the expected tensor names and shapes.
//!
//! The registry is the embedded JSON file `models.json`. It holds, per model,
//! only the hyperparameters ([`ArchConfig`]); the full list of tensor names and
//! shapes is generated from them by [`ArchConfig::expected`] (never typed by
//! hand), following the layouts of the reference implementations:
//!
//! * [`ArchConfig::DinoVit`]: facebookresearch/dino `vision_transformer.py`
//!   (`cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.{i}.{norm1,attn.qkv,
//!   attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`), backbone only;
//! * [`ArchConfig::Dinov2`]: facebookresearch/dinov2 `DinoVisionTransformer`
//!   (adds `mask_token`, optional `register_tokens`, `blocks.{i}.ls1.gamma` /
//!   `ls2.gamma` LayerScale, and `mlp.w12` / `mlp.w3` for the SwiGLU FFN of ViT-g);
//! * [`ArchConfig::TimmVit`]: timm `VisionTransformer` / DeiT with a `head`;
//! * [`ArchConfig::Resnet50`]: torchvision `ResNet` with `Bottleneck` blocks
//!   (BatchNorm `running_mean` / `running_var` are buffers, `num_batches_tracked`
//!   is dropped by the conversion).
//!
//! Checksums: torchvision and DeiT publish the first 8 hex digits of the
//! SHA-256 of each file in its name (`resnet50-0676ba61.pth`; `torch.hub`
//! checks them), so those entries carry a `sha256_prefix`. For the DINO,
//! DINOv2 and timm files no checksum is published: `sha256` and
//! `sha256_prefix` are `null` and only the tensor names and shapes are checked.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tensor::DType;

/// The feed-forward block of a ViT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Ffn {
    /// `mlp.fc1` (D → hidden), GELU, `mlp.fc2` (hidden → D).
    #[default]
    Mlp,
    /// DINOv2's fused SwiGLU: `mlp.w12` (D → 2·hidden), SiLU gate, `mlp.w3` (hidden → D).
    Swiglu,
}

fn default_eps_ln() -> f64 {
    1e-6
}

fn default_eps_bn() -> f64 {
    1e-5
}

fn default_width() -> usize {
    64
}

/// Hyperparameters of a Vision Transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Embedding dimension D.
    pub embed_dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Number of attention heads.
    pub num_heads: usize,
    /// Patch size p (square patches).
    pub patch_size: usize,
    /// Training image size; `pos_embed` has `1 + (img_size / p)²` rows.
    pub img_size: usize,
    /// Hidden size of the feed-forward block (for SwiGLU: of each half of `w12`).
    pub mlp_hidden: usize,
    /// The feed-forward block.
    #[serde(default)]
    pub ffn: Ffn,
    /// Register tokens (DINOv2 `_reg` models: 4).
    #[serde(default)]
    pub num_register_tokens: usize,
    /// LayerScale `ls1.gamma` / `ls2.gamma` in every block (DINOv2).
    #[serde(default)]
    pub layerscale: bool,
    /// A `mask_token` of shape `[1, D]` (DINOv2).
    #[serde(default)]
    pub mask_token: bool,
    /// Classes of the `head` linear layer; 0: no head (feature backbones).
    #[serde(default)]
    pub num_classes: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps_ln")]
    pub layer_norm_eps: f64,
}

/// Hyperparameters of a torchvision ResNet with bottleneck blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResnetConfig {
    /// Blocks per stage (`[3, 4, 6, 3]` for ResNet-50).
    pub layers: [usize; 4],
    /// Classes of the `fc` layer.
    pub num_classes: usize,
    /// Width of the first stage's bottleneck (64).
    #[serde(default = "default_width")]
    pub width: usize,
    /// BatchNorm epsilon.
    #[serde(default = "default_eps_bn")]
    pub batch_norm_eps: f64,
}

/// An architecture with its hyperparameters. Serialised with the tag
/// `labelscope_arch` (`{"labelscope_arch": "resnet50", "layers": [3, 4, 6, 3], ...}`);
/// this JSON is what converted files carry in their metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "labelscope_arch", rename_all = "snake_case")]
pub enum ArchConfig {
    /// DINO ViT (facebookresearch/dino), backbone only.
    DinoVit(VitConfig),
    /// DINOv2 ViT (facebookresearch/dinov2), backbone only.
    Dinov2(VitConfig),
    /// timm ViT / DeiT classifier (with `head`).
    TimmVit(VitConfig),
    /// torchvision ResNet-50 (bottleneck ResNet; `layers` generalises it).
    Resnet50(ResnetConfig),
}

/// One expected tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSpec {
    /// Name in the converted file.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// A buffer (BatchNorm running statistics), not a trained parameter.
    pub buffer: bool,
}

/// What a check needs to know of a tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
}

/// How checkpoint names become the names of the converted file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct KeyMapping {
    /// Prefixes removed, repeatedly (`module.` of DataParallel, `backbone.` of DINO training).
    pub strip_prefixes: Vec<String>,
    /// Tensors whose name (after stripping) starts with one of these are left out.
    pub drop_prefixes: Vec<String>,
    /// Tensors whose name ends with one of these are left out.
    pub drop_suffixes: Vec<String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl ArchConfig {
    /// The `labelscope_arch` tag (`dino_vit`, `dinov2`, `timm_vit`, `resnet50`).
    pub fn arch_name(&self) -> &'static str {
        match self {
            ArchConfig::DinoVit(_) => "dino_vit",
            ArchConfig::Dinov2(_) => "dinov2",
            ArchConfig::TimmVit(_) => "timm_vit",
            ArchConfig::Resnet50(_) => "resnet50",
        }
    }

    /// The config as a JSON string (the form stored in converted files).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the JSON form ([`ArchConfig::to_json`]); `what` names the source in errors.
    pub fn from_json(json: &str, what: &str) -> Result<ArchConfig> {
        let c: ArchConfig = serde_json::from_str(json)
            .map_err(|e| Error::Invalid(format!("{what}: not a labelscope architecture config: {e}")))?;
        c.validate().map_err(|m| Error::Invalid(format!("{what}: {m}")))?;
        Ok(c)
    }

    /// Checks that the hyperparameters make sense (positive sizes, image a multiple of the patch).
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            ArchConfig::DinoVit(v) | ArchConfig::Dinov2(v) | ArchConfig::TimmVit(v) => {
                if v.embed_dim == 0 || v.depth == 0 || v.num_heads == 0 || v.patch_size == 0 || v.mlp_hidden == 0 {
                    return Err("embed_dim, depth, num_heads, patch_size and mlp_hidden must be positive".into());
                }
                if !v.embed_dim.is_multiple_of(v.num_heads) {
                    return Err(format!("embed_dim {} is not a multiple of num_heads {}", v.embed_dim, v.num_heads));
                }
                if v.img_size == 0 || !v.img_size.is_multiple_of(v.patch_size) {
                    return Err(format!(
                        "img_size {} is not a positive multiple of patch_size {}",
                        v.img_size, v.patch_size
                    ));
                }
                Ok(())
            }
            ArchConfig::Resnet50(r) => {
                if r.layers.contains(&0) || r.width == 0 || r.num_classes == 0 {
                    return Err("layers, width and num_classes must be positive".into());
                }
                Ok(())
            }
        }
    }

    /// The key mapping the conversion applies for this architecture.
    pub fn key_mapping(&self) -> KeyMapping {
        match self {
            // DINO training checkpoints: {"teacher": {"module.backbone.*", "module.head.*"}}.
            ArchConfig::DinoVit(_) => KeyMapping {
                strip_prefixes: strings(&["module.", "backbone."]),
                drop_prefixes: strings(&["head."]),
                drop_suffixes: Vec::new(),
            },
            // DINOv2 training checkpoints: {"teacher": {"backbone.*", "dino_head.*", "ibot_head.*"}}.
            ArchConfig::Dinov2(_) => KeyMapping {
                strip_prefixes: strings(&["module.", "backbone."]),
                drop_prefixes: strings(&["dino_head.", "ibot_head.", "head."]),
                drop_suffixes: Vec::new(),
            },
            ArchConfig::TimmVit(_) => KeyMapping {
                strip_prefixes: strings(&["module."]),
                drop_prefixes: Vec::new(),
                drop_suffixes: Vec::new(),
            },
            ArchConfig::Resnet50(_) => KeyMapping {
                strip_prefixes: strings(&["module."]),
                drop_prefixes: Vec::new(),
                drop_suffixes: strings(&[".num_batches_tracked"]),
            },
        }
    }

    /// The expected tensors, in layout order.
    pub fn expected(&self) -> Vec<TensorSpec> {
        let mut v = Vec::new();
        let mut p = |name: String, shape: Vec<usize>| v.push(TensorSpec { name, shape, buffer: false });
        match self {
            ArchConfig::DinoVit(c) | ArchConfig::Dinov2(c) | ArchConfig::TimmVit(c) => {
                let (d, ps, h) = (c.embed_dim, c.patch_size, c.mlp_hidden);
                let side = c.img_size.checked_div(ps).unwrap_or(0);
                p("cls_token".into(), vec![1, 1, d]);
                p("pos_embed".into(), vec![1, 1 + side * side, d]);
                if c.num_register_tokens > 0 {
                    p("register_tokens".into(), vec![1, c.num_register_tokens, d]);
                }
                if c.mask_token {
                    p("mask_token".into(), vec![1, d]);
                }
                p("patch_embed.proj.weight".into(), vec![d, 3, ps, ps]);
                p("patch_embed.proj.bias".into(), vec![d]);
                for i in 0..c.depth {
                    let b = |s: &str| format!("blocks.{i}.{s}");
                    p(b("norm1.weight"), vec![d]);
                    p(b("norm1.bias"), vec![d]);
                    p(b("attn.qkv.weight"), vec![3 * d, d]);
                    p(b("attn.qkv.bias"), vec![3 * d]);
                    p(b("attn.proj.weight"), vec![d, d]);
                    p(b("attn.proj.bias"), vec![d]);
                    if c.layerscale {
                        p(b("ls1.gamma"), vec![d]);
                    }
                    p(b("norm2.weight"), vec![d]);
                    p(b("norm2.bias"), vec![d]);
                    match c.ffn {
                        Ffn::Mlp => {
                            p(b("mlp.fc1.weight"), vec![h, d]);
                            p(b("mlp.fc1.bias"), vec![h]);
                            p(b("mlp.fc2.weight"), vec![d, h]);
                            p(b("mlp.fc2.bias"), vec![d]);
                        }
                        Ffn::Swiglu => {
                            p(b("mlp.w12.weight"), vec![2 * h, d]);
                            p(b("mlp.w12.bias"), vec![2 * h]);
                            p(b("mlp.w3.weight"), vec![d, h]);
                            p(b("mlp.w3.bias"), vec![d]);
                        }
                    }
                    if c.layerscale {
                        p(b("ls2.gamma"), vec![d]);
                    }
                }
                p("norm.weight".into(), vec![d]);
                p("norm.bias".into(), vec![d]);
                if c.num_classes > 0 {
                    p("head.weight".into(), vec![c.num_classes, d]);
                    p("head.bias".into(), vec![c.num_classes]);
                }
            }
            ArchConfig::Resnet50(c) => {
                let bn = |v: &mut Vec<TensorSpec>, name: &str, ch: usize| {
                    for (s, buffer) in
                        [("weight", false), ("bias", false), ("running_mean", true), ("running_var", true)]
                    {
                        v.push(TensorSpec { name: format!("{name}.{s}"), shape: vec![ch], buffer });
                    }
                };
                let conv = |v: &mut Vec<TensorSpec>, name: &str, shape: Vec<usize>| {
                    v.push(TensorSpec { name: format!("{name}.weight"), shape, buffer: false })
                };
                let w0 = c.width;
                conv(&mut v, "conv1", vec![w0, 3, 7, 7]);
                bn(&mut v, "bn1", w0);
                let mut inplanes = w0;
                for (stage, &blocks) in c.layers.iter().enumerate() {
                    let w = w0 << stage;
                    let out = 4 * w;
                    for j in 0..blocks {
                        let b = format!("layer{}.{j}", stage + 1);
                        conv(&mut v, &format!("{b}.conv1"), vec![w, inplanes, 1, 1]);
                        bn(&mut v, &format!("{b}.bn1"), w);
                        conv(&mut v, &format!("{b}.conv2"), vec![w, w, 3, 3]);
                        bn(&mut v, &format!("{b}.bn2"), w);
                        conv(&mut v, &format!("{b}.conv3"), vec![out, w, 1, 1]);
                        bn(&mut v, &format!("{b}.bn3"), out);
                        if j == 0 {
                            // Every first block changes the width (and stages 2-4 the stride).
                            conv(&mut v, &format!("{b}.downsample.0"), vec![out, inplanes, 1, 1]);
                            bn(&mut v, &format!("{b}.downsample.1"), out);
                        }
                        inplanes = out;
                    }
                }
                v.push(TensorSpec { name: "fc.weight".into(), shape: vec![c.num_classes, inplanes], buffer: false });
                v.push(TensorSpec { name: "fc.bias".into(), shape: vec![c.num_classes], buffer: false });
            }
        }
        v
    }

    /// Trained parameters (elements of the non-buffer tensors), the number papers publish.
    pub fn parameter_count(&self) -> u64 {
        self.expected().iter().filter(|t| !t.buffer).map(|t| t.shape.iter().product::<usize>() as u64).sum()
    }

    /// Checks `tensors` against [`ArchConfig::expected`]. The message names the
    /// first problem in layout order (a missing tensor, a wrong shape or a
    /// tensor that is not floating point) and lists the unexpected tensors.
    pub fn check(&self, tensors: &BTreeMap<String, TensorInfo>) -> std::result::Result<(), String> {
        let expected = self.expected();
        let names: BTreeSet<&str> = expected.iter().map(|t| t.name.as_str()).collect();
        let extra: Vec<&str> = tensors.keys().map(String::as_str).filter(|n| !names.contains(n)).collect();
        let missing = expected.iter().filter(|t| !tensors.contains_key(&t.name)).count();
        let mut first = None;
        for (i, t) in expected.iter().enumerate() {
            let problem = match tensors.get(&t.name) {
                None => Some(format!(
                    "missing tensor {:?} (shape {:?}, tensor {} of {} in layout order); {missing} of the {} expected tensors are missing",
                    t.name,
                    t.shape,
                    i + 1,
                    expected.len(),
                    expected.len()
                )),
                Some(info) if info.shape != t.shape => {
                    Some(format!("tensor {:?} has shape {:?}, expected {:?}", t.name, info.shape, t.shape))
                }
                Some(info) if !info.dtype.is_float() => {
                    Some(format!("tensor {:?} has dtype {}, expected a floating-point type", t.name, info.dtype))
                }
                Some(_) => None,
            };
            if problem.is_some() {
                first = problem;
                break;
            }
        }
        let extras = || {
            const SHOW: usize = 8;
            let mut s = extra.iter().take(SHOW).map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
            if extra.len() > SHOW {
                s.push_str(&format!(" and {} more", extra.len() - SHOW));
            }
            format!("{} unexpected tensor(s): {s}", extra.len())
        };
        match (first, extra.is_empty()) {
            (None, true) => Ok(()),
            (None, false) => Err(extras()),
            (Some(f), true) => Err(f),
            (Some(f), false) => Err(format!("{f}; {}", extras())),
        }
    }
}

/// A registry entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Registry name (`dino_vits16`, `resnet50`).
    pub name: String,
    /// One line about the model.
    pub description: String,
    /// Architecture and hyperparameters.
    pub config: ArchConfig,
    /// File name of the official checkpoint.
    pub official_file: String,
    /// Where the official checkpoint is published (informational; never fetched by tests).
    pub url: String,
    /// Full SHA-256 (hex) of the official checkpoint, when published.
    pub sha256: Option<String>,
    /// The first hex digits of the SHA-256 when only they are published (in the file name).
    pub sha256_prefix: Option<String>,
}

/// How a file's SHA-256 compares with the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumCheck {
    /// The registry's full SHA-256 matches.
    Full,
    /// The registry's published prefix matches.
    Prefix(String),
    /// The registry has no checksum for this model.
    Unknown,
    /// The checksum differs: not the official file (or a damaged copy).
    Mismatch {
        /// What the registry expects (full or prefix).
        expected: String,
    },
}

impl ModelSpec {
    /// Compares a file's SHA-256 (hex) with the registry.
    pub fn check_sha256(&self, sha256: &str) -> ChecksumCheck {
        let sha = sha256.to_ascii_lowercase();
        if let Some(full) = &self.sha256 {
            return if full.eq_ignore_ascii_case(&sha) {
                ChecksumCheck::Full
            } else {
                ChecksumCheck::Mismatch { expected: full.to_ascii_lowercase() }
            };
        }
        if let Some(prefix) = &self.sha256_prefix {
            let prefix = prefix.to_ascii_lowercase();
            return if sha.starts_with(&prefix) {
                ChecksumCheck::Prefix(prefix)
            } else {
                ChecksumCheck::Mismatch { expected: format!("{prefix}…") }
            };
        }
        ChecksumCheck::Unknown
    }

    /// [`ArchConfig::expected`] of this model.
    pub fn expected(&self) -> Vec<TensorSpec> {
        self.config.expected()
    }
}

fn load() -> std::result::Result<Vec<ModelSpec>, String> {
    let models: Vec<ModelSpec> =
        serde_json::from_str(include_str!("models.json")).map_err(|e| format!("models.json: {e}"))?;
    for m in &models {
        m.config.validate().map_err(|e| format!("models.json: {}: {e}", m.name))?;
        for s in m.sha256_prefix.iter().chain(&m.sha256) {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("models.json: {}: checksum {s:?} is not hexadecimal", m.name));
            }
        }
    }
    Ok(models)
}

fn all() -> Result<&'static [ModelSpec]> {
    static MODELS: OnceLock<std::result::Result<Vec<ModelSpec>, String>> = OnceLock::new();
    match MODELS.get_or_init(load) {
        Ok(m) => Ok(m),
        Err(e) => Err(Error::Invalid(format!("the embedded model registry is broken: {e}"))),
    }
}

/// Every registered model, in registry order.
pub fn models() -> Result<&'static [ModelSpec]> {
    all()
}

/// The model called `name`; the error lists the known names.
pub fn model(name: &str) -> Result<&'static ModelSpec> {
    let all = all()?;
    all.iter().find(|m| m.name == name).ok_or_else(|| {
        Error::Invalid(format!(
            "unknown model {name:?}; known models: {}",
            all.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Registered models whose tensors `tensors` match exactly (a hint for
/// "weights of another architecture" errors).
pub fn matching_models(tensors: &BTreeMap<String, TensorInfo>) -> Vec<&'static str> {
    let Ok(all) = all() else { return Vec::new() };
    all.iter()
        .filter(|m| {
            let map = m.config.key_mapping();
            let mut mapped = BTreeMap::new();
            for (name, info) in tensors {
                let mut n = name.as_str();
                while let Some(p) = map.strip_prefixes.iter().find(|p| n.starts_with(p.as_str())) {
                    n = &n[p.len()..];
                }
                if !map.drop_prefixes.iter().any(|d| n.starts_with(d.as_str()))
                    && !map.drop_suffixes.iter().any(|d| n.ends_with(d.as_str()))
                {
                    mapped.insert(n.to_string(), info.clone());
                }
            }
            m.config.check(&mapped).is_ok()
        })
        .map(|m| m.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infos(c: &ArchConfig) -> BTreeMap<String, TensorInfo> {
        c.expected().into_iter().map(|t| (t.name, TensorInfo { dtype: DType::F32, shape: t.shape })).collect()
    }

    #[test]
    fn registry_parses_and_names_are_unique() {
        let all = models().unwrap();
        assert!(all.len() >= 16);
        let names: BTreeSet<&str> = all.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names.len(), all.len());
        for m in all {
            let e = m.expected();
            let n: BTreeSet<&str> = e.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(n.len(), e.len(), "{}: duplicate tensor names", m.name);
            let back = ArchConfig::from_json(&m.config.to_json(), "x").unwrap();
            assert_eq!(back, m.config);
        }
        assert!(model("nope").unwrap_err().to_string().contains("dino_vitb16"));
    }

    #[test]
    fn check_names_first_problem_and_lists_extras() {
        let c = &model("dino_vits8").unwrap().config;
        let mut ts = infos(c);
        c.check(&ts).unwrap();
        ts.get_mut("blocks.3.mlp.fc1.weight").unwrap().shape = vec![1536, 385];
        let e = c.check(&ts).unwrap_err();
        assert!(e.contains("\"blocks.3.mlp.fc1.weight\" has shape [1536, 385], expected [1536, 384]"), "{e}");
        ts.insert("head.weight".into(), TensorInfo { dtype: DType::F32, shape: vec![3] });
        let e = c.check(&ts).unwrap_err();
        assert!(e.contains("blocks.3.mlp.fc1.weight") && e.contains("1 unexpected tensor(s): \"head.weight\""), "{e}");
        ts.remove("blocks.7.norm2.bias");
        ts.remove("blocks.5.norm2.bias");
        let e = c.check(&ts).unwrap_err();
        assert!(e.starts_with("tensor \"blocks.3.mlp.fc1.weight\""), "the first problem in layout order: {e}");
        ts.get_mut("blocks.3.mlp.fc1.weight").unwrap().shape = vec![1536, 384];
        let e = c.check(&ts).unwrap_err();
        assert!(e.starts_with("missing tensor \"blocks.5.norm2.bias\"") && e.contains("2 of the"), "{e}");
        let mut ts = infos(c);
        ts.get_mut("norm.bias").unwrap().dtype = DType::I64;
        assert!(c.check(&ts).unwrap_err().contains("dtype I64"));
    }

    #[test]
    fn matching_models_recognises_another_architecture() {
        let ts = infos(&model("resnet50").unwrap().config);
        assert_eq!(matching_models(&ts), vec!["resnet50", "resnet50_v2"]);
        assert!(model("dino_vits16")
            .unwrap()
            .config
            .check(&ts)
            .unwrap_err()
            .starts_with("missing tensor \"cls_token\""));
    }

    #[test]
    fn checksums() {
        let m = model("resnet50").unwrap();
        assert_eq!(m.check_sha256("0676BA61aa"), ChecksumCheck::Prefix("0676ba61".into()));
        assert!(matches!(m.check_sha256("1676ba61"), ChecksumCheck::Mismatch { .. }));
        assert_eq!(model("dino_vits16").unwrap().check_sha256("00"), ChecksumCheck::Unknown);
    }
}
