//! GPU convolution (im2col + cuBLAS, col2im for the input gradient), pooling and fused batch
//! normalisation, forward and backward. Shapes follow `src/ops/conv.rs`, `pool.rs` and
//! `norm.rs`, whose validated geometry these functions receive.

mod conv;
mod norm;
mod pool;

pub(crate) use conv::{conv2d, conv2d_backward, conv2d_bias_backward};
pub(crate) use norm::{batch_norm, batch_norm_backward};
pub(crate) use pool::{avg_pool2d, avg_pool2d_backward, max_pool2d};
