//! Matmul at LLaDA-8B's layer shapes for every weight type, with the f32 GEMM as baseline in
//! the same run: groups `matmul_<type>/<impl>/<rows>x<cols>x<tokens>`, throughput in ops
//! (2·rows·cols·tokens, shown as elements/s).
//!
//! `DLM_BENCH_TOKENS=1,8`, `DLM_BENCH_TYPES=q4_k,f32` and `DLM_BENCH_SHAPES=4096x4096` narrow
//! the run. Each id names the path (`matmul_path`): the one `matmul` takes and, in the same
//! group, the one it took before the int8 GEMM and the float row kernels (f32 tiles / gemm).

#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dlm_formats::QuantType;
use dlm_formats::quant::quantize;
use dlm_simd::{Kernels, MatmulPath, WeightRef, matmul_path, matmul_via};
use rayon::prelude::*;
use std::time::Duration;

const SHAPES: [(usize, usize); 4] = [(1024, 1024), (4096, 4096), (12288, 4096), (4096, 12288)];
const TOKENS: [usize; 4] = [1, 8, 32, 256];
const TYPES: [QuantType; 6] = [
    QuantType::F32,
    QuantType::F16,
    QuantType::Q8_0,
    QuantType::Q4_0,
    QuantType::Q4K,
    QuantType::Q6K,
];

fn list<T: Copy>(var: &str, all: &[T], parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    match std::env::var(var) {
        Ok(s) => s.split(',').filter_map(|p| parse(p.trim())).collect(),
        Err(_) => all.to_vec(),
    }
}

/// Deterministic weights in about [-0.05, 0.05], like a trained layer's.
fn weights(n: usize) -> Vec<f32> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabcd;
            h ^= h >> 29;
            h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h ^= h >> 32;
            ((h >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let tokens = list("DLM_BENCH_TOKENS", &TOKENS, |s| s.parse().ok());
    let types = list("DLM_BENCH_TYPES", &TYPES, QuantType::from_name);
    let shapes = list("DLM_BENCH_SHAPES", &SHAPES, |s| {
        let (r, c) = s.split_once('x')?;
        Some((r.parse().ok()?, c.parse().ok()?))
    });
    let k = Kernels::best();
    for (rows, cols) in shapes {
        let w = weights(rows * cols);
        let x = weights(256 * cols);
        for &q in &types {
            let rb = q.row_bytes(cols as u64).expect("shape") as usize;
            let mut data = vec![0u8; rows * rb];
            data.par_chunks_mut(rb)
                .zip(w.par_chunks(cols))
                .for_each(|(d, s)| quantize(q, s, d).expect("quantize"));
            let wr = WeightRef {
                quant: q,
                rows,
                cols,
                data: &data,
            };
            let mut g = c.benchmark_group(format!("matmul_{}", q.name()));
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(1));
            for &n in &tokens {
                let mut y = vec![0f32; n * rows];
                // the path matmul takes, and the one it would take without the new kernels
                let chosen = matmul_path(k, q, n);
                let other: &[MatmulPath] = match chosen {
                    MatmulPath::Int8Gemm if n < 80 => &[MatmulPath::Rows, MatmulPath::Tiles],
                    MatmulPath::Int8Gemm => &[MatmulPath::Tiles],
                    MatmulPath::Rows if n >= 8 => &[MatmulPath::Tiles],
                    MatmulPath::Tiles if k.gemm(q).is_some() => &[MatmulPath::Int8Gemm],
                    MatmulPath::FloatRows if q == QuantType::F32 => &[MatmulPath::Gemm],
                    MatmulPath::FloatRows => &[MatmulPath::Tiles],
                    _ => &[],
                };
                g.throughput(Throughput::Elements((2 * rows * cols * n) as u64));
                for &path in std::iter::once(&chosen).chain(other) {
                    let id = BenchmarkId::new(
                        format!("{}/{}", path.name(), k.name),
                        format!("{rows}x{cols}x{n}"),
                    );
                    let xs = &x[..n * cols];
                    g.bench_function(id, |b| b.iter(|| matmul_via(k, path, &wr, xs, n, &mut y)));
                }
            }
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = bench
}
criterion_main!(benches);
