//! A thin, bounds-checked layer over the GEMMs (`gemm_zmm` with AVX-512, else
//! `matrixmultiply::sgemm`) that spreads one large product over the rayon pool when the
//! caller is not already running in parallel.

use std::mem::MaybeUninit;

use super::threads::SendPtr;

/// A matrix view: row stride and column stride in elements.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub rs: usize,
    pub cs: usize,
}

impl Layout {
    /// Row-major with `cols` columns.
    pub fn rows(cols: usize) -> Layout {
        Layout { rs: cols, cs: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn trans(cols: usize) -> Layout {
        Layout { rs: 1, cs: cols }
    }
    fn span(&self, rows: usize, cols: usize) -> usize {
        (rows - 1) * self.rs + (cols - 1) * self.cs + 1
    }
}

/// `C = A·B + beta·C` with `A: m×k`, `B: k×n`, `C: m×n`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    la: Layout,
    b: &[f32],
    lb: Layout,
    beta: f32,
    c: &mut [f32],
    lc: Layout,
) {
    assert!(
        m == 0 || n == 0 || c.len() >= lc.span(m, n),
        "gemm: C too short"
    );
    // SAFETY: C's span was checked above and is initialized.
    unsafe { product(m, k, n, a, la, b, lb, beta, c.as_mut_ptr(), lc) }
}

/// `C = A·B` into a C not yet written: every element of its `m × n` is written (both
/// GEMMs overwrite C without reading it where `beta` is 0), so a caller's fresh output
/// needs no clearing first (matmul 1024³ cleared its 4 MiB on the calling thread while
/// the other waited).
#[allow(clippy::too_many_arguments)]
pub fn gemm_into(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    la: Layout,
    b: &[f32],
    lb: Layout,
    c: &mut [MaybeUninit<f32>],
    lc: Layout,
) {
    assert!(
        m == 0 || n == 0 || c.len() >= lc.span(m, n),
        "gemm: C too short"
    );
    // SAFETY: C's span was checked above; with `beta` 0 it is written, never read.
    unsafe { product(m, k, n, a, la, b, lb, 0.0, c.as_mut_ptr().cast(), lc) }
}

/// [`gemm`]'s product, split over the pool where it is large.
///
/// # Safety
/// `c` points at `lc.span(m, n)` values, initialized unless `beta` is 0.
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    la: Layout,
    b: &[f32],
    lb: Layout,
    beta: f32,
    c: *mut f32,
    lc: Layout,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                // SAFETY: inside C's span (the caller's contract); read only where
                // `beta` is not 0.
                unsafe {
                    let v = c.add(i * lc.rs + j * lc.cs);
                    *v = if beta == 0.0 { 0.0 } else { *v * beta };
                }
            }
        }
        return;
    }
    assert!(
        a.len() >= la.span(m, k) && b.len() >= lb.span(k, n),
        "gemm: operand too short: {m}x{k}x{n} a {} {la:?} b {} {lb:?}",
        a.len(),
        b.len()
    );
    let threads = rayon::current_num_threads();
    let nested = super::threads::nested();
    let cp = SendPtr(c);
    let run = |i0: usize, i1: usize, j0: usize, j1: usize| {
        // SAFETY: bounds were checked above for the whole matrices; the sub-blocks lie
        // inside them and blocks given to different threads do not overlap in C.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if super::cpu_level() == super::Level::Avx512 {
                return super::gemm_zmm::sgemm(
                    i1 - i0,
                    k,
                    j1 - j0,
                    a.as_ptr().add(i0 * la.rs),
                    la.rs,
                    la.cs,
                    b.as_ptr().add(j0 * lb.cs),
                    lb.rs,
                    lb.cs,
                    beta,
                    cp.get().add(i0 * lc.rs + j0 * lc.cs),
                    lc.rs,
                    lc.cs,
                );
            }
            matrixmultiply::sgemm(
                i1 - i0,
                k,
                j1 - j0,
                1.0,
                a.as_ptr().add(i0 * la.rs),
                la.rs as isize,
                la.cs as isize,
                b.as_ptr().add(j0 * lb.cs),
                lb.rs as isize,
                lb.cs as isize,
                beta,
                cp.get().add(i0 * lc.rs + j0 * lc.cs),
                lc.rs as isize,
                lc.cs as isize,
            )
        }
    };
    if nested || threads == 1 || m * n * k < (1 << 21) {
        run(0, m, 0, n);
        return;
    }
    let split_cols = n >= m;
    let len = if split_cols { n } else { m };
    let step = len.div_ceil(threads).next_multiple_of(32).min(len);
    rayon::scope(|s| {
        let mut start = 0;
        while start < len {
            let end = (start + step).min(len);
            let run = &run;
            s.spawn(move |_| {
                if split_cols {
                    run(0, m, start, end)
                } else {
                    run(start, end, 0, n)
                }
            });
            start = end;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn split_product_matches_naive() {
        for &(m, k, n) in &[(3, 5, 7), (130, 129, 257), (257, 64, 33), (1, 1, 1)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
            let mut c = vec![1.0; m * n];
            gemm(
                m,
                k,
                n,
                &a,
                Layout::rows(k),
                &b,
                Layout::rows(n),
                0.0,
                &mut c,
                Layout::rows(n),
            );
            assert_eq!(c, naive(m, k, n, &a, &b), "{m}x{k}x{n}");
        }
    }

    /// Every operand row-major or transposed, `beta` 0 (over NaNs), 1 and 0.5, and sizes
    /// that cross the packed blocks' edges (12 × 32 blocks, 256-deep slices, 1024-column
    /// and 240-row packs) by one either way.
    #[test]
    fn layouts_and_beta_match_naive() {
        let sizes = [(13, 257, 33), (241, 31, 1025), (11, 513, 31), (25, 1, 65)];
        for &(m, k, n) in &sizes {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
            let want = naive(m, k, n, &a, &b);
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            for (ta, tb, tc) in [
                (false, false, false),
                (true, true, true),
                (true, false, true),
            ] {
                for beta in [0.0, 1.0, 0.5] {
                    let (ao, la) = if ta {
                        (&at, Layout::trans(m))
                    } else {
                        (&a, Layout::rows(k))
                    };
                    let (bo, lb) = if tb {
                        (&bt, Layout::trans(k))
                    } else {
                        (&b, Layout::rows(n))
                    };
                    let lc = if tc {
                        Layout::trans(m)
                    } else {
                        Layout::rows(n)
                    };
                    let before = |i: usize, j: usize| ((i + 3 * j) % 5) as f32;
                    let mut c = vec![0.0; m * n];
                    for i in 0..m {
                        for j in 0..n {
                            c[i * lc.rs + j * lc.cs] =
                                if beta == 0.0 { f32::NAN } else { before(i, j) };
                        }
                    }
                    gemm(m, k, n, ao, la, bo, lb, beta, &mut c, lc);
                    for i in 0..m {
                        for j in 0..n {
                            let mut w = want[i * n + j];
                            if beta != 0.0 {
                                w += beta * before(i, j);
                            }
                            let got = c[i * lc.rs + j * lc.cs];
                            assert_eq!(got, w, "{m}x{k}x{n} {ta} {tb} {tc} beta {beta} at {i},{j}");
                        }
                    }
                }
            }
        }
    }

    /// A C not yet written (here NaNs, which a read would carry into the result) comes out
    /// as the product, row-major or transposed, past the packed blocks' edges, and as
    /// zeros where `k` is 0.
    #[test]
    fn products_into_unwritten_c_match_naive() {
        for &(m, k, n) in &[(13, 257, 33), (241, 31, 1025), (5, 0, 7), (300, 40, 300)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
            let want = naive(m, k, n, &a, &b);
            for lc in [Layout::rows(n), Layout::trans(m)] {
                let mut c = vec![MaybeUninit::new(f32::NAN); m * n];
                gemm_into(
                    m,
                    k,
                    n,
                    &a,
                    Layout::rows(k),
                    &b,
                    Layout::rows(n),
                    &mut c,
                    lc,
                );
                for i in 0..m {
                    for j in 0..n {
                        // SAFETY: every value was initialized (to NaN, then the product).
                        let got = unsafe { c[i * lc.rs + j * lc.cs].assume_init() };
                        assert_eq!(got, want[i * n + j], "{m}x{k}x{n} {lc:?} at {i},{j}");
                    }
                }
            }
        }
    }

    /// Strides that are neither 1 nor a row's length (every other row and column of a
    /// larger matrix): the packings' general-stride paths.
    #[test]
    fn gapped_operands_match_naive() {
        let (m, k, n) = (14, 37, 35);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let mut ag = vec![f32::NAN; 4 * m * k];
        for (i, v) in a.iter().enumerate() {
            ag[(i / k) * 4 * k + (i % k) * 2] = *v;
        }
        let mut bg = vec![f32::NAN; 4 * k * n];
        for (i, v) in b.iter().enumerate() {
            bg[(i / n) * 4 * n + (i % n) * 2] = *v;
        }
        let (la, lb) = (Layout { rs: 4 * k, cs: 2 }, Layout { rs: 4 * n, cs: 2 });
        let mut c = vec![1.0; m * n];
        gemm(m, k, n, &ag, la, &bg, lb, 0.0, &mut c, Layout::rows(n));
        assert_eq!(c, naive(m, k, n, &a, &b));
    }
}
