//! v2's yajl callbacks (apache2/msc_json.c): a dotted `prefix` and a `current_key` make each
//! argument's name. Closing a container cuts the prefix at its last `.` — a key with dots in it
//! is cut there too, as in v2 — and closing a map makes the cut-off segment the current key
//! again. The dots' positions are kept so every cut is O(1).

use crate::body::{ArgList, ArgOrigin, Limits};

/// Why a callback stopped the parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cancel {
    /// Nesting beyond `SecRequestBodyJsonDepthLimit`.
    Depth,
    /// `SecArgumentsLimit` reached.
    Keys(usize),
    /// More argument-name bytes than [`Limits::json_max_name_bytes`] (ours, not v2's).
    NameBytes(usize),
}

impl Cancel {
    pub(super) fn message(&self) -> String {
        match self {
            Cancel::Depth => "JSON depth limit exceeded".into(),
            Cancel::Keys(limit) => format!("More than {limit} JSON keys"),
            Cancel::NameBytes(limit) => {
                format!("JSON argument names longer than {limit} bytes in all")
            }
        }
    }
}

pub(super) struct Naming<'a> {
    args: &'a mut ArgList,
    max_depth: usize,
    max_name_bytes: usize,
    prefix: Option<Vec<u8>>,
    /// Positions of every `.` in `prefix`, ascending.
    dots: Vec<usize>,
    current_key: Option<Vec<u8>>,
    /// v2's `current_depth`; dotted keys can drive it below zero.
    depth: i64,
    name_bytes: usize,
}

impl<'a> Naming<'a> {
    pub(super) fn new(limits: &Limits, args: &'a mut ArgList) -> Self {
        Naming {
            args,
            max_depth: limits.json_max_depth,
            max_name_bytes: limits.json_max_name_bytes,
            prefix: None,
            dots: Vec::new(),
            current_key: None,
            depth: 0,
            name_bytes: 0,
        }
    }

    pub(super) fn key(&mut self, key: Vec<u8>) {
        self.current_key = Some(key);
    }

    /// A string, number, boolean or null: one argument named `prefix.key` (or `key`).
    pub(super) fn scalar(&mut self, value: &[u8]) -> Result<(), Cancel> {
        let key = self.current_key.get_or_insert_with(Vec::new);
        let mut name = Vec::new();
        if let Some(prefix) = &self.prefix {
            name.reserve(prefix.len() + 1 + key.len());
            name.extend_from_slice(prefix);
            name.push(b'.');
        }
        name.extend_from_slice(key);
        self.name_bytes = self.name_bytes.saturating_add(name.len());
        if self.name_bytes > self.max_name_bytes {
            return Err(Cancel::NameBytes(self.max_name_bytes));
        }
        if !self.args.push(name, value.to_vec(), ArgOrigin::Json) {
            return Err(Cancel::Keys(self.args.limit()));
        }
        Ok(())
    }

    pub(super) fn start_array(&mut self) -> Result<(), Cancel> {
        if self.current_key.is_none() && self.prefix.is_none() {
            self.current_key = Some(b"array".to_vec());
            self.set_prefix(b"array".to_vec());
        } else {
            self.extend_prefix();
        }
        self.deeper()
    }

    pub(super) fn start_map(&mut self) -> Result<(), Cancel> {
        // The top-level map has no key and changes nothing.
        if self.current_key.is_none() {
            return Ok(());
        }
        self.extend_prefix();
        self.deeper()
    }

    pub(super) fn end_array(&mut self) {
        if self.prefix.is_some() {
            self.cut_prefix();
            self.depth -= 1;
        }
    }

    pub(super) fn end_map(&mut self) {
        if self.prefix.is_some() {
            self.current_key = self.cut_prefix();
            self.depth -= 1;
        }
    }

    fn deeper(&mut self) -> Result<(), Cancel> {
        self.depth += 1;
        if self.depth > i64::try_from(self.max_depth).unwrap_or(i64::MAX) {
            return Err(Cancel::Depth);
        }
        Ok(())
    }

    /// `prefix.current_key`, or `current_key` when there is no prefix.
    fn extend_prefix(&mut self) {
        let key = self.current_key.clone().unwrap_or_default();
        match self.prefix.as_mut() {
            Some(prefix) => {
                self.dots.push(prefix.len());
                let base = prefix.len() + 1;
                self.dots.extend(
                    key.iter()
                        .enumerate()
                        .filter(|(_, b)| **b == b'.')
                        .map(|(i, _)| base + i),
                );
                prefix.push(b'.');
                prefix.extend_from_slice(&key);
            }
            None => self.set_prefix(key),
        }
    }

    fn set_prefix(&mut self, prefix: Vec<u8>) {
        self.dots = prefix
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'.')
            .map(|(i, _)| i)
            .collect();
        self.prefix = Some(prefix);
    }

    /// Cuts the prefix at its last dot (dropping it when it has none); the part cut off.
    fn cut_prefix(&mut self) -> Option<Vec<u8>> {
        match self.dots.pop() {
            Some(dot) => {
                let prefix = self.prefix.as_mut()?;
                let tail = prefix.get(dot + 1..).map(<[u8]>::to_vec);
                prefix.truncate(dot);
                tail
            }
            None => self.prefix.take(),
        }
    }
}
