//! Image decoding and resizing.

use std::path::Path;

pub use image::RgbImage;

use crate::error::{Error, Result};

/// Decodes a JPEG or PNG file into 8-bit RGB.
///
/// The format is recognised from the file content (not the extension).
/// Grey, grey+alpha, RGBA, 16-bit and CMYK images are converted to RGB
/// (alpha is dropped). Errors name the file.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let err = |message: String| Error::Image { path: path.to_path_buf(), message };
    let reader = image::ImageReader::open(path)
        .map_err(|e| err(format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| err(format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(err("unrecognised image format, expected a JPEG or PNG file".into()));
    }
    let img = reader.decode().map_err(|e| err(format!("cannot decode as JPEG/PNG: {e}")))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(err(format!("empty image ({}x{}), expected a non-empty image", img.width(), img.height())));
    }
    Ok(img.to_rgb8())
}

/// Source coordinate and weights of the bilinear (half-pixel centre) rule:
/// destination index `d` maps to the source position `(d + 0.5) * n_in / n_out - 0.5`,
/// clamped to `[0, n_in - 1]`.
pub(crate) fn linear_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|d| {
            let s = ((d as f64 + 0.5) * scale - 0.5).clamp(0.0, (n_in - 1) as f64);
            let i0 = s.floor() as usize;
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, (s - i0 as f64) as f32)
        })
        .collect()
}

/// Resizes `img` to `width` x `height` with bilinear interpolation.
///
/// Pixel centres are aligned (the `align_corners = False` convention of
/// `torch.nn.functional.interpolate` and of OpenCV's `INTER_LINEAR`):
/// output pixel `(y, x)` samples the input at
/// `((x + 0.5) * W_in / width - 0.5, (y + 0.5) * H_in / height - 0.5)`, clamped
/// to the image. No anti-aliasing is applied when shrinking.
/// Returns an error if any dimension is zero.
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    let (w_in, h_in) = img.dimensions();
    if width == 0 || height == 0 || w_in == 0 || h_in == 0 {
        return Err(Error::Invalid(format!(
            "cannot resize a {w_in}x{h_in} image to {width}x{height}: sizes must be non-zero"
        )));
    }
    let xs = linear_taps(w_in as usize, width as usize);
    let ys = linear_taps(h_in as usize, height as usize);
    let src = img.as_raw();
    let stride = w_in as usize * 3;
    let mut out = vec![0u8; width as usize * height as usize * 3];
    for (y, &(y0, y1, fy)) in ys.iter().enumerate() {
        let r0 = &src[y0 * stride..(y0 + 1) * stride];
        let r1 = &src[y1 * stride..(y1 + 1) * stride];
        let row = &mut out[y * width as usize * 3..(y + 1) * width as usize * 3];
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let a = r0[x0 * 3 + c] as f32 * (1.0 - fx) + r0[x1 * 3 + c] as f32 * fx;
                let b = r1[x0 * 3 + c] as f32 * (1.0 - fx) + r1[x1 * 3 + c] as f32 * fx;
                row[x * 3 + c] = (a * (1.0 - fy) + b * fy).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::from_raw(width, height, out)
        .ok_or_else(|| Error::Invalid(format!("internal: buffer size for {width}x{height} image")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_identity_and_constant() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 3]));
        let same = resize_rgb(&img, 7, 5).unwrap();
        assert_eq!(same, img);
        let c = RgbImage::from_pixel(9, 4, image::Rgb([10, 200, 30]));
        let r = resize_rgb(&c, 20, 13).unwrap();
        assert!(r.pixels().all(|p| p.0 == [10, 200, 30]));
        assert!(resize_rgb(&c, 0, 3).is_err());
    }

    #[test]
    fn resize_upsample_2x_matches_half_pixel_rule() {
        // 2 -> 4 along x: positions -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1).
        let img = RgbImage::from_raw(2, 1, vec![0, 0, 0, 100, 100, 100]).unwrap();
        let r = resize_rgb(&img, 4, 1).unwrap();
        let v: Vec<u8> = r.pixels().map(|p| p.0[0]).collect();
        assert_eq!(v, vec![0, 25, 75, 100]);
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("not_an_image.jpg");
        std::fs::write(&p, b"hello, world").unwrap();
        let e = load_rgb(&p).unwrap_err().to_string();
        assert!(e.contains("not_an_image.jpg"), "{e}");
        let e = load_rgb(dir.path().join("missing.png")).unwrap_err().to_string();
        assert!(e.contains("missing.png"), "{e}");
    }

    #[test]
    fn load_grey_png_as_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("grey.png");
        let g = image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(x * 50 + y) as u8]));
        g.save(&p).unwrap();
        let rgb = load_rgb(&p).unwrap();
        assert_eq!(rgb.dimensions(), (3, 2));
        assert_eq!(rgb.get_pixel(2, 1).0, [101, 101, 101]);
    }
}
