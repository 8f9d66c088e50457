//! Client certificates at reverse listeners: the facility ID, role and attribute rules
//! (`subject:OU`, `san:uri:<prefix>`, `oid:<dotted>`, `hpki:role`, `sda:<dotted>` …) and the
//! facts events report (subject, issuer, serial). The verifier is in `clientverify`.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sekisho_core::ClientCert;
use x509_parser::prelude::*;

pub(crate) use crate::clientverify::{reason_text, refusal_code, unfit};
pub use crate::clientverify::{verifier, verifier_with, Recording, Refusal, Verifier};
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
    /// A string-valued extension's text, by dotted OID; a structured extension is an error
    /// naming the rule that reads it.
    Extension(String),
    /// Every hcRole (ISO 17090) value under HPKI's role coding schemes.
    HpkiRole,
    /// Every hcRole value under one coding scheme (dotted OID).
    HcRole(String),
    /// The string values of a subjectDirectoryAttributes attribute, by dotted OID.
    Sda(String),
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

/// A certificate policy OID as `client_policies` lists it (dotted).
pub fn policy_oid(s: &str) -> std::result::Result<String, String> {
    if dotted(s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?}: expected a dotted certificate policy OID, e.g. 1.2.392.100495.1.5.1.1.1"
        ))
    }
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
            "oid" if dotted(rest) => match rest {
                crate::hpki::HC_ACTOR_OID => Err(format!(
                    "{s:?}: {rest} is the hcRole attribute inside subjectDirectoryAttributes, not an extension: use hpki:role or hcrole:<scheme OID>"
                )),
                r if crate::hpki::HPKI_SCHEMES.contains(&r) => Err(format!(
                    "{s:?}: {rest} is HPKI's coding scheme for roles inside the hcRole attribute, not an extension: use hpki:role (or hcrole:{rest})"
                )),
                _ => Ok(AttrRule::Extension(rest.to_string())),
            },
            "oid" => Err(format!(
                "{s:?}: expected oid:<dotted OID> of a string-valued extension, e.g. oid:1.3.6.1.4.1.99999.1"
            )),
            "hpki" if rest.eq_ignore_ascii_case("role") => Ok(AttrRule::HpkiRole),
            "hpki" => Err(format!("{s:?}: expected hpki:role")),
            "hcrole" if dotted(rest) => Ok(AttrRule::HcRole(rest.to_string())),
            "hcrole" => Err(format!(
                "{s:?}: expected hcrole:<dotted coding scheme OID>, e.g. hcrole:1.2.392.100495.1.6.1.1"
            )),
            "sda" if dotted(rest) => Ok(AttrRule::Sda(rest.to_string())),
            "sda" => Err(format!(
                "{s:?}: expected sda:<dotted attribute OID>, e.g. sda:1.3.6.1.5.5.7.9.4"
            )),
            _ => Err(format!(
                "{s:?}: expected subject:<attribute>, issuer:<attribute>, san:uri[:<prefix>], san:dns, san:email, oid:<dotted OID>, hpki:role, hcrole:<dotted OID> or sda:<dotted OID>"
            )),
        }
    }

    /// The attribute's first value in `cert`, if it has one; an error when the certificate
    /// carries it in a form the rule cannot read.
    pub fn value(&self, cert: &X509Certificate<'_>) -> std::result::Result<Option<String>, String> {
        Ok(self.values(cert)?.into_iter().next())
    }

    /// Every value of the attribute in `cert` (DN attributes may repeat, a certificate may
    /// carry several roles), empty ones left out.
    pub fn values(&self, cert: &X509Certificate<'_>) -> std::result::Result<Vec<String>, String> {
        let mut v = match self {
            AttrRule::Subject(oid) => dn_values(cert.subject(), oid),
            AttrRule::Issuer(oid) => dn_values(cert.issuer(), oid),
            AttrRule::SanUri(prefix) => san(cert)
                .into_iter()
                .filter_map(|g| match g {
                    GeneralName::URI(u) => u.strip_prefix(prefix.as_str()).map(str::to_string),
                    _ => None,
                })
                .collect(),
            AttrRule::SanDns => san_strings(cert, |g| match g {
                GeneralName::DNSName(d) => Some(d),
                _ => None,
            }),
            AttrRule::SanEmail => san_strings(cert, |g| match g {
                GeneralName::RFC822Name(e) => Some(e),
                _ => None,
            }),
            AttrRule::Extension(oid) => extension_text(cert, oid)?.into_iter().collect(),
            AttrRule::HpkiRole => roles(cert, |s| crate::hpki::HPKI_SCHEMES.contains(&s))?,
            AttrRule::HcRole(scheme) => roles(cert, |s| s == scheme)?,
            AttrRule::Sda(oid) => match extension(cert, crate::hpki::SDA_OID) {
                Some(ext) => crate::hpki::string_attribute(ext, oid)
                    .map_err(|e| format!("subjectDirectoryAttributes: {e}"))?,
                None => Vec::new(),
            },
        };
        v.retain(|s| !s.is_empty());
        Ok(v)
    }
}

fn extension<'a>(cert: &'a X509Certificate<'a>, oid: &str) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid)
        .map(|e| e.value)
}

/// The hcRole values whose coding scheme `scheme_ok` accepts.
fn roles(
    cert: &X509Certificate<'_>,
    scheme_ok: impl Fn(&str) -> bool,
) -> std::result::Result<Vec<String>, String> {
    let Some(ext) = extension(cert, crate::hpki::SDA_OID) else {
        return Ok(Vec::new());
    };
    Ok(crate::hpki::hc_roles(ext)
        .map_err(|e| format!("subjectDirectoryAttributes: {e}"))?
        .into_iter()
        .filter(|r| r.scheme.as_deref().is_some_and(&scheme_ok))
        .filter_map(|r| r.value)
        .collect())
}

/// A string-valued extension's text; a structured one is an error naming the rule to use.
fn extension_text(
    cert: &X509Certificate<'_>,
    oid: &str,
) -> std::result::Result<Option<String>, String> {
    let Some(v) = extension(cert, oid) else {
        return Ok(None);
    };
    match der_text(v) {
        Some(s) => Ok(Some(s)),
        None if oid == crate::hpki::SDA_OID => Err(format!(
            "extension {oid} (subjectDirectoryAttributes) is structured: read its roles with hpki:role or hcrole:<scheme OID>, other attributes with sda:<attribute OID>"
        )),
        None => Err(format!(
            "extension {oid} is structured, not a string: oid: reads string-valued extensions only"
        )),
    }
}

fn san_strings<'a>(
    cert: &'a X509Certificate<'a>,
    pick: impl Fn(&'a GeneralName<'a>) -> Option<&'a str>,
) -> Vec<String> {
    san(cert)
        .into_iter()
        .filter_map(pick)
        .map(str::to_string)
        .collect()
}

fn dn_values(name: &X509Name<'_>, oid: &str) -> Vec<String> {
    name.iter_attributes()
        .filter(|a| a.attr_type().to_id_string() == oid)
        .map(|a| match a.as_str() {
            Ok(s) => s.to_string(),
            Err(_) => crate::hpki::string_value(a.attr_value())
                .unwrap_or_else(|_| hex(a.attr_value().data)),
        })
        .collect()
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

/// An extension value's text when it is a DER character string (UTF8String, PrintableString,
/// IA5String, BMPString …).
fn der_text(v: &[u8]) -> Option<String> {
    use x509_parser::der_parser::asn1_rs::{Any, FromDer};
    match Any::from_der(v) {
        Ok(([], a)) => crate::hpki::string_value(&a).ok(),
        _ => None,
    }
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
    /// Why the facility rule could not read the certificate, if it could not.
    pub facility_error: Option<String>,
    /// The roles by the listener's `role_id` rule (several or none).
    pub roles: Vec<String>,
    /// Why the role rule could not read the certificate (a malformed hcRole …), if it could not.
    pub role_error: Option<String>,
    /// The leaf (DER), for route attribute conditions.
    pub der: CertificateDer<'static>,
}

impl PeerCert {
    /// Reads the facts, the facility ID (`facility`) and the roles (`role`) from a verified leaf.
    pub fn from_der(
        der: CertificateDer<'static>,
        facility: Option<&AttrRule>,
        role: Option<&AttrRule>,
    ) -> Option<PeerCert> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let facts = ClientCert {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: hex(cert.raw_serial()).trim_start_matches("00").to_string(),
        };
        let (facility, facility_error) = match facility.map(|r| r.value(&cert)) {
            None | Some(Ok(None)) => (None, None),
            Some(Ok(Some(f))) => (Some(f), None),
            Some(Err(e)) => (None, Some(e)),
        };
        let (roles, role_error) = match role.map(|r| r.values(&cert)) {
            None => (Vec::new(), None),
            Some(Ok(v)) => (v, None),
            Some(Err(e)) => (Vec::new(), Some(e)),
        };
        drop(cert);
        Some(PeerCert {
            facts,
            facility,
            facility_error,
            roles,
            role_error,
            der,
        })
    }

    /// The values of `rule` in this certificate.
    pub fn attribute(&self, rule: &AttrRule) -> std::result::Result<Vec<String>, String> {
        let (_, cert) = X509Certificate::from_der(self.der.as_ref())
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        rule.values(&cert)
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
            AttrRule::parse("oid:1.3.6.1.4.1.99999.1").unwrap(),
            AttrRule::Extension("1.3.6.1.4.1.99999.1".into())
        );
        assert_eq!(AttrRule::parse("hpki:role").unwrap(), AttrRule::HpkiRole);
        assert_eq!(
            AttrRule::parse("sda:1.3.6.1.5.5.7.9.4").unwrap(),
            AttrRule::Sda("1.3.6.1.5.5.7.9.4".into())
        );
        // The OIDs inside hcRole are not extensions: the error names the rule to use.
        for inside in ["oid:1.2.392.100495.1.6.1.1", "oid:1.0.17090.0.1"] {
            let e = AttrRule::parse(inside).unwrap_err();
            assert!(e.contains("hpki:role"), "{e}");
        }
        for bad in [
            "subject:XX",
            "san:ip",
            "oid:abc",
            "cn",
            "",
            "san:dns:x",
            "hpki:roles",
            "sda:x",
            "hcrole:",
        ] {
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
            common_name: Some("Clinic A".into()),
            ..crate::ca::ClientCertSpec::facility("H-0042")
        };
        crate::ca::issue_client(&dir.join("ca"), &spec, &dir.join("c")).unwrap();
        let der = read_pem_certs(&dir.join("c/client.crt")).unwrap().remove(0);
        let ou = AttrRule::parse("subject:OU").unwrap();
        let p = PeerCert::from_der(der, Some(&ou), None).unwrap();
        assert_eq!(p.facility.as_deref(), Some("H-0042"));
        assert!(p.facts.subject.contains("CN=Clinic A"), "{:?}", p.facts);
        assert!(p.facts.issuer.contains("Sekisho"), "{:?}", p.facts);
        assert!(
            !p.facts.serial.is_empty() && p.facts.serial.bytes().all(|b| b.is_ascii_hexdigit())
        );
        let uri = AttrRule::parse("san:uri:urn:sekisho:facility:").unwrap();
        assert_eq!(p.attribute(&uri).unwrap(), ["H-0042"]);
        let o = AttrRule::parse("subject:O").unwrap();
        assert_eq!(p.attribute(&o).unwrap(), ["Sekisho pilot"]);
        assert!(p.attribute(&AttrRule::SanDns).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
