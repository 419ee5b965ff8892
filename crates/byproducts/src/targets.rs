//! LUAB point targets and the geometry training code needs.

use labelscope_core::rng::Xoshiro256;

use crate::imagenet::ImageRecord;
use crate::Point;

/// Which point of an ImageNet-AB record becomes the target Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointMode {
    /// The final click: the click of the last selected showing (the default).
    FinalClick,
    /// The mean of the clicks of all selected showings.
    MeanOfClicks,
    /// The mean of the last `n` trace points at or before the final click.
    LastTrace(usize),
}

/// The target point of `record` under `mode`; `None` when no showing was
/// selected with a recorded click (such images get no target).
pub fn imagenet_target(record: &ImageRecord, mode: PointMode) -> Option<Point> {
    let mut selected = record.showings.iter().filter(|s| s.selected && s.click.is_some());
    match mode {
        PointMode::FinalClick => selected.next_back().and_then(|s| s.click),
        PointMode::MeanOfClicks => {
            let (mut sx, mut sy, mut n) = (0.0, 0.0, 0usize);
            for c in selected.filter_map(|s| s.click) {
                sx += c.x;
                sy += c.y;
                n += 1;
            }
            (n > 0).then(|| Point { x: sx / n as f64, y: sy / n as f64 })
        }
        PointMode::LastTrace(n) => {
            let s = selected.next_back()?;
            let cut = s.estimate_time_ms.and_then(|t| s.trace.first().map(|f| f.time_ms + t));
            let upto: Vec<_> = s.trace.iter().filter(|p| cut.is_none_or(|c| p.time_ms <= c)).collect();
            if n == 0 || upto.is_empty() {
                return s.click;
            }
            let tail = &upto[upto.len().saturating_sub(n)..];
            let k = tail.len() as f64;
            Some(Point {
                x: tail.iter().map(|p| p.point.x).sum::<f64>() / k,
                y: tail.iter().map(|p| p.point.y).sum::<f64>() / k,
            })
        }
    }
}

/// The random-point baseline: for every `Some` target, a point uniform in the
/// unit square drawn from a generator seeded with `seed`; `None` stays
/// `None`, so coverage is the same.
pub fn random_baseline(targets: &[Option<Point>], seed: u64) -> Vec<Option<Point>> {
    let mut rng = Xoshiro256::from_seed(seed);
    targets.iter().map(|t| t.map(|_| Point { x: rng.unit(), y: rng.unit() })).collect()
}

/// A random-resized crop in pixels as torchvision's `get_params` returns it:
/// top row `i`, left column `j`, height `h`, width `w`; then an optional
/// horizontal flip of the crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    /// Top row of the crop.
    pub i: f64,
    /// Left column of the crop.
    pub j: f64,
    /// Crop height.
    pub h: f64,
    /// Crop width.
    pub w: f64,
    /// Whether the crop was flipped left-right after cropping.
    pub flip: bool,
}

/// Maps an image-normalised `point` of an image `width` × `height` pixels
/// through `crop`: `None` if the point falls outside the crop (edges count as
/// inside), else the point in crop-normalised coordinates, mirrored when the
/// crop is flipped.
pub fn map_through_crop(point: Point, width: f64, height: f64, crop: Crop) -> Option<Point> {
    if !(crop.w > 0.0 && crop.h > 0.0 && width > 0.0 && height > 0.0) {
        return None;
    }
    let px = point.x * width;
    let py = point.y * height;
    if px < crop.j || px > crop.j + crop.w || py < crop.i || py > crop.i + crop.h {
        return None;
    }
    let x = (px - crop.j) / crop.w;
    let y = (py - crop.i) / crop.h;
    Some(Point { x: if crop.flip { 1.0 - x } else { x }, y })
}
