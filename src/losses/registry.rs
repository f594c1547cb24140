//! The losses by name: [`Loss`] holds a loss with its named parameters (defaults from the table
//! in the [module docs](super)), [`LossInputs`] holds what a loss may consume, and [`compute`]
//! runs a loss given its name and `key=value` parameters as text — the shape of a command line
//! such as `contrastive loss supcon --features F.npy --labels L.npy --set tau=0.2`.

use super::supcon::Denominator;
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use std::fmt;

/// Every registered loss name, in the order of the table in the module docs.
pub const NAMES: &[&str] = &[
    "nt_xent",
    "supcon",
    "spread",
    "tabi",
    "clip",
    "align",
    "uniform",
    "dcl",
    "hcl",
    "spectral",
    "triplet",
    "npair",
    "moco",
    "arora_logistic",
    "arora_hinge",
    "barlow_twins",
    "vicreg",
];

/// A loss with its parameters. [`Loss::by_name`] gives the defaults; [`Loss::set`] changes one
/// parameter from text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    NtXent {
        tau: f64,
    },
    SupCon {
        tau: f64,
        denominator: Denominator,
    },
    Spread {
        tau: f64,
        alpha: f64,
        denominator: Denominator,
    },
    Tabi {
        tau: f64,
        alpha: f64,
    },
    Clip {
        tau: f64,
    },
    Align {
        alpha: f64,
    },
    Uniform {
        t: f64,
    },
    Dcl {
        tau: f64,
        tau_plus: f64,
    },
    Hcl {
        tau: f64,
        tau_plus: f64,
        beta: f64,
    },
    Spectral,
    Triplet {
        margin: f64,
    },
    NPair,
    Moco {
        tau: f64,
    },
    AroraLogistic,
    AroraHinge,
    BarlowTwins {
        lambda: f64,
    },
    VicReg {
        lambda: f64,
        mu: f64,
        nu: f64,
    },
}

/// A parameter's value: a number, or a choice among names (`denominator`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamValue {
    Number(f64),
    Choice(&'static str),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Number(v) => write!(f, "{v}"),
            ParamValue::Choice(c) => write!(f, "{c}"),
        }
    }
}

/// A mutable handle on one parameter.
enum Slot<'a> {
    Number(&'a mut f64),
    Denominator(&'a mut Denominator),
}

/// What a loss reads: the `(N, V, d)` features and, for some losses, per-sample labels, per-query
/// type ids (TABi, −1 = untyped) or a `(K, d)` queue of negative keys (MoCo).
#[derive(Debug, Clone, Copy)]
pub struct LossInputs<'a, T: Float = f64> {
    pub features: &'a Tensor<T>,
    pub labels: Option<&'a [i64]>,
    pub types: Option<&'a [i64]>,
    pub queue: Option<&'a Tensor<T>>,
}

impl<'a, T: Float> LossInputs<'a, T> {
    /// Features only.
    pub fn new(features: &'a Tensor<T>) -> Self {
        LossInputs {
            features,
            labels: None,
            types: None,
            queue: None,
        }
    }
    /// With per-sample labels (entity ids for TABi).
    pub fn with_labels(mut self, labels: &'a [i64]) -> Self {
        self.labels = Some(labels);
        self
    }
    /// With per-query type ids (TABi).
    pub fn with_types(mut self, types: &'a [i64]) -> Self {
        self.types = Some(types);
        self
    }
    /// With a queue of negative keys (MoCo).
    pub fn with_queue(mut self, queue: &'a Tensor<T>) -> Self {
        self.queue = Some(queue);
        self
    }
}

/// The loss `name` with its default parameters; an error lists the known names.
pub fn by_name(name: &str) -> Result<Loss> {
    Loss::by_name(name)
}

/// Computes the loss `name` on `inputs`, after setting each `(key, value)` parameter from text.
/// Errors: an unknown loss or parameter, an unparsable value, a missing or unexpected input, and
/// every validation error of the loss itself.
pub fn compute<T: Float>(
    name: &str,
    inputs: &LossInputs<'_, T>,
    params: &[(&str, &str)],
) -> Result<Tensor<T>> {
    Loss::with_params(name, params)?.compute(inputs)
}

impl Loss {
    /// The loss `name` with the defaults of the module table.
    pub fn by_name(name: &str) -> Result<Loss> {
        let all = Denominator::All;
        Ok(match name {
            "nt_xent" => Loss::NtXent { tau: 0.5 },
            "supcon" => Loss::SupCon {
                tau: 0.1,
                denominator: all,
            },
            "spread" => Loss::Spread {
                tau: 0.5,
                alpha: 0.5,
                denominator: all,
            },
            "tabi" => Loss::Tabi {
                tau: 0.05,
                alpha: 0.1,
            },
            "clip" => Loss::Clip { tau: 0.07 },
            "align" => Loss::Align { alpha: 2.0 },
            "uniform" => Loss::Uniform { t: 2.0 },
            "dcl" => Loss::Dcl {
                tau: 0.5,
                tau_plus: 0.1,
            },
            "hcl" => Loss::Hcl {
                tau: 0.5,
                tau_plus: 0.1,
                beta: 1.0,
            },
            "spectral" => Loss::Spectral,
            "triplet" => Loss::Triplet { margin: 1.0 },
            "npair" => Loss::NPair,
            "moco" => Loss::Moco { tau: 0.2 },
            "arora_logistic" => Loss::AroraLogistic,
            "arora_hinge" => Loss::AroraHinge,
            "barlow_twins" => Loss::BarlowTwins { lambda: 5e-3 },
            "vicreg" => Loss::VicReg {
                lambda: 25.0,
                mu: 25.0,
                nu: 1.0,
            },
            _ => {
                return Err(Error::invalid(
                    "loss",
                    format!("unknown loss '{name}'; known losses: {}", NAMES.join(", ")),
                ));
            }
        })
    }

    /// The loss `name` with its defaults, then each `(key, value)` applied with [`Loss::set`].
    pub fn with_params(name: &str, params: &[(&str, &str)]) -> Result<Loss> {
        let mut loss = Loss::by_name(name)?;
        for (key, value) in params {
            loss.set(key, value)?;
        }
        Ok(loss)
    }

    /// The registered name.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::NtXent { .. } => "nt_xent",
            Loss::SupCon { .. } => "supcon",
            Loss::Spread { .. } => "spread",
            Loss::Tabi { .. } => "tabi",
            Loss::Clip { .. } => "clip",
            Loss::Align { .. } => "align",
            Loss::Uniform { .. } => "uniform",
            Loss::Dcl { .. } => "dcl",
            Loss::Hcl { .. } => "hcl",
            Loss::Spectral => "spectral",
            Loss::Triplet { .. } => "triplet",
            Loss::NPair => "npair",
            Loss::Moco { .. } => "moco",
            Loss::AroraLogistic => "arora_logistic",
            Loss::AroraHinge => "arora_hinge",
            Loss::BarlowTwins { .. } => "barlow_twins",
            Loss::VicReg { .. } => "vicreg",
        }
    }

    fn slots(&mut self) -> Vec<(&'static str, Slot<'_>)> {
        use Slot::{Denominator as D, Number as N};
        match self {
            Loss::NtXent { tau } | Loss::Clip { tau } | Loss::Moco { tau } => vec![("tau", N(tau))],
            Loss::SupCon { tau, denominator } => {
                vec![("tau", N(tau)), ("denominator", D(denominator))]
            }
            Loss::Spread {
                tau,
                alpha,
                denominator,
            } => vec![
                ("tau", N(tau)),
                ("alpha", N(alpha)),
                ("denominator", D(denominator)),
            ],
            Loss::Tabi { tau, alpha } => vec![("tau", N(tau)), ("alpha", N(alpha))],
            Loss::Align { alpha } => vec![("alpha", N(alpha))],
            Loss::Uniform { t } => vec![("t", N(t))],
            Loss::Dcl { tau, tau_plus } => vec![("tau", N(tau)), ("tau_plus", N(tau_plus))],
            Loss::Hcl {
                tau,
                tau_plus,
                beta,
            } => vec![
                ("tau", N(tau)),
                ("tau_plus", N(tau_plus)),
                ("beta", N(beta)),
            ],
            Loss::Triplet { margin } => vec![("margin", N(margin))],
            Loss::BarlowTwins { lambda } => vec![("lambda", N(lambda))],
            Loss::VicReg { lambda, mu, nu } => {
                vec![("lambda", N(lambda)), ("mu", N(mu)), ("nu", N(nu))]
            }
            Loss::Spectral | Loss::NPair | Loss::AroraLogistic | Loss::AroraHinge => vec![],
        }
    }

    /// The parameters and their current values, in a fixed order.
    pub fn params(&self) -> Vec<(&'static str, ParamValue)> {
        let mut copy = *self;
        copy.slots()
            .into_iter()
            .map(|(k, slot)| {
                let v = match slot {
                    Slot::Number(x) => ParamValue::Number(*x),
                    Slot::Denominator(d) => ParamValue::Choice(d.name()),
                };
                (k, v)
            })
            .collect()
    }

    /// Sets parameter `key` from its text form (a number, or `all`/`negatives` for
    /// `denominator`). Unknown keys and unparsable values are errors naming the loss. Ranges are
    /// checked when the loss is computed.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let name = self.name();
        let mut slots = self.slots();
        let known: Vec<&str> = slots.iter().map(|(k, _)| *k).collect();
        let known = if known.is_empty() {
            "it takes none".to_string()
        } else {
            format!("its parameters: {}", known.join(", "))
        };
        let Some((_, slot)) = slots.iter_mut().find(|(k, _)| *k == key) else {
            return Err(Error::invalid(
                name,
                format!("unknown parameter '{key}' ({known})"),
            ));
        };
        match slot {
            Slot::Number(x) => {
                **x = value.trim().parse::<f64>().map_err(|_| {
                    Error::invalid(name, format!("parameter {key} = '{value}' is not a number"))
                })?;
            }
            Slot::Denominator(d) => {
                **d = Denominator::parse(value.trim()).ok_or_else(|| {
                    Error::invalid(
                        name,
                        format!("parameter {key} = '{value}' must be 'all' or 'negatives'"),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Which optional inputs the loss reads: (labels, types, queue).
    pub fn reads(&self) -> (bool, bool, bool) {
        match self {
            Loss::SupCon { .. } | Loss::Spread { .. } => (true, false, false),
            Loss::Tabi { .. } => (true, true, false),
            Loss::Moco { .. } => (false, false, true),
            _ => (false, false, false),
        }
    }

    /// Runs the loss on `inputs`. A missing input the loss needs, or an input it never reads
    /// (labels for `nt_xent`, a queue for `supcon`, …), is an error naming the loss.
    pub fn compute<T: Float>(&self, inputs: &LossInputs<'_, T>) -> Result<Tensor<T>> {
        let name = self.name();
        let (labels, types, queue) = self.reads();
        let given = [
            ("labels", labels, inputs.labels.is_some()),
            ("types", types, inputs.types.is_some()),
            ("queue", queue, inputs.queue.is_some()),
        ];
        for (what, reads, present) in given {
            if present && !reads {
                return Err(Error::invalid(name, format!("takes no {what}")));
            }
        }
        if labels && inputs.labels.is_none() {
            let what = if types {
                "entity ids as labels"
            } else {
                "labels"
            };
            return Err(Error::invalid(
                name,
                format!("needs {what} (one per sample)"),
            ));
        }
        let f = inputs.features;
        let labels = || inputs.labels.unwrap_or_default();
        match *self {
            Loss::NtXent { tau } => super::nt_xent(f, tau),
            Loss::SupCon { tau, denominator } => super::supcon(f, labels(), tau, denominator),
            Loss::Spread {
                tau,
                alpha,
                denominator,
            } => super::spread(f, labels(), tau, alpha, denominator),
            Loss::Tabi { tau, alpha } => super::tabi(f, labels(), inputs.types, tau, alpha),
            Loss::Clip { tau } => super::clip(f, tau),
            Loss::Align { alpha } => super::align(f, alpha),
            Loss::Uniform { t } => super::uniform(f, t),
            Loss::Dcl { tau, tau_plus } => super::dcl(f, tau, tau_plus),
            Loss::Hcl {
                tau,
                tau_plus,
                beta,
            } => super::hcl(f, tau, tau_plus, beta),
            Loss::Spectral => super::spectral(f),
            Loss::Triplet { margin } => super::triplet(f, margin),
            Loss::NPair => super::npair(f),
            Loss::Moco { tau } => match inputs.queue {
                Some(q) => super::moco(f, q, tau),
                None => Err(Error::invalid(name, "needs a queue of shape (K, d)")),
            },
            Loss::AroraLogistic => super::arora_logistic(f),
            Loss::AroraHinge => super::arora_hinge(f),
            Loss::BarlowTwins { lambda } => super::barlow_twins(f, lambda),
            Loss::VicReg { lambda, mu, nu } => super::vicreg(f, lambda, mu, nu),
        }
    }
}
