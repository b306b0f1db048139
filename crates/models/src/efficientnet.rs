//! EfficientNet B0–B7 in torchvision's layout and `state_dict` names: MBConv blocks
//! (1×1 expansion, depthwise k×k, squeeze-and-excitation with SiLU and a sigmoid gate,
//! linear 1×1 projection, stochastic depth on the residual branch), scaled from B0 by
//! compound scaling: channels by the width coefficient (rounded to multiples of 8),
//! repeats by the depth coefficient (rounded up), and the input resolution.

use fovea_core::nn::{
    Activation, ConvNormAct, Dropout, Gate, Linear, Module, Pass, Sequential, SqueezeExcitation,
    StochasticDepth, SummaryRow,
};
use fovea_core::{Device, Error, Result, Tensor};

use crate::mobilenet::{features_pool_classifier, init_like_torchvision, make_divisible};

/// One EfficientNet variant's coefficients, as torchvision sets them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EfficientNetScaling {
    /// channel multiplier
    pub width: f64,
    /// repeat multiplier
    pub depth: f64,
    /// the input size torchvision evaluates its weights at (the centre crop)
    pub resolution: usize,
    /// dropout before the classifier
    pub dropout: f32,
    /// batch norm eps (B5–B7 were ported from TensorFlow with 1e-3)
    pub bn_eps: f32,
}

impl EfficientNetScaling {
    /// B0 … B7 (`variant` 0–7).
    pub fn variant(variant: usize) -> Result<EfficientNetScaling> {
        let (width, depth, resolution, dropout) = match variant {
            0 => (1.0, 1.0, 224, 0.2),
            1 => (1.0, 1.1, 240, 0.2),
            2 => (1.1, 1.2, 288, 0.3),
            3 => (1.2, 1.4, 300, 0.3),
            4 => (1.4, 1.8, 380, 0.4),
            5 => (1.6, 2.2, 456, 0.4),
            6 => (1.8, 2.6, 528, 0.5),
            7 => (2.0, 3.1, 600, 0.5),
            v => {
                return Err(Error::op(
                    "EfficientNet",
                    format!("there are variants B0 to B7, not B{v}"),
                ))
            }
        };
        Ok(EfficientNetScaling {
            width,
            depth,
            resolution,
            dropout,
            bn_eps: if variant >= 5 { 1e-3 } else { 1e-5 },
        })
    }
}

/// An MBConv block: `block` (expansion, depthwise, SE, projection, named `block.0`… as in
/// torchvision) and stochastic depth on the residual branch.
pub struct MBConv {
    /// the layers, in order
    pub block: Sequential,
    /// drops the branch for some samples in training
    pub stochastic_depth: StochasticDepth,
    /// stride 1 and as many channels out as in
    pub residual: bool,
}

impl MBConv {
    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let h = pass.run("block", &self.block, x)?;
        if !self.residual {
            return Ok(h);
        }
        pass.run("stochastic_depth", &self.stochastic_depth, &h)?
            .add(x)
    }
}

impl Module for MBConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![
            ("block", &self.block),
            ("stochastic_depth", &self.stochastic_depth),
        ]
    }
}

/// EfficientNet: `features` (stem, seven stages of MBConv blocks, 1×1 head), global
/// average pooling and `classifier` (dropout, linear).
pub struct EfficientNet {
    /// the coefficients it was built with
    pub scaling: EfficientNetScaling,
    /// the convolutional trunk
    pub features: Sequential,
    /// `classifier.0` (dropout), `classifier.1` (linear)
    pub classifier: Sequential,
}

/// B0's stages: expansion, kernel, stride, input channels, output channels, repeats.
const B0_STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

impl EfficientNet {
    /// torchvision's `efficientnet_b{variant}(num_classes=classes)` with stochastic depth
    /// probability 0.2 (growing linearly over the blocks), initialised as torchvision does.
    pub fn new(variant: usize, classes: usize, seed: u64, dev: &Device) -> Result<EfficientNet> {
        let sc = EfficientNetScaling::variant(variant)?;
        let ch = |c: usize| make_divisible(c as f64 * sc.width, 8);
        let repeats = |n: usize| (n as f64 * sc.depth).ceil() as usize;
        let total: usize = B0_STAGES.iter().map(|s| repeats(s.5)).sum();
        let (silu, eps) = (Activation::Silu, sc.bn_eps);
        let stem = ch(B0_STAGES[0].3);
        let mut features =
            Sequential::new().push(ConvNormAct::new(3, stem, 3, 2, 1, eps, silu, seed, dev)?);
        let (mut block_id, mut s) = (0, seed);
        for (t, k, stride, c_in, c_out, n) in B0_STAGES {
            let mut stage = Sequential::new();
            let (mut c_in, c_out) = (ch(c_in), ch(c_out));
            for i in 0..repeats(n) {
                s += 10;
                let stride = if i == 0 { stride } else { 1 };
                let expanded = make_divisible((c_in * t) as f64, 8);
                let mut block = Sequential::new();
                if expanded != c_in {
                    block = block.push(ConvNormAct::new(
                        c_in, expanded, 1, 1, 1, eps, silu, s, dev,
                    )?);
                }
                block = block
                    .push(ConvNormAct::new(
                        expanded,
                        expanded,
                        k,
                        stride,
                        expanded,
                        eps,
                        silu,
                        s + 1,
                        dev,
                    )?)
                    .push(SqueezeExcitation::new(
                        expanded,
                        (c_in / 4).max(1),
                        silu,
                        Gate::Sigmoid,
                        s + 2,
                        dev,
                    )?)
                    .push(ConvNormAct::new(
                        expanded,
                        c_out,
                        1,
                        1,
                        1,
                        eps,
                        Activation::None,
                        s + 3,
                        dev,
                    )?);
                let p = 0.2 * block_id as f32 / total as f32;
                stage = stage.push(MBConv {
                    block,
                    stochastic_depth: StochasticDepth::new(p, s + 4),
                    residual: stride == 1 && c_in == c_out,
                });
                c_in = c_out;
                block_id += 1;
            }
            features = features.push(stage);
        }
        let last_in = ch(B0_STAGES[6].4);
        let last = 4 * last_in;
        features = features.push(ConvNormAct::new(
            last_in,
            last,
            1,
            1,
            1,
            eps,
            silu,
            s + 10,
            dev,
        )?);
        let classifier = Sequential::new()
            .push(Dropout::new(sc.dropout, seed + 500))
            .push(Linear::try_new(last, classes, true, seed + 501, dev)?);
        let model = EfficientNet {
            scaling: sc,
            features,
            classifier,
        };
        // torchvision: linear weights uniform in ±1/√out_features.
        init_like_torchvision(&model, seed, dev, &|s, k| {
            fovea_core::nn::init::uniform(s, 1.0 / (s[0] as f32).sqrt(), k, dev)
        })?;
        Ok(model)
    }
}

features_pool_classifier!(EfficientNet);
