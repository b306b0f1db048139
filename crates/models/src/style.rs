//! Neural style transfer pieces (Gatys et al.), with the costs exactly as the course notes
//! define them:
//! - content: `J_content = ½ Σ (a(C) − a(G))²` on one layer;
//! - style matrix: `G_kk' = Σ_ij a_ijk a_ijk'` (unnormalised, [`Tensor::gram`]);
//! - style, per layer: `J_style = 1 / (4 n_c² (n_H n_W)²) Σ (G(S) − G(G))²`;
//! - total: `J = α J_content + β Σ_l λ_l J_style(l)`.

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

/// The inverse of [`preprocess_bgr`] for one image: interleaved RGB bytes (clamped).
pub fn deprocess_bgr(x: &Tensor) -> Result<(usize, usize, Vec<u8>)> {
    if x.rank() != 4 || x.shape()[0] != 1 || x.shape()[1] != 3 {
        return Err(Error::op(
            "deprocess_bgr",
            format!("needs [1, 3, H, W], got {:?}", x.shape()),
        ));
    }
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let v = x.to_vec()?;
    let mut rgb = vec![0u8; h * w * 3];
    for (i, px) in rgb.chunks_mut(3).enumerate() {
        for (c, (bgr_c, mean)) in [(2, BGR_MEAN[2]), (1, BGR_MEAN[1]), (0, BGR_MEAN[0])]
            .into_iter()
            .enumerate()
        {
            px[c] = (v[bgr_c * h * w + i] + mean).round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok((h, w, rgb))
}

/// The VGG16 trunk with the bundled HED weights (or any torchvision VGG16 `features.*`
/// safetensors), frozen: style transfer trains the image, not the network.
pub fn pretrained_vgg16(weights: &Path, device: &Device) -> Result<Vgg> {
    let vgg = Vgg::features_only(VggConfig::Vgg16, false, 0, device)?;
    checkpoint::load_module_subset(&vgg, weights)?;
    vgg.freeze();
    vgg.eval();
    Ok(vgg)
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
