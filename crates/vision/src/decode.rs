//! Decoding of JPEG, PNG and WebP files to 8-bit RGB as Pillow's
//! `Image.open(path).convert("RGB")` does, with optional EXIF orientation
//! (`PIL.ImageOps.exif_transpose`) and a pixel limit checked before decoding.
//!
//! The format is recognised from the content. Conversions follow Pillow's
//! rules rather than the `image` crate's:
//!
//! * grey → RGB replicates the value; alpha channels are dropped (not
//!   composited);
//! * 16-bit PNGs: Pillow opens 16-bit RGB(A) and grey+alpha with the high byte
//!   of each sample (`v >> 8`), but a 16-bit grey PNG becomes mode `I;16`,
//!   whose conversion to RGB *clips* the value to 255 (`min(v, 255)`), so a
//!   typical 16-bit grey image turns almost white; both are reproduced;
//! * palette images are expanded through the palette;
//! * CMYK JPEGs: Pillow's JPEG reader assumes Adobe's convention and inverts
//!   the stored samples (`c = 255 - stored`), then converts with
//!   `r = (255 - k) - (c · (255 - k)) / 255` per channel, the division being
//!   the integer rounding `((t >> 8) + t) >> 8` of `t = c·(255-k) + 128`.
//!   The stored samples are read raw from the decoder and this rule is
//!   applied here. Adobe YCCK JPEGs are converted to CMYK by libjpeg (not
//!   verified against Pillow).
//!
//! JPEGs are decoded by libjpeg-turbo's decoder (see [`crate::jpeg`]), the
//! library Pillow uses, with the same settings, so decoded pixels are
//! identical to Pillow's; truncated JPEGs are refused as Pillow refuses them.
//!
//! Memory is bounded: the dimensions are read from the header and images with
//! more than [`DecodeOptions::max_pixels`] pixels are refused before any pixel
//! buffer is allocated. Every error names the file.

use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, RgbImage};

use crate::error::{Error, Result};
use crate::jpeg::JpegPixels;

/// Pillow's decompression-bomb error threshold: `2 × Image.MAX_IMAGE_PIXELS`
/// (`2 × 89,478,485` pixels).
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;

/// Options of [`decode_file`] and [`decode_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Images with more pixels (width × height) are refused before decoding.
    pub max_pixels: u64,
    /// Apply the EXIF orientation tag like `PIL.ImageOps.exif_transpose`.
    /// torchvision's `ImageFolder` loader (`Image.open(f).convert("RGB")`)
    /// does *not* do this; set it to `false` to match such pipelines.
    pub exif_orientation: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions { max_pixels: DEFAULT_MAX_PIXELS, exif_orientation: true }
    }
}

/// Reads and decodes an image file (see the [module docs](self)).
pub fn decode_file(path: impl AsRef<Path>, opts: &DecodeOptions) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Image { path: path.to_path_buf(), message: format!("cannot read: {e}") })?;
    decode_bytes(&bytes, path, opts)
}

/// Decodes the content of an image file; `path` is only used in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, opts: &DecodeOptions) -> Result<RgbImage> {
    let err = |message: String| Error::Image { path: path.to_path_buf(), message };
    if bytes.is_empty() {
        return Err(err("empty file, expected a JPEG, PNG or WebP image".into()));
    }
    let format = image::guess_format(bytes)
        .map_err(|_| err("unrecognised image format, expected a JPEG, PNG or WebP file".into()))?;
    let (img, orientation) = match format {
        ImageFormat::Jpeg => decode_jpeg(bytes, opts).map_err(err)?,
        ImageFormat::Png | ImageFormat::WebP => decode_other(bytes, format, opts).map_err(err)?,
        other => return Err(err(format!("unsupported image format {other:?}, expected a JPEG, PNG or WebP file"))),
    };
    Ok(if opts.exif_orientation { apply_orientation(img, orientation) } else { img })
}

/// Decodes an image of which only some pixels will be used.
///
/// `need(width, height)` gets the size of the image as it will be returned
/// (after EXIF orientation when [`DecodeOptions::exif_orientation`] is set)
/// and may return the half-open rectangle `(x0, y0, x1, y1)` of pixels the
/// caller will read. For JPEGs only that part is reconstructed (see
/// [`crate::jpeg::decode_jpeg_region`]): the returned image has the full size,
/// its pixels inside the rectangle are identical to [`decode_bytes`]'s and
/// the others are unspecified (black). Other formats are decoded whole.
/// Errors are those of [`decode_bytes`].
pub fn decode_bytes_partial(
    bytes: &[u8],
    path: &Path,
    opts: &DecodeOptions,
    need: impl FnOnce(u32, u32) -> Option<(u32, u32, u32, u32)>,
) -> Result<RgbImage> {
    let err = |message: String| Error::Image { path: path.to_path_buf(), message };
    if bytes.is_empty() || image::guess_format(bytes).ok() != Some(ImageFormat::Jpeg) {
        return decode_bytes(bytes, path, opts);
    }
    let mut orientation = Orientation::NoTransforms;
    let region = |w: usize, h: usize, exif: Option<&[u8]>| {
        if opts.exif_orientation {
            orientation = exif_orientation(exif);
        }
        let (ow, oh) = if swaps_axes(orientation) { (h, w) } else { (w, h) };
        let r = need(ow as u32, oh as u32)?;
        let r = (r.0 as usize, r.1 as usize, r.2 as usize, r.3 as usize);
        Some(stored_rect(orientation, w, h, r))
    };
    let d = crate::jpeg::decode_jpeg_region(bytes, |w, h| check_size(w as u64, h as u64, opts), region).map_err(err)?;
    let img = jpeg_to_rgb(d).map_err(err)?;
    Ok(apply_orientation(img, orientation))
}

fn exif_orientation(exif: Option<&[u8]>) -> Orientation {
    exif.and_then(|chunk| chunk.get(6..)).and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms)
}

fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// Maps a rectangle of the oriented image to the stored (`w × h`) image's
/// frame, following the pixel maps of [`apply_orientation`].
fn stored_rect(o: Orientation, w: usize, h: usize, r: (usize, usize, usize, usize)) -> (usize, usize, usize, usize) {
    let (x0, y0, x1, y1) = r;
    let flip = |n: usize, a: usize, b: usize| (n.saturating_sub(b), n.saturating_sub(a));
    match o {
        Orientation::NoTransforms => r,
        Orientation::FlipHorizontal => {
            let (a, b) = flip(w, x0, x1);
            (a, y0, b, y1)
        }
        Orientation::Rotate180 => {
            let ((a, b), (c, d)) = (flip(w, x0, x1), flip(h, y0, y1));
            (a, c, b, d)
        }
        Orientation::FlipVertical => {
            let (c, d) = flip(h, y0, y1);
            (x0, c, x1, d)
        }
        // dst(x, y) = src(y, x)
        Orientation::Rotate90FlipH => (y0, x0, y1, x1),
        // dst(x, y) = src(y, h - 1 - x)
        Orientation::Rotate90 => {
            let (c, d) = flip(h, x0, x1);
            (y0, c, y1, d)
        }
        // dst(x, y) = src(w - 1 - y, h - 1 - x)
        Orientation::Rotate270FlipH => {
            let ((a, b), (c, d)) = (flip(w, y0, y1), flip(h, x0, x1));
            (a, c, b, d)
        }
        // dst(x, y) = src(w - 1 - y, x)
        Orientation::Rotate270 => {
            let (a, b) = flip(w, y0, y1);
            (a, x0, b, x1)
        }
    }
}

fn check_size(w: u64, h: u64, opts: &DecodeOptions) -> std::result::Result<(), String> {
    if w == 0 || h == 0 {
        return Err(format!("empty image ({w}x{h}), expected a non-empty image"));
    }
    if w.saturating_mul(h) > opts.max_pixels {
        return Err(format!(
            "image of {w}x{h} = {} pixels exceeds the limit of {} pixels (refused before decoding)",
            w * h,
            opts.max_pixels
        ));
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8], opts: &DecodeOptions) -> std::result::Result<(RgbImage, Orientation), String> {
    let d = crate::jpeg::decode_jpeg_libjpeg(bytes, |w, h| check_size(w as u64, h as u64, opts))?;
    let orientation = exif_orientation(d.exif.as_deref());
    Ok((jpeg_to_rgb(d)?, orientation))
}

fn jpeg_to_rgb(d: crate::jpeg::DecodedJpeg) -> std::result::Result<RgbImage, String> {
    let rgb = match d.pixels {
        JpegPixels::Grey => expand_grey(&d.data),
        JpegPixels::Cmyk => cmyk_to_rgb_pillow(&d.data),
        JpegPixels::Rgb => d.data,
    };
    RgbImage::from_raw(d.width as u32, d.height as u32, rgb)
        .ok_or_else(|| "decoded JPEG has the wrong buffer size".into())
}

fn expand_grey(g: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(g.len() * 3);
    for &v in g {
        out.extend_from_slice(&[v, v, v]);
    }
    out
}

/// Pillow's `CMYK;I` unpacking (inversion) followed by its `cmyk2rgb`.
fn cmyk_to_rgb_pillow(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 4 * 3);
    for p in raw.chunks_exact(4) {
        let nk = i32::from(p[3]); // 255 - (255 - stored k)
        for &s in &p[..3] {
            let c = 255 - i32::from(s);
            let t = c * nk + 128;
            let m = ((t >> 8) + t) >> 8;
            out.push((nk - m).clamp(0, 255) as u8);
        }
    }
    out
}

fn decode_other(
    bytes: &[u8],
    format: ImageFormat,
    opts: &DecodeOptions,
) -> std::result::Result<(RgbImage, Orientation), String> {
    // PNG: the size is in the IHDR chunk right after the signature; check it
    // before the decoder reads on (it looks for the first IDAT).
    if format == ImageFormat::Png && bytes.len() >= 24 && &bytes[12..16] == b"IHDR" {
        let be = |b: &[u8]| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        check_size(be(&bytes[16..20]), be(&bytes[20..24]), opts)?;
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::no_limits();
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(8).max(1 << 20));
    reader.limits(limits);
    let mut dec = reader.into_decoder().map_err(|e| format!("cannot decode {format:?} header: {e}"))?;
    let (w, h) = dec.dimensions();
    check_size(u64::from(w), u64::from(h), opts)?;
    let orientation = dec.orientation().unwrap_or(Orientation::NoTransforms);
    let img = DynamicImage::from_decoder(dec).map_err(|e| format!("cannot decode {format:?}: {e}"))?;
    let (w, h) = (img.width(), img.height());
    let rgb: Vec<u8> = match img {
        DynamicImage::ImageRgb8(i) => i.into_raw(),
        DynamicImage::ImageLuma8(i) => expand_grey(i.as_raw()),
        DynamicImage::ImageLumaA8(i) => i.as_raw().chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        DynamicImage::ImageRgba8(i) => i.as_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        DynamicImage::ImageLuma16(i) => {
            i.as_raw().iter().flat_map(|&v| std::iter::repeat_n(v.min(255) as u8, 3)).collect()
        }
        DynamicImage::ImageLumaA16(i) => {
            i.as_raw().chunks_exact(2).flat_map(|p| std::iter::repeat_n((p[0] >> 8) as u8, 3)).collect()
        }
        DynamicImage::ImageRgb16(i) => i.as_raw().iter().map(|&v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgba16(i) => {
            i.as_raw().chunks_exact(4).flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]).collect()
        }
        other => {
            return Err(format!("unsupported pixel type {:?}, expected 8- or 16-bit samples", other.color()));
        }
    };
    let img = RgbImage::from_raw(w, h, rgb).ok_or("decoded image has the wrong buffer size")?;
    Ok((img, orientation))
}

/// Maps a destination pixel `(x, y)` to its source pixel, given the source `(w, h)`.
type SourceOf = fn(usize, usize, usize, usize) -> (usize, usize);

/// Applies an EXIF orientation as `PIL.ImageOps.exif_transpose` does
/// (2: mirror left–right, 3: rotate 180°, 4: mirror top–bottom, 5: transpose,
/// 6: rotate 90° clockwise, 7: transverse, 8: rotate 90° counter-clockwise).
pub fn apply_orientation(img: RgbImage, o: Orientation) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    // Source pixel of destination (x, y) in the destination's frame.
    let (dw, dh, map): (usize, usize, SourceOf) = match o {
        Orientation::NoTransforms => return img,
        Orientation::FlipHorizontal => (w, h, |x, y, w, _| (w - 1 - x, y)),
        Orientation::Rotate180 => (w, h, |x, y, w, h| (w - 1 - x, h - 1 - y)),
        Orientation::FlipVertical => (w, h, |x, y, _, h| (x, h - 1 - y)),
        // transpose: dst(x, y) = src(y, x)
        Orientation::Rotate90FlipH => (h, w, |x, y, _, _| (y, x)),
        // 90° clockwise: dst(x, y) = src(y, h - 1 - x)
        Orientation::Rotate90 => (h, w, |x, y, _, h| (y, h - 1 - x)),
        // transverse: dst(x, y) = src(w - 1 - y, h - 1 - x)
        Orientation::Rotate270FlipH => (h, w, |x, y, w, h| (w - 1 - y, h - 1 - x)),
        // 90° counter-clockwise: dst(x, y) = src(w - 1 - y, x)
        Orientation::Rotate270 => (h, w, |x, y, w, _| (w - 1 - y, x)),
    };
    let src = img.as_raw();
    let mut out = vec![0u8; dw * dh * 3];
    for y in 0..dh {
        for x in 0..dw {
            let (sx, sy) = map(x, y, w, h);
            let s = (sy * w + sx) * 3;
            let d = (y * dw + x) * 3;
            out[d..d + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
    RgbImage::from_raw(dw as u32, dh as u32, out).unwrap_or(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_formula_by_hand() {
        // stored (255, 255, 255, 255) -> inverted c = 0, k = 0 -> white.
        assert_eq!(cmyk_to_rgb_pillow(&[255, 255, 255, 255]), vec![255, 255, 255]);
        // stored k = 0 -> inverted k = 255 -> black whatever c.
        assert_eq!(cmyk_to_rgb_pillow(&[10, 200, 255, 0]), vec![0, 0, 0]);
        // stored (155, 255, 0, 255): c = 100, k = 0: 255 - (100*255+128)/255 ≈ 255 - 100 = 155;
        // t = 25628, ((25628 >> 8) + 25628) >> 8 = (100 + 25628) >> 8 = 100.
        assert_eq!(cmyk_to_rgb_pillow(&[155, 255, 0, 255]), vec![155, 255, 0]);
    }

    #[test]
    fn orientations_by_hand() {
        // 3x2 image with pixel values 0..6 (row-major).
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([(y * 3 + x) as u8, 0, 0]));
        let vals = |i: RgbImage| (i.dimensions(), i.pixels().map(|p| p.0[0]).collect::<Vec<_>>());
        // 0 1 2 / 3 4 5
        assert_eq!(vals(apply_orientation(img.clone(), Orientation::FlipHorizontal)), ((3, 2), vec![2, 1, 0, 5, 4, 3]));
        assert_eq!(vals(apply_orientation(img.clone(), Orientation::Rotate180)), ((3, 2), vec![5, 4, 3, 2, 1, 0]));
        assert_eq!(vals(apply_orientation(img.clone(), Orientation::FlipVertical)), ((3, 2), vec![3, 4, 5, 0, 1, 2]));
        assert_eq!(vals(apply_orientation(img.clone(), Orientation::Rotate90FlipH)), ((2, 3), vec![0, 3, 1, 4, 2, 5]));
        // clockwise: first row is the left column read bottom-up.
        assert_eq!(vals(apply_orientation(img.clone(), Orientation::Rotate90)), ((2, 3), vec![3, 0, 4, 1, 5, 2]));
        assert_eq!(vals(apply_orientation(img.clone(), Orientation::Rotate270FlipH)), ((2, 3), vec![5, 2, 4, 1, 3, 0]));
        assert_eq!(vals(apply_orientation(img, Orientation::Rotate270)), ((2, 3), vec![2, 5, 1, 4, 0, 3]));
    }
}
