//! The metrics on generated images and hand-made "classifiers" with known
//! behaviour: one that looks only at the background (corner pixels) must
//! keep its accuracy under every ablation and score RFS < 0; one that looks
//! only at the object (the centre pixel) must lose it and score RFS > 0.
//!
//! Images: 48 × 48, background (0.2, 0.7, 0.2) for class 0 and
//! (0.8, 0.7, 0.2) for class 1 (the spurious cue), a centred 16 × 16
//! object (0.6, 0.4, 0.4) for class 0 and (0.4, 0.4, 0.6) for class 1.

use labelscope_spurious::ablation::Ablation;
use labelscope_spurious::evaluate::{evaluate_batch, ClassMap, Evaluation, Model, NoiseOptions, Options, Sample};
use labelscope_spurious::noise::NoiseMode;
use labelscope_spurious::planar::{Mask, Planar};
use labelscope_spurious::Result;

const S: usize = 48;

fn sample(i: usize) -> Sample {
    let class = i % 2;
    let bg = if class == 0 { [0.2, 0.7, 0.2] } else { [0.8, 0.7, 0.2] };
    let obj = if class == 0 { [0.6, 0.4, 0.4] } else { [0.4, 0.4, 0.6] };
    let mut image = Planar::filled(S, S, bg);
    let mut bits = vec![false; S * S];
    for y in 16..32 {
        for x in 16..32 {
            bits[y * S + x] = true;
            for (c, v) in obj.iter().enumerate() {
                image.set(c, x, y, *v);
            }
        }
    }
    Sample { id: format!("img{i}"), class, image, mask: Mask::new(S, S, bits).unwrap() }
}

fn softmax2(z: f32) -> Vec<f32> {
    // p(class 1) = sigmoid(z).
    let p1 = 1.0 / (1.0 + (-z).exp());
    vec![1.0 - p1, p1]
}

/// Looks at one corner pixel's red value: above 0.5 means class 1.
struct Background;
/// Looks at the centre pixel: blue above red means class 1.
struct Object;

fn cam_at(points: &[(usize, usize)]) -> Vec<f32> {
    let mut m = vec![0.0f32; S * S];
    for y in 0..S {
        for x in 0..S {
            let d = points
                .iter()
                .map(|&(px, py)| ((x as f32 - px as f32).powi(2) + (y as f32 - py as f32).powi(2)).sqrt())
                .fold(f32::MAX, f32::min);
            m[y * S + x] = (1.0 - d / 12.0).max(0.0);
        }
    }
    m
}

impl Model for Background {
    fn classes(&self) -> usize {
        2
    }
    fn probabilities(&self, batch: &[&Planar]) -> Result<Vec<Vec<f32>>> {
        Ok(batch.iter().map(|im| softmax2(20.0 * (im.at(0, 1, 1) - 0.5))).collect())
    }
    fn cams(&self, batch: &[&Planar], _classes: &[usize]) -> Result<Option<Vec<Vec<f32>>>> {
        Ok(Some(batch.iter().map(|_| cam_at(&[(1, 1)])).collect()))
    }
}

impl Model for Object {
    fn classes(&self) -> usize {
        2
    }
    fn probabilities(&self, batch: &[&Planar]) -> Result<Vec<Vec<f32>>> {
        Ok(batch.iter().map(|im| softmax2(20.0 * (im.at(2, 24, 24) - im.at(0, 24, 24)))).collect())
    }
    fn cams(&self, batch: &[&Planar], _classes: &[usize]) -> Result<Option<Vec<Vec<f32>>>> {
        Ok(Some(batch.iter().map(|_| cam_at(&[(24, 24)])).collect()))
    }
}

fn options() -> Options {
    Options {
        ablations: Ablation::ALL.to_vec(),
        noise: Some(NoiseOptions { sigma: 0.5, mode: NoiseMode::Linf, trials: 5, seed: 7 }),
        saliency: true,
    }
}

fn run(model: &dyn Model, n: usize, batch: usize) -> Evaluation {
    let map = ClassMap::identity(vec!["zero".into(), "one".into()]);
    let samples: Vec<Sample> = (0..n).map(sample).collect();
    let mut e = Evaluation::default();
    for (k, chunk) in samples.chunks(batch).enumerate() {
        evaluate_batch(model, &map, chunk, k * batch, &options(), &mut e).unwrap();
    }
    e
}

fn acc(e: &Evaluation, cond: &str) -> f64 {
    e.conditions[cond].summary().unwrap().unwrap().accuracy
}

#[test]
fn a_background_classifier_ignores_ablations_and_has_negative_rfs() {
    let e = run(&Background, 60, 16);
    assert_eq!(e.scored, 60);
    for a in ["none", "gray", "gray-bbox", "tile"] {
        assert_eq!(acc(&e, a), 1.0, "{a}");
    }
    let r = e.rfs().unwrap();
    // Foreground noise never reaches the corner: a_fg = 1; background noise flips it sometimes.
    assert_eq!(r.a_fg, 1.0);
    assert!(r.a_bg < 0.95 && r.a_bg > 0.5, "{r:?}");
    assert!(r.rfs < -0.5, "{r:?}");
    let (lo, hi) = r.interval.unwrap();
    assert!(lo <= r.rfs && r.rfs <= hi && hi < 0.0, "{r:?}");
    let mean_iou: f64 = e.alignments.iter().map(|a| a.2.iou).sum::<f64>() / e.alignments.len() as f64;
    assert!(mean_iou < 0.01);
    assert!(e.alignments.iter().all(|a| a.2.density_gap.unwrap() < 0.0));
}

#[test]
fn an_object_classifier_loses_to_ablations_and_has_positive_rfs() {
    let e = run(&Object, 60, 16);
    assert_eq!(acc(&e, "none"), 1.0);
    // Without the object every score is a tie, which goes to class 0: half right.
    for a in ["gray", "gray-bbox", "tile"] {
        assert_eq!(acc(&e, a), 0.5, "{a}");
    }
    let conf = e.conditions["gray"].summary().unwrap().unwrap().confidence;
    assert!((conf - 0.5).abs() < 1e-6, "true-class confidence of a tie: {conf}");
    let r = e.rfs().unwrap();
    assert_eq!(r.a_bg, 1.0);
    assert!(r.a_fg < 0.95, "{r:?}");
    assert!(r.rfs > 0.5, "{r:?}");
    assert!(r.per_class.values().all(|c| c.2 > 0.0), "{r:?}");
    let mean_iou: f64 = e.alignments.iter().map(|a| a.2.iou).sum::<f64>() / e.alignments.len() as f64;
    // The map is >= 0.5 on the disc of radius 6 around the centre, all inside the 16 x 16 object.
    let disc = (0..S * S).filter(|p| ((p % S) as f64 - 24.0).powi(2) + ((p / S) as f64 - 24.0).powi(2) <= 36.0).count();
    assert!((mean_iou - disc as f64 / 256.0).abs() < 1e-6, "{mean_iou} vs {disc}/256");
}

#[test]
fn results_do_not_depend_on_batching() {
    let a = run(&Object, 30, 30);
    let b = run(&Object, 30, 7);
    assert_eq!(a.noise, b.noise);
    assert_eq!(a.rfs(), b.rfs());
    for (k, v) in &a.conditions {
        let mut x = v.rows.clone();
        let mut y = b.conditions[k].rows.clone();
        x.sort_by(|p, q| p.partial_cmp(q).unwrap());
        y.sort_by(|p, q| p.partial_cmp(q).unwrap());
        assert_eq!(x, y, "{k}");
    }
}

#[test]
fn empty_masks_are_counted_not_scored_and_bad_input_is_refused() {
    let map = ClassMap::identity(vec!["zero".into(), "one".into()]);
    let mut s = sample(0);
    s.mask = Mask::new(S, S, vec![false; S * S]).unwrap();
    let mut e = Evaluation::default();
    evaluate_batch(&Object, &map, &[s, sample(1)], 0, &options(), &mut e).unwrap();
    assert_eq!((e.scored, e.empty_masks.clone()), (1, vec!["img0".to_string()]));
    // A mask of another size names the image.
    let mut s = sample(2);
    s.mask = Mask::new(8, 8, vec![true; 64]).unwrap();
    let err = evaluate_batch(&Object, &map, &[s], 0, &options(), &mut e).unwrap_err().to_string();
    assert!(err.contains("img2") && err.contains("mask of 8x8"), "{err}");
    // A head that does not match the class list.
    let big = ClassMap { names: vec!["a".into()], outputs: vec![vec![5]], restrict: false };
    let err = evaluate_batch(&Object, &big, &[sample(0)], 0, &options(), &mut e).unwrap_err().to_string();
    assert!(err.contains("output 5") && err.contains("2 outputs"), "{err}");
    // A class outside the map.
    let mut s = sample(1);
    s.class = 9;
    assert!(evaluate_batch(&Object, &map, &[s], 0, &options(), &mut e).is_err());
}

#[test]
fn hard_imagenet_map() {
    let m = ClassMap::hard_imagenet_on_imagenet();
    assert_eq!(m.names.len(), 15);
    m.check(1000).unwrap();
    assert!(m.check(15).is_err());
    // "sunglasses": either ImageNet output counts.
    let k = m.names.iter().position(|n| n == "sunglasses").unwrap();
    let mut p = vec![0.0f32; 1000];
    p[836] = 0.6;
    p[837] = 0.3;
    let (ok, conf) = m.judge(&p, k);
    assert!(ok && (conf - 0.9).abs() < 1e-6);
    // Restricted to the 15 classes, a higher score elsewhere does not count against.
    let mut p = vec![0.0f32; 1000];
    p[0] = 0.9;
    p[537] = 0.1;
    assert!(!m.judge(&p, 0).0);
    let r = ClassMap { restrict: true, ..m };
    assert!(r.judge(&p, 0).0);
}
