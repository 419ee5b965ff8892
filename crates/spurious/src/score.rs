//! Summaries of per-image outcomes: accuracy and class-balanced accuracy
//! with intervals, mean true-class confidence.

use std::collections::BTreeMap;

use labelscope_core::metrics::intervals::clopper_pearson;

use crate::Result;

/// Per-image outcomes of one condition (an ablation, a noise region, …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    /// `(class, correct, true-class confidence)` per image.
    pub rows: Vec<(usize, bool, f64)>,
}

/// A summary of [`Outcomes`].
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Images.
    pub n: usize,
    /// Correct images.
    pub correct: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// 95 % Clopper–Pearson interval of the accuracy.
    pub interval: (f64, f64),
    /// Mean of the per-class accuracies (classes with at least one image).
    pub balanced_accuracy: f64,
    /// Mean true-class confidence (softmax probability).
    pub confidence: f64,
    /// Per class: `(n, correct, mean confidence)`.
    pub per_class: BTreeMap<usize, (usize, usize, f64)>,
}

impl Outcomes {
    /// Records one image.
    pub fn push(&mut self, class: usize, correct: bool, confidence: f64) {
        self.rows.push((class, correct, confidence));
    }

    /// The summary (`None` without images).
    pub fn summary(&self) -> Result<Option<Summary>> {
        let n = self.rows.len();
        if n == 0 {
            return Ok(None);
        }
        let correct = self.rows.iter().filter(|r| r.1).count();
        let mut per_class: BTreeMap<usize, (usize, usize, f64)> = BTreeMap::new();
        for &(c, ok, conf) in &self.rows {
            let e = per_class.entry(c).or_insert((0, 0, 0.0));
            e.0 += 1;
            e.1 += usize::from(ok);
            e.2 += conf;
        }
        for e in per_class.values_mut() {
            e.2 /= e.0 as f64;
        }
        let balanced = balanced_accuracy(&per_class);
        Ok(Some(Summary {
            n,
            correct,
            accuracy: correct as f64 / n as f64,
            interval: clopper_pearson(correct as u64, n as u64, 0.05)?,
            balanced_accuracy: balanced,
            confidence: self.rows.iter().map(|r| r.2).sum::<f64>() / n as f64,
            per_class,
        }))
    }
}

/// The mean of per-class accuracies `correct / n`.
pub fn balanced_accuracy(per_class: &BTreeMap<usize, (usize, usize, f64)>) -> f64 {
    if per_class.is_empty() {
        return 0.0;
    }
    per_class.values().map(|&(n, k, _)| k as f64 / n as f64).sum::<f64>() / per_class.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_accuracy_weighs_classes_equally() {
        let mut o = Outcomes::default();
        // Class 0: 9 of 10 right; class 1: 0 of 2.
        for i in 0..10 {
            o.push(0, i < 9, 0.8);
        }
        o.push(1, false, 0.1);
        o.push(1, false, 0.3);
        let s = o.summary().unwrap().unwrap();
        assert_eq!((s.n, s.correct), (12, 9));
        assert!((s.accuracy - 0.75).abs() < 1e-12);
        assert!((s.balanced_accuracy - 0.45).abs() < 1e-12);
        assert!((s.confidence - (8.0 + 0.4) / 12.0).abs() < 1e-12);
        assert_eq!(s.per_class[&1], (2, 0, 0.2));
        assert!(s.interval.0 < 0.75 && s.interval.1 > 0.75);
        assert!(Outcomes::default().summary().unwrap().is_none());
    }
}
