//! Suricata's `dataset` and `datarep`: named sets of strings, digests or addresses that rules
//! test a sticky buffer against (after its transformations) and add to or remove from.
//!
//! As Suricata 8 does it:
//! - `dataset:<set|unset|isset|isnotset>,<name>[, type T, load F, state F, save F, memcap N,
//!   hashsize N]`: `set` matches when the buffer was not in the set and is added now, `unset`
//!   when it was there and is removed, `isset` / `isnotset` on membership; an empty buffer
//!   never matches.
//! - `datarep:<name>,<op>,<value>[, type T, load F, memcap N, hashsize N]`: the buffer is in
//!   the set and its reputation compares with `value` (`>`, `<`, `==`).
//! - Types: `string` (any bytes; base64 per line in files), `md5` / `sha256` (the raw digest,
//!   as `to_md5` / `to_sha256` leave it; hex in files), `ipv4` (4 raw bytes; dotted in files),
//!   `ip` / `ipv6` (16 or 4 raw bytes; either notation in files, IPv4-mapped addresses kept as
//!   IPv4). A buffer of the wrong length is never in the set.
//! - Names are case-insensitive, at most 63 bytes, without blanks; the first rule that names a
//!   set with a `type` creates it, later rules share it (their type and files must agree).
//! - `load` alone: read from beside the rule file (else the data directory); a missing file is
//!   an error. `state F`: load from and save to F in the data directory (created when
//!   missing). `save` and `state` take relative paths only, without `..`.
//! - Sets with `save` or `state` are dynamic: a rule reload keeps their contents; they are
//!   written when the last rule set using them is dropped (a reload that drops them, or the
//!   gateway's exit). Sets loaded with `load` only are read again on reload.
//! - Bounded: each set holds at most `memcap` bytes (default 16 MiB, counting each entry's
//!   bytes plus a fixed overhead); an add past it fails (the rule does not match) and is
//!   counted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;

/// The longest set name (Suricata's `DATASET_NAME_MAX_LEN`).
pub const NAME_MAX: usize = 63;
/// A set's memory cap when the rule gives none.
pub const DEFAULT_MEMCAP: u64 = 16 << 20;
/// Bytes counted per entry besides its data (the hash table's share).
const ENTRY_OVERHEAD: u64 = 48;
/// The longest line read from a set file.
const MAX_LINE: usize = 64 << 10;

/// What a set holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    /// Any bytes.
    String,
    /// 16-byte MD5 digests.
    Md5,
    /// 32-byte SHA-256 digests.
    Sha256,
    /// IPv4 addresses (4 bytes).
    Ipv4,
    /// IPv6 or IPv4 addresses (16 bytes; IPv4 in the first 4).
    Ip,
}

impl DataType {
    fn parse(v: &str) -> Option<DataType> {
        Some(match v {
            "string" => DataType::String,
            "md5" => DataType::Md5,
            "sha256" => DataType::Sha256,
            "ipv4" => DataType::Ipv4,
            "ip" | "ipv6" => DataType::Ip,
            _ => return None,
        })
    }

    /// The name rules use.
    pub fn name(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Md5 => "md5",
            DataType::Sha256 => "sha256",
            DataType::Ipv4 => "ipv4",
            DataType::Ip => "ip",
        }
    }

    /// The stored key for a buffer, or `None` when the buffer cannot be of this type.
    fn key(self, data: &[u8]) -> Option<Box<[u8]>> {
        let ok = match self {
            DataType::String => !data.is_empty(),
            DataType::Md5 => data.len() == 16,
            DataType::Sha256 => data.len() == 32,
            DataType::Ipv4 => data.len() == 4,
            DataType::Ip => data.len() == 4 || data.len() == 16,
        };
        if !ok {
            return None;
        }
        if self == DataType::Ip && data.len() == 4 {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(data);
            return Some(Box::new(k));
        }
        Some(data.into())
    }

    /// Decodes one value as set files write it.
    fn decode(self, text: &str) -> Result<Box<[u8]>, String> {
        let bad = || format!("not a {} value: {text:?}", self.name());
        let bytes: Vec<u8> = match self {
            DataType::String => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| bad())?,
            DataType::Md5 | DataType::Sha256 => hex::decode(text).map_err(|_| bad())?,
            DataType::Ipv4 => text
                .parse::<Ipv4Addr>()
                .map_err(|_| bad())?
                .octets()
                .to_vec(),
            DataType::Ip => match text.parse::<IpAddr>().map_err(|_| bad())? {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => match a.to_ipv4_mapped() {
                    Some(v4) => v4.octets().to_vec(),
                    None => a.octets().to_vec(),
                },
            },
        };
        self.key(&bytes).ok_or_else(bad)
    }

    /// Encodes a stored key as set files hold it.
    fn encode(self, key: &[u8]) -> String {
        match self {
            DataType::String => base64::engine::general_purpose::STANDARD.encode(key),
            DataType::Md5 | DataType::Sha256 => hex::encode(key),
            DataType::Ipv4 => <[u8; 4]>::try_from(key)
                .map(|o| Ipv4Addr::from(o).to_string())
                .unwrap_or_default(),
            DataType::Ip => match <[u8; 16]>::try_from(key) {
                Ok(o) if o[4..].iter().all(|&b| b == 0) => {
                    Ipv4Addr::new(o[0], o[1], o[2], o[3]).to_string()
                }
                // Suricata writes every group in full (`0004:0005:0000:…`).
                Ok(o) => Ipv6Addr::from(o)
                    .segments()
                    .iter()
                    .map(|g| format!("{g:04x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                Err(_) => String::new(),
            },
        }
    }
}

/// A `dataset` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// Add; matches when the value was new.
    Set,
    /// Remove; matches when the value was there.
    Unset,
    /// Matches when the value is there.
    IsSet,
    /// Matches when the value is not there.
    IsNotSet,
}

/// A `datarep` comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepOp {
    /// `>`.
    Gt,
    /// `<`.
    Lt,
    /// `==`.
    Eq,
}

/// What a keyword does with its set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `dataset`.
    Cmd(Cmd),
    /// `datarep`: the comparison and the value compared with.
    Rep(RepOp, u16),
}

/// A set as a rule declares it (files as written; resolved when the rule set loads).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decl {
    /// The name as written.
    pub name: String,
    /// `type`.
    pub kind: Option<DataType>,
    /// `load` (or `state`).
    pub load: Option<String>,
    /// `save` (or `state`).
    pub save: Option<String>,
    /// `memcap` in bytes (0: the default).
    pub memcap: u64,
}

/// A `dataset` or `datarep` keyword of a rule: what it does and, once the rule set loaded,
/// the set.
#[derive(Debug)]
pub struct DatasetUse {
    /// The command or comparison.
    pub op: Op,
    /// The declaration.
    pub decl: Decl,
    /// The set (bound by [`Resolver::bind`]).
    pub set: std::sync::OnceLock<Arc<Dataset>>,
}

impl DatasetUse {
    /// Runs the keyword on a buffer: whether the rule goes on.
    pub fn matches(&self, data: &[u8]) -> bool {
        match self.set.get() {
            Some(set) => set.apply(self.op, data),
            None => false,
        }
    }
}

/// Splits `key value` options as Suricata's `strtok_r` loop does: comma-separated, leading
/// blanks trimmed, the value after the first space.
fn options(v: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    v.split(',').filter_map(|part| {
        let part = part.trim_start_matches([' ', '\t']);
        if part.is_empty() {
            return None;
        }
        Some(match part.split_once(' ') {
            Some((k, val)) => (k, Some(val.trim_start_matches([' ', '\t']))),
            None => (part, None),
        })
    })
}

fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim_end_matches([' ', '\t']);
    if name.is_empty() {
        return Err("a set name is needed".into());
    }
    if name.len() > NAME_MAX {
        return Err(format!("set name longer than {NAME_MAX} bytes"));
    }
    if name.contains([' ', '\t']) {
        return Err("spaces not allowed in dataset names".into());
    }
    Ok(name.to_string())
}

/// A size as Suricata's `ParseSizeString` reads one (`16mb`, `1 gb`, `4096`; units of 1024);
/// `None` when it does not parse (Suricata then warns and keeps the default).
fn size(v: &str) -> Option<u64> {
    let v = v.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..digits].parse().ok()?;
    let scale: u64 = match v[digits..].trim().to_ascii_lowercase().as_str() {
        "" => 1,
        "kb" | "kib" => 1 << 10,
        "mb" | "mib" => 1 << 20,
        "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Which file options a declaration gave (each at most once; `state` with neither of the
/// others).
#[derive(Default)]
struct Given {
    load: bool,
    save: bool,
    state: bool,
}

/// Reads the options after the fixed fields into `decl`; `save` and `state` only for
/// `dataset`.
fn decl_option(
    decl: &mut Decl,
    given: &mut Given,
    key: &str,
    val: &str,
    dataset: bool,
) -> Result<(), String> {
    let once = |flag: &mut bool| {
        if std::mem::replace(flag, true) {
            Err(format!("'{key}' can only appear once"))
        } else {
            Ok(())
        }
    };
    match key {
        "type" => {
            decl.kind = Some(DataType::parse(val).ok_or_else(|| format!("bad type {val:?}"))?);
        }
        "load" => {
            once(&mut given.load)?;
            decl.load = Some(val.to_string());
        }
        "save" if dataset => {
            once(&mut given.save)?;
            decl.save = Some(val.to_string());
        }
        "state" if dataset => {
            once(&mut given.state)?;
            decl.load = Some(val.to_string());
            decl.save = Some(val.to_string());
        }
        // A bad memcap keeps the default, as Suricata does; hashsize has no meaning here.
        "memcap" => decl.memcap = size(val).unwrap_or(0),
        "hashsize" => {}
        "format" if val == "csv" => {}
        "format" | "value_key" | "array_key" | "context_key" => {
            return Err(format!("{key}: JSON-enriched sets are not supported"));
        }
        // Suricata ignores options it does not know after the fixed fields.
        _ => {}
    }
    if given.state && (given.load || given.save) {
        return Err("'state' can not be mixed with 'load' and 'save'".into());
    }
    Ok(())
}

/// Parses `dataset:` (Suricata's `DetectDatasetParse` and setup checks).
pub fn parse_dataset(v: &str) -> Result<DatasetUse, String> {
    let mut it = options(v);
    let (cmd, _) = it
        .next()
        .filter(|(_, val)| val.is_none_or(str::is_empty))
        .ok_or("dataset: a command comes first")?;
    let (name, _) = it
        .next()
        .filter(|(_, val)| val.is_none_or(str::is_empty))
        .ok_or("dataset: a set name follows the command")?;
    let cmd = match cmd {
        "set" => Cmd::Set,
        "unset" => Cmd::Unset,
        "isset" => Cmd::IsSet,
        "isnotset" => Cmd::IsNotSet,
        other => return Err(format!("dataset action {other:?} is not supported")),
    };
    let mut decl = Decl {
        name: check_name(name)?,
        ..Decl::default()
    };
    let mut given = Given::default();
    for (key, val) in it {
        match val {
            Some(val) => decl_option(&mut decl, &mut given, key, val, true)
                .map_err(|e| format!("dataset: {e}"))?,
            None if key == "remove_key" => {
                return Err("dataset: JSON-enriched sets are not supported".into())
            }
            None => return Err(format!("dataset: option {key:?} needs a value")),
        }
    }
    Ok(DatasetUse {
        op: Op::Cmd(cmd),
        decl,
        set: std::sync::OnceLock::new(),
    })
}

/// Parses `datarep:` (Suricata's `DetectDatarepParse`).
pub fn parse_datarep(v: &str) -> Result<DatasetUse, String> {
    let mut fixed = Vec::new();
    let mut decl = Decl::default();
    let mut given = Given::default();
    for (key, val) in options(v) {
        if fixed.len() < 3 {
            if val.is_some() {
                return Err(format!(
                    "datarep: {key:?}: name, operator and value come first"
                ));
            }
            fixed.push(key);
            continue;
        }
        let val = val.ok_or_else(|| format!("datarep: option {key:?} needs a value"))?;
        decl_option(&mut decl, &mut given, key, val, false).map_err(|e| format!("datarep: {e}"))?;
    }
    let [name, op, value] = fixed[..] else {
        return Err("datarep: needs a name, an operator and a value".into());
    };
    decl.name = check_name(name).map_err(|e| format!("datarep: {e}"))?;
    let op = match op {
        ">" => RepOp::Gt,
        "<" => RepOp::Lt,
        "==" => RepOp::Eq,
        other => return Err(format!("datarep: unknown operator {other:?}")),
    };
    let value: u16 = value
        .parse()
        .map_err(|_| format!("datarep: value {value:?} is not 0..65535"))?;
    if decl.load.is_some() && decl.kind.is_none() {
        return Err("datarep: if load is used type must be set as well".into());
    }
    Ok(DatasetUse {
        op: Op::Rep(op, value),
        decl,
        set: std::sync::OnceLock::new(),
    })
}

/// A named set shared by the rules that name it.
#[derive(Debug)]
pub struct Dataset {
    name: String,
    kind: DataType,
    load: Option<PathBuf>,
    save: Option<PathBuf>,
    memcap: u64,
    inner: Mutex<Inner>,
    /// Adds refused by the memcap (this set's, and the engine's total).
    refused: AtomicU64,
    refused_total: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Values and their reputation (0 for plain datasets).
    map: HashMap<Box<[u8]>, u16>,
    bytes: u64,
    /// Changed by traffic since it was loaded (only a changed set is saved).
    dirty: bool,
}

impl Dataset {
    fn new(
        d: &Decl,
        kind: DataType,
        load: Option<PathBuf>,
        save: Option<PathBuf>,
        refused_total: Arc<AtomicU64>,
    ) -> Dataset {
        let (name, memcap) = (&d.name, d.memcap);
        Dataset {
            name: name.to_string(),
            kind,
            load,
            save,
            memcap: if memcap == 0 { DEFAULT_MEMCAP } else { memcap },
            inner: Mutex::new(Inner::default()),
            refused: AtomicU64::new(0),
            refused_total,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The set's type.
    pub fn kind(&self) -> DataType {
        self.kind
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when the set holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds refused because the set was at its memcap.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Whether `data` is in the set.
    pub fn contains(&self, data: &[u8]) -> bool {
        self.kind
            .key(data)
            .is_some_and(|k| self.lock().map.contains_key(&k))
    }

    /// Adds a value with a reputation: `Some(true)` when new, `Some(false)` when already
    /// there, `None` when the memcap refused it.
    fn insert(&self, key: Box<[u8]>, rep: u16) -> Option<bool> {
        let mut g = self.lock();
        if g.map.contains_key(&key) {
            return Some(false);
        }
        let cost = key.len() as u64 + ENTRY_OVERHEAD;
        if g.bytes + cost > self.memcap {
            self.refused.fetch_add(1, Ordering::Relaxed);
            self.refused_total.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        g.bytes += cost;
        g.map.insert(key, rep);
        g.dirty = true;
        Some(true)
    }

    fn apply(&self, op: Op, data: &[u8]) -> bool {
        let Some(key) = self.kind.key(data) else {
            // Suricata: an empty buffer never matches; a lookup of the wrong length fails,
            // which `isnotset` takes as absent.
            return !data.is_empty() && op == Op::Cmd(Cmd::IsNotSet);
        };
        match op {
            Op::Cmd(Cmd::Set) => self.insert(key, 0) == Some(true),
            Op::Cmd(Cmd::Unset) => {
                let mut g = self.lock();
                let removed = g.map.remove(&key).is_some();
                if removed {
                    g.bytes -= key.len() as u64 + ENTRY_OVERHEAD;
                    g.dirty = true;
                }
                removed
            }
            Op::Cmd(Cmd::IsSet) => self.lock().map.contains_key(&key),
            Op::Cmd(Cmd::IsNotSet) => !self.lock().map.contains_key(&key),
            Op::Rep(cmp, value) => match self.lock().map.get(&key) {
                Some(&rep) => match cmp {
                    RepOp::Gt => rep > value,
                    RepOp::Lt => rep < value,
                    RepOp::Eq => rep == value,
                },
                None => false,
            },
        }
    }

    /// Reads the `load` file: one value per line (`value,reputation` for reputation sets;
    /// the two kinds may not mix). A value that does not decode fails the load (file:line),
    /// except digests, which Suricata skips.
    fn read(&self, path: &Path, create: bool) -> Result<(), String> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("dataset {}: {}: {e}", self.name, path.display())),
        };
        let mut with_rep = None;
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]);
            let line = line.trim_end_matches('\r');
            let fields: Vec<&str> = line.split(',').collect();
            if line.is_empty() || fields.len() > 2 {
                continue;
            }
            let rep_line = fields.len() == 2;
            if *with_rep.get_or_insert(rep_line) != rep_line {
                return Err(format!(
                    "dataset {}: {}:{}: cannot mix dataset and datarep values",
                    self.name,
                    path.display(),
                    n + 1
                ));
            }
            let parsed = self
                .kind
                .decode(fields[0])
                .and_then(|k| match fields.get(1) {
                    Some(r) => r
                        .parse::<u16>()
                        .map(|r| (k, r))
                        .map_err(|_| format!("invalid datarep value {r:?}")),
                    None => Ok((k, 0)),
                });
            match parsed {
                // Suricata skips digests that do not decode; other bad values stop the load.
                Err(_) if matches!(self.kind, DataType::Md5 | DataType::Sha256) => {}
                Err(e) => {
                    return Err(format!(
                        "dataset {}: {}:{}: {e}",
                        self.name,
                        path.display(),
                        n + 1
                    ))
                }
                Ok((k, rep)) => {
                    if self.insert(k, rep).is_none() {
                        return Err(format!(
                            "dataset {}: {} does not fit in its memcap of {} bytes",
                            self.name,
                            path.display(),
                            self.memcap
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the set to its `save` file (one value per line, sorted), replacing it whole,
    /// when traffic changed it since it was loaded.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.save else {
            return Ok(());
        };
        let mut lines: Vec<String> = {
            let mut g = self.lock();
            if !g.dirty {
                return Ok(());
            }
            g.dirty = false;
            g.map.keys().map(|k| self.kind.encode(k)).collect()
        };
        lines.sort();
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp-sekisho");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    fn dynamic(&self) -> bool {
        self.save.is_some()
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        if let Err(e) = self.save() {
            tracing::warn!(dataset = %self.name, error = %e, "dataset could not be saved");
        }
    }
}

/// The sets of the running rule set, kept across reloads so that dynamic sets keep what they
/// learned.
#[derive(Debug, Default)]
pub struct Datasets {
    live: Mutex<HashMap<String, Arc<Dataset>>>,
}

impl Datasets {
    /// Starts binding the sets of a rule set being loaded; `data_dir` holds `save` and
    /// `state` files.
    pub fn resolver(&self, data_dir: &Path, refused: Arc<AtomicU64>) -> Resolver<'_> {
        Resolver {
            registry: self,
            refused,
            data_dir: data_dir.to_path_buf(),
            prev: self.live.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            now: HashMap::new(),
        }
    }

    /// The live set of this name.
    pub fn get(&self, name: &str) -> Option<Arc<Dataset>> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(&name.to_ascii_lowercase()).cloned()
    }
}

/// Binds the `dataset` / `datarep` keywords of one rule set load to sets.
pub struct Resolver<'a> {
    registry: &'a Datasets,
    refused: Arc<AtomicU64>,
    data_dir: PathBuf,
    prev: HashMap<String, Arc<Dataset>>,
    now: HashMap<String, Arc<Dataset>>,
}

impl Resolver<'_> {
    /// Binds `u` to its set, creating (and loading) it on first use; `rule_file` places a
    /// relative `load`.
    pub fn bind(&mut self, u: &DatasetUse, rule_file: &Path) -> Result<(), String> {
        let set = self.set_for(&u.decl, rule_file)?;
        // A rule's keyword is bound once; a second bind of the same keyword keeps the first.
        let _ = u.set.set(set);
        Ok(())
    }

    fn set_for(&mut self, d: &Decl, rule_file: &Path) -> Result<Arc<Dataset>, String> {
        let key = d.name.to_ascii_lowercase();
        let (load, save) = self.paths(d, rule_file)?;
        if let Some(set) = self.now.get(&key) {
            if d.kind.is_some_and(|k| k != set.kind) {
                return Err(format!(
                    "dataset {} already exists and is of type {}",
                    d.name,
                    set.kind.name()
                ));
            }
            if (load.is_some() || save.is_some()) && (load != set.load || save != set.save) {
                return Err(format!(
                    "dataset {}: load/save/state differ from its first declaration",
                    d.name
                ));
            }
            return Ok(Arc::clone(set));
        }
        let kind = d
            .kind
            .ok_or_else(|| format!("dataset {} not defined (no type given)", d.name))?;
        let set = match self.prev.get(&key) {
            Some(old)
                if old.dynamic() && old.kind == kind && old.load == load && old.save == save =>
            {
                Arc::clone(old)
            }
            _ => {
                let set = Dataset::new(
                    d,
                    kind,
                    load.clone(),
                    save.clone(),
                    Arc::clone(&self.refused),
                );
                if let Some(l) = &load {
                    let create = save.as_ref() == Some(l);
                    set.read(l, create)?;
                    set.lock().dirty = false;
                }
                Arc::new(set)
            }
        };
        self.now.insert(key, Arc::clone(&set));
        Ok(set)
    }

    /// The resolved `load` and `save` paths, as Suricata's `SetupLoadPath` / `SetupSavePath`.
    fn paths(
        &self,
        d: &Decl,
        rule_file: &Path,
    ) -> Result<(Option<PathBuf>, Option<PathBuf>), String> {
        let save = d.save.as_deref().map(|s| self.save_path(s)).transpose()?;
        let load = match (&d.load, &d.save) {
            (Some(l), Some(s)) if l == s => save.clone(),
            (Some(l), _) => Some(self.load_path(l, rule_file)),
            (None, _) => None,
        };
        Ok((load, save))
    }

    fn save_path(&self, s: &str) -> Result<PathBuf, String> {
        let p = Path::new(s);
        if p.is_absolute() {
            return Err(format!("absolute paths not allowed: {s}"));
        }
        if p.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!("directory traversals not allowed: {s}"));
        }
        Ok(self.data_dir.join(p))
    }

    fn load_path(&self, l: &str, rule_file: &Path) -> PathBuf {
        let p = Path::new(l);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        let beside = rule_file.parent().map(|d| d.join(p));
        match beside {
            Some(b) if b.exists() => b,
            _ => self.data_dir.join(p),
        }
    }

    /// Makes this load's sets the live ones (sets no rule names any more are dropped, and
    /// saved if they have a `save` file).
    pub fn commit(self) {
        let mut live = self.registry.live.lock().unwrap_or_else(|e| e.into_inner());
        *live = self.now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_round_trip_as_suricata_writes_them() {
        let ip = DataType::Ip;
        let v6 = ip.decode("2001:db8::1").unwrap();
        assert_eq!(ip.encode(&v6), "2001:0db8:0000:0000:0000:0000:0000:0001");
        assert_eq!(ip.decode(&ip.encode(&v6)).unwrap(), v6);
        let mapped = ip.decode("::ffff:10.0.0.1").unwrap();
        assert_eq!(ip.encode(&mapped), "10.0.0.1");
        assert_eq!(ip.key(&[10, 0, 0, 1]).unwrap(), mapped);
        assert_eq!(
            DataType::Ipv4.encode(&DataType::Ipv4.decode("1.2.3.4").unwrap()),
            "1.2.3.4"
        );
        let md5 = DataType::Md5
            .decode("0123456789ABCDEF0123456789abcdef")
            .unwrap();
        assert_eq!(
            DataType::Md5.encode(&md5),
            "0123456789abcdef0123456789abcdef"
        );
        assert!(DataType::Md5.decode("0123").is_err(), "a digest's length");
        assert_eq!(
            DataType::String.encode(b"Mozilla/4.0 (compatible; )"),
            "TW96aWxsYS80LjAgKGNvbXBhdGlibGU7ICk="
        );
        assert!(
            DataType::String.decode("bm90 IGJhc2U2NA==").is_err(),
            "no blanks inside"
        );
    }

    #[test]
    fn options_parse_as_suricata_splits_them() {
        let u = parse_dataset("set  ,ua-seen, type string, state ua.lst").unwrap();
        assert_eq!(u.op, Op::Cmd(Cmd::Set));
        assert_eq!(u.decl.kind, Some(DataType::String));
        assert_eq!(u.decl.load.as_deref(), Some("ua.lst"));
        assert_eq!(u.decl.save.as_deref(), Some("ua.lst"));
        assert!(parse_dataset("isset,x,type String")
            .unwrap_err()
            .contains("bad type"));
        assert!(parse_dataset("isset,x,state a,state b")
            .unwrap_err()
            .contains("once"));
        assert_eq!(
            parse_dataset("isset,x,type md5,memcap 1mb")
                .unwrap()
                .decl
                .memcap,
            1 << 20
        );
        assert_eq!(
            parse_dataset("isset,x,type md5,memcap lots")
                .unwrap()
                .decl
                .memcap,
            0
        );
        assert!(
            parse_dataset("isset,x,type md5,unknown_opt y").is_ok(),
            "ignored"
        );
        let r = parse_datarep(
            "dns_md5, >, 200, load dns_md5.rep, type md5, memcap 100mb, hashsize 2048",
        )
        .unwrap();
        assert_eq!(r.op, Op::Rep(RepOp::Gt, 200));
    }
}
