//! Permutohedral-lattice Gaussian filtering (Adams, Baek & Davis, "Fast
//! High-Dimensional Filtering Using the Permutohedral Lattice", Eurographics
//! 2010).
//!
//! Each input point carries a `d`-dimensional feature vector `f_i` (already
//! divided by the kernel standard deviations). The filter approximates
//! `out_i = c * Σ_j exp(-|f_i - f_j|² / 2) in_j` for an unknown constant `c`
//! (callers normalise; see [`crate::crf`]), in three stages:
//!
//! 1. *splat*: the feature vector is scaled, embedded in the hyperplane
//!    `x_0 + … + x_d = 0` of `R^{d+1}`, and its value is distributed over the
//!    `d + 1` vertices of the enclosing simplex of the lattice `A*_d` with
//!    barycentric weights;
//! 2. *blur*: along each of the `d + 1` lattice directions the lattice
//!    values are convolved with the kernel `[1/2, 1, 1/2]`;
//! 3. *slice*: each point reads the lattice back with the same barycentric
//!    weights.
//!
//! The lattice geometry (simplex vertices, weights, blur neighbours) depends
//! only on the features, so it is built once in [`Permutohedral::new`] and
//! reused by every [`Permutohedral::filter`] call.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};

/// Largest supported feature dimension.
pub const MAX_DIM: usize = 7;

const NONE: u32 = u32::MAX;

/// Multiplicative hasher for packed lattice keys.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let lo = v as u64;
        let hi = (v >> 64) as u64;
        let h = (lo.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hi).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        self.0 = h ^ (h >> 29);
    }
}

type KeyMap = HashMap<u128, u32, BuildHasherDefault<KeyHasher>>;

/// Packs the first `d` lattice coordinates (each must fit in an `i16`).
fn pack(key: &[i32]) -> Option<u128> {
    let mut k: u128 = 0;
    for &c in key {
        let c = i16::try_from(c).ok()?;
        k = (k << 16) | (c as u16 as u128);
    }
    Some(k)
}

/// A permutohedral lattice built over a set of feature vectors.
#[derive(Debug, Clone)]
pub struct Permutohedral {
    d: usize,
    n: usize,
    m: usize,
    /// `n * (d + 1)` lattice-point indices (simplex vertices of each input point).
    offsets: Vec<u32>,
    /// `n * (d + 1)` barycentric weights.
    weights: Vec<f32>,
    /// `(d + 1) * m` pairs of neighbour indices (minus, plus) along each lattice direction.
    neighbours: Vec<[u32; 2]>,
}

impl Permutohedral {
    /// Builds the lattice for `features`, a row-major `n x d` array
    /// (`n = features.len() / d`), with `1 <= d <= MAX_DIM`.
    ///
    /// Errors if `d` is out of range, `features.len()` is not a multiple of
    /// `d`, a feature is not finite, or the features span too large a range
    /// for the lattice coordinates (more than about 30000 / d standard
    /// deviations).
    pub fn new(features: &[f32], d: usize) -> Result<Self> {
        if d == 0 || d > MAX_DIM {
            return Err(Error::Invalid(format!("permutohedral lattice: dimension {d}, expected 1..={MAX_DIM}")));
        }
        if !features.len().is_multiple_of(d) {
            return Err(Error::mismatch("permutohedral features length", format!("a multiple of {d}"), features.len()));
        }
        if let Some(bad) = features.iter().find(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!("permutohedral lattice: non-finite feature value {bad}")));
        }
        let n = features.len() / d;
        let dp1 = d + 1;
        let fdp1 = dp1 as f64;
        // Scale so that the lattice blur approximates a unit-variance Gaussian in feature space
        // (spacing chosen as in the paper: inverse std dev (d + 1) * sqrt(2/3)).
        let inv_std = fdp1 * (2.0f64 / 3.0).sqrt();
        let scale: Vec<f64> = (0..d).map(|i| inv_std / (((i + 1) * (i + 2)) as f64).sqrt()).collect();

        let mut map: KeyMap = HashMap::with_capacity_and_hasher(n.min(1 << 20), Default::default());
        let mut keys: Vec<i32> = Vec::new();
        let mut offsets = vec![0u32; n * dp1];
        let mut weights = vec![0f32; n * dp1];
        let range_err = || Error::Invalid("permutohedral lattice: feature range too large".into());

        let mut elevated = [0f64; MAX_DIM + 1];
        let mut rem0 = [0i32; MAX_DIM + 1];
        let mut rank = [0i32; MAX_DIM + 1];
        let mut bary = [0f64; MAX_DIM + 2];
        let mut key = [0i32; MAX_DIM];
        for p in 0..n {
            let f = &features[p * d..(p + 1) * d];
            // Embed in the hyperplane Σ x = 0 of R^{d+1}.
            let mut sm = 0.0;
            for i in (1..=d).rev() {
                let cf = f[i - 1] as f64 * scale[i - 1];
                elevated[i] = sm - i as f64 * cf;
                sm += cf;
            }
            elevated[0] = sm;
            // Nearest lattice point with remainder 0 (coordinates multiples of d + 1).
            let mut sum = 0i32;
            for i in 0..dp1 {
                let v = elevated[i] / fdp1;
                let up = v.ceil() * fdp1;
                let down = v.floor() * fdp1;
                let r = if up - elevated[i] < elevated[i] - down { up } else { down };
                if r.abs() > 1.0e9 {
                    return Err(range_err());
                }
                rem0[i] = r as i32;
                sum += rem0[i] / dp1 as i32;
            }
            // Rank the differences (the permutation that sorts them).
            rank[..dp1].fill(0);
            for i in 0..d {
                for j in i + 1..dp1 {
                    if elevated[i] - (rem0[i] as f64) < elevated[j] - (rem0[j] as f64) {
                        rank[i] += 1;
                    } else {
                        rank[j] += 1;
                    }
                }
            }
            // Bring the point back onto the hyperplane when the rounded coordinates do not sum to 0.
            let dp1i = dp1 as i32;
            if sum > 0 {
                for i in 0..dp1 {
                    if rank[i] >= dp1i - sum {
                        rem0[i] -= dp1i;
                        rank[i] += sum - dp1i;
                    } else {
                        rank[i] += sum;
                    }
                }
            } else if sum < 0 {
                for i in 0..dp1 {
                    if rank[i] < -sum {
                        rem0[i] += dp1i;
                        rank[i] += dp1i + sum;
                    } else {
                        rank[i] += sum;
                    }
                }
            }
            // Barycentric coordinates within the simplex.
            bary[..d + 2].fill(0.0);
            for i in 0..dp1 {
                let v = (elevated[i] - rem0[i] as f64) / fdp1;
                let r = rank[i] as usize;
                bary[d - r] += v;
                bary[d + 1 - r] -= v;
            }
            bary[0] += 1.0 + bary[d + 1];
            // The d + 1 vertices of the simplex.
            for k in 0..dp1 {
                for i in 0..d {
                    key[i] = rem0[i] + k as i32;
                    if rank[i] > (d - k) as i32 {
                        key[i] -= dp1i;
                    }
                }
                let packed = pack(&key[..d]).ok_or_else(range_err)?;
                let next = (keys.len() / d) as u32;
                let idx = *map.entry(packed).or_insert_with(|| {
                    keys.extend_from_slice(&key[..d]);
                    next
                });
                offsets[p * dp1 + k] = idx;
                weights[p * dp1 + k] = bary[k] as f32;
            }
        }
        let m = keys.len() / d;
        if m >= NONE as usize {
            return Err(Error::Invalid("permutohedral lattice: too many lattice points".into()));
        }
        // Blur neighbours along each direction j: key ∓ (1, …, 1, -d at j, 1, …).
        let mut neighbours = vec![[NONE; 2]; dp1 * m];
        let mut n1 = [0i32; MAX_DIM];
        let mut n2 = [0i32; MAX_DIM];
        for j in 0..dp1 {
            for pt in 0..m {
                let k = &keys[pt * d..(pt + 1) * d];
                for i in 0..d {
                    n1[i] = k[i] - 1;
                    n2[i] = k[i] + 1;
                }
                if j < d {
                    n1[j] = k[j] + d as i32;
                    n2[j] = k[j] - d as i32;
                }
                let look = |nk: &[i32]| pack(nk).and_then(|p| map.get(&p).copied()).unwrap_or(NONE);
                neighbours[j * m + pt] = [look(&n1[..d]), look(&n2[..d])];
            }
        }
        Ok(Permutohedral { d, n, m, offsets, weights, neighbours })
    }

    /// Number of input points.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the lattice was built over no points.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Number of lattice points in use.
    pub fn lattice_points(&self) -> usize {
        self.m
    }

    /// Filters one value per input point (splat, blur, slice); the result
    /// approximates `c * Σ_j exp(-|f_i - f_j|² / 2) input_j` for a constant
    /// `c > 0`. Errors if `input.len()` differs from the number of points.
    pub fn filter(&self, input: &[f32]) -> Result<Vec<f32>> {
        if input.len() != self.n {
            return Err(Error::mismatch("permutohedral filter input length", self.n, input.len()));
        }
        let dp1 = self.d + 1;
        let mut a = vec![0f32; self.m];
        for (p, &v) in input.iter().enumerate() {
            let o = &self.offsets[p * dp1..(p + 1) * dp1];
            let w = &self.weights[p * dp1..(p + 1) * dp1];
            for k in 0..dp1 {
                a[o[k] as usize] += w[k] * v;
            }
        }
        let mut b = vec![0f32; self.m];
        for j in 0..dp1 {
            let nb = &self.neighbours[j * self.m..(j + 1) * self.m];
            for (pt, out) in b.iter_mut().enumerate() {
                let [n1, n2] = nb[pt];
                let v1 = if n1 == NONE { 0.0 } else { a[n1 as usize] };
                let v2 = if n2 == NONE { 0.0 } else { a[n2 as usize] };
                *out = a[pt] + 0.5 * (v1 + v2);
            }
            std::mem::swap(&mut a, &mut b);
        }
        let mut out = vec![0f32; self.n];
        for (p, o) in out.iter_mut().enumerate() {
            let off = &self.offsets[p * dp1..(p + 1) * dp1];
            let w = &self.weights[p * dp1..(p + 1) * dp1];
            let mut s = 0.0;
            for k in 0..dp1 {
                s += w[k] * a[off[k] as usize];
            }
            *o = s;
        }
        Ok(out)
    }
}

/// Exact dense Gaussian filtering `out_i = Σ_j exp(-|f_i - f_j|² / 2) input_j`
/// (including `j = i`), in `O(n²)`: the reference for [`Permutohedral`].
/// Errors on inconsistent lengths.
pub fn exact_gaussian_filter(features: &[f32], d: usize, input: &[f64]) -> Result<Vec<f64>> {
    if d == 0 || !features.len().is_multiple_of(d) || features.len() / d != input.len() {
        return Err(Error::mismatch(
            "exact Gaussian filter features",
            format!("{} x {d} values", input.len()),
            features.len(),
        ));
    }
    let n = input.len();
    let mut out = vec![0f64; n];
    for i in 0..n {
        let fi = &features[i * d..(i + 1) * d];
        let mut s = 0.0;
        for j in 0..n {
            let fj = &features[j * d..(j + 1) * d];
            let d2: f64 = fi.iter().zip(fj).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
            s += (-0.5 * d2).exp() * input[j];
        }
        out[i] = s;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single isolated point filters to a positive multiple of itself, and
    /// the filter is linear.
    #[test]
    fn linear_and_positive() {
        let feats: Vec<f32> = (0..50).flat_map(|i| [(i % 7) as f32 * 0.7, (i / 7) as f32 * 0.9, 0.3]).collect();
        let lat = Permutohedral::new(&feats, 3).unwrap();
        let a: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..50).map(|i| (i as f32 * 0.11).cos()).collect();
        let fa = lat.filter(&a).unwrap();
        let fb = lat.filter(&b).unwrap();
        let ab: Vec<f32> = a.iter().zip(&b).map(|(x, y)| 2.0 * x + y).collect();
        let fab = lat.filter(&ab).unwrap();
        for i in 0..50 {
            assert!((fab[i] - (2.0 * fa[i] + fb[i])).abs() < 1e-4);
        }
        let ones = lat.filter(&[1.0; 50]).unwrap();
        assert!(ones.iter().all(|&v| v > 0.0));
        assert!(lat.filter(&[1.0; 3]).is_err());
        assert!(Permutohedral::new(&feats, 0).is_err());
        assert!(Permutohedral::new(&[f32::NAN, 0.0], 2).is_err());
    }
}
