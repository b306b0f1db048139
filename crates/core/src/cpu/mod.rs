//! The CPU reference backend: clear, correct and reasonably fast (GEMM from
//! `matrixmultiply`, rayon across batch, channels and rows).

mod adaptive_pool2d;
mod binary;
mod conv2d;
mod elementwise;
mod gemm;
mod layout;
mod matmul;
mod pool2d;
mod reduce;
mod upsample2d;

use crate::backend::*;
use crate::Result;

/// The CPU backend. Its storage is a `Vec<f32>`.
#[derive(Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    /// A CPU backend (stateless; `Device::cpu()` shares one).
    pub fn new() -> Self {
        CpuBackend
    }
}

/// The host slice behind a CPU storage. Ops check devices before calling a backend, so
/// a foreign storage here is a bug in fovea, not in user code.
pub(crate) fn data(s: &Storage) -> &[f32] {
    s.downcast::<Vec<f32>>()
        .expect("internal error: a non-CPU storage reached the CPU backend")
}

fn store(v: Vec<f32>) -> Result<Storage> {
    Ok(Storage::new(v.len(), v))
}

/// Slices at least this long are split across threads.
pub(crate) const PAR_CHUNK: usize = 1 << 14;

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }
    fn upload(&self, d: &[f32]) -> Result<Storage> {
        store(d.to_vec())
    }
    fn download(&self, x: &Storage) -> Result<Vec<f32>> {
        Ok(data(x).to_vec())
    }
    fn fill(&self, len: usize, value: f32) -> Result<Storage> {
        store(vec![value; len])
    }
    fn unary(&self, x: &Storage, op: UnaryOp) -> Result<Storage> {
        store(elementwise::unary(data(x), op))
    }
    fn binary(&self, a: &Storage, b: &Storage, p: &BinaryParams, op: BinaryOp) -> Result<Storage> {
        store(binary::binary(data(a), data(b), p, op))
    }
    fn reduce(&self, x: &Storage, p: &ReduceParams, op: ReduceOp) -> Result<Storage> {
        store(reduce::reduce(data(x), p, op))
    }
    fn strided_copy(&self, x: &Storage, view: &StridedView) -> Result<Storage> {
        store(layout::strided_copy(data(x), view))
    }
    fn pad(&self, x: &Storage, p: &PadParams) -> Result<Storage> {
        store(layout::pad(data(x), p))
    }
    fn cat(&self, parts: &[&Storage], p: &CatParams) -> Result<Storage> {
        let parts: Vec<&[f32]> = parts.iter().map(|s| data(s)).collect();
        store(layout::cat(&parts, p))
    }
    fn matmul(&self, a: &Storage, b: &Storage, p: &MatmulParams) -> Result<Storage> {
        store(matmul::matmul(data(a), data(b), p))
    }
    fn gram(&self, f: &Storage, n: usize, c: usize, hw: usize) -> Result<Storage> {
        // F·Fᵀ through the GEMM with B read transposed; symmetry is not worth exploiting
        // on the CPU, where the GEMM is already near peak.
        let p = MatmulParams {
            batch: n,
            m: c,
            k: hw,
            n: c,
            trans_b: true,
            ..Default::default()
        };
        store(matmul::matmul(data(f), data(f), &p))
    }
    fn conv2d(&self, x: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
        store(conv2d::forward(data(x), data(w), p))
    }
    fn conv2d_grad_input(&self, gy: &Storage, w: &Storage, p: &Conv2dParams) -> Result<Storage> {
        store(conv2d::grad_input(data(gy), data(w), p))
    }
    fn conv2d_grad_weight(&self, x: &Storage, gy: &Storage, p: &Conv2dParams) -> Result<Storage> {
        store(conv2d::grad_weight(data(x), data(gy), p))
    }
    fn max_pool2d(&self, x: &Storage, p: &Pool2dParams) -> Result<Storage> {
        store(pool2d::max_forward(data(x), p))
    }
    fn max_pool2d_backward(&self, x: &Storage, gy: &Storage, p: &Pool2dParams) -> Result<Storage> {
        store(pool2d::max_backward(data(x), data(gy), p))
    }
    fn avg_pool2d(&self, x: &Storage, p: &Pool2dParams) -> Result<Storage> {
        store(pool2d::avg_forward(data(x), p))
    }
    fn avg_pool2d_backward(&self, gy: &Storage, p: &Pool2dParams) -> Result<Storage> {
        store(pool2d::avg_backward(data(gy), p))
    }
    fn adaptive_avg_pool2d(&self, x: &Storage, p: &Resize2dParams) -> Result<Storage> {
        store(adaptive_pool2d::forward(data(x), p))
    }
    fn adaptive_avg_pool2d_backward(&self, gy: &Storage, p: &Resize2dParams) -> Result<Storage> {
        store(adaptive_pool2d::backward(data(gy), p))
    }
    fn upsample_nearest2d(&self, x: &Storage, p: &Resize2dParams) -> Result<Storage> {
        store(upsample2d::forward(data(x), p))
    }
    fn upsample_nearest2d_backward(&self, gy: &Storage, p: &Resize2dParams) -> Result<Storage> {
        store(upsample2d::backward(data(gy), p))
    }
}
