//! `labelscope bench-ncut`: times the normalized cut and MaskCut on generated
//! feature maps (see BENCHMARKS.md). Work in progress.

use anyhow::Result;
use clap::Args;

/// `labelscope bench-ncut`.
#[derive(Debug, Args)]
pub struct BenchNcutArgs {
    /// Seed of the generated features.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs the benchmark.
pub fn run(_a: BenchNcutArgs) -> Result<()> {
    anyhow::bail!("bench-ncut is not implemented yet")
}
