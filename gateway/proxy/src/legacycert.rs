//! Upstream certificates refused for their age rather than their trust: signatures made with
//! SHA-1 or MD5, RSA keys shorter than 2048 bits. rustls refuses them like a forged signature;
//! the gateway names them as legacy, so `[tls] on_legacy_upstream` and `legacy_splice` apply
//! and the page says what the server still uses.

use std::sync::Arc;

use rustls::{CertificateError, Error};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// The shortest RSA modulus the gateway verifies with, in bits.
const MIN_RSA_BITS: usize = 2048;

/// A certificate the server presents that only a legacy client accepts, in words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LegacyCertificate(pub String);

/// Signature algorithms no longer verified, by the DER of their OID (tag and length included),
/// and their names.
const WEAK_SIGNATURES: &[(&[u8], &str)] = &[
    (
        b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x05",
        "SHA-1 (sha1WithRSAEncryption)",
    ),
    (
        b"\x06\x05\x2b\x0e\x03\x02\x1d",
        "SHA-1 (sha1WithRSASignature)",
    ),
    (
        b"\x06\x07\x2a\x86\x48\xce\x3d\x04\x01",
        "SHA-1 (ecdsa-with-SHA1)",
    ),
    (
        b"\x06\x07\x2a\x86\x48\xce\x38\x04\x03",
        "SHA-1 (dsa-with-sha1)",
    ),
    (
        b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x04",
        "MD5 (md5WithRSAEncryption)",
    ),
    (
        b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x02",
        "MD2 (md2WithRSAEncryption)",
    ),
];

fn weak_signature(algorithm_id: &[u8]) -> Option<&'static str> {
    WEAK_SIGNATURES
        .iter()
        .find(|(oid, _)| algorithm_id.windows(oid.len()).any(|w| w == *oid))
        .map(|(_, name)| *name)
}

/// The modulus length of an RSA key in bits; `None` for other keys or unreadable certificates.
pub(crate) fn rsa_bits(cert: &[u8]) -> Option<usize> {
    let (_, c) = X509Certificate::from_der(cert).ok()?;
    let PublicKey::RSA(k) = c.public_key().parsed().ok()? else {
        return None;
    };
    let m = k.modulus;
    let start = m.iter().position(|&b| b != 0)?;
    Some((m.len() - start) * 8 - m[start].leading_zeros() as usize)
}

fn legacy(words: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        LegacyCertificate(words),
    ))))
}

/// `e`, refused while verifying the chain of `end_entity` with `intermediates`, named as legacy
/// when a weak signature, or a short RSA key of a certificate that issued another one in the
/// chain, is why.
pub(crate) fn chain_error(
    e: Error,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Error {
    use CertificateError as C;
    match &e {
        Error::InvalidCertificate(C::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id,
            ..
        }) => match weak_signature(signature_algorithm_id) {
            Some(name) => legacy(format!(
                "the server's certificate chain is signed with {name}, which the gateway no longer accepts"
            )),
            None => e,
        },
        Error::InvalidCertificate(C::BadSignature | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }) => {
            let short = short_issuer(end_entity, intermediates);
            match short {
                Some(bits) => legacy(format!(
                    "the server's certificate chain holds a {bits}-bit RSA key (the gateway needs {MIN_RSA_BITS} bits or more)"
                )),
                None => e,
            }
        }
        _ => e,
    }
}

/// The key length of an intermediate with a short RSA key that issued the end entity or
/// another intermediate (an unrelated short certificate in the chain is not why).
fn short_issuer(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<usize> {
    // The issuer names, by position: 0 the end entity, i + 1 intermediate i.
    let issuers: Vec<Option<Vec<u8>>> = std::iter::once(end_entity)
        .chain(intermediates)
        .map(|c| {
            let (_, c) = X509Certificate::from_der(c).ok()?;
            Some(c.issuer().as_raw().to_vec())
        })
        .collect();
    intermediates.iter().enumerate().find_map(|(i, c)| {
        let bits = rsa_bits(c).filter(|&b| b < MIN_RSA_BITS)?;
        let (_, parsed) = X509Certificate::from_der(c).ok()?;
        let subject = parsed.subject().as_raw();
        let issued_another = issuers
            .iter()
            .enumerate()
            .any(|(at, issuer)| at != i + 1 && issuer.as_deref() == Some(subject));
        issued_another.then_some(bits)
    })
}

/// `e`, refused while checking the server's handshake signature made with `cert`'s key, named as
/// legacy when that key is a short RSA key.
pub(crate) fn handshake_error(e: Error, cert: &CertificateDer<'_>) -> Error {
    match rsa_bits(cert) {
        Some(bits) if bits < MIN_RSA_BITS => legacy(format!(
            "the server's certificate has a {bits}-bit RSA key (the gateway needs {MIN_RSA_BITS} bits or more)"
        )),
        _ => e,
    }
}

/// The words of a legacy certificate error.
pub(crate) fn words(e: &CertificateError) -> Option<String> {
    let CertificateError::Other(o) = e else {
        return None;
    };
    o.0.downcast_ref::<LegacyCertificate>().map(|l| l.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_cert(bits: u32) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                &format!("rsa:{bits}"),
                "-nodes",
                "-keyout",
                "/dev/null",
                "-subj",
                "/CN=legacy.test",
                "-days",
                "1",
                "-outform",
                "DER",
            ])
            .output()
            .expect("openssl");
        assert!(out.status.success());
        out.stdout
    }

    /// A leaf (2048-bit key) issued by a CA with a 1024-bit key: (leaf, CA), DER.
    fn issued_by_short_ca() -> (CertificateDer<'static>, CertificateDer<'static>) {
        let dir = std::env::temp_dir().join(format!(
            "sekisho-legacycert-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl");
            assert!(out.status.success(), "{args:?}");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.der",
            "-outform",
            "DER",
            "-subj",
            "/CN=Short CA",
            "-days",
            "1",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=device.test",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.der",
            "-CAform",
            "DER",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "7",
            "-days",
            "1",
            "-outform",
            "DER",
            "-out",
            "leaf.der",
        ]);
        let read = |n: &str| CertificateDer::from(std::fs::read(dir.join(n)).unwrap());
        let pair = (read("leaf.der"), read("ca.der"));
        let _ = std::fs::remove_dir_all(&dir);
        pair
    }

    #[test]
    fn rsa_key_lengths_are_read() {
        assert_eq!(rsa_bits(&rsa_cert(1024)), Some(1024));
        assert_eq!(rsa_bits(&rsa_cert(2048)), Some(2048));
        assert_eq!(rsa_bits(b"not a certificate"), None);
    }

    #[test]
    fn weak_signatures_and_short_keys_are_named() {
        let sha1 =
            Error::InvalidCertificate(CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x05\x05\x00"
                    .to_vec(),
                supported_algorithms: Vec::new(),
            });
        let leaf = CertificateDer::from(rsa_cert(2048));
        let Error::InvalidCertificate(c) = chain_error(sha1, &leaf, &[]) else {
            panic!()
        };
        assert!(words(&c).unwrap().contains("SHA-1 (sha1WithRSAEncryption)"));
        let other =
            Error::InvalidCertificate(CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: b"\x06\x03\x2a\x03\x04".to_vec(),
                supported_algorithms: Vec::new(),
            });
        assert!(matches!(
            chain_error(other, &leaf, &[]),
            Error::InvalidCertificate(
                CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            )
        ));
        let short = CertificateDer::from(rsa_cert(1024));
        let bad = || Error::InvalidCertificate(CertificateError::BadSignature);
        let (issued, short_ca) = issued_by_short_ca();
        let Error::InvalidCertificate(c) =
            chain_error(bad(), &issued, std::slice::from_ref(&short_ca))
        else {
            panic!()
        };
        assert!(words(&c).unwrap().contains("1024-bit RSA key"));
        assert_eq!(
            chain_error(bad(), &leaf, std::slice::from_ref(&short_ca)),
            bad(),
            "a short certificate that issued nothing in the chain is not why"
        );
        assert_eq!(
            chain_error(bad(), &leaf, std::slice::from_ref(&leaf)),
            bad(),
            "a forged signature stays one"
        );
        let Error::InvalidCertificate(c) = handshake_error(bad(), &short) else {
            panic!()
        };
        assert!(words(&c).unwrap().contains("1024-bit"));
        assert_eq!(handshake_error(bad(), &leaf), bad());
        assert!(words(&CertificateError::BadSignature).is_none());
    }
}
