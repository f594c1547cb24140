//! CPU–GPU parity: every op of the op table (forward and backward, random shapes) and every
//! loss of `losses::registry` runs on the CPU and on the GPU, and the outputs and input
//! gradients must agree within f32 tolerances. On a machine without a usable GPU each test
//! prints `skipped <name>: <reason>` and passes.
#![cfg(feature = "cuda")]

use contrastive::losses::{self, Loss, LossInputs};
use contrastive::ops::similarity::{Exclude, SimilarityMode};
use contrastive::{BatchNormMode, Conv2dParams, Device, Result, RunningStats, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The GPU, or the reason there is none (printed as a skip).
fn gpu(test: &str) -> Option<Device> {
    let d = Device::Cuda(0);
    match d.check() {
        Ok(()) => Some(d),
        Err(e) => {
            println!("skipped {test}: {e}");
            None
        }
    }
}

type Inputs = fn(&mut StdRng) -> Vec<Tensor<f32>>;
type Body = fn(&[Tensor<f32>]) -> Result<Tensor<f32>>;

fn randn(rng: &mut StdRng, dims: &[usize]) -> Tensor<f32> {
    Tensor::randn(dims.to_vec(), rng)
}
/// Distinct values (no ties for max and pooling; away from the kinks of relu/abs/clamp).
fn distinct(rng: &mut StdRng, dims: &[usize]) -> Tensor<f32> {
    let n: usize = dims.iter().product();
    let mut v: Vec<f64> = (0..n)
        .map(|i| (i as f64 - n as f64 / 2.0) * 0.013 + 0.0037)
        .collect();
    for i in (1..n).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
    Tensor::from_f64s(&v, dims.to_vec()).unwrap()
}
fn positive(rng: &mut StdRng, dims: &[usize]) -> Tensor<f32> {
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(0.5..2.0)).collect();
    Tensor::from_f64s(&v, dims.to_vec()).unwrap()
}
fn dims(rng: &mut StdRng, rank: usize) -> Vec<usize> {
    (0..rank).map(|_| rng.random_range(1..=5)).collect()
}
fn any3(r: &mut StdRng) -> Vec<Tensor<f32>> {
    let d = dims(r, 3);
    vec![randn(r, &d)]
}
fn any2(r: &mut StdRng) -> Vec<Tensor<f32>> {
    let d = dims(r, 2);
    vec![randn(r, &d)]
}
fn pos3(r: &mut StdRng) -> Vec<Tensor<f32>> {
    let d = dims(r, 3);
    vec![positive(r, &d)]
}
fn dist3(r: &mut StdRng) -> Vec<Tensor<f32>> {
    let d = dims(r, 3);
    vec![distinct(r, &d)]
}

/// Every op of the op table with an input generator (tests/ops_gradcheck.rs has the f64
/// gradient checks; here the same ops run on both devices).
fn cases() -> Vec<(&'static str, Inputs, Body)> {
    vec![
        ("neg", any3, |x| Ok(x[0].neg())),
        ("exp", any3, |x| Ok(x[0].exp())),
        ("log", pos3, |x| Ok(x[0].log())),
        ("sqrt", pos3, |x| Ok(x[0].sqrt())),
        ("abs", dist3, |x| Ok(x[0].abs())),
        ("relu", dist3, |x| Ok(x[0].relu())),
        ("leaky_relu", dist3, |x| Ok(x[0].leaky_relu(0.1))),
        ("gelu", any3, |x| Ok(x[0].gelu())),
        ("tanh", any3, |x| Ok(x[0].tanh())),
        ("sigmoid", any3, |x| Ok(x[0].sigmoid())),
        ("softplus", any3, |x| Ok(x[0].softplus())),
        ("powf", pos3, |x| Ok(x[0].powf(1.7))),
        ("add_scalar", any2, |x| Ok(x[0].add_scalar(0.3))),
        ("mul_scalar", any2, |x| Ok(x[0].mul_scalar(-1.5))),
        ("clamp", dist3, |x| Ok(x[0].clamp(-0.05, 0.05))),
        ("add", broadcast_pair, |x| x[0].add(&x[1])),
        ("sub", broadcast_pair, |x| x[0].sub(&x[1])),
        ("mul", broadcast_pair, |x| x[0].mul(&x[1])),
        (
            "div",
            |r| vec![randn(r, &[3, 4]), positive(r, &[4])],
            |x| x[0].div(&x[1]),
        ),
        (
            "maximum",
            |r| vec![distinct(r, &[3, 4]), distinct(r, &[1, 4])],
            |x| x[0].maximum(&x[1]),
        ),
        (
            "minimum",
            |r| vec![distinct(r, &[3, 4]), distinct(r, &[3, 1])],
            |x| x[0].minimum(&x[1]),
        ),
        (
            "pow",
            |r| vec![positive(r, &[2, 3]), randn(r, &[3])],
            |x| x[0].pow(&x[1]),
        ),
        (
            "matmul",
            |r| vec![randn(r, &[5, 7]), randn(r, &[7, 3])],
            |x| x[0].matmul(&x[1]),
        ),
        (
            "matmul_batched",
            |r| vec![randn(r, &[2, 1, 4, 3]), randn(r, &[3, 3, 5])],
            |x| x[0].matmul(&x[1]),
        ),
        (
            "linear",
            |r| vec![randn(r, &[6, 4]), randn(r, &[3, 4]), randn(r, &[3])],
            |x| x[0].linear(&x[1], Some(&x[2])),
        ),
        (
            "linear_no_bias",
            |r| vec![randn(r, &[2, 3, 4]), randn(r, &[5, 4])],
            |x| x[0].linear(&x[1], None),
        ),
        (
            "reshape",
            |r| vec![randn(r, &[2, 6])],
            |x| x[0].reshape(&[3, 4])?.tanh().pipe(),
        ),
        (
            "permute",
            |r| vec![randn(r, &[2, 3, 4])],
            |x| x[0].permute(&[2, 0, 1]),
        ),
        (
            "broadcast_to",
            |r| vec![randn(r, &[3, 1])],
            |x| x[0].broadcast_to(&[2, 3, 4]),
        ),
        (
            "narrow",
            |r| vec![randn(r, &[3, 5, 2])],
            |x| x[0].narrow(1, 1, 3),
        ),
        (
            "concat",
            |r| vec![randn(r, &[2, 3]), randn(r, &[2, 2])],
            |x| Tensor::concat(&[x[0].clone(), x[1].square()], 1),
        ),
        (
            "index_select",
            |r| vec![randn(r, &[3, 4, 2])],
            |x| x[0].index_select(1, &[3, 0, 3, 1]),
        ),
        (
            "gather",
            |r| vec![randn(r, &[3, 4])],
            |x| x[0].gather(1, &[0, 3, 3, 1, 2, 2], &[3, 2]),
        ),
        (
            "where_cond",
            |r| vec![randn(r, &[2, 3]), randn(r, &[2, 3])],
            |x| Tensor::where_cond(&[true, false, true, false, false, true], &x[0], &x[1]),
        ),
        (
            "masked_fill",
            |r| vec![randn(r, &[2, 2])],
            |x| x[0].masked_fill(&[true, false, false, true], 2.0),
        ),
        (
            "sum",
            |r| vec![randn(r, &[3, 4, 5])],
            |x| x[0].sum(&[0, 2], false),
        ),
        ("sum_all", |r| vec![randn(r, &[3, 70])], |x| x[0].sum_all()),
        (
            "mean",
            |r| vec![randn(r, &[3, 4, 5])],
            |x| x[0].mean(&[1], true),
        ),
        (
            "max",
            |r| vec![distinct(r, &[3, 4, 5])],
            |x| x[0].max(&[1], false),
        ),
        (
            "max_noncontiguous",
            |r| vec![distinct(r, &[3, 4, 5])],
            |x| x[0].max(&[0, 2], true),
        ),
        (
            "min",
            |r| vec![distinct(r, &[3, 4, 5])],
            |x| x[0].min(&[2], false),
        ),
        (
            "var",
            |r| vec![randn(r, &[4, 3, 5])],
            |x| x[0].var(&[0, 2], false, 1),
        ),
        (
            "logsumexp",
            |r| vec![randn(r, &[3, 6])],
            |x| x[0].logsumexp(1, false),
        ),
        ("softmax", |r| vec![randn(r, &[3, 6])], |x| x[0].softmax(-1)),
        (
            "log_softmax",
            |r| vec![randn(r, &[3, 6])],
            |x| x[0].log_softmax(0),
        ),
        (
            "normalize",
            |r| vec![randn(r, &[4, 5])],
            |x| x[0].normalize(1),
        ),
        (
            "cross_entropy",
            |r| vec![randn(r, &[4, 3])],
            |x| x[0].cross_entropy(&[0, 2, 1, 2]),
        ),
        (
            "conv2d",
            |r| {
                vec![
                    randn(r, &[2, 4, 7, 6]),
                    randn(r, &[6, 2, 3, 3]),
                    randn(r, &[6]),
                ]
            },
            |x| {
                let p = Conv2dParams {
                    stride: (2, 1),
                    padding: (1, 2),
                    dilation: (1, 2),
                    groups: 2,
                };
                x[0].conv2d(&x[1], Some(&x[2]), p)
            },
        ),
        (
            "conv2d_pointwise",
            |r| vec![randn(r, &[3, 4, 5, 5]), randn(r, &[2, 4, 1, 1])],
            |x| x[0].conv2d(&x[1], None, Conv2dParams::default()),
        ),
        (
            "max_pool2d",
            |r| vec![distinct(r, &[2, 3, 7, 6])],
            |x| x[0].max_pool2d(3, 2, 1),
        ),
        (
            "avg_pool2d",
            |r| vec![randn(r, &[2, 3, 7, 6])],
            |x| x[0].avg_pool2d(3, 2, 1),
        ),
        (
            "global_avg_pool2d",
            |r| vec![randn(r, &[2, 3, 4, 5])],
            |x| x[0].global_avg_pool2d(),
        ),
        (
            "batch_norm_train",
            |r| vec![randn(r, &[4, 3, 5, 2]), randn(r, &[3]), randn(r, &[3])],
            |x| {
                let mut stats = RunningStats::new(3);
                let mode = BatchNormMode {
                    training: true,
                    eps: 1e-5,
                };
                x[0].batch_norm(Some(&x[1]), Some(&x[2]), Some(&mut stats), mode)
            },
        ),
        (
            "batch_norm_eval",
            |r| vec![randn(r, &[4, 3]), randn(r, &[3]), randn(r, &[3])],
            |x| {
                let mut stats = RunningStats::new(3);
                stats.var = vec![0.5, 1.5, 2.0];
                let mode = BatchNormMode {
                    training: false,
                    eps: 1e-5,
                };
                x[0].batch_norm(Some(&x[1]), Some(&x[2]), Some(&mut stats), mode)
            },
        ),
        (
            "similarity_lse",
            |r| vec![randn(r, &[5, 3]), randn(r, &[7, 3])],
            |x| {
                x[0].similarity_logsumexp_with(
                    &x[1],
                    1.7,
                    Exclude::Nothing,
                    SimilarityMode::Materialize,
                )
            },
        ),
        (
            "similarity_lse_diagonal",
            |r| vec![randn(r, &[6, 3])],
            |x| {
                x[0].similarity_logsumexp_with(
                    &x[0],
                    2.0,
                    Exclude::Diagonal,
                    SimilarityMode::Stream,
                )
            },
        ),
        (
            "similarity_lse_same_label",
            |r| vec![randn(r, &[6, 3])],
            |x| {
                let labels: Vec<i64> = (0..6).map(|i| i % 2).collect();
                let ex = Exclude::SameLabel {
                    rows: labels.clone(),
                    cols: labels,
                };
                x[0].similarity_logsumexp_with(&x[0].tanh(), 0.5, ex, SimilarityMode::Stream)
            },
        ),
        (
            "all_gather_rows",
            |r| vec![randn(r, &[3, 2])],
            |x| x[0].all_gather_rows(&contrastive::distributed::solo()),
        ),
        (
            "to_device",
            |r| vec![randn(r, &[3, 2])],
            |x| x[0].to_device(&Device::Cpu)?.tanh().pipe(),
        ),
    ]
}

fn broadcast_pair(r: &mut StdRng) -> Vec<Tensor<f32>> {
    vec![randn(r, &[2, 3, 4]), randn(r, &[3, 1])]
}

trait Pipe: Sized {
    fn pipe(self) -> Result<Self> {
        Ok(self)
    }
}
impl Pipe for Tensor<f32> {}

/// Runs `f` on `inputs` placed on `device`: the output and every input's gradient (on the
/// host) for the cotangent `ct`.
fn run_on(
    device: Device,
    inputs: &[Tensor<f32>],
    ct_seed: u64,
    f: Body,
) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
    let xs: Vec<Tensor<f32>> = inputs
        .iter()
        .map(|t| Ok(t.to_device(&device)?.requires_grad_()))
        .collect::<Result<_>>()?;
    let y = f(&xs)?;
    let mut rng = StdRng::seed_from_u64(ct_seed);
    let ct = Tensor::<f32>::randn(y.shape().clone(), &mut rng).to_device(&y.device())?;
    let grads = y.backward_with(&ct)?;
    let host = |t: &Tensor<f32>| t.to_device(&Device::Cpu).map(|t| t.to_vec());
    let gs = xs
        .iter()
        .map(|x| host(&grads.get_or_zeros(x)))
        .collect::<Result<Vec<_>>>()?;
    Ok((host(&y)?, gs))
}

/// Relative 1e-4 with an absolute floor of 1e-5: f32 results whose sums run in another order
/// (GPU tree reductions, cuBLAS blocking) differ by a few ulps times the conditioning of these
/// small ops.
fn close(what: &str, a: &[f32], b: &[f32]) -> std::result::Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{what}: {} vs {} values", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let ok = (x - y).abs() <= 1e-5 + 1e-4 * x.abs().max(y.abs()) || (x.is_nan() && y.is_nan());
        if !ok {
            return Err(format!("{what}[{i}]: cpu {x} vs gpu {y}"));
        }
    }
    Ok(())
}

fn compare(
    device: Device,
    name: &str,
    inputs: &[Tensor<f32>],
    f: Body,
) -> std::result::Result<(), String> {
    let (y_cpu, g_cpu) =
        run_on(Device::Cpu, inputs, 9, f).map_err(|e| format!("{name} cpu: {e}"))?;
    let (y_gpu, g_gpu) = run_on(device, inputs, 9, f).map_err(|e| format!("{name} gpu: {e}"))?;
    close(&format!("{name} output"), &y_cpu, &y_gpu)?;
    for (i, (a, b)) in g_cpu.iter().zip(&g_gpu).enumerate() {
        close(&format!("{name} gradient {i}"), a, b)?;
    }
    Ok(())
}

#[test]
fn every_op_matches_the_cpu_forward_and_backward() {
    let Some(device) = gpu("every_op_matches_the_cpu_forward_and_backward") else {
        return;
    };
    let mut failures = Vec::new();
    for (name, make, f) in cases() {
        for seed in 0..4 {
            let inputs = make(&mut StdRng::seed_from_u64(seed));
            let before = contrastive::backend::cuda::implicit_host_copies();
            if let Err(e) = compare(device, name, &inputs, f) {
                failures.push(e);
                break;
            }
            let copies = contrastive::backend::cuda::implicit_host_copies() - before;
            if copies > 0 {
                failures.push(format!(
                    "{name}: {copies} implicit host copies of GPU tensors"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_loss_matches_the_cpu_forward_and_backward() {
    let Some(device) = gpu("every_loss_matches_the_cpu_forward_and_backward") else {
        return;
    };
    let mut failures = Vec::new();
    for &name in losses::NAMES {
        let loss = Loss::by_name(name).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let features = Tensor::<f32>::randn([8, 2, 5], &mut rng);
        let queue = Tensor::<f32>::randn([6, 5], &mut rng);
        let labels: Vec<i64> = (0..8).map(|i| i % 3).collect();
        let types: Vec<i64> = (0..8).map(|i| i % 2).collect();
        let run = |device: Device| -> Result<(Vec<f32>, Vec<f32>)> {
            let f = features.to_device(&device)?.requires_grad_();
            let q = queue.to_device(&device)?;
            let (l, t, qu) = loss.reads();
            let mut inputs = LossInputs::new(&f);
            if l {
                inputs = inputs.with_labels(&labels);
            }
            if t {
                inputs = inputs.with_types(&types);
            }
            if qu {
                inputs = inputs.with_queue(&q);
            }
            let value = loss.compute(&inputs)?;
            let g = value.backward()?.get_or_zeros(&f);
            Ok((
                value.to_device(&Device::Cpu)?.to_vec(),
                g.to_device(&Device::Cpu)?.to_vec(),
            ))
        };
        let result = run(Device::Cpu).and_then(|cpu| Ok((cpu, run(device)?)));
        match result {
            Ok(((y0, g0), (y1, g1))) => {
                if let Err(e) = close(&format!("{name} value"), &y0, &y1)
                    .and_then(|_| close(&format!("{name} gradient"), &g0, &g1))
                {
                    failures.push(e);
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_module_trains_on_the_gpu_like_on_the_cpu() {
    use contrastive::nn::{Activation, Mlp, Mode, Module};
    use contrastive::optim::{Optimizer, Sgd};
    let Some(device) = gpu("a_module_trains_on_the_gpu_like_on_the_cpu") else {
        return;
    };
    let step = |device: Device| -> Result<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(1);
        let mut model = Mlp::new::<f32>(&[6, 8, 4], Activation::Relu, false, &mut rng)?;
        model.to_device(&device)?;
        let x = Tensor::<f32>::randn([10, 6], &mut rng).to_device(&device)?;
        let mut opt = Sgd::new(0.1).with_momentum(0.9);
        for _ in 0..3 {
            let loss = model.forward(&x, Mode::Train)?.square().mean_all()?;
            let grads = loss.backward()?;
            opt.step(&mut model.parameters_mut(), &grads)?;
        }
        model.to_device(&Device::Cpu)?;
        Ok(model
            .named_parameters()
            .iter()
            .flat_map(|(_, t)| t.to_vec())
            .collect())
    };
    let cpu = step(Device::Cpu).unwrap();
    let gpu = step(device).unwrap();
    close("parameters after 3 SGD steps", &cpu, &gpu).unwrap();
}
