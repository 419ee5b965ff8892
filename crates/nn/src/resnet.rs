//! ResNet classifiers with Bottleneck blocks in the torchvision layout
//! (`torchvision/models/resnet.py` tensor names and semantics, eval mode),
//! on candle (CPU).
//!
//! Forward pass for an input `[B, 3, H, W]`:
//! 1. stem: `conv1` 7×7 stride 2 padding 3 (no bias) → `bn1` → ReLU →
//!    max pool 3×3 stride 2 padding 1;
//! 2. `layer1..layer4`, each a sequence of Bottleneck blocks
//!    `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))) + identity)` with
//!    `conv1` 1×1, `conv2` 3×3 carrying the layer's stride (ResNet "v1.5",
//!    stride 1 for `layer1`, 2 for the others), `conv3` 1×1 with 4× the
//!    block width; the first block of a layer has `downsample` = 1×1 conv
//!    with the stride + BN on the identity branch;
//! 3. global average pooling → `features` `[B, 4·width4]` (2048 for
//!    ResNet-50) → `fc` → logits.
//!
//! BatchNorm uses the running statistics (ε = 1e-5) and is folded into the
//! preceding convolution at load time (`w' = w·γ/√(σ²+ε)`,
//! `b' = β − μ·γ/√(σ²+ε)`). Internally activations are kept channels-first
//! across the batch (`[C, B, H, W]`), so that every convolution is one
//! matrix product `W [Co, Ci·k·k] × cols [Ci·k·k, B·Ho·Wo]` (1×1 stride-1
//! convolutions need no column matrix). Two paths compute this function:
//! without gradients, [`ResNet::forward`] runs `resnet_infer.rs` on plain
//! buffers; with gradients (tracked inputs or weights, and
//! [`CamTarget::forward_hooked`]) the candle path here runs, whose column
//! extraction and max pool are custom ops with their own backward (their
//! forward calls the same kernels). GradCAM ([`CamTarget::forward_cam`])
//! runs the layers up to `layer4` on the first path.
//!
//! On other devices (CUDA) both paths are replaced by a third, built from
//! candle's own ops only ([`crate::ops`]): `conv2d` in the usual
//! `[B, C, H, W]` layout and a max pool made of nine strided views and
//! `maximum`. It computes the same function and its gradients, and is tested
//! against PyTorch on the CPU ([`ResNet::with_candle_ops`]); the only
//! difference is at exact ties inside a pooling window, where PyTorch routes
//! the gradient to the first maximum and candle's `maximum` splits it. Only
//! this path runs in f16/bf16 ([`ResNet::to_dtype`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

use crate::error::{Error, Result};
use crate::gradcam::{CamLayout, CamTarget};

/// BatchNorm ε of torchvision ResNets.
pub const BN_EPS: f64 = 1e-5;

/// Architecture of a Bottleneck ResNet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Blocks per layer (`[3, 4, 6, 3]` for ResNet-50).
    pub blocks: [usize; 4],
    /// Output channels of the stem convolution (64).
    pub stem: usize,
    /// Bottleneck widths per layer (`[64, 128, 256, 512]`); a block outputs 4× its width.
    pub widths: [usize; 4],
    /// Number of classes of `fc`.
    pub classes: usize,
}

impl ResNetConfig {
    /// torchvision ResNet-50 (1000 classes).
    pub fn resnet50() -> Self {
        ResNetConfig { blocks: [3, 4, 6, 3], stem: 64, widths: [64, 128, 256, 512], classes: 1000 }
    }

    /// Channels of the pooled features (`4 × widths[3]`).
    pub fn feature_dim(&self) -> usize {
        4 * self.widths[3]
    }
}

/// A convolution with its BatchNorm folded in, as a matrix product.
pub(crate) struct Conv {
    /// `[Co, Ci·k·k]`.
    pub(crate) w: Tensor,
    /// `[Co, 1]`.
    pub(crate) b: Tensor,
    pub(crate) k: usize,
    pub(crate) stride: usize,
    pub(crate) pad: usize,
}

pub(crate) struct Bottleneck {
    pub(crate) conv1: Conv,
    pub(crate) conv2: Conv,
    pub(crate) conv3: Conv,
    pub(crate) downsample: Option<Conv>,
}

/// A Bottleneck ResNet with loaded weights.
pub struct ResNet {
    cfg: ResNetConfig,
    pub(crate) stem: Conv,
    pub(crate) layers: Vec<Vec<Bottleneck>>,
    /// `[classes, F]`, transposed to `[F, classes]` for the product.
    pub(crate) fc_wt: Tensor,
    /// `[1, classes]`.
    pub(crate) fc_b: Tensor,
    params: usize,
    device: Device,
    /// Run on candle's built-in ops (every non-CPU device; on the CPU only on request).
    candle_ops: bool,
}

/// The outputs of [`ResNet::forward`].
#[derive(Debug)]
pub struct ResNetOutput {
    /// Logits `[B, classes]`.
    pub logits: Tensor,
    /// Globally pooled output of `layer4` (the input of `fc`), `[B, F]`.
    pub features: Tensor,
}

/// Source of named tensors with expected shapes.
type Getter<'a> = dyn FnMut(&str, &[usize]) -> Result<Tensor> + 'a;

/// The GradCAM hook of [`CamTarget::forward_hooked`].
type Hook<'a> = dyn FnMut(&Tensor) -> Result<Tensor> + 'a;

/// Loads `conv` (`[co, ci, k, k]`, no bias) and BatchNorm `bn` and folds them; `dims = (ci, co, k, stride)`.
fn conv_bn(
    get: &mut Getter,
    conv: &str,
    bn: &str,
    dims: (usize, usize, usize, usize),
    params: &mut usize,
) -> Result<Conv> {
    let (ci, co, k, stride) = dims;
    let w = get(&format!("{conv}.weight"), &[co, ci, k, k])?.to_dtype(DType::F32)?;
    let gamma = get(&format!("{bn}.weight"), &[co])?.to_dtype(DType::F32)?;
    let beta = get(&format!("{bn}.bias"), &[co])?.to_dtype(DType::F32)?;
    let mean = get(&format!("{bn}.running_mean"), &[co])?.to_dtype(DType::F32)?;
    let var = get(&format!("{bn}.running_var"), &[co])?.to_dtype(DType::F32)?;
    *params += co * ci * k * k + 2 * co;
    // Fold in f64 for accuracy.
    let scale = (gamma.to_dtype(DType::F64)? / (var.to_dtype(DType::F64)? + BN_EPS)?.sqrt()?)?;
    let b = (beta.to_dtype(DType::F64)? - (mean.to_dtype(DType::F64)? * &scale)?)?;
    let w = w.to_dtype(DType::F64)?.reshape((co, ci * k * k))?.broadcast_mul(&scale.unsqueeze(1)?)?;
    Ok(Conv {
        w: w.to_dtype(DType::F32)?.contiguous()?,
        b: b.to_dtype(DType::F32)?.reshape((co, 1))?,
        k,
        stride,
        pad: k / 2,
    })
}

impl ResNet {
    /// Builds the model from torchvision-named tensors supplied by `get(name, shape)`, which must
    /// return a tensor of exactly `shape` or an error naming the tensor.
    pub fn build(cfg: ResNetConfig, device: &Device, get: &mut Getter) -> Result<Self> {
        if cfg.blocks.contains(&0) || cfg.stem == 0 || cfg.widths.contains(&0) || cfg.classes == 0 {
            return Err(Error::Invalid(format!("invalid ResNet configuration {cfg:?}")));
        }
        let mut params = 0;
        let stem = conv_bn(get, "conv1", "bn1", (3, cfg.stem, 7, 2), &mut params)?;
        let mut inp = cfg.stem;
        let mut layers = Vec::with_capacity(4);
        for (l, (&n, &w)) in cfg.blocks.iter().zip(&cfg.widths).enumerate() {
            let stride = if l == 0 { 1 } else { 2 };
            let mut blocks = Vec::with_capacity(n);
            for i in 0..n {
                let p = format!("layer{}.{i}", l + 1);
                let s = if i == 0 { stride } else { 1 };
                let conv1 = conv_bn(get, &format!("{p}.conv1"), &format!("{p}.bn1"), (inp, w, 1, 1), &mut params)?;
                let conv2 = conv_bn(get, &format!("{p}.conv2"), &format!("{p}.bn2"), (w, w, 3, s), &mut params)?;
                let conv3 = conv_bn(get, &format!("{p}.conv3"), &format!("{p}.bn3"), (w, 4 * w, 1, 1), &mut params)?;
                let downsample = if i == 0 && (s != 1 || inp != 4 * w) {
                    Some(conv_bn(
                        get,
                        &format!("{p}.downsample.0"),
                        &format!("{p}.downsample.1"),
                        (inp, 4 * w, 1, s),
                        &mut params,
                    )?)
                } else {
                    None
                };
                blocks.push(Bottleneck { conv1, conv2, conv3, downsample });
                inp = 4 * w;
            }
            layers.push(blocks);
        }
        let fc_w = get("fc.weight", &[cfg.classes, inp])?.to_dtype(DType::F32)?;
        let fc_b = get("fc.bias", &[cfg.classes])?.to_dtype(DType::F32)?;
        params += cfg.classes * inp + cfg.classes;
        Ok(ResNet {
            fc_wt: fc_w.t()?.contiguous()?,
            fc_b: fc_b.reshape((1, cfg.classes))?,
            cfg,
            stem,
            layers,
            params,
            candle_ops: !matches!(device, Device::Cpu),
            device: device.clone(),
        })
    }

    /// Builds the model from a candle `VarBuilder` (e.g. `VarBuilder::zeros` for shape tests).
    pub fn from_var_builder(cfg: ResNetConfig, vb: candle_nn::VarBuilder) -> Result<Self> {
        let device = vb.device().clone();
        let mut get = |name: &str, shape: &[usize]| -> Result<Tensor> { Ok(vb.get(shape, name)?) };
        Self::build(cfg, &device, &mut get)
    }

    /// Loads a torchvision-layout `.safetensors` file; the configuration (blocks per layer, widths,
    /// classes) is read from the tensor names and shapes. `num_batches_tracked` and unknown tensors are
    /// ignored. A missing tensor or a wrong shape gives [`Error::Weights`] naming the file and tensor.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let werr = |message: String| Error::Weights { path: path.to_path_buf(), message };
        let tensors = candle_core::safetensors::load(path, device).map_err(|e| werr(format!("cannot read: {e}")))?;
        let cfg = infer_config(&tensors).map_err(werr)?;
        let mut get = tensor_getter(&tensors, path.to_path_buf());
        Self::build(cfg, device, &mut get)
    }

    /// The architecture.
    pub fn config(&self) -> &ResNetConfig {
        &self.cfg
    }

    /// Number of learnable parameters (convolution and fc weights, BN weights and biases; not the
    /// running statistics), as torchvision's `sum(p.numel() for p in model.parameters())`.
    pub fn num_parameters(&self) -> usize {
        self.params
    }

    /// Runs every pass on candle's built-in ops (`conv2d`, strided views and `maximum`), the path
    /// that non-CPU devices take, also on the CPU. Slower than the CPU paths; it exists so that the
    /// device path can be tested and compared on any machine.
    pub fn with_candle_ops(mut self) -> Self {
        self.candle_ops = true;
        self
    }

    /// Whether passes run on candle's built-in ops (see [`ResNet::with_candle_ops`]).
    pub fn uses_candle_ops(&self) -> bool {
        self.candle_ops
    }

    /// The model with its (BatchNorm-folded) weights and computation in `dtype`: f32 everywhere;
    /// f16 and bf16 on the candle-ops path only (non-CPU devices, or [`ResNet::with_candle_ops`]),
    /// because the CPU kernels are f32; bf16 needs a CUDA device (candle's CPU backend has no bf16
    /// matrix product). Outputs come back as f32; gradients need f32.
    pub fn to_dtype(self, dtype: DType) -> Result<Self> {
        if dtype == self.dtype() {
            return Ok(self);
        }
        match dtype {
            DType::F32 | DType::F16 | DType::BF16 => {}
            _ => return Err(Error::Invalid(format!("ResNet weights in {dtype:?}: expected f32, f16 or bf16"))),
        }
        if dtype != DType::F32 && !self.candle_ops {
            return Err(Error::Invalid(format!(
                "the ResNet's CPU kernels run in f32 only; {dtype:?} runs on a GPU (--device cuda)"
            )));
        }
        if dtype == DType::BF16 && self.device.is_cpu() {
            return Err(Error::Invalid("bf16 needs a CUDA device; on the CPU use f16 or f32".into()));
        }
        let conv = |c: &Conv| -> Result<Conv> {
            Ok(Conv { w: c.w.to_dtype(dtype)?, b: c.b.to_dtype(dtype)?, k: c.k, stride: c.stride, pad: c.pad })
        };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                l.iter()
                    .map(|b| {
                        Ok(Bottleneck {
                            conv1: conv(&b.conv1)?,
                            conv2: conv(&b.conv2)?,
                            conv3: conv(&b.conv3)?,
                            downsample: b.downsample.as_ref().map(conv).transpose()?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ResNet {
            stem: conv(&self.stem)?,
            layers,
            fc_wt: self.fc_wt.to_dtype(dtype)?,
            fc_b: self.fc_b.to_dtype(dtype)?,
            ..self
        })
    }

    /// The dtype of the weights and of the computation.
    pub fn dtype(&self) -> DType {
        self.stem.w.dtype()
    }

    /// Logits and pooled features for `x` `[B, 3, H, W]` (normalised RGB).
    ///
    /// When no gradient is needed (neither `x` nor the weights are tracked by candle's graph), this
    /// runs the inference-only path of `resnet_infer.rs` (one matrix product per convolution into
    /// reused buffers, fused bias/identity/ReLU); otherwise the differentiable candle path, image
    /// by image. Both compute the same function (tested against PyTorch). On a non-CPU device, or
    /// after [`ResNet::with_candle_ops`], the whole batch runs on candle's ops instead.
    pub fn forward(&self, x: &Tensor) -> Result<ResNetOutput> {
        let b = x.dims().first().copied().unwrap_or(0);
        if self.candle_ops {
            return self.run(x, None);
        }
        if x.rank() == 4 && b > 0 && !x.track_op() && !self.stem.w.track_op() {
            self.check_input(x)?;
            return crate::resnet_infer::forward(self, &x.to_dtype(DType::F32)?);
        }
        if b <= 1 || x.rank() != 4 {
            return self.run(x, None);
        }
        let mut logits = Vec::with_capacity(b);
        let mut features = Vec::with_capacity(b);
        for i in 0..b {
            let o = self.run(&x.narrow(0, i, 1)?, None)?;
            logits.push(o.logits);
            features.push(o.features);
        }
        Ok(ResNetOutput { logits: Tensor::cat(&logits, 0)?, features: Tensor::cat(&features, 0)? })
    }

    /// The differentiable forward pass (candle ops).
    #[doc(hidden)]
    pub fn forward_differentiable(&self, x: &Tensor) -> Result<ResNetOutput> {
        self.run(x, None)
    }

    /// Checks that `x` is `[B, 3, H, W]` with H, W ≥ 32 and on the model's device.
    fn check_input(&self, x: &Tensor) -> Result<(usize, usize, usize, usize)> {
        let (b, c, h, w) = x
            .dims4()
            .map_err(|_| Error::Shape(format!("ResNet input of shape {:?}; expected [B, 3, H, W]", x.dims())))?;
        if c != 3 || h < 32 || w < 32 {
            return Err(Error::Shape(format!(
                "ResNet input of shape {:?}; expected [B, 3, H, W] with H, W ≥ 32",
                x.dims()
            )));
        }
        if !x.device().same_device(&self.device) {
            return Err(Error::Invalid(format!(
                "ResNet input on {:?} but the model on {:?}; move the input to the model's device",
                x.device().location(),
                self.device.location()
            )));
        }
        Ok((b, c, h, w))
    }

    fn run(&self, x: &Tensor, hook: Option<&mut Hook>) -> Result<ResNetOutput> {
        if self.candle_ops {
            return self.run_candle_ops(x, hook);
        }
        let (b, _, _, _) = self.check_input(x)?;
        // [C, B, H, W]
        let t = x.to_dtype(DType::F32)?.transpose(0, 1)?.contiguous()?;
        let mut t = self.body(t, &conv, &|t| Ok(t.apply_op1(MaxPool3x3s2)?))?;
        if let Some(hook) = hook {
            let a = t.transpose(0, 1)?.contiguous()?; // [B, C, h, w]
            let a = hook(&a)?;
            t = a.transpose(0, 1)?.contiguous()?;
        }
        let (f, _, _, _) = t.dims4()?;
        let features = t.reshape((f, b, ()))?.mean(2)?.t()?.contiguous()?; // [B, F]
        let logits = features.matmul(&self.fc_wt)?.broadcast_add(&self.fc_b)?;
        Ok(ResNetOutput { logits, features })
    }

    /// Stem, max pool and `layer1..layer4` of the candle paths, with the convolution and the pool of
    /// the path's layout; returns the output of `layer4`.
    fn body(
        &self,
        x: Tensor,
        conv: &dyn Fn(&Tensor, &Conv) -> Result<Tensor>,
        pool: &dyn Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut t = pool(&conv(&x, &self.stem)?.relu()?)?;
        for layer in &self.layers {
            for blk in layer {
                let identity = match &blk.downsample {
                    Some(d) => conv(&t, d)?,
                    None => t.clone(),
                };
                let y = conv(&t, &blk.conv1)?.relu()?;
                let y = conv(&y, &blk.conv2)?.relu()?;
                let y = conv(&y, &blk.conv3)?;
                t = (y + identity)?.relu()?;
            }
        }
        Ok(t)
    }

    /// The forward pass on candle's built-in ops, `[B, C, H, W]` throughout (any device).
    fn run_candle_ops(&self, x: &Tensor, hook: Option<&mut Hook>) -> Result<ResNetOutput> {
        let (b, _, _, _) = self.check_input(x)?;
        let dtype = self.dtype();
        if hook.is_some() && dtype != DType::F32 {
            return Err(Error::Invalid(format!("gradients (GradCAM, saliency) need the model in f32, not {dtype:?}")));
        }
        let mut t = self.body(x.to_dtype(dtype)?, &conv_nchw, &crate::ops::max_pool_3x3_s2)?;
        if let Some(hook) = hook {
            t = hook(&t)?;
        }
        let (_, f, _, _) = t.dims4()?;
        let features = t.reshape((b, f, ()))?.mean(2)?; // [B, F]
        let logits = features.matmul(&self.fc_wt)?.broadcast_add(&self.fc_b)?;
        Ok(ResNetOutput { logits: logits.to_dtype(DType::F32)?, features: features.to_dtype(DType::F32)? })
    }
}

impl CamTarget for ResNet {
    /// Target: the output of `layer4` (after the last block's ReLU), `[B, 4·width4, h, w]`.
    fn forward_hooked(
        &self,
        x: &Tensor,
        hook: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<(Tensor, CamLayout)> {
        let out = self.run(x, Some(hook))?;
        Ok((out.logits, CamLayout::ChannelsFirst))
    }

    /// GradCAM needs gradients only at and after `layer4`: the layers up to it run on the
    /// inference path (no graph), then the hook, the average pooling and `fc` on candle's ops.
    /// Inputs or weights that gradients track keep [`CamTarget::forward_hooked`].
    fn forward_cam(&self, x: &Tensor, hook: &mut dyn FnMut(&Tensor) -> Result<Tensor>) -> Result<(Tensor, CamLayout)> {
        let b = x.dims().first().copied().unwrap_or(0);
        if self.candle_ops || x.rank() != 4 || b == 0 || x.track_op() || self.stem.w.track_op() {
            return self.forward_hooked(x, hook);
        }
        self.check_input(x)?;
        let a = crate::resnet_infer::layer4(self, &x.to_dtype(DType::F32)?)?; // [B, C, h, w]
        let a = hook(&a)?;
        let (b, c, h, w) = a.dims4()?;
        let features = a.reshape((b, c, h * w))?.mean(2)?;
        let logits = features.matmul(&self.fc_wt)?.broadcast_add(&self.fc_b)?;
        Ok((logits, CamLayout::ChannelsFirst))
    }
}

/// Reads the configuration from torchvision tensor names and shapes.
fn infer_config(t: &HashMap<String, Tensor>) -> std::result::Result<ResNetConfig, String> {
    let dim = |name: &str, i: usize| -> std::result::Result<usize, String> {
        let v = t.get(name).ok_or_else(|| format!("missing tensor \"{name}\""))?;
        v.dims().get(i).copied().ok_or_else(|| format!("tensor \"{name}\": shape {:?} has no dimension {i}", v.dims()))
    };
    let stem = dim("conv1.weight", 0)?;
    let mut blocks = [0; 4];
    let mut widths = [0; 4];
    for l in 0..4 {
        while t.contains_key(&format!("layer{}.{}.conv1.weight", l + 1, blocks[l])) {
            blocks[l] += 1;
        }
        if blocks[l] == 0 {
            return Err(format!("missing tensor \"layer{}.0.conv1.weight\" (no blocks in layer{})", l + 1, l + 1));
        }
        widths[l] = dim(&format!("layer{}.0.conv1.weight", l + 1), 0)?;
    }
    let classes = dim("fc.weight", 0)?;
    Ok(ResNetConfig { blocks, stem, widths, classes })
}

/// A getter over loaded tensors that names `path` and the tensor in its errors.
fn tensor_getter(
    tensors: &HashMap<String, Tensor>,
    path: PathBuf,
) -> impl FnMut(&str, &[usize]) -> Result<Tensor> + '_ {
    move |name: &str, shape: &[usize]| -> Result<Tensor> {
        let werr = |message: String| Error::Weights { path: path.clone(), message };
        let t = tensors.get(name).ok_or_else(|| werr(format!("missing tensor \"{name}\"")))?;
        if t.dims() != shape {
            return Err(werr(format!("tensor \"{name}\": shape {:?}; expected {shape:?}", t.dims())));
        }
        if !t.dtype().is_float() {
            return Err(werr(format!("tensor \"{name}\": dtype {:?}; expected a float type", t.dtype())));
        }
        Ok(t.clone())
    }
}

/// `conv(x)` for `x` `[Ci, B, H, W]` → `[Co, B, Ho, Wo]` (BN folded, no activation).
fn conv(x: &Tensor, c: &Conv) -> Result<Tensor> {
    let (ci, b, h, w) = x.dims4()?;
    let (ho, wo) = ((h + 2 * c.pad - c.k) / c.stride + 1, (w + 2 * c.pad - c.k) / c.stride + 1);
    let cols = if c.k == 1 && c.stride == 1 {
        x.reshape((ci, b * h * w))?
    } else {
        x.apply_op1(Im2Col { k: c.k, stride: c.stride, pad: c.pad })?
    };
    let y = c.w.matmul(&cols)?.broadcast_add(&c.b)?;
    Ok(y.reshape(((), b, ho, wo))?)
}

/// `conv(x)` for `x` `[B, Ci, H, W]` → `[B, Co, Ho, Wo]` with candle's `conv2d` (BN folded, no
/// activation).
fn conv_nchw(x: &Tensor, c: &Conv) -> Result<Tensor> {
    let (co, cikk) = c.w.dims2()?;
    let w = c.w.reshape((co, cikk / (c.k * c.k), c.k, c.k))?;
    crate::ops::conv2d(x, &w, Some(&c.b), c.pad, c.stride)
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("{op}: expected f32 input"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: expected a contiguous input"),
    }
}

/// Runs `f(chunk_index, chunk)` over `out` split in chunks of `chunk` elements, on up to
/// `available_parallelism` threads.
fn par_chunks(out: &mut [f32], chunk: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = out.len() / chunk.max(1);
    if threads <= 1 || n < 2 {
        for (i, c) in out.chunks_mut(chunk.max(1)).enumerate() {
            f(i, c);
        }
        return;
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (t, part) in out.chunks_mut(per * chunk).enumerate() {
            s.spawn(move || {
                for (i, c) in part.chunks_mut(chunk).enumerate() {
                    f(t * per + i, c);
                }
            });
        }
    });
}

/// Column extraction for a `k×k` convolution with `stride` and zero `pad` on `[C, B, H, W]`:
/// output `[C·k·k, B·Ho·Wo]`, row `(c·k + i)·k + j` holding `x[c, b, oh·s − p + i, ow·s − p + j]`.
struct Im2Col {
    k: usize,
    stride: usize,
    pad: usize,
}

impl Im2Col {
    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        ((h + 2 * self.pad - self.k) / self.stride + 1, (w + 2 * self.pad - self.k) / self.stride + 1)
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "resnet-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "im2col")?;
        let (c, b, h, w) = l.shape().dims4()?;
        let (ho, wo) = self.out_hw(h, w);
        let n = b * ho * wo;
        let mut out = vec![0f32; c * self.k * self.k * n];
        crate::resnet_infer::im2col(x, (b, h, w), (self.k, self.stride, self.pad), &mut out);
        Ok((CpuStorage::F32(out), Shape::from((c * self.k * self.k, n))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (c, b, h, w) = arg.dims4()?;
        let (k, st, p) = (self.k, self.stride, self.pad);
        let (ho, wo) = self.out_hw(h, w);
        let g = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let n = b * ho * wo;
        let mut out = vec![0f32; c * b * h * w];
        // One chunk per input channel: rows (ch, ·, ·) of the columns add into x[ch].
        par_chunks(&mut out, b * h * w, &|ch, dst| {
            for i in 0..k {
                for j in 0..k {
                    let grow = &g[((ch * k + i) * k + j) * n..((ch * k + i) * k + j + 1) * n];
                    for bi in 0..b {
                        for oh in 0..ho {
                            let ih = (oh * st + i) as isize - p as isize;
                            if ih < 0 || ih >= h as isize {
                                continue;
                            }
                            let drow = &mut dst[(bi * h + ih as usize) * w..(bi * h + ih as usize + 1) * w];
                            let gsrc = &grow[(bi * ho + oh) * wo..(bi * ho + oh + 1) * wo];
                            for (ow, gv) in gsrc.iter().enumerate() {
                                let iw = (ow * st + j) as isize - p as isize;
                                if iw >= 0 && iw < w as isize {
                                    drow[iw as usize] += gv;
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok(Some(Tensor::from_vec(out, (c, b, h, w), arg.device())?))
    }
}

/// Max pooling 3×3, stride 2, padding 1 (padding never wins, as PyTorch's `-inf` padding) on
/// `[C, B, H, W]`. The backward routes each gradient to the first maximum of its window in row-major
/// order, as PyTorch's CPU kernel.
struct MaxPool3x3s2;

pub(crate) fn pool_hw(h: usize, w: usize) -> (usize, usize) {
    ((h + 2 - 3) / 2 + 1, (w + 2 - 3) / 2 + 1)
}

/// Index in the plane `h×w` of the first maximum of window `(oh, ow)`.
#[inline]
fn pool_argmax(plane: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> usize {
    let mut best = usize::MAX;
    let mut bv = f32::NEG_INFINITY;
    for ih in (2 * oh).saturating_sub(1)..(2 * oh + 2).min(h) {
        for iw in (2 * ow).saturating_sub(1)..(2 * ow + 2).min(w) {
            let v = plane[ih * w + iw];
            if best == usize::MAX || v > bv || v.is_nan() {
                best = ih * w + iw;
                bv = v;
            }
        }
    }
    best
}

impl CustomOp1 for MaxPool3x3s2 {
    fn name(&self) -> &'static str {
        "resnet-maxpool3x3s2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "maxpool")?;
        let (c, b, h, w) = l.shape().dims4()?;
        let (ho, wo) = pool_hw(h, w);
        let mut out = vec![0f32; c * b * ho * wo];
        crate::resnet_infer::maxpool_planes(x, (h, w), &mut out);
        Ok((CpuStorage::F32(out), Shape::from((c, b, ho, wo))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (c, b, h, w) = arg.dims4()?;
        let (ho, wo) = pool_hw(h, w);
        let x = arg.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; c * b * h * w];
        par_chunks(&mut out, h * w, &|pl, dst| {
            let plane = &x[pl * h * w..(pl + 1) * h * w];
            for oh in 0..ho {
                for ow in 0..wo {
                    dst[pool_argmax(plane, h, w, oh, ow)] += g[pl * ho * wo + oh * wo + ow];
                }
            }
        });
        Ok(Some(Tensor::from_vec(out, (c, b, h, w), arg.device())?))
    }
}
