//! EICAR in every shape the gateway decodes, through the real binary over decrypted HTTPS; clean
//! files and the IHE samples pass. `sekisho scan` on the same shapes.

#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::*;

const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";

fn tar_gz(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    gzip(&b.into_inner().unwrap())
}

/// The IHE sample every XCA shape is built on, under the public corpora.
const ITI43: &str = "ihe/ITI-43_response_raw.xml";

/// The IHE ITI-43 sample response: only called by tests that checked `corpus(ITI43)` first.
fn iti43() -> String {
    std::fs::read_to_string(corpora().join(ITI43)).unwrap()
}

const CID: &str = "72f7c587daaacb8b81212de4e80e442e5f43394482e12edd@apache.org";

/// RetrieveDocumentSetResponse with the document inline (base64).
fn xca_inline(doc: &[u8]) -> Vec<u8> {
    let xml = iti43();
    let a = xml.find("<xop:Include").unwrap();
    let b = xml[a..].find("/>").unwrap() + a + 2;
    format!(
        "{}{}{}",
        &xml[..a],
        base64::engine::general_purpose::STANDARD.encode(doc),
        &xml[b..]
    )
    .into_bytes()
}

/// The same response as MTOM: the sample envelope as root, the document as a cid part.
fn xca_mtom(doc: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"--MIMEBoundary_x\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\nContent-ID: <root.message@cxf.apache.org>\r\n\r\n");
    m.extend_from_slice(iti43().as_bytes());
    m.extend_from_slice(
        format!(
            "\r\n--MIMEBoundary_x\r\nContent-Type: application/pdf\r\nContent-ID: <{CID}>\r\n\r\n"
        )
        .as_bytes(),
    );
    m.extend_from_slice(doc);
    m.extend_from_slice(b"\r\n--MIMEBoundary_x--\r\n");
    m
}
const MTOM_TYPE: &str = "multipart/related; boundary=\"MIMEBoundary_x\"; type=\"application/xop+xml\"; start=\"<root.message@cxf.apache.org>\"; start-info=\"application/soap+xml\"";

fn nested5(data: &[u8]) -> Vec<u8> {
    let mut z = zip_of("inner/eicar.com", data);
    for level in (1..5).rev() {
        z = zip_of(&format!("level{level}.zip"), &z);
    }
    z
}

/// A served file: (path, headers, body, expected provenance of the detection or None when clean).
type Shape = (
    &'static str,
    Vec<(String, String)>,
    Vec<u8>,
    Option<&'static str>,
);

fn shapes() -> Vec<Shape> {
    let h = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let pdf = b"%PDF-1.4\n% a clean document\n".to_vec();
    vec![
        ("/eicar.com", h(&[("content-type", "application/octet-stream")]), eicar(), Some("response.body")),
        ("/eicar.txt", h(&[("content-type", "text/plain"), ("content-encoding", "gzip")]), gzip(&eicar()), Some("response.body > gzip")),
        ("/eicar.zip.zst", h(&[("content-type", "application/zip"), ("content-encoding", "zstd")]), ruzstd::encoding::compress_to_vec(&zip_of("docs/eicar.com", &eicar())[..], ruzstd::encoding::CompressionLevel::Fastest), Some("response.body > zstd > zip:docs/eicar.com")),
        ("/eicar.zip", h(&[("content-type", "application/zip")]), zip_of("docs/eicar.com", &eicar()), Some("response.body > zip:docs/eicar.com")),
        ("/nested5.zip", h(&[("content-type", "application/zip")]), nested5(&eicar()), Some("response.body > zip:level1.zip > zip:level2.zip > zip:level3.zip > zip:level4.zip > zip:inner/eicar.com")),
        ("/eicar.tar.gz", h(&[("content-type", "application/gzip")]), tar_gz("x/eicar.com", &eicar()), Some("response.body > gzip > tar:x/eicar.com")),
        ("/xca-inline", h(&[("content-type", "application/soap+xml")]), xca_inline(&eicar()), Some("response.body > soap:Document[1]")),
        ("/xca-mtom", h(&[("content-type", MTOM_TYPE)]), xca_mtom(&eicar()), Some("response.body > mime:root > soap:Document[1] > cid:")),
        ("/clean.zip", h(&[("content-type", "application/zip")]), nested5(b"just text"), None),
        ("/xca-clean", h(&[("content-type", "application/soap+xml")]), xca_inline(&pdf), None),
        ("/xca-mtom-clean", h(&[("content-type", MTOM_TYPE)]), xca_mtom(&pdf), None),
        ("/iti43.xml", h(&[("content-type", "application/soap+xml")]), iti43().into_bytes(), None),
    ]
}

fn av_table(cache: &std::path::Path) -> String {
    format!(
        "[av]\nyara = [\"{}\"]\nclamav = [\"{}\"]\ncache_dir = \"{}\"\n",
        repo().join("rules/yara").display(),
        repo().join("rules/clamav").display(),
        cache.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eicar_in_every_shape_is_blocked_and_clean_files_pass() {
    if corpus(ITI43).is_none() {
        return;
    }
    let pki = TestPki::new("Origin Test CA", &["localhost"]);
    let mut files: Files = shapes()
        .into_iter()
        .map(|(p, h, b, _)| (p.to_string(), (h, b)))
        .collect();
    // A corrupt archive: not inspectable, so blocked by default (on_limit = "block").
    let mut broken = zip_of("a.txt", b"clean words");
    broken.truncate(broken.len() - 12);
    files.insert("/broken.zip".into(), (vec![], broken));
    let origin = Origin::start_with_files(Some(pki.server_config()), files).await;
    let roots = TempDir::new("av-roots");
    std::fs::write(roots.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let gw = Gateway::start(
        "av",
        &format!(
            "upstream_roots = [\"{}\"]",
            roots.path().join("ca.pem").display()
        ),
        &av_table(&roots.path().join("cache")),
    );
    let ca = gw.ca_path();
    for (path, _, body, expect) in shapes() {
        let url = format!("https://localhost:{}{path}", origin.port);
        let r = curl(&[
            "-x",
            &gw.proxy_url(),
            "--cacert",
            ca.to_str().unwrap(),
            "--compressed",
            "-w",
            "\n%{http_code}",
            &url,
        ])
        .await;
        assert_eq!(r.code, 0, "{path}: {}", r.stderr);
        match expect {
            Some(prov) => {
                assert!(
                    r.stdout.ends_with("\n403"),
                    "{path} must be blocked: {}",
                    r.stdout
                );
                let yara = gw.wait_line("events.jsonl", |v| {
                    v["http"]["url"] == url.as_str() && v["rule"]["id"] == "EICAR_Test_File"
                });
                let page_id = r
                    .stdout
                    .split("id=\"event-id\">")
                    .nth(1)
                    .and_then(|t| t.split('<').next())
                    .unwrap()
                    .to_string();
                let ev = gw.wait_line("events.jsonl", |v| v["event"]["id"] == page_id.as_str());
                assert_eq!(
                    ev["http"]["url"],
                    url.as_str(),
                    "{path}: the page's event is this flow's"
                );
                assert_eq!(ev["event"]["action"], "blocked");
                assert_eq!(ev["file"]["sha256"], EICAR_SHA256, "{path}");
                assert_eq!(ev["file"]["size"], 68);
                assert_eq!(ev["stage"], "av");
                assert!(
                    ev["evidence"]["location"]
                        .as_str()
                        .unwrap()
                        .starts_with(prov),
                    "{path}: {}",
                    ev["evidence"]["location"]
                );
                let ev = yara;
                assert!(ev["rule"]["source_file"]
                    .as_str()
                    .unwrap()
                    .ends_with("rules/yara/eicar.yar"));
                assert!(ev["rule"]["name"]
                    .as_str()
                    .unwrap()
                    .contains("author: Sekisho"));
            }
            None => {
                assert!(
                    r.stdout.ends_with("\n200"),
                    "{path} must pass: {}",
                    &r.stdout[r.stdout.len().saturating_sub(200)..]
                );
                assert_eq!(
                    &r.stdout[..r.stdout.len() - 4],
                    String::from_utf8_lossy(&body),
                    "{path}: body intact"
                );
            }
        }
    }

    let url = format!("https://localhost:{}/broken.zip", origin.port);
    let r = curl(&[
        "-x",
        &gw.proxy_url(),
        "--cacert",
        ca.to_str().unwrap(),
        "-w",
        "\n%{http_code}",
        &url,
    ])
    .await;
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    let ev = gw.wait_line("events.jsonl", |v| v["http"]["url"] == url.as_str());
    assert_eq!(ev["rule"]["id"], "Sekisho.Broken");
    assert_eq!(ev["event"]["category"], "uninspected");

    // A multipart upload carrying EICAR is refused before it reaches the origin.
    let up = TempDir::new("av-upload");
    std::fs::write(up.path().join("report.pdf"), eicar()).unwrap();
    let url = format!("https://localhost:{}/count", origin.port);
    let r = curl(&[
        "-x",
        &gw.proxy_url(),
        "--cacert",
        ca.to_str().unwrap(),
        "-F",
        &format!("file=@{}", up.path().join("report.pdf").display()),
        "-w",
        "\n%{http_code}",
        &url,
    ])
    .await;
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    let ev = gw.wait_line("events.jsonl", |v| {
        v["http"]["url"] == url.as_str() && v["rule"]["id"] == "EICAR_Test_File"
    });
    assert_eq!(
        ev["evidence"]["location"],
        "request.body > multipart:report.pdf"
    );
    assert_eq!(ev["file"]["name"], "report.pdf");
    // A clean upload passes whole.
    std::fs::write(up.path().join("ok.pdf"), b"%PDF-1.4 clean").unwrap();
    let r = curl(&[
        "-x",
        &gw.proxy_url(),
        "--cacert",
        ca.to_str().unwrap(),
        "--data-binary",
        &format!("@{}", up.path().join("ok.pdf").display()),
        &url,
    ])
    .await;
    assert_eq!(r.stdout, "14", "{}", r.stderr);
    // The stage counted what it scanned and found.
    let m = gw.metrics_text().await;
    assert!(metric(&m, "sekisho_av_scans_total") >= 10.0, "{m}");
    assert!(
        metric(&m, "sekisho_av_pieces_total") > metric(&m, "sekisho_av_scans_total"),
        "{m}"
    );
    assert!(
        metric(&m, "sekisho_av_findings_total{engine=\"yara\"}") >= 7.0,
        "{m}"
    );
    assert!(
        metric(&m, "sekisho_av_issues_total{kind=\"corrupt\"}") >= 1.0,
        "{m}"
    );
    assert!(metric(&m, "sekisho_av_scan_seconds_count") >= 10.0, "{m}");
}

#[test]
fn sekisho_scan_reports_every_shape() {
    if corpus(ITI43).is_none() {
        return;
    }
    let dir = TempDir::new("scan");
    for (path, _, body, _) in shapes() {
        std::fs::write(dir.path().join(path.trim_start_matches('/')), body).unwrap();
    }
    let cfg = dir.path().join("scan.toml");
    std::fs::write(&cfg, av_table(&dir.path().join("cache"))).unwrap();
    let out = std::process::Command::new(bin())
        .args(["scan", "--config"])
        .arg(&cfg)
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for (path, _, _, expect) in shapes() {
        let name = dir.path().join(path.trim_start_matches('/'));
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{}:", name.display())))
            .collect();
        match expect {
            Some(_) => assert!(
                lines.iter().any(|l| l.contains("EICAR_Test_File FOUND")),
                "{path}: {lines:?}"
            ),
            None => assert_eq!(lines, vec![format!("{}: OK", name.display())], "{path}"),
        }
    }
    assert!(text.contains("Infected files: 8"), "{text}");
    // Clean only: exit 0. JSON: one object per file.
    let clean = dir.path().join("clean.zip");
    let out = std::process::Command::new(bin())
        .args(["scan", "--json", "--config"])
        .arg(&cfg)
        .arg(&clean)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "clean");
    // With only a ClamAV .hdb named in [av] clamav.
    let hdb_cfg = dir.path().join("hdb.toml");
    std::fs::write(
        &hdb_cfg,
        format!(
            "[av]\nclamav = [\"{}\"]\ncache_dir = \"\"\n",
            repo().join("rules/clamav/eicar.hdb").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["scan", "--config"])
        .arg(&hdb_cfg)
        .arg(dir.path().join("eicar.zip"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("Eicar-Test-Signature FOUND (file > zip:docs/eicar.com)"),
        "{text}"
    );
}
