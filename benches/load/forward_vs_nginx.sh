#!/usr/bin/env bash
# Side-by-side load run: Sekisho's intercepting forward proxy vs nginx as a TLS-terminating
# reverse proxy, same origin, same core, same run. Loopback only; every run is bounded.
#
#   benches/load/forward_vs_nginx.sh [SECONDS] [CONCURRENCY]
#
# Scenarios (HTTPS, 1 KiB responses from a local nginx origin):
#   keepalive  one client connection per worker, reused
#   new-tls    a new TCP + TLS connection per request (for Sekisho: CONNECT + TLS each time)
# The proxy under test is pinned to CPU 1, load generator and origin to CPU 0. Writes a markdown
# table to stdout and benches/results/forward_vs_nginx.json. Needs: nginx-light, hey, openssl.
# With IPS=1 Sekisho also runs the IPS stage with every ET Open rule of the corpora
# (../shared/corpora or SEKISHO_CORPORA) and the results go to forward_vs_nginx_ips.json.
# With MSS=1 every communication-log line also goes through the MSS spool to a local syslog
# collector (`sekisho collector`); the script reports how many arrived.
# With URL=1 Sekisho runs the URL filter with every UT1 category of the corpora (policy: block
# malware, phishing, gambling; warn shopping; the rest allowed) -> forward_vs_nginx_url.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
CONC=${2:-32}
. benches/lib.sh
need nginx:nginx-light hey:hey openssl:openssl
build_release
W=$(mktemp -d /tmp/sekisho-load.XXXXXX); chmod 755 "$W"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$W"; }
trap cleanup EXIT

# Test PKI for the origin and for nginx-as-proxy.
make_pki "$W"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$W/1k"

# The origin listens on 443 so URLs carry no port: Debian's hey puts host:port into the SNI, which
# RFC 6066 forbids and rustls refuses (nginx tolerates it).
ORIGIN=443; NGINXP=18444; SEKP=18128; MET=18190
cat > "$W/origin.conf" <<NGX
worker_processes 1; pid $W/origin.pid; error_log $W/origin.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$ORIGIN ssl http2; ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    root $W; location / { } } }
NGX
cat > "$W/proxy.conf" <<NGX
worker_processes 1; pid $W/proxy.pid; error_log $W/proxy.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 64; }
  server { listen 127.0.0.1:$NGINXP ssl; ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass https://origin; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $W/ca.crt; proxy_ssl_name localhost;
      proxy_ssl_session_reuse on; } } }
NGX
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
addr = "127.0.0.1:$MET"
[events]
file = "$W/events.jsonl"
comm_log = "$W/flows.jsonl"
[limits]
max_connections = 20000
TOML
RESULT=benches/results/forward_vs_nginx.json
if [ -n "${IPS:-}" ]; then
  ET="$(realpath "${SEKISHO_CORPORA:-../shared/corpora}")/et-open"
  printf '[ips]\nrules = ["%s/*.rules"]\nclassification = "%s/classification.config"\n' "$ET" "$ET" >> "$W/sekisho.toml"
  RESULT=benches/results/forward_vs_nginx_ips.json
fi
if [ -n "${URL:-}" ]; then
  UT1="$(realpath "${SEKISHO_CORPORA:-../shared/corpora}")/ut1/blacklists"
  printf '[urlfilter]\ncategory_dirs = ["%s"]\n[[urlfilter.policy]]\nname = "bench"\nwarn = ["shopping"]\nblock = ["malware", "phishing", "gambling"]\n' "$UT1" >> "$W/sekisho.toml"
  RESULT=benches/results/forward_vs_nginx_url.json
fi
if [ -n "${MSS:-}" ]; then
  # Every communication-log line (one per request) also goes through the MSS spool (fsync per
  # batch) to a syslog TCP collector on CPU 0: the cost of shipping logs under load.
  COLP=18514
  taskset -c 0 "$BIN" collector --syslog-tcp "127.0.0.1:$COLP" --out "$W/collector" > "$W/collector.out" 2>&1 & pids+=($!)
  printf '[mss]\nspool_dir = "%s/spool"\n[[mss.sink]]\nname = "bench"\nkind = "syslog"\naddr = "127.0.0.1:%s"\nformat = "rfc5424-json"\n' "$W" "$COLP" >> "$W/sekisho.toml"
  RESULT=benches/results/forward_vs_nginx_mss.json
fi
"$BIN" ca init --out "$W/gw" >/dev/null
cat "$W/ca.crt" "$W/gw/ca.crt" > "$W/trust.pem"

taskset -c 0 nginx -c "$W/origin.conf" -p "$W" -g 'daemon off;' & pids+=($!)
taskset -c 1 nginx -c "$W/proxy.conf" -p "$W" -g 'daemon off;' & pids+=($!)
taskset -c 1 "$BIN" --log-level "${SEKISHO_LOG:-warn}" run --config "$W/sekisho.toml" > "$W/sekisho.out" 2>&1 & SEKPID=$!; pids+=($SEKPID)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$MET/metrics" && break; sleep 0.1; done

run() { # extra hey args... -> "rps p50 p99 errs ok"
  SSL_CERT_FILE="$W/trust.pem" taskset -c 0 hey -z "${SECS}s" -c "$CONC" "$@" 2>&1 | hey_stats "$SECS"
}
warm() { SSL_CERT_FILE="$W/trust.pem" hey -n 200 -c 4 "$@" >/dev/null 2>&1 || true; }

URL_SEK="https://localhost/1k"
URL_NGX="https://localhost:$NGINXP/1k"
warm -x "http://127.0.0.1:$SEKP" "$URL_SEK"; warm "$URL_NGX"

declare -A R
R[sek_ka]=$(run -x "http://127.0.0.1:$SEKP" "$URL_SEK")
R[ngx_ka]=$(run "$URL_NGX")
R[sek_new]=$(run -disable-keepalive -x "http://127.0.0.1:$SEKP" "$URL_SEK")
R[ngx_new]=$(run -disable-keepalive "$URL_NGX")

metrics=$(curl -s "http://127.0.0.1:$MET/metrics")
hits=$(awk '/^sekisho_cert_cache_total\{result="hit"\}/ {print $2}' <<<"$metrics")
miss=$(awk '/^sekisho_cert_cache_total\{result="miss"\}/ {print $2}' <<<"$metrics")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$SEKPID/status")
if [ -n "${MSS:-}" ]; then
  sleep 3   # let the sink drain and acknowledge
  metrics=$(curl -s "http://127.0.0.1:$MET/metrics")
  mq=$(awk '/^sekisho_mss_events_queued_total\{sink="bench"\}/ {print $2}' <<<"$metrics")
  ma=$(awk '/^sekisho_mss_events_acked_total\{sink="bench"\}/ {print $2}' <<<"$metrics")
  md=$(awk '/^sekisho_mss_events_dropped_total/ {s+=$2} END {print s+0}' <<<"$metrics")
  mf=$(wc -l < "$W/flows.jsonl")
  mc=$(wc -l < "$W/collector/syslog.log" 2>/dev/null || echo 0)
  echo "mss: $mf flow lines logged, $mq queued, $ma acknowledged, $md dropped, $mc lines at the collector" >&2
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
f() { awk '{print $'"$2"'}' <<<"${R[$1]}"; }
echo "| scenario | sekisho req/s | nginx req/s | ratio | sekisho p50 / p99 (s) | nginx p50 / p99 (s) | errors sekisho / nginx |"
echo "|---|---|---|---|---|---|---|"
for s in ka new; do
  name=$([ $s = ka ] && echo "HTTPS keep-alive" || echo "new TLS connection per request")
  echo "| $name | $(f sek_$s 1) | $(f ngx_$s 1) | $(ratio "$(f sek_$s 1)" "$(f ngx_$s 1)") | $(f sek_$s 2) / $(f sek_$s 3) | $(f ngx_$s 2) / $(f ngx_$s 3) | $(f sek_$s 4) / $(f ngx_$s 4) |"
done
echo
echo "leaf cache: ${hits:-0} hits, ${miss:-0} misses; sekisho peak RSS ${rss:-?} KiB; ${SECS}s per run, $CONC connections, hey on CPU 0, proxies on CPU 1"
mkdir -p benches/results
cat > "$RESULT" <<JSON
{"date": "$(date -u +%FT%TZ)", "machine": "$(nproc) cores, $(uname -m), $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//')",
 "seconds": $SECS, "concurrency": $CONC, "ips_et_open": $([ -n "${IPS:-}" ] && echo true || echo false), "url_ut1": $([ -n "${URL:-}" ] && echo true || echo false), "mss_syslog": $([ -n "${MSS:-}" ] && echo true || echo false),
 "keepalive": {"sekisho_rps": $(f sek_ka 1), "nginx_rps": $(f ngx_ka 1)},
 "new_tls": {"sekisho_rps": $(f sek_new 1), "nginx_rps": $(f ngx_new 1)},
 "cert_cache": {"hits": ${hits:-0}, "misses": ${miss:-0}}, "sekisho_peak_rss_kib": ${rss:-0}}
JSON
