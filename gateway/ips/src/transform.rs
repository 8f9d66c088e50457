//! Suricata's transformations (`to_lowercase`, `from_base64`, `gunzip` …): keywords written
//! right after a sticky buffer that turn the buffer into another before `content`, `pcre` and
//! the prefilter look at it. A chain runs in rule order, each step on the previous output;
//! what each step does follows Suricata 8 (`rust/src/detect/transforms/*.rs`,
//! `src/detect-transform-pcrexform.c`), odd cases included:
//! - almost every step leaves an empty buffer empty (`to_sha256` of nothing is nothing);
//! - `compress_whitespace` keeps the first byte of a run, it does not write a space;
//! - `from_base64` and `pcrexform` leave the buffer as it was when they produce nothing;
//! - `gunzip` / `zlib_deflate` empty the buffer on a decoder error, keep a truncated stream's
//!   output, and stop at `max-size` (1 KiB unless told).

use std::hash::{Hash, Hasher};
use std::io::Read as _;

use base64::Engine as _;
use md5::Digest as _;

/// Output cap of the decompressing steps unless `max-size` says otherwise (Suricata's).
pub const DEFAULT_MAX_SIZE: usize = 1024;
/// The largest `max-size` a rule may ask for.
pub const MAX_MAX_SIZE: usize = 16 << 20;
/// Most steps in one chain (Suricata's `DETECT_TRANSFORMS_MAX`).
pub const MAX_CHAIN: usize = 16;

/// `from_base64`'s decoding mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Base64Mode {
    /// RFC 4648 (default): stops at the first byte outside the alphabet; a short last group is
    /// padded; any other error decodes nothing.
    Rfc4648,
    /// RFC 2045: bytes outside the alphabet are skipped; a short last group is dropped.
    Rfc2045,
    /// Canonical standard base64 only; any error decodes nothing.
    Strict,
}

/// One transformation step.
#[derive(Clone, Debug)]
pub enum Transform {
    /// `dotprefix`: a `.` before the buffer.
    DotPrefix,
    /// `to_lowercase` (ASCII).
    ToLowercase,
    /// `to_uppercase` (ASCII).
    ToUppercase,
    /// `strip_whitespace`: removes `\t \n \v \f \r` and space.
    StripWhitespace,
    /// `compress_whitespace`: each run of whitespace becomes its first byte.
    CompressWhitespace,
    /// `strip_pseudo_headers`: drops the lines that start with `:`.
    StripPseudoHeaders,
    /// `header_lowercase`: lower-cases header names (up to each line's first `:`).
    HeaderLowercase,
    /// `url_decode`: `%HH` and `+`.
    UrlDecode,
    /// `xor:"key"`: XOR with the key repeated from offset 0.
    Xor(Vec<u8>),
    /// `pcrexform:"re"`: the buffer becomes the regex's one capture group.
    PcreXform(Pcre),
    /// `from_base64`.
    FromBase64 {
        /// Decoding mode.
        mode: Base64Mode,
        /// First byte decoded.
        offset: usize,
        /// Bytes decoded (0: to the end).
        bytes: usize,
    },
    /// `gunzip`, output capped.
    Gunzip(usize),
    /// `zlib_deflate` (RFC 1950), output capped.
    ZlibDeflate(usize),
    /// `to_md5`: the raw 16-byte digest.
    ToMd5,
    /// `to_sha1`: the raw 20-byte digest.
    ToSha1,
    /// `to_sha256`: the raw 32-byte digest.
    ToSha256,
}

/// A compiled `pcrexform` pattern (compared by its source): on the linear `regex` engine
/// when it can run it, else on PCRE2 (lookaround, backreferences) with its match limit.
#[derive(Clone, Debug)]
pub struct Pcre {
    source: String,
    re: PcreEngine,
}

#[derive(Clone, Debug)]
enum PcreEngine {
    Linear(regex::bytes::Regex),
    Pcre2(std::sync::Arc<pcre2::bytes::Regex>),
}

impl Pcre {
    /// Group 1 of the first match in `hay`, if it took part.
    fn group1<'h>(&self, hay: &'h [u8]) -> Option<&'h [u8]> {
        match &self.re {
            PcreEngine::Linear(re) => re.captures(hay)?.get(1).map(|m| m.as_bytes()),
            PcreEngine::Pcre2(re) => re.captures(hay).ok()??.get(1).map(|m| m.as_bytes()),
        }
    }
}

impl PartialEq for Pcre {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for Pcre {}
impl Hash for Pcre {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.source.hash(h);
    }
}

impl PartialEq for Transform {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Transform {}
impl Hash for Transform {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.key().hash(h);
    }
}

impl Transform {
    /// The transformation named `kw` with its option, if `kw` names one; `Err` for a malformed
    /// option (the message names the keyword).
    pub fn parse(kw: &str, val: Option<&str>) -> Option<Result<Transform, String>> {
        let plain = |t: Transform| {
            Some(match val {
                Some(v) if !v.trim().is_empty() => Err(format!("{kw} takes no option")),
                _ => Ok(t),
            })
        };
        match kw {
            "dotprefix" => plain(Transform::DotPrefix),
            "to_lowercase" => plain(Transform::ToLowercase),
            "to_uppercase" => plain(Transform::ToUppercase),
            "strip_whitespace" => plain(Transform::StripWhitespace),
            "compress_whitespace" => plain(Transform::CompressWhitespace),
            "strip_pseudo_headers" => plain(Transform::StripPseudoHeaders),
            "header_lowercase" => plain(Transform::HeaderLowercase),
            "url_decode" => plain(Transform::UrlDecode),
            "to_md5" => plain(Transform::ToMd5),
            "to_sha1" => plain(Transform::ToSha1),
            "to_sha256" => plain(Transform::ToSha256),
            "xor" => Some(quoted(kw, val).and_then(xor_key).map(Transform::Xor)),
            "pcrexform" => Some(quoted(kw, val).and_then(pcrexform)),
            "from_base64" => Some(from_base64(val.unwrap_or(""))),
            "gunzip" => Some(max_size(kw, val).map(Transform::Gunzip)),
            "zlib_deflate" => Some(max_size(kw, val).map(Transform::ZlibDeflate)),
            _ => None,
        }
    }

    /// The keyword, as events list it.
    pub fn name(&self) -> &'static str {
        match self {
            Transform::DotPrefix => "dotprefix",
            Transform::ToLowercase => "to_lowercase",
            Transform::ToUppercase => "to_uppercase",
            Transform::StripWhitespace => "strip_whitespace",
            Transform::CompressWhitespace => "compress_whitespace",
            Transform::StripPseudoHeaders => "strip_pseudo_headers",
            Transform::HeaderLowercase => "header_lowercase",
            Transform::UrlDecode => "url_decode",
            Transform::Xor(_) => "xor",
            Transform::PcreXform(_) => "pcrexform",
            Transform::FromBase64 { .. } => "from_base64",
            Transform::Gunzip(_) => "gunzip",
            Transform::ZlibDeflate(_) => "zlib_deflate",
            Transform::ToMd5 => "to_md5",
            Transform::ToSha1 => "to_sha1",
            Transform::ToSha256 => "to_sha256",
        }
    }

    /// The step's identity: its name and options (what makes two steps the same).
    pub fn key(&self) -> (&'static str, String) {
        let opt = match self {
            Transform::Xor(k) => hex::encode(k),
            Transform::PcreXform(p) => p.source.clone(),
            Transform::FromBase64 {
                mode,
                offset,
                bytes,
            } => format!("{mode:?},{offset},{bytes}"),
            Transform::Gunzip(n) | Transform::ZlibDeflate(n) => n.to_string(),
            _ => String::new(),
        };
        (self.name(), opt)
    }

    /// Why a `content` pattern can never match after this step (Suricata refuses the rule):
    /// upper-case bytes after `to_lowercase`, whitespace after `strip_whitespace` …
    pub fn refuses_content(&self, pattern: &[u8]) -> Option<&'static str> {
        let bad = match self {
            Transform::ToLowercase => pattern.iter().any(u8::is_ascii_uppercase),
            Transform::ToUppercase => pattern.iter().any(u8::is_ascii_lowercase),
            Transform::StripWhitespace => pattern.iter().any(|&b| is_space(b)),
            Transform::CompressWhitespace => {
                pattern.windows(2).any(|w| is_space(w[0]) && is_space(w[1]))
            }
            _ => false,
        };
        bad.then_some(self.name())
    }

    /// Applies the step to `buf` (replaced by its output).
    pub fn apply(&self, buf: &mut Vec<u8>) {
        if buf.is_empty() && !matches!(self, Transform::PcreXform(_)) {
            return;
        }
        match self {
            Transform::DotPrefix => buf.insert(0, b'.'),
            Transform::ToLowercase => buf.make_ascii_lowercase(),
            Transform::ToUppercase => buf.make_ascii_uppercase(),
            Transform::StripWhitespace => buf.retain(|&b| !is_space(b)),
            Transform::CompressWhitespace => compress_whitespace(buf),
            Transform::StripPseudoHeaders => strip_pseudo_headers(buf),
            Transform::HeaderLowercase => header_lowercase(buf),
            Transform::UrlDecode => *buf = url_decode(buf),
            Transform::Xor(key) => {
                for (b, k) in buf.iter_mut().zip(key.iter().cycle()) {
                    *b ^= k;
                }
            }
            Transform::PcreXform(p) => {
                if let Some(g) = p.group1(buf) {
                    *buf = g.to_vec();
                }
            }
            Transform::FromBase64 {
                mode,
                offset,
                bytes,
            } => from_base64_apply(buf, *mode, *offset, *bytes),
            Transform::Gunzip(max) => {
                *buf = inflate(flate2::read::GzDecoder::new(&buf[..]), *max);
            }
            Transform::ZlibDeflate(max) => {
                *buf = inflate(flate2::read::ZlibDecoder::new(&buf[..]), *max);
            }
            Transform::ToMd5 => *buf = md5::Md5::digest(&buf[..]).to_vec(),
            Transform::ToSha1 => *buf = sha1::Sha1::digest(&buf[..]).to_vec(),
            Transform::ToSha256 => *buf = sha2::Sha256::digest(&buf[..]).to_vec(),
        }
    }
}

/// Runs `chain` on `data`, into `out`.
pub fn run_chain(chain: &[Transform], data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(data);
    for t in chain {
        t.apply(out);
    }
}

/// The whitespace of `strip_whitespace` and `compress_whitespace`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn compress_whitespace(buf: &mut Vec<u8>) {
    let mut prev_space = false;
    buf.retain(|&b| {
        let space = is_space(b);
        let keep = !(space && prev_space);
        prev_space = space;
        keep
    });
}

fn strip_pseudo_headers(buf: &mut Vec<u8>) {
    let mut out = Vec::with_capacity(buf.len());
    for line in buf.split_inclusive(|&b| b == b'\n') {
        if line.first() != Some(&b':') {
            out.extend_from_slice(line);
        }
    }
    *buf = out;
}

fn header_lowercase(buf: &mut [u8]) {
    let mut in_name = true;
    for b in buf.iter_mut() {
        if in_name {
            if *b == b':' {
                in_name = false;
            } else {
                b.make_ascii_lowercase();
            }
        } else if *b == b'\n' {
            in_name = true;
        }
    }
}

/// Suricata's state machine: `%HH` decoded (either case), `+` a space; in a broken escape the
/// `%`, a first hex digit and the offending byte are copied as they are (that byte is not
/// looked at again: `%%41` stays, `%+` keeps its `+`), and so is an escape cut by the end.
fn url_decode(buf: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(buf.len());
    let mut pending: Option<Option<u8>> = None;
    for &b in buf {
        match pending {
            None if b == b'%' => pending = Some(None),
            None => out.push(if b == b'+' { b' ' } else { b }),
            Some(first) => match (first, hex(b)) {
                (None, Some(_)) => pending = Some(Some(b)),
                (Some(h), Some(l)) => {
                    out.push(hex(h).unwrap_or(0) << 4 | l);
                    pending = None;
                }
                (first, None) => {
                    out.push(b'%');
                    out.extend(first);
                    out.push(b);
                    pending = None;
                }
            },
        }
    }
    if let Some(first) = pending {
        out.push(b'%');
        out.extend(first);
    }
    out
}

fn quoted<'a>(kw: &str, val: Option<&'a str>) -> Result<&'a str, String> {
    let v = val.map(str::trim).unwrap_or("");
    let inner = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(|| format!("{kw}: the value must be double quoted"))?;
    if inner.is_empty() {
        return Err(format!("{kw}: empty value"));
    }
    Ok(inner)
}

fn xor_key(hex_key: &str) -> Result<Vec<u8>, String> {
    if hex_key.len() % 2 != 0 {
        return Err("xor: the key's length must be an even number of hex digits".into());
    }
    if hex_key.len() / 2 > 255 {
        return Err("xor: key longer than 255 bytes".into());
    }
    hex::decode(hex_key).map_err(|_| "xor: the key must be hexadecimal characters only".into())
}

fn pcrexform(source: &str) -> Result<Transform, String> {
    // PCRE without UTF mode: bytes, ASCII classes.
    let (re, groups) = match regex::bytes::RegexBuilder::new(source)
        .unicode(false)
        .size_limit(1 << 20)
        .build()
    {
        Ok(re) => {
            let n = re.captures_len() - 1;
            (PcreEngine::Linear(re), n)
        }
        Err(_) => {
            let re = pcre2::bytes::RegexBuilder::new()
                .build(source)
                .map_err(|e| format!("pcrexform: pcre2 compile of {source:?} failed: {e}"))?;
            let n = re.captures_len() - 1;
            (PcreEngine::Pcre2(std::sync::Arc::new(re)), n)
        }
    };
    if groups != 1 {
        return Err(format!(
            "pcrexform needs exactly one substring capture, found {groups}"
        ));
    }
    Ok(Transform::PcreXform(Pcre {
        source: source.to_string(),
        re,
    }))
}

fn from_base64(opts: &str) -> Result<Transform, String> {
    let (mut mode, mut offset, mut bytes) = (None, None, None);
    for item in opts.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item.split_once(char::is_whitespace).unwrap_or((item, ""));
        let value = value.trim();
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("from_base64: {name} must be a value, not {value:?}"))
        };
        let dup = || format!("from_base64: {name} already set");
        match name {
            "mode" => {
                let m = match value {
                    "rfc4648" => Base64Mode::Rfc4648,
                    "rfc2045" => Base64Mode::Rfc2045,
                    "strict" => Base64Mode::Strict,
                    other => return Err(format!("from_base64: unknown mode {other:?}")),
                };
                mode.replace(m).map_or(Ok(()), |_| Err(dup()))?;
            }
            "offset" => {
                let n = number()?;
                if n > 65535 {
                    return Err("from_base64: offset above 65535".into());
                }
                offset.replace(n as usize).map_or(Ok(()), |_| Err(dup()))?;
            }
            "bytes" => {
                // Suricata keeps the low 32 bits.
                let n = number()? as u32;
                bytes.replace(n as usize).map_or(Ok(()), |_| Err(dup()))?;
            }
            other => return Err(format!("from_base64: unknown base64 keyword: {other}")),
        }
    }
    Ok(Transform::FromBase64 {
        mode: mode.unwrap_or(Base64Mode::Rfc4648),
        offset: offset.unwrap_or(0),
        bytes: bytes.unwrap_or(0),
    })
}

fn max_size(kw: &str, val: Option<&str>) -> Result<usize, String> {
    let v = val.map(str::trim).unwrap_or("");
    if v.is_empty() {
        return Ok(DEFAULT_MAX_SIZE);
    }
    let rest = v
        .strip_prefix("max-size ")
        .ok_or_else(|| format!("{kw}: unknown option {v:?} (max-size N)"))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let unit = rest[digits.len()..].trim().to_ascii_lowercase();
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{kw}: max-size needs a number, not {rest:?}"))?;
    let scale: u64 = match unit.as_str() {
        "" => 1,
        u if u.starts_with("kb") || u.starts_with("kib") => 1 << 10,
        u if u.starts_with("mb") || u.starts_with("mib") => 1 << 20,
        u if u.starts_with("gb") || u.starts_with("gib") => 1 << 30,
        _ => 1,
    };
    let size = n.saturating_mul(scale);
    if size == 0 {
        return Err(format!(
            "{kw}: max-size 0 would always give an empty buffer"
        ));
    }
    if size > MAX_MAX_SIZE as u64 {
        return Err(format!("{kw}: max-size above {MAX_MAX_SIZE} bytes"));
    }
    Ok(size as usize)
}

fn from_base64_apply(buf: &mut Vec<u8>, mode: Base64Mode, offset: usize, bytes: usize) {
    if offset >= buf.len() {
        return;
    }
    let rest = buf.len() - offset;
    if bytes != 0 && bytes >= rest {
        return;
    }
    let end = if bytes == 0 {
        buf.len()
    } else {
        offset + bytes
    };
    let input = &buf[offset..end];
    let decoded = match mode {
        Base64Mode::Rfc4648 => decode_rfc4648(input),
        Base64Mode::Rfc2045 => decode_rfc2045(input),
        Base64Mode::Strict => base64::engine::general_purpose::STANDARD
            .decode(input)
            .unwrap_or_default(),
    };
    if !decoded.is_empty() {
        *buf = decoded;
    }
}

fn sextet(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// One group of four as Suricata decodes it: two alphabet bytes, then `=` in the third place
/// gives one byte (the fourth is not looked at), `=` in the fourth two; `None` when a byte
/// that must be in the alphabet is not.
fn decode_group(g: [u8; 4], out: &mut Vec<u8>) -> Option<()> {
    let (a, b) = (sextet(g[0])?, sextet(g[1])?);
    out.push(a << 2 | b >> 4);
    if g[2] == b'=' {
        return Some(());
    }
    let c = sextet(g[2])?;
    out.push(b << 4 | c >> 2);
    if g[3] == b'=' {
        return Some(());
    }
    out.push(c << 6 | sextet(g[3])?);
    Some(())
}

/// RFC 4648 as Suricata runs it: up to the first byte outside the alphabet (`=` is in it),
/// a short last group padded with `=`; any malformed group decodes nothing at all.
pub(crate) fn decode_rfc4648(input: &[u8]) -> Vec<u8> {
    let n = input
        .iter()
        .take_while(|&&b| sextet(b).is_some() || b == b'=')
        .count();
    let mut out = Vec::with_capacity(n / 4 * 3 + 3);
    for c in input[..n].chunks(4) {
        let mut g = [b'='; 4];
        g[..c.len()].copy_from_slice(c);
        if decode_group(g, &mut out).is_none() {
            return Vec::new();
        }
    }
    out
}

/// RFC 2045: bytes outside the alphabet skipped, an incomplete last group dropped; a
/// malformed group decodes nothing at all.
fn decode_rfc2045(input: &[u8]) -> Vec<u8> {
    let kept: Vec<u8> = input
        .iter()
        .copied()
        .filter(|&b| sextet(b).is_some() || b == b'=')
        .collect();
    let mut out = Vec::with_capacity(kept.len() / 4 * 3);
    for c in kept.chunks_exact(4) {
        if decode_group([c[0], c[1], c[2], c[3]], &mut out).is_none() {
            return Vec::new();
        }
    }
    out
}

/// Up to `max` bytes of a decompressed stream; empty when the decoder fails before giving
/// anything, the output so far when a truncated stream ends.
fn inflate(reader: impl std::io::Read, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut limited = reader.take(max as u64);
    match limited.read_to_end(&mut out) {
        Ok(_) => out,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => out,
        Err(_) if !out.is_empty() => out,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kw: &str, val: Option<&str>) -> Transform {
        match Transform::parse(kw, val) {
            Some(Ok(t)) => t,
            other => panic!("{kw}: {other:?}"),
        }
    }

    fn run(kw: &str, val: Option<&str>, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        run_chain(&[t(kw, val)], input, &mut out);
        out
    }

    #[test]
    fn case_and_whitespace_steps_follow_suricata() {
        assert_eq!(run("to_lowercase", None, b"AbC\xc9"), b"abc\xc9");
        assert_eq!(run("to_uppercase", None, b"aBc"), b"ABC");
        assert_eq!(
            run("strip_whitespace", None, b" a\tb\r\n\x0b\x0cc \xa0"),
            b"abc\xa0"
        );
        // The first byte of each run stays (not a space).
        assert_eq!(
            run("compress_whitespace", None, b"a\t\n b  c\n"),
            b"a\tb c\n"
        );
        assert_eq!(run("dotprefix", None, b".a"), b"..a");
        assert_eq!(run("dotprefix", None, b""), b"");
    }

    #[test]
    fn header_steps_work_on_lines() {
        let h = b":authority: X\r\nHost: A:B\r\nX-Y: Z\r\n:path: /\r\n";
        assert_eq!(
            run("strip_pseudo_headers", None, h),
            b"Host: A:B\r\nX-Y: Z\r\n"
        );
        assert_eq!(
            run(
                "header_lowercase",
                None,
                b"Host: A:B\r\nX-Y: Z\r\nNOCOLON\n"
            ),
            b"host: A:B\r\nx-y: Z\r\nnocolon\n"
        );
    }

    #[test]
    fn url_decode_keeps_broken_escapes_as_suricata_does() {
        assert_eq!(run("url_decode", None, b"a%41%4a+b"), b"aAJ b");
        assert_eq!(run("url_decode", None, b"%ZZ%%41%+x"), b"%ZZ%%41%+x");
        assert_eq!(run("url_decode", None, b"tail%4"), b"tail%4");
        assert_eq!(run("url_decode", None, b"tail%"), b"tail%");
        assert_eq!(run("url_decode", None, b"%00"), b"\0");
    }

    #[test]
    fn xor_and_hashes_and_pcrexform() {
        assert_eq!(
            run("xor", Some("\"0d0ac8ff\""), b"\x0d\x0a\xc8\xffAB"),
            b"\0\0\0\0\x4c\x48"
        );
        for bad in ["0d0", "zz", "\"0d0\"", "\"\""] {
            assert!(
                matches!(Transform::parse("xor", Some(bad)), Some(Err(_))),
                "{bad}"
            );
        }
        assert_eq!(
            run("to_md5", None, b"abc"),
            hex::decode("900150983cd24fb0d6963f7d28e17f72").unwrap()
        );
        assert_eq!(run("to_sha1", None, b"abc").len(), 20);
        assert_eq!(
            run("to_sha256", None, b"abc"),
            hex::decode("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .unwrap()
        );
        assert_eq!(run("to_sha256", None, b""), b"", "empty stays empty");
        assert_eq!(
            run("pcrexform", Some("\"id=([0-9]+)\""), b"x?id=42&y"),
            b"42"
        );
        assert_eq!(
            run("pcrexform", Some("\"id=([0-9]+)\""), b"none"),
            b"none",
            "no match: unchanged"
        );
        assert_eq!(
            run("pcrexform", Some("\"(?<=k=)(\\w+)\""), b"k=val"),
            b"val",
            "PCRE2 fallback"
        );
        for bad in ["\"a(b)(c)\"", "\"abc\"", "abc"] {
            assert!(
                matches!(Transform::parse("pcrexform", Some(bad)), Some(Err(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn from_base64_modes_and_odd_inputs() {
        let d = |opts: Option<&str>, input: &[u8]| run("from_base64", opts, input);
        assert_eq!(d(None, b"Zm9vYg"), b"foob");
        assert_eq!(
            d(None, b"Zm9vY"),
            b"Zm9vY",
            "a lone last character: unchanged"
        );
        assert_eq!(d(None, b"Zm9v="), b"Zm9v=");
        assert_eq!(d(None, b"Zg==Zm9v"), b"ffoo");
        assert_eq!(d(None, b"Zg=A"), b"f");
        assert_eq!(d(None, b"Zm9v YmFy"), b"foo");
        assert_eq!(d(Some("mode rfc2045"), b"Zm9v\r\nYmFy"), b"foobar");
        assert_eq!(d(Some("mode rfc2045"), b"Zm9vYg"), b"foo");
        assert_eq!(d(Some("mode strict"), b"Zm9vYmFy"), b"foobar");
        assert_eq!(d(Some("mode strict"), b"Zm9vYg"), b"Zm9vYg");
        assert_eq!(d(Some("offset 4"), b"xxxxZm9v"), b"foo");
        assert_eq!(d(Some("bytes 4, offset 2"), b"xxZm9vYmFy"), b"foo");
        assert_eq!(
            d(Some("bytes 8"), b"Zm9vYmFy"),
            b"Zm9vYmFy",
            "bytes >= what is left: unchanged"
        );
        assert_eq!(d(Some("offset 9"), b"Zm9vYmFy"), b"Zm9vYmFy");
        for bad in [
            "mode: strict",
            "mode base32",
            "offset 70000",
            "bytes x",
            "mode rfc4648, mode strict",
            "size 3",
        ] {
            assert!(
                matches!(Transform::parse("from_base64", Some(bad)), Some(Err(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn decompression_is_capped_and_errors_empty_the_buffer() {
        use flate2::write::{GzEncoder, ZlibEncoder};
        use std::io::Write as _;
        // Bytes that do not compress, so half the stream holds output.
        let mut x = 7u32;
        let text: Vec<u8> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(run("gunzip", None, &gz).len(), DEFAULT_MAX_SIZE);
        assert_eq!(run("gunzip", Some("max-size 8kb"), &gz), text);
        assert_eq!(run("gunzip", Some("max-size 100"), &gz).len(), 100);
        let cut = &gz[..gz.len() / 2];
        assert!(
            !run("gunzip", Some("max-size 8kb"), cut).is_empty(),
            "truncated: what came out"
        );
        assert_eq!(run("gunzip", None, b"not gzip at all"), b"");
        let mut z = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"hello zlib").unwrap();
        let z = z.finish().unwrap();
        assert_eq!(run("zlib_deflate", None, &z), b"hello zlib");
        assert_eq!(run("zlib_deflate", None, &gz), b"", "gzip is not zlib");
        for bad in ["max-size 0", "max-size 17mb", "size 10", "max-size  10"] {
            assert!(
                matches!(Transform::parse("gunzip", Some(bad)), Some(Err(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn contents_a_step_makes_impossible_are_named() {
        assert_eq!(
            t("to_lowercase", None).refuses_content(b"aBc"),
            Some("to_lowercase")
        );
        assert_eq!(t("to_lowercase", None).refuses_content(b"abc"), None);
        assert_eq!(
            t("strip_whitespace", None).refuses_content(b"a b"),
            Some("strip_whitespace")
        );
        assert_eq!(t("compress_whitespace", None).refuses_content(b"a b"), None);
        assert_eq!(
            t("compress_whitespace", None).refuses_content(b"a  b"),
            Some("compress_whitespace")
        );
    }
}
