//! OneNote sections (`.one`). As ClamAV does, the section is first parsed (`onenote_parser`:
//! the desktop format and web exports packaged as FSSHTTPB) and the files its pages embed are
//! taken with their names; when that fails, the section is searched for FileDataStoreObject
//! structures ([MS-ONESTORE] 2.6.13: a GUID header, a 64-bit length, 12 reserved bytes and the
//! file's bytes), which is how Office 2010 sections keep them.

use std::io::Read;

use onenote_parser::contents::{Content, EmbeddedFile, OutlineElement, OutlineItem};
use onenote_parser::page::PageContent;

/// `{7B5C52E4-D88C-4DA7-AEB1-5378D02996D3}`: the first bytes of a OneNote section file.
const SECTION: [u8; 16] = [
    0xe4, 0x52, 0x5c, 0x7b, 0x8c, 0xd8, 0xa7, 0x4d, 0xae, 0xb1, 0x53, 0x78, 0xd0, 0x29, 0x96, 0xd3,
];
/// `{BDE316E7-2665-4511-A4C4-8D4D0B7A9EAC}`: the header of a FileDataStoreObject.
const FILE_DATA: [u8; 16] = [
    0xe7, 0x16, 0xe3, 0xbd, 0x65, 0x26, 0x11, 0x45, 0xa4, 0xc4, 0x8d, 0x4d, 0x0b, 0x7a, 0x9e, 0xac,
];

/// A file a section embeds.
#[derive(Debug, PartialEq, Eq)]
pub struct Attached {
    /// Its name, when the page gave one.
    pub name: Option<String>,
    /// Its bytes, at most the cap.
    pub data: Vec<u8>,
    /// Cut at the cap.
    pub cut: bool,
}

/// What the parsed section gave, within the limits.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The files, in page order.
    pub files: Vec<Attached>,
    /// True when a limit (count or total bytes) left some out.
    pub more: bool,
}

/// Bounds while collecting.
struct Collect {
    out: Parsed,
    max: usize,
    cap: usize,
    left: usize,
}

/// The files the section's pages embed (at most `max`, each at most `cap` bytes, `total` in
/// all), or `None` when the parser cannot read the section (or fails inside: a panic in it is
/// caught, as ClamAV catches it, and counts as a failure).
pub fn parsed(data: &[u8], max: usize, cap: usize, total: usize) -> Option<Parsed> {
    let run = || {
        let parser = onenote_parser::Parser::new();
        let section = parser
            .parse_section_buffer(data, typed_path::TypedPath::derive("section.one"))
            .ok()?;
        let mut c = Collect {
            out: Parsed::default(),
            max,
            cap,
            left: total,
        };
        for series in section.page_series() {
            for page in series.pages() {
                for pc in page.contents() {
                    c.page(pc);
                }
            }
        }
        Some(c.out)
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .ok()
        .flatten()
}

impl Collect {
    fn page(&mut self, pc: &PageContent) {
        if let Some(f) = pc.embedded_file() {
            self.take(f);
        }
        if let Some(outline) = pc.outline() {
            for item in outline.items() {
                self.item(item, 0);
            }
        }
    }

    fn item(&mut self, item: &OutlineItem, depth: u32) {
        if depth > 64 {
            return;
        }
        match item {
            OutlineItem::Element(e) => self.element(e, depth),
            OutlineItem::Group(g) => {
                for child in g.outlines() {
                    self.item(child, depth + 1);
                }
            }
        }
    }

    /// An outline element's files: its own, those in its tables' cells, those of its children.
    fn element(&mut self, e: &OutlineElement, depth: u32) {
        if depth > 64 {
            return;
        }
        for c in e.contents() {
            match c {
                Content::EmbeddedFile(f) => self.take(f),
                Content::Table(t) => {
                    for row in t.contents() {
                        for cell in row.contents() {
                            for el in cell.contents() {
                                self.element(el, depth + 1);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for child in e.children() {
            self.item(child, depth + 1);
        }
    }

    fn take(&mut self, f: &EmbeddedFile) {
        if self.out.files.len() >= self.max || self.left == 0 {
            self.out.more = true;
            return;
        }
        let cap = self.cap.min(self.left);
        let mut data = Vec::new();
        let _ = f
            .read()
            .take((cap as u64).saturating_add(1))
            .read_to_end(&mut data);
        let cut = data.len() > cap;
        data.truncate(cap);
        self.left -= data.len();
        let name = f.filename();
        self.out.files.push(Attached {
            name: (!name.is_empty()).then(|| name.to_string()),
            data,
            cut,
        });
    }
}

/// True when `data` starts with the OneNote section GUID.
pub fn is_onenote(data: &[u8]) -> bool {
    data.starts_with(&SECTION)
}

/// The embedded files (at most `max`): each slice is cut where the section ends.
pub fn embedded(data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    for at in memchr::memmem::find_iter(data, &FILE_DATA) {
        if out.len() >= max {
            break;
        }
        let Some(len) = data.get(at + 16..at + 24) else {
            break;
        };
        let len = u64::from_le_bytes(len.try_into().unwrap_or([0; 8]));
        let start = at + 36;
        if start > data.len() {
            break;
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .map_or(data.len(), |e| e.min(data.len()));
        out.push(&data[start..end]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_file_data_store_objects() {
        let mut one = SECTION.to_vec();
        one.extend_from_slice(&[0u8; 100]);
        for payload in [&b"first file"[..], b"MZ second"] {
            one.extend_from_slice(&FILE_DATA);
            one.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            one.extend_from_slice(&[0u8; 12]);
            one.extend_from_slice(payload);
            one.extend_from_slice(&[0u8; 7]);
        }
        assert!(is_onenote(&one));
        // Not a section the parser reads (and no panic out of it): the search still finds them.
        assert_eq!(parsed(&one, 10, 1 << 20, 1 << 20), None);
        assert_eq!(embedded(&one, 10), vec![&b"first file"[..], b"MZ second"]);
        assert_eq!(embedded(&one, 1).len(), 1);
        let cut = &one[..one.len() - 10];
        assert_eq!(embedded(cut, 10)[1], b"MZ sec");
    }
}
