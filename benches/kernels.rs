//! Kernel benchmarks: the `gemm` workload of BENCHMARKS.md (C = A·B, 1024³, f32) and, at 1M
//! elements, one elementwise op (`mul`) and one reduction (`sum_all`), each at 1 and 2 threads.
//! Prints `workload threads throughput unit` lines: the median of 10+ timed repetitions after 3
//! warm-ups.
//!
//!     cargo bench --bench kernels [-- FILTER]

use contrastive::Tensor;
use contrastive::backend::cpu::probe::fma_peak_gflops;
use contrastive::backend::cpu::simd::simd_level;
use contrastive::workloads::median_seconds;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;

fn report(workload: &str, threads: usize, throughput: f64, unit: &str) {
    println!("{workload} {threads} {throughput:.2} {unit}");
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    eprintln!("simd: {}", simd_level());
    if wanted("peak") {
        // The reference for GEMM efficiency: this core's measured FMA throughput.
        for width in [256, 512] {
            if let Some(p) = fma_peak_gflops(width) {
                report(&format!("fma_peak_{width}bit"), 1, p, "GFLOP/s");
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(0);
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            if wanted("gemm") {
                let n = 1024;
                let a = Tensor::<f32>::randn([n, n], &mut rng);
                let b = Tensor::<f32>::randn([n, n], &mut rng);
                let s = median_seconds(3, 15, || {
                    black_box(a.matmul(&b).unwrap());
                });
                report(
                    "gemm",
                    threads,
                    2.0 * (n * n * n) as f64 / s / 1e9,
                    "GFLOP/s",
                );
            }
            let n = 1 << 20;
            let x = Tensor::<f32>::randn([n], &mut rng);
            let y = Tensor::<f32>::randn([n], &mut rng);
            if wanted("mul_1m") {
                // Two 4 MB reads and one 4 MB write per call.
                let s = median_seconds(3, 50, || {
                    black_box(x.mul(&y).unwrap());
                });
                report("mul_1m", threads, 3.0 * 4.0 * n as f64 / s / 1e9, "GB/s");
            }
            if wanted("sum_1m") {
                let s = median_seconds(3, 50, || {
                    black_box(x.sum_all().unwrap());
                });
                report("sum_1m", threads, 4.0 * n as f64 / s / 1e9, "GB/s");
            }
        });
    }
}
