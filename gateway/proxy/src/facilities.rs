//! A route's allowed facilities at the network's scale (about 237,000 IDs): exact IDs in a hash
//! set, `PREFIX*` patterns by prefix (one hash lookup per distinct prefix length), and the other
//! wildcard patterns (`*-tokyo`, `H?0*1`: few in practice) matched one by one. A lookup costs
//! the same with one entry or 237,000.
//!
//! Entries come from the route's `facilities` and from `[[facility_group]]` tables (`members`
//! and/or a `file` of one ID or pattern per line, `#` comments), referenced as `"@name"`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::clientauth::wildcard;
use crate::config::{Config, FacilityGroupConfig};
use crate::error::{ProxyError, Result};

/// A set of facility IDs and patterns, built once per reload.
#[derive(Debug, Default)]
pub struct FacilitySet {
    exact: HashSet<Box<str>>,
    prefixes: HashSet<Box<str>>,
    /// The distinct lengths of `prefixes`, ascending.
    prefix_lens: Vec<usize>,
    patterns: Vec<Box<str>>,
    /// A lone `*`: every facility.
    any: bool,
    entries: usize,
}

impl FacilitySet {
    /// A set of `entries` (IDs, `PREFIX*` and other `*`/`?` patterns).
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a str>) -> FacilitySet {
        let mut s = FacilitySet::default();
        for e in entries {
            s.insert(e);
        }
        s
    }

    fn insert(&mut self, entry: &str) {
        self.entries += 1;
        let wild = |t: &str| t.contains(['*', '?']);
        if !wild(entry) {
            self.exact.insert(entry.into());
            return;
        }
        match entry.strip_suffix('*') {
            Some("") => self.any = true,
            Some(prefix) if !wild(prefix) => {
                if !self.prefix_lens.contains(&prefix.len()) {
                    self.prefix_lens.push(prefix.len());
                    self.prefix_lens.sort_unstable();
                }
                self.prefixes.insert(prefix.into());
            }
            _ => self.patterns.push(entry.into()),
        }
    }

    /// Whether facility `id` is allowed.
    pub fn contains(&self, id: &str) -> bool {
        if self.any || self.exact.contains(id) {
            return true;
        }
        let by_prefix = self
            .prefix_lens
            .iter()
            .take_while(|l| **l <= id.len())
            .any(|&l| id.is_char_boundary(l) && self.prefixes.contains(&id[..l]));
        by_prefix || self.patterns.iter().any(|p| wildcard(p, id))
    }

    /// Entries given (duplicates included).
    pub fn len(&self) -> usize {
        self.entries
    }

    /// No entry: nobody is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// Every `[[facility_group]]`'s entries by name, files read (once per build).
pub(crate) type Groups = HashMap<String, Vec<String>>;

/// Reads every group of `cfg` (its `members` and its `file`).
pub(crate) fn load_groups(cfg: &Config) -> Result<Groups> {
    let mut groups = Groups::new();
    for g in &cfg.facility_groups {
        groups.insert(g.name.clone(), group_entries(g)?);
    }
    Ok(groups)
}

fn group_entries(g: &FacilityGroupConfig) -> Result<Vec<String>> {
    let mut out = g.members.clone().unwrap_or_default();
    if let Some(file) = &g.file {
        read_list(file, &mut out)?;
    }
    Ok(out)
}

/// One ID or pattern per line; blank lines and `#` comments skipped.
fn read_list(file: &Path, out: &mut Vec<String>) -> Result<()> {
    let text = std::fs::read_to_string(file).map_err(|e| ProxyError::Config {
        file: file.to_path_buf(),
        message: format!("cannot read the facility list: {e}"),
    })?;
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        if entry.contains(char::is_whitespace) {
            return Err(ProxyError::Config {
                file: file.to_path_buf(),
                message: format!("line {}: one facility ID per line, got {entry:?}", i + 1),
            });
        }
        out.push(entry.to_string());
    }
    Ok(())
}

/// A route's set: its entries with every `@group` replaced by the group's entries.
pub(crate) fn route_set(
    entries: &[String],
    groups: &Groups,
) -> std::result::Result<FacilitySet, String> {
    let mut all: Vec<&str> = Vec::with_capacity(entries.len());
    for e in entries {
        match e.strip_prefix('@') {
            Some(name) => match groups.get(name) {
                Some(g) => all.extend(g.iter().map(String::as_str)),
                None => return Err(format!("no [[facility_group]] named {name:?}")),
            },
            None => all.push(e),
        }
    }
    Ok(FacilitySet::new(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_prefixes_and_patterns() {
        let s = FacilitySet::new(["H-0001", "P-13*", "P-1*", "*-tokyo", "C?0*1"]);
        assert!(s.contains("H-0001"));
        assert!(!s.contains("H-00011") && !s.contains("H-000"));
        assert!(s.contains("P-1300") && s.contains("P-19"));
        assert!(!s.contains("P-2"));
        assert!(s.contains("clinic-tokyo"));
        assert!(s.contains("C10771") && !s.contains("C1077"));
        assert_eq!(s.len(), 5);
        assert!(FacilitySet::new(["*"]).contains("anything"));
        let none = FacilitySet::new(std::iter::empty());
        assert!(none.is_empty() && !none.contains("H-0001"));
        // Multi-byte IDs: a prefix length inside a character is skipped, not a panic.
        let jp = FacilitySet::new(["東京*", "ab*"]);
        assert!(jp.contains("東京病院") && !jp.contains("東") && !jp.contains("a東"));
    }

    #[test]
    fn the_same_answers_as_the_wildcard_scan() {
        let entries = ["A*", "AB?", "*Z", "M*N", "X", "XY*", "*"];
        for n in 0..entries.len() {
            let set = FacilitySet::new(entries[..n].iter().copied());
            for id in [
                "", "A", "AB", "ABC", "Z", "AZ", "MN", "MxN", "X", "XY", "XYZ", "Q",
            ] {
                let scan = entries[..n].iter().any(|p| wildcard(p, id));
                assert_eq!(set.contains(id), scan, "{:?} {id:?}", &entries[..n]);
            }
        }
    }

    #[test]
    fn groups_expand_and_lists_are_read() {
        let dir = std::env::temp_dir().join(format!("sekisho-fac-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("tokyo.txt");
        std::fs::write(&file, "# Tokyo\nH-0001\n\n  H-0002  # ward 2\nP-13*\n").expect("write");
        let mut out = Vec::new();
        read_list(&file, &mut out).expect("read");
        assert_eq!(out, ["H-0001", "H-0002", "P-13*"]);
        let mut groups = Groups::new();
        groups.insert("tokyo".into(), out);
        let set = route_set(&["@tokyo".into(), "C-9".into()], &groups).expect("set");
        assert!(set.contains("H-0002") && set.contains("P-1301") && set.contains("C-9"));
        assert!(route_set(&["@osaka".into()], &groups).is_err());
        std::fs::write(&file, "H-0001\nH 0002\n").expect("write");
        let e = read_list(&file, &mut Vec::new()).expect_err("refused");
        assert!(e.to_string().contains("line 2"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
