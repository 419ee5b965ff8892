//! `labelscope proposals`: object proposals by normalized cuts. Work in progress.

use anyhow::Result;
use clap::Args;

/// `labelscope proposals`.
#[derive(Debug, Args)]
pub struct ProposalsArgs {
    /// Feature map [h, w, d].
    #[arg(long)]
    pub features: std::path::PathBuf,
}

/// Runs the command.
pub fn run(_a: ProposalsArgs) -> Result<()> {
    anyhow::bail!("proposals is not implemented yet")
}
