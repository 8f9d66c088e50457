//! RAR archives (1.3 to 7) through `rars`: members stream into a capped buffer and are visited
//! one by one as the extraction moves on; encrypted members and headers are issues, a member
//! over the limits is cut (and, in a solid archive, ends the extraction: later members depend
//! on its decoded history).

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use rars::{
    ArchiveMember, ArchiveReadOptions, ErrorKind, ExtractionDecision, ExtractionErrorAction,
};

use super::{safe_name, IssueKind, Walker};

/// Where the member being extracted goes.
#[derive(Default)]
struct Member {
    name: String,
    data: Vec<u8>,
    cap: u64,
    over: bool,
    late: bool,
    failed: Option<String>,
    deadline: Option<Instant>,
}

/// A writer into the shared [`Member`]: refuses bytes past the cap or the deadline.
struct MemberWriter(Rc<RefCell<Member>>);

impl Write for MemberWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut m = self.0.borrow_mut();
        if m.deadline.is_some_and(|d| Instant::now() >= d) {
            m.late = true;
            return Err(std::io::Error::other("scan time limit reached"));
        }
        let room = usize::try_from(m.cap.saturating_sub(m.data.len() as u64)).unwrap_or(usize::MAX);
        if buf.len() > room {
            let part = &buf[..room];
            m.data.extend_from_slice(part);
            m.over = true;
            return Err(std::io::Error::other("member over the limit"));
        }
        m.data.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Walker<'_> {
    pub(super) fn rar(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let parse = ArchiveReadOptions::new()
            .with_max_header_count(u64::from(self.limits.max_files).saturating_mul(4) + 64)
            .with_max_header_bytes(64 << 20);
        let archive = match rars::ArchiveReader::read_with_options(data, parse) {
            Ok(a) => a,
            Err(e) => return self.rar_error(prov, &e),
        };
        let cap = self.limits.max_member_bytes;
        let dictionary = cap.max(64 << 20);
        let extract = ArchiveReadOptions::new()
            .with_rar50_dictionary_size_limit(dictionary)
            .with_rar50_buffered_decode_limit(8 << 20)
            .with_max_reader_workspace_bytes(dictionary.saturating_mul(2) + (64 << 20));
        let member = Rc::new(RefCell::new(Member::default()));
        let failed = Rc::clone(&member);
        let mut seen = 0;
        let result = archive.extract_with_control_and_errors(
            extract,
            |m| Ok(self.rar_next(m, &member, prov, depth, &mut seen)),
            |_, e| {
                failed.borrow_mut().failed = Some(e.to_string());
                Ok(ExtractionErrorAction::Continue)
            },
        );
        let (over, late) = {
            let m = member.borrow();
            (m.over, m.late)
        };
        self.rar_done(&member, prov, depth);
        if let Err(e) = result {
            if over {
                self.issue(
                    IssueKind::Limit,
                    prov,
                    "rar: a solid archive's member over the limit ends the extraction",
                );
            } else if !late {
                self.rar_error(prov, &e);
            }
        }
    }

    /// Visits the member just extracted, then decides about `m`.
    fn rar_next(
        &mut self,
        m: &ArchiveMember,
        member: &Rc<RefCell<Member>>,
        prov: &str,
        depth: u32,
        seen: &mut u32,
    ) -> ExtractionDecision {
        self.rar_done(member, prov, depth);
        if self.stopped || self.out_of_time(prov) {
            return ExtractionDecision::Stop;
        }
        if m.meta.is_directory || m.meta.is_redirection {
            return ExtractionDecision::Skip;
        }
        let name = m.meta.name_lossy();
        if m.meta.is_encrypted {
            let p = format!("{prov} > rar:{}", safe_name(&name));
            self.issue(IssueKind::Encrypted, &p, "encrypted RAR member");
            // A solid archive's later members need this one's history.
            return if m.is_solid() {
                ExtractionDecision::Stop
            } else {
                ExtractionDecision::Skip
            };
        }
        if !self.one_more(prov, "rar", seen) {
            return ExtractionDecision::Stop;
        }
        let room = self.limits.max_total_bytes.saturating_sub(self.total);
        *member.borrow_mut() = Member {
            name,
            cap: self.limits.max_member_bytes.min(room),
            deadline: self.deadline,
            ..Member::default()
        };
        ExtractionDecision::Extract(Box::new(MemberWriter(Rc::clone(member))))
    }

    /// Visits what the last member gave (cut when it failed or ran over), once.
    fn rar_done(&mut self, member: &Rc<RefCell<Member>>, prov: &str, depth: u32) {
        let m = std::mem::take(&mut *member.borrow_mut());
        if m.name.is_empty() && m.data.is_empty() {
            return;
        }
        let p = format!("{prov} > rar:{}", safe_name(&m.name));
        if m.over {
            let reason = format!("rar member over the limit of {} bytes", m.cap);
            self.issue(IssueKind::Limit, &p, reason);
        } else if let Some(e) = &m.failed {
            if !m.late {
                self.issue(IssueKind::Corrupt, &p, format!("rar member: {e}"));
            }
        }
        let cut = m.over || m.failed.is_some() || m.late;
        self.extracted(m.data, &p, Some(&m.name), depth + 1, cut);
        if m.late {
            self.out_of_time(&p);
        }
    }

    fn rar_error(&mut self, prov: &str, e: &rars::Error) {
        match e.kind() {
            ErrorKind::PasswordRequired | ErrorKind::BadPassword => {
                self.issue(IssueKind::Encrypted, prov, "encrypted RAR archive")
            }
            ErrorKind::ResourceLimit => self.issue(IssueKind::Limit, prov, format!("rar: {e}")),
            _ => self.issue(IssueKind::Corrupt, prov, format!("rar: {e}")),
        }
    }
}
