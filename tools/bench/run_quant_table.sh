#!/usr/bin/env bash
# Reproduce the CPU table of docs/quant-bench.md: a random LLaDA-shaped checkpoint, converted
# with each storage type, decoded by `dlm bench` with no cache and with the dual cache.
#
# Usage: tools/bench/run_quant_table.sh [WORK_DIR]     (default WORK_DIR: /tmp/dlm-quant-bench)
# Environment (defaults in brackets):
#   DLM          the dlm binary [target/release/dlm, built if missing]
#   SHAPE        make_random_checkpoint.py dimension flags
#                ["--d-model 2048 --layers 16 --heads 16 --mlp 5632 --vocab 32768"]
#   TYPES        storage types ["f32 q8_0 q4_0 q4_k"]
#   GEN BLOCK STEPS   decode lengths [256 32 32]: STEPS below GEN commits GEN/STEPS tokens per
#                step; ms/step is what a step costs either way, tokens/s scales with it
#   CACHES       ["none,dual"]
#   THREADS      RAYON_NUM_THREADS [unset: all cores]
# Writes WORK_DIR/<type>.json (dlm bench --json) and prints a markdown table.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-/tmp/dlm-quant-bench}
DLM=${DLM:-$REPO/target/release/dlm}
SHAPE=${SHAPE:-"--d-model 2048 --layers 16 --heads 16 --mlp 5632 --vocab 32768"}
TYPES=${TYPES:-"f32 q8_0 q4_0 q4_k"}
GEN=${GEN:-256}
BLOCK=${BLOCK:-32}
STEPS=${STEPS:-32}
CACHES=${CACHES:-none,dual}
if [[ -n "${THREADS:-}" ]]; then export RAYON_NUM_THREADS=$THREADS; fi

if [[ ! -x "$DLM" ]]; then
    (cd "$REPO" && cargo build --release)
    DLM=${CARGO_TARGET_DIR:-$REPO/target}/release/dlm
fi
mkdir -p "$WORK"
CKPT="$WORK/hf"
STAMP="$WORK/hf.shape"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$SHAPE" ]]; then
    # shellcheck disable=SC2086 # SHAPE is a list of flags
    python3 "$REPO/tools/bench/make_random_checkpoint.py" "$CKPT" $SHAPE --force
    echo "$SHAPE" >"$STAMP"
    rm -f "$WORK"/*.dlm
fi

for t in $TYPES; do
    if [[ ! -f "$WORK/$t.dlm" ]]; then
        /usr/bin/time -f "convert $t: %e s, peak RSS %M KiB" \
            "$DLM" convert "$CKPT" -o "$WORK/$t.dlm" --quant "$t"
    fi
    echo "bench $t ..." >&2
    "$DLM" bench -m "$WORK/$t.dlm" --gen-length "$GEN" --block-length "$BLOCK" \
        --steps "$STEPS" --caches "$CACHES" --json >"$WORK/$t.json"
done

python3 - "$WORK" $TYPES <<'EOF'
import json, sys
work, types = sys.argv[1], sys.argv[2:]
print("| type | file MiB | peak RSS MiB | cache | nfe | seconds | ms/step | tokens/s | matmul | attn | head |")
print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for t in types:
    j = json.load(open(f"{work}/{t}.json"))
    for r in j["runs"]:
        s = r["seconds"]
        pct = lambda k: f"{100 * r[k] / s:.0f}%"
        rss = j["peak_rss_bytes"] / 2**20 if j["peak_rss_bytes"] else float("nan")
        print(f"| {t} | {j['file_bytes'] / 2**20:.0f} | {rss:.0f} | {r['cache']} | {r['nfe']} "
              f"| {s:.1f} | {r['ms_per_step']:.0f} | {r['tokens_per_s']:.2f} "
              f"| {pct('matmul_s')} | {pct('attention_s')} | {pct('head_s')} |")
j0 = json.load(open(f"{work}/{types[0]}.json"))
print(f"\nprompt {j0['prompt_tokens']} tokens, gen {j0['gen_length']}, block {j0['block_length']}, "
      f"steps {j0['steps']} ({j0['algorithm']}), {j0['threads']} threads")
EOF
