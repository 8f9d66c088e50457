//! The TLS ClientHello peek (SNI and ALPN before deciding splice or decrypt) and the JA3 and
//! JA4 fingerprints over the same bytes, read in pieces as a socket would deliver them (a JA4
//! is always 36 characters in its three parts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_proxy::tlspeek::{peek_client_hello, Peeked, MAX_HELLO};

/// A reader that hands out at most `piece` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    piece: usize,
}

impl tokio::io::AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.piece.min(self.data.len()).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        std::task::Poll::Ready(Ok(()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut io = Trickle {
        data: rest,
        piece: usize::from(first) * 16 + 1,
    };
    let peeked = futures_executor::block_on(peek_client_hello(&mut io)).expect("in-memory read");
    if let Peeked::Tls { hello, bytes } = peeked {
        assert!(bytes.len() <= MAX_HELLO + 4096 && bytes.len() <= rest.len());
        assert_eq!(hello.raw, bytes);
        if let Some(sni) = &hello.sni {
            assert_eq!(sni, &sni.to_ascii_lowercase());
        }
    }
    let ja3 = sekisho_ips::ja3::ja3_string(rest);
    let ja4 = sekisho_ips::ja4::ja4_hash(rest);
    // One parse serves both: a ClientHello has both fingerprints or neither.
    assert_eq!(ja3.is_some(), ja4.is_some());
    if let Some(h) = ja4 {
        assert_eq!(h.len(), 36, "{h}");
        assert!(h.starts_with('t') && h.as_bytes()[10] == b'_' && h.as_bytes()[23] == b'_');
    }
});
