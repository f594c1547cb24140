//! Results do not depend on the thread count: matmul, reductions, elementwise maps and conv2d
//! (forward and backward) give the same bits on a 1-thread and a 2-thread pool.

use contrastive::{Conv2dParams, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
        .install(f)
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

fn same_bits_on_1_and_2_threads(f: impl Fn() -> Vec<Vec<u32>> + Send + Sync) {
    let one = in_pool(1, &f);
    let two = in_pool(2, &f);
    assert_eq!(one.len(), two.len());
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert!(a == b, "result {i} differs between 1 and 2 threads");
    }
}

#[test]
fn matmul_forward_and_backward() {
    // Odd sizes so that row blocks split unevenly, and large enough to be split at all.
    for &(m, k, n) in &[(517, 300, 259), (64, 1024, 96), (1000, 17, 1000)] {
        same_bits_on_1_and_2_threads(|| {
            let mut rng = StdRng::seed_from_u64(1);
            let a = Tensor::<f32>::randn([m, k], &mut rng).requires_grad_();
            let b = Tensor::<f32>::randn([k, n], &mut rng).requires_grad_();
            let c = a.matmul(&b).unwrap();
            let g = c.square().sum_all().unwrap().backward().unwrap();
            vec![bits(&c), bits(g.get(&a).unwrap()), bits(g.get(&b).unwrap())]
        });
    }
}

#[test]
fn reductions_and_elementwise() {
    same_bits_on_1_and_2_threads(|| {
        let mut rng = StdRng::seed_from_u64(2);
        let x = Tensor::<f32>::randn([3, 1 << 17], &mut rng).requires_grad_();
        let total = x.exp().sum_all().unwrap();
        let rows = x.sum(&[1], false).unwrap();
        let cols = x.sum(&[0], false).unwrap();
        let lse = x.logsumexp(1, false).unwrap();
        let g = total
            .add(&lse.sum_all().unwrap())
            .unwrap()
            .backward()
            .unwrap();
        vec![
            bits(&total),
            bits(&rows),
            bits(&cols),
            bits(&lse),
            bits(g.get(&x).unwrap()),
        ]
    });
}

#[test]
fn conv2d_forward_and_backward() {
    same_bits_on_1_and_2_threads(|| {
        let mut rng = StdRng::seed_from_u64(3);
        // 13 images: not a multiple of the weight-gradient piece size.
        let x = Tensor::<f32>::randn([13, 6, 15, 15], &mut rng).requires_grad_();
        let w = Tensor::<f32>::randn([8, 3, 3, 3], &mut rng).requires_grad_();
        let b = Tensor::<f32>::randn([8], &mut rng).requires_grad_();
        let params = Conv2dParams {
            groups: 2,
            ..Conv2dParams::new(1, 1)
        };
        let y = x.conv2d(&w, Some(&b), params).unwrap();
        let pooled = y.relu().max_pool2d(2, 2, 0).unwrap();
        let g = pooled.square().sum_all().unwrap().backward().unwrap();
        vec![
            bits(&y),
            bits(g.get(&x).unwrap()),
            bits(g.get(&w).unwrap()),
            bits(g.get(&b).unwrap()),
        ]
    });
}

#[test]
fn similarity_logsumexp_both_regimes() {
    use contrastive::ops::similarity::{Exclude, SimilarityMode};
    for mode in [SimilarityMode::Materialize, SimilarityMode::Stream] {
        same_bits_on_1_and_2_threads(|| {
            let mut rng = StdRng::seed_from_u64(4);
            let z = Tensor::<f32>::randn([777, 32], &mut rng).requires_grad_();
            let l = z
                .similarity_logsumexp_with(&z, 2.0, Exclude::Diagonal, mode)
                .unwrap();
            let g = l.sum_all().unwrap().backward().unwrap();
            vec![bits(&l), bits(g.get(&z).unwrap())]
        });
    }
}

#[test]
fn batch_norm_and_broadcasting() {
    use contrastive::{BatchNormMode, RunningStats};
    same_bits_on_1_and_2_threads(|| {
        let mut rng = StdRng::seed_from_u64(5);
        // Channels of very different sizes so that the parallel split is uneven.
        let x = Tensor::<f32>::randn([24, 40, 17, 19], &mut rng).requires_grad_();
        let gamma = Tensor::<f32>::randn([40], &mut rng).requires_grad_();
        let beta = Tensor::<f32>::randn([40], &mut rng).requires_grad_();
        let bias = Tensor::<f32>::randn([24, 40, 1, 19], &mut rng).requires_grad_();
        let mut stats = RunningStats::new(40);
        let mode = BatchNormMode {
            training: true,
            eps: 1e-5,
        };
        let y = x
            .batch_norm(Some(&gamma), Some(&beta), Some(&mut stats), mode)
            .unwrap();
        let z = y
            .mul(&bias)
            .unwrap()
            .add(&bias.broadcast_to(&[24, 40, 17, 19]).unwrap());
        let z = z.unwrap();
        let g = z.square().sum_all().unwrap().backward().unwrap();
        let stats_bits: Vec<u32> = stats
            .mean
            .iter()
            .chain(&stats.var)
            .map(|v| v.to_bits())
            .collect();
        vec![
            bits(&z),
            stats_bits,
            bits(g.get(&x).unwrap()),
            bits(g.get(&gamma).unwrap()),
            bits(g.get(&beta).unwrap()),
            bits(g.get(&bias).unwrap()),
        ]
    });
}
