//! GOP per CPU-second of each matmul path (process user+system time from /proc), for tuning on
//! a loaded machine:
//! `cargo run --release -p dlm-simd --example gemm_cpu -- ROWSxCOLS N[,N..] TYPE:PATH..`
//! (PATH: rows, int8, tiles, float, gemm). Several token counts share one quantization of the
//! weights; `--markdown` prints one table row per token count instead of a line per run.

use dlm_formats::QuantType;
use dlm_formats::quant::quantize;
use dlm_simd::{Kernels, MatmulPath, WeightRef, matmul_via};

fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// GOP per CPU-second and per wall second of `path` over one CPU-second of repeats.
fn measure(k: &Kernels, path: MatmulPath, w: &WeightRef<'_>, x: &[f32], n: usize) -> (f64, f64) {
    let mut y = vec![0f32; n * w.rows];
    matmul_via(k, path, w, &x[..n * w.cols], n, &mut y);
    let c0 = cpu_s();
    let t0 = std::time::Instant::now();
    let mut it = 0;
    while cpu_s() - c0 < 1.0 {
        matmul_via(k, path, w, &x[..n * w.cols], n, &mut y);
        it += 1;
    }
    let c = cpu_s() - c0;
    let ops = 2.0 * (w.rows * w.cols * n * it) as f64;
    (ops / c / 1e9, ops / t0.elapsed().as_secs_f64() / 1e9)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let markdown = args.iter().any(|a| a == "--markdown");
    args.retain(|a| a != "--markdown");
    if args.len() < 3 {
        eprintln!("usage: gemm_cpu ROWSxCOLS N[,N..] TYPE:PATH.. [--markdown]");
        std::process::exit(2);
    }
    let (rows, cols): (usize, usize) = args[0]
        .split_once('x')
        .and_then(|(r, c)| Some((r.parse().ok()?, c.parse().ok()?)))
        .expect("ROWSxCOLS");
    let ns: Vec<usize> = args[1]
        .split(',')
        .map(|v| v.parse().expect("token count"))
        .collect();
    let n_max = ns.iter().copied().max().unwrap_or(1);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1)
        .collect();
    let x: Vec<f32> = (0..n_max * cols)
        .map(|i| (i * 104729 % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let k = Kernels::best();
    let mut results = vec![Vec::new(); ns.len()];
    for name in &args[2..] {
        let (tn, pn) = name.split_once(':').expect("TYPE:PATH");
        let q = QuantType::from_name(tn).expect("a storage type");
        let path = match pn {
            "rows" => MatmulPath::Rows,
            "int8" => MatmulPath::Int8Gemm,
            "tiles" => MatmulPath::Tiles,
            "float" => MatmulPath::FloatRows,
            "gemm" => MatmulPath::Gemm,
            _ => panic!("unknown path {pn}: rows, int8, tiles, float or gemm"),
        };
        let rb = q.row_bytes(cols as u64).unwrap() as usize;
        let mut data = vec![0u8; rows * rb];
        for (d, s) in data.chunks_mut(rb).zip(w.chunks(cols)) {
            quantize(q, s, d).unwrap();
        }
        let wr = WeightRef {
            quant: q,
            rows,
            cols,
            data: &data,
        };
        for (i, &n) in ns.iter().enumerate() {
            let (cpu, wall) = measure(k, path, &wr, &x, n);
            if !markdown {
                println!(
                    "{name:14} {rows}x{cols}x{n}: {cpu:6.1} GOP per cpu-s ({wall:.1} GOP/s wall)"
                );
            }
            results[i].push(cpu);
        }
    }
    if markdown {
        for (i, n) in ns.iter().enumerate() {
            let cells: Vec<String> = results[i].iter().map(|v| format!("{v:.1}")).collect();
            println!("| {rows}×{cols}×{n} | {} |", cells.join(" | "));
        }
    }
}
