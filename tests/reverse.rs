//! End-to-end tests of the reverse proxy: the real `sekisho` binary with a `kind = "reverse"`
//! listener, client certificates issued by `sekisho ca issue-client`, local origins, and curl.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::reverse::*;
use common::*;

struct Pki {
    dir: TempDir,
    /// CA of the service certificates (what clients trust).
    server_ca: PathBuf,
    /// CA of the `b.svc.test` certificate.
    b_ca: PathBuf,
    h1: PathBuf,
    p2: PathBuf,
    revoked: PathBuf,
    wrong_ca: PathBuf,
}

fn pki() -> (Pki, String) {
    let dir = TempDir::new("reverse-pki");
    let d = dir.path();
    sekisho(&["ca", "init", "--out", d.join("clients").to_str().unwrap()]);
    sekisho(&["ca", "init", "--out", d.join("other").to_str().unwrap()]);
    let h1 = issue(&d.join("clients"), "H-0001", &d.join("h1"));
    let p2 = issue(&d.join("clients"), "P-0002", &d.join("p2"));
    let revoked = issue(&d.join("clients"), "H-0003", &d.join("h3"));
    let wrong_ca = issue(&d.join("other"), "H-0001", &d.join("wrong"));
    sekisho(&[
        "ca",
        "crl",
        "--ca",
        d.join("clients").to_str().unwrap(),
        "--revoke",
        revoked.join("client.crt").to_str().unwrap(),
        "--out",
        d.join("crl.pem").to_str().unwrap(),
    ]);
    let main = TestPki::new("Services CA", &["a.svc.test", "c.svc.test", "d.svc.test"]);
    let (c, k, server_ca) = write_pair(d, "main", &main);
    let b = TestPki::new("Services CA B", &["b.svc.test"]);
    let (bc, bk, b_ca) = write_pair(d, "b", &b);
    let listener = format!(
        "[[listener]]\nname = \"services\"\nkind = \"reverse\"\naddr = [\"127.0.0.1:0\", \"[::1]:0\"]\n\
         cert = \"{}\"\nkey = \"{}\"\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n\
         client_auth = \"required\"\nclient_ca = [\"{}\"]\ncrl = [\"{}\"]\nfacility_id = \"subject:OU\"\n\n\
         [[listener]]\nname = \"portal\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\n\
         cert = \"{}\"\nkey = \"{}\"\nclient_auth = \"required\"\nmissing_cert = \"403\"\n\
         client_ca = [\"{}\"]\nfacility_id = \"san:uri:urn:sekisho:facility:\"\n",
        c.display(),
        k.display(),
        bc.display(),
        bk.display(),
        d.join("clients/ca.crt").display(),
        d.join("crl.pem").display(),
        c.display(),
        k.display(),
        d.join("clients/ca.crt").display(),
    );
    (
        Pki {
            dir,
            server_ca,
            b_ca,
            h1,
            p2,
            revoked,
            wrong_ca,
        },
        listener,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facilities_reach_their_services_and_refusals_are_logged() {
    let (pki, listeners) = pki();
    let a1 = Origin::start_with_files(None, files(&[("/whoami", "a1")])).await;
    let b = Origin::start_with_files(None, files(&[("/whoami", "b"), ("/health", "ok")])).await;
    let tls_origin_pki = TestPki::new("Upstream CA", &["localhost"]);
    let d = Origin::start_with_files(
        Some(tls_origin_pki.server_config()),
        files(&[("/whoami", "d-over-tls")]),
    )
    .await;
    let up_ca = pki.dir.path().join("upstream-ca.pem");
    std::fs::write(&up_ca, &tls_origin_pki.ca_pem).unwrap();
    // A port nothing listens on: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // An upstream that accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let routes = format!(
        "[[route]]\nname = \"service-a-slow\"\nlistener = \"services\"\nhost = \"a.svc.test\"\n\
         path_prefix = \"/slow\"\nupstreams = [\"http://{silent}\"]\ntimeout_secs = 1\n\n\
         [[route]]\nname = \"service-a\"\nlistener = \"services\"\nhost = \"a.svc.test\"\n\
         upstreams = [\"http://127.0.0.1:{dead}\", \"http://127.0.0.1:{a}\"]\nfacilities = [\"H-*\"]\n\n\
         [[route]]\nname = \"service-b\"\nlistener = \"services\"\nhost = \"b.svc.test\"\n\
         upstreams = [\"http://127.0.0.1:{bp}\"]\nfacilities = [\"P-0002\"]\n\n\
         [[route]]\nname = \"service-c\"\nlistener = \"services\"\nhost = \"c.svc.test\"\n\
         upstreams = [\"http://127.0.0.1:{a}\", \"http://127.0.0.1:{bp}\"]\n\
         health_check = \"/health\"\nhealth_interval_secs = 1\n\n\
         [[route]]\nname = \"service-d\"\nlistener = \"services\"\nhost = \"d.svc.test\"\n\
         upstreams = [\"https://localhost:{dp}\"]\nrequire = {{ \"subject:O\" = \"Sekisho*\" }}\n\n\
         [[route]]\nname = \"portal\"\nlistener = \"portal\"\npath_prefix = \"/\"\n\
         upstreams = [\"http://127.0.0.1:{a}\"]\n",
        a = a1.port,
        bp = b.port,
        dp = d.port,
        silent = silent.local_addr().unwrap(),
    );
    let mut gw = Gateway::start_with_listeners(
        "reverse",
        &listeners,
        &format!("upstream_roots = [\"{}\"]", up_ca.display()),
        &routes,
    );
    let port = gw.all[0].port();
    let port6 = gw.all[1].port();
    let portal = gw.all[2].port();
    let ca = pki.server_ca.clone();

    // H-0001 reaches A (over IPv4 and IPv6, HTTP/1.1 and h2), every time: the dead member of
    // A's pool is skipped (retried, then marked down).
    for i in 0..6 {
        let c = get(
            port,
            "127.0.0.1",
            "a.svc.test",
            "/whoami",
            &ca,
            Some(&pki.h1),
            &[],
        )
        .await;
        assert_eq!(c.code, 0, "{}", c.stderr);
        assert_eq!(c.stdout, "a1\n200 1.1", "request {i}: {}", c.stderr);
    }
    // The /slow route's upstream never answers: its own timeout_secs (1 s, not [limits]'s 60 s)
    // answers 504 well before curl gives up.
    let c = get(
        port,
        "127.0.0.1",
        "a.svc.test",
        "/slow/report",
        &ca,
        Some(&pki.h1),
        &["--max-time", "20"],
    )
    .await;
    assert_eq!(status(&c), "504 1.1", "{} {}", c.code, c.stderr);
    let c = get(
        port6,
        "::1",
        "a.svc.test",
        "/whoami",
        &ca,
        Some(&pki.h1),
        &["--http2"],
    )
    .await;
    assert_eq!(c.stdout, "a1\n200 2", "{}", c.stderr);
    // … but not B: a 403 page naming the event.
    let c = get(
        port,
        "127.0.0.1",
        "b.svc.test",
        "/whoami",
        &pki.b_ca,
        Some(&pki.h1),
        &[],
    )
    .await;
    assert_eq!(status(&c), "403 1.1", "{}", c.stdout);
    assert!(c.stdout.contains("Access denied"), "{}", c.stdout);
    let denied = gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "facility-denied" && e["facility"]["id"] == "H-0001"
    });
    assert_eq!(denied["event"]["action"], "blocked");
    assert_eq!(denied["stage"], "access");
    assert!(c.stdout.contains(denied["event"]["id"].as_str().unwrap()));
    let client = &denied["tls"]["client"];
    assert!(
        client["subject"].as_str().unwrap().contains("OU=H-0001"),
        "{denied}"
    );
    assert!(
        client["issuer"].as_str().unwrap().contains("Sekisho"),
        "{denied}"
    );
    assert!(!client["x509"]["serial_number"].as_str().unwrap().is_empty());
    // P-0002 reaches B (its own certificate by SNI), not A.
    let c = get(
        port,
        "127.0.0.1",
        "b.svc.test",
        "/whoami",
        &pki.b_ca,
        Some(&pki.p2),
        &[],
    )
    .await;
    assert_eq!(c.stdout, "b\n200 1.1", "{}", c.stderr);
    let c = get(
        port,
        "127.0.0.1",
        "a.svc.test",
        "/whoami",
        &ca,
        Some(&pki.p2),
        &[],
    )
    .await;
    assert_eq!(status(&c), "403 1.1");

    // A spoofed facility header is replaced by the certificate's; forwarding headers are set.
    let c = get(
        port,
        "127.0.0.1",
        "a.svc.test",
        "/headers",
        &ca,
        Some(&pki.h1),
        &[
            "-H",
            "X-Sekisho-Facility: P-0002",
            "-H",
            "X-Forwarded-For: 6.6.6.6",
            "-D",
            "-",
        ],
    )
    .await;
    assert!(
        c.stdout.contains("x-sekisho-facility: H-0001"),
        "{}",
        c.stdout
    );
    assert!(!c.stdout.contains("P-0002"), "{}", c.stdout);
    assert!(
        c.stdout.contains("x-forwarded-for: 127.0.0.1\n"),
        "{}",
        c.stdout
    );
    assert!(!c.stdout.contains("6.6.6.6"), "{}", c.stdout);
    assert!(
        c.stdout.contains("x-forwarded-proto: https"),
        "{}",
        c.stdout
    );
    assert!(
        c.stdout.contains("forwarded: for=127.0.0.1;proto=https"),
        "{}",
        c.stdout
    );
    let rid = c
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("request id sent upstream")
        .trim()
        .to_string();
    assert!(
        c.stdout
            .to_ascii_lowercase()
            .contains(&format!("x-request-id: {rid}\r")),
        "the client gets the same request id: {}",
        c.stdout
    );
    let flow = gw.wait_line("flows.jsonl", |f| f["request_id"] == rid.as_str());
    assert_eq!(flow["facility_id"], "H-0001");
    assert_eq!(flow["status"], 200);

    // Refused in the handshake: another CA, a revoked certificate, none at all.
    for (who, dir, reason) in [
        ("wrong CA", Some(&pki.wrong_ca), "unknown-ca"),
        ("revoked", Some(&pki.revoked), "revoked"),
        ("no certificate", None, ""),
    ] {
        let c = get(
            port,
            "127.0.0.1",
            "a.svc.test",
            "/whoami",
            &ca,
            dir.map(|p| p.as_path()),
            &[],
        )
        .await;
        assert_ne!(c.code, 0, "{who} must be refused: {}", c.stdout);
        assert!(!c.stdout.contains("a1"), "{who}: {}", c.stdout);
        if !reason.is_empty() {
            let e = gw.wait_line("events.jsonl", |e| {
                e["rule"]["id"] == format!("client-certificate-{reason}").as_str()
            });
            assert!(
                e["tls"]["client"]["subject"]
                    .as_str()
                    .unwrap()
                    .contains("OU=H-000"),
                "{e}"
            );
        }
    }
    gw.assert_metrics(&[
        "sekisho_client_cert_refused_total{listener=\"services\",reason=\"unknown_ca\"} 1",
        "sekisho_client_cert_refused_total{listener=\"services\",reason=\"revoked\"} 1",
        "sekisho_client_cert_refused_total{listener=\"services\",reason=\"missing\"} 1",
        "sekisho_access_denied_total{listener=\"services\",route=\"service-b\"} 1",
        "sekisho_upstream_retries_total{route=\"service-a\"}",
    ])
    .await;
    // missing_cert = "403": the handshake completes and the answer is a page and an event.
    let c = get(portal, "127.0.0.1", "a.svc.test", "/whoami", &ca, None, &[]).await;
    assert_eq!(status(&c), "403 1.1", "{} {}", c.stdout, c.stderr);
    gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "client-certificate-missing"
    });
    // … and a SAN URI facility rule there.
    let c = get(
        portal,
        "127.0.0.1",
        "a.svc.test",
        "/headers",
        &ca,
        Some(&pki.p2),
        &[],
    )
    .await;
    assert!(
        c.stdout.contains("x-sekisho-facility: P-0002"),
        "{}",
        c.stdout
    );

    // No SNI: the default certificate; routing by Host.
    let url = format!("https://127.0.0.1:{port}/whoami");
    let (crt, key) = (pki.h1.join("client.crt"), pki.h1.join("client.key"));
    let c = curl(&[
        "-k",
        "--cert",
        crt.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-H",
        "Host: a.svc.test",
        "-w",
        "\n%{http_code}",
        &url,
    ])
    .await;
    assert_eq!(c.stdout, "a1\n200", "{}", c.stderr);

    // Health checks: A's origin has no /health, so service-c sends everything to B.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut answers = Vec::new();
        for _ in 0..4 {
            let c = get(
                port,
                "127.0.0.1",
                "c.svc.test",
                "/whoami",
                &ca,
                Some(&pki.p2),
                &[],
            )
            .await;
            answers.push(c.stdout);
        }
        if answers.iter().all(|a| a == "b\n200 1.1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health check never took a1 out: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    gw.assert_metrics(&["sekisho_upstream_up{member=\"0\",route=\"service-c\"} 0"])
        .await;

    // An HTTPS upstream, verified against upstream_roots; an attribute condition on O.
    let c = get(
        port,
        "127.0.0.1",
        "d.svc.test",
        "/whoami",
        &ca,
        Some(&pki.p2),
        &[],
    )
    .await;
    assert_eq!(c.stdout, "d-over-tls\n200 1.1", "{}", c.stderr);

    // Certificates reload without a restart (SIGHUP): b.svc.test gets a certificate from a new CA.
    let old_b_ca = pki.dir.path().join("b-old-ca.pem");
    std::fs::copy(&pki.b_ca, &old_b_ca).unwrap();
    let b2 = TestPki::new("Services CA B2", &["b.svc.test"]);
    let (_, _, b2_ca) = write_pair(pki.dir.path(), "b", &b2);
    Command::new("kill")
        .args(["-HUP", &gw.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = get(
            port,
            "127.0.0.1",
            "b.svc.test",
            "/whoami",
            &b2_ca,
            Some(&pki.p2),
            &[],
        )
        .await;
        if c.stdout == "b\n200 1.1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate never served: {}",
            c.stderr
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c = get(
        port,
        "127.0.0.1",
        "b.svc.test",
        "/whoami",
        &old_b_ca,
        Some(&pki.p2),
        &[],
    )
    .await;
    assert_ne!(c.code, 0, "the old certificate is gone: {}", c.stdout);
    gw.stop();
}

#[test]
fn reverse_config_errors_name_the_key() {
    let dir = TempDir::new("reverse-cfg");
    for (cfg, needle) in [
        (
            "[[listener]]\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\nclient_auth = \"required\"\nclient_ca = [\"ca\"]\n",
            "client_auth needs TLS",
        ),
        (
            "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\nclient_auth = \"required\"\n",
            "only apply to kind = \"reverse\"",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n\
             client_auth = \"required\"\nclient_ca = [\"ca\"]\nfacility_id = \"subject:XYZ\"\n",
            "listener[0].facility_id",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n\
             [[route]]\nlistener = \"r\"\nupstreams = [\"ftp://x\"]\n",
            "route[0].upstreams",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n\
             [[route]]\nlistener = \"nope\"\nupstreams = [\"http://x\"]\n",
            "route[0].listener",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n\
             [[route]]\nlistener = \"r\"\nupstreams = [\"http://x\"]\ntimeout_secs = 0\n",
            "route[0].timeout_secs",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"missing.crt\"\nkey = \"missing.key\"\n\
             [[route]]\nlistener = \"r\"\nupstreams = [\"http://127.0.0.1:1\"]\n",
            "missing.crt",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n\
             client_auth = \"required\"\nclient_ca = [\"ca\"]\nfacility_id = \"subject:OU\"\n\
             [[route]]\nlistener = \"r\"\nupstreams = [\"http://x\"]\nfacilities = [\"@tokyo\"]\n",
            "no [[facility_group]] named \"tokyo\"",
        ),
        (
            "[[facility_group]]\nname = \"tokyo\"\n",
            "facility_group[0]: give members",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n\
             client_auth = \"required\"\nclient_ca = [\"ca\"]\nfacility_id = \"subject:OU\"\n\
             [[route]]\nlistener = \"r\"\nupstreams = [\"http://x\"]\nroles = [\"Medical Doctor\"]\n",
            "route[0].roles: listener \"r\" has no role_id rule",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n\
             client_auth = \"required\"\nclient_ca = [\"ca\"]\nrole_id = \"oid:1.2.392.100495.1.6.1.1\"\n",
            "use hpki:role",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n\
             client_auth = \"required\"\nclient_ca = [\"ca\"]\nclient_policies = [\"HPKI auth\"]\n",
            "listener[0].client_policies",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n\
             client_auth = \"required\"\nclient_ca = [\"ca\"]\nrole_header = \"X-Sekisho-Facility\"\n",
            "listener[0].role_header: must differ from facility_header",
        ),
        (
            "[[listener]]\nname = \"r\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\ncert = \"c\"\nkey = \"k\"\n\
             role_id = \"hpki:role\"\n",
            "listener[0].role_id: needs client_auth",
        ),
    ] {
        let p = dir.path().join("s.toml");
        std::fs::write(
            &p,
            format!("{cfg}\n[tls]\nca_cert = \"{0}/ca.crt\"\nca_key = \"{0}/ca.key\"\n", dir.path().display()),
        )
        .unwrap();
        let out = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cfg}");
        assert!(err.contains(needle), "{cfg}\n→ {err}");
        assert!(err.contains("s.toml") || err.contains("missing.crt"), "{err}");
    }
}

/// A route allowing 237,000 facilities from a `[[facility_group]]` file: the listed facility
/// passes, an unlisted one is refused, and a reload reads the file again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_of_237000_facilities_from_a_group_file() {
    let (pki, listeners) = pki();
    let a = Origin::start_with_files(None, files(&[("/whoami", "a")])).await;
    let list = pki.dir.path().join("network.txt");
    let write_list = |with: &str| {
        let mut text = String::from("# the network's facilities\n");
        for i in 0..236_999 {
            text.push_str(&format!("{:02}{:08}\n", 13 + i % 34, i));
        }
        text.push_str(with);
        text.push('\n');
        std::fs::write(&list, text).unwrap();
    };
    write_list("H-0001");
    let routes = format!(
        "[[facility_group]]\nname = \"network\"\nfile = \"{}\"\n\n\
         [[route]]\nname = \"service-a\"\nlistener = \"services\"\nhost = \"a.svc.test\"\n\
         upstreams = [\"http://127.0.0.1:{a}\"]\nfacilities = [\"@network\"]\n\n\
         [[route]]\nname = \"portal\"\nlistener = \"portal\"\nupstreams = [\"http://127.0.0.1:{a}\"]\n",
        list.display(),
        a = a.port,
    );
    let gw = Gateway::start_with_listeners("reverse-groups", &listeners, "", &routes);
    let port = gw.all[0].port();
    let ca = pki.server_ca.clone();
    let who = |client: PathBuf| {
        let ca = ca.clone();
        async move {
            let c = get(
                port,
                "127.0.0.1",
                "a.svc.test",
                "/whoami",
                &ca,
                Some(&client),
                &[],
            )
            .await;
            status(&c)
        }
    };
    assert_eq!(who(pki.h1.clone()).await, "200 1.1");
    assert_eq!(who(pki.p2.clone()).await, "403 1.1");
    let denied = gw.wait_line("events.jsonl", |e| e["rule"]["id"] == "facility-denied");
    assert_eq!(denied["facility"]["id"], "P-0002", "{denied}");
    // The list changes; SIGHUP reads it again.
    write_list("P-0002");
    gw.reload();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while who(pki.p2.clone()).await != "200 1.1" {
        assert!(
            std::time::Instant::now() < deadline,
            "reload did not read the list"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(who(pki.h1.clone()).await, "403 1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_routes_stay_denied_however_the_path_is_spelled() {
    let (pki, listeners) = pki();
    let d = pki.dir.path();
    let admin = issue(&d.join("clients"), "ADMIN-0001", &d.join("admin"));
    let site = d.join("site");
    std::fs::create_dir_all(site.join("api/admin")).unwrap();
    std::fs::create_dir_all(site.join("api/x")).unwrap();
    std::fs::write(site.join("api/admin/secret.txt"), "TOP-SECRET\n").unwrap();
    std::fs::write(site.join("api/x/hello.txt"), "hello\n").unwrap();
    let py = python_upstream(&site);
    let routes = format!(
        "[[route]]\nname = \"api\"\nlistener = \"services\"\nhost = \"a.svc.test\"\npath_prefix = \"/api\"\n\
         upstreams = [\"http://127.0.0.1:{p}\"]\nfacilities = [\"*\"]\n\n\
         [[route]]\nname = \"api-admin\"\nlistener = \"services\"\nhost = \"a.svc.test\"\n\
         path_prefix = \"/api/admin\"\nupstreams = [\"http://127.0.0.1:{p}\"]\nfacilities = [\"ADMIN-*\"]\n\n\
         [[route]]\nname = \"portal\"\nlistener = \"portal\"\nupstreams = [\"http://127.0.0.1:{p}\"]\nfacilities = []\n",
        p = py.1
    );
    let gw = Gateway::start_with_listeners("reverse-paths", &listeners, "", &routes);
    let port = gw.all[0].port();
    let ca = pki.server_ca.clone();
    // (path as sent, status for H-0001, rule id of a refusal)
    let table: &[(&str, &str, Option<&str>)] = &[
        ("/api/x/hello.txt", "200", None),
        ("/api/admin/secret.txt", "403", None),
        ("/api/x/../admin/secret.txt", "403", None),
        ("/api//admin/secret.txt", "403", None),
        ("/api/./admin/secret.txt", "403", None),
        ("/api/%61dmin/secret.txt", "403", None),
        ("/api/x/../../api/admin/secret.txt", "403", None),
        ("/api/admin/./secret.txt", "403", None),
        (
            "/api/%2e%2e/api/admin/secret.txt",
            "400",
            Some("path-encoded-dot-segment"),
        ),
        (
            "/api/x/%2E%2E/admin/secret.txt",
            "400",
            Some("path-encoded-dot-segment"),
        ),
        ("/api%2fadmin/secret.txt", "400", Some("path-encoded-slash")),
        (
            "/api/admin%5csecret.txt",
            "400",
            Some("path-encoded-backslash"),
        ),
        (
            "/api/x/..;/admin/secret.txt",
            "400",
            Some("path-dot-segment-params"),
        ),
        (
            "/api/%c0%ae%c0%ae/admin/secret.txt",
            "400",
            Some("path-overlong-utf8"),
        ),
        ("/api/admin/secret.txt%00.txt", "400", Some("path-nul")),
        ("/../api/admin/secret.txt", "400", Some("path-above-root")),
    ];
    for (path, want, rule) in table {
        for proto in ["--http1.1", "--http2"] {
            let c = get(
                port,
                "127.0.0.1",
                "a.svc.test",
                path,
                &ca,
                Some(&pki.h1),
                &["--path-as-is", proto],
            )
            .await;
            assert_eq!(c.code, 0, "{path}: {}", c.stderr);
            assert!(
                !c.stdout.contains("TOP-SECRET"),
                "{path} {proto}: H-0001 got the admin file"
            );
            let code = status(&c);
            assert!(
                code.starts_with(want),
                "{path} {proto}: {code}\n{}",
                c.stdout
            );
        }
        if let Some(rule) = rule {
            let ev = gw.wait_line("events.jsonl", |e| e["rule"]["id"] == *rule);
            assert_eq!(ev["event"]["action"], "blocked");
            assert_eq!(ev["facility"]["id"], "H-0001");
        }
    }
    // The admin facility reaches its route through the same spellings, and the upstream serves
    // exactly what the route was chosen for.
    for path in [
        "/api/admin/secret.txt",
        "/api/x/../admin/secret.txt",
        "/api/%61dmin/secret.txt",
    ] {
        let c = get(
            port,
            "127.0.0.1",
            "a.svc.test",
            path,
            &ca,
            Some(&admin),
            &["--path-as-is"],
        )
        .await;
        assert!(
            c.stdout.starts_with("TOP-SECRET\n") && status(&c).starts_with("200"),
            "{path}: {} {}",
            c.stdout,
            c.stderr
        );
    }
    // The flow line and the events carry the canonical path.
    let line = gw.wait_line("flows.jsonl", |l| {
        l["facility_id"] == "ADMIN-0001" && l["status"] == 200
    });
    assert_eq!(line["path"], "/api/admin/secret.txt");
    gw.assert_metrics(&[
        "sekisho_ambiguous_requests_total{listener=\"services\",rule=\"path-encoded-dot-segment\"} 4",
        "sekisho_ambiguous_requests_total{listener=\"services\",rule=\"path-above-root\"} 2",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_on_a_reverse_listener_are_shed_with_one_event() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const STALLED: usize = 200;
    let (pki, listeners) = pki();
    let routes = "[limits]\nhandshake_timeout_secs = 2\n\n\
        [[route]]\nname = \"api\"\nlistener = \"services\"\nupstreams = [\"http://127.0.0.1:9\"]\nfacilities = [\"*\"]\n\n\
        [[route]]\nname = \"portal\"\nlistener = \"portal\"\nupstreams = [\"http://127.0.0.1:9\"]\nfacilities = []\n";
    let gw = Gateway::start_with_listeners("reverse-stall", &listeners, "", routes);
    let addr = gw.all[0];
    let mut conns = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            // Half a TLS record header and no more.
            c.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        }
        conns.push(c);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    for c in &mut conns {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut b = [0u8; 256];
        let closed = tokio::time::timeout(left, async {
            while c.read(&mut b).await.is_ok_and(|n| n > 0) {}
        })
        .await;
        assert!(closed.is_ok(), "a stalled handshake stayed open");
    }
    let e = gw.wait_line("events.jsonl", |e| e["rule"]["id"] == "slow-tls-handshake");
    assert_eq!(e["source"]["ip"], "127.0.0.1");
    let n = gw
        .events()
        .iter()
        .filter(|e| e["rule"]["id"] == "slow-tls-handshake")
        .count();
    assert_eq!(n, 1, "one event for the whole attack");
    gw.assert_metrics(&[&format!(
        "sekisho_shed_total{{attack=\"slow-tls-handshake\",listener=\"services\"}} {STALLED}"
    )])
    .await;
    drop(pki);
}
