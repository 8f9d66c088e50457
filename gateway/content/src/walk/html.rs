//! HTML documents: base64 `data:` URIs and `<script>` texts as pieces of their own.

use bytes::Bytes;

use super::Walker;
use crate::formats::html;

impl Walker<'_> {
    pub(super) fn html(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let parts = html::parts(data, self.limits.max_files as usize, cap);
        for (i, (_media, bytes)) in parts.data_uris.into_iter().enumerate() {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = format!("{prov} > html:data{}", i + 1);
            self.extracted(bytes, &p, None, depth + 1, false);
        }
        for (i, script) in parts.scripts.into_iter().enumerate() {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = format!("{prov} > html:script{}", i + 1);
            self.extracted(script, &p, None, depth + 1, false);
        }
    }
}
