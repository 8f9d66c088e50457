//! PROVISIONAL glue until the body processors land.
use super::tx::{Named, Transaction};
use super::vars::val;
use crate::transform::Transform;

pub(crate) fn query_args(q: &[u8], sep: u8, limit: usize) -> (Vec<Named>, bool) {
    let mut out = Vec::new();
    let mut d = Vec::new();
    for part in q.split(|&b| b == sep).filter(|p| !p.is_empty()) {
        if out.len() >= limit {
            return (out, true);
        }
        let (n, v) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        Transform::UrlDecode.apply(n, &mut d);
        let n = val(&d);
        Transform::UrlDecode.apply(v, &mut d);
        out.push((n, val(&d)));
    }
    (out, false)
}

impl Transaction {
    pub(crate) fn parse_body(&mut self, body: &[u8], total: usize) {
        let ct = self
            .data
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
            .map(|(_, v)| v.to_vec())
            .unwrap_or_default();
        let p = self
            .processor
            .or_else(|| super::BodyProcessor::for_content_type(&ct));
        self.data
            .scalars
            .insert("REQUEST_BODY_LENGTH", val(total.to_string().as_bytes()));
        if p == Some(super::BodyProcessor::UrlEncoded) {
            let (a, _) = query_args(body, b'&', 1000);
            self.data.args_post = a;
        }
        if p == Some(super::BodyProcessor::UrlEncoded) || self.force_body_variable {
            self.data.scalars.insert("REQUEST_BODY", val(body));
        }
    }
}
