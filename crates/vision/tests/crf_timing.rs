//! Timing of the fast dense CRF at network input sizes. Ignored by default;
//! run with `cargo test -p labelscope-vision --release --test crf_timing -- --ignored --nocapture`.

use std::time::Instant;

use labelscope_vision::crf::{dense_crf, CrfParams};
use labelscope_vision::RgbImage;

fn natural_like(w: u32, h: u32) -> RgbImage {
    // Smooth shapes plus texture and a deterministic noise pattern.
    RgbImage::from_fn(w, h, |x, y| {
        let (xf, yf) = (x as f32 / w as f32, y as f32 / h as f32);
        let inside = (xf - 0.45).powi(2) / 0.06 + (yf - 0.5).powi(2) / 0.1 < 1.0;
        let noise = ((x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) >> 7) % 21;
        let t = ((xf * 40.0).sin() * 10.0) as i32;
        let base: [i32; 3] = if inside { [190, 80, 60] } else { [70 + (yf * 100.0) as i32, 110, 150] };
        image::Rgb(base.map(|c| (c + t + noise as i32 - 10).clamp(0, 255) as u8))
    })
}

#[test]
#[ignore]
fn crf_timing() {
    for (size, grid) in [(480u32, 60usize), (896, 56)] {
        let img = natural_like(size, size);
        let mask: Vec<bool> = (0..grid * grid)
            .map(|i| {
                let (y, x) = ((i / grid) as f32 / grid as f32, (i % grid) as f32 / grid as f32);
                (x - 0.45).powi(2) / 0.06 + (y - 0.5).powi(2) / 0.1 < 1.0
            })
            .collect();
        let params = CrfParams::default();
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            let out = dense_crf(&mask, grid, grid, &img, &params).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            assert_eq!(out.labels.len(), (size * size) as usize);
        }
        let setup = CrfParams { iterations: 0, ..CrfParams::default() };
        let t = Instant::now();
        dense_crf(&mask, grid, grid, &img, &setup).unwrap();
        let setup_s = t.elapsed().as_secs_f64();
        println!(
            "dense CRF {size}x{size}, {} iterations, single-threaded: best of 3 = {best:.3} s \
             (of which unary + kernel setup {setup_s:.3} s)",
            params.iterations
        );
    }
}
