#!/usr/bin/env bash
# True-positive and true-negative rates of the WAF (OWASP CRS v4 from ../shared/corpora/crs,
# paranoia level 1, blocking: 403 = blocked) on a request set built from public sources, with
# and without `[waf] decode = ["base64"]`, and of Apache + ModSecurity 2.9 with the same CRS
# files when mod_security2 is installed. The set is a JSONL file, one request per line:
#   {"set": "attack"|"benign", "encoder": ..., "placeholder": ..., "method": "GET"|"POST",
#    "path": "/...", "query": "a=b", "headers": {...}, "body": "..."}
# benches/waf_detection/gotestwaf.py builds one from a checkout of wallarm/gotestwaf (MIT):
#   python3 benches/waf_detection/gotestwaf.py --git-dir gotestwaf/.git --out /tmp/gtw.jsonl
# Rows with gotestwaf's JSONBody placeholder (the bare payload sent as application/json, which
# is a malformed body rather than a JSON value) are skipped; JSONRequest carries JSON values.
#
#   benches/waf_detection.sh REQUESTS.jsonl
# Writes benches/results/waf_detection.json and prints a table per set, encoder and placeholder.
set -euo pipefail
cd "$(dirname "$0")/.."
SET=$(realpath "$1")
CORPORA=$(realpath "${SEKISHO_CORPORA:-../shared/corpora}")
CRS="$CORPORA/crs"
. benches/lib.sh
need nginx:nginx-light
build_release
W=$(mktemp -d /tmp/sekisho-wafdet.XXXXXX); chmod 755 "$W"
pids=()
cleanup() { for p in "${pids[@]}" ${TPID:-}; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
ORIGIN=18680; PORT=18681
wait_port() { for _ in $(seq 1 ${2:-300}); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
cat > "$W/origin.conf" <<NGX
worker_processes 1; pid $W/origin.pid; error_log $W/origin.err;
events { worker_connections 1024; }
http { access_log off; client_max_body_size 2m;
  server { listen 127.0.0.1:$ORIGIN; location / { return 200 "ok"; } } }
NGX
nginx -c "$W/origin.conf" -p "$W" -g 'daemon off;' & pids+=($!)
wait_port $ORIGIN
printf 'SecAction "id:900000,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=1"\n' > "$W/pl1.conf"

start_sekisho() { # $1 = decode list
  cat > "$W/sekisho.toml" <<TOML
[[listener]]
name = "web"
kind = "reverse"
addr = "127.0.0.1:$PORT"
stages = ["waf"]
[[route]]
listener = "web"
upstreams = ["http://127.0.0.1:$ORIGIN"]
[waf]
rules = ["$CRS/crs-setup.conf.example", "$W/pl1.conf", "$CRS/rules/*.conf"]
decode = $1
[tls]
ca_cert = "$W/gw/ca.crt"
ca_key = "$W/gw/ca.key"
[events]
file = "$W/events.jsonl"
[policy]
allow_networks = ["127.0.0.0/8"]
TOML
  [ -f "$W/gw/ca.crt" ] || "$BIN" ca init --out "$W/gw" >/dev/null
  "$BIN" --log-level warn run --config "$W/sekisho.toml" > "$W/sekisho.out" 2>&1 & TPID=$!
  wait_port $PORT
}

start_modsec() {
  mkdir -p "$W/apache/logs"; chown -R www-data "$W/apache" 2>/dev/null || true
  { apache_proxy_conf "$W" "$PORT"; cat <<APACHE; } > "$W/apache.conf"
LoadModule unique_id_module /usr/lib/apache2/modules/mod_unique_id.so
LoadModule security2_module /usr/lib/apache2/modules/mod_security2.so
ProxyPass / http://127.0.0.1:$ORIGIN/
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecAuditEngine Off
SecTmpDir $W/apache
SecDataDir $W/apache
SecUnicodeMapFile /etc/modsecurity/unicode.mapping 20127
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
Include $CRS/crs-setup.conf.example
Include $W/pl1.conf
Include $CRS/rules/*.conf
APACHE
  apache2 -f "$W/apache.conf" -DFOREGROUND > "$W/apache.out" 2>&1 & TPID=$!
  wait_port $PORT 600
}
stop_target() { kill "$TPID" 2>/dev/null || true; wait "$TPID" 2>/dev/null || true; TPID=; sleep 0.5; }

replay() { # $1 = label -> appends to $W/results.jsonl
  python3 - "$SET" "$PORT" "$1" >> "$W/results.jsonl" <<'PY'
import http.client, json, sys
path, port, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for line in open(path):
    r = json.loads(line)
    if r.get("placeholder") == "JSONBody":
        continue  # a bare payload sent as application/json: a malformed body, not a JSON value
    target = r["path"] + ("?" + r["query"] if r.get("query") else "")
    headers = {"Host": "portal.example.jp", "User-Agent": "Mozilla/5.0 (detection test)",
               "Accept": "*/*"}
    headers.update(r.get("headers") or {})
    body = (r.get("body") or "").encode()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.putrequest(r["method"], target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            c.putheader(k, v)
        if body or r["method"] == "POST":
            c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        status = c.getresponse().status
        c.close()
    except Exception as e:
        status = 0
    print(json.dumps({"target": label, "set": r["set"], "encoder": r.get("encoder", ""),
                      "placeholder": r.get("placeholder", ""), "status": status}))
PY
}

start_sekisho '[]'; replay sekisho-crs; stop_target
start_sekisho '["base64"]'; replay sekisho-crs+base64; stop_target
if [ -f /usr/lib/apache2/modules/mod_security2.so ] && command -v apache2 >/dev/null; then
  start_modsec; replay apache-modsecurity; stop_target
fi

python3 - "$W/results.jsonl" <<'PY'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
targets = list(dict.fromkeys(r["target"] for r in rows))
def rate(rs, s):
    rs = [r for r in rs if r["set"] == s]
    if not rs: return None
    hit = sum(1 for r in rs if (r["status"] == 403) == (s == "attack"))
    return hit / len(rs), len(rs)
out = {}
print("| target | true-positive (attacks blocked) | true-negative (benign passed) | refused 400 (attack / benign) | errors (status 0 or 5xx) |")
print("|---|---:|---:|---:|---:|")
for t in targets:
    rs = [r for r in rows if r["target"] == t]
    tp, tn = rate(rs, "attack"), rate(rs, "benign")
    err = sum(1 for r in rs if r["status"] == 0 or r["status"] >= 500)
    r400 = [sum(1 for r in rs if r["set"] == s and r["status"] == 400) for s in ("attack", "benign")]
    out[t] = {"true_positive": tp and tp[0], "attacks": tp and tp[1], "true_negative": tn and tn[0],
              "benign": tn and tn[1], "refused_400": r400, "errors": err, "by": {}}
    print(f"| {t} | {tp[0]:.3f} of {tp[1]} | {tn[0]:.3f} of {tn[1]} | {r400[0]} / {r400[1]} | {err} |" if tp and tn else f"| {t} | {tp} | {tn} | {r400} | {err} |")
    groups = collections.defaultdict(list)
    for r in rs:
        groups[(r["set"], r["encoder"], r["placeholder"])].append(r)
    for (s, e, p), g in sorted(groups.items()):
        ok = rate(g, s)[0]
        out[t]["by"][f"{s}/{e}/{p}"] = {"rate": round(ok, 4), "n": len(g)}
print()
print("| set / encoder / placeholder | " + " | ".join(targets) + " |")
print("|---|" + "---:|" * len(targets))
for k in sorted(out[targets[0]]["by"]):
    cells = [f'{out[t]["by"].get(k, {}).get("rate", float("nan")):.3f}' for t in targets]
    print(f"| {k} (n={out[targets[0]]['by'][k]['n']}) | " + " | ".join(cells) + " |")
json.dump(out, open("benches/results/waf_detection.json", "w"), indent=1)
PY
