//! Relative foreground sensitivity (RFS, Hard ImageNet): accuracy under
//! Gaussian noise on the object only versus on the background only.
//!
//! With `z` standard normal per pixel and channel and `m` the region (the
//! mask for foreground noise, its complement for background noise):
//!
//! * L∞ mode: `x' = clip(x + σ · m · z, 0, 1)`;
//! * L2 mode: `n = m · z` scaled to unit L2 norm over the whole image
//!   (all channels), `x' = clip(x + σ · n, 0, 1)` (no change when the
//!   region is empty).
//!
//! Over several trials, `a_fg` and `a_bg` are class-balanced accuracies
//! (the mean of the per-class accuracies) under foreground and background
//! noise, `a = (a_fg + a_bg) / 2`, and
//! `RFS = (a_bg − a_fg) / (2 · min(a, 1 − a))`, 0 when `a` is 0 or 1 ([`rfs`]).
//! A model that relies on the object loses accuracy when the object is
//! noised (`a_fg < a_bg`, RFS > 0); one that relies on the background has
//! RFS < 0.

use labelscope_core::rng::Xoshiro256;

use crate::planar::{Mask, Planar};
use crate::{Error, Result};

/// How the noise is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseMode {
    /// `σ` per pixel (standard deviation of each value).
    Linf,
    /// `σ` is the L2 norm of the whole noise image.
    L2,
}

impl NoiseMode {
    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            NoiseMode::Linf => "linf",
            NoiseMode::L2 => "l2",
        }
    }
}

/// Which part of the image is noised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    /// The object (mask pixels).
    Foreground,
    /// Everything else.
    Background,
}

/// Adds noise of `sigma` in `mode` to `region` of `img`, with normal
/// samples from `rng` (one per pixel and channel, in plane order, whatever
/// the region, so that foreground and background trials of one seed use
/// the same `z`).
pub fn noised(
    img: &Planar,
    mask: &Mask,
    region: Region,
    sigma: f64,
    mode: NoiseMode,
    rng: &mut Xoshiro256,
) -> Result<Planar> {
    img.check_mask(mask)?;
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(Error::Invalid(format!("noise sigma {sigma}: expected a finite number >= 0")));
    }
    let n = img.width * img.height;
    let mut noise = vec![0.0f64; 3 * n];
    for c in 0..3 {
        for p in 0..n {
            let z = rng.gauss();
            let on = mask.bits[p] == (region == Region::Foreground);
            noise[c * n + p] = if on { z } else { 0.0 };
        }
    }
    let scale = match mode {
        NoiseMode::Linf => sigma,
        NoiseMode::L2 => {
            let norm = noise.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                sigma / norm
            } else {
                0.0
            }
        }
    };
    let data = img.data.iter().zip(&noise).map(|(&x, &z)| (f64::from(x) + scale * z).clamp(0.0, 1.0) as f32).collect();
    Ok(Planar { width: img.width, height: img.height, data })
}

/// `RFS = (a_bg − a_fg) / (2 · min(a, 1 − a))` with `a = (a_fg + a_bg) / 2`;
/// 0 when `a ∈ {0, 1}`.
pub fn rfs(a_fg: f64, a_bg: f64) -> f64 {
    let a = (a_fg + a_bg) / 2.0;
    let d = 2.0 * a.min(1.0 - a);
    if d <= 0.0 {
        0.0
    } else {
        (a_bg - a_fg) / d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfs_formula() {
        assert_eq!(rfs(0.5, 0.5), 0.0);
        assert_eq!(rfs(1.0, 1.0), 0.0);
        assert_eq!(rfs(0.0, 0.0), 0.0);
        // a = 0.5: (0.9 - 0.1) / 1 = 0.8.
        assert!((rfs(0.1, 0.9) - 0.8).abs() < 1e-12);
        // a = 0.8: (1.0 - 0.6) / (2 * 0.2) = 1 (the extreme).
        assert!((rfs(0.6, 1.0) - 1.0).abs() < 1e-12);
        assert!((rfs(1.0, 0.6) + 1.0).abs() < 1e-12);
        // a = 0.25: (0.3 - 0.2) / 0.5 = 0.2.
        assert!((rfs(0.2, 0.3) - 0.2).abs() < 1e-12);
    }

    fn half_mask(w: usize, h: usize) -> Mask {
        Mask::new(w, h, (0..w * h).map(|p| p % w < w / 2).collect()).unwrap()
    }

    #[test]
    fn noise_stays_in_its_region_and_has_its_scale() {
        let img = Planar::filled(64, 64, [0.5, 0.5, 0.5]);
        let m = half_mask(64, 64);
        let mut rng = Xoshiro256::from_seed(3);
        let fg = noised(&img, &m, Region::Foreground, 0.1, NoiseMode::Linf, &mut rng).unwrap();
        let n = 64 * 64;
        let mut sum2 = 0.0;
        let mut count = 0usize;
        for c in 0..3 {
            for p in 0..n {
                let d = f64::from(fg.data[c * n + p]) - 0.5;
                if m.bits[p] {
                    sum2 += d * d;
                    count += 1;
                } else {
                    assert_eq!(d, 0.0, "background untouched");
                }
            }
        }
        let sd = (sum2 / count as f64).sqrt();
        assert!((sd - 0.1).abs() < 0.005, "per-value sd {sd}");
        // L2: the whole noise image has norm sigma (no clipping at this size).
        let mut rng = Xoshiro256::from_seed(3);
        let bg = noised(&img, &m, Region::Background, 2.0, NoiseMode::L2, &mut rng).unwrap();
        let norm: f64 = bg.data.iter().map(|&v| (f64::from(v) - 0.5).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 2.0).abs() < 1e-4, "{norm}");
        for p in 0..n {
            if m.bits[p] {
                assert_eq!(bg.data[p], 0.5);
            }
        }
        // Values are clipped to [0, 1].
        let mut rng = Xoshiro256::from_seed(4);
        let big = noised(&img, &m, Region::Foreground, 10.0, NoiseMode::Linf, &mut rng).unwrap();
        assert!(big.data.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(big.data.contains(&0.0) && big.data.contains(&1.0));
        assert!(noised(&img, &m, Region::Foreground, f64::NAN, NoiseMode::L2, &mut rng).is_err());
    }
}
