//! LeNet-5 as LeCun et al. (1998) describe it: trainable subsampling with sigmoids, C3's
//! partial connection table, a scaled-tanh F6 and an RBF output layer that measures the
//! distance of F6's output to fixed 7×12 bitmaps of the digits.

use fovea_core::nn::{init, join, Conv2d, Linear, Module, SummaryRow};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Error, Result, Tensor};

/// S2/S4: the average of each 2×2 block times a learned per-map coefficient, plus a
/// learned per-map bias, through a sigmoid (2 parameters per map).
pub struct Subsampling {
    /// `[maps]`
    pub coefficient: Tensor,
    /// `[maps]`
    pub bias: Tensor,
}

impl Subsampling {
    /// Subsampling over `maps` feature maps (coefficient 1, bias 0).
    pub fn new(maps: usize, device: &Device) -> Subsampling {
        Subsampling {
            coefficient: Tensor::ones(&[maps], device).requires_grad(),
            bias: Tensor::zeros(&[maps], device).requires_grad(),
        }
    }
}

impl Module for Subsampling {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.coefficient.shape()[0];
        let avg = x.avg_pool2d(Pool2dOptions::square(2))?;
        Ok(avg
            .mul(&self.coefficient.reshape(&[1, c, 1, 1])?)?
            .add(&self.bias.reshape(&[1, c, 1, 1])?)?
            .sigmoid())
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "coefficient"), &self.coefficient);
        f(&join(prefix, "bias"), &self.bias);
    }
}

/// Which of S2's 6 maps feed each of C3's 16 maps (Table I of the paper): six maps see 3
/// neighbours, six see 4 neighbours, three see 4 non-neighbours, one sees all 6.
pub const C3_TABLE: [&[usize]; 16] = [
    &[0, 1, 2],
    &[1, 2, 3],
    &[2, 3, 4],
    &[3, 4, 5],
    &[4, 5, 0],
    &[5, 0, 1],
    &[0, 1, 2, 3],
    &[1, 2, 3, 4],
    &[2, 3, 4, 5],
    &[3, 4, 5, 0],
    &[4, 5, 0, 1],
    &[5, 0, 1, 2],
    &[0, 1, 3, 4],
    &[1, 2, 4, 5],
    &[0, 2, 3, 5],
    &[0, 1, 2, 3, 4, 5],
];

/// C3: 16 maps of 5×5 convolutions, each over only the S2 maps its table row lists, so it
/// has 1,516 parameters instead of a full layer's 2,416.
pub struct PartialConv {
    /// per output map: `[1, inputs, 5, 5]`
    pub weights: Vec<Tensor>,
    /// `[16]`
    pub bias: Tensor,
}

impl PartialConv {
    fn new(seed: u64, device: &Device) -> PartialConv {
        let weights = C3_TABLE
            .iter()
            .enumerate()
            .map(|(i, ins)| {
                init::uniform(
                    &[1, ins.len(), 5, 5],
                    init::default_bound(ins.len() * 25),
                    seed + i as u64,
                    device,
                )
                .requires_grad()
            })
            .collect();
        PartialConv {
            weights,
            bias: init::uniform(&[16], init::default_bound(150), seed + 99, device).requires_grad(),
        }
    }

    /// The full `[16, 6, 5, 5]` weight with zeros where the table has no connection
    /// (differentiable in the compact weights).
    fn full_weight(&self) -> Result<Tensor> {
        let dev = self.bias.device();
        let zero = Tensor::zeros(&[1, 1, 5, 5], dev);
        let rows = C3_TABLE
            .iter()
            .zip(&self.weights)
            .map(|(ins, w)| {
                let cols = (0..6)
                    .map(|j| match ins.iter().position(|&i| i == j) {
                        Some(k) => w.narrow(1, k, 1),
                        None => Ok(zero.clone()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&cols.iter().collect::<Vec<_>>(), 1)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&rows.iter().collect::<Vec<_>>(), 0)
    }
}

impl Module for PartialConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(
            &self.full_weight()?,
            Some(&self.bias),
            Conv2dOptions::default(),
        )
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (i, w) in self.weights.iter().enumerate() {
            f(&join(prefix, &format!("weight{i}")), w);
        }
        f(&join(prefix, "bias"), &self.bias);
    }
    fn macs(&self, _input: &[usize], output: &[usize]) -> usize {
        let per_map: usize = C3_TABLE.iter().map(|ins| ins.len() * 25).sum();
        output[0] * output[2] * output[3] * per_map
    }
}

/// The digits as 7×12 bitmaps ('#' = +1, '.' = −1), stylised after the paper's Figure 3.
const BITMAPS: [&str; 10] = [
    "..###..|.#...#.|#.....#|#.....#|#.....#|#.....#|#.....#|#.....#|#.....#|#.....#|.#...#.|..###..",
    "...#...|..##...|.#.#...|...#...|...#...|...#...|...#...|...#...|...#...|...#...|...#...|.#####.",
    ".####..|#....#.|......#|......#|.....#.|....#..|...#...|..#....|.#.....|#......|#......|#######",
    ".#####.|#.....#|......#|......#|.....#.|..###..|.....#.|......#|......#|......#|#.....#|.#####.",
    ".....#.|....##.|...#.#.|..#..#.|.#...#.|#....#.|#######|.....#.|.....#.|.....#.|.....#.|.....#.",
    "#######|#......|#......|#......|######.|......#|......#|......#|......#|......#|#.....#|.#####.",
    "..####.|.#.....|#......|#......|#......|######.|#.....#|#.....#|#.....#|#.....#|#.....#|.#####.",
    "#######|......#|.....#.|.....#.|....#..|....#..|...#...|...#...|..#....|..#....|..#....|..#....",
    ".#####.|#.....#|#.....#|#.....#|.#...#.|..###..|.#...#.|#.....#|#.....#|#.....#|#.....#|.#####.",
    ".#####.|#.....#|#.....#|#.....#|#.....#|.######|......#|......#|......#|......#|.....#.|.####..",
];

/// The RBF output: unit `i` computes `Σ_j (x_j − c_ij)²` against the fixed bitmap `c_i`;
/// the class scores returned are the negated distances (so the nearest bitmap wins).
pub struct RbfOutput {
    /// `[10, 84]` fixed centres (a buffer, not trained)
    pub centres: Tensor,
}

impl RbfOutput {
    fn new(device: &Device) -> Result<RbfOutput> {
        let values: Vec<f32> = BITMAPS
            .iter()
            .flat_map(|b| {
                b.chars()
                    .filter(|&c| c != '|')
                    .map(|c| if c == '#' { 1.0 } else { -1.0 })
            })
            .collect();
        if values.len() != 840 {
            return Err(Error::op(
                "RbfOutput",
                format!("bitmaps hold {} values, not 10 × 84", values.len()),
            ));
        }
        Ok(RbfOutput {
            centres: Tensor::from_vec(values, &[10, 84], device)?,
        })
    }
}

impl Module for RbfOutput {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // ‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖², as one matmul.
        let xx = x.square().sum_dims(&[1], true)?;
        let cc = self.centres.square().sum_dims(&[1], false)?;
        let xc = x.linear(&self.centres, None)?;
        Ok(xx.sub(&xc.mul_scalar(2.0))?.add(&cc)?.neg())
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "centres"), &self.centres);
    }
    fn macs(&self, _input: &[usize], output: &[usize]) -> usize {
        output[0] * 10 * 84
    }
}

/// LeNet-5 as published, for 1×28×28 inputs (C1 pads by 2, giving the paper's 32×32
/// geometry): C1 conv 6@5×5 → S2 → C3 (partial) → S4 → C5 conv 120@5×5 → F6 84 with
/// `1.7159·tanh(2x/3)` → RBF output. Class scores are negative squared distances.
pub struct LeNet5Classic {
    /// C1
    pub c1: Conv2d,
    /// S2
    pub s2: Subsampling,
    /// C3
    pub c3: PartialConv,
    /// S4
    pub s4: Subsampling,
    /// C5
    pub c5: Conv2d,
    /// F6
    pub f6: Linear,
    /// output
    pub output: RbfOutput,
}

impl LeNet5Classic {
    /// A classic LeNet-5 initialised from `seed`.
    pub fn new(seed: u64, device: &Device) -> Result<LeNet5Classic> {
        let pad2 = Conv2dOptions {
            padding: [2, 2],
            ..Default::default()
        };
        Ok(LeNet5Classic {
            c1: Conv2d::new(1, 6, [5, 5], pad2, true, seed, device)?,
            s2: Subsampling::new(6, device),
            c3: PartialConv::new(seed + 10, device),
            s4: Subsampling::new(16, device),
            c5: Conv2d::new(
                16,
                120,
                [5, 5],
                Conv2dOptions::default(),
                true,
                seed + 40,
                device,
            )?,
            f6: Linear::try_new(120, 84, true, seed + 41, device)?,
            output: RbfOutput::new(device)?,
        })
    }

    fn layers(&self) -> [(&'static str, &dyn Module); 7] {
        [
            ("c1", &self.c1),
            ("s2", &self.s2),
            ("c3", &self.c3),
            ("s4", &self.s4),
            ("c5", &self.c5),
            ("f6", &self.f6),
            ("output", &self.output),
        ]
    }
}

/// F6's squashing function, `A·tanh(S·x)` with A = 1.7159 and S = 2/3.
fn scaled_tanh(x: &Tensor) -> Tensor {
    x.mul_scalar(2.0 / 3.0).tanh().mul_scalar(1.7159)
}

impl Module for LeNet5Classic {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // One description of the wiring: the forward pass is a summary whose rows are
        // dropped.
        let mut rows = Vec::new();
        self.summarize("", x, &mut rows)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        self.layers().to_vec()
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        let h = self.c1.summarize(&join(name, "c1"), x, rows)?;
        let h = self.s2.summarize(&join(name, "s2"), &h, rows)?;
        let h = self.c3.summarize(&join(name, "c3"), &h, rows)?;
        let h = self.s4.summarize(&join(name, "s4"), &h, rows)?;
        // C5's maps go through the same scaled tanh as F6 (the paper squashes every layer).
        let h = scaled_tanh(&self.c5.summarize(&join(name, "c5"), &h, rows)?);
        let h = scaled_tanh(&self.f6.summarize(&join(name, "f6"), &h.flatten(1)?, rows)?);
        self.output.summarize(&join(name, "output"), &h, rows)
    }
}
