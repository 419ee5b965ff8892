//! Synthetic releases with planted behaviour: the analyses must recover
//! the centre-clicking worker, the top-right click offset, traces that
//! approach the click and the size trend of COCO recall — and must not
//! find an offset or a flagged worker that was not planted.

use labelscope_byproducts::analysis::{AnalysisOptions, ImagenetAnalysis, ImagenetReport};
use labelscope_byproducts::coco_analysis::{CocoAnalysis, CocoReport};
use labelscope_byproducts::synth::{write_coco_ab, write_imagenet_ab, SynthConfig, CENTRE_WORKER};
use labelscope_byproducts::{coco, imagenet, truth, ReadOptions};

fn imagenet_run(cfg: &SynthConfig, threads: usize) -> ImagenetReport {
    let dir = tempfile::tempdir().unwrap();
    let (rel, boxes) = (dir.path().join("ab.tar.gz"), dir.path().join("boxes.tsv"));
    let s = write_imagenet_ab(&rel, &boxes, cfg, &|_| {}).unwrap();
    assert_eq!(s.records, cfg.images);
    let t = truth::read_boxes(&boxes).unwrap();
    let mut an = ImagenetAnalysis::new(&t, AnalysisOptions::default());
    let sum = imagenet::read_archive(&rel, &ReadOptions { threads, ..Default::default() }, |r| an.add(&r)).unwrap();
    assert_eq!((sum.records, sum.skipped), (cfg.images as u64, 0));
    an.finish().unwrap()
}

fn coco_run(cfg: &SynthConfig) -> CocoReport {
    let dir = tempfile::tempdir().unwrap();
    let (rel, inst) = (dir.path().join("coco_ab.json"), dir.path().join("instances.json"));
    write_coco_ab(&rel, &inst, cfg, &|_| {}).unwrap();
    let t = truth::read_coco_instances(&inst).unwrap();
    let mut an = CocoAnalysis::new(&t, AnalysisOptions::default());
    let sum = coco::read_array(&rel, &ReadOptions::default(), |r| an.add(&r)).unwrap();
    assert_eq!(sum.records, cfg.images as u64);
    an.finish()
}

fn flagged(g: &[labelscope_byproducts::analysis::GroupStats]) -> Vec<&str> {
    g.iter().filter(|w| w.flagged).map(|w| w.key.as_str()).collect()
}

#[test]
fn imagenet_planted_behaviour_is_recovered() {
    let cfg = SynthConfig { images: 3000, classes: 20, workers: 12, seed: 7, ..Default::default() };
    let r = imagenet_run(&cfg, 2);
    assert_eq!(flagged(&r.workers), vec![CENTRE_WORKER]);
    let centre_worker = r.workers.iter().find(|w| w.key == CENTRE_WORKER).unwrap();
    assert!(centre_worker.centre.value() > 0.99, "{centre_worker:?}");
    // Ordinary workers click inside the box far more often than the centre worker.
    let others: Vec<_> = r.workers.iter().filter(|w| w.key != CENTRE_WORKER).collect();
    assert!(others.iter().all(|w| w.accuracy.value() > centre_worker.accuracy.value() + 0.2 && w.centre.value() < 0.3));
    // The top-right offset (+0.12, -0.12), diluted a little by the centre worker.
    let (u, v) = r.box_mean.0.mean();
    assert!((0.09..0.14).contains(&(u - 0.5)) && (0.09..0.14).contains(&(0.5 - v)), "({u}, {v})");
    // Traces approach the click: the last samples localise better than earlier ones, and late
    // quantiles better than early ones.
    let acc: Vec<f64> = r.last_n.iter().map(|(_, a)| a.value()).collect();
    assert!(acc[0] > acc[4] && acc[4] > acc[9], "{acc:?}");
    assert!((acc[0] - r.click.value()).abs() < 1e-12, "the last sample before the click is the click");
    assert!(r.trace_quantile[10].1.value() > r.trace_quantile[5].1.value() + 0.2);
    assert!(r.time_quantile[10].1.value() > r.time_quantile[2].1.value() + 0.3);
    // The click beats the centre; the Gaussian curve starts at the centre click and
    // ends near the uniform click's expected accuracy (the mean box area share).
    assert!(r.click.value() > r.centre.value() + 0.2);
    assert!((r.sigma_curve[0].1 - r.centre.value()).abs() < 1e-12);
    let c = r.coverage;
    assert_eq!(c.records, 3000);
    let share = c.reselected as f64 / c.records as f64;
    assert!((0.85..1.0).contains(&share), "{share}");
    // Same answers with one parser thread.
    let one = imagenet_run(&cfg, 1);
    assert_eq!(one, r);
}

#[test]
fn imagenet_without_planting_finds_nothing() {
    let cfg = SynthConfig {
        images: 2000,
        classes: 10,
        workers: 10,
        seed: 9,
        centre_worker: false,
        offset: (0.0, 0.0),
        ..Default::default()
    };
    let r = imagenet_run(&cfg, 0);
    assert!(flagged(&r.workers).is_empty());
    let (u, v) = r.box_mean.0.mean();
    assert!((u - 0.5).abs() < 0.02 && (v - 0.5).abs() < 0.02, "({u}, {v})");
}

#[test]
fn coco_planted_behaviour_is_recovered() {
    let cfg = SynthConfig { images: 2500, classes: 30, workers: 10, seed: 3, ..Default::default() };
    let r = coco_run(&cfg);
    assert_eq!(flagged(&r.workers), vec![CENTRE_WORKER]);
    let (u, v) = r.box_mean.0.mean();
    assert!((0.08..0.14).contains(&(u - 0.5)) && (0.08..0.14).contains(&(0.5 - v)), "({u}, {v})");
    // Larger objects are tagged more often: recall rises with log size.
    let (_, slope, _) = r.recall_fit.unwrap();
    assert!(slope > 0.05, "{slope}");
    let seqs: Vec<&str> = r.sequences.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(seqs[..4], ["add", "add-move", "add-remove-add", "add-remove"]);
    assert!(r.precision.value() > 0.7 && r.precision.value() <= r.box_precision.value() + 0.01);

    let plain = coco_run(&SynthConfig { centre_worker: false, offset: (0.0, 0.0), ..cfg });
    assert!(flagged(&plain.workers).is_empty());
    let (u, v) = plain.box_mean.0.mean();
    assert!((u - 0.5).abs() < 0.02 && (v - 0.5).abs() < 0.02, "({u}, {v})");
}
