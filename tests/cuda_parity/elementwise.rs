//! Unary and binary elementwise ops, matmul and linear.

use crate::common::*;

fn cases() -> Vec<Case> {
    vec![
        ("neg", any3, |x| Ok(x[0].neg())),
        ("exp", any3, |x| Ok(x[0].exp())),
        ("log", pos3, |x| Ok(x[0].log())),
        ("sqrt", pos3, |x| Ok(x[0].sqrt())),
        ("abs", dist3, |x| Ok(x[0].abs())),
        ("relu", dist3, |x| Ok(x[0].relu())),
        ("leaky_relu", dist3, |x| Ok(x[0].leaky_relu(0.1))),
        ("gelu", any3, |x| Ok(x[0].gelu())),
        ("tanh", any3, |x| Ok(x[0].tanh())),
        ("sigmoid", any3, |x| Ok(x[0].sigmoid())),
        ("softplus", any3, |x| Ok(x[0].softplus())),
        ("powf", pos3, |x| Ok(x[0].powf(1.7))),
        ("add_scalar", any2, |x| Ok(x[0].add_scalar(0.3))),
        ("mul_scalar", any2, |x| Ok(x[0].mul_scalar(-1.5))),
        ("clamp", dist3, |x| Ok(x[0].clamp(-0.05, 0.05))),
        ("add", broadcast_pair, |x| x[0].add(&x[1])),
        ("sub", broadcast_pair, |x| x[0].sub(&x[1])),
        ("mul", broadcast_pair, |x| x[0].mul(&x[1])),
        (
            "div",
            |r| vec![randn(r, &[3, 4]), positive(r, &[4])],
            |x| x[0].div(&x[1]),
        ),
        (
            "maximum",
            |r| vec![distinct(r, &[3, 4]), distinct(r, &[1, 4])],
            |x| x[0].maximum(&x[1]),
        ),
        (
            "minimum",
            |r| vec![distinct(r, &[3, 4]), distinct(r, &[3, 1])],
            |x| x[0].minimum(&x[1]),
        ),
        (
            "pow",
            |r| vec![positive(r, &[2, 3]), randn(r, &[3])],
            |x| x[0].pow(&x[1]),
        ),
        (
            "matmul",
            |r| vec![randn(r, &[5, 7]), randn(r, &[7, 3])],
            |x| x[0].matmul(&x[1]),
        ),
        (
            "matmul_batched",
            |r| vec![randn(r, &[2, 1, 4, 3]), randn(r, &[3, 3, 5])],
            |x| x[0].matmul(&x[1]),
        ),
        (
            "linear",
            |r| vec![randn(r, &[6, 4]), randn(r, &[3, 4]), randn(r, &[3])],
            |x| x[0].linear(&x[1], Some(&x[2])),
        ),
        (
            "linear_no_bias",
            |r| vec![randn(r, &[2, 3, 4]), randn(r, &[5, 4])],
            |x| x[0].linear(&x[1], None),
        ),
    ]
}

#[test]
fn elementwise_ops_match_the_cpu() {
    check_ops("elementwise_ops_match_the_cpu", cases());
}
