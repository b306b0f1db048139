//! HED, holistically-nested edge detection (Xie & Tu 2015): a VGG16 trunk whose last ReLU
//! of each block feeds a 1×1 side output (`dsn1` … `dsn5`); the side maps are resized to
//! the input bilinearly (half-pixel centres, as `F.interpolate(align_corners=False)`),
//! fused by a 1×1 convolution (`fuse`, over the five maps in order 1…5, before any
//! sigmoid) and a sigmoid gives edge probabilities.
//!
//! The bundled weights (`vgg16_hed_bsds500.safetensors`) come from a Keras model whose
//! 2×2 pools pad 'same', which for odd sizes is PyTorch's `ceil_mode=True`; the trunk here
//! pools that way, so any input size of at least 1×1 works. Its input is Caffe's: BGR,
//! 0..255, minus [`crate::style::BGR_MEAN`] ([`crate::style::preprocess_bgr`]).

use std::path::Path;

use fovea_core::nn::{Conv2d, MaxPool2d, Module, Relu, Sequential};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{checkpoint, Device, Error, Result, Tensor};

/// The `features` indices of the ReLUs that feed the side outputs (relu1_2 … relu5_3).
pub const HED_TAPS: [usize; 5] = [3, 8, 15, 22, 29];

/// A HED edge detector in the bundled file's names (`features.N`, `dsnK`, `fuse`).
pub struct Hed {
    /// VGG16's convolutions, ReLUs and the four pools between blocks (ceil mode)
    pub features: Sequential,
    /// the side outputs, 1×1 to one channel
    pub dsn: Vec<Conv2d>,
    /// the 1×1 fusion of the five side maps
    pub fuse: Conv2d,
}

/// What [`Hed::forward_all`] gives: every map is `[N, 1, H, W]` at the input size.
pub struct HedOutput {
    /// the side outputs 1…5 after the sigmoid
    pub sides: Vec<Tensor>,
    /// the fused edge probabilities
    pub fused: Tensor,
}

impl Hed {
    /// A randomly initialised HED (seeded).
    pub fn new(seed: u64, dev: &Device) -> Result<Hed> {
        let same = Conv2dOptions {
            padding: [1, 1],
            ..Default::default()
        };
        let pool = Pool2dOptions {
            ceil_mode: true,
            ..Pool2dOptions::square(2)
        };
        let plan: [usize; 17] = [
            64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512,
        ];
        let mut features = Sequential::new();
        let mut c = 3;
        for (i, &out) in plan.iter().enumerate() {
            if out == 0 {
                features = features.push(MaxPool2d(pool));
                continue;
            }
            let conv = Conv2d::new(c, out, [3, 3], same, true, seed + i as u64, dev)?;
            features = features.push(conv).push(Relu);
            c = out;
        }
        let one = Conv2dOptions::default();
        let dsn = [64, 128, 256, 512, 512]
            .iter()
            .enumerate()
            .map(|(k, &ch)| Conv2d::new(ch, 1, [1, 1], one, true, seed + 100 + k as u64, dev))
            .collect::<Result<Vec<_>>>()?;
        let fuse = Conv2d::new(5, 1, [1, 1], one, true, seed + 200, dev)?;
        Ok(Hed {
            features,
            dsn,
            fuse,
        })
    }

    /// The bundled (or any same-named) HED weights, frozen, in eval mode. Every tensor
    /// must be there with its shape.
    pub fn pretrained(path: &Path, dev: &Device) -> Result<Hed> {
        let hed = Hed::new(0, dev)?;
        checkpoint::load_module(&hed, path)?;
        hed.freeze();
        hed.eval();
        Ok(hed)
    }

    /// The side maps before the sigmoid (`[N, 1, H, W]`, resized to the input) and the
    /// fused map before the sigmoid, from a preprocessed `[N, 3, H, W]` input.
    pub fn logits(&self, x: &Tensor) -> Result<(Vec<Tensor>, Tensor)> {
        if x.rank() != 4 || x.shape()[1] != 3 || x.shape()[2] == 0 || x.shape()[3] == 0 {
            return Err(Error::op(
                "hed",
                format!(
                    "needs a [N, 3, H, W] image of at least 1×1, got {:?}",
                    x.shape()
                ),
            ));
        }
        let (h, w) = (x.shape()[2], x.shape()[3]);
        let taps = self.features.forward_at(x, &HED_TAPS)?;
        let mut sides = Vec::with_capacity(5);
        for (k, (a, dsn)) in taps.iter().zip(&self.dsn).enumerate() {
            let s = dsn.forward(a)?;
            sides.push(if k == 0 {
                s
            } else {
                s.resize_bilinear([h, w])?
            });
        }
        let fused = self
            .fuse
            .forward(&Tensor::cat(&sides.iter().collect::<Vec<_>>(), 1)?)?;
        Ok((sides, fused))
    }

    /// Side and fused edge probabilities (sigmoids of [`Hed::logits`]).
    pub fn forward_all(&self, x: &Tensor) -> Result<HedOutput> {
        let (sides, fused) = self.logits(x)?;
        Ok(HedOutput {
            sides: sides.iter().map(Tensor::sigmoid).collect(),
            fused: fused.sigmoid(),
        })
    }
}

impl Module for Hed {
    /// The fused edge probabilities `[N, 1, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.logits(x)?.1.sigmoid())
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        const NAMES: [&str; 5] = ["dsn1", "dsn2", "dsn3", "dsn4", "dsn5"];
        let mut c: Vec<(&str, &dyn Module)> = vec![("features", &self.features)];
        c.extend(
            self.dsn
                .iter()
                .enumerate()
                .map(|(k, m)| (NAMES[k], m as &dyn Module)),
        );
        c.push(("fuse", &self.fuse));
        c
    }
}
