//! JA4 fingerprints of a TLS ClientHello, as Suricata 8 computes them (`rust/src/ja4.rs`):
//! `t`, the version, `d`/`i` for SNI, the cipher and extension counts, the first and last
//! character of the first ALPN; then the first 12 hex digits of SHA-256 over the sorted
//! ciphers, and over the sorted extensions (without SNI and ALPN) `_` the signature algorithms
//! in their order. GREASE values are left out everywhere.

use sha2::{Digest, Sha256};

use crate::ja3::{client_hello, Hello};

/// The JA4 fingerprint of a ClientHello given as TLS records; `None` when the bytes are not
/// one.
pub fn ja4_hash(raw: &[u8]) -> Option<String> {
    client_hello(raw).map(|h| ja4(&h))
}

/// The JA4 fingerprint of a parsed ClientHello.
pub(crate) fn ja4(h: &Hello) -> String {
    let alpn = alpn_chars(h.alpns.first().map(Vec::as_slice));
    let a = format!(
        "t{}{}{:02}{:02}{}{}",
        version_code(h.best_version),
        if h.exts.contains(&0) { 'd' } else { 'i' },
        h.ciphers.len().min(99),
        h.exts.len().min(99),
        alpn[0],
        alpn[1]
    );
    let mut ciphers = h.ciphers.clone();
    ciphers.sort_unstable();
    let mut exts: Vec<u16> = h
        .exts
        .iter()
        .copied()
        .filter(|&e| e != 0 && e != 16)
        .collect();
    exts.sort_unstable();
    // As Suricata: the `_` is there even without signature algorithms, and an empty list is
    // hashed like any other.
    let c = format!("{}_{}", hex_list(&exts), hex_list(&h.sigalgs));
    format!("{a}_{}_{}", sha12(&hex_list(&ciphers)), sha12(&c))
}

fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        _ => "00",
    }
}

/// The first and last character of an ALPN name; hex digits of its first byte's high and its
/// last byte's low nibble when either is not alphanumeric; `00` for none or a GREASE pair.
fn alpn_chars(alpn: Option<&[u8]>) -> [char; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let Some(alpn @ [first, .., last] | alpn @ [first @ last]) = alpn else {
        return ['0', '0'];
    };
    if alpn.len() == 2 && crate::ja3::grease(u16::from_be_bytes([*first, *last])) {
        return ['0', '0'];
    }
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        [char::from(*first), char::from(*last)]
    } else {
        [
            char::from(HEX[usize::from(first >> 4)]),
            char::from(HEX[usize::from(last & 0xf)]),
        ]
    }
}

fn hex_list(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn sha12(s: &str) -> String {
    let mut h = hex::encode(Sha256::digest(s.as_bytes()));
    h.truncate(12);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(alpn: Option<&[u8]>) -> Hello {
        Hello {
            alpns: alpn.map(|a| vec![a.to_vec()]).unwrap_or_default(),
            ..Hello::default()
        }
    }

    /// Suricata's own `ja4.rs` test cases.
    #[test]
    fn alpn_characters_as_suricata_writes_them() {
        let a = |b: &[u8]| ja4(&hello(Some(b)))[..10].to_string();
        assert_eq!(a(b"http/1.1"), "t00i0000h1");
        assert_eq!(a(b"b"), "t00i0000bb");
        assert_eq!(a(b"h2"), "t00i0000h2");
        assert_eq!(a(&[0xab]), "t00i0000ab");
        assert_eq!(a(&[0xab, 0xcd]), "t00i0000ad");
        assert_eq!(a(&[0x30, 0xab]), "t00i00003b");
        assert_eq!(a(&[0x30, 0x31, 0xab, 0xcd]), "t00i00003d");
        assert_eq!(a(&[0x01, b'T', b'E', 0x7f]), "t00i00000f");
        assert_eq!(a(&[0x2a, 0x2a]), "t00i000000");
        assert_eq!(&ja4(&hello(None))[..10], "t00i000000");
    }

    #[test]
    fn counts_stop_at_99() {
        let h = Hello {
            ciphers: (1..200).collect(),
            exts: (1..200).collect(),
            ..Hello::default()
        };
        assert_eq!(&ja4(&h)[..10], "t00i999900");
    }

    /// The JA3 test's ClientHello: TLS 1.2, SNI, two ciphers, three extensions, no ALPN.
    #[test]
    fn a_client_hello_record() {
        let rec = crate::ja3::sample_client_hello();
        // sha256("1301,c02b") and sha256("000a,000b_"), first 12 hex digits.
        assert_eq!(
            ja4_hash(&rec).unwrap(),
            "t12d020300_777cda164f4b_c2f961105e84"
        );
        assert!(ja4_hash(b"GET / HTTP/1.1\r\n").is_none());
    }

    /// FoxIO's published example: a Chrome ClientHello's ciphers, extensions and signature
    /// algorithms give `t13d1516h2_8daaf6152771_e5627efa2ab1`.
    #[test]
    fn the_published_chrome_example() {
        let h = Hello {
            best_version: 0x0304,
            ciphers: vec![
                0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
            ],
            exts: vec![
                0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
                0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
            ],
            sigalgs: vec![
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ],
            alpns: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ..Hello::default()
        };
        assert_eq!(ja4(&h), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }
}
