//! Peeking a TLS ClientHello without consuming it: the bytes read are kept so they can be
//! replayed to the upstream (splice) or to our own TLS acceptor (decrypt) through [`Rewind`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use sekisho_core::TlsHello;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The most ClientHello bytes we buffer before deciding.
pub const MAX_HELLO: usize = 64 * 1024;

/// What the first bytes of a tunnel were.
#[derive(Debug)]
pub enum Peeked {
    /// A TLS ClientHello; `bytes` is everything read so far.
    Tls {
        /// What the hello said.
        hello: TlsHello,
        /// The bytes read (to replay).
        bytes: Bytes,
    },
    /// Not TLS (or a broken hello): why.
    NotTls(String),
    /// Not TLS from the first byte: what the client sent so far (cleartext to sniff).
    Plain {
        /// Why it is not TLS.
        why: String,
        /// The bytes read (to replay).
        bytes: Bytes,
    },
}

/// Reads from `io` until a complete ClientHello is parsed, at most [`MAX_HELLO`] bytes.
pub async fn peek_client_hello<S: AsyncRead + Unpin>(io: &mut S) -> io::Result<Peeked> {
    let mut buf = Vec::with_capacity(2048);
    let mut acceptor = rustls::server::Acceptor::default();
    let mut chunk = [0u8; 4096];
    loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Peeked::NotTls(if buf.is_empty() {
                "client closed before sending anything".into()
            } else {
                format!(
                    "client closed after {} bytes of an incomplete ClientHello",
                    buf.len()
                )
            }));
        }
        if buf.is_empty() && chunk[0] != 0x16 {
            return Ok(Peeked::Plain {
                why: format!(
                    "first byte 0x{:02x} is not a TLS handshake record",
                    chunk[0]
                ),
                bytes: Bytes::copy_from_slice(&chunk[..n]),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut fresh: &[u8] = &chunk[..n];
        while !fresh.is_empty() {
            if let Err(e) = acceptor.read_tls(&mut fresh) {
                return Ok(Peeked::NotTls(format!("unreadable TLS record: {e}")));
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let ch = accepted.client_hello();
                let hello = TlsHello {
                    sni: ch.server_name().map(|s| s.to_ascii_lowercase()),
                    alpn: ch
                        .alpn()
                        .map(|it| {
                            it.map(|p| String::from_utf8_lossy(p).into_owned())
                                .collect()
                        })
                        .unwrap_or_default(),
                    raw: Bytes::new(),
                };
                let bytes = Bytes::from(buf);
                let hello = TlsHello {
                    raw: bytes.clone(),
                    ..hello
                };
                return Ok(Peeked::Tls { hello, bytes });
            }
            Ok(None) => {}
            Err((e, _alert)) => return Ok(Peeked::NotTls(format!("invalid ClientHello: {e}"))),
        }
        if buf.len() > MAX_HELLO {
            return Ok(Peeked::NotTls(format!(
                "ClientHello larger than {MAX_HELLO} bytes"
            )));
        }
    }
}

/// A stream that first yields `prefix`, then reads from `inner`. Writes go to `inner`.
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// Replays `prefix` before `inner`.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn not_tls_is_reported() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        match peek_client_hello(&mut b).await.unwrap() {
            Peeked::Plain { why, bytes } => {
                assert!(why.contains("0x47"), "{why}");
                assert_eq!(&bytes[..], b"GET / HTTP/1.1\r\n\r\n");
            }
            p => panic!("{p:?}"),
        }
    }

    #[tokio::test]
    async fn garbage_record_is_reported() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5])
            .await
            .unwrap();
        drop(a);
        assert!(matches!(
            peek_client_hello(&mut b).await.unwrap(),
            Peeked::NotTls(_)
        ));
    }

    #[tokio::test]
    async fn rewind_replays() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut r = Rewind::new(Bytes::from_static(b"hello"), b);
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
    }
}
