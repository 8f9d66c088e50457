//! RTF embedded objects: the hex of each `\objdata` group, decoded as Word reads it (hex
//! digits in pairs, whitespace and line ends ignored, nested groups and other control words
//! skipped), up to the group's closing brace.

/// True when `data` starts like an RTF document (`{\rt`, as Word and ClamAV accept it).
pub fn is_rtf(data: &[u8]) -> bool {
    data.starts_with(b"{\\rt")
}

/// An `\objdata` group's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct ObjData {
    /// The decoded hex.
    pub data: Vec<u8>,
    /// The document ended before the group closed.
    pub unclosed: bool,
}

/// The decoded bytes of every `\objdata` group, at most `max` groups of `cap` bytes each.
pub fn objdata(rtf: &[u8], max: usize, cap: usize) -> Vec<ObjData> {
    let mut out = Vec::new();
    let mut from = 0;
    while out.len() < max {
        let Some(at) = memchr::memmem::find(&rtf[from..], b"\\objdata") else {
            break;
        };
        let start = from + at + b"\\objdata".len();
        // A longer control word (`\objdatax`) is not this one.
        if rtf.get(start).is_some_and(u8::is_ascii_alphabetic) {
            from = start;
            continue;
        }
        let (data, end, closed) = group_hex(&rtf[start..], cap);
        out.push(ObjData {
            data,
            unclosed: !closed,
        });
        from = start + end;
    }
    out
}

/// Hex pairs from `s` up to the brace that closes the current group; returns them, where the
/// scan stopped and whether the group closed.
fn group_hex(s: &[u8], cap: usize) -> (Vec<u8>, usize, bool) {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut high: Option<u8> = None;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            b'{' => depth += 1,
            b'}' => {
                if depth == 0 {
                    return (out, i + 1, true);
                }
                depth -= 1;
            }
            b'\\' => {
                // Skip a control word with its numeric parameter, or a control symbol.
                i += 1;
                while i < s.len() && s[i].is_ascii_alphabetic() {
                    i += 1;
                }
                while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'-') {
                    i += 1;
                }
                continue;
            }
            _ if depth == 0 => {
                if let Some(v) = (c as char).to_digit(16) {
                    let v = v as u8;
                    match high.take() {
                        Some(h) if out.len() < cap => out.push(h << 4 | v),
                        Some(_) => {}
                        None => high = Some(v),
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    (out, s.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_each_objdata_group() {
        let rtf = b"{\\rtf1{\\object\\objemb{\\*\\objclass Package}\\objw10{\\*\\objdata 0105\r\n00\n0\n2{\\*\\junk ff}4142 }}{\\objdata4344}}";
        let data = |r: &[u8], max, cap| -> Vec<Vec<u8>> {
            objdata(r, max, cap).into_iter().map(|o| o.data).collect()
        };
        assert_eq!(
            data(rtf, 10, 100),
            vec![vec![1, 5, 0, 2, 0x41, 0x42], vec![0x43, 0x44]]
        );
        assert_eq!(data(rtf, 1, 2), vec![vec![1, 5]]);
        assert!(objdata(b"{\\rtf1 \\objdatax 4142}", 10, 10).is_empty());
        let cut = objdata(b"{\\rtf1{\\objdata 41", 10, 10);
        assert_eq!(cut[0].data, vec![0x41]);
        assert!(cut[0].unclosed);
        assert!(!objdata(rtf, 10, 10)[0].unclosed);
    }
}
