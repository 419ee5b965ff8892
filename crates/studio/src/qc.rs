//! Quality control of HITs: the rejection rules of the ImageNet and
//! ImageNetV2 collection, configurable.
//!
//! An assignment is rejected when any rule fails:
//!
//! * recall on known-positive images below `min_known_recall` (0.333);
//! * fewer selections than `min_selection_rate` of the candidates shown
//!   (ImageNetV2: fewer than 30 of 480 candidates, i.e. 0.0625);
//! * fewer pages completed than `min_pages_fraction` of the HIT's pages
//!   (9 of 10 → 0.9).
//!
//! The recall rule applies only when the assignment saw known positives.

use serde::Serialize;

use crate::db::{AssignmentRow, Db};
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
}

impl Default for QcRules {
    fn default() -> Self {
        QcRules { min_known_recall: 0.333, min_selection_rate: 30.0 / 480.0, min_pages_fraction: 0.9 }
    }
}

impl QcRules {
    /// Checks that every threshold is in [0, 1].
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("min_known_recall", self.min_known_recall),
            ("min_selection_rate", self.min_selection_rate),
            ("min_pages_fraction", self.min_pages_fraction),
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
    /// Whether the assignment passes every rule.
    pub accepted: bool,
    /// The failed rules, in words.
    pub reasons: Vec<String>,
}

/// Applies the rules to one assignment's totals.
pub fn judge(a: &AssignmentRow, rules: &QcRules) -> Verdict {
    let mut reasons = Vec::new();
    if a.known_shown > 0 {
        let recall = a.known_selected as f64 / a.known_shown as f64;
        if recall < rules.min_known_recall {
            reasons.push(format!(
                "recall on known positives {recall:.3} ({} of {}) < {}",
                a.known_selected, a.known_shown, rules.min_known_recall
            ));
        }
    }
    let needed = rules.min_selection_rate * a.shown as f64;
    if (a.selected as f64) < needed {
        reasons.push(format!("{} selections of {} candidates < {needed:.1}", a.selected, a.shown));
    }
    let pages_needed = rules.min_pages_fraction * a.hit_pages as f64;
    if (a.pages as f64) < pages_needed - 1e-9 {
        reasons.push(format!("{} of {} pages completed < {pages_needed:.1}", a.pages, a.hit_pages));
    }
    Verdict {
        assignment: a.assignment,
        hit: a.hit,
        worker: a.worker.clone(),
        pages: (a.pages, a.hit_pages),
        selections: (a.selected, a.shown),
        known: (a.known_selected, a.known_shown),
        accepted: reasons.is_empty(),
        reasons,
    }
}

/// The verdicts on every assignment of a project.
pub async fn project_verdicts(db: &Db, project: &str, rules: &QcRules) -> Result<Vec<Verdict>> {
    rules.validate()?;
    let (pid, _) = db
        .project_by_name(project)
        .await?
        .ok_or_else(|| Error::Invalid(format!("no project named {project:?} in the database")))?;
    Ok(db.assignment_stats(pid).await?.iter().map(|a| judge(a, rules)).collect())
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

    #[test]
    fn the_imagenet_rules() {
        let r = QcRules::default();
        // 10 pages of 48, 30 selections, 2 of 5 known positives: accepted (30/480 exactly, 0.4 >= 0.333).
        assert!(judge(&row(10, 480, 30, 5, 2), &r).accepted);
        // 29 selections of 480: rejected for that reason only.
        let v = judge(&row(10, 480, 29, 5, 2), &r);
        assert_eq!(v.reasons.len(), 1);
        assert!(v.reasons[0].contains("29 selections of 480"), "{:?}", v.reasons);
        // 1 of 5 known positives (0.2): rejected.
        let v = judge(&row(10, 480, 100, 5, 1), &r);
        assert!(!v.accepted && v.reasons[0].contains("recall on known positives 0.200"));
        // 9 of 10 pages is enough, 8 is not.
        assert!(judge(&row(9, 432, 40, 0, 0), &r).accepted);
        let v = judge(&row(8, 384, 40, 0, 0), &r);
        assert!(!v.accepted && v.reasons[0].contains("8 of 10 pages"));
        // No known positives shown: the recall rule does not apply.
        assert!(judge(&row(10, 480, 31, 0, 0), &r).accepted);
        // Everything fails at once.
        assert_eq!(judge(&row(0, 0, 0, 0, 0), &r).reasons.len(), 1);
        assert_eq!(judge(&row(2, 96, 0, 4, 0), &r).reasons.len(), 3);
    }

    #[test]
    fn rules_are_checked() {
        let bad = QcRules { min_known_recall: 1.5, ..QcRules::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("min_known_recall"));
    }
}
