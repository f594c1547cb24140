//! The sweep file and its expansion into runs. The file is the same TOML subset as a run
//! configuration (`[table]` headers, `key = value` lines, `#` comments; values as
//! `syntax.rs` reads them). See the [module docs](super) for the format.

use super::syntax::{label_of, seed_list};
use crate::error::{Error, Result};
use crate::train::toml::read_value;
use crate::train::toml::strip_comment;
use crate::train::{Config, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Names a grid or variant axis may not take: they are columns of every result table.
const RESERVED_AXES: &[&str] = &["index", "id", "seed", "n"];

/// One `key = value` of the sweep file, with the line it came from (for error messages).
#[derive(Debug, Clone, PartialEq)]
struct Setting {
    key: String,
    value: Value,
    line: usize,
}

/// One value of an axis: a label (what the result tables show) and the keys it sets.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    label: String,
    settings: Vec<Setting>,
}

/// One dimension of the grid: a `[grid]` key with its list of values, or a `[variant.AXIS.*]`
/// family of tables.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    name: String,
    points: Vec<Point>,
}

/// A parsed sweep file.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// `[sweep] name` (default: the file's stem).
    pub name: String,
    /// The sweep folder: `[sweep] out` (default `runs/sweeps/NAME`), relative to the working
    /// directory.
    pub out: PathBuf,
    /// `seeds`, each run's `train.seed`; `None` when the file has none (one run per grid point).
    pub seeds: Option<Vec<u64>>,
    /// The metrics of the Markdown table (`[sweep] metrics`); empty: every metric.
    pub metrics: Vec<String>,
    /// The file's text, copied into the sweep folder for the record.
    pub text: String,
    origin: String,
    base: Vec<Setting>,
    axes: Vec<Axis>,
}

/// One run of the expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Position in the deterministic expansion order (shards own `index % N == I`).
    pub index: usize,
    /// [`Config::id`] of the resolved configuration: the run's folder name.
    pub id: String,
    /// `(axis, label)` for every axis, in axis order.
    pub labels: Vec<(String, String)>,
    /// The resolved `train.seed`.
    pub seed: u64,
    pub config: Config,
}

/// What a table header opens.
enum Section {
    Sweep,
    Base(String),
    Grid(String),
    Variant { axis: usize, point: usize },
}

fn fail(origin: &str, line: usize, message: impl std::fmt::Display) -> Error {
    Error::invalid("sweep", format!("{origin}:{line}: {message}"))
}

/// Joins a table prefix and a key with a dot.
fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

impl Sweep {
    /// Reads a sweep file.
    pub fn load(path: &Path) -> Result<Sweep> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sweep".into());
        Sweep::parse(&text, &path.display().to_string(), &stem)
    }

    /// Parses a sweep file's text; `origin` names it in errors and `default_name` is the name
    /// when `[sweep] name` is absent. Every key is checked against the configuration schema
    /// here, so a typo fails before any run starts, naming the line.
    pub fn parse(text: &str, origin: &str, default_name: &str) -> Result<Sweep> {
        let mut sweep = Sweep {
            name: default_name.to_string(),
            out: PathBuf::new(),
            seeds: None,
            metrics: Vec::new(),
            text: text.to_string(),
            origin: origin.to_string(),
            base: Vec::new(),
            axes: Vec::new(),
        };
        let mut out = None;
        let mut section = Section::Sweep;
        let mut seen_sweep_keys = Vec::new();
        let mut scratch = Config::default();
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = sweep.open_section(header.trim(), line_no)?;
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| {
                fail(
                    origin,
                    line_no,
                    format!("expected `key = value`, got '{line}'"),
                )
            })?;
            let (key, value) = (
                key.trim(),
                read_value(value).map_err(|m| fail(origin, line_no, m))?,
            );
            match &section {
                Section::Sweep => {
                    if seen_sweep_keys.contains(&key.to_string()) {
                        return Err(fail(origin, line_no, format!("'{key}' is set twice")));
                    }
                    seen_sweep_keys.push(key.to_string());
                    match (key, value) {
                        ("name", Value::Str(s)) => sweep.name = s,
                        ("out", Value::Str(s)) => out = Some(PathBuf::from(s)),
                        ("seeds", v) => {
                            sweep.seeds = Some(seed_list(v).map_err(|m| fail(origin, line_no, m))?)
                        }
                        ("metrics", Value::List(items)) => {
                            for item in items {
                                match item {
                                    Value::Str(s) => sweep.metrics.push(s),
                                    v => {
                                        return Err(fail(
                                            origin,
                                            line_no,
                                            format!("metrics must be strings, got {v}"),
                                        ));
                                    }
                                }
                            }
                        }
                        ("name" | "out", v) => {
                            return Err(fail(
                                origin,
                                line_no,
                                format!("'{key}' must be a string, got {v}"),
                            ));
                        }
                        ("metrics", v) => {
                            return Err(fail(
                                origin,
                                line_no,
                                format!("metrics must be a list of strings, got {v}"),
                            ));
                        }
                        _ => {
                            return Err(fail(
                                origin,
                                line_no,
                                format!("unknown sweep key '{key}' (name, out, seeds, metrics)"),
                            ));
                        }
                    }
                }
                Section::Base(prefix) => {
                    let setting = checked(&mut scratch, join(prefix, key), value, line_no, origin)?;
                    if sweep.base.iter().any(|s| s.key == setting.key) {
                        return Err(fail(
                            origin,
                            line_no,
                            format!("'{}' is set twice in [base]", setting.key),
                        ));
                    }
                    sweep.base.push(setting);
                }
                Section::Grid(prefix) => {
                    let full = join(prefix, key);
                    let Value::List(items) = value else {
                        return Err(fail(
                            origin,
                            line_no,
                            format!("grid key '{full}' needs a list of values, got {value}"),
                        ));
                    };
                    if items.is_empty() {
                        return Err(fail(
                            origin,
                            line_no,
                            format!("grid key '{full}' has no values"),
                        ));
                    }
                    if sweep.axes.iter().any(|a| a.name == full) {
                        return Err(fail(
                            origin,
                            line_no,
                            format!("grid key '{full}' is set twice"),
                        ));
                    }
                    let mut points = Vec::with_capacity(items.len());
                    for item in items {
                        let label = label_of(&item);
                        let setting = checked(&mut scratch, full.clone(), item, line_no, origin)?;
                        points.push(Point {
                            label,
                            settings: vec![setting],
                        });
                    }
                    sweep.axes.push(Axis { name: full, points });
                }
                Section::Variant { axis, point } => {
                    let setting = checked(&mut scratch, key.to_string(), value, line_no, origin)?;
                    let p = &mut sweep.axes[*axis].points[*point];
                    if p.settings.iter().any(|s| s.key == setting.key) {
                        return Err(fail(
                            origin,
                            line_no,
                            format!("'{}' is set twice in this variant", setting.key),
                        ));
                    }
                    p.settings.push(setting);
                }
            }
        }
        sweep.out = out.unwrap_or_else(|| PathBuf::from("runs/sweeps").join(&sweep.name));
        if sweep.name.is_empty() || sweep.name.contains(['/', '\\']) {
            return Err(fail(
                origin,
                0,
                format!(
                    "sweep name '{}' must be non-empty, without slashes",
                    sweep.name
                ),
            ));
        }
        sweep.check_consistency()?;
        Ok(sweep)
    }

    /// Interprets a `[header]`: `sweep`, `base[.PREFIX]`, `grid[.PREFIX]` or
    /// `variant.AXIS.LABEL`.
    fn open_section(&mut self, header: &str, line: usize) -> Result<Section> {
        let (head, rest) = header.split_once('.').unwrap_or((header, ""));
        match head {
            "sweep" if rest.is_empty() => Ok(Section::Sweep),
            "base" => Ok(Section::Base(rest.to_string())),
            "grid" => Ok(Section::Grid(rest.to_string())),
            "variant" => {
                let (axis_name, label) = rest.split_once('.').ok_or_else(|| {
                    fail(
                        &self.origin,
                        line,
                        format!("a variant table is [variant.AXIS.LABEL], got [{header}]"),
                    )
                })?;
                if axis_name.is_empty()
                    || label.is_empty()
                    || axis_name.contains(char::is_whitespace)
                {
                    return Err(fail(
                        &self.origin,
                        line,
                        format!("bad variant table [{header}]"),
                    ));
                }
                let axis = match self.axes.iter().position(|a| a.name == axis_name) {
                    Some(i) => i,
                    None => {
                        self.axes.push(Axis {
                            name: axis_name.to_string(),
                            points: Vec::new(),
                        });
                        self.axes.len() - 1
                    }
                };
                if self.axes[axis].points.iter().any(|p| p.label == label) {
                    return Err(fail(
                        &self.origin,
                        line,
                        format!("variant [{header}] appears twice"),
                    ));
                }
                self.axes[axis].points.push(Point {
                    label: label.to_string(),
                    settings: Vec::new(),
                });
                Ok(Section::Variant {
                    axis,
                    point: self.axes[axis].points.len() - 1,
                })
            }
            _ => Err(fail(
                &self.origin,
                line,
                format!("unknown table [{header}] (sweep, base, grid, variant.AXIS.LABEL)"),
            )),
        }
    }

    /// Rules that span the file: no key driven by two axes (their order would silently decide
    /// the value), no `train.seed` next to `seeds`, no reserved axis names.
    fn check_consistency(&self) -> Result<()> {
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for axis in &self.axes {
            if RESERVED_AXES.contains(&axis.name.as_str()) {
                return Err(fail(
                    &self.origin,
                    0,
                    format!("'{}' cannot name an axis", axis.name),
                ));
            }
            for s in axis.points.iter().flat_map(|p| &p.settings) {
                match owner.insert(&s.key, &axis.name) {
                    Some(other) if other != axis.name => {
                        return Err(fail(
                            &self.origin,
                            s.line,
                            format!(
                                "'{}' is set by both axes '{other}' and '{}'",
                                s.key, axis.name
                            ),
                        ));
                    }
                    _ => {}
                }
            }
        }
        if self.seeds.is_some() {
            let base = self.base.iter().find(|s| s.key == "train.seed");
            let axis = self
                .axes
                .iter()
                .flat_map(|a| &a.points)
                .flat_map(|p| &p.settings)
                .find(|s| s.key == "train.seed");
            if let Some(s) = base.or(axis) {
                return Err(fail(
                    &self.origin,
                    s.line,
                    "train.seed is set here and by `seeds`; keep one",
                ));
            }
        }
        Ok(())
    }

    /// Checks every run's configuration as training would before its first step
    /// ([`check_keys`](crate::train::setup::check_keys)), so that a bad value in one grid
    /// point fails before the sweep starts, not hours into it. Launching calls this; listing
    /// and collecting do not, so results of runs made under older rules stay readable.
    pub fn check_runs(&self, runs: &[Run]) -> Result<()> {
        for run in runs {
            crate::train::setup::check_keys(&run.config).map_err(|e| {
                let which = describe(&run.labels, run.seed);
                Error::invalid(
                    "sweep",
                    format!("{}: run {} ({which}): {e}", self.origin, run.index),
                )
            })?;
        }
        Ok(())
    }

    /// The grid axes' names, in file order (the seed is not one of them).
    pub fn axis_names(&self) -> Vec<String> {
        self.axes.iter().map(|a| a.name.clone()).collect()
    }

    /// Every run, in the deterministic order: the cartesian product of the axes with the first
    /// axis varying slowest, and the seeds innermost. Two runs with the same resolved
    /// configuration are an error (they would share a folder).
    pub fn expand(&self) -> Result<Vec<Run>> {
        let seeds: Vec<Option<u64>> = match &self.seeds {
            Some(s) => s.iter().map(|&x| Some(x)).collect(),
            None => vec![None],
        };
        let total = self.axes.iter().map(|a| a.points.len()).product::<usize>() * seeds.len();
        let mut runs: Vec<Run> = Vec::with_capacity(total);
        let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
        let mut choice = vec![0usize; self.axes.len()];
        'grid: loop {
            for seed in &seeds {
                let mut config = Config::default();
                for s in &self.base {
                    config.set(&s.key, s.value.clone())?;
                }
                let mut labels = Vec::with_capacity(self.axes.len());
                for (axis, &c) in self.axes.iter().zip(&choice) {
                    let point = &axis.points[c];
                    for s in &point.settings {
                        config.set(&s.key, s.value.clone())?;
                    }
                    labels.push((axis.name.clone(), point.label.clone()));
                }
                if let Some(seed) = seed {
                    config.set("train.seed", Value::Int(*seed as i64))?;
                }
                let id = config.id();
                let index = runs.len();
                if let Some(&other) = by_id.get(&id) {
                    return Err(Error::invalid(
                        "sweep",
                        format!(
                            "{}: runs {other} ({}) and {index} ({}) resolve to the same configuration",
                            self.origin,
                            describe(&runs[other].labels, runs[other].seed),
                            describe(&labels, config.u64("train.seed")?)
                        ),
                    ));
                }
                by_id.insert(id.clone(), index);
                let seed = config.u64("train.seed")?;
                runs.push(Run {
                    index,
                    id,
                    labels,
                    seed,
                    config,
                });
            }
            // Advance the mixed-radix counter, last axis fastest.
            for a in (0..self.axes.len()).rev() {
                choice[a] += 1;
                if choice[a] < self.axes[a].points.len() {
                    continue 'grid;
                }
                choice[a] = 0;
            }
            break;
        }
        Ok(runs)
    }

    /// `OUT/runs/<id>`: the run's folder.
    pub fn run_dir(&self, run: &Run) -> PathBuf {
        self.out.join("runs").join(&run.id)
    }
}

/// `loss=supcon seed=1`: a run in one line.
pub fn describe(labels: &[(String, String)], seed: u64) -> String {
    let mut s: Vec<String> = labels.iter().map(|(a, l)| format!("{a}={l}")).collect();
    s.push(format!("seed={seed}"));
    s.join(" ")
}

/// Applies `key = value` to a scratch configuration, so the schema checks key and type now.
fn checked(
    scratch: &mut Config,
    key: String,
    value: Value,
    line: usize,
    origin: &str,
) -> Result<Setting> {
    scratch
        .set(&key, value.clone())
        .map_err(|e| fail(origin, line, e))?;
    Ok(Setting { key, value, line })
}
