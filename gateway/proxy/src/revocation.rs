//! Client-certificate revocation from CRL files: each CRL's signature is verified once, when it
//! is loaded, against the listener's `client_ca` certificates (a CRL of an intermediate CA that
//! clients send in their chain is verified once, against that intermediate, in the first
//! handshake that presents it); its serials go into a hash set per issuer, so a handshake costs
//! one lookup whatever the CRL's size.
//!
//! As before, only end-entity certificates are checked, a certificate whose issuer has no CRL
//! passes (unknown status), and a CRL past its nextUpdate refuses every certificate of its
//! issuer. Delta CRLs, indirect CRLs and CRLs limited to some reasons are refused when loaded,
//! as is any unknown critical extension: the gateway never reads half a CRL.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rustls::CertificateError;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use x509_parser::extensions::ParsedExtension;
use x509_parser::extensions::X509Extension;
use x509_parser::prelude::*;

use crate::crlder::Crl;

use crate::error::{ProxyError, Result};

/// The CRL of one issuer, as loaded.
#[derive(Debug)]
struct IssuerCrl {
    /// authorityKeyIdentifier of the CRL, to tell apart CAs that share a name.
    aki: Option<Vec<u8>>,
    this_update: i64,
    /// nextUpdate (Unix seconds); absent: never stale.
    next_update: Option<i64>,
    /// Revoked serial numbers, leading zero bytes removed.
    serials: HashSet<SerialKey>,
    source: PathBuf,
    /// Set once the CRL's signature verified (at load, or against a presented intermediate).
    verified: OnceLock<()>,
    /// The CRL (DER) until it is verified against an intermediate.
    pending: Mutex<Option<Vec<u8>>>,
}

/// Revoked client certificates by issuer.
#[derive(Debug, Default)]
pub struct Revocation {
    by_issuer: HashMap<Vec<u8>, Vec<IssuerCrl>>,
}

/// Why a certificate is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Revoked {
    /// Its serial is on its issuer's CRL.
    Revoked,
    /// Its issuer's CRL is past its nextUpdate.
    Stale,
    /// Its issuer's CRL could not be verified (the sentence says why).
    Unverified(String),
}

impl Revoked {
    /// The handshake error.
    pub fn error(self) -> rustls::Error {
        match self {
            Revoked::Revoked => rustls::Error::InvalidCertificate(CertificateError::Revoked),
            Revoked::Stale => {
                rustls::Error::InvalidCertificate(CertificateError::ExpiredRevocationList)
            }
            Revoked::Unverified(why) => crate::clientauth::unfit("crl_unavailable", why),
        }
    }
}

/// A serial number as a set key, inline (no allocation per entry: a CRL of 100,000 serials is
/// one table): its length and up to 20 bytes, leading zeros removed (RFC 5280 allows 20
/// octets; a longer one keeps its first 20 bytes and its length, which a conforming CA never
/// needs).
type SerialKey = (u8, [u8; 20]);

fn serial_key(raw: &[u8]) -> SerialKey {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let digits = &raw[start..];
    let mut key = [0u8; 20];
    let n = digits.len().min(20);
    key[..n].copy_from_slice(&digits[..n]);
    (u8::try_from(digits.len()).unwrap_or(u8::MAX), key)
}

fn cert_err(p: &Path, message: String) -> ProxyError {
    ProxyError::Cert {
        path: p.to_path_buf(),
        message,
    }
}

/// The CRLs of a file, PEM (one or more) or DER.
fn split(p: &Path, bytes: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    let pem: Vec<_> = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| cert_err(p, format!("bad PEM: {e}")))?;
    Ok(if pem.is_empty() {
        vec![CertificateRevocationListDer::from(bytes.to_vec())]
    } else {
        pem
    })
}

impl Revocation {
    /// Loads the CRL files, verifying each against the CA certificates `cas` (DER) that name its
    /// issuer. Errors name the file and say what is wrong.
    pub fn load(files: &[PathBuf], cas: &[CertificateDer<'static>]) -> Result<Revocation> {
        let mut r = Revocation::default();
        for p in files {
            let bytes = std::fs::read(p).map_err(|e| cert_err(p, format!("cannot read: {e}")))?;
            r.add(p, &bytes, cas)?;
        }
        Ok(r)
    }

    /// Adds the CRLs of `bytes` (PEM or DER; `source` names them in errors), each verified
    /// against `cas`.
    pub fn add(
        &mut self,
        source: &Path,
        bytes: &[u8],
        cas: &[CertificateDer<'static>],
    ) -> Result<()> {
        let cas: Vec<X509Certificate<'_>> = cas
            .iter()
            .filter_map(|c| X509Certificate::from_der(c.as_ref()).ok().map(|(_, x)| x))
            .collect();
        for der in split(source, bytes)? {
            let (issuer, crl) = load_one(source, der.as_ref(), &cas)?;
            self.insert(issuer, crl);
        }
        Ok(())
    }

    /// Keeps the newest CRL of each issuer (and key).
    fn insert(&mut self, issuer: Vec<u8>, crl: IssuerCrl) {
        let list = self.by_issuer.entry(issuer).or_default();
        match list.iter_mut().find(|c| c.aki == crl.aki) {
            Some(old) if old.this_update > crl.this_update => {
                tracing::info!(kept = %old.source.display(), ignored = %crl.source.display(), "an older CRL of the same issuer was ignored");
            }
            Some(old) => *old = crl,
            None => list.push(crl),
        }
    }

    /// How many serials are revoked, over every issuer.
    pub fn len(&self) -> usize {
        self.by_issuer
            .values()
            .flatten()
            .map(|c| c.serials.len())
            .sum()
    }

    /// Whether no CRL was loaded.
    pub fn is_empty(&self) -> bool {
        self.by_issuer.is_empty()
    }

    /// Checks a verified end-entity certificate at `now`; `chain` is what the client sent
    /// after it (for the CRLs of intermediates).
    pub fn check(
        &self,
        cert: &X509Certificate<'_>,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<(), Revoked> {
        let Some(list) = self.by_issuer.get(cert.issuer().as_raw()) else {
            return Ok(());
        };
        let aki = authority_key_id(cert.extensions());
        let serial = serial_key(cert.raw_serial());
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        for crl in list {
            if let (Some(a), Some(b)) = (aki, crl.aki.as_deref()) {
                if a != b {
                    continue;
                }
            }
            crl.prove(cert, chain)?;
            if crl.next_update.is_some_and(|n| now > n) {
                return Err(Revoked::Stale);
            }
            if crl.serials.contains(&serial) {
                return Err(Revoked::Revoked);
            }
        }
        Ok(())
    }
}

impl IssuerCrl {
    /// Verifies a CRL kept pending against the presented certificate named as its issuer, once.
    fn prove(
        &self,
        leaf: &X509Certificate<'_>,
        chain: &[CertificateDer<'_>],
    ) -> std::result::Result<(), Revoked> {
        if self.verified.get().is_some() {
            return Ok(());
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if self.verified.get().is_some() {
            return Ok(());
        }
        let issuer = leaf.issuer().to_string();
        let unverified = |why: &str| {
            Revoked::Unverified(format!(
                "revocation status unknown: the CRL of {issuer} ({}) {why}",
                self.source.display()
            ))
        };
        let Some(der) = pending.as_deref() else {
            return Err(unverified("was never verified"));
        };
        let Ok(crl) = Crl::parse(der) else {
            return Err(unverified("no longer parses"));
        };
        let signed = chain.iter().any(|c| {
            X509Certificate::from_der(c.as_ref()).is_ok_and(|(_, ca)| {
                ca.subject().as_raw() == crl.issuer.as_raw()
                    && ca.is_ca()
                    && crl.verify(ca.public_key())
            })
        });
        if !signed {
            return Err(unverified(
                "is signed by no CA certificate of the chain the client sent",
            ));
        }
        tracing::info!(file = %self.source.display(), %issuer, "CRL verified against the intermediate CA the client sent");
        let _ = self.verified.set(());
        *pending = None;
        Ok(())
    }
}

/// The authorityKeyIdentifier's key identifier among `extensions` (a certificate's or a CRL's).
fn authority_key_id<'a>(extensions: &'a [X509Extension<'a>]) -> Option<&'a [u8]> {
    extensions.iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
        _ => None,
    })
}

/// One CRL: parsed, its extensions understood, its signature verified by one of `cas`.
fn load_one(p: &Path, der: &[u8], cas: &[X509Certificate<'_>]) -> Result<(Vec<u8>, IssuerCrl)> {
    let crl = Crl::parse(der)
        .map_err(|e| cert_err(p, format!("not a certificate revocation list: {e}")))?;
    let issuer = crl.issuer.to_string();
    check_extensions(p, &crl.extensions)?;
    let signers: Vec<&X509Certificate<'_>> = cas
        .iter()
        .filter(|c| c.subject().as_raw() == crl.issuer.as_raw())
        .collect();
    let signed = signers.iter().any(|ca| {
        crl.verify(ca.public_key())
            && ca
                .key_usage()
                .ok()
                .flatten()
                .is_none_or(|ku| ku.value.crl_sign())
    });
    if signers.is_empty() {
        tracing::warn!(file = %p.display(), %issuer, "CRL of a CA that is not in client_ca (an intermediate?): verified against it in the first handshake whose chain presents it; until then that CA's certificates are refused");
    } else if !signed {
        return Err(cert_err(
            p,
            format!("its signature does not verify with the key of {issuer} in client_ca (or that CA may not sign CRLs)"),
        ));
    }
    let mut serials = HashSet::with_capacity(crl.entries_hint());
    crl.for_each_entry(|e| {
        if e.other_issuer {
            return Err(
                "an entry names another certificate issuer: indirect CRLs are not supported".into(),
            );
        }
        serials.insert(serial_key(e.serial));
        Ok(())
    })
    .map_err(|e| cert_err(p, e))?;
    serials.shrink_to_fit();
    let next_update = crl.next_update.map(|t| t.timestamp());
    if next_update.is_some_and(|n| n < ::time::OffsetDateTime::now_utc().unix_timestamp()) {
        tracing::warn!(file = %p.display(), %issuer, "the CRL is past its nextUpdate: certificates of this issuer are refused until a newer CRL is loaded");
    }
    let aki = authority_key_id(&crl.extensions).map(<[u8]>::to_vec);
    Ok((
        crl.issuer.as_raw().to_vec(),
        IssuerCrl {
            aki,
            this_update: crl.this_update.timestamp(),
            next_update,
            serials,
            source: p.to_path_buf(),
            verified: if signed {
                OnceLock::from(())
            } else {
                OnceLock::new()
            },
            pending: Mutex::new((!signed).then(|| der.to_vec())),
        },
    ))
}

/// Refuses what would make the CRL incomplete for this use: delta CRLs, indirect CRLs, CRLs
/// of some reasons only or of CA certificates only, and unknown critical extensions.
fn check_extensions(p: &Path, extensions: &[X509Extension<'_>]) -> Result<()> {
    for e in extensions {
        match e.parsed_extension() {
            ParsedExtension::IssuingDistributionPoint(idp) => {
                let why = if idp.indirect_crl {
                    Some("an indirect CRL")
                } else if idp.only_some_reasons.is_some() {
                    Some("a CRL of some revocation reasons only")
                } else if idp.only_contains_ca_certs || idp.only_contains_attribute_certs {
                    Some("a CRL of CA or attribute certificates only")
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(cert_err(
                        p,
                        format!("{why}: not supported, load the issuer's full CRL"),
                    ));
                }
            }
            _ if e.oid.to_id_string() == "2.5.29.27" => {
                return Err(cert_err(
                    p,
                    "a delta CRL: not supported, load the issuer's full CRL".into(),
                ));
            }
            ParsedExtension::CRLNumber(_) | ParsedExtension::AuthorityKeyIdentifier(_) => {}
            _ if e.critical => {
                return Err(cert_err(p, format!("unknown critical extension {}", e.oid)));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("sekisho-revocation-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn leaf(pem_dir: &Path) -> Vec<u8> {
        crate::clientauth::read_pem_certs(&pem_dir.join("client.crt"))
            .unwrap()
            .remove(0)
            .to_vec()
    }

    #[test]
    fn serials_are_looked_up_after_one_verification_at_load() {
        let d = tmp("load");
        crate::ca::init_ca(&d.join("ca"), "CRL test CA").unwrap();
        crate::ca::init_ca(&d.join("other"), "Other CA").unwrap();
        let spec = crate::ca::ClientCertSpec::facility("H-1");
        crate::ca::issue_client(&d.join("ca"), &spec, &d.join("a")).unwrap();
        crate::ca::issue_client(&d.join("ca"), &spec, &d.join("b")).unwrap();
        let many: Vec<String> = (0..1000u32)
            .map(|i| format!("{:x}", 0x7e00_0000 + i))
            .collect();
        crate::ca::write_crl(
            &d.join("ca"),
            &[d.join("a/client.crt")],
            &many,
            7,
            None,
            &d.join("crl.pem"),
        )
        .unwrap();
        let ca = crate::clientauth::read_pem_certs(&d.join("ca/ca.crt")).unwrap();
        let r = Revocation::load(&[d.join("crl.pem")], &ca).unwrap();
        assert_eq!(r.len(), 1001);
        let now = UnixTime::now();
        let (a, b) = (leaf(&d.join("a")), leaf(&d.join("b")));
        let (leaf_a, leaf_b) = (
            X509Certificate::from_der(&a).unwrap().1,
            X509Certificate::from_der(&b).unwrap().1,
        );
        assert_eq!(r.check(&leaf_a, &[], now), Err(Revoked::Revoked));
        assert_eq!(r.check(&leaf_b, &[], now), Ok(()));
        // Past nextUpdate (7 days): every certificate of that issuer is refused.
        let later =
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.as_secs() + 8 * 86_400));
        assert_eq!(r.check(&leaf_b, &[], later), Err(Revoked::Stale));
        // A CRL whose issuer is not in client_ca waits for the chain a client sends: without
        // its issuer there, that issuer's certificates are refused …
        let other = crate::clientauth::read_pem_certs(&d.join("other/ca.crt")).unwrap();
        let pending = Revocation::load(&[d.join("crl.pem")], &other).unwrap();
        let e = pending.check(&leaf_b, &other, now).unwrap_err();
        assert!(
            matches!(&e, Revoked::Unverified(w) if w.contains("crl.pem")),
            "{e:?}"
        );
        // … and with it, the CRL is verified once, then looked up.
        assert_eq!(pending.check(&leaf_b, &ca, now), Ok(()));
        assert_eq!(pending.check(&leaf_b, &[], now), Ok(()));
        assert_eq!(pending.check(&leaf_a, &[], now), Err(Revoked::Revoked));
        // A CA of the same name but another key: the signature does not verify.
        crate::ca::init_ca(&d.join("twin"), "CRL test CA").unwrap();
        let twin = crate::clientauth::read_pem_certs(&d.join("twin/ca.crt")).unwrap();
        let e = Revocation::load(&[d.join("crl.pem")], &twin)
            .unwrap_err()
            .to_string();
        assert!(e.contains("signature does not verify"), "{e}");
        // Not a CRL at all.
        std::fs::write(d.join("junk.pem"), b"not a crl").unwrap();
        let e = Revocation::load(&[d.join("junk.pem")], &ca)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("junk.pem") && e.contains("not a certificate revocation list"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
