//! Reverse-mode automatic differentiation.
//!
//! A tensor produced while gradients are enabled, from at least one input that requires a
//! gradient, keeps its `Op`: the closed list of primitive operations below, each holding its
//! inputs and whatever it saved for the backward pass. [`Tensor::backward`] orders the graph
//! topologically, walks it from the output, calls each op's backward (one arm per op, no
//! catch-all: an op without a gradient does not compile), and returns a fresh [`Gradients`] map.
//! Nothing is stored on the graph, so `backward` can be called twice with the same answer;
//! intermediate gradients are dropped as soon as their node has been processed.
//!
//! Gradients are computed with recording off: higher-order derivatives are not supported.

use crate::distributed::{Collective, gather};
use crate::error::{Error, Result};
use crate::ops::{binary, conv, index, matmul, movement, norm, pool, reduce, similarity, unary};
use crate::tensor::{Float, Tensor, TensorId};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True unless inside [`no_grad`] (or a [`NoGradGuard`]) on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// While alive, ops on this thread record no graph (evaluation, optimiser updates).
#[derive(Debug)]
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    pub fn new() -> Self {
        let previous = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard { previous }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Runs `f` with graph recording off.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// The gradients of a two-input op, `None` where an input needs none.
pub(crate) type GradPair<T> = (Option<Tensor<T>>, Option<Tensor<T>>);

/// A recorded primitive operation: its inputs and what it saved for backward.
pub(crate) enum Op<T: Float> {
    Unary {
        kind: unary::UnaryOp<T>,
        input: Tensor<T>,
    },
    Binary {
        kind: binary::BinaryOp,
        lhs: Tensor<T>,
        rhs: Tensor<T>,
    },
    MatMul {
        lhs: Tensor<T>,
        rhs: Tensor<T>,
    },
    Reshape {
        input: Tensor<T>,
    },
    Permute {
        input: Tensor<T>,
        perm: Vec<usize>,
    },
    BroadcastTo {
        input: Tensor<T>,
    },
    Narrow {
        input: Tensor<T>,
        dim: usize,
        start: usize,
    },
    Concat {
        inputs: Vec<Tensor<T>>,
        dim: usize,
    },
    IndexSelect {
        input: Tensor<T>,
        dim: usize,
        indices: Vec<usize>,
    },
    Gather {
        input: Tensor<T>,
        dim: usize,
        /// Same shape as the output.
        index: Vec<usize>,
    },
    Where {
        mask: Vec<bool>,
        on_true: Tensor<T>,
        on_false: Tensor<T>,
    },
    Sum {
        input: Tensor<T>,
        axes: Vec<usize>,
    },
    /// Max or min over axes; `arg` holds the flat input offset that won, per output element.
    Extremum {
        input: Tensor<T>,
        arg: Vec<usize>,
        largest: bool,
    },
    Conv2d {
        input: Tensor<T>,
        weight: Tensor<T>,
        /// `(OC)`, added in the forward kernel.
        bias: Option<Tensor<T>>,
        geometry: conv::Conv2dGeometry,
    },
    MaxPool2d {
        input: Tensor<T>,
        /// Flat input offset of each output's maximum.
        arg: Vec<usize>,
    },
    AvgPool2d {
        input: Tensor<T>,
        geometry: pool::PoolGeometry,
    },
    /// `x·Wᵀ + b` (see `nn::linear`); the bias is optional.
    Linear {
        input: Tensor<T>,
        weight: Tensor<T>,
        bias: Option<Tensor<T>>,
    },
    /// Fused batch norm (see `ops::norm`); γ and β are constants when the caller gave none.
    BatchNorm {
        input: Tensor<T>,
        gamma: Tensor<T>,
        beta: Tensor<T>,
        saved: Box<norm::BatchNormSaved<T>>,
    },
    /// Fused `log Σ exp(scale·a_i·b_k)` over allowed k (see `ops::similarity`).
    SimilarityLse {
        a: Tensor<T>,
        b: Tensor<T>,
        saved: Box<similarity::SimilaritySaved<T>>,
    },
    /// Rows of every rank, rank-major (see `distributed::gather`); backward all-reduces.
    AllGatherRows {
        input: Tensor<T>,
        comm: Arc<dyn Collective<T>>,
    },
    /// A copy to another device (see [`Tensor::to_device`]); backward moves the gradient back.
    ToDevice {
        input: Tensor<T>,
    },
}

/// The primitive op kinds, one per `Op` variant. Tests use [`OpKind::ALL`] to check that every
/// primitive is exercised by the gradient-check table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Unary,
    Binary,
    MatMul,
    Reshape,
    Permute,
    BroadcastTo,
    Narrow,
    Concat,
    IndexSelect,
    Gather,
    Where,
    Sum,
    Extremum,
    Conv2d,
    MaxPool2d,
    AvgPool2d,
    BatchNorm,
    Linear,
    SimilarityLse,
    AllGatherRows,
    ToDevice,
}

impl OpKind {
    pub const ALL: [OpKind; 21] = [
        OpKind::Unary,
        OpKind::Binary,
        OpKind::MatMul,
        OpKind::Reshape,
        OpKind::Permute,
        OpKind::BroadcastTo,
        OpKind::Narrow,
        OpKind::Concat,
        OpKind::IndexSelect,
        OpKind::Gather,
        OpKind::Where,
        OpKind::Sum,
        OpKind::Extremum,
        OpKind::Conv2d,
        OpKind::MaxPool2d,
        OpKind::AvgPool2d,
        OpKind::BatchNorm,
        OpKind::Linear,
        OpKind::SimilarityLse,
        OpKind::AllGatherRows,
        OpKind::ToDevice,
    ];
}

/// The name of every primitive op (unary and binary functions listed one by one), as
/// [`Tensor::graph_op_names`] reports them. Tests check that the gradient-check table reaches
/// each of them.
pub const PRIMITIVE_OPS: &[&str] = &[
    "neg",
    "exp",
    "log",
    "sqrt",
    "abs",
    "relu",
    "leaky_relu",
    "gelu",
    "tanh",
    "sigmoid",
    "softplus",
    "powf",
    "add_scalar",
    "mul_scalar",
    "clamp",
    "add",
    "sub",
    "mul",
    "div",
    "maximum",
    "minimum",
    "pow",
    "matmul",
    "reshape",
    "permute",
    "broadcast_to",
    "narrow",
    "concat",
    "index_select",
    "gather",
    "where",
    "sum",
    "max",
    "min",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "batch_norm",
    "linear",
    "similarity_logsumexp",
    "all_gather_rows",
    "to_device",
];

impl<T: Float> Op<T> {
    /// The op's name, as listed in [`PRIMITIVE_OPS`].
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Unary { kind, .. } => kind.name(),
            Op::Binary { kind, .. } => kind.name(),
            Op::MatMul { .. } => "matmul",
            Op::Reshape { .. } => "reshape",
            Op::Permute { .. } => "permute",
            Op::BroadcastTo { .. } => "broadcast_to",
            Op::Narrow { .. } => "narrow",
            Op::Concat { .. } => "concat",
            Op::IndexSelect { .. } => "index_select",
            Op::Gather { .. } => "gather",
            Op::Where { .. } => "where",
            Op::Sum { .. } => "sum",
            Op::Extremum { largest, .. } => {
                if *largest {
                    "max"
                } else {
                    "min"
                }
            }
            Op::Conv2d { .. } => "conv2d",
            Op::MaxPool2d { .. } => "max_pool2d",
            Op::AvgPool2d { .. } => "avg_pool2d",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Linear { .. } => "linear",
            Op::SimilarityLse { .. } => "similarity_logsumexp",
            Op::AllGatherRows { .. } => "all_gather_rows",
            Op::ToDevice { .. } => "to_device",
        }
    }

    pub(crate) fn kind(&self) -> OpKind {
        match self {
            Op::Unary { .. } => OpKind::Unary,
            Op::Binary { .. } => OpKind::Binary,
            Op::MatMul { .. } => OpKind::MatMul,
            Op::Reshape { .. } => OpKind::Reshape,
            Op::Permute { .. } => OpKind::Permute,
            Op::BroadcastTo { .. } => OpKind::BroadcastTo,
            Op::Narrow { .. } => OpKind::Narrow,
            Op::Concat { .. } => OpKind::Concat,
            Op::IndexSelect { .. } => OpKind::IndexSelect,
            Op::Gather { .. } => OpKind::Gather,
            Op::Where { .. } => OpKind::Where,
            Op::Sum { .. } => OpKind::Sum,
            Op::Extremum { .. } => OpKind::Extremum,
            Op::Conv2d { .. } => OpKind::Conv2d,
            Op::MaxPool2d { .. } => OpKind::MaxPool2d,
            Op::AvgPool2d { .. } => OpKind::AvgPool2d,
            Op::BatchNorm { .. } => OpKind::BatchNorm,
            Op::Linear { .. } => OpKind::Linear,
            Op::SimilarityLse { .. } => OpKind::SimilarityLse,
            Op::AllGatherRows { .. } => OpKind::AllGatherRows,
            Op::ToDevice { .. } => OpKind::ToDevice,
        }
    }

    /// The op's tensor inputs, in the order its backward returns their gradients.
    pub(crate) fn inputs(&self) -> Vec<&Tensor<T>> {
        match self {
            Op::Unary { input, .. }
            | Op::Reshape { input }
            | Op::Permute { input, .. }
            | Op::BroadcastTo { input }
            | Op::Narrow { input, .. }
            | Op::IndexSelect { input, .. }
            | Op::Gather { input, .. }
            | Op::Sum { input, .. }
            | Op::Extremum { input, .. }
            | Op::MaxPool2d { input, .. }
            | Op::AvgPool2d { input, .. }
            | Op::AllGatherRows { input, .. }
            | Op::ToDevice { input } => vec![input],
            Op::Binary { lhs, rhs, .. } | Op::MatMul { lhs, rhs } => vec![lhs, rhs],
            Op::Where {
                on_true, on_false, ..
            } => vec![on_true, on_false],
            Op::Concat { inputs, .. } => inputs.iter().collect(),
            Op::Conv2d {
                input,
                weight,
                bias,
                ..
            } => [input, weight].into_iter().chain(bias).collect(),
            Op::SimilarityLse { a, b, .. } => vec![a, b],
            Op::BatchNorm {
                input, gamma, beta, ..
            } => vec![input, gamma, beta],
            Op::Linear {
                input,
                weight,
                bias,
            } => [input, weight].into_iter().chain(bias).collect(),
        }
    }

    /// Vector–Jacobian product: given the gradient of the output `out`, the gradient of each
    /// input (in [`Op::inputs`] order). `None` where an input needs no gradient.
    fn backward(&self, out: &Tensor<T>, grad: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        #[cfg(feature = "cuda")]
        if grad.is_cuda() && !matches!(self, Op::ToDevice { .. }) {
            return crate::backend::cuda::backward::backward(self, out, grad);
        }
        let needs = |t: &Tensor<T>| t.requires_grad();
        Ok(match self {
            Op::Unary { kind, input } => vec![Some(unary::backward(*kind, input, out, grad)?)],
            Op::Binary { kind, lhs, rhs } => {
                let (gl, gr) = binary::backward(*kind, lhs, rhs, grad, needs(lhs), needs(rhs))?;
                vec![gl, gr]
            }
            Op::MatMul { lhs, rhs } => {
                let (gl, gr) = matmul::backward(lhs, rhs, grad, needs(lhs), needs(rhs))?;
                vec![gl, gr]
            }
            Op::Reshape { input } => vec![Some(grad.reshape(input.dims())?)],
            Op::Permute { perm, .. } => vec![Some(movement::permute_backward(grad, perm)?)],
            Op::BroadcastTo { input } => vec![Some(reduce::sum_to_shape(grad, input.shape())?)],
            Op::Narrow { input, dim, start } => {
                vec![Some(movement::narrow_backward(
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
            } => vec![Some(index::index_select_backward(
                grad,
                input.shape(),
                *dim,
                indices,
            )?)],
            Op::Gather { input, dim, index } => {
                vec![Some(index::gather_backward(
                    grad,
                    input.shape(),
                    *dim,
                    index,
                )?)]
            }
            Op::Where {
                mask,
                on_true,
                on_false,
            } => {
                let (gt, gf) = index::where_backward(grad, mask, on_true, on_false)?;
                vec![needs(on_true).then_some(gt), needs(on_false).then_some(gf)]
            }
            Op::Sum { input, axes } => vec![Some(reduce::sum_backward(grad, input.shape(), axes)?)],
            Op::Extremum { input, arg, .. } => {
                vec![Some(reduce::extremum_backward(grad, input.shape(), arg)?)]
            }
            Op::Conv2d {
                input,
                weight,
                bias,
                geometry,
            } => {
                let (gi, gw) =
                    conv::backward(input, weight, geometry, grad, needs(input), needs(weight))?;
                let gb = match bias {
                    Some(b) => Some(
                        needs(b)
                            .then(|| conv::bias_backward(grad, geometry))
                            .transpose()?,
                    ),
                    None => None,
                };
                [gi, gw].into_iter().chain(gb).collect()
            }
            Op::MaxPool2d { input, arg } => {
                vec![Some(pool::max_pool2d_backward(grad, input.shape(), arg)?)]
            }
            Op::AvgPool2d { input, geometry } => {
                vec![Some(pool::avg_pool2d_backward(
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
                let (gi, gg, gb) =
                    norm::batch_norm_backward(input, gamma, beta, saved, grad, needs(input))?;
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
                let [gi, gw, gb] =
                    crate::backend::cpu::gemm::linear_backward(input, weight, grad, need)?;
                [gi, gw]
                    .into_iter()
                    .chain(bias.as_ref().map(|_| gb))
                    .collect()
            }
            Op::SimilarityLse { a, b, saved } => {
                let (ga, gb) = similarity::backward(a, b, saved, out, grad, needs(a), needs(b))?;
                vec![ga, gb]
            }
            Op::AllGatherRows { input, comm } => {
                vec![Some(gather::all_gather_rows_backward(grad, input, comm)?)]
            }
            Op::ToDevice { input } => vec![Some(grad.to_device(&input.device())?)],
        })
    }
}

/// Gradients of one backward pass, keyed by the tensors they belong to (the leaves that
/// required a gradient).
pub struct Gradients<T: Float> {
    map: HashMap<TensorId, Tensor<T>>,
}

impl<T: Float> std::fmt::Debug for Gradients<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.map.iter()).finish()
    }
}

impl<T: Float> Gradients<T> {
    /// The gradient of `t`, if `t` was a tracked leaf reached by the backward pass.
    pub fn get(&self, t: &Tensor<T>) -> Option<&Tensor<T>> {
        self.map.get(&t.id())
    }
    /// The gradient of `t`, or zeros of `t`'s shape when the output does not depend on `t`.
    pub fn get_or_zeros(&self, t: &Tensor<T>) -> Tensor<T> {
        self.get(t).cloned().unwrap_or_else(|| {
            let zeros = Tensor::zeros(t.shape().clone());
            // `t` lives on an initialised device, so the move cannot fail for lack of one.
            zeros.to_device(&t.device()).unwrap_or(zeros)
        })
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn ids(&self) -> impl Iterator<Item = &TensorId> {
        self.map.keys()
    }
}

impl<T: Float> Tensor<T> {
    /// Gradients of this scalar with respect to every tracked leaf it depends on.
    pub fn backward(&self) -> Result<Gradients<T>> {
        if self.numel() != 1 {
            return Err(Error::BadRank {
                op: "backward",
                expected: "a one-element output (use backward_with for others)",
                shape: self.dims().to_vec(),
            });
        }
        self.backward_with(&Tensor::ones(self.shape().clone()).to_device(&self.device())?)
    }

    /// Vector–Jacobian product: gradients of `⟨self, cotangent⟩` with respect to every tracked
    /// leaf. `cotangent` must have this tensor's shape.
    pub fn backward_with(&self, cotangent: &Tensor<T>) -> Result<Gradients<T>> {
        if cotangent.shape() != self.shape() {
            return Err(Error::ShapeMismatch {
                op: "backward_with",
                lhs: self.dims().to_vec(),
                rhs: cotangent.dims().to_vec(),
            });
        }
        let _guard = NoGradGuard::new();
        let mut result = HashMap::new();
        if !self.requires_grad() {
            return Ok(Gradients { map: result });
        }
        let order = topological_order(self);
        let mut pending: HashMap<TensorId, Tensor<T>> = HashMap::new();
        pending.insert(self.id(), cotangent.to_device(&self.device())?.detach());
        for node in order.iter().rev() {
            let Some(grad) = pending.remove(&node.id()) else {
                continue;
            };
            let Some(op) = node.op() else {
                result.insert(node.id(), grad);
                continue;
            };
            let input_grads = op.backward(node, &grad)?;
            for (input, g) in op.inputs().into_iter().zip(input_grads) {
                let Some(g) = g else { continue };
                if !input.requires_grad() {
                    continue;
                }
                debug_assert_eq!(g.shape(), input.shape(), "{:?} backward", op.kind());
                match pending.remove(&input.id()) {
                    Some(acc) => pending.insert(input.id(), accumulate(acc, &g)?),
                    None => pending.insert(input.id(), g),
                };
            }
        }
        Ok(Gradients { map: result })
    }

    /// The kinds of every recorded op in this tensor's graph (for coverage checks).
    pub fn graph_op_kinds(&self) -> HashSet<OpKind> {
        topological_order(self)
            .iter()
            .filter_map(|t| t.op().map(Op::kind))
            .collect()
    }

    /// The names (see [`PRIMITIVE_OPS`]) of every recorded op in this tensor's graph.
    pub fn graph_op_names(&self) -> HashSet<&'static str> {
        topological_order(self)
            .iter()
            .filter_map(|t| t.op().map(Op::name))
            .collect()
    }
}

/// Adds `g` into `acc`, in place when `acc`'s buffer is not shared.
fn accumulate<T: Float>(mut acc: Tensor<T>, g: &Tensor<T>) -> Result<Tensor<T>> {
    if let Some(buf) = acc.data_mut() {
        crate::backend::cpu::simd::add_assign(buf, g.data());
        return Ok(acc);
    }
    acc.add(g)
}

/// Every tracked tensor reachable from `root`, each after all of its inputs.
fn topological_order<T: Float>(root: &Tensor<T>) -> Vec<Tensor<T>> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // Iterative post-order DFS: deep graphs (long training unrolls) must not overflow the stack.
    let mut stack: Vec<(Tensor<T>, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(op) = t.op() {
            for input in op.inputs() {
                if input.requires_grad() && !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}
