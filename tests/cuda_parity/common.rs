//! Helpers shared by the parity tests: the GPU (or the reason to skip), input generators, the
//! run on one device and the f32 comparison.

use contrastive::{Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The GPU, or the reason there is none (printed as a skip).
pub fn gpu(test: &str) -> Option<Device> {
    let d = Device::Cuda(0);
    match d.check() {
        Ok(()) => Some(d),
        Err(e) => {
            println!("skipped {test}: {e}");
            None
        }
    }
}

pub type Inputs = fn(&mut StdRng) -> Vec<Tensor<f32>>;
pub type Body = fn(&[Tensor<f32>]) -> Result<Tensor<f32>>;

pub fn randn(rng: &mut StdRng, dims: &[usize]) -> Tensor<f32> {
    Tensor::randn(dims.to_vec(), rng)
}
/// Distinct values (no ties for max and pooling; away from the kinks of relu/abs/clamp).
pub fn distinct(rng: &mut StdRng, dims: &[usize]) -> Tensor<f32> {
    let n: usize = dims.iter().product();
    let mut v: Vec<f64> = (0..n)
        .map(|i| (i as f64 - n as f64 / 2.0) * 0.013 + 0.0037)
        .collect();
    for i in (1..n).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
    Tensor::from_f64s(&v, dims.to_vec()).unwrap()
}
pub fn positive(rng: &mut StdRng, dims: &[usize]) -> Tensor<f32> {
    let n: usize = dims.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(0.5..2.0)).collect();
    Tensor::from_f64s(&v, dims.to_vec()).unwrap()
}
pub fn dims(rng: &mut StdRng, rank: usize) -> Vec<usize> {
    (0..rank).map(|_| rng.random_range(1..=5)).collect()
}
pub fn any3(r: &mut StdRng) -> Vec<Tensor<f32>> {
    let d = dims(r, 3);
    vec![randn(r, &d)]
}
pub fn any2(r: &mut StdRng) -> Vec<Tensor<f32>> {
    let d = dims(r, 2);
    vec![randn(r, &d)]
}
pub fn pos3(r: &mut StdRng) -> Vec<Tensor<f32>> {
    let d = dims(r, 3);
    vec![positive(r, &d)]
}
pub fn dist3(r: &mut StdRng) -> Vec<Tensor<f32>> {
    let d = dims(r, 3);
    vec![distinct(r, &d)]
}

pub fn broadcast_pair(r: &mut StdRng) -> Vec<Tensor<f32>> {
    vec![randn(r, &[2, 3, 4]), randn(r, &[3, 1])]
}

pub trait Pipe: Sized {
    fn pipe(self) -> Result<Self> {
        Ok(self)
    }
}
impl Pipe for Tensor<f32> {}

/// Runs `f` on `inputs` placed on `device`: the output and every input's gradient (on the
/// host) for the cotangent `ct`.
pub fn run_on(
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
pub fn close(what: &str, a: &[f32], b: &[f32]) -> std::result::Result<(), String> {
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

pub fn compare(
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

/// One op of the op table: its name, an input generator and the op.
pub type Case = (&'static str, Inputs, Body);

/// Runs every case on four seeds on the CPU and the GPU and fails with every mismatch, and
/// on any implicit host copy of a GPU tensor.
pub fn check_ops(test: &str, cases: Vec<Case>) {
    let Some(device) = gpu(test) else {
        return;
    };
    let mut failures = Vec::new();
    for (name, make, f) in cases {
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
