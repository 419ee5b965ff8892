//! Vision Transformers on candle in three tensor layouts that share one
//! forward pass: DINO (facebookresearch/dino `vision_transformer.py`),
//! DINOv2 (facebookresearch/dinov2: LayerScale, register tokens, SwiGLU FFN
//! for ViT-g) and timm classifiers (ViT/DeiT with a `head`, see
//! [`crate::vit_classifier`]).
//!
//! Forward pass, for an input `[B, 3, H, W]` with `H` and `W` multiples of
//! the patch size `p`:
//! 1. patch embedding: a `p × p` convolution with stride `p` → `[B, N, D]`,
//!    `N = (H/p)(W/p)`, patches in row-major order;
//! 2. a CLS token in front, plus the position embedding (which covers CLS +
//!    patches), resampled when the grid differs from the one it was trained
//!    on (see [`PosInterp`] and [`interpolate_pos_embed_with`]); then, for
//!    DINOv2 with registers, the `R` register tokens are inserted after the
//!    CLS token (they get no position embedding);
//! 3. `depth` blocks `x = x + ls1 ⊙ attn(norm1(x)); x = x + ls2 ⊙ ffn(norm2(x))`
//!    with LayerNorm (ε = 1e-6), multi-head self-attention (`qkv` linear,
//!    scale `head_dim^-1/2`, softmax, `proj` linear), LayerScale `ls1`/`ls2`
//!    (DINOv2 only; 1 otherwise) and an FFN that is either the MLP
//!    `fc1 → GELU (erf) → fc2` or DINOv2's SwiGLU
//!    `w12 → (x1, x2) → silu(x1) · x2 → w3`;
//! 4. a final LayerNorm.
//!
//! [`Vit::forward`] returns the CLS token, the register tokens and the patch
//! tokens after the final norm, and the keys, queries and values of the last
//! block's attention (the `qkv` output split per head and put back together,
//! CLS and registers dropped), which is what MaskCut and TokenCut use.
//!
//! Two numerically equivalent code paths exist: the fast one (fused
//! LayerNorm and softmax kernels of candle-nn, which have no backward) for
//! plain inference, and a differentiable one made of elementary tensor ops
//! (used by [`Vit::forward_diff`] and GradCAM).

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{conv2d, linear, Conv2d, Conv2dConfig, Linear, VarBuilder};

use crate::vit_infer::{self, Epilogue};

use crate::error::{Error, Result};

#[path = "fused.rs"]
pub(crate) mod fused;

/// Architecture of a ViT: the part every family shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VitConfig {
    /// Patch size in pixels.
    pub patch: usize,
    /// Embedding dimension D.
    pub dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Number of attention heads.
    pub heads: usize,
    /// FFN hidden size as a multiple of D (the SwiGLU FFN derives its own
    /// hidden size from it, see [`Ffn::SwiGlu`]). The hidden size stored in
    /// a weights file takes precedence.
    pub mlp_ratio: usize,
}

impl VitConfig {
    /// DINO ViT-S/`patch` (D 384, 12 blocks, 6 heads).
    pub fn small(patch: usize) -> Self {
        VitConfig { patch, dim: 384, depth: 12, heads: 6, mlp_ratio: 4 }
    }

    /// DINO ViT-B/`patch` (D 768, 12 blocks, 12 heads).
    pub fn base(patch: usize) -> Self {
        VitConfig { patch, dim: 768, depth: 12, heads: 12, mlp_ratio: 4 }
    }

    /// ViT-L/`patch` (D 1024, 24 blocks, 16 heads).
    pub fn large(patch: usize) -> Self {
        VitConfig { patch, dim: 1024, depth: 24, heads: 16, mlp_ratio: 4 }
    }

    /// DINOv2's ViT-g/`patch` ("giant2": D 1536, 40 blocks, 24 heads; used with [`Ffn::SwiGlu`]).
    pub fn giant2(patch: usize) -> Self {
        VitConfig { patch, dim: 1536, depth: 40, heads: 24, mlp_ratio: 4 }
    }
}

/// The feed-forward network of the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ffn {
    /// `mlp.fc1` (D → H) → GELU (erf) → `mlp.fc2` (H → D), `H = mlp_ratio · D`.
    Mlp,
    /// DINOv2's fused SwiGLU: `mlp.w12` (D → 2H) split into `x1, x2`, then
    /// `mlp.w3(silu(x1) · x2)` (H → D), with
    /// `H = 8 ⌈⌊2 · mlp_ratio · D / 3⌋ / 8⌉` (4096 for D = 1536).
    SwiGlu,
}

impl Ffn {
    /// The default hidden size for embedding dimension `dim` (used when the weights do not say).
    pub fn hidden(self, dim: usize, mlp_ratio: usize) -> usize {
        match self {
            Ffn::Mlp => mlp_ratio * dim,
            Ffn::SwiGlu => (2 * mlp_ratio * dim / 3).div_ceil(8) * 8,
        }
    }
}

/// How the position embedding is resampled to a grid other than the trained
/// one: bicubic (PyTorch `F.interpolate(mode="bicubic", align_corners=False)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PosInterp {
    /// When positive, PyTorch gets `scale_factor = ((gh + offset)/s, (gw + offset)/s)` and
    /// samples at `(dst + 0.5)/scale_factor − 0.5` (DINO and DINOv2 without registers: 0.1);
    /// when 0 it gets `size = (gh, gw)` and samples at `(dst + 0.5)·s/g − 0.5` (DINOv2 with
    /// registers, timm).
    pub offset: f64,
    /// PyTorch `antialias`: false = the cubic convolution kernel (a = −0.75) on 4 clamped
    /// neighbours; true = the separable antialiasing filter (a = −0.5, support widened by the
    /// downscaling factor, taps inside the image only, weights renormalised).
    pub antialias: bool,
}

impl PosInterp {
    /// DINO and DINOv2 without registers: `scale_factor` with offset 0.1, no antialiasing.
    pub const DINO: PosInterp = PosInterp { offset: 0.1, antialias: false };
    /// DINOv2 with registers (`interpolate_offset=0.0, interpolate_antialias=True`) and timm's
    /// `resample_abs_pos_embed`: output size, antialiased.
    pub const SIZE_ANTIALIAS: PosInterp = PosInterp { offset: 0.0, antialias: true };
}

/// The family-specific parts of a ViT beyond [`VitConfig`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitVariant {
    /// Register tokens (`register_tokens` `[1, R, D]`), inserted after CLS.
    pub registers: usize,
    /// LayerScale after attention and FFN (`blocks.{i}.ls1.gamma`, `ls2.gamma`).
    pub layer_scale: bool,
    /// The FFN of the blocks.
    pub ffn: Ffn,
    /// Position-embedding resampling.
    pub pos_interp: PosInterp,
    /// Side of the trained position-embedding grid; only used when the weights do not say
    /// (e.g. with `VarBuilder::zeros`): a `pos_embed` tensor in the weights defines it.
    pub pos_grid: usize,
}

impl VitVariant {
    /// DINO (facebookresearch/dino): no registers, no LayerScale, MLP, trained at 224 px.
    pub fn dino(patch: usize) -> Self {
        VitVariant {
            registers: 0,
            layer_scale: false,
            ffn: Ffn::Mlp,
            pos_interp: PosInterp::DINO,
            pos_grid: 224 / patch.max(1),
        }
    }

    /// DINOv2 (facebookresearch/dinov2 hub models): LayerScale, trained on a 37 × 37 grid
    /// (518 px, patch 14). Without registers: `interpolate_offset=0.1`, no antialiasing; with
    /// registers (4, the `*_reg` models): `interpolate_offset=0.0`, `interpolate_antialias=True`.
    /// `swiglu` for ViT-g.
    pub fn dinov2(registers: bool, swiglu: bool) -> Self {
        VitVariant {
            registers: if registers { 4 } else { 0 },
            layer_scale: true,
            ffn: if swiglu { Ffn::SwiGlu } else { Ffn::Mlp },
            pos_interp: if registers { PosInterp::SIZE_ANTIALIAS } else { PosInterp::DINO },
            pos_grid: 37,
        }
    }

    /// timm ViT/DeiT classifiers at 224 px (`vit_*_patch16_224`, `deit_*_patch16_224`): the DINO
    /// block layout; other input sizes resample the position embedding as timm's
    /// `resample_abs_pos_embed` does (bicubic, output size, antialiased).
    pub fn timm(patch: usize) -> Self {
        VitVariant {
            registers: 0,
            layer_scale: false,
            ffn: Ffn::Mlp,
            pos_interp: PosInterp::SIZE_ANTIALIAS,
            pos_grid: 224 / patch.max(1),
        }
    }
}

/// The named backbones this crate knows: `(config, variant)` for names like `dino-vitb8`,
/// `dinov2-vits14`, `dinov2-vitg14-reg` (`-reg`: with 4 registers).
pub fn preset(name: &str) -> Option<(VitConfig, VitVariant)> {
    let (base, reg) = match name.strip_suffix("-reg") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let out = match base {
        "dino-vits16" if !reg => (VitConfig::small(16), VitVariant::dino(16)),
        "dino-vits8" if !reg => (VitConfig::small(8), VitVariant::dino(8)),
        "dino-vitb16" if !reg => (VitConfig::base(16), VitVariant::dino(16)),
        "dino-vitb8" if !reg => (VitConfig::base(8), VitVariant::dino(8)),
        "dinov2-vits14" => (VitConfig::small(14), VitVariant::dinov2(reg, false)),
        "dinov2-vitb14" => (VitConfig::base(14), VitVariant::dinov2(reg, false)),
        "dinov2-vitl14" => (VitConfig::large(14), VitVariant::dinov2(reg, false)),
        "dinov2-vitg14" => (VitConfig::giant2(14), VitVariant::dinov2(reg, true)),
        _ => return None,
    };
    Some(out)
}

/// A LayerNorm (ε = 1e-6) with both a fused and a differentiable forward.
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    weight: Tensor,
    bias: Tensor,
}

const LN_EPS: f64 = 1e-6;

impl Norm {
    pub(crate) fn new(dim: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Norm { weight: vb.get(dim, "weight")?, bias: vb.get(dim, "bias")? })
    }

    pub(crate) fn forward(&self, x: &Tensor, diff: bool) -> candle_core::Result<Tensor> {
        if diff {
            let mean = x.mean_keepdim(D::Minus1)?;
            let xc = x.broadcast_sub(&mean)?;
            let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
            xc.broadcast_div(&(var + LN_EPS)?.sqrt()?)?.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
        } else {
            candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, LN_EPS as f32)
        }
    }

    fn numel(&self) -> usize {
        self.weight.elem_count() + self.bias.elem_count()
    }

    fn to_dtype(&self, dtype: DType) -> candle_core::Result<Norm> {
        Ok(Norm { weight: self.weight.to_dtype(dtype)?, bias: self.bias.to_dtype(dtype)? })
    }
}

/// Softmax over the last dimension: fused, or composed of differentiable ops (the max is a
/// constant shift, so it is detached).
fn softmax(x: &Tensor, diff: bool) -> candle_core::Result<Tensor> {
    if diff {
        let max = x.max_keepdim(D::Minus1)?.detach();
        let e = x.broadcast_sub(&max)?.exp()?;
        let s = e.sum_keepdim(D::Minus1)?;
        e.broadcast_div(&s)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

enum FfnLayers {
    Mlp { fc1: Linear, fc2: Linear },
    SwiGlu { w12: Linear, w3: Linear, hidden: usize },
}

struct Block {
    norm1: Norm,
    qkv: Linear,
    proj: Linear,
    ls1: Option<Tensor>,
    norm2: Norm,
    ffn: FfnLayers,
    ls2: Option<Tensor>,
}

/// A copy of a linear layer with its tensors in `dtype`.
pub(crate) fn linear_to(l: &Linear, dtype: DType) -> candle_core::Result<Linear> {
    Ok(Linear::new(l.weight().to_dtype(dtype)?, l.bias().map(|b| b.to_dtype(dtype)).transpose()?))
}

fn linear_numel(l: &Linear) -> usize {
    l.weight().elem_count() + l.bias().map_or(0, |b| b.elem_count())
}

impl Block {
    fn to_dtype(&self, dtype: DType) -> candle_core::Result<Block> {
        let opt = |t: &Option<Tensor>| t.as_ref().map(|t| t.to_dtype(dtype)).transpose();
        Ok(Block {
            norm1: self.norm1.to_dtype(dtype)?,
            qkv: linear_to(&self.qkv, dtype)?,
            proj: linear_to(&self.proj, dtype)?,
            ls1: opt(&self.ls1)?,
            norm2: self.norm2.to_dtype(dtype)?,
            ffn: match &self.ffn {
                FfnLayers::Mlp { fc1, fc2 } => {
                    FfnLayers::Mlp { fc1: linear_to(fc1, dtype)?, fc2: linear_to(fc2, dtype)? }
                }
                FfnLayers::SwiGlu { w12, w3, hidden } => {
                    FfnLayers::SwiGlu { w12: linear_to(w12, dtype)?, w3: linear_to(w3, dtype)?, hidden: *hidden }
                }
            },
            ls2: opt(&self.ls2)?,
        })
    }

    fn numel(&self) -> usize {
        let ffn = match &self.ffn {
            FfnLayers::Mlp { fc1, fc2 } => linear_numel(fc1) + linear_numel(fc2),
            FfnLayers::SwiGlu { w12, w3, .. } => linear_numel(w12) + linear_numel(w3),
        };
        self.norm1.numel()
            + linear_numel(&self.qkv)
            + linear_numel(&self.proj)
            + self.ls1.as_ref().map_or(0, |t| t.elem_count())
            + self.norm2.numel()
            + ffn
            + self.ls2.as_ref().map_or(0, |t| t.elem_count())
    }
}

/// The output dimension of a linear layer stored in the weights, if the weights say.
fn stored_rows(vb: &VarBuilder, name: &str) -> Option<usize> {
    vb.get_unchecked(name).ok().and_then(|t| t.dims().first().copied())
}

/// A ViT with loaded weights.
pub struct Vit {
    cfg: VitConfig,
    variant: VitVariant,
    patch_embed: Conv2d,
    cls_token: Tensor,
    register_tokens: Option<Tensor>,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: Norm,
    device: Device,
}

/// The outputs of [`Vit::forward`] for one batch.
#[derive(Debug)]
pub struct VitOutput {
    /// Patch grid `(h, w)`.
    pub grid: (usize, usize),
    /// CLS token after the final norm, `[B, D]`.
    pub cls: Tensor,
    /// Register tokens after the final norm, `[B, R, D]` (`R = 0` without registers).
    pub registers: Tensor,
    /// Patch tokens after the final norm, `[B, h*w, D]`.
    pub patches: Tensor,
    /// Keys of the last block's attention, `[B, h*w, D]` (heads concatenated).
    pub keys: Tensor,
    /// Queries of the last block's attention, `[B, h*w, D]`.
    pub queries: Tensor,
    /// Values of the last block's attention, `[B, h*w, D]`.
    pub values: Tensor,
}

/// What the shared forward pass hands back.
pub(crate) struct Trunk {
    /// All tokens after the final norm, `[B, 1 + R + h*w, D]`.
    pub(crate) tokens: Tensor,
    /// The last block's `qkv` output, `[B, 1 + R + h*w, 3D]`.
    pub(crate) last_qkv: Tensor,
    /// Patch grid.
    pub(crate) grid: (usize, usize),
}

/// A hook on the last block's `norm1` output (GradCAM target).
pub(crate) type Hook<'a> = &'a mut dyn FnMut(&Tensor) -> Result<Tensor>;

impl Vit {
    /// Builds a DINO-layout model (`cls_token`, `pos_embed`, `patch_embed.proj.*`,
    /// `blocks.{i}.*`, `norm.*`); see [`Vit::with_variant`] for the other families.
    pub fn new(cfg: VitConfig, vb: VarBuilder) -> Result<Self> {
        Vit::with_variant(cfg, VitVariant::dino(cfg.patch), vb)
    }

    /// Builds the model of `cfg` and `variant` from a var builder. Besides the DINO tensors it
    /// reads `register_tokens` `[1, R, D]`, `blocks.{i}.ls1.gamma`/`ls2.gamma` `[D]` and
    /// `blocks.{i}.mlp.w12.*`/`w3.*` as the variant says. The position-embedding grid and the
    /// FFN hidden size are taken from the weights' shapes when available. Other tensors
    /// (`mask_token`, `head.*`) are ignored.
    pub fn with_variant(cfg: VitConfig, variant: VitVariant, vb: VarBuilder) -> Result<Self> {
        if cfg.heads == 0 || cfg.dim == 0 || !cfg.dim.is_multiple_of(cfg.heads) || cfg.patch == 0 || cfg.depth == 0 {
            return Err(Error::Invalid(format!(
                "invalid ViT configuration {cfg:?}: patch, dim, depth and heads must be positive and heads must divide dim"
            )));
        }
        let d = cfg.dim;
        let conv_cfg = Conv2dConfig { stride: cfg.patch, ..Default::default() };
        let patch_embed = conv2d(3, d, cfg.patch, conv_cfg, vb.pp("patch_embed.proj"))?;
        let cls_token = vb.get((1, 1, d), "cls_token")?;
        let register_tokens =
            if variant.registers > 0 { Some(vb.get((1, variant.registers, d), "register_tokens")?) } else { None };
        let pos_embed = match vb.get_unchecked("pos_embed") {
            Ok(p) => p,
            Err(_) => vb.get((1, 1 + variant.pos_grid * variant.pos_grid, d), "pos_embed")?,
        };
        let pd = pos_embed.dims();
        let n0 = pd.get(1).copied().unwrap_or(0).saturating_sub(1);
        let side = (n0 as f64).sqrt().round() as usize;
        if pd.len() != 3 || pd[0] != 1 || pd[2] != d || side * side != n0 || n0 == 0 {
            return Err(Error::Shape(format!(
                "tensor \"pos_embed\": shape {pd:?}; expected [1, 1 + s*s, {d}] for CLS and a square grid of s*s patches"
            )));
        }
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let b = vb.pp(format!("blocks.{i}"));
            let ffn = match variant.ffn {
                Ffn::Mlp => {
                    let h = stored_rows(&b, "mlp.fc1.weight").unwrap_or(Ffn::Mlp.hidden(d, cfg.mlp_ratio));
                    FfnLayers::Mlp { fc1: linear(d, h, b.pp("mlp.fc1"))?, fc2: linear(h, d, b.pp("mlp.fc2"))? }
                }
                Ffn::SwiGlu => {
                    let h = stored_rows(&b, "mlp.w12.weight")
                        .map(|r| r / 2)
                        .unwrap_or(Ffn::SwiGlu.hidden(d, cfg.mlp_ratio));
                    FfnLayers::SwiGlu {
                        w12: linear(d, 2 * h, b.pp("mlp.w12"))?,
                        w3: linear(h, d, b.pp("mlp.w3"))?,
                        hidden: h,
                    }
                }
            };
            let ls = |name: &str| -> candle_core::Result<Option<Tensor>> {
                if variant.layer_scale {
                    Ok(Some(b.get(d, &format!("{name}.gamma"))?))
                } else {
                    Ok(None)
                }
            };
            blocks.push(Block {
                norm1: Norm::new(d, b.pp("norm1"))?,
                qkv: linear(d, 3 * d, b.pp("attn.qkv"))?,
                proj: linear(d, d, b.pp("attn.proj"))?,
                ls1: ls("ls1")?,
                norm2: Norm::new(d, b.pp("norm2"))?,
                ffn,
                ls2: ls("ls2")?,
            });
        }
        let norm = Norm::new(d, vb.pp("norm"))?;
        Ok(Vit {
            cfg,
            variant,
            patch_embed,
            cls_token,
            register_tokens,
            pos_embed,
            blocks,
            norm,
            device: vb.device().clone(),
        })
    }

    /// Loads a DINO-layout `.safetensors` file (f32 on `device`).
    pub fn from_safetensors(cfg: VitConfig, path: &std::path::Path, device: &Device) -> Result<Self> {
        Vit::from_safetensors_with(cfg, VitVariant::dino(cfg.patch), path, device)
    }

    /// Loads a `.safetensors` file of the given family (f32 on `device`).
    pub fn from_safetensors_with(
        cfg: VitConfig,
        variant: VitVariant,
        path: &std::path::Path,
        device: &Device,
    ) -> Result<Self> {
        let vb = open_safetensors(path, device)?;
        Vit::with_variant(cfg, variant, vb).map_err(|e| weights_error(path, e))
    }

    /// The configuration.
    pub fn config(&self) -> VitConfig {
        self.cfg
    }

    /// The model with its weights in `dtype` (f32, f16 or bf16). Inputs are
    /// converted to it and every output is returned as f32. Half precision
    /// is meant for GPUs (on the CPU f32 is faster); outputs differ from f32
    /// by the half-precision rounding of every layer (about 1e-2 relative
    /// for bf16; f16 is tested against PyTorch's f32 outputs). bf16 needs a
    /// CUDA device (candle's CPU backend has no bf16 matrix product).
    /// Gradients (GradCAM) are only supported in f32.
    pub fn to_dtype(&self, dtype: DType) -> Result<Vit> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::Invalid(format!("ViT weights in {dtype:?}: expected f32, f16 or bf16")));
        }
        if dtype == DType::BF16 && self.device.is_cpu() {
            // candle's CPU backend has no bf16 matrix product.
            return Err(Error::Invalid("bf16 needs a CUDA device; on the CPU use f16 or f32".into()));
        }
        let conv = &self.patch_embed;
        let opt = |t: &Option<Tensor>| t.as_ref().map(|t| t.to_dtype(dtype)).transpose();
        Ok(Vit {
            cfg: self.cfg,
            variant: self.variant,
            patch_embed: Conv2d::new(
                conv.weight().to_dtype(dtype)?,
                conv.bias().map(|b| b.to_dtype(dtype)).transpose()?,
                *conv.config(),
            ),
            cls_token: self.cls_token.to_dtype(dtype)?,
            register_tokens: opt(&self.register_tokens)?,
            pos_embed: self.pos_embed.to_dtype(dtype)?,
            blocks: self.blocks.iter().map(|b| b.to_dtype(dtype)).collect::<candle_core::Result<_>>()?,
            norm: self.norm.to_dtype(dtype)?,
            device: self.device.clone(),
        })
    }

    /// The dtype of the weights (and of the computation).
    pub fn dtype(&self) -> DType {
        self.cls_token.dtype()
    }

    /// The family-specific part of the configuration.
    pub fn variant(&self) -> VitVariant {
        self.variant
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of leading non-patch tokens (CLS + registers).
    pub fn prefix_tokens(&self) -> usize {
        1 + self.variant.registers
    }

    /// Side `s` of the trained position-embedding grid.
    pub fn pos_grid(&self) -> usize {
        let n0 = self.pos_embed.dims().get(1).copied().unwrap_or(1).saturating_sub(1);
        (n0 as f64).sqrt().round() as usize
    }

    /// FFN hidden size of the first block.
    pub fn ffn_hidden(&self) -> usize {
        match self.blocks.first().map(|b| &b.ffn) {
            Some(FfnLayers::Mlp { fc1, .. }) => fc1.weight().dims()[0],
            Some(FfnLayers::SwiGlu { hidden, .. }) => *hidden,
            None => 0,
        }
    }

    /// Number of parameters the model holds (what it reads from the weights).
    pub fn num_parameters(&self) -> usize {
        self.patch_embed.weight().elem_count()
            + self.patch_embed.bias().map_or(0, |b| b.elem_count())
            + self.cls_token.elem_count()
            + self.register_tokens.as_ref().map_or(0, |t| t.elem_count())
            + self.pos_embed.elem_count()
            + self.blocks.iter().map(Block::numel).sum::<usize>()
            + self.norm.numel()
    }

    /// Runs the model on `x`, `[B, 3, H, W]` (normalised pixels), on the fast path.
    pub fn forward(&self, x: &Tensor) -> Result<VitOutput> {
        self.output(self.trunk(x, false, None, false)?)
    }

    /// As [`Vit::forward`], through elementary differentiable ops only (gradients can flow to
    /// `x` and to any `Var` on the way); the same values up to rounding.
    pub fn forward_diff(&self, x: &Tensor) -> Result<VitOutput> {
        self.output(self.trunk(x, true, None, false)?)
    }

    fn output(&self, t: Trunk) -> Result<VitOutput> {
        let d = self.cfg.dim;
        let p = self.prefix_tokens();
        let (_, n, _) = t.tokens.dims3()?;
        let np = n - p;
        let part = |k: usize| -> Result<Tensor> { Ok(t.last_qkv.narrow(2, k * d, d)?.narrow(1, p, np)?.contiguous()?) };
        let f32 = |t: Tensor| -> Result<Tensor> { Ok(t.to_dtype(DType::F32)?) };
        Ok(VitOutput {
            grid: t.grid,
            cls: f32(t.tokens.narrow(1, 0, 1)?.squeeze(1)?)?,
            registers: f32(t.tokens.narrow(1, 1, p - 1)?)?,
            patches: f32(t.tokens.narrow(1, p, np)?)?,
            queries: f32(part(0)?)?,
            keys: f32(part(1)?)?,
            values: f32(part(2)?)?,
        })
    }

    /// The shared forward pass; `diff` selects the differentiable path; `hook` sees (and may
    /// replace) the last block's `norm1` output. With `cut` (GradCAM: only gradients at and after
    /// the hooked activation are wanted) the blocks before the hooked one take the fast path and
    /// the residual stream entering it is detached.
    pub(crate) fn trunk(&self, x: &Tensor, diff: bool, mut hook: Option<Hook<'_>>, cut: bool) -> Result<Trunk> {
        let (b, c, hh, ww) =
            x.dims4().map_err(|_| Error::Shape(format!("input of shape {:?}: expected [B, 3, H, W]", x.dims())))?;
        let p = self.cfg.patch;
        if c != 3 || hh % p != 0 || ww % p != 0 || hh == 0 || ww == 0 || b == 0 {
            return Err(Error::Shape(format!(
                "input [{b}, {c}, {hh}, {ww}]: expected [B, 3, H, W] with B ≥ 1 and H and W positive multiples of the patch size {p}"
            )));
        }
        let (gh, gw) = (hh / p, ww / p);
        let d = self.cfg.dim;
        let x = &x.to_dtype(self.dtype())?;
        let tokens = self.patch_embed.forward(x)?.flatten_from(2)?.transpose(1, 2)?; // [B, N, D]
        let cls = self.cls_token.expand((b, 1, d))?;
        let mut h = Tensor::cat(&[&cls, &tokens], 1)?;
        let pos = interpolate_pos_embed_with(&self.pos_embed, gh, gw, self.variant.pos_interp)?;
        h = h.broadcast_add(&pos)?;
        if let Some(reg) = &self.register_tokens {
            let r = reg.expand((b, self.variant.registers, d))?;
            h = Tensor::cat(&[&h.narrow(1, 0, 1)?, &r, &h.narrow(1, 1, gh * gw)?], 1)?;
        }
        let heads = self.cfg.heads;
        let hd = d / heads;
        let scale = (hd as f64).powf(-0.5);
        let n = self.prefix_tokens() + gh * gw;
        let mut last_qkv = None;
        let nblocks = self.blocks.len();
        let all_diff = diff;
        for (i, blk) in self.blocks.iter().enumerate() {
            let hooked = i + 1 == nblocks;
            // ∂score/∂A at the hooked A does not depend on the graph upstream of A.
            let diff = all_diff && (!cut || hooked);
            if cut && hooked {
                h = h.detach();
            }
            let mut y = blk.norm1.forward(&h, diff)?;
            if hooked {
                if let Some(f) = hook.as_mut() {
                    y = f(&y)?;
                }
            }
            let fast = !diff && matches!(h.device(), Device::Cpu) && h.dtype() == DType::F32;
            let qkv = match fast_linear(fast, &y, &blk.qkv, Epilogue::None)? {
                Some(t) => t,
                None => blk.qkv.forward(&y)?, // [B, n, 3D]
            };
            let o = match fast.then(|| vit_infer::attention(&qkv, heads, scale as f32)).transpose()?.flatten() {
                Some(o) => o,
                None => {
                    let qkv4 = qkv.reshape((b, n, 3, heads, hd))?.permute((2, 0, 3, 1, 4))?; // [3, B, heads, n, hd]
                    let q = (qkv4.get(0)? * scale)?.contiguous()?;
                    let k = qkv4.get(1)?.contiguous()?;
                    let v = qkv4.get(2)?.contiguous()?;
                    let attn = softmax(&q.matmul(&k.t()?)?, diff)?;
                    attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?
                }
            };
            h = match fast_linear(fast, &o, &blk.proj, Epilogue::Residual { residual: &h, gamma: blk.ls1.as_ref() })? {
                Some(t) => t,
                None => {
                    let mut a = blk.proj.forward(&o)?;
                    if let Some(g) = &blk.ls1 {
                        a = a.broadcast_mul(g)?;
                    }
                    (&h + a)?
                }
            };
            let y = blk.norm2.forward(&h, diff)?;
            if let FfnLayers::Mlp { fc1, fc2 } = &blk.ffn {
                if let Some(a) = fast_linear(fast, &y, fc1, Epilogue::Gelu)? {
                    if let Some(t) = fast_linear(fast, &a, fc2, Epilogue::Residual { residual: &h, gamma: blk.ls2.as_ref() })? {
                        h = t;
                        if i + 1 == nblocks {
                            last_qkv = Some(qkv);
                        }
                        continue;
                    }
                }
            }
            let mut m = match &blk.ffn {
                FfnLayers::Mlp { fc1, fc2 } => {
                    let a = match (diff, fc1.bias()) {
                        // Fast path: the bias add fused into a multi-threaded GELU (same values).
                        (false, Some(bias)) => fused::bias_gelu(&matmul_t(&y, fc1.weight())?, bias)?,
                        _ => fc1.forward(&y)?.gelu_erf()?,
                    };
                    fc2.forward(&a)?
                }
                FfnLayers::SwiGlu { w12, w3, hidden } => {
                    let x12 = w12.forward(&y)?;
                    let x1 = x12.narrow(2, 0, *hidden)?;
                    let x2 = x12.narrow(2, *hidden, *hidden)?;
                    w3.forward(&(x1.silu()? * x2)?)?
                }
            };
            if let Some(g) = &blk.ls2 {
                m = m.broadcast_mul(g)?;
            }
            h = (h + m)?;
            if i + 1 == nblocks {
                last_qkv = Some(qkv);
            }
        }
        let tokens = self.norm.forward(&h, diff)?;
        let last_qkv = last_qkv.ok_or_else(|| Error::Invalid("the model has no blocks".into()))?;
        Ok(Trunk { tokens, last_qkv, grid: (gh, gw) })
    }
}

/// `epilogue(x Wᵀ + b)` by the inference kernels of `vit_infer` when `fast`; `None` when not
/// `fast` or when the kernels do not apply (the caller then uses candle's ops).
fn fast_linear(fast: bool, x: &Tensor, l: &Linear, epilogue: Epilogue) -> candle_core::Result<Option<Tensor>> {
    if !fast {
        return Ok(None);
    }
    vit_infer::linear(x, l.weight(), l.bias(), epilogue)
}

/// `x W^T` for `x` `[B, n, K]` and `W` `[M, K]` as one `[B·n, K] × [K, M]` product.
fn matmul_t(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let (b, n, k) = x.dims3()?;
    x.contiguous()?.reshape((b * n, k))?.matmul(&w.t()?)?.reshape((b, n, ()))
}

/// Memory-maps a `.safetensors` file as f32 on `device`.
pub(crate) fn open_safetensors(path: &std::path::Path, device: &Device) -> Result<VarBuilder<'static>> {
    // SAFETY: the file is memory-mapped read-only; it must not be modified while the model lives.
    unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
        .map_err(|e| Error::Weights { path: path.to_path_buf(), message: e.to_string() })
}

/// Names the weights file in a tensor-library error raised while building a model.
pub(crate) fn weights_error(path: &std::path::Path, e: Error) -> Error {
    match e {
        Error::Candle(c) => Error::Weights { path: path.to_path_buf(), message: c.to_string() },
        Error::Shape(m) => Error::Weights { path: path.to_path_buf(), message: m },
        other => other,
    }
}

/// The position embedding `[1, 1 + s², D]` for a `gh × gw` grid, as DINO's
/// `interpolate_pos_encoding` ([`PosInterp::DINO`]); see [`interpolate_pos_embed_with`].
///
/// DINO passes the width-derived factor first, which PyTorch applies to the
/// rows; for square inputs this is the same. We apply the row factor to the
/// rows, which is what the output shape DINO checks for requires (and what
/// DINOv2, which names its variables after the tensor dimensions, does).
pub fn interpolate_pos_embed(pos: &Tensor, gh: usize, gw: usize) -> Result<Tensor> {
    interpolate_pos_embed_with(pos, gh, gw, PosInterp::DINO)
}

/// The position embedding `[1, 1 + s², D]` (CLS first, then an `s × s` grid
/// row-major) resampled to a `gh × gw` grid: unchanged when `gh = gw = s`;
/// otherwise the grid is resampled per channel as PyTorch's bicubic
/// `F.interpolate(align_corners=False)` with the sampling of `mode` (see
/// [`PosInterp`]) and the CLS embedding kept.
pub fn interpolate_pos_embed_with(pos: &Tensor, gh: usize, gw: usize, mode: PosInterp) -> Result<Tensor> {
    let (_, n1, d) = pos.dims3()?;
    let n0 = n1.saturating_sub(1);
    let s = (n0 as f64).sqrt().round() as usize;
    if s * s != n0 || s == 0 || gh == 0 || gw == 0 {
        return Err(Error::Shape(format!(
            "position embedding of shape {:?} for a {gh}x{gw} grid: expected [1, 1 + s*s, D]",
            pos.dims()
        )));
    }
    if gh == s && gw == s {
        return Ok(pos.clone());
    }
    let data: Vec<f32> = pos.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let cls = &data[..d];
    let grid = &data[d..];
    let rows = resample_weights(s, gh, mode);
    let cols = resample_weights(s, gw, mode);
    let mut out = Vec::with_capacity((1 + gh * gw) * d);
    out.extend_from_slice(cls);
    // Separable: first along the columns (s rows × gw), then along the rows.
    let mut tmp = vec![0f64; s * gw * d];
    for r in 0..s {
        for (c, (start, ws)) in cols.iter().enumerate() {
            let dst = &mut tmp[(r * gw + c) * d..][..d];
            for (k, &wgt) in ws.iter().enumerate() {
                let src = &grid[(r * s + start + k) * d..][..d];
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o += wgt * v as f64;
                }
            }
        }
    }
    let mut acc = vec![0f64; d];
    for (start, ws) in &rows {
        for c in 0..gw {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (k, &wgt) in ws.iter().enumerate() {
                let src = &tmp[((start + k) * gw + c) * d..][..d];
                for (o, &v) in acc.iter_mut().zip(src) {
                    *o += wgt * v;
                }
            }
            out.extend(acc.iter().map(|&v| v as f32));
        }
    }
    Ok(Tensor::from_vec(out, (1, 1 + gh * gw, d), pos.device())?.to_dtype(pos.dtype())?)
}

/// For each output index of a bicubic resampling from `n_in` to `n_out`
/// samples, the first source index and the weights of consecutive sources.
fn resample_weights(n_in: usize, n_out: usize, mode: PosInterp) -> Vec<(usize, Vec<f64>)> {
    // PyTorch's `scale` (input step per output step): 1/scale_factor when a factor is given.
    let scale = if mode.offset > 0.0 { n_in as f64 / (n_out as f64 + mode.offset) } else { n_in as f64 / n_out as f64 };
    if mode.antialias {
        antialias_weights(n_in, n_out, scale)
    } else {
        cubic_weights(n_in, n_out, scale)
    }
}

/// Keys' cubic convolution kernel with parameter `a`.
fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// PyTorch's plain bicubic: 4 neighbours of `(o + 0.5)·scale − 0.5`, a = −0.75, indices
/// clamped to the border (the clamped duplicates are folded into one run of weights).
fn cubic_weights(n_in: usize, n_out: usize, scale: f64) -> Vec<(usize, Vec<f64>)> {
    (0..n_out)
        .map(|o| {
            let src = (o as f64 + 0.5) * scale - 0.5;
            let f = src.floor();
            let t = src - f;
            let i0 = f as i64 - 1;
            let w = [cubic(t + 1.0, -0.75), cubic(t, -0.75), cubic(1.0 - t, -0.75), cubic(2.0 - t, -0.75)];
            let lo = i0.clamp(0, n_in as i64 - 1) as usize;
            let hi = (i0 + 3).clamp(0, n_in as i64 - 1) as usize;
            let mut ws = vec![0f64; hi - lo + 1];
            for (k, &wk) in w.iter().enumerate() {
                let idx = (i0 + k as i64).clamp(0, n_in as i64 - 1) as usize;
                ws[idx - lo] += wk;
            }
            (lo, ws)
        })
        .collect()
}

/// PyTorch's antialiased bicubic (`_upsample_bicubic2d_aa`, the PIL filter): a = −0.5, support
/// `2·max(scale, 1)`, the kernel stretched by `max(scale, 1)`, taps inside `[0, n_in)` only and
/// the weights normalised to sum 1.
fn antialias_weights(n_in: usize, n_out: usize, scale: f64) -> Vec<(usize, Vec<f64>)> {
    let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
    let inv = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    (0..n_out)
        .map(|o| {
            let center = scale * (o as f64 + 0.5);
            // Truncation toward zero, as the C++ cast.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(n_in as i64).max(lo as i64) as usize;
            let mut ws: Vec<f64> = (lo..hi).map(|j| cubic((j as f64 - center + 0.5) * inv, -0.5)).collect();
            let total: f64 = ws.iter().sum();
            if total != 0.0 {
                ws.iter_mut().for_each(|w| *w /= total);
            }
            (lo, ws)
        })
        .collect()
}
