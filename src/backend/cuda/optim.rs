//! Fused optimiser updates on the GPU (`kernels/optim.cu`): one kernel per update (LARS: its
//! two norms as a device reduction, then the update), reading the parameter, its gradient and
//! the optimiser state where they live, and writing the parameter and the state in place.
//! Nothing goes through the host. The hyper-parameters arrive as the CPU code computes them
//! (`src/optim/`), so both devices follow the same formulas.

use super::{buf, cuda_err, grid, launch};
use crate::error::{Error, Result};
use crate::tensor::{Device, Float, Tensor};
use cudarc::driver::LaunchConfig;

/// A zero tensor of `p`'s shape on `p`'s GPU: a fresh optimiser state buffer.
pub(crate) fn zeros_like<T: Float>(p: &Tensor<T>) -> Result<Tensor<T>> {
    let b = buf(p)?;
    Ok(Tensor::from_cuda(
        b.gpu().zeros(p.numel())?,
        p.shape().clone(),
    ))
}

/// SGD's values for one parameter (see `Sgd::step`).
pub(crate) struct SgdStep<T> {
    pub lr: T,
    pub mu: T,
    pub keep: T,
    pub wd: T,
    /// The momentum buffer's first step (it starts as the gradient).
    pub first: bool,
    pub nesterov: bool,
}

/// Adam's values for one parameter and step (see `Adam::step`).
pub(crate) struct AdamStep<T> {
    pub b1: T,
    pub b2: T,
    pub step_size: T,
    pub sqrt_bc2: T,
    pub eps: T,
    pub l2: T,
    pub decay: T,
    pub decoupled: bool,
}

/// LARS's values for one parameter (see `Lars::step`): the trust ratio is computed on the
/// device when `adapt`.
pub(crate) struct LarsStep<T> {
    pub lr: f64,
    pub eta: f64,
    pub adapt: bool,
    pub mu: T,
    pub wd: T,
    pub nesterov: bool,
}

fn check_same_device<T: Float>(p: &Tensor<T>, other: &Tensor<T>, what: &str) -> Result<()> {
    if other.device() == p.device() {
        Ok(())
    } else {
        Err(Error::invalid(
            "optimizer",
            format!(
                "a parameter on {} has its {what} on {}",
                p.device(),
                other.device()
            ),
        ))
    }
}

/// One SGD update of `p` (and of its momentum buffer, when there is one).
pub(crate) fn sgd<T: Float>(
    p: &mut Tensor<T>,
    g: &Tensor<T>,
    momentum: Option<&mut Tensor<T>>,
    h: &SgdStep<T>,
) -> Result<()> {
    check_same_device(p, g, "gradient")?;
    let n = p.numel() as i64;
    let mode: i32 = match (&momentum, h.first) {
        (None, _) => 0,
        (Some(_), true) => 1,
        (Some(_), false) => 2,
    };
    let nesterov = h.nesterov as i32;
    let gb = buf(g)?;
    let gpu = gb.gpu().clone();
    let w = p.cuda_buffer_mut()?;
    match momentum {
        Some(m) => {
            check_same_device(g, m, "momentum buffer")?;
            let b = m.cuda_buffer_mut()?;
            launch!(
                gpu,
                T,
                "sgd_step",
                grid(n as usize),
                w.slice_for_update(),
                gb.slice(),
                b.slice_for_update(),
                &n,
                &h.lr,
                &h.mu,
                &h.keep,
                &h.wd,
                &mode,
                &nesterov
            )
        }
        // Mode 0 never touches the buffer argument: the gradient stands in for it.
        None => launch!(
            gpu,
            T,
            "sgd_step",
            grid(n as usize),
            w.slice_for_update(),
            gb.slice(),
            gb.slice(),
            &n,
            &h.lr,
            &h.mu,
            &h.keep,
            &h.wd,
            &mode,
            &nesterov
        ),
    }
}

/// One Adam/AdamW update of `p` and its moments `m`, `v`.
pub(crate) fn adam<T: Float>(
    p: &mut Tensor<T>,
    g: &Tensor<T>,
    m: &mut Tensor<T>,
    v: &mut Tensor<T>,
    h: &AdamStep<T>,
) -> Result<()> {
    check_same_device(p, g, "gradient")?;
    check_same_device(p, m, "first moment")?;
    check_same_device(p, v, "second moment")?;
    let n = p.numel() as i64;
    let decoupled = h.decoupled as i32;
    let gb = buf(g)?;
    let gpu = gb.gpu().clone();
    let w = p.cuda_buffer_mut()?;
    let mb = m.cuda_buffer_mut()?;
    let vb = v.cuda_buffer_mut()?;
    launch!(
        gpu,
        T,
        "adam_step",
        grid(n as usize),
        w.slice_for_update(),
        gb.slice(),
        mb.slice_for_update(),
        vb.slice_for_update(),
        &n,
        &h.b1,
        &h.b2,
        &h.step_size,
        &h.sqrt_bc2,
        &h.eps,
        &h.l2,
        &h.decay,
        &decoupled
    )
}

/// Blocks of the LARS norm reduction: a fixed count for a given size, so that the sums run
/// in the same order every time.
const LARS_BLOCKS: usize = 256;

/// One LARS update of `p` and its momentum `v`: the norms `‖p‖`, `‖g + λ·p‖` reduced on the
/// device in double (partial sums per block, then one thread in block order), the scaled
/// learning rate left on the device for the update kernel.
pub(crate) fn lars<T: Float>(
    p: &mut Tensor<T>,
    g: &Tensor<T>,
    v: &mut Tensor<T>,
    h: &LarsStep<T>,
) -> Result<()> {
    check_same_device(p, g, "gradient")?;
    check_same_device(p, v, "momentum")?;
    let n = p.numel() as i64;
    let gb = buf(g)?;
    let gpu = gb.gpu().clone();
    let blocks = if h.adapt {
        p.numel().div_ceil(256).clamp(1, LARS_BLOCKS)
    } else {
        0
    };
    let mut partial = gpu
        .stream
        .alloc_zeros::<f64>(2 * blocks.max(1))
        .map_err(cuda_err("cuda alloc"))?;
    let mut scaled_lr = gpu
        .stream
        .alloc_zeros::<T>(1)
        .map_err(cuda_err("cuda alloc"))?;
    let w = p.cuda_buffer_mut()?;
    if blocks > 0 {
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            gpu,
            T,
            "lars_norms",
            cfg,
            w.slice(),
            gb.slice(),
            &h.wd,
            &n,
            &mut partial
        )?;
    }
    let (nblocks, adapt) = (blocks as i32, h.adapt as i32);
    launch!(
        gpu,
        T,
        "lars_trust",
        LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1, 1, 1),
            shared_mem_bytes: 0,
        },
        &partial,
        &nblocks,
        &h.lr,
        &h.eta,
        &adapt,
        &mut scaled_lr
    )?;
    let nesterov = h.nesterov as i32;
    let vb = v.cuda_buffer_mut()?;
    launch!(
        gpu,
        T,
        "lars_step",
        grid(n as usize),
        w.slice_for_update(),
        gb.slice(),
        vb.slice_for_update(),
        &n,
        &scaled_lr,
        &h.mu,
        &h.wd,
        &nesterov
    )
}

/// `Σ g²` over GPU tensors (`clip_grad_norm`): reduced on each tensor's device, in its element
/// type, with one value per device brought to the host.
pub(crate) fn sum_of_squares<'a, T: Float>(
    grads: impl Iterator<Item = &'a Tensor<T>>,
) -> Result<f64> {
    let mut per_device: Vec<(Device, Tensor<T>)> = Vec::new();
    for g in grads {
        let s = crate::autograd::no_grad(|| g.square().sum_all())?;
        match per_device.iter_mut().find(|(d, _)| *d == g.device()) {
            Some((_, acc)) => *acc = crate::autograd::no_grad(|| acc.add(&s))?,
            None => per_device.push((g.device(), s)),
        }
    }
    let mut total = 0.0;
    for (_, s) in per_device {
        total += s.to_device(&Device::Cpu)?.item()?.to_f64();
    }
    Ok(total)
}
