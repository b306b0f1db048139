//! A small YOLO-style detector: a darknet-like backbone (3×3 convolutions with batch norm
//! and leaky ReLU, 2×2 max pooling, channels doubling at each pooling, a 1×1 bottleneck
//! near the end, as in tiny YOLOv2) to stride 8, then the 1×1 detection head. The
//! backbone also carries the classification-with-localisation and landmark networks.
//!
//! Sized for the digit canvases: at `width` 16 the backbone's last 3×3 convolution sees
//! 54×54 pixels, more than the largest digit (40 px), so every cell judges whole digits.

use fovea_core::nn::{BatchNorm2d, Conv2d, MaxPool2d, Module, Pass, Sequential, SummaryRow};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Error, Result, Tensor};

use crate::detection::{LandmarkHead, LocalizationHead, YoloHead, YoloSpec};

/// Convolution (no bias), batch norm, leaky ReLU with slope 0.1: darknet's layer.
pub struct DarknetConv {
    /// `conv`
    pub conv: Conv2d,
    /// `bn`
    pub bn: BatchNorm2d,
}

impl DarknetConv {
    /// A `k×k` layer (padding `k/2`) from `c_in` to `c_out` channels.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<DarknetConv> {
        let opts = Conv2dOptions {
            stride: [stride, stride],
            padding: [k / 2, k / 2],
            ..Default::default()
        };
        Ok(DarknetConv {
            conv: Conv2d::new(c_in, c_out, [k, k], opts, false, seed, dev)?,
            bn: BatchNorm2d::new(c_out, dev),
        })
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        Ok(pass
            .conv_bn(("conv", &self.conv), ("bn", &self.bn), x)?
            .leaky_relu(0.1))
    }
}

impl Module for DarknetConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("conv", &self.conv), ("bn", &self.bn)]
    }
}

/// The backbone: `width`, `2·width`, `4·width` channels each followed by 2×2 pooling,
/// then `8·width` (3×3), `4·width` (1×1), `8·width` (3×3): stride 8, `8·width` channels
/// out.
pub struct Darknet {
    /// `features.0` … `features.8`
    pub features: Sequential,
    /// channels of the output
    pub out_channels: usize,
}

impl Darknet {
    /// Total stride: an `H×W` input gives `H/8 × W/8` cells.
    pub const STRIDE: usize = 8;

    /// A backbone for `in_channels`-channel images.
    pub fn tiny(in_channels: usize, width: usize, seed: u64, dev: &Device) -> Result<Darknet> {
        if width == 0 || in_channels == 0 {
            return Err(Error::op(
                "Darknet::tiny",
                format!("needs positive channels and width, got {in_channels} and {width}"),
            ));
        }
        let w = width;
        let pool = || MaxPool2d(Pool2dOptions::square(2));
        let features = Sequential::new()
            .push(DarknetConv::new(in_channels, w, 3, 1, seed, dev)?)
            .push(pool())
            .push(DarknetConv::new(w, 2 * w, 3, 1, seed + 1, dev)?)
            .push(pool())
            .push(DarknetConv::new(2 * w, 4 * w, 3, 1, seed + 2, dev)?)
            .push(pool())
            .push(DarknetConv::new(4 * w, 8 * w, 3, 1, seed + 3, dev)?)
            .push(DarknetConv::new(8 * w, 4 * w, 1, 1, seed + 4, dev)?)
            .push(DarknetConv::new(4 * w, 8 * w, 3, 1, seed + 5, dev)?);
        Ok(Darknet {
            features,
            out_channels: 8 * w,
        })
    }
}

impl Module for Darknet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.features.forward(x).map_err(|e| e.in_layer("features"))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("features", &self.features)]
    }
}

/// The detector: [`Darknet`] then a [`YoloHead`]; `[N, C, S·8, S·8]` images to
/// `[N, B·(5 + C), S, S]` raw outputs, which [`YoloSpec::loss`] and
/// [`YoloSpec::decode`] read.
pub struct Yolo {
    /// `backbone`
    pub backbone: Darknet,
    /// `head`
    pub head: YoloHead,
    /// the output's geometry
    pub spec: YoloSpec,
}

impl Yolo {
    /// A detector for `spec` on `in_channels`-channel images of `spec.image_size`, whose
    /// grid must be the image size over 8.
    pub fn tiny(
        spec: YoloSpec,
        in_channels: usize,
        width: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<Yolo> {
        if spec.grid * Darknet::STRIDE != spec.image_size as usize {
            return Err(Error::op(
                "Yolo::tiny",
                format!(
                    "the backbone has stride {}: a {} px image gives a grid of {}, not {}",
                    Darknet::STRIDE,
                    spec.image_size,
                    spec.image_size as usize / Darknet::STRIDE,
                    spec.grid
                ),
            ));
        }
        let backbone = Darknet::tiny(in_channels, width, seed, dev)?;
        let head = YoloHead::new(backbone.out_channels, &spec, seed + 100, dev)?;
        Ok(Yolo {
            backbone,
            head,
            spec,
        })
    }
}

impl Module for Yolo {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut pass = Pass::forward();
        let h = pass.run("backbone", &self.backbone, x)?;
        pass.run("head", &self.head, &h)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("backbone", &self.backbone), ("head", &self.head)]
    }
}

/// One object per image: [`Darknet`], then a fully connected head — [`LocalizationHead`]
/// (`P_c`, box, classes) or [`LandmarkHead`] (`2·L` coordinates) — over two views of its
/// features: their maximum over the image (what is there, wherever it is) and a strided
/// 3×3 layer's `4·width` channels at stride 16, flattened (where it is). With the
/// flattened map alone, every position needs its own classifier weights: the class was
/// right on 39% of held-out digits after 10,000 canvases.
pub struct Localizer {
    /// `backbone`
    pub backbone: Darknet,
    /// `reduce`
    pub reduce: Sequential,
    /// `head`
    pub head: Box<dyn Module>,
}

impl Localizer {
    fn trunk(
        in_channels: usize,
        image_size: usize,
        width: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<(Darknet, Sequential, usize)> {
        if image_size == 0 || !image_size.is_multiple_of(32) {
            return Err(Error::op(
                "Localizer",
                format!("needs an image size that is a positive multiple of 32 (stride 8, then two stride-2 layers), got {image_size}"),
            ));
        }
        let backbone = Darknet::tiny(in_channels, width, seed, dev)?;
        let reduce = Sequential::new()
            .push(DarknetConv::new(
                backbone.out_channels,
                4 * width,
                3,
                2,
                seed + 10,
                dev,
            )?)
            .push(DarknetConv::new(
                4 * width,
                4 * width,
                3,
                2,
                seed + 11,
                dev,
            )?);
        let side = image_size / 32;
        let features = backbone.out_channels + 4 * width * side * side;
        Ok((backbone, reduce, features))
    }

    /// Classification with localisation: `[N, 5 + classes]` outputs for
    /// [`crate::detection::localization_loss`].
    pub fn boxes(
        in_channels: usize,
        image_size: usize,
        classes: usize,
        width: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<Localizer> {
        let (backbone, reduce, features) = Self::trunk(in_channels, image_size, width, seed, dev)?;
        Ok(Localizer {
            backbone,
            reduce,
            head: Box::new(LocalizationHead::new(features, classes, seed + 20, dev)),
        })
    }

    /// Landmark regression: `[N, 2·landmarks]` outputs for
    /// [`crate::detection::landmark_loss`].
    pub fn landmarks(
        in_channels: usize,
        image_size: usize,
        landmarks: usize,
        width: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<Localizer> {
        let (backbone, reduce, features) = Self::trunk(in_channels, image_size, width, seed, dev)?;
        Ok(Localizer {
            backbone,
            reduce,
            head: Box::new(LandmarkHead::new(features, landmarks, seed + 20, dev)),
        })
    }
}

impl Localizer {
    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let h = pass.run("backbone", &self.backbone, x)?;
        let what = h.max_dims(&[2, 3], false)?;
        let r = pass.run("reduce", &self.reduce, &h)?.flatten(1)?;
        pass.run("head", self.head.as_ref(), &Tensor::cat(&[&what, &r], 1)?)
    }
}

impl Module for Localizer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![
            ("backbone", &self.backbone),
            ("reduce", &self.reduce),
            ("head", self.head.as_ref()),
        ]
    }
}
