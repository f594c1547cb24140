//! # Contrastive losses
//!
//! Every loss is a function of tensors that returns a scalar tensor, composed from the engine's
//! differentiable ops (so `loss.backward()` gives the gradient with respect to the features), and
//! generic over `f32`/`f64`. Each has a plain function ([`nt_xent`], [`supcon`](fn@supcon), …) and an entry
//! in the name-based registry ([`Loss`], [`compute`]) used by command-line tools.
//!
//! ## Conventions (read these first)
//!
//! - **Features** have shape `(N, V, d)`: N samples, V views of each, d dimensions.
//! - **Rows** are the `V·N` feature rows in **view-major** order: all N samples of view 0, then
//!   all of view 1, … Row `v·N + i` is sample i of view v and carries label `labels[i]`; with
//!   V = 2, the other view of row i is row `(i + N) mod 2N`.
//! - **Similarity**: `s_ij = z_i·z_j / τ`, with `z` the **L2-normalised** rows (a zero row stays
//!   zero: the norm is floored at the dtype's `NORM_EPS`). Losses marked *raw* use the features
//!   as given, without normalisation or temperature.
//! - **Self-similarity** (i = j) is never in any sum: not as a positive, not in a denominator.
//! - **Reduction**: the loss is the mean over anchors unless stated. Anchors with no positive are
//!   *left out* of the mean (not counted as zero). A batch in which no anchor has a positive is an
//!   error, never a NaN and never a silent 0.
//! - **Stability**: everything is computed in log space (log-sum-exp with the row maximum
//!   subtracted; `e^{1/τ}` is never formed), so the losses stay finite for τ down to 0.01 and
//!   feature norms from 1e-6 to 1e6, in `f32` and `f64`.
//!
//! | name | V | labels | per anchor i (then mean) | defaults |
//! |---|---|---|---|---|
//! | [`nt_xent`] | ≥ 2 | – | `−s_{i,p(i)} + log Σ_{k≠i} e^{s_ik}`, p(i) the other view of i; with V > 2 views the mean of `s_ip` over i's V − 1 other views | τ = 0.5 |
//! | [`supcon`](fn@supcon) | ≥ 1 | yes | `−(1/\|P(i)\|) Σ_{p∈P(i)} [s_ip − log Σ_{k≠i} e^{s_ik}]`, P(i) the other rows with i's label; `denominator = negatives`: only `s_ip` and other-label rows in the log-sum | τ = 0.1, denominator = all |
//! | [`spread`] | 2 | yes | `(1−α)·supcon_i + α·cNCE_i`, `cNCE_i = −s_{i,p(i)} + log Σ_{k≠i, y_k=y_i} e^{s_ik}` | τ = 0.5, α = 0.5 |
//! | [`tabi`] | 2 (query, entity) | entity ids + type ids | `τ·[α·L_type + (1−α)·L_ent]`, both supcon with `denominator = negatives`; type −1 = untyped | τ = 0.05, α = 0.1 |
//! | [`clip`] | 2 | – | `½[CE(Z₀Z₁ᵀ/τ, I) + CE(Z₁Z₀ᵀ/τ, I)]` | τ = 0.07 |
//! | [`align`] | 2 | – | `mean_i ‖z₀ᵢ − z₁ᵢ‖^α` | α = 2 |
//! | [`uniform`] | ≥ 1 | – | per view `log mean_{i<j} e^{−t‖zᵢ−zⱼ‖²}`, averaged over views | t = 2 |
//! | [`dcl`] | 2 | – | `−log(pos/(pos+Ng))`, `Ng = max((−τ⁺·n·pos + Σ_neg e^{s_ik})/(1−τ⁺), n·e^{−1/τ})`, n = 2N − 2 | τ = 0.5, τ⁺ = 0.1 |
//! | [`hcl`] | 2 | – | as dcl with `Σ_neg e^{s}` → `n·Σ w_k e^{s_ik}/Σ w_k`, `w_k = e^{β s_ik}` | τ = 0.5, τ⁺ = 0.1, β = 1 |
//! | [`spectral`](fn@spectral) | 2 | – | raw: `−2·mean_i f₀ᵢ·f₁ᵢ + mean_{i≠j} (f₀ᵢ·f₁ⱼ)²` | – |
//! | [`triplet`] | 3 (a, p, n) | – | raw: `max(0, ‖a−p‖ − ‖a−n‖ + m)` | m = 1 |
//! | [`npair`] | 2 | – | raw: `CE(A Pᵀ, I)` | – |
//! | [`moco`] | 2 (query, key) + queue (K, d) | – | `CE([q·k, q·Qᵀ]/τ, 0)` on normalised q, k, Q; no gradient to k or Q | τ = 0.2 |
//! | [`arora_logistic`], [`arora_hinge`] | 3 (x, x⁺, x⁻) | – | raw: `log(1+e^{−v})`, `max(0, 1−v)`, `v = f·(f⁺ − f⁻)` | – |
//! | [`barlow_twins`] | 2 | – | raw, batch-standardised: `Σ(1−C_ii)² + λΣ_{i≠j}C_ij²` | λ = 5e-3 |
//! | [`vicreg`] | 2 | – | raw: `λ·inv + μ·var + ν·cov` | λ = 25, μ = 25, ν = 1 |
//!
//! **Large batches.** [`nt_xent`], [`supcon`](fn@supcon) (with `denominator = all`) and [`clip`]
//! never form the similarity matrix: their log-sum-exp terms come from the fused
//! [`Tensor::similarity_logsumexp`](crate::Tensor::similarity_logsumexp), which keeps the
//! probabilities up to [`MATERIALIZE_LIMIT`](crate::ops::similarity::MATERIALIZE_LIMIT) entries
//! and streams blocks (an online log-sum-exp, recomputed in backward) past it, and their positive
//! terms are O(N·d) dot products. Memory grows as O(N·d): 2 × 32768 rows of 128 dimensions run
//! forward and backward in a few hundred MB where the matrix alone would take 16 GB. The `_with`
//! variants ([`nt_xent_with`], [`supcon_with`], [`clip_with`]) choose the regime
//! ([`SimilarityMode`]); the composed N² forms live in [`plain`] as the reference they are tested
//! against (to 1e-10 in f64, value and gradient).
//!
//! Every function validates its inputs (rank 3, the number of views, `labels.len() == N`, the
//! queue's width, finite values, parameter ranges) and returns an [`Error`](crate::Error) naming
//! the loss and the shapes.
//!
//! ```
//! use contrastive::{Tensor, Result, losses};
//!
//! # fn main() -> Result<()> {
//! // 4 orthonormal samples with identical views: NT-Xent at τ = 0.5 is −2 + log(e² + 6).
//! let mut f = vec![0.0; 4 * 2 * 4];
//! for i in 0..4 {
//!     for v in 0..2 {
//!         f[(i * 2 + v) * 4 + i] = 1.0;
//!     }
//! }
//! let features = Tensor::<f64>::from_f64s(&f, [4, 2, 4])?.requires_grad_();
//! let loss = losses::nt_xent(&features, 0.5)?;
//! assert!((loss.item()? - 0.594438).abs() < 1e-6);
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&features).unwrap().dims(), &[4, 2, 4]);
//!
//! // The same through the registry, with a parameter given as text.
//! let inputs = losses::LossInputs::new(&features);
//! let again = losses::compute("nt_xent", &inputs, &[("tau", "0.5")])?;
//! assert_eq!(again.item()?, loss.item()?);
//! # Ok(())
//! # }
//! ```
//!
//! Files: [`infonce`] (nt_xent, clip, npair, moco), [`supcon`](mod@supcon) (supcon, spread,
//! tabi), [`debiased`] (dcl, hcl), [`geometry`] (align, uniform), [`spectral`](mod@spectral),
//! [`margin`] (triplet, arora), [`redundancy`] (barlow_twins, vicreg), [`plain`] (the composed
//! N² forms of nt_xent, supcon, clip), [`registry`] (names, parameters, dispatch).

mod common;
pub mod debiased;
pub mod geometry;
pub mod infonce;
pub mod margin;
pub mod plain;
pub mod redundancy;
pub mod registry;
pub mod spectral;
pub mod supcon;

pub use crate::ops::similarity::SimilarityMode;
pub use debiased::{dcl, hcl};
pub use geometry::{align, uniform};
pub use infonce::{clip, clip_with, moco, npair, nt_xent, nt_xent_with};
pub use margin::{arora_hinge, arora_logistic, triplet};
pub use redundancy::{barlow_twins, vicreg};
pub use registry::{Loss, LossInputs, NAMES, ParamValue, compute};
pub use spectral::spectral;
pub use supcon::{Denominator, spread, supcon, supcon_with, tabi};
