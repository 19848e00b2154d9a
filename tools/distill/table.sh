#!/usr/bin/env bash
# The teacher (models/demo) against the step-distilled student (models/demo-fast), measured by
# the runtime: `dlm eval` on the five held-out task sets (exact match), mean forward passes
# (NFE), time per answer and tokens/s on the CPU, at f32 and q8_0, gen 32 (one block) and
# gen 256 in blocks of 32 (dual cache: Fast-dLLM's, one full pass per block and cached steps
# in it), greedy, early stop on; and each file's held-out text bound. Writes markdown to stdout.
#
#   tools/distill/table.sh [LIMIT]        (default 100 prompts per task)
#
# Every (row, task) is one single-threaded `dlm eval -t 1` job; JOBS of them run side by side
# (default: the number of cores), so a many-core machine makes the table in minutes. Times are
# per job, on a machine running JOBS such jobs at once: compare them within the table.
# DLM=path/to/dlm uses a built binary instead of building one; RAW=DIR keeps each job's JSON;
# DEADLINE=SECONDS stops jobs still running then (their cells print as "-"); ROWS=REGEX keeps
# only the jobs whose line (model|type|gen|label|task|flags) matches, e.g. ROWS='\|q8_0\|256\|'
# to finish rows a DEADLINE cut.
set -euo pipefail
cd "$(dirname "$0")/../.."
limit=${1:-100}
jobs=${JOBS:-$(nproc)}
if [ -z "${DLM:-}" ]; then
  cargo build --release -q
  DLM=target/release/dlm
fi
work=${RAW:-$(mktemp -d)}
mkdir -p "$work"
tasks=(add sort reverse lookup rust)

# The job list: one line per (row, task) and one per file's text bound:
#   id|model|type|gen|label|task|flags
: > "$work/jobs.txt"
add_row() { # MODEL TYPE GEN LABEL FLAGS...
  local m=$1 q=$2 gen=$3 label=$4
  shift 4
  for t in "${tasks[@]}"; do
    echo "$m|$q|$gen|$label|$t|$*" >> "$work/jobs.txt"
  done
}
# In the order the jobs start (so a DEADLINE cuts the least important): the text bounds and
# the student's stored defaults (no decoding flags: its file's schedule, gen 32), then gen 32
# at f32 and q8_0, then gen 256; the teacher's long rows first within each.
for m in demo demo-fast; do
  for q in f32 q8_0; do echo "$m|$q|0|text|text|" >> "$work/jobs.txt"; done
done
for gen in 32 256; do
  for q in f32 q8_0; do
    nb=$((gen / 32))
    cache=none
    [ "$gen" = 32 ] || cache=dual
    base="--gen-length $gen --block-length 32 --cache $cache"
    # "N fixed": N steps per 32-token block, 32/N commits each (LLaDA's schedule); "≤N, τ 0.9":
    # commit every position of confidence ≥ 0.9 and at least 32/N a step (at most N steps).
    for s in 32 16 8 4; do
      add_row demo "$q" "$gen" "$s fixed" $base --steps $((s * nb))
    done
    if [ "$gen" = 32 ]; then add_row demo-fast "$q" 32 "stored"; fi
    for s in 8 4 2; do
      add_row demo-fast "$q" "$gen" "≤$s, τ 0.9" $base --steps $((s * nb)) --threshold 0.9 \
        --min-per-step $((32 / s))
    done
    # The rule without the distillation, and the distillation without the rule (gen 32).
    if [ "$gen" = 32 ]; then
      add_row demo "$q" "$gen" "≤4, τ 0.9" $base --steps 4 --threshold 0.9 --min-per-step 8
      for s in 8 4 2; do
        add_row demo-fast "$q" "$gen" "$s fixed" $base --steps "$s" --threshold 0
      done
    fi
  done
done
if [ -n "${ROWS:-}" ]; then
  grep -E -- "$ROWS" "$work/jobs.txt" > "$work/jobs.kept" || true
  mv "$work/jobs.kept" "$work/jobs.txt"
fi
nl -ba -w1 -s'|' "$work/jobs.txt" > "$work/jobs.id"
# The files the kept jobs need (a file already in RAW is reused).
cut -d'|' -f1,2 "$work/jobs.txt" | sort -u | while IFS='|' read -r m q; do
  [ -s "$work/$m-$q.dlm" ] || "$DLM" convert "models/$m" -o "$work/$m-$q.dlm" --quant "$q" 2>/dev/null
done

run_job() { # one line of jobs.id
  IFS='|' read -r id m q gen label t flags <<< "$1"
  local out="$work/job-$id.json"
  [ -s "$out" ] && return 0
  # shellcheck disable=SC2086  # flags are words
  if [ "$t" = text ]; then
    "$DLM" eval -t 1 -m "$work/$m-$q.dlm" --text models/demo/heldout.txt --json > "$out.tmp"
  else
    "$DLM" eval -t 1 -m "$work/$m-$q.dlm" --tasks "models/demo/tasks/$t.jsonl" --limit "$limit" \
      --json $flags > "$out.tmp"
  fi
  mv "$out.tmp" "$out"
}
export -f run_job
export work limit DLM
${DEADLINE:+timeout "$DEADLINE"} xargs -d '\n' -P "$jobs" -I{} bash -c 'run_job "$1"' _ {} \
  < "$work/jobs.id" || true

python3 - "$work" "$limit" "${tasks[@]}" <<'PY'
import json, os, sys
work, limit, tasks = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
name = {"demo": "teacher", "demo-fast": "student"}
rows, text = {}, {}
for line in open(os.path.join(work, "jobs.id")):
    jid, m, q, gen, label, task, flags = line.rstrip("\n").split("|")
    path = os.path.join(work, f"job-{jid}.json")
    r = json.load(open(path)) if os.path.exists(path) else None
    if task == "text":
        text[(m, q)] = "%.3f" % r["text"]["nats_per_token"] if r else "-"
        continue
    row = rows.setdefault((m, q, int(gen), label), {"acc": {}, "n": 0, "nfe": 0.0, "secs": 0.0,
                                                      "tokens": 0, "done": True, "dec": ""})
    if r is None:
        row["done"] = False
        continue
    t = r["tasks"][0]
    row["acc"][task] = t["accuracy"]
    row["n"] += t["n"]
    row["nfe"] += t["mean_nfe"] * t["n"]
    g = int(gen) if int(gen) else 32
    row["secs"] += t["n"] * g / t["tokens_per_s"]
    row["tokens"] += t["n"] * g
    row["dec"] = r.get("decoding", "")
print(f"| model | type | gen | steps per 32 tokens | {' | '.join(tasks)} | mean NFE | ms/answer "
      "| tok/s | speed-up | text nats/token |")
print("|---|---|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|")
for (m, q, gen, label), r in rows.items():
    ref = rows.get(("demo", q, gen, "32 fixed"))
    ms = 1000 * r["secs"] / r["n"] if r["n"] else float("nan")
    sp = ("%.1f×" % (ref["secs"] / ref["n"] * 1000 / ms)) if ref and ref["n"] and r["n"] else "-"
    accs = " | ".join(("%.0f%%" % (100 * r["acc"][t])) if t in r["acc"] else "-" for t in tasks)
    nfe = "%.1f" % (r["nfe"] / r["n"]) if r["n"] else "-"
    tps = "%.0f" % (r["tokens"] / r["secs"]) if r["secs"] else "-"
    print(f"| {name[m]} | {q} | {gen} | {label} | {accs} | {nfe} | "
          f"{'%.0f' % ms if r['n'] else '-'} | {tps} | {sp} | {text.get((m, q), '-')} |")
print()
print(f"{limit} prompts per task. Student's stored defaults: "
      + next((r["dec"] for (m, q, g, l), r in rows.items() if l == "stored" and r["dec"]), "-"))
PY
