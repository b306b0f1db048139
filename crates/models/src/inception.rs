//! GoogLeNet (Inception v1) in torchvision's layout and `state_dict` names: `BasicConv2d`
//! (convolution without bias, batch norm with eps 1e-3, ReLU), inception modules of four
//! branches concatenated along channels (1×1; 1×1 bottleneck then 3×3; 1×1 bottleneck then
//! a second 3×3 where the paper has 5×5, as torchvision has it; 3×3 max pool then 1×1),
//! and two auxiliary classifiers that run in training only.

use std::sync::atomic::{AtomicBool, Ordering};

use fovea_core::nn::{
    init, AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, Module, Pass,
    Sequential, SummaryRow,
};
use fovea_core::ops::{Conv2dOptions, Pool2dOptions};
use fovea_core::{Device, Result, Tensor};

/// torchvision's `BasicConv2d`: `conv` (no bias), `bn` (eps 1e-3), ReLU.
pub struct BasicConv2d {
    /// the convolution
    pub conv: Conv2d,
    /// its batch norm
    pub bn: BatchNorm2d,
}

impl BasicConv2d {
    /// A `k×k` convolution with `stride` and `padding`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
        seed: u64,
        dev: &Device,
    ) -> Result<BasicConv2d> {
        let opts = Conv2dOptions {
            stride: [stride, stride],
            padding: [padding, padding],
            ..Default::default()
        };
        Ok(BasicConv2d {
            conv: Conv2d::new(c_in, c_out, [k, k], opts, false, seed, dev)?,
            bn: BatchNorm2d::with_eps(c_out, 1e-3, dev),
        })
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        pass.conv_bn_relu(("conv", &self.conv), ("bn", &self.bn), x)
    }
}

impl Module for BasicConv2d {
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

fn max_pool(k: usize, stride: usize, padding: usize) -> MaxPool2d {
    MaxPool2d(Pool2dOptions {
        kernel: [k, k],
        stride: [stride, stride],
        padding: [padding, padding],
        ceil_mode: true,
        ..Default::default()
    })
}

/// An inception module: four branches whose outputs are concatenated along channels.
pub struct Inception {
    /// 1×1
    pub branch1: BasicConv2d,
    /// 1×1 bottleneck, 3×3
    pub branch2: Sequential,
    /// 1×1 bottleneck, 3×3 (torchvision's; the paper's is 5×5)
    pub branch3: Sequential,
    /// 3×3 max pool (stride 1), 1×1 projection
    pub branch4: Sequential,
}

impl Inception {
    /// torchvision's `Inception(in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)`.
    pub fn new(c_in: usize, ch: [usize; 6], seed: u64, dev: &Device) -> Result<Inception> {
        let [c1, r3, c3, r5, c5, pool] = ch;
        Ok(Inception {
            branch1: BasicConv2d::new(c_in, c1, 1, 1, 0, seed, dev)?,
            branch2: Sequential::new()
                .push(BasicConv2d::new(c_in, r3, 1, 1, 0, seed + 1, dev)?)
                .push(BasicConv2d::new(r3, c3, 3, 1, 1, seed + 2, dev)?),
            branch3: Sequential::new()
                .push(BasicConv2d::new(c_in, r5, 1, 1, 0, seed + 3, dev)?)
                .push(BasicConv2d::new(r5, c5, 3, 1, 1, seed + 4, dev)?),
            branch4: Sequential::new()
                .push(max_pool(3, 1, 1))
                .push(BasicConv2d::new(c_in, pool, 1, 1, 0, seed + 5, dev)?),
        })
    }

    fn run(&self, x: &Tensor, pass: &mut Pass) -> Result<Tensor> {
        let b1 = pass.run("branch1", &self.branch1, x)?;
        let b2 = pass.run("branch2", &self.branch2, x)?;
        let b3 = pass.run("branch3", &self.branch3, x)?;
        let b4 = pass.run("branch4", &self.branch4, x)?;
        Tensor::cat(&[&b1, &b2, &b3, &b4], 1)
    }
}

impl Module for Inception {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &mut Pass::forward())
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        self.run(x, &mut Pass::summary(name, rows))
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![
            ("branch1", &self.branch1),
            ("branch2", &self.branch2),
            ("branch3", &self.branch3),
            ("branch4", &self.branch4),
        ]
    }
}

/// An auxiliary classifier: 4×4 average pooling, `conv` (1×1 to 128), `fc1` (2048 →
/// 1024, ReLU), dropout 0.7, `fc2`.
pub struct InceptionAux {
    /// the 1×1 convolution
    pub conv: BasicConv2d,
    /// 2048 → 1024
    pub fc1: Linear,
    /// 1024 → classes
    pub fc2: Linear,
    dropout: Dropout,
}

impl InceptionAux {
    fn new(c_in: usize, classes: usize, seed: u64, dev: &Device) -> Result<InceptionAux> {
        Ok(InceptionAux {
            conv: BasicConv2d::new(c_in, 128, 1, 1, 0, seed, dev)?,
            fc1: Linear::try_new(2048, 1024, true, seed + 1, dev)?,
            fc2: Linear::try_new(1024, classes, true, seed + 2, dev)?,
            dropout: Dropout::new(0.7, seed + 3),
        })
    }
}

impl Module for InceptionAux {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv.forward(&x.adaptive_avg_pool2d([4, 4])?)?;
        let h = self.fc1.forward(&h.flatten(1)?)?.relu();
        self.fc2.forward(&self.dropout.forward(&h)?)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        vec![("conv", &self.conv), ("fc1", &self.fc1), ("fc2", &self.fc2)]
    }
    fn set_training(&self, training: bool) {
        self.conv.set_training(training);
        self.dropout.set_training(training);
    }
    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, &std::sync::atomic::AtomicU64)) {
        self.dropout
            .visit_counters(&fovea_core::nn::join(prefix, "dropout"), f);
    }
}

/// What GoogLeNet gives in training: the main logits and, when it has them, both
/// auxiliary classifiers' logits.
pub struct GoogLeNetOutput {
    /// the main classifier
    pub logits: Tensor,
    /// after `inception4a` (training only)
    pub aux1: Option<Tensor>,
    /// after `inception4d` (training only)
    pub aux2: Option<Tensor>,
}

impl GoogLeNetOutput {
    /// The paper's training loss: the main cross-entropy plus 0.3 times each auxiliary's.
    pub fn loss(&self, targets: &[usize]) -> Result<Tensor> {
        let mut loss = self.logits.cross_entropy(targets)?;
        for aux in self.aux1.iter().chain(&self.aux2) {
            loss = loss.add(&aux.cross_entropy(targets)?.mul_scalar(0.3))?;
        }
        Ok(loss)
    }
}

const STAGES: [(&str, usize, [usize; 6]); 9] = [
    ("inception3a", 192, [64, 96, 128, 16, 32, 32]),
    ("inception3b", 256, [128, 128, 192, 32, 96, 64]),
    ("inception4a", 480, [192, 96, 208, 16, 48, 64]),
    ("inception4b", 512, [160, 112, 224, 24, 64, 64]),
    ("inception4c", 512, [128, 128, 256, 24, 64, 64]),
    ("inception4d", 512, [112, 144, 288, 32, 64, 64]),
    ("inception4e", 528, [256, 160, 320, 32, 128, 128]),
    ("inception5a", 832, [256, 160, 320, 32, 128, 128]),
    ("inception5b", 832, [384, 192, 384, 48, 128, 128]),
];

/// GoogLeNet: stem (`conv1`–`conv3` with max pools), nine inception modules with max
/// pools between the stages, global average pooling, dropout 0.2 and `fc`; optionally
/// `aux1` and `aux2`.
pub struct GoogLeNet {
    /// the stem's convolutions: 7×7 stride 2, 1×1, 3×3
    pub stem: [BasicConv2d; 3],
    /// `inception3a` … `inception5b`
    pub inception: Vec<Inception>,
    /// the auxiliary classifiers, if built with them
    pub aux: Option<[InceptionAux; 2]>,
    /// the classifier
    pub fc: Linear,
    dropout: Dropout,
    training: AtomicBool,
}

impl GoogLeNet {
    /// torchvision's `googlenet(num_classes=classes, aux_logits=aux_logits,
    /// init_weights=True)`: weights from a normal of standard deviation 0.01 truncated at
    /// ±2, as torchvision's.
    pub fn new(classes: usize, aux_logits: bool, seed: u64, dev: &Device) -> Result<GoogLeNet> {
        let stem = [
            BasicConv2d::new(3, 64, 7, 2, 3, seed, dev)?,
            BasicConv2d::new(64, 64, 1, 1, 0, seed + 1, dev)?,
            BasicConv2d::new(64, 192, 3, 1, 1, seed + 2, dev)?,
        ];
        let inception = STAGES
            .iter()
            .enumerate()
            .map(|(i, &(_, c_in, ch))| Inception::new(c_in, ch, seed + 10 * (i as u64 + 1), dev))
            .collect::<Result<Vec<_>>>()?;
        let aux = aux_logits
            .then(|| -> Result<[InceptionAux; 2]> {
                Ok([
                    InceptionAux::new(512, classes, seed + 200, dev)?,
                    InceptionAux::new(528, classes, seed + 210, dev)?,
                ])
            })
            .transpose()?;
        let model = GoogLeNet {
            stem,
            inception,
            aux,
            fc: Linear::try_new(1024, classes, true, seed + 300, dev)?,
            dropout: Dropout::new(0.2, seed + 301),
            training: AtomicBool::new(true),
        };
        let mut k = seed.wrapping_mul(7919);
        for (name, p) in model.named_parameters() {
            k = k.wrapping_add(1);
            if p.rank() >= 2 {
                p.assign(&init::normal(p.shape(), 0.01, k, dev).clamp(-2.0, 2.0))?;
            } else if name.ends_with("bias") {
                p.assign(&Tensor::zeros(p.shape(), dev))?;
            }
        }
        Ok(model)
    }

    /// The main logits and, in training with auxiliary classifiers, theirs too.
    pub fn forward_with_aux(&self, x: &Tensor) -> Result<GoogLeNetOutput> {
        self.run(
            x,
            &mut Pass::forward(),
            self.training.load(Ordering::Relaxed),
        )
    }

    fn run(&self, x: &Tensor, pass: &mut Pass, aux_on: bool) -> Result<GoogLeNetOutput> {
        let mut h = pass.run("conv1", &self.stem[0], x)?;
        h = pass.run("maxpool1", &max_pool(3, 2, 0), &h)?;
        h = pass.run("conv2", &self.stem[1], &h)?;
        h = pass.run("conv3", &self.stem[2], &h)?;
        h = pass.run("maxpool2", &max_pool(3, 2, 0), &h)?;
        let (mut aux1, mut aux2) = (None, None);
        for (module, &(name, _, _)) in self.inception.iter().zip(&STAGES) {
            h = pass.run(name, module, &h)?;
            match (name, &self.aux) {
                ("inception3b", _) => h = pass.run("maxpool3", &max_pool(3, 2, 0), &h)?,
                ("inception4e", _) => h = pass.run("maxpool4", &max_pool(2, 2, 0), &h)?,
                ("inception4a", Some(a)) if aux_on => aux1 = Some(pass.run("aux1", &a[0], &h)?),
                ("inception4d", Some(a)) if aux_on => aux2 = Some(pass.run("aux2", &a[1], &h)?),
                _ => {}
            }
        }
        h = pass
            .run("avgpool", &AdaptiveAvgPool2d([1, 1]), &h)?
            .flatten(1)?;
        h = pass.run("dropout", &self.dropout, &h)?;
        let logits = pass.run("fc", &self.fc, &h)?;
        Ok(GoogLeNetOutput { logits, aux1, aux2 })
    }
}

impl Module for GoogLeNet {
    /// The main logits (the auxiliary classifiers are skipped; see
    /// [`GoogLeNet::forward_with_aux`]).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.run(x, &mut Pass::forward(), false)?.logits)
    }
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        Ok(self.run(x, &mut Pass::summary(name, rows), false)?.logits)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        let mut c: Vec<(&str, &dyn Module)> = vec![
            ("conv1", &self.stem[0]),
            ("conv2", &self.stem[1]),
            ("conv3", &self.stem[2]),
        ];
        for (m, (name, _, _)) in self.inception.iter().zip(STAGES) {
            c.push((name, m));
        }
        if let Some([a1, a2]) = &self.aux {
            c.push(("aux1", a1));
            c.push(("aux2", a2));
        }
        c.push(("fc", &self.fc));
        c
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
        for (_, c) in self.children() {
            c.set_training(training);
        }
        self.dropout.set_training(training);
    }
    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, &std::sync::atomic::AtomicU64)) {
        for (name, c) in self.children() {
            c.visit_counters(&fovea_core::nn::join(prefix, name), f);
        }
        self.dropout
            .visit_counters(&fovea_core::nn::join(prefix, "dropout"), f);
    }
}
