#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, end-to-end tests of the real binary (curl against
# local origins on loopback), and each criterion bench once in test mode.
# Installs the Debian packages the tests use when run as root and they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# tansu, a Kafka-compatible broker (crates.io only): the Kafka sink's success path and broker
# restart (gateway/mss/tests/delivery.rs), with its in-memory storage (feature dynostore).
# Built without optimisation or debug info, the cheapest build (about 5 minutes on 2 cores; it
# only carries a few hundred test records), in the background from here so that it overlaps
# the package installs below; waited for before the tests.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v tansu >/dev/null 2>&1; then
  mkdir -p target
  CARGO_PROFILE_DEV_DEBUG=false cargo install --debug --locked tansu@0.6.0 --features dynostore \
    >target/tansu-install.log 2>&1 &
  tansu_pid=$!
fi

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
# python3: the path-normalising upstream of the reverse-proxy path tests (http.server).
command -v python3 >/dev/null 2>&1 || need+=(python3)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
# libmagic (file.magic, as Suricata asks it) with its compiled database; pkg-config finds it.
dpkg -s libmagic-dev >/dev/null 2>&1 || need+=(libmagic-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# The archive and document tools tests/av_formats.rs builds its samples with.
command -v 7z >/dev/null 2>&1 || need+=(p7zip-full)
command -v gcab >/dev/null 2>&1 || need+=(gcab)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v genisoimage >/dev/null 2>&1 || need+=(genisoimage)
command -v uuencode >/dev/null 2>&1 || need+=(sharutils)
command -v mscompress >/dev/null 2>&1 || need+=(mscompress)
command -v bzip2 >/dev/null 2>&1 || need+=(bzip2)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
command -v zip >/dev/null 2>&1 || need+=(zip)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v qpdf >/dev/null 2>&1 || need+=(qpdf)
# bsdtar (libarchive): an independent reader of the RAR samples tests/av_formats.rs writes.
command -v bsdtar >/dev/null 2>&1 || need+=(libarchive-tools)
# makensis: the Nullsoft installers tests/av_formats.rs unpacks.
command -v makensis >/dev/null 2>&1 || need+=(nsis)
# arj and Free Pascal's chmcmd: the ARJ archives and compiled help files tests/av_formats.rs opens.
command -v arj >/dev/null 2>&1 || need+=(arj)
command -v chmcmd >/dev/null 2>&1 || need+=(fp-utils)
# clamscan: the reference engine tests/av_formats.rs compares verdicts with (its own signature
# database is never fetched: the test passes ours with -d).
command -v clamscan >/dev/null 2>&1 || need+=(clamav)
# The ICAP servers tests/av_icap.rs starts: c-icap with its virus_scan module over clamd.
command -v c-icap >/dev/null 2>&1 || need+=(c-icap)
dpkg -s libc-icap-mod-virus-scan >/dev/null 2>&1 || need+=(libc-icap-mod-virus-scan)
[ -x /usr/sbin/clamd ] || need+=(clamav-daemon)
# rsyslog is the real collector of the MSS end-to-end tests (TLS through its ossl driver).
[ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
dpkg -s rsyslog-openssl >/dev/null 2>&1 || need+=(rsyslog-openssl)
# The sandbox's isolation and tracer (tests/sandbox.rs): bubblewrap, strace; setpriv and prlimit
# come with util-linux.
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
# ip (iproute2): the sandbox's first process routes every address to its sinkhole.
[ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
# Headless Chromium and certutil: the browser end-to-end test (tests/chromium.rs).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v certutil >/dev/null 2>&1 || need+=(libnss3-tools)
# Issue 25's deployment tests: the Docker engine and docker-compose (tests/docker.rs, with a
# base image made by mmdebstrap: no registry image can be pulled here), redis-server (the
# shared store: gateway/store/tests/redis.rs, tests/multinode.rs).
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}"
  else
    echo "missing: ${need[*]} (install them, or run as root)" >&2
    exit 1
  fi
fi

# The Docker engine: started here when no init system runs it (CI machines and sessions have
# none), its log in target/dockerd.log. With it running, tests/docker.rs must not skip.
if ! docker info >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null 2>&1; then
  mkdir -p target
  (setsid dockerd >target/dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if docker info >/dev/null 2>&1; then export SEKISHO_REQUIRE_DOCKER=1; fi
command -v redis-server >/dev/null 2>&1 && export SEKISHO_REQUIRE_REDIS=1

# tansu (started above) must be installed before the tests run.
if [ -n "${tansu_pid:-}" ]; then
  if ! wait "$tansu_pid"; then
    cat target/tansu-install.log >&2
    echo "cargo install tansu failed (log above)" >&2
    exit 1
  fi
fi
export SEKISHO_REQUIRE_TANSU=1

# The public corpora (CRS, ET Open, UT1, IHE samples, YARA; ../shared/corpora or SEKISHO_CORPORA).
# Without them the tests and benches that need them print "SKIPPED <name>: needs the public
# corpora: …" and pass; everything else runs on the data the repository ships or builds. With
# them (always in CI), SEKISHO_REQUIRE_CORPORA=1 turns a missing file into a failure.
corpora=${SEKISHO_CORPORA:-$PWD/../shared/corpora}
if [ -d "$corpora" ]; then
  export SEKISHO_REQUIRE_CORPORA=1
else
  echo "public corpora not found at $corpora: tests that need them are skipped; CI runs them (set SEKISHO_CORPORA to their location)" >&2
fi
export SEKISHO_CORPORA=$corpora

export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
# The Kafka sink is behind a feature (librdkafka from source): linted and tested in the same
# passes as everything else, so nothing is compiled twice.
cargo clippy --workspace --all-targets --features sekisho/kafka --locked -- -D warnings
cargo test --workspace --all-targets --features sekisho/kafka --locked --no-fail-fast
# Coverage-guided fuzzing of every parser, 10 s per target (fuzz/README.md): CI's whole run took
# 2,447 s of its 2,400 on 2026-12-06 with 30 s, 1,931 s with 15 s; the deployment tests (tansu's
# build, the Docker images) added about 8 minutes on 2026-12-07. Long runs are
# `scripts/fuzz.sh run TARGET`.
scripts/fuzz.sh smoke 10
