//! The metric-learning row: one triplet training step of `examples/siamese`'s encoder at
//! width 16 (the example's default is 32; 64-dimensional embeddings, 28×28 digits), on a
//! P×K batch of 7 classes × 8 images (K capped by `--batch`), with batch-hard mining on
//! the squared distance matrix (read back to pick the triplets), backward and Adam.

use anyhow::Result;
use fovea::models::metric::{mined_triplet_loss, Mining};
use fovea::models::SiameseEncoder;
use fovea::nn::Module;
use fovea::optim::{Adam, Optimizer};
use fovea::{Device, Tensor};

use super::{time, Opts, Row};

pub(super) fn rows(
    dev: &Device,
    o: &Opts,
    wanted: &dyn Fn(&str) -> bool,
    rows: &mut Vec<Row>,
) -> Result<()> {
    let k = 8.min((o.batch_cap / 7).max(1));
    let n = 7 * k;
    let name = format!("siamese triplet step batch {n} 28x28 (width 16, dim 64, batch-hard)");
    if !wanted(&name) {
        return Ok(());
    }
    let net = SiameseEncoder::new(1, 16, 64, 0, dev)?;
    let mut opt = Adam::new(net.parameters(), Default::default());
    let x = Tensor::randn(&[n, 1, 28, 28], 40, dev);
    let labels: Vec<usize> = (0..n).map(|i| i / k).collect();
    let timed = time(dev, o, || {
        opt.zero_grad();
        let mined = mined_triplet_loss(&net.forward(&x)?, &labels, 0.2, Mining::BatchHard)?;
        mined.loss.backward()?;
        opt.step()?;
        Ok(())
    })?;
    rows.push(Row {
        name,
        timed,
        flop: f64::NAN,
    });
    Ok(())
}
