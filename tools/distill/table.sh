#!/usr/bin/env bash
# The teacher (models/demo) against the step-distilled student (models/demo-fast), measured by
# the runtime: `dlm eval` on the held-out task sets (exact match), mean forward passes (NFE),
# tokens/s on this machine's CPU, at f32 and q8_0, gen 32 and gen 256 in blocks of 32, greedy,
# cache none, early stop on; and each file's held-out text bound. Writes markdown to stdout.
#   tools/distill/table.sh [GRID_LIMIT] [HEADLINE_LIMIT]     (defaults 10 and 100)
# GRID_LIMIT prompts per task for the full grid, HEADLINE_LIMIT for the rows the goal is
# about (f32, gen 32: teacher at 32 steps, student at its stored defaults, teacher under the
# student's rule).
# DLM=path/to/dlm uses a built binary instead of building one; ROWS_OUT=FILE keeps the raw rows;
# ROWS_IN=FILE (an earlier ROWS_OUT) resumes: rows measured there are reused, not run again.
set -euo pipefail
cd "$(dirname "$0")/../.."
grid=${1:-10}
head_n=${2:-100}
if [ -z "${DLM:-}" ]; then
  cargo build --release -q
  DLM=target/release/dlm
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tasks=(add sort reverse lookup rust)
targs=()
for t in "${tasks[@]}"; do targs+=(--tasks "models/demo/tasks/$t.jsonl"); done

touch "$work/rows.jsonl"
[ -z "${ROWS_IN:-}" ] || cp "$ROWS_IN" "$work/rows.jsonl"
declare -A text
for m in demo demo-fast; do
  for q in f32 q8_0; do
    "$DLM" convert "models/$m" -o "$work/$m-$q.dlm" --quant "$q" 2>/dev/null
    # the text bound of this file, from a resumed row when there is one
    text[$m-$q]=$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["model"] == sys.argv[2] and r["type"] == sys.argv[3]:
        print(r["text"]); break' "$work/rows.jsonl" "$m" "$q")
    [ -n "${text[$m-$q]}" ] || text[$m-$q]=$("$DLM" eval -m "$work/$m-$q.dlm" \
      --text models/demo/heldout.txt --json |
      python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["text"]["nats_per_token"])')
  done
done

# row MODEL TYPE GEN LIMIT LABEL [decode flags...]: one eval, results kept as JSON lines
row() {
  local m=$1 q=$2 gen=$3 limit=$4 label=$5
  shift 5
  if python3 -c '
import json, sys
k = sys.argv[2:]
for l in open(sys.argv[1]):
    r = json.loads(l)
    if [r["model"], r["type"], str(r["gen"]), str(r["limit"]), r["label"]] == k:
        sys.exit(0)
sys.exit(1)' "$work/rows.jsonl" "$m" "$q" "$gen" "$limit" "$label"; then
    return 0
  fi
  "$DLM" eval -m "$work/$m-$q.dlm" "${targs[@]}" --limit "$limit" --json "$@" > "$work/r.json"
  python3 - "$m" "$q" "$gen" "$limit" "$label" "${text[$m-$q]}" "$work/r.json" >> "$work/rows.jsonl" <<'PY'
import json, sys
m, q, gen, limit, label, text, path = sys.argv[1:]
r = json.load(open(path))
secs = sum(t["n"] * int(gen) / t["tokens_per_s"] for t in r["tasks"])
n = sum(t["n"] for t in r["tasks"])
print(json.dumps({"model": m, "type": q, "gen": int(gen), "limit": int(limit), "label": label,
                  "text": text, "decoding": r.get("decoding", ""),
                  "acc": {t["task"]: t["accuracy"] for t in r["tasks"]},
                  "nfe": sum(t["mean_nfe"] * t["n"] for t in r["tasks"]) / n,
                  "ms": 1000 * secs / n}))
PY
}

# Headline: f32, gen 32, HEADLINE_LIMIT prompts per task: the teacher at its full 32 steps, the
# student at the schedule stored in its file (no flags), the teacher under that same rule.
row demo f32 32 "$head_n" "32 fixed" --gen-length 32 --block-length 32 --steps 32
row demo-fast f32 32 "$head_n" "stored: ≤4, τ 0.9"
row demo f32 32 "$head_n" "≤4, τ 0.9" --gen-length 32 --block-length 32 --steps 4 \
  --threshold 0.9 --min-per-step 8
# Grid: GRID_LIMIT prompts per task. "N fixed": N steps per 32-token block, 32/N commits each
# (LLaDA's schedule); "≤N, τ 0.9": commit every position of confidence ≥ 0.9 and at least
# 32/N per step, so at most N steps per block.
for q in f32 q8_0; do
  for gen in 32 256; do
    nb=$((gen / 32))
    if [ "$gen" = 32 ]; then teacher_steps="32 16 8 4"; else teacher_steps="32 8 4"; fi
    for s in $teacher_steps; do
      row demo "$q" "$gen" "$grid" "$s fixed" --gen-length "$gen" --block-length 32 --steps $((s * nb))
    done
    row demo "$q" "$gen" "$grid" "≤4, τ 0.9" --gen-length "$gen" --block-length 32 --steps $((4 * nb)) \
      --threshold 0.9 --min-per-step 8
    for s in 8 4 2; do
      row demo-fast "$q" "$gen" "$grid" "$s fixed" --gen-length "$gen" --block-length 32 \
        --steps $((s * nb)) --threshold 0
      row demo-fast "$q" "$gen" "$grid" "≤$s, τ 0.9" --gen-length "$gen" --block-length 32 \
        --steps $((s * nb)) --threshold 0.9 --min-per-step $((32 / s))
    done
  done
done

[ -z "${ROWS_OUT:-}" ] || cp "$work/rows.jsonl" "$ROWS_OUT"
python3 - "$work/rows.jsonl" "${tasks[@]}" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tasks = sys.argv[2:]
name = {"demo": "teacher", "demo-fast": "student"}
def table(rs):
    print("| model | type | gen | steps per 32 tokens | prompts/task | "
          + " | ".join(tasks) + " | mean NFE | ms/answer | speed-up | text nats/token |")
    print("|---|---|---|---|---|" + "---|" * len(tasks) + "---|---|---|---|")
    for r in rs:
        # reference: the teacher at 32 steps per block, same type, gen and prompt count
        ref = [x for x in rows if x["model"] == "demo" and x["label"] == "32 fixed"
               and x["type"] == r["type"] and x["gen"] == r["gen"] and x["limit"] == r["limit"]]
        sp = "%.1f×" % (ref[0]["ms"] / r["ms"]) if ref else "-"
        accs = " | ".join("%.0f%%" % (100 * r["acc"][t]) for t in tasks)
        print(f"| {name[r['model']]} | {r['type']} | {r['gen']} | {r['label']} | {r['limit']} | "
              f"{accs} | {r['nfe']:.1f} | {r['ms']:.0f} | {sp} | {r['text']} |")
    print()
lim = max(r["limit"] for r in rows)
print(f"Headline ({lim} prompts per task, f32, gen 32):\n")
table([r for r in rows if r["limit"] == lim])
print("Grid:\n")
table([r for r in rows if r["limit"] != lim])
for r in rows:
    if r["label"].startswith("stored"):
        print(f"Student's stored defaults: {r['decoding']}")
PY
