//! The file sink: one line per event, chained ([`crate::chain`]), rotated by size and age.
//!
//! The current file is `path`; a rotated file is renamed to `path.<UTC time>` and the newest
//! `keep` rotated files are kept. After a restart the sink continues the current file (cutting a
//! torn last line) and its chain.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::chain;

/// Rotation and retention.
#[derive(Clone, Copy, Debug)]
pub struct Rotation {
    /// Rotate when the file reaches this size.
    pub max_bytes: u64,
    /// Rotate when the file is this old.
    pub max_age: Duration,
    /// Rotated files kept.
    pub keep: usize,
}

/// A chained, rotated JSON-lines file.
pub struct FileSink {
    path: PathBuf,
    rotation: Rotation,
    key: Option<Vec<u8>>,
    out: BufWriter<File>,
    size: u64,
    created: SystemTime,
    /// Lines after the header in the current file (0: nothing to rotate by age).
    records: u64,
    last: String,
}

impl std::fmt::Debug for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish()
    }
}

fn io_err(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn stamp(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let f = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_else(|_| "rotated".into())
}

/// Reads the last complete line of `f` (of at most 16 MiB), cutting a torn tail.
fn last_line(f: &mut File) -> std::io::Result<Option<String>> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let window = len.min(16 << 20);
    f.seek(SeekFrom::Start(len - window))?;
    let mut buf = Vec::with_capacity(window as usize);
    f.take(window).read_to_end(&mut buf)?;
    // Cut a torn tail (no final newline).
    let end = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => i,
        None => {
            f.set_len(len - window)?;
            return Ok(None);
        }
    };
    if end + 1 < buf.len() {
        f.set_len(len - window + end as u64 + 1)?;
    }
    let start = buf[..end]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    Ok(Some(String::from_utf8_lossy(&buf[start..end]).into_owned()))
}

impl FileSink {
    /// Opens `path`, continuing its chain, or starts it.
    pub fn open(path: &Path, rotation: Rotation, key: Option<Vec<u8>>) -> std::io::Result<Self> {
        if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        let tail = last_line(&mut f).map_err(|e| io_err(path, e))?;
        let size = f.metadata().map_err(|e| io_err(path, e))?.len();
        let created = f
            .metadata()
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .unwrap_or_else(|_| SystemTime::now());
        let mut s = FileSink {
            path: path.to_path_buf(),
            rotation,
            key,
            out: BufWriter::with_capacity(1 << 16, f),
            size,
            created,
            records: u64::from(size > 0),
            last: chain::GENESIS.to_string(),
        };
        match tail.as_deref().and_then(chain::unseal) {
            Some((_, h)) => s.last = h.to_string(),
            None if size > 0 => {
                // Not a chained file (or its last line is not): keep it aside, start afresh.
                s.rotate()?;
            }
            None => s.write_start()?,
        }
        Ok(s)
    }

    fn write_start(&mut self) -> std::io::Result<()> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let body = chain::start_body(&self.last, &name, &sekisho_core::event::now_rfc3339());
        self.write_line(&body)
    }

    fn write_line(&mut self, body: &str) -> std::io::Result<()> {
        let h = chain::link(self.key.as_deref(), &self.last, body.as_bytes());
        let line = chain::seal(body, &h);
        self.out
            .write_all(line.as_bytes())
            .and_then(|_| self.out.write_all(b"\n"))
            .map_err(|e| io_err(&self.path, e))?;
        self.size += line.len() as u64 + 1;
        self.last = h;
        Ok(())
    }

    /// Appends one record (a line without its newline; newlines inside are escaped).
    pub fn write(&mut self, body: &str) -> std::io::Result<()> {
        if body.contains('\n') {
            self.write_line(&body.replace('\n', "\\n"))?;
        } else {
            self.write_line(body)?;
        }
        self.records += 1;
        if self.size >= self.rotation.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// Writes buffered lines and fsyncs them; rotates a file past its age.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush().map_err(|e| io_err(&self.path, e))?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| io_err(&self.path, e))?;
        let age = SystemTime::now()
            .duration_since(self.created)
            .unwrap_or_default();
        if age >= self.rotation.max_age && self.records > 0 {
            self.rotate()?;
        }
        Ok(())
    }

    /// Closes the current file under a time-stamped name and starts a new one chained to it.
    pub fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush().map_err(|e| io_err(&self.path, e))?;
        let _ = self.out.get_ref().sync_data();
        // One time stamp per rotation: a second rotation in the same millisecond gets
        // `-1`, `-2`… after the same stamp (`rotated_files` orders them by number).
        let stamp = stamp(SystemTime::now());
        let mut target = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let mut n = 1u32;
        while target.exists() {
            target = PathBuf::from(format!("{}.{stamp}-{n}", self.path.display()));
            n += 1;
        }
        std::fs::rename(&self.path, &target).map_err(|e| io_err(&self.path, e))?;
        let f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io_err(&self.path, e))?;
        self.out = BufWriter::with_capacity(1 << 16, f);
        self.size = 0;
        self.records = 0;
        self.created = SystemTime::now();
        self.write_start()?;
        self.prune();
        Ok(())
    }

    /// Rotated files of this sink, oldest first.
    pub fn rotated(&self) -> Vec<PathBuf> {
        rotated_files(&self.path)
    }

    fn prune(&self) {
        let files = self.rotated();
        if files.len() > self.rotation.keep {
            for f in &files[..files.len() - self.rotation.keep] {
                if let Err(e) = std::fs::remove_file(f) {
                    tracing::warn!(file = %f.display(), error = %e, "cannot remove an old log file");
                }
            }
        }
    }

    /// The last hash written.
    pub fn last_hash(&self) -> &str {
        &self.last
    }
}

/// The rotated files of the sink writing `path`, oldest first (their names sort by time).
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!("{name}.");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_prefix(&prefix)
                        .is_some_and(|rest| rest.as_bytes().first().is_some_and(u8::is_ascii_digit))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    // Names are `<stamp>` or `<stamp>-<n>`: order by stamp, then by n as a number.
    v.sort_by_cached_key(|p| {
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rest = n.strip_prefix(&prefix).unwrap_or(&n).to_string();
        match rest.rsplit_once('-') {
            Some((s, k)) if k.bytes().all(|b| b.is_ascii_digit()) && !k.is_empty() => {
                (s.to_string(), k.parse::<u64>().unwrap_or(u64::MAX))
            }
            _ => (rest, 0),
        }
    });
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rotates_by_age_only_with_new_lines() {
        let d = std::env::temp_dir().join(format!("sekisho-filesink-age-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let p = d.join("mss.jsonl");
        let rot = Rotation {
            max_bytes: 1 << 20,
            max_age: Duration::ZERO,
            keep: 10,
        };
        let mut s = FileSink::open(&p, rot, None).unwrap();
        // Only the header: nothing to rotate.
        s.flush().unwrap();
        s.flush().unwrap();
        assert!(s.rotated().is_empty());
        s.write("{\"n\":1}").unwrap();
        s.flush().unwrap();
        assert_eq!(s.rotated().len(), 1);
        s.flush().unwrap();
        assert_eq!(s.rotated().len(), 1, "an idle file is not rotated again");
        let first = &s.rotated()[0];
        let v = chain::verify_file(first, None, None).unwrap();
        assert!(chain::verify_file(&p, None, Some(&v.last)).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rotations_in_one_millisecond_keep_their_order() {
        let d = std::env::temp_dir().join(format!("sekisho-filesink-ms-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("mss.jsonl");
        for n in [
            "20261126T101010.123Z-10",
            "20261126T101010.124Z",
            "20261126T101010.123Z-2",
        ] {
            std::fs::write(d.join(format!("mss.jsonl.{n}")), "").unwrap();
        }
        std::fs::write(d.join("mss.jsonl.20261126T101010.123Z"), "").unwrap();
        let names: Vec<String> = rotated_files(&p)
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "mss.jsonl.20261126T101010.123Z",
                "mss.jsonl.20261126T101010.123Z-2",
                "mss.jsonl.20261126T101010.123Z-10",
                "mss.jsonl.20261126T101010.124Z",
            ]
        );
        // Many rotations in a burst still form one chain in name order.
        let rot = Rotation {
            max_bytes: 1,
            max_age: Duration::from_secs(3600),
            keep: 100,
        };
        let q = d.join("burst.jsonl");
        let mut s = FileSink::open(&q, rot, None).unwrap();
        for i in 0..40 {
            s.write(&format!("{{\"n\":{i}}}")).unwrap();
        }
        s.flush().unwrap();
        let mut prev: Option<String> = None;
        for f in s.rotated().iter().chain(std::iter::once(&q)) {
            let v = chain::verify_file(f, None, prev.as_deref()).unwrap();
            prev = Some(v.last);
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rotates_by_size_keeps_n_and_chains_across_files_and_restarts() {
        let d = std::env::temp_dir().join(format!("sekisho-filesink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let p = d.join("mss.jsonl");
        let rot = Rotation {
            max_bytes: 600,
            max_age: Duration::from_secs(3600),
            keep: 3,
        };
        let mut s = FileSink::open(&p, rot, None).unwrap();
        for i in 0..10 {
            s.write(&format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(80)))
                .unwrap();
        }
        s.flush().unwrap();
        drop(s);
        // Restart continues the chain.
        let mut s = FileSink::open(&p, rot, None).unwrap();
        s.write("{\"n\":10}").unwrap();
        s.flush().unwrap();
        let rotated = s.rotated();
        assert_eq!(rotated.len(), 3, "{rotated:?}");
        let mut prev: Option<String> = None;
        for f in rotated.iter().chain(std::iter::once(&p)) {
            let v = chain::verify_file(f, None, prev.as_deref()).unwrap();
            prev = Some(v.last);
        }
        assert_eq!(prev.as_deref(), Some(s.last_hash()));
        // A torn tail is cut on open and the chain goes on.
        drop(s);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"torn\":").unwrap();
        drop(f);
        let mut s = FileSink::open(&p, rot, None).unwrap();
        s.write("{\"n\":11}").unwrap();
        s.flush().unwrap();
        assert!(chain::verify_file(&p, None, None).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
