//! HPKI-style client certificates through the real `sekisho` binary: hcRole laid out as HPKI
//! writes it (issued with `sekisho ca issue-client --role`, and a malformed one built here),
//! routes deciding on facility AND role, the identity headers the upstream sees, signature
//! certificates and certificate policies refused in the handshake, and revocation from a large
//! CRL with a reload.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::reverse::*;
use common::*;

const AUTH_POLICY: &str = "1.2.392.100495.1.5.1.1.1";
const DOCTOR: &str = "Medical Doctor";

struct Certs {
    dir: TempDir,
    server_ca: PathBuf,
    doctor: PathBuf,
    pharmacist: PathBuf,
    director: PathBuf,
    no_role: PathBuf,
    malformed: PathBuf,
    signature: PathBuf,
    no_policy: PathBuf,
}

/// A client certificate of `H-0009` whose hcRole value is an INTEGER (not a string), signed by
/// the CA in `ca` (rcgen, since the CLI writes only well-formed roles).
fn malformed_role_cert(ca: &Path, out: &Path) -> PathBuf {
    use rcgen::{CertificateParams, CustomExtension, DnType, Issuer, KeyPair};
    let key = KeyPair::from_pem(&std::fs::read_to_string(ca.join("ca.key")).unwrap()).unwrap();
    let ca_pem = std::fs::read_to_string(ca.join("ca.crt")).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "broken role");
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, "H-0009");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    // SEQUENCE { SEQUENCE { OID 1.0.17090.0.1, SET { SET { SEQUENCE { [0] { SET {
    //   [0] { OID 1.2.392.100495.1.6.1.1 }, [2] { INTEGER 5 } } } } } } } }
    let mut der = vec![
        0x30, 0x29, 0x30, 0x27, 0x06, 0x06, 0x28, 0x81, 0x85, 0x42, 0x00, 0x01,
    ];
    der.extend([0x31, 0x1d, 0x31, 0x1b, 0x30, 0x19, 0xa0, 0x17, 0x31, 0x15]);
    der.extend([
        0xa0, 0x0c, 0x06, 0x0a, 0x2a, 0x83, 0x08, 0x86, 0x91, 0x0f, 0x01, 0x06, 0x01, 0x01,
    ]);
    der.extend([0xa2, 0x05, 0x02, 0x03, 0x01, 0x00, 0x05]);
    // certificatePolicies { policyInformation { 1.2.392.100495.1.5.1.1.1 } }
    let mut policies = vec![0x30, 0x0f, 0x30, 0x0d, 0x06, 0x0b, 0x2a, 0x83, 0x08, 0x86];
    policies.extend([0x91, 0x0f, 0x01, 0x05, 0x01, 0x01, 0x01]);
    p.custom_extensions = vec![
        CustomExtension::from_oid_content(&[2, 5, 29, 9], der),
        CustomExtension::from_oid_content(&[2, 5, 29, 32], policies),
    ];
    let leaf_key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(out.join("client.crt"), cert.pem()).unwrap();
    std::fs::write(out.join("client.key"), leaf_key.serialize_pem()).unwrap();
    out.to_path_buf()
}

fn certs() -> Certs {
    let dir = TempDir::new("hpki");
    let d = dir.path();
    let ca = d.join("hpki-ca");
    sekisho(&[
        "ca",
        "init",
        "--out",
        ca.to_str().unwrap(),
        "--name",
        "HPKI-like test CA",
    ]);
    let auth = ["--policy", AUTH_POLICY];
    let role = |r: &'static str| ["--role", r];
    let with = |a: &[&'static str], b: &[&'static str]| [a, b].concat();
    let doctor = issue_with(
        &ca,
        "H-0001",
        &d.join("doctor"),
        &with(
            &[&role(DOCTOR)[..], &["--name", "山田 太郎"]].concat(),
            &auth,
        ),
    );
    let pharmacist = issue_with(
        &ca,
        "H-0001",
        &d.join("pharm"),
        &with(&role("Pharmacist"), &auth),
    );
    let director = issue_with(
        &ca,
        "P-0002",
        &d.join("director"),
        &with(
            &[role("Pharmacist"), role("Director of Hospital")].concat(),
            &auth,
        ),
    );
    let no_role = issue_with(&ca, "H-0001", &d.join("norole"), &auth);
    let signature = issue_with(
        &ca,
        "H-0001",
        &d.join("signature"),
        &with(&[&role(DOCTOR)[..], &["--signature-only"]].concat(), &auth),
    );
    let no_policy = issue_with(&ca, "H-0001", &d.join("nopolicy"), &role(DOCTOR));
    let malformed = malformed_role_cert(&ca, &d.join("malformed"));
    let server = TestPki::new(
        "Services CA",
        &["rx.svc.test", "adm.svc.test", "portal.svc.test"],
    );
    let (_, _, server_ca) = write_pair(d, "server", &server);
    Certs {
        dir,
        server_ca,
        doctor,
        pharmacist,
        director,
        no_role,
        malformed,
        signature,
        no_policy,
    }
}

/// Writes a CRL revoking 20,000 serials that belong to nobody, and `also`.
fn crl(c: &Certs, also: &[&Path]) {
    crl_until(c, also, None)
}

/// [`crl`] with its nextUpdate at `next_update` (RFC 3339).
fn crl_until(c: &Certs, also: &[&Path], next_update: Option<&str>) {
    let d = c.dir.path();
    let serials: String = (0..20_000u32).map(|i| format!("7e{i:08x}\n")).collect();
    std::fs::write(d.join("serials.txt"), format!("# unrelated\n{serials}")).unwrap();
    let mut args = vec![
        "ca".to_string(),
        "crl".into(),
        "--ca".into(),
        d.join("hpki-ca").display().to_string(),
        "--serials-file".into(),
        d.join("serials.txt").display().to_string(),
        "--out".into(),
        d.join("crl.pem").display().to_string(),
    ];
    for p in also {
        args.extend([
            "--revoke".into(),
            p.join("client.crt").display().to_string(),
        ]);
    }
    if let Some(t) = next_update {
        args.extend(["--next-update".into(), t.to_string()]);
    }
    sekisho(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

fn config(c: &Certs, origin: u16) -> (String, String) {
    let d = c.dir.path();
    let listeners = format!(
        "[[listener]]\nname = \"hpki\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\n\
         cert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\nclient_auth = \"required\"\n\
         client_ca = [\"{d}/hpki-ca/ca.crt\"]\ncrl = [\"{d}/crl.pem\"]\nfacility_id = \"subject:OU\"\n\
         role_id = \"hpki:role\"\nclient_policies = [\"{AUTH_POLICY}\"]\n\n\
         [[listener]]\nname = \"structured\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\n\
         cert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\nclient_auth = \"required\"\n\
         client_ca = [\"{d}/hpki-ca/ca.crt\"]\nfacility_id = \"oid:2.5.29.9\"\n",
        d = d.display()
    );
    let up = format!("upstreams = [\"http://127.0.0.1:{origin}\"]");
    let routes = format!(
        "[[route]]\nname = \"prescribe\"\nlistener = \"hpki\"\nhost = \"rx.svc.test\"\n{up}\n\
         facilities = [\"H-*\", \"P-*\"]\nroles = [\"{DOCTOR}\", \"Dentist\"]\n\n\
         [[route]]\nname = \"dispense\"\nlistener = \"hpki\"\nhost = \"rx.svc.test\"\n\
         path_prefix = \"/dispense\"\n{up}\nroles = [\"Pharmacist\"]\n\n\
         [[route]]\nname = \"admin\"\nlistener = \"hpki\"\nhost = \"adm.svc.test\"\n{up}\n\
         facilities = [\"P-0002\"]\nroles = [\"Director of *\"]\n\n\
         [[route]]\nname = \"portal\"\nlistener = \"hpki\"\nhost = \"portal.svc.test\"\n{up}\n\
         facilities = [\"H-0001\", \"H-0009\"]\n\n\
         [[route]]\nname = \"structured\"\nlistener = \"structured\"\n{up}\nfacilities = [\"*\"]\n"
    );
    (listeners, routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facility_and_role_decide_every_route() {
    let c = certs();
    crl(&c, &[]);
    let origin = Origin::start_with_files(
        None,
        files(&[
            ("/rx", "prescribed"),
            ("/dispense", "dispensed"),
            ("/dispense/x", "dispensed"),
            ("/adm", "admin"),
            ("/p", "portal"),
        ]),
    )
    .await;
    let (listeners, routes) = config(&c, origin.port);
    let gw = Gateway::start_with_listeners("hpki", &listeners, "", &routes);
    let port = gw.all[0].port();
    let ca = c.server_ca.clone();
    let ask = |host: &'static str, path: &'static str, who: PathBuf| {
        let ca = ca.clone();
        async move { get(port, "127.0.0.1", host, path, &ca, Some(&who), &[]).await }
    };

    // The trial's matrix: (certificate, host, path, expected status).
    let matrix: [(&str, &PathBuf, &str, &str, &str); 20] = [
        ("doctor", &c.doctor, "rx.svc.test", "/rx", "200"),
        ("doctor", &c.doctor, "rx.svc.test", "/dispense", "403"),
        ("doctor", &c.doctor, "adm.svc.test", "/adm", "403"),
        ("doctor", &c.doctor, "portal.svc.test", "/p", "200"),
        ("pharmacist", &c.pharmacist, "rx.svc.test", "/rx", "403"),
        (
            "pharmacist",
            &c.pharmacist,
            "rx.svc.test",
            "/dispense",
            "200",
        ),
        ("pharmacist", &c.pharmacist, "adm.svc.test", "/adm", "403"),
        ("pharmacist", &c.pharmacist, "portal.svc.test", "/p", "200"),
        ("director", &c.director, "rx.svc.test", "/rx", "403"),
        ("director", &c.director, "rx.svc.test", "/dispense", "200"),
        ("director", &c.director, "adm.svc.test", "/adm", "200"),
        ("director", &c.director, "portal.svc.test", "/p", "403"),
        ("no role", &c.no_role, "rx.svc.test", "/rx", "403"),
        ("no role", &c.no_role, "rx.svc.test", "/dispense", "403"),
        ("no role", &c.no_role, "adm.svc.test", "/adm", "403"),
        ("no role", &c.no_role, "portal.svc.test", "/p", "200"),
        ("malformed", &c.malformed, "rx.svc.test", "/rx", "403"),
        ("malformed", &c.malformed, "portal.svc.test", "/p", "200"),
        // A second spelling of /dispense reaches the dispense route, not the prescribe route.
        ("doctor", &c.doctor, "rx.svc.test", "/%64ispense/x", "403"),
        (
            "pharmacist",
            &c.pharmacist,
            "rx.svc.test",
            "/%64ispense/x",
            "200",
        ),
    ];
    for (who, cert, host, path, want) in matrix {
        let r = ask(host, path, cert.clone()).await;
        assert_eq!(
            r.code,
            0,
            "{who} {host}{path}: {} {:?}",
            r.stderr,
            gw.events().last()
        );
        assert!(
            status(&r).starts_with(want),
            "{who} {host}{path}: want {want}, got {}",
            r.stdout
        );
    }

    // Denials name the facility, the roles and the route, in the page and the event.
    let r = ask("rx.svc.test", "/rx", c.director.clone()).await;
    assert!(
        r.stdout.contains("P-0002") && r.stdout.contains("Pharmacist, Director of Hospital"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("prescribe"), "{}", r.stdout);
    let e = gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "role-denied" && e["facility"]["id"] == "P-0002"
    });
    let mut roles: Vec<&str> = e["facility"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    roles.sort_unstable();
    assert_eq!(roles, ["Director of Hospital", "Pharmacist"], "{e}");
    assert!(
        e["rule"]["name"]
            .as_str()
            .unwrap()
            .contains("route prescribe"),
        "{e}"
    );
    let e = gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "role-denied" && e["facility"]["id"] == "H-0009"
    });
    assert!(
        e["rule"]["name"]
            .as_str()
            .unwrap()
            .contains("roles cannot be read")
            && e["rule"]["name"]
                .as_str()
                .unwrap()
                .contains("character string"),
        "{e}"
    );
    gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "facility-denied" && e["facility"]["id"] == "H-0001"
    });
    // The subject is UTF-8 text in the event file, not escaped.
    let raw = std::fs::read_to_string(gw.dir.path().join("events.jsonl")).unwrap_or_default();
    let flows = std::fs::read_to_string(gw.dir.path().join("flows.jsonl")).unwrap_or_default();
    assert!(
        raw.contains("CN=山田 太郎") || flows.contains("CN=山田 太郎"),
        "the doctor's name must be readable"
    );

    // The upstream sees the verified identity; the client's own copies are removed.
    let r = get(
        port,
        "127.0.0.1",
        "portal.svc.test",
        "/headers",
        &ca,
        Some(&c.no_role),
        &[
            "-H",
            "X-Sekisho-Roles: Medical Doctor",
            "-H",
            "X-Sekisho-Facility: P-0002",
        ],
    )
    .await;
    assert!(
        r.stdout.contains("x-sekisho-facility: H-0001\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("x-sekisho-roles"), "{}", r.stdout);
    let r = get(
        port,
        "127.0.0.1",
        "adm.svc.test",
        "/headers",
        &ca,
        Some(&c.director),
        &["-H", "X-Sekisho-Roles: Medical Doctor"],
    )
    .await;
    assert!(
        r.stdout
            .contains("x-sekisho-roles: Pharmacist, Director of Hospital\n")
            || r.stdout
                .contains("x-sekisho-roles: Director of Hospital, Pharmacist\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("Medical Doctor"), "{}", r.stdout);

    // A structured extension as a facility rule: refused, naming the rule to use.
    let r = get_portal(gw.all[1].port(), &ca, &c.doctor).await;
    assert!(status(&r).starts_with("403"), "{}", r.stdout);
    let e = gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "facility-denied"
            && e["rule"]["name"]
                .as_str()
                .unwrap_or("")
                .contains("structured")
    });
    assert!(
        e["rule"]["name"].as_str().unwrap().contains("hpki:role"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_certificates_foreign_policies_and_revoked_ones_are_refused() {
    let c = certs();
    crl(&c, &[]);
    let origin = Origin::start_with_files(None, files(&[("/p", "portal")])).await;
    let (listeners, routes) = config(&c, origin.port);
    let gw = Gateway::start_with_listeners("hpki-refused", &listeners, "", &routes);
    let port = gw.all[0].port();
    let ca = c.server_ca.clone();
    let portal = |who: PathBuf| {
        let ca = ca.clone();
        async move { get_portal(port, &ca, &who).await }
    };
    // A CRL of 20,000 other serials: the doctor passes.
    let r = portal(c.doctor.clone()).await;
    assert_eq!(r.stdout, "portal\n200 1.1", "{}", r.stderr);
    for (who, cert, words) in [
        ("signature", &c.signature, "signature certificate"),
        ("no policy", &c.no_policy, "certificate policy none"),
    ] {
        let r = portal(cert.clone()).await;
        assert_ne!(
            r.code, 0,
            "{who} must be refused in the handshake: {}",
            r.stdout
        );
        let e = gw.wait_line("events.jsonl", |e| {
            e["rule"]["name"].as_str().unwrap_or("").contains(words)
        });
        assert_eq!(e["event"]["action"], "blocked", "{e}");
    }
    gw.assert_metrics(&[
        "sekisho_client_cert_refused_total{listener=\"hpki\",reason=\"key_usage\"} 1",
        "sekisho_client_cert_refused_total{listener=\"hpki\",reason=\"policy\"} 1",
    ])
    .await;

    // Revoke the doctor, reload: refused as revoked; the pharmacist still passes.
    crl(&c, &[c.doctor.as_path()]);
    gw.reload();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = portal(c.doctor.clone()).await;
        if r.code != 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reload must revoke the doctor"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "client-certificate-revoked"
    });
    let r = portal(c.pharmacist.clone()).await;
    assert_eq!(r.stdout, "portal\n200 1.1", "{}", r.stderr);

    // A CRL past its nextUpdate, loaded on reload: everyone it covers is refused.
    crl_until(&c, &[], Some("2026-01-01T00:00:00Z"));
    gw.reload();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while portal(c.pharmacist.clone()).await.code == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "an expired CRL must refuse the pharmacist"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "client-certificate-crl-expired"
    });
}

/// `crl_refresh`: the CRL comes from the distribution point the certificates name, a revocation
/// published there takes effect without a reload, the cache carries it over a restart with the
/// distribution point down, and a certificate whose distribution point never answered is
/// refused (fail closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crls_come_from_the_distribution_point_and_are_refreshed() {
    let dir = TempDir::new("hpki-cdp");
    let d = dir.path();
    let public = d.join("pub");
    std::fs::create_dir_all(&public).unwrap();
    let server = python_upstream(&public);
    let ca = d.join("ca");
    sekisho(&["ca", "init", "--out", ca.to_str().unwrap()]);
    let publish = |revoke: &[&Path]| {
        let out = d.join("next.crl");
        let mut args = vec![
            "ca",
            "crl",
            "--ca",
            ca.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        for r in revoke {
            args.extend(["--revoke", r.to_str().unwrap()]);
        }
        sekisho(&args);
        std::fs::rename(&out, public.join("ca.crl")).unwrap();
    };
    publish(&[]);
    let cdp = format!("http://127.0.0.1:{}/ca.crl", server.1);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = format!("http://{dead}/never.crl");
    let doctor = issue_with(&ca, "H-0001", &d.join("doctor"), &["--crl-url", &cdp]);
    let nurse = issue_with(&ca, "H-0002", &d.join("nurse"), &["--crl-url", &cdp]);
    let lost = issue_with(&ca, "H-0003", &d.join("lost"), &["--crl-url", &nowhere]);
    let server_pki = TestPki::new("Services CA", &["portal.svc.test"]);
    let (_, _, server_ca) = write_pair(d, "server", &server_pki);
    let origin = Origin::start_with_files(None, files(&[("/p", "portal")])).await;
    let listeners = format!(
        "[[listener]]\nname = \"cdp\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\n\
         cert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\nclient_auth = \"required\"\n\
         client_ca = [\"{d}/ca/ca.crt\"]\nfacility_id = \"subject:OU\"\n\
         crl_refresh = {{ interval_secs = 1, cache_dir = \"{d}/cache\", timeout_secs = 2 }}\n",
        d = d.display()
    );
    let routes = format!(
        "[[route]]\nlistener = \"cdp\"\nupstreams = [\"http://127.0.0.1:{}\"]\n",
        origin.port
    );
    let mut gw = Gateway::start_with_listeners("hpki-cdp", &listeners, "", &routes);
    let ask = |who: &PathBuf, port: u16| {
        let (who, ca) = (who.clone(), server_ca.clone());
        async move { get_portal(port, &ca, &who).await }
    };
    let until = |want_ok: bool, who: PathBuf, port: u16| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let r = ask(&who, port).await;
            if (r.code == 0 && r.stdout.starts_with("portal")) == want_ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{who:?}: still {} {}",
                r.stdout,
                r.stderr
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let port = gw.all[0].port();
    // The first handshake names the distribution point; once fetched, the doctor passes.
    until(true, doctor.clone(), port).await;
    // A TLS session of the doctor's, to resume after the revocation.
    let session = d.join("doctor.session");
    let first = s_client(
        port,
        &doctor,
        &server_ca,
        &["-sess_out", session.to_str().unwrap()],
    );
    assert!(first.contains("HTTP/1.1 200"), "{first}");
    // Published revocation, no reload: refused within a refresh or two, resumed sessions too.
    publish(&[&doctor.join("client.crt")]);
    until(false, doctor.clone(), port).await;
    let resumed = s_client(
        port,
        &doctor,
        &server_ca,
        &["-sess_in", session.to_str().unwrap()],
    );
    assert!(
        resumed.contains("Reused"),
        "the session must resume: {resumed}"
    );
    assert!(
        !resumed.contains("HTTP/1.1 200"),
        "a resumed session of a revoked certificate: {resumed}"
    );
    gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "client-certificate-revoked"
    });
    until(true, nurse.clone(), port).await;
    // A distribution point that never answers: fail closed, with the reason.
    let r = ask(&lost, port).await;
    assert_ne!(r.code, 0, "{}", r.stdout);
    gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "client-certificate-crl-unavailable"
            && e["rule"]["name"]
                .as_str()
                .unwrap_or("")
                .contains("never.crl")
    });
    // The cache carries the CRL over a restart while the distribution point is down.
    assert!(std::fs::read_dir(d.join("cache"))
        .unwrap()
        .flatten()
        .any(|f| f.path().extension().is_some_and(|x| x == "crl")));
    drop(server);
    gw.restart();
    let port = gw.all[0].port();
    until(true, nurse.clone(), port).await;
    let r = ask(&doctor, port).await;
    assert_ne!(
        r.code, 0,
        "revoked stays revoked after a restart: {}",
        r.stdout
    );
}

/// curl GET of portal.svc.test/p at `port` with the client certificate in `who`.
async fn get_portal(port: u16, ca: &Path, who: &Path) -> Curl {
    get(
        port,
        "127.0.0.1",
        "portal.svc.test",
        "/p",
        ca,
        Some(who),
        &[],
    )
    .await
}

/// `openssl s_client` with the client certificate in `who`: one GET of /p; its output.
fn s_client(port: u16, who: &Path, ca: &Path, extra: &[&str]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-servername",
            "portal.svc.test",
            "-CAfile",
            ca.to_str().unwrap(),
        ])
        .args(["-cert", who.join("client.crt").to_str().unwrap()])
        .args(["-key", who.join("client.key").to_str().unwrap()])
        .args(["-ign_eof", "-tls1_3"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /p HTTP/1.1\r\nHost: portal.svc.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An RSA hierarchy built here, as HPKI's is: a root, an issuing intermediate that signs the
/// leaves and the CRL, leaves sent with their chain. `client_ca` holds the root only.
struct Hierarchy {
    root: PathBuf,
    crl: PathBuf,
    doctor: PathBuf,
    revoked: PathBuf,
}

fn rsa_hierarchy(d: &Path) -> Hierarchy {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
        DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevokedCertParams, SerialNumber, PKCS_RSA_SHA256,
    };
    let now = ::time::OffsetDateTime::now_utc();
    let ca_params = |cn: &str, depth: Option<u8>| {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CountryName, "JP");
        p.distinguished_name
            .push(DnType::OrganizationName, "Test Healthcare PKI");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(depth.map_or(
            BasicConstraints::Unconstrained,
            BasicConstraints::Constrained,
        ));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = now - ::time::Duration::days(1);
        p.not_after = now + ::time::Duration::days(365);
        p
    };
    let root_key = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
    let root_params = ca_params("Test HPKI Root CA", None);
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
    let int_params = ca_params("Test HPKI Auth CA 01", Some(0));
    let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, int_key);
    let leaf = |dir: &str, cn: &str, serial: u8| {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CountryName, "JP");
        p.distinguished_name
            .push(DnType::OrganizationName, "Hospital H-0100");
        p.distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 5]), "H-0100");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(SerialNumber::from_slice(&[0x10, serial]));
        p.not_before = now - ::time::Duration::days(1);
        p.not_after = now + ::time::Duration::days(30);
        let roles =
            sekisho_proxy::hpki::encode_hc_roles("1.2.392.100495.1.6.1.1", &[DOCTOR.to_string()])
                .unwrap();
        p.custom_extensions = vec![CustomExtension::from_oid_content(&[2, 5, 29, 9], roles)];
        let key = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
        let cert = p.signed_by(&key, &int_issuer).unwrap();
        let out = d.join(dir);
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(
            out.join("client.crt"),
            format!("{}{}", cert.pem(), int.pem()),
        )
        .unwrap();
        std::fs::write(out.join("client.key"), key.serialize_pem()).unwrap();
        out
    };
    let doctor = leaf("rsa-doctor", "医師 一郎", 1);
    let revoked = leaf("rsa-revoked", "医師 二郎", 2);
    let crl = CertificateRevocationListParams {
        this_update: now - ::time::Duration::minutes(5),
        next_update: now + ::time::Duration::days(1),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from_slice(&[0x10, 2]),
            revocation_time: now - ::time::Duration::minutes(1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&int_issuer)
    .unwrap();
    std::fs::write(d.join("root.pem"), root.pem()).unwrap();
    std::fs::write(d.join("int.crl"), crl.pem().unwrap()).unwrap();
    Hierarchy {
        root: d.join("root.pem"),
        crl: d.join("int.crl"),
        doctor,
        revoked,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_hierarchy_with_an_issuing_intermediate_and_its_crl() {
    let dir = TempDir::new("hpki-rsa");
    let d = dir.path();
    let h = rsa_hierarchy(d);
    let server_pki = TestPki::new("Services CA", &["portal.svc.test"]);
    let (_, _, server_ca) = write_pair(d, "server", &server_pki);
    let origin = Origin::start_with_files(None, files(&[("/p", "portal")])).await;
    let listeners = format!(
        "[[listener]]\nname = \"rsa\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\n\
         cert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\nclient_auth = \"required\"\n\
         client_ca = [\"{root}\"]\ncrl = [\"{crl}\"]\nfacility_id = \"subject:serialNumber\"\n\
         role_id = \"hpki:role\"\n",
        d = d.display(),
        root = h.root.display(),
        crl = h.crl.display()
    );
    let routes = format!(
        "[[route]]\nlistener = \"rsa\"\nupstreams = [\"http://127.0.0.1:{}\"]\n\
         facilities = [\"H-0100\"]\nroles = [\"{DOCTOR}\"]\n",
        origin.port
    );
    let gw = Gateway::start_with_listeners("hpki-rsa", &listeners, "", &routes);
    let port = gw.all[0].port();
    let r = get_portal(port, &server_ca, &h.doctor).await;
    assert_eq!(r.stdout, "portal\n200 1.1", "{}", r.stderr);
    let r = get_portal(port, &server_ca, &h.revoked).await;
    assert_ne!(r.code, 0, "revoked by the intermediate's CRL: {}", r.stdout);
    let e = gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "client-certificate-revoked"
    });
    assert!(
        e["tls"]["client"]["subject"]
            .as_str()
            .unwrap()
            .contains("医師 二郎"),
        "{e}"
    );
    let flow = gw.wait_line("flows.jsonl", |f| f["facility_id"] == "H-0100");
    assert_eq!(
        flow["facility_roles"],
        serde_json::json!([DOCTOR]),
        "{flow}"
    );
}
