//! AlexNet in torchvision's variant (Krizhevsky's "one weird trick" single-tower form: 64,
//! 192, 384, 256, 256 filters, no local response normalisation) and `state_dict` names
//! (`features.0` … `features.10`, `classifier.1/4/6`).

use fovea_core::nn::{
    AdaptiveAvgPool2d, Conv2d, Dropout, Linear, MaxPool2d, Module, Pass, Relu, Sequential,
    SummaryRow,
};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Result, Tensor};

/// AlexNet: `features` (five convolutions, three 3×3 stride-2 max pools), `avgpool` to
/// 6×6 and `classifier` (dropout, 9216 → 4096 → 4096 → classes).
pub struct AlexNet {
    /// the convolutional trunk
    pub features: Sequential,
    /// adaptive average pooling to 6×6
    pub avgpool: AdaptiveAvgPool2d,
    /// the fully connected layers
    pub classifier: Sequential,
}

impl AlexNet {
    /// torchvision's `alexnet(num_classes=classes, dropout=0.5)` with PyTorch's default
    /// initialisation from `seed`.
    pub fn new(classes: usize, seed: u64, dev: &Device) -> Result<AlexNet> {
        let conv = |c_in, c_out, k: usize, stride: usize, pad: usize, s: u64| {
            let opts = Conv2dOptions {
                stride: [stride, stride],
                padding: [pad, pad],
                ..Default::default()
            };
            Conv2d::new(c_in, c_out, [k, k], opts, true, seed + s, dev)
        };
        let pool = || {
            MaxPool2d(Pool2dOptions {
                kernel: [3, 3],
                stride: [2, 2],
                ..Default::default()
            })
        };
        let features = Sequential::new()
            .push(conv(3, 64, 11, 4, 2, 0)?)
            .push(Relu)
            .push(pool())
            .push(conv(64, 192, 5, 1, 2, 1)?)
            .push(Relu)
            .push(pool())
            .push(conv(192, 384, 3, 1, 1, 2)?)
            .push(Relu)
            .push(conv(384, 256, 3, 1, 1, 3)?)
            .push(Relu)
            .push(conv(256, 256, 3, 1, 1, 4)?)
            .push(Relu)
            .push(pool());
        let classifier = Sequential::new()
            .push(Dropout::new(0.5, seed + 10))
            .push(Linear::try_new(256 * 6 * 6, 4096, true, seed + 11, dev)?)
            .push(Relu)
            .push(Dropout::new(0.5, seed + 12))
            .push(Linear::try_new(4096, 4096, true, seed + 13, dev)?)
            .push(Relu)
            .push(Linear::try_new(4096, classes, true, seed + 14, dev)?);
        Ok(AlexNet {
            features,
            avgpool: AdaptiveAvgPool2d([6, 6]),
            classifier,
        })
    }
}

impl AlexNet {
    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let h = pass.run("features", &self.features, x)?;
        let h = pass.run("avgpool", &self.avgpool, &h)?;
        pass.run("classifier", &self.classifier, &h.flatten(1)?)
    }
}

impl Module for AlexNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![
            ("features", &self.features),
            ("classifier", &self.classifier),
        ]
    }
}
