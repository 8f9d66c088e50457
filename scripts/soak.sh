#!/usr/bin/env bash
# The long soak (issue 19): `tests/soak.rs` for SECS seconds (default 1800): mixed traffic with
# every stage on through the real binary, RSS / descriptors / tasks sampled every 10 s and
# printed as a table, bounds asserted after the warm-up third, every threat event checked at
# the collector. CI runs the same test for 40 s.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-1800}
SEKISHO_SOAK_SECS=$secs cargo test --locked --features sekisho/kafka --test soak -- --nocapture
