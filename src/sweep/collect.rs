//! Result rows and tables: the `result.json` a finished run leaves, the state of every run for
//! `--list`, and `--collect`, which gathers the rows into `results.jsonl`, `results.csv` (one
//! line per run, every metric, numbers printed so that they read back bit for bit) and
//! `results.md` (mean ± sample standard deviation over seeds, one line per grid point).

use super::lock::{self, LockState};
use super::spec::{Run, Sweep};
use crate::error::{Error, Result};
use crate::nn::json::{self, Kind, Value as Json};
use crate::nn::write_atomic;
use crate::train::report::Evaluation;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

pub const RESULT: &str = "result.json";
pub const ERROR: &str = "error.txt";
pub const LOCK: &str = "lock";

/// Evaluation entries that are settings or diagnostics, not measurements.
const NOT_METRICS: &[&str] = &["knn_k", "iterations"];

/// One finished run, read back from its `result.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub index: usize,
    pub id: String,
    pub seed: u64,
    /// Wall time of the attempt that finished the run.
    pub seconds: f64,
    /// `host:pid` of that attempt.
    pub worker: String,
    /// Every number of the evaluation, flattened (`probe.test_accuracy`); nulls are omitted.
    pub metrics: Vec<(String, f64)>,
    /// The file's text, one line.
    pub line: String,
}

impl ResultRow {
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
    }
}

/// The text of `result.json`: one line, so that `results.jsonl` is the rows joined.
pub fn result_json(
    sweep: &str,
    run: &Run,
    seconds: f64,
    worker: &str,
    evaluation: &Evaluation,
) -> String {
    let mut s = String::from("{\"sweep\": ");
    json::write_string(&mut s, sweep);
    let _ = write!(
        s,
        ", \"index\": {}, \"id\": \"{}\", \"axes\": {{",
        run.index, run.id
    );
    for (i, (axis, label)) in run.labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        json::write_string(&mut s, axis);
        s.push_str(": ");
        json::write_string(&mut s, label);
    }
    let _ = write!(
        s,
        "}}, \"seed\": {}, \"seconds\": {seconds:.3}, \"worker\": ",
        run.seed
    );
    json::write_string(&mut s, worker);
    let _ = writeln!(s, ", \"eval\": {}}}", evaluation.to_json());
    s
}

fn member<'a>(members: &'a [(String, Json)], name: &str) -> Option<&'a Json> {
    members.iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Appends the numbers under `value` to `out`, named by their dotted path.
fn flatten(prefix: &str, value: &Json, out: &mut Vec<(String, f64)>) {
    match &value.kind {
        Kind::Number(text)
            if !NOT_METRICS.contains(&prefix.rsplit('.').next().unwrap_or(prefix)) =>
        {
            if let Ok(v) = text.parse::<f64>() {
                out.push((prefix.to_string(), v));
            }
        }
        Kind::Object(members) => {
            for (k, v) in members {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        _ => {}
    }
}

/// Reads a `result.json`.
pub fn read_result(path: &Path) -> Result<ResultRow> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let data = |at: usize, message: String| Error::Data {
        file: path.display().to_string(),
        at: at as u64,
        message,
    };
    let root = json::parse(&bytes).map_err(|e| data(e.at, e.message))?;
    let Kind::Object(members) = &root.kind else {
        return Err(data(root.at, "a result row is a JSON object".into()));
    };
    let get = |name: &str| member(members, name).ok_or_else(|| data(0, format!("no '{name}'")));
    let string = |name: &str| -> Result<String> {
        let v = get(name)?;
        match &v.kind {
            Kind::String(s) => Ok(s.clone()),
            _ => Err(data(v.at, format!("'{name}' is not a string"))),
        }
    };
    let number = |name: &str| -> Result<f64> {
        let v = get(name)?;
        match &v.kind {
            Kind::Number(t) => t.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| data(v.at, format!("'{name}' is not a number")))
    };
    let count = |name: &str| {
        let v = get(name)?;
        v.as_u64()
            .ok_or_else(|| data(v.at, format!("'{name}' is not a count")))
    };
    let mut metrics = Vec::new();
    flatten("", get("eval")?, &mut metrics);
    Ok(ResultRow {
        index: count("index")? as usize,
        id: string("id")?,
        seed: count("seed")?,
        seconds: number("seconds")?,
        worker: string("worker")?,
        metrics,
        line: String::from_utf8_lossy(&bytes).trim_end().to_string(),
    })
}

/// Where a run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Done,
    /// A worker holds the lock: who, and seconds since its last heartbeat.
    Running {
        holder: String,
        heartbeat_age: u64,
    },
    /// Failed with this message; skipped until `--retry-failed`.
    Failed(String),
    /// Its holder died: the next worker takes it over and resumes.
    Stale(String),
    /// Started and not running: resumes from its checkpoint (`epochs` logged so far).
    Partial {
        epochs: usize,
    },
    Pending,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunState::Done => write!(f, "done"),
            RunState::Running {
                holder,
                heartbeat_age,
            } => {
                write!(f, "running ({holder}, heartbeat {heartbeat_age} s ago)")
            }
            RunState::Failed(m) => write!(f, "failed: {}", m.lines().next().unwrap_or("")),
            RunState::Stale(reason) => {
                write!(f, "stale lock ({reason}); resumes on the next worker")
            }
            RunState::Partial { epochs } => write!(f, "partial ({epochs} epochs logged)"),
            RunState::Pending => write!(f, "pending"),
        }
    }
}

/// The state of the run whose folder is `dir`.
pub fn run_state(dir: &Path, stale_after: Duration) -> Result<RunState> {
    if dir.join(RESULT).exists() {
        return Ok(RunState::Done);
    }
    let lock_state = lock::inspect(&dir.join(LOCK), stale_after)?;
    if let LockState::Held { holder, age } = &lock_state {
        let holder = holder.as_ref().map_or("unknown holder".into(), |h| {
            format!("pid {} on {}", h.pid, h.host)
        });
        return Ok(RunState::Running {
            holder,
            heartbeat_age: age.as_secs(),
        });
    }
    if let Ok(message) = std::fs::read_to_string(dir.join(ERROR)) {
        return Ok(RunState::Failed(message));
    }
    if let LockState::Stale { reason, .. } = lock_state {
        return Ok(RunState::Stale(reason));
    }
    let epochs = std::fs::read_to_string(dir.join(crate::train::run::METRICS))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0);
    if epochs > 0 || dir.join(crate::train::run::CHECKPOINT).exists() {
        return Ok(RunState::Partial { epochs });
    }
    Ok(RunState::Pending)
}

/// The rows of a sweep's finished runs, in expansion order, and the runs still missing.
#[derive(Debug, Clone)]
pub struct Collected {
    /// `(run index, row)`.
    pub rows: Vec<(usize, ResultRow)>,
    pub missing: Vec<usize>,
}

/// Reads every finished run's row. A row whose id is not its folder's is an error.
pub fn collect(sweep: &Sweep, runs: &[Run]) -> Result<Collected> {
    let mut collected = Collected {
        rows: Vec::new(),
        missing: Vec::new(),
    };
    for run in runs {
        let path = sweep.run_dir(run).join(RESULT);
        if !path.exists() {
            collected.missing.push(run.index);
            continue;
        }
        let row = read_result(&path)?;
        if row.id != run.id {
            return Err(Error::Data {
                file: path.display().to_string(),
                at: 0,
                message: format!("the row's id {} is not its folder's {}", row.id, run.id),
            });
        }
        collected.rows.push((run.index, row));
    }
    Ok(collected)
}

/// The Markdown table's metric columns: the sweep's list, or every metric in first-seen order.
fn metric_names(sweep: &Sweep, collected: &Collected) -> Vec<String> {
    if !sweep.metrics.is_empty() {
        return sweep.metrics.clone();
    }
    let mut names: Vec<String> = Vec::new();
    for (name, _) in collected.rows.iter().flat_map(|(_, r)| &r.metrics) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `results.csv`: one line per finished run, every metric (shortest round-trip digits).
pub fn csv(sweep: &Sweep, runs: &[Run], collected: &Collected) -> String {
    let mut metrics: Vec<String> = Vec::new();
    for (name, _) in collected.rows.iter().flat_map(|(_, r)| &r.metrics) {
        if !metrics.contains(name) {
            metrics.push(name.clone());
        }
    }
    let mut header = vec!["index".to_string(), "id".into()];
    header.extend(sweep.axis_names());
    header.push("seed".into());
    header.extend(metrics.iter().cloned());
    header.extend(["seconds".into(), "worker".into()]);
    let mut out = header
        .iter()
        .map(|h| csv_field(h))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for (index, row) in &collected.rows {
        let run = &runs[*index];
        let mut fields = vec![index.to_string(), run.id.clone()];
        fields.extend(run.labels.iter().map(|(_, l)| l.clone()));
        fields.push(row.seed.to_string());
        fields.extend(
            metrics
                .iter()
                .map(|m| row.metric(m).map_or(String::new(), |v| v.to_string())),
        );
        fields.extend([format!("{:.3}", row.seconds), row.worker.clone()]);
        out += &(fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
            + "\n");
    }
    out
}

/// Mean and sample standard deviation (`None` for one value).
fn mean_std(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.len() > 1)
        .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, std)
}

/// `results.md`: one line per grid point (its runs over the seeds), each metric as mean ± std.
pub fn markdown(sweep: &Sweep, runs: &[Run], collected: &Collected) -> String {
    let metrics = metric_names(sweep, collected);
    let axes = sweep.axis_names();
    let mut out = format!(
        "## Sweep {}: {} of {} runs finished\n\nMean ± sample standard deviation over seeds; n = seeds with a result.\n\n",
        sweep.name,
        collected.rows.len(),
        runs.len()
    );
    let mut header: Vec<String> = axes.clone();
    header.push("n".into());
    header.extend(metrics.iter().cloned());
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let align: Vec<&str> = (0..header.len())
        .map(|i| if i < axes.len() { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "| {} |", align.join(" | "));
    // Grid points in expansion order of their first run.
    let mut groups: Vec<(Vec<String>, Vec<&ResultRow>)> = Vec::new();
    for (index, row) in &collected.rows {
        let key: Vec<String> = runs[*index].labels.iter().map(|(_, l)| l.clone()).collect();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    for (key, members) in &groups {
        let mut cells = key.clone();
        cells.push(members.len().to_string());
        for m in &metrics {
            let values: Vec<f64> = members.iter().filter_map(|r| r.metric(m)).collect();
            cells.push(match mean_std(&values) {
                _ if values.is_empty() => "–".into(),
                (mean, Some(std)) => format!("{mean:.4} ± {std:.4}"),
                (mean, None) => format!("{mean:.4}"),
            });
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// Writes `results.jsonl`, `results.csv` and `results.md` into the sweep folder, each
/// atomically; their text depends only on the rows, so concurrent writers agree.
pub fn write_tables(sweep: &Sweep, runs: &[Run], collected: &Collected) -> Result<()> {
    let jsonl: String = collected
        .rows
        .iter()
        .map(|(_, r)| format!("{}\n", r.line))
        .collect();
    write_atomic(sweep.out.join("results.jsonl"), jsonl.as_bytes())?;
    write_atomic(
        sweep.out.join("results.csv"),
        csv(sweep, runs, collected).as_bytes(),
    )?;
    write_atomic(
        sweep.out.join("results.md"),
        markdown(sweep, runs, collected).as_bytes(),
    )
}
