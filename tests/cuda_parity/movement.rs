//! Movement and indexing: reshape, permute, broadcast, narrow, concat, index_select, gather,
//! where.

use crate::common::*;
use contrastive::Tensor;

fn cases() -> Vec<Case> {
    vec![
        (
            "reshape",
            |r| vec![randn(r, &[2, 6])],
            |x| x[0].reshape(&[3, 4])?.tanh().pipe(),
        ),
        (
            "permute",
            |r| vec![randn(r, &[2, 3, 4])],
            |x| x[0].permute(&[2, 0, 1]),
        ),
        (
            "broadcast_to",
            |r| vec![randn(r, &[3, 1])],
            |x| x[0].broadcast_to(&[2, 3, 4]),
        ),
        (
            "narrow",
            |r| vec![randn(r, &[3, 5, 2])],
            |x| x[0].narrow(1, 1, 3),
        ),
        (
            "concat",
            |r| vec![randn(r, &[2, 3]), randn(r, &[2, 2])],
            |x| Tensor::concat(&[x[0].clone(), x[1].square()], 1),
        ),
        (
            "index_select",
            |r| vec![randn(r, &[3, 4, 2])],
            |x| x[0].index_select(1, &[3, 0, 3, 1]),
        ),
        (
            "gather",
            |r| vec![randn(r, &[3, 4])],
            |x| x[0].gather(1, &[0, 3, 3, 1, 2, 2], &[3, 2]),
        ),
        (
            "where_cond",
            |r| vec![randn(r, &[2, 3]), randn(r, &[2, 3])],
            |x| Tensor::where_cond(&[true, false, true, false, false, true], &x[0], &x[1]),
        ),
        (
            "masked_fill",
            |r| vec![randn(r, &[2, 2])],
            |x| x[0].masked_fill(&[true, false, false, true], 2.0),
        ),
    ]
}

#[test]
fn movement_and_index_ops_match_the_cpu() {
    check_ops("movement_and_index_ops_match_the_cpu", cases());
}
