//! The client-certificate verifier of a reverse listener: webpki's chain check, then what it
//! leaves to us (revocation from CRLs loaded once or fetched, key usage, certificate policies),
//! and a per-connection wrapper that keeps the refused certificate's facts for the event.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use sekisho_core::ClientCert;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::*;

use crate::clientauth::{read_pem_certs, ClientAuth, PeerCert};
use crate::error::{ProxyError, Result};
use crate::revocation::Revoked;

/// The [`ClientCertVerifier`] methods a wrapper passes to its `inner` verifier unchanged (all
/// but `verify_client_cert`).
macro_rules! delegate_to_inner {
    () => {
        fn offer_client_auth(&self) -> bool {
            self.inner.offer_client_auth()
        }
        fn client_auth_mandatory(&self) -> bool {
            self.inner.client_auth_mandatory()
        }
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            self.inner.root_hint_subjects()
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// A listener's client-certificate verifier and its distribution-point fetcher, if any.
pub type Verifier = (
    Arc<dyn ClientCertVerifier>,
    Option<Arc<crate::crlfetch::Fetcher>>,
);

/// Builds the client-certificate verifier of a listener: CA bundles, CRLs (verified once here;
/// end-entity revocation, expired CRLs refused), key usage, required certificate policies;
/// mandatory unless `optional` or `missing_cert = "403"`.
pub fn verifier(
    mode: ClientAuth,
    mandatory: bool,
    cas: &[PathBuf],
    crls: &[PathBuf],
    policies: &[String],
) -> Result<Arc<dyn ClientCertVerifier>> {
    verifier_with(mode, mandatory, cas, crls, policies, None).map(|(v, _)| v)
}

/// [`verifier`] with CRLs fetched from the certificates' distribution points
/// (`crl_refresh`), for the listener named; the fetcher is returned too, for the resumed
/// sessions that no verifier sees.
pub fn verifier_with(
    mode: ClientAuth,
    mandatory: bool,
    cas: &[PathBuf],
    crls: &[PathBuf],
    policies: &[String],
    refresh: Option<(&str, &crate::crlfetch::CrlRefresh)>,
) -> Result<Verifier> {
    if mode == ClientAuth::None {
        return Ok((rustls::server::WebPkiClientVerifier::no_client_auth(), None));
    }
    let mut roots = RootCertStore::empty();
    let mut anchors = Vec::new();
    for p in cas {
        for c in read_pem_certs(p)? {
            roots.add(c.clone()).map_err(|e| ProxyError::Cert {
                path: p.clone(),
                message: format!("unusable CA certificate: {e}"),
            })?;
            anchors.push(c);
        }
    }
    let revocation = crate::revocation::Revocation::load(crls, &anchors)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut b =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !mandatory {
        b = b.allow_unauthenticated();
    }
    let inner = b.build().map_err(|e| ProxyError::Cert {
        path: cas.first().cloned().unwrap_or_default(),
        message: format!("client CA verifier: {e}"),
    })?;
    let fetch = refresh.map(|(listener, cfg)| {
        crate::crlfetch::Fetcher::new(listener, cfg.clone(), anchors.clone())
    });
    let checked = Arc::new(Checked {
        inner,
        revocation,
        fetch: fetch.clone(),
        policies: policies.to_vec(),
    });
    Ok((checked, fetch))
}

/// A refusal of our own checks that rustls reports as a bad certificate: its metric reason
/// and its sentence.
#[derive(Debug)]
struct Unfit {
    code: &'static str,
    message: String,
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Unfit {}

/// A refusal with our metric reason (`key_usage`, `policy`, `crl_unavailable` …) and sentence,
/// reported by rustls as a bad certificate.
pub(crate) fn unfit(code: &'static str, message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(Unfit { code, message }),
    )))
}

/// The metric reason (and, dashed, the event's rule id suffix) of a refused client
/// certificate, from the error's kind, never its wording.
pub(crate) fn refusal_code(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature | C::UnsupportedSignatureAlgorithmContext { .. } => {
                "unknown_ca"
            }
            C::Revoked => "revoked",
            C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => "crl_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "not_yet_valid",
            C::Expired | C::ExpiredContext { .. } => "expired",
            C::Other(o) => o.0.downcast_ref::<Unfit>().map_or("other", |u| u.code),
            _ => "other",
        },
        rustls::Error::NoCertificatesPresented => "missing",
        _ => "other",
    }
}

/// The chain verified by webpki, then what webpki leaves to us: revocation from CRLs loaded
/// once, key usage fit for TLS client authentication, and the listener's certificate policies.
#[derive(Debug)]
struct Checked {
    inner: Arc<dyn ClientCertVerifier>,
    revocation: crate::revocation::Revocation,
    /// CRLs from the distribution points (`crl_refresh`).
    fetch: Option<Arc<crate::crlfetch::Fetcher>>,
    policies: Vec<String>,
}

impl Checked {
    /// The checks on a leaf whose chain verified.
    fn leaf(
        &self,
        der: &[u8],
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<(), rustls::Error> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        self.revocation
            .check(&cert, chain, now)
            .map_err(Revoked::error)?;
        if let Some(f) = &self.fetch {
            f.check(&cert, chain, now)?;
        }
        if let Ok(Some(ku)) = cert.key_usage() {
            if !ku.value.digital_signature() {
                return Err(unfit(
                    "key_usage",
                    format!(
                    "key usage {} does not allow TLS client authentication (digitalSignature){}",
                    ku.value,
                    if ku.value.non_repudiation() {
                        ": a signature certificate, not an authentication certificate"
                    } else {
                        ""
                    }
                ),
                ));
            }
        }
        if !self.policies.is_empty() {
            let held: Vec<String> = cert
                .extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::CertificatePolicies(p) => {
                        Some(p.iter().map(|i| i.policy_id.to_id_string()).collect())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            if !held.iter().any(|h| self.policies.contains(h)) {
                return Err(unfit(
                    "policy",
                    format!(
                        "certificate policy {} is not one this service accepts ({})",
                        if held.is_empty() {
                            "none".to_string()
                        } else {
                            held.join(", ")
                        },
                        self.policies.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl ClientCertVerifier for Checked {
    delegate_to_inner!();
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.leaf(end_entity.as_ref(), intermediates, now)?;
        Ok(ok)
    }
}

/// Why a client certificate was refused in a handshake, with the certificate's facts.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The metric reason (`unknown_ca`, `revoked`, `key_usage` …): [`refusal_code`].
    pub code: &'static str,
    /// The reason in words (rustls' for its checks, ours for ours).
    pub reason: String,
    /// The refused certificate, if it parsed.
    pub cert: Option<ClientCert>,
}

/// A refusal in words: our own checks' sentence as written, rustls' reasons as rustls says them.
pub(crate) fn reason_text(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
            format!("invalid peer certificate: {o}")
        }
        e => e.to_string(),
    }
}

/// Wraps a verifier for one connection and keeps the refused certificate's facts, so the
/// handshake failure can be logged and reported with its subject, issuer and serial.
#[derive(Debug)]
pub struct Recording {
    inner: Arc<dyn ClientCertVerifier>,
    /// The refusal of this connection's certificate, if any.
    pub refusal: Mutex<Option<Refusal>>,
}

impl Recording {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ClientCertVerifier>) -> Arc<Recording> {
        Arc::new(Recording {
            inner,
            refusal: Mutex::new(None),
        })
    }

    /// The refusal recorded, if any.
    pub fn take(&self) -> Option<Refusal> {
        self.refusal.lock().ok().and_then(|mut r| r.take())
    }
}

impl ClientCertVerifier for Recording {
    delegate_to_inner!();
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let r = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        if let Err(e) = &r {
            let cert =
                PeerCert::from_der(end_entity.clone().into_owned(), None, None).map(|p| p.facts);
            if let Ok(mut slot) = self.refusal.lock() {
                *slot = Some(Refusal {
                    code: refusal_code(e),
                    reason: reason_text(e),
                    cert,
                });
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError as C;

    #[test]
    fn refusal_codes_come_from_the_error_kind_not_its_words() {
        let cert = |c| rustls::Error::InvalidCertificate(c);
        assert_eq!(refusal_code(&cert(C::UnknownIssuer)), "unknown_ca");
        assert_eq!(refusal_code(&cert(C::Revoked)), "revoked");
        assert_eq!(refusal_code(&cert(C::Expired)), "expired");
        assert_eq!(refusal_code(&cert(C::NotValidYet)), "not_yet_valid");
        assert_eq!(refusal_code(&cert(C::ExpiredRevocationList)), "crl_expired");
        assert_eq!(
            refusal_code(&rustls::Error::NoCertificatesPresented),
            "missing"
        );
        // A URL that happens to read "revoked" or "expired" does not change the reason.
        let e = unfit(
            "crl_unavailable",
            "no CRL fetched yet from http://ca.test/revoked-expired.crl".into(),
        );
        assert_eq!(refusal_code(&e), "crl_unavailable");
        assert!(reason_text(&e).contains("revoked-expired.crl"));
        assert_eq!(refusal_code(&unfit("key_usage", "x".into())), "key_usage");
    }
}
