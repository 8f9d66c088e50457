//! Windows programs: a packed program's unpacked image (`> mew`, `> upack`, `> upx`, `> petite`,
//! `> pespin`, `> yc`, `> wwpack`, `> aspack`), and programs found inside other programs
//! (`> embedded:pe@OFFSET`), each scanned from its `MZ` to the end of the file that holds it, as
//! ClamAV scans them.

use bytes::Bytes;

use super::{Hints, IssueKind, Walker};
use crate::formats::pe::Unpacked;
use crate::formats::{aspack, mew, pespin, petite, upack, upx, wwpack, yc};

/// An unpacker: a program and the room for its image, to what it made of it.
type Unpacker = fn(&[u8], usize) -> Unpacked;

impl Walker<'_> {
    /// Unpacks a program packed by MEW, Upack, UPX, Petite, PESpin, yC, WWPack32 or ASPack (tried in
    /// ClamAV's order, the first that gives an image wins: yC often wraps a UPX-packed program,
    /// which then unpacks in turn) and walks the image. A program that only looks packed, or does not unpack, is left to
    /// the scan of its own bytes.
    pub(super) fn unpack(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let room = self.member_room();
        let unpackers: [(Unpacker, &str, &str); 8] = [
            (mew::unpack, "MEW", "mew"),
            (upack::unpack, "Upack", "upack"),
            (upx::unpack, "UPX", "upx"),
            (petite::unpack, "Petite", "petite"),
            (pespin::unpack, "PESpin", "pespin"),
            (yc::unpack, "yC", "yc"),
            (wwpack::unpack, "WWPack32", "wwpack"),
            (aspack::unpack, "ASPack", "aspack"),
        ];
        let mut found = None;
        for (unpack, packer, label) in unpackers {
            let u = unpack(data, room);
            if matches!(u, Unpacked::Image(..) | Unpacked::OverLimit(_)) {
                found = Some((u, packer, label));
                break;
            }
        }
        let Some((unpacked, packer, label)) = found else {
            return;
        };
        match unpacked {
            Unpacked::NotPacked | Unpacked::Failed => {}
            Unpacked::OverLimit(size) => {
                let why = if self.total + size > self.limits.max_total_bytes {
                    format!(
                        "{packer} image of {size} bytes over the total limit of {}",
                        self.limits.max_total_bytes
                    )
                } else {
                    format!("{packer} image of {size} bytes over the limit of {room} bytes")
                };
                self.issue(IssueKind::Limit, prov, why);
            }
            Unpacked::Image(image, _) if depth >= self.limits.max_depth => {
                drop(image);
                let why = format!("nesting deeper than {} levels", self.limits.max_depth);
                self.issue(IssueKind::Limit, prov, why);
            }
            Unpacked::Image(image, _) => {
                self.extracted(image, &format!("{prov} > {label}"), None, depth + 1, false);
            }
        }
    }

    /// A program inside another, from its start to the end of the outer file. Its own search
    /// for embedded containers is skipped: it covers the end of the outer file, which the
    /// outer search has covered already (the programs and archives it holds are found there
    /// once, not again at every level). A view of bytes already held, so it does not count
    /// toward the total (a large installer with many programs inside is no bomb); one longer
    /// than the member limit is not scanned as a file of its own (a limit issue).
    pub(super) fn embedded_program(&mut self, data: Bytes, prov: &str, depth: u32) {
        if data.len() as u64 > self.limits.max_member_bytes {
            let why = format!(
                "embedded program of {} bytes over the limit of {} bytes",
                data.len(),
                self.limits.max_member_bytes
            );
            return self.issue(IssueKind::Limit, prov, why);
        }
        self.skip_search = true;
        self.visit(&data, prov, None, depth, false, &Hints::default());
        self.skip_search = false;
    }
}

#[cfg(test)]
mod tests {
    use crate::formats::upx::tests::{packed, payload, unpacked};
    use crate::walk::pieces;
    use crate::Limits;

    #[test]
    fn the_program_inside_an_unpacked_image_is_scanned_whole() {
        let e = payload();
        let (seen, issues) = pieces(packed(&unpacked(&e), true, true), &Limits::default());
        assert!(issues.is_empty(), "{issues:?}");
        let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        let inner = format!("f > upx > embedded:pe@{}", 0x2000 - e.len());
        assert_eq!(names, ["f", "f > upx", inner.as_str()]);
        assert_eq!(seen[2].1, e);
    }

    #[test]
    fn programs_inside_programs_are_found_once_each() {
        // A program holding E, which holds F at its end: the outer search finds both; E's
        // visit does not find F a second time.
        let f = payload();
        let mut e = payload();
        e.extend_from_slice(&f);
        let mut outer =
            crate::formats::pe::sample::pe32(&[(0x1000, 0x1000, 0x200, 0x400)], 0x1000, 0x600);
        let e_at = outer.len();
        outer.extend_from_slice(&e);
        let (seen, _) = pieces(outer, &Limits::default());
        let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        let (pe_e, pe_f) = (
            format!("f > embedded:pe@{e_at}"),
            format!("f > embedded:pe@{}", e_at + e.len() - f.len()),
        );
        assert_eq!(names, ["f", pe_e.as_str(), pe_f.as_str()]);
        assert_eq!(seen[2].1, f);
    }

    #[test]
    fn a_wwpack_image_is_walked_like_upx_s() {
        let e = payload();
        let mut data = vec![0x90u8; 0x40];
        data.extend_from_slice(&e);
        let (seen, issues) = pieces(
            crate::formats::wwpack::sample::packed(&data),
            &Limits::default(),
        );
        assert!(issues.is_empty(), "{issues:?}");
        let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        let inner = format!("f > wwpack > embedded:pe@{}", 0x1040);
        assert_eq!(names, ["f", "f > wwpack", inner.as_str()]);
        // The image runs to 0x2000: the program is followed by what was left of the block.
        assert!(seen[2].1.starts_with(&e));
    }

    #[test]
    fn an_image_over_the_limits_is_an_issue() {
        let limits = Limits {
            max_member_bytes: 0x1000,
            ..Limits::default()
        };
        let (seen, issues) = pieces(packed(&unpacked(&payload()), true, true), &limits);
        assert_eq!(seen.len(), 1);
        assert!(
            issues[0]
                .reason
                .contains("UPX image of 16384 bytes over the limit"),
            "{issues:?}"
        );
        let limits = Limits {
            max_depth: 0,
            ..Limits::default()
        };
        let (_, issues) = pieces(packed(&unpacked(&payload()), true, true), &limits);
        assert!(issues[0].reason.contains("nesting deeper"), "{issues:?}");
    }

    #[test]
    fn embedded_programs_are_views_not_new_bytes() {
        // Sixteen programs of 0x400 bytes behind a 0x400-byte one: the views to the end sum to
        // far more than a total limit of 0x8000; nothing is over a limit.
        let mut file =
            crate::formats::pe::sample::pe32(&[(0x200, 0x1000, 0x200, 0x200)], 0x1000, 0x400);
        for _ in 0..16 {
            file.extend_from_slice(&payload());
        }
        let limits = Limits {
            max_total_bytes: 0x8000,
            ..Limits::default()
        };
        let (seen, issues) = pieces(file.clone(), &limits);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(seen.len(), 17);
        // A view over the member limit is a limit issue.
        let limits = Limits {
            max_member_bytes: 0x1000,
            ..Limits::default()
        };
        let (seen, issues) = pieces(file, &limits);
        assert!(issues
            .iter()
            .any(|i| i.reason.starts_with("embedded program of 16384 bytes")));
        assert_eq!(
            seen.len(),
            1 + 4,
            "the last four (0x1000 bytes and less) are scanned"
        );
        // A seventeenth is not scanned on its own: a limit issue.
        let mut more =
            crate::formats::pe::sample::pe32(&[(0x200, 0x1000, 0x200, 0x200)], 0x1000, 0x400);
        for _ in 0..17 {
            more.extend_from_slice(&payload());
        }
        let (seen, issues) = pieces(more, &Limits::default());
        assert_eq!(seen.len(), 17);
        assert!(
            issues
                .iter()
                .any(|i| i.reason == "more than 16 embedded programs"),
            "{issues:?}"
        );
    }
}
