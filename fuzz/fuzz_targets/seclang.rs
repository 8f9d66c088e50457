//! SecLang rule text (the WAF's rule files): never panics, reads the same way twice, and every
//! error names a line of the text it was given.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let once = sekisho_waf::parse_str(&text, Path::new("fuzz.conf"));
    let twice = sekisho_waf::parse_str(&text, Path::new("fuzz.conf"));
    assert_eq!(once, twice, "not deterministic");
    match once {
        Err(e) => {
            let lines = text.lines().count().max(1) as u32;
            assert!(
                e.line >= 1 && e.line <= lines,
                "line {} of {lines}: {e}",
                e.line
            );
        }
        Ok(d) => {
            for x in d {
                assert!(x.line >= 1, "a directive without its line");
            }
        }
    }
});
