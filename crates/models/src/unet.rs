//! U-Net (Ronneberger et al., 2015) for semantic segmentation: an encoder of 3×3
//! convolution pairs (each convolution followed by batch norm and ReLU) and 2×2 max pools,
//! a decoder that doubles the resolution at each level (a 2×2 stride-2 transposed
//! convolution, or bilinear upsampling) and concatenates the encoder's activations of the
//! same size before its own convolution pair, and a 1×1 convolution to the class scores.
//! Convolutions are padded, so the output has the input's height and width.
//!
//! Parameter names follow the most used PyTorch implementation (milesial/Pytorch-UNet):
//! `inc.double_conv.{0,1,3,4}`, `down{i}.maxpool_conv.1.double_conv.…`, `up{i}.up` (the
//! transposed convolution), `up{i}.conv.double_conv.…`, `outc.conv`; its depth-4
//! networks' state_dicts load by name. Depth and width generalise its 64-128-256-512-1024
//! layout: level `i` has `width · 2^i` channels; with bilinear upsampling the bottom level
//! and each decoder level's output have half as many, as there.

use fovea_core::nn::{
    BatchNorm2d, Conv2d, ConvTranspose2d, MaxPool2d, Module, Pass, SummaryRow, Upsample,
    UpsampleMode,
};
use fovea_core::ops::{Conv2dOptions, ConvTranspose2dOptions, Pool2dOptions};
use fovea_core::{Device, Error, Result, Tensor};

/// A U-Net's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UNetConfig {
    /// input channels (1 for gray, 3 for RGB)
    pub in_channels: usize,
    /// classes scored per pixel
    pub classes: usize,
    /// channels of the first level (64 in the paper), doubled at each level down
    pub width: usize,
    /// how many times the encoder halves the resolution (4 in the paper): inputs' height
    /// and width must be multiples of `2^depth`
    pub depth: usize,
    /// bilinear upsampling (align_corners) instead of transposed convolutions
    pub bilinear: bool,
}

impl UNetConfig {
    /// The paper's network (widths 64-128-256-512-1024, transposed convolutions) for
    /// `in_channels` and `classes`.
    pub fn new(in_channels: usize, classes: usize) -> UNetConfig {
        UNetConfig {
            in_channels,
            classes,
            width: 64,
            depth: 4,
            bilinear: false,
        }
    }
}

/// Names of the two convolutions and norms of a pair, as `nn.Sequential` numbers them
/// (the ReLUs, without parameters, are 2 and 5).
const PAIR_NAMES: [(&str, &str); 2] = [
    ("double_conv.0", "double_conv.1"),
    ("double_conv.3", "double_conv.4"),
];

/// Two 3×3 convolutions (no bias), each followed by batch norm and ReLU.
pub struct DoubleConv {
    /// `double_conv.0` and `double_conv.3`
    pub convs: [Conv2d; 2],
    /// `double_conv.1` and `double_conv.4`
    pub bns: [BatchNorm2d; 2],
}

impl DoubleConv {
    /// From `c_in` to `mid` to `c_out` channels.
    pub fn new(
        c_in: usize,
        mid: usize,
        c_out: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<DoubleConv> {
        let conv = |i, o, s| {
            let opts = Conv2dOptions {
                padding: [1, 1],
                ..Default::default()
            };
            Conv2d::new(i, o, [3, 3], opts, false, s, dev)
        };
        Ok(DoubleConv {
            convs: [conv(c_in, mid, seed)?, conv(mid, c_out, seed + 1)?],
            bns: [BatchNorm2d::new(mid, dev), BatchNorm2d::new(c_out, dev)],
        })
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, (conv, bn)) in PAIR_NAMES.iter().enumerate() {
            h = pass.conv_bn_relu((conv, &self.convs[i]), (bn, &self.bns[i]), &h)?;
        }
        Ok(h)
    }
}

impl Module for DoubleConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        let mut c: Vec<(&str, &dyn Module)> = Vec::new();
        for (i, (conv, bn)) in PAIR_NAMES.iter().enumerate() {
            c.push((conv, &self.convs[i]));
            c.push((bn, &self.bns[i]));
        }
        c
    }
}

/// An encoder level: a 2×2 max pool (`maxpool_conv.0`), then a [`DoubleConv`]
/// (`maxpool_conv.1`).
pub struct Down {
    pool: MaxPool2d,
    /// `maxpool_conv.1`
    pub conv: DoubleConv,
}

impl Module for Down {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self
            .pool
            .forward(x)
            .map_err(|e| e.in_layer("maxpool_conv.0"))?;
        self.conv
            .forward(&h)
            .map_err(|e| e.in_layer("maxpool_conv.1"))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![
            ("maxpool_conv.0", &self.pool),
            ("maxpool_conv.1", &self.conv),
        ]
    }
}

/// A decoder level: upsampling by 2 (`up`), concatenation after the encoder's activations
/// of that size (the skip connection), then a [`DoubleConv`] (`conv`). It takes two inputs,
/// so it is not a [`Module`]: the U-Net runs it and lists its two parts as its own
/// children (`up1.up`, `up1.conv`).
pub struct Up {
    /// a [`ConvTranspose2d`] (k 2, stride 2, halving the channels) or an [`Upsample`]
    pub up: Box<dyn Module>,
    /// the convolution pair after the concatenation
    pub conv: DoubleConv,
}

impl Up {
    /// Upsamples `x`, puts it after `skip` along the channels, and convolves the pair.
    pub fn forward(&self, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
        self.run(["up", "conv"], x, skip, &mut Pass::forward())
    }

    fn run(&self, names: [&str; 2], x: &Tensor, skip: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let up = pass.run(names[0], self.up.as_ref(), x)?;
        let cat = Tensor::cat(&[skip, &up], 1)?;
        pass.run(names[1], &self.conv, &cat)
    }
}

/// The 1×1 convolution to class scores (`outc.conv`, with bias).
pub struct OutConv {
    /// `conv`
    pub conv: Conv2d,
}

impl Module for OutConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.conv.forward(x).map_err(|e| e.in_layer("conv"))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("conv", &self.conv)]
    }
}

/// A U-Net: `inc`, `down1`…`down{depth}`, `up1`…`up{depth}`, `outc`. Its output is
/// `[N, classes, H, W]` scores for an `[N, in_channels, H, W]` input.
pub struct UNet {
    /// the configuration it was built with
    pub config: UNetConfig,
    /// the first convolution pair, at full resolution
    pub inc: DoubleConv,
    /// the encoder levels, top to bottom
    pub downs: Vec<Down>,
    /// the decoder levels, bottom to top
    pub ups: Vec<Up>,
    /// the class scores
    pub outc: OutConv,
    down_names: Vec<String>,
    up_names: Vec<[String; 2]>,
}

impl UNet {
    /// A U-Net of `config`, initialised from `seed` as PyTorch initialises its layers.
    pub fn new(config: UNetConfig, seed: u64, dev: &Device) -> Result<UNet> {
        let UNetConfig {
            in_channels,
            classes,
            width,
            depth,
            bilinear,
        } = config;
        if in_channels == 0 || classes == 0 || width == 0 || !(1..=16).contains(&depth) {
            return Err(Error::op(
                "UNet::new",
                format!("needs at least one input channel, class and channel of width, and a depth of 1 to 16, got {config:?}"),
            ));
        }
        // Channels of each level; with bilinear upsampling (which keeps the channels) the
        // bottom level and the decoder levels but the last have half, so that each
        // concatenation again has `c[k]` channels.
        let c: Vec<usize> = (0..=depth).map(|i| width << i).collect();
        let f = if bilinear { 2 } else { 1 };
        let inc = DoubleConv::new(in_channels, c[0], c[0], seed, dev)?;
        let mut downs = Vec::new();
        for i in 1..=depth {
            let out = if i == depth { c[i] / f } else { c[i] };
            downs.push(Down {
                pool: MaxPool2d(Pool2dOptions::square(2)),
                conv: DoubleConv::new(c[i - 1], out, out, seed + 10 * i as u64, dev)?,
            });
        }
        let mut ups = Vec::new();
        for i in 1..=depth {
            let k = depth - i + 1;
            let out = if i < depth { c[k - 1] / f } else { c[0] };
            let s = seed + 1000 + 10 * i as u64;
            let (up, mid): (Box<dyn Module>, usize) = if bilinear {
                let up = Upsample {
                    scale: 2,
                    mode: UpsampleMode::Bilinear {
                        align_corners: true,
                    },
                };
                (Box::new(up), c[k] / 2)
            } else {
                let opts = ConvTranspose2dOptions {
                    stride: [2, 2],
                    ..Default::default()
                };
                let up = ConvTranspose2d::new(c[k], c[k] / 2, [2, 2], opts, true, s + 5, dev)?;
                (Box::new(up), out)
            };
            ups.push(Up {
                up,
                conv: DoubleConv::new(c[k], mid, out, s, dev)?,
            });
        }
        let head = Conv2d::new(
            c[0],
            classes,
            [1, 1],
            Default::default(),
            true,
            seed + 9999,
            dev,
        )?;
        Ok(UNet {
            config,
            inc,
            downs,
            ups,
            outc: OutConv { conv: head },
            down_names: (1..=depth).map(|i| format!("down{i}")).collect(),
            up_names: (1..=depth)
                .map(|i| [format!("up{i}.up"), format!("up{i}.conv")])
                .collect(),
        })
    }

    /// The side every input's height and width must be a multiple of: `2^depth`.
    pub fn multiple(&self) -> usize {
        1 << self.config.depth
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let s = x.shape();
        let m = self.multiple();
        let fits = s.len() == 4
            && s[0] > 0
            && s[1] == self.config.in_channels
            && s[2] > 0
            && s[3] > 0
            && s[2].is_multiple_of(m)
            && s[3].is_multiple_of(m);
        if fits {
            return Ok(());
        }
        Err(Error::op(
            "UNet",
            format!(
                "needs [N, {}, H, W] input with H and W positive multiples of 2^depth = {m} (depth {}), got {s:?}",
                self.config.in_channels, self.config.depth
            ),
        ))
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        self.check_input(x)?;
        // The encoder's outputs, kept for the skip connections.
        let mut levels = vec![pass.run("inc", &self.inc, x)?];
        for (name, down) in self.down_names.iter().zip(&self.downs) {
            let h = pass.run(name, down, levels.last().unwrap())?;
            levels.push(h);
        }
        let mut h = levels.pop().unwrap();
        for ([up_name, conv_name], up) in self.up_names.iter().zip(&self.ups) {
            let skip = levels.pop().unwrap();
            h = up.run([up_name, conv_name], &h, &skip, pass)?;
        }
        pass.run("outc", &self.outc, &h)
    }
}

impl Module for UNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        let mut c: Vec<(&str, &dyn Module)> = vec![("inc", &self.inc)];
        for (name, down) in self.down_names.iter().zip(&self.downs) {
            c.push((name, down));
        }
        for ([up_name, conv_name], up) in self.up_names.iter().zip(&self.ups) {
            c.push((up_name, up.up.as_ref()));
            c.push((conv_name, &up.conv));
        }
        c.push(("outc", &self.outc));
        c
    }
}
