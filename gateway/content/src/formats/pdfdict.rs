//! Just enough of PDF's object syntax to read a dictionary's entries (the encryption
//! dictionary, a trailer's `/ID`): names, numbers, strings, arrays, nested dictionaries and
//! `N G R` references, each bounded by the bytes given.

/// Dictionaries nested deeper than this are not followed.
const MAX_DEPTH: usize = 32;

/// A dictionary's top-level entries, as (key with its `/`, the value's raw bytes).
#[derive(Debug, Default)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Dict<'a> {
    /// The entries of the dictionary `d` starts with (after optional whitespace).
    pub fn parse(d: &'a [u8]) -> Self {
        let mut entries = Vec::new();
        let mut i = skip_space(d, 0);
        if !d[i..].starts_with(b"<<") {
            return Dict { entries };
        }
        i += 2;
        loop {
            i = skip_space(d, i);
            if i >= d.len() || d[i..].starts_with(b">>") || d[i] != b'/' {
                break;
            }
            let key_end = token_end(d, i + 1);
            let key = &d[i..key_end];
            let v = skip_space(d, key_end);
            let Some(end) = value_end(d, v, 0) else {
                break;
            };
            entries.push((key, &d[v..end]));
            i = end;
        }
        Dict { entries }
    }

    /// The raw value of `key` (`/O`, `/CF`, …).
    pub fn raw(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// An integer value.
    pub fn int(&self, key: &[u8]) -> Option<i64> {
        std::str::from_utf8(self.raw(key)?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A name's text without its `/`, or a bare keyword (`true`, `false`).
    pub fn name(&self, key: &[u8]) -> Option<&'a [u8]> {
        let v = self.raw(key)?;
        Some(v.strip_prefix(b"/").unwrap_or(v))
    }

    /// A string value, decoded (literal or hex).
    pub fn string(&self, key: &[u8]) -> Option<Vec<u8>> {
        string(self.raw(key)?)
    }
}

/// The bytes of a literal `(…)` or hex `<…>` string at the start of `v`, decoded.
pub fn string(v: &[u8]) -> Option<Vec<u8>> {
    match v.first()? {
        b'(' => Some(super::pdf::literal(&v[1..], v.len())),
        b'<' => Some(hex(&v[1..])),
        _ => None,
    }
}

fn hex(v: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = v
        .iter()
        .take_while(|&&c| c != b'>')
        .filter_map(|&c| (c as char).to_digit(16).map(|d| d as u8))
        .collect();
    digits
        .chunks(2)
        .map(|p| p[0] << 4 | p.get(1).copied().unwrap_or(0))
        .collect()
}

/// `N G R` at the start of `v`.
pub fn reference(v: &[u8]) -> Option<(u32, u16)> {
    let text = std::str::from_utf8(&v[..v.len().min(40)]).ok()?;
    let mut words = text.split_ascii_whitespace();
    let num = words.next()?.parse().ok()?;
    let gen = words.next()?.parse().ok()?;
    let r = words.next()?;
    (r == "R" || r.starts_with("R/") || r.starts_with("R>")).then_some((num, gen))
}

/// The dictionary of the last `num gen obj` in `pdf` (a later revision replaces an earlier).
pub fn object(pdf: &[u8], num: u32, gen: u16) -> Option<&[u8]> {
    let head = format!("{num} {gen} obj");
    let at = memchr::memmem::find_iter(pdf, head.as_bytes())
        .filter(|&a| a == 0 || !pdf[a - 1].is_ascii_digit())
        .last()?;
    dict_at(&pdf[at + head.len()..])
}

/// The dictionary `v` starts with (after whitespace), `<<` to its `>>`.
pub fn dict_at(v: &[u8]) -> Option<&[u8]> {
    let start = skip_space(v, 0);
    if !v[start..].starts_with(b"<<") {
        return None;
    }
    let end = value_end(v, start, 0)?;
    Some(&v[start..end])
}

/// The first string of the array `v` starts with (`/ID [<…> <…>]`).
pub fn first_string(v: &[u8]) -> Option<Vec<u8>> {
    let i = skip_space(v, 0);
    if v.get(i) != Some(&b'[') {
        return None;
    }
    let s = skip_space(v, i + 1);
    let end = value_end(v, s, 0)?;
    string(&v[s..end])
}

fn skip_space(d: &[u8], mut i: usize) -> usize {
    while i < d.len() {
        match d[i] {
            b'%' => {
                while i < d.len() && d[i] != b'\n' && d[i] != b'\r' {
                    i += 1;
                }
            }
            c if c.is_ascii_whitespace() || c == 0 => i += 1,
            _ => break,
        }
    }
    i
}

fn is_delimiter(c: u8) -> bool {
    c.is_ascii_whitespace()
        || matches!(
            c,
            b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%' | 0
        )
}

fn token_end(d: &[u8], mut i: usize) -> usize {
    while i < d.len() && !is_delimiter(d[i]) {
        i += 1;
    }
    i
}

/// Where the value starting at `i` ends (a reference `N G R` taken whole).
fn value_end(d: &[u8], i: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let c = *d.get(i)?;
    match c {
        b'<' if d[i..].starts_with(b"<<") => {
            let mut j = i + 2;
            loop {
                j = skip_space(d, j);
                if d[j..].starts_with(b">>") {
                    return Some(j + 2);
                }
                j = value_end(d, j, depth + 1)?;
            }
        }
        b'[' => {
            let mut j = i + 1;
            loop {
                j = skip_space(d, j);
                if *d.get(j)? == b']' {
                    return Some(j + 1);
                }
                j = value_end(d, j, depth + 1)?;
            }
        }
        b'<' => Some(memchr::memchr(b'>', &d[i..])? + i + 1),
        b'(' => literal_end(d, i + 1),
        b'/' => Some(token_end(d, i + 1)),
        b'>' | b')' | b']' | b'{' | b'}' => None,
        _ => {
            let end = token_end(d, i);
            if end == i {
                return None;
            }
            // `N G R`: two integers and R.
            let g = skip_space(d, end);
            let g_end = token_end(d, g);
            let r = skip_space(d, g_end);
            let ints = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
            if ints(&d[i..end]) && ints(&d[g..g_end]) && d.get(r) == Some(&b'R') {
                let r_end = token_end(d, r);
                if r_end == r + 1 {
                    return Some(r_end);
                }
            }
            Some(end)
        }
    }
}

/// The end of a literal string whose body starts at `i` (balanced parentheses, escapes).
fn literal_end(d: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < d.len() {
        match d[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' if depth == 0 => return Some(i + 1),
            b')' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_entries_an_encryption_dictionary_has() {
        let d = b"<< /Filter /Standard /V 4 /R 4 /Length 128 /CF << /StdCF << /AuthEvent /DocOpen /CFM /AESV2 /Length 16 >> >> /StmF /StdCF /O (a\\)b(c)) /U <41 42 4> /P -1028 /EncryptMetadata false /Ref 12 0 R >>";
        let dict = Dict::parse(d);
        assert_eq!(dict.int(b"/Length"), Some(128), "the top-level /Length");
        assert_eq!(dict.int(b"/P"), Some(-1028));
        assert_eq!(dict.name(b"/StmF"), Some(&b"StdCF"[..]));
        assert_eq!(dict.string(b"/O").unwrap(), b"a)b(c)");
        assert_eq!(dict.string(b"/U").unwrap(), b"AB@");
        assert_eq!(dict.name(b"/EncryptMetadata"), Some(&b"false"[..]));
        assert_eq!(dict.raw(b"/Ref"), Some(&b"12 0 R"[..]));
        let cf = Dict::parse(dict.raw(b"/CF").unwrap());
        let std = Dict::parse(cf.raw(b"/StdCF").unwrap());
        assert_eq!(std.name(b"/CFM"), Some(&b"AESV2"[..]));
    }

    #[test]
    fn references_objects_and_ids() {
        assert_eq!(reference(b" 12 0 R /ID"), Some((12, 0)));
        assert_eq!(reference(b" 12 0 obj"), None);
        let pdf = b"%PDF\n112 0 obj <<>> endobj\n12 0 obj\n<< /V 1 >>\nendobj\n12 0 obj << /V 2 >> endobj";
        assert_eq!(object(pdf, 12, 0), Some(&b"<< /V 2 >>"[..]));
        assert_eq!(first_string(b" [<0a0B> <ff>]").unwrap(), vec![0x0a, 0x0b]);
        assert_eq!(first_string(b"[(x\\051)(y)]").unwrap(), b"x)");
        assert!(
            Dict::parse(b"<< /A [ << /B").raw(b"/A").is_none(),
            "cut short"
        );
        let deep = "[".repeat(100);
        assert!(first_string(deep.as_bytes()).is_none());
    }
}
