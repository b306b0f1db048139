//! `nn.Sequential`: children named `0`, `1`, … (or explicitly), applied in order.

use super::{join, Module};
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
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (name, m) in &self.children {
            m.visit_parameters(&join(prefix, name), f);
        }
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (name, m) in &self.children {
            m.visit_buffers(&join(prefix, name), f);
        }
    }
    fn visit_state(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (name, m) in &self.children {
            m.visit_state(&join(prefix, name), f);
        }
    }
    fn set_training(&self, training: bool) {
        self.children
            .iter()
            .for_each(|(_, m)| m.set_training(training));
    }
    fn summarize(
        &self,
        name: &str,
        x: &Tensor,
        rows: &mut Vec<super::SummaryRow>,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (child, m) in &self.children {
            h = m.summarize(&join(name, child), &h, rows)?;
        }
        Ok(h)
    }
}
