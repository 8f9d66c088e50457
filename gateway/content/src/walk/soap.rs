//! SOAP envelopes carrying IHE XDS.b `Document` elements, inline base64 or `xop:Include`
//! references into an MTOM package.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use super::{percent_decode, safe_name, Hints, IssueKind, Walker};

const XDS_NS: &[u8] = b"urn:ihe:iti:xds-b:2007";
const XOP_NS: &[u8] = b"http://www.w3.org/2004/08/xop/include";

impl Walker<'_> {
    /// SOAP with IHE XDS.b `Document` elements: inline base64 or `xop:Include` into `cids`.
    /// Returns the content ids it resolved.
    pub(super) fn soap(
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

/// XML that may carry IHE documents: by content type, or an XML start with the XDS namespace.
pub(super) fn looks_like_soap(data: &[u8], ctype: Option<&str>) -> bool {
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
