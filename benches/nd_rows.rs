//! 1-D and 3-D convolution rows: a 1-D convolution over long signals (64→64 channels,
//! length 4096, k 9, batch 32) and a 3-D one over short clips (64→64, 16×56×56, k 3,
//! batch 4), forward and forward + backward, capped by `--batch`.

use anyhow::Result;
use fovea::ops::{Conv1dOptions, Conv3dOptions};
use fovea::{no_grad, Device, Tensor};

use super::{time, Opts, Row};

type Conv = Box<dyn Fn(&Tensor, &Tensor) -> fovea::Result<Tensor>>;

pub(super) fn rows(
    dev: &Device,
    o: &Opts,
    wanted: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let n1 = 32.min(o.batch_cap);
    let n3 = 4.min(o.batch_cap);
    let cases: [(String, Vec<usize>, Vec<usize>, Conv); 2] = [
        (
            format!("conv1d n{n1} c64 4096 -> 64 k9 p4"),
            vec![n1, 64, 4096],
            vec![64, 64, 9],
            Box::new(|x, w| {
                let opts = Conv1dOptions {
                    padding: 4,
                    ..Default::default()
                };
                x.conv1d(w, None, opts)
            }),
        ),
        (
            format!("conv3d n{n3} c64 16x56x56 -> 64 k3 p1"),
            vec![n3, 64, 16, 56, 56],
            vec![64, 64, 3, 3, 3],
            Box::new(|x, w| {
                let opts = Conv3dOptions {
                    padding: [1, 1, 1],
                    ..Default::default()
                };
                x.conv3d(w, None, opts)
            }),
        ),
    ];
    for (name, xs, ws, conv) in cases {
        let (fwd, both) = (format!("{name} fwd"), format!("{name} fwd+bwd"));
        if !wanted(&fwd) && !wanted(&both) {
            continue;
        }
        let x = Tensor::randn(&xs, 30, dev).requires_grad();
        let w = Tensor::randn(&ws, 31, dev)
            .mul_scalar(0.05)
            .detach()
            .requires_grad();
        let y = no_grad(|| conv(&x, &w))?;
        let taps: usize = ws[1..].iter().product();
        let flop = 2.0 * (y.numel() * taps) as f64;
        let gy = Tensor::randn(y.shape(), 32, dev);
        if wanted(&fwd) {
            let timed = time(dev, o, || {
                no_grad(|| conv(&x, &w))?;
                Ok(())
            })?;
            rows.push(Row {
                name: fwd,
                timed,
                flop,
            });
        }
        if wanted(&both) {
            let timed = time(dev, o, || {
                x.zero_grad();
                w.zero_grad();
                conv(&x, &w)?.backward_with(&gy)?;
                Ok(())
            })?;
            rows.push(Row {
                name: both,
                timed,
                flop: 3.0 * flop,
            });
        }
    }
    Ok(())
}
