//! ClamAV signature databases: .hdb/.hsb hash lines, .ndb body signatures and .ldb logical
//! signatures (translated to YARA source), and the hex-signature translator on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_clamav::{hex_to_yara, translate_ldb, translate_ndb, HashSet};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    let mut set = HashSet::default();
    let mut rejected = Vec::new();
    for file in ["fuzz.hdb", "fuzz.hsb"] {
        let added = set.add_file(file, &text, &mut rejected);
        assert!(added <= lines);
    }
    for line in text.lines() {
        let _ = hex_to_yara(line);
    }
    let mut rejected = Vec::new();
    let ndb = translate_ndb("fuzz.ndb", &text, 0, &mut rejected);
    let ldb = translate_ldb("fuzz.ldb", &text, 0, &mut rejected);
    let _ = (ndb, ldb);
    assert!(rejected.len() <= 2 * lines);
});
