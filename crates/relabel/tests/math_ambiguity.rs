//! Ambiguity handling: calibration counts, prior propagation, the M_a/M_b
//! closed form with its caps, threshold fitting and application, all by
//! hand; and the counts on ImageNet-ReaL against the independent Python
//! count of tests/reference/relabel_real_pairs.py (fixtures/math/real_pairs.json).

use labelscope_relabel::ambiguity::{
    apply_thresholds, fit_thresholds, required_additions, AmbiguousPair, Calibration, Prior,
};
use serde_json::Value;

/// N_0 = 5 (images 0,1,2,3,5), N_1 = 4 (0,1,2,4), N_2 = 5 (5,6,7,8,10);
/// N_01 = 3, N_02 = 1, N_12 = 0. Image 9 is empty; image 10 lists 2 twice
/// (counted once).
fn calibration() -> Calibration {
    let sets = vec![
        vec![0, 1],
        vec![1, 0],
        vec![0, 1],
        vec![0],
        vec![1],
        vec![0, 2],
        vec![2],
        vec![2],
        vec![2],
        vec![],
        vec![2, 2],
    ];
    Calibration::from_sets(&sets, 3).unwrap()
}

#[test]
fn counts_and_candidates_by_hand() {
    let c = calibration();
    assert_eq!(c.images(), 11);
    assert_eq!((c.count(0), c.count(1), c.count(2)), (5, 4, 5));
    assert_eq!((c.pair_count(0, 1), c.pair_count(1, 0), c.pair_count(0, 2), c.pair_count(1, 2)), (3, 3, 1, 0));
    let p = c.pair(1, 0).unwrap();
    // score 3 / min(5, 4) = 0.75; P(0|1) = 3/4; P(1|0) = 3/5
    assert_eq!((p.a, p.b, p.n_a, p.n_b, p.n_ab), (0, 1, 5, 4, 3));
    assert_eq!((p.score, p.p_a_given_b, p.p_b_given_a), (0.75, 0.75, 0.6));
    // candidates: (0,1) score 0.75, (0,2) score 1/5 = 0.2; (1,2) never co-occurs
    let all = c.candidate_pairs(1, 0.0);
    assert_eq!(all.iter().map(|p| (p.a, p.b)).collect::<Vec<_>>(), vec![(0, 1), (0, 2)]);
    assert_eq!(all[1].score, 0.2);
    assert_eq!(c.candidate_pairs(2, 0.0).len(), 1);
    assert_eq!(c.candidate_pairs(1, 0.5).len(), 1);
    assert!(c.pair(1, 1).is_err() && c.pair(0, 3).is_err());
    assert!(Calibration::from_sets(&[vec![0, 3]], 3).unwrap_err().to_string().contains("class 3"));
}

#[test]
fn prior_propagation_by_hand() {
    let c = calibration();
    let prior = Prior::new(&[c.pair(0, 1).unwrap()], 3).unwrap();
    // C = [[1, 0.75, 0], [0.6, 1, 0], [0, 0, 1]]
    assert_eq!((prior.entry(0, 0), prior.entry(0, 1), prior.entry(1, 0), prior.entry(0, 2)), (1.0, 0.75, 0.6, 0.0));
    // p = (0.2, 0.4, 0.5): p'0 = 0.2 + 0.75*0.4 = 0.5, p'1 = 0.4 + 0.6*0.2 = 0.52, p'2 = 0.5
    let out = prior.propagate(&[0.2, 0.4, 0.5]).unwrap();
    let want = [0.5f32, 0.52, 0.5];
    for (a, b) in out.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{out:?}");
    }
    // p = (0.8, 0.6, 0): 0.8 + 0.45 = 1.25 and 0.6 + 0.48 = 1.08, both clipped to 1
    assert_eq!(prior.propagate(&[0.8, 0.6, 0.0]).unwrap(), vec![1.0, 1.0, 0.0]);
    // sparse input {0: 0.2}: p'0 = 0.2, p'1 = 0.6*0.2 = 0.12
    let s = prior.propagate_sparse(&[(0, 0.2)]).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].0, 0);
    assert!((s[0].1 - 0.2).abs() < 1e-6 && s[1].0 == 1 && (s[1].1 - 0.12).abs() < 1e-6, "{s:?}");
    assert!(prior.propagate(&[0.1; 2]).is_err());
    assert!(prior.propagate_sparse(&[(5, 0.1)]).is_err());
}

#[test]
fn closed_form_and_caps_by_hand() {
    // M_a = (0.5*40 - 10)/0.5 = 20 (check: (10+20)/(40+20) = 0.5), cap 100-10 = 90;
    // M_b = (0.25*100 - 10)/0.75 = 20 (check: (10+20)/(100+20) = 0.25), cap 40-10 = 30
    assert_eq!(required_additions(0.5, 0.25, 100, 40, 10).unwrap(), (20, 20));
    // negative solutions -> 0: (0.1*40 - 10)/0.9 < 0 and (0.05*100 - 10)/0.95 < 0
    assert_eq!(required_additions(0.1, 0.05, 100, 40, 10).unwrap(), (0, 0));
    // rounding: (0.3*10 - 1)/0.7 = 2.857 -> 3; (0.2*10 - 1)/0.8 = 1.25 -> 1
    assert_eq!(required_additions(0.3, 0.2, 10, 10, 1).unwrap(), (3, 1));
    // caps: (0.9*40 - 10)/0.1 = 260 -> N_a - N_ab = 10; P = 1 -> N_b - N_ab = 30
    assert_eq!(required_additions(0.9, 1.0, 20, 40, 10).unwrap(), (10, 30));
    assert!(required_additions(0.5, 0.5, 5, 40, 10).is_err(), "N_ab > N_a");
    assert!(required_additions(f64::NAN, 0.5, 50, 40, 10).is_err());
}

fn pair(p_a_given_b: f64, p_b_given_a: f64) -> AmbiguousPair {
    AmbiguousPair { a: 0, b: 1, n_a: 0, n_b: 0, n_ab: 0, score: 0.0, p_a_given_b, p_b_given_a }
}

/// Dataset (present = 0.5): image 0 holds both; 1-4 are a-only with b values
/// 0.3, 0.45, 0, 0.1; 5-6 are b-only with a values 0.2, 0; 7 holds neither.
/// N_a = 5, N_b = 3, N_ab = 1.
fn dataset() -> Vec<Vec<(u32, f32)>> {
    vec![
        vec![(0, 0.9), (1, 0.8)],
        vec![(0, 0.9), (1, 0.3)],
        vec![(0, 0.7), (1, 0.45)],
        vec![(0, 0.8)],
        vec![(0, 0.6), (1, 0.1)],
        vec![(1, 0.9), (0, 0.2)],
        vec![(1, 0.7)],
        vec![(2, 0.9)],
    ]
}

#[test]
fn thresholds_by_hand() {
    // P(a|b) = 0.5: M_a = (0.5*3 - 1)/0.5 = 1 -> the best a-only b value, 0.45 (image 2)
    // P(b|a) = 0.3: M_b = (0.3*5 - 1)/0.7 = 0.714 -> 1 -> the best b-only a value, 0.2 (image 5)
    let mut soft = dataset();
    let t = fit_thresholds(&[pair(0.5, 0.3)], &soft, 0.5).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].counts, t[0].m_a, t[0].m_b), ((5, 3, 1), 1, 1));
    assert_eq!((t[0].add_b_to_a, t[0].add_a_to_b), (Some(0.45), Some(0.2)));
    let added = apply_thresholds(&t, &mut soft, 0.5).unwrap();
    assert_eq!(added, 2);
    // image 2 gets b = max(0.45, a = 0.7); image 5 gets a = max(0.2, b = 0.9); order by value then class
    assert_eq!(soft[2], vec![(0, 0.7), (1, 0.7)]);
    assert_eq!(soft[5], vec![(0, 0.9), (1, 0.9)]);
    let mut untouched = dataset();
    untouched[2] = soft[2].clone();
    untouched[5] = soft[5].clone();
    assert_eq!(soft, untouched);

    // P(a|b) = 0.75: M_a = (2.25 - 1)/0.25 = 5 -> cap N_a - N_ab = 4 -> 4th best b value = 0 (image 3)
    // P(b|a) = 0.2: M_b = (1 - 1)/0.8 = 0 -> no threshold
    let t = fit_thresholds(&[pair(0.75, 0.2)], &dataset(), 0.5).unwrap();
    assert_eq!((t[0].m_a, t[0].m_b, t[0].add_b_to_a, t[0].add_a_to_b), (4, 0, Some(0.0), None));
    let mut soft = dataset();
    assert_eq!(apply_thresholds(&t, &mut soft, 0.5).unwrap(), 4);
    assert_eq!(soft[3], vec![(0, 0.8), (1, 0.8)]);
    assert_eq!(soft[6], vec![(1, 0.7)]);
    assert!(fit_thresholds(&[pair(0.5, 0.5)], &dataset(), 0.0).is_err());
}

fn shared_data() -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{} is missing (required when CI=true)", p.display());
    }
    eprintln!("skipping: {} not found", p.display());
    None
}

#[test]
fn real_counts_match_python() {
    let Some(dir) = shared_data() else { return };
    let text = std::fs::read_to_string(dir.join("imagenet/real.json")).unwrap();
    let sets: Vec<Vec<u32>> = serde_json::from_str(&text).unwrap();
    let cal = Calibration::from_sets(&sets, 1000).unwrap();
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/math/real_pairs.json");
    let want: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(cal.images(), n(&want, "images"));
    assert_eq!(sets.iter().filter(|s| s.is_empty()).count() as u64, n(&want, "empty"));
    for e in want["pairs"].as_array().unwrap() {
        let pr = cal.pair(n(e, "a") as u32, n(e, "b") as u32).unwrap();
        assert_eq!((pr.n_a, pr.n_b, pr.n_ab), (n(e, "n_a"), n(e, "n_b"), n(e, "n_ab")), "{e}");
    }
    let cands = cal.candidate_pairs(n(&want, "min_count"), 0.0);
    assert_eq!(cands.len() as u64, n(&want, "candidates"));
    for (got, e) in cands.iter().zip(want["top"].as_array().unwrap()) {
        assert_eq!(
            (u64::from(got.a), u64::from(got.b), got.n_a, got.n_b, got.n_ab),
            (n(e, "a"), n(e, "b"), n(e, "n_a"), n(e, "n_b"), n(e, "n_ab"))
        );
        assert!((got.score - e["score"].as_f64().unwrap()).abs() < 1e-12);
    }
    // The propagation prior of the top pair (527 desktop computer, 664 monitor):
    // C[527][664] = P(527|664) = 155/227, C[664][527] = 155/165.
    let prior = Prior::new(&cands[..1], 1000).unwrap();
    assert!((prior.entry(527, 664) - 155.0 / 227.0).abs() < 1e-12);
    assert!((prior.entry(664, 527) - 155.0 / 165.0).abs() < 1e-12);
}
