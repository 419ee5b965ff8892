//! Ground truth for the analyses: ImageNet boxes (the `val_boxes.tsv`
//! layout or ILSVRC XML files) and COCO instance annotations (boxes and
//! polygon / RLE masks).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use labelscope_core::rle::{CocoRle, Rle};
use labelscope_core::ClassTable;
use serde::Deserialize;

use crate::analytics::NormBox;
use crate::{Error, Point, Result};

/// One ground-truth box of an ImageNet image.
#[derive(Debug, Clone, PartialEq)]
pub struct TruthBox {
    /// WordNet id of the boxed object (shared between the boxes of a class).
    pub wnid: Arc<str>,
    /// `[x0, y0, x1, y1]` in pixels.
    pub rect: [f64; 4],
    /// Image size in pixels when the source gives it (ILSVRC XML); boxes of
    /// a TSV are normalised with the size in the byproduct record.
    pub size: Option<(u32, u32)>,
}

/// Boxes per image key (file name without extension), stored flat: one
/// vector of boxes and, per key, its range in it (a few tens of bytes per
/// image instead of a vector each, for the 1.3 M images of ImageNet).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoxTruth {
    index: crate::hash::FastMap<Box<str>, (u32, u32)>,
    boxes: Vec<TruthBox>,
}

impl BoxTruth {
    /// No boxes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a box of image `key`.
    pub fn push(&mut self, key: &str, b: TruthBox) {
        let end = self.boxes.len() as u32;
        match self.index.get_mut(key) {
            Some((start, count)) if *start + *count == end => *count += 1,
            Some((start, count)) => {
                // Not contiguous (the key came back later): move its boxes to the end.
                let (s, c) = (*start as usize, *count as usize);
                let moved: Vec<TruthBox> = self.boxes[s..s + c].to_vec();
                *start = end;
                *count = c as u32 + 1;
                self.boxes.extend(moved);
            }
            None => {
                self.index.insert(key.into(), (end, 1));
            }
        }
        self.boxes.push(b);
    }

    /// Adds the boxes of image `key` (after any it already has).
    pub fn insert(&mut self, key: &str, boxes: Vec<TruthBox>) {
        for b in boxes {
            self.push(key, b);
        }
    }

    /// The boxes of image `key`.
    pub fn get(&self, key: &str) -> Option<&[TruthBox]> {
        self.index.get(key).map(|&(s, c)| &self.boxes[s as usize..(s + c) as usize])
    }

    /// Number of images with boxes.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are no boxes at all.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

impl std::ops::Index<&str> for BoxTruth {
    type Output = [TruthBox];
    fn index(&self, key: &str) -> &[TruthBox] {
        self.get(key).unwrap_or_else(|| panic!("no boxes for {key:?}"))
    }
}

fn stem(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    match base.rsplit_once('.') {
        Some((a, ext)) if !ext.is_empty() && ext.len() <= 5 => a,
        _ => base,
    }
}

/// The boxes of `truth` for `image` whose class is `wnid` (all boxes when
/// `wnid` is `None`), normalised by the image size (`record_size` when the
/// truth has none). Empty when unknown or without a size.
pub fn class_boxes(truth: &BoxTruth, image: &str, wnid: Option<&str>, record_size: Option<(u32, u32)>) -> Vec<NormBox> {
    let Some(bs) = truth.get(image) else { return Vec::new() };
    bs.iter()
        .filter(|b| wnid.is_none_or(|w| &*b.wnid == w))
        .filter_map(|b| {
            let (w, h) = b.size.or(record_size)?;
            let (w, h) = (w as f64, h as f64);
            Some([b.rect[0] / w, b.rect[1] / h, b.rect[2] / w, b.rect[3] / h])
        })
        .collect()
}

/// Reads boxes in the `val_boxes.tsv` layout: tab-separated image file name,
/// class index (0…999 of the ImageNet class table), x0, y0, x1, y1 in pixels;
/// one line per box, no header; blank lines ignored.
pub fn read_boxes_tsv(path: &Path) -> Result<BoxTruth> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let table = ClassTable::imagenet();
    let wnids: Vec<Arc<str>> = table.classes().iter().map(|c| Arc::from(c.wnid.as_str())).collect();
    let mut out = BoxTruth::new();
    let mut line = String::new();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    for i in 0.. {
        line.clear();
        let at = || format!("line {}", i + 1);
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(Error::format(path, at(), format!("cannot read: {e}"))),
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            return Err(Error::format(
                path,
                at(),
                format!("{} fields; expected 6 (image, class index, x0, y0, x1, y1)", f.len()),
            ));
        }
        let class: usize = f[1]
            .trim()
            .parse()
            .map_err(|_| Error::format(path, at(), format!("class index {:?} is not an integer", f[1])))?;
        let wnid = wnids
            .get(class)
            .cloned()
            .ok_or_else(|| Error::format(path, at(), format!("class index {class} is not in 0..{}", table.len())))?;
        let mut rect = [0f64; 4];
        for k in 0..4 {
            rect[k] = f[2 + k].trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                Error::format(path, at(), format!("field {} is {:?}; expected a number of pixels", 3 + k, f[2 + k]))
            })?;
        }
        if rect[2] < rect[0] || rect[3] < rect[1] {
            return Err(Error::format(path, at(), format!("box {rect:?} has x1 < x0 or y1 < y0")));
        }
        out.push(stem(f[0].trim()), TruthBox { wnid, rect, size: None });
    }
    Ok(out)
}

/// Parses the boxes of one ILSVRC XML annotation (`<size>` and
/// `<object><name>…</name><bndbox><xmin>…`). Returns the image key too.
pub fn parse_ilsvrc_xml(xml: &str, origin: &str) -> std::result::Result<(String, Vec<TruthBox>), String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("{origin}: not well-formed XML: {e}"))?;
    let root = doc.root_element();
    fn el<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
        n.children().find(|c| c.is_element() && c.tag_name().name() == name)
    }
    fn txt(n: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
        el(n, name).and_then(|c| c.text()).map(|t| t.trim().to_string())
    }
    let num = |n: roxmltree::Node<'_, '_>, name: &str| -> std::result::Result<f64, String> {
        let t = txt(n, name).ok_or_else(|| format!("{origin}: byte {}: missing <{name}>", n.range().start))?;
        t.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{origin}: byte {}: <{name}> is {t:?}; expected a number", n.range().start))
    };
    let key = txt(root, "filename").filter(|s| !s.is_empty()).unwrap_or_else(|| stem(origin).to_string());
    let key = stem(&key).to_string();
    let size = match el(root, "size") {
        Some(s) => Some((num(s, "width")? as u32, num(s, "height")? as u32)).filter(|(w, h)| *w > 0 && *h > 0),
        None => None,
    };
    let mut boxes = Vec::new();
    for o in root.children().filter(|c| c.is_element() && c.tag_name().name() == "object") {
        let wnid: Arc<str> = txt(o, "name").unwrap_or_default().into();
        let b =
            el(o, "bndbox").ok_or_else(|| format!("{origin}: byte {}: <object> without <bndbox>", o.range().start))?;
        let rect = [num(b, "xmin")?, num(b, "ymin")?, num(b, "xmax")?, num(b, "ymax")?];
        boxes.push(TruthBox { wnid, rect, size });
    }
    Ok((key, boxes))
}

/// Reads every `.xml` file under `dir` (recursively) as an ILSVRC annotation.
pub fn read_boxes_xml_dir(dir: &Path) -> Result<BoxTruth> {
    let mut out = BoxTruth::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for e in entries {
            let p = e.map_err(|e| Error::io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "xml") {
                let xml = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
                let (key, boxes) =
                    parse_ilsvrc_xml(&xml, &p.display().to_string()).map_err(|m| Error::format(&p, "record", m))?;
                out.insert(&key, boxes);
            }
        }
    }
    Ok(out)
}

/// Reads boxes from a `.tsv` file or a folder of ILSVRC XML files.
pub fn read_boxes(path: &Path) -> Result<BoxTruth> {
    if path.is_dir() {
        read_boxes_xml_dir(path)
    } else {
        read_boxes_tsv(path)
    }
}

/// An object mask, in image-normalised coordinates for polygons.
#[derive(Debug, Clone, PartialEq)]
pub enum Mask {
    /// Polygons (even-odd rule), image-normalised vertices.
    Polygons(Vec<Vec<Point>>),
    /// Column-major run lengths (COCO order) of a `height × width` mask.
    Rle(Rle),
}

impl Mask {
    /// Whether the image-normalised point `p` is on the object.
    pub fn contains(&self, p: Point) -> bool {
        match self {
            Mask::Polygons(polys) => polys.iter().any(|poly| in_polygon(p, poly)),
            Mask::Rle(r) => {
                if r.width == 0 || r.height == 0 {
                    return false;
                }
                let x = ((p.x * r.width as f64).floor() as i64).clamp(0, r.width as i64 - 1) as u64;
                let y = ((p.y * r.height as f64).floor() as i64).clamp(0, r.height as i64 - 1) as u64;
                let idx = x * r.height as u64 + y;
                let mut acc = 0u64;
                for (k, &c) in r.counts.iter().enumerate() {
                    acc += c as u64;
                    if idx < acc {
                        return k % 2 == 1;
                    }
                }
                false
            }
        }
    }
}

/// Even-odd point-in-polygon test.
fn in_polygon(p: Point, poly: &[Point]) -> bool {
    let mut inside = false;
    let n = poly.len();
    if n < 3 {
        return false;
    }
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (poly[i], poly[j]);
        if (a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// One COCO object.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoObject {
    /// Category name.
    pub category: String,
    /// Box, image-normalised.
    pub bbox: NormBox,
    /// Area as a fraction of the image.
    pub area: f64,
    /// The mask.
    pub mask: Mask,
}

/// COCO ground truth: per image id, its size and objects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CocoTruth {
    /// Image id → (width, height).
    pub sizes: HashMap<u64, (f64, f64)>,
    /// Image id → objects (crowd annotations left out).
    pub objects: HashMap<u64, Vec<CocoObject>>,
}

#[derive(Deserialize)]
struct InImage {
    id: u64,
    width: f64,
    height: f64,
}

#[derive(Deserialize)]
struct InCategory {
    id: u64,
    name: String,
}

enum InCounts {
    Runs(Vec<u32>),
    Compressed(String),
}

enum InSeg {
    Polygons(Vec<Vec<f64>>),
    Rle { counts: InCounts, size: [usize; 2] },
}

// Hand-written visitors instead of `#[serde(untagged)]`, which buffers every
// segmentation before trying the variants (a third of the reading time).
impl<'de> Deserialize<'de> for InCounts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = InCounts;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("RLE counts: an array of run lengths or a compressed string")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<InCounts, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<u32>()? {
                    v.push(x);
                }
                Ok(InCounts::Runs(v))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<InCounts, E> {
                Ok(InCounts::Compressed(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for InSeg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = InSeg;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a segmentation: polygons (arrays of x, y, ...) or an RLE object {counts, size}")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<InSeg, A::Error> {
                let mut v = Vec::new();
                while let Some(p) = seq.next_element::<Vec<f64>>()? {
                    v.push(p);
                }
                Ok(InSeg::Polygons(v))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> std::result::Result<InSeg, M::Error> {
                let (mut counts, mut size) = (None, None);
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "counts" => counts = Some(map.next_value::<InCounts>()?),
                        "size" => size = Some(map.next_value::<[usize; 2]>()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                let counts = counts.ok_or_else(|| serde::de::Error::missing_field("counts"))?;
                let size = size.ok_or_else(|| serde::de::Error::missing_field("size"))?;
                Ok(InSeg::Rle { counts, size })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct InAnnotation {
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: u8,
    #[serde(default)]
    segmentation: Option<InSeg>,
}

#[derive(Deserialize)]
struct InFile {
    images: Vec<InImage>,
    annotations: Vec<InAnnotation>,
    categories: Vec<InCategory>,
}

/// Reads a COCO instances JSON (`images`, `annotations` with `bbox` and
/// polygon or RLE `segmentation`, `categories`). Crowd annotations are left
/// out; an annotation without a segmentation uses its box as the mask.
pub fn read_coco_instances(path: &Path) -> Result<CocoTruth> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let f: InFile = serde_json::from_reader(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| Error::format(path, format!("line {}, column {}", e.line(), e.column()), e.to_string()))?;
    let names: HashMap<u64, String> = f.categories.into_iter().map(|c| (c.id, c.name)).collect();
    let mut t = CocoTruth::default();
    for im in f.images {
        t.sizes.insert(im.id, (im.width, im.height));
    }
    for (k, a) in f.annotations.into_iter().enumerate() {
        let at = || format!("annotations[{k}]");
        if a.iscrowd != 0 {
            continue;
        }
        let &(w, h) = t
            .sizes
            .get(&a.image_id)
            .ok_or_else(|| Error::format(path, at(), format!("image_id {} is not in images", a.image_id)))?;
        if !(w > 0.0 && h > 0.0) {
            return Err(Error::format(path, at(), format!("image {} has a zero size", a.image_id)));
        }
        let category = names
            .get(&a.category_id)
            .cloned()
            .ok_or_else(|| Error::format(path, at(), format!("category_id {} is not in categories", a.category_id)))?;
        let [bx, by, bw, bh] = a.bbox;
        let bbox = [bx / w, by / h, (bx + bw) / w, (by + bh) / h];
        let mask = match a.segmentation {
            Some(InSeg::Polygons(polys)) => Mask::Polygons(
                polys.iter().map(|p| p.chunks_exact(2).map(|c| Point { x: c[0] / w, y: c[1] / h }).collect()).collect(),
            ),
            Some(InSeg::Rle { counts, size: [rh, rw] }) => {
                let rle = match counts {
                    InCounts::Runs(runs) => Rle::from_uncompressed(runs, rh, rw),
                    InCounts::Compressed(s) => Rle::from_coco(&CocoRle { size: [rh, rw], counts: s }),
                }
                .map_err(|e| Error::format(path, at(), format!("bad RLE segmentation: {e}")))?;
                Mask::Rle(rle)
            }
            None => Mask::Polygons(vec![vec![
                Point { x: bbox[0], y: bbox[1] },
                Point { x: bbox[2], y: bbox[1] },
                Point { x: bbox[2], y: bbox[3] },
                Point { x: bbox[0], y: bbox[3] },
            ]]),
        };
        let area = a.area.unwrap_or(bw * bh) / (w * h);
        t.objects.entry(a.image_id).or_default().push(CocoObject { category, bbox, area, mask });
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_truth_keeps_each_images_boxes_together() {
        let b = |x: f64| TruthBox { wnid: "n1".into(), rect: [x, 0.0, 1.0, 1.0], size: None };
        let mut t = BoxTruth::new();
        t.push("a", b(0.1));
        t.push("a", b(0.2));
        t.push("b", b(0.3));
        t.push("a", b(0.4)); // a comes back after b
        assert_eq!(t.len(), 2);
        assert_eq!(t["a"].iter().map(|x| x.rect[0]).collect::<Vec<_>>(), vec![0.1, 0.2, 0.4]);
        assert_eq!(t["b"].iter().map(|x| x.rect[0]).collect::<Vec<_>>(), vec![0.3]);
        assert!(t.get("c").is_none());
    }

    #[test]
    fn masks_contain_points() {
        let tri =
            Mask::Polygons(vec![vec![Point { x: 0.0, y: 0.0 }, Point { x: 1.0, y: 0.0 }, Point { x: 0.0, y: 1.0 }]]);
        assert!(tri.contains(Point { x: 0.2, y: 0.2 }));
        assert!(!tri.contains(Point { x: 0.6, y: 0.6 }));
        // 2 × 3 (h × w) mask, column-major: columns [0,0], [0,1], [1,1] → runs 3 zeros, 3 ones.
        let r = Mask::Rle(Rle::from_uncompressed(vec![3, 3], 2, 3).unwrap());
        assert!(!r.contains(Point { x: 0.1, y: 0.2 })); // column 0
        assert!(!r.contains(Point { x: 0.5, y: 0.2 })); // column 1, row 0
        assert!(r.contains(Point { x: 0.5, y: 0.8 })); // column 1, row 1
        assert!(r.contains(Point { x: 0.9, y: 0.1 })); // column 2
    }
}
