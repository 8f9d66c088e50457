//! OLE1 embedded objects: the `ObjectHeader` + native data an RTF `\objdata` carries
//! ([MS-OLEDS] 2.2.4), and the "Package" payload (a file with its name) found there and in
//! `\x01Ole10Native` streams of OLE2 files.

/// An embedded object: its class and its native data.
#[derive(Debug, PartialEq, Eq)]
pub struct Object<'a> {
    /// `Package`, `Word.Document.8`, `Equation.3`, …
    pub class: String,
    /// The native data (an OLE2 file for most classes, a package for `Package`).
    pub native: &'a [u8],
}

/// A file carried in a Package object.
#[derive(Debug, PartialEq, Eq)]
pub struct Package<'a> {
    /// The label (usually the file name).
    pub name: String,
    /// The file's bytes.
    pub data: &'a [u8],
}

struct Cursor<'a> {
    d: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn u16(&mut self) -> Option<u16> {
        let b = self.d.get(self.i..self.i + 2)?;
        self.i += 2;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.d.get(self.i..self.i + 4)?;
        self.i += 4;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.d.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(b)
    }
    /// A NUL-terminated string (at most 4 KiB).
    fn cstr(&mut self) -> Option<String> {
        let rest = self.d.get(self.i..)?;
        let n = rest.iter().take(4096).position(|b| *b == 0)?;
        self.i += n + 1;
        Some(String::from_utf8_lossy(&rest[..n]).into_owned())
    }
    /// A length-prefixed ANSI string (the length counts the NUL).
    fn lpstr(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        if n > 4096 {
            return None;
        }
        let b = self.take(n)?;
        let b = b.split(|c| *c == 0).next().unwrap_or(b);
        Some(String::from_utf8_lossy(b).into_owned())
    }
}

/// Parses an OLE1 `ObjectHeader` (version, format id 2 = embedded, class, topic, item) and
/// returns the native data that follows (cut at the end of `data` if it claims more).
pub fn object(data: &[u8]) -> Option<Object<'_>> {
    let mut c = Cursor { d: data, i: 0 };
    let _version = c.u32()?;
    let format = c.u32()?;
    if format != 2 {
        return None;
    }
    let class = c.lpstr()?;
    let _topic = c.lpstr()?;
    let _item = c.lpstr()?;
    let size = c.u32()? as usize;
    let rest = &data[c.i..];
    Some(Object {
        class,
        native: &rest[..size.min(rest.len())],
    })
}

/// Parses a Package payload: `with_size` when it starts with its own 32-bit total size (as in an
/// `\x01Ole10Native` stream). Layout: flags u16, label, source path, two u32 (type, temporary
/// path length), temporary path, data size u32, data.
pub fn package(data: &[u8], with_size: bool) -> Option<Package<'_>> {
    let mut c = Cursor { d: data, i: 0 };
    if with_size {
        c.u32()?;
    }
    c.u16()?;
    let label = c.cstr()?;
    let source = c.cstr()?;
    c.u32()?;
    c.u32()?;
    c.cstr()?;
    let size = c.u32()? as usize;
    let rest = &data[c.i..];
    let name = if label.is_empty() { source } else { label };
    Some(Package {
        name,
        data: &rest[..size.min(rest.len())],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Objects and packages built whole are read in `tests/office.rs`; here, cuts.
    #[test]
    fn short_input_is_not_an_object() {
        assert!(object(&[1, 5, 0, 0, 2, 0, 0, 0, 8, 0]).is_none());
        assert!(
            object(&[1, 5, 0, 0, 3, 0, 0, 0]).is_none(),
            "format 3 is not embedded"
        );
        assert!(package(&[0, 0, 0, 0, 2, 0, b'a'], true).is_none());
        let mut huge_name = vec![1, 5, 0, 0, 2, 0, 0, 0];
        huge_name.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(object(&huge_name).is_none());
    }
}
