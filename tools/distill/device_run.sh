#!/usr/bin/env bash
# One device call: a smoke run (a few steps, to catch errors cheaply), then the real run, then
# the student's files packed for the trip back ($OUT: at most 8 files of 16 MiB).
# Run from the repo root with the distill script and the corpus under $D (default .distill).
set -euo pipefail
D=${D:-.distill}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
[ "${SMOKE:-1}" = 0 ] || python3 "$D/distill.py" --out /tmp/smoke --corpus "$D/rustdocs.txt" --n-per-task 300 \
  --train-steps 40 --eval-limit 10
python3 "$D/distill.py" --out /tmp/fast --corpus "$D/rustdocs.txt" "$@"
cd /tmp/fast
ls -l
cp model-0000*-of-*.safetensors "$OUT/"
tar cf "$OUT/meta.tar" config.json generation_config.json model.safetensors.index.json \
  results.json distill.log
