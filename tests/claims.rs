//! The seed's claims at full length, as ignored tests (minutes, not CI):
//!
//!     cargo test --release --test claims -- --ignored --nocapture --test-threads 1
//!
//! Each test trains the shipped configuration (`configs/`) for seeds 0, 1, 2, prints the figures
//! that go into the README's results table, and asserts the claim.

use contrastive::train::run::{self, RunOutcome};
use contrastive::train::{Config, RunOptions};
use std::path::PathBuf;
use std::time::Instant;

fn config(file: &str, overrides: &[String]) -> Config {
    let path = format!("{}/configs/{file}", env!("CARGO_MANIFEST_DIR"));
    let mut c = Config::default();
    c.apply_toml(&std::fs::read_to_string(&path).unwrap(), &path)
        .unwrap();
    for o in overrides {
        c.set_assignment(o).unwrap();
    }
    c
}

fn train(c: &Config) -> RunOutcome {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("claims-{}", c.id()));
    run::train(
        c,
        &RunOptions {
            run_dir: dir,
            resume: false,
            progress: false,
            stop: None,
        },
    )
    .unwrap()
}

/// (probe test accuracy on the classes, coarse probe, within-class variance, min and max centred
/// class-mean cosine) over seeds 0, 1, 2.
fn seeds(file: &str, extra: &[&str]) -> Vec<(f64, f64, f64, f64, f64)> {
    (0..3)
        .map(|seed| {
            let mut o: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            o.push(format!("train.seed={seed}"));
            let e = train(&config(file, &o)).evaluation.unwrap();
            let row = (
                e.probe.as_ref().map_or(f64::NAN, |p| p.test_accuracy),
                e.coarse_probe
                    .as_ref()
                    .map_or(f64::NAN, |p| p.test_accuracy),
                e.collapse.as_ref().unwrap().within_class_variance,
                e.collapse.as_ref().unwrap().min_cosine,
                e.collapse.as_ref().unwrap().max_cosine,
            );
            println!("{file} {extra:?} seed {seed}: {row:?}");
            row
        })
        .collect()
}

fn mean(
    rows: &[(f64, f64, f64, f64, f64)],
    pick: impl Fn(&(f64, f64, f64, f64, f64)) -> f64,
) -> f64 {
    rows.iter().map(pick).sum::<f64>() / rows.len() as f64
}

#[test]
#[ignore = "minutes: the full SimCLR and SupCon runs on digits"]
fn simclr_and_supcon_on_digits() {
    let simclr = seeds("simclr_digits.toml", &[]);
    let supcon = seeds("supcon_digits.toml", &[]);
    let (p_simclr, p_supcon) = (mean(&simclr, |r| r.0), mean(&supcon, |r| r.0));
    let (v_simclr, v_supcon) = (mean(&simclr, |r| r.2), mean(&supcon, |r| r.2));
    println!("SimCLR probe {p_simclr:.4}, SupCon probe {p_supcon:.4}");
    println!(
        "within-class variance SimCLR {v_simclr:.4}, SupCon {v_supcon:.4} ({:.1}×)",
        v_simclr / v_supcon
    );
    assert!(p_simclr >= 0.975, "SimCLR probe {p_simclr}");
    assert!(p_supcon >= 0.983, "SupCon probe {p_supcon}");
    assert!(v_simclr >= 5.0 * v_supcon);
}

#[test]
#[ignore = "minutes: coarse-to-fine on digits"]
fn spread_beats_supcon_coarse_to_fine() {
    for coarsening in ["halves", "pairs"] {
        let supcon = seeds(&format!("supcon_coarse_{coarsening}.toml"), &[]);
        let spread = seeds(&format!("spread_coarse_{coarsening}.toml"), &[]);
        let (f_supcon, f_spread) = (mean(&supcon, |r| r.0), mean(&spread, |r| r.0));
        let (v_supcon, v_spread) = (mean(&supcon, |r| r.2), mean(&spread, |r| r.2));
        println!(
            "{coarsening}: fine probe SupCon {f_supcon:.4}, spread {f_spread:.4}; within-class variance SupCon {v_supcon:.4}, spread {v_spread:.4}"
        );
        if coarsening == "halves" {
            assert!(
                f_spread >= f_supcon + 0.01,
                "spread {f_spread} vs SupCon {f_supcon}"
            );
            assert!(v_spread >= 10.0 * v_supcon, "{v_spread} vs {v_supcon}");
        }
    }
}

#[test]
#[ignore = "minutes: the temperature sweep"]
fn alignment_uniformity_trade_off_over_tau() {
    let mut rows = Vec::new();
    for tau in [0.05, 0.1, 0.2, 0.5, 1.0] {
        let e = train(&config(
            "simclr_digits.toml",
            &[format!("loss.params=tau={tau}")],
        ))
        .evaluation
        .unwrap();
        let p = e.probe.unwrap().test_accuracy;
        println!(
            "tau {tau}: alignment {:.4} uniformity {:.4} probe {p:.4}",
            e.align_uniform.alignment, e.align_uniform.uniformity
        );
        rows.push((tau, e.align_uniform.alignment, e.align_uniform.uniformity));
    }
    // The trade-off: the highest temperature aligns best, a low one spreads most uniformly.
    let (hi, lo) = (rows[rows.len() - 1], rows[1]);
    assert!(hi.1 < lo.1 && hi.2 > lo.2, "{rows:?}");
}

#[test]
#[ignore = "a minute: Graf et al. on the synthetic generator"]
fn supcon_drives_class_means_to_the_simplex() {
    let e = train(&config("synthetic_supcon.toml", &[]))
        .evaluation
        .unwrap();
    let c = e.collapse.as_ref().unwrap();
    println!(
        "cosines mean {:.4} min {:.4} max {:.4} (simplex {:.4}), ETF distance {:.4}",
        c.mean_cosine, c.min_cosine, c.max_cosine, c.simplex_cosine, c.etf_distance
    );
    assert!((c.min_cosine - c.simplex_cosine).abs() <= 0.02);
    assert!((c.max_cosine - c.simplex_cosine).abs() <= 0.02);
}

/// Issue 4: SupCon (τ 0.1) on digits does not place the class means on a regular simplex, in
/// this crate or in a PyTorch reference of the same setup (both give centred cosines from about
/// −0.43 to 0.22 at 200 epochs): with the seed's augmentations the class means stay around a
/// shared direction (their mean has norm ≈ 0.58, where the simplex has 0). Without
/// augmentations that offset goes (see the next test). At τ 0.5 the same 200 epochs leave no
/// such cone and end nearer the simplex.
#[test]
#[ignore = "a minute: SupCon on digits at τ 0.1 and 0.5, three seeds each"]
fn supcon_on_digits_keeps_its_class_means_in_a_cone_at_tau_0_1() {
    for seed in 0..3 {
        let collapse = |tau: f64| {
            let o = [
                format!("loss.params=tau={tau}"),
                format!("train.seed={seed}"),
                "train.threads=1".to_string(), // results do not depend on it
            ];
            let c = train(&config("supcon_digits.toml", &o))
                .evaluation
                .unwrap()
                .collapse
                .unwrap();
            println!("seed {seed}, τ {tau}: {c}");
            c
        };
        let (cold, warm) = (collapse(0.1), collapse(0.5));
        // Measured 0.58–0.59 (τ 0.1) and 0.03–0.05 (τ 0.5) on the test split: wide margins.
        assert!(cold.mean_offset > 0.3, "τ 0.1: {cold}");
        assert!(warm.mean_offset < 0.1, "τ 0.5: {warm}");
        // Measured ETF distances 1.57–1.59 (τ 0.1) and 0.67–0.75 (τ 0.5).
        assert!(warm.etf_distance < cold.etf_distance, "{warm}\n{cold}");
        assert!(
            cold.max_cosine - cold.simplex_cosine > 0.1,
            "τ 0.1 reached the simplex: {cold}"
        );
    }
}

/// Issue 4: without augmentations and trained into the terminal phase (3,000 epochs, cosine
/// decay; `configs/supcon_digits_simplex.toml`), SupCon's class means on the training split
/// form the regular simplex: measured centred cosines within 0.002 of −1/9 for seeds 0–2.
#[test]
#[ignore = "five minutes: SupCon on digits for 3,000 epochs, three seeds"]
fn supcon_without_augmentations_reaches_the_simplex_on_the_training_split() {
    for seed in 0..3 {
        let o = [format!("train.seed={seed}"), "eval.probe=false".to_string()];
        let e = train(&config("supcon_digits_simplex.toml", &o))
            .evaluation
            .unwrap();
        let c = e.collapse_train.as_ref().unwrap();
        println!(
            "seed {seed}: training split {c}; test split {}",
            e.collapse.as_ref().unwrap()
        );
        assert!((c.min_cosine - c.simplex_cosine).abs() <= 0.01, "{c}");
        assert!((c.max_cosine - c.simplex_cosine).abs() <= 0.01, "{c}");
    }
}

/// Issue 4: SimCLR on Fashion-MNIST with the `cnn_step` CNN in a 10-minute budget on 2 cores
/// (the shipped configuration: 16×16 views, τ = 0.15, 40 epochs, seed 0). The goal is a
/// probe of 88%; the CLI measured 88.04% for seed 0 (seeds 1–4: 88.06 / 88.10 / 88.26 / 87.93%,
/// mean 88.08%), on 1 thread and on 2 alike. Another CPU may take other SIMD paths and land a
/// few hundredths away. The time is printed, not asserted (machines differ; the budget is
/// checked with the CLI run in the README). Needs `apt-get install dataset-fashion-mnist`.
#[test]
#[ignore = "ten minutes: SimCLR on Fashion-MNIST (apt-get install dataset-fashion-mnist)"]
fn simclr_on_fashion_mnist_reaches_88_percent() {
    let start = Instant::now();
    let e = train(&config("fashion_mnist_cnn.toml", &[]))
        .evaluation
        .unwrap();
    let probe = e.probe.as_ref().map_or(f64::NAN, |p| p.test_accuracy);
    println!(
        "probe {probe:.4}, kNN {:.4}, {:.0} s with evaluation",
        e.knn.accuracy,
        start.elapsed().as_secs_f64()
    );
    assert!(probe >= 0.88, "probe {probe}");
}
