//! Training: modules, optimizers, data and checkpoints working together on real digits.

mod common;

use std::path::{Path, PathBuf};

use common::rel_err;
use fovea::checkpoint;
use fovea::data::{read_idx, DataLoader, InMemoryDataset};
use fovea::models::LeNet5;
use fovea::nn::Module;
use fovea::optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use fovea::{no_grad, Device, Error, Tensor};

fn mnist(split: &str) -> InMemoryDataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/mnist-10k");
    let images = dir.join(format!("{split}-images-idx3-ubyte.gz"));
    let labels = dir.join(format!("{split}-labels-idx1-ubyte.gz"));
    InMemoryDataset::from_idx(&images, &labels, 10, 0.1307, 0.3081).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fovea-training-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn accuracy(model: &LeNet5, data: &InMemoryDataset, dev: &Device) -> f64 {
    model.eval();
    let mut correct = 0;
    for batch in DataLoader::new(data, 250, None, dev).unwrap() {
        let batch = batch.unwrap();
        let logits = no_grad(|| model.forward(&batch.images))
            .unwrap()
            .to_vec()
            .unwrap();
        for (row, &label) in logits.chunks(10).zip(&batch.labels) {
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            correct += (best == label) as usize;
        }
    }
    model.train();
    correct as f64 / data.labels.len() as f64
}

#[test]
fn lenet_learns_real_digits_on_the_cpu() {
    let dev = Device::cpu();
    let train = mnist("train").take(2000);
    let test = mnist("t10k").take(500);
    let model = LeNet5::new(10, 0.0, 1, &dev).unwrap();
    let before = accuracy(&model, &test, &dev);
    let mut opt = Adam::new(
        model.parameters(),
        AdamOptions {
            lr: 2e-3,
            ..Default::default()
        },
    );
    for epoch in 0..3 {
        for batch in DataLoader::new(&train, 32, Some(epoch), &dev).unwrap() {
            let batch = batch.unwrap();
            opt.zero_grad();
            model
                .forward(&batch.images)
                .unwrap()
                .cross_entropy(&batch.labels)
                .unwrap()
                .backward()
                .unwrap();
            opt.step().unwrap();
        }
    }
    let after = accuracy(&model, &test, &dev);
    // Chance is 10%; 2,000 digits and 3 epochs reach well above 90%.
    assert!(after > 0.9, "accuracy {before:.3} -> {after:.3}");
}

#[test]
fn one_training_step_agrees_between_gpu_and_cpu() {
    let Some(gpu) = common::gpu("one_training_step_agrees_between_gpu_and_cpu") else {
        return;
    };
    let cpu = Device::cpu();
    let data = mnist("train").take(16);
    let step = |dev: &Device| -> Vec<(String, Vec<f32>)> {
        let model = LeNet5::new(10, 0.5, 7, dev).unwrap();
        let mut opt = Sgd::new(
            model.parameters(),
            SgdOptions {
                lr: 0.1,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 1e-4,
            },
        );
        for _ in 0..2 {
            let batch = DataLoader::new(&data, 16, None, dev)
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            opt.zero_grad();
            model
                .forward(&batch.images)
                .unwrap()
                .cross_entropy(&batch.labels)
                .unwrap()
                .backward()
                .unwrap();
            opt.step().unwrap();
        }
        model
            .state_dict()
            .into_iter()
            .map(|(n, t)| (n, t.to_vec().unwrap()))
            .collect()
    };
    let (c, g) = (step(&cpu), step(&gpu));
    for ((name, a), (_, b)) in c.iter().zip(&g) {
        let err = rel_err(b, a);
        assert!(
            err < 1e-4,
            "{name}: GPU and CPU weights differ after two steps (rel. error {err:.2e})"
        );
    }
}

#[test]
fn state_dict_names_follow_pytorch() {
    let model = LeNet5::new(10, 0.5, 0, &Device::cpu()).unwrap();
    let names: Vec<String> = model
        .state_dict()
        .into_iter()
        .map(|(n, t)| format!("{n}{:?}", t.shape()))
        .collect();
    assert_eq!(
        names,
        [
            "features.0.weight[6, 1, 5, 5]",
            "features.0.bias[6]",
            "features.3.weight[16, 6, 5, 5]",
            "features.3.bias[16]",
            "classifier.1.weight[120, 400]",
            "classifier.1.bias[120]",
            "classifier.4.weight[84, 120]",
            "classifier.4.bias[84]",
            "classifier.6.weight[10, 84]",
            "classifier.6.bias[10]",
        ]
    );
    assert_eq!(model.num_parameters(), 61_706);
    let bn = fovea::nn::Sequential::new().push(fovea::nn::BatchNorm2d::new(3, &Device::cpu()));
    let names: Vec<String> = bn.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "0.bias",
            "0.running_mean",
            "0.running_var",
            "0.num_batches_tracked"
        ]
    );
}

#[test]
fn freezing_keeps_parameters_fixed() {
    let dev = Device::cpu();
    let model = LeNet5::new(10, 0.0, 3, &dev).unwrap();
    model.features.freeze();
    let frozen: Vec<Vec<f32>> = model
        .features
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    let mut opt = Sgd::new(
        model.parameters(),
        SgdOptions {
            lr: 0.5,
            ..Default::default()
        },
    );
    let x = Tensor::randn(&[4, 1, 28, 28], 1, &dev);
    model
        .forward(&x)
        .unwrap()
        .cross_entropy(&[1, 2, 3, 4])
        .unwrap()
        .backward()
        .unwrap();
    opt.step().unwrap();
    let after: Vec<Vec<f32>> = model
        .features
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    assert_eq!(frozen, after, "frozen parameters moved");
    assert!(
        model.classifier.parameters()[0].grad().is_some(),
        "the head still trains"
    );
}

#[test]
fn checkpoints_round_trip_and_refuse_mismatches() {
    let dev = Device::cpu();
    let a = LeNet5::new(10, 0.5, 11, &dev).unwrap();
    let b = LeNet5::new(10, 0.5, 12, &dev).unwrap();
    let path = tmp("lenet.safetensors");
    checkpoint::save_module(&a, &path).unwrap();
    checkpoint::load_module(&b, &path).unwrap();
    for ((n, x), (_, y)) in a.state_dict().iter().zip(b.state_dict()) {
        assert_eq!(x.to_vec().unwrap(), y.to_vec().unwrap(), "{n}");
    }
    // A model of another shape: every mismatch is listed and nothing is overwritten.
    let other = LeNet5::new(7, 0.5, 13, &dev).unwrap();
    let before = other.classifier.parameters()[0].to_vec().unwrap();
    let err = checkpoint::load_module(&other, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("classifier.6.weight")
            && err.contains("classifier.6.bias")
            && err.contains("lenet.safetensors"),
        "{err}"
    );
    assert_eq!(
        before,
        other.classifier.parameters()[0].to_vec().unwrap(),
        "a failed load changed the model"
    );
    // Truncated and garbage files are errors naming the file, and saving over an existing
    // checkpoint leaves no temporary file behind.
    let bytes = std::fs::read(&path).unwrap();
    let cut = tmp("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        checkpoint::load_module(&b, &cut),
        Err(Error::Format { .. })
    ));
    checkpoint::save_module(&b, &path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn idx_files_are_validated() {
    let good = read_idx(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/data/mnist-10k/t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    assert_eq!(good.dims, vec![2000]);
    let write = |name: &str, bytes: &[u8]| {
        let p = tmp(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let cases = [
        ("magic.idx", vec![1u8, 0, 8, 1, 0, 0, 0, 1, 5], "magic"),
        (
            "truncated.idx",
            vec![0u8, 0, 8, 1, 0, 0, 0, 4, 5, 6],
            "truncated",
        ),
        (
            "trailing.idx",
            vec![0u8, 0, 8, 1, 0, 0, 0, 1, 5, 6],
            "trailing",
        ),
        (
            "type.idx",
            vec![0u8, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0],
            "type",
        ),
        ("short.idx", vec![0u8, 0], "short"),
        ("bad.gz", vec![1u8, 2, 3, 4, 5], "gzip"),
    ];
    for (name, bytes, what) in cases {
        let p = write(name, &bytes);
        let err = read_idx(&p).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(what), "{name}: {err}");
    }
    // Labels out of range for the class count are refused.
    let images = write(
        "imgs.idx",
        &[0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 7],
    );
    let labels = write("labels.idx", &[0, 0, 8, 1, 0, 0, 0, 1, 12]);
    let err = InMemoryDataset::from_idx(&images, &labels, 10, 0.0, 1.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("label 12"), "{err}");
}

#[test]
fn loader_shuffles_by_seed_and_covers_every_item() {
    let data = mnist("t10k").take(103);
    let dev = Device::cpu();
    let labels = |seed| -> Vec<usize> {
        DataLoader::new(&data, 10, seed, &dev)
            .unwrap()
            .flat_map(|b| b.unwrap().labels)
            .collect()
    };
    let (a, b, c) = (labels(Some(1)), labels(Some(1)), labels(Some(2)));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mut sorted = a.clone();
    sorted.sort();
    let mut all = data.labels.clone();
    all.sort();
    assert_eq!(sorted, all, "an epoch yields every item once");
    assert_eq!(
        DataLoader::new(&data, 10, None, &dev)
            .unwrap()
            .drop_last()
            .batches(),
        10
    );
}

/// Trains from `(epoch, batch)` up to (not including) `until`, returning each step's loss
/// as bits. Every source of randomness (init, shuffling, shifts, dropout) is seeded.
fn train_span(
    model: &LeNet5,
    opt: &mut dyn Optimizer,
    data: &InMemoryDataset,
    from: (usize, usize),
    until: (usize, usize),
) -> Vec<u32> {
    let dev = Device::cpu();
    let mut losses = Vec::new();
    for epoch in from.0..=until.0 {
        let start = if epoch == from.0 { from.1 } else { 0 };
        let loader = DataLoader::new(data, 100, Some(epoch as u64), &dev)
            .unwrap()
            .random_shift(2, 77 + epoch as u64)
            .start_at(start);
        let all = data.labels.len().div_ceil(100);
        assert_eq!(
            loader.batches(),
            all - start,
            "batches left after start_at({start})"
        );
        for (i, batch) in loader.enumerate() {
            if (epoch, start + i) >= until {
                break;
            }
            let batch = batch.unwrap();
            opt.zero_grad();
            let loss = model
                .forward(&batch.images)
                .unwrap()
                .cross_entropy(&batch.labels)
                .unwrap();
            loss.backward().unwrap();
            opt.step().unwrap();
            losses.push(loss.item().unwrap().to_bits());
        }
    }
    losses
}

#[test]
fn resuming_from_a_training_checkpoint_repeats_the_run_bit_for_bit() {
    let dev = Device::cpu();
    let data = mnist("train").take(600);
    let adam = |m: &LeNet5| {
        Adam::new(
            m.parameters(),
            AdamOptions {
                lr: 2e-3,
                weight_decay: 1e-4,
                ..Default::default()
            },
        )
    };
    // The uninterrupted run: two epochs of six batches, dropout on.
    let whole = LeNet5::new(10, 0.3, 5, &dev).unwrap();
    let mut opt = adam(&whole);
    let expected = train_span(&whole, &mut opt, &data, (0, 0), (2, 0));
    assert_eq!(expected.len(), 12);

    // The same run stopped part-way through the second epoch and saved.
    let first = LeNet5::new(10, 0.3, 5, &dev).unwrap();
    let mut opt = adam(&first);
    let mut losses = train_span(&first, &mut opt, &data, (0, 0), (1, 2));
    let path = tmp("resume.safetensors");
    checkpoint::save_training(&first, &opt, &[("epoch", 1), ("batch", 2)], &path).unwrap();
    drop((first, opt));

    // A fresh process would build a differently initialised model; loading replaces it all.
    let resumed = LeNet5::new(10, 0.3, 999, &dev).unwrap();
    let mut opt = adam(&resumed);
    let progress = checkpoint::load_training(&resumed, &mut opt, &path).unwrap();
    let at = (progress["epoch"] as usize, progress["batch"] as usize);
    assert_eq!(at, (1, 2));
    losses.extend(train_span(&resumed, &mut opt, &data, at, (2, 0)));
    assert_eq!(
        losses, expected,
        "resumed losses differ from the uninterrupted run"
    );
}

#[test]
fn a_training_checkpoint_for_another_optimizer_or_model_is_refused_untouched() {
    let dev = Device::cpu();
    let model = LeNet5::new(10, 0.3, 5, &dev).unwrap();
    let mut adam = Adam::new(model.parameters(), AdamOptions::default());
    let data = mnist("train").take(200);
    train_span(&model, &mut adam, &data, (0, 0), (0, 1));
    let path = tmp("adam-state.safetensors");
    checkpoint::save_training(&model, &adam, &[("epoch", 0)], &path).unwrap();

    let other = LeNet5::new(10, 0.3, 6, &dev).unwrap();
    let before: Vec<Vec<f32>> = other
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    let mut sgd = Sgd::new(other.parameters(), SgdOptions::default());
    let err = checkpoint::load_training(&other, &mut sgd, &path).unwrap_err();
    assert!(err.to_string().contains("Adam"), "{err}");
    let after: Vec<Vec<f32>> = other
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    assert_eq!(before, after, "a refused checkpoint changed the model");

    let classic = fovea::models::LeNet5Classic::new(0, &dev).unwrap();
    let mut opt = Adam::new(classic.parameters(), AdamOptions::default());
    let err = checkpoint::load_training(&classic, &mut opt, &path).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
