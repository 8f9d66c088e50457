//! HTTP files as Suricata sees them (`src/app-layer-htp.c`, `src/detect-file*.c`): a response
//! body is a download, a POST or PUT body an upload; its name is the `filename` of a
//! `Content-Disposition` header, else the normalised URI path. `filesize` compares the body's
//! length once it is complete (a body cut at the limit only answers `>` and `>=`), and
//! `filemd5` / `filesha1` / `filesha256` look the body's digest up in a list file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use md5::Digest as _;

use crate::matchers::NumCmp;

/// The most hashes one list file may hold.
pub const MAX_HASHES: usize = 1_000_000;

/// The most parts of a multipart body read for files.
pub const MAX_PARTS: usize = 64;

/// The `boundary` parameter of a `multipart/…` Content-Type (quotes removed).
pub fn boundary(content_type: &[u8]) -> Option<Vec<u8>> {
    let ct = String::from_utf8_lossy(content_type);
    if !ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/")
    {
        return None;
    }
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 200).then(|| v.as_bytes().to_vec())
    })
}

/// The files of a multipart body, as Suricata's multipart parser finds them: each part whose
/// `Content-Disposition` names a `filename`, with its content (up to the line ending before
/// the next delimiter, or to the end of a body that stops inside it). At most [`MAX_PARTS`]
/// parts are read.
pub fn multipart_files<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<(Vec<u8>, &'a [u8])> {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delim);
    let starts: Vec<usize> = finder.find_iter(body).take(MAX_PARTS + 1).collect();
    let mut files = Vec::new();
    for (n, &s) in starts.iter().enumerate() {
        let after = s + delim.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        let end = starts.get(n + 1).copied().unwrap_or(body.len());
        let part = &body[after..end];
        let Some(hdr_end) = memchr::memmem::find(part, b"\r\n\r\n") else {
            continue;
        };
        let headers = &part[..hdr_end];
        let mut content = &part[hdr_end + 4..];
        if starts.get(n + 1).is_some() {
            content = content.strip_suffix(b"\r\n").unwrap_or(content);
        }
        let name = headers.split(|&b| b == b'\n').find_map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let (k, v) = l.split_at(memchr::memchr(b':', l)?);
            k.trim_ascii()
                .eq_ignore_ascii_case(b"content-disposition")
                .then(|| disposition_name(&v[1..]))
                .flatten()
        });
        if let Some(name) = name {
            files.push((name, content));
        }
    }
    files
}

/// The file's name from a `Content-Disposition` value: the `filename=` parameter (name in any
/// case, one pair of quotes removed, nothing unescaped); `filename*=` is not read.
pub fn disposition_name(value: &[u8]) -> Option<Vec<u8>> {
    let mut in_quotes = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, &b) in value.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b';' if !in_quotes => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter().find_map(|p| {
        let p = p.trim_ascii_start();
        let v = p
            .get(..9)
            .filter(|k| k.eq_ignore_ascii_case(b"filename="))
            .map(|_| &p[9..])?;
        let v = v.strip_prefix(b"\"").unwrap_or(v);
        let v = v.strip_suffix(b"\"").unwrap_or(v);
        (!v.is_empty()).then(|| v.to_vec())
    })
}

/// `filesize`'s value: a comparison (`N`, `<N`, `>=N`, `A<>B`, `A-B` …) with an optional unit
/// right after the digits (`kb`/`kib`, `mb`/`mib`, `gb`/`gib`, base 1024).
pub fn parse_filesize(v: &str) -> Result<NumCmp, String> {
    let v = v.trim();
    if v.contains('"') {
        return Err("filesize takes no quotes".into());
    }
    let scaled = scale_units(v)?;
    let scaled = match scaled.split_once('-') {
        Some((a, b)) if !a.is_empty() && !a.ends_with(['<', '>', '=', '!']) => {
            format!("{a}<>{b}")
        }
        _ => scaled,
    };
    NumCmp::parse(&scaled).map_err(|e| format!("filesize: {e}"))
}

/// Replaces each `N<unit>` by the number of bytes.
fn scale_units(v: &str) -> Result<String, String> {
    let mut out = String::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            out.push(b[i] as char);
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n: u64 = v[start..i]
            .parse()
            .map_err(|_| format!("filesize: bad number in {v:?}"))?;
        let unit_end = (i..b.len())
            .find(|&j| !b[j].is_ascii_alphabetic())
            .unwrap_or(b.len());
        let scale: u64 = match v[i..unit_end].to_ascii_lowercase().as_str() {
            "" => 1,
            "kb" | "kib" => 1 << 10,
            "mb" | "mib" => 1 << 20,
            "gb" | "gib" => 1 << 30,
            u => return Err(format!("filesize: unknown unit {u:?}")),
        };
        let bytes = n
            .checked_mul(scale)
            .ok_or_else(|| format!("filesize: {v:?} overflows"))?;
        out.push_str(&bytes.to_string());
        i = unit_end;
    }
    Ok(out)
}

/// Whether `filesize` holds for a body of `len` bytes (`cut`: cut at the limit, so only a
/// lower bound is known).
pub fn filesize_holds(cmp: NumCmp, len: u64, cut: bool) -> bool {
    if cut {
        return matches!(cmp, NumCmp::Gt(_) | NumCmp::Ge(_)) && cmp.test(len);
    }
    cmp.test(len)
}

/// The digest a hash keyword compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    /// `filemd5`.
    Md5,
    /// `filesha1`.
    Sha1,
    /// `filesha256`.
    Sha256,
}

impl HashKind {
    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            HashKind::Md5 => "filemd5",
            HashKind::Sha1 => "filesha1",
            HashKind::Sha256 => "filesha256",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            HashKind::Md5 => 32,
            HashKind::Sha1 => 40,
            HashKind::Sha256 => 64,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashKind::Md5 => md5::Md5::digest(data).to_vec(),
            HashKind::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashKind::Sha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }
}

/// A hash keyword: the list, and `!`.
#[derive(Clone, Debug)]
pub struct FileHash {
    /// Which digest.
    pub kind: HashKind,
    /// The list (raw digests).
    pub list: Arc<HashSet<Vec<u8>>>,
    /// `!`: the digest is not in the list.
    pub negated: bool,
}

impl FileHash {
    /// Parses `[!]path` and loads the list: relative paths beside the rule file. Each line
    /// keeps its leading hex run (so `md5sum` output works); lines whose run is not a digest's
    /// length are skipped; a list with no digest is an error.
    pub fn load(kind: HashKind, v: &str, rule_file: &str) -> Result<FileHash, String> {
        let kw = kind.keyword();
        let v = v.trim();
        if v.contains('"') {
            return Err(format!("{kw} takes no quotes"));
        }
        let (negated, path) = match v.strip_prefix('!') {
            Some(p) => (true, p.trim()),
            None => (false, v),
        };
        if path.is_empty() {
            return Err(format!("{kw} needs a file"));
        }
        let mut p = PathBuf::from(path);
        if p.is_relative() {
            if let Some(dir) = Path::new(rule_file).parent() {
                p = dir.join(p);
            }
        }
        let text = std::fs::read(&p).map_err(|e| format!("{kw}: opening {}: {e}", p.display()))?;
        let mut list = HashSet::new();
        for line in text.split(|&b| b == b'\n') {
            let run = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            if run != kind.hex_len() {
                continue;
            }
            if list.len() >= MAX_HASHES {
                return Err(format!(
                    "{kw}: {} holds more than {MAX_HASHES} hashes",
                    p.display()
                ));
            }
            if let Ok(d) = hex::decode(&line[..run]) {
                list.insert(d);
            }
        }
        if list.is_empty() {
            return Err(format!("{kw}: no hash in {}", p.display()));
        }
        Ok(FileHash {
            kind,
            list: Arc::new(list),
            negated,
        })
    }

    /// Whether the keyword holds for a complete file.
    pub fn holds(&self, data: &[u8]) -> bool {
        self.list.contains(&self.kind.digest(data)) != self.negated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_names() {
        let n = |v: &[u8]| disposition_name(v);
        assert_eq!(
            n(b"attachment; filename=\"a b.exe\""),
            Some(b"a b.exe".to_vec())
        );
        assert_eq!(n(b"attachment;FileName=x.zip"), Some(b"x.zip".to_vec()));
        assert_eq!(
            n(b"inline; name=\"x;y\"; filename=z.doc"),
            Some(b"z.doc".to_vec())
        );
        assert_eq!(n(b"attachment; filename*=UTF-8''a.exe"), None);
        assert_eq!(n(b"attachment; filename=\"\""), None);
    }

    #[test]
    fn filesize_values_and_cut_bodies() {
        let f = |v: &str| parse_filesize(v).unwrap();
        assert!(f("100").test(100) && !f("100").test(101));
        assert!(f(">10kb").test(10 * 1024 + 1) && !f(">10KB").test(10 * 1024));
        assert!(f("1MiB<>2mb").test(1_500_000));
        assert!(f("100-200").test(150) && !f("100-200").test(200));
        assert!(f("<=1gb").test(1 << 30));
        for bad in ["\"100\"", "10 MB", "10xb", "x"] {
            assert!(parse_filesize(bad).is_err(), "{bad}");
        }
        assert!(
            filesize_holds(f(">100"), 500, true),
            "a lower bound answers >"
        );
        assert!(!filesize_holds(f("<1000"), 500, true), "but not <");
        assert!(filesize_holds(f("<1000"), 500, false));
    }

    #[test]
    fn hash_lists() {
        let dir = std::env::temp_dir().join(format!("sekisho-hashes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let md5_abc = "900150983cd24fb0d6963f7d28e17f72";
        std::fs::write(
            dir.join("md5.txt"),
            format!(
                "# comment\n\n{}  file.bin\nzz\n0123\n",
                md5_abc.to_uppercase()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("none.txt"), "# nothing\n").unwrap();
        let rule_file = dir.join("local.rules").display().to_string();
        let h = FileHash::load(HashKind::Md5, "md5.txt", &rule_file).unwrap();
        assert!(h.holds(b"abc") && !h.holds(b"abd"));
        let n = FileHash::load(HashKind::Md5, "!md5.txt", &rule_file).unwrap();
        assert!(!n.holds(b"abc") && n.holds(b"abd"));
        for bad in ["none.txt", "missing.txt", "\"md5.txt\"", ""] {
            assert!(
                FileHash::load(HashKind::Md5, bad, &rule_file).is_err(),
                "{bad}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod multipart_tests {
    use super::*;

    #[test]
    fn files_of_a_multipart_body() {
        let b = boundary(b"multipart/form-data; boundary=\"XyZ\"").unwrap();
        assert_eq!(b, b"XyZ");
        assert!(boundary(b"text/plain; boundary=x").is_none());
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfield\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"one.txt\"\r\nContent-Type: text/plain\r\n\r\nfirst file\r\n\
--XyZ\r\ncontent-disposition: form-data; name=\"g\"; filename=two.exe\r\n\r\nMZsecond\r\n--XyZ--\r\n";
        let files = multipart_files(body, &b);
        assert_eq!(
            files,
            vec![
                (b"one.txt".to_vec(), &b"first file"[..]),
                (b"two.exe".to_vec(), &b"MZsecond"[..])
            ]
        );
        // A body cut inside a file keeps what came.
        let cut = &body[..body.len() - 15];
        assert_eq!(
            multipart_files(cut, &b)[1],
            (b"two.exe".to_vec(), &b"MZse"[..])
        );
        // Cut inside the part's headers: no file yet.
        assert_eq!(multipart_files(&body[..body.len() - 20], &b).len(), 1);
        assert!(multipart_files(b"no delimiters", &b).is_empty());
    }
}
