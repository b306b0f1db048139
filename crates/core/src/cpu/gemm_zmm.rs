//! The GEMM for processors with AVX-512: packed blocks and a 12 × 32 register block.
//!
//! `matrixmultiply`'s AVX-512 kernel is 16 × 16: per step of `k` it loads one vector of B
//! and broadcasts 16 values of A for 16 multiply-adds: by the count, a load per
//! multiply-add, more than the load ports feed to an Intel Xeon's two 512-bit
//! multiply-add units. Here a step loads two vectors of B and broadcasts 12 values of A for 24
//! multiply-adds. The packing changed too: A's rows are copied as they are (the kernel
//! broadcasts from 12 rows `KC` apart, fixed displacements), and a transposed B is
//! gathered 16 values at a time instead of one. Single-threaded on that Xeon, beside
//! `matrixmultiply`: 2048³ 117 ms against 128 (PyTorch 112); 4096³ on two threads 664
//! against 864 (PyTorch 538); the im2col shape 64 × 576 × 3136 2.2 ms against 2.5–3.0
//! (PyTorch 1.5). The `gemm` crate was slower than `matrixmultiply` there
//! (`benches/RESULTS-3.md`). The other levels keep `matrixmultiply`.
//!
//! The blocking is the usual one: a `KC`-deep slice of B, packed into 32-column panels
//! that stay in L2, and of A, packed into 12-row panels, each of which stays in L1 while
//! it meets every B panel.

use std::arch::x86_64::*;
use std::cell::RefCell;

/// Rows of A per register block.
pub(super) const MR: usize = 12;
// A step of a packed A panel fits one masked vector (`pack_a`).
const _: () = assert!(MR <= 16);
/// Columns of B per register block: two vectors of 16.
pub(super) const NR: usize = 32;
/// Depth of one packed slice: a 12-row A panel (24 KiB) stays in L1 beside the B rows
/// it meets. Each slice reads and writes all of C once more: at 256, C's traffic (2 MiB
/// a thread for 1024³, four times over) bound the product whenever the shared L3 was
/// busy: on a 2-core Zen 4 VM (2026-12-05, alternating runs) matmul 1024³ took 11.8–13.2
/// ms at 256 against 10.6–11.5 at 512 in such a spell, 10.24–10.29 against 9.86–10.64
/// in a quiet one; 2048³ 89.8–90.4 against 81.6–82.9.
pub(super) const KC: usize = 512;
/// Columns of B packed at a time: 2 MiB at `KC` (panels of 512 columns, 1 MiB, were no
/// faster on 1024³ and slower on 2048³: 84.1–84.5 ms).
const NC: usize = 1024;
/// Rows of A packed at a time.
const MC: usize = 20 * MR;

thread_local! {
    /// Packed A and packed B, kept per thread (the callers run on the rayon pool).
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A slice of `len` values starting on a 64-byte boundary, in a buffer grown as needed.
fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len + 16 {
        buf.resize(len + 16, 0.0);
    }
    let skip = buf.as_ptr().align_offset(64).min(16);
    &mut buf[skip..skip + len]
}

/// `C = A·B + beta·C`, with `A: m×k` at `a` (row stride `rsa`, column stride `csa`),
/// `B: k×n` at `b`, `C: m×n` at `c`; `beta == 0` overwrites C, NaNs included, as
/// `matrixmultiply::sgemm` does.
///
/// # Safety
/// The processor has AVX-512F; every element the strides name lies inside its
/// allocation, and C does not overlap A or B.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: usize,
    csa: usize,
    b: *const f32,
    rsb: usize,
    csb: usize,
    beta: f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
) {
    PACKED.with_borrow_mut(|(pa, pb)| {
        for p0 in (0..k).step_by(KC) {
            let kc = KC.min(k - p0);
            // Later slices add to what the first one wrote.
            let beta = if p0 == 0 { beta } else { 1.0 };
            for j0 in (0..n).step_by(NC) {
                let nc = NC.min(n - j0);
                let bp = aligned(pb, nc.div_ceil(NR) * NR * kc);
                // SAFETY: the caller's contract covers B's elements.
                unsafe { pack_b(bp, b.add(p0 * rsb + j0 * csb), rsb, csb, kc, nc) };
                for i0 in (0..m).step_by(MC) {
                    let mc = MC.min(m - i0);
                    let ap = aligned(pa, mc.div_ceil(MR) * MR * KC);
                    // SAFETY: as for B.
                    let layout =
                        unsafe { pack_a(ap, a.add(i0 * rsa + p0 * csa), rsa, csa, mc, kc) };
                    let kernel = match layout {
                        Panel::Rows => block::<KC, 1>,
                        Panel::Steps => block::<1, MR>,
                    };
                    for (ib, apanel) in ap.chunks_exact(MR * KC).enumerate() {
                        let rows = MR.min(mc - ib * MR);
                        for (jb, bpanel) in bp.chunks_exact(NR * kc).enumerate() {
                            let cols = NR.min(nc - jb * NR);
                            let (i, j) = (i0 + ib * MR, j0 + jb * NR);
                            // SAFETY: the block's rows and columns lie inside C.
                            unsafe {
                                kernel(
                                    apanel,
                                    bpanel,
                                    kc,
                                    rows,
                                    cols,
                                    beta,
                                    c.add(i * rsc + j * csc),
                                    rsc,
                                    csc,
                                )
                            };
                        }
                    }
                }
            }
        }
    });
}

/// Packs `kc` rows × `nc` columns of B into panels of `NR` columns, each row of a panel
/// contiguous; columns past `nc` are zeros.
///
/// # Safety
/// Every element of the `kc × nc` block lies inside B's allocation.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(bp: &mut [f32], b: *const f32, rs: usize, cs: usize, kc: usize, nc: usize) {
    for (jb, panel) in bp.chunks_exact_mut(NR * kc).enumerate() {
        let j0 = jb * NR;
        let cols = NR.min(nc - j0);
        if cs == 1 {
            let mask = lanes(cols);
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                // SAFETY: the masks load only the block's `cols` columns; `row` holds 32.
                unsafe {
                    let src = b.add(p * rs + j0);
                    let lo = _mm512_maskz_loadu_ps(mask.0, src);
                    let hi = _mm512_maskz_loadu_ps(mask.1, src.add(16));
                    _mm512_storeu_ps(row.as_mut_ptr(), lo);
                    _mm512_storeu_ps(row.as_mut_ptr().add(16), hi);
                }
            }
        } else if rs == 1 && cs * 16 <= i32::MAX as usize / 4 {
            // A transposed B: each step of a panel gathers its 32 values, 16 at a time,
            // one from each column.
            let step = _mm512_set1_epi32(cs as i32);
            let idx = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                step,
            );
            let mask = lanes(cols);
            for (p, row) in panel.chunks_exact_mut(NR).enumerate() {
                // SAFETY: the masks gather only the block's `cols` columns at step `p`.
                unsafe {
                    let src = b.add(p + j0 * cs);
                    let zero = _mm512_setzero_ps();
                    let lo = _mm512_mask_i32gather_ps::<4>(zero, mask.0, idx, src);
                    let src = src.add(16 * cs);
                    let hi = _mm512_mask_i32gather_ps::<4>(zero, mask.1, idx, src);
                    _mm512_storeu_ps(row.as_mut_ptr(), lo);
                    _mm512_storeu_ps(row.as_mut_ptr().add(16), hi);
                }
            }
        } else {
            if cols < NR {
                panel.fill(0.0);
            }
            for j in 0..cols {
                for p in 0..kc {
                    // SAFETY: inside the block.
                    panel[p * NR + j] = unsafe { *b.add(p * rs + (j0 + j) * cs) };
                }
            }
        }
    }
}

/// How a packed A panel is laid out: a row's values `KC` apart from the next row's
/// when A's rows are contiguous (each row copied as it is), else a step's `MR` values
/// side by side (each step of a transposed A copied as it is).
#[derive(Clone, Copy)]
enum Panel {
    Rows,
    Steps,
}

/// Packs `mc` rows × `kc` columns of A into panels of `MR` rows, `MR × KC` values each;
/// rows past `mc` are zeros.
///
/// # Safety
/// The processor has AVX-512F; every element of the `mc × kc` block lies inside A's
/// allocation.
#[target_feature(enable = "avx512f")]
unsafe fn pack_a(
    ap: &mut [f32],
    a: *const f32,
    rs: usize,
    cs: usize,
    mc: usize,
    kc: usize,
) -> Panel {
    let layout = if cs == 1 { Panel::Rows } else { Panel::Steps };
    for (ib, panel) in ap.chunks_exact_mut(MR * KC).enumerate() {
        let i0 = ib * MR;
        let rows = MR.min(mc - i0);
        if rows < MR {
            panel.fill(0.0);
        }
        match layout {
            Panel::Rows => {
                for (r, dst) in panel.chunks_exact_mut(KC).take(rows).enumerate() {
                    // SAFETY: row `i0 + r` holds the block's `kc` contiguous values.
                    let src = unsafe { std::slice::from_raw_parts(a.add((i0 + r) * rs), kc) };
                    dst[..kc].copy_from_slice(src);
                }
            }
            Panel::Steps if rs == 1 => {
                // One masked load and store per step: a `memcpy` call per step's 12
                // values took 2.4% of a stride-2 convolution's forward and backward
                // (256@14² onto 512@7², whose input gradient reads the weight
                // transposed).
                let mask: __mmask16 = (1 << rows) - 1;
                for (p, dst) in panel.chunks_exact_mut(MR).take(kc).enumerate() {
                    // SAFETY: step `p` holds the block's `rows` (at most `MR`, 12)
                    // contiguous values, which the mask keeps; the store writes `dst`'s
                    // first `rows`.
                    unsafe {
                        let v = _mm512_maskz_loadu_ps(mask, a.add(i0 + p * cs));
                        _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask, v);
                    }
                }
            }
            Panel::Steps => {
                for r in 0..rows {
                    for p in 0..kc {
                        // SAFETY: inside the block.
                        panel[p * MR + r] = unsafe { *a.add((i0 + r) * rs + p * cs) };
                    }
                }
            }
        }
    }
    layout
}

/// The masks that keep the first `cols` of two vectors' 32 lanes.
fn lanes(cols: usize) -> (__mmask16, __mmask16) {
    let bits = if cols >= 32 {
        u32::MAX
    } else {
        (1u32 << cols) - 1
    };
    (bits as __mmask16, (bits >> 16) as __mmask16)
}

/// One register block: `C[..rows, ..cols] = Ap·Bp + beta·C`, A's value for row `r` and
/// step `p` at `ap[r * AR + p * AP]` (constants, so that each broadcast is one
/// instruction with a fixed displacement).
///
/// # Safety
/// `rows × cols` elements at `c` with strides `rs`, `cs` lie inside C; `ap` holds
/// `MR × KC` values and `bp` `NR × kc`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn block<const AR: usize, const AP: usize>(
    ap: &[f32],
    bp: &[f32],
    kc: usize,
    rows: usize,
    cols: usize,
    beta: f32,
    c: *mut f32,
    rs: usize,
    cs: usize,
) {
    assert!(ap.len() >= MR * KC && kc <= KC && bp.len() >= NR * kc);
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (mut pa, mut pb) = (ap.as_ptr(), bp.as_ptr());
    for _ in 0..kc {
        // SAFETY: `kc` steps of `MR` and `NR` values, asserted above.
        unsafe {
            let b0 = _mm512_load_ps(pb);
            let b1 = _mm512_load_ps(pb.add(16));
            for (r, acc) in acc.iter_mut().enumerate() {
                let v = _mm512_set1_ps(*pa.add(r * AR));
                acc[0] = _mm512_fmadd_ps(v, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(v, b1, acc[1]);
            }
            pa = pa.add(AP);
            pb = pb.add(NR);
        }
    }
    if cs == 1 {
        let mask = lanes(cols);
        let vb = _mm512_set1_ps(beta);
        for (r, acc) in acc.iter().enumerate().take(rows) {
            // SAFETY: the masks touch only the block's `cols` columns of row `r`.
            unsafe {
                let row = c.add(r * rs);
                for (h, (m, v)) in [mask.0, mask.1].into_iter().zip(acc).enumerate() {
                    let at = row.add(16 * h);
                    let out = if beta == 0.0 {
                        *v
                    } else {
                        _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, at), *v)
                    };
                    _mm512_mask_storeu_ps(at, m, out);
                }
            }
        }
    } else {
        let mut tile = [[0.0f32; NR]; MR];
        for (t, acc) in tile.iter_mut().zip(&acc) {
            // SAFETY: 32 values.
            unsafe {
                _mm512_storeu_ps(t.as_mut_ptr(), acc[0]);
                _mm512_storeu_ps(t.as_mut_ptr().add(16), acc[1]);
            }
        }
        for (r, t) in tile.iter().enumerate().take(rows) {
            for (j, v) in t.iter().enumerate().take(cols) {
                // SAFETY: inside the block; C is read only where `beta` is not 0 (with 0,
                // it may not have been written yet).
                unsafe {
                    let at = c.add(r * rs + j * cs);
                    *at = if beta == 0.0 { *v } else { v + beta * *at };
                }
            }
        }
    }
}
