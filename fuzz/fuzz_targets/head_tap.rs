//! The raw HTTP/1 head tap: follows request framing over bytes cut anywhere. Never panics, keeps
//! no head longer than its limit plus the read that finished it, and yields the same heads
//! whatever the read boundaries (for heads and chunk lines clear of the limits). The bytes it
//! marks for percent-encoding are within the read, in order, and only bytes hyper refuses.
//! The notes on each request's chunked body (extensions, bad lengths) do not depend on the
//! reads either.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sekisho_core::WireNotes;
use sekisho_proxy::headtap::{needs_encoding, tap};

const MAX_HEAD: usize = 512;

/// Feeds `data` in reads of `piece` bytes, taking each queued head (and its body's notes, read
/// at the end) as the service would; also says whether the tap refused one (a request line it
/// cannot be asked for turns it off, at a point that depends on the reads).
fn heads(data: &[u8], piece: usize) -> (Vec<(Bytes, [bool; 2])>, bool) {
    let t = tap(MAX_HEAD);
    let mut s = t.lock().expect("tap");
    let mut out = Vec::new();
    let mut refused = false;
    let mut notes = Vec::new();
    for c in data.chunks(piece) {
        let marks = s.feed_marking(c);
        assert!(marks.windows(2).all(|w| w[0] < w[1]), "marks out of order");
        for &m in &marks {
            assert!(m < c.len(), "mark {m} past a read of {}", c.len());
            assert!(needs_encoding(c[m]) || c[m] >= 0x80, "marked {:#x}", c[m]);
        }
        let queued: Vec<Bytes> = s.queued().cloned().collect();
        for h in queued {
            let line = h.split(|b| *b == b'\r').next().unwrap_or(&[]);
            let mut parts = line.split(|b| *b == b' ');
            let m = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
            let target = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
            assert!(h.len() <= MAX_HEAD + piece, "head of {} bytes", h.len());
            match s.next_head(&m, &target) {
                Some((got, wire)) => {
                    assert_eq!(got, h);
                    notes.push(wire);
                }
                None => refused = true,
            }
            out.push(h);
        }
    }
    let flags = notes.iter().map(|w| {
        w.as_ref().map_or([false; 2], |w| {
            [
                w.has(WireNotes::CHUNK_EXTENSION),
                w.has(WireNotes::INVALID_CHUNK_LEN),
            ]
        })
    });
    let out = out
        .into_iter()
        .zip(flags.chain(std::iter::repeat([false; 2])))
        .collect();
    (out, refused)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(first % 64) + 1;
    let (one, refused_one) = heads(rest, 1);
    let (cut, refused_cut) = heads(rest, piece);
    let skip = refused_one
        || refused_cut
        || one.iter().chain(&cut).any(|(h, _)| h.len() + 64 > MAX_HEAD)
        || rest.split(|b| *b == b'\n').any(|l| l.len() + 64 > 4096);
    if !skip {
        assert_eq!(
            one, cut,
            "heads differ between reads of 1 and {piece} bytes"
        );
    }
});
