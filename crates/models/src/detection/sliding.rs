//! Sliding-window detection, the naive way and the convolutional way, on the course's
//! window classifier: a 14×14 window, a 5×5 convolution to 16 channels, 2×2 max pooling
//! (5×5×16), two fully connected layers of 400 and a classifier.
//!
//! The naive way crops every window and classifies it, recomputing the convolutions where
//! windows overlap. The convolutional way turns the fully connected layers into
//! convolutions (400 filters of 5×5×16, then 1×1 convolutions) with the same weights and
//! runs the network once over the whole image: each output position is one window's
//! scores, windows `2` pixels apart (the pooling's stride), and overlapping windows share
//! their computation.

use fovea_core::nn::{Conv2d, Linear, Module, Pass, SummaryRow};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Error, Result, Tensor};

/// The side of the window the classifier sees.
pub const WINDOW: usize = 14;
/// How far apart neighbouring windows of the convolutional form are.
pub const WINDOW_STRIDE: usize = 2;
const FILTERS: usize = 16;
const HIDDEN: usize = 400;

/// The course's window classifier, with fully connected layers: `[N, C, 14, 14]` windows
/// to `[N, K]` class scores.
pub struct WindowClassifier {
    /// 5×5, C → 16
    pub conv: Conv2d,
    /// 400 ← 16·5·5
    pub fc1: Linear,
    /// 400 ← 400
    pub fc2: Linear,
    /// K ← 400
    pub fc3: Linear,
}

/// The same network with its fully connected layers as convolutions: `[N, C, H, W]`
/// images to `[N, K, (H − 14)/2 + 1, (W − 14)/2 + 1]` scores, one per window.
pub struct ConvWindowClassifier {
    /// 5×5, C → 16 (unchanged)
    pub conv: Conv2d,
    /// 400 filters of 5×5×16 (was `fc1`)
    pub fc1: Conv2d,
    /// 400 filters of 1×1×400 (was `fc2`)
    pub fc2: Conv2d,
    /// K filters of 1×1×400 (was `fc3`)
    pub fc3: Conv2d,
}

/// Both forms' layers in order; `flatten` between the pooling and `fc1` in the fully
/// connected form. Written once for the forward pass and the summary.
fn run(
    layers: [(&str, &dyn Module); 4],
    flatten: bool,
    x: &Tensor,
    pass: &mut Pass,
) -> Result<Tensor> {
    let mut h = pass
        .run(layers[0].0, layers[0].1, x)?
        .relu()
        .max_pool2d(Pool2dOptions::square(2))?;
    if flatten {
        h = h.flatten(1)?;
    }
    h = pass.run(layers[1].0, layers[1].1, &h)?.relu();
    h = pass.run(layers[2].0, layers[2].1, &h)?.relu();
    pass.run(layers[3].0, layers[3].1, &h)
}

impl WindowClassifier {
    /// A classifier of `in_channels`-channel windows into `classes` classes.
    pub fn new(in_channels: usize, classes: usize, seed: u64, dev: &Device) -> Result<Self> {
        Ok(WindowClassifier {
            conv: Conv2d::new(
                in_channels,
                FILTERS,
                [5, 5],
                Conv2dOptions::default(),
                true,
                seed,
                dev,
            )?,
            fc1: Linear::try_new(FILTERS * 25, HIDDEN, true, seed + 1, dev)?,
            fc2: Linear::try_new(HIDDEN, HIDDEN, true, seed + 2, dev)?,
            fc3: Linear::try_new(HIDDEN, classes, true, seed + 3, dev)?,
        })
    }

    /// The convolutional form, with copies of these weights: `fc1`'s `[400, 16·5·5]`
    /// rows become `[400, 16, 5, 5]` filters (a flattened NCHW window is laid out
    /// channel, row, column, as a filter is), the others 1×1 filters.
    pub fn to_convolutional(&self) -> Result<ConvWindowClassifier> {
        let as_conv = |fc: &Linear, k: usize| -> Result<Conv2d> {
            let [out, inp] = [fc.weight.shape()[0], fc.weight.shape()[1]];
            let weight = Tensor::from_vec(
                fc.weight.to_vec()?,
                &[out, inp / (k * k), k, k],
                fc.weight.device(),
            )?;
            let bias = match &fc.bias {
                Some(b) => Some(Tensor::from_vec(b.to_vec()?, &[out], b.device())?.requires_grad()),
                None => None,
            };
            Ok(Conv2d {
                weight: weight.requires_grad(),
                bias,
                opts: Conv2dOptions::default(),
            })
        };
        let conv = Conv2d {
            weight: self.conv.weight.detach().requires_grad(),
            bias: self.conv.bias.as_ref().map(|b| b.detach().requires_grad()),
            opts: self.conv.opts,
        };
        Ok(ConvWindowClassifier {
            conv,
            fc1: as_conv(&self.fc1, 5)?,
            fc2: as_conv(&self.fc2, 1)?,
            fc3: as_conv(&self.fc3, 1)?,
        })
    }

    /// The naive sliding window: crops every `14×14` window of `image` (`[N, C, H, W]`)
    /// `stride` pixels apart and classifies the crops, as many rows of windows per batch
    /// as [`CROP_VALUES`] allows. Returns `[N, K, (H − 14)/stride + 1, (W − 14)/stride +
    /// 1]`, laid out as the convolutional form's output (equal to it for `stride` = 2).
    pub fn slide(&self, image: &Tensor, stride: usize) -> Result<Tensor> {
        let (oh, ow) = window_grid("WindowClassifier::slide", image, stride)?;
        let [n, c] = [image.shape()[0], image.shape()[1]];
        let row_values = ow * n * c * WINDOW * WINDOW;
        let band = (CROP_VALUES / row_values.max(1)).clamp(1, oh);
        let mut scores = Vec::with_capacity(oh.div_ceil(band));
        for i0 in (0..oh).step_by(band) {
            let mut crops = Vec::with_capacity(band * ow);
            for i in i0..oh.min(i0 + band) {
                let rows = image.narrow(2, i * stride, WINDOW)?;
                for j in 0..ow {
                    crops.push(rows.narrow(3, j * stride, WINDOW)?);
                }
            }
            // [windows·N, C, 14, 14], window-major → [windows·N, K]
            scores.push(self.forward(&Tensor::cat(&crops.iter().collect::<Vec<_>>(), 0)?)?);
        }
        let k = scores[0].shape()[1];
        Tensor::cat(&scores.iter().collect::<Vec<_>>(), 0)?
            .reshape(&[oh, ow, n, k])?
            .permute(&[2, 3, 0, 1])
    }
}

/// Most crop values [`WindowClassifier::slide`] classifies in one batch (4 MiB): a small
/// image's windows all at once (a 64×64 image's 676: one forward instead of one per row
/// of 26, whose small products took about twice as long in all), a large image's a band
/// of rows at a time.
pub const CROP_VALUES: usize = 1 << 20;

/// The number of window rows and columns `stride` apart that fit `image`.
fn window_grid(op: &'static str, image: &Tensor, stride: usize) -> Result<(usize, usize)> {
    let s = image.shape();
    if image.rank() != 4 || s[2] < WINDOW || s[3] < WINDOW || stride == 0 || s[0] == 0 {
        return Err(Error::op(
            op,
            format!("needs a non-empty [N, C, H, W] image of at least {WINDOW}×{WINDOW} and a positive stride, got {s:?} and stride {stride}"),
        ));
    }
    Ok(((s[2] - WINDOW) / stride + 1, (s[3] - WINDOW) / stride + 1))
}

impl WindowClassifier {
    fn layers(&self) -> [(&str, &dyn Module); 4] {
        [
            ("conv", &self.conv),
            ("fc1", &self.fc1),
            ("fc2", &self.fc2),
            ("fc3", &self.fc3),
        ]
    }
}

impl ConvWindowClassifier {
    fn layers(&self) -> [(&str, &dyn Module); 4] {
        [
            ("conv", &self.conv),
            ("fc1", &self.fc1),
            ("fc2", &self.fc2),
            ("fc3", &self.fc3),
        ]
    }
}

impl Module for WindowClassifier {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 || x.shape()[2..] != [WINDOW, WINDOW] {
            return Err(Error::op(
                "WindowClassifier",
                format!(
                    "needs [N, C, {WINDOW}, {WINDOW}] windows, got {:?}",
                    x.shape()
                ),
            ));
        }
        run(self.layers(), true, x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        run(self.layers(), true, x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        self.layers().to_vec()
    }
}

impl Module for ConvWindowClassifier {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        window_grid("ConvWindowClassifier", x, WINDOW_STRIDE)?;
        run(self.layers(), false, x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        run(self.layers(), false, x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        self.layers().to_vec()
    }
}
