//! VGG-11/13/16/19, with and without batch norm, in torchvision's layout and `state_dict`
//! names (`features.0.weight`, …, `classifier.6.bias`), plus a feature extractor that
//! runs only as far as the deepest layer asked for.

use fovea_core::nn::{
    join, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, Module,
    Relu, Sequential,
};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Error, Result, Tensor};

/// Which VGG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VggConfig {
    /// configuration A
    Vgg11,
    /// configuration B
    Vgg13,
    /// configuration D
    Vgg16,
    /// configuration E
    Vgg19,
}

impl VggConfig {
    /// Output channels of each conv, 0 for a 2×2 max pool.
    fn layers(self) -> &'static [usize] {
        match self {
            VggConfig::Vgg11 => &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
            VggConfig::Vgg13 => &[
                64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
            ],
            VggConfig::Vgg16 => &[
                64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
            ],
            VggConfig::Vgg19 => &[
                64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512,
                512, 512, 0,
            ],
        }
    }
}

/// A VGG network: `features` (convs, ReLUs, pools), `avgpool` (7×7) and `classifier`.
pub struct Vgg {
    /// the convolutional trunk
    pub features: Sequential,
    /// adaptive average pooling to 7×7
    pub avgpool: AdaptiveAvgPool2d,
    /// the three fully connected layers
    pub classifier: Sequential,
    /// `relu<block>_<n>` names and their `features` indices
    relu_names: Vec<(String, usize)>,
}

impl Vgg {
    /// A randomly initialised VGG (seeded) with `classes` outputs.
    pub fn new(
        config: VggConfig,
        batch_norm: bool,
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Vgg> {
        Vgg::build(config, batch_norm, Some(classes), seed, device)
    }

    /// The convolutional trunk only (no classifier): what feature extraction and style
    /// transfer need, without allocating the 120M classifier weights.
    pub fn features_only(
        config: VggConfig,
        batch_norm: bool,
        seed: u64,
        device: &Device,
    ) -> Result<Vgg> {
        Vgg::build(config, batch_norm, None, seed, device)
    }

    fn build(
        config: VggConfig,
        batch_norm: bool,
        classes: Option<usize>,
        seed: u64,
        device: &Device,
    ) -> Result<Vgg> {
        let same = Conv2dOptions {
            padding: [1, 1],
            ..Default::default()
        };
        let mut features = Sequential::new();
        let mut relu_names = Vec::new();
        let (mut c, mut block, mut n) = (3, 1, 0);
        for (i, &out) in config.layers().iter().enumerate() {
            if out == 0 {
                features = features.push(MaxPool2d(Pool2dOptions::square(2)));
                (block, n) = (block + 1, 0);
                continue;
            }
            features = features.push(Conv2d::new(
                c,
                out,
                [3, 3],
                same,
                true,
                seed.wrapping_add(i as u64),
                device,
            )?);
            if batch_norm {
                features = features.push(BatchNorm2d::new(out, device));
            }
            n += 1;
            relu_names.push((format!("relu{block}_{n}"), features.len()));
            features = features.push(Relu);
            c = out;
        }
        let mut classifier = Sequential::new();
        if let Some(classes) = classes {
            classifier = classifier
                .push(Linear::try_new(
                    512 * 7 * 7,
                    4096,
                    true,
                    seed + 100,
                    device,
                )?)
                .push(Relu)
                .push(Dropout::new(0.5, seed + 101))
                .push(Linear::try_new(4096, 4096, true, seed + 102, device)?)
                .push(Relu)
                .push(Dropout::new(0.5, seed + 103))
                .push(Linear::try_new(4096, classes, true, seed + 104, device)?);
        }
        Ok(Vgg {
            features,
            avgpool: AdaptiveAvgPool2d([7, 7]),
            classifier,
            relu_names,
        })
    }

    /// The `features` index of a named layer: `relu<block>_<n>` (e.g. `relu4_2`) or a plain
    /// index (`"22"`).
    pub fn layer_index(&self, name: &str) -> Result<usize> {
        if let Ok(i) = name.parse::<usize>() {
            return if i < self.features.len() {
                Ok(i)
            } else {
                Err(Error::op(
                    "vgg",
                    format!(
                        "layer index {i} is past the last feature layer {}",
                        self.features.len() - 1
                    ),
                ))
            };
        }
        self.relu_names
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, i)| i)
            .ok_or_else(|| {
                Error::op(
                    "vgg",
                    format!(
                        "unknown layer {name:?}: use an index into features or one of {}",
                        self.layer_names().join(", ")
                    ),
                )
            })
    }

    /// The `relu<block>_<n>` names, in order.
    pub fn layer_names(&self) -> Vec<&str> {
        self.relu_names.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The activations of the named layers (see [`Vgg::layer_index`]), running the trunk
    /// only up to the deepest of them.
    pub fn extract(&self, x: &Tensor, layers: &[&str]) -> Result<Vec<Tensor>> {
        let idx = layers
            .iter()
            .map(|l| self.layer_index(l))
            .collect::<Result<Vec<_>>>()?;
        if idx.is_empty() {
            return Err(Error::op("vgg", "extract needs at least one layer"));
        }
        self.features.forward_at(x, &idx)
    }
}

impl Module for Vgg {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.classifier.is_empty() {
            return Err(Error::op(
                "vgg",
                "this VGG was built with features_only; use extract() or build it with Vgg::new",
            ));
        }
        let h = self.avgpool.forward(&self.features.forward(x)?)?;
        self.classifier.forward(&Flatten.forward(&h)?)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![
            ("features", &self.features),
            ("classifier", &self.classifier),
        ]
    }
    fn summarize(
        &self,
        name: &str,
        x: &Tensor,
        rows: &mut Vec<fovea_core::nn::SummaryRow>,
    ) -> Result<Tensor> {
        let h = self.features.summarize(&join(name, "features"), x, rows)?;
        if self.classifier.is_empty() {
            return Ok(h);
        }
        let h = self.avgpool.summarize(&join(name, "avgpool"), &h, rows)?;
        self.classifier
            .summarize(&join(name, "classifier"), &Flatten.forward(&h)?, rows)
    }
}
