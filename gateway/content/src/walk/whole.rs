//! Containers whose readers hand back whole members: ARJ and LHA archives, compiled HTML help,
//! InstallShield's setups (MSI-based, and cabinets in a program's overlay) and compiled AutoIt
//! scripts.

use bytes::Bytes;

use super::{safe_name, IssueKind, Walker};
use crate::formats::{arj, autoit, chm, iscab, ishield, lha, Bounds};

impl Walker<'_> {
    /// Bytes one more member may take: the member limit, within what is left of the total.
    pub(super) fn member_room(&self) -> usize {
        let room = self.limits.max_total_bytes.saturating_sub(self.total);
        usize::try_from(self.limits.max_member_bytes.min(room)).unwrap_or(usize::MAX)
    }

    /// Files, bytes per file and bytes in all a whole-file reader may hand back now.
    fn bounds(&self) -> Bounds {
        Bounds {
            max_files: self.limits.max_files as usize,
            cap: usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX),
            total: usize::try_from(self.limits.max_total_bytes.saturating_sub(self.total))
                .unwrap_or(usize::MAX),
        }
    }

    /// An ARJ archive: each member unpacked (methods 0 to 4); garbled members are reported.
    pub(super) fn arj(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mut seen = 0;
        for m in arj::members(data) {
            let m = match m {
                Ok(m) => m,
                Err(e) => return self.issue(IssueKind::Corrupt, prov, format!("arj: {e}")),
            };
            if !self.one_more(prov, "arj", &mut seen) {
                return;
            }
            let p = format!("{prov} > arj:{}", safe_name(&m.name));
            if m.encrypted {
                self.issue(IssueKind::Encrypted, &p, "garbled (encrypted) ARJ member");
                continue;
            }
            let cap = self.member_room();
            let u = arj::unpack(&m, cap);
            if u.over_cap {
                let why = format!("arj member over the limit of {cap} bytes");
                self.issue(IssueKind::Limit, &p, why);
            }
            if m.short {
                self.issue(IssueKind::Corrupt, &p, "arj member cut short");
            } else if let Some(e) = &u.error {
                self.issue(IssueKind::Corrupt, &p, format!("arj member: {e}"));
            }
            let cut = u.over_cap || m.short || u.error.is_some();
            self.extracted(u.data, &p, Some(&m.name), depth + 1, cut);
        }
    }

    /// An LHA / LZH archive's files.
    pub(super) fn lha(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let (files, problem) = lha::files(data, self.bounds());
        self.problem(prov, "lha", problem);
        for f in files {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = format!("{prov} > lha:{}", safe_name(&f.name));
            self.extracted(f.data, &p, Some(&f.name), depth + 1, f.cut);
        }
    }

    /// A compiled HTML help file: every page and file it lists, stored or LZX-compressed.
    pub(super) fn chm(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let bounds = self.bounds();
        let (files, problem) = chm::files(data, bounds);
        self.problem(prov, "chm", problem);
        for f in files {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = format!("{prov} > chm:{}", safe_name(&f.name));
            if f.cut {
                self.issue(
                    IssueKind::Corrupt,
                    &p,
                    "chm file cut short or over the limit",
                );
            }
            self.extracted(f.data, &p, Some(&f.name), depth + 1, f.cut);
        }
    }

    /// An InstallShield MSI-based setup's files, each deobfuscated and inflated.
    pub(super) fn ishield(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let (files, problem) = ishield::files(data, self.limits.max_files as usize);
        if let Some(why) = problem {
            let kind = if why.starts_with("more than") {
                IssueKind::Limit
            } else {
                IssueKind::Corrupt
            };
            self.issue(kind, prov, format!("ishield: {why}"));
        }
        for f in files {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let z = flate2::read::ZlibDecoder::new(f.reader());
            self.member(prov, "ishield", &f.name, z, depth);
        }
    }

    /// A compiled AutoIt script's entries: the script and every file it installs.
    pub(super) fn autoit(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let bounds = self.bounds();
        let (entries, problem) = autoit::entries(data, bounds);
        self.problem(prov, "autoit", problem);
        for e in entries {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = format!("{prov} > autoit:{}", safe_name(&e.name));
            if e.cut {
                self.issue(
                    IssueKind::Corrupt,
                    &p,
                    "autoit entry cut short or over the limit",
                );
            }
            self.extracted(e.data, &p, Some(&e.name), depth + 1, e.cut);
        }
    }

    /// A program whose overlay holds an InstallShield disk: each file (`> setup:NAME`), then
    /// the files of its cabinets (`> iscab:DIR\NAME`). Returns where the overlay starts.
    pub(super) fn setup_overlay(&mut self, data: &Bytes, prov: &str, depth: u32) -> Option<usize> {
        let start = iscab::pe_overlay(data)?;
        let records = iscab::records(&data[start..], self.limits.max_files as usize);
        if records.is_empty() {
            return None;
        }
        if depth >= self.limits.max_depth {
            let why = format!("nesting deeper than {} levels", self.limits.max_depth);
            self.issue(IssueKind::Limit, prov, why);
            return Some(start);
        }
        let mut hdr = None;
        let mut cabs = Vec::new();
        for r in &records {
            if r.name.eq_ignore_ascii_case("data1.hdr") {
                hdr.get_or_insert(r.data);
            } else if let Some(n) = iscab::cabinet_number(&r.name) {
                cabs.push((n, r.data));
            }
        }
        for r in &records {
            if self.stopped || self.out_of_time(prov) {
                return Some(start);
            }
            self.member(prov, "setup", &r.name, r.data, depth);
        }
        if let Some(hdr) = hdr.filter(|_| !cabs.is_empty()) {
            let (files, problem) = iscab::cab_files(hdr, &cabs, self.bounds());
            self.problem(prov, "iscab", problem);
            for f in files {
                if self.stopped || self.out_of_time(prov) {
                    break;
                }
                let p = format!("{prov} > iscab:{}", safe_name(&f.name));
                if f.cut {
                    self.issue(
                        IssueKind::Corrupt,
                        &p,
                        "iscab file cut short or over the limit",
                    );
                }
                self.extracted(f.data, &p, Some(&f.name), depth + 1, f.cut);
            }
        }
        Some(start)
    }
}
