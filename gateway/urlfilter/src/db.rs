//! The list database: category and list entries, loaded from the UT1 / squidGuard layout
//! (`<dir>/<category>/{domains,urls,expressions}`) and from our own list files, and the matcher.
//!
//! * Domain entries are kept as 64-bit keyed hashes (foldhash, a random seed per load) in one
//!   open-addressing table, 16 bytes per entry; a host is looked up by each of its label suffixes
//!   (`a.b.example.org`, `b.example.org`, `example.org`, `org`), so `amex.com` matches `amex.com`
//!   and `www.amex.com` but never `aamex.com`. The chance that an unlisted suffix collides with a
//!   listed one is below 5e6 / 2^64 ≈ 3e-13 per lookup.
//! * URL entries (host plus path prefix) are keyed by host with a leading `www`/`wwwN` label
//!   removed (as squidGuard does); the path matches as a prefix ending at a segment boundary.
//! * IP-literal entries (in `domains` files or our lists) match IP hosts.
//! * Expressions are regexes (case-insensitive, the linear-time `regex` engine, bounded in
//!   number and compiled size) over `host/path?query`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::BufRead;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hashbrown::HashTable;

use crate::canonical::{canonicalize, Canonical, MAX_HOST};

/// What kind of entry matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchKind {
    /// A domain entry (the domain and its subdomains).
    Domain,
    /// An IP-literal entry.
    Ip,
    /// A URL entry (host plus path prefix).
    Url,
    /// A regular expression.
    Expression,
}

impl MatchKind {
    /// Lower-case name (`domain`, `ip`, `url`, `expression`).
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::Domain => "domain",
            MatchKind::Ip => "ip",
            MatchKind::Url => "url",
            MatchKind::Expression => "expression",
        }
    }

    /// The squidGuard file holding entries of this kind.
    fn file_name(self) -> &'static str {
        match self {
            MatchKind::Domain | MatchKind::Ip => "domains",
            MatchKind::Url => "urls",
            MatchKind::Expression => "expressions",
        }
    }
}

/// Where a name's entries come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A category folder (UT1 / squidGuard layout).
    Category(PathBuf),
    /// One of our own list files (or a folder in the squidGuard layout).
    List(PathBuf),
}

/// A category or list.
#[derive(Clone, Debug)]
pub struct Name {
    /// The category (folder) or list name.
    pub name: String,
    /// Operator lists take precedence over categories.
    pub is_list: bool,
    /// Where its entries were read from (several folders may feed one category).
    pub sources: Vec<PathBuf>,
    /// Entries loaded, by kind: domains, IPs, URLs, expressions.
    pub counts: [usize; 4],
}

/// One matching entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// Index into [`Db::names`].
    pub name: u16,
    /// Entry kind.
    pub kind: MatchKind,
    /// The entry as stored (canonical form; for expressions the pattern).
    pub entry: String,
}

/// A malformed list line (reported, skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// File.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Errors that stop a load (unreadable folders, too many expressions …).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// A file or folder could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A limit was exceeded.
    #[error("{0}")]
    Limit(String),
}

/// Most line errors kept per load (the rest are counted).
pub const MAX_LINE_ERRORS: usize = 1000;
/// Most names (categories plus lists).
pub const MAX_NAMES: usize = 4096;
/// Most labels of a host looked up (a DNS name has at most 127).
const MAX_LABELS: usize = 128;
/// Most network (CIDR) entries; they are scanned linearly for IP hosts.
pub const MAX_CIDRS: usize = 10_000;
/// Longest list line accepted.
const MAX_LINE: usize = 4096;

#[derive(Clone, Debug)]
struct UrlEntry {
    /// Path prefix, with `?query` when the entry had one.
    prefix: Box<str>,
    /// The entry as shown (`host/path`).
    entry: Box<str>,
    set: u32,
}

/// The compiled lists.
pub struct Db {
    names: Vec<Name>,
    by_name: HashMap<String, u16>,
    aliases: HashMap<String, String>,
    sets: Vec<Box<[u16]>>,
    set_ids: HashMap<Box<[u16]>, u32>,
    hasher: foldhash::quality::RandomState,
    /// (hash of the domain, set id).
    domains: HashTable<(u64, u32)>,
    ips: HashMap<IpAddr, u32>,
    /// Network entries (`10.20.0.0/16`), scanned for IP hosts; at most [`MAX_CIDRS`].
    cidrs: Vec<(ipnet::IpNet, u32)>,
    /// Keyed by the hash of the host without a leading `www` label.
    urls: HashTable<(u64, Vec<UrlEntry>)>,
    url_count: usize,
    exprs: Option<regex::RegexSet>,
    expr_meta: Vec<(u16, Box<str>)>,
    pending_exprs: Vec<(u16, String, PathBuf, usize)>,
    max_expressions: usize,
    errors: Vec<LineError>,
    error_count: usize,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("names", &self.names.len())
            .field("domains", &self.domains.len())
            .field("ips", &self.ips.len())
            .field("urls", &self.url_count)
            .field("expressions", &self.expr_meta.len())
            .finish()
    }
}

/// Removes a leading `www.` / `wwwN.` label (squidGuard's URL normalisation).
fn strip_www(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix("www") {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if let Some(after) = rest[digits..].strip_prefix('.') {
            if after.contains('.') {
                return after;
            }
        }
    }
    host
}

/// A domain entry in canonical form, or why it is not one.
fn canonical_domain(line: &str) -> Result<String, String> {
    let d = line.trim_start_matches("*.").trim_start_matches('.');
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() {
        return Err("empty domain".into());
    }
    if d.len() > MAX_HOST {
        return Err(format!("domain longer than {MAX_HOST} bytes"));
    }
    let simple = d.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
    }) && !d.contains("..");
    if simple {
        return Ok(d.to_string());
    }
    if d.bytes()
        .any(|b| b.is_ascii_whitespace() || b"/?#@:[]\\\"<>".contains(&b))
    {
        return Err(format!("not a domain: {d:?}"));
    }
    let c = canonicalize(&format!("http://{d}/"));
    if c.host.is_empty() || c.host.contains('%') {
        return Err(format!("not a domain: {d:?}"));
    }
    Ok(c.host)
}

impl Db {
    /// An empty database; `max_expressions` bounds the regexes loaded.
    pub fn new(max_expressions: usize) -> Self {
        Db {
            names: Vec::new(),
            by_name: HashMap::new(),
            aliases: HashMap::new(),
            sets: Vec::new(),
            set_ids: HashMap::new(),
            hasher: foldhash::quality::RandomState::default(),
            domains: HashTable::new(),
            ips: HashMap::new(),
            cidrs: Vec::new(),
            urls: HashTable::new(),
            url_count: 0,
            exprs: None,
            expr_meta: Vec::new(),
            pending_exprs: Vec::new(),
            max_expressions,
            errors: Vec::new(),
            error_count: 0,
        }
    }

    /// Every category and list.
    pub fn names(&self) -> &[Name] {
        &self.names
    }

    /// The id of a category or list by name (aliases such as UT1's `porn` → `adult` resolve).
    pub fn id(&self, name: &str) -> Option<u16> {
        let name = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        self.by_name.get(name).copied()
    }

    /// Name aliases (`porn` → `adult`).
    pub fn aliases(&self) -> &HashMap<String, String> {
        &self.aliases
    }

    /// Malformed lines (at most [`MAX_LINE_ERRORS`]) and how many there were in all.
    pub fn errors(&self) -> (&[LineError], usize) {
        (&self.errors, self.error_count)
    }

    /// Domain entries (distinct domains across all names).
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// URL entries.
    pub fn url_count(&self) -> usize {
        self.url_count
    }

    /// IP entries (addresses and networks).
    pub fn ip_count(&self) -> usize {
        self.ips.len() + self.cidrs.len()
    }

    /// Compiled expressions.
    pub fn expression_count(&self) -> usize {
        self.expr_meta.len()
    }

    /// The file an entry of `kind` for name `id` came from (the first source).
    pub fn list_file(&self, id: u16, kind: MatchKind) -> String {
        let Some(n) = self.names.get(id as usize) else {
            return String::new();
        };
        match n.sources.first() {
            Some(p) if p.is_dir() => p.join(kind.file_name()).display().to_string(),
            Some(p) => p.display().to_string(),
            None => String::new(),
        }
    }

    fn error(&mut self, file: &Path, line: usize, message: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_LINE_ERRORS {
            self.errors.push(LineError {
                file: file.to_path_buf(),
                line,
                message,
            });
        }
    }

    fn name_id(&mut self, name: &str, is_list: bool, source: &Path) -> Result<u16, DbError> {
        if let Some(&id) = self.by_name.get(name) {
            let n = &mut self.names[id as usize];
            if n.is_list != is_list {
                return Err(DbError::Limit(format!(
                    "{}: the name {name:?} is both a category and a list",
                    source.display()
                )));
            }
            n.sources.push(source.to_path_buf());
            return Ok(id);
        }
        if self.names.len() >= MAX_NAMES {
            return Err(DbError::Limit(format!(
                "more than {MAX_NAMES} categories and lists"
            )));
        }
        let id = self.names.len() as u16;
        self.names.push(Name {
            name: name.to_string(),
            is_list,
            sources: vec![source.to_path_buf()],
            counts: [0; 4],
        });
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    fn intern(&mut self, set: Box<[u16]>) -> u32 {
        if let Some(&id) = self.set_ids.get(&set) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.sets.push(set.clone());
        self.set_ids.insert(set, id);
        id
    }

    /// The set `old ∪ {name}`.
    fn add_to_set(&mut self, old: Option<u32>, name: u16) -> u32 {
        let mut v: Vec<u16> = old
            .and_then(|o| self.sets.get(o as usize))
            .map(|s| s.to_vec())
            .unwrap_or_default();
        if v.contains(&name) {
            return old.unwrap_or(0);
        }
        v.push(name);
        v.sort_unstable();
        self.intern(v.into_boxed_slice())
    }

    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    fn add_domain(&mut self, domain: &str, name: u16) {
        let h = self.hash(domain);
        let old = self.domains.find(h, |e| e.0 == h).map(|e| e.1);
        let set = self.add_to_set(old, name);
        match self.domains.find_mut(h, |e| e.0 == h) {
            Some(e) => e.1 = set,
            None => {
                self.domains.insert_unique(h, (h, set), |e| e.0);
            }
        }
        self.names[name as usize].counts[0] += 1;
    }

    fn add_ip(&mut self, ip: IpAddr, name: u16) {
        let old = self.ips.get(&ip).copied();
        let set = self.add_to_set(old, name);
        self.ips.insert(ip, set);
        self.names[name as usize].counts[1] += 1;
    }

    fn add_cidr(&mut self, net: ipnet::IpNet, name: u16) -> Result<(), String> {
        if let Some(i) = self.cidrs.iter().position(|(n, _)| *n == net) {
            let set = self.add_to_set(Some(self.cidrs[i].1), name);
            self.cidrs[i].1 = set;
        } else {
            if self.cidrs.len() >= MAX_CIDRS {
                return Err(format!("more than {MAX_CIDRS} network entries"));
            }
            let set = self.add_to_set(None, name);
            self.cidrs.push((net, set));
        }
        self.names[name as usize].counts[1] += 1;
        Ok(())
    }

    /// Adds a URL entry (`host/path…`, scheme optional).
    fn add_url(&mut self, line: &str, name: u16) -> Result<(), String> {
        let input = if line.contains("://") {
            line.to_string()
        } else {
            format!("http://{line}")
        };
        let c = canonicalize(&input);
        if c.host.is_empty() || c.host.len() > MAX_HOST {
            return Err(format!("not a URL: {line:?}"));
        }
        let host = strip_www(&c.host).to_string();
        let mut prefix = c.path.clone();
        if let Some(q) = &c.query {
            prefix.push('?');
            prefix.push_str(q);
        }
        let entry = format!("{}{}", c.host, prefix);
        let h = self.hash(&host);
        // The entry's set so far (a URL listed by several categories), plus this name.
        let old = self
            .urls
            .find(h, |e| e.0 == h)
            .and_then(|e| e.1.iter().find(|u| *u.prefix == *prefix))
            .map(|u| u.set);
        let set = self.add_to_set(old, name);
        let bucket = match self.urls.find_mut(h, |e| e.0 == h) {
            Some(e) => &mut e.1,
            None => {
                &mut self
                    .urls
                    .insert_unique(h, (h, Vec::new()), |e| e.0)
                    .into_mut()
                    .1
            }
        };
        match bucket.iter_mut().find(|u| *u.prefix == *prefix) {
            Some(u) => u.set = set,
            None => {
                bucket.push(UrlEntry {
                    prefix: prefix.into(),
                    entry: entry.into(),
                    set,
                });
                self.url_count += 1;
            }
        }
        self.names[name as usize].counts[2] += 1;
        Ok(())
    }

    fn for_lines(
        &mut self,
        path: &Path,
        mut f: impl FnMut(&mut Self, &str, usize) -> Result<(), String>,
    ) -> Result<(), DbError> {
        let file = std::fs::File::open(path).map_err(|e| DbError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // Size hint for the domain table: ~20 bytes per line.
        if let Ok(m) = file.metadata() {
            let want = (m.len() / 20) as usize;
            if path.file_name().is_some_and(|n| n == "domains") {
                self.domains.reserve(want.min(50_000_000), |e| e.0);
            }
        }
        let mut r = std::io::BufReader::with_capacity(1 << 16, file);
        let mut buf = Vec::with_capacity(256);
        let mut lineno = 0usize;
        loop {
            buf.clear();
            let n = r.read_until(b'\n', &mut buf).map_err(|e| DbError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            lineno += 1;
            if buf.len() > MAX_LINE {
                self.error(path, lineno, format!("line longer than {MAX_LINE} bytes"));
                continue;
            }
            let Ok(text) = std::str::from_utf8(&buf) else {
                self.error(path, lineno, "not UTF-8".into());
                continue;
            };
            let line = text.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Err(m) = f(self, line, lineno) {
                self.error(path, lineno, m);
            }
        }
        Ok(())
    }

    fn load_domains_file(&mut self, path: &Path, name: u16) -> Result<(), DbError> {
        self.for_lines(path, |db, line, _| db.add_domain_or_ip(line, name))
    }

    fn add_domain_or_ip(&mut self, line: &str, name: u16) -> Result<(), String> {
        let bare = line.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let ip = match ip {
                IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6)),
                v4 => v4,
            };
            self.add_ip(ip, name);
            return Ok(());
        }
        if let Ok(net) = line.parse::<ipnet::IpNet>() {
            let net = net.trunc();
            if net.prefix_len() == net.max_prefix_len() {
                self.add_ip(net.addr(), name);
                return Ok(());
            }
            return self.add_cidr(net, name);
        }
        if line.contains('/') {
            return Err(format!("a URL in a domains file: {line:?}"));
        }
        let d = canonical_domain(line)?;
        if let Ok(ip) = d.parse::<IpAddr>() {
            self.add_ip(ip, name);
        } else {
            self.add_domain(&d, name);
        }
        Ok(())
    }

    fn load_urls_file(&mut self, path: &Path, name: u16) -> Result<(), DbError> {
        self.for_lines(path, |db, line, _| db.add_url(line, name))
    }

    fn load_expressions_file(&mut self, path: &Path, name: u16) -> Result<(), DbError> {
        let p = path.to_path_buf();
        self.for_lines(path, |db, line, lineno| {
            // Bounded: one over the limit is kept so `finish` can name it.
            if db.pending_exprs.len() <= db.max_expressions {
                db.pending_exprs
                    .push((name, line.to_string(), p.clone(), lineno));
            }
            Ok(())
        })
    }

    /// Adds a category folder (`domains`, `urls`, `expressions` inside).
    pub fn add_category_dir(
        &mut self,
        name: &str,
        dir: &Path,
        is_list: bool,
    ) -> Result<(), DbError> {
        let id = self.name_id(name, is_list, dir)?;
        let domains = dir.join("domains");
        if domains.is_file() {
            self.load_domains_file(&domains, id)?;
        }
        let urls = dir.join("urls");
        if urls.is_file() {
            self.load_urls_file(&urls, id)?;
        }
        let exprs = dir.join("expressions");
        if exprs.is_file() {
            self.load_expressions_file(&exprs, id)?;
        }
        Ok(())
    }

    /// Adds every category under `dir` (sub-folders), or only those in `only`. A small file
    /// naming a sibling folder (how UT1's `porn` → `adult` link is often checked out) and a
    /// symbolic link to a sibling folder become aliases.
    pub fn add_categories(&mut self, dir: &Path, only: Option<&[String]>) -> Result<(), DbError> {
        let io = |e: std::io::Error| DbError::Io {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            let link = std::fs::symlink_metadata(&path)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if link {
                if let Ok(target) = std::fs::read_link(&path) {
                    let t = target.to_string_lossy().trim_end_matches('/').to_string();
                    if !t.contains('/') && dir.join(&t).is_dir() {
                        self.aliases.insert(name, t);
                        continue;
                    }
                }
            }
            if path.is_dir() {
                if only.is_some_and(|o| !o.contains(&name)) {
                    continue;
                }
                self.add_category_dir(&name, &path, false)?;
            } else if path.is_file()
                && std::fs::metadata(&path)
                    .map(|m| m.len() < 256)
                    .unwrap_or(false)
            {
                if let Ok(t) = std::fs::read_to_string(&path) {
                    let t = t.trim();
                    if !t.is_empty()
                        && !t.contains(['/', '\n', ' '])
                        && t != name
                        && dir.join(t).is_dir()
                    {
                        self.aliases.insert(name, t.to_string());
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds one of our own lists: a folder in the squidGuard layout, or a file whose lines are
    /// domains (`example.org`, `*.example.org`), IP literals or URLs (`host/path`, scheme
    /// optional); `#` starts a comment.
    pub fn add_list(&mut self, name: &str, path: &Path) -> Result<(), DbError> {
        if path.is_dir() {
            return self.add_category_dir(name, path, true);
        }
        let id = self.name_id(name, true, path)?;
        self.for_lines(path, |db, line, _| {
            let line = line.split(" #").next().unwrap_or(line).trim();
            let hostish = line.split("://").last().unwrap_or(line);
            if line.parse::<ipnet::IpNet>().is_ok() {
                db.add_domain_or_ip(line, id)
            } else if line.contains("://") || hostish.contains('/') {
                db.add_url(line, id)
            } else {
                db.add_domain_or_ip(line, id)
            }
        })
    }

    /// Compiles the expressions collected so far. Called once after the last `add_*`.
    pub fn finish(&mut self) -> Result<(), DbError> {
        let pending = std::mem::take(&mut self.pending_exprs);
        if pending.len() > self.max_expressions {
            return Err(DbError::Limit(format!(
                "more than max_expressions = {} expressions ({}:{} is the first one over)",
                self.max_expressions,
                pending[self.max_expressions].2.display(),
                pending[self.max_expressions].3
            )));
        }
        let mut pats = Vec::new();
        for (name, pat, file, line) in pending {
            match regex::RegexBuilder::new(&pat)
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
            {
                Ok(_) => {
                    pats.push(pat.clone());
                    self.expr_meta.push((name, pat.into()));
                    self.names[name as usize].counts[3] += 1;
                }
                Err(e) => {
                    let msg = e.to_string();
                    let first = msg.lines().last().unwrap_or("invalid").trim().to_string();
                    self.error(&file, line, format!("bad expression: {first}"));
                }
            }
        }
        if !pats.is_empty() {
            let set = regex::RegexSetBuilder::new(&pats)
                .case_insensitive(true)
                .size_limit(64 << 20)
                .dfa_size_limit(16 << 20)
                .build()
                .map_err(|e| DbError::Limit(format!("expressions do not compile together: {e}")))?;
            self.exprs = Some(set);
        }
        self.set_ids = HashMap::new();
        self.domains.shrink_to_fit(|e| e.0);
        Ok(())
    }

    fn push_set(&self, set: u32, kind: MatchKind, entry: &str, out: &mut Vec<Match>) {
        if let Some(s) = self.sets.get(set as usize) {
            for &name in s.iter() {
                out.push(Match {
                    name,
                    kind,
                    entry: entry.to_string(),
                });
            }
        }
    }

    /// Host-level matches (domain and IP entries, and URL entries for a whole host): what can be
    /// decided from a CONNECT host or a TLS SNI before decryption.
    pub fn match_host(&self, host: &str, ip: Option<IpAddr>, out: &mut Vec<Match>) {
        self.match_common(host, ip, None, out);
    }

    /// Every match for a canonical URL.
    pub fn match_url(&self, c: &Canonical, out: &mut Vec<Match>) {
        let mut pq = c.path.clone();
        if let Some(q) = &c.query {
            pq.push('?');
            pq.push_str(q);
        }
        self.match_common(&c.host, c.ip, Some(&pq), out);
        if let Some(set) = &self.exprs {
            let subject = format!("{}{}", c.host, pq);
            for i in set.matches(&subject).iter() {
                if let Some((name, pat)) = self.expr_meta.get(i) {
                    out.push(Match {
                        name: *name,
                        kind: MatchKind::Expression,
                        entry: pat.to_string(),
                    });
                }
            }
        }
    }

    fn match_common(
        &self,
        host: &str,
        ip: Option<IpAddr>,
        path_query: Option<&str>,
        out: &mut Vec<Match>,
    ) {
        if host.is_empty() || host.len() > MAX_HOST {
            return;
        }
        let maybe_ip = host.starts_with('[') || host.as_bytes()[0].is_ascii_digit();
        let ip = ip.or_else(|| {
            if !maybe_ip {
                return None;
            }
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        });
        match ip {
            Some(a) => {
                if let Some(&set) = self.ips.get(&a) {
                    self.push_set(set, MatchKind::Ip, host, out);
                }
                for (net, set) in &self.cidrs {
                    if net.contains(&a) {
                        self.push_set(*set, MatchKind::Ip, &net.to_string(), out);
                    }
                }
            }
            None if !self.domains.is_empty() => {
                let mut start = 0usize;
                for _ in 0..MAX_LABELS {
                    let suffix = &host[start..];
                    let h = self.hash(suffix);
                    if let Some(e) = self.domains.find(h, |e| e.0 == h) {
                        self.push_set(e.1, MatchKind::Domain, suffix, out);
                    }
                    match suffix.find('.') {
                        Some(i) => start += i + 1,
                        None => break,
                    }
                }
            }
            None => {}
        }
        if self.url_count > 0 {
            let key = strip_www(host);
            let h = self.hash(key);
            if let Some(e) = self.urls.find(h, |e| e.0 == h) {
                for u in &e.1 {
                    let hit = match path_query {
                        None => &*u.prefix == "/",
                        Some(pq) => prefix_matches(&u.prefix, pq),
                    };
                    if hit {
                        self.push_set(u.set, MatchKind::Url, &u.entry, out);
                    }
                }
            }
        }
    }
}

/// `prefix` is a prefix of `pq` ending at a boundary: the prefix ends with `/`, `?`, `=` or `&`,
/// or the next byte of `pq` is `/`, `?`, `;` or the end.
fn prefix_matches(prefix: &str, pq: &str) -> bool {
    if !pq.starts_with(prefix) {
        return false;
    }
    if prefix.ends_with(['/', '?', '=', '&']) {
        return true;
    }
    matches!(
        pq.as_bytes().get(prefix.len()),
        None | Some(b'/' | b'?' | b';')
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn db_with(domains: &[&str], urls: &[&str]) -> Db {
        let mut db = Db::new(10);
        let id = db.name_id("cat", false, Path::new("/x/cat")).unwrap();
        for d in domains {
            db.add_domain_or_ip(d, id).unwrap();
        }
        for u in urls {
            db.add_url(u, id).unwrap();
        }
        db.finish().unwrap();
        db
    }

    fn hits(db: &Db, url: &str) -> Vec<String> {
        let mut out = Vec::new();
        db.match_url(&canonicalize(url), &mut out);
        out.into_iter()
            .map(|m| format!("{}:{}", m.kind.as_str(), m.entry))
            .collect()
    }

    #[test]
    fn suffix_matching_edges() {
        let db = db_with(
            &[
                "amex.com",
                "co.uk.example",
                "*.wild.test",
                ".dot.test",
                "xn--bcher-kva.example",
            ],
            &[],
        );
        assert_eq!(hits(&db, "http://amex.com/"), ["domain:amex.com"]);
        assert_eq!(hits(&db, "http://www.amex.com/x"), ["domain:amex.com"]);
        assert_eq!(hits(&db, "http://a.b.c.amex.com/"), ["domain:amex.com"]);
        assert!(hits(&db, "http://aamex.com/").is_empty());
        assert!(hits(&db, "http://amex.com.evil.net/").is_empty());
        assert!(hits(&db, "http://amex.co/").is_empty());
        assert!(hits(&db, "http://com/").is_empty());
        assert!(hits(&db, "http://mex.com/").is_empty());
        assert_eq!(hits(&db, "http://AMEX.COM./"), ["domain:amex.com"]);
        assert_eq!(hits(&db, "http://..www..amex.com../"), ["domain:amex.com"]);
        assert_eq!(hits(&db, "http://x.wild.test/"), ["domain:wild.test"]);
        assert_eq!(hits(&db, "http://dot.test/"), ["domain:dot.test"]);
        assert_eq!(
            hits(&db, "http://bücher.example/"),
            ["domain:xn--bcher-kva.example"]
        );
        assert_eq!(hits(&db, "http://amex%2Ecom/"), ["domain:amex.com"]);
        assert!(hits(&db, "http://amex.com@evil.net/").is_empty());
        assert_eq!(hits(&db, "http://evil.net@amex.com/"), ["domain:amex.com"]);
    }

    #[test]
    fn ip_entries_and_forms() {
        let db = db_with(&["195.127.0.11", "2001:db8::1", "[2001:db8::2]"], &[]);
        assert_eq!(hits(&db, "http://3279880203/x"), ["ip:195.127.0.11"]);
        assert_eq!(hits(&db, "http://0xc3.0177.0.11/"), ["ip:195.127.0.11"]);
        assert_eq!(
            hits(&db, "http://[2001:DB8::1]:8080/"),
            ["ip:[2001:db8::1]"]
        );
        assert_eq!(hits(&db, "http://[2001:db8::2]/"), ["ip:[2001:db8::2]"]);
        assert!(hits(&db, "http://195.127.0.12/").is_empty());
        // Networks.
        let db = db_with(&["10.20.0.0/16", "2001:db8:1::/48", "192.0.2.7/32"], &[]);
        assert_eq!(hits(&db, "http://10.20.3.4/"), ["ip:10.20.0.0/16"]);
        assert_eq!(
            hits(&db, "http://169083908/"),
            ["ip:10.20.0.0/16"],
            "10.20.3.4 in decimal"
        );
        assert!(hits(&db, "http://10.21.0.1/").is_empty());
        assert_eq!(
            hits(&db, "http://[2001:db8:1:ff::9]/"),
            ["ip:2001:db8:1::/48"]
        );
        assert_eq!(hits(&db, "http://192.0.2.7/"), ["ip:192.0.2.7"]);
        assert_eq!(db.ip_count(), 3);
        // An IP host never matches domain suffixes.
        let db = db_with(&["0.11"], &[]);
        assert!(hits(&db, "http://195.127.0.11/").is_empty());
    }

    #[test]
    fn url_prefixes() {
        let db = db_with(
            &[],
            &[
                "evil.test/malware",
                "www.www-strip.test/x/",
                "q.test/index.php?",
                "root.test/#frag",
                "http://sch.test/a",
            ],
        );
        assert_eq!(
            hits(&db, "http://evil.test/malware"),
            ["url:evil.test/malware"]
        );
        assert_eq!(
            hits(&db, "http://evil.test/malware/a.exe"),
            ["url:evil.test/malware"]
        );
        assert_eq!(
            hits(&db, "http://evil.test/malware?x"),
            ["url:evil.test/malware"]
        );
        assert!(hits(&db, "http://evil.test/malwarez").is_empty());
        assert!(hits(&db, "http://evil.test/").is_empty());
        assert!(hits(&db, "http://sub.evil.test/malware").is_empty());
        assert_eq!(
            hits(&db, "http://www2.evil.test/malware"),
            ["url:evil.test/malware"]
        );
        assert_eq!(
            hits(&db, "http://www-strip.test/x/y"),
            ["url:www.www-strip.test/x/"]
        );
        assert_eq!(
            hits(&db, "http://q.test/index.php?a=1"),
            ["url:q.test/index.php?"]
        );
        assert_eq!(hits(&db, "http://root.test/anything"), ["url:root.test/"]);
        assert_eq!(
            hits(&db, "http://evil.test/./malware/../malware/x"),
            ["url:evil.test/malware"]
        );
        assert_eq!(hits(&db, "http://sch.test/a"), ["url:sch.test/a"]);
        let mut out = Vec::new();
        db.match_host("root.test", None, &mut out);
        assert_eq!(out.len(), 1, "a whole-host URL entry decides at CONNECT");
        out.clear();
        db.match_host("evil.test", None, &mut out);
        assert!(out.is_empty(), "a path entry does not block the host");
    }

    #[test]
    fn bad_lines_are_reported() {
        let dir = std::env::temp_dir().join(format!("sekisho-urldb-{}", std::process::id()));
        let cat = dir.join("cat");
        std::fs::create_dir_all(&cat).unwrap();
        std::fs::write(
            cat.join("domains"),
            "good.test\nbad domain.test\n\n# c\nx/y\n",
        )
        .unwrap();
        std::fs::write(cat.join("expressions"), "(unclosed\nfine[0-9]+\n").unwrap();
        std::fs::write(dir.join("alias"), "cat\n").unwrap();
        let mut db = Db::new(10);
        db.add_categories(&dir, None).unwrap();
        db.finish().unwrap();
        let (errs, n) = db.errors();
        assert_eq!(n, 3, "{errs:?}");
        assert_eq!(errs[0].line, 2);
        assert!(
            errs[0].to_string().contains("cat/domains:2: not a domain"),
            "{}",
            errs[0]
        );
        assert_eq!(errs[1].line, 5);
        assert!(
            errs[2]
                .to_string()
                .contains("expressions:1: bad expression"),
            "{}",
            errs[2]
        );
        assert_eq!(db.expression_count(), 1);
        assert_eq!(db.id("alias"), db.id("cat"));
        assert_eq!(hits(&db, "http://h.test/fine12"), ["expression:fine[0-9]+"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn multi_category_sets() {
        let mut db = Db::new(10);
        let a = db.name_id("a", false, Path::new("/a")).unwrap();
        let b = db.name_id("b", false, Path::new("/b")).unwrap();
        db.add_domain_or_ip("x.test", a).unwrap();
        db.add_domain_or_ip("x.test", b).unwrap();
        db.add_domain_or_ip("x.test", b).unwrap();
        db.add_url("u.test/p", a).unwrap();
        db.add_url("u.test/p", b).unwrap();
        db.add_url("u.test/q", b).unwrap();
        db.finish().unwrap();
        let mut out = Vec::new();
        db.match_url(&canonicalize("http://u.test/p/1"), &mut out);
        assert_eq!(out.iter().map(|m| m.name).collect::<Vec<_>>(), [a, b]);
        assert_eq!(db.url_count(), 2);
        let mut out = Vec::new();
        db.match_host("www.x.test", None, &mut out);
        let names: Vec<u16> = out.iter().map(|m| m.name).collect();
        assert_eq!(names, [a, b]);
        assert_eq!(db.domain_count(), 1);
    }
}
