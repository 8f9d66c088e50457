#!/usr/bin/env bash
# Instructions per WAF transaction (CRS PL1, benign GET and 4 KB form), counted by callgrind
# inside gateway/waf/examples/crs_count.rs's `one` after a warm-up: a figure that does not
# move with the machine's load as timings do, for comparing two builds of the engine.
#   benches/waf_instructions.sh [N]     (default 20 transactions each; needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
CORPORA=$(realpath "${SEKISHO_CORPORA:-../shared/corpora}")
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --locked -q -p sekisho-waf --example crs_count
for which in get form get-varied form-varied; do
  out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \
    --toggle-collect='crs_count::one' target/release/examples/crs_count "$CORPORA/crs" "$which" "$N" 2>&1 |
    awk '/Collected/ {print $4}')
  echo "$which: $((out / N)) instructions per transaction"
done
