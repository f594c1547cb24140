//! Reductions and the ops built on them: sums, means, max/min, variance, log-sum-exp,
//! softmax, normalisation, cross-entropy.

use crate::common::*;

fn cases() -> Vec<Case> {
    vec![
        (
            "sum",
            |r| vec![randn(r, &[3, 4, 5])],
            |x| x[0].sum(&[0, 2], false),
        ),
        ("sum_all", |r| vec![randn(r, &[3, 70])], |x| x[0].sum_all()),
        (
            "mean",
            |r| vec![randn(r, &[3, 4, 5])],
            |x| x[0].mean(&[1], true),
        ),
        (
            "max",
            |r| vec![distinct(r, &[3, 4, 5])],
            |x| x[0].max(&[1], false),
        ),
        (
            "max_noncontiguous",
            |r| vec![distinct(r, &[3, 4, 5])],
            |x| x[0].max(&[0, 2], true),
        ),
        (
            "min",
            |r| vec![distinct(r, &[3, 4, 5])],
            |x| x[0].min(&[2], false),
        ),
        (
            "var",
            |r| vec![randn(r, &[4, 3, 5])],
            |x| x[0].var(&[0, 2], false, 1),
        ),
        (
            "logsumexp",
            |r| vec![randn(r, &[3, 6])],
            |x| x[0].logsumexp(1, false),
        ),
        ("softmax", |r| vec![randn(r, &[3, 6])], |x| x[0].softmax(-1)),
        (
            "log_softmax",
            |r| vec![randn(r, &[3, 6])],
            |x| x[0].log_softmax(0),
        ),
        (
            "normalize",
            |r| vec![randn(r, &[4, 5])],
            |x| x[0].normalize(1),
        ),
        (
            "cross_entropy",
            |r| vec![randn(r, &[4, 3])],
            |x| x[0].cross_entropy(&[0, 2, 1, 2]),
        ),
    ]
}

#[test]
fn reductions_match_the_cpu() {
    check_ops("reductions_match_the_cpu", cases());
}
