//! Attention on the device, the cached keys and values read in place at the `outside`
//! positions, no score matrix: spans of at least `flash_min_rows` rows take `flash.cu`
//! (query tiles of 16 rows, key/value tiles through shared memory, online softmax; heads up to
//! 128 wide); shorter spans, wider heads and probes take kernels.cu's `attention` (one block
//! per (query row, head), keys in chunks with an online softmax).
//!
//! Probes (head-averaged probabilities of chosen key columns, or the mass each key gets)
//! are rare (some remasking rules ask for them): then the kernel also writes the raw scores,
//! and the probabilities are finished on the host in the CPU backend's order.

use crate::{CudaAct, CudaBackend, launch, ok};
use cudarc::driver::{LaunchConfig, PushKernelArg};
use dlm_runtime::backend::AttentionArgs;
use dlm_runtime::model::LayerAttention;

/// Widest head the kernel holds (two values per thread of 128).
pub const MAX_HEAD_DIM: usize = 256;

pub(crate) fn attention(
    be: &CudaBackend,
    a: AttentionArgs<'_, CudaBackend>,
    out: &mut CudaAct,
) -> Option<LayerAttention> {
    let sh = a.shape;
    assert!(
        sh.head_dim <= MAX_HEAD_DIM,
        "CUDA attention: head_dim {} is over {MAX_HEAD_DIM}",
        sh.head_dim
    );
    let n = a.n;
    if n == 0 {
        return None;
    }
    let n_keys = n + a.outside.len();
    let probing = a.probe_keys.is_some() || a.probe_mass;
    if !probing && n >= be.tuning.flash_min_rows && sh.head_dim <= FLASH_MAX_HEAD_DIM {
        let precise = be.precise.load(std::sync::atomic::Ordering::Relaxed);
        if let Some((f, combine, f16)) = be.k.flash_tc.as_ref()
            && be.tuning.flash_tc
            && !precise
            && sh.head_dim.is_multiple_of(16)
        {
            let f = if be.tuning.flash_f16 { f16 } else { f };
            flash(be, f, Some(combine), &a, out);
            return None;
        }
        if let Some(f) = be.k.flash.as_ref() {
            flash(be, f, None, &a, out);
            return None;
        }
    }
    let mut scores = probing.then(|| ok(be.stream.alloc_zeros::<f32>(n * sh.n_heads * n_keys)));
    let outside = be.ints(a.outside);
    let (ni, n_out) = (n as i32, a.outside.len() as i32);
    let (nh, nkv, hd) = (sh.n_heads as i32, sh.n_kv_heads as i32, sh.head_dim as i32);
    let scale = 1.0 / (sh.head_dim as f32).sqrt();
    let null: u64 = 0;
    let mut b = be.stream.launch_builder(&be.k.attention);
    b.arg(&a.q.buf).arg(&a.k.buf).arg(&a.v.buf).arg(&ni);
    match a.cache {
        Some(c) if !a.outside.is_empty() => {
            b.arg(&c.k[a.layer]).arg(&c.v[a.layer]);
        }
        _ => {
            b.arg(&null).arg(&null);
        }
    }
    b.arg(&*outside)
        .arg(&n_out)
        .arg(&nh)
        .arg(&nkv)
        .arg(&hd)
        .arg(&scale)
        .arg(&mut out.buf);
    match scores.as_mut() {
        Some(s) => {
            b.arg(s);
        }
        None => {
            b.arg(&null);
        }
    }
    let cfg = LaunchConfig {
        grid_dim: (n as u32, sh.n_heads as u32, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(b, cfg);
    let scores = ok(be.stream.memcpy_dtov(scores.as_ref()?));
    Some(probes(
        &scores,
        n,
        sh.n_heads,
        n_keys,
        a.probe_keys,
        a.probe_mass,
    ))
}

/// Widest head `flash.cu` takes (`FA_MAX_DIM`).
const FLASH_MAX_HEAD_DIM: usize = 128;
/// A tiled kernel: `flash.cu` (16 query rows a block) or, with `tc`, `flash_tc.cu` (64 rows
/// a block; its keys split over gridDim.z when the (row tile, head) blocks are too few to fill
/// the GPU twice, as in cached steps, the splits then merged by `attention_combine`).
fn flash(
    be: &CudaBackend,
    f: &cudarc::driver::CudaFunction,
    tc: Option<&cudarc::driver::CudaFunction>,
    a: &AttentionArgs<'_, CudaBackend>,
    out: &mut CudaAct,
) {
    let sh = a.shape;
    let n_keys = a.n + a.outside.len();
    let rows_per_block = if tc.is_some() { 64 } else { 16 };
    let blocks = a.n.div_ceil(rows_per_block) * sh.n_heads;
    // Keys per split: a multiple of the 64-key tile.
    let tiles = n_keys.div_ceil(64);
    let want = match tc {
        Some(_) => (2 * be.n_sms).div_ceil(blocks).clamp(1, tiles),
        None => 1,
    };
    let kps = tiles.div_ceil(want) * 64;
    let splits = n_keys.div_ceil(kps);
    let outside = be.ints(a.outside);
    let (ni, n_out) = (a.n as i32, a.outside.len() as i32);
    let (nh, nkv, hd) = (sh.n_heads as i32, sh.n_kv_heads as i32, sh.head_dim as i32);
    let scale = 1.0 / (sh.head_dim as f32).sqrt();
    let null: u64 = 0;
    let mut parts = be.att_parts.lock().unwrap_or_else(|p| p.into_inner());
    let (po, pml) = &mut *parts;
    if splits > 1 {
        let (lo, lml) = (splits * a.n * sh.q_dim(), splits * a.n * sh.n_heads * 2);
        crate::matmul::grown(be, po, lo);
        crate::matmul::grown(be, pml, lml);
    }
    let mut b = be.stream.launch_builder(f);
    b.arg(&a.q.buf).arg(&a.k.buf).arg(&a.v.buf).arg(&ni);
    match a.cache {
        Some(c) if !a.outside.is_empty() => {
            b.arg(&c.k[a.layer]).arg(&c.v[a.layer]);
        }
        _ => {
            b.arg(&null).arg(&null);
        }
    }
    b.arg(&*outside)
        .arg(&n_out)
        .arg(&nh)
        .arg(&nkv)
        .arg(&hd)
        .arg(&scale)
        .arg(&mut out.buf);
    let kps_i = kps as i32;
    if tc.is_some() {
        b.arg(&kps_i);
        match (splits > 1, po.as_mut(), pml.as_mut()) {
            (true, Some(o), Some(ml)) => {
                b.arg(o).arg(ml);
            }
            _ => {
                b.arg(&null).arg(&null);
            }
        }
    }
    let cfg = LaunchConfig {
        grid_dim: (
            a.n.div_ceil(rows_per_block) as u32,
            sh.n_heads as u32,
            splits as u32,
        ),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(b, cfg);
    if let (Some(combine), true, Some(o), Some(ml)) = (tc, splits > 1, po.as_ref(), pml.as_ref()) {
        let (sp, ni) = (splits as i32, a.n as i32);
        let mut b = be.stream.launch_builder(combine);
        b.arg(o)
            .arg(ml)
            .arg(&sp)
            .arg(&ni)
            .arg(&nh)
            .arg(&hd)
            .arg(&mut out.buf);
        let cfg = LaunchConfig {
            grid_dim: (a.n as u32, sh.n_heads as u32, 1),
            block_dim: (sh.head_dim as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        launch(b, cfg);
    }
}

/// From raw scores `[n, heads, n_keys]` to the probes the CPU backend returns.
fn probes(
    scores: &[f32],
    n: usize,
    heads: usize,
    n_keys: usize,
    keys: Option<&[usize]>,
    mass: bool,
) -> LayerAttention {
    let inv_heads = 1.0 / heads as f32;
    let mut hp = vec![0f32; n * n_keys];
    for (p, sc) in scores.chunks(n_keys).enumerate() {
        let i = p / heads;
        let max = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let e: Vec<f32> = sc.iter().map(|&x| (x - max).exp()).collect();
        let inv = 1.0 / e.iter().sum::<f32>();
        for (acc, x) in hp[i * n_keys..(i + 1) * n_keys].iter_mut().zip(&e) {
            *acc += x * inv * inv_heads;
        }
    }
    let mut la = LayerAttention::default();
    if let Some(keys) = keys {
        la.columns = Vec::with_capacity(keys.len() * n);
        for &j in keys {
            la.columns.extend((0..n).map(|i| hp[i * n_keys + j]));
        }
    }
    if mass {
        la.mass = vec![0f32; n_keys];
        for r in hp.chunks(n_keys) {
            for (m, p) in la.mass.iter_mut().zip(r) {
                *m += p;
            }
        }
    }
    la
}
