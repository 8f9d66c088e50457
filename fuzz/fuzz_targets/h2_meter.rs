//! The HTTP/2 frame meter and HPACK sizer over any client bytes (after the preface, so frames
//! are reached): never panics, and reaches the same verdict (flood or not, the same alarms)
//! whatever the read boundaries.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use sekisho_proxy::h2meter::hpack::Sizer;
use sekisho_proxy::h2meter::H2Meter;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Feeds the preface then `data` in reads of `piece`: whether it was cut, and the alarms.
fn run(data: &[u8], piece: usize, now: Instant) -> (bool, Vec<(String, String)>) {
    let mut m = H2Meter::new(16 << 10, now);
    let mut alarms = Vec::new();
    let mut sink = |a: sekisho_proxy::h2meter::Alarm| {
        alarms.push((a.attack_id().to_string(), a.detail.clone()))
    };
    let mut cut = m.feed(PREFACE, 0, now, &mut sink).is_err();
    for c in data.chunks(piece) {
        if cut {
            break;
        }
        cut = m.feed(c, 0, now, &mut sink).is_err();
    }
    (cut, alarms)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let one = run(rest, 1, now);
    let cut = run(rest, usize::from(first) + 1, now);
    assert_eq!(
        one,
        cut,
        "verdicts differ between reads of 1 and {} bytes",
        first as usize + 1
    );
    // The sizer alone, over a raw header block.
    let _ = Sizer::new(4096).block_size(rest);
});
