//! The five standard workloads of the project's `BENCHMARKS.md` (`gemm`, `ntxent`, `supcon`,
//! `mlp_step`, `cnn_step`), built exactly as the PyTorch side (`bench/torch_bench.py`) builds
//! them, so that the two engines can be compared line by line, and [`measure`], which times one
//! of them inside a `rayon` pool of a given size.
//!
//! Each builder makes its inputs (f32, standard normal from a fixed seed; labels uniform over the
//! classes) and its model once, and returns a [`Workload`] whose [`run_once`](Workload::run_once)
//! performs one repetition. Between repetitions nothing is kept but the parameters (and the
//! optimiser's momentum, which is part of a training step's state): every activation, gradient
//! and loss is recomputed.
//!
//! ```no_run
//! use contrastive::workloads::{self, measure};
//!
//! # fn main() -> contrastive::Result<()> {
//! let mut w = workloads::build("ntxent")?;
//! let m = measure(&mut w, 1, 10)?;
//! println!("{m}"); // "ntxent 1 12.34 passes/s"
//! # Ok(())
//! # }
//! ```

use crate::backend::cpu::alloc::tune_allocator;
use crate::backend::cpu::gemm::{MatRef, gemm as gemm_kernel};
use crate::error::{Error, Result};
use crate::losses::{self, Denominator};
use crate::nn::{Activation, ConvEncoder, EncoderHead, Mlp, Mode, Module, ProjectionHead, Relu};
use crate::optim::{Optimizer, Sgd};
use crate::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::fmt;
use std::hint::black_box;
use std::time::Instant;

/// The workloads, in the order of `BENCHMARKS.md`.
pub const NAMES: [&str; 5] = ["gemm", "ntxent", "supcon", "mlp_step", "cnn_step"];

/// Untimed repetitions before the timed ones (page faults, allocator and pool warm-up).
pub const WARMUP: usize = 3;

/// The fewest timed repetitions a median is taken over (`BENCHMARKS.md`).
pub const MIN_REPS: usize = 10;

/// Seed of every workload's inputs (PyTorch's side seeds its own generator with 0 too; the two
/// draw different numbers, which changes no cost).
const DATA_SEED: u64 = 0;
/// Seed of model initialisation, separate from the data so the two can be varied alone.
const MODEL_SEED: u64 = 1;

/// Learning rate of the training steps (`torch_bench.py`'s `--lr` default).
const LR: f64 = 0.01;

type Runner = Box<dyn FnMut() -> Result<()> + Send>;

/// One workload, built: [`run_once`](Self::run_once) performs one repetition worth
/// [`units_per_rep`](Self::units_per_rep) units of [`unit`](Self::unit).
pub struct Workload {
    name: &'static str,
    device: Device,
    unit: &'static str,
    units_per_rep: f64,
    run: Runner,
}

impl fmt::Debug for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workload")
            .field("name", &self.name)
            .field("unit", &self.unit)
            .field("units_per_rep", &self.units_per_rep)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Workload {
    fn new(name: &'static str, unit: &'static str, units_per_rep: f64, run: Runner) -> Self {
        Workload {
            name,
            device: Device::Cpu,
            unit,
            units_per_rep,
            run,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `GFLOP/s`, `passes/s` or `steps/s`.
    pub fn unit(&self) -> &'static str {
        self.unit
    }

    /// What one repetition is worth in the unit's numerator (GFLOP for `gemm`, else 1).
    pub fn units_per_rep(&self) -> f64 {
        self.units_per_rep
    }

    /// Where the workload runs.
    pub fn device(&self) -> Device {
        self.device
    }

    /// One repetition, on the current rayon pool; on a GPU it returns once the GPU has
    /// finished (so that timers measure the work, not its queueing).
    pub fn run_once(&mut self) -> Result<()> {
        (self.run)()?;
        self.device.synchronize()
    }

    fn on(mut self, device: Device) -> Self {
        self.device = device;
        self
    }
}

/// Builds a workload by its name in [`NAMES`], on the CPU.
pub fn build(name: &str) -> Result<Workload> {
    build_on(name, Device::Cpu)
}

/// Builds a workload by its name in [`NAMES`], with its inputs and model on `device`. Tunes
/// the allocator first ([`tune_allocator`]), as the command-line tool does, so the timings
/// count no page faults that a training run would not pay either.
pub fn build_on(name: &str, device: Device) -> Result<Workload> {
    tune_allocator();
    device.check()?;
    let w = match name {
        "gemm" => gemm_on(device),
        "ntxent" => ntxent_on(device),
        "supcon" => supcon_on(device),
        "mlp_step" => mlp_step_on(device),
        "cnn_step" => cnn_step_on(device),
        _ => Err(Error::invalid(
            "workloads",
            format!("unknown workload `{name}`; expected one of {NAMES:?}"),
        )),
    }?;
    Ok(w.on(device))
}

/// `C = A·B` with A, B `1024 × 1024`: 2·1024³ flops per repetition, in GFLOP/s.
///
/// Choice: like `torch.mm(a, b, out=c)` in `torch_bench.py`, the product is written into a
/// buffer made once, through the GEMM kernel, so the figure is the kernel's and not the
/// allocator's (`Tensor::matmul` would also map and fault in a fresh 4 MiB output every call).
pub fn gemm() -> Result<Workload> {
    gemm_on(Device::Cpu)
}

fn gemm_on(device: Device) -> Result<Workload> {
    const N: usize = 1024;
    let mut rng = StdRng::seed_from_u64(DATA_SEED);
    let a = Tensor::<f32>::randn([N, N], &mut rng);
    let b = Tensor::<f32>::randn([N, N], &mut rng);
    let gflop = 2.0 * (N * N * N) as f64 / 1e9;
    if device.is_cuda() {
        // On a GPU: `matmul` (one cuBLAS GEMM into a fresh buffer from the driver's pool).
        let (a, b) = (a.to_device(&device)?, b.to_device(&device)?);
        let run = move || {
            black_box(a.matmul(&b)?); // (N, N) · (N, N) → (N, N)
            Ok(())
        };
        return Ok(Workload::new("gemm", "GFLOP/s", gflop, Box::new(run)));
    }
    let mut c = vec![0f32; N * N];
    let run = move || {
        // (N, N) · (N, N) → (N, N)
        gemm_kernel(
            MatRef::new(a.data(), N, N),
            MatRef::new(b.data(), N, N),
            &mut c,
            false,
        );
        black_box(&c);
        Ok(())
    };
    Ok(Workload::new("gemm", "GFLOP/s", gflop, Box::new(run)))
}

/// NT-Xent at τ = 0.5 on unnormalised features `(1024, 2, 128)`, forward and backward to the
/// features, in passes/s. (PyTorch holds the two views as two `(1024, 128)` leaves and
/// concatenates them inside the loss; here they are one `(N, 2, d)` leaf, the loss's layout.)
pub fn ntxent() -> Result<Workload> {
    ntxent_on(Device::Cpu)
}

fn ntxent_on(device: Device) -> Result<Workload> {
    let mut rng = StdRng::seed_from_u64(DATA_SEED);
    let features = Tensor::<f32>::randn([1024, 2, 128], &mut rng)
        .to_device(&device)?
        .requires_grad_();
    let run = move || {
        let loss = losses::nt_xent(&features, 0.5)?;
        let grads = loss.backward()?;
        black_box((loss.item()?, grads.get(&features).map(Tensor::numel)));
        Ok(())
    };
    Ok(Workload::new("ntxent", "passes/s", 1.0, Box::new(run)))
}

/// SupCon (denominator over every other row, as SupContrast) at τ = 0.1 on unnormalised
/// features `(512, 2, 128)` with labels uniform over 10 classes, forward and backward, in
/// passes/s.
pub fn supcon() -> Result<Workload> {
    supcon_on(Device::Cpu)
}

fn supcon_on(device: Device) -> Result<Workload> {
    let mut rng = StdRng::seed_from_u64(DATA_SEED);
    let features = Tensor::<f32>::randn([512, 2, 128], &mut rng);
    let features = features.to_device(&device)?.requires_grad_();
    let labels: Vec<i64> = (0..512).map(|_| rng.random_range(0..10)).collect();
    let run = move || {
        let loss = losses::supcon(&features, &labels, 0.1, Denominator::All)?;
        let grads = loss.backward()?;
        black_box((loss.item()?, grads.get(&features).map(Tensor::numel)));
        Ok(())
    };
    Ok(Workload::new("supcon", "passes/s", 1.0, Box::new(run)))
}

/// One SimCLR step of an MLP: views `(256, 784)` ×2 → encoder 784→512→512 (ReLU after each) →
/// projector 512→512→128 (ReLU between) → NT-Xent τ = 0.5 → backward → SGD (lr 0.01, momentum
/// 0.9, weight decay 1e-4), in steps/s.
///
/// Choices, as `torch_bench.py` makes them: every `Linear` has a bias (PyTorch's default); the
/// two views are concatenated into one `(512, 784)` batch and go through the model in one
/// forward pass (its default `--views cat`), and the concatenation is part of every step.
pub fn mlp_step() -> Result<Workload> {
    mlp_step_on(Device::Cpu)
}

fn mlp_step_on(device: Device) -> Result<Workload> {
    let mut model_rng = StdRng::seed_from_u64(MODEL_SEED);
    let mut encoder = Mlp::new::<f32>(&[784, 512, 512], Activation::Relu, false, &mut model_rng)?;
    encoder.push(Relu);
    let head = ProjectionHead::mlp::<f32>(&[512, 512, 128], &mut model_rng)?;
    let model = EncoderHead::new(encoder, head);
    let mut rng = StdRng::seed_from_u64(DATA_SEED);
    let x1 = Tensor::<f32>::randn([256, 784], &mut rng);
    let x2 = Tensor::<f32>::randn([256, 784], &mut rng);
    let opt = Sgd::new(LR).with_momentum(0.9).with_weight_decay(1e-4);
    Ok(Workload::new(
        "mlp_step",
        "steps/s",
        1.0,
        training_step(model, opt, x1, x2, device)?,
    ))
}

/// One SimCLR step of a small CNN: views `(64, 3, 32, 32)` ×2 → [conv3×3(pad 1) → BN → ReLU]
/// with 32, 64, 128 channels, 2×2 max-pool after the first two blocks, global average pool →
/// projector 128→128 (ReLU) →64 → NT-Xent τ = 0.5 → backward → SGD, in steps/s.
///
/// Choices, as `torch_bench.py` makes them: convolutions and linear layers keep their bias
/// (PyTorch's default, even before batch norm); batch norm is in training mode (batch
/// statistics, running statistics updated) and, because the two views are concatenated into one
/// `(128, 3, 32, 32)` batch, its statistics span both views; SGD has momentum 0.9 and weight
/// decay 1e-4 (`torch_bench.py` uses one optimiser for both steps; `BENCHMARKS.md` names no
/// weight decay here, and it costs one multiply-add per parameter).
pub fn cnn_step() -> Result<Workload> {
    cnn_step_on(Device::Cpu)
}

fn cnn_step_on(device: Device) -> Result<Workload> {
    let mut model_rng = StdRng::seed_from_u64(MODEL_SEED);
    let encoder = ConvEncoder::simple::<f32>(&[32, 64, 128], 3, &mut model_rng)?;
    let head = ProjectionHead::mlp::<f32>(&[128, 128, 64], &mut model_rng)?;
    let model = EncoderHead::new(encoder, head);
    let mut rng = StdRng::seed_from_u64(DATA_SEED);
    let x1 = Tensor::<f32>::randn([64, 3, 32, 32], &mut rng);
    let x2 = Tensor::<f32>::randn([64, 3, 32, 32], &mut rng);
    let opt = Sgd::new(LR).with_momentum(0.9).with_weight_decay(1e-4);
    Ok(Workload::new(
        "cnn_step",
        "steps/s",
        1.0,
        training_step(model, opt, x1, x2, device)?,
    ))
}

/// The runner of a SimCLR step: concatenate the views, one forward pass, NT-Xent on the
/// `(N, 2, d)` features (row i of each view is sample i), backward, optimiser update.
fn training_step(
    mut model: EncoderHead<f32>,
    mut opt: Sgd<f32>,
    x1: Tensor<f32>,
    x2: Tensor<f32>,
    device: Device,
) -> Result<Runner> {
    let n = x1.dims()[0];
    model.to_device(&device)?;
    let (x1, x2) = (x1.to_device(&device)?, x2.to_device(&device)?);
    Ok(Box::new(move || {
        let x = Tensor::concat(&[x1.clone(), x2.clone()], 0)?; // (2N, …)
        let z = model.forward(&x, Mode::Train)?; // (2N, d)
        let d = z.dims()[1];
        // (2N, d) → (2, N, d) → (N, 2, d): view-major rows back into the loss's layout.
        let features = z.reshape(&[2, n, d])?.transpose(0, 1)?;
        let loss = losses::nt_xent(&features, 0.5)?;
        let grads = loss.backward()?;
        opt.step(&mut model.parameters_mut(), &grads)?;
        black_box(loss.item()?);
        Ok(())
    }))
}

/// The timing of one workload at one thread count.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub workload: &'static str,
    pub threads: usize,
    /// Timed repetitions (after [`WARMUP`] untimed ones).
    pub reps: usize,
    /// The median over the repetitions (the mean of the two middle ones for an even count, as
    /// Python's `statistics.median`, which the PyTorch side uses).
    pub median_seconds: f64,
    pub min_seconds: f64,
    pub max_seconds: f64,
    /// `units_per_rep / median_seconds`.
    pub throughput: f64,
    pub unit: &'static str,
}

impl fmt::Display for Measurement {
    /// `workload threads throughput unit`, the line format of `torch_bench.py`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.workload,
            self.threads,
            significant(self.throughput, 4),
            self.unit
        )
    }
}

/// Median seconds of `reps` timed calls of `f` after `warmup` untimed ones, on the current
/// thread pool: the timing rule of BENCHMARKS.md, for benches that time their own closures.
pub fn median_seconds(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Times `workload`: [`WARMUP`] untimed repetitions, then `reps` (≥ [`MIN_REPS`]) timed ones,
/// all inside a fresh rayon pool of `threads` threads; reports the median.
pub fn measure(workload: &mut Workload, threads: usize, reps: usize) -> Result<Measurement> {
    if reps < MIN_REPS {
        return Err(Error::invalid(
            "measure",
            format!("{reps} repetitions: a median needs at least {MIN_REPS}"),
        ));
    }
    if threads == 0 {
        return Err(Error::invalid("measure", "threads must be at least 1"));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::invalid("measure", format!("cannot start {threads} threads: {e}")))?;
    let mut times = pool.install(|| -> Result<Vec<f64>> {
        for _ in 0..WARMUP {
            workload.run_once()?;
        }
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                workload.run_once()?;
                Ok(t.elapsed().as_secs_f64())
            })
            .collect()
    })?;
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    let median = if times.len() % 2 == 1 {
        times[mid]
    } else {
        0.5 * (times[mid - 1] + times[mid])
    };
    Ok(Measurement {
        workload: workload.name,
        threads,
        reps,
        median_seconds: median,
        min_seconds: times[0],
        max_seconds: times[times.len() - 1],
        throughput: workload.units_per_rep / median,
        unit: workload.unit,
    })
}

/// `x` with `digits` significant digits and no exponent (`%.4g` for the magnitudes here).
fn significant(x: f64, digits: usize) -> String {
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i64;
    let decimals = (digits as i64 - 1 - magnitude).max(0) as usize;
    format!("{x:.decimals$}")
}

/// The process's peak resident memory in MiB (`VmHWM` in `/proc/self/status`); `None` where
/// that file does not exist (not Linux).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::significant;

    #[test]
    fn significant_digits() {
        assert_eq!(significant(88.123, 4), "88.12");
        assert_eq!(significant(1234.6, 4), "1235");
        assert_eq!(significant(0.012345, 3), "0.0123");
    }
}
