//! Bad input to `labelscope_core::ncut` is a clear `Err`, never a panic:
//! non-finite features, a zero-norm patch (the message names its row and
//! column), fewer than 4 patches, tau outside (-1, 1), eps outside (0, 1], a
//! feature slice of the wrong length, d = 0 and max_masks = 0. Every entry
//! point is tried (normalized_cut with and without the corner rule,
//! normalized_cut_with_eigenvalue, second_eigenvector, tokencut, maskcut,
//! maskcut_detailed), and `bipartition` with a bad eigenvector.

use std::panic::{catch_unwind, AssertUnwindSafe};

use labelscope_core::ncut::{
    bipartition, maskcut, maskcut_detailed, normalized_cut, normalized_cut_with_eigenvalue, second_eigenvector,
    tokencut, NcutParams,
};

/// The error messages of every entry point on the same input (each must be an `Err`, not a panic).
fn errors(f: &[f32], h: usize, w: usize, d: usize, p: &NcutParams) -> Vec<String> {
    type Call<'a> = (&'a str, Box<dyn Fn() -> Result<(), String> + 'a>);
    let calls: Vec<Call> = vec![
        (
            "normalized_cut(corner)",
            Box::new(|| normalized_cut(f, h, w, d, p, true).map(drop).map_err(|e| e.to_string())),
        ),
        ("normalized_cut", Box::new(|| normalized_cut(f, h, w, d, p, false).map(drop).map_err(|e| e.to_string()))),
        (
            "normalized_cut_with_eigenvalue",
            Box::new(|| normalized_cut_with_eigenvalue(f, h, w, d, p, true).map(drop).map_err(|e| e.to_string())),
        ),
        ("second_eigenvector", Box::new(|| second_eigenvector(f, h, w, d, p).map(drop).map_err(|e| e.to_string()))),
        ("tokencut", Box::new(|| tokencut(f, h, w, d, p).map(drop).map_err(|e| e.to_string()))),
        ("maskcut", Box::new(|| maskcut(f, h, w, d, p).map(drop).map_err(|e| e.to_string()))),
        ("maskcut_detailed", Box::new(|| maskcut_detailed(f, h, w, d, p).map(drop).map_err(|e| e.to_string()))),
    ];
    calls
        .into_iter()
        .map(|(name, call)| match catch_unwind(AssertUnwindSafe(call)) {
            Ok(Err(e)) => {
                assert!(!e.is_empty(), "{name}: empty error message");
                e
            }
            Ok(Ok(())) => panic!("{name}: accepted bad input ({h}x{w}x{d}, {p:?})"),
            Err(_) => panic!("{name}: panicked on bad input ({h}x{w}x{d}, {p:?})"),
        })
        .collect()
}

/// Every entry point fails and every message contains all of `needles`.
fn assert_errors(f: &[f32], h: usize, w: usize, d: usize, p: &NcutParams, needles: &[&str]) {
    for e in errors(f, h, w, d, p) {
        for needle in needles {
            assert!(e.contains(needle), "error {e:?} does not mention {needle:?} ({h}x{w}x{d}, {p:?})");
        }
    }
}

/// A valid 3x4 feature map with d = 3.
fn good() -> Vec<f32> {
    (0..3 * 4 * 3).map(|i| ((i * 7 % 11) as f32 - 4.5) / 3.0).collect()
}

const P: NcutParams = NcutParams { tau: 0.15, eps: 1e-5, max_masks: 3 };

#[test]
fn the_valid_map_is_accepted() {
    let f = good();
    assert!(normalized_cut(&f, 3, 4, 3, &P, true).is_ok());
    assert!(maskcut(&f, 3, 4, 3, &P).is_ok());
    // eps = 1 is inside (0, 1].
    assert!(second_eigenvector(&f, 3, 4, 3, &NcutParams { eps: 1.0, ..P }).is_ok());
}

#[test]
fn non_finite_features() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut f = good();
        // patch (row 2, col 1) = index 9, its second value.
        f[9 * 3 + 1] = bad;
        assert_errors(&f, 3, 4, 3, &P, &["non-finite", "row 2, col 1"]);
    }
    // The lowest patch index is reported.
    let mut f = good();
    f[11 * 3] = f32::NAN;
    f[5 * 3 + 2] = f32::INFINITY;
    assert_errors(&f, 3, 4, 3, &P, &["row 1, col 1"]);
}

#[test]
fn zero_norm_patch_names_row_and_col() {
    let mut f = good();
    f[7 * 3..8 * 3].fill(0.0); // (row 1, col 3)
    assert_errors(&f, 3, 4, 3, &P, &["row 1, col 3", "zero"]);
    let mut f = good();
    f[..3].fill(-0.0); // negative zero is zero too
    assert_errors(&f, 3, 4, 3, &P, &["row 0, col 0", "zero"]);
}

#[test]
fn too_few_patches() {
    for (h, w) in [(0, 0), (1, 1), (1, 3), (3, 1), (0, 5)] {
        let f = vec![1.0f32; h * w * 2];
        assert_errors(&f, h, w, 2, &P, &["at least 4 patches", &format!("{h}x{w}")]);
    }
    // A grid whose size overflows is an error too.
    assert_errors(&[1.0; 8], usize::MAX, 2, 2, &P, &["too large"]);
    assert_errors(&[1.0; 8], 1 << 40, 1 << 40, 1 << 20, &P, &["too large"]);
}

#[test]
fn tau_outside_the_open_interval() {
    let f = good();
    for tau in [-1.0f32, 1.0, 1.5, -7.0, f32::NAN, f32::INFINITY] {
        assert_errors(&f, 3, 4, 3, &NcutParams { tau, ..P }, &["tau", "(-1, 1)"]);
    }
}

#[test]
fn eps_outside_zero_one() {
    let f = good();
    for eps in [0.0f32, -1e-5, 1.0001, 2.0, f32::NAN, f32::INFINITY] {
        assert_errors(&f, 3, 4, 3, &NcutParams { eps, ..P }, &["eps", "(0, 1]"]);
    }
}

#[test]
fn wrong_feature_length() {
    let f = good();
    for len in [0, 1, f.len() - 1, f.len() + 1, 2 * f.len()] {
        let g: Vec<f32> = f.iter().copied().cycle().take(len).collect();
        assert_errors(&g, 3, 4, 3, &P, &["expected 3*4*3 = 36", &format!("got {len}")]);
    }
}

#[test]
fn zero_dimension() {
    assert_errors(&[], 3, 4, 0, &P, &["dimension d"]);
}

#[test]
fn zero_max_masks() {
    let f = good();
    let p = NcutParams { max_masks: 0, ..P };
    for e in [maskcut(&f, 3, 4, 3, &p).map(drop), maskcut_detailed(&f, 3, 4, 3, &p).map(drop)] {
        let e = e.expect_err("max_masks = 0 is an error").to_string();
        assert!(e.contains("max_masks"), "{e}");
    }
}

#[test]
fn bad_eigenvector_for_bipartition() {
    let x = [0.5f32, -0.5, 0.25, -0.25, 0.0, 1.0];
    for (xs, h, w) in [(&x[..], 2usize, 2usize), (&x[..3], 1, 3), (&x[..], 3, 3)] {
        let e = bipartition(xs, h, w, true).expect_err("wrong length").to_string();
        assert!(e.contains("expected an eigenvector"), "{e}");
    }
    let mut y = x;
    y[2] = f32::NAN;
    let e = bipartition(&y, 2, 3, false).expect_err("NaN").to_string();
    assert!(e.contains("non-finite"), "{e}");
    assert!(bipartition(&x, 2, 3, true).is_ok());
}
