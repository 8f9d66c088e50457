//! The append-only disk spool in front of a network sink.
//!
//! Records are appended to segment files `seg-<seq>.log` as `[u32 length][u32 crc32][payload]`
//! (little endian). [`Spool::sync`] writes the buffered records and fsyncs them (once per batch).
//! A reader takes records from the read position; only [`Spool::ack`] moves the acknowledged
//! position, which is persisted (`cursor`, written to a temporary file and renamed) and frees
//! fully acknowledged segments. [`Spool::rewind`] sends the unacknowledged window again (after a
//! reconnect): delivery is at-least-once and a duplicate is the same record, byte for byte.
//! The spool is bounded: an append that would pass `max_bytes` fails with [`SpoolError::Full`] —
//! the caller pushes back (alerts) or calls [`Spool::drop_oldest`] (communication logs).
//! On open, a torn last record (a crash mid-write) is cut off and every other record is kept.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Spool errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The spool holds `max_bytes` already.
    #[error("spool full ({0} bytes)")]
    Full(u64),
    /// A record larger than a segment.
    #[error("record of {0} bytes is larger than the segment size")]
    TooLarge(usize),
    /// File system.
    #[error("{path}: {cause}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        cause: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, SpoolError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |cause| SpoolError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// A position: segment sequence number and byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Segment.
    pub seq: u64,
    /// Offset.
    pub off: u64,
}

/// Sizes.
#[derive(Clone, Copy, Debug)]
pub struct SpoolLimits {
    /// Bytes per segment file (default 16 MiB).
    pub segment_bytes: u64,
    /// Bytes the spool may hold on disk (default 1 GiB).
    pub max_bytes: u64,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        SpoolLimits {
            segment_bytes: 16 << 20,
            max_bytes: 1 << 30,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    seq: u64,
    /// Bytes written and synced (readable).
    len: u64,
}

const HEADER: u64 = 8;

/// One spool directory.
pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    segments: VecDeque<Segment>,
    writer: Option<BufWriter<File>>,
    /// Bytes appended to the last segment but not yet synced.
    unsynced: u64,
    acked: Pos,
    read: Pos,
    dropped_records: u64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("acked", &self.acked)
            .field("read", &self.read)
            .finish()
    }
}

fn seg_name(seq: u64) -> String {
    format!("seg-{seq:020}.log")
}

/// Reads one record at `off`; `None` at a clean end or a torn/corrupt record.
/// The acknowledged position saved in `path` (the start when missing or unreadable).
fn read_cursor(path: &Path) -> Pos {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            let (a, b) = t.trim().split_once(' ')?;
            Some(Pos {
                seq: a.parse().ok()?,
                off: b.parse().ok()?,
            })
        })
        .unwrap_or_default()
}

fn read_record(f: &mut File, off: u64, limit: u64) -> Option<Vec<u8>> {
    if off + HEADER > limit {
        return None;
    }
    f.seek(SeekFrom::Start(off)).ok()?;
    let mut h = [0u8; 8];
    f.read_exact(&mut h).ok()?;
    let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if off + HEADER + len > limit {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).ok()?;
    (crc32fast::hash(&buf) == crc).then_some(buf)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, resuming from its cursor.
    pub fn open(dir: &Path, limits: SpoolLimits) -> Result<Spool> {
        // Events carry personal data: the spool is the gateway user's only.
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(io(dir))?;
        let mut seqs: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                n.strip_prefix("seg-")?.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        let cursor = read_cursor(&dir.join("cursor"));
        let mut acked = cursor;
        let mut segments = VecDeque::new();
        for seq in seqs {
            let path = dir.join(seg_name(seq));
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            let size = f.metadata().map_err(io(&path))?.len();
            // Walk the records; cut a torn tail.
            let mut off = 0;
            while let Some(r) = read_record(&mut f, off, size) {
                // A cursor inside a record (a damaged cursor file) moves to the record's end.
                if seq == cursor.seq
                    && off < cursor.off
                    && cursor.off < off + HEADER + r.len() as u64
                {
                    acked.off = off + HEADER + r.len() as u64;
                }
                off += HEADER + r.len() as u64;
            }
            if off < size {
                f.set_len(off).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
            }
            segments.push_back(Segment { seq, len: off });
        }
        let mut s = Spool {
            dir: dir.to_path_buf(),
            limits,
            segments,
            writer: None,
            unsynced: 0,
            acked,
            read: acked,
            dropped_records: 0,
        };
        s.clamp_positions();
        s.read = s.acked;
        Ok(s)
    }

    /// Keeps positions inside the segments that exist: a cursor past the last record (a damaged
    /// or foreign cursor file) would otherwise count every new record as acknowledged.
    fn clamp_positions(&mut self) {
        let first = self.segments.front().map(|s| Pos { seq: s.seq, off: 0 });
        let end = self.segments.back().map(|s| Pos {
            seq: s.seq,
            off: s.len,
        });
        match (first, end) {
            (Some(f), _) if self.acked < f => self.acked = f,
            (_, Some(e)) if self.acked > e => self.acked = e,
            (None, _) => self.acked = Pos::default(),
            _ => {}
        }
        if self.read < self.acked {
            self.read = self.acked;
        }
    }

    /// Bytes on disk (synced and buffered).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum::<u64>() + self.unsynced
    }

    /// Records thrown away by [`Spool::drop_oldest`] since open.
    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    /// True when records wait beyond the acknowledged position.
    pub fn has_unacked(&self) -> bool {
        self.segments.iter().any(|s| {
            Pos {
                seq: s.seq,
                off: s.len,
            } > self.acked
                && s.len > 0
        })
    }

    /// True when synced records wait beyond the read position.
    pub fn has_unread(&self) -> bool {
        self.segments.iter().any(|s| {
            s.len > 0
                && Pos {
                    seq: s.seq,
                    off: s.len,
                } > self.read
        })
    }

    /// The acknowledged position.
    pub fn acked(&self) -> Pos {
        self.acked
    }

    fn open_writer(&mut self, seq: u64) -> Result<()> {
        let path = self.dir.join(seg_name(seq));
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        self.writer = Some(BufWriter::with_capacity(1 << 16, f));
        Ok(())
    }

    /// Appends one record (buffered until [`Spool::sync`]).
    pub fn append(&mut self, rec: &[u8]) -> Result<()> {
        let size = HEADER + rec.len() as u64;
        if size > self.limits.segment_bytes || rec.len() > u32::MAX as usize {
            return Err(SpoolError::TooLarge(rec.len()));
        }
        if self.bytes() + size > self.limits.max_bytes {
            return Err(SpoolError::Full(self.bytes()));
        }
        let need_new = match self.segments.back() {
            None => true,
            Some(s) => s.len + self.unsynced + size > self.limits.segment_bytes,
        };
        if need_new {
            self.sync()?;
            let seq = self
                .segments
                .back()
                .map_or(self.acked.seq.max(1), |s| s.seq + 1);
            self.segments.push_back(Segment { seq, len: 0 });
            self.open_writer(seq)?;
        } else if self.writer.is_none() {
            let seq = self.segments.back().map_or(1, |s| s.seq);
            self.open_writer(seq)?;
        }
        // Split borrows: no per-record copy of the path.
        let Spool { dir, writer, .. } = self;
        let w = writer.as_mut().ok_or_else(|| SpoolError::Io {
            path: dir.clone(),
            cause: std::io::Error::other("no writer"),
        })?;
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(&(rec.len() as u32).to_le_bytes());
        h[4..].copy_from_slice(&crc32fast::hash(rec).to_le_bytes());
        w.write_all(&h).map_err(io(dir))?;
        w.write_all(rec).map_err(io(dir))?;
        self.unsynced += size;
        Ok(())
    }

    /// Hands buffered records to the operating system (no fsync): a process killed after this
    /// (SIGKILL, a panic) loses none of them; power loss may, until [`Spool::sync`].
    pub fn flush(&mut self) -> Result<()> {
        let Spool { dir, writer, .. } = self;
        if let Some(w) = writer.as_mut() {
            w.flush().map_err(io(dir))?;
        }
        Ok(())
    }

    /// Writes buffered records and fsyncs them; they become readable.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced == 0 {
            return Ok(());
        }
        let Spool { dir, writer, .. } = self;
        if let Some(w) = writer.as_mut() {
            w.flush().map_err(io(dir))?;
            w.get_ref().sync_data().map_err(io(dir))?;
        }
        if let Some(s) = self.segments.back_mut() {
            s.len += self.unsynced;
        }
        self.unsynced = 0;
        Ok(())
    }

    /// Up to `max` synced records from the read position, each with the position after it.
    pub fn read_batch(&mut self, max: usize) -> Result<Vec<(Pos, Vec<u8>)>> {
        let mut out = Vec::new();
        let segs: Vec<Segment> = self.segments.iter().copied().collect();
        for seg in segs {
            if out.len() >= max {
                break;
            }
            if seg.seq < self.read.seq {
                continue;
            }
            let mut off = if seg.seq == self.read.seq {
                self.read.off
            } else {
                0
            };
            if off >= seg.len {
                continue;
            }
            let path = self.dir.join(seg_name(seg.seq));
            let mut f = File::open(&path).map_err(io(&path))?;
            f.seek(SeekFrom::Start(off)).map_err(io(&path))?;
            // One buffered reader per segment: a few large reads instead of three syscalls per
            // record.
            let cap = (seg.len - off).clamp(8 << 10, 1 << 20) as usize;
            let mut r = std::io::BufReader::with_capacity(cap, f);
            while out.len() < max && off + HEADER <= seg.len {
                let mut h = [0u8; 8];
                if r.read_exact(&mut h).is_err() {
                    break;
                }
                let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
                let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
                if off + HEADER + len > seg.len {
                    break;
                }
                let mut buf = vec![0u8; len as usize];
                if r.read_exact(&mut buf).is_err() || crc32fast::hash(&buf) != crc {
                    break;
                }
                off += HEADER + len;
                out.push((Pos { seq: seg.seq, off }, buf));
            }
            self.read = Pos { seq: seg.seq, off };
        }
        Ok(out)
    }

    /// Everything up to `upto` was acknowledged: persist it and free finished segments.
    pub fn ack(&mut self, upto: Pos) -> Result<()> {
        if upto <= self.acked {
            return Ok(());
        }
        self.acked = upto;
        let cursor = self.dir.join("cursor");
        let tmp = self.dir.join("cursor.tmp");
        std::fs::write(&tmp, format!("{} {}\n", upto.seq, upto.off)).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &cursor).map_err(io(&cursor))?;
        // Free segments wholly before the acknowledged one (never the one being written).
        while self.segments.len() > 1 {
            let Some(front) = self.segments.front().copied() else {
                break;
            };
            let done = front.seq < upto.seq || (front.seq == upto.seq && upto.off >= front.len);
            if !done {
                break;
            }
            let path = self.dir.join(seg_name(front.seq));
            std::fs::remove_file(&path).map_err(io(&path))?;
            self.segments.pop_front();
        }
        Ok(())
    }

    /// Reads again from the acknowledged position (after a reconnect).
    pub fn rewind(&mut self) {
        self.read = self.acked;
    }

    /// Drops the oldest segment (communication logs when full); returns the records dropped.
    /// The segment being written is never dropped.
    pub fn drop_oldest(&mut self) -> Result<u64> {
        if self.segments.len() < 2 {
            return Ok(0);
        }
        let Some(front) = self.segments.pop_front() else {
            return Ok(0);
        };
        let path = self.dir.join(seg_name(front.seq));
        let mut n = 0;
        if let Ok(mut f) = File::open(&path) {
            let mut off = if front.seq == self.acked.seq {
                self.acked.off
            } else {
                0
            };
            while let Some(r) = read_record(&mut f, off, front.len) {
                off += HEADER + r.len() as u64;
                n += 1;
            }
        }
        std::fs::remove_file(&path).map_err(io(&path))?;
        self.dropped_records += n;
        self.clamp_positions();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sekisho-spool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn cursor_past_the_last_record_does_not_swallow_new_records() {
        // Found by the spool fuzz target: a damaged cursor ("5555 55") ahead of every segment
        // made each new record count as acknowledged, so it was never delivered.
        let d = dir("cursor-ahead");
        let mut s = Spool::open(&d, small()).unwrap();
        s.append(b"old").unwrap();
        s.sync().unwrap();
        drop(s);
        std::fs::write(d.join("cursor"), "5555 55").unwrap();
        let mut s = Spool::open(&d, small()).unwrap();
        s.append(b"new").unwrap();
        s.sync().unwrap();
        let got: Vec<Vec<u8>> = s.read_batch(10).unwrap().into_iter().map(|r| r.1).collect();
        assert_eq!(got, vec![b"new".to_vec()]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn cursor_inside_a_record_moves_to_the_end_of_that_record() {
        let d = dir("cursor-inside");
        let mut s = Spool::open(&d, small()).unwrap();
        for r in [&b"first"[..], b"second"] {
            s.append(r).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        std::fs::write(d.join("cursor"), format!("{} 3", s_seq(&d))).unwrap();
        let mut s = Spool::open(&d, small()).unwrap();
        let got: Vec<Vec<u8>> = s.read_batch(10).unwrap().into_iter().map(|r| r.1).collect();
        assert_eq!(got, vec![b"second".to_vec()]);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The sequence number of the only segment in `d`.
    fn s_seq(d: &Path) -> u64 {
        std::fs::read_dir(d)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .find_map(|n| n.strip_prefix("seg-")?.strip_suffix(".log")?.parse().ok())
            .unwrap()
    }

    fn small() -> SpoolLimits {
        SpoolLimits {
            segment_bytes: 256,
            max_bytes: 2048,
        }
    }

    #[test]
    fn append_read_ack_rewind_and_resume() {
        let d = dir("basic");
        let mut s = Spool::open(&d, small()).unwrap();
        for i in 0..3 {
            s.append(format!("event-{i:02}").as_bytes()).unwrap();
        }
        assert!(
            s.read_batch(100).unwrap().is_empty(),
            "unsynced records are not readable"
        );
        for i in 3..30 {
            s.append(format!("event-{i:02}").as_bytes()).unwrap();
        }
        s.sync().unwrap();
        s.rewind();
        let b = s.read_batch(10).unwrap();
        assert_eq!(b.len(), 10);
        assert_eq!(b[0].1, b"event-00");
        s.ack(b[4].0).unwrap();
        // Reconnect: the unacknowledged window comes again.
        s.rewind();
        let b = s.read_batch(3).unwrap();
        assert_eq!(b[0].1, b"event-05");
        drop(s);
        // Restart: resumes at the acknowledged position.
        let mut s = Spool::open(&d, small()).unwrap();
        let all = s.read_batch(100).unwrap();
        assert_eq!(all.len(), 25);
        assert_eq!(all[0].1, b"event-05");
        assert_eq!(all[24].1, b"event-29");
        s.ack(all[24].0).unwrap();
        assert!(!s.has_unacked());
        let segs = std::fs::read_dir(&d).unwrap().count();
        assert!(segs <= 3, "acknowledged segments are freed ({segs} files)");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn torn_tail_is_cut_and_the_rest_kept() {
        let d = dir("torn");
        let mut s = Spool::open(&d, SpoolLimits::default()).unwrap();
        for i in 0..5 {
            s.append(format!("r{i}").as_bytes()).unwrap();
        }
        s.sync().unwrap();
        drop(s);
        let seg = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("seg-"))
            .unwrap()
            .path();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
        drop(f);
        let mut s = Spool::open(&d, SpoolLimits::default()).unwrap();
        let all = s.read_batch(100).unwrap();
        assert_eq!(all.len(), 5);
        s.append(b"after").unwrap();
        s.sync().unwrap();
        let more = s.read_batch(100).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].1, b"after");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn full_spool_refuses_and_drop_oldest_makes_room() {
        let d = dir("full");
        let mut s = Spool::open(&d, small()).unwrap();
        let rec = [b'a'; 100];
        let mut n = 0;
        loop {
            match s.append(&rec) {
                Ok(()) => n += 1,
                Err(SpoolError::Full(_)) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(n < 100, "never full");
        }
        assert!(s.bytes() <= 2048);
        s.sync().unwrap();
        let dropped = s.drop_oldest().unwrap();
        assert_eq!(dropped, 2, "two 108-byte records per 256-byte segment");
        assert_eq!(s.dropped_records(), 2);
        s.append(&rec).unwrap();
        assert!(matches!(
            s.append(&[0u8; 300]),
            Err(SpoolError::TooLarge(300))
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
