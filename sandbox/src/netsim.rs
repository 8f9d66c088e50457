//! The sandbox's make-believe network, served inside the sandbox's network namespace by its
//! first process: every IPv4 and IPv6 address is routed to loopback, a resolver on
//! 127.0.0.1:53 answers each name with an address of its own in 198.18.0.0/15 (RFC 2544's
//! benchmarking range, on no real network), and a sinkhole listens on the ports malware
//! reaches for: it accepts, greets where the protocol has the server speak first, records
//! what the client sends first (an HTTP request line and Host, a TLS hello, the first bytes)
//! and answers HTTP with a harmless script, so a downloader goes on to its next step and the
//! trace shows it. Nothing leaves the namespace.
//!
//! Each resolver query and connection is one [`NetRecord`], written on the first process's
//! standard error as a line `sekisho-net {json}`: the sample cannot write there.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::confine::LandlockLevel;

/// What starts a record line.
pub const PREFIX: &str = "sekisho-net ";
/// Ports the sinkhole accepts on (any address): web, mail, file transfer, remote shells,
/// proxies, IRC and the ports reverse shells favour.
pub const PORTS: &[u16] = &[
    21, 22, 23, 25, 80, 110, 143, 443, 465, 587, 993, 995, 1080, 1337, 3128, 4444, 5555, 6666,
    6667, 8000, 8080, 8443, 8888, 9001, 31337,
];
/// Most names given their own address (later ones share the last address).
const MAX_NAMES: u32 = 16_384;
/// Most records written (later ones are counted in the last): of resolver queries (each name
/// and type once), of connections, of anything else; one kind cannot crowd out another.
pub const MAX_RECORDS: usize = 2_000;
/// Of [`MAX_RECORDS`], the most resolver queries and the most connections.
const MAX_DNS: usize = 800;
const MAX_CONNECTION_RECORDS: usize = 1_000;
/// Longest request line kept from an HTTP client.
const MAX_REQUEST: usize = 512;
/// Most connections served at once (others are closed on accept).
pub const MAX_CONNECTIONS: usize = 64;
/// Bytes read from a client at most, and how long the sinkhole waits for them.
const FIRST_BYTES: usize = 4096;
const READ_WAIT: Duration = Duration::from_secs(2);
/// What the sinkhole's web server answers every request with.
const HTTP_BODY: &[u8] = b"#!/bin/sh\n# sekisho sandbox sinkhole\nexit 0\n";

/// One thing the sandbox's first process saw or did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NetRecord {
    /// The sandbox's first process confined itself and the sample it runs.
    Confined {
        /// How far Landlock went.
        landlock: LandlockLevel,
    },
    /// Confinement failed: the sample was not run.
    Failed {
        /// Why.
        reason: String,
    },
    /// How the network was set up.
    Network {
        /// Every address routed to the sinkhole (else only names the resolver answered).
        any_address: bool,
    },
    /// A resolver query.
    Dns {
        /// The name asked for.
        name: String,
        /// The record type (`A`, `AAAA`, `TXT`, …).
        qtype: String,
        /// The address answered (A queries).
        #[serde(skip_serializing_if = "Option::is_none")]
        answer: Option<Ipv4Addr>,
    },
    /// A connection the sinkhole accepted.
    Connection {
        /// The address and port the sample connected to.
        dst: SocketAddr,
        /// The name the resolver gave that address for.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// `http`, `tls`, `data` or `none` (nothing sent).
        protocol: String,
        /// For HTTP: method and URL (`GET http://host/path`).
        #[serde(skip_serializing_if = "Option::is_none")]
        request: Option<String>,
        /// The first bytes sent (printable ASCII kept, the rest `\xNN`), clipped.
        first_bytes: String,
    },
    /// Records past [`MAX_RECORDS`] were not written.
    Truncated {
        /// How many so far.
        dropped: u64,
    },
    /// Connections the sinkhole closed unserved (more than it serves at once).
    Busy {
        /// How many so far.
        refused: u64,
    },
}

impl NetRecord {
    /// The line that carries it.
    pub fn line(&self) -> String {
        format!(
            "{PREFIX}{}",
            serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
        )
    }

    /// A record from its line (`None` for other lines or bad JSON).
    pub fn parse(line: &str) -> Option<NetRecord> {
        serde_json::from_str(line.strip_prefix(PREFIX)?).ok()
    }
}

/// Writes records (bounded per kind) on standard error.
#[derive(Debug, Default)]
pub struct Recorder {
    written: usize,
    dns: usize,
    connections: usize,
    asked: std::collections::HashSet<(String, String)>,
    dropped: u64,
    busy: u64,
}

impl Recorder {
    /// Writes one record, or counts it past its kind's bound; a resolver query for a name and
    /// type already written is not written again.
    pub fn write(&mut self, r: &NetRecord) {
        let room = match r {
            NetRecord::Dns { name, qtype, .. } => {
                if self.asked.contains(&(name.clone(), qtype.clone())) {
                    return;
                }
                let room = self.dns < MAX_DNS;
                if room {
                    self.dns += 1;
                    self.asked.insert((name.clone(), qtype.clone()));
                }
                room
            }
            NetRecord::Connection { .. } => {
                let room = self.connections < MAX_CONNECTION_RECORDS;
                self.connections += usize::from(room);
                room
            }
            _ => true,
        };
        if room && self.written < MAX_RECORDS {
            self.written += 1;
            eprintln!("{}", r.line());
        } else {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                eprintln!(
                    "{}",
                    NetRecord::Truncated {
                        dropped: self.dropped
                    }
                    .line()
                );
            }
        }
    }

    /// Counts a connection closed unserved (written at powers of two).
    pub fn busy(&mut self) {
        self.busy += 1;
        if self.busy.is_power_of_two() {
            eprintln!("{}", NetRecord::Busy { refused: self.busy }.line());
        }
    }
}

/// The names the resolver answered, and the address each got.
#[derive(Debug, Default)]
pub struct Names {
    by_name: HashMap<String, Ipv4Addr>,
    by_addr: HashMap<Ipv4Addr, String>,
}

impl Names {
    /// The address of `name` (a new one for a name not seen before).
    pub fn address(&mut self, name: &str) -> Ipv4Addr {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(a) = self.by_name.get(&name) {
            return *a;
        }
        let n = (self.by_name.len() as u32 + 1).min(MAX_NAMES);
        let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + n);
        if self.by_name.len() < MAX_NAMES as usize {
            self.by_name.insert(name.clone(), a);
            self.by_addr.entry(a).or_insert(name);
        }
        a
    }

    /// The name an address was given for.
    pub fn name(&self, a: &SocketAddr) -> Option<String> {
        match a.ip().to_canonical() {
            std::net::IpAddr::V4(v4) => self.by_addr.get(&v4).cloned(),
            std::net::IpAddr::V6(_) => None,
        }
    }
}

/// The answer to one resolver query, and what to record of it.
pub fn answer(query: &[u8], names: &mut Names) -> Option<(Vec<u8>, Vec<NetRecord>)> {
    use simple_dns::rdata::{RData, A};
    use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, TYPE};
    let q = Packet::parse(query).ok()?;
    let mut reply = Packet::new_reply(q.id());
    reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
    if q.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    let mut seen = Vec::new();
    for question in q.questions.iter().take(4) {
        let name = question.qname.to_string();
        let qtype = match question.qtype {
            QTYPE::TYPE(t) => format!("{t:?}"),
            other => format!("{other:?}"),
        };
        let wants_a = matches!(question.qtype, QTYPE::TYPE(TYPE::A) | QTYPE::ANY);
        let address = wants_a.then(|| names.address(&name));
        reply.questions.push(question.clone());
        if let Some(a) = address {
            reply.answers.push(ResourceRecord::new(
                question.qname.clone(),
                CLASS::IN,
                60,
                RData::A(A::from(a)),
            ));
        }
        seen.push(NetRecord::Dns {
            name: name.trim_end_matches('.').to_string(),
            qtype,
            answer: address,
        });
    }
    Some((reply.build_bytes_vec().ok()?, seen))
}

/// What a client sent first, as a record.
pub fn describe(dst: SocketAddr, name: Option<String>, first: &[u8]) -> NetRecord {
    let (protocol, request) = if first.is_empty() {
        ("none", None)
    } else if let Some(r) = http_request(first) {
        ("http", Some(r))
    } else if first.len() > 2 && first[0] == 0x16 && first[1] == 0x03 {
        ("tls", None)
    } else {
        ("data", None)
    };
    NetRecord::Connection {
        dst,
        name,
        protocol: protocol.into(),
        request,
        first_bytes: escape(&first[..first.len().min(256)]),
    }
}

/// `METHOD http://host/target` from an HTTP/1 request head.
fn http_request(b: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(&b[..b.len().min(FIRST_BYTES)]).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/") || method.is_empty() {
        return None;
    }
    if !method.bytes().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let clipped = |s: String| match s.char_indices().nth(MAX_REQUEST) {
        Some((i, _)) => s[..i].to_string(),
        None => s,
    };
    if target.starts_with("http://") || target.starts_with("https://") {
        return Some(clipped(format!("{method} {target}")));
    }
    let host = lines
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("host").then(|| v.trim())
        })
        .unwrap_or("");
    Some(clipped(format!("{method} http://{host}{target}")))
}

/// Printable ASCII kept, other bytes `\xNN`.
fn escape(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        if (0x20..0x7f).contains(&c) && c != b'\\' {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

/// What the server says first on ports where it speaks first.
fn greeting(port: u16) -> Option<&'static [u8]> {
    Some(match port {
        21 => b"220 FTP server ready\r\n",
        22 => b"SSH-2.0-OpenSSH_9.2p1\r\n",
        25 | 465 | 587 => b"220 mail.example ESMTP\r\n",
        110 | 995 => b"+OK POP3 ready\r\n",
        143 | 993 => b"* OK IMAP4rev1 ready\r\n",
        _ => return None,
    })
}

/// The sockets, bound while the first process still may.
pub struct Sockets {
    dns: std::net::UdpSocket,
    tcp: Vec<std::net::TcpListener>,
}

/// Binds the resolver (127.0.0.1:53) and the sinkhole's ports (`[::]`, both families); a
/// port that cannot be bound is left out.
pub fn bind() -> std::io::Result<Sockets> {
    let dns = std::net::UdpSocket::bind("127.0.0.1:53")?;
    dns.set_nonblocking(true)?;
    let mut tcp = Vec::new();
    for &p in PORTS {
        if let Ok(l) = std::net::TcpListener::bind(("::", p)) {
            l.set_nonblocking(true)?;
            tcp.push(l);
        }
    }
    Ok(Sockets { dns, tcp })
}

type Shared<T> = Arc<Mutex<T>>;

/// Serves the resolver and the sinkhole until the future is dropped; a connection holds one
/// of `slots` (of [`MAX_CONNECTIONS`]) while it is served.
pub async fn serve(sockets: Sockets, rec: Shared<Recorder>, slots: Arc<tokio::sync::Semaphore>) {
    let names: Shared<Names> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    if let Ok(dns) = tokio::net::UdpSocket::from_std(sockets.dns) {
        tasks.spawn(resolver(dns, names.clone(), rec.clone()));
    }
    for l in sockets.tcp {
        if let Ok(l) = tokio::net::TcpListener::from_std(l) {
            tasks.spawn(sinkhole(l, names.clone(), rec.clone(), slots.clone()));
        }
    }
    while tasks.join_next().await.is_some() {}
}

async fn resolver(sock: tokio::net::UdpSocket, names: Shared<Names>, rec: Shared<Recorder>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let answered = answer(
            &buf[..n],
            &mut names.lock().unwrap_or_else(|p| p.into_inner()),
        );
        let Some((reply, seen)) = answered else {
            continue;
        };
        {
            let mut r = rec.lock().unwrap_or_else(|p| p.into_inner());
            seen.iter().for_each(|s| r.write(s));
        }
        let _ = sock.send_to(&reply, from).await;
    }
}

async fn sinkhole(
    l: tokio::net::TcpListener,
    names: Shared<Names>,
    rec: Shared<Recorder>,
    slots: Arc<tokio::sync::Semaphore>,
) {
    loop {
        let Ok((conn, _)) = l.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            rec.lock().unwrap_or_else(|p| p.into_inner()).busy();
            continue;
        };
        let (names, rec) = (names.clone(), rec.clone());
        tokio::spawn(async move {
            serve_one(conn, &names, &rec).await;
            drop(permit);
        });
    }
}

/// Greets, reads what the client sends first, records it, answers HTTP.
async fn serve_one(mut conn: tokio::net::TcpStream, names: &Shared<Names>, rec: &Shared<Recorder>) {
    let Ok(dst) = conn.local_addr() else { return };
    let dst = SocketAddr::new(dst.ip().to_canonical(), dst.port());
    if let Some(g) = greeting(dst.port()) {
        let _ = conn.write_all(g).await;
    }
    let mut first = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    while first.len() < FIRST_BYTES && !first.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => first.extend_from_slice(&buf[..n.min(FIRST_BYTES - first.len())]),
            _ => break,
        }
    }
    let name = names.lock().unwrap_or_else(|p| p.into_inner()).name(&dst);
    let record = describe(dst, name, &first);
    if matches!(&record, NetRecord::Connection { protocol, .. } if protocol == "http") {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            HTTP_BODY.len()
        );
        let _ = conn.write_all(head.as_bytes()).await;
        let _ = conn.write_all(HTTP_BODY).await;
    }
    rec.lock().unwrap_or_else(|p| p.into_inner()).write(&record);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_gets_its_own_address_and_a_queries_are_answered() {
        let mut names = Names::default();
        let mut q = simple_dns::Packet::new_query(7);
        q.set_flags(simple_dns::PacketFlag::RECURSION_DESIRED);
        q.questions.push(simple_dns::Question::new(
            simple_dns::Name::new_unchecked("c2.example.test"),
            simple_dns::TYPE::A.into(),
            simple_dns::CLASS::IN.into(),
            false,
        ));
        let bytes = q.build_bytes_vec().unwrap();
        let (reply, seen) = answer(&bytes, &mut names).unwrap();
        let r = simple_dns::Packet::parse(&reply).unwrap();
        assert_eq!(r.id(), 7);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(
            seen,
            vec![NetRecord::Dns {
                name: "c2.example.test".into(),
                qtype: "A".into(),
                answer: Some(Ipv4Addr::new(198, 18, 0, 1)),
            }]
        );
        assert_eq!(names.address("other.test"), Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(
            names.address("C2.example.test."),
            Ipv4Addr::new(198, 18, 0, 1)
        );
        let dst: SocketAddr = "198.18.0.1:80".parse().unwrap();
        assert_eq!(names.name(&dst).as_deref(), Some("c2.example.test"));
        assert!(answer(b"\x00\x01garbage", &mut names).is_none());
    }

    #[test]
    fn one_kind_of_record_cannot_crowd_out_another() {
        let mut r = Recorder::default();
        let dns = |name: String| NetRecord::Dns {
            name,
            qtype: "A".into(),
            answer: None,
        };
        for _ in 0..1000 {
            r.write(&dns("same.test".into()));
        }
        assert_eq!(r.dns, 1, "each name and type once");
        for i in 0..3000 {
            r.write(&dns(format!("n{i}.test")));
        }
        assert_eq!(r.dns, MAX_DNS);
        let dst: SocketAddr = "198.18.0.1:80".parse().unwrap();
        r.write(&describe(
            dst,
            None,
            b"GET /c2 HTTP/1.1\r\nHost: c2\r\n\r\n",
        ));
        assert_eq!(r.connections, 1, "connections still recorded");
        assert_eq!(r.written, MAX_DNS + 1);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3000));
        let NetRecord::Connection { request, .. } = describe(dst, None, long.as_bytes()) else {
            panic!()
        };
        assert_eq!(request.unwrap().chars().count(), MAX_REQUEST);
    }

    #[test]
    fn first_bytes_are_described() {
        let dst: SocketAddr = "198.18.0.1:80".parse().unwrap();
        let r = describe(dst, None, b"GET /x.sh HTTP/1.1\r\nHost: c2.test\r\n\r\n");
        let NetRecord::Connection {
            protocol, request, ..
        } = r
        else {
            panic!()
        };
        assert_eq!(protocol, "http");
        assert_eq!(request.as_deref(), Some("GET http://c2.test/x.sh"));
        let r = describe(dst, None, b"\x16\x03\x01\x00\x05hello");
        assert!(matches!(r, NetRecord::Connection { ref protocol, .. } if protocol == "tls"));
        let NetRecord::Connection { first_bytes, .. } = describe(dst, None, b"a\\\x00") else {
            panic!()
        };
        assert_eq!(first_bytes, "a\\x5c\\x00");
        let line = NetRecord::Dns {
            name: "a".into(),
            qtype: "A".into(),
            answer: None,
        }
        .line();
        assert!(NetRecord::parse(&line).is_some());
        assert!(NetRecord::parse("strace: nope").is_none());
    }
}
