//! `labelscope features`: patch features / attention keys of a DINO ViT for a
//! folder of images, one `.npy` `[h, w, D]` per image, ready for
//! `labelscope proposals --features-dir`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use labelscope_nn::Vit;
use labelscope_proposals::manifest::Shard;

/// Which tokens to write.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    /// Keys of the last block's attention (MaskCut / TokenCut).
    Keys,
    /// Patch tokens after the final norm.
    Patches,
    /// Queries of the last block's attention.
    Queries,
    /// Values of the last block's attention.
    Values,
}

/// Architectures.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ModelArg {
    /// DINO ViT-S/16.
    DinoVits16,
    /// DINO ViT-S/8.
    DinoVits8,
    /// DINO ViT-B/16.
    DinoVitb16,
    /// DINO ViT-B/8 (CutLER's MaskCut backbone).
    DinoVitb8,
    /// DINOv2 ViT-S/14 (facebookresearch/dinov2 layout; patch 14: --size a multiple of 14).
    #[value(name = "dinov2-vits14")]
    Dinov2Vits14,
    /// DINOv2 ViT-B/14.
    #[value(name = "dinov2-vitb14")]
    Dinov2Vitb14,
    /// DINOv2 ViT-L/14.
    #[value(name = "dinov2-vitl14")]
    Dinov2Vitl14,
    /// DINOv2 ViT-g/14 (SwiGLU FFN).
    #[value(name = "dinov2-vitg14")]
    Dinov2Vitg14,
    /// DINOv2 ViT-S/14 with 4 registers.
    #[value(name = "dinov2-vits14-reg")]
    Dinov2Vits14Reg,
    /// DINOv2 ViT-B/14 with 4 registers.
    #[value(name = "dinov2-vitb14-reg")]
    Dinov2Vitb14Reg,
    /// DINOv2 ViT-L/14 with 4 registers.
    #[value(name = "dinov2-vitl14-reg")]
    Dinov2Vitl14Reg,
    /// DINOv2 ViT-g/14 with 4 registers.
    #[value(name = "dinov2-vitg14-reg")]
    Dinov2Vitg14Reg,
}

/// Storage type of the written features.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum DtypeArg {
    /// Half precision (half the disk space; proposals read it exactly).
    F16,
    /// Single precision.
    F32,
}

/// `labelscope features`.
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// The architecture of the weights.
    #[arg(long, value_enum, required_unless_present = "arch")]
    model: Option<ModelArg>,
    /// Another DINO-layout ViT: DIM:DEPTH:HEADS:PATCH (MLP ratio 4), e.g. 384:12:6:16.
    #[arg(long, value_name = "D:L:H:P", conflicts_with = "model")]
    arch: Option<String>,
    /// Weights in the DINO (or, for dinov2-*, DINOv2) tensor layout (.safetensors).
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// Folder of images (JPEG/PNG), processed in file-name order.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Output folder: one <id>.npy [h, w, D] per image; existing files are kept (resume).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Square input size in pixels (a multiple of the patch size): 480 for CutLER's recipe.
    #[arg(long, default_value_t = 480)]
    size: usize,
    /// Which tokens to write.
    #[arg(long, value_enum, default_value = "keys")]
    output: Output,
    /// Storage type.
    #[arg(long, value_enum, default_value = "f16")]
    dtype: DtypeArg,
    /// Run shard i of n (0-based) of the sorted image list.
    #[arg(long, value_name = "i/n", default_value = "0/1")]
    shard: String,
    /// Record unreadable images and go on (exit status 1 at the end).
    #[arg(long)]
    skip_bad: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Device: cpu, cuda or cuda:N (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Precision of the weights and the computation (f16/bf16: faster on GPUs, features within
    /// half-precision rounding of f32's).
    #[arg(long, value_enum, default_value = "f32")]
    precision: crate::nnio::Precision,
}

/// f32 → IEEE half bits, round to nearest even.
pub(crate) fn to_half_bits(v: f32) -> u16 {
    labelscope_core::npy::f32_to_f16(v)
}

/// Runs the command.
pub fn run(a: FeaturesArgs) -> Result<()> {
    let (cfg, variant) = match (a.model, &a.arch) {
        (Some(m), _) => {
            let name = m.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
            labelscope_nn::preset(&name).ok_or_else(|| anyhow::anyhow!("no built-in architecture {name:?}"))?
        }
        (None, Some(s)) => crate::nnio::parse_arch(s)?,
        (None, None) => bail!("give --model or --arch"),
    };
    if a.size == 0 || !a.size.is_multiple_of(cfg.patch) {
        bail!("--size {} must be a positive multiple of the patch size {}", a.size, cfg.patch);
    }
    let shard = Shard::parse(&a.shard)?;
    let dev = crate::nnio::device(&a.device)?;
    let mut vit = Vit::from_safetensors_with(cfg, variant, &a.weights, &dev)?;
    if a.precision != crate::nnio::Precision::F32 {
        vit = vit.to_dtype(a.precision.dtype())?;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&a.images)
        .with_context(|| format!("reading {}", a.images.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            labelscope_core::ids::join_key(&n) != n
        })
        .collect();
    files.sort();
    let mine: Vec<&PathBuf> =
        files.iter().enumerate().filter(|(i, _)| i % shard.count == shard.index).map(|(_, f)| f).collect();
    if mine.is_empty() {
        bail!("no images in {} for shard {shard}", a.images.display());
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let bar = if a.quiet { ProgressBar::hidden() } else { ProgressBar::new(mine.len() as u64) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} features [{bar:30}] {pos}/{len} images, {per_sec}, eta {eta}")
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .progress_chars("=> "),
    );
    let t0 = Instant::now();
    let (mut done, mut skipped, mut bad) = (0usize, 0usize, Vec::new());
    let g = a.size / cfg.patch;
    let pre = labelscope_vision::preprocess::Preprocess::new(labelscope_vision::preprocess::Recipe::Fixed {
        size: a.size as u32,
    });
    let decode_opts = labelscope_vision::decode::DecodeOptions { exif_orientation: false, ..Default::default() };
    for path in mine {
        bar.inc(1);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let id = labelscope_core::ids::join_key(&name).to_string();
        let out = a.out.join(format!("{id}.npy"));
        if out.exists() {
            skipped += 1;
            continue;
        }
        // CutLER's MaskCut: Image.open(path).convert("RGB") (no EXIF transpose),
        // then resize((size, size), LANCZOS) and ImageNet normalisation.
        let img = match labelscope_vision::decode::decode_file(path, &decode_opts) {
            Ok(i) => i,
            Err(e) if a.skip_bad => {
                bad.push(format!("{e}"));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut chw = vec![0f32; pre.image_len()];
        pre.run_into(&img, &mut chw)?;
        let x = Tensor::from_vec(chw, (1, 3, a.size, a.size), &dev)?;
        let o = vit.forward(&x)?;
        let t = match a.output {
            Output::Keys => o.keys,
            Output::Patches => o.patches,
            Output::Queries => o.queries,
            Output::Values => o.values,
        };
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        let shape = [g, g, cfg.dim];
        labelscope_core::atomic::write_atomic_with(&out, |w| match a.dtype {
            DtypeArg::F32 => {
                w.write_all(&labelscope_core::npy::header_bytes("<f4", &shape))?;
                w.write_all(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
            }
            DtypeArg::F16 => {
                w.write_all(&labelscope_core::npy::header_bytes("<f2", &shape))?;
                w.write_all(&v.iter().flat_map(|&x| to_half_bits(x).to_le_bytes()).collect::<Vec<u8>>())
            }
        })?;
        done += 1;
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{done} images in {secs:.1} s ({:.2} images/s), {skipped} already done, {} unreadable → {}",
        done as f64 / secs.max(1e-9),
        bad.len(),
        a.out.display()
    );
    if !bad.is_empty() {
        for b in bad.iter().take(20) {
            eprintln!("skipped: {b}");
        }
        bail!("{} images could not be read", bad.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::to_half_bits;

    #[test]
    fn half_rounding_matches_the_decoder() {
        // Every f16 value round-trips, and midpoints round to even.
        for bits in 0u16..=0xffff {
            let f = labelscope_core::npy::f16_to_f32(bits);
            if f.is_nan() {
                assert_eq!(to_half_bits(f) & 0x7c00, 0x7c00);
                continue;
            }
            assert_eq!(to_half_bits(f), bits, "{bits:#x} ({f})");
        }
        assert_eq!(to_half_bits(1.0 + 2f32.powi(-11)), 0x3c00); // tie → even (1.0)
        assert_eq!(to_half_bits(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02); // tie → even (up)
        assert_eq!(to_half_bits(1e9), 0x7c00);
    }
}
