//! The document read event by event (quick-xml, no recursion): well-formedness as libxml2
//! checks it where it matters (one document element, matching tags, nothing but whitespace,
//! comments and processing instructions around it, valid characters and references, no
//! duplicate attributes), the depth limit, and the text and attribute values collected.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::entities::{is_xml_char, predefined_or_char, Entities};
use super::Xml;

/// Where the reader is relative to the document element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Prolog,
    Inside(usize),
    Epilog,
}

struct Walk {
    place: Place,
    max_depth: usize,
    entities: Entities,
    doc: Option<Xml>,
    text: String,
}

/// Walks `text`; the document read so far, and whether it was well-formed.
pub(super) fn walk(
    text: &str,
    max_depth: usize,
    budget: usize,
) -> (Option<Xml>, Result<(), String>) {
    let mut walk = Walk {
        place: Place::Prolog,
        max_depth,
        entities: Entities::new(budget),
        doc: None,
        text: String::new(),
    };
    let result = walk.run(text);
    let doc = walk.doc.take().map(|mut doc| {
        doc.root_text = std::mem::take(&mut walk.text).into_bytes();
        doc
    });
    (doc, result)
}

impl Walk {
    fn run(&mut self, text: &str) -> Result<(), String> {
        if let Some(bad) = text.chars().find(|c| !is_xml_char(*c)) {
            return Err(format!("invalid character U+{:04X}", u32::from(bad)));
        }
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.check_comments = true;
        let mut first = true;
        loop {
            let event = reader.read_event().map_err(|e| e.to_string())?;
            if matches!(event, Event::Eof) {
                return self.end();
            }
            self.event(event, first)?;
            first = false;
        }
    }

    fn event(&mut self, event: Event<'_>, first: bool) -> Result<(), String> {
        match event {
            Event::Decl(_) if !first => Err("XML declaration allowed only at the start".into()),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => Ok(()),
            Event::DocType(doctype) => self.doctype(&doctype),
            Event::Start(start) => self.element(&start, true),
            Event::Empty(start) => self.element(&start, false),
            Event::End(_) => {
                self.place = match self.place {
                    Place::Inside(1) => Place::Epilog,
                    Place::Inside(depth) => Place::Inside(depth - 1),
                    _ => return Err("end tag outside the document element".into()),
                };
                Ok(())
            }
            Event::Text(text) => self.char_data(&text, true),
            Event::CData(data) => self.char_data(&data, false),
            Event::GeneralRef(reference) => self.reference(&reference),
            Event::Eof => Ok(()),
        }
    }

    fn end(&self) -> Result<(), String> {
        match self.place {
            Place::Epilog => Ok(()),
            Place::Prolog => Err("document is empty".into()),
            Place::Inside(_) => Err("premature end of data: element not closed".into()),
        }
    }

    fn doctype(&mut self, doctype: &[u8]) -> Result<(), String> {
        if self.place != Place::Prolog || self.doc.is_some() {
            return Err("DOCTYPE after the document element started".into());
        }
        self.entities
            .declare_from_doctype(&String::from_utf8_lossy(doctype));
        Ok(())
    }

    fn element(&mut self, start: &BytesStart<'_>, opens: bool) -> Result<(), String> {
        let depth = match self.place {
            Place::Prolog => 1,
            Place::Inside(depth) => depth + 1,
            Place::Epilog => return Err("extra content at the end of the document".into()),
        };
        if depth > self.max_depth {
            return Err(format!("excessive depth in document: {}", self.max_depth));
        }
        self.doc.get_or_insert_with(Xml::default);
        self.attributes(start)?;
        self.place = match (opens, depth) {
            (true, _) => Place::Inside(depth),
            (false, 1) => Place::Epilog,
            (false, _) => Place::Inside(depth - 1),
        };
        Ok(())
    }

    fn attributes(&mut self, start: &BytesStart<'_>) -> Result<(), String> {
        for attribute in start.attributes().with_checks(true) {
            let attribute = attribute.map_err(|e| e.to_string())?;
            let key = attribute.key.as_ref();
            if key == b"xmlns" || key.starts_with(b"xmlns:") {
                continue;
            }
            let value = self.attribute_value(&attribute.value)?;
            if let Some(doc) = self.doc.as_mut() {
                doc.attributes.push(value.into_bytes());
            }
        }
        Ok(())
    }

    /// A raw attribute value: references expanded, literal whitespace normalized to spaces.
    fn attribute_value(&mut self, raw: &[u8]) -> Result<String, String> {
        let raw = std::str::from_utf8(raw).map_err(|e| e.to_string())?;
        if raw.contains('<') {
            return Err("unescaped '<' in an attribute value".into());
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(amp) = rest.find('&') {
            push_normalized(&mut out, &rest[..amp]);
            let after = &rest[amp + 1..];
            let semi = after
                .find(';')
                .ok_or("'&' without ';' in an attribute value")?;
            self.entities.expand(&after[..semi], &mut out, true)?;
            rest = &after[semi + 1..];
        }
        push_normalized(&mut out, rest);
        Ok(out)
    }

    /// Text (`escaped`: may not contain `]]>`) or CDATA.
    fn char_data(&mut self, data: &[u8], escaped: bool) -> Result<(), String> {
        let data = std::str::from_utf8(data).map_err(|e| e.to_string())?;
        if !matches!(self.place, Place::Inside(_)) {
            if escaped && data.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
                return Ok(());
            }
            return Err("content outside the document element".into());
        }
        if escaped && data.contains("]]>") {
            return Err("sequence ']]>' not allowed in content".into());
        }
        self.text.push_str(data);
        Ok(())
    }

    fn reference(&mut self, name: &[u8]) -> Result<(), String> {
        if !matches!(self.place, Place::Inside(_)) {
            return Err("reference outside the document element".into());
        }
        let name = std::str::from_utf8(name).map_err(|e| e.to_string())?;
        if predefined_or_char(name)?.is_none() && name.is_empty() {
            return Err("empty entity reference".into());
        }
        self.entities.expand(name, &mut self.text, false)
    }
}

fn push_normalized(out: &mut String, text: &str) {
    out.extend(text.chars().map(|c| {
        if matches!(c, '\t' | '\n' | '\r') {
            ' '
        } else {
            c
        }
    }));
}
