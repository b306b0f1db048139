//! Reverse-mode autodiff: graph nodes, the backward pass and the no-grad scope.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::{DType, Error, Result, Tensor};

pub(crate) type BackwardFn = Box<dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

/// How an op's output gradient maps to its inputs' gradients.
pub(crate) struct Node {
    pub(crate) name: &'static str,
    /// The output's shape, which its gradient must have.
    pub(crate) shape: Vec<usize>,
    /// Whether the forward ran under autocast: its backward runs the same way.
    autocast: bool,
    /// The output's dtype, which its gradient is given in.
    pub(crate) dtype: DType,
    /// The edges and the rule, which holds the tensors backward needs. A backward pass
    /// takes them as it goes (PyTorch's `retain_graph=False`), so activations are freed
    /// layer by layer instead of all at the end; `None` afterwards.
    pub(crate) saved: Mutex<Option<Saved>>,
}

/// Where an input's gradient goes. An edge to another op holds that op's node, not its
/// output: an activation stays in memory only while some rule saved it (ReLU keeps its
/// output, a convolution its input only when the weight needs a gradient), not because
/// the graph passes through it.
pub(crate) enum Edge {
    /// an input computed by a recorded op
    Op(Arc<Node>),
    /// a leaf that requires grad: the gradient accumulates into it
    Leaf(Tensor),
    /// an input that takes no gradient
    Skip,
}

impl Edge {
    pub(crate) fn to(t: &Tensor) -> Edge {
        match &t.0.grad_fn {
            Some(node) => Edge::Op(node.clone()),
            None if t.is_requires_grad() => Edge::Leaf(t.clone()),
            None => Edge::Skip,
        }
    }
}

/// What a node keeps for its backward rule.
pub(crate) struct Saved {
    pub(crate) edges: Vec<Edge>,
    pub(crate) backward: BackwardFn,
}

impl Node {
    pub(crate) fn new(
        name: &'static str,
        shape: Vec<usize>,
        dtype: DType,
        edges: Vec<Edge>,
        backward: BackwardFn,
    ) -> Node {
        Node {
            name,
            shape,
            dtype,
            autocast: crate::autocast::is_autocast_enabled(),
            saved: Mutex::new(Some(Saved { edges, backward })),
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

/// Nodes reachable from `root`, inputs before their users.
fn topological_order(root: &Arc<Node>) -> Vec<Arc<Node>> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // Iterative post-order DFS: deep networks would overflow a recursive one.
    let mut stack = vec![(root.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            order.push(node);
            continue;
        }
        if !visited.insert(Arc::as_ptr(&node)) {
            continue;
        }
        stack.push((node.clone(), true));
        if let Some(saved) = node.saved().as_ref() {
            for edge in &saved.edges {
                if let Edge::Op(input) = edge {
                    if !visited.contains(&Arc::as_ptr(input)) {
                        stack.push((input.clone(), false));
                    }
                }
            }
        }
    }
    order
}

thread_local! {
    static IN_BACKWARD: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as running backward rules until dropped.
struct InBackward(bool);

impl InBackward {
    fn enter() -> InBackward {
        InBackward(IN_BACKWARD.with(|b| b.replace(true)))
    }
}

impl Drop for InBackward {
    fn drop(&mut self) {
        IN_BACKWARD.with(|b| b.set(self.0));
    }
}

/// True while this thread runs backward rules, which may mix an f16 input's saved values
/// with f32 gradients (the engine casts each gradient back to its input's dtype).
pub(crate) fn in_backward() -> bool {
    IN_BACKWARD.with(|b| b.get())
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
    let _guard = NoGradGuard::new();
    let seed = seed.to_dtype(root.dtype())?;
    let Some(root_node) = root.0.grad_fn.clone() else {
        return root.accumulate_grad(seed);
    };
    let _backward = InBackward::enter();
    let mut grads: HashMap<*const Node, Tensor> = HashMap::new();
    grads.insert(Arc::as_ptr(&root_node), seed);
    for node in topological_order(&root_node).into_iter().rev() {
        let Some(g) = grads.remove(&Arc::as_ptr(&node)) else {
            continue;
        };
        let mut slot = node.saved();
        let taken = if retain { None } else { slot.take() };
        let saved = if retain {
            slot.as_ref()
        } else {
            taken.as_ref()
        };
        let Some(Saved { edges, backward }) = saved else {
            return Err(Error::Autograd(format!(
                "backward through {} a second time: the first backward released the tensors it saved (use backward_retain_graph() for the first pass when a graph is used twice)",
                node.name
            )));
        };
        let input_grads = crate::autocast::scope(node.autocast, || backward(&g))
            .map_err(|e| e.in_backward(node.name, g.shape()))?;
        for (edge, grad) in edges.iter().zip(input_grads) {
            let Some(grad) = grad else { continue };
            let (want, dtype) = match edge {
                Edge::Op(input) => (&input.shape[..], input.dtype),
                Edge::Leaf(t) => (t.shape(), t.dtype()),
                Edge::Skip => continue,
            };
            // A rule may compute in f32 what an f16 input needs in f16 (PyTorch's engine
            // casts the same way).
            let grad = grad.to_dtype(dtype)?;
            if grad.shape() != want {
                return Err(Error::Autograd(format!(
                    "internal error: the backward rule of {} gave a gradient of shape {:?} for an input of shape {want:?}",
                    node.name,
                    grad.shape(),
                )));
            }
            match edge {
                Edge::Op(input) => {
                    let key = Arc::as_ptr(input);
                    let sum = match grads.remove(&key) {
                        Some(prev) => prev.into_add(&grad)?,
                        None => grad,
                    };
                    grads.insert(key, sum);
                }
                // Frozen after the forward pass: still no gradient.
                Edge::Leaf(t) if !t.is_requires_grad() => {}
                Edge::Leaf(t) => t.accumulate_grad(grad)?,
                Edge::Skip => {}
            }
        }
    }
    Ok(())
}
