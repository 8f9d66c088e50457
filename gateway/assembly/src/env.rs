//! Overrides from the environment: a container or a unit says where the gateway keeps its
//! state and how it names itself without editing the config file. The config text is patched
//! before it is parsed (formatting, comments and the other keys' lines kept), so every engine
//! sees the same values and relative paths resolve from the config file's folder as usual.
//!
//! - `SEKISHO__<TABLE>__<KEY>=value` sets `<table>.<key>` (lower case), e.g.
//!   `SEKISHO__AV__CACHE_DIR=/var/cache/sekisho/av`; `SEKISHO__NODE_NAME` a top-level key.
//! - Shorter names for the keys containers set most: [`ALIASES`].
//!
//! A value that reads as a TOML value (`8`, `true`, `["a", "b"]`, `"text"`) is that value;
//! anything else is a string.

use toml_edit::{DocumentMut, Item, Table, Value};

/// Short variables and the key each sets.
pub const ALIASES: &[(&str, &str)] = &[
    ("SEKISHO_NODE_NAME", "node_name"),
    ("SEKISHO_METRICS_ADDR", "metrics.addr"),
    ("SEKISHO_CA_CERT", "tls.ca_cert"),
    ("SEKISHO_CA_KEY", "tls.ca_key"),
    ("SEKISHO_EVENTS_FILE", "events.file"),
    ("SEKISHO_COMM_LOG", "events.comm_log"),
    ("SEKISHO_SPOOL_DIR", "mss.spool_dir"),
];

/// Variables with the `SEKISHO_` prefix read elsewhere (not overrides).
const OTHERS: &[&str] = &[
    "SEKISHO_CONFIG",
    "SEKISHO_LOG",
    "SEKISHO_LOG_FORMAT",
    // Read by the tests and benches, not the gateway.
    "SEKISHO_BIN",
    "SEKISHO_CORPORA",
];
const OTHER_PREFIXES: &[&str] = &["SEKISHO_BENCH_", "SEKISHO_SOAK_", "SEKISHO_TEST_"];

/// The key a variable sets, if it is an override.
fn key_of(var: &str) -> Option<String> {
    if let Some((_, key)) = ALIASES.iter().find(|(v, _)| *v == var) {
        return Some(key.to_string());
    }
    let rest = var.strip_prefix("SEKISHO__")?;
    let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    (!parts.iter().any(String::is_empty)).then(|| parts.join("."))
}

/// Applies every override among `vars` to config `text`: the patched text, and one note per
/// key set (for the log). An error names the variable and the key.
pub fn apply(
    text: &str,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(String, Vec<String>), String> {
    let mut sets: Vec<(String, String, String)> = vars
        .filter_map(|(var, value)| key_of(&var).map(|k| (var, k, value)))
        .collect();
    if sets.is_empty() {
        return Ok((text.to_string(), Vec::new()));
    }
    sets.sort();
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let mut notes = Vec::new();
    for (var, key, value) in sets {
        set(doc.as_table_mut(), &key, &value).map_err(|e| format!("{var} ({key}): {e}"))?;
        notes.push(format!("{key} = {value:?} (from {var})"));
    }
    Ok((doc.to_string(), notes))
}

/// Sets dotted `key` to `value` under `table`, making tables on the way.
fn set(table: &mut Table, key: &str, value: &str) -> Result<(), String> {
    let (head, last) = match key.rsplit_once('.') {
        Some((h, l)) => (Some(h), l),
        None => (None, key),
    };
    let mut t = table;
    for part in head.into_iter().flat_map(|h| h.split('.')) {
        let item = t.entry(part).or_insert_with(|| {
            let mut new = Table::new();
            new.set_implicit(false);
            Item::Table(new)
        });
        t = match item {
            Item::Table(inner) => inner,
            Item::ArrayOfTables(_) => {
                return Err(format!("[[{part}]] is a list of tables: edit the file"))
            }
            _ => return Err(format!("{part} is not a table")),
        };
    }
    let mut v: Value = value
        .parse::<Value>()
        .unwrap_or_else(|_| Value::from(value));
    match t.get_mut(last) {
        // In place: the key and the comments around it stay.
        Some(Item::Value(old)) => {
            *v.decor_mut() = old.decor().clone();
            *old = v;
        }
        Some(Item::None) | None => {
            t.insert(last, Item::Value(v));
        }
        Some(_) => return Err(format!("{last} is a table, not a value")),
    }
    Ok(())
}

/// The `SEKISHO_` variables among `names` that neither override a key nor are read elsewhere
/// (the binary warns of them: a misspelt override is not silently ignored).
pub fn unknown(names: impl Iterator<Item = String>) -> Vec<String> {
    names
        .filter(|v| v.starts_with("SEKISHO_"))
        .filter(|v| !OTHERS.contains(&v.as_str()))
        .filter(|v| !OTHER_PREFIXES.iter().any(|p| v.starts_with(p)))
        .filter(|v| key_of(v).is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# the gateway\nnode_name = \"a\"  # kept comment\n\n[metrics]\naddr = \"127.0.0.1:1\"\n\n[av]\nyara = [\"rules/yara\"]\n";

    fn vars(v: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn aliases_and_generic_names_patch_the_text() {
        let (text, notes) = apply(
            TEXT,
            vars(&[
                ("SEKISHO_NODE_NAME", "gw-7"),
                ("SEKISHO__AV__CACHE_DIR", "/var/cache/sekisho/av"),
                ("SEKISHO__AV__MAX_DEPTH", "8"),
                ("SEKISHO__MSS__SPOOL_DIR", "/var/lib/sekisho/spool"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("applies");
        assert_eq!(notes.len(), 4, "{notes:?}");
        let t: toml::Table = toml::from_str(&text).expect("valid");
        assert_eq!(t["node_name"].as_str(), Some("gw-7"));
        assert_eq!(t["av"]["cache_dir"].as_str(), Some("/var/cache/sekisho/av"));
        assert_eq!(t["av"]["max_depth"].as_integer(), Some(8));
        assert_eq!(
            t["mss"]["spool_dir"].as_str(),
            Some("/var/lib/sekisho/spool")
        );
        // Untouched lines keep their place and comments.
        assert!(
            text.starts_with("# the gateway\nnode_name = \"gw-7\"  # kept comment\n"),
            "{text}"
        );
        assert!(
            text.contains("\n[metrics]\naddr = \"127.0.0.1:1\"\n"),
            "{text}"
        );
    }

    #[test]
    fn lists_of_tables_and_scalars_cannot_be_entered() {
        let text = "[[listener]]\naddr = \"x\"\n";
        let e = apply(text, vars(&[("SEKISHO__LISTENER__ADDR", "y")])).expect_err("refused");
        assert!(
            e.contains("SEKISHO__LISTENER__ADDR") && e.contains("list of tables"),
            "{e}"
        );
        let e = apply(TEXT, vars(&[("SEKISHO__NODE_NAME__X", "y")])).expect_err("refused");
        assert!(e.contains("not a table"), "{e}");
    }

    #[test]
    fn misspelt_overrides_are_named() {
        let names = [
            "SEKISHO_NODE_NAME",
            "SEKISHO_NODENAME",
            "SEKISHO_CONFIG",
            "SEKISHO__A__B",
            "PATH",
        ];
        let unknown = unknown(names.iter().map(|s| s.to_string()));
        assert_eq!(unknown, vec!["SEKISHO_NODENAME".to_string()]);
    }
}
