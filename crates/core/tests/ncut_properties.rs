//! Property tests of `labelscope_core::ncut` over many seeded random and
//! structured feature maps (blobs of random shapes with prototype vectors and
//! noise, non-negative blob maps, smooth fields, pure noise; grids from 2x2 to
//! 26x26, d from 1 to 64, tau from -0.5 to 0.9, N from 1 to 5):
//!
//! - MaskCut: at most N masks, pairwise disjoint, each with area > 1% of the
//!   grid; the first a single 4-connected component (own flood fill), each
//!   later one within a single 4-connected component of itself plus the
//!   earlier masks (a later mask is its cut's connected raw mask minus earlier
//!   masks, so it may be split, as the module docs define it); cut indices
//!   strictly increasing and below N, and the first cut's mask equal to the
//!   corner-rule cut when that cut is kept;
//! - TokenCut: the bounding box is exactly the bounding box of its mask;
//! - the flip rules: the mask, seed and flip flag of a cut recomputed in the
//!   test from the returned (pre-flip) eigenvector with the documented rules;
//! - the eigenvector: the generalized eigen-equation `(D − A) x = λ D x` with a
//!   small residual, `A` rebuilt in f64 from the features (maps with a cosine
//!   too close to tau for f32 and f64 to agree are left out), `xᵀ D x = 1`,
//!   `xᵀ D 1 = 0`, the sign convention, and `λ` below the Rayleigh quotient of
//!   test vectors D-orthogonal to the constant (so it is the second-smallest);
//! - invariance: scaling all features by a positive constant, or permuting the
//!   feature dimensions, gives identical masks.

use labelscope_core::ncut::{maskcut_detailed, normalized_cut, second_eigenvector, tokencut, NcutParams};

/// SplitMix64, for reproducible test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn gauss(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * self.unit()).cos()
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// A generated test case.
struct Map {
    label: String,
    h: usize,
    w: usize,
    d: usize,
    f: Vec<f32>,
    params: NcutParams,
}

/// Blob label map: `k` random rectangles or discs (later ones on top), 0 = background.
fn blob_regions(rng: &mut Rng, h: usize, w: usize, k: usize) -> Vec<usize> {
    let mut reg = vec![0usize; h * w];
    for b in 1..=k {
        let (cr, cc) = (rng.below(h) as f64, rng.below(w) as f64);
        let (rr, rc) = (1.0 + rng.unit() * h as f64 / 3.0, 1.0 + rng.unit() * w as f64 / 3.0);
        let disc = rng.below(2) == 0;
        for r in 0..h {
            for c in 0..w {
                let (dr, dc) = ((r as f64 - cr) / rr, (c as f64 - cc) / rc);
                let inside = if disc { dr * dr + dc * dc <= 1.0 } else { dr.abs() <= 1.0 && dc.abs() <= 1.0 };
                if inside {
                    reg[r * w + c] = b;
                }
            }
        }
    }
    reg
}

fn gen_map(seed: u64) -> Map {
    let mut rng = Rng(seed);
    let grids =
        [(2usize, 2usize), (1, 6), (5, 1), (3, 4), (4, 4), (6, 7), (8, 8), (10, 13), (16, 12), (20, 20), (26, 26)];
    let (h, w) = if rng.below(3) == 0 { rng.pick(&grids) } else { (rng.range(4, 24), rng.range(4, 24)) };
    let d = rng.pick(&[1usize, 2, 3, 8, 16, 33, 64]);
    let tau = rng.pick(&[-0.5f32, -0.1, 0.0, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 0.9]);
    let max_masks = rng.range(1, 5);
    let kind = rng.below(4);
    let n = h * w;
    let mut f = Vec::with_capacity(n * d);
    let name = match kind {
        0 | 1 => {
            // Blobs with distinct prototypes plus noise; kind 1 is non-negative (all cosines > 0).
            let k = rng.range(1, 4);
            let reg = blob_regions(&mut rng, h, w, k);
            let protos: Vec<Vec<f64>> = (0..=k).map(|_| (0..d).map(|_| rng.gauss()).collect()).collect();
            let noise = 0.1 + rng.unit();
            for &r in &reg {
                for p in &protos[r] {
                    let v = p + noise * rng.gauss();
                    f.push(if kind == 1 { v.abs() as f32 } else { v as f32 });
                }
            }
            if kind == 0 {
                "blobs"
            } else {
                "non-negative blobs"
            }
        }
        2 => {
            // A smooth field: prototypes mixed with weights varying across the grid.
            let protos: Vec<Vec<f64>> = (0..3).map(|_| (0..d).map(|_| rng.gauss()).collect()).collect();
            let (fy, fx) = (0.5 + 3.0 * rng.unit(), 0.5 + 3.0 * rng.unit());
            let noise = 0.05 + 0.5 * rng.unit();
            for r in 0..h {
                for c in 0..w {
                    let (y, x) = (r as f64 / h as f64 * fy, c as f64 / w as f64 * fx);
                    let wts = [y.sin(), x.cos(), (x + y).sin()];
                    for j in 0..d {
                        let v: f64 =
                            wts.iter().zip(&protos).map(|(wk, p)| wk * p[j]).sum::<f64>() + noise * rng.gauss();
                        f.push(v as f32);
                    }
                }
            }
            "smooth field"
        }
        _ => {
            for _ in 0..n * d {
                f.push(rng.gauss() as f32);
            }
            "noise"
        }
    };
    // A zero feature vector is an error, not a property case: nudge one value.
    for i in 0..n {
        if f[i * d..(i + 1) * d].iter().all(|&v| v == 0.0) {
            f[i * d] = 1.0;
        }
    }
    let label = format!("seed {seed}: {name} {h}x{w} d={d} tau={tau} N={max_masks}");
    Map { label, h, w, d, f, params: NcutParams { tau, eps: 1e-5, max_masks } }
}

/// Number of generated maps.
const CASES: u64 = 160;

fn maps() -> impl Iterator<Item = Map> {
    (0..CASES).map(|i| gen_map(0xC0FFEE ^ (i.wrapping_mul(0x9E37_79B9))))
}

/// The 4-connected component of `fg` containing `seed`, by breadth-first flood fill.
fn flood(fg: &[bool], h: usize, w: usize, seed: usize) -> Vec<bool> {
    let mut out = vec![false; h * w];
    if !fg[seed] {
        return out;
    }
    let mut queue = std::collections::VecDeque::from([seed]);
    out[seed] = true;
    while let Some(i) = queue.pop_front() {
        let (r, c) = (i / w, i % w);
        let mut nbrs = Vec::with_capacity(4);
        if r > 0 {
            nbrs.push(i - w);
        }
        if r + 1 < h {
            nbrs.push(i + w);
        }
        if c > 0 {
            nbrs.push(i - 1);
        }
        if c + 1 < w {
            nbrs.push(i + 1);
        }
        for j in nbrs {
            if fg[j] && !out[j] {
                out[j] = true;
                queue.push_back(j);
            }
        }
    }
    out
}

fn count(m: &[bool]) -> usize {
    m.iter().filter(|&&b| b).count()
}

fn render(m: &[bool], w: usize) -> String {
    m.chunks(w).map(|r| r.iter().map(|&b| if b { '#' } else { '.' }).collect::<String>()).collect::<Vec<_>>().join("\n")
}

/// First index of the largest `key(x[i])`.
fn first_argmax(x: &[f64], key: impl Fn(f64) -> f64) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if key(v) > key(x[best]) {
            best = i;
        }
    }
    best
}

/// The documented step 4 (bipartition, seed, flip rules, component), written
/// independently: returns `(mask, seed, flipped)`.
fn decide(x: &[f64], h: usize, w: usize, corner_rule: bool) -> (Vec<bool>, usize, bool) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let fg: Vec<bool> = x.iter().map(|&v| v > mean).collect();
    let seed = first_argmax(x, f64::abs);
    let corners_fg = [0, w - 1, (h - 1) * w, h * w - 1].iter().filter(|&&c| fg[c]).count();
    let flip = (corner_rule && corners_fg >= 3) || !fg[seed];
    if !flip {
        return (flood(&fg, h, w, seed), seed, false);
    }
    let xf: Vec<f64> = x.iter().map(|&v| -v).collect();
    let mean_f = xf.iter().sum::<f64>() / n;
    let fgf: Vec<bool> = xf.iter().map(|&v| v > mean_f).collect();
    let seed_f = first_argmax(&xf, |v| v);
    (flood(&fgf, h, w, seed_f), seed_f, true)
}

/// Unit-normalised features in f64.
fn normalized(f: &[f32], n: usize, d: usize) -> Vec<f64> {
    let mut out = vec![0f64; n * d];
    for i in 0..n {
        let row = &f[i * d..(i + 1) * d];
        let norm = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
        for k in 0..d {
            out[i * d + k] = row[k] as f64 / norm;
        }
    }
    out
}

/// The cosine matrix in f64.
fn cosines(f: &[f32], n: usize, d: usize) -> Vec<f64> {
    let u = normalized(f, n, d);
    let mut c = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let v: f64 = (0..d).map(|k| u[i * d + k] * u[j * d + k]).sum();
            c[i * n + j] = v;
            c[j * n + i] = v;
        }
    }
    c
}

/// Whether some cosine is close enough to tau that f32 and f64 may disagree on the affinity.
fn near_tau(c: &[f64], tau: f32) -> bool {
    c.iter().any(|&v| (v - tau as f64).abs() < 1e-5)
}

#[test]
fn maskcut_masks_are_disjoint_connected_large_and_at_most_n() {
    let (mut with_masks, mut split) = (0, 0);
    for m in maps() {
        let (h, w, n) = (m.h, m.w, m.h * m.w);
        let masks = maskcut_detailed(&m.f, h, w, m.d, &m.params).unwrap_or_else(|e| panic!("{}: {e}", m.label));
        assert!(masks.len() <= m.params.max_masks, "{}: {} masks", m.label, masks.len());
        let mut seen = vec![false; n];
        let mut last_cut = None;
        for (k, mk) in masks.iter().enumerate() {
            let g = &mk.mask;
            assert_eq!(g.len(), n, "{}: mask length", m.label);
            let area = count(g);
            assert!(area as f64 > 0.01 * n as f64, "{}: mask {k} has area {area} of {n}", m.label);
            for i in 0..n {
                assert!(!(g[i] && seen[i]), "{}: mask {k} overlaps an earlier mask at {i}", m.label);
            }
            // Connectivity. The returned mask is the cut's 4-connected raw mask minus the
            // pixels of earlier returned masks (module docs), which can split it: the first
            // mask is 4-connected, and every mask lies in one 4-connected component of
            // itself plus the earlier masks.
            let first = g.iter().position(|&b| b).expect("non-empty");
            if k == 0 {
                assert_eq!(flood(g, h, w, first), *g, "{}: mask 0 is not 4-connected\n{}", m.label, render(g, w));
            } else {
                let with_earlier: Vec<bool> = g.iter().zip(&seen).map(|(&a, &b)| a || b).collect();
                let comp = flood(&with_earlier, h, w, first);
                assert!(
                    (0..n).all(|i| !g[i] || comp[i]),
                    "{}: mask {k} is not within one component of itself plus earlier masks\n{}",
                    m.label,
                    render(g, w)
                );
                if flood(g, h, w, first) != *g {
                    eprintln!("{}: mask {k} is split by earlier masks", m.label);
                    split += 1;
                }
            }
            assert!(mk.cut < m.params.max_masks, "{}: cut index {}", m.label, mk.cut);
            assert!(last_cut.is_none_or(|c| mk.cut > c), "{}: cut indices not increasing", m.label);
            assert!((-1e-9..=2.0 + 1e-9).contains(&mk.eigenvalue), "{}: eigenvalue {}", m.label, mk.eigenvalue);
            last_cut = Some(mk.cut);
            seen.iter_mut().zip(g).for_each(|(s, &b)| *s |= b);
        }
        // The first cut is the plain corner-rule normalized cut.
        let cut = normalized_cut(&m.f, h, w, m.d, &m.params, true).unwrap();
        if let Some(first) = masks.first().filter(|mk| mk.cut == 0) {
            assert_eq!(first.mask, cut.mask, "{}: first MaskCut mask", m.label);
        } else {
            assert!(count(&cut.mask) as f64 <= 0.01 * n as f64, "{}: first cut dropped although large", m.label);
        }
        with_masks += usize::from(!masks.is_empty());
    }
    eprintln!("{with_masks} of {CASES} maps gave a mask; {split} later masks are split by earlier ones");
    assert!(with_masks as u64 * 2 > CASES, "only {with_masks} of {CASES} maps gave a mask");
}

#[test]
fn tokencut_bbox_is_the_bbox_of_its_mask() {
    for m in maps() {
        let (h, w) = (m.h, m.w);
        let (mask, bbox) = tokencut(&m.f, h, w, m.d, &m.params).unwrap_or_else(|e| panic!("{}: {e}", m.label));
        let cells: Vec<(usize, usize)> = (0..h * w).filter(|&i| mask[i]).map(|i| (i / w, i % w)).collect();
        assert!(!cells.is_empty(), "{}: empty TokenCut mask", m.label);
        let want = [
            cells.iter().map(|c| c.0).min().unwrap_or(0),
            cells.iter().map(|c| c.1).min().unwrap_or(0),
            cells.iter().map(|c| c.0).max().unwrap_or(0),
            cells.iter().map(|c| c.1).max().unwrap_or(0),
        ];
        assert_eq!(bbox, want, "{}: bbox\n{}", m.label, render(&mask, w));
        // TokenCut is the cut without the corner rule.
        let cut = normalized_cut(&m.f, h, w, m.d, &m.params, false).unwrap();
        assert_eq!(cut.mask, mask, "{}: TokenCut mask", m.label);
    }
}

#[test]
fn flip_rules_hold_on_the_returned_eigenvector() {
    let (mut flips, mut corner_flips) = ([0usize; 2], 0);
    for m in maps() {
        let (h, w) = (m.h, m.w);
        let (_, x) = second_eigenvector(&m.f, h, w, m.d, &m.params).unwrap();
        for corner_rule in [true, false] {
            let cut = normalized_cut(&m.f, h, w, m.d, &m.params, corner_rule).unwrap();
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            assert_eq!(cut.eigenvector, x32, "{}: eigenvector of the cut is the pre-flip one", m.label);
            let (mask, seed, flipped) = decide(&x, h, w, corner_rule);
            assert_eq!(cut.flipped, flipped, "{}: flip (corner rule {corner_rule})", m.label);
            assert_eq!(cut.seed, seed, "{}: seed (corner rule {corner_rule})", m.label);
            assert!(
                cut.mask == mask,
                "{}: mask (corner rule {corner_rule})\nlib:\n{}\ntest:\n{}",
                m.label,
                render(&cut.mask, w),
                render(&mask, w)
            );
            assert!(cut.mask[cut.seed], "{}: the seed is in the mask", m.label);
            flips[usize::from(flipped)] += 1;
            // A flip with the seed already foreground can only come from the corner rule.
            let mean = x.iter().sum::<f64>() / x.len() as f64;
            if flipped && x[first_argmax(&x, f64::abs)] > mean {
                assert!(corner_rule, "{}: flip of a foreground seed without the corner rule", m.label);
                corner_flips += 1;
            }
            // bipartition on the f32 eigenvector follows the same rules.
            let b = labelscope_core::ncut::bipartition(&x32, h, w, corner_rule).unwrap();
            let xd: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
            let (mask32, seed32, flipped32) = decide(&xd, h, w, corner_rule);
            assert_eq!((b.mask, b.seed, b.flipped), (mask32, seed32, flipped32), "{}: bipartition", m.label);
        }
    }
    eprintln!("flip rules: {} cuts not flipped, {} flipped ({corner_flips} by the corner rule)", flips[0], flips[1]);
    // Both branches of the flip rule, and the corner rule, are exercised.
    assert!(flips[0] > 10 && flips[1] > 10 && corner_flips > 3, "flip counts {flips:?}, corner {corner_flips}");
}

#[test]
fn eigenvector_solves_the_generalized_problem() {
    let mut checked = 0;
    let mut rng = Rng(99);
    for m in maps() {
        let (h, w, n) = (m.h, m.w, m.h * m.w);
        let c = cosines(&m.f, n, m.d);
        if near_tau(&c, m.params.tau) {
            continue;
        }
        let eps = m.params.eps as f64;
        let a: Vec<f64> = c.iter().map(|&v| if v > m.params.tau as f64 { 1.0 } else { eps }).collect();
        let dg: Vec<f64> = (0..n).map(|i| a[i * n..(i + 1) * n].iter().sum()).collect();
        let (lam, x) = second_eigenvector(&m.f, h, w, m.d, &m.params).unwrap();
        assert_eq!(x.len(), n);
        // ‖D^{-1/2} ((D − A) x − λ D x)‖ = ‖M y − μ y‖ ≤ 1e-6 (module docs, step 3).
        let mut r2 = 0.0;
        for i in 0..n {
            let ax: f64 = (0..n).map(|j| a[i * n + j] * x[j]).sum();
            let r = dg[i] * x[i] - ax - lam * dg[i] * x[i];
            r2 += r * r / dg[i];
        }
        assert!(r2.sqrt() <= 1.01e-6, "{}: residual {:e}", m.label, r2.sqrt());
        let xdx: f64 = (0..n).map(|i| dg[i] * x[i] * x[i]).sum();
        assert!((xdx - 1.0).abs() < 1e-9, "{}: xᵀDx = {xdx}", m.label);
        let xd1: f64 = (0..n).map(|i| dg[i] * x[i]).sum();
        let scale: f64 = dg.iter().sum::<f64>().sqrt();
        assert!(xd1.abs() < 1e-6 * scale, "{}: xᵀD1 = {xd1:e}", m.label);
        assert!((-1e-9..=2.0 + 1e-9).contains(&lam), "{}: λ = {lam}", m.label);
        let top = first_argmax(&x, f64::abs);
        assert!(x[top] > 0.0, "{}: sign convention", m.label);
        // λ is the minimum of the Rayleigh quotient vᵀ(D − A)v / vᵀDv over v ⟂_D 1.
        let total: f64 = dg.iter().sum();
        for t in 0..24 {
            let mut v: Vec<f64> = if t < 16 {
                (0..n).map(|_| rng.gauss()).collect()
            } else {
                // Smooth and indicator-like test vectors (closer to the minimiser).
                let (fy, fx) = (rng.unit() * 4.0, rng.unit() * 4.0);
                (0..n)
                    .map(|i| ((i / w) as f64 / h as f64 * fy + (i % w) as f64 / w as f64 * fx).sin().signum())
                    .collect()
            };
            let proj: f64 = (0..n).map(|i| dg[i] * v[i]).sum::<f64>() / total;
            v.iter_mut().for_each(|vi| *vi -= proj);
            let vdv: f64 = (0..n).map(|i| dg[i] * v[i] * v[i]).sum();
            if vdv < 1e-12 {
                continue;
            }
            let mut vlv = 0.0;
            for i in 0..n {
                let av: f64 = (0..n).map(|j| a[i * n + j] * v[j]).sum();
                vlv += v[i] * (dg[i] * v[i] - av);
            }
            assert!(vlv / vdv >= lam - 1e-6, "{}: Rayleigh quotient {} < λ = {lam}", m.label, vlv / vdv);
        }
        checked += 1;
    }
    eprintln!("eigen-equation: {checked} of {CASES} maps checked (the rest have a cosine within 1e-5 of tau)");
    assert!(checked as u64 * 2 > CASES, "only {checked} of {CASES} maps checked");
}

/// Every mask of TokenCut and MaskCut, for comparing two feature maps.
fn all_masks(f: &[f32], m: &Map) -> (Vec<bool>, Vec<Vec<bool>>) {
    let (t, _) = tokencut(f, m.h, m.w, m.d, &m.params).unwrap_or_else(|e| panic!("{}: {e}", m.label));
    let mc = maskcut_detailed(f, m.h, m.w, m.d, &m.params).unwrap_or_else(|e| panic!("{}: {e}", m.label));
    (t, mc.into_iter().map(|k| k.mask).collect())
}

#[test]
fn masks_are_invariant_to_scale_and_dimension_order() {
    let mut rng = Rng(7);
    let mut checked = 0;
    for m in maps() {
        let n = m.h * m.w;
        let base = all_masks(&m.f, &m);
        // A power of two scales exactly: identical results whatever the cosines.
        for s in [0.25f32, 8.0] {
            let f: Vec<f32> = m.f.iter().map(|&v| v * s).collect();
            assert_eq!(all_masks(&f, &m), base, "{}: scaled by {s}", m.label);
            let (a, b) = (
                second_eigenvector(&m.f, m.h, m.w, m.d, &m.params).unwrap(),
                second_eigenvector(&f, m.h, m.w, m.d, &m.params).unwrap(),
            );
            assert_eq!(a, b, "{}: eigenvector scaled by {s}", m.label);
        }
        // Other constants and a dimension permutation change the f32 cosines by
        // a few ulps: the affinity (so everything) is unchanged unless a cosine is near tau.
        if near_tau(&cosines(&m.f, n, m.d), m.params.tau) {
            continue;
        }
        for s in [1e-3f32, 0.7, 3.3, 1234.5] {
            let f: Vec<f32> = m.f.iter().map(|&v| v * s).collect();
            assert_eq!(all_masks(&f, &m), base, "{}: scaled by {s}", m.label);
        }
        let mut perm: Vec<usize> = (0..m.d).collect();
        for i in (1..m.d).rev() {
            perm.swap(i, rng.below(i + 1));
        }
        let f: Vec<f32> =
            (0..n).flat_map(|i| perm.iter().map(move |&k| (i, k))).map(|(i, k)| m.f[i * m.d + k]).collect();
        assert_eq!(all_masks(&f, &m), base, "{}: dimensions permuted by {perm:?}", m.label);
        checked += 1;
    }
    eprintln!("invariance: all {CASES} maps under power-of-two scales, {checked} under other scales and permutations");
    assert!(checked as u64 * 2 > CASES, "only {checked} of {CASES} maps checked");
}
