//! XML bodies reduced to what CRS reads from them, as ModSecurity v2 gets it from libxml2
//! (apache2/msc_xml.c, `var_xml_generate` in apache2/re_variables.c): `XML:/*` is the document
//! element's `xmlNodeGetContent`, all its descendant text and CDATA in order; `XML://@*` is every
//! attribute value in document order (namespace declarations are not attributes). No DTD is
//! loaded and no external entity read; internal entities expand within a budget, and nesting is
//! limited as libxml2 limits it. A malformed document still yields what was read before the
//! error, as libxml2's push parser leaves a partial tree.

mod encoding;
mod entities;
mod walk;

use super::Limits;

/// v2's `REQBODY_ERROR_MSG` for any XML failure.
pub const XML_ERROR_MSG: &str = "XML parser error: XML: Failed parsing document.";

/// The parts of a parsed document rules can see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Xml {
    /// `XML:/*`: the text content of the document element.
    pub root_text: Vec<u8>,
    /// `XML://@*`: attribute values, normalized and with references expanded.
    pub attributes: Vec<Vec<u8>>,
}

/// The result of parsing an XML body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XmlOutcome {
    /// The document (possibly partial), once a document element was started.
    pub doc: Option<Xml>,
    /// `REQBODY_ERROR_MSG` ([`XML_ERROR_MSG`]) when the body is not well-formed.
    pub error: Option<String>,
    /// What was wrong, for logs (v2 only logs libxml2's message in its debug log).
    pub detail: Option<String>,
}

/// Parses an XML body. An empty body gives neither document nor error, as in v2.
pub fn xml(body: &[u8], limits: &Limits) -> XmlOutcome {
    if body.is_empty() {
        return XmlOutcome::default();
    }
    let text = match encoding::to_utf8(body) {
        Ok(text) => text,
        Err(detail) => return failed(None, detail),
    };
    let budget = limits
        .xml_max_expansion
        .saturating_add(body.len().saturating_mul(5));
    let (doc, result) = walk::walk(&text, limits.xml_max_depth, budget);
    match result {
        Ok(()) => XmlOutcome {
            doc,
            error: None,
            detail: None,
        },
        Err(detail) => failed(doc, detail),
    }
}

fn failed(doc: Option<Xml>, detail: String) -> XmlOutcome {
    XmlOutcome {
        doc,
        error: Some(XML_ERROR_MSG.to_string()),
        detail: Some(detail),
    }
}

#[cfg(test)]
mod tests;
