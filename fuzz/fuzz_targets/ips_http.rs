//! The IPS's readers of client bytes and rule options: HTTP anomaly events over a hostile
//! raw head, the files of a hostile multipart body, and the `dataset` / `datarep` /
//! `byte_extract` / `byte_math` option parsers. Never panics; every file found lies inside
//! the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_core::RequestHead;

fuzz_target!(|data: &[u8]| {
    let head = RequestHead {
        raw: Some(bytes::Bytes::copy_from_slice(data)),
        ..RequestHead::new(
            http::Method::GET,
            http::Uri::from_static("http://h.test/"),
            http::Version::HTTP_11,
            http::HeaderMap::new(),
            80,
        )
    };
    let _ = sekisho_ips::events::request(&head, sekisho_ips::events::LAYER_LIMIT);
    let (boundary, body) = data.split_at(
        data.len()
            .min(usize::from(data.first().copied().unwrap_or(0) % 16)),
    );
    for (_, file) in sekisho_ips::files::multipart_files(body, boundary) {
        let start = file.as_ptr() as usize - body.as_ptr() as usize;
        assert!(start + file.len() <= body.len());
    }
    let text = String::from_utf8_lossy(data);
    let _ = sekisho_ips::datasets::parse_dataset(&text);
    let _ = sekisho_ips::datasets::parse_datarep(&text);
    let mut names = sekisho_ips::bytevars::Names::default();
    let _ = sekisho_ips::bytevars::parse_extract(&text, &mut names);
    let _ = sekisho_ips::bytevars::parse_math(&text, &mut names);
});
