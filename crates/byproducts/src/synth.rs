//! Synthetic releases with planted behaviour, for tests and benchmarks.
//!
//! The real ImageNet-AB (555 MB) and COCO-AB (398 MB) releases cannot be
//! fetched here, so [`write_imagenet_ab`] and [`write_coco_ab`] write
//! releases of any size in the documented layouts, together with ground
//! truth in the layouts the analyses read (boxes in the
//! `val_boxes.tsv` layout; COCO instances JSON with polygon and RLE masks).
//! Every image is generated from its own seeded generator, so a release is
//! a pure function of its [`SynthConfig`] and can be written in one pass
//! with constant memory.
//!
//! Planted behaviour that the analyses must recover:
//!
//! * clicks (and COCO icons) sit at the box centre plus
//!   [`SynthConfig::offset`] in box-normalised units (default `(+0.12,
//!   -0.12)`: towards the top right), with Gaussian spread `0.15`;
//! * with [`SynthConfig::centre_worker`], worker `W-CENTRE` always clicks
//!   (and drops icons) within about `0.01` of the image centre;
//! * mouse traces approach the click, so later trace points localise better.

use std::fmt::Write as _;
use std::path::Path;

use labelscope_core::rng::{mix64, Xoshiro256};
use labelscope_core::ClassTable;

use crate::{Error, Result};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Number of images (records).
    pub images: usize,
    /// Number of classes (ImageNet: the first classes of the 1000-class
    /// table; COCO: the first of the 80 COCO categories).
    pub classes: usize,
    /// Number of workers (`W001`, `W002`, …; plus `W-CENTRE`).
    pub workers: usize,
    /// Seed of everything.
    pub seed: u64,
    /// Plant the worker `W-CENTRE`, who always clicks the image centre.
    pub centre_worker: bool,
    /// Mean click position relative to the box centre, in box-normalised
    /// units (`x` to the right, `y` down).
    pub offset: (f64, f64),
    /// Probability that a showing is selected (ImageNet).
    pub select_rate: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            images: 1000,
            classes: 10,
            workers: 20,
            seed: 1,
            centre_worker: true,
            offset: (0.12, -0.12),
            select_rate: 0.85,
        }
    }
}

/// The planted worker.
pub const CENTRE_WORKER: &str = "W-CENTRE";

/// What was written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthSummary {
    /// Records written.
    pub records: usize,
    /// Ground-truth objects (boxes or instances) written.
    pub objects: usize,
    /// Bytes of the release file.
    pub bytes: u64,
}

fn check(cfg: &SynthConfig, max_classes: usize) -> Result<()> {
    if cfg.images == 0 || cfg.classes == 0 || cfg.classes > max_classes || cfg.workers == 0 {
        return Err(Error::Invalid(format!(
            "synthetic release: need images >= 1, 1 <= classes <= {max_classes}, workers >= 1 (got {}, {}, {})",
            cfg.images, cfg.classes, cfg.workers
        )));
    }
    if !(0.0..=1.0).contains(&cfg.select_rate) || !cfg.offset.0.is_finite() || !cfg.offset.1.is_finite() {
        return Err(Error::Invalid("synthetic release: select_rate must be in [0, 1] and the offset finite".into()));
    }
    Ok(())
}

fn rng_for(seed: u64, stream: u64, i: u64) -> Xoshiro256 {
    Xoshiro256::from_seed(mix64(seed ^ mix64(stream.wrapping_mul(0x9E37_79B9) ^ mix64(i))))
}

fn worker_name(cfg: &SynthConfig, slot: u64) -> String {
    // Slot 0 is the planted worker when there is one.
    let n = cfg.workers as u64 + cfg.centre_worker as u64;
    let w = slot % n;
    if cfg.centre_worker && w == 0 {
        CENTRE_WORKER.to_string()
    } else {
        format!("W{:03}", w + 1 - cfg.centre_worker as u64)
    }
}

/// A box `[x0, y0, x1, y1]` in image-normalised units, inside the image.
fn random_box(rng: &mut Xoshiro256, min_side: f64, max_side: f64) -> [f64; 4] {
    let w = min_side + (max_side - min_side) * rng.unit();
    let h = min_side + (max_side - min_side) * rng.unit();
    let x0 = (1.0 - w) * rng.unit();
    let y0 = (1.0 - h) * rng.unit();
    [x0, y0, x0 + w, y0 + h]
}

/// A click for `b` by a worker, with the planted offset (or at the centre).
fn click_in(rng: &mut Xoshiro256, cfg: &SynthConfig, b: &[f64; 4], centre: bool) -> (f64, f64) {
    if centre {
        return ((0.5 + 0.01 * rng.gauss()).clamp(0.0, 1.0), (0.5 + 0.01 * rng.gauss()).clamp(0.0, 1.0));
    }
    let u = 0.5 + cfg.offset.0 + 0.15 * rng.gauss();
    let v = 0.5 + cfg.offset.1 + 0.15 * rng.gauss();
    ((b[0] + u * (b[2] - b[0])).clamp(0.0, 1.0), (b[1] + v * (b[3] - b[1])).clamp(0.0, 1.0))
}

/// One generated ImageNet-AB image: its XML record and its boxes (pixels).
pub(crate) fn imagenet_image(
    cfg: &SynthConfig,
    wnids: &[&str],
    i: usize,
) -> (String, String, usize, u32, u32, Vec<[f64; 4]>) {
    let mut rng = rng_for(cfg.seed, 1, i as u64);
    let class = i % cfg.classes;
    let k = i / cfg.classes;
    let key = format!("{}_{}", wnids[class], 10_000 + k);
    let (w, h) = (200 + rng.below(300) as u32, 200 + rng.below(300) as u32);
    let nboxes = if rng.unit() < 0.8 { 1 } else { 2 };
    let boxes: Vec<[f64; 4]> = (0..nboxes).map(|_| random_box(&mut rng, 0.2, 0.7)).collect();
    let mut xml = String::with_capacity(4096);
    let _ = write!(
        xml,
        "<annotation>\n  <folder>{wnid}</folder>\n  <filename>{key}</filename>\n  <size>\n    <width>{w}</width>\n    \
         <height>{h}</height>\n    <depth>3</depth>\n  </size>\n",
        wnid = wnids[class]
    );
    let showings = 1 + rng.below(3);
    for s in 0..showings {
        // Pages of 16 images of one class, HITs of 4 pages, one worker per HIT.
        let hit_no = k / 64;
        let hit = format!("H{class:04}-{s}-{hit_no:05}");
        let page = (k / 16) % 4 + 1;
        let worker = worker_name(cfg, mix64(cfg.seed ^ mix64((class as u64) << 32 | (s << 24) | hit_no as u64)));
        let centre = worker == CENTRE_WORKER;
        let selected = rng.unit() < cfg.select_rate;
        let _ = write!(
            xml,
            "  <metadata>\n    <workerId>{worker}</workerId>\n    <hitId>{hit}</hitId>\n    <page>{page}</page>\n    \
             <selected>{}</selected>\n",
            if selected { "True" } else { "False" }
        );
        // Trace: from a point on the border towards the click.
        let target = if selected { click_in(&mut rng, cfg, &boxes[0], centre) } else { (rng.unit(), rng.unit()) };
        let start = match rng.below(4) {
            0 => (rng.unit(), 0.0),
            1 => (rng.unit(), 1.0),
            2 => (0.0, rng.unit()),
            _ => (1.0, rng.unit()),
        };
        let steps = 8 + rng.below(10) as usize;
        let t0 = (50.0 + 200.0 * rng.unit()).round();
        let mut t = t0;
        let mut trace = String::new();
        for j in 1..=steps {
            let f = j as f64 / steps as f64;
            let noise = 0.08 * (1.0 - f);
            let (x, y) = if j == steps {
                target
            } else {
                (
                    (start.0 + f * (target.0 - start.0) + noise * rng.gauss()).clamp(0.0, 1.0),
                    (start.1 + f * (target.1 - start.1) + noise * rng.gauss()).clamp(0.0, 1.0),
                )
            };
            let _ = write!(
                trace,
                "    <mouseTracking>\n      <time>{t}</time>\n      <x>{x:.5}</x>\n      <y>{y:.5}</y>\n    \
                 </mouseTracking>\n"
            );
            t += (40.0 + 120.0 * rng.unit()).round();
        }
        if selected {
            // The click happened at the time of the last trace sample.
            let estimate = t_last(t0, &trace);
            let _ = write!(
                xml,
                "    <selectedRecord>\n      <x>{:.5}</x>\n      <y>{:.5}</y>\n    </selectedRecord>\n    \
                 <estimateTime>{}</estimateTime>\n",
                target.0,
                target.1,
                estimate - t0
            );
            // A few samples after the click, which targets and trace analyses must ignore.
            for _ in 0..rng.below(3) {
                let _ = write!(
                    trace,
                    "    <mouseTracking>\n      <time>{t}</time>\n      <x>{:.5}</x>\n      <y>{:.5}</y>\n    \
                     </mouseTracking>\n",
                    rng.unit(),
                    rng.unit()
                );
                t += 100.0;
            }
        }
        xml.push_str(&trace);
        xml.push_str("  </metadata>\n");
    }
    for b in &boxes {
        let _ = write!(
            xml,
            "  <object>\n    <name>{}</name>\n    <bndbox>\n      <xmin>{:.0}</xmin>\n      <ymin>{:.0}</ymin>\n      \
             <xmax>{:.0}</xmax>\n      <ymax>{:.0}</ymax>\n    </bndbox>\n  </object>\n",
            wnids[class],
            b[0] * w as f64,
            b[1] * h as f64,
            b[2] * w as f64,
            b[3] * h as f64
        );
    }
    xml.push_str("</annotation>\n");
    let px: Vec<[f64; 4]> =
        boxes.iter().map(|b| [b[0] * w as f64, b[1] * h as f64, b[2] * w as f64, b[3] * h as f64]).collect();
    (key, xml, class, w, h, px)
}

/// The time of the last `<time>` in a trace fragment.
fn t_last(t0: f64, trace: &str) -> f64 {
    trace
        .rmatch_indices("<time>")
        .next()
        .and_then(|(i, _)| trace[i + 6..].split('<').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(t0)
}

/// Writes a synthetic ImageNet-AB release (`.tar.gz` of
/// `<wnid>/<key>.xml` members, in the layout [`crate::imagenet`] reads) to
/// `release` and its boxes, in pixels, to `boxes_tsv` (the
/// `val_boxes.tsv` layout: `<key>.JPEG`, class index, x0, y0, x1, y1; one
/// line per box). `progress` is called with the number of records written.
pub fn write_imagenet_ab(
    release: &Path,
    boxes_tsv: &Path,
    cfg: &SynthConfig,
    progress: &dyn Fn(usize),
) -> Result<SynthSummary> {
    check(cfg, 1000)?;
    let table = ClassTable::imagenet();
    let wnids: Vec<&str> = table.classes()[..cfg.classes].iter().map(|c| c.wnid.as_str()).collect();
    let mut summary = SynthSummary { records: cfg.images, ..Default::default() };
    let mut tsv = String::new();
    let members = (0..cfg.images).map(|i| {
        let (key, xml, class, _, _, px) = imagenet_image(cfg, &wnids, i);
        for b in &px {
            let _ = writeln!(tsv, "{key}.JPEG\t{class}\t{:.1}\t{:.1}\t{:.1}\t{:.1}", b[0], b[1], b[2], b[3]);
            summary.objects += 1;
        }
        if i % 1024 == 1023 {
            progress(i + 1);
        }
        (format!("{}/{key}.xml", wnids[class]), xml)
    });
    crate::imagenet::write_archive(release, members)?;
    labelscope_core::atomic::write_atomic(boxes_tsv, tsv.as_bytes())
        .map_err(|e| Error::Invalid(format!("{}: {e}", boxes_tsv.display())))?;
    summary.bytes = std::fs::metadata(release).map_err(|e| Error::io(release, e))?.len();
    progress(cfg.images);
    Ok(summary)
}

/// The 80 COCO category names in category-id order (ids 1…90 with gaps).
pub const COCO_CATEGORIES: [(u32, &str); 80] = [
    (1, "person"),
    (2, "bicycle"),
    (3, "car"),
    (4, "motorcycle"),
    (5, "airplane"),
    (6, "bus"),
    (7, "train"),
    (8, "truck"),
    (9, "boat"),
    (10, "traffic light"),
    (11, "fire hydrant"),
    (13, "stop sign"),
    (14, "parking meter"),
    (15, "bench"),
    (16, "bird"),
    (17, "cat"),
    (18, "dog"),
    (19, "horse"),
    (20, "sheep"),
    (21, "cow"),
    (22, "elephant"),
    (23, "bear"),
    (24, "zebra"),
    (25, "giraffe"),
    (27, "backpack"),
    (28, "umbrella"),
    (31, "handbag"),
    (32, "tie"),
    (33, "suitcase"),
    (34, "frisbee"),
    (35, "skis"),
    (36, "snowboard"),
    (37, "sports ball"),
    (38, "kite"),
    (39, "baseball bat"),
    (40, "baseball glove"),
    (41, "skateboard"),
    (42, "surfboard"),
    (43, "tennis racket"),
    (44, "bottle"),
    (46, "wine glass"),
    (47, "cup"),
    (48, "fork"),
    (49, "knife"),
    (50, "spoon"),
    (51, "bowl"),
    (52, "banana"),
    (53, "apple"),
    (54, "sandwich"),
    (55, "orange"),
    (56, "broccoli"),
    (57, "carrot"),
    (58, "hot dog"),
    (59, "pizza"),
    (60, "donut"),
    (61, "cake"),
    (62, "chair"),
    (63, "couch"),
    (64, "potted plant"),
    (65, "bed"),
    (67, "dining table"),
    (70, "toilet"),
    (72, "tv"),
    (73, "laptop"),
    (74, "mouse"),
    (75, "remote"),
    (76, "keyboard"),
    (77, "cell phone"),
    (78, "microwave"),
    (79, "oven"),
    (80, "toaster"),
    (81, "sink"),
    (82, "refrigerator"),
    (84, "book"),
    (85, "clock"),
    (86, "vase"),
    (87, "scissors"),
    (88, "teddy bear"),
    (89, "hair drier"),
    (90, "toothbrush"),
];

/// One generated COCO instance.
struct Instance {
    category: usize,
    /// `[x0, y0, x1, y1]`, normalised.
    bbox: [f64; 4],
    /// Polygon (pixels) when not RLE.
    rle: bool,
}

/// The ellipse polygon inscribed in `b` (pixels), 12 vertices.
fn ellipse(b: &[f64; 4], w: f64, h: f64) -> Vec<(f64, f64)> {
    let (cx, cy) = ((b[0] + b[2]) / 2.0 * w, (b[1] + b[3]) / 2.0 * h);
    let (rx, ry) = ((b[2] - b[0]) / 2.0 * w, (b[3] - b[1]) / 2.0 * h);
    (0..12)
        .map(|k| {
            let a = k as f64 / 12.0 * std::f64::consts::TAU;
            (cx + rx * a.cos(), cy + ry * a.sin())
        })
        .collect()
}

/// A column-major uncompressed RLE of the ellipse inscribed in `b`
/// (pixel `(x, y)` is inside when its centre is).
fn ellipse_rle(b: &[f64; 4], w: usize, h: usize) -> (Vec<u32>, u64) {
    let (cx, cy) = ((b[0] + b[2]) / 2.0 * w as f64, (b[1] + b[3]) / 2.0 * h as f64);
    let (rx, ry) = (((b[2] - b[0]) / 2.0 * w as f64).max(0.5), ((b[3] - b[1]) / 2.0 * h as f64).max(0.5));
    let mut counts = Vec::new();
    let (mut cur, mut run, mut area) = (false, 0u32, 0u64);
    for x in 0..w {
        for y in 0..h {
            let dx = (x as f64 + 0.5 - cx) / rx;
            let dy = (y as f64 + 0.5 - cy) / ry;
            let v = dx * dx + dy * dy <= 1.0;
            area += v as u64;
            if v == cur {
                run += 1;
            } else {
                counts.push(run);
                cur = v;
                run = 1;
            }
        }
    }
    counts.push(run);
    (counts, area)
}

fn polygon_area(p: &[(f64, f64)]) -> f64 {
    let mut s = 0.0;
    for k in 0..p.len() {
        let (a, b) = (p[k], p[(k + 1) % p.len()]);
        s += a.0 * b.1 - b.0 * a.1;
    }
    s.abs() / 2.0
}

/// The objects, record and instance annotations of COCO image `i`.
fn coco_image(cfg: &SynthConfig, i: usize) -> (u64, u32, u32, Vec<Instance>, String) {
    let mut rng = rng_for(cfg.seed, 2, i as u64);
    let id = 100_000 + i as u64 * 7;
    let (w, h) = (400 + rng.below(241) as u32, 360 + rng.below(121) as u32);
    let nclasses = 1 + rng.below(3) as usize;
    let mut instances = Vec::new();
    let mut present: Vec<usize> = Vec::new();
    for _ in 0..nclasses {
        let c = rng.below(cfg.classes as u64) as usize;
        if present.contains(&c) {
            continue;
        }
        present.push(c);
        // Each class has its own typical size, so recall vs size has a trend.
        let base = 0.08 + 0.5 * (mix64(cfg.seed ^ c as u64) % 1000) as f64 / 1000.0;
        for _ in 0..1 + rng.below(3) {
            let side = (base * (0.6 + 0.8 * rng.unit())).clamp(0.05, 0.9);
            instances.push(Instance {
                category: c,
                bbox: random_box(&mut rng, side * 0.7, side),
                rle: rng.unit() < 0.1,
            });
        }
    }
    let worker = worker_name(cfg, rng.next_u64());
    let centre = worker == CENTRE_WORKER;
    let mut actions = String::new();
    let mut t = 500.0 + (2000.0 * rng.unit()).round();
    let mut push = |kind: &str, name: &str, p: Option<(f64, f64)>, t: f64| {
        if !actions.is_empty() {
            actions.push(',');
        }
        let _ = write!(actions, "{{\"actionType\":\"{kind}\",\"iconType\":\"{name}\",\"timeAt\":{t}");
        if let Some((x, y)) = p {
            let _ = write!(actions, ",\"pointTo\":{{\"x\":{x:.5},\"y\":{y:.5}}}");
        }
        actions.push('}');
    };
    for &c in &present {
        let name = COCO_CATEGORIES[c].1;
        let inst: Vec<&Instance> = instances.iter().filter(|o| o.category == c).collect();
        let size =
            inst.iter().map(|o| (o.bbox[2] - o.bbox[0]) * (o.bbox[3] - o.bbox[1])).sum::<f64>() / inst.len() as f64;
        // Larger objects are tagged more often.
        let p_tag = (0.55 + 0.2 * (size / 0.01).log10() / 2.0).clamp(0.2, 0.98);
        if rng.unit() >= p_tag {
            continue;
        }
        let o = inst[rng.below(inst.len() as u64) as usize];
        let first = click_in(&mut rng, cfg, &o.bbox, centre);
        let r = rng.unit();
        push("add", name, Some(first), t);
        t += (300.0 + 900.0 * rng.unit()).round();
        if r < 0.15 {
            push("move", name, Some(click_in(&mut rng, cfg, &o.bbox, centre)), t);
            t += 400.0;
        } else if r < 0.20 {
            push("remove", name, None, t);
            t += 300.0;
            push("add", name, Some(click_in(&mut rng, cfg, &o.bbox, centre)), t);
            t += 400.0;
        } else if r < 0.23 {
            push("remove", name, None, t);
            t += 300.0;
        }
    }
    if rng.unit() < 0.05 {
        // A wrong icon: a class that is not in the image.
        let c = (present[0] + 1 + rng.below(cfg.classes.max(2) as u64 - 1) as usize) % cfg.classes;
        if !present.contains(&c) {
            push("add", COCO_CATEGORIES[c].1, Some((rng.unit(), rng.unit())), t);
            t += 500.0;
        }
    }
    let mut rec = String::with_capacity(3500);
    let _ = write!(
        rec,
        "{{\"image_id\":{id},\"originalImageWidth\":{w},\"originalImageHeight\":{h},\"timeSpent\":{},\
         \"workerId\":\"{worker}\",\"actionHistories\":[{actions}],\"categoryHistories\":[",
        t + 800.0
    );
    for (k, &c) in present.iter().enumerate() {
        if k > 0 {
            rec.push(',');
        }
        let _ = write!(rec, "{{\"category\":\"{}\",\"openedAt\":{}}}", COCO_CATEGORIES[c].1, 300 * k);
    }
    rec.push_str("],\"mouseTracking\":[");
    let n = 70 + rng.below(40);
    for k in 0..n {
        if k > 0 {
            rec.push(',');
        }
        let _ = write!(rec, "{{\"x\":{:.4},\"y\":{:.4},\"t\":{}}}", rng.unit(), rng.unit(), 40 * k);
    }
    rec.push_str("]}");
    (id, w, h, instances, rec)
}

/// Writes a synthetic COCO-AB release (one JSON array, one record per line,
/// in the layout [`crate::coco`] reads) to `release` and the matching COCO
/// instance annotations (images, categories, annotations with polygon and
/// uncompressed-RLE masks) to `instances`. `progress` is called with the
/// number of records written.
pub fn write_coco_ab(
    release: &Path,
    instances: &Path,
    cfg: &SynthConfig,
    progress: &dyn Fn(usize),
) -> Result<SynthSummary> {
    check(cfg, COCO_CATEGORIES.len())?;
    let mut summary = SynthSummary { records: cfg.images, ..Default::default() };
    labelscope_core::atomic::write_atomic_with(release, |out| {
        out.write_all(b"[\n")?;
        for i in 0..cfg.images {
            let (.., rec) = coco_image(cfg, i);
            out.write_all(rec.as_bytes())?;
            out.write_all(if i + 1 < cfg.images { b",\n" } else { b"\n" })?;
            if i % 1024 == 1023 {
                progress(i + 1);
            }
        }
        out.write_all(b"]\n")
    })
    .map_err(|e| Error::Invalid(format!("{}: {e}", release.display())))?;
    let mut objects = 0usize;
    labelscope_core::atomic::write_atomic_with(instances, |out| {
        out.write_all(b"{\"images\":[\n")?;
        for i in 0..cfg.images {
            let (id, w, h, ..) = coco_image(cfg, i);
            let sep = if i + 1 < cfg.images { ",\n" } else { "\n" };
            write!(out, "{{\"id\":{id},\"width\":{w},\"height\":{h},\"file_name\":\"{id:012}.jpg\"}}{sep}")?;
        }
        out.write_all(b"],\n\"annotations\":[\n")?;
        let mut ann = 0u64;
        for i in 0..cfg.images {
            let (id, w, h, objs, _) = coco_image(cfg, i);
            for o in &objs {
                let (wf, hf) = (w as f64, h as f64);
                let bb = [o.bbox[0] * wf, o.bbox[1] * hf, (o.bbox[2] - o.bbox[0]) * wf, (o.bbox[3] - o.bbox[1]) * hf];
                let (seg, area) = if o.rle {
                    let (counts, area) = ellipse_rle(&o.bbox, w as usize, h as usize);
                    let c: Vec<String> = counts.iter().map(u32::to_string).collect();
                    (format!("{{\"counts\":[{}],\"size\":[{h},{w}]}}", c.join(",")), area as f64)
                } else {
                    let p = ellipse(&o.bbox, wf, hf);
                    let c: Vec<String> = p.iter().flat_map(|(x, y)| [format!("{x:.2}"), format!("{y:.2}")]).collect();
                    (format!("[[{}]]", c.join(",")), polygon_area(&p))
                };
                if ann > 0 {
                    out.write_all(b",\n")?;
                }
                ann += 1;
                write!(
                    out,
                    "{{\"id\":{ann},\"image_id\":{id},\"category_id\":{},\"iscrowd\":0,\"area\":{area:.2},\
                     \"bbox\":[{:.2},{:.2},{:.2},{:.2}],\"segmentation\":{seg}}}",
                    COCO_CATEGORIES[o.category].0, bb[0], bb[1], bb[2], bb[3]
                )?;
            }
        }
        objects = ann as usize;
        out.write_all(b"\n],\n\"categories\":[\n")?;
        for (k, (cid, name)) in COCO_CATEGORIES.iter().enumerate() {
            let sep = if k + 1 < COCO_CATEGORIES.len() { ",\n" } else { "\n" };
            write!(out, "{{\"id\":{cid},\"name\":\"{name}\",\"supercategory\":\"\"}}{sep}")?;
        }
        out.write_all(b"]}\n")
    })
    .map_err(|e| Error::Invalid(format!("{}: {e}", instances.display())))?;
    summary.objects = objects;
    summary.bytes = std::fs::metadata(release).map_err(|e| Error::io(release, e))?.len();
    progress(cfg.images);
    Ok(summary)
}
