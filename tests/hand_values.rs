//! Hand-derived values on small cases for the trickier ops: conv2d, pooling, batch norm,
//! logsumexp/softmax at extreme logits, L2 normalisation, cross-entropy.

use contrastive::{BatchNormMode, Conv2dParams, RunningStats, Tensor};

fn t(values: &[f64], dims: &[usize]) -> Tensor<f64> {
    Tensor::from_f64s(values, dims.to_vec()).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

#[test]
fn conv2d_by_hand() {
    // x = 1..9 in a 3×3 image; w = [[1, 0], [0, −1]] picks x[i,j] − x[i+1,j+1] = −4 everywhere.
    let x = t(&(1..=9).map(f64::from).collect::<Vec<_>>(), &[1, 1, 3, 3]).requires_grad_();
    let w = t(&[1.0, 0.0, 0.0, -1.0], &[1, 1, 2, 2]).requires_grad_();
    let y = x.conv2d(&w, None, Conv2dParams::default()).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    close(y.data(), &[-4.0; 4], 0.0);
    // d Σy / d w[a,b] = Σ over the four windows of x[i+a, j+b]:
    // w00: 1+2+4+5 = 12, w01: 2+3+5+6 = 16, w10: 4+5+7+8 = 24, w11: 5+6+8+9 = 28.
    // d Σy / d x = (number of windows using x at tap (0,0)) − (at tap (1,1)).
    let g = y.sum_all().unwrap().backward().unwrap();
    close(g.get(&w).unwrap().data(), &[12.0, 16.0, 24.0, 28.0], 1e-12);
    close(
        g.get(&x).unwrap().data(),
        &[1.0, 1.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0, -1.0],
        1e-12,
    );

    // Stride 2, padding 1, 2×2 kernel of ones on the 3×3 image: windows over the padded 5×5
    // image start at rows/cols −1 and 1, giving sums {1}, {2+3}, {4+7}, {5+6+8+9}.
    let ones = t(&[1.0; 4], &[1, 1, 2, 2]);
    let y = x.conv2d(&ones, None, Conv2dParams::new(2, 1)).unwrap();
    close(y.data(), &[1.0, 5.0, 11.0, 28.0], 0.0);

    // Dilation 2 with a 2×2 kernel reads the four corners: 1 + 3 + 7 + 9 = 20.
    let p = Conv2dParams {
        dilation: (2, 2),
        ..Default::default()
    };
    close(x.conv2d(&ones, None, p).unwrap().data(), &[20.0], 0.0);

    // Two groups: each output channel sees only its own input channel.
    let x2 = t(&[1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0], &[1, 2, 2, 2]);
    let w2 = t(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0], &[2, 1, 2, 2]);
    let b2 = t(&[0.5, -0.5], &[2]);
    let p = Conv2dParams {
        groups: 2,
        ..Default::default()
    };
    close(
        x2.conv2d(&w2, Some(&b2), p).unwrap().data(),
        &[10.5, 9.5],
        0.0,
    );
}

#[test]
fn pooling_by_hand() {
    let x = t(
        &[1.0, 5.0, 2.0, 0.0, 3.0, 4.0, 9.0, 8.0, 7.0],
        &[1, 1, 3, 3],
    )
    .requires_grad_();
    let m = x.max_pool2d(2, 1, 0).unwrap();
    close(m.data(), &[5.0, 5.0, 9.0, 8.0], 0.0);
    // The 5 wins two windows, so it collects two gradients.
    let g = m.sum_all().unwrap().backward().unwrap();
    close(
        g.get(&x).unwrap().data(),
        &[0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0],
        0.0,
    );
    // Average pooling with zero padding counted, windows starting at rows/cols −1 and 1: the
    // corner window holds only x[0,0] = 1 of its four cells; the last holds 3 + 4 + 8 + 7.
    let a = x.avg_pool2d(2, 2, 1).unwrap();
    close(a.data(), &[0.25, 7.0 / 4.0, 9.0 / 4.0, 22.0 / 4.0], 1e-15);
    close(x.global_avg_pool2d().unwrap().data(), &[39.0 / 9.0], 1e-15);
}

#[test]
fn batch_norm_by_hand() {
    // One channel holding 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased 5/3.
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[4, 1]);
    let mut stats = RunningStats::new(1);
    let eps = 1e-5;
    let train = BatchNormMode {
        training: true,
        eps,
    };
    let y = x.batch_norm(None, None, Some(&mut stats), train).unwrap();
    let s = (1.25f64 + eps).sqrt();
    close(y.data(), &[-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s], 1e-14);
    close(&stats.mean, &[0.25], 1e-15);
    close(&stats.var, &[0.9 + 0.1 * 5.0 / 3.0], 1e-15);
    // Evaluation uses the running statistics, with γ = 2 and β = 1.
    let eval = BatchNormMode {
        training: false,
        eps,
    };
    let gamma = t(&[2.0], &[1]);
    let beta = t(&[1.0], &[1]);
    let y = x
        .batch_norm(Some(&gamma), Some(&beta), Some(&mut stats), eval)
        .unwrap();
    let sd = (stats.var[0] + eps).sqrt();
    let expected: Vec<f64> = [1.0, 2.0, 3.0, 4.0]
        .iter()
        .map(|v| 2.0 * (v - 0.25) / sd + 1.0)
        .collect();
    close(y.data(), &expected, 1e-14);
    // The normalised output's gradient is orthogonal to constants and to x itself: for
    // L = Σ y·c with c constant, dL/dx sums to 0.
    let xg = x.requires_grad_();
    let c = t(&[0.3, -1.0, 2.0, 0.5], &[4, 1]);
    let l = xg
        .batch_norm(None, None, None, train)
        .unwrap()
        .mul(&c)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = l.backward().unwrap();
    assert!(g.get(&xg).unwrap().data().iter().sum::<f64>().abs() < 1e-12);
}

#[test]
fn logsumexp_and_softmax_at_extreme_logits() {
    let x = t(&[1e4, 1e4, -1e4, 0.0], &[2, 2]);
    close(
        x.logsumexp(1, false).unwrap().data(),
        &[1e4 + 2f64.ln(), 0.0],
        1e-9,
    );
    close(x.softmax(1).unwrap().data(), &[0.5, 0.5, 0.0, 1.0], 1e-15);
    let xf = x.cast::<f32>();
    let s = xf.softmax(1).unwrap();
    assert!(s.all_finite(), "{s:?}");
    assert_eq!(s.to_f64_vec(), vec![0.5, 0.5, 0.0, 1.0]);
    let lsm = xf.log_softmax(1).unwrap().to_f64_vec();
    close(&lsm, &[-(2f64.ln()), -(2f64.ln()), -1e4, 0.0], 1e-3); // f32 spacing at 1e4 is 1e-3
    // Rows of −∞ (fully masked) give −∞, not NaN; a partly masked row ignores the masked entry.
    let m = t(
        &[f64::NEG_INFINITY, 0.0, f64::NEG_INFINITY, f64::NEG_INFINITY],
        &[2, 2],
    );
    let l = m.logsumexp(1, false).unwrap();
    assert_eq!(l.data()[0], 0.0);
    assert_eq!(l.data()[1], f64::NEG_INFINITY);
    // Gradient of logsumexp is the softmax.
    let v = t(&[1.0, 2.0, 3.0], &[1, 3]).requires_grad_();
    let g = v
        .logsumexp(1, false)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let z: f64 = [1f64, 2.0, 3.0].iter().map(|a| a.exp()).sum();
    close(
        g.get(&v).unwrap().data(),
        &[1f64.exp() / z, 2f64.exp() / z, 3f64.exp() / z],
        1e-15,
    );
}

#[test]
fn normalize_by_hand() {
    let x = t(&[3.0, 4.0, 0.0, 0.0], &[2, 2]).requires_grad_();
    let z = x.normalize(1).unwrap();
    close(z.data(), &[0.6, 0.8, 0.0, 0.0], 1e-15);
    // d(x₀/‖x‖)/dx = ((‖x‖² − x₀²), −x₀x₁)/‖x‖³ = (16, −12)/125; the zero row gets a finite
    // gradient (1/eps on the selected coordinate, 0 elsewhere) instead of NaN.
    let pick = t(&[1.0, 0.0, 1.0, 0.0], &[2, 2]);
    let g = z.mul(&pick).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = g.get(&x).unwrap().data().to_vec();
    close(&gx[..2], &[16.0 / 125.0, -12.0 / 125.0], 1e-15);
    assert!(gx[2..].iter().all(|v| v.is_finite()));
    // Tiny and huge vectors normalise exactly in f32 as well.
    for scale in [1e-6, 1e6] {
        let v = t(&[3.0 * scale, 4.0 * scale], &[1, 2]).cast::<f32>();
        close(&v.normalize(1).unwrap().to_f64_vec(), &[0.6, 0.8], 1e-7);
    }
}

#[test]
fn cross_entropy_by_hand() {
    let logits = t(&[0.0, 0.0, 1e4, 0.0], &[2, 2]).requires_grad_();
    // Row 0: uniform over 2 classes → ln 2. Row 1: target 1 is 1e4 below the max → 1e4.
    let l = logits.cross_entropy(&[0, 1]).unwrap();
    close(l.data(), &[(2f64.ln() + 1e4) / 2.0], 1e-9);
    let g = l.backward().unwrap();
    close(
        g.get(&logits).unwrap().data(),
        &[-0.25, 0.25, 0.5, -0.5],
        1e-15,
    );
}

#[test]
fn backward_twice_gives_the_same_answer_and_frees_nothing_it_needs() {
    let x = t(&[0.5, -1.5, 2.0], &[3]).requires_grad_();
    let y = x.tanh().mul(&x).unwrap().sum_all().unwrap();
    let a = y.backward().unwrap().get(&x).unwrap().to_vec();
    let b = y.backward().unwrap().get(&x).unwrap().to_vec();
    assert_eq!(a, b);
    // A tensor used twice accumulates both paths: d(x·x)/dx = 2x.
    let g = x.mul(&x).unwrap().sum_all().unwrap().backward().unwrap();
    close(g.get(&x).unwrap().data(), &[1.0, -3.0, 4.0], 0.0);
    // No graph is recorded under no_grad.
    let z = contrastive::no_grad(|| x.exp());
    assert!(!z.requires_grad());
}

#[test]
fn similarity_logsumexp_streams_exactly_like_the_materialised_and_composed_forms() {
    use contrastive::ops::similarity::{Exclude, SimilarityMode};
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // Sizes that cross the 64-row and 512-column block boundaries unevenly.
    let (m, n, d) = (130, 1100, 7);
    let a = Tensor::<f64>::randn([m, d], &mut rng).requires_grad_();
    let b = Tensor::<f64>::randn([n, d], &mut rng).requires_grad_();
    let g = Tensor::<f64>::randn([m], &mut rng);
    let labels_a: Vec<i64> = (0..m as i64).map(|i| i % 3).collect();
    let labels_b: Vec<i64> = (0..n as i64).map(|i| i % 5).collect();
    for exclude in [
        Exclude::Nothing,
        Exclude::SameLabel {
            rows: labels_a.clone(),
            cols: labels_b.clone(),
        },
    ] {
        let run = |mode| {
            let l = a
                .similarity_logsumexp_with(&b, 3.0, exclude.clone(), mode)
                .unwrap();
            let grads = l.backward_with(&g).unwrap();
            (
                l.to_vec(),
                grads.get(&a).unwrap().to_vec(),
                grads.get(&b).unwrap().to_vec(),
            )
        };
        let (l1, da1, db1) = run(SimilarityMode::Materialize);
        let (l2, da2, db2) = run(SimilarityMode::Stream);
        // Agreement to 1e-12: the two forms add the same terms in different orders.
        close(&l1, &l2, 1e-12);
        close(&da1, &da2, 1e-12);
        close(&db1, &db2, 1e-12);
        // The composed form: masked logits, then logsumexp.
        let logits = a.matmul(&b.t().unwrap()).unwrap().mul_scalar(3.0);
        let mask: Vec<bool> = (0..m * n)
            .map(|ik| match &exclude {
                Exclude::SameLabel { rows, cols } => rows[ik / n] == cols[ik % n],
                _ => false,
            })
            .collect();
        let composed = logits
            .masked_fill(&mask, f64::NEG_INFINITY)
            .unwrap()
            .logsumexp(1, false)
            .unwrap();
        close(composed.data(), &l1, 1e-12);
    }
}

#[test]
fn linear_by_hand() {
    // y = x·Wᵀ + b with x = [1, 2], W rows [1, 0], [0, 1], [1, 1], b = [0.5, 0, −1].
    let x = t(&[1.0, 2.0], &[1, 2]).requires_grad_();
    let w = t(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]).requires_grad_();
    let b = t(&[0.5, 0.0, -1.0], &[3]).requires_grad_();
    let y = x.linear(&w, Some(&b)).unwrap();
    assert_eq!(y.dims(), [1, 3]);
    // Exact: small integers and halves.
    close(&y.to_f64_vec(), &[1.5, 2.0, 2.0], 0.0);
    let g = y.sum_all().unwrap().backward().unwrap();
    // d(Σy)/dx = column sums of W; d/dW = x in every row; d/db = 1.
    close(&g.get(&x).unwrap().to_f64_vec(), &[2.0, 2.0], 0.0);
    close(
        &g.get(&w).unwrap().to_f64_vec(),
        &[1.0, 2.0, 1.0, 2.0, 1.0, 2.0],
        0.0,
    );
    close(&g.get(&b).unwrap().to_f64_vec(), &[1.0, 1.0, 1.0], 0.0);
    // A bias of the wrong length is an error, not a panic.
    assert!(x.linear(&w, Some(&t(&[1.0, 2.0], &[2]))).is_err());
}
