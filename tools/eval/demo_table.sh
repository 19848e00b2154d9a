#!/usr/bin/env bash
# The quality/speed table of the demo model (models/demo): every storage type × steps (gen
# length, half, quarter) × cache none/dual, with exact-match accuracy per held-out task, the
# text likelihood bound, NFE and tokens/s. Writes markdown to stdout.
#   tools/eval/demo_table.sh [LIMIT_PER_TASK]        (default 40)
#   DLM_TABLE_TYPES="q4_0 q4_k" tools/eval/demo_table.sh 10   (only these storage types)
# The demo's d 384 is not a multiple of 256: its q4_k file holds q4_0 blocks (the same tensors
# as its q4_0 file) and mixed holds q4_0 / q8_0; `dlm convert` prints the real mix.
set -euo pipefail
cd "$(dirname "$0")/../.."
limit=${1:-40}
cargo build --release -q
dlm=target/release/dlm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gen=32
tasks=(add sort reverse lookup rust)
echo "| type | steps | cache | threshold | $(printf '%s | ' "${tasks[@]}")mean NFE | tok/s | text nats/token |"
echo "|---|---|---|---|$(printf -- '---|%.0s' "${tasks[@]}")---|---|---|"
for q in ${DLM_TABLE_TYPES:-f32 q8_0 q4_0 q4_k mixed}; do
  "$dlm" convert models/demo -o "$work/$q.dlm" --quant "$q" 2>/dev/null
  text=$("$dlm" eval -m "$work/$q.dlm" --text models/demo/heldout.txt --json \
    | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["text"]["nats_per_token"])')
  for steps in $gen $((gen / 2)) $((gen / 4)); do
    for mode in none dual dual:0.9; do
      cache=${mode%%:*}
      thr=()
      [ "$mode" != "${mode#*:}" ] && thr=(--threshold "${mode#*:}")
      args=()
      for t in "${tasks[@]}"; do args+=(--tasks "models/demo/tasks/$t.jsonl"); done
      "$dlm" eval -m "$work/$q.dlm" "${args[@]}" --limit "$limit" --json \
        --gen-length $gen --block-length $gen --steps "$steps" --cache "$cache" "${thr[@]}" > "$work/r.json"
      python3 - "$q" "$steps" "$cache" "${mode#*:}" "$text" "$work/r.json" <<'PY'
import json, sys
q, steps, cache, thr, text, path = sys.argv[1:]
thr = "-" if thr == cache else thr
r = json.load(open(path))
accs = " | ".join("%.0f%%" % (100 * t["accuracy"]) for t in r["tasks"])
nfe = sum(t["mean_nfe"] for t in r["tasks"]) / len(r["tasks"])
tps = sum(t["tokens_per_s"] for t in r["tasks"]) / len(r["tasks"])
print(f"| {q} | {steps} | {cache} | {thr} | {accs} | {nfe:.1f} | {tps:.0f} | {text} |")
PY
    done
  done
done
