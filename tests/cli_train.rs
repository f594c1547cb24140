//! `contrastive train`, `eval` and `embed` run as a user runs them: the built binary on a small
//! model (MLP 64→64, projector →32, 2 epochs on the shipped digits) in a scratch folder. A run
//! from a TOML file plus `--set` overrides (which win over the file) writes its whole folder and
//! prints its evaluation; `eval` of its checkpoint prints the very same evaluation; `embed`
//! writes `.npy` files of the right shapes and dtypes (header parsed here by hand) with the
//! split's labels. Bad input (a missing checkpoint, a file that is not safetensors, a
//! safetensors file that is not a checkpoint, an unknown key, an ill-typed value in a config
//! file) must exit with 1 and an `error: …` line naming the file or key, never a panic.

use contrastive::data::digits_train_test;
use contrastive::data::npy::{self, NpyData};
use contrastive::train::Config;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::Scratch;

/// Runs the binary with `args`.
fn contrastive<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_contrastive"))
        .args(args)
        .output()
        .expect("the contrastive binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that a command succeeded, showing its output otherwise.
fn succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Asserts that a command failed as the CLI promises: exit code 1, nothing on stdout, one
/// `error: …` message containing every one of `needles`, and no panic.
fn failed_with(out: &Output, what: &str, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should exit with 1\nstdout:\n{}\nstderr:\n{err}",
        stdout(out)
    );
    assert!(!err.contains("panicked"), "{what} panicked:\n{err}");
    assert!(
        err.starts_with("error: "),
        "{what}: stderr should be an `error: …` line:\n{err}"
    );
    assert_eq!(err.lines().count(), 1, "{what}: one line expected:\n{err}");
    for needle in needles {
        assert!(
            err.contains(needle),
            "{what}: stderr lacks {needle:?}:\n{err}"
        );
    }
    assert!(
        out.stdout.is_empty(),
        "{what} printed on stdout:\n{}",
        stdout(out)
    );
}

fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// The run configuration written to a file; `main_run` overrides `train.epochs` (5 here) and
/// adds the projector width with `--set`.
const CONFIG_FILE: &str = "# a small run for the CLI tests\n\
                           [model]\n\
                           widths = [64]\n\
                           \n\
                           [train]\n\
                           epochs = 5   # overridden on the command line\n\
                           seed = 7\n\
                           batch_size = 256\n";

/// `contrastive train --config run.toml --set … --out DIR/run` in `dir`; returns the output and
/// the run folder.
fn train_small(dir: &Path) -> (Output, std::path::PathBuf) {
    let config = dir.join("run.toml");
    std::fs::write(&config, CONFIG_FILE).unwrap();
    let run = dir.join("run");
    let out = contrastive([
        "train",
        "--config",
        p(&config),
        "--set",
        "train.epochs=2",
        "--set",
        "model.projector=[32]",
        "--out",
        p(&run),
    ]);
    succeeded(&out, "contrastive train");
    (out, run)
}

/// The evaluation summary the train run printed: the lines between `done in …` and
/// `run folder: …`.
fn train_summary(stdout: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("done in "))
        .unwrap_or_else(|| panic!("no `done in` line:\n{stdout}"));
    let end = lines
        .iter()
        .position(|l| l.starts_with("run folder: "))
        .unwrap_or_else(|| panic!("no `run folder:` line:\n{stdout}"));
    assert!(start < end, "{stdout}");
    lines[start + 1..end]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The percentage after `prefix` in the line of `text` that starts with it.
fn percent_after(text: &str, prefix: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}:\n{text}"));
    let rest = &line[prefix.len()..];
    rest[..rest.find('%').unwrap()].trim().parse().unwrap()
}

#[test]
fn train_with_a_config_file_and_overrides_writes_the_run_folder_and_prints_the_evaluation() {
    let dir = Scratch::new("train");
    let (out, run) = train_small(&dir);
    let text = stdout(&out);

    // The announcement on stderr already shows the override: 2 epochs, not the file's 5.
    let err = stderr(&out);
    assert!(
        err.contains("training mlp with nt_xent on digits for 2 epochs"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // stdout: the timing and final loss, the evaluation, and the run folder.
    let done = text.lines().next().unwrap_or_default();
    assert!(
        done.starts_with("done in ") && done.contains("final epoch loss "),
        "{text}"
    );
    let final_loss: f64 = done.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(final_loss.is_finite() && final_loss > 0.0, "{done}");
    let summary = train_summary(&text);
    for prefix in [
        "linear probe (encoder, classes): test ",
        "kNN (k = 20): test ",
        "alignment ",
        "within-class variance ",
    ] {
        assert!(
            summary.lines().any(|l| l.starts_with(prefix)),
            "no {prefix:?} line in the summary:\n{text}"
        );
    }
    assert!(summary.contains(" uniformity "), "{text}");
    assert!(summary.contains("ETF distance "), "{text}");
    // Even two epochs of a tiny model beat chance (10%) by far on the digits.
    let probe = percent_after(&summary, "linear probe (encoder, classes): test ");
    let knn = percent_after(&summary, "kNN (k = 20): test ");
    assert!(probe > 50.0 && probe <= 100.0, "probe {probe}%");
    assert!(knn > 50.0 && knn <= 100.0, "kNN {knn}%");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with(&format!("run folder: {}", run.display()))),
        "{text}"
    );

    // The folder: every file the run promises.
    for f in [
        "config.toml",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "eval.json",
        "loss.svg",
        "pca.svg",
        "class_cosines.svg",
    ] {
        let path = run.join(f);
        assert!(
            path.is_file() && std::fs::metadata(&path).unwrap().len() > 0,
            "{f} missing or empty in {}",
            run.display()
        );
    }
    for svg in ["loss.svg", "pca.svg", "class_cosines.svg"] {
        let body = std::fs::read_to_string(run.join(svg)).unwrap();
        let body = body.trim_start();
        assert!(
            body.starts_with("<svg") || body.starts_with("<?xml"),
            "{svg} is not SVG: {}",
            &body[..body.len().min(80)]
        );
        assert!(body.trim_end().ends_with("</svg>"), "{svg} is truncated");
    }

    // config.toml: the file's values, with the overrides applied after it.
    let saved_text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let mut saved = Config::default();
    saved.apply_toml(&saved_text, "config.toml").unwrap();
    assert_eq!(saved.usize("train.epochs").unwrap(), 2, "{saved_text}");
    assert_eq!(saved.u64("train.seed").unwrap(), 7, "{saved_text}");
    assert_eq!(saved.usize_list("model.widths").unwrap(), vec![64]);
    assert_eq!(saved.usize_list("model.projector").unwrap(), vec![32]);
    assert!(
        saved_text.lines().any(|l| l == "epochs = 2"),
        "{saved_text}"
    );

    // metrics.jsonl: one line per epoch of the override, numbered 1 and 2, finite losses.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let lines: Vec<&str> = metrics.lines().collect();
    assert_eq!(lines.len(), 2, "{metrics}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("{{\"epoch\": {}, ", i + 1)),
            "{metrics}"
        );
        let at = line.find("\"loss\": ").unwrap() + 8;
        let loss: f64 = line[at..at + line[at..].find(',').unwrap()]
            .parse()
            .unwrap();
        assert!(loss.is_finite(), "{line}");
    }

    // eval.json: one JSON object with the numbers the summary printed.
    let json = std::fs::read_to_string(run.join("eval.json")).unwrap();
    assert!(
        json.starts_with("{\"probe\": {") && json.trim_end().ends_with('}'),
        "{json}"
    );
    assert!(
        json.contains("\"knn_accuracy\"") && json.contains("\"within_class_variance\""),
        "{json}"
    );
}

#[test]
fn eval_of_the_checkpoint_prints_the_same_evaluation_as_the_train_run() {
    let dir = Scratch::new("eval");
    let (train, run) = train_small(&dir);
    let out = contrastive([
        OsStr::new("eval"),
        run.join("checkpoint.safetensors").as_os_str(),
    ]);
    succeeded(&out, "contrastive eval");
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let text = stdout(&out);
    // The summary lines, then the JSON of eval.json. The model, data and every random draw of
    // the evaluation (probe initialisation, augmented views) come from the checkpoint's config,
    // and results do not depend on the thread count (tests/determinism.rs), so the numbers are
    // the same to the last printed digit.
    let (summary, json) = text
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("expected a summary and a JSON line:\n{text}"));
    assert_eq!(
        format!("{summary}\n"),
        train_summary(&stdout(&train)),
        "eval's summary differs from the train run's"
    );
    assert!(
        summary.starts_with("linear probe (encoder, classes): test "),
        "{text}"
    );
    let saved = std::fs::read_to_string(run.join("eval.json")).unwrap();
    assert_eq!(json, saved.trim_end(), "eval's JSON differs from eval.json");
}

/// A `.npy` header read by hand: the dtype descriptor and the shape, after checking the magic,
/// the version, the header length and that the data length matches the shape.
fn npy_header(path: &Path) -> (String, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.starts_with(b"\x93NUMPY"),
        "{} lacks the magic",
        p(path)
    );
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => panic!("{}: npy version {v}", p(path)),
    };
    assert_eq!(bytes[7], 0, "minor version");
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    assert!(header.ends_with('\n'), "{header:?}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let field = |key: &str, open: char, close: char| -> &str {
        let at = header
            .find(&format!("'{key}': {open}"))
            .unwrap_or_else(|| panic!("no {key} in {header}"))
            + key.len()
            + 5;
        &header[at..at + header[at..].find(close).unwrap()]
    };
    let descr = field("descr", '\'', '\'').to_string();
    let shape: Vec<usize> = field("shape", '(', ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let item = match descr.as_str() {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        d => panic!("unexpected descr {d}"),
    };
    assert_eq!(
        bytes.len() - start - len,
        shape.iter().product::<usize>() * item,
        "{}: data length does not match shape {shape:?}",
        p(path)
    );
    (descr, shape)
}

#[test]
fn embed_writes_the_embeddings_and_labels_of_either_split_as_npy() {
    let dir = Scratch::new("embed");
    let (_, run) = train_small(&dir);
    let checkpoint = run.join("checkpoint.safetensors");
    let (train, test) = digits_train_test().unwrap();
    assert_eq!((train.len(), test.len()), (1437, 360));

    let embed = |name: &str, extra: &[&str]| {
        let emb = dir.join(format!("{name}.npy"));
        let labels = dir.join(format!("{name}_labels.npy"));
        let mut args = vec![
            "embed",
            p(&checkpoint),
            "--out",
            p(&emb),
            "--labels-out",
            p(&labels),
        ];
        args.extend_from_slice(extra);
        let out = contrastive(&args);
        succeeded(&out, &format!("contrastive embed {extra:?}"));
        assert!(
            stderr(&out).contains(&format!("embeddings to {}", emb.display())),
            "{}",
            stderr(&out)
        );
        (emb, labels)
    };
    let check_labels = |path: &Path, expected: &[usize]| {
        let (descr, shape) = npy_header(path);
        assert_eq!((descr.as_str(), shape), ("<i8", vec![expected.len()]));
        let NpyData::I64(values) = npy::read(path).unwrap().data else {
            panic!("labels are not int64")
        };
        assert!(values.iter().all(|l| (0..10).contains(l)), "{values:?}");
        let values: Vec<usize> = values.iter().map(|&l| l as usize).collect();
        assert_eq!(values, expected, "labels are not the split's, in order");
    };
    let finite_f32 = |path: &Path| {
        let NpyData::F32(values) = npy::read(path).unwrap().data else {
            panic!("{} is not float32", p(path))
        };
        assert!(values.iter().all(|v| v.is_finite()));
        values
    };

    // The encoder output of the test split: 360 rows of width 64.
    let (emb, labels) = embed("test", &[]);
    assert_eq!(npy_header(&emb), ("<f4".to_string(), vec![360, 64]));
    check_labels(&labels, test.labels());
    let h = finite_f32(&emb);
    assert!(h.iter().any(|&v| v != 0.0), "all-zero embeddings");

    // The training split: 1437 rows.
    let (emb, labels) = embed("train", &["--train-split"]);
    assert_eq!(npy_header(&emb), ("<f4".to_string(), vec![1437, 64]));
    check_labels(&labels, train.labels());
    finite_f32(&emb);

    // The projector output: width 32, different values from the encoder's.
    let (emb, labels) = embed("projector", &["--projector"]);
    assert_eq!(npy_header(&emb), ("<f4".to_string(), vec![360, 32]));
    check_labels(&labels, test.labels());
    finite_f32(&emb);

    // Embedding again gives the same bytes.
    let (again, _) = embed("test_again", &[]);
    assert_eq!(
        std::fs::read(dir.join("test.npy")).unwrap(),
        std::fs::read(again).unwrap(),
        "embed is not deterministic"
    );

    // Without --labels-out only the embeddings are written.
    let lone = dir.join("lone.npy");
    let out = contrastive(["embed", p(&checkpoint), "--out", p(&lone)]);
    succeeded(&out, "contrastive embed without --labels-out");
    assert_eq!(npy_header(&lone).1, vec![360, 64]);
    assert!(!dir.join("lone_labels.npy").exists());
}

/// Runs `eval` and `embed` on `checkpoint` and checks that both fail naming it with every one of
/// `needles`, and that `embed` wrote nothing.
fn both_reject(dir: &Path, checkpoint: &Path, needles: &[&str]) {
    let mut needles = needles.to_vec();
    needles.push(p(checkpoint));
    let out = contrastive(["eval", p(checkpoint)]);
    failed_with(&out, &format!("eval {}", p(checkpoint)), &needles);
    let emb = dir.join("never.npy");
    let labels = dir.join("never_labels.npy");
    let out = contrastive([
        "embed",
        p(checkpoint),
        "--out",
        p(&emb),
        "--labels-out",
        p(&labels),
    ]);
    failed_with(&out, &format!("embed {}", p(checkpoint)), &needles);
    assert!(
        !emb.exists() && !labels.exists(),
        "a failed embed wrote files"
    );
}

#[test]
fn eval_and_embed_reject_a_missing_checkpoint() {
    let dir = Scratch::new("missing");
    both_reject(
        &dir,
        &dir.join("no_such_run").join("checkpoint.safetensors"),
        &["No such file or directory"],
    );
}

#[test]
fn eval_and_embed_reject_a_file_that_is_not_safetensors() {
    let dir = Scratch::new("not-safetensors");
    // Shorter than the 8-byte header length.
    let short = dir.join("short.safetensors");
    std::fs::write(&short, b"hello\n").unwrap();
    both_reject(&dir, &short, &["too short for the 8-byte header length"]);
    // Text read as a header length: far more than the file holds.
    let text = dir.join("notes.safetensors");
    std::fs::write(&text, "this is a text file, not a checkpoint\n").unwrap();
    both_reject(
        &dir,
        &text,
        &["header length", "exceeds the file's remaining"],
    );
    // A plausible length but no JSON after it.
    let garbage = dir.join("garbage.safetensors");
    let mut bytes = 6u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"nope!!");
    std::fs::write(&garbage, bytes).unwrap();
    both_reject(&dir, &garbage, &["bad header JSON"]);
}

#[test]
fn eval_and_embed_reject_a_safetensors_file_that_is_not_a_checkpoint() {
    let dir = Scratch::new("not-checkpoint");
    let header = br#"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&1.0f32.to_le_bytes());
    let file = dir.join("weights.safetensors");
    std::fs::write(&file, bytes).unwrap();
    // The file itself is valid safetensors.
    let (tensors, meta) = contrastive::nn::load_safetensors::<f32>(&file).unwrap();
    assert_eq!((tensors.len(), meta.len()), (1, 0));
    both_reject(
        &dir,
        &file,
        &["not a contrastive checkpoint", "no 'config' metadata"],
    );
}

#[test]
fn train_rejects_an_unknown_key_before_creating_the_run_folder() {
    let dir = Scratch::new("unknown-key");
    let run = dir.join("run");
    let out = contrastive(["train", "--set", "nope.key=1", "--out", p(&run)]);
    failed_with(
        &out,
        "train --set nope.key=1",
        &["unknown key 'nope.key'", "--keys"],
    );
    assert!(!run.exists(), "a rejected run created its folder");
    let out = contrastive(["train", "--set", "train.epochs", "--out", p(&run)]);
    failed_with(
        &out,
        "train --set without =",
        &["expected key=value", "train.epochs"],
    );
    let out = contrastive(["train", "--set", "train.epochs=many", "--out", p(&run)]);
    failed_with(&out, "train --set train.epochs=many", &["train.epochs"]);
    assert!(!run.exists(), "a rejected run created its folder");
}

#[test]
fn train_rejects_a_config_file_with_a_bad_value_or_key_naming_the_line_and_key() {
    let dir = Scratch::new("bad-config");
    let run = dir.join("run");
    let config = dir.join("bad.toml");
    std::fs::write(
        &config,
        "[model]\nwidths = [64]\n\n[train]\nepochs = \"many\"\n",
    )
    .unwrap();
    let out = contrastive(["train", "--config", p(&config), "--out", p(&run)]);
    failed_with(
        &out,
        "train with a bad value",
        &[
            &format!("{}:5", p(&config)),
            "train.epochs",
            "expects an integer",
        ],
    );
    std::fs::write(&config, "[optim]\nlr = 0.01\nbogus = 2\n").unwrap();
    let out = contrastive(["train", "--config", p(&config), "--out", p(&run)]);
    failed_with(
        &out,
        "train with an unknown key in the file",
        &[&format!("{}:3", p(&config)), "unknown key 'optim.bogus'"],
    );
    // The override is applied after the file, but a bad file fails even when --set would fix it.
    let out = contrastive([
        "train",
        "--config",
        p(&config),
        "--set",
        "optim.lr=0.1",
        "--out",
        p(&run),
    ]);
    failed_with(&out, "train with a bad file and --set", &["optim.bogus"]);
    let missing = dir.join("missing.toml");
    let out = contrastive(["train", "--config", p(&missing), "--out", p(&run)]);
    failed_with(
        &out,
        "train with a missing config file",
        &[p(&missing), "No such file or directory"],
    );
    assert!(!run.exists(), "a rejected run created its folder");
}
