#!/usr/bin/env python3
"""Build a WAF TP/TN request set from gotestwaf testcases (stdlib only).

Reads testcases/**.yml from a bare git mirror of wallarm/gotestwaf and writes
requests.jsonl: one request per (payload x encoder x placeholder).

Encoders reproduce internal/payload/encoder/*.go:
  Plain      -> identity
  URL        -> Go url.PathEscape (space->%20, keeps $&+:=@, escapes / ; , ? and all else)
  Base64     -> base64.StdEncoding (alphabet A-Za-z0-9+/, '=' padded)
  Base64Flat -> StdEncoding with every '=' removed (still '+' and '/')
Placeholders reproduce internal/payload/placeholder/*.go (GoHTTPClient path):
  URLParam    GET  /?<10hex>=<enc>                    (payload appended raw)
  HTMLForm    POST body "<10hex>=<enc>", x-www-form-urlencoded (raw)
  JSONBody    POST body "<enc>" raw, application/json (gotestwaf does NOT wrap it)
  JSONRequest POST {"test": true, "<10hex>": "<JSUnicode(enc)>"}, application/json
  Header      GET  header X-<10hex>: <enc> (name canonicalised like Go)
The random 10-hex names of gotestwaf (RandomHex(5)) are replaced by a
deterministic sha256-derived name.
"""
import argparse, base64, collections, hashlib, json, re, subprocess, sys, urllib.parse

ENCODERS = ["Plain", "URL", "Base64", "Base64Flat"]
PLACEHOLDERS = ["URLParam", "HTMLForm", "JSONBody", "JSONRequest", "Header"]
# cases are kept (in default mode) if they declare one of these "parameter" placeholders
PARAM_PLACEHOLDERS = {"URLParam", "URLPath", "HTMLForm", "HTMLMultipartForm",
                      "JSONRequest", "JSONBody", "Header", "RequestBody"}


# ---------------------------------------------------------------- encoders
def go_path_escape(s):
    # Go net/url shouldEscape(c, encodePathSegment): unreserved + $&+:=@ stay.
    return urllib.parse.quote(s.encode("utf-8", "surrogatepass"), safe="$&+:=@")

def encode(name, s):
    b = s.encode("utf-8", "surrogatepass")
    if name == "Plain":
        return s
    if name == "URL":
        return go_path_escape(s)
    if name == "Base64":
        return base64.b64encode(b).decode("ascii")
    if name == "Base64Flat":
        return base64.b64encode(b).decode("ascii").replace("=", "")
    raise ValueError(name)

def js_unicode(s):
    u = s.encode("utf-16-be", "surrogatepass")
    return "".join("\\u%02x%02x" % (u[i], u[i + 1]) for i in range(0, len(u), 2))

def selftest():
    # Go's own pathEscapeTests vector (net/url/url_test.go)
    src = " ?&=#+%!<>#\"{}|\\^[]`\u263a\t:/@$'()*,;"
    exp = "%20%3F&=%23+%25%21%3C%3E%23%22%7B%7D%7C%5C%5E%5B%5D%60%E2%98%BA%09:%2F@$%27%28%29%2A%2C%3B"
    assert go_path_escape(src) == exp, go_path_escape(src)
    assert encode("Base64", "ab?>") == "YWI/Pg==" and encode("Base64Flat", "ab?>") == "YWI/Pg"
    assert js_unicode("a\u263a") == "\\u0061\\u263a"


# ---------------------------------------------------------------- mini YAML
DQ_ESC = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v",
          "f": "\f", "r": "\r", "e": "\x1b", " ": " ", '"': '"', "'": "'", "/": "/",
          "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029"}

def _fold(lines):
    """YAML flow-scalar line folding; returns text with '\\x00NL' markers removed."""
    out = lines[0].rstrip(" \t") if len(lines) > 1 else lines[0]
    empties = 0
    for ln in lines[1:]:
        s = ln.strip(" \t")
        if s == "":
            empties += 1
            continue
        if out.endswith("\\") and not out.endswith("\\\\"):   # escaped line break (dq only)
            out = out[:-1] + s
        else:
            out += ("\n" * empties) if empties else " "
            out += s
        empties = 0
    return out

def parse_dq(text):
    assert text[0] == '"'
    # find closing quote
    i, n = 1, len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            break
        i += 1
    body = _fold(text[1:i].split("\n"))
    out, j = [], 0
    while j < len(body):
        c = body[j]
        if c != "\\":
            out.append(c); j += 1; continue
        e = body[j + 1]
        if e in DQ_ESC:
            out.append(DQ_ESC[e]); j += 2
        elif e in "xuU":
            k = {"x": 2, "u": 4, "U": 8}[e]
            out.append(chr(int(body[j + 2:j + 2 + k], 16))); j += 2 + k
        else:
            raise ValueError("bad escape \\%s" % e)
    return "".join(out)

def parse_sq(text):
    i, n = 1, len(text)
    while i < n:
        if text[i] == "'":
            if i + 1 < n and text[i + 1] == "'":
                i += 2; continue
            break
        i += 1
    return _fold(text[1:i].split("\n")).replace("''", "'")

def parse_block(header, lines):
    # "|", "|-", "|+", ">" ... ; lines = continuation lines (raw)
    nonblank = [l for l in lines if l.strip()]
    ind = min(len(l) - len(l.lstrip(" ")) for l in nonblank) if nonblank else 0
    body = [l[ind:] for l in lines]
    while body and body[-1].strip() == "":
        body.pop()
    if header.startswith(">"):
        txt = _fold(body) if body else ""
    else:
        txt = "\n".join(body)
    if "-" in header:
        return txt
    return txt + "\n"

def parse_item(text):
    """text = item content (first line after '- ' + continuation lines)."""
    first, _, rest = text.partition("\n")
    tag = ""
    m = re.match(r"(!!\w+)\s+(.*)", first)
    if m:
        tag, first = m.group(1), m.group(2)
    if first.startswith('"'):
        return parse_dq(first + ("\n" + rest if rest else ""))
    if first.startswith("'"):
        return parse_sq(first + ("\n" + rest if rest else ""))
    if re.match(r"[|>][-+]?\s*$", first):
        return parse_block(first.strip(), rest.split("\n") if rest else [])
    m = re.match(r"([A-Za-z0-9_-]+):(\s|$)", first)
    if m:                                          # mapping item (placeholder with config)
        return {m.group(1): rest}
    lines = [first] + (rest.split("\n") if rest else [])
    lines = [re.split(r"\s#", l, 1)[0] for l in lines]  # plain-scalar comments
    return _fold([l.strip() for l in lines]).strip()

def parse_testcase(src):
    doc, key, items, cur = {}, None, None, None
    for raw in src.split("\n"):
        line = raw.rstrip("\r")
        m = re.match(r"^([A-Za-z_]+):\s*(.*)$", line)
        if m:
            if cur is not None:
                items.append(cur); cur = None
            key = m.group(1)
            val = m.group(2).strip()
            if val:
                doc[key] = parse_item(val)
                items = None
            else:
                items = doc.setdefault(key, [])
            continue
        if items is None:
            continue
        m = re.match(r"^(\s*)- (.*)$", line) or re.match(r"^(\s*)-$", line)
        if m and (cur is None or len(m.group(1)) <= cur[0]):
            if cur is not None:
                items.append(cur)
            cur = [len(m.group(1)), m.group(2) if m.lastindex >= 2 else ""]
            continue
        if cur is not None:
            cur[1] += "\n" + line
    if cur is not None:
        items.append(cur)
    for k, v in doc.items():
        if isinstance(v, list):
            doc[k] = [parse_item(t) for _, t in v]
    return doc


# ---------------------------------------------------------------- requests
def rand_hex(*parts):
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:10]

def go_canonical_header(k):
    return "-".join(p[:1].upper() + p[1:].lower() for p in k.split("-"))

def header_value_ok(v):      # httpguts.ValidHeaderFieldValue
    return not any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7f for c in v)

def build(ph, enc_payload, name):
    if ph == "URLParam":
        q = name + "=" + enc_payload
        if any(ord(c) < 0x20 or ord(c) == 0x7f for c in q):
            return None                       # url.Parse: invalid control character
        q = q.split("#", 1)[0]                # url.Parse moves '#...' into Fragment
        return dict(method="GET", path="/", query=q, headers={}, body="")
    if ph == "HTMLForm":
        return dict(method="POST", path="/", query="",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    body=name + "=" + enc_payload)
    if ph == "JSONBody":
        return dict(method="POST", path="/", query="",
                    headers={"Content-Type": "application/json"}, body=enc_payload)
    if ph == "JSONRequest":
        return dict(method="POST", path="/", query="",
                    headers={"Content-Type": "application/json"},
                    body='{"test": true, "%s": "%s"}' % (name, js_unicode(enc_payload)))
    if ph == "Header":
        if not header_value_ok(enc_payload):
            return None                       # Go transport refuses the request
        return dict(method="GET", path="/", query="",
                    headers={go_canonical_header("X-" + name): enc_payload}, body="")
    raise ValueError(ph)

def sample(rows, cap):
    n = len(rows)
    if n <= cap:
        return rows
    return [rows[(i * n) // cap] for i in range(cap)]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--git-dir", required=True, help="a clone (or bare mirror) of wallarm/gotestwaf")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-attack", type=int, default=3000)
    ap.add_argument("--max-benign", type=int, default=1500)
    ap.add_argument("--max-payload-len", type=int, default=4096,
                    help="drop payloads longer than this (the community-*kb-* size tests)")
    ap.add_argument("--declared-only", action="store_true",
                    help="only encoder x placeholder combos the testcase itself declares")
    ap.add_argument("--all-cases", action="store_true",
                    help="also re-home payloads of GraphQL/gRPC/SOAP/XML/UA/RawRequest cases")
    a = ap.parse_args()
    selftest()

    git = lambda *args: subprocess.check_output(["git", "--git-dir", a.git_dir] + list(args))
    commit = git("rev-parse", a.rev).decode().strip()
    files = sorted(f for f in git("ls-tree", "-r", "--name-only", commit, "testcases").decode().split()
                   if f.endswith((".yml", ".yaml")))
    rows = {"attack": [], "benign": []}
    stats = collections.Counter()
    for f in files:
        tc = parse_testcase(git("show", "%s:%s" % (commit, f)).decode("utf-8"))
        set_name = f.split("/")[-2]                     # gotestwaf: <set>/<case>.yml
        kind = "benign" if "false" in set_name else "attack"   # db/load.go rule
        declared_ph = [p if isinstance(p, str) else next(iter(p)) for p in tc.get("placeholder", [])]
        declared_enc = tc.get("encoder", [])
        if not a.all_cases and not (set(declared_ph) & PARAM_PLACEHOLDERS):
            stats["skipped_case:" + f] += 1
            continue
        for i, payload in enumerate(tc.get("payload", [])):
            if len(payload) > a.max_payload_len:
                stats["skipped_long_payload"] += 1
                continue
            for enc in ENCODERS:
                ep = encode(enc, payload)
                for ph in PLACEHOLDERS:
                    declared = enc in declared_enc and ph in declared_ph
                    if a.declared_only and not declared:
                        continue
                    req = build(ph, ep, rand_hex(commit, f, i, enc, ph))
                    if req is None:
                        stats["skipped_unsendable:%s/%s" % (enc, ph)] += 1
                        continue
                    rows[kind].append(dict({"set": kind, "case": f, "type": tc.get("type", ""),
                                            "encoder": enc, "placeholder": ph}, **req,
                                           payload=payload, declared=declared))
    total = {k: len(v) for k, v in rows.items()}
    out = sample(rows["attack"], a.max_attack) + sample(rows["benign"], a.max_benign)
    with open(a.out, "w") as fh:
        for r in out:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print("commit", commit, "generated", total, "written", len(out), file=sys.stderr)
    for k, v in sorted(stats.items()):
        print("  %s: %d" % (k, v), file=sys.stderr)

if __name__ == "__main__":
    main()
