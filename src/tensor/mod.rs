//! The [`Tensor`]: an immutable, reference-counted n-d array of `f32` or `f64` that remembers
//! the operation that produced it when gradients are being recorded.
//!
//! Data is row-major and contiguous; every op writes a fresh buffer, so a tensor never changes
//! after it is built. Cloning a tensor is cheap (it shares the buffer). The buffer lives in host
//! memory or, with the `cuda` feature, on a GPU (`Storage`; [`Tensor::to_device`] moves it).

mod device;
mod dtype;
mod shape;

pub use device::Device;
pub use dtype::{DType, Float};
pub use shape::Shape;
pub(crate) use shape::StridedIter;

use crate::autograd::{self, Op};
use crate::error::{Error, Result};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A process-unique identity, used to key gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// An n-d array with optional gradient tracking. `T` is `f32` (the default) or `f64`.
pub struct Tensor<T: Float = f32> {
    pub(crate) inner: Arc<Inner<T>>,
}

/// Where a tensor's elements are. The CPU variant is first and the match in [`Tensor::data`]
/// is the only cost CPU code pays for the GPU's existence.
pub(crate) enum Storage<T: Float> {
    Cpu(Arc<Vec<T>>),
    #[cfg(feature = "cuda")]
    Cuda(Arc<crate::backend::cuda::Buffer<T>>),
}

impl<T: Float> Clone for Storage<T> {
    fn clone(&self) -> Self {
        match self {
            Storage::Cpu(v) => Storage::Cpu(Arc::clone(v)),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => Storage::Cuda(Arc::clone(b)),
        }
    }
}

impl<T: Float> Storage<T> {
    fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => Device::Cuda(b.device()),
        }
    }
}

pub(crate) struct Inner<T: Float> {
    id: TensorId,
    shape: Shape,
    data: Storage<T>,
    requires_grad: bool,
    /// The op that produced this tensor; present only when gradients were recorded.
    op: Option<Op<T>>,
}

impl<T: Float> Clone for Tensor<T> {
    fn clone(&self) -> Self {
        Tensor {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Float> Tensor<T> {
    fn build(data: Arc<Vec<T>>, shape: Shape, requires_grad: bool, op: Option<Op<T>>) -> Self {
        debug_assert_eq!(data.len(), shape.numel());
        Self::build_on(Storage::Cpu(data), shape, requires_grad, op)
    }

    fn build_on(data: Storage<T>, shape: Shape, requires_grad: bool, op: Option<Op<T>>) -> Self {
        Tensor {
            inner: Arc::new(Inner {
                id: TensorId::fresh(),
                shape,
                data,
                requires_grad,
                op,
            }),
        }
    }

    /// A constant tensor from a buffer and a shape; the buffer length must match the shape.
    pub fn from_vec(data: Vec<T>, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::invalid(
                "from_vec",
                format!(
                    "{} values cannot fill shape {:?} ({} elements)",
                    data.len(),
                    shape,
                    shape.numel()
                ),
            ));
        }
        Ok(Self::build(Arc::new(data), shape, false, None))
    }

    /// A constant tensor from values given as `f64` (convenient in tests and examples).
    pub fn from_f64s(values: &[f64], shape: impl Into<Shape>) -> Result<Self> {
        Self::from_vec(values.iter().map(|&v| T::from_f64(v)).collect(), shape)
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar(value: T) -> Self {
        Self::build(Arc::new(vec![value]), Shape::scalar(), false, None)
    }

    /// A tensor filled with one value.
    pub fn full(shape: impl Into<Shape>, value: T) -> Self {
        let shape = shape.into();
        Self::build(Arc::new(vec![value; shape.numel()]), shape, false, None)
    }
    pub fn zeros(shape: impl Into<Shape>) -> Self {
        Self::full(shape, T::ZERO)
    }
    pub fn ones(shape: impl Into<Shape>) -> Self {
        Self::full(shape, T::ONE)
    }

    /// Standard-normal entries drawn from `rng`.
    pub fn randn(shape: impl Into<Shape>, rng: &mut impl Rng) -> Self {
        let shape = shape.into();
        let data = (0..shape.numel())
            .map(|_| T::from_f64(StandardNormal.sample(rng)))
            .collect();
        Self::build(Arc::new(data), shape, false, None)
    }

    /// Entries uniform in `[low, high)` drawn from `rng`.
    pub fn rand_uniform(
        shape: impl Into<Shape>,
        low: f64,
        high: f64,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let shape = shape.into();
        let dist = Uniform::new(low, high).map_err(|e| {
            Error::invalid("rand_uniform", format!("bad range [{low}, {high}): {e}"))
        })?;
        let data = (0..shape.numel())
            .map(|_| T::from_f64(dist.sample(rng)))
            .collect();
        Ok(Self::build(Arc::new(data), shape, false, None))
    }

    /// The result of an op: records `op` in the graph only when gradients are enabled and some
    /// input requires a gradient.
    pub(crate) fn from_op(data: Vec<T>, shape: Shape, op: Op<T>) -> Self {
        let record = autograd::is_grad_enabled() && op.inputs().iter().any(|t| t.requires_grad());
        if record {
            Self::build(Arc::new(data), shape, true, Some(op))
        } else {
            Self::build(Arc::new(data), shape, false, None)
        }
    }

    /// The result of an op computed on a GPU (see [`Tensor::from_op`]).
    #[cfg(feature = "cuda")]
    pub(crate) fn from_op_cuda(
        data: crate::backend::cuda::Buffer<T>,
        shape: Shape,
        op: Op<T>,
    ) -> Self {
        let record = autograd::is_grad_enabled() && op.inputs().iter().any(|t| t.requires_grad());
        let data = Storage::Cuda(Arc::new(data));
        Self::build_on(data, shape, record, record.then_some(op))
    }

    /// A constant whose data is on a GPU.
    #[cfg(feature = "cuda")]
    pub(crate) fn from_cuda(data: crate::backend::cuda::Buffer<T>, shape: Shape) -> Self {
        Self::build_on(Storage::Cuda(Arc::new(data)), shape, false, None)
    }

    /// The GPU buffer, when the data is on a GPU.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda_buffer(&self) -> Option<&crate::backend::cuda::Buffer<T>> {
        match &self.inner.data {
            Storage::Cuda(b) => Some(b),
            Storage::Cpu(_) => None,
        }
    }

    /// A result that shares `source`'s buffer under a new shape (reshape, squeeze...).
    pub(crate) fn from_op_shared(source: &Tensor<T>, shape: Shape, op: Op<T>) -> Self {
        let record = autograd::is_grad_enabled() && op.inputs().iter().any(|t| t.requires_grad());
        let data = source.inner.data.clone();
        Self::build_on(data, shape, record, record.then_some(op))
    }

    /// A new leaf that shares this tensor's data and is tracked: gradients flow to it.
    pub fn requires_grad_(self) -> Self {
        Self::build_on(
            self.inner.data.clone(),
            self.inner.shape.clone(),
            true,
            None,
        )
    }

    /// A new constant that shares this tensor's data, cut off from the graph.
    pub fn detach(&self) -> Self {
        Self::build_on(
            self.inner.data.clone(),
            self.inner.shape.clone(),
            false,
            None,
        )
    }

    pub fn id(&self) -> TensorId {
        self.inner.id
    }
    pub fn shape(&self) -> &Shape {
        &self.inner.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.inner.shape.dims()
    }
    pub fn rank(&self) -> usize {
        self.inner.shape.rank()
    }
    pub fn numel(&self) -> usize {
        self.inner.shape.numel()
    }
    /// Where the data lives.
    pub fn device(&self) -> Device {
        self.inner.data.device()
    }
    /// True when the data is on a GPU.
    pub fn is_cuda(&self) -> bool {
        !matches!(self.inner.data, Storage::Cpu(_))
    }
    pub fn dtype(&self) -> DType {
        T::DTYPE
    }
    pub fn requires_grad(&self) -> bool {
        self.inner.requires_grad
    }
    /// The row-major data, in host memory.
    ///
    /// For a tensor on a GPU this is a host copy, made on first use and kept with the buffer
    /// (the buffer never changes, so the copy never goes stale). It exists so that reading a
    /// GPU tensor's values never panics; ops never call it on GPU tensors (they dispatch to GPU
    /// kernels), and [`Tensor::try_to_vec`] reports a failed copy as an `Err`. Should the copy
    /// fail here, the values read as NaN and the error is printed once to stderr.
    pub fn data(&self) -> &[T] {
        match &self.inner.data {
            Storage::Cpu(v) => v,
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => b.host(),
        }
    }
    pub fn to_vec(&self) -> Vec<T> {
        self.data().to_vec()
    }
    /// The data copied to a host `Vec`, with a failed GPU copy as an `Err`.
    pub fn try_to_vec(&self) -> Result<Vec<T>> {
        match &self.inner.data {
            Storage::Cpu(v) => Ok(v.to_vec()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(b) => b.try_host().map(<[T]>::to_vec),
        }
    }
    /// The data as `f64`, whatever the element type.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.data().iter().map(|v| v.to_f64()).collect()
    }

    /// This tensor on `device`: the same tensor when it is already there, else a copy.
    /// Differentiable: the gradient moves back to this tensor's device. A GPU in a build
    /// without the `cuda` feature, or one that cannot be initialised, is an `Err`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let data = match (self.device(), *device) {
            (from, to) if from == to => self.inner.data.clone(),
            #[cfg(feature = "cuda")]
            (_, to) => crate::backend::cuda::move_storage(self, to)?,
            #[cfg(not(feature = "cuda"))]
            (_, to) => {
                to.check()?;
                unreachable!("without the cuda feature, only the CPU passes Device::check")
            }
        };
        // Always recorded (even as an identity, like a solo all-gather), so that the op table
        // exercises the op on a machine without a GPU.
        let op = Op::ToDevice {
            input: self.clone(),
        };
        let record = autograd::is_grad_enabled() && self.requires_grad();
        Ok(Self::build_on(
            data,
            self.shape().clone(),
            record,
            record.then_some(op),
        ))
    }
    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<T> {
        match self.data() {
            [v] => Ok(*v),
            _ => Err(Error::BadRank {
                op: "item",
                expected: "a tensor with exactly one element",
                shape: self.dims().to_vec(),
            }),
        }
    }

    /// The same values in another element type, as a constant (casting is not differentiated).
    /// The conversion runs on the host: the result of casting a GPU tensor is on the CPU.
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        let data = self
            .data()
            .iter()
            .map(|v| U::from_f64(v.to_f64()))
            .collect();
        Tensor::build(Arc::new(data), self.shape().clone(), false, None)
    }

    pub(crate) fn op(&self) -> Option<&Op<T>> {
        self.inner.op.as_ref()
    }

    /// Mutable access to the buffer when nothing else shares it (no clone, no graph holds it).
    /// Optimisers use this to update parameters in place.
    /// `None` for a GPU tensor: its buffer is not host memory.
    pub fn data_mut(&mut self) -> Option<&mut [T]> {
        let inner = Arc::get_mut(&mut self.inner)?;
        match &mut inner.data {
            Storage::Cpu(v) => Arc::get_mut(v).map(|v| v.as_mut_slice()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => None,
        }
    }

    /// The GPU buffer for an update in place (optimisers): this tensor's own when nothing else
    /// shares it, otherwise first replaced by a device copy (keeping the identity, like
    /// [`Tensor::set_data_from`]). An `Err` for a tensor on the CPU.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda_buffer_mut(&mut self) -> Result<&mut crate::backend::cuda::Buffer<T>> {
        let unique = match Arc::get_mut(&mut self.inner).map(|i| &mut i.data) {
            Some(Storage::Cuda(b)) => Arc::get_mut(b).is_some(),
            _ => false,
        };
        if !unique {
            let copy = crate::backend::cuda::buf(self)?.duplicate()?;
            let copy = Tensor::from_cuda(copy, self.shape().clone());
            self.set_data_from(&copy)?;
            // `copy` goes here, leaving this tensor the buffer's only owner.
        }
        let not_unique = || Error::invalid("cuda_buffer_mut", "internal: the buffer is shared");
        match &mut Arc::get_mut(&mut self.inner).ok_or_else(not_unique)?.data {
            Storage::Cuda(b) => Arc::get_mut(b).ok_or_else(not_unique),
            Storage::Cpu(_) => Err(Error::invalid(
                "cuda_buffer_mut",
                "internal: a tensor expected on the GPU is on the CPU",
            )),
        }
    }

    /// Replaces the data with `data` of the same shape, keeping the identity and tracking flag.
    /// For parameters that are updated outside the graph.
    pub fn set_data(&mut self, data: Vec<T>) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::invalid(
                "set_data",
                format!("{} values for shape {:?}", data.len(), self.shape()),
            ));
        }
        let data = Tensor::from_vec(data, self.shape().clone())?.to_device(&self.device())?;
        self.set_data_from(&data)
    }

    /// Moves this tensor's data to `device` in place, keeping its identity and tracking flag
    /// (and dropping any recorded op): how modules move their parameters.
    pub fn to_device_in_place(&mut self, device: &Device) -> Result<()> {
        if self.device() == *device {
            return Ok(());
        }
        let moved = autograd::no_grad(|| self.detach().to_device(device))?;
        let inner = Inner {
            id: self.inner.id,
            shape: self.inner.shape.clone(),
            data: moved.inner.data.clone(),
            requires_grad: self.inner.requires_grad,
            op: None,
        };
        self.inner = Arc::new(inner);
        Ok(())
    }

    /// Replaces the data with `source`'s (same shape and device), keeping this tensor's
    /// identity and tracking flag. Optimisers use it to update parameters that live on a GPU.
    pub fn set_data_from(&mut self, source: &Tensor<T>) -> Result<()> {
        if source.shape() != self.shape() || source.device() != self.device() {
            return Err(Error::invalid(
                "set_data_from",
                format!(
                    "source {:?} on {} for a tensor {:?} on {}",
                    source.shape(),
                    source.device(),
                    self.shape(),
                    self.device()
                ),
            ));
        }
        let inner = Inner {
            id: self.inner.id,
            shape: self.inner.shape.clone(),
            data: source.inner.data.clone(),
            requires_grad: self.inner.requires_grad,
            op: None,
        };
        self.inner = Arc::new(inner);
        Ok(())
    }

    /// True when every element is finite.
    pub fn all_finite(&self) -> bool {
        self.data().iter().all(|v| v.is_finite())
    }
}

impl<T: Float> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.data();
        let shown: Vec<_> = data.iter().take(8).collect();
        write!(
            f,
            "Tensor<{:?}>{:?}{}{} {:?}{}",
            T::DTYPE,
            self.shape(),
            match self.device() {
                Device::Cpu => String::new(),
                d => format!(" {d}"),
            },
            if self.requires_grad() { " grad" } else { "" },
            shown,
            if data.len() > 8 { " …" } else { "" }
        )
    }
}
