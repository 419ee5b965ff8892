//! `labelscope gradcam`: GradCAM maps (or input-gradient saliency) of a
//! classifier for a folder of images: one `<id>.npy` `[H, W]` f32 map in
//! `[0, 1]` at the model's input resolution per image, an optional overlay
//! PNG, and `cams.tsv` (image, class, logit, probability).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use labelscope_core::classes::ClassTable;
use labelscope_vision::loader::Loader;
use labelscope_vision::RgbImage;

use crate::nnio::{self, InputArgs, ModelArgs};

/// Which map to compute.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Method {
    /// GradCAM at the model's target layer (ResNet: layer4; ViT: last block's norm1), upsampled
    /// bilinearly to the input size and min-max scaled per image.
    Gradcam,
    /// Input-gradient saliency: max over the colour channels of |∂logit/∂x|, min-max scaled per image.
    InputGradient,
}

/// `labelscope gradcam`.
#[derive(Debug, Args)]
pub struct GradcamArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    /// Output folder: <id>.npy maps, <id>.png overlays (with --overlay) and cams.tsv.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Target class: "predicted" (each image's top-1), a class index (0-999) or a WordNet id (n01440764).
    #[arg(long, default_value = "predicted")]
    class: String,
    /// Map to compute.
    #[arg(long, value_enum, default_value = "gradcam")]
    method: Method,
    /// Also write the preprocessed image with the map blended over it (PNG).
    #[arg(long)]
    overlay: bool,
}

/// A colour for a map value in [0, 1] (blue → cyan → yellow → red).
fn heat(v: f32) -> [f32; 3] {
    let v = v.clamp(0.0, 1.0);
    let stops: [(f32, [f32; 3]); 5] = [
        (0.0, [0.0, 0.0, 0.5]),
        (0.25, [0.0, 0.3, 1.0]),
        (0.5, [0.0, 1.0, 1.0]),
        (0.75, [1.0, 1.0, 0.0]),
        (1.0, [1.0, 0.0, 0.0]),
    ];
    for w in stops.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if v <= b {
            let t = (v - a) / (b - a);
            return std::array::from_fn(|c| ca[c] + t * (cb[c] - ca[c]));
        }
    }
    stops[4].1
}

/// The preprocessed image (normalised CHW) back as 8-bit RGB, with the map blended over it.
fn overlay(chw: &[f32], map: &[f32], w: usize, h: usize, mean: [f32; 3], std: [f32; 3]) -> Option<RgbImage> {
    let n = w * h;
    let mut buf = vec![0u8; n * 3];
    for i in 0..n {
        let hc = heat(map[i]);
        for c in 0..3 {
            let px = (chw[c * n + i] * std[c] + mean[c]).clamp(0.0, 1.0);
            buf[i * 3 + c] = ((0.5 * px + 0.5 * hc[c]) * 255.0).round() as u8;
        }
    }
    RgbImage::from_raw(w as u32, h as u32, buf)
}

/// Runs the command.
pub fn run(a: GradcamArgs) -> Result<()> {
    let (model, dev, config) = a.model.load(&a.input)?;
    let classes = model.classes();
    let fixed_class = match a.class.as_str() {
        "predicted" => None,
        s => {
            let k = match s.parse::<usize>() {
                Ok(k) => Some(k),
                Err(_) => ClassTable::imagenet().index_of_wnid(s),
            };
            match k {
                Some(k) if k < classes => Some(k),
                _ => bail!(
                    "--class {s:?}: expected \"predicted\", a class index below {classes} or an ImageNet WordNet id"
                ),
            }
        }
    };
    let pre = config.preprocess;
    let (w, h) = pre.recipe.output_size();
    let (w, h) = (w as usize, h as usize);
    let items = nnio::list_images(&a.input.images)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let bar = nnio::progress(items.len(), "gradcam", a.input.quiet)?;
    let t0 = Instant::now();
    let loader = Loader::new(items.iter().map(|i| i.path.clone()).collect(), config)?;
    let mut tsv = String::from("image\tclass\tlogit\tprobability\n");
    let (mut done, mut bad) = (0usize, Vec::new());
    for batch in loader {
        bar.inc(batch.paths.len() as u64);
        let ok_names = nnio::batch_names(&batch, &items, a.input.skip_bad, &mut bad, &bar)?;
        let n = ok_names.len();
        if n == 0 {
            continue;
        }
        let x = Tensor::from_vec(batch.data.clone(), (n, 3, h, w), &dev)?;
        // GradCAM reads the predicted classes off its own hooked forward pass, so it runs
        // one pass; the input gradient needs the targets first (one extra forward pass).
        let logits: Vec<Vec<f32>>;
        let mut targets: Vec<usize> = match fixed_class {
            Some(k) => vec![k; n],
            None => Vec::new(),
        };
        let maps = match a.method {
            Method::Gradcam => {
                let g = match fixed_class {
                    Some(_) => labelscope_nn::gradcam(&model, &x, &targets)?,
                    None => labelscope_nn::gradcam_predicted(&model, &x)?,
                };
                targets = g.classes.clone();
                logits = g.logits.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
                labelscope_nn::upsample_normalize(&g.cams, (h, w))?
            }
            Method::InputGradient => {
                let l = model.forward(&x)?.logits.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
                if fixed_class.is_none() {
                    targets = l.iter().map(|r| crate::classify::top_k(r, 1)[0] as usize).collect();
                }
                logits = l;
                let g = labelscope_nn::input_gradient(&model, &x, &targets)?;
                let s = g.abs()?.max(1)?; // [B, H, W]
                let flat = s.reshape((n, h * w))?;
                let mn = flat.min_keepdim(1)?;
                let range = (flat.max_keepdim(1)? - &mn)?;
                let range = range.maximum(1e-30)?;
                flat.broadcast_sub(&mn)?.broadcast_div(&range)?.reshape((n, h, w))?
            }
        };
        let maps: Vec<f32> = maps.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?;
        for (j, name) in ok_names.iter().enumerate() {
            let id = labelscope_core::ids::join_key(name.rsplit('/').next().unwrap_or(name)).to_string();
            let map = &maps[j * h * w..(j + 1) * h * w];
            nnio::write_npy_f32(&a.out.join(format!("{id}.npy")), &[h, w], map, nnio::FloatDtype::F32)?;
            if a.overlay {
                let chw = &batch.data[j * 3 * h * w..(j + 1) * 3 * h * w];
                let img = overlay(chw, map, w, h, pre.mean, pre.std)
                    .ok_or_else(|| anyhow::anyhow!("internal: overlay buffer for {name}"))?;
                labelscope_vision::save_png_atomic(&img, a.out.join(format!("{id}.png")))?;
            }
            let row = &logits[j];
            let k = targets[j];
            let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let z: f64 = row.iter().map(|&v| ((v - mx) as f64).exp()).sum();
            let p = ((row[k] - mx) as f64).exp() / z;
            tsv.push_str(&format!("{name}\t{k}\t{}\t{p:.6}\n", row[k]));
            done += 1;
        }
    }
    bar.finish_and_clear();
    nnio::write_text(&a.out.join("cams.tsv"), &tsv)?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{done} maps in {secs:.1} s ({:.2} images/s), {} unreadable → {}",
        done as f64 / secs.max(1e-9),
        bad.len(),
        a.out.display()
    );
    nnio::report_bad(&bad, None)
}

#[cfg(test)]
mod tests {
    use super::heat;

    #[test]
    fn heat_ends() {
        assert_eq!(heat(0.0), [0.0, 0.0, 0.5]);
        assert_eq!(heat(1.0), [1.0, 0.0, 0.0]);
        assert_eq!(heat(0.5), [0.0, 1.0, 1.0]);
        assert_eq!(heat(2.0), [1.0, 0.0, 0.0]);
    }
}
