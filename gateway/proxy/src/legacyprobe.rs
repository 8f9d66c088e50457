//! Naming what a legacy server speaks. The gateway's TLS client offers only TLS 1.2 and 1.3
//! with forward-secret ciphers, so a server that refuses it says only "protocol version" or
//! "handshake failure". One more connection sends a ClientHello offering TLS 1.0 to 1.2 and the
//! legacy cipher suites and reads the ServerHello: its version and cipher suite go on the page
//! and the event. Nothing else is sent and the connection is closed at once; results are kept
//! a day per server.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::autosplice::Remembered;

/// The cipher suites offered, strongest first, with their IANA and OpenSSL names.
const SUITES: &[(u16, &str, &str)] = &[
    (
        0xc02f,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        0xc02b,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        0xc030,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        0xc02c,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        0xc027,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        "ECDHE-RSA-AES128-SHA256",
    ),
    (
        0xc013,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "ECDHE-RSA-AES128-SHA",
    ),
    (
        0xc014,
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "ECDHE-RSA-AES256-SHA",
    ),
    (
        0xc009,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "ECDHE-ECDSA-AES128-SHA",
    ),
    (
        0xc00a,
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "ECDHE-ECDSA-AES256-SHA",
    ),
    (
        0x009e,
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        "DHE-RSA-AES128-GCM-SHA256",
    ),
    (
        0x009f,
        "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        "DHE-RSA-AES256-GCM-SHA384",
    ),
    (
        0x0033,
        "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
        "DHE-RSA-AES128-SHA",
    ),
    (
        0x0039,
        "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
        "DHE-RSA-AES256-SHA",
    ),
    (
        0x009c,
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "AES128-GCM-SHA256",
    ),
    (
        0x009d,
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "AES256-GCM-SHA384",
    ),
    (0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"),
    (0x003d, "TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256"),
    (0x002f, "TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"),
    (
        0xc012,
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "ECDHE-RSA-DES-CBC3-SHA",
    ),
    (0x000a, "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"),
    (0x0004, "TLS_RSA_WITH_RC4_128_MD5", "RC4-MD5"),
];

/// The longest a probe takes, dial included.
const PROBE_DEADLINE: Duration = Duration::from_secs(10);

/// The largest answer read while looking for the ServerHello.
const MAX_ANSWER: usize = 16 * 1024;

/// Versions and suites named per `host:port`, a day.
pub(crate) struct Named {
    seen: Remembered,
    names: quick_cache::sync::Cache<String, String>,
}

impl Named {
    /// Nothing named yet.
    pub(crate) fn new() -> Named {
        Named {
            seen: Remembered::new(),
            names: quick_cache::sync::Cache::new(10_000),
        }
    }

    /// What `host:port` answers a legacy ClientHello with ("TLS 1.0 with …"), probing it once
    /// a day through `dial` (which applies the destination policy); `None` when it answers
    /// none of the offered versions and suites, or cannot be reached.
    pub(crate) async fn name<F, Fut>(&self, host: &str, port: u16, dial: F) -> Option<String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = std::io::Result<tokio::net::TcpStream>>,
    {
        let key = format!("{}:{port}", host.to_ascii_lowercase());
        if self.seen.recent(&key) {
            return self.names.get(&key);
        }
        self.seen.remember(&key);
        let named = tokio::time::timeout(PROBE_DEADLINE, probe(host, dial))
            .await
            .ok()
            .flatten();
        if let Some(n) = &named {
            self.names.insert(key, n.clone());
        }
        named
    }
}

async fn probe<F, Fut>(host: &str, dial: F) -> Option<String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<tokio::net::TcpStream>>,
{
    let mut s = dial().await.ok()?;
    s.write_all(&client_hello(host)).await.ok()?;
    let mut answer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while answer.len() < MAX_ANSWER {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        match server_hello(&answer) {
            Hello::Incomplete => continue,
            Hello::Refused => return None,
            Hello::Found(version, suite) => return Some(describe(version, suite)),
        }
    }
    None
}

/// "TLS 1.0 with TLS_RSA_WITH_AES_128_CBC_SHA (AES128-SHA)".
pub fn describe(version: u16, suite: u16) -> String {
    let v = match version {
        0x0300 => "SSL 3.0".to_string(),
        0x0301 => "TLS 1.0".to_string(),
        0x0302 => "TLS 1.1".to_string(),
        0x0303 => "TLS 1.2".to_string(),
        other => format!("version 0x{other:04x}"),
    };
    match SUITES.iter().find(|(id, ..)| *id == suite) {
        Some((_, iana, openssl)) => format!("{v} with {iana} ({openssl})"),
        None => format!("{v} with cipher suite 0x{suite:04x}"),
    }
}

/// A ClientHello offering TLS 1.0–1.2 and [`SUITES`], naming `host` when it is a DNS name.
pub fn client_hello(host: &str) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    let seed = uuid::Uuid::now_v7();
    body.extend_from_slice(seed.as_bytes());
    body.extend_from_slice(seed.as_bytes());
    body.push(0); // no session id
    put_u16(&mut body, (SUITES.len() * 2) as u16);
    for (id, ..) in SUITES {
        put_u16(&mut body, *id);
    }
    body.extend_from_slice(&[1, 0]); // null compression only
    let mut ext = Vec::new();
    let name = host.trim_start_matches('[').trim_end_matches(']');
    if name.parse::<std::net::IpAddr>().is_err() && !name.is_empty() && name.len() < 256 {
        let n = name.as_bytes();
        extension(&mut ext, 0x0000, &{
            let mut v = Vec::new();
            put_u16(&mut v, n.len() as u16 + 3);
            v.push(0);
            put_u16(&mut v, n.len() as u16);
            v.extend_from_slice(n);
            v
        });
    }
    // supported_groups: x25519, secp256r1, secp384r1; point formats: uncompressed.
    extension(&mut ext, 0x000a, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18]);
    extension(&mut ext, 0x000b, &[1, 0]);
    // signature_algorithms: rsa_pkcs1 and ecdsa with SHA-256/384/1, rsa_pss_rsae_sha256.
    extension(
        &mut ext,
        0x000d,
        &[0, 12, 4, 1, 5, 1, 2, 1, 4, 3, 2, 3, 8, 4],
    );
    extension(&mut ext, 0xff01, &[0]); // renegotiation_info, empty
    put_u16(&mut body, ext.len() as u16);
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    put_u16(&mut record, hs.len() as u16);
    record.extend_from_slice(&hs);
    record
}

fn put_u16(v: &mut Vec<u8>, n: u16) {
    v.extend_from_slice(&n.to_be_bytes());
}

fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    put_u16(out, kind);
    put_u16(out, data.len() as u16);
    out.extend_from_slice(data);
}

/// What the server's first records say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed.
    Incomplete,
    /// An alert, or something other than a ServerHello.
    Refused,
    /// The ServerHello's version and cipher suite.
    Found(u16, u16),
}

/// Reads the ServerHello at the start of `bytes` (handshake records, possibly fragmented): the
/// answer is settled by the first records that hold it, whatever follows.
pub fn server_hello(bytes: &[u8]) -> Hello {
    let mut hs = Vec::new();
    let mut rest = bytes;
    loop {
        if let Some(settled) = hello_in(&hs) {
            return settled;
        }
        match rest.first() {
            None => return Hello::Incomplete,
            Some(&t) if t != 0x16 => return Hello::Refused,
            Some(_) => {}
        }
        let Some(len) = rest
            .get(3..5)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return Hello::Incomplete;
        };
        let Some(fragment) = rest.get(5..5 + len) else {
            return Hello::Incomplete;
        };
        hs.extend_from_slice(fragment);
        rest = &rest[5 + len..];
    }
}

/// The ServerHello's version and suite in handshake bytes `hs`, a refusal when they start with
/// another message, `None` while too short.
fn hello_in(hs: &[u8]) -> Option<Hello> {
    if *hs.first()? != 2 {
        return Some(Hello::Refused);
    }
    // type(1) length(3) version(2) random(32) session id length(1)
    let sid = *hs.get(38)?;
    let at = 39 + usize::from(sid);
    let (v, c) = (hs.get(4..6)?, hs.get(at..at + 2)?);
    Some(Hello::Found(
        u16::from_be_bytes([v[0], v[1]]),
        u16::from_be_bytes([c[0], c[1]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_hello_bytes(version: u16, suite: u16, sid: u8) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[7; 32]);
        body.push(sid);
        body.extend(std::iter::repeat_n(9, usize::from(sid)));
        body.extend_from_slice(&suite.to_be_bytes());
        body.push(0);
        let mut hs = vec![2];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut r = vec![0x16, 0x03, 0x01];
        r.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        r.extend_from_slice(&hs);
        r
    }

    #[test]
    fn server_hellos_are_read_whole_or_in_pieces() {
        let b = server_hello_bytes(0x0301, 0x002f, 32);
        assert_eq!(server_hello(&b), Hello::Found(0x0301, 0x002f));
        for cut in 0..b.len() {
            assert_eq!(server_hello(&b[..cut]), Hello::Incomplete, "{cut}");
        }
        // The same hello split over two records.
        let hs = &b[5..];
        let mut two = vec![0x16, 3, 1, 0, 10];
        two.extend_from_slice(&hs[..10]);
        two.extend_from_slice(&[0x16, 3, 1]);
        two.extend_from_slice(&((hs.len() - 10) as u16).to_be_bytes());
        two.extend_from_slice(&hs[10..]);
        assert_eq!(server_hello(&two), Hello::Found(0x0301, 0x002f));
        assert_eq!(server_hello(&[0x15, 3, 1, 0, 2, 2, 40]), Hello::Refused);
        assert_eq!(server_hello(b"HTTP/1.1 400 Bad"), Hello::Refused);
        assert_eq!(
            server_hello(&[0x16, 3, 1, 0, 4, 11, 0, 0, 0]),
            Hello::Refused
        );
        // Whatever follows a complete hello changes nothing, an alert included.
        let mut then = b.clone();
        then.push(0x15);
        assert_eq!(server_hello(&then), Hello::Found(0x0301, 0x002f));
    }

    #[test]
    fn names_read_as_operators_know_them() {
        assert_eq!(
            describe(0x0301, 0x002f),
            "TLS 1.0 with TLS_RSA_WITH_AES_128_CBC_SHA (AES128-SHA)"
        );
        assert_eq!(describe(0x0303, 0x1234), "TLS 1.2 with cipher suite 0x1234");
    }

    #[test]
    fn the_hello_is_well_formed() {
        let h = client_hello("device.example");
        assert_eq!(h[0], 0x16);
        assert_eq!(usize::from(u16::from_be_bytes([h[3], h[4]])), h.len() - 5);
        assert_eq!(h[5], 1);
        let hs_len = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
        assert_eq!(hs_len, h.len() - 9);
        assert!(h.windows(14).any(|w| w == b"device.example"));
        let ip = client_hello("[::1]");
        assert!(!ip.windows(3).any(|w| w == b"::1"), "no SNI for an address");
    }

    /// rustls' server reads our hello as a ClientHello offering what we say.
    #[test]
    fn rustls_accepts_the_hello() {
        let mut acceptor = rustls::server::Acceptor::default();
        let h = client_hello("device.example");
        let mut r: &[u8] = &h;
        while !r.is_empty() {
            acceptor.read_tls(&mut r).unwrap();
        }
        let accepted = acceptor.accept().ok().flatten().expect("a ClientHello");
        let ch = accepted.client_hello();
        assert_eq!(ch.server_name(), Some("device.example"));
        assert!(ch.cipher_suites().iter().any(|s| u16::from(*s) == 0x002f));
    }
}
