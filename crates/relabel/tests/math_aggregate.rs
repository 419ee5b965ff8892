//! Label aggregation: every rule against hand-computed values.
//!
//! Proposals (C = 4):
//!   P0 = sparse {3: 0.9, 1: 0.3}
//!   P1 = sparse {1: 0.6, 2: 0.2}
//!   P2 = dense  [0.05, 0.6, 0.0, 0.1]
//! original label 0; global prediction {2: 0.7, 3: 0.4}.

use labelscope_relabel::aggregate::{
    aggregate, to_dense, to_sparse, AggregateOptions, Global, ImageInput, Label, Local, Prediction,
};
use labelscope_relabel::Error;

fn proposals() -> Vec<Prediction> {
    vec![
        Prediction::Sparse(vec![(3, 0.9), (1, 0.3)]),
        Prediction::Sparse(vec![(1, 0.6), (2, 0.2)]),
        Prediction::Dense(vec![0.05, 0.6, 0.0, 0.1]),
    ]
}

fn run(local: Local, global: Global) -> Vec<Label> {
    let p = proposals();
    let g = Prediction::Sparse(vec![(2, 0.7), (3, 0.4)]);
    let input = ImageInput { proposals: &p, original: Some(0), global: Some(&g) };
    aggregate(&input, 4, &AggregateOptions { local, global }).unwrap()
}

fn brief(l: &[Label]) -> Vec<(u32, f32, Vec<usize>, bool, bool)> {
    l.iter().map(|l| (l.class, l.value, l.proposals.clone(), l.original, l.global)).collect()
}

#[test]
fn local_soft() {
    // max over proposals: 3 -> 0.9 (P0), 1 -> 0.6 (P1 and P2 tie), 2 -> 0.2 (P1), 0 -> 0.05 (P2)
    assert_eq!(
        brief(&run(Local::Soft, Global::None)),
        vec![
            (3, 0.9, vec![0], false, false),
            (1, 0.6, vec![1, 2], false, false),
            (2, 0.2, vec![1], false, false),
            (0, 0.05, vec![2], false, false),
        ]
    );
}

#[test]
fn local_soft_plus_original_is_the_default() {
    assert_eq!(AggregateOptions::default(), AggregateOptions { local: Local::Soft, global: Global::Original });
    // class 0 -> max(0.05, 1) = 1 from the original label
    assert_eq!(
        brief(&run(Local::Soft, Global::Original)),
        vec![
            (0, 1.0, vec![], true, false),
            (3, 0.9, vec![0], false, false),
            (1, 0.6, vec![1, 2], false, false),
            (2, 0.2, vec![1], false, false),
        ]
    );
}

#[test]
fn local_soft_plus_global_prediction() {
    // 2 -> max(0.2, 0.7) = 0.7 (global), 3 -> max(0.9, 0.4) = 0.9 (P0)
    assert_eq!(
        brief(&run(Local::Soft, Global::Prediction)),
        vec![
            (3, 0.9, vec![0], false, false),
            (2, 0.7, vec![], false, true),
            (1, 0.6, vec![1, 2], false, false),
            (0, 0.05, vec![2], false, false),
        ]
    );
}

#[test]
fn local_hard() {
    // tau 0.5: P0 gives 3, P1 and P2 give 1; ties at 1 sorted by class
    assert_eq!(
        brief(&run(Local::Hard { tau: 0.5 }, Global::None)),
        vec![(1, 1.0, vec![1, 2], false, false), (3, 1.0, vec![0], false, false)]
    );
    // strictly greater: 0.6 does not exceed 0.6
    assert_eq!(brief(&run(Local::Hard { tau: 0.6 }, Global::None)), vec![(3, 1.0, vec![0], false, false)]);
    assert_eq!(
        brief(&run(Local::Hard { tau: 0.5 }, Global::Original)),
        vec![(0, 1.0, vec![], true, false), (1, 1.0, vec![1, 2], false, false), (3, 1.0, vec![0], false, false)]
    );
    // global values stay soft: 2 -> 0.7; 3 stays 1 (P0), the global 0.4 is below it
    assert_eq!(
        brief(&run(Local::Hard { tau: 0.5 }, Global::Prediction)),
        vec![(1, 1.0, vec![1, 2], false, false), (3, 1.0, vec![0], false, false), (2, 0.7, vec![], false, true)]
    );
    // original and a proposal both reaching 1 are both recorded
    let p = vec![Prediction::Sparse(vec![(0, 0.8)])];
    let input = ImageInput { proposals: &p, original: Some(0), global: None };
    let opts = AggregateOptions { local: Local::Hard { tau: 0.5 }, global: Global::Original };
    assert_eq!(brief(&aggregate(&input, 4, &opts).unwrap()), vec![(0, 1.0, vec![0], true, false)]);
}

#[test]
fn dense_and_sparse_views() {
    let l = run(Local::Soft, Global::Original);
    assert_eq!(to_dense(&l, 4).unwrap(), vec![1.0, 0.6, 0.2, 0.9]);
    assert_eq!(to_sparse(&l), vec![(0, 1.0), (3, 0.9), (1, 0.6), (2, 0.2)]);
    assert!(to_dense(&l, 3).is_err());
}

#[test]
fn no_proposals() {
    let input = ImageInput { proposals: &[], original: Some(2), global: None };
    assert_eq!(
        brief(&aggregate(&input, 4, &AggregateOptions::default()).unwrap()),
        vec![(2, 1.0, vec![], true, false)]
    );
    let opts = AggregateOptions { local: Local::Soft, global: Global::None };
    assert!(aggregate(&input, 4, &opts).unwrap().is_empty());
}

#[test]
fn bad_predictions() {
    let inv = |p: Vec<Prediction>, original: Option<u32>, opts: AggregateOptions| {
        let input = ImageInput { proposals: &p, original, global: None };
        aggregate(&input, 4, &opts).unwrap_err()
    };
    let d = AggregateOptions::default();
    let e = inv(vec![Prediction::Sparse(vec![(4, 0.5)])], Some(0), d).to_string();
    assert!(e.contains("proposal 0") && e.contains("class 4") && e.contains("[0, 4)"), "{e}");
    assert!(matches!(inv(vec![Prediction::Dense(vec![0.1; 3])], Some(0), d), Error::Mismatch(_)));
    assert!(inv(vec![Prediction::Sparse(vec![(1, 1.5)])], Some(0), d).to_string().contains("1.5"));
    assert!(inv(vec![Prediction::Sparse(vec![(1, f32::NAN)])], Some(0), d).to_string().contains("NaN"));
    assert!(inv(vec![Prediction::Sparse(vec![(1, 0.2), (1, 0.3)])], Some(0), d).to_string().contains("twice"));
    assert!(inv(vec![], None, d).to_string().contains("original"));
    assert!(inv(vec![], Some(9), d).to_string().contains("original label 9"));
    let g = AggregateOptions { local: Local::Soft, global: Global::Prediction };
    assert!(inv(vec![], Some(0), g).to_string().contains("global"));
    let h = AggregateOptions { local: Local::Hard { tau: 1.5 }, global: Global::None };
    assert!(inv(vec![], Some(0), h).to_string().contains("1.5"));
}
