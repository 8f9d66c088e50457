//! uuencoded files inside text (mail bodies, news posts): `begin <mode> <name>` up to `end`,
//! each line a length character and groups of four characters for three bytes. Lines that do
//! not decode end the file early (it is reported cut), as `uudecode` stops on them.

/// One uuencoded file found in a text.
#[derive(Debug, PartialEq, Eq)]
pub struct UuFile {
    /// The name on the `begin` line.
    pub name: String,
    /// The decoded bytes (at most the cap asked for).
    pub data: Vec<u8>,
    /// The file did not reach its `end` line, or went over the cap.
    pub cut: bool,
}

/// Finds every uuencoded file in `text`, at most `max_files`, each decoded up to `cap` bytes.
pub fn find(text: &[u8], max_files: usize, cap: usize) -> Vec<UuFile> {
    let mut out = Vec::new();
    let mut lines = text.split(|b| *b == b'\n').map(trim_line);
    while out.len() < max_files {
        let Some(line) = lines.next() else { break };
        let Some(name) = begin_name(line) else {
            continue;
        };
        let mut file = UuFile {
            name,
            data: Vec::new(),
            cut: true,
        };
        for line in lines.by_ref() {
            if line == b"end" {
                file.cut = false;
                break;
            }
            if !decode_line(line, &mut file.data, cap) {
                break;
            }
        }
        if file.data.len() >= cap {
            file.cut = true;
        }
        out.push(file);
    }
    out
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\r' | b' ' | b'\t'] = l {
        l = rest;
    }
    l
}

/// `begin 644 name` (also `begin-base64` is not uuencode and is left out).
fn begin_name(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"begin ")?;
    let sp = rest.iter().position(|b| *b == b' ')?;
    let (mode, name) = (&rest[..sp], &rest[sp + 1..]);
    if mode.is_empty() || mode.len() > 4 || !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    let name = String::from_utf8_lossy(name).trim().to_string();
    (!name.is_empty()).then_some(name)
}

fn sextet(c: u8) -> Option<u32> {
    (b' '..=b'`')
        .contains(&c)
        .then(|| u32::from((c - b' ') & 0x3f))
}

/// Decodes one body line into `out` (up to `cap`); false when the line is not uuencode.
/// A zero-length line (` ` or `` ` ``) is the last data line and decodes to nothing.
fn decode_line(line: &[u8], out: &mut Vec<u8>, cap: usize) -> bool {
    let Some((&first, chars)) = line.split_first() else {
        return false;
    };
    let Some(n) = sextet(first).map(|n| n as usize) else {
        return false;
    };
    // Some encoders drop trailing spaces: characters missing from the last group count as zero.
    if chars.len() < (n * 4).div_ceil(3) {
        return false;
    }
    let mut produced = 0;
    for group in chars.chunks(4) {
        if produced >= n {
            break;
        }
        let mut v = 0u32;
        for i in 0..4 {
            let s = match group.get(i) {
                Some(&c) => match sextet(c) {
                    Some(s) => s,
                    None => return false,
                },
                None => 0,
            };
            v = (v << 6) | s;
        }
        for b in [(v >> 16) as u8, (v >> 8) as u8, v as u8] {
            if produced < n && out.len() < cap {
                out.push(b);
            }
            produced += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `uuencode` writes for `data`.
    fn encode(name: &str, data: &[u8]) -> String {
        let ch = |v: u32| {
            let v = (v & 0x3f) as u8;
            (if v == 0 { b'`' } else { v + b' ' }) as char
        };
        let mut s = format!("begin 644 {name}\n");
        for line in data.chunks(45) {
            s.push(ch(line.len() as u32));
            for g in line.chunks(3) {
                let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
                let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for shift in [18, 12, 6, 0] {
                    s.push(ch(v >> shift));
                }
            }
            s.push('\n');
        }
        s.push_str("`\nend\n");
        s
    }

    #[test]
    fn decodes_what_uuencode_writes() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = format!(
            "Hello,\r\nsee attached.\r\n\r\n{}\r\nbye\r\n",
            encode("a.bin", &data)
        );
        let text = text.replace('\n', "\r\n").replace("\r\r", "\r");
        let got = find(text.as_bytes(), 10, 1 << 20);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "a.bin");
        assert!(!got[0].cut);
        assert_eq!(got[0].data, data);
    }

    #[test]
    fn caps_and_cuts_are_reported() {
        let text = encode("x", &[7u8; 200]);
        let got = find(text.as_bytes(), 10, 50);
        assert_eq!(got[0].data.len(), 50);
        assert!(got[0].cut);
        let cut = &text[..text.len() / 2];
        let got = find(cut.as_bytes(), 10, 1 << 20);
        assert!(got[0].cut);
        assert!(find(b"begin with a word\nend\n", 10, 100).is_empty());
        let two = format!("{}{}", encode("a", b"1"), encode("b", b"2"));
        assert_eq!(find(two.as_bytes(), 1, 100).len(), 1);
    }
}
