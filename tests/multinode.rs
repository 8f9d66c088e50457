//! Three gateway nodes behind a splitter (issue 25): each node in a network namespace of its own
//! (ip netns + veth, made and removed by the test), a TCP splitter on loopback spreading client
//! connections by a hash of the client's address and port, as ECMP does, and moving them to the
//! next node when one stops answering. One node is killed (SIGKILL) under load: every request
//! still gets its answer (clients retry what was cut), and every request blocked on any node,
//! the killed one included, has its threat event in that node's log.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NODES: usize = 3;

/// `ip ARGS`, asserted.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One node's namespace and veth pair (10.213.K.1 on the host, 10.213.K.2 inside); removed on
/// drop with the namespace.
struct Netns {
    name: String,
}

impl Netns {
    fn new(k: usize) -> Netns {
        let id = std::process::id() % 100_000;
        let name = format!("skmn{id}n{k}");
        let (host, peer) = (format!("skh{id}{k}"), format!("skp{id}{k}"));
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ip(&["addr", "add", &format!("10.213.{k}.1/24"), "dev", &host]);
        ip(&["link", "set", &host, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns.name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("10.213.{k}.2/24"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "default", "via", &format!("10.213.{k}.1")]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A gateway node: `sekisho run` inside its namespace.
struct Node {
    child: Child,
    dir: std::path::PathBuf,
    addr: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(k: usize, ns: &Netns, root: &std::path::Path, origin: SocketAddr) -> Node {
    let dir = root.join(format!("node-{k}"));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = root.join("mn.rules");
    let addr: SocketAddr = format!("10.213.{k}.2:3128").parse().unwrap();
    let cfg = format!(
        "node_name = \"node-{k}\"\n\
         [[listener]]\nkind = \"forward\"\naddr = \"{addr}\"\nallow_clients = [\"10.213.0.0/16\"]\n\
         [tls]\nca_cert = \"{r}/ca/ca.crt\"\nca_key = \"{r}/ca/ca.key\"\nsystem_roots = false\nwebpki_roots = false\n\
         [events]\nfile = \"{d}/events.jsonl\"\ncomm_log = \"{d}/flows.jsonl\"\n\
         [limits]\ndrain_timeout_secs = 5\n\
         [policy]\nallow_networks = [\"{o}/32\"]\nconnect_ports = [\"1-65535\"]\n\
         [ips]\nrules = [\"{rules}\"]\n",
        r = root.display(),
        d = dir.display(),
        o = origin.ip(),
        rules = rules.display(),
    );
    let path = dir.join("sekisho.toml");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, bin(), "run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    Node { child, dir, addr }
}

/// Waits (bounded) until `addr` accepts connections.
async fn wait_listening(addr: SocketAddr, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "node {addr} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The splitter: a client connection goes to the node its address and port hash to; when that
/// node refuses, to the next (and that node is skipped from then on), as a balancer's health
/// check would. Counts refused connects per node.
struct Splitter {
    addr: SocketAddr,
    refused: Arc<Vec<AtomicUsize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Splitter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn splitter(nodes: Vec<SocketAddr>) -> Splitter {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let refused: Arc<Vec<AtomicUsize>> =
        Arc::new((0..nodes.len()).map(|_| AtomicUsize::new(0)).collect());
    let down = Arc::new(Mutex::new(vec![false; nodes.len()]));
    let counts = Arc::clone(&refused);
    let task = tokio::spawn(async move {
        while let Ok((client, peer)) = l.accept().await {
            let (nodes, down, counts) = (nodes.clone(), Arc::clone(&down), Arc::clone(&counts));
            tokio::spawn(async move {
                let first = (peer.port() as usize * 31 + 7) % nodes.len();
                for step in 0..nodes.len() {
                    let i = (first + step) % nodes.len();
                    if down.lock().unwrap()[i] {
                        continue;
                    }
                    let connect = TcpStream::connect(nodes[i]);
                    match tokio::time::timeout(Duration::from_secs(2), connect).await {
                        Ok(Ok(up)) => {
                            let (mut c, mut u) = (client, up);
                            let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                            return;
                        }
                        _ => {
                            counts[i].fetch_add(1, Ordering::Relaxed);
                            down.lock().unwrap()[i] = true;
                        }
                    }
                }
            });
        }
    });
    Splitter {
        addr,
        refused,
        task,
    }
}

/// The origin, on the host side of node 1's veth: every node reaches it.
async fn origin() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("10.213.1.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                    )
                    .await;
            });
        }
    });
    (addr, task)
}

/// One request through the splitter on a new connection: the status, or None when the
/// connection was cut before a whole answer came.
async fn request(splitter: SocketAddr, url: &str) -> Option<u16> {
    let mut s = TcpStream::connect(splitter).await.ok()?;
    let head = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.ok()?;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&got);
    let status: u16 = text.split_whitespace().nth(1)?.parse().ok()?;
    let complete = match status {
        200 => text.ends_with("hello"),
        _ => text.contains("\r\n\r\n"),
    };
    complete.then_some(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_answer_and_no_event() {
    let root = TempDir::new("multinode");
    let out = Command::new(bin())
        .args(["ca", "init", "--out"])
        .arg(root.path().join("ca"))
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(
        root.path().join("mn.rules"),
        "drop http any any -> any any (msg:\"multinode probe\"; http.uri; content:\"/blocked\"; sid:9900101;)\n",
    )
    .unwrap();
    let nets: Vec<Netns> = (1..=NODES).map(Netns::new).collect();
    let (origin, _origin_task) = origin().await;
    let mut nodes: Vec<Node> = nets
        .iter()
        .enumerate()
        .map(|(i, ns)| start_node(i + 1, ns, root.path(), origin))
        .collect();
    for n in &nodes {
        wait_listening(n.addr, &n.dir.join("stderr.log")).await;
    }
    let split = splitter(nodes.iter().map(|n| n.addr).collect()).await;
    // Four clients, each sending requests one after another (every third one blocked) until
    // told to stop, retrying a request that was cut.
    let retries = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (split, retries, stop) = (split.addr, Arc::clone(&retries), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                let blocked = i % 3 == 0;
                let path = if blocked { "blocked" } else { "ok" };
                let url = format!("http://{origin}/{path}?id=c{c}r{i}");
                let mut status = None;
                for attempt in 0..5 {
                    status = request(split, &url).await;
                    if status.is_some() {
                        break;
                    }
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
                }
                answers.push((url, blocked, status));
                i += 1;
            }
            answers
        }));
    }
    // Node 2 dies once the load is under way; the load goes on a while on the two left.
    tokio::time::sleep(Duration::from_millis(700)).await;
    nodes[1].child.kill().unwrap();
    let _ = nodes[1].child.wait();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for c in clients {
        answers.extend(c.await.unwrap());
    }
    // The survivors drain and flush on SIGTERM.
    for n in [&nodes[0], &nodes[2]] {
        Command::new("kill")
            .args(["-TERM", &n.child.id().to_string()])
            .status()
            .unwrap();
    }
    for n in [0, 2] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while nodes[n].child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "node {} did not stop", n + 1);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for (url, blocked, status) in &answers {
        let want = if *blocked { 403 } else { 200 };
        assert_eq!(*status, Some(want), "{url}");
    }
    assert!(
        split.refused[1].load(Ordering::Relaxed) > 0,
        "the splitter never met the killed node"
    );
    // Every blocked request's event is in the log of the node that answered it.
    let mut logged = std::collections::HashMap::new();
    for (k, n) in nodes.iter().enumerate() {
        let text = std::fs::read_to_string(n.dir.join("events.jsonl")).unwrap_or_default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(u) = v["http"]["url"].as_str() {
                logged.insert(u.to_string(), k + 1);
            }
        }
        schema::check_file(&n.dir.join("events.jsonl"));
    }
    let missing: Vec<&String> = answers
        .iter()
        .filter(|(u, b, _)| *b && !logged.contains_key(u))
        .map(|(u, _, _)| u)
        .collect();
    assert!(
        missing.is_empty(),
        "{} blocked requests without an event: {missing:?}",
        missing.len()
    );
    let per_node: Vec<usize> = (1..=NODES)
        .map(|k| logged.values().filter(|n| **n == k).count())
        .collect();
    assert!(
        per_node.iter().all(|n| *n > 0),
        "events per node {per_node:?}"
    );
    eprintln!(
        "{} requests, {} retried after the kill, events per node {per_node:?}",
        answers.len(),
        retries.load(Ordering::Relaxed)
    );
}

/// The continue link of a warning page.
fn continue_link(page: &str) -> String {
    page.split("href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .replace("&amp;", "&")
}

/// The status curl saw through `gw`.
async fn status_via(gw: &Gateway, url: &str) -> String {
    curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        &gw.proxy_url(),
        url,
    ])
    .await
    .stdout
}

/// Three nodes sharing one Redis (`[store]`): a warning page shown by one node is continued on
/// another and the grant holds on the third; the token is spent once across the cluster; an IPS
/// bit set by a request on one node makes a rule match on another; a threshold counts the hits
/// of every node. Then Redis dies: each node goes on with its own tables (the warning flow
/// still works on one node) and counts the bus messages it could not send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_state_is_seen_by_every_node() {
    let Some(redis) = common::redis::Redis::start("shared_state_is_seen_by_every_node") else {
        return;
    };
    let origin = Origin::start(None).await;
    let rules_dir = TempDir::new("cluster-rules");
    let rules = rules_dir.path().join("cluster.rules");
    std::fs::write(
        &rules,
        "alert http any any -> any any (msg:\"mark\"; http.uri; content:\"mark\"; xbits:set,marked,track ip_dst,expire 60; xbits:noalert; sid:9900201;)\n\
         drop http any any -> any any (msg:\"marked destination\"; http.uri; content:\"after\"; xbits:isset,marked,track ip_dst; sid:9900202;)\n\
         alert http any any -> any any (msg:\"limited\"; http.uri; content:\"limited\"; threshold:type limit, track by_dst, count 1, seconds 60; sid:9900203;)\n",
    )
    .unwrap();
    let list = rules_dir.path().join("warn.list");
    std::fs::write(&list, "127.0.0.1\nlocalhost\n").unwrap();
    let extra = format!(
        "[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{port}/\"\nprefix = \"cluster{pid}:\"\ntimeout_ms = 200\n\
         [ips]\nrules = [{rules:?}]\n\
         [urlfilter]\ncategory_dirs = []\nwarn_ttl_secs = 600\n\
         [[urlfilter.list]]\nname = \"warned\"\npath = {list:?}\n\
         [[urlfilter.policy]]\nname = \"office\"\ndefault = \"allow\"\nwarn = [\"warned\"]\n",
        port = redis.port,
        pid = std::process::id(),
        rules = rules.display().to_string(),
        list = list.display().to_string(),
    );
    let nodes: Vec<Gateway> = (1..=3)
        .map(|k| Gateway::start(&format!("cluster-{k}"), "", &extra))
        .collect();
    // Each node connects to Redis in the background: wait until every one answers from it.
    for n in &nodes {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let m = n.metrics_text().await;
            if metric(&m, "sekisho_store_up") >= 1.0 && metric(&m, "sekisho_store_bus_up") >= 1.0 {
                break;
            }
            assert!(Instant::now() < deadline, "a node never reached Redis");
            // Any request that consults the store makes the first connection.
            let _ = status_via(n, &format!("http://127.0.0.1:{}/probe", origin.port)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // 1. Warned on node 1, continued on node 2, acknowledged on node 3.
    let target = format!("http://127.0.0.1:{}/hello?page", origin.port);
    let r = curl(&["-i", "-x", &nodes[0].proxy_url(), &target]).await;
    assert!(r.stdout.starts_with("HTTP/1.1 403"), "{}", r.stdout);
    let link = continue_link(&r.stdout);
    // The token reaches node 2 on the bus (a round trip; a person clicks seconds later).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = curl(&["-i", "-x", &nodes[1].proxy_url(), &link]).await;
    assert!(
        r.stdout.starts_with("HTTP/1.1 303"),
        "continued on another node: {}",
        r.stdout
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_via(&nodes[2], &target).await,
        "200",
        "the grant holds on node 3"
    );
    // The token was spent on node 2: node 1, which issued it, refuses it too.
    let r = curl(&["-i", "-x", &nodes[0].proxy_url(), &link]).await;
    assert!(
        r.stdout.starts_with("HTTP/1.1 403"),
        "a spent token: {}",
        r.stdout
    );

    // 2. An xbit set on node 1 is seen by a rule on node 2 (within the bus's round trip).
    let after = format!("http://127.0.0.1:{}/hello?after", origin.port);
    assert_eq!(status_via(&nodes[1], &after).await, "200", "not marked yet");
    let mark = format!("http://127.0.0.1:{}/hello?mark", origin.port);
    assert_eq!(status_via(&nodes[0], &mark).await, "200");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = status_via(&nodes[1], &after).await;
        if s == "403" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 never saw node 1's bit: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status_via(&nodes[2], &after).await,
        "403",
        "node 3 sees it too"
    );

    // 3. `threshold: type limit, count 1` alerts once for the whole cluster.
    let limited = format!("http://127.0.0.1:{}/hello?limited", origin.port);
    for n in &nodes {
        assert_eq!(status_via(n, &limited).await, "200");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    nodes[0].wait_line("events.jsonl", |e| e["alert"]["signature_id"] == 9900203);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts: usize = nodes
        .iter()
        .map(|n| {
            n.events()
                .iter()
                .filter(|e| e["alert"]["signature_id"] == 9900203)
                .count()
        })
        .sum();
    assert_eq!(alerts, 1, "one alert across three nodes");

    // 4. Redis gone: each node goes on with its own tables, and counts what it could not send.
    drop(redis);
    // (Another host: node 3 remembers the grant for 127.0.0.1 a few seconds.)
    let target2 = format!("http://localhost:{}/hello?second", origin.port);
    let r = curl(&["-i", "-x", &nodes[2].proxy_url(), &target2]).await;
    assert!(r.stdout.starts_with("HTTP/1.1 403"), "{}", r.stdout);
    let link = continue_link(&r.stdout);
    let r = curl(&["-i", "-x", &nodes[2].proxy_url(), &link]).await;
    assert!(
        r.stdout.starts_with("HTTP/1.1 303"),
        "fallback continue: {}",
        r.stdout
    );
    assert_eq!(status_via(&nodes[2], &target2).await, "200");
    let m = nodes[2].metrics_text().await;
    assert!(
        metric(
            &m,
            "sekisho_store_bus_messages_total{direction=\"dropped\"}"
        ) >= 1.0,
        "the token and grant it could not publish are counted:\n{}",
        m.lines()
            .filter(|l| l.contains("store"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(metric(&m, "sekisho_store_up"), 0.0);
}
