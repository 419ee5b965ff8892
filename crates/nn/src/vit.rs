//! Vision Transformers in the DINO layout (facebookresearch/dino
//! `vision_transformer.py` tensor names), on candle.
//!
//! Forward pass, for an input `[B, 3, H, W]` with `H` and `W` multiples of
//! the patch size `p`:
//! 1. patch embedding: a `p × p` convolution with stride `p` → `[B, N, D]`,
//!    `N = (H/p)(W/p)`, patches in row-major order;
//! 2. a CLS token in front, plus the position embedding, interpolated when
//!    the grid differs from the one it was trained on (see
//!    [`interpolate_pos_embed`]);
//! 3. `depth` blocks `x = x + attn(norm1(x)); x = x + mlp(norm2(x))` with
//!    LayerNorm (ε = 1e-6), multi-head self-attention (`qkv` linear, scale
//!    `head_dim^-1/2`, softmax, `proj` linear) and an MLP `fc1 → GELU (erf) → fc2`;
//! 4. a final LayerNorm.
//!
//! [`Vit::forward`] returns the CLS token and patch tokens after the final
//! norm, and the keys, queries and values of the last block's attention
//! (the `qkv` output split per head and put back together, CLS dropped),
//! which is what MaskCut and TokenCut use.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{conv2d, layer_norm, linear, Conv2d, Conv2dConfig, LayerNorm, LayerNormConfig, Linear, VarBuilder};

use crate::error::{Error, Result};

/// Architecture of a ViT.
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
    /// MLP hidden size as a multiple of D.
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
}

struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// A ViT with loaded weights.
pub struct Vit {
    cfg: VitConfig,
    patch_embed: Conv2d,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
    norm: LayerNorm,
    device: Device,
}

/// The outputs of [`Vit::forward`] for one batch.
#[derive(Debug)]
pub struct VitOutput {
    /// Patch grid `(h, w)`.
    pub grid: (usize, usize),
    /// CLS token after the final norm, `[B, D]`.
    pub cls: Tensor,
    /// Patch tokens after the final norm, `[B, h*w, D]`.
    pub patches: Tensor,
    /// Keys of the last block's attention, `[B, h*w, D]` (heads concatenated).
    pub keys: Tensor,
    /// Queries of the last block's attention, `[B, h*w, D]`.
    pub queries: Tensor,
    /// Values of the last block's attention, `[B, h*w, D]`.
    pub values: Tensor,
}

fn ln(dim: usize, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    layer_norm(dim, LayerNormConfig { eps: 1e-6, ..Default::default() }, vb)
}

impl Vit {
    /// Builds the model from a var builder over DINO-layout tensors
    /// (`cls_token`, `pos_embed`, `patch_embed.proj.*`, `blocks.{i}.*`, `norm.*`).
    pub fn new(cfg: VitConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.heads == 0 || !cfg.dim.is_multiple_of(cfg.heads) || cfg.patch == 0 {
            return Err(Error::Invalid(format!("invalid ViT configuration {cfg:?}")));
        }
        let d = cfg.dim;
        let conv_cfg = Conv2dConfig { stride: cfg.patch, ..Default::default() };
        let patch_embed = conv2d(3, d, cfg.patch, conv_cfg, vb.pp("patch_embed.proj"))?;
        let cls_token = vb.get((1, 1, d), "cls_token")?;
        let pos_embed = vb.get_unchecked("pos_embed")?;
        let pd = pos_embed.dims();
        let n0 = pd.get(1).copied().unwrap_or(0).saturating_sub(1);
        let side = (n0 as f64).sqrt().round() as usize;
        if pd.len() != 3 || pd[0] != 1 || pd[2] != d || side * side != n0 || n0 == 0 {
            return Err(Error::Shape(format!(
                "tensor \"pos_embed\": shape {pd:?}; expected [1, 1 + s*s, {d}] for a square grid of s*s patches"
            )));
        }
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let b = vb.pp(format!("blocks.{i}"));
            blocks.push(Block {
                norm1: ln(d, b.pp("norm1"))?,
                qkv: linear(d, 3 * d, b.pp("attn.qkv"))?,
                proj: linear(d, d, b.pp("attn.proj"))?,
                norm2: ln(d, b.pp("norm2"))?,
                fc1: linear(d, cfg.mlp_ratio * d, b.pp("mlp.fc1"))?,
                fc2: linear(cfg.mlp_ratio * d, d, b.pp("mlp.fc2"))?,
            });
        }
        let norm = ln(d, vb.pp("norm"))?;
        Ok(Vit { cfg, patch_embed, cls_token, pos_embed, blocks, norm, device: vb.device().clone() })
    }

    /// Loads a DINO-layout `.safetensors` file (f32 on `device`).
    pub fn from_safetensors(cfg: VitConfig, path: &std::path::Path, device: &Device) -> Result<Self> {
        // SAFETY: the file is memory-mapped read-only; it must not be modified while the model lives.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
            .map_err(|e| Error::Weights { path: path.to_path_buf(), message: e.to_string() })?;
        Vit::new(cfg, vb).map_err(|e| match e {
            Error::Candle(c) => Error::Weights { path: path.to_path_buf(), message: c.to_string() },
            other => other,
        })
    }

    /// The configuration.
    pub fn config(&self) -> VitConfig {
        self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the model on `x`, `[B, 3, H, W]` (normalised pixels).
    pub fn forward(&self, x: &Tensor) -> Result<VitOutput> {
        let (b, c, hh, ww) = x.dims4()?;
        let p = self.cfg.patch;
        if c != 3 || hh % p != 0 || ww % p != 0 || hh == 0 || ww == 0 {
            return Err(Error::Shape(format!(
                "input [{b}, {c}, {hh}, {ww}]: expected [B, 3, H, W] with H and W positive multiples of the patch size {p}"
            )));
        }
        let (gh, gw) = (hh / p, ww / p);
        let d = self.cfg.dim;
        let tokens = self.patch_embed.forward(x)?.flatten_from(2)?.transpose(1, 2)?; // [B, N, D]
        let cls = self.cls_token.expand((b, 1, d))?;
        let mut h = Tensor::cat(&[&cls, &tokens], 1)?;
        let pos = interpolate_pos_embed(&self.pos_embed, gh, gw)?;
        h = h.broadcast_add(&pos)?;
        let heads = self.cfg.heads;
        let hd = d / heads;
        let scale = (hd as f64).powf(-0.5);
        let n = 1 + gh * gw;
        let mut last_qkv = None;
        for (i, blk) in self.blocks.iter().enumerate() {
            let y = blk.norm1.forward(&h)?;
            let qkv = blk.qkv.forward(&y)?; // [B, n, 3D]
            let qkv4 = qkv.reshape((b, n, 3, heads, hd))?.permute((2, 0, 3, 1, 4))?; // [3, B, heads, n, hd]
            let q = qkv4.get(0)?.contiguous()?;
            let k = qkv4.get(1)?.contiguous()?;
            let v = qkv4.get(2)?.contiguous()?;
            let attn = (q.matmul(&k.t()?)? * scale)?;
            let attn = candle_nn::ops::softmax_last_dim(&attn)?;
            let o = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
            h = (h + blk.proj.forward(&o)?)?;
            let y = blk.norm2.forward(&h)?;
            let m = blk.fc2.forward(&blk.fc1.forward(&y)?.gelu_erf()?)?;
            h = (h + m)?;
            if i + 1 == self.blocks.len() {
                last_qkv = Some(qkv);
            }
        }
        let h = self.norm.forward(&h)?;
        let cls_out = h.narrow(1, 0, 1)?.squeeze(1)?;
        let patches = h.narrow(1, 1, n - 1)?;
        let qkv = match last_qkv {
            Some(q) => q,
            None => return Err(Error::Invalid("the model has no blocks".into())),
        };
        // qkv [B, n, 3D] = (q | k | v), each with heads concatenated in order.
        let part = |k: usize| -> Result<Tensor> { Ok(qkv.narrow(2, k * d, d)?.narrow(1, 1, n - 1)?.contiguous()?) };
        Ok(VitOutput { grid: (gh, gw), cls: cls_out, patches, queries: part(0)?, keys: part(1)?, values: part(2)? })
    }
}

/// The position embedding `[1, 1 + s², D]` for a `gh × gw` grid, as DINO's
/// `interpolate_pos_encoding`: unchanged when `gh = gw = s`; otherwise the
/// `s × s` grid of patch embeddings is resampled by bicubic interpolation
/// (PyTorch `F.interpolate(mode="bicubic", align_corners=False)`, cubic
/// coefficient −0.75, border samples clamped) with the scale factors
/// `(gh + 0.1)/s` (rows) and `(gw + 0.1)/s` (columns), source coordinate
/// `(dst + 0.5)/scale − 0.5` from the scale factors themselves (DINO passes
/// `scale_factor`, which PyTorch then uses directly).
///
/// DINO passes the width-derived factor first, which PyTorch applies to the
/// rows; for square inputs this is the same. We apply the row factor to the
/// rows, which is what the output shape DINO checks for requires.
pub fn interpolate_pos_embed(pos: &Tensor, gh: usize, gw: usize) -> Result<Tensor> {
    let (_, n1, d) = pos.dims3()?;
    let n0 = n1 - 1;
    let s = (n0 as f64).sqrt().round() as usize;
    if gh == s && gw == s {
        return Ok(pos.clone());
    }
    let data: Vec<f32> = pos.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let cls = &data[..d];
    let grid = &data[d..];
    let rows = weights_1d(s, gh, (gh as f64 + 0.1) / s as f64);
    let cols = weights_1d(s, gw, (gw as f64 + 0.1) / s as f64);
    let mut out = Vec::with_capacity((1 + gh * gw) * d);
    out.extend_from_slice(cls);
    let mut acc = vec![0f64; d];
    for (ri, rw) in &rows {
        for (ci, cw) in &cols {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for a in 0..4 {
                for bb in 0..4 {
                    let wgt = rw[a] * cw[bb];
                    let src = &grid[(ri[a] * s + ci[bb]) * d..][..d];
                    for (o, &v) in acc.iter_mut().zip(src) {
                        *o += wgt * v as f64;
                    }
                }
            }
            out.extend(acc.iter().map(|&v| v as f32));
        }
    }
    Ok(Tensor::from_vec(out, (1, 1 + gh * gw, d), pos.device())?.to_dtype(pos.dtype())?)
}

/// For each output index of a bicubic resampling from `n_in` to `n_out`
/// samples at `scale`, the 4 clamped source indices and their weights.
fn weights_1d(n_in: usize, n_out: usize, scale: f64) -> Vec<([usize; 4], [f64; 4])> {
    const A: f64 = -0.75;
    let cubic1 = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let cubic2 = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    (0..n_out)
        .map(|o| {
            let src = (o as f64 + 0.5) / scale - 0.5;
            let f = src.floor();
            let t = src - f;
            let i0 = f as i64;
            let w = [cubic2(t + 1.0), cubic1(t), cubic1(1.0 - t), cubic2(2.0 - t)];
            let idx = std::array::from_fn(|k| (i0 - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize);
            (idx, w)
        })
        .collect()
}
