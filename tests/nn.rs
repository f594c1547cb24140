//! The layers and models of `contrastive::nn`: forward shapes and hand-computed values, f64
//! gradient checks of every parametrised layer, initialisation statistics, batch norm in
//! training and evaluation, naming; save/load in the safetensors format and `load_state` are in
//! `nn/persistence.rs`.

#[path = "nn/persistence.rs"]
mod persistence;

use contrastive::nn::{
    Activation, BatchNorm, Conv2d, ConvEncoder, Dropout, EncoderHead, Linear, Mlp, Mode, Module,
    ProjectionHead, ResidualBlock, init,
};
use contrastive::{Conv2dParams, Error, GradCheckOptions, Result, Tensor, check_gradients};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A scratch path unique to this process and test.
fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("contrastive-nn-{}-{name}", std::process::id()))
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

// ---------------------------------------------------------------------------------------------
// Forward passes
// ---------------------------------------------------------------------------------------------

#[test]
fn linear_matches_hand_computed_values() -> Result<()> {
    let w = Tensor::<f64>::from_f64s(&[1., 2., 3., 4., 5., 6.], [3, 2])?;
    let b = Tensor::from_f64s(&[0.5, -0.5, 1.0], [3])?;
    let mut lin = Linear::from_parts(w, Some(b))?;
    let y = lin.forward(&Tensor::from_f64s(&[1.0, -1.0], [1, 2])?, Mode::Eval)?;
    // y = x·Wᵀ + b = [1−2+0.5, 3−4−0.5, 5−6+1]
    assert_eq!(y.to_f64_vec(), [-0.5, -1.5, 0.0]);
    // Any leading axes are kept: (2, 4, 2) → (2, 4, 3).
    assert_eq!(
        lin.forward(&Tensor::zeros([2, 4, 2]), Mode::Eval)?.dims(),
        &[2, 4, 3]
    );
    assert!(matches!(
        lin.forward(&Tensor::zeros([4, 3]), Mode::Eval),
        Err(Error::ShapeMismatch { .. })
    ));
    Ok(())
}

#[test]
fn forward_shapes_of_layers_and_models() -> Result<()> {
    let mut r = rng(0);
    let x = Tensor::<f32>::randn([2, 3, 32, 32], &mut r);
    let mut conv = Conv2d::<f32>::new(3, 8, 3, Conv2dParams::new(2, 1), true, &mut r)?;
    assert_eq!(conv.forward(&x, Mode::Train)?.dims(), &[2, 8, 16, 16]);
    let mut enc = ConvEncoder::simple::<f32>(&[32, 64, 128], 3, &mut r)?;
    assert_eq!(enc.forward(&x, Mode::Train)?.dims(), &[2, 128]);
    assert_eq!(enc.forward(&x, Mode::Eval)?.dims(), &[2, 128]);
    let mut resnet = ConvEncoder::resnet::<f32>(3, &[8, 16], 1, &mut r)?;
    assert_eq!(resnet.forward(&x, Mode::Train)?.dims(), &[2, 16]);
    let mut model = EncoderHead::new(
        Mlp::new::<f32>(&[64, 32, 32], Activation::Relu, true, &mut r)?,
        ProjectionHead::mlp(&[32, 16, 8], &mut r)?,
    );
    let (h, z) = model.encode_and_project(&Tensor::randn([5, 64], &mut r), Mode::Train)?;
    assert_eq!((h.dims(), z.dims()), (&[5, 32][..], &[5, 8][..]));
    assert_eq!(
        model
            .forward(&Tensor::randn([5, 64], &mut r), Mode::Eval)?
            .dims(),
        &[5, 8]
    );
    Ok(())
}

#[test]
fn cnn_step_encoder_is_expressed_exactly() -> Result<()> {
    // conv3×3(3→32)→BN→ReLU→maxpool2 → conv3×3(32→64)→BN→ReLU→maxpool2 →
    // conv3×3(64→128)→BN→ReLU→global average pool, as in BENCHMARKS.md.
    let enc = ConvEncoder::simple::<f32>(&[32, 64, 128], 3, &mut rng(0))?;
    let kinds: Vec<String> = enc
        .layers()
        .iter()
        .map(|l| {
            format!("{l:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let expected = [
        "Conv2d",
        "BatchNorm",
        "Relu",
        "MaxPool2d",
        "Conv2d",
        "BatchNorm",
        "Relu",
        "MaxPool2d",
        "Conv2d",
        "BatchNorm",
        "Relu",
        "GlobalAvgPool",
    ];
    assert_eq!(kinds, expected);
    let shapes: BTreeMap<String, Vec<usize>> = enc
        .named_parameters()
        .into_iter()
        .map(|(n, t)| (n, t.dims().to_vec()))
        .collect();
    assert_eq!(shapes["layers.0.weight"], [32, 3, 3, 3]);
    assert_eq!(shapes["layers.4.weight"], [64, 32, 3, 3]);
    assert_eq!(shapes["layers.8.weight"], [128, 64, 3, 3]);
    assert_eq!(shapes["layers.9.bias"], [128]);
    // PyTorch's count for the same modules: 896 + 64 + 18496 + 128 + 73856 + 256.
    assert_eq!(enc.parameter_count(), 93_696);
    Ok(())
}

/// `Sequential` lets batch norm apply the ReLU after it (one fused op, no `relu` node in the
/// graph); the result and every gradient are those of running the layers one by one.
#[test]
fn sequential_fuses_batch_norm_and_relu_without_changing_results() -> Result<()> {
    for mode in [Mode::Train, Mode::Eval] {
        let mut fused = ConvEncoder::simple::<f64>(&[4, 6], 2, &mut rng(3))?;
        let mut plain = ConvEncoder::simple::<f64>(&[4, 6], 2, &mut rng(3))?;
        let x = Tensor::<f64>::randn([3, 2, 6, 6], &mut rng(4)).requires_grad_();
        let y1 = fused.forward(&x, mode)?;
        let mut y2 = x.clone();
        for layer in plain.layers_mut() {
            y2 = layer.forward(&y2, mode)?;
        }
        assert_eq!(y1.data(), y2.data(), "{mode:?}");
        let names = y1.graph_op_names();
        assert!(
            !names.contains("relu") && names.contains("batch_norm"),
            "{names:?}"
        );
        assert!(y2.graph_op_names().contains("relu"));
        let (g1, g2) = (y1.sum_all()?.backward()?, y2.sum_all()?.backward()?);
        assert_eq!(g1.get(&x).unwrap().data(), g2.get(&x).unwrap().data());
        for ((n, p), (_, q)) in fused
            .named_parameters()
            .iter()
            .zip(plain.named_parameters())
        {
            assert_eq!(g1.get(p).unwrap().data(), g2.get(&q).unwrap().data(), "{n}");
        }
        for ((n, a), (_, b)) in fused.named_buffers().iter().zip(plain.named_buffers()) {
            assert_eq!(a.data(), b.data(), "{n}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Gradients (f64, finite differences)
// ---------------------------------------------------------------------------------------------

/// Gradient-checks `module(x)` with respect to `x` and every parameter: the module is rebuilt
/// at each evaluation with its parameters replaced by the checker's inputs.
fn check_module<M: Module<f64>>(build: impl Fn() -> Result<M>, x: Tensor<f64>) -> Result<()> {
    let mut inputs = vec![x];
    inputs.extend(
        build()?
            .named_parameters()
            .into_iter()
            .map(|(_, t)| t.detach()),
    );
    let f = |xs: &[Tensor<f64>]| {
        let mut m = build()?;
        let mut i = 1;
        m.visit_parameters_mut("", &mut |_, p| {
            *p = xs[i].clone();
            i += 1;
        });
        m.forward(&xs[0], Mode::Train)
    };
    let report = check_gradients(f, &inputs, &GradCheckOptions::default())?;
    assert!(report.passed, "{report}");
    Ok(())
}

#[test]
fn linear_gradients() -> Result<()> {
    let x = Tensor::randn([4, 3], &mut rng(1));
    check_module(|| Linear::<f64>::new(3, 5, true, &mut rng(2)), x)
}

#[test]
fn conv2d_gradients_with_stride_and_padding() -> Result<()> {
    let x = Tensor::randn([2, 2, 5, 5], &mut rng(3));
    check_module(
        || Conv2d::<f64>::new(2, 3, 3, Conv2dParams::new(2, 1), true, &mut rng(4)),
        x,
    )
}

#[test]
fn mlp_with_batch_norm_gradients() -> Result<()> {
    // tanh keeps the function smooth; batch norm in training mode couples the rows.
    let x = Tensor::randn([5, 3], &mut rng(5));
    check_module(
        || Mlp::new::<f64>(&[3, 4, 2], Activation::Tanh, true, &mut rng(6)),
        x,
    )
}

#[test]
fn residual_block_gradients_with_projection_shortcut() -> Result<()> {
    let x = Tensor::randn([2, 2, 4, 4], &mut rng(7));
    check_module(|| ResidualBlock::<f64>::new(2, 3, 2, &mut rng(8)), x)
}

// ---------------------------------------------------------------------------------------------
// Initialisation
// ---------------------------------------------------------------------------------------------

/// (max |v|, mean of v²) of a tensor's values.
fn spread(t: &Tensor<f64>) -> (f64, f64) {
    let v = t.to_f64_vec();
    let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    (max, v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64)
}

#[test]
fn default_init_is_uniform_within_one_over_sqrt_fan_in() -> Result<()> {
    let lin = Linear::<f64>::new(100, 200, true, &mut rng(9))?;
    let bound = 0.1; // 1/√100
    let (max, second) = spread(&lin.weight);
    // 20000 draws: the largest lies within 1% of the bound (a miss has probability ≈ e⁻¹⁰⁰);
    // E[v²] = bound²/3, and its estimate has a relative standard error of 0.6%, so 3% is 5σ.
    assert!(max <= bound && max > 0.99 * bound, "max {max}");
    assert!(
        (second / (bound * bound / 3.0) - 1.0).abs() < 0.03,
        "E[w²] {second}"
    );
    let (bmax, _) = spread(lin.bias.as_ref().expect("bias requested"));
    assert!(bmax <= bound);
    // Conv2d: fan_in = C·k² = 16·9.
    let conv = Conv2d::<f64>::new(16, 8, 3, Conv2dParams::new(1, 1), true, &mut rng(10))?;
    let bound = 1.0 / 144f64.sqrt();
    let (max, second) = spread(&conv.weight);
    // 1152 draws: relative standard error of E[w²] is 2.6%, so 12% is over 4σ.
    assert!(max <= bound && max > 0.95 * bound, "max {max}");
    assert!(
        (second / (bound * bound / 3.0) - 1.0).abs() < 0.12,
        "E[w²] {second}"
    );
    // Seeded: the same seed gives the same weights, another seed others.
    let again = Linear::<f64>::new(100, 200, true, &mut rng(9))?;
    assert_eq!(lin.weight.to_vec(), again.weight.to_vec());
    let other = Linear::<f64>::new(100, 200, true, &mut rng(11))?;
    assert_ne!(lin.weight.to_vec(), other.weight.to_vec());
    assert!(lin.weight.requires_grad() && !lin.weight.to_vec().is_empty());
    Ok(())
}

#[test]
fn xavier_and_kaiming_normal_statistics() -> Result<()> {
    let (fan_in, fan_out) = init::fans(&[8, 4, 3, 3])?;
    assert_eq!((fan_in, fan_out), (36, 72));
    assert!(init::fans(&[5]).is_err());
    let x = init::xavier_uniform::<f64>(&[200, 100], 1.0, &mut rng(12))?;
    let bound = (6.0f64 / 300.0).sqrt();
    let (max, second) = spread(&x);
    // As above: 20000 uniform draws, 5σ on the second moment.
    assert!(max <= bound && max > 0.99 * bound);
    assert!((second / (bound * bound / 3.0) - 1.0).abs() < 0.03);
    let k = init::kaiming_normal::<f64>(&[200, 100], 0.0, &mut rng(13))?;
    let (_, second) = spread(&k);
    // σ² = 2/fan_in; the estimate from 20000 normal draws has relative error 1%, so 5% is 5σ.
    assert!((second / 0.02 - 1.0).abs() < 0.05, "E[w²] {second}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Batch norm, dropout, naming
// ---------------------------------------------------------------------------------------------

#[test]
fn batch_norm_train_uses_batch_statistics_and_eval_running_ones() -> Result<()> {
    let mut bn = BatchNorm::<f64>::new_1d(2)?;
    let x = Tensor::from_f64s(&[1., 10., 2., 20., 3., 30., 4., 40.], [4, 2])?;
    let y = bn.forward(&x, Mode::Train)?.to_f64_vec();
    // Channel 0: mean 2.5, biased variance 1.25; channel 1: mean 25, variance 125.
    let (s0, s1) = ((1.25f64 + 1e-5).sqrt(), (125f64 + 1e-5).sqrt());
    let expected: Vec<f64> = [1., 2., 3., 4.]
        .iter()
        .flat_map(|&v| [(v - 2.5) / s0, (10.0 * v - 25.0) / s1])
        .collect();
    // A handful of f64 operations per value.
    assert!(close(&y, &expected, 1e-12), "{y:?}");
    // Running statistics: 0.9·init + 0.1·batch, with the unbiased variance (5/3 and 500/3).
    let rv = [0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 500.0 / 3.0];
    assert!(close(&bn.running_mean.to_f64_vec(), &[0.25, 2.5], 1e-12));
    assert!(close(&bn.running_var.to_f64_vec(), &rv, 1e-12));
    assert_eq!(bn.num_batches_tracked.item()?, 1.0);
    let y = bn.forward(&x, Mode::Eval)?.to_f64_vec();
    let expected: Vec<f64> = [1., 2., 3., 4.]
        .iter()
        .flat_map(|&v| {
            [
                (v - 0.25) / (rv[0] + 1e-5).sqrt(),
                (10.0 * v - 2.5) / (rv[1] + 1e-5).sqrt(),
            ]
        })
        .collect();
    assert!(close(&y, &expected, 1e-12), "{y:?}");
    // Evaluation leaves the running statistics alone.
    assert!(close(&bn.running_mean.to_f64_vec(), &[0.25, 2.5], 1e-12));
    assert_eq!(bn.num_batches_tracked.item()?, 1.0);
    let mut bn2 = BatchNorm::<f64>::new_2d(2)?;
    assert!(matches!(
        bn2.forward(&x, Mode::Train),
        Err(Error::BadRank { .. })
    ));
    Ok(())
}

#[test]
fn dropout_is_seeded_and_off_in_evaluation() -> Result<()> {
    let x = Tensor::<f64>::ones([1000]);
    let (mut a, mut b) = (Dropout::new(0.5, 7)?, Dropout::new(0.5, 7)?);
    let ya = a.forward(&x, Mode::Train)?.to_f64_vec();
    assert_eq!(ya, b.forward(&x, Mode::Train)?.to_f64_vec());
    assert!(ya.iter().all(|&v| v == 0.0 || v == 2.0));
    let zeros = ya.iter().filter(|&&v| v == 0.0).count();
    // Binomial(1000, 0.5): standard deviation 16, so ±100 is over 6σ.
    assert!((400..600).contains(&zeros), "{zeros} zeros");
    assert_eq!(a.forward(&x, Mode::Eval)?.to_f64_vec(), x.to_f64_vec());
    assert!(Dropout::new(1.5, 0).is_err());
    Ok(())
}

fn names<T: contrastive::Float>(list: Vec<(String, Tensor<T>)>) -> Vec<String> {
    list.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn sequential_and_model_naming() -> Result<()> {
    let mut r = rng(0);
    let mlp = Mlp::new::<f32>(&[4, 8, 2], Activation::Relu, true, &mut r)?;
    assert_eq!(
        names(mlp.named_parameters()),
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias",
            "layers.3.weight",
            "layers.3.bias"
        ]
    );
    assert_eq!(
        names(mlp.named_buffers()),
        [
            "layers.1.running_mean",
            "layers.1.running_var",
            "layers.1.num_batches_tracked"
        ]
    );
    // 4·8 + 8 (linear) + 8 + 8 (γ, β) + 8·2 + 2 (linear).
    assert_eq!(mlp.parameter_count(), 74);
    let model = EncoderHead::new(mlp, ProjectionHead::linear::<f32>(2, 3, &mut r)?);
    let state = names(model.state_tensors());
    assert_eq!(state.len(), 11);
    assert!(state.windows(2).all(|w| w[0] < w[1]), "sorted: {state:?}");
    assert!(state.contains(&"encoder.layers.1.running_var".to_string()));
    assert!(state.contains(&"head.layers.0.weight".to_string()));
    let resnet = ConvEncoder::resnet::<f32>(3, &[4, 8], 1, &mut r)?;
    let n = names(resnet.named_parameters());
    for expected in [
        "layers.0.weight",
        "layers.3.conv1.weight",
        "layers.4.downsample.0.weight",
        "layers.4.downsample.1.bias",
    ] {
        assert!(n.contains(&expected.to_string()), "{expected} in {n:?}");
    }
    assert!(
        !n.iter().any(|s| s.starts_with("layers.3.downsample")),
        "identity shortcut"
    );
    Ok(())
}
