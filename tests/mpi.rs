//! Data-parallel training across MPI processes (the `mpi` feature; `.ci/run` installs
//! Open MPI and runs this file): `mpirun -np 2` with one replica each ends with the weights
//! of one device on the whole batch, on CPU devices and on GPU devices (gradients staged
//! through the host), and a rank that dies ends the job instead of leaving the others
//! waiting.
#![cfg(feature = "mpi")]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // The test profile rather than `dev` (see tests/examples.rs): kernels optimized.
    let profile = if profile_dir.ends_with("release") {
        "release"
    } else {
        "test"
    };
    cmd.args([
        "build",
        "--quiet",
        "--features",
        "mpi",
        "--profile",
        profile,
    ]);
    cmd.args(["--example", "data_parallel"]);
    assert!(
        cmd.status().unwrap().success(),
        "building data_parallel failed"
    );
    profile_dir.join("examples/data_parallel")
}

/// Runs `mpirun` with `args`, killing it after `limit`; `None` when it had to be killed.
fn mpirun(args: &[String], limit: Duration) -> Option<Output> {
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

/// The arguments of `np` ranks running the example on one CPU replica each, then `extra`.
fn job(np: usize, ex: &str, extra: &[&str]) -> Vec<String> {
    job_on("cpu", np, ex, extra)
}

/// As [`job`], each rank's replica on a `device` device.
fn job_on(device: &str, np: usize, ex: &str, extra: &[&str]) -> Vec<String> {
    let np = np.to_string();
    let base = [
        "-np",
        &np,
        ex,
        "--mpi",
        "--device",
        device,
        "--replicas",
        "1",
        "--epochs",
        "1",
    ];
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn text(run: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&run.stdout).into_owned(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
    )
}

#[test]
fn two_ranks_train_like_one_device_on_the_whole_batch() {
    let ex = example();
    let ex = ex.to_str().unwrap();
    let out = std::env::temp_dir().join(format!("fovea-mpi-{}", std::process::id()));
    let dir = out.to_str().unwrap();
    let args = job(
        2,
        ex,
        &["--limit", "640", "--check-steps", "4", "--out", dir],
    );
    let stdout = two_ranks_checked(&args);
    let diff = check_difference(&stdout);
    assert!(diff < 1e-6, "2 ranks vs one device: {diff}");
    let first_acc = accuracy(&stdout);
    // Rank 0 wrote the weights, and they load into any number of ranks.
    let weights = out.join("lenet.safetensors");
    assert!(weights.exists());
    let w = weights.to_str().unwrap();
    let resume = [
        "--limit",
        "300",
        "--check-steps",
        "0",
        "--lr",
        "0",
        "--resume",
        w,
        "--out",
        dir,
    ];
    let run = mpirun(&job(3, ex, &resume), Duration::from_secs(300)).expect("mpirun hung");
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    // With a learning rate of 0 the 3 ranks keep the loaded weights: the same accuracy as
    // the 2 ranks that saved them (a fresh net would not give it).
    assert_eq!(accuracy(&stdout), first_acc, "{stdout}");
    std::fs::remove_dir_all(&out).ok();
}

/// Runs a job of two ranks that must succeed and returns what it printed.
fn two_ranks_checked(args: &[String]) -> String {
    let run = mpirun(args, Duration::from_secs(300)).expect("mpirun hung");
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 process(es)"), "{stdout}");
    stdout
}

/// The check line's relative difference between the ranks and one device.
fn check_difference(stdout: &str) -> f64 {
    stdout
        .lines()
        .find_map(|l| l.split("whole batch by ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no check line in:\n{stdout}"))
}

#[test]
fn two_ranks_on_gpu_devices_sum_host_staged_gradients_like_one_device() {
    if common::gpu("two_ranks_on_gpu_devices").is_none() {
        return;
    }
    let ex = example();
    let ex = ex.to_str().unwrap();
    // Each rank reads its GPU gradients to the host, all-reduces them and writes them back.
    let args = job_on("gpu", 2, ex, &["--limit", "320", "--check-steps", "3"]);
    let stdout = two_ranks_checked(&args);
    // Split batches sum in a different order on the GPU than one whole batch does.
    let diff = check_difference(&stdout);
    assert!(diff < 1e-5, "2 GPU ranks vs one GPU device: {diff}");
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
fn a_rank_that_dies_before_joining_ends_the_job_instead_of_a_hang() {
    let ex = example();
    let ex = ex.to_str().unwrap();
    // Rank 1 refuses its arguments and exits before joining; rank 0 would wait for it.
    let mut args = job(1, ex, &["--limit", "640"]);
    args.push(":".into());
    args.extend(job(1, ex, &["--limit", "not-a-number"]));
    let run = mpirun(&args, Duration::from_secs(120)).expect("the job hung after a rank died");
    assert!(!run.status.success());
}

#[test]
fn a_rank_that_dies_mid_training_ends_the_job_naming_it() {
    let ex = example();
    let ex = ex.to_str().unwrap();
    // Rank 1 exits at its fifth step; rank 0 is then waiting in MPI_Allreduce for it.
    let args = job(
        2,
        ex,
        &[
            "--limit",
            "6400",
            "--check-steps",
            "0",
            "--fail-at-step",
            "5",
        ],
    );
    let start = Instant::now();
    let run = mpirun(&args, Duration::from_secs(120)).expect("the job hung after a rank died");
    let (stdout, stderr) = text(&run);
    assert!(!run.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("rank 1: exiting at step 5"),
        "{stdout}\n{stderr}"
    );
    // Open MPI names the first process to fail: [[job,1],1] is rank 1.
    assert!(
        stderr.contains("non-zero") && stderr.contains(",1],1]"),
        "{stdout}\n{stderr}"
    );
    // Rank 0 did not finish its epoch (6400 digits take far more than 5 steps).
    assert!(!stdout.contains("test accuracy"), "{stdout}");
    eprintln!(
        "the job ended {:.1} s after it started",
        start.elapsed().as_secs_f64()
    );
}
