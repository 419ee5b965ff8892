//! Patch feature maps read from `.npy`, `.npz` or `.safetensors` files.
//!
//! Accepted layouts (float arrays only: `f16`, `bf16`, `f32`, `f64`):
//! - `[h, w, d]`, the native layout;
//! - `[1, h, w, d]`, a batch of one;
//! - `[tokens, d]` or `[1, tokens, d]`, a ViT token sequence, with the grid
//!   given as [`FeatureLayout::grid`] and the leading non-patch tokens (CLS,
//!   registers) skipped with [`FeatureLayout::skip_tokens`]: `tokens` must be
//!   `skip_tokens + h * w`.

use std::path::Path;

use labelscope_core::npy::read_array;

use crate::error::{Error, Result};

/// Names tried, in order, when a multi-array file holds several arrays and no
/// `--array` is given.
pub const PREFERRED_ARRAYS: &[&str] = &["features", "keys", "k", "feats", "patch_tokens", "x"];

/// How to interpret the array of a feature file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureLayout {
    /// The array of a multi-array file (`.npz` member or safetensors tensor).
    pub array: Option<String>,
    /// The patch grid `(h, w)` of a token-sequence array.
    pub grid: Option<(usize, usize)>,
    /// Leading tokens to drop from a token sequence (1 for a CLS token, 1 + r with r registers).
    pub skip_tokens: usize,
}

/// A patch feature map `[h, w, d]`, row-major `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    /// Grid rows.
    pub h: usize,
    /// Grid columns.
    pub w: usize,
    /// Feature dimension.
    pub d: usize,
    /// `h * w * d` values; patch `(r, c)` at `[(r * w + c) * d..][..d]`.
    pub data: Vec<f32>,
}

/// Reads a feature map from `path` (see the module docs for the layouts).
/// Non-finite values are an error naming the patch.
pub fn load_features(path: &Path, layout: &FeatureLayout) -> Result<FeatureMap> {
    let (arr, what) = read_array(path, layout.array.as_deref(), PREFERRED_ARRAYS)?;
    if !arr.dtype.is_float() {
        return Err(Error::format(
            path,
            &what,
            format!("found {} values; expected a float array (f16, bf16, f32 or f64) of patch features", arr.dtype),
        ));
    }
    let shape = arr.shape.clone();
    let shape_s = format!("{shape:?}");
    let (h, w, d, skip) = match (shape.as_slice(), layout.grid) {
        ([h, w, d], None) => (*h, *w, *d, 0),
        ([1, h, w, d], None) => (*h, *w, *d, 0),
        ([t, d], Some((h, w))) | ([1, t, d], Some((h, w))) => {
            let need = layout.skip_tokens + h * w;
            if *t != need {
                return Err(Error::format(
                    path,
                    &what,
                    format!(
                        "shape {shape_s} has {t} tokens; expected {} skipped + {h}x{w} patches = {need}",
                        layout.skip_tokens
                    ),
                ));
            }
            (h, w, *d, layout.skip_tokens)
        }
        ([_, _], None) => {
            return Err(Error::format(
                path,
                &what,
                format!("shape {shape_s} is a token sequence; pass the patch grid (--grid HxW, and --skip-tokens for CLS/register tokens)"),
            ));
        }
        (_, Some(_)) => {
            return Err(Error::format(
                path,
                &what,
                format!("shape {shape_s}: with --grid the array must be [tokens, d] or [1, tokens, d]"),
            ));
        }
        _ => {
            return Err(Error::format(
                path,
                &what,
                format!("shape {shape_s}; expected a feature map [h, w, d] or [1, h, w, d]"),
            ));
        }
    };
    if h == 0 || w == 0 || d == 0 {
        return Err(Error::format(path, &what, format!("shape {shape_s} has an empty dimension")));
    }
    if h * w < 4 {
        return Err(Error::format(path, &what, format!("a {h}x{w} grid has fewer than 4 patches; nothing to cut")));
    }
    let all = arr.to_f32_vec(path, &what)?;
    let data = all[skip * d..].to_vec();
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        let p = i / d;
        return Err(Error::format(
            path,
            &what,
            format!("patch (row {}, col {}) feature {} is {}; features must be finite", p / w, p % w, i % d, data[i]),
        ));
    }
    Ok(FeatureMap { h, w, d, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use labelscope_core::npy::header_bytes;

    fn write_npy(dir: &Path, name: &str, descr: &str, shape: &[usize], bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        let mut b = header_bytes(descr, shape);
        b.extend_from_slice(bytes);
        std::fs::write(&p, b).unwrap();
        p
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn layouts() {
        let dir = tempfile::tempdir().unwrap();
        let vals: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32 + 1.0).collect();
        let p = write_npy(dir.path(), "a.npy", "<f4", &[2, 3, 4], &f32_bytes(&vals));
        let f = load_features(&p, &FeatureLayout::default()).unwrap();
        assert_eq!((f.h, f.w, f.d), (2, 3, 4));
        assert_eq!(f.data, vals);
        let p = write_npy(dir.path(), "b.npy", "<f4", &[1, 2, 3, 4], &f32_bytes(&vals));
        assert_eq!(load_features(&p, &FeatureLayout::default()).unwrap().data, vals);
        // Token sequence with a CLS token in front.
        let mut tok = vec![-7.0f32; 4];
        tok.extend_from_slice(&vals);
        let p = write_npy(dir.path(), "c.npy", "<f4", &[7, 4], &f32_bytes(&tok));
        let lay = FeatureLayout { grid: Some((2, 3)), skip_tokens: 1, ..Default::default() };
        let f = load_features(&p, &lay).unwrap();
        assert_eq!((f.h, f.w, f.d), (2, 3, 4));
        assert_eq!(f.data, vals);
        let err = load_features(&p, &FeatureLayout::default()).unwrap_err().to_string();
        assert!(err.contains("--grid"), "{err}");
        let lay = FeatureLayout { grid: Some((2, 3)), skip_tokens: 0, ..Default::default() };
        let err = load_features(&p, &lay).unwrap_err().to_string();
        assert!(err.contains("7 tokens") && err.contains("= 6"), "{err}");
    }

    #[test]
    fn bad_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_npy(dir.path(), "i.npy", "<i4", &[2, 2, 1], &[0u8; 16]);
        let err = load_features(&p, &FeatureLayout::default()).unwrap_err().to_string();
        assert!(err.contains("i.npy") && err.contains("float array"), "{err}");
        let p = write_npy(dir.path(), "s.npy", "<f4", &[5, 4], &[0u8; 80]);
        let err = load_features(&p, &FeatureLayout::default()).unwrap_err().to_string();
        assert!(err.contains("token sequence"), "{err}");
        let p = write_npy(dir.path(), "t.npy", "<f4", &[1, 3, 3], &[0u8; 36]);
        let err = load_features(&p, &FeatureLayout::default()).unwrap_err().to_string();
        assert!(err.contains("fewer than 4"), "{err}");
        let mut v = vec![1.0f32; 2 * 2 * 3];
        v[7] = f32::NAN;
        let p = write_npy(dir.path(), "n.npy", "<f4", &[2, 2, 3], &f32_bytes(&v));
        let err = load_features(&p, &FeatureLayout::default()).unwrap_err().to_string();
        assert!(err.contains("n.npy") && err.contains("row 1, col 0") && err.contains("NaN"), "{err}");
    }
}
