//! Gradient checking, as a public API: compare reverse-mode gradients with central finite
//! differences in `f64`, in the spirit of `torch.autograd.gradcheck` and JAX's `check_vjp`.
//!
//! Small problems get the full Jacobian both ways (one backward pass per output element, two
//! forward passes per input element). Large ones get random projections: for a seeded random
//! tangent `u` and cotangent `v`, the numeric `⟨v, (f(x+εu) − f(x−εu))/2ε⟩` is compared with the
//! analytic `⟨vjp(v), u⟩`, which tests every entry of the Jacobian at once.

use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::fmt;

/// How to compare: the full Jacobian, random projections, or whichever fits the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// Full Jacobian when `inputs × outputs ≤ full_jacobian_limit`, projections otherwise.
    Auto,
    FullJacobian,
    Projections,
}

/// Step, tolerances and sampling of a gradient check. A difference passes when
/// `|analytic − numeric| ≤ atol + rtol·|numeric|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradCheckOptions {
    /// Central-difference step (relative steps are the caller's choice: scale inputs instead).
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
    pub mode: CheckMode,
    /// Largest `input elements × output elements` for which `Auto` builds the full Jacobian.
    pub full_jacobian_limit: usize,
    /// Number of random (tangent, cotangent) pairs in projection mode.
    pub projections: usize,
    /// Seed of the random tangents and cotangents.
    pub seed: u64,
}

impl Default for GradCheckOptions {
    /// `torch.autograd.gradcheck`'s step and tolerances: eps 1e-6, atol 1e-5, rtol 1e-3.
    fn default() -> Self {
        GradCheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            mode: CheckMode::Auto,
            full_jacobian_limit: 4096,
            projections: 8,
            seed: 0,
        }
    }
}

/// Where the worst disagreement was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Discrepancy {
    /// Index of the input tensor (full Jacobian) — `None` for a projection, which spans all.
    pub input: Option<usize>,
    /// Flat element index within that input (full Jacobian).
    pub element: Option<usize>,
    /// Flat output index (full Jacobian) or projection number.
    pub output: usize,
    pub analytic: f64,
    pub numeric: f64,
}

/// The outcome of a gradient check.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheckReport {
    pub passed: bool,
    /// True when the full Jacobian was compared, false for random projections.
    pub full_jacobian: bool,
    /// Number of scalar comparisons made.
    pub comparisons: usize,
    pub max_abs_error: f64,
    pub max_rel_error: f64,
    /// The comparison that came closest to (or furthest past) its tolerance.
    pub worst: Option<Discrepancy>,
}

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gradient check {} ({} {} comparisons): max abs error {:.3e}, max rel error {:.3e}",
            if self.passed { "passed" } else { "FAILED" },
            self.comparisons,
            if self.full_jacobian {
                "Jacobian"
            } else {
                "projection"
            },
            self.max_abs_error,
            self.max_rel_error
        )?;
        if let Some(w) = &self.worst {
            write!(f, "; worst at ")?;
            match (w.input, w.element) {
                (Some(i), Some(e)) => write!(f, "input {i} element {e}, output {}", w.output)?,
                _ => write!(f, "projection {}", w.output)?,
            }
            write!(
                f,
                ": analytic {:.9e} vs numeric {:.9e}",
                w.analytic, w.numeric
            )?;
        }
        Ok(())
    }
}

/// Accumulates comparisons and remembers the worst.
struct Tally {
    opts: GradCheckOptions,
    report: GradCheckReport,
    worst_ratio: f64,
}

impl Tally {
    fn new(opts: GradCheckOptions, full: bool) -> Self {
        Tally {
            opts,
            report: GradCheckReport {
                passed: true,
                full_jacobian: full,
                comparisons: 0,
                max_abs_error: 0.0,
                max_rel_error: 0.0,
                worst: None,
            },
            worst_ratio: -1.0,
        }
    }

    fn compare(&mut self, analytic: f64, numeric: f64, at: impl FnOnce() -> Discrepancy) {
        let abs = (analytic - numeric).abs();
        let scale = analytic.abs().max(numeric.abs());
        let rel = if scale > 0.0 { abs / scale } else { 0.0 };
        let allowed = self.opts.atol + self.opts.rtol * numeric.abs();
        let ratio = if abs.is_nan() {
            f64::INFINITY
        } else {
            abs / allowed
        };
        let r = &mut self.report;
        r.comparisons += 1;
        r.max_abs_error = r.max_abs_error.max(abs);
        r.max_rel_error = r.max_rel_error.max(rel);
        if abs.is_nan() || abs > allowed {
            r.passed = false;
        }
        if ratio > self.worst_ratio {
            self.worst_ratio = ratio;
            let mut d = at();
            d.analytic = analytic;
            d.numeric = numeric;
            r.worst = Some(d);
        }
    }
}

fn evaluate<F>(f: &F, inputs: &[Tensor<f64>]) -> Result<Tensor<f64>>
where
    F: Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
{
    let out = no_grad(|| f(inputs))?;
    if !out.all_finite() {
        return Err(Error::invalid(
            "check_gradients",
            format!(
                "the function produced a non-finite value at shape {:?}",
                out.shape()
            ),
        ));
    }
    Ok(out)
}

fn with_offset(inputs: &[Tensor<f64>], i: usize, delta: &[f64]) -> Result<Vec<Tensor<f64>>> {
    let mut moved = inputs.to_vec();
    let data = inputs[i]
        .data()
        .iter()
        .zip(delta)
        .map(|(x, d)| x + d)
        .collect();
    moved[i] = Tensor::from_vec(data, inputs[i].shape().clone())?;
    Ok(moved)
}

/// Checks the reverse-mode gradients of `f` at `inputs` against central differences.
///
/// `f` may return a tensor of any shape. The inputs are copied into tracked leaves, so plain
/// constants can be passed. Returns an error (not a failed report) when `f` itself fails or
/// produces a non-finite value.
pub fn check_gradients<F>(
    f: F,
    inputs: &[Tensor<f64>],
    options: &GradCheckOptions,
) -> Result<GradCheckReport>
where
    F: Fn(&[Tensor<f64>]) -> Result<Tensor<f64>>,
{
    let tracked: Vec<Tensor<f64>> = inputs.iter().map(|t| t.detach().requires_grad_()).collect();
    let out = f(&tracked)?;
    if !out.all_finite() {
        return Err(Error::invalid(
            "check_gradients",
            format!(
                "the function produced a non-finite value at shape {:?}",
                out.shape()
            ),
        ));
    }
    let n_in: usize = inputs.iter().map(Tensor::numel).sum();
    let full = match options.mode {
        CheckMode::FullJacobian => true,
        CheckMode::Projections => false,
        CheckMode::Auto => n_in.saturating_mul(out.numel()) <= options.full_jacobian_limit,
    };
    let mut tally = Tally::new(*options, full);
    let eps = options.eps;
    if full {
        // Analytic Jacobian, row by row: one VJP per output element.
        let mut analytic = vec![vec![0.0; n_in]; out.numel()];
        for (o, row) in analytic.iter_mut().enumerate() {
            let mut onehot = vec![0.0; out.numel()];
            onehot[o] = 1.0;
            let grads = out.backward_with(&Tensor::from_vec(onehot, out.shape().clone())?)?;
            let mut col = 0;
            for t in &tracked {
                if let Some(g) = grads.get(t) {
                    row[col..col + t.numel()].copy_from_slice(g.data());
                }
                col += t.numel();
            }
        }
        // Numeric Jacobian, column by column.
        let mut col = 0;
        for (i, t) in inputs.iter().enumerate() {
            for e in 0..t.numel() {
                let mut delta = vec![0.0; t.numel()];
                delta[e] = eps;
                let plus = evaluate(&f, &with_offset(inputs, i, &delta)?)?;
                delta[e] = -eps;
                let minus = evaluate(&f, &with_offset(inputs, i, &delta)?)?;
                let rows = plus.data().iter().zip(minus.data()).zip(&analytic);
                for (o, ((p, m), row)) in rows.enumerate() {
                    let numeric = (p - m) / (2.0 * eps);
                    tally.compare(row[col + e], numeric, || Discrepancy {
                        input: Some(i),
                        element: Some(e),
                        output: o,
                        analytic: 0.0,
                        numeric: 0.0,
                    });
                }
            }
            col += t.numel();
        }
    } else {
        let mut rng = StdRng::seed_from_u64(options.seed);
        for p in 0..options.projections {
            let v = Tensor::<f64>::randn(out.shape().clone(), &mut rng);
            let u: Vec<Tensor<f64>> = inputs
                .iter()
                .map(|t| Tensor::randn(t.shape().clone(), &mut rng))
                .collect();
            let grads = out.backward_with(&v)?;
            let analytic: f64 = tracked
                .iter()
                .zip(&u)
                .map(|(t, u)| {
                    grads.get(t).map_or(0.0, |g| {
                        g.data().iter().zip(u.data()).map(|(a, b)| a * b).sum()
                    })
                })
                .sum();
            let shifted = |sign: f64| -> Result<f64> {
                let moved = inputs
                    .iter()
                    .zip(&u)
                    .map(|(t, u)| {
                        let data = t
                            .data()
                            .iter()
                            .zip(u.data())
                            .map(|(x, d)| x + sign * eps * d)
                            .collect();
                        Tensor::from_vec(data, t.shape().clone())
                    })
                    .collect::<Result<Vec<_>>>()?;
                let y = evaluate(&f, &moved)?;
                Ok(y.data().iter().zip(v.data()).map(|(a, b)| a * b).sum())
            };
            let numeric = (shifted(1.0)? - shifted(-1.0)?) / (2.0 * eps);
            tally.compare(analytic, numeric, || Discrepancy {
                input: None,
                element: None,
                output: p,
                analytic: 0.0,
                numeric: 0.0,
            });
        }
    }
    Ok(tally.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_gradient_is_caught_and_located() {
        // f(x) = x² but routed through a constant copy for the second element: the analytic
        // gradient misses that element's dependence.
        let x = Tensor::<f64>::from_f64s(&[1.0, 2.0], [2]).unwrap();
        let f = |xs: &[Tensor<f64>]| -> Result<Tensor<f64>> {
            let x = &xs[0];
            let cut = x.narrow(0, 1, 1)?.detach();
            Tensor::concat(&[x.narrow(0, 0, 1)?.square(), cut.square()], 0)
        };
        let report = check_gradients(f, &[x], &GradCheckOptions::default()).unwrap();
        assert!(!report.passed, "{report}");
        let worst = report.worst.unwrap();
        assert_eq!(
            (worst.input, worst.element, worst.output),
            (Some(0), Some(1), 1)
        );
        assert!((worst.numeric - 4.0).abs() < 1e-6 && worst.analytic == 0.0);
    }

    #[test]
    fn projections_agree_with_the_full_jacobian_on_a_correct_function() {
        let x = Tensor::<f64>::from_f64s(&[0.3, -1.2, 2.0, 0.7, 1.1, -0.4], [2, 3]).unwrap();
        let f = |xs: &[Tensor<f64>]| xs[0].tanh().mul(&xs[0]);
        for mode in [CheckMode::FullJacobian, CheckMode::Projections] {
            let opts = GradCheckOptions {
                mode,
                ..Default::default()
            };
            let r = check_gradients(f, std::slice::from_ref(&x), &opts).unwrap();
            assert!(r.passed && r.max_abs_error < 1e-8, "{r}");
        }
    }
}
