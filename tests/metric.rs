//! Metric learning: distances and triplet losses against PyTorch, online mining against a
//! brute-force enumeration of every triplet, gradients against finite differences, the
//! GPU against the CPU (ops and a training step), the verification heads and measures,
//! and bad input.

mod common;

use common::fixtures::{self, run_file};
use common::parity::{parity, randn};
use common::{gradcheck, rel_err, run_seed, Rng};
use fovea::models::metric::{
    balanced_pairs, best_threshold, by_class, mine, mined_triplet_loss, one_shot_recognition,
    pk_batch, threshold_accuracy, Mining, Triplets,
};
use fovea::models::{PairFeature, SiameseEncoder, VerificationHead};
use fovea::nn::Module;
use fovea::optim::{Optimizer, Sgd, SgdOptions};
use fovea::{Device, Error, Tensor};

const STRATEGIES: [Mining; 3] = [Mining::BatchAll, Mining::BatchHard, Mining::SemiHard];

fn message(e: Error, op: &str) -> String {
    let msg = e.to_string();
    assert!(msg.contains(op), "{msg:?} does not name {op}");
    msg
}

#[test]
fn distances_and_triplet_losses_match_pytorch() {
    run_file("metric.safetensors", 52, &Device::cpu(), fixtures::metric);
}

#[test]
fn distances_and_triplet_losses_match_pytorch_on_the_gpu() {
    if let Some(gpu) = common::gpu("distances_and_triplet_losses_match_pytorch_on_the_gpu") {
        run_file("metric.safetensors", 52, &gpu, fixtures::metric);
    }
}

/// Squared distances in f64 straight from the definition.
fn brute_distances(e: &[f32], n: usize, d: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = (0..d)
                .map(|k| (e[i * d + k] as f64 - e[j * d + k] as f64).powi(2))
                .sum();
        }
    }
    out
}

/// Every valid triplet `(a, p, n)` of the batch, enumerated.
fn all_triplets(labels: &[usize]) -> Vec<[usize; 3]> {
    let n = labels.len();
    let mut out = Vec::new();
    for a in 0..n {
        for p in 0..n {
            for q in 0..n {
                if a != p && labels[a] == labels[p] && labels[q] != labels[a] {
                    out.push([a, p, q]);
                }
            }
        }
    }
    out
}

/// The loss and triplet count each strategy must give, from the enumeration: for
/// batch-hard and semi-hard, the enumerated triplets grouped by anchor (or by positive
/// pair) and the defining extreme taken over each group.
fn brute_loss(dist: &[f64], labels: &[usize], margin: f64, mining: Mining) -> (f64, usize) {
    let n = labels.len();
    let d = |i: usize, j: usize| dist[i * n + j];
    let all = all_triplets(labels);
    let hinge = |t: &[usize; 3]| (d(t[0], t[1]) - d(t[0], t[2]) + margin).max(0.0);
    let chosen: Vec<[usize; 3]> = match mining {
        Mining::BatchAll => all.clone(),
        Mining::BatchHard => (0..n)
            .filter_map(|a| {
                let mine: Vec<&[usize; 3]> = all.iter().filter(|t| t[0] == a).collect();
                let p = mine
                    .iter()
                    .map(|t| d(a, t[1]))
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))?;
                let q = mine
                    .iter()
                    .map(|t| d(a, t[2]))
                    .fold(f64::INFINITY, f64::min);
                let t = mine.iter().find(|t| d(a, t[1]) == p && d(a, t[2]) == q)?;
                Some(**t)
            })
            .collect(),
        Mining::SemiHard => {
            let mut out = Vec::new();
            for a in 0..n {
                for p in 0..n {
                    let group: Vec<&[usize; 3]> =
                        all.iter().filter(|t| t[0] == a && t[1] == p).collect();
                    if group.is_empty() {
                        continue;
                    }
                    let farther: Vec<&&[usize; 3]> =
                        group.iter().filter(|t| d(a, t[2]) > d(a, p)).collect();
                    let t = if farther.is_empty() {
                        group
                            .iter()
                            .max_by(|x, y| d(a, x[2]).total_cmp(&d(a, y[2])))
                    } else {
                        farther
                            .into_iter()
                            .min_by(|x, y| d(a, x[2]).total_cmp(&d(a, y[2])))
                    };
                    out.push(**t.unwrap());
                }
            }
            out
        }
    };
    let active = chosen.iter().filter(|t| hinge(t) > 0.0).count();
    let sum: f64 = chosen.iter().map(hinge).sum();
    let divisor = if mining == Mining::BatchAll {
        active
    } else {
        chosen.len()
    };
    (sum / divisor.max(1) as f64, chosen.len())
}

/// Embeddings whose squared distances from each anchor differ by more than `gap`, and
/// whose hinges stay more than `gap` from 0: mining then picks the same triplets under
/// any finite-difference step or f32 rounding.
fn well_separated(
    n: usize,
    d: usize,
    labels: &[usize],
    margin: f32,
    gap: f64,
    rng: &mut Rng,
) -> Tensor {
    let dev = Device::cpu();
    loop {
        let e = Tensor::randn(&[n, d], rng.next(), &dev).mul_scalar(1.5);
        let v = e.to_vec().unwrap();
        let dist = brute_distances(&v, n, d);
        let rows_ok = (0..n).all(|a| {
            let mut row: Vec<f64> = (0..n)
                .filter(|&j| j != a)
                .map(|j| dist[a * n + j])
                .collect();
            row.sort_by(f64::total_cmp);
            row.windows(2).all(|w| w[1] - w[0] > gap)
        });
        let hinges_ok = all_triplets(labels)
            .iter()
            .all(|t| (dist[t[0] * n + t[1]] - dist[t[0] * n + t[2]] + margin as f64).abs() > gap);
        if rows_ok && hinges_ok {
            return e;
        }
    }
}

#[test]
fn mining_matches_a_brute_force_enumeration() {
    let mut rng = Rng(run_seed("mining_matches_a_brute_force_enumeration"));
    let mut checked = 0;
    for _ in 0..40 {
        let (n, d, classes) = (rng.range(2, 12), rng.range(1, 5), rng.range(1, 4));
        let labels: Vec<usize> = (0..n).map(|_| rng.range(0, classes - 1)).collect();
        let margin = rng.pick(&[0.1f32, 0.5, 1.0, 2.0]);
        // No two distances from an anchor and no hinge within 1e-3 of a tie: f32 mining
        // and the f64 enumeration then agree on every pick and on the active count.
        let e = well_separated(n, d, &labels, margin, 1e-3, &mut rng);
        let dist = brute_distances(&e.to_vec().unwrap(), n, d);
        let host: Vec<f32> = dist.iter().map(|&v| v as f32).collect();
        for mining in STRATEGIES {
            let (want, count) = brute_loss(&dist, &labels, margin as f64, mining);
            let got = mined_triplet_loss(&e, &labels, margin, mining).unwrap();
            let mined = mine(&host, &labels, margin, mining).unwrap();
            assert_eq!(mined.triplets.len(), count, "{mining} on {labels:?}");
            assert_eq!(got.triplets.triplets.len(), count, "{mining} on {labels:?}");
            let v = got.loss.item().unwrap() as f64;
            assert!(
                (v - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{mining} on {labels:?}, margin {margin}: loss {v}, enumeration {want}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 120);
    // The picks themselves, on batches where no two candidates tie.
    for _ in 0..6 {
        let labels = [0, 0, 1, 1, 1, 2, 2, 0];
        let e = well_separated(8, 3, &labels, 0.5, 1e-3, &mut rng);
        let dist = brute_distances(&e.to_vec().unwrap(), 8, 3);
        let host: Vec<f32> = dist.iter().map(|&v| v as f32).collect();
        let all = all_triplets(&labels);
        let d = |i: usize, j: usize| dist[i * 8 + j];
        let hard = mine(&host, &labels, 0.5, Mining::BatchHard).unwrap();
        for &[a, p, q] in &hard.triplets {
            assert!(all
                .iter()
                .filter(|t| t[0] == a)
                .all(|t| d(a, t[1]) <= d(a, p) && d(a, t[2]) >= d(a, q)));
        }
        let semi = mine(&host, &labels, 0.5, Mining::SemiHard).unwrap();
        for &[a, p, q] in &semi.triplets {
            let group = all.iter().filter(|t| t[0] == a && t[1] == p);
            if d(a, q) > d(a, p) {
                assert!(group
                    .filter(|t| d(a, t[2]) > d(a, p))
                    .all(|t| d(a, t[2]) >= d(a, q)));
            } else {
                assert!(group
                    .clone()
                    .all(|t| d(a, t[2]) <= d(a, p) && d(a, t[2]) <= d(a, q)));
            }
        }
        let all_mined = mine(&host, &labels, 0.5, Mining::BatchAll).unwrap();
        let mut want = all.clone();
        let mut got = all_mined.triplets.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }
}

#[test]
fn metric_gradients_match_finite_differences() {
    let mut rng = Rng(run_seed("metric_gradients_match_finite_differences"));
    let dev = Device::cpu();
    let (n, d) = (rng.range(1, 6), rng.range(2, 7));
    let t = |s: u64| Tensor::randn(&[n, d], s, &dev);
    let pair = [t(1), t(2)];
    gradcheck("pairwise_distance", &pair, &[true, true], &|x| {
        x[0].pairwise_distance(&x[1], 1e-6)
    });
    gradcheck("cosine_similarity", &pair, &[true, true], &|x| {
        x[0].cosine_similarity(&x[1], 1, 1e-8)
    });
    gradcheck("normalize", &pair[..1], &[true], &|x| {
        x[0].normalize(1, 1e-12)
    });
    gradcheck("squared_distance_matrix", &pair, &[true, true], &|x| {
        x[0].squared_distance_matrix(&x[1])
    });
    // Far from the hinge: some triplets active, some not, none within 0.1 of the kink.
    // `well_separated` keeps the labels' triplets away from it in squared distances; the
    // losses below take triplets (i, i + 2, i + 4), which are not the labels' triplets,
    // so both of their kinks are checked here too (seeds put one triplet close enough to
    // each kink for the finite differences to cross it).
    let labels = [0, 1, 2, 0, 1, 2];
    let e = loop {
        let e = well_separated(6, 3, &labels, 0.8, 0.1, &mut rng);
        let dist = brute_distances(&e.to_vec().unwrap(), 6, 3);
        let pos = |i: usize| dist[i * 6 + i + 2];
        let neg = |i: usize| dist[i * 6 + i + 4];
        let plain = |i: usize| pos(i).sqrt() - neg(i).sqrt() + 0.8;
        let squared = |i: usize| pos(i) - neg(i) + 0.8;
        if (0..2).all(|i| plain(i).abs() > 0.1 && squared(i).abs() > 0.1) {
            break e;
        }
    };
    let (a, p, q) = (
        e.narrow(0, 0, 2).unwrap(),
        e.narrow(0, 2, 2).unwrap(),
        e.narrow(0, 4, 2).unwrap(),
    );
    let abc = [a, p, q];
    gradcheck("triplet_margin_loss", &abc, &[true; 3], &|x| {
        x[0].triplet_margin_loss(&x[1], &x[2], 0.8, 1e-6)
    });
    gradcheck("triplet_squared_loss", &abc, &[true; 3], &|x| {
        x[0].triplet_squared_loss(&x[1], &x[2], 0.8)
    });
    let labels = [0, 0, 1, 1, 1, 2, 2, 0];
    let e = well_separated(8, 3, &labels, 0.5, 0.15, &mut rng);
    for mining in STRATEGIES {
        gradcheck(
            &format!("mined {mining}"),
            std::slice::from_ref(&e),
            &[true],
            &|x| Ok(mined_triplet_loss(&x[0], &labels, 0.5, mining)?.loss),
        );
    }
    for feature in [PairFeature::L1, PairFeature::ChiSquared] {
        let head = VerificationHead::new(d, feature, 5, &dev);
        // The pair features' kinks are where x1 = x2 (|x1 − x2|) and x1 = −x2 (χ²'s
        // denominator): x2 = u·x1 with u in [0.3, 0.6] keeps both at least 0.08 away.
        let x1 = common::away_from_zero(&[n, d], 3, 0.2, &dev);
        let u = Tensor::rand(&[n, d], 4, &dev).affine(0.3, 0.3);
        let x2 = x1.mul(&u).unwrap();
        gradcheck(
            &format!("{feature:?} head"),
            &[x1, x2],
            &[true, true],
            &|x| head.logits(&x[0], &x[1]),
        );
    }
}

#[test]
fn metric_ops_agree_on_cpu_and_gpu() {
    let Some(gpu) = common::gpu("metric_ops_agree_on_cpu_and_gpu") else {
        return;
    };
    let pair = [randn(&[5, 7], 1), randn(&[5, 7], 2)];
    parity(&gpu, "pairwise_distance", &pair, &|x| {
        x[0].pairwise_distance(&x[1], 1e-6)
    });
    parity(&gpu, "cosine_similarity", &pair, &|x| {
        x[0].cosine_similarity(&x[1], 1, 1e-8)
    });
    parity(&gpu, "normalize", &pair[..1], &|x| x[0].normalize(1, 1e-12));
    let abc = [randn(&[6, 5], 3), randn(&[6, 5], 4), randn(&[6, 5], 5)];
    parity(&gpu, "triplet_margin_loss", &abc, &|x| {
        x[0].triplet_margin_loss(&x[1], &x[2], 1.0, 1e-6)
    });
    parity(&gpu, "triplet_squared_loss", &abc, &|x| {
        x[0].triplet_squared_loss(&x[1], &x[2], 1.0)
    });
    let labels = [0, 0, 1, 1, 1, 2, 2, 0, 2];
    for mining in STRATEGIES {
        parity(
            &gpu,
            &format!("mined {mining}"),
            &[randn(&[9, 4], 6)],
            &|x| Ok(mined_triplet_loss(&x[0], &labels, 1.0, mining)?.loss),
        );
    }
}

#[test]
fn a_triplet_training_step_agrees_on_cpu_and_gpu() {
    let Some(gpu) = common::gpu("a_triplet_training_step_agrees_on_cpu_and_gpu") else {
        return;
    };
    let cpu = Device::cpu();
    let x = Tensor::randn(&[8, 1, 12, 12], 3, &cpu);
    let labels = [0, 0, 1, 1, 2, 2, 3, 3];
    let step = |dev: &Device| {
        let net = SiameseEncoder::new(1, 4, 8, 11, dev).unwrap();
        let mut opt = Sgd::new(
            net.parameters(),
            SgdOptions {
                lr: 0.05,
                ..Default::default()
            },
        );
        let x = x.to_device(dev).unwrap();
        let loss = |net: &SiameseEncoder| {
            mined_triplet_loss(&net.forward(&x).unwrap(), &labels, 0.5, Mining::BatchAll).unwrap()
        };
        let before = loss(&net);
        before.loss.backward().unwrap();
        let grads: Vec<(String, Vec<f32>)> = net
            .named_parameters()
            .into_iter()
            .map(|(n, p)| (n, p.grad().unwrap().to_vec().unwrap()))
            .collect();
        opt.step().unwrap();
        let after = loss(&net);
        (
            before.loss.item().unwrap(),
            before.triplets,
            grads,
            after.loss.item().unwrap(),
        )
    };
    let (lc, tc, gc, ac) = step(&cpu);
    let (lg, tg, gg, ag) = step(&gpu);
    assert_eq!(tc.triplets, tg.triplets, "the same triplets were mined");
    assert!(tc.active > 0, "the batch has active triplets");
    assert!(
        rel_err(&[lg], &[lc]) < 1e-4,
        "loss {lg} on the GPU, {lc} on the CPU"
    );
    for ((name, c), (_, g)) in gc.iter().zip(&gg) {
        let e = rel_err(g, c);
        assert!(e < 1e-3, "gradient of {name}: rel. error {e:.2e}");
    }
    assert!(
        rel_err(&[ag], &[ac]) < 1e-3,
        "after the step {ag} on the GPU, {ac} on the CPU"
    );
    assert!(ac < lc, "the step lowered the loss ({lc} → {ac})");
}

#[test]
fn the_encoder_embeds_on_the_unit_sphere_and_heads_separate_pairs() {
    let dev = Device::cpu();
    let net = SiameseEncoder::new(1, 4, 6, 0, &dev).unwrap();
    let x = Tensor::randn(&[5, 1, 28, 28], 1, &dev);
    let (e1, e2) = net.forward_pair(&x, &x.mul_scalar(-1.0)).unwrap();
    assert_eq!(e1.shape(), &[5, 6]);
    for row in e1
        .to_vec()
        .unwrap()
        .chunks(6)
        .chain(e2.to_vec().unwrap().chunks(6))
    {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    // Both heads learn "same" from "different" on separable synthetic pairs.
    for feature in [PairFeature::L1, PairFeature::ChiSquared] {
        let head = VerificationHead::new(4, feature, 2, &dev);
        let base = Tensor::rand(&[32, 4], 7, &dev).affine(1.0, 0.1);
        let near = base
            .add(&Tensor::randn(&[32, 4], 8, &dev).mul_scalar(0.01))
            .unwrap();
        let far = Tensor::rand(&[32, 4], 9, &dev).affine(1.0, 0.1);
        let other = Tensor::cat(
            &[
                &near.narrow(0, 0, 16).unwrap(),
                &far.narrow(0, 16, 16).unwrap(),
            ],
            0,
        )
        .unwrap();
        let same: Vec<bool> = (0..32).map(|i| i < 16).collect();
        let mut opt = Sgd::new(
            head.parameters(),
            SgdOptions {
                lr: 2.0,
                ..Default::default()
            },
        );
        let first = head.loss(&base, &other, &same).unwrap().item().unwrap();
        for _ in 0..200 {
            opt.zero_grad();
            head.loss(&base, &other, &same).unwrap().backward().unwrap();
            opt.step().unwrap();
        }
        let last = head.loss(&base, &other, &same).unwrap().item().unwrap();
        let logits = head.logits(&base, &other).unwrap().to_vec().unwrap();
        let hits = logits
            .iter()
            .zip(&same)
            .filter(|(&l, &s)| (l > 0.0) == s)
            .count();
        assert!(
            last < first && hits >= 30,
            "{feature:?}: loss {first} → {last}, {hits}/32"
        );
    }
}

#[test]
fn verification_and_recognition_measures_are_exact_on_small_cases() {
    let d = [0.1, 0.4, 0.2, 0.9, 0.5, 0.3];
    let same = [true, false, true, false, false, true];
    let (t, acc) = best_threshold(&d, &same);
    assert_eq!(acc, 1.0);
    assert!(t > 0.3 && t < 0.4, "{t}");
    assert_eq!(threshold_accuracy(&d, &same, 0.15), 4.0 / 6.0);
    // Two well-apart clusters: recognition is exact; identical embeddings: ties go to the
    // first class, which holds a third of the items.
    let labels = [0, 0, 0, 1, 1, 1, 2, 2, 2];
    let e: Vec<f32> = labels
        .iter()
        .flat_map(|&l| [l as f32 * 10.0, 1.0])
        .collect();
    assert_eq!(one_shot_recognition(&e, 2, &labels, 20, 1).unwrap(), 1.0);
    let flat = vec![0.5; 18];
    let acc = one_shot_recognition(&flat, 2, &labels, 50, 1).unwrap();
    assert!((acc - 1.0 / 3.0).abs() < 1e-9, "{acc}");
    let pairs = balanced_pairs(&labels, 100, 3).unwrap();
    assert_eq!(pairs.iter().filter(|p| p.2).count(), 50);
    assert!(pairs
        .iter()
        .all(|&(i, j, s)| i != j && (labels[i] == labels[j]) == s));
    let groups = by_class(&labels, 3);
    let b = pk_batch(&groups, &[2, 0], 5, 1).unwrap();
    assert_eq!(
        b.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
        [2, 2, 2, 2, 2, 0, 0, 0, 0, 0]
    );
}

#[test]
fn bad_and_degenerate_input_give_clear_errors_or_finite_zeros() {
    let dev = Device::cpu();
    let (a, b) = (
        Tensor::randn(&[4, 8], 1, &dev),
        Tensor::randn(&[4, 6], 2, &dev),
    );
    let msg = message(
        a.pairwise_distance(&b, 1e-6).unwrap_err(),
        "pairwise_distance",
    );
    assert!(msg.contains("[4, 8]") && msg.contains("[4, 6]"), "{msg}");
    let msg = message(
        a.triplet_margin_loss(&a, &b, 1.0, 1e-6).unwrap_err(),
        "triplet_margin_loss",
    );
    assert!(msg.contains("[4, 6]"), "{msg}");
    message(
        a.triplet_squared_loss(&b, &a, 1.0).unwrap_err(),
        "triplet_squared_loss",
    );
    message(
        a.cosine_similarity(&b, 1, 1e-8).unwrap_err(),
        "cosine_similarity",
    );
    message(
        a.squared_distance_matrix(&b).unwrap_err(),
        "squared_distance_matrix",
    );
    let head = VerificationHead::new(8, PairFeature::L1, 0, &dev);
    message(head.logits(&a, &b).unwrap_err(), "VerificationHead");
    message(head.logits(&b, &b).unwrap_err(), "VerificationHead");
    let msg = message(
        mined_triplet_loss(&a, &[0, 1], 0.2, Mining::BatchHard)
            .err()
            .unwrap(),
        "mined_triplet_loss",
    );
    assert!(msg.contains("[4, 8]") && msg.contains("2 labels"), "{msg}");
    message(
        mine(&[0.0; 4], &[0, 1, 2], 0.2, Mining::BatchAll).unwrap_err(),
        "mine_triplets",
    );
    message("hardest".parse::<Mining>().unwrap_err(), "mining");
    message(
        balanced_pairs(&[3, 3, 3], 4, 0).unwrap_err(),
        "balanced_pairs",
    );
    message(
        one_shot_recognition(&[0.0; 5], 2, &[0, 1, 1], 1, 0).unwrap_err(),
        "one_shot_recognition",
    );
    let bad = Triplets {
        triplets: vec![[0, 1, 9]],
        active: 1,
        divisor: 1,
    };
    message(
        bad.loss(&Tensor::zeros(&[4, 4], &dev), 0.2).unwrap_err(),
        "triplet_loss",
    );

    // One class only: no triplets, loss 0, zero gradients. Likewise an empty batch, and a
    // batch whose embeddings all coincide (every distance 0) is finite.
    for mining in STRATEGIES {
        let e = Tensor::randn(&[5, 3], 4, &dev).requires_grad();
        let out = mined_triplet_loss(&e, &[2; 5], 0.2, mining).unwrap();
        assert!(out.triplets.triplets.is_empty());
        assert_eq!(out.loss.item().unwrap(), 0.0);
        out.loss.backward().unwrap();
        assert!(e
            .grad()
            .unwrap()
            .to_vec()
            .unwrap()
            .iter()
            .all(|&g| g == 0.0));

        let empty = Tensor::zeros(&[0, 3], &dev).requires_grad();
        let out = mined_triplet_loss(&empty, &[], 0.2, mining).unwrap();
        assert_eq!(out.loss.item().unwrap(), 0.0);
        out.loss.backward().unwrap();

        let same = Tensor::ones(&[4, 3], &dev).requires_grad();
        let out = mined_triplet_loss(&same, &[0, 0, 1, 1], 0.2, mining).unwrap();
        assert!((out.loss.item().unwrap() - 0.2).abs() < 1e-6, "{mining}");
        out.loss.backward().unwrap();
        assert!(same
            .grad()
            .unwrap()
            .to_vec()
            .unwrap()
            .iter()
            .all(|g| g.is_finite()));
    }
    let z = Tensor::zeros(&[0, 4], &dev).requires_grad();
    for loss in [
        z.triplet_margin_loss(&z, &z, 1.0, 1e-6).unwrap(),
        z.triplet_squared_loss(&z, &z, 1.0).unwrap(),
    ] {
        assert_eq!(loss.item().unwrap(), 0.0);
        loss.backward().unwrap();
    }
    // Zero vectors: normalize keeps them 0, cosine similarity is 0, the χ² head finite.
    let zero = Tensor::zeros(&[2, 3], &dev).requires_grad();
    let n = zero.normalize(1, 1e-12).unwrap();
    assert!(n.to_vec().unwrap().iter().all(|&v| v == 0.0));
    let c = zero.cosine_similarity(&zero, 1, 1e-8).unwrap();
    assert!(c.to_vec().unwrap().iter().all(|&v| v == 0.0));
    c.sum().backward().unwrap();
    assert!(zero
        .grad()
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .all(|g| g.is_finite()));
    let chi = VerificationHead::new(3, PairFeature::ChiSquared, 0, &dev);
    let l = chi.logits(&zero, &zero).unwrap();
    assert!(l.to_vec().unwrap().iter().all(|v| v.is_finite()));
    l.sum().backward().unwrap();
    assert!(zero
        .grad()
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .all(|g| g.is_finite()));
}

#[test]
fn a_grid_encoder_projects_every_cell_and_rejects_an_empty_grid() {
    let dev = Device::cpu();
    let net = SiameseEncoder::with_grid(1, 4, 6, 3, 0, &dev).unwrap();
    assert_eq!(net.embed.weight.shape(), &[6, 8 * 3 * 3]);
    let e = net
        .forward(&Tensor::randn(&[3, 1, 28, 28], 2, &dev))
        .unwrap();
    assert_eq!(e.shape(), &[3, 6]);
    for row in e.to_vec().unwrap().chunks(6) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    let err = SiameseEncoder::with_grid(1, 4, 6, 0, 0, &dev)
        .err()
        .expect("a 0×0 grid is an error");
    assert!(
        err.to_string().contains("SiameseEncoder") && err.to_string().contains("grid (0)"),
        "{err}"
    );
}
