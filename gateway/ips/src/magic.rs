//! `file.magic`: what libmagic says a file is, as Suricata asks it (`magic_open(0)`, the
//! system's compiled database, the file's first bytes). Each thread keeps its own handle
//! (libmagic handles are not shared across threads); a handle that cannot be opened leaves
//! the buffer absent.

use std::cell::RefCell;

use magic::cookie::{Cookie, DatabasePaths, Flags, Load};

/// The most file bytes handed to libmagic.
pub const MAX_BYTES: usize = 1 << 20;

thread_local! {
    static COOKIE: RefCell<Option<Option<Cookie<Load>>>> = const { RefCell::new(None) };
}

fn open() -> Option<Cookie<Load>> {
    let cookie = Cookie::open(Flags::default()).ok()?;
    match cookie.load(&DatabasePaths::default()) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "libmagic database did not load: file.magic stays empty");
            None
        }
    }
}

/// libmagic's description of `data` (its first [`MAX_BYTES`]), when there is one.
pub fn describe(data: &[u8]) -> Option<String> {
    if data.is_empty() {
        return None;
    }
    let data = &data[..data.len().min(MAX_BYTES)];
    COOKIE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let cookie = slot.get_or_insert_with(open).as_ref()?;
        cookie.buffer(data).ok().filter(|s| !s.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libmagic_descriptions() {
        let pdf = describe(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n").unwrap();
        assert!(pdf.starts_with("PDF document, version 1.4"), "{pdf}");
        let text = describe(b"hello world\n").unwrap();
        assert_eq!(text, "ASCII text");
        assert!(describe(b"").is_none());
    }
}
