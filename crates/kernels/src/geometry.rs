//! The sizes the convolution, pooling and resize kernels can index. They compute window
//! positions in 32-bit signed integers (with a sentinel at −2³⁰ for taps outside the
//! image), take counts as `u32`, and run a stride's phases as slices of one dispatch. A
//! call past these bounds is an error raised before anything is recorded, where a
//! truncated parameter would have computed something else.

use fovea_core::backend::{Conv2dParams, Pool2dParams, Resize2dParams};
use fovea_core::{Error, Result};

use crate::context::Ctx;

/// Every spatial size, kernel, stride, padding and dilation, and each padded input and
/// dilated kernel, stays below this.
pub(crate) const MAX_GEOMETRY: usize = 1 << 30;

fn too_large(what: &str, values: impl std::fmt::Debug, bound: impl std::fmt::Display) -> Error {
    Error::Backend(format!(
        "{what} {values:?} is past what the GPU kernels index ({bound}); use the CPU device"
    ))
}

/// Fails unless each value is below [`MAX_GEOMETRY`].
fn spatial(what: &str, values: &[usize]) -> Result<()> {
    if values.iter().any(|&v| v >= MAX_GEOMETRY) {
        return Err(too_large(what, values, "each below 2^30"));
    }
    Ok(())
}

/// Padded extents and dilated spans of a window along both axes, checked by [`spatial`].
fn window(
    input: [usize; 2],
    kernel: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Result<()> {
    spatial("input size", &input)?;
    spatial("kernel", &kernel)?;
    spatial("padding", &padding)?;
    spatial("dilation", &dilation)?;
    // Each factor is below 2^30, so these cannot overflow a 64-bit usize.
    let padded = [input[0] + 2 * padding[0], input[1] + 2 * padding[1]];
    let span = [0, 1].map(|a| dilation[a] * kernel[a].saturating_sub(1) + 1);
    spatial("padded input", &padded)?;
    spatial("dilated kernel span", &span)
}

/// A convolution's shape for any of its kernels. `phased`: the input gradient at a stride
/// above 1, which runs `groups · sh · sw` phases as slices of one dispatch.
pub(crate) fn conv(ctx: &Ctx, p: &Conv2dParams, phased: bool) -> Result<()> {
    let counts = [p.n, p.c_in, p.c_out, p.groups];
    if counts.iter().any(|&v| v > u32::MAX as usize) {
        return Err(too_large(
            "batch and channel counts",
            counts,
            "each at most 2^32 − 1",
        ));
    }
    spatial("output size", &[p.oh, p.ow])?;
    spatial("stride", &p.stride)?;
    window([p.h, p.w], p.kernel, p.padding, p.dilation)?;
    let max = ctx.limits.max_compute_workgroups_per_dimension as usize;
    let phases = p.stride[0] * p.stride[1] * p.groups;
    if phased && p.stride != [1, 1] && phases > max {
        return Err(too_large(
            "stride × stride × groups",
            [p.stride[0], p.stride[1], p.groups],
            format!("a product of at most {max}, the workgroups per dimension this GPU runs"),
        ));
    }
    Ok(())
}

/// A pooling window's shape.
pub(crate) fn pool(p: &Pool2dParams) -> Result<()> {
    if p.planes > u32::MAX as usize {
        return Err(too_large("planes", [p.planes], "at most 2^32 − 1"));
    }
    spatial("output size", &[p.oh, p.ow])?;
    spatial("stride", &p.stride)?;
    // The larger side bounds the padded extent where the two differ (SAME padding).
    let padding = [0, 1].map(|a| p.padding[a].max(p.padding_end[a]));
    window([p.h, p.w], p.kernel, padding, p.dilation)
}

/// A resize's shape: cell `i` maps to `i · len / out`, a product taken in `u32`.
pub(crate) fn resize(p: &Resize2dParams) -> Result<()> {
    if p.planes > u32::MAX as usize {
        return Err(too_large("planes", [p.planes], "at most 2^32 − 1"));
    }
    let products = [p.h as u128 * p.oh as u128, p.w as u128 * p.ow as u128];
    if products.iter().any(|&v| v > u32::MAX as u128) {
        return Err(too_large(
            "input and output sizes",
            [p.h, p.w, p.oh, p.ow],
            "products h·oh and w·ow at most 2^32 − 1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_and_resizes_past_32_bit_indexing_are_refused() {
        let pool = Pool2dParams {
            planes: 1,
            h: 4,
            w: 4,
            oh: 4,
            ow: 4,
            kernel: [(1 << 30) + 1, 1],
            stride: [1, 1],
            padding: [1 << 29, 0],
            padding_end: [1 << 29, 0],
            dilation: [1, 1],
            count_include_pad: false,
        };
        let msg = super::pool(&pool).unwrap_err().to_string();
        assert!(msg.contains("kernel") && msg.contains("CPU"), "{msg}");
        assert!(super::pool(&Pool2dParams {
            kernel: [3, 3],
            padding: [1, 1],
            padding_end: [1, 1],
            ..pool
        })
        .is_ok());
        let dilated = Pool2dParams {
            kernel: [3, 3],
            padding: [1, 1],
            padding_end: [1, 1],
            dilation: [1 << 29, 1],
            ..pool
        };
        assert!(super::pool(&dilated)
            .unwrap_err()
            .to_string()
            .contains("dilated kernel span"));
        let resize = Resize2dParams {
            planes: 1,
            h: 70_000,
            w: 1,
            oh: 70_000,
            ow: 1,
        };
        assert!(super::resize(&resize).is_err());
        assert!(super::resize(&Resize2dParams {
            oh: 60_000,
            ..resize
        })
        .is_ok());
    }
}
