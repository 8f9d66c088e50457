//! Upstream responses read as libhtp reads them (the bytes of a response hyper refused): never
//! panics, never yields more body than asked for, and reads a prefix without panicking too (a
//! recording cut anywhere). A chunked body's framing notes of a prefix are some of the whole
//! recording's (lines are read only once complete).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_proxy::chunkline::response_notes;
use sekisho_proxy::respread::read;

fuzz_target!(|data: &[u8]| {
    let Some((&first, raw)) = data.split_first() else {
        return;
    };
    let max = usize::from(first) * 16;
    let head_request = first & 1 == 1;
    for cut in [raw.len(), raw.len() / 2] {
        if let Some(r) = read(&raw[..cut], head_request, max) {
            assert!(
                r.body.len() <= max,
                "{} body bytes over {max}",
                r.body.len()
            );
            if head_request && r.head.version != http::Version::HTTP_09 {
                assert!(r.body.is_empty(), "a HEAD response has no body");
            }
        }
    }
    let (whole, half) = (response_notes(raw), response_notes(&raw[..raw.len() / 2]));
    assert_eq!(
        half & !whole,
        0,
        "a prefix noted {half:#x}, the whole {whole:#x}"
    );
});
