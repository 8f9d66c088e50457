//! PDF documents: each decoded stream (`pdf:obj12`, embedded files `pdf:obj12:embedded`) and
//! each `/JS` script (`pdf:js1`) is a piece; an encrypted document is decrypted when its user
//! password is empty, else it is an issue.

use bytes::Bytes;

use super::{IssueKind, Walker};
use crate::formats::pdf;

impl Walker<'_> {
    pub(super) fn pdf(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let doc = pdf::read(data, self.limits.max_files as usize, cap);
        if let Some(why) = &doc.encrypted {
            self.issue(IssueKind::Encrypted, prov, why.clone());
        }
        for (i, s) in doc.streams.into_iter().enumerate() {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let id = s
                .object
                .map_or_else(|| format!("stream{}", i + 1), |n| format!("obj{n}"));
            let kind = if s.embedded_file { ":embedded" } else { "" };
            let p = format!("{prov} > pdf:{id}{kind}");
            let cut = s.problem.is_some();
            if let Some(why) = s.problem {
                // An encrypted document's streams do not decode: the document issue says it.
                if doc.encrypted.is_none() {
                    self.issue(IssueKind::Corrupt, &p, format!("pdf stream: {why}"));
                }
            }
            self.extracted(s.data, &p, None, depth + 1, cut);
        }
        for (i, js) in doc.scripts.into_iter().enumerate() {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = format!("{prov} > pdf:js{}", i + 1);
            self.extracted(js, &p, None, depth + 1, false);
        }
    }
}
