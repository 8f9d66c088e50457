//! Parsers of outside input never panic: collector framing and HTTP batches, chain
//! verification of any file, spool recovery from any segment bytes.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use sekisho_mss::collector::{batch_events, split_frames, MAX_MESSAGE};
use sekisho_mss::{chain, Spool, SpoolLimits};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn syslog_framing(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok((msgs, used)) = split_frames(&buf) {
            prop_assert!(used <= buf.len());
            prop_assert!(msgs.iter().all(|m| m.len() <= MAX_MESSAGE * 4));
        }
    }

    #[test]
    fn framing_of_digits(prefix in "[0-9 ]{0,12}", rest in ".{0,64}") {
        let _ = split_frames(format!("{prefix}{rest}").as_bytes());
    }

    #[test]
    fn http_batches(buf in proptest::collection::vec(any::<u8>(), 0..1024), text in ".{0,256}") {
        let _ = batch_events(&buf);
        let _ = batch_events(text.as_bytes());
    }

    #[test]
    fn chain_verification(text in "(\\{.{0,80}\\}( chain=[0-9a-f]{64})?\n){0,8}", bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = chain::verify_reader(text.as_bytes(), None, None);
        let _ = chain::verify_reader(&bytes[..], Some(b"k"), Some(chain::GENESIS));
        for l in text.lines() {
            let _ = chain::unseal(l);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn spool_recovers_from_any_segment(garbage in proptest::collection::vec(any::<u8>(), 0..4096), cursor in ".{0,40}") {
        let d = std::env::temp_dir().join(format!("sekisho-mss-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("seg-00000000000000000001.log"), &garbage).unwrap();
        std::fs::write(d.join("cursor"), cursor.as_bytes()).unwrap();
        let limits = SpoolLimits { segment_bytes: 4096, max_bytes: 16384 };
        let mut s = Spool::open(&d, limits).unwrap();
        let _ = s.read_batch(100).unwrap();
        s.append(b"after").unwrap();
        s.sync().unwrap();
        s.rewind();
        let all = s.read_batch(10_000).unwrap();
        prop_assert!(all.iter().any(|(_, r)| r == b"after"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
