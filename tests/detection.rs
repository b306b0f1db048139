//! Detection: box ops against torchvision (tests/fixtures/detection.safetensors), the YOLO
//! loss against a loop-by-loop reading of its definition and against finite differences,
//! decoding, localisation and landmark losses, sliding windows both ways, a detector's
//! training step on the GPU against the CPU, and bad input.

mod common;

use std::path::Path;

use common::fixtures::{detection, run_file};
use common::{gradcheck, rel_err, Rng};
use fovea::data::{canvas_images, digit_canvases, CanvasOptions, InMemoryDataset};
use fovea::models::detection::{
    batched_nms, box_convert, box_iou, box_shapes, decode_localization, ink_landmarks,
    kmeans_anchors, landmark_loss, localization_loss, nms, BoxFormat, DecodeOptions,
    LocalizationTarget, WindowClassifier, YoloLossOptions, YoloSpec, CROP_VALUES,
};
use fovea::models::Yolo;
use fovea::nn::Module;
use fovea::optim::{Optimizer, Sgd, SgdOptions};
use fovea::{no_grad, Device, Error, Tensor};

fn digits(split: &str) -> InMemoryDataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/mnist-10k");
    let images = dir.join(format!("{split}-images-idx3-ubyte.gz"));
    let labels = dir.join(format!("{split}-labels-idx1-ubyte.gz"));
    InMemoryDataset::from_idx(&images, &labels, 10, 0.0, 1.0).unwrap()
}

#[test]
fn box_ops_match_torchvision() {
    run_file("detection.safetensors", 81, &Device::cpu(), detection);
}

#[test]
fn box_ops_match_torchvision_on_the_gpu() {
    // box_convert runs on the device; IoU and NMS read host values either way.
    if let Some(gpu) = common::gpu("box_ops_match_torchvision_on_the_gpu") {
        run_file("detection.safetensors", 81, &gpu, detection);
    }
}

/// An error naming `op`.
fn fails<T: std::fmt::Debug>(r: fovea::Result<T>, op: &str) {
    match r {
        Err(Error::Op { op: name, msg }) => assert_eq!(name, op, "{msg}"),
        other => panic!("expected an error from {op}, got {other:?}"),
    }
}

#[test]
fn bad_boxes_scores_and_thresholds_are_errors_and_empty_lists_are_not() {
    let ok = [[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]];
    let flipped = [[0.0, 0.0, 2.0, 2.0], [3.0, 1.0, 1.0, 3.0]];
    fails(nms(&flipped, &[0.5, 0.4], 0.5), "nms");
    fails(nms(&ok, &[0.5, f32::NAN], 0.5), "nms");
    fails(nms(&ok, &[0.5], 0.5), "nms");
    fails(nms(&[[0.0, f32::NAN, 1.0, 1.0]], &[0.5], 0.5), "nms");
    for thr in [-0.1, 1.5, f32::NAN] {
        fails(nms(&ok, &[0.5, 0.4], thr), "nms");
        fails(batched_nms(&ok, &[0.5, 0.4], &[0, 1], thr), "batched_nms");
    }
    fails(batched_nms(&ok, &[0.5, 0.4], &[0], 0.5), "batched_nms");
    fails(box_iou(&ok, &flipped), "box_iou");
    // Empty lists: documented results, not errors.
    assert!(nms(&[], &[], 0.5).unwrap().is_empty());
    assert!(batched_nms(&[], &[], &[], 0.5).unwrap().is_empty());
    assert!(box_iou(&[], &ok).unwrap().is_empty());
    let dev = Device::cpu();
    let wrong = Tensor::zeros(&[3, 5], &dev);
    fails(
        box_convert(&wrong, BoxFormat::Xyxy, BoxFormat::Xywh),
        "box_convert",
    );
    fails("xyzw".parse::<BoxFormat>(), "box_convert");
    fails(kmeans_anchors(&[[1.0, 2.0]], 2, 0), "kmeans_anchors");
}

#[test]
fn yolo_targets_and_outputs_are_checked() {
    let spec = YoloSpec::new(32.0, 4, vec![[8.0, 8.0], [16.0, 16.0]], 3).unwrap();
    let b = vec![vec![[2.0, 2.0, 10.0, 12.0]]];
    fails(spec.encode(&b, &[vec![3]]), "yolo encode");
    fails(
        spec.encode(&[vec![[10.0, 2.0, 2.0, 12.0]]], &[vec![0]]),
        "yolo encode",
    );
    fails(
        spec.encode(&[vec![[40.0, 2.0, 48.0, 12.0]]], &[vec![0]]),
        "yolo encode",
    );
    fails(spec.encode(&b, &[vec![0, 1]]), "yolo encode");
    fails(spec.encode(&b, &[]), "yolo encode");
    let targets = spec.encode(&b, &[vec![2]]).unwrap();
    let dev = Device::cpu();
    let wrong = Tensor::zeros(&[1, 15, 4, 4], &dev);
    fails(
        spec.loss(&wrong, &targets, &Default::default())
            .map(|l| l.total),
        "yolo loss",
    );
    let right = Tensor::zeros(&[2, 16, 4, 4], &dev);
    fails(
        spec.loss(&right, &targets, &Default::default())
            .map(|l| l.total),
        "yolo loss",
    );
    let opts = DecodeOptions {
        iou_threshold: 1.5,
        ..Default::default()
    };
    fails(spec.decode(&right, &opts), "yolo decode");
    fails(YoloSpec::new(32.0, 4, vec![[0.0, 8.0]], 3), "YoloSpec::new");
    let loc: Vec<LocalizationTarget> = vec![Some(([1.0, 1.0, 5.0, 5.0], 10))];
    fails(
        localization_loss(&Tensor::zeros(&[1, 15], &dev), &loc, 10, 32.0, 1.0).map(|l| l.total),
        "localization_loss",
    );
}

/// Random objects on `n` images of a spec, at most one per cell, with their classes.
fn random_objects(
    spec: &YoloSpec,
    n: usize,
    rng: &mut Rng,
) -> (Vec<Vec<[f32; 4]>>, Vec<Vec<usize>>) {
    let (s, cell) = (spec.grid, spec.cell());
    let (mut boxes, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let mut cells: Vec<usize> = (0..s * s).collect();
        let k = rng.range(1, 5);
        let (mut bs, mut ls) = (Vec::new(), Vec::new());
        for _ in 0..k {
            let q = cells.remove(rng.range(0, cells.len() - 1));
            let u = |rng: &mut Rng| 0.05 + 0.9 * rng.range(0, 1000) as f32 / 1000.0;
            let cx = ((q % s) as f32 + u(rng)) * cell;
            let cy = ((q / s) as f32 + u(rng)) * cell;
            // Shapes that two anchors fit equally well (8 × 6 against 6 × 10 and 12 × 8)
            // are left out: which anchor takes them is a tie that rounding decides.
            let (w, h) = loop {
                let (w, h) = (rng.range(3, 24) as f32, rng.range(3, 24) as f32);
                let mut fits: Vec<f32> = spec.anchors.iter().map(|&a| shape_fit(w, h, a)).collect();
                fits.sort_by(|x, y| y.total_cmp(x));
                if fits.len() < 2 || fits[0] - fits[1] > 1e-3 {
                    break (w, h);
                }
            };
            bs.push([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]);
            ls.push(rng.range(0, spec.classes - 1));
        }
        boxes.push(bs);
        labels.push(ls);
    }
    (boxes, labels)
}

/// The IoU of a `w × h` box and an anchor's shape on one centre.
fn shape_fit(w: f32, h: f32, a: [f32; 2]) -> f32 {
    let inter = w.min(a[0]) * h.min(a[1]);
    inter / (w * h + a[0] * a[1] - inter)
}

/// The loss read straight off its definition, slot by slot, in f64: for every image,
/// anchor and cell, the object whose centre lies in the cell and whose shape the anchor
/// fits best (IoU of shapes on one centre), if any.
fn reference_loss(
    pred: &[f32],
    spec: &YoloSpec,
    boxes: &[Vec<[f32; 4]>],
    labels: &[Vec<usize>],
    o: &YoloLossOptions,
) -> [f64; 4] {
    let (b_n, s, c) = (spec.anchors.len(), spec.grid, spec.classes);
    let cell = spec.cell() as f64;
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let softplus = |x: f64| (1.0 + x.exp()).ln();
    let shape_iou = |w: f64, h: f64, a: [f32; 2]| {
        let inter = w.min(a[0] as f64) * h.min(a[1] as f64);
        inter / (w * h + a[0] as f64 * a[1] as f64 - inter)
    };
    let [mut coord, mut obj, mut noobj, mut class] = [0.0; 4];
    for n in 0..boxes.len() {
        for a in 0..b_n {
            for i in 0..s {
                for j in 0..s {
                    let at =
                        |k: usize| pred[(((n * b_n + a) * (5 + c) + k) * s + i) * s + j] as f64;
                    let found = boxes[n].iter().zip(&labels[n]).find(|(b, _)| {
                        let (cx, cy) = ((b[0] + b[2]) as f64 / 2.0, (b[1] + b[3]) as f64 / 2.0);
                        let (w, h) = ((b[2] - b[0]) as f64, (b[3] - b[1]) as f64);
                        let best = (0..b_n)
                            .max_by(|&x, &y| {
                                shape_iou(w, h, spec.anchors[x])
                                    .total_cmp(&shape_iou(w, h, spec.anchors[y]))
                                    .then(y.cmp(&x))
                            })
                            .unwrap();
                        (cx / cell).floor() as usize == j
                            && (cy / cell).floor() as usize == i
                            && best == a
                    });
                    let Some((b, &label)) = found else {
                        noobj += o.lambda_noobj as f64 * softplus(at(0));
                        continue;
                    };
                    obj += softplus(-at(0));
                    let (cx, cy) = ((b[0] + b[2]) as f64 / 2.0, (b[1] + b[3]) as f64 / 2.0);
                    let (w, h) = ((b[2] - b[0]) as f64, (b[3] - b[1]) as f64);
                    let t = [
                        cx / cell - j as f64,
                        cy / cell - i as f64,
                        (h / spec.anchors[a][1] as f64).ln(),
                        (w / spec.anchors[a][0] as f64).ln(),
                    ];
                    coord += o.lambda_coord as f64
                        * ((sigmoid(at(1)) - t[0]).powi(2)
                            + (sigmoid(at(2)) - t[1]).powi(2)
                            + (at(3) - t[2]).powi(2)
                            + (at(4) - t[3]).powi(2));
                    let lse = (0..c).map(|k| at(5 + k).exp()).sum::<f64>().ln();
                    class += lse - at(5 + label);
                }
            }
        }
    }
    let n = boxes.len() as f64;
    [coord / n, obj / n, noobj / n, class / n]
}

#[test]
fn yolo_loss_matches_its_definition_loop_by_loop() {
    let mut rng = Rng(common::run_seed(
        "yolo_loss_matches_its_definition_loop_by_loop",
    ));
    let dev = Device::cpu();
    for trial in 0..6 {
        let anchors = vec![[6.0, 10.0], [12.0, 8.0], [16.0, 16.0]][..rng.range(1, 3)].to_vec();
        let spec = YoloSpec::new(40.0, 5, anchors, rng.range(1, 4)).unwrap();
        let n = rng.range(1, 3);
        let (boxes, labels) = random_objects(&spec, n, &mut rng);
        let opts = YoloLossOptions {
            lambda_coord: [5.0, 1.0, 2.5][trial % 3],
            lambda_noobj: [0.5, 1.0, 0.1][trial % 3],
        };
        let pred = Tensor::randn(&[n, spec.channels(), 5, 5], rng.next(), &dev).mul_scalar(2.0);
        let targets = spec.encode(&boxes, &labels).unwrap();
        assert_eq!(targets.dropped, 0);
        let got = spec.loss(&pred, &targets, &opts).unwrap();
        let want = reference_loss(&pred.to_vec().unwrap(), &spec, &boxes, &labels, &opts);
        let parts = [&got.coord, &got.object, &got.no_object, &got.class];
        for (what, (t, w)) in ["coord", "object", "no_object", "class"]
            .iter()
            .zip(parts.iter().zip(want))
        {
            let v = t.item().unwrap() as f64;
            assert!(
                (v - w).abs() <= 1e-4 * w.abs().max(1.0),
                "trial {trial} {what}: {v} vs {w}"
            );
        }
        let total = got.total.item().unwrap() as f64;
        assert!((total - want.iter().sum::<f64>()).abs() <= 1e-4 * total.abs());
    }
}

#[test]
fn yolo_loss_gradients_match_finite_differences() {
    let mut rng = Rng(common::run_seed(
        "yolo_loss_gradients_match_finite_differences",
    ));
    let dev = Device::cpu();
    let spec = YoloSpec::new(24.0, 3, vec![[6.0, 10.0], [14.0, 12.0]], 3).unwrap();
    let (boxes, labels) = random_objects(&spec, 2, &mut rng);
    let targets = spec.encode(&boxes, &labels).unwrap();
    let pred = Tensor::randn(&[2, spec.channels(), 3, 3], rng.next(), &dev);
    let opts = YoloLossOptions::default();
    gradcheck("yolo loss", &[pred], &[true], &|xs| {
        spec.loss(&xs[0], &targets, &opts)?.total.reshape(&[1])
    });
}

#[test]
fn localization_and_landmark_losses_follow_the_course() {
    let dev = Device::cpu();
    let targets: Vec<LocalizationTarget> = vec![
        Some(([4.0, 8.0, 20.0, 28.0], 2)),
        None,
        Some(([0.0, 0.0, 32.0, 16.0], 0)),
    ];
    let pred = Tensor::randn(&[3, 8], 5, &dev);
    gradcheck(
        "localization loss",
        std::slice::from_ref(&pred),
        &[true],
        &|xs| {
            localization_loss(&xs[0], &targets, 3, 32.0, 2.0)?
                .total
                .reshape(&[1])
        },
    );
    // The image without an object charges only P_c: its box and class outputs get no gradient.
    let p = pred.detach().requires_grad();
    localization_loss(&p, &targets, 3, 32.0, 2.0)
        .unwrap()
        .total
        .backward()
        .unwrap();
    let g = p.grad().unwrap().to_vec().unwrap();
    assert!(
        g[8] != 0.0 && g[9..16].iter().all(|&v| v == 0.0),
        "{:?}",
        &g[8..16]
    );
    // By hand, image 0: b = (12, 18, 20, 16) / 32 in the course's b_x, b_y, b_h, b_w order.
    let v = pred.to_vec().unwrap();
    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
    let b = [12.0 / 32.0, 18.0 / 32.0, 20.0 / 32.0, 16.0 / 32.0];
    let se0: f32 = (0..4).map(|k| (sig(v[1 + k]) - b[k]).powi(2)).sum();
    let b2 = [0.5, 0.25, 0.5, 1.0];
    let se2: f32 = (0..4).map(|k| (sig(v[17 + k]) - b2[k]).powi(2)).sum();
    let loss = localization_loss(&pred, &targets, 3, 32.0, 2.0).unwrap();
    assert!((loss.bbox.item().unwrap() - 2.0 * (se0 + se2) / 3.0).abs() < 1e-5);
    let decoded = decode_localization(&pred, 3, 32.0).unwrap();
    assert_eq!(decoded.len(), 3);
    assert!((decoded[0].bbox[2] - decoded[0].bbox[0] - 32.0 * sig(v[4])).abs() < 1e-4);

    let points = vec![
        vec![[3.0, 4.0], [10.0, 30.0]],
        vec![[16.0, 16.0], [0.0, 32.0]],
    ];
    let lp = Tensor::randn(&[2, 4], 6, &dev);
    gradcheck("landmark loss", std::slice::from_ref(&lp), &[true], &|xs| {
        landmark_loss(&xs[0], &points, 32.0)?.reshape(&[1])
    });
    let v = lp.to_vec().unwrap();
    let want: f32 = points
        .iter()
        .flatten()
        .flatten()
        .zip(&v)
        .map(|(t, p)| (p - t / 32.0).powi(2))
        .sum::<f32>()
        / 2.0;
    assert!((landmark_loss(&lp, &points, 32.0).unwrap().item().unwrap() - want).abs() < 1e-5);
    fails(landmark_loss(&lp, &points[..1], 32.0), "landmark_loss");
}

#[test]
fn decoding_recovers_encoded_boxes_and_nms_removes_duplicates() {
    let dev = Device::cpu();
    let spec = YoloSpec::new(32.0, 4, vec![[8.0, 8.0], [16.0, 12.0]], 3).unwrap();
    let boxes = vec![vec![[2.0, 3.0, 10.0, 12.0], [18.0, 15.0, 31.0, 27.0]]];
    let labels = vec![vec![1, 2]];
    let t = spec.encode(&boxes, &labels).unwrap();
    // Outputs that say exactly the targets: logit of the centre offsets, confident P_c and
    // class where an object is, confident "nothing" elsewhere.
    let (b_n, s, per) = (2, 4, 8);
    let mut pred = vec![0.0f32; b_n * per * s * s];
    for a in 0..b_n {
        for q in 0..s * s {
            let slot = a * s * s + q;
            let at = |k: usize| (a * per + k) * s * s + q;
            let here = t.object[slot] > 0.0;
            pred[at(0)] = if here { 8.0 } else { -8.0 };
            for k in 0..4 {
                let v = t.boxes[(a * 4 + k) * s * s + q];
                pred[at(1 + k)] = if k < 2 { (v / (1.0 - v)).ln() } else { v };
            }
            pred[at(5 + t.classes[slot])] = if here { 8.0 } else { 0.0 };
        }
    }
    let x = Tensor::from_vec(pred, &[1, b_n * per, s, s], &dev).unwrap();
    let found = spec.decode(&x, &DecodeOptions::default()).unwrap();
    assert_eq!(found[0].len(), 2, "{:?}", found[0]);
    for (b, l) in boxes[0].iter().zip(&labels[0]) {
        let d = found[0]
            .iter()
            .find(|d| d.class == *l)
            .expect("each object found");
        assert!(
            d.bbox.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-3),
            "{d:?} vs {b:?}"
        );
        assert!(d.score > 0.99);
    }
    // A second, slightly less confident box on the first object from anchor 1 of its cell
    // (shape 16×12, so the log-sizes that give 8×9 differ): suppressed by NMS.
    let mut v = x.to_vec().unwrap();
    let q = 0; // cell (row 0, column 0)
    for k in 0..per {
        v[(per + k) * s * s + q] = v[k * s * s + q];
    }
    v[per * s * s + q] -= 0.5;
    v[(per + 3) * s * s + q] = (9.0f32 / 12.0).ln();
    v[(per + 4) * s * s + q] = (8.0f32 / 16.0).ln();
    let x = Tensor::from_vec(v, &[1, b_n * per, s, s], &dev).unwrap();
    assert_eq!(
        spec.decode(&x, &DecodeOptions::default()).unwrap()[0].len(),
        2
    );
    let loose = DecodeOptions {
        iou_threshold: 1.0,
        ..Default::default()
    };
    assert_eq!(spec.decode(&x, &loose).unwrap()[0].len(), 3);
}

#[test]
fn objects_sharing_a_cell_take_the_next_free_anchor_and_overflow_is_counted() {
    let spec = YoloSpec::new(32.0, 2, vec![[8.0, 8.0], [12.0, 12.0]], 2).unwrap();
    let b = [
        [1.0, 1.0, 9.0, 9.0],
        [2.0, 2.0, 10.0, 10.0],
        [0.0, 0.0, 8.0, 8.0],
    ];
    let t = spec.encode(&[b.to_vec()], &[vec![0, 1, 1]]).unwrap();
    // Both fit anchor 0 best; the second takes anchor 1; the third finds none free.
    assert_eq!(t.object.iter().sum::<f32>(), 2.0);
    assert_eq!((t.object[0], t.object[4]), (1.0, 1.0));
    assert_eq!((t.classes[0], t.classes[4]), (0, 1));
    assert_eq!(t.dropped, 1);
}

#[test]
fn kmeans_anchors_fit_digit_boxes_better_than_one_shape() {
    let canvases = digit_canvases(
        &digits("train").take(500),
        200,
        &CanvasOptions::default(),
        1,
    )
    .unwrap();
    let shapes: Vec<[f32; 2]> = canvases.iter().flat_map(|c| box_shapes(&c.boxes)).collect();
    let one = kmeans_anchors(&shapes, 1, 0).unwrap();
    let three = kmeans_anchors(&shapes, 3, 0).unwrap();
    assert_eq!(three, kmeans_anchors(&shapes, 3, 0).unwrap(), "seeded");
    assert!(three.mean_iou > one.mean_iou + 0.05, "{one:?} {three:?}");
    assert!(three
        .anchors
        .windows(2)
        .all(|w| w[0][0] * w[0][1] <= w[1][0] * w[1][1]));
}

#[test]
fn ink_landmarks_are_the_digits_extreme_ink_points() {
    let opts = CanvasOptions {
        digits: [1, 1],
        ..Default::default()
    };
    for c in digit_canvases(&digits("t10k").take(50), 10, &opts, 3).unwrap() {
        let [top, bottom, left, right] = ink_landmarks(&c, 0).unwrap();
        let b = c.boxes[0];
        // The box is the ink's extent: the extreme points lie on its sides.
        assert_eq!((top[1], bottom[1]), (b[1] + 0.5, b[3] - 0.5));
        assert_eq!((left[0], right[0]), (b[0] + 0.5, b[2] - 0.5));
        for p in [top, bottom, left, right] {
            assert!(p[0] > b[0] && p[0] < b[2] && p[1] > b[1] && p[1] < b[3]);
        }
        fails(ink_landmarks(&c, 1), "ink_landmarks");
    }
}

#[test]
fn sliding_windows_give_the_same_scores_naively_and_convolutionally() {
    let dev = Device::cpu();
    let classifier = WindowClassifier::new(3, 4, 11, &dev).unwrap();
    let conv = classifier.to_convolutional().unwrap();
    // The course's 16×16 (2×2 windows) and 28×28 (8×8) images, an uneven one, and one
    // whose crops exceed one batch (bands of 20 rows of windows, then 6).
    let crop_values = |s: [usize; 4], g: [usize; 2]| s[0] * s[1] * g[0] * g[1] * 14 * 14;
    assert!(crop_values([2, 3, 64, 100], [26, 44]) > CROP_VALUES);
    for (shape, grid) in [
        ([1, 3, 16, 16], [2, 2]),
        ([1, 3, 28, 28], [8, 8]),
        ([2, 3, 19, 24], [3, 6]),
        ([2, 3, 64, 100], [26, 44]),
    ] {
        let x = Tensor::randn(&shape, 4, &dev);
        let naive = no_grad(|| classifier.slide(&x, 2)).unwrap();
        let fast = no_grad(|| conv.forward(&x)).unwrap();
        assert_eq!(fast.shape(), &[shape[0], 4, grid[0], grid[1]]);
        assert_eq!(naive.shape(), fast.shape());
        let (a, b) = (naive.to_vec().unwrap(), fast.to_vec().unwrap());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(
            worst < 1e-5 * a.iter().fold(1.0f32, |m, v| m.max(v.abs())),
            "{shape:?}: {worst}"
        );
        // Window (i, j) is the crop at (2i, 2j) classified on its own: here (1, 1).
        let crop = x.narrow(2, 2, 14).unwrap().narrow(3, 2, 14).unwrap();
        let one = no_grad(|| classifier.forward(&crop))
            .unwrap()
            .to_vec()
            .unwrap();
        let (gh, gw) = (grid[0], grid[1]);
        for k in 0..4 {
            assert!((one[k] - b[(k * gh + 1) * gw + 1]).abs() < 1e-5);
        }
    }
    fails(
        classifier.slide(&Tensor::zeros(&[1, 3, 12, 20], &dev), 2),
        "WindowClassifier::slide",
    );
}

/// A tiny detector, two SGD steps on real digit canvases; the weights afterwards.
fn detector_steps(dev: &Device) -> Vec<(String, Vec<f32>)> {
    let opts = CanvasOptions {
        size: 32,
        digits: [1, 2],
        digit_size: [12, 20],
        ..Default::default()
    };
    let canvases = digit_canvases(&digits("train").take(40), 4, &opts, 9).unwrap();
    let spec = YoloSpec::new(32.0, 4, vec![[8.0, 12.0], [14.0, 14.0]], 10).unwrap();
    let model = Yolo::tiny(spec, 1, 2, 3, dev).unwrap();
    let mut opt = Sgd::new(
        model.parameters(),
        SgdOptions {
            lr: 0.05,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        },
    );
    let boxes: Vec<_> = canvases.iter().map(|c| c.boxes.clone()).collect();
    let labels: Vec<_> = canvases.iter().map(|c| c.labels.clone()).collect();
    let targets = model.spec.encode(&boxes, &labels).unwrap();
    let x = canvas_images(&canvases, dev).unwrap();
    for _ in 0..2 {
        opt.zero_grad();
        let loss = model
            .spec
            .loss(&model.forward(&x).unwrap(), &targets, &Default::default())
            .unwrap();
        loss.total.backward().unwrap();
        opt.step().unwrap();
    }
    model
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec().unwrap()))
        .collect()
}

#[test]
fn a_detector_training_step_agrees_between_gpu_and_cpu() {
    let Some(gpu) = common::gpu("a_detector_training_step_agrees_between_gpu_and_cpu") else {
        return;
    };
    let (c, g) = (detector_steps(&Device::cpu()), detector_steps(&gpu));
    assert_eq!(c.len(), g.len());
    for ((name, a), (_, b)) in c.iter().zip(&g) {
        let err = rel_err(b, a);
        assert!(
            err < 1e-4,
            "{name}: GPU and CPU differ after two steps (rel. error {err:.2e})"
        );
    }
}
