//! Macro strings (`%{tx.anomaly_score}`, `%{MATCHED_VAR}`, `%{request_headers.host}`),
//! parsed once when rules load and expanded per transaction.

/// One piece of a macro string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text as written.
    Text(Vec<u8>),
    /// `%{NAME}` or `%{COLLECTION.key}`: the variable (upper case) and key (lower case).
    Var {
        /// The variable or collection name, upper case.
        name: String,
        /// The key after the dot, lower case.
        key: Option<String>,
    },
}

/// A string with macros.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Macro {
    pieces: Vec<Piece>,
}

impl Macro {
    /// Parses `text`; an unclosed `%{` stays literal.
    pub fn parse(text: &str) -> Macro {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut lit = Vec::new();
        while let Some(at) = rest.find("%{") {
            let Some(close) = rest[at + 2..].find('}') else {
                break;
            };
            lit.extend_from_slice(&rest.as_bytes()[..at]);
            let inner = &rest[at + 2..at + 2 + close];
            if !lit.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut lit)));
            }
            let (name, key) = match inner.split_once(['.', ':']) {
                Some((n, k)) => (n, Some(k.trim().to_ascii_lowercase())),
                None => (inner, None),
            };
            pieces.push(Piece::Var {
                name: name.trim().to_ascii_uppercase(),
                key,
            });
            rest = &rest[at + 3 + close..];
        }
        lit.extend_from_slice(rest.as_bytes());
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Macro { pieces }
    }

    /// Whether the string has no macro (its value is fixed).
    pub fn is_literal(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Text(_)))
    }

    /// The variables the string reads, as `(NAME, key)`.
    pub fn vars(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var { name, key } => Some((name.as_str(), key.as_deref())),
            Piece::Text(_) => None,
        })
    }

    /// The text before the first variable.
    pub fn literal_prefix(&self) -> &[u8] {
        match self.pieces.first() {
            Some(Piece::Text(t)) => t,
            _ => b"",
        }
    }

    /// The literal text (for a string without macros).
    pub fn literal(&self) -> Vec<u8> {
        self.expand(|_, _| None)
    }

    /// Expands with `lookup(name, key)`; a variable it does not know expands to nothing.
    pub fn expand(&self, mut lookup: impl FnMut(&str, Option<&str>) -> Option<Vec<u8>>) -> Vec<u8> {
        self.expand_into(|name, key, out| {
            if let Some(v) = lookup(name, key) {
                out.extend_from_slice(&v);
            }
        })
    }

    /// Expands with `lookup(name, key, out)`, which appends the variable's value to `out`
    /// (nothing for a variable it does not know).
    pub fn expand_into(&self, mut lookup: impl FnMut(&str, Option<&str>, &mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Var { name, key } => lookup(name, key.as_deref(), &mut out),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_expands() {
        let m = Macro::parse("score %{tx.Anomaly_Score} in %{MATCHED_VAR_NAME}: %{x");
        assert!(!m.is_literal());
        let got = m.expand(|n, k| match (n, k) {
            ("TX", Some("anomaly_score")) => Some(b"5".to_vec()),
            ("MATCHED_VAR_NAME", None) => Some(b"ARGS:a".to_vec()),
            _ => None,
        });
        assert_eq!(got, b"score 5 in ARGS:a: %{x");
        assert!(Macro::parse("plain").is_literal());
        assert_eq!(Macro::parse("%{tx.none}x").expand(|_, _| None), b"x");
    }
}
