//! `contrastive loss`, the reference oracle, run as a user runs it: the built binary on `.npy`
//! files in a temporary folder. Values and `--grad-out` gradients are checked against the
//! library and against plain-loop f64 formulas (nt_xent, supcon with both denominators, clip);
//! every bad input must exit with 1 and one `error: …` line naming the problem, never a panic.

use contrastive::Tensor;
use contrastive::data::npy;
use contrastive::losses::{self, LossInputs};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::Scratch;

fn oracle(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_contrastive"))
        .arg("loss")
        .args(args)
        .output()
        .expect("the contrastive binary runs")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The number after `"loss": ` in the oracle's JSON line.
fn json_loss(stdout: &str) -> f64 {
    let rest = stdout
        .strip_prefix("{\"loss\": ")
        .unwrap_or_else(|| panic!("not the oracle's JSON: {stdout}"));
    rest[..rest.find(',').unwrap()].parse().unwrap()
}

fn gauss(rng: &mut StdRng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
        .collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
}

/// Max-norm relative difference of two vectors.
fn rel_vec(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    diff / a.iter().chain(b).fold(1e-300f64, |m, x| m.max(x.abs()))
}

/// The losses straight from the formulas of the module docs, plain loops over f64 (sums of
/// exponentials formed directly: fine for the unit-scale features and τ ≥ 0.1 used here).
mod reference {
    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// The V·N normalised rows of flat (N, V, d) features, view-major.
    fn rows(f: &[f64], n: usize, v: usize, d: usize) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for k in 0..v {
            for i in 0..n {
                let x = &f[(i * v + k) * d..(i * v + k + 1) * d];
                let norm = dot(x, x).sqrt();
                out.push(x.iter().map(|a| a / norm).collect());
            }
        }
        out
    }

    pub fn nt_xent(f: &[f64], n: usize, d: usize, tau: f64) -> f64 {
        let z = rows(f, n, 2, d);
        let r = 2 * n;
        (0..r)
            .map(|i| {
                let denom: f64 = (0..r)
                    .filter(|&k| k != i)
                    .map(|k| (dot(&z[i], &z[k]) / tau).exp())
                    .sum();
                -dot(&z[i], &z[(i + n) % r]) / tau + denom.ln()
            })
            .sum::<f64>()
            / r as f64
    }

    #[allow(clippy::too_many_arguments)]
    pub fn supcon(f: &[f64], n: usize, v: usize, d: usize, y: &[i64], tau: f64, neg: bool) -> f64 {
        let z = rows(f, n, v, d);
        let r = v * n;
        let s = |i: usize, k: usize| dot(&z[i], &z[k]) / tau;
        let (mut total, mut anchors) = (0.0, 0);
        for i in 0..r {
            let pos: Vec<usize> = (0..r).filter(|&p| p != i && y[p % n] == y[i % n]).collect();
            if pos.is_empty() {
                continue;
            }
            let mut sum = 0.0;
            for &p in &pos {
                let denom: f64 = if neg {
                    s(i, p).exp()
                        + (0..r)
                            .filter(|&k| y[k % n] != y[i % n])
                            .map(|k| s(i, k).exp())
                            .sum::<f64>()
                } else {
                    (0..r).filter(|&k| k != i).map(|k| s(i, k).exp()).sum()
                };
                sum += -s(i, p) + denom.ln();
            }
            total += sum / pos.len() as f64;
            anchors += 1;
        }
        total / anchors as f64
    }

    pub fn clip(f: &[f64], n: usize, d: usize, tau: f64) -> f64 {
        let z = rows(f, n, 2, d);
        let logit = |i: usize, j: usize| dot(&z[i], &z[n + j]) / tau;
        let mut total = 0.0;
        for i in 0..n {
            let by_row: f64 = (0..n).map(|j| logit(i, j).exp()).sum();
            let by_col: f64 = (0..n).map(|j| logit(j, i).exp()).sum();
            total += 0.5 * (by_row.ln() + by_col.ln()) - logit(i, i);
        }
        total / n as f64
    }

    /// Five-point central differences with step h (error O(h⁴)).
    pub fn gradient(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
        let mut y = x.to_vec();
        (0..x.len())
            .map(|i| {
                let mut at = |t: f64| {
                    y[i] = x[i] + t;
                    let v = f(&y);
                    y[i] = x[i];
                    v
                };
                (-at(2.0 * h) + 8.0 * at(h) - 8.0 * at(-h) + at(-2.0 * h)) / (12.0 * h)
            })
            .collect()
    }
}

/// Runs the oracle on `features` (written as f32 when `as_f32`, after rounding the values so
/// both sides see the same numbers), returns (loss, gradient, the features actually used).
fn run_oracle(
    dir: &Scratch,
    name: &str,
    features: &[f64],
    dims: [usize; 3],
    labels: Option<&[i64]>,
    set: &[&str],
    as_f32: bool,
) -> (f64, Vec<f64>, Vec<f64>) {
    let (f_path, g_path, l_path) = (dir.join("f.npy"), dir.join("g.npy"), dir.join("l.npy"));
    let used: Vec<f64> = if as_f32 {
        let f32s: Vec<f32> = features.iter().map(|&x| x as f32).collect();
        npy::write_f32(&f_path, &dims, &f32s).unwrap();
        f32s.iter().map(|&x| f64::from(x)).collect()
    } else {
        npy::write_f64(&f_path, &dims, features).unwrap();
        features.to_vec()
    };
    let mut args = vec![name, "--features", p(&f_path), "--grad-out", p(&g_path)];
    if let Some(y) = labels {
        // int32 labels: the oracle must take both integer widths.
        let y32: Vec<i32> = y.iter().map(|&v| v as i32).collect();
        npy::write(&l_path, &[y.len()], &y32).unwrap();
        args.extend(["--labels", p(&l_path)]);
    }
    for kv in set {
        args.extend(["--set", kv]);
    }
    let out = oracle(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    let grad = npy::read(&g_path).unwrap();
    assert_eq!(grad.shape, dims.to_vec());
    assert!(
        matches!(grad.data, npy::NpyData::F64(_)),
        "the gradient is f64"
    );
    (json_loss(&stdout), grad.to_f64_vec(), used)
}

/// The library's value and gradient in f64.
fn library(
    name: &str,
    f: &[f64],
    dims: [usize; 3],
    labels: Option<&[i64]>,
    set: &[(&str, &str)],
) -> (f64, Vec<f64>) {
    let x = Tensor::<f64>::from_f64s(f, dims).unwrap().requires_grad_();
    let mut inputs = LossInputs::new(&x);
    inputs.labels = labels;
    let l = losses::compute(name, &inputs, set).unwrap();
    let g = l.backward().unwrap().get_or_zeros(&x).to_f64_vec();
    (l.item().unwrap(), g)
}

#[test]
fn oracle_matches_the_library_and_plain_loop_formulas_in_value_and_gradient() {
    let dir = Scratch::new("values");
    let mut rng = StdRng::seed_from_u64(7);
    let labels: &[i64] = &[0, 1, 0, 2, 1];
    let cases: [(&str, [usize; 3], bool, &[&str]); 6] = [
        ("nt_xent", [4, 2, 3], false, &[]),
        ("nt_xent", [5, 2, 4], false, &["tau=0.2"]),
        ("supcon", [5, 2, 3], true, &["tau=0.3"]),
        (
            "supcon",
            [5, 1, 4],
            true,
            &["denominator=negatives", "tau=0.5"],
        ),
        ("clip", [4, 2, 3], false, &["tau=0.25"]),
        ("clip", [3, 2, 5], false, &[]),
    ];
    for (i, (name, dims, with_labels, set)) in cases.into_iter().enumerate() {
        let [n, v, d] = dims;
        let f = gauss(&mut rng, n * v * d);
        let y = with_labels.then_some(labels);
        // Alternate f64 and f32 input files.
        let (value, grad, f) = run_oracle(&dir, name, &f, dims, y, set, i % 2 == 1);
        let pairs: Vec<(&str, &str)> = set.iter().map(|kv| kv.split_once('=').unwrap()).collect();
        // The library on the same f64 numbers runs the very same code: equal to rounding.
        let (lib_value, lib_grad) = library(name, &f, dims, y, &pairs);
        assert!(
            rel(value, lib_value) <= 1e-15,
            "{name}: {value} vs library {lib_value}"
        );
        assert!(
            rel_vec(&grad, &lib_grad) <= 1e-15,
            "{name}: gradient vs library"
        );
        let param = |key: &str, default: f64| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(default, |(_, v)| v.parse().unwrap())
        };
        let neg = pairs.contains(&("denominator", "negatives"));
        let tau = param(
            "tau",
            losses::Loss::by_name(name).unwrap().params()[0]
                .1
                .to_string()
                .parse()
                .unwrap(),
        );
        let formula = |x: &[f64]| match name {
            "nt_xent" => reference::nt_xent(x, n, d, tau),
            "supcon" => reference::supcon(x, n, v, d, labels, tau, neg),
            _ => reference::clip(x, n, d, tau),
        };
        // The formulas add the terms in another order: 1e-9 relative is ~1e7 ulps.
        let expect = formula(&f);
        assert!(
            rel(value, expect) <= 1e-9,
            "{name} {set:?}: {value} vs formula {expect}"
        );
        // Step 1e-3·τ keeps the five-point truncation error (h/τ)⁴ ~ 1e-12.
        let numeric = reference::gradient(formula, &f, 1e-3 * tau);
        let r = rel_vec(&grad, &numeric);
        assert!(
            r <= 1e-9,
            "{name} {set:?}: gradient differs from the formula by {r:e}"
        );
    }
}

#[test]
fn oracle_prints_one_json_object_with_its_parameters_and_reads_every_input_kind() {
    let dir = Scratch::new("json");
    let mut rng = StdRng::seed_from_u64(8);
    let f = dir.join("f.npy");
    npy::write_f64(&f, &[4, 2, 4], &gauss(&mut rng, 32)).unwrap();
    let out = oracle(&["nt_xent", "--features", p(&f)]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v = json_loss(&stdout);
    assert_eq!(
        stdout,
        format!("{{\"loss\": {v:?}, \"name\": \"nt_xent\", \"params\": {{\"tau\": 0.5}}}}\n")
    );

    // tabi reads entity ids (--labels, int64) and type ids (--types, −1 = untyped).
    let (labels, types) = (dir.join("e.npy"), dir.join("t.npy"));
    npy::write_i64(&labels, &[4], &[0, 1, 0, 2]).unwrap();
    npy::write_i64(&types, &[4], &[0, -1, 0, 1]).unwrap();
    let out = oracle(&[
        "tabi",
        "--features",
        p(&f),
        "--labels",
        p(&labels),
        "--types",
        p(&types),
        "--set",
        "alpha=0.5",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.ends_with("\"name\": \"tabi\", \"params\": {\"tau\": 0.05, \"alpha\": 0.5}}\n"),
        "{stdout}"
    );

    // moco reads a (K, d) queue; supcon reports its denominator as a string.
    let queue = dir.join("q.npy");
    npy::write_f32(&queue, &[5, 4], &[0.5f32; 20]).unwrap();
    let out = oracle(&["moco", "--features", p(&f), "--queue", p(&queue)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = oracle(&[
        "supcon",
        "--features",
        p(&f),
        "--labels",
        p(&labels),
        "--set",
        "denominator=negatives",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("\"params\": {\"tau\": 0.1, \"denominator\": \"negatives\"}"),
        "{stdout}"
    );

    let out = oracle(&["--list"]);
    let list = String::from_utf8(out.stdout).unwrap();
    assert_eq!(list.lines().count(), losses::NAMES.len());
    for name in losses::NAMES {
        assert!(
            list.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing"
        );
    }
    assert!(
        list.contains("tau=0.1 denominator=all") && list.contains("lambda=25 mu=25 nu=1"),
        "{list}"
    );
}

/// Runs the oracle expecting failure: exit code 1, nothing on stdout, one `error: ` line on
/// stderr containing every one of `needles`.
fn fails(args: &[&str], needles: &[&str]) {
    let out = oracle(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: one line, got {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr} should name {needle}"
        );
    }
}

#[test]
fn bad_inputs_exit_with_one_line_naming_the_problem() {
    let dir = Scratch::new("errors");
    let mut rng = StdRng::seed_from_u64(9);
    let (f, flat, three, labels4, labels2d, floats, bad) = (
        dir.join("f.npy"),
        dir.join("flat.npy"),
        dir.join("three.npy"),
        dir.join("l4.npy"),
        dir.join("l2d.npy"),
        dir.join("floats.npy"),
        dir.join("bad.npy"),
    );
    npy::write_f64(&f, &[3, 2, 4], &gauss(&mut rng, 24)).unwrap();
    npy::write_f64(&flat, &[6, 4], &gauss(&mut rng, 24)).unwrap();
    npy::write_f32(&three, &[3, 3, 2], &[0.25f32; 18]).unwrap();
    npy::write_i64(&labels4, &[4], &[0, 1, 0, 1]).unwrap();
    npy::write_i64(&labels2d, &[3, 1], &[0, 1, 0]).unwrap();
    npy::write_f64(&floats, &[3], &[0.0, 1.0, 0.0]).unwrap();
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&bad, bytes).unwrap();
    let (f, flat, three, labels4, labels2d, floats, bad) = (
        p(&f),
        p(&flat),
        p(&three),
        p(&labels4),
        p(&labels2d),
        p(&floats),
        p(&bad),
    );

    fails(
        &["nt_xent", "--features", flat],
        &["nt_xent", "[6, 4]", "rank 2"],
    );
    fails(
        &["clip", "--features", three],
        &["clip", "(N, 2, d)", "[3, 3, 2]"],
    );
    fails(
        &["supcon", "--features", f, "--labels", labels4],
        &["supcon", "4 labels", "N = 3"],
    );
    fails(&["supcon", "--features", f], &["supcon", "needs labels"]);
    fails(
        &["nt_xent", "--features", f, "--labels", labels4],
        &["nt_xent", "takes no labels"],
    );
    fails(
        &["supcon", "--features", f, "--labels", labels2d],
        &["labels", "1-d", "[3, 1]"],
    );
    fails(
        &["supcon", "--features", f, "--labels", floats],
        &["labels", "integer", "float64"],
    );
    fails(
        &["nt_xent", "--features", f, "--set", "temperature=0.1"],
        &["nt_xent", "unknown parameter 'temperature'", "tau"],
    );
    fails(
        &["nt_xent", "--features", f, "--set", "tau"],
        &["--set 'tau'", "key=value"],
    );
    fails(
        &["nt_xent", "--features", f, "--set", "tau=abc"],
        &["tau", "not a number"],
    );
    fails(
        &["nt_xent", "--features", f, "--set", "tau=-1"],
        &["tau", "> 0"],
    );
    fails(&["nt_xent", "--features", bad], &["bad.npy", "byte"]);
    fails(
        &["nt_xent", "--features", "/nonexistent/f.npy"],
        &["/nonexistent/f.npy"],
    );
    fails(
        &["no_such_loss", "--features", f],
        &["unknown loss 'no_such_loss'", "nt_xent"],
    );
    fails(&["nt_xent"], &["--features"]);
    fails(&[], &["NAME"]);
    fails(
        &["moco", "--features", f, "--queue", labels2d],
        &["queue", "float", "int64"],
    );
    fails(
        &["moco", "--features", f, "--queue", three],
        &["moco", "queue", "[3, 3, 2]"],
    );
}
