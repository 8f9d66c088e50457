//! The AV engine: YARA-X rules (ours, third-party, and ClamAV body signatures translated) plus
//! ClamAV hash sets, loaded once per configuration and cached as serialized rules keyed by the
//! sources' hashes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::Digest as _;
use serde::{Deserialize, Serialize};

use crate::clamav::{self, HashSet, Rejected};
use crate::AvError;

/// The YARA externals every rule may use.
pub const EXTERNALS: &[&str] = &["filename", "filepath", "extension", "filetype", "owner"];

/// What a load did: counts per file, and every signature that could not be used.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// (file, rules or signatures loaded from it).
    pub loaded: Vec<(String, usize)>,
    /// Signatures or rules that could not be loaded, with the reason.
    pub rejected: Vec<Rejected>,
    /// Total YARA rules in the compiled set (including translated ClamAV signatures).
    pub yara_rules: usize,
    /// ClamAV hash signatures.
    pub hash_signatures: usize,
    /// True when the compiled rules came from the cache.
    pub from_cache: bool,
}

/// One match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// `yara` or `clamav`.
    pub engine: &'static str,
    /// Rule identifier, or the ClamAV signature name.
    pub rule: String,
    /// The rule's file, when known.
    pub source_file: Option<String>,
    /// Line of the signature in its file (ClamAV signatures).
    pub line: Option<u32>,
    /// Rule description / author, for the event message.
    pub description: Option<String>,
}

fn new_scanner(rules: &yara_x::Rules) -> yara_x::Scanner<'_> {
    let mut s = yara_x::Scanner::new(rules);
    s.max_matches_per_pattern(100);
    s
}

fn next_engine_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

type ScannerOf<'r> = yara_x::Scanner<'r>;

self_cell::self_cell!(
    /// A scanner together with the rule set it borrows.
    struct CachedScanner {
        owner: Arc<yara_x::Rules>,
        #[not_covariant]
        dependent: ScannerOf,
    }
);

thread_local! {
    /// This thread's scanner and the id of the rule set it was built for.
    static CACHED: std::cell::RefCell<Option<(u64, CachedScanner)>> =
        const { std::cell::RefCell::new(None) };
}

/// The compiled signatures.
pub struct Engine {
    rules: Arc<yara_x::Rules>,
    /// Tells this rule set's cached scanners from another's (see [`Engine::with_scanner`]).
    id: u64,
    hashes: HashSet,
    files: Vec<String>,
    report: LoadReport,
}

fn collect(paths: &[PathBuf], exts: &[&str]) -> Result<Vec<PathBuf>, AvError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| AvError::Io {
            path: p.clone(),
            cause: e,
        })?;
        if meta.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let rd = std::fs::read_dir(&dir).map_err(|e| AvError::Io {
                    path: dir.clone(),
                    cause: e,
                })?;
                for entry in rd.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path
                        .extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| exts.contains(&e.to_ascii_lowercase().as_str()))
                    {
                        out.push(path);
                    }
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    Ok(out)
}

fn read(path: &Path) -> Result<String, AvError> {
    let bytes = std::fs::read(path).map_err(|e| AvError::Io {
        path: path.to_path_buf(),
        cause: e,
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `file:line: message` from a yara-x compile error report.
fn describe(err: &yara_x::errors::CompileError) -> (u32, String) {
    let text = err.to_string();
    let title = text.lines().next().unwrap_or("").trim().to_string();
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .and_then(|loc| loc.rsplit(':').nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (line, title)
}

/// The name of the rule declared at or before `line` in `text`.
fn rule_at(text: &str, line: u32) -> String {
    text.lines()
        .take(line as usize)
        .filter_map(|l| {
            let t = l.trim_start();
            let t = t.strip_prefix("private ").unwrap_or(t);
            let t = t.strip_prefix("global ").unwrap_or(t);
            t.strip_prefix("rule ").map(|r| {
                r.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        })
        .last()
        .unwrap_or_default()
}

impl Engine {
    /// Loads YARA files/folders (`.yar`, `.yara`) and ClamAV databases (`.hdb`, `.hsb`, `.ndb`,
    /// `.ldb`), using `cache_dir` for the compiled rules when given.
    pub fn load(
        yara: &[PathBuf],
        clamav_paths: &[PathBuf],
        cache_dir: Option<&Path>,
    ) -> Result<Engine, AvError> {
        let yara_files = collect(yara, &["yar", "yara"])?;
        let clam_files = collect(clamav_paths, &["hdb", "hsb", "ndb", "ldb"])?;
        let mut report = LoadReport::default();
        let mut hashes = HashSet::default();
        let mut sources: Vec<(String, String)> = Vec::new();
        for f in &yara_files {
            sources.push((f.display().to_string(), read(f)?));
        }
        let mut next_id = 0;
        for f in &clam_files {
            let name = f.display().to_string();
            let text = read(f)?;
            let ext = f
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            match ext.as_str() {
                "hdb" | "hsb" => {
                    let n = hashes.add_file(&name, &text, &mut report.rejected);
                    report.loaded.push((name, n));
                }
                "ndb" | "ldb" => {
                    let t = if ext == "ndb" {
                        clamav::translate_ndb(&name, &text, next_id, &mut report.rejected)
                    } else {
                        clamav::translate_ldb(&name, &text, next_id, &mut report.rejected)
                    };
                    next_id += t.count;
                    report.loaded.push((name.clone(), t.count));
                    sources.push((format!("{name} (translated)"), t.source));
                }
                _ => {}
            }
        }
        report.hash_signatures = hashes.len();
        let files: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();

        // Cache key: engine version + every source's name and text.
        let mut h = sha2::Sha256::new();
        h.update(b"sekisho-av/1 yara-x/1.22");
        for (n, t) in &sources {
            h.update((n.len() as u64).to_le_bytes());
            h.update(n.as_bytes());
            h.update((t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        let key = hex::encode(h.finalize());
        if let Some(dir) = cache_dir {
            if let Some((rules, cached)) = Self::from_cache(dir, &key) {
                report
                    .loaded
                    .extend(cached.loaded.into_iter().filter(|(f, _)| {
                        !f.ends_with(".hdb")
                            && !f.ends_with(".hsb")
                            && !clam_files.iter().any(|c| c.display().to_string() == *f)
                    }));
                report
                    .rejected
                    .extend(cached.rejected.into_iter().filter(|r| {
                        !r.file.ends_with(".hdb")
                            && !r.file.ends_with(".hsb")
                            && !clam_files.iter().any(|c| c.display().to_string() == r.file)
                    }));
                report.yara_rules = rules.iter().count();
                report.from_cache = true;
                return Ok(Engine {
                    rules: Arc::new(rules),
                    id: next_engine_id(),
                    hashes,
                    files,
                    report,
                });
            }
        }

        let mut compiler = yara_x::Compiler::new();
        for ext in EXTERNALS {
            compiler
                .define_global(ext, "")
                .map_err(|e| AvError::Yara(e.to_string()))?;
        }
        let mut yara_report = LoadReport::default();
        for (i, (name, text)) in sources.iter().enumerate() {
            compiler.new_namespace(&format!("f{i}"));
            let before = compiler.errors().len();
            let _ = compiler
                .add_source(yara_x::SourceCode::from(text.as_str()).with_origin(name.as_str()));
            for err in &compiler.errors()[before..] {
                let (line, reason) = describe(err);
                yara_report.rejected.push(Rejected {
                    file: name.clone(),
                    line,
                    name: rule_at(text, line),
                    reason,
                });
            }
        }
        let rules = compiler.build();
        // Per-file counts of what compiled.
        let mut per_file = vec![0usize; sources.len()];
        for r in rules.iter() {
            if let Some(i) = r
                .namespace()
                .strip_prefix('f')
                .and_then(|n| n.parse::<usize>().ok())
            {
                if let Some(c) = per_file.get_mut(i) {
                    *c += 1;
                }
            }
        }
        for (i, (name, _)) in sources.iter().enumerate() {
            if !name.ends_with("(translated)") {
                yara_report.loaded.push((name.clone(), per_file[i]));
            }
        }
        report.yara_rules = per_file.iter().sum();
        if let Some(dir) = cache_dir {
            Self::store_cache(dir, &key, &rules, &yara_report);
        }
        report.loaded.extend(yara_report.loaded);
        report.rejected.extend(yara_report.rejected);
        Ok(Engine {
            rules: Arc::new(rules),
            id: next_engine_id(),
            hashes,
            files,
            report,
        })
    }

    fn from_cache(dir: &Path, key: &str) -> Option<(yara_x::Rules, LoadReport)> {
        let bytes = std::fs::read(dir.join(format!("{key}.rules"))).ok()?;
        let report = std::fs::read(dir.join(format!("{key}.json"))).ok()?;
        let rules = yara_x::Rules::deserialize(bytes).ok()?;
        let report = serde_json::from_slice(&report).ok()?;
        Some((rules, report))
    }

    fn store_cache(dir: &Path, key: &str, rules: &yara_x::Rules, report: &LoadReport) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let bytes = rules.serialize().map_err(std::io::Error::other)?;
            for (ext, data) in [
                ("rules", bytes),
                (
                    "json",
                    serde_json::to_vec(report).map_err(std::io::Error::other)?,
                ),
            ] {
                let tmp = dir.join(format!("{key}.{ext}.tmp"));
                std::fs::write(&tmp, data)?;
                std::fs::rename(&tmp, dir.join(format!("{key}.{ext}")))?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the compiled-rules cache");
        }
    }

    /// What the load did.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// A scanner for one flow or one file (reuse it across that flow's pieces).
    pub fn scanner(&self) -> yara_x::Scanner<'_> {
        new_scanner(&self.rules)
    }

    /// Runs `f` with this thread's scanner for this rule set. Building a YARA-X scanner (its
    /// WebAssembly store) costs more than scanning a small body, so each thread keeps one for the
    /// rule set it last scanned with; a reloaded rule set replaces it on the next scan.
    pub fn with_scanner<R>(&self, f: impl FnOnce(&mut yara_x::Scanner<'_>) -> R) -> R {
        CACHED.with(|cell| match cell.try_borrow_mut() {
            Ok(mut slot) => {
                if slot.as_ref().map(|(id, _)| *id) != Some(self.id) {
                    // Drop the old scanner (and its rule set) before building the new one.
                    *slot = None;
                    *slot = Some((
                        self.id,
                        CachedScanner::new(Arc::clone(&self.rules), |r| new_scanner(r)),
                    ));
                }
                match slot.as_mut() {
                    Some((_, c)) => c.with_dependent_mut(|_, s| f(s)),
                    None => f(&mut self.scanner()),
                }
            }
            // Re-entered from inside a scan on this thread: a scanner of its own.
            Err(_) => f(&mut self.scanner()),
        })
    }

    /// Scans one piece. `name` is the file name (for the externals); `deadline` bounds the scan.
    pub fn scan(
        &self,
        scanner: &mut yara_x::Scanner<'_>,
        data: &[u8],
        name: Option<&str>,
        path: &str,
        filetype: &str,
        deadline: Instant,
    ) -> Result<(Vec<Detection>, [u8; 32]), AvError> {
        let sha256: [u8; 32] = sha2::Sha256::digest(data).into();
        let mut out = Vec::new();
        if !self.hashes.is_empty() {
            let (want_md5, want_sha1) = self.hashes.wants();
            let md5: Option<[u8; 16]> = want_md5.then(|| md5::Md5::digest(data).into());
            let sha1 = want_sha1.then(|| sha1_digest(data));
            for h in self
                .hashes
                .lookup(data.len() as u64, md5.as_ref(), sha1.as_ref(), &sha256)
            {
                out.push(Detection {
                    engine: "clamav",
                    rule: h.name,
                    source_file: Some(h.file),
                    line: Some(h.line),
                    description: Some("ClamAV hash signature".into()),
                });
            }
        }
        let filename = name
            .map(|n| n.rsplit('/').next().unwrap_or(n))
            .unwrap_or("");
        let extension = filename.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        for (k, v) in [
            ("filename", filename),
            ("filepath", path),
            ("extension", extension),
            ("filetype", filetype),
            ("owner", ""),
        ] {
            scanner
                .set_global(k, v)
                .map_err(|e| AvError::Yara(e.to_string()))?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AvError::Timeout);
        }
        scanner.set_timeout(left.max(Duration::from_millis(1)));
        let results = scanner.scan(data).map_err(|e| match e {
            yara_x::errors::ScanError::Timeout => AvError::Timeout,
            other => AvError::Yara(other.to_string()),
        })?;
        for r in results.matching_rules() {
            let mut clam_name = None;
            let mut description = None;
            let mut author = None;
            let mut source_file = None;
            let mut line = None;
            for (k, v) in r.metadata() {
                let text = match v {
                    yara_x::MetaValue::String(s) => Some(s.to_string()),
                    yara_x::MetaValue::Integer(i) => Some(i.to_string()),
                    _ => None,
                };
                match k {
                    "clamav_name" => clam_name = text,
                    "description" => description = text,
                    "author" => author = text,
                    "source_file" => source_file = text,
                    "line" => line = text.and_then(|t| t.parse().ok()),
                    _ => {}
                }
            }
            let ns_file = r
                .namespace()
                .strip_prefix('f')
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|i| self.files.get(i).cloned());
            let described = match (description, author) {
                (Some(d), Some(a)) => Some(format!("{d} (author: {a})")),
                (Some(d), None) => Some(d),
                (None, Some(a)) => Some(format!("author: {a}")),
                (None, None) => None,
            };
            match clam_name {
                Some(n) => out.push(Detection {
                    engine: "clamav",
                    rule: n,
                    source_file,
                    line,
                    description: Some("ClamAV body signature".into()),
                }),
                None => out.push(Detection {
                    engine: "yara",
                    rule: r.identifier().to_string(),
                    source_file: ns_file,
                    line: None,
                    description: described,
                }),
            }
        }
        Ok((out, sha256))
    }
}

fn sha1_digest(data: &[u8]) -> [u8; 20] {
    // SHA-1 only for .hsb compatibility; computed with the sha1 implementation in sha2's family.
    use sha1::Digest as _;
    sha1::Sha1::digest(data).into()
}
