//! Image resampling with the same definition as Pillow's `Image.resize`.
//!
//! Pillow resizes an 8-bit image in two separable passes (its
//! `ImagingResample`), and this module reproduces that definition so that the
//! `u8` output is identical:
//!
//! * **Coefficients.** For an axis of `in_size` source pixels mapped onto
//!   `out_size` destination pixels, `scale = in_size / out_size`. When shrinking
//!   (`scale > 1`) the filter is stretched by `scale` (antialiasing); when
//!   enlarging it keeps its natural width. The support (half width) of the
//!   stretched filter is `support * max(scale, 1)`. Destination pixel `d` has
//!   its centre at `(d + 0.5) * scale` in source coordinates; the source pixels
//!   it reads are `[trunc(centre - support + 0.5), trunc(centre + support + 0.5))`
//!   clamped to the image, and source pixel `s` gets the weight
//!   `filter((s - centre + 0.5) / max(scale, 1))`. The weights of one
//!   destination pixel are divided by their sum (see [`precompute_coeffs`]).
//! * **Fixed point.** The normalised weights are converted to integers with
//!   22 fractional bits (`32 - 8 - 2`), rounding half away from zero. Each
//!   destination value is `(2^21 + Σ weight·pixel) >> 22`, clipped to `0..=255`
//!   (see [`to_fixed_point`]).
//! * **Passes.** Normally the horizontal pass runs first (only on the source
//!   rows the vertical pass will read), its result is stored as `u8`, then the
//!   vertical pass runs on it. Pillow 13 runs the vertical pass first when the
//!   height loses more than twice as many pixels as the width
//!   ([`horizontal_first`]); since each pass rounds to `u8`, the order changes
//!   the result, so it is reproduced. A pass whose axis keeps its size is skipped, and an image
//!   whose size does not change is returned unchanged.
//! * **Filters** ([`Filter`]): box (support ½), bilinear / triangle (support 1),
//!   Hamming (support 1), bicubic with `a = -0.5` (support 2) and Lanczos-3
//!   (windowed sinc, support 3).
//! * **Nearest** does not use the two passes: Pillow maps destination pixel `d`
//!   to source pixel `trunc(scale / 2 + d · scale)`, the position being
//!   accumulated by repeated addition of `scale` in `f64`; this module does the
//!   same.

use std::str::FromStr;

use image::RgbImage;

use crate::error::{Error, Result};

/// Number of fractional bits of the fixed-point weights (Pillow's
/// `PRECISION_BITS` = 32 − 8 − 2).
pub const PRECISION_BITS: u32 = 22;

/// A resampling filter of [`resize`], named as in Pillow's `Image.Resampling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Nearest neighbour (`Image.NEAREST`).
    Nearest,
    /// Box, support ½ (`Image.BOX`).
    Box,
    /// Triangle, support 1 (`Image.BILINEAR`).
    Bilinear,
    /// Hamming-windowed sinc, support 1 (`Image.HAMMING`).
    Hamming,
    /// Cubic convolution with `a = -0.5`, support 2 (`Image.BICUBIC`).
    Bicubic,
    /// Lanczos-3 windowed sinc, support 3 (`Image.LANCZOS`).
    Lanczos,
}

impl Filter {
    /// Every filter, in Pillow's numbering order.
    pub const ALL: [Filter; 6] =
        [Filter::Nearest, Filter::Lanczos, Filter::Bilinear, Filter::Bicubic, Filter::Box, Filter::Hamming];

    /// The lower-case name (`"bilinear"`, ...), accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Filter::Nearest => "nearest",
            Filter::Box => "box",
            Filter::Bilinear => "bilinear",
            Filter::Hamming => "hamming",
            Filter::Bicubic => "bicubic",
            Filter::Lanczos => "lanczos",
        }
    }

    /// Half width of the unscaled filter, in source pixels.
    pub fn support(self) -> f64 {
        match self {
            Filter::Nearest => 0.0,
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    /// The filter kernel at offset `x` (in unscaled source pixels).
    pub fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => {
                // Half-open interval (-½, ½]: exactly one of two neighbours
                // at distance ½ gets the weight.
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let px = x * std::f64::consts::PI;
                    // Pillow writes the window constants as single-precision literals.
                    px.sin() / px * (f64::from(0.54f32) + f64::from(0.46f32) * px.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = x * std::f64::consts::PI;
        px.sin() / px
    }
}

impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Filter {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "nearest" => Ok(Filter::Nearest),
            "box" => Ok(Filter::Box),
            "bilinear" | "linear" | "triangle" => Ok(Filter::Bilinear),
            "hamming" => Ok(Filter::Hamming),
            "bicubic" | "cubic" => Ok(Filter::Bicubic),
            "lanczos" | "antialias" => Ok(Filter::Lanczos),
            _ => Err(Error::Invalid(format!(
                "unknown interpolation {s:?}: expected nearest, box, bilinear, hamming, bicubic or lanczos"
            ))),
        }
    }
}

/// Resampling weights of one axis (Pillow's `precompute_coeffs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Coefficients {
    /// Weights per destination pixel (the row length of [`Coefficients::weights`]).
    pub ksize: usize,
    /// Per destination pixel: first source index and number of source pixels read.
    pub bounds: Vec<(usize, usize)>,
    /// `out_size × ksize` normalised weights; entries past a pixel's count are 0.
    pub weights: Vec<f64>,
}

/// Computes the normalised weights that map source pixels `in0..in1` of an axis
/// of `in_size` pixels onto `out_size` destination pixels with `filter`.
///
/// `in0`/`in1` are single precision as in Pillow (its `box` argument); for a
/// whole-image resize they are `0` and `in_size`. Returns an error for zero
/// sizes or the nearest filter (which has no weights).
pub fn precompute_coeffs(in_size: usize, in0: f32, in1: f32, out_size: usize, filter: Filter) -> Result<Coefficients> {
    if in_size == 0 || out_size == 0 {
        return Err(Error::Invalid(format!("cannot resample {in_size} pixels to {out_size}: sizes must be non-zero")));
    }
    if filter == Filter::Nearest {
        return Err(Error::Invalid("the nearest filter has no resampling coefficients".into()));
    }
    let scale = f64::from(in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut weights = vec![0.0f64; out_size * ksize];
    let mut bounds = Vec::with_capacity(out_size);
    let ss = 1.0 / filterscale;
    for (xx, k) in weights.chunks_exact_mut(ksize).enumerate() {
        let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
        // C casts truncate toward zero; negative starts are then clamped.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let count = (xmax - xmin as i64).max(0) as usize;
        let mut ww = 0.0;
        for (x, w) in k.iter_mut().take(count).enumerate() {
            *w = filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *w;
        }
        if ww != 0.0 {
            for w in k.iter_mut().take(count) {
                *w /= ww;
            }
        }
        bounds.push((xmin, count));
    }
    Ok(Coefficients { ksize, bounds, weights })
}

/// Converts normalised weights to Pillow's 8-bit fixed point:
/// `round_half_away_from_zero(w · 2^22)`.
pub fn to_fixed_point(weights: &[f64]) -> Vec<i32> {
    let one = f64::from(1u32 << PRECISION_BITS);
    weights.iter().map(|&w| if w < 0.0 { (-0.5 + w * one) as i32 } else { (0.5 + w * one) as i32 }).collect()
}

/// The whole-axis coefficients of one resize (`in0 = 0`, `in1 = in_size`)
/// and their fixed-point form.
struct AxisCoeffs {
    c: Coefficients,
    kk: Vec<i32>,
}

/// [`AxisCoeffs`] from a small per-thread cache: a loader meets the same few
/// image sizes again and again, and each image asks for its two axes twice
/// (the decoder's source region, then the resize).
fn axis_coeffs(in_size: usize, out_size: usize, filter: Filter) -> Result<std::rc::Rc<AxisCoeffs>> {
    use std::cell::RefCell;
    use std::rc::Rc;
    type Entry = ((usize, usize, Filter), Rc<AxisCoeffs>);
    const KEEP: usize = 16;
    thread_local! {
        static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    }
    let key = (in_size, out_size, filter);
    if let Some(hit) = CACHE.with(|c| c.borrow().iter().find(|(k, _)| *k == key).map(|(_, v)| Rc::clone(v))) {
        return Ok(hit);
    }
    let c = precompute_coeffs(in_size, 0.0, in_size as f32, out_size, filter)?;
    let kk = to_fixed_point(&c.weights);
    let entry = Rc::new(AxisCoeffs { c, kk });
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() == KEEP {
            cache.remove(0); // the oldest
        }
        cache.push((key, Rc::clone(&entry)));
    });
    Ok(entry)
}

#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// The coefficients of a run of consecutive destination pixels of one axis.
#[derive(Clone, Copy)]
struct Taps<'a> {
    ksize: usize,
    bounds: &'a [(usize, usize)],
    kk: &'a [i32],
}

impl<'a> Taps<'a> {
    fn new(c: &'a Coefficients, kk: &'a [i32], range: std::ops::Range<usize>) -> Self {
        Taps { ksize: c.ksize, bounds: &c.bounds[range.clone()], kk: &kk[range.start * c.ksize..range.end * c.ksize] }
    }
    /// First and one-past-last source index read.
    fn span(&self) -> (usize, usize) {
        let first = self.bounds.iter().map(|b| b.0).min().unwrap_or(0);
        let last = self.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        (first, last)
    }
}

/// Horizontal pass on packed RGB rows `row0..row0 + rows` of `src`
/// (`src_w` pixels wide); source indices of `t` are relative to column `col0`.
/// Rows are processed four at a time so each coefficient is loaded once per
/// four rows.
fn horizontal(src: &[u8], src_w: usize, col0: usize, row0: usize, rows: usize, t: Taps<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    horizontal_into(src, src_w, col0, row0, rows, t, &mut out);
    out
}

/// Runs `f` with this thread's scratch buffer for the intermediate image of
/// a two-pass resize (kept between calls: no fresh memory per image).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    use std::cell::RefCell;
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let r = f(&mut buf);
    SCRATCH.with(|s| *s.borrow_mut() = buf);
    r
}

/// [`horizontal`] into `out` (resized to the result; every byte written).
fn horizontal_into(src: &[u8], src_w: usize, col0: usize, row0: usize, rows: usize, t: Taps<'_>, out: &mut Vec<u8>) {
    let out_w = t.bounds.len();
    let ostride = out_w * 3;
    let stride = src_w * 3;
    out.resize(ostride * rows, 0); // old values stay: every byte is written
    let mut r = 0;
    while r + 4 <= rows {
        let row = |q: usize| {
            let start = (row0 + r + q) * stride + col0 * 3;
            &src[start..(row0 + r + q + 1) * stride]
        };
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                let starts = [0, 1, 2, 3].map(|q| (row0 + r + q) * stride + col0 * 3);
                let (o01, o23) = out[r * ostride..(r + 4) * ostride].split_at_mut(2 * ostride);
                let (o0, o1) = o01.split_at_mut(ostride);
                let (o2, o3) = o23.split_at_mut(ostride);
                // SAFETY: the CPU has AVX2 (checked just above).
                unsafe { horizontal4_avx2(src, starts, t, [o0, o1, o2, o3]) };
                r += 4;
                continue;
            }
        }
        let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
        let (o01, o23) = out[r * ostride..(r + 4) * ostride].split_at_mut(2 * ostride);
        let (o0, o1) = o01.split_at_mut(ostride);
        let (o2, o3) = o23.split_at_mut(ostride);
        for (xx, &(xmin, count)) in t.bounds.iter().enumerate() {
            let k = &t.kk[xx * t.ksize..xx * t.ksize + count];
            let span = xmin * 3..(xmin + count) * 3;
            let (p0, p1, p2, p3) = (&r0[span.clone()], &r1[span.clone()], &r2[span.clone()], &r3[span]);
            let mut s = [HALF; 12];
            for ((((&w, a), b), c), d) in
                k.iter().zip(p0.chunks_exact(3)).zip(p1.chunks_exact(3)).zip(p2.chunks_exact(3)).zip(p3.chunks_exact(3))
            {
                s[0] += i32::from(a[0]) * w;
                s[1] += i32::from(a[1]) * w;
                s[2] += i32::from(a[2]) * w;
                s[3] += i32::from(b[0]) * w;
                s[4] += i32::from(b[1]) * w;
                s[5] += i32::from(b[2]) * w;
                s[6] += i32::from(c[0]) * w;
                s[7] += i32::from(c[1]) * w;
                s[8] += i32::from(c[2]) * w;
                s[9] += i32::from(d[0]) * w;
                s[10] += i32::from(d[1]) * w;
                s[11] += i32::from(d[2]) * w;
            }
            let d = xx * 3;
            for (q, o) in [&mut *o0, &mut *o1, &mut *o2, &mut *o3].into_iter().enumerate() {
                o[d] = clip8(s[q * 3]);
                o[d + 1] = clip8(s[q * 3 + 1]);
                o[d + 2] = clip8(s[q * 3 + 2]);
            }
        }
        r += 4;
    }
    for r in r..rows {
        let srow = &src[(row0 + r) * stride + col0 * 3..(row0 + r + 1) * stride];
        let orow = &mut out[r * ostride..(r + 1) * ostride];
        for (xx, (o, &(xmin, count))) in orow.chunks_exact_mut(3).zip(t.bounds).enumerate() {
            let k = &t.kk[xx * t.ksize..xx * t.ksize + count];
            let px = &srow[xmin * 3..(xmin + count) * 3];
            let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
            for (p, &w) in px.chunks_exact(3).zip(k) {
                s0 += i32::from(p[0]) * w;
                s1 += i32::from(p[1]) * w;
                s2 += i32::from(p[2]) * w;
            }
            o[0] = clip8(s0);
            o[1] = clip8(s1);
            o[2] = clip8(s2);
        }
    }
}

/// Four rows of the horizontal pass with AVX2: row `q` starts at `src[starts[q]]` (column
/// `col0`) and goes to `outs[q]`. Each tap reads 4 bytes per row (R, G, B and the next byte,
/// whose lane is ignored), widens two rows to eight i32 lanes, multiplies by the coefficient and
/// adds: integer sums, hence exactly Pillow's values. A destination pixel whose 4-byte reads
/// would pass the end of `src` takes the scalar loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal4_avx2(src: &[u8], starts: [usize; 4], t: Taps<'_>, outs: [&mut [u8]; 4]) {
    use std::arch::x86_64::{
        _mm256_add_epi32, _mm256_cvtepu8_epi32, _mm256_extract_epi32, _mm256_mullo_epi32, _mm256_packs_epi32,
        _mm256_packus_epi16, _mm256_set1_epi32, _mm256_srai_epi32, _mm_set_epi32,
    };
    let [o0, o1, o2, o3] = outs;
    let mut outs = [o0, o1, o2, o3];
    let n = src.len();
    let base = src.as_ptr();
    let last = starts.iter().copied().max().unwrap_or(0);
    for (xx, &(xmin, count)) in t.bounds.iter().enumerate() {
        let k = &t.kk[xx * t.ksize..xx * t.ksize + count];
        let d = xx * 3;
        if last + (xmin + count) * 3 + 1 > n {
            for (q, o) in outs.iter_mut().enumerate() {
                let px = &src[starts[q] + xmin * 3..starts[q] + (xmin + count) * 3];
                let (mut s0, mut s1, mut s2) = (HALF, HALF, HALF);
                for (p, &w) in px.chunks_exact(3).zip(k) {
                    s0 += i32::from(p[0]) * w;
                    s1 += i32::from(p[1]) * w;
                    s2 += i32::from(p[2]) * w;
                }
                o[d] = clip8(s0);
                o[d + 1] = clip8(s1);
                o[d + 2] = clip8(s2);
            }
            continue;
        }
        let mut acc01 = _mm256_set1_epi32(HALF);
        let mut acc23 = _mm256_set1_epi32(HALF);
        for (j, &w) in k.iter().enumerate() {
            let off = (xmin + j) * 3;
            // SAFETY: every start + off + 4 ≤ last + (xmin + count)·3 + 1 ≤ len (checked above).
            let rd = |q: usize| unsafe { (base.add(starts[q] + off) as *const i32).read_unaligned() };
            let wv = _mm256_set1_epi32(w);
            let v01 = _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, rd(1), rd(0)));
            let v23 = _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, rd(3), rd(2)));
            acc01 = _mm256_add_epi32(acc01, _mm256_mullo_epi32(v01, wv));
            acc23 = _mm256_add_epi32(acc23, _mm256_mullo_epi32(v23, wv));
        }
        // Shift and saturate to bytes (`packs` to i16, `packus` to 0..=255: `clip8`'s clamp).
        // Per 128-bit lane the packs interleave, so row q's R, G, B, x sit in dword 0 (row 0),
        // 4 (row 1), 1 (row 2) and 5 (row 3).
        let sh01 = _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(acc01);
        let sh23 = _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(acc23);
        let words = _mm256_packs_epi32(sh01, sh23);
        let bytes = _mm256_packus_epi16(words, words);
        let px = [
            _mm256_extract_epi32::<0>(bytes),
            _mm256_extract_epi32::<4>(bytes),
            _mm256_extract_epi32::<1>(bytes),
            _mm256_extract_epi32::<5>(bytes),
        ];
        for (o, v) in outs.iter_mut().zip(px) {
            let v = v.to_le_bytes();
            if d + 4 <= o.len() {
                // The fourth byte lands on the next pixel's R, which is written after it.
                o[d..d + 4].copy_from_slice(&v);
            } else {
                o[d..d + 3].copy_from_slice(&v[..3]);
            }
        }
    }
}

/// Vertical pass on columns `col0..col0 + cols` of packed RGB `src`
/// (`src_w` pixels wide); source row indices of `t` are rows of `src`.
fn vertical(src: &[u8], src_w: usize, col0: usize, cols: usize, t: Taps<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    vertical_into(src, src_w, col0, cols, t, &mut out);
    out
}

/// [`vertical`] into `out` (resized to the result; every byte written).
fn vertical_into(src: &[u8], src_w: usize, col0: usize, cols: usize, t: Taps<'_>, out: &mut Vec<u8>) {
    let stride = src_w * 3;
    let ostride = cols * 3;
    let out_h = t.bounds.len();
    out.resize(ostride * out_h, 0); // old values stay: every byte is written
    assert!(col0 * 3 + ostride <= stride, "vertical pass: columns past the row");
    assert!(
        t.bounds.iter().all(|&(ymin, count)| (ymin + count) * stride <= src.len()),
        "vertical pass: rows past the image"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above); the asserts above bound every read.
            unsafe { vertical_avx2(src, stride, col0, t, out, ostride) };
            return;
        }
    }
    let mut acc = vec![0i32; ostride];
    for (yy, (orow, &(ymin, count))) in out.chunks_exact_mut(ostride).zip(t.bounds).enumerate() {
        acc.fill(HALF);
        for (j, &w) in t.kk[yy * t.ksize..yy * t.ksize + count].iter().enumerate() {
            let start = (ymin + j) * stride + col0 * 3;
            let srow = &src[start..start + ostride];
            for (a, &p) in acc.iter_mut().zip(srow) {
                *a += i32::from(p) * w;
            }
        }
        for (o, &a) in orow.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
}

/// The vertical pass with AVX2: 32 bytes (channels) of a destination row at a time, their
/// sums kept in four registers of eight i32 lanes over all the taps, then shifted and
/// saturated to bytes by the pack instructions (`packs` to i16, `packus` to 0..=255: the same
/// clamp as [`clip8`]). Integer sums, hence exactly Pillow's values. The last `< 32` bytes of
/// a row take the scalar sum.
///
/// # Safety
/// The CPU must have AVX2; `col0 * 3 + ostride <= stride`, every tap row inside `src`, and
/// `out` holding `ostride` bytes per destination row of `t`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn vertical_avx2(src: &[u8], stride: usize, col0: usize, t: Taps<'_>, out: &mut [u8], ostride: usize) {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_castsi256_si128, _mm256_cvtepu8_epi32, _mm256_extracti128_si256,
        _mm256_loadu_si256, _mm256_mullo_epi32, _mm256_packs_epi32, _mm256_packus_epi16, _mm256_permutevar8x32_epi32,
        _mm256_set1_epi32, _mm256_setr_epi32, _mm256_srai_epi32, _mm256_storeu_si256, _mm_srli_si128,
    };
    let base = src.as_ptr();
    for (yy, (orow, &(ymin, count))) in out.chunks_exact_mut(ostride).zip(t.bounds).enumerate() {
        let k = &t.kk[yy * t.ksize..yy * t.ksize + count];
        let mut x = 0;
        while x + 32 <= ostride {
            let mut a = [_mm256_set1_epi32(HALF); 4];
            for (j, &w) in k.iter().enumerate() {
                // SAFETY: (ymin + j)·stride + col0·3 + x + 32 ≤ (ymin + count)·stride ≤ len.
                let v = unsafe { _mm256_loadu_si256(base.add((ymin + j) * stride + col0 * 3 + x) as *const __m256i) };
                let (lo, hi) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                let wv = _mm256_set1_epi32(w);
                a[0] = _mm256_add_epi32(a[0], _mm256_mullo_epi32(_mm256_cvtepu8_epi32(lo), wv));
                a[1] = _mm256_add_epi32(a[1], _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(lo)), wv));
                a[2] = _mm256_add_epi32(a[2], _mm256_mullo_epi32(_mm256_cvtepu8_epi32(hi), wv));
                a[3] = _mm256_add_epi32(a[3], _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128::<8>(hi)), wv));
            }
            let sh = a.map(|v| _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(v));
            // Per 128-bit lane the packs interleave: dwords come out as a0 a1 a2 a3 (low halves)
            // then a0 a1 a2 a3 (high halves); the permutation puts each register's 8 bytes back
            // together in order.
            let bytes = _mm256_packus_epi16(_mm256_packs_epi32(sh[0], sh[1]), _mm256_packs_epi32(sh[2], sh[3]));
            let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            // SAFETY: x + 32 ≤ ostride = orow.len().
            unsafe { _mm256_storeu_si256(orow.as_mut_ptr().add(x) as *mut __m256i, ordered) };
            x += 32;
        }
        for (xi, o) in orow.iter_mut().enumerate().skip(x) {
            let mut sum = HALF;
            for (j, &w) in k.iter().enumerate() {
                sum += i32::from(src[(ymin + j) * stride + col0 * 3 + xi]) * w;
            }
            *o = clip8(sum);
        }
    }
}

fn shifted<'a>(t: Taps<'a>, by: usize, store: &'a mut Vec<(usize, usize)>) -> Taps<'a> {
    store.clear();
    store.extend(t.bounds.iter().map(|&(m, c)| (m - by, c)));
    Taps { bounds: store, ..t }
}

/// Copies the `cw × ch` window at `(x0, y0)` of a packed RGB image.
fn crop_raw(src: &[u8], src_w: usize, x0: usize, y0: usize, cw: usize, ch: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(cw * ch * 3);
    for y in y0..y0 + ch {
        out.extend_from_slice(&src[(y * src_w + x0) * 3..(y * src_w + x0 + cw) * 3]);
    }
    out
}

/// Pass order of Pillow ≥ 13: the vertical pass runs first when the height
/// shrinks by more than twice as many pixels as the width does
/// (`h_in - h > 0 && h_in - h > 2 (w_in - w)`, signed), otherwise the
/// horizontal pass runs first.
pub fn horizontal_first(w_in: usize, h_in: usize, w: usize, h: usize) -> bool {
    let dh = h_in as i64 - h as i64;
    let dw = w_in as i64 - w as i64;
    !(dh > 0 && dh > 2 * dw)
}

/// Nearest-neighbour source indices of Pillow's affine scaling path.
fn nearest_indices(in_size: usize, out_size: usize) -> Vec<usize> {
    let a = in_size as f64 / out_size as f64;
    let mut pos = a * 0.5;
    let mut v = Vec::with_capacity(out_size);
    for _ in 0..out_size {
        let i = if pos < 0.0 { 0 } else { (pos as usize).min(in_size - 1) };
        v.push(i);
        pos += a;
    }
    v
}

/// Refuses zero sizes and a region that does not fit in the `width × height` output.
fn check_region(w_in: usize, h_in: usize, width: u32, height: u32, region: (u32, u32, u32, u32)) -> Result<()> {
    let (x0, y0, cw, ch) = region;
    if width == 0 || height == 0 || w_in == 0 || h_in == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize a {w_in}x{h_in} image to {width}x{height}: sizes must be non-zero"
        )));
    }
    if cw == 0
        || ch == 0
        || u64::from(x0) + u64::from(cw) > u64::from(width)
        || u64::from(y0) + u64::from(ch) > u64::from(height)
    {
        return Err(Error::Invalid(format!(
            "region {cw}x{ch} at ({x0}, {y0}) does not fit in a {width}x{height} image"
        )));
    }
    Ok(())
}

/// The source pixels that [`resize_region`] reads to produce `region` of a
/// `width × height` resize of a `w_in × h_in` image, as a half-open
/// rectangle `(x0, y0, x1, y1)`: the union of the filter supports of the
/// region's destination columns and rows (the region itself when an axis is
/// not resized). Pixels outside it do not influence the result, so a decoder
/// may leave them out.
pub fn resize_region_source(
    w_in: u32,
    h_in: u32,
    width: u32,
    height: u32,
    filter: Filter,
    region: (u32, u32, u32, u32),
) -> Result<(u32, u32, u32, u32)> {
    let (x0, y0, cw, ch) = region;
    check_region(w_in as usize, h_in as usize, width, height, region)?;
    let axis = |n_in: u32, n_out: u32, start: u32, len: u32| -> Result<(u32, u32)> {
        if (width, height) == (w_in, h_in) || n_in == n_out {
            return Ok((start, start + len));
        }
        if filter == Filter::Nearest {
            let idx = nearest_indices(n_in as usize, n_out as usize);
            let part = &idx[start as usize..(start + len) as usize];
            let lo = part.iter().copied().min().unwrap_or(0);
            let hi = part.iter().copied().max().unwrap_or(0) + 1;
            return Ok((lo as u32, hi as u32));
        }
        let c = axis_coeffs(n_in as usize, n_out as usize, filter)?;
        let b = &c.c.bounds[start as usize..(start + len) as usize];
        let lo = b.iter().map(|b| b.0).min().unwrap_or(0);
        let hi = b.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
        Ok((lo as u32, hi as u32))
    };
    let (sx0, sx1) = axis(w_in, width, x0, cw)?;
    let (sy0, sy1) = axis(h_in, height, y0, ch)?;
    Ok((sx0, sy0, sx1, sy1))
}

/// Resizes an RGB image to `width × height` exactly as Pillow's
/// `Image.resize((width, height), filter)` does for an `RGB` image.
///
/// Returns an error when a size is zero.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> Result<RgbImage> {
    resize_region(img, width, height, filter, (0, 0, width, height))
}

/// The window `(x0, y0, w, h)` of [`resize`]'s result, computed without the
/// pixels outside it (each destination pixel depends only on its own
/// coefficients, so the values are the same as cropping the full result).
/// Returns an error when a size is zero or the window leaves the image.
pub fn resize_region(
    img: &RgbImage,
    width: u32,
    height: u32,
    filter: Filter,
    region: (u32, u32, u32, u32),
) -> Result<RgbImage> {
    let (w_in, h_in) = (img.width() as usize, img.height() as usize);
    let (w, h) = (width as usize, height as usize);
    let (x0, y0, cw, ch) = (region.0 as usize, region.1 as usize, region.2 as usize, region.3 as usize);
    check_region(w_in, h_in, width, height, region)?;
    let src = img.as_raw();
    let data = if (w, h) == (w_in, h_in) {
        crop_raw(src, w_in, x0, y0, cw, ch)
    } else if filter == Filter::Nearest {
        let xs = nearest_indices(w_in, w);
        let ys = nearest_indices(h_in, h);
        let mut out = Vec::with_capacity(cw * ch * 3);
        for &y in &ys[y0..y0 + ch] {
            let srow = &src[y * w_in * 3..(y + 1) * w_in * 3];
            for &x in &xs[x0..x0 + cw] {
                out.extend_from_slice(&srow[x * 3..x * 3 + 3]);
            }
        }
        out
    } else {
        let ah = axis_coeffs(w_in, w, filter)?;
        let av = axis_coeffs(h_in, h, filter)?;
        let th = Taps::new(&ah.c, &ah.kk, x0..x0 + cw);
        let tv = Taps::new(&av.c, &av.kk, y0..y0 + ch);
        let need_h = w != w_in;
        let need_v = h != h_in;
        let mut store = Vec::new();
        if !need_h {
            vertical(src, w_in, x0, cw, tv)
        } else if !need_v {
            horizontal(src, w_in, 0, y0, ch, th)
        } else if horizontal_first(w_in, h_in, w, h) {
            let (first, last) = tv.span();
            with_scratch(|tmp| {
                horizontal_into(src, w_in, 0, first, last - first, th, tmp);
                vertical(tmp, cw, 0, cw, shifted(tv, first, &mut store))
            })
        } else {
            let (first, last) = th.span();
            with_scratch(|tmp| {
                vertical_into(src, w_in, first, last - first, tv, tmp);
                horizontal(tmp, last - first, 0, 0, ch, shifted(th, first, &mut store))
            })
        }
    };
    RgbImage::from_raw(cw as u32, ch as u32, data)
        .ok_or_else(|| Error::Invalid(format!("internal: buffer size of a {cw}x{ch} image")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The horizontal pass (4-row AVX2 kernel where the CPU has it, with its scalar fallback at
    /// the end of the buffer; scalar rows otherwise) against a direct fixed-point sum, on every
    /// filter, odd sizes, sub-windows (`col0`, `row0`) and row counts that are not multiples of 4.
    #[test]
    fn horizontal_pass_equals_a_direct_sum() {
        let (w, h) = (37usize, 23usize);
        let src: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919 + i / 5) % 256) as u8).collect();
        for filter in [Filter::Box, Filter::Bilinear, Filter::Hamming, Filter::Bicubic, Filter::Lanczos] {
            for (col0, cw, out_w) in [(0usize, 37usize, 11usize), (3, 30, 29), (0, 37, 60), (5, 32, 7)] {
                let c = precompute_coeffs(cw, 0.0, cw as f32, out_w, filter).unwrap();
                let kk = to_fixed_point(&c.weights);
                let t = Taps::new(&c, &kk, 0..out_w);
                for (row0, rows) in [(0usize, 23usize), (2, 21), (19, 4), (17, 6)] {
                    let got = horizontal(&src, w, col0, row0, rows, t);
                    for r in 0..rows {
                        for (xx, &(xmin, count)) in c.bounds.iter().enumerate() {
                            for ch in 0..3 {
                                let mut sum = HALF;
                                for j in 0..count {
                                    let p = src[((row0 + r) * w + col0 + xmin + j) * 3 + ch];
                                    sum += i32::from(p) * kk[xx * c.ksize + j];
                                }
                                assert_eq!(
                                    got[(r * out_w + xx) * 3 + ch],
                                    (sum >> PRECISION_BITS).clamp(0, 255) as u8,
                                    "{filter:?} col0 {col0} out_w {out_w} row {} x {xx} ch {ch}",
                                    row0 + r
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The vertical pass (AVX2 where the CPU has it, 32 bytes at a time with a scalar tail;
    /// scalar otherwise) against a direct fixed-point sum: every filter, sub-windows (`col0`),
    /// row widths below, at and above a multiple of 32 bytes, up- and downscaling, and pixel
    /// values that drive the sums below 0 and above 255 (the clamp).
    #[test]
    fn vertical_pass_equals_a_direct_sum() {
        let (w, h) = (53usize, 29usize);
        let src: Vec<u8> = (0..w * h * 3).map(|i| if (i / 7) % 3 == 0 { 255 } else { ((i * 31) % 7) as u8 }).collect();
        for filter in [Filter::Box, Filter::Bilinear, Filter::Hamming, Filter::Bicubic, Filter::Lanczos] {
            for (row0, ch_in, out_h) in [(0usize, 29usize, 11usize), (3, 20, 27), (0, 29, 60), (5, 24, 3)] {
                let c = precompute_coeffs(ch_in, 0.0, ch_in as f32, out_h, filter).unwrap();
                let kk = to_fixed_point(&c.weights);
                let bounds: Vec<(usize, usize)> = c.bounds.iter().map(|&(m, n)| (m + row0, n)).collect();
                let t = Taps { ksize: c.ksize, bounds: &bounds, kk: &kk };
                for (col0, cols) in [(0usize, 53usize), (1, 10), (2, 11), (0, 32), (7, 43), (21, 32)] {
                    let got = vertical(&src, w, col0, cols, t);
                    for (yy, &(ymin, count)) in bounds.iter().enumerate() {
                        for xb in 0..cols * 3 {
                            let mut sum = HALF;
                            for j in 0..count {
                                sum += i32::from(src[(ymin + j) * w * 3 + col0 * 3 + xb]) * kk[yy * c.ksize + j];
                            }
                            assert_eq!(
                                got[yy * cols * 3 + xb],
                                (sum >> PRECISION_BITS).clamp(0, 255) as u8,
                                "{filter:?} row0 {row0} out_h {out_h} col0 {col0} cols {cols} y {yy} byte {xb}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bilinear_coefficients_by_hand() {
        // 4 -> 2: scale 2, support 2, centre of d=0 at 1.0: xmin = trunc(-0.5) = 0,
        // xmax = trunc(3.5) = 3; weights filter((x - 1 + 0.5) / 2) for x = 0, 1, 2:
        // 1 - 0.25, 1 - 0.25, 1 - 0.75 = 0.75, 0.75, 0.25, normalised by 1.75.
        let c = precompute_coeffs(4, 0.0, 4.0, 2, Filter::Bilinear).unwrap();
        assert_eq!(c.ksize, 5);
        assert_eq!(c.bounds, vec![(0, 3), (1, 3)]);
        let w0 = &c.weights[0..3];
        for (a, b) in w0.iter().zip([0.75 / 1.75, 0.75 / 1.75, 0.25 / 1.75]) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        // d=1: centre 3.0, xmin = trunc(1.5) = 1, xmax = min(trunc(5.5), 4) = 4:
        // x = 1, 2, 3 -> filter(-0.75), filter(-0.25), filter(0.25) = 0.25, 0.75, 0.75.
        let w1 = &c.weights[5..8];
        for (a, b) in w1.iter().zip([0.25 / 1.75, 0.75 / 1.75, 0.75 / 1.75]) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        // Fixed point: 0.75/1.75 * 2^22 = 1797558.857... -> 1797559; 0.25/1.75 -> 599186.29 -> 599186.
        let k = to_fixed_point(&c.weights[0..3]);
        assert_eq!(k, vec![1797559, 1797559, 599186]);
    }

    #[test]
    fn upscale_keeps_natural_support() {
        // 2 -> 4 bilinear: scale 0.5, filterscale 1, support 1.
        // d=0: centre 0.25, xmin = trunc(-0.25) = 0, xmax = trunc(1.75) = 1 -> one pixel, weight 1.
        // d=1: centre 0.75, xmin = 0, xmax = trunc(2.25) = 2: filter(-0.25), filter(0.75) = 0.75, 0.25.
        let c = precompute_coeffs(2, 0.0, 2.0, 4, Filter::Bilinear).unwrap();
        assert_eq!(c.ksize, 3);
        assert_eq!(c.bounds, vec![(0, 1), (0, 2), (0, 2), (1, 1)]);
        assert_eq!(&c.weights[3..5], &[0.75, 0.25]);
        let img = RgbImage::from_raw(2, 1, vec![0, 0, 0, 100, 100, 100]).unwrap();
        let r = resize(&img, 4, 1, Filter::Bilinear).unwrap();
        // 0.25 * 100 = 25 exactly (fixed point 2^20 * 100 + 2^21 >> 22 = 25).
        assert_eq!(r.pixels().map(|p| p.0[0]).collect::<Vec<_>>(), vec![0, 25, 75, 100]);
    }

    #[test]
    fn filter_values() {
        assert_eq!(Filter::Bicubic.eval(0.0), 1.0);
        // a = -0.5 at x = 1.5: ((1.5 - 5) * 1.5 + 8) * 1.5 - 4 = -0.125, times a = 0.0625... sign:
        // (-5.25 + 8) * 1.5 - 4 = 0.125, times -0.5 = -0.0625.
        assert!((Filter::Bicubic.eval(1.5) + 0.0625).abs() < 1e-15);
        assert!((Filter::Bicubic.eval(0.5) - 0.5625).abs() < 1e-15);
        assert_eq!(Filter::Lanczos.eval(3.0), 0.0);
        assert!(Filter::Lanczos.eval(-3.0).abs() < 1e-15);
        assert_eq!(Filter::Box.eval(0.5), 1.0);
        assert_eq!(Filter::Box.eval(-0.5), 0.0);
        for f in Filter::ALL {
            assert_eq!(f.name().parse::<Filter>().unwrap(), f);
        }
        assert!("quadratic".parse::<Filter>().is_err());
    }

    #[test]
    fn constant_image_stays_constant_and_identity_is_a_copy() {
        let c = RgbImage::from_pixel(37, 23, image::Rgb([10, 200, 255]));
        for f in Filter::ALL {
            for (w, h) in [(5, 7), (100, 3), (37, 50), (1, 1)] {
                let r = resize(&c, w, h, f).unwrap();
                assert!(r.pixels().all(|p| p.0 == [10, 200, 255]), "{f} {w}x{h}");
            }
        }
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 3]));
        assert_eq!(resize(&img, 7, 5, Filter::Lanczos).unwrap(), img);
        assert!(resize(&img, 0, 5, Filter::Bilinear).is_err());
    }

    #[test]
    fn region_equals_crop_of_full_resize() {
        let mut v = 12345u32;
        let img = RgbImage::from_fn(53, 41, |_, _| {
            v = v.wrapping_mul(1664525).wrapping_add(1013904223);
            image::Rgb([(v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8])
        });
        // Both pass orders, single-axis resizes and upscales.
        for (w, h) in [(20, 30), (60, 10), (53, 17), (29, 41), (100, 90), (7, 3)] {
            for f in Filter::ALL {
                let full = resize(&img, w, h, f).unwrap();
                let (x0, y0, cw, ch) = (w / 4, h / 3, w / 2 + 1, h / 2 + 1);
                let r = resize_region(&img, w, h, f, (x0, y0, cw, ch)).unwrap();
                let want = image::imageops::crop_imm(&full, x0, y0, cw, ch).to_image();
                assert_eq!(r, want, "{f} {w}x{h}");
            }
        }
        assert!(resize_region(&img, 10, 10, Filter::Bilinear, (5, 5, 6, 1)).is_err());
    }

    #[test]
    fn region_source_is_enough() {
        // Every resized region computed from an image whose pixels outside the
        // reported source rectangle are scrambled equals the region of the intact image.
        let img = RgbImage::from_fn(37, 23, |x, y| image::Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, (x ^ y) as u8]));
        for filter in Filter::ALL {
            for &(w, h, region) in &[
                (16u32, 11u32, (3u32, 2u32, 8u32, 6u32)),
                (80, 50, (10, 5, 40, 30)),
                (37, 11, (5, 1, 20, 7)),
                (16, 23, (2, 4, 9, 12)),
                (37, 23, (4, 4, 10, 10)),
            ] {
                let (sx0, sy0, sx1, sy1) = resize_region_source(37, 23, w, h, filter, region).unwrap();
                assert!(sx0 < sx1 && sx1 <= 37 && sy0 < sy1 && sy1 <= 23);
                let mut scrambled = img.clone();
                for (x, y, p) in scrambled.enumerate_pixels_mut() {
                    if x < sx0 || x >= sx1 || y < sy0 || y >= sy1 {
                        p.0 = [255, 0, 255];
                    }
                }
                let want = resize_region(&img, w, h, filter, region).unwrap();
                let got = resize_region(&scrambled, w, h, filter, region).unwrap();
                assert_eq!(want, got, "{filter:?} {w}x{h} {region:?}");
                // And the rectangle is tight enough to matter: a downscale's region reads less than everything.
                if w < 37 && h < 23 && region.2 < w / 2 + 1 {
                    assert!(sx1 - sx0 < 37, "{filter:?} {w}x{h} {region:?}");
                }
            }
        }
    }

    #[test]
    fn pass_order_rule() {
        // 3x1001 -> 256x256: height loses 745, width gains 253: vertical first.
        assert!(!horizontal_first(3, 1001, 256, 256));
        // 640x427 -> 256x256: 171 > 2 * 384 is false: horizontal first.
        assert!(horizontal_first(640, 427, 256, 256));
        // 640x427 -> 900x100: 327 > 2 * (-260): vertical first.
        assert!(!horizontal_first(640, 427, 900, 100));
        // Growing height: always horizontal first.
        assert!(horizontal_first(10, 10, 1, 20));
    }

    #[test]
    fn nearest_indices_by_hand() {
        // 5 -> 2: step 2.5, positions 1.25, 3.75 -> 1, 3.
        assert_eq!(nearest_indices(5, 2), vec![1, 3]);
        // 2 -> 5: step 0.4, positions 0.2, 0.6, 1.0, 1.4, 1.8 -> 0, 0, 1, 1, 1.
        assert_eq!(nearest_indices(2, 5), vec![0, 0, 1, 1, 1]);
    }
}
