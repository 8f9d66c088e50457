//! MIME multipart bodies: form uploads, and multipart/related (MTOM/XOP) packages whose root
//! SOAP part refers to the other parts by `cid:`.

use std::collections::HashMap;

use bytes::Bytes;

use super::{param, safe_name, Control, Hints, IssueKind, Piece, Walker};

impl Walker<'_> {
    pub(super) fn multipart(
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
}

/// `multipart/related; boundary=…` for data that starts like a MIME multipart body.
pub(super) fn sniff_multipart(data: &[u8]) -> Option<String> {
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
