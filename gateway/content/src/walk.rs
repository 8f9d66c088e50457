use std::collections::HashMap;
use std::io::Read;
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

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

const XDS_NS: &[u8] = b"urn:ihe:iti:xds-b:2007";
const XOP_NS: &[u8] = b"http://www.w3.org/2004/08/xop/include";

struct Walker<'s> {
    limits: Limits,
    total: u64,
    stopped: bool,
    deadline: Option<Instant>,
    issues: Vec<Issue>,
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
        let container = !encodings.is_empty()
            || ctype
                .as_deref()
                .is_some_and(|c| c.starts_with("multipart/"))
            || is_container(data);
        if !container && !looks_like_soap(data, ctype.as_deref()) {
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
        if data.starts_with(&[0x1f, 0x8b]) {
            self.gzip(data, prov, depth);
        } else if data.starts_with(b"PK\x03\x04")
            || data.starts_with(b"PK\x05\x06")
            || data.starts_with(b"PK\x07\x08")
        {
            self.zip(data, prov, depth);
        } else if is_tar(data) {
            self.tar(data, prov, depth);
        } else if looks_like_soap(data, ctype.as_deref()) {
            self.soap(data, prov, depth, &HashMap::new(), false);
        }
    }

    fn decode_encoding(
        &mut self,
        data: &Bytes,
        prov: &str,
        enc: &str,
        depth: u32,
        next: &Hints<'_>,
    ) {
        let cap = self.limits.max_member_bytes;
        let d = match enc {
            "gzip" | "x-gzip" => {
                self.read_limited(flate2::read::MultiGzDecoder::new(&data[..]), cap)
            }
            "deflate" => {
                // RFC 9110 deflate is zlib; some servers send raw deflate.
                let z = self.read_limited(flate2::read::ZlibDecoder::new(&data[..]), cap);
                if z.error.is_some() && z.data.is_empty() {
                    self.total -= z.data.len() as u64;
                    self.read_limited(flate2::read::DeflateDecoder::new(&data[..]), cap)
                } else {
                    z
                }
            }
            "br" => self.read_limited(brotli::Decompressor::new(&data[..], 4096), cap),
            other => {
                self.issue(
                    IssueKind::Corrupt,
                    prov,
                    format!("unsupported Content-Encoding {other:?}"),
                );
                return;
            }
        };
        let p = format!("{prov} > {enc}");
        let cut = self.note(&d, &p, cap, enc);
        self.visit(&Bytes::from(d.data), &p, next.name, depth + 1, cut, next);
    }

    fn gzip(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mut dec = flate2::read::GzDecoder::new(&data[..]);
        let name = dec
            .header()
            .and_then(|h| h.filename())
            .map(|f| String::from_utf8_lossy(f).into_owned());
        let d = self.read_limited(&mut dec, self.limits.max_member_bytes);
        let p = format!("{prov} > gzip");
        let cut = self.note(&d, &p, self.limits.max_member_bytes, "gzip stream");
        let next = Hints {
            name: name.as_deref(),
            ..Hints::default()
        };
        self.visit(
            &Bytes::from(d.data),
            &p,
            name.as_deref(),
            depth + 1,
            cut,
            &next,
        );
    }

    fn zip(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mut archive = match zip::ZipArchive::new(std::io::Cursor::new(&data[..])) {
            Ok(a) => a,
            Err(e) => {
                self.issue(IssueKind::Corrupt, prov, format!("zip: {e}"));
                return;
            }
        };
        let n = archive.len();
        if n as u64 > u64::from(self.limits.max_files) {
            self.issue(
                IssueKind::Limit,
                prov,
                format!(
                    "zip has {n} members, over the limit of {}",
                    self.limits.max_files
                ),
            );
        }
        for i in 0..n.min(self.limits.max_files as usize) {
            if self.out_of_time(prov) {
                return;
            }
            let (name, encrypted, is_dir) = match archive.by_index_raw(i) {
                Ok(f) => (f.name().to_string(), f.encrypted(), f.is_dir()),
                Err(e) => {
                    self.issue(IssueKind::Corrupt, prov, format!("zip member {i}: {e}"));
                    continue;
                }
            };
            let p = format!("{prov} > zip:{}", safe_name(&name));
            if encrypted {
                self.issue(IssueKind::Encrypted, &p, "encrypted zip member");
                continue;
            }
            if is_dir {
                continue;
            }
            let d = match archive.by_index(i) {
                Ok(f) => self.read_limited(f, self.limits.max_member_bytes),
                Err(e) => {
                    self.issue(IssueKind::Corrupt, &p, format!("zip member: {e}"));
                    continue;
                }
            };
            let cut = self.note(&d, &p, self.limits.max_member_bytes, "zip member");
            let next = Hints {
                name: Some(&name),
                ..Hints::default()
            };
            self.visit(&Bytes::from(d.data), &p, Some(&name), depth + 1, cut, &next);
        }
    }

    fn tar(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mut archive = tar::Archive::new(&data[..]);
        let entries = match archive.entries() {
            Ok(e) => e,
            Err(e) => {
                self.issue(IssueKind::Corrupt, prov, format!("tar: {e}"));
                return;
            }
        };
        let mut count = 0u32;
        for entry in entries {
            if self.out_of_time(prov) {
                return;
            }
            count += 1;
            if count > self.limits.max_files {
                self.issue(
                    IssueKind::Limit,
                    prov,
                    format!("tar has more than {} members", self.limits.max_files),
                );
                return;
            }
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.issue(IssueKind::Corrupt, prov, format!("tar: {e}"));
                    return;
                }
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("member{count}"));
            let p = format!("{prov} > tar:{}", safe_name(&name));
            let d = self.read_limited(entry, self.limits.max_member_bytes);
            let cut = self.note(&d, &p, self.limits.max_member_bytes, "tar member");
            let next = Hints {
                name: Some(&name),
                ..Hints::default()
            };
            self.visit(&Bytes::from(d.data), &p, Some(&name), depth + 1, cut, &next);
        }
    }

    fn multipart(
        &mut self,
        data: &Bytes,
        prov: &str,
        content_type: &str,
        related: bool,
        depth: u32,
    ) {
        // multer's own parser accepts only multipart/form-data; the boundary is a plain parameter.
        let Some(boundary) =
            param(content_type, "boundary").filter(|b| !b.is_empty() && b.len() <= 200)
        else {
            self.issue(
                IssueKind::Corrupt,
                prov,
                "multipart: no usable boundary parameter",
            );
            return;
        };
        let start = related
            .then(|| param(content_type, "start"))
            .flatten()
            .map(|s| s.trim_matches(['<', '>']).to_string());
        let body = data.clone();
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let limit = self.limits.max_member_bytes;
        let constraints = multer::Constraints::new().size_limit(
            multer::SizeLimit::new()
                .per_field(limit)
                .whole_stream(data.len() as u64 + 1),
        );
        let mut mp = multer::Multipart::with_constraints(stream, boundary, constraints);
        let max_files = self.limits.max_files;
        struct Part {
            name: Option<String>,
            content_type: Option<String>,
            content_id: Option<String>,
            data: Bytes,
        }
        let mut parts = Vec::new();
        let mut error = None;
        futures_executor::block_on(async {
            loop {
                match mp.next_field().await {
                    Ok(Some(field)) => {
                        if parts.len() as u32 >= max_files {
                            error =
                                Some((IssueKind::Limit, format!("more than {max_files} parts")));
                            break;
                        }
                        let name = field.file_name().or(field.name()).map(str::to_string);
                        let content_type = field.content_type().map(|m| m.to_string());
                        let content_id = field
                            .headers()
                            .get("content-id")
                            .and_then(|v| v.to_str().ok())
                            .map(|v| v.trim().trim_matches(['<', '>']).to_string());
                        match field.bytes().await {
                            Ok(b) => parts.push(Part {
                                name,
                                content_type,
                                content_id,
                                data: b,
                            }),
                            Err(e) => {
                                let kind = if matches!(e, multer::Error::FieldSizeExceeded { .. }) {
                                    IssueKind::Limit
                                } else {
                                    IssueKind::Corrupt
                                };
                                error = Some((kind, e.to_string()));
                                break;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error = Some((IssueKind::Corrupt, e.to_string()));
                        break;
                    }
                }
            }
        });
        if let Some((kind, reason)) = error {
            self.issue(kind, prov, format!("multipart: {reason}"));
        }
        let total: u64 = parts.iter().map(|p| p.data.len() as u64).sum();
        self.total += total;
        if related {
            // MTOM/XOP: the root part (start, or the first) is the SOAP envelope; attachments are
            // reached through xop:Include cid references; unreferenced ones are scanned as parts.
            let root = start
                .as_ref()
                .and_then(|s| {
                    parts
                        .iter()
                        .position(|p| p.content_id.as_deref() == Some(s.as_str()))
                })
                .unwrap_or(0);
            let mut cids: HashMap<String, (Bytes, Option<String>)> = HashMap::new();
            for (i, p) in parts.iter().enumerate() {
                if i != root {
                    if let Some(id) = &p.content_id {
                        cids.insert(id.clone(), (p.data.clone(), p.content_type.clone()));
                    }
                }
            }
            if let Some(r) = parts.get(root) {
                let p = format!("{prov} > mime:root");
                if self.out_of_time(&p) {
                    return;
                }
                if (self.sink)(&Piece {
                    provenance: &p,
                    name: r.name.as_deref(),
                    data: &r.data,
                    depth: depth + 1,
                    truncated: false,
                }) == Control::Stop
                {
                    self.stopped = true;
                    return;
                }
                let used = self.soap(&r.data, &p, depth + 1, &cids, true);
                for (i, part) in parts.iter().enumerate() {
                    if i == root || part.content_id.as_ref().is_some_and(|c| used.contains(c)) {
                        continue;
                    }
                    let label = part
                        .content_id
                        .as_deref()
                        .or(part.name.as_deref())
                        .unwrap_or("part");
                    self.visit_part(
                        &part.data,
                        &format!("{prov} > mime:{}", safe_name(label)),
                        part.name.as_deref(),
                        part.content_type.as_deref(),
                        depth,
                    );
                }
            }
        } else {
            for (i, part) in parts.iter().enumerate() {
                let label = part.name.clone().unwrap_or_else(|| format!("part{i}"));
                self.visit_part(
                    &part.data,
                    &format!("{prov} > multipart:{}", safe_name(&label)),
                    part.name.as_deref(),
                    part.content_type.as_deref(),
                    depth,
                );
            }
        }
    }

    /// Visits one MIME part with its own Content-Type.
    fn visit_part(
        &mut self,
        data: &Bytes,
        prov: &str,
        name: Option<&str>,
        content_type: Option<&str>,
        depth: u32,
    ) {
        let hints = Hints {
            content_type,
            content_encoding: None,
            name,
        };
        self.visit(data, prov, name, depth + 1, false, &hints);
    }

    /// SOAP with IHE XDS.b `Document` elements: inline base64 or `xop:Include` into `cids`.
    /// Returns the content ids it resolved.
    fn soap(
        &mut self,
        data: &Bytes,
        prov: &str,
        depth: u32,
        cids: &HashMap<String, (Bytes, Option<String>)>,
        mtom: bool,
    ) -> Vec<String> {
        let mut used = Vec::new();
        if depth >= self.limits.max_depth {
            self.issue(
                IssueKind::Limit,
                prov,
                format!("nesting deeper than {} levels", self.limits.max_depth),
            );
            return used;
        }
        let mut reader = quick_xml::NsReader::from_reader(&data[..]);
        let mut in_doc = false;
        let mut doc_id = String::new();
        let mut text: Vec<u8> = Vec::new();
        let mut index = 0u32;
        let max_b64 = self.limits.max_soap_document_bytes.saturating_mul(4) / 3 + 4;
        let mut too_big = false;
        let mut include: Option<String> = None;
        loop {
            let ev = match reader.read_resolved_event() {
                Ok(ev) => ev,
                Err(e) => {
                    self.issue(
                        IssueKind::Corrupt,
                        prov,
                        format!("XML at byte {}: {e}", reader.buffer_position()),
                    );
                    return used;
                }
            };
            match ev {
                (ResolveResult::Bound(ns), Event::Start(e))
                    if ns.as_ref() == XDS_NS && e.local_name().as_ref() == b"Document" =>
                {
                    in_doc = true;
                    index += 1;
                    text.clear();
                    too_big = false;
                    include = None;
                    doc_id = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == b"id")
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                        .unwrap_or_else(|| index.to_string());
                }
                (ResolveResult::Bound(ns), Event::Empty(e))
                | (ResolveResult::Bound(ns), Event::Start(e))
                    if in_doc && ns.as_ref() == XOP_NS && e.local_name().as_ref() == b"Include" =>
                {
                    include = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == b"href")
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned());
                }
                (_, Event::Text(t)) if in_doc => {
                    if text.len() as u64 + t.len() as u64 > max_b64 {
                        too_big = true;
                    } else {
                        text.extend(t.iter().filter(|b| !b.is_ascii_whitespace()));
                    }
                }
                (ResolveResult::Bound(ns), Event::End(e))
                    if in_doc
                        && ns.as_ref() == XDS_NS
                        && e.local_name().as_ref() == b"Document" =>
                {
                    in_doc = false;
                    let p = format!("{prov} > soap:Document[{}]", safe_name(&doc_id));
                    if let Some(href) = include.take() {
                        let cid =
                            percent_decode(href.trim().strip_prefix("cid:").unwrap_or(href.trim()));
                        match cids.get(&cid) {
                            Some((part, ctype)) => {
                                used.push(cid.clone());
                                let pp = format!("{p} > cid:{}", safe_name(&cid));
                                let hints = Hints {
                                    content_type: ctype.as_deref(),
                                    ..Hints::default()
                                };
                                self.visit(part, &pp, None, depth + 1, false, &hints);
                            }
                            // Outside an MTOM package (a SOAP part scanned alone) the attachment
                            // is simply not in this data; inside one, a dangling cid is broken.
                            None if mtom => self.issue(
                                IssueKind::Corrupt,
                                &p,
                                format!(
                                    "xop:Include names {href}, which is not a part of this message"
                                ),
                            ),
                            None => {}
                        }
                    } else if too_big {
                        self.issue(
                            IssueKind::Limit,
                            &p,
                            format!(
                                "SOAP document over the limit of {} bytes",
                                self.limits.max_soap_document_bytes
                            ),
                        );
                    } else if !text.is_empty() {
                        match base64::engine::general_purpose::STANDARD.decode(&text) {
                            Ok(doc) => {
                                self.total += doc.len() as u64;
                                self.visit(
                                    &Bytes::from(doc),
                                    &p,
                                    None,
                                    depth + 1,
                                    false,
                                    &Hints::default(),
                                );
                            }
                            Err(e) => {
                                self.issue(IssueKind::Corrupt, &p, format!("invalid base64: {e}"))
                            }
                        }
                    }
                    text.clear();
                }
                (_, Event::Eof) => break,
                _ => {}
            }
            if self.stopped {
                break;
            }
        }
        used
    }
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
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A Content-Type parameter value, unquoted.
fn param(content_type: &str, name: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// `multipart/related; boundary=…` for data that starts like a MIME multipart body.
fn sniff_multipart(data: &[u8]) -> Option<String> {
    let rest = data.strip_prefix(b"--")?;
    let end = rest.iter().take(202).position(|b| *b == b'\n')?;
    let boundary = std::str::from_utf8(&rest[..end])
        .ok()?
        .trim_end_matches('\r');
    if boundary.is_empty() || boundary.contains(['"', ' ', ';']) {
        return None;
    }
    let head = &rest[end..rest.len().min(end + 1024)];
    let lower = String::from_utf8_lossy(head).to_ascii_lowercase();
    if !lower.contains("content-") {
        return None;
    }
    let kind = if lower.contains("xop+xml") {
        "related"
    } else {
        "mixed"
    };
    Some(format!("multipart/{kind}; boundary=\"{boundary}\""))
}

fn is_tar(data: &[u8]) -> bool {
    data.len() >= 512 && &data[257..262] == b"ustar"
}

fn is_container(data: &[u8]) -> bool {
    data.starts_with(&[0x1f, 0x8b])
        || data.starts_with(b"PK\x03\x04")
        || data.starts_with(b"PK\x05\x06")
        || is_tar(data)
}

/// XML that may carry IHE documents: by content type, or an XML start with the XDS namespace.
fn looks_like_soap(data: &[u8], ctype: Option<&str>) -> bool {
    let head = &data[..data.len().min(4096)];
    let xmlish = ctype.is_some_and(|c| c.contains("xml"))
        || head
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'<');
    xmlish && memfind(data, XDS_NS)
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}
