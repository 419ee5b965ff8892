//! Alignment of a saliency map with the object mask (Hard ImageNet).
//!
//! The map (GradCAM for the true class) is min–max scaled per image to
//! `[0, 1]` and resized to the input size by the caller
//! (`labelscope_nn::gradcam::upsample_normalize`); here the map `C` and the
//! mask `M` are binarised at 0.5 (a map value ≥ 0.5 is on) and
//!
//! * `IoU = (|M ∩ C| + 1e-10) / (|M ∪ C| + 1e-10)` (two empty maps give 1);
//! * `Dice = (2 |M ∩ C| + 1e-10) / (|M| + |C| + 1e-10)`;
//! * density gap = mean of the map inside the mask − mean outside it
//!   (`None` when the mask is empty or covers the whole image).

use crate::planar::Mask;
use crate::{Error, Result};

/// The alignment of one map with one mask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// Intersection over union of the binarised map and the mask.
    pub iou: f64,
    /// Dice coefficient.
    pub dice: f64,
    /// Mean map value inside the mask minus outside it.
    pub density_gap: Option<f64>,
}

const EPS: f64 = 1e-10;

/// The alignment of `cam` (row-major, the mask's size, values in `[0, 1]`)
/// with `mask`.
pub fn alignment(cam: &[f32], mask: &Mask) -> Result<Alignment> {
    if cam.len() != mask.bits.len() {
        return Err(Error::Invalid(format!(
            "saliency map of {} values for a {}x{} mask; expected the same size",
            cam.len(),
            mask.width,
            mask.height
        )));
    }
    let (mut inter, mut m, mut c) = (0u64, 0u64, 0u64);
    let (mut sum_in, mut sum_out) = (0.0f64, 0.0f64);
    for (&v, &b) in cam.iter().zip(&mask.bits) {
        let on = v >= 0.5;
        inter += u64::from(on && b);
        m += u64::from(b);
        c += u64::from(on);
        if b {
            sum_in += f64::from(v);
        } else {
            sum_out += f64::from(v);
        }
    }
    let union = m + c - inter;
    let n = mask.bits.len() as u64;
    let density_gap = (m > 0 && m < n).then(|| sum_in / m as f64 - sum_out / (n - m) as f64);
    Ok(Alignment {
        iou: (inter as f64 + EPS) / (union as f64 + EPS),
        dice: (2.0 * inter as f64 + EPS) / ((m + c) as f64 + EPS),
        density_gap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_made_maps() {
        // 4 x 1: mask on pixels 0, 1; map on pixels 1, 2 (0.5 counts as on).
        let mask = Mask::new(4, 1, vec![true, true, false, false]).unwrap();
        let a = alignment(&[0.2, 0.9, 0.5, 0.1], &mask).unwrap();
        assert!((a.iou - 1.0 / 3.0).abs() < 1e-9);
        assert!((a.dice - 0.5).abs() < 1e-9);
        assert!((a.density_gap.unwrap() - ((0.2 + 0.9) / 2.0 - (0.5 + 0.1) / 2.0)).abs() < 1e-6);
        // Two empty maps agree perfectly; an empty mask has no density gap.
        let empty = Mask::new(4, 1, vec![false; 4]).unwrap();
        let a = alignment(&[0.1; 4], &empty).unwrap();
        assert_eq!((a.iou, a.dice, a.density_gap), (1.0, 1.0, None));
        // A map off the object: IoU ~ 0.
        let a = alignment(&[0.0, 0.0, 1.0, 1.0], &mask).unwrap();
        assert!(a.iou < 1e-9 && a.density_gap.unwrap() == -1.0);
        assert!(alignment(&[0.0; 3], &mask).is_err());
    }
}
