//! Reverse-mode autodiff: graph nodes, the backward pass and the no-grad scope.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::{Error, Result, Tensor};

pub(crate) type BackwardFn = Box<dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

/// How an op's output gradient maps to its inputs' gradients.
pub(crate) struct Node {
    pub(crate) name: &'static str,
    /// The inputs and the rule, which hold the tensors backward needs. A backward pass
    /// takes them as it goes (PyTorch's `retain_graph=False`), so activations are freed
    /// layer by layer instead of all at the end; `None` afterwards.
    pub(crate) saved: Mutex<Option<Saved>>,
}

/// What a node keeps for its backward rule.
pub(crate) struct Saved {
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) backward: BackwardFn,
}

impl Node {
    pub(crate) fn new(name: &'static str, inputs: Vec<Tensor>, backward: BackwardFn) -> Node {
        Node {
            name,
            saved: Mutex::new(Some(Saved { inputs, backward })),
        }
    }

    pub(crate) fn saved(&self) -> std::sync::MutexGuard<'_, Option<Saved>> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True unless inside a [`no_grad`] scope on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Turns graph recording off on this thread until dropped (then restores the previous
/// state). Inference and optimizer updates run under it.
pub struct NoGradGuard {
    prev: bool,
}

impl NoGradGuard {
    /// Enters a no-grad scope.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        NoGradGuard {
            prev: GRAD_ENABLED.with(|g| g.replace(false)),
        }
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.prev));
    }
}

/// Runs `f` without recording a graph.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Tensors reachable from `root` through recorded nodes, inputs before their users.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // Iterative post-order DFS: deep networks would overflow a recursive one.
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = &t.0.grad_fn {
            if let Some(saved) = node.saved().as_ref() {
                for input in &saved.inputs {
                    if input.0.grad_fn.is_some() && !visited.contains(&input.id()) {
                        stack.push((input.clone(), false));
                    }
                }
            }
        }
    }
    order
}

/// Backpropagates `seed` from `root`. Unless `retain`, every node's saved tensors are
/// released once used, and a second backward through them is an error.
pub(crate) fn run_backward(root: &Tensor, seed: Tensor, retain: bool) -> Result<()> {
    if !root.tracks_grad() {
        return Err(Error::Autograd(format!(
            "backward: the tensor {:?} does not require grad (it was computed under no_grad, or from tensors of which none requires grad)",
            root.shape()
        )));
    }
    if root.is_leaf() {
        return root.accumulate_grad(seed);
    }
    let _guard = NoGradGuard::new();
    let mut grads: HashMap<u64, Tensor> = HashMap::new();
    grads.insert(root.id(), seed);
    for t in topological_order(root).into_iter().rev() {
        let Some(g) = grads.remove(&t.id()) else {
            continue;
        };
        let node = t.0.grad_fn.as_ref().expect("ordered tensors have nodes");
        let mut slot = node.saved();
        let taken = if retain { None } else { slot.take() };
        let saved = if retain {
            slot.as_ref()
        } else {
            taken.as_ref()
        };
        let Some(Saved { inputs, backward }) = saved else {
            return Err(Error::Autograd(format!(
                "backward through {} a second time: the first backward released the tensors it saved (use backward_retain_graph() for the first pass when a graph is used twice)",
                node.name
            )));
        };
        let input_grads = backward(&g)?;
        for (input, grad) in inputs.iter().zip(input_grads) {
            let Some(grad) = grad else { continue };
            if grad.shape() != input.shape() {
                return Err(Error::Autograd(format!(
                    "internal error: the backward rule of {} gave a gradient of shape {:?} for an input of shape {:?}",
                    node.name,
                    grad.shape(),
                    input.shape()
                )));
            }
            if input.0.grad_fn.is_some() {
                let sum = match grads.remove(&input.id()) {
                    Some(prev) => prev.add(&grad)?,
                    None => grad,
                };
                grads.insert(input.id(), sum);
            } else if input.is_requires_grad() {
                input.accumulate_grad(grad)?;
            }
        }
    }
    Ok(())
}
