//! The evaluation at the end of a run (and of `contrastive eval`): linear probe and kNN on the
//! encoder output, alignment/uniformity and class-collapse geometry of the normalised projector
//! output (the geometry on the test and the training split), coarse and fine probes when the
//! run trained on coarse labels; written as JSON and SVG plots into the run folder.

use super::config::Config;
use super::plots;
use super::setup::{self, Splits};
use crate::autograd::no_grad;
use crate::data::{Dataset, Loader, LoaderConfig, Sampler};
use crate::error::Result;
use crate::eval::{
    self, AlignUniform, CollapseReport, KnnConfig, KnnReport, Pca2, ProbeConfig, ProbeReport,
};
use crate::nn::{EncoderHead, Mode};
use crate::tensor::Tensor;
use std::fmt::Write;
use std::path::Path;

/// Rows per forward pass when embedding a data set.
const EMBED_BATCH: usize = 512;

/// Encoder outputs `h` and projector outputs `z` of every item, in order, in evaluation mode.
pub fn embed(model: &mut EncoderHead<f32>, data: &Dataset) -> Result<(Tensor<f32>, Tensor<f32>)> {
    no_grad(|| {
        let mut hs = Vec::new();
        let mut zs = Vec::new();
        let all: Vec<usize> = (0..data.len()).collect();
        for chunk in all.chunks(EMBED_BATCH) {
            let x = data.batch_tensor(chunk)?;
            let (h, z) = model.encode_and_project(&x, Mode::Eval)?;
            hs.push(h);
            zs.push(z);
        }
        Ok((Tensor::concat(&hs, 0)?, Tensor::concat(&zs, 0)?))
    })
}

/// Everything the end-of-run evaluation measures.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Linear probe on the encoder output, against the original (fine) classes.
    pub probe: Option<ProbeReport>,
    /// Linear probe against the training (coarse) labels, when they differ from the classes.
    pub coarse_probe: Option<ProbeReport>,
    pub knn: KnnReport,
    /// Of the normalised projector outputs of two augmented views of the test set.
    pub align_uniform: AlignUniform,
    /// Of the normalised projector outputs of the test set, by training label; `None` when a
    /// class has no test sample (a random hold-out can miss a rare class), rather than failing
    /// the run after its training.
    pub collapse: Option<CollapseReport>,
    /// The same of the (unaugmented) training set: neural collapse, and the simplex it ends in
    /// (Papyan et al., Graf et al.), is a property of the data the loss was minimised on.
    /// `None` when a class has no training sample.
    pub collapse_train: Option<CollapseReport>,
    /// 2-d PCA of the test encoder outputs, and the classes to colour them by.
    pub pca: Vec<[f64; 2]>,
    pub pca_classes: Vec<usize>,
}

/// Runs the evaluation of `model` on `splits`.
pub fn evaluate(
    model: &mut EncoderHead<f32>,
    splits: &Splits,
    config: &Config,
) -> Result<Evaluation> {
    let (h_train, z_train) = embed(model, &splits.train)?;
    let (h_test, z_test) = embed(model, &splits.test)?;
    let fine = |d: &Dataset| d.fine_labels().unwrap_or(d.labels()).to_vec();
    let (train_fine, test_fine) = (fine(&splits.train), fine(&splits.test));
    let probe_config = ProbeConfig::default();
    let probe = if config.bool("eval.probe")? {
        Some(eval::linear_probe(
            &h_train,
            &train_fine,
            &h_test,
            &test_fine,
            &probe_config,
        )?)
    } else {
        None
    };
    let coarse_probe = match (config.bool("eval.probe")?, splits.train.fine_labels()) {
        (true, Some(_)) => Some(eval::linear_probe(
            &h_train,
            splits.train.labels(),
            &h_test,
            splits.test.labels(),
            &probe_config,
        )?),
        _ => None,
    };
    let knn_config = KnnConfig {
        k: config.positive("eval.knn_k")?.min(splits.train.len()),
        ..KnnConfig::default()
    };
    let knn = eval::knn_accuracy(&h_train, &train_fine, &h_test, &test_fine, &knn_config)?;

    // Two augmented views of every test item (the training augmentation, a fixed seed).
    let views = Loader::new(
        splits.test.clone(),
        LoaderConfig {
            batch_size: splits.test.len(),
            views: 2,
            sampler: Sampler::Sequential,
            drop_last: false,
            seed: config.u64("train.seed")?.wrapping_add(0x5eed),
            augment: setup::augment(config)?,
            view_size: setup::view_size(config, splits.test.item_shape())?,
        },
    )?;
    let align_uniform = match views.epoch(0).next() {
        Some(batch) => {
            let batch = batch?;
            let v0 = embed_tensor(model, &batch.view(0)?)?;
            let v1 = embed_tensor(model, &batch.view(1)?)?;
            eval::align_uniform(
                &v0,
                &v1,
                eval::geometry::DEFAULT_ALPHA,
                eval::geometry::DEFAULT_T,
            )?
        }
        None => eval::align_uniform(
            &z_test,
            &z_test,
            eval::geometry::DEFAULT_ALPHA,
            eval::geometry::DEFAULT_T,
        )?,
    };
    let collapse = collapse_if_every_class(&z_test, splits.test.labels())?;
    let collapse_train = collapse_if_every_class(&z_train, splits.train.labels())?;
    let pca = Pca2::fit_project(&h_test)?.1;
    Ok(Evaluation {
        probe,
        coarse_probe,
        knn,
        align_uniform,
        collapse,
        collapse_train,
        pca,
        pca_classes: test_fine,
    })
}

/// The class-collapse geometry of `z`, or `None` when a class has no sample there.
fn collapse_if_every_class(z: &Tensor<f32>, labels: &[usize]) -> Result<Option<CollapseReport>> {
    if every_class_present(labels) {
        Ok(Some(eval::class_collapse(z, labels)?))
    } else {
        Ok(None)
    }
}

/// Whether every class up to the largest label has a sample.
fn every_class_present(labels: &[usize]) -> bool {
    let k = labels.iter().max().map_or(0, |&m| m + 1);
    let mut seen = vec![false; k];
    for &l in labels {
        seen[l] = true;
    }
    seen.into_iter().all(|s| s)
}

/// Projector outputs of a batch of inputs, in evaluation mode.
fn embed_tensor(model: &mut EncoderHead<f32>, x: &Tensor<f32>) -> Result<Tensor<f32>> {
    no_grad(|| Ok(model.encode_and_project(x, Mode::Eval)?.1))
}

fn json_number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// A warning for the summary when the probe stopped at its iteration cap.
fn unconverged(p: &ProbeReport) -> String {
    if p.converged {
        String::new()
    } else {
        format!(
            "  (NOT converged: {} L-BFGS iterations, max |grad| {:.1e})",
            p.iterations, p.grad_max
        )
    }
}

fn probe_json(p: &Option<ProbeReport>) -> String {
    match p {
        None => "null".into(),
        Some(p) => format!(
            "{{\"train_accuracy\": {}, \"test_accuracy\": {}, \"iterations\": {}, \"converged\": {}, \
             \"grad_max\": {}}}",
            json_number(p.train_accuracy),
            json_number(p.test_accuracy),
            p.iterations,
            p.converged,
            json_number(p.grad_max)
        ),
    }
}

impl Evaluation {
    /// One JSON object (hand-written: the core has no serde).
    pub fn to_json(&self) -> String {
        // Absent geometry is written as nulls.
        let c =
            |f: fn(&CollapseReport) -> f64| json_number(self.collapse.as_ref().map_or(f64::NAN, f));
        format!(
            "{{\"probe\": {}, \"coarse_probe\": {}, \"knn_accuracy\": {}, \"knn_k\": {}, \
             \"alignment\": {}, \"uniformity\": {}, \"within_class_variance\": {}, \
             \"class_mean_cosine\": {}, \"class_mean_cosine_min\": {}, \"class_mean_cosine_max\": {}, \
             \"simplex_cosine\": {}, \"etf_distance\": {}, \"class_mean_offset\": {}, \
             \"train_split\": {}}}",
            probe_json(&self.probe),
            probe_json(&self.coarse_probe),
            json_number(self.knn.accuracy),
            self.knn.k,
            json_number(self.align_uniform.alignment),
            json_number(self.align_uniform.uniformity),
            c(|c| c.within_class_variance),
            c(|c| c.mean_cosine),
            c(|c| c.min_cosine),
            c(|c| c.max_cosine),
            c(|c| c.simplex_cosine),
            c(|c| c.etf_distance),
            c(|c| c.mean_offset),
            self.collapse_train
                .as_ref()
                .map_or("null".into(), |t| format!(
                    "{{\"within_class_variance\": {}, \"class_mean_cosine_min\": {}, \
                 \"class_mean_cosine_max\": {}, \"etf_distance\": {}, \"class_mean_offset\": {}}}",
                    json_number(t.within_class_variance),
                    json_number(t.min_cosine),
                    json_number(t.max_cosine),
                    json_number(t.etf_distance),
                    json_number(t.mean_offset)
                ))
        )
    }

    /// A few human-readable lines.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.probe {
            let _ = writeln!(
                s,
                "linear probe (encoder, classes): test {:.2}%  train {:.2}%{}",
                100.0 * p.test_accuracy,
                100.0 * p.train_accuracy,
                unconverged(p)
            );
        }
        if let Some(p) = &self.coarse_probe {
            let _ = writeln!(
                s,
                "linear probe (training labels): test {:.2}%{}",
                100.0 * p.test_accuracy,
                unconverged(p)
            );
        }
        let _ = writeln!(
            s,
            "kNN (k = {}): test {:.2}%",
            self.knn.k,
            100.0 * self.knn.accuracy
        );
        let _ = writeln!(
            s,
            "alignment {:.4}  uniformity {:.4}",
            self.align_uniform.alignment, self.align_uniform.uniformity
        );
        let splits = [
            ("", self.collapse.as_ref()),
            ("training split: ", self.collapse_train.as_ref()),
        ];
        for (split, c) in splits {
            let Some(c) = c else {
                let _ = writeln!(
                    s,
                    "{split}class collapse not measured: a class has no sample"
                );
                continue;
            };
            let _ = writeln!(
                s,
                "{split}within-class variance {:.4}; centred class-mean cosines min {:.4} max \
                 {:.4} (simplex: all {:.4}), ETF distance {:.4}, shared class-mean offset {:.4}",
                c.within_class_variance,
                c.min_cosine,
                c.max_cosine,
                c.simplex_cosine,
                c.etf_distance,
                c.mean_offset
            );
        }
        s
    }

    /// Writes `eval.json`, `pca.svg` and `class_cosines.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_file(&dir.join("eval.json"), &(self.to_json() + "\n"))?;
        let points: Vec<(f64, f64)> = self.pca.iter().map(|p| (p[0], p[1])).collect();
        let scatter =
            plots::scatter_by_class("Test embeddings (encoder), PCA", &points, &self.pca_classes);
        write_file(&dir.join("pca.svg"), &scatter)?;
        match &self.collapse {
            Some(c) => {
                let title = "Cosines between centred class means (projector)";
                write_file(
                    &dir.join("class_cosines.svg"),
                    &plots::heat_map(title, &c.cosine_matrix),
                )
            }
            None => Ok(()),
        }
    }
}

/// Writes a small text file atomically.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    crate::nn::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_without_samples_is_seen() {
        assert!(every_class_present(&[2, 0, 1, 1]));
        assert!(!every_class_present(&[2, 0, 0]));
        assert!(every_class_present(&[]));
    }

    #[test]
    fn an_unconverged_probe_says_so_in_the_summary_and_the_json() {
        let mut p = ProbeReport {
            train_accuracy: 0.9,
            test_accuracy: 0.8,
            num_classes: 2,
            iterations: 5000,
            final_loss: 0.3,
            grad_max: 4.6e-6,
            converged: false,
            test_predictions: vec![],
        };
        assert_eq!(
            unconverged(&p),
            "  (NOT converged: 5000 L-BFGS iterations, max |grad| 4.6e-6)"
        );
        assert!(
            probe_json(&Some(p.clone())).contains("\"converged\": false, \"grad_max\": 0.0000046")
        );
        p.converged = true;
        assert_eq!(unconverged(&p), "");
    }
}
