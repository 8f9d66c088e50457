//! The ClamAV database parsers never panic on arbitrary text.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sekisho_av::clamav::{hex_to_yara, translate_ldb, translate_ndb, HashSet};

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, .. ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(text in "[0-9a-fA-F?*{}()|!:;,<>=&\\-\\[\\]A-Za-z. \\n]{0,200}") {
        let mut rej = Vec::new();
        let _ = hex_to_yara(&text);
        let _ = translate_ndb("f.ndb", &text, 0, &mut rej);
        let _ = translate_ldb("f.ldb", &text, 0, &mut rej);
        let _ = HashSet::default().add_file("f.hdb", &text, &mut rej);
    }
}
