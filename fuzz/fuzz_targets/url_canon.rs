//! URL canonicalization (the one form URL categories and lists are decided on): never panics, and
//! canonical forms are fixed points (canonicalizing a canonical URL changes nothing), so a second
//! spelling cannot reach a different decision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_urlfilter::canonicalize;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let once = canonicalize(&input);
    let url = once.url();
    let twice = canonicalize(&url);
    assert_eq!(
        (&once.scheme, &once.host, &once.ip, &once.path, &once.query),
        (&twice.scheme, &twice.host, &twice.ip, &twice.path, &twice.query),
        "not a fixed point: {input:?} -> {url:?}"
    );
    assert!(once.path.starts_with('/'), "{input:?} -> path {:?}", once.path);
});
