//! Tests of `labelscope_core::votes` against independent computations:
//!
//! * one EM step on a tiny example, with every value derived by hand (in the
//!   comments) as fractions;
//! * the fixed-point equations of EM, re-evaluated by separate test code on
//!   the returned parameters and posteriors;
//! * simulated workers with known confusion matrices (good, adversarial,
//!   spammers, a "maybe"-heavy one): Dawid-Skene must recover the matrices
//!   and the prior, match the posteriors computed with the true parameters,
//!   and beat majority vote;
//! * monotonicity of the EM objective (and of the log-likelihood without
//!   smoothing);
//! * an independent numpy implementation (embedded below), compared value by
//!   value on binary and 3-class cases. The interpreter is
//!   `$LABELSCOPE_PYTHON` (default `python3`); when it or numpy is missing
//!   that test prints a message and passes, unless `CI=true`, where it fails;
//! * edge cases and errors.

// Index loops over workers × classes × answers read like the formulas.
#![allow(clippy::needless_range_loop)]

use std::io::Write;
use std::process::{Command, Stdio};

use labelscope_core::rng::Xoshiro256;
use labelscope_core::votes::{
    dawid_skene, dawid_skene_k, majority, threshold_sets, Answer, DsOptions, MaybePolicy, SymbolVote, Vote,
};
use labelscope_core::Error;
use serde_json::{json, Value};

fn vote(item: u32, worker: u32, answer: Answer) -> Vote {
    Vote { item, worker, answer }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

// ---------------------------------------------------------------------------
// Hand-derived example.
// ---------------------------------------------------------------------------

/// Items 0..4, workers 0..3 (worker 2 never votes, item 3 has no votes):
///
/// ```text
/// item 0: w0 yes, w1 yes     soft majority T = 1
/// item 1: w0 yes, w1 no      T = 1/2
/// item 2: w0 no,  w1 maybe   T = (0 + 1/2) / 2 = 1/4
/// ```
///
/// One iteration with smoothing α = 1 (rows: present, absent; columns: yes,
/// no, maybe; "absent" weights are 1 − T = 0, 1/2, 3/4):
///
/// ```text
/// prior  = (1 + 1 + 1/2 + 1/4) / (2 + 3) = 2.75 / 5 = 0.55
/// w0 present: (1 + 1.5, 1 + 0.25, 1) / 4.75 = (10, 5, 4) / 19
/// w0 absent:  (1 + 0.5, 1 + 0.75, 1) / 4.25 = (6, 7, 4) / 17
/// w1 present: (1 + 1, 1 + 0.5, 1 + 0.25) / 4.75 = (8, 6, 5) / 19
/// w1 absent:  (1 + 0, 1 + 0.5, 1 + 0.75) / 4.25 = (4, 6, 7) / 17
/// w2: no votes, both rows (1, 1, 1) / 3
/// ```
///
/// E-step, `a_i = 0.55 Π e(present)`, `b_i = 0.45 Π e(absent)`:
///
/// ```text
/// item 0: a = .55·(10/19)(8/19) = .121884, b = .45·(6/17)(4/17) = .037370, P = .765342
/// item 1: a = .55·(10/19)(6/19) = .091413, b = .45·(6/17)(6/17) = .056055, P = .619881
/// item 2: a = .55·(5/19)(5/19)  = .038089, b = .45·(7/17)(7/17) = .076298, P = .332983
/// item 3: no votes, P = prior = .55
/// log L = Σ ln(a_i + b_i) = -5.919574
/// ```
#[test]
fn votes_one_em_step_by_hand() {
    use Answer::*;
    let votes = [vote(0, 0, Yes), vote(0, 1, Yes), vote(1, 0, Yes), vote(1, 1, No), vote(2, 0, No), vote(2, 1, Maybe)];
    let opts = DsOptions { max_iter: 1, tol: 0.0, smoothing: 1.0 };
    let r = dawid_skene(4, 3, &votes, &opts).expect("dawid_skene");
    assert_eq!(r.iterations, 1);
    assert!(!r.converged);

    let eps = 1e-12;
    assert!(close(r.prior, 0.55, eps), "prior {}", r.prior);
    let expect_conf = [
        [[10.0 / 19.0, 5.0 / 19.0, 4.0 / 19.0], [6.0 / 17.0, 7.0 / 17.0, 4.0 / 17.0]],
        [[8.0 / 19.0, 6.0 / 19.0, 5.0 / 19.0], [4.0 / 17.0, 6.0 / 17.0, 7.0 / 17.0]],
        [[1.0 / 3.0; 3]; 2],
    ];
    for (w, (got, want)) in r.confusion.iter().zip(&expect_conf).enumerate() {
        for c in 0..2 {
            for a in 0..3 {
                assert!(close(got[c][a], want[c][a], eps), "worker {w} [{c}][{a}]: {} vs {}", got[c][a], want[c][a]);
            }
        }
    }
    let a =
        [0.55 * (10.0 / 19.0) * (8.0 / 19.0), 0.55 * (10.0 / 19.0) * (6.0 / 19.0), 0.55 * (5.0 / 19.0) * (5.0 / 19.0)];
    let b =
        [0.45 * (6.0 / 17.0) * (4.0 / 17.0), 0.45 * (6.0 / 17.0) * (6.0 / 17.0), 0.45 * (7.0 / 17.0) * (7.0 / 17.0)];
    for i in 0..3 {
        let want = a[i] / (a[i] + b[i]);
        assert!(close(r.posterior[i], want, eps), "item {i}: {} vs {want}", r.posterior[i]);
    }
    assert!(close(r.posterior[0], 0.765342, 1e-6));
    assert!(close(r.posterior[1], 0.619881, 1e-6));
    assert!(close(r.posterior[2], 0.332983, 1e-6));
    assert!(close(r.posterior[3], 0.55, eps), "item without votes gets the prior");

    let ll: f64 = (0..3).map(|i| (a[i] + b[i]).ln()).sum();
    assert!(close(ll, -5.919574, 1e-6));
    assert!(close(r.log_likelihood, ll, 1e-12), "{} vs {ll}", r.log_likelihood);
    assert_eq!(r.log_likelihood_trace.len(), 1);
    // Objective = log L + α (ln π + ln(1 − π) + Σ ln e over all 3 workers' rows).
    let log_rows: f64 = expect_conf.iter().flatten().flatten().map(|e| e.ln()).sum();
    let objective = ll + 1.0 * (0.55f64.ln() + 0.45f64.ln() + log_rows);
    assert!(close(r.objective_trace[0], objective, 1e-12), "{} vs {objective}", r.objective_trace[0]);
}

// ---------------------------------------------------------------------------
// Simulation.
// ---------------------------------------------------------------------------

/// Draws an index from the probabilities `p` (summing to 1).
fn categorical(rng: &mut Xoshiro256, p: &[f64]) -> usize {
    let u = rng.unit();
    let mut acc = 0.0;
    for (i, &x) in p.iter().enumerate() {
        acc += x;
        if u < acc {
            return i;
        }
    }
    p.len() - 1
}

/// True confusion matrices ([present, absent] × [yes, no, maybe]).
fn sim_workers() -> Vec<[[f64; 3]; 2]> {
    vec![
        // Good workers.
        [[0.90, 0.05, 0.05], [0.05, 0.90, 0.05]],
        [[0.80, 0.10, 0.10], [0.10, 0.80, 0.10]],
        [[0.75, 0.15, 0.10], [0.05, 0.85, 0.10]],
        [[0.85, 0.05, 0.10], [0.15, 0.70, 0.15]],
        [[0.70, 0.20, 0.10], [0.20, 0.70, 0.10]],
        // Adversarial: answers mostly the opposite.
        [[0.15, 0.75, 0.10], [0.75, 0.15, 0.10]],
        [[0.10, 0.85, 0.05], [0.80, 0.15, 0.05]],
        // Spammers: answers do not depend on the truth.
        [[0.60, 0.30, 0.10], [0.60, 0.30, 0.10]],
        [[0.34, 0.33, 0.33], [0.34, 0.33, 0.33]],
        // Unsure a lot, but informative when not.
        [[0.30, 0.10, 0.60], [0.05, 0.35, 0.60]],
    ]
}

struct Sim {
    truth: Vec<bool>,
    votes: Vec<Vote>,
    workers: Vec<[[f64; 3]; 2]>,
}

/// `n` items with prior 0.3, each answered by `per_item` distinct random workers.
fn simulate(seed: u64, n: usize, per_item: usize) -> Sim {
    let workers = sim_workers();
    let mut rng = Xoshiro256::from_seed(seed);
    let mut truth = Vec::with_capacity(n);
    let mut votes = Vec::new();
    let mut ids: Vec<usize> = (0..workers.len()).collect();
    for item in 0..n {
        let present = rng.unit() < 0.3;
        truth.push(present);
        // Partial Fisher-Yates: the first `per_item` of a random permutation.
        for s in 0..per_item {
            let t = s + rng.below((ids.len() - s) as u64) as usize;
            ids.swap(s, t);
            let w = ids[s];
            let a = categorical(&mut rng, &workers[w][usize::from(!present)]);
            votes.push(vote(item as u32, w as u32, Answer::ALL[a]));
        }
    }
    Sim { truth, votes, workers }
}

/// Posterior P(present) of each item under the *true* parameters (prior 0.3),
/// computed directly from Bayes' rule.
fn oracle_posterior(sim: &Sim) -> Vec<f64> {
    let mut num = vec![0.3f64; sim.truth.len()];
    let mut den_absent = vec![0.7f64; sim.truth.len()];
    for v in &sim.votes {
        let m = &sim.workers[v.worker as usize];
        num[v.item as usize] *= m[0][v.answer.index()];
        den_absent[v.item as usize] *= m[1][v.answer.index()];
    }
    num.iter().zip(&den_absent).map(|(p, a)| p / (p + a)).collect()
}

fn accuracy(p: &[f64], truth: &[bool]) -> f64 {
    p.iter().zip(truth).filter(|(p, t)| (**p >= 0.5) == **t).count() as f64 / truth.len() as f64
}

#[test]
fn votes_simulated_workers_are_recovered() {
    let sim = simulate(20_260_521, 2000, 6);
    let n_workers = sim.workers.len();
    let r = dawid_skene(sim.truth.len(), n_workers, &sim.votes, &DsOptions::default()).expect("dawid_skene");
    assert!(r.converged, "not converged after {} iterations", r.iterations);

    // Empirical confusion matrices given the truth (what an oracle would estimate).
    let mut counts = vec![[[0.0f64; 3]; 2]; n_workers];
    for v in &sim.votes {
        counts[v.worker as usize][usize::from(!sim.truth[v.item as usize])][v.answer.index()] += 1.0;
    }
    let mut worst_true = 0.0f64;
    let mut worst_empirical = 0.0f64;
    for w in 0..n_workers {
        for c in 0..2 {
            let total: f64 = counts[w][c].iter().sum();
            for a in 0..3 {
                worst_true = worst_true.max((r.confusion[w][c][a] - sim.workers[w][c][a]).abs());
                worst_empirical = worst_empirical.max((r.confusion[w][c][a] - counts[w][c][a] / total).abs());
            }
        }
    }
    eprintln!("largest confusion error: {worst_true:.4} (vs true), {worst_empirical:.4} (vs empirical)");
    assert!(worst_true < 0.06, "confusion matrices off by {worst_true}");
    assert!(worst_empirical < 0.04, "confusion matrices off the empirical ones by {worst_empirical}");
    let empirical_prior = sim.truth.iter().filter(|&&t| t).count() as f64 / sim.truth.len() as f64;
    assert!(close(r.prior, empirical_prior, 0.02), "prior {} vs {empirical_prior}", r.prior);

    let oracle = oracle_posterior(&sim);
    let mean_gap = r.posterior.iter().zip(&oracle).map(|(a, b)| (a - b).abs()).sum::<f64>() / oracle.len() as f64;
    let maj: Vec<f64> = majority(sim.truth.len(), &sim.votes, MaybePolicy::Half)
        .expect("majority")
        .iter()
        .map(|p| p.unwrap_or(0.5))
        .collect();
    let (acc_ds, acc_oracle, acc_maj) =
        (accuracy(&r.posterior, &sim.truth), accuracy(&oracle, &sim.truth), accuracy(&maj, &sim.truth));
    eprintln!(
        "accuracy: DS {acc_ds:.4}, oracle {acc_oracle:.4}, majority {acc_maj:.4}; mean |DS - oracle| {mean_gap:.4}"
    );
    assert!(mean_gap < 0.02, "posteriors differ from the true-parameter posteriors by {mean_gap} on average");
    assert!(acc_ds >= acc_oracle - 0.01, "DS accuracy {acc_ds} vs oracle {acc_oracle}");
    assert!(acc_ds >= acc_maj + 0.05, "DS accuracy {acc_ds} vs majority {acc_maj}");

    // ReaL-style label sets: one image per item, class 0, threshold 0.8.
    let items: Vec<(usize, u32)> = (0..sim.truth.len()).map(|i| (i, 0)).collect();
    let sets = threshold_sets(&r.posterior, &items, sim.truth.len(), 0.8).expect("threshold_sets");
    let kept = sets.iter().filter(|s| !s.is_empty()).count();
    let kept_true = sets.iter().zip(&sim.truth).filter(|(s, &t)| !s.is_empty() && t).count();
    assert!(kept > 0 && kept_true as f64 / kept as f64 > 0.97, "precision at 0.8: {kept_true}/{kept}");
}

#[test]
fn votes_objective_never_decreases() {
    let sim = simulate(7, 600, 4);
    for alpha in [0.0, 0.01, 1.0] {
        let opts = DsOptions { max_iter: 60, tol: 0.0, smoothing: alpha };
        let r = dawid_skene(sim.truth.len(), sim.workers.len(), &sim.votes, &opts).expect("dawid_skene");
        assert_eq!(r.objective_trace.len(), 60);
        assert_eq!(r.log_likelihood_trace.len(), 60);
        assert_eq!(r.log_likelihood, r.log_likelihood_trace[59]);
        for t in 1..60 {
            let (prev, cur) = (r.objective_trace[t - 1], r.objective_trace[t]);
            assert!(cur.is_finite());
            assert!(cur >= prev - 1e-9 * prev.abs().max(1.0), "alpha {alpha}: objective {prev} -> {cur} at {t}");
        }
        if alpha == 0.0 {
            assert_eq!(r.objective_trace, r.log_likelihood_trace);
        } else {
            assert!(r.objective_trace[0] < r.log_likelihood_trace[0], "the smoothing term is negative");
        }
    }

    // K = 3 classes, J = 4 symbols, random workers.
    let (k, j, n_items, n_workers) = (3usize, 4usize, 400usize, 6usize);
    let mut rng = Xoshiro256::from_seed(99);
    let mut votes = Vec::new();
    for item in 0..n_items as u32 {
        let class = rng.below(k as u64) as usize;
        for worker in 0..n_workers as u32 {
            if rng.unit() < 0.6 {
                // Right class symbol with probability 0.6, otherwise any symbol.
                let symbol = if rng.unit() < 0.6 { class as u32 } else { rng.below(j as u64) as u32 };
                votes.push(SymbolVote { item, worker, symbol });
            }
        }
    }
    let init: Vec<Vec<f64>> = (0..j).map(|s| (0..k).map(|c| f64::from(u8::from(s == c))).collect()).collect();
    for alpha in [0.0, 0.1] {
        let opts = DsOptions { max_iter: 40, tol: 0.0, smoothing: alpha };
        let r = dawid_skene_k(n_items, n_workers, k, j, &votes, &init, &opts).expect("dawid_skene_k");
        for t in 1..r.objective_trace.len() {
            let (prev, cur) = (r.objective_trace[t - 1], r.objective_trace[t]);
            assert!(cur >= prev - 1e-9 * prev.abs().max(1.0), "K=3, alpha {alpha}: {prev} -> {cur} at {t}");
        }
        for p in &r.posterior {
            assert!(close(p.iter().sum::<f64>(), 1.0, 1e-12));
        }
    }
}

/// At convergence the result must satisfy the EM equations, re-evaluated
/// here from scratch: the M-step of the returned posteriors gives the returned
/// parameters (up to the last change, below `tol`), and the E-step of the
/// returned parameters gives the returned posteriors (exactly).
#[test]
fn votes_converged_result_is_an_em_fixed_point() {
    let sim = simulate(3, 500, 5);
    let alpha = 0.05;
    let opts = DsOptions { max_iter: 2000, tol: 1e-12, smoothing: alpha };
    let n = sim.truth.len();
    let nw = sim.workers.len();
    let r = dawid_skene(n, nw, &sim.votes, &opts).expect("dawid_skene");
    assert!(r.converged);

    // E-step from the returned parameters.
    let mut a = vec![r.prior; n];
    let mut b = vec![1.0 - r.prior; n];
    for v in &sim.votes {
        a[v.item as usize] *= r.confusion[v.worker as usize][0][v.answer.index()];
        b[v.item as usize] *= r.confusion[v.worker as usize][1][v.answer.index()];
    }
    let mut ll = 0.0;
    for i in 0..n {
        assert!(close(r.posterior[i], a[i] / (a[i] + b[i]), 1e-12), "item {i}");
        ll += (a[i] + b[i]).ln();
    }
    assert!(close(r.log_likelihood, ll, 1e-9 * ll.abs()), "{} vs {ll}", r.log_likelihood);

    // M-step from the returned posteriors.
    let mut num = vec![[[alpha; 3]; 2]; nw];
    for v in &sim.votes {
        let p = r.posterior[v.item as usize];
        num[v.worker as usize][0][v.answer.index()] += p;
        num[v.worker as usize][1][v.answer.index()] += 1.0 - p;
    }
    for w in 0..nw {
        for c in 0..2 {
            let s: f64 = num[w][c].iter().sum();
            for x in 0..3 {
                assert!(close(r.confusion[w][c][x], num[w][c][x] / s, 1e-9), "worker {w} [{c}][{x}]");
            }
        }
    }
    let prior = (alpha + r.posterior.iter().sum::<f64>()) / (2.0 * alpha + n as f64);
    assert!(close(r.prior, prior, 1e-9));
}

/// Renaming items and workers and shuffling the votes renames the result.
#[test]
fn votes_relabelling_commutes() {
    let sim = simulate(11, 300, 4);
    let (n, nw) = (sim.truth.len(), sim.workers.len());
    let item_map: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % n as u32).collect(); // 7 is prime to 300
    let worker_map: Vec<u32> = (0..nw as u32).rev().collect();
    let mut moved: Vec<Vote> =
        sim.votes.iter().map(|v| vote(item_map[v.item as usize], worker_map[v.worker as usize], v.answer)).collect();
    moved.reverse();
    let opts = DsOptions::default();
    let r1 = dawid_skene(n, nw, &sim.votes, &opts).expect("original");
    let r2 = dawid_skene(n, nw, &moved, &opts).expect("relabelled");
    assert_eq!(r1.iterations, r2.iterations);
    for i in 0..n {
        assert!(close(r1.posterior[i], r2.posterior[item_map[i] as usize], 1e-9));
    }
    for w in 0..nw {
        let (m1, m2) = (r1.confusion[w], r2.confusion[worker_map[w] as usize]);
        for c in 0..2 {
            for a in 0..3 {
                assert!(close(m1[c][a], m2[c][a], 1e-9));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Independent numpy reference.
// ---------------------------------------------------------------------------

/// Dawid-Skene EM in numpy, written from the module documentation only
/// (dense count tensor, einsum M-step, scatter-add E-step). Reads a JSON list
/// of cases on stdin and writes a JSON list of results on stdout.
const REFERENCE: &str = r#"
import json, sys
import numpy as np

def run(d):
    I, W, K, J = d["n_items"], d["n_workers"], d["k"], d["j"]
    V = np.array(d["votes"], dtype=np.int64).reshape(-1, 3)
    init = np.array(d["init"], dtype=float).reshape(J, K)
    a = float(d["alpha"])
    N = np.zeros((I, W, J))
    np.add.at(N, (V[:, 0], V[:, 1], V[:, 2]), 1.0)
    has = N.sum(axis=(1, 2)) > 0
    T = N.sum(axis=1) @ init
    s = T.sum(axis=1, keepdims=True)
    T = np.where(s > 0, T / np.where(s > 0, s, 1.0), 1.0 / K)
    lls, objs = [], []
    converged = False
    for it in range(1, d["max_iter"] + 1):
        num = a + np.einsum("ik,iwj->wkj", T[has], N[has])
        den = num.sum(axis=2, keepdims=True)
        E = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0 / J)
        pn = a + T[has].sum(axis=0)
        pi = pn / pn.sum() if pn.sum() > 0 else np.full(K, 1.0 / K)
        with np.errstate(divide="ignore"):
            logE, logpi = np.log(E), np.log(pi)
        lu = np.tile(logpi, (I, 1))
        if len(V):
            np.add.at(lu, V[:, 0], logE[V[:, 1], :, V[:, 2]])
        m = lu.max(axis=1, keepdims=True)
        u = np.exp(lu - m)
        newT = u / u.sum(axis=1, keepdims=True)
        newT[~has] = pi
        ll = float((m[:, 0] + np.log(u.sum(axis=1)))[has].sum())
        pen = a * (logpi.sum() + logE.sum()) if a > 0 else 0.0
        delta = float(np.abs(newT[has] - T[has]).max()) if has.any() else 0.0
        T = newT
        lls.append(ll)
        objs.append(ll + pen)
        if delta < d["tol"]:
            converged = True
            break
    return {"posterior": T.tolist(), "confusion": E.tolist(), "prior": pi.tolist(), "iterations": it,
            "converged": converged, "ll": lls, "obj": objs}

json.dump([run(d) for d in json.load(sys.stdin)], sys.stdout)
"#;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Runs the reference; `None` (after a message) when Python or numpy is
/// missing and `CI` is not `true`.
fn run_reference(cases: &Value) -> Option<Value> {
    let python = std::env::var("LABELSCOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let ready = Command::new(&python).args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success());
    if !ready {
        if in_ci() {
            panic!("CI=true but {python} with numpy is not available");
        }
        eprintln!("SKIPPED Dawid-Skene numpy comparison: {python} with numpy is not available");
        return None;
    }
    let mut child = Command::new(&python)
        .args(["-c", REFERENCE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child.stdin.take().expect("stdin").write_all(cases.to_string().as_bytes()).expect("write cases");
    let out = child.wait_with_output().expect("run python");
    assert!(out.status.success(), "reference failed:\n{}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("reference output is JSON"))
}

struct KCase {
    n_items: usize,
    n_workers: usize,
    k: usize,
    j: usize,
    votes: Vec<SymbolVote>,
    init: Vec<Vec<f64>>,
    opts: DsOptions,
}

fn random_case(seed: u64, n_items: usize, n_workers: usize, k: usize, j: usize, opts: DsOptions) -> KCase {
    let mut rng = Xoshiro256::from_seed(seed);
    // Random confusion matrices with a diagonal-ish bias, random class prior.
    let conf: Vec<Vec<Vec<f64>>> = (0..n_workers)
        .map(|_| {
            (0..k)
                .map(|c| {
                    let mut row: Vec<f64> =
                        (0..j).map(|s| rng.unit() + if s % k == c { 2.0 * rng.unit() } else { 0.0 }).collect();
                    let sum: f64 = row.iter().sum();
                    row.iter_mut().for_each(|x| *x /= sum);
                    row
                })
                .collect()
        })
        .collect();
    let mut votes = Vec::new();
    // The last item and the last worker get no votes.
    for item in 0..n_items as u32 - 1 {
        let class = categorical(&mut rng, &vec![1.0 / k as f64; k]);
        for worker in 0..n_workers as u32 - 1 {
            let times = rng.below(3); // 0, 1 or 2 answers (repeats allowed)
            for _ in 0..times {
                let symbol = categorical(&mut rng, &conf[worker as usize][class]) as u32;
                votes.push(SymbolVote { item, worker, symbol });
            }
        }
    }
    let init: Vec<Vec<f64>> =
        (0..j).map(|s| (0..k).map(|c| if s % k == c { 1.0 } else { 0.25 * rng.unit() }).collect()).collect();
    KCase { n_items, n_workers, k, j, votes, init, opts }
}

#[test]
fn votes_matches_numpy_reference() {
    let binary_init = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.5, 0.5]];
    let mut cases = [
        random_case(1, 300, 7, 2, 3, DsOptions::default()),
        random_case(2, 200, 5, 2, 3, DsOptions { max_iter: 25, tol: 0.0, smoothing: 0.0 }),
        random_case(3, 250, 6, 3, 4, DsOptions { max_iter: 500, tol: 1e-9, smoothing: 0.5 }),
        random_case(4, 120, 4, 3, 3, DsOptions { max_iter: 30, tol: 0.0, smoothing: 0.01 }),
    ];
    for c in cases.iter_mut().take(2) {
        c.init = binary_init.clone();
    }
    let payload: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "n_items": c.n_items, "n_workers": c.n_workers, "k": c.k, "j": c.j,
                "votes": c.votes.iter().map(|v| [v.item, v.worker, v.symbol]).collect::<Vec<_>>(),
                "init": c.init, "alpha": c.opts.smoothing, "tol": c.opts.tol, "max_iter": c.opts.max_iter,
            })
        })
        .collect();
    let Some(expected) = run_reference(&Value::from(payload)) else { return };
    let f = |v: &Value| v.as_f64().expect("number");
    for (n, (case, want)) in cases.iter().zip(expected.as_array().expect("list")).enumerate() {
        let got = dawid_skene_k(case.n_items, case.n_workers, case.k, case.j, &case.votes, &case.init, &case.opts)
            .expect("dawid_skene_k");
        assert_eq!(got.iterations as u64, want["iterations"].as_u64().expect("iterations"), "case {n}");
        assert_eq!(got.converged, want["converged"].as_bool().expect("converged"), "case {n}");
        for (i, (p, q)) in got.posterior.iter().zip(want["posterior"].as_array().expect("posterior")).enumerate() {
            for (c, q) in p.iter().zip(q.as_array().expect("row")) {
                assert!(close(*c, f(q), 1e-9), "case {n}, item {i}: {c} vs {q}");
            }
        }
        for (w, (m, q)) in got.confusion.iter().zip(want["confusion"].as_array().expect("confusion")).enumerate() {
            let flat_q: Vec<f64> =
                q.as_array().expect("m").iter().flat_map(|r| r.as_array().expect("r")).map(f).collect();
            let flat_m: Vec<f64> = m.iter().flatten().copied().collect();
            assert_eq!(flat_m.len(), flat_q.len());
            for (a, b) in flat_m.iter().zip(&flat_q) {
                assert!(close(*a, *b, 1e-9), "case {n}, worker {w}: {a} vs {b}");
            }
        }
        for (a, b) in got.prior.iter().zip(want["prior"].as_array().expect("prior")) {
            assert!(close(*a, f(b), 1e-9), "case {n}: prior {a} vs {b}");
        }
        for (key, trace) in [("ll", &got.log_likelihood_trace), ("obj", &got.objective_trace)] {
            let q = want[key].as_array().expect("trace");
            assert_eq!(trace.len(), q.len(), "case {n} {key}");
            for (a, b) in trace.iter().zip(q) {
                assert!(close(*a, f(b), 1e-9 * a.abs().max(1.0)), "case {n} {key}: {a} vs {b}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Majority, label sets, edge cases and errors.
// ---------------------------------------------------------------------------

#[test]
fn votes_majority_by_hand() {
    use Answer::*;
    let votes =
        [vote(0, 0, Yes), vote(0, 1, Yes), vote(0, 2, No), vote(1, 0, Maybe), vote(1, 1, No), vote(2, 2, Maybe)];
    let half = majority(4, &votes, MaybePolicy::Half).expect("half");
    assert_eq!(half, vec![Some(2.0 / 3.0), Some(0.25), Some(0.5), None]);
    let ignore = majority(4, &votes, MaybePolicy::Ignore).expect("ignore");
    assert_eq!(ignore, vec![Some(2.0 / 3.0), Some(0.0), None, None]);
    assert_eq!(MaybePolicy::default(), MaybePolicy::Half);
    assert_eq!(majority(0, &[], MaybePolicy::Half).expect("empty"), Vec::<Option<f64>>::new());
    let e = majority(2, &[vote(0, 0, Yes), vote(5, 0, No)], MaybePolicy::Half).expect_err("bad item");
    assert!(matches!(e, Error::Mismatch(_)));
    let msg = e.to_string();
    assert!(msg.contains("vote 1") && msg.contains("item 5"), "{msg}");
}

#[test]
fn votes_threshold_sets_by_hand() {
    let items = [(0usize, 5u32), (0, 2), (1, 7), (0, 5), (2, 1), (0, 3)];
    let probs = [0.9, 0.8, 0.79, 0.95, 1.0, 0.1];
    assert_eq!(threshold_sets(&probs, &items, 4, 0.8).expect("f64"), vec![vec![2, 5], vec![], vec![1], vec![]]);
    assert_eq!(
        threshold_sets(&probs, &items, 3, 0.0).expect("all"),
        vec![vec![2, 3, 5], vec![7], vec![1]],
        "threshold 0 keeps every label"
    );
    let opt = [Some(0.9), Some(0.8), Some(0.79), None, None, Some(1.0)];
    assert_eq!(threshold_sets(&opt, &items, 3, 0.8).expect("option"), vec![vec![2, 3, 5], vec![], vec![]]);
    assert_eq!(threshold_sets::<f64>(&[], &[], 2, 0.5).expect("empty"), vec![Vec::<u32>::new(); 2]);

    for t in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
        let e = threshold_sets(&probs, &items, 3, t).expect_err("bad threshold");
        assert!(matches!(e, Error::Invalid(_)), "{t}: {e}");
        assert!(e.to_string().contains("threshold"));
    }
    assert!(threshold_sets(&probs, &items, 3, 1.0).is_ok());
    let e = threshold_sets(&probs[..5], &items, 3, 0.5).expect_err("lengths");
    assert!(matches!(e, Error::Mismatch(_)));
    let e = threshold_sets(&probs, &items, 2, 0.5).expect_err("image out of range");
    assert!(matches!(e, Error::Mismatch(_)) && e.to_string().contains("item 4") && e.to_string().contains("image 2"));
    for bad in [f64::NAN, 1.5, -0.5] {
        let e = threshold_sets(&[0.5, bad], &items[..2], 1, 0.5).expect_err("bad probability");
        assert!(matches!(e, Error::Invalid(_)) && e.to_string().contains("item 1"), "{e}");
    }
}

#[test]
fn votes_none_at_all() {
    for alpha in [0.0, 0.01] {
        let opts = DsOptions { smoothing: alpha, ..DsOptions::default() };
        let r = dawid_skene(5, 3, &[], &opts).expect("no votes");
        assert_eq!(r.posterior, vec![0.5; 5]);
        assert_eq!(r.prior, 0.5);
        assert!(r.confusion.iter().flatten().flatten().all(|&e| close(e, 1.0 / 3.0, 1e-15)));
        assert!(r.converged);
        assert_eq!(r.iterations, 1);
        assert_eq!(r.log_likelihood, 0.0);
        let r = dawid_skene(0, 0, &[], &opts).expect("nothing");
        assert!(r.posterior.is_empty() && r.confusion.is_empty() && r.converged);
    }
}

#[test]
fn votes_identical_answers_give_no_nan() {
    for answer in Answer::ALL {
        for alpha in [0.0, 0.01, 1.0] {
            let votes: Vec<Vote> = (0..5).flat_map(|i| (0..3).map(move |w| vote(i, w, answer))).collect();
            let opts = DsOptions { smoothing: alpha, ..DsOptions::default() };
            let r = dawid_skene(6, 3, &votes, &opts).expect("identical");
            let all =
                r.posterior.iter().chain([&r.prior, &r.log_likelihood]).chain(r.confusion.iter().flatten().flatten());
            for x in all {
                assert!(x.is_finite(), "{answer} alpha {alpha}: {r:?}");
            }
            for m in &r.confusion {
                for row in m {
                    assert!(close(row.iter().sum(), 1.0, 1e-12));
                }
            }
            match answer {
                Answer::Yes => assert!(r.posterior[..5].iter().all(|&p| p > 0.9), "{r:?}"),
                Answer::No => assert!(r.posterior[..5].iter().all(|&p| p < 0.1), "{r:?}"),
                // Symmetric: the soft majority is 1/2 and EM stays there.
                Answer::Maybe => assert!(r.posterior.iter().all(|&p| close(p, 0.5, 1e-12)), "{r:?}"),
            }
            assert!(close(r.posterior[5], r.prior, 0.0), "item without votes gets the prior");
        }
    }
    // One worker who said only "yes": the never-used answers keep a positive probability.
    let r = dawid_skene(3, 1, &[vote(0, 0, Answer::Yes), vote(1, 0, Answer::Yes)], &DsOptions::default())
        .expect("one worker");
    assert!(r.confusion[0][0][2] > 0.0 && r.confusion[0][0][1] > 0.0);
}

#[test]
fn votes_single_worker() {
    use Answer::*;
    let votes = [vote(0, 0, Yes), vote(1, 0, No), vote(2, 0, Maybe), vote(3, 0, Yes), vote(4, 0, No)];
    let r = dawid_skene(5, 1, &votes, &DsOptions::default()).expect("single worker");
    assert!(r.posterior.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p)));
    assert!(r.posterior[0] > r.posterior[2] && r.posterior[2] > r.posterior[1], "{:?}", r.posterior);
    assert_eq!(r.posterior[0], r.posterior[3]);
    assert_eq!(r.posterior[1], r.posterior[4]);
    assert!(r.log_likelihood.is_finite());
}

#[test]
fn votes_bad_ids_and_options_are_errors() {
    use Answer::*;
    let opts = DsOptions::default();
    let votes = [vote(0, 0, Yes), vote(1, 1, No), vote(2, 2, Maybe), vote(3, 7, Yes)];
    let e = dawid_skene(4, 5, &votes, &opts).expect_err("bad worker");
    let msg = e.to_string();
    assert!(matches!(e, Error::Mismatch(_)) && msg.contains("vote 3") && msg.contains("worker 7"), "{msg}");
    let e = dawid_skene(4, 0, &votes, &opts).expect_err("no workers");
    assert!(e.to_string().contains("vote 0") && e.to_string().contains("worker 0"), "{e}");
    let votes = [vote(0, 0, Yes), vote(10, 1, No)];
    let e = dawid_skene(4, 5, &votes, &opts).expect_err("bad item");
    let msg = e.to_string();
    assert!(matches!(e, Error::Mismatch(_)) && msg.contains("vote 1") && msg.contains("item 10"), "{msg}");

    let bad_opts = [
        DsOptions { max_iter: 0, ..opts },
        DsOptions { tol: -1e-9, ..opts },
        DsOptions { tol: f64::NAN, ..opts },
        DsOptions { smoothing: -0.5, ..opts },
        DsOptions { smoothing: f64::INFINITY, ..opts },
    ];
    for o in bad_opts {
        assert!(matches!(dawid_skene(1, 1, &[], &o), Err(Error::Invalid(_))), "{o:?}");
    }

    let init = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
    let sv = |item, worker, symbol| SymbolVote { item, worker, symbol };
    let e = dawid_skene_k(2, 2, 2, 2, &[sv(0, 0, 0), sv(1, 1, 2)], &init, &opts).expect_err("bad symbol");
    assert!(matches!(e, Error::Mismatch(_)) && e.to_string().contains("vote 1") && e.to_string().contains("symbol 2"));
    let e = dawid_skene_k(2, 2, 2, 2, &[sv(0, 3, 0)], &init, &opts).expect_err("bad worker");
    assert!(e.to_string().contains("vote 0") && e.to_string().contains("worker 3"));
    for bad_init in [vec![vec![1.0, 0.0]], vec![vec![1.0], vec![0.0, 1.0]], vec![vec![1.0, f64::NAN], vec![0.0, 1.0]]] {
        assert!(matches!(dawid_skene_k(2, 2, 2, 2, &[], &bad_init, &opts), Err(Error::Invalid(_))));
    }
    assert!(matches!(dawid_skene_k(2, 2, 0, 2, &[], &[vec![], vec![]], &opts), Err(Error::Invalid(_))));
    assert!(matches!(dawid_skene_k(2, 2, 2, 0, &[], &[], &opts), Err(Error::Invalid(_))));
}
