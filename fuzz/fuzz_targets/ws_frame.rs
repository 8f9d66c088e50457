//! WebSocket frames read from any bytes (an upgraded connection's one direction): never
//! panics; the bytes named by frames and passes add up to what was read, never more; a
//! frame's payload stays within the inspected size; and how the bytes were split into reads
//! changes nothing (the same frames, the same payloads). A compressed message that does not
//! inflate is given as it came with the four bytes RFC 7692 appends (as Suricata gives it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_core::Direction;
use sekisho_proxy::wsframe::{Next, WsReader};

/// Every frame (flags, opcode, mask, payload, notes) and the bytes consumed, reading `wire`
/// in pieces of `step` bytes.
fn read(wire: &[u8], step: usize, max: usize) -> (Vec<(u8, u8, Option<u32>, Vec<u8>, u8)>, usize) {
    let mut r = WsReader::new(Direction::Request, max);
    let (mut buf, mut fed, mut used) = (Vec::new(), 0, 0);
    let mut frames = Vec::new();
    loop {
        match r.next(&buf) {
            Next::Frame(f, n) => {
                assert!(
                    n <= buf.len() && n > 0,
                    "a frame names {n} of {} bytes",
                    buf.len()
                );
                let bound = max + 4;
                assert!(
                    f.payload.len() <= bound,
                    "payload {} over {bound}",
                    f.payload.len()
                );
                assert!(f.raw.len() == n && f.header_len <= n);
                frames.push((f.flags, f.opcode, f.mask, f.payload.to_vec(), f.notes));
                buf.drain(..n);
                used += n;
            }
            Next::Pass(n) => {
                assert!(n <= buf.len() && n > 0);
                buf.drain(..n);
                used += n;
            }
            Next::More if fed < wire.len() => {
                assert!(
                    buf.len() < r.wanted(),
                    "asked for more while holding enough"
                );
                let end = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
            Next::More => return (frames, used),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, wire)) = data.split_first() else {
        return;
    };
    let max = usize::from(first) * 64 + 1;
    let whole = read(wire, wire.len().max(1), max);
    assert!(whole.1 <= wire.len());
    let pieces = read(wire, usize::from(first % 7) + 1, max);
    assert_eq!(whole, pieces, "read boundaries changed what was read");
});
