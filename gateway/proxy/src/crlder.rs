//! A CRL's DER read without materialising its entries: the header, the extensions and the
//! signature parts are parsed, the revoked certificates are walked one at a time. A CRL of
//! 100,000 entries is read into its serial set with no per-entry allocation beyond the set's
//! own (a full parse holds every entry, its serial and its extensions at once: tens of MiB).
//!
//! ```text
//! CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }
//! TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature AlgorithmIdentifier,
//!   issuer Name, thisUpdate Time, nextUpdate Time OPTIONAL,
//!   revokedCertificates SEQUENCE OF SEQUENCE { userCertificate INTEGER,
//!     revocationDate Time, crlEntryExtensions Extensions OPTIONAL } OPTIONAL,
//!   crlExtensions [0] EXPLICIT Extensions OPTIONAL }
//! ```

use x509_parser::der_parser::asn1_rs::{Any, BitString, Class, FromDer, Tag};
use x509_parser::extensions::X509Extension;
use x509_parser::prelude::X509Name;
use x509_parser::time::ASN1Time;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// A CRL, its entries unread.
pub(crate) struct Crl<'a> {
    tbs_raw: &'a [u8],
    sig_alg: AlgorithmIdentifier<'a>,
    signature: BitString<'a>,
    /// The issuer's name.
    pub issuer: X509Name<'a>,
    /// thisUpdate.
    pub this_update: ASN1Time,
    /// nextUpdate, if any.
    pub next_update: Option<ASN1Time>,
    /// crlExtensions.
    pub extensions: Vec<X509Extension<'a>>,
    revoked: &'a [u8],
}

/// tbsCertList's fields.
struct Tbs<'a> {
    issuer: X509Name<'a>,
    this_update: ASN1Time,
    next_update: Option<ASN1Time>,
    extensions: Vec<X509Extension<'a>>,
    revoked: &'a [u8],
}

/// One revoked certificate.
pub(crate) struct Entry<'a> {
    /// userCertificate's content octets.
    pub serial: &'a [u8],
    /// A critical certificateIssuer entry extension (an indirect CRL), by its OID.
    pub other_issuer: bool,
}

fn any(i: &[u8]) -> Result<(&[u8], Any<'_>), String> {
    Any::from_der(i).map_err(|e| format!("malformed DER: {e}"))
}

fn is_time(a: &Any<'_>) -> bool {
    a.class() == Class::Universal && matches!(a.tag(), Tag::UtcTime | Tag::GeneralizedTime)
}

fn universal(a: &Any<'_>, tag: Tag) -> bool {
    a.class() == Class::Universal && a.tag() == tag
}

/// The extensions of an `Extensions` SEQUENCE's content.
fn extensions(mut data: &[u8]) -> Result<Vec<X509Extension<'_>>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (rest, e) =
            X509Extension::from_der(data).map_err(|e| format!("malformed extension: {e}"))?;
        out.push(e);
        data = rest;
    }
    Ok(out)
}

impl<'a> Crl<'a> {
    /// Reads the CRL's structure (not its entries).
    pub(crate) fn parse(der: &'a [u8]) -> Result<Crl<'a>, String> {
        let (rest, outer) = any(der)?;
        if !rest.is_empty() {
            return Err(format!("{} bytes after the CRL", rest.len()));
        }
        if !universal(&outer, Tag::Sequence) {
            return Err("not a SEQUENCE".into());
        }
        let (after_tbs, tbs) = any(outer.data)?;
        if !universal(&tbs, Tag::Sequence) {
            return Err("tbsCertList is not a SEQUENCE".into());
        }
        let tbs_raw = &outer.data[..outer.data.len() - after_tbs.len()];
        let (rest, sig_alg) = AlgorithmIdentifier::from_der(after_tbs)
            .map_err(|e| format!("signatureAlgorithm: {e}"))?;
        let (rest, signature) =
            BitString::from_der(rest).map_err(|e| format!("signatureValue: {e}"))?;
        if !rest.is_empty() {
            return Err("bytes after signatureValue".into());
        }
        let t = tbs_fields(tbs.data)?;
        Ok(Crl {
            tbs_raw,
            sig_alg,
            signature,
            issuer: t.issuer,
            this_update: t.this_update,
            next_update: t.next_update,
            extensions: t.extensions,
            revoked: t.revoked,
        })
    }

    /// Whether `key` verifies the CRL's signature.
    pub(crate) fn verify(&self, key: &SubjectPublicKeyInfo<'_>) -> bool {
        x509_parser::verify::verify_signature(key, &self.sig_alg, &self.signature, self.tbs_raw)
            .is_ok()
    }

    /// A bound on the number of entries (for sizing the set).
    pub(crate) fn entries_hint(&self) -> usize {
        self.revoked.len() / 16
    }

    /// Calls `f` on each revoked certificate, in order; stops at the first malformed one.
    pub(crate) fn for_each_entry(
        &self,
        mut f: impl FnMut(Entry<'a>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut i = self.revoked;
        while !i.is_empty() {
            let (rest, e) = any(i)?;
            if !universal(&e, Tag::Sequence) {
                return Err("revokedCertificates: an entry is not a SEQUENCE".into());
            }
            let (after_serial, serial) = any(e.data)?;
            if !universal(&serial, Tag::Integer) || serial.data.is_empty() {
                return Err("revokedCertificates: an entry has no serial number".into());
            }
            let (after_date, date) = any(after_serial)?;
            if !is_time(&date) {
                return Err("revokedCertificates: an entry has no revocation date".into());
            }
            let mut other_issuer = false;
            if !after_date.is_empty() {
                let (r, seq) = any(after_date)?;
                if !r.is_empty() || !universal(&seq, Tag::Sequence) {
                    return Err("revokedCertificates: malformed entry extensions".into());
                }
                other_issuer = extensions(seq.data)?
                    .iter()
                    .any(|x| x.critical && x.oid.to_id_string() == "2.5.29.29");
            }
            f(Entry {
                serial: serial.data,
                other_issuer,
            })?;
            i = rest;
        }
        Ok(())
    }
}

/// The fields of tbsCertList.
fn tbs_fields(data: &[u8]) -> Result<Tbs<'_>, String> {
    let (after_version, first) = any(data)?;
    let i = if universal(&first, Tag::Integer) {
        after_version
    } else {
        data
    };
    let (i, _) = AlgorithmIdentifier::from_der(i).map_err(|e| format!("signature: {e}"))?;
    let (i, issuer) = X509Name::from_der(i).map_err(|e| format!("issuer: {e}"))?;
    let (mut i, this_update) = ASN1Time::from_der(i).map_err(|e| format!("thisUpdate: {e}"))?;
    let mut next_update = None;
    if let Ok((_, a)) = any(i) {
        if is_time(&a) {
            let (r, t) = ASN1Time::from_der(i).map_err(|e| format!("nextUpdate: {e}"))?;
            next_update = Some(t);
            i = r;
        }
    }
    let mut revoked: &[u8] = &[];
    let mut exts = Vec::new();
    while !i.is_empty() {
        let (r, a) = any(i)?;
        if universal(&a, Tag::Sequence) && revoked.is_empty() && exts.is_empty() {
            revoked = a.data;
        } else if a.class() == Class::ContextSpecific && a.tag().0 == 0 {
            let (r2, seq) = any(a.data)?;
            if !r2.is_empty() || !universal(&seq, Tag::Sequence) {
                return Err("crlExtensions: expected one SEQUENCE".into());
            }
            exts = extensions(seq.data)?;
        } else {
            return Err(format!(
                "unexpected element in tbsCertList (tag {})",
                a.tag().0
            ));
        }
        i = r;
    }
    Ok(Tbs {
        issuer,
        this_update,
        next_update,
        extensions: exts,
        revoked,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use x509_parser::revocation_list::CertificateRevocationList;

    fn crl_der(serials: usize) -> Vec<u8> {
        let d =
            std::env::temp_dir().join(format!("sekisho-crlder-{}-{serials}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        crate::ca::init_ca(&d.join("ca"), "CRL DER CA").unwrap();
        let hex: Vec<String> = (0..serials)
            .map(|i| format!("{:x}", 0x100 + i * 7919))
            .collect();
        crate::ca::write_crl(&d.join("ca"), &[], &hex, 3, None, &d.join("c.pem")).unwrap();
        let der = rustls_pki_types::CertificateRevocationListDer::from_pem_file(d.join("c.pem"))
            .unwrap()
            .to_vec();
        let _ = std::fs::remove_dir_all(&d);
        der
    }

    /// The same issuer, times, extensions and serials as x509-parser's full parse.
    #[test]
    fn reads_what_a_full_parse_reads() {
        for n in [0, 1, 500] {
            let der = crl_der(n);
            let (_, full) = CertificateRevocationList::from_der(&der).unwrap();
            let crl = Crl::parse(&der).unwrap();
            assert_eq!(crl.issuer.as_raw(), full.issuer().as_raw());
            assert_eq!(crl.this_update, full.last_update());
            assert_eq!(crl.next_update, full.next_update());
            assert_eq!(crl.extensions.len(), full.extensions().len());
            let mut ours = Vec::new();
            crl.for_each_entry(|e| {
                assert!(!e.other_issuer);
                ours.push(e.serial.to_vec());
                Ok(())
            })
            .unwrap();
            let theirs: Vec<Vec<u8>> = full
                .iter_revoked_certificates()
                .map(|e| e.raw_serial().to_vec())
                .collect();
            assert_eq!(ours, theirs, "{n} entries");
            assert!(crl.entries_hint() >= n);
        }
    }

    #[test]
    fn damaged_crls_are_errors_not_panics() {
        let der = crl_der(20);
        for cut in 0..der.len() {
            let r = Crl::parse(&der[..cut]).and_then(|c| c.for_each_entry(|_| Ok(())));
            assert!(r.is_err(), "truncated at {cut}");
        }
        let mut flipped = der.clone();
        for i in (0..flipped.len()).step_by(7) {
            flipped[i] ^= 0x55;
            let _ = Crl::parse(&flipped).map(|c| c.for_each_entry(|_| Ok(())));
            flipped[i] ^= 0x55;
        }
    }
}
