//! The gateway CA: creation (`sekisho ca init`), loading, and minting leaf certificates on the fly.
//!
//! Leaves are ECDSA P-256, signed by the CA with a shared leaf key that is rotated (never the CA's
//! key), valid for days, carrying SANs for the host (DNS or IP). Minted leaves live in a bounded
//! cache; concurrent misses for the same host are deduplicated (one mint, the others wait).

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::{ProxyError, Result};
use crate::metrics::Metrics;

/// Creates a new ECDSA P-256 CA in `dir` as `ca.crt` and `ca.key` (mode 0600). Refuses to
/// overwrite either file. Returns the two paths.
pub fn init_ca(dir: &Path, common_name: &str) -> Result<(PathBuf, PathBuf)> {
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    create_ca(&cert_path, &key_path, common_name)?;
    Ok((cert_path, key_path))
}

/// Creates a new ECDSA P-256 CA at the given paths (key mode 0600), refusing to overwrite.
pub fn create_ca(cert_path: &Path, key_path: &Path, common_name: &str) -> Result<()> {
    for p in [cert_path, key_path] {
        if p.exists() {
            return Err(ProxyError::Cert {
                path: p.to_path_buf(),
                message: "already exists; refusing to overwrite (remove it first to make a new CA)"
                    .into(),
            });
        }
    }
    for dir in [cert_path.parent(), key_path.parent()]
        .into_iter()
        .flatten()
    {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ProxyError::io(format!("creating {}", dir.display()), e))?;
        }
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(mint_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Sekisho");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key).map_err(mint_err)?;
    write_new(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert_path, cert.pem().as_bytes(), 0o644)
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| ProxyError::io(format!("creating {}", path.display()), e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| ProxyError::io(format!("writing {}", path.display()), e))
}

fn mint_err(e: rcgen::Error) -> ProxyError {
    ProxyError::Mint(e.to_string())
}

fn random_serial() -> SerialNumber {
    let mut b = *uuid::Uuid::new_v4().as_bytes();
    b[0] &= 0x7f; // positive
    SerialNumber::from_slice(&b)
}

/// What `sekisho ca issue-client` writes into a facility's client certificate.
#[derive(Clone, Debug)]
pub struct ClientCertSpec {
    /// The facility ID: the subject's `OU` and a SAN URI `urn:sekisho:facility:<ID>`.
    pub facility: String,
    /// The subject's common name (defaults to the facility ID).
    pub common_name: Option<String>,
    /// Start of validity (default: an hour ago).
    pub not_before: Option<time::OffsetDateTime>,
    /// End of validity (default: `days` after the start).
    pub not_after: Option<time::OffsetDateTime>,
    /// Validity in days when `not_after` is not given.
    pub days: u32,
    /// hcRole values (ISO 17090, HPKI layout), e.g. "Medical Doctor"; none: no hcRole.
    pub roles: Vec<String>,
    /// The coding scheme of `roles` (default HPKI's, 1.2.392.100495.1.6.1.1).
    pub role_scheme: Option<String>,
    /// Certificate policy OIDs to assert.
    pub policies: Vec<String>,
    /// A signature certificate: key usage nonRepudiation only, no extended key usage (as HPKI
    /// issues them; TLS client authentication refuses it).
    pub signature_only: bool,
    /// CRL distribution point URLs to name.
    pub crl_urls: Vec<String>,
}

impl ClientCertSpec {
    /// A facility's certificate with the defaults: 30 days, no roles or policies.
    pub fn facility(id: &str) -> ClientCertSpec {
        ClientCertSpec {
            facility: id.to_string(),
            common_name: None,
            not_before: None,
            not_after: None,
            days: 30,
            roles: Vec::new(),
            role_scheme: None,
            policies: Vec::new(),
            signature_only: false,
            crl_urls: Vec::new(),
        }
    }

    /// The key usages, extended key usages and extensions the spec asks for.
    fn apply(&self, params: &mut CertificateParams) -> Result<()> {
        if self.signature_only {
            params.key_usages = vec![KeyUsagePurpose::ContentCommitment];
            params.extended_key_usages = Vec::new();
        } else {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let bad = |e: String| ProxyError::Mint(e);
        if !self.roles.is_empty() {
            if let Some(r) = self.roles.iter().find(|r| r.is_empty() || r.len() > 256) {
                return Err(bad(format!("role {r:?}: use 1 to 256 bytes")));
            }
            let scheme = self
                .role_scheme
                .as_deref()
                .unwrap_or(crate::hpki::HPKI_SCHEMES[0]);
            let der = crate::hpki::encode_hc_roles(scheme, &self.roles).map_err(bad)?;
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[2, 5, 29, 9],
                    der,
                ));
        }
        if !self.crl_urls.is_empty() {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: self.crl_urls.clone(),
            }];
        }
        if !self.policies.is_empty() {
            let der = crate::hpki::encode_policies(&self.policies).map_err(bad)?;
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[2, 5, 29, 32],
                    der,
                ));
        }
        Ok(())
    }
}

/// A facility ID as certificates carry it: 1 to 64 printable ASCII characters.
pub fn check_facility_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(ProxyError::Mint(format!(
            "facility ID {id:?}: use 1 to 64 printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// Issues a client certificate for a facility, signed by the CA in `ca_dir` (`ca.crt`,
/// `ca.key`): ECDSA P-256, subject `CN=<name>, OU=<facility>, O=Sekisho pilot`, SAN URI
/// `urn:sekisho:facility:<ID>`, extended key usage clientAuth. Writes `out/client.crt` (leaf then
/// CA) and `out/client.key` (mode 0600), refusing to overwrite. Returns the paths and the serial
/// number (hex).
pub fn issue_client(
    ca_dir: &Path,
    spec: &ClientCertSpec,
    out: &Path,
) -> Result<(PathBuf, PathBuf, String)> {
    check_facility_id(&spec.facility)?;
    let ca_cert = ca_dir.join("ca.crt");
    let ca = CertAuthority::load(&ca_cert, &ca_dir.join("ca.key"))?;
    let (crt, key_path) = (out.join("client.crt"), out.join("client.key"));
    for p in [&crt, &key_path] {
        if p.exists() {
            return Err(ProxyError::Cert {
                path: p.clone(),
                message: "already exists; refusing to overwrite".into(),
            });
        }
    }
    std::fs::create_dir_all(out)
        .map_err(|e| ProxyError::io(format!("creating {}", out.display()), e))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(mint_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        spec.common_name.as_deref().unwrap_or(&spec.facility),
    );
    dn.push(DnType::OrganizationalUnitName, spec.facility.as_str());
    dn.push(DnType::OrganizationName, "Sekisho pilot");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    spec.apply(&mut params)?;
    let uri = format!("urn:sekisho:facility:{}", spec.facility);
    params.subject_alt_names = vec![SanType::URI(
        uri.as_str()
            .try_into()
            .map_err(|e: rcgen::Error| mint_err(e))?,
    )];
    let start = spec
        .not_before
        .unwrap_or_else(|| time::OffsetDateTime::now_utc() - time::Duration::hours(1));
    params.not_before = start;
    params.not_after = spec
        .not_after
        .unwrap_or(start + time::Duration::days(i64::from(spec.days.max(1))));
    let serial = random_serial();
    let serial_hex = hex_serial(&serial);
    params.serial_number = Some(serial);
    let cert = params.signed_by(&key, &ca.issuer).map_err(mint_err)?;
    let ca_pem = std::fs::read_to_string(&ca_cert)
        .map_err(|e| ProxyError::io(format!("reading {}", ca_cert.display()), e))?;
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&crt, format!("{}{}", cert.pem(), ca_pem).as_bytes(), 0o644)?;
    Ok((crt, key_path, serial_hex))
}

/// Issues a server certificate for a reverse listener, signed by the CA in `ca_dir`:
/// `out/server.crt` (leaf + CA) and `out/server.key` (mode 0600), for the DNS names and IP
/// addresses in `names` (the first is the common name), valid for `days`. Refuses to overwrite.
pub fn issue_server(
    ca_dir: &Path,
    names: &[String],
    days: u32,
    out: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let Some(first) = names.first() else {
        return Err(ProxyError::Cert {
            path: out.to_path_buf(),
            message: "name at least one host (--name)".into(),
        });
    };
    let ca_cert = ca_dir.join("ca.crt");
    let ca = CertAuthority::load(&ca_cert, &ca_dir.join("ca.key"))?;
    let (crt, key_path) = (out.join("server.crt"), out.join("server.key"));
    for p in [&crt, &key_path] {
        if p.exists() {
            return Err(ProxyError::Cert {
                path: p.clone(),
                message: "already exists; refusing to overwrite".into(),
            });
        }
    }
    let mut params = CertificateParams::new(names.to_vec()).map_err(|e| ProxyError::Cert {
        path: out.to_path_buf(),
        message: format!("not a host name or address: {e}"),
    })?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.as_str());
    dn.push(DnType::OrganizationName, "Sekisho");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let start = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_before = start;
    params.not_after = start + time::Duration::days(i64::from(days.clamp(1, 397)));
    params.serial_number = Some(random_serial());
    std::fs::create_dir_all(out)
        .map_err(|e| ProxyError::io(format!("creating {}", out.display()), e))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(mint_err)?;
    let cert = params.signed_by(&key, &ca.issuer).map_err(mint_err)?;
    let ca_pem = std::fs::read_to_string(&ca_cert)
        .map_err(|e| ProxyError::io(format!("reading {}", ca_cert.display()), e))?;
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&crt, format!("{}{}", cert.pem(), ca_pem).as_bytes(), 0o644)?;
    Ok((crt, key_path))
}

/// A serial number written in hex (`:` separators and a `0x` prefix allowed), 1 to 20 bytes.
pub fn parse_hex_serial(h: &str) -> Result<Vec<u8>> {
    let digits: String = h
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes: Option<Vec<u8>> = (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(padded.get(i..i + 2)?, 16).ok())
        .collect();
    match bytes {
        Some(b) if !b.is_empty() && b.len() <= 20 => Ok(b),
        _ => Err(ProxyError::Mint(format!(
            "serial {h:?}: expected 1 to 20 bytes in hex"
        ))),
    }
}

fn hex_serial(s: &SerialNumber) -> String {
    s.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a CRL signed by the CA in `ca_dir` that revokes the certificates in `revoke` (PEM
/// files; their first certificate) and the serial numbers in `serials` (hex), valid for `days`,
/// to `out` (PEM); `next_update` (for refusal tests: a past time makes an expired CRL)
/// overrides `days`. Returns the revoked serial numbers (hex).
pub fn write_crl(
    ca_dir: &Path,
    revoke: &[PathBuf],
    serials_hex: &[String],
    days: u32,
    next_update: Option<time::OffsetDateTime>,
    out: &Path,
) -> Result<Vec<String>> {
    let ca = CertAuthority::load(&ca_dir.join("ca.crt"), &ca_dir.join("ca.key"))?;
    let now = time::OffsetDateTime::now_utc();
    let mut revoked = Vec::new();
    let mut serials = Vec::new();
    let mut raw: Vec<Vec<u8>> = Vec::new();
    for p in revoke {
        let pem = std::fs::read_to_string(p).map_err(|e| ProxyError::Cert {
            path: p.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let der = first_cert(&pem).ok_or_else(|| ProxyError::Cert {
            path: p.clone(),
            message: "no PEM CERTIFICATE block".into(),
        })?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| ProxyError::Cert {
                path: p.clone(),
                message: format!("cannot parse certificate: {e}"),
            })?;
        raw.push(cert.raw_serial().to_vec());
    }
    for h in serials_hex {
        raw.push(parse_hex_serial(h)?);
    }
    for bytes in raw {
        let serial = SerialNumber::from_slice(&bytes);
        serials.push(hex_serial(&serial));
        revoked.push(rcgen::RevokedCertParams {
            serial_number: serial,
            revocation_time: now,
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        });
    }
    let next = next_update.unwrap_or(now + time::Duration::days(i64::from(days.max(1))));
    let params = rcgen::CertificateRevocationListParams {
        this_update: (next - time::Duration::days(1)).min(now - time::Duration::minutes(5)),
        next_update: next,
        crl_number: SerialNumber::from_slice(&now.unix_timestamp().to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&ca.issuer).map_err(mint_err)?;
    let pem = crl.pem().map_err(mint_err)?;
    std::fs::write(out, pem)
        .map_err(|e| ProxyError::io(format!("writing {}", out.display()), e))?;
    Ok(serials)
}

/// The loaded gateway CA.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

impl CertAuthority {
    /// Loads the CA certificate and key from PEM files; errors name the file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self> {
        let cert_pem = std::fs::read_to_string(cert_path).map_err(|e| ProxyError::Cert {
            path: cert_path.to_path_buf(),
            message: format!("cannot read CA certificate: {e}"),
        })?;
        let key_pem = std::fs::read_to_string(key_path).map_err(|e| ProxyError::Cert {
            path: key_path.to_path_buf(),
            message: format!("cannot read CA key: {e}"),
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| ProxyError::Cert {
            path: key_path.to_path_buf(),
            message: format!("not a usable PEM private key: {e}"),
        })?;
        let der = first_cert(&cert_pem).ok_or_else(|| ProxyError::Cert {
            path: cert_path.to_path_buf(),
            message: "no PEM CERTIFICATE block".into(),
        })?;
        let key_public = key.public_key_raw().to_vec();
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| ProxyError::Cert {
            path: cert_path.to_path_buf(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
        // The key must be the certificate's key, or every leaf would fail verification.
        let cert_public = x509_spki(&der).ok_or_else(|| ProxyError::Cert {
            path: cert_path.to_path_buf(),
            message: "cannot parse certificate".into(),
        })?;
        if cert_public != key_public {
            return Err(ProxyError::Cert {
                path: key_path.to_path_buf(),
                message: format!("key does not match the certificate {}", cert_path.display()),
            });
        }
        Ok(CertAuthority { issuer, der })
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.der
    }
}

fn first_cert(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()
}

/// The subject public key bytes of a DER certificate.
fn x509_spki(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.public_key().subject_public_key.data.to_vec())
}

struct LeafKey {
    key: Arc<KeyPair>,
    signer: Arc<dyn rustls::sign::SigningKey>,
    born: Instant,
}

impl LeafKey {
    fn generate() -> Result<Self> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(mint_err)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&der)
            .map_err(|e| ProxyError::Mint(format!("leaf key: {e}")))?;
        Ok(LeafKey {
            key: Arc::new(key),
            signer,
            born: Instant::now(),
        })
    }
}

/// A minted leaf with its birth time.
#[derive(Clone)]
struct Minted {
    cert: Arc<CertifiedKey>,
    born: Instant,
}

/// Mints and caches leaf certificates for intercepted hosts.
pub struct LeafMinter {
    ca: arc_swap::ArcSwap<CertAuthority>,
    leaf_key: Mutex<Arc<LeafKey>>,
    rotation: Duration,
    validity_days: u32,
    cache: quick_cache::sync::Cache<String, Minted>,
    metrics: Arc<Metrics>,
}

impl LeafMinter {
    /// A minter over `ca` with a cache of `capacity` leaves.
    pub fn new(
        ca: CertAuthority,
        capacity: usize,
        validity_days: u32,
        rotation_hours: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        Ok(LeafMinter {
            ca: arc_swap::ArcSwap::from_pointee(ca),
            leaf_key: Mutex::new(Arc::new(LeafKey::generate()?)),
            rotation: Duration::from_secs(u64::from(rotation_hours) * 3600),
            validity_days,
            cache: quick_cache::sync::Cache::new(capacity),
            metrics,
        })
    }

    /// The CA in service.
    pub fn ca(&self) -> Arc<CertAuthority> {
        self.ca.load_full()
    }

    /// Puts `ca` into service (a reload): when it is another CA, the cached leaves (signed by
    /// the old one) are dropped. Whether it changed.
    pub fn replace_ca(&self, ca: CertAuthority) -> bool {
        if self.ca.load().der == ca.der {
            return false;
        }
        self.ca.store(Arc::new(ca));
        self.cache.clear();
        true
    }

    /// The leaf certificate for `host` (a DNS name or an IP literal): from the cache, or minted
    /// now. Leaves older than half their validity are re-minted.
    pub async fn get(&self, host: &str) -> Result<Arc<CertifiedKey>> {
        let host = crate::hostmatch::normalize_host(host);
        let refresh = Duration::from_secs(u64::from(self.validity_days) * 86_400 / 2);
        if let Some(m) = self.cache.get(&host) {
            if m.born.elapsed() < refresh {
                self.metrics.cert_cache.with_label_values(&["hit"]).inc();
                return Ok(m.cert);
            }
            self.cache.remove(&host);
        }
        let mut minted_here = false;
        let m = self
            .cache
            .get_or_insert_async(&host, async {
                minted_here = true;
                self.mint(&host).map(|cert| Minted {
                    cert,
                    born: Instant::now(),
                })
            })
            .await?;
        // A waiter on someone else's mint is still a cache hit.
        let label = if minted_here { "miss" } else { "hit" };
        self.metrics.cert_cache.with_label_values(&[label]).inc();
        Ok(m.cert)
    }

    fn current_key(&self) -> Result<Arc<LeafKey>> {
        let mut k = self.leaf_key.lock().unwrap_or_else(|p| p.into_inner());
        if k.born.elapsed() >= self.rotation {
            *k = Arc::new(LeafKey::generate()?);
        }
        Ok(Arc::clone(&k))
    }

    /// Mints a leaf for `host` (no cache).
    pub fn mint(&self, host: &str) -> Result<Arc<CertifiedKey>> {
        let started = Instant::now();
        let key = self.current_key()?;
        let mut params = CertificateParams::default();
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.to_string()
                    .try_into()
                    .map_err(|e: rcgen::Error| ProxyError::Mint(format!("{host:?}: {e}")))?,
            ),
        };
        params.subject_alt_names = vec![san];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(self.validity_days));
        params.serial_number = Some(random_serial());
        let ca = self.ca.load();
        let cert = params
            .signed_by(key.key.as_ref(), &ca.issuer)
            .map_err(mint_err)?;
        let chain = vec![cert.der().clone(), ca.der.clone()];
        self.metrics
            .cert_mint_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Arc::new(CertifiedKey::new(chain, Arc::clone(&key.signer))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sekisho-ca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn init_load_mint() {
        let d = tmp("ok");
        let (c, k) = init_ca(&d, "Test CA").unwrap();
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = init_ca(&d, "Test CA").unwrap_err().to_string();
        assert!(again.contains("refusing to overwrite"), "{again}");
        let ca = CertAuthority::load(&c, &k).unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let m = LeafMinter::new(ca, 8, 7, 24, metrics).unwrap();
        for host in ["origin.test", "127.0.0.1", "::1"] {
            let leaf = m.mint(host).unwrap();
            assert_eq!(leaf.cert.len(), 2);
            let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.cert[0]).unwrap();
            let (_, ca) = x509_parser::parse_x509_certificate(&leaf.cert[1]).unwrap();
            assert_eq!(parsed.issuer(), ca.subject());
            let san = parsed.subject_alternative_name().unwrap().unwrap();
            assert_eq!(san.value.general_names.len(), 1);
            assert!(!parsed.is_ca());
            parsed.verify_signature(Some(ca.public_key())).unwrap();
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn load_errors_name_files() {
        let d = tmp("bad");
        std::fs::create_dir_all(&d).unwrap();
        let e = CertAuthority::load(&d.join("nope.crt"), &d.join("nope.key"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("nope.crt"), "{e}");
        let (c, k) = init_ca(&d, "A").unwrap();
        std::fs::write(d.join("garbage.key"), "not a key").unwrap();
        let e = CertAuthority::load(&c, &d.join("garbage.key"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("garbage.key"), "{e}");
        let d2 = tmp("other");
        let (_, k2) = init_ca(&d2, "B").unwrap();
        let e = CertAuthority::load(&c, &k2).err().unwrap().to_string();
        assert!(e.contains("does not match"), "{e}");
        let _ = (k, std::fs::remove_dir_all(&d), std::fs::remove_dir_all(&d2));
    }
}
