//! `tls.error`: stable codes (and sentences) for what goes wrong with TLS on a flow, so a SOC can
//! query and alert on them and an operator reads what to do.

use rustls::{AlertDescription, CertificateError};
use sekisho_core::TlsError;

/// The code of an upstream certificate that did not verify.
pub(crate) fn certificate_code(c: &CertificateError) -> &'static str {
    use CertificateError as E;
    match c {
        E::Expired | E::ExpiredContext { .. } => "upstream-certificate-expired",
        E::NotValidYet | E::NotValidYetContext { .. } => "upstream-certificate-not-yet-valid",
        E::NotValidForName | E::NotValidForNameContext { .. } => "upstream-certificate-wrong-name",
        E::UnknownIssuer => "upstream-certificate-unknown-issuer",
        E::Revoked => "upstream-certificate-revoked",
        E::BadSignature | E::UnsupportedSignatureAlgorithmContext { .. } => {
            "upstream-certificate-bad-signature"
        }
        _ => "upstream-certificate-invalid",
    }
}

/// The code and sentence of an upstream handshake that failed for another reason than its
/// certificate, with what the operator can do.
pub(crate) fn upstream_handshake(e: &rustls::Error) -> (&'static str, String) {
    match e {
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => (
            "upstream-client-certificate-required",
            "the server requires a client certificate, which only the client holds: list the host in [tls] splice so the client presents its own (the flow is then not inspected)".into(),
        ),
        rustls::Error::AlertReceived(AlertDescription::ProtocolVersion) => (
            "upstream-legacy-version",
            "the server speaks only a TLS version the gateway refuses (TLS 1.0/1.1 or older): list the host in [tls] legacy_splice (or [tls] splice) to pass it uninspected".into(),
        ),
        rustls::Error::AlertReceived(
            AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity,
        ) => (
            "upstream-legacy-cipher",
            "the server offers no cipher suite the gateway accepts (legacy ciphers without forward secrecy, e.g. AES128-SHA): list the host in [tls] legacy_splice (or [tls] splice) to pass it uninspected".into(),
        ),
        rustls::Error::PeerIncompatible(i) => (
            "upstream-incompatible",
            format!("the server's TLS is incompatible with the gateway's ({i:?}): list the host in [tls] splice to pass it uninspected"),
        ),
        other => ("upstream-tls-failed", format!("upstream TLS failed: {other}")),
    }
}

/// A [`TlsError`] of a code and a sentence.
pub(crate) fn tls_error(code: &str, message: impl Into<String>) -> TlsError {
    TlsError {
        code: code.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            certificate_code(&CertificateError::Expired),
            "upstream-certificate-expired"
        );
        assert_eq!(
            certificate_code(&CertificateError::UnknownIssuer),
            "upstream-certificate-unknown-issuer"
        );
        let (code, words) = upstream_handshake(&rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert_eq!(code, "upstream-client-certificate-required");
        assert!(words.contains("[tls] splice"));
        let (code, _) = upstream_handshake(&rustls::Error::AlertReceived(
            AlertDescription::ProtocolVersion,
        ));
        assert_eq!(code, "upstream-legacy-version");
    }
}
