//! The raw request bytes of a stage, built as go-ftw builds them (ftwhttp/request.go): request
//! line, headers in order, and with `autocomplete_headers` (the default) a form Content-Type
//! for data, form data percent-encoded pair by pair when not already encoded, LF → CRLF in
//! multipart bodies, `Connection: close`, and a Content-Length.

use base64::Engine as _;

use crate::model::Input;
use crate::template;

/// A header, name and value as written.
pub type Header = (String, String);

/// The bytes to send for `input`, or why they cannot be built.
pub fn build(input: &Input) -> Result<Vec<u8>, String> {
    if let Some(raw) = input.encoded_request.as_deref().filter(|r| !r.is_empty()) {
        return base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map_err(|e| format!("encoded_request: {e}"));
    }
    if let Some(p) = input
        .protocol
        .as_deref()
        .filter(|p| !p.eq_ignore_ascii_case("http"))
    {
        return Err(format!("protocol {p:?}: the listener is plain HTTP"));
    }
    let method = input.method.as_deref().unwrap_or("GET");
    let line = format!(
        "{} {} {}\r\n",
        method,
        input.uri.as_deref().unwrap_or("/"),
        input.version.as_deref().unwrap_or("HTTP/1.1")
    );
    let mut headers = headers(input);
    let mut data = data(input)?;
    let auto = autocomplete(input);
    if auto && !data.is_empty() {
        if !has(&headers, "Content-Type") {
            headers.push(("Content-Type".into(), FORM.into()));
        }
        data = encode_form(&headers, data);
    }
    if headers
        .iter()
        .any(|(n, v)| same(n, "Content-Type") && v.to_lowercase().contains("multipart/form-data;"))
    {
        data = lf_to_crlf(&data);
    }
    if auto {
        standard_headers(&mut headers, method, data.len());
    }
    let mut out = line.into_bytes();
    for (n, v) in &headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&data);
    Ok(out)
}

const FORM: &str = "application/x-www-form-urlencoded";

/// `ordered_headers` as given, else `headers` sorted by name (a null value is empty).
pub fn headers(input: &Input) -> Vec<Header> {
    if let Some(o) = &input.ordered_headers {
        return o
            .iter()
            .map(|h| (h.name.clone(), h.value.clone().unwrap_or_default()))
            .collect();
    }
    input
        .headers
        .iter()
        .flatten()
        .map(|(n, v)| (n.clone(), v.clone().unwrap_or_default()))
        .collect()
}

/// `autocomplete_headers`, else the inverse of `stop_magic`, else true.
fn autocomplete(input: &Input) -> bool {
    match (input.autocomplete_headers, input.stop_magic) {
        (Some(a), _) => a,
        (None, Some(s)) => !s,
        (None, None) => true,
    }
}

/// `data` with its templates expanded, else `encoded_data` decoded, else nothing.
fn data(input: &Input) -> Result<Vec<u8>, String> {
    if let Some(d) = &input.data {
        return template::expand(d).map(String::into_bytes);
    }
    match &input.encoded_data {
        Some(e) => base64::engine::general_purpose::STANDARD
            .decode(e.trim())
            .map_err(|e| format!("encoded_data: {e}")),
        None => Ok(Vec::new()),
    }
}

/// `Connection: close` unless a Connection header is there; a Content-Length unless one is
/// there, when there is data or the method matches go-ftw's `^POST|PUT|PATCH|DELETE$` (which
/// is: starts with POST, or contains PUT or PATCH, or ends with DELETE).
fn standard_headers(headers: &mut Vec<Header>, method: &str, len: usize) {
    if !has(headers, "Connection") {
        headers.push(("Connection".into(), "close".into()));
    }
    if has(headers, "Content-Length") {
        return;
    }
    let body_method = method.starts_with("POST")
        || method.contains("PUT")
        || method.contains("PATCH")
        || method.ends_with("DELETE");
    if len > 0 || body_method {
        headers.push(("Content-Length".into(), len.to_string()));
    }
}

/// Whether a header of that name is there (names compared in canonical MIME form).
pub fn has(headers: &[Header], name: &str) -> bool {
    headers.iter().any(|(n, _)| same(n, name))
}

fn same(a: &str, b: &str) -> bool {
    canonical(a) == canonical(b)
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: `content-type` → `Content-Type`; a name with a
/// byte that is not a token character is left as it is.
pub fn canonical(name: &str) -> String {
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if !name.bytes().all(token) {
        return name.to_string();
    }
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// Form data (Content-Type exactly the form type, any case) that percent-decoding would not
/// change (no `%`, no `+`) is encoded pair by pair with Go's `url.QueryEscape`.
fn encode_form(headers: &[Header], data: Vec<u8>) -> Vec<u8> {
    let form = headers
        .iter()
        .any(|(n, v)| same(n, "Content-Type") && v.eq_ignore_ascii_case(FORM));
    if !form || data.contains(&b'%') || data.contains(&b'+') {
        return data;
    }
    let mut out = Vec::with_capacity(data.len() * 3);
    for token in data.split(|&b| b == b'&') {
        match token.iter().position(|&b| b == b'=') {
            None => query_escape(token, &mut out),
            Some(eq) => {
                query_escape(&token[..eq], &mut out);
                out.push(b'=');
                query_escape(&token[eq + 1..], &mut out);
            }
        }
        out.push(b'&');
    }
    out.pop();
    out
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space becomes `+`, the rest `%XX`.
fn query_escape(s: &[u8], out: &mut Vec<u8>) {
    for &b in s {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
}

/// Every LF becomes CRLF (an existing CRLF becomes CR CR LF, as in go-ftw).
fn lf_to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 8);
    for &b in data {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TestFile;

    fn input(yaml: &str) -> Input {
        let f: TestFile = serde_yaml_ng::from_str(yaml).unwrap();
        f.tests
            .into_iter()
            .next()
            .unwrap()
            .stages
            .into_iter()
            .next()
            .unwrap()
            .input
    }

    #[test]
    fn form_data_is_encoded_and_completed() {
        let i = input(
            "tests:\n- stages:\n  - input:\n      method: POST\n      uri: /post\n      headers:\n        User-Agent: a\n        Host: localhost\n      data: \"var=1234 OR 1=1&x=<a>=&y\"\n",
        );
        let raw = String::from_utf8(build(&i).unwrap()).unwrap();
        assert_eq!(
            raw,
            "POST /post HTTP/1.1\r\nHost: localhost\r\nUser-Agent: a\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\
             Content-Length: 32\r\n\r\nvar=1234+OR+1%3D1&x=%3Ca%3E%3D&y"
        );
    }

    #[test]
    fn already_encoded_data_and_no_autocomplete_are_sent_as_written() {
        let i = input(
            "tests:\n- stages:\n  - input:\n      method: POST\n      autocomplete_headers: false\n      headers:\n        Host: h\n      data: \"x=new %20$\"\n",
        );
        let raw = String::from_utf8(build(&i).unwrap()).unwrap();
        assert_eq!(raw, "POST / HTTP/1.1\r\nHost: h\r\n\r\nx=new %20$");
        let j = input(
            "tests:\n- stages:\n  - input:\n      method: POST\n      headers:\n        Host: h\n      data: \"a=b+c\"\n",
        );
        let raw = String::from_utf8(build(&j).unwrap()).unwrap();
        assert!(raw.ends_with("Content-Length: 5\r\n\r\na=b+c"), "{raw}");
    }

    #[test]
    fn multipart_lines_end_in_crlf_and_get_without_data_has_no_length() {
        let i = input(
            "tests:\n- stages:\n  - input:\n      method: POST\n      headers:\n        content-type: \"multipart/form-data; boundary=b\"\n      data: \"--b\\nx\\r\\n--b--\\n\"\n",
        );
        let raw = String::from_utf8(build(&i).unwrap()).unwrap();
        assert!(
            raw.ends_with("Content-Length: 16\r\n\r\n--b\r\nx\r\r\n--b--\r\n"),
            "{raw:?}"
        );
        let g = input("tests:\n- stages:\n  - input:\n      headers:\n        Host: h\n");
        let raw = String::from_utf8(build(&g).unwrap()).unwrap();
        assert_eq!(
            raw,
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn encoded_request_is_sent_as_it_is() {
        let i = input(
            "tests:\n- stages:\n  - input:\n      encoded_request: \"R0VUIC8gSFRUUC8xLjANCkhvc3Q6DQoNCg==\"\n",
        );
        assert_eq!(build(&i).unwrap(), b"GET / HTTP/1.0\r\nHost:\r\n\r\n");
    }

    #[test]
    fn canonical_names_follow_go() {
        assert_eq!(canonical("content-TYPE"), "Content-Type");
        assert_eq!(canonical("x y"), "x y");
    }
}
