//! Data-parallel training of LeNet-5 on the bundled MNIST digits: one replica per device
//! (several CPU devices, or several devices on the GPU), each batch split between them,
//! gradients summed after backward. With the `mpi` feature and `--mpi` it also spans
//! processes and machines: `mpirun -np 4 target/release/examples/data_parallel --mpi`.
//!
//! First it checks its promise: a few steps of the replicas against one device on the
//! whole batch, printing the largest relative difference of the weights. Then it trains,
//! printing the test accuracy and the time spent summing gradients; rank 0 writes the
//! weights after each epoch (loadable by any number of ranks with `--resume`).

#[path = "../common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use common::mnist;
use fovea::data::DataLoader;
use fovea::models::LeNet5;
use fovea::nn::Module;
use fovea::optim::{Optimizer, Sgd, SgdOptions};
use fovea::parallel::{AllReduce, DataParallel, LocalWorld};
use fovea::{checkpoint, Device, DeviceExt, Tensor};

/// Data-parallel LeNet-5 on MNIST over several devices (and MPI processes).
#[derive(Parser)]
#[command(long_about = None)]
struct Args {
    /// Replicas in this process, one per device.
    #[arg(long, default_value_t = 2, value_parser = common::args::within(1, 64))]
    replicas: usize,
    /// cpu, gpu or best: the kind of device every replica gets.
    #[arg(long, default_value = "best")]
    device: String,
    /// Join the other MPI processes (needs the `mpi` feature; launch with mpirun).
    #[arg(long)]
    mpi: bool,
    /// Epochs over the training digits.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Digits per replica per step.
    #[arg(long, default_value_t = 32, value_parser = common::args::within(1, 65_536))]
    batch: usize,
    /// SGD learning rate (momentum 0.9).
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// Use only the first N training digits.
    #[arg(long)]
    limit: Option<usize>,
    /// Steps of the equivalence check before training (0 skips it).
    #[arg(long, default_value_t = 3)]
    check_steps: usize,
    /// Time one all-reduce of this many floats (e.g. 11700000, ResNet-18's gradients)
    /// across the processes, then stop.
    #[arg(long, value_parser = common::args::within(1, 1 << 28))]
    allreduce_floats: Option<usize>,
    /// Start from these weights (any number of replicas and ranks can load them).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Where rank 0 writes the weights.
    #[arg(long, default_value = "out/data_parallel")]
    out: PathBuf,
    /// Seed of the weights and the shuffling (the same on every rank).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fault injection for the tests: the rank given by --fail-rank exits with status 3
    /// before training step N of the first epoch, as a crashed process would.
    #[arg(long, hide = true)]
    fail_at_step: Option<usize>,
    /// The rank that --fail-at-step stops.
    #[arg(long, hide = true, default_value_t = 1)]
    fail_rank: usize,
}

fn world(a: &Args) -> Result<Box<dyn AllReduce>> {
    if !a.mpi {
        return Ok(Box::new(LocalWorld));
    }
    #[cfg(feature = "mpi")]
    return Ok(Box::new(fovea::mpi::MpiWorld::init()?));
    #[cfg(not(feature = "mpi"))]
    anyhow::bail!(
        "--mpi needs the mpi feature: cargo build --release --features mpi --example data_parallel"
    )
}

fn devices(a: &Args) -> Result<Vec<Device>> {
    let first = Device::by_name(&a.device)?;
    if !first.is_gpu() {
        // Separate CPU devices: each replica's tensors stay apart, as on separate GPUs.
        return Ok((0..a.replicas)
            .map(|_| Device::cpu_with_memory_limit(usize::MAX))
            .collect());
    }
    let name = first.name();
    let filter = name.split_whitespace().next().unwrap_or("").to_string();
    let mut devs = vec![first];
    for _ in 1..a.replicas {
        devs.push(Device::gpu_with(&filter)?);
    }
    Ok(devs)
}

fn loss(m: &LeNet5, part: &[Tensor]) -> fovea::Result<Tensor> {
    let labels: Vec<usize> = part[1].to_vec()?.iter().map(|&v| v as usize).collect();
    m.forward(&part[0])?.cross_entropy(&labels)
}

fn sgd(params: Vec<Tensor>, lr: f32) -> Sgd {
    let opts = SgdOptions {
        lr,
        momentum: 0.9,
        ..Default::default()
    };
    Sgd::new(params, opts)
}

fn build(a: &Args) -> impl Fn(&Device) -> fovea::Result<LeNet5> + '_ {
    move |d| {
        // No dropout: replicas would draw different masks than one device would.
        let m = LeNet5::new(10, 0.0, a.seed, d)?;
        if let Some(path) = &a.resume {
            checkpoint::load_module(&m, path)?;
        }
        Ok(m)
    }
}

fn labels_tensor(labels: &[usize], dev: &Device) -> fovea::Result<Tensor> {
    let v = labels.iter().map(|&l| l as f32).collect();
    Tensor::from_vec(v, &[labels.len()], dev)
}

/// Trains replicas and one device side by side on the same global batches and returns the
/// largest relative difference of their weights.
fn check(
    a: &Args,
    data: &fovea::data::InMemoryDataset,
    devs: &[Device],
    w: Box<dyn AllReduce>,
) -> Result<(f64, Box<dyn AllReduce>)> {
    let (rank, size) = (w.rank(), w.size());
    let dp = DataParallel::new(devs, build(a))?.with_world(w)?;
    let mut opts: Vec<Sgd> = (0..devs.len())
        .map(|i| sgd(dp.parameters(i), a.lr))
        .collect();
    let one = build(a)(&Device::cpu())?;
    let mut opt = sgd(one.parameters(), a.lr);
    let per_rank = a.batch * devs.len();
    let mine = DataLoader::new(data, per_rank, Some(a.seed), &Device::cpu())?.shard(rank, size)?;
    let whole = DataLoader::new(data, per_rank * size, Some(a.seed), &Device::cpu())?;
    for (b, g) in mine.zip(whole).take(a.check_steps) {
        let (b, g) = (b?, g?);
        dp.forward_backward(
            &[&b.images, &labels_tensor(&b.labels, &Device::cpu())?],
            loss,
        )?;
        opts.iter_mut().try_for_each(|o| o.step())?;
        opt.zero_grad();
        loss(&one, &[g.images, labels_tensor(&g.labels, &Device::cpu())?])?.backward()?;
        opt.step()?;
    }
    let mut worst = 0.0f64;
    for (p, q) in dp.parameters(devs.len() - 1).iter().zip(one.parameters()) {
        let (p, q) = (p.to_vec()?, q.to_vec()?);
        let num: f64 = p
            .iter()
            .zip(&q)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum();
        let den: f64 = q.iter().map(|y| (*y as f64).powi(2)).sum();
        worst = worst.max((num / den.max(1e-30)).sqrt());
    }
    Ok((worst, dp.into_world()))
}

fn main() -> Result<()> {
    let a = Args::parse();
    common::output::ready_dir("--out", &a.out)?;
    let w = world(&a)?;
    let (rank, size) = (w.rank(), w.size());
    if let Some(n) = a.allreduce_floats {
        let mut buf = vec![1.0f32; n];
        w.all_reduce_sum(&mut buf)?;
        let t = Instant::now();
        let runs = 5;
        for _ in 0..runs {
            w.all_reduce_sum(&mut buf)?;
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / runs as f64;
        if rank == 0 {
            println!("all-reduce of {n} floats over {size} processes: {ms:.1} ms");
        }
        return Ok(());
    }
    let devs = devices(&a)?;
    let say = |s: String| {
        if rank == 0 {
            println!("{s}");
        }
    };
    say(format!(
        "{} replica(s) on {} per process, {size} process(es)",
        devs.len(),
        devs[0].name()
    ));
    let mut train = mnist::load(&mnist::bundled_dir(), "train")?;
    if let Some(n) = a.limit {
        train = train.take(n);
    }
    let test = mnist::load(&mnist::bundled_dir(), "t10k")?;
    let w = if a.check_steps > 0 {
        let (worst, w) = check(&a, &train, &devs, w)?;
        say(format!("check: after {} steps the replicas' weights differ from one device on the whole batch by {worst:.2e} (relative)", a.check_steps));
        w
    } else {
        w
    };
    let dp = DataParallel::new(&devs, build(&a))?.with_world(w)?;
    let mut opts: Vec<Sgd> = (0..devs.len())
        .map(|i| sgd(dp.parameters(i), a.lr))
        .collect();
    std::fs::create_dir_all(&a.out)?;
    for epoch in 1..=a.epochs {
        let start = Instant::now();
        let (mut steps, mut reduce_ms, mut total) = (0, 0.0, 0.0);
        let loader = DataLoader::new(
            &train,
            a.batch * devs.len(),
            Some(a.seed + epoch as u64),
            &Device::cpu(),
        )?
        .shard(rank, size)?
        .random_shift(2, a.seed + epoch as u64);
        for b in loader {
            if epoch == 1 && rank == a.fail_rank && a.fail_at_step == Some(steps) {
                eprintln!("rank {rank}: exiting at step {steps} (--fail-at-step)");
                std::process::exit(3);
            }
            let b = b?;
            total += dp.forward_backward(
                &[&b.images, &labels_tensor(&b.labels, &Device::cpu())?],
                loss,
            )?;
            reduce_ms += dp.last_reduce_ms();
            opts.iter_mut().try_for_each(|o| o.step())?;
            steps += 1;
        }
        let acc = mnist::accuracy(&dp.replicas()[0], &test, &devs[0])?;
        let secs = start.elapsed().as_secs_f64();
        say(format!(
            "epoch {epoch}/{}  loss {:.4}  test accuracy {:.2}%  {steps} steps in {secs:.1} s, summing gradients {:.1} ms/step",
            a.epochs,
            total / steps.max(1) as f32,
            100.0 * acc,
            reduce_ms / steps.max(1) as f64
        ));
        if rank == 0 {
            checkpoint::save_module(&dp.replicas()[0], &a.out.join("lenet.safetensors"))?;
        }
    }
    say(format!(
        "weights in {}",
        a.out.join("lenet.safetensors").display()
    ));
    Ok(())
}
