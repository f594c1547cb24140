//! Ready-made models for contrastive learning: [`Mlp`], the convolutional encoders of
//! [`ConvEncoder`] (plain conv–BN–ReLU–pool blocks, and a small ResNet of [`ResidualBlock`]s),
//! [`ProjectionHead`], and [`EncoderHead`], the encoder + projector pair that contrastive methods
//! train (the loss sees the projection; evaluation uses the encoder output).
//!
//! The builders return a [`Sequential`], so every model is named the same way
//! (`layers.{i}.weight`) and any of them can be extended with more layers.

use super::{
    BatchNorm, Conv2d, GlobalAvgPool, Linear, MaxPool2d, Mode, Module, Relu, Sequential, join,
};
use crate::error::{Error, Result};
use crate::ops::conv::Conv2dParams;
use crate::tensor::{Float, Tensor};
use rand::rngs::StdRng;

/// The non-linearity placed between layers by [`Mlp`]; also a layer itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    Gelu,
    Tanh,
    LeakyRelu(f64),
}

impl<T: Float> Module<T> for Activation {
    fn forward(&mut self, x: &Tensor<T>, _mode: Mode) -> Result<Tensor<T>> {
        Ok(match *self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
            Activation::Tanh => x.tanh(),
            Activation::LeakyRelu(slope) => x.leaky_relu(slope),
        })
    }

    fn is_relu(&self) -> bool {
        *self == Activation::Relu
    }
}

/// Builder of multi-layer perceptrons.
#[derive(Debug, Clone, Copy)]
pub struct Mlp;

impl Mlp {
    /// Linear layers `widths[0] → widths[1] → … → widths[last]`, each but the last followed by
    /// an optional `BatchNorm1d` and then `activation`; nothing after the last. For example
    /// `[64, 256, 256]` without batch norm is `Linear–ReLU–Linear` (`layers.0`, `layers.2`).
    // `Mlp` only builds: every model is a `Sequential`, so all are named and extended alike.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<T: Float>(
        widths: &[usize],
        activation: Activation,
        batch_norm: bool,
        rng: &mut StdRng,
    ) -> Result<Sequential<T>> {
        if widths.len() < 2 {
            return Err(Error::invalid(
                "Mlp",
                format!("need at least an input and an output width, got {widths:?}"),
            ));
        }
        let mut seq = Sequential::new();
        for (i, pair) in widths.windows(2).enumerate() {
            seq.push(Linear::new(pair[0], pair[1], true, rng)?);
            if i + 2 < widths.len() {
                if batch_norm {
                    seq.push(BatchNorm::new_1d(pair[1])?);
                }
                seq.push(activation);
            }
        }
        Ok(seq)
    }
}

/// Builders of convolutional encoders mapping `(N, C, H, W)` images to `(N, features)`.
#[derive(Debug, Clone, Copy)]
pub struct ConvEncoder;

impl ConvEncoder {
    /// Blocks `conv3×3(pad 1) → BatchNorm2d → ReLU`, one per entry of `channels`, with a 2×2
    /// max-pool after every block but the last and a global average pool at the end: output
    /// `(N, channels[last])`. `simple(&[32, 64, 128], 3, rng)` is the `cnn_step` encoder of the
    /// project's benchmarks. Convolutions keep their bias, as `nn.Conv2d` does by default.
    pub fn simple<T: Float>(
        channels: &[usize],
        in_channels: usize,
        rng: &mut StdRng,
    ) -> Result<Sequential<T>> {
        if channels.is_empty() {
            return Err(Error::invalid("ConvEncoder::simple", "no blocks given"));
        }
        let mut seq = Sequential::new();
        let mut prev = in_channels;
        for (i, &c) in channels.iter().enumerate() {
            seq.push(Conv2d::new(prev, c, 3, Conv2dParams::new(1, 1), true, rng)?);
            seq.push(BatchNorm::new_2d(c)?);
            seq.push(Relu);
            if i + 1 < channels.len() {
                seq.push(MaxPool2d::new(2));
            }
            prev = c;
        }
        seq.push(GlobalAvgPool);
        Ok(seq)
    }

    /// A small ResNet: a stem `conv3×3(in → widths[0]) → BN → ReLU`, then one stage per entry
    /// of `widths` with `blocks_per_stage` [`ResidualBlock`]s (the first block of every stage
    /// after the first halves the resolution), then global average pooling: output
    /// `(N, widths[last])`. `resnet(3, &[64, 128, 256, 512], 2, rng)` is ResNet-18's layout with
    /// the CIFAR stem. Convolutions have no bias (each is followed by batch norm).
    pub fn resnet<T: Float>(
        in_channels: usize,
        widths: &[usize],
        blocks_per_stage: usize,
        rng: &mut StdRng,
    ) -> Result<Sequential<T>> {
        if widths.is_empty() || blocks_per_stage == 0 {
            return Err(Error::invalid(
                "ConvEncoder::resnet",
                format!("need stages and blocks, got widths {widths:?}, {blocks_per_stage} blocks"),
            ));
        }
        let mut seq = Sequential::new();
        seq.push(Conv2d::new(
            in_channels,
            widths[0],
            3,
            Conv2dParams::new(1, 1),
            false,
            rng,
        )?);
        seq.push(BatchNorm::new_2d(widths[0])?);
        seq.push(Relu);
        let mut prev = widths[0];
        for (stage, &w) in widths.iter().enumerate() {
            for block in 0..blocks_per_stage {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                seq.push(ResidualBlock::new(prev, w, stride, rng)?);
                prev = w;
            }
        }
        seq.push(GlobalAvgPool);
        Ok(seq)
    }
}

/// ResNet's basic block: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, with 3×3
/// convolutions (the first with `stride`) and a shortcut that is the identity, or a strided
/// 1×1 convolution and batch norm (`downsample.0`, `downsample.1`, as torchvision names them)
/// when the shape changes.
#[derive(Debug, Clone)]
pub struct ResidualBlock<T: Float> {
    pub conv1: Conv2d<T>,
    pub bn1: BatchNorm<T>,
    pub conv2: Conv2d<T>,
    pub bn2: BatchNorm<T>,
    pub downsample: Option<(Conv2d<T>, BatchNorm<T>)>,
}

impl<T: Float> ResidualBlock<T> {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let conv1 = Conv2d::new(
            in_channels,
            out_channels,
            3,
            Conv2dParams::new(stride, 1),
            false,
            rng,
        )?;
        let conv2 = Conv2d::new(
            out_channels,
            out_channels,
            3,
            Conv2dParams::new(1, 1),
            false,
            rng,
        )?;
        let downsample = if stride != 1 || in_channels != out_channels {
            let conv = Conv2d::new(
                in_channels,
                out_channels,
                1,
                Conv2dParams::new(stride, 0),
                false,
                rng,
            )?;
            Some((conv, BatchNorm::new_2d(out_channels)?))
        } else {
            None
        };
        Ok(ResidualBlock {
            conv1,
            bn1: BatchNorm::new_2d(out_channels)?,
            conv2,
            bn2: BatchNorm::new_2d(out_channels)?,
            downsample,
        })
    }

    fn children(&self) -> Vec<(&'static str, &dyn Module<T>)> {
        let mut c: Vec<(&'static str, &dyn Module<T>)> = vec![
            ("conv1", &self.conv1),
            ("bn1", &self.bn1),
            ("conv2", &self.conv2),
            ("bn2", &self.bn2),
        ];
        if let Some((conv, bn)) = &self.downsample {
            c.push(("downsample.0", conv));
            c.push(("downsample.1", bn));
        }
        c
    }

    fn children_mut(&mut self) -> Vec<(&'static str, &mut dyn Module<T>)> {
        let mut c: Vec<(&'static str, &mut dyn Module<T>)> = vec![
            ("conv1", &mut self.conv1),
            ("bn1", &mut self.bn1),
            ("conv2", &mut self.conv2),
            ("bn2", &mut self.bn2),
        ];
        if let Some((conv, bn)) = &mut self.downsample {
            c.push(("downsample.0", conv));
            c.push(("downsample.1", bn));
        }
        c
    }
}

impl<T: Float> Module<T> for ResidualBlock<T> {
    fn forward(&mut self, x: &Tensor<T>, mode: Mode) -> Result<Tensor<T>> {
        let h = self.conv1.forward(x, mode)?;
        let h = self.bn1.forward_with_relu(&h, mode, true)?;
        let h = self.conv2.forward(&h, mode)?;
        let h = self.bn2.forward(&h, mode)?;
        let shortcut = match &mut self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(x, mode)?, mode)?,
            None => x.clone(),
        };
        Ok(h.add(&shortcut)?.relu())
    }

    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        for (name, child) in self.children() {
            child.visit_parameters(&join(prefix, name), f);
        }
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        for (name, child) in self.children_mut() {
            child.visit_parameters_mut(&join(prefix, name), f);
        }
    }

    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        for (name, child) in self.children() {
            child.visit_buffers(&join(prefix, name), f);
        }
    }

    fn visit_buffers_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        for (name, child) in self.children_mut() {
            child.visit_buffers_mut(&join(prefix, name), f);
        }
    }
}

/// Builders of projection heads (the `g` of SimCLR, mapping representations to the space the
/// loss compares).
#[derive(Debug, Clone, Copy)]
pub struct ProjectionHead;

impl ProjectionHead {
    /// One linear layer `in → out` (with bias).
    pub fn linear<T: Float>(
        in_features: usize,
        out_features: usize,
        rng: &mut StdRng,
    ) -> Result<Sequential<T>> {
        Ok(Sequential::new().with(Linear::new(in_features, out_features, true, rng)?))
    }

    /// Linear layers through `widths` with ReLU between them (SimCLR's non-linear head).
    pub fn mlp<T: Float>(widths: &[usize], rng: &mut StdRng) -> Result<Sequential<T>> {
        Mlp::new(widths, Activation::Relu, false, rng)
    }
}

/// An encoder `f` and a projection head `g`: [`encode`](Self::encode) gives the representation
/// `h = f(x)` used for evaluation, [`project`](Self::project) maps it to `z = g(h)` for the loss.
/// Tensors are named `encoder.…` and `head.…`.
#[derive(Debug)]
pub struct EncoderHead<T: Float> {
    pub encoder: Box<dyn Module<T>>,
    pub head: Box<dyn Module<T>>,
}

impl<T: Float> EncoderHead<T> {
    pub fn new(encoder: impl Module<T> + 'static, head: impl Module<T> + 'static) -> Self {
        EncoderHead {
            encoder: Box::new(encoder),
            head: Box::new(head),
        }
    }

    /// `h = f(x)`.
    pub fn encode(&mut self, x: &Tensor<T>, mode: Mode) -> Result<Tensor<T>> {
        self.encoder.forward(x, mode)
    }

    /// `z = g(h)` for a representation `h`.
    pub fn project(&mut self, h: &Tensor<T>, mode: Mode) -> Result<Tensor<T>> {
        self.head.forward(h, mode)
    }

    /// Both `h = f(x)` and `z = g(h)` from one pass.
    pub fn encode_and_project(
        &mut self,
        x: &Tensor<T>,
        mode: Mode,
    ) -> Result<(Tensor<T>, Tensor<T>)> {
        let h = self.encode(x, mode)?;
        let z = self.project(&h, mode)?;
        Ok((h, z))
    }
}

impl<T: Float> Module<T> for EncoderHead<T> {
    /// `g(f(x))`.
    fn forward(&mut self, x: &Tensor<T>, mode: Mode) -> Result<Tensor<T>> {
        Ok(self.encode_and_project(x, mode)?.1)
    }

    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        self.encoder.visit_parameters(&join(prefix, "encoder"), f);
        self.head.visit_parameters(&join(prefix, "head"), f);
    }

    fn visit_parameters_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        self.encoder
            .visit_parameters_mut(&join(prefix, "encoder"), f);
        self.head.visit_parameters_mut(&join(prefix, "head"), f);
    }

    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        self.encoder.visit_buffers(&join(prefix, "encoder"), f);
        self.head.visit_buffers(&join(prefix, "head"), f);
    }

    fn visit_buffers_mut<'a>(
        &'a mut self,
        prefix: &str,
        f: &mut dyn FnMut(&str, &'a mut Tensor<T>),
    ) {
        self.encoder.visit_buffers_mut(&join(prefix, "encoder"), f);
        self.head.visit_buffers_mut(&join(prefix, "head"), f);
    }
}
