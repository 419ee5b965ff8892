//! The COCO-AB analyses, accumulated one record at a time.

use std::collections::{BTreeMap, HashMap};

use crate::analysis::{
    box_normalised, inside, reference_box, AnalysisOptions, GroupAcc, GroupStats, Hist2, Mean2, Rate,
};
use crate::analytics::NormBox;
use crate::coco::CocoRecord;
use crate::truth::CocoTruth;

/// Per-class recall and object size.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassRecall {
    /// Category name.
    pub class: String,
    /// Images containing the class that got an icon of it.
    pub recall: Rate,
    /// Mean object area of the class as a fraction of the image.
    pub mean_size: f64,
    /// Objects of the class (over the images analysed).
    pub objects: u64,
    /// Icons of the class inside one of its masks, out of its icons.
    pub precision: Rate,
}

/// Everything the COCO-AB analysis found.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoReport {
    /// Records read.
    pub records: u64,
    /// Records with at least one action.
    pub with_actions: u64,
    /// Records whose image is in the ground truth.
    pub matched: u64,
    /// Final icons (last `add` of each class) inside a mask of their class.
    pub precision: Rate,
    /// …inside a box of their class.
    pub box_precision: Rate,
    /// Per class, sorted by name.
    pub classes: Vec<ClassRecall>,
    /// Least-squares fit of recall on log10(mean size): (intercept, slope, R²).
    pub recall_fit: Option<(f64, f64, f64)>,
    /// Icons in box-normalised coordinates (class box containing the icon,
    /// else the nearest), over `[-0.5, 1.5]²`, 20 × 20.
    pub box_hist: Hist2,
    /// Mean box-normalised icon, over all and over those inside the box.
    pub box_mean: (Mean2, Mean2),
    /// Icons, image-normalised, 20 × 20.
    pub icon_heat: Hist2,
    /// Object box centres, image-normalised, 20 × 20.
    pub centre_heat: Hist2,
    /// Per-icon action sequences (`add`, `add-move`, `add-remove-add`, …;
    /// repeated moves count once), most frequent first.
    pub sequences: Vec<(String, u64)>,
    /// Per worker.
    pub workers: Vec<GroupStats>,
}

/// Streaming COCO-AB analysis against instance annotations.
pub struct CocoAnalysis<'a> {
    truth: &'a CocoTruth,
    opts: AnalysisOptions,
    records: u64,
    with_actions: u64,
    matched: u64,
    precision: Rate,
    box_precision: Rate,
    classes: BTreeMap<String, (Rate, f64, u64, Rate)>,
    box_hist: Hist2,
    box_mean: (Mean2, Mean2),
    icon_heat: Hist2,
    centre_heat: Hist2,
    sequences: HashMap<String, u64>,
    workers: HashMap<String, GroupAcc>,
}

/// The kinds of an icon's actions, with runs of `move` collapsed.
pub fn action_sequence<'r>(kinds: impl Iterator<Item = &'r str>) -> String {
    let mut out: Vec<&str> = Vec::new();
    for k in kinds {
        if k == "move" && out.last() == Some(&"move") {
            continue;
        }
        out.push(k);
    }
    out.join("-")
}

impl<'a> CocoAnalysis<'a> {
    /// A new analysis against `truth`.
    pub fn new(truth: &'a CocoTruth, opts: AnalysisOptions) -> Self {
        CocoAnalysis {
            truth,
            opts,
            records: 0,
            with_actions: 0,
            matched: 0,
            precision: Rate::default(),
            box_precision: Rate::default(),
            classes: BTreeMap::new(),
            box_hist: Hist2::new((-0.5, 1.5), (-0.5, 1.5), 20, 20),
            box_mean: (Mean2::default(), Mean2::default()),
            icon_heat: Hist2::new((0.0, 1.0), (0.0, 1.0), 20, 20),
            centre_heat: Hist2::new((0.0, 1.0), (0.0, 1.0), 20, 20),
            sequences: HashMap::new(),
            workers: HashMap::new(),
        }
    }

    /// Adds one record.
    pub fn add(&mut self, r: &CocoRecord) {
        self.records += 1;
        self.with_actions += !r.actions.is_empty() as u64;
        // Sequences per icon class, in order of first appearance.
        let mut per_icon: Vec<(&str, Vec<&str>)> = Vec::new();
        for a in &r.actions {
            match per_icon.iter_mut().find(|(c, _)| *c == a.icon) {
                Some(e) => e.1.push(&a.kind),
                None => per_icon.push((&a.icon, vec![&a.kind])),
            }
        }
        for (_, kinds) in &per_icon {
            *self.sequences.entry(action_sequence(kinds.iter().copied())).or_default() += 1;
        }
        let icons = r.last_add_points();
        for (_, p) in &icons {
            self.icon_heat.add(p.x, p.y);
        }
        let objects = self.truth.objects.get(&r.image_id);
        let known = self.truth.sizes.contains_key(&r.image_id);
        self.matched += known as u64;
        let worker = r.worker.as_ref().map(|w| {
            let g = self.workers.entry(w.clone()).or_default();
            g.images += 1;
            g.selected += icons.len() as u64;
            if let Some(t) = r.time_spent_ms {
                g.times.push(t);
            }
            w.clone()
        });
        if !known {
            return;
        }
        let objects: &[crate::truth::CocoObject] = objects.map(Vec::as_slice).unwrap_or(&[]);
        let mut present: BTreeMap<&str, Vec<&crate::truth::CocoObject>> = BTreeMap::new();
        for o in objects {
            present.entry(&o.category).or_default().push(o);
            self.centre_heat.add((o.bbox[0] + o.bbox[2]) / 2.0, (o.bbox[1] + o.bbox[3]) / 2.0);
        }
        for (class, objs) in &present {
            let e = self.classes.entry(class.to_string()).or_default();
            e.0.add(icons.iter().any(|(c, _)| c == class));
            e.1 += objs.iter().map(|o| o.area).sum::<f64>();
            e.2 += objs.len() as u64;
        }
        for (class, p) in &icons {
            let objs = present.get(class.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            let on_mask = objs.iter().any(|o| o.mask.contains(*p));
            self.precision.add(on_mask);
            self.classes.entry(class.clone()).or_default().3.add(on_mask);
            let boxes: Vec<NormBox> = objs.iter().map(|o| o.bbox).collect();
            let in_box = boxes.iter().any(|b| inside(*p, b));
            self.box_precision.add(in_box);
            if let Some(b) = reference_box(*p, &boxes) {
                if let Some((u, v)) = box_normalised(*p, b) {
                    self.box_hist.add(u, v);
                    self.box_mean.0.add(u, v);
                    if inside(*p, b) {
                        self.box_mean.1.add(u, v);
                    }
                }
            }
            if let Some(g) = worker.as_ref().and_then(|w| self.workers.get_mut(w)) {
                g.click(*p, Some(in_box), &self.opts);
            }
        }
    }

    /// The per-class table, the fit and the group table.
    pub fn finish(self) -> CocoReport {
        let opts = self.opts;
        let classes: Vec<ClassRecall> = self
            .classes
            .into_iter()
            .map(|(class, (recall, area, n, precision))| ClassRecall {
                class,
                recall,
                mean_size: if n == 0 { f64::NAN } else { area / n as f64 },
                objects: n,
                precision,
            })
            .collect();
        let pts: Vec<(f64, f64)> = classes
            .iter()
            .filter(|c| c.recall.total > 0 && c.mean_size > 0.0)
            .map(|c| (c.mean_size.log10(), c.recall.value()))
            .collect();
        let mut sequences: Vec<(String, u64)> = self.sequences.into_iter().collect();
        sequences.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut workers: Vec<GroupStats> = self.workers.into_iter().map(|(k, g)| g.finish(k, &opts)).collect();
        workers.sort_by(|a, b| a.key.cmp(&b.key));
        CocoReport {
            records: self.records,
            with_actions: self.with_actions,
            matched: self.matched,
            precision: self.precision,
            box_precision: self.box_precision,
            classes,
            recall_fit: labelscope_report::least_squares(&pts),
            box_hist: self.box_hist,
            box_mean: self.box_mean,
            icon_heat: self.icon_heat,
            centre_heat: self.centre_heat,
            sequences,
            workers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_collapse_moves() {
        assert_eq!(action_sequence(["add", "move", "move", "move"].into_iter()), "add-move");
        assert_eq!(action_sequence(["add", "remove", "add"].into_iter()), "add-remove-add");
        assert_eq!(action_sequence(["add"].into_iter()), "add");
    }
}
