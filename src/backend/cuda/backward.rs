//! The GPU half of the autograd table: the vector–Jacobian product of every [`Op`] whose
//! gradient is on a GPU. Like `Op::backward`, one arm per op and no catch-all, so an op added
//! to the engine without a GPU gradient does not compile with the `cuda` feature. Arms whose
//! CPU rule is composed of dispatching ops (reshape, permute, broadcast, sum, concat) reuse it.

use super::{blas, nn, ops, similarity};
use crate::autograd::Op;
use crate::distributed::gather;
use crate::error::Result;
use crate::ops::{movement, reduce};
use crate::tensor::{Float, Tensor};

/// Gradients of `op`'s inputs given the gradient `grad` of its output `out` (in
/// `Op::inputs` order; `None` where an input needs none).
pub(crate) fn backward<T: Float>(
    op: &Op<T>,
    out: &Tensor<T>,
    grad: &Tensor<T>,
) -> Result<Vec<Option<Tensor<T>>>> {
    let needs = |t: &Tensor<T>| t.requires_grad();
    Ok(match op {
        Op::Unary { kind, input } => vec![Some(ops::unary_backward(*kind, input, out, grad)?)],
        Op::Binary { kind, lhs, rhs } => {
            let (gl, gr) = ops::binary_backward(*kind, lhs, rhs, grad, (needs(lhs), needs(rhs)))?;
            vec![gl, gr]
        }
        Op::MatMul { lhs, rhs } => {
            let (gl, gr) = blas::matmul_backward(lhs, rhs, grad, (needs(lhs), needs(rhs)))?;
            vec![gl, gr]
        }
        Op::Reshape { input } => vec![Some(grad.reshape(input.dims())?)],
        Op::Permute { perm, .. } => vec![Some(movement::permute_backward(grad, perm)?)],
        Op::BroadcastTo { input } => vec![Some(reduce::sum_to_shape(grad, input.shape())?)],
        Op::Narrow { input, dim, start } => {
            vec![Some(ops::narrow_backward(
                grad,
                input.shape(),
                *dim,
                *start,
            )?)]
        }
        Op::Concat { inputs, dim } => movement::concat_backward(grad, inputs, *dim)?
            .into_iter()
            .zip(inputs)
            .map(|(g, t)| needs(t).then_some(g))
            .collect(),
        Op::IndexSelect {
            input,
            dim,
            indices,
        } => {
            vec![Some(ops::index_select_backward(
                grad,
                input.shape(),
                *dim,
                indices,
            )?)]
        }
        Op::Gather { input, dim, index } => {
            let offsets =
                crate::ops::index::gather_offsets(input.shape(), *dim, index, grad.shape());
            vec![Some(ops::scatter_add(grad, &offsets, input.shape())?)]
        }
        Op::Where {
            mask,
            on_true,
            on_false,
        } => {
            let (gt, gf) = ops::where_backward(grad, mask)?;
            vec![needs(on_true).then_some(gt), needs(on_false).then_some(gf)]
        }
        Op::Sum { input, axes } => vec![Some(reduce::sum_backward(grad, input.shape(), axes)?)],
        Op::Extremum { input, arg, .. } => vec![Some(ops::scatter_add(grad, arg, input.shape())?)],
        Op::Conv2d {
            input,
            weight,
            bias,
            geometry,
        } => {
            let (gi, gw) =
                nn::conv2d_backward(input, weight, geometry, grad, (needs(input), needs(weight)))?;
            let gb = match bias {
                Some(b) => Some(
                    needs(b)
                        .then(|| nn::conv2d_bias_backward(grad, geometry))
                        .transpose()?,
                ),
                None => None,
            };
            [gi, gw].into_iter().chain(gb).collect()
        }
        Op::MaxPool2d { input, arg } => vec![Some(ops::scatter_add(grad, arg, input.shape())?)],
        Op::AvgPool2d { input, geometry } => {
            vec![Some(nn::avg_pool2d_backward(
                grad,
                input.shape(),
                geometry,
            )?)]
        }
        Op::BatchNorm {
            input,
            gamma,
            beta,
            saved,
        } => {
            let (gi, gg, gb) = nn::batch_norm_backward(input, gamma, saved, grad, needs(input))?;
            vec![gi, needs(gamma).then_some(gg), needs(beta).then_some(gb)]
        }
        Op::Linear {
            input,
            weight,
            bias,
        } => {
            let need = [
                needs(input),
                needs(weight),
                bias.as_ref().is_some_and(needs),
            ];
            let [gi, gw, gb] = blas::linear_backward(input, weight, grad, need)?;
            [gi, gw]
                .into_iter()
                .chain(bias.as_ref().map(|_| gb))
                .collect()
        }
        Op::SimilarityLse { a, b, saved } => {
            let (ga, gb) = similarity::backward(a, b, saved, out, grad, (needs(a), needs(b)))?;
            vec![ga, gb]
        }
        // The collective backends exchange host buffers: the gradient goes through the host
        // and comes back.
        Op::AllGatherRows { input, comm } => {
            let host = grad.to_device(&crate::Device::Cpu)?;
            let cpu_input = input.detach().to_device(&crate::Device::Cpu)?;
            let g = gather::all_gather_rows_backward(&host, &cpu_input, comm)?;
            vec![Some(g.to_device(&input.device())?)]
        }
        Op::ToDevice { input } => vec![Some(grad.to_device(&input.device())?)],
    })
}
