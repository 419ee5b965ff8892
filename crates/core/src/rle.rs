//! COCO run-length encoding of binary masks, byte-identical to pycocotools.
//!
//! A mask of `height × width` pixels is scanned in column-major order
//! (top to bottom, then left to right). `counts` alternates the lengths of
//! runs of 0s and 1s, starting with 0s (a mask whose first pixel is 1 starts
//! with a count of 0). The compressed string form writes each count, after
//! replacing count `i > 2` by its difference with count `i − 2`, as a
//! little-endian sequence of 5-bit groups in characters `'0' + group`, with
//! bit 6 (`0x20`) marking that more groups follow and the sign carried by bit
//! 5 (`0x10`) of the last group.
//!
//! Our masks are row-major `&[bool]` (`mask[y * width + x]`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A run-length encoded mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    /// Mask height in pixels.
    pub height: usize,
    /// Mask width in pixels.
    pub width: usize,
    /// Run lengths, alternating 0s and 1s, starting with 0s; they sum to `height * width`.
    pub counts: Vec<u32>,
}

/// The `segmentation` object of a COCO annotation: `{"size": [h, w], "counts": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CocoRle {
    /// `[height, width]`.
    pub size: [usize; 2],
    /// The compressed counts string.
    pub counts: String,
}

impl Rle {
    /// Encodes a row-major mask of `height * width` pixels.
    pub fn encode(mask: &[bool], height: usize, width: usize) -> Result<Rle> {
        let n = height.checked_mul(width).filter(|&n| n == mask.len()).ok_or_else(|| {
            Error::Invalid(format!("mask has {} pixels; expected height*width = {height}*{width}", mask.len()))
        })?;
        if n > u32::MAX as usize {
            return Err(Error::Invalid(format!("mask of {n} pixels is too large for RLE counts")));
        }
        let mut counts = Vec::new();
        let mut cur = false;
        let mut run = 0u32;
        for x in 0..width {
            let mut i = x;
            for _ in 0..height {
                let v = mask[i];
                if v != cur {
                    counts.push(run);
                    run = 0;
                    cur = v;
                }
                run += 1;
                i += width;
            }
        }
        counts.push(run);
        Ok(Rle { height, width, counts })
    }

    /// An RLE from uncompressed counts (COCO's `{"counts": [..]}` form); they must sum to `height * width`.
    pub fn from_uncompressed(counts: Vec<u32>, height: usize, width: usize) -> Result<Rle> {
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        if total != (height as u64) * (width as u64) {
            return Err(Error::Invalid(format!(
                "RLE counts sum to {total}; expected height*width = {height}*{width} = {}",
                height * width
            )));
        }
        Ok(Rle { height, width, counts })
    }

    /// Decodes to a row-major mask.
    pub fn decode(&self) -> Vec<bool> {
        let (h, w) = (self.height, self.width);
        let mut out = vec![false; h * w];
        let mut pos = 0usize;
        for (k, &c) in self.counts.iter().enumerate() {
            let c = c as usize;
            if k % 2 == 1 {
                for p in pos..(pos + c).min(h * w) {
                    out[(p % h) * w + p / h] = true;
                }
            }
            pos += c;
        }
        out
    }

    /// The compressed counts string (pycocotools `rleToString`).
    pub fn to_counts_string(&self) -> String {
        let mut s = String::with_capacity(self.counts.len() * 2);
        for i in 0..self.counts.len() {
            let mut x = i64::from(self.counts[i]);
            if i > 2 {
                x -= i64::from(self.counts[i - 2]);
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push((c + 48) as char);
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Parses a compressed counts string (pycocotools `rleFrString`), checking
    /// every character and that the runs are non-negative and sum to `height * width`.
    pub fn from_counts_string(s: &str, height: usize, width: usize) -> Result<Rle> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0;
        while p < bytes.len() {
            let start = p;
            let mut x: i64 = 0;
            let mut k = 0;
            loop {
                let Some(&b) = bytes.get(p) else {
                    return Err(Error::Invalid(format!(
                        "RLE string ends inside the count that starts at character {start}"
                    )));
                };
                if !(48..48 + 64).contains(&b) {
                    return Err(Error::Invalid(format!(
                        "RLE string: character {p} is {:?}; expected one of '0'..'o'",
                        b as char
                    )));
                }
                if k >= 12 {
                    return Err(Error::Invalid(format!("RLE string: the count at character {start} is too long")));
                }
                let c = i64::from(b - 48);
                x |= (c & 0x1f) << (5 * k);
                p += 1;
                k += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            let m = counts.len();
            if m > 2 {
                x += i64::from(counts[m - 2]);
            }
            if !(0..=i64::from(u32::MAX)).contains(&x) {
                return Err(Error::Invalid(format!("RLE string: run {m} (character {start}) has length {x}")));
            }
            counts.push(x as u32);
        }
        Rle::from_uncompressed(counts, height, width)
            .map_err(|e| Error::Invalid(format!("RLE string of {} characters: {e}", s.len())))
    }

    /// The COCO `segmentation` object.
    pub fn to_coco(&self) -> CocoRle {
        CocoRle { size: [self.height, self.width], counts: self.to_counts_string() }
    }

    /// Parses a COCO `segmentation` object.
    pub fn from_coco(c: &CocoRle) -> Result<Rle> {
        Rle::from_counts_string(&c.counts, c.size[0], c.size[1])
    }

    /// Number of 1 pixels.
    pub fn area(&self) -> u64 {
        self.counts.iter().skip(1).step_by(2).map(|&c| u64::from(c)).sum()
    }

    /// `[x, y, width, height]` of the 1 pixels, as pycocotools `toBbox`
    /// (all zeros for an empty mask).
    pub fn bbox(&self) -> [f64; 4] {
        let h = self.height as u64;
        let m = self.counts.len() / 2 * 2;
        if m == 0 || h == 0 {
            return [0.0; 4];
        }
        let (mut xs, mut ys, mut xe, mut ye) = (u64::MAX, u64::MAX, 0u64, 0u64);
        let mut cc = 0u64;
        let mut xp = 0u64;
        for j in 0..m {
            cc += u64::from(self.counts[j]);
            let t = cc - (j % 2) as u64;
            let y = t % h;
            let x = (t - y) / h;
            if j % 2 == 0 {
                xp = x;
            } else if xp < x {
                ys = 0;
                ye = h - 1;
            }
            xs = xs.min(x);
            xe = xe.max(x);
            ys = ys.min(y);
            ye = ye.max(y);
        }
        [xs as f64, ys as f64, (xe - xs + 1) as f64, (ye - ys + 1) as f64]
    }

    /// Pixels set in both masks (sizes must match).
    pub fn intersection_area(&self, other: &Rle) -> Result<u64> {
        self.check_same_size(other)?;
        let (mut a, mut b) = (self.runs(), other.runs());
        let (mut ra, mut rb) = (a.next(), b.next());
        let mut inter = 0u64;
        while let (Some((sa, ea)), Some((sb, eb))) = (ra, rb) {
            let lo = sa.max(sb);
            let hi = ea.min(eb);
            if hi > lo {
                inter += hi - lo;
            }
            if ea <= eb {
                ra = a.next();
            } else {
                rb = b.next();
            }
        }
        Ok(inter)
    }

    /// Intersection over union of two masks (0 when both are empty), as
    /// pycocotools `iou` with `iscrowd = 0`.
    pub fn iou(&self, other: &Rle) -> Result<f64> {
        let inter = self.intersection_area(other)?;
        let union = self.area() + other.area() - inter;
        Ok(if union == 0 { 0.0 } else { inter as f64 / union as f64 })
    }

    /// The union of several masks of the same size (pycocotools `merge`).
    pub fn union(masks: &[Rle]) -> Result<Rle> {
        let first = masks.first().ok_or_else(|| Error::Invalid("union of no masks".into()))?;
        let mut out = first.decode();
        for m in &masks[1..] {
            first.check_same_size(m)?;
            for (o, v) in out.iter_mut().zip(m.decode()) {
                *o |= v;
            }
        }
        Rle::encode(&out, first.height, first.width)
    }

    fn check_same_size(&self, other: &Rle) -> Result<()> {
        if (self.height, self.width) != (other.height, other.width) {
            return Err(Error::Mismatch(format!(
                "masks of different sizes: {}x{} and {}x{}",
                self.height, self.width, other.height, other.width
            )));
        }
        Ok(())
    }

    /// The runs of 1s as half-open column-major index ranges.
    fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut pos = 0u64;
        self.counts.iter().enumerate().filter_map(move |(k, &c)| {
            let start = pos;
            pos += u64::from(c);
            (k % 2 == 1 && c > 0).then_some((start, pos))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked() {
        // 3x2 mask, row-major [[0,1],[1,1],[0,0]]; column-major scan: 0,1,0 | 1,1,0.
        let m = [false, true, true, true, false, false];
        let r = Rle::encode(&m, 3, 2).unwrap();
        assert_eq!(r.counts, vec![1, 1, 1, 2, 1]);
        assert_eq!(r.decode(), m);
        assert_eq!(r.area(), 3);
        // Columns 0..=1, rows 0..=1 (column 0 has row 1, column 1 rows 0-1).
        assert_eq!(r.bbox(), [0.0, 0.0, 2.0, 2.0]);
        // Counts 1,1,1,2,1: deltas for i>2: 2-1=1, 1-1=0 → "1111" then "0" → chars '1','1','1','1','0'.
        assert_eq!(r.to_counts_string(), "11110");
        assert_eq!(Rle::from_counts_string("11110", 3, 2).unwrap(), r);
        // A leading 1 gives a first count of 0.
        let r = Rle::encode(&[true, false, false, false], 2, 2).unwrap();
        assert_eq!(r.counts, vec![0, 1, 3]);
        // Large and negative deltas use several groups: 100 = 0b11_00100 → groups 4|0x20, 3 → "T3".
        let r = Rle::from_uncompressed(vec![100, 5], 15, 7).unwrap();
        assert_eq!(r.to_counts_string(), "T35");
    }

    #[test]
    fn malformed_strings() {
        assert!(Rle::from_counts_string("1 1", 1, 2).unwrap_err().to_string().contains("character 1"));
        assert!(Rle::from_counts_string("11", 2, 2).unwrap_err().to_string().contains("sum to 2"));
        assert!(Rle::from_counts_string("T", 15, 7).unwrap_err().to_string().contains("ends inside"));
        assert!(Rle::encode(&[true; 5], 2, 2).is_err());
    }

    #[test]
    fn iou_and_union() {
        let a = Rle::encode(&[true, true, false, false], 2, 2).unwrap();
        let b = Rle::encode(&[true, false, true, false], 2, 2).unwrap();
        assert_eq!(a.intersection_area(&b).unwrap(), 1);
        assert!((a.iou(&b).unwrap() - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(Rle::union(&[a, b]).unwrap().decode(), vec![true, true, true, false]);
        let e = Rle::encode(&[false; 4], 2, 2).unwrap();
        assert_eq!(e.iou(&e).unwrap(), 0.0);
        assert_eq!(e.bbox(), [0.0; 4]);
    }
}
