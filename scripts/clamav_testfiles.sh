#!/usr/bin/env bash
# Differential check on ClamAV's own test files (third-party samples this repository does not
# hold): the 60 files of unit_tests/input/clamav_hdb_scanfiles (containers, documents, mail and
# packed executables around clam.exe, stored XOR'd), scanned by Debian's clamscan and by
# `sekisho scan` with the same clamav.hdb. Prints each file's verdicts and the totals.
#
#   scripts/clamav_testfiles.sh [CLAMAV_SOURCE] [SEKISHO_BIN]
#
# CLAMAV_SOURCE: a ClamAV checkout or bare clone (default ../.mirror/Cisco-Talos+clamav/repo);
# SEKISHO_BIN: default the newer of target/release/sekisho and target/debug/sekisho.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../.mirror/Cisco-Talos+clamav/repo}
bin=${2:-}
if [ -z "$bin" ]; then
  bin=$(ls -t target/release/sekisho target/debug/sekisho 2>/dev/null | head -1)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
show() { # path inside the ClamAV tree -> stdout
  if [ -d "$src/unit_tests" ]; then cat "$src/$1"; else git --git-dir="$src" show "HEAD:$1"; fi
}
list() {
  if [ -d "$src/unit_tests" ]; then (cd "$src" && ls unit_tests/input/clamav_hdb_scanfiles/*.xor)
  else git --git-dir="$src" ls-tree -r --name-only HEAD unit_tests/input/clamav_hdb_scanfiles/; fi
}
show unit_tests/input/xor_testfile.py > "$work/xor.py"
show unit_tests/input/clamav.hdb > "$work/clamav.hdb"
mkdir "$work/files"
for f in $(list); do
  b=$(basename "$f" .xor)
  show "$f" > "$work/$b.xor"
  python3 "$work/xor.py" --in_file "$work/$b.xor" --out_file "$work/files/$b" > /dev/null
done
printf '[av]\nclamav = ["%s"]\ncache_dir = ""\n' "$work/clamav.hdb" > "$work/scan.toml"
clamscan --no-summary -d "$work/clamav.hdb" "$work/files" > "$work/clamscan.txt" 2>&1 || true
"$bin" scan --config "$work/scan.toml" "$work/files" > "$work/sekisho.txt" 2>&1 || true
both=0 clam=0 ours=0 total=0
printf '%-48s %-9s %s\n' FILE clamscan sekisho
for f in "$work"/files/*; do
  c=no; s=no
  grep -q "^$f: .*FOUND" "$work/clamscan.txt" && c=found
  grep -q "^$f: ClamAV-Test-File FOUND" "$work/sekisho.txt" && s=found
  total=$((total + 1))
  [ $c = found ] && clam=$((clam + 1))
  [ $s = found ] && ours=$((ours + 1))
  [ $c = found ] && [ $s = found ] && both=$((both + 1))
  printf '%-48s %-9s %s\n' "$(basename "$f")" $c $s
done
echo "files: $total  clamscan: $clam  sekisho: $ours  both: $both"
