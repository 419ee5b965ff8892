//! `labelscope relabel report` and `labelscope relabel query`.
//! (Skeleton: being filled in.)

use anyhow::{bail, Result};
use clap::Args;

/// `labelscope relabel report`.
#[derive(Debug, Args)]
pub struct QualityArgs {}

/// `labelscope relabel query`.
#[derive(Debug, Args)]
pub struct QueryArgs {}

/// Runs `labelscope relabel report`.
pub fn run_quality(_a: QualityArgs) -> Result<()> {
    bail!("labelscope relabel report is not implemented yet")
}

/// Runs `labelscope relabel query`.
pub fn run_query(_a: QueryArgs) -> Result<()> {
    bail!("labelscope relabel query is not implemented yet")
}
