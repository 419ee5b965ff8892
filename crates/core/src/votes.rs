//! Label verification votes: from several annotators' yes / no / maybe
//! answers to label probabilities ([`majority`], [`dawid_skene`],
//! [`dawid_skene_k`]) and from probabilities to label sets
//! ([`threshold_sets`], ImageNet-ReaL style).
//!
//! The annotation studio's "Verify labels" task shows an annotator (a
//! *worker*) an image with one proposed label and asks whether the label
//! applies. Each (image, proposed label) pair is an *item*, indexed by the
//! caller (`0..n_items`); workers are indexed `0..n_workers`.
//!
//! # Dawid & Skene
//!
//! [`dawid_skene_k`] is the EM algorithm of Dawid & Skene (1979) with `K`
//! true classes and `J` answer symbols. Parameters: the class prior `π` and,
//! for every worker `w`, a `K × J` confusion matrix `e_w[k][j] = P(worker w
//! answers j | the true class is k)`. Votes are conditionally independent
//! given the true class; a worker who answers the same item several times
//! contributes every answer.
//!
//! * **Initialisation** (soft majority vote): the initial posterior of an item
//!   is proportional to the sum, over its votes, of a caller-given row
//!   `init[symbol]` (`K` non-negative weights), e.g. `yes → [1, 0]`,
//!   `no → [0, 1]`, `maybe → [½, ½]`; uniform when that sum is zero.
//! * **Iteration** `t = 1, 2, …, max_iter`: an M-step computes `π` and the
//!   confusion matrices from the current posteriors, then an E-step computes
//!   the exact posteriors under those parameters. The iteration stops after
//!   the first E-step in which no posterior of an item with votes changed by
//!   `tol` or more (`max |ΔT| < tol`, so `tol = 0` always runs `max_iter`
//!   iterations); the result then holds the parameters of that last M-step
//!   and the posteriors of that last E-step, which are consistent.
//! * **M-step with smoothing** `α = DsOptions::smoothing` (default `0.01`):
//!   `e_w[k][j] = (α + Σ_i T_ik n_iwj) / (Jα + Σ_i T_ik n_iw)` and
//!   `π_k = (α + Σ_i T_ik) / (Kα + m)`, the sums running over the `m` items
//!   that have at least one vote. This is the exact maximiser of the
//!   penalised objective `log L + α (Σ_k ln π_k + Σ_w Σ_k Σ_j ln e_w[k][j])`
//!   (MAP estimation under a Dirichlet(1 + α) prior), so EM never decreases
//!   it; with `α > 0` no probability is ever zero, so a worker who never said
//!   "maybe" gets a small but positive "maybe" probability, and a worker
//!   without votes gets uniform rows. With `α = 0` (plain maximum
//!   likelihood) a row without any mass is set to uniform.
//! * **Items without votes** do not enter the M-step (their likelihood is 1
//!   whatever the parameters) and their posterior is the prior `π`.
//! * **Log-likelihood**: `log L = Σ_i ln Σ_k π_k Π_{votes of i} e_w[k][j]`
//!   (natural log, over the items with votes), computed in log space.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// One annotator's answer to "does this label apply to this image?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// The label applies.
    Yes,
    /// The label does not apply.
    No,
    /// The annotator is unsure.
    Maybe,
}

impl Answer {
    /// The three answers, in symbol order (`Yes = 0`, `No = 1`, `Maybe = 2`).
    pub const ALL: [Answer; 3] = [Answer::Yes, Answer::No, Answer::Maybe];

    /// Parses `"yes"`, `"no"` or `"maybe"`, ignoring ASCII case and
    /// surrounding whitespace; anything else is an [`Error::Invalid`] that
    /// quotes the text.
    pub fn parse(s: &str) -> Result<Answer> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("yes") {
            Ok(Answer::Yes)
        } else if t.eq_ignore_ascii_case("no") {
            Ok(Answer::No)
        } else if t.eq_ignore_ascii_case("maybe") {
            Ok(Answer::Maybe)
        } else {
            Err(Error::Invalid(format!("answer {s:?}: expected \"yes\", \"no\" or \"maybe\"")))
        }
    }

    /// The answer's symbol index in confusion matrices: `Yes = 0`, `No = 1`,
    /// `Maybe = 2`.
    pub fn index(self) -> usize {
        match self {
            Answer::Yes => 0,
            Answer::No => 1,
            Answer::Maybe => 2,
        }
    }

    /// The lower-case name (`"yes"`, `"no"`, `"maybe"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Yes => "yes",
            Answer::No => "no",
            Answer::Maybe => "maybe",
        }
    }
}

impl FromStr for Answer {
    type Err = Error;

    /// Same as [`Answer::parse`].
    fn from_str(s: &str) -> Result<Answer> {
        Answer::parse(s)
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One worker's answer about one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vote {
    /// The item: an index (`< n_items`) into the caller's list of
    /// (image, proposed label) pairs.
    pub item: u32,
    /// The worker (annotator) index, `< n_workers`.
    pub worker: u32,
    /// The answer.
    pub answer: Answer,
}

/// One worker's answer about one item, with the answer as a symbol index
/// (`< n_symbols`), for [`dawid_skene_k`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SymbolVote {
    /// The item index, `< n_items`.
    pub item: u32,
    /// The worker index, `< n_workers`.
    pub worker: u32,
    /// The answer symbol, `< n_symbols`.
    pub symbol: u32,
}

/// How [`majority`] counts "maybe" votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaybePolicy {
    /// A "maybe" vote is left out: the fraction is `yes / (yes + no)`, and an
    /// item with only "maybe" votes gets `None`.
    Ignore,
    /// A "maybe" vote counts as half a "yes" and half a "no": the fraction is
    /// `(yes + maybe / 2) / (yes + no + maybe)` (an item with only "maybe"
    /// votes gets `0.5`). The default, and the initialisation of
    /// [`dawid_skene`].
    #[default]
    Half,
}

/// Checks `item < n_items` (and `worker < n_workers` when given) for vote `index`.
fn check_ids(index: usize, item: u32, n_items: usize, worker: Option<(u32, usize)>) -> Result<()> {
    if item as usize >= n_items {
        return Err(Error::Mismatch(format!(
            "vote {index}: item {item} is out of range (there are {n_items} items, ids 0..{n_items})"
        )));
    }
    if let Some((worker, n_workers)) = worker {
        if worker as usize >= n_workers {
            return Err(Error::Mismatch(format!(
                "vote {index}: worker {worker} is out of range (there are {n_workers} workers, ids 0..{n_workers})"
            )));
        }
    }
    Ok(())
}

/// Majority vote: per item, the fraction of "yes" among its votes, with
/// "maybe" votes counted as `maybe` says; `None` for an item without
/// (counted) votes. Every vote counts once, whoever cast it.
///
/// An item id `>= n_items` is an [`Error::Mismatch`] naming the vote index.
pub fn majority(n_items: usize, votes: &[Vote], maybe: MaybePolicy) -> Result<Vec<Option<f64>>> {
    let mut yes = vec![0.0f64; n_items];
    let mut total = vec![0.0f64; n_items];
    for (index, v) in votes.iter().enumerate() {
        check_ids(index, v.item, n_items, None)?;
        let i = v.item as usize;
        match (v.answer, maybe) {
            (Answer::Yes, _) => {
                yes[i] += 1.0;
                total[i] += 1.0;
            }
            (Answer::No, _) => total[i] += 1.0,
            (Answer::Maybe, MaybePolicy::Half) => {
                yes[i] += 0.5;
                total[i] += 1.0;
            }
            (Answer::Maybe, MaybePolicy::Ignore) => {}
        }
    }
    Ok(yes.iter().zip(&total).map(|(&y, &t)| if t > 0.0 { Some(y / t) } else { None }).collect())
}

/// Options of [`dawid_skene`] and [`dawid_skene_k`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DsOptions {
    /// Maximum number of EM iterations (M-step + E-step), at least 1.
    /// Default 200.
    pub max_iter: usize,
    /// Convergence tolerance on the largest change of an item posterior
    /// between two E-steps (finite, `>= 0`; `0` runs `max_iter` iterations).
    /// Default `1e-6`.
    pub tol: f64,
    /// Dirichlet (additive, Laplace-style) smoothing `α` of the confusion
    /// matrices and of the class prior (finite, `>= 0`); see the
    /// [module documentation](self). Default `0.01`.
    pub smoothing: f64,
}

impl Default for DsOptions {
    fn default() -> Self {
        DsOptions { max_iter: 200, tol: 1e-6, smoothing: 0.01 }
    }
}

/// Result of the binary [`dawid_skene`].
#[derive(Debug, Clone, PartialEq)]
pub struct DsResult {
    /// `P(label present | votes)` per item; the prior for items without votes.
    pub posterior: Vec<f64>,
    /// Per worker, `confusion[w][c][a] = P(worker w answers a | class c)`
    /// with class `c = 0` "present", `c = 1` "absent", and answer `a` the
    /// [`Answer::index`] (`yes`, `no`, `maybe`). Each row sums to 1.
    pub confusion: Vec<[[f64; 3]; 2]>,
    /// The prior `P(label present)`.
    pub prior: f64,
    /// Number of EM iterations run (`1..=max_iter`).
    pub iterations: usize,
    /// Whether the tolerance was reached within `max_iter` iterations.
    pub converged: bool,
    /// Log-likelihood (natural log) of the votes under the final parameters.
    pub log_likelihood: f64,
    /// Log-likelihood after each iteration's M-step (one entry per
    /// iteration; the last equals `log_likelihood`). Non-decreasing when
    /// `smoothing = 0`.
    pub log_likelihood_trace: Vec<f64>,
    /// The penalised objective that EM maximises (log-likelihood plus the
    /// smoothing term, see the [module documentation](self)) after each
    /// iteration's M-step; non-decreasing for every `smoothing`, and equal
    /// to `log_likelihood_trace` when `smoothing = 0`.
    pub objective_trace: Vec<f64>,
}

/// Result of the general [`dawid_skene_k`].
#[derive(Debug, Clone, PartialEq)]
pub struct DsKResult {
    /// `posterior[i][k] = P(true class k | votes on item i)`; the prior for
    /// items without votes.
    pub posterior: Vec<Vec<f64>>,
    /// `confusion[w][k][j] = P(worker w answers j | true class k)`, shape
    /// `n_workers × K × J`; each row sums to 1.
    pub confusion: Vec<Vec<Vec<f64>>>,
    /// The class prior, `K` values summing to 1.
    pub prior: Vec<f64>,
    /// Number of EM iterations run (`1..=max_iter`).
    pub iterations: usize,
    /// Whether the tolerance was reached within `max_iter` iterations.
    pub converged: bool,
    /// Log-likelihood (natural log) of the votes under the final parameters.
    pub log_likelihood: f64,
    /// Log-likelihood after each iteration's M-step (one entry per
    /// iteration). Non-decreasing when `smoothing = 0`.
    pub log_likelihood_trace: Vec<f64>,
    /// The penalised objective that EM maximises after each iteration's
    /// M-step; non-decreasing for every `smoothing`.
    pub objective_trace: Vec<f64>,
}

/// Binary Dawid & Skene: true classes "present" / "absent", answers yes /
/// no / maybe (see the [module documentation](self) for the exact
/// algorithm). Initialised from the soft majority vote of
/// [`MaybePolicy::Half`] (`yes → 1`, `no → 0`, `maybe → ½` towards
/// "present"). Built on [`dawid_skene_k`] with `K = 2`, `J = 3`.
///
/// Errors: an item id `>= n_items` or a worker id `>= n_workers` is an
/// [`Error::Mismatch`] naming the vote index and the bad id; bad options
/// are an [`Error::Invalid`].
pub fn dawid_skene(n_items: usize, n_workers: usize, votes: &[Vote], opts: &DsOptions) -> Result<DsResult> {
    let symbol_votes: Vec<SymbolVote> =
        votes.iter().map(|v| SymbolVote { item: v.item, worker: v.worker, symbol: v.answer.index() as u32 }).collect();
    let init = [vec![1.0, 0.0], vec![0.0, 1.0], vec![0.5, 0.5]];
    let r = dawid_skene_k(n_items, n_workers, 2, 3, &symbol_votes, &init, opts)?;
    let row = |v: &[f64]| [v[0], v[1], v[2]];
    Ok(DsResult {
        posterior: r.posterior.iter().map(|p| p[0]).collect(),
        confusion: r.confusion.iter().map(|m| [row(&m[0]), row(&m[1])]).collect(),
        prior: r.prior[0],
        iterations: r.iterations,
        converged: r.converged,
        log_likelihood: r.log_likelihood,
        log_likelihood_trace: r.log_likelihood_trace,
        objective_trace: r.objective_trace,
    })
}

fn check_options(opts: &DsOptions) -> Result<()> {
    if opts.max_iter == 0 {
        return Err(Error::Invalid("Dawid-Skene: max_iter must be at least 1".into()));
    }
    if !(opts.tol.is_finite() && opts.tol >= 0.0) {
        return Err(Error::Invalid(format!("Dawid-Skene: tol must be finite and >= 0, got {}", opts.tol)));
    }
    if !(opts.smoothing.is_finite() && opts.smoothing >= 0.0) {
        return Err(Error::Invalid(format!("Dawid-Skene: smoothing must be finite and >= 0, got {}", opts.smoothing)));
    }
    Ok(())
}

/// General Dawid & Skene EM with `n_classes` (`K >= 1`) true classes and
/// `n_symbols` (`J >= 1`) answer symbols (see the
/// [module documentation](self) for the exact algorithm).
///
/// `init` has one row per symbol, each of `K` finite non-negative weights:
/// an item's initial posterior is proportional to the sum of the rows of its
/// votes' symbols (uniform if that sum is zero). For the classic setting
/// where answers are class labels (`J = K`), pass the identity.
///
/// Errors: an item, worker or symbol id out of range is an
/// [`Error::Mismatch`] naming the vote index and the bad id; `K = 0`,
/// `J = 0`, a malformed `init` or bad options are an [`Error::Invalid`].
pub fn dawid_skene_k(
    n_items: usize,
    n_workers: usize,
    n_classes: usize,
    n_symbols: usize,
    votes: &[SymbolVote],
    init: &[Vec<f64>],
    opts: &DsOptions,
) -> Result<DsKResult> {
    check_options(opts)?;
    let (k, j) = (n_classes, n_symbols);
    if k == 0 || j == 0 {
        return Err(Error::Invalid(format!(
            "Dawid-Skene needs at least one class and one answer symbol, got {k} classes and {j} symbols"
        )));
    }
    if init.len() != j {
        return Err(Error::Invalid(format!(
            "Dawid-Skene: init has {} rows, expected one per answer symbol ({j})",
            init.len()
        )));
    }
    for (s, row) in init.iter().enumerate() {
        if row.len() != k {
            return Err(Error::Invalid(format!(
                "Dawid-Skene: init row {s} has {} weights, expected one per class ({k})",
                row.len()
            )));
        }
        if let Some(x) = row.iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
            return Err(Error::Invalid(format!("Dawid-Skene: init row {s} has weight {x}, expected finite and >= 0")));
        }
    }
    for (index, v) in votes.iter().enumerate() {
        check_ids(index, v.item, n_items, Some((v.worker, n_workers)))?;
        if v.symbol as usize >= j {
            return Err(Error::Mismatch(format!(
                "vote {index}: answer symbol {} is out of range (there are {j} symbols, ids 0..{j})",
                v.symbol
            )));
        }
    }
    let too_large = || Error::Invalid("Dawid-Skene: problem too large".into());
    let wk = n_workers.checked_mul(k).ok_or_else(too_large)?;
    wk.checked_mul(j).ok_or_else(too_large)?;
    n_items.checked_mul(k).ok_or_else(too_large)?;

    // Votes grouped by item (counting sort, stable).
    let mut start = vec![0usize; n_items + 1];
    for v in votes {
        start[v.item as usize + 1] += 1;
    }
    for i in 0..n_items {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut by_item = vec![(0usize, 0usize); votes.len()];
    for v in votes {
        let slot = &mut fill[v.item as usize];
        by_item[*slot] = (v.worker as usize, v.symbol as usize);
        *slot += 1;
    }
    let voted: Vec<usize> = (0..n_items).filter(|&i| start[i + 1] > start[i]).collect();

    // Initial posteriors (soft majority).
    let mut t = vec![1.0 / k as f64; n_items * k];
    for &i in &voted {
        let ti = &mut t[i * k..(i + 1) * k];
        ti.iter_mut().for_each(|x| *x = 0.0);
        for &(_, s) in &by_item[start[i]..start[i + 1]] {
            for (x, w) in ti.iter_mut().zip(&init[s]) {
                *x += w;
            }
        }
        normalise(ti);
    }

    let alpha = opts.smoothing;
    let mut conf = vec![0.0f64; wk * j];
    let mut prior = vec![0.0f64; k];
    let mut log_conf = vec![0.0f64; wk * j];
    let mut log_prior = vec![0.0f64; k];
    let mut new_t = t.clone();
    let mut lp = vec![0.0f64; k];
    let mut ll_trace = Vec::new();
    let mut obj_trace = Vec::new();
    let mut converged = false;
    let mut iterations = 0;
    for iter in 1..=opts.max_iter {
        // M-step.
        conf.iter_mut().for_each(|x| *x = alpha);
        for &i in &voted {
            let ti = &t[i * k..(i + 1) * k];
            for &(w, s) in &by_item[start[i]..start[i + 1]] {
                for (c, &p) in ti.iter().enumerate() {
                    conf[(w * k + c) * j + s] += p;
                }
            }
        }
        for row in conf.chunks_mut(j) {
            normalise(row);
        }
        prior.iter_mut().for_each(|x| *x = alpha);
        for &i in &voted {
            for (x, p) in prior.iter_mut().zip(&t[i * k..(i + 1) * k]) {
                *x += p;
            }
        }
        normalise(&mut prior);
        for (l, &p) in log_conf.iter_mut().zip(&conf) {
            *l = p.ln();
        }
        for (l, &p) in log_prior.iter_mut().zip(&prior) {
            *l = p.ln();
        }

        // E-step.
        let mut ll = 0.0;
        let mut delta = 0.0f64;
        for &i in &voted {
            lp.copy_from_slice(&log_prior);
            for &(w, s) in &by_item[start[i]..start[i + 1]] {
                for (c, l) in lp.iter_mut().enumerate() {
                    *l += log_conf[(w * k + c) * j + s];
                }
            }
            let m = lp.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let ti = &mut new_t[i * k..(i + 1) * k];
            if m == f64::NEG_INFINITY {
                // Impossible under every class (only reachable with smoothing 0).
                ti.copy_from_slice(&prior);
                ll = f64::NEG_INFINITY;
            } else {
                let mut sum = 0.0;
                for (x, &l) in ti.iter_mut().zip(&lp) {
                    *x = (l - m).exp();
                    sum += *x;
                }
                ti.iter_mut().for_each(|x| *x /= sum);
                ll += m + sum.ln();
            }
            for (a, b) in ti.iter().zip(&t[i * k..(i + 1) * k]) {
                delta = delta.max((a - b).abs());
            }
        }
        std::mem::swap(&mut t, &mut new_t);
        let penalty =
            if alpha > 0.0 { alpha * (log_prior.iter().sum::<f64>() + log_conf.iter().sum::<f64>()) } else { 0.0 };
        ll_trace.push(ll);
        obj_trace.push(ll + penalty);
        iterations = iter;
        if delta < opts.tol {
            converged = true;
            break;
        }
    }

    let mut posterior: Vec<Vec<f64>> = t.chunks(k).map(<[f64]>::to_vec).collect();
    for (i, p) in posterior.iter_mut().enumerate() {
        if start[i + 1] == start[i] {
            p.copy_from_slice(&prior);
        }
    }
    let confusion = conf.chunks(k * j).map(|m| m.chunks(j).map(<[f64]>::to_vec).collect()).collect();
    Ok(DsKResult {
        posterior,
        confusion,
        prior,
        iterations,
        converged,
        log_likelihood: ll_trace.last().copied().unwrap_or(0.0),
        log_likelihood_trace: ll_trace,
        objective_trace: obj_trace,
    })
}

/// Divides `v` by its sum; a vector summing to zero becomes uniform.
fn normalise(v: &mut [f64]) {
    let sum: f64 = v.iter().sum();
    if sum > 0.0 {
        v.iter_mut().for_each(|x| *x /= sum);
    } else {
        let u = 1.0 / v.len() as f64;
        v.iter_mut().for_each(|x| *x = u);
    }
}

/// Label sets from item probabilities (ImageNet-ReaL style): image `img`
/// gets class `c` when some item `n` with `items[n] == (img, c)` has
/// `probs[n] >= threshold` (ReaL used `0.8`). `probs` may be `&[f64]` (e.g.
/// [`DsResult::posterior`]) or `&[Option<f64>]` (e.g. from [`majority`];
/// `None` never keeps a label). Each of the `n_images` sets is sorted and
/// de-duplicated; images without kept labels get an empty set.
///
/// Errors: `threshold` outside `[0, 1]` (or NaN), or a probability that is
/// NaN or outside `[0, 1]`, is an [`Error::Invalid`]; `probs` and `items` of
/// different lengths, or an image index `>= n_images`, is an
/// [`Error::Mismatch`].
pub fn threshold_sets<P: Copy + Into<Option<f64>>>(
    probs: &[P],
    items: &[(usize, u32)],
    n_images: usize,
    threshold: f64,
) -> Result<Vec<Vec<u32>>> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(Error::Invalid(format!("threshold must be in [0, 1], got {threshold}")));
    }
    if probs.len() != items.len() {
        return Err(Error::Mismatch(format!(
            "{} probabilities for {} items (image, class): expected one per item",
            probs.len(),
            items.len()
        )));
    }
    let mut sets = vec![Vec::new(); n_images];
    for (n, (&p, &(img, class))) in probs.iter().zip(items).enumerate() {
        if img >= n_images {
            return Err(Error::Mismatch(format!(
                "item {n}: image {img} is out of range (there are {n_images} images, ids 0..{n_images})"
            )));
        }
        let Some(p) = p.into() else { continue };
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Invalid(format!("item {n}: probability {p} is not in [0, 1]")));
        }
        if p >= threshold {
            sets[img].push(class);
        }
    }
    for s in &mut sets {
        s.sort_unstable();
        s.dedup();
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_answers() {
        assert_eq!(Answer::parse("yes").ok(), Some(Answer::Yes));
        assert_eq!(Answer::parse(" NO ").ok(), Some(Answer::No));
        assert_eq!("MayBe".parse::<Answer>().ok(), Some(Answer::Maybe));
        for bad in ["", "y", "yess", "unsure"] {
            let e = Answer::parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        for a in Answer::ALL {
            assert_eq!(Answer::parse(&a.to_string()).ok(), Some(a));
            assert_eq!(Answer::ALL[a.index()], a);
        }
    }

    #[test]
    fn normalise_zero_is_uniform() {
        let mut v = [0.0, 0.0, 0.0, 0.0];
        normalise(&mut v);
        assert_eq!(v, [0.25; 4]);
    }
}
