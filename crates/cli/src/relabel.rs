//! `labelscope relabel`: automatic multi-label relabeling (issue 5).
//! (Skeleton: the stages are being filled in.)

use anyhow::Result;
use clap::{Args, Subcommand};

/// `labelscope relabel`.
#[derive(Debug, Args)]
pub struct RelabelArgs {
    #[command(subcommand)]
    pub command: RelabelCommand,
}

/// The stages of `labelscope relabel`.
#[derive(Debug, Subcommand)]
pub enum RelabelCommand {
    /// Compare produced labels with a human label set: overlap groups, per-class precision/recall, a gallery of disagreements.
    Report(Box<crate::relabel_quality::QualityArgs>),
    /// Ranked classes for a box of one image (ROI-align on the cached patch features + the region labeler).
    Query(Box<crate::relabel_quality::QueryArgs>),
}

/// Runs `labelscope relabel`.
pub fn run(a: RelabelArgs) -> Result<()> {
    match a.command {
        RelabelCommand::Report(q) => crate::relabel_quality::run_quality(*q),
        RelabelCommand::Query(q) => crate::relabel_quality::run_query(*q),
    }
}
