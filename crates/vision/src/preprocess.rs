//! Evaluation preprocessing of PyTorch image pipelines built on Pillow and
//! torchvision, reproduced on `u8` RGB images and f32 CHW tensors.
//!
//! * [`resize_shorter`] is torchvision's `Resize(size)` with an int size: the
//!   shorter side becomes `size` and the longer one `int(size · long / short)`
//!   (truncated), then Pillow's resize (see [`crate::resample`]).
//! * [`center_crop`] is torchvision's `CenterCrop`: the offsets are
//!   `int(round((H - h) / 2))` and `int(round((W - w) / 2))` with Python's
//!   round-half-to-even; a crop larger than the image first pads it with zeros
//!   (`(crop - size) // 2` before, the rest after).
//! * [`normalize_into`] is `ToTensor()` (`v / 255` in f32) followed by
//!   `Normalize(mean, std)` (`(x - mean) / std` in f32), written channel-first.
//! * [`Recipe`] names the recipes used by labelscope's models.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use image::RgbImage;

use crate::decode::{decode_bytes_partial, DecodeOptions};
use crate::error::{Error, Result};
use crate::resample::{resize, resize_region, resize_region_source, Filter};

/// ImageNet channel means of torchvision's `Normalize`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations of torchvision's `Normalize`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Output size `(width, height)` of torchvision's `Resize(size)` for an image
/// of `width × height`: the shorter side becomes `size`, the longer side
/// `int(size * long / short)`.
pub fn shorter_side_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    // Python: int(size * long / short); both products are exact in f64 and the
    // division is correctly rounded, as Python's int / int.
    let new_long = (f64::from(size) * f64::from(long) / f64::from(short.max(1))) as u32;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision's `Resize(size)` (int size) with Pillow's resampling `filter`.
pub fn resize_shorter(img: &RgbImage, size: u32, filter: Filter) -> Result<RgbImage> {
    let (w, h) = shorter_side_size(img.width(), img.height(), size);
    resize(img, w, h, filter)
}

/// Python's `round(x)` for `x` a multiple of ½ (round half to even), as an
/// integer: used for `(size - crop) / 2.0`.
fn round_half_even_div2(d: i64) -> i64 {
    // d / 2 exactly representable; halves go to the even neighbour.
    if d % 2 == 0 {
        d / 2
    } else {
        let lo = d.div_euclid(2); // floor(d / 2)
        if lo % 2 == 0 {
            lo
        } else {
            lo + 1
        }
    }
}

/// Top-left corner `(left, top)` of torchvision's `CenterCrop((h, w))` on an
/// image of `width × height` (no padding case: crop ≤ size on both axes).
pub fn center_crop_offsets(width: u32, height: u32, crop_w: u32, crop_h: u32) -> (i64, i64) {
    (
        round_half_even_div2(i64::from(width) - i64::from(crop_w)),
        round_half_even_div2(i64::from(height) - i64::from(crop_h)),
    )
}

/// torchvision's `CenterCrop((crop_h, crop_w))` on a PIL image (zero padding
/// when the crop is larger than the image, as torchvision does).
pub fn center_crop(img: &RgbImage, crop_w: u32, crop_h: u32) -> Result<RgbImage> {
    if crop_w == 0 || crop_h == 0 {
        return Err(Error::Invalid(format!("cannot crop to {crop_w}x{crop_h}: sizes must be non-zero")));
    }
    let (w, h) = img.dimensions();
    if (w, h) == (crop_w, crop_h) {
        return Ok(img.clone());
    }
    // Padding (torchvision pads left/top by (crop - size) // 2, the rest after).
    let (pad_l, pad_t) = (
        if crop_w > w { i64::from((crop_w - w) / 2) } else { 0 },
        if crop_h > h { i64::from((crop_h - h) / 2) } else { 0 },
    );
    let (pw, ph) = (w.max(crop_w), h.max(crop_h));
    // Offsets in the padded image (after padding the sizes are equal on padded axes: offset 0).
    let (left, top) = center_crop_offsets(pw, ph, crop_w, crop_h);
    let src = img.as_raw();
    let mut out = vec![0u8; crop_w as usize * crop_h as usize * 3];
    for y in 0..crop_h as i64 {
        let sy = top + y - pad_t;
        if sy < 0 || sy >= i64::from(h) {
            continue;
        }
        for x in 0..crop_w as i64 {
            let sx = left + x - pad_l;
            if sx < 0 || sx >= i64::from(w) {
                continue;
            }
            let s = (sy as usize * w as usize + sx as usize) * 3;
            let d = (y as usize * crop_w as usize + x as usize) * 3;
            out[d..d + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
    RgbImage::from_raw(crop_w, crop_h, out)
        .ok_or_else(|| Error::Invalid(format!("internal: buffer size of a {crop_w}x{crop_h} crop")))
}

/// Writes `ToTensor()` + `Normalize(mean, std)` of `img` into `out`
/// (channel-first, `3 × H × W` f32): `((v as f32 / 255) - mean) / std`.
pub fn normalize_into(img: &RgbImage, mean: [f32; 3], std: [f32; 3], out: &mut [f32]) -> Result<()> {
    let n = img.width() as usize * img.height() as usize;
    if out.len() != 3 * n {
        return Err(Error::mismatch("normalised image buffer", 3 * n, out.len()));
    }
    let (r, rest) = out.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    // A 256-entry table per channel gives the same f32 values as computing them.
    let mut tables = [[0f32; 256]; 3];
    for (c, t) in tables.iter_mut().enumerate() {
        for (v, e) in t.iter_mut().enumerate() {
            *e = (v as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    // One pass over the packed pixels, writing the three planes.
    let [tr, tg, tb] = &tables;
    for (((o_r, o_g), o_b), p) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()).zip(img.as_raw().chunks_exact(3)) {
        *o_r = tr[p[0] as usize];
        *o_g = tg[p[1] as usize];
        *o_b = tb[p[2] as usize];
    }
    Ok(())
}

/// A named preprocessing recipe (geometry only; the interpolation is chosen
/// separately, see [`Recipe::default_filter`] and [`Preprocess`]).
///
/// Names ([`FromStr`] / [`Display`](fmt::Display)):
///
/// * `resize{S}-crop{C}` — torchvision/timm evaluation: shorter side to `S`
///   ([`resize_shorter`]), centre crop `C × C`. `resize256-crop224` is the
///   standard ImageNet evaluation transform (torchvision's default bilinear;
///   timm models usually use bicubic, pass it as the interpolation).
/// * `square{S}-crop{C}` — resize to `S × S` ignoring the aspect ratio, then
///   centre crop `C × C` (`square256-crop224`: the Hard ImageNet recipe).
/// * `fixed{N}` — resize to exactly `N × N` (`fixed480`, `fixed896`: CutLER's
///   MaskCut, which calls `I.resize((N, N), PIL.Image.LANCZOS)` on the RGB
///   image, so its default interpolation is Lanczos).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recipe {
    /// Shorter side to `resize`, centre crop `crop × crop`.
    ResizeCrop {
        /// Target of the shorter side.
        resize: u32,
        /// Side of the square centre crop.
        crop: u32,
    },
    /// Resize to `square × square`, centre crop `crop × crop`.
    SquareCrop {
        /// Side of the square resize.
        square: u32,
        /// Side of the square centre crop.
        crop: u32,
    },
    /// Resize to exactly `size × size`.
    Fixed {
        /// Output side.
        size: u32,
    },
}

impl Recipe {
    /// The torchvision/timm ImageNet evaluation recipe `resize256-crop224`.
    pub const RESIZE256_CROP224: Recipe = Recipe::ResizeCrop { resize: 256, crop: 224 };

    /// The interpolation the recipe's reference pipeline uses: bilinear for
    /// `resize*-crop*` (torchvision) and `square*-crop*`, Lanczos for `fixed*`
    /// (CutLER).
    pub fn default_filter(self) -> Filter {
        match self {
            Recipe::ResizeCrop { .. } | Recipe::SquareCrop { .. } => Filter::Bilinear,
            Recipe::Fixed { .. } => Filter::Lanczos,
        }
    }

    /// Output `(width, height)` of the recipe.
    pub fn output_size(self) -> (u32, u32) {
        match self {
            Recipe::ResizeCrop { crop, .. } | Recipe::SquareCrop { crop, .. } => (crop, crop),
            Recipe::Fixed { size } => (size, size),
        }
    }

    /// Applies the geometric part of the recipe with `filter`.
    pub fn apply(self, img: &RgbImage, filter: Filter) -> Result<RgbImage> {
        match self {
            Recipe::ResizeCrop { resize: s, crop } => {
                let (w, h) = shorter_side_size(img.width(), img.height(), s);
                resize_then_crop(img, w, h, crop, filter)
            }
            Recipe::SquareCrop { square, crop } => resize_then_crop(img, square, square, crop, filter),
            Recipe::Fixed { size } => resize(img, size, size, filter),
        }
    }
}

/// Resize to `w × h` then centre crop `crop × crop`; when the crop fits, only
/// the cropped pixels are computed ([`resize_region`], same values).
fn resize_then_crop(img: &RgbImage, w: u32, h: u32, crop: u32, filter: Filter) -> Result<RgbImage> {
    if crop <= w && crop <= h {
        let (left, top) = center_crop_offsets(w, h, crop, crop);
        resize_region(img, w, h, filter, (left as u32, top as u32, crop, crop))
    } else {
        center_crop(&resize(img, w, h, filter)?, crop, crop)
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Recipe::ResizeCrop { resize, crop } => write!(f, "resize{resize}-crop{crop}"),
            Recipe::SquareCrop { square, crop } => write!(f, "square{square}-crop{crop}"),
            Recipe::Fixed { size } => write!(f, "fixed{size}"),
        }
    }
}

impl FromStr for Recipe {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(format!(
                "unknown preprocessing recipe {s:?}: expected resize{{S}}-crop{{C}} (e.g. resize256-crop224), \
                 square{{S}}-crop{{C}} (e.g. square256-crop224) or fixed{{N}} (e.g. fixed480, fixed896)"
            ))
        };
        let num = |t: &str| t.parse::<u32>().ok().filter(|&v| v > 0 && v <= 16384).ok_or_else(bad);
        let two = |rest: &str| -> Result<(u32, u32)> {
            let (a, b) = rest.split_once("-crop").ok_or_else(bad)?;
            Ok((num(a)?, num(b)?))
        };
        if let Some(rest) = s.strip_prefix("resize") {
            let (resize, crop) = two(rest)?;
            Ok(Recipe::ResizeCrop { resize, crop })
        } else if let Some(rest) = s.strip_prefix("square") {
            let (square, crop) = two(rest)?;
            Ok(Recipe::SquareCrop { square, crop })
        } else if let Some(rest) = s.strip_prefix("fixed") {
            Ok(Recipe::Fixed { size: num(rest)? })
        } else {
            Err(bad())
        }
    }
}

/// A complete preprocessing: recipe, interpolation and normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Geometry.
    pub recipe: Recipe,
    /// Resampling filter.
    pub filter: Filter,
    /// Channel means (after `/ 255`).
    pub mean: [f32; 3],
    /// Channel standard deviations (after `/ 255`).
    pub std: [f32; 3],
}

impl Preprocess {
    /// The recipe with its default interpolation and ImageNet normalisation.
    pub fn new(recipe: Recipe) -> Self {
        Preprocess { recipe, filter: recipe.default_filter(), mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    /// Overrides the interpolation (e.g. bicubic for timm models).
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Number of f32 values of one output image (`3 × H × W`).
    pub fn image_len(&self) -> usize {
        let (w, h) = self.recipe.output_size();
        3 * w as usize * h as usize
    }

    /// The pixels of a `width × height` image that [`Preprocess::run_into`]
    /// reads, as a half-open rectangle `(x0, y0, x1, y1)`; `None` when it
    /// reads them all (or the sizes are invalid, which `run_into` reports).
    pub fn source_rect(&self, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
        let (w, h, crop) = match self.recipe {
            Recipe::ResizeCrop { resize: s, crop } => {
                let (w, h) = shorter_side_size(width, height, s);
                (w, h, crop)
            }
            Recipe::SquareCrop { square, crop } => (square, square, crop),
            Recipe::Fixed { .. } => return None,
        };
        if crop > w || crop > h {
            return None;
        }
        let (left, top) = center_crop_offsets(w, h, crop, crop);
        let r = resize_region_source(width, height, w, h, self.filter, (left as u32, top as u32, crop, crop)).ok()?;
        (r != (0, 0, width, height)).then_some(r)
    }

    /// Reads, decodes and preprocesses an image file into `out` (see
    /// [`Preprocess::run_bytes`]).
    pub fn run_file(&self, path: &Path, opts: &DecodeOptions, out: &mut [f32]) -> Result<()> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Image { path: path.to_path_buf(), message: format!("cannot read: {e}") })?;
        self.run_bytes(&bytes, path, opts, out)
    }

    /// Decodes and preprocesses the content of an image file into `out`;
    /// the same values as [`crate::decode::decode_bytes`] followed by
    /// [`Preprocess::run_into`], but a JPEG is only reconstructed where the
    /// recipe reads it ([`Preprocess::source_rect`]: for `resize256-crop224`
    /// of a 4:3 photograph about 70% of the pixels). Errors name `path`.
    pub fn run_bytes(&self, bytes: &[u8], path: &Path, opts: &DecodeOptions, out: &mut [f32]) -> Result<()> {
        let img = decode_bytes_partial(bytes, path, opts, |w, h| self.source_rect(w, h))?;
        self.run_into(&img, out).map_err(|e| match e {
            Error::Image { .. } => e,
            other => Error::Image { path: path.to_path_buf(), message: other.to_string() },
        })
    }

    /// Geometry then normalisation of one decoded image into `out`
    /// (`3 × H × W`, see [`Preprocess::image_len`]).
    pub fn run_into(&self, img: &RgbImage, out: &mut [f32]) -> Result<()> {
        let g = self.recipe.apply(img, self.filter)?;
        normalize_into(&g, self.mean, self.std, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorter_side_by_hand() {
        // 500x375 -> shorter 375 -> 256, long int(256 * 500 / 375) = int(341.33) = 341.
        assert_eq!(shorter_side_size(500, 375, 256), (341, 256));
        assert_eq!(shorter_side_size(375, 500, 256), (256, 341));
        // Square and exact: 512x512 -> 256x256; 1x3 -> 256 x 768.
        assert_eq!(shorter_side_size(512, 512, 256), (256, 256));
        assert_eq!(shorter_side_size(1, 3, 256), (256, 768));
        // int(256 * 299 / 200) = int(382.72) = 382 (truncation, not rounding).
        assert_eq!(shorter_side_size(299, 200, 256), (382, 256));
    }

    #[test]
    fn center_crop_offsets_use_bankers_rounding() {
        // (341 - 224) / 2 = 58.5 -> round to even 58; (256 - 224) / 2 = 16.
        assert_eq!(center_crop_offsets(341, 256, 224, 224), (58, 16));
        // 59.5 -> 60; 0.5 -> 0; 1.5 -> 2; 2.5 -> 2.
        assert_eq!(center_crop_offsets(343, 225, 224, 224), (60, 0));
        assert_eq!(center_crop_offsets(227, 229, 224, 224), (2, 2));
        assert_eq!(round_half_even_div2(-1), 0); // round(-0.5) = -0.0
        assert_eq!(round_half_even_div2(-3), -2); // round(-1.5) = -2
    }

    #[test]
    fn center_crop_takes_the_right_pixels_and_pads() {
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([(y * 5 + x) as u8, 0, 0]));
        // (5-2)/2 = 1.5 -> 2; (4-2)/2 = 1.
        let c = center_crop(&img, 2, 2).unwrap();
        assert_eq!(c.pixels().map(|p| p.0[0]).collect::<Vec<_>>(), vec![7, 8, 12, 13]);
        // Crop 7 wide x 2 high: pad left (7-5)//2 = 1, right 1; rows offset 1.
        let c = center_crop(&img, 7, 2).unwrap();
        assert_eq!(c.pixels().map(|p| p.0[0]).collect::<Vec<_>>(), vec![0, 5, 6, 7, 8, 9, 0, 0, 10, 11, 12, 13, 14, 0]);
    }

    #[test]
    fn normalisation_by_hand() {
        let img = RgbImage::from_raw(1, 1, vec![0, 255, 128]).unwrap();
        let mut out = [0f32; 3];
        normalize_into(&img, IMAGENET_MEAN, IMAGENET_STD, &mut out).unwrap();
        assert_eq!(out[0], (0.0f32 - 0.485) / 0.229);
        assert_eq!(out[1], (1.0f32 - 0.456) / 0.224);
        assert_eq!(out[2], (128.0f32 / 255.0 - 0.406) / 0.225);
        assert!(normalize_into(&img, IMAGENET_MEAN, IMAGENET_STD, &mut [0f32; 4]).is_err());
    }

    #[test]
    fn recipe_names_round_trip() {
        for s in ["resize256-crop224", "square256-crop224", "fixed480", "fixed896", "resize288-crop256"] {
            assert_eq!(s.parse::<Recipe>().unwrap().to_string(), s);
        }
        assert_eq!("resize256-crop224".parse::<Recipe>().unwrap(), Recipe::RESIZE256_CROP224);
        assert_eq!(Recipe::Fixed { size: 480 }.default_filter(), Filter::Lanczos);
        for bad in ["", "resize256", "fixed0", "crop224", "resize-crop", "fixedx", "square256-crop"] {
            assert!(bad.parse::<Recipe>().is_err(), "{bad}");
        }
    }
}
