//! `labelscope`: evaluate ImageNet-style classifiers against multi-label
//! ground truth, analyse label sets, and draw the results.
//!
//! This binary is a thin layer over `labelscope-core` (loading, joining,
//! metrics) and `labelscope-report` (tables, plots, HTML). Errors from the
//! libraries are printed as they are (they name the file and the position)
//! and the process exits with status 1; usage errors exit with status 2.

mod args;
mod bench;
mod byproducts;
mod bench_ncut;
mod bench_preprocess;
mod bench_relabel;
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
mod weights;

use std::process::ExitCode;

use clap::Parser;

/// Keeps freed memory in the process instead of returning it to the kernel:
/// the neural commands allocate and free tensors of the same sizes every
/// batch, and glibc's defaults (mmap for large blocks, trimming the heap top)
/// made every batch fault in and zero fresh pages (~5% of a ViT forward
/// pass). Blocks up to 32 MiB (glibc's maximum threshold) come from the heap.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = args::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
