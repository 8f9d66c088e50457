//! `tls.error`: stable codes (and sentences) for what goes wrong with TLS on a flow, so a SOC can
//! query and alert on them and an operator reads what to do.

use rustls::{AlertDescription, CertificateError};

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

/// Why an upstream handshake failed, other than its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// The server requires a client certificate.
    ClientCertificateRequired,
    /// The server speaks only TLS 1.0/1.1 or older.
    LegacyVersion,
    /// The server offers only ciphers the gateway refuses.
    LegacyCipher,
    /// The server's certificate is signed with SHA-1 or MD5, or holds a short RSA key.
    LegacyCertificate,
    /// Another incompatibility.
    Incompatible,
    /// Anything else.
    Failed,
}

impl Handshake {
    /// `tls.error.code` and the event's `rule.id`.
    pub fn code(self) -> &'static str {
        match self {
            Handshake::ClientCertificateRequired => "upstream-client-certificate-required",
            Handshake::LegacyVersion => "upstream-legacy-version",
            Handshake::LegacyCipher => "upstream-legacy-cipher",
            Handshake::LegacyCertificate => "upstream-legacy-certificate",
            Handshake::Incompatible => "upstream-incompatible",
            Handshake::Failed => "upstream-tls-failed",
        }
    }

    /// A version, cipher or certificate the gateway no longer accepts.
    pub fn is_legacy(self) -> bool {
        matches!(
            self,
            Handshake::LegacyVersion | Handshake::LegacyCipher | Handshake::LegacyCertificate
        )
    }
}

/// A server that asks for a client certificate, in words.
pub(crate) const CLIENT_CERTIFICATE: &str = "the server requires a client certificate, which only the client holds: list the host in [tls] splice so the client presents its own (the flow is then not inspected)";

/// How an operator lets a legacy server through.
pub(crate) const LEGACY_WAY: &str =
    "list the host in [tls] legacy_splice (or [tls] splice) to pass it uninspected";

/// What went wrong in an upstream handshake that failed for another reason than its
/// certificate, and a sentence with what the operator can do.
pub(crate) fn upstream_handshake(e: &rustls::Error) -> (Handshake, String) {
    match e {
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => (
            Handshake::ClientCertificateRequired,
            CLIENT_CERTIFICATE.into(),
        ),
        rustls::Error::AlertReceived(AlertDescription::ProtocolVersion) => (
            Handshake::LegacyVersion,
            format!("the server speaks only a TLS version the gateway refuses (TLS 1.0/1.1 or older): {LEGACY_WAY}"),
        ),
        rustls::Error::AlertReceived(
            AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity,
        ) => (
            Handshake::LegacyCipher,
            format!("the server offers no cipher suite the gateway accepts (legacy ciphers without forward secrecy, e.g. AES128-SHA): {LEGACY_WAY}"),
        ),
        rustls::Error::PeerIncompatible(i) => (
            Handshake::Incompatible,
            format!("the server's TLS is incompatible with the gateway's ({i:?}): list the host in [tls] splice to pass it uninspected"),
        ),
        other => (Handshake::Failed, format!("upstream TLS failed: {other}")),
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
        let (kind, words) = upstream_handshake(&rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert_eq!(kind.code(), "upstream-client-certificate-required");
        assert!(words.contains("[tls] splice"));
        let (kind, _) = upstream_handshake(&rustls::Error::AlertReceived(
            AlertDescription::ProtocolVersion,
        ));
        assert_eq!(kind, Handshake::LegacyVersion);
    }
}
