#!/usr/bin/env bash
# The sandbox's throughput and tracing cost on a benign build-like workload (a bash script that
# writes 40 source files, concatenates and edits them, lists them: ~250 traced calls, 90
# processes). Runs it N times (default 20) three ways, one at a time (one slot):
#   direct     bash in a temporary folder, no isolation, no tracing
#   isolated   bubblewrap + setpriv + prlimit as the sandbox runs it, no tracing
#   sandbox    `sekisho sandbox run` (isolation, strace -f, report)
# Prints ms per run for each and detonations per minute per slot.
#
#   benches/sandbox.sh [N]        (SEKISHO_BIN=PATH to use a built binary)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
. benches/lib.sh
need bwrap:bubblewrap strace:strace
build_release
W=$(mktemp -d /tmp/sekisho-sandboxbench.XXXXXX)
trap 'rm -rf "$W"' EXIT
cat > "$W/build.sh" <<'SH'
#!/bin/bash
set -e
mkdir -p build/obj
for i in $(seq 1 40); do printf 'int f%d(void){return %d;}\n' $i $i > build/obj/f$i.c; done
cat build/obj/*.c > build/all.c
sed -i 's/return/  return/' build/all.c
wc -l build/all.c > /dev/null
ls build/obj | sort > build/manifest.txt
SH
chmod 755 "$W/build.sh"
ms() { awk -v s="$1" -v e="$2" -v n="$N" 'BEGIN { printf "%.1f", (e - s) / 1e6 / n }'; }
t0=$(date +%s%N)
for _ in $(seq "$N"); do d=$(mktemp -d "$W/direct.XXXX"); (cd "$d" && bash "$W/build.sh"); rm -rf "$d"; done
t1=$(date +%s%N)
for _ in $(seq "$N"); do
  d=$(mktemp -d "$W/iso.XXXX"); cp "$W/build.sh" "$d/sample"; chown -R 65534:65534 "$d"
  bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --bind "$d" /tmp/scratch \
    --unshare-ipc --unshare-pid --unshare-net --unshare-uts --unshare-cgroup-try --die-with-parent \
    --new-session --chdir /tmp/scratch --clearenv --setenv PATH /usr/bin:/bin -- \
    setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
    --no-new-privs -- prlimit --nproc=64 -- /bin/bash /tmp/scratch/sample
  rm -rf "$d"
done
t2=$(date +%s%N)
for _ in $(seq "$N"); do
  "$BIN" sandbox run --rules rules/sandbox --work-dir "$W/work" "$W/build.sh" > "$W/report.json"
done
t3=$(date +%s%N)
verdict=$(sed -n 's/^  "verdict": "\(.*\)",$/\1/p' "$W/report.json")
d=$(ms "$t0" "$t1"); i=$(ms "$t1" "$t2"); s=$(ms "$t2" "$t3")
echo "runs: $N, last verdict: $verdict"
echo "direct:   $d ms per run"
echo "isolated: $i ms per run"
echo "sandbox:  $s ms per run ($(awk -v s="$s" 'BEGIN { printf "%.0f", 60000 / s }') detonations per minute per slot)"
echo "tracing and report cost: $(awk -v s="$s" -v i="$i" 'BEGIN { printf "%.2f", s / i }')x the isolated run"
