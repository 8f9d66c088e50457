//! URL canonicalization (the one form URL categories and lists are decided on): never panics, and
//! canonical forms are fixed points (canonicalizing a canonical URL changes nothing), so a second
//! spelling cannot reach a different decision (below the input limit, `MAX_URL`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_urlfilter::canonical::MAX_URL;
use sekisho_urlfilter::canonicalize;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let once = canonicalize(&input);
    let url = once.url();
    // Inputs are cut at MAX_URL bytes before work starts: a canonical form longer than that
    // (escaping grows it) is cut again on a second pass, so the property holds below the limit.
    if url.len() > MAX_URL {
        return;
    }
    let twice = canonicalize(&url);
    assert_eq!(
        (&once.scheme, &once.host, &once.ip, &once.path, &once.query),
        (
            &twice.scheme,
            &twice.host,
            &twice.ip,
            &twice.path,
            &twice.query
        ),
        "not a fixed point: {input:?} -> {url:?}"
    );
    assert!(
        once.path.starts_with('/'),
        "{input:?} -> path {:?}",
        once.path
    );
});
