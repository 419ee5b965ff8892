//! Top-k accuracy against single or multi-label ground truth.
//!
//! A row is a hit at k when any of its k best predictions is in its label set
//! (for a single original label this is the usual top-k accuracy; against
//! ImageNet-ReaL it is the definition of ReaL top-k used by Beyer et al. 2020
//! and timm). Rows whose label set is empty ("no valid label") are left out
//! of numerator and denominator.

/// Per-row top-k hit: `None` for rows with an empty label set.
///
/// `topk` is row-major `[rows, width]`, best first; `k` must be `<= width`.
pub fn hits(topk: &[u32], width: usize, gt: &[Vec<u32>], k: usize) -> Vec<Option<bool>> {
    debug_assert!(k <= width && width > 0);
    gt.iter()
        .enumerate()
        .map(|(r, set)| {
            if set.is_empty() {
                return None;
            }
            let row = &topk[r * width..r * width + k];
            Some(row.iter().any(|p| set.binary_search(p).is_ok()))
        })
        .collect()
}

/// Sums hits over the rows selected by `rows` (all rows when `None`):
/// returns (correct, total), rows with `None` not counted.
pub fn count(hits: &[Option<bool>], rows: Option<&[usize]>) -> (u64, u64) {
    let mut c = 0u64;
    let mut t = 0u64;
    let mut add = |h: Option<bool>| {
        if let Some(h) = h {
            t += 1;
            c += h as u64;
        }
    };
    match rows {
        Some(rs) => rs.iter().for_each(|&r| add(hits[r])),
        None => hits.iter().for_each(|&h| add(h)),
    }
    (c, t)
}

/// Rank (0 = best) of the best-ranked label of `set` in a row of scores, under
/// the order of [`ranking::topk_from_scores`](super::ranking::topk_from_scores):
/// higher score first, then lower column. `Ok(None)` for an empty set, or
/// when no label of the set is a column of the row; `Err(column)` of the
/// first NaN or infinity when the row holds one.
///
/// The row is a hit at `k` exactly when the rank is below `k`, so this gives
/// the hits of every `k` at once without selecting the top k. Under that
/// order the best-ranked label is the one with the highest score (the lowest
/// column among equals), so only its rank is counted: the columns before it
/// scoring at least as high plus the columns after it scoring higher. That
/// is one vectorised pass over the row, which also counts the non-finite
/// values, so the row is read once.
pub fn best_rank(row: &[f32], set: &[u32]) -> Result<Option<usize>, usize> {
    // The set is sorted, so the first of equal scores is the lowest column.
    let mut best: Option<(usize, f32)> = None;
    for &g in set {
        let g = g as usize;
        let Some(&s) = row.get(g) else { continue };
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((g, s));
        }
    }
    // Without a label, the whole row is only checked.
    let (g, sg) = best.unwrap_or((row.len(), f32::INFINITY));
    let (rank, bad) = rank_of(row, g, sg);
    if bad > 0 || (g < row.len() && !sg.is_finite()) {
        return Err(row.iter().position(|x| !x.is_finite()).unwrap_or(0));
    }
    Ok(best.map(|_| rank))
}

fn rank_of(row: &[f32], g: usize, sg: f32) -> (usize, u32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { rank_avx2(row, g, sg) };
        }
    }
    rank_body(row, g, sg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rank_avx2(row: &[f32], g: usize, sg: f32) -> (usize, u32) {
    rank_body(row, g, sg)
}

/// Rank of column `g` (score `sg`; `g` may be the row's length): columns
/// before it scoring `>= sg` and columns after it scoring `> sg`; and the
/// number of NaNs and infinities among those columns.
#[inline(always)]
fn rank_body(row: &[f32], g: usize, sg: f32) -> (usize, u32) {
    let bad = crate::predictions::non_finite_bit;
    let (before, bad_before) = row[..g].iter().fold((0u32, 0u32), |(n, b), &s| (n + u32::from(s >= sg), b + bad(s)));
    let after = row.get(g + 1..).unwrap_or(&[]);
    let (after, bad_after) = after.iter().fold((0u32, 0u32), |(n, b), &s| (n + u32::from(s > sg), b + bad(s)));
    (before as usize + after as usize, bad_before + bad_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_rank_equals_hits_of_the_selected_top_k() {
        // Coarse random scores (many ties, -0.0 beside 0.0), sets with labels
        // outside the row, empty sets.
        let (n, c) = (300usize, 37usize);
        let mut x = 7u64;
        let mut next = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 33
        };
        let scores: Vec<f32> = (0..n * c)
            .map(|_| match next() % 9 {
                0 => -0.0,
                v => (v as f32 - 4.0) / 4.0,
            })
            .collect();
        let gt: Vec<Vec<u32>> = (0..n)
            .map(|_| {
                let mut s: Vec<u32> = (0..next() % 4).map(|_| (next() % (c as u64 + 3)) as u32).collect();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        let top = super::super::ranking::topk_from_scores(&scores, n, c, c);
        for k in [1, 2, 5, c] {
            let want = hits(&top, c, &gt, k);
            for (i, set) in gt.iter().enumerate() {
                let rank = best_rank(&scores[i * c..(i + 1) * c], set).unwrap();
                let got = if set.is_empty() { None } else { Some(rank.is_some_and(|r| r < k)) };
                assert_eq!(got, want[i], "row {i}, k {k}, set {set:?}");
            }
        }
        assert_eq!(best_rank(&[0.5, 0.5, 0.9], &[1]), Ok(Some(2)));
        assert_eq!(best_rank(&[0.5, 0.5, 0.9], &[0, 1]), Ok(Some(1)));
        assert_eq!(best_rank(&[0.5], &[3]), Ok(None));
        assert_eq!(best_rank(&[0.5], &[]), Ok(None));
        // Non-finite values anywhere in the row (before, at and after the label, or with no label).
        let mut row: Vec<f32> = (0..40).map(|i| i as f32).collect();
        for (at, v) in [(3, f32::NAN), (20, f32::INFINITY), (39, f32::NEG_INFINITY), (0, -f32::NAN)] {
            let saved = row[at];
            row[at] = v;
            for set in [&[20u32][..], &[5, 30], &[], &[77]] {
                assert_eq!(best_rank(&row, set), Err(at), "{v} at {at}, set {set:?}");
            }
            row[at] = saved;
        }
        assert_eq!(best_rank(&row, &[20]), Ok(Some(19)));
        assert_eq!(best_rank(&[f32::MAX, f32::MIN], &[1]), Ok(Some(1)));
    }

    #[test]
    fn multi_label_hits_and_exclusion() {
        // three rows, top-3 predictions
        let topk = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let gt = vec![vec![2], vec![], vec![7, 100]];
        assert_eq!(hits(&topk, 3, &gt, 1), vec![Some(false), None, Some(true)]);
        assert_eq!(hits(&topk, 3, &gt, 2), vec![Some(true), None, Some(true)]);
        let h = hits(&topk, 3, &gt, 1);
        assert_eq!(count(&h, None), (1, 2));
        assert_eq!(count(&h, Some(&[0, 1])), (0, 1));
    }
}
