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

#[cfg(test)]
mod tests {
    use super::*;

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
