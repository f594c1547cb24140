//! Geometry of embeddings on the unit hypersphere: Wang & Isola's (2020) alignment and
//! uniformity, and class collapse towards a simplex equiangular tight frame (Papyan et al. 2020;
//! Graf et al. 2021 show that SupCon's optimum is one).
//!
//! Every function L2-normalises the rows first (a zero row stays zero) and computes in `f64`.

use super::{check_labels, check_no_empty_class, matrix_dims, unit_rows_f64};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use std::fmt;

/// Wang & Isola's default exponent of the alignment.
pub const DEFAULT_ALPHA: f64 = 2.0;
/// Wang & Isola's default scale of the uniformity kernel.
pub const DEFAULT_T: f64 = 2.0;

fn check_positive(op: &'static str, name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{name} = {value} must be finite and > 0"),
        ))
    }
}

/// Alignment: `mean_i ‖z₀ᵢ − z₁ᵢ‖^α` over the positive pairs (row i of each view), on
/// L2-normalised rows. 0 when the views agree; 4^{α/2} when every pair is antipodal.
pub fn alignment<T: Float>(view0: &Tensor<T>, view1: &Tensor<T>, alpha: f64) -> Result<f64> {
    const OP: &str = "alignment";
    check_positive(OP, "alpha", alpha)?;
    let (n, d) = matrix_dims(OP, "the first view", view0, 1)?;
    matrix_dims(OP, "the second view", view1, 1)?;
    if view0.dims() != view1.dims() {
        return Err(Error::ShapeMismatch {
            op: OP,
            lhs: view0.dims().to_vec(),
            rhs: view1.dims().to_vec(),
        });
    }
    let (a, b) = (unit_rows_f64(view0, d), unit_rows_f64(view1, d));
    let total: f64 = a
        .chunks(d)
        .zip(b.chunks(d))
        .map(|(x, y)| {
            let sq: f64 = x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum();
            sq.powf(alpha / 2.0)
        })
        .sum();
    Ok(total / n as f64)
}

/// Uniformity: `log mean_{i<j} e^{−t‖zᵢ − zⱼ‖²}` over the N(N−1)/2 pairs of L2-normalised
/// rows (N ≥ 2). Lower is more uniform; −4t is the floor (every pair antipodal, only possible
/// for N = 2). A regular simplex of 4 points on S² gives −16/3 at t = 2.
///
/// The N × N similarities are formed in blocks of rows (bounded memory), and the mean is a
/// running log-sum-exp, so large t cannot underflow to log 0.
pub fn uniformity<T: Float>(embeddings: &Tensor<T>, t: f64) -> Result<f64> {
    const OP: &str = "uniformity";
    check_positive(OP, "t", t)?;
    let (n, d) = matrix_dims(OP, "the embeddings", embeddings, 2)?;
    let z = Tensor::from_vec(unit_rows_f64(embeddings, d), [n, d])?;
    let z_t = z.t()?; // (d, N)
    let rows_per_block = (super::neighbors::BLOCK_ELEMENTS / n).max(1);
    // Running log-sum-exp: the sum is `scale · e^{max}`.
    let (mut max, mut scale) = (f64::NEG_INFINITY, 0.0);
    for start in (0..n).step_by(rows_per_block) {
        let rows = rows_per_block.min(n - start);
        let gram = z.narrow(0, start, rows)?.matmul(&z_t)?; // (rows, N)
        for (r, row) in gram.data().chunks(n).enumerate() {
            for &s in &row[start + r + 1..] {
                // ‖zᵢ − zⱼ‖² = 2 − 2 zᵢ·zⱼ for unit rows (zero rows: the floor at 0 keeps it ≥ 0).
                let v = -t * (2.0 - 2.0 * s).max(0.0);
                if v > max {
                    scale = scale * (max - v).exp() + 1.0;
                    max = v;
                } else {
                    scale += (v - max).exp();
                }
            }
        }
    }
    let pairs = (n * (n - 1) / 2) as f64;
    Ok(max + scale.ln() - pairs.ln())
}

/// Alignment and uniformity of two views of the same samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignUniform {
    /// [`alignment`] of the two views.
    pub alignment: f64,
    /// [`uniformity`] of each view, averaged over the two (as Wang & Isola's training loss).
    pub uniformity: f64,
    pub alpha: f64,
    pub t: f64,
}

impl fmt::Display for AlignUniform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "alignment (α = {}) {:.4}, uniformity (t = {}) {:.4}",
            self.alpha, self.alignment, self.t, self.uniformity
        )
    }
}

/// Both of Wang & Isola's metrics for `(N, d)` embeddings of two views (row i of each is a
/// positive pair). Use [`DEFAULT_ALPHA`] and [`DEFAULT_T`] for the paper's values.
pub fn align_uniform<T: Float>(
    view0: &Tensor<T>,
    view1: &Tensor<T>,
    alpha: f64,
    t: f64,
) -> Result<AlignUniform> {
    Ok(AlignUniform {
        alignment: alignment(view0, view1, alpha)?,
        uniformity: 0.5 * (uniformity(view0, t)? + uniformity(view1, t)?),
        alpha,
        t,
    })
}

/// Class-collapse geometry of L2-normalised embeddings; see [`class_collapse`].
#[derive(Debug, Clone, PartialEq)]
pub struct CollapseReport {
    pub num_classes: usize,
    /// Mean squared distance of a class's rows to its mean, averaged over the classes (each
    /// class counts once, whatever its size). 0 under full collapse; at most 1.
    pub within_class_variance: f64,
    /// Mean, min and max of the K(K−1) off-diagonal cosines between centred class means.
    ///
    /// The mean is no test of a simplex: the centred means sum to zero, so whenever their norms
    /// are equal the mean cosine is exactly −1/(K−1), whatever the angles (see
    /// [`class_collapse`]). Only `min_cosine`, `max_cosine` and `etf_distance` tell.
    pub mean_cosine: f64,
    pub min_cosine: f64,
    pub max_cosine: f64,
    /// The regular simplex's value −1/(K−1) that every cosine takes at an ETF.
    pub simplex_cosine: f64,
    /// `‖G − (K/(K−1))(I − 11ᵀ/K)‖_F`, G the cosine matrix below; 0 exactly at a simplex ETF.
    pub etf_distance: f64,
    /// `‖(1/K) Σ_c μ_c‖`, the norm of the mean of the (uncentred) class means, in [0, 1]. The
    /// centring removes it from the cosines, but SupCon's optimum on the sphere is a simplex
    /// centred at the origin (0 here); a large value means the classes still share a common
    /// direction, as every output of a freshly initialised ReLU network does.
    pub mean_offset: f64,
    /// K × K cosines between the centred class means (1 on the diagonal), for plotting.
    pub cosine_matrix: Vec<Vec<f64>>,
}

impl fmt::Display for CollapseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "class collapse (K = {}): within-class variance {:.4}; centred class-mean cosines \
             mean {:.4}, min {:.4}, max {:.4} (simplex {:.4}); distance to the simplex ETF {:.4}; \
             norm of the mean class mean {:.4}",
            self.num_classes,
            self.within_class_variance,
            self.mean_cosine,
            self.min_cosine,
            self.max_cosine,
            self.simplex_cosine,
            self.etf_distance,
            self.mean_offset
        )
    }
}

/// Measures how far labelled embeddings are from neural/class collapse onto a simplex ETF.
///
/// On the L2-normalised rows zᵢ with class means μ_c: the within-class variance
/// `(1/K) Σ_c mean_{i∈c} ‖zᵢ − μ_c‖²`; then the centred means `m_c = μ_c − (1/K) Σ_c' μ_c'`
/// (centred on the mean of the class means, so class sizes do not tilt it), their pairwise
/// cosines `G_cc' = m_c·m_c' / (‖m_c‖‖m_c'‖)` and the Frobenius distance from G to the ETF's
/// Gram matrix. A centred mean of norm 0 has cosine 0 with every other.
///
/// Why min and max, not the mean: with unit centred means m̂_c that sum to zero (equal norms),
/// `Σ_{a≠b} m̂_a·m̂_b = ‖Σ_c m̂_c‖² − K = −K`, so the mean cosine is −1/(K−1) for any such
/// configuration, simplex or not. A trained embedding whose class means have similar norms
/// therefore always shows a mean near −1/(K−1); only the spread of the cosines measures the
/// distance to the simplex.
///
/// K = largest label + 1 ≥ 2, and every class needs a sample.
pub fn class_collapse<T: Float>(
    embeddings: &Tensor<T>,
    labels: &[usize],
) -> Result<CollapseReport> {
    const OP: &str = "class_collapse";
    let (n, d) = matrix_dims(OP, "the embeddings", embeddings, 1)?;
    let k = check_labels(OP, "labels", labels, n)?;
    if k < 2 {
        return Err(Error::invalid(
            OP,
            format!("needs at least 2 classes, got labels 0..{k}"),
        ));
    }
    check_no_empty_class(OP, "the labels", labels, k)?;
    let z = unit_rows_f64(embeddings, d);

    let mut means = vec![0.0; k * d];
    let mut counts = vec![0usize; k];
    for (row, &y) in z.chunks(d).zip(labels) {
        counts[y] += 1;
        means[y * d..(y + 1) * d]
            .iter_mut()
            .zip(row)
            .for_each(|(m, v)| *m += v);
    }
    for (mean, &c) in means.chunks_mut(d).zip(&counts) {
        mean.iter_mut().for_each(|m| *m /= c as f64);
    }
    let mut spread = vec![0.0; k];
    for (row, &y) in z.chunks(d).zip(labels) {
        let mean = &means[y * d..(y + 1) * d];
        spread[y] += row
            .iter()
            .zip(mean)
            .map(|(v, m)| (v - m) * (v - m))
            .sum::<f64>();
    }
    let within_class_variance = spread
        .iter()
        .zip(&counts)
        .map(|(s, &c)| s / c as f64)
        .sum::<f64>()
        / k as f64;

    let mut global = vec![0.0; d];
    for mean in means.chunks(d) {
        global
            .iter_mut()
            .zip(mean)
            .for_each(|(g, m)| *g += m / k as f64);
    }
    let mean_offset = global.iter().map(|g| g * g).sum::<f64>().sqrt();
    let mut centred = means;
    for mean in centred.chunks_mut(d) {
        mean.iter_mut().zip(&global).for_each(|(m, g)| *m -= g);
        let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
        let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        mean.iter_mut().for_each(|m| *m *= inv);
    }

    let simplex_cosine = -1.0 / (k as f64 - 1.0);
    let mut cosine_matrix = vec![vec![1.0; k]; k];
    let (mut sum, mut min, mut max, mut etf_sq) = (0.0, f64::INFINITY, f64::NEG_INFINITY, 0.0);
    for a in 0..k {
        for b in 0..k {
            if a == b {
                continue;
            }
            let ma = &centred[a * d..(a + 1) * d];
            let mb = &centred[b * d..(b + 1) * d];
            let cos = ma.iter().zip(mb).map(|(x, y)| x * y).sum::<f64>();
            cosine_matrix[a][b] = cos;
            sum += cos;
            min = min.min(cos);
            max = max.max(cos);
            etf_sq += (cos - simplex_cosine).powi(2);
        }
    }
    // The diagonal of G is 1 (or 0 for a zero centred mean), the ETF's is 1.
    for (a, row) in cosine_matrix.iter_mut().enumerate() {
        if centred[a * d..(a + 1) * d].iter().all(|&v| v == 0.0) {
            row[a] = 0.0;
            etf_sq += 1.0;
        }
    }
    Ok(CollapseReport {
        num_classes: k,
        within_class_variance,
        mean_cosine: sum / (k * (k - 1)) as f64,
        min_cosine: min,
        max_cosine: max,
        simplex_cosine,
        etf_distance: etf_sq.sqrt(),
        mean_offset,
        cosine_matrix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per class: the four vertices of a square in the (x, y) plane, lifted to height
    /// `h` on z (unit rows after normalisation, sharing the direction z).
    fn lifted_square(h: f64) -> Tensor<f64> {
        let rows = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]];
        let data = rows.iter().flat_map(|[x, y]| [*x, *y, h]).collect();
        Tensor::from_vec(data, [4, 3]).unwrap()
    }

    #[test]
    fn mean_cosine_is_the_simplex_value_for_a_square_which_is_no_simplex() {
        let r = class_collapse(&lifted_square(0.0), &[0, 1, 2, 3]).unwrap();
        // Exact arithmetic on ±1 and 0 up to one rounding per sum: 1e-15 absolute.
        assert!((r.mean_cosine - r.simplex_cosine).abs() < 1e-15, "{r}");
        assert!(
            (r.min_cosine + 1.0).abs() < 1e-15 && r.max_cosine.abs() < 1e-15,
            "{r}"
        );
        assert!(r.etf_distance > 1.0, "{r}");
        assert_eq!(r.mean_offset, 0.0);
    }

    #[test]
    fn mean_offset_measures_the_shared_direction_that_centring_removes() {
        let flat = class_collapse(&lifted_square(0.0), &[0, 1, 2, 3]).unwrap();
        let h = 2.0;
        let cone = class_collapse(&lifted_square(h), &[0, 1, 2, 3]).unwrap();
        // The unit rows have z = h/√(1+h²), which is the mean of the class means; a few ulps.
        assert!(
            (cone.mean_offset - h / (1.0 + h * h).sqrt()).abs() < 1e-12,
            "{cone}"
        );
        // The centred cosines do not see the offset (same square); a few ulps.
        assert!(
            (cone.etf_distance - flat.etf_distance).abs() < 1e-12,
            "{cone}"
        );
    }
}
