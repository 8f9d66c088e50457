//! Delivery against in-process collectors: push back when the threat spool is full, HTTP
//! batches retried after non-2xx answers, mutual TLS to `collector` with a client certificate,
//! CEF over HTTP.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use sekisho_core::Observer;
use sekisho_mss::collector::{bind, CollectorConfig};
use sekisho_mss::{Mss, MssConfig, MssMetrics};
use serde_json::{json, Value};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sekisho-mss-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn observer() -> Observer {
    Observer {
        name: "sekisho".into(),
        version: "0.1.0".into(),
        node: "gw-test".into(),
    }
}

fn event(i: usize) -> Value {
    json!({
        "@timestamp": "2026-11-26T00:00:00.000Z",
        "event_type": "alert",
        "event": {"id": format!("ev-{i}"), "kind": "alert", "category": "test", "action": "blocked", "severity": 1},
        "observer": observer(),
        "alert": {"signature_id": 1, "signature": "test", "severity": 1, "action": "blocked", "category": "test"},
        "pad": "x".repeat(300),
    })
}

fn config(text: &str) -> MssConfig {
    toml::from_str(text).unwrap()
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event_ids(lines: &[String]) -> std::collections::HashSet<String> {
    lines
        .iter()
        .filter_map(|l| {
            let j = &l[l.find('{')?..];
            let v: Value = serde_json::from_str(j).ok()?;
            v["event"]["id"].as_str().map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_threat_spool_pushes_back_and_loses_nothing() {
    let d = tmp("pushback");
    let addr = free_addr();
    let cfg = config(&format!(
        "spool_dir = \"{}\"\nsegment_bytes = 4096\nspool_max_bytes = 8192\nqueue = 1\nbatch = 10\nack_delay_ms = 50\nbackoff_min_ms = 20\nbackoff_max_ms = 100\n\
         [[sink]]\nname = \"s\"\nkind = \"syslog\"\naddr = \"{addr}\"\n",
        d.join("spool").display()
    ));
    let metrics = MssMetrics::unregistered().unwrap();
    let (mss, tasks) = Mss::start(&cfg, observer(), metrics.clone()).unwrap();
    // The collector is down: the spool (8 KiB) fills, then sending waits.
    let mut sent = 0;
    let mut blocked = None;
    for i in 0..200 {
        let fut = mss.threat_value(event(i));
        let mut fut = Box::pin(fut);
        match tokio::time::timeout(Duration::from_secs(2), &mut fut).await {
            Ok(()) => sent += 1,
            Err(_) => {
                blocked = Some((i, fut));
                break;
            }
        }
    }
    let (i, fut) = blocked.expect("a full threat spool must push back");
    assert!(
        sent >= 10,
        "the spool took {sent} events before pushing back"
    );
    // The collector comes up: the waiting send completes and everything arrives.
    let out = d.join("collector");
    let (_, serve) = bind(CollectorConfig {
        out: out.clone(),
        syslog_tcp: vec![addr],
        ..Default::default()
    })
    .await
    .unwrap();
    let server = tokio::spawn(serve);
    fut.await;
    for j in i + 1..i + 20 {
        mss.threat_value(event(j)).await;
    }
    let total = i + 20;
    wait_until("every event at the collector", || {
        event_ids(&lines(&out.join("syslog.log"))).len() == total
    })
    .await;
    assert_eq!(
        metrics
            .dropped
            .with_label_values(&["s", "spool_full"])
            .get(),
        0
    );
    drop(mss);
    tasks.finish().await;
    server.abort();
    assert_eq!(metrics.acked.with_label_values(&["s"]).get(), total as u64);
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_batches_are_retried_until_2xx() {
    use http_body_util::BodyExt;
    let d = tmp("http");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (c2, g2) = (Arc::clone(&calls), Arc::clone(&got));
    let server = tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let (c3, g3) = (Arc::clone(&c2), Arc::clone(&g2));
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (c4, g4) = (Arc::clone(&c3), Arc::clone(&g3));
                        async move {
                            let auth = req
                                .headers()
                                .get("authorization")
                                .map(|h| h.to_str().unwrap().to_string());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let n = c4.fetch_add(1, Ordering::SeqCst);
                            let status = if n < 2 { 503 } else { 200 };
                            if status == 200 {
                                assert_eq!(auth.as_deref(), Some("Splunk t0ken"));
                                for l in sekisho_mss::collector::batch_events(&body).unwrap() {
                                    g4.lock().unwrap().push(l);
                                }
                            }
                            let mut r = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"{}"),
                            ));
                            *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let cfg = config(&format!(
        "spool_dir = \"{}\"\nbatch = 7\nbackoff_min_ms = 20\nbackoff_max_ms = 50\n\
         [[sink]]\nname = \"hec\"\nkind = \"http\"\nurl = \"http://{addr}/services/collector/event\"\ntoken = \"t0ken\"\nformat = \"cef\"\n",
        d.join("spool").display()
    ));
    let metrics = MssMetrics::unregistered().unwrap();
    let (mss, tasks) = Mss::start(&cfg, observer(), metrics.clone()).unwrap();
    for i in 0..30 {
        mss.threat_value(event(i)).await;
    }
    wait_until("30 CEF events", || got.lock().unwrap().len() >= 30).await;
    let v = got.lock().unwrap().clone();
    assert!(v.iter().all(|l| l.starts_with("CEF:0|Sekisho|Sekisho|")));
    let mut ext: Vec<&str> = v
        .iter()
        .map(|l| {
            l.split("externalId=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
        })
        .collect();
    ext.sort();
    ext.dedup();
    assert_eq!(ext.len(), 30);
    assert!(calls.load(Ordering::SeqCst) >= 3);
    assert!(metrics.retried.with_label_values(&["hec"]).get() > 0);
    drop(mss);
    tasks.finish().await;
    assert_eq!(metrics.acked.with_label_values(&["hec"]).get(), 30);
    server.abort();
    let _ = std::fs::remove_dir_all(&d);
}

fn write_pki(d: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "Collector CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |name: &str, san: SanType| {
        let k = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, name);
        p.subject_alt_names = vec![san];
        let c = p.signed_by(&k, &issuer).unwrap();
        (c.pem(), k.serialize_pem())
    };
    let (sc, sk) = leaf(
        "collector",
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
    );
    let (cc, ck) = leaf(
        "gateway",
        SanType::DnsName("gw.example".try_into().unwrap()),
    );
    std::fs::write(d.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(d.join("server.pem"), sc).unwrap();
    std::fs::write(d.join("server.key"), sk).unwrap();
    std::fs::write(d.join("client.pem"), cc).unwrap();
    std::fs::write(d.join("client.key"), ck).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tls_with_client_certificate() {
    let d = tmp("mtls");
    write_pki(&d);
    let out = d.join("collector");
    let (bound, serve) = bind(CollectorConfig {
        out: out.clone(),
        syslog_tls: vec!["127.0.0.1:0".parse().unwrap()],
        cert: Some(d.join("server.pem")),
        key: Some(d.join("server.key")),
        client_ca: Some(d.join("ca.pem")),
        ..Default::default()
    })
    .await
    .unwrap();
    let server = tokio::spawn(serve);
    let addr = bound[0].1;
    let sink = |name: &str, client: bool| {
        let mut s = format!(
            "[[sink]]\nname = \"{name}\"\nkind = \"syslog\"\naddr = \"{addr}\"\ntransport = \"tls\"\nca = \"{}\"\n",
            d.join("ca.pem").display()
        );
        if client {
            s += &format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                d.join("client.pem").display(),
                d.join("client.key").display()
            );
        }
        s
    };
    let cfg = config(&format!(
        "spool_dir = \"{}\"\nack_delay_ms = 50\nbackoff_min_ms = 20\nbackoff_max_ms = 100\n{}{}",
        d.join("spool").display(),
        sink("mtls", true),
        sink("anonymous", false)
    ));
    let metrics = MssMetrics::unregistered().unwrap();
    let (mss, tasks) = Mss::start(&cfg, observer(), metrics.clone()).unwrap();
    for i in 0..20 {
        mss.threat_value(event(i)).await;
    }
    wait_until("20 events over mutual TLS", || {
        event_ids(&lines(&out.join("syslog.log"))).len() == 20
            && metrics.acked.with_label_values(&["mtls"]).get() == 20
    })
    .await;
    // Without a client certificate the collector refuses the sink: nothing acknowledged.
    assert_eq!(metrics.acked.with_label_values(&["anonymous"]).get(), 0);
    let per_id = lines(&out.join("syslog.log")).len();
    assert!(per_id >= 20);
    drop(mss);
    tasks.finish().await;
    server.abort();
    let _ = std::fs::remove_dir_all(&d);
}

/// No Kafka broker can run here (no Debian package, no network): this checks the failure
/// path — every delivery report fails, nothing is acknowledged, the events stay in the spool.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_without_a_broker_keeps_events_spooled() {
    let d = tmp("kafka");
    let addr = free_addr();
    let cfg = config(&format!(
        "spool_dir = \"{}\"\ntimeout_secs = 1\nbackoff_min_ms = 20\nbackoff_max_ms = 100\n\
         [[sink]]\nname = \"k\"\nkind = \"kafka\"\naddr = \"{addr}\"\ntopic = \"sekisho-test\"\n",
        d.join("spool").display()
    ));
    let metrics = MssMetrics::unregistered().unwrap();
    let (mss, tasks) = Mss::start(&cfg, observer(), metrics.clone()).unwrap();
    for i in 0..5 {
        mss.threat_value(event(i)).await;
    }
    wait_until("a failed Kafka batch", || {
        metrics.retried.with_label_values(&["k"]).get() >= 5
    })
    .await;
    assert_eq!(metrics.acked.with_label_values(&["k"]).get(), 0);
    drop(mss);
    tasks.finish().await;
    let mut s = sekisho_mss::Spool::open(
        &d.join("spool/k/threat"),
        sekisho_mss::SpoolLimits::default(),
    )
    .unwrap();
    assert_eq!(s.read_batch(100).unwrap().len(), 5);
    let _ = std::fs::remove_dir_all(&d);
}

/// A real Kafka-compatible broker (`tansu`, `cargo install tansu`) on a free loopback port with
/// in-memory storage; killed on drop.
#[cfg(feature = "kafka")]
struct Tansu {
    child: std::process::Child,
}

#[cfg(feature = "kafka")]
impl Tansu {
    /// The broker, or `None` (with a SKIPPED line) when tansu is not installed and
    /// SEKISHO_REQUIRE_TANSU is not set.
    fn start(port: u16) -> Option<Tansu> {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = match std::process::Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(_) if std::env::var_os("SEKISHO_REQUIRE_TANSU").is_none() => {
                eprintln!("SKIPPED kafka_broker: tansu not installed (cargo install tansu)");
                return None;
            }
            Err(e) => panic!("tansu is required (SEKISHO_REQUIRE_TANSU): {e}"),
        };
        let t = Tansu { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = std::process::Command::new("tansu")
            .args(["topic", "create", "sekisho-events", "--partitions", "3"])
            .args(["--broker", &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(t)
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(feature = "kafka")]
impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every record of the topic's three partitions as (partition, key, event id), read from the
/// beginning until `want` distinct ids are seen or 20 s pass.
#[cfg(feature = "kafka")]
fn consume(port: u16, want: usize) -> Vec<(i32, Option<String>, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("group.id", "sekisho-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("sekisho-events", p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ids.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            let id = event_ids(&[payload]).into_iter().next().unwrap_or_default();
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            ids.insert(id.clone());
            got.push((m.partition(), key, id));
        }
    }
    got
}

/// The Kafka sink's success path against a real broker, and a broker killed and started again:
/// records are keyed by facility (one facility, one partition), everything produced before the
/// kill was acknowledged and is in the topic, what was produced while it was down stayed in
/// the spool and arrives after the restart. Nothing is lost.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_broker_gets_every_event_across_a_restart() {
    let port = free_addr().port();
    let Some(broker) = Tansu::start(port) else {
        return;
    };
    let d = tmp("kafka-broker");
    let cfg = config(&format!(
        "spool_dir = \"{}\"\ntimeout_secs = 2\nbackoff_min_ms = 50\nbackoff_max_ms = 500\n\
         [[sink]]\nname = \"bus\"\nkind = \"kafka\"\naddr = \"127.0.0.1:{port}\"\ntopic = \"sekisho-events\"\nlogs = [\"threat\"]\n",
        d.join("spool").display()
    ));
    let metrics = MssMetrics::unregistered().unwrap();
    let (mss, tasks) = Mss::start(&cfg, observer(), metrics.clone()).unwrap();
    let keyed = |i: usize| {
        let mut e = event(i);
        e["facility"] = json!({"id": format!("F-{}", i % 4)});
        e
    };
    for i in 0..30 {
        mss.threat_value(keyed(i)).await;
    }
    wait_until("30 records acknowledged by the broker", || {
        metrics.acked.with_label_values(&["bus"]).get() >= 30
    })
    .await;
    let first = consume(port, 30);
    let ids: std::collections::HashSet<&str> = first.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(ids.len(), 30, "{first:?}");
    // One facility, one partition; the key is the facility.
    let mut partition_of = std::collections::HashMap::new();
    for (p, key, id) in &first {
        let n: usize = id.trim_start_matches("ev-").parse().unwrap();
        assert_eq!(key.as_deref(), Some(format!("F-{}", n % 4).as_str()));
        assert_eq!(
            *partition_of.entry(key.clone()).or_insert(*p),
            *p,
            "{key:?}"
        );
    }

    // Broker killed: what comes now waits in the spool, retried.
    broker.kill();
    for i in 30..60 {
        mss.threat_value(keyed(i)).await;
    }
    wait_until("retries while the broker is down", || {
        metrics.retried.with_label_values(&["bus"]).get() >= 1
    })
    .await;
    assert!(metrics.acked.with_label_values(&["bus"]).get() < 60);
    // Started again (its memory storage starts empty): the spool delivers the rest.
    let _broker = Tansu::start(port).unwrap();
    wait_until("all 60 acknowledged after the restart", || {
        metrics.acked.with_label_values(&["bus"]).get() >= 60
    })
    .await;
    let second = consume(port, 30);
    let mut all: std::collections::HashSet<String> = first.into_iter().map(|r| r.2).collect();
    all.extend(second.into_iter().map(|r| r.2));
    let missing: Vec<usize> = (0..60)
        .filter(|i| !all.contains(&format!("ev-{i}")))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    drop(mss);
    tasks.finish().await;
    let _ = std::fs::remove_dir_all(&d);
}
