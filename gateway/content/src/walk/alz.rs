//! ALZip archives: each entry unpacked (stored, bzip2, deflate) under the member limits.

use std::io::Read;

use bytes::Bytes;

use super::{safe_name, IssueKind, Walker};
use crate::formats::alz;

impl Walker<'_> {
    /// An ALZip archive's entries; encrypted ones, unknown methods and damage are reported.
    pub(super) fn alz(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let max = self.limits.max_files as usize;
        let (entries, problem) = alz::entries(data, max);
        self.problem(prov, "alz", problem);
        for e in entries.iter().filter(|e| !e.directory) {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = format!("{prov} > alz:{}", safe_name(&e.name));
            if e.encrypted {
                self.issue(IssueKind::Encrypted, &p, "encrypted alz entry");
                continue;
            }
            if e.descriptor {
                self.issue(
                    IssueKind::Corrupt,
                    &p,
                    "alz entry sized by a data descriptor",
                );
                continue;
            }
            let stored = e.packed.get(..e.packed.len().min(e.size as usize));
            match (e.method, stored) {
                (0, Some(raw)) => self.member(prov, "alz", &e.name, raw, depth),
                (1, _) => {
                    let r = bzip2::read::BzDecoder::new(e.packed);
                    self.member(prov, "alz", &e.name, r.take(e.size), depth)
                }
                (2, _) => {
                    let r = flate2::read::DeflateDecoder::new(e.packed);
                    self.member(prov, "alz", &e.name, r.take(e.size), depth)
                }
                (m, _) => {
                    self.issue(IssueKind::Corrupt, &p, format!("alz entry in method {m}"));
                    continue;
                }
            };
        }
    }
}
