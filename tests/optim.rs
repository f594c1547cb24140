//! The optimisers of `contrastive::optim` against their published update rules: two steps on
//! the quadratic `L(x) = ½·Σ cᵢ·xᵢ²` with `c = (2, 0.5)` from `x = (1, −2)` (gradient
//! `(2x₀, 0.5x₁)`, first gradient `(2, −1)`), with every expected value worked out from the
//! formulas (by hand for SGD and LARS-excluded parameters; with a calculator for the square
//! roots of Adam and LARS); then convergence, schedules, clipping and state round trips.

use contrastive::nn::{Activation, Mlp, Mode, Module, load_safetensors, save_safetensors};
use contrastive::optim::{
    Adam, Constant, Lars, LinearWarmupCosine, LrSchedule, Optimizer, Sgd, clip_grad_norm,
};
use contrastive::{Error, Result, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;

/// Expected values are exact decimal results of a few f64 operations per step.
const TOL: f64 = 1e-12;

/// `½·Σ cᵢ·xᵢ²` over the flattened parameter, with `c = (2, 0.5)`.
fn quadratic(x: &Tensor<f64>) -> Result<Tensor<f64>> {
    let c = Tensor::from_f64s(&[2.0, 0.5], x.dims())?;
    Ok(x.square().mul(&c)?.sum_all()?.mul_scalar(0.5))
}

/// Runs two steps from `x = (1, −2)` for each named parameter of shape `dims` (numel 2) and
/// returns the values after each step, per parameter.
fn two_steps(
    opt: &mut dyn Optimizer<f64>,
    specs: &[(&str, &[usize])],
) -> Result<Vec<[Vec<f64>; 2]>> {
    let mut params: Vec<(String, Tensor<f64>)> = specs
        .iter()
        .map(|(n, d)| {
            Ok((
                n.to_string(),
                Tensor::from_f64s(&[1.0, -2.0], *d)?.requires_grad_(),
            ))
        })
        .collect::<Result<_>>()?;
    let mut after = vec![Vec::new(); specs.len()];
    for _ in 0..2 {
        let mut loss = Tensor::scalar(0.0);
        for (_, p) in &params {
            loss = loss.add(&quadratic(p)?)?;
        }
        let grads = loss.backward()?;
        drop(loss);
        let mut refs: Vec<(String, &mut Tensor<f64>)> =
            params.iter_mut().map(|(n, p)| (n.clone(), p)).collect();
        opt.step(&mut refs, &grads)?;
        for (i, (_, p)) in params.iter().enumerate() {
            after[i].push(p.to_f64_vec());
        }
    }
    Ok(after
        .into_iter()
        .map(|v| [v[0].clone(), v[1].clone()])
        .collect())
}

fn assert_steps(got: &[Vec<f64>; 2], expected: [[f64; 2]; 2]) {
    for (g, e) in got.iter().zip(expected) {
        assert!(
            g.iter().zip(e).all(|(a, b)| (a - b).abs() <= TOL),
            "got {got:?}, expected {expected:?}"
        );
    }
}

#[test]
fn sgd_plain_momentum_nesterov_and_weight_decay() -> Result<()> {
    // x₁ = x − 0.1·g: (0.8, −1.9); g = (1.6, −0.95): x₂ = (0.64, −1.805).
    let got = two_steps(&mut Sgd::new(0.1), &[("w", &[2])])?;
    assert_steps(&got[0], [[0.8, -1.9], [0.64, -1.805]]);
    // Momentum 0.9: b₁ = g = (2, −1), x₁ = (0.8, −1.9); b₂ = 0.9·b₁ + (1.6, −0.95) = (3.4, −1.85),
    // x₂ = (0.46, −1.715).
    let got = two_steps(&mut Sgd::new(0.1).with_momentum(0.9), &[("w", &[2])])?;
    assert_steps(&got[0], [[0.8, -1.9], [0.46, -1.715]]);
    // Nesterov: d₁ = g + 0.9·b₁ = (3.8, −1.9), x₁ = (0.62, −1.81); g₂ = (1.24, −0.905),
    // b₂ = (3.04, −1.805), d₂ = g₂ + 0.9·b₂ = (3.976, −2.5295), x₂ = (0.2224, −1.55705).
    let mut opt = Sgd::new(0.1).with_momentum(0.9).with_nesterov(true);
    assert_steps(
        &two_steps(&mut opt, &[("w", &[2])])?[0],
        [[0.62, -1.81], [0.2224, -1.55705]],
    );
    // Weight decay 0.1 with momentum: d₁ = (2, −1) + 0.1·(1, −2) = (2.1, −1.2), x₁ = (0.79, −1.88);
    // d₂ = (1.58, −0.94) + 0.1·x₁ = (1.659, −1.128), b₂ = 0.9·d₁ + d₂ = (3.549, −2.208),
    // x₂ = (0.4351, −1.6592).
    let mut opt = Sgd::new(0.1).with_momentum(0.9).with_weight_decay(0.1);
    assert_steps(
        &two_steps(&mut opt, &[("w", &[2])])?[0],
        [[0.79, -1.88], [0.4351, -1.6592]],
    );
    // Dampening 0.5: b₂ = 0.9·(2, −1) + 0.5·(1.6, −0.95) = (2.6, −1.375), x₂ = (0.54, −1.7625).
    let mut opt = Sgd::new(0.1).with_momentum(0.9).with_dampening(0.5);
    assert_steps(
        &two_steps(&mut opt, &[("w", &[2])])?[0],
        [[0.8, -1.9], [0.54, -1.7625]],
    );
    Ok(())
}

#[test]
fn adam_and_adamw_follow_pytorch() -> Result<()> {
    // Step 1: m̂ = g, v̂ = g², so x₁ = x − 0.1·g/(|g| + 1e-8): (0.9 + 5e-10, −1.9 − 1e-9).
    // Step 2: g = (1.8, −0.95), m = (0.36, −0.185), v = (0.007236, 0.0019015),
    // x₂ = x₁ − 0.1/0.19 · m/(√v/√0.001999 + 1e-8).
    let got = two_steps(&mut Adam::new(0.1), &[("w", &[2])])?;
    assert_steps(
        &got[0],
        [
            [0.9000000005, -1.900000001],
            [0.8004122286917928, -1.8001664876318761],
        ],
    );
    // L2 decay 0.1 enters the gradient: g₁ = (2.1, −1.2); the first step is still ≈ lr·sign.
    let got = two_steps(&mut Adam::new(0.1).with_weight_decay(0.1), &[("w", &[2])])?;
    assert_steps(
        &got[0],
        [
            [0.9000000004761904, -1.9000000008333333],
            [0.8004122286431954, -1.8001664872949483],
        ],
    );
    // AdamW: x·(1 − 0.1·0.1) first, then the Adam step with the gradient at the old x.
    let got = two_steps(&mut Adam::adamw(0.1).with_weight_decay(0.1), &[("w", &[2])])?;
    assert_steps(
        &got[0],
        [
            [0.8900000004999999, -1.880000001],
            [0.7815718559365048, -1.7614089520966298],
        ],
    );
    assert_eq!(
        Adam::<f32>::adamw(1e-3).weight_decay,
        0.01,
        "PyTorch's AdamW default"
    );
    Ok(())
}

#[test]
fn lars_adapts_weights_and_excludes_biases() -> Result<()> {
    // A (1, 2) weight is adapted and decayed, a (2) bias is not.
    // Weight, no decay: ‖x‖ = ‖g‖ = √5, so r = 0.001 and x₁ = x − 1e-4·g = (0.9998, −1.9999);
    // step 2 uses r = 0.001·‖x₁‖/‖g₂‖ and v₂ = 0.9·v₁ + 0.1·r·g₂.
    let got = two_steps(&mut Lars::new(0.1), &[("layer.weight", &[1, 2])])?;
    assert_steps(
        &got[0],
        [[0.9998, -1.9999], [0.9994200220005401, -1.99970999599892]],
    );
    let mut opt = Lars::new(0.1).with_weight_decay(0.01);
    let got = two_steps(&mut opt, &[("layer.weight", &[1, 2]), ("layer.bias", &[2])])?;
    assert_steps(
        &got[0],
        [
            [0.9998005987705404, -1.9998988113163936],
            [0.9994217585345185, -1.9997065489735353],
        ],
    );
    // The bias: plain momentum from v = 0: v₁ = 0.1·(2, −1), x₁ = (0.8, −1.9);
    // v₂ = 0.9·v₁ + 0.1·(1.6, −0.95) = (0.34, −0.185), x₂ = (0.46, −1.715).
    assert_steps(&got[1], [[0.8, -1.9], [0.46, -1.715]]);
    let mut opt = Lars::new(0.1).with_weight_decay(0.01).with_nesterov(true);
    let got = two_steps(&mut opt, &[("layer.weight", &[1, 2])])?;
    assert_steps(
        &got[0],
        [
            [0.9996211376640267, -1.999807741501148],
            [0.9990808401147864, -1.9995335062882753],
        ],
    );
    Ok(())
}

#[test]
fn adam_minimises_a_quadratic() -> Result<()> {
    let target = Tensor::<f32>::from_f64s(&[3.0, -1.0, 0.5, 2.0], [4])?;
    let mut x = Tensor::<f32>::zeros([4]).requires_grad_();
    let mut opt = Adam::new(0.05);
    for _ in 0..500 {
        let grads = x.sub(&target)?.square().sum_all()?.backward()?;
        opt.step(&mut [("x".to_string(), &mut x)], &grads)?;
    }
    let err = x.sub(&target)?.abs().max(&[0], false)?.item()?;
    // Adam's steps shrink with the gradient; after 500 steps it sits well within 1e-2.
    assert!(err < 1e-2, "max error {err}");
    Ok(())
}

#[test]
fn warmup_cosine_schedule_values() -> Result<()> {
    let s = LinearWarmupCosine::new(1.0, 10, 110, 0.1)?;
    // Warm-up: base·(s+1)/W, reaching base at s = W − 1.
    assert!((s.lr(0) - 0.1).abs() < TOL);
    assert!((s.lr(4) - 0.5).abs() < TOL);
    assert!((s.lr(9) - 1.0).abs() < TOL);
    // Cosine: base at its start, the midpoint (base + final)/2 half way, final at the end.
    assert!((s.lr(10) - 1.0).abs() < TOL);
    assert!((s.lr(60) - 0.55).abs() < TOL);
    assert!(
        (s.lr(35) - (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos()))).abs() < TOL
    );
    assert!((s.lr(110) - 0.1).abs() < TOL && (s.lr(10_000) - 0.1).abs() < TOL);
    assert!(LinearWarmupCosine::new(1.0, 20, 10, 0.0).is_err());
    assert!(LinearWarmupCosine::new(f64::NAN, 0, 10, 0.0).is_err());
    let no_warmup = LinearWarmupCosine::new(2.0, 0, 4, 0.0)?;
    assert!((no_warmup.lr(0) - 2.0).abs() < TOL && (no_warmup.lr(2) - 1.0).abs() < TOL);
    assert_eq!(Constant(0.3).lr(123), 0.3);
    Ok(())
}

#[test]
fn clip_grad_norm_scales_by_the_global_norm() -> Result<()> {
    let mut a = Tensor::<f64>::zeros([2]).requires_grad_();
    let mut b = Tensor::<f64>::zeros([1]).requires_grad_();
    // Gradients (3, 4) and (12): global norm √(9 + 16 + 144) = 13.
    let loss = a
        .mul(&Tensor::from_f64s(&[3.0, 4.0], [2])?)?
        .sum_all()?
        .add(&b.mul_scalar(12.0).sum_all()?)?;
    let grads = loss.backward()?;
    let params = vec![("a".to_string(), &mut a), ("b".to_string(), &mut b)];
    let (clipped, norm) = clip_grad_norm(&params, &grads, 6.5)?;
    assert!((norm - 13.0).abs() < TOL);
    let scale = 6.5 / (13.0 + 1e-6); // torch.nn.utils.clip_grad_norm_'s coefficient
    let ga = contrastive::optim::GradientSource::gradient(&clipped, params[0].1)
        .expect("a has a gradient");
    assert!(
        ga.to_f64_vec()
            .iter()
            .zip([3.0 * scale, 4.0 * scale])
            .all(|(x, y)| (x - y).abs() < TOL)
    );
    // Below the threshold nothing changes.
    let (same, norm) = clip_grad_norm(&params, &grads, 100.0)?;
    assert!((norm - 13.0).abs() < TOL);
    let gb =
        contrastive::optim::GradientSource::gradient(&same, params[1].1).expect("b has a gradient");
    assert_eq!(gb.to_f64_vec(), [12.0]);
    assert!(clip_grad_norm(&params, &grads, 0.0).is_err());
    Ok(())
}

#[test]
fn optimizer_state_round_trips_through_safetensors() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(0);
    let x = Tensor::<f32>::randn([8, 3], &mut rng);
    let labels = [0, 1, 0, 1, 0, 1, 0, 1];
    let mut model = Mlp::new::<f32>(&[3, 5, 2], Activation::Relu, true, &mut rng)?;
    let mut opt = Adam::adamw(1e-2);
    let step = |model: &mut dyn Module<f32>, opt: &mut dyn Optimizer<f32>| -> Result<()> {
        let grads = model
            .forward(&x, Mode::Train)?
            .cross_entropy(&labels)?
            .backward()?;
        opt.step(&mut model.parameters_mut(), &grads)
    };
    step(&mut model, &mut opt)?;
    let state = opt.state_tensors();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"layers.0.weight.exp_avg") && names.contains(&"layers.3.bias.step"),
        "{names:?}"
    );
    assert_eq!(state.len(), 6 * 3);
    let path = std::env::temp_dir().join(format!(
        "contrastive-optim-{}.safetensors",
        std::process::id()
    ));
    let mut all = model.state_tensors();
    all.extend(state.into_iter().map(|(n, t)| (format!("optim.{n}"), t)));
    save_safetensors(&path, &all, &BTreeMap::new())?;
    let (loaded, _) = load_safetensors::<f32>(&path)?;
    std::fs::remove_file(&path).ok();
    let (optim, weights): (Vec<_>, Vec<_>) = loaded
        .into_iter()
        .partition(|(n, _)| n.starts_with("optim."));
    let optim: Vec<_> = optim
        .into_iter()
        .map(|(n, t)| (n["optim.".len()..].to_string(), t))
        .collect();
    // A resumed copy continues exactly as the original.
    let mut model2 = Mlp::new::<f32>(
        &[3, 5, 2],
        Activation::Relu,
        true,
        &mut StdRng::seed_from_u64(9),
    )?;
    model2.load_state(&weights)?;
    let mut opt2 = Adam::adamw(1e-2);
    opt2.load_state_tensors(&optim)?;
    step(&mut model, &mut opt)?;
    step(&mut model2, &mut opt2)?;
    for ((n, a), (_, b)) in model.state_tensors().iter().zip(model2.state_tensors()) {
        assert_eq!(a.to_vec(), b.to_vec(), "{n}");
    }
    let bad = vec![(
        "layers.0.weight.velocity".to_string(),
        Tensor::<f32>::zeros([5, 3]),
    )];
    assert!(opt2.load_state_tensors(&bad).is_err());
    let no_step = vec![
        ("w.exp_avg".to_string(), Tensor::zeros([2])),
        ("w.exp_avg_sq".to_string(), Tensor::zeros([2])),
    ];
    assert!(opt2.load_state_tensors(&no_step).is_err());
    Ok(())
}

#[test]
fn updates_shared_parameters_and_skips_those_without_gradients() -> Result<()> {
    let mut w = Tensor::<f64>::from_f64s(&[1.0, -2.0], [2])?.requires_grad_();
    let mut unused = Tensor::<f64>::ones([3]).requires_grad_();
    let id = w.id();
    let alias = w.clone(); // shares the buffer, so the update cannot be in place
    let grads = quadratic(&w)?.backward()?;
    let mut params = vec![
        ("w".to_string(), &mut w),
        ("unused".to_string(), &mut unused),
    ];
    Sgd::new(0.1).step(&mut params, &grads)?;
    assert_eq!(w.to_f64_vec(), [0.8, -1.9]);
    assert_eq!(w.id(), id, "the parameter keeps its identity");
    assert_eq!(
        alias.to_f64_vec(),
        [1.0, -2.0],
        "the old handle still sees the old values"
    );
    assert_eq!(unused.to_f64_vec(), [1.0; 3]);
    Ok(())
}

#[test]
fn bad_hyper_parameters_and_duplicate_names_are_errors() -> Result<()> {
    let mut w = Tensor::<f64>::from_f64s(&[1.0, -2.0], [2])?.requires_grad_();
    let grads = quadratic(&w)?.backward()?;
    let mut params = vec![("w".to_string(), &mut w)];
    let nesterov_without_momentum = Sgd::new(0.1).with_nesterov(true).step(&mut params, &grads);
    assert!(matches!(
        nesterov_without_momentum,
        Err(Error::InvalidInput { .. })
    ));
    assert!(
        Adam::new(0.1)
            .with_betas(1.0, 0.999)
            .step(&mut params, &grads)
            .is_err()
    );
    assert!(Adam::new(-1.0).step(&mut params, &grads).is_err());
    assert!(Lars::new(f64::NAN).step(&mut params, &grads).is_err());
    let mut v = Tensor::<f64>::zeros([2]).requires_grad_();
    params.push(("w".to_string(), &mut v));
    let err = Sgd::new(0.1)
        .step(&mut params, &grads)
        .expect_err("duplicate names");
    assert!(err.to_string().contains("`w` appears twice"), "{err}");
    Ok(())
}
