//! The replica self-check: `K` ranks with `B/K` samples each must train exactly like one process
//! with the whole batch of `B`. [`train_replica`] runs a small `f64` MLP (no batch norm, so the
//! two are the same computation) for a few data-parallel steps on seeded synthetic batches and
//! returns its parameters; run it over a group and over [`super::solo`] and compare them.
//! `tests/distributed.rs` does that with a [`super::ThreadGroup`], and
//! `examples/mpi_data_parallel.rs` with MPI (`mpirun -n 2`).

use super::collective::Collective;
use super::data_parallel::DataParallel;
use crate::error::{Error, Result};
use crate::losses::{Loss, LossInputs};
use crate::nn::{Activation, Mlp, Module};
use crate::optim::{Adam, Optimizer, Sgd};
use crate::tensor::Tensor;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;

/// What [`train_replica`] trains.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSpec {
    /// A loss of the registry that reads `(N, 2, d)` features (and labels): `nt_xent`, `supcon`.
    pub loss: String,
    /// `sgd` (momentum 0.9) or `adam`.
    pub optimizer: String,
    pub lr: f64,
    /// `B`, the samples of every global batch; split evenly over the ranks.
    pub global_batch: usize,
    pub steps: usize,
    pub seed: u64,
    /// MLP widths, input first.
    pub widths: Vec<usize>,
    /// Distinct labels (`i mod classes`), for the supervised losses.
    pub classes: usize,
}

impl ReplicaSpec {
    /// A check of `loss` with `optimizer` on `global_batch` samples: MLP 12→16→8, 4 steps.
    pub fn new(loss: &str, optimizer: &str, global_batch: usize) -> Self {
        ReplicaSpec {
            loss: loss.to_string(),
            optimizer: optimizer.to_string(),
            lr: if optimizer == "adam" { 1e-2 } else { 0.1 },
            global_batch,
            steps: 4,
            seed: 7,
            widths: vec![12, 16, 8],
            classes: 3,
        }
    }
}

/// Trains as `spec` says over `comm` (this rank's share of every batch) and returns the final
/// parameters, flattened in name order. Every rank returns the same values.
pub fn train_replica(spec: &ReplicaSpec, comm: Arc<dyn Collective<f64>>) -> Result<Vec<f64>> {
    const VIEWS: usize = 2;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut model = Mlp::new::<f64>(&spec.widths, Activation::Relu, false, &mut rng)?;
    let mut optimizer: Box<dyn Optimizer<f64>> = match spec.optimizer.as_str() {
        "sgd" => Box::new(Sgd::new(spec.lr).with_momentum(0.9)),
        "adam" => Box::new(Adam::new(spec.lr)),
        other => {
            return Err(Error::invalid(
                "train_replica",
                format!("optimizer '{other}' is not sgd or adam"),
            ));
        }
    };
    let loss = Loss::by_name(&spec.loss)?;
    let b = spec.global_batch;
    let labels: Vec<i64> = (0..b).map(|i| (i % spec.classes.max(1)) as i64).collect();
    let loss_fn = |features: &Tensor<f64>| {
        let inputs = LossInputs::new(features);
        let inputs = if loss.reads().0 {
            inputs.with_labels(&labels)
        } else {
            inputs
        };
        loss.compute(&inputs)
    };
    // Check every step: the check itself is under test too.
    let dp = DataParallel::new(comm, 1);
    dp.check_replicas(0, &model)?;
    let d = spec.widths.first().copied().unwrap_or(1);
    for step in 0..spec.steps {
        // Two noisy views of B base points: the same on every rank (seeded by the step).
        let mut data_rng = StdRng::seed_from_u64(spec.seed ^ (0x9e37_79b9 + step as u64));
        let base = Tensor::<f64>::randn([b, d], &mut data_rng);
        let views: Vec<Tensor<f64>> = (0..VIEWS)
            .map(|_| base.add(&Tensor::randn([b, d], &mut data_rng).mul_scalar(0.3)))
            .collect::<Result<_>>()?;
        let views = Tensor::concat(&views, 0)?; // (V·B, d), view-major
        dp.train_step(
            &mut model,
            optimizer.as_mut(),
            &views,
            VIEWS,
            &loss_fn,
            step,
        )?;
    }
    Ok(model
        .state_tensors()
        .iter()
        .flat_map(|(_, t)| t.to_vec())
        .collect())
}

/// The largest absolute difference between two parameter vectors (infinite when their lengths
/// differ).
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
