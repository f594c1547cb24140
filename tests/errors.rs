//! Bad input gives an `Err` naming the op and the shapes, never a panic.

use contrastive::{BatchNormMode, Conv2dParams, Error, Tensor};

fn t(dims: &[usize]) -> Tensor<f32> {
    Tensor::zeros(dims.to_vec())
}

fn message<T: std::fmt::Debug>(r: contrastive::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn shape_mismatches_name_both_shapes() {
    let m = message(t(&[2, 3]).add(&t(&[4])));
    assert!(
        m.contains("add") && m.contains("[2, 3]") && m.contains("[4]"),
        "{m}"
    );
    let m = message(t(&[2, 3]).matmul(&t(&[4, 5])));
    assert!(
        m.contains("matmul") && m.contains("[2, 3]") && m.contains("[4, 5]"),
        "{m}"
    );
    let m = message(t(&[3]).matmul(&t(&[3, 1])));
    assert!(m.contains("rank"), "{m}");
    let m = message(t(&[2, 3]).reshape(&[4, 2]));
    assert!(
        m.contains("reshape") && m.contains("[2, 3]") && m.contains("[4, 2]"),
        "{m}"
    );
    let m = message(Tensor::concat(&[t(&[2, 3]), t(&[3, 3])], 1));
    assert!(m.contains("concat") && m.contains("[3, 3]"), "{m}");
    assert!(matches!(
        t(&[2]).broadcast_to(&[3]),
        Err(Error::ShapeMismatch { .. })
    ));
    let m = message(Tensor::<f32>::from_vec(vec![1.0; 5], [2, 3]));
    assert!(m.contains("5") && m.contains("[2, 3]"), "{m}");
}

#[test]
fn bad_axes_and_ranks() {
    let m = message(t(&[2, 3]).sum(&[2], false));
    assert!(m.contains("sum") && m.contains("axis 2"), "{m}");
    assert!(t(&[2, 3]).sum(&[0, -2], false).is_err()); // repeated axis
    assert!(t(&[2, 3]).permute(&[0, 0]).is_err());
    assert!(t(&[2, 3]).narrow(1, 2, 2).is_err());
    assert!(t(&[2, 3]).squeeze(0).is_err());
    assert!(t(&[2, 3]).unsqueeze(3).is_err());
    assert!(t(&[2, 3]).backward().is_err()); // not a scalar
    assert!(t(&[1]).backward_with(&t(&[2])).is_err());
    assert!(t(&[2]).item().is_err());
}

#[test]
fn empty_reductions_are_rejected() {
    for r in [
        t(&[0, 3]).sum(&[0], false),
        t(&[0, 3]).mean(&[0], false),
        t(&[2, 0]).max(&[1], true),
        t(&[2, 0]).logsumexp(1, false),
    ] {
        assert!(matches!(r, Err(Error::EmptyReduction { .. })), "{r:?}");
    }
    // Reducing the non-empty axis of an empty tensor is fine: it yields an empty result.
    assert_eq!(t(&[0, 3]).sum(&[1], false).unwrap().dims(), &[0]);
    assert!(t(&[3, 2]).var(&[1], false, 2).is_err());
}

#[test]
fn bad_indices() {
    assert!(matches!(
        t(&[2, 3]).index_select(1, &[3]),
        Err(Error::IndexOutOfRange {
            index: 3,
            size: 3,
            ..
        })
    ));
    assert!(t(&[2, 3]).gather(1, &[0, 5], &[2, 1]).is_err());
    assert!(t(&[2, 3]).gather(1, &[0], &[2, 1]).is_err()); // index count ≠ shape
    assert!(t(&[2, 3]).cross_entropy(&[0, 3]).is_err());
    assert!(t(&[2, 3]).cross_entropy(&[0]).is_err());
    assert!(t(&[2, 3]).masked_fill(&[true; 5], 0.0).is_err());
}

#[test]
fn bad_conv_and_pool_geometry() {
    let x = t(&[1, 4, 5, 5]);
    let m = message(x.conv2d(&t(&[2, 3, 3, 3]), None, Conv2dParams::default()));
    assert!(
        m.contains("conv2d") && m.contains("[1, 4, 5, 5]") && m.contains("[2, 3, 3, 3]"),
        "{m}"
    );
    let groups3 = Conv2dParams {
        groups: 3,
        ..Default::default()
    };
    assert!(x.conv2d(&t(&[3, 1, 3, 3]), None, groups3).is_err()); // 4 channels, 3 groups
    assert!(
        x.conv2d(&t(&[2, 4, 7, 7]), None, Conv2dParams::default())
            .is_err()
    ); // kernel > input
    assert!(
        x.conv2d(&t(&[2, 4, 3, 3]), None, Conv2dParams::new(0, 0))
            .is_err()
    ); // stride 0
    assert!(
        x.conv2d(&t(&[2, 4, 3, 3]), Some(&t(&[3])), Conv2dParams::default())
            .is_err()
    );
    assert!(
        t(&[4, 5, 5])
            .conv2d(&t(&[2, 4, 3, 3]), None, Conv2dParams::default())
            .is_err()
    );
    assert!(x.max_pool2d(7, 1, 0).is_err());
    assert!(x.avg_pool2d(2, 0, 0).is_err());
    assert!(x.max_pool2d(2, 2, 2).is_err()); // padding above kernel/2
    assert!(t(&[5, 5]).global_avg_pool2d().is_err());
}

#[test]
fn bad_batch_norm_and_dropout() {
    let train = BatchNormMode {
        training: true,
        eps: 1e-5,
    };
    let eval = BatchNormMode {
        training: false,
        eps: 1e-5,
    };
    assert!(t(&[1, 3]).batch_norm(None, None, None, train).is_err()); // one value per channel
    assert!(
        t(&[4, 3])
            .batch_norm(Some(&t(&[2])), None, None, train)
            .is_err()
    );
    assert!(t(&[4, 3]).batch_norm(None, None, None, eval).is_err()); // no running stats
    assert!(t(&[4]).batch_norm(None, None, None, train).is_err());
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    assert!(t(&[4]).dropout(1.5, true, &mut rng).is_err());
}
