//! The attention tile kernels of every fast table against the scalar reference, over the key
//! counts and head widths that break blocking code, plus zeros, huge values, NaN and -inf; and a
//! whole block run tile by tile (online softmax) against a plain f64 softmax attention.

use dlm_simd::attn::{self, ATTN_LANES};
use dlm_simd::{AttentionKernels, Kernels};

mod common;
use common::{LENGTHS, Rng, fast_tables};

const HEAD_DIMS: [usize; 8] = [1, 3, 7, 32, 33, 64, 65, 128];
const EPS: f32 = f32::EPSILON;

/// Within `rel` ulps of `want`'s scale `scale`, NaN only where NaN is wanted.
fn close(got: f32, want: f32, scale: f32, rel: f32) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= rel * EPS * scale + 1e-35
}

/// Rows of `[n, width]` data, each `hd` long.
fn rows(data: &[f32], width: usize, hd: usize) -> Vec<&[f32]> {
    data.chunks_exact(width.max(1)).map(|r| &r[..hd]).collect()
}

/// A data set: a block of queries `[hd, 16]`, `n` keys and values `[n, hd + 1]` (rows wider
/// than `hd`, as a cache's rows are).
struct Case {
    hd: usize,
    qt: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Case {
    fn random(rng: &mut Rng, n: usize, hd: usize, q_scale: f32, kv_scale: f32) -> Case {
        Case {
            hd,
            qt: rng.vec(hd * ATTN_LANES, q_scale),
            k: rng.vec(n * (hd + 1), kv_scale),
            v: rng.vec(n * (hd + 1), kv_scale),
        }
    }
    fn keys(&self) -> Vec<&[f32]> {
        rows(&self.k, self.hd + 1, self.hd)
    }
    fn values(&self) -> Vec<&[f32]> {
        rows(&self.v, self.hd + 1, self.hd)
    }
}

/// Runs every kernel of `k` and of the scalar table on `c` and compares them.
fn check_kernels(k: &AttentionKernels, name: &str, c: &Case, what: &str) {
    let (keys, values) = (c.keys(), c.values());
    let (n, hd) = (keys.len(), c.hd);
    let ctx = format!("{name} {what} keys {n} head_dim {hd}");

    // scores
    let mut fast = vec![f32::NAN; n * ATTN_LANES];
    let mut slow = vec![f32::NAN; n * ATTN_LANES];
    (k.scores)(&c.qt, &keys, &mut fast);
    attn::scores(&c.qt, &keys, &mut slow);
    for j in 0..n {
        for i in 0..ATTN_LANES {
            let scale: f32 = (0..hd)
                .map(|d| (c.qt[d * ATTN_LANES + i] * keys[j][d]).abs())
                .sum();
            let (g, w) = (fast[j * ATTN_LANES + i], slow[j * ATTN_LANES + i]);
            assert!(
                close(g, w, scale, 2.0 * (hd as f32 + 8.0)),
                "{ctx}: score [{j}][{i}] {g} vs scalar {w} (Σ|terms| {scale})"
            );
        }
    }

    // softmax from a running state that is behind on some lanes, ahead on others
    let m0: [f32; ATTN_LANES] = std::array::from_fn(|i| match i % 4 {
        0 => f32::NEG_INFINITY,
        1 => 0.0,
        2 => -5.0,
        _ => 3.0,
    });
    let l0: [f32; ATTN_LANES] = std::array::from_fn(|i| if i % 4 == 0 { 0.0 } else { 2.5 });
    let (mut mf, mut lf, mut ms, mut ls) = (m0, l0, m0, l0);
    let mut pf = slow.clone();
    let mut ps = slow.clone();
    let af = (k.softmax)(&mut pf, &mut mf, &mut lf);
    let as_ = attn::softmax(&mut ps, &mut ms, &mut ls);
    // A lane with a NaN score has a NaN sum (so a NaN output) in every table; where the NaN
    // sits in the max and the probabilities is the instruction set's choice.
    let nan_lane: Vec<bool> = (0..ATTN_LANES)
        .map(|i| slow.iter().skip(i).step_by(ATTN_LANES).any(|x| x.is_nan()))
        .collect();
    for i in 0..ATTN_LANES {
        if nan_lane[i] {
            assert!(lf[i].is_nan() && ls[i].is_nan(), "{ctx}: NaN lane {i}");
            continue;
        }
        assert!(
            mf[i].to_bits() == ms[i].to_bits() || (mf[i].is_nan() && ms[i].is_nan()),
            "{ctx}: max lane {i} {} vs {}",
            mf[i],
            ms[i]
        );
        assert!(
            close(af[i], as_[i], as_[i].abs(), 8.0),
            "{ctx}: alpha lane {i} {} vs {}",
            af[i],
            as_[i]
        );
        assert!(
            close(lf[i], ls[i], ls[i].abs(), 8.0 + 2.0 * n as f32),
            "{ctx}: sum lane {i} {} vs {}",
            lf[i],
            ls[i]
        );
    }
    for (j, (g, w)) in pf.iter().zip(&ps).enumerate() {
        assert!(
            nan_lane[j % ATTN_LANES] || close(*g, *w, w.abs(), 8.0),
            "{ctx}: p [{}][{}] {g} vs scalar {w}",
            j / ATTN_LANES,
            j % ATTN_LANES
        );
    }

    // accumulate onto a running output scaled by alpha
    let ot0: Vec<f32> = (0..hd * ATTN_LANES).map(|x| (x % 7) as f32 - 3.0).collect();
    let (mut of, mut os) = (ot0.clone(), ot0.clone());
    (k.accumulate)(&ps, &values, &as_, &mut of);
    attn::accumulate(&ps, &values, &as_, &mut os);
    for d in 0..hd {
        for i in 0..ATTN_LANES {
            let scale = (ot0[d * ATTN_LANES + i] * as_[i]).abs()
                + (0..n)
                    .map(|j| (ps[j * ATTN_LANES + i] * values[j][d]).abs())
                    .sum::<f32>();
            let (g, w) = (of[d * ATTN_LANES + i], os[d * ATTN_LANES + i]);
            assert!(
                close(g, w, scale, 2.0 * (n as f32 + 8.0)),
                "{ctx}: out [{d}][{i}] {g} vs scalar {w} (Σ|terms| {scale})"
            );
        }
    }

    // final probabilities
    let c_: [f32; ATTN_LANES] = std::array::from_fn(|i| 1.0 / (1.0 + i as f32));
    let (mut pf, mut ps) = (slow.clone(), slow.clone());
    (k.probs)(&mut pf, &ms, &c_);
    attn::probs(&mut ps, &ms, &c_);
    for (j, (g, w)) in pf.iter().zip(&ps).enumerate() {
        assert!(
            close(*g, *w, w.abs(), 8.0),
            "{ctx}: prob [{}][{}] {g} vs scalar {w}",
            j / ATTN_LANES,
            j % ATTN_LANES
        );
    }
}

#[test]
fn fast_attention_kernels_match_the_scalar_reference() {
    let mut rng = Rng(0xa77e);
    for k in fast_tables() {
        for n in LENGTHS {
            for hd in HEAD_DIMS {
                if n * hd > 4096 * 64 {
                    continue;
                }
                let c = Case::random(&mut rng, n, hd, 1.0, 1.0);
                check_kernels(&k.attention, k.name, &c, "random");
                // scores spread over hundreds: most probabilities underflow to 0
                let c = Case::random(&mut rng, n, hd, 30.0, 30.0);
                check_kernels(&k.attention, k.name, &c, "peaked");
            }
            let hd = 64;
            let mut c = Case::random(&mut rng, n, hd, 1.0, 1.0);
            c.qt.fill(0.0);
            check_kernels(&k.attention, k.name, &c, "zero queries");
            c.k.fill(0.0);
            c.v.fill(0.0);
            check_kernels(&k.attention, k.name, &c, "zeros");
            // huge: scores near f32's top (still finite: an overflowing sum is inf or NaN
            // depending on FMA), so every row is one-hot
            let c = Case::random(&mut rng, n, hd, 1e18, 1e18);
            check_kernels(&k.attention, k.name, &c, "huge");
            if n > 0 {
                let mut c = Case::random(&mut rng, n, hd, 1.0, 1.0);
                c.k[(n / 2) * (hd + 1) + 3] = f32::NAN;
                c.v[(n / 3) * (hd + 1) + 5] = f32::NAN;
                c.qt[7 * ATTN_LANES + 2] = f32::NAN;
                check_kernels(&k.attention, k.name, &c, "nan");
                let mut c = Case::random(&mut rng, n, hd, 1.0, 1.0);
                c.k[(n - 1) * (hd + 1)] = f32::NEG_INFINITY;
                check_kernels(&k.attention, k.name, &c, "-inf key");
            }
        }
    }
}

/// e^x of the fast softmax over the whole f32 range of x <= 0 (and NaN, -inf) against `exp`.
#[test]
fn fast_exp_is_within_a_few_ulp() {
    let mut xs: Vec<f32> = vec![0.0, -0.0, f32::NEG_INFINITY, f32::NAN, -f32::MAX, -1e-30];
    let mut x = -1e-7f32;
    while x > -200.0 {
        xs.push(x);
        x *= 1.001;
    }
    xs.resize(xs.len().next_multiple_of(ATTN_LANES), 0.0);
    for k in fast_tables() {
        let mut s = xs.clone();
        // m = 0 and a running sum of 0: p = e^(x - 0)
        let mut m = [0f32; ATTN_LANES];
        let mut l = [0f32; ATTN_LANES];
        // the max would move to 0 for lanes with no positive value: x <= 0 keeps m = 0
        (k.attention.probs)(&mut s, &m, &[1.0; ATTN_LANES]);
        for (&x, &e) in xs.iter().zip(&s) {
            let want = x.exp();
            if x.is_nan() {
                assert!(e.is_nan(), "{}: e^NaN = {e}", k.name);
            } else if want < f32::MIN_POSITIVE {
                // subnormal: flushed to 0, or within the normal range's error of it
                let near = (e - want).abs() <= 4.0 * EPS * f32::MIN_POSITIVE;
                assert!(e == 0.0 || near, "{}: e^{x} = {e}, want {want}", k.name);
            } else {
                assert!(
                    (e - want).abs() <= 4.0 * EPS * want,
                    "{}: e^{x} = {e}, want {want}",
                    k.name
                );
            }
        }
        // e^0 is exactly 1, so an unmoved max rescales nothing
        let mut s = vec![0f32; ATTN_LANES];
        let alpha = (k.attention.softmax)(&mut s, &mut m, &mut l);
        assert_eq!(alpha, [1.0; ATTN_LANES], "{}", k.name);
        assert_eq!(s, vec![1.0; ATTN_LANES], "{}", k.name);
    }
}

/// One block over `n` keys in tiles of `tile`, as the runtime runs it: outputs `[16, hd]`.
fn run_block(k: &AttentionKernels, c: &Case, tile: usize) -> Vec<f32> {
    let (keys, values) = (c.keys(), c.values());
    let hd = c.hd;
    let mut m = [f32::NEG_INFINITY; ATTN_LANES];
    let mut l = [0f32; ATTN_LANES];
    let mut ot = vec![0f32; hd * ATTN_LANES];
    let mut s = vec![0f32; tile * ATTN_LANES];
    for (kt, vt) in keys.chunks(tile).zip(values.chunks(tile)) {
        let s = &mut s[..kt.len() * ATTN_LANES];
        (k.scores)(&c.qt, kt, s);
        let alpha = (k.softmax)(s, &mut m, &mut l);
        (k.accumulate)(s, vt, &alpha, &mut ot);
    }
    let mut out = vec![0f32; ATTN_LANES * hd];
    for i in 0..ATTN_LANES {
        for d in 0..hd {
            out[i * hd + d] = ot[d * ATTN_LANES + i] / l[i];
        }
    }
    out
}

/// softmax(q·kᵀ)·v in f64, with Σ p·|v| per output (the scale of its rounding error).
fn reference(c: &Case) -> (Vec<f64>, Vec<f64>) {
    let (keys, values) = (c.keys(), c.values());
    let hd = c.hd;
    let mut out = vec![0f64; ATTN_LANES * hd];
    let mut scale = vec![0f64; ATTN_LANES * hd];
    for i in 0..ATTN_LANES {
        let s: Vec<f64> = keys
            .iter()
            .map(|kj| {
                (0..hd)
                    .map(|d| c.qt[d * ATTN_LANES + i] as f64 * kj[d] as f64)
                    .sum()
            })
            .collect();
        let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = s.iter().map(|x| (x - max).exp()).sum();
        for (j, vj) in values.iter().enumerate() {
            let p = (s[j] - max).exp() / sum;
            for d in 0..hd {
                out[i * hd + d] += p * vj[d] as f64;
                scale[i * hd + d] += p * (vj[d] as f64).abs();
            }
        }
    }
    (out, scale)
}

#[test]
fn blocks_run_tile_by_tile_match_a_plain_softmax() {
    let mut rng = Rng(0xb10c);
    let tables: Vec<&Kernels> = [Kernels::scalar()]
        .into_iter()
        .chain(fast_tables())
        .collect();
    for n in [1, 2, 7, 33, 64, 65, 257, 1000] {
        for hd in [7, 32, 64, 128] {
            // scores of a few units (typical), and spread over tens (peaked rows)
            for q_scale in [0.3, 3.0] {
                let c = Case::random(&mut rng, n, hd, q_scale, 1.0);
                let (want, scale) = reference(&c);
                for k in &tables {
                    for tile in [1, 7, 64, n] {
                        let got = run_block(&k.attention, &c, tile);
                        for (x, (g, (w, s))) in got.iter().zip(want.iter().zip(&scale)).enumerate()
                        {
                            // exp's relative error, the sum's, the scores' (times the largest
                            // score, which the probabilities are exponentials of)
                            let tol =
                                (64.0 + 4.0 * n as f64 + 2.0 * (hd * hd) as f64 * q_scale as f64)
                                    * EPS as f64
                                    * s
                                    + 1e-30;
                            assert!(
                                (*g as f64 - w).abs() <= tol,
                                "{} keys {n} head_dim {hd} tile {tile} at {x}: {g} vs {w}",
                                k.name
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The block transposes on the way in and out are bit-identical to the scalar reference for
/// every lane count and head width (whole vectors, tails, a partial last block).
#[test]
fn fast_load_and_store_match_the_scalar_reference_bit_for_bit() {
    let mut rng = Rng(0x10ad);
    for k in fast_tables() {
        for hd in [0, 1, 7, 8, 9, 32, 33, 64, 65, 128] {
            let data = rng.vec(ATTN_LANES * (hd + 3), 5.0);
            let all = rows(&data, hd + 3, hd);
            let ot = rng.vec(hd * ATTN_LANES, 5.0);
            let c: [f32; ATTN_LANES] = std::array::from_fn(|i| 0.5 + i as f32);
            for lanes in 0..=ATTN_LANES {
                let mut fast = vec![f32::NAN; hd * ATTN_LANES];
                let mut slow = vec![f32::NAN; hd * ATTN_LANES];
                (k.attention.load)(&all[..lanes], 0.125, &mut fast);
                attn::load(&all[..lanes], 0.125, &mut slow);
                let same =
                    |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same(&fast, &slow),
                    "{} load head_dim {hd} lanes {lanes}",
                    k.name
                );
                let mut fast = vec![f32::NAN; hd * lanes];
                let mut slow = vec![f32::NAN; hd * lanes];
                (k.attention.store)(&ot, &c, &mut fast);
                attn::store(&ot, &c, &mut slow);
                assert!(
                    same(&fast, &slow),
                    "{} store head_dim {hd} lanes {lanes}",
                    k.name
                );
            }
        }
    }
}

/// The prefetch hint takes any slice (empty, one value, a partial last line) and changes nothing.
#[test]
fn prefetch_is_only_a_hint() {
    let x: Vec<f32> = (0..33).map(|i| i as f32).collect();
    for len in [0, 1, 16, 17, 33] {
        attn::prefetch(&x[..len]);
    }
    attn::prefetch(&x[5..]);
    assert!(x.iter().enumerate().all(|(i, &v)| v == i as f32));
}
