//! Builds what a run needs from its [`Config`]: the train and test sets, the model, the loss, the
//! optimiser and the learning-rate schedule. `contrastive eval` and `embed` rebuild the model
//! from the configuration saved in a checkpoint with the same functions.

use super::config::Config;
use crate::data::{
    self, Augment, Dataset, LatentSubclasses, Loader, LoaderConfig, Sampler, SyntheticConfig,
};
use crate::error::{Error, Result};
use crate::eval::Coarsening;
use crate::losses::Loss;
use crate::nn::{
    Activation, BatchNorm, ConvEncoder, EncoderHead, Flatten, Identity, Mlp, ProjectionHead,
    Sequential,
};
use crate::optim::{Adam, Constant, Lars, LinearWarmupCosine, LrSchedule, Optimizer, Sgd};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;

/// The train and test sets of a run. When the run trains on coarse labels, `train` and `test`
/// carry them as labels and the original classes as fine labels.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Dataset,
    pub test: Dataset,
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

/// Loads the data set named by `data.name` and applies `data.coarse`.
pub fn load_splits(config: &Config) -> Result<Splits> {
    let path = config.str("data.path")?;
    let (train, test) = match config.str("data.name")? {
        "digits" => data::digits_train_test()?,
        "idx" => {
            let dir = Path::new(path);
            let train = data::load_idx(
                idx_file(dir, "train-images-idx3-ubyte")?,
                idx_file(dir, "train-labels-idx1-ubyte")?,
            )?;
            let test = data::load_idx(
                idx_file(dir, "t10k-images-idx3-ubyte")?,
                idx_file(dir, "t10k-labels-idx1-ubyte")?,
            )?;
            (train, test)
        }
        "cifar10" => data::load_cifar10_dir(path)?,
        "npy" => {
            // `path` is a prefix: PREFIX_features.npy and PREFIX_labels.npy; 20% held out.
            let all = data::load_npy_dataset(
                format!("{path}_features.npy"),
                format!("{path}_labels.npy"),
            )?;
            all.split_random(0.2, config.u64("train.seed")?)?
        }
        "synthetic" => {
            let generator = LatentSubclasses::new(SyntheticConfig {
                coarse_classes: config.usize("data.synthetic.coarse")?,
                subclasses: config.usize("data.synthetic.sub")?,
                dim: config.usize("data.synthetic.dim")?,
                coarse_scale: config.f64("data.synthetic.coarse_sep")?,
                subclass_scale: config.f64("data.synthetic.sub_sep")?,
                noise: config.f64("data.synthetic.noise")?,
                seed: config.u64("train.seed")?,
            })?;
            let per = config.usize("data.synthetic.per_class")?;
            let seed = config.u64("train.seed")?;
            (
                generator.sample(per, seed.wrapping_add(1))?,
                generator.sample(per.div_ceil(4), seed.wrapping_add(2))?,
            )
        }
        other => {
            return Err(Error::invalid(
                "config",
                format!("data.name '{other}' is not one of digits, idx, cifar10, synthetic, npy"),
            ));
        }
    };
    let coarse = config.str("data.coarse")?;
    if coarse.is_empty() {
        return Ok(Splits { train, test });
    }
    let coarsening = match coarse {
        "halves" => Coarsening::Halves,
        "pairs" => Coarsening::Pairs,
        other => {
            return Err(Error::invalid(
                "config",
                format!("data.coarse '{other}' is not one of '', halves, pairs"),
            ));
        }
    };
    let map = coarsening.apply(&(0..train.num_classes()).collect::<Vec<_>>())?;
    Ok(Splits {
        train: train.coarsen(&map)?,
        test: test.coarsen(&map)?,
    })
}

/// The training loader: `data.views` augmented views, shuffled (or class-balanced) batches of
/// `train.batch_size`, the last incomplete batch dropped.
pub fn train_loader(config: &Config, train: &Dataset) -> Result<Loader> {
    let augment: Augment = Augment::parse(config.str("data.augment")?)?;
    augment.check(train.item_shape())?;
    let view_size = view_size(config, train.item_shape())?;
    let batch_size = config.usize("train.batch_size")?;
    if batch_size > train.len() {
        return Err(Error::invalid(
            "config",
            format!(
                "train.batch_size {batch_size} exceeds the {} training items",
                train.len()
            ),
        ));
    }
    Loader::new(
        train.clone(),
        LoaderConfig {
            batch_size,
            views: config.usize("data.views")?,
            sampler: if config.bool("data.balanced")? {
                Sampler::ClassBalanced
            } else {
                Sampler::Shuffle
            },
            drop_last: true,
            seed: config.u64("train.seed")?,
            augment,
            view_size,
        },
    )
}

/// `data.view_size` for items of `item_shape`: `None` for `[]` or the items' own size.
/// Views of another size need an encoder that pools globally (cnn, resnet), since the model
/// embeds whole images at evaluation.
pub fn view_size(config: &Config, item_shape: &[usize]) -> Result<Option<(usize, usize)>> {
    let sides = config.usize_list("data.view_size")?;
    let (h, w) = match sides[..] {
        [] => return Ok(None),
        [s] => (s, s),
        [h, w] => (h, w),
        _ => {
            let msg = format!("data.view_size takes [], [S] or [H, W], got {sides:?}");
            return Err(Error::invalid("config", msg));
        }
    };
    let rank = item_shape.len();
    if !(2..=3).contains(&rank) {
        let msg = format!("data.view_size {sides:?} needs image items, got shape {item_shape:?}");
        return Err(Error::invalid("config", msg));
    }
    if item_shape[rank - 2..] == [h, w] {
        return Ok(None);
    }
    let encoder = config.str("model.encoder")?;
    if encoder == "mlp" {
        let msg = format!(
            "data.view_size {sides:?} makes views of another size than the items {item_shape:?}, \
             which the mlp encoder cannot take (only cnn and resnet pool globally)"
        );
        return Err(Error::invalid("config", msg));
    }
    Ok(Some((h, w)))
}

/// The encoder + projection head of `model.*` for items of `item_shape`, initialised from
/// `train.seed`. Returns the model and the encoder's output width.
pub fn build_model(config: &Config, item_shape: &[usize]) -> Result<(EncoderHead<f32>, usize)> {
    let mut rng = StdRng::seed_from_u64(config.u64("train.seed")?);
    let widths = config.usize_list("model.widths")?;
    let (encoder, out): (Sequential<f32>, usize) = match config.str("model.encoder")? {
        "mlp" => {
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
        kind @ ("cnn" | "resnet") => {
            if item_shape.len() != 3 {
                return Err(Error::invalid(
                    "config",
                    format!("model.encoder {kind} needs (C, H, W) items, got {item_shape:?}"),
                ));
            }
            let enc = if kind == "cnn" {
                ConvEncoder::simple(&widths, item_shape[0], &mut rng)?
            } else {
                ConvEncoder::resnet(item_shape[0], &widths, 2, &mut rng)?
            };
            (enc, *widths.last().unwrap_or(&item_shape[0]))
        }
        other => {
            return Err(Error::invalid(
                "config",
                format!("model.encoder '{other}' is not one of mlp, cnn, resnet"),
            ));
        }
    };
    if widths.is_empty() {
        return Err(Error::invalid("config", "model.widths is empty"));
    }
    let projector = config.usize_list("model.projector")?;
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
    if config.bool("model.projector_output_norm")? {
        let Some(&width) = projector.last() else {
            let msg = "model.projector_output_norm needs a projection head (model.projector is [])";
            return Err(Error::invalid("config", msg));
        };
        // SimCLR's head ends in batch norm too: standardising every output coordinate over the
        // batch keeps all of them in use.
        head.push(BatchNorm::new_1d(width)?);
    }
    Ok((EncoderHead::new(encoder, head), out))
}

/// The loss of `loss.name` with the comma-separated `loss.params`.
pub fn build_loss(config: &Config) -> Result<Loss> {
    let params = config.str("loss.params")?;
    let mut loss = Loss::by_name(config.str("loss.name")?)?;
    for assignment in params.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            Error::invalid(
                "config",
                format!("loss.params: expected key=value, got '{assignment}'"),
            )
        })?;
        loss.set(key.trim(), value.trim())?;
    }
    Ok(loss)
}

/// The optimiser of `optim.*`.
pub fn build_optimizer(config: &Config) -> Result<Box<dyn Optimizer<f32>>> {
    let lr = config.f64("optim.lr")?;
    let wd = config.f64("optim.weight_decay")?;
    let momentum = config.f64("optim.momentum")?;
    Ok(match config.str("optim.name")? {
        "sgd" => Box::new(
            Sgd::new(lr)
                .with_momentum(momentum)
                .with_nesterov(config.bool("optim.nesterov")?)
                .with_weight_decay(wd),
        ),
        "adam" => Box::new(Adam::new(lr).with_weight_decay(wd)),
        "adamw" => Box::new(Adam::adamw(lr).with_weight_decay(wd)),
        "lars" => Box::new(Lars::new(lr).with_momentum(momentum).with_weight_decay(wd)),
        other => {
            return Err(Error::invalid(
                "config",
                format!("optim.name '{other}' is not one of sgd, adam, adamw, lars"),
            ));
        }
    })
}

/// The learning rate per step: constant, or linear warm-up then cosine decay.
pub fn build_schedule(config: &Config, steps_per_epoch: usize) -> Result<Box<dyn LrSchedule>> {
    let lr = config.f64("optim.lr")?;
    let total = config.usize("train.epochs")? * steps_per_epoch;
    let warmup = config.usize("schedule.warmup_epochs")? * steps_per_epoch;
    if !config.bool("schedule.cosine")? && warmup == 0 {
        return Ok(Box::new(Constant(lr)));
    }
    let final_lr = if config.bool("schedule.cosine")? {
        config.f64("schedule.final_lr")?
    } else {
        lr
    };
    Ok(Box::new(LinearWarmupCosine::new(
        lr,
        warmup.min(total),
        total,
        final_lr,
    )?))
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
