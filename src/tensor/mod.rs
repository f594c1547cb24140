//! The [`Tensor`]: an immutable, reference-counted n-d array of `f32` or `f64` that remembers
//! the operation that produced it when gradients are being recorded.
//!
//! Data is row-major and contiguous; every op writes a fresh buffer, so a tensor never changes
//! after it is built. Cloning a tensor is cheap (it shares the buffer).

mod dtype;
mod shape;

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

pub(crate) struct Inner<T: Float> {
    id: TensorId,
    shape: Shape,
    data: Arc<Vec<T>>,
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

    /// A result that shares `source`'s buffer under a new shape (reshape, squeeze...).
    pub(crate) fn from_op_shared(source: &Tensor<T>, shape: Shape, op: Op<T>) -> Self {
        let record = autograd::is_grad_enabled() && op.inputs().iter().any(|t| t.requires_grad());
        let data = Arc::clone(&source.inner.data);
        Self::build(data, shape, record, record.then_some(op))
    }

    /// A new leaf that shares this tensor's data and is tracked: gradients flow to it.
    pub fn requires_grad_(self) -> Self {
        Self::build(
            Arc::clone(&self.inner.data),
            self.inner.shape.clone(),
            true,
            None,
        )
    }

    /// A new constant that shares this tensor's data, cut off from the graph.
    pub fn detach(&self) -> Self {
        Self::build(
            Arc::clone(&self.inner.data),
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
        self.inner.data.len()
    }
    pub fn dtype(&self) -> DType {
        T::DTYPE
    }
    pub fn requires_grad(&self) -> bool {
        self.inner.requires_grad
    }
    /// The row-major data.
    pub fn data(&self) -> &[T] {
        &self.inner.data
    }
    pub fn to_vec(&self) -> Vec<T> {
        self.inner.data.to_vec()
    }
    /// The data as `f64`, whatever the element type.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.inner.data.iter().map(|v| v.to_f64()).collect()
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
    pub fn data_mut(&mut self) -> Option<&mut [T]> {
        let inner = Arc::get_mut(&mut self.inner)?;
        Arc::get_mut(&mut inner.data).map(|v| v.as_mut_slice())
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
        let inner = Inner {
            id: self.inner.id,
            shape: self.inner.shape.clone(),
            data: Arc::new(data),
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
            "Tensor<{:?}>{:?}{} {:?}{}",
            T::DTYPE,
            self.shape(),
            if self.requires_grad() { " grad" } else { "" },
            shown,
            if data.len() > 8 { " …" } else { "" }
        )
    }
}
