//! Layers as modules: parameters and buffers with PyTorch `state_dict` names
//! (`conv1.weight`, `features.0.bias`, `layer1.0.bn1.running_mean`), train/eval mode and
//! freezing. Modules take `&self` in `forward`; mode flags use interior mutability so a
//! model can be shared across threads.

mod activation;
mod batch_norm;
mod conv;
mod conv_norm;
mod dropout;
pub mod freeze;
pub mod init;
mod linear;
mod pass;
mod pool;
pub mod receptive_field;
mod sequential;
mod squeeze_excitation;
mod summary;

pub use activation::{
    Flatten, Hardsigmoid, Hardswish, Hardtanh, Identity, LeakyRelu, Relu, Relu6, Sigmoid, Silu,
    Tanh,
};
pub use batch_norm::{BatchNorm1d, BatchNorm2d, BatchNorm3d};
pub use conv::{Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d};
pub use conv_norm::{Activation, ConvNormAct};
pub use dropout::{Dropout, StochasticDepth};
pub use freeze::{freeze_depth, freeze_matching, layer_names, set_trainable, unfreeze_matching};
pub use linear::Linear;
pub use pass::Pass;
pub use pool::{
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AvgPool1d, AvgPool2d, AvgPool3d,
    MaxPool1d, MaxPool2d, MaxPool3d, Upsample, UpsampleMode,
};
pub use receptive_field::{receptive_field, receptive_fields, ReceptiveField, Window};
pub use sequential::Sequential;
pub use squeeze_excitation::{Gate, SqueezeExcitation};
pub use summary::{summary, Summary, SummaryRow};

use std::sync::atomic::AtomicU64;

use crate::{DType, Result, Tensor};

/// Joins a parent prefix and a child name with a dot (`""` + `"weight"` = `"weight"`).
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A network layer or a whole network.
pub trait Module: Send + Sync {
    /// Applies the module.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// The named sub-modules of a container, in `state_dict` and execution order. Leaves
    /// return none; containers list their children and inherit the recursive defaults
    /// below (names, state, mode, summary) instead of writing them out.
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        Vec::new()
    }

    /// Calls `f` with every trainable parameter and its dotted name under `prefix`.
    /// Leaves with parameters override it; the default recurses into the children.
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (name, child) in self.children() {
            child.visit_parameters(&join(prefix, name), f);
        }
    }

    /// Calls `f` with every buffer (state that is saved but not trained, such as batch
    /// norm's running statistics). The default recurses into the children.
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (name, child) in self.children() {
            child.visit_buffers(&join(prefix, name), f);
        }
    }

    /// Converts every parameter and floating-point buffer to `dtype` in place, as
    /// PyTorch's `module.half()` and `module.float()`: batch norm's running statistics
    /// follow, its `num_batches_tracked` counter (an integer in PyTorch) stays f32.
    /// Gradients are forgotten. An optimizer made before keeps its state in f32.
    fn to_dtype(&self, dtype: DType) -> Result<()> {
        let mut result = Ok(());
        let mut convert = |name: &str, t: &Tensor| {
            if result.is_ok() && !name.ends_with("num_batches_tracked") {
                result = t.set_dtype(dtype);
            }
        };
        self.visit_parameters("", &mut convert);
        self.visit_buffers("", &mut convert);
        result
    }

    /// Calls `f` with every random-stream counter (dropout's call count): state that is
    /// neither parameter nor buffer but that a resumed run needs to continue exactly. The
    /// default recurses into the children.
    fn visit_counters(&self, prefix: &str, f: &mut dyn FnMut(&str, &AtomicU64)) {
        for (name, child) in self.children() {
            child.visit_counters(&join(prefix, name), f);
        }
    }

    /// Calls `f` with every sliding window (convolution, pooling) in execution order, for
    /// receptive-field arithmetic ([`receptive_field`]). Layers with a window override it
    /// (the height axis of a 2-D window); the default recurses into the children, which
    /// follows the main path of a residual block.
    fn visit_windows(&self, f: &mut dyn FnMut(Window)) {
        for (_, child) in self.children() {
            child.visit_windows(f);
        }
    }

    /// Switches training behaviour (dropout, batch statistics) on or off. Leaves with a
    /// mode override it; the default recurses into the children.
    fn set_training(&self, training: bool) {
        self.children()
            .iter()
            .for_each(|(_, c)| c.set_training(training));
    }

    /// Makes every batch norm layer normalise with the statistics of the whole batch
    /// across data-parallel replicas and processes (PyTorch's
    /// `SyncBatchNorm.convert_sync_batchnorm`; see [`crate::Tensor::sync_batch_norm`]),
    /// or, with `false`, with each replica's own (the default). Batch norm layers
    /// override it; the default recurses into the children.
    fn set_sync_batch_norm(&self, sync: bool) {
        self.children()
            .iter()
            .for_each(|(_, c)| c.set_sync_batch_norm(sync));
    }

    /// Multiply-accumulates of one forward pass from `input` to `output` shape (0 for
    /// layers whose arithmetic is negligible next to convolutions and matmuls).
    fn macs(&self, _input: &[usize], _output: &[usize]) -> usize {
        0
    }

    /// The layer's type name, for summaries.
    fn kind(&self) -> String {
        summary::short_name(std::any::type_name::<Self>())
    }

    /// Runs the module, appending one summary row per leaf layer. A container's default
    /// runs its children one after another; containers whose forward pass is not that
    /// chain override it.
    fn summarize(&self, name: &str, x: &Tensor, rows: &mut Vec<SummaryRow>) -> Result<Tensor> {
        let children = self.children();
        if !children.is_empty() {
            let mut pass = Pass::summary(name, rows);
            let mut h = x.clone();
            for (child_name, child) in children {
                h = pass.run(child_name, child, &h)?;
            }
            return Ok(h);
        }
        let y = self.forward(x)?;
        rows.push(SummaryRow {
            name: name.to_string(),
            kind: self.kind(),
            output: y.shape().to_vec(),
            params: self.num_parameters(),
            macs: self.macs(x.shape(), y.shape()),
        });
        Ok(y)
    }

    /// Parameters with their names, in registration order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit_parameters("", &mut |n, t| out.push((n.to_string(), t.clone())));
        out
    }

    /// Parameters, in registration order.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Parameters and buffers with their names, as PyTorch's `state_dict()` orders them
    /// (each module's parameters, then its buffers).
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit_state("", &mut |n, t| out.push((n.to_string(), t.clone())));
        out
    }

    /// Visits parameters and buffers module by module (the `state_dict` order: each
    /// leaf's parameters, then its buffers).
    fn visit_state(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        let children = self.children();
        if children.is_empty() {
            self.visit_parameters(prefix, f);
            self.visit_buffers(prefix, f);
        }
        for (name, child) in children {
            child.visit_state(&join(prefix, name), f);
        }
    }

    /// Number of scalar parameters.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Tensor::numel).sum()
    }

    /// Training mode.
    fn train(&self) {
        self.set_training(true);
    }

    /// Evaluation mode.
    fn eval(&self) {
        self.set_training(false);
    }

    /// Freezes every parameter (no gradient, optimizers skip them): transfer learning.
    fn freeze(&self) {
        self.parameters()
            .iter()
            .for_each(|p| p.set_requires_grad(false));
    }

    /// Makes every parameter trainable again.
    fn unfreeze(&self) {
        self.parameters()
            .iter()
            .for_each(|p| p.set_requires_grad(true));
    }
}
