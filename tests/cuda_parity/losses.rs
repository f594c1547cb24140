//! Every loss of the registry, value and feature gradient, on both devices.

use crate::common::*;
use contrastive::losses::{self, Loss, LossInputs};
use contrastive::{Device, Result, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

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
