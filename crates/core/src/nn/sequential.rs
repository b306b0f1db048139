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

    /// The outputs of the children at `indices` (in that order), running the children
    /// only up to the largest: a feature extractor stops early this way. Other outputs are
    /// dropped as soon as the next child has used them, so the activations that stay in
    /// memory are the ones backward needs.
    pub fn forward_at(&self, x: &Tensor, indices: &[usize]) -> Result<Vec<Tensor>> {
        let Some(&last) = indices.iter().max() else {
            return Ok(Vec::new());
        };
        if last >= self.children.len() {
            return Err(crate::Error::op(
                "Sequential::forward_at",
                format!(
                    "index {last} is past the last of {} children",
                    self.children.len()
                ),
            ));
        }
        let mut kept: Vec<Option<Tensor>> = vec![None; indices.len()];
        let mut h = x.clone();
        for (i, (name, m)) in self.children.iter().enumerate().take(last + 1) {
            h = m.forward(&h).map_err(|e| e.in_layer(name))?;
            for (slot, _) in kept.iter_mut().zip(indices).filter(|(_, &j)| j == i) {
                *slot = Some(h.clone());
            }
        }
        Ok(kept.into_iter().flatten().collect())
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (name, m) in &self.children {
            h = m.forward(&h).map_err(|e| e.in_layer(name))?;
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
