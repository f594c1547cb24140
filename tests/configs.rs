//! The shipped run configurations (`configs/*.toml`) and sweep files (`configs/sweeps/*.toml`)
//! are read and checked as `contrastive train --config` and `contrastive sweep` read them, with
//! every check training makes before its first step, so a renamed key or a bad value fails here
//! rather than in the (ignored) claims tests. Then every kind of bad configuration is shown to be
//! an error naming the key and the value, and the file reader's errors to name the line.

use contrastive::sweep::{Sweep, describe};
use contrastive::train::{Config, Value, setup};
use std::path::{Path, PathBuf};

/// The `*.toml` files of `configs/<sub>`, sorted.
fn shipped(sub: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no configurations in {}", dir.display());
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A run configuration's text as `contrastive train --config` resolves it (defaults, then the
/// file), then every check training makes before its first step. The IDX configurations name
/// Fashion-MNIST, which need not be installed: their model and views are checked on its
/// 1×28×28 items instead.
fn check_run(text: &str, origin: &str) -> contrastive::Result<Config> {
    let mut config = Config::default();
    config.apply_toml(text, origin)?;
    setup::validate(&config)?;
    if config.str("data.name")? == "idx" {
        let items = [1, 28, 28];
        setup::view_size(&config, &items)?;
        setup::build_model(&config, &items)?;
    }
    Ok(config)
}

/// A sweep file's text as `contrastive sweep` parses and expands it, with every run checked as
/// [`check_run`] checks a configuration. Returns the number of runs.
fn check_sweep(text: &str, origin: &str) -> Result<usize, String> {
    let sweep = Sweep::parse(text, origin, "sweep").map_err(|e| e.to_string())?;
    let runs = sweep.expand().map_err(|e| e.to_string())?;
    for run in &runs {
        setup::validate(&run.config)
            .map_err(|e| format!("{origin}, run {}: {e}", describe(&run.labels, run.seed)))?;
    }
    Ok(runs.len())
}

#[test]
fn every_shipped_configuration_is_valid() {
    for path in shipped("") {
        let origin = path.display().to_string();
        if let Err(e) = check_run(&read(&path), &origin) {
            panic!("{e}");
        }
    }
}

#[test]
fn every_shipped_sweep_is_valid() {
    for path in shipped("sweeps") {
        let origin = path.display().to_string();
        match check_sweep(&read(&path), &origin) {
            Ok(runs) => assert!(runs > 0, "{origin} has no runs"),
            Err(e) => panic!("{e}"),
        }
    }
}

/// The checks above would catch a broken file: each shipped file with an unknown key, or with
/// a value no run can take, is rejected.
#[test]
fn the_shipped_file_checks_reject_unknown_keys_and_bad_values() {
    for path in shipped("") {
        let text = read(&path);
        let origin = path.display().to_string();
        let typo = format!("{text}\n[train]\nepochz = 3\n");
        let e = check_run(&typo, &origin).unwrap_err().to_string();
        assert!(e.contains("train.epochz") && e.contains(&origin), "{e}");
        let loss_line = text
            .lines()
            .skip_while(|l| l.trim() != "[loss]")
            .find(|l| l.starts_with("name = "))
            .unwrap_or_else(|| panic!("{origin}: no name in [loss]"));
        let bad = text.replacen(loss_line, "name = \"nope\"", 1);
        let e = check_run(&bad, &origin).unwrap_err().to_string();
        assert!(e.contains("loss.name = \"nope\""), "{origin}: {e}");
    }
    for path in shipped("sweeps") {
        let text = read(&path);
        let origin = path.display().to_string();
        let typo = format!("{text}\n[base]\ntrain.epochz = 3\n");
        let e = check_sweep(&typo, &origin).unwrap_err();
        assert!(e.contains("train.epochz") && e.contains(&origin), "{e}");
        // Every run of the sweep takes [base], so a bad value there fails the expansion check.
        let bad = format!("{text}\n[base]\noptim.name = \"nope\"\n");
        let e = check_sweep(&bad, &origin).unwrap_err();
        assert!(e.contains("optim.name 'nope'"), "{origin}: {e}");
    }
}

/// The default configuration with `assignments` applied as a file's `key = value` lines.
fn config(assignments: &[&str]) -> contrastive::Result<Config> {
    let mut c = Config::default();
    c.apply_toml(&assignments.join("\n"), "test.toml")?;
    Ok(c)
}

/// `setup::validate` on the default configuration with `assignments`; the error text.
fn rejection(assignments: &[&str]) -> String {
    match config(assignments).and_then(|c| setup::validate(&c)) {
        Ok(()) => panic!("{assignments:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

fn accepted(assignments: &[&str]) {
    if let Err(e) = config(assignments).and_then(|c| setup::validate(&c)) {
        panic!("{assignments:?}: {e}");
    }
}

#[test]
fn bad_values_are_rejected_before_training_naming_the_key_and_value() {
    for (assignments, expected) in [
        (
            &["train.batch_size = 0"][..],
            &["train.batch_size", "got 0"][..],
        ),
        (&["eval.knn_k = 0"], &["eval.knn_k", "got 0"]),
        // Settings that would be silently ignored.
        (
            &["data.path = \"/tmp/x\""],
            &["data.path = \"/tmp/x\"", "no effect"],
        ),
        (
            &["data.synthetic.noise = 0.3"],
            &["data.synthetic.noise = 0.3", "synthetic"],
        ),
        (
            &["model.encoder = \"cnn\"", "model.batch_norm = true"],
            &["model.batch_norm = true", "mlp"],
        ),
        (
            &["model.projector_batch_norm = true"],
            &["model.projector_batch_norm = true", "hidden layer"],
        ),
        (
            &["optim.clip_grad_norm = -1.0"],
            &["optim.clip_grad_norm = -1", ">= 0"],
        ),
        (
            &[
                "optim.name = \"lars\"",
                "optim.nesterov = true",
                "optim.momentum = 0.0",
            ],
            &[
                "optim.nesterov = true",
                "Nesterov momentum needs momentum > 0",
            ],
        ),
        (&["data.views = 0"], &["data.views", "got 0"]),
        // NT-Xent (the default loss) contrasts a sample's views: one is not enough.
        (&["data.views = 1"], &["data.views = 1", "nt_xent"]),
        // Triplet losses take exactly (anchor, positive, negative).
        (
            &["loss.name = \"triplet\"", "loss.params = \"\""],
            &["data.views = 2", "triplet"],
        ),
        // NT-Xent needs two samples, whatever the views.
        (
            &["train.batch_size = 1"],
            &["train.batch_size = 1", "nt_xent"],
        ),
        (&["loss.params = \"tau=-1\""], &["tau=-1", "loss.params"]),
        // Losses that need inputs training does not give (a queue, entity types).
        (
            &["loss.name = \"moco\""],
            &["loss.name = \"moco\"", "queue"],
        ),
        (
            &["schedule.warmup_epochs = 5", "train.epochs = 4"],
            &["schedule.warmup_epochs = 5", "train.epochs = 4"],
        ),
        (&["model.widths = []"], &["model.widths = []"]),
        (
            &["model.encoder = \"cnn\"", "model.widths = []"],
            &["model.widths = []"],
        ),
        (&["model.widths = [64, 0]"], &["model.widths", "positive"]),
        (
            &["optim.name = \"adam\"", "optim.nesterov = true"],
            &["optim.nesterov = true", "adam", "sgd and lars only"],
        ),
        (
            &["optim.name = \"adamw\"", "optim.momentum = 0.5"],
            &["optim.momentum = 0.5", "adamw", "sgd and lars only"],
        ),
        (
            &[
                "optim.name = \"sgd\"",
                "optim.nesterov = true",
                "optim.momentum = 0",
            ],
            &["optim.nesterov = true", "optim.momentum = 0", "Nesterov"],
        ),
        (&["optim.lr = -0.1"], &["optim.lr = -0.1"]),
        (
            &["schedule.final_lr = 0.0001"],
            &["schedule.final_lr = 0.0001", "schedule.cosine"],
        ),
        (&["loss.name = \"nope\""], &["loss.name = \"nope\""]),
        (
            &["loss.params = \"temperature=0.1\""],
            &["loss.params = \"temperature=0.1\"", "unknown parameter"],
        ),
        (&["data.name = \"mnist\""], &["data.name 'mnist'"]),
        (&["data.coarse = \"thirds\""], &["data.coarse 'thirds'"]),
        (
            &["data.augment = \"rotate:10\""],
            &["data.augment", "rotate"],
        ),
        (&["train.device = \"gpu:0\""], &["train.device", "gpu:0"]),
        (&["train.batch_size = 5000"], &["train.batch_size 5000"]),
        (
            &["data.name = \"synthetic\"", "data.synthetic.dim = 0"],
            &["data.synthetic.dim", "got 0"],
        ),
        (
            &["data.name = \"synthetic\"", "data.synthetic.noise = -0.5"],
            &["data.synthetic.coarse_sep", ".noise", "-0.5"],
        ),
    ] {
        let e = rejection(assignments);
        for part in expected {
            assert!(e.contains(part), "{assignments:?}: '{part}' not in: {e}");
        }
    }
}

#[test]
fn negative_counts_are_rejected_where_they_are_written() {
    for key in ["train.epochs", "eval.knn_k", "data.views", "train.seed"] {
        let e = config(&[&format!("{key} = -1")]).unwrap_err().to_string();
        assert!(
            e.contains(key) && e.contains("-1") && e.contains("test.toml:1"),
            "{e}"
        );
        let e = Config::default()
            .set_assignment(&format!("{key}=-3"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && e.contains("-3"), "{e}");
    }
}

#[test]
fn settings_that_are_valid_or_only_restate_a_default_are_accepted() {
    for assignments in [
        // SupCon contrasts labels, so one view per sample is enough.
        &["loss.name = \"supcon\"", "data.views = 1"][..],
        &["data.views = 3"],
        &["schedule.warmup_epochs = 4", "train.epochs = 4"],
        &["schedule.cosine = true", "schedule.final_lr = 0.0001"],
        // Defaults that have no effect under Adam may still be written out.
        &[
            "optim.name = \"adam\"",
            "optim.momentum = 0.9",
            "optim.nesterov = false",
        ],
        &["optim.name = \"sgd\"", "optim.nesterov = true"],
        // LARS takes Nesterov momentum too.
        &[
            "optim.name = \"lars\"",
            "optim.nesterov = true",
            "optim.momentum = 0.5",
        ],
        &["eval.knn_k = 5000"],
        &["model.encoder = \"cnn\"", "model.widths = [8]"],
        // No training: the run evaluates the initialised model, a baseline, whatever the
        // schedule.
        &["train.epochs = 0"],
        &["train.epochs = 0", "schedule.warmup_epochs = 5"],
        // A batch of two can train a label-based loss that needs negatives.
        &[
            "loss.name = \"supcon\"",
            "loss.params = \"tau=0.1,denominator=negatives\"",
            "train.batch_size = 2",
        ],
    ] {
        accepted(assignments);
    }
}

/// The file reader: each malformed line is an error naming the file and the line.
#[test]
fn malformed_files_are_errors_naming_the_file_and_line() {
    for (text, expected) in [
        (
            "[loss]\nname = \"supcon\n",
            &["bad.toml:2", "loss.name", "\"supcon"][..],
        ),
        ("[loss]\nname = supcon\"\n", &["bad.toml:2", "supcon\""]),
        ("[loss]\nname = 'supcon\n", &["bad.toml:2", "'supcon"]),
        (
            "[train]\nepochs = 3\nseed = 1\nepochs = 4\n",
            &["bad.toml:4", "train.epochs", "twice", "line 2"],
        ),
        (
            "[train]\nepochs = 3\n[train]\nepochs = 4\n",
            &["bad.toml:4", "train.epochs", "twice"],
        ),
        ("[data\nname = \"digits\"\n", &["bad.toml:1", "[data"]),
        ("[]\nname = \"digits\"\n", &["bad.toml:1", "[]"]),
        ("[[data]]\nname = \"digits\"\n", &["bad.toml:1", "[[data]]"]),
        ("[data] name = \"digits\"\n", &["bad.toml:1", "[data] name"]),
        // A key outside any table is a key of its own, which does not exist.
        (
            "epochs = 3\n[train]\n",
            &["bad.toml:1", "unknown key 'epochs'", "outside any [table]"],
        ),
        (
            "[data]\ncoarse =\n",
            &["bad.toml:2", "data.coarse", "no value"],
        ),
        (
            "[data]\ncoarse = # none\n",
            &["bad.toml:2", "data.coarse", "no value"],
        ),
        ("[train]\n= 3\n", &["bad.toml:2", "malformed key"]),
        (
            "[model]\nwidths = [64, 32\n",
            &["bad.toml:2", "model.widths", "[64, 32"],
        ),
        (
            "[model]\nwidths = [64, , 32]\n",
            &["bad.toml:2", "model.widths"],
        ),
        (
            "[train]\nepochs = \"many\"\n",
            &["bad.toml:2", "train.epochs"],
        ),
    ] {
        let e = match Config::default().apply_toml(text, "bad.toml") {
            Ok(()) => panic!("accepted: {text:?}"),
            Err(e) => e.to_string(),
        };
        for part in expected {
            assert!(e.contains(part), "{text:?}: '{part}' not in: {e}");
        }
    }
}

#[test]
fn comments_quotes_and_dotted_keys_read_as_toml_does() {
    let mut c = Config::default();
    let text = "# a run\n\
                train.seed = 7  # a dotted key outside any table\n\
                [train]   # the table\n\
                epochs = 3 # three\n\
                [data]\n\
                path = \"/data/#1\"  # a '#' inside a string is no comment\n\
                augment = 'noise:0.1' # a literal string\n\
                [loss]\n\
                params = \"tau=0.2\"#no space\n\
                [model]\n\
                widths = [64, 32,]  # a trailing comma\n\
                projector = []\n";
    c.apply_toml(text, "ok.toml").unwrap();
    assert_eq!(c.usize("train.seed").unwrap(), 7);
    assert_eq!(c.usize("train.epochs").unwrap(), 3);
    assert_eq!(c.str("data.path").unwrap(), "/data/#1");
    assert_eq!(c.str("data.augment").unwrap(), "noise:0.1");
    assert_eq!(c.str("loss.params").unwrap(), "tau=0.2");
    assert_eq!(c.usize_list("model.widths").unwrap(), vec![64, 32]);
    assert!(c.usize_list("model.projector").unwrap().is_empty());
    // `--set` takes bare strings, and an empty value (what a shell leaves of `key=""`).
    c.set_assignment("data.coarse=halves").unwrap();
    c.set_assignment("data.coarse=").unwrap();
    assert_eq!(c.str("data.coarse").unwrap(), "");
    let e = c
        .set_assignment("loss.name=\"supcon")
        .unwrap_err()
        .to_string();
    assert!(e.contains("loss.name") && e.contains("\"supcon"), "{e}");
}

/// A checkpoint stores its configuration as text: every string must read back as written,
/// whatever it holds (TOML escapes in, the same escapes out).
#[test]
fn the_written_configuration_reads_back_to_itself() {
    let mut c = Config::default();
    for (key, value) in [
        ("data.name", "npy"),
        ("data.path", r#"C:\data\"quoted" # not a comment"#),
        ("data.augment", "noise:0.1"),
    ] {
        c.set(key, Value::Str(value.into())).unwrap();
    }
    let text = c.to_toml();
    let mut back = Config::default();
    back.apply_toml(&text, "written.toml").unwrap();
    assert_eq!(
        back.str("data.path").unwrap(),
        r#"C:\data\"quoted" # not a comment"#,
        "{text}"
    );
    assert_eq!(back.id(), c.id());
}
