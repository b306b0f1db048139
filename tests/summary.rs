//! `summary()` against the numbers the course notes derive by hand.

use fovea::models::{LeNet5, LeNet5Classic};
use fovea::nn::{summary, Conv2d, Module, Sequential};
use fovea::ops::Conv2dOptions;
use fovea::Device;

fn conv(cin: usize, cout: usize, k: usize, pad: usize, groups: usize) -> Conv2d {
    let opts = Conv2dOptions {
        padding: [pad, pad],
        groups,
        ..Default::default()
    };
    Conv2d::new(cin, cout, [k, k], opts, false, 0, &Device::cpu()).unwrap()
}

#[test]
fn convolution_costs_match_the_course() {
    let dev = Device::cpu();
    // A 5×5 'same' conv from 192 to 32 channels on 28×28: 28·28·32 outputs × 5·5·192.
    let plain = summary(&conv(192, 32, 5, 2, 1), &[1, 192, 28, 28], &dev).unwrap();
    assert_eq!(plain.macs(), 120_422_400);
    // Through a 1×1 bottleneck of 16 channels first: about a tenth.
    let bottleneck = Sequential::new()
        .push(conv(192, 16, 1, 0, 1))
        .push(conv(16, 32, 5, 2, 1));
    let s = summary(&bottleneck, &[1, 192, 28, 28], &dev).unwrap();
    assert_eq!(s.macs(), 12_443_648);
    assert_eq!(
        s.rows.iter().map(|r| r.macs).collect::<Vec<_>>(),
        [2_408_448, 10_035_200]
    );
}

#[test]
fn depthwise_separable_cost_ratio_is_one_over_cout_plus_one_over_f_squared() {
    let dev = Device::cpu();
    for (cin, cout, f, n) in [(3, 5, 3, 6), (16, 32, 5, 9), (8, 64, 3, 14)] {
        let standard = summary(&conv(cin, cout, f, f / 2, 1), &[1, cin, n, n], &dev)
            .unwrap()
            .macs() as f64;
        let separable = Sequential::new()
            .push(conv(cin, cin, f, f / 2, cin))
            .push(conv(cin, cout, 1, 0, 1));
        let sep = summary(&separable, &[1, cin, n, n], &dev).unwrap().macs() as f64;
        let expected = 1.0 / cout as f64 + 1.0 / (f * f) as f64;
        assert!(
            (sep / standard - expected).abs() < 1e-12,
            "cin {cin} cout {cout} f {f}: {} vs {expected}",
            sep / standard
        );
    }
}

#[test]
fn lenet5_summary_lists_every_layer() {
    let model = LeNet5::new(10, 0.5, 0, &Device::cpu()).unwrap();
    let s = summary(&model, &[1, 1, 28, 28], &Device::cpu()).unwrap();
    let params: Vec<(&str, usize)> = s
        .rows
        .iter()
        .filter(|r| r.params > 0)
        .map(|r| (r.name.as_str(), r.params))
        .collect();
    // C1 156, C3 (fully connected to S2's 6 maps) 2416, C5/F5 48120, F6 10164, output 850.
    assert_eq!(
        params,
        [
            ("features.0", 156),
            ("features.3", 2416),
            ("classifier.1", 48_120),
            ("classifier.4", 10_164),
            ("classifier.6", 850)
        ]
    );
    assert_eq!(s.params(), model.num_parameters());
    assert_eq!(s.row("features.2").unwrap().output, [1, 6, 14, 14]);
    assert_eq!(s.row("features.5").unwrap().output, [1, 16, 5, 5]);
    assert_eq!(s.row("features.0").unwrap().kind, "Conv2d");
    assert_eq!(s.row("features.0").unwrap().macs, 28 * 28 * 6 * 25);
    let table = s.to_string();
    assert!(
        table.contains("classifier.6") && table.contains("61706"),
        "{table}"
    );
}

#[test]
fn classic_lenet5_has_the_published_parameter_counts() {
    let model = LeNet5Classic::new(0, &Device::cpu()).unwrap();
    let s = summary(&model, &[1, 1, 28, 28], &Device::cpu()).unwrap();
    let params: Vec<(&str, usize)> = s.rows.iter().map(|r| (r.name.as_str(), r.params)).collect();
    assert_eq!(
        params,
        [
            ("c1", 156),
            ("s2", 12),
            ("c3", 1516),
            ("s4", 32),
            ("c5", 48_120),
            ("f6", 10_164),
            ("output", 0)
        ]
    );
    let shapes: Vec<&[usize]> = s.rows.iter().map(|r| r.output.as_slice()).collect();
    assert_eq!(
        shapes,
        [
            &[1, 6, 28, 28][..],
            &[1, 6, 14, 14],
            &[1, 16, 10, 10],
            &[1, 16, 5, 5],
            &[1, 120, 1, 1],
            &[1, 84],
            &[1, 10]
        ]
    );
    // The RBF centres are saved with the model but not trained.
    let state: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
    assert!(
        state.contains(&"output.centres".to_string())
            && !model
                .named_parameters()
                .iter()
                .any(|(n, _)| n.starts_with("output"))
    );
}

#[test]
fn the_course_depthwise_separable_example_costs_672_multiplications() {
    let dev = Device::cpu();
    // 6×6×3 input, five 3×3 filters, no padding: a 4×4×5 output.
    let normal = summary(&conv(3, 5, 3, 0, 1), &[1, 3, 6, 6], &dev).unwrap();
    assert_eq!(normal.rows[0].output, [1, 5, 4, 4]);
    assert_eq!(normal.macs(), 2_160);
    let separable = Sequential::new()
        .push(conv(3, 3, 3, 0, 3))
        .push(conv(3, 5, 1, 0, 1));
    let s = summary(&separable, &[1, 3, 6, 6], &dev).unwrap();
    assert_eq!(
        s.rows.iter().map(|r| r.macs).collect::<Vec<_>>(),
        [432, 240]
    );
    assert_eq!(s.macs(), 672);
}

#[test]
fn mobilenet_v1_has_the_papers_parameters_and_mult_adds() {
    let dev = Device::cpu();
    let m = fovea::models::MobileNetV1::new(1.0, 3, 1000, 0, &dev).unwrap();
    let s = summary(&m, &[1, 3, 224, 224], &dev).unwrap();
    // Table 1 of the paper: 4.2 million parameters, 569 million mult-adds (the
    // convolutions and the classifier; batch norm adds 2 × 10,944 weights and biases).
    assert_eq!(s.rows.last().unwrap().output, [1, 1000]);
    assert_eq!((s.params() as f64 / 1e5).round(), 42.0, "{}", s.params());
    assert_eq!((s.macs() as f64 / 1e6).round(), 569.0, "{}", s.macs());
    // Width multiplier 0.5: about a quarter of the mult-adds (the paper's 149 million).
    let half = fovea::models::MobileNetV1::new(0.5, 3, 1000, 0, &dev).unwrap();
    let s = summary(&half, &[1, 3, 224, 224], &dev).unwrap();
    assert_eq!((s.macs() as f64 / 1e6).round(), 149.0, "{}", s.macs());
}
