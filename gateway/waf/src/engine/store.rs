//! Where a transaction keeps its variables: scalars (`REQUEST_METHOD`, `REQBODY_ERROR`) in
//! an array indexed by the variable's place in the name table, and the collections rules
//! write (`TX`, and those `initcol` opens) in hash maps. Rules read them hundreds of times
//! per transaction, so a read is an index or one hash, never a search.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::tx::Val;
use crate::seclang::names::VARIABLES;

/// A variable's index in [`VARIABLES`].
pub(crate) fn index_of(name: &str) -> Option<usize> {
    static INDEX: LazyLock<HashMap<&'static str, usize, foldhash::fast::FixedState>> =
        LazyLock::new(|| VARIABLES.iter().enumerate().map(|(i, n)| (*n, i)).collect());
    INDEX.get(name).copied()
}

/// Scalar variables by index (names outside the table, which the engine never sets itself,
/// are kept beside it so that nothing set is lost).
#[derive(Debug)]
pub(crate) struct Scalars {
    vals: Vec<Option<Val>>,
    other: Vec<(&'static str, Val)>,
    /// Values set so far (what was read of the scalars is stale when this moved).
    writes: u32,
}

impl Scalars {
    pub fn new() -> Scalars {
        Scalars {
            vals: vec![None; VARIABLES.len()],
            other: Vec::new(),
            writes: 0,
        }
    }

    /// How many values were set so far.
    pub fn writes(&self) -> u32 {
        self.writes
    }

    /// The value of the variable at `index` (from [`index_of`]).
    pub fn at(&self, index: usize) -> Option<&Val> {
        self.vals.get(index)?.as_ref()
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Val> {
        match index_of(name) {
            Some(i) => self.at(i),
            None => self.other.iter().find(|(n, _)| *n == name).map(|(_, v)| v),
        }
    }

    /// Sets `name`.
    pub fn insert(&mut self, name: &'static str, v: Val) {
        self.writes = self.writes.wrapping_add(1);
        match index_of(name) {
            Some(i) => self.vals[i] = Some(v),
            None => match self.other.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = v,
                None => self.other.push((name, v)),
            },
        }
    }
}

/// A collection's members by (lower-case) name. The hasher is seeded per process: member
/// names can come from the client (`tx.header_name_%{tx.0}`).
pub(crate) type Col = HashMap<std::sync::Arc<str>, Val, foldhash::fast::RandomState>;

/// The collections rules write: `TX` always, others when `initcol` opens them.
#[derive(Debug, Default)]
pub(crate) struct Cols {
    tx: Col,
    other: Vec<(String, Col)>,
}

impl Cols {
    /// The collection `name` (upper case), if open.
    pub fn get(&self, name: &str) -> Option<&Col> {
        if name == "TX" {
            return Some(&self.tx);
        }
        self.other.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// Whether a collection other than `TX` is open.
    pub fn has_others(&self) -> bool {
        !self.other.is_empty()
    }

    /// Whether `name` is an open collection.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The collection `name`, opened when it is not.
    pub fn open(&mut self, name: &str) -> &mut Col {
        if name == "TX" {
            return &mut self.tx;
        }
        let i = match self.other.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.other.push((name.to_string(), Col::default()));
                self.other.len() - 1
            }
        };
        &mut self.other[i].1
    }

    /// `TX`.
    pub fn tx(&self) -> &Col {
        &self.tx
    }

    /// `TX`, to write.
    pub fn tx_mut(&mut self) -> &mut Col {
        &mut self.tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::vars::val;

    #[test]
    fn scalars_by_name_and_index() {
        let mut s = Scalars::new();
        s.insert("REQUEST_METHOD", val(b"GET"));
        let i = index_of("REQUEST_METHOD").expect("a variable");
        assert_eq!(s.at(i).map(|v| &v[..]), Some(&b"GET"[..]));
        assert_eq!(s.get("REQUEST_METHOD").map(|v| &v[..]), Some(&b"GET"[..]));
        assert!(s.get("QUERY_STRING").is_none());
        // A name outside the table is kept too.
        s.insert("NOT_A_VARIABLE", val(b"1"));
        s.insert("NOT_A_VARIABLE", val(b"2"));
        assert_eq!(s.get("NOT_A_VARIABLE").map(|v| &v[..]), Some(&b"2"[..]));
    }

    #[test]
    fn collections_open_once() {
        let mut c = Cols::default();
        assert!(c.contains("TX") && !c.contains("IP"));
        c.open("IP").insert("b".into(), val(b"2"));
        c.open("IP").insert("a".into(), val(b"1"));
        assert!(c.contains("IP"));
        assert_eq!(c.get("IP").map(|c| c.len()), Some(2));
    }
}
