//! AVX2 + FMA few-token kernels for float weights (`f32`, `f16`, `bf16`): the stored rows are
//! streamed as they are (no packing, no conversion pass), 3 rows × 4 tokens per pass with 12
//! f32 accumulators, so each weight vector loaded (and converted) serves 4 tokens and each
//! token vector 3 rows.

use std::arch::x86_64::*;

/// Weight rows per pass.
const MR: usize = 3;
/// Tokens per pass.
const NT: usize = 4;

#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// 8 f32 from 32 little-endian f32 bytes at `p`.
///
/// # Safety
/// `p` must be valid for reading 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f32(p: *const u8) -> __m256 {
    // SAFETY: the caller's contract; the load is unaligned.
    unsafe { _mm256_loadu_ps(p.cast()) }
}

/// 8 f32 from 16 bytes of f16 at `p`.
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(p: *const u8) -> __m256 {
    // SAFETY: the caller's contract; the load is unaligned.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
}

/// 8 f32 from 16 bytes of bf16 at `p`.
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_bf16(p: *const u8) -> __m256 {
    // SAFETY: the caller's contract; the load is unaligned.
    let h = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
}

fn val_f32(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

fn val_f16(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32()
}

fn val_bf16(b: &[u8], i: usize) -> f32 {
    half::bf16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32()
}

/// Defines the table entry `$name` and its `R × T` pass `$inner` for one stored float type of
/// `$size` bytes, loaded 8 at a time by `$load` and one at a time by `$val`.
macro_rules! float_rows {
    ($name:ident, $inner:ident, $size:expr, $load:ident, $val:ident) => {
        /// `out[r][t] = Σ_k w[r][k] · x[t][k]`; `w` is `[n_rows, cols]` stored, `x`
        /// `[n, cols]`, `out` `[n_rows, n]`.
        pub(super) fn $name(w: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
            assert!(cols > 0, concat!(stringify!($name), ": no columns"));
            let rb = $size * cols;
            let rows = w.len() / rb;
            let n = x.len() / cols;
            assert_eq!(
                w.len(),
                rows * rb,
                concat!(stringify!($name), ": partial row")
            );
            assert_eq!(
                x.len(),
                n * cols,
                concat!(stringify!($name), ": partial token")
            );
            assert_eq!(
                out.len(),
                rows * n,
                concat!(stringify!($name), ": output length")
            );
            for r0 in (0..rows).step_by(MR) {
                let k = (rows - r0).min(MR);
                let wr = |i: usize| &w[(r0 + i.min(k - 1)) * rb..][..rb];
                for t0 in (0..n).step_by(NT) {
                    let m = (n - t0).min(NT);
                    let xt = |j: usize| &x[(t0 + j.min(m - 1)) * cols..][..cols];
                    let mut res = [[0f32; NT]; MR];
                    // SAFETY: reachable only through the `AVX2` table, handed out after
                    // detecting avx2, fma and f16c.
                    unsafe {
                        match (k, m) {
                            (3, 4) => put(
                                &mut res,
                                $inner::<3, 4, 1>(
                                    [wr(0), wr(1), wr(2)],
                                    [xt(0), xt(1), xt(2), xt(3)],
                                    cols,
                                ),
                            ),
                            (3, 3) => put(
                                &mut res,
                                $inner::<3, 3, 1>(
                                    [wr(0), wr(1), wr(2)],
                                    [xt(0), xt(1), xt(2)],
                                    cols,
                                ),
                            ),
                            (3, 2) => put(
                                &mut res,
                                $inner::<3, 2, 2>([wr(0), wr(1), wr(2)], [xt(0), xt(1)], cols),
                            ),
                            (3, _) => put(
                                &mut res,
                                $inner::<3, 1, 4>([wr(0), wr(1), wr(2)], [xt(0)], cols),
                            ),
                            (2, 4) => put(
                                &mut res,
                                $inner::<2, 4, 1>(
                                    [wr(0), wr(1)],
                                    [xt(0), xt(1), xt(2), xt(3)],
                                    cols,
                                ),
                            ),
                            (2, 3) => put(
                                &mut res,
                                $inner::<2, 3, 2>([wr(0), wr(1)], [xt(0), xt(1), xt(2)], cols),
                            ),
                            (2, 2) => put(
                                &mut res,
                                $inner::<2, 2, 2>([wr(0), wr(1)], [xt(0), xt(1)], cols),
                            ),
                            (2, _) => {
                                put(&mut res, $inner::<2, 1, 4>([wr(0), wr(1)], [xt(0)], cols))
                            }
                            (_, 4) => put(
                                &mut res,
                                $inner::<1, 4, 2>([wr(0)], [xt(0), xt(1), xt(2), xt(3)], cols),
                            ),
                            (_, 3) => put(
                                &mut res,
                                $inner::<1, 3, 4>([wr(0)], [xt(0), xt(1), xt(2)], cols),
                            ),
                            (_, 2) => {
                                put(&mut res, $inner::<1, 2, 4>([wr(0)], [xt(0), xt(1)], cols))
                            }
                            (_, _) => put(&mut res, $inner::<1, 1, 4>([wr(0)], [xt(0)], cols)),
                        }
                    }
                    for (i, ri) in res.iter().enumerate().take(k) {
                        out[(r0 + i) * n + t0..][..m].copy_from_slice(&ri[..m]);
                    }
                }
            }
        }

        /// `R` rows × `T` tokens, with `U` accumulator sets over interleaved column blocks
        /// (so small passes still keep enough FMA chains in flight). The loop runs on raw
        /// pointers: with slices, the bounds checks and slice bookkeeping of 7 streams took
        /// the general registers, and the accumulators spilled (20 GOP/s per core at 32
        /// tokens, a third of the f32 GEMM's).
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $inner<const R: usize, const T: usize, const U: usize>(
            w: [&[u8]; R],
            x: [&[f32]; T],
            cols: usize,
        ) -> [[f32; T]; R] {
            assert!(w.iter().all(|r| r.len() >= $size * cols));
            assert!(x.iter().all(|t| t.len() >= cols));
            let wp: [*const u8; R] = std::array::from_fn(|r| w[r].as_ptr());
            let xp: [*const f32; T] = std::array::from_fn(|t| x[t].as_ptr());
            let mut acc = [[[_mm256_setzero_ps(); T]; R]; U];
            let step = 8 * U;
            let cu = cols / step * step;
            let mut k0 = 0;
            while k0 < cu {
                for u in 0..U {
                    let k = k0 + 8 * u;
                    let wv: [__m256; R] = std::array::from_fn(|r| {
                        // SAFETY: k + 8 <= cu <= cols, and every row holds `cols` values of
                        // `$size` bytes, every token `cols` f32 (asserted above).
                        unsafe { $load(wp[r].add($size * k)) }
                    });
                    for t in 0..T {
                        // SAFETY: as above; the load is unaligned.
                        let xv = unsafe { _mm256_loadu_ps(xp[t].add(k)) };
                        for r in 0..R {
                            acc[u][r][t] = _mm256_fmadd_ps(wv[r], xv, acc[u][r][t]);
                        }
                    }
                }
                k0 += step;
            }
            // Plain loops, not `from_fn` closures: a closure borrowing `acc` kept it in
            // memory, and every FMA in the loop above was followed by a store of its
            // accumulator (12 stores per 12 FMAs: store-bound at half the FMA rate).
            let mut res = [[0f32; T]; R];
            for r in 0..R {
                for t in 0..T {
                    let mut v = acc[0][r][t];
                    for acc_u in &acc[1..] {
                        v = _mm256_add_ps(v, acc_u[r][t]);
                    }
                    let tail: f32 = (cu..cols).map(|k| $val(w[r], k) * x[t][k]).sum();
                    res[r][t] = hsum(v) + tail;
                }
            }
            res
        }
    };
}

/// Copies an `R × T` result into the top-left of `res`.
fn put<const R: usize, const T: usize>(res: &mut [[f32; NT]; MR], v: [[f32; T]; R]) {
    for (row, vr) in res.iter_mut().zip(v) {
        row[..T].copy_from_slice(&vr);
    }
}

float_rows!(rows_f32, f32_pass, 4, load_f32, val_f32);
float_rows!(rows_f16, f16_pass, 2, load_f16, val_f16);
float_rows!(rows_bf16, bf16_pass, 2, load_bf16, val_bf16);
