//! `filestore`: files of HTTP transactions kept on disk when a rule that names it matches, as
//! Suricata's file-store v2 lays them out (`<dir>/<first two hex digits>/<sha256>`, one copy
//! per content), within a byte budget.
//!
//! `filestore[:<direction>[,<scope>]]`: direction `request` / `to_server`, `response` /
//! `to_client` or `both` (default: the rule's own direction); scope `file` (the file the rule
//! looked at, the default), `tx` (every file of the transaction in that direction) or `ssn` /
//! `flow` (those, and every file of the connection's later transactions too).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::Digest as _;

/// Which side's files a `filestore` keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreDir {
    /// The request's (uploads).
    Request,
    /// The response's (downloads).
    Response,
    /// Both.
    Both,
}

/// How far a `filestore` reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The file the rule inspected.
    File,
    /// Every file of the transaction.
    Tx,
    /// Every file of the connection from now on.
    Flow,
}

/// A rule's `filestore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreSpec {
    /// The direction (`None`: the rule's).
    pub dir: Option<StoreDir>,
    /// The scope.
    pub scope: Scope,
}

/// Parses `filestore`'s value (empty for the bare keyword).
pub fn parse(v: Option<&str>) -> Result<StoreSpec, String> {
    let mut spec = StoreSpec {
        dir: None,
        scope: Scope::File,
    };
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(spec);
    };
    let mut parts = v.split(',').map(str::trim);
    spec.dir = Some(match parts.next().unwrap_or_default() {
        "request" | "to_server" => StoreDir::Request,
        "response" | "to_client" => StoreDir::Response,
        "both" => StoreDir::Both,
        o => return Err(format!("filestore: unknown direction {o:?}")),
    });
    if let Some(s) = parts.next() {
        spec.scope = match s {
            "file" => Scope::File,
            "tx" => Scope::Tx,
            "ssn" | "flow" => Scope::Flow,
            o => return Err(format!("filestore: unknown scope {o:?}")),
        };
    }
    if parts.next().is_some() {
        return Err("filestore: at most a direction and a scope".into());
    }
    Ok(spec)
}

/// A file kept on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// SHA-256, hex.
    pub sha256: String,
    /// Where it is.
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
}

/// The store: a folder and a budget of bytes for the files it holds.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    max_bytes: u64,
    used: AtomicU64,
    refused: AtomicU64,
}

impl FileStore {
    /// A store in `dir` holding at most `max_bytes` (files already there count).
    pub fn new(dir: &Path, max_bytes: u64) -> FileStore {
        FileStore {
            used: AtomicU64::new(du(dir)),
            dir: dir.to_path_buf(),
            max_bytes,
            refused: AtomicU64::new(0),
        }
    }

    /// Files refused because the budget was spent (or the disk refused them).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Keeps `data` (once per content). `None` when the budget or the disk refuses it.
    pub fn store(&self, data: &[u8]) -> Option<Stored> {
        let sha256 = hex::encode(sha2::Sha256::digest(data));
        let path = self.dir.join(&sha256[..2]).join(&sha256);
        let size = data.len() as u64;
        if path.exists() {
            return Some(Stored { sha256, path, size });
        }
        let reserved = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + size <= self.max_bytes).then_some(u + size)
            });
        if reserved.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match write_new(&path, data) {
            Ok(()) => Some(Stored { sha256, path, size }),
            Err(e) => {
                self.used.fetch_sub(size, Ordering::AcqRel);
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %path.display(), error = %e, "filestore: file not written");
                None
            }
        }
    }
}

/// Writes a file whole under a temporary name, then renames it into place (0640).
fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

/// Bytes of the regular files two levels under `dir` (the store's layout).
fn du(dir: &Path) -> u64 {
    let files = |d: &Path| -> Vec<std::fs::DirEntry> {
        std::fs::read_dir(d)
            .map(|r| r.filter_map(Result::ok).collect())
            .unwrap_or_default()
    };
    files(dir)
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .flat_map(|e| files(&e.path()))
        .filter_map(|e| e.metadata().ok().filter(|m| m.is_file()))
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(parse(None).unwrap().dir, None);
        let s = parse(Some("to_client,tx")).unwrap();
        assert_eq!((s.dir, s.scope), (Some(StoreDir::Response), Scope::Tx));
        assert_eq!(parse(Some("both, ssn")).unwrap().scope, Scope::Flow);
        assert!(parse(Some("sideways")).is_err());
        assert!(parse(Some("request,forever")).is_err());
        assert!(parse(Some("request,file,x")).is_err());
    }

    #[test]
    fn stores_once_within_the_budget() {
        let dir = std::env::temp_dir().join(format!("sekisho-fs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let fs = FileStore::new(&dir, 10);
        let a = fs.store(b"hello").unwrap();
        assert_eq!(
            a.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(a
            .path
            .ends_with("2c/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"));
        assert_eq!(std::fs::read(&a.path).unwrap(), b"hello");
        assert_eq!(fs.store(b"hello"), Some(a), "one copy per content");
        assert!(fs.store(b"123456").is_none(), "past the budget");
        assert_eq!(fs.refused(), 1);
        assert!(fs.store(b"12345").is_some());
        // A new store counts what is already there.
        assert!(FileStore::new(&dir, 10).store(b"x").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
