//! Receptive-field arithmetic: which input pixels a unit of a layer sees, from the kernel
//! sizes, strides, paddings and dilations of the sliding windows before it.
//!
//! Along one axis, after a window of kernel `k`, stride `s`, padding `p`, dilation `d`
//! (effective kernel `k' = d·(k − 1) + 1`), with `r`, `j`, `c` the field size, the jump
//! (input pixels between neighbouring units) and the centre of the first unit's field:
//!
//! ```text
//! r_out = r_in + (k' − 1) · j_in
//! j_out = j_in · s
//! c_out = c_in + ((k' − 1) / 2 − p) · j_in
//! ```
//!
//! starting from the input itself (`r = 1`, `j = 1`, `c = 0`: pixel `i`'s centre is `i`).
//! Layers that do not slide a window (activations, batch norm) change nothing. Residual
//! shortcuts see less than the main path, so following the chain of windows in execution
//! order gives the largest field, which is the one that matters for cropping.

use super::Module;
use crate::{Error, Result};

/// One sliding window (a convolution or a pooling layer), the same on both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// kernel size
    pub kernel: usize,
    /// stride
    pub stride: usize,
    /// zeros added before the first cell
    pub padding: usize,
    /// spacing of the kernel's taps
    pub dilation: usize,
}

impl Window {
    /// A window with dilation 1.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Window {
        Window {
            kernel,
            stride,
            padding,
            dilation: 1,
        }
    }
}

/// The receptive field of a layer's units along one axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReceptiveField {
    /// input pixels the field spans
    pub size: usize,
    /// input pixels between the fields of neighbouring units (the product of the strides)
    pub jump: usize,
    /// the centre of unit 0's field in input pixel coordinates (may be negative or a half
    /// pixel: a field that starts inside the padding)
    pub start: f64,
}

impl ReceptiveField {
    /// The input itself: one pixel per unit.
    pub const INPUT: ReceptiveField = ReceptiveField {
        size: 1,
        jump: 1,
        start: 0.0,
    };

    /// The field after one more window.
    pub fn then(self, w: &Window) -> ReceptiveField {
        let k = w.dilation * (w.kernel - 1) + 1;
        ReceptiveField {
            size: self.size + (k - 1) * self.jump,
            jump: self.jump * w.stride,
            start: self.start + ((k - 1) as f64 / 2.0 - w.padding as f64) * self.jump as f64,
        }
    }

    /// The input pixels `[lo, hi)` that unit `i` sees, clipped to an axis of `len` pixels
    /// (the part of the field over padding is cut off).
    pub fn span(&self, i: usize, len: usize) -> (usize, usize) {
        let centre = self.start + (i * self.jump) as f64;
        let half = (self.size as f64 - 1.0) / 2.0;
        let lo = (centre - half).round().max(0.0) as usize;
        let hi = ((centre + half).round() + 1.0).clamp(0.0, len as f64) as usize;
        (lo.min(len), hi.max(lo.min(len)))
    }
}

/// The fields after each window in order (`fields[i]` is after `windows[i]`). A zero
/// kernel, stride or dilation is an error.
pub fn receptive_fields(windows: &[Window]) -> Result<Vec<ReceptiveField>> {
    let mut rf = ReceptiveField::INPUT;
    let mut out = Vec::with_capacity(windows.len());
    for (i, w) in windows.iter().enumerate() {
        if w.kernel == 0 || w.stride == 0 || w.dilation == 0 {
            return Err(Error::op(
                "receptive_field",
                format!("window {i} ({w:?}) needs a positive kernel, stride and dilation"),
            ));
        }
        rf = rf.then(w);
        out.push(rf);
    }
    Ok(out)
}

/// The field after all of `windows` (the input's own when there are none).
pub fn receptive_field(windows: &[Window]) -> Result<ReceptiveField> {
    Ok(receptive_fields(windows)?
        .last()
        .copied()
        .unwrap_or(ReceptiveField::INPUT))
}

/// The sliding windows of a module in execution order (see [`Module::visit_windows`]).
pub fn windows(module: &dyn Module) -> Vec<Window> {
    let mut out = Vec::new();
    module.visit_windows(&mut |w| out.push(w));
    out
}

/// The height axis of a 2-D window (the networks here are square: both axes agree).
pub(crate) fn axis0(
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Window {
    Window {
        kernel: kernel[0],
        stride: stride[0],
        padding: padding[0],
        dilation: dilation[0],
    }
}
