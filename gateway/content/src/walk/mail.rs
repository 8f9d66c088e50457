//! Mail: RFC 5322 messages and Unix mboxes, opened with `mail-parser` (MIME multipart, base64,
//! quoted-printable, RFC 2231 parameters, nested messages), uuencoded files in text parts, and
//! MTOM packages saved as a message file (headers, then a multipart/related body), which go to
//! the multipart opener so `xop:Include` references resolve.

use bytes::Bytes;
use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::{safe_name, Hints, IssueKind, Walker};
use crate::formats::{b64parts, binhex, tnef, uuencode};

impl Walker<'_> {
    pub(super) fn mail(&mut self, data: &Bytes, prov: &str, depth: u32) {
        if data.starts_with(b"From ") {
            self.mbox(data, prov, depth);
        } else {
            self.message(data, prov, depth);
        }
    }

    /// Each message of an mbox: a `From ` line at the start or after a line end begins one.
    /// Messages are slices of the mbox (nothing is copied or decoded at this level).
    fn mbox(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let ends = memchr::memmem::find_iter(data, b"\nFrom ")
            .map(|i| i + 1)
            .chain([data.len()]);
        let mut start = 0;
        let mut seen = 0;
        for (n, end) in ends.enumerate() {
            let msg = &data[start..end];
            let body = msg
                .iter()
                .position(|b| *b == b'\n')
                .map_or(end, |i| start + i + 1);
            start = end;
            if !self.one_more(prov, "mbox", &mut seen) {
                return;
            }
            let p = format!("{prov} > mbox:msg{}", n + 1);
            let piece = data.slice(body..end);
            self.visit(&piece, &p, None, depth + 1, false, &Hints::default());
        }
    }

    /// One message: every leaf part decoded, nested messages opened in turn.
    fn message(&mut self, raw: &Bytes, prov: &str, depth: u32) {
        let Some(msg) = MessageParser::default().parse(&raw[..]) else {
            self.issue(IssueKind::Corrupt, prov, "mail: no message header");
            return;
        };
        if let Some(ctype) = msg
            .header_raw("Content-Type")
            .map(|v| v.replace(['\r', '\n'], " "))
            .filter(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/related")
            })
        {
            // An MTOM package saved as a file: the body is the multipart/related body.
            let body = msg.root_part().offset_body as usize;
            let body = raw.slice(body.min(raw.len())..);
            self.multipart(&body, prov, ctype.trim(), true, depth);
            return;
        }
        let mut seen = 0;
        // Where the parser decoded base64 bodies: the sweep leaves those alone.
        let mut decoded: Vec<(usize, usize)> = Vec::new();
        for (i, part) in msg.parts.iter().enumerate() {
            // uuencoded files may sit in any leaf part: text, or a body left as it is (the mail
            // parser does not decode `Content-Transfer-Encoding: x-uuencode`).
            let (bytes, leaf): (&[u8], bool) = match &part.body {
                PartType::Multipart(_) => continue,
                PartType::Text(t) | PartType::Html(t) => (t.as_bytes(), true),
                PartType::Binary(b) | PartType::InlineBinary(b) => (b.as_ref(), true),
                PartType::Message(m) => (m.raw_message(), false),
            };
            if !self.one_more(prov, "mail", &mut seen) {
                return;
            }
            let name = part.attachment_name().map(str::to_string);
            let label = match &name {
                Some(n) => format!("part{i}:{}", safe_name(n)),
                None => format!("part{i}"),
            };
            let p = format!("{prov} > mail:{label}");
            if part.is_encoding_problem {
                self.issue(
                    IssueKind::Corrupt,
                    &p,
                    "mail part: undecodable transfer encoding",
                );
            }
            self.total += bytes.len() as u64;
            if part.encoding == mail_parser::Encoding::Base64 && !part.is_encoding_problem {
                decoded.push((part.offset_body as usize, part.offset_end as usize));
            }
            let piece = Bytes::copy_from_slice(bytes);
            let hints = Hints {
                name: name.as_deref(),
                ..Hints::default()
            };
            self.visit(&piece, &p, name.as_deref(), depth + 1, false, &hints);
            if leaf {
                self.uuencoded(bytes, &p, depth + 1);
            }
        }
        if !self.stopped {
            self.swept(raw, prov, depth, &decoded, &mut seen);
        }
    }

    /// Base64 bodies the MIME tree did not reach (see [`b64parts`]).
    fn swept(
        &mut self,
        raw: &[u8],
        prov: &str,
        depth: u32,
        decoded: &[(usize, usize)],
        seen: &mut u32,
    ) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let max = self.limits.max_files as usize;
        let known = |at: usize| decoded.iter().any(|(a, b)| (*a..*b).contains(&at));
        for (n, s) in b64parts::sections(raw, max, cap, &known)
            .into_iter()
            .enumerate()
        {
            if !self.one_more(prov, "mail", seen) {
                return;
            }
            let label = match &s.name {
                Some(name) => format!("base64-{}:{}", n + 1, safe_name(name)),
                None => format!("base64-{}", n + 1),
            };
            let p = format!("{prov} > mail:{label}");
            self.extracted(s.data, &p, s.name.as_deref(), depth + 1, false);
        }
    }

    /// uuencoded files inside a text part.
    fn uuencoded(&mut self, text: &[u8], prov: &str, depth: u32) {
        if memchr::memmem::find(text, b"begin ").is_none() {
            return;
        }
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let files = uuencode::find(text, self.limits.max_files as usize, cap);
        for f in files {
            let p = format!("{prov} > uuencode:{}", safe_name(&f.name));
            if f.cut {
                self.issue(
                    IssueKind::Corrupt,
                    &p,
                    "uuencoded file cut short or over the limit",
                );
            }
            self.total += f.data.len() as u64;
            let hints = Hints {
                name: Some(&f.name),
                ..Hints::default()
            };
            let data = Bytes::from(f.data);
            self.visit(&data, &p, Some(&f.name), depth + 1, f.cut, &hints);
        }
    }

    pub(super) fn binhex(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let Some(f) = binhex::decode(data, cap) else {
            self.issue(IssueKind::Corrupt, prov, "binhex: no readable header");
            return;
        };
        let p = format!("{prov} > binhex:{}", safe_name(&f.name));
        if f.cut {
            self.issue(
                IssueKind::Corrupt,
                &p,
                "binhex: forks cut short or over the limit",
            );
        }
        if !f.resource.is_empty() {
            let rp = format!("{p}:rsrc");
            self.extracted(f.resource, &rp, Some(&f.name), depth + 1, f.cut);
        }
        self.extracted(f.data, &p, Some(&f.name), depth + 1, f.cut);
    }

    pub(super) fn tnef(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let (atts, cut, more) = tnef::attachments(data, self.limits.max_files as usize);
        if more {
            self.issue(
                IssueKind::Limit,
                prov,
                "tnef: more attachments than the limits allow",
            );
        }
        if cut {
            self.issue(
                IssueKind::Corrupt,
                prov,
                "tnef: stream ends inside an attribute",
            );
        }
        for (i, a) in atts.into_iter().enumerate() {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let label = a
                .name
                .clone()
                .unwrap_or_else(|| format!("attachment{}", i + 1));
            let p = format!("{prov} > tnef:{}", safe_name(&label));
            self.extracted(a.data.to_vec(), &p, a.name.as_deref(), depth + 1, false);
        }
    }
}
