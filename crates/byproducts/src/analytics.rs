//! Click localisation accuracy against ground-truth boxes and its baselines.

use std::collections::BTreeMap;

use labelscope_core::rng::Xoshiro256;

use crate::{Error, Point, Result};

/// A box in image-normalised coordinates `[x0, y0, x1, y1]`.
pub type NormBox = [f64; 4];

fn inside(p: Point, b: &NormBox) -> bool {
    p.x >= b[0] && p.x <= b[2] && p.y >= b[1] && p.y <= b[3]
}

/// Click localisation summary over the images that have both a click and boxes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickAccuracy {
    /// Images scored (click and at least one box of the image's class).
    pub images: usize,
    /// Fraction of clicks inside some box of the image's class.
    pub click: f64,
    /// Fraction of images whose centre `(0.5, 0.5)` is inside such a box.
    pub centre: f64,
    /// Images where the centre click fails.
    pub centre_fails: usize,
    /// Click accuracy on the images where the centre click fails (`NaN` if none).
    pub click_where_centre_fails: f64,
}

/// Scores `clicks` (image key → click) against `boxes` (image key →
/// normalised boxes of the image's class). Images missing from either side
/// are left out; no image in common is an error.
pub fn click_accuracy(
    clicks: &BTreeMap<String, Point>,
    boxes: &BTreeMap<String, Vec<NormBox>>,
) -> Result<ClickAccuracy> {
    let (mut n, mut hit, mut centre, mut fails, mut hit_fails) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let c = Point { x: 0.5, y: 0.5 };
    for (key, p) in clicks {
        let Some(bs) = boxes.get(key).filter(|b| !b.is_empty()) else { continue };
        n += 1;
        let h = bs.iter().any(|b| inside(*p, b));
        hit += h as usize;
        if bs.iter().any(|b| inside(c, b)) {
            centre += 1;
        } else {
            fails += 1;
            hit_fails += h as usize;
        }
    }
    if n == 0 {
        return Err(Error::Invalid("no image has both a click and a ground-truth box".into()));
    }
    Ok(ClickAccuracy {
        images: n,
        click: hit as f64 / n as f64,
        centre: centre as f64 / n as f64,
        centre_fails: fails,
        click_where_centre_fails: if fails > 0 { hit_fails as f64 / fails as f64 } else { f64::NAN },
    })
}

/// `0.5 + sigma · N(0, 1)` conditioned on `[0, 1]` (rejection sampling; at
/// most one in about 2500 draws is kept for `sigma = 1000`).
fn truncated(rng: &mut Xoshiro256, sigma: f64) -> f64 {
    loop {
        let v = 0.5 + sigma * rng.gauss();
        if (0.0..=1.0).contains(&v) {
            return v;
        }
    }
}

/// Accuracy of a random click drawn from an isotropic Gaussian around the
/// image centre with standard deviation `sigma` (image-normalised units),
/// truncated to the image (each coordinate redrawn until it falls in
/// `[0, 1]`), `draws` times per image, seeded. `sigma = 0` is the centre
/// click; as `sigma` grows the click tends to a uniform one, which
/// `sigma = ∞` (and any `sigma` above 1000, where the difference is below
/// 1e-7) draws directly.
pub fn gaussian_centre_accuracy(
    boxes: &BTreeMap<String, Vec<NormBox>>,
    sigma: f64,
    draws: usize,
    seed: u64,
) -> Result<f64> {
    let flat: Vec<&[NormBox]> = boxes.values().map(Vec::as_slice).collect();
    gaussian_accuracy(&flat, sigma, draws, seed)
}

/// [`gaussian_centre_accuracy`] over a list of per-image box sets (images
/// without boxes are left out).
pub fn gaussian_accuracy<B: AsRef<[NormBox]>>(images: &[B], sigma: f64, draws: usize, seed: u64) -> Result<f64> {
    if sigma.is_nan() || sigma < 0.0 || draws == 0 {
        return Err(Error::Invalid(format!("sigma must be >= 0 and draws > 0 (got {sigma}, {draws})")));
    }
    let mut rng = Xoshiro256::from_seed(seed);
    let (mut n, mut hit) = (0u64, 0u64);
    for bs in images.iter().map(AsRef::as_ref).filter(|b| !b.is_empty()) {
        for _ in 0..draws {
            let p = if sigma > 1000.0 {
                Point { x: rng.unit(), y: rng.unit() }
            } else {
                Point { x: truncated(&mut rng, sigma), y: truncated(&mut rng, sigma) }
            };
            n += 1;
            hit += bs.iter().any(|b| inside(p, b)) as u64;
        }
    }
    if n == 0 {
        return Err(Error::Invalid("no boxes".into()));
    }
    Ok(hit as f64 / n as f64)
}
