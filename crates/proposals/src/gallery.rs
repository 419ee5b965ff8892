//! Overlay PNGs and a self-contained HTML gallery of proposals.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use rayon::prelude::*;

use crate::coco::{decode_mask, CocoFile};
use crate::error::{Error, Result};

/// One rendered image of the gallery.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryItem {
    /// The image's file name in the COCO file.
    pub file_name: String,
    /// The overlay PNG, relative to the gallery folder.
    pub overlay: String,
    /// Number of proposals drawn.
    pub proposals: usize,
    /// Scores of the proposals, in order.
    pub scores: Vec<f64>,
    /// A small PNG (longest side `thumb` px) embedded in the HTML.
    pub thumbnail_png: Vec<u8>,
}

/// Renders the overlays of the first `limit` images of `coco` (in image order)
/// whose image is found in `images_dir` (by file name, or by id + any image
/// extension), writing `<out>/<stem>.png`; returns the items for the HTML.
pub fn render(
    coco_path: &Path,
    coco: &CocoFile,
    images_dir: &Path,
    out: &Path,
    limit: usize,
    thumb: u32,
) -> Result<Vec<GalleryItem>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut by_key: HashMap<String, PathBuf> = HashMap::new();
    let rd = std::fs::read_dir(images_dir).map_err(|e| Error::io(images_dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(images_dir, e))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        by_key.insert(labelscope_core::ids::join_key(&name).to_string(), ent.path());
    }
    let mut anns: HashMap<u64, Vec<usize>> = HashMap::new();
    for (k, a) in coco.annotations.iter().enumerate() {
        anns.entry(a.image_id).or_default().push(k);
    }
    let chosen: Vec<_> = coco.images.iter().take(limit).collect();
    // Every image is tried, then the first error in image order is reported
    // (rayon's collect into a Result would report whichever failed first in time).
    let results: Vec<Result<GalleryItem>> = chosen
        .par_iter()
        .map(|img| {
            let key = labelscope_core::ids::join_key(&img.file_name).to_string();
            let path = by_key.get(&key).ok_or_else(|| {
                Error::Mismatch(format!("no image for {:?} in {}", img.file_name, images_dir.display()))
            })?;
            let rgb = labelscope_vision::image::load_rgb(path)?;
            if (rgb.width() as usize, rgb.height() as usize) != (img.width, img.height) {
                return Err(Error::Mismatch(format!(
                    "{} is {}x{} but the proposals of {:?} are {}x{}",
                    path.display(),
                    rgb.width(),
                    rgb.height(),
                    img.file_name,
                    img.width,
                    img.height
                )));
            }
            let idx = anns.get(&img.id).cloned().unwrap_or_default();
            let mut masks = Vec::new();
            let mut boxes = Vec::new();
            let mut scores = Vec::new();
            for &k in &idx {
                let a = &coco.annotations[k];
                masks.push(decode_mask(coco_path, k, a)?);
                let [x, y, w, h] = a.bbox;
                boxes.push([x, y, x + w, y + h]);
                scores.push(a.score);
            }
            let over = labelscope_vision::overlay::draw_overlay(&rgb, &masks, &boxes)?;
            let name = format!("{key}.png");
            labelscope_vision::overlay::save_png_atomic(&over, out.join(&name))?;
            let thumbnail_png = thumbnail(&over, thumb)?;
            Ok(GalleryItem {
                file_name: img.file_name.clone(),
                overlay: name,
                proposals: idx.len(),
                scores,
                thumbnail_png,
            })
        })
        .collect();
    results.into_iter().collect()
}

fn thumbnail(img: &RgbImage, side: u32) -> Result<Vec<u8>> {
    let (w, h) = (img.width(), img.height());
    let s = side as f64 / w.max(h) as f64;
    let small = if s < 1.0 {
        labelscope_vision::image::resize_rgb(
            img,
            ((w as f64 * s).round() as u32).max(1),
            ((h as f64 * s).round() as u32).max(1),
        )?
    } else {
        img.clone()
    };
    let mut buf = std::io::Cursor::new(Vec::new());
    small
        .write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| Error::Invalid(format!("PNG encoding failed: {e}")))?;
    Ok(buf.into_inner())
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(T[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The gallery page: thumbnails embedded as data URIs (the page works on its
/// own), each linking to its full-size overlay PNG next to it.
pub fn html(title: &str, items: &[GalleryItem], params: &serde_json::Value) -> String {
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    s.push_str(&format!("<title>{}</title>", escape(title)));
    s.push_str(
        "<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
         .grid{display:flex;flex-wrap:wrap;gap:12px}\
         figure{margin:0;width:260px;border:1px solid #ddd;padding:6px;border-radius:4px}\
         figure img{max-width:100%;display:block;margin:auto}\
         figcaption{font-size:12px;word-break:break-all;margin-top:4px}\
         pre{background:#f6f6f6;padding:8px;font-size:12px}</style></head><body>",
    );
    s.push_str(&format!("<h1>{}</h1>", escape(title)));
    let total: usize = items.iter().map(|i| i.proposals).sum();
    s.push_str(&format!(
        "<p>{} images, {} proposals. Click an image for the full-size overlay.</p>",
        items.len(),
        total
    ));
    s.push_str(&format!("<pre>{}</pre>", escape(&serde_json::to_string_pretty(params).unwrap_or_default())));
    s.push_str("<div class=\"grid\">");
    for it in items {
        let scores: Vec<String> = it.scores.iter().map(|v| format!("{v:.3}")).collect();
        s.push_str(&format!(
            "<figure><a href=\"{}\"><img alt=\"{}\" src=\"data:image/png;base64,{}\"></a>\
             <figcaption>{} — {} proposal(s){}</figcaption></figure>",
            escape(&it.overlay),
            escape(&it.file_name),
            base64(&it.thumbnail_png),
            escape(&it.file_name),
            it.proposals,
            if scores.is_empty() { String::new() } else { format!(", scores {}", scores.join(", ")) }
        ));
    }
    s.push_str("</div></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_vectors() {
        // RFC 4648, section 10.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn html_escapes_names() {
        let it = GalleryItem {
            file_name: "<x>.jpg".into(),
            overlay: "x.png".into(),
            proposals: 1,
            scores: vec![0.5],
            thumbnail_png: vec![1, 2, 3],
        };
        let h = html("t", &[it], &serde_json::json!({}));
        assert!(h.contains("&lt;x&gt;.jpg") && !h.contains("<x>"));
        assert!(h.contains("data:image/png;base64,AQID"));
    }
}
