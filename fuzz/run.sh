#!/usr/bin/env bash
# Build the fuzz targets with libFuzzer's coverage instrumentation on stable Rust and run them.
#
#   fuzz/run.sh                    every target for $FUZZ_SECONDS (default 60) seconds each
#   fuzz/run.sh dlm_reader         one target
#   FUZZ_SECONDS=600 fuzz/run.sh chat_template -- -jobs=2   extra libFuzzer flags after --
#
# The corpus grows in fuzz/corpus/<target>/ (seeded by make_seeds), crashes land in
# fuzz/artifacts/<target>/. Runs at low priority (nice 19). Exits non-zero on a crash.
set -euo pipefail
cd "$(dirname "$0")"

ALL=(dlm_reader safetensors_header config_json tokenizer_json chat_template gguf_reader)
targets=()
extra=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; extra=("$@"); break; fi
  targets+=("$1"); shift
done
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")
secs="${FUZZ_SECONDS:-60}"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# The seed writer is an ordinary program (no libFuzzer), built without instrumentation.
nice -n 19 cargo build --release --bin make_seeds
"$CARGO_TARGET_DIR/release/make_seeds"

# What cargo-fuzz passes, without a sanitizer (that needs nightly): SanitizerCoverage's
# 8-bit counters, PC table and comparison tracing feed libFuzzer; `fuzzing` is set for code
# that wants to know. Debug assertions and overflow checks stay on (profile.release).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros (they run on the host
# without libFuzzer's runtime).
host="$(rustc -vV | sed -n 's/^host: //p')"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
nice -n 19 cargo build --release --target "$host" "${bins[@]}"
bin="$CARGO_TARGET_DIR/$host/release"

status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t ($secs s)"
  nice -n 19 "$bin/$t" "corpus/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=3072 -max_len=65536 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 ${extra[@]+"${extra[@]}"} \
    2> "artifacts/$t.log" || status=$?
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|^Done|ERROR|SUMMARY" "artifacts/$t.log" || true
  tail -n 3 "artifacts/$t.log" | grep -E "^#[0-9]+" || true
done
exit $status
