//! Zip entries only their local headers show (split and spanned segments, appended archives,
//! entries the central directory leaves out), found by [`ziplocal::uncovered`] and unpacked
//! here.

use std::io::Read;

use bytes::Bytes;

use super::archive::OldMember;
use super::{safe_name, IssueKind, Walker};
use crate::formats::ziplocal::{self, Local};

impl Walker<'_> {
    /// Visits the entries outside the `covered` ranges the central directory accounted for;
    /// returns how many were found. A lookalike header that does not unpack is not reported
    /// (ClamAV skips it too); an encrypted entry is.
    pub(super) fn zip_local(
        &mut self,
        data: &Bytes,
        prov: &str,
        depth: u32,
        covered: &[(usize, usize)],
        seen: &mut u32,
    ) -> usize {
        let room = (self.limits.max_files as usize).saturating_sub(*seen as usize);
        let found = ziplocal::uncovered(data, covered, room.saturating_add(1));
        for l in &found {
            if l.name.ends_with('/') && l.size == 0 {
                continue;
            }
            if !self.one_more(prov, "zip", seen) {
                break;
            }
            let p = format!("{prov} > zip:{}", safe_name(&l.name));
            if l.encrypted() {
                self.issue(IssueKind::Encrypted, &p, "encrypted zip member");
                continue;
            }
            self.zip_local_entry(data, l, &p, prov, depth);
        }
        found.len()
    }

    fn zip_local_entry(&mut self, data: &Bytes, l: &Local<'_>, p: &str, prov: &str, depth: u32) {
        match (l.method, l.sized()) {
            (1 | 6, true) => {
                let old = OldMember {
                    method: l.method,
                    header: l.offset,
                    start: l.data_start,
                    packed: l.data.len(),
                    size: l.size,
                };
                self.zip_old(data, &old, p, &l.name, depth);
            }
            (_, true) => {
                let mut cursor = std::io::Cursor::new(&data[l.offset..]);
                if let Ok(Some(f)) = zip::read::read_zipfile_from_stream(&mut cursor) {
                    self.member(prov, "zip", &l.name, f, depth);
                };
            }
            // Sizes in a data descriptor: deflate ends by itself; other methods cannot be
            // delimited (ClamAV skips them all).
            (8, false) => {
                let mut z = flate2::bufread::DeflateDecoder::new(l.data);
                self.member(prov, "zip", &l.name, z.by_ref(), depth);
            }
            (_, false) => {}
        }
    }
}
