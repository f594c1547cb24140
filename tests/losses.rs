//! The contrastive losses: gradient checks of every loss under proptest (random N, V, d, labels,
//! scales and parameters), closed-form values, reductions of one loss to another, invariance to
//! permuting samples, stability sweeps (τ down to 0.01, norms 1e-6 and 1e6, f32 and f64), input
//! errors, an independent plain-loop f64 reference for nt_xent, supcon (both denominators),
//! dcl and clip that the engine must match to 1e-9 in value and gradient, and the fused O(N·d)
//! forms of nt_xent, supcon and clip against the composed N² ones (1e-10, both regimes).

use contrastive::losses::{self, Denominator, Loss, LossInputs};
use contrastive::{Error, Float, GradCheckOptions, Result, Tensor, check_gradients};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::ops::RangeInclusive;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn feats<T: Float>(data: &[f64], n: usize, v: usize, d: usize) -> Tensor<T> {
    Tensor::from_f64s(data, [n, v, d]).unwrap()
}

fn gauss(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
        .collect()
}

/// Gaussian rows, each rescaled to Euclidean norm `norm`.
fn rows_with_norm(rng: &mut StdRng, rows: usize, d: usize, norm: f64) -> Vec<f64> {
    let mut x = gauss(rng, rows * d);
    for row in x.chunks_mut(d) {
        let len = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v *= norm / len);
    }
    x
}

/// Everything one loss evaluation needs, owned.
#[derive(Debug, Clone)]
struct Sample {
    name: &'static str,
    n: usize,
    v: usize,
    d: usize,
    features: Vec<f64>,
    labels: Option<Vec<i64>>,
    types: Option<Vec<i64>>,
    queue: Option<(usize, Vec<f64>)>,
    params: Vec<(&'static str, String)>,
    /// The typical size of a feature entry.
    scale: f64,
}

impl Sample {
    fn params(&self) -> Vec<(&str, &str)> {
        self.params.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// The loss at `features` (which replaces the sample's own), in precision `T`.
    fn eval<T: Float>(&self, features: &Tensor<T>) -> Result<Tensor<T>> {
        let queue: Option<Tensor<T>> = self
            .queue
            .as_ref()
            .map(|(k, q)| Tensor::from_f64s(q, [*k, self.d]).unwrap());
        let inputs = LossInputs {
            features,
            labels: self.labels.as_deref(),
            types: self.types.as_deref(),
            queue: queue.as_ref(),
        };
        losses::compute(self.name, &inputs, &self.params())
    }

    /// The loss and its gradient with respect to the features, in precision `T`.
    fn value_and_grad<T: Float>(&self) -> (f64, Vec<f64>) {
        let f = feats::<T>(&self.features, self.n, self.v, self.d).requires_grad_();
        let loss = self.eval(&f).unwrap();
        let grads = loss.backward().unwrap();
        let g = grads
            .get(&f)
            .map_or(vec![0.0; f.numel()], |g| g.to_f64_vec());
        (loss.item().unwrap().to_f64(), g)
    }

    fn with_features(&self, features: Vec<f64>) -> Sample {
        Sample {
            features,
            ..self.clone()
        }
    }
}

/// The view counts each loss takes (the tests draw from this range; the open-ended losses up to
/// 3 or 4 views).
fn views_of(name: &str) -> RangeInclusive<usize> {
    match name {
        "supcon" | "uniform" => 1..=3,
        "nt_xent" => 2..=4,
        "triplet" | "arora_logistic" | "arora_hinge" => 3..=3,
        _ => 2..=2,
    }
}

/// Labels over `n` samples: half the time every class has at least two members, otherwise
/// uniform over `k ∈ 1..=n` classes (singletons likely).
fn random_labels(rng: &mut StdRng, n: usize) -> Vec<i64> {
    if rng.random_bool(0.5) {
        let mut y: Vec<i64> = (0..n).map(|i| (i / 2) as i64).collect();
        if n % 2 == 1 && n > 1 {
            y[n - 1] = y[n - 2];
        }
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            y.swap(i, j);
        }
        y
    } else {
        let k = rng.random_range(1..=n) as i64;
        (0..n).map(|_| rng.random_range(0..k)).collect()
    }
}

fn log_uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    (rng.random_range(lo.ln()..hi.ln())).exp()
}

/// A random valid sample for `name`: N in 2..=6 (3..=6 where a smaller batch cannot have both
/// a positive and a negative), d in 2..=5, scale 1e-3..1e3, random parameters.
fn random_sample(name: &'static str, rng: &mut StdRng) -> Sample {
    let v = rng.random_range(views_of(name));
    let min_n = if name == "tabi" || (name == "supcon" && v == 1) {
        3
    } else {
        2
    };
    let n = rng.random_range(min_n..=6);
    let d = rng.random_range(2..=5);
    let scale = log_uniform(rng, 1e-3, 1e3);
    let features: Vec<f64> = gauss(rng, n * v * d).iter().map(|x| x * scale).collect();
    let tau = log_uniform(rng, 0.05, 1.0);
    let mut s = Sample {
        name,
        n,
        v,
        d,
        features,
        labels: None,
        types: None,
        queue: None,
        params: vec![],
        scale,
    };
    let den = if rng.random_bool(0.5) {
        "all"
    } else {
        "negatives"
    };
    match name {
        "nt_xent" | "clip" | "moco" => s.params.push(("tau", tau.to_string())),
        "supcon" | "spread" => {
            let mut y = random_labels(rng, n);
            if v == 1 && y.iter().enumerate().all(|(i, a)| !y[..i].contains(a)) {
                y[1] = y[0]; // at least one positive
            }
            if den == "negatives" && y.iter().all(|&a| a == y[0]) {
                y[n - 1] = y[0] + 1; // at least one negative (n ≥ 3 keeps a positive)
            }
            s.labels = Some(y);
            s.params.push(("tau", tau.to_string()));
            s.params.push(("denominator", den.to_string()));
            if name == "spread" {
                s.params
                    .push(("alpha", rng.random_range(0.0..1.0f64).to_string()));
            }
        }
        "tabi" => {
            let mut e = random_labels(rng, n);
            if e.iter().all(|&a| a == e[0]) {
                e[0] += 1;
            }
            let mut t: Vec<i64> = (0..n).map(|_| rng.random_range(-1..3)).collect();
            (t[0], t[1], t[2]) = (0, 0, 1); // a typed positive and a typed negative
            s.labels = Some(e);
            s.types = Some(t);
            s.params.push(("tau", tau.to_string()));
            s.params
                .push(("alpha", rng.random_range(0.0..1.0f64).to_string()));
        }
        "dcl" | "hcl" => {
            s.params.push(("tau", tau.to_string()));
            s.params
                .push(("tau_plus", rng.random_range(0.0..0.3f64).to_string()));
            if name == "hcl" {
                s.params
                    .push(("beta", rng.random_range(0.0..2.0f64).to_string()));
            }
        }
        "align" => {
            let alpha = [2.0, 1.0, 1.5, 3.0][rng.random_range(0..4)];
            s.params.push(("alpha", alpha.to_string()));
        }
        "uniform" => s
            .params
            .push(("t", rng.random_range(0.5..3.0f64).to_string())),
        "triplet" => s
            .params
            .push(("margin", (rng.random_range(0.0..2.0) * scale).to_string())),
        "barlow_twins" => s
            .params
            .push(("lambda", rng.random_range(0.0..0.01f64).to_string())),
        _ => {}
    }
    if name == "moco" {
        let k = rng.random_range(1..=5);
        s.queue = Some((k, gauss(rng, k * d)));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// (a) Gradient checks under proptest
// ---------------------------------------------------------------------------------------------

/// Checks the loss's gradient against central differences. The step is relative to the feature
/// scale (the checker's step is absolute). MoCo is checked with respect to the queries only: its
/// keys and queue are constants by design (see `moco_sends_no_gradient_to_keys_or_queue`).
fn gradcheck(s: &Sample) -> std::result::Result<(), TestCaseError> {
    let (loss, g) = s.value_and_grad::<f64>();
    let gmax = g.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    // Losses on raw features whose logits grow as scale² (a·p, f·(f⁺ − f⁻)) get sharper as the
    // scale grows: a step of 1e-6·scale would move their logits by 1e-6·scale², and the
    // truncation error of the difference (∝ step²·scale² relative) reaches 1e-3 at scale 1e3.
    // Their step keeps the logit change at 1e-6·min(scale, 1)².
    let bilinear = matches!(s.name, "npair" | "arora_logistic" | "arora_hinge");
    let eps = if bilinear {
        1e-6 * s.scale.min(1.0 / s.scale)
    } else {
        1e-6 * s.scale
    };
    let tau = s
        .params
        .iter()
        .find(|(k, _)| *k == "tau")
        .and_then(|(_, v)| v.parse::<f64>().ok());
    let logit_scale = match tau {
        Some(t) => 1.0 / t,
        None if bilinear => s.scale * s.scale,
        None => 0.0,
    };
    let opts = GradCheckOptions {
        eps,
        // Two floors on the absolute error: entries far below the largest gradient component
        // (1e-6 of it), and the rounding error of a central difference, ε·|f|/eps, which
        // dominates at small scales where the loss has an O(1) part (log N, a hinge's 1, an
        // ε-regularised std) but a gradient of the order of the scale.
        // The loss is a difference of terms as large as the logits (1/τ, or scale² on raw
        // bilinear features), so its rounding error scales with them, not with the loss: a
        // saturated CLIP loss of 1e-6 is computed as the difference of two terms near 20.
        atol: 1e-6 * gmax + 10.0 * f64::EPSILON * (loss.abs() + 1.0 + logit_scale) / eps,
        // Central differences with a step 1e-6 of the scale have relative truncation error
        // ≈ (1e-6/τ)² ≤ 1e-9 here; 1e-5 leaves room for rounding.
        rtol: 1e-5,
        ..GradCheckOptions::default()
    };
    let report = if s.name == "moco" {
        let (n, d) = (s.n, s.d);
        let all = feats::<f64>(&s.features, n, 2, d);
        let query = all.narrow(1, 0, 1).unwrap();
        let key = all.narrow(1, 1, 1).unwrap();
        let f = |xs: &[Tensor<f64>]| {
            let full = Tensor::concat(&[xs[0].clone(), key.clone()], 1)?;
            s.eval(&full)
        };
        check_gradients(f, &[query], &opts)
    } else {
        let x = feats::<f64>(&s.features, s.n, s.v, s.d);
        check_gradients(|xs: &[Tensor<f64>]| s.eval(&xs[0]), &[x], &opts)
    }
    .map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert!(
        report.passed,
        "{}: {report} (gmax {gmax:e}, eps {eps:e}, loss {loss:e})\n{s:?}",
        s.name
    );
    Ok(())
}

macro_rules! gradcheck_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        /// The losses with a gradient-check test below.
        const GRADCHECKED: &[&str] = &[$($name),*];

        proptest! {
            // 256 cases per loss: all 17 run in about 2 s at the dev profile.
            #![proptest_config(ProptestConfig::with_cases(256))]
            $(
                #[test]
                fn $test(seed in any::<u64>()) {
                    let mut rng = StdRng::seed_from_u64(seed);
                    gradcheck(&random_sample($name, &mut rng))?;
                }
            )*
        }
    };
}

gradcheck_tests! {
    gradcheck_nt_xent => "nt_xent",
    gradcheck_supcon => "supcon",
    gradcheck_spread => "spread",
    gradcheck_tabi => "tabi",
    gradcheck_clip => "clip",
    gradcheck_align => "align",
    gradcheck_uniform => "uniform",
    gradcheck_dcl => "dcl",
    gradcheck_hcl => "hcl",
    gradcheck_spectral => "spectral",
    gradcheck_triplet => "triplet",
    gradcheck_npair => "npair",
    gradcheck_moco => "moco",
    gradcheck_arora_logistic => "arora_logistic",
    gradcheck_arora_hinge => "arora_hinge",
    gradcheck_barlow_twins => "barlow_twins",
    gradcheck_vicreg => "vicreg",
}

#[test]
fn every_registered_loss_has_a_gradient_check() {
    assert_eq!(losses::NAMES, GRADCHECKED);
}

// ---------------------------------------------------------------------------------------------
// (b) Closed-form values
// ---------------------------------------------------------------------------------------------

/// `n` samples with `v` identical views, sample i the unit vector eᵢ in R^d.
fn orthonormal(n: usize, v: usize, d: usize) -> Vec<f64> {
    let mut f = vec![0.0; n * v * d];
    for i in 0..n {
        for k in 0..v {
            f[(i * v + k) * d + i] = 1.0;
        }
    }
    f
}

fn value(name: &str, f: &Tensor<f64>, labels: Option<&[i64]>, params: &[(&str, &str)]) -> f64 {
    let mut inputs = LossInputs::new(f);
    inputs.labels = labels;
    losses::compute(name, &inputs, params)
        .unwrap()
        .item()
        .unwrap()
}

#[test]
fn nt_xent_of_orthonormal_identical_views() {
    // Each anchor: positive logit 1/τ = 2, six negatives at logit 0 (2N − 2 = 6).
    let f = feats::<f64>(&orthonormal(4, 2, 4), 4, 2, 4);
    let got = value("nt_xent", &f, None, &[("tau", "0.5")]);
    let exact = -2.0 + (2f64.exp() + 6.0).ln();
    // Same formula evaluated two ways: only rounding differs.
    assert!((got - exact).abs() < 1e-14, "{got} vs {exact}");
    // The stated value, rounded to 6 decimals (exact = 0.5944379...).
    assert!((got - 0.594438).abs() < 5e-7, "{got}");
    // Three views: two positives at logit 2 (their mean is 2), nine negatives at 0.
    let f = feats::<f64>(&orthonormal(4, 3, 4), 4, 3, 4);
    let got = value("nt_xent", &f, None, &[("tau", "0.5")]);
    let exact = -2.0 + (2.0 * 2f64.exp() + 9.0).ln();
    assert!((got - exact).abs() < 1e-14, "{got} vs {exact}");
    assert!((got - 1.168766).abs() < 5e-7, "{got}");
}

#[test]
fn uniformity_of_a_regular_simplex() {
    // Regular tetrahedron: pairwise cos −1/3, squared distance 8/3 → log e^{−2·8/3} = −16/3.
    let f: Vec<f64> = [
        [1.0, 1.0, 1.0],
        [1.0, -1.0, -1.0],
        [-1.0, 1.0, -1.0],
        [-1.0, -1.0, 1.0],
    ]
    .concat();
    let got = value("uniform", &feats(&f, 4, 1, 3), None, &[("t", "2")]);
    // Rounding of the normalisation and the Gram matrix only.
    assert!((got + 16.0 / 3.0).abs() < 1e-13, "{got}");
}

#[test]
fn spectral_of_identical_orthonormal_views_is_minus_two() {
    let f = feats::<f64>(&orthonormal(3, 2, 5), 3, 2, 5);
    // Exact in floating point: the products are 0 and 1.
    assert_eq!(value("spectral", &f, None, &[]), -2.0);
}

#[test]
fn supcon_by_hand() {
    // Four unit vectors (scaled by 3 to exercise the normalisation) at 90° steps, one view,
    // labels [0, 0, 0, 1], τ = 1, so s = cos: s01 = 0, s02 = −1, s03 = 0, s12 = 0, s13 = −1,
    // s23 = 0. Anchor 3 has no positive and is left out of the mean.
    let f = [3.0, 0.0, 0.0, 3.0, -3.0, 0.0, 0.0, -3.0];
    let f = feats::<f64>(&f, 4, 1, 2);
    let labels = [0, 0, 0, 1];
    let e1 = (-1f64).exp();
    // All: anchors 0 and 2 get log(2 + e⁻¹) + ½, anchor 1 gets log(2 + e⁻¹).
    let all = (2.0 + e1).ln() + 1.0 / 3.0;
    // Negatives: anchor 0: [log 2 + 1 + log(1 + e⁻¹)]/2; anchor 1: log(1 + e⁻¹); anchor 2 as 0.
    let neg = (2f64.ln() + 1.0 + 2.0 * (1.0 + e1).ln()) / 3.0;
    let p = |den| [("tau", "1"), ("denominator", den)];
    // Hand formulas vs the engine: rounding only.
    assert!((value("supcon", &f, Some(&labels), &p("all")) - all).abs() < 1e-14);
    assert!((value("supcon", &f, Some(&labels), &p("negatives")) - neg).abs() < 1e-14);
}

#[test]
fn align_triplet_and_arora_by_hand() {
    // align α = 2: pairs at 90° (‖·‖² = 2) and identical (0) → mean 1.
    let f = feats::<f64>(&[1.0, 0.0, 0.0, 2.0, 0.0, 5.0, 0.0, 1.0], 2, 2, 2);
    assert!((value("align", &f, None, &[]) - 1.0).abs() < 1e-15); // rounding only
    // α = 1 on the same pairs: (√2 + 0)/2.
    let a1 = value("align", &f, None, &[("alpha", "1")]);
    assert!((a1 - 2f64.sqrt() / 2.0).abs() < 1e-15, "{a1}"); // rounding only
    // triplet m = 1: d(a,p) = 5, d(a,n) = 10 → 0; d(a,p) = 2, d(a,n) = 1 → 2; mean 1.
    let t = [0.0, 0.0, 3.0, 4.0, 6.0, 8.0, 0.0, 0.0, 0.0, 2.0, 1.0, 0.0];
    let t = feats::<f64>(&t, 2, 3, 2);
    assert_eq!(value("triplet", &t, None, &[]), 1.0); // exact: integer distances
    // arora: v = f·(f⁺ − f⁻): (1,0)·((2,0) − (0,1)) = 2 and (0,1)·((1,0) − (0,1)) = −1.
    let a = [1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
    let a = feats::<f64>(&a, 2, 3, 2);
    let logistic = ((1.0 + (-2f64).exp()).ln() + (1.0 + 1f64.exp()).ln()) / 2.0;
    // Softplus vs ln(1 + eˣ): rounding only.
    assert!((value("arora_logistic", &a, None, &[]) - logistic).abs() < 1e-15);
    assert_eq!(value("arora_hinge", &a, None, &[]), 1.0); // (0 + 2)/2, exact
}

#[test]
fn barlow_twins_and_vicreg_by_hand() {
    // Two uncorrelated centred columns ±c over N = 4 samples: column 0 = c·(1,−1,1,−1),
    // column 1 = c·(1,1,−1,−1).
    let c = 0.1;
    let cols = |swap: bool| -> Vec<[f64; 2]> {
        let a = [1.0, -1.0, 1.0, -1.0];
        let b = [1.0, 1.0, -1.0, -1.0];
        (0..4)
            .map(|i| {
                if swap {
                    [c * b[i], c * a[i]]
                } else {
                    [c * a[i], c * b[i]]
                }
            })
            .collect()
    };
    let pack = |x: &[[f64; 2]], y: &[[f64; 2]]| -> Tensor<f64> {
        let mut f = vec![];
        for i in 0..4 {
            f.extend_from_slice(&x[i]);
            f.extend_from_slice(&y[i]);
        }
        feats(&f, 4, 2, 2)
    };
    // Barlow with view 1 = view 0 with its columns swapped: C = [[0, r], [r, 0]],
    // r = c²/(c² + 1e-5) (batch-norm eps), so loss = 2 + λ·2r².
    let r = c * c / (c * c + 1e-5);
    let barlow = value("barlow_twins", &pack(&cols(false), &cols(true)), None, &[]);
    let expect = 2.0 + 5e-3 * 2.0 * r * r;
    assert!((barlow - expect).abs() < 1e-14, "{barlow} vs {expect}"); // rounding only
    // VICReg with identical views: invariance 0, covariance 0 (orthogonal columns), each
    // dimension's std = √(4c²/3 + 1e-4) < 1, so loss = 25·(1 − std).
    let std = (4.0 * c * c / 3.0 + 1e-4f64).sqrt();
    let vic = value("vicreg", &pack(&cols(false), &cols(false)), None, &[]);
    assert!((vic - 25.0 * (1.0 - std)).abs() < 1e-13, "{vic}"); // rounding only
}

#[test]
fn clip_of_orthonormal_identical_views() {
    // Both directions: −1/τ + log(e^{1/τ} + N − 1) per row.
    let f = feats::<f64>(&orthonormal(3, 2, 3), 3, 2, 3);
    let got = value("clip", &f, None, &[("tau", "0.25")]);
    let exact = -4.0 + (4f64.exp() + 2.0).ln();
    assert!((got - exact).abs() < 1e-14, "{got} vs {exact}"); // rounding only
}

#[test]
fn dcl_clamp_gives_the_floor_and_no_gradient_through_it() {
    // Identical views, orthogonal samples, τ = 0.25, τ⁺ = 0.1: the estimate
    // (n·e⁰ − τ⁺·n·e⁴)/(1 − τ⁺) is negative, so Ng = n·e^{−4} for every anchor.
    let (n, tau) = (3, 0.25);
    let f = feats::<f64>(&orthonormal(n, 2, 3), n, 2, 3).requires_grad_();
    let loss = losses::dcl(&f, tau, 0.1).unwrap();
    let m = (2 * n - 2) as f64;
    let (pos, ng) = (4f64.exp(), m * (-4f64).exp());
    let exact = -(pos / (pos + ng)).ln();
    // log-space evaluation vs the direct formula: rounding only.
    assert!((loss.item().unwrap() - exact).abs() < 1e-15);
    // With the floor active the loss depends on the features only through pos = e^{s_ip}, and
    // s_ip = 1/τ is at its maximum (identical unit views): the gradient is exactly 0.
    let g = loss.backward().unwrap().get_or_zeros(&f);
    assert!(g.data().iter().all(|&x| x.abs() < 1e-15), "{:?}", g.data());
    // Without the clamp (τ⁺ = 0) the same features do have a gradient (the negatives pull).
    let plain = losses::dcl(&f, tau, 0.0).unwrap();
    assert!((plain.item().unwrap() - exact).abs() > 1e-3);
}

// ---------------------------------------------------------------------------------------------
// (c) Reductions of one loss to another
// ---------------------------------------------------------------------------------------------

/// Relative difference of two numbers, or of two vectors in the max norm.
fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

fn rel_vec(a: &[f64], b: &[f64]) -> f64 {
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    let size = a.iter().chain(b).fold(0.0f64, |m, x| m.max(x.abs()));
    diff / size.max(1e-300)
}

/// Loss value and feature gradient of `loss` on f64 `features`.
fn run(
    features: &[f64],
    dims: [usize; 3],
    loss: impl Fn(&Tensor<f64>) -> Result<Tensor<f64>>,
) -> (f64, Vec<f64>) {
    let f = feats::<f64>(features, dims[0], dims[1], dims[2]).requires_grad_();
    let l = loss(&f).unwrap();
    let g = l.backward().unwrap().get_or_zeros(&f).to_f64_vec();
    (l.item().unwrap(), g)
}

/// Asserts that two (value, gradient) pairs agree to `tol` relative.
fn same(a: (f64, Vec<f64>), b: (f64, Vec<f64>), tol: f64, what: &str) {
    assert!(rel(a.0, b.0) <= tol, "{what}: value {} vs {}", a.0, b.0);
    let r = rel_vec(&a.1, &b.1);
    assert!(r <= tol, "{what}: gradients differ by {r:e} relative");
}

// The reductions compute the same quantity through different op sequences (e.g. a log-sum-exp
// over the negatives then a softplus, against one log-sum-exp over all rows), so they agree to
// rounding: 1e-12 relative is ~1e4 ulps, far below any formula error.
const REDUCTION_TOL: f64 = 1e-12;

#[test]
fn dcl_and_hcl_without_debiasing_or_hardness_are_nt_xent() {
    let mut rng = StdRng::seed_from_u64(1);
    for (n, d, tau) in [(2, 3, 0.5), (4, 2, 0.1), (6, 5, 1.0), (5, 4, 0.05)] {
        let f = gauss(&mut rng, n * 2 * d);
        let dims = [n, 2, d];
        let reference = run(&f, dims, |x| losses::nt_xent(x, tau));
        let dcl = run(&f, dims, |x| losses::dcl(x, tau, 0.0));
        let hcl = run(&f, dims, |x| losses::hcl(x, tau, 0.0, 0.0));
        same(dcl, reference.clone(), REDUCTION_TOL, "dcl(τ⁺=0)");
        same(hcl, reference, REDUCTION_TOL, "hcl(τ⁺=0, β=0)");
        // And β = 0 alone turns HCL into DCL.
        let dcl = run(&f, dims, |x| losses::dcl(x, tau, 0.2));
        let hcl = run(&f, dims, |x| losses::hcl(x, tau, 0.2, 0.0));
        same(hcl, dcl, REDUCTION_TOL, "hcl(β=0) vs dcl");
    }
}

#[test]
fn supcon_with_one_label_per_sample_is_nt_xent() {
    let mut rng = StdRng::seed_from_u64(2);
    for (n, d, tau) in [(2, 3, 0.5), (5, 4, 0.1), (6, 2, 1.0)] {
        let labels: Vec<i64> = (0..n as i64).map(|i| 7 * i - 3).collect();
        for v in 2..=4 {
            let f = gauss(&mut rng, n * v * d);
            let reference = run(&f, [n, v, d], |x| losses::nt_xent(x, tau));
            // With two views both denominators agree; with more, `negatives` drops the other
            // positives from each term's denominator and NT-Xent is the `all` form.
            let dens: &[Denominator] = if v == 2 {
                &[Denominator::All, Denominator::Negatives]
            } else {
                &[Denominator::All]
            };
            for &den in dens {
                let sup = run(&f, [n, v, d], |x| losses::supcon(x, &labels, tau, den));
                same(
                    sup,
                    reference.clone(),
                    REDUCTION_TOL,
                    &format!("V={v} {}", den.name()),
                );
            }
        }
    }
}

#[test]
fn spread_with_alpha_zero_is_supcon() {
    let mut rng = StdRng::seed_from_u64(3);
    for (n, d, tau) in [(3, 3, 0.5), (6, 4, 0.1), (5, 2, 1.0)] {
        let f = gauss(&mut rng, n * 2 * d);
        let mut labels = random_labels(&mut rng, n);
        labels[0] = labels[1] + 1; // two classes, so the negatives form is defined
        for den in [Denominator::All, Denominator::Negatives] {
            let sup = run(&f, [n, 2, d], |x| losses::supcon(x, &labels, tau, den));
            let spr = run(&f, [n, 2, d], |x| losses::spread(x, &labels, tau, 0.0, den));
            // α = 0 multiplies the cNCE term by 0 and SupCon by 1: identical up to one addition.
            same(spr, sup, 1e-15, den.name());
        }
    }
}

#[test]
fn spread_with_alpha_one_is_class_conditional_infonce() {
    // With a single class, cNCE's negatives are all other rows: cNCE = NT-Xent.
    let mut rng = StdRng::seed_from_u64(4);
    let (n, d, tau) = (5, 3, 0.3);
    let f = gauss(&mut rng, n * 2 * d);
    let labels = vec![9; n];
    let spr = run(&f, [n, 2, d], |x| {
        losses::spread(x, &labels, tau, 1.0, Denominator::All)
    });
    let reference = run(&f, [n, 2, d], |x| losses::nt_xent(x, tau));
    same(spr, reference, REDUCTION_TOL, "spread(α=1, one class)");
}

#[test]
fn tabi_reduces_to_supcon_terms() {
    let mut rng = StdRng::seed_from_u64(5);
    let (n, d, tau) = (6, 4, 0.05);
    let f = gauss(&mut rng, n * 2 * d);
    let entities = [3, 1, 3, 2, 2, 5];
    let types = [0, -1, 0, 1, -1, 1];
    let neg = Denominator::Negatives;
    // α = 0: τ·L_ent, the negatives-denominator SupCon over all 2N rows (types not needed).
    let tabi0 = run(&f, [n, 2, d], |x| {
        losses::tabi(x, &entities, None, tau, 0.0)
    });
    let ent = run(&f, [n, 2, d], |x| {
        Ok(losses::supcon(x, &entities, tau, neg)?.mul_scalar(tau))
    });
    same(tabi0.clone(), ent, REDUCTION_TOL, "tabi(α=0)");
    // α = 1: τ·L_type, SupCon over the typed queries only (one view, untyped rows removed).
    let typed = [0usize, 2, 3, 5];
    let tabi1 = run(&f, [n, 2, d], |x| {
        losses::tabi(x, &entities, Some(&types), tau, 1.0)
    });
    let queries: Vec<f64> = typed
        .iter()
        .flat_map(|&i| f[i * 2 * d..i * 2 * d + d].to_vec())
        .collect();
    let type_labels: Vec<i64> = typed.iter().map(|&i| types[i]).collect();
    let l_type = run(&queries, [typed.len(), 1, d], |x| {
        Ok(losses::supcon(x, &type_labels, tau, neg)?.mul_scalar(tau))
    });
    assert!(rel(tabi1.0, l_type.0) <= REDUCTION_TOL);
    // Its gradient lives on the typed queries only.
    for i in 0..n {
        for v in 0..2 {
            let g = &tabi1.1[(i * 2 + v) * d..(i * 2 + v + 1) * d];
            let slot = typed.iter().position(|&t| t == i);
            match (v, slot) {
                (0, Some(j)) => {
                    let r = rel_vec(g, &l_type.1[j * d..(j + 1) * d]);
                    assert!(r <= REDUCTION_TOL, "query {i}: {r:e}");
                }
                _ => assert!(g.iter().all(|&x| x == 0.0), "row {i} view {v}: {g:?}"),
            }
        }
    }
    // The mix is linear in α.
    let mixed = run(&f, [n, 2, d], |x| {
        losses::tabi(x, &entities, Some(&types), tau, 0.1)
    });
    let lin = 0.9 * tabi0.0 + 0.1 * tabi1.0;
    assert!(rel(mixed.0, lin) <= REDUCTION_TOL, "{} vs {lin}", mixed.0);
}

#[test]
fn clip_is_two_npair_losses_on_scaled_normalised_features() {
    let mut rng = StdRng::seed_from_u64(6);
    let (n, d, tau) = (5, 3, 0.07);
    let f = gauss(&mut rng, n * 2 * d);
    let clip = run(&f, [n, 2, d], |x| losses::clip(x, tau)).0;
    // Normalise every row by hand, scale the anchors' view by 1/τ.
    let unit = |x: &[f64]| -> Vec<f64> {
        let len = x.iter().map(|a| a * a).sum::<f64>().sqrt();
        x.iter().map(|a| a / len).collect()
    };
    let mut ab = vec![];
    let mut ba = vec![];
    for i in 0..n {
        let z0 = unit(&f[i * 2 * d..i * 2 * d + d]);
        let z1 = unit(&f[i * 2 * d + d..(i + 1) * 2 * d]);
        ab.extend(z0.iter().map(|a| a / tau));
        ab.extend(&z1);
        ba.extend(z1.iter().map(|a| a / tau));
        ba.extend(&z0);
    }
    let npair = |x: &[f64]| run(x, [n, 2, d], losses::npair).0;
    let expect = 0.5 * (npair(&ab) + npair(&ba));
    assert!(rel(clip, expect) <= REDUCTION_TOL, "{clip} vs {expect}");
}

#[test]
fn uniform_over_views_is_the_mean_of_single_views() {
    let mut rng = StdRng::seed_from_u64(7);
    let (n, d) = (5, 3);
    let f = gauss(&mut rng, n * 3 * d);
    let all = run(&f, [n, 3, d], |x| losses::uniform(x, 2.0)).0;
    let per_view: f64 = (0..3)
        .map(|v| {
            let fv: Vec<f64> = (0..n)
                .flat_map(|i| f[(i * 3 + v) * d..(i * 3 + v + 1) * d].to_vec())
                .collect();
            run(&fv, [n, 1, d], |x| losses::uniform(x, 2.0)).0
        })
        .sum::<f64>()
        / 3.0;
    assert!(rel(all, per_view) <= REDUCTION_TOL, "{all} vs {per_view}");
}

#[test]
fn moco_sends_no_gradient_to_keys_or_queue() {
    let mut rng = StdRng::seed_from_u64(8);
    let (n, d, k) = (4, 3, 6);
    let f = feats::<f64>(&gauss(&mut rng, n * 2 * d), n, 2, d).requires_grad_();
    let q = Tensor::<f64>::from_f64s(&gauss(&mut rng, k * d), [k, d])
        .unwrap()
        .requires_grad_();
    let loss = losses::moco(&f, &q, 0.2).unwrap();
    let grads = loss.backward().unwrap();
    let g = grads.get_or_zeros(&f).to_f64_vec();
    for i in 0..n {
        let query = &g[i * 2 * d..i * 2 * d + d];
        let key = &g[i * 2 * d + d..(i + 1) * 2 * d];
        assert!(query.iter().any(|&x| x != 0.0), "query {i} has no gradient");
        assert!(key.iter().all(|&x| x == 0.0), "key {i}: {key:?}");
    }
    assert!(grads.get_or_zeros(&q).data().iter().all(|&x| x == 0.0));
}

// ---------------------------------------------------------------------------------------------
// (d) Invariance to permuting samples
// ---------------------------------------------------------------------------------------------

#[test]
fn every_loss_is_invariant_to_permuting_samples() {
    let mut rng = StdRng::seed_from_u64(9);
    for &name in losses::NAMES {
        for _ in 0..4 {
            let s = random_sample(name, &mut rng);
            let mut perm: Vec<usize> = (0..s.n).collect();
            for i in (1..s.n).rev() {
                perm.swap(i, rng.random_range(0..=i));
            }
            // Sample i of the permuted batch is sample perm[i] of the original, in every view.
            let row = s.v * s.d;
            let mut p = s.with_features(
                perm.iter()
                    .flat_map(|&j| s.features[j * row..(j + 1) * row].to_vec())
                    .collect(),
            );
            let permute =
                |y: &Option<Vec<i64>>| y.as_ref().map(|y| perm.iter().map(|&j| y[j]).collect());
            p.labels = permute(&s.labels);
            p.types = permute(&s.types);
            let (a, ga) = s.value_and_grad::<f64>();
            let (b, gb) = p.value_and_grad::<f64>();
            // Summation order changes, nothing else: rounding only.
            assert!(rel(a, b) <= 1e-12, "{name}: {a} vs {b}\n{s:?}");
            let back: Vec<f64> = perm
                .iter()
                .flat_map(|&j| ga[j * row..(j + 1) * row].to_vec())
                .collect();
            let r = rel_vec(&back, &gb);
            assert!(r <= 1e-10, "{name}: gradients differ by {r:e}\n{s:?}"); // rounding only
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (e) Stability sweeps: τ ∈ {0.01, 0.1, 1}, norms 1e-6 and 1e6, f32 and f64
// ---------------------------------------------------------------------------------------------

/// Whether the loss has a temperature.
fn has_tau(name: &str) -> bool {
    matches!(
        name,
        "nt_xent" | "supcon" | "spread" | "tabi" | "clip" | "dcl" | "hcl" | "moco"
    )
}

/// The size of the quantities a loss adds up, for features of norm `norm`: the f32 result can
/// only be expected to match f64 to a few hundred ulps of this, not of the (possibly much smaller)
/// final value.
fn magnitude(name: &str, norm: f64, tau: f64) -> f64 {
    match name {
        _ if has_tau(name) => 1.0 / tau,
        "align" | "barlow_twins" => 4.0,
        "uniform" => 8.0,
        "spectral" | "npair" | "arora_logistic" | "arora_hinge" => 1.0 + norm * norm,
        "triplet" => 1.0 + norm,
        "vicreg" => 25.0 * (1.0 + norm * norm) + norm.powi(4),
        _ => unreachable!("{name}"),
    }
}

#[test]
fn every_loss_is_finite_for_extreme_temperatures_and_norms_in_f32_and_f64() {
    let mut rng = StdRng::seed_from_u64(10);
    let mut checked = 0;
    for &name in losses::NAMES {
        let taus: &[f64] = if has_tau(name) {
            &[0.01, 0.1, 1.0]
        } else {
            &[1.0]
        };
        for &norm in &[1e-6, 1e6] {
            for &tau in taus {
                let mut s = random_sample(name, &mut rng);
                // Features rounded to f32 once, so that both precisions see the same inputs.
                s.features = rows_with_norm(&mut rng, s.n * s.v, s.d, norm)
                    .iter()
                    .map(|&x| x as f32 as f64)
                    .collect();
                s.params.retain(|(k, _)| *k != "tau" && *k != "margin");
                if has_tau(name) {
                    s.params.push(("tau", tau.to_string()));
                }
                let (l64, g64) = s.value_and_grad::<f64>();
                let (l32, g32) = s.value_and_grad::<f32>();
                let what = format!("{name} τ={tau} norm={norm:e}");
                assert!(l64.is_finite() && l32.is_finite(), "{what}: {l64} / {l32}");
                assert!(g64.iter().all(|x| x.is_finite()), "{what}: f64 gradient");
                assert!(g32.iter().all(|x| x.is_finite()), "{what}: f32 gradient");
                // f32 carries 24 bits: 1e-5 of the summed magnitudes is ~100 ulps, room for the
                // accumulation over ≤ 18 rows (observed worst: 1.4e-8 of it, nt_xent τ = 0.01).
                let tol = 1e-5 * (l64.abs() + magnitude(name, norm, tau));
                assert!((l32 - l64).abs() <= tol, "{what}: f32 {l32} vs f64 {l64}");
                checked += 1;
            }
        }
    }
    // 8 tempered losses × 3 τ × 2 norms + 9 others × 2 norms.
    assert_eq!(checked, 8 * 6 + 9 * 2);
}

// ---------------------------------------------------------------------------------------------
// (f) Bad inputs
// ---------------------------------------------------------------------------------------------

/// The error of `compute(name, …)`, with its message.
fn error_of(
    name: &str,
    f: &Tensor<f64>,
    labels: Option<&[i64]>,
    types: Option<&[i64]>,
    queue: Option<&Tensor<f64>>,
    params: &[(&str, &str)],
) -> (Error, String) {
    let inputs = LossInputs {
        features: f,
        labels,
        types,
        queue,
    };
    let e = losses::compute(name, &inputs, params).expect_err("an error");
    let msg = e.to_string();
    (e, msg)
}

/// Labels, types and queue, each present when the loss reads it.
type Extras = (Option<Vec<i64>>, Option<Vec<i64>>, Option<Tensor<f64>>);

/// Valid extra inputs for `name` with N samples of width d.
fn extras(name: &str, n: usize, d: usize) -> Extras {
    let labels = matches!(name, "supcon" | "spread" | "tabi").then(|| (0..n as i64).collect());
    let types = (name == "tabi").then(|| vec![0; n]);
    let queue = (name == "moco").then(|| Tensor::ones([3, d]));
    (labels, types, queue)
}

#[test]
fn wrong_rank_or_view_count_names_the_loss_and_the_shape() {
    for &name in losses::NAMES {
        let (labels, types, queue) = extras(name, 4, 2);
        let call = |f: &Tensor<f64>| {
            error_of(
                name,
                f,
                labels.as_deref(),
                types.as_deref(),
                queue.as_ref(),
                &[],
            )
        };
        let (e, msg) = call(&Tensor::ones([4, 2]));
        assert!(
            matches!(e, Error::BadRank { op, .. } if op == name),
            "{name}: {e:?}"
        );
        assert!(msg.contains("[4, 2]"), "{msg}");
        // One view too few (none for the losses that take a single view), one too many for
        // the losses that take a fixed number.
        let range = views_of(name);
        let mut wrong = vec![range.start() - 1];
        if range.start() == range.end() {
            wrong.push(range.end() + 1);
        }
        for wrong_v in wrong {
            let (e, msg) = call(&Tensor::ones([4, wrong_v, 2]));
            assert!(
                matches!(e, Error::BadRank { op, .. } if op == name),
                "{name}: {e:?}"
            );
            assert!(
                msg.starts_with(name) && msg.contains(&format!("[4, {wrong_v}, 2]")),
                "{msg}"
            );
        }
    }
}

#[test]
fn label_and_queue_mismatches_are_errors() {
    let f = Tensor::<f64>::ones([4, 2, 3]);
    for name in ["supcon", "spread", "tabi"] {
        let types = [0, 0, 1, 1];
        let types = (name == "tabi").then_some(&types[..]);
        let (_, msg) = error_of(name, &f, Some(&[0, 1, 2]), types, None, &[]);
        assert!(
            msg.starts_with(name) && msg.contains("3 ") && msg.contains("[4, 2, 3]"),
            "{msg}"
        );
    }
    let (_, msg) = error_of("tabi", &f, Some(&[0, 1, 2, 3]), Some(&[0, 1]), None, &[]);
    assert!(msg.contains("2 type ids"), "{msg}");
    let q = Tensor::<f64>::ones([5, 2]);
    let (_, msg) = error_of("moco", &f, None, None, Some(&q), &[]);
    assert!(
        msg.starts_with("moco") && msg.contains("[5, 2]") && msg.contains("[4, 2, 3]"),
        "{msg}"
    );
    let (_, msg) = error_of("moco", &f, None, None, None, &[]);
    assert!(msg.contains("needs a queue"), "{msg}");
    let (_, msg) = error_of("nt_xent", &f, Some(&[0, 1, 2, 3]), None, None, &[]);
    assert!(msg == "nt_xent: takes no labels", "{msg}");
    let (_, msg) = error_of("supcon", &f, None, None, Some(&q), &[]);
    assert!(msg == "supcon: takes no queue", "{msg}");
    let (_, msg) = error_of("supcon", &f, None, None, None, &[]);
    assert!(msg.contains("needs labels"), "{msg}");
}

#[test]
fn unknown_names_parameters_and_bad_values_are_errors() {
    let f = Tensor::<f64>::ones([4, 2, 3]);
    let (_, msg) = error_of("ntxent", &f, None, None, None, &[]);
    assert!(
        msg.contains("unknown loss 'ntxent'") && msg.contains("nt_xent"),
        "{msg}"
    );
    let (_, msg) = error_of("nt_xent", &f, None, None, None, &[("alpha", "1")]);
    assert!(
        msg.contains("unknown parameter 'alpha'") && msg.contains("tau"),
        "{msg}"
    );
    let (_, msg) = error_of("spectral", &f, None, None, None, &[("tau", "1")]);
    assert!(msg.contains("it takes none"), "{msg}");
    let (_, msg) = error_of("nt_xent", &f, None, None, None, &[("tau", "abc")]);
    assert!(msg.contains("'abc' is not a number"), "{msg}");
    let labels = [0, 0, 1, 1];
    let (_, msg) = error_of(
        "supcon",
        &f,
        Some(&labels),
        None,
        None,
        &[("denominator", "pos")],
    );
    assert!(msg.contains("'all' or 'negatives'"), "{msg}");
    for (name, key, value) in [
        ("nt_xent", "tau", "0"),
        ("clip", "tau", "-1"),
        ("moco", "tau", "inf"),
        ("dcl", "tau_plus", "1"),
        ("hcl", "beta", "NaN"),
        ("spread", "alpha", "1.5"),
        ("uniform", "t", "0"),
        ("align", "alpha", "0"),
        ("triplet", "margin", "inf"),
    ] {
        let v = (*views_of(name).start()).max(2);
        let f = Tensor::<f64>::ones([4, v, 3]);
        let (labels, _, queue) = extras(name, 4, 3);
        let (_, msg) = error_of(
            name,
            &f,
            labels.as_deref(),
            None,
            queue.as_ref(),
            &[(key, value)],
        );
        assert!(msg.starts_with(name) && msg.contains(key), "{name}: {msg}");
    }
}

#[test]
fn batches_without_positives_or_negatives_are_errors_not_nan_or_zero() {
    let mut rng = StdRng::seed_from_u64(11);
    let f1 = feats::<f64>(&gauss(&mut rng, 3 * 2), 3, 1, 2);
    // One view, distinct labels: no anchor has a positive.
    let e = losses::supcon(&f1, &[0, 1, 2], 0.1, Denominator::All).unwrap_err();
    assert!(e.to_string().contains("no anchor has a positive"), "{e}");
    // One label: with the negatives denominator every term is log(e^s/e^s) = 0.
    let f2 = feats::<f64>(&gauss(&mut rng, 3 * 2 * 2), 3, 2, 2);
    let e = losses::supcon(&f2, &[4, 4, 4], 0.1, Denominator::Negatives).unwrap_err();
    assert!(e.to_string().contains("no anchor has a negative"), "{e}");
    // … which is fine with the full denominator (the loss is positive).
    let ok = losses::supcon(&f2, &[4, 4, 4], 0.1, Denominator::All).unwrap();
    assert!(ok.item().unwrap() > 0.0);
    // TABi: types required when α > 0, all-untyped batches and bad type ids rejected.
    let ent = [0, 1, 2];
    let e = losses::tabi(&f2, &ent, None, 0.05, 0.1).unwrap_err();
    assert!(e.to_string().contains("needs type ids"), "{e}");
    let e = losses::tabi(&f2, &ent, Some(&[-1, -1, -1]), 0.05, 0.1).unwrap_err();
    assert!(e.to_string().contains("untyped"), "{e}");
    let e = losses::tabi(&f2, &ent, Some(&[0, 1, 2]), 0.05, 0.1).unwrap_err();
    assert!(
        e.to_string().contains("type ids of the typed queries"),
        "{e}"
    );
    let e = losses::tabi(&f2, &ent, Some(&[0, -2, 0]), 0.05, 0.1).unwrap_err();
    assert!(e.to_string().contains("type id -2"), "{e}");
    // A batch of one sample has no negatives for the InfoNCE family.
    let one = feats::<f64>(&[1.0, 0.0, 0.0, 1.0], 1, 2, 2);
    for name in [
        "nt_xent", "clip", "npair", "dcl", "hcl", "spectral", "spread", "uniform",
    ] {
        let labels = [0];
        let labels = matches!(name, "spread").then_some(&labels[..]);
        let (_, msg) = error_of(name, &one, labels, None, None, &[]);
        assert!(msg.contains("at least 2 samples"), "{name}: {msg}");
    }
    // Non-finite features are rejected instead of propagating NaN.
    let nan = feats::<f64>(&[1.0, f64::NAN, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0], 2, 2, 2);
    let e = losses::nt_xent(&nan, 0.5).unwrap_err();
    assert!(e.to_string().contains("NaN"), "{e}");
}

#[test]
fn the_registry_round_trips_parameters() {
    let mut loss = Loss::by_name("hcl").unwrap();
    assert_eq!(
        loss,
        Loss::Hcl {
            tau: 0.5,
            tau_plus: 0.1,
            beta: 1.0
        }
    );
    loss.set("beta", "2.5").unwrap();
    let shown: Vec<String> = loss
        .params()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(shown, ["tau=0.5", "tau_plus=0.1", "beta=2.5"]);
    let sup = Loss::with_params("supcon", &[("denominator", "negatives")]).unwrap();
    assert_eq!(sup.params()[1].1.to_string(), "negatives");
    for &name in losses::NAMES {
        assert_eq!(Loss::by_name(name).unwrap().name(), name);
    }
}

// ---------------------------------------------------------------------------------------------
// (4) An independent plain-loop f64 reference
// ---------------------------------------------------------------------------------------------

/// nt_xent, supcon (both denominators), dcl and clip written straight from the formulas of the
/// module docs with plain loops over `Vec<f64>` and no engine op. Features are flat `(N, V, d)`.
/// The sums of exponentials are formed directly (no log-sum-exp): fine for the τ ≥ 0.1 and unit
/// features used here, and a different evaluation order from the engine's.
mod reference {
    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// The V·N rows in view-major order, each divided by its Euclidean norm.
    pub fn rows(f: &[f64], n: usize, v: usize, d: usize) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for k in 0..v {
            for i in 0..n {
                let x = &f[(i * v + k) * d..(i * v + k + 1) * d];
                let norm = dot(x, x).sqrt();
                out.push(x.iter().map(|a| a / norm).collect());
            }
        }
        out
    }

    /// With `v` views: row i's positives are the rows of its sample in the other views.
    pub fn nt_xent(f: &[f64], n: usize, v: usize, d: usize, tau: f64) -> f64 {
        let z = rows(f, n, v, d);
        let r = v * n;
        let mut total = 0.0;
        for i in 0..r {
            let mut denom = 0.0;
            let mut positive = 0.0;
            for k in 0..r {
                if k != i {
                    denom += (dot(&z[i], &z[k]) / tau).exp();
                    if k % n == i % n {
                        positive += dot(&z[i], &z[k]) / tau;
                    }
                }
            }
            total += -positive / (v - 1) as f64 + denom.ln();
        }
        total / r as f64
    }

    pub fn supcon(
        f: &[f64],
        n: usize,
        v: usize,
        d: usize,
        labels: &[i64],
        tau: f64,
        negatives_only: bool,
    ) -> f64 {
        let z = rows(f, n, v, d);
        let r = v * n;
        let y = |i: usize| labels[i % n];
        let s = |i: usize, k: usize| dot(&z[i], &z[k]) / tau;
        let (mut total, mut anchors) = (0.0, 0);
        for i in 0..r {
            let positives: Vec<usize> = (0..r).filter(|&p| p != i && y(p) == y(i)).collect();
            if positives.is_empty() {
                continue;
            }
            let mut sum = 0.0;
            for &p in &positives {
                let denom: f64 = if negatives_only {
                    s(i, p).exp()
                        + (0..r)
                            .filter(|&k| y(k) != y(i))
                            .map(|k| s(i, k).exp())
                            .sum::<f64>()
                } else {
                    (0..r).filter(|&k| k != i).map(|k| s(i, k).exp()).sum()
                };
                sum += -s(i, p) + denom.ln();
            }
            total += sum / positives.len() as f64;
            anchors += 1;
        }
        total / anchors as f64
    }

    /// The loss and how many anchors had the clamp active.
    pub fn dcl(f: &[f64], n: usize, d: usize, tau: f64, tau_plus: f64) -> (f64, usize) {
        let z = rows(f, n, 2, d);
        let r = 2 * n;
        let m = (r - 2) as f64;
        let (mut total, mut clamped) = (0.0, 0);
        for i in 0..r {
            let p = (i + n) % r;
            let pos = (dot(&z[i], &z[p]) / tau).exp();
            let neg: f64 = (0..r)
                .filter(|&k| k != i && k != p)
                .map(|k| (dot(&z[i], &z[k]) / tau).exp())
                .sum();
            let estimate = (-tau_plus * m * pos + neg) / (1.0 - tau_plus);
            let floor = m * (-1.0 / tau).exp();
            if estimate < floor {
                clamped += 1;
            }
            let ng = estimate.max(floor);
            // −log(pos/(pos + Ng)) written as log1p(Ng/pos): the same number, without the
            // cancellation of a log of a ratio near 1 when the clamp makes Ng tiny.
            total += (ng / pos).ln_1p();
        }
        (total / r as f64, clamped)
    }

    pub fn clip(f: &[f64], n: usize, d: usize, tau: f64) -> f64 {
        let z = rows(f, n, 2, d);
        let logit = |i: usize, j: usize| dot(&z[i], &z[n + j]) / tau;
        let mut rows_ce = 0.0;
        let mut cols_ce = 0.0;
        for i in 0..n {
            let by_row: f64 = (0..n).map(|j| logit(i, j).exp()).sum();
            let by_col: f64 = (0..n).map(|j| logit(j, i).exp()).sum();
            rows_ce += by_row.ln() - logit(i, i);
            cols_ce += by_col.ln() - logit(i, i);
        }
        0.5 * (rows_ce + cols_ce) / n as f64
    }

    /// The gradient by the five-point central difference with step `h` (error O(h⁴)).
    pub fn gradient(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
        let mut y = x.to_vec();
        (0..x.len())
            .map(|i| {
                let mut at = |t: f64| {
                    y[i] = x[i] + t;
                    let v = f(&y);
                    y[i] = x[i];
                    v
                };
                (-at(2.0 * h) + 8.0 * at(h) - 8.0 * at(-h) + at(-2.0 * h)) / (12.0 * h)
            })
            .collect()
    }
}

/// Value to 1e-9 relative; gradient (engine reverse mode against five-point differences of the
/// reference, step 1e-3·τ so that the O((h/τ)⁴) truncation stays ~1e-11) to 1e-9 relative in
/// the max norm over all entries.
fn agrees_with_reference(
    what: &str,
    f: &[f64],
    dims: [usize; 3],
    tau: f64,
    engine: impl Fn(&Tensor<f64>) -> Result<Tensor<f64>>,
    reference: impl Fn(&[f64]) -> f64,
) {
    let (value, grad) = run(f, dims, engine);
    let expect = reference(f);
    assert!(
        rel(value, expect) <= 1e-9,
        "{what}: {value} vs reference {expect}"
    );
    let numeric = reference::gradient(&reference, f, 1e-3 * tau);
    let r = rel_vec(&grad, &numeric);
    assert!(
        r <= 1e-9,
        "{what}: gradient differs from the reference by {r:e}"
    );
}

#[test]
fn nt_xent_and_clip_match_the_reference() {
    let mut rng = StdRng::seed_from_u64(12);
    for (n, d, tau) in [(2, 3, 0.5), (3, 4, 0.1), (5, 3, 1.0), (4, 5, 0.2)] {
        let f = gauss(&mut rng, n * 2 * d);
        let dims = [n, 2, d];
        agrees_with_reference(
            "nt_xent",
            &f,
            dims,
            tau,
            |x| losses::nt_xent(x, tau),
            |x| reference::nt_xent(x, n, 2, d, tau),
        );
        // Three and four views: each anchor averages over its other views.
        for v in [3, 4] {
            let f = gauss(&mut rng, n * v * d);
            agrees_with_reference(
                &format!("nt_xent V={v}"),
                &f,
                [n, v, d],
                tau,
                |x| losses::nt_xent(x, tau),
                |x| reference::nt_xent(x, n, v, d, tau),
            );
        }
        agrees_with_reference(
            "clip",
            &f,
            dims,
            tau,
            |x| losses::clip(x, tau),
            |x| reference::clip(x, n, d, tau),
        );
    }
}

#[test]
fn supcon_matches_the_reference_with_both_denominators() {
    let mut rng = StdRng::seed_from_u64(13);
    let cases: [(usize, &[i64], f64); 5] = [
        (1, &[0, 0, 1, 1, 1, 2], 0.1), // one view, a singleton class (anchor left out)
        (2, &[0, 1, 0, 2], 0.5),       // two views, a singleton class (positive = own view)
        (3, &[5, 5, 5, 7], 0.2),       // three views
        (2, &[0, 1, 2, 3, 4], 1.0),    // all distinct: NT-Xent
        (1, &[1, 2, 1, 2, 1, 3, 3], 0.3), // one view, three classes
    ];
    for (v, labels, tau) in cases {
        let (n, d) = (labels.len(), 3);
        let f = gauss(&mut rng, n * v * d);
        for den in [Denominator::All, Denominator::Negatives] {
            agrees_with_reference(
                &format!("supcon V={v} {labels:?} {}", den.name()),
                &f,
                [n, v, d],
                tau,
                |x| losses::supcon(x, labels, tau, den),
                |x| reference::supcon(x, n, v, d, labels, tau, den == Denominator::Negatives),
            );
        }
    }
}

#[test]
fn dcl_matches_the_reference_with_and_without_the_clamp() {
    let mut rng = StdRng::seed_from_u64(14);
    let mut clamped = 0;
    let mut free = 0;
    for (n, d, tau, tau_plus, pull) in [
        (3, 3, 0.5, 0.1, 0.0),
        (4, 4, 0.2, 0.3, 0.0),
        (5, 3, 1.0, 0.0, 0.0),
        (4, 3, 0.5, 0.0, 0.0),
        // Views pulled together (view 1 = view 0 + small noise) at a low τ: the estimate
        // goes negative for some anchors and the clamp is active there.
        (4, 4, 0.25, 0.1, 0.9),
        (6, 5, 0.2, 0.05, 0.7),
    ] {
        let mut f = gauss(&mut rng, n * 2 * d);
        if pull > 0.0 {
            for i in 0..n {
                for j in 0..d {
                    let a = f[i * 2 * d + j];
                    f[i * 2 * d + d + j] = pull * a + (1.0 - pull) * f[i * 2 * d + d + j];
                }
            }
        }
        let (_, c) = reference::dcl(&f, n, d, tau, tau_plus);
        clamped += c;
        free += 2 * n - c;
        agrees_with_reference(
            &format!("dcl n={n} τ={tau} τ⁺={tau_plus}"),
            &f,
            [n, 2, d],
            tau,
            |x| losses::dcl(x, tau, tau_plus),
            |x| reference::dcl(x, n, d, tau, tau_plus).0,
        );
    }
    // Both branches of the clamp were compared.
    assert!(clamped > 0 && free > 0, "clamped {clamped}, free {free}");
}

// ---------------------------------------------------------------------------------------------
// (g) The fused (streaming) forms against the composed N² forms
// ---------------------------------------------------------------------------------------------

use contrastive::losses::{SimilarityMode, plain};

/// Labels with classes of sizes 1, 2, 3, 5, … (several power-of-two groups in the class sums),
/// shuffled.
fn mixed_labels(rng: &mut StdRng, n: usize) -> Vec<i64> {
    let mut y = Vec::with_capacity(n);
    let (mut class, mut size) = (0i64, 1usize);
    while y.len() < n {
        for _ in 0..size.min(n - y.len()) {
            y.push(class);
        }
        class += 1;
        size = if size < 8 { size + 1 } else { 1 };
    }
    for i in (1..n).rev() {
        y.swap(i, rng.random_range(0..=i));
    }
    y
}

// The fused forms add the same terms as the composed ones in another order (a streamed online
// log-sum-exp, the positives as z_i·Σz_p instead of Σ z_i·z_p): 1e-10 relative is ~1e6 ulps,
// still far below any formula error.
const FUSED_TOL: f64 = 1e-10;

#[test]
fn fused_nt_xent_supcon_and_clip_match_the_composed_forms_in_both_regimes() {
    let mut rng = StdRng::seed_from_u64(20);
    // Sizes that cross the 256-row and 512-column blocks of the streaming kernel unevenly.
    for (n, d, tau) in [(3, 4, 0.5), (37, 5, 0.1), (300, 3, 0.07)] {
        let f = gauss(&mut rng, n * 2 * d);
        let dims = [n, 2, d];
        for mode in [SimilarityMode::Materialize, SimilarityMode::Stream] {
            let what = |name: &str| format!("{name} N={n} τ={tau} {mode:?}");
            same(
                run(&f, dims, |x| losses::nt_xent_with(x, tau, mode)),
                run(&f, dims, |x| plain::nt_xent(x, tau)),
                FUSED_TOL,
                &what("nt_xent"),
            );
            let f3 = gauss(&mut rng, n * 3 * d);
            same(
                run(&f3, [n, 3, d], |x| losses::nt_xent_with(x, tau, mode)),
                run(&f3, [n, 3, d], |x| plain::nt_xent(x, tau)),
                FUSED_TOL,
                &what("nt_xent V=3"),
            );
            same(
                run(&f, dims, |x| losses::clip_with(x, tau, mode)),
                run(&f, dims, |x| plain::clip(x, tau)),
                FUSED_TOL,
                &what("clip"),
            );
        }
    }
    for (n, v, d, tau) in [
        (4, 1, 3, 0.2),
        (29, 2, 4, 0.1),
        (90, 3, 3, 0.5),
        (250, 1, 2, 0.05),
    ] {
        let f = gauss(&mut rng, n * v * d);
        let mut labels = mixed_labels(&mut rng, n);
        if v == 1 && n == 4 {
            labels = vec![0, 1, 0, 2]; // singletons, left out of the mean
        }
        for mode in [SimilarityMode::Materialize, SimilarityMode::Stream] {
            for den in [Denominator::All, Denominator::Negatives] {
                same(
                    run(&f, [n, v, d], |x| {
                        losses::supcon_with(x, &labels, tau, den, mode)
                    }),
                    run(&f, [n, v, d], |x| plain::supcon(x, &labels, tau, den)),
                    FUSED_TOL,
                    &format!("supcon N={n} V={v} {} {mode:?}", den.name()),
                );
            }
        }
    }
    // Labels = sample index with two views: every class is a pair (the class-sum shortcut for
    // all-singleton classes is not taken, V = 2 makes pairs); with V = 1, ties make groups.
    let (n, d) = (70, 3);
    let f = gauss(&mut rng, n * 2 * d);
    let labels: Vec<i64> = (0..n as i64).collect();
    same(
        run(&f, [n, 2, d], |x| {
            losses::supcon_with(x, &labels, 0.3, Denominator::All, SimilarityMode::Stream)
        }),
        run(&f, [n, 2, d], |x| plain::nt_xent(x, 0.3)),
        FUSED_TOL,
        "supcon with one label per sample is nt_xent (streamed)",
    );
}

/// A fused loss in the streaming regime, and its value and feature gradient in precision `T`.
fn streamed<T: Float>(
    name: &str,
    f: &[f64],
    dims: [usize; 3],
    labels: &[i64],
    tau: f64,
) -> (f64, Vec<f64>) {
    let x = feats::<T>(f, dims[0], dims[1], dims[2]).requires_grad_();
    let mode = SimilarityMode::Stream;
    let l = match name {
        "nt_xent" => losses::nt_xent_with(&x, tau, mode),
        "clip" => losses::clip_with(&x, tau, mode),
        _ => losses::supcon_with(&x, labels, tau, Denominator::All, mode),
    }
    .unwrap();
    let g = l.backward().unwrap().get_or_zeros(&x).to_f64_vec();
    (l.item().unwrap().to_f64(), g)
}

#[test]
fn fused_forms_stay_finite_and_accurate_when_streamed_at_extreme_temperatures_and_norms() {
    let mut rng = StdRng::seed_from_u64(21);
    let (n, d) = (40, 6);
    let labels = mixed_labels(&mut rng, n);
    for &norm in &[1e-6, 1.0, 1e6] {
        // Rounded to f32 once, so both precisions see the same inputs.
        let f: Vec<f64> = rows_with_norm(&mut rng, n * 2, d, norm)
            .iter()
            .map(|&x| x as f32 as f64)
            .collect();
        for &tau in &[0.01, 0.1, 1.0] {
            for name in ["nt_xent", "clip", "supcon"] {
                let what = format!("{name} streamed τ={tau} norm={norm:e}");
                let (l64, g64) = streamed::<f64>(name, &f, [n, 2, d], &labels, tau);
                let (l32, g32) = streamed::<f32>(name, &f, [n, 2, d], &labels, tau);
                assert!(l64.is_finite() && l32.is_finite(), "{what}: {l64} / {l32}");
                assert!(g64.iter().chain(&g32).all(|x| x.is_finite()), "{what}");
                // As in the stability sweep: ~100 f32 ulps of the summed magnitudes (1/τ).
                let tol = 1e-5 * (l64.abs() + 1.0 / tau);
                assert!((l32 - l64).abs() <= tol, "{what}: f32 {l32} vs f64 {l64}");
            }
        }
    }
}
