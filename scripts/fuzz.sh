#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on the stable toolchain.
#
#   scripts/fuzz.sh build                 build every target (fuzz/target/fuzz-release/<target>)
#   scripts/fuzz.sh smoke [SECS]          build, then run each target SECS seconds (default 30),
#                                         FUZZ_JOBS at a time (default: one per core)
#   scripts/fuzz.sh run TARGET [SECS] [libFuzzer flags…]   one target, long run (default: until stopped)
#   scripts/fuzz.sh list                  the targets
#
# The instrumentation is what `cargo fuzz build -s none` passes (SanitizerCoverage: inline 8-bit
# counters, PC table, comparison tracing), all stable rustc flags; no sanitizer runtime is needed
# since our crates forbid `unsafe`. Release code with debug assertions and overflow checks.
# Corpora live in fuzz/corpus/<target> (seeds committed; what a run finds stays untracked),
# crashes in fuzz/artifacts/<target>. Each crash becomes a regression test in the crate it hit.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^sekisho-fuzz$')
export RUSTFLAGS="${RUSTFLAGS:-} --cfg fuzzing -Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
  -Cforce-frame-pointers"
export CARGO_TARGET_DIR="$PWD/target/fuzz-build"
export SEKISHO_CORPORA="${SEKISHO_CORPORA:-$PWD/../../shared/corpora}"
# An explicit --target keeps the instrumentation out of build scripts and proc macros.
host=$(rustc -vV | sed -n 's/^host: //p')
bin="$CARGO_TARGET_DIR/$host/release"
mkdir -p artifacts corpus

build() { cargo build --release --locked --bins --target "$host"; }

run_one() {
  local t=$1 secs=$2; shift 2
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
  local dict=()
  [ -f "dict/$t.dict" ] && dict=(-dict="dict/$t.dict")
  local time=()
  [ "$secs" -gt 0 ] && time=(-max_total_time="$secs")
  "$bin/$t" "corpus/$t" "seeds/$t" -artifact_prefix="artifacts/$t/" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "${time[@]}" "${dict[@]}" "$@"
}

case "${1:-smoke}" in
  list) echo "$targets" ;;
  build) build ;;
  smoke)
    secs=${2:-30}
    jobs=${FUZZ_JOBS:-$(nproc)}
    build
    failed=()
    pending=()
    finish() {  # waits for the oldest running target and reports it
      local t=${pending[0]} pid=${pids[0]}
      pending=("${pending[@]:1}"); pids=("${pids[@]:1}")
      if wait "$pid"; then
        echo "fuzz $t: $(grep -E '^stat::(number_of_executed_units|new_units_added)' "artifacts/$t.log" | tr '\n' ' ')"
      else
        failed+=("$t"); echo "fuzz $t FAILED:"; grep -v '^#' "artifacts/$t.log" | tail -40
      fi
    }
    pids=()
    for t in $targets; do
      [ ${#pids[@]} -ge "$jobs" ] && finish
      echo "== fuzz $t (${secs}s)"
      run_one "$t" "$secs" >"artifacts/$t.log" 2>&1 &
      pending+=("$t"); pids+=($!)
    done
    while [ ${#pids[@]} -gt 0 ]; do finish; done
    if [ ${#failed[@]} -gt 0 ]; then
      echo "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
      exit 1
    fi ;;
  run)
    t=${2:?target}; secs=${3:-0}; shift $(( $# < 3 ? $# : 3 ))
    build
    run_one "$t" "$secs" "$@" ;;
  *) echo "usage: $0 {build|smoke [SECS]|run TARGET [SECS] [flags…]|list}" >&2; exit 2 ;;
esac
