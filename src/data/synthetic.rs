//! A synthetic data set with latent subclasses, for the theory experiments (class collapse,
//! coarse-to-fine transfer, the simplex geometry of supervised contrastive minimisers).
//!
//! `K` coarse classes each split into `S` subclasses; every subclass is a Gaussian cluster in
//! `D` dimensions. The three scales are separate so that an experiment can set how far apart the
//! coarse classes are, how distinct the subclasses inside a class are, and how much the points
//! of one subclass spread:
//!
//! - coarse centre `μ_k = coarse_scale · z_k / √D`, `z_k ~ N(0, I)`: so `‖μ_k‖ ≈ coarse_scale`
//!   and two coarse centres are about `√2 · coarse_scale` apart;
//! - subclass centre `μ_k + subclass_scale · w_ks / √D`, `w_ks ~ N(0, I)`: about
//!   `subclass_scale` from its coarse centre;
//! - a sample: its subclass centre plus `noise · ε`, `ε ~ N(0, I)` (per-coordinate standard
//!   deviation `noise`).
//!
//! The centres come from `config.seed`, the samples from the seed given to
//! [`LatentSubclasses::sample`], so train and test sets share centres but not points.

use super::Dataset;
use crate::error::{Error, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

/// The shape of the synthetic problem; see the module documentation for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    /// `K`, the number of coarse classes (the training labels).
    pub coarse_classes: usize,
    /// `S`, the number of subclasses in each coarse class.
    pub subclasses: usize,
    /// `D`, the dimension of each item.
    pub dim: usize,
    /// The expected norm of a coarse-class centre.
    pub coarse_scale: f64,
    /// The expected distance of a subclass centre from its coarse-class centre.
    pub subclass_scale: f64,
    /// The per-coordinate standard deviation of samples around their subclass centre.
    pub noise: f64,
    /// Seeds the centres.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    /// Four classes of three subclasses in 32 dimensions, classes well separated, subclasses
    /// distinct but overlapping within a class.
    fn default() -> Self {
        SyntheticConfig {
            coarse_classes: 4,
            subclasses: 3,
            dim: 32,
            coarse_scale: 4.0,
            subclass_scale: 2.0,
            noise: 0.3,
            seed: 0,
        }
    }
}

/// The centres of a latent-subclass problem, from which data sets are sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentSubclasses {
    config: SyntheticConfig,
    coarse_centres: Vec<Vec<f64>>,
    subclass_centres: Vec<Vec<f64>>,
}

impl LatentSubclasses {
    /// Draws the coarse and subclass centres from `config.seed`.
    pub fn new(config: SyntheticConfig) -> Result<Self> {
        let c = &config;
        if c.coarse_classes == 0 || c.subclasses == 0 || c.dim == 0 {
            let msg = "coarse_classes, subclasses and dim must all be positive";
            return Err(Error::invalid("LatentSubclasses::new", msg));
        }
        let scales = [c.coarse_scale, c.subclass_scale, c.noise];
        if scales.iter().any(|s| !s.is_finite() || *s < 0.0) {
            let msg = format!("scales {scales:?} must be finite and non-negative");
            return Err(Error::invalid("LatentSubclasses::new", msg));
        }
        let mut rng = StdRng::seed_from_u64(c.seed);
        let root_d = (c.dim as f64).sqrt();
        let mut gaussian = |scale: f64| -> Vec<f64> {
            (0..c.dim)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    scale / root_d * z
                })
                .collect()
        };
        let coarse_centres: Vec<Vec<f64>> = (0..c.coarse_classes)
            .map(|_| gaussian(c.coarse_scale))
            .collect();
        let mut subclass_centres = Vec::with_capacity(c.coarse_classes * c.subclasses);
        for centre in &coarse_centres {
            for _ in 0..c.subclasses {
                let offset = gaussian(c.subclass_scale);
                subclass_centres.push(centre.iter().zip(&offset).map(|(a, b)| a + b).collect());
            }
        }
        Ok(LatentSubclasses {
            config,
            coarse_centres,
            subclass_centres,
        })
    }

    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }
    /// The `K` coarse-class centres, each of length `D`.
    pub fn coarse_centres(&self) -> &[Vec<f64>] {
        &self.coarse_centres
    }
    /// The `K·S` subclass centres; subclass `s` of class `k` is at index `k·S + s`.
    pub fn subclass_centres(&self) -> &[Vec<f64>] {
        &self.subclass_centres
    }

    /// `per_subclass` points from every subclass, drawn with `seed`. Items have shape `[D]`,
    /// labels are coarse classes and fine labels the subclass index `k·S + s`; items come
    /// grouped by subclass (the loader shuffles them).
    pub fn sample(&self, per_subclass: usize, seed: u64) -> Result<Dataset> {
        let c = &self.config;
        let mut rng = StdRng::seed_from_u64(seed);
        let n = self.subclass_centres.len() * per_subclass;
        let mut data = Vec::with_capacity(n * c.dim);
        let mut labels = Vec::with_capacity(n);
        let mut fine = Vec::with_capacity(n);
        for (j, centre) in self.subclass_centres.iter().enumerate() {
            for _ in 0..per_subclass {
                data.extend(centre.iter().map(|&m| {
                    let e: f64 = StandardNormal.sample(&mut rng);
                    (m + c.noise * e) as f32
                }));
                labels.push(j / c.subclasses);
                fine.push(j);
            }
        }
        Dataset::new(data, vec![c.dim], labels, c.coarse_classes)?
            .with_fine_labels(fine, self.subclass_centres.len())
    }
}
