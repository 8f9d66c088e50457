//! TNEF (`winmail.dat`, `application/ms-tnef`): Outlook's attachment wrapper. After the
//! signature and a key, a sequence of attributes (level, id, length, data, checksum); each
//! attachment starts with `attAttachRendData` and carries `attAttachTitle` (its name) and
//! `attAttachData` (its bytes). Checksums are not enforced.

const SIGNATURE: [u8; 4] = [0x78, 0x9f, 0x3e, 0x22];
const LVL_ATTACHMENT: u8 = 2;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800f;

/// True when `data` starts with the TNEF signature.
pub fn is_tnef(data: &[u8]) -> bool {
    data.starts_with(&SIGNATURE)
}

/// An attachment of a TNEF stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attachment<'a> {
    /// `attAttachTitle`, when present.
    pub name: Option<String>,
    /// `attAttachData`.
    pub data: &'a [u8],
}

/// The attachments (at most `max`), whether the stream ended inside an attribute, and whether
/// more attachments than `max` were there.
pub fn attachments(d: &[u8], max: usize) -> (Vec<Attachment<'_>>, bool, bool) {
    let mut out: Vec<Attachment<'_>> = Vec::new();
    let mut i = 6;
    while i < d.len() {
        let Some(h) = d.get(i..i + 9) else {
            // Fewer bytes than an attribute header after the last attribute (a trailing
            // newline or padding, as writers leave): nothing can hide there.
            return (out, false, false);
        };
        let level = h[0];
        let id = u32::from_le_bytes([h[1], h[2], h[3], h[4]]);
        let len = u32::from_le_bytes([h[5], h[6], h[7], h[8]]) as usize;
        let Some(value) = d.get(i + 9..(i + 9).saturating_add(len)) else {
            return (out, true, false);
        };
        i += 9 + len + 2;
        if level != LVL_ATTACHMENT {
            continue;
        }
        match id {
            ATT_ATTACH_REND_DATA => {
                if out.len() >= max {
                    return (out, false, true);
                }
                out.push(Attachment::default());
            }
            ATT_ATTACH_TITLE => {
                if let Some(a) = out.last_mut() {
                    let v = value.split(|b| *b == 0).next().unwrap_or(value);
                    a.name = Some(String::from_utf8_lossy(v).into_owned());
                }
            }
            ATT_ATTACH_DATA => {
                // A second data attribute for the same attachment is a file of its own (ClamAV
                // keeps both); so is data before any attachment began.
                if out.last().is_none_or(|a| !a.data.is_empty()) {
                    if out.len() >= max {
                        return (out, false, true);
                    }
                    out.push(Attachment::default());
                }
                if let Some(a) = out.last_mut() {
                    a.data = value;
                }
            }
            _ => {}
        }
    }
    (out, false, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(out: &mut Vec<u8>, level: u8, id: u32, value: &[u8]) {
        out.push(level);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        let sum: u32 = value.iter().map(|b| u32::from(*b)).sum();
        out.extend_from_slice(&(sum as u16).to_le_bytes());
    }

    #[test]
    fn lists_attachments_with_names() {
        let mut t = SIGNATURE.to_vec();
        t.extend_from_slice(&[0x01, 0x00]);
        attr(&mut t, 1, 0x0008_9006, b"\x01\x00\x00\x00");
        attr(&mut t, 2, ATT_ATTACH_REND_DATA, &[0; 14]);
        attr(&mut t, 2, ATT_ATTACH_TITLE, b"invoice.exe\0");
        attr(&mut t, 2, ATT_ATTACH_DATA, b"MZ...");
        attr(&mut t, 2, ATT_ATTACH_REND_DATA, &[0; 14]);
        attr(&mut t, 2, ATT_ATTACH_DATA, b"second");
        assert!(is_tnef(&t));
        let (a, cut, more) = attachments(&t, 10);
        assert!(!cut && !more);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].name.as_deref(), Some("invoice.exe"));
        assert_eq!(a[0].data, b"MZ...");
        assert_eq!(a[1].data, b"second");
        let (a, cut, _) = attachments(&t[..t.len() - 5], 10);
        assert!(cut);
        assert_eq!(a.len(), 2);
        assert_eq!(attachments(&t, 1).0.len(), 1);
        assert!(attachments(&t, 1).2);
        // Two data attributes in one attachment: both kept.
        let mut two = t.clone();
        attr(&mut two, 2, ATT_ATTACH_DATA, b"third");
        assert_eq!(
            attachments(&two, 10)
                .0
                .iter()
                .map(|a| a.data)
                .collect::<Vec<_>>(),
            vec![&b"MZ..."[..], b"second", b"third"]
        );
        // A trailing newline after the last attribute (as in ClamAV's clam.tnef) is no cut.
        t.push(b'\n');
        assert_eq!(
            attachments(&t, 10),
            (attachments(&t[..t.len() - 1], 10).0, false, false)
        );
        // Eight bytes of a header are still too short to hide anything.
        t.extend_from_slice(&[2; 7]);
        assert!(!attachments(&t, 10).1);
    }
}
