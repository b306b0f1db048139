//! The GPU-against-CPU comparison every parity test uses.

use fovea::{Device, Result, Tensor};

use super::rel_err;

/// The seed of the output gradient [`parity`] sends back.
pub const GY_SEED: u64 = 17;

/// Runs `f` on CPU and GPU copies of `inputs` (all requiring grad) and compares the
/// outputs and every input's gradient.
pub fn parity(
    gpu: &Device,
    name: &str,
    inputs: &[Tensor],
    f: &dyn Fn(&[Tensor]) -> Result<Tensor>,
) {
    let cpu = Device::cpu();
    let on = |dev: &Device| -> Vec<Tensor> {
        inputs
            .iter()
            .map(|t| t.to_device(dev).unwrap().detach().requires_grad())
            .collect()
    };
    let (xc, xg) = (on(&cpu), on(gpu));
    let yc = f(&xc).unwrap_or_else(|e| panic!("{name} on cpu: {e}"));
    let yg = f(&xg).unwrap_or_else(|e| panic!("{name} on gpu: {e}"));
    assert_eq!(yc.shape(), yg.shape(), "{name}: output shapes");
    let err = rel_err(&yg.to_vec().unwrap(), &yc.to_vec().unwrap());
    assert!(
        err <= 1e-4,
        "{name}: forward rel. error {err:.2e} (shape {:?})",
        yc.shape()
    );
    let gy = Tensor::randn(yc.shape(), GY_SEED, &cpu);
    yc.backward_with(&gy).unwrap();
    yg.backward_with(&gy.to_device(gpu).unwrap()).unwrap();
    for (i, (c, g)) in xc.iter().zip(&xg).enumerate() {
        let (gc, gg) = (c.grad(), g.grad());
        assert_eq!(
            gc.is_some(),
            gg.is_some(),
            "{name}: input {i} gradient presence"
        );
        if let (Some(gc), Some(gg)) = (gc, gg) {
            let err = rel_err(&gg.to_vec().unwrap(), &gc.to_vec().unwrap());
            assert!(
                err <= 1e-3,
                "{name}: gradient of input {i} (shape {:?}) rel. error {err:.2e}",
                c.shape()
            );
        }
    }
}

pub fn randn(s: &[usize], seed: u64) -> Tensor {
    Tensor::randn(s, seed, &Device::cpu())
}
