#!/usr/bin/env bash
# Sets up and runs the gateway on the bundled default config (./sekisho.toml): builds the release
# binary, creates the gateway CA in certs/ on first start, and serves the forward proxy on
# 127.0.0.1:3128 and [::1]:3128 with metrics on 127.0.0.1:9190.
set -euo pipefail
cd "$(dirname "$0")/.."
if { ! command -v cc >/dev/null 2>&1 || ! dpkg -s libmagic-dev >/dev/null 2>&1; } && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential ca-certificates curl \
    libmagic-dev pkg-config
fi
cargo build --release --locked
exec ./target/release/sekisho run --config sekisho.toml "$@"
