//! The command-line interface: argument parsing (clap) and the subcommands. Only built with the
//! `cli` feature; everything it runs lives in the library.

pub mod bench;

use clap::{Parser, Subcommand};

mod loss;
mod signal;
mod sweep;
mod train;

#[derive(Debug, Parser)]
#[command(
    name = "contrastive",
    version,
    about = "Contrastive representation learning on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model (defaults: SimCLR on the shipped digits) and evaluate it.
    Train(train::TrainArgs),
    /// Evaluate a checkpoint: linear probe, kNN, alignment/uniformity, class-collapse geometry.
    Eval(train::EvalArgs),
    /// Write a checkpoint's embeddings of the test (or train) split as .npy.
    Embed(train::EmbedArgs),
    /// What this build runs on: SIMD level, threads, measured FMA peak.
    Info,
    /// The reference oracle: one loss (and its gradient) on .npy inputs, computed in f64.
    Loss(loss::LossArgs),
    /// Times the standard workloads (BENCHMARKS.md): `workload threads throughput unit` lines.
    Bench(bench::BenchArgs),
    /// Run, list (--list) or collect (--collect) a sweep of training runs; --shard I/N or a
    /// Slurm array splits it over workers.
    Sweep(sweep::SweepArgs),
}

/// Runs the tool; returns the process exit code.
pub fn main() -> i32 {
    crate::backend::cpu::alloc::tune_allocator(); // per-step buffers reuse pages (see there)
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Loss(args) => loss::run(args),
        Command::Train(args) => train::train(args),
        Command::Eval(args) => train::eval(args),
        Command::Embed(args) => train::embed(args),
        Command::Bench(args) => bench::run(args),
        Command::Sweep(args) => sweep::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn info() -> crate::Result<()> {
    use crate::backend::cpu::{num_threads, probe::fma_peak_gflops, simd::simd_level};
    println!("contrastive {}", env!("CARGO_PKG_VERSION"));
    println!("elementwise kernels: {}", simd_level());
    println!("threads: {}", num_threads());
    for width in [256, 512] {
        if let Some(p) = fma_peak_gflops(width) {
            println!("f32 FMA peak, one core, {width}-bit: {p:.1} GFLOP/s");
        }
    }
    Ok(())
}
