//! Client certificates at reverse listeners: the verifier (CA bundles, CRLs), the facility ID and
//! attribute rules (`subject:OU`, `san:uri:<prefix>`, `oid:<dotted>` …), and the facts events
//! report (subject, issuer, serial).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use sekisho_core::ClientCert;
use x509_parser::prelude::*;

use crate::error::{ProxyError, Result};

/// `client_auth`: whether a reverse listener asks for client certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Every client must present a certificate that verifies.
    Required,
    /// A certificate is asked for; one that is presented must verify; none is allowed.
    Optional,
    /// No certificate is asked for (the default).
    #[default]
    None,
}

/// Where a certificate attribute is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttrRule {
    /// A subject DN attribute, by dotted OID (`subject:OU` is `2.5.4.11`); the first one.
    Subject(String),
    /// An issuer DN attribute, by dotted OID.
    Issuer(String),
    /// The first URI subjectAltName starting with the prefix; the prefix is cut off.
    SanUri(String),
    /// The first DNS subjectAltName.
    SanDns,
    /// The first email (rfc822Name) subjectAltName.
    SanEmail,
    /// An extension's value, by dotted OID: a DER string as text, anything else as hex.
    Extension(String),
}

/// DN attribute short names and their OIDs.
const DN_NAMES: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("OU", "2.5.4.11"),
    ("O", "2.5.4.10"),
    ("C", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("serialNumber", "2.5.4.5"),
    ("title", "2.5.4.12"),
    ("dnQualifier", "2.5.4.46"),
    ("organizationIdentifier", "2.5.4.97"),
    ("emailAddress", "1.2.840.113549.1.9.1"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("DC", "0.9.2342.19200300.100.1.25"),
];

fn dotted(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 10 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn dn_oid(name: &str) -> Option<String> {
    if dotted(name) {
        return Some(name.to_string());
    }
    DN_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, o)| o.to_string())
}

impl AttrRule {
    /// Parses `subject:OU`, `issuer:CN`, `san:uri[:prefix]`, `san:dns`, `san:email`,
    /// `oid:1.2.3`.
    pub fn parse(s: &str) -> std::result::Result<AttrRule, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        let names = || {
            DN_NAMES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match kind.to_ascii_lowercase().as_str() {
            "subject" | "issuer" => {
                let oid = dn_oid(rest).ok_or_else(|| {
                    format!(
                        "{s:?}: unknown DN attribute {rest:?} (known: {}, or a dotted OID)",
                        names()
                    )
                })?;
                Ok(if kind.eq_ignore_ascii_case("subject") {
                    AttrRule::Subject(oid)
                } else {
                    AttrRule::Issuer(oid)
                })
            }
            "san" => {
                let (what, prefix) = rest.split_once(':').unwrap_or((rest, ""));
                match what.to_ascii_lowercase().as_str() {
                    "uri" => Ok(AttrRule::SanUri(prefix.to_string())),
                    "dns" if prefix.is_empty() => Ok(AttrRule::SanDns),
                    "email" if prefix.is_empty() => Ok(AttrRule::SanEmail),
                    _ => Err(format!(
                        "{s:?}: expected san:uri, san:uri:<prefix>, san:dns or san:email"
                    )),
                }
            }
            "oid" if dotted(rest) => Ok(AttrRule::Extension(rest.to_string())),
            "oid" => Err(format!("{s:?}: expected oid:<dotted OID>, e.g. oid:1.2.392.100495.1.6.1.1")),
            _ => Err(format!(
                "{s:?}: expected subject:<attribute>, issuer:<attribute>, san:uri[:<prefix>], san:dns, san:email or oid:<dotted OID>"
            )),
        }
    }

    /// The attribute's value in `cert`, if it has one.
    pub fn value(&self, cert: &X509Certificate<'_>) -> Option<String> {
        match self {
            AttrRule::Subject(oid) => dn_value(cert.subject(), oid),
            AttrRule::Issuer(oid) => dn_value(cert.issuer(), oid),
            AttrRule::SanUri(prefix) => san(cert).into_iter().find_map(|g| match g {
                GeneralName::URI(u) => u.strip_prefix(prefix.as_str()).map(str::to_string),
                _ => None,
            }),
            AttrRule::SanDns => san(cert).into_iter().find_map(|g| match g {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            }),
            AttrRule::SanEmail => san(cert).into_iter().find_map(|g| match g {
                GeneralName::RFC822Name(e) => Some(e.to_string()),
                _ => None,
            }),
            AttrRule::Extension(oid) => cert
                .extensions()
                .iter()
                .find(|e| e.oid.to_id_string() == *oid)
                .map(|e| der_text(e.value)),
        }
        .filter(|v| !v.is_empty())
    }
}

fn dn_value(name: &X509Name<'_>, oid: &str) -> Option<String> {
    name.iter_attributes()
        .find(|a| a.attr_type().to_id_string() == oid)
        .map(|a| match a.as_str() {
            Ok(s) => s.to_string(),
            Err(_) => hex(a.attr_value().data),
        })
}

fn san<'a>(cert: &'a X509Certificate<'a>) -> Vec<&'a GeneralName<'a>> {
    match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext.value.general_names.iter().collect(),
        _ => Vec::new(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An extension value: the text of a DER string (UTF8String, PrintableString, IA5String …),
/// else the bytes in hex.
fn der_text(v: &[u8]) -> String {
    use x509_parser::der_parser::ber::BerObjectContent;
    if let Ok((_, obj)) = x509_parser::der_parser::parse_der(v) {
        match obj.content {
            BerObjectContent::UTF8String(s)
            | BerObjectContent::PrintableString(s)
            | BerObjectContent::IA5String(s)
            | BerObjectContent::VisibleString(s)
            | BerObjectContent::NumericString(s) => return s.to_string(),
            _ => {}
        }
    }
    hex(v)
}

/// Matches `*` (any run) and `?` (one character) wildcards, case-sensitively.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matcher with one backtrack point (linear in practice, no recursion).
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A verified client certificate: what routes and events need from it.
#[derive(Clone, Debug)]
pub struct PeerCert {
    /// Subject, issuer, serial (for events).
    pub facts: ClientCert,
    /// The facility ID by the listener's rule, if the certificate carries one.
    pub facility: Option<String>,
    /// The leaf (DER), for route attribute conditions.
    pub der: CertificateDer<'static>,
}

impl PeerCert {
    /// Reads the facts from a verified leaf.
    pub fn from_der(der: CertificateDer<'static>, rule: Option<&AttrRule>) -> Option<PeerCert> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let facts = ClientCert {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: hex(cert.raw_serial()).trim_start_matches("00").to_string(),
        };
        let facility = rule.and_then(|r| r.value(&cert));
        drop(cert);
        Some(PeerCert {
            facts,
            facility,
            der,
        })
    }

    /// The value of `rule` in this certificate.
    pub fn attribute(&self, rule: &AttrRule) -> Option<String> {
        let (_, cert) = X509Certificate::from_der(self.der.as_ref()).ok()?;
        rule.value(&cert)
    }
}

/// The certificates of a PEM file (at least one), with errors naming the file.
pub(crate) fn read_pem_certs(p: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
        .map_err(|e| ProxyError::Cert {
            path: p.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| ProxyError::Cert {
            path: p.to_path_buf(),
            message: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(ProxyError::Cert {
            path: p.to_path_buf(),
            message: "no CERTIFICATE in PEM file".into(),
        });
    }
    Ok(certs)
}

fn read_crl(p: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let bytes = std::fs::read(p).map_err(|e| ProxyError::Cert {
        path: p.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| ProxyError::Cert {
            path: p.to_path_buf(),
            message: format!("bad PEM: {e}"),
        })?;
    let crls = if pem.is_empty() {
        vec![CertificateRevocationListDer::from(bytes)]
    } else {
        pem
    };
    for c in &crls {
        if let Err(e) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(c.as_ref())
        {
            return Err(ProxyError::Cert {
                path: p.to_path_buf(),
                message: format!("not a certificate revocation list: {e}"),
            });
        }
    }
    Ok(crls)
}

/// Builds the client-certificate verifier of a listener: CA bundles, CRLs (end-entity
/// revocation, expired CRLs refused), mandatory unless `optional` or `missing_cert = "403"`.
pub fn verifier(
    mode: ClientAuth,
    mandatory: bool,
    cas: &[PathBuf],
    crls: &[PathBuf],
) -> Result<Arc<dyn ClientCertVerifier>> {
    if mode == ClientAuth::None {
        return Ok(rustls::server::WebPkiClientVerifier::no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    for p in cas {
        for c in read_pem_certs(p)? {
            roots.add(c).map_err(|e| ProxyError::Cert {
                path: p.clone(),
                message: format!("unusable CA certificate: {e}"),
            })?;
        }
    }
    let mut list = Vec::new();
    for p in crls {
        list.extend(read_crl(p)?);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut b =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !list.is_empty() {
        b = b
            .with_crls(list)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status()
            .enforce_revocation_expiration();
    }
    if !mandatory {
        b = b.allow_unauthenticated();
    }
    b.build().map_err(|e| ProxyError::Cert {
        path: cas.first().cloned().unwrap_or_default(),
        message: format!("client CA verifier: {e}"),
    })
}

/// Why a client certificate was refused in a handshake, with the certificate's facts.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// rustls' reason (`UnknownIssuer`, `Revoked`, `Expired` …).
    pub reason: String,
    /// The refused certificate, if it parsed.
    pub cert: Option<ClientCert>,
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
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
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
            let cert = PeerCert::from_der(end_entity.clone().into_owned(), None).map(|p| p.facts);
            if let Ok(mut slot) = self.refusal.lock() {
                *slot = Some(Refusal {
                    reason: e.to_string(),
                    cert,
                });
            }
        }
        r
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rules_parse() {
        assert_eq!(
            AttrRule::parse("subject:OU").unwrap(),
            AttrRule::Subject("2.5.4.11".into())
        );
        assert_eq!(
            AttrRule::parse("subject:serialNumber").unwrap(),
            AttrRule::Subject("2.5.4.5".into())
        );
        assert_eq!(
            AttrRule::parse("san:uri:urn:sekisho:facility:").unwrap(),
            AttrRule::SanUri("urn:sekisho:facility:".into())
        );
        assert_eq!(AttrRule::parse("san:dns").unwrap(), AttrRule::SanDns);
        assert_eq!(
            AttrRule::parse("oid:1.2.392.100495.1.6.1.1").unwrap(),
            AttrRule::Extension("1.2.392.100495.1.6.1.1".into())
        );
        for bad in ["subject:XX", "san:ip", "oid:abc", "cn", "", "san:dns:x"] {
            assert!(AttrRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("H0001", "H0001"));
        assert!(!wildcard("H0001", "H00011"));
        assert!(wildcard("H00*", "H0042"));
        assert!(wildcard("*-tokyo", "clinic-tokyo"));
        assert!(wildcard("H?0*1", "H10771"));
        assert!(!wildcard("H?0*1", "H1077"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("a*b*c", "aXXbYY"));
        assert!(wildcard("a*b*c", "aXXbYYc"));
    }

    #[test]
    fn facts_and_attributes_from_an_issued_certificate() {
        let dir = std::env::temp_dir().join(format!("sekisho-clientauth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::ca::init_ca(&dir.join("ca"), "Sekisho test CA").unwrap();
        let spec = crate::ca::ClientCertSpec {
            facility: "H-0042".into(),
            common_name: Some("Clinic A".into()),
            days: 30,
            not_before: None,
            not_after: None,
        };
        crate::ca::issue_client(&dir.join("ca"), &spec, &dir.join("c")).unwrap();
        let der = read_pem_certs(&dir.join("c/client.crt")).unwrap().remove(0);
        let ou = AttrRule::parse("subject:OU").unwrap();
        let p = PeerCert::from_der(der, Some(&ou)).unwrap();
        assert_eq!(p.facility.as_deref(), Some("H-0042"));
        assert!(p.facts.subject.contains("CN=Clinic A"), "{:?}", p.facts);
        assert!(p.facts.issuer.contains("Sekisho"), "{:?}", p.facts);
        assert!(
            !p.facts.serial.is_empty() && p.facts.serial.bytes().all(|b| b.is_ascii_hexdigit())
        );
        let uri = AttrRule::parse("san:uri:urn:sekisho:facility:").unwrap();
        assert_eq!(p.attribute(&uri).as_deref(), Some("H-0042"));
        let o = AttrRule::parse("subject:O").unwrap();
        assert_eq!(p.attribute(&o).as_deref(), Some("Sekisho pilot"));
        assert_eq!(p.attribute(&AttrRule::SanDns), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
