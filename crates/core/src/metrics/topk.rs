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
/// higher score first, then lower column. `None` for an empty set, or when no
/// label of the set is a column of the row.
///
/// The row is a hit at `k` exactly when the rank is below `k`, so this gives
/// the hits of every `k` at once without selecting the top k: one or two
/// vectorisable counting passes over the row per label. Scores must not be
/// NaN (callers check that first).
pub fn best_rank(row: &[f32], set: &[u32]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { best_rank_avx2(row, set) };
        }
    }
    best_rank_body(row, set)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn best_rank_avx2(row: &[f32], set: &[u32]) -> Option<usize> {
    best_rank_body(row, set)
}

#[inline(always)]
fn best_rank_body(row: &[f32], set: &[u32]) -> Option<usize> {
    set.iter()
        .filter_map(|&g| {
            let g = g as usize;
            let sg = *row.get(g)?;
            // Columns with a higher score, and those before `g` with an equal one.
            let above = row.iter().fold(0u32, |n, &s| n + u32::from(s > sg));
            let tied_before = row[..g].iter().fold(0u32, |n, &s| n + u32::from(s == sg));
            Some(above as usize + tied_before as usize)
        })
        .min()
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
                let rank = best_rank(&scores[i * c..(i + 1) * c], set);
                let got = if set.is_empty() { None } else { Some(rank.is_some_and(|r| r < k)) };
                assert_eq!(got, want[i], "row {i}, k {k}, set {set:?}");
            }
        }
        assert_eq!(best_rank(&[0.5, 0.5, 0.9], &[1]), Some(2));
        assert_eq!(best_rank(&[0.5, 0.5, 0.9], &[0, 1]), Some(1));
        assert_eq!(best_rank(&[0.5], &[3]), None);
        assert_eq!(best_rank(&[0.5], &[]), None);
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
