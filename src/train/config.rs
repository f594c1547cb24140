//! Run configuration: a flat, typed map from dotted keys (`optim.lr`) to values, with a default
//! for every key. Files (TOML tables flatten to dotted keys), `--set key=value` overrides and
//! sweep grids all edit the same map; unknown keys and ill-typed values are errors naming the
//! key. The resolved map has a canonical text form, and a run's id is a hash of it.

use super::toml::{quote, read_value, strip_comment};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;

/// A configuration value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    List(Vec<Value>),
}

impl Value {
    /// Parses the right-hand side of `key=value`: integers, floats, `true`/`false`,
    /// `[a, b, …]` lists, and anything else as a string (quotes optional).
    pub fn parse(text: &str) -> Value {
        let t = text.trim();
        if let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let items: Vec<Value> = inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Value::parse)
                .collect();
            return Value::List(items);
        }
        if let Ok(i) = t.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = t.parse::<f64>() {
            return Value::Float(f);
        }
        match t {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::Str(t.trim_matches('"').trim_matches('\'').to_string()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
        }
    }

    /// Converts `self` to the type of `like`, where that is lossless (an integer where a
    /// number is expected, a single value where a list is expected).
    fn coerce_to(self, like: &Value) -> Option<Value> {
        match (like, self) {
            (Value::Int(_), Value::Int(i)) => Some(Value::Int(i)),
            (Value::Float(_), Value::Float(f)) => Some(Value::Float(f)),
            (Value::Float(_), Value::Int(i)) => Some(Value::Float(i as f64)),
            (Value::Bool(_), Value::Bool(b)) => Some(Value::Bool(b)),
            (Value::Str(_), Value::Str(s)) => Some(Value::Str(s)),
            (Value::Str(_), Value::Int(i)) => Some(Value::Str(i.to_string())),
            (Value::Str(_), Value::Float(f)) => Some(Value::Str(f.to_string())),
            (Value::Str(_), Value::Bool(b)) => Some(Value::Str(b.to_string())),
            (Value::List(_), Value::List(items)) => Some(Value::List(items)),
            (Value::List(_), single @ (Value::Int(_) | Value::Float(_))) => {
                Some(Value::List(vec![single]))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// TOML syntax, so the canonical form of a config is a valid TOML file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 => {
                write!(f, "{x:.1}")
            }
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => f.write_str(&quote(s)),
            Value::List(items) => {
                write!(f, "[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, "]")
            }
        }
    }
}

/// Every key with its default and a one-line meaning: the default run is SimCLR on the shipped
/// digits (MLP 64→256→256, linear projector →128, Adam 1e-3, batch 256, 200 epochs).
const SCHEMA: &[(&str, &str, &str)] = &[
    (
        "data.name",
        "\"digits\"",
        "digits | idx | cifar10 | synthetic | npy",
    ),
    (
        "data.path",
        "\"\"",
        "file or folder for idx/cifar10/npy (idx: folder with the four files)",
    ),
    (
        "data.augment",
        "\"shift:1,pixel_drop:0.1,noise:0.1\"",
        "augmentation pipeline",
    ),
    (
        "data.view_size",
        "[]",
        "training views' size: [] the images' own, [S] S×S, [H, W]; crop resamples to it (cnn, resnet)",
    ),
    ("data.views", "2", "views per sample"),
    (
        "data.coarse",
        "\"\"",
        "train on coarse labels: '' | halves | pairs",
    ),
    ("data.balanced", "false", "class-balanced batches"),
    ("data.synthetic.coarse", "5", "synthetic: coarse classes K"),
    (
        "data.synthetic.sub",
        "4",
        "synthetic: subclasses per coarse class S",
    ),
    ("data.synthetic.dim", "32", "synthetic: dimensions"),
    (
        "data.synthetic.per_class",
        "100",
        "synthetic: samples per subclass",
    ),
    (
        "data.synthetic.coarse_sep",
        "3.0",
        "synthetic: spread of coarse-class centres",
    ),
    (
        "data.synthetic.sub_sep",
        "1.0",
        "synthetic: spread of subclass offsets",
    ),
    (
        "data.synthetic.noise",
        "0.5",
        "synthetic: within-subclass noise σ",
    ),
    ("model.encoder", "\"mlp\"", "mlp | cnn | resnet"),
    (
        "model.widths",
        "[256, 256]",
        "encoder hidden widths (mlp) or channels (cnn/resnet)",
    ),
    (
        "model.projector",
        "[128]",
        "projection head widths (ReLU between; [] for none)",
    ),
    ("model.batch_norm", "false", "batch norm in the MLP encoder"),
    (
        "model.projector_batch_norm",
        "false",
        "batch norm after each hidden layer of the projection head",
    ),
    (
        "model.projector_output_norm",
        "false",
        "batch norm on the projection head's output, as SimCLR's head has",
    ),
    (
        "loss.name",
        "\"nt_xent\"",
        "any loss of `contrastive loss --list`",
    ),
    (
        "loss.params",
        "\"tau=0.5\"",
        "loss parameters, comma-separated key=value",
    ),
    ("optim.name", "\"adam\"", "sgd | adam | adamw | lars"),
    ("optim.lr", "0.001", "base learning rate"),
    ("optim.weight_decay", "0.0", "weight decay"),
    ("optim.momentum", "0.9", "momentum (sgd, lars)"),
    ("optim.nesterov", "false", "Nesterov momentum (sgd, lars)"),
    (
        "optim.clip_grad_norm",
        "0.0",
        "clip the global gradient norm (0: off)",
    ),
    ("schedule.warmup_epochs", "0", "linear warm-up epochs"),
    (
        "schedule.cosine",
        "false",
        "cosine decay to schedule.final_lr after warm-up",
    ),
    (
        "schedule.final_lr",
        "0.0",
        "learning rate at the end of the cosine decay",
    ),
    ("train.epochs", "200", "epochs"),
    (
        "train.batch_size",
        "256",
        "samples per batch (each with data.views views)",
    ),
    ("train.seed", "0", "seed of every random draw"),
    ("train.threads", "0", "worker threads (0: all cores)"),
    ("train.checkpoint_every", "1", "epochs between checkpoints"),
    (
        "train.device",
        "\"cpu\"",
        "cpu, cuda or cuda:N (GPU builds: --features cuda)",
    ),
    ("eval.knn_k", "20", "neighbours for the kNN evaluation"),
    ("eval.probe", "true", "linear probe at the end of training"),
];

/// A resolved configuration: every key of the schema, with defaults where not set.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    entries: BTreeMap<String, Value>,
}

impl Default for Config {
    fn default() -> Self {
        let entries = SCHEMA
            .iter()
            .map(|(k, v, _)| (k.to_string(), Value::parse(v)))
            .collect();
        Config { entries }
    }
}

impl Config {
    /// The keys, their defaults and meanings, for `--help`-style listings.
    pub fn schema() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
        SCHEMA.iter().copied()
    }

    /// Sets `key` (which must exist) to `value` (which must fit the key's type).
    pub fn set(&mut self, key: &str, value: Value) -> Result<()> {
        let current = self.entries.get(key).ok_or_else(|| {
            Error::invalid(
                "config",
                format!("unknown key '{key}' (see `contrastive train --keys`)"),
            )
        })?;
        let kind = value.kind();
        let coerced = value.coerce_to(current).ok_or_else(|| {
            Error::invalid(
                "config",
                format!("key '{key}' expects {}, got {kind}", current.kind()),
            )
        })?;
        // Every integer key counts something or is a seed: a negative value is refused here,
        // where it is written, not when (or whether) a run reads the key.
        if let Value::Int(i) = coerced
            && i < 0
        {
            return Err(type_error(key, "a non-negative integer", &coerced));
        }
        self.entries.insert(key.to_string(), coerced);
        Ok(())
    }

    /// Whether `key` holds its default. A key that has no effect in a configuration (momentum
    /// under Adam) may keep its default there, but a value set on purpose must not be dropped
    /// silently.
    pub fn is_default(&self, key: &str) -> Result<bool> {
        let default = SCHEMA
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, v, _)| Value::parse(v));
        Ok(default.as_ref() == Some(self.get(key)?))
    }

    /// Reads a configuration file's text over the defaults. The format is the subset of TOML
    /// that configs need: `[table]` headers, `key = value` lines (numbers, booleans, quoted
    /// strings, flat lists) and `#` comments. A key set twice, a malformed header or value (an
    /// unterminated string, a missing value) is an error naming the line: each would otherwise
    /// change the run silently.
    pub fn apply_toml(&mut self, text: &str, origin: &str) -> Result<()> {
        let mut table = String::new();
        let mut first_set: BTreeMap<String, usize> = BTreeMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            let fail = |message: String| {
                Error::invalid("config", format!("{origin}:{}: {message}", n + 1))
            };
            if line.starts_with('[') {
                table = line
                    .strip_prefix('[')
                    .and_then(|l| l.strip_suffix(']'))
                    .map(str::trim)
                    .filter(|name| is_dotted_name(name))
                    .ok_or_else(|| {
                        fail(format!("malformed table header '{line}' (expected [name])"))
                    })?
                    .to_string();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| fail(format!("expected `key = value`, got '{line}'")))?;
            let key = key.trim();
            if !is_dotted_name(key) {
                return Err(fail(format!("malformed key '{key}' in '{line}'")));
            }
            let full = if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
            if value.trim().is_empty() {
                return Err(fail(format!("'{full}' has no value after `=`")));
            }
            if let Some(first) = first_set.insert(full.clone(), n + 1) {
                return Err(fail(format!(
                    "'{full}' is set twice (first at line {first})"
                )));
            }
            let value = read_value(value).map_err(|m| fail(format!("'{full}': {m}")))?;
            let outside = if table.is_empty() && !key.contains('.') {
                " (the line is outside any [table])"
            } else {
                ""
            };
            self.set(&full, value)
                .map_err(|e| fail(format!("{}{outside}", without_op(e))))?;
        }
        Ok(())
    }

    /// Applies one `key=value` override. An empty value is the empty string: a shell turns
    /// `key=""` into `key=`.
    pub fn set_assignment(&mut self, assignment: &str) -> Result<()> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            Error::invalid("config", format!("expected key=value, got '{assignment}'"))
        })?;
        let key = key.trim();
        let value = if value.trim().is_empty() {
            Value::Str(String::new())
        } else {
            read_value(value).map_err(|m| Error::invalid("config", format!("'{key}': {m}")))?
        };
        self.set(key, value)
    }

    pub fn get(&self, key: &str) -> Result<&Value> {
        self.entries
            .get(key)
            .ok_or_else(|| Error::invalid("config", format!("unknown key '{key}'")))
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        match self.get(key)? {
            Value::Str(s) => Ok(s),
            v => Err(type_error(key, "a string", v)),
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        match self.get(key)? {
            Value::Float(x) => Ok(*x),
            Value::Int(i) => Ok(*i as f64),
            v => Err(type_error(key, "a number", v)),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        match self.get(key)? {
            Value::Int(i) if *i >= 0 => Ok(*i as usize),
            v => Err(type_error(key, "a non-negative integer", v)),
        }
    }

    /// A count that must be at least 1 (batch size, views, neighbours).
    pub fn positive(&self, key: &str) -> Result<usize> {
        match self.usize(key)? {
            0 => Err(type_error(key, "a positive integer", self.get(key)?)),
            n => Ok(n),
        }
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        Ok(self.usize(key)? as u64)
    }

    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.get(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(type_error(key, "a boolean", v)),
        }
    }

    pub fn usize_list(&self, key: &str) -> Result<Vec<usize>> {
        match self.get(key)? {
            Value::List(items) => items
                .iter()
                .map(|v| match v {
                    Value::Int(i) if *i > 0 => Ok(*i as usize),
                    _ => Err(type_error(key, "a list of positive integers", v)),
                })
                .collect(),
            v => Err(type_error(key, "a list of positive integers", v)),
        }
    }

    /// The canonical TOML text: every key, sorted, grouped into tables by their prefix.
    pub fn to_toml(&self) -> String {
        self.toml_without(None)
    }

    /// The canonical text, leaving out `skip` when given.
    fn toml_without(&self, skip: Option<&str>) -> String {
        let mut out = String::new();
        let mut table = String::new();
        for (key, value) in self
            .entries
            .iter()
            .filter(|(k, _)| Some(k.as_str()) != skip)
        {
            let (prefix, leaf) = key.rsplit_once('.').unwrap_or(("", key));
            if prefix != table {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("[{prefix}]\n"));
                table = prefix.to_string();
            }
            out.push_str(&format!("{leaf} = {value}\n"));
        }
        out
    }

    /// A stable 16-hex-digit id of the resolved configuration (FNV-1a of the canonical text).
    /// `train.device` is left out: where a run computes does not make it another run (a CPU
    /// run resumes on a GPU), and ids stay those of configurations written before the key.
    pub fn id(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.toml_without(Some("train.device")).bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Every (key, value), sorted by key.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// A table name or key: dot-separated parts of letters, digits, `_` and `-`.
fn is_dotted_name(name: &str) -> bool {
    name.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// An error's message without its `config: ` prefix, to wrap in one that names the line.
fn without_op(e: Error) -> String {
    match e {
        Error::InvalidInput { message, .. } => message,
        other => other.to_string(),
    }
}

fn type_error(key: &str, expected: &str, got: &Value) -> Error {
    Error::invalid(
        "config",
        format!("key '{key}' must be {expected}, got {got}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_overrides_and_errors() {
        let mut c = Config::default();
        assert_eq!(c.str("loss.name").unwrap(), "nt_xent");
        assert_eq!(c.usize_list("model.widths").unwrap(), vec![256, 256]);
        c.set_assignment("optim.lr=3e-4").unwrap();
        c.set_assignment("train.epochs = 5").unwrap();
        c.set_assignment("optim.lr=1").unwrap(); // an integer where a number is expected
        assert_eq!(c.f64("optim.lr").unwrap(), 1.0);
        let e = c.set_assignment("optim.lrr=1").unwrap_err().to_string();
        assert!(e.contains("optim.lrr"), "{e}");
        let e = c
            .set_assignment("train.epochs=many")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.epochs") && e.contains("integer"), "{e}");
        assert!(c.set_assignment("no equals sign").is_err());
    }

    #[test]
    fn canonical_text_round_trips_and_ids_are_stable() {
        let mut c = Config::default();
        c.set_assignment("model.widths=[64, 32]").unwrap();
        let text = c.to_toml();
        assert!(text.contains("[model]\n") && text.contains("widths = [64, 32]"));
        let mut d = Config::default();
        d.apply_toml(&text, "canonical").unwrap();
        assert_eq!(c, d);
        assert_eq!(c.id(), d.id());
        assert_ne!(c.id(), Config::default().id());
    }

    #[test]
    fn toml_subset_with_comments_and_errors_naming_the_line() {
        let mut c = Config::default();
        let text = "# a run\n[loss]\nname = \"supcon\" # trailing\nparams = \"tau=0.1\"\n\n[data]\naugment = \"noise:0.1\"\n";
        c.apply_toml(text, "run.toml").unwrap();
        assert_eq!(c.str("loss.name").unwrap(), "supcon");
        assert_eq!(c.str("data.augment").unwrap(), "noise:0.1");
        let e = c
            .apply_toml("[optim]\nlr = 1\nbogus = 2\n", "bad.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml:3") && e.contains("optim.bogus"), "{e}");
        let e = c
            .apply_toml("[optim]\nlr\n", "bad.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml:2"), "{e}");
    }
}
