//! The walk: every piece of a body, each handed to the sink with its provenance, under the
//! limits. This module holds the walker and its dispatch; each family of formats opens in its
//! own submodule.

mod alz;
mod archive;
mod exe;
mod html;
mod mail;
mod mime;
mod office;
mod pdf;
mod rar;
mod soap;
mod stream;
mod whole;
mod ziplocal;

use std::collections::HashMap;
use std::io::Read;
use std::time::Instant;

use bytes::Bytes;

use crate::formats::{self, Format};
use mime::sniff_multipart;
use soap::looks_like_soap;

/// Containers opened inside one file no format claims (more is a limit issue).
const MAX_EMBEDDED: usize = 64;

/// Extraction limits. Defaults follow ClamAV's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Containers nested deeper than this are not opened (default 16).
    pub max_depth: u32,
    /// Members read from one archive or multipart body (default 10,000).
    pub max_files: u32,
    /// Bytes decoded from one member or stream (default 100 MiB).
    pub max_member_bytes: u64,
    /// Bytes decoded in one walk, all pieces together (default 400 MiB).
    pub max_total_bytes: u64,
    /// Bytes of one decoded SOAP `Document` (default 50 MiB).
    pub max_soap_document_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 16,
            max_files: 10_000,
            max_member_bytes: 100 << 20,
            max_total_bytes: 400 << 20,
            max_soap_document_bytes: 50 << 20,
        }
    }
}

/// One inspectable piece.
#[derive(Debug)]
pub struct Piece<'a> {
    /// Where it came from: `response.body > gzip > zip:docs/a.pdf`.
    pub provenance: &'a str,
    /// A file name, when the container gave one.
    pub name: Option<&'a str>,
    /// The decoded bytes (possibly cut at a limit: see `truncated`).
    pub data: &'a [u8],
    /// Nesting depth (0 for the body itself).
    pub depth: u32,
    /// True when decoding stopped at a limit or an error before the end.
    pub truncated: bool,
}

/// What the sink wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep walking.
    Continue,
    /// Stop now (a detection in prevent mode, a deadline).
    Stop,
}

/// Why something could not be fully inspected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueKind {
    /// A size, count, depth or time limit.
    Limit,
    /// An encrypted member.
    Encrypted,
    /// A corrupt or truncated container or encoding.
    Corrupt,
}

impl IssueKind {
    /// `limit`, `encrypted`, `corrupt`.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueKind::Limit => "limit",
            IssueKind::Encrypted => "encrypted",
            IssueKind::Corrupt => "corrupt",
        }
    }
}

/// Something that could not be fully inspected, with where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// What kind.
    pub kind: IssueKind,
    /// Where.
    pub provenance: String,
    /// Why, in words.
    pub reason: String,
}

/// What the HTTP layer knows about a body.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hints<'a> {
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Content-Encoding` (possibly a list, applied in order).
    pub content_encoding: Option<&'a str>,
    /// A file name (from the URL or Content-Disposition).
    pub name: Option<&'a str>,
}

struct Walker<'s> {
    limits: Limits,
    total: u64,
    stopped: bool,
    deadline: Option<Instant>,
    issues: Vec<Issue>,
    /// Set while an embedded program is visited: its own embedded search is skipped.
    skip_search: bool,
    sink: &'s mut dyn FnMut(&Piece<'_>) -> Control,
}

/// Walks `data` and every piece nested in it, handing each to `sink` (parents before children).
/// Returns the issues met. Stops early when the sink says so or at `deadline`.
pub fn walk(
    data: &Bytes,
    root: &str,
    hints: &Hints<'_>,
    limits: &Limits,
    deadline: Option<Instant>,
    sink: &mut dyn FnMut(&Piece<'_>) -> Control,
) -> Vec<Issue> {
    let mut w = Walker {
        limits: limits.clone(),
        total: 0,
        stopped: false,
        deadline,
        issues: Vec::new(),
        skip_search: false,
        sink,
    };
    w.visit(data, root, hints.name, 0, false, hints);
    w.issues
}

/// Result of a bounded read.
struct Decoded {
    data: Vec<u8>,
    over_limit: bool,
    error: Option<String>,
}

impl Walker<'_> {
    fn issue(&mut self, kind: IssueKind, provenance: &str, reason: impl Into<String>) {
        self.issues.push(Issue {
            kind,
            provenance: provenance.to_string(),
            reason: reason.into(),
        });
    }

    /// What stopped a format reader early, `(true, why)` a limit, `(false, why)` damage, as
    /// an issue named by the format.
    fn problem(&mut self, prov: &str, format: &str, problem: Option<(bool, String)>) {
        if let Some((limit, why)) = problem {
            let kind = if limit {
                IssueKind::Limit
            } else {
                IssueKind::Corrupt
            };
            self.issue(kind, prov, format!("{format}: {why}"));
        }
    }

    fn out_of_time(&mut self, provenance: &str) -> bool {
        if self.stopped {
            return true;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.issue(IssueKind::Limit, provenance, "scan time limit reached");
            self.stopped = true;
        }
        self.stopped
    }

    /// Reads at most the member limit and what is left of the total limit.
    fn read_limited(&mut self, mut r: impl Read, cap: u64) -> Decoded {
        let room = cap.min(self.limits.max_total_bytes.saturating_sub(self.total));
        let mut data = Vec::new();
        let mut error = None;
        match r.by_ref().take(room).read_to_end(&mut data) {
            Ok(_) => {}
            Err(e) => error = Some(e.to_string()),
        }
        let mut over_limit = false;
        if error.is_none() && data.len() as u64 == room {
            let mut probe = [0u8; 1];
            if matches!(r.read(&mut probe), Ok(1)) {
                over_limit = true;
            }
        }
        self.total += data.len() as u64;
        Decoded {
            data,
            over_limit,
            error,
        }
    }

    /// Reports a bounded read's limit or error; returns whether it was cut short.
    fn note(&mut self, d: &Decoded, prov: &str, cap: u64, what: &str) -> bool {
        if d.over_limit {
            let reason = if self.total >= self.limits.max_total_bytes {
                format!(
                    "decoded bytes over the total limit of {}",
                    self.limits.max_total_bytes
                )
            } else {
                format!("{what} over the limit of {cap} bytes")
            };
            self.issue(IssueKind::Limit, prov, reason);
        }
        if let Some(e) = &d.error {
            self.issue(IssueKind::Corrupt, prov, format!("{what}: {e}"));
        }
        d.over_limit || d.error.is_some()
    }

    fn visit(
        &mut self,
        data: &Bytes,
        prov: &str,
        name: Option<&str>,
        depth: u32,
        truncated: bool,
        hints: &Hints<'_>,
    ) {
        if self.out_of_time(prov) {
            return;
        }
        if (self.sink)(&Piece {
            provenance: prov,
            name,
            data,
            depth,
            truncated,
        }) == Control::Stop
        {
            self.stopped = true;
            return;
        }
        let encodings: Vec<String> = hints
            .content_encoding
            .map(|e| {
                e.split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .filter(|t| !t.is_empty() && t != "identity")
                    .collect()
            })
            .unwrap_or_default();
        // A MIME body stored as a file (no Content-Type at hand): take the boundary from its first line.
        let sniffed = hints
            .content_type
            .is_none()
            .then(|| sniff_multipart(data))
            .flatten();
        let hints = &Hints {
            content_type: hints.content_type.or(sniffed.as_deref()),
            ..*hints
        };
        let ctype = hints.content_type.map(|c| c.to_ascii_lowercase());
        let format = formats::detect(data);
        let container = !encodings.is_empty()
            || ctype
                .as_deref()
                .is_some_and(|c| c.starts_with("multipart/"))
            || format.is_some();
        let soapish = !container && looks_like_soap(data, ctype.as_deref());
        if !container && !soapish {
            self.embedded(data, prov, depth);
            return;
        }
        if depth >= self.limits.max_depth {
            self.issue(
                IssueKind::Limit,
                prov,
                format!("nesting deeper than {} levels", self.limits.max_depth),
            );
            return;
        }
        if let Some((first, rest)) = encodings.split_first() {
            let rest = rest.join(",");
            let next = Hints {
                content_type: hints.content_type,
                content_encoding: (!rest.is_empty()).then_some(rest.as_str()),
                name,
            };
            self.decode_encoding(data, prov, first, depth, &next);
            return;
        }
        if let Some(ct) = ctype.as_deref().filter(|c| c.starts_with("multipart/")) {
            if let Some(original) = hints.content_type {
                self.multipart(
                    data,
                    prov,
                    original,
                    ct.starts_with("multipart/related"),
                    depth,
                );
            }
            return;
        }
        match format {
            Some(f) => self.open(f, data, prov, depth),
            None if soapish => {
                self.soap(data, prov, depth, &HashMap::new(), false);
            }
            None => {}
        }
    }

    /// Visits bytes a container held (counted in the total), named or not.
    fn extracted(&mut self, data: Vec<u8>, prov: &str, name: Option<&str>, depth: u32, cut: bool) {
        self.total += data.len() as u64;
        let hints = Hints {
            name,
            ..Hints::default()
        };
        self.visit(&Bytes::from(data), prov, name, depth, cut, &hints);
    }

    /// Containers inside a file no format claims (self-extracting archives, installers,
    /// polyglots): each opened where it starts, `> embedded:cab@OFFSET`. A start that turns out
    /// corrupt is taken for a lookalike, not reported (NSIS data excepted); what it held is still
    /// scanned.
    fn embedded(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let search = !std::mem::take(&mut self.skip_search);
        // Programs, images and other binaries carry NUL bytes early; text does not, and a raw
        // archive inside text would be no archive a program could open.
        if data.len() < 64 || memchr::memchr(0, &data[..data.len().min(4096)]).is_none() {
            return;
        }
        if data.starts_with(b"MZ") {
            self.unpack(data, prov, depth);
        }
        if !search {
            return;
        }
        // An InstallShield setup's disk in the overlay is read as such; the search for other
        // containers stops where it starts.
        let searched = match self.setup_overlay(data, prov, depth) {
            Some(start) => data.slice(..start),
            None => data.clone(),
        };
        let found = formats::embedded::find(&searched, MAX_EMBEDDED + 1);
        if found.is_empty() {
            return;
        }
        if depth >= self.limits.max_depth {
            let why = format!("nesting deeper than {} levels", self.limits.max_depth);
            self.issue(IssueKind::Limit, prov, why);
            return;
        }
        if found.len() > MAX_EMBEDDED {
            let why = format!("more than {MAX_EMBEDDED} embedded containers");
            self.issue(IssueKind::Limit, prov, why);
        }
        let mut programs = 0;
        for f in found.into_iter().take(MAX_EMBEDDED) {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = format!("{prov} > embedded:{}@{}", f.format.label(), f.offset);
            if f.format == Format::Pe {
                programs += 1;
                if programs > formats::embedded::MAX_PROGRAMS {
                    let why = format!(
                        "more than {} embedded programs",
                        formats::embedded::MAX_PROGRAMS
                    );
                    self.issue(IssueKind::Limit, prov, why);
                } else {
                    self.embedded_program(data.slice(f.offset..), &p, depth + 1);
                }
                continue;
            }
            let before = self.issues.len();
            self.open(f.format, &data.slice(f.offset..), &p, depth + 1);
            // A start that does not open is a lookalike: its own failure is not reported
            // (NSIS's 16-byte signature and checked first header, InstallShield's marker and
            // fixed block fields, AutoIt's 24-byte marker, are no lookalike). What a
            // real embedded container holds keeps its issues.
            if !matches!(f.format, Format::Nsis | Format::IsMsi | Format::AutoIt) {
                let mut i = before;
                while i < self.issues.len() {
                    let own = self.issues[i].provenance == p;
                    if own && self.issues[i].kind == IssueKind::Corrupt {
                        self.issues.remove(i);
                    } else {
                        i += 1;
                    }
                }
            }
        }
    }

    /// Opens a container recognised by its magic.
    fn open(&mut self, f: Format, data: &Bytes, prov: &str, depth: u32) {
        match f {
            Format::Gzip => self.gzip(data, prov, depth),
            Format::Bzip2 | Format::Xz | Format::Lzma | Format::Zstd => {
                self.stream(f, data, prov, depth)
            }
            Format::Zip => self.zip(data, prov, depth),
            Format::Tar => self.tar(data, prov, depth),
            Format::Cpio => self.cpio(data, prov, depth),
            Format::SevenZ => self.sevenz(data, prov, depth),
            Format::Cab => self.cab(data, prov, depth),
            Format::Mail => self.mail(data, prov, depth),
            Format::Ole2 => self.ole2(data, prov, depth),
            Format::Rtf => self.rtf(data, prov, depth),
            Format::Iso => self.iso(data, prov, depth),
            Format::BinHex => self.binhex(data, prov, depth),
            Format::Tnef => self.tnef(data, prov, depth),
            Format::Szdd => self.szdd(data, prov, depth),
            Format::OneNote => self.onenote(data, prov, depth),
            Format::Html => self.html(data, prov, depth),
            Format::Pdf => self.pdf(data, prov, depth),
            Format::Sis => self.sis(data, prov, depth),
            Format::Rar => self.rar(data, prov, depth),
            Format::Nsis => self.nsis(data, prov, depth),
            Format::Arj => self.arj(data, prov, depth),
            Format::Chm => self.chm(data, prov, depth),
            Format::IsMsi => self.ishield(data, prov, depth),
            Format::AutoIt => self.autoit(data, prov, depth),
            Format::Lha => self.lha(data, prov, depth),
            Format::Alz => self.alz(data, prov, depth),
            Format::Pe => self.embedded_program(data.clone(), prov, depth),
        }
    }
}

/// Every piece's provenance and bytes (root `f`), and the issues: what tests look at.
#[cfg(test)]
pub(crate) fn pieces(data: Vec<u8>, limits: &Limits) -> (Vec<(String, Vec<u8>)>, Vec<Issue>) {
    let mut seen = Vec::new();
    let issues = walk(
        &Bytes::from(data),
        "f",
        &Hints::default(),
        limits,
        None,
        &mut |p| {
            seen.push((p.provenance.to_string(), p.data.to_vec()));
            Control::Continue
        },
    );
    (seen, issues)
}

/// A 64-bit fingerprint of decoded bytes, to tell a second way to the same bytes (a OneNote
/// section's raw search after its parsed pages) from a new file.
fn fingerprint(data: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    // Keys drawn at random once per process: no one can build a collision offline.
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(std::collections::hash_map::RandomState::new)
        .hash_one(data)
}

/// A member name fit for a provenance string: no control characters, bounded length.
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(200)
        .collect();
    cleaned
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&formats::unescape_hex(s.as_bytes(), b'%')).into_owned()
}

/// A Content-Type parameter value, unquoted.
fn param(content_type: &str, name: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_string())
    })
}
