//! `labelscope`: evaluate ImageNet-style classifiers against multi-label
//! ground truth, analyse label sets, and draw the results.
//!
//! This binary is a thin layer over `labelscope-core` (loading, joining,
//! metrics) and `labelscope-report` (tables, plots, HTML). Errors from the
//! libraries are printed as they are (they name the file and the position)
//! and the process exits with status 1; usage errors exit with status 2.

mod args;
mod bench;
mod bench_ncut;
mod bench_preprocess;
mod bench_vit;
mod classify;
mod cmd;
mod features;
mod gradcam;
mod nnio;
mod output;
mod proposals;
mod relabel;
mod relabel_quality;
mod bench_relabel;
mod weights;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
