//! Data-parallel training across MPI processes (the `mpi` feature; `.ci/run` installs
//! Open MPI and runs this file): `mpirun -np 2` with one replica each ends with the weights
//! of one device on the whole batch, and a rank that dies ends the job instead of leaving
//! the others waiting.
#![cfg(feature = "mpi")]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--features",
        "mpi",
        "--example",
        "data_parallel",
    ]);
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    assert!(
        cmd.status().unwrap().success(),
        "building data_parallel failed"
    );
    profile_dir.join("examples/data_parallel")
}

/// Runs `mpirun` with `args`, killing it after `limit`; `None` when it had to be killed.
fn mpirun(args: &[&str], limit: Duration) -> Option<Output> {
    let mut child = Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun is installed (Debian: openmpi-bin)");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().ok();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(child.wait_with_output().unwrap())
}

#[test]
fn two_ranks_train_like_one_device_on_the_whole_batch() {
    let ex = example();
    let ex = ex.to_str().unwrap();
    let args = [
        "-np",
        "2",
        ex,
        "--mpi",
        "--device",
        "cpu",
        "--replicas",
        "1",
        "--epochs",
        "1",
        "--limit",
        "640",
        "--check-steps",
        "4",
        "--out",
    ];
    let out = std::env::temp_dir().join(format!("fovea-mpi-{}", std::process::id()));
    let mut all: Vec<&str> = args.to_vec();
    all.push(out.to_str().unwrap());
    let run = mpirun(&all, Duration::from_secs(300)).expect("mpirun hung");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("2 process(es)"), "{stdout}");
    let diff: f64 = stdout
        .lines()
        .find_map(|l| l.split("whole batch by ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no check line in:\n{stdout}"));
    assert!(diff < 1e-6, "2 ranks vs one device: {diff}");
    let first_acc = accuracy(&stdout);
    // Rank 0 wrote the weights, and they load into any number of ranks.
    let weights = out.join("lenet.safetensors");
    assert!(weights.exists());
    let resume = [
        "-np",
        "3",
        ex,
        "--mpi",
        "--device",
        "cpu",
        "--replicas",
        "1",
        "--epochs",
        "1",
        "--limit",
        "300",
        "--check-steps",
        "0",
        "--lr",
        "0",
        "--resume",
    ];
    let mut all: Vec<&str> = resume.to_vec();
    all.extend([weights.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let run = mpirun(&all, Duration::from_secs(300)).expect("mpirun hung");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    // With a learning rate of 0 the 3 ranks keep the loaded weights: the same accuracy as
    // the 2 ranks that saved them (a fresh net would not give it).
    assert_eq!(accuracy(&stdout), first_acc, "{stdout}");
    std::fs::remove_dir_all(&out).ok();
}

fn accuracy(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.split("test accuracy ").nth(1))
        .and_then(|v| v.split('%').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no epoch line in:\n{stdout}"))
}

#[test]
fn a_rank_that_dies_ends_the_job_instead_of_a_hang() {
    let ex = example();
    let ex = ex.to_str().unwrap();
    // Rank 1 refuses its arguments and exits before joining; rank 0 would wait for it.
    let args = [
        "-np",
        "1",
        ex,
        "--mpi",
        "--device",
        "cpu",
        "--limit",
        "640",
        ":",
        "-np",
        "1",
        ex,
        "--mpi",
        "--limit",
        "not-a-number",
    ];
    let run = mpirun(&args, Duration::from_secs(120)).expect("the job hung after a rank died");
    assert!(!run.status.success());
}
