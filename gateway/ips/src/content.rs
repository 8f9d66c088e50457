//! `content` patterns: the quoted string with `|hex|` bytes, and its modifiers.

/// A content match and its modifiers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Content {
    /// The bytes (lower-cased when `nocase`).
    pub pattern: Vec<u8>,
    /// `!content`.
    pub negated: bool,
    /// `nocase`.
    pub nocase: bool,
    /// `depth` (counted from `offset`).
    pub depth: Option<u32>,
    /// `offset`.
    pub offset: Option<u32>,
    /// `distance` (may be negative).
    pub distance: Option<i32>,
    /// `within`.
    pub within: Option<i32>,
    /// `startswith`.
    pub startswith: bool,
    /// `endswith`.
    pub endswith: bool,
    /// `fast_pattern`.
    pub fast_pattern: bool,
    /// `fast_pattern:offset,length`.
    pub fp_chop: Option<(usize, usize)>,
    /// `offset`, `depth`, `distance`, `within` from `byte_extract` / `byte_math` variables.
    pub vars: Option<Box<ContentVars>>,
}

/// The variables a content's modifiers take their values from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentVars {
    /// `offset`.
    pub offset: Option<u8>,
    /// `depth`.
    pub depth: Option<u8>,
    /// `distance`.
    pub distance: Option<u8>,
    /// `within`.
    pub within: Option<u8>,
}

impl Content {
    /// The content with its variable modifiers given the rule's current values.
    pub fn resolved(&self, vars: &crate::bytevars::Vars) -> Content {
        let get = |i: Option<u8>| i.map(|i| vars[usize::from(i) % vars.len()]);
        let mut c = self.clone();
        if let Some(v) = &self.vars {
            let clamp = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
            let sclamp = |x: u64| i32::try_from(x).unwrap_or(i32::MAX);
            c.offset = get(v.offset).map(clamp).or(c.offset);
            c.depth = get(v.depth).map(clamp).or(c.depth);
            c.distance = get(v.distance).map(sclamp).or(c.distance);
            c.within = get(v.within).map(sclamp).or(c.within);
        }
        c
    }

    /// Applies `nocase`.
    pub fn set_nocase(&mut self) {
        self.nocase = true;
        self.pattern.make_ascii_lowercase();
    }

    /// The bytes the prefilter looks for.
    pub fn fast_bytes(&self) -> &[u8] {
        match self.fp_chop {
            Some((o, l)) => &self.pattern[o..o + l],
            None => &self.pattern,
        }
    }
}

/// Splits `!"value"` / `"value"` into the negation and the text inside the quotes.
pub fn negated_quoted(v: &str) -> Result<(bool, &str), String> {
    let v = v.trim();
    let (negated, v) = match v.strip_prefix('!') {
        Some(r) => (true, r.trim_start()),
        None => (false, v),
    };
    let inner = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .ok_or_else(|| "value must be in double quotes".to_string())?;
    Ok((negated, inner))
}

/// Parses a content value: `"abc|0d 0a|def"` or `!"…"`.
pub fn parse_content(v: &str) -> Result<Content, String> {
    let (negated, inner) = negated_quoted(v)?;
    let mut out = Vec::with_capacity(inner.len());
    let mut hex = false;
    let mut nibble: Option<u8> = None;
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'|' {
            if hex && nibble.is_some() {
                return Err("odd number of hex digits".into());
            }
            hex = !hex;
            i += 1;
            continue;
        }
        if hex {
            match c {
                b' ' | b'\t' => {}
                _ => {
                    let d = (c as char)
                        .to_digit(16)
                        .ok_or_else(|| format!("bad hex digit {:?}", c as char))?
                        as u8;
                    match nibble.take() {
                        Some(h) => out.push(h << 4 | d),
                        None => nibble = Some(d),
                    }
                }
            }
            i += 1;
            continue;
        }
        if c == b'\\' {
            let n = *bytes.get(i + 1).ok_or("trailing backslash")?;
            match n {
                b'"' | b';' | b'\\' | b':' => out.push(n),
                _ => return Err(format!("unknown escape \\{}", n as char)),
            }
            i += 2;
            continue;
        }
        if c == b'"' {
            return Err("unescaped '\"'".into());
        }
        out.push(c);
        i += 1;
    }
    if hex {
        return Err("unterminated |hex| block".into());
    }
    if out.is_empty() {
        return Err("empty content".into());
    }
    Ok(Content {
        pattern: out,
        negated,
        ..Content::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_escapes_negation() {
        let c = parse_content(r#""GET|20|/a|0d 0a|b\"\;\\""#).unwrap();
        assert_eq!(c.pattern, b"GET /a\r\nb\";\\");
        assert!(!c.negated);
        let c = parse_content(r#"!"|3a|x""#).unwrap();
        assert!(c.negated);
        assert_eq!(c.pattern, b":x");
        assert_eq!(parse_content(r#""|0d0a|""#).unwrap().pattern, b"\r\n");
        for bad in [
            r#""|0d 0|""#,
            r#""|0g|""#,
            r#""abc"#,
            r#""a|0d""#,
            r#""""#,
            r#""a"b""#,
        ] {
            assert!(parse_content(bad).is_err(), "{bad}");
        }
    }
}
