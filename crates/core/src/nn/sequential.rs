//! `nn.Sequential`: children named `0`, `1`, … (or explicitly), applied in order.

use super::Module;
use crate::{Result, Tensor};

/// Modules applied one after another.
#[derive(Default)]
pub struct Sequential {
    children: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    /// An empty sequence.
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a child named by its index, as `nn.Sequential(...)` does.
    pub fn push(mut self, m: impl Module + 'static) -> Sequential {
        let name = self.children.len().to_string();
        self.children.push((name, Box::new(m)));
        self
    }

    /// Appends a child with an explicit name (`nn.Sequential(OrderedDict(...))`).
    pub fn push_named(mut self, name: &str, m: impl Module + 'static) -> Sequential {
        self.children.push((name.to_string(), Box::new(m)));
        self
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// True without children.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Runs the children up to and including index `last`, returning every output: a
    /// feature extractor stops early this way.
    pub fn forward_until(&self, x: &Tensor, last: usize) -> Result<Vec<Tensor>> {
        let mut outs = Vec::new();
        let mut h = x.clone();
        for (_, m) in self.children.iter().take(last + 1) {
            h = m.forward(&h)?;
            outs.push(h.clone());
        }
        Ok(outs)
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (_, m) in &self.children {
            h = m.forward(&h)?;
        }
        Ok(h)
    }
    fn children(&self) -> Vec<(&str, &dyn Module)> {
        self.children
            .iter()
            .map(|(n, m)| (n.as_str(), m.as_ref()))
            .collect()
    }
}
