//! The MSS spool reopened after a crash: whatever bytes a segment file and the cursor hold
//! (a torn write, a bit flip, a truncated or foreign file), opening never panics, reads only
//! whole records whose checksum holds, and the spool accepts and returns new records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_mss::{Spool, SpoolLimits};

fuzz_target!(|data: &[u8]| {
    let parts = sekisho_fuzz::split_n(data, b'\n', 2);
    let dir = sekisho_fuzz::scratch_dir("spool");
    std::fs::write(dir.join("seg-00000000000000000001.log"), parts[1]).expect("write");
    std::fs::write(dir.join("cursor"), parts[0]).expect("write");
    let limits = SpoolLimits {
        segment_bytes: 4096,
        max_bytes: 64 * 1024,
        ..SpoolLimits::default()
    };
    let Ok(mut spool) = Spool::open(&dir, limits) else {
        return;
    };
    let mut old = 0usize;
    loop {
        let batch = spool.read_batch(64).expect("read");
        let Some((last, _)) = batch.last() else {
            break;
        };
        old += batch.len();
        let last = *last;
        spool.ack(last).expect("ack");
        assert!(old <= parts[1].len() / 8 + 1);
    }
    spool.append(b"fresh record").expect("append");
    spool.sync().expect("sync");
    let batch = spool.read_batch(64).expect("read");
    assert_eq!(
        batch.last().map(|(_, r)| r.as_slice()),
        Some(&b"fresh record"[..])
    );
});
