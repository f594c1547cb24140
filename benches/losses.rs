//! Loss benchmarks: the `ntxent` and `supcon` workloads of BENCHMARKS.md exactly (f32 standard
//! normal features, not normalised — normalisation is inside the loss — forward + backward to
//! the embeddings), at 1 and 2 threads, printed as `workload threads throughput unit` lines (the
//! median of ≥ 10 timed repetitions after 3 warm-ups).
//!
//! `scaling` (not in the default run) times nt_xent forward + backward for N = 256 … 32768 rows
//! per view (d = 128, τ = 0.5, 2 threads) and reports each size's peak resident memory. Each
//! size runs in its own child process (this binary re-invoked with `--scaling-child N`), so
//! `VmHWM` is that size's own peak.
//!
//! `compare` (not in the default run either) times each fused form against its composed N² form.
//!
//!     cargo bench --bench losses [-- FILTER]
//!     cargo bench --bench losses -- scaling
//!     cargo bench --bench losses -- compare

use contrastive::Tensor;
use contrastive::backend::cpu::simd::simd_level;
use contrastive::losses::{self, Denominator, plain};
use contrastive::workloads::median_seconds;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::hint::black_box;

fn report(workload: &str, threads: usize, throughput: f64, unit: &str) {
    println!("{workload} {threads} {throughput:.2} {unit}");
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
}

/// One forward + backward pass of nt_xent on `features`, keeping the gradient alive until the
/// pass is timed.
fn nt_xent_pass(features: &Tensor<f32>, tau: f64) {
    let loss = losses::nt_xent(features, tau).expect("nt_xent");
    let grads = loss.backward().expect("backward");
    black_box(grads.get(features).expect("a gradient for the features"));
}

/// The peak resident set of this process (`VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Child mode: time nt_xent at N rows per view and print `seconds peak_rss_mib`.
fn scaling_child(n: usize) {
    let d = 128;
    let mut rng = StdRng::seed_from_u64(0);
    let f = Tensor::<f32>::randn([n, 2, d], &mut rng).requires_grad_();
    // Big sizes take seconds per pass: fewer repetitions there (stated in the output).
    let (warmup, reps) = if n >= 16384 { (1, 3) } else { (3, 10) };
    let s = pool(2).install(|| median_seconds(warmup, reps, || nt_xent_pass(&f, 0.5)));
    println!("{s} {} {reps}", peak_rss_mib().unwrap_or(f64::NAN));
}

fn scaling() {
    let exe = std::env::current_exe().expect("the bench binary's path");
    for n in [256, 1024, 4096, 16384, 32768] {
        let out = std::process::Command::new(&exe)
            .args(["--scaling-child", &n.to_string()])
            .output()
            .expect("the child runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<f64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let [seconds, rss, reps] = fields[..] else {
            eprintln!(
                "scaling N={n}: child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        };
        let workload = format!("ntxent_scaling_n{n}");
        report(&workload, 2, 1.0 / seconds, "passes/s");
        report(&format!("{workload}_time"), 2, seconds * 1e3, "ms");
        report(&format!("{workload}_peak_rss"), 2, rss, "MiB");
        // The (2N)² similarity matrix in f32, for scale: what the composed form would hold.
        let dense = (2.0 * n as f64).powi(2) * 4.0 / (1024.0 * 1024.0);
        eprintln!(
            "N={n}: {seconds:.4} s/pass (median of {reps}), peak RSS {rss:.0} MiB; \
             the dense (2N)² f32 matrix alone would be {dense:.0} MiB"
        );
    }
}

/// `compare` (not in the default run): each fused form against its composed N² form
/// (`losses::plain`), on the `ntxent` and `supcon` workload sizes and CLIP at N = 1024 per view
/// (d = 128, τ = 0.07) — the benchmark behind fusing them.
fn compare(labels: &[i64]) {
    let mut rng = StdRng::seed_from_u64(0);
    let pairs = Tensor::<f32>::randn([1024, 2, 128], &mut rng).requires_grad_();
    let small = Tensor::<f32>::randn([512, 2, 128], &mut rng).requires_grad_();
    type LossFn<'a> = Box<dyn Fn(&Tensor<f32>) -> contrastive::Result<Tensor<f32>> + Sync + 'a>;
    let all = Denominator::All;
    let forms: Vec<(&str, &Tensor<f32>, LossFn)> = vec![
        ("ntxent", &pairs, Box::new(|f| losses::nt_xent(f, 0.5))),
        ("ntxent_plain", &pairs, Box::new(|f| plain::nt_xent(f, 0.5))),
        (
            "supcon",
            &small,
            Box::new(|f| losses::supcon(f, labels, 0.1, all)),
        ),
        (
            "supcon_plain",
            &small,
            Box::new(|f| plain::supcon(f, labels, 0.1, all)),
        ),
        ("clip", &pairs, Box::new(|f| losses::clip(f, 0.07))),
        ("clip_plain", &pairs, Box::new(|f| plain::clip(f, 0.07))),
    ];
    for threads in [1, 2] {
        pool(threads).install(|| {
            for (name, f, loss) in &forms {
                let s = median_seconds(3, 15, || {
                    let l = loss(f).expect("loss");
                    black_box(l.backward().expect("backward").get(f).is_some());
                });
                report(name, threads, 1.0 / s, "passes/s");
            }
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--scaling-child") {
        let n = args.get(i + 1).and_then(|v| v.parse().ok()).expect("N");
        scaling_child(n);
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-'));
    eprintln!("simd: {}", simd_level());
    if filter.is_some_and(|f| f.contains("scaling")) {
        scaling();
        return;
    }
    let wanted = |name: &str| filter.is_none_or(|f| name.contains(f.as_str()));
    let mut rng = StdRng::seed_from_u64(0);
    // ntxent: 2 views × 1024 rows, d = 128, τ = 0.5.
    let ntxent = Tensor::<f32>::randn([1024, 2, 128], &mut rng).requires_grad_();
    // supcon: 2 views × 512 rows, d = 128, 10 classes, τ = 0.1.
    let supcon = Tensor::<f32>::randn([512, 2, 128], &mut rng).requires_grad_();
    let labels: Vec<i64> = (0..512).map(|_| rng.random_range(0..10)).collect();
    if filter.is_some_and(|f| f.contains("compare")) {
        compare(&labels);
        return;
    }
    for threads in [1, 2] {
        pool(threads).install(|| {
            if wanted("ntxent") {
                let s = median_seconds(3, 15, || nt_xent_pass(&ntxent, 0.5));
                report("ntxent", threads, 1.0 / s, "passes/s");
            }
            if wanted("supcon") {
                let s = median_seconds(3, 15, || {
                    let loss =
                        losses::supcon(&supcon, &labels, 0.1, Denominator::All).expect("supcon");
                    let grads = loss.backward().expect("backward");
                    black_box(grads.get(&supcon).expect("a gradient for the features"));
                });
                report("supcon", threads, 1.0 / s, "passes/s");
            }
        });
    }
}
