//! Movement and indexing: reshape, permute, broadcast, narrow, concat, index_select, gather,
//! where.

use crate::common::*;
use contrastive::{Result, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

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

/// Backwards that add into repeated places (index_select and gather with repeated indices,
/// max pooling whose windows overlap on ties) run without atomics: two GPU runs agree to the
/// bit, and both agree with the CPU.
#[test]
fn index_backwards_are_deterministic() {
    let Some(device) = gpu("index_backwards_are_deterministic") else {
        return;
    };
    let cases: Vec<Case> = vec![
        (
            "index_select_repeats",
            |r| vec![randn(r, &[2, 3, 64])],
            |x| {
                let idx: Vec<usize> = (0..20_000).map(|i| (i * 7 + i / 5) % 3).collect();
                x[0].index_select(1, &idx)
            },
        ),
        (
            "gather_repeats",
            |r| vec![randn(r, &[4, 5])],
            |x| {
                let idx: Vec<usize> = (0..4 * 3000).map(|i| (i * 3 + i / 7) % 5).collect();
                x[0].gather(1, &idx, &[4, 3000])
            },
        ),
        (
            "max_pool2d_ties",
            |_| vec![Tensor::full([2, 4, 16, 16], 0.5)],
            |x| x[0].max_pool2d(3, 1, 1),
        ),
    ];
    let mut failures = Vec::new();
    for (name, make, f) in cases {
        let inputs = make(&mut StdRng::seed_from_u64(0));
        let runs = (0..2)
            .map(|_| run_on(device, &inputs, 4, f))
            .collect::<Result<Vec<_>>>();
        match runs {
            Ok(runs) => {
                let bits = |v: &[Vec<f32>]| -> Vec<u32> {
                    v.iter().flatten().map(|x| x.to_bits()).collect()
                };
                if bits(&runs[0].1) != bits(&runs[1].1) {
                    failures.push(format!("{name}: two GPU runs differ"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
        if let Err(e) = compare(device, name, &inputs, f) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
