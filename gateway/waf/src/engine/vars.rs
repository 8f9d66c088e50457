//! Variables: filling them from the request and response, and reading a rule target's
//! values (`ARGS:id` → `[("ARGS:id", "5")]`, `&ARGS` → the count).

use super::settings::Settings;
use super::target::{Select, Target};
use super::tx::{Data, Named, Transaction};

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

impl Data {
    /// Fills the request head's variables.
    pub fn set_request(&mut self, head: &super::RequestHead, s: &Settings) {
        let sc = &mut self.scalars;
        for f in ZERO_FLAGS {
            sc.insert(f, b"0".to_vec());
        }
        let uri = head.uri.as_slice();
        let local = strip_authority(uri);
        let (path, query) = match local.iter().position(|&b| b == b'?') {
            Some(q) => (&local[..q], Some(&local[q + 1..])),
            None => (local, None),
        };
        let mut line = format!("{} ", head.method).into_bytes();
        line.extend_from_slice(uri);
        line.extend_from_slice(format!(" {}", head.protocol).as_bytes());
        sc.insert("REQUEST_LINE", line);
        sc.insert("REQUEST_METHOD", head.method.as_bytes().to_vec());
        sc.insert("REQUEST_PROTOCOL", head.protocol.as_bytes().to_vec());
        sc.insert("REQUEST_URI_RAW", uri.to_vec());
        sc.insert("REQUEST_URI", local.to_vec());
        sc.insert("REQUEST_FILENAME", path.to_vec());
        let base = path
            .iter()
            .rposition(|&b| b == b'/' || b == b'\\')
            .map_or(path, |i| &path[i + 1..]);
        sc.insert("REQUEST_BASENAME", base.to_vec());
        sc.insert("QUERY_STRING", query.unwrap_or_default().to_vec());
        sc.insert("REMOTE_ADDR", head.remote_addr.as_bytes().to_vec());
        sc.insert("REMOTE_PORT", head.remote_port.to_string().into_bytes());
        sc.insert("SERVER_ADDR", head.server_addr.as_bytes().to_vec());
        sc.insert("SERVER_PORT", head.server_port.to_string().into_bytes());
        sc.insert("UNIQUE_ID", head.unique_id.as_bytes().to_vec());
        sc.insert("REQUEST_BODY_LENGTH", b"0".to_vec());
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        sc.insert("TIME_EPOCH", epoch.to_string().into_bytes());
        self.headers = head.headers.clone();
        for (n, v) in &head.headers {
            if n.eq_ignore_ascii_case(b"cookie") {
                self.cookies.extend(cookies(v));
            }
            if n.eq_ignore_ascii_case(b"host") {
                let host = v.split(|&b| b == b':').next().unwrap_or_default();
                self.scalars.insert("SERVER_NAME", host.to_vec());
            }
        }
        let (args, _) = super::reqbody::query_args(
            query.unwrap_or_default(),
            s.argument_separator,
            s.arguments_limit,
        );
        self.args_get = args;
    }

    /// Fills the response head's variables.
    pub fn set_response(&mut self, status: u16, protocol: &str, headers: &[Named]) {
        let sc = &mut self.scalars;
        sc.insert("RESPONSE_STATUS", status.to_string().into_bytes());
        sc.insert("RESPONSE_PROTOCOL", protocol.as_bytes().to_vec());
        for (n, v) in headers {
            if n.eq_ignore_ascii_case(b"content-type") {
                sc.insert("RESPONSE_CONTENT_TYPE", v.clone());
            }
            if n.eq_ignore_ascii_case(b"content-length") {
                sc.insert("RESPONSE_CONTENT_LENGTH", v.clone());
            }
        }
        self.response_headers = headers.to_vec();
    }
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
                Some(e) => (p[..e].to_vec(), p[e + 1..].to_vec()),
                None => (p.to_vec(), Vec::new()),
            }
        })
        .filter(|(n, v)| !n.is_empty() || !v.is_empty())
        .collect()
}

impl Transaction {
    /// The values a target yields (before exclusions), as `(name, value)`.
    pub(crate) fn values(&self, t: &Target, out: &mut Vec<Named>) {
        let start = out.len();
        self.members(t, out);
        if t.count {
            let n = out.len() - start;
            out.truncate(start);
            out.push((
                format!("&{}", t.var).into_bytes(),
                n.to_string().into_bytes(),
            ));
        }
    }

    fn members(&self, t: &Target, out: &mut Vec<Named>) {
        let d = &self.data;
        let var = t.var.as_str();
        let list = |items: &[&[Named]], names: bool, out: &mut Vec<Named>| {
            for (n, v) in items.iter().flat_map(|l| l.iter()) {
                if t.selects(n) {
                    let value = if names { n.clone() } else { v.clone() };
                    out.push((label(var, n), value));
                }
            }
        };
        match var {
            "ARGS" => list(&[&d.args_get, &d.args_post], false, out),
            "ARGS_GET" => list(&[&d.args_get], false, out),
            "ARGS_POST" => list(&[&d.args_post], false, out),
            "ARGS_NAMES" => list(&[&d.args_get, &d.args_post], true, out),
            "ARGS_GET_NAMES" => list(&[&d.args_get], true, out),
            "ARGS_POST_NAMES" => list(&[&d.args_post], true, out),
            "REQUEST_HEADERS" => list(&[&d.headers], false, out),
            "REQUEST_HEADERS_NAMES" => list(&[&d.headers], true, out),
            "REQUEST_COOKIES" => list(&[&d.cookies], false, out),
            "REQUEST_COOKIES_NAMES" => list(&[&d.cookies], true, out),
            "RESPONSE_HEADERS" => list(&[&d.response_headers], false, out),
            "RESPONSE_HEADERS_NAMES" => list(&[&d.response_headers], true, out),
            "FILES" | "MULTIPART_FILENAME" => list(&[&d.files], false, out),
            "FILES_NAMES" | "MULTIPART_NAME" => list(&[&d.files], true, out),
            "FILES_SIZES" => list(&[&d.files_sizes], false, out),
            "FILES_TMP_CONTENT" => list(&[&d.files_content], false, out),
            "MULTIPART_PART_HEADERS" => list(&[&d.part_headers], false, out),
            "MATCHED_VARS" => list(&[&self.matched_vars], false, out),
            "MATCHED_VARS_NAMES" => list(&[&self.matched_vars], true, out),
            "MATCHED_VAR" => out.push((b"MATCHED_VAR".to_vec(), self.matched_var.1.clone())),
            "MATCHED_VAR_NAME" => {
                out.push((b"MATCHED_VAR_NAME".to_vec(), self.matched_var.0.clone()))
            }
            "XML" => self.xml(t, out),
            "ARGS_COMBINED_SIZE" => {
                let n: usize = [&d.args_get, &d.args_post]
                    .iter()
                    .flat_map(|l| l.iter())
                    .map(|(n, v)| n.len() + v.len())
                    .sum();
                out.push((var.as_bytes().to_vec(), n.to_string().into_bytes()));
            }
            "FILES_COMBINED_SIZE" => {
                let n: usize = d
                    .files_sizes
                    .iter()
                    .filter_map(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
                    .sum();
                out.push((var.as_bytes().to_vec(), n.to_string().into_bytes()));
            }
            "HIGHEST_SEVERITY" => {
                let h = self.matched.iter().filter_map(|m| m.severity).min();
                let v = h.map_or(255, u16::from).to_string();
                out.push((var.as_bytes().to_vec(), v.into_bytes()));
            }
            _ => self.collection_or_scalar(t, out),
        }
    }

    fn xml(&self, t: &Target, out: &mut Vec<Named>) {
        let items = match &t.select {
            Select::Name(x) if x.trim() == "/*" => &self.data.xml_text,
            Select::Name(x) if x.trim() == "//@*" => &self.data.xml_attrs,
            _ => return,
        };
        let name = match &t.select {
            Select::Name(x) => format!("XML:{x}").into_bytes(),
            _ => b"XML".to_vec(),
        };
        out.extend(items.iter().map(|v| (name.clone(), v.clone())));
    }

    fn collection_or_scalar(&self, t: &Target, out: &mut Vec<Named>) {
        let var = t.var.as_str();
        if let Some(col) = self.cols.get(var) {
            for (k, v) in col {
                if t.selects(k.as_bytes()) {
                    out.push((label(var, k.as_bytes()), v.clone()));
                }
            }
        } else if let Some(v) = self.data.scalars.get(var) {
            out.push((var.as_bytes().to_vec(), v.clone()));
        }
    }
}

/// `VAR:name`.
fn label(var: &str, name: &[u8]) -> Vec<u8> {
    let mut l = Vec::with_capacity(var.len() + 1 + name.len());
    l.extend_from_slice(var.as_bytes());
    l.push(b':');
    l.extend_from_slice(name);
    l
}
