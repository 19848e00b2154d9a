#!/usr/bin/env bash
# One device call: several distillation runs side by side on the one GPU (the model is tiny,
# so one run leaves the GPU mostly idle), each chosen by its accuracy under the stored rule on
# a validation pool of fresh generator prompts (never the held-out test sets); the best run's
# files are packed for the trip back ($OUT: at most 8 files of 16 MiB), with every run's log
# and results.
#   SWEEP="name:flags;name:flags" bash tools/distill/sweep.sh [COMMON FLAGS...]
# Run from the repo root with the corpus (not in the repo) under $D (default .distill).
set -euo pipefail
D=${D:-.distill}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
IFS=';' read -r -a runs <<< "${SWEEP:?SWEEP=name:flags;... names the runs}"
pids=()
mkdir -p /tmp/sweep
for r in "${runs[@]}"; do
  name=${r%%:*}
  flags=${r#*:}
  # shellcheck disable=SC2086  # the run's flags are words
  python3 tools/distill/distill.py --out "/tmp/sweep/$name" --corpus "$D/rustdocs.txt" "$@" \
    $flags > "/tmp/sweep/$name.out" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
for r in "${runs[@]}"; do
  name=${r%%:*}
  echo "== $name: ${r#*:}"
  grep -E "train:|train done|eval |trajectories kept|text bound" "/tmp/sweep/$name.out" || tail -5 "/tmp/sweep/$name.out"
done
# The best run: the highest mean validation accuracy on add, sort and rust under the stored rule.
best=$(python3 - "${runs[@]}" <<'PY'
import json, sys
best, score = None, -1.0
for r in sys.argv[1:]:
    name = r.split(":", 1)[0]
    try:
        res = json.load(open(f"/tmp/sweep/{name}/results.json"))
    except OSError:
        continue
    val = [e for e in res["evals"] if e.get("set") == "val"]
    if not val:
        continue
    s = sum(val[0]["acc"][t] for t in ("add", "sort", "rust")) / 3
    print(f"{name}: validation mean add/sort/rust {100 * s:.1f}%", file=sys.stderr)
    if s > score:
        best, score = name, s
print(best or "")
PY
)
echo "best: ${best:-none}"
(cd /tmp/sweep && tar czf "$OUT/runs.tgz" ./*.out ./*/results.json ./*/distill.log)
[ -n "$best" ] || exit 1
cd "/tmp/sweep/$best"
cp model-0000*-of-*.safetensors "$OUT/"
tar cf "$OUT/meta.tar" config.json generation_config.json model.safetensors.index.json \
  results.json distill.log
exit $status
