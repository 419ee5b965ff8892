//! The region model behind `labelscope serve --region-cache --region-head`:
//! the studio's Region suggestions from the relabel region query (cached
//! patch features of the project's images, RoIAlign of the drawn box, the
//! region labeler head).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use labelscope_core::classes::ClassTable;
use labelscope_nn::head::RegionHead;
use labelscope_relabel::cache::FeatureCache;
use labelscope_relabel::pool::GridGeometry;
use labelscope_relabel::query;
use labelscope_studio::server::RegionSuggester;

/// Region suggestions from a feature cache and a region head.
pub struct CacheSuggester {
    inner: Mutex<(FeatureCache, RegionHead)>,
    geometry: Option<BTreeMap<String, GridGeometry>>,
    classes: ClassTable,
}

impl CacheSuggester {
    /// Opens the cache and loads the head (on `device`); checks that they fit
    /// together and that `classes` names every class of the head.
    pub fn open(cache: &Path, head: &Path, device: &str, classes: ClassTable) -> Result<CacheSuggester> {
        let dev = crate::nnio::device(device)?;
        let c = FeatureCache::open(cache).with_context(|| format!("opening the feature cache {}", cache.display()))?;
        let h = RegionHead::load(head, &dev).with_context(|| format!("loading the region head {}", head.display()))?;
        query::check_head(&c, &h).with_context(|| format!("region head {}", head.display()))?;
        let n = h.config().classes;
        if n > classes.len() {
            anyhow::bail!(
                "region head {} predicts {n} classes but the class table has only {}; give the head's class list with \
                 --classes",
                head.display(),
                classes.len()
            );
        }
        let geometry = query::cached_geometry(&c)?;
        Ok(CacheSuggester { inner: Mutex::new((c, h)), geometry, classes })
    }
}

impl RegionSuggester for CacheSuggester {
    fn suggest(&self, name: &str, file: &Path, bbox: [f64; 4], k: usize) -> Result<Vec<(String, f64)>, String> {
        let guard = self.inner.lock().map_err(|_| "the region model failed earlier".to_string())?;
        let (cache, head) = &*guard;
        let f = cache.get(name).map_err(|e| e.to_string())?;
        let geom = match self.geometry.as_ref().and_then(|g| g.get(name)) {
            Some(g) => *g,
            None => {
                let (w, h) = image::image_dimensions(file)
                    .map_err(|e| format!("{}: cannot read the image size: {e}", file.display()))?;
                query::geometry_for(&cache.meta().recipe, Some((w as usize, h as usize)), (f.h, f.w))
                    .map_err(|e| e.to_string())?
            }
        };
        let (w, h) = (geom.image_w as f64, geom.image_h as f64);
        let px = [bbox[0] * w, bbox[1] * h, bbox[2] * w, bbox[3] * h];
        let top = query::region_classes(cache, name, &geom, px, head, k).map_err(|e| e.to_string())?;
        Ok(top
            .into_iter()
            .filter_map(|(c, p)| self.classes.get(c as usize).map(|x| (x.wnid.clone(), f64::from(p))))
            .collect())
    }

    fn knows(&self, key: &str) -> bool {
        self.classes.index_of_wnid(key).is_some()
    }

    fn class_name(&self, key: &str) -> Option<String> {
        self.classes.index_of_wnid(key).and_then(|k| self.classes.get(k)).map(|c| c.name().to_string())
    }
}
