//! Every fast kernel against its scalar reference, and `matmul` against a naive
//! dequantize-then-f32 reference, over the lengths, token counts and odd shapes that break
//! blocking code; plus zeros, huge values and NaN.

use dlm_formats::QuantType;
use dlm_formats::quant::{QK8_0, dequantize, quantize};
use dlm_simd::{
    ActBlock, ActBlock8, GEMM_TOKENS, Kernels, MatmulPath, WeightRef, gemm_min_tokens, matmul,
    matmul_path, matmul_via, matmul_with, quantize_act, quantize_act8,
};

mod common;
use common::{LENGTHS, Rng, fast_tables};

const QUANT: [QuantType; 4] = [
    QuantType::Q8_0,
    QuantType::Q4_0,
    QuantType::Q4K,
    QuantType::Q6K,
];

fn kernel(k: &Kernels, q: QuantType) -> dlm_simd::RowKernel {
    match q {
        QuantType::Q8_0 => k.q8_0,
        QuantType::Q4_0 => k.q4_0,
        QuantType::Q4K => k.q4_k,
        QuantType::Q6K => k.q6_k,
        _ => unreachable!("float types have no row kernel"),
    }
}

fn quantized(q: QuantType, x: &[f32]) -> Vec<u8> {
    let mut b = vec![0u8; q.row_bytes(x.len() as u64).unwrap() as usize];
    quantize(q, x, &mut b).unwrap();
    b
}

fn deq_acts(a: &[ActBlock]) -> Vec<f32> {
    a.iter()
        .flat_map(|b| b.qs.map(|q| b.d * q as f32))
        .collect()
}

/// Σ|w_i · a_i|: the scale of the rounding error of any summation order.
fn sum_abs(w: &[f32], a: &[f32]) -> f32 {
    w.iter().zip(a).map(|(x, y)| (x * y).abs()).sum()
}

fn close(got: f32, want: f32, scale: f32, len: usize) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    (got - want).abs() <= 2.0 * f32::EPSILON * (len as f32 + 8.0) * scale + 1e-30
}

/// Run one row kernel of `k` and of the scalar table on the same data for 1..=5 tokens.
fn check_row(k: &Kernels, q: QuantType, w: &[f32], acts_f: &[f32], what: &str) {
    let len = w.len();
    let wq = quantized(q, w);
    let mut wd = vec![0f32; len];
    dequantize(q, &wq, &mut wd).unwrap();
    let n_tok = acts_f.len() / len.max(1);
    let mut acts = vec![ActBlock::ZERO; n_tok * len / QK8_0];
    quantize_act(acts_f, &mut acts);
    let ad = deq_acts(&acts);
    let mut fast = vec![0f32; n_tok];
    let mut slow = vec![0f32; n_tok];
    kernel(k, q)(&wq, &acts, &mut fast);
    kernel(Kernels::scalar(), q)(&wq, &acts, &mut slow);
    for t in 0..n_tok {
        let s = sum_abs(&wd, &ad[t * len..(t + 1) * len]);
        assert!(
            close(fast[t], slow[t], s, len),
            "{} {q} {what} len {len} token {t}: {} vs scalar {} (Σ|terms| {s})",
            k.name,
            fast[t],
            slow[t]
        );
    }
}

#[test]
fn fast_row_kernels_match_the_scalar_reference() {
    let mut rng = Rng(0x5eed);
    for k in fast_tables() {
        for q in QUANT {
            // 288, 480: whole groups of 8 blocks plus a remainder; 2304: 9 super-blocks
            let extra = [288, 480, 2304];
            for len in LENGTHS
                .iter()
                .chain(&extra)
                .copied()
                .filter(|l| l % q.block_len() == 0)
            {
                for n_tok in 1..=5 {
                    let w = rng.vec(len, 1.0);
                    let a = rng.vec(len * n_tok, 3.0);
                    check_row(k, q, &w, &a, "random");
                }
                let w = rng.vec(len, 1.0);
                check_row(
                    k,
                    q,
                    &vec![0.0; len],
                    &rng.vec(len * 3, 1.0),
                    "zero weights",
                );
                check_row(k, q, &w, &vec![0.0; len * 3], "zero activations");
                // huge: activations near f32's top, weights at the f16-scale limit of each type
                let big = rng.vec(len * 2, 1e30);
                check_row(k, q, &rng.vec(len, 4e5), &big, "huge");
                if len > 0 {
                    let mut a = rng.vec(len * 2, 1.0);
                    a[len + len / 2] = f32::NAN;
                    a[len / 3] = f32::INFINITY;
                    check_row(k, q, &w, &a, "nan");
                }
            }
        }
    }
}

#[test]
fn nan_activations_give_nan_outputs() {
    for k in [Kernels::scalar()].into_iter().chain(fast_tables()) {
        for q in QUANT {
            let w = vec![0.5f32; 256];
            let mut a = vec![1f32; 512];
            a[300] = f32::NAN;
            let wq = quantized(q, &w);
            let mut acts = vec![ActBlock::ZERO; 16];
            quantize_act(&a, &mut acts);
            let mut out = [0f32; 2];
            kernel(k, q)(&wq, &acts, &mut out);
            assert!(
                out[0].is_finite() && out[1].is_nan(),
                "{} {q}: {out:?}",
                k.name
            );
        }
    }
}

/// y = x · Wᵀ the slow way: dequantized weights, activations as the kernels see them.
fn naive(
    q: QuantType,
    wq: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut wd = vec![0f32; rows * cols];
    dequantize(q, wq, &mut wd).unwrap();
    let xa = if q.is_quantized() && cols > 0 {
        let mut acts = vec![ActBlock::ZERO; n * cols / QK8_0];
        quantize_act(x, &mut acts);
        deq_acts(&acts)
    } else {
        x.to_vec()
    };
    let mut y = vec![0f32; n * rows];
    let mut s = vec![0f32; n * rows];
    for t in 0..n {
        for r in 0..rows {
            let (wr, xr) = (&wd[r * cols..(r + 1) * cols], &xa[t * cols..(t + 1) * cols]);
            y[t * rows + r] = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
            s[t * rows + r] = sum_abs(wr, xr);
        }
    }
    (y, s)
}

/// `matmul_with` of the scalar and the best table against `naive` for one shape.
fn check_matmul(rng: &mut Rng, q: QuantType, rows: usize, cols: usize, n: usize) {
    check_matmul_via(rng, q, rows, cols, n, None)
}

/// [`check_matmul`] on a given path (`matmul_via`), or on `matmul_with`'s own with `None`.
fn check_matmul_via(
    rng: &mut Rng,
    q: QuantType,
    rows: usize,
    cols: usize,
    n: usize,
    path: Option<MatmulPath>,
) {
    let w = rng.vec(rows * cols, 1.0);
    let wq = quantized(q, &w);
    let x = rng.vec(n * cols, 2.0);
    let (want, scale) = naive(q, &wq, rows, cols, &x, n);
    let wr = WeightRef {
        quant: q,
        rows,
        cols,
        data: &wq,
    };
    for k in [Kernels::scalar(), Kernels::best()] {
        let mut y = vec![f32::NAN; n * rows];
        match path {
            Some(p) => matmul_via(k, p, &wr, &x, n, &mut y),
            None => matmul_with(k, &wr, &x, n, &mut y),
        }
        for i in 0..n * rows {
            assert!(
                close(y[i], want[i], scale[i], cols),
                "{path:?} {q} {} {rows}x{cols}x{n} at {i}: {} vs {}",
                k.name,
                y[i],
                want[i]
            );
        }
    }
}

#[test]
fn matmul_matches_a_naive_reference() {
    let mut rng = Rng(77);
    let all = [QuantType::F32, QuantType::F16, QuantType::BF16]
        .into_iter()
        .chain(QUANT);
    for q in all {
        let col_set: Vec<usize> = if q.is_quantized() {
            [q.block_len(), 2 * q.block_len(), 4096].to_vec()
        } else {
            LENGTHS.to_vec()
        };
        for cols in col_set {
            for rows in [1, 7, 17, 33] {
                for n in [1, 2, 3, 8, 33] {
                    check_matmul(&mut rng, q, rows, cols, n);
                }
            }
        }
    }
}

/// Token counts that take the dequantized-tile GEMM path, with row counts around the tile size.
#[test]
fn matmul_gemm_path_matches_a_naive_reference() {
    let mut rng = Rng(78);
    let all = [QuantType::F16, QuantType::BF16].into_iter().chain(QUANT);
    for q in all {
        for cols in [q.block_len(), 2 * q.block_len().max(256)] {
            for rows in [1, 7, 63, 65, 131] {
                let m = gemm_min_tokens(q);
                for n in [m - 1, m, 64, 300] {
                    check_matmul(&mut rng, q, rows, cols, n);
                }
            }
        }
        check_matmul(&mut rng, q, 7, 4096, 64);
    }
}

/// A token's outputs do not depend on how many other tokens share the call (int8 path or GEMM
/// path).
#[test]
fn matmul_paths_agree_on_shared_tokens() {
    let mut rng = Rng(79);
    for q in QUANT {
        let (rows, cols, n) = (70, 512, 2 * gemm_min_tokens(q));
        let wq = quantized(q, &rng.vec(rows * cols, 1.0));
        let x = rng.vec(n * cols, 2.0);
        let wr = WeightRef {
            quant: q,
            rows,
            cols,
            data: &wq,
        };
        let (_, scale) = naive(q, &wq, rows, cols, &x, n);
        let mut big = vec![0f32; n * rows];
        matmul(&wr, &x, n, &mut big);
        let mut small = vec![0f32; 4 * rows];
        matmul(&wr, &x[..4 * cols], 4, &mut small);
        for i in 0..4 * rows {
            assert!(
                close(small[i], big[i], scale[i], cols),
                "{q} at {i}: {} (4 tokens) vs {} ({n} tokens)",
                small[i],
                big[i]
            );
        }
    }
}

/// The fast dequantizers are bit-identical to the scalar ones, NaN and inf included.
#[test]
fn fast_dequantizers_match_the_scalar_ones_bit_for_bit() {
    let mut rng = Rng(80);
    let all = [QuantType::F16, QuantType::BF16].into_iter().chain(QUANT);
    for k in fast_tables() {
        for q in all.clone() {
            for len in LENGTHS.iter().copied().filter(|l| l % q.block_len() == 0) {
                let mut wq = quantized(q, &rng.vec(len, 3.0));
                if !q.is_quantized() && len > 2 {
                    // NaN and inf bit patterns in float rows
                    wq[0..2].copy_from_slice(&[0x00, 0x7c]);
                    wq[2..4].copy_from_slice(&[0x01, 0x7f]);
                }
                let mut want = vec![0f32; len];
                let mut got = vec![0f32; len];
                (Kernels::scalar().dequant.get(q).unwrap())(&wq, &mut want);
                (k.dequant.get(q).unwrap())(&wq, &mut got);
                for i in 0..len {
                    assert!(
                        got[i].to_bits() == want[i].to_bits()
                            || (got[i].is_nan() && want[i].is_nan()),
                        "{} {q} len {len} at {i}: {} vs {}",
                        k.name,
                        got[i],
                        want[i]
                    );
                }
            }
        }
    }
}

#[test]
fn matmul_entry_point_uses_the_best_table_and_handles_empty_shapes() {
    let w = vec![0u8; 3 * 34];
    let wr = WeightRef {
        quant: QuantType::Q8_0,
        rows: 3,
        cols: 32,
        data: &w,
    };
    let mut y = vec![1f32; 6];
    matmul(&wr, &[0.5; 64], 2, &mut y);
    assert_eq!(y, [0.0; 6]);
    matmul(&wr, &[], 0, &mut []);
    let wr = WeightRef {
        quant: QuantType::F32,
        rows: 2,
        cols: 0,
        data: &[],
    };
    let mut y = vec![1f32; 6];
    matmul(&wr, &[], 3, &mut y);
    assert_eq!(y, [0.0; 6]);
    println!("best kernels: {}", Kernels::best().name);
}

/// Token counts that cross every path boundary and panel/pass remainder.
const TOKENS: [usize; 14] = [1, 2, 3, 4, 5, 7, 8, 31, 32, 33, 64, 65, 80, 255];

/// The int8 GEMM kernels of `k` against the scalar ones on one panel of `n_tok` tokens and
/// `rows` weight rows; tolerance from Σ|terms| of each output.
fn check_gemm(
    k: &Kernels,
    q: QuantType,
    w: &[f32],
    rows: usize,
    x: &[f32],
    n_tok: usize,
    what: &str,
) {
    let cols = w.len() / rows.max(1);
    let nb = cols / QK8_0;
    let wq = quantized(q, w);
    let mut wd = vec![0f32; w.len()];
    dequantize(q, &wq, &mut wd).unwrap();
    let mut panel = vec![ActBlock8::ZERO; nb];
    quantize_act8(x, n_tok, &mut panel);
    let mut acts = vec![ActBlock::ZERO; n_tok * nb];
    quantize_act(x, &mut acts);
    let ad = deq_acts(&acts);
    let (fast_k, slow_k) = (k.gemm(q).unwrap(), Kernels::scalar().gemm(q).unwrap());
    let mut fast = vec![f32::NAN; rows * GEMM_TOKENS];
    let mut slow = vec![f32::NAN; rows * GEMM_TOKENS];
    fast_k(&wq, &panel, 1, &mut fast);
    slow_k(&wq, &panel, 1, &mut slow);
    for r in 0..rows {
        for t in 0..GEMM_TOKENS {
            let (f, sl) = (fast[r * 8 + t], slow[r * 8 + t]);
            let s = if t < n_tok {
                sum_abs(&wd[r * cols..(r + 1) * cols], &ad[t * cols..(t + 1) * cols])
            } else {
                0.0
            };
            assert!(
                close(f, sl, s, cols),
                "{} gemm {q} {what} {rows}x{cols} row {r} token {t}: {f} vs scalar {sl}",
                k.name
            );
            if t >= n_tok {
                assert_eq!(
                    f, 0.0,
                    "{} {q} {what} {rows}x{cols}: padding token {t} of a panel is zero",
                    k.name
                );
            }
        }
    }
    // the scalar panel kernel is the row kernel's definition, token by token
    let row_k = kernel(Kernels::scalar(), q);
    let rb = wq.len() / rows.max(1);
    for r in 0..rows {
        let mut o = vec![0f32; n_tok];
        row_k(&wq[r * rb..(r + 1) * rb], &acts, &mut o);
        for t in 0..n_tok {
            let s = sum_abs(&wd[r * cols..(r + 1) * cols], &ad[t * cols..(t + 1) * cols]);
            assert!(
                close(slow[r * 8 + t], o[t], s, cols),
                "scalar gemm {q} vs scalar row kernel {what} row {r} token {t}"
            );
        }
    }
}

#[test]
fn int8_gemm_kernels_match_the_scalar_reference() {
    let mut rng = Rng(0x6e33);
    for k in fast_tables() {
        for q in [QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4K] {
            if k.gemm(q).is_none() {
                continue;
            }
            // 512, 2304: 2 and 9 super-blocks (q4_k's rows are whole 256-value blocks)
            let extra = [512, 2304];
            for len in LENGTHS
                .iter()
                .chain(&extra)
                .copied()
                .filter(|l| l % q.block_len() == 0)
            {
                for rows in [1, 2, 3, 4, 5, 7, 9] {
                    for n_tok in [1, 3, 5, 8] {
                        let w = rng.vec(rows * len, 1.0);
                        let x = rng.vec(n_tok * len, 3.0);
                        check_gemm(k, q, &w, rows, &x, n_tok, "random");
                    }
                }
                let w = rng.vec(5 * len, 1.0);
                check_gemm(
                    k,
                    q,
                    &vec![0.0; 5 * len],
                    5,
                    &rng.vec(8 * len, 1.0),
                    8,
                    "zero weights",
                );
                check_gemm(k, q, &w, 5, &vec![0.0; 8 * len], 8, "zero activations");
                check_gemm(
                    k,
                    q,
                    &rng.vec(5 * len, 4e5),
                    5,
                    &rng.vec(8 * len, 1e30),
                    8,
                    "huge",
                );
                // extremes: every weight and activation quant at ±127 or the q4 ends
                let ext: Vec<f32> = (0..5 * len)
                    .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
                    .collect();
                let xe: Vec<f32> = (0..8 * len)
                    .map(|i| if i % 5 == 0 { 1.0 } else { -1.0 })
                    .collect();
                check_gemm(k, q, &ext, 5, &xe, 8, "extreme quants");
                if len > 0 {
                    let mut x = rng.vec(8 * len, 1.0);
                    x[len + len / 2] = f32::NAN;
                    x[5 * len + len / 3] = f32::INFINITY;
                    check_gemm(k, q, &w, 5, &x, 8, "nan");
                }
            }
        }
    }
}

#[test]
fn quantize_act8_interleaves_quantize_act() {
    let mut rng = Rng(0x6e34);
    for n_tok in 0..=GEMM_TOKENS {
        let x = rng.vec(n_tok * 96, 2.0);
        let mut panel = vec![ActBlock8::ZERO; 3];
        quantize_act8(&x, n_tok, &mut panel);
        let mut acts = vec![ActBlock::ZERO; n_tok * 3];
        quantize_act(&x, &mut acts);
        for t in 0..GEMM_TOKENS {
            for (b, pb) in panel.iter().enumerate() {
                let want = if t < n_tok {
                    acts[t * 3 + b]
                } else {
                    ActBlock::ZERO
                };
                assert_eq!(pb.token(t), want, "{n_tok} tokens: token {t} block {b}");
            }
        }
    }
}

/// The stored bytes of `x` as float type `q`, and its values as stored.
fn float_weights(q: QuantType, x: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let b = quantized(q, x);
    let mut d = vec![0f32; x.len()];
    dequantize(q, &b, &mut d).unwrap();
    (b, d)
}

#[test]
fn float_row_kernels_match_the_scalar_reference() {
    let mut rng = Rng(0x6e35);
    for k in fast_tables().into_iter().filter(|k| k.rows_f32.is_some()) {
        for q in [QuantType::F32, QuantType::F16, QuantType::BF16] {
            for cols in LENGTHS.iter().copied().filter(|&c| c > 0) {
                for (rows, n) in [(1, 1), (2, 3), (3, 4), (4, 5), (7, 8), (5, 33), (3, 64)] {
                    let cases: [(&str, Vec<f32>, Vec<f32>); 4] = [
                        ("random", rng.vec(rows * cols, 1.0), rng.vec(n * cols, 2.0)),
                        ("zeros", vec![0.0; rows * cols], rng.vec(n * cols, 2.0)),
                        ("huge", rng.vec(rows * cols, 6e4), rng.vec(n * cols, 1e30)),
                        ("nan", rng.vec(rows * cols, 1.0), {
                            let mut x = rng.vec(n * cols, 1.0);
                            x[(n - 1) * cols + cols / 2] = f32::NAN;
                            x
                        }),
                    ];
                    for (what, w, x) in cases {
                        let (wb, wd) = float_weights(q, &w);
                        let mut fast = vec![f32::NAN; rows * n];
                        let mut slow = vec![f32::NAN; rows * n];
                        (k.float_rows(q).unwrap())(&wb, cols, &x, &mut fast);
                        (Kernels::scalar().float_rows(q).unwrap())(&wb, cols, &x, &mut slow);
                        for r in 0..rows {
                            for t in 0..n {
                                let s = sum_abs(
                                    &wd[r * cols..(r + 1) * cols],
                                    &x[t * cols..(t + 1) * cols],
                                );
                                let (f, sl) = (fast[r * n + t], slow[r * n + t]);
                                let ok = close(f, sl, s, cols) || (f.is_infinite() && f == sl);
                                assert!(
                                    ok,
                                    "{} {q} {what} {rows}x{cols}x{n} ({r}, {t}): {f} vs {sl}",
                                    k.name
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The dequantized f32 tiles for the quantized types that `matmul_path` now sends to the int8
/// GEMM at every size (q8_0 from `109e247`, q4_0, q4_k): `matmul_via` still offers the path
/// (benches, `gemm_cpu`, tables without an int8 GEMM), so it keeps its own check.
#[test]
fn tiles_path_matches_a_naive_reference_for_int8_gemm_types() {
    let mut rng = Rng(83);
    for q in [QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4K] {
        let cols = 2 * q.block_len();
        for (rows, n) in [(5, 1), (37, 80), (130, 97)] {
            check_matmul_via(&mut rng, q, rows, cols, n, Some(MatmulPath::Tiles));
        }
    }
}

/// Every path at the token counts around its boundaries, against the naive reference, for the
/// scalar and the best table.
#[test]
fn matmul_every_path_matches_a_naive_reference_at_boundary_token_counts() {
    let mut rng = Rng(81);
    let types = [
        QuantType::F32,
        QuantType::F16,
        QuantType::BF16,
        QuantType::Q8_0,
        QuantType::Q4_0,
        QuantType::Q4K,
    ];
    for q in types {
        let mut seen = Vec::new();
        for n in TOKENS {
            seen.push(matmul_path(Kernels::best(), q, n));
            let shapes = if q == QuantType::Q4K {
                [(5, 256), (37, 512)]
            } else {
                [(5, 64), (37, 288)]
            };
            for (rows, cols) in shapes {
                check_matmul(&mut rng, q, rows, cols, n);
            }
        }
        println!("{q}: paths {seen:?}");
    }
    let scalar = Kernels::scalar();
    assert_eq!(
        matmul_path(scalar, QuantType::Q4_0, 300),
        MatmulPath::Int8Gemm
    );
    assert_eq!(
        matmul_path(scalar, QuantType::Q8_0, 300),
        MatmulPath::Int8Gemm
    );
    assert_eq!(
        matmul_path(scalar, QuantType::Q4K, 300),
        MatmulPath::Int8Gemm
    );
}

/// Blocks of values that stress a quantizer: random at several scales, exact rounding ties,
/// values a hair below a tie, zeros and signed zeros, NaN, ±inf, subnormal and huge blocks.
fn adversarial_acts(rng: &mut Rng, n_blocks: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(n_blocks * QK8_0);
    for b in 0..n_blocks {
        let mut blk = rng.vec(QK8_0, [1.0, 3e-3, 7e4][b % 3]);
        match b % 9 {
            // amax 127 makes the scale 1: k + 0.5 is an exact tie, 0.49999997 is not one
            1 => {
                blk[0] = 127.0;
                for (i, v) in blk.iter_mut().enumerate().skip(1) {
                    *v = (i as f32 - 16.0) * 3.0 + 0.5;
                }
                blk[5] = 0.499_999_97;
                blk[6] = -0.499_999_97;
                blk[7] = -0.5;
                blk[8] = 126.5;
            }
            2 => blk.fill(0.0),
            3 => {
                blk.fill(-0.0);
                blk[3] = 1e-40; // the scale underflows to 0
            }
            4 => blk[b % QK8_0] = f32::NAN,
            5 => blk[(b + 7) % QK8_0] = f32::NEG_INFINITY,
            6 => {
                for v in blk.iter_mut() {
                    *v *= 1e-38; // 1 / scale overflows to inf
                }
            }
            7 => {
                for v in blk.iter_mut() {
                    *v *= 3e38;
                }
            }
            8 => {
                blk[0] = f32::NAN;
                blk[1] = f32::INFINITY;
            }
            _ => {}
        }
        x.extend(blk);
    }
    x
}

fn same_block(a: &ActBlock, b: &ActBlock) -> bool {
    a.d.to_bits() == b.d.to_bits() && a.sum == b.sum && a.qs == b.qs
}

#[test]
fn fast_activation_quantizers_match_the_scalar_ones_bit_for_bit() {
    let mut rng = Rng(0x9a17);
    let scalar = Kernels::scalar();
    for k in fast_tables() {
        for len in LENGTHS
            .iter()
            .chain(&[288, 2816])
            .filter(|&&l| l % QK8_0 == 0)
        {
            let nb = len / QK8_0;
            for n_tok in 0..=GEMM_TOKENS {
                let x = adversarial_acts(&mut rng, n_tok * nb);
                let mut fast = vec![ActBlock::ZERO; n_tok * nb];
                let mut slow = vec![ActBlock::ZERO; n_tok * nb];
                (k.quantize_act)(&x, &mut fast);
                (scalar.quantize_act)(&x, &mut slow);
                for (i, (f, s)) in fast.iter().zip(&slow).enumerate() {
                    assert!(
                        same_block(f, s),
                        "{} len {len} block {i}: {f:?} vs {s:?}",
                        k.name
                    );
                }
                let mut fast8 = vec![ActBlock8::ZERO; nb];
                let mut slow8 = vec![ActBlock8::ZERO; nb];
                // a stale panel must be overwritten, missing tokens included
                fast8.fill(ActBlock8 {
                    qs: [5; 256],
                    d: [1.0; GEMM_TOKENS],
                    sum: [3; GEMM_TOKENS],
                });
                (k.quantize_act8)(&x, n_tok, &mut fast8);
                (scalar.quantize_act8)(&x, n_tok, &mut slow8);
                for (b, (f, s)) in fast8.iter().zip(&slow8).enumerate() {
                    for t in 0..GEMM_TOKENS {
                        assert!(
                            same_block(&f.token(t), &s.token(t)),
                            "{} panel len {len} {n_tok} tokens block {b} token {t}",
                            k.name
                        );
                    }
                }
            }
        }
    }
}
