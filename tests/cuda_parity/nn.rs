//! Layers: convolution, pooling, batch norm, the similarity log-sum-exp, all-gather and
//! device moves.

use crate::common::*;
use contrastive::ops::similarity::{Exclude, SimilarityMode};
use contrastive::{BatchNormMode, Conv2dParams, Device, RunningStats};

fn cases() -> Vec<Case> {
    vec![
        (
            "conv2d",
            |r| {
                vec![
                    randn(r, &[2, 4, 7, 6]),
                    randn(r, &[6, 2, 3, 3]),
                    randn(r, &[6]),
                ]
            },
            |x| {
                let p = Conv2dParams {
                    stride: (2, 1),
                    padding: (1, 2),
                    dilation: (1, 2),
                    groups: 2,
                };
                x[0].conv2d(&x[1], Some(&x[2]), p)
            },
        ),
        (
            "conv2d_pointwise",
            |r| vec![randn(r, &[3, 4, 5, 5]), randn(r, &[2, 4, 1, 1])],
            |x| x[0].conv2d(&x[1], None, Conv2dParams::default()),
        ),
        (
            "max_pool2d",
            |r| vec![distinct(r, &[2, 3, 7, 6])],
            |x| x[0].max_pool2d(3, 2, 1),
        ),
        (
            "avg_pool2d",
            |r| vec![randn(r, &[2, 3, 7, 6])],
            |x| x[0].avg_pool2d(3, 2, 1),
        ),
        (
            "global_avg_pool2d",
            |r| vec![randn(r, &[2, 3, 4, 5])],
            |x| x[0].global_avg_pool2d(),
        ),
        (
            "batch_norm_train",
            |r| vec![randn(r, &[4, 3, 5, 2]), randn(r, &[3]), randn(r, &[3])],
            |x| {
                let mut stats = RunningStats::new(3);
                let mode = BatchNormMode {
                    training: true,
                    eps: 1e-5,
                };
                x[0].batch_norm(Some(&x[1]), Some(&x[2]), Some(&mut stats), mode)
            },
        ),
        (
            "batch_norm_eval",
            |r| vec![randn(r, &[4, 3]), randn(r, &[3]), randn(r, &[3])],
            |x| {
                let mut stats = RunningStats::new(3);
                stats.var = vec![0.5, 1.5, 2.0];
                let mode = BatchNormMode {
                    training: false,
                    eps: 1e-5,
                };
                x[0].batch_norm(Some(&x[1]), Some(&x[2]), Some(&mut stats), mode)
            },
        ),
        (
            "similarity_lse",
            |r| vec![randn(r, &[5, 3]), randn(r, &[7, 3])],
            |x| {
                x[0].similarity_logsumexp_with(
                    &x[1],
                    1.7,
                    Exclude::Nothing,
                    SimilarityMode::Materialize,
                )
            },
        ),
        (
            "similarity_lse_diagonal",
            |r| vec![randn(r, &[6, 3])],
            |x| {
                x[0].similarity_logsumexp_with(
                    &x[0],
                    2.0,
                    Exclude::Diagonal,
                    SimilarityMode::Stream,
                )
            },
        ),
        (
            "similarity_lse_same_label",
            |r| vec![randn(r, &[6, 3])],
            |x| {
                let labels: Vec<i64> = (0..6).map(|i| i % 2).collect();
                let ex = Exclude::SameLabel {
                    rows: labels.clone(),
                    cols: labels,
                };
                x[0].similarity_logsumexp_with(&x[0].tanh(), 0.5, ex, SimilarityMode::Stream)
            },
        ),
        (
            "all_gather_rows",
            |r| vec![randn(r, &[3, 2])],
            |x| x[0].all_gather_rows(&contrastive::distributed::solo()),
        ),
        (
            "to_device",
            |r| vec![randn(r, &[3, 2])],
            |x| x[0].to_device(&Device::Cpu)?.tanh().pipe(),
        ),
    ]
}

#[test]
fn layer_ops_match_the_cpu() {
    check_ops("layer_ops_match_the_cpu", cases());
}
