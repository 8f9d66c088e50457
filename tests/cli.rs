//! CLI behaviour of the real binary: version, ca init, check-config errors, run's CA handling.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{bin, TempDir};

fn run(args: &[&str], cwd: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_help() {
    let d = TempDir::new("cli-v");
    let (code, out, _) = run(&["--version"], d.path());
    assert_eq!(code, 0);
    assert!(out.starts_with("sekisho "), "{out}");
    let (code, out, _) = run(&["--help"], d.path());
    assert_eq!(code, 0);
    for verb in ["run", "check-config", "ca", "collector", "logs"] {
        assert!(out.contains(verb), "{out}");
    }
    let (code, out, _) = run(&["rules", "--help"], d.path());
    assert_eq!(code, 0);
    assert!(out.contains("check") && out.contains("test-url"), "{out}");
}

#[test]
fn ca_init_writes_0600_key_and_refuses_overwrite() {
    let d = TempDir::new("cli-ca");
    let (code, out, err) = run(&["ca", "init", "--out", "x"], d.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ca.crt"), "{out}");
    let key = d.path().join("x/ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = std::fs::read_to_string(d.path().join("x/ca.crt")).unwrap();
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = p.parse_x509().unwrap();
    assert!(cert.is_ca());
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "ECDSA public key"
    );
    let before = std::fs::read(&key).unwrap();
    let (code, _, err) = run(&["ca", "init", "--out", "x"], d.path());
    assert_eq!(code, 2);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before, "key untouched");
}

#[test]
fn check_config_accepts_the_bundled_default() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let d = TempDir::new("cli-default");
    std::fs::copy(repo.join("sekisho.toml"), d.path().join("sekisho.toml")).unwrap();
    std::os::unix::fs::symlink(repo.join("rules"), d.path().join("rules")).unwrap();
    let (code, out, err) = run(&["check-config"], d.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("sekisho.toml: OK"), "{out}");
    assert!(
        out.contains("av: 2 YARA rules") && out.contains("0 rejected"),
        "{out}"
    );
    assert!(
        out.contains("(forward): stages host_policy, url, ips, av;"),
        "{out}"
    );
    assert!(
        out.contains("decision deadlines for held bodies: host_policy (120s), url (120s), ips (120s), av (120s)"),
        "{out}"
    );
    assert!(
        out.contains("ips: 7 rules loaded, 0 skipped (unsupported), 0 with errors"),
        "{out}"
    );
    assert!(
        out.contains("urlfilter: 5 categories and lists") && out.contains("0 malformed lines"),
        "{out}"
    );
    // The bundled URL lists: the test entries block, ordinary sites pass.
    let (tcode, tout, _) = run(
        &[
            "rules",
            "test-url",
            "http://www.malware.sekisho.test/x",
            "https://example.org/",
        ],
        d.path(),
    );
    assert_eq!(tcode, 0, "{tout}");
    let blocks: Vec<&str> = tout.split("\n\n").collect();
    assert!(
        blocks[0].contains("action: block (category malware"),
        "{tout}"
    );
    assert!(
        blocks[1].contains("action: allow (policy default default)"),
        "{tout}"
    );
    assert!(
        out.contains("sekisho ca init"),
        "says how the CA is made: {out}"
    );
}

#[test]
fn check_config_errors_name_file_and_key() {
    let d = TempDir::new("cli-bad");
    let cases: &[(&str, &[&str])] = &[
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[tls]\nsplice_hosts = []\n", &["bad.toml", "splice_hosts"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"not-an-address\"\n", &["bad.toml", "addr", "not an address with a port"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:99999\"\n", &["bad.toml", "\"127.0.0.1:99999\" is not an address with a port (1-65535)"]),
        // A mistyped key in a table with flattened parts: its own line, and the valid keys.
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n\n[policy]\ndeny_hosts = []\ndeny_hots = [\"x\"]\n", &["bad.toml", "line 7: unknown key `deny_hots` in [policy]", "valid keys:", "deny_hosts", "tls_block_page", "on_overflow"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[av]\nyara = \"y\"\nscan_timeout = 3\n", &["bad.toml", "line 6: unknown key `scan_timeout` in [av]", "scan_timeout_secs"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[tls]\nca_crt = \"x\"\n", &["bad.toml", "line 5: unknown key `ca_crt` in [tls]", "valid keys: ca_cert"]),
        ("[[listener]]\nkind = \"reverse-ish\"\naddr = \"127.0.0.1:1\"\n", &["bad.toml", "kind"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[policy]\ndeny_hosts = [\"bad host\"]\n", &["bad.toml", "policy.deny_hosts"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[limits]\nhold_bytes_per_flow = 10\nhold_bytes_total = 5\n", &["bad.toml", "limits.hold_bytes_per_flow"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[tls]\nupstream_roots = [\"missing.pem\"]\n", &["missing.pem"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[mss]\nspool_dir = \"s\"\n[[mss.sink]]\nkind = \"syslog\"\n", &["bad.toml", "mss.sink[0] (syslog-0)", "needs addr"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[mss]\nspool_dir = \"s\"\n[[mss.sink]]\nkind = \"syslog\"\naddr = \"127.0.0.1:6514\"\nformat = \"xml\"\n", &["bad.toml", "format"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[mss]\nspool_dir = \"s\"\n[[mss.sink]]\nname = \"soc\"\nkind = \"syslog\"\naddr = \"127.0.0.1:6514\"\ntransport = \"tls\"\nca = \"no-ca.pem\"\n", &["bad.toml", "sink soc", "no-ca.pem"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[policy]\nresolve_timeout_secs = 0\n", &["bad.toml", "policy.resolve_timeout_secs"]),
        ("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[av]\nyara = [\"y\"]\nresolve_timeout_secs = 30\n", &["bad.toml", "av.resolve_timeout_secs (30)", "av.scan_timeout_secs (120)"]),
    ];
    for (text, needles) in cases {
        std::fs::write(d.path().join("bad.toml"), text).unwrap();
        let (code, out, err) = run(&["check-config", "--config", "bad.toml"], d.path());
        assert_eq!(code, 2, "{text}: {out}");
        assert_eq!(
            err.lines()
                .filter(|l| l.starts_with("sekisho: error"))
                .count(),
            1,
            "one error: {err}"
        );
        for n in *needles {
            assert!(err.contains(n), "{text}: error should name {n}: {err}");
        }
    }
}

#[test]
fn unreadable_or_mismatched_ca_key_is_a_clear_error() {
    let d = TempDir::new("cli-cakey");
    assert_eq!(run(&["ca", "init", "--out", "ca"], d.path()).0, 0);
    std::fs::write(
        d.path().join("ca/broken.key"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let cfg = "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n[tls]\nca_cert = \"ca/ca.crt\"\nca_key = \"ca/broken.key\"\n";
    std::fs::write(d.path().join("c.toml"), cfg).unwrap();
    for verb in ["check-config", "run"] {
        let (code, _, err) = run(&[verb, "--config", "c.toml"], d.path());
        assert_eq!(code, 2, "{verb}");
        assert!(err.contains("ca/broken.key"), "{verb}: {err}");
    }
    // Only one of the pair missing: run names what to do instead of silently replacing it.
    let cfg = "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n[tls]\nca_cert = \"ca/ca.crt\"\nca_key = \"ca/gone.key\"\n";
    std::fs::write(d.path().join("c.toml"), cfg).unwrap();
    let (code, _, err) = run(&["run", "--config", "c.toml"], d.path());
    assert_eq!(code, 2);
    assert!(
        err.contains("gone.key") && err.contains("sekisho ca init"),
        "{err}"
    );
}

fn openssl(args: &[&str], cwd: &std::path::Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `ca issue-client` makes a client certificate OpenSSL verifies against the CA, with the
/// facility in OU and the SAN URI, clientAuth, a 0600 key; `ca crl` revokes it.
#[test]
fn ca_issue_client_and_crl() {
    let d = TempDir::new("cli-client");
    let p = d.path();
    assert_eq!(run(&["ca", "init", "--out", "ca"], p).0, 0);
    let (code, out, err) = run(
        &[
            "ca",
            "issue-client",
            "--ca",
            "ca",
            "--facility",
            "1312345678",
            "--out",
            "f1",
        ],
        p,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("facility 1312345678"), "{out}");
    assert_eq!(
        std::fs::metadata(p.join("f1/client.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let (ok, text) = openssl(
        &[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca/ca.crt",
            "f1/client.crt",
        ],
        p,
    );
    assert!(ok, "{text}");
    let (ok, text) = openssl(
        &[
            "x509",
            "-in",
            "f1/client.crt",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName,extendedKeyUsage",
        ],
        p,
    );
    assert!(ok, "{text}");
    assert!(text.contains("OU = 1312345678"), "{text}");
    assert!(
        text.contains("URI:urn:sekisho:facility:1312345678"),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    // A second facility; the first one revoked.
    assert_eq!(
        run(
            &[
                "ca",
                "issue-client",
                "--ca",
                "ca",
                "--facility",
                "F2",
                "--out",
                "f2"
            ],
            p
        )
        .0,
        0
    );
    let (code, out, err) = run(
        &[
            "ca",
            "crl",
            "--ca",
            "ca",
            "--revoke",
            "f1/client.crt",
            "--out",
            "crl.pem",
        ],
        p,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoking 1"), "{out}");
    let (ok, text) = openssl(
        &[
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "ca/ca.crt",
            "f1/client.crt",
        ],
        p,
    );
    assert!(!ok && text.contains("revoked"), "{text}");
    let (ok, text) = openssl(
        &[
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "ca/ca.crt",
            "f2/client.crt",
        ],
        p,
    );
    assert!(ok, "{text}");
    // Expired on request (for refusal tests), bad IDs and overwrites refused.
    assert_eq!(
        run(
            &[
                "ca",
                "issue-client",
                "--ca",
                "ca",
                "--facility",
                "OLD",
                "--out",
                "old",
                "--not-before",
                "2020-01-01T00:00:00Z",
                "--not-after",
                "2020-02-01T00:00:00Z",
            ],
            p
        )
        .0,
        0
    );
    let (ok, text) = openssl(&["verify", "-CAfile", "ca/ca.crt", "old/client.crt"], p);
    assert!(!ok && text.contains("expired"), "{text}");
    let (code, _, err) = run(
        &[
            "ca",
            "issue-client",
            "--ca",
            "ca",
            "--facility",
            "has space",
            "--out",
            "x",
        ],
        p,
    );
    assert_eq!(code, 2);
    assert!(err.contains("facility ID"), "{err}");
    let (code, _, err) = run(
        &[
            "ca",
            "issue-client",
            "--ca",
            "ca",
            "--facility",
            "F2",
            "--out",
            "f2",
        ],
        p,
    );
    assert_eq!(code, 2);
    assert!(err.contains("refusing to overwrite"), "{err}");
    let (code, _, err) = run(
        &[
            "ca",
            "issue-client",
            "--ca",
            "nope",
            "--facility",
            "F3",
            "--out",
            "f3",
        ],
        p,
    );
    assert_eq!(code, 2);
    assert!(err.contains("nope/ca.crt"), "{err}");
}
