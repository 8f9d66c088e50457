//! Config value shapes every table accepts: a list key also takes a single string
//! (`yara = "rules/yara"` is `yara = ["rules/yara"]`).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// Deserializes a string or a list of strings into a list (`#[serde(deserialize_with =
/// "sekisho_core::de::one_or_many")]`).
pub fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    d.deserialize_any(OneOrMany(PhantomData))
}

/// [`one_or_many`] for an optional key.
pub fn opt_one_or_many<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    one_or_many(d).map(Some)
}

struct OneOrMany<T>(PhantomData<T>);

impl<'de, T: From<String>> Visitor<'de> for OneOrMany<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of strings")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
        Ok(vec![T::from(v.to_string())])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<String>()? {
            out.push(T::from(s));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[derive(serde::Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::one_or_many", default)]
        paths: Vec<PathBuf>,
    }

    #[test]
    fn one_string_or_a_list() {
        let one: T = toml::from_str("paths = \"a\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(one.paths, vec![PathBuf::from("a")]);
        let many: T = toml::from_str("paths = [\"a\", \"b\"]").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(many.paths.len(), 2);
        let none: T = toml::from_str("").unwrap_or_else(|e| panic!("{e}"));
        assert!(none.paths.is_empty());
        let bad = toml::from_str::<T>("paths = 3")
            .err()
            .map(|e| e.to_string());
        assert!(bad.is_some_and(|e| e.contains("a string or a list of strings")));
    }
}

/// Rewrites a TOML "unknown field" error so it points at the key's own line (serde points
/// tables with flattened parts at the table header) and lists the valid keys (`keys`, when serde
/// did not). None when `message` is not such an error.
pub fn explain_unknown_key(text: &str, message: &str, keys: &[&str]) -> Option<String> {
    let key = message.split("unknown field `").nth(1)?.split('`').next()?;
    let reported: usize = message
        .split("at line ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let lines: Vec<&str> = text.lines().collect();
    let mut at = None;
    for (i, l) in lines.iter().enumerate().skip(reported.saturating_sub(1)) {
        let t = l.trim_start();
        if t.starts_with('[') {
            if i + 1 > reported {
                break;
            }
            continue;
        }
        let rest = t.strip_prefix(key).map(str::trim_start);
        if rest.is_some_and(|r| r.starts_with('=') || r.starts_with('.')) {
            at = Some(i);
            break;
        }
    }
    let i = at?;
    let table = lines[..i]
        .iter()
        .rev()
        .map(|l| l.trim_start())
        .find(|l| l.starts_with('['))
        .and_then(|l| l.split(']').next())
        .map(|t| t.trim_start_matches('[').to_string())
        .unwrap_or_default();
    let valid = match message.split("expected one of ").nth(1) {
        Some(list) => list.trim().replace('`', ""),
        None if !keys.is_empty() => {
            let mut k = keys.to_vec();
            k.sort_unstable();
            k.join(", ")
        }
        None => String::new(),
    };
    let within = if table.is_empty() {
        String::new()
    } else {
        format!(" in [{table}]")
    };
    let mut out = format!(
        "line {}: unknown key `{key}`{within}\n  {} | {}",
        i + 1,
        i + 1,
        lines[i].trim_end()
    );
    if !valid.is_empty() {
        out.push_str(&format!("\nvalid keys: {valid}"));
    }
    Some(out)
}

#[cfg(test)]
mod explain_tests {
    use super::explain_unknown_key;

    #[test]
    fn points_at_the_key_and_lists_the_valid_ones() {
        let text = "[[listener]]\nkind = \"forward\"\n\n[policy]\ndeny_hosts = []\ndeny_hots = [\"x\"]\n\n[av]\nyara = []\n";
        let msg = "TOML parse error at line 4, column 1\n  |\n4 | [policy]\n  | ^^^^^^^^\nunknown field `deny_hots`";
        let e = explain_unknown_key(text, msg, &["mode", "deny_hosts"]).unwrap_or_default();
        assert!(
            e.starts_with("line 6: unknown key `deny_hots` in [policy]"),
            "{e}"
        );
        assert!(e.contains("6 | deny_hots = [\"x\"]"), "{e}");
        assert!(e.ends_with("valid keys: deny_hosts, mode"), "{e}");
        // serde's own list wins when it gave one.
        let msg = "TOML parse error at line 6, column 1\nunknown field `deny_hots`, expected one of `a`, `b`";
        let e = explain_unknown_key(text, msg, &["zzz"]).unwrap_or_default();
        assert!(e.ends_with("valid keys: a, b"), "{e}");
        // A key not in that table is not searched for in the next one.
        let msg = "TOML parse error at line 4, column 1\nunknown field `yara`";
        assert_eq!(explain_unknown_key(text, msg, &[]), None);
        assert_eq!(explain_unknown_key(text, "something else", &[]), None);
    }
}
