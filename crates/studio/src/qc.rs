//! Quality control of HITs: the rejection rules of the ImageNet,
//! ImageNetV2 and COCO collections, configurable.
//!
//! An assignment is rejected when any rule fails:
//!
//! * (browse) recall on known-positive images below `min_known_recall`
//!   (0.333);
//! * (browse) fewer selections than `min_selection_rate` of the candidates
//!   shown (ImageNetV2: fewer than 30 of 480 candidates, i.e. 0.0625);
//! * fewer pages completed than `min_pages_fraction` of the HIT's pages
//!   (browse 9 of 10 → 0.9; tag 16 of 20 → 0.8; [`QcRules::for_task`]);
//! * accuracy on gold (attention-check) answers below `min_gold_accuracy`
//!   (0.75): browse images marked `gold: true/false` must be selected / left
//!   alone, verify labels with a gold answer must get it (maybe counts as
//!   wrong);
//! * accuracy against known objects below `min_object_accuracy` (0.75):
//!   tag icons must lie on a known object (mask or box) of their category;
//!   region boxes must overlap a known object of their label with IoU ≥ 0.5.
//!
//! A rule about something the assignment never saw (no known positives, no
//! gold, no known objects) does not apply.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::db::{AssignmentRow, Db, ExportRow};
use crate::manifest::{ImageExtra, Task};
use crate::{Error, Result};

/// Thresholds of the rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QcRules {
    /// Least recall on known-positive images.
    pub min_known_recall: f64,
    /// Least selections per candidate shown.
    pub min_selection_rate: f64,
    /// Least fraction of the HIT's pages completed.
    pub min_pages_fraction: f64,
    /// Least accuracy on gold answers.
    pub min_gold_accuracy: f64,
    /// Least accuracy against known objects (tag icons, region boxes).
    pub min_object_accuracy: f64,
}

impl Default for QcRules {
    fn default() -> Self {
        QcRules {
            min_known_recall: 0.333,
            min_selection_rate: 30.0 / 480.0,
            min_pages_fraction: 0.9,
            min_gold_accuracy: 0.75,
            min_object_accuracy: 0.75,
        }
    }
}

impl QcRules {
    /// The published defaults for a task (tag: 16 of 20 pages).
    pub fn for_task(task: Task) -> QcRules {
        match task {
            Task::Tag => QcRules { min_pages_fraction: 0.8, ..QcRules::default() },
            _ => QcRules::default(),
        }
    }

    /// Checks that every threshold is in [0, 1].
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("min_known_recall", self.min_known_recall),
            ("min_selection_rate", self.min_selection_rate),
            ("min_pages_fraction", self.min_pages_fraction),
            ("min_gold_accuracy", self.min_gold_accuracy),
            ("min_object_accuracy", self.min_object_accuracy),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Invalid(format!("{name} is {v}; expected a number from 0 to 1")));
            }
        }
        Ok(())
    }
}

/// The verdict on one assignment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Assignment id.
    pub assignment: i64,
    /// HIT position in the project.
    pub hit: i64,
    /// Keyed hash of the worker id.
    pub worker: String,
    /// Pages completed / pages of the HIT.
    pub pages: (i64, i64),
    /// Selections / candidates shown.
    pub selections: (i64, i64),
    /// Known positives selected / shown.
    pub known: (i64, i64),
    /// Gold answers right / asked.
    pub gold: (i64, i64),
    /// Icons or boxes on a known object / placed on images with known objects.
    pub objects: (i64, i64),
    /// Whether the assignment passes every rule.
    pub accepted: bool,
    /// The failed rules, in words.
    pub reasons: Vec<String>,
}

/// What an assignment's records scored on the checks with known answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checks {
    /// Gold answers right / asked.
    pub gold: (i64, i64),
    /// On a known object / checked against known objects.
    pub objects: (i64, i64),
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Scores one stored record of `task` against its image's gold answers and
/// known objects, adding to `c`.
pub fn check_record(task: Task, selected: bool, data: &Value, extra: &ImageExtra, c: &mut Checks) {
    let size = |k: &str| data["originalSize"][k].as_f64().unwrap_or(1.0).max(1.0);
    match task {
        Task::Browse => {
            if let Some(g) = extra.gold_selected {
                c.gold.1 += 1;
                c.gold.0 += i64::from(selected == g);
            }
        }
        Task::Verify => {
            for (label, want) in &extra.gold_answers {
                c.gold.1 += 1;
                let got = data["answers"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["label"] == label.as_str()))
                    .and_then(|x| x["answer"].as_str());
                c.gold.0 += i64::from(got == Some(want.as_str()));
            }
        }
        Task::Tag if !extra.objects.is_empty() => {
            let (w, h) = (size("width"), size("height"));
            for icon in data["icons"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let (Some(cat), Some(x), Some(y)) = (icon["iconType"].as_str(), icon["x"].as_f64(), icon["y"].as_f64())
                else {
                    continue;
                };
                c.objects.1 += 1;
                let hit = extra.objects.iter().any(|o| o.category == cat && o.contains(x, y, w, h));
                c.objects.0 += i64::from(hit);
            }
        }
        Task::Region if !extra.objects.is_empty() => {
            let (w, h) = (size("width"), size("height"));
            for r in data["regions"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let b = &r["box"];
                let bx = [&b["x0"], &b["y0"], &b["x1"], &b["y1"]].map(|v| v.as_f64().unwrap_or(0.0));
                c.objects.1 += 1;
                let label = r["label"].as_str().unwrap_or_default();
                let hit = extra.objects.iter().any(|o| o.category == label && iou(bx, o.normalised_box(w, h)) >= 0.5);
                c.objects.0 += i64::from(hit);
            }
        }
        Task::Label => {
            if !extra.gold_labels.is_empty() {
                c.gold.1 += 1;
                let got = data["label"].as_str().unwrap_or_default();
                c.gold.0 += i64::from(extra.gold_labels.iter().any(|g| g == got));
            }
        }
        Task::Tag | Task::Region => {}
    }
}

/// The [`Checks`] of every assignment, from the stored records.
pub fn assignment_checks(task: Task, rows: &[ExportRow]) -> Result<BTreeMap<i64, Checks>> {
    let mut out: BTreeMap<i64, Checks> = BTreeMap::new();
    for r in rows {
        let data: Value = serde_json::from_str(&r.data)
            .map_err(|e| Error::Schema(format!("stored record of image {:?} is unreadable: {e}", r.image)))?;
        let extra = ImageExtra::from_stored(r.extra.as_deref());
        check_record(task, r.selected, &data, &extra, out.entry(r.assignment).or_default());
    }
    Ok(out)
}

fn rate_rule(reasons: &mut Vec<String>, what: &str, (right, total): (i64, i64), min: f64) {
    if total > 0 {
        let acc = right as f64 / total as f64;
        if acc < min {
            reasons.push(format!("{what} {acc:.3} ({right} of {total}) < {min}"));
        }
    }
}

/// Applies the rules to one assignment's totals and checks.
pub fn judge(a: &AssignmentRow, checks: &Checks, task: Task, rules: &QcRules) -> Verdict {
    let mut reasons = Vec::new();
    if task == Task::Browse && a.known_shown > 0 {
        let recall = a.known_selected as f64 / a.known_shown as f64;
        if recall < rules.min_known_recall {
            reasons.push(format!(
                "recall on known positives {recall:.3} ({} of {}) < {}",
                a.known_selected, a.known_shown, rules.min_known_recall
            ));
        }
    }
    let needed = rules.min_selection_rate * a.shown as f64;
    if task == Task::Browse && (a.selected as f64) < needed {
        reasons.push(format!("{} selections of {} candidates < {needed:.1}", a.selected, a.shown));
    }
    let pages_needed = rules.min_pages_fraction * a.hit_pages as f64;
    if (a.pages as f64) < pages_needed - 1e-9 {
        reasons.push(format!("{} of {} pages completed < {pages_needed:.1}", a.pages, a.hit_pages));
    }
    rate_rule(&mut reasons, "accuracy on gold answers", checks.gold, rules.min_gold_accuracy);
    let what = if task == Task::Region { "box accuracy on known objects" } else { "icon localisation accuracy" };
    rate_rule(&mut reasons, what, checks.objects, rules.min_object_accuracy);
    Verdict {
        assignment: a.assignment,
        hit: a.hit,
        worker: a.worker.clone(),
        pages: (a.pages, a.hit_pages),
        selections: (a.selected, a.shown),
        known: (a.known_selected, a.known_shown),
        gold: checks.gold,
        objects: checks.objects,
        accepted: reasons.is_empty(),
        reasons,
    }
}

/// The task of the project called `project`, and its id.
pub async fn project_task(db: &Db, project: &str) -> Result<(i64, Task)> {
    let (pid, task) = db
        .project_by_name(project)
        .await?
        .ok_or_else(|| Error::Invalid(format!("no project named {project:?} in the database")))?;
    let task =
        Task::parse(&task).ok_or_else(|| Error::Schema(format!("project {project:?} has unknown task {task:?}")))?;
    Ok((pid, task))
}

/// The verdicts on every assignment of a project; `rules` of `None` take
/// the task's defaults ([`QcRules::for_task`]).
pub async fn project_verdicts(db: &Db, project: &str, rules: Option<&QcRules>) -> Result<Vec<Verdict>> {
    let (pid, task) = project_task(db, project).await?;
    let rules = rules.copied().unwrap_or_else(|| QcRules::for_task(task));
    rules.validate()?;
    let checks = assignment_checks(task, &db.export_rows(pid).await?)?;
    Ok(db
        .assignment_stats(pid)
        .await?
        .iter()
        .map(|a| judge(a, checks.get(&a.assignment).unwrap_or(&Checks::default()), task, &rules))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pages: i64, shown: i64, selected: i64, known_shown: i64, known_selected: i64) -> AssignmentRow {
        AssignmentRow {
            assignment: 1,
            hit: 0,
            worker: "w".into(),
            hit_pages: 10,
            pages,
            shown,
            selected,
            known_shown,
            known_selected,
        }
    }

    fn judge_b(a: &AssignmentRow, r: &QcRules) -> Verdict {
        judge(a, &Checks::default(), Task::Browse, r)
    }

    #[test]
    fn the_imagenet_rules() {
        let r = QcRules::default();
        // 10 pages of 48, 30 selections, 2 of 5 known positives: accepted (30/480 exactly, 0.4 >= 0.333).
        assert!(judge_b(&row(10, 480, 30, 5, 2), &r).accepted);
        // 29 selections of 480: rejected for that reason only.
        let v = judge_b(&row(10, 480, 29, 5, 2), &r);
        assert_eq!(v.reasons.len(), 1);
        assert!(v.reasons[0].contains("29 selections of 480"), "{:?}", v.reasons);
        // 1 of 5 known positives (0.2): rejected.
        let v = judge_b(&row(10, 480, 100, 5, 1), &r);
        assert!(!v.accepted && v.reasons[0].contains("recall on known positives 0.200"));
        // 9 of 10 pages is enough, 8 is not.
        assert!(judge_b(&row(9, 432, 40, 0, 0), &r).accepted);
        let v = judge_b(&row(8, 384, 40, 0, 0), &r);
        assert!(!v.accepted && v.reasons[0].contains("8 of 10 pages"));
        // No known positives shown: the recall rule does not apply.
        assert!(judge_b(&row(10, 480, 31, 0, 0), &r).accepted);
        // Everything fails at once.
        assert_eq!(judge_b(&row(0, 0, 0, 0, 0), &r).reasons.len(), 1);
        assert_eq!(judge_b(&row(2, 96, 0, 4, 0), &r).reasons.len(), 3);
    }

    #[test]
    fn rules_are_checked() {
        let bad = QcRules { min_known_recall: 1.5, ..QcRules::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("min_known_recall"));
    }

    #[test]
    fn tag_pages_gold_and_object_rules() {
        let r = QcRules::for_task(Task::Tag);
        let mut a = row(16, 16, 3, 0, 0);
        a.hit_pages = 20;
        // 16 of 20 pages is enough; the browse selection rule does not apply.
        assert!(judge(&a, &Checks::default(), Task::Tag, &r).accepted);
        a.pages = 15;
        let v = judge(&a, &Checks::default(), Task::Tag, &r);
        assert_eq!(v.reasons, vec!["15 of 20 pages completed < 16.0".to_string()]);
        a.pages = 20;
        assert!(judge(&a, &Checks { gold: (0, 0), objects: (3, 4) }, Task::Tag, &r).accepted);
        let v = judge(&a, &Checks { gold: (0, 0), objects: (2, 3) }, Task::Tag, &r);
        assert_eq!(v.reasons, vec!["icon localisation accuracy 0.667 (2 of 3) < 0.75".to_string()]);
        let v = judge(&a, &Checks { gold: (1, 2), objects: (0, 0) }, Task::Verify, &QcRules::default());
        assert!(v.reasons.iter().any(|m| m == "accuracy on gold answers 0.500 (1 of 2) < 0.75"), "{:?}", v.reasons);
    }

    #[test]
    fn records_are_scored_against_known_objects_and_gold() {
        use crate::manifest::{KnownObject, Shape};
        use labelscope_core::rle::Rle;
        use serde_json::json;
        // A 4 x 4 mask whose only pixel is row 0, column 3 (row-major input).
        let mut m = vec![false; 16];
        m[3] = true;
        let counts = Rle::encode(&m, 4, 4).unwrap().to_counts_string();
        let extra = ImageExtra {
            objects: vec![
                KnownObject { category: "dog".into(), shape: Shape::Box([100.0, 200.0, 300.0, 300.0]) },
                KnownObject { category: "cat".into(), shape: Shape::Mask(4, 4, counts) },
            ],
            ..ImageExtra::default()
        };
        let data = json!({"originalSize": {"width": 640, "height": 480}, "icons": [
            {"iconType": "dog", "x": 0.25, "y": 0.5},   // (160, 240): inside the dog box
            {"iconType": "cat", "x": 0.9, "y": 0.1},    // column 3, row 0: on the cat mask
            {"iconType": "cat", "x": 0.1, "y": 0.1},    // not scored twice in practice; here: off the mask
            {"iconType": "dog", "x": 0.9, "y": 0.9},    // outside the box
            {"iconType": "person", "x": 0.5, "y": 0.5}  // no known person
        ]});
        let mut c = Checks::default();
        check_record(Task::Tag, true, &data, &extra, &mut c);
        assert_eq!(c.objects, (2, 5));
        // Regions: IoU with the dog box [100/640, 200/480, 300/640, 300/480].
        let region =
            |l: &str, b: [f64; 4]| json!({"label": l, "box": {"x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3]}});
        let data = json!({"originalSize": {"width": 640, "height": 480}, "regions": [
            region("dog", [100.0 / 640.0, 200.0 / 480.0, 300.0 / 640.0, 300.0 / 480.0]),  // IoU 1
            region("dog", [100.0 / 640.0, 200.0 / 480.0, 200.0 / 640.0, 300.0 / 480.0]),  // IoU 0.5
            region("dog", [100.0 / 640.0, 200.0 / 480.0, 190.0 / 640.0, 300.0 / 480.0]),  // IoU 0.45
            region("cat", [0.75, 0.0, 1.0, 0.25])                                           // the cat pixel's box
        ]});
        let mut c = Checks::default();
        check_record(Task::Region, true, &data, &extra, &mut c);
        assert_eq!(c.objects, (3, 4));
        // Gold: browse selection and verify answers (maybe is wrong).
        let gold = ImageExtra { gold_selected: Some(false), ..ImageExtra::default() };
        let mut c = Checks::default();
        check_record(Task::Browse, true, &json!({}), &gold, &mut c);
        check_record(Task::Browse, false, &json!({}), &gold, &mut c);
        assert_eq!(c.gold, (1, 2));
        let mut gold = ImageExtra::default();
        gold.gold_answers.insert("n1".into(), "yes".into());
        gold.gold_answers.insert("n2".into(), "no".into());
        let data = json!({"answers": [{"label": "n1", "answer": "yes"}, {"label": "n2", "answer": "maybe"}]});
        let mut c = Checks::default();
        check_record(Task::Verify, true, &data, &gold, &mut c);
        assert_eq!(c.gold, (1, 2));
    }
}
