//! `labelscope bench-relabel`: speed of region pooling + labeler inference and of head training.
//! (Skeleton: being filled in.)

use anyhow::{bail, Result};
use clap::Args;

/// `labelscope bench-relabel`.
#[derive(Debug, Args)]
pub struct BenchRelabelArgs {}

/// Runs `labelscope bench-relabel`.
pub fn run(_a: BenchRelabelArgs) -> Result<()> {
    bail!("labelscope bench-relabel is not implemented yet")
}
