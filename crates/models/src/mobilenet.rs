//! MobileNets: v1 (depthwise-separable convolutions), v2 (inverted residuals with linear
//! bottlenecks, ReLU6) and v3-small (hardswish, squeeze-and-excitation gated by a
//! hardsigmoid). v2 and v3 follow torchvision's layout and `state_dict` names exactly;
//! torchvision has no v1, so v1 follows the paper (Howard et al. 2017, Table 1) with
//! names in the same style (`features.N`, `classifier`).

use fovea_core::nn::{
    init, Activation, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, ConvNormAct, Dropout, Gate,
    Hardswish, Linear, Module, Pass, Sequential, SqueezeExcitation, SummaryRow,
};
use fovea_core::ops::Conv2dOptions;
use fovea_core::{Device, Error, Result, Tensor};

/// torchvision's `_make_divisible`: `v` rounded to the nearest multiple of `divisor`
/// (at least `divisor`), but never more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = (divisor).max(((v + d / 2.0) as usize) / divisor * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

/// Re-initialises a model's convolutions as torchvision's MobileNets and EfficientNet
/// do (Kaiming normal, fan-out; zero biases) and its linear layers with `linear`
/// (`weight shape, seed -> weight`; zero biases).
pub(crate) fn init_like_torchvision(
    model: &dyn Module,
    seed: u64,
    dev: &Device,
    linear: &dyn Fn(&[usize], u64) -> Tensor,
) -> Result<()> {
    let mut k = seed.wrapping_mul(7919);
    for (name, p) in model.named_parameters() {
        k = k.wrapping_add(1);
        let fresh = match (p.rank(), name.ends_with(".weight")) {
            (4, true) => init::kaiming_normal_fan_out(p.shape(), k, dev),
            (2, true) => linear(p.shape(), k),
            // Batch norm weights start at one; every bias at zero.
            (1, true) => continue,
            _ => Tensor::zeros(p.shape(), dev),
        };
        p.assign(&fresh)?;
    }
    Ok(())
}

pub(crate) fn global_pool_and_classify(
    features: &Sequential,
    classifier: &Sequential,
    x: &Tensor,
    pass: &mut Pass,
) -> Result<Tensor> {
    let h = pass.run("features", features, x)?;
    let h = pass.run("avgpool", &AdaptiveAvgPool2d([1, 1]), &h)?;
    pass.run("classifier", classifier, &h.flatten(1)?)
}

/// Implements `Module` for a network of `features`, global average pooling and
/// `classifier`.
macro_rules! features_pool_classifier {
    ($t:ty) => {
        impl Module for $t {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                $crate::mobilenet::global_pool_and_classify(
                    &self.features,
                    &self.classifier,
                    x,
                    &mut Pass::forward(),
                )
            }
            fn summarize(
                &self,
                name: &str,
                x: &Tensor,
                rows: &mut Vec<SummaryRow>,
            ) -> Result<Tensor> {
                $crate::mobilenet::global_pool_and_classify(
                    &self.features,
                    &self.classifier,
                    x,
                    &mut Pass::summary(name, rows),
                )
            }
            fn children(&self) -> Vec<(&str, &dyn Module)> {
                vec![
                    ("features", &self.features),
                    ("classifier", &self.classifier),
                ]
            }
        }
    };
}
pub(crate) use features_pool_classifier;

/// A depthwise-separable block of MobileNet v1: a 3×3 depthwise convolution (`dw`)
/// then a 1×1 pointwise one (`pw`), each with batch norm and ReLU.
pub struct DepthwiseSeparable {
    /// the 3×3 depthwise convolution
    pub dw: ConvNormAct,
    /// the 1×1 pointwise convolution
    pub pw: ConvNormAct,
}

impl Module for DepthwiseSeparable {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.dw.forward(x).map_err(|e| e.in_layer("dw"))?;
        self.pw.forward(&h).map_err(|e| e.in_layer("pw"))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("dw", &self.dw), ("pw", &self.pw)]
    }
}

/// MobileNet v1 (the paper's Table 1): a 3×3 stride-2 convolution to 32 channels, 13
/// depthwise-separable blocks to 1024, global average pooling and one linear layer, all
/// channel counts scaled by the width multiplier α.
pub struct MobileNetV1 {
    /// `features.0` (the first convolution), `features.1`–`features.13` (the blocks)
    pub features: Sequential,
    /// `classifier.0` (linear)
    pub classifier: Sequential,
}

impl MobileNetV1 {
    /// The paper's blocks: (output channels, stride) of each depthwise-separable block.
    pub const BLOCKS: [(usize, usize); 13] = [
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    ];

    /// MobileNet v1 with width multiplier `alpha` (1.0, 0.75, 0.5, 0.25 in the paper),
    /// `in_channels` input channels and `classes` outputs.
    pub fn new(
        alpha: f64,
        in_channels: usize,
        classes: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<MobileNetV1> {
        let width = |c: usize| ((c as f64 * alpha) as usize).max(1);
        let relu = Activation::Relu;
        let mut c = width(32);
        let mut features = Sequential::new().push(ConvNormAct::new(
            in_channels,
            c,
            3,
            2,
            1,
            1e-5,
            relu,
            seed,
            dev,
        )?);
        for (i, &(out, stride)) in Self::BLOCKS.iter().enumerate() {
            let s = seed + 10 * (i as u64 + 1);
            let out = width(out);
            features = features.push(DepthwiseSeparable {
                dw: ConvNormAct::new(c, c, 3, stride, c, 1e-5, relu, s, dev)?,
                pw: ConvNormAct::new(c, out, 1, 1, 1, 1e-5, relu, s + 1, dev)?,
            });
            c = out;
        }
        let classifier =
            Sequential::new().push(Linear::try_new(c, classes, true, seed + 501, dev)?);
        let model = MobileNetV1 {
            features,
            classifier,
        };
        init_like_torchvision(&model, seed, dev, &|s, k| init::normal(s, 0.01, k, dev))?;
        Ok(model)
    }
}

features_pool_classifier!(MobileNetV1);

/// MobileNet v2's inverted residual: an optional 1×1 expansion (ReLU6), a 3×3 depthwise
/// convolution (ReLU6) and a linear 1×1 projection with batch norm, named `conv.0`… as in
/// torchvision; the input is added back where the shape is kept.
pub struct InvertedResidual {
    /// the 1×1 expansion (absent when the expansion ratio is 1)
    pub expand: Option<ConvNormAct>,
    /// the depthwise convolution, carrying the stride
    pub depthwise: ConvNormAct,
    /// the linear bottleneck's 1×1 convolution
    pub project: Conv2d,
    /// its batch norm
    pub project_bn: BatchNorm2d,
    /// stride 1 and as many channels out as in
    pub residual: bool,
}

/// Where torchvision's `conv` Sequential puts each layer.
const CONV: [&str; 4] = ["conv.0", "conv.1", "conv.2", "conv.3"];

impl InvertedResidual {
    /// A block from `c_in` to `c_out` channels, expanding by `t`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        stride: usize,
        t: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<InvertedResidual> {
        let hidden = c_in * t;
        let relu6 = Activation::Relu6;
        Ok(InvertedResidual {
            expand: (t != 1)
                .then(|| ConvNormAct::new(c_in, hidden, 1, 1, 1, 1e-5, relu6, seed, dev))
                .transpose()?,
            depthwise: ConvNormAct::new(
                hidden,
                hidden,
                3,
                stride,
                hidden,
                1e-5,
                relu6,
                seed + 1,
                dev,
            )?,
            project: Conv2d::new(
                hidden,
                c_out,
                [1, 1],
                Conv2dOptions::default(),
                false,
                seed + 2,
                dev,
            )?,
            project_bn: BatchNorm2d::new(c_out, dev),
            residual: stride == 1 && c_in == c_out,
        })
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let i = self.expand.is_some() as usize;
        let mut h = x.clone();
        if let Some(e) = &self.expand {
            h = pass.run(CONV[0], e, &h)?;
        }
        h = pass.run(CONV[i], &self.depthwise, &h)?;
        h = pass.conv_bn(
            (CONV[i + 1], &self.project),
            (CONV[i + 2], &self.project_bn),
            &h,
        )?;
        if self.residual {
            h = h.add(x)?;
        }
        Ok(h)
    }
}

impl Module for InvertedResidual {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        let mut layers: Vec<&dyn Module> = Vec::new();
        if let Some(e) = &self.expand {
            layers.push(e);
        }
        layers.extend([
            &self.depthwise as &dyn Module,
            &self.project,
            &self.project_bn,
        ]);
        layers
            .into_iter()
            .enumerate()
            .map(|(i, m)| (CONV[i], m))
            .collect()
    }
}

/// MobileNet v2 in torchvision's layout: `features.0` (3×3 stride-2 convolution),
/// `features.1`–`features.17` (inverted residuals), `features.18` (1×1 to 1280), global
/// average pooling and `classifier` (dropout 0.2, linear).
pub struct MobileNetV2 {
    /// the convolutional trunk
    pub features: Sequential,
    /// `classifier.0` (dropout), `classifier.1` (linear)
    pub classifier: Sequential,
}

impl MobileNetV2 {
    /// The inverted-residual settings: expansion t, channels c, repeats n, stride s.
    pub const SETTINGS: [(usize, usize, usize, usize); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];

    /// torchvision's `mobilenet_v2(num_classes=classes, width_mult=width)`, initialised
    /// as torchvision does from `seed`.
    pub fn new(classes: usize, width: f64, seed: u64, dev: &Device) -> Result<MobileNetV2> {
        MobileNetV2::build(3, classes, width, 2, seed, dev)
    }

    /// A MobileNetV2 for small images (about 32×32, `in_channels` channels): the first
    /// convolution has stride 1, as CIFAR versions have it; the names stay torchvision's.
    pub fn small_input(
        in_channels: usize,
        classes: usize,
        width: f64,
        seed: u64,
        dev: &Device,
    ) -> Result<MobileNetV2> {
        MobileNetV2::build(in_channels, classes, width, 1, seed, dev)
    }

    fn build(
        in_channels: usize,
        classes: usize,
        width: f64,
        first_stride: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<MobileNetV2> {
        // torchvision rounds any width up to 8 channels; one that is not a positive
        // number is a mistake, not a network.
        if !(width.is_finite() && width > 0.0) {
            return Err(Error::op(
                "MobileNetV2",
                format!("the width multiplier must be a positive number, got {width}"),
            ));
        }
        let relu6 = Activation::Relu6;
        let mut c = make_divisible(32.0 * width, 8);
        let last = make_divisible(1280.0 * width.max(1.0), 8);
        let stem = ConvNormAct::new(in_channels, c, 3, first_stride, 1, 1e-5, relu6, seed, dev)?;
        let mut features = Sequential::new().push(stem);
        let mut s = seed;
        for (t, ch, n, stride) in Self::SETTINGS {
            let out = make_divisible(ch as f64 * width, 8);
            for i in 0..n {
                s += 10;
                features = features.push(InvertedResidual::new(
                    c,
                    out,
                    if i == 0 { stride } else { 1 },
                    t,
                    s,
                    dev,
                )?);
                c = out;
            }
        }
        features = features.push(ConvNormAct::new(
            c,
            last,
            1,
            1,
            1,
            1e-5,
            relu6,
            s + 10,
            dev,
        )?);
        let classifier = Sequential::new()
            .push(Dropout::new(0.2, seed + 500))
            .push(Linear::try_new(last, classes, true, seed + 501, dev)?);
        let model = MobileNetV2 {
            features,
            classifier,
        };
        init_like_torchvision(&model, seed, dev, &|s, k| init::normal(s, 0.01, k, dev))?;
        Ok(model)
    }
}

features_pool_classifier!(MobileNetV2);

/// MobileNet v3's block: optional 1×1 expansion, depthwise convolution, optional
/// squeeze-and-excitation (hardsigmoid gate), linear 1×1 projection, named `block.0`… as
/// in torchvision; the input is added back where the shape is kept.
pub struct InvertedResidualV3 {
    /// the layers, in order
    pub block: Sequential,
    /// stride 1 and as many channels out as in
    pub residual: bool,
}

impl Module for InvertedResidualV3 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.block.forward(x).map_err(|e| e.in_layer("block"))?;
        if self.residual {
            h.add(x)
        } else {
            Ok(h)
        }
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        let h = Pass::summary(name, rows).run("block", &self.block, x)?;
        if self.residual {
            h.add(x)
        } else {
            Ok(h)
        }
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("block", &self.block)]
    }
}

/// MobileNet v3-small in torchvision's layout (`features.0`–`features.12`, global average
/// pooling, `classifier.0` linear to 1024, hardswish, dropout, `classifier.3`).
pub struct MobileNetV3 {
    /// the convolutional trunk
    pub features: Sequential,
    /// the two-layer classifier
    pub classifier: Sequential,
}

impl MobileNetV3 {
    /// torchvision's v3-small blocks: input, kernel, expanded, output channels, SE,
    /// hardswish (else ReLU), stride.
    pub const SMALL: [(usize, usize, usize, usize, bool, bool, usize); 11] = [
        (16, 3, 16, 16, true, false, 2),
        (16, 3, 72, 24, false, false, 2),
        (24, 3, 88, 24, false, false, 1),
        (24, 5, 96, 40, true, true, 2),
        (40, 5, 240, 40, true, true, 1),
        (40, 5, 240, 40, true, true, 1),
        (40, 5, 120, 48, true, true, 1),
        (48, 5, 144, 48, true, true, 1),
        (48, 5, 288, 96, true, true, 2),
        (96, 5, 576, 96, true, true, 1),
        (96, 5, 576, 96, true, true, 1),
    ];

    /// torchvision's `mobilenet_v3_small(num_classes=classes)` (batch norm eps 1e-3).
    pub fn small(classes: usize, seed: u64, dev: &Device) -> Result<MobileNetV3> {
        let eps = 1e-3;
        let hs = Activation::Hardswish;
        let mut features =
            Sequential::new().push(ConvNormAct::new(3, 16, 3, 2, 1, eps, hs, seed, dev)?);
        let mut s = seed;
        for (c_in, k, exp, c_out, se, use_hs, stride) in Self::SMALL {
            s += 10;
            let act = if use_hs { hs } else { Activation::Relu };
            let mut block = Sequential::new();
            if exp != c_in {
                block = block.push(ConvNormAct::new(c_in, exp, 1, 1, 1, eps, act, s, dev)?);
            }
            block = block.push(ConvNormAct::new(
                exp,
                exp,
                k,
                stride,
                exp,
                eps,
                act,
                s + 1,
                dev,
            )?);
            if se {
                let squeeze = make_divisible((exp / 4) as f64, 8);
                block = block.push(SqueezeExcitation::new(
                    exp,
                    squeeze,
                    Activation::Relu,
                    Gate::Hardsigmoid,
                    s + 2,
                    dev,
                )?);
            }
            block = block.push(ConvNormAct::new(
                exp,
                c_out,
                1,
                1,
                1,
                eps,
                Activation::None,
                s + 3,
                dev,
            )?);
            features = features.push(InvertedResidualV3 {
                block,
                residual: stride == 1 && c_in == c_out,
            });
        }
        features = features.push(ConvNormAct::new(96, 576, 1, 1, 1, eps, hs, s + 10, dev)?);
        let classifier = Sequential::new()
            .push(Linear::try_new(576, 1024, true, seed + 500, dev)?)
            .push(Hardswish)
            .push(Dropout::new(0.2, seed + 501))
            .push(Linear::try_new(1024, classes, true, seed + 502, dev)?);
        let model = MobileNetV3 {
            features,
            classifier,
        };
        init_like_torchvision(&model, seed, dev, &|s, k| init::normal(s, 0.01, k, dev))?;
        Ok(model)
    }
}

features_pool_classifier!(MobileNetV3);
