//! `summary()`: a table of each layer's output shape, parameter count and
//! multiply-accumulates for a given input shape.

use std::fmt;

use super::Module;
use crate::{no_grad, Device, Result, Tensor};

/// One leaf layer of a summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRow {
    /// dotted name (`features.0`)
    pub name: String,
    /// the layer's type (`Conv2d`)
    pub kind: String,
    /// output shape
    pub output: Vec<usize>,
    /// parameters of this layer
    pub params: usize,
    /// multiply-accumulates of this layer's forward pass
    pub macs: usize,
}

/// The rows of a model, in execution order, with totals.
#[derive(Clone, Debug)]
pub struct Summary {
    /// input shape the summary was taken with
    pub input: Vec<usize>,
    /// one row per leaf layer
    pub rows: Vec<SummaryRow>,
}

impl Summary {
    /// Total parameters.
    pub fn params(&self) -> usize {
        self.rows.iter().map(|r| r.params).sum()
    }
    /// Total multiply-accumulates.
    pub fn macs(&self) -> usize {
        self.rows.iter().map(|r| r.macs).sum()
    }
    /// The row of a named layer.
    pub fn row(&self, name: &str) -> Option<&SummaryRow> {
        self.rows.iter().find(|r| r.name == name)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<22} {:<18} {:<20} {:>12} {:>16}",
            "layer", "type", "output", "params", "MACs"
        )?;
        writeln!(
            f,
            "{:<22} {:<18} {:<20} {:>12} {:>16}",
            "(input)",
            "",
            format!("{:?}", self.input),
            "",
            ""
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<22} {:<18} {:<20} {:>12} {:>16}",
                r.name,
                r.kind,
                format!("{:?}", r.output),
                r.params,
                r.macs
            )?;
        }
        write!(
            f,
            "{:<22} {:<18} {:<20} {:>12} {:>16}",
            "total",
            "",
            "",
            self.params(),
            self.macs()
        )
    }
}

/// Runs `module` once on zeros of `input` (no graph) and tabulates its leaf layers.
pub fn summary(module: &dyn Module, input: &[usize], device: &Device) -> Result<Summary> {
    let x = Tensor::zeros(input, device);
    let mut rows = Vec::new();
    no_grad(|| module.summarize("", &x, &mut rows))?;
    Ok(Summary {
        input: input.to_vec(),
        rows,
    })
}

/// The last path segment of a type name (`fovea_core::nn::conv::Conv2d` → `Conv2d`).
pub(crate) fn short_name(full: &str) -> String {
    full.rsplit("::").next().unwrap_or(full).to_string()
}
