//! Reductions and the ops built on them: sums, means, max/min, variance, log-sum-exp,
//! softmax, normalisation, cross-entropy.

use crate::common::*;
use contrastive::{Device, Result, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn cases() -> Vec<Case> {
    vec![
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
    ]
}

#[test]
fn reductions_match_the_cpu() {
    check_ops("reductions_match_the_cpu", cases());
}

/// Max/min and max pooling without a gradient (under `no_grad`, or on an input that needs
/// none) leave their winners' offsets on the device; the values still match the CPU.
#[test]
fn extrema_without_gradient_match_the_cpu() {
    let Some(device) = gpu("extrema_without_gradient_match_the_cpu") else {
        return;
    };
    let x = Tensor::<f32>::randn([3, 4, 6, 5], &mut StdRng::seed_from_u64(2));
    let run = |d: Device| -> Result<Vec<Vec<f32>>> {
        let x = x.to_device(&d)?;
        let host = |t: Tensor<f32>| t.to_device(&Device::Cpu).map(|t| t.to_vec());
        let tracked = x.clone().requires_grad_();
        Ok(vec![
            host(x.max(&[1], false)?)?,
            host(x.min(&[0, 2], true)?)?,
            host(x.max_pool2d(3, 2, 1)?)?,
            host(contrastive::no_grad(|| tracked.max(&[3], false))?)?,
            host(contrastive::no_grad(|| tracked.max_pool2d(2, 2, 0))?)?,
        ])
    };
    let (cpu, gpu) = (run(Device::Cpu).unwrap(), run(device).unwrap());
    for (i, (a, b)) in cpu.iter().zip(&gpu).enumerate() {
        close(&format!("result {i}"), a, b).unwrap();
    }
}
