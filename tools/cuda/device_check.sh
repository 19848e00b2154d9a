#!/usr/bin/env bash
# Check and time the CUDA backend on a GPU machine that has no Rust: prebuilt binaries in,
# figures out. Run from the repository root (it reads models/demo).
#
#   tools/cuda/device_check.sh --dlm target/release/dlm \
#       --tests target/release/deps/cuda_parity-HASH \
#       [--random-dlm target/release/examples/random_dlm] \
#       [--model bf16=PATH.dlm --model q8_0=PATH.dlm --model q4_k=PATH.dlm] \
#       [--out DIR] [--no-tests] [--no-bench] [--no-torch]
#
# 1. The parity tests (tests/cuda_parity.rs) on models/demo, with DLM_CUDA_STRICT=1 (a kernel
#    file that does not compile is an error, not a silent fallback).
# 2. For bf16, q8_0 and q4_k: an 8B-shaped random LLaDA (d 4096, 32 layers, 32 heads, mlp
#    12288, vocab 126464), given with --model TYPE=PATH or written by --random-dlm (the
#    `random_dlm` example) into --out; then `dlm bench --device cuda`, prompt ~256 tokens,
#    gen 256, block 32: cache none (ms per full 512-token step) and dual at 1 token per step
#    (ms per cached 32-token step, tokens/s), load time, peak GPU memory (nvidia-smi).
# 3. tools/cuda/torch_ref.py (PyTorch bf16 at the same shape) when python3 has torch.
#
# Then a sweep of other kernel choices (SWEEP=0 skips it). Env: STEPS_NONE (default 64: steps of the no-cache run, each a full step), DEVICE (default
# cuda; cpu checks the script on a small model), PROMPT_TOKENS and GEN (256 each), DLM_CUDA_* tuning
# knobs (see cuda/src/matmul.rs) pass through. Build the binaries (on the Rust machine):
#   cargo build --release --features cuda --bin dlm --example random_dlm
#   cargo test --release --features cuda --test cuda_parity --no-run   # prints the test binary
set -uo pipefail

DLM= ; RANDOM_DLM= ; OUT=${TMPDIR:-/tmp}/dlm-device-check
TESTS=() ; declare -A MODEL=() MODELS=() PROMPTS=()
RUN_TESTS=1 ; RUN_BENCH=1 ; RUN_TORCH=1
while [ $# -gt 0 ]; do
    case "$1" in
        --dlm) DLM=$2; shift 2 ;;
        --tests) TESTS+=("$2"); shift 2 ;;
        --random-dlm) RANDOM_DLM=$2; shift 2 ;;
        --model) MODEL[${2%%=*}]=${2#*=}; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-tests) RUN_TESTS=0; shift ;;
        --no-bench) RUN_BENCH=0; shift ;;
        --no-torch) RUN_TORCH=0; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$DLM" ] && [ -x "$DLM" ] || { echo "--dlm PATH (a release dlm built with --features cuda) is required" >&2; exit 2; }
DLM=$(realpath "$DLM")
mkdir -p "$OUT"
REPO=$(pwd)
STEPS_NONE=${STEPS_NONE:-64}
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed"

# NVRTC and cuBLAS (CUDA 13): a CUDA toolkit's lib64, or the nvidia-* wheels PyTorch brings.
add_libs() {
    local lib dir
    for lib in libnvrtc.so.13 libcublas.so.13 libcublasLt.so.13; do
        if ! ldconfig -p 2>/dev/null | grep -q "$lib"; then
            local ld=${LD_LIBRARY_PATH:-}
            dir=$( { for d in ${ld//:/ } /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
                $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
                    [ -d "$d" ] && find "$d" -name "$lib" 2>/dev/null; done; } | head -1)
            if [ -n "$dir" ]; then
                export LD_LIBRARY_PATH="$(dirname "$dir")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            else
                echo "warning: $lib not found (the backend says what it misses)"
            fi
        fi
    done
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
}
add_libs

if [ "$RUN_TESTS" = 1 ]; then
    # The golden-fixture tests need ../shared/reference, which does not travel to a GPU machine:
    # without DLM_REFERENCE they are left out, and the summary says so.
    skip=()
    if [ -z "${DLM_REFERENCE:-}" ]; then
        skip=(--skip logits_and_canvases_match_the_cpu_at_f32 --skip quantized_top1_agrees_with_the_cpu)
        say "parity: the ../shared/reference tests NOT run (set DLM_REFERENCE to a copy of it)"
    fi
    for t in "${TESTS[@]}"; do
        echo "== parity tests: $t"
        DLM_CUDA_PARITY_MODEL="${DLM_CUDA_PARITY_MODEL:-$REPO/models/demo}" DLM_CUDA_STRICT=1 \
            "$t" --include-ignored --nocapture --test-threads=1 "${skip[@]}" 2>&1 | tee "$OUT/parity.log" \
            | grep -E "^(test |kernels:|matmul |attention |demo |llada|dream|test result|thread|  left|  right)|panicked|error" 
        say "parity: $(grep -E '^test result' "$OUT/parity.log" | tail -1)"
    done
fi

# A prompt of at most PROMPT_TOKENS (256) tokens, as close as whole words get, for MODEL.
prompt_for() {
    local m=$1 p="" n=0 want=${PROMPT_TOKENS:-256}
    local s="The ownership rules: each value in Rust has an owner, and there can only be one owner at a time. "
    count() { "$DLM" tokenize -m "$m" "$1" | tr ',' '\n' | grep -c .; }
    while [ "$n" -lt "$want" ]; do
        p="$p$s"
        n=$(count "$p")
    done
    while [ "$n" -gt "$want" ]; do
        p=${p% *}
        n=$(count "$p")
    done
    echo "$p"
}

# Peak GPU memory (MiB) while COMMAND runs.
with_gpu_peak() {
    local log="$OUT/smi.$$"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$log" 2>/dev/null &
    local smi=$!
    "$@"
    local rc=$?
    kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
    PEAK_MIB=$(sort -n "$log" | tail -1); rm -f "$log"
    return $rc
}

if [ "$RUN_BENCH" = 1 ]; then
    if [ -n "$RANDOM_DLM" ]; then
        [ -f "$OUT/template.dlm" ] || "$DLM" convert "$REPO/models/demo" -o "$OUT/template.dlm" >/dev/null
    fi
    for q in bf16 q8_0 q4_k; do
        m=${MODEL[$q]:-}
        if [ -z "$m" ] && [ -n "$RANDOM_DLM" ]; then
            m="$OUT/llada-8b-$q.dlm"
            if [ ! -f "$m" ]; then
                echo "== writing $m"
                "$RANDOM_DLM" "$OUT/template.dlm" "$m" --dim 4096 --layers 32 --heads 32 \
                    --mlp 12288 --vocab 126464 --ctx 4096 --quant "$q" || { say "$q: random_dlm failed"; continue; }
            fi
        fi
        [ -n "$m" ] && [ -f "$m" ] || { say "$q: no model (give --model $q=PATH or --random-dlm)"; continue; }
        prompt=$(prompt_for "$m")
        echo "== bench $q: $m"
        common=(bench -m "$m" --device "${DEVICE:-cuda}" --prompt "$prompt" -n "${GEN:-256}" --block-length 32 --threshold 0 --json)
        t0=$(date +%s.%N)
        with_gpu_peak "$DLM" "${common[@]}" --caches none --steps "$STEPS_NONE" > "$OUT/bench-$q-none.json" \
            2> "$OUT/bench-$q-none.err" || { cat "$OUT/bench-$q-none.err"; say "$q: bench none failed"; continue; }
        t1=$(date +%s.%N)
        peak_none=$PEAK_MIB
        with_gpu_peak "$DLM" "${common[@]}" --caches dual --steps "${GEN:-256}" > "$OUT/bench-$q-dual.json" \
            2> "$OUT/bench-$q-dual.err" || { cat "$OUT/bench-$q-dual.err"; say "$q: bench dual failed"; continue; }
        peak_dual=$PEAK_MIB
        cat "$OUT/bench-$q-none.err" "$OUT/bench-$q-dual.err" | grep -v '^$' | head -5
        python3 - "$OUT/bench-$q-none.json" "$OUT/bench-$q-dual.json" "$t0" "$t1" "$peak_none" "$peak_dual" "$q" <<'EOF' | tee -a "$SUMMARY"
import json, sys
none, dual = (json.load(open(p))["runs"][0] for p in sys.argv[1:3])
meta = json.load(open(sys.argv[1]))
t0, t1 = float(sys.argv[3]), float(sys.argv[4])
peak = max(int(x or 0) for x in sys.argv[5:7])
q = sys.argv[7]
full = none["ms_per_step"]
blocks = meta["gen_length"] // meta["block_length"]
cached = (dual["seconds"] * 1000 - blocks * full) / max(dual["nfe"] - blocks, 1)
load = (t1 - t0) - none["seconds"]
print(f"{q}: prompt {meta['prompt_tokens']} tok, file {meta['file_bytes']/2**30:.2f} GiB | "
      f"full step {full:.2f} ms (none, {none['nfe']} steps) | cached step {cached:.2f} ms (dual, "
      f"{dual['nfe']} steps, {blocks} of them full) | dual {dual['tokens_per_s']:.1f} tok/s at 1 token/step | "
      f"load+first step {load:.2f} s | GPU memory peak {peak} MiB")
EOF
        MODELS[$q]=$m
        PROMPTS[$q]=$prompt
    done
fi

# Other kernel choices (cuda/src/lib.rs Tuning), to pick the defaults: each quantized model as
# before int8.cu (no int8.cu, bf16 attention operands: dequantize + cuBLAS from 9 rows) and
# with int8.cu at every row count (the full steps too); the bf16 model with bf16 attention
# operands. SWEEP=2 adds the older sweep: the CUDA-core and mma.cu few-row kernels, and the
# bf16 model's other attention kernels. SWEEP=0 skips it.
sweep_run() { # TYPE LABEL CACHE STEPS ENV...
    local q=$1 label=$2 cache=$3 steps=$4; shift 4
    local m=${MODELS[$q]:-}
    [ -n "$m" ] || return 0
    env "$@" "$DLM" bench -m "$m" --device "${DEVICE:-cuda}" --prompt "${PROMPTS[$q]}" -n "${GEN:-256}" \
        --block-length 32 --threshold 0 --json --caches "$cache" --steps "$steps" \
        > "$OUT/sweep.json" 2> "$OUT/sweep.err" || { say "sweep $q $label: failed"; tail -3 "$OUT/sweep.err"; return 0; }
    python3 - "$OUT/bench-$q-none.json" "$OUT/sweep.json" "$q" "$label" "$cache" <<'EOF' | tee -a "$SUMMARY"
import json, sys
full = json.load(open(sys.argv[1]))["runs"][0]["ms_per_step"]
meta = json.load(open(sys.argv[2]))
r = meta["runs"][0]
q, label, cache = sys.argv[3:6]
if cache == "none":
    print(f"sweep {q} {label}: full step {r['ms_per_step']:.2f} ms")
else:
    blocks = meta["gen_length"] // meta["block_length"]
    cached = (r["seconds"] * 1000 - blocks * full) / max(r["nfe"] - blocks, 1)
    print(f"sweep {q} {label}: cached step {cached:.2f} ms ({r['tokens_per_s']:.1f} tok/s)")
EOF
}
if [ "$RUN_BENCH" = 1 ] && [ "${SWEEP:-1}" = 1 ]; then
    echo "== sweep of kernel choices"
    for q in q8_0 q4_k; do
        sweep_run "$q" "as before int8.cu (bf16 paths and attention)" none "$STEPS_NONE" DLM_CUDA_INT8_MAX_ROWS=0 DLM_CUDA_FLASH_F16=0
        sweep_run "$q" "as before int8.cu (bf16 paths and attention)" dual "${GEN:-256}" DLM_CUDA_INT8_MAX_ROWS=0 DLM_CUDA_FLASH_F16=0
        sweep_run "$q" "int8.cu at every row count" none "$STEPS_NONE" DLM_CUDA_INT8_MAX_ROWS=1000000
    done
    sweep_run bf16 "bf16 attention operands" dual "${GEN:-256}" DLM_CUDA_FLASH_F16=0
fi
if [ "$RUN_BENCH" = 1 ] && [ "${SWEEP:-1}" = 2 ]; then
    for q in q8_0 q4_k; do
        sweep_run "$q" "cuda-core few-row kernel" dual "${GEN:-256}" DLM_CUDA_INT8_MAX_ROWS=0 DLM_CUDA_MMA_MIN_ROWS=1000000
        sweep_run "$q" "tensor-core few-row kernel (mma.cu) below 65 rows" dual "${GEN:-256}" DLM_CUDA_INT8_MAX_ROWS=0 DLM_CUDA_GEMM_MIN_ROWS=65
    done
    sweep_run bf16 "f32 attention tiles" none "$STEPS_NONE" DLM_CUDA_FLASH_TC=0
    sweep_run bf16 "per-row attention" dual "${GEN:-256}" DLM_CUDA_FLASH_MIN_ROWS=1000000
    sweep_run bf16 "f32 attention tiles" dual "${GEN:-256}" DLM_CUDA_FLASH_TC=0
fi

if [ "$RUN_TORCH" = 1 ] && python3 -c 'import torch' 2>/dev/null; then
    echo "== PyTorch reference (bf16, same shape)"
    python3 "$REPO/tools/cuda/torch_ref.py" 2>&1 | tee "$OUT/torch.log" | tail -8
    grep -E "^torch" "$OUT/torch.log" >> "$SUMMARY"
fi

echo "== summary ($SUMMARY)"
cat "$SUMMARY"
