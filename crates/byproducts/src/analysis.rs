//! The ImageNet-AB analyses, accumulated one record at a time
//! ([`ImagenetAnalysis::add`]) so that a release is analysed while it
//! streams past, and shared building blocks (rates, histograms, group
//! statistics) used by the COCO-AB analyses too.

use crate::hash::FastMap;

use crate::analytics::{gaussian_accuracy, NormBox};
use crate::imagenet::{ImageRecord, Showing, TracePoint};
use crate::truth::{class_boxes, BoxTruth};
use crate::{Point, Result};

/// A count of successes out of a total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    /// Successes.
    pub hits: u64,
    /// Trials.
    pub total: u64,
}

impl Rate {
    /// Adds one trial.
    pub fn add(&mut self, hit: bool) {
        self.hits += hit as u64;
        self.total += 1;
    }

    /// `hits / total`, `NaN` when there were no trials.
    pub fn value(&self) -> f64 {
        if self.total == 0 {
            f64::NAN
        } else {
            self.hits as f64 / self.total as f64
        }
    }
}

/// A 2-D histogram over a rectangle; points outside are counted apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Hist2 {
    /// Horizontal range.
    pub x_range: (f64, f64),
    /// Vertical range.
    pub y_range: (f64, f64),
    /// Bins across.
    pub cols: usize,
    /// Bins down.
    pub rows: usize,
    /// Row-major counts; row 0 is at `y_range.0`.
    pub counts: Vec<u64>,
    /// Points outside the rectangle.
    pub outside: u64,
}

impl Hist2 {
    /// An empty histogram.
    pub fn new(x_range: (f64, f64), y_range: (f64, f64), cols: usize, rows: usize) -> Hist2 {
        Hist2 { x_range, y_range, cols, rows, counts: vec![0; cols * rows], outside: 0 }
    }

    /// Adds a point. The upper edges belong to the last bins.
    pub fn add(&mut self, x: f64, y: f64) {
        let fx = (x - self.x_range.0) / (self.x_range.1 - self.x_range.0);
        let fy = (y - self.y_range.0) / (self.y_range.1 - self.y_range.0);
        if !(0.0..=1.0).contains(&fx) || !(0.0..=1.0).contains(&fy) {
            self.outside += 1;
            return;
        }
        let c = ((fx * self.cols as f64) as usize).min(self.cols - 1);
        let r = ((fy * self.rows as f64) as usize).min(self.rows - 1);
        self.counts[r * self.cols + c] += 1;
    }

    /// Points inside plus outside.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.outside
    }

    /// Counts summed over rows (one per column) and over columns (one per row).
    pub fn marginals(&self) -> (Vec<u64>, Vec<u64>) {
        let mut xs = vec![0; self.cols];
        let mut ys = vec![0; self.rows];
        for (r, row) in self.counts.chunks(self.cols).enumerate() {
            for (c, &n) in row.iter().enumerate() {
                xs[c] += n;
                ys[r] += n;
            }
        }
        (xs, ys)
    }
}

/// A running mean of 2-D points.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mean2 {
    /// Sum of x.
    pub sx: f64,
    /// Sum of y.
    pub sy: f64,
    /// Number of points.
    pub n: u64,
}

impl Mean2 {
    /// Adds a point.
    pub fn add(&mut self, x: f64, y: f64) {
        self.sx += x;
        self.sy += y;
        self.n += 1;
    }

    /// The mean, `(NaN, NaN)` when empty.
    pub fn mean(&self) -> (f64, f64) {
        if self.n == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (self.sx / self.n as f64, self.sy / self.n as f64)
        }
    }
}

/// Whether `p` is inside `b` (edges included).
pub fn inside(p: Point, b: &NormBox) -> bool {
    p.x >= b[0] && p.x <= b[2] && p.y >= b[1] && p.y <= b[3]
}

/// The box `p` is measured against: the smallest box containing it, else
/// the box whose centre is nearest.
pub fn reference_box(p: Point, boxes: &[NormBox]) -> Option<&NormBox> {
    let area = |b: &NormBox| (b[2] - b[0]) * (b[3] - b[1]);
    let containing = boxes.iter().filter(|b| inside(p, b)).min_by(|a, b| area(a).total_cmp(&area(b)));
    containing.or_else(|| {
        boxes.iter().min_by(|a, b| {
            let d = |b: &NormBox| ((b[0] + b[2]) / 2.0 - p.x).powi(2) + ((b[1] + b[3]) / 2.0 - p.y).powi(2);
            d(a).total_cmp(&d(b))
        })
    })
}

/// `p` in the coordinates of box `b`: (0, 0) top-left corner, (1, 1) bottom-right.
pub fn box_normalised(p: Point, b: &NormBox) -> Option<(f64, f64)> {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    (w > 0.0 && h > 0.0).then(|| ((p.x - b[0]) / w, (p.y - b[1]) / h))
}

/// The median of `v` (mean of the middle two for even lengths); `NaN` when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Thresholds and grids of the analyses.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisOptions {
    /// A click within this distance (image-normalised) of the centre counts
    /// as a centre click for the centre-bias score.
    pub centre_radius: f64,
    /// Flag a worker whose centre-bias score is at least this.
    pub flag_share: f64,
    /// …and who has at least this many clicks.
    pub min_clicks: u64,
    /// σ values of the Gaussian-around-the-centre curve (`f64::INFINITY`
    /// for the uniform click).
    pub sigmas: Vec<f64>,
    /// Random clicks per image and σ.
    pub draws: usize,
    /// Seed of the random baselines.
    pub seed: u64,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            centre_radius: 0.1,
            flag_share: 0.5,
            min_clicks: 10,
            sigmas: vec![0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, f64::INFINITY],
            draws: 20,
            seed: 0,
        }
    }
}

/// Per-group (worker, HIT or page) statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStats {
    /// Worker id, HIT id, or `HIT/page`.
    pub key: String,
    /// Showings (images shown; for COCO, images annotated).
    pub images: u64,
    /// Selected showings (COCO: icons placed).
    pub selected: u64,
    /// `selected / images`.
    pub selection_rate: f64,
    /// Clicks scored against boxes, and how many were inside a box of the class.
    pub accuracy: Rate,
    /// Median over the group's pages of the time spent on a page, in
    /// milliseconds (the sum of the page's `estimateTime`s; COCO: median
    /// `timeSpent` per image).
    pub median_time_ms: f64,
    /// Clicks within [`AnalysisOptions::centre_radius`] of the centre, out of all clicks.
    pub centre: Rate,
    /// Whether the clicks look uninformative (centre-bias score at least
    /// [`AnalysisOptions::flag_share`] with at least
    /// [`AnalysisOptions::min_clicks`] clicks).
    pub flagged: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct GroupAcc {
    pub(crate) images: u64,
    pub(crate) selected: u64,
    pub(crate) accuracy: Rate,
    pub(crate) centre: Rate,
    pub(crate) times: Vec<f64>,
}

impl GroupAcc {
    /// A click at `p`; `hit` is whether it is correct, `None` when it cannot be scored.
    pub(crate) fn click(&mut self, p: Point, hit: Option<bool>, opts: &AnalysisOptions) {
        let d = ((p.x - 0.5).powi(2) + (p.y - 0.5).powi(2)).sqrt();
        self.centre.add(d <= opts.centre_radius);
        if let Some(h) = hit {
            self.accuracy.add(h);
        }
    }

    pub(crate) fn finish(mut self, key: String, opts: &AnalysisOptions) -> GroupStats {
        let centre = self.centre;
        GroupStats {
            key,
            images: self.images,
            selected: self.selected,
            selection_rate: if self.images == 0 { f64::NAN } else { self.selected as f64 / self.images as f64 },
            accuracy: self.accuracy,
            median_time_ms: median(&mut self.times),
            centre,
            flagged: centre.total >= opts.min_clicks && centre.value() >= opts.flag_share,
        }
    }
}

/// Coverage and re-selection counts of an ImageNet-AB release.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Records (images) read.
    pub records: u64,
    /// Showings (metadata sections).
    pub showings: u64,
    /// Selected showings.
    pub selected_showings: u64,
    /// Images shown at least once.
    pub shown: u64,
    /// Images selected at least once (re-selected by the new annotators).
    pub reselected: u64,
    /// Images with a final click (a LUAB target).
    pub with_click: u64,
    /// Images with any mouse-trace sample.
    pub with_trace: u64,
    /// Images with any byproduct (a click or a trace sample).
    pub with_any: u64,
    /// Images with ground-truth boxes of their class.
    pub with_boxes: u64,
}

/// Everything the ImageNet-AB analysis found.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagenetReport {
    /// Coverage and re-selection.
    pub coverage: Coverage,
    /// Final clicks inside a box of the image's class, over images with a click and boxes.
    pub click: Rate,
    /// Centre click inside such a box, over the same images.
    pub centre: Rate,
    /// Final clicks inside a box, over the images where the centre click fails.
    pub click_where_centre_fails: Rate,
    /// Accuracy of a Gaussian click around the centre, per σ (same images).
    pub sigma_curve: Vec<(f64, f64)>,
    /// Accuracy of the N-th trace point before the click (N = 1 is the last
    /// sample at or before the click), N = 1…10.
    pub last_n: Vec<(usize, Rate)>,
    /// Accuracy of the trace point at quantile q of the trace samples up to
    /// the click (q = 0 first sample, 1 the last), q = 0, 0.1, …, 1.
    pub trace_quantile: Vec<(f64, Rate)>,
    /// Accuracy of the position at time quantile q between entering the
    /// image (first sample) and the click (the last sample at or before that time).
    pub time_quantile: Vec<(f64, Rate)>,
    /// Final clicks in box-normalised coordinates over `[-0.5, 1.5]²`, 20 × 20.
    pub box_hist: Hist2,
    /// Mean box-normalised click, over all scored clicks and over those inside the box.
    pub box_mean: (Mean2, Mean2),
    /// Box centres, image-normalised, 20 × 20.
    pub centre_heat: Hist2,
    /// Final clicks, image-normalised, 20 × 20.
    pub click_heat: Hist2,
    /// Per worker (sorted by key).
    pub workers: Vec<GroupStats>,
    /// Per HIT.
    pub hits: Vec<GroupStats>,
    /// Per page (`HIT/page`).
    pub pages: Vec<GroupStats>,
}

/// Streaming ImageNet-AB analysis against ground-truth boxes.
pub struct ImagenetAnalysis<'a> {
    truth: &'a BoxTruth,
    opts: AnalysisOptions,
    coverage: Coverage,
    click: Rate,
    centre: Rate,
    fails: Rate,
    /// Boxes of the scored images, flattened, with each image's end offset.
    scored: (Vec<NormBox>, Vec<u32>),
    last_n: Vec<Rate>,
    trace_q: Vec<Rate>,
    time_q: Vec<Rate>,
    box_hist: Hist2,
    box_mean: (Mean2, Mean2),
    centre_heat: Hist2,
    click_heat: Hist2,
    workers: FastMap<String, GroupAcc>,
    hits: FastMap<String, GroupAcc>,
    pages: FastMap<String, (Option<String>, Option<String>, GroupAcc, f64)>,
    /// Scratch buffer for page keys.
    page_key: String,
}

const QUANTILES: usize = 11;

/// The trace samples of `s` up to its click (the click time is the first
/// sample's time plus `estimateTime`; all samples when there is no
/// `estimateTime`).
pub fn trace_before_click(s: &Showing) -> &[TracePoint] {
    let Some(first) = s.trace.first() else { return &s.trace };
    match s.estimate_time_ms {
        Some(t) => {
            let cut = first.time_ms + t;
            let n = s.trace.iter().take_while(|p| p.time_ms <= cut).count();
            &s.trace[..n]
        }
        None => &s.trace,
    }
}

impl<'a> ImagenetAnalysis<'a> {
    /// A new analysis against `truth`.
    pub fn new(truth: &'a BoxTruth, opts: AnalysisOptions) -> Self {
        ImagenetAnalysis {
            truth,
            opts,
            coverage: Coverage::default(),
            click: Rate::default(),
            centre: Rate::default(),
            fails: Rate::default(),
            scored: (Vec::new(), Vec::new()),
            last_n: vec![Rate::default(); 10],
            trace_q: vec![Rate::default(); QUANTILES],
            time_q: vec![Rate::default(); QUANTILES],
            box_hist: Hist2::new((-0.5, 1.5), (-0.5, 1.5), 20, 20),
            box_mean: (Mean2::default(), Mean2::default()),
            centre_heat: Hist2::new((0.0, 1.0), (0.0, 1.0), 20, 20),
            click_heat: Hist2::new((0.0, 1.0), (0.0, 1.0), 20, 20),
            workers: FastMap::default(),
            hits: FastMap::default(),
            pages: FastMap::default(),
            page_key: String::new(),
        }
    }

    /// Adds one record.
    pub fn add(&mut self, r: &ImageRecord) {
        let boxes = self.boxes_of(r);
        self.add_with_boxes(r, boxes);
    }

    /// The ground-truth boxes [`add`](Self::add) scores `r` against: those of
    /// the image's class, normalised. Needs only `&self`, so it can run on the
    /// parser threads ([`read_archive_map`](crate::imagenet::read_archive_map)).
    pub fn boxes_of(&self, r: &ImageRecord) -> Vec<NormBox> {
        class_boxes(self.truth, &r.image, r.wnid.as_deref(), r.size)
    }

    /// Adds one record with its boxes from [`boxes_of`](Self::boxes_of).
    pub fn add_with_boxes(&mut self, r: &ImageRecord, boxes: Vec<NormBox>) {
        let c = &mut self.coverage;
        c.records += 1;
        c.showings += r.showings.len() as u64;
        c.shown += !r.showings.is_empty() as u64;
        let nsel = r.showings.iter().filter(|s| s.selected).count() as u64;
        c.selected_showings += nsel;
        c.reselected += (nsel > 0) as u64;
        let final_showing = r.showings.iter().rev().find(|s| s.selected && s.click.is_some());
        let any_trace = r.showings.iter().any(|s| !s.trace.is_empty());
        let any_click = r.showings.iter().any(|s| s.click.is_some());
        c.with_click += final_showing.is_some() as u64;
        c.with_trace += any_trace as u64;
        c.with_any += (any_trace || any_click) as u64;
        c.with_boxes += !boxes.is_empty() as u64;
        for b in &boxes {
            self.centre_heat.add((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        }

        for s in &r.showings {
            // Keys are looked up borrowed and copied only the first time they are seen.
            self.page_key.clear();
            let has_page = match (&s.hit, &s.page, &s.worker) {
                (Some(h), Some(p), _) | (None, Some(p), Some(h)) => {
                    self.page_key.push_str(h);
                    self.page_key.push('/');
                    self.page_key.push_str(p);
                    true
                }
                _ => false,
            };
            fn slot<'m, V: Default>(m: &'m mut FastMap<String, V>, k: &str) -> &'m mut V {
                if !m.contains_key(k) {
                    m.insert(k.to_string(), V::default());
                }
                m.get_mut(k).expect("just inserted")
            }
            let mut groups: Vec<&mut GroupAcc> = Vec::with_capacity(3);
            if let Some(w) = &s.worker {
                groups.push(slot(&mut self.workers, w));
            }
            if let Some(h) = &s.hit {
                groups.push(slot(&mut self.hits, h));
            }
            if has_page {
                let e = slot(&mut self.pages, &self.page_key);
                if e.2.images == 0 {
                    (e.0, e.1) = (s.worker.clone(), s.hit.clone());
                }
                e.3 += s.estimate_time_ms.unwrap_or(0.0);
                groups.push(&mut e.2);
            }
            for g in groups {
                g.images += 1;
                g.selected += s.selected as u64;
                if let (true, Some(p)) = (s.selected, s.click) {
                    let hit = (!boxes.is_empty()).then(|| boxes.iter().any(|b| inside(p, b)));
                    g.click(p, hit, &self.opts);
                }
            }
        }

        let Some(s) = final_showing else { return };
        let Some(p) = s.click else { return };
        self.click_heat.add(p.x, p.y);
        if boxes.is_empty() {
            return;
        }
        let hit = |q: Point| boxes.iter().any(|b| inside(q, b));
        let h = hit(p);
        self.click.add(h);
        let centre_ok = hit(Point { x: 0.5, y: 0.5 });
        self.centre.add(centre_ok);
        if !centre_ok {
            self.fails.add(h);
        }
        if let Some(b) = reference_box(p, &boxes) {
            if let Some((u, v)) = box_normalised(p, b) {
                self.box_hist.add(u, v);
                self.box_mean.0.add(u, v);
                if inside(p, b) {
                    self.box_mean.1.add(u, v);
                }
            }
        }
        let tr = trace_before_click(s);
        for (n, rate) in self.last_n.iter_mut().enumerate() {
            if tr.len() > n {
                rate.add(hit(tr[tr.len() - 1 - n].point));
            }
        }
        if !tr.is_empty() {
            let t0 = tr[0].time_ms;
            let t1 = s.estimate_time_ms.map(|t| t0 + t).unwrap_or(tr[tr.len() - 1].time_ms);
            for k in 0..QUANTILES {
                let q = k as f64 / (QUANTILES - 1) as f64;
                let i = (q * (tr.len() - 1) as f64).round() as usize;
                self.trace_q[k].add(hit(tr[i].point));
                let t = t0 + q * (t1 - t0);
                let j = tr.iter().take_while(|p| p.time_ms <= t).count().max(1) - 1;
                self.time_q[k].add(hit(tr[j].point));
            }
        }
        self.scored.0.extend_from_slice(&boxes);
        self.scored.1.push(self.scored.0.len() as u32);
    }

    /// Computes the baselines and the group tables.
    pub fn finish(self) -> Result<ImagenetReport> {
        let opts = &self.opts;
        let (flat, ends) = &self.scored;
        let images: Vec<&[NormBox]> = ends
            .iter()
            .scan(0usize, |start, &end| {
                let b = &flat[*start..end as usize];
                *start = end as usize;
                Some(b)
            })
            .collect();
        // About a million random clicks per σ (at least one per image, at most `draws`).
        let draws = (1_000_000 / images.len().max(1)).clamp(1, opts.draws.max(1));
        let mut sigma_curve = vec![(0.0, f64::NAN); if images.is_empty() { 0 } else { opts.sigmas.len() }];
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(sigma_curve.len().max(1));
        let per = sigma_curve.len().div_ceil(threads.max(1)).max(1);
        std::thread::scope(|sc| -> Result<()> {
            let mut handles = Vec::new();
            for (chunk, sigmas) in sigma_curve.chunks_mut(per).zip(opts.sigmas.chunks(per)) {
                let images = &images;
                handles.push(sc.spawn(move || -> Result<()> {
                    for (slot, &s) in chunk.iter_mut().zip(sigmas) {
                        *slot = (s, gaussian_accuracy(images, s, draws, opts.seed)?);
                    }
                    Ok(())
                }));
            }
            for h in handles {
                h.join().map_err(|_| crate::Error::Invalid("a baseline thread stopped unexpectedly".into()))??;
            }
            Ok(())
        })?;
        let q = |k: usize| k as f64 / (QUANTILES - 1) as f64;
        let finish = |m: FastMap<String, GroupAcc>| {
            let mut v: Vec<GroupStats> = m.into_iter().map(|(k, g)| g.finish(k, opts)).collect();
            v.sort_by(|a, b| a.key.cmp(&b.key));
            v
        };
        // Page times go to the page's worker and HIT.
        let mut workers = self.workers;
        let mut hits = self.hits;
        let mut pages = FastMap::default();
        for (k, (w, h, mut g, t)) in self.pages {
            g.times.push(t);
            if let Some(w) = w.and_then(|w| workers.get_mut(&w)) {
                w.times.push(t);
            }
            if let Some(h) = h.and_then(|h| hits.get_mut(&h)) {
                h.times.push(t);
            }
            pages.insert(k, g);
        }
        Ok(ImagenetReport {
            coverage: self.coverage,
            click: self.click,
            centre: self.centre,
            click_where_centre_fails: self.fails,
            sigma_curve,
            last_n: self.last_n.into_iter().enumerate().map(|(n, r)| (n + 1, r)).collect(),
            trace_quantile: self.trace_q.into_iter().enumerate().map(|(k, r)| (q(k), r)).collect(),
            time_quantile: self.time_q.into_iter().enumerate().map(|(k, r)| (q(k), r)).collect(),
            box_hist: self.box_hist,
            box_mean: self.box_mean,
            centre_heat: self.centre_heat,
            click_heat: self.click_heat,
            workers: finish(workers),
            hits: finish(hits),
            pages: finish(pages),
        })
    }
}
