//! Principal component analysis to two dimensions, for scatter plots of embeddings.
//!
//! The top two eigenvectors of the `d × d` sample covariance `Xcᵀ Xc / (N − 1)` come from
//! subspace iteration on a block of [`BLOCK`] vectors with a Rayleigh–Ritz step (a small Jacobi
//! eigen-solve) each round: the Ritz pairs converge at the rate `λ_{BLOCK+1} / λ₂`, not
//! `λ₂ / λ₁`, so nearly equal leading eigenvalues do not slow it. When d ≤ [`BLOCK`] the block
//! spans the whole space and one round is exact. The start block is drawn from a fixed seed,
//! and each component's sign is chosen so that its largest-magnitude entry is positive (as
//! scikit-learn does), so the projection is deterministic.

use super::matrix_dims;
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};

/// Vectors in the iterated block.
pub const BLOCK: usize = 10;
/// Iteration cap; well-separated spectra converge in tens of rounds.
const MAX_ROUNDS: usize = 2000;
/// Stop when `‖Cv − θv‖ ≤ TOL · θ₁` for both Ritz pairs.
const TOL: f64 = 1e-10;
/// The fixed seed of the start block.
const SEED: u64 = 0x5ca1_ab1e;

/// A fitted two-component PCA.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca2 {
    /// The per-feature mean subtracted before projecting.
    pub mean: Vec<f64>,
    /// The two principal axes (unit vectors of length d), the first with the larger variance.
    pub components: [Vec<f64>; 2],
    /// The variance along each axis (the covariance's two largest eigenvalues).
    pub explained_variance: [f64; 2],
    /// `explained_variance` over the total variance (the covariance's trace); 0 when the
    /// total is 0.
    pub explained_variance_ratio: [f64; 2],
}

impl Pca2 {
    /// Fits the two leading principal axes of `(N, d)` data, `N ≥ 2`, `d ≥ 2`.
    pub fn fit<T: Float>(x: &Tensor<T>) -> Result<Self> {
        const OP: &str = "pca";
        let (n, d) = matrix_dims(OP, "the data", x, 2)?;
        if d < 2 {
            return Err(Error::BadRank {
                op: OP,
                expected: "(N, d) data with d ≥ 2 for two components",
                shape: x.dims().to_vec(),
            });
        }
        let mut centred = x.to_f64_vec();
        let mut mean = vec![0.0; d];
        for row in centred.chunks(d) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, v)| *m += v / n as f64);
        }
        for row in centred.chunks_mut(d) {
            row.iter_mut().zip(&mean).for_each(|(v, m)| *v -= m);
        }
        let xc = Tensor::from_vec(centred, [n, d])?;
        let cov = xc.t()?.matmul(&xc)?.div_scalar((n - 1) as f64); // (d, N)·(N, d) → (d, d)
        let cov = cov.data();
        let total: f64 = (0..d).map(|i| cov[i * d + i]).sum();

        let (values, mut vectors) = top_two_eigenpairs(cov, d);
        for v in &mut vectors {
            let lead = v
                .iter()
                .fold(0.0f64, |m, &x| if x.abs() > m.abs() { x } else { m });
            if lead < 0.0 {
                v.iter_mut().for_each(|x| *x = -*x);
            }
        }
        let ratio = |v: f64| if total > 0.0 { v / total } else { 0.0 };
        Ok(Self {
            mean,
            explained_variance: values,
            explained_variance_ratio: [ratio(values[0]), ratio(values[1])],
            components: vectors,
        })
    }

    /// The 2-D coordinates `((x − mean)·v₁, (x − mean)·v₂)` of each row of `(N, d)` data.
    pub fn project<T: Float>(&self, x: &Tensor<T>) -> Result<Vec<[f64; 2]>> {
        let (_, d) = matrix_dims("pca::project", "the data", x, 0)?;
        if d != self.mean.len() {
            return Err(Error::ShapeMismatch {
                op: "pca::project",
                lhs: x.dims().to_vec(),
                rhs: vec![self.mean.len(), 2],
            });
        }
        let data = x.to_f64_vec();
        Ok(data
            .chunks(d)
            .map(|row| {
                let along = |axis: &[f64]| {
                    row.iter()
                        .zip(&self.mean)
                        .zip(axis)
                        .map(|((v, m), a)| (v - m) * a)
                        .sum()
                };
                [along(&self.components[0]), along(&self.components[1])]
            })
            .collect())
    }

    /// Fits on `x` and projects it: the usual one-call use for a plot.
    pub fn fit_project<T: Float>(x: &Tensor<T>) -> Result<(Self, Vec<[f64; 2]>)> {
        let pca = Self::fit(x)?;
        let points = pca.project(x)?;
        Ok((pca, points))
    }
}

/// The two largest eigenvalues of the symmetric row-major `d × d` matrix `a` and their unit
/// eigenvectors, by subspace iteration with Rayleigh–Ritz.
fn top_two_eigenpairs(a: &[f64], d: usize) -> ([f64; 2], [Vec<f64>; 2]) {
    let p = BLOCK.min(d);
    let mut rng = StdRng::seed_from_u64(SEED);
    // The block is stored as p columns, each a Vec of length d.
    let mut q: Vec<Vec<f64>> = (0..p)
        .map(|_| (0..d).map(|_| StandardNormal.sample(&mut rng)).collect())
        .collect();
    orthonormalize(&mut q, &mut rng);
    let mut best = ([0.0; 2], [vec![0.0; d], vec![0.0; d]]);
    for _ in 0..MAX_ROUNDS {
        let aq: Vec<Vec<f64>> = q.iter().map(|col| sym_matvec(a, col, d)).collect();
        // H = Qᵀ A Q (p × p), then its eigenpairs give the Ritz pairs (θ, Q u).
        let h: Vec<f64> = (0..p * p).map(|ij| dot(&q[ij / p], &aq[ij % p])).collect();
        let (theta, u) = jacobi_eigen(h, p);
        let ritz = |basis: &[Vec<f64>], c: usize| -> Vec<f64> {
            (0..d)
                .map(|r| (0..p).map(|j| basis[j][r] * u[j * p + c]).sum())
                .collect()
        };
        let mut converged = true;
        for c in 0..2 {
            let (v, av) = (ritz(&q, c), ritz(&aq, c));
            let residual: f64 = av
                .iter()
                .zip(&v)
                .map(|(x, y)| (x - theta[c] * y).powi(2))
                .sum();
            converged &= residual.sqrt() <= TOL * theta[0].abs().max(f64::MIN_POSITIVE);
            best.0[c] = theta[c];
            best.1[c] = v;
        }
        if converged {
            break;
        }
        q = aq;
        orthonormalize(&mut q, &mut rng);
    }
    best
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sym_matvec(a: &[f64], x: &[f64], d: usize) -> Vec<f64> {
    a.chunks(d).map(|row| dot(row, x)).collect()
}

/// Modified Gram–Schmidt, two passes for stability. A column that (nearly) vanishes, because
/// the iterated matrix has rank below the block size, is replaced by a fresh random direction,
/// so the block keeps full rank and stays orthonormal.
fn orthonormalize(cols: &mut [Vec<f64>], rng: &mut StdRng) {
    for j in 0..cols.len() {
        loop {
            let before = dot(&cols[j], &cols[j]).sqrt();
            let (done, rest) = cols.split_at_mut(j);
            let col = &mut rest[0];
            for _pass in 0..2 {
                for prev in done.iter() {
                    let proj = dot(prev, col);
                    col.iter_mut().zip(prev).for_each(|(x, y)| *x -= proj * y);
                }
            }
            let norm = dot(col, col).sqrt();
            if norm > 1e-10 * before && norm > 0.0 {
                col.iter_mut().for_each(|x| *x /= norm);
                break;
            }
            *col = (0..col.len())
                .map(|_| StandardNormal.sample(&mut *rng))
                .collect();
        }
    }
}

/// Eigenpairs of a small symmetric row-major `p × p` matrix by cyclic Jacobi rotations, sorted
/// by decreasing eigenvalue; eigenvector c is column c of the returned row-major matrix.
fn jacobi_eigen(mut h: Vec<f64>, p: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v: Vec<f64> = (0..p * p)
        .map(|ij| if ij / p == ij % p { 1.0 } else { 0.0 })
        .collect();
    let norm: f64 = h.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..p * p)
            .filter(|ij| ij / p != ij % p)
            .map(|ij| h[ij] * h[ij])
            .sum();
        if off.sqrt() <= 1e-15 * norm {
            break;
        }
        for r in 0..p {
            for s in r + 1..p {
                let hrs = h[r * p + s];
                if hrs == 0.0 {
                    continue;
                }
                // The rotation angle that zeroes h[r][s] (Golub & Van Loan, Algorithm 8.5.1).
                let tau = (h[s * p + s] - h[r * p + r]) / (2.0 * hrs);
                let t = tau.signum() / (tau.abs() + (1.0 + tau * tau).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let sn = t * c;
                for k in 0..p {
                    let (hkr, hks) = (h[k * p + r], h[k * p + s]);
                    h[k * p + r] = c * hkr - sn * hks;
                    h[k * p + s] = sn * hkr + c * hks;
                }
                for k in 0..p {
                    let (hrk, hsk) = (h[r * p + k], h[s * p + k]);
                    h[r * p + k] = c * hrk - sn * hsk;
                    h[s * p + k] = sn * hrk + c * hsk;
                }
                for k in 0..p {
                    let (vkr, vks) = (v[k * p + r], v[k * p + s]);
                    v[k * p + r] = c * vkr - sn * vks;
                    v[k * p + s] = sn * vkr + c * vks;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..p).collect();
    order.sort_by(|&a, &b| h[b * p + b].total_cmp(&h[a * p + a]));
    let values = order.iter().map(|&i| h[i * p + i]).collect();
    let vectors = (0..p * p)
        .map(|ij| v[(ij / p) * p + order[ij % p]])
        .collect();
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3 × 3 matrix with known eigenvalues 4, 2, 1 (diag(4, 2, 1) rotated).
    #[test]
    fn jacobi_recovers_known_spectrum() {
        let s = std::f64::consts::FRAC_1_SQRT_2;
        // Rotation by 45° in the (0, 1) plane: R diag(4, 2, 1) Rᵀ.
        let h = vec![3.0, 1.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0, 1.0];
        let (values, vectors) = jacobi_eigen(h, 3);
        // Jacobi converges quadratically; the result is exact to rounding.
        for (got, want) in values.iter().zip([4.0, 2.0, 1.0]) {
            assert!((got - want).abs() < 1e-14, "{values:?}");
        }
        assert!((vectors[0].abs() - s).abs() < 1e-14 && (vectors[3].abs() - s).abs() < 1e-14);
    }
}
