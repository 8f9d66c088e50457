//! Office containers: OLE2 compound files (doc, xls, ppt, msi, msg: every stream a piece, VBA
//! module source decompressed, `Ole10Native` packages unwrapped) and RTF embedded objects
//! (`\objdata` → OLE1 object → package or OLE2 file).

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{fingerprint, safe_name, Hints, IssueKind, Walker};
use crate::formats::{officecrypt, ole1, onenote, ovba, ppt, rtf, xlscrypt};

impl Walker<'_> {
    pub(super) fn ole2(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mut cf = match cfb::CompoundFile::open(Cursor::new(&data[..])) {
            Ok(cf) => cf,
            Err(e) => {
                self.issue(IssueKind::Corrupt, prov, format!("ole2: {e}"));
                return;
            }
        };
        let streams: Vec<PathBuf> = cf
            .walk()
            .filter(|e| e.is_stream())
            .map(|e| e.path().to_path_buf())
            .collect();
        let mut seen = 0;
        let mut vba_dirs = Vec::new();
        // Why the file cannot be read, reported when the walk is over (its streams still go
        // through the scan as they are), unless the default password opened what said so.
        let mut encrypted = None;
        let (mut info, mut package) = (None, None);
        for path in &streams {
            if !self.one_more(prov, "ole2", &mut seen) {
                return;
            }
            let name = path.to_string_lossy().trim_start_matches('/').to_string();
            let Some((bytes, p)) = self.ole_stream(&mut cf, path, &name, prov, depth) else {
                continue;
            };
            let leaf = path.file_name().map(|n| n.to_string_lossy().into_owned());
            // An Excel workbook the default password opens is read, not reported.
            let workbook = matches!(leaf.as_deref(), Some("Workbook" | "Book"));
            let why = leaf
                .as_deref()
                .and_then(|l| officecrypt::encryption(l, &bytes))
                .filter(|_| !(workbook && self.velvet_workbook(&bytes, &p, depth)));
            match leaf.as_deref() {
                Some("EncryptionInfo") => info = Some(bytes),
                Some("EncryptedPackage") => package = Some((bytes, p)),
                _ if why.is_some() => encrypted = encrypted.or(why),
                Some("\u{1}Ole10Native") => match ole1::package(&bytes, true) {
                    Some(pkg) => self.package(&pkg, &p, depth + 1),
                    None => self.issue(IssueKind::Corrupt, &p, "Ole10Native: unreadable package"),
                },
                Some("dir") if parent_is(path, "VBA") => vba_dirs.push((path.clone(), bytes)),
                Some("PowerPoint Document") => self.ppt_objects(&bytes, &p, depth),
                _ => {}
            }
        }
        for (dir, bytes) in vba_dirs {
            self.vba(&mut cf, &dir, &bytes, prov, depth);
        }
        let package_open = match (&info, &package) {
            (Some(info), Some((package, p))) => self.velvet(info, package, p, depth),
            _ => false,
        };
        if (info.is_some() || package.is_some()) && !package_open {
            encrypted = encrypted.or(Some(officecrypt::PACKAGE));
        }
        if let Some(why) = encrypted {
            self.issue(IssueKind::Encrypted, prov, why);
        }
    }

    /// An Excel 97-2003 workbook stream Office's default password opens: decrypted and walked
    /// (`> ole:Workbook > decrypted`); false when it does not open.
    fn velvet_workbook(&mut self, stream: &[u8], prov: &str, depth: u32) -> bool {
        let Some(plain) = xlscrypt::velvet_workbook(stream) else {
            return false;
        };
        self.extracted(
            plain,
            &format!("{prov} > decrypted"),
            None,
            depth + 2,
            false,
        );
        true
    }

    /// An encrypted package Office's default password opens: decrypted and walked
    /// (`> ole:EncryptedPackage > decrypted`); false when the password does not open it.
    fn velvet(&mut self, info: &[u8], package: &[u8], prov: &str, depth: u32) -> bool {
        let cap = self.member_room();
        let Some(plain) = officecrypt::velvet_package(info, package, cap) else {
            return false;
        };
        let p = format!("{prov} > decrypted");
        let cut = plain.len() >= cap && package.len() > cap;
        if cut {
            self.issue(
                IssueKind::Limit,
                &p,
                format!("decrypted package over {cap} bytes"),
            );
        }
        self.extracted(plain, &p, None, depth + 2, cut);
        true
    }

    /// The OLE objects a presentation embeds (`ExOleObjStg`, zlib-compressed or not).
    fn ppt_objects(&mut self, stream: &[u8], prov: &str, depth: u32) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let max = self.limits.max_files as usize;
        let room = usize::try_from(self.limits.max_total_bytes.saturating_sub(self.total))
            .unwrap_or(usize::MAX);
        let (objects, more) = ppt::objects(stream, max, cap, room);
        if more {
            self.issue(
                IssueKind::Limit,
                prov,
                "ppt: more objects than the limits allow",
            );
        }
        for (n, o) in objects.into_iter().enumerate() {
            if self.stopped {
                return;
            }
            let p = format!("{prov} > ppt:object{}", n + 1);
            if o.cut {
                self.issue(
                    IssueKind::Corrupt,
                    &p,
                    "ppt object cut short or over the limit",
                );
            }
            self.extracted(o.data, &p, None, depth + 2, o.cut);
        }
    }

    /// Reads one stream (bounded) and visits it; returns its bytes and provenance.
    fn ole_stream(
        &mut self,
        cf: &mut cfb::CompoundFile<Cursor<&[u8]>>,
        path: &Path,
        name: &str,
        prov: &str,
        depth: u32,
    ) -> Option<(Bytes, String)> {
        let p = format!("{prov} > ole:{}", safe_name(name));
        let stream = match cf.open_stream(path) {
            Ok(s) => s,
            Err(e) => {
                self.issue(IssueKind::Corrupt, &p, format!("ole2 stream: {e}"));
                return None;
            }
        };
        let cap = self.limits.max_member_bytes;
        let d = self.read_limited(stream, cap);
        let cut = self.note(&d, &p, cap, "ole2 stream");
        let bytes = Bytes::from(d.data);
        let hints = Hints {
            name: Some(name),
            ..Hints::default()
        };
        self.visit(&bytes, &p, Some(name), depth + 1, cut, &hints);
        (!self.stopped).then_some((bytes, p))
    }

    /// The source of every module the VBA project's `dir` stream lists.
    fn vba(
        &mut self,
        cf: &mut cfb::CompoundFile<Cursor<&[u8]>>,
        dir: &Path,
        compressed: &[u8],
        prov: &str,
        depth: u32,
    ) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let p = format!("{prov} > ole:{}", safe_name(&dir.to_string_lossy()));
        let Some(listing) = ovba::decompress(compressed, cap) else {
            self.issue(
                IssueKind::Corrupt,
                &p,
                "VBA dir stream: not a compressed container",
            );
            return;
        };
        let storage = dir.parent().unwrap_or(Path::new("/"));
        for m in ovba::modules(&listing) {
            if self.out_of_time(prov) {
                return;
            }
            let path = storage.join(&m.stream);
            let mp = format!("{prov} > vba:{}", safe_name(&m.name));
            let mut raw = Vec::new();
            let read = cf
                .open_stream(&path)
                .and_then(|s| s.take(cap as u64).read_to_end(&mut raw));
            let source = read
                .ok()
                .and_then(|_| raw.get(m.offset..))
                .and_then(|c| ovba::decompress(c, cap));
            let Some(source) = source else {
                self.issue(IssueKind::Corrupt, &mp, "VBA module source unreadable");
                continue;
            };
            self.total += source.len() as u64;
            let hints = Hints {
                name: Some(&m.name),
                ..Hints::default()
            };
            let bytes = Bytes::from(source);
            self.visit(&bytes, &mp, Some(&m.name), depth + 1, false, &hints);
        }
    }

    /// The file inside an OLE1 Package.
    fn package(&mut self, pkg: &ole1::Package<'_>, prov: &str, depth: u32) {
        let p = format!("{prov} > package:{}", safe_name(&pkg.name));
        self.total += pkg.data.len() as u64;
        let hints = Hints {
            name: Some(&pkg.name),
            ..Hints::default()
        };
        let bytes = Bytes::copy_from_slice(pkg.data);
        self.visit(&bytes, &p, Some(&pkg.name), depth + 1, false, &hints);
    }

    /// Each `\objdata` of an RTF document: the object, then its package or native data.
    pub(super) fn rtf(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let objects = rtf::objdata(data, self.limits.max_files as usize, cap);
        for (i, obj) in objects.into_iter().enumerate() {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let p = format!("{prov} > rtf:object{}", i + 1);
            if obj.unclosed {
                self.issue(
                    IssueKind::Corrupt,
                    &p,
                    "rtf: document ends inside \\objdata",
                );
            }
            self.total += obj.data.len() as u64;
            let bytes = Bytes::from(obj.data);
            self.visit(&bytes, &p, None, depth + 1, false, &Hints::default());
            let Some(o) = ole1::object(&bytes) else {
                continue;
            };
            if o.class.eq_ignore_ascii_case("Package") {
                if let Some(pkg) = ole1::package(o.native, false) {
                    self.package(&pkg, &p, depth + 1);
                }
            } else {
                let np = format!("{p} > ole1:{}", safe_name(&o.class));
                let native = bytes.slice_ref(o.native);
                self.visit(&native, &np, None, depth + 2, false, &Hints::default());
            }
        }
    }

    /// Files embedded in a OneNote section: those its pages name (the parsed section), then
    /// any FileDataStoreObject the search finds that the pages did not give.
    pub(super) fn onenote(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let max = self.limits.max_files as usize;
        let mut given = std::collections::HashSet::new();
        let room = usize::try_from(self.limits.max_total_bytes.saturating_sub(self.total))
            .unwrap_or(usize::MAX);
        let parsed = onenote::parsed(data, max, cap, room).unwrap_or_default();
        if parsed.more {
            self.issue(
                IssueKind::Limit,
                prov,
                "onenote: more files than the limits allow",
            );
        }
        for (i, f) in parsed.files.into_iter().enumerate() {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            let label = f
                .name
                .as_deref()
                .map_or_else(|| format!("attachment{}", i + 1), safe_name);
            let p = format!("{prov} > onenote:{label}");
            if f.cut {
                self.issue(IssueKind::Limit, &p, "embedded file over the member limit");
            }
            given.insert(fingerprint(&f.data));
            self.extracted(f.data, &p, f.name.as_deref(), depth + 1, f.cut);
        }
        for (i, file) in onenote::embedded(data, max).into_iter().enumerate() {
            if self.stopped || self.out_of_time(prov) {
                return;
            }
            if given.contains(&fingerprint(&file[..file.len().min(cap)])) {
                continue;
            }
            let p = format!("{prov} > onenote:file{}", i + 1);
            let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
            let cut = file.len() > cap;
            if cut {
                self.issue(IssueKind::Limit, &p, "embedded file over the member limit");
            }
            self.extracted(
                file[..file.len().min(cap)].to_vec(),
                &p,
                None,
                depth + 1,
                cut,
            );
        }
    }
}

fn parent_is(path: &Path, name: &str) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n.eq_ignore_ascii_case(name))
}
