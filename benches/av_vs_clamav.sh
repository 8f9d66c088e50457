#!/usr/bin/env bash
# AV scanning side by side, one core each, same files, same run:
#   (a) the same ClamAV databases (rules/clamav: .hdb .hsb .ndb): `sekisho scan` vs `clamscan`
#   (b) the same YARA rules (signature-base + ReversingLabs + rules/yara, the files YARA 4.2 itself
#       compiles): `sekisho scan` (YARA-X) vs `yara -p 1`
# Scan time = time(corpus) - time(empty folder), so rule loading is not counted. Writes a markdown
# table and benches/results/av_vs_clamav.json. Needs clamav and yara (Debian packages).
#
#   benches/av_vs_clamav.sh [MiB per file kind, default 16]
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-16}
CORPORA=${SEKISHO_CORPORA:-$PWD/../shared/corpora}
. benches/lib.sh
need clamscan:clamav yara:yara 7z:p7zip-full gcab:gcab cpio:cpio genisoimage:genisoimage
build_release
W=$(mktemp -d /tmp/sekisho-avbench.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/corpus" "$W/empty"

python3 - "$W/corpus" "$MIB" <<'PY'
import os, sys, zipfile, random, zlib
out, mib = sys.argv[1], int(sys.argv[2]); n = mib << 20
rnd = random.Random(7)
words = b"patient record claim prescription hospital clinic dose lab result the and of".split()
with open(f"{out}/text.txt", "wb") as f:
    size = 0
    while size < n:
        line = b" ".join(rnd.choice(words) for _ in range(12)) + b"\n"; f.write(line); size += len(line)
with open(f"{out}/doc.pdf", "wb") as f:
    f.write(b"%PDF-1.7\n"); size = 9
    while size < n:
        z = zlib.compress(rnd.randbytes(4096), 1)
        chunk = b"3 0 obj << /Length %d /Filter /FlateDecode >> stream\n" % len(z) + z + b"\nendstream endobj\n"
        f.write(chunk); size += len(chunk)
elf = bytearray()
for d in ("/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu"):
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        try:
            if os.path.isfile(p) and not os.path.islink(p):
                b = open(p, "rb").read()
                if b[:4] == b"\x7fELF" and len(b) < n: elf += b
        except OSError: pass
        if len(elf) >= n: break
    if len(elf) >= n: break
open(f"{out}/tools.elf", "wb").write(elf[:n])
with zipfile.ZipFile(f"{out}/bundle.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("notes.txt", open(f"{out}/text.txt", "rb").read()[: n // 2])
    z.writestr("tool", bytes(elf[: n // 2]))
os.makedirs(f"{out}/../members", exist_ok=True)
open(f"{out}/../members/notes.txt", "wb").write(open(f"{out}/text.txt", "rb").read()[: n // 2])
open(f"{out}/../members/tool", "wb").write(bytes(elf[: n // 2]))
from email.message import EmailMessage
m = EmailMessage(); m["From"] = "lab@clinic.example"; m["To"] = "ward@hospital.example"; m["Subject"] = "results"
m.set_content(open(f"{out}/../members/notes.txt").read())
m.add_attachment(bytes(elf[: n // 2]), maintype="application", subtype="octet-stream", filename="tool")
open(f"{out}/mail.eml", "wb").write(bytes(m))
PY
# The same two members in the other container families both scanners open.
( cd "$W/members"
  7z a -bd -y -mx=5 "$W/corpus/bundle.7z" notes.txt tool >/dev/null
  cat notes.txt tool | xz -6 -c > "$W/corpus/bundle.xz"
  cat notes.txt tool | bzip2 -c > "$W/corpus/bundle.bz2"
  gcab -c -z "$W/corpus/bundle.cab" notes.txt tool
  printf 'notes.txt\ntool\n' | cpio -o -H newc --quiet > "$W/corpus/bundle.cpio"
  genisoimage -quiet -J -o "$W/corpus/bundle.iso" notes.txt tool )
BYTES=$(du -sb "$W/corpus" | cut -f1)

# YARA files that YARA 4.2 compiles on its own (the fair common set).
: > "$W/yara-ok.txt"
for f in $(find "$CORPORA/yara" rules/yara -name '*.yar' -o -name '*.yara' | sort); do
  if yara -w -d filename=x -d filepath=x -d extension=x -d filetype=x -d owner=x "$f" /dev/null >/dev/null 2>&1; then
    echo "$f" >> "$W/yara-ok.txt"
  fi
done
NYARA=$(wc -l < "$W/yara-ok.txt")
mkdir -p "$W/yararules"
i=0; while read -r f; do i=$((i+1)); cp "$f" "$W/yararules/$i.yar"; done < "$W/yara-ok.txt"

cat > "$W/clam.toml" <<TOML
[av]
clamav = ["$PWD/rules/clamav"]
cache_dir = "$W/cache"
TOML
cat > "$W/yara.toml" <<TOML
[av]
yara = ["$W/yararules"]
cache_dir = "$W/cache"
TOML

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
best() { local b=999999 t; for _ in 1 2 3; do t=$(secs "$@"); b=$(echo "if ($t < $b) $t else $b" | bc -l); done; echo "$b"; }
mbps() { echo "scale=1; $BYTES / 1048576 / ($1 - $2)" | bc -l; }

# Warm the compiled-rules caches once.
"$BIN" scan --config "$W/clam.toml" "$W/empty" >/dev/null 2>&1 || true
"$BIN" scan --config "$W/yara.toml" "$W/empty" >/dev/null 2>&1 || true

S_CLAM=$(best taskset -c 1 "$BIN" scan --config "$W/clam.toml" "$W/corpus"); S_CLAM0=$(best taskset -c 1 "$BIN" scan --config "$W/clam.toml" "$W/empty")
C=$(best taskset -c 1 clamscan --no-summary -d "$PWD/rules/clamav" -r "$W/corpus"); C0=$(best taskset -c 1 clamscan --no-summary -d "$PWD/rules/clamav" -r "$W/empty")
S_YARA=$(best taskset -c 1 "$BIN" scan --config "$W/yara.toml" "$W/corpus"); S_YARA0=$(best taskset -c 1 "$BIN" scan --config "$W/yara.toml" "$W/empty")
YARGS=(-p 1 -r -w -d filename=x -d filepath=x -d extension=x -d filetype=x -d owner=x)
Y=$(best taskset -c 1 yara "${YARGS[@]}" $(sed 's/^/ /' "$W/yara-ok.txt" | tr '\n' ' ') "$W/corpus"); Y0=$(best taskset -c 1 yara "${YARGS[@]}" $(tr '\n' ' ' < "$W/yara-ok.txt") "$W/empty")

SM1=$(mbps "$S_CLAM" "$S_CLAM0"); CM=$(mbps "$C" "$C0"); SM2=$(mbps "$S_YARA" "$S_YARA0"); YM=$(mbps "$Y" "$Y0")
r() { echo "scale=2; $1 / $2" | bc -l; }
echo "| signatures | sekisho MB/s | peer | peer MB/s | ratio |"
echo "|---|---|---|---|---|"
echo "| ClamAV DBs (rules/clamav) | $SM1 | clamscan $(clamscan --version | cut -d/ -f1) | $CM | $(r "$SM1" "$CM") |"
echo "| $NYARA YARA files (signature-base + ReversingLabs + ours) | $SM2 | yara $(yara --version) -p 1 | $YM | $(r "$SM2" "$YM") |"
echo
echo "corpus: $((BYTES / 1048576)) MiB (text, PDF, ELF, zip, 7z, xz, bzip2, cab, cpio, ISO, mail), one core each (taskset -c 1), best of 3, load time subtracted"
mkdir -p benches/results
cat > benches/results/av_vs_clamav.json <<JSON
{"date": "$(date -u +%FT%TZ)", "corpus_bytes": $BYTES, "yara_files": $NYARA,
 "clamav_dbs": {"sekisho_mbps": $SM1, "clamscan_mbps": $CM},
 "yara": {"sekisho_mbps": $SM2, "yara_mbps": $YM}}
JSON
