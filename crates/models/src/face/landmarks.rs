//! face-api's 68-point landmark net: four densely connected blocks of separable
//! convolutions on a 112×112 face crop, global average pooling and a dense layer giving
//! 68 (x, y) points relative to the crop's padded square.

use std::path::Path;

use fovea_core::nn::{Module, Pass, SummaryRow};
use fovea_core::ops::Conv2dOptions;
use fovea_core::{Device, Error, Result, Tensor};

use super::layers::{pretrained, Dense, SeparableConv, TfConv};

/// Input side of the landmark net.
pub const LANDMARK_SIZE: usize = 112;

/// The per-channel mean the landmark and recognition nets subtract (RGB, 0..255).
pub const FACE_MEAN: [f32; 3] = [122.782, 117.001, 104.298];

/// `denseK`: `o1 = relu(c0(x))` (stride 2, SAME: the odd padding cell at the
/// bottom/right), then three stride-1 separable convolutions whose inputs are ReLUs of the
/// running sums: `o2 = c1(o1)`, `o3 = c2(relu(o1+o2))`, `o4 = c3(relu(o1+o2+o3))`,
/// `out = relu(o1+o2+o3+o4)`.
pub struct DenseBlock {
    /// `conv0`: a plain 3×3 convolution in `dense0`, separable in the others
    pub conv0: Box<dyn Module>,
    /// `conv1`, `conv2`, `conv3`
    pub convs: [SeparableConv; 3],
}

impl DenseBlock {
    fn new(cin: usize, cout: usize, seed: u64, dev: &Device) -> DenseBlock {
        let down = Conv2dOptions {
            stride: [2, 2],
            same: true,
            ..Default::default()
        };
        let keep = Conv2dOptions {
            padding: [1, 1],
            ..Default::default()
        };
        let conv0: Box<dyn Module> = if cin == 3 {
            Box::new(TfConv::new((cin, cout, 3), down, true, seed, dev))
        } else {
            Box::new(SeparableConv::new(cin, cout, down, seed, dev))
        };
        let sep = |k: u64| SeparableConv::new(cout, cout, keep, seed + 10 * k, dev);
        DenseBlock {
            conv0,
            convs: [sep(1), sep(2), sep(3)],
        }
    }
}

impl DenseBlock {
    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let mut sum = pass.run("conv0", self.conv0.as_ref(), x)?.relu();
        for (k, conv) in self.convs.iter().enumerate() {
            // o1 is already a ReLU output; later sums need one before feeding the next conv.
            let input = if k == 0 { sum.clone() } else { sum.relu() };
            sum = sum.add(&pass.run(SEP_NAMES[k], conv, &input)?)?;
        }
        Ok(sum.relu())
    }
}

const SEP_NAMES: [&str; 3] = ["conv1", "conv2", "conv3"];

impl Module for DenseBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        let mut c: Vec<(&str, &dyn Module)> = vec![("conv0", self.conv0.as_ref())];
        c.extend(
            self.convs
                .iter()
                .zip(SEP_NAMES)
                .map(|(m, n)| (n, m as &dyn Module)),
        );
        c
    }
}

/// The landmark net under the file's names (`dense0…dense3`, `fc`).
pub struct FaceLandmark68Net {
    /// the four dense blocks: 3→32→64→128→256 channels, 112→56→28→14→7
    pub dense: [DenseBlock; 4],
    /// `fc.weights [136, 256]`, `fc.bias`
    pub fc: Dense,
}

impl FaceLandmark68Net {
    /// A randomly initialised landmark net (seeded).
    pub fn new(seed: u64, dev: &Device) -> FaceLandmark68Net {
        let b = |cin, cout, k: u64| DenseBlock::new(cin, cout, seed + 100 * k, dev);
        FaceLandmark68Net {
            dense: [b(3, 32, 0), b(32, 64, 1), b(64, 128, 2), b(128, 256, 3)],
            fc: Dense::new((256, 136), true, "weights", seed + 500, dev),
        }
    }

    /// The bundled weights (`face_landmark_68.safetensors`), frozen, in eval mode.
    pub fn pretrained(path: &Path, dev: &Device) -> Result<FaceLandmark68Net> {
        pretrained(FaceLandmark68Net::new(0, dev), path)
    }
}

impl FaceLandmark68Net {
    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let mut h = x.clone();
        for (block, name) in self.dense.iter().zip(DENSE_NAMES) {
            h = pass.run(name, block, &h)?;
        }
        // TF's 7×7 stride-2 VALID average pool over the 7×7 map is the spatial mean.
        pass.run("fc", &self.fc, &h.mean_dims(&[2, 3], false)?)
    }
}

const DENSE_NAMES: [&str; 4] = ["dense0", "dense1", "dense2", "dense3"];

impl Module for FaceLandmark68Net {
    /// `[N, 136]`: x0, y0, x1, y1, … relative to the 112×112 input, from a preprocessed
    /// `[N, 3, 112, 112]` crop.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 || s[1] != 3 || s[2] != LANDMARK_SIZE || s[3] != LANDMARK_SIZE {
            return Err(Error::op(
                "face_landmark_68",
                format!("needs a [N, 3, 112, 112] input, got {s:?}"),
            ));
        }
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        let mut c: Vec<(&str, &dyn Module)> = DENSE_NAMES
            .iter()
            .zip(&self.dense)
            .map(|(n, m)| (*n, m as &dyn Module))
            .collect();
        c.push(("fc", &self.fc));
        c
    }
}
