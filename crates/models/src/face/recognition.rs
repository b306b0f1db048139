//! face-api's port of dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1):
//! a 150×150 aligned face crop to a 128-D descriptor; two faces are the same person when
//! their descriptors are closer than 0.6 (Euclidean).

use std::path::Path;

use fovea_core::nn::{Module, Pass, SummaryRow};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Error, Result, Tensor};

use super::layers::{pretrained, ConvScale, Dense};

/// Input side of the recognition net.
pub const RECOGNITION_SIZE: usize = 150;

/// A residual block (`P.conv1`, `P.conv2`). Plain: two 3×3 stride-1 convolutions and an
/// identity shortcut. Down: the first convolution is 3×3 stride-2 VALID, the shortcut a
/// 2×2 average pool; the conv path is zero-padded at the bottom/right when it comes out
/// smaller than the shortcut, and the shortcut gets zero channels appended when it has
/// fewer. `out = relu(shortcut + path)`.
pub struct DlibResidual {
    /// 3×3 (stride 2 VALID when down), scale, ReLU
    pub conv1: ConvScale,
    /// 3×3 stride 1 pad 1, scale, no ReLU
    pub conv2: ConvScale,
    /// whether the block halves the map
    pub down: bool,
}

impl DlibResidual {
    fn new(cin: usize, cout: usize, down: bool, seed: u64, dev: &Device) -> DlibResidual {
        let pad1 = Conv2dOptions {
            padding: [1, 1],
            ..Default::default()
        };
        let first = if down {
            Conv2dOptions {
                stride: [2, 2],
                ..Default::default()
            }
        } else {
            pad1
        };
        DlibResidual {
            conv1: ConvScale::new((cin, cout, 3), first, true, seed, dev),
            conv2: ConvScale::new((cout, cout, 3), pad1, false, seed + 1, dev),
            down,
        }
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let o = pass.run("conv1", &self.conv1, x)?;
        let mut o = pass.run("conv2", &self.conv2, &o)?;
        if !self.down {
            return o.add_relu(x);
        }
        let mut p = x.avg_pool2d(Pool2dOptions::square(2))?;
        let (ps, os) = (p.shape().to_vec(), o.shape().to_vec());
        if os[2] < ps[2] || os[3] < ps[3] {
            o = o.pad(&[0, ps[3] - os[3], 0, ps[2] - os[2]], 0.0)?;
        }
        if ps[1] < os[1] {
            p = p.pad(&[0, 0, 0, 0, 0, os[1] - ps[1]], 0.0)?;
        }
        p.add_relu(&o)
    }
}

impl Module for DlibResidual {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("conv1", &self.conv1), ("conv2", &self.conv2)]
    }
}

/// The residual stages in order: name, input and output channels, whether it halves.
const STAGES: [(&str, usize, usize, bool); 14] = [
    ("conv32_1", 32, 32, false),
    ("conv32_2", 32, 32, false),
    ("conv32_3", 32, 32, false),
    ("conv64_down", 32, 64, true),
    ("conv64_1", 64, 64, false),
    ("conv64_2", 64, 64, false),
    ("conv64_3", 64, 64, false),
    ("conv128_down", 64, 128, true),
    ("conv128_1", 128, 128, false),
    ("conv128_2", 128, 128, false),
    ("conv256_down", 128, 256, true),
    ("conv256_1", 256, 256, false),
    ("conv256_2", 256, 256, false),
    ("conv256_down_out", 256, 256, true),
];

/// The recognition ResNet under the file's names: `conv32_down` (7×7 stride-2 VALID,
/// scale, ReLU), a 3×3 stride-2 VALID max pool, the 14 residual stages, the spatial mean
/// and `fc` (`[128, 256]`, no bias).
pub struct FaceRecognitionNet {
    /// the stem
    pub conv32_down: ConvScale,
    /// the residual stages, in [`STAGES`] order
    pub stages: Vec<DlibResidual>,
    /// the 256 → 128 projection
    pub fc: Dense,
}

impl FaceRecognitionNet {
    /// A randomly initialised recognition net (seeded).
    pub fn new(seed: u64, dev: &Device) -> FaceRecognitionNet {
        let stem = Conv2dOptions {
            stride: [2, 2],
            ..Default::default()
        };
        FaceRecognitionNet {
            conv32_down: ConvScale::new((3, 32, 7), stem, true, seed, dev),
            stages: STAGES
                .iter()
                .enumerate()
                .map(|(i, &(_, cin, cout, down))| {
                    DlibResidual::new(cin, cout, down, seed + 10 * (i as u64 + 1), dev)
                })
                .collect(),
            fc: Dense::new((256, 128), false, "", seed + 999, dev),
        }
    }

    /// The bundled weights (`face_recognition.safetensors`), frozen, in eval mode.
    pub fn pretrained(path: &Path, dev: &Device) -> Result<FaceRecognitionNet> {
        pretrained(FaceRecognitionNet::new(0, dev), path)
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 || s[1] != 3 || s[2] != RECOGNITION_SIZE || s[3] != RECOGNITION_SIZE {
            return Err(Error::op(
                "face_recognition",
                format!("needs a [N, 3, 150, 150] input, got {s:?}"),
            ));
        }
        let h = pass.run("conv32_down", &self.conv32_down, x)?;
        let mut h = h.max_pool2d(Pool2dOptions {
            kernel: [3, 3],
            ..Pool2dOptions::square(2)
        })?;
        for (stage, (name, ..)) in self.stages.iter().zip(STAGES) {
            h = pass.run(name, stage, &h)?;
        }
        pass.run("fc", &self.fc, &h.mean_dims(&[2, 3], false)?)
    }
}

impl Module for FaceRecognitionNet {
    /// `[N, 128]` descriptors (not normalised) from preprocessed `[N, 3, 150, 150]` crops.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        let mut c: Vec<(&str, &dyn Module)> = vec![("conv32_down", &self.conv32_down)];
        c.extend(
            self.stages
                .iter()
                .zip(STAGES)
                .map(|(m, (n, ..))| (n, m as &dyn Module)),
        );
        c.push(("fc", &self.fc));
        c
    }
}
