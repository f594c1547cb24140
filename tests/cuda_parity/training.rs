//! Training on the GPU: a module and the optimisers step like on the CPU.

use crate::common::*;
use contrastive::{Device, Result, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

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

/// Fixed gradients by parameter (the optimiser tests feed the same ones to both devices).
struct Fixed(std::collections::HashMap<contrastive::TensorId, Tensor<f32>>);

impl contrastive::optim::GradientSource<f32> for Fixed {
    fn gradient(&self, param: &Tensor<f32>) -> Option<&Tensor<f32>> {
        self.0.get(&param.id())
    }
}

type MakeOpt = fn() -> Box<dyn contrastive::optim::Optimizer<f32>>;
type OptCase = (&'static str, MakeOpt, Option<f64>);

/// Four steps of `make()` on `device` over a weight, a bias (which LARS excludes) and a
/// parameter with no gradient in the third step, the gradients clipped first when `clip`: the
/// parameters, the exported state and the gradient norms, on the host. Fails on an implicit
/// host copy during the steps.
fn optimizer_run(
    device: Device,
    make: MakeOpt,
    clip: Option<f64>,
) -> Result<Vec<(String, Vec<f32>)>> {
    let mut rng = StdRng::seed_from_u64(5);
    let mut w = Tensor::<f32>::randn([7, 5], &mut rng)
        .to_device(&device)?
        .requires_grad_();
    let mut bias = Tensor::<f32>::randn([5], &mut rng)
        .to_device(&device)?
        .requires_grad_();
    let mut opt = make();
    let mut norms = Vec::new();
    let before = contrastive::backend::cuda::implicit_host_copies();
    for step in 0..4 {
        let mut map = std::collections::HashMap::new();
        map.insert(
            w.id(),
            Tensor::<f32>::randn([7, 5], &mut rng).to_device(&device)?,
        );
        let gb = Tensor::<f32>::randn([5], &mut rng).to_device(&device)?;
        if step != 2 {
            map.insert(bias.id(), gb);
        }
        let mut params = vec![
            ("layer.weight".to_string(), &mut w),
            ("layer.bias".to_string(), &mut bias),
        ];
        match clip {
            Some(max_norm) => {
                let (clipped, norm) =
                    contrastive::optim::clip_grad_norm(&params, &Fixed(map), max_norm)?;
                norms.push(norm as f32);
                opt.step(&mut params, &clipped)?;
            }
            None => opt.step(&mut params, &Fixed(map))?,
        }
    }
    let copies = contrastive::backend::cuda::implicit_host_copies() - before;
    if copies > 0 {
        return Err(contrastive::Error::Cuda {
            op: "optimizer test",
            message: format!("{copies} implicit host copies during the steps"),
        });
    }
    let host = |t: &Tensor<f32>| t.to_device(&Device::Cpu).map(|t| t.to_vec());
    let mut out = vec![
        ("weight".to_string(), host(&w)?),
        ("bias".to_string(), host(&bias)?),
        ("gradient norms".to_string(), norms),
    ];
    for (name, t) in opt.state_tensors() {
        out.push((name, host(&t)?));
    }
    Ok(out)
}

#[test]
fn optimizers_step_on_the_gpu_like_on_the_cpu() {
    use contrastive::optim::{Adam, Lars, Sgd};
    let Some(device) = gpu("optimizers_step_on_the_gpu_like_on_the_cpu") else {
        return;
    };
    let cases: Vec<OptCase> = vec![
        ("sgd", || Box::new(Sgd::new(0.1)), None),
        (
            "sgd_weight_decay",
            || Box::new(Sgd::new(0.1).with_weight_decay(0.01)),
            None,
        ),
        (
            "sgd_momentum_dampening",
            || {
                Box::new(
                    Sgd::new(0.1)
                        .with_momentum(0.9)
                        .with_dampening(0.1)
                        .with_weight_decay(1e-3),
                )
            },
            None,
        ),
        (
            "sgd_nesterov",
            || {
                Box::new(
                    Sgd::new(0.05)
                        .with_momentum(0.9)
                        .with_nesterov(true)
                        .with_weight_decay(1e-3),
                )
            },
            None,
        ),
        (
            "adam",
            || Box::new(Adam::new(1e-2).with_weight_decay(1e-3)),
            None,
        ),
        (
            "adamw",
            || Box::new(Adam::adamw(1e-2).with_betas(0.8, 0.99)),
            None,
        ),
        (
            "lars",
            || Box::new(Lars::new(0.5).with_weight_decay(1e-4)),
            None,
        ),
        (
            "lars_nesterov",
            || {
                Box::new(
                    Lars::new(0.5)
                        .with_nesterov(true)
                        .with_weight_decay(1e-4)
                        .with_trust_coefficient(0.01),
                )
            },
            None,
        ),
        (
            "sgd_momentum_clipped",
            || Box::new(Sgd::new(0.1).with_momentum(0.9)),
            Some(1.0),
        ),
        ("adam_clipped", || Box::new(Adam::new(1e-2)), Some(0.5)),
    ];
    let mut failures = Vec::new();
    for (name, make, clip) in cases {
        let result = optimizer_run(Device::Cpu, make, clip)
            .and_then(|cpu| Ok((cpu, optimizer_run(device, make, clip)?)));
        match result {
            Ok((cpu, gpu)) => {
                let names = |v: &[(String, Vec<f32>)]| v.iter().map(|p| p.0.clone()).collect();
                let (a, b): (Vec<String>, Vec<String>) = (names(&cpu), names(&gpu));
                if a != b {
                    failures.push(format!("{name}: state {a:?} on the CPU, {b:?} on the GPU"));
                    continue;
                }
                for ((what, x), (_, y)) in cpu.iter().zip(&gpu) {
                    if let Err(e) = close(&format!("{name} {what}"), x, y) {
                        failures.push(e);
                    }
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
