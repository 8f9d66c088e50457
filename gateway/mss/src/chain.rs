//! The hash chain of the file sink, and its verification (`sekisho logs verify`).
//!
//! Every file starts with a header line `{"chain_start":{"prev":H,"file":NAME,"created":TIME},
//! "chain":H0}`; every line after it carries `"chain":Hn` as its last JSON member (or
//! ` chain=Hn` at the end of a non-JSON line), where `Hn = SHA-256(Hn-1 in hex ‖ the line without
//! its chain member)` — HMAC-SHA-256 under the key when `[mss] key_file` is set. `prev` is the
//! last hash of the file before it (64 zeros for the first), so a set of rotated files verifies
//! as one chain. Editing, inserting, removing or reordering a line breaks the chain at that line.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The `prev` of the first file.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The next hash: `H(prev ‖ body)`, keyed when `key` is set.
pub fn link(key: Option<&[u8]>, prev: &str, body: &[u8]) -> String {
    match key {
        Some(k) => hex::encode(crate::mask::hmac256(k, &[prev.as_bytes(), body])),
        None => {
            let mut h = Sha256::new();
            h.update(prev.as_bytes());
            h.update(body);
            hex::encode(h.finalize())
        }
    }
}

/// `body` with its chain hash appended: `…,"chain":"H"}` for a JSON object, `… chain=H`
/// otherwise.
pub fn seal(body: &str, hash: &str) -> String {
    if body.len() >= 2 && body.starts_with('{') && body.ends_with('}') {
        let inner = &body[..body.len() - 1];
        let sep = if inner.trim_end() == "{" { "" } else { "," };
        format!("{inner}{sep}\"chain\":\"{hash}\"}}")
    } else {
        format!("{body} chain={hash}")
    }
}

/// Splits a sealed line into (body, hash).
pub fn unseal(line: &str) -> Option<(String, &str)> {
    let is_hex = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(rest) = line.strip_suffix("\"}") {
        if rest.len() >= 64 && rest.is_char_boundary(rest.len() - 64) {
            let (pre, h) = rest.split_at(rest.len() - 64);
            if is_hex(h) {
                if let Some(p) = pre.strip_suffix(",\"chain\":\"") {
                    return Some((format!("{p}}}"), h));
                }
                if let Some(p) = pre.strip_suffix("\"chain\":\"") {
                    return Some((format!("{p}}}"), h));
                }
            }
        }
    }
    let (pre, h) = line.rsplit_once(" chain=")?;
    is_hex(h).then(|| (pre.to_string(), h))
}

/// The header line body of a new file.
pub fn start_body(prev: &str, file: &str, created: &str) -> String {
    serde_json::json!({"chain_start": {"prev": prev, "file": file, "created": created}}).to_string()
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Lines checked (header included).
    pub lines: u64,
    /// `prev` of the header.
    pub prev: String,
    /// The last hash.
    pub last: String,
}

/// A broken chain: the line (1-based) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Broken {
    /// Line number.
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// Longest line accepted when verifying (16 MiB).
const MAX_LINE: u64 = 16 << 20;

/// Verifies one file. `expect_prev`: the last hash of the file before it, when verifying a
/// rotated series.
pub fn verify_reader(
    r: impl Read,
    key: Option<&[u8]>,
    expect_prev: Option<&str>,
) -> Result<Verified, Broken> {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    let mut lineno = 0u64;
    let mut prev: Option<String> = None;
    let mut first_prev = String::new();
    loop {
        buf.clear();
        let n = (&mut r)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| Broken {
                line: lineno + 1,
                reason: format!("read error: {e}"),
            })?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let broken = |reason: String| Broken {
            line: lineno,
            reason,
        };
        if buf.last() != Some(&b'\n') {
            return Err(broken(
                "incomplete last line (no newline): cut or torn".into(),
            ));
        }
        buf.pop();
        let line = std::str::from_utf8(&buf).map_err(|_| broken("not UTF-8".into()))?;
        let (body, hash) = unseal(line).ok_or_else(|| broken("no chain hash".into()))?;
        let p = match &prev {
            Some(p) => p.clone(),
            None => {
                let v: serde_json::Value = serde_json::from_str(&body)
                    .map_err(|_| broken("first line is not a chain_start header".into()))?;
                let p = v
                    .pointer("/chain_start/prev")
                    .and_then(|p| p.as_str())
                    .ok_or_else(|| broken("first line is not a chain_start header".into()))?
                    .to_string();
                if let Some(e) = expect_prev {
                    if e != p {
                        return Err(broken(format!(
                            "file does not continue the previous one (prev {p}, previous file ended {e})"
                        )));
                    }
                }
                first_prev = p.clone();
                p
            }
        };
        let want = link(key, &p, body.as_bytes());
        if want != hash {
            return Err(broken(
                "hash mismatch: this line or one before it was edited, inserted, removed or reordered (or the key differs)"
                    .into(),
            ));
        }
        prev = Some(hash.to_string());
    }
    match prev {
        Some(last) => Ok(Verified {
            lines: lineno,
            prev: first_prev,
            last,
        }),
        None => Err(Broken {
            line: 0,
            reason: "empty file".into(),
        }),
    }
}

/// Verifies a file by path.
pub fn verify_file(
    path: &Path,
    key: Option<&[u8]>,
    expect_prev: Option<&str>,
) -> Result<Verified, Broken> {
    let f = std::fs::File::open(path).map_err(|e| Broken {
        line: 0,
        reason: format!("cannot open: {e}"),
    })?;
    verify_reader(f, key, expect_prev)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn build(key: Option<&[u8]>, bodies: &[&str]) -> String {
        let mut out = String::new();
        let h0b = start_body(GENESIS, "f", "t");
        let mut prev = link(key, GENESIS, h0b.as_bytes());
        out += &seal(&h0b, &prev);
        out.push('\n');
        for b in bodies {
            let h = link(key, &prev, b.as_bytes());
            out += &seal(b, &h);
            out.push('\n');
            prev = h;
        }
        out
    }

    #[test]
    fn seal_unseal_round_trip() {
        for b in ["{\"a\":1}", "{}", "CEF:0|x", "<13>1 - - - - - {\"a\":1}"] {
            let s = seal(b, &"ab".repeat(32));
            let (body, h) = unseal(&s).unwrap();
            assert_eq!(body, b);
            assert_eq!(h, "ab".repeat(32));
        }
        assert!(serde_json::from_str::<serde_json::Value>(&seal("{\"a\":1}", GENESIS)).is_ok());
        // Found by the proptest: a multi-byte character where the hash would start.
        assert!(unseal(&format!("{}\"}}", "é".repeat(40))).is_none());
    }

    #[test]
    fn verify_detects_edits() {
        let text = build(None, &["{\"a\":1}", "{\"a\":2}", "CEF:0|x|y"]);
        let v = verify_reader(text.as_bytes(), None, None).unwrap();
        assert_eq!(v.lines, 4);
        assert_eq!(v.prev, GENESIS);
        // Edit line 3.
        let edited = text.replacen("{\"a\":2", "{\"a\":3", 1);
        assert_eq!(
            verify_reader(edited.as_bytes(), None, None)
                .unwrap_err()
                .line,
            3
        );
        // Remove line 2.
        let lines: Vec<&str> = text.lines().collect();
        let removed = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]);
        assert_eq!(
            verify_reader(removed.as_bytes(), None, None)
                .unwrap_err()
                .line,
            2
        );
        // Torn tail.
        let torn = &text[..text.len() - 5];
        assert!(verify_reader(torn.as_bytes(), None, None)
            .unwrap_err()
            .reason
            .contains("incomplete"));
        // Keyed chains need the key.
        let keyed = build(Some(b"k"), &["{\"a\":1}"]);
        assert!(verify_reader(keyed.as_bytes(), Some(b"k"), None).is_ok());
        assert!(verify_reader(keyed.as_bytes(), None, None).is_err());
        // A series must continue.
        assert!(verify_reader(text.as_bytes(), None, Some(&"1".repeat(64))).is_err());
    }
}
