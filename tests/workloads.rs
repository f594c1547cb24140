//! The standard workloads build and run (shapes and wiring; no timed assertions: performance
//! lives in `benches/workloads.rs` and `contrastive bench`), and `measure` rejects bad settings.

use contrastive::workloads::{self, NAMES, measure};
use contrastive::{BatchNormMode, Conv2dParams, RunningStats, Tensor};
use rand::{SeedableRng, rngs::StdRng};

#[test]
fn every_workload_builds_and_runs_once() {
    for name in NAMES {
        let mut w = workloads::build(name).unwrap();
        assert_eq!(w.name(), name);
        w.run_once()
            .unwrap_or_else(|e| panic!("{name} failed: {e}"));
    }
}

#[test]
fn units_match_benchmarks_md() {
    let units: Vec<&str> = NAMES
        .iter()
        .map(|n| workloads::build(n).unwrap().unit())
        .collect();
    assert_eq!(
        units,
        ["GFLOP/s", "passes/s", "passes/s", "steps/s", "steps/s"]
    );
    // 2·1024³ flops.
    assert_eq!(
        workloads::build("gemm").unwrap().units_per_rep(),
        2.147483648
    );
}

#[test]
fn measure_reports_a_median_in_the_line_format() {
    let mut w = workloads::build("supcon").unwrap();
    let m = measure(&mut w, 2, 10).unwrap();
    assert_eq!(
        (m.workload, m.threads, m.reps, m.unit),
        ("supcon", 2, 10, "passes/s")
    );
    assert!(m.min_seconds <= m.median_seconds && m.median_seconds <= m.max_seconds);
    assert!((m.throughput * m.median_seconds - 1.0).abs() < 1e-12); // one pass per repetition
    let line = m.to_string();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert_eq!(
        (fields[0], fields[1], fields[3]),
        ("supcon", "2", "passes/s")
    );
    assert!(fields[2].parse::<f64>().unwrap() > 0.0);
}

#[test]
fn bad_settings_are_errors() {
    assert!(workloads::build("resnet").is_err());
    let mut w = workloads::build("gemm").unwrap();
    assert!(measure(&mut w, 1, 9).is_err(), "fewer than 10 repetitions");
    assert!(measure(&mut w, 0, 10).is_err(), "no threads");
    assert!(workloads::peak_rss_mib().is_some_and(|m| m > 0.0));
}

/// The `cnn_step` block (conv with bias → batch norm → ReLU → 2×2 max-pool), forward and
/// backward, gives the same bits on 1 and 2 threads. Sizes put every reduction on its parallel
/// path (≥ 64K elements).
#[test]
fn conv_block_is_bitwise_independent_of_threads() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut rng = StdRng::seed_from_u64(3);
            let x = Tensor::<f32>::randn([16, 8, 32, 32], &mut rng).requires_grad_();
            let w = Tensor::<f32>::randn([16, 8, 3, 3], &mut rng).requires_grad_();
            let b = Tensor::<f32>::randn([16], &mut rng).requires_grad_();
            let gamma = Tensor::<f32>::randn([16], &mut rng).requires_grad_();
            let beta = Tensor::<f32>::randn([16], &mut rng).requires_grad_();
            let mut stats = RunningStats::new(16);
            let mode = BatchNormMode {
                training: true,
                eps: 1e-5,
            };
            let y = x
                .conv2d(&w, Some(&b), Conv2dParams::new(1, 1))
                .unwrap()
                .batch_norm(Some(&gamma), Some(&beta), Some(&mut stats), mode)
                .unwrap()
                .relu()
                .max_pool2d(2, 2, 0)
                .unwrap();
            let weights = Tensor::<f32>::randn(y.dims().to_vec(), &mut rng);
            let grads = y
                .mul(&weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let mut out: Vec<Vec<u32>> = [&x, &w, &b, &gamma, &beta]
                .iter()
                .map(|t| {
                    grads
                        .get(t)
                        .unwrap()
                        .data()
                        .iter()
                        .map(|v| v.to_bits())
                        .collect()
                })
                .collect();
            out.push(y.data().iter().map(|v| v.to_bits()).collect());
            out.push(stats.var.iter().map(|v| v.to_bits()).collect());
            out
        })
    };
    assert!(run(1) == run(2), "results differ between 1 and 2 threads");
}
