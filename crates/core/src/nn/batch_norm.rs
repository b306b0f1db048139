//! Batch normalisation layer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{join, Conv2d, Module};
use crate::backend::Storage;
use crate::ops::BatchNormOptions;
use crate::{Device, Error, Result, Tensor};

/// A convolution's weight and bias with an eval-mode batch norm folded in, and the
/// buffers and `eps` they were made from: while those are unchanged (inference), the
/// next forward reuses them instead of rebuilding weight-sized tensors.
struct Folded {
    from: Vec<Option<Storage>>,
    eps: f32,
    weight: Tensor,
    bias: Tensor,
}

impl Folded {
    fn made_from(&self, conv: &Conv2d, from: &[Option<Storage>], eps: f32) -> bool {
        // The shape too: a weight field replaced by a reshape of the same buffer.
        self.eps.to_bits() == eps.to_bits()
            && self.weight.shape() == conv.weight.shape()
            && self.from.len() == from.len()
            && self.from.iter().zip(from).all(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => a.same_buffer(b),
                (None, None) => true,
                _ => false,
            })
    }
}

/// `nn.BatchNorm2d`: affine `weight`/`bias` and running statistics, with PyTorch's
/// `num_batches_tracked` buffer so torchvision state dicts load by name.
pub struct BatchNorm2d {
    /// `[c]`, initialised to 1
    pub weight: Tensor,
    /// `[c]`, initialised to 0
    pub bias: Tensor,
    /// `[c]`
    pub running_mean: Tensor,
    /// `[c]`
    pub running_var: Tensor,
    /// `[]`: training steps seen
    pub num_batches_tracked: Tensor,
    /// momentum and eps
    pub momentum: f32,
    /// added to the variance
    pub eps: f32,
    training: AtomicBool,
    sync: AtomicBool,
    folded: Mutex<Option<Folded>>,
}

impl BatchNorm2d {
    /// A batch norm layer over `channels` (momentum 0.1, eps 1e-5), in training mode.
    /// Panics like [`Tensor::full`] where the device cannot hold `channels` values;
    /// [`BatchNorm2d::try_new`] returns an error instead.
    pub fn new(channels: usize, device: &Device) -> BatchNorm2d {
        BatchNorm2d::try_new(channels, device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`BatchNorm2d::new`], with an error naming the layer and its channels where the
    /// device cannot hold them (a model's constructor that returns `Result` uses this).
    pub fn try_new(channels: usize, device: &Device) -> Result<BatchNorm2d> {
        BatchNorm2d::named("BatchNorm2d::new", channels, device)
    }

    /// [`BatchNorm2d::try_new`] for the layer `layer` (the 1-D and 3-D ones wrap this).
    fn named(layer: &'static str, channels: usize, device: &Device) -> Result<BatchNorm2d> {
        let full = |shape: &[usize], value| {
            Tensor::try_full(shape, value, device)
                .map_err(|e| Error::op(layer, format!("{channels} channels: {}", e.root())))
        };
        Ok(BatchNorm2d {
            weight: full(&[channels], 1.0)?.requires_grad(),
            bias: full(&[channels], 0.0)?.requires_grad(),
            running_mean: full(&[channels], 0.0)?,
            running_var: full(&[channels], 1.0)?,
            num_batches_tracked: full(&[], 0.0)?,
            momentum: 0.1,
            eps: 1e-5,
            training: AtomicBool::new(true),
            sync: AtomicBool::new(false),
            folded: Mutex::new(None),
        })
    }
}

impl BatchNorm2d {
    /// A batch norm layer with another `eps` (torchvision's GoogLeNet and EfficientNet use
    /// 1e-3).
    pub fn with_eps(channels: usize, eps: f32, device: &Device) -> BatchNorm2d {
        BatchNorm2d {
            eps,
            ..BatchNorm2d::new(channels, device)
        }
    }

    /// True when the batch statistics are those of the whole batch across data-parallel
    /// replicas ([`Module::set_sync_batch_norm`]).
    pub fn is_sync(&self) -> bool {
        self.sync.load(Ordering::Relaxed)
    }

    /// True in training mode.
    pub fn is_training(&self) -> bool {
        self.training.load(Ordering::Relaxed)
    }

    /// `conv` then this layer. In eval mode the normalisation is an affine map per
    /// channel, so it is folded into the convolution's weight and bias (weight-sized work)
    /// instead of four passes over the activation; gradients still reach every parameter.
    /// Without gradients (inference) the folded pair is kept and reused until a parameter
    /// or running statistic is replaced; until then it holds on to the buffers it was
    /// made from.
    pub fn after_conv(&self, conv: &Conv2d, x: &Tensor) -> Result<Tensor> {
        self.after_conv_with(conv, x, false)
    }

    /// [`Self::after_conv`] then ReLU: in training the ReLU is fused into the batch norm
    /// ([`Self::forward_relu`]); in eval it follows the folded convolution.
    pub fn after_conv_relu(&self, conv: &Conv2d, x: &Tensor) -> Result<Tensor> {
        self.after_conv_with(conv, x, true)
    }

    fn after_conv_with(&self, conv: &Conv2d, x: &Tensor, relu: bool) -> Result<Tensor> {
        if self.is_training() {
            *self.folded.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return self.run(&conv.forward(x)?, relu);
        }
        let c = self.weight.numel();
        if conv.weight.shape()[0] != c {
            return Err(Error::op(
                "batch_norm",
                format!(
                    "a batch norm over {c} channels cannot follow a conv with weight {:?}",
                    conv.weight.shape()
                ),
            ));
        }
        let (w, b) = if crate::is_grad_enabled() {
            self.fold(conv)?
        } else {
            self.kept_fold(conv)?
        };
        let y = x.conv2d(&w, Some(&b), conv.opts)?;
        Ok(if relu { y.into_relu() } else { y })
    }

    /// This layer then ReLU, as one op ([`Tensor::batch_norm_relu`]).
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    fn run(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let training = self.training.load(Ordering::Relaxed);
        if training {
            crate::no_grad(|| {
                self.num_batches_tracked
                    .assign(&self.num_batches_tracked.add_scalar(1.0))
            })?;
        }
        let opts = BatchNormOptions {
            training,
            momentum: self.momentum,
            eps: self.eps,
        };
        let (rm, rv) = (Some(&self.running_mean), Some(&self.running_var));
        let (w, b) = (Some(&self.weight), Some(&self.bias));
        x.batch_norm_with(rm, rv, w, b, opts, self.is_sync(), relu)
    }

    /// `conv`'s weight and bias with this layer's eval-mode affine map folded in.
    fn fold(&self, conv: &Conv2d) -> Result<(Tensor, Tensor)> {
        let c = self.weight.numel();
        let scale = self
            .weight
            .div(&self.running_var.detach().add_scalar(self.eps).sqrt())?;
        let w = conv.weight.mul(&scale.reshape(&[c, 1, 1, 1])?)?;
        let shift = match &conv.bias {
            Some(b) => b.sub(&self.running_mean.detach())?,
            None => self.running_mean.detach().neg(),
        };
        Ok((w, shift.mul(&scale)?.add(&self.bias)?))
    }

    /// [`Self::fold`], reused while it was made from the buffers `conv` and this layer
    /// hold now.
    fn kept_fold(&self, conv: &Conv2d) -> Result<(Tensor, Tensor)> {
        let from: Vec<Option<Storage>> = [
            Some(&conv.weight),
            conv.bias.as_ref(),
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
        ]
        .iter()
        .map(|t| t.map(Tensor::storage))
        .collect();
        let mut kept = self.folded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = kept.as_ref().filter(|f| f.made_from(conv, &from, self.eps)) {
            return Ok((f.weight.clone(), f.bias.clone()));
        }
        let (weight, bias) = self.fold(conv)?;
        *kept = Some(Folded {
            from,
            eps: self.eps,
            weight: weight.clone(),
            bias: bias.clone(),
        });
        Ok((weight, bias))
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        f(&join(prefix, "bias"), &self.bias);
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "running_mean"), &self.running_mean);
        f(&join(prefix, "running_var"), &self.running_var);
        f(
            &join(prefix, "num_batches_tracked"),
            &self.num_batches_tracked,
        );
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
    fn set_sync_batch_norm(&self, sync: bool) {
        self.sync.store(sync, Ordering::Relaxed);
    }
}

/// Batch norm over `[N, C]` or `[N, C, L]` (`nn.BatchNorm1d`) and over `[N, C, D, H, W]`
/// (`nn.BatchNorm3d`): the same parameters, buffers and names as [`BatchNorm2d`], with the
/// input's rank checked.
macro_rules! batch_norm_nd {
    ($name:ident, $torch:literal, $ranks:expr, $what:literal) => {
        #[doc = concat!("`", $torch, "`: statistics per channel (dimension 1) over ", $what, ".")]
        pub struct $name(pub BatchNorm2d);

        impl $name {
            /// Over `channels` (momentum 0.1, eps 1e-5), in training mode; panics where
            /// the device cannot hold `channels` values, as [`BatchNorm2d::new`] does.
            pub fn new(channels: usize, device: &Device) -> $name {
                $name::try_new(channels, device).unwrap_or_else(|e| panic!("{e}"))
            }

            /// [`Self::new`], with an error where the device cannot hold the channels.
            pub fn try_new(channels: usize, device: &Device) -> Result<$name> {
                BatchNorm2d::named(concat!($torch, "::new"), channels, device).map($name)
            }
        }

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                if !$ranks.contains(&x.rank()) {
                    return Err(Error::op(
                        $torch,
                        format!(concat!("expects ", $what, ", got shape {:?}"), x.shape()),
                    ));
                }
                self.0.forward(x)
            }
            fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
                self.0.visit_parameters(prefix, f)
            }
            fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
                self.0.visit_buffers(prefix, f)
            }
            fn set_training(&self, training: bool) {
                self.0.set_training(training)
            }
            fn set_sync_batch_norm(&self, sync: bool) {
                self.0.set_sync_batch_norm(sync)
            }
        }
    };
}

batch_norm_nd!(BatchNorm1d, "BatchNorm1d", [2, 3], "[N, C] or [N, C, L]");
batch_norm_nd!(BatchNorm3d, "BatchNorm3d", [5], "[N, C, D, H, W]");
