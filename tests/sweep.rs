//! Sweeps: the file format and its expansion, and the crash-safety promise tested end to end on
//! the built binary: workers killed with SIGKILL (and interrupted with SIGINT) at seeded random
//! moments, restarted until the sweep is done, collect exactly one row per run, bit for bit the
//! rows of an uninterrupted single worker; three shards (one chosen by the Slurm array
//! variables) running at once collect the same table.

use contrastive::sweep::{self, Sweep};
use contrastive::train::Config;
use contrastive::train::checkpoint;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// 2 learning rates × 2 losses × 2 seeds of a tiny MLP on digits: about 0.1 s a run.
const SWEEP: &str = r#"
# a comment
[sweep]
name = "tiny"
seeds = [0, 1]

[base]
data.name = "digits"
data.coarse = "halves"
model.widths = [32]
model.projector = [16]
train.batch_size = 64
train.epochs = 6
eval.knn_k = 5

[grid]
optim.lr = [0.001, 0.002]

[variant.loss.supcon]
loss.name = "supcon"
loss.params = "tau=0.1"

[variant.loss.spread]   # the comma inside the quotes is part of the value
loss.name = "spread"
loss.params = "tau=0.1,alpha=0.5"
"#;
const RUNS: usize = 8;
const EPOCHS: usize = 6;

fn scratch(tag: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sweep-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tiny.toml"), SWEEP).unwrap();
    dir
}

/// A worker process on `dir/tiny.toml` writing into `dir/out`, without Slurm variables.
fn worker(dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_contrastive"));
    c.arg("sweep")
        .arg(dir.join("tiny.toml"))
        .arg("--out")
        .arg(dir.join("out"))
        .args(extra);
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_STEP",
    ] {
        c.env_remove(v);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn finish(mut c: Command) -> String {
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "worker failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every metric of every finished run, as bits, by run id.
type Bits = BTreeMap<String, Vec<(String, u64)>>;

fn rows(out: &Path) -> Bits {
    let mut all = Bits::new();
    let Ok(entries) = std::fs::read_dir(out.join("runs")) else {
        return all;
    };
    for entry in entries {
        let path = entry.unwrap().path().join("result.json");
        if path.exists() {
            let row = sweep::collect::read_result(&path).unwrap();
            let bits = row
                .metrics
                .iter()
                .map(|(n, v)| (n.clone(), v.to_bits()))
                .collect();
            all.insert(row.id, bits);
        }
    }
    all
}

struct Reference {
    rows: Bits,
    markdown: String,
    seconds: f64,
}

/// The uninterrupted single-worker sweep every other test compares with (run once).
fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        let dir = scratch("reference");
        let started = Instant::now();
        finish(worker(&dir, &[]));
        let seconds = started.elapsed().as_secs_f64();
        let markdown = finish(worker(&dir, &["--collect"]));
        let rows = rows(&dir.join("out"));
        assert_eq!(rows.len(), RUNS);
        assert!(
            markdown.contains(&format!("{RUNS} of {RUNS} runs")),
            "{markdown}"
        );
        Reference {
            rows,
            markdown,
            seconds,
        }
    })
}

/// Checks the collected files of `out` against the reference: one row per run, no duplicate,
/// every number bit-identical, the same Markdown table, no lock left behind.
fn check_against_reference(dir: &Path) {
    let r = reference();
    let markdown = finish(worker(dir, &["--collect"]));
    assert_eq!(markdown, r.markdown);
    let out = dir.join("out");
    let got = rows(&out);
    assert_eq!(got, r.rows, "results differ from the uninterrupted sweep");
    let jsonl = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let mut ids: Vec<&str> = jsonl
        .lines()
        .map(|l| &l[l.find("\"id\": \"").unwrap() + 7..][..16])
        .collect();
    assert_eq!(ids.len(), RUNS, "{jsonl}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), RUNS, "a duplicated row: {jsonl}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), RUNS + 1, "{csv}");
    for entry in std::fs::read_dir(out.join("runs")).unwrap() {
        assert!(
            !entry.unwrap().path().join("lock").exists(),
            "a lock survived the sweep"
        );
    }
}

#[test]
fn expansion_order_ids_and_values() {
    let s = Sweep::parse(SWEEP, "tiny.toml", "tiny").unwrap();
    assert_eq!(s.out, Path::new("runs/sweeps/tiny"));
    assert_eq!(s.axis_names(), vec!["optim.lr", "loss"]);
    let runs = s.expand().unwrap();
    assert_eq!(runs.len(), RUNS);
    let described: Vec<String> = runs
        .iter()
        .map(|r| sweep::describe(&r.labels, r.seed))
        .collect();
    assert_eq!(described[0], "optim.lr=0.001 loss=supcon seed=0");
    assert_eq!(described[1], "optim.lr=0.001 loss=supcon seed=1");
    assert_eq!(described[2], "optim.lr=0.001 loss=spread seed=0");
    assert_eq!(described[7], "optim.lr=0.002 loss=spread seed=1");
    assert_eq!(
        runs[2].config.str("loss.params").unwrap(),
        "tau=0.1,alpha=0.5"
    );
    // The id is the resolved configuration's, however it was written.
    let mut by_hand = Config::default();
    for kv in [
        "data.coarse=halves",
        "model.widths=[32]",
        "model.projector=[16]",
        "train.batch_size=64",
        "train.epochs=6",
        "eval.knn_k=5",
        "optim.lr=0.002",
        "loss.name=spread",
        "loss.params=tau=0.1,alpha=0.5",
        "train.seed=1",
    ] {
        by_hand.set_assignment(kv).unwrap();
    }
    assert_eq!(runs[7].id, by_hand.id());
    let mut ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), RUNS);
    let again = Sweep::parse(SWEEP, "tiny.toml", "tiny")
        .unwrap()
        .expand()
        .unwrap();
    assert_eq!(again, runs);
}

#[test]
fn sweep_file_errors_name_the_problem() {
    let cases = [
        ("[base]\noptim.lrr = 1\n", "t.toml:2"),
        ("[base]\ntrain.epochs = \"many\"\n", "train.epochs"),
        ("[grid]\noptim.lr = 0.1\n", "needs a list"),
        ("[grid]\noptim.lr = []\n", "no values"),
        ("[grid]\noptim.lr = [0.1, 0.1]\n", "same configuration"),
        (
            "[grid]\nloss.name = [\"supcon\"]\n[variant.l.a]\nloss.name = \"spread\"\n",
            "both axes",
        ),
        ("seeds = [0, 1]\n[base]\ntrain.seed = 3\n", "train.seed"),
        ("seeds = [0, 0]\n", "twice"),
        ("[sweep]\nbogus = 1\n", "unknown sweep key"),
        ("[grids]\n", "unknown table"),
        ("[variant.onlyaxis]\n", "variant.AXIS.LABEL"),
        ("[variant.seed.a]\n", "cannot name an axis"),
        ("[grid]\nloss.params = [\"tau=0.1\n", "t.toml:2"),
        ("[sweep]\nname = \"a/b\"\n", "slashes"),
    ];
    for (text, expected) in cases {
        let e = Sweep::parse(text, "t.toml", "t")
            .and_then(|s| s.expand())
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{text:?}: {e}");
    }
    // Launching checks each run before any starts (the second grid point has a negative τ);
    // expanding alone, as listing and collecting do, does not.
    let s = Sweep::parse(
        "[grid]\nloss.params = [\"tau=0.5\", \"tau=-1\"]\n",
        "t.toml",
        "t",
    )
    .unwrap();
    let runs = s.expand().unwrap();
    let e = s.check_runs(&runs).unwrap_err().to_string();
    assert!(e.contains("t.toml: run 1 (loss.params=tau=-1"), "{e}");
}

/// Where training stood in every unfinished run folder: `(run id, epoch, step)` of its
/// checkpoint.
fn positions(out: &Path) -> Vec<(String, usize, usize)> {
    let Ok(entries) = std::fs::read_dir(out.join("runs")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let dir = e.ok()?.path();
            if dir.join("result.json").exists() {
                return None;
            }
            let p = checkpoint::load(&dir.join("checkpoint.safetensors"))
                .ok()?
                .position;
            Some((
                dir.file_name()?.to_string_lossy().into_owned(),
                p.epoch,
                p.step,
            ))
        })
        .collect()
}

fn interrupt(child: &mut Child) {
    let pid = child.id().to_string();
    // The shell's builtin `kill`: std has no way to send SIGINT.
    let sent = Command::new("sh")
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn killed_workers_lose_and_duplicate_nothing() {
    let reference_seconds = reference().seconds;
    let dir = scratch("killed");
    let out = dir.join("out");
    let mut rng = StdRng::seed_from_u64(5);
    // Kill about four times per run on average: delays up to a quarter of a run.
    let max_delay = (reference_seconds / RUNS as f64 / 2.0).max(0.02);
    let mut kills = 0;
    // Every distinct checkpoint an interruption left in an unfinished run.
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..200 {
        let mut child = worker(&dir, &[]).spawn().unwrap();
        std::thread::sleep(Duration::from_secs_f64(rng.random_range(0.005..max_delay)));
        // Every third stop is Ctrl-C: a checkpoint at the exact batch, then a mid-epoch resume.
        if round % 3 == 2 {
            interrupt(&mut child);
        } else {
            let _ = child.kill(); // SIGKILL
        }
        if child.wait().unwrap().success() {
            assert_eq!(
                rows(&out).len(),
                RUNS,
                "a worker exited cleanly with runs left"
            );
            break; // the worker finished the sweep before the signal
        }
        kills += 1;
        seen.extend(positions(&out));
        if rows(&out).len() == RUNS {
            break;
        }
    }
    let count =
        |f: &dyn Fn(usize, usize) -> bool| seen.iter().filter(|(_, e, s)| f(*e, *s)).count();
    let boundary = count(&|e, s| s == 0 && e < EPOCHS);
    let mid_epoch = count(&|_, s| s > 0);
    let after_training = count(&|e, _| e == EPOCHS);
    eprintln!(
        "{kills} interruptions left unfinished runs with checkpoints at {boundary} epoch boundaries, \
         {mid_epoch} mid-epoch positions and {after_training} after the last epoch"
    );
    assert!(
        kills >= 8 && boundary >= 1 && mid_epoch >= 1,
        "the interruptions missed the runs"
    );
    finish(worker(&dir, &[]));
    check_against_reference(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn three_shards_and_a_slurm_task_collect_the_same_table() {
    let r = reference();
    let dir = scratch("shards");
    let mut children = Vec::new();
    for shard in 0..3 {
        let mut c = match shard {
            1 => {
                let mut c = worker(&dir, &[]);
                c.env("SLURM_ARRAY_TASK_ID", "1")
                    .env("SLURM_ARRAY_TASK_COUNT", "3")
                    .env("SLURM_ARRAY_TASK_MIN", "0");
                c
            }
            0 => worker(&dir, &["--shard", "0/3", "--jobs", "2"]),
            _ => worker(&dir, &["--shard", "2/3"]),
        };
        children.push(c.spawn().unwrap());
    }
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each run was trained by the worker of its shard (index % 3), the Slurm one included.
    let s = Sweep::parse(SWEEP, "tiny.toml", "tiny").unwrap();
    for run in s.expand().unwrap() {
        let row =
            sweep::collect::read_result(&dir.join("out/runs").join(&run.id).join("result.json"))
                .unwrap();
        let pid: u32 = row.worker.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(
            pid,
            pids[run.index % 3],
            "run {} trained by the wrong worker",
            run.index
        );
    }
    check_against_reference(&dir);
    let listing = finish(worker(&dir, &["--list"]));
    assert_eq!(
        listing.lines().filter(|l| l.ends_with(" done")).count(),
        RUNS,
        "{listing}"
    );
    assert!(
        r.markdown.contains("| 0.001 | supcon | 2 |"),
        "{}",
        r.markdown
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_run_is_recorded_and_skipped_until_retried() {
    let dir = scratch("failed");
    let text = "[sweep]\nname = \"broken\"\n[base]\ndata.name = \"npy\"\ndata.path = \"/nonexistent/prefix\"\n";
    let mut s = Sweep::parse(text, "broken.toml", "broken").unwrap();
    s.out = dir.join("out");
    let runs = s.expand().unwrap();
    let options = sweep::WorkerOptions {
        log: false,
        ..Default::default()
    };
    let first = sweep::run_share(&s, &runs, &options).unwrap();
    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert!(
        first.failed[0].1.contains("/nonexistent/prefix"),
        "{first:?}"
    );
    let error = std::fs::read_to_string(s.run_dir(&runs[0]).join("error.txt")).unwrap();
    assert!(error.contains("/nonexistent/prefix"), "{error}");
    let state = sweep::run_state(&s.run_dir(&runs[0]), Duration::from_secs(300)).unwrap();
    assert!(matches!(state, sweep::RunState::Failed(_)), "{state:?}");
    // Skipped (no new attempt) unless retried; the lock is gone either way.
    std::fs::write(s.run_dir(&runs[0]).join("error.txt"), "earlier failure\n").unwrap();
    let second = sweep::run_share(&s, &runs, &options).unwrap();
    assert_eq!(second.failed, vec![(0, "earlier failure\n".to_string())]);
    let retry = sweep::WorkerOptions {
        retry_failed: true,
        ..options
    };
    let third = sweep::run_share(&s, &runs, &retry).unwrap();
    assert!(
        third.failed[0].1.contains("/nonexistent/prefix"),
        "{third:?}"
    );
    assert!(!s.run_dir(&runs[0]).join("lock").exists());
    assert!(sweep::collect(&s, &runs).unwrap().rows.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
