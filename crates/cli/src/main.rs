//! `labelscope`: evaluate ImageNet-style classifiers against multi-label
//! ground truth, analyse label sets, and draw the results.
//!
//! This binary is a thin layer over `labelscope-core` (loading, joining,
//! metrics) and `labelscope-report` (tables, plots, HTML). Errors from the
//! libraries are printed as they are (they name the file and the position)
//! and the process exits with status 1; usage errors exit with status 2.

// The doc comments of the argument structs are the `--help` text (clap),
// written for a terminal: `[N, C]` shapes and `<image>` placeholders there
// are not rustdoc links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod args;
mod bench;
mod byproducts;
mod bench_ncut;
mod bench_preprocess;
mod bench_relabel;
mod bench_spurious;
mod bench_vit;
mod classify;
mod cmd;
mod features;
mod gradcam;
mod humans;
mod nnio;
mod output;
mod proposals;
mod relabel;
mod relabel_extras;
mod relabel_quality;
mod spurious;
mod studio;
mod studio_region;
mod train;
mod weights;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: the byproduct readers allocate
/// and free millions of small strings and vectors across threads (glibc's
/// malloc/free were ~12% of an ImageNet-AB run; 16.4 s -> 14.3 s wall), and
/// the neural commands, which allocate tensors of the same sizes every batch,
/// run as fast as with glibc tuned to keep freed memory (ResNet-50 batch 8:
/// 10.2 vs 10.0 images/s).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
