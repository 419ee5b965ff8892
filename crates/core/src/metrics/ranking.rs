//! Ranking metrics: average precision per image and per class, top-k
//! selection, and the mean of the defined values.
//!
//! # Conventions
//!
//! * `scores` is a row-major `n × c` matrix (`n` images, `c` classes) of
//!   finite `f32` values.
//! * `gt[i]` is the sorted, deduplicated list of class indices that are
//!   correct for image `i`. An empty list means "no valid label": that image is
//!   left out of every metric, as a positive and as a negative.
//! * Class indices `>= c` in `gt` are ignored (the label loaders reject them;
//!   these functions do not re-validate).
//!
//! # Average precision
//!
//! Every AP here is the non-interpolated average precision of scikit-learn's
//! `average_precision_score`: the precision–recall curve is taken at every
//! *distinct* score (tied scores form one threshold, they are never split in
//! an arbitrary order), and
//!
//! ```text
//! AP = Σ_t (R(t) − R(t_prev)) · P(t),   P(t) = TP(score ≥ t) / #(score ≥ t)
//! ```
//!
//! summed over the distinct thresholds `t` in decreasing order. Thresholds that
//! no positive reaches do not change the recall and contribute nothing, so only
//! the distinct scores of the positives are visited:
//! `AP = (1/|G|) Σ_{g ∈ G} TP(≥ s_g) / #(≥ s_g)`.

use rayon::prelude::*;

/// Rows per tile of the class-wise histogram pass.
const ROW_TILE: usize = 512;
/// Classes per tile of the class-wise histogram pass.
const CLASS_TILE: usize = 32;

/// Distinct positive scores of one row or one class, in increasing order, with
/// the (weighted) number of positives at or above each of them.
#[derive(Default)]
struct Thresholds {
    /// Distinct scores of the positives, strictly increasing.
    asc: Vec<f32>,
    /// `tp[k]` = weighted number of positives with score `>= asc[k]`.
    tp: Vec<u64>,
}

impl Thresholds {
    /// Builds the thresholds from `(score, weight)` pairs of the positives;
    /// pairs with weight 0 are ignored. `pos` is reordered.
    fn build(pos: &mut [(f32, u64)], out: &mut Thresholds) {
        out.asc.clear();
        out.tp.clear();
        // Decreasing score order; scores are finite, so `partial_cmp` is total
        // (−0.0 and 0.0 compare equal and form one threshold).
        pos.sort_unstable_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        let mut cum = 0u64;
        for &(s, w) in pos.iter() {
            if w == 0 {
                continue;
            }
            cum += w;
            match out.asc.last() {
                Some(&last) if last == s => {
                    if let Some(t) = out.tp.last_mut() {
                        *t = cum;
                    }
                }
                _ => {
                    out.asc.push(s);
                    out.tp.push(cum);
                }
            }
        }
        // Built in decreasing order; flip to increasing.
        out.asc.reverse();
        out.tp.reverse();
    }

    /// Number of thresholds `<= s` (0 when `s` is below every threshold).
    #[inline]
    fn bin(asc: &[f32], s: f32) -> usize {
        if asc.len() <= 8 {
            asc.iter().take_while(|&&t| t <= s).count()
        } else {
            asc.partition_point(|&t| t <= s)
        }
    }
}

/// AP and VOC AP from the thresholds of one row/class and `hist`, where
/// `hist[k]` is the weighted number of included items whose score falls in
/// `[asc[k], asc[k+1])` (the last bin is `[asc[m-1], ∞)`).
///
/// Returns `None` when there are no (weighted) positives.
fn ap_from_hist(asc_tp: &[u64], hist: &[u64]) -> Option<(f64, f64)> {
    let m = asc_tp.len();
    let total = *asc_tp.first()?;
    if total == 0 {
        return None;
    }
    let total_f = total as f64;
    // Walk from the lowest threshold upwards: `cnt` = #(score >= asc[k]) is a
    // suffix sum of `hist`, so compute the suffix sums first.
    let mut cnt_ge = vec![0u64; m];
    let mut acc = 0u64;
    for k in (0..m).rev() {
        acc += hist[k];
        cnt_ge[k] = acc;
    }
    // In decreasing-threshold order the precision envelope at point i is the
    // maximum precision over points j >= i, i.e. over increasing indices <= k.
    let mut ap = 0.0f64;
    let mut voc = 0.0f64;
    let mut envelope = 0.0f64;
    for k in 0..m {
        let tp = asc_tp[k];
        let above = if k + 1 < m { asc_tp[k + 1] } else { 0 };
        let precision = tp as f64 / cnt_ge[k] as f64;
        if precision > envelope {
            envelope = precision;
        }
        let d_recall = (tp - above) as f64 / total_f;
        ap += d_recall * precision;
        voc += d_recall * envelope;
    }
    Some((ap, voc))
}

/// Panics unless `scores` is `n × c` and `gt` has `n` rows (a caller bug, not user input).
pub(crate) fn check_shape(scores: &[f32], n: usize, c: usize, gt: &[Vec<u32>]) {
    assert_eq!(Some(scores.len()), n.checked_mul(c), "scores has {} values, expected n × c = {n} × {c}", scores.len());
    assert_eq!(gt.len(), n, "gt has {} rows, expected {n}", gt.len());
}

/// Per-image average precision.
///
/// For every row `i` with a non-empty `gt[i]`, the average precision of the
/// classes in `gt[i]` ranked by that row's scores, exactly as scikit-learn's
/// `average_precision_score(y_true_row, scores_row)` (non-interpolated, tied
/// scores grouped into one threshold; see the module documentation).
/// Equivalently `AP = (1/|G|) Σ_{g ∈ G} TP(score ≥ s_g) / #(score ≥ s_g)`.
///
/// Rows with an empty `gt[i]` (and rows whose labels are all `>= c`) give
/// `None`. A row whose scores are all equal gets `|G| / c`. Rows are processed
/// in parallel; cost is `O(c · log |G|)` per row.
///
/// # Panics
///
/// If `scores.len() != n * c` or `gt.len() != n`.
pub fn per_sample_ap(scores: &[f32], n: usize, c: usize, gt: &[Vec<u32>]) -> Vec<Option<f64>> {
    check_shape(scores, n, c, gt);
    if c == 0 {
        return vec![None; n];
    }
    scores
        .par_chunks(c)
        .zip(gt.par_iter())
        .map_init(
            || (Vec::<(f32, u64)>::new(), Thresholds::default(), Vec::<u64>::new()),
            |(pos, thr, hist), (row, labels)| {
                pos.clear();
                pos.extend(labels.iter().filter(|&&g| (g as usize) < c).map(|&g| (row[g as usize], 1u64)));
                if pos.is_empty() {
                    return None;
                }
                Thresholds::build(pos, thr);
                let lowest = thr.asc[0];
                hist.clear();
                hist.resize(thr.asc.len(), 0);
                for &s in row {
                    if s >= lowest {
                        hist[Thresholds::bin(&thr.asc, s) - 1] += 1;
                    }
                }
                ap_from_hist(&thr.tp, hist).map(|(ap, _)| ap)
            },
        )
        .collect()
}

/// Class-wise average precision, see [`per_class_ap`].
#[derive(Debug, Clone, PartialEq)]
pub struct PerClassAp {
    /// Non-interpolated AP per class (scikit-learn `average_precision_score`
    /// on the class column); `None` for classes without positives.
    pub ap: Vec<Option<f64>>,
    /// PASCAL VOC (2010 and later) all-points interpolated AP per class;
    /// `None` for classes without positives.
    pub ap_voc: Vec<Option<f64>>,
    /// Weighted number of positives per class among the included rows.
    pub positives: Vec<u64>,
}

/// Class-wise average precision (non-interpolated and PASCAL VOC).
///
/// Only rows with a non-empty `gt[i]` take part (rows with an empty set are
/// not even negatives). For class `j` the positives are the included rows with
/// `j ∈ gt[i]`, every other included row is a negative, and the rows are
/// ranked by column `j` of `scores`.
///
/// * `ap[j]` is scikit-learn's `average_precision_score(y_true[:, j],
///   scores[:, j], sample_weight=weights)`: non-interpolated, tied scores form
///   one threshold.
/// * `ap_voc[j]` is the PASCAL VOC 2010+ all-points interpolated AP on the
///   same tie-grouped curve: with points `(R_i, P_i)` at the distinct
///   thresholds in decreasing order and `R_{-1} = 0`,
///   `AP = Σ_i (R_i − R_{i−1}) · max_{k ≥ i} P_k`.
/// * Both are `None` when the class has no (weighted) positive.
///
/// `weights`, when given, is a per-row multiplicity (as produced by a
/// bootstrap resample): row `i` counts `weights[i]` times, as a positive or a
/// negative; weight 0 drops the row. `None` means every row counts once.
///
/// The matrix is read once in row-major tiles, with rows split across rayon
/// threads; each score is placed among its class's distinct positive scores
/// by a bucket table (expected constant time, see `ClassIndex`) and counted
/// in a per-thread histogram. No column is gathered or sorted: the extra
/// memory is proportional to the number of positive labels, not to the size
/// of the matrix.
///
/// # Panics
///
/// If `scores.len() != n * c`, `gt.len() != n` or `weights` is given with a
/// length other than `n`.
pub fn per_class_ap(scores: &[f32], n: usize, c: usize, gt: &[Vec<u32>], weights: Option<&[u32]>) -> PerClassAp {
    check_shape(scores, n, c, gt);
    if let Some(w) = weights {
        assert_eq!(w.len(), n, "weights has {} values, expected {n}", w.len());
    }
    let weight = |i: usize| -> u64 {
        match weights {
            Some(w) => u64::from(w[i]),
            None => 1,
        }
    };
    let included = |i: usize| !gt[i].is_empty() && weight(i) > 0;

    // 1. Positives of every class, laid out class by class (CSR).
    let mut counts = vec![0usize; c + 1];
    for (i, labels) in gt.iter().enumerate() {
        if !included(i) {
            continue;
        }
        for &g in labels {
            if (g as usize) < c {
                counts[g as usize + 1] += 1;
            }
        }
    }
    for j in 0..c {
        counts[j + 1] += counts[j];
    }
    let offsets = counts;
    let mut fill = offsets.clone();
    let mut pos: Vec<(f32, u64)> = vec![(0.0, 0); offsets[c]];
    for (i, labels) in gt.iter().enumerate() {
        if !included(i) {
            continue;
        }
        let w = weight(i);
        for &g in labels {
            let g = g as usize;
            if g < c {
                pos[fill[g]] = (scores[i * c + g], w);
                fill[g] += 1;
            }
        }
    }
    drop(fill);

    // 2. Distinct thresholds per class and their lookup tables.
    let per_class: Vec<Thresholds> = offsets
        .par_windows(2)
        .map(|w| &pos[w[0]..w[1]])
        .map(|chunk| {
            let mut chunk = chunk.to_vec();
            let mut t = Thresholds::default();
            Thresholds::build(&mut chunk, &mut t);
            t
        })
        .collect();
    drop(pos);
    let index = ClassIndex::build(&per_class);

    // 3. One row-major pass: hist[off_j + b] += w for every included row whose
    //    score in column j is at or above exactly b of the class's thresholds.
    let bins = index.len();
    let threads = rayon::current_num_threads().max(1);
    let rows_per_chunk = n.div_ceil(threads * 4).max(ROW_TILE);
    let hist = (0..n.div_ceil(rows_per_chunk))
        .into_par_iter()
        .map(|chunk| {
            let mut h = vec![0u64; bins];
            let start = chunk * rows_per_chunk;
            let end = (start + rows_per_chunk).min(n);
            // Tiles of ROW_TILE rows × CLASS_TILE classes keep the tile's
            // lookup tables and histogram bins in L1 while its rows stream by.
            let mut block = start;
            while block < end {
                let block_end = (block + ROW_TILE).min(end);
                let mut c0 = 0;
                while c0 < c {
                    let c1 = (c0 + CLASS_TILE).min(c);
                    let classes = &index.classes[c0..c1];
                    for i in block..block_end {
                        if !included(i) {
                            continue;
                        }
                        let w = weight(i);
                        let row = &scores[i * c + c0..i * c + c1];
                        for (&s, class) in row.iter().zip(classes) {
                            h[class.off + index.count_at_or_below(class, s)] += w;
                        }
                    }
                    c0 = c1;
                }
                block = block_end;
            }
            h
        })
        .reduce(
            || vec![0u64; bins],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                a
            },
        );

    // 4. AP per class.
    let mut out = PerClassAp { ap: vec![None; c], ap_voc: vec![None; c], positives: vec![0; c] };
    for (j, (t, class)) in per_class.iter().zip(&index.classes).enumerate() {
        out.positives[j] = t.tp.first().copied().unwrap_or(0);
        let m = t.asc.len();
        // Bin 0 (below every threshold) is not needed.
        if let Some((ap, voc)) = ap_from_hist(&t.tp, &hist[class.off + 1..class.off + 1 + m]) {
            out.ap[j] = Some(ap);
            out.ap_voc[j] = Some(voc);
        }
    }
    out
}

/// Lookup structure of one class for [`ClassIndex::count_at_or_below`].
#[derive(Debug, Clone, Copy)]
struct ClassLookup {
    /// Whether the bucket coordinate is the order-preserving bit pattern of
    /// the score (else the score itself).
    by_bits: bool,
    /// Coordinate of the lowest threshold.
    origin: f32,
    /// Buckets per unit of coordinate.
    scale: f32,
    /// Last bucket index.
    kmax: u32,
    /// Start of the class's bucket table in `ClassIndex::table`.
    table: usize,
    /// Start of the class's thresholds in `ClassIndex::thresholds`, and of its
    /// `m + 2` histogram bins.
    off: usize,
}

/// Order-preserving map from `f32` to `u32` (`-0.0` is mapped as `0.0`, so
/// values that compare equal get the same key).
#[inline]
fn order_key(s: f32) -> u32 {
    let bits = (s + 0.0).to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Thresholds of every class with a bucket table for counting, in expected
/// constant time and without unpredictable branches, how many thresholds are
/// at or below a score.
///
/// Class `j` with thresholds `t_0 < … < t_{m−1}` gets `K = 2m` buckets over a
/// coordinate `x(s)`, either the score itself (even spacing, good for logits)
/// or its order-preserving bit pattern (roughly logarithmic spacing, good for
/// probabilities), whichever spreads the class's thresholds better. The bucket
/// of a score is `min(⌊(x(s) − x(t_0)) · K / (x(t_{m−1}) − x(t_0))⌋, K − 1)`,
/// 0 below `t_0`, in `f32` (the bit pattern rounded to `f32`). Every step is
/// monotone non-decreasing in `s` and
/// the same code computes the bucket of a threshold and of a query, so a
/// threshold in a lower bucket than `s` is `< s` and one in a higher bucket
/// is `> s`, whatever the rounding. `table[b]` is the number of thresholds in
/// buckets before `b`; the answer is `table[b]` plus the thresholds of bucket
/// `b` that are `<= s`, a prefix of that bucket. Two probes settle it unless
/// both succeed and the bucket holds more than two thresholds (the threshold
/// list is padded with two `+∞`, and thresholds of later buckets are `> s`, so
/// probing past the bucket is harmless); a binary search handles the rest.
struct ClassIndex {
    classes: Vec<ClassLookup>,
    thresholds: Vec<f32>,
    table: Vec<u32>,
}

impl ClassIndex {
    fn build(per_class: &[Thresholds]) -> Self {
        let mut index =
            ClassIndex { classes: Vec::with_capacity(per_class.len()), thresholds: Vec::new(), table: Vec::new() };
        let mut sizes: Vec<u32> = Vec::new();
        for t in per_class {
            let m = t.asc.len();
            let off = index.thresholds.len();
            index.thresholds.extend_from_slice(&t.asc);
            index.thresholds.extend_from_slice(&[f32::INFINITY, f32::INFINITY]);
            let k = (2 * m).max(1);
            let (lo, hi) = match (t.asc.first(), t.asc.last()) {
                (Some(&lo), Some(&hi)) => (lo, hi),
                _ => (0.0, 0.0),
            };
            let table = index.table.len();
            let make = |by_bits: bool| {
                let kmax = u32::try_from(k - 1).unwrap_or(u32::MAX);
                let mut class = ClassLookup { by_bits, origin: 0.0, scale: 0.0, kmax, table, off };
                class.origin = class.coordinate(lo);
                let range = class.coordinate(hi) - class.origin;
                // A zero scale (one threshold) puts everything in bucket 0:
                // still correct, just the slow path.
                if range > 0.0 {
                    class.scale = (k as f32 / range).min(f32::MAX);
                }
                class
            };
            // Pick the coordinate whose buckets are most even (Σ size²).
            let mut best: Option<(u64, ClassLookup)> = None;
            for class in [make(false), make(true)] {
                sizes.clear();
                sizes.resize(k, 0);
                for &x in &t.asc {
                    sizes[class.bucket(x)] += 1;
                }
                let cost: u64 = sizes.iter().map(|&v| u64::from(v) * u64::from(v)).sum();
                let better = match best {
                    None => true,
                    Some((c, _)) => cost < c,
                };
                if better {
                    best = Some((cost, class));
                }
            }
            let class = match best {
                Some((_, class)) => class,
                None => make(false),
            };
            index.table.resize(table + k + 1, 0);
            for &x in &t.asc {
                index.table[table + class.bucket(x) + 1] += 1;
            }
            for b in 0..k {
                index.table[table + b + 1] += index.table[table + b];
            }
            index.classes.push(class);
        }
        index
    }

    /// Total number of histogram bins (`m + 2` per class).
    fn len(&self) -> usize {
        self.thresholds.len()
    }

    /// Number of thresholds of `class` that are `<= s`.
    #[inline]
    fn count_at_or_below(&self, class: &ClassLookup, s: f32) -> usize {
        let b = class.table + class.bucket(s);
        let (x, y) = (self.table[b] as usize, self.table[b + 1] as usize);
        let t = &self.thresholds[class.off..];
        let two = usize::from(t[x] <= s) + usize::from(t[x + 1] <= s);
        if two == 2 && y > x + 2 {
            x + 2 + t[x + 2..y].partition_point(|&v| v <= s)
        } else {
            x + two
        }
    }
}

impl ClassLookup {
    /// Bucket coordinate of a score: exact, monotone non-decreasing, and equal
    /// for scores that compare equal.
    #[inline]
    fn coordinate(&self, s: f32) -> f32 {
        // Both are computed and one is selected: no branch. `u32 as f32`
        // rounds, but monotonically, which is all the buckets need.
        let bits = order_key(s) as f32;
        let value = s + 0.0;
        if self.by_bits {
            bits
        } else {
            value
        }
    }

    /// Bucket of a score (monotone non-decreasing in `s`).
    #[inline]
    fn bucket(&self, s: f32) -> usize {
        // `as u32` saturates: values below the origin give 0.
        // A NaN (zero times an infinite scale) gives 0, which is still monotone.
        (((self.coordinate(s) - self.origin) * self.scale) as u32).min(self.kmax) as usize
    }
}

/// Indices of the `k` largest scores of every row, best first.
///
/// Returns a row-major `n × k'` matrix with `k' = min(k, c)`. Ties are broken
/// by the **lower class index first**, so the result is fully deterministic
/// (a row of equal scores gives `0, 1, 2, …`). `-0.0` and `0.0` count as equal.
/// Uses partial selection per row (for `k <= 32` a vectorised lower bound of
/// the k-th score, then an insertion buffer over the columns at or above it;
/// a selection algorithm for larger `k`); rows run in parallel when there are
/// many.
///
/// # Panics
///
/// If `scores.len() != n * c`.
pub fn topk_from_scores(scores: &[f32], n: usize, c: usize, k: usize) -> Vec<u32> {
    assert_eq!(Some(scores.len()), n.checked_mul(c), "scores has {} values, expected n × c = {n} × {c}", scores.len());
    let k = k.min(c);
    let mut out = vec![0u32; n * k];
    if k == 0 {
        return out;
    }
    // Strict "a ranks before b": higher score, then lower index.
    let better = |sa: f32, ia: u32, sb: f32, ib: u32| sa > sb || (sa == sb && ia < ib);
    let one_row = |idx: &mut Vec<u32>, (dst, row): (&mut [u32], &[f32])| {
        if k <= 32 {
            small_topk_row(row, k, dst);
        } else {
            idx.clear();
            idx.extend(0..c as u32);
            let cmp = |a: &u32, b: &u32| {
                let (sa, sb) = (row[*a as usize], row[*b as usize]);
                if better(sa, *a, sb, *b) {
                    std::cmp::Ordering::Less
                } else if better(sb, *b, sa, *a) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            };
            if k < c {
                idx.select_nth_unstable_by(k - 1, cmp);
            }
            idx[..k].sort_unstable_by(cmp);
            dst.copy_from_slice(&idx[..k]);
        }
    };
    let init = Vec::<u32>::new;
    if scores.len() < SMALL_TOPK {
        // One batch of a validation loop: the thread pool's wake-up (and its contention with a
        // BLAS pool that is still spinning) costs more than the split saves.
        let mut state = init();
        for pair in out.chunks_mut(k).zip(scores.chunks(c)) {
            one_row(&mut state, pair);
        }
    } else {
        out.par_chunks_mut(k).zip(scores.par_chunks(c)).for_each_init(init, one_row);
    }
    out
}

/// The `k <= 32` best columns of one row, best first, into `dst` (ties: the
/// lower column first).
///
/// A lower bound of the k-th score from one vectorised pass, then a sorted
/// insertion buffer over the few columns at or above it (see the body). With
/// AVX2 the vector passes run eight lanes at a time (runtime detection).
fn small_topk_row(row: &[f32], k: usize, dst: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            unsafe { small_topk_row_avx2(row, k, dst) };
            return;
        }
    }
    small_topk_row_body(row, k, dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn small_topk_row_avx2(row: &[f32], k: usize, dst: &mut [u32]) {
    small_topk_row_body(row, k, dst);
}

#[inline(always)]
fn small_topk_row_body(row: &[f32], k: usize, dst: &mut [u32]) {
    debug_assert!((1..=TOPK_GROUPS).contains(&k) && dst.len() >= k.min(row.len()));
    if row.len() < 4 * TOPK_GROUPS {
        let len = insert_topk(row.iter().copied().zip(0u32..), k, &mut [0f32; TOPK_GROUPS], dst);
        debug_assert_eq!(len, k.min(row.len()));
        return;
    }
    // 1. A lower bound of the k-th best score: the k-th largest of the maxima
    //    of TOPK_GROUPS interleaved groups of columns (k distinct columns reach
    //    it). One branch-free, vectorisable pass, which also looks for NaN.
    let mut maxima = [f32::NEG_INFINITY; TOPK_GROUPS];
    let mut nan = false;
    let mut chunks = row.chunks_exact(TOPK_GROUPS);
    for chunk in &mut chunks {
        for (m, &v) in maxima.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
            nan |= v.is_nan();
        }
    }
    for (m, &v) in maxima.iter_mut().zip(chunks.remainder()) {
        *m = if v > *m { v } else { *m };
        nan |= v.is_nan();
    }
    if nan {
        // NaN ranks as the streaming buffer always ranked it: keep that path.
        insert_topk(row.iter().copied().zip(0u32..), k, &mut [0f32; TOPK_GROUPS], dst);
        return;
    }
    // The k-th largest of the maxima, through the same buffer (no NaN here).
    let mut top = [0f32; TOPK_GROUPS];
    insert_topk(maxima.iter().copied().zip(0u32..), k, &mut top, &mut [0u32; TOPK_GROUPS]);
    let bound = top[k - 1];
    // 2. The columns at or above the bound, in column order (chunks without one
    //    are skipped after a vectorised test), then the buffer over those few.
    //    Every column of the top k is among them, and the buffer's result
    //    depends only on which columns it sees in column order.
    let mut vals = [0f32; TOPK_GROUPS];
    let mut len = 0usize;
    for (ci, chunk) in row.chunks(TOPK_CHUNK).enumerate() {
        if !chunk.iter().fold(false, |any, &s| any | (s >= bound)) {
            continue;
        }
        let base = (ci * TOPK_CHUNK) as u32;
        for (j, &s) in chunk.iter().enumerate() {
            if s >= bound {
                len = insert_one(s, base + j as u32, k, len, &mut vals, dst);
            }
        }
    }
    debug_assert_eq!(len, k);
}

/// Streams `(score, column)` pairs in increasing column order through a sorted
/// buffer of the `k` best (an equal score never displaces an earlier column;
/// NaN enters as it always did: at the front); writes their columns, best
/// first, to `dst` and returns how many there are.
#[inline(always)]
fn insert_topk(
    items: impl Iterator<Item = (f32, u32)>,
    k: usize,
    vals: &mut [f32; TOPK_GROUPS],
    dst: &mut [u32],
) -> usize {
    let mut len = 0usize;
    for (s, col) in items {
        len = insert_one(s, col, k, len, vals, dst);
    }
    len
}

/// One step of [`insert_topk`]: offers `(s, col)` to a buffer holding `len`
/// entries; returns the new length.
#[inline(always)]
// `!(v >= s)` on purpose: it is also true when either is NaN, which is how
// the buffer has always placed NaN (at the front).
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn insert_one(s: f32, col: u32, k: usize, mut len: usize, vals: &mut [f32; TOPK_GROUPS], dst: &mut [u32]) -> usize {
    if len == k {
        if s <= vals[k - 1] {
            return len;
        }
    } else {
        len += 1;
    }
    // Shift the entries below `s` down one place (the last one falls off when
    // the buffer was full); `s` goes after every entry >= it.
    let mut at = len - 1;
    while at > 0 && !(vals[at - 1] >= s) {
        vals[at] = vals[at - 1];
        dst[at] = dst[at - 1];
        at -= 1;
    }
    vals[at] = s;
    dst[at] = col;
    len
}

/// Column groups of the lower bound in [`small_topk_row`] (and the largest `k`
/// it serves).
const TOPK_GROUPS: usize = 32;

/// Scores per pre-tested chunk of a row in [`topk_from_scores`].
const TOPK_CHUNK: usize = 16;

/// Below this many scores [`topk_from_scores`] runs on the calling thread.
const SMALL_TOPK: usize = 1 << 19;

/// Mean of the defined (`Some`) values; `None` when there are none.
///
/// This is how mean AP is formed: images or classes without a defined AP are
/// left out of the mean, not counted as 0.
pub fn mean_defined(v: &[Option<f64>]) -> Option<f64> {
    let (sum, count) = v.iter().flatten().fold((0.0f64, 0usize), |(s, n), &x| (s + x, n + 1));
    (count > 0).then(|| sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn per_sample_ap_hand_examples() {
        let c = 5;
        #[rustfmt::skip]
        let scores = vec![
            // Row 0: G = {1, 3}. Ranking 0.9(c0,neg) 0.8(c1,pos) 0.7(c2) 0.6(c3,pos) 0.1.
            // P at c1 = 1/2, P at c3 = 2/4 → AP = (1/2 + 1/2) / 2 = 0.5.
            0.9, 0.8, 0.7, 0.6, 0.1,
            // Row 1: all scores equal, G = {0, 4}: one threshold, P = 2/5, R = 1 → AP = 0.4.
            0.3, 0.3, 0.3, 0.3, 0.3,
            // Row 2: single positive {2} tied with one negative at the top:
            // threshold 0.9 holds 2 items, 1 positive → AP = 1/2.
            0.9, 0.1, 0.9, 0.2, 0.3,
            // Row 3: empty gt → None.
            0.1, 0.2, 0.3, 0.4, 0.5,
            // Row 4: G = {4} is the unique top score → AP = 1.
            0.1, 0.2, 0.3, 0.4, 0.5,
            // Row 5: G = {0, 1}, c0 ties with a negative (c2) at 0.5, c1 is first:
            // c1: 1/1; c0: threshold 0.5 has 3 items with 2 positives → 2/3.
            // AP = (1 + 2/3) / 2 = 5/6.
            0.5, 0.8, 0.5, 0.1, 0.0,
        ];
        let gt = vec![vec![1, 3], vec![0, 4], vec![2], vec![], vec![4], vec![0, 1]];
        let ap = per_sample_ap(&scores, 6, c, &gt);
        let want = [Some(0.5), Some(0.4), Some(0.5), None, Some(1.0), Some(5.0 / 6.0)];
        for (got, want) in ap.iter().zip(want) {
            match (got, want) {
                (Some(g), Some(w)) => assert!(close(*g, w), "{got:?} vs {want:?}"),
                (None, None) => {}
                _ => panic!("{ap:?}"),
            }
        }
        assert!(close(mean_defined(&ap).unwrap(), (0.5 + 0.4 + 0.5 + 1.0 + 5.0 / 6.0) / 5.0));
    }

    #[test]
    fn per_class_ap_hand_examples() {
        // Three classes, five rows (row 4 has empty gt and must be ignored even
        // though its scores would change every class).
        #[rustfmt::skip]
        let scores = vec![
            0.9, 0.9, 0.5,
            0.8, 0.8, 0.5,
            0.7, 0.8, 0.5,
            0.6, 0.1, 0.5,
            1.0, 1.0, 1.0,
        ];
        let gt = vec![vec![0], vec![1], vec![0, 1], vec![0], vec![]];
        let r = per_class_ap(&scores, 5, 3, &gt, None);
        // Class 0: pos rows 0, 2, 3 (0.9, 0.7, 0.6), neg row 1 (0.8).
        //   t=0.9: TP1/1, R 1/3; t=0.7: TP2/3, R 2/3; t=0.6: TP3/4, R 1.
        //   AP = (1 + 2/3 + 3/4)/3 = 29/36; VOC envelope (1, 3/4, 3/4) → 5/6.
        assert!(close(r.ap[0].unwrap(), 29.0 / 36.0));
        assert!(close(r.ap_voc[0].unwrap(), 5.0 / 6.0));
        // Class 1: pos rows 1, 2 (0.8, 0.8), negs 0.9, 0.1.
        //   t=0.8 (tied positives): TP 2 of 3, R 1 → AP = 2/3 = VOC.
        assert!(close(r.ap[1].unwrap(), 2.0 / 3.0));
        assert!(close(r.ap_voc[1].unwrap(), 2.0 / 3.0));
        // Class 2: no positives.
        assert_eq!(r.ap[2], None);
        assert_eq!(r.ap_voc[2], None);
        assert_eq!(r.positives, vec![3, 2, 0]);

        // Weights: row 1 (the negative at 0.8 for class 0) counted twice, row 3
        // dropped. Class 0: pos 0.9 (w1), 0.7 (w1); neg 0.8 (w2).
        //   t=0.9: 1/1, R 1/2; t=0.7: 2/4, R 1 → AP = 0.5·1 + 0.5·0.5 = 0.75.
        // Class 1: pos 0.8 (w2, row 1), 0.8 (w1, row 2); neg 0.9 (w1).
        //   t=0.8: TP 3 of 4 → 0.75.
        let w = [1u32, 2, 1, 0, 5];
        let r = per_class_ap(&scores, 5, 3, &gt, Some(&w));
        assert!(close(r.ap[0].unwrap(), 0.75));
        assert!(close(r.ap_voc[0].unwrap(), 0.75));
        assert!(close(r.ap[1].unwrap(), 0.75));
        assert_eq!(r.positives, vec![2, 3, 0]);
    }

    #[test]
    fn per_class_ap_many_thresholds_matches_per_sample_transpose() {
        // A column with many distinct positive scores exercises the binary
        // search path; class-wise AP of the transposed matrix must equal the
        // per-row AP of the original.
        let (n, c) = (7, 60);
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % 16) as f32 / 16.0
        };
        let scores: Vec<f32> = (0..n * c).map(|_| next()).collect();
        let gt: Vec<Vec<u32>> = (0..n)
            .map(|i| {
                // Every third class, starting at i mod 3.
                (i as u32 % 3..c as u32).step_by(3).collect()
            })
            .collect();
        let rows = per_sample_ap(&scores, n, c, &gt);
        let mut t = vec![0f32; n * c];
        for i in 0..n {
            for j in 0..c {
                t[j * n + i] = scores[i * c + j];
            }
        }
        // Transposed: c rows, n classes; the gt of the transposed rows are
        // all non-empty since the rows above cover all residues mod 3.
        let mut tgt = vec![Vec::new(); c];
        for (i, labels) in gt.iter().enumerate() {
            for &j in labels {
                tgt[j as usize].push(i as u32);
            }
        }
        // Every transposed row must be included for equivalence.
        assert!(tgt.iter().all(|g| !g.is_empty()));
        let cols = per_class_ap(&t, c, n, &tgt, None);
        assert_eq!(rows.len(), n);
        for (i, (r, col)) in rows.iter().zip(&cols.ap).enumerate() {
            assert!(close(r.unwrap(), col.unwrap()), "{i}");
        }
    }

    /// Class-wise AP straight from the definition, O(n²) per class.
    fn naive_class_ap(scores: &[f32], n: usize, c: usize, gt: &[Vec<u32>], w: &[u32], j: usize) -> Option<(f64, f64)> {
        let items: Vec<(f32, bool, f64)> = (0..n)
            .filter(|&i| !gt[i].is_empty() && w[i] > 0)
            .map(|i| (scores[i * c + j], gt[i].contains(&(j as u32)), f64::from(w[i])))
            .collect();
        let total: f64 = items.iter().filter(|x| x.1).map(|x| x.2).sum();
        if total == 0.0 {
            return None;
        }
        let mut thresholds: Vec<f32> = items.iter().map(|x| x.0).collect();
        thresholds.sort_by(|a, b| b.partial_cmp(a).unwrap());
        thresholds.dedup();
        let points: Vec<(f64, f64)> = thresholds
            .iter()
            .map(|&t| {
                let tp: f64 = items.iter().filter(|x| x.1 && x.0 >= t).map(|x| x.2).sum();
                let all: f64 = items.iter().filter(|x| x.0 >= t).map(|x| x.2).sum();
                (tp / total, tp / all)
            })
            .collect();
        let (mut ap, mut voc, mut previous) = (0.0, 0.0, 0.0);
        for (i, &(r, p)) in points.iter().enumerate() {
            let envelope = points[i..].iter().map(|x| x.1).fold(0.0, f64::max);
            ap += (r - previous) * p;
            voc += (r - previous) * envelope;
            previous = r;
        }
        Some((ap, voc))
    }

    #[test]
    fn per_class_ap_matches_naive_on_awkward_columns() {
        // Columns designed for every path of the bucket lookup: probabilities
        // over many orders of magnitude, clustered thresholds with an outlier
        // (large buckets), ±0.0, huge and subnormal values, a single distinct
        // value, and random quantised scores.
        let (n, c) = (400, 8);
        let mut state = 99u64;
        let mut unif = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut scores = vec![0f32; n * c];
        let mut gt = vec![Vec::new(); n];
        let mut w = vec![1u32; n];
        for i in 0..n {
            let u: Vec<f64> = (0..c).map(|_| unif()).collect();
            scores[i * c] = (10f64.powf(-12.0 * u[0])) as f32;
            scores[i * c + 1] = if u[1] < 0.05 { 100.0 } else { (1e-6 * u[1]) as f32 };
            scores[i * c + 2] = [-0.0f32, 0.0, 1.0, -1.0][(u[2] * 4.0) as usize];
            scores[i * c + 3] = [3e38f32, -3e38, 1e-45, -1e-45, 0.0][(u[3] * 5.0) as usize];
            scores[i * c + 4] = 0.25;
            scores[i * c + 5] = ((u[5] * 16.0).floor() / 16.0) as f32;
            scores[i * c + 6] = (u[6] * 2.0 - 1.0) as f32 * 1e-30;
            scores[i * c + 7] = (u[7] - 0.5) as f32;
            if unif() > 0.1 {
                gt[i] = (0..c as u32).filter(|_| unif() < 0.3).collect();
            }
            w[i] = (unif() * 3.0) as u32;
        }
        for weights in [None, Some(&w[..])] {
            let r = per_class_ap(&scores, n, c, &gt, weights);
            let ones = vec![1u32; n];
            for j in 0..c {
                let want = naive_class_ap(&scores, n, c, &gt, weights.unwrap_or(&ones), j);
                match (r.ap[j].zip(r.ap_voc[j]), want) {
                    (Some((a, v)), Some((wa, wv))) => {
                        assert!((a - wa).abs() < 1e-12 && (v - wv).abs() < 1e-12, "class {j}: {a} {v} vs {wa} {wv}")
                    }
                    (got, want) => panic!("class {j}: {got:?} vs {want:?}"),
                }
            }
        }
    }

    #[test]
    fn topk_ties_lower_index_first() {
        #[rustfmt::skip]
        let scores = vec![
            0.1, 0.5, 0.5, 0.9, 0.5,
            0.0, 0.0, 0.0, 0.0, 0.0,
            -0.0, 0.0, 1.0, -1.0, 0.0,
        ];
        assert_eq!(topk_from_scores(&scores, 3, 5, 3), vec![3, 1, 2, 0, 1, 2, 2, 0, 1]);
        assert_eq!(topk_from_scores(&scores, 3, 5, 9).len(), 15);
        assert_eq!(topk_from_scores(&scores, 3, 5, 5)[..5], [3, 1, 2, 4, 0]);
    }

    #[test]
    fn topk_large_k_matches_small_k_path() {
        let (n, c) = (20, 100);
        let scores: Vec<f32> = (0..n * c).map(|x| ((x * 37) % 11) as f32).collect();
        let a = topk_from_scores(&scores, n, c, 40);
        let b = topk_from_scores(&scores, n, c, 20);
        for i in 0..n {
            assert_eq!(a[i * 40..i * 40 + 20], b[i * 20..(i + 1) * 20]);
            // Non-increasing scores, increasing index among equals.
            for w in a[i * 40..(i + 1) * 40].windows(2) {
                let (s0, s1) = (scores[i * c + w[0] as usize], scores[i * c + w[1] as usize]);
                assert!(s0 > s1 || (s0 == s1 && w[0] < w[1]));
            }
        }
    }

    #[test]
    fn topk_small_k_on_long_rows_matches_the_selection_path() {
        // Rows of >= 4 * TOPK_GROUPS columns take the lower-bound path for
        // k <= 32; k = 33 takes select_nth. Coarse values give many ties
        // (and -0.0 beside 0.0); some rows are constant, one row is short.
        let (n, c) = (40, 300);
        let mut x = 99u64;
        let mut scores: Vec<f32> = (0..n * c)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                match (x >> 33) % 13 {
                    0 => -0.0,
                    v => (v as f32 - 6.0) / 3.0,
                }
            })
            .collect();
        scores[c..2 * c].fill(0.25);
        let full = topk_from_scores(&scores, n, c, 33);
        for k in [1, 2, 5, 31, 32] {
            let small = topk_from_scores(&scores, n, c, k);
            for i in 0..n {
                assert_eq!(small[i * k..(i + 1) * k], full[i * 33..i * 33 + k], "row {i}, k {k}");
            }
        }
        let short = &scores[..100];
        assert_eq!(topk_from_scores(short, 1, 100, 5), topk_from_scores(short, 1, 100, 33)[..5]);
    }

    #[test]
    fn mean_defined_skips_none() {
        assert_eq!(mean_defined(&[]), None);
        assert_eq!(mean_defined(&[None, None]), None);
        assert_eq!(mean_defined(&[Some(1.0), None, Some(0.0)]), Some(0.5));
    }
}
