//! Planar RGB images in `[0, 1]` and binary masks of the same size.

use crate::{Error, Result};

/// A `3 × height × width` image, channel planes one after the other
/// (`data[c * h * w + y * w + x]`), values in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Planar {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The three planes.
    pub data: Vec<f32>,
}

impl Planar {
    /// An image of one colour.
    pub fn filled(width: usize, height: usize, rgb: [f32; 3]) -> Planar {
        let n = width * height;
        let mut data = Vec::with_capacity(3 * n);
        for v in rgb {
            data.extend(std::iter::repeat_n(v, n));
        }
        Planar { width, height, data }
    }

    /// From interleaved 8-bit RGB (`rgb[3 * (y * w + x) + c]`), divided by 255.
    pub fn from_rgb8(width: usize, height: usize, rgb: &[u8]) -> Result<Planar> {
        if rgb.len() != 3 * width * height {
            return Err(Error::Invalid(format!(
                "{} bytes for a {width}x{height} RGB image; expected {}",
                rgb.len(),
                3 * width * height
            )));
        }
        let n = width * height;
        let mut data = vec![0.0f32; 3 * n];
        for (p, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * n + p] = f32::from(px[c]) / 255.0;
            }
        }
        Ok(Planar { width, height, data })
    }

    /// To interleaved 8-bit RGB (rounded, clamped).
    pub fn to_rgb8(&self) -> Vec<u8> {
        let n = self.width * self.height;
        let mut out = vec![0u8; 3 * n];
        for p in 0..n {
            for c in 0..3 {
                out[3 * p + c] = (self.data[c * n + p].clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
        out
    }

    /// The value of channel `c` at `(x, y)`.
    pub fn at(&self, c: usize, x: usize, y: usize) -> f32 {
        self.data[c * self.width * self.height + y * self.width + x]
    }

    /// Sets channel `c` at `(x, y)`.
    pub fn set(&mut self, c: usize, x: usize, y: usize, v: f32) {
        let n = self.width * self.height;
        self.data[c * n + y * self.width + x] = v;
    }

    /// Checks that `mask` has this image's size.
    pub fn check_mask(&self, mask: &Mask) -> Result<()> {
        if (mask.width, mask.height) != (self.width, self.height) {
            return Err(Error::Invalid(format!(
                "mask of {}x{} for an image of {}x{}; expected the same size",
                mask.width, mask.height, self.width, self.height
            )));
        }
        Ok(())
    }
}

/// A binary mask, row-major (`bits[y * width + x]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `true` on the object.
    pub bits: Vec<bool>,
}

impl Mask {
    /// From a row-major mask.
    pub fn new(width: usize, height: usize, bits: Vec<bool>) -> Result<Mask> {
        if bits.len() != width * height {
            return Err(Error::Invalid(format!(
                "{} mask values for {width}x{height}; expected {}",
                bits.len(),
                width * height
            )));
        }
        Ok(Mask { width, height, bits })
    }

    /// From 8-bit values, binarised as `> 0` (Hard ImageNet's rule).
    pub fn from_gray8(width: usize, height: usize, gray: &[u8]) -> Result<Mask> {
        Mask::new(width, height, gray.iter().map(|&v| v > 0).collect())
    }

    /// Object pixels.
    pub fn count(&self) -> usize {
        self.bits.iter().filter(|&&b| b).count()
    }

    /// Whether `(x, y)` is on the object.
    pub fn get(&self, x: usize, y: usize) -> bool {
        self.bits[y * self.width + x]
    }

    /// The complement (background).
    pub fn inverted(&self) -> Mask {
        Mask { width: self.width, height: self.height, bits: self.bits.iter().map(|b| !b).collect() }
    }

    /// `[x0, y0, x1, y1)` of the object pixels (exclusive ends), `None` when empty.
    pub fn bbox(&self) -> Option<[usize; 4]> {
        let mut b: Option<[usize; 4]> = None;
        for y in 0..self.height {
            for x in 0..self.width {
                if self.get(x, y) {
                    let e = b.get_or_insert([x, y, x + 1, y + 1]);
                    e[0] = e[0].min(x);
                    e[1] = e[1].min(y);
                    e[2] = e[2].max(x + 1);
                    e[3] = e[3].max(y + 1);
                }
            }
        }
        b
    }
}
