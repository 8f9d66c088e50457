//! JA3 fingerprints of a TLS ClientHello (the raw record bytes the proxy peeked).

use md5::{Digest, Md5};

/// Whether `v` is a GREASE value (RFC 8701).
pub(crate) fn grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

fn join(v: &[u16]) -> String {
    v.iter().map(u16::to_string).collect::<Vec<_>>().join("-")
}

/// What JA3 and JA4 read of a ClientHello (GREASE values left out, as both leave them out).
#[derive(Debug, Default)]
pub(crate) struct Hello {
    /// The legacy `client_version`.
    pub version: u16,
    /// The highest of `client_version` and the first valid `supported_versions` entry.
    pub best_version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types in the order sent.
    pub exts: Vec<u16>,
    pub groups: Vec<u16>,
    pub formats: Vec<u16>,
    /// `signature_algorithms`, in the order sent.
    pub sigalgs: Vec<u16>,
    /// ALPN protocol names, in the order sent.
    pub alpns: Vec<Vec<u8>>,
    /// The 32 random bytes.
    pub random: Vec<u8>,
}

/// The handshake bytes of consecutive handshake records (or a bare handshake message).
fn handshake_bytes(raw: &[u8]) -> Option<Vec<u8>> {
    let mut hs = Vec::new();
    if raw.first() == Some(&0x16) {
        let mut r = Reader(raw);
        while let Some(t) = r.u8() {
            let _ver = r.u16()?;
            let len = usize::from(r.u16()?);
            let Some(body) = r.take(len) else {
                // A truncated last record: use what there is.
                hs.extend_from_slice(r.0);
                break;
            };
            if t != 0x16 {
                break;
            }
            hs.extend_from_slice(body);
        }
    } else {
        hs.extend_from_slice(raw);
    }
    Some(hs)
}

/// A TLS version Suricata's `TLSVersionValid` takes from `supported_versions`: SSL 3 to TLS
/// 1.3 and the TLS 1.3 drafts (IETF and Facebook's).
fn valid_version(v: u16) -> bool {
    (0x0300..=0x0304).contains(&v) || v >> 8 == 0x7f || v >> 8 == 0xfb
}

/// Parses a ClientHello given as TLS records (or a bare handshake message); `None` when the
/// bytes are not one.
pub(crate) fn client_hello(raw: &[u8]) -> Option<Hello> {
    let hs = handshake_bytes(raw)?;
    let mut r = Reader(&hs);
    if r.u8()? != 1 {
        return None;
    }
    let len = r.u24()?;
    let mut r = Reader(r.take(len.min(r.0.len()))?);
    let mut h = Hello {
        version: r.u16()?,
        ..Hello::default()
    };
    h.best_version = if grease(h.version) { 0 } else { h.version };
    h.random = r.take(32)?.to_vec();
    let sid = usize::from(r.u8()?);
    r.take(sid)?;
    let clen = usize::from(r.u16()?);
    h.ciphers = u16s(r.take(clen)?);
    let comp = usize::from(r.u8()?);
    r.take(comp)?;
    if let Some(elen) = r.u16() {
        let mut e = Reader(r.take(usize::from(elen)).unwrap_or(r.0));
        while let (Some(t), Some(l)) = (e.u16(), e.u16()) {
            let Some(data) = e.take(usize::from(l)) else {
                break;
            };
            if !grease(t) {
                h.exts.push(t);
                extension(&mut h, t, data);
            }
        }
    }
    Some(h)
}

/// The non-GREASE big-endian `u16`s of `b`.
fn u16s(b: &[u8]) -> Vec<u16> {
    let mut r = Reader(b);
    std::iter::from_fn(|| r.u16())
        .filter(|&v| !grease(v))
        .collect()
}

/// Reads the extensions JA3 and JA4 use.
fn extension(h: &mut Hello, t: u16, data: &[u8]) {
    let mut d = Reader(data);
    match t {
        10 => {
            let n = usize::from(d.u16().unwrap_or(0));
            h.groups = u16s(d.take(n).unwrap_or_default());
        }
        11 => {
            let n = usize::from(d.u8().unwrap_or(0));
            h.formats
                .extend(d.take(n).unwrap_or_default().iter().map(|&b| u16::from(b)));
        }
        13 => {
            let n = usize::from(d.u16().unwrap_or(0));
            h.sigalgs = u16s(d.take(n).unwrap_or_default());
        }
        16 => {
            let n = usize::from(d.u16().unwrap_or(0));
            let mut list = Reader(d.take(n).unwrap_or_default());
            while let Some(l) = list.u8() {
                match list.take(usize::from(l)) {
                    Some(name) if !name.is_empty() => h.alpns.push(name.to_vec()),
                    Some(_) => {}
                    None => break,
                }
            }
        }
        43 => {
            let n = usize::from(d.u8().unwrap_or(0));
            let first = u16s(d.take(n).unwrap_or_default())
                .into_iter()
                .find(|&v| valid_version(v));
            if let Some(v) = first {
                h.best_version = h.best_version.max(v);
            }
        }
        _ => {}
    }
}

/// The JA3 string (`version,ciphers,extensions,groups,point_formats`) of a ClientHello given as
/// TLS records (or a bare handshake message); `None` when the bytes are not a ClientHello.
pub fn ja3_string(raw: &[u8]) -> Option<String> {
    client_hello(raw).map(|h| ja3_of(&h))
}

/// The JA3 string of a parsed ClientHello.
pub(crate) fn ja3_of(h: &Hello) -> String {
    format!(
        "{},{},{},{},{}",
        h.version,
        join(&h.ciphers),
        join(&h.exts),
        join(&h.groups),
        join(&h.formats)
    )
}

/// The JA3 hash: MD5 of the string, lower-case hex.
pub fn ja3_hash(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// A minimal ClientHello as one record: TLS 1.2, ciphers {GREASE, 0x1301, 0xc02b},
/// extensions server_name (empty), supported_groups {GREASE, 29, 23}, ec_point_formats {0}.
#[cfg(test)]
pub(crate) fn sample_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([0u8; 32]);
    body.push(0);
    body.extend([0x00, 0x06, 0x0a, 0x0a, 0x13, 0x01, 0xc0, 0x2b]);
    body.extend([0x01, 0x00]);
    let exts: Vec<u8> = [
        vec![0x00, 0x00, 0x00, 0x00],
        vec![
            0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x1a, 0x1a, 0x00, 0x1d, 0x00, 0x17,
        ],
        vec![0x00, 0x0b, 0x00, 0x02, 0x01, 0x00],
    ]
    .concat();
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01, 0x00, hs.len() as u8];
    rec.extend(hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_fingerprint() {
        let rec = sample_client_hello();
        let s = ja3_string(&rec).unwrap();
        assert_eq!(s, "771,4865-49195,0-10-11,29-23,0");
        assert_eq!(ja3_hash(&s).len(), 32);
        assert!(ja3_string(b"GET / HTTP/1.1\r\n").is_none());
        assert!(ja3_string(&rec[..20]).is_none());
    }
}
