//! `labelscope weights`: convert PyTorch checkpoints to safetensors, verify
//! files against the model registry, list the registry.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use labelscope_weights::registry::{self, ArchConfig, ChecksumCheck};
use labelscope_weights::{ConvertOptions, DType};
use serde_json::json;

const AFTER: &str = "\
Examples:
  # the official DINO ViT-S/16 backbone
  labelscope weights convert --model dino_vits16 --input dino_deitsmall16_pretrain.pth \\
      --output dino_vits16.safetensors
  # torchvision's ResNet-50 (the SHA-256 prefix in the file name is checked), stored as f16
  labelscope weights convert --model resnet50 --input resnet50-0676ba61.pth \\
      --output resnet50.safetensors --dtype f16
  labelscope weights verify --model resnet50 resnet50.safetensors
  labelscope weights list

The conversion reads the checkpoint without running any of its code (only tensors, storages
and plain containers are accepted), picks the state dict (the top level, or \"model\",
\"state_dict\", \"teacher\", ... in training checkpoints), applies the model's key mapping
(strips module./backbone., drops DINO heads and BatchNorm num_batches_tracked), checks every
tensor name, shape and dtype against the registry and writes the file atomically with the
architecture in its metadata. Nothing is written when a check fails.";

/// `labelscope weights`.
#[derive(Debug, Args)]
#[command(after_help = AFTER)]
pub struct WeightsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WeightsCommand,
}

/// Subcommands of `labelscope weights`.
#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// Convert a PyTorch checkpoint (.pth, zip or legacy format) to .safetensors.
    Convert(ConvertArgs),
    /// Check a .safetensors file (or a .pth checkpoint) against a registry model.
    Verify(VerifyArgs),
    /// List the registry: names, architectures, tensor and parameter counts, official files.
    List(ListArgs),
    /// Download a checkpoint from a plain-HTTP mirror, checking its SHA-256 and tensors.
    Fetch(FetchArgs),
}

/// `labelscope weights fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Registry model name.
    #[arg(long, value_name = "NAME")]
    pub model: String,
    /// An http:// URL (default: the registry's, which is https and so refused with a hint).
    #[arg(long)]
    pub url: Option<String>,
    /// Where to write the checkpoint (atomically).
    #[arg(long, value_name = "FILE.pth")]
    pub output: PathBuf,
    /// Accept a file whose SHA-256 differs from the published one.
    #[arg(long)]
    pub allow_unofficial: bool,
}

/// Floating-point type of the converted tensors.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DtypeArg {
    /// 32-bit float.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
}

/// Which model a file must match.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Registry model name (see `labelscope weights list`).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// A custom architecture instead: a JSON file such as
    /// {"labelscope_arch": "dino_vit", "embed_dim": 384, "depth": 6, "num_heads": 6,
    /// "patch_size": 16, "img_size": 224, "mlp_hidden": 1536}.
    #[arg(long, value_name = "FILE.json", conflicts_with = "model")]
    pub config: Option<PathBuf>,
    /// Accept a checkpoint whose SHA-256 differs from the published one (fine-tuned weights).
    #[arg(long)]
    pub allow_unofficial: bool,
}

/// `labelscope weights convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The PyTorch checkpoint.
    #[arg(long, value_name = "X.pth")]
    pub input: PathBuf,
    /// The .safetensors file to write (atomically).
    #[arg(long, value_name = "Y.safetensors")]
    pub output: PathBuf,
    /// Store floating-point tensors as this type (default: as in the checkpoint).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeArg>,
    /// Where the state dict is inside the checkpoint (e.g. teacher, model, model.ema).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Another name prefix to strip (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub strip_prefix: Vec<String>,
    /// Leave out tensors whose name starts with this (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub drop_prefix: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `labelscope weights verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The model (default: the one recorded in the file's metadata).
    #[command(flatten)]
    pub model: ModelArgs,
    /// A .safetensors file (or a .pth checkpoint).
    pub file: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `labelscope weights list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print the expected tensors (name, shape) of this model instead.
    #[arg(long, value_name = "NAME")]
    pub tensors: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `labelscope weights`.
pub fn run(a: WeightsArgs) -> Result<()> {
    match a.command {
        WeightsCommand::Convert(c) => convert(c),
        WeightsCommand::Verify(v) => verify(v),
        WeightsCommand::List(l) => list(l),
        WeightsCommand::Fetch(f) => fetch(f),
    }
}

fn fetch(a: FetchArgs) -> Result<()> {
    let r = labelscope_weights::fetch::fetch(&a.model, a.url.as_deref(), &a.output, a.allow_unofficial)?;
    println!("{}: {} bytes from {}", a.output.display(), thousands(r.bytes), r.url);
    println!("  SHA-256 {}: {}", r.sha256, checksum_text(&r.checksum));
    Ok(())
}

fn load_config(m: &ModelArgs) -> Result<Option<ArchConfig>> {
    match &m.config {
        None => Ok(None),
        Some(p) => {
            let s = std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
            Ok(Some(ArchConfig::from_json(&s, &p.display().to_string())?))
        }
    }
}

fn checksum_text(c: &ChecksumCheck) -> String {
    match c {
        ChecksumCheck::Full => "matches the published SHA-256".into(),
        ChecksumCheck::Prefix(p) => format!("matches the published SHA-256 prefix {p}"),
        ChecksumCheck::Unknown => "no published checksum for this model (names and shapes checked)".into(),
        ChecksumCheck::Mismatch { expected } => {
            format!("differs from the published {expected} (accepted: --allow-unofficial)")
        }
    }
}

fn checksum_json(c: &ChecksumCheck) -> serde_json::Value {
    match c {
        ChecksumCheck::Full => json!({"status": "match"}),
        ChecksumCheck::Prefix(p) => json!({"status": "prefix_match", "prefix": p}),
        ChecksumCheck::Unknown => json!({"status": "unknown"}),
        ChecksumCheck::Mismatch { expected } => json!({"status": "mismatch", "expected": expected}),
    }
}

/// `25557032` as `25,557,032`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn convert(a: ConvertArgs) -> Result<()> {
    let config = load_config(&a.model)?;
    if a.model.model.is_none() && config.is_none() {
        anyhow::bail!(
            "name the model (--model NAME, see `labelscope weights list`) or give --config FILE.json, \
             so that {} can be checked",
            a.input.display()
        );
    }
    let opts = ConvertOptions {
        key: a.key,
        model: a.model.model,
        config,
        strip_prefixes: a.strip_prefix,
        drop_prefixes: a.drop_prefix,
        dtype: a.dtype.map(|d| match d {
            DtypeArg::F32 => DType::F32,
            DtypeArg::F16 => DType::F16,
            DtypeArg::Bf16 => DType::BF16,
        }),
        allow_unofficial: a.model.allow_unofficial,
    };
    let r = labelscope_weights::convert(&a.input, &a.output, &opts)?;
    if a.json {
        let v = json!({
            "model": r.model,
            "input": a.input,
            "output": a.output,
            "tensors": r.tensors,
            "elements": r.parameters,
            "file_bytes": r.file_bytes,
            "state_dict_key": r.state_dict_key,
            "dropped": r.dropped,
            "converted_dtype": r.converted_dtype,
            "source_sha256": r.source_sha256,
            "checksum": checksum_json(&r.checksum),
            "metadata": r.metadata,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{}: {} tensors, {} elements, {} bytes (model {})",
        a.output.display(),
        r.tensors,
        thousands(r.parameters),
        thousands(r.file_bytes),
        r.model
    );
    let key = if r.state_dict_key.is_empty() { "the top level".to_string() } else { format!("{:?}", r.state_dict_key) };
    println!("  state dict: {key}; dropped {} tensor(s)", r.dropped.len());
    if r.converted_dtype > 0 {
        println!(
            "  converted {} tensor(s) to {}",
            r.converted_dtype,
            opts.dtype.map(|d| d.to_string()).unwrap_or_default()
        );
    }
    println!("  source SHA-256 {}: {}", r.source_sha256, checksum_text(&r.checksum));
    Ok(())
}

fn verify(a: VerifyArgs) -> Result<()> {
    let config = load_config(&a.model)?;
    let r = labelscope_weights::verify(&a.file, a.model.model.as_deref(), config.as_ref(), a.model.allow_unofficial)?;
    if a.json {
        let v = json!({
            "file": a.file,
            "model": r.model,
            "ok": true,
            "safetensors": r.safetensors,
            "tensors": r.tensors,
            "parameters": r.parameters,
            "dtypes": r.dtypes,
            "source_sha256": r.source_sha256,
            "checksum": checksum_json(&r.checksum),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let dtypes: Vec<String> = r.dtypes.iter().map(|(d, n)| format!("{n} {d}")).collect();
    println!(
        "{}: ok, model {}: {} tensors ({}), {} parameters",
        a.file.display(),
        r.model,
        r.tensors,
        dtypes.join(", "),
        thousands(r.parameters)
    );
    match &r.source_sha256 {
        Some(s) => println!("  source SHA-256 {s}: {}", checksum_text(&r.checksum)),
        None => println!("  no source SHA-256 recorded"),
    }
    Ok(())
}

fn list(a: ListArgs) -> Result<()> {
    if let Some(name) = &a.tensors {
        let m = registry::model(name)?;
        let t = m.expected();
        if a.json {
            println!("{}", serde_json::to_string_pretty(&t)?);
        } else {
            let w = t.iter().map(|t| t.name.len()).max().unwrap_or(4);
            for t in &t {
                println!("{:<w$}  {:?}{}", t.name, t.shape, if t.buffer { "  (buffer)" } else { "" });
            }
        }
        return Ok(());
    }
    let models = registry::models()?;
    if a.json {
        let v: Vec<serde_json::Value> = models
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "architecture": m.config.arch_name(),
                    "config": m.config,
                    "tensors": m.expected().len(),
                    "parameters": m.config.parameter_count(),
                    "official_file": m.official_file,
                    "url": m.url,
                    "sha256": m.sha256,
                    "sha256_prefix": m.sha256_prefix,
                    "description": m.description,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<[String; 6]> = models
        .iter()
        .map(|m| {
            let sum = match (&m.sha256, &m.sha256_prefix) {
                (Some(_), _) => "sha256".to_string(),
                (None, Some(p)) => format!("prefix {p}"),
                (None, None) => "-".to_string(),
            };
            [
                m.name.clone(),
                m.config.arch_name().to_string(),
                m.expected().len().to_string(),
                thousands(m.config.parameter_count()),
                m.official_file.clone(),
                sum,
            ]
        })
        .collect();
    let head = ["model", "architecture", "tensors", "parameters", "official file", "checksum"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |r: &[String; 6]| {
        format!(
            "{:<a$}  {:<b$}  {:>c$}  {:>d$}  {:<e$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3],
            e = w[4]
        )
    };
    println!("{}", line(&head.map(String::from)).trim_end());
    for r in &rows {
        println!("{}", line(r).trim_end());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::thousands(25_557_032), "25,557,032");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
    }
}
