//! The inference-only forward pass of [`ResNet`] on plain f32 buffers.
//!
//! [`ResNet::forward`] takes this path whenever no gradient is needed (neither the input nor the
//! weights are tracked by candle's graph). It computes the same function as the candle path in
//! `resnet.rs` — which the GradCAM hook and input gradients keep using — with less memory traffic:
//!
//! - every convolution is one `gemm` call `W [Co, Ci·k·k] × cols [Ci·k·k, N]` written straight
//!   into its output buffer, followed by a single fused pass for bias (+ identity) (+ ReLU),
//!   instead of separate candle ops that each allocate and sweep the activation;
//! - the column matrix and the activations live in buffers reused across layers and images
//!   (no allocation, no zero-filling in the steady state; the column extraction writes its
//!   padding zeros explicitly);
//! - the stem and `layer1` run image by image (their activations are the largest), then groups of
//!   up to 8 images are gathered into one `[C, B, H, W]` activation so that the later, smaller
//!   products (28×28 to 7×7 positions per image) run as one wider product each.
//!
//! Activations are channels-first across the batch, `[C, B, H, W]`, as in the candle path.

use candle_core::Tensor;
use gemm::Parallelism;
use rayon::prelude::*;

use crate::cpu::{gemm_into, parallelism, Mat, Raw};
use crate::error::{Error, Result};
use crate::resnet::{Conv, ResNet, ResNetOutput};

/// Layers (0-based, after the stem) that run image by image; the rest run on a group of images.
/// (On a 2-core AVX-512 Xeon, ResNet-50 at 224 px, batch 8: 0 → 20.6 images/s, 1 → 21.4,
/// 2 → 19.6, 3 → 19.0, 4 → 16.4.)
const PER_IMAGE_LAYERS: usize = 1;

/// Images per group: bounds the memory of the batched layers (the column matrix of `layer2`'s
/// first 3×3 convolution is ~29 MB per image at 224 px).
const GROUP: usize = 8;

/// Rows of an elementwise pass handed to one rayon task at least.
const MIN_ROWS: usize = 8;

/// The f32 view of `t`, or an error naming `what`.
fn raw<'a>(t: &'a Tensor, what: &str) -> Result<Raw<'a>> {
    Raw::new(t).ok_or_else(|| Error::Invalid(format!("ResNet {what}: expected a contiguous f32 tensor on the CPU")))
}

/// A folded convolution's weights as slices.
struct RawConv<'a> {
    w: Raw<'a>,
    b: Raw<'a>,
    co: usize,
    kdim: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl<'a> RawConv<'a> {
    fn new(c: &'a Conv) -> Result<Self> {
        let (co, kdim) = c.w.dims2()?;
        let w = raw(&c.w, "convolution weights")?;
        let b = raw(&c.b, "convolution bias")?;
        if w.slice().len() != co * kdim || b.slice().len() != co || kdim % (c.k * c.k) != 0 {
            return Err(Error::Invalid("ResNet convolution with inconsistent shapes".into()));
        }
        Ok(RawConv { w, b, co, kdim, k: c.k, stride: c.stride, pad: c.pad })
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        ((h + 2 * self.pad - self.k) / self.stride + 1, (w + 2 * self.pad - self.k) / self.stride + 1)
    }
}

/// An activation `[c, b, h, w]`.
struct Act {
    data: Vec<f32>,
    c: usize,
    b: usize,
    h: usize,
    w: usize,
}

impl Act {
    fn n(&self) -> usize {
        self.b * self.h * self.w
    }
}

/// Reusable buffers: the column matrix and a free list of activation buffers.
struct Buffers {
    cols: Vec<f32>,
    free: Vec<Vec<f32>>,
    par: Parallelism,
}

impl Buffers {
    /// A buffer of `len` values whose contents are unspecified (the caller overwrites them all).
    fn take(&mut self, len: usize) -> Vec<f32> {
        // The smallest free buffer that is large enough, else the largest one (grown).
        let pick = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)
            .or_else(|| (0..self.free.len()).max_by_key(|&i| self.free[i].capacity()));
        let mut v = match pick {
            Some(i) => self.free.swap_remove(i),
            None => Vec::new(),
        };
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, 0.0);
        }
        v
    }

    fn give(&mut self, v: Vec<f32>) {
        self.free.push(v);
    }
}

/// `dst [m, n] = lhs [m, k] × rhs [k, n]`, all row-major and contiguous.
fn matmul(dst: &mut [f32], lhs: &[f32], rhs: &[f32], m: usize, n: usize, k: usize, par: Parallelism) {
    gemm_into(dst, n, (m, n, k), Mat::rows(lhs, k), Mat::rows(rhs, n), 1.0, par);
}

/// Writes the column matrix of `data` `[C, b, h, w]` for a `k×k` convolution with stride `s` and
/// zero padding `p` into `cols` (`[C·k·k, b·Ho·Wo]`), row `(c·k + i)·k + j` holding
/// `x[c, b, oh·s − p + i, ow·s − p + j]` (zero outside the image; every value is written).
///
/// Also the forward of the candle path's column op (`resnet::Im2Col`).
pub(crate) fn im2col(data: &[f32], (b, h, w): (usize, usize, usize), (k, st, p): (usize, usize, usize), cols: &mut [f32]) {
    let (ho, wo) = ((h + 2 * p - k) / st + 1, (w + 2 * p - k) / st + 1);
    let n = b * ho * wo;
    cols.par_chunks_mut(n).with_min_len(MIN_ROWS).enumerate().for_each(|(row, dst)| {
        let (ch, i, j) = (row / (k * k), (row / k) % k, row % k);
        // Output columns whose input column ow·s − p + j lies inside [0, w).
        let lo = p.saturating_sub(j).div_ceil(st).min(wo);
        let hi = if w + p > j { ((w + p - j - 1) / st + 1).min(wo) } else { 0 }.max(lo);
        for bi in 0..b {
            let src = &data[(ch * b + bi) * h * w..(ch * b + bi + 1) * h * w];
            for oh in 0..ho {
                let d = &mut dst[(bi * ho + oh) * wo..(bi * ho + oh + 1) * wo];
                let ih = (oh * st + i) as isize - p as isize;
                if ih < 0 || ih >= h as isize {
                    d.fill(0.0);
                    continue;
                }
                let srow = &src[ih as usize * w..(ih as usize + 1) * w];
                d[..lo].fill(0.0);
                d[hi..].fill(0.0);
                let first = lo * st + j - p; // ≥ 0 by the choice of lo
                if st == 1 {
                    d[lo..hi].copy_from_slice(&srow[first..first + (hi - lo)]);
                } else {
                    for (v, s) in d[lo..hi].iter_mut().zip(srow[first..].iter().step_by(st)) {
                        *v = *s;
                    }
                }
            }
        }
    });
}

/// The folded convolution `c` of `x`, plus `residual` (same shape as the output) if given, then
/// ReLU if `relu`.
fn conv(x: &Act, c: &RawConv, residual: Option<&[f32]>, relu: bool, buf: &mut Buffers) -> Result<Act> {
    if x.c * c.k * c.k != c.kdim {
        return Err(Error::Shape(format!(
            "ResNet convolution expects {} input channels, got {}",
            c.kdim / (c.k * c.k),
            x.c
        )));
    }
    let (ho, wo) = c.out_hw(x.h, x.w);
    let n = x.b * ho * wo;
    let mut out = buf.take(c.co * n);
    if c.k == 1 && c.stride == 1 && c.pad == 0 {
        matmul(&mut out, c.w.slice(), &x.data, c.co, n, c.kdim, buf.par);
    } else {
        let mut cols = std::mem::take(&mut buf.cols);
        if cols.len() < c.kdim * n {
            cols.resize(c.kdim * n, 0.0);
        }
        im2col(&x.data, (x.b, x.h, x.w), (c.k, c.stride, c.pad), &mut cols[..c.kdim * n]);
        matmul(&mut out, c.w.slice(), &cols[..c.kdim * n], c.co, n, c.kdim, buf.par);
        buf.cols = cols;
    }
    let bias = c.b.slice();
    let epilogue = |(o, row): (usize, &mut [f32]), res: Option<&[f32]>| {
        let bv = bias[o];
        match res {
            Some(r) => {
                for (v, &ri) in row.iter_mut().zip(&r[o * n..(o + 1) * n]) {
                    let s = *v + bv + ri;
                    *v = if relu && s < 0.0 { 0.0 } else { s };
                }
            }
            None => {
                for v in row.iter_mut() {
                    let s = *v + bv;
                    *v = if relu && s < 0.0 { 0.0 } else { s };
                }
            }
        }
    };
    out.par_chunks_mut(n).with_min_len(MIN_ROWS).enumerate().for_each(|r| epilogue(r, residual));
    Ok(Act { data: out, c: c.co, b: x.b, h: ho, w: wo })
}

/// Max pooling 3×3, stride 2, padding 1 of an activation.
fn maxpool(x: &Act, buf: &mut Buffers) -> Act {
    let (ho, wo) = crate::resnet::pool_hw(x.h, x.w);
    let mut out = buf.take(x.c * x.b * ho * wo);
    maxpool_planes(&x.data, (x.h, x.w), &mut out);
    Act { data: out, c: x.c, b: x.b, h: ho, w: wo }
}

/// Max pooling 3×3, stride 2, padding 1 of every `h × w` plane of `x` into `out` (planes of
/// `pool_hw(h, w)`): padding never wins, a NaN in a window wins, as in PyTorch. Also the forward
/// of the candle path's pool op (`resnet::MaxPool3x3s2`).
pub(crate) fn maxpool_planes(x: &[f32], (h, w): (usize, usize), out: &mut [f32]) {
    let (ho, wo) = crate::resnet::pool_hw(h, w);
    #[inline(always)]
    fn mx(a: f32, b: f32) -> f32 {
        if b > a || b.is_nan() {
            b
        } else {
            a
        }
    }
    out.par_chunks_mut(ho * wo).enumerate().for_each(|(pl, dst)| {
        let plane = &x[pl * h * w..(pl + 1) * h * w];
        let mut col = vec![0f32; w];
        for oh in 0..ho {
            let r0 = (2 * oh).saturating_sub(1);
            let r1 = (2 * oh + 2).min(h);
            col.copy_from_slice(&plane[r0 * w..(r0 + 1) * w]);
            for r in r0 + 1..r1 {
                for (c, &v) in col.iter_mut().zip(&plane[r * w..(r + 1) * w]) {
                    *c = mx(*c, v);
                }
            }
            for (ow, d) in dst[oh * wo..(oh + 1) * wo].iter_mut().enumerate() {
                let c0 = (2 * ow).saturating_sub(1);
                let c1 = (2 * ow + 2).min(w);
                let mut m = col[c0];
                for &v in &col[c0 + 1..c1] {
                    m = mx(m, v);
                }
                *d = m;
            }
        }
    });
}

/// One Bottleneck block on `t`, consuming it.
fn bottleneck(t: Act, blk: &[RawConv], buf: &mut Buffers) -> Result<Act> {
    let (c1, c2, c3) = (&blk[0], &blk[1], &blk[2]);
    let down = match blk.get(3) {
        Some(d) => Some(conv(&t, d, None, false, buf)?),
        None => None,
    };
    let y1 = conv(&t, c1, None, true, buf)?;
    let y2 = conv(&y1, c2, None, true, buf)?;
    buf.give(y1.data);
    let identity: &[f32] = match &down {
        Some(d) => &d.data,
        None => &t.data,
    };
    if identity.len() != c3.co * y2.n() {
        return Err(Error::Shape("ResNet block whose identity does not match its output".into()));
    }
    let out = conv(&y2, c3, Some(identity), true, buf)?;
    buf.give(y2.data);
    if let Some(d) = down {
        buf.give(d.data);
    }
    buf.give(t.data);
    Ok(out)
}

/// Logits and pooled features of `x` `[B, 3, H, W]` (f32, CPU, checked by the caller).
pub(crate) fn forward(model: &ResNet, x: &Tensor) -> Result<ResNetOutput> {
    let (b, c, h, w) = x.dims4()?;
    let x = x.contiguous()?;
    let input = raw(&x, "input")?;
    let image = c * h * w;
    let mut logits = Vec::new();
    let mut features = Vec::new();
    for start in (0..b).step_by(GROUP) {
        let n = GROUP.min(b - start);
        let (l, f) = forward_group(model, &input.slice()[start * image..(start + n) * image], (n, c, h, w))?;
        logits.extend_from_slice(&l);
        features.extend_from_slice(&f);
    }
    let device = x.device();
    let (classes, f) = (logits.len() / b.max(1), features.len() / b.max(1));
    Ok(ResNetOutput {
        logits: Tensor::from_vec(logits, (b, classes), device)?,
        features: Tensor::from_vec(features, (b, f), device)?,
    })
}

/// The `layer4` output of `x` `[B, 3, H, W]` (f32, CPU, checked by the caller) as `[B, C, h, w]`,
/// for GradCAM: the activation its hook differentiates at, computed without a graph.
pub(crate) fn layer4(model: &ResNet, x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let x = x.contiguous()?;
    let input = raw(&x, "input")?;
    let image = c * h * w;
    let mut out = Vec::new();
    let mut shape = (0, 0, 0);
    for start in (0..b).step_by(GROUP) {
        let n = GROUP.min(b - start);
        let t = trunk_group(model, &input.slice()[start * image..(start + n) * image], (n, c, h, w))?;
        let plane = t.h * t.w;
        shape = (t.c, t.h, t.w);
        // [C, n, h, w] → [n, C, h, w]
        for bi in 0..n {
            for ch in 0..t.c {
                out.extend_from_slice(&t.data[(ch * n + bi) * plane..(ch * n + bi + 1) * plane]);
            }
        }
    }
    Ok(Tensor::from_vec(out, (b, shape.0, shape.1, shape.2), x.device())?)
}

/// Logits `[b, classes]` and features `[b, F]` of the images `input` `[b, c, h, w]`.
fn forward_group(
    model: &ResNet,
    input: &[f32],
    (b, c, h, w): (usize, usize, usize, usize),
) -> Result<(Vec<f32>, Vec<f32>)> {
    let t = trunk_group(model, input, (b, c, h, w))?;
    // Global average pooling → [B, F], then fc.
    let (f, plane) = (t.c, t.h * t.w);
    let b = t.b;
    let mut features = vec![0f32; b * f];
    for bi in 0..b {
        for ch in 0..f {
            let s = &t.data[(ch * b + bi) * plane..(ch * b + bi + 1) * plane];
            features[bi * f + ch] = s.iter().sum::<f32>() / plane as f32;
        }
    }
    let fc_w = raw(&model.fc_wt, "fc weights")?;
    let fc_b = raw(&model.fc_b, "fc bias")?;
    let classes = fc_b.slice().len();
    if fc_w.slice().len() != f * classes {
        return Err(Error::Shape(format!("ResNet fc expects {} features, got {f}", fc_w.slice().len() / classes.max(1))));
    }
    let mut logits = vec![0f32; b * classes];
    matmul(&mut logits, &features, fc_w.slice(), b, classes, f, Parallelism::None);
    for row in logits.chunks_exact_mut(classes.max(1)) {
        for (v, &bv) in row.iter_mut().zip(fc_b.slice()) {
            *v += bv;
        }
    }
    Ok((logits, features))
}

/// The `layer4` output `[C, b, h, w]` of the images `input` `[b, c, h, w]`.
fn trunk_group(model: &ResNet, input: &[f32], (b, c, h, w): (usize, usize, usize, usize)) -> Result<Act> {
    let stem = RawConv::new(&model.stem)?;
    let mut layers = Vec::with_capacity(model.layers.len());
    for layer in &model.layers {
        let mut blocks = Vec::with_capacity(layer.len());
        for blk in layer {
            let mut convs = vec![RawConv::new(&blk.conv1)?, RawConv::new(&blk.conv2)?, RawConv::new(&blk.conv3)?];
            if let Some(d) = &blk.downsample {
                convs.push(RawConv::new(d)?);
            }
            blocks.push(convs);
        }
        layers.push(blocks);
    }
    let mut buf = Buffers { cols: Vec::new(), free: Vec::new(), par: parallelism() };
    let split = PER_IMAGE_LAYERS.min(layers.len());

    // Stem and the first layers image by image.
    let mut per_image = Vec::with_capacity(b);
    for i in 0..b {
        let mut img = buf.take(c * h * w);
        img.copy_from_slice(&input[i * c * h * w..(i + 1) * c * h * w]);
        let a = Act { data: img, c, b: 1, h, w };
        let s = conv(&a, &stem, None, true, &mut buf)?;
        buf.give(a.data);
        let mut t = maxpool(&s, &mut buf);
        buf.give(s.data);
        for layer in &layers[..split] {
            for blk in layer {
                t = bottleneck(t, blk, &mut buf)?;
            }
        }
        per_image.push(t);
    }
    // Gather into [C, B, H, W].
    let (tc, th, tw) = per_image.first().map_or((0, 0, 0), |t| (t.c, t.h, t.w));
    let plane = th * tw;
    let mut data = if b == 1 {
        per_image.pop().map(|t| t.data).unwrap_or_default()
    } else {
        let mut d = buf.take(tc * b * plane);
        d.par_chunks_mut(b * plane).enumerate().for_each(|(ch, dst)| {
            for (bi, t) in per_image.iter().enumerate() {
                dst[bi * plane..(bi + 1) * plane].copy_from_slice(&t.data[ch * plane..(ch + 1) * plane]);
            }
        });
        for t in per_image {
            buf.give(t.data);
        }
        d
    };
    let mut t = Act { data: std::mem::take(&mut data), c: tc, b, h: th, w: tw };
    for layer in &layers[split..] {
        for blk in layer {
            t = bottleneck(t, blk, &mut buf)?;
        }
    }
    Ok(t)
}
