//! `contrastive bench`: runs the standard workloads ([`crate::workloads`]) and prints one line
//! per result, `workload threads throughput unit` (the format of the PyTorch side's
//! `torch_bench.py`, so the two outputs compare line by line), then the process's peak memory.
//! Timing details (median, min, max, repetitions) go to stderr.

use crate::workloads::{self, MIN_REPS, NAMES};
use clap::Args;

/// Arguments of `contrastive bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Workloads to run (gemm, ntxent, supcon, mlp_step, cnn_step); all five when none is given.
    #[arg(value_name = "WORKLOAD")]
    workloads: Vec<String>,
    /// Thread-pool sizes, repeated or comma-separated; default 1 and all cores.
    #[arg(long, value_name = "N", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Timed repetitions per result (at least 10), after 3 warm-ups.
    #[arg(long, value_name = "R", default_value_t = 20)]
    reps: usize,
    /// Where to run: cpu, cuda or cuda:N (a GPU needs the `cuda` feature; docs/cuda.md).
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    device: String,
}

/// Runs the command: each workload is built once and measured at every thread count.
pub fn run(args: BenchArgs) -> crate::Result<()> {
    if args.reps < MIN_REPS {
        return Err(crate::Error::invalid(
            "bench",
            format!("--reps {} is below the minimum of {MIN_REPS}", args.reps),
        ));
    }
    let names: Vec<String> = if args.workloads.is_empty() {
        NAMES.iter().map(|s| s.to_string()).collect()
    } else {
        args.workloads
    };
    let device: crate::Device = args.device.parse()?;
    // Build errors (an unknown name, no GPU) before any time is spent measuring.
    let mut built = names
        .iter()
        .map(|n| workloads::build_on(n, device))
        .collect::<crate::Result<Vec<_>>>()?;
    let threads = if device.is_cuda() && args.threads.is_empty() {
        vec![1] // the host threads only queue GPU work
    } else if args.threads.is_empty() {
        let all = std::thread::available_parallelism().map_or(1, |n| n.get());
        if all > 1 { vec![1, all] } else { vec![1] }
    } else {
        args.threads
    };
    for w in &mut built {
        for &t in &threads {
            let m = workloads::measure(w, t, args.reps)?;
            println!("{m}");
            eprintln!(
                "#   {} {}: median {:.3} ms, min {:.3}, max {:.3}, reps {}",
                m.workload,
                m.threads,
                m.median_seconds * 1e3,
                m.min_seconds * 1e3,
                m.max_seconds * 1e3,
                m.reps
            );
        }
    }
    match workloads::peak_rss_mib() {
        Some(mib) => println!("peak_rss {mib:.1} MiB"),
        None => println!("peak_rss unknown MiB"),
    }
    Ok(())
}
