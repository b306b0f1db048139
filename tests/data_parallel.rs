//! Data-parallel training: replicas with batch B each end with the weights of one device
//! training on the whole batch, on the CPU and on two GPU devices; the groups of
//! processes (MPI's stand-in here) check that they hold the same model; sharded loading;
//! bad input.

mod common;

use std::sync::{Arc, Mutex};

use fovea::data::{DataLoader, InMemoryDataset};
use fovea::nn::{BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, Relu, Sequential};
use fovea::ops::{Conv2dOptions, Pool2dOptions};
use fovea::optim::{Optimizer, Sgd, SgdOptions};
use fovea::parallel::{AllReduce, DataParallel};
use fovea::{Device, DeviceExt, Result, Tensor};

fn net(dev: &Device) -> Result<Sequential> {
    let pad = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    Ok(Sequential::new()
        .push(Conv2d::new(1, 6, [3, 3], pad, true, 1, dev)?)
        .push(Relu)
        .push(MaxPool2d(Pool2dOptions::square(2)))
        .push(fovea::nn::Flatten)
        .push(Linear::new(6 * 4 * 4, 5, true, 2, dev)))
}

fn sgd(params: Vec<Tensor>) -> Sgd {
    Sgd::new(
        params,
        SgdOptions {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    )
}

fn data(n: usize) -> (Tensor, Vec<usize>) {
    let x = Tensor::randn(&[n, 1, 8, 8], 7, &Device::cpu());
    (x, (0..n).map(|i| (i * 7 + 3) % 5).collect())
}

fn one_hot(labels: &[usize], dev: &Device) -> Tensor {
    let mut v = vec![0.0; labels.len() * 5];
    for (i, &l) in labels.iter().enumerate() {
        v[i * 5 + l] = 1.0;
    }
    Tensor::from_vec(v, &[labels.len(), 5], dev).unwrap()
}

fn loss(m: &Sequential, part: &[Tensor]) -> Result<Tensor> {
    // Cross-entropy against one-hot targets given as a tensor, so they split with the rows.
    let logp = m.forward(&part[0])?.log_softmax(1)?;
    Ok(logp
        .mul(&part[1])?
        .sum()
        .neg()
        .div_scalar(part[0].shape()[0] as f32))
}

/// Weights after `steps` SGD steps of one device on the whole batch.
fn single(dev: &Device, x: &Tensor, t: &Tensor, steps: usize) -> Vec<Vec<f32>> {
    let m = net(dev).unwrap();
    let mut opt = sgd(m.parameters());
    let (x, t) = (x.to_device(dev).unwrap(), t.to_device(dev).unwrap());
    for _ in 0..steps {
        opt.zero_grad();
        loss(&m, &[x.clone(), t.clone()])
            .unwrap()
            .backward()
            .unwrap();
        opt.step().unwrap();
    }
    m.parameters().iter().map(|p| p.to_vec().unwrap()).collect()
}

/// Weights of every replica after `steps` data-parallel steps.
fn replicated(devs: &[Device], x: &Tensor, t: &Tensor, steps: usize) -> Vec<Vec<Vec<f32>>> {
    let dp = DataParallel::new(devs, net).unwrap();
    let mut opts: Vec<Sgd> = (0..devs.len()).map(|i| sgd(dp.parameters(i))).collect();
    for _ in 0..steps {
        dp.forward_backward(&[x, t], loss).unwrap();
        opts.iter_mut().for_each(|o| o.step().unwrap());
    }
    (0..devs.len())
        .map(|i| {
            dp.parameters(i)
                .iter()
                .map(|p| p.to_vec().unwrap())
                .collect()
        })
        .collect()
}

fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], tol: f64, what: &str) {
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let err = common::rel_err(g, w);
        assert!(err <= tol, "{what}: parameter {k} off by {err:.2e}");
    }
}

#[test]
fn replicas_end_with_the_weights_of_one_device_on_the_whole_batch() {
    let cpu = Device::cpu();
    let second = Device::cpu_with_memory_limit(usize::MAX);
    let third = Device::cpu_with_memory_limit(usize::MAX);
    for (n, devs) in [
        (8, vec![cpu.clone(), second.clone()]),
        (7, vec![cpu.clone(), second, third]),
    ] {
        let (x, labels) = data(n);
        let t = one_hot(&labels, &cpu);
        let want = single(&cpu, &x, &t, 3);
        let reps = replicated(&devs, &x, &t, 3);
        for (i, r) in reps.iter().enumerate() {
            assert_close(
                r,
                &want,
                1e-6,
                &format!("{} replicas, replica {i}", devs.len()),
            );
            // Every replica holds exactly the same numbers.
            assert_eq!(r, &reps[0], "replica {i} drifted from replica 0");
        }
        // A different batch really gives other weights: the comparison can fail.
        let (x2, _) = data(n + 1);
        let other = single(&cpu, &x2.narrow(0, 1, n).unwrap(), &t, 3);
        assert!(common::rel_err(&other[0], &want[0]) > 1e-3);
    }
}

#[test]
fn two_gpu_devices_train_like_one_cpu() {
    let Some(gpu) = common::gpu("two_gpu_devices_train_like_one_cpu") else {
        return;
    };
    let name = gpu.name();
    let filter = name.split_whitespace().next().unwrap_or("");
    let second = Device::gpu_with(filter).unwrap();
    let cpu = Device::cpu();
    let (x, labels) = data(8);
    let t = one_hot(&labels, &cpu);
    let want = single(&cpu, &x, &t, 3);
    let devs = [gpu, second];
    for r in replicated(&devs, &x, &t, 3) {
        assert_close(&r, &want, 1e-5, "2 GPU replicas");
    }
    // Synchronised batch norm: its sums staged through the host from both devices.
    let want = single_bn(&x, &t, 3);
    let dp = DataParallel::new(&devs, bn_net)
        .unwrap()
        .sync_batch_norm(true);
    train_bn(&dp, &x, &t, 3);
    for (i, r) in dp.replicas().iter().enumerate() {
        assert_close(&state(r), &want, 1e-5, &format!("GPU replica {i}, sync"));
    }
}

#[test]
fn bad_data_parallel_input_is_a_clear_error() {
    let cpu = Device::cpu();
    let err = |r: Result<DataParallel<Sequential>>| r.err().unwrap().to_string();
    let e = err(DataParallel::new(&[cpu.clone(), cpu.clone()], net));
    assert!(e.contains("data_parallel") && e.contains("twice"), "{e}");
    assert!(err(DataParallel::new(&[], net)).contains("at least one device"));
    if let Ok(gpu) = Device::gpu() {
        let e = err(DataParallel::new(&[cpu.clone(), gpu], net));
        assert!(e.contains("different kinds"), "{e}");
    }
    let second = Device::cpu_with_memory_limit(usize::MAX);
    let first = std::sync::atomic::AtomicBool::new(true);
    let e = err(DataParallel::new(&[cpu.clone(), second.clone()], |d| {
        if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            net(d)
        } else {
            Ok(Sequential::new().push(Linear::new(3, 2, true, 0, d)))
        }
    }));
    assert!(e.contains("other parameters"), "{e}");
    let dp = DataParallel::new(&[cpu.clone(), second], net).unwrap();
    let (x, labels) = data(1);
    let t = one_hot(&labels, &cpu);
    let e = dp
        .forward_backward(&[&x, &t], loss)
        .unwrap_err()
        .to_string();
    assert!(e.contains("batch of 1") && e.contains("2 replicas"), "{e}");
    let (x3, _) = data(3);
    let e = dp
        .forward_backward(&[&x3, &t], loss)
        .unwrap_err()
        .to_string();
    assert!(e.contains("disagree"), "{e}");
}

/// A stand-in for a second process: its reductions add what that process would send,
/// recorded from a run of its own.
struct Echo {
    other: Mutex<Vec<Vec<f64>>>,
}

impl AllReduce for Echo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        2
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let mut b: Vec<f64> = buf.iter().map(|&v| v as f64).collect();
        self.all_reduce_sum_f64(&mut b)?;
        buf.iter_mut().zip(b).for_each(|(d, s)| *d = s as f32);
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        let other = self.other.lock().unwrap().remove(0);
        buf.iter_mut().zip(other).for_each(|(d, o)| *d += o);
        Ok(())
    }
    fn broadcast_from_root(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
}

/// Records the model check a process sends (its first f64 reduction).
struct Record(Arc<Mutex<Vec<Vec<f64>>>>);

impl AllReduce for Record {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.0.lock().unwrap().push(buf.to_vec());
        Ok(())
    }
    fn broadcast_from_root(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
}

fn check_of(build: fn(&Device) -> Result<Sequential>) -> Vec<f64> {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let dp = DataParallel::new(&[Device::cpu()], build).unwrap();
    dp.with_world(Box::new(Record(sent.clone()))).unwrap();
    let first = sent.lock().unwrap()[0].clone();
    first
}

fn wider(dev: &Device) -> Result<Sequential> {
    Ok(net(dev)?.push(Linear::new(5, 6, true, 3, dev)))
}

#[test]
fn processes_that_disagree_on_the_model_are_refused_at_the_start() {
    let cpu = Device::cpu();
    let same = check_of(net);
    let dp = DataParallel::new(std::slice::from_ref(&cpu), net).unwrap();
    let echo = Echo {
        other: Mutex::new(vec![same.clone()]),
    };
    assert!(dp.with_world(Box::new(echo)).is_ok());
    // The other process's model has one more layer.
    let different = check_of(wider);
    assert_ne!(different, same);
    let dp = DataParallel::new(&[cpu], net).unwrap();
    let echo = Echo {
        other: Mutex::new(vec![different]),
    };
    let e = dp.with_world(Box::new(echo)).err().unwrap().to_string();
    assert!(
        e.contains("disagree on the model") && e.contains("0 of 2"),
        "{e}"
    );
}

#[test]
fn sharded_loaders_together_yield_the_batches_of_one_loader() {
    let cpu = Device::cpu();
    let n = 23;
    let images: Vec<f32> = (0..n * 4).map(|v| v as f32).collect();
    let labels: Vec<usize> = (0..n).collect();
    let ds = InMemoryDataset {
        shape: vec![1, 2, 2],
        values: images,
        labels,
        classes: n,
        background: 0.0,
    };
    let whole: Vec<Vec<usize>> = DataLoader::new(&ds, 6, Some(5), &cpu)
        .unwrap()
        .map(|b| b.unwrap().labels)
        .collect();
    let shards: Vec<Vec<Vec<usize>>> = (0..2)
        .map(|r| {
            DataLoader::new(&ds, 3, Some(5), &cpu)
                .unwrap()
                .shard(r, 2)
                .unwrap()
                .map(|b| b.unwrap().labels)
                .collect()
        })
        .collect();
    // 23 items: one loader gives 6, 6, 6, 5; each shard 11 items: 3, 3, 3, 2 (the
    // shuffled order's last item sits out this epoch).
    assert_eq!(shards[0].len(), 4);
    assert_eq!(shards[1].len(), 4);
    for (k, batch) in whole.iter().enumerate() {
        let mut union: Vec<usize> = shards[0][k].iter().chain(&shards[1][k]).copied().collect();
        let mut want = batch.clone();
        union.sort();
        want.sort();
        if k < 3 {
            assert_eq!(union, want, "batch {k}");
        } else {
            assert_eq!(union.len(), 4);
            assert!(union.iter().all(|u| want.contains(u)), "batch {k}");
        }
    }
    assert!(DataLoader::new(&ds, 3, None, &cpu)
        .unwrap()
        .shard(2, 2)
        .is_err());
}

// ---- Synchronised batch norm ----

fn bn_net(dev: &Device) -> Result<Sequential> {
    let pad = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    Ok(Sequential::new()
        .push(Conv2d::new(1, 4, [3, 3], pad, true, 1, dev)?)
        .push(BatchNorm2d::new(4, dev))
        .push(Relu)
        .push(MaxPool2d(Pool2dOptions::square(2)))
        .push(fovea::nn::Flatten)
        .push(Linear::new(4 * 4 * 4, 5, true, 2, dev)))
}

/// Parameters and buffers (running statistics, batches seen), in `state_dict` order.
fn state(m: &Sequential) -> Vec<Vec<f32>> {
    m.state_dict()
        .iter()
        .map(|(_, t)| t.to_vec().unwrap())
        .collect()
}

/// The state after `steps` SGD steps of one device on the whole batch.
fn single_bn(x: &Tensor, t: &Tensor, steps: usize) -> Vec<Vec<f32>> {
    let m = bn_net(&Device::cpu()).unwrap();
    let mut opt = sgd(m.parameters());
    for _ in 0..steps {
        opt.zero_grad();
        let l = loss(&m, &[x.clone(), t.clone()]).unwrap();
        l.backward().unwrap();
        opt.step().unwrap();
    }
    state(&m)
}

/// Runs `steps` data-parallel steps of `dp` on its rows of `x` and `t`.
fn train_bn(dp: &DataParallel<Sequential>, x: &Tensor, t: &Tensor, steps: usize) {
    let mut opts: Vec<Sgd> = (0..dp.devices().len())
        .map(|i| sgd(dp.parameters(i)))
        .collect();
    for _ in 0..steps {
        dp.forward_backward(&[x, t], loss).unwrap();
        opts.iter_mut().for_each(|o| o.step().unwrap());
    }
}

fn cpus(n: usize) -> Vec<Device> {
    (0..n)
        .map(|_| Device::cpu_with_memory_limit(usize::MAX))
        .collect()
}

#[test]
fn sync_batch_norm_replicas_match_one_device_weights_and_running_statistics() {
    let cpu = Device::cpu();
    for n in [8, 7] {
        let (x, labels) = data(n);
        let t = one_hot(&labels, &cpu);
        let want = single_bn(&x, &t, 3);
        let replicas = if n == 8 { 2 } else { 3 };
        let dp = DataParallel::new(&cpus(replicas), bn_net)
            .unwrap()
            .sync_batch_norm(true);
        train_bn(&dp, &x, &t, 3);
        for (i, r) in dp.replicas().iter().enumerate() {
            let what = format!("{replicas} replicas, sync, replica {i}");
            assert_close(&state(r), &want, 1e-5, &what);
        }
        // Per-replica statistics (the default) give other running statistics and weights:
        // the comparison above can fail.
        let dp = DataParallel::new(&cpus(replicas), bn_net).unwrap();
        train_bn(&dp, &x, &t, 3);
        let got = state(&dp.replicas()[0]);
        let names: Vec<String> = dp.replicas()[0]
            .state_dict()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mean = names.iter().position(|k| k == "1.running_mean").unwrap();
        assert!(common::rel_err(&got[mean], &want[mean]) > 1e-3);
        assert!(common::rel_err(&got[0], &want[0]) > 1e-5);
    }
}

/// Two groups of replicas in two threads standing for two processes: sums go through
/// a shared slot per rank, added in rank order.
struct Pair {
    slots: Mutex<[Vec<f64>; 2]>,
    barrier: std::sync::Barrier,
}

struct ThreadWorld(usize, Arc<Pair>);

impl ThreadWorld {
    fn exchange(&self, buf: &mut [f64], root_only: bool) {
        self.1.slots.lock().unwrap()[self.0] = buf.to_vec();
        self.1.barrier.wait();
        {
            let s = self.1.slots.lock().unwrap();
            for (k, b) in buf.iter_mut().enumerate() {
                *b = if root_only {
                    s[0][k]
                } else {
                    s[0][k] + s[1][k]
                };
            }
        }
        self.1.barrier.wait();
    }
}

impl AllReduce for ThreadWorld {
    fn rank(&self) -> usize {
        self.0
    }
    fn size(&self) -> usize {
        2
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let mut b: Vec<f64> = buf.iter().map(|&v| v as f64).collect();
        self.exchange(&mut b, false);
        buf.iter_mut().zip(b).for_each(|(d, s)| *d = s as f32);
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.exchange(buf, false);
        Ok(())
    }
    fn broadcast_from_root(&self, buf: &mut [f32]) -> Result<()> {
        let mut b: Vec<f64> = buf.iter().map(|&v| v as f64).collect();
        self.exchange(&mut b, true);
        buf.iter_mut().zip(b).for_each(|(d, s)| *d = s as f32);
        Ok(())
    }
}

#[test]
fn sync_batch_norm_spans_processes_too() {
    // 2 processes × 2 replicas × 3 rows against one device with 12 rows.
    let cpu = Device::cpu();
    let (x, labels) = data(12);
    let t = one_hot(&labels, &cpu);
    let want = single_bn(&x, &t, 3);
    let pair = Arc::new(Pair {
        slots: Mutex::new([Vec::new(), Vec::new()]),
        barrier: std::sync::Barrier::new(2),
    });
    let got: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|rank| {
                let (x, t, pair) = (&x, &t, pair.clone());
                s.spawn(move || {
                    let dp = DataParallel::new(&cpus(2), bn_net)
                        .unwrap()
                        .sync_batch_norm(true)
                        .with_world(Box::new(ThreadWorld(rank, pair)))
                        .unwrap();
                    let mine = |t: &Tensor| t.narrow(0, 6 * rank, 6).unwrap();
                    train_bn(&dp, &mine(x), &mine(t), 3);
                    state(&dp.replicas()[1])
                })
            })
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, g) in got.iter().enumerate() {
        assert_close(g, &want, 1e-5, &format!("rank {rank}, sync"));
    }
}

#[test]
fn sync_batch_norm_gradients_match_finite_differences() {
    // A batch norm alone, so that every gradient goes through the synchronised sums;
    // 3 replicas of 2, 2 and 1 rows (a replica's single row is fine: the whole batch's
    // statistics are used).
    let build = |d: &Device| -> Result<Sequential> {
        let bn = BatchNorm2d::new(3, d);
        bn.weight
            .assign(&Tensor::from_vec(vec![0.5, -1.5, 2.0], &[3], d)?)?;
        bn.bias
            .assign(&Tensor::from_vec(vec![0.1, 0.2, -0.3], &[3], d)?)?;
        Ok(Sequential::new().push(bn))
    };
    let dp = DataParallel::new(&cpus(3), build)
        .unwrap()
        .sync_batch_norm(true);
    let cpu = Device::cpu();
    let shape = [5, 3, 2, 3];
    let x = Tensor::randn(&shape, 11, &cpu).requires_grad();
    let gy = Tensor::randn(&shape, 12, &cpu);
    let weighted = |m: &Sequential, p: &[Tensor]| -> Result<Tensor> {
        Ok(m.forward(&p[0])?.mul(&p[1])?.sum())
    };
    let eval = |x: &Tensor| dp.forward_backward(&[x, &gy], weighted).unwrap() as f64;
    eval(&x);
    let gx = x.grad().unwrap().to_vec().unwrap();
    let params = dp.parameters(0);
    let gp: Vec<Vec<f32>> = params
        .iter()
        .map(|p| p.grad().unwrap().to_vec().unwrap())
        .collect();
    let eps = 1e-2f32;
    let base = x.to_vec().unwrap();
    let (mut ana, mut num) = (Vec::new(), Vec::new());
    for j in (0..base.len()).step_by(3) {
        let at = |d: f32| {
            let mut v = base.clone();
            v[j] += d;
            eval(&Tensor::from_vec(v, &shape, &cpu).unwrap())
        };
        ana.push(gx[j]);
        num.push(((at(eps) - at(-eps)) / (2.0 * eps as f64)) as f32);
    }
    let err = common::rel_err(&ana, &num);
    assert!(err < 1e-2, "input gradient: {err:.2e}\n{ana:?}\n{num:?}");
    let x = x.detach();
    for (k, g) in gp.iter().enumerate() {
        let p0 = params[k].to_vec().unwrap();
        let (mut ana, mut num) = (Vec::new(), Vec::new());
        for c in 0..3 {
            let at = |d: f32| {
                let mut v = p0.clone();
                v[c] += d;
                for i in 0..3 {
                    let p = &dp.parameters(i)[k];
                    p.assign(&Tensor::from_vec(v.clone(), &[3], p.device()).unwrap())
                        .unwrap();
                }
                eval(&x)
            };
            ana.push(g[c]);
            num.push(((at(eps) - at(-eps)) / (2.0 * eps as f64)) as f32);
            at(0.0);
        }
        let err = common::rel_err(&ana, &num);
        assert!(err < 1e-2, "parameter {k}: {err:.2e}\n{ana:?}\n{num:?}");
    }
}

/// Runs `f` in a thread and fails the test if it takes longer than a minute.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()).ok());
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the step hung")
}

#[test]
fn a_replica_that_fails_or_panics_ends_the_step_with_an_error_naming_it() {
    // 0: an error before its forward pass; 1: an error after it, while the others wait
    // in backward; 2: a panic.
    for how in 0..3 {
        let e = within_a_minute(move || {
            let dp = DataParallel::new(&cpus(3), bn_net)
                .unwrap()
                .sync_batch_norm(true);
            let (x, labels) = data(6);
            let t = one_hot(&labels, &Device::cpu());
            let second = &dp.replicas()[1] as *const Sequential as usize;
            let r = dp.forward_backward(&[&x, &t], |m, p| {
                let bad = m as *const Sequential as usize == second;
                if bad && how == 0 {
                    return Err(fovea::Error::op("test", "no data"));
                }
                let l = loss(m, p)?;
                if bad && how == 2 {
                    panic!("out of cheese");
                }
                if bad {
                    return Err(fovea::Error::op("test", "no data"));
                }
                Ok(l)
            });
            r.unwrap_err().to_string()
        });
        assert!(e.contains("replica 1"), "{e}");
        if how == 2 {
            assert!(e.contains("panicked") && e.contains("out of cheese"), "{e}");
        } else {
            assert!(e.contains("no data"), "{e}");
        }
    }
}
