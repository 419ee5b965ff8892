//! Differential entropy of a point cloud by the k-nearest-neighbour
//! estimator of Kozachenko & Leonenko (1987), in the form of Kraskov,
//! Stögbauer & Grassberger (2004, eq. 20) with the Euclidean norm.
//!
//! # Formula
//! For `N` points `x_i ∈ R^d` and a neighbour order `k` (the papers use
//! `k = 3`):
//!
//! `Ĥ = ψ(N) − ψ(k) + log V_d + (d / N) Σ_i log ε_i`
//!
//! - `ε_i` is the Euclidean distance from `x_i` to its `k`-th nearest
//!   neighbour among the other points: the **radius** convention (Kraskov
//!   writes `2ε` for the diameter with the volume of a ball of unit
//!   *diameter*; the two give the same number);
//! - `V_d = π^{d/2} / Γ(d/2 + 1)` is the volume of the unit-radius ball in
//!   `R^d`;
//! - `ψ` is the digamma function, `ψ(n) = −γ + Σ_{m=1}^{n−1} 1/m` for
//!   integers;
//! - logarithms are natural: the result is in **nats** (divide by `ln 2` for
//!   bits).
//!
//! # Duplicates
//! A point with `k` or more exact copies has `ε_i = 0` and `log ε_i = −∞`;
//! fewer copies still bias the estimate down. [`Duplicates::Remove`]
//! (default) keeps one copy of every distinct row (rows compared after
//! conversion to `f64`, bit for bit, `−0 = +0`) and estimates on the distinct
//! points (the number removed is reported); [`Duplicates::Error`] refuses
//! input with duplicate rows. After removal at least `k + 1` points must
//! remain. Non-finite values are an error.
//!
//! # Computation
//! Exact brute-force k-NN: squared distances in `f64` from the differences
//! (no `|x|² + |y|² − 2x·y` cancellation), rows processed in blocks of
//! [`ROW_BLOCK`] in parallel (rayon) against column blocks of
//! [`COL_BLOCK`], each row keeping its `k` smallest distances. The cost is
//! `N² d / 2`… `N² d` flops: fine for `N` up to ~50 000 with `d` in the
//! hundreds on a multi-core machine.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Rows per parallel task of the neighbour search.
pub const ROW_BLOCK: usize = 64;
/// Columns per inner block of the neighbour search.
pub const COL_BLOCK: usize = 512;

/// What to do with duplicate rows (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Duplicates {
    /// Keep one copy of each distinct row.
    #[default]
    Remove,
    /// Duplicate rows are an error.
    Error,
}

/// The result of [`knn_entropy`].
#[derive(Debug, Clone, PartialEq)]
pub struct EntropyEstimate {
    /// The estimate `Ĥ` in nats.
    pub entropy: f64,
    /// Points given.
    pub points: usize,
    /// Distinct points used (`points − duplicates_removed`).
    pub used: usize,
    /// Duplicate rows removed.
    pub duplicates_removed: usize,
    /// Dimension `d`.
    pub dim: usize,
    /// Neighbour order `k`.
    pub k: usize,
    /// The mean of `log ε_i` (nats).
    pub mean_log_eps: f64,
}

/// Euler–Mascheroni constant.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// `ψ(n)` for a positive integer `n` (exact sum; `n ≥ 1`).
pub fn digamma_int(n: usize) -> f64 {
    -EULER_GAMMA + (1..n).map(|m| 1.0 / m as f64).sum::<f64>()
}

/// `ln Γ(m / 2)` for a positive integer `m`, by the recursion
/// `Γ(x + 1) = x Γ(x)` from `Γ(1) = 1` and `Γ(1/2) = √π`.
pub fn ln_gamma_half(m: usize) -> f64 {
    // start at 1 (m = 2) or 1/2 (m = 1), step by 1 (m += 2)
    let (mut x, mut acc) = if m & 1 == 0 { (1.0, 0.0) } else { (0.5, 0.5 * std::f64::consts::PI.ln()) };
    let target = m as f64 / 2.0;
    while x < target {
        acc += x.ln();
        x += 1.0;
    }
    acc
}

/// `log V_d`, the log-volume of the unit-radius ball in `R^d` (`d ≥ 1`).
pub fn log_unit_ball_volume(d: usize) -> f64 {
    d as f64 / 2.0 * std::f64::consts::PI.ln() - ln_gamma_half(d + 2)
}

/// Differential entropy of a Gaussian with covariance determinant `det`:
/// `½ log((2πe)^d det)` nats.
pub fn gaussian_entropy(d: usize, log_det: f64) -> f64 {
    0.5 * (d as f64 * (2.0 * std::f64::consts::PI * std::f64::consts::E).ln() + log_det)
}

/// The k-NN entropy estimate of the `n × d` row-major `data` (see the module docs).
pub fn knn_entropy(data: &[f64], n: usize, d: usize, k: usize, duplicates: Duplicates) -> Result<EntropyEstimate> {
    if d == 0 || k == 0 {
        return Err(Error::Invalid(format!("k-NN entropy with d = {d}, k = {k}: both must be positive")));
    }
    if Some(data.len()) != n.checked_mul(d) {
        return Err(Error::Mismatch(format!("{} values for {n} points of dimension {d}", data.len())));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!("point {}, coordinate {}: value {} is not finite", i / d, i % d, data[i])));
    }
    // Distinct rows (first occurrence kept, order preserved).
    let mut seen = std::collections::HashMap::with_capacity(n);
    let mut keep = Vec::with_capacity(n);
    for i in 0..n {
        let key: Vec<u64> = data[i * d..(i + 1) * d].iter().map(|v| (v + 0.0).to_bits()).collect();
        match seen.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => {
                if duplicates == Duplicates::Error {
                    return Err(Error::Invalid(format!(
                        "point {i} is a duplicate of point {}: the k-NN entropy needs distinct points \
                         (remove duplicates, or let them be removed)",
                        e.get()
                    )));
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i);
                keep.push(i);
            }
        }
    }
    let used = keep.len();
    if used <= k {
        return Err(Error::Invalid(format!(
            "{used} distinct points (of {n}): the k-NN entropy with k = {k} needs at least {}",
            k + 1
        )));
    }
    let pts: Vec<f64> = if used == n {
        data.to_vec()
    } else {
        keep.iter().flat_map(|&i| data[i * d..(i + 1) * d].iter().copied()).collect()
    };
    let kth = kth_neighbour_sq(&pts, used, d, k);
    let sum_log: f64 = kth.iter().map(|&s| 0.5 * s.ln()).sum();
    let mean_log_eps = sum_log / used as f64;
    let entropy = digamma_int(used) - digamma_int(k) + log_unit_ball_volume(d) + d as f64 * mean_log_eps;
    Ok(EntropyEstimate { entropy, points: n, used, duplicates_removed: n - used, dim: d, k, mean_log_eps })
}

/// The squared distance of every point to its `k`-th nearest other point
/// (exact; `n > k`).
pub fn kth_neighbour_sq(pts: &[f64], n: usize, d: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; n];
    out.par_chunks_mut(ROW_BLOCK).enumerate().for_each(|(b, chunk)| {
        let r0 = b * ROW_BLOCK;
        // best[r * k ..]: the k smallest squared distances of row r0 + r, ascending
        let mut best = vec![f64::INFINITY; chunk.len() * k];
        for c0 in (0..n).step_by(COL_BLOCK) {
            let c1 = (c0 + COL_BLOCK).min(n);
            for (r, slot) in best.chunks_mut(k).enumerate() {
                let i = r0 + r;
                let xi = &pts[i * d..(i + 1) * d];
                for j in c0..c1 {
                    if j == i {
                        continue;
                    }
                    let xj = &pts[j * d..(j + 1) * d];
                    let mut s = 0.0f64;
                    for (a, b) in xi.iter().zip(xj) {
                        let t = a - b;
                        s += t * t;
                    }
                    if s < slot[k - 1] {
                        let mut p = k - 1;
                        while p > 0 && slot[p - 1] > s {
                            slot[p] = slot[p - 1];
                            p -= 1;
                        }
                        slot[p] = s;
                    }
                }
            }
        }
        for (r, o) in chunk.iter_mut().enumerate() {
            *o = best[r * k + k - 1];
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Xoshiro256;

    #[test]
    fn hand_example_1d() {
        // x = 0, 1, 3, 6, 10; k = 3: third-neighbour distances 6, 5, 3, 5, 9.
        // H = ψ(5) − ψ(3) + ln 2 + (1/5) ln(6·5·3·5·9) = 7/12 + ln 2 + ln(4050)/5.
        let x = [0.0, 1.0, 3.0, 6.0, 10.0];
        let e = knn_entropy(&x, 5, 1, 3, Duplicates::Remove).unwrap();
        let want = 7.0 / 12.0 + 2f64.ln() + 4050f64.ln() / 5.0;
        assert!((e.entropy - want).abs() < 1e-12, "{} vs {want}", e.entropy);
        assert_eq!(e.used, 5);
    }

    #[test]
    fn hand_example_2d_and_duplicates() {
        // Unit square corners plus a duplicate of (0,0); k = 1.
        // Distinct points: nearest-neighbour distance 1 for all four.
        // H = ψ(4) − ψ(1) + ln π + 2·mean(ln 1) = (1 + 1/2 + 1/3) + ln π.
        let x = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, -0.0];
        let e = knn_entropy(&x, 5, 2, 1, Duplicates::Remove).unwrap();
        let want = 11.0 / 6.0 + std::f64::consts::PI.ln();
        assert!((e.entropy - want).abs() < 1e-12, "{} vs {want}", e.entropy);
        assert_eq!((e.points, e.used, e.duplicates_removed), (5, 4, 1));
        let err = knn_entropy(&x, 5, 2, 1, Duplicates::Error).unwrap_err().to_string();
        assert!(err.contains("point 4 is a duplicate of point 0"), "{err}");
        assert!(knn_entropy(&x[..4], 2, 2, 3, Duplicates::Remove).is_err());
    }

    #[test]
    fn special_functions() {
        // ψ(1) = −γ; ψ(2) = 1 − γ. V_1 = 2, V_2 = π, V_3 = 4π/3, V_8 = π⁴/24.
        assert!((digamma_int(1) + EULER_GAMMA).abs() < 1e-15);
        assert!((digamma_int(2) - (1.0 - EULER_GAMMA)).abs() < 1e-15);
        let pi = std::f64::consts::PI;
        for (d, v) in [(1, 2.0), (2, pi), (3, 4.0 * pi / 3.0), (8, pi.powi(4) / 24.0)] {
            assert!((log_unit_ball_volume(d) - f64::ln(v)).abs() < 1e-12, "d = {d}");
        }
    }

    /// Brute-force neighbour search against the blocked one (n > blocks).
    #[test]
    fn blocked_search_matches_naive() {
        let (n, d, k) = (700, 3, 3);
        let mut rng = Xoshiro256::from_seed(5);
        let x: Vec<f64> = (0..n * d).map(|_| rng.gauss()).collect();
        let got = kth_neighbour_sq(&x, n, d, k);
        for i in (0..n).step_by(37) {
            let mut ds: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (0..d).map(|c| (x[i * d + c] - x[j * d + c]).powi(2)).sum())
                .collect();
            ds.sort_by(f64::total_cmp);
            assert_eq!(got[i], ds[k - 1], "row {i}");
        }
    }

    /// Seeded Gaussian samples x = L z against ½ log((2πe)^d |Σ|), |Σ| = Π L_ii²,
    /// averaged over 4 seeds at N = 4000. Tolerances from the estimator's
    /// behaviour at this N (measured over 10 other seeds): d = 1 mean error
    /// −0.002 (sd 0.009 per run), d = 2 +0.003 (sd 0.018), d = 8 +0.196 (sd
    /// 0.03): the positive finite-N bias of the estimator in higher dimension
    /// (Gaussian tails), which shrinks with N (+0.39 at N = 1000).
    #[test]
    fn gaussian_closed_form() {
        let n = 4000;
        for (d, lo, hi) in [(1usize, -0.03, 0.03), (2, -0.04, 0.04), (8, 0.05, 0.35)] {
            // L: lower triangular, diagonal 0.5 + 0.25 i, off-diagonal 0.3.
            let mut l = vec![0.0f64; d * d];
            for i in 0..d {
                for j in 0..i {
                    l[i * d + j] = 0.3;
                }
                l[i * d + i] = 0.5 + 0.25 * i as f64;
            }
            let log_det: f64 = (0..d).map(|i| 2.0 * l[i * d + i].ln()).sum();
            let want = gaussian_entropy(d, log_det);
            let mut sum = 0.0;
            for seed in 1..=4u64 {
                let mut rng = Xoshiro256::from_seed(seed);
                let mut x = vec![0.0f64; n * d];
                for p in 0..n {
                    let z: Vec<f64> = (0..d).map(|_| rng.gauss()).collect();
                    for i in 0..d {
                        x[p * d + i] = (0..=i).map(|j| l[i * d + j] * z[j]).sum();
                    }
                }
                let e = knn_entropy(&x, n, d, 3, Duplicates::Remove).unwrap();
                eprintln!("d = {d}, seed {seed}: estimate {:.4} nats, closed form {want:.4}", e.entropy);
                sum += e.entropy;
            }
            let mean = sum / 4.0;
            eprintln!("d = {d}: mean estimate {mean:.4}, closed form {want:.4}, diff {:+.4}", mean - want);
            assert!(mean - want > lo && mean - want < hi, "d = {d}: {mean} vs {want}");
        }
    }
}
