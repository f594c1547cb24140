//! Builds what a run needs from its [`Config`]: the train and test sets, the model, the loss, the
//! optimiser and the learning-rate schedule. `contrastive eval` and `embed` rebuild the model
//! from the configuration saved in a checkpoint with the same functions. [`validate`] runs every
//! check of these builders without training, so a bad configuration fails before any work.

use super::config::Config;
use crate::data::{
    self, Augment, Dataset, LatentSubclasses, Loader, LoaderConfig, Sampler, SyntheticConfig,
};
use crate::error::{Error, Result};
use crate::eval::Coarsening;
use crate::losses::{Loss, LossInputs};
use crate::nn::{
    Activation, BatchNorm, ConvEncoder, EncoderHead, Flatten, Identity, Mlp, ProjectionHead,
    Sequential,
};
use crate::optim::{
    Adam, Constant, GradientSource, Lars, LinearWarmupCosine, LrSchedule, Optimizer, Sgd,
};
use crate::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::{Path, PathBuf};

/// The train and test sets of a run. When the run trains on coarse labels, `train` and `test`
/// carry them as labels and the original classes as fine labels.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
}

/// Checks `config` as training checks it before its first step, without training: every key
/// alone and together (data set, augmentation, view size, model, loss, optimiser, schedule,
/// device, evaluation). Where the data need no file (digits, synthetic) it also loads them and
/// builds the model on their items; for file data sets (idx, cifar10, npy) the checks that need
/// the items (model input, view size, batch size against the training set) wait for the data.
pub fn validate(config: &Config) -> Result<()> {
    check_keys(config)?;
    if Source::from_config(config)?.in_memory() {
        let splits = load_splits(config)?;
        fit_data(config, &splits.train)?;
        build_model(config, splits.train.item_shape())?;
    }
    Ok(())
}

/// The checks of [`validate`] that need no data. The training loop runs them before it creates
/// the run folder or loads anything: `eval.knn_k`, for one, is otherwise read only after all
/// training.
pub fn check_keys(config: &Config) -> Result<()> {
    Source::from_config(config)?;
    coarsening(config)?;
    augment(config)?;
    view_sides(config)?;
    config.positive("data.views")?;
    config.positive("train.batch_size")?;
    config.positive("eval.knn_k")?;
    config.bool("eval.probe")?;
    model_keys(config)?;
    check_no_dead_settings(config)?;
    build_loss(config)?;
    build_optimizer(config)?;
    build_schedule(config, 1)?;
    let device = config.str("train.device")?;
    device
        .parse::<Device>()
        .map_err(|e| Error::invalid("config", format!("train.device = \"{device}\": {e}")))?;
    Ok(())
}

/// Settings that the configuration would silently ignore: a value set on purpose must act or be
/// an error (the defaults are always accepted).
fn check_no_dead_settings(config: &Config) -> Result<()> {
    let data = config.str("data.name")?;
    let encoder = config.str("model.encoder")?;
    let hidden_projector = config.usize_list("model.projector")?.len() >= 2;
    let synthetic_keys = [
        "data.synthetic.coarse",
        "data.synthetic.sub",
        "data.synthetic.dim",
        "data.synthetic.per_class",
        "data.synthetic.coarse_sep",
        "data.synthetic.sub_sep",
        "data.synthetic.noise",
    ];
    let mut rules: Vec<(&str, bool, &str)> = vec![
        (
            "data.path",
            matches!(data, "digits" | "synthetic"),
            "data.name = digits and synthetic read no file",
        ),
        (
            "model.batch_norm",
            encoder != "mlp",
            "it applies to the mlp encoder (cnn and resnet blocks always have batch norm)",
        ),
        (
            "model.projector_batch_norm",
            !hidden_projector,
            "the projection head has no hidden layer (model.projector needs two widths or more)",
        ),
    ];
    for key in synthetic_keys {
        rules.push((
            key,
            data != "synthetic",
            "it applies to data.name = synthetic only",
        ));
    }
    for (key, dead, why) in rules {
        if dead && !config.is_default(key)? {
            let value = config.get(key)?;
            return Err(Error::invalid(
                "config",
                format!("{key} = {value} has no effect here: {why}"),
            ));
        }
    }
    let clip = config.f64("optim.clip_grad_norm")?;
    if !(clip >= 0.0 && clip.is_finite()) {
        return Err(Error::invalid(
            "config",
            format!("optim.clip_grad_norm = {clip} must be finite and >= 0 (0: no clipping)"),
        ));
    }
    Ok(())
}

/// Finds `name` or `name.gz` in `dir`.
fn idx_file(dir: &Path, name: &str) -> Result<std::path::PathBuf> {
    for candidate in [name.to_string(), format!("{name}.gz")] {
        let p = dir.join(candidate);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(Error::Io {
        path: dir.join(name).display().to_string(),
        message: "not found (nor with .gz)".into(),
    })
}

/// Where the items come from: `data.name` with the keys it reads, checked without opening a
/// file.
enum Source {
    Digits,
    Idx(PathBuf),
    Cifar10(PathBuf),
    /// A prefix: PREFIX_features.npy and PREFIX_labels.npy.
    Npy(String),
    Synthetic {
        generator: LatentSubclasses,
        per_class: usize,
    },
}

impl Source {
    fn from_config(config: &Config) -> Result<Source> {
        let path = config.str("data.path")?;
        Ok(match config.str("data.name")? {
            "digits" => Source::Digits,
            "idx" => Source::Idx(PathBuf::from(path)),
            "cifar10" => Source::Cifar10(PathBuf::from(path)),
            "npy" => Source::Npy(path.to_string()),
            "synthetic" => {
                let count = |key| config.positive(key);
                let generator = LatentSubclasses::new(SyntheticConfig {
                    coarse_classes: count("data.synthetic.coarse")?,
                    subclasses: count("data.synthetic.sub")?,
                    dim: count("data.synthetic.dim")?,
                    coarse_scale: config.f64("data.synthetic.coarse_sep")?,
                    subclass_scale: config.f64("data.synthetic.sub_sep")?,
                    noise: config.f64("data.synthetic.noise")?,
                    seed: config.u64("train.seed")?,
                })
                .map_err(|e| {
                    let keys = "data.synthetic.coarse_sep, .sub_sep and .noise";
                    Error::invalid("config", format!("{keys}: {e}"))
                })?;
                let per_class = count("data.synthetic.per_class")?;
                Source::Synthetic {
                    generator,
                    per_class,
                }
            }
            other => {
                return Err(Error::invalid(
                    "config",
                    format!(
                        "data.name '{other}' is not one of digits, idx, cifar10, synthetic, npy"
                    ),
                ));
            }
        })
    }

    /// Whether the items come without reading a file (shipped in the binary, or generated).
    fn in_memory(&self) -> bool {
        matches!(self, Source::Digits | Source::Synthetic { .. })
    }

    /// The (train, test) sets; `seed` draws the npy hold-out and the synthetic samples.
    fn load(&self, seed: u64) -> Result<(Dataset, Dataset)> {
        match self {
            Source::Digits => data::digits_train_test(),
            Source::Idx(dir) => {
                let train = data::load_idx(
                    idx_file(dir, "train-images-idx3-ubyte")?,
                    idx_file(dir, "train-labels-idx1-ubyte")?,
                )?;
                let test = data::load_idx(
                    idx_file(dir, "t10k-images-idx3-ubyte")?,
                    idx_file(dir, "t10k-labels-idx1-ubyte")?,
                )?;
                Ok((train, test))
            }
            Source::Cifar10(dir) => data::load_cifar10_dir(dir),
            Source::Npy(prefix) => {
                // 20% held out.
                let all = data::load_npy_dataset(
                    format!("{prefix}_features.npy"),
                    format!("{prefix}_labels.npy"),
                )?;
                all.split_random(0.2, seed)
            }
            Source::Synthetic {
                generator,
                per_class,
            } => Ok((
                generator.sample(*per_class, seed.wrapping_add(1))?,
                generator.sample(per_class.div_ceil(4), seed.wrapping_add(2))?,
            )),
        }
    }
}

/// `data.coarse`: `None` to train on the classes themselves.
fn coarsening(config: &Config) -> Result<Option<Coarsening>> {
    match config.str("data.coarse")? {
        "" => Ok(None),
        "halves" => Ok(Some(Coarsening::Halves)),
        "pairs" => Ok(Some(Coarsening::Pairs)),
        other => Err(Error::invalid(
            "config",
            format!("data.coarse '{other}' is not one of '', halves, pairs"),
        )),
    }
}

/// Loads the data set named by `data.name` and applies `data.coarse`.
pub fn load_splits(config: &Config) -> Result<Splits> {
    let (train, test) = Source::from_config(config)?.load(config.u64("train.seed")?)?;
    let Some(coarsening) = coarsening(config)? else {
        return Ok(Splits { train, test });
    };
    let map = coarsening.apply(&(0..train.num_classes()).collect::<Vec<_>>())?;
    Ok(Splits {
        train: train.coarsen(&map)?,
        test: test.coarsen(&map)?,
    })
}

/// The augmentation pipeline of `data.augment`.
pub fn augment(config: &Config) -> Result<Augment> {
    let text = config.str("data.augment")?;
    Augment::parse(text)
        .map_err(|e| Error::invalid("config", format!("data.augment = \"{text}\": {e}")))
}

/// What the loader takes from the training set's items: the augmentation, checked against
/// them; the views' size; and a batch size that fits in the set.
struct Fit {
    augment: Augment,
    view_size: Option<(usize, usize)>,
    batch_size: usize,
}

fn fit_data(config: &Config, train: &Dataset) -> Result<Fit> {
    let augment = augment(config)?;
    augment.check(train.item_shape())?;
    let view_size = view_size(config, train.item_shape())?;
    let batch_size = config.positive("train.batch_size")?;
    if batch_size > train.len() {
        return Err(Error::invalid(
            "config",
            format!(
                "train.batch_size {batch_size} exceeds the {} training items",
                train.len()
            ),
        ));
    }
    Ok(Fit {
        augment,
        view_size,
        batch_size,
    })
}

/// The training loader: `data.views` augmented views, shuffled (or class-balanced) batches of
/// `train.batch_size`, the last incomplete batch dropped.
pub fn train_loader(config: &Config, train: &Dataset) -> Result<Loader> {
    let fit = fit_data(config, train)?;
    Loader::new(
        train.clone(),
        LoaderConfig {
            batch_size: fit.batch_size,
            views: config.positive("data.views")?,
            sampler: if config.bool("data.balanced")? {
                Sampler::ClassBalanced
            } else {
                Sampler::Shuffle
            },
            drop_last: true,
            seed: config.u64("train.seed")?,
            augment: fit.augment,
            view_size: fit.view_size,
        },
    )
}

/// `data.view_size` as (height, width); `None` for `[]`.
fn view_sides(config: &Config) -> Result<Option<(usize, usize)>> {
    let sides = config.usize_list("data.view_size")?;
    match sides[..] {
        [] => Ok(None),
        [s] => Ok(Some((s, s))),
        [h, w] => Ok(Some((h, w))),
        _ => {
            let msg = format!("data.view_size takes [], [S] or [H, W], got {sides:?}");
            Err(Error::invalid("config", msg))
        }
    }
}

/// `data.view_size` for items of `item_shape`: `None` for `[]` or the items' own size.
/// Views of another size need an encoder that pools globally (cnn, resnet), since the model
/// embeds whole images at evaluation.
pub fn view_size(config: &Config, item_shape: &[usize]) -> Result<Option<(usize, usize)>> {
    let Some((h, w)) = view_sides(config)? else {
        return Ok(None);
    };
    let sides = config.usize_list("data.view_size")?;
    let rank = item_shape.len();
    if !(2..=3).contains(&rank) {
        let msg = format!("data.view_size {sides:?} needs image items, got shape {item_shape:?}");
        return Err(Error::invalid("config", msg));
    }
    if item_shape[rank - 2..] == [h, w] {
        return Ok(None);
    }
    if model_keys(config)?.encoder == Encoder::Mlp {
        let msg = format!(
            "data.view_size {sides:?} makes views of another size than the items {item_shape:?}, \
             which the mlp encoder cannot take (only cnn and resnet pool globally)"
        );
        return Err(Error::invalid("config", msg));
    }
    Ok(Some((h, w)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoder {
    Mlp,
    Cnn,
    Resnet,
}

/// The `model.*` keys, checked without the items: all that building the model needs besides
/// their shape.
struct ModelKeys {
    encoder: Encoder,
    widths: Vec<usize>,
    projector: Vec<usize>,
}

fn model_keys(config: &Config) -> Result<ModelKeys> {
    let encoder = match config.str("model.encoder")? {
        "mlp" => Encoder::Mlp,
        "cnn" => Encoder::Cnn,
        "resnet" => Encoder::Resnet,
        other => {
            return Err(Error::invalid(
                "config",
                format!("model.encoder '{other}' is not one of mlp, cnn, resnet"),
            ));
        }
    };
    let widths = config.usize_list("model.widths")?;
    if widths.is_empty() {
        let msg = "model.widths = [] leaves the encoder without a layer; give at least one width";
        return Err(Error::invalid("config", msg));
    }
    let projector = config.usize_list("model.projector")?;
    if config.bool("model.projector_output_norm")? && projector.is_empty() {
        let msg = "model.projector_output_norm needs a projection head (model.projector is [])";
        return Err(Error::invalid("config", msg));
    }
    Ok(ModelKeys {
        encoder,
        widths,
        projector,
    })
}

/// The encoder + projection head of `model.*` for items of `item_shape`, initialised from
/// `train.seed`. Returns the model and the encoder's output width.
pub fn build_model(config: &Config, item_shape: &[usize]) -> Result<(EncoderHead<f32>, usize)> {
    let ModelKeys {
        encoder: kind,
        widths,
        projector,
    } = model_keys(config)?;
    let mut rng = StdRng::seed_from_u64(config.u64("train.seed")?);
    let (encoder, out): (Sequential<f32>, usize) = match kind {
        Encoder::Mlp => {
            let input: usize = item_shape.iter().product();
            let mut all = vec![input];
            all.extend(&widths);
            let mlp = Mlp::new(
                &all,
                Activation::Relu,
                config.bool("model.batch_norm")?,
                &mut rng,
            )?;
            // The MLP ends in a linear layer; the representation is taken after a ReLU, as in
            // the reference setup (encoder 64→256→256 with ReLU after each layer).
            let enc = Sequential::new()
                .with(Flatten)
                .with(mlp)
                .with(Activation::Relu);
            (enc, *all.last().unwrap_or(&input))
        }
        Encoder::Cnn | Encoder::Resnet => {
            if item_shape.len() != 3 {
                let name = if kind == Encoder::Cnn {
                    "cnn"
                } else {
                    "resnet"
                };
                return Err(Error::invalid(
                    "config",
                    format!("model.encoder {name} needs (C, H, W) items, got {item_shape:?}"),
                ));
            }
            let enc = if kind == Encoder::Cnn {
                ConvEncoder::simple(&widths, item_shape[0], &mut rng)?
            } else {
                ConvEncoder::resnet(item_shape[0], &widths, 2, &mut rng)?
            };
            (enc, *widths.last().unwrap_or(&item_shape[0]))
        }
    };
    let mut head: Sequential<f32> = match projector.len() {
        0 => Sequential::new().with(Identity),
        1 => ProjectionHead::linear(out, projector[0], &mut rng)?,
        _ => {
            let mut all = vec![out];
            all.extend(&projector);
            // SimCLR's non-linear head, Linear–[BatchNorm]–ReLU–…–Linear.
            let batch_norm = config.bool("model.projector_batch_norm")?;
            Mlp::new(&all, Activation::Relu, batch_norm, &mut rng)?
        }
    };
    if let (true, Some(&width)) = (
        config.bool("model.projector_output_norm")?,
        projector.last(),
    ) {
        // SimCLR's head ends in batch norm too: standardising every output coordinate over the
        // batch keeps all of them in use.
        head.push(BatchNorm::new_1d(width)?);
    }
    Ok((EncoderHead::new(encoder, head), out))
}

/// The loss of `loss.name` with the comma-separated `loss.params`, tried once on a batch of
/// the configured shape (`try_loss`).
pub fn build_loss(config: &Config) -> Result<Loss> {
    let (name, params) = (config.str("loss.name")?, config.str("loss.params")?);
    let mut loss = Loss::by_name(name)
        .map_err(|e| Error::invalid("config", format!("loss.name = \"{name}\": {e}")))?;
    let bad_params =
        |e: String| Error::invalid("config", format!("loss.params = \"{params}\": {e}"));
    for assignment in params.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| bad_params(format!("expected key=value, got '{assignment}'")))?;
        loss.set(key.trim(), value.trim())
            .map_err(|e| bad_params(e.to_string()))?;
    }
    try_loss(config, &loss)?;
    Ok(loss)
}

/// `loss` on a training batch's `(B, V, d)` features, given the labels when it reads them (as
/// training does; the label-free losses must not see them).
pub fn compute_loss(loss: &Loss, features: &Tensor<f32>, labels: &[i64]) -> Result<Tensor<f32>> {
    let inputs = LossInputs::new(features);
    let inputs = if loss.reads().0 {
        inputs.with_labels(labels)
    } else {
        inputs
    };
    loss.compute(&inputs)
}

/// Samples in the batch [`try_loss`] runs (fewer when `train.batch_size` is smaller).
const TRY_SAMPLES: usize = 8;

/// Runs `loss` on a small batch shaped as training feeds it: `min(train.batch_size, 8)`
/// samples of `data.views` views, with labels when it reads them. The losses check view counts
/// (NT-Xent needs two, triplet three), batch sizes, parameter ranges and their inputs only
/// when computed; this makes those failures a configuration error naming the keys instead of
/// one at the first step. The losses themselves decide, so the rules live in one place.
fn try_loss(config: &Config, loss: &Loss) -> Result<()> {
    let views = config.positive("data.views")?;
    let batch = config.positive("train.batch_size")?;
    let (n, dim) = (batch.min(TRY_SAMPLES), 4);
    // Distinct, finite rows.
    let values: Vec<f64> = (0..n * views * dim)
        .map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0)
        .collect();
    let features = Tensor::<f32>::from_f64s(&values, [n, views, dim])?;
    // Two samples per label from 4 samples on; under 4, alternating labels, so that a batch of
    // two still holds a negative (as real batches of two usually do).
    let labels: Vec<i64> = (0..n as i64)
        .map(|i| if n >= 4 { i / 2 } else { i % 2 })
        .collect();
    compute_loss(loss, &features, &labels).map_err(|e| {
        Error::invalid(
            "config",
            format!(
                "loss.name = \"{}\", loss.params = \"{}\", data.views = {views}, \
                 train.batch_size = {batch}: {e} (checked on a batch of {n} samples × {views} \
                 views before training)",
                loss.name(),
                config.str("loss.params").unwrap_or_default()
            ),
        )
    })?;

    Ok(())
}

/// The gradients of no parameter: a step with them only checks an optimiser's settings.
struct NoGradients;

impl GradientSource<f32> for NoGradients {
    fn gradient(&self, _param: &Tensor<f32>) -> Option<&Tensor<f32>> {
        None
    }
}

/// The optimiser of `optim.*`. Momentum and Nesterov momentum exist in SGD and LARS only: set
/// to anything but their defaults for Adam or AdamW they are an error, not silently dropped.
/// A step over no parameters then checks the settings (ranges, Nesterov without momentum),
/// which the optimisers otherwise check only at the first training step.
pub fn build_optimizer(config: &Config) -> Result<Box<dyn Optimizer<f32>>> {
    let name = config.str("optim.name")?;
    let lr = config.f64("optim.lr")?;
    let wd = config.f64("optim.weight_decay")?;
    let momentum = config.f64("optim.momentum")?;
    let nesterov = config.bool("optim.nesterov")?;
    let mut optimizer: Box<dyn Optimizer<f32>> = match name {
        "sgd" => Box::new(
            Sgd::new(lr)
                .with_momentum(momentum)
                .with_nesterov(nesterov)
                .with_weight_decay(wd),
        ),
        "lars" => Box::new(
            Lars::new(lr)
                .with_momentum(momentum)
                .with_nesterov(nesterov)
                .with_weight_decay(wd),
        ),
        "adam" | "adamw" => {
            for key in ["optim.momentum", "optim.nesterov"] {
                if !config.is_default(key)? {
                    return Err(Error::invalid(
                        "config",
                        format!(
                            "{key} = {} has no effect with optim.name = \"{name}\": it applies \
                             to sgd and lars only",
                            config.get(key)?
                        ),
                    ));
                }
            }
            if name == "adam" {
                Box::new(Adam::new(lr).with_weight_decay(wd))
            } else {
                Box::new(Adam::adamw(lr).with_weight_decay(wd))
            }
        }
        other => {
            return Err(Error::invalid(
                "config",
                format!("optim.name '{other}' is not one of sgd, adam, adamw, lars"),
            ));
        }
    };
    optimizer.step(&mut [], &NoGradients).map_err(|e| {
        Error::invalid(
            "config",
            format!(
                "optim.name = \"{name}\" with optim.lr = {lr}, optim.weight_decay = {wd}, \
                 optim.momentum = {momentum}, optim.nesterov = {nesterov}: {e}"
            ),
        )
    })?;
    Ok(optimizer)
}

/// The learning rate per step: constant, or linear warm-up then cosine decay. A warm-up longer
/// than the run (which would never finish), or a `schedule.final_lr` without `schedule.cosine`
/// (which would be ignored), is an error; a run of 0 epochs takes no step, so any schedule.
pub fn build_schedule(config: &Config, steps_per_epoch: usize) -> Result<Box<dyn LrSchedule>> {
    let lr = config.f64("optim.lr")?;
    // 0 epochs is allowed: the run evaluates the initialised model (a baseline).
    let epochs = config.usize("train.epochs")?;
    let mut warmup_epochs = config.usize("schedule.warmup_epochs")?;
    if epochs == 0 {
        warmup_epochs = 0;
    } else if warmup_epochs > epochs {
        return Err(Error::invalid(
            "config",
            format!(
                "schedule.warmup_epochs = {warmup_epochs} is longer than train.epochs = {epochs}"
            ),
        ));
    }
    let cosine = config.bool("schedule.cosine")?;
    if !cosine && !config.is_default("schedule.final_lr")? {
        return Err(Error::invalid(
            "config",
            format!(
                "schedule.final_lr = {} has no effect without schedule.cosine = true",
                config.f64("schedule.final_lr")?
            ),
        ));
    }
    let (total, warmup) = (epochs * steps_per_epoch, warmup_epochs * steps_per_epoch);
    if !cosine && warmup == 0 {
        return Ok(Box::new(Constant(lr)));
    }
    let final_lr = if cosine {
        config.f64("schedule.final_lr")?
    } else {
        lr
    };
    let schedule = LinearWarmupCosine::new(lr, warmup, total, final_lr).map_err(|e| {
        Error::invalid(
            "config",
            format!("optim.lr = {lr} with schedule.final_lr = {final_lr}: {e}"),
        )
    })?;
    Ok(Box::new(schedule))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Module;

    fn config(assignments: &[&str]) -> Config {
        let mut c = Config::default();
        for a in assignments {
            c.set_assignment(a).unwrap();
        }
        c
    }

    #[test]
    fn view_size_takes_one_or_two_sides_and_needs_a_pooling_encoder() {
        let cnn = |size: &str| {
            view_size(
                &config(&["model.encoder=\"cnn\"", &format!("data.view_size={size}")]),
                &[1, 28, 28],
            )
        };
        assert_eq!(cnn("[]").unwrap(), None);
        assert_eq!(cnn("[28]").unwrap(), None, "the items' own size");
        assert_eq!(cnn("[20]").unwrap(), Some((20, 20)));
        assert_eq!(cnn("[20, 24]").unwrap(), Some((20, 24)));
        let e = cnn("[1, 2, 3]").unwrap_err().to_string();
        assert!(e.contains("[1, 2, 3]"), "{e}");
        let mlp = config(&["data.view_size=[20]"]);
        let e = view_size(&mlp, &[1, 28, 28]).unwrap_err().to_string();
        assert!(e.contains("mlp") && e.contains("[1, 28, 28]"), "{e}");
        assert!(view_size(&mlp, &[64]).is_err(), "vector items");
        assert_eq!(view_size(&config(&[]), &[64]).unwrap(), None);
    }

    #[test]
    fn the_projector_takes_batch_norm_between_its_layers_on_request() {
        let shape = [64];
        let buffers = |extra: &[&str]| {
            let mut keys = vec!["model.widths=[32]", "model.projector=[16, 8]"];
            keys.extend(extra);
            let (model, out) = build_model(&config(&keys), &shape).unwrap();
            assert_eq!(out, 32);
            let names: Vec<String> = model.named_buffers().into_iter().map(|(n, _)| n).collect();
            names
        };
        assert!(buffers(&[]).iter().all(|n| !n.starts_with("head.")));
        let with_bn = buffers(&["model.projector_batch_norm=true"]);
        assert!(
            with_bn.contains(&"head.layers.1.running_mean".to_string()),
            "{with_bn:?}"
        );
        // Linear(0)–ReLU(1)–Linear(2)–BatchNorm(3); with hidden batch norm the output's is 4.
        let output_bn = buffers(&["model.projector_output_norm=true"]);
        assert_eq!(
            output_bn
                .iter()
                .filter(|n| n.starts_with("head."))
                .collect::<Vec<_>>(),
            [
                "head.layers.3.running_mean",
                "head.layers.3.running_var",
                "head.layers.3.num_batches_tracked"
            ],
            "{output_bn:?}"
        );
        let both = buffers(&[
            "model.projector_batch_norm=true",
            "model.projector_output_norm=true",
        ]);
        assert!(
            both.contains(&"head.layers.4.running_var".to_string()),
            "{both:?}"
        );
        let e = build_model(
            &config(&["model.projector=[]", "model.projector_output_norm=true"]),
            &shape,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs a projection head"), "{e}");
    }
}
