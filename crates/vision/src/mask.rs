//! Binary pixel masks: resampling from a patch grid, hole filling, IoU and
//! bounding boxes.
//!
//! A mask is a row-major `Vec<bool>` of `height * width` pixels; `true` is
//! foreground.

use crate::error::{Error, Result};

fn check_len(what: &str, len: usize, h: usize, w: usize) -> Result<()> {
    match h.checked_mul(w) {
        Some(n) if n == len => Ok(()),
        Some(n) => Err(Error::mismatch(format!("{what} length"), format!("{h}x{w} = {n}"), len)),
        None => Err(Error::Invalid(format!("{what}: size {h}x{w} overflows"))),
    }
}

/// Upsamples a patch-grid mask (`gh` rows x `gw` columns, row-major) to a
/// `height` x `width` pixel mask by nearest-neighbour lookup.
///
/// Rule: pixel `(y, x)` takes the value of grid cell
/// `(floor(y * gh / height), floor(x * gw / width))` (integer arithmetic), so
/// that each cell covers a contiguous block of pixels and, when `height` is a
/// multiple of `gh`, exactly `height / gh` rows.
///
/// Errors if `grid.len() != gh * gw` or any dimension is zero.
pub fn upsample_nearest(grid: &[bool], gh: usize, gw: usize, height: usize, width: usize) -> Result<Vec<bool>> {
    check_len("patch-grid mask", grid.len(), gh, gw)?;
    if gh == 0 || gw == 0 || height == 0 || width == 0 {
        return Err(Error::Invalid(format!(
            "cannot upsample a {gh}x{gw} grid to {height}x{width}: sizes must be non-zero"
        )));
    }
    let cols: Vec<usize> = (0..width).map(|x| x * gw / width).collect();
    let mut out = Vec::with_capacity(height * width);
    for y in 0..height {
        let row = &grid[(y * gh / height) * gw..][..gw];
        out.extend(cols.iter().map(|&c| row[c]));
    }
    Ok(out)
}

/// Fills holes: every background pixel that is not 4-connected to the image
/// border through background pixels becomes foreground.
///
/// This is `scipy.ndimage.binary_fill_holes(mask)` with its default
/// (cross-shaped, 4-connected) structuring element. Errors if
/// `mask.len() != h * w`.
pub fn fill_holes(mask: &[bool], h: usize, w: usize) -> Result<Vec<bool>> {
    check_len("mask", mask.len(), h, w)?;
    if mask.is_empty() {
        return Ok(Vec::new());
    }
    // outside[i]: background pixel reachable from the border.
    let mut outside = vec![false; mask.len()];
    let mut stack: Vec<usize> = Vec::new();
    let seed = |i: usize, outside: &mut Vec<bool>, stack: &mut Vec<usize>| {
        if !mask[i] && !outside[i] {
            outside[i] = true;
            stack.push(i);
        }
    };
    for x in 0..w {
        seed(x, &mut outside, &mut stack);
        seed((h - 1) * w + x, &mut outside, &mut stack);
    }
    for y in 0..h {
        seed(y * w, &mut outside, &mut stack);
        seed(y * w + w - 1, &mut outside, &mut stack);
    }
    while let Some(i) = stack.pop() {
        let (y, x) = (i / w, i % w);
        if y > 0 {
            seed(i - w, &mut outside, &mut stack);
        }
        if y + 1 < h {
            seed(i + w, &mut outside, &mut stack);
        }
        if x > 0 {
            seed(i - 1, &mut outside, &mut stack);
        }
        if x + 1 < w {
            seed(i + 1, &mut outside, &mut stack);
        }
    }
    Ok(outside.into_iter().map(|o| !o).collect())
}

/// Intersection over union of two pixel masks of the same length.
///
/// Two empty masks (union of zero pixels) have IoU 0 by definition here, so
/// that an empty refinement is never considered to agree with anything.
/// Errors if the lengths differ.
pub fn iou(a: &[bool], b: &[bool]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(Error::mismatch("mask lengths for IoU", a.len(), b.len()));
    }
    let (mut inter, mut union) = (0usize, 0usize);
    for (&p, &q) in a.iter().zip(b) {
        inter += (p && q) as usize;
        union += (p || q) as usize;
    }
    Ok(if union == 0 { 0.0 } else { inter as f64 / union as f64 })
}

/// Tight bounding box `[x0, y0, x1, y1]` of the foreground, inclusive pixel
/// indices (`x1`, `y1` are the last foreground column and row), or `None`
/// for an empty mask. A mask whose length is not `h * w` also gives `None`;
/// use [`bbox_checked`] to tell the two apart.
pub fn bbox(mask: &[bool], h: usize, w: usize) -> Option<[usize; 4]> {
    bbox_checked(mask, h, w).ok().flatten()
}

/// Like [`bbox`], but errors if `mask.len() != h * w`.
pub fn bbox_checked(mask: &[bool], h: usize, w: usize) -> Result<Option<[usize; 4]>> {
    check_len("mask", mask.len(), h, w)?;
    let mut b: Option<[usize; 4]> = None;
    for y in 0..h {
        for (x, &m) in mask[y * w..(y + 1) * w].iter().enumerate() {
            if m {
                b = Some(match b {
                    None => [x, y, x, y],
                    Some([x0, y0, x1, y1]) => [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
                });
            }
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsample_rule() {
        let grid = [true, false, false, true];
        let m = upsample_nearest(&grid, 2, 2, 3, 5).unwrap();
        // rows 0,1 -> grid row 0 (0*2/3=0, 1*2/3=0), row 2 -> 1; cols 0..2 -> 0 (x*2/5: 0,0,0,1,1).
        let expect: Vec<bool> = (0..3).flat_map(|y| (0..5).map(move |x| grid[(y * 2 / 3) * 2 + x * 2 / 5])).collect();
        assert_eq!(m, expect);
        assert_eq!(&m[..5], &[true, true, true, false, false]);
        assert_eq!(&m[10..], &[false, false, false, true, true]);
        assert!(upsample_nearest(&grid, 2, 3, 3, 5).is_err());
    }

    #[test]
    fn iou_and_bbox() {
        let a = [true, true, false, false];
        let b = [false, true, true, false];
        assert!((iou(&a, &b).unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(iou(&[false; 4], &[false; 4]).unwrap(), 0.0);
        assert!(iou(&a, &b[..3]).is_err());
        assert_eq!(bbox(&[false; 6], 2, 3), None);
        let m = [false, false, true, false, true, false];
        assert_eq!(bbox(&m, 2, 3), Some([1, 0, 2, 1]));
        assert!(bbox_checked(&m, 3, 3).is_err());
    }

    #[test]
    fn fill_simple_ring() {
        #[rustfmt::skip]
        let m = [
            0, 0, 0, 0, 0,
            0, 1, 1, 1, 0,
            0, 1, 0, 1, 0,
            0, 1, 1, 1, 0,
            0, 0, 0, 0, 0,
        ];
        let m: Vec<bool> = m.iter().map(|&v| v == 1).collect();
        let f = fill_holes(&m, 5, 5).unwrap();
        assert!(f[12]);
        assert_eq!(f.iter().filter(|&&v| v).count(), 9);
        // A diagonal gap does not connect (4-connectivity): still a hole.
        let mut d = m.clone();
        d[6] = false; // corner of the ring removed: background at (1,1) touches (0,1) -> border.
        let f = fill_holes(&d, 5, 5).unwrap();
        assert!(f[12], "centre touches (1,1) only diagonally");
        assert_eq!(fill_holes(&[], 0, 4).unwrap(), Vec::<bool>::new());
        assert_eq!(fill_holes(&[], 3, 0).unwrap(), Vec::<bool>::new());
    }
}
