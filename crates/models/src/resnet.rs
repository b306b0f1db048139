//! ResNet-18/34/50 in torchvision's layout (`conv1`, `bn1`, `layer1.0.conv1`, …,
//! `layer2.0.downsample.0/1`, `fc`): basic blocks (two 3×3 convolutions) and bottlenecks
//! (1×1, 3×3 carrying the stride, 1×1 ×4), with identity shortcuts where the shape is kept
//! and 1×1 projection shortcuts where it changes. A stem for small images (a 3×3 stride-1
//! first convolution and no max pool, as for CIFAR) and a width other than 64 are options
//! for training from scratch on small data; the defaults are torchvision's.

use fovea_core::nn::{
    init, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Identity, Linear, MaxPool2d, Module, Pass, Relu,
    Sequential, SummaryRow,
};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Result, Tensor};

/// Which residual block a ResNet stacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// two 3×3 convolutions (ResNet-18/34), expansion 1
    Basic,
    /// 1×1, 3×3, 1×1 (ResNet-50/101/152), expansion 4
    Bottleneck,
}

impl Block {
    /// Output channels per "planes" of the block.
    pub fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// A ResNet's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResNetConfig {
    /// the block type
    pub block: Block,
    /// blocks per stage (`[2, 2, 2, 2]` for ResNet-18)
    pub layers: [usize; 4],
    /// classifier outputs
    pub classes: usize,
    /// input channels (3 for RGB)
    pub in_channels: usize,
    /// planes of the first stage (64 in torchvision; doubled at each stage)
    pub width: usize,
    /// a 3×3 stride-1 stem without max pooling, for inputs of about 32×32
    pub small_input: bool,
}

impl ResNetConfig {
    /// torchvision's configuration with `block`, `layers` and `classes`.
    pub fn torchvision(block: Block, layers: [usize; 4], classes: usize) -> ResNetConfig {
        ResNetConfig {
            block,
            layers,
            classes,
            in_channels: 3,
            width: 64,
            small_input: false,
        }
    }
}

fn conv(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    seed: u64,
    dev: &Device,
) -> Result<Conv2d> {
    let opts = Conv2dOptions {
        stride: [stride, stride],
        padding: [k / 2, k / 2],
        ..Default::default()
    };
    let c = Conv2d::new(c_in, c_out, [k, k], opts, false, seed, dev)?;
    // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
    c.weight
        .assign(&init::kaiming_normal_fan_out(c.weight.shape(), seed, dev))?;
    Ok(c)
}

/// The 1×1 projection shortcut (`downsample.0` conv, `downsample.1` batch norm).
pub struct Downsample {
    /// `0`
    pub conv: Conv2d,
    /// `1`
    pub bn: BatchNorm2d,
}

impl Module for Downsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.bn.after_conv(&self.conv, x)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("0", &self.conv), ("1", &self.bn)]
    }
}

/// A residual block of either kind: `convs[i]`/`bns[i]` are `conv{i+1}`/`bn{i+1}`.
pub struct ResidualBlock {
    /// the block's kind
    pub kind: Block,
    /// `conv1`, `conv2` (and `conv3` in a bottleneck)
    pub convs: Vec<Conv2d>,
    /// `bn1`, `bn2` (and `bn3`)
    pub bns: Vec<BatchNorm2d>,
    /// the projection shortcut, where the block changes the shape
    pub downsample: Option<Downsample>,
}

const CONV_NAMES: [&str; 3] = ["conv1", "conv2", "conv3"];
const BN_NAMES: [&str; 3] = ["bn1", "bn2", "bn3"];

impl ResidualBlock {
    /// A block from `c_in` channels to `planes · expansion`, the stride on its 3×3.
    pub fn new(
        kind: Block,
        c_in: usize,
        planes: usize,
        stride: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<ResidualBlock> {
        let c_out = planes * kind.expansion();
        let convs = match kind {
            Block::Basic => vec![
                conv(c_in, planes, 3, stride, seed, dev)?,
                conv(planes, planes, 3, 1, seed + 1, dev)?,
            ],
            Block::Bottleneck => vec![
                conv(c_in, planes, 1, 1, seed, dev)?,
                conv(planes, planes, 3, stride, seed + 1, dev)?,
                conv(planes, c_out, 1, 1, seed + 2, dev)?,
            ],
        };
        let bns = convs
            .iter()
            .map(|c| BatchNorm2d::new(c.weight.shape()[0], dev))
            .collect();
        let downsample = (stride != 1 || c_in != c_out)
            .then(|| -> Result<Downsample> {
                Ok(Downsample {
                    conv: conv(c_in, c_out, 1, stride, seed + 3, dev)?,
                    bn: BatchNorm2d::new(c_out, dev),
                })
            })
            .transpose()?;
        Ok(ResidualBlock {
            kind,
            convs,
            bns,
            downsample,
        })
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let last = self.convs.len() - 1;
        let mut h = x.clone();
        for i in 0..=last {
            let (conv, bn) = ((CONV_NAMES[i], &self.convs[i]), (BN_NAMES[i], &self.bns[i]));
            h = if i < last {
                pass.conv_bn_relu(conv, bn, &h)?
            } else {
                pass.conv_bn(conv, bn, &h)?
            };
        }
        let shortcut = match &self.downsample {
            Some(d) => pass.run("downsample", d, x)?,
            None => x.clone(),
        };
        h.add_relu(&shortcut)
    }
}

impl Module for ResidualBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        let mut c: Vec<(&str, &dyn Module)> = Vec::new();
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            c.push((CONV_NAMES[i], conv));
            c.push((BN_NAMES[i], bn));
        }
        if let Some(d) = &self.downsample {
            c.push(("downsample", d));
        }
        c
    }
}

/// A ResNet: stem (`conv1`, `bn1`, ReLU, `maxpool`), four stages `layer1`…`layer4`,
/// global average pooling and `fc`.
pub struct ResNet {
    /// the configuration it was built with
    pub config: ResNetConfig,
    /// the stem convolution (7×7 stride 2, or 3×3 stride 1 for small inputs)
    pub conv1: Conv2d,
    /// the stem's batch norm
    pub bn1: BatchNorm2d,
    maxpool: Box<dyn Module>,
    /// the four stages
    pub layers: [Sequential; 4],
    avgpool: AdaptiveAvgPool2d,
    /// the classifier
    pub fc: Linear,
}

const LAYER_NAMES: [&str; 4] = ["layer1", "layer2", "layer3", "layer4"];

impl ResNet {
    /// A ResNet of any configuration, initialised from `seed` as torchvision does.
    pub fn new(config: ResNetConfig, seed: u64, dev: &Device) -> Result<ResNet> {
        let w = config.width;
        let conv1 = if config.small_input {
            conv(config.in_channels, w, 3, 1, seed, dev)?
        } else {
            conv(config.in_channels, w, 7, 2, seed, dev)?
        };
        let maxpool: Box<dyn Module> = if config.small_input {
            Box::new(Identity)
        } else {
            Box::new(MaxPool2d(Pool2dOptions {
                kernel: [3, 3],
                stride: [2, 2],
                padding: [1, 1],
                ..Default::default()
            }))
        };
        let mut c_in = w;
        let mut stage_seed = seed + 1000;
        let mut layers: [Sequential; 4] = Default::default();
        for (stage, layer) in layers.iter_mut().enumerate() {
            let planes = w << stage;
            let mut seq = Sequential::new();
            for b in 0..config.layers[stage] {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                seq = seq.push(ResidualBlock::new(
                    config.block,
                    c_in,
                    planes,
                    stride,
                    stage_seed,
                    dev,
                )?);
                c_in = planes * config.block.expansion();
                stage_seed += 10;
            }
            *layer = seq;
        }
        Ok(ResNet {
            config,
            bn1: BatchNorm2d::new(w, dev),
            conv1,
            maxpool,
            layers,
            avgpool: AdaptiveAvgPool2d([1, 1]),
            fc: Linear::try_new(c_in, config.classes, true, seed + 999, dev)?,
        })
    }

    /// torchvision's `resnet18(num_classes=classes)`.
    pub fn resnet18(classes: usize, seed: u64, dev: &Device) -> Result<ResNet> {
        ResNet::new(
            ResNetConfig::torchvision(Block::Basic, [2, 2, 2, 2], classes),
            seed,
            dev,
        )
    }

    /// torchvision's `resnet34`.
    pub fn resnet34(classes: usize, seed: u64, dev: &Device) -> Result<ResNet> {
        ResNet::new(
            ResNetConfig::torchvision(Block::Basic, [3, 4, 6, 3], classes),
            seed,
            dev,
        )
    }

    /// torchvision's `resnet50`.
    pub fn resnet50(classes: usize, seed: u64, dev: &Device) -> Result<ResNet> {
        ResNet::new(
            ResNetConfig::torchvision(Block::Bottleneck, [3, 4, 6, 3], classes),
            seed,
            dev,
        )
    }

    /// The pooled features before `fc` (`[N, 512 · expansion]` at the default width).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        self.trunk(x, &mut Pass::forward())
    }

    fn trunk(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let (conv1, bn1) = (("conv1", &self.conv1), ("bn1", &self.bn1));
        // The stem's ReLU is a layer of its own in a summary.
        let mut h = if pass.is_summary() {
            let h = pass.conv_bn(conv1, bn1, x)?;
            pass.run("relu", &Relu, &h)?
        } else {
            pass.conv_bn_relu(conv1, bn1, x)?
        };
        h = pass.run("maxpool", self.maxpool.as_ref(), &h)?;
        for (name, layer) in LAYER_NAMES.iter().zip(&self.layers) {
            h = pass.run(name, layer, &h)?;
        }
        pass.run("avgpool", &self.avgpool, &h)?.flatten(1)
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let h = self.trunk(x, pass)?;
        pass.run("fc", &self.fc, &h)
    }
}

impl Module for ResNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        let mut c: Vec<(&str, &dyn Module)> = vec![("conv1", &self.conv1), ("bn1", &self.bn1)];
        for (name, layer) in LAYER_NAMES.iter().zip(&self.layers) {
            c.push((name, layer));
        }
        c.push(("fc", &self.fc));
        c
    }
}
