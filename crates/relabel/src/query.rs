//! Region query: the ranked classes of a box of one image, from the cached
//! patch features and the region labeler (what the annotation studio calls
//! when a person draws a box).
//!
//! # What a query computes
//! 1. The image's patch grid is read from the open [`FeatureCache`] (a view
//!    into its memory map; the `h × w × dim` f16 values are converted to f32).
//! 2. The box `[x0, y0, x1, y1]` is pooled to one `dim`-vector by
//!    [`roi_align`] (torchvision's `roi_align(output_size=1, aligned=True)`,
//!    adaptive sampling) on that grid, placed on the image by a
//!    [`GridGeometry`].
//! 3. The [`RegionHead`] turns the vector into logits, softmax, and the `k`
//!    most probable `(class, probability)` pairs, most probable first, ties
//!    by lower class index ([`RegionHead::predict_topk`]).
//!
//! [`region_classes`] does this for one box; [`region_classes_many`] for
//! several boxes of one image (one conversion of the grid, one head call).
//! Neither reads any file: the cache stays open and the head loaded between
//! calls, so a query costs one f16 → f32 conversion of one image's grid, the
//! bilinear samples of the box and one small matrix product.
//!
//! # Geometry
//! The feature cache itself stores the patch grid but not the size of the
//! original image, so the caller says where the grid lies ([`GridGeometry`],
//! box coordinates in the same pixels). A cache built by the relabel
//! pipeline has the per-image geometry next to it (`images.jsonl`,
//! [`crate::pipeline`]); [`cached_geometry`] reads it once (to keep with the
//! open cache). Otherwise [`geometry_for`] builds it from the cache's recipe
//! name (the rectangle rule of [`crate::pipeline::recipe_rect`]):
//! - with the original image size `W × H` and a recipe that parses
//!   (`resize{S}-crop{C}`, `square{S}-crop{C}`, `fixed{N}`): the rectangle of
//!   the original image that the recipe's output covers. For
//!   `resize{S}-crop{C}` the image is resized to `(w', h')` =
//!   torchvision's `Resize(S)` size, the centre crop starts at torchvision's
//!   offsets `(left, top)` in resized pixels, and the grid covers
//!   `[left·W/w', (left+C)·W/w') × [top·H/h', (top+C)·H/h')` of the original;
//!   `square{S}-crop{C}` likewise with `w' = h' = S`; `fixed{N}` covers the
//!   whole image. Boxes are in original-image pixels.
//! - with the original image size and a recipe that does not parse: the grid
//!   is taken to cover the whole `W × H` image.
//! - without the image size: boxes are in the pixels of the network input,
//!   the recipe's output image (`C × C`, or `N × N`), and the grid covers all
//!   of it; when the recipe does not parse either, boxes are in grid cells
//!   (an image of `w × h` "pixels", one per cell).
//!
//! # Errors
//! An id not in the cache ([`Error::Mismatch`] naming the id and the cache),
//! a box that is empty, not finite or not inside the `image_w × image_h`
//! image (`0 ≤ x0 < x1 ≤ W`, `0 ≤ y0 < y1 ≤ H`; [`Error::Invalid`] naming the
//! box and the image size), a head whose input dimension differs from the
//! cache's feature dimension ([`Error::Mismatch`] naming both), and `k = 0`.

use std::collections::BTreeMap;

use candle_core::Tensor;
use labelscope_nn::head::RegionHead;
use labelscope_vision::preprocess::Recipe;

use crate::cache::FeatureCache;
use crate::error::{Error, Result};
use crate::pipeline::{read_geometry_log, recipe_rect, IMAGES_JSONL};
use crate::pool::{roi_align, Grid, GridGeometry};

/// The per-image geometry written next to the cache by the pipeline
/// (`images.jsonl`; complete lines only), by image id; `None` when the
/// cache folder has no such file.
pub fn cached_geometry(cache: &FeatureCache) -> Result<Option<BTreeMap<String, GridGeometry>>> {
    let path = cache.dir().join(IMAGES_JSONL);
    if !path.exists() {
        return Ok(None);
    }
    let logs = read_geometry_log(&path)?;
    Ok(Some(logs.into_iter().map(|(id, g)| (id, g.grid_geometry())).collect()))
}

/// The grid geometry of an image of the cache (see the module docs):
/// `recipe` is the cache's recipe name, `image_size` the original `(W, H)`
/// when known, `grid` the image's `(h, w)` patch grid.
pub fn geometry_for(recipe: &str, image_size: Option<(usize, usize)>, grid: (usize, usize)) -> Result<GridGeometry> {
    let parsed: Option<Recipe> = recipe.parse().ok();
    let geom = match (image_size, parsed) {
        (Some((iw, ih)), Some(r)) => {
            if iw == 0 || ih == 0 || iw > u32::MAX as usize || ih > u32::MAX as usize {
                return Err(Error::Invalid(format!("image size {iw}x{ih}: must be non-empty")));
            }
            let (x0, y0, x1, y1) = recipe_rect(r, iw as u32, ih as u32);
            GridGeometry { image_w: iw, image_h: ih, x0, y0, x1, y1 }
        }
        (Some((iw, ih)), None) => GridGeometry::whole(iw, ih),
        (None, Some(r)) => {
            let (w, h) = r.output_size();
            GridGeometry::whole(w as usize, h as usize)
        }
        (None, None) => GridGeometry::whole(grid.1, grid.0),
    };
    geom.validate()?;
    Ok(geom)
}

/// Checks that `bbox` is finite, non-empty and inside the image of `geom`.
pub fn check_box(bbox: [f64; 4], geom: &GridGeometry) -> Result<()> {
    let [x0, y0, x1, y1] = bbox;
    let (w, h) = (geom.image_w as f64, geom.image_h as f64);
    if bbox.iter().any(|v| !v.is_finite()) || x1 <= x0 || y1 <= y0 {
        return Err(Error::Invalid(format!(
            "box {x0},{y0},{x1},{y1}: empty or not finite; expected x0 < x1 and y0 < y1"
        )));
    }
    if x0 < 0.0 || y0 < 0.0 || x1 > w || y1 > h {
        return Err(Error::Invalid(format!(
            "box {x0},{y0},{x1},{y1} is not inside the {}x{} image (expected 0 <= x0 < x1 <= {} and 0 <= y0 < y1 <= {})",
            geom.image_w, geom.image_h, geom.image_w, geom.image_h
        )));
    }
    Ok(())
}

/// Checks that `head` takes the features of `cache` (same dimension).
pub fn check_head(cache: &FeatureCache, head: &RegionHead) -> Result<()> {
    let (hd, cd) = (head.config().in_dim, cache.meta().dim);
    if hd != cd {
        return Err(Error::Mismatch(format!(
            "the region head takes {hd}-dimensional features (in_dim {hd}), but the feature cache {} holds \
             {cd}-dimensional features (dim {cd}, backbone {})",
            cache.dir().display(),
            cache.meta().backbone
        )));
    }
    Ok(())
}

/// The `k` most probable classes of box `bbox` (`[x0, y0, x1, y1]`, pixels
/// of `geom`) of image `id`: `(class, probability)`, most probable first
/// (see the module docs).
pub fn region_classes(
    cache: &FeatureCache,
    id: &str,
    geom: &GridGeometry,
    bbox: [f64; 4],
    head: &RegionHead,
    k: usize,
) -> Result<Vec<(u32, f32)>> {
    let mut v = region_classes_many(cache, id, geom, &[bbox], head, k)?;
    Ok(v.pop().unwrap_or_default())
}

/// [`region_classes`] for several boxes of one image; one result per box, in order.
pub fn region_classes_many(
    cache: &FeatureCache,
    id: &str,
    geom: &GridGeometry,
    boxes: &[[f64; 4]],
    head: &RegionHead,
    k: usize,
) -> Result<Vec<Vec<(u32, f32)>>> {
    if k == 0 {
        return Err(Error::Invalid("k = 0: ask for at least one class".into()));
    }
    check_head(cache, head)?;
    geom.validate()?;
    for b in boxes {
        check_box(*b, geom)?;
    }
    let f = cache.get(id)?;
    if boxes.is_empty() {
        return Ok(Vec::new());
    }
    let values = f.patches_f32();
    let grid = Grid::new(f.h, f.w, f.dim, &values)?;
    let mut pooled = Vec::with_capacity(boxes.len() * f.dim);
    for b in boxes {
        pooled.extend(roi_align(&grid, geom, *b, None)?);
    }
    let x = Tensor::from_vec(pooled, (boxes.len(), f.dim), head.device())?;
    let top = head.predict_topk(&x, k)?;
    Ok(top.into_iter().map(|row| row.into_iter().map(|(p, c)| (c, p)).collect()).collect())
}
