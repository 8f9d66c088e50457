//! The request body through the body processor the rules or the `Content-Type` chose
//! (`crate::body`), into the variables: `ARGS_POST`, JSON arguments, `FILES*`,
//! `MULTIPART_*`, `XML`, `REQUEST_BODY` and the `REQBODY_ERROR` family, as ModSecurity 2 sets
//! them.

use super::settings::BodyProcessor;
use super::tx::{Data, Named, Transaction};
use super::vars::val;
use crate::body::{self, ArgList, ArgOrigin, Limits};

/// Arguments of one origin as variable members.
fn of_origin(list: &ArgList, origin: ArgOrigin) -> Vec<Named> {
    list.of_origin(origin)
        .map(|a| (val(&a.name), val(&a.value)))
        .collect()
}

/// `ARGS_GET` from the query string; the list keeps counting toward `SecArgumentsLimit` for
/// the body.
pub(crate) fn query_args(query: &[u8], sep: u8, list: &mut ArgList) -> Vec<Named> {
    body::query_string(query, sep, list);
    of_origin(list, ArgOrigin::QueryString)
}

impl Data {
    fn flag(&mut self, name: &'static str, on: bool) {
        self.scalars.insert(name, val(if on { b"1" } else { b"0" }));
    }

    fn body_error(&mut self, msg: &str) {
        self.flag("REQBODY_ERROR", true);
        self.flag("REQBODY_PROCESSOR_ERROR", true);
        self.scalars
            .insert("REQBODY_ERROR_MSG", val(msg.as_bytes()));
        self.scalars
            .insert("REQBODY_PROCESSOR_ERROR_MSG", val(msg.as_bytes()));
    }

    fn multipart(&mut self, m: &body::Multipart) {
        let f = &m.flags;
        for (name, on) in [
            ("MULTIPART_BOUNDARY_QUOTED", f.boundary_quoted),
            ("MULTIPART_BOUNDARY_WHITESPACE", f.boundary_whitespace),
            ("MULTIPART_DATA_BEFORE", f.data_before),
            ("MULTIPART_DATA_AFTER", f.data_after),
            ("MULTIPART_HEADER_FOLDING", f.header_folding),
            ("MULTIPART_LF_LINE", f.lf_line),
            ("MULTIPART_MISSING_SEMICOLON", f.missing_semicolon),
            ("MULTIPART_INVALID_QUOTING", f.invalid_quoting),
            ("MULTIPART_INVALID_PART", f.invalid_part),
            ("MULTIPART_INVALID_HEADER_FOLDING", f.invalid_header_folding),
            ("MULTIPART_FILE_LIMIT_EXCEEDED", f.file_limit_exceeded),
            ("MULTIPART_UNMATCHED_BOUNDARY", f.unmatched_boundary),
            ("MULTIPART_STRICT_ERROR", f.strict_error()),
            ("MULTIPART_CRLF_LF_LINES", f.crlf_lf_lines()),
        ] {
            self.flag(name, on);
        }
        for (part, file) in m.files() {
            let name = val(&part.name);
            self.files.push((name.clone(), val(&file.filename)));
            self.files_sizes
                .push((name.clone(), val(file.size.to_string().as_bytes())));
        }
        self.part_headers = m
            .part_headers()
            .map(|(n, line)| (val(n), val(line)))
            .collect();
        if let Some(n) = &m.last_name {
            self.scalars.insert("MULTIPART_NAME", val(n));
        }
        if let Some(n) = &m.last_filename {
            self.scalars.insert("MULTIPART_FILENAME", val(n));
        }
        if let Some(e) = &m.error {
            self.body_error(e);
        }
    }
}

impl Transaction {
    /// Sets `REQBODY_PROCESSOR` from the `Content-Type` before phase 1 (as ModSecurity 2 does
    /// when the transaction starts; JSON and XML as its recommended configuration's rules
    /// 200000 and 200001 would in phase 1).
    pub(crate) fn initial_processor(&mut self) {
        if let Some(p) = self.processor_for() {
            self.data
                .scalars
                .insert("REQBODY_PROCESSOR", val(p.name().as_bytes()));
        }
    }

    /// The processor for this request: a `ctl:requestBodyProcessor`, else by `Content-Type`.
    fn processor_for(&self) -> Option<BodyProcessor> {
        self.processor.or_else(|| {
            self.data
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
                .and_then(|(_, v)| BodyProcessor::for_content_type(v))
        })
    }

    fn content_type(&self) -> Vec<u8> {
        self.data
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
            .map(|(_, v)| v.to_vec())
            .unwrap_or_default()
    }

    /// Parses `body` (the bytes within the limit) into the variables.
    pub(crate) fn parse_body(&mut self, body: &[u8], total: usize) {
        let waf = std::sync::Arc::clone(&self.waf);
        let s = &waf.settings;
        let proc = self.processor_for();
        let d = &mut self.data;
        d.scalars.insert(
            "REQBODY_PROCESSOR",
            val(proc.map_or(&b""[..], |p| p.name().as_bytes())),
        );
        d.scalars
            .insert("REQUEST_BODY_LENGTH", val(total.to_string().as_bytes()));
        if let Some(p) = proc {
            d.scalars
                .insert("REQBODY_PROCESSOR", val(p.name().as_bytes()));
        }
        if proc == Some(BodyProcessor::UrlEncoded) || self.force_body_variable {
            d.scalars.insert("REQUEST_BODY", val(body));
        }
        if d.args.limit_exceeded() {
            // The query string alone filled SecArgumentsLimit: the body is not parsed.
            d.body_error(body::ARGUMENTS_LIMIT_MSG);
            return;
        }
        let limits = Limits {
            max_args: s.arguments_limit,
            json_max_depth: s.json_depth_limit,
            upload_file_limit: s.upload_file_limit,
            ..Limits::default()
        };
        let ct = self.content_type();
        let d = &mut self.data;
        match proc {
            Some(BodyProcessor::UrlEncoded) => {
                let u = body::urlencoded(body, s.argument_separator, ArgOrigin::Body, &mut d.args);
                d.flag("URLENCODED_ERROR", u.invalid_escapes > 0);
            }
            Some(BodyProcessor::Multipart) => {
                let m = body::multipart(&ct, body, &limits, &mut d.args);
                d.multipart(&m);
            }
            Some(BodyProcessor::Json) => {
                if let Some(e) = body::json(body, &limits, &mut d.args) {
                    d.body_error(&e);
                }
            }
            Some(BodyProcessor::Xml) => {
                let x = body::xml(body, &limits);
                if let Some(doc) = &x.doc {
                    d.xml_text = vec![val(&doc.root_text)];
                    d.xml_attrs = doc.attributes.iter().map(|a| val(a)).collect();
                }
                if let Some(e) = &x.error {
                    d.body_error(e);
                }
            }
            None => {}
        }
        if d.args.limit_exceeded()
            && d.scalars
                .get("REQBODY_ERROR")
                .is_some_and(|v| &v[..] == b"0")
        {
            d.body_error(body::ARGUMENTS_LIMIT_MSG);
        }
        d.args_post = of_origin(&d.args, ArgOrigin::Body);
        d.args_json = of_origin(&d.args, ArgOrigin::Json);
        if s.decoding.base64 {
            let from = d.args_post.iter().chain(&d.args_json);
            super::decode::decode_into(from, &mut d.decoded);
        }
    }
}
