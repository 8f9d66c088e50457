# Shared by the benchmark scripts: source it from the repository root.

# need CMD:PACKAGE ...: installs each missing command's Debian package (as root), or stops.
need() {
  for pkg in "$@"; do
    command -v "${pkg%%:*}" >/dev/null 2>&1 && continue
    [ "$(id -u)" = 0 ] || { echo "install ${pkg#*:}" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkg#*:}" >/dev/null
  done
}

# Builds the release binary and sets BIN (SEKISHO_BIN=PATH: use that binary, build nothing).
build_release() {
  if [ -n "${SEKISHO_BIN:-}" ]; then BIN=$(realpath "$SEKISHO_BIN"); return; fi
  cargo build --release --locked -q
  BIN=$PWD/target/release/sekisho
}

# make_pki DIR: a test CA (DIR/ca.crt, DIR/ca.key) and a server certificate it issued for
# localhost and 127.0.0.1 (DIR/srv.crt, DIR/srv.key).
make_pki() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=LoadTestCA \
    -keyout "$1/ca.key" -out "$1/ca.crt" -addext basicConstraints=critical,CA:TRUE 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$1/srv.key" -out "$1/srv.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$1/ext"
  openssl x509 -req -in "$1/srv.csr" -CA "$1/ca.crt" -CAkey "$1/ca.key" -CAcreateserial -days 2 \
    -extfile "$1/ext" -out "$1/srv.crt" 2>/dev/null
}

# hey_stats SECONDS [STATUS] <<< "$(hey … 2>&1)": prints "req/s p50 p99 errors ok" — req/s over
# responses with STATUS (default 200) only; errors are transport errors plus any other status
# (reported on stderr).
hey_stats() {
  local out p50 p99 errs ok rps want=${2:-200}
  out=$(cat)
  p50=$(awk '/50% in/ {print $3}' <<<"$out")
  p99=$(awk '/99% in/ {print $3}' <<<"$out")
  errs=$(awk -v w="[$want]" '/^Error distribution:/ {e=1; next} /^Status code distribution:/ {c=1; next}
              e && /\[[0-9]+\]/ {v=$1; gsub(/[\[\]]/,"",v); s+=v}
              c && /\[[0-9]+\]/ && $1 != w {s+=$2}
              /^$/ {e=0; c=0} END {print s+0}' <<<"$out")
  ok=$(awk -v w="[$want]" '$1 == w {print $2}' <<<"$out"); ok=${ok:-0}
  rps=$(awk -v ok="$ok" -v s="$1" 'BEGIN { printf "%.0f", ok / s }')
  [ "${errs:-0}" = 0 ] || grep -A4 -E "^(Status code|Error) distribution" <<<"$out" >&2 || true
  echo "$rps ${p50:-0} ${p99:-0} ${errs:-0} $ok"
}

# wrk_stats SECONDS <<< "$(wrk --latency …)": prints "req/s p50 p99 errors ok" as hey_stats does,
# from wrk's report: req/s over 2xx/3xx responses only; errors are other statuses plus socket
# errors.
wrk_stats() {
  awk -v s="$1" '
    function sec(v) { if (v ~ /us$/) return v / 1e6; if (v ~ /ms$/) return v / 1e3; return v + 0 }
    /^ +50%/ {p50 = sec($2)} /^ +99%/ {p99 = sec($2)}
    / requests in / {total = $1}
    /Non-2xx or 3xx responses:/ {bad = $NF}
    /Socket errors:/ {gsub(/,/, ""); sock = $4 + $6 + $8 + $10}
    END { ok = total - bad; printf "%.0f %.4f %.4f %d %d\n", ok / s, p50, p99, bad + sock, ok }'
}

# apache_proxy_conf WORKDIR PORT: the head of an Apache 2.4 reverse-proxy config (event MPM,
# mod_proxy_http) listening on 127.0.0.1:PORT, logs and pid under WORKDIR/apache.
apache_proxy_conf() {
  local W=$1 PORT=$2
  cat <<APACHE
ServerRoot /etc/apache2
ServerName localhost
PidFile $W/apache/httpd.pid
ErrorLog $W/apache/logs/error.log
LogLevel error
Listen 127.0.0.1:$PORT
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_http_module /usr/lib/apache2/modules/mod_proxy_http.so
User www-data
Group www-data
APACHE
}
