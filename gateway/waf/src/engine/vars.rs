//! Variables: filling them from the request and response, and reading a rule target's
//! values (`ARGS:id` → the member `id` of `ARGS`, `&ARGS` → the count).

use std::sync::Arc;

use super::settings::Settings;
use super::target::{Select, Target};
use super::tx::{Data, Named, Transaction, Val};

/// Variables that are always present as "0" until something sets them.
const ZERO_FLAGS: &[&str] = &[
    "REQBODY_ERROR",
    "REQBODY_PROCESSOR_ERROR",
    "INBOUND_DATA_ERROR",
    "OUTBOUND_DATA_ERROR",
    "MSC_PCRE_LIMITS_EXCEEDED",
    "MULTIPART_BOUNDARY_QUOTED",
    "MULTIPART_BOUNDARY_WHITESPACE",
    "MULTIPART_CRLF_LF_LINES",
    "MULTIPART_DATA_AFTER",
    "MULTIPART_DATA_BEFORE",
    "MULTIPART_FILE_LIMIT_EXCEEDED",
    "MULTIPART_HEADER_FOLDING",
    "MULTIPART_INVALID_HEADER_FOLDING",
    "MULTIPART_INVALID_PART",
    "MULTIPART_INVALID_QUOTING",
    "MULTIPART_LF_LINE",
    "MULTIPART_MISSING_SEMICOLON",
    "MULTIPART_STRICT_ERROR",
    "MULTIPART_UNMATCHED_BOUNDARY",
];

/// A value a target yields: the variable, the member's name (none for a scalar) and the value.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The variable as the rule names it.
    pub var: &'static str,
    /// The member's name.
    pub key: Key,
    /// The value.
    pub value: Val,
    /// The value's place in the transaction's value memo.
    pub place: Place,
}

/// Where an item's value is in the transaction's value memo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Not looked up yet.
    Unknown,
    /// At this place.
    At(u32),
    /// Not in it: a value made for this read (a count, a computed size), too long, or the
    /// memo is off or full.
    None,
}

/// Where an item's member name is. A rule reads a collection's values hundreds of times per
/// transaction and wants a name only to exclude a member or to name a match, so a member of
/// the request's lists points at its name instead of holding a second reference to it.
#[derive(Debug, Clone)]
pub(crate) enum Key {
    /// A scalar: no name.
    None,
    /// The name is the value (a `…_NAMES` collection).
    Value,
    /// The name of the member at this place (list, index in it) of the collection's lists:
    /// found in constant time, however many members there are.
    Member(super::target::Kind, u8, u32),
    /// A name of its own.
    Own(Val),
}

impl Transaction {
    /// An item's member name (`None` for a scalar).
    pub(crate) fn key_of<'a>(&'a self, item: &'a Item) -> Option<&'a [u8]> {
        match &item.key {
            Key::None => None,
            Key::Value => Some(&item.value),
            Key::Own(k) => Some(k),
            Key::Member(kind, l, i) => {
                let (lists, _) = self.lists(*kind, false)?;
                Some(&lists.get(usize::from(*l))?.get(*i as usize)?.0)
            }
        }
    }

    /// `VAR:name` (or `VAR`), as `MATCHED_VAR_NAME` gives it.
    pub(crate) fn label(&self, item: &Item) -> Val {
        let Some(k) = self.key_of(item) else {
            return val(item.var.as_bytes());
        };
        let mut l = Vec::with_capacity(item.var.len() + 1 + k.len());
        l.extend_from_slice(item.var.as_bytes());
        l.push(b':');
        l.extend_from_slice(k);
        Val::from(l)
    }
}

/// Bytes as a shared value.
pub(crate) fn val(b: &[u8]) -> Val {
    Arc::from(b)
}

impl Data {
    /// Fills the request head's variables.
    pub fn set_request(&mut self, head: &super::RequestHead, s: &Settings) {
        let zero = val(b"0");
        for f in ZERO_FLAGS {
            self.scalars.insert(f, zero.clone());
        }
        let uri = head.uri.as_slice();
        let local = strip_authority(uri);
        let (path, query) = match local.iter().position(|&b| b == b'?') {
            Some(q) => (&local[..q], &local[q + 1..]),
            None => (local, &b""[..]),
        };
        let mut line = format!("{} ", head.method).into_bytes();
        line.extend_from_slice(uri);
        line.extend_from_slice(format!(" {}", head.protocol).as_bytes());
        let base = path
            .iter()
            .rposition(|&b| b == b'/' || b == b'\\')
            .map_or(path, |i| &path[i + 1..]);
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (k, v) in [
            ("REQUEST_LINE", &line[..]),
            ("REQUEST_METHOD", head.method.as_bytes()),
            ("REQUEST_PROTOCOL", head.protocol.as_bytes()),
            ("REQUEST_URI_RAW", uri),
            ("REQUEST_URI", local),
            ("REQUEST_FILENAME", &percent_decoded(path)),
            ("REQUEST_BASENAME", &percent_decoded(base)),
            ("REQBODY_PROCESSOR", b""),
            ("QUERY_STRING", query),
            ("REMOTE_ADDR", head.remote_addr.as_bytes()),
            ("REMOTE_PORT", head.remote_port.to_string().as_bytes()),
            ("SERVER_ADDR", head.server_addr.as_bytes()),
            ("SERVER_PORT", head.server_port.to_string().as_bytes()),
            ("UNIQUE_ID", head.unique_id.as_bytes()),
            ("REQUEST_BODY_LENGTH", b"0"),
            ("TIME_EPOCH", epoch.to_string().as_bytes()),
        ] {
            self.scalars.insert(k, val(v));
        }
        for (n, v) in merged_headers(&head.headers) {
            self.headers.push((val(&n), val(&v)));
            if n.eq_ignore_ascii_case(b"cookie") {
                self.cookies.extend(cookies(&v));
            }
            if n.eq_ignore_ascii_case(b"host") {
                let host = v.split(|&b| b == b':').next().unwrap_or_default();
                self.scalars.insert("SERVER_NAME", val(host));
            }
        }
        self.args_get = super::reqbody::query_args(query, s.argument_separator, &mut self.args);
        if s.decoding.base64 {
            let from = self
                .args_get
                .iter()
                .chain(&self.cookies)
                .chain(&self.headers);
            super::decode::decode_into(from, &mut self.decoded);
        }
    }

    /// Fills the response head's variables.
    pub fn set_response(&mut self, status: u16, protocol: &str, headers: &[(Vec<u8>, Vec<u8>)]) {
        let sc = &mut self.scalars;
        sc.insert("RESPONSE_STATUS", val(status.to_string().as_bytes()));
        sc.insert("RESPONSE_PROTOCOL", val(protocol.as_bytes()));
        for (n, v) in headers {
            if n.eq_ignore_ascii_case(b"content-type") {
                sc.insert("RESPONSE_CONTENT_TYPE", val(v));
            }
            if n.eq_ignore_ascii_case(b"content-length") {
                sc.insert("RESPONSE_CONTENT_LENGTH", val(v));
            }
        }
        self.response_headers = headers.iter().map(|(n, v)| (val(n), val(v))).collect();
    }
}

/// Header fields as Apache hands them to ModSecurity 2: repeated fields merged into one,
/// their values joined with `, ` (Cookie with `; `), in the order of first appearance.
fn merged_headers(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(headers.len());
    // Index by lower-cased name: linear in the header count, however many a client sends.
    let mut seen: std::collections::HashMap<Vec<u8>, usize> = Default::default();
    for (n, v) in headers {
        match seen.get(&n.to_ascii_lowercase()) {
            Some(&i) => {
                let sep: &[u8] = if n.eq_ignore_ascii_case(b"cookie") {
                    b"; "
                } else {
                    b", "
                };
                out[i].1.extend_from_slice(sep);
                out[i].1.extend_from_slice(v);
            }
            None => {
                seen.insert(n.to_ascii_lowercase(), out.len());
                out.push((n.clone(), v.clone()));
            }
        }
    }
    out
}

/// `%HH` decoded (not `+`), as Apache decodes the path before ModSecurity sees
/// `REQUEST_FILENAME`; invalid escapes stay as written.
fn percent_decoded(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex(path[i + 1]), hex(path[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(path[i]);
        i += 1;
    }
    out
}

/// `/path?q` of a request target (an absolute URI loses its scheme and authority).
fn strip_authority(uri: &[u8]) -> &[u8] {
    let Some(i) = memchr::memmem::find(uri, b"://") else {
        return uri;
    };
    if uri[..i].iter().any(|b| !b.is_ascii_alphanumeric()) {
        return uri;
    }
    let rest = &uri[i + 3..];
    match rest.iter().position(|&b| b == b'/' || b == b'?') {
        Some(p) => &rest[p..],
        None => b"/",
    }
}

/// `Cookie: a=1; b=2` as ModSecurity 2 (version 0 cookies): `;`-separated, leading
/// whitespace trimmed, a name without `=` has an empty value.
fn cookies(v: &[u8]) -> Vec<Named> {
    v.split(|&b| b == b';')
        .map(|p| {
            let p = p.trim_ascii_start();
            match p.iter().position(|&b| b == b'=') {
                Some(e) => (val(&p[..e]), val(&p[e + 1..])),
                None => (val(p), val(b"")),
            }
        })
        .filter(|(n, v)| !n.is_empty() || !v.is_empty())
        .collect()
}

impl Transaction {
    /// The values a target yields (before exclusions).
    pub(crate) fn values(&self, t: &Target, out: &mut Vec<Item>) {
        self.values_skipping(t, out, None);
    }

    /// The values a target yields (before exclusions), without the members of the request's
    /// and response's lists the link of memo slot `skip` is known not to match.
    pub(crate) fn values_skipping(&self, t: &Target, out: &mut Vec<Item>, skip: Option<u32>) {
        let start = out.len();
        self.members(t, out, skip);
        if t.count {
            let n = out.len() - start;
            out.truncate(start);
            out.push(Item {
                var: t.var,
                key: Key::None,
                value: val(n.to_string().as_bytes()),
                place: Place::None,
            });
        }
    }

    /// The lists behind a collection kind, and whether it yields member names. `ARGS` holds
    /// the decoded values (`[waf] decode`) too, except for a count (`&ARGS`: what the client
    /// sent, as `tx.max_num_args` limits it).
    pub(crate) fn lists(
        &self,
        kind: super::target::Kind,
        count: bool,
    ) -> Option<([&[Named]; 4], bool)> {
        use super::target::Kind as K;
        let d = &self.data;
        let decoded: &[Named] = if count { &[] } else { &d.decoded };
        match kind {
            K::Args => Some(([&d.args_get, &d.args_post, &d.args_json, decoded], false)),
            K::ArgsNames => Some(([&d.args_get, &d.args_post, &d.args_json, &[]], true)),
            K::ArgsGet => one(&d.args_get, false),
            K::ArgsPost => one(&d.args_post, false),
            K::ArgsGetNames => one(&d.args_get, true),
            K::ArgsPostNames => one(&d.args_post, true),
            K::Headers => one(&d.headers, false),
            K::HeaderNames => one(&d.headers, true),
            K::Cookies => one(&d.cookies, false),
            K::CookieNames => one(&d.cookies, true),
            K::ResponseHeaders => one(&d.response_headers, false),
            K::ResponseHeaderNames => one(&d.response_headers, true),
            K::Files => one(&d.files, false),
            K::FileNames => one(&d.files, true),
            K::FilesSizes => one(&d.files_sizes, false),
            K::FilesContent => one(&d.files_content, false),
            K::PartHeaders => one(&d.part_headers, false),
            K::MatchedVars => one(&self.matched_vars, false),
            K::MatchedVarsNames => one(&self.matched_vars, true),
            _ => None,
        }
    }

    fn members(&self, t: &Target, out: &mut Vec<Item>, skip: Option<u32>) {
        let var = t.var;
        if let Some((lists, names)) = self.lists(t.kind, t.count) {
            let members = lists
                .iter()
                .enumerate()
                .flat_map(|(l, list)| list.iter().enumerate().map(move |(i, m)| (l, i, m)));
            for (l, i, (n, v)) in members {
                if !t.selects(n) {
                    continue;
                }
                let value = if names { n } else { v };
                let place = match skip {
                    Some(slot) => {
                        match self.memo.borrow_mut().known_at(&self.waf.memo, value, slot) {
                            Err(()) => continue,
                            Ok(Some(p)) => Place::At(p),
                            Ok(None) => Place::None,
                        }
                    }
                    None => Place::Unknown,
                };
                let key = match names {
                    true => Key::Value,
                    false => Key::Member(t.kind, l as u8, i as u32),
                };
                out.push(Item {
                    var,
                    key,
                    value: value.clone(),
                    place,
                });
            }
            return;
        }
        let d = &self.data;
        use super::target::Kind as K;
        match t.kind {
            K::MatchedVar => out.push(Item {
                var,
                key: Key::None,
                value: self.matched_var.1.clone(),
                place: Place::Unknown,
            }),
            K::MatchedVarName => out.push(Item {
                var,
                key: Key::None,
                value: self.matched_var.0.clone(),
                place: Place::Unknown,
            }),
            K::Xml => self.xml(t, out),
            K::ArgsCombinedSize => {
                let n: usize = [&d.args_get, &d.args_post, &d.args_json]
                    .iter()
                    .flat_map(|l| l.iter())
                    .map(|(n, v)| n.len() + v.len())
                    .sum();
                out.push(scalar(var, n));
            }
            K::FilesCombinedSize => {
                let n: usize = d
                    .files_sizes
                    .iter()
                    .filter_map(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
                    .sum();
                out.push(scalar(var, n));
            }
            K::HighestSeverity => {
                let h = self.matched.iter().filter_map(|m| m.severity).min();
                out.push(scalar(var, h.map_or(255, usize::from)));
            }
            K::Other => self.collection_or_scalar(t, out),
            // The collections `lists` knows were read above.
            _ => {}
        }
    }

    fn xml(&self, t: &Target, out: &mut Vec<Item>) {
        let (items, key) = match &t.select {
            Select::Name(x) if x.trim() == "/*" => (&self.data.xml_text, x),
            Select::Name(x) if x.trim() == "//@*" => (&self.data.xml_attrs, x),
            _ => return,
        };
        let key = val(key.as_bytes());
        out.extend(items.iter().map(|v| Item {
            var: t.var,
            key: Key::Own(key.clone()),
            value: v.clone(),
            place: Place::Unknown,
        }));
    }

    fn collection_or_scalar(&self, t: &Target, out: &mut Vec<Item>) {
        let var = t.var;
        let Some(col) = self.cols.get(var) else {
            if let Some(v) = self.data.scalars.at(t.index) {
                out.push(Item {
                    var,
                    key: Key::None,
                    value: v.clone(),
                    place: Place::Unknown,
                });
            }
            return;
        };
        if let (Select::Name(n), Some(key)) = (&t.select, &t.key) {
            // Keys are stored lower case, as names in targets are.
            if let Some(v) = col.get(n.as_str()) {
                out.push(Item {
                    var,
                    key: Key::Own(key.clone()),
                    value: v.clone(),
                    place: Place::Unknown,
                });
            }
            return;
        }
        let mut found: Vec<(&std::sync::Arc<str>, &Val)> = col
            .iter()
            .filter(|(k, _)| t.selects(k.as_bytes()))
            .collect();
        // In name order, as reads of several members give them.
        found.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.extend(found.into_iter().map(|(k, v)| Item {
            var,
            key: Key::Own(Val::from(std::sync::Arc::clone(k))),
            value: v.clone(),
            place: Place::Unknown,
        }));
    }
}

/// A collection of one list.
fn one(l: &[Named], names: bool) -> Option<([&[Named]; 4], bool)> {
    Some(([l, &[], &[], &[]], names))
}

fn scalar(var: &'static str, n: usize) -> Item {
    Item {
        var,
        key: Key::None,
        value: val(n.to_string().as_bytes()),
        place: Place::None,
    }
}
