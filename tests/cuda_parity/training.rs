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
