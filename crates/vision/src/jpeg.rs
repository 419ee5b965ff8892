//! JPEG decoding with libjpeg-turbo's decoder (the `mozjpeg` build of it,
//! compiled from source by `mozjpeg-sys`): the library Pillow links, with its
//! default settings (accurate integer IDCT, fancy upsampling), so decoded
//! pixels are identical to `Image.open(f).convert("RGB")`.
//!
//! libjpeg reports fatal errors through `error_exit`, and a file that ends
//! before the image data does (`JWRN_JPEG_EOF`, "Premature end of JPEG file")
//! only as a warning, after which it fills the rest with grey. Pillow refuses
//! such files ("image file is truncated"), and so do we: both become an
//! unwinding panic inside the decoder, caught here and returned as an error
//! message. Other warnings (e.g. extraneous bytes before a marker) are
//! ignored, as Pillow ignores them.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mozjpeg::decompress::Format;
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, jpeg_std_error, JWRN_JPEG_EOF};

/// Colour model of decoded samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegPixels {
    /// One grey sample per pixel.
    Grey,
    /// R, G, B.
    Rgb,
    /// The stored C, M, Y, K samples (YCCK is converted to CMYK by libjpeg).
    Cmyk,
}

/// A decoded JPEG.
#[derive(Debug)]
pub struct DecodedJpeg {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// What the samples are.
    pub pixels: JpegPixels,
    /// Row-major interleaved samples.
    pub data: Vec<u8>,
    /// The raw content of the first APP1 `Exif` marker, if any.
    pub exif: Option<Vec<u8>>,
}

fn message(cinfo: &mut jpeg_common_struct) -> String {
    // SAFETY: libjpeg calls us with a valid cinfo whose `err` is the manager we installed.
    unsafe {
        let err = &*cinfo.err;
        match err.format_message {
            Some(fmt) => {
                let buffer = [0u8; 80];
                fmt(cinfo, &buffer);
                let end = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
                String::from_utf8_lossy(&buffer[..end]).into_owned()
            }
            None => format!("libjpeg error code {}", err.msg_code),
        }
    }
}

extern "C-unwind" fn error_exit(cinfo: &mut jpeg_common_struct) {
    let msg = format!("cannot decode JPEG: {}", message(cinfo));
    std::panic::resume_unwind(Box::new(msg));
}

extern "C-unwind" fn emit_message(cinfo: &mut jpeg_common_struct, level: c_int) {
    // SAFETY: as above.
    let code = unsafe { (*cinfo.err).msg_code };
    if level < 0 && code == JWRN_JPEG_EOF as c_int {
        std::panic::resume_unwind(Box::new(
            "cannot decode JPEG: the file is truncated (it ends before the image data does)".to_string(),
        ));
    }
}

fn error_manager() -> jpeg_error_mgr {
    // SAFETY: jpeg_std_error fills every field of a zeroed manager.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { jpeg_std_error(&mut err) };
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    err
}

fn run<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the JPEG decoder failed".into())),
    }
}

/// Decodes a JPEG; `check(width, height)` is called after the header is read
/// and before any pixel buffer is allocated (a size limit).
pub fn decode_jpeg_libjpeg(
    bytes: &[u8],
    check: impl FnOnce(usize, usize) -> Result<(), String>,
) -> Result<DecodedJpeg, String> {
    run(|| {
        let markers = [mozjpeg::Marker::APP(1)];
        let d = mozjpeg::Decompress::with_err(error_manager())
            .with_markers(&markers)
            .from_mem(bytes)
            .map_err(|e| format!("cannot decode JPEG header: {e} (a truncated or corrupt file?)"))?;
        let (width, height) = d.size();
        check(width, height)?;
        let exif = d
            .markers()
            .find(|m| m.marker == mozjpeg::Marker::APP(1) && m.data.starts_with(b"Exif\0\0"))
            .map(|m| m.data.to_vec());
        let read = |e: std::io::Error| format!("cannot decode JPEG: {e}");
        let (pixels, data) = match d.image().map_err(read)? {
            Format::RGB(mut i) => {
                let v = i.read_scanlines::<u8>().map_err(read)?;
                i.finish().map_err(read)?;
                (JpegPixels::Rgb, v)
            }
            Format::Gray(mut i) => {
                let v = i.read_scanlines::<u8>().map_err(read)?;
                i.finish().map_err(read)?;
                (JpegPixels::Grey, v)
            }
            Format::CMYK(mut i) => {
                let v = i.read_scanlines::<u8>().map_err(read)?;
                i.finish().map_err(read)?;
                (JpegPixels::Cmyk, v)
            }
        };
        let per = match pixels {
            JpegPixels::Grey => 1,
            JpegPixels::Rgb => 3,
            JpegPixels::Cmyk => 4,
        };
        if data.len() != width * height * per {
            return Err(format!("the JPEG decoder returned {} samples for {width}x{height}", data.len()));
        }
        Ok(DecodedJpeg { width, height, pixels, data, exif })
    })
}
