//! LeNet-5 in its modern form: ReLU, max pooling, dropout, softmax cross-entropy.

use fovea_core::nn::{Conv2d, Dropout, Flatten, Linear, MaxPool2d, Module, Relu, Sequential};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Error, Result, Tensor};

/// Modern LeNet-5 for 1×28×28 inputs: `features` (two 5×5 convs with ReLU and 2×2 max
/// pooling; the first pads by 2 so 28×28 maps to the classic 32×32 geometry) and
/// `classifier` (400 → 120 → 84 → classes, dropout after the first layer).
pub struct LeNet5 {
    /// conv1 (`features.0`), conv2 (`features.3`)
    pub features: Sequential,
    /// fc1 (`classifier.1`), fc2 (`classifier.4`), fc3 (`classifier.6`)
    pub classifier: Sequential,
}

impl LeNet5 {
    /// A LeNet-5 with `classes` outputs and dropout probability `dropout`, initialised
    /// from `seed`.
    pub fn new(classes: usize, dropout: f32, seed: u64, device: &Device) -> Result<LeNet5> {
        if !(0.0..=1.0).contains(&dropout) {
            return Err(Error::op(
                "LeNet5",
                format!("the dropout probability must lie in [0, 1], got {dropout}"),
            ));
        }
        let pad2 = Conv2dOptions {
            padding: [2, 2],
            ..Default::default()
        };
        let features = Sequential::new()
            .push(Conv2d::new(1, 6, [5, 5], pad2, true, seed, device)?)
            .push(Relu)
            .push(MaxPool2d(Pool2dOptions::square(2)))
            .push(Conv2d::new(
                6,
                16,
                [5, 5],
                Conv2dOptions::default(),
                true,
                seed + 1,
                device,
            )?)
            .push(Relu)
            .push(MaxPool2d(Pool2dOptions::square(2)));
        let classifier = Sequential::new()
            .push(Flatten)
            .push(Linear::try_new(16 * 5 * 5, 120, true, seed + 2, device)?)
            .push(Relu)
            .push(Dropout::new(dropout, seed + 3))
            .push(Linear::try_new(120, 84, true, seed + 4, device)?)
            .push(Relu)
            .push(Linear::try_new(84, classes, true, seed + 5, device)?);
        Ok(LeNet5 {
            features,
            classifier,
        })
    }
}

impl Module for LeNet5 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.classifier.forward(&self.features.forward(x)?)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![
            ("features", &self.features),
            ("classifier", &self.classifier),
        ]
    }
}
