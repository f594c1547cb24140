//! GPU versions of the elementwise, movement, indexing and reduction ops. Each takes the same
//! inputs as its CPU twin in `src/ops/`, after that twin has validated them, and records the
//! same autograd op, so the backward table applies unchanged.

mod elementwise;
mod index;
mod movement;
mod reduce;

pub(crate) use elementwise::{binary, binary_backward, unary, unary_backward};
pub(crate) use index::{gather, index_select, index_select_backward, scatter_add};
pub(crate) use movement::{
    broadcast_to, concat, narrow, narrow_backward, permute, strided_copy, where_backward,
    where_cond,
};
pub(crate) use reduce::{extremum, finite_or_zero, sum, sum_plan};

use super::{Buffer, Gpu, buf};
use crate::error::Result;
use crate::tensor::{Float, Tensor};
use std::sync::Arc;

/// A fresh output buffer on `x`'s GPU.
pub(crate) fn out_like<T: Float>(x: &Tensor<T>, len: usize) -> Result<Buffer<T>> {
    buf(x)?.gpu().zeros(len)
}

fn gpu_of<T: Float>(x: &Tensor<T>) -> Result<Arc<Gpu>> {
    Ok(buf(x)?.gpu().clone())
}
