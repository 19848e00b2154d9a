//! The CUDA backend against the CPU backend.
//!
//! On the model that travels with the repo (`models/demo`, or the HF folder or `.dlm` that
//! `DLM_CUDA_PARITY_MODEL` names: a folder is converted to every type, a `.dlm` is used as
//! stored), so these run on a GPU machine without `../shared`:
//! - `matmul_matches_a_reference_per_type`: the matmul of every weight type, at n = 1, 3, 32,
//!   64, 65, 300 rows and an odd number of weight rows (so every path: few-row kernel, cuBLAS,
//!   the simple kernel for widths not a multiple of 8), against f64 dot products of the
//!   dequantized weights;
//! - `attention_matches_a_reference`: both attention kernels, GQA and cached keys, in f64;
//! - `demo_logits_per_type_match_the_cpu`: logits of text canvases per type: within 1e-3
//!   relative (max |gpu − cpu| / max |cpu|) at f32, top-1 agreement at least 99.5 % at the
//!   other types (97 % at q4_0; the CPU multiplies quantized weights by int8-quantized
//!   activations, the GPU by f32 or bf16 ones);
//! - `demo_greedy_canvases_match_the_cpu`: greedy generation at f32, without cache and with
//!   the dual cache, gives the CPU's canvas.
//!
//! On the reference fixtures (`../shared/reference`, or the folder `DLM_REFERENCE` names; the
//! tests fail without them, and `tools/cuda/device_check.sh` leaves them out, saying so, when
//! `DLM_REFERENCE` is not set):
//! - logits of every golden prompt's canvas within 1e-3 relative at f32 weights;
//! - every golden `generate` case gives the same canvas on the GPU as on the CPU at f32;
//! - top-1 agreement of the logits rows at q8_0, q4_0 and q4_k, weights in each type on both
//!   sides.
//!
//! Without the `cuda` feature the one test here is ignored; with it, the GPU tests are ignored
//! unless `nvidia-smi` listed a GPU at build time (`build/test_cfg.rs`): a test binary built on
//! a machine without one runs them on a GPU machine with `--include-ignored`, and there a
//! missing driver or device fails the test instead of skipping it.

mod common;

#[cfg(not(feature = "cuda"))]
#[test]
#[ignore = "needs a build with --features cuda (and a GPU)"]
fn cuda_parity() {}

#[cfg(feature = "cuda")]
mod gpu {
    use super::common;
    use dlm_runtime::decode::{self, DecodeParams, DecodeTokens};
    use dlm_runtime::model::{Forward, Model};
    use serde_json::Value;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    fn reference() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("DLM_REFERENCE") {
            return Some(PathBuf::from(d));
        }
        common::reference_dir()
    }

    /// GPU 0, with every kernel file and cuBLAS loaded (a fallback would hide a broken kernel
    /// behind the simple ones); a test asked to run without a GPU fails here.
    fn backend() -> dlm_cuda::CudaBackend {
        let be = dlm_cuda::CudaBackend::new(0).expect("a CUDA driver and GPU");
        let report = be.kernel_report();
        println!("kernels: {report:?}");
        assert!(
            report.iter().all(|l| l.contains(": ok")),
            "a kernel file or cuBLAS did not load: {report:?}"
        );
        be
    }

    /// The model at `path` on GPU 0.
    fn on_gpu(path: &Path) -> Model {
        let mapped = dlm_formats::MappedFile::open(path).expect("map model");
        Model::with_backend(Arc::new(mapped), backend()).expect("load on the GPU")
    }

    fn expected_files(reference: &Path, name: &str) -> Vec<Value> {
        ["expected.json", "expected-cache.json"]
            .iter()
            .filter_map(|s| std::fs::read_to_string(reference.join(format!("{name}.{s}"))).ok())
            .map(|t| serde_json::from_str(&t).expect("expected json parses"))
            .collect()
    }

    /// Every golden case's prompt followed by its masks.
    fn canvases(expected: &[Value], mask: u32) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        for e in expected {
            for case in e["generate"].as_array().into_iter().flatten() {
                let mut c = common::ids(&case["prompt"]);
                let want = common::ids(&case["output"]);
                let n_gen = want.len().saturating_sub(c.len());
                c.extend(std::iter::repeat_n(mask, n_gen.max(1)));
                out.push(c);
            }
        }
        out
    }

    fn all_logits(m: &Model, canvas: &[u32]) -> Vec<f32> {
        let rows: Vec<usize> = (0..canvas.len()).collect();
        m.logits(canvas, &rows).expect("logits")
    }

    fn argmax(r: &[f32]) -> usize {
        (0..r.len()).fold(0, |b, i| if r[i] > r[b] { i } else { b })
    }

    #[test]
    #[cfg_attr(
        not(dlm_gpu),
        ignore = "needs an NVIDIA GPU (nvidia-smi at build time)"
    )]
    fn logits_and_canvases_match_the_cpu_at_f32() {
        // A GPU run that cannot see the fixtures fails: a skip that passes would look like a
        // check (device_check.sh leaves these tests out, and says so, when it has none).
        let Some(reference) = reference() else {
            panic!("no ../shared/reference: set DLM_REFERENCE to a copy of it");
        };
        for name in ["llada-tiny", "dream-tiny"] {
            let dir = common::temp_dir(&format!("cuda-{name}"));
            let path = common::convert_reference(&reference, name, "f32", &dir);
            let cpu = Model::open(&path).expect("open on the CPU");
            let gpu = on_gpu(&path);
            assert_eq!(gpu.device(), "cuda:0");
            let expected = expected_files(&reference, name);
            let mask = expected[0]["mask_id"].as_u64().expect("mask_id") as u32;
            let mut worst = 0f64;
            for c in canvases(&expected, mask) {
                let (a, b) = (all_logits(&cpu, &c), all_logits(&gpu, &c));
                assert_eq!(a.len(), b.len());
                let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
                let diff = a
                    .iter()
                    .zip(&b)
                    .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
                worst = worst.max(diff / scale);
            }
            println!("{name}: f32 logits, max |gpu - cpu| / max |cpu| = {worst:.3e}");
            assert!(
                worst <= 1e-3,
                "{name}: logits differ by {worst:.3e} relative"
            );

            let tokens: DecodeTokens =
                common::decode_tokens(&expected[0], cpu.config().shift_logits);
            let (mut same, mut total) = (0, 0);
            let mut differ = Vec::new();
            // expected.json only: expected-cache.json's cases (Dream in Fast-dLLM blocks) have
            // their own mapping in tests/generate_cache_reference.rs.
            for (f, e) in expected.iter().take(1).enumerate() {
                for (k, case) in e["generate"].as_array().into_iter().flatten().enumerate() {
                    let prompt = common::ids(&case["prompt"]);
                    let params: DecodeParams = common::decode_params(case);
                    let run = |m: &Model| {
                        decode::generate(m, &tokens, &prompt, &params, &mut |_| true)
                            .expect("generate")
                            .canvas
                    };
                    let (c, g) = (run(&cpu), run(&gpu));
                    total += 1;
                    if c == g {
                        same += 1;
                    } else {
                        let at = c.iter().zip(&g).position(|(a, b)| a != b);
                        differ.push(format!("file {f} case {k}: first difference at {at:?}"));
                    }
                }
            }
            println!("{name}: {same}/{total} golden canvases identical on the GPU and the CPU");
            assert!(differ.is_empty(), "{name}: canvases differ: {differ:?}");
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    #[test]
    #[cfg_attr(
        not(dlm_gpu),
        ignore = "needs an NVIDIA GPU (nvidia-smi at build time)"
    )]
    fn quantized_top1_agrees_with_the_cpu() {
        // A GPU run that cannot see the fixtures fails: a skip that passes would look like a
        // check (device_check.sh leaves these tests out, and says so, when it has none).
        let Some(reference) = reference() else {
            panic!("no ../shared/reference: set DLM_REFERENCE to a copy of it");
        };
        let mut failures = Vec::new();
        for name in ["llada-tiny", "dream-tiny"] {
            for policy in ["q8_0", "q4_0", "q4_k"] {
                let dir = common::temp_dir(&format!("cuda-{name}-{policy}"));
                let path = common::convert_reference(&reference, name, policy, &dir);
                let cpu = Model::open(&path).expect("open on the CPU");
                let gpu = on_gpu(&path);
                let expected = expected_files(&reference, name);
                let mask = expected[0]["mask_id"].as_u64().expect("mask_id") as u32;
                let vocab = cpu.vocab_size();
                let (mut agree, mut rows) = (0usize, 0usize);
                for c in canvases(&expected, mask) {
                    let (a, b) = (all_logits(&cpu, &c), all_logits(&gpu, &c));
                    for (ra, rb) in a.chunks(vocab).zip(b.chunks(vocab)) {
                        rows += 1;
                        agree += usize::from(argmax(ra) == argmax(rb));
                    }
                }
                let rate = agree as f64 / rows as f64;
                println!(
                    "{name} {policy}: top-1 agreement {agree}/{rows} = {:.2} %",
                    100.0 * rate
                );
                if rate < 0.995 {
                    failures.push(format!("{name} {policy}: top-1 agreement {rate:.4}"));
                }
                std::fs::remove_dir_all(&dir).ok();
            }
        }
        assert!(failures.is_empty(), "{failures:?}");
    }

    // ---- the model that travels with the repo, and unit checks ----

    use dlm_formats::QuantType;
    use dlm_runtime::backend::{AttentionArgs, AttentionShape, Backend, CacheShape};
    use dlm_runtime::decode::{CacheMode, Rng};

    /// Every storage type, by its policy name.
    const TYPES: [&str; 7] = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k"];

    /// `DLM_CUDA_PARITY_MODEL`, else `models/demo` of this checkout.
    fn parity_model() -> PathBuf {
        match std::env::var_os("DLM_CUDA_PARITY_MODEL") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo"),
        }
    }

    /// The parity model as `.dlm` files in `dir`: `(type, path)` per type for an HF folder,
    /// the file itself (named by its stored type) for a `.dlm`.
    fn model_per_type(dir: &Path) -> Vec<(String, PathBuf)> {
        let src = parity_model();
        if src.extension().is_some_and(|e| e == "dlm") {
            let m = Model::open(&src).expect("open DLM_CUDA_PARITY_MODEL");
            let q = m.weights().layers[0].wq.quant.name().to_string();
            return vec![(q, src)];
        }
        TYPES
            .iter()
            .map(|t| {
                let out = dir.join(format!("{t}.dlm"));
                let mut opts = dlm_convert::ConvertOptions::new(&src, &out);
                opts.policy = dlm_convert::QuantPolicy::from_name(t).expect("policy");
                dlm_convert::convert(&opts, &mut |_| {}).expect("convert the parity model");
                (t.to_string(), out)
            })
            .collect()
    }

    /// Seeded values in [-1, 1).
    fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| 2.0 * rng.uniform() as f32 - 1.0).collect()
    }

    #[test]
    #[cfg_attr(
        not(dlm_gpu),
        ignore = "needs an NVIDIA GPU (nvidia-smi at build time)"
    )]
    fn matmul_matches_a_reference_per_type() {
        let mut be = backend();
        let defaults = be.tuning();
        // Every path: the defaults (int8.cu for q8_0/q4_0/q4_k; cuBLAS for many rows, tensor
        // cores for 9..64 rows of q6_k, CUDA cores below), then the bf16 paths of the quantized
        // types (no int8), then without the tensor-core kernel, then without cuBLAS.
        let tunings = [
            ("default", defaults),
            (
                "no int8",
                dlm_cuda::Tuning {
                    int8_max_rows: 0,
                    ..defaults
                },
            ),
            (
                "no mma",
                dlm_cuda::Tuning {
                    int8_max_rows: 0,
                    mma_min_rows: usize::MAX,
                    ..defaults
                },
            ),
            (
                "no cublas",
                dlm_cuda::Tuning {
                    int8_max_rows: 0,
                    gemm_min_rows_quant: usize::MAX,
                    gemm_min_rows_float: usize::MAX,
                    ..defaults
                },
            ),
        ];
        let mut rng = Rng::new(11);
        let mut failures = Vec::new();
        for t in TYPES {
            let q = QuantType::from_name(t).expect("type");
            // Widths that are whole blocks of the type, among 512, 768 (6 column tiles of 128),
            // 1152 (9 tiles; not whole 256-blocks) and 100 (not a multiple of 8: the simple
            // kernel, float types only). Rows odd, and not a multiple of any block of rows.
            let widths: Vec<usize> = [512usize, 768, 1152, 100]
                .into_iter()
                .filter(|&c| q.row_bytes(c as u64).is_some())
                .collect();
            for cols in widths {
                let rows = 37;
                let w = random(&mut rng, rows * cols);
                let row_bytes = q.row_bytes(cols as u64).expect("row bytes") as usize;
                let mut bytes = vec![0u8; rows * row_bytes];
                let mut deq = vec![0f32; rows * cols]; // [rows, cols] what the GPU multiplies
                for r in 0..rows {
                    let (src, dst) = (
                        &w[r * cols..][..cols],
                        &mut bytes[r * row_bytes..][..row_bytes],
                    );
                    dlm_formats::quant::quantize(q, src, dst).expect("quantize");
                    dlm_formats::quant::dequantize(q, dst, &mut deq[r * cols..][..cols])
                        .expect("dequantize");
                }
                let m = be.upload_weights(q, rows, cols, &bytes).expect("upload");
                let int8 = matches!(q, QuantType::Q8_0 | QuantType::Q4_0 | QuantType::Q4K);
                for n in [1usize, 3, 32, 64, 65, 300] {
                    let x = random(&mut rng, n * cols);
                    let xa = be.upload_act(&x).expect("upload x");
                    // What the CPU computes (int8 activations for quantized weights): int8.cu
                    // must match it up to f32 summation order.
                    let mut cpu = vec![0f32; n * rows]; // [n, rows]
                    let wref = dlm_simd::WeightRef {
                        quant: q,
                        rows,
                        cols,
                        data: &bytes,
                    };
                    dlm_simd::matmul(&wref, &x, n, &mut cpu);
                    for (label, tuning) in &tunings {
                        be.set_tuning(*tuning);
                        let mut out = be.alloc(n * rows).expect("alloc");
                        be.matmul(&m, &xa, n, &mut out);
                        let got = be.to_host(&out);
                        // f32: f32 arithmetic; the others may run in bf16/f16 operands.
                        let tol = if q == QuantType::F32 { 1e-5 } else { 1.2e-2 };
                        let mut worst = 0f64;
                        for i in 0..n {
                            for r in 0..rows {
                                let (xr, wr) = (&x[i * cols..][..cols], &deq[r * cols..][..cols]);
                                let (mut want, mut mag) = (0f64, 0f64);
                                for (&a, &b) in xr.iter().zip(wr) {
                                    want += a as f64 * b as f64;
                                    mag += (a as f64 * b as f64).abs();
                                }
                                let err = (got[i * rows + r] as f64 - want).abs() / mag.max(1e-30);
                                worst = worst.max(if err.is_nan() { f64::INFINITY } else { err });
                            }
                        }
                        println!(
                            "matmul {t} [{rows}, {cols}] n {n} ({label}): max error / sum|terms| = {worst:.2e}"
                        );
                        if int8
                            && tuning.int8_max_rows >= n
                            && be.kernel_report().iter().any(|l| l == "int8.cu: ok")
                        {
                            let mut worst_cpu = 0f64;
                            for i in 0..n {
                                for r in 0..rows {
                                    let mag: f64 = (0..cols)
                                        .map(|c| {
                                            (x[i * cols + c] as f64 * deq[r * cols + c] as f64)
                                                .abs()
                                        })
                                        .sum();
                                    let e = (got[i * rows + r] - cpu[i * rows + r]).abs() as f64
                                        / mag.max(1e-30);
                                    worst_cpu =
                                        worst_cpu.max(if e.is_nan() { f64::INFINITY } else { e });
                                }
                            }
                            println!(
                                "  int8.cu against the CPU: max |gpu - cpu| / sum|terms| = {worst_cpu:.2e}"
                            );
                            if worst_cpu > 1e-5 {
                                failures.push(format!(
                                    "{t} cols {cols} n {n} ({label}): int8 path differs from the CPU by {worst_cpu:.2e}"
                                ));
                            }
                        }
                        if worst > tol {
                            failures.push(format!(
                                "{t} cols {cols} n {n} ({label}): {worst:.2e} > {tol:.0e}"
                            ));
                        }
                    }
                    be.set_tuning(defaults);
                }
            }
        }
        assert!(failures.is_empty(), "matmul errors: {failures:?}");
    }

    /// softmax(q·kᵀ/√d)·v per head in f64: q `[n, heads*hd]`, keys/values `[n_keys, kv*hd]`.
    fn attention_ref(
        q: &[f32],
        keys: &[f32],
        values: &[f32],
        n: usize,
        sh: AttentionShape,
    ) -> Vec<f32> {
        let (hd, qd, kd) = (sh.head_dim, sh.q_dim(), sh.kv_dim());
        let n_keys = keys.len() / kd;
        let mut out = vec![0f32; n * qd];
        for i in 0..n {
            for h in 0..sh.n_heads {
                let g = h / (sh.n_heads / sh.n_kv_heads);
                let qi = &q[i * qd + h * hd..][..hd];
                let s: Vec<f64> = (0..n_keys)
                    .map(|j| {
                        let kj = &keys[j * kd + g * hd..][..hd];
                        qi.iter()
                            .zip(kj)
                            .map(|(&a, &b)| a as f64 * b as f64)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = s.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let o: f64 = (0..n_keys)
                        .map(|j| e[j] * values[j * kd + g * hd + d] as f64)
                        .sum();
                    out[i * qd + h * hd + d] = (o / sum) as f32;
                }
            }
        }
        out
    }

    #[test]
    #[cfg_attr(
        not(dlm_gpu),
        ignore = "needs an NVIDIA GPU (nvidia-smi at build time)"
    )]
    fn attention_matches_a_reference() {
        let mut be = backend();
        let defaults = be.tuning();
        // flash_tc.cu (f16 and bf16 tensor cores), flash.cu (f32), kernels.cu's one block per
        // row. The f16 bound is 8x tighter than the bf16 one (3 more bits of mantissa).
        let kernels = [
            (
                "tensor cores, f16",
                dlm_cuda::Tuning {
                    flash_f16: true,
                    ..defaults
                },
                4e-3f32,
            ),
            (
                "tensor cores, bf16",
                dlm_cuda::Tuning {
                    flash_f16: false,
                    ..defaults
                },
                3e-2,
            ),
            (
                "f32 tiles",
                dlm_cuda::Tuning {
                    flash_tc: false,
                    ..defaults
                },
                1e-4,
            ),
            (
                "per row",
                dlm_cuda::Tuning {
                    flash_min_rows: usize::MAX,
                    ..defaults
                },
                1e-4,
            ),
        ];
        let mut rng = Rng::new(5);
        let mut failures = Vec::new();
        // (span rows, cached rows outside the span, heads, kv heads, head_dim); 256-wide heads
        // always take kernels.cu.
        for (n, n_out, nh, nkv, hd) in [
            (20, 0, 4, 2, 64),
            (20, 45, 4, 2, 64),
            (100, 0, 4, 4, 128),
            (100, 61, 6, 2, 64),
            (300, 33, 2, 1, 128),
            (70, 10, 2, 2, 96),
            (65, 7, 2, 1, 256),
        ] {
            let sh = AttentionShape {
                n_heads: nh,
                n_kv_heads: nkv,
                head_dim: hd,
            };
            let (qd, kd) = (sh.q_dim(), sh.kv_dim());
            let q = random(&mut rng, n * qd);
            let k = random(&mut rng, n * kd);
            let v = random(&mut rng, n * kd);
            // Cached rows at positions n..n+n_out of a cache (the span sits at 0..n).
            let ck = random(&mut rng, n_out * kd);
            let cv = random(&mut rng, n_out * kd);
            let outside: Vec<usize> = (n..n + n_out).collect();
            let mut cache = be
                .new_cache(CacheShape {
                    n_layers: 1,
                    len: n + n_out,
                    kv_dim: kd,
                    hidden_dim: None,
                })
                .expect("cache");
            if n_out > 0 {
                let (cka, cva) = (
                    be.upload_act(&ck).expect("k"),
                    be.upload_act(&cv).expect("v"),
                );
                be.store_kv(&mut cache, 0, &outside, &cka, &cva);
            }
            let (qa, ka, va) = (
                be.upload_act(&q).expect("q"),
                be.upload_act(&k).expect("k"),
                be.upload_act(&v).expect("v"),
            );
            let keys: Vec<f32> = k.iter().chain(&ck).copied().collect();
            let values: Vec<f32> = v.iter().chain(&cv).copied().collect();
            let want = attention_ref(&q, &keys, &values, n, sh);
            for (label, tuning, tol) in &kernels {
                be.set_tuning(*tuning);
                let mut out = be.alloc(n * qd).expect("alloc");
                let args = AttentionArgs {
                    q: &qa,
                    k: &ka,
                    v: &va,
                    n,
                    outside: &outside,
                    cache: (n_out > 0).then_some(&cache),
                    layer: 0,
                    shape: sh,
                    probe_keys: None,
                    probe_mass: false,
                };
                assert!(be.attention(args, &mut out).is_none());
                let got = be.to_host(&out);
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| {
                        if a.is_nan() {
                            f32::INFINITY
                        } else {
                            (a - b).abs()
                        }
                    })
                    .fold(0f32, f32::max);
                println!(
                    "attention ({label}) n {n} outside {n_out} heads {nh}/{nkv} hd {hd}: max |err| = {worst:.2e}"
                );
                if worst > *tol {
                    failures.push(format!(
                        "{label} n {n} outside {n_out} hd {hd}: {worst:.2e}"
                    ));
                }
            }
            be.set_tuning(defaults);
        }
        assert!(failures.is_empty(), "attention errors: {failures:?}");
    }

    /// Text canvases of the parity model: 300 tokens (full-canvas paths), 48 + 16 masks, and
    /// 20 + 12 masks (few-row paths).
    fn demo_canvases(cpu_f32: &Path) -> Vec<Vec<u32>> {
        let engine = dlm_runtime::Engine::open(cpu_f32).expect("open on the CPU");
        // The parity model's held-out text when it is a folder that has one (models/demo does).
        let text = std::fs::read_to_string(parity_model().join("heldout.txt"))
            .unwrap_or_else(|_| "The quick brown fox jumps over the lazy dog. ".repeat(60));
        let ids = engine.tokenizer().encode(&text);
        let mask = engine.decode_tokens().mask_id;
        let seq = engine.model().config().seq_len;
        let take = |k: usize| {
            ids.iter()
                .copied()
                .cycle()
                .take(k.min(seq))
                .collect::<Vec<_>>()
        };
        let with_masks = |k: usize, m: usize| {
            let mut c = take(k);
            c.extend(std::iter::repeat_n(mask, m));
            c
        };
        vec![take(300), with_masks(48, 16), with_masks(20, 12)]
    }

    #[test]
    #[cfg_attr(
        not(dlm_gpu),
        ignore = "needs an NVIDIA GPU (nvidia-smi at build time)"
    )]
    fn demo_logits_per_type_match_the_cpu() {
        let dir = common::temp_dir("cuda-demo-types");
        let models = model_per_type(&dir);
        let canvases = demo_canvases(&models[0].1);
        let mut failures = Vec::new();
        for (t, path) in &models {
            let cpu = Model::open(path).expect("open on the CPU");
            let gpu = on_gpu(path);
            let vocab = cpu.vocab_size();
            let (mut agree, mut rows, mut worst) = (0usize, 0usize, 0f64);
            for c in &canvases {
                let (a, b) = (all_logits(&cpu, c), all_logits(&gpu, c));
                let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
                let diff = a.iter().zip(&b).fold(0f64, |m, (x, y)| {
                    let d = (x - y).abs() as f64;
                    m.max(if d.is_nan() { f64::INFINITY } else { d })
                });
                worst = worst.max(diff / scale);
                for (ra, rb) in a.chunks(vocab).zip(b.chunks(vocab)) {
                    rows += 1;
                    agree += usize::from(argmax(ra) == argmax(rb));
                }
            }
            let rate = agree as f64 / rows as f64;
            println!(
                "demo {t}: max |gpu - cpu| / max |cpu| = {worst:.3e}, top-1 agreement {agree}/{rows} = {:.2} %",
                100.0 * rate
            );
            if t == "f32" && worst > 1e-3 {
                failures.push(format!("{t}: logits differ by {worst:.3e} relative"));
            }
            let need = if t == "q4_0" { 0.97 } else { 0.995 };
            if rate < need {
                failures.push(format!("{t}: top-1 agreement {rate:.4} < {need}"));
            }
        }
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    #[cfg_attr(
        not(dlm_gpu),
        ignore = "needs an NVIDIA GPU (nvidia-smi at build time)"
    )]
    fn demo_greedy_canvases_match_the_cpu() {
        let dir = common::temp_dir("cuda-demo-greedy");
        let models = model_per_type(&dir);
        let Some((_, path)) = models.iter().find(|(t, _)| t == "f32") else {
            panic!("DLM_CUDA_PARITY_MODEL is a .dlm that is not f32: give a folder or an f32 file");
        };
        let cpu = dlm_runtime::Engine::open(path).expect("open on the CPU");
        let gpu = on_gpu(path);
        let tokens = cpu.decode_tokens().clone();
        let text = "Once upon a time, in a small village by the sea, there lived";
        let prompt = cpu.tokenizer().encode(text);
        let mut differ = Vec::new();
        for cache in [CacheMode::None, CacheMode::Dual] {
            let mut params = cpu.defaults().clone();
            params.gen_length = 64;
            params.block_length = Some(32);
            params.steps = 64;
            params.temperature = 0.0;
            params.threshold = None;
            params.cache = cache;
            let run = |m: &Model| {
                decode::generate(m, &tokens, &prompt, &params, &mut |_| true)
                    .expect("generate")
                    .canvas
            };
            let (c, g) = (run(cpu.model()), run(&gpu));
            let at = c.iter().zip(&g).position(|(a, b)| a != b);
            println!("demo f32 greedy, cache {cache:?}: first difference at {at:?}");
            if c != g {
                differ.push(format!("cache {cache:?}: first difference at {at:?}"));
            }
        }
        assert!(differ.is_empty(), "canvases differ: {differ:?}");
    }

    #[test]
    #[cfg_attr(
        not(dlm_gpu),
        ignore = "needs an NVIDIA GPU (nvidia-smi at build time)"
    )]
    fn propose_matches_the_cpu_per_rule() {
        use dlm_runtime::decode::{DreamConfidence, Filter, ProposeSpec, RowRule, propose_rows};
        let be = backend();
        let mut rng = Rng::new(9);
        let (rows, vocab) = (37, 5003);
        let mut logits: Vec<f32> = random(&mut rng, rows * vocab)
            .iter()
            .map(|x| 8.0 * x)
            .collect();
        logits[3 * vocab + 17] = 40.0; // one confident row
        logits[5 * vocab + 2] = logits[5 * vocab + 9]; // a tie somewhere
        let dev = be.upload_act(&logits).expect("upload");
        let mut failures = Vec::new();
        for rule in [
            RowRule::Llada,
            RowRule::Dream(DreamConfidence::Probability),
            RowRule::Dream(DreamConfidence::Margin),
            RowRule::Dream(DreamConfidence::NegEntropy),
        ] {
            for (temperature, random_confidence) in [(0.0, false), (0.0, true), (0.7, false)] {
                let spec = ProposeSpec {
                    rule,
                    temperature,
                    filter: Filter::default(),
                    random_confidence,
                };
                let want = propose_rows(&logits, vocab, &spec, &mut Rng::new(1));
                let got = be.propose(&dev, vocab, &spec, &mut Rng::new(1));
                let bad = want
                    .iter()
                    .zip(&got)
                    .filter(|(a, b)| {
                        a.token != b.token
                            || (a.confidence - b.confidence).abs()
                                > 1e-9 * a.confidence.abs().max(1e-3)
                    })
                    .count();
                println!(
                    "propose {rule:?} T {temperature} random {random_confidence}: {bad} of {rows} rows differ"
                );
                if bad > 0 {
                    failures.push(format!(
                        "{rule:?} T {temperature} random {random_confidence}: {bad}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    #[cfg_attr(
        not(dlm_gpu),
        ignore = "needs an NVIDIA GPU (nvidia-smi at build time)"
    )]
    fn batched_matmuls_match_one_by_one() {
        // matmul_many runs same-shaped f16/bf16 matrices as one batched cuBLAS GEMM from
        // gemm_min_rows_float rows; it must give what matmul gives for each matrix.
        let be = backend();
        let mut rng = Rng::new(23);
        let (rows, cols) = (72usize, 256usize);
        for q in [QuantType::BF16, QuantType::F16] {
            let row_bytes = q.row_bytes(cols as u64).expect("row bytes") as usize;
            let ms: Vec<_> = (0..3)
                .map(|_| {
                    let w = random(&mut rng, rows * cols);
                    let mut bytes = vec![0u8; rows * row_bytes];
                    for (src, dst) in w.chunks(cols).zip(bytes.chunks_mut(row_bytes)) {
                        dlm_formats::quant::quantize(q, src, dst).expect("quantize");
                    }
                    be.upload_weights(q, rows, cols, &bytes).expect("upload")
                })
                .collect();
            for n in [3usize, 40, 300] {
                let xa = be
                    .upload_act(&random(&mut rng, n * cols))
                    .expect("upload x");
                let mut one: Vec<_> = (0..3).map(|_| be.alloc(n * rows).expect("alloc")).collect();
                for (m, o) in ms.iter().zip(one.iter_mut()) {
                    be.matmul(m, &xa, n, o);
                }
                let mut many: Vec<_> = (0..3).map(|_| be.alloc(n * rows).expect("alloc")).collect();
                let ws: Vec<_> = ms.iter().collect();
                let mut outs: Vec<_> = many.iter_mut().collect();
                be.matmul_many(&ws, &xa, n, &mut outs);
                for (a, b) in one.iter().zip(&many) {
                    let (a, b) = (be.to_host(a), be.to_host(b));
                    let worst = a
                        .iter()
                        .zip(&b)
                        .map(|(x, y)| ((x - y).abs() / x.abs().max(1.0)) as f64)
                        .fold(0f64, f64::max);
                    println!("matmul_many {} n {n}: max difference {worst:.2e}", q.name());
                    assert!(
                        worst < 1e-4,
                        "{} n {n}: batched differs by {worst:.2e}",
                        q.name()
                    );
                }
            }
        }
    }

    #[test]
    #[cfg_attr(
        not(dlm_gpu),
        ignore = "needs an NVIDIA GPU (nvidia-smi at build time)"
    )]
    fn int8_inputs_are_requantized_after_a_write() {
        // int8.cu keeps the last input's quantized copy for the next matmul of the same buffer;
        // a write to that buffer (here add_assign, then a matmul into it) must drop it.
        let be = backend();
        let mut rng = Rng::new(21);
        let (rows, cols, n) = (40usize, 256usize, 5usize);
        let q = QuantType::Q8_0;
        let row_bytes = q.row_bytes(cols as u64).expect("row bytes") as usize;
        let mut bytes = vec![0u8; rows * row_bytes];
        let w = random(&mut rng, rows * cols);
        for (src, dst) in w.chunks(cols).zip(bytes.chunks_mut(row_bytes)) {
            dlm_formats::quant::quantize(q, src, dst).expect("quantize");
        }
        let m = be.upload_weights(q, rows, cols, &bytes).expect("upload");
        // zero f32 weights: a matmul into x that int8.cu does not take, so only the write hook
        // can drop x's quantized copy
        let sq = be
            .upload_weights(QuantType::F32, cols, cols, &vec![0u8; cols * cols * 4])
            .expect("upload");
        let wref = dlm_simd::WeightRef {
            quant: q,
            rows,
            cols,
            data: &bytes,
        };
        let cpu = |x: &[f32]| {
            let mut y = vec![0f32; n * rows];
            dlm_simd::matmul(&wref, x, n, &mut y);
            y
        };
        let x0 = random(&mut rng, n * cols);
        let dx = random(&mut rng, n * cols);
        let mut xa = be.upload_act(&x0).expect("upload x");
        let mut out = be.alloc(n * rows).expect("alloc");
        be.matmul(&m, &xa, n, &mut out);
        let first = be.to_host(&out);
        be.add_assign(&mut xa, &be.upload_act(&dx).expect("upload dx"));
        be.matmul(&m, &xa, n, &mut out);
        let second = be.to_host(&out);
        // a matmul into the cached buffer makes x all zeros
        let other = be.upload_act(&x0).expect("upload");
        be.matmul(&m, &xa, n, &mut out);
        be.matmul(&sq, &other, n, &mut xa);
        be.matmul(&m, &xa, n, &mut out);
        let third = be.to_host(&out);
        let x1: Vec<f32> = x0.iter().zip(&dx).map(|(a, b)| a + b).collect();
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()))
        };
        assert!(
            close(&first, &cpu(&x0)),
            "first matmul differs from the CPU"
        );
        assert!(
            close(&second, &cpu(&x1)),
            "stale quantized input after add_assign"
        );
        assert!(
            third.iter().all(|&v| v == 0.0),
            "stale quantized input after a matmul into it"
        );
    }

    #[test]
    #[cfg_attr(
        not(dlm_gpu),
        ignore = "needs an NVIDIA GPU (nvidia-smi at build time)"
    )]
    fn matmul_speed_at_8b_shapes() {
        // Not a check: the time of one matmul per path at the LLaDA-8B shapes (zero weights:
        // the kernels' speed does not depend on the values), for docs/cuda-bench.md.
        let mut be = backend();
        let defaults = be.tuning();
        let old = dlm_cuda::Tuning {
            int8_max_rows: 0,
            ..defaults
        };
        for t in ["q8_0", "q4_k"] {
            let q = QuantType::from_name(t).expect("type");
            for (rows, cols) in [
                (4096usize, 4096usize),
                (12288, 4096),
                (4096, 12288),
                (126464, 4096),
            ] {
                let row_bytes = q.row_bytes(cols as u64).expect("row bytes") as usize;
                let bytes = vec![0u8; rows * row_bytes];
                let m = be.upload_weights(q, rows, cols, &bytes).expect("upload");
                for n in [1usize, 32, 512] {
                    let xa = be.upload_act(&vec![0.5f32; n * cols]).expect("upload x");
                    let mut out = be.alloc(n * rows).expect("alloc");
                    // one stream: reading this back waits for every matmul queued before
                    let sync = be.alloc(1).expect("alloc");
                    for (label, tuning) in [("int8", defaults), ("bf16 paths", old)] {
                        be.set_tuning(tuning);
                        be.matmul(&m, &xa, n, &mut out);
                        be.to_host(&sync);
                        let reps = 20;
                        let t0 = std::time::Instant::now();
                        for _ in 0..reps {
                            be.matmul(&m, &xa, n, &mut out);
                        }
                        be.to_host(&sync);
                        let s = t0.elapsed().as_secs_f64() / reps as f64;
                        println!(
                            "speed {t} [{rows}, {cols}] n {n} ({label}): {:.3} ms, {:.0} GB/s of weights, {:.1} TOP/s",
                            s * 1e3,
                            bytes.len() as f64 / s / 1e9,
                            2.0 * (rows * cols * n) as f64 / s / 1e12
                        );
                    }
                }
            }
        }
        be.set_tuning(defaults);
    }
}
