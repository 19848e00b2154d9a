//! GOP per CPU-second of each matmul path (process user+system time from /proc), for tuning on
//! a loaded machine: `cargo run --release -p dlm-simd --example gemm_cpu -- ROWSxCOLS N TYPE..`.

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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (rows, cols) = args[0]
        .split_once('x')
        .map(|(r, c)| (r.parse().unwrap(), c.parse().unwrap()))
        .unwrap();
    let n: usize = args[1].parse().unwrap();
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1)
        .collect();
    let x: Vec<f32> = (0..n * cols)
        .map(|i| (i * 104729 % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let k = Kernels::best();
    for name in &args[2..] {
        let (tn, pn) = name.split_once(':').unwrap();
        let q = QuantType::from_name(tn).unwrap();
        let path = match pn {
            "rows" => MatmulPath::Rows,
            "int8" => MatmulPath::Int8Gemm,
            "tiles" => MatmulPath::Tiles,
            "float" => MatmulPath::FloatRows,
            _ => MatmulPath::Gemm,
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
        let mut y = vec![0f32; n * rows];
        matmul_via(k, path, &wr, &x, n, &mut y);
        let c0 = cpu_s();
        let t0 = std::time::Instant::now();
        let mut it = 0;
        while cpu_s() - c0 < 1.0 {
            matmul_via(k, path, &wr, &x, n, &mut y);
            it += 1;
        }
        let c = cpu_s() - c0;
        let ops = 2.0 * (rows * cols * n * it) as f64;
        println!(
            "{name:14} {rows}x{cols}x{n}: {:6.1} GOP per cpu-s ({:.1} GOP/s wall)",
            ops / c / 1e9,
            ops / t0.elapsed().as_secs_f64() / 1e9
        );
    }
}
