//! Archives with named members: zip, tar, cpio, 7z and cabinet files.

use std::io::Read;

use bytes::Bytes;

use sevenz_rust2::{EntryDecision, Password};

use super::{safe_name, Hints, IssueKind, Walker};
use crate::formats::{cpio, iso9660, nsis, sis, zipold};

/// Where a shrunk or imploded zip member lies.
pub(super) struct OldMember {
    pub(super) method: u16,
    pub(super) header: usize,
    pub(super) start: usize,
    pub(super) packed: usize,
    pub(super) size: u64,
}

impl OldMember {
    fn of<R: std::io::Read>(f: &zip::read::ZipFile<'_, R>) -> Option<OldMember> {
        let method = match f.compression() {
            m if m == zip::CompressionMethod::SHRINK => 1,
            m if m == zip::CompressionMethod::IMPLODE => 6,
            _ => return None,
        };
        Some(OldMember {
            method,
            header: usize::try_from(f.header_start()).ok()?,
            start: usize::try_from(f.data_start()).ok()?,
            packed: usize::try_from(f.compressed_size()).ok()?,
            size: f.size(),
        })
    }
}

impl Walker<'_> {
    /// Reads one member within the member and total limits and visits it; true when the member
    /// was cut at a limit or an error.
    pub(super) fn member(
        &mut self,
        prov: &str,
        kind: &str,
        name: &str,
        r: impl Read,
        depth: u32,
    ) -> bool {
        let p = format!("{prov} > {kind}:{}", safe_name(name));
        let cap = self.limits.max_member_bytes;
        let d = self.read_limited(r, cap);
        let cut = self.note(&d, &p, cap, &format!("{kind} member"));
        let next = Hints {
            name: Some(name),
            ..Hints::default()
        };
        self.visit(&Bytes::from(d.data), &p, Some(name), depth + 1, cut, &next);
        cut
    }

    /// False (and an issue) once an archive has given `max_files` members.
    pub(super) fn one_more(&mut self, prov: &str, kind: &str, seen: &mut u32) -> bool {
        *seen += 1;
        if *seen > self.limits.max_files {
            self.issue(
                IssueKind::Limit,
                prov,
                format!("{kind} has more than {} members", self.limits.max_files),
            );
            return false;
        }
        !self.out_of_time(prov)
    }

    /// A member in one of PKZIP 1.x's methods (implode, shrink), decoded by [`zipold`].
    pub(super) fn zip_old(&mut self, data: &Bytes, m: &OldMember, p: &str, name: &str, depth: u32) {
        let room = self.limits.max_total_bytes.saturating_sub(self.total);
        let cap = usize::try_from(self.limits.max_member_bytes.min(room)).unwrap_or(usize::MAX);
        let flags = data
            .get(m.header..m.header + 8)
            .map_or(0, |h| u16::from_le_bytes([h[6], h[7]]));
        let raw = data.get(m.start..m.start.saturating_add(m.packed).min(data.len()));
        let decoded = match (raw, m.method) {
            (None, _) => Err("member data outside the archive".to_string()),
            (Some(raw), 1) => zipold::unshrink(raw, m.size, cap),
            (Some(raw), _) => zipold::explode(raw, m.size, flags, cap),
        };
        match decoded {
            Ok(out) => {
                let cut = (out.len() as u64) < m.size;
                if cut {
                    self.issue(
                        IssueKind::Limit,
                        p,
                        format!("zip member over the limit of {cap} bytes"),
                    );
                }
                self.extracted(out, p, Some(name), depth + 1, cut);
            }
            Err(e) => self.issue(IssueKind::Corrupt, p, format!("zip member: {e}")),
        }
    }

    /// A zip archive: the members its central directory lists, then the entries only their
    /// local headers show (see [`Walker::zip_local`]).
    pub(super) fn zip(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mut covered = Vec::new();
        let mut seen = 0;
        let central = match zip::ZipArchive::new(std::io::Cursor::new(&data[..])) {
            Ok(mut archive) => {
                self.zip_central(&mut archive, data, prov, depth, &mut seen, &mut covered);
                None
            }
            Err(e) => Some(e),
        };
        if self.stopped || seen > self.limits.max_files {
            return;
        }
        let found = self.zip_local(data, prov, depth, &covered, &mut seen);
        // A directory that does not read is damage even when local headers gave up members,
        // except in the first segment of a split archive (the spanning signature, then a local
        // header), which has none: its directory is in the last segment.
        let first_segment = data.starts_with(b"PK\x07\x08PK\x03\x04") && found > 0;
        if let Some(e) = central.filter(|_| !first_segment) {
            let why = match found {
                0 => format!("zip: {e}"),
                n => format!("zip: {e} ({n} entries read from their local headers)"),
            };
            self.issue(IssueKind::Corrupt, prov, why);
        }
    }

    /// The members the central directory lists; each one's header and data go in `covered`.
    fn zip_central(
        &mut self,
        archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
        data: &Bytes,
        prov: &str,
        depth: u32,
        seen: &mut u32,
        covered: &mut Vec<(usize, usize)>,
    ) {
        for i in 0..archive.len() {
            let (name, encrypted, is_dir, old) = match archive.by_index_raw(i) {
                Ok(f) => {
                    let start = usize::try_from(f.header_start()).unwrap_or(usize::MAX);
                    let end = f.data_start().saturating_add(f.compressed_size());
                    covered.push((start, usize::try_from(end).unwrap_or(usize::MAX)));
                    (
                        f.name().to_string(),
                        f.encrypted(),
                        f.is_dir(),
                        OldMember::of(&f),
                    )
                }
                Err(e) => {
                    self.issue(IssueKind::Corrupt, prov, format!("zip member {i}: {e}"));
                    continue;
                }
            };
            if is_dir {
                continue;
            }
            if !self.one_more(prov, "zip", seen) {
                return;
            }
            let p = format!("{prov} > zip:{}", safe_name(&name));
            if encrypted {
                self.issue(IssueKind::Encrypted, &p, "encrypted zip member");
                continue;
            }
            if let Some(old) = old {
                self.zip_old(data, &old, &p, &name, depth);
                continue;
            }
            match archive.by_index(i) {
                Ok(f) => {
                    self.member(prov, "zip", &name, f, depth);
                }
                Err(e) => self.issue(IssueKind::Corrupt, &p, format!("zip member: {e}")),
            }
        }
    }

    pub(super) fn tar(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mut archive = tar::Archive::new(&data[..]);
        let entries = match archive.entries() {
            Ok(e) => e,
            Err(e) => {
                self.issue(IssueKind::Corrupt, prov, format!("tar: {e}"));
                return;
            }
        };
        let mut seen = 0;
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.issue(IssueKind::Corrupt, prov, format!("tar: {e}"));
                    return;
                }
            };
            if !entry.header().entry_type().is_file() {
                continue;
            }
            if !self.one_more(prov, "tar", &mut seen) {
                return;
            }
            let name = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("member{seen}"));
            self.member(prov, "tar", &name, entry, depth);
        }
    }

    pub(super) fn cpio(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mut seen = 0;
        for entry in cpio::Reader::new(data) {
            let e = match entry {
                Ok(e) => e,
                Err(b) => {
                    let reason = format!("cpio header at byte {}: {}", b.offset, b.reason);
                    self.issue(IssueKind::Corrupt, prov, reason);
                    return;
                }
            };
            if !e.regular {
                continue;
            }
            if !self.one_more(prov, "cpio", &mut seen) {
                return;
            }
            if e.short {
                let p = format!("{prov} > cpio:{}", safe_name(&e.name));
                self.issue(IssueKind::Corrupt, &p, "cpio member cut short");
            }
            self.member(prov, "cpio", &e.name, e.data, depth);
        }
    }

    pub(super) fn sevenz(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mem_kb = usize::try_from(self.limits.max_member_bytes / 1024)
            .unwrap_or(usize::MAX)
            .max(1024);
        let cursor = std::io::Cursor::new(&data[..]);
        let opened =
            sevenz_rust2::ArchiveReader::new_with_memory_limit(cursor, Password::empty(), mem_kb);
        let mut reader = match opened {
            Ok(r) => r,
            Err(e) => return self.sevenz_error(prov, &e),
        };
        reader.set_thread_count(1);
        let mut seen = 0;
        let result = reader.for_each_entries_with_decision(|entry, r| {
            if entry.is_directory() || !entry.has_stream {
                return Ok(EntryDecision::Continue);
            }
            if !self.one_more(prov, "7z", &mut seen) {
                return Ok(EntryDecision::Stop);
            }
            let cut = self.member(prov, "7z", entry.name(), r, depth);
            Ok(if self.stopped {
                EntryDecision::Stop
            } else if cut {
                // Draining the rest of a member past a limit is the bomb's work: skip the block.
                EntryDecision::SkipBlock
            } else {
                EntryDecision::Continue
            })
        });
        if let Err(e) = result {
            self.sevenz_error(prov, &e);
        }
    }

    fn sevenz_error(&mut self, prov: &str, e: &sevenz_rust2::Error) {
        use sevenz_rust2::Error as E;
        match e {
            E::PasswordRequired | E::MaybeBadPassword(_) => {
                self.issue(IssueKind::Encrypted, prov, "encrypted 7z archive")
            }
            other => self.issue(IssueKind::Corrupt, prov, format!("7z: {other}")),
        }
    }

    pub(super) fn cab(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mut cabinet = match cab::Cabinet::new(std::io::Cursor::new(&data[..])) {
            Ok(c) => c,
            Err(e) => {
                self.issue(IssueKind::Corrupt, prov, format!("cab: {e}"));
                return;
            }
        };
        let mut names = Vec::new();
        for folder in cabinet.folder_entries() {
            let ctype = folder.compression_type();
            for file in folder.file_entries() {
                names.push((file.name().to_string(), ctype));
            }
        }
        let mut seen = 0;
        for (name, ctype) in names {
            if !self.one_more(prov, "cab", &mut seen) {
                return;
            }
            let p = format!("{prov} > cab:{}", safe_name(&name));
            if matches!(ctype, cab::CompressionType::Quantum(..)) {
                self.issue(
                    IssueKind::Corrupt,
                    &p,
                    "cab: Quantum compression is not decoded",
                );
                continue;
            }
            match cabinet.read_file(&name) {
                Ok(r) => {
                    self.member(prov, "cab", &name, r, depth);
                }
                Err(e) => self.issue(IssueKind::Corrupt, &p, format!("cab member: {e}")),
            }
        }
    }

    pub(super) fn iso(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let listing = iso9660::files(data, self.limits.max_files as usize);
        if let Some(problem) = &listing.problem {
            let kind = if problem.starts_with("more than") {
                IssueKind::Limit
            } else {
                IssueKind::Corrupt
            };
            self.issue(kind, prov, format!("iso: {problem}"));
        }
        for f in listing.files {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            if f.short {
                let p = format!("{prov} > iso:{}", safe_name(&f.path));
                self.issue(IssueKind::Corrupt, &p, "iso file past the end of the image");
            }
            self.member(prov, "iso", &f.path, f.data, depth);
        }
    }

    pub(super) fn sis(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let room = usize::try_from(self.limits.max_total_bytes.saturating_sub(self.total))
            .unwrap_or(usize::MAX);
        let (files, problem) = sis::files(data, self.limits.max_files as usize, cap, room);
        self.problem(prov, "sis", problem);
        for f in files {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = format!("{prov} > sis:{}", safe_name(&f.name));
            if f.cut {
                self.issue(
                    IssueKind::Corrupt,
                    &p,
                    "sis file cut short or over the limit",
                );
            }
            let name = (!f.name.is_empty()).then_some(f.name.as_str());
            self.extracted(f.data, &p, name, depth + 1, f.cut);
        }
    }

    /// A Nullsoft installer: the install script (`nsis:header`), then each file's block.
    pub(super) fn nsis(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let room = self.limits.max_total_bytes.saturating_sub(self.total);
        let bounds = nsis::Bounds {
            max_blocks: self.limits.max_files as usize,
            cap,
            total: usize::try_from(room).unwrap_or(usize::MAX),
            dictionary: u32::try_from(self.limits.max_member_bytes.max(64 << 20))
                .unwrap_or(u32::MAX),
        };
        let (blocks, problem) = nsis::blocks(data, bounds);
        self.problem(prov, "nsis", problem);
        for b in blocks {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = match b.index {
                0 => format!("{prov} > nsis:header"),
                n => format!("{prov} > nsis:file{n}"),
            };
            self.extracted(b.data, &p, None, depth + 1, b.cut);
        }
    }
}
