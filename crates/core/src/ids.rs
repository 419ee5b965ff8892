//! Image identifiers.
//!
//! Every input is keyed by image id, the file name of the image. Label files
//! and image lists spell the same image differently
//! (`ILSVRC2012_val_00000001.JPEG`, `val/ILSVRC2012_val_00000001.JPEG`,
//! `<sha1>` and `<sha1>.jpeg`), so ids are compared through a *join key*: the
//! last path component with a known image extension removed. Nothing is ever
//! joined by position.

/// Image file extensions stripped when forming a join key (compared case-insensitively).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpeg", "jpg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm"];

/// The join key of an image name: the last `/` or `\` separated component,
/// without a known image extension.
///
/// ```
/// use labelscope_core::ids::join_key;
/// assert_eq!(join_key("val/ILSVRC2012_val_00000001.JPEG"), "ILSVRC2012_val_00000001");
/// assert_eq!(join_key("f4603db396353d99a52840da512a04c1f79b1fef.jpeg"), "f4603db396353d99a52840da512a04c1f79b1fef");
/// assert_eq!(join_key("plain"), "plain");
/// ```
pub fn join_key(name: &str) -> &str {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    if let Some((stem, ext)) = base.rsplit_once('.') {
        if !stem.is_empty() && IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)) {
            return stem;
        }
    }
    base
}

/// The file name of the `i`-th (0-based) ILSVRC2012 validation image,
/// `ILSVRC2012_val_{i+1:08}.JPEG`.
pub fn ilsvrc2012_val_name(i: usize) -> String {
    format!("ILSVRC2012_val_{:08}.JPEG", i + 1)
}

/// Number of images in the ILSVRC2012 validation set.
pub const ILSVRC2012_VAL_LEN: usize = 50_000;
