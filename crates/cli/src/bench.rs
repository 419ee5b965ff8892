//! `labelscope bench`: generates a reproducible score matrix with
//! multi-labels and times each stage of the score-based evaluation in
//! process. The side-by-side comparison with the Python reference is
//! `bench/compare.py` (see BENCHMARKS.md).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use labelscope_core::eval::{Dataset, EvalOptions, ScoreKind};
use labelscope_core::labels::{self};
use labelscope_core::metrics::intervals::Bootstrap;
use labelscope_core::metrics::sets::{Activation, Thresholds};
use labelscope_core::metrics::{ranking, sets};
use labelscope_core::npy::header_bytes;
use labelscope_core::order::ImageOrder;
use labelscope_core::predictions::{PredictionData, PredictionOptions, Predictions};
use labelscope_core::rng::Xoshiro256;
use labelscope_core::ClassTable;

use crate::args::BenchArgs;

/// Writes the benchmark inputs into `dir`: `scores.npy` (f32 [rows, classes],
/// probabilities quantised to 1/4096 so that ties occur), `labels.json`
/// ({name: [classes]}, 1–4 labels per image, a few empty sets) and `images.txt`.
pub fn generate(dir: &Path, rows: usize, classes: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rng = Xoshiro256::from_seed(seed);
    let mut labels = String::from("{");
    let mut images = String::new();
    let path = dir.join("scores.npy");
    labelscope_core::atomic::write_atomic_with(&path, |w| {
        w.write_all(&header_bytes("<f4", &[rows, classes]))?;
        let mut row = vec![0f32; classes];
        for i in 0..rows {
            let u = rng.unit();
            let k = if u < 0.02 {
                0
            } else if u < 0.62 {
                1
            } else if u < 0.87 {
                2
            } else if u < 0.96 {
                3
            } else {
                4
            };
            let mut set: Vec<usize> = Vec::with_capacity(k);
            while set.len() < k {
                let c = (rng.next_u64() % classes as u64) as usize;
                if !set.contains(&c) {
                    set.push(c);
                }
            }
            set.sort_unstable();
            for v in row.iter_mut() {
                let x = rng.unit();
                *v = (x * x * x * 0.3) as f32;
            }
            for &c in &set {
                row[c] = (0.15 + 0.85 * rng.unit()) as f32;
            }
            // a few confusable negatives score high too
            for _ in 0..2 {
                let c = (rng.next_u64() % classes as u64) as usize;
                row[c] = row[c].max((0.6 * rng.unit()) as f32);
            }
            for v in row.iter_mut() {
                *v = (*v * 4096.0).round() / 4096.0;
            }
            let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write_all(&bytes)?;
            let name = format!("img_{i:06}.jpg");
            if i > 0 {
                labels.push_str(",\n");
            }
            labels.push_str(&format!("\"{name}\": {:?}", set));
            images.push_str(&name);
            images.push('\n');
        }
        Ok(())
    })?;
    labels.push_str("}\n");
    labelscope_core::atomic::write_atomic(&dir.join("labels.json"), labels.as_bytes())?;
    labelscope_core::atomic::write_atomic(&dir.join("images.txt"), images.as_bytes())?;
    Ok(())
}

fn timed<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let r = f()?;
    println!("{name:<34} {:>9.1} ms", t.elapsed().as_secs_f64() * 1e3);
    Ok(r)
}

/// `labelscope bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    let scores_path = a.dir.join("scores.npy");
    if !scores_path.exists() {
        timed("generate inputs", || generate(&a.dir, a.rows, a.classes, a.seed))?;
    }
    if a.generate_only {
        println!("inputs in {}", a.dir.display());
        return Ok(());
    }
    let classes = ClassTable::imagenet();
    if a.classes != classes.len() {
        anyhow::bail!("bench evaluates against the 1000-class table; use --classes 1000");
    }
    println!("threads: {}", rayon::current_num_threads());
    let labels = timed("load labels.json", || Ok(labels::load_labels(&a.dir.join("labels.json"), None, classes)?))?;
    let order = timed("load images.txt", || Ok(ImageOrder::load(&a.dir.join("images.txt"), classes)?))?;
    let preds = timed("open scores.npy (+ finite check)", || {
        Ok(Predictions::load(&scores_path, &PredictionOptions::default())?)
    })?;
    let PredictionData::Scores(m) = &preds.data else { anyhow::bail!("scores.npy is not a score matrix") };
    let (s, n, c) = (m.as_slice(), m.rows(), m.cols());
    let opts = EvalOptions {
        score_kind: Some(ScoreKind::Probs),
        bootstrap: Some(Bootstrap { resamples: 1000, seed: 0, alpha: 0.05 }),
        ..EvalOptions::default()
    };
    let ds = timed("join labels to rows", || Ok(Dataset::prepare("bench", order, &labels, None, classes, &opts)?))?;
    let gt = &ds.gt;
    timed("top-5 from scores", || Ok(ranking::topk_from_scores(s, n, c, 5)))?;
    timed("sample-wise AP", || Ok(ranking::per_sample_ap(s, n, c, gt)))?;
    timed("class-wise AP (both variants)", || Ok(ranking::per_class_ap(s, n, c, gt, None)))?;
    timed("set metrics, threshold 0.5", || {
        let p = sets::predict_sets(s, n, c, Activation::None, Thresholds::Fixed(0.5), gt);
        Ok(sets::summarize(&p, gt, c, None))
    })?;
    timed("set metrics, calibrated", || {
        let p = sets::predict_sets(s, n, c, Activation::None, Thresholds::Calibrated, gt);
        Ok(sets::summarize(&p, gt, c, None))
    })?;
    let ev = timed("whole evaluation (all metrics)", || Ok(ds.evaluate(&preds, &opts)?))?;
    println!("{} result rows", ev.rows.len());
    Ok(())
}
