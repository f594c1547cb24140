//! Compute backends: `cpu` (always) and `cuda` (feature `cuda`). The kernels here are the
//! crate's only `unsafe` code.
//!
//! Ops choose their backend from their inputs' devices (`op_device`, through the
//! `on_cuda!` early return at the top of each op): all on the CPU
//! runs the CPU code unchanged, all on one GPU runs `cuda`, anything else is an `Err` naming
//! both devices.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

/// What an element type must offer the GPU backend; empty without the `cuda` feature. A
/// supertrait of [`Float`](crate::Float), so that generic ops can hand their buffers to cudarc.
#[cfg(feature = "cuda")]
pub use cuda::CudaFloat as BackendElem;

/// What an element type must offer the GPU backend; empty without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub trait BackendElem {}
#[cfg(not(feature = "cuda"))]
impl BackendElem for f32 {}
#[cfg(not(feature = "cuda"))]
impl BackendElem for f64 {}

/// The device an op over its inputs runs on. Rank-0 constants on the CPU go along with GPU
/// inputs (as PyTorch's CPU scalars do: the losses build such constants); any other mix of
/// devices is an `Err`. Without the `cuda` feature every tensor is on the CPU and ops never ask.
#[cfg(feature = "cuda")]
pub(crate) use cuda::common_device as op_device;

/// The GPU early return at the top of an op: when the inputs (an array or `Vec` of
/// `&Tensor`) are on a GPU, return `$body` (with `$dev` bound to the device ordinal); on the
/// CPU, fall through to the CPU code. Expands to nothing without the `cuda` feature, so the
/// CPU path pays nothing in such builds.
macro_rules! on_cuda {
    ($op:expr, $inputs:expr, |$dev:ident| $body:expr) => {
        #[cfg(feature = "cuda")]
        if let $crate::tensor::Device::Cuda($dev) = $crate::backend::op_device($op, &$inputs[..])? {
            return $body;
        }
    };
}
pub(crate) use on_cuda;
