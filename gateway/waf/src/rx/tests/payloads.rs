//! Inputs for the CRS differential test: the payloads of CRS's regression tests
//! (`tests/**/*.yaml`: every `data`, `uri` and header value, as YAML decodes it), raw,
//! URL-decoded, lower- and upper-cased and with a final newline, plus byte edge cases.

use std::collections::BTreeSet;
use std::path::Path;

/// Every input, deduplicated, in a stable order.
pub(super) fn inputs(crs: &Path) -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    yaml_files(&crs.join("tests"), 0, &mut files);
    files.sort();
    let mut out = BTreeSet::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for v in scalars(&text) {
            let decoded = url_decode(&v);
            out.insert(decoded.to_ascii_lowercase());
            out.insert(decoded.to_ascii_uppercase());
            out.insert([&decoded[..], b"\n"].concat());
            out.insert(decoded);
            out.insert(v);
        }
    }
    out.extend(edge_cases());
    out.into_iter().collect()
}

fn yaml_files(dir: &Path, depth: u32, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && depth < 8 {
            yaml_files(&p, depth + 1, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// Bytes the payloads rarely have: every single byte, high bytes, NUL, newlines at the end.
fn edge_cases() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    out.push((0x80..=0xffu8).collect());
    out.push((0..=0x7fu8).collect());
    for s in [
        &b""[..],
        b"\n",
        b"\n\n",
        b"a\x00b",
        b"\x00<script>",
        b"<script>\n",
        b"/etc/passwd\n",
        b"1 or 1=1\n",
        b"1' or '1'='1\n",
        b"../../\n",
        b";ls -la\n",
        b"select * from users\n",
        b"java.lang.Runtime\n",
        b"php://input\n",
        b"\xc0\xae\xc0\xae/\xc0\xae\xc0\xae/",
        b"\xef\xbc\x9c\xef\xbd\x93cript\xef\xbc\x9e",
        b"\xe2\x80\x98 or 1=1--",
        b"\xc2\xb4 union select",
        b"SELECT\x0bFROM",
        b"a\rb\n",
        b"%u0027 or 1=1",
    ] {
        out.push(s.to_vec());
    }
    out
}

/// `%HH` and `+` decoded (form encoding, as ModSecurity decodes arguments).
fn url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = |j: usize| s.get(j).and_then(|&c| char::from(c).to_digit(16));
        match (s[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The values of `data:` and `uri:` keys and of every key under `headers:`.
fn scalars(text: &str) -> Vec<Vec<u8>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut headers: Option<usize> = None;
    for (n, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        if headers.is_some_and(|h| indent <= h) {
            headers = None;
        }
        let key = key.trim_start_matches("- ");
        if key == "headers" {
            headers = Some(indent);
        } else if key == "data" || key == "uri" || headers.is_some() {
            out.push(scalar(value.trim(), &lines[n + 1..], indent));
        }
    }
    out
}

/// A YAML scalar starting with `first` (after the key), continued on `rest` if need be.
fn scalar(first: &str, rest: &[&str], indent: usize) -> Vec<u8> {
    if let Some(style) = first.strip_prefix(['|', '>']) {
        return block(first.starts_with('|'), style.starts_with('-'), rest, indent);
    }
    let mut text = first.to_string();
    for next in rest {
        if !unclosed(&text) {
            break;
        }
        text.push(' ');
        text.push_str(next.trim());
    }
    if let Some(q) = text.strip_prefix('"') {
        return double_quoted(q.strip_suffix('"').unwrap_or(q));
    }
    if let Some(q) = text.strip_prefix('\'') {
        return q
            .strip_suffix('\'')
            .unwrap_or(q)
            .replace("''", "'")
            .into_bytes();
    }
    text.into_bytes()
}

/// Whether a quoted scalar has not reached its closing quote yet.
fn unclosed(text: &str) -> bool {
    let mut chars = text.chars();
    let Some(q @ ('"' | '\'')) = chars.next() else {
        return false;
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if q == '"' => {
                chars.next();
            }
            '\'' if q == '\'' && chars.clone().next() == Some('\'') => {
                chars.next();
            }
            c if c == q => return false,
            _ => {}
        }
    }
    true
}

/// A `|` (literal) or `>` (folded) block: the more-indented lines after the key.
fn block(literal: bool, strip: bool, rest: &[&str], indent: usize) -> Vec<u8> {
    let body: Vec<&str> = rest
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .copied()
        .collect();
    let cut = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let lines: Vec<&str> = body.iter().map(|l| l.get(cut..).unwrap_or("")).collect();
    let mut text = lines.join(if literal { "\n" } else { " " });
    text = text.trim_end_matches('\n').to_string();
    if !strip {
        text.push('\n');
    }
    text.into_bytes()
}

/// YAML double-quoted escapes (`\xHH` and `\uHHHH` are code points, written as UTF-8).
fn double_quoted(s: &str) -> Vec<u8> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else { break };
        let hex = |n: usize, chars: &mut std::str::Chars| {
            let h: String = chars.take(n).collect();
            u32::from_str_radix(&h, 16).ok().and_then(char::from_u32)
        };
        let decoded = match e {
            '0' => Some('\0'),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            't' | '\t' => Some('\t'),
            'n' => Some('\n'),
            'v' => Some('\x0b'),
            'f' => Some('\x0c'),
            'r' => Some('\r'),
            'e' => Some('\x1b'),
            'N' => Some('\u{85}'),
            '_' => Some('\u{a0}'),
            'x' => hex(2, &mut chars),
            'u' => hex(4, &mut chars),
            'U' => hex(8, &mut chars),
            other => Some(other),
        };
        out.extend(decoded);
    }
    out.into_bytes()
}

#[test]
fn yaml_scalars() {
    let text = "tests:\n  - stages:\n      - input:\n          uri: \"/?a=%27\\x41\\u00e9\"\n          headers:\n            User-Agent: 'it''s'\n            Host: localhost\n          method: POST\n          data: |\n            line 1\n              line 2\n          version: x\n          data: |-\n            x\n          data: \"multi\n            line\"\n";
    let got = scalars(text);
    let want: Vec<&[u8]> = vec![
        b"/?a=%27A\xc3\xa9",
        b"it's",
        b"localhost",
        b"line 1\n  line 2\n",
        b"x",
        b"multi line",
    ];
    assert_eq!(got, want);
    assert_eq!(url_decode(b"a+b%41%zz%4"), b"a bA%zz%4");
}
