//! Property tests standing in for fuzzing on stable Rust: the parsers that see untrusted input
//! (config text, ClientHello bytes, host names and authorities) never panic.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use proptest::prelude::*;
use sekisho_proxy::hostmatch::HostMatcher;
use sekisho_proxy::tlspeek::{peek_client_hello, Peeked};
use sekisho_proxy::Config;

const VALID: &str =
    "[[listener]]\nkind = \"forward\"\naddr = [\"127.0.0.1:3128\", \"[::1]:3128\"]\n\
[tls]\nsplice = [\"*.bank.test\"]\n[policy]\ndeny_hosts = [\"a.test\"]\nmode = \"detect\"\n\
[limits]\nhold_bytes_per_flow = 1024\n";

/// A real ClientHello from rustls, for mutation.
fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from("hello.example").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

fn peek(bytes: Vec<u8>) -> Peeked {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (mut a, mut b) = tokio::io::duplex(1 << 17);
        use tokio::io::AsyncWriteExt;
        a.write_all(&bytes).await.unwrap();
        drop(a);
        peek_client_hello(&mut b).await.unwrap()
    })
}

#[test]
fn real_client_hello_is_read() {
    let sent = client_hello();
    match peek(sent.clone()) {
        Peeked::Tls { hello, bytes } => {
            assert_eq!(hello.sni.as_deref(), Some("hello.example"));
            assert_eq!(hello.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
            assert_eq!(
                bytes.to_vec(),
                sent,
                "every byte read is kept for the replay"
            );
        }
        p => panic!("{p:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn config_parse_never_panics(text in ".{0,400}") {
        let _ = Config::parse(&text, std::path::Path::new("fuzz.toml"));
    }

    #[test]
    fn mutated_config_never_panics(pos in 0usize..VALID.len(), byte in any::<u8>(), cut in 0usize..VALID.len()) {
        let mut b = VALID.as_bytes().to_vec();
        b[pos] = byte;
        b.truncate(cut.max(pos + 1));
        let _ = Config::parse(&String::from_utf8_lossy(&b), std::path::Path::new("fuzz.toml"));
    }

    #[test]
    fn peek_never_panics_on_random_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Some(b) = bytes.first_mut() { *b = 0x16; }
        let _ = peek(bytes);
    }

    #[test]
    fn peek_never_panics_on_mutated_hello(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut h = client_hello();
        for (i, v) in flips {
            let at = i.index(h.len());
            h[at] = v;
        }
        let keep = cut.index(h.len()) + 1;
        h.truncate(keep);
        let _ = peek(h);
    }

    #[test]
    fn host_patterns_and_lookups_never_panic(pats in proptest::collection::vec(".{0,70}", 0..5), host in ".{0,300}") {
        if let Ok(m) = HostMatcher::new(&pats) {
            let _ = m.find(&host);
        }
        let _ = sekisho_core::split_host_port(&host, 443);
        let _ = sekisho_proxy::hostmatch::normalize_host(&host);
    }
}
