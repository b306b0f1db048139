//! Smoke runs of the examples at tiny sizes, asserting what each one promises. `cargo
//! test` builds the examples next to the test binaries, so the tests run the real
//! programs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use fovea::DeviceExt;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/<test binary> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join(name);
    // Build (or confirm up to date) even when it exists: a filtered run
    // (`cargo test --test examples`) does not rebuild examples and would run a stale one.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The test profile, not `dev`: the same directory, but the kernels optimized as in the
    // test binaries (at `dev`'s opt-level 0 the CPU backend runs the examples many times
    // slower, and the workspace would be compiled a second time).
    let profile = if profile_dir.ends_with("release") {
        "release"
    } else {
        "test"
    };
    cmd.args(["build", "--quiet", "--profile", profile, "--example", name]);
    assert!(
        cmd.status().unwrap().success(),
        "building example {name} failed"
    );
    assert!(path.exists(), "example binary {} missing", path.display());
    path
}

/// Runs example `name` with `args`, asserts that it succeeded, and returns its stdout.
fn run_example<S: AsRef<OsStr>>(name: &str, args: &[S]) -> String {
    let run = Command::new(example(name)).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    let args: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(
        run.status.success(),
        "{name} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

#[test]
fn edge_detection_learns_the_sobel_filter() {
    edge_detection_on("cpu");
}

#[test]
fn edge_detection_learns_the_sobel_filter_on_the_gpu() {
    if std::env::var("FOVEA_REQUIRE_GPU").is_ok_and(|v| v == "1")
        || fovea::Device::by_name("gpu").is_ok()
    {
        edge_detection_on("gpu");
    } else {
        eprintln!("edge_detection_learns_the_sobel_filter_on_the_gpu: SKIPPED, no GPU device");
    }
}

fn edge_detection_on(device: &str) {
    let out = std::env::temp_dir().join(format!("fovea-edge-{device}-{}", std::process::id()));
    let mut args: Vec<&OsStr> = [
        "--device", device, "--size", "64", "--steps", "200", "--out",
    ]
    .map(OsStr::new)
    .to_vec();
    args.push(out.as_os_str());
    let stdout = run_example("edge_detection", &args);
    for f in [
        "sobel_magnitude.png",
        "scharr_vertical_edges.png",
        "learned_vertical_edges.png",
        "hed_edges.png",
    ] {
        let img = image::open(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(img.width(), 64, "{f} has the requested size");
    }
    let diff: f32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("largest difference to Sobel: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    assert!(
        diff < 0.1,
        "the learned filter is {diff} away from Sobel:\n{stdout}"
    );
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn train_lenet_learns_and_writes_a_checkpoint() {
    let out = std::env::temp_dir()
        .join(format!("fovea-lenet-{}", std::process::id()))
        .join("lenet.safetensors");
    let mut args: Vec<&OsStr> = [
        "--device", "cpu", "--epochs", "2", "--limit", "1500", "--lr", "2e-3", "--out",
    ]
    .map(OsStr::new)
    .to_vec();
    args.push(out.as_os_str());
    let stdout = run_example("train_lenet", &args);
    let acc: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("final test accuracy "))
        .and_then(|l| l.split('%').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no final accuracy in:\n{stdout}"));
    assert!(
        acc > 60.0, // chance is 10%; two epochs of shifted digits land near 80%
        "accuracy {acc}% after 2 epochs on 1,500 digits:\n{stdout}"
    );
    let model = fovea::models::LeNet5::new(10, 0.0, 0, &fovea::Device::cpu()).unwrap();
    fovea::checkpoint::load_module(&model, &out)
        .expect("the checkpoint loads into a fresh LeNet-5");
    // The shared plotters chart of examples/common (900×540), not a hand-drawn one.
    let chart = image::open(out.with_extension("png")).expect("the training curves");
    assert_eq!((chart.width(), chart.height()), (900, 540));
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}

#[test]
fn style_transfer_lowers_its_cost_and_writes_the_pictures() {
    let dir = std::env::temp_dir().join(format!("fovea-style-{}", std::process::id()));
    let out = dir.join("result.png");
    let mut args: Vec<&OsStr> = ["--device", "cpu", "--size", "32", "--steps", "20", "--out"]
        .map(OsStr::new)
        .to_vec();
    args.push(out.as_os_str());
    let stdout = run_example("style_transfer", &args);
    // Progress lines are "step N/M  J <total> …", separated by carriage returns.
    let totals: Vec<f64> = stdout
        .split(['\r', '\n'])
        .filter_map(|l| l.split("  J ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(totals.len() >= 2, "no progress lines in:\n{stdout}");
    let (first, last) = (totals[0], *totals.last().unwrap());
    assert!(last < 0.5 * first, "total cost {first:e} -> {last:e}");
    for f in ["result.png", "result_side_by_side.png"] {
        let img = image::open(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(
            img.width() >= 32 && img.height() >= 16,
            "{f} is {}x{}",
            img.width(),
            img.height()
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn train_lenet_resumes_exactly_where_it_stopped() {
    resumes_exactly(&[]);
}

/// Under autocast with loss scaling too, the scaler's state travelling in the training
/// state.
#[test]
fn train_lenet_resumes_exactly_under_autocast() {
    resumes_exactly(&["--autocast"]);
}

fn resumes_exactly(mode: &[&str]) {
    let dir = std::env::temp_dir().join(format!(
        "fovea-resume-{}{}",
        std::process::id(),
        mode.concat()
    ));
    let run = |extra: &[&str], out: &str| -> String {
        let out = dir.join(out);
        let mut args: Vec<&OsStr> = ["--device", "cpu", "--epochs", "3", "--limit", "600"]
            .map(OsStr::new)
            .to_vec();
        args.extend([OsStr::new("--out"), out.as_os_str()]);
        args.extend(mode.iter().chain(extra).map(OsStr::new));
        run_example("train_lenet", &args)
    };
    // The epoch-3 line up to its accuracy (the rest is timing): loss and accuracy must match.
    let epoch3 = |out: &str| -> String {
        let line = out
            .lines()
            .find(|l| l.starts_with("epoch  3/3"))
            .unwrap_or_else(|| panic!("no epoch 3 in:\n{out}"));
        line[..=line.find('%').expect("an accuracy")].to_string()
    };
    let whole = run(&[], "whole.safetensors");
    let first = run(&["--stop-after", "2"], "part.safetensors");
    assert!(
        !first.contains("epoch  3/3"),
        "--stop-after 2 ran a third epoch:\n{first}"
    );
    let state = dir.join("part.train.safetensors");
    // Under autocast the state holds the loss scaler's (PyTorch's initial scale, 2¹⁶,
    // which these few clean steps do not grow).
    let meta = safetensors_metadata(&state);
    let scale = meta.get("progress.amp_scale").map(|v| v.as_str());
    let want = 65536f32.to_bits().to_string();
    let want = (!mode.is_empty()).then_some(want.as_str());
    assert_eq!(scale, want, "the loss scale in the training state");
    let rest = run(&["--resume", state.to_str().unwrap()], "part.safetensors");
    assert!(rest.contains("resumed from"), "{rest}");
    assert_eq!(
        epoch3(&rest),
        epoch3(&whole),
        "resumed:\n{rest}\nwhole:\n{whole}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The string metadata in a safetensors file's header.
fn safetensors_metadata(path: &Path) -> std::collections::HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    serde_json::from_value(header["__metadata__"].clone()).unwrap()
}

/// The mean losses of the `epoch  N/M  loss L …` lines.
fn epoch_losses(stdout: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter(|l| l.starts_with("epoch "))
        .filter_map(|l| l.split("  loss ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter_map(|v| v.parse().ok())
        .collect()
}

#[test]
fn detect_trains_a_detector_measures_map_and_draws_boxes() {
    let out = std::env::temp_dir().join(format!("fovea-detect-{}", std::process::id()));
    let mut args: Vec<&OsStr> = [
        "--device",
        "cpu",
        "--size",
        "32",
        "--width",
        "4",
        "--epochs",
        "3",
        "--train",
        "96",
        "--test",
        "16",
        "--batch",
        "16",
        "--anchors",
        "2",
        "--pictures",
        "2",
        "--out",
    ]
    .map(OsStr::new)
    .to_vec();
    args.push(out.as_os_str());
    let stdout = run_example("detect", &args);
    let losses = epoch_losses(&stdout);
    assert_eq!(losses.len(), 3, "{stdout}");
    assert!(
        losses[2] < losses[0],
        "loss did not fall: {losses:?}\n{stdout}"
    );
    let map: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("mAP@0.5 on 16 held-out canvases: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no mAP line in:\n{stdout}"));
    assert!((0.0..=1.0).contains(&map));
    for f in [
        "detections.png",
        "training.png",
        "test_00.png",
        "test_01.png",
    ] {
        let img = image::open(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(img.width() >= 96, "{f} is {} wide", img.width());
    }
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn detect_localizes_one_digit_and_regresses_landmarks() {
    for (mode, measure, picture) in [
        ("--localize", "mean IoU ", "localize.png"),
        ("--landmarks", "mean landmark error ", "landmarks.png"),
    ] {
        let out = std::env::temp_dir().join(format!("fovea-localize-{}", std::process::id()));
        let mut args: Vec<&OsStr> = [
            mode,
            "--device",
            "cpu",
            "--size",
            "32",
            "--width",
            "4",
            "--epochs",
            "3",
            "--train",
            "96",
            "--test",
            "16",
            "--batch",
            "16",
            "--pictures",
            "2",
            "--out",
        ]
        .map(OsStr::new)
        .to_vec();
        args.push(out.as_os_str());
        let stdout = run_example("detect", &args);
        let losses = epoch_losses(&stdout);
        assert_eq!(losses.len(), 3, "{stdout}");
        assert!(
            losses[2] < losses[0],
            "{mode}: loss did not fall: {losses:?}\n{stdout}"
        );
        let value: f64 = stdout
            .lines()
            .filter(|l| l.contains("held-out canvases: "))
            .find_map(|l| l.split(measure).nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{mode}: no summary in:\n{stdout}"));
        assert!(value.is_finite() && value >= 0.0, "{mode}: {value}");
        image::open(out.join(picture)).unwrap_or_else(|e| panic!("{picture}: {e}"));
        std::fs::remove_dir_all(&out).ok();
    }
}

#[test]
fn segment_trains_a_unet_and_writes_the_pictures() {
    let out = std::env::temp_dir().join(format!("fovea-segment-{}", std::process::id()));
    let mut args: Vec<&OsStr> = [
        "--device", "cpu", "--epochs", "2", "--train", "128", "--test", "16", "--size", "32",
        "--width", "4", "--depth", "2", "--batch", "4", "--lr", "1e-2", "--show", "3", "--out",
    ]
    .map(OsStr::new)
    .to_vec();
    args.push(out.as_os_str());
    let stdout = run_example("segment", &args);
    // "epoch  N/2  loss L  test mIoU M  pixel accuracy A% …"
    let field = |line: &str, key: &str| -> f64 {
        line.split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.trim_end_matches('%').parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    let epochs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("epoch ")).collect();
    assert_eq!(epochs.len(), 2, "{stdout}");
    let (l1, l2) = (field(epochs[0], "loss "), field(epochs[1], "loss "));
    assert!(l2 < l1, "the mean loss rose from {l1} to {l2}:\n{stdout}");
    let miou = field(epochs[1], "mIoU ");
    // Enough steps (64) for batch norm's running statistics, which eval mode uses, to
    // settle; fewer leave the test pictures scored against start-up statistics.
    let acc = field(epochs[1], "accuracy ");
    assert!((0.0..=1.0).contains(&miou) && acc > 50.0, "{stdout}");
    // Three 96-pixel tiles (32 px zoomed 3×) and four gaps across; a title row and three
    // rows of tiles down.
    let img = image::open(out.join("predictions.png")).unwrap();
    assert_eq!(
        (img.width(), img.height()),
        (3 * 96 + 4 * 6, 26 + 3 * (96 + 6) + 6)
    );
    image::open(out.join("curves.png")).expect("the curves are a PNG");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn visualize_writes_a_grid_per_layer_and_refuses_bad_layers() {
    let out = std::env::temp_dir().join(format!("fovea-visualize-{}", std::process::id()));
    let mut args: Vec<&OsStr> = [
        "--device", "cpu", "--size", "48", "--layers", "relu1_2", "relu2_2", "--out",
    ]
    .map(OsStr::new)
    .to_vec();
    args.push(out.as_os_str());
    let stdout = run_example("visualize", &args);
    assert!(
        stdout.contains("relu2_2: receptive field 14, jump 2"),
        "{stdout}"
    );
    for f in [
        "top9_relu1_2.png",
        "top9_relu2_2.png",
        "first_layer_filters.png",
        "feature_maps_relu2_2.png",
    ] {
        let img = image::open(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(img.width() > 100, "{f}");
    }
    let bad = Command::new(example("visualize"))
        .args(["--device", "cpu", "--layers", "relu9_9"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("relu5_3"), "{err}");
}

#[test]
fn transfer_compares_three_ways_in_a_table() {
    let out = std::env::temp_dir().join(format!("fovea-transfer-{}", std::process::id()));
    let mut args: Vec<&OsStr> = [
        "--device",
        "cpu",
        "--per-class",
        "4",
        "--size",
        "32",
        "--test",
        "40",
        "--head-epochs",
        "2",
        "--epochs",
        "1",
        "--out",
    ]
    .map(OsStr::new)
    .to_vec();
    args.push(out.as_os_str());
    let stdout = run_example("transfer", &args);
    for method in ["cached features", "fine-tune last 3 blocks", "from scratch"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("| 40 |") && l.contains(method)),
            "{method}:\n{stdout}"
        );
    }
    assert!(stdout.contains("faster"), "{stdout}");
    // The cache is read back on a second run.
    let again = run_example("transfer", &args);
    assert!(again.contains("features read from"), "{again}");
}

#[test]
fn sequence_and_motion_cnns_train_and_draw_their_curves() {
    for (name, extra, pictures) in [
        ("sequence_cnn", &["--epochs", "1"][..], &["curves.png"][..]),
        (
            "motion_cnn",
            &["--epochs", "1", "--clips", "64", "--batch", "16"][..],
            &["curves.png", "clips.png"][..],
        ),
    ] {
        let out = std::env::temp_dir().join(format!("fovea-{name}-{}", std::process::id()));
        let mut args: Vec<&OsStr> = ["--device", "cpu"]
            .iter()
            .chain(extra)
            .chain(&["--out"])
            .map(OsStr::new)
            .collect();
        args.push(out.as_os_str());
        let stdout = run_example(name, &args);
        let acc: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("epoch  1/1  loss "))
            .and_then(|l| l.split("test accuracy ").nth(1))
            .and_then(|v| v.trim_end_matches('%').parse().ok())
            .unwrap_or_else(|| panic!("{name}: no epoch line in:\n{stdout}"));
        assert!((0.0..=100.0).contains(&acc), "{name}: {acc}");
        for p in pictures {
            image::open(out.join(p)).unwrap_or_else(|e| panic!("{name} {p}: {e}"));
        }
        std::fs::remove_dir_all(&out).ok();
    }
}

#[test]
fn faces_finds_recognises_and_draws_every_bundled_face() {
    let out = std::env::temp_dir().join(format!("fovea-faces-{}", std::process::id()));
    let mut args: Vec<&OsStr> = ["--device", "cpu", "--out"]
        .iter()
        .map(OsStr::new)
        .collect();
    args.push(out.as_os_str());
    let stdout = run_example("faces", &args);
    // Every photo: one face, recognised as its person (the left-cut face is "unknown" just
    // above the threshold, as with the original nets).
    for (photo, who) in [
        ("biden.jpg", "Biden"),
        ("obama2.jpg", "Obama"),
        ("obama3.jpg", "Obama"),
        ("obama_partial_face2.jpg", "Obama"),
    ] {
        let line = stdout
            .lines()
            .skip_while(|l| !l.starts_with(&format!("{photo}: 1 face(s)")))
            .nth(1)
            .unwrap_or_else(|| panic!("{photo}: no face line in:\n{stdout}"));
        assert!(line.contains(&format!("→ {who}")), "{photo}: {line}");
        let png = out.join(photo.replace(".jpg", ".png"));
        image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    }
    assert!(stdout.contains("pairwise descriptor distances"), "{stdout}");
    assert!(stdout.contains("obama.jpg#0 ~ obama3.jpg#0"), "{stdout}");
    assert!(
        !stdout.contains("biden.jpg#0 ~") && !stdout.contains("~ biden"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&out).ok();
}

/// Every example under examples/ (each folder with a main.rs; `common` has none).
fn all_examples() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("main.rs").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_answers_help_and_names_the_flag_of_a_bad_value() {
    let names = all_examples();
    assert!(names.len() >= 10, "examples found: {names:?}");
    for name in &names {
        let run = Command::new(example(name)).arg("--help").output().unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success() && stdout.contains(&format!("Usage: {name}")),
            "{name} --help:\n{stdout}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(stdout.contains("--device"), "{name} --help:\n{stdout}");
    }
    for (name, flag) in [
        ("style_transfer", "--size"),
        ("style_transfer", "--steps"),
        ("train_lenet", "--epochs"),
        ("edge_detection", "--size"),
    ] {
        let run = Command::new(example(name))
            .args([flag, "abc"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            !run.status.success() && stderr.contains(&format!("'{flag} <")),
            "{name} {flag} abc should fail naming {flag}:\n{stderr}"
        );
    }
    // Unknown words are refused too, not ignored.
    let run = Command::new(example("train_lenet"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert!(!run.status.success());
}

/// A results location that cannot be written is refused before any work, naming the
/// flag: a folder where a file is wanted, a file where a folder is, a picture format this
/// build does not write. Nothing printed to stdout shows that nothing ran (each example
/// prints its device or data first).
#[test]
fn every_example_refuses_an_unwritable_out_before_working() {
    let tmp = std::env::temp_dir().join(format!("fovea-out-check-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let a_file = tmp.join("taken");
    std::fs::write(&a_file, b"not a folder").unwrap();
    let file_outs = ["style_transfer", "train_classifier", "train_lenet"];
    let mut cases: Vec<(String, PathBuf)> = all_examples()
        .into_iter()
        .map(|name| {
            let out = if file_outs.contains(&name.as_str()) {
                tmp.clone()
            } else {
                a_file.join("results")
            };
            (name, out)
        })
        .collect();
    cases.push(("style_transfer".into(), tmp.join("result.bmp")));
    for (name, out) in &cases {
        let run = Command::new(example(name))
            .arg("--out")
            .arg(out)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr),
        );
        assert!(
            !run.status.success() && stderr.contains("--out") && stdout.is_empty(),
            "{name} --out {} should fail at once naming --out:\n{stdout}\n{stderr}",
            out.display()
        );
    }
    assert_eq!(std::fs::read(&a_file).unwrap(), b"not a folder");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// A count, width or size no machine holds, or a zero that would divide, is refused by
/// clap with the flag's name and its range before any work: each of these had ended in a
/// panic or an aborted allocation.
#[test]
fn counts_and_widths_out_of_range_are_refused_by_name() {
    let huge = "99999999999";
    let cases = [
        ("classify", "--resize", "100000"),
        ("data_parallel", "--replicas", huge),
        ("data_parallel", "--allreduce-floats", huge),
        ("detect", "--train", huge),
        ("detect", "--width", huge),
        ("detect", "--size", "99999999968"),
        ("edge_detection", "--size", "4000000000"),
        ("motion_cnn", "--batch", "0"),
        ("motion_cnn", "--clips", huge),
        ("segment", "--epochs", "0"),
        ("segment", "--width", huge),
        ("sequence_cnn", "--batch", "0"),
        ("train_classifier", "--batch", "0"),
        ("transfer", "--batch", "0"),
        ("visualize", "--size", "100000"),
        ("siamese", "--grid", huge),
        ("siamese", "--per-class", huge),
        ("siamese", "--pairs", huge),
    ];
    for (name, flag, value) in cases {
        let run = Command::new(example(name))
            .args([flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            run.status.code() == Some(2)
                && stderr.contains(&format!("'{value}' for '{flag} "))
                && stderr.contains("is not in")
                && run.stdout.is_empty(),
            "{name} {flag} {value} should be refused by name:\n{stderr}"
        );
    }
}

#[test]
fn a_headless_run_prints_no_window_system_errors() {
    let out = std::env::temp_dir()
        .join(format!("fovea-headless-{}", std::process::id()))
        .join("lenet.safetensors");
    // `best` opens the GPU when there is one and probes for it in any case, which is where
    // Mesa's drivers used to complain about the missing runtime directory.
    let run = Command::new(example("train_lenet"))
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("DISPLAY")
        .args([
            "--device", "best", "--epochs", "1", "--limit", "64", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&run.stdout)
    );
    assert!(
        !stderr.contains("XDG_RUNTIME_DIR") && !stderr.lines().any(|l| l.starts_with("error:")),
        "a headless run printed:\n{stderr}"
    );
    std::fs::remove_dir_all(out.parent().unwrap()).ok();
}
/// The number after `key` on the first line that starts with `prefix`.
fn figure(stdout: &str, prefix: &str, key: &str) -> f64 {
    stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split(key).nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no {key:?} on a {prefix:?} line in:\n{stdout}"))
}

/// Runs `examples/siamese` with tiny settings plus `extra`, checks its pictures and
/// returns what it printed.
fn run_siamese(name: &str, extra: &[&str]) -> String {
    let out = std::env::temp_dir().join(format!("fovea-{name}-{}", std::process::id()));
    let mut args: Vec<&OsStr> = extra
        .iter()
        .chain(&[
            "--device",
            "cpu",
            "--steps",
            "8",
            "--per-class",
            "4",
            "--width",
            "4",
            "--dim",
            "16",
            "--pairs",
            "200",
            "--episodes",
            "5",
            "--fit-images",
            "300",
            "--mining",
            "semi-hard",
            "--head-steps",
            "20",
            "--out",
        ])
        .map(OsStr::new)
        .collect();
    args.push(out.as_os_str());
    let stdout = run_example("siamese", &args);
    for p in ["pca.png", "loss.png"] {
        image::open(out.join(p)).unwrap_or_else(|e| panic!("siamese {p}: {e}"));
    }
    std::fs::remove_dir_all(&out).ok();
    stdout
}

#[test]
fn siamese_trains_a_triplet_encoder_and_scores_unseen_digits() {
    let stdout = run_siamese("siamese", &["--epochs", "2"]);
    let (first, second) = (
        figure(&stdout, "epoch  1/2", "triplet loss "),
        figure(&stdout, "epoch  2/2", "triplet loss "),
    );
    assert!(second < first, "the triplet loss fell: {first} → {second}");
    for who in ["untrained ", "trained "] {
        for key in [
            "L1 head ",
            "χ² head ",
            "distance threshold ",
            "recognition ",
        ] {
            let v = figure(&stdout, who, key);
            assert!((0.0..=100.0).contains(&v), "{who}{key}{v}");
        }
    }
}

#[test]
fn siamese_learns_fashion_articles_and_tests_on_unseen_ones() {
    let stdout = run_siamese("siamese-fashion", &["--data", "fashion", "--epochs", "1"]);
    // Fashion-MNIST's training split holds 6,000 images of each of the 7 seen classes, its
    // test split 1,000 of each of the 3 unseen ones.
    assert!(
        stdout.contains("training on 42000 images")
            && stdout.contains("testing on 3000 held-out images")
            && stdout.contains("sneaker, bag and ankle boot"),
        "{stdout}"
    );
    let v = figure(&stdout, "trained ", "recognition ");
    assert!((0.0..=100.0).contains(&v), "recognition {v}");
}

#[test]
fn data_parallel_replicas_match_one_device_and_train() {
    let out = std::env::temp_dir().join(format!("fovea-dp-{}", std::process::id()));
    let mut args: Vec<&OsStr> = [
        "--device",
        "cpu",
        "--replicas",
        "3",
        "--epochs",
        "1",
        "--limit",
        "384",
        "--out",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    args.push(out.as_os_str());
    let stdout = run_example("data_parallel", &args);
    let diff: f64 = stdout
        .lines()
        .find_map(|l| l.split("whole batch by ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no check line in:\n{stdout}"));
    assert!(diff < 1e-6, "3 replicas vs one device: {diff}");
    assert!(stdout.contains("epoch 1/1"), "{stdout}");
    assert!(out.join("lenet.safetensors").exists());
    std::fs::remove_dir_all(&out).ok();
}
