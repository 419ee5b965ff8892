//! `labelscope classify`: run an ImageNet classifier (ResNet-50, ViT/DeiT) on
//! a folder of images and write prediction files that `labelscope eval`
//! reads: `top{k}.npy` (int32 `[N, k]`, best first), `images.txt` (the row
//! order), optionally `logits.npy` `[N, classes]` and `features.npy`
//! `[N, F]` (penultimate layer).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use clap::Args;
use labelscope_vision::loader::Loader;

use crate::nnio::{self, FloatDtype, InputArgs, ModelArgs};

/// `labelscope classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    /// Output folder: top{k}.npy, images.txt, skipped.tsv, and logits.npy / features.npy when asked.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of best classes kept per image.
    #[arg(long, default_value_t = 5)]
    topk: usize,
    /// Also write the logits [N, classes] in this precision.
    #[arg(long, value_enum, value_name = "DTYPE")]
    logits: Option<FloatDtype>,
    /// Also write the penultimate features [N, F] (ResNet: pooled layer4; ViT: pre-logits CLS) in this precision.
    #[arg(long, value_enum, value_name = "DTYPE")]
    features: Option<FloatDtype>,
}

/// The `k` best classes of one row of logits, best first (ties: lower index first).
pub fn top_k(row: &[f32], k: usize) -> Vec<i32> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    let key = |i: usize| if row[i].is_nan() { f32::NEG_INFINITY } else { row[i] };
    let k = k.min(row.len());
    if k < row.len() {
        idx.select_nth_unstable_by(k, |&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
        idx.truncate(k + 1);
    }
    idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    idx.truncate(k);
    idx.into_iter().map(|i| i as i32).collect()
}

/// Runs the command.
pub fn run(a: ClassifyArgs) -> Result<()> {
    let (model, dev, config) = a.model.load(&a.input)?;
    let classes = model.classes();
    if a.topk == 0 || a.topk > classes {
        bail!("--topk {} must be between 1 and the number of classes ({classes})", a.topk);
    }
    let (w, h) = config.preprocess.recipe.output_size();
    let items = nnio::list_images(&a.input.images)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let bar = nnio::progress(items.len(), "classify", a.input.quiet)?;
    let t0 = Instant::now();
    let paths: Vec<PathBuf> = items.iter().map(|i| i.path.clone()).collect();
    let loader = Loader::new(paths, config)?;
    let (mut names, mut top, mut logits_all, mut feats_all, mut bad) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut feat_dim = 0;
    for mut batch in loader {
        bar.inc(batch.paths.len() as u64);
        names.extend(nnio::batch_names(&batch, &items, a.input.skip_bad, &mut bad, &bar)?);
        let n = batch.ok_count();
        if n == 0 {
            continue;
        }
        // The tensor is kept by the model's input (no hand-back to the loader).
        let x = Tensor::from_vec(std::mem::take(&mut batch.data), (n, 3, h as usize, w as usize), &dev)?;
        let out = model.forward(&x)?;
        let l: Vec<f32> = out.logits.to_device(&candle_core::Device::Cpu)?.flatten_all()?.to_vec1()?;
        for row in l.chunks(classes) {
            top.extend(top_k(row, a.topk));
        }
        if a.logits.is_some() {
            logits_all.extend_from_slice(&l);
        }
        if a.features.is_some() {
            let (_, f) = out.features.dims2()?;
            feat_dim = f;
            feats_all.extend(out.features.to_device(&candle_core::Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?);
        }
    }
    bar.finish_and_clear();
    let n = names.len();
    if n == 0 {
        bail!("no image of {} could be read", a.input.images.display());
    }
    nnio::write_npy_i32(&a.out.join(format!("top{}.npy", a.topk)), &[n, a.topk], &top)?;
    if let Some(dt) = a.logits {
        nnio::write_npy_f32(&a.out.join("logits.npy"), &[n, classes], &logits_all, dt)?;
    }
    if let Some(dt) = a.features {
        nnio::write_npy_f32(&a.out.join("features.npy"), &[n, feat_dim], &feats_all, dt)?;
    }
    let mut skipped = String::from("image\terror\n");
    for (name, e) in &bad {
        skipped.push_str(&format!("{name}\t{}\n", e.replace(['\t', '\n'], " ")));
    }
    nnio::write_text(&a.out.join("skipped.tsv"), &skipped)?;
    // images.txt last: its presence means the folder is complete.
    let mut list = names.join("\n");
    list.push('\n');
    nnio::write_text(&a.out.join("images.txt"), &list)?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{n} images in {secs:.1} s ({:.2} images/s), {} unreadable → {}",
        n as f64 / secs.max(1e-9),
        bad.len(),
        a.out.display()
    );
    nnio::report_bad(&bad, Some(&a.out.join("skipped.tsv")))
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn top_k_orders_and_breaks_ties_by_index() {
        assert_eq!(top_k(&[0.1, 0.9, 0.5, 0.9, -1.0], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[3.0, 2.0, 1.0], 3), vec![0, 1, 2]);
        assert_eq!(top_k(&[f32::NAN, 1.0, 0.0], 2), vec![1, 2]);
        assert_eq!(top_k(&[5.0], 1), vec![0]);
    }
}
