#!/usr/bin/env bash
# Elastic-Cache against no cache and the dual cache on the demo model's held-out tasks: per
# storage type and generation length (block 32, steps = gen / 2), accuracy per task, mean NFE,
# mean layer-forwards and query rows, refreshes and tokens/s for none, dual, dual + threshold
# 0.9, elastic and elastic + threshold 0.9. By default every canvas is decoded whole
# (--no-early-stop: the demo's answers are at most 32 tokens, and early stop would hide what a
# cache saves on the rest of the canvas; it never changes an answer); DLM_TABLE_EARLY_STOP=1
# keeps the default early stop instead (what a user's run does: on the demo model only the
# first block is decoded, over the whole canvas). Writes markdown to stdout.
#   tools/eval/elastic_table.sh [LIMIT_PER_TASK]            (default 100)
#   DLM_TABLE_TYPES="f32" DLM_TABLE_GENS="128 256" tools/eval/elastic_table.sh 10
set -euo pipefail
cd "$(dirname "$0")/../.."
limit=${1:-100}
[ -n "${DLM:-}" ] || cargo build --release -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A copy, so that a rebuild during the run cannot mix two binaries in one table.
cp "${DLM:-target/release/dlm}" "$work/dlm"
dlm=$work/dlm
tasks=(add sort reverse lookup rust)
whole=(--no-early-stop)
[ "${DLM_TABLE_EARLY_STOP:-0}" = 1 ] && whole=()
args=()
for t in "${tasks[@]}"; do args+=(--tasks "models/demo/tasks/$t.jsonl"); done
echo "| type | gen | steps | cache | $(printf '%s | ' "${tasks[@]}")mean NFE | layer-fwd | query rows | refreshes | tok/s | × none |"
echo "|---|---|---|---|$(printf -- '---|%.0s' "${tasks[@]}")---|---|---|---|---|---|"
for q in ${DLM_TABLE_TYPES:-f32 q8_0}; do
  "$dlm" convert models/demo -o "$work/$q.dlm" --quant "$q" 2>/dev/null
  for gen in ${DLM_TABLE_GENS:-128 256 448}; do
    steps=$((gen / 2))
    base=""
    for mode in none dual dual:0.9 elastic elastic:0.9; do
      cache=${mode%%:*}
      thr=()
      [ "$mode" != "${mode#*:}" ] && thr=(--threshold "${mode#*:}")
      "$dlm" eval -m "$work/$q.dlm" "${args[@]}" --limit "$limit" --json "${whole[@]}" \
        --gen-length "$gen" --block-length 32 --steps "$steps" --cache "$cache" "${thr[@]}" > "$work/r.json"
      line=$(python3 - "$q" "$gen" "$steps" "$mode" "$work/r.json" "$base" <<'PY'
import json, sys
q, gen, steps, mode, path, base = sys.argv[1:]
r = json.load(open(path))
ts = r["tasks"]
accs = " | ".join("%.0f%%" % (100 * t["accuracy"]) for t in ts)
mean = lambda k: sum(t[k] for t in ts) / len(ts)
# tokens/s over the whole run: generated tokens over total seconds.
secs = sum(t["n"] * int(gen) / t["tokens_per_s"] for t in ts)
tps = sum(t["n"] for t in ts) * int(gen) / secs
ratio = "1.0" if not base else "%.1f" % (tps / float(base))
print("| %s | %s | %s | %s | %s | %.1f | %.0f | %.0f | %.1f | %.1f | %s |" % (
    q, gen, steps, mode.replace(":", " τ"), accs, mean("mean_nfe"), mean("mean_layer_forwards"),
    mean("mean_query_rows"), mean("mean_refreshes"), tps, ratio))
open(path + ".tps", "w").write(str(tps))
PY
)
      echo "$line"
      [ -z "$base" ] && base=$(cat "$work/r.json.tps")
    done
  done
done
