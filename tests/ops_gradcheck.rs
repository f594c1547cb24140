//! The op table: every differentiable op, its input generator (random shapes, including size-1
//! and broadcast dimensions, and values inside the op's domain), gradient-checked in f64 by the
//! public checker over 256 proptest cases, with its f32 forward compared to f64.
//!
//! `table_reaches_every_primitive` fails when an op is added to the engine without a row here.

use contrastive::ops::similarity::{Exclude, SimilarityMode};
use contrastive::{
    BatchNormMode, CheckMode, Conv2dParams, GradCheckOptions, PRIMITIVE_OPS, Result, RunningStats,
    Tensor, check_gradients,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::HashSet;

/// Where an op's inputs may lie.
#[derive(Clone, Copy)]
enum Domain {
    /// Standard normal.
    Any,
    /// Uniform in [0.5, 2]: log, sqrt, pow bases, divisors' magnitude.
    Positive,
    /// Distinct values on a 0.01-spaced grid shifted off zero: no ties (max, pooling) and no
    /// kinks within the finite-difference step (relu, abs, clamp at ±0.5).
    Distinct,
}

fn values(rng: &mut StdRng, n: usize, domain: Domain) -> Vec<f64> {
    match domain {
        Domain::Any => (0..n)
            .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
            .collect(),
        Domain::Positive => (0..n).map(|_| rng.random_range(0.5..2.0)).collect(),
        Domain::Distinct => {
            // Grid points k·0.01 + 0.0013 for k in −300..300, drawn without replacement.
            let mut grid: Vec<f64> = (-300..300).map(|k| k as f64 * 0.01 + 0.0013).collect();
            (0..n)
                .map(|i| {
                    let j = rng.random_range(i..grid.len());
                    grid.swap(i, j);
                    grid[i]
                })
                .collect()
        }
    }
}

fn tensor(rng: &mut StdRng, dims: &[usize], domain: Domain) -> Tensor<f64> {
    let n = dims.iter().product();
    Tensor::from_vec(values(rng, n, domain), dims.to_vec()).unwrap()
}

/// A random shape of rank `lo..=hi` with dims in 1..=4.
fn shape(rng: &mut StdRng, lo: usize, hi: usize) -> Vec<usize> {
    let rank = rng.random_range(lo..=hi);
    (0..rank).map(|_| rng.random_range(1..=4)).collect()
}

/// Two shapes that broadcast: one full shape, the other a suffix of it with some dims set to 1
/// (and, half the time, the roles swapped).
fn broadcast_pair(rng: &mut StdRng) -> (Vec<usize>, Vec<usize>) {
    let full = shape(rng, 1, 3);
    let keep = rng.random_range(0..=full.len());
    let mut other: Vec<usize> = full[full.len() - keep..].to_vec();
    for d in other.iter_mut() {
        if rng.random_bool(0.4) {
            *d = 1;
        }
    }
    if rng.random_bool(0.5) {
        (full, other)
    } else {
        (other, full)
    }
}

type Gen = fn(&mut StdRng) -> Vec<Tensor<f64>>;
type F64Fn = fn(&[Tensor<f64>]) -> Result<Tensor<f64>>;
type F32Fn = fn(&[Tensor<f32>]) -> Result<Tensor<f32>>;

struct Case {
    name: &'static str,
    inputs: Gen,
    f64: F64Fn,
    f32: F32Fn,
}

/// One table row; the body is written once and instantiated for f64 and f32.
macro_rules! case {
    ($name:expr, $gen:expr, |$x:ident| $body:expr) => {
        Case {
            name: $name,
            inputs: $gen,
            f64: |$x: &[Tensor<f64>]| -> Result<Tensor<f64>> { $body },
            f32: |$x: &[Tensor<f32>]| -> Result<Tensor<f32>> { $body },
        }
    };
}

fn one(domain: Domain) -> impl Fn(&mut StdRng) -> Vec<Tensor<f64>> {
    move |rng| {
        let dims = shape(rng, 0, 3);
        vec![tensor(rng, &dims, domain)]
    }
}

fn unary_any(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    one(Domain::Any)(rng)
}
fn unary_pos(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    one(Domain::Positive)(rng)
}
fn unary_distinct(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    one(Domain::Distinct)(rng)
}
fn pair_any(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let (a, b) = broadcast_pair(rng);
    vec![tensor(rng, &a, Domain::Any), tensor(rng, &b, Domain::Any)]
}
fn pair_div(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let (a, b) = broadcast_pair(rng);
    let mut d = tensor(rng, &b, Domain::Positive);
    if rng.random_bool(0.5) {
        d = d.neg();
    }
    vec![tensor(rng, &a, Domain::Any), d]
}
fn pair_pow(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let (a, b) = broadcast_pair(rng);
    vec![
        tensor(rng, &a, Domain::Positive),
        tensor(rng, &b, Domain::Any),
    ]
}
fn pair_distinct(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    // Both operands drawn from one pool of distinct grid values: no ties anywhere.
    let (a, b) = broadcast_pair(rng);
    let (na, nb): (usize, usize) = (a.iter().product(), b.iter().product());
    let v = values(rng, na + nb, Domain::Distinct);
    vec![
        Tensor::from_vec(v[..na].to_vec(), a).unwrap(),
        Tensor::from_vec(v[na..].to_vec(), b).unwrap(),
    ]
}
fn matmul_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let (m, k, n) = (
        rng.random_range(1..=4),
        rng.random_range(1..=4),
        rng.random_range(1..=4),
    );
    let (lb, rb): (Vec<usize>, Vec<usize>) = match rng.random_range(0..4) {
        0 => (vec![], vec![]),
        1 => (vec![2], vec![2]),
        2 => (vec![3], vec![]),
        _ => (vec![2, 1], vec![3]),
    };
    let l = [lb, vec![m, k]].concat();
    let r = [rb, vec![k, n]].concat();
    vec![tensor(rng, &l, Domain::Any), tensor(rng, &r, Domain::Any)]
}
/// `x` `(…, k)` (rank 2 or 3), `W` `(n, k)`, `b` `(n)`.
fn linear_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let (m, k, n) = (
        rng.random_range(1..=4),
        rng.random_range(1..=4),
        rng.random_range(1..=4),
    );
    let x = if rng.random_bool(0.5) {
        vec![m, k]
    } else {
        vec![2, m, k]
    };
    vec![
        tensor(rng, &x, Domain::Any),
        tensor(rng, &[n, k], Domain::Any),
        tensor(rng, &[n], Domain::Any),
    ]
}
fn rank3(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let dims = shape(rng, 3, 3);
    vec![tensor(rng, &dims, Domain::Any)]
}
fn rank3_distinct(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let dims = shape(rng, 3, 3);
    vec![tensor(rng, &dims, Domain::Distinct)]
}
fn matrix_rows(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let dims = vec![rng.random_range(1..=4), rng.random_range(2..=5)];
    vec![tensor(rng, &dims, Domain::Any)]
}
fn var_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let dims = vec![
        rng.random_range(2..=4),
        rng.random_range(2..=4),
        rng.random_range(1..=3),
    ];
    vec![tensor(rng, &dims, Domain::Any)]
}
fn concat_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let base = shape(rng, 2, 2);
    let mut other = base.clone();
    other[1] = rng.random_range(1..=3);
    vec![
        tensor(rng, &base, Domain::Any),
        tensor(rng, &other, Domain::Any),
    ]
}
fn same_pair(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let dims = shape(rng, 1, 3);
    vec![
        tensor(rng, &dims, Domain::Any),
        tensor(rng, &dims, Domain::Any),
    ]
}
fn conv_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    // Sizes are read back from the tensors' shapes by the case body; the conv parameters come
    // from the extra "params" tensor: [stride, padding, dilation, groups].
    let groups = rng.random_range(1..=2);
    let (cg, ocg) = (rng.random_range(1..=2), rng.random_range(1..=2));
    let k = rng.random_range(1..=3);
    let stride = rng.random_range(1..=2);
    let dilation = rng.random_range(1..=2);
    let padding = rng.random_range(0..=1);
    let span: usize = dilation * (k - 1) + 1;
    let h = rng.random_range(span.saturating_sub(2 * padding).max(1)..=span + 2);
    let w = rng.random_range(span.saturating_sub(2 * padding).max(1)..=span + 2);
    let n = rng.random_range(1..=2);
    vec![
        tensor(rng, &[n, cg * groups, h, w], Domain::Any),
        tensor(rng, &[ocg * groups, cg, k, k], Domain::Any),
        tensor(rng, &[ocg * groups], Domain::Any),
        Tensor::from_f64s(
            &[
                stride as f64,
                padding as f64,
                dilation as f64,
                groups as f64,
            ],
            [4],
        )
        .unwrap(),
    ]
}
fn pool_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let k = rng.random_range(1..=3);
    let stride = rng.random_range(1..=2);
    let padding = rng.random_range(0..=k / 2);
    let h = rng.random_range(k.max(1)..=k + 3);
    let w = rng.random_range(k.max(1)..=k + 3);
    let dims = [rng.random_range(1..=2), rng.random_range(1..=2), h, w];
    vec![
        tensor(rng, &dims, Domain::Distinct),
        Tensor::from_f64s(&[k as f64, stride as f64, padding as f64], [3]).unwrap(),
    ]
}
fn bn_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let c = rng.random_range(1..=3);
    let dims = if rng.random_bool(0.5) {
        vec![rng.random_range(2..=5), c]
    } else {
        vec![
            rng.random_range(1..=2),
            c,
            rng.random_range(1..=3),
            rng.random_range(2..=3),
        ]
    };
    vec![
        tensor(rng, &dims, Domain::Any),
        tensor(rng, &[c], Domain::Any),
        tensor(rng, &[c], Domain::Any),
    ]
}
/// Running statistics of the `batch_norm*_eval` rows: channel `i` has mean 0.1·i, variance
/// 0.5 + i.
fn eval_stats<T: contrastive::Float>(c: usize) -> RunningStats<T> {
    let mut stats = RunningStats::new(c);
    for (i, (m, v)) in stats.mean.iter_mut().zip(stats.var.iter_mut()).enumerate() {
        *m = T::from_f64(0.1 * i as f64);
        *v = T::from_f64(0.5 + i as f64);
    }
    stats
}

/// Batch-norm inputs whose outputs all lie at least 0.02 from zero, so a fused ReLU has no kink
/// within the finite-difference step: β is redrawn per channel until it is so (`training`
/// chooses which statistics normalise: the batch's or [`eval_stats`]).
fn bn_relu_inputs(rng: &mut StdRng, training: bool) -> Vec<Tensor<f64>> {
    let mut inputs = bn_gen(rng);
    let c = inputs[1].numel();
    let x = inputs[0].to_f64_vec();
    let per = x.len() / c;
    let l = per / inputs[0].dims()[0];
    let gamma = inputs[1].to_f64_vec();
    let mut beta = inputs[2].to_f64_vec();
    let stats = eval_stats::<f64>(c);
    for ch in 0..c {
        let vals: Vec<f64> = (0..x.len())
            .filter(|i| (i / l) % c == ch)
            .map(|i| x[i])
            .collect();
        let (mean, var) = if training {
            let m = vals.iter().sum::<f64>() / per as f64;
            (
                m,
                vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / per as f64,
            )
        } else {
            (stats.mean[ch], stats.var[ch])
        };
        let k = gamma[ch] / (var + 1e-5).sqrt();
        let near_kink = |b: f64| vals.iter().any(|v| (k * (v - mean) + b).abs() < 0.02);
        while near_kink(beta[ch]) {
            beta[ch] = rng.random_range(-2.0..2.0);
        }
    }
    inputs[2] = Tensor::from_vec(beta, [c]).unwrap();
    inputs
}
fn bn_relu_train_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    bn_relu_inputs(rng, true)
}
fn bn_relu_eval_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    bn_relu_inputs(rng, false)
}
fn similarity_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let (m, n, d) = (
        rng.random_range(1..=4),
        rng.random_range(2..=5),
        rng.random_range(1..=4),
    );
    vec![
        tensor(rng, &[m, d], Domain::Any),
        tensor(rng, &[n, d], Domain::Any),
    ]
}
fn square_rows(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let (n, d) = (rng.random_range(2..=6), rng.random_range(1..=4));
    vec![tensor(rng, &[n, d], Domain::Any)]
}
fn ce_gen(rng: &mut StdRng) -> Vec<Tensor<f64>> {
    let (n, k) = (rng.random_range(1..=4), rng.random_range(2..=5));
    let targets: Vec<f64> = (0..n).map(|_| rng.random_range(0..k) as f64).collect();
    vec![
        tensor(rng, &[n, k], Domain::Any),
        Tensor::from_vec(targets, [n]).unwrap(),
    ]
}

/// Integer parameters smuggled in a tensor (never differentiated: their gradients are unused
/// and they are only read, never fed to a differentiable op).
fn ints<T: contrastive::Float>(t: &Tensor<T>) -> Vec<usize> {
    t.to_f64_vec().iter().map(|&v| v as usize).collect()
}

/// Indices that depend only on the shape, so every finite-difference evaluation agrees.
fn pattern(len: usize, size: usize) -> Vec<usize> {
    (0..len).map(|i| (i * 7 + 3) % size).collect()
}

fn mask_for(n: usize) -> Vec<bool> {
    (0..n).map(|i| (i * 5 + 1) % 3 == 0).collect()
}

fn table() -> Vec<Case> {
    vec![
        case!("neg", unary_any, |x| Ok(x[0].neg())),
        case!("exp", unary_any, |x| Ok(x[0].exp())),
        case!("log", unary_pos, |x| Ok(x[0].log())),
        case!("sqrt", unary_pos, |x| Ok(x[0].sqrt())),
        case!("abs", unary_distinct, |x| Ok(x[0].abs())),
        case!("relu", unary_distinct, |x| Ok(x[0].relu())),
        case!("leaky_relu", unary_distinct, |x| Ok(x[0].leaky_relu(0.1))),
        case!("gelu", unary_any, |x| Ok(x[0].gelu())),
        case!("tanh", unary_any, |x| Ok(x[0].tanh())),
        case!("sigmoid", unary_any, |x| Ok(x[0].sigmoid())),
        case!("softplus", unary_any, |x| Ok(x[0].softplus())),
        case!("powf", unary_pos, |x| Ok(x[0].powf(2.7))),
        case!("square", unary_any, |x| Ok(x[0].square())),
        case!("add_scalar", unary_any, |x| Ok(x[0].add_scalar(1.5))),
        case!("mul_scalar", unary_any, |x| Ok(x[0].mul_scalar(-2.5))),
        case!("div_scalar", unary_any, |x| Ok(x[0].div_scalar(4.0))),
        case!("clamp", unary_distinct, |x| Ok(x[0].clamp(-0.5, 0.5))),
        case!("add", pair_any, |x| x[0].add(&x[1])),
        case!("sub", pair_any, |x| x[0].sub(&x[1])),
        case!("mul", pair_any, |x| x[0].mul(&x[1])),
        case!("div", pair_div, |x| x[0].div(&x[1])),
        case!("maximum", pair_distinct, |x| x[0].maximum(&x[1])),
        case!("minimum", pair_distinct, |x| x[0].minimum(&x[1])),
        case!("pow", pair_pow, |x| x[0].pow(&x[1])),
        case!("matmul", matmul_gen, |x| x[0].matmul(&x[1])),
        case!("linear", linear_gen, |x| x[0].linear(&x[1], Some(&x[2]))),
        case!("linear_no_bias", linear_gen, |x| x[0].linear(&x[1], None)),
        case!("reshape", rank3, |x| {
            let n = x[0].numel();
            x[0].reshape(&[n, 1])?.mul(&x[0].reshape(&[1, n])?)
        }),
        case!("squeeze_unsqueeze", rank3, |x| x[0]
            .unsqueeze(1)?
            .square()
            .squeeze(1)),
        case!("flatten", rank3, |x| x[0]
            .flatten_from(1)?
            .matmul(&x[0].flatten_from(1)?.t()?)),
        case!("permute", rank3, |x| x[0]
            .permute(&[2, 0, 1])?
            .square()
            .mul_scalar(0.5)
            .tanh()
            .pipe_ok()),
        case!("transpose", rank3, |x| x[0]
            .transpose(0, 2)?
            .exp()
            .pipe_ok()),
        case!("broadcast_to", matrix_rows, |x| {
            let d = x[0].dims().to_vec();
            x[0].unsqueeze(0)?
                .broadcast_to(&[3, d[0], d[1]])?
                .tanh()
                .pipe_ok()
        }),
        case!("narrow", rank3, |x| {
            let len = x[0].dims()[1];
            x[0].narrow(1, len / 2, len - len / 2)?.square().pipe_ok()
        }),
        case!("concat", concat_gen, |x| Tensor::concat(
            &[x[0].clone(), x[1].tanh()],
            1
        )),
        case!("stack", same_pair, |x| Tensor::stack(
            &[x[0].clone(), x[1].square()],
            1
        )),
        case!("index_select", rank3, |x| {
            let size = x[0].dims()[1];
            x[0].index_select(1, &pattern(size + 2, size))?
                .square()
                .pipe_ok()
        }),
        case!("gather", matrix_rows, |x| {
            let (r, c) = (x[0].dims()[0], x[0].dims()[1]);
            x[0].gather(1, &pattern(r * 3, c), &[r, 3])?
                .tanh()
                .pipe_ok()
        }),
        case!("where_cond", same_pair, |x| {
            let mask = mask_for(x[0].numel());
            Tensor::where_cond(&mask, &x[0].square(), &x[1])
        }),
        case!("masked_fill", unary_any, |x| {
            let mask = mask_for(x[0].numel());
            Ok(x[0].masked_fill(&mask, 2.0)?.square())
        }),
        case!("sum", rank3, |x| x[0]
            .sum(&[0, 2], false)?
            .square()
            .pipe_ok()),
        case!("sum_keepdim", rank3, |x| x[0].sum(&[-1], true)?.mul(&x[0])),
        case!("sum_all", rank3, |x| x[0].square().sum_all()),
        case!("mean", rank3, |x| x[0].mean(&[1], true)?.mul(&x[0])),
        case!("max", rank3_distinct, |x| x[0].max(&[1], false)),
        case!("max_noncontiguous", rank3_distinct, |x| x[0]
            .max(&[0, 2], true)),
        case!("min", rank3_distinct, |x| x[0].min(&[2], false)),
        case!("var", var_gen, |x| x[0].var(&[0, 2], false, 1)),
        case!("var_population", var_gen, |x| x[0].var(&[1], true, 0)),
        case!("logsumexp", rank3, |x| x[0].logsumexp(1, false)),
        case!("softmax", rank3, |x| x[0].softmax(-1)),
        case!("log_softmax", rank3, |x| x[0].log_softmax(0)),
        case!("normalize", matrix_rows, |x| x[0].normalize(1)),
        case!("cross_entropy", ce_gen, |x| x[0]
            .cross_entropy(&ints(&x[1]))),
        case!("conv2d", conv_gen, |x| {
            let p = ints(&x[3]);
            let params = Conv2dParams {
                stride: (p[0], p[0]),
                padding: (p[1], p[1]),
                dilation: (p[2], p[2]),
                groups: p[3],
            };
            x[0].conv2d(&x[1], Some(&x[2]), params)
        }),
        case!("max_pool2d", pool_gen, |x| {
            let p = ints(&x[1]);
            x[0].max_pool2d(p[0], p[1], p[2])
        }),
        case!("avg_pool2d", pool_gen, |x| {
            let p = ints(&x[1]);
            x[0].avg_pool2d(p[0], p[1], p[2])
        }),
        case!("global_avg_pool2d", pool_gen, |x| x[0].global_avg_pool2d()),
        case!("batch_norm_train", bn_gen, |x| {
            let c = x[1].numel();
            let mut stats = RunningStats::new(c);
            let mode = BatchNormMode {
                training: true,
                eps: 1e-5,
            };
            x[0].batch_norm(Some(&x[1]), Some(&x[2]), Some(&mut stats), mode)
        }),
        case!("batch_norm_eval", bn_gen, |x| {
            let mut stats = eval_stats(x[1].numel());
            let mode = BatchNormMode {
                training: false,
                eps: 1e-5,
            };
            x[0].batch_norm(Some(&x[1]), Some(&x[2]), Some(&mut stats), mode)
        }),
        case!("batch_norm_relu_train", bn_relu_train_gen, |x| {
            let mut stats = RunningStats::new(x[1].numel());
            let mode = BatchNormMode {
                training: true,
                eps: 1e-5,
            };
            x[0].batch_norm_relu(Some(&x[1]), Some(&x[2]), Some(&mut stats), mode)
        }),
        case!("batch_norm_relu_eval", bn_relu_eval_gen, |x| {
            let mut stats = eval_stats(x[1].numel());
            let mode = BatchNormMode {
                training: false,
                eps: 1e-5,
            };
            x[0].batch_norm_relu(Some(&x[1]), Some(&x[2]), Some(&mut stats), mode)
        }),
        case!("similarity_lse", similarity_gen, |x| {
            x[0].similarity_logsumexp_with(
                &x[1],
                1.7,
                Exclude::Nothing,
                SimilarityMode::Materialize,
            )
        }),
        case!("similarity_lse_stream_diagonal", square_rows, |x| {
            // a = b: both gradient paths land on the same tensor.
            x[0].similarity_logsumexp_with(&x[0], 2.0, Exclude::Diagonal, SimilarityMode::Stream)
        }),
        case!("similarity_lse_same_label", square_rows, |x| {
            // Alternating labels: every row keeps the rows of the other label.
            let n = x[0].dims()[0];
            let labels: Vec<i64> = (0..n as i64).map(|i| i % 2).collect();
            let exclude = Exclude::SameLabel {
                rows: labels.clone(),
                cols: labels,
            };
            let b = x[0].tanh();
            x[0].similarity_logsumexp_with(&b, 0.5, exclude, SimilarityMode::Stream)
        }),
        case!("all_gather_rows", square_rows, |x| {
            // One rank: the identity, recorded as an op. Several ranks are checked on threads
            // in tests/distributed.rs.
            x[0].all_gather_rows(&contrastive::distributed::solo())
        }),
        case!("to_device", unary_any, |x| {
            // CPU to CPU: the identity, recorded as an op (GPU moves are in cuda_parity.rs).
            Ok(x[0].to_device(&contrastive::Device::Cpu)?.square())
        }),
        case!("dropout", unary_any, |x| {
            let mut rng = StdRng::seed_from_u64(7);
            x[0].dropout(0.3, true, &mut rng)
        }),
    ]
}

/// `Ok(self)`, for table bodies that end in an infallible op.
trait PipeOk: Sized {
    fn pipe_ok(self) -> Result<Self> {
        Ok(self)
    }
}
impl<T: contrastive::Float> PipeOk for Tensor<T> {}

/// Inputs that hold integer parameters, not differentiable values.
fn parameter_inputs(name: &str) -> &'static [usize] {
    match name {
        "conv2d" => &[3],
        "max_pool2d" | "avg_pool2d" | "global_avg_pool2d" | "cross_entropy" => &[1],
        _ => &[],
    }
}

fn check_case(case: &Case, seed: u64) -> std::result::Result<(), TestCaseError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let inputs = (case.inputs)(&mut rng);
    let params = parameter_inputs(case.name);
    let (diff, fixed): (Vec<usize>, Vec<usize>) =
        (0..inputs.len()).partition(|i| !params.contains(i));
    let f = |xs: &[Tensor<f64>]| {
        // Re-assemble the full input list: differentiable inputs from the checker, parameters as
        // they were generated.
        let mut all = inputs.clone();
        for (slot, x) in diff.iter().zip(xs) {
            all[*slot] = x.clone();
        }
        (case.f64)(&all)
    };
    let diff_inputs: Vec<Tensor<f64>> = diff.iter().map(|&i| inputs[i].clone()).collect();
    let _ = fixed;
    // Tolerances: central differences in f64 with eps 1e-6 on O(1) values are accurate to
    // ~1e-9; 1e-6 absolute + 1e-5 relative leaves margin yet catches any wrong rule.
    let opts = GradCheckOptions {
        eps: 1e-6,
        atol: 1e-6,
        rtol: 1e-5,
        mode: CheckMode::Auto,
        seed,
        ..Default::default()
    };
    let report =
        check_gradients(f, &diff_inputs, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        report.passed,
        "{}: {} (inputs {:?})",
        case.name,
        report,
        inputs
    );

    // The f32 forward agrees with f64: relative 1e-4 covers f32 rounding (~6e-8) amplified by
    // the conditioning of these small ops.
    let inputs32: Vec<Tensor<f32>> = inputs.iter().map(|t| t.cast()).collect();
    let y64 = (case.f64)(&inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let y32 = (case.f32)(&inputs32).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(y32.dims(), y64.dims());
    for (a, b) in y32.to_f64_vec().iter().zip(y64.data()) {
        prop_assert!(
            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
            "{}: f32 {} vs f64 {}",
            case.name,
            a,
            b
        );
    }
    Ok(())
}

fn run(name: &str) {
    let table = table();
    let case = table
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no table row named {name}"));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(256));
    runner
        .run(&any::<u64>(), |seed| check_case(case, seed))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

macro_rules! op_tests {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { run(stringify!($name)); } )*

        /// Every table row has a test above, and every test a row.
        #[test]
        fn every_row_has_a_test() {
            let tested: HashSet<&str> = [$(stringify!($name)),*].into_iter().collect();
            let rows: HashSet<&str> = table().iter().map(|c| c.name).collect();
            assert_eq!(tested, rows);
        }
    };
}

op_tests!(
    neg,
    exp,
    log,
    sqrt,
    abs,
    relu,
    leaky_relu,
    gelu,
    tanh,
    sigmoid,
    softplus,
    powf,
    square,
    add_scalar,
    mul_scalar,
    div_scalar,
    clamp,
    add,
    sub,
    mul,
    div,
    maximum,
    minimum,
    pow,
    matmul,
    linear,
    linear_no_bias,
    reshape,
    squeeze_unsqueeze,
    flatten,
    permute,
    transpose,
    broadcast_to,
    narrow,
    concat,
    stack,
    index_select,
    gather,
    where_cond,
    masked_fill,
    sum,
    sum_keepdim,
    sum_all,
    mean,
    max,
    max_noncontiguous,
    min,
    var,
    var_population,
    logsumexp,
    softmax,
    log_softmax,
    normalize,
    cross_entropy,
    conv2d,
    max_pool2d,
    avg_pool2d,
    global_avg_pool2d,
    batch_norm_train,
    batch_norm_eval,
    batch_norm_relu_train,
    batch_norm_relu_eval,
    similarity_lse,
    similarity_lse_stream_diagonal,
    similarity_lse_same_label,
    all_gather_rows,
    to_device,
    dropout,
);

/// Adding a primitive op to the engine without a table row that exercises it fails here.
#[test]
fn table_reaches_every_primitive() {
    let mut reached = HashSet::new();
    for case in table() {
        let mut rng = StdRng::seed_from_u64(1);
        let inputs: Vec<Tensor<f64>> = (case.inputs)(&mut rng)
            .into_iter()
            .map(|t| t.requires_grad_())
            .collect();
        let y = (case.f64)(&inputs).unwrap();
        reached.extend(y.graph_op_names());
    }
    let all: HashSet<&str> = PRIMITIVE_OPS.iter().copied().collect();
    let missing: Vec<_> = all.difference(&reached).collect();
    assert!(
        missing.is_empty(),
        "primitives without a gradient-check row: {missing:?}"
    );
}
