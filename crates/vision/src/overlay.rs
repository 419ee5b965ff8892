//! Visual overlays of masks and boxes, and atomic PNG output.

use std::path::Path;

use crate::error::{Error, Result};
use crate::image::RgbImage;

/// Colours given to masks and boxes in order (cycled).
pub const PALETTE: [[u8; 3]; 10] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [255, 225, 25],
    [145, 30, 180],
    [245, 130, 48],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [0, 128, 128],
];

/// Opacity of the mask fill.
pub const MASK_ALPHA: f32 = 0.45;

/// Thickness of box outlines, in pixels.
pub const BOX_THICKNESS: usize = 2;

fn put(buf: &mut [u8], w: usize, x: usize, y: usize, c: [u8; 3]) {
    let i = (y * w + x) * 3;
    buf[i..i + 3].copy_from_slice(&c);
}

/// Draws `masks` and `boxes` over a copy of `img`.
///
/// Mask `i` (row-major, `height * width` pixels) is blended with colour
/// `PALETTE[i % 10]` at opacity [`MASK_ALPHA`], and its boundary (foreground
/// pixels with a 4-neighbour that is background or outside the image) is
/// drawn in the solid colour. Box `i` (`[x0, y0, x1, y1]` in pixels) is drawn
/// as a [`BOX_THICKNESS`]-pixel rectangle in the same colour, inside the
/// box's edges and clipped to the image; boxes with non-finite coordinates
/// are skipped. Masks are drawn first, then boxes.
///
/// Errors if a mask does not have one value per pixel.
pub fn draw_overlay(img: &RgbImage, masks: &[Vec<bool>], boxes: &[[f64; 4]]) -> Result<RgbImage> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut buf = img.as_raw().clone();
    for (k, mask) in masks.iter().enumerate() {
        if mask.len() != w * h {
            return Err(Error::mismatch(
                format!("overlay mask {k} length"),
                format!("{h}x{w} = {}", h * w),
                mask.len(),
            ));
        }
        let c = PALETTE[k % PALETTE.len()];
        for y in 0..h {
            for x in 0..w {
                if !mask[y * w + x] {
                    continue;
                }
                let boundary = x == 0
                    || y == 0
                    || x + 1 == w
                    || y + 1 == h
                    || !mask[y * w + x - 1]
                    || !mask[y * w + x + 1]
                    || !mask[(y - 1) * w + x]
                    || !mask[(y + 1) * w + x];
                if boundary {
                    put(&mut buf, w, x, y, c);
                } else {
                    let i = (y * w + x) * 3;
                    for ch in 0..3 {
                        let v = buf[i + ch] as f32 * (1.0 - MASK_ALPHA) + c[ch] as f32 * MASK_ALPHA;
                        buf[i + ch] = v.round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
    }
    if w > 0 && h > 0 {
        for (k, b) in boxes.iter().enumerate() {
            if !b.iter().all(|v| v.is_finite()) {
                continue;
            }
            let c = PALETTE[k % PALETTE.len()];
            let clampx = |v: f64| v.round().clamp(0.0, (w - 1) as f64) as usize;
            let clampy = |v: f64| v.round().clamp(0.0, (h - 1) as f64) as usize;
            let (x0, x1) = (clampx(b[0].min(b[2])), clampx(b[0].max(b[2])));
            let (y0, y1) = (clampy(b[1].min(b[3])), clampy(b[1].max(b[3])));
            for t in 0..BOX_THICKNESS {
                for x in x0..=x1 {
                    put(&mut buf, w, x, (y0 + t).min(y1), c);
                    put(&mut buf, w, x, y1.saturating_sub(t).max(y0), c);
                }
                for y in y0..=y1 {
                    put(&mut buf, w, (x0 + t).min(x1), y, c);
                    put(&mut buf, w, x1.saturating_sub(t).max(x0), y, c);
                }
            }
        }
    }
    RgbImage::from_raw(w as u32, h as u32, buf).ok_or_else(|| Error::Invalid("internal: overlay buffer size".into()))
}

/// Encodes `img` as PNG and writes it to `path` atomically (temporary file
/// in the same directory, then rename), via `labelscope_core::atomic`.
/// Errors name the file.
pub fn save_png_atomic(img: &RgbImage, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let mut bytes: Vec<u8> = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::Image { path: path.to_path_buf(), message: format!("cannot encode PNG: {e}") })?;
    labelscope_core::atomic::write_atomic(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_inside_outside_and_boundary() {
        let img = RgbImage::from_pixel(20, 12, image::Rgb([100, 100, 100]));
        // Mask: rectangle rows 2..8, columns 3..10.
        let mask: Vec<bool> =
            (0..12).flat_map(|y| (0..20).map(move |x| (2..8).contains(&y) && (3..10).contains(&x))).collect();
        let out = draw_overlay(&img, &[mask], &[[12.0, 1.0, 18.0, 10.0]]).unwrap();
        let c = PALETTE[0];
        let blend = |ch: usize| (100.0 * (1.0 - MASK_ALPHA) + c[ch] as f32 * MASK_ALPHA).round() as u8;
        assert_eq!(out.get_pixel(5, 5).0, [blend(0), blend(1), blend(2)], "interior blended");
        assert_eq!(out.get_pixel(3, 5).0, c, "boundary solid");
        assert_eq!(out.get_pixel(1, 1).0, [100, 100, 100], "outside untouched");
        // Box 0 in the same colour: edges 2 px thick, inside untouched.
        assert_eq!(out.get_pixel(12, 5).0, c);
        assert_eq!(out.get_pixel(13, 5).0, c);
        assert_eq!(out.get_pixel(14, 5).0, [100, 100, 100]);
        assert_eq!(out.get_pixel(15, 1).0, c);
        assert_eq!(out.get_pixel(15, 10).0, c);
        assert_eq!(out.get_pixel(19, 5).0, [100, 100, 100]);
        assert!(draw_overlay(&img, &[vec![true; 3]], &[]).is_err());
    }

    #[test]
    fn save_png_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.png");
        let img = RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
        save_png_atomic(&img, &p).unwrap();
        assert_eq!(crate::image::load_rgb(&p).unwrap(), img);
        let e = save_png_atomic(&img, dir.path().join("no/dir/o.png")).unwrap_err().to_string();
        assert!(e.contains("o.png"), "{e}");
    }
}
