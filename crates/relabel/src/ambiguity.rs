//! Ambiguous class pairs (synonyms, part–whole) and the two fixes for them.
//!
//! # Calibration counts
//! [`Calibration::from_sets`] counts, over a calibration label set (for
//! example ImageNet-ReaL; each image's set is de-duplicated first, empty sets
//! count as images with no class), `N_a` = images whose set holds `a` and
//! `N_ab` = images holding both `a` and `b` (pair counts come from
//! [`labelscope_core::analysis::cooccurrence`]).
//!
//! # Candidate pairs
//! [`Calibration::candidate_pairs`] lists the pairs with `N_ab ≥ min_count`
//! ranked by the overlap score `N_ab / min(N_a, N_b)` (1 when one class
//! never appears without the other), decreasing, ties by larger `N_ab`, then
//! by `(a, b)`; pairs scoring below `min_score` are left out. Each pair
//! carries `P(a|b) = N_ab / N_b` and `P(b|a) = N_ab / N_a`.
//!
//! # (a) Co-occurrence prior propagation
//! [`Prior`] is the matrix `C` restricted to the listed pairs:
//! `C[a][a] = 1`, `C[a][b] = P(a|b)` and `C[b][a] = P(b|a)` for each listed
//! pair, all other entries 0. [`Prior::propagate`] returns
//! `p' = clip(C·p, 0, 1)`, i.e. `p'_a = min(1, p_a + Σ_b C[a][b] p_b)`,
//! computed from the input `p` only (no chaining through several pairs).
//!
//! # (b) Asymmetric threshold pairing
//! `P(a|b)` and `P(b|a)` come from the calibration set; `N_a`, `N_b`,
//! `N_ab` are counts in the dataset being relabeled, from its current labels:
//! an image holds a class when its soft label value is `≥ present`
//! (default 0.5). `M_a` is the number of a-only images (holding `a`, not `b`)
//! that must also get `b` so that the dataset's `P(a|b)` matches the
//! calibration one: `P(a|b) = (N_ab + M_a)/(N_b + M_a)`, so
//! `M_a = (P(a|b)·N_b − N_ab)/(1 − P(a|b))`; symmetrically
//! `M_b = (P(b|a)·N_a − N_ab)/(1 − P(b|a))` b-only images get `a`.
//! Both are rounded to the nearest integer (halves away from zero) and capped
//! to `[0, N_a − N_ab]` and `[0, N_b − N_ab]`; `P ≥ 1` gives the cap
//! ([`required_additions`]).
//!
//! The a-only images are ranked by their soft value for `b` (decreasing,
//! ties by image index) and the lowest value among the top `M_a` is the
//! threshold `t_{a→b}` for adding `b` to a-labelled images; likewise
//! `t_{b→a}` from the b-only images and `M_b`. With `M = 0` there is no
//! threshold (nothing is added). [`apply_thresholds`] then adds `b` to every
//! image that holds `a` but not `b` and whose value for `b` is `≥ t_{a→b}`
//! (ties at the threshold can add more than `M_a` images); the added class
//! takes the value of the class that triggered it (`b := max(b, a)`). All
//! decisions are taken on the input labels, then applied.

use std::collections::HashMap;

use labelscope_core::analysis::cooccurrence;

use crate::error::{Error, Result};

/// Class and pair counts of a calibration label set.
#[derive(Debug, Clone)]
pub struct Calibration {
    classes: usize,
    images: u64,
    freq: Vec<u64>,
    pairs: HashMap<(u32, u32), u64>,
}

/// A candidate ambiguous pair (`a < b`) with its calibration statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct AmbiguousPair {
    /// Smaller class index.
    pub a: u32,
    /// Larger class index.
    pub b: u32,
    /// Calibration images holding `a`.
    pub n_a: u64,
    /// Calibration images holding `b`.
    pub n_b: u64,
    /// Calibration images holding both.
    pub n_ab: u64,
    /// `N_ab / min(N_a, N_b)`.
    pub score: f64,
    /// `N_ab / N_b`.
    pub p_a_given_b: f64,
    /// `N_ab / N_a`.
    pub p_b_given_a: f64,
}

impl Calibration {
    /// Counts over `sets` of class indices in `[0, classes)`.
    pub fn from_sets(sets: &[Vec<u32>], classes: usize) -> Result<Calibration> {
        let mut clean = Vec::with_capacity(sets.len());
        let mut freq = vec![0u64; classes];
        for (i, s) in sets.iter().enumerate() {
            let mut s = s.clone();
            s.sort_unstable();
            s.dedup();
            for &c in &s {
                *freq.get_mut(c as usize).ok_or_else(|| {
                    Error::Invalid(format!("calibration image {i}: class {c} outside [0, {classes})"))
                })? += 1;
            }
            clean.push(s);
        }
        let pairs = cooccurrence(&clean, 1).into_iter().map(|c| ((c.a, c.b), c.count)).collect();
        Ok(Calibration { classes, images: sets.len() as u64, freq, pairs })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Number of calibration images.
    pub fn images(&self) -> u64 {
        self.images
    }

    /// `N_a`.
    pub fn count(&self, a: u32) -> u64 {
        self.freq.get(a as usize).copied().unwrap_or(0)
    }

    /// `N_ab` (symmetric; 0 for `a == b`'s pair entry, use [`Calibration::count`]).
    pub fn pair_count(&self, a: u32, b: u32) -> u64 {
        self.pairs.get(&(a.min(b), a.max(b))).copied().unwrap_or(0)
    }

    /// The statistics of the pair `{a, b}` (`a != b`, both in range).
    pub fn pair(&self, a: u32, b: u32) -> Result<AmbiguousPair> {
        if a == b || a as usize >= self.classes || b as usize >= self.classes {
            return Err(Error::Invalid(format!(
                "class pair ({a}, {b}): expected two different classes in [0, {})",
                self.classes
            )));
        }
        let (a, b) = (a.min(b), a.max(b));
        Ok(self.make_pair(a, b, self.pair_count(a, b)))
    }

    fn make_pair(&self, a: u32, b: u32, n_ab: u64) -> AmbiguousPair {
        let (n_a, n_b) = (self.count(a), self.count(b));
        let ratio = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
        AmbiguousPair {
            a,
            b,
            n_a,
            n_b,
            n_ab,
            score: ratio(n_ab, n_a.min(n_b)),
            p_a_given_b: ratio(n_ab, n_b),
            p_b_given_a: ratio(n_ab, n_a),
        }
    }

    /// Candidate ambiguous pairs (see the module docs).
    pub fn candidate_pairs(&self, min_count: u64, min_score: f64) -> Vec<AmbiguousPair> {
        let mut v: Vec<AmbiguousPair> = self
            .pairs
            .iter()
            .filter(|&(_, &n)| n >= min_count.max(1))
            .map(|(&(a, b), &n)| self.make_pair(a, b, n))
            .filter(|p| p.score >= min_score)
            .collect();
        v.sort_by(|x, y| y.score.total_cmp(&x.score).then(y.n_ab.cmp(&x.n_ab)).then((x.a, x.b).cmp(&(y.a, y.b))));
        v
    }
}

/// The prior matrix `C` of a list of pairs (see the module docs), stored sparsely.
#[derive(Debug, Clone)]
pub struct Prior {
    classes: usize,
    /// `rows[a]` = `(b, C[a][b])` for `b != a`.
    rows: Vec<Vec<(u32, f64)>>,
}

impl Prior {
    /// `C` from the listed pairs; a pair listed twice counts once.
    pub fn new(pairs: &[AmbiguousPair], classes: usize) -> Result<Prior> {
        let mut rows: Vec<Vec<(u32, f64)>> = vec![Vec::new(); classes];
        for p in pairs {
            if p.a == p.b || p.a as usize >= classes || p.b as usize >= classes {
                return Err(Error::Invalid(format!(
                    "prior pair ({}, {}): expected two different classes in [0, {classes})",
                    p.a, p.b
                )));
            }
            for (x, y, v) in [(p.a, p.b, p.p_a_given_b), (p.b, p.a, p.p_b_given_a)] {
                if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                    return Err(Error::Invalid(format!("prior pair ({}, {}): P = {v} outside [0, 1]", p.a, p.b)));
                }
                let row = &mut rows[x as usize];
                match row.iter_mut().find(|e| e.0 == y) {
                    Some(e) => e.1 = v,
                    None => row.push((y, v)),
                }
            }
        }
        Ok(Prior { classes, rows })
    }

    /// `C[a][b]`.
    pub fn entry(&self, a: u32, b: u32) -> f64 {
        if a == b {
            return if (a as usize) < self.classes { 1.0 } else { 0.0 };
        }
        self.rows.get(a as usize).and_then(|r| r.iter().find(|e| e.0 == b)).map_or(0.0, |e| e.1)
    }

    /// `clip(C·p, 0, 1)` for a dense vector of `C` values.
    pub fn propagate(&self, p: &[f32]) -> Result<Vec<f32>> {
        if p.len() != self.classes {
            return Err(Error::Mismatch(format!("{} values for a prior over {} classes", p.len(), self.classes)));
        }
        Ok((0..self.classes)
            .map(|a| {
                let s = f64::from(p[a]) + self.rows[a].iter().map(|&(b, c)| c * f64::from(p[b as usize])).sum::<f64>();
                s.clamp(0.0, 1.0) as f32
            })
            .collect())
    }

    /// `clip(C·p, 0, 1)` for sparse `(class, value)` labels; the result is
    /// sorted by decreasing value, ties by class, zeros left out.
    pub fn propagate_sparse(&self, p: &[(u32, f32)]) -> Result<Vec<(u32, f32)>> {
        let mut acc: HashMap<u32, f64> = HashMap::new();
        for &(b, v) in p {
            if b as usize >= self.classes {
                return Err(Error::Invalid(format!("class {b} outside [0, {})", self.classes)));
            }
            *acc.entry(b).or_default() += f64::from(v);
            for &(a, _) in &self.rows[b as usize] {
                // C[a][b] for the pair (a, b)
                *acc.entry(a).or_default() += self.entry(a, b) * f64::from(v);
            }
        }
        let mut out: Vec<(u32, f32)> =
            acc.into_iter().map(|(c, s)| (c, s.clamp(0.0, 1.0) as f32)).filter(|&(_, v)| v > 0.0).collect();
        out.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        Ok(out)
    }
}

/// `(M_a, M_b)` of the module docs from calibration probabilities and dataset counts.
pub fn required_additions(p_a_given_b: f64, p_b_given_a: f64, n_a: u64, n_b: u64, n_ab: u64) -> Result<(u64, u64)> {
    if n_ab > n_a || n_ab > n_b {
        return Err(Error::Invalid(format!(
            "pair counts N_a={n_a}, N_b={n_b}, N_ab={n_ab}: N_ab exceeds a class count"
        )));
    }
    for p in [p_a_given_b, p_b_given_a] {
        if !(p.is_finite() && p >= 0.0) {
            return Err(Error::Invalid(format!("conditional probability {p}: expected a finite value >= 0")));
        }
    }
    let solve = |p: f64, n_other: u64, cap: u64| -> u64 {
        if p >= 1.0 {
            return cap;
        }
        let m = ((p * n_other as f64 - n_ab as f64) / (1.0 - p)).round();
        if m <= 0.0 {
            0
        } else {
            (m as u64).min(cap)
        }
    };
    Ok((solve(p_a_given_b, n_b, n_a - n_ab), solve(p_b_given_a, n_a, n_b - n_ab)))
}

/// Fitted thresholds of one pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairThreshold {
    /// Smaller class index.
    pub a: u32,
    /// Larger class index.
    pub b: u32,
    /// Dataset counts `N_a`, `N_b`, `N_ab` at fitting time.
    pub counts: (u64, u64, u64),
    /// a-only images that should get `b`.
    pub m_a: u64,
    /// b-only images that should get `a`.
    pub m_b: u64,
    /// `t_{a→b}`: add `b` to a-labelled images whose `b` value is `≥` this.
    pub add_b_to_a: Option<f32>,
    /// `t_{b→a}`: add `a` to b-labelled images whose `a` value is `≥` this.
    pub add_a_to_b: Option<f32>,
}

fn value_of(labels: &[(u32, f32)], c: u32) -> f32 {
    labels.iter().filter(|e| e.0 == c).map(|e| e.1).fold(0.0, f32::max)
}

fn check_present(present: f32) -> Result<()> {
    if !(present > 0.0 && present <= 1.0) {
        return Err(Error::Invalid(format!("presence threshold {present}: expected 0 < t <= 1")));
    }
    Ok(())
}

/// Fits `t_{a→b}` and `t_{b→a}` for each pair on the dataset's soft labels
/// (`soft[i]` = sparse `(class, value)` of image `i`; see the module docs).
pub fn fit_thresholds(pairs: &[AmbiguousPair], soft: &[Vec<(u32, f32)>], present: f32) -> Result<Vec<PairThreshold>> {
    check_present(present)?;
    pairs
        .iter()
        .map(|p| {
            let (mut a_only, mut b_only) = (Vec::new(), Vec::new());
            let mut n_ab = 0u64;
            for (i, s) in soft.iter().enumerate() {
                let (va, vb) = (value_of(s, p.a), value_of(s, p.b));
                match (va >= present, vb >= present) {
                    (true, true) => n_ab += 1,
                    (true, false) => a_only.push((i, vb)),
                    (false, true) => b_only.push((i, va)),
                    (false, false) => {}
                }
            }
            let n_a = n_ab + a_only.len() as u64;
            let n_b = n_ab + b_only.len() as u64;
            let (m_a, m_b) = required_additions(p.p_a_given_b, p.p_b_given_a, n_a, n_b, n_ab)?;
            let pick = |mut v: Vec<(usize, f32)>, m: u64| -> Option<f32> {
                if m == 0 {
                    return None;
                }
                v.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
                v.get(m as usize - 1).map(|e| e.1)
            };
            Ok(PairThreshold {
                a: p.a,
                b: p.b,
                counts: (n_a, n_b, n_ab),
                m_a,
                m_b,
                add_b_to_a: pick(a_only, m_a),
                add_a_to_b: pick(b_only, m_b),
            })
        })
        .collect()
}

/// Applies fitted thresholds to soft labels in place (see the module docs);
/// returns the number of labels added. Each image's labels stay sorted by
/// decreasing value, ties by class.
pub fn apply_thresholds(thresholds: &[PairThreshold], soft: &mut [Vec<(u32, f32)>], present: f32) -> Result<u64> {
    check_present(present)?;
    let mut added = 0u64;
    for s in soft.iter_mut() {
        let mut raise: Vec<(u32, f32)> = Vec::new();
        for t in thresholds {
            let (va, vb) = (value_of(s, t.a), value_of(s, t.b));
            let (ha, hb) = (va >= present, vb >= present);
            if ha && !hb && t.add_b_to_a.is_some_and(|th| vb >= th) {
                raise.push((t.b, va));
            }
            if hb && !ha && t.add_a_to_b.is_some_and(|th| va >= th) {
                raise.push((t.a, vb));
            }
        }
        if raise.is_empty() {
            continue;
        }
        for (c, v) in raise {
            match s.iter_mut().find(|e| e.0 == c) {
                Some(e) => {
                    if e.1 < present {
                        added += 1;
                    }
                    e.1 = e.1.max(v);
                }
                None => {
                    added += 1;
                    s.push((c, v));
                }
            }
        }
        s.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    }
    Ok(added)
}
