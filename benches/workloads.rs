//! The five standard workloads of BENCHMARKS.md (`gemm`, `ntxent`, `supcon`, `mlp_step`,
//! `cnn_step`) as a cargo bench, each at 1 thread and at all cores. Prints the lines of
//! `contrastive bench` (`workload threads throughput unit`, then `peak_rss … MiB`); the timing
//! itself is `contrastive::workloads::measure` (median of 20 repetitions after 3 warm-ups).
//!
//!     cargo bench --bench workloads [-- FILTER]

use contrastive::workloads::{self, NAMES, measure, peak_rss_mib};

/// Timed repetitions per result: as `torch_bench.py`'s default.
const REPS: usize = 20;

fn main() -> contrastive::Result<()> {
    contrastive::backend::cpu::alloc::tune_allocator(); // as the CLI: see that function
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = if all > 1 { vec![1, all] } else { vec![1] };
    for name in NAMES {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let mut w = workloads::build(name)?;
        for &t in &threads {
            println!("{}", measure(&mut w, t, REPS)?);
        }
    }
    if let Some(mib) = peak_rss_mib() {
        println!("peak_rss {mib:.1} MiB");
    }
    Ok(())
}
