//! f16 tensors (`Tensor::to_dtype`, `Module::to_dtype`): conversion rounds as IEEE does
//! (and as PyTorch's `.half()`), ops keep f16 and compute in f32, gradients come back in
//! each input's dtype, mixed dtypes follow PyTorch's rules, and the GPU gives the CPU's
//! values.

mod common;

use common::rel_err;
use fovea::nn::{AvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, Module, Relu, Sequential};
use fovea::ops::{Conv2dOptions, Pool2dOptions};
use fovea::optim::{Optimizer, Sgd, SgdOptions};
use fovea::{autocast, DType, Device, Tensor};
use half::f16;

/// Values that exercise every branch of the conversion: ties to even, the largest
/// finite f16 and the first value that overflows, subnormals and their underflow, signed
/// zeros, infinities and NaN.
fn awkward() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        1.0 + 1.0 / 4096.0,        // a tie: rounds down to 1
        1.0 + 3.0 / 4096.0,        // a tie: rounds up to 1 + 2⁻⁹
        1.0 + 1.0 / 4096.0 + 1e-7, // past the tie: up
        65504.0,
        65519.0,
        65520.0, // rounds to infinity
        -1e6,
        6.0e-5,
        5.96e-8, // about the smallest subnormal
        2.98e-8, // half of it: a tie, rounds to 0
        3.0e-8,
        1e-9,
        -3.5e-6,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        std::f32::consts::PI,
    ];
    // And a spread of ordinary values, an odd count so the last f16 word is half full.
    let mut rng = common::Rng(7);
    for _ in 0..1001 {
        let e = rng.range(0, 40) as i32 - 28;
        let m = rng.range(0, 1 << 20) as f32 / (1 << 20) as f32 + 1.0;
        let s = if rng.chance(0.5) { -1.0 } else { 1.0 };
        v.push(s * m * 2f32.powi(e));
    }
    v
}

fn same_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
        assert!(same, "{what}: value {i}: got {g:e}, want {w:e}");
    }
}

fn converts_exactly(dev: &Device) {
    let v = awkward();
    let x = Tensor::from_vec(v.clone(), &[v.len()], dev).unwrap();
    let h = x.to_dtype(DType::F16).unwrap();
    assert_eq!(h.dtype(), DType::F16);
    assert_eq!(x.dtype(), DType::F32);
    let want: Vec<f32> = v.iter().map(|&a| f16::from_f32(a).to_f32()).collect();
    same_bits(
        &h.to_vec().unwrap(),
        &want,
        &format!("half on {}", dev.name()),
    );
    // Back to f32 is exact, and converting again changes nothing.
    let back = h.to_dtype(DType::F32).unwrap();
    assert_eq!(back.dtype(), DType::F32);
    same_bits(&back.to_vec().unwrap(), &want, "float");
    same_bits(&back.half().unwrap().to_vec().unwrap(), &want, "half again");
    // Every f16 bit pattern widens exactly (subnormals and NaN payloads included).
    let all: Vec<f32> = (0..=u16::MAX).map(|b| f16::from_bits(b).to_f32()).collect();
    let t = Tensor::from_vec(all.clone(), &[all.len()], dev).unwrap();
    same_bits(
        &t.half().unwrap().float().unwrap().to_vec().unwrap(),
        &all,
        "all f16 values",
    );
}

#[test]
fn conversion_rounds_to_nearest_even_on_every_device() {
    converts_exactly(&Device::cpu());
    if let Some(gpu) = common::gpu("conversion_rounds_to_nearest_even_on_every_device") {
        converts_exactly(&gpu);
    }
}

/// A small CNN: convolution, batch norm, ReLU, average pool, flatten and a linear layer.
fn net(dev: &Device) -> Sequential {
    let pad = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    Sequential::new()
        // No bias: batch norm removes it, and its gradient is zero up to rounding.
        .push(Conv2d::new(3, 8, [3, 3], pad, false, 1, dev).unwrap())
        .push(BatchNorm2d::new(8, dev))
        .push(Relu)
        // Average pooling: a max pool's choice may flip where f16 rounds two values of a
        // window to one (a tie goes to the first), which moves a gradient legitimately.
        .push(AvgPool2d(
            Pool2dOptions {
                kernel: [2, 2],
                stride: [2, 2],
                ..Default::default()
            },
            true,
        ))
        .push(Flatten)
        .push(Linear::new(8 * 5 * 5, 4, true, 2, dev))
}

fn params(m: &dyn Module) -> Vec<Tensor> {
    let mut v = Vec::new();
    m.visit_parameters("", &mut |_, t| v.push(t.clone()));
    v
}

/// One training step of `net` on `dev`, in `dtype`: the loss, every parameter's gradient
/// and every parameter after an SGD step, as f32 host values.
fn step(dev: &Device, dtype: DType) -> (f32, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let m = net(dev);
    // The f32 run starts from the f16 run's weights, so that both compute the same thing
    // up to the rounding of activations.
    m.to_dtype(DType::F16).unwrap();
    m.to_dtype(dtype).unwrap();
    for p in params(&m) {
        assert_eq!(p.dtype(), dtype);
    }
    let x = Tensor::randn(&[2, 3, 10, 10], 5, dev)
        .to_dtype(dtype)
        .unwrap();
    let y = m.forward(&x).unwrap();
    assert_eq!(y.dtype(), dtype, "the network's output");
    let loss = y.cross_entropy(&[1, 3]).unwrap();
    assert_eq!(loss.dtype(), dtype, "the loss");
    loss.backward().unwrap();
    let ps = params(&m);
    let grads: Vec<Vec<f32>> = ps
        .iter()
        .map(|p| {
            let g = p.grad().expect("every parameter has a gradient");
            assert_eq!(g.dtype(), dtype, "a gradient's dtype");
            g.to_vec().unwrap()
        })
        .collect();
    let mut opt = Sgd::new(
        ps.clone(),
        SgdOptions {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    );
    opt.step().unwrap();
    let after = ps
        .iter()
        .map(|p| {
            assert_eq!(p.dtype(), dtype, "a parameter after the step");
            p.to_vec().unwrap()
        })
        .collect();
    (loss.item().unwrap(), grads, after)
}

fn trains_in_f16(dev: &Device) -> (f32, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let (l32, g32, p32) = step(dev, DType::F32);
    let (l16, g16, p16) = step(dev, DType::F16);
    let name = dev.name();
    // f16 keeps 11 significant bits: a few units of 2⁻¹¹ through six layers.
    assert!(
        (l16 - l32).abs() <= 5e-3 * l32.abs(),
        "{name}: loss {l16} vs {l32}"
    );
    for (i, (a, b)) in g16.iter().zip(&g32).enumerate() {
        let e = rel_err(a, b);
        assert!(
            e <= 3e-2,
            "{name}: gradient {i}: rel. error {e:.2e} from f32"
        );
        assert!(
            e > 0.0,
            "{name}: gradient {i} is exactly f32's: nothing was rounded"
        );
    }
    for (i, (a, b)) in p16.iter().zip(&p32).enumerate() {
        let e = rel_err(a, b);
        assert!(
            e <= 1e-2,
            "{name}: parameter {i} after SGD: rel. error {e:.2e}"
        );
    }
    (l16, g16, p16)
}

#[test]
fn a_network_trains_in_f16_on_every_device() {
    let (l, g, p) = trains_in_f16(&Device::cpu());
    let Some(gpu) = common::gpu("a_network_trains_in_f16_on_every_device") else {
        return;
    };
    let (lg, gg, pg) = trains_in_f16(&gpu);
    // Both compute in f32 and round the same results: within an f16 unit or so.
    assert!((lg - l).abs() <= 1e-3 * l.abs(), "loss: gpu {lg}, cpu {l}");
    for (i, (a, b)) in gg.iter().zip(&g).enumerate() {
        let e = rel_err(a, b);
        assert!(
            e <= 5e-3,
            "gradient {i}: gpu against cpu rel. error {e:.2e}"
        );
    }
    for (i, (a, b)) in pg.iter().zip(&p).enumerate() {
        let e = rel_err(a, b);
        assert!(
            e <= 1e-3,
            "parameter {i}: gpu against cpu rel. error {e:.2e}"
        );
    }
}

fn mixes_as_pytorch(dev: &Device) {
    let a = Tensor::randn(&[3, 4], 1, dev);
    let h = a.half().unwrap();
    let b = Tensor::randn(&[4, 2], 2, dev);
    for (op, r) in [
        ("matmul", h.matmul(&b)),
        ("linear", h.linear(&b.transpose(0, 1).unwrap(), None)),
        (
            "conv2d",
            h.reshape(&[1, 1, 3, 4]).unwrap().conv2d(
                &Tensor::ones(&[1, 1, 2, 2], dev),
                None,
                Default::default(),
            ),
        ),
    ] {
        let e = r.expect_err(op).to_string();
        for word in [op, "float16", "float32", "[3, 4]"] {
            let word = if op == "conv2d" && word == "[3, 4]" {
                "[1, 1, 3, 4]"
            } else {
                word
            };
            assert!(e.contains(word), "{op}'s error names {word}: {e}");
        }
    }
    // Same dtypes, or under autocast, they run.
    assert_eq!(h.matmul(&b.half().unwrap()).unwrap().dtype(), DType::F16);
    assert_eq!(autocast(|| h.matmul(&b)).unwrap().shape(), &[3, 2]);
    // Elementwise ops promote to f32; a scalar keeps the tensor's dtype.
    assert_eq!(h.add(&a).unwrap().dtype(), DType::F32);
    assert_eq!(
        h.mul(&Tensor::scalar(2.0, dev)).unwrap().dtype(),
        DType::F16
    );
    assert_eq!(h.mul_scalar(2.0).dtype(), DType::F16);
    // Batch norm keeps its input's dtype whatever its parameters' (PyTorch's rule).
    let bn = BatchNorm2d::new(3, dev);
    let x = Tensor::randn(&[2, 3, 4, 4], 3, dev);
    let y32 = bn.forward(&x).unwrap();
    let y16 = bn.forward(&x.half().unwrap()).unwrap();
    assert_eq!(y16.dtype(), DType::F16);
    let e = rel_err(&y16.to_vec().unwrap(), &y32.to_vec().unwrap());
    assert!(e > 0.0 && e < 2e-3, "batch norm in f16: rel. error {e:.2e}");
    // An f16 sum rounds its result once (PyTorch sums in f32).
    let s = h.sum().to_vec().unwrap()[0];
    let exact: f32 = h.to_vec().unwrap().iter().sum();
    assert_eq!(s, f16::from_f32(exact).to_f32());
}

#[test]
fn mixed_dtypes_follow_pytorch() {
    mixes_as_pytorch(&Device::cpu());
    if let Some(gpu) = common::gpu("mixed_dtypes_follow_pytorch") {
        mixes_as_pytorch(&gpu);
    }
}

/// The gradient through `to_dtype` is the upstream gradient in the input's dtype, checked
/// against finite differences of an f32 function of `x` that goes through f16.
#[test]
fn gradients_flow_through_conversions() {
    let dev = Device::cpu();
    let x = Tensor::from_vec(vec![0.5, -1.25, 2.0, 3.0], &[4], &dev)
        .unwrap()
        .requires_grad();
    let y = x.half().unwrap().square().float().unwrap().sum();
    y.backward().unwrap();
    let g = x.grad().unwrap();
    assert_eq!(g.dtype(), DType::F32);
    // These values and their squares are exact in f16: the gradient is 2x.
    assert_eq!(g.to_vec().unwrap(), vec![1.0, -2.5, 4.0, 6.0]);
    // An f16 leaf gets an f16 gradient.
    let w = x.detach().half().unwrap().requires_grad();
    w.mul_scalar(3.0).sum().backward().unwrap();
    let gw = w.grad().unwrap();
    assert_eq!(gw.dtype(), DType::F16);
    assert_eq!(gw.to_vec().unwrap(), vec![3.0; 4]);
}

/// An f16 model saves as F16 safetensors (half the bytes) and loads back exactly, into
/// an f16 model as f16 and into an f32 model as f32.
#[test]
fn f16_models_save_as_f16() {
    let dev = Device::cpu();
    let dir = std::env::temp_dir().join(format!("fovea-cast-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (p32, p16) = (dir.join("f32.safetensors"), dir.join("f16.safetensors"));
    let m = net(&dev);
    fovea::checkpoint::save_module(&m, &p32).unwrap();
    m.to_dtype(DType::F16).unwrap();
    fovea::checkpoint::save_module(&m, &p16).unwrap();
    let (b32, b16) = (
        std::fs::metadata(&p32).unwrap().len(),
        std::fs::metadata(&p16).unwrap().len(),
    );
    // The counter stays f32; every weight is halved (headers differ a little).
    assert!(
        b16 * 10 < b32 * 6,
        "{b16} bytes in f16 against {b32} in f32"
    );
    let file = safetensors::SafeTensors::deserialize(&std::fs::read(&p16).unwrap())
        .unwrap()
        .tensor("0.weight")
        .unwrap()
        .dtype();
    assert_eq!(file, safetensors::Dtype::F16);
    let want: Vec<Vec<f32>> = params(&m).iter().map(|p| p.to_vec().unwrap()).collect();
    for dtype in [DType::F16, DType::F32] {
        let other = net(&dev);
        other.to_dtype(dtype).unwrap();
        fovea::checkpoint::load_module(&other, &p16).unwrap();
        for (p, w) in params(&other).iter().zip(&want) {
            assert_eq!(p.dtype(), dtype);
            assert_eq!(&p.to_vec().unwrap(), w);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What a first review found: a mean of many f16 values overflowed where its sum did;
/// dropout's mask turned f16 into f32; Gram under autocast gave f16; a strided 3-D
/// transposed convolution's spacers turned f16 into f32; loss scaling would unscale f16
/// gradients into zeros (PyTorch refuses them).
#[test]
fn f16_reductions_masks_and_scaling_keep_their_rules() {
    let dev = Device::cpu();
    let ones = Tensor::ones(&[100_000], &dev).half().unwrap();
    assert_eq!(
        ones.sum().item().unwrap(),
        f32::INFINITY,
        "the sum overflows f16"
    );
    assert_eq!(ones.mean().item().unwrap(), 1.0);
    assert_eq!(ones.mean().dtype(), DType::F16);
    let m = ones.reshape(&[1000, 100]).unwrap();
    let md = m.mean_dims(&[0, 1], false).unwrap();
    assert_eq!((md.dtype(), md.item().unwrap()), (DType::F16, 1.0));
    let x = Tensor::randn(&[4, 8], 1, &dev).half().unwrap();
    assert_eq!(x.dropout(0.5, true, 3).unwrap().dtype(), DType::F16);
    assert_eq!(x.drop_path(0.5, true, 3).unwrap().dtype(), DType::F16);
    let f = Tensor::randn(&[1, 3, 4, 4], 2, &dev).half().unwrap();
    assert_eq!(autocast(|| f.gram()).unwrap().dtype(), DType::F32);
    assert_eq!(f.gram().unwrap().dtype(), DType::F16);
    let v = Tensor::randn(&[1, 2, 3, 4, 4], 4, &dev).half().unwrap();
    let w = Tensor::randn(&[2, 2, 2, 3, 3], 5, &dev).half().unwrap();
    let opts = fovea::ops::Conv3dOptions {
        stride: [2, 1, 1],
        ..Default::default()
    };
    let y = v.conv_transpose3d(&w, None, opts).unwrap();
    assert_eq!(y.dtype(), DType::F16);
    let want = v
        .float()
        .unwrap()
        .conv_transpose3d(&w.float().unwrap(), None, opts)
        .unwrap();
    let e = rel_err(&y.to_vec().unwrap(), &want.to_vec().unwrap());
    assert!(e < 1e-3, "conv_transpose3d in f16: rel. error {e:.2e}");
    let p = Tensor::randn(&[3], 6, &dev).half().unwrap().requires_grad();
    let opt = Sgd::new(vec![p.clone()], SgdOptions::default());
    let mut scaler = fovea::optim::GradScaler::new(Default::default()).unwrap();
    scaler.scale(&p.sum()).backward().unwrap();
    let e = scaler.unscale(&opt).unwrap_err().to_string();
    assert!(e.contains("float16") && e.contains("autocast"), "{e}");
    opt.zero_grad();
}
