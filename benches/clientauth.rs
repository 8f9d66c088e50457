//! A client certificate's verification in the handshake with a CRL of 0 and of 100,000 revoked
//! serials (3 MB), through the reverse listener's verifier (each CRL verified once when loaded,
//! serials in a hash set), beside rustls' own CRL support, which checks the CRL's signature in
//! every handshake (issue 27: the full-handshake rate fell from ~1,400/s to ~600/s with such a
//! CRL). Prints the time to load the 100,000-entry CRL.

#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use sekisho_proxy::ca;
use sekisho_proxy::clientauth::{verifier, ClientAuth};

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A CA, a client certificate, and CRLs revoking none and 100,000 other serials.
fn fixtures() -> (PathBuf, PathBuf, [PathBuf; 2]) {
    let d = std::env::temp_dir().join(format!("sekisho-bench-clientauth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    ca::init_ca(&d.join("ca"), "Bench CA").unwrap();
    ca::issue_client(
        &d.join("ca"),
        &ca::ClientCertSpec::facility("H-1"),
        &d.join("c"),
    )
    .unwrap();
    let many: Vec<String> = (0..100_000u32)
        .map(|i| format!("7e{i:08x}{i:08x}"))
        .collect();
    let crls = [d.join("empty.pem"), d.join("100k.pem")];
    ca::write_crl(&d.join("ca"), &[], &[], 7, None, &crls[0]).unwrap();
    ca::write_crl(&d.join("ca"), &[], &many, 7, None, &crls[1]).unwrap();
    (d.join("ca/ca.crt"), d.join("c/client.crt"), crls)
}

/// rustls' verifier with the CRL handed to it (checked in every handshake).
fn rustls_with_crl(ca: &Path, crl: &Path) -> Arc<dyn ClientCertVerifier> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    let list: Vec<CertificateRevocationListDer<'static>> =
        CertificateRevocationListDer::pem_file_iter(crl)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(list)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .enforce_revocation_expiration()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let (ca, client, crls) = fixtures();
    let leaf = certs(&client).remove(0);
    let mut g = c.benchmark_group("client_certificate_verification");
    for (label, crl) in [("0", &crls[0]), ("100000", &crls[1])] {
        let t = Instant::now();
        let ours = verifier(
            ClientAuth::Required,
            true,
            std::slice::from_ref(&ca),
            std::slice::from_ref(crl),
            &[],
        )
        .unwrap();
        eprintln!(
            "CRL of {label} serials ({} bytes): loaded and verified in {:.1} ms",
            std::fs::metadata(crl).unwrap().len(),
            t.elapsed().as_secs_f64() * 1e3
        );
        let theirs = rustls_with_crl(&ca, crl);
        for (name, v) in [("sekisho", &ours), ("rustls_with_crls", &theirs)] {
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| {
                    v.verify_client_cert(&leaf, &[], UnixTime::now())
                        .expect("the client certificate verifies")
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
