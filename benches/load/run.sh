#!/usr/bin/env bash
# The load harness: Sekisho side by side with the proxies users would pick instead, same machine,
# same run. Loopback only; every run is bounded.
#
#   benches/load/run.sh [SECONDS] [CONCURRENCY] [RUNS]        (defaults 10, 32, 3)
#
# Targets (configs generated here, one worker each, pinned to CPU 1; load generator `hey` and the
# origin on CPU 0; every target logs one line per request to a file):
#   sekisho   the real binary: forward proxy, TLS interception (host policy stage only)
#   nginx     TLS-terminating reverse proxy to the same origin (what TLS proxying costs at best)
#   squid     Squid 5.7 with ssl-bump (`squid-openssl`), bump all, no caching
#   mitmproxy mitmdump 8.1
# Scenarios (add one: a line in SCENARIOS and, if it needs it, a file in the origin's root):
#   https-keepalive   1 KiB over HTTPS, connections reused
#   https-new-tls     1 KiB over HTTPS, a new TCP+TLS connection (and CONNECT) per request
#   http-forward      1 KiB over plain HTTP
# Each (scenario, target) runs RUNS times, interleaved, after a warm-up; the table shows medians:
# requests/s (200s only), p50 and p99 latency, CPU seconds of the target per 10,000 requests,
# peak RSS of the target, errors (transport errors and non-200 statuses), and Sekisho's ratio to
# each peer. Writes the markdown table to stdout and benches/results/load.md, JSON to
# benches/results/load.json. Needs (installed as root when missing): nginx-light, hey, openssl,
# squid-openssl, mitmproxy. TARGETS="sekisho nginx" limits the targets.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
CONC=${2:-32}
RUNS=${3:-3}
TARGETS=${TARGETS:-sekisho nginx squid mitmproxy}
. benches/lib.sh
need nginx:nginx-light hey:hey openssl:openssl squid:squid-openssl mitmdump:mitmproxy
build_release
W=$(mktemp -d /tmp/sekisho-harness.XXXXXX); chmod 755 "$W"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$W"; }
trap cleanup EXIT

# --- PKI: the origin's CA and certificate (localhost, 127.0.0.1).
make_pki "$W"
mkdir -p "$W/www"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$W/www/1k"

# --- The origin: nginx on CPU 0, HTTPS on 443 and HTTP on 80 (URLs carry no port: Debian's hey
# puts host:port into the SNI, which RFC 6066 forbids and rustls refuses).
NGX_TLS=18444; NGX_HTTP=18480; SEKP=18128; SEKMET=18190; SQUIDP=18300; MITMP=18380
cat > "$W/origin.conf" <<NGX
worker_processes 1; pid $W/origin.pid; error_log $W/origin.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:443 ssl http2; listen 127.0.0.1:80; ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    root $W/www; location / { } } }
NGX
taskset -c 0 nginx -c "$W/origin.conf" -p "$W" -g 'daemon off;' & pids+=($!)

# --- Targets. Each start_* leaves its main PID in TPID.
start_sekisho() {
  cat > "$W/sekisho.toml" <<TOML
[[listener]]
kind = "forward"
addr = "127.0.0.1:$SEKP"
[tls]
ca_cert = "$W/gw/ca.crt"
ca_key = "$W/gw/ca.key"
upstream_roots = ["$W/ca.crt"]
system_roots = false
webpki_roots = false
[metrics]
addr = "127.0.0.1:$SEKMET"
[events]
file = "$W/sekisho-events.jsonl"
comm_log = "$W/sekisho-flows.jsonl"
[limits]
max_connections = 20000
TOML
  [ -f "$W/gw/ca.crt" ] || "$BIN" ca init --out "$W/gw" >/dev/null
  taskset -c 1 "$BIN" --log-level warn run --config "$W/sekisho.toml" > "$W/sekisho.out" 2>&1 & TPID=$!
  wait_port $SEKP
}
start_nginx() {
  cat > "$W/proxy.conf" <<NGX
worker_processes 1; pid $W/proxy.pid; error_log $W/proxy.err;
events { worker_connections 8192; }
http { access_log $W/nginx-access.log; keepalive_requests 1000000;
  upstream origin_tls { server 127.0.0.1:443; keepalive 64; }
  upstream origin_http { server 127.0.0.1:80; keepalive 64; }
  server { listen 127.0.0.1:$NGX_TLS ssl; ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass https://origin_tls; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $W/ca.crt; proxy_ssl_name localhost;
      proxy_ssl_server_name on; proxy_ssl_session_reuse on; } }
  server { listen 127.0.0.1:$NGX_HTTP;
    location / { proxy_pass http://origin_http; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX
  taskset -c 1 nginx -c "$W/proxy.conf" -p "$W" -g 'daemon off;' & TPID=$!
  wait_port $NGX_TLS
}
start_squid() {
  if [ ! -f "$W/squid/ca.pem" ]; then
    mkdir -p "$W/squid"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=SquidBumpCA \
      -keyout "$W/squid/ca.key" -out "$W/squid/ca.crt" -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    cat "$W/squid/ca.crt" "$W/squid/ca.key" > "$W/squid/ca.pem"
    /usr/lib/squid/security_file_certgen -c -s "$W/squid/ssl_db" -M 16MB >/dev/null
    chown -R proxy:proxy "$W/squid" 2>/dev/null || true
  fi
  cat > "$W/squid/squid.conf" <<SQ
http_port 127.0.0.1:$SQUIDP ssl-bump generate-host-certificates=on dynamic_cert_mem_cache_size=16MB tls-cert=$W/squid/ca.pem
sslcrtd_program /usr/lib/squid/security_file_certgen -s $W/squid/ssl_db -M 16MB
sslcrtd_children 4 startup=1 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
http_access allow all
tls_outgoing_options cafile=$W/ca.crt
cache deny all
access_log stdio:$W/squid/access.log
cache_log $W/squid/cache.log
pid_filename $W/squid/squid.pid
coredump_dir $W/squid
workers 1
max_filedescriptors 16384
SQ
  taskset -c 1 squid -N -f "$W/squid/squid.conf" & TPID=$!
  wait_port $SQUIDP
}
start_mitmproxy() {
  mkdir -p "$W/mitm"
  # One line per flow on stdout (flow_detail=1), into a file: comparable to the others' logs.
  taskset -c 1 mitmdump --listen-host 127.0.0.1 -p $MITMP --set confdir="$W/mitm" \
    --set ssl_verify_upstream_trusted_ca="$W/ca.crt" --set flow_detail=1 \
    > "$W/mitm/flows.log" 2>&1 & TPID=$!
  wait_port $MITMP
}
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# How a target is driven: hey arguments for a scenario.
hey_args() { # target scenario
  local t=$1 s=$2
  local scheme=https path=/1k extra=()
  case $s in https-new-tls) extra=(-disable-keepalive) ;; http-forward) scheme=http ;; esac
  case $t in
    sekisho) echo "${extra[*]} -x http://127.0.0.1:$SEKP $scheme://localhost$path" ;;
    squid) echo "${extra[*]} -x http://127.0.0.1:$SQUIDP $scheme://localhost$path" ;;
    mitmproxy) echo "${extra[*]} -x http://127.0.0.1:$MITMP $scheme://localhost$path" ;;
    nginx) if [ "$scheme" = https ]; then echo "${extra[*]} https://localhost:$NGX_TLS$path"; else echo "${extra[*]} http://localhost:$NGX_HTTP$path"; fi ;;
  esac
}

# CPU ticks and peak RSS (KiB) of a process and its descendants.
tree() { local p=$1; echo "$p"; for c in $(pgrep -P "$p" 2>/dev/null); do tree "$c"; done; }
cpu_ticks() { local s=0; for p in $(tree "$1"); do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $s; }
peak_rss() { local s=0; for p in $(tree "$1"); do [ -r "/proc/$p/status" ] && s=$((s + $(awk '/VmHWM/ {print $2}' "/proc/$p/status"))); done; echo $s; }
HZ=$(getconf CLK_TCK)

one_run() { # target scenario -> "rps p50 p99 errs ok cpu_s_per_10k"
  local args out t0 t1
  args=$(hey_args "$1" "$2")
  t0=$(cpu_ticks "$TPID")
  # shellcheck disable=SC2086
  out=$(SSL_CERT_FILE="$W/trust.pem" taskset -c 0 hey -z "${SECS}s" -c "$CONC" $args 2>&1)
  t1=$(cpu_ticks "$TPID")
  local stats ok cpu
  stats=$(hey_stats "$SECS" <<<"$out")
  ok=$(awk '{print $5}' <<<"$stats")
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v ok="$ok" 'BEGIN { if (ok > 0) printf "%.2f", d / hz / ok * 10000; else print "n/a" }')
  echo "$stats $cpu"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

SCENARIOS=(https-keepalive https-new-tls http-forward)
declare -A RES RSS
for t in $TARGETS; do
  "start_$t"
  # Trust: the origin's CA, the gateway CA, Squid's and mitmproxy's CAs.
  for _ in $(seq 100); do [ "$t" != mitmproxy ] || [ -f "$W/mitm/mitmproxy-ca-cert.pem" ] && break; sleep 0.1; done
  cat "$W/ca.crt" "$W/gw/ca.crt" "$W/squid/ca.crt" "$W/mitm/mitmproxy-ca-cert.pem" 2>/dev/null > "$W/trust.pem" || true
  for s in "${SCENARIOS[@]}"; do
    # shellcheck disable=SC2046
    SSL_CERT_FILE="$W/trust.pem" hey -n 200 -c 4 $(hey_args "$t" "$s") >/dev/null 2>&1 || true
  done
  for r in $(seq "$RUNS"); do
    for s in "${SCENARIOS[@]}"; do
      RES[$t,$s,$r]=$(one_run "$t" "$s")
      echo "run $r $t $s: ${RES[$t,$s,$r]}" >&2
    done
  done
  RSS[$t]=$(peak_rss "$TPID")
  for p in $(tree "$TPID" | sort -r); do kill "$p" 2>/dev/null || true; done
  wait "$TPID" 2>/dev/null || true
  sleep 1
done

col() { local t=$1 s=$2 i=$3; for r in $(seq "$RUNS"); do awk -v i="$i" '{print $i}' <<<"${RES[$t,$s,$r]}"; done | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
MACHINE="$(nproc) cores, $(uname -m), $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//')"
{
  echo "Load harness, $(date -u +%F), $MACHINE; ${SECS}s per run, $CONC connections, median of $RUNS runs; hey and origin on CPU 0, target on CPU 1."
  for s in "${SCENARIOS[@]}"; do
    echo
    echo "### $s"
    echo
    echo "| target | req/s | p50 (s) | p99 (s) | CPU s / 10k req | peak RSS (MiB) | errors | sekisho ÷ target |"
    echo "|---|---|---|---|---|---|---|---|"
    for t in $TARGETS; do
      echo "| $t | $(col "$t" "$s" 1) | $(col "$t" "$s" 2) | $(col "$t" "$s" 3) | $(col "$t" "$s" 6) | $(( ${RSS[$t]:-0} / 1024 )) | $(col "$t" "$s" 4) | $(ratio "$(col sekisho "$s" 1)" "$(col "$t" "$s" 1)") |"
    done
  done
} | tee "$W/table.md"
mkdir -p benches/results
cp "$W/table.md" benches/results/load.md
{
  printf '{"date": "%s", "machine": "%s", "seconds": %s, "concurrency": %s, "runs": %s, "scenarios": {' "$(date -u +%FT%TZ)" "$MACHINE" "$SECS" "$CONC" "$RUNS"
  first=1
  for s in "${SCENARIOS[@]}"; do
    [ $first = 1 ] || printf ','; first=0
    printf '"%s": {' "$s"; f2=1
    for t in $TARGETS; do
      [ $f2 = 1 ] || printf ','; f2=0
      printf '"%s": {"rps": %s, "p50_s": %s, "p99_s": %s, "cpu_s_per_10k": "%s", "peak_rss_kib": %s, "errors": %s, "sekisho_ratio": "%s"}' \
        "$t" "$(col "$t" "$s" 1)" "$(col "$t" "$s" 2)" "$(col "$t" "$s" 3)" "$(col "$t" "$s" 6)" "${RSS[$t]:-0}" "$(col "$t" "$s" 4)" "$(ratio "$(col sekisho "$s" 1)" "$(col "$t" "$s" 1)")"
    done
    printf '}'
  done
  printf '}}\n'
} > benches/results/load.json
