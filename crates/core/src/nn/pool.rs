//! Pooling and resizing layers.

use super::{Module, Window};
use crate::ops::{Pool1dOptions, Pool2dOptions, Pool3dOptions};
use crate::{Result, Tensor};

/// `nn.MaxPool2d`.
pub struct MaxPool2d(pub Pool2dOptions);

/// `nn.AvgPool2d` (with `count_include_pad`).
pub struct AvgPool2d(pub Pool2dOptions, pub bool);

/// `nn.AdaptiveAvgPool2d`.
pub struct AdaptiveAvgPool2d(pub [usize; 2]);

/// How [`Upsample`] fills the new cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsampleMode {
    /// `mode='nearest'`
    Nearest,
    /// `mode='bilinear'`
    Bilinear {
        /// PyTorch's `align_corners`
        align_corners: bool,
    },
}

/// `nn.Upsample(scale_factor=scale, mode=…)` with a whole factor in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsample {
    /// the factor of both sides
    pub scale: usize,
    /// how new cells are filled
    pub mode: UpsampleMode,
}

fn pool_window(o: &Pool2dOptions) -> Window {
    let padding = if o.same {
        [
            o.kernel[0].saturating_sub(1) / 2,
            o.kernel[1].saturating_sub(1) / 2,
        ]
    } else {
        o.padding
    };
    super::receptive_field::axis0(o.kernel, o.stride, padding, o.dilation)
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool2d(self.0)
    }
    fn visit_windows(&self, f: &mut dyn FnMut(Window)) {
        f(pool_window(&self.0));
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool2d_with(self.0, self.1)
    }
    fn visit_windows(&self, f: &mut dyn FnMut(Window)) {
        f(pool_window(&self.0));
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.adaptive_avg_pool2d(self.0)
    }
}

impl Module for Upsample {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.mode {
            UpsampleMode::Nearest => x.upsample2d(self.scale),
            UpsampleMode::Bilinear { align_corners } => {
                let s = self.scale as f64;
                x.interpolate_bilinear_scale([s, s], align_corners)
            }
        }
    }
}

/// `nn.MaxPool1d`.
pub struct MaxPool1d(pub Pool1dOptions);

/// `nn.MaxPool3d`.
pub struct MaxPool3d(pub Pool3dOptions);

/// `nn.AvgPool1d` (with `count_include_pad`).
pub struct AvgPool1d(pub Pool1dOptions, pub bool);

/// `nn.AvgPool3d` (with `count_include_pad`).
pub struct AvgPool3d(pub Pool3dOptions, pub bool);

/// `nn.AdaptiveAvgPool1d`.
pub struct AdaptiveAvgPool1d(pub usize);

/// `nn.AdaptiveAvgPool3d`.
pub struct AdaptiveAvgPool3d(pub [usize; 3]);

impl Module for MaxPool1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool1d(self.0)
    }
}

impl Module for MaxPool3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool3d(self.0)
    }
}

impl Module for AvgPool1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool1d(self.0, self.1)
    }
}

impl Module for AvgPool3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool3d(self.0, self.1)
    }
}

impl Module for AdaptiveAvgPool1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.adaptive_avg_pool1d(self.0)
    }
}

impl Module for AdaptiveAvgPool3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.adaptive_avg_pool3d(self.0)
    }
}
