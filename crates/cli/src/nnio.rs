//! Shared plumbing of the neural commands (`classify`, `gradcam`, `features`):
//! image lists, devices, preprocessing options and `.npy` output.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use labelscope_vision::decode::DecodeOptions;
use labelscope_vision::loader::LoaderConfig;
use labelscope_vision::preprocess::{Preprocess, Recipe};
use labelscope_vision::resample::Filter;

/// File extensions taken as images when a folder is listed (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp"];

/// The images of a folder (not recursive; [`IMAGE_EXTENSIONS`]) by file stem; of two files with
/// one stem, the first by path.
pub fn images_by_stem(dir: &Path) -> Result<std::collections::BTreeMap<String, PathBuf>> {
    let mut paths = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        paths.push(e?.path());
    }
    paths.sort();
    let mut out = std::collections::BTreeMap::new();
    for p in paths {
        let ext = p.extension().and_then(|x| x.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
        if p.is_file() && IMAGE_EXTENSIONS.contains(&ext.as_str()) {
            if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                out.entry(stem.to_string()).or_insert(p.clone());
            }
        }
    }
    Ok(out)
}

/// Options shared by the commands that read images and run a model.
#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// Images: a folder (searched recursively for .jpg/.jpeg/.png/.webp, sorted by relative path)
    /// or a text file with one image path per line (relative to the file's folder; # comments).
    #[arg(long, value_name = "DIR|LIST")]
    pub images: PathBuf,
    /// Preprocessing recipe: resize256-crop224 (torchvision/timm eval), square256-crop224 (Hard
    /// ImageNet), fixed480 / fixed896 (MaskCut), or resize{S}-crop{C}, square{S}-crop{C}, fixed{N}.
    #[arg(long, default_value = "resize256-crop224")]
    pub recipe: String,
    /// Interpolation (Pillow's filters): nearest, box, bilinear, hamming, bicubic, lanczos. Default:
    /// the recipe's (bilinear for resize/square recipes as torchvision; pass bicubic for timm models).
    #[arg(long)]
    pub interpolation: Option<String>,
    /// Do not apply the EXIF orientation tag (torchvision's ImageFolder loader ignores it).
    #[arg(long)]
    pub no_exif_orientation: bool,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Device: cpu, cuda or cuda:N (cuda needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Record unreadable images, leave them out and go on (exit status 1 at the end).
    #[arg(long)]
    pub skip_bad: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

impl InputArgs {
    /// The loader configuration these options describe.
    pub fn loader_config(&self) -> Result<LoaderConfig> {
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        let recipe: Recipe = self.recipe.parse()?;
        let mut pre = Preprocess::new(recipe);
        if let Some(f) = &self.interpolation {
            let f: Filter = f.parse()?;
            pre = pre.with_filter(f);
        }
        let decode = DecodeOptions { exif_orientation: !self.no_exif_orientation, ..DecodeOptions::default() };
        Ok(LoaderConfig { preprocess: pre, decode, batch_size: self.batch, prefetch: 2, threads: 0 })
    }
}

/// Precision of a model's weights and computation (`--precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// 32-bit floats (the default; the only choice for gradients and for ResNets on the CPU).
    F32,
    /// IEEE half precision (ViTs, and ResNets on a GPU; meant for GPUs).
    F16,
    /// bfloat16 (CUDA devices only).
    Bf16,
}

impl Precision {
    /// The candle dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Precision::F32 => candle_core::DType::F32,
            Precision::F16 => candle_core::DType::F16,
            Precision::Bf16 => candle_core::DType::BF16,
        }
    }
}

/// The classifier options shared by `classify` and `gradcam`.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Classifier: resnet50, deit_small_patch16_224, deit_base_patch16_224, vit_small_patch16_224,
    /// vit_base_patch16_224 (`labelscope weights list` shows them).
    #[arg(long)]
    pub model: String,
    /// Weights in the model's layout (.safetensors; `labelscope weights convert` makes them from .pth).
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Precision of the weights and the computation: f16/bf16 for the ViT/DeiT models, and for
    /// ResNets on a GPU (faster on GPUs, outputs within half-precision rounding of f32; gradients
    /// need f32).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
}

impl ModelArgs {
    /// Loads the classifier on the device of `input`, and the loader configuration of `input`,
    /// checking that the model takes the recipe's images (ViT sides: multiples of the patch).
    pub fn load(&self, input: &InputArgs) -> Result<(labelscope_nn::Classifier, Device, LoaderConfig)> {
        let dev = device(&input.device)?;
        let model =
            labelscope_nn::Classifier::load(&self.model, &self.weights, &dev)?.to_dtype(self.precision.dtype())?;
        let config = input.loader_config()?;
        let (w, h) = config.preprocess.recipe.output_size();
        if let Some(p) = model.patch() {
            if !(w as usize).is_multiple_of(p) || !(h as usize).is_multiple_of(p) {
                bail!(
                    "--recipe {} gives {w}x{h} images, which {} cannot take: sides must be multiples of {p}",
                    input.recipe,
                    self.model
                );
            }
        }
        Ok((model, dev, config))
    }
}

/// A DINO-layout ViT given as `--arch DIM:DEPTH:HEADS:PATCH` (MLP ratio 4).
pub fn parse_arch(s: &str) -> Result<(labelscope_nn::VitConfig, labelscope_nn::VitVariant)> {
    let v: Vec<usize> = s
        .split(':')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow::anyhow!("--arch {s:?}: expected four positive integers DIM:DEPTH:HEADS:PATCH"))?;
    match v.as_slice() {
        &[dim, depth, heads, patch] if dim > 0 && depth > 0 && heads > 0 && patch > 0 => Ok((
            labelscope_nn::VitConfig { patch, dim, depth, heads, mlp_ratio: 4 },
            labelscope_nn::VitVariant::dino(patch),
        )),
        _ => bail!("--arch {s:?}: expected four positive integers DIM:DEPTH:HEADS:PATCH"),
    }
}

/// The candle device named by `--device`.
pub fn device(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    let ordinal = match s.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        _ => match s.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => bail!("--device {spec:?}: expected cpu, cuda or cuda:N"),
        },
    };
    if !candle_core::utils::cuda_is_available() {
        bail!(
            "--device {spec}: this labelscope was built without CUDA support; rebuild with \
             `cargo build --release --features cuda` on a machine with the CUDA toolkit"
        );
    }
    Device::new_cuda(ordinal).map_err(|e| {
        // The driver's message, without the backtrace candle attaches.
        let e = match e {
            candle_core::Error::WithBacktrace { inner, .. } => *inner,
            e => e,
        };
        anyhow::anyhow!("opening CUDA device {ordinal}: {e}")
    })
}

/// An image to process: its path and the name written to `images.txt`.
#[derive(Debug, Clone)]
pub struct ImageItem {
    /// The file.
    pub path: PathBuf,
    /// Its name relative to the folder or list (what `eval --images` reads back).
    pub name: String,
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Lists the images of a folder (recursively, sorted by relative path) or of a list file.
pub fn list_images(spec: &Path) -> Result<Vec<ImageItem>> {
    let meta = std::fs::metadata(spec).with_context(|| format!("{}: cannot read", spec.display()))?;
    let mut items = Vec::new();
    if meta.is_dir() {
        let mut stack = vec![spec.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))? {
                let entry = entry.with_context(|| format!("{}: cannot list", dir.display()))?;
                let path = entry.path();
                let ft = entry.file_type().with_context(|| format!("{}: cannot stat", path.display()))?;
                if ft.is_dir() {
                    stack.push(path);
                } else if is_image(&path) {
                    let rel = path.strip_prefix(spec).unwrap_or(&path);
                    let name = rel.to_string_lossy().replace('\\', "/");
                    items.push(ImageItem { path, name });
                }
            }
        }
        items.sort_by(|a, b| a.name.cmp(&b.name));
        if items.is_empty() {
            bail!("{}: no images (.jpg, .jpeg, .png, .webp) in this folder", spec.display());
        }
    } else {
        let text = std::fs::read_to_string(spec).with_context(|| format!("{}: cannot read", spec.display()))?;
        let base = spec.parent().unwrap_or(Path::new("."));
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.contains('\0') {
                bail!("{}: line {}: a NUL byte in the path", spec.display(), i + 1);
            }
            let p = Path::new(t);
            let path = if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
            items.push(ImageItem { path, name: t.to_string() });
        }
        if items.is_empty() {
            bail!("{}: the image list is empty (expected one image path per line)", spec.display());
        }
    }
    let mut seen = std::collections::HashSet::new();
    for it in &items {
        if !seen.insert(it.name.as_str()) {
            bail!("{}: image {:?} is listed twice", spec.display(), it.name);
        }
    }
    Ok(items)
}

/// The element types written to `.npy` files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloatDtype {
    /// Half precision (IEEE binary16, round to nearest even).
    F16,
    /// Single precision.
    F32,
}

/// Writes `data` (row-major, `shape`) as a `.npy` file atomically.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32], dtype: FloatDtype) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        bail!("internal: {} values for the shape {shape:?} of {}", data.len(), path.display());
    }
    labelscope_core::atomic::write_atomic_with(path, |w| match dtype {
        FloatDtype::F32 => {
            w.write_all(&labelscope_core::npy::header_bytes("<f4", shape))?;
            w.write_all(&data.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
        }
        FloatDtype::F16 => {
            w.write_all(&labelscope_core::npy::header_bytes("<f2", shape))?;
            w.write_all(&data.iter().flat_map(|&x| crate::features::to_half_bits(x).to_le_bytes()).collect::<Vec<u8>>())
        }
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Writes `data` (row-major, `shape`) as an int32 `.npy` file atomically.
pub fn write_npy_i32(path: &Path, shape: &[usize], data: &[i32]) -> Result<()> {
    labelscope_core::atomic::write_atomic_with(path, |w| {
        w.write_all(&labelscope_core::npy::header_bytes("<i4", shape))?;
        w.write_all(&data.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Writes a text file atomically.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    labelscope_core::atomic::write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// The names of a batch's images that loaded, in order. An unreadable image
/// ends the run, or with `skip_bad` is recorded in `bad` as (name, error).
pub fn batch_names(
    batch: &labelscope_vision::loader::Batch,
    items: &[ImageItem],
    skip_bad: bool,
    bad: &mut Vec<(String, String)>,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<String>> {
    let mut names = Vec::with_capacity(batch.outcomes.len());
    for (i, o) in batch.outcomes.iter().enumerate() {
        let name = &items[batch.start + i].name;
        match o {
            Ok(()) => names.push(name.clone()),
            Err(e) if skip_bad => bad.push((name.clone(), e.to_string())),
            Err(e) => {
                bar.abandon();
                bail!("{e} (use --skip-bad to leave unreadable images out)");
            }
        }
    }
    Ok(names)
}

/// Prints the skipped images and fails when there are any.
pub fn report_bad(bad: &[(String, String)], listed_in: Option<&Path>) -> Result<()> {
    if bad.is_empty() {
        return Ok(());
    }
    for (name, e) in bad.iter().take(20) {
        eprintln!("skipped {name}: {e}");
    }
    match listed_in {
        Some(p) => bail!("{} images could not be read (listed in {})", bad.len(), p.display()),
        None => bail!("{} images could not be read", bad.len()),
    }
}

/// A progress bar over `n` images (hidden with `quiet`).
pub fn progress(n: usize, what: &str, quiet: bool) -> Result<indicatif::ProgressBar> {
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(n as u64) };
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} images, {{per_sec}}, eta {{eta}}"
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .progress_chars("=> "),
    );
    Ok(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_folders_recursively_and_lists_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("b")).unwrap();
        for f in ["b/z.JPEG", "a.png", "notes.txt", "c.webp"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let names: Vec<String> = list_images(d.path()).unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["a.png", "b/z.JPEG", "c.webp"]);
        let list = d.path().join("list.txt");
        std::fs::write(&list, "# images\nb/z.JPEG\n\na.png\n").unwrap();
        let items = list_images(&list).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].path, d.path().join("b/z.JPEG"));
        std::fs::write(&list, "a.png\na.png\n").unwrap();
        let e = list_images(&list).unwrap_err().to_string();
        assert!(e.contains("listed twice") && e.contains("list.txt"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        assert!(list_images(empty.path()).unwrap_err().to_string().contains("no images"));
    }

    #[test]
    fn devices() {
        assert!(matches!(device("cpu").unwrap(), Device::Cpu));
        assert!(device("tpu").unwrap_err().to_string().contains("expected cpu, cuda"));
        if !candle_core::utils::cuda_is_available() {
            assert!(device("cuda:0").unwrap_err().to_string().contains("without CUDA"));
        }
    }
}
