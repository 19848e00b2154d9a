#!/usr/bin/env bash
# Issue 16's kernel table: GOP per CPU-second of one thread for the int8 GEMM path (q4_0, q8_0,
# q4_k) beside the f32 paths (the `gemm` crate, and the few-token float row kernels up to 32
# tokens), at 1/8/32/256 tokens on the 1024-, 4096- and 12288-wide shapes of LLaDA-8B and the
# 168M bench model. Each path is forced at every token count (`matmul` itself picks the row
# kernels at 1 token and q8_0's tiles from 80). Writes markdown to stdout.
#
#   tools/bench/kernel_table.sh            (about 4 minutes on 2 cores, most of it q4_k quantizing)
#   SHAPES="1024x1024" TOKENS="1,32" tools/bench/kernel_table.sh
#
# One thread (RAYON_NUM_THREADS=1) and CPU seconds, so a second job on the machine costs less
# accuracy than it would in wall time; still, run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p dlm-simd --example gemm_cpu
bin=target/release/examples/gemm_cpu
shapes=${SHAPES:-1024x1024 4096x4096 12288x4096 4096x12288}
tokens=${TOKENS:-1,8,32,256}
echo "| rows×cols×tokens | q4_0 int8 | q8_0 int8 | q4_k int8 | f32 gemm | f32 float rows |"
echo "|---|---:|---:|---:|---:|---:|"
for s in $shapes; do
  RAYON_NUM_THREADS=1 "$bin" "$s" "$tokens" q4_0:int8 q8_0:int8 q4_k:int8 f32:gemm f32:float --markdown
done
