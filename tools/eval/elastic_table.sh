#!/usr/bin/env bash
# Elastic-Cache against no cache and the dual cache on the demo model's held-out tasks: per
# storage type and generation length (block 32, steps = gen / 2), accuracy per task, mean NFE,
# mean layer-forwards and query rows, refreshes and tokens/s for none, dual, dual + threshold
# 0.9, elastic and elastic + threshold 0.9. By default every canvas is decoded whole
# (--no-early-stop: the demo's answers are at most 32 tokens, and early stop would hide what a
# cache saves on the rest of the canvas; it never changes an answer); DLM_TABLE_EARLY_STOP=1
# keeps the default early stop instead (what a user's run does: on the demo model only the
# first block is decoded, over the whole canvas). Writes markdown to stdout.
#
#   tools/eval/elastic_table.sh [LIMIT_PER_TASK]            (default 100)
#   DLM_TABLE_TYPES="f32" DLM_TABLE_GENS="128 256" tools/eval/elastic_table.sh 10
#
# Every (type, gen, cache, task) is one single-threaded `dlm eval -t 1` job; JOBS of them run
# side by side (default: the number of cores), so a many-core machine makes the table in
# minutes. tokens/s is per job on a machine running JOBS such jobs at once: compare rows within
# one table. DLM=path/to/dlm uses a built binary; RAW=DIR keeps each job's JSON (and skips jobs
# already there); DEADLINE=SECONDS stops jobs still running then (their cells print as "-");
# LIMITS="gen=limit ..." (e.g. "448=20") runs fewer prompts at some lengths, said in the table.
# MODEL=models/demo-long TASKS="count countdown step number" runs another model's task files:
# MODEL/tasks/TASK-GEN.jsonl where it exists (test sets drawn per generation length), else
# MODEL/tasks/TASK.jsonl.
# CHUNK=N splits each task's prompts into jobs of N prompts (merged in the table), so that many
# cores share a slow row and a run cut by DEADLINE keeps every finished chunk under RAW.
# MODES="none dual dual:0.9 elastic elastic:0.9 elasticnb elasticnb:0.9" picks the rows
# (MODE:TAU adds --threshold TAU; elasticnb is elastic with --no-block-cache, elasticpr with
# --prefix-refresh, elasticfo with --no-prefix-refresh: full openings whatever the file says).
# DEVICE=cuda runs every job on the GPU (a build with --features cuda; JOBS processes share
# it): the f32 canvases, and so accuracy, NFE, layer-forwards and query rows, are the CPU's
# (tests/cuda_parity.rs), tokens/s is the GPU's and not comparable with a CPU table.
set -euo pipefail
# The whole script is one block: bash parses it before running any of it, so editing this file
# during an hour-long run cannot make the running copy read shifted lines (it reads as it goes).
{
cd "$(dirname "$0")/../.."
limit=${1:-100}
jobs=${JOBS:-$(nproc)}
if [ -z "${DLM:-}" ]; then
  cargo build --release -q
  DLM=target/release/dlm
fi
work=${RAW:-$(mktemp -d)}
mkdir -p "$work"
# A copy, so that a rebuild during the run cannot mix two binaries in one table.
cp "$DLM" "$work/dlm"
DLM=$work/dlm
model=${MODEL:-models/demo}
read -r -a tasks <<< "${TASKS:-add sort reverse lookup rust}"
whole="--no-early-stop"
[ "${DLM_TABLE_EARLY_STOP:-0}" = 1 ] && whole=""
types=${DLM_TABLE_TYPES:-f32 q8_0}
gens=${DLM_TABLE_GENS:-128 256 448}
modes=${MODES:-none dual dual:0.9 elastic elastic:0.9}
for q in $types; do
  [ -s "$work/$q.dlm" ] || "$DLM" convert "$model" -o "$work/$q.dlm" --quant "$q" 2>/dev/null
done

limit_for() { # GEN -> prompts per task
  local g
  for g in ${LIMITS:-}; do
    [ "${g%%=*}" = "$1" ] && { echo "${g#*=}"; return; }
  done
  echo "$limit"
}

# The job list, one line per (type, gen, cache, task, chunk): type|gen|limit|mode|task|file.
# Long generations first, so the slowest jobs start early. With CHUNK, a task's first `limit`
# prompts are cut into files of CHUNK lines under $work/parts.
task_file() { # TASK GEN -> its prompts at this length
  local f="$model/tasks/$1-$2.jsonl"
  [ -f "$f" ] || f="$model/tasks/$1.jsonl"
  echo "$f"
}
: > "$work/jobs.txt"
mkdir -p "$work/parts"
for gen in $(printf '%s\n' $gens | sort -rn); do
  lim=$(limit_for "$gen")
  for t in "${tasks[@]}"; do
    src=$(task_file "$t" "$gen")
    if [ -n "${CHUNK:-}" ]; then
      [ -f "$src" ] || { echo "elastic_table: no task file $src" >&2; exit 1; }
      # Parts of an earlier run in this RAW (another CHUNK or limit) must not be picked up.
      rm -f "$work/parts/$t-$gen-"*.jsonl
      awk -v lim="$lim" 'NF && ++n <= lim' "$src" | split -l "$CHUNK" -d -a 3 \
        --additional-suffix=.jsonl - "$work/parts/$t-$gen-"
    fi
  done
  for q in $types; do
    for mode in $modes; do
      for t in "${tasks[@]}"; do
        if [ -n "${CHUNK:-}" ]; then
          for f in "$work/parts/$t-$gen-"*.jsonl; do echo "$q|$gen|$CHUNK|$mode|$t|$f"; done
        else
          echo "$q|$gen|$lim|$mode|$t|$(task_file "$t" "$gen")"
        fi
      done >> "$work/jobs.txt"
    done
  done
done
nl -ba -w1 -s'|' "$work/jobs.txt" > "$work/jobs.id"

run_job() { # one line of jobs.id
  IFS='|' read -r id q gen lim mode t file <<< "$1"
  local out="$work/job-$id.json" cache=${mode%%:*} thr=""
  [ -s "$out" ] && return 0
  [ "$mode" != "$cache" ] && thr="--threshold ${mode#*:}"
  [ "$cache" = elasticnb ] && cache="elastic --no-block-cache"
  [ "$cache" = elasticpr ] && cache="elastic --prefix-refresh"
  [ "$cache" = elasticfo ] && cache="elastic --no-prefix-refresh"
  # shellcheck disable=SC2086  # whole, cache and thr are words
  "$DLM" eval -t 1 -m "$work/$q.dlm" --tasks "$file" --limit "$lim" \
    --json $whole --gen-length "$gen" --block-length 32 --steps $((gen / 2)) --cache $cache \
    --device "$device" $thr > "$out.tmp" && mv "$out.tmp" "$out"
}
export -f run_job
device=${DEVICE:-cpu}
export work DLM whole device model
${DEADLINE:+timeout "$DEADLINE"} xargs -d '\n' -P "$jobs" -I{} bash -c 'run_job "$1"' _ {} \
  < "$work/jobs.id" || true

python3 - "$work" "$types" "$gens" "$modes" "${tasks[@]}" <<'PY'
import json, os, sys
work, types, gens, modes = (sys.argv[1], sys.argv[2].split(), sys.argv[3].split(),
                            sys.argv[4].split())
tasks = sys.argv[5:]
def merge(rs, gen):
    """One task's chunks as one result: sums of n, n-weighted means, tokens over summed time."""
    n = sum(r["n"] for r in rs)
    m = {k: sum(r[k] * r["n"] for r in rs) / n
         for k in ("accuracy", "mean_nfe", "mean_layer_forwards", "mean_query_rows",
                   "mean_refreshes")}
    m["n"] = n
    m["tokens_per_s"] = n * int(gen) / sum(r["n"] * int(gen) / r["tokens_per_s"] for r in rs)
    return m

parts = {}
for line in open(os.path.join(work, "jobs.id")):
    jid, q, gen, lim, mode, task, _ = line.rstrip("\n").split("|")
    path = os.path.join(work, f"job-{jid}.json")
    # A job that failed (a prompt too long for the context at this length) or was cut by the
    # deadline leaves no file: its task's cell prints "-", even where other chunks finished.
    r = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else None
    parts.setdefault((q, gen, mode, task), []).append(r["tasks"][0] if r else None)
cells = {}
for key, rs in parts.items():
    whole = None if None in rs else merge(rs, key[1])
    cells[key] = (whole, str(whole["n"]) if whole else "-")
print(f"| type | gen | steps | prompts/task | cache | {' | '.join(tasks)} | mean NFE | layer-fwd "
      "| query rows | refreshes | tok/s | × none |")
print("|---|---|---|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|---|")
for q in types:
    for gen in gens:
        base = None
        for mode in modes:
            ts = [cells.get((q, gen, mode, t), (None, "-")) for t in tasks]
            lim = "/".join(sorted({l for _, l in ts if l != "-"})) or "-"
            done = [t for t, _ in ts if t]
            done_tasks = [task for task, (t, _) in zip(tasks, ts) if t]
            accs = " | ".join(("%.0f%%" % (100 * t["accuracy"])) if t else "-" for t, _ in ts)
            n = sum(t["n"] for t in done)
            mean = lambda k: (sum(t[k] * t["n"] for t in done) / n) if n else float("nan")
            # tokens/s over the row: generated tokens over the jobs' summed seconds.
            secs = sum(t["n"] * int(gen) / t["tokens_per_s"] for t in done)
            tps = n * int(gen) / secs if secs else float("nan")
            # The ratio compares rows over the same tasks only.
            if mode == "none" and done:
                base = (tps, done_tasks)
            ratio = "%.1f" % (tps / base[0]) if base and done_tasks == base[1] else "-"
            print("| %s | %s | %d | %s | %s | %s | %.1f | %.0f | %.0f | %.2f | %.1f | %s |" % (
                q, gen, int(gen) // 2, lim, mode.replace("elasticnb", "elastic, no block cache")
                .replace("elasticpr", "elastic, prefix refresh")
                .replace("elasticfo", "elastic, full openings").replace(":", " τ"), accs, mean("mean_nfe"),
                mean("mean_layer_forwards"), mean("mean_query_rows"), mean("mean_refreshes"),
                tps, ratio))
PY
exit
}
