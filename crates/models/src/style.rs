//! Neural style transfer pieces (Gatys et al.), with the costs exactly as the course notes
//! define them:
//! - content: `J_content = ½ Σ (a(C) − a(G))²` on one layer;
//! - style matrix: `G_kk' = Σ_ij a_ijk a_ijk'` (unnormalised, [`Tensor::gram`]);
//! - style, per layer: `J_style = 1 / (4 n_c² (n_H n_W)²) Σ (G(S) − G(G))²`;
//! - total: `J = α J_content + β Σ_l λ_l J_style(l)`, plus an optional total-variation
//!   term `γ TV(G)` that smooths the result (not in the notes; off unless asked for).

use std::path::Path;

use fovea_core::nn::Module;
use fovea_core::{checkpoint, Device, Error, Result, Tensor};

use crate::vgg::{Vgg, VggConfig};

/// The HED/Caffe VGG16 input convention: BGR order, 0..255, minus these means (B, G, R).
pub const BGR_MEAN: [f32; 3] = [104.00699, 116.66877, 122.67891];

/// `[N, 3, H, W]` RGB in [0, 1] to the BGR, mean-subtracted 0..255 input of the HED VGG16.
pub fn preprocess_bgr(rgb: &Tensor) -> Result<Tensor> {
    if rgb.rank() != 4 || rgb.shape()[1] != 3 {
        return Err(Error::op(
            "preprocess_bgr",
            format!("needs [N, 3, H, W] RGB, got {:?}", rgb.shape()),
        ));
    }
    let channel =
        |c: usize, mean: f32| -> Result<Tensor> { Ok(rgb.narrow(1, c, 1)?.affine(255.0, -mean)) };
    Tensor::cat(
        &[
            &channel(2, BGR_MEAN[0])?,
            &channel(1, BGR_MEAN[1])?,
            &channel(0, BGR_MEAN[2])?,
        ],
        1,
    )
}

/// torchvision's ImageNet normalisation: RGB in [0, 1], minus these means, over these
/// standard deviations.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The input convention a set of pretrained VGG weights expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preprocess {
    /// Caffe's (the bundled HED VGG16): BGR, 0..255, minus [`BGR_MEAN`]
    CaffeBgr,
    /// torchvision's (its VGG16/VGG19 exports): RGB, `(x − mean) / std`
    ImageNetRgb,
}

impl Preprocess {
    /// `[N, 3, H, W]` RGB in [0, 1] to the network's input.
    pub fn apply(self, rgb: &Tensor) -> Result<Tensor> {
        match self {
            Preprocess::CaffeBgr => preprocess_bgr(rgb),
            Preprocess::ImageNetRgb => per_channel(rgb, "Preprocess::apply", |c, x| {
                x.affine(1.0 / IMAGENET_STD[c], -IMAGENET_MEAN[c] / IMAGENET_STD[c])
            }),
        }
    }

    /// The network's input back to `[N, 3, H, W]` RGB in [0, 1] (not clamped).
    pub fn invert(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Preprocess::CaffeBgr => {
                let rgb = Tensor::cat(
                    &[
                        &x.narrow(1, 2, 1)?,
                        &x.narrow(1, 1, 1)?,
                        &x.narrow(1, 0, 1)?,
                    ],
                    1,
                )?;
                per_channel(&rgb, "Preprocess::invert", |c, x| {
                    x.affine(1.0 / 255.0, BGR_MEAN[2 - c] / 255.0)
                })
            }
            Preprocess::ImageNetRgb => per_channel(x, "Preprocess::invert", |c, x| {
                x.affine(IMAGENET_STD[c], IMAGENET_MEAN[c])
            }),
        }
    }

    /// How far one 8-bit intensity level moves an input value: learning rates and noise
    /// are set in these units so they mean the same under either convention.
    pub fn level(self) -> f32 {
        match self {
            Preprocess::CaffeBgr => 1.0,
            Preprocess::ImageNetRgb => 1.0 / (255.0 * 0.226),
        }
    }
}

/// Applies `f(channel, plane)` to each of the 3 channels of `[N, 3, H, W]`.
fn per_channel(
    x: &Tensor,
    op: &'static str,
    f: impl Fn(usize, &Tensor) -> Tensor,
) -> Result<Tensor> {
    if x.rank() != 4 || x.shape()[1] != 3 {
        return Err(Error::op(
            op,
            format!("needs [N, 3, H, W], got {:?}", x.shape()),
        ));
    }
    let planes = (0..3)
        .map(|c| Ok(f(c, &x.narrow(1, c, 1)?)))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&planes.iter().collect::<Vec<_>>(), 1)
}

/// A VGG trunk (`features.*`) loaded from safetensors by torchvision name (the bundled HED
/// VGG16, or torchvision's VGG16/VGG19 exports, which may hold the classifier too), frozen
/// and in eval mode: style transfer trains the image, not the network.
pub fn pretrained_vgg(config: VggConfig, weights: &Path, device: &Device) -> Result<Vgg> {
    let vgg = Vgg::features_only(config, false, 0, device)?;
    checkpoint::load_module_subset(&vgg, weights)?;
    vgg.freeze();
    vgg.eval();
    Ok(vgg)
}

/// [`pretrained_vgg`] for VGG16 (the bundled HED weights).
pub fn pretrained_vgg16(weights: &Path, device: &Device) -> Result<Vgg> {
    pretrained_vgg(VggConfig::Vgg16, weights, device)
}

/// Squared total variation, `Σ (x[i+1, j] − x[i, j])² + Σ (x[i, j+1] − x[i, j])²` over
/// every image and channel of `[N, C, H, W]`: penalises high-frequency noise.
pub fn total_variation(x: &Tensor) -> Result<Tensor> {
    if x.rank() != 4 || x.shape()[2] < 2 || x.shape()[3] < 2 {
        return Err(Error::op(
            "total_variation",
            format!("needs [N, C, H, W] with H, W ≥ 2, got {:?}", x.shape()),
        ));
    }
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let dy = x.narrow(2, 1, h - 1)?.sub(&x.narrow(2, 0, h - 1)?)?;
    let dx = x.narrow(3, 1, w - 1)?.sub(&x.narrow(3, 0, w - 1)?)?;
    dy.square().sum().add(&dx.square().sum())
}

/// The costs of one generated image, each a scalar tensor left on the device.
pub struct Costs {
    /// `α J_content + β J_style + γ TV`
    pub total: Tensor,
    /// `J_content`
    pub content: Tensor,
    /// `Σ_l λ_l J_style(l)`
    pub style: Tensor,
    /// `TV(G)` (zero when γ is zero)
    pub tv: Tensor,
}

/// A style-transfer objective: the content image's activations and the painting's Gram
/// matrices, computed once, and the weights that combine the costs.
pub struct StyleTransfer {
    vgg: Vgg,
    layers: Vec<String>,
    layer_weights: Vec<f32>,
    a_c: Tensor,
    grams_s: Vec<Tensor>,
    /// content weight α
    pub alpha: f32,
    /// style weight β
    pub beta: f32,
    /// total-variation weight γ
    pub tv_weight: f32,
}

impl StyleTransfer {
    /// The objective for `content` and `style` (network inputs, already preprocessed),
    /// with `content_layer` and equally weighted `style_layers` (`"relu3_1"`, …).
    pub fn new(
        vgg: Vgg,
        content: &Tensor,
        style: &Tensor,
        content_layer: &str,
        style_layers: &[&str],
    ) -> Result<StyleTransfer> {
        if style_layers.is_empty() {
            return Err(Error::op("StyleTransfer", "needs at least one style layer"));
        }
        let (a_c, grams_s) = fovea_core::no_grad(|| -> Result<_> {
            let a_c = vgg.extract(content, &[content_layer])?.remove(0);
            let grams = vgg
                .extract(style, style_layers)?
                .iter()
                .map(Tensor::gram)
                .collect::<Result<Vec<_>>>()?;
            Ok((a_c, grams))
        })?;
        let mut layers = vec![content_layer.to_string()];
        layers.extend(style_layers.iter().map(|s| s.to_string()));
        Ok(StyleTransfer {
            vgg,
            layers,
            layer_weights: vec![1.0 / style_layers.len() as f32; style_layers.len()],
            a_c,
            grams_s,
            alpha: 1.0,
            beta: 1e4,
            tv_weight: 0.0,
        })
    }

    /// Every cost of the generated image `g` (differentiable with respect to `g`).
    pub fn costs(&self, g: &Tensor) -> Result<Costs> {
        let names: Vec<&str> = self.layers.iter().map(String::as_str).collect();
        let feats = self.vgg.extract(g, &names)?;
        let content = content_cost(&self.a_c, &feats[0])?;
        let mut style = Tensor::zeros(&[], g.device());
        for ((gram_s, a_g), lambda) in self
            .grams_s
            .iter()
            .zip(&feats[1..])
            .zip(&self.layer_weights)
        {
            style = style.add(&style_layer_cost(gram_s, a_g)?.mul_scalar(*lambda))?;
        }
        let mut total = content
            .mul_scalar(self.alpha)
            .add(&style.mul_scalar(self.beta))?;
        let tv = if self.tv_weight != 0.0 {
            let tv = total_variation(g)?;
            total = total.add(&tv.mul_scalar(self.tv_weight))?;
            tv
        } else {
            Tensor::zeros(&[], g.device())
        };
        Ok(Costs {
            total,
            content,
            style,
            tv,
        })
    }
}

/// `½ Σ (a_C − a_G)²`.
pub fn content_cost(a_c: &Tensor, a_g: &Tensor) -> Result<Tensor> {
    Ok(a_c.sub(a_g)?.square().sum().mul_scalar(0.5))
}

/// `1 / (4 n_c² (n_H n_W)²) Σ (G_S − G_G)²` for one layer, from the style image's Gram
/// matrix `[1, n_c, n_c]` and the generated image's activations `[1, n_c, n_H, n_W]`.
pub fn style_layer_cost(gram_s: &Tensor, a_g: &Tensor) -> Result<Tensor> {
    let (nc, nhw) = (
        a_g.shape()[1] as f32,
        (a_g.shape()[2] * a_g.shape()[3]) as f32,
    );
    Ok(gram_s
        .sub(&a_g.gram()?)?
        .square()
        .sum()
        .mul_scalar(1.0 / (4.0 * nc * nc * nhw * nhw)))
}
