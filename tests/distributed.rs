//! Data-parallel training without MPI: ranks as threads ([`ThreadGroup`]). The collectives
//! (order, deterministic sums, errors instead of hangs), the gradient of `all_gather_rows`
//! (checked on every thread), the replica check, and the central claim: K ranks with B samples
//! each train exactly like one process with K·B, through the library step and through the
//! training loop of `contrastive train`.

use contrastive::distributed::equivalence::{ReplicaSpec, max_abs_diff, train_replica};
use contrastive::distributed::{Collective, DataParallel, Solo, ThreadGroup, solo};
use contrastive::nn::{Activation, Mlp};
use contrastive::train::checkpoint;
use contrastive::train::run::{self, CHECKPOINT};
use contrastive::train::{Config, RunOptions, RunStatus};
use contrastive::{GradCheckOptions, Result, Tensor, check_gradients};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

mod common;
use common::Scratch;

#[test]
fn collectives_gather_in_rank_order_and_sum_the_same_bits_everywhere() {
    let out = ThreadGroup::<f64>::run(3, |comm| {
        let r = comm.rank() as f64;
        let gathered = comm.all_gather(&[r, 10.0 + r]).unwrap();
        // Values whose sum depends on the order: only the rank order gives these bits.
        let mut sum = [[1e16, -1e16, 1.0][comm.rank()], 0.1 * (r + 1.0)];
        comm.all_reduce_sum(&mut sum).unwrap();
        let mut b = [r; 2];
        comm.broadcast(&mut b, 2).unwrap();
        comm.barrier().unwrap();
        (gathered, sum, b)
    })
    .unwrap();
    let expected_sum = [(1e16 + -1e16) + 1.0, (0.1 * 1.0 + 0.1 * 2.0) + 0.1 * 3.0];
    for (gathered, sum, b) in out {
        assert_eq!(gathered, vec![0.0, 10.0, 1.0, 11.0, 2.0, 12.0]);
        assert_eq!(sum.map(f64::to_bits), expected_sum.map(f64::to_bits));
        assert_eq!(b, [2.0, 2.0]);
    }
}

#[test]
fn a_mismatch_or_a_departed_rank_is_an_error_not_a_hang() {
    let out = ThreadGroup::<f32>::run(2, |comm| {
        let unequal = comm.all_gather(&vec![0.0; 1 + comm.rank()]).map(drop);
        let bad_root = comm.broadcast(&mut [0.0], 5).map(drop);
        (unequal.is_err(), bad_root.is_err())
    })
    .unwrap();
    assert_eq!(out, vec![(true, true), (true, true)]);

    let out = ThreadGroup::<f32>::run(2, |comm| {
        if comm.rank() == 1 {
            return None; // leaves: its handle is dropped here
        }
        Some(comm.barrier().unwrap_err().to_string())
    })
    .unwrap();
    assert!(
        out[0].as_deref().unwrap().contains("rank 1 left"),
        "{out:?}"
    );
}

/// `f(x)` over the group, as rank `leader` sees it: its `x` is the checked input, the other
/// ranks hold fixed rows. Every rank runs the checker in lockstep (same call sequence), but a
/// follower's checked input is a dummy that does not reach the gather and its output carries a
/// zero weight on the gathered rows, so the leader's reverse-mode gradient (its own cotangent,
/// all-reduced with the followers' zeros) and its finite differences see the same function.
fn gather_check(comm: Arc<dyn Collective<f64>>, leader: usize) -> Result<bool> {
    let mut rng = StdRng::seed_from_u64(10 + comm.rank() as u64);
    // Tracked, so that a follower's graph holds the gather too and its backward takes part.
    let fixed = Tensor::<f64>::randn([2, 3], &mut rng).requires_grad_();
    let x = Tensor::<f64>::randn([2, 3], &mut rng);
    let weights = Tensor::<f64>::randn([2 * comm.size(), 3], &mut StdRng::seed_from_u64(99));
    let leads = comm.rank() == leader;
    let f = |xs: &[Tensor<f64>]| {
        let (rows, w) = if leads {
            (xs[0].clone(), 1.0)
        } else {
            (fixed.clone(), 0.0)
        };
        // A loss over every rank's rows: Σ tanh(Y)·W, then softmax-like coupling via logsumexp.
        let y = rows.all_gather_rows(&comm)?;
        let global = y.tanh().mul(&weights)?.logsumexp(0, false)?; // (3)
        let dummy = xs[0]
            .square()
            .sum(&[0], false)?
            .mul_scalar(if leads { 0.0 } else { 1.0 });
        global.mul_scalar(w).add(&dummy)
    };
    let report = check_gradients(f, &[x], &GradCheckOptions::default())?;
    Ok(report.passed)
}

#[test]
fn all_gather_rows_passes_the_gradient_check_solo_and_on_every_thread() {
    // Solo: the identity with a recorded op.
    let mut rng = StdRng::seed_from_u64(3);
    let x = Tensor::<f64>::randn([3, 2], &mut rng);
    let comm = solo::<f64>();
    let f = |xs: &[Tensor<f64>]| xs[0].all_gather_rows(&comm)?.tanh().logsumexp(0, false);
    assert!(
        check_gradients(f, &[x], &GradCheckOptions::default())
            .unwrap()
            .passed
    );

    for leader in 0..3 {
        let passed = ThreadGroup::run(3, |comm| gather_check(comm, leader).unwrap()).unwrap();
        assert_eq!(passed, vec![true; 3], "leader {leader}");
    }
}

#[test]
fn the_gather_gradient_is_the_gradient_of_the_summed_rank_losses() {
    // Rank r's loss L_r = Σ (Y ⊙ W_r)² with its own W_r. The gradient each rank gets for its
    // rows must be the rows of ∂(Σ_r L_r)/∂Y computed in one process.
    let k = 3;
    let weights: Vec<Tensor<f64>> = (0..k)
        .map(|r| Tensor::randn([2 * k, 4], &mut StdRng::seed_from_u64(r as u64)))
        .collect();
    let rows = |r: usize| Tensor::<f64>::randn([2, 4], &mut StdRng::seed_from_u64(50 + r as u64));
    let per_rank = ThreadGroup::run(k, |comm| {
        let x = rows(comm.rank()).requires_grad_();
        let y = x.all_gather_rows(&comm).unwrap();
        let loss = y
            .mul(&weights[comm.rank()])
            .unwrap()
            .square()
            .sum_all()
            .unwrap();
        loss.backward().unwrap().get(&x).unwrap().to_vec()
    })
    .unwrap();
    let all: Vec<Tensor<f64>> = (0..k).map(rows).collect();
    let y = Tensor::concat(&all, 0).unwrap().requires_grad_();
    let mut total = Tensor::scalar(0.0);
    for w in &weights {
        total = total
            .add(&y.mul(w).unwrap().square().sum_all().unwrap())
            .unwrap();
    }
    let grad = total.backward().unwrap().get(&y).unwrap().to_vec();
    for (r, g) in per_rank.iter().enumerate() {
        // Sums of three terms in a different order: a few ulps.
        assert!(
            max_abs_diff(g, &grad[r * 8..(r + 1) * 8]) < 1e-12,
            "rank {r}"
        );
    }
}

#[test]
fn two_ranks_with_b_samples_train_like_one_process_with_2b() {
    for loss in ["nt_xent", "supcon"] {
        for optimizer in ["sgd", "adam"] {
            let spec = ReplicaSpec::new(loss, optimizer, 16);
            let single = train_replica(&spec, solo()).unwrap();
            let ranks = ThreadGroup::run(2, |comm| train_replica(&spec, comm).unwrap()).unwrap();
            for (r, params) in ranks.iter().enumerate() {
                let diff = max_abs_diff(params, &single);
                // The bound; the actual gap is rounding in the split gradient sums.
                assert!(
                    diff < 1e-6,
                    "{loss}/{optimizer}: rank {r} differs by {diff:e}"
                );
            }
            assert_eq!(
                ranks[0], ranks[1],
                "{loss}/{optimizer}: the replicas must be identical"
            );
        }
    }
}

#[test]
fn diverged_replicas_fail_loudly_with_the_step() {
    let errors = ThreadGroup::<f64>::run(2, |comm| {
        let dp = DataParallel::new(comm, 5);
        // Each rank seeds its own model: the replicas differ from the start.
        let mut rng = StdRng::seed_from_u64(dp.rank() as u64);
        let model = Mlp::new::<f64>(&[3, 4], Activation::Relu, false, &mut rng).unwrap();
        assert!(dp.check_due(10) && !dp.check_due(11));
        dp.check_replicas(10, &model).unwrap_err().to_string()
    })
    .unwrap();
    for e in errors {
        assert!(e.contains("step 10") && e.contains("rank 1:"), "{e}");
    }
    let dp = DataParallel::<f32>::new(Arc::new(Solo), 1);
    assert!(dp.local_batch(7).is_ok() && !dp.check_due(1));
    let odd = ThreadGroup::<f32>::run(2, |comm| DataParallel::new(comm, 1).local_batch(7).is_err());
    assert_eq!(odd.unwrap(), vec![true, true]);
}

/// A short run of `contrastive train` on the digits: MLP 64→64, projector →32, one epoch.
fn tiny() -> Config {
    let mut c = Config::default();
    for o in [
        "model.widths=[64]",
        "model.projector=[32]",
        "train.epochs=1",
        "train.batch_size=128",
        "train.threads=1",
        "eval.probe=false",
    ] {
        c.set_assignment(o).unwrap();
    }
    c
}

fn options(dir: &Path) -> RunOptions {
    RunOptions {
        run_dir: dir.to_path_buf(),
        resume: false,
        progress: false,
        stop: None,
    }
}

fn checkpoint_values(options: &RunOptions) -> Vec<f64> {
    let loaded = checkpoint::load(&options.run_dir.join(CHECKPOINT)).unwrap();
    loaded
        .model
        .iter()
        .flat_map(|(_, t)| t.to_f64_vec())
        .collect()
}

#[test]
fn the_training_loop_over_two_ranks_matches_one_process() {
    let config = tiny();
    let (one_dir, two_dir) = (Scratch::new("one"), Scratch::new("two"));
    let one = options(&one_dir);
    let outcome = run::train_with(&config, &one, solo()).unwrap();
    let two = options(&two_dir);
    let outcomes =
        ThreadGroup::run(2, |comm| run::train_with(&config, &two, comm).unwrap()).unwrap();
    assert!(outcomes.iter().all(|o| o.status == RunStatus::Finished));
    assert!(outcomes[0].evaluation.is_some() && outcomes[1].evaluation.is_none());
    // f32, 11 Adam steps: the split gradient sums round differently (about 2e-8 here); a
    // gradient off by the factor K moves them by 1e-5 even under Adam's normalisation.
    let diff = max_abs_diff(&checkpoint_values(&one), &checkpoint_values(&two));
    assert!(diff < 1e-6, "parameters differ by {diff:e}");
    // The mean loss of the epoch, in f32 arithmetic on both sides.
    assert!((outcome.last_loss - outcomes[1].last_loss).abs() < 1e-5);
}

#[test]
fn a_stop_on_one_rank_stops_all_at_the_same_step_and_resumes_exactly() {
    let config = tiny();
    let (whole_dir, split_dir) = (Scratch::new("whole"), Scratch::new("split"));
    let whole = options(&whole_dir);
    ThreadGroup::run(2, |comm| run::train_with(&config, &whole, comm).unwrap()).unwrap();
    let split = options(&split_dir);
    let stopped = ThreadGroup::run(2, |comm| {
        // Only rank 1 is asked to stop (its flag is already set): rank 0 must stop with it.
        let mut o = split.clone();
        o.stop = (comm.rank() == 1).then(|| Arc::new(AtomicBool::new(true)));
        run::train_with(&config, &o, comm).unwrap().status
    })
    .unwrap();
    assert!(matches!(stopped[0], RunStatus::Interrupted(p) if p.global_step == 1));
    assert_eq!(stopped[0], stopped[1]);
    let resumed = RunOptions {
        resume: true,
        ..split.clone()
    };
    ThreadGroup::run(2, |comm| run::train_with(&config, &resumed, comm).unwrap()).unwrap();
    // Same bits: the stop and the resume change nothing in what the ranks compute.
    assert_eq!(checkpoint_values(&whole), checkpoint_values(&split));
}
