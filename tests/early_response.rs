//! An origin that answers a POST before reading its body: the client still gets the answer.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answer_to_an_upload_reaches_the_client() {
    let pki = TestPki::new("Origin Test CA", &["localhost"]);
    let origin = Origin::start(Some(pki.server_config())).await;
    let roots = TempDir::new("early-roots");
    std::fs::write(roots.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let gw = Gateway::start(
        "early",
        &format!(
            "upstream_roots = [\"{}\"]",
            roots.path().join("ca.pem").display()
        ),
        "",
    );
    let ca = gw.ca_path();
    let body = "x".repeat(200);
    let mut fails = Vec::new();
    for i in 0..40 {
        let url = format!("https://localhost:{}/nope{i}", origin.port);
        let r = curl(&[
            "-x",
            &gw.proxy_url(),
            "--cacert",
            ca.to_str().unwrap(),
            "-w",
            "\n%{http_code}",
            "--data-binary",
            &body,
            &url,
        ])
        .await;
        if r.code != 0 || !r.stdout.ends_with("\n404") {
            fails.push((i, r.code, r.stderr));
        }
    }
    assert!(fails.is_empty(), "{fails:?}");
}
