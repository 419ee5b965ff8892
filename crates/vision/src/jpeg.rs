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

use std::os::raw::{c_int, c_ulong};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mozjpeg_sys::{
    jpeg_common_struct, jpeg_create_decompress, jpeg_crop_scanline, jpeg_decompress_struct, jpeg_destroy_decompress,
    jpeg_error_mgr, jpeg_finish_decompress, jpeg_mem_src, jpeg_read_header, jpeg_read_scanlines, jpeg_save_markers,
    jpeg_skip_scanlines, jpeg_start_decompress, jpeg_std_error, JDIMENSION, JSAMPROW_MUT, JWRN_JPEG_EOF, J_COLOR_SPACE,
};

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

/// Rows and columns decoded beyond a requested region on each side (so the
/// edge effects of a cropped or skipped decode — fancy upsampling treats the
/// crop edge as the image edge — fall outside the region; one iMCU is 16 px).
const REGION_MARGIN: usize = 16;

/// A half-open rectangle `(x0, y0, x1, y1)` of pixels.
pub type Rect = (usize, usize, usize, usize);

/// Owns a `jpeg_decompress_struct` and its error manager; destroys the
/// decompressor when dropped (also when an error unwinds out of libjpeg).
struct Decompressor {
    cinfo: Box<jpeg_decompress_struct>,
    _err: Box<jpeg_error_mgr>,
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: created by jpeg_create_decompress; destroying is valid in any state.
        unsafe { jpeg_destroy_decompress(&mut self.cinfo) }
    }
}

/// Decodes a JPEG; `check(width, height)` is called after the header is read
/// and before any pixel buffer is allocated (a size limit).
pub fn decode_jpeg_libjpeg(
    bytes: &[u8],
    check: impl FnOnce(usize, usize) -> Result<(), String>,
) -> Result<DecodedJpeg, String> {
    decode_jpeg_region(bytes, check, |_, _, _| None)
}

/// Decodes a JPEG, or only the part of it that a caller needs.
///
/// After the header, `check(width, height)` may refuse the image, then
/// `region(width, height, exif)` may return the rectangle of stored pixels
/// that will be used. Only that rectangle (plus `REGION_MARGIN` = 16 pixels on
/// each side, and the columns up to libjpeg's iMCU boundaries) goes through
/// the inverse DCT, upsampling and colour conversion (`jpeg_crop_scanline`,
/// `jpeg_skip_scanlines`); every row is still entropy-decoded, so truncated
/// or corrupt files are refused exactly as by a full decode. The returned
/// buffer has the full image size; samples outside the decoded part are 0.
/// Inside the rectangle the samples are identical to a full decode (tested).
pub fn decode_jpeg_region(
    bytes: &[u8],
    check: impl FnOnce(usize, usize) -> Result<(), String>,
    region: impl FnOnce(usize, usize, Option<&[u8]>) -> Option<Rect>,
) -> Result<DecodedJpeg, String> {
    run(|| {
        let mut err = Box::new(error_manager());
        // SAFETY: a zeroed struct is what jpeg_create_decompress expects; the
        // error manager outlives the decompressor (both owned by `d`).
        let mut cinfo: Box<jpeg_decompress_struct> = Box::new(unsafe { std::mem::zeroed() });
        cinfo.common.err = &mut *err;
        unsafe { jpeg_create_decompress(&mut *cinfo) };
        let mut d = Decompressor { cinfo, _err: err };
        let c = &mut *d.cinfo;
        // SAFETY: `bytes` outlives the decompressor (dropped at the end of this closure).
        unsafe {
            jpeg_mem_src(c, bytes.as_ptr(), bytes.len() as c_ulong);
            jpeg_save_markers(c, 0xE1, 0xFFFF);
            jpeg_read_header(c, 1);
        }
        let (width, height) = (c.image_width as usize, c.image_height as usize);
        check(width, height)?;
        let mut exif: Option<Vec<u8>> = None;
        let mut m = c.marker_list;
        while !m.is_null() {
            // SAFETY: libjpeg's saved-marker list, valid until the decompressor is destroyed.
            let mk = unsafe { &*m };
            let data = unsafe { std::slice::from_raw_parts(mk.data, mk.data_length as usize) };
            if mk.marker == 0xE1 && data.starts_with(b"Exif\0\0") {
                exif = Some(data.to_vec());
                break;
            }
            m = mk.next;
        }
        let (pixels, per) = match c.out_color_space {
            J_COLOR_SPACE::JCS_GRAYSCALE => (JpegPixels::Grey, 1),
            J_COLOR_SPACE::JCS_CMYK => (JpegPixels::Cmyk, 4),
            J_COLOR_SPACE::JCS_RGB => (JpegPixels::Rgb, 3),
            _ => {
                c.out_color_space = J_COLOR_SPACE::JCS_RGB;
                (JpegPixels::Rgb, 3)
            }
        };
        let want = region(width, height, exif.as_deref())
            .map(|(x0, y0, x1, y1)| (x0.min(width), y0.min(height), x1.min(width), y1.min(height)))
            .filter(|&(x0, y0, x1, y1)| x0 < x1 && y0 < y1);
        let mut data: Vec<u8> = Vec::new();
        data.try_reserve_exact(width * height * per)
            .map_err(|_| format!("cannot allocate {width}x{height}x{per} bytes for the decoded image"))?;
        data.resize(width * height * per, 0);
        // SAFETY: the header has been read.
        unsafe { jpeg_start_decompress(c) };
        if (c.output_width as usize, c.output_height as usize, c.output_components as usize) != (width, height, per) {
            return Err(format!(
                "the JPEG decoder reports {}x{}x{} output for a {width}x{height}x{per} image",
                c.output_width, c.output_height, c.output_components
            ));
        }
        let (mut y0, mut y1, mut xoff) = (0, height, 0usize);
        if let Some((rx0, ry0, rx1, ry1)) = want {
            let (x0, x1) = (rx0.saturating_sub(REGION_MARGIN), (rx1 + REGION_MARGIN).min(width));
            (y0, y1) = (ry0.saturating_sub(REGION_MARGIN), (ry1 + REGION_MARGIN).min(height));
            if x0 > 0 || x1 < width {
                let (mut off, mut w) = (x0 as JDIMENSION, (x1 - x0) as JDIMENSION);
                // SAFETY: after jpeg_start_decompress, before any scanline is read.
                unsafe { jpeg_crop_scanline(c, &mut off, &mut w) };
                xoff = off as usize;
                if xoff > x0 || xoff + w as usize > width || (w as usize) < x1 - xoff {
                    return Err(format!("the JPEG decoder cropped columns {off}..{} for {x0}..{x1}", off + w));
                }
            }
        }
        let row_len = c.output_width as usize * per;
        let stride = width * per;
        skip_rows(c, y0)?;
        for y in y0..y1 {
            let start = y * stride + xoff * per;
            let mut row: JSAMPROW_MUT = data[start..start + row_len].as_mut_ptr();
            // SAFETY: `row` points at `row_len` writable bytes, the width of one output scanline.
            let n = unsafe { jpeg_read_scanlines(c, &mut row, 1) };
            if n != 1 {
                return Err(format!("the JPEG decoder stopped at row {y} of {height}"));
            }
        }
        // The rows below are entropy-decoded (so a truncated file is still refused) but not reconstructed.
        skip_rows(c, height - y1)?;
        // SAFETY: every scanline has been read or skipped.
        unsafe { jpeg_finish_decompress(c) };
        Ok(DecodedJpeg { width, height, pixels, data, exif })
    })
}

fn skip_rows(c: &mut jpeg_decompress_struct, n: usize) -> Result<(), String> {
    if n == 0 {
        return Ok(());
    }
    // SAFETY: started decompressor with a memory (non-suspending) source.
    let skipped = unsafe { jpeg_skip_scanlines(c, n as JDIMENSION) } as usize;
    if skipped != n {
        return Err(format!("the JPEG decoder skipped {skipped} of {n} rows"));
    }
    Ok(())
}
