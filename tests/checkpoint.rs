//! Checkpoints under hostile conditions: writers killed mid-save, threads saving to one
//! path at once, and training files whose optimizer state was damaged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fovea::checkpoint::{self, NamedArrays};
use fovea::nn::{Linear, Module};
use fovea::optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use fovea::{Device, Tensor};

fn tmp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fovea-checkpoint-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Names in `dir` that hold `.tmp-`: temporary files of saves.
fn temps(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    names.sort();
    names
}

/// A process id that no process has: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn tensors(value: f32) -> Vec<(String, Tensor)> {
    let t = Tensor::full(&[64, 64], value, &Device::cpu());
    vec![("w".to_string(), t)]
}

/// A save killed mid-write leaves its temporary file (`.NAME.tmp-PID-N`, or `.NAME.tmp-PID`
/// as earlier versions named it); the next save to that path removes those whose process
/// is gone, and leaves live writers' files (this process's, and pid 1's) alone.
#[cfg(target_os = "linux")]
#[test]
fn the_next_save_removes_temporary_files_of_killed_writers() {
    let dir = tmp_dir("stale");
    let path = dir.join("model.safetensors");
    let dead = dead_pid();
    let stale = [
        format!(".model.safetensors.tmp-{dead}-0"),
        format!(".model.safetensors.tmp-{dead}-17"),
        format!(".model.safetensors.tmp-{dead}"),
    ];
    let live = [
        format!(".model.safetensors.tmp-{}-999999", std::process::id()),
        ".model.safetensors.tmp-1-0".to_string(),
        // Another file's temporary, and a name that only looks like one.
        format!(".other.safetensors.tmp-{dead}-0"),
        ".model.safetensors.tmp-notapid".to_string(),
    ];
    for name in stale.iter().chain(&live) {
        std::fs::write(dir.join(name), b"half a checkpoint").unwrap();
    }
    checkpoint::save(&tensors(1.0), &path).unwrap();
    let mut expect: Vec<String> = live.to_vec();
    expect.sort();
    assert_eq!(temps(&dir), expect);
    assert_eq!(checkpoint::load(&path).unwrap()["w"].1[0], 1.0);
}

/// Threads saving to one path at once each use a temporary file of their own: every save
/// succeeds (they shared one name, and most failed), the file is one of them whole, and no
/// temporary file is left.
#[test]
fn threads_saving_to_one_path_all_succeed() {
    let dir = tmp_dir("threads");
    let path = dir.join("shared.safetensors");
    std::thread::scope(|s| {
        for t in 0..6 {
            let path = &path;
            s.spawn(move || {
                let data = tensors(t as f32);
                for round in 0..8 {
                    checkpoint::save(&data, path)
                        .unwrap_or_else(|e| panic!("thread {t}, round {round}: {e}"));
                }
            });
        }
    });
    let (shape, values) = checkpoint::load(&path).unwrap().remove("w").unwrap();
    assert_eq!(shape, vec![64, 64]);
    assert!(
        (0..6).any(|t| values.iter().all(|&v| v == t as f32)),
        "the file mixes saves"
    );
    assert_eq!(temps(&dir), Vec::<String>::new());
}

/// A two-parameter model after two Adam steps, its training file, and its parameters.
fn trained_adam(dir: &Path, freeze_bias: bool) -> (PathBuf, Linear) {
    let dev = Device::cpu();
    let model = Linear::new(3, 2, true, 7, &dev);
    if freeze_bias {
        model.bias.as_ref().unwrap().set_requires_grad(false);
    }
    let mut opt = Adam::new(model.parameters(), AdamOptions::default());
    let x = Tensor::randn(&[4, 3], 1, &dev);
    for _ in 0..2 {
        opt.zero_grad();
        model
            .forward(&x)
            .unwrap()
            .square()
            .sum()
            .backward()
            .unwrap();
        opt.step().unwrap();
    }
    let path = dir.join("train.safetensors");
    checkpoint::save_training(&model, &opt, &[("epoch", 3)], &path).unwrap();
    (path, model)
}

/// Rewrites a training file after `edit` changed its tensors and metadata.
fn rewrite(path: &Path, edit: impl FnOnce(&mut NamedArrays, &mut HashMap<String, String>)) {
    let (mut arrays, mut meta) = checkpoint::load_with_metadata(path).unwrap();
    edit(&mut arrays, &mut meta);
    let tensors: Vec<(String, Tensor)> = arrays
        .into_iter()
        .map(|(n, (s, v))| (n, Tensor::from_vec(v, &s, &Device::cpu()).unwrap()))
        .collect();
    checkpoint::save_with_metadata(&tensors, meta, path).unwrap();
}

fn values(model: &Linear) -> Vec<Vec<f32>> {
    model
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect()
}

/// A training file whose optimizer state would turn the next step's weights into NaN
/// (or silently restart some moments) is refused, naming what is wrong, and neither the
/// model nor the optimizer changes.
#[test]
fn damaged_optimizer_state_is_refused_untouched() {
    let dir = tmp_dir("adam");
    type Edit = Box<dyn Fn(&mut NamedArrays, &mut HashMap<String, String>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "no moments for the bias",
            Box::new(|a, _| {
                a.remove("optimizer.state.1.exp_avg");
                a.remove("optimizer.state.1.exp_avg_sq");
            }),
            "parameter 1",
        ),
        (
            "no moments and no list of who has them",
            Box::new(|a, m| {
                a.remove("optimizer.state.1.exp_avg");
                a.remove("optimizer.state.1.exp_avg_sq");
                m.remove("optimizer.with_state");
            }),
            "[1]",
        ),
        (
            "a negative second moment",
            Box::new(|a, _| a.get_mut("optimizer.state.0.exp_avg_sq").unwrap().1[2] = -1e-3),
            "exp_avg_sq",
        ),
        (
            "a NaN first moment",
            Box::new(|a, _| a.get_mut("optimizer.state.1.exp_avg").unwrap().1[0] = f32::NAN),
            "exp_avg",
        ),
        (
            "an infinite learning rate",
            Box::new(|_, m| {
                m.insert("optimizer.lr".into(), "inf".into());
            }),
            "learning rate",
        ),
        (
            "a negative learning rate",
            Box::new(|_, m| {
                m.insert("optimizer.lr".into(), "-0.5".into());
            }),
            "learning rate",
        ),
        (
            "step -1",
            Box::new(|_, m| {
                m.insert("optimizer.step".into(), "-1".into());
            }),
            "step -1",
        ),
        (
            "moments at step 0",
            Box::new(|_, m| {
                m.insert("optimizer.step".into(), "0".into());
            }),
            "step 0",
        ),
        (
            "a listed parameter out of range",
            Box::new(|_, m| {
                m.insert("optimizer.with_state".into(), "0,1,2".into());
            }),
            "with_state",
        ),
    ];
    for (what, edit, expect) in cases {
        let (path, _) = trained_adam(&dir, false);
        rewrite(&path, edit);
        let model = Linear::new(3, 2, true, 99, &Device::cpu());
        let mut opt = Adam::new(model.parameters(), AdamOptions::default());
        let before = values(&model);
        let err = checkpoint::load_training(&model, &mut opt, &path)
            .expect_err(what)
            .to_string();
        assert!(err.contains(expect), "{what}: {err}");
        assert_eq!(values(&model), before, "{what}: the model changed");
        assert_eq!(
            opt.lr(),
            AdamOptions::default().lr,
            "{what}: the optimizer changed"
        );
    }
}

/// What the checks must not refuse: a frozen parameter has no moments, and the file says
/// so; a file from before that list, with moments for every parameter, loads too; the next
/// step from either is finite.
#[test]
fn valid_optimizer_state_still_loads() {
    let dir = tmp_dir("valid");
    for (freeze, legacy) in [(true, false), (false, false), (false, true)] {
        let (path, trained) = trained_adam(&dir, freeze);
        if legacy {
            rewrite(&path, |_, m| {
                m.remove("optimizer.with_state");
            });
        }
        let model = Linear::new(3, 2, true, 99, &Device::cpu());
        if freeze {
            model.bias.as_ref().unwrap().set_requires_grad(false);
        }
        let mut opt = Adam::new(model.parameters(), AdamOptions::default());
        let progress = checkpoint::load_training(&model, &mut opt, &path)
            .unwrap_or_else(|e| panic!("freeze {freeze}, legacy {legacy}: {e}"));
        assert_eq!(progress["epoch"], 3);
        assert_eq!(values(&model), values(&trained));
        let x = Tensor::randn(&[4, 3], 1, &Device::cpu());
        model
            .forward(&x)
            .unwrap()
            .square()
            .sum()
            .backward()
            .unwrap();
        opt.step().unwrap();
        assert!(values(&model).iter().flatten().all(|v| v.is_finite()));
    }
}

/// SGD's state is held to the same rules: finite momentum buffers, a finite learning rate.
#[test]
fn damaged_sgd_state_is_refused() {
    let dir = tmp_dir("sgd");
    let dev = Device::cpu();
    let model = Linear::new(3, 2, true, 7, &dev);
    let opts = SgdOptions {
        momentum: 0.9,
        ..Default::default()
    };
    let mut opt = Sgd::new(model.parameters(), opts);
    model
        .forward(&Tensor::randn(&[4, 3], 1, &dev))
        .unwrap()
        .sum()
        .backward()
        .unwrap();
    opt.step().unwrap();
    let path = dir.join("sgd.safetensors");
    checkpoint::save_training(&model, &opt, &[], &path).unwrap();
    let fresh = || {
        let m = Linear::new(3, 2, true, 1, &dev);
        let o = Sgd::new(m.parameters(), opts);
        (m, o)
    };
    let (m, mut o) = fresh();
    checkpoint::load_training(&m, &mut o, &path).unwrap();

    rewrite(&path, |a, _| {
        a.get_mut("optimizer.state.0.momentum_buffer").unwrap().1[1] = f32::INFINITY;
    });
    let (m, mut o) = fresh();
    let err = checkpoint::load_training(&m, &mut o, &path).unwrap_err();
    assert!(err.to_string().contains("momentum_buffer"), "{err}");

    checkpoint::save_training(&model, &opt, &[], &path).unwrap();
    rewrite(&path, |_, meta| {
        meta.insert("optimizer.lr".into(), "NaN".into());
    });
    let (m, mut o) = fresh();
    let err = checkpoint::load_training(&m, &mut o, &path).unwrap_err();
    assert!(err.to_string().contains("learning rate"), "{err}");
}
