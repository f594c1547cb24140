//! The linear probe: multinomial logistic regression on frozen, standardised embeddings, fitted
//! to convergence by full-batch L-BFGS on the engine's matmul and log-softmax.
//!
//! ## The objective (exactly)
//!
//! With `x̃ᵢ = (xᵢ − μ) / σ` (μ, σ the per-feature mean and population standard deviation of the
//! **training** rows; a constant feature gets σ = 1), weights `W` of shape `(d, K)`, bias `b` of
//! length K and `λ = 1 / (C·N)`:
//!
//! `L(W, b) = (1/N) Σᵢ [logsumexp(x̃ᵢW + b) − (x̃ᵢW + b)_{yᵢ}] + (λ/2)·‖W‖²_F`
//!
//! This is scikit-learn's `LogisticRegression(C=C)` objective (multinomial, L2 penalty, bias
//! not penalised) divided by N, so the same C gives the same minimiser; the default C = 1.
//! L is strictly convex in W and convex in b, the start is W = 0, b = 0 (the loss is then
//! ln K) and no randomness is involved, so the result is deterministic.
//!
//! Gradient: with `P = softmax(X̃W + b)` and `Y` the one-hot labels, `∂L/∂W = X̃ᵀ(P − Y)/N + λW`
//! and `∂L/∂b = 1ᵀ(P − Y)/N`. It is written out rather than taken from `backward()` so that
//! the probe records no graph and runs inside [`crate::no_grad`] too; a unit test below checks
//! it against the engine's autodiff.

use super::lbfgs::{self, Options};
use super::{accuracy, argmax, check_labels, check_no_empty_class, check_same_width, matrix_dims};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use std::fmt;

/// Probe settings. The defaults fit digits-sized problems (1,437 × 256, 10 classes) to a
/// gradient below 1e-6 in well under a second in release builds; Fashion-MNIST features
/// (60,000 × 128, nearly unregularised at C = 1) took 963–1,148 iterations to meet
/// `loss_tol`, hence the cap of 5,000.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeConfig {
    /// Inverse regularisation strength, as scikit-learn's `C`: `λ = 1/(C·N)`. Must be > 0.
    pub c: f64,
    /// Iteration cap of L-BFGS (each iteration costs one or a few objective evaluations).
    pub max_iter: usize,
    /// Converged when the largest gradient component is at most this.
    pub grad_tol: f64,
    /// Converged when the relative decrease of L in one iteration is at most this.
    pub loss_tol: f64,
    /// Standardise features with the training mean and standard deviation (the default);
    /// `false` fits on the raw features.
    pub standardize: bool,
    /// Curvature pairs L-BFGS keeps.
    pub history: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            c: 1.0,
            max_iter: 5000,
            grad_tol: 1e-6,
            loss_tol: 1e-10,
            standardize: true,
            history: 10,
        }
    }
}

/// A fitted probe: the standardisation, the weights and how the fit ended.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearProbe {
    /// Feature means subtracted before the weights apply (zeros without standardisation).
    pub mean: Vec<f64>,
    /// Feature scales divided by (ones without standardisation).
    pub scale: Vec<f64>,
    /// `(d, K)` row-major, acting on standardised features.
    pub weights: Vec<f64>,
    /// Length K.
    pub bias: Vec<f64>,
    pub num_classes: usize,
    /// L-BFGS iterations taken.
    pub iterations: usize,
    /// The objective L at the end.
    pub final_loss: f64,
    /// The largest gradient component at the end.
    pub grad_max: f64,
    /// Whether a tolerance was met before the iteration cap.
    pub converged: bool,
}

/// What [`linear_probe`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub num_classes: usize,
    pub iterations: usize,
    pub final_loss: f64,
    pub grad_max: f64,
    pub converged: bool,
    /// The predicted class of each test row.
    pub test_predictions: Vec<usize>,
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "linear probe: train {:.2}%, test {:.2}% (K = {}, {} L-BFGS iterations, loss {:.5}, \
             max |grad| {:.1e}{})",
            100.0 * self.train_accuracy,
            100.0 * self.test_accuracy,
            self.num_classes,
            self.iterations,
            self.final_loss,
            self.grad_max,
            if self.converged {
                ""
            } else {
                ", NOT converged"
            }
        )
    }
}

const OP: &str = "linear_probe";

fn check_config(config: &ProbeConfig) -> Result<()> {
    if !(config.c.is_finite() && config.c > 0.0) {
        return Err(Error::invalid(
            OP,
            format!("C = {} must be finite and > 0", config.c),
        ));
    }
    if !(config.grad_tol >= 0.0 && config.loss_tol >= 0.0) {
        return Err(Error::invalid(
            OP,
            format!(
                "tolerances must be ≥ 0, got grad_tol = {} and loss_tol = {}",
                config.grad_tol, config.loss_tol
            ),
        ));
    }
    if config.history == 0 {
        return Err(Error::invalid(OP, "history must be at least 1"));
    }
    Ok(())
}

/// Trains a probe on `train` with `train_labels` and reports its accuracy there and on `test`.
///
/// K is one more than the largest label in either split; every class `0..K` needs a training
/// sample (a class the probe never saw would push its bias to −∞ and L-BFGS would not converge).
pub fn linear_probe<T: Float>(
    train: &Tensor<T>,
    train_labels: &[usize],
    test: &Tensor<T>,
    test_labels: &[usize],
    config: &ProbeConfig,
) -> Result<ProbeReport> {
    let (n, _) = matrix_dims(OP, "the training embeddings", train, 1)?;
    let (m, _) = matrix_dims(OP, "the test embeddings", test, 1)?;
    check_same_width(OP, train, test)?;
    let k_train = check_labels(OP, "training labels", train_labels, n)?;
    let k = k_train.max(check_labels(OP, "test labels", test_labels, m)?);
    check_no_empty_class(OP, "the training labels", train_labels, k)?;
    let probe = LinearProbe::fit(train, train_labels, config)?;
    let test_predictions = probe.predict(test)?;
    Ok(ProbeReport {
        train_accuracy: accuracy(&probe.predict(train)?, train_labels),
        test_accuracy: accuracy(&test_predictions, test_labels),
        num_classes: k,
        iterations: probe.iterations,
        final_loss: probe.final_loss,
        grad_max: probe.grad_max,
        converged: probe.converged,
        test_predictions,
    })
}

impl LinearProbe {
    /// Fits the probe (see the module docs for the objective). K = largest label + 1, and
    /// every class `0..K` needs a sample.
    pub fn fit<T: Float>(x: &Tensor<T>, labels: &[usize], config: &ProbeConfig) -> Result<Self> {
        check_config(config)?;
        let (n, d) = matrix_dims(OP, "the training embeddings", x, 1)?;
        let k = check_labels(OP, "training labels", labels, n)?;
        check_no_empty_class(OP, "the training labels", labels, k)?;
        let raw = x.to_f64_vec();
        let (mean, scale) = if config.standardize {
            standardizer(&raw, d)
        } else {
            (vec![0.0; d], vec![1.0; d])
        };
        let xs = Tensor::from_vec(apply_standardizer(raw, &mean, &scale), [n, d])?;
        let xs_t = xs.t()?; // (d, N), formed once for the weight gradient
        let lambda = 1.0 / (config.c * n as f64);
        let opts = Options {
            max_iter: config.max_iter,
            grad_tol: config.grad_tol,
            loss_tol: config.loss_tol,
            history: config.history,
        };
        let f = |p: &[f64]| objective(&xs, &xs_t, labels, p, d, k, lambda);
        let out = lbfgs::minimize(f, vec![0.0; d * k + k], &opts)?;
        let mut weights = out.x;
        let bias = weights.split_off(d * k);
        Ok(Self {
            mean,
            scale,
            weights,
            bias,
            num_classes: k,
            iterations: out.iterations,
            final_loss: out.loss,
            grad_max: out.grad_max,
            converged: out.converged,
        })
    }

    /// The `(N, K)` logits `x̃W + b` of new rows, row-major.
    pub fn logits<T: Float>(&self, x: &Tensor<T>) -> Result<Vec<f64>> {
        let (n, d) = matrix_dims("LinearProbe::logits", "the embeddings", x, 0)?;
        if d != self.mean.len() {
            return Err(Error::ShapeMismatch {
                op: "LinearProbe::logits",
                lhs: x.dims().to_vec(),
                rhs: vec![self.mean.len(), self.num_classes],
            });
        }
        let xs = Tensor::from_vec(
            apply_standardizer(x.to_f64_vec(), &self.mean, &self.scale),
            [n, d],
        )?;
        let w = Tensor::from_vec(self.weights.clone(), [d, self.num_classes])?;
        let b = Tensor::from_vec(self.bias.clone(), [self.num_classes])?;
        Ok(xs.matmul(&w)?.add(&b)?.to_vec()) // (N, K)
    }

    /// The most likely class of each row (the lowest index on ties).
    pub fn predict<T: Float>(&self, x: &Tensor<T>) -> Result<Vec<usize>> {
        let logits = self.logits(x)?;
        Ok(logits.chunks(self.num_classes).map(argmax).collect())
    }
}

/// Per-feature mean and population standard deviation of row-major `(N, d)` data; a feature
/// whose spread is negligible against its magnitude keeps scale 1 (as scikit-learn does), so
/// that a constant feature stays constant instead of becoming 0/0.
fn standardizer(x: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (x.len() / d) as f64;
    let mut mean = vec![0.0; d];
    for row in x.chunks(d) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0; d];
    for row in x.chunks(d) {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v - m) * (v - m);
        }
    }
    let scale = var
        .iter()
        .zip(&mean)
        .map(|(s, m)| {
            let std = (s / n).sqrt();
            if std > 1e-12 * (1.0 + m.abs()) {
                std
            } else {
                1.0
            }
        })
        .collect();
    (mean, scale)
}

fn apply_standardizer(mut x: Vec<f64>, mean: &[f64], scale: &[f64]) -> Vec<f64> {
    for row in x.chunks_mut(mean.len()) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(scale) {
            *v = (*v - m) / s;
        }
    }
    x
}

/// L and its gradient at `params = [W (d·K, row-major), b (K)]`.
fn objective(
    x: &Tensor<f64>,
    x_t: &Tensor<f64>,
    labels: &[usize],
    params: &[f64],
    d: usize,
    k: usize,
    lambda: f64,
) -> Result<(f64, Vec<f64>)> {
    let n = labels.len();
    let w = Tensor::from_vec(params[..d * k].to_vec(), [d, k])?;
    let b = Tensor::from_vec(params[d * k..].to_vec(), [k])?;
    let log_p = x.matmul(&w)?.add(&b)?.log_softmax(1)?; // (N, K)
    let inv_n = 1.0 / n as f64;
    let mut nll = 0.0;
    // dL/dlogits = (P − Y)/N, (N, K)
    let mut g_logits: Vec<f64> = log_p.data().iter().map(|lp| lp.exp() * inv_n).collect();
    for (i, &y) in labels.iter().enumerate() {
        nll -= log_p.data()[i * k + y];
        g_logits[i * k + y] -= inv_n;
    }
    let w_sq: f64 = params[..d * k].iter().map(|v| v * v).sum();
    let loss = nll * inv_n + 0.5 * lambda * w_sq;
    let mut g_bias = vec![0.0; k];
    for row in g_logits.chunks(k) {
        g_bias.iter_mut().zip(row).for_each(|(g, v)| *g += v);
    }
    let g_w = x_t.matmul(&Tensor::from_vec(g_logits, [n, k])?)?; // (d, N)·(N, K) → (d, K)
    let mut grad: Vec<f64> = g_w
        .data()
        .iter()
        .zip(&params[..d * k])
        .map(|(g, w)| g + lambda * w)
        .collect();
    grad.extend(g_bias);
    Ok((loss, grad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    /// The hand-written gradient against the engine's autodiff of the same objective.
    #[test]
    fn gradient_matches_autodiff() {
        let mut rng = StdRng::seed_from_u64(3);
        let (n, d, k, lambda) = (7, 4, 3, 0.3);
        let x = Tensor::<f64>::randn([n, d], &mut rng);
        let labels = [0, 2, 1, 1, 0, 2, 2];
        let params = Tensor::<f64>::randn([d * k + k], &mut rng).to_vec();
        let (loss, grad) = objective(&x, &x.t().unwrap(), &labels, &params, d, k, lambda).unwrap();

        let w = Tensor::from_vec(params[..d * k].to_vec(), [d, k])
            .unwrap()
            .requires_grad_();
        let b = Tensor::from_vec(params[d * k..].to_vec(), [k])
            .unwrap()
            .requires_grad_();
        let reference = x
            .matmul(&w)
            .and_then(|z| z.add(&b))
            .and_then(|z| z.cross_entropy(&labels))
            .and_then(|ce| ce.add(&w.square().sum_all()?.mul_scalar(lambda / 2.0)))
            .unwrap();
        let grads = reference.backward().unwrap();
        let mut expected = grads.get(&w).unwrap().to_vec();
        expected.extend(grads.get(&b).unwrap().to_vec());
        // Both are exact f64 evaluations of the same formula; only summation order differs.
        assert!((loss - reference.item().unwrap()).abs() < 1e-12);
        for (g, e) in grad.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-12, "{grad:?} vs {expected:?}");
        }
    }
}
