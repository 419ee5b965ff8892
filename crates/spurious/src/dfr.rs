//! Deep feature reweighting (DFR; Kirichenko et al. 2023, as used in Hard
//! ImageNet's appendix): retrain only the last layer on a subset balanced
//! between images where the model's spurious cue helps and images where it
//! does not. This module picks that subset; the CLI trains the layer
//! (multinomial logistic regression on cached penultimate features).
//!
//! Per class, the images are ranked by a score (for example the GradCAM
//! IoU with the object mask, or the confidence lost under Tile ablation:
//! anything that separates "right for the object" from "right for the
//! background"); the `k` highest and `k` lowest are kept (all of a class's
//! images when it has at most `2k`). Ties keep the input order. Images
//! without a score are left out and counted.

use std::collections::BTreeMap;

/// What [`balanced_subset`] chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    /// Chosen rows, ascending.
    pub rows: Vec<usize>,
    /// Per class: (images with a score, images chosen).
    pub per_class: BTreeMap<usize, (usize, usize)>,
    /// Rows left out for want of a score.
    pub unscored: usize,
}

/// The `k` top- and `k` bottom-scored rows of every class (module docs).
/// `classes[i]` and `scores[i]` describe row `i`.
pub fn balanced_subset(classes: &[usize], scores: &[Option<f64>], k: usize) -> Subset {
    let mut by_class: BTreeMap<usize, Vec<(f64, usize)>> = BTreeMap::new();
    let mut unscored = 0;
    for (i, (&c, s)) in classes.iter().zip(scores).enumerate() {
        match s {
            Some(v) if v.is_finite() => by_class.entry(c).or_default().push((*v, i)),
            _ => unscored += 1,
        }
    }
    let mut rows = Vec::new();
    let mut per_class = BTreeMap::new();
    for (c, mut list) in by_class {
        let n = list.len();
        // Stable: ties keep the input order.
        list.sort_by(|a, b| b.0.total_cmp(&a.0));
        let chosen: Vec<usize> = if n <= 2 * k {
            list.iter().map(|x| x.1).collect()
        } else {
            list[..k].iter().chain(&list[n - k..]).map(|x| x.1).collect()
        };
        per_class.insert(c, (n, chosen.len()));
        rows.extend(chosen);
    }
    rows.sort_unstable();
    Subset { rows, per_class, unscored }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_and_bottom_per_class() {
        let classes = [0, 0, 0, 0, 0, 1, 1, 1, 0];
        let scores =
            [Some(0.9), Some(0.1), Some(0.5), Some(0.7), None, Some(1.0), Some(2.0), Some(f64::NAN), Some(0.3)];
        let s = balanced_subset(&classes, &scores, 1);
        // Class 0 scored rows 0 (0.9), 1 (0.1), 2, 3, 8 -> top row 0, bottom row 1; class 1 has 2 -> both.
        assert_eq!(s.rows, vec![0, 1, 5, 6]);
        assert_eq!(s.per_class[&0], (5, 2));
        assert_eq!(s.per_class[&1], (2, 2));
        assert_eq!(s.unscored, 2);
        let s = balanced_subset(&classes, &scores, 2);
        assert_eq!(s.rows, vec![0, 1, 3, 5, 6, 8]);
    }
}
