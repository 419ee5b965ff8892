//! Fast dense CRF (separable Gaussian + permutohedral lattice) against the
//! brute-force O(N²) evaluation of the same model.

use labelscope_vision::crf::{self, CrfParams, Kernel};
use labelscope_vision::RgbImage;

/// Small deterministic generator (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn clamp_u8(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Two coloured blobs on a background, with uniform noise of ±`noise`.
fn blobs(w: u32, h: u32, noise: f64, seed: u64) -> RgbImage {
    let mut r = Lcg(seed);
    let (cx, cy) = (w as f64 * 0.35, h as f64 * 0.45);
    let (dx, dy) = (w as f64 * 0.75, h as f64 * 0.7);
    RgbImage::from_fn(w, h, |x, y| {
        let (xf, yf) = (x as f64, y as f64);
        let base = if ((xf - cx) / (w as f64 * 0.22)).powi(2) + ((yf - cy) / (h as f64 * 0.3)).powi(2) < 1.0 {
            [200.0, 60.0, 50.0]
        } else if ((xf - dx) / (w as f64 * 0.12)).powi(2) + ((yf - dy) / (h as f64 * 0.15)).powi(2) < 1.0 {
            [40.0, 180.0, 70.0]
        } else {
            [90.0, 100.0, 160.0]
        };
        let mut n = || (r.next() * 2.0 - 1.0) * noise;
        image::Rgb([clamp_u8(base[0] + n()), clamp_u8(base[1] + n()), clamp_u8(base[2] + n())])
    })
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / (w - 1)) as u8, (y * 255 / (h - 1)) as u8, ((x + y) * 4 % 256) as u8])
    })
}

fn random_image(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut r = Lcg(seed);
    RgbImage::from_fn(w, h, |_, _| {
        image::Rgb([clamp_u8(r.next() * 255.0), clamp_u8(r.next() * 255.0), clamp_u8(r.next() * 255.0)])
    })
}

fn images() -> Vec<(&'static str, RgbImage)> {
    vec![
        ("blobs 32x24", blobs(32, 24, 15.0, 1)),
        ("blobs 40x40", blobs(40, 40, 25.0, 2)),
        ("gradient 32x24", gradient(32, 24)),
        ("random 40x40", random_image(40, 40, 3)),
    ]
}

/// Patch-grid masks (8-pixel patches).
fn grids(gh: usize, gw: usize, seed: u64) -> Vec<Vec<bool>> {
    let mut r = Lcg(seed);
    let rect: Vec<bool> =
        (0..gh * gw).map(|i| (1..gh - 1).contains(&(i / gw)) && (1..gw / 2 + 1).contains(&(i % gw))).collect();
    let random: Vec<bool> = (0..gh * gw).map(|_| r.next() < 0.4).collect();
    let left: Vec<bool> = (0..gh * gw).map(|i| i % gw < gw / 2).collect();
    vec![rect, random, left]
}

/// Relative L2 error of `fast` against `exact`.
fn rel_l2(fast: &[f32], exact: &[f64]) -> f64 {
    let num: f64 = fast.iter().zip(exact).map(|(a, b)| (*a as f64 - b).powi(2)).sum();
    let den: f64 = exact.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

/// (a) The fast kernel filters against exact dense Gaussian filtering, with
/// the symmetric normalisation of the CRF, on a random field and on a
/// mask-like field.
#[test]
fn fast_filters_match_exact_filtering() {
    let p = CrfParams::default();
    let mut worst = [0.0f64; 2];
    for (name, img) in images() {
        let (w, h) = img.dimensions();
        let n = (w * h) as usize;
        let mut r = Lcg(7);
        let random: Vec<f64> = (0..n).map(|_| r.next()).collect();
        let blob: Vec<f64> = (0..n)
            .map(|i| if (i % w as usize) < (w as usize) / 2 + (i / w as usize) / 4 { 0.9 } else { 0.1 })
            .collect();
        for q in [random, blob] {
            let qf: Vec<f32> = q.iter().map(|&v| v as f32).collect();
            for (k, kind) in [Kernel::Gaussian, Kernel::Bilateral].into_iter().enumerate() {
                let fast = crf::normalized_filter_fast(kind, &img, &p, &qf).unwrap();
                let exact = crf::normalized_filter_exact(kind, &img, &p, &q).unwrap();
                let e = rel_l2(&fast, &exact);
                println!("{name} {kind:?}: relative L2 error {e:.5}");
                worst[k] = worst[k].max(e);
            }
        }
    }
    println!("worst relative L2 error: Gaussian {:.2e}, bilateral {:.4}", worst[0], worst[1]);
    // Separable Gaussian truncated at 4 sigma: essentially exact.
    assert!(worst[0] < 1e-3, "Gaussian kernel error {}", worst[0]);
    // Permutohedral lattice: measured at most 0.15 (on the gradient image), asserted with margin.
    assert!(worst[1] < 0.25, "bilateral kernel error {}", worst[1]);
}

/// (b) Full CRF: fast vs brute force on several images and patch masks.
#[test]
fn fast_crf_agrees_with_brute_force() {
    let p = CrfParams::default();
    let (mut agree_total, mut n_total, mut dq_total) = (0usize, 0usize, 0.0f64);
    let mut worst_case = 1.0f64;
    for (name, img) in images() {
        let (w, h) = img.dimensions();
        let n = (w * h) as usize;
        let (gh, gw) = (h as usize / 8, w as usize / 8);
        for (k, g) in grids(gh, gw, 11).into_iter().enumerate() {
            let fast = crf::dense_crf(&g, gh, gw, &img, &p).unwrap();
            let bf = crf::brute_force(&g, gh, gw, &img, &p).unwrap();
            let agree = fast.labels.iter().zip(&bf.labels).filter(|(a, b)| a == b).count();
            let dq: f64 = fast.foreground.iter().zip(&bf.foreground).map(|(a, b)| (a - b).abs() as f64).sum();
            println!(
                "{name} mask {k}: labels agree on {:.2}% of pixels, mean |dQ| {:.4}",
                100.0 * agree as f64 / n as f64,
                dq / n as f64
            );
            worst_case = worst_case.min(agree as f64 / n as f64);
            agree_total += agree;
            n_total += n;
            dq_total += dq;
        }
    }
    let overall = agree_total as f64 / n_total as f64;
    let mean_dq = dq_total / n_total as f64;
    println!(
        "overall agreement {:.3}%, worst case {:.2}%, mean |dQ| {mean_dq:.4}",
        100.0 * overall,
        100.0 * worst_case
    );
    // Measured: overall 99.37%, worst case 97.06%, mean |dQ| 0.0063.
    assert!(overall >= 0.99, "overall agreement {overall}");
    assert!(worst_case >= 0.95, "worst-case agreement {worst_case}");
    assert!(mean_dq <= 0.03, "mean |dQ| {mean_dq}");
}

/// The CRF snaps a noisy patch mask to the object: a false-positive patch in
/// the background and a missing patch inside the object are corrected.
#[test]
fn crf_cleans_a_noisy_mask() {
    let (w, h) = (48u32, 48u32);
    // A square object (rows/columns 12..36) on a contrasting background, mild noise.
    let mut r = Lcg(9);
    let inside = |x: u32, y: u32| (12..36).contains(&x) && (12..36).contains(&y);
    let img = RgbImage::from_fn(w, h, |x, y| {
        let base = if inside(x, y) { [210.0, 70.0, 60.0] } else { [60.0, 90.0, 170.0] };
        let mut n = || (r.next() * 2.0 - 1.0) * 8.0;
        image::Rgb([clamp_u8(base[0] + n()), clamp_u8(base[1] + n()), clamp_u8(base[2] + n())])
    });
    let truth: Vec<bool> = (0..h).flat_map(|y| (0..w).map(move |x| inside(x, y))).collect();
    // 12x12 grid of 4-pixel patches: the object is cells 3..9; add noise.
    let (gh, gw) = (12usize, 12usize);
    let mut grid: Vec<bool> = (0..gh * gw).map(|i| (3..9).contains(&(i / gw)) && (3..9).contains(&(i % gw))).collect();
    grid[gw + 10] = true; // false positive in the background
    grid[5 * gw + 5] = false; // hole inside the object
    grid[4 * gw + 8] = false; // bite out of the edge
    grid[10 * gw + 1] = true; // another false positive
    grid[8 * gw + 3] = false; // missing corner
    let up = labelscope_vision::upsample_nearest(&grid, gh, gw, h as usize, w as usize).unwrap();
    let before = labelscope_vision::iou(&up, &truth).unwrap();
    let out = crf::dense_crf(&grid, gh, gw, &img, &CrfParams::default()).unwrap();
    let after = labelscope_vision::iou(&out.labels, &truth).unwrap();
    println!("IoU with the object: noisy mask {before:.3}, after CRF {after:.3}");
    assert!(before < 0.9, "the test mask is not noisy enough: IoU {before}");
    assert!(after > 0.97, "CRF did not clean the mask: IoU {after}");
    let bf = crf::brute_force(&grid, gh, gw, &img, &CrfParams::default()).unwrap();
    assert!(labelscope_vision::iou(&bf.labels, &truth).unwrap() > 0.97);
    // refine(): accepted, and equal to the CRF labels with holes filled.
    let refined = labelscope_vision::refine(&grid, gh, gw, &img, &CrfParams::default()).unwrap().expect("accepted");
    assert!(labelscope_vision::iou(&refined, &truth).unwrap() > 0.97);
}

/// refine() rejects a mask the CRF wipes out: a small patch on a uniform image.
#[test]
fn refine_rejects_vanishing_mask() {
    let img = RgbImage::from_pixel(32, 32, image::Rgb([120, 120, 120]));
    let mut grid = vec![false; 64];
    grid[2 * 8 + 3] = true;
    let out = crf::dense_crf(&grid, 8, 8, &img, &CrfParams::default()).unwrap();
    println!("foreground pixels after CRF: {}", out.labels.iter().filter(|&&v| v).count());
    assert_eq!(labelscope_vision::refine(&grid, 8, 8, &img, &CrfParams::default()).unwrap(), None);
    // Bad inputs are errors, not panics.
    assert!(labelscope_vision::refine(&grid, 8, 7, &img, &CrfParams::default()).is_err());
    let bad = CrfParams { bilateral_srgb: 0.0, ..CrfParams::default() };
    assert!(crf::dense_crf(&grid, 8, 8, &img, &bad).is_err());
}
