//! OneNote sections (`.one`): files embedded in a page are stored as FileDataStoreObject
//! structures ([MS-ONESTORE] 2.6.13), a GUID header, a 64-bit length, 12 reserved bytes and
//! the file's bytes. Like ClamAV, the section is searched for that header rather than parsed.

/// `{7B5C52E4-D88C-4DA7-AEB1-5378D02996D3}`: the first bytes of a OneNote section file.
const SECTION: [u8; 16] = [
    0xe4, 0x52, 0x5c, 0x7b, 0x8c, 0xd8, 0xa7, 0x4d, 0xae, 0xb1, 0x53, 0x78, 0xd0, 0x29, 0x96, 0xd3,
];
/// `{BDE316E7-2665-4511-A4C4-8D4D0B7A9EAC}`: the header of a FileDataStoreObject.
const FILE_DATA: [u8; 16] = [
    0xe7, 0x16, 0xe3, 0xbd, 0x65, 0x26, 0x11, 0x45, 0xa4, 0xc4, 0x8d, 0x4d, 0x0b, 0x7a, 0x9e, 0xac,
];

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
        assert_eq!(embedded(&one, 10), vec![&b"first file"[..], b"MZ second"]);
        assert_eq!(embedded(&one, 1).len(), 1);
        let cut = &one[..one.len() - 10];
        assert_eq!(embedded(cut, 10)[1], b"MZ sec");
    }
}
