//! Bad inputs of the decoder and the loader: every error names the file;
//! huge dimensions are refused from the header, before decoding.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use labelscope_vision::decode::{decode_file, DecodeOptions};
use labelscope_vision::loader::{Batch, Loader, LoaderConfig};
use labelscope_vision::preprocess::{Preprocess, Recipe};

fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 3) as u8, 90]));
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Jpeg).unwrap();
    buf.into_inner()
}

fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
    buf.into_inner()
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// A PNG whose IHDR claims `w × h` (valid CRC) followed by a tiny IDAT.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&ihdr);
    v.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    v
}

/// Patches the SOF0 frame size of a baseline JPEG.
fn jpeg_with_size(mut bytes: Vec<u8>, w: u16, h: u16) -> Vec<u8> {
    let i = bytes.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    bytes[i + 5..i + 7].copy_from_slice(&h.to_be_bytes());
    bytes[i + 7..i + 9].copy_from_slice(&w.to_be_bytes());
    bytes
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err_of(path: &Path) -> String {
    decode_file(path, &DecodeOptions::default()).unwrap_err().to_string()
}

#[test]
fn bad_files_are_reported_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = jpeg_bytes(64, 48);
    let cases = [
        ("zero_bytes.jpg", Vec::new(), "empty file"),
        ("garbage.jpg", b"this is not an image at all, just text".to_vec(), "unrecognised image format"),
        ("truncated.jpg", good[..good.len() / 2].to_vec(), "JPEG"),
        ("header_only.jpg", good[..200.min(good.len())].to_vec(), "JPEG"),
        ("huge.png", png_header_only(30_000, 30_000), "exceeds the limit"),
        ("huge.jpg", jpeg_with_size(good.clone(), 30_000, 30_000), "exceeds the limit"),
        ("zero_width.png", png_header_only(0, 10), "empty image"),
        ("truncated.png", png_bytes(40, 30)[..60].to_vec(), "cannot decode Png"),
    ];
    for (name, bytes, what) in cases {
        let p = write(d, name, &bytes);
        let e = err_of(&p);
        assert!(e.contains(name), "{name}: error does not name the file: {e}");
        assert!(e.contains(what), "{name}: expected {what:?} in: {e}");
    }
    let e = err_of(&d.join("missing.png"));
    assert!(e.contains("missing.png") && e.contains("cannot read"), "{e}");
}

#[test]
fn wide_and_tiny_images_decode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 30,000 pixels wide but only 2 high: 60,000 pixels, well under the limit.
    let p = write(d, "wide.png", &png_bytes(30_000, 2));
    let img = decode_file(&p, &DecodeOptions::default()).unwrap();
    assert_eq!(img.dimensions(), (30_000, 2));
    assert_eq!(img.get_pixel(29_999, 1).0, [(29_999u32 % 256) as u8, 1, 7]);
    // A configurable limit refuses it.
    let small = DecodeOptions { max_pixels: 1000, ..DecodeOptions::default() };
    let e = decode_file(&p, &small).unwrap_err().to_string();
    assert!(e.contains("wide.png") && e.contains("exceeds the limit of 1000 pixels"), "{e}");
    let p = write(d, "one.png", &png_bytes(1, 1));
    assert_eq!(decode_file(&p, &DecodeOptions::default()).unwrap().dimensions(), (1, 1));
    let p = write(d, "one.jpg", &jpeg_bytes(1, 1));
    assert_eq!(decode_file(&p, &DecodeOptions::default()).unwrap().dimensions(), (1, 1));
}

/// `n` files in `d`: `bad_{i}.jpg` (not an image) at the positions in `bad`, else
/// `img_{i}.png` of `size(i)`.
fn image_files(d: &Path, n: u32, bad: &[u32], size: impl Fn(u32) -> (u32, u32)) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            if bad.contains(&i) {
                write(d, &format!("bad_{i}.jpg"), b"garbage")
            } else {
                let (w, h) = size(i);
                write(d, &format!("img_{i}.png"), &png_bytes(w, h))
            }
        })
        .collect()
}

#[test]
fn loader_keeps_order_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let paths = image_files(dir.path(), 7, &[3], |i| (40 + i * 13, 30 + i * 7));
    let pre = Preprocess::new(Recipe::Fixed { size: 16 });
    let config =
        LoaderConfig { preprocess: pre, decode: DecodeOptions::default(), batch_size: 3, prefetch: 1, threads: 2 };
    let batches: Vec<_> = Loader::new(paths.clone(), config).unwrap().collect();
    assert_eq!(batches.iter().map(|b| b.start).collect::<Vec<_>>(), vec![0, 3, 6]);
    assert_eq!(batches.iter().map(|b| b.ok_count()).collect::<Vec<_>>(), vec![3, 2, 1]);
    let e = batches[1].first_error().unwrap().to_string();
    assert!(e.contains("bad_3.jpg"), "{e}");
    // Every loaded image equals preprocessing it alone, in order.
    let mut k = 0;
    for b in &batches {
        assert_eq!(b.data.len(), b.ok_count() * pre.image_len());
        check_batch(b, &paths, &mut k, &pre);
    }
    assert_eq!(k, 7);
}

/// Checks that batch `b` holds the next files of `paths` from position `*k` on (advanced past
/// them): a bad file by its `bad_` name, every other one equal to preprocessing it alone, in
/// order and nothing more.
fn check_batch(b: &Batch, paths: &[PathBuf], k: &mut usize, pre: &Preprocess) {
    let len = pre.image_len();
    let mut j = 0;
    for (p, o) in b.paths.iter().zip(&b.outcomes) {
        assert_eq!(p, &paths[*k]);
        *k += 1;
        if o.is_err() {
            assert!(p.to_string_lossy().contains("bad_"));
            continue;
        }
        let img = decode_file(p, &DecodeOptions::default()).unwrap();
        let mut want = vec![0f32; len];
        pre.run_into(&img, &mut want).unwrap();
        assert_eq!(&b.data[j * len..(j + 1) * len], &want[..], "{}", p.display());
        j += 1;
    }
    assert_eq!(b.data.len(), j * len);
}

#[test]
fn dropped_batches_are_refilled_with_the_right_values() {
    // Batches dropped one by one hand their tensors back: later batches are filled into memory
    // that holds earlier images (bad files and a short last batch included), and must still
    // equal each image preprocessed alone.
    let dir = tempfile::tempdir().unwrap();
    let paths = image_files(dir.path(), 14, &[4, 11], |i| (20 + i * 11, 60 - i * 3));
    let pre = Preprocess::new(Recipe::Fixed { size: 12 });
    let config =
        LoaderConfig { preprocess: pre, decode: DecodeOptions::default(), batch_size: 3, prefetch: 1, threads: 2 };
    let (mut k, mut pointers, mut reused) = (0, Vec::new(), 0);
    for b in Loader::new(paths.clone(), config).unwrap() {
        reused += usize::from(pointers.contains(&b.data.as_ptr()));
        pointers.push(b.data.as_ptr());
        check_batch(&b, &paths, &mut k, &pre);
    } // each batch is dropped here, before the next is received
    assert_eq!(k, 14);
    // With one batch of prefetch, batch i + 3 is filled into batch i's memory.
    assert!(reused >= 2, "{reused} batches reused a tensor");
}
