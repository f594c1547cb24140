//! [`Augment`]: a pipeline of augmentation [`Step`]s applied in order to each view of an item,
//! written as a short string so that a config file can name it:
//! `"shift:1,pixel_drop:0.1,noise:0.1"` is the digits SimCLR recipe (a random integer shift of
//! −1, 0 or +1 pixel in each direction with zero fill, then each pixel zeroed with probability
//! 0.1, then Gaussian noise σ = 0.1 with no clipping).
//!
//! Grammar: steps separated by commas; a step is a name, optionally followed by `:`-separated
//! numbers; omitted trailing numbers take the defaults below (torchvision's, where it has the
//! transform). `""` or `"none"` is the identity. Printing a pipeline gives every number, and
//! parsing that text gives the same pipeline back.
//!
//! | step | numbers (defaults) | effect |
//! | --- | --- | --- |
//! | `crop` | scale lo, hi (0.08, 1); ratio lo, hi (3/4, 4/3) | random resized crop, bilinear |
//! | `flip` | p (0.5) | horizontal flip with probability p |
//! | `shift` | max pixels (1) | random integer translation, zero fill |
//! | `noise` | σ (0.1) | add N(0, σ²), no clipping |
//! | `erase` | p (0.5); scale lo, hi (0.02, 0.33); ratio lo, hi (0.3, 3.3) | random erasing to 0 |
//! | `jitter` | brightness (0.4), contrast (0.4) | brightness/contrast jitter |
//! | `pixel_drop` (alias `mask`) | p (0.1) | zero each value with probability p |
//!
//! `noise` and `pixel_drop` (feature masking) apply to any item; the others need an image item
//! `(C, H, W)` (or `(H, W)`).
//!
//! Views are the item's size unless [`Augment::apply_sized`] asks for another: then `crop`
//! resamples its box straight to the view size, as torchvision's `RandomResizedCrop(size)`
//! does (and a pipeline without `crop` resizes the whole image first). Training on views
//! smaller than the images a model is evaluated on costs less per step and, with a crop,
//! keeps objects at the apparent size the test images show them (Touvron et al., 2019,
//! "Fixing the train-test resolution discrepancy").

use super::transforms::{self as tf, ImageDims};
use crate::error::{Error, Result};
use rand::{Rng, RngExt};
use std::fmt;
use std::str::FromStr;

/// One augmentation; see the module documentation for each step's meaning.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Crop {
        scale: (f32, f32),
        ratio: (f32, f32),
    },
    Flip(f32),
    Shift(usize),
    Noise(f32),
    Erase {
        p: f32,
        scale: (f32, f32),
        ratio: (f32, f32),
    },
    Jitter {
        brightness: f32,
        contrast: f32,
    },
    PixelDrop(f32),
}

impl Step {
    /// Whether the step needs an image item.
    pub fn is_spatial(&self) -> bool {
        !matches!(self, Step::Noise(_) | Step::PixelDrop(_))
    }

    /// Applies the step to `img` of `dims` in place; the crop resamples its box back to `dims`.
    fn apply(&self, img: &mut [f32], dims: ImageDims, rng: &mut impl Rng) {
        match *self {
            Step::Crop { scale, ratio } => {
                let view = tf::random_resized_crop(img, dims, (dims.h, dims.w), scale, ratio, rng);
                img.copy_from_slice(&view);
            }
            Step::Flip(p) => {
                if rng.random::<f32>() < p {
                    tf::hflip(img, dims);
                }
            }
            Step::Shift(m) => tf::random_shift(img, dims, m, rng),
            Step::Noise(sigma) => tf::gaussian_noise(img, sigma, rng),
            Step::Erase { p, scale, ratio } => tf::random_erase(img, dims, p, scale, ratio, rng),
            Step::Jitter {
                brightness,
                contrast,
            } => {
                // Per image, so each channel's mean is the image's mean: as for grayscale input.
                tf::jitter(img, brightness, contrast, rng);
            }
            Step::PixelDrop(p) => tf::drop_values(img, p, rng),
        }
    }

    /// Parses one step, e.g. `shift:1` or `crop:0.2:1`.
    fn parse(text: &str) -> Result<Step> {
        let mut parts = text.split(':').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let nums: Vec<f32> = parts
            .map(|p| p.parse::<f32>().ok().filter(|v| v.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(text, "parameters must be finite numbers"))?;
        let arg = |i: usize, default: f32| nums.get(i).copied().unwrap_or(default);
        let max_args = match name {
            "crop" => 4,
            "erase" => 5,
            "jitter" => 2,
            _ => 1,
        };
        if nums.len() > max_args {
            return Err(bad(
                text,
                &format!("{name} takes at most {max_args} numbers"),
            ));
        }
        let step = match name {
            "crop" => Step::Crop {
                scale: (arg(0, 0.08), arg(1, 1.0)),
                ratio: (arg(2, 3.0 / 4.0), arg(3, 4.0 / 3.0)),
            },
            "flip" => Step::Flip(arg(0, 0.5)),
            "shift" => {
                let m = arg(0, 1.0);
                if m < 0.0 || m.fract() != 0.0 {
                    return Err(bad(text, "the shift must be a non-negative integer"));
                }
                Step::Shift(m as usize)
            }
            "noise" => Step::Noise(arg(0, 0.1)),
            "erase" => Step::Erase {
                p: arg(0, 0.5),
                scale: (arg(1, 0.02), arg(2, 0.33)),
                ratio: (arg(3, 0.3), arg(4, 3.3)),
            },
            "jitter" => Step::Jitter {
                brightness: arg(0, 0.4),
                contrast: arg(1, 0.4),
            },
            "pixel_drop" | "mask" => Step::PixelDrop(arg(0, 0.1)),
            _ => {
                let known = "crop, flip, shift, noise, erase, jitter, pixel_drop, mask";
                return Err(bad(text, &format!("unknown step (known: {known})")));
            }
        };
        step.validate().map_err(|m| bad(text, &m))?;
        Ok(step)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let prob = |p: f32| (0.0..=1.0).contains(&p);
        let scale_ok = |(lo, hi): (f32, f32)| 0.0 < lo && lo <= hi && hi <= 1.0;
        let ratio_ok = |(lo, hi): (f32, f32)| 0.0 < lo && lo <= hi;
        let ok = match *self {
            Step::Crop { scale, ratio } => scale_ok(scale) && ratio_ok(ratio),
            Step::Flip(p) | Step::PixelDrop(p) => prob(p),
            Step::Shift(_) => true,
            Step::Noise(s) => s >= 0.0,
            Step::Erase { p, scale, ratio } => prob(p) && scale_ok(scale) && ratio_ok(ratio),
            Step::Jitter {
                brightness,
                contrast,
            } => brightness >= 0.0 && contrast >= 0.0,
        };
        let rule = "probabilities in [0, 1], scales in (0, 1] with lo ≤ hi, ratios positive with \
                    lo ≤ hi, amounts non-negative";
        if ok {
            Ok(())
        } else {
            Err(format!("out of range ({rule})"))
        }
    }
}

fn bad(step: &str, message: &str) -> Error {
    Error::invalid("Augment::parse", format!("step {step:?}: {message}"))
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Crop { scale, ratio } => {
                write!(f, "crop:{}:{}:{}:{}", scale.0, scale.1, ratio.0, ratio.1)
            }
            Step::Flip(p) => write!(f, "flip:{p}"),
            Step::Shift(m) => write!(f, "shift:{m}"),
            Step::Noise(s) => write!(f, "noise:{s}"),
            Step::Erase { p, scale, ratio } => write!(
                f,
                "erase:{p}:{}:{}:{}:{}",
                scale.0, scale.1, ratio.0, ratio.1
            ),
            Step::Jitter {
                brightness,
                contrast,
            } => write!(f, "jitter:{brightness}:{contrast}"),
            Step::PixelDrop(p) => write!(f, "pixel_drop:{p}"),
        }
    }
}

/// An ordered list of augmentation steps; the empty list is the identity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Augment {
    pub steps: Vec<Step>,
}

impl Augment {
    pub fn new(steps: Vec<Step>) -> Self {
        Augment { steps }
    }

    /// The digits SimCLR recipe: `shift:1,pixel_drop:0.1,noise:0.1`.
    pub fn digits_simclr() -> Self {
        Augment::new(vec![Step::Shift(1), Step::PixelDrop(0.1), Step::Noise(0.1)])
    }

    /// Parses the text form (see the module documentation).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() || text == "none" {
            return Ok(Augment::default());
        }
        let steps = text
            .split(',')
            .map(|s| Step::parse(s.trim()))
            .collect::<Result<_>>()?;
        Ok(Augment { steps })
    }

    pub fn is_identity(&self) -> bool {
        self.steps.is_empty()
    }

    /// Checks that every step applies to items of `item_shape`.
    pub fn check(&self, item_shape: &[usize]) -> Result<()> {
        if self.steps.iter().any(Step::is_spatial) {
            image_dims(item_shape)?;
        }
        Ok(())
    }

    /// Augments one item in place; the view keeps the item's size.
    pub fn apply(&self, item: &mut [f32], item_shape: &[usize], rng: &mut impl Rng) -> Result<()> {
        let dims = self.dims_for(item_shape)?;
        if item.len() != dims.numel() {
            let msg = format!("item of {} values for shape {item_shape:?}", item.len());
            return Err(Error::invalid("Augment::apply", msg));
        }
        self.steps.iter().for_each(|s| s.apply(item, dims, rng));
        Ok(())
    }

    /// Augments one image item into a view of `view_size` = (height, width), which may differ
    /// from the item's: the crop resamples its box straight to that size (one interpolation);
    /// a pipeline without a crop first resizes the whole image bilinearly. The steps after the
    /// resampling work on the view's size. Returns the `(C, height, width)` view.
    pub fn apply_sized(
        &self,
        item: &[f32],
        item_shape: &[usize],
        view_size: (usize, usize),
        rng: &mut impl Rng,
    ) -> Result<Vec<f32>> {
        const OP: &str = "Augment::apply_sized";
        let dims = image_dims(item_shape)?;
        if item.len() != dims.numel() || view_size.0 == 0 || view_size.1 == 0 {
            let msg = format!(
                "item of {} values for shape {item_shape:?}, view size {view_size:?} (both sides ≥ 1)",
                item.len()
            );
            return Err(Error::invalid(OP, msg));
        }
        Ok(self.run(item.to_vec(), dims, view_size, rng))
    }

    /// Augments each item of a batch `(N, item...)` in place, in order, with one generator.
    pub fn apply_batch(
        &self,
        batch: &mut [f32],
        item_shape: &[usize],
        rng: &mut impl Rng,
    ) -> Result<()> {
        let dims = self.dims_for(item_shape)?;
        if dims.numel() == 0 || !batch.len().is_multiple_of(dims.numel()) {
            let msg = format!(
                "{} values are not whole items of shape {item_shape:?}",
                batch.len()
            );
            return Err(Error::invalid("Augment::apply_batch", msg));
        }
        for item in batch.chunks_mut(dims.numel()) {
            self.steps.iter().for_each(|s| s.apply(item, dims, rng));
        }
        Ok(())
    }

    /// The pipeline on one checked image of `dims`, producing a view of `view` = (height,
    /// width): the crop resamples straight to `view`, the other steps keep the size.
    fn run(
        &self,
        mut img: Vec<f32>,
        mut dims: ImageDims,
        view: (usize, usize),
        rng: &mut impl Rng,
    ) -> Vec<f32> {
        let crops = self.steps.iter().any(|s| matches!(s, Step::Crop { .. }));
        if !crops && (dims.h, dims.w) != view {
            img = tf::crop_resize(&img, dims, tf::Region::all(dims), view);
            (dims.h, dims.w) = view;
        }
        for step in &self.steps {
            match *step {
                Step::Crop { scale, ratio } => {
                    img = tf::random_resized_crop(&img, dims, view, scale, ratio, rng);
                    (dims.h, dims.w) = view;
                }
                _ => step.apply(&mut img, dims, rng),
            }
        }
        img
    }

    /// Image dims for spatial pipelines; a vector item is one row of width `D` otherwise.
    fn dims_for(&self, item_shape: &[usize]) -> Result<ImageDims> {
        self.check(item_shape)?;
        match image_dims(item_shape) {
            Ok(dims) => Ok(dims),
            Err(_) => Ok(ImageDims {
                c: 1,
                h: 1,
                w: item_shape.iter().product(),
            }),
        }
    }
}

/// `(C, H, W)` from an image item shape `[C, H, W]` or `[H, W]`.
fn image_dims(item_shape: &[usize]) -> Result<ImageDims> {
    match *item_shape {
        [c, h, w] => Ok(ImageDims { c, h, w }),
        [h, w] => Ok(ImageDims { c: 1, h, w }),
        _ => Err(Error::BadRank {
            op: "Augment",
            expected: "image items (C, H, W) or (H, W) for crop, flip, shift, erase and jitter",
            shape: item_shape.to_vec(),
        }),
    }
}

impl FromStr for Augment {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Augment::parse(s)
    }
}

impl fmt::Display for Augment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return write!(f, "none");
        }
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}
