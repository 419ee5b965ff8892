//! Object ablations (Hard ImageNet): what a classifier says when the object
//! is taken out of the image.
//!
//! All work on a [`Planar`] image in `[0, 1]` (after the recipe's resize and
//! crop, before normalisation) and its binary [`Mask`]:
//!
//! * [`Ablation::Gray`] — every object pixel becomes 0.5 (all channels).
//! * [`Ablation::GrayBbox`] — every pixel of the mask's bounding box becomes
//!   0.5.
//! * [`Ablation::Tile`] — for each connected component of the mask
//!   (4-connectivity, as `scipy.ndimage.label`'s default), its bounding box
//!   `B` (width `bw`, height `bh`) is filled by tiling a patch of background
//!   taken next to it. The candidates are the four boxes of `B`'s size that
//!   touch it — right `[x1, x1+bw) × [y0, y1)`, left `[x0−bw, x0)`, below
//!   `[x0, x1) × [y1, y1+bh)`, above `[y0−bh, y0)` — each clipped to the
//!   image and then cut back from `B`'s side outwards at the first column
//!   (right, left) or row (below, above) that holds an object pixel, so that
//!   it holds none. The candidate with the largest area wins (ties in the
//!   order right, left, below, above); pixel `(x, y)` of `B` takes the
//!   patch's pixel `((x − x0) mod pw, (y − y0) mod ph)` from its top-left
//!   corner. Patches are always read from the original image (the order of
//!   the components does not matter unless their boxes overlap; then the
//!   later component, in label order, is written last). When every
//!   candidate is empty the box is filled with 0.5 and counted
//!   ([`TileStats::fallbacks`]).
//! * [`Ablation::None`] — the image as it is.
//!
//! An empty mask leaves the image unchanged under every ablation; callers
//! count such images ([`crate::score`]) rather than scoring them silently.

use crate::planar::{Mask, Planar};
use crate::Result;

/// The ablations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ablation {
    /// No change.
    None,
    /// Object pixels to 0.5.
    Gray,
    /// The mask's bounding box to 0.5.
    GrayBbox,
    /// Each component's box tiled with adjacent background.
    Tile,
}

impl Ablation {
    /// Every ablation, in report order.
    pub const ALL: [Ablation; 4] = [Ablation::None, Ablation::Gray, Ablation::GrayBbox, Ablation::Tile];

    /// Command-line and report name.
    pub fn name(self) -> &'static str {
        match self {
            Ablation::None => "none",
            Ablation::Gray => "gray",
            Ablation::GrayBbox => "gray-bbox",
            Ablation::Tile => "tile",
        }
    }

    /// Parses [`Ablation::name`].
    pub fn parse(s: &str) -> Option<Ablation> {
        Ablation::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// What [`tile`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TileStats {
    /// Connected components of the mask.
    pub components: usize,
    /// Components whose four candidates were all empty (filled with 0.5).
    pub fallbacks: usize,
}

/// A connected component: its pixel count and bounding box `[x0, y0, x1, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// Object pixels in the component.
    pub pixels: usize,
    /// Bounding box, exclusive ends.
    pub bbox: [usize; 4],
}

/// The 4-connected components of `mask`, labelled in raster order of their
/// first pixel.
pub fn components(mask: &Mask) -> Vec<Component> {
    let (w, h) = (mask.width, mask.height);
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask.bits[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut c = Component { pixels: 0, bbox: [w, h, 0, 0] };
        while let Some(p) = stack.pop() {
            let (x, y) = (p % w, p / w);
            c.pixels += 1;
            c.bbox = [c.bbox[0].min(x), c.bbox[1].min(y), c.bbox[2].max(x + 1), c.bbox[3].max(y + 1)];
            let mut push = |q: usize| {
                if mask.bits[q] && !seen[q] {
                    seen[q] = true;
                    stack.push(q);
                }
            };
            if x > 0 {
                push(p - 1);
            }
            if x + 1 < w {
                push(p + 1);
            }
            if y > 0 {
                push(p - w);
            }
            if y + 1 < h {
                push(p + w);
            }
        }
        out.push(c);
    }
    out
}

fn fill_gray(img: &mut Planar, b: [usize; 4]) {
    for c in 0..3 {
        for y in b[1]..b[3] {
            for x in b[0]..b[2] {
                img.set(c, x, y, 0.5);
            }
        }
    }
}

/// Gray: object pixels to 0.5.
pub fn gray(img: &Planar, mask: &Mask) -> Result<Planar> {
    img.check_mask(mask)?;
    let mut out = img.clone();
    let n = img.width * img.height;
    for (p, &m) in mask.bits.iter().enumerate() {
        if m {
            for c in 0..3 {
                out.data[c * n + p] = 0.5;
            }
        }
    }
    Ok(out)
}

/// Gray-BBox: the mask's bounding box to 0.5.
pub fn gray_bbox(img: &Planar, mask: &Mask) -> Result<Planar> {
    img.check_mask(mask)?;
    let mut out = img.clone();
    if let Some(b) = mask.bbox() {
        fill_gray(&mut out, b);
    }
    Ok(out)
}

/// The best background patch next to box `b` (see the module docs):
/// `[x0, y0, x1, y1)`, or `None` when all four candidates are empty.
pub fn tile_source(mask: &Mask, b: [usize; 4]) -> Option<[usize; 4]> {
    let (w, h) = (mask.width, mask.height);
    let [x0, y0, x1, y1] = b;
    let (bw, bh) = (x1 - x0, y1 - y0);
    let col_clear = |x: usize| (y0..y1).all(|y| !mask.get(x, y));
    let row_clear = |y: usize| (x0..x1).all(|x| !mask.get(x, y));
    // Right: columns x1, x1+1, ... while clear, at most bw.
    let right = (x1..(x1 + bw).min(w)).take_while(|&x| col_clear(x)).count();
    let left = (x0.saturating_sub(bw)..x0).rev().take_while(|&x| col_clear(x)).count();
    let below = (y1..(y1 + bh).min(h)).take_while(|&y| row_clear(y)).count();
    let above = (y0.saturating_sub(bh)..y0).rev().take_while(|&y| row_clear(y)).count();
    let candidates = [
        (right * bh, [x1, y0, x1 + right, y1]),
        (left * bh, [x0 - left, y0, x0, y1]),
        (below * bw, [x0, y1, x1, y1 + below]),
        (above * bw, [x0, y0 - above, x1, y0]),
    ];
    let mut best: Option<(usize, [usize; 4])> = None;
    for (area, r) in candidates {
        if area > 0 && best.is_none_or(|(a, _)| area > a) {
            best = Some((area, r));
        }
    }
    best.map(|(_, r)| r)
}

/// Tile: each component's box filled with adjacent background (module docs).
pub fn tile(img: &Planar, mask: &Mask) -> Result<(Planar, TileStats)> {
    img.check_mask(mask)?;
    let mut out = img.clone();
    let comps = components(mask);
    let mut stats = TileStats { components: comps.len(), fallbacks: 0 };
    for comp in &comps {
        let b = comp.bbox;
        match tile_source(mask, b) {
            None => {
                stats.fallbacks += 1;
                fill_gray(&mut out, b);
            }
            Some(s) => {
                let (pw, ph) = (s[2] - s[0], s[3] - s[1]);
                for c in 0..3 {
                    for y in b[1]..b[3] {
                        for x in b[0]..b[2] {
                            let v = img.at(c, s[0] + (x - b[0]) % pw, s[1] + (y - b[1]) % ph);
                            out.set(c, x, y, v);
                        }
                    }
                }
            }
        }
    }
    Ok((out, stats))
}

/// Applies `ablation`.
pub fn apply(ablation: Ablation, img: &Planar, mask: &Mask) -> Result<Planar> {
    match ablation {
        Ablation::None => {
            img.check_mask(mask)?;
            Ok(img.clone())
        }
        Ablation::Gray => gray(img, mask),
        Ablation::GrayBbox => gray_bbox(img, mask),
        Ablation::Tile => tile(img, mask).map(|(i, _)| i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image whose pixel (x, y) has red = x/100, green = y/100, blue = 0.25.
    fn ramp(w: usize, h: usize) -> Planar {
        let mut p = Planar::filled(w, h, [0.0, 0.0, 0.25]);
        for y in 0..h {
            for x in 0..w {
                p.set(0, x, y, x as f32 / 100.0);
                p.set(1, x, y, y as f32 / 100.0);
            }
        }
        p
    }

    fn mask_of(w: usize, h: usize, rects: &[[usize; 4]]) -> Mask {
        let mut bits = vec![false; w * h];
        for r in rects {
            for y in r[1]..r[3] {
                for x in r[0]..r[2] {
                    bits[y * w + x] = true;
                }
            }
        }
        Mask::new(w, h, bits).unwrap()
    }

    #[test]
    fn components_are_four_connected() {
        // Two squares touching only at a corner are two components; an L is one.
        let mut m = mask_of(8, 8, &[[0, 0, 2, 2], [2, 2, 4, 4]]);
        assert_eq!(components(&m).len(), 2);
        m = mask_of(8, 8, &[[5, 0, 6, 4], [5, 3, 8, 4]]);
        let c = components(&m);
        assert_eq!(c, vec![Component { pixels: 6, bbox: [5, 0, 8, 4] }]);
        assert!(components(&mask_of(8, 8, &[])).is_empty());
    }

    #[test]
    fn gray_and_gray_bbox() {
        let img = ramp(10, 6);
        // An L-shaped object: its pixels, then its whole box, go to 0.5.
        let m = mask_of(10, 6, &[[2, 1, 3, 4], [2, 3, 5, 4]]);
        let g = gray(&img, &m).unwrap();
        assert_eq!(g.at(0, 2, 1), 0.5);
        assert_eq!(g.at(2, 4, 3), 0.5);
        assert_eq!(g.at(0, 4, 1), img.at(0, 4, 1), "inside the box, off the object: unchanged");
        let b = gray_bbox(&img, &m).unwrap();
        assert_eq!((b.at(0, 4, 1), b.at(1, 3, 2)), (0.5, 0.5));
        assert_eq!(b.at(0, 5, 1), img.at(0, 5, 1));
        let changed = b.data.iter().zip(&img.data).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 3 * 3 * 3, "3x3 box, 3 channels");
        // Wrong size.
        assert!(gray(&img, &mask_of(9, 6, &[])).is_err());
    }

    #[test]
    fn tile_takes_the_largest_clear_neighbour() {
        let img = ramp(20, 10);
        // Object box [8, 3, 11, 6) (3x3). Right: columns 11..14 clear -> 3x3 = 9.
        // Left: columns 5..8 but column 6 has another object -> cut back to column 7 only: 1x3.
        let m = mask_of(20, 10, &[[8, 3, 11, 6], [6, 0, 7, 10]]);
        assert_eq!(tile_source(&m, [8, 3, 11, 6]), Some([11, 3, 14, 6]));
        let (t, s) = tile(&img, &m).unwrap();
        assert_eq!(s.components, 2);
        // Pixel (9, 4) takes the patch pixel (11 + 1, 3 + 1).
        assert_eq!(t.at(0, 9, 4), img.at(0, 12, 4));
        assert_eq!(t.at(1, 9, 4), img.at(1, 12, 4));
        // Near the right edge the right candidate is clipped; left wins.
        let m = mask_of(20, 10, &[[17, 2, 20, 4]]);
        assert_eq!(tile_source(&m, [17, 2, 20, 4]), Some([14, 2, 17, 4]));
        // Clipped right (1 column) vs full below (3x2): below wins; a tie keeps right's priority.
        let m = mask_of(20, 10, &[[16, 2, 19, 4]]);
        assert_eq!(
            tile_source(&m, [16, 2, 19, 4]),
            Some([13, 2, 16, 4]),
            "left 3x2 = 6 beats right 1x2 and ties below"
        );
        // The patch is smaller than the box: it repeats.
        let m = mask_of(20, 10, &[[0, 0, 4, 10], [5, 0, 20, 10]]);
        assert_eq!(tile_source(&m, [0, 0, 4, 10]), Some([4, 0, 5, 10]));
        let (t, _) = tile(&img, &m).unwrap();
        for x in 0..4 {
            assert_eq!(t.at(0, x, 7), img.at(0, 4, 7));
        }
    }

    #[test]
    fn tile_falls_back_to_gray_when_nothing_is_clear() {
        let img = ramp(6, 6);
        let m = mask_of(6, 6, &[[0, 0, 6, 6]]);
        let (t, s) = tile(&img, &m).unwrap();
        assert_eq!(s, TileStats { components: 1, fallbacks: 1 });
        assert!(t.data.iter().all(|&v| v == 0.5));
        // Empty mask: unchanged.
        let (t, s) = tile(&img, &mask_of(6, 6, &[])).unwrap();
        assert_eq!((t, s.components), (img, 0));
    }
}
