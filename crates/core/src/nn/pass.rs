//! `Pass`: how a composite module (residual blocks, inception branches, skip connections)
//! runs its children, written once for both the forward pass and the summary.

use super::{join, BatchNorm2d, Conv2d, Module, SummaryRow};
use crate::{Result, Tensor};

/// One pass through a composite module's children. A module whose forward pass is not a
/// chain writes its data flow once, as a function of a `Pass`, and implements both
/// [`Module::forward`] (with [`Pass::forward`]) and [`Module::summarize`] (with
/// [`Pass::summary`]) by calling it; every child's error then names the child's dotted
/// path (see [`crate::Error::in_layer`]).
pub struct Pass<'a> {
    summary: Option<(&'a str, &'a mut Vec<SummaryRow>)>,
}

impl Pass<'static> {
    /// A plain forward pass.
    pub fn forward() -> Pass<'static> {
        Pass { summary: None }
    }
}

impl<'a> Pass<'a> {
    /// A pass that appends a summary row per leaf layer, naming them under `prefix`.
    pub fn summary(prefix: &'a str, rows: &'a mut Vec<SummaryRow>) -> Pass<'a> {
        Pass {
            summary: Some((prefix, rows)),
        }
    }

    /// Applies the child called `name`.
    pub fn run(&mut self, name: &str, child: &dyn Module, x: &Tensor) -> Result<Tensor> {
        match &mut self.summary {
            None => child.forward(x),
            Some((prefix, rows)) => child.summarize(&join(prefix, name), x, rows),
        }
        .map_err(|e| e.in_layer(name))
    }

    /// A convolution then its batch norm, named `conv_name` and `bn_name`: one row each
    /// in a summary; in a forward pass, the norm is folded into the convolution in eval
    /// mode ([`BatchNorm2d::after_conv`]).
    pub fn conv_bn(
        &mut self,
        conv: (&str, &Conv2d),
        bn: (&str, &BatchNorm2d),
        x: &Tensor,
    ) -> Result<Tensor> {
        self.conv_bn_with(conv, bn, x, false)
    }

    /// [`Self::conv_bn`] then ReLU, fused into the batch norm in training
    /// ([`BatchNorm2d::after_conv_relu`]).
    pub fn conv_bn_relu(
        &mut self,
        conv: (&str, &Conv2d),
        bn: (&str, &BatchNorm2d),
        x: &Tensor,
    ) -> Result<Tensor> {
        self.conv_bn_with(conv, bn, x, true)
    }

    fn conv_bn_with(
        &mut self,
        (conv_name, conv): (&str, &Conv2d),
        (bn_name, bn): (&str, &BatchNorm2d),
        x: &Tensor,
        relu: bool,
    ) -> Result<Tensor> {
        if self.is_summary() {
            let h = self.run(conv_name, conv, x)?;
            let y = self.run(bn_name, bn, &h)?;
            return Ok(if relu { y.into_relu() } else { y });
        }
        let y = if relu {
            bn.after_conv_relu(conv, x)
        } else {
            bn.after_conv(conv, x)
        };
        y.map_err(|e| e.in_layer(conv_name))
    }

    /// True when this pass records a summary.
    pub fn is_summary(&self) -> bool {
        self.summary.is_some()
    }
}
