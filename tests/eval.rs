//! Tests of the evaluations on frozen embeddings (`contrastive::eval`): hand-derived values
//! (a 1-d logistic regression solved by Newton's method, neighbour lists on the circle, the
//! regular simplex), statistical sanity (separable vs random labels), and bad input.

use contrastive::eval::{
    self, Coarsening, KnnConfig, KnnWeighting, Pca2, ProbeConfig, probe::LinearProbe,
};
use contrastive::{Error, Tensor};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

fn matrix(rows: &[Vec<f64>]) -> Tensor<f64> {
    let d = rows[0].len();
    Tensor::from_f64s(&rows.concat(), [rows.len(), d]).unwrap()
}

/// Unit vectors at the given angles (degrees) in the plane.
fn circle(degrees: &[f64]) -> Tensor<f64> {
    let rows: Vec<Vec<f64>> = degrees
        .iter()
        .map(|a| vec![a.to_radians().cos(), a.to_radians().sin()])
        .collect();
    matrix(&rows)
}

/// `n` samples of K Gaussian clusters in d dimensions: class c centred at `sep · e_c`, σ = 1.
fn clusters(n: usize, k: usize, d: usize, sep: f64, rng: &mut StdRng) -> (Tensor<f64>, Vec<usize>) {
    let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
    let mut data = Vec::with_capacity(n * d);
    for &y in &labels {
        for j in 0..d {
            let noise: f64 = StandardNormal.sample(rng);
            data.push(noise + if j == y { sep } else { 0.0 });
        }
    }
    (Tensor::from_vec(data, [n, d]).unwrap(), labels)
}

fn is_invalid<T: std::fmt::Debug>(r: contrastive::Result<T>) -> bool {
    matches!(
        r,
        Err(Error::InvalidInput { .. } | Error::BadRank { .. } | Error::ShapeMismatch { .. })
    )
}

// ---------------------------------------------------------------- linear probe

#[test]
fn probe_separates_separable_clusters() {
    let mut rng = StdRng::seed_from_u64(1);
    // Centres 12σ apart: the classes are linearly separable with margin, in train and test.
    let (train, y_train) = clusters(200, 4, 8, 12.0, &mut rng);
    let (test, y_test) = clusters(100, 4, 8, 12.0, &mut rng);
    let report =
        eval::linear_probe(&train, &y_train, &test, &y_test, &ProbeConfig::default()).unwrap();
    assert!(report.converged, "{report}");
    assert_eq!(report.train_accuracy, 1.0, "{report}");
    assert_eq!(report.test_accuracy, 1.0, "{report}");
    assert_eq!(report.num_classes, 4);
    assert_eq!(report.test_predictions, y_test);
    // The f32 copy differs from the data by rounding (~1e-7 relative) and the probe computes
    // in f64 either way, so the final loss agrees to well within 1e-6.
    let f32_report = eval::linear_probe(
        &train.cast::<f32>(),
        &y_train,
        &test.cast::<f32>(),
        &y_test,
        &ProbeConfig::default(),
    )
    .unwrap();
    assert!((f32_report.final_loss - report.final_loss).abs() < 1e-6);
}

#[test]
fn probe_is_at_chance_on_random_labels() {
    let mut rng = StdRng::seed_from_u64(2);
    let k = 5;
    let train = Tensor::<f64>::randn([400, 16], &mut rng);
    let test = Tensor::<f64>::randn([2000, 16], &mut rng);
    let y_train: Vec<usize> = (0..400).map(|_| rng.random_range(0..k)).collect();
    let y_test: Vec<usize> = (0..2000).map(|_| rng.random_range(0..k)).collect();
    let report =
        eval::linear_probe(&train, &y_train, &test, &y_test, &ProbeConfig::default()).unwrap();
    assert!(report.converged, "{report}");
    // Labels independent of features: test accuracy is Binomial(2000, 1/5)/2000, σ ≈ 0.009,
    // so 0.05 is more than 5σ.
    assert!((report.test_accuracy - 0.2).abs() < 0.05, "{report}");
    // 400 points, 85 parameters: the probe fits some noise, which shows as train > test.
    assert!(report.train_accuracy > report.test_accuracy, "{report}");
}

/// Binary multinomial regression in 1-d reduces to logistic regression in `u = w₁ − w₀` and
/// `β = b₁ − b₀`: the L2 term `(λ/2)(w₀² + w₁²)` is smallest at `w₀ = −w₁`, where it is
/// `λu²/4`. So `J(u, β) = (1/N) Σ softplus(−sᵢ(u xᵢ + β)) + λu²/4`, `sᵢ = ±1`, whose minimum
/// Newton's method finds to machine precision in a few steps.
#[test]
fn probe_matches_newton_on_a_1d_logistic_problem() {
    let x = [-2.0, -1.0, 0.5, 1.0, 3.0, -0.5];
    let y = [0, 0, 1, 0, 1, 1];
    let c = 0.7;
    let n = x.len() as f64;
    let lambda = 1.0 / (c * n);
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    let (mut u, mut beta) = (0.0, 0.0);
    for _ in 0..50 {
        let (mut gu, mut gb, mut huu, mut hub, mut hbb) =
            (lambda * u / 2.0, 0.0, lambda / 2.0, 0.0, 0.0);
        for (&xi, &yi) in x.iter().zip(&y) {
            let p = sigmoid(u * xi + beta);
            let r = (p - yi as f64) / n; // ∂/∂z of the per-sample loss, / N
            gu += r * xi;
            gb += r;
            let w = p * (1.0 - p) / n;
            huu += w * xi * xi;
            hub += w * xi;
            hbb += w;
        }
        let det = huu * hbb - hub * hub;
        u -= (hbb * gu - hub * gb) / det;
        beta -= (huu * gb - hub * gu) / det;
    }
    let softplus = |z: f64| {
        if z > 0.0 {
            z + (-z).exp().ln_1p()
        } else {
            z.exp().ln_1p()
        }
    };
    let optimum: f64 = x
        .iter()
        .zip(&y)
        .map(|(&xi, &yi)| softplus(-(2.0 * yi as f64 - 1.0) * (u * xi + beta)) / n)
        .sum::<f64>()
        + lambda * u * u / 4.0;

    let config = ProbeConfig {
        c,
        standardize: false,
        grad_tol: 1e-12,
        loss_tol: 0.0,
        ..ProbeConfig::default()
    };
    let probe =
        LinearProbe::fit(&Tensor::<f64>::from_f64s(&x, [6, 1]).unwrap(), &y, &config).unwrap();
    assert!(probe.converged);
    let (w, b) = (&probe.weights, &probe.bias);
    // Gradient 1e-12 with a Hessian whose smallest eigenvalue is ~0.05 pins the parameters to
    // ~1e-10; 1e-8 leaves room for rounding in the objective.
    assert!(
        (w[1] - w[0] - u).abs() < 1e-8,
        "u: {} vs Newton {u}",
        w[1] - w[0]
    );
    assert!((w[0] + w[1]).abs() < 1e-8, "w₀ = −w₁ at the optimum: {w:?}");
    assert!(
        (b[1] - b[0] - beta).abs() < 1e-8,
        "β: {} vs Newton {beta}",
        b[1] - b[0]
    );
    // The objective is flat at the optimum: parameter error 1e-10 changes it by ~1e-20.
    assert!(
        (probe.final_loss - optimum).abs() < 1e-12,
        "{} vs {optimum}",
        probe.final_loss
    );
}

#[test]
fn probe_standardises_with_training_statistics_only() {
    // Train feature values 1, 2, 3, 6: mean 3, population std √3.5; the second is constant.
    let train = matrix(&[
        vec![1.0, 5.0],
        vec![2.0, 5.0],
        vec![3.0, 5.0],
        vec![6.0, 5.0],
    ]);
    let probe = LinearProbe::fit(&train, &[0, 0, 1, 1], &ProbeConfig::default()).unwrap();
    assert_eq!(probe.mean, vec![3.0, 5.0]);
    // The mean and std are sums of four small integers: exact up to one rounding.
    assert!((probe.scale[0] - 3.5f64.sqrt()).abs() < 1e-15);
    assert_eq!(probe.scale[1], 1.0, "a constant feature keeps scale 1");
    // Test rows far outside the training range are classified by the training statistics.
    let test = matrix(&[vec![-100.0, 0.0], vec![100.0, 0.0]]);
    assert_eq!(probe.predict(&test).unwrap(), vec![0, 1]);
}

/// Digits-sized probe for timing: `cargo test --release --test eval -- --ignored --nocapture`.
#[test]
#[ignore = "timing only; run in release"]
fn probe_timing_digits_sized() {
    let mut rng = StdRng::seed_from_u64(9);
    let (train, y_train) = clusters(1437, 10, 256, 2.0, &mut rng);
    let (test, y_test) = clusters(360, 10, 256, 2.0, &mut rng);
    let (train, test) = (train.cast::<f32>(), test.cast::<f32>());
    let start = std::time::Instant::now();
    let report =
        eval::linear_probe(&train, &y_train, &test, &y_test, &ProbeConfig::default()).unwrap();
    println!("{report} in {:.3} s", start.elapsed().as_secs_f64());
    let start = std::time::Instant::now();
    let knn = eval::knn_accuracy(&train, &y_train, &test, &y_test, &KnnConfig::default()).unwrap();
    println!("{knn} in {:.3} s", start.elapsed().as_secs_f64());
    let start = std::time::Instant::now();
    let (pca, _) = Pca2::fit_project(&train).unwrap();
    println!(
        "PCA {:?} in {:.3} s",
        pca.explained_variance,
        start.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- kNN and retrieval

#[test]
fn knn_votes_by_hand() {
    // Query at 0°. Bank: class 0 at 0° (s = 1), class 1 at ±40° (s = cos 40° ≈ 0.766 each),
    // class 2 at 180° (s = −1, never among the 3 nearest).
    let bank = circle(&[40.0, 0.0, 180.0, -40.0]);
    let labels = [1, 0, 2, 1];
    let vote = |bank: &Tensor<f64>, queries: &[f64], k, weighting| {
        let config = KnnConfig { k, weighting };
        eval::knn_predict(bank, &labels, &circle(queries), &config).unwrap()
    };
    // Uniform votes: class 1 has 2 of the 3 neighbours.
    assert_eq!(vote(&bank, &[0.0], 3, KnnWeighting::Uniform), vec![1]);
    // e^{s/0.07}: class 0 gets e^{1/0.07}, class 1 gets 2e^{0.766/0.07} = e^{1/0.07}·2e^{−3.34}
    // ≈ 0.07 of that, so class 0 wins.
    assert_eq!(
        vote(&bank, &[0.0], 3, KnnWeighting::Exp { tau: 0.07 }),
        vec![0]
    );
    // With τ = 1 the two class-1 votes win: 2e^{0.766} ≈ 4.30 > e^{1} ≈ 2.72.
    assert_eq!(
        vote(&bank, &[0.0], 3, KnnWeighting::Exp { tau: 1.0 }),
        vec![1]
    );
    // k = 1 takes the single nearest; cosine ignores the norm of the rows.
    let nearest = KnnConfig {
        k: 1,
        ..KnnConfig::default()
    };
    let angles = [10.0, 175.0, -30.0];
    assert_eq!(
        vote(&bank.mul_scalar(7.5), &angles, 1, nearest.weighting),
        vec![0, 2, 1]
    );
    let queries = circle(&angles);
    let report = eval::knn_accuracy(&bank, &labels, &queries, &[0, 2, 0], &nearest).unwrap();
    assert!((report.accuracy - 2.0 / 3.0).abs() < 1e-15, "{report}");
    // The f32 path gives the same neighbours here (no near-ties).
    let report32 = eval::knn_accuracy(
        &bank.cast::<f32>(),
        &labels,
        &queries.cast::<f32>(),
        &[0, 2, 0],
        &nearest,
    )
    .unwrap();
    assert_eq!(report32.accuracy, report.accuracy);
}

#[test]
fn recall_at_k_by_hand() {
    // Angles and labels; each query's neighbours (self excluded), nearest first:
    //   0° (c0): 10 (c0) …                                   → hit at 1
    //  10° (c0): 0 (c0) …                                    → hit at 1
    // 100° (c1): no other c1 item                            → never a hit
    // 105° (c2): 100 (c1), 10 (c0), 0 (c0), 220 (c2)         → first hit at 4
    // 220° (c2): 105 (c2) …                                  → hit at 1
    let emb = circle(&[0.0, 10.0, 100.0, 105.0, 220.0]);
    let labels = [0, 0, 1, 2, 2];
    let r = eval::recall_at_k_self(&emb, &labels, &[1, 2, 3, 4]).unwrap();
    assert_eq!(r.recall, vec![0.6, 0.6, 0.6, 0.8], "{r}");
    assert_eq!(r.at(4), Some(0.8));
    assert_eq!(r.at(5), None);
    // A separate database: the query at 95° sees 100 (c1) first, then 105 (c2).
    let q = circle(&[95.0, 5.0]);
    let r = eval::recall_at_k(&emb, &labels, &q, &[2, 1], &[1, 2]).unwrap();
    // Query 95° (c2): miss at 1, hit at 2; query 5° (c1): the nearest two are c0 → misses.
    assert_eq!(r.recall, vec![0.0, 0.5], "{r}");
    // k may not exceed the candidates: N − 1 = 4 with self excluded.
    assert!(is_invalid(eval::recall_at_k_self(&emb, &labels, &[5])));
}

// ---------------------------------------------------------------- geometry

/// The vertices of a regular tetrahedron on S² (pairwise cosine −1/3).
fn tetrahedron() -> Vec<Vec<f64>> {
    let s = 1.0 / 3f64.sqrt();
    vec![
        vec![s, s, s],
        vec![s, -s, -s],
        vec![-s, s, -s],
        vec![-s, -s, s],
    ]
}

#[test]
fn alignment_and_uniformity_hand_values() {
    let tet = matrix(&tetrahedron());
    // Pairwise ‖zᵢ − zⱼ‖² = 2 + 2/3 = 8/3 for all 6 pairs: log e^{−2·8/3} = −16/3.
    let u = eval::uniformity(&tet, 2.0).unwrap();
    assert!((u + 16.0 / 3.0).abs() < 1e-13, "{u}");
    // Two antipodal points: ‖z₀ − z₁‖² = 4, so t = 2 gives −8; the rows get normalised first.
    let pair = matrix(&[vec![3.0, 0.0], vec![-0.5, 0.0]]);
    assert!((eval::uniformity(&pair, 2.0).unwrap() + 8.0).abs() < 1e-13);
    // Alignment: identical views 0; orthogonal views ‖·‖² = 2; antipodal views 4 (α = 2), and
    // 4^{1/2} = 2 for α = 1. Each case is exact up to one rounding.
    let a = circle(&[0.0, 90.0]);
    assert!(eval::alignment(&a, &a.mul_scalar(3.0), 2.0).unwrap().abs() < 1e-15);
    let orth = circle(&[90.0, 180.0]);
    assert!((eval::alignment(&a, &orth, 2.0).unwrap() - 2.0).abs() < 1e-15);
    let anti = a.neg();
    assert!((eval::alignment(&a, &anti, 2.0).unwrap() - 4.0).abs() < 1e-15);
    assert!((eval::alignment(&a, &anti, 1.0).unwrap() - 2.0).abs() < 1e-15);
    let both = eval::align_uniform(&a, &orth, 2.0, 2.0).unwrap();
    // Each view is two orthogonal unit vectors: uniformity −2·2 = −4.
    assert!(
        (both.alignment - 2.0).abs() < 1e-15 && (both.uniformity + 4.0).abs() < 1e-13,
        "{both}"
    );
    // Large t: the running log-sum-exp does not underflow (e^{−2000·8/3} would be 0).
    assert!((eval::uniformity(&tet, 2000.0).unwrap() + 16000.0 / 3.0).abs() < 1e-9);
}

/// K = 5 classes, 4 copies each, collapsed onto a simplex ETF plus a shared offset that the
/// centring must remove: rows `(e_c − 1/K, 0.8)` before normalisation.
fn collapsed_simplex(k: usize, copies: usize) -> (Tensor<f64>, Vec<usize>) {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..copies {
        for c in 0..k {
            let mut r: Vec<f64> = (0..k)
                .map(|j| f64::from(u8::from(j == c)) - 1.0 / k as f64)
                .collect();
            r.push(0.8);
            rows.push(r);
            labels.push(c);
        }
    }
    (matrix(&rows), labels)
}

#[test]
fn collapsed_simplex_is_an_etf() {
    let (emb, labels) = collapsed_simplex(5, 4);
    let r = eval::class_collapse(&emb, &labels).unwrap();
    // Everything below is exact up to rounding of sums of a few unit-scale terms.
    assert!(r.within_class_variance.abs() < 1e-15, "{r}");
    assert_eq!(r.simplex_cosine, -0.25);
    for v in [r.mean_cosine, r.min_cosine, r.max_cosine] {
        assert!((v + 0.25).abs() < 1e-14, "{r}");
    }
    assert!(r.etf_distance < 1e-13, "{r}");
    assert_eq!(r.cosine_matrix.len(), 5);
    assert!(
        (r.cosine_matrix[2][2] - 1.0).abs() < 1e-15 && (r.cosine_matrix[1][3] + 0.25).abs() < 1e-14
    );
}

#[test]
fn random_embeddings_are_not_collapsed() {
    let mut rng = StdRng::seed_from_u64(4);
    let emb = Tensor::<f32>::randn([200, 32], &mut rng);
    let labels: Vec<usize> = (0..200).map(|i| i % 5).collect();
    let r = eval::class_collapse(&emb, &labels).unwrap();
    // Random unit vectors: variance 1 − ‖μ_c‖² ≈ 1 − 1/40 per class.
    assert!(r.within_class_variance > 0.9, "{r}");
    // Class means of 40 random vectors point in random directions: their cosines spread far
    // from the common simplex value (a spread of 0.1 is a loose lower bound).
    assert!(r.max_cosine - r.min_cosine > 0.1, "{r}");
    assert!(r.etf_distance > 0.1, "{r}");
}

// ---------------------------------------------------------------- transfer

#[test]
fn coarsenings_of_the_digits() {
    let fine: Vec<usize> = (0..10).collect();
    assert_eq!(
        Coarsening::Halves.apply(&fine).unwrap(),
        vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    );
    assert_eq!(
        Coarsening::Pairs.apply(&fine).unwrap(),
        vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    );
    assert_eq!(
        Coarsening::Map(vec![1, 0, 1]).apply(&[2, 0, 1]).unwrap(),
        vec![1, 1, 0]
    );
    assert!(is_invalid(Coarsening::Halves.apply(&[3, 10])));
    assert!(is_invalid(Coarsening::Map(vec![0, 1]).apply(&[2])));
}

#[test]
fn coarse_to_fine_separates_kept_from_collapsed_subclasses() {
    let mut rng = StdRng::seed_from_u64(5);
    // Fine structure kept: each digit class is its own cluster. The halves boundary then lies
    // 16/√10 ≈ 5σ from every centre, so no test point (of 200) falls on the wrong side.
    let (train, y_train) = clusters(300, 10, 10, 16.0, &mut rng);
    let (test, y_test) = clusters(200, 10, 10, 16.0, &mut rng);
    let cfg = ProbeConfig::default();
    let kept =
        eval::coarse_to_fine(&train, &y_train, &test, &y_test, &Coarsening::Halves, &cfg).unwrap();
    assert_eq!(
        (kept.coarse.test_accuracy, kept.fine.test_accuracy),
        (1.0, 1.0),
        "{kept}"
    );
    // Fine structure collapsed: the embedding depends only on the coarse label.
    let coarse_train = Coarsening::Halves.apply(&y_train).unwrap();
    let coarse_test = Coarsening::Halves.apply(&y_test).unwrap();
    let (c_train, _) = clusters(300, 2, 10, 16.0, &mut rng);
    let (c_test, _) = clusters(200, 2, 10, 16.0, &mut rng);
    // clusters() labels row i with i % 2, so rebuild rows to follow the coarse labels.
    let pick = |x: &Tensor<f64>, coarse: &[usize]| {
        let idx: Vec<usize> = coarse
            .iter()
            .enumerate()
            .map(|(i, &c)| 2 * (i / 2) + c)
            .collect();
        x.index_select(0, &idx).unwrap()
    };
    let (c_train, c_test) = (pick(&c_train, &coarse_train), pick(&c_test, &coarse_test));
    let lost = eval::coarse_to_fine(
        &c_train,
        &y_train,
        &c_test,
        &y_test,
        &Coarsening::Halves,
        &cfg,
    )
    .unwrap();
    assert_eq!(lost.coarse.test_accuracy, 1.0, "{lost}");
    // Within a coarse class the 5 digits are indistinguishable: about 1/5 (σ ≈ 0.03 on 200).
    assert!(lost.fine.test_accuracy < 0.35, "{lost}");
}

// ---------------------------------------------------------------- PCA

#[test]
fn pca_exact_on_a_cross() {
    // Points ±3 on axis 0 and ±1 on axis 1 (mean 0): covariance diag(18, 2, 0)/3.
    let x = matrix(&[
        vec![3.0, 0.0, 0.0],
        vec![-3.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.0],
        vec![0.0, -1.0, 0.0],
    ]);
    let (pca, points) = Pca2::fit_project(&x).unwrap();
    // d = 3 ≤ the block size: one Rayleigh–Ritz step is exact up to rounding.
    assert!((pca.explained_variance[0] - 6.0).abs() < 1e-12, "{pca:?}");
    assert!(
        (pca.explained_variance[1] - 2.0 / 3.0).abs() < 1e-12,
        "{pca:?}"
    );
    assert!((pca.explained_variance_ratio[0] - 0.9).abs() < 1e-12);
    // The sign convention makes the largest entry of each axis positive.
    assert!(
        (pca.components[0][0] - 1.0).abs() < 1e-12 && (pca.components[1][1] - 1.0).abs() < 1e-12
    );
    assert!((points[0][0] - 3.0).abs() < 1e-12 && (points[3][1] + 1.0).abs() < 1e-12);
}

#[test]
fn pca_recovers_the_dominant_axis_of_an_anisotropic_gaussian() {
    let mut rng = StdRng::seed_from_u64(6);
    let (n, d) = (2000, 30); // d above the block size, so the subspace iteration really iterates
    // Standard deviations 5 along a, 2 along b (a ⟂ b), 1 in every other direction.
    let a: Vec<f64> = (0..d)
        .map(|j| if j % 3 == 0 { 1.0 } else { -0.5 })
        .collect();
    let na = a.iter().map(|v| v * v).sum::<f64>().sqrt();
    let a: Vec<f64> = a.iter().map(|v| v / na).collect();
    let mut b = vec![0.0; d];
    b[1] = 1.0;
    b[2] = -1.0; // a₁ = a₂, so b ⟂ a
    let b: Vec<f64> = b.iter().map(|v| v / 2f64.sqrt()).collect();
    let mut data = Vec::with_capacity(n * d);
    for _ in 0..n {
        let (s, t): (f64, f64) = (
            StandardNormal.sample(&mut rng),
            StandardNormal.sample(&mut rng),
        );
        for j in 0..d {
            let noise: f64 = StandardNormal.sample(&mut rng);
            data.push(10.0 + 4.9 * s * a[j] + 1.7 * t * b[j] + noise);
        }
    }
    let x = Tensor::<f32>::from_f64s(&data, [n, d]).unwrap();
    let pca = Pca2::fit(&x).unwrap();
    let cos = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(p, q)| p * q).sum::<f64>().abs();
    // Sampling error of the leading axis ≈ √(λ₁λ₂/N)/(λ₁ − λ₂) ≈ 0.011 rad, of the second
    // ≈ √(4·1/2000)/3 ≈ 0.015 rad: cosines above 0.995 leave a 6σ margin.
    assert!(cos(&pca.components[0], &a) > 0.995, "{pca:?}");
    assert!(cos(&pca.components[1], &b) > 0.99, "{pca:?}");
    // Variances 25 and 4 (1 from the isotropic part each); sampling error ~3% at N = 2000.
    assert!(
        (pca.explained_variance[0] / 25.0 - 1.0).abs() < 0.1,
        "{pca:?}"
    );
    assert!(
        (pca.explained_variance[1] / 4.0 - 1.0).abs() < 0.15,
        "{pca:?}"
    );
    assert!((pca.mean[0] - 10.0).abs() < 0.3);
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_input_is_an_error() {
    let x = matrix(&[vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 1.0]]);
    let cfg = ProbeConfig::default();
    // Label count ≠ N.
    assert!(is_invalid(eval::linear_probe(
        &x,
        &[0, 1],
        &x,
        &[0, 1, 0],
        &cfg
    )));
    assert!(is_invalid(eval::linear_probe(
        &x,
        &[0, 1, 0],
        &x,
        &[0, 1],
        &cfg
    )));
    assert!(is_invalid(eval::knn_predict(
        &x,
        &[0],
        &x,
        &KnnConfig::default()
    )));
    assert!(is_invalid(eval::class_collapse(&x, &[0, 1])));
    assert!(is_invalid(eval::recall_at_k_self(&x, &[0, 1], &[1])));
    // k = 0, k above the bank size, no k at all, a bad τ.
    let k0 = KnnConfig {
        k: 0,
        ..KnnConfig::default()
    };
    assert!(is_invalid(eval::knn_predict(&x, &[0, 1, 0], &x, &k0)));
    let k9 = KnnConfig {
        k: 9,
        ..KnnConfig::default()
    };
    assert!(is_invalid(eval::knn_predict(&x, &[0, 1, 0], &x, &k9)));
    assert!(is_invalid(eval::recall_at_k_self(&x, &[0, 1, 0], &[0, 1])));
    assert!(is_invalid(eval::recall_at_k_self(&x, &[0, 1, 0], &[])));
    let cold = KnnConfig {
        k: 1,
        weighting: KnnWeighting::Exp { tau: 0.0 },
    };
    assert!(is_invalid(eval::knn_predict(&x, &[0, 1, 0], &x, &cold)));
    // Empty class: class 1 of 0..3 has no sample.
    assert!(is_invalid(eval::class_collapse(&x, &[0, 2, 2])));
    assert!(is_invalid(eval::linear_probe(
        &x,
        &[0, 2, 2],
        &x,
        &[0, 2, 2],
        &cfg
    )));
    // A test label the training split never had.
    assert!(is_invalid(eval::linear_probe(
        &x,
        &[0, 1, 0],
        &x,
        &[0, 1, 2],
        &cfg
    )));
    // One class only: no simplex.
    assert!(is_invalid(eval::class_collapse(&x, &[0, 0, 0])));
    // Shapes: not (N, d), widths that differ, N too small.
    let flat = Tensor::<f64>::from_f64s(&[1.0, 2.0, 3.0], [3]).unwrap();
    assert!(is_invalid(eval::uniformity(&flat, 2.0)));
    let wide = matrix(&[vec![1.0, 0.0, 0.0]]);
    assert!(is_invalid(eval::knn_predict(
        &x,
        &[0, 1, 0],
        &wide,
        &KnnConfig::default()
    )));
    assert!(is_invalid(eval::alignment(&x, &wide, 2.0)));
    assert!(is_invalid(eval::uniformity(&wide, 2.0)));
    assert!(is_invalid(Pca2::fit(&wide)));
    assert!(is_invalid(Pca2::fit(&flat.reshape(&[3, 1]).unwrap())));
    // Parameters: C ≤ 0, α or t ≤ 0, non-finite embeddings.
    let no_c = ProbeConfig { c: 0.0, ..cfg };
    assert!(is_invalid(eval::linear_probe(
        &x,
        &[0, 1, 0],
        &x,
        &[0, 1, 0],
        &no_c
    )));
    assert!(is_invalid(eval::alignment(&x, &x, -1.0)));
    assert!(is_invalid(eval::uniformity(&x, f64::NAN)));
    let nan = matrix(&[vec![1.0, f64::NAN], vec![0.0, 1.0]]);
    assert!(is_invalid(eval::class_collapse(&nan, &[0, 1])));
}
