//! Face rows: one 128-D descriptor from a 150×150 crop (dlib's ResNet, 5.6 M parameters)
//! and one tiny-face-detector pass at 416×416, batch 1, with the bundled weights.

use std::path::Path;

use anyhow::Result;
use fovea::models::face::{FaceRecognitionNet, TinyFaceDetector};
use fovea::nn::{summary, Module};
use fovea::{no_grad, Device, Tensor};

use super::{time, Opts, Row};

type Build<'a> = Box<dyn Fn() -> Result<Box<dyn Module>> + 'a>;

pub(super) fn rows(
    dev: &Device,
    o: &Opts,
    wanted: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/weights/faces");
    let cases: [(&str, usize, Build); 2] = [
        (
            "face descriptor 150x150 batch 1 (dlib resnet)",
            150,
            Box::new(|| {
                let p = dir.join("face_recognition.safetensors");
                Ok(Box::new(FaceRecognitionNet::pretrained(&p, dev)?))
            }),
        ),
        (
            "tiny face detector 416x416 batch 1",
            416,
            Box::new(|| {
                let p = dir.join("tiny_face_detector.safetensors");
                Ok(Box::new(TinyFaceDetector::pretrained(&p, dev)?))
            }),
        ),
    ];
    for (name, side, build) in cases {
        if !wanted(name) {
            continue;
        }
        let net = build()?;
        let macs = summary(net.as_ref(), &[1, 3, side, side], dev)?.macs();
        let x = Tensor::randn(&[1, 3, side, side], 40, dev);
        let timed = time(dev, o, || {
            no_grad(|| net.forward(&x))?;
            Ok(())
        })?;
        rows.push(Row {
            name: name.to_string(),
            timed,
            flop: 2.0 * macs as f64,
        });
    }
    Ok(())
}
