//! Label-set analyses: comparing two label sources image by image, and
//! class co-occurrence statistics (candidates for ambiguous class pairs such
//! as synonyms and part–whole relations).

use std::collections::HashMap;

use serde::Serialize;

use crate::ids::join_key;
use crate::labels::LabelSets;

/// How the label sets of one image in sources A and B relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Relation {
    /// B's set is empty (B has no valid label for the image).
    BEmpty,
    /// Both sets are equal.
    Exact,
    /// A's set strictly contains B's.
    ASupersetOfB,
    /// B's set strictly contains A's (including an empty A).
    BSupersetOfA,
    /// Neither contains the other: they share some classes, or none at all (`disjoint` counts those).
    Partial,
}

impl Relation {
    /// The five relations in report order.
    pub const ALL: [Relation; 5] =
        [Relation::BEmpty, Relation::Exact, Relation::ASupersetOfB, Relation::BSupersetOfA, Relation::Partial];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Relation::BEmpty => "B empty",
            Relation::Exact => "exact match",
            Relation::ASupersetOfB => "A \u{2283} B",
            Relation::BSupersetOfA => "B \u{2283} A",
            Relation::Partial => "partial overlap",
        }
    }

    /// Classifies a pair of sorted sets.
    pub fn of(a: &[u32], b: &[u32]) -> Relation {
        if b.is_empty() {
            return Relation::BEmpty;
        }
        if a == b {
            return Relation::Exact;
        }
        let a_has_b = b.iter().all(|x| a.binary_search(x).is_ok());
        if a_has_b {
            return Relation::ASupersetOfB;
        }
        let b_has_a = a.iter().all(|x| b.binary_search(x).is_ok());
        if b_has_a {
            Relation::BSupersetOfA
        } else {
            Relation::Partial
        }
    }
}

/// One group of a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct RelationGroup {
    /// The relation.
    pub relation: Relation,
    /// Display name of the relation.
    pub name: &'static str,
    /// Number of images.
    pub count: u64,
    /// Share of the compared images.
    pub share: f64,
    /// Classes most often involved, as (class, images): for `B empty` and
    /// `exact match` the classes of A; for `A ⊃ B` the extra classes of A; for
    /// `B ⊃ A` the extra classes of B; for `partial overlap` the classes in
    /// exactly one of the two sets.
    pub top_classes: Vec<(u32, u64)>,
}

/// The comparison of two label sources.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Images present in both sources.
    pub compared: u64,
    /// Images only in A.
    pub only_a: u64,
    /// Images only in B.
    pub only_b: u64,
    /// The five groups in [`Relation::ALL`] order.
    pub groups: Vec<RelationGroup>,
    /// Images in the partial group whose sets share no class.
    pub disjoint: u64,
}

/// Compares label sources A and B image by image (joined by image id).
pub fn compare(a: &LabelSets, b: &LabelSets, top: usize) -> Comparison {
    let mut counts: HashMap<Relation, (u64, HashMap<u32, u64>)> = HashMap::new();
    let mut compared = 0;
    let mut disjoint = 0;
    for (name, sa) in a.names.iter().zip(&a.sets) {
        let Some(sb) = b.get(name) else { continue };
        compared += 1;
        let rel = Relation::of(sa, sb);
        let entry = counts.entry(rel).or_default();
        entry.0 += 1;
        let involved: Vec<u32> = match rel {
            Relation::BEmpty | Relation::Exact => sa.clone(),
            Relation::ASupersetOfB => sa.iter().filter(|x| sb.binary_search(x).is_err()).copied().collect(),
            Relation::BSupersetOfA => sb.iter().filter(|x| sa.binary_search(x).is_err()).copied().collect(),
            Relation::Partial => {
                if sa.iter().all(|x| sb.binary_search(x).is_err()) {
                    disjoint += 1;
                }
                sa.iter()
                    .filter(|x| sb.binary_search(x).is_err())
                    .chain(sb.iter().filter(|x| sa.binary_search(x).is_err()))
                    .copied()
                    .collect()
            }
        };
        for c in involved {
            *entry.1.entry(c).or_default() += 1;
        }
    }
    let b_keys = b.names.iter().filter(|n| a.position(join_key(n)).is_none()).count() as u64;
    let groups = Relation::ALL
        .iter()
        .map(|&rel| {
            let (count, classes) = counts.remove(&rel).unwrap_or_default();
            let mut tc: Vec<(u32, u64)> = classes.into_iter().collect();
            tc.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            tc.truncate(top);
            RelationGroup {
                relation: rel,
                name: rel.name(),
                count,
                share: if compared > 0 { count as f64 / compared as f64 } else { 0.0 },
                top_classes: tc,
            }
        })
        .collect();
    Comparison { compared, only_a: a.len() as u64 - compared, only_b: b_keys, groups, disjoint }
}

/// One class pair of a co-occurrence table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cooccurrence {
    /// The smaller class index.
    pub a: u32,
    /// The larger class index.
    pub b: u32,
    /// Images whose set holds both.
    pub count: u64,
    /// Images whose set holds `a`.
    pub freq_a: u64,
    /// Images whose set holds `b`.
    pub freq_b: u64,
    /// `count / freq_b`: how often `a` appears when `b` does.
    pub conf_a_given_b: f64,
    /// `count / freq_a`: how often `b` appears when `a` does.
    pub conf_b_given_a: f64,
}

/// Class-pair co-occurrence counts over all images, pairs with
/// `count >= min_count`, sorted by count (descending), then by the larger
/// of the two confidences (descending), then by (a, b).
pub fn cooccurrence(sets: &[Vec<u32>], min_count: u64) -> Vec<Cooccurrence> {
    let mut freq: HashMap<u32, u64> = HashMap::new();
    let mut pairs: HashMap<(u32, u32), u64> = HashMap::new();
    for s in sets {
        for (i, &x) in s.iter().enumerate() {
            *freq.entry(x).or_default() += 1;
            for &y in &s[i + 1..] {
                *pairs.entry((x.min(y), x.max(y))).or_default() += 1;
            }
        }
    }
    let mut out: Vec<Cooccurrence> = pairs
        .into_iter()
        .filter(|&(_, c)| c >= min_count.max(1))
        .map(|((a, b), count)| {
            let fa = freq[&a];
            let fb = freq[&b];
            Cooccurrence {
                a,
                b,
                count,
                freq_a: fa,
                freq_b: fb,
                conf_a_given_b: count as f64 / fb as f64,
                conf_b_given_a: count as f64 / fa as f64,
            }
        })
        .collect();
    out.sort_by(|x, y| {
        y.count
            .cmp(&x.count)
            .then(y.conf_a_given_b.max(y.conf_b_given_a).total_cmp(&x.conf_a_given_b.max(x.conf_b_given_a)))
            .then((x.a, x.b).cmp(&(y.a, y.b)))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::LabelFormat;
    use std::path::Path;

    fn ls(names: &[&str], sets: Vec<Vec<u32>>) -> LabelSets {
        LabelSets::new(Path::new("x"), LabelFormat::GenericJson, names.iter().map(|s| s.to_string()).collect(), sets)
            .unwrap()
    }

    #[test]
    fn relations_by_hand() {
        assert_eq!(Relation::of(&[1], &[]), Relation::BEmpty);
        assert_eq!(Relation::of(&[1, 2], &[1, 2]), Relation::Exact);
        assert_eq!(Relation::of(&[1, 2], &[2]), Relation::ASupersetOfB);
        assert_eq!(Relation::of(&[], &[2]), Relation::BSupersetOfA);
        assert_eq!(Relation::of(&[1, 3], &[1, 2]), Relation::Partial);
        assert_eq!(Relation::of(&[4], &[2]), Relation::Partial);
    }

    #[test]
    fn compare_counts() {
        let a =
            ls(&["i1", "i2", "i3", "i4", "i5", "onlya"], vec![vec![1], vec![1, 2], vec![2], vec![3], vec![5], vec![9]]);
        let b = ls(
            &["i1.jpg", "i2", "i3", "i4", "i5", "onlyb"],
            vec![vec![], vec![1], vec![2, 7], vec![3], vec![6], vec![9]],
        );
        let c = compare(&a, &b, 5);
        assert_eq!((c.compared, c.only_a, c.only_b, c.disjoint), (5, 1, 1, 1));
        let counts: Vec<u64> = c.groups.iter().map(|g| g.count).collect();
        assert_eq!(counts, vec![1, 1, 1, 1, 1]);
        assert_eq!(c.groups[2].top_classes, vec![(2, 1)]); // A ⊃ B: extra class 2
        assert_eq!(c.groups[3].top_classes, vec![(7, 1)]); // B ⊃ A: extra class 7
        assert_eq!(c.groups[4].top_classes, vec![(5, 1), (6, 1)]);
        assert!((c.groups[0].share - 0.2).abs() < 1e-12);
    }

    #[test]
    fn cooccurrence_by_hand() {
        let sets = vec![vec![1, 2], vec![1, 2, 3], vec![1], vec![2, 3], vec![]];
        let r = cooccurrence(&sets, 1);
        assert_eq!(r.len(), 3);
        // (2,3): count 2, freq 3 and 2 -> conf(2|3) = 1.0, so it ranks before (1,2) whose best confidence is 2/3
        assert_eq!((r[0].a, r[0].b, r[0].count, r[0].freq_a, r[0].freq_b), (2, 3, 2, 3, 2));
        assert_eq!(r[0].conf_a_given_b, 1.0);
        assert!((r[0].conf_b_given_a - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!((r[1].a, r[1].b, r[1].count, r[1].freq_a, r[1].freq_b), (1, 2, 2, 3, 3));
        assert_eq!((r[2].a, r[2].b, r[2].count), (1, 3, 1));
        assert_eq!(cooccurrence(&sets, 2).len(), 2);
    }
}
