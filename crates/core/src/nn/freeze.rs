//! Freezing and unfreezing parts of a network for transfer learning: by a name pattern
//! (`features.*`, `classifier.1.weight`) or by depth (the first `k` blocks of a container
//! such as `features`). A frozen parameter gets no gradient, so optimizers leave it as
//! it is.

use super::{join, Module};
use crate::{Error, Result};

/// The names of the layers that own parameters (`features.0.0`, `classifier.1`, …): the
/// parameter names without their last part, in registration order, each once.
pub fn layer_names(module: &dyn Module) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, _) in module.named_parameters() {
        let layer = name.rsplit_once('.').map_or("", |(l, _)| l).to_string();
        if out.last() != Some(&layer) && !out.contains(&layer) {
            out.push(layer);
        }
    }
    out
}

/// Whether `name` matches `pattern`: `*` stands for any run of characters (dots
/// included); a pattern without `*` matches the name itself and everything under it
/// (`features.3` matches `features.3.conv.0.weight`, not `features.30.weight`).
pub fn matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return name == pattern
            || (name.starts_with(pattern) && name[pattern.len()..].starts_with('.'));
    }
    glob(pattern.as_bytes(), name.as_bytes())
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard matching with backtracking to the last star.
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Sets `requires_grad` to `trainable` on every parameter whose name matches
/// `pattern` (see [`matches`]) and returns how many it changed. A pattern that matches
/// no parameter is an error listing the layers there are.
pub fn set_trainable(module: &dyn Module, pattern: &str, trainable: bool) -> Result<usize> {
    let hits: Vec<_> = module
        .named_parameters()
        .into_iter()
        .filter(|(n, _)| matches(pattern, n))
        .collect();
    if hits.is_empty() {
        return Err(Error::op(
            "freeze",
            format!(
                "no parameter matches {pattern:?}; the layers with parameters are: {}",
                layer_names(module).join(", ")
            ),
        ));
    }
    hits.iter()
        .for_each(|(_, p)| p.set_requires_grad(trainable));
    Ok(hits.len())
}

/// Freezes the parameters matching `pattern` (see [`set_trainable`]).
pub fn freeze_matching(module: &dyn Module, pattern: &str) -> Result<usize> {
    set_trainable(module, pattern, false)
}

/// Makes the parameters matching `pattern` trainable again (see [`set_trainable`]).
pub fn unfreeze_matching(module: &dyn Module, pattern: &str) -> Result<usize> {
    set_trainable(module, pattern, true)
}

/// The child of `module` at a dotted `path` (`""` is the module itself); an unknown part
/// is an error listing the children there are at that point.
pub fn child<'a>(module: &'a dyn Module, path: &str) -> Result<&'a dyn Module> {
    let mut m = module;
    let mut at = String::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let children = m.children();
        let names: Vec<&str> = children.iter().map(|(n, _)| *n).collect();
        let Some(&(_, c)) = children.iter().find(|(n, _)| *n == part) else {
            let place = if at.is_empty() { "the model" } else { &at };
            return Err(Error::op(
                "freeze",
                format!(
                    "{place} has no child {part:?}; its children are: {}",
                    if names.is_empty() {
                        "(none)".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        };
        m = c;
        at = join(&at, part);
    }
    Ok(m)
}

/// Freezing by depth: the first `frozen` children of the container at `container` (for
/// example `features` of a VGG or MobileNet) are frozen and the rest of that container
/// made trainable; parameters outside the container are left as they were. Fine-tuning
/// the last `k` of `n` blocks is `freeze_depth(model, "features", n - k)`. Returns the
/// container's number of children. More than the container holds is an error.
pub fn freeze_depth(module: &dyn Module, container: &str, frozen: usize) -> Result<usize> {
    let c = child(module, container)?;
    let children = c.children();
    if frozen > children.len() {
        return Err(Error::op(
            "freeze",
            format!(
                "cannot freeze the first {frozen} blocks of {container:?}: it has {} ({})",
                children.len(),
                children
                    .iter()
                    .map(|(n, _)| join(container, n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    for (i, (_, block)) in children.iter().enumerate() {
        let on = i >= frozen;
        block
            .parameters()
            .iter()
            .for_each(|p| p.set_requires_grad(on));
    }
    Ok(children.len())
}

/// The parameters that would train (`requires_grad`), with their names.
pub fn trainable_parameters(module: &dyn Module) -> Vec<(String, crate::Tensor)> {
    module
        .named_parameters()
        .into_iter()
        .filter(|(_, p)| p.is_requires_grad())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        assert!(matches("features.3", "features.3.conv.0.weight"));
        assert!(!matches("features.3", "features.30.weight"));
        assert!(matches("features.*.weight", "features.30.conv.weight"));
        assert!(!matches("features.*.weight", "features.30.bias"));
        assert!(matches("*bias", "classifier.1.bias"));
        assert!(matches("*", "x"));
        assert!(!matches("classifier.1.weight", "classifier.1.bias"));
    }
}
