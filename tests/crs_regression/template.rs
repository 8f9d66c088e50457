//! go-ftw runs `data` through Go's text/template with the sprig functions. The CRS tests use
//! one form, `{{ "1" | repeat 64200 }}`; this expands `repeat` (either spelling) and refuses
//! any other action, so a test using one fails visibly instead of sending the wrong body.

/// The largest body a template may produce.
const MAX_LEN: usize = 16 << 20;

/// `data` with its `{{ … }}` actions expanded.
pub fn expand(data: &str) -> Result<String, String> {
    let mut out = String::with_capacity(data.len());
    let mut rest = data;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "data: unclosed template action".to_string())?;
        let text = action(after[..end].trim())?;
        if out.len() + text.len() > MAX_LEN {
            return Err("data: template output too large".into());
        }
        out.push_str(&text);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `"s" | repeat N` or `repeat N "s"`.
fn action(a: &str) -> Result<String, String> {
    let unsupported = || format!("data: unsupported template action {{{{ {a} }}}}");
    let (count, s) = if let Some((lhs, rhs)) = a.split_once('|') {
        let n = rhs.trim().strip_prefix("repeat").ok_or_else(unsupported)?;
        (n.trim(), lhs.trim())
    } else {
        let r = a.strip_prefix("repeat").ok_or_else(unsupported)?.trim();
        let (n, s) = r.split_once(char::is_whitespace).ok_or_else(unsupported)?;
        (n.trim(), s.trim())
    };
    let n: usize = count.parse().map_err(|_| unsupported())?;
    let s = go_string(s).ok_or_else(unsupported)?;
    if s.len().saturating_mul(n) > MAX_LEN {
        return Err("data: template output too large".into());
    }
    Ok(s.repeat(n))
}

/// A Go string literal: `"…"` with the common escapes, or a raw `` `…` ``.
fn go_string(s: &str) -> Option<String> {
    if let Some(raw) = s.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return Some(raw.to_string());
    }
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            '\\' => '\\',
            '"' => '"',
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn repeat_expands_in_both_spellings() {
        assert_eq!(expand("a{{ \"1\" | repeat 3 }}b").unwrap(), "a111b");
        assert_eq!(expand("{{repeat 2 \"x\\n\"}}").unwrap(), "x\nx\n");
        assert_eq!(expand("no template").unwrap(), "no template");
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(expand("{{ .Foo }}").is_err());
        assert!(expand("{{ \"1\" | repeat 99999999999 }}").is_err());
        assert!(expand("{{ open").is_err());
    }
}
