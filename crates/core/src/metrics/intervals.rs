//! Confidence intervals: exact Clopper–Pearson intervals for count ratios and
//! seeded percentile-bootstrap intervals for everything else.
//!
//! The special functions (log-gamma, regularized incomplete beta and its
//! inverse) are implemented here so that the core crate has no numerical
//! dependency; they are checked against `scipy.stats.beta.ppf` by the test
//! suite.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rng::{mix64, Xoshiro256};

// ---------------------------------------------------------------------------
// Special functions
// ---------------------------------------------------------------------------

/// Lanczos approximation parameters (g = 7, 9 terms), relative accuracy about
/// 1e-15 for positive arguments.
const LANCZOS_G: f64 = 7.0;
const LANCZOS_COEF: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// `ln Γ(x)` for `x > 0` (Lanczos approximation, reflection below 0.5).
fn ln_gamma(x: f64) -> f64 {
    if x < 0.5 {
        // Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let z = x - 1.0;
    let mut sum = LANCZOS_COEF[0];
    for (i, &coef) in LANCZOS_COEF.iter().enumerate().skip(1) {
        sum += coef / (z + i as f64);
    }
    let t = z + LANCZOS_G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (z + 0.5) * t.ln() - t + sum.ln()
}

/// `ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b)`.
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// Continued fraction for the incomplete beta function,
///
/// ```text
/// I_x(a, b) = x^a (1−x)^b / (a B(a, b)) · 1 / (1 + d_1 / (1 + d_2 / (1 + …)))
/// d_{2m+1} = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
/// d_{2m}   = m (b − m) x / ((a + 2m − 1)(a + 2m))
/// ```
///
/// evaluated with the modified Lentz method. Returns the value of the
/// fraction `1 / (1 + d_1 / (1 + …))`. Converges fast for
/// `x < (a + 1) / (a + b + 2)`.
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const MAX_ITER: usize = 100_000;
    // Modified Lentz on b0 + a1/(b1 + a2/(b2 + …)) with b0 = 0, a1 = 1, all
    // b_i = 1 and a_{i+1} = d_i. State after the first term: f = a1/b1 = 1,
    // C = b1 + a1/C_0 with C_0 = TINY (so effectively infinite), D = 1/b1 = 1.
    let fix = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut f = 1.0;
    let mut c = 1.0 / TINY;
    let mut d = 1.0;
    for i in 1..=MAX_ITER {
        let m = (i / 2) as f64;
        let coef = if i % 2 == 1 {
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))
        } else {
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m))
        };
        d = fix(1.0 + coef * d);
        c = fix(1.0 + coef / c);
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        // A zero coefficient (m = b for integer b) ends the fraction exactly.
        if (delta - 1.0).abs() <= f64::EPSILON {
            break;
        }
    }
    f
}

/// Regularized incomplete beta function `I_x(a, b)` for `a, b > 0`.
///
/// Uses the continued fraction directly when `x < (a + 1) / (a + b + 2)` and
/// the symmetry `I_x(a, b) = 1 − I_{1−x}(b, a)` otherwise, so that the
/// fraction always converges quickly.
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let y = 1.0 - x;
    let ln_front = a * x.ln() + b * (-x).ln_1p() - ln_beta(a, b);
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_continued_fraction(b, a, y) / b
    }
}

/// Beta density at `x`.
fn beta_pdf(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    ((a - 1.0) * x.ln() + (b - 1.0) * (-x).ln_1p() - ln_beta(a, b)).exp()
}

/// Quantile of the Beta(a, b) distribution: the `x` with `I_x(a, b) = p`.
///
/// Closed forms for `a = 1` or `b = 1`; otherwise Newton's method on the
/// distribution function, safeguarded by a bracket that shrinks at every step
/// (a bisection step replaces any Newton step leaving the bracket). Upper
/// quantiles (`p > 1/2`) are computed as `1 − quantile(1 − p; b, a)` so that
/// the solved tail is always the small one.
fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    if p > 0.5 {
        return 1.0 - beta_quantile_lower(1.0 - p, b, a);
    }
    beta_quantile_lower(p, a, b)
}

fn beta_quantile_lower(p: f64, a: f64, b: f64) -> f64 {
    if b == 1.0 {
        // I_x(a, 1) = x^a.
        return p.powf(1.0 / a);
    }
    if a == 1.0 {
        // I_x(1, b) = 1 − (1 − x)^b.
        return -((-p).ln_1p() / b).exp_m1();
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    // Start from the small-x asymptote I_x(a, b) ≈ x^a / (a B(a, b)), which is
    // an upper bound of the root's neighbourhood for the lower tail, capped at
    // the mean.
    let mean = a / (a + b);
    let guess = ((p.ln() + a.ln() + ln_beta(a, b)) / a).exp();
    let mut x = if guess.is_finite() && guess > 0.0 && guess < mean { guess } else { mean };
    for _ in 0..1000 {
        let f = incomplete_beta(a, b, x) - p;
        if f == 0.0 {
            return x;
        }
        if f < 0.0 {
            lo = x;
        } else {
            hi = x;
        }
        let pdf = beta_pdf(a, b, x);
        let newton = x - f / pdf;
        let next = if pdf > 0.0 && newton.is_finite() && newton > lo && newton < hi { newton } else { 0.5 * (lo + hi) };
        let step = (next - x).abs();
        x = next;
        if step <= 1e-15 * x || hi - lo <= 1e-15 * x {
            break;
        }
    }
    x
}

/// Exact (Clopper–Pearson) two-sided confidence interval for a binomial
/// proportion `k / n` at level `1 − alpha`.
///
/// `lower` is the `alpha/2` quantile of Beta(k, n − k + 1) (0 when `k = 0`),
/// `upper` the `1 − alpha/2` quantile of Beta(k + 1, n − k) (1 when `k = n`);
/// the same as `scipy.stats.beta.ppf` to about 1e-12.
///
/// # Errors
///
/// [`Error::Invalid`] when `n = 0`, `k > n` or `alpha` is not in `(0, 1)`.
pub fn clopper_pearson(k: u64, n: u64, alpha: f64) -> Result<(f64, f64)> {
    if n == 0 {
        return Err(Error::Invalid("Clopper–Pearson interval needs at least one trial (n = 0)".into()));
    }
    if k > n {
        return Err(Error::Invalid(format!("Clopper–Pearson interval: {k} successes out of {n} trials")));
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::Invalid(format!("confidence level alpha must be in (0, 1), got {alpha}")));
    }
    let (kf, nf) = (k as f64, n as f64);
    let lower = if k == 0 { 0.0 } else { beta_quantile(alpha / 2.0, kf, nf - kf + 1.0) };
    let upper = if k == n { 1.0 } else { beta_quantile(1.0 - alpha / 2.0, kf + 1.0, nf - kf) };
    Ok((lower, upper))
}

// ---------------------------------------------------------------------------
// Bootstrap
// ---------------------------------------------------------------------------

/// Seeded, reproducible percentile bootstrap.
///
/// Resample `r` (0-based) draws `n` row indices uniformly with replacement
/// from a xoshiro256** stream whose state comes from SplitMix64 seeded with
/// `mix(seed) ^ mix(r + 1)` (`mix` = SplitMix64's output function; see
/// [`Bootstrap::multiplicities`]). Each resample thus has its own stream that
/// depends only on `(seed, r)`: results are bit-identical for a given seed
/// whatever the number of threads. Resamples run in parallel (rayon).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    /// Number of resamples (1000 by default).
    pub resamples: usize,
    /// Seed of the random stream (0 by default).
    pub seed: u64,
    /// Interval level is `1 − alpha` (0.05 by default).
    pub alpha: f64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap { resamples: 1000, seed: 0, alpha: 0.05 }
    }
}

impl Bootstrap {
    /// Fills `out` (resized to `n`) with the multiplicities of resample
    /// `index`: `out[i]` is how many times row `i` was drawn among the `n`
    /// draws, so the values sum to `n`.
    pub fn multiplicities(&self, n: usize, index: usize, out: &mut Vec<u32>) {
        out.clear();
        out.resize(n, 0);
        if n == 0 {
            return;
        }
        let mut rng = Xoshiro256::from_seed(mix64(self.seed) ^ mix64(index as u64 + 1));
        for _ in 0..n {
            out[rng.below(n as u64) as usize] += 1;
        }
    }

    /// Percentile bootstrap interval of a statistic over `n` rows.
    ///
    /// `statistic` receives the per-row multiplicities of one resample (length
    /// `n`, see [`Bootstrap::multiplicities`]) and returns the statistic on
    /// that resample, or `None` when it is undefined there (such resamples,
    /// and NaN values, are left out). The interval is the `alpha/2` and
    /// `1 − alpha/2` quantiles of the defined resample values, with numpy's
    /// default (`"linear"`) percentile interpolation: for sorted values
    /// `v_0 ≤ … ≤ v_{m−1}` and `h = (m − 1) q`, the quantile is
    /// `v_⌊h⌋ + (h − ⌊h⌋)(v_⌊h⌋+1 − v_⌊h⌋)`.
    ///
    /// Returns `None` when `n = 0`, `resamples = 0`, `alpha` is not in `(0, 1)`
    /// or no resample gives a defined value.
    pub fn bootstrap_percentile<F: Fn(&[u32]) -> Option<f64> + Sync>(
        &self,
        n: usize,
        statistic: F,
    ) -> Option<(f64, f64)> {
        if n == 0 || self.resamples == 0 || !(self.alpha > 0.0 && self.alpha < 1.0) {
            return None;
        }
        let values: Vec<Option<f64>> = (0..self.resamples)
            .into_par_iter()
            .map_init(Vec::new, |buf, r| {
                self.multiplicities(n, r, buf);
                statistic(buf)
            })
            .collect();
        let mut values: Vec<f64> = values.into_iter().flatten().filter(|v| !v.is_nan()).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_unstable_by(f64::total_cmp);
        Some((percentile_sorted(&values, self.alpha / 2.0), percentile_sorted(&values, 1.0 - self.alpha / 2.0)))
    }

    /// Percentile bootstrap interval of the mean of `values` (the mean of a
    /// resample weights each value by its multiplicity). `None` when `values`
    /// is empty (or as in [`Bootstrap::bootstrap_percentile`]).
    pub fn bootstrap_mean(&self, values: &[f64]) -> Option<(f64, f64)> {
        self.bootstrap_percentile(values.len(), |w| {
            let (mut sum, mut count) = (0.0f64, 0u64);
            for (&v, &k) in values.iter().zip(w) {
                if k > 0 {
                    sum += f64::from(k) * v;
                    count += u64::from(k);
                }
            }
            (count > 0).then(|| sum / count as f64)
        })
    }
}

/// Quantile `q ∈ [0, 1]` of sorted values with linear interpolation, computed
/// as numpy does (`a + (b − a) t`, or `b − (b − a)(1 − t)` when `t ≥ 1/2`).
fn percentile_sorted(v: &[f64], q: f64) -> f64 {
    let h = (v.len() - 1) as f64 * q;
    let lo = (h.floor() as usize).min(v.len() - 1);
    let hi = (lo + 1).min(v.len() - 1);
    let t = h - lo as f64;
    let (a, b) = (v[lo], v[hi]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_known_values() {
        // Γ(1) = Γ(2) = 1, Γ(5) = 24, Γ(1/2) = √π, Γ(0.1) ≈ 9.513507698668732.
        assert!(ln_gamma(1.0).abs() < 1e-14);
        assert!(ln_gamma(2.0).abs() < 1e-14);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-14);
        assert!((ln_gamma(0.1) - 9.513_507_698_668_732f64.ln()).abs() < 1e-13);
        // ln 100! = 363.73937555556347.
        assert!((ln_gamma(101.0) - 363.739_375_555_563_47).abs() < 1e-10);
    }

    #[test]
    fn incomplete_beta_closed_forms() {
        // I_x(a, 1) = x^a, I_x(1, b) = 1 − (1 − x)^b, I_x(2, 2) = 3x² − 2x³.
        for &x in &[0.01, 0.3, 0.5, 0.77, 0.999] {
            assert!((incomplete_beta(3.0, 1.0, x) - x * x * x).abs() < 1e-14);
            assert!((incomplete_beta(1.0, 4.0, x) - (1.0 - (1.0 - x).powi(4))).abs() < 1e-14);
            assert!((incomplete_beta(2.0, 2.0, x) - (3.0 * x * x - 2.0 * x * x * x)).abs() < 1e-14);
        }
    }

    #[test]
    fn clopper_pearson_hand_values() {
        // k = 0: upper = 1 − (α/2)^(1/n). k = n: lower = (α/2)^(1/n).
        let (lo, hi) = clopper_pearson(0, 10, 0.05).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - (1.0 - 0.025f64.powf(0.1))).abs() < 1e-14);
        let (lo, hi) = clopper_pearson(10, 10, 0.05).unwrap();
        assert_eq!(hi, 1.0);
        assert!((lo - 0.025f64.powf(0.1)).abs() < 1e-14);
        // k = 1, n = 2: lower solves 1 − (1−x)² = 0.025, upper solves x² = 0.975.
        let (lo, hi) = clopper_pearson(1, 2, 0.05).unwrap();
        assert!((lo - (1.0 - 0.975f64.sqrt())).abs() < 1e-14);
        assert!((hi - 0.975f64.sqrt()).abs() < 1e-14);
        // Symmetry: interval for k is the mirror of the one for n − k.
        let (a, b) = clopper_pearson(37, 120, 0.005).unwrap();
        let (c, d) = clopper_pearson(83, 120, 0.005).unwrap();
        assert!((a - (1.0 - d)).abs() < 1e-13 && (b - (1.0 - c)).abs() < 1e-13);
        // I at the bounds hits α/2 and 1 − α/2.
        assert!((incomplete_beta(37.0, 84.0, a) - 0.0025).abs() < 1e-13);
        assert!((incomplete_beta(38.0, 83.0, b) - 0.9975).abs() < 1e-13);
    }

    #[test]
    fn clopper_pearson_rejects_bad_arguments() {
        assert!(matches!(clopper_pearson(0, 0, 0.05), Err(Error::Invalid(_))));
        assert!(matches!(clopper_pearson(3, 2, 0.05), Err(Error::Invalid(_))));
        assert!(matches!(clopper_pearson(1, 2, 0.0), Err(Error::Invalid(_))));
        assert!(matches!(clopper_pearson(1, 2, 1.0), Err(Error::Invalid(_))));
        assert!(matches!(clopper_pearson(1, 2, f64::NAN), Err(Error::Invalid(_))));
    }

    #[test]
    fn multiplicities_sum_to_n_and_are_reproducible() {
        let b = Bootstrap { resamples: 10, seed: 42, alpha: 0.05 };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        b.multiplicities(1000, 3, &mut x);
        b.multiplicities(1000, 3, &mut y);
        assert_eq!(x, y);
        assert_eq!(x.iter().map(|&k| k as usize).sum::<usize>(), 1000);
        b.multiplicities(1000, 4, &mut y);
        assert_ne!(x, y);
        // About 1 − 1/e of the rows are drawn at least once.
        let drawn = x.iter().filter(|&&k| k > 0).count() as f64 / 1000.0;
        assert!((drawn - 0.632).abs() < 0.05, "{drawn}");
    }

    fn sample(n: usize) -> Vec<f64> {
        let mut rng = Xoshiro256::from_seed(7);
        (0..n).map(|_| rng.unit()).collect()
    }

    #[test]
    fn bootstrap_is_identical_across_thread_counts() {
        let values = sample(500);
        let b = Bootstrap { resamples: 300, seed: 9, alpha: 0.05 };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| b.bootstrap_mean(&values))
        };
        let one = run(1);
        assert!(one.is_some());
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        // A different seed gives a different interval.
        let other = Bootstrap { seed: 10, ..b }.bootstrap_mean(&values);
        assert_ne!(one, other);
    }

    #[test]
    fn bootstrap_interval_contains_estimate_and_narrows() {
        let b = Bootstrap { resamples: 400, seed: 1, alpha: 0.05 };
        let small = sample(100);
        let large = sample(10_000);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (lo_s, hi_s) = b.bootstrap_mean(&small).unwrap();
        let (lo_l, hi_l) = b.bootstrap_mean(&large).unwrap();
        assert!(lo_s <= mean(&small) && mean(&small) <= hi_s);
        assert!(lo_l <= mean(&large) && mean(&large) <= hi_l);
        assert!(hi_l - lo_l < (hi_s - lo_s) / 3.0, "{lo_s} {hi_s} {lo_l} {hi_l}");
        // Uniform(0,1) has sd 0.2887: the 95 % half-width for n = 10 000 is ≈ 0.00566.
        assert!(((hi_l - lo_l) / 2.0 - 0.00566).abs() < 0.0015);
    }

    #[test]
    fn bootstrap_degenerate_inputs() {
        let b = Bootstrap::default();
        assert_eq!(b.bootstrap_mean(&[]), None);
        assert_eq!(Bootstrap { resamples: 0, ..b }.bootstrap_mean(&[1.0]), None);
        assert_eq!(Bootstrap { alpha: 1.5, ..b }.bootstrap_mean(&[1.0]), None);
        assert_eq!(b.bootstrap_mean(&[2.5]), Some((2.5, 2.5)));
        assert_eq!(b.bootstrap_percentile(10, |_| None), None);
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile([1, 2, 4, 8], [2.5, 50, 97.5]) = [1.075, 3.0, 7.7].
        let v = [1.0, 2.0, 4.0, 8.0];
        assert!((percentile_sorted(&v, 0.025) - 1.075).abs() < 1e-15);
        assert!((percentile_sorted(&v, 0.5) - 3.0).abs() < 1e-15);
        assert!((percentile_sorted(&v, 0.975) - 7.7).abs() < 1e-14);
        assert_eq!(percentile_sorted(&v, 1.0), 8.0);
        assert_eq!(percentile_sorted(&v, 0.0), 1.0);
    }
}
