//! One ICAP server: OPTIONS learned and refreshed by their TTL, a bounded pool of kept-alive
//! connections, and the preview exchange of RFC 3507 §4.5.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::wire::{self, Head, Message, Offer};
use super::{Answer, IcapConfig, IcapError, IcapMethod, IcapTarget};

/// A connection in halves, so an answer can be read while the body is still being sent.
struct Conn {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

/// Idle connections older than this are closed rather than reused.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// OPTIONS are asked again after this long when the server names no `Options-TTL`.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Body bytes per chunk sent.
const CHUNK: usize = 64 * 1024;
/// How much longer than the original an adapted body may be before reading stops.
const ADAPTED_SLACK: usize = 1 << 20;

/// What OPTIONS told.
#[derive(Clone, Debug)]
struct ServerOptions {
    methods: Vec<String>,
    preview: Option<usize>,
    allow_204: bool,
    max_connections: Option<usize>,
    fetched: Instant,
    ttl: Duration,
    transfer: Transfer,
}

/// How a file is sent (RFC 3507 §4.10.2 `Transfer-Preview`, `Transfer-Ignore`,
/// `Transfer-Complete`, by file extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sending {
    /// With a preview (when one is offered): the default.
    Preview,
    /// Not at all: the server does not want this kind of file.
    Ignore,
    /// Whole, without a preview.
    Complete,
}

/// The three `Transfer-*` lists: extensions (lower case, without the dot), `*` meaning every
/// extension no list names.
#[derive(Clone, Debug, Default)]
struct Transfer {
    lists: Vec<(Sending, Vec<String>)>,
}

impl Transfer {
    fn from_head(h: &Head) -> Self {
        let list = |name: &str| -> Vec<String> {
            h.get(name)
                .map(|v| {
                    v.split(',')
                        .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                        .filter(|e| !e.is_empty())
                        .take(256)
                        .collect()
                })
                .unwrap_or_default()
        };
        Transfer {
            lists: vec![
                (Sending::Ignore, list("transfer-ignore")),
                (Sending::Complete, list("transfer-complete")),
                (Sending::Preview, list("transfer-preview")),
            ],
        }
    }

    /// How a file with extension `ext` is sent: the list naming it, else the list holding `*`,
    /// else with a preview.
    fn sending(&self, ext: Option<&str>) -> Sending {
        let named = ext.and_then(|e| {
            self.lists
                .iter()
                .find(|(_, l)| l.iter().any(|x| x == e))
                .map(|(k, _)| *k)
        });
        named
            .or_else(|| {
                self.lists
                    .iter()
                    .find(|(_, l)| l.iter().any(|x| x == "*"))
                    .map(|(k, _)| *k)
            })
            .unwrap_or(Sending::Preview)
    }
}

/// The file extension of the message's body: of its file name, else of the last segment of the
/// request path (lower case, without the dot).
fn extension(m: &Message<'_>) -> Option<String> {
    let name = match m.file_name {
        Some(n) => n,
        None => {
            let path = m.target.split(['?', '#']).next().unwrap_or("");
            path.rsplit('/').next().unwrap_or("")
        }
    };
    let (_, ext) = name.rsplit_once('.')?;
    (!ext.is_empty() && ext.len() <= 16).then(|| ext.to_ascii_lowercase())
}

impl ServerOptions {
    fn from_head(h: &Head) -> Self {
        let methods = h
            .get("methods")
            .map(|m| {
                m.split(',')
                    .map(|s| s.trim().to_ascii_uppercase())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let number = |name: &str| h.get(name).and_then(|p| p.trim().parse::<usize>().ok());
        let allow_204 = h
            .get("allow")
            .is_some_and(|a| a.split(',').any(|t| t.trim() == "204"));
        let ttl = number("options-ttl").map_or(DEFAULT_TTL, |s| {
            Duration::from_secs(s.clamp(10, 86_400) as u64)
        });
        ServerOptions {
            methods,
            preview: number("preview"),
            allow_204,
            max_connections: number("max-connections"),
            fetched: Instant::now(),
            ttl,
            transfer: Transfer::from_head(h),
        }
    }
}

/// A client of one `[[av.icap]]` server.
pub struct IcapClient {
    cfg: IcapConfig,
    target: IcapTarget,
    label: String,
    permits: Semaphore,
    /// Set once the server's `Max-Connections` has lowered the permits.
    lowered: AtomicBool,
    idle: Mutex<Vec<(Conn, Instant)>>,
    options: tokio::sync::Mutex<Option<ServerOptions>>,
}

impl IcapClient {
    /// A client for a validated configuration.
    pub fn new(cfg: IcapConfig) -> Result<Self, String> {
        cfg.validate()?;
        let target = cfg.target()?;
        Ok(IcapClient {
            label: cfg.label(),
            permits: Semaphore::new(cfg.max_connections as usize),
            lowered: AtomicBool::new(false),
            idle: Mutex::new(Vec::new()),
            options: tokio::sync::Mutex::new(None),
            target,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &IcapConfig {
        &self.cfg
    }

    /// The label for events and metrics.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Asks the server about `body`, within `limit` (the configured timeout when shorter).
    pub async fn ask(
        &self,
        m: &Message<'_>,
        body: &[u8],
        limit: Duration,
    ) -> Result<Answer, IcapError> {
        let limit = limit.min(self.cfg.timeout());
        match tokio::time::timeout(limit, self.ask_now(m, body)).await {
            Ok(r) => r,
            Err(_) => Err(IcapError::Timeout(limit)),
        }
    }

    async fn ask_now(&self, m: &Message<'_>, body: &[u8]) -> Result<Answer, IcapError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| IcapError::Protocol("client closed".into()))?;
        let opts = self.options().await?;
        let method = self.cfg.method.as_str();
        if !opts.methods.is_empty() && !opts.methods.iter().any(|x| x == method) {
            return Err(IcapError::Method(method, opts.methods.join(", ")));
        }
        let sending = opts.transfer.sending(extension(m).as_deref());
        if sending == Sending::Ignore {
            // The server said it does not want this kind of file (counted as `ignored`).
            return Ok(Answer::Ignored);
        }
        let offer = Offer {
            allow_204: self.cfg.allow_204 && opts.allow_204,
            preview: (self.cfg.preview > 0 && sending == Sending::Preview)
                .then_some(self.cfg.preview as usize)
                // A preview only to a server whose OPTIONS offer one, at most its size.
                .and_then(|p| opts.preview.map(|server| p.min(server)))
                .map(|p| p.min(body.len())),
        };
        // A kept-alive connection the server has closed meanwhile fails before any answer:
        // then every idle one is suspect, and the exchange runs again on a new connection.
        let (conn, reused) = self.connection(false).await?;
        let result = match self.exchange(conn, m, body, offer).await {
            Err(e) if reused && e.is_stale() => {
                self.drop_idle();
                let (conn, _) = self.connection(true).await?;
                self.exchange(conn, m, body, offer).await
            }
            other => other,
        };
        let (answer, conn) = result?;
        if let Some(c) = conn {
            self.keep(c);
        }
        Ok(answer)
    }

    /// The server's OPTIONS, asked when missing or past their TTL.
    async fn options(&self) -> Result<ServerOptions, IcapError> {
        let mut cached = self.options.lock().await;
        if let Some(o) = cached.as_ref().filter(|o| o.fetched.elapsed() < o.ttl) {
            return Ok(o.clone());
        }
        let (mut conn, reused) = self.connection(false).await?;
        let result = match self.ask_options(&mut conn).await {
            Err(e) if reused && e.is_stale() => {
                self.drop_idle();
                let (fresh, _) = self.connection(true).await?;
                conn = fresh;
                self.ask_options(&mut conn).await
            }
            other => other,
        };
        let (o, keep) = result?;
        if keep {
            self.keep(conn);
        }
        self.lower_permits(o.max_connections);
        *cached = Some(o.clone());
        Ok(o)
    }

    /// The server's `Max-Connections`, when lower than ours, lowers ours (once).
    fn lower_permits(&self, server: Option<usize>) {
        let ours = self.cfg.max_connections as usize;
        if let Some(max) = server.filter(|m| (1..ours).contains(m)) {
            if !self.lowered.swap(true, Ordering::Relaxed) {
                self.permits.forget_permits(ours - max);
            }
        }
    }

    async fn ask_options(&self, conn: &mut Conn) -> Result<(ServerOptions, bool), IcapError> {
        let req = wire::options_head(&self.target.uri, &self.target.authority);
        conn.wr.write_all(&req).await?;
        let head = wire::parse_head(&wire::read_head(&mut conn.rd, wire::MAX_HEAD).await?)?;
        if head.status != 200 {
            return Err(IcapError::Status(head.status, head.reason));
        }
        let enc = encapsulated(&head)?;
        skip_http_headers(conn, &enc).await?;
        let mut keep = !head.closes();
        if enc.has_body() {
            keep &= wire::read_chunked(&mut conn.rd, 0, wire::MAX_HEAD)
                .await?
                .is_some();
        }
        Ok((ServerOptions::from_head(&head), keep))
    }

    /// A pooled connection (`true`) unless `fresh`, or a new one.
    async fn connection(&self, fresh: bool) -> Result<(Conn, bool), IcapError> {
        if !fresh {
            let reused = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.retain(|(_, at)| at.elapsed() < IDLE_FOR);
                idle.pop()
            };
            if let Some((c, _)) = reused {
                return Ok((c, true));
            }
        }
        let addr = (self.target.host.as_str(), self.target.port);
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| IcapError::Connect(self.target.authority.clone(), e))?;
        s.set_nodelay(true)?;
        let (rd, wr) = s.into_split();
        Ok((
            Conn {
                rd: BufReader::new(rd),
                wr,
            },
            false,
        ))
    }

    fn drop_idle(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn keep(&self, conn: Conn) {
        // Bytes the server sent beyond its answer make the connection unusable.
        if !conn.rd.buffer().is_empty() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.cfg.max_connections as usize {
            idle.push((conn, Instant::now()));
        }
    }

    /// One REQMOD/RESPMOD: head, preview, the rest on `100 Continue`, the answer. The answer
    /// is read while the body is sent, so a server that answers early (an error, a verdict on
    /// part of the body) is heard rather than waited on. Gives the connection back when it can
    /// carry another exchange.
    async fn exchange(
        &self,
        mut conn: Conn,
        m: &Message<'_>,
        body: &[u8],
        offer: Offer,
    ) -> Result<(Answer, Option<Conn>), IcapError> {
        let method = self.cfg.method;
        let head = wire::modify_head(
            method,
            &self.target.uri,
            &self.target.authority,
            m,
            body.len(),
            offer,
        );
        let (raw, whole) = match offer.preview {
            Some(p) => {
                let mut start = head;
                if p > 0 {
                    start.extend(wire::chunk(&body[..p]));
                }
                start.extend_from_slice(wire::last_chunk(p == body.len()));
                conn.wr.write_all(&start).await?;
                let first = wire::read_head(&mut conn.rd, wire::MAX_HEAD).await?;
                if p < body.len() && wire::parse_head(&first)?.status == 100 {
                    send_and_read(&mut conn, &body[p..]).await?
                } else {
                    // Decided on the preview: the request ended with its zero chunk.
                    (first, true)
                }
            }
            None => {
                conn.wr.write_all(&head).await?;
                send_and_read(&mut conn, body).await?
            }
        };
        let mut head = wire::parse_head(&raw)?;
        if whole && head.status == 100 {
            // A stray 100 after the whole body: the answer follows it.
            head = wire::parse_head(&wire::read_head(&mut conn.rd, wire::MAX_HEAD).await?)?;
        }
        self.judge(conn, head, method, body, whole).await
    }

    async fn judge(
        &self,
        mut conn: Conn,
        head: Head,
        method: IcapMethod,
        body: &[u8],
        whole: bool,
    ) -> Result<(Answer, Option<Conn>), IcapError> {
        let enc = encapsulated(&head)?;
        let threat = wire::threat(&head);
        // A connection whose request was not sent whole, or whose answer is not read whole,
        // carries nothing more.
        let reusable = whole && !head.closes();
        match head.status {
            204 => {
                let bare = enc.headers.is_empty() && !enc.has_body();
                let answer = threat.map_or(Answer::Clean, Answer::Threat);
                Ok((answer, (reusable && bare).then_some(conn)))
            }
            200 => {
                let http = skip_http_headers(&mut conn, &enc).await?;
                let adapted = if enc.has_body() {
                    wire::read_chunked(&mut conn.rd, body.len() + 1, body.len() + ADAPTED_SLACK)
                        .await?
                } else {
                    Some((Vec::new(), 0))
                };
                let keep = reusable && adapted.is_some();
                let answer = decide(&head, &enc, &http, method, body, adapted.as_ref());
                Ok((answer, keep.then_some(conn)))
            }
            // Any other status naming a threat is that threat (some servers answer a detection
            // with 403); a bare 403 is a refusal; the rest are errors.
            _ if threat.is_some() => Ok((Answer::Threat(threat.unwrap_or_default()), None)),
            403 => Ok((
                Answer::Blocked(format!("ICAP status 403 {}", head.reason)),
                None,
            )),
            s => Err(IcapError::Status(s, head.reason)),
        }
    }
}

fn encapsulated(head: &Head) -> Result<wire::Encapsulated, IcapError> {
    match head.get("encapsulated") {
        Some(v) => wire::parse_encapsulated(v),
        None => Ok(wire::Encapsulated::default()),
    }
}

/// Reads the encapsulated HTTP headers (bounded) and returns them.
async fn skip_http_headers(
    conn: &mut Conn,
    enc: &wire::Encapsulated,
) -> Result<Vec<u8>, IcapError> {
    let hb = enc.header_bytes();
    if hb > wire::MAX_HTTP_HEAD {
        return Err(IcapError::Protocol(format!(
            "encapsulated headers of {hb} bytes"
        )));
    }
    let mut http = vec![0u8; hb];
    conn.rd.read_exact(&mut http).await?;
    Ok(http)
}

/// Sends `rest` as chunks while reading the answer's head; returns the head and whether the
/// body went out whole (a server may answer before reading it all).
async fn send_and_read(conn: &mut Conn, rest: &[u8]) -> Result<(Vec<u8>, bool), IcapError> {
    let Conn { rd, wr } = conn;
    let read = wire::read_head(rd, wire::MAX_HEAD);
    tokio::pin!(read);
    let write = send_rest(wr, rest);
    tokio::pin!(write);
    let mut sent = false;
    loop {
        tokio::select! {
            w = &mut write, if !sent => match w {
                Ok(()) => sent = true,
                // The server may have answered and closed: what it said counts.
                Err(e) => return match (&mut read).await {
                    Ok(raw) => Ok((raw, false)),
                    Err(_) => Err(e),
                },
            },
            h = &mut read => return Ok((h?, sent)),
        }
    }
}

async fn send_rest(w: &mut OwnedWriteHalf, rest: &[u8]) -> Result<(), IcapError> {
    for piece in rest.chunks(CHUNK) {
        w.write_all(&wire::chunk(piece)).await?;
    }
    w.write_all(wire::last_chunk(false)).await?;
    w.flush().await?;
    Ok(())
}

/// A `200`'s meaning: a named threat; a message the server replaced (a block page, another
/// status) or whose body it changed; or the original echoed back (clean).
fn decide(
    head: &Head,
    enc: &wire::Encapsulated,
    http: &[u8],
    method: IcapMethod,
    original: &[u8],
    adapted: Option<&(Vec<u8>, usize)>,
) -> Answer {
    if let Some(t) = wire::threat(head) {
        return Answer::Threat(t);
    }
    let section = |name: &str| {
        enc.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, at)| &http[(*at).min(http.len())..])
    };
    let status = section("res-hdr").map(|h| {
        let line = h.split(|&b| b == b'\n').next().unwrap_or(&[]);
        String::from_utf8_lossy(line)
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string()
    });
    match (method, status) {
        (IcapMethod::Reqmod, Some(s)) => {
            return Answer::Blocked(format!("the server answered the request itself (HTTP {s})"))
        }
        (IcapMethod::Respmod, Some(s)) if s != "200" => {
            return Answer::Blocked(format!("the server replaced the response (HTTP {s})"))
        }
        _ => {}
    }
    match adapted {
        Some((kept, total)) if *total == original.len() && kept == original => Answer::Clean,
        _ => Answer::Blocked("the server changed the body".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        wire::parse_head(raw.as_bytes()).unwrap()
    }

    #[test]
    fn a_200_is_judged_by_threat_status_and_body() {
        let enc = wire::parse_encapsulated("res-hdr=0, res-body=19").unwrap();
        let ok = b"HTTP/1.1 200 OK\r\n\r\n";
        let plain = head("ICAP/1.0 200 OK\r\n\r\n");
        let same = (b"abc".to_vec(), 3);
        let r = IcapMethod::Respmod;
        assert_eq!(
            decide(&plain, &enc, ok, r, b"abc", Some(&same)),
            Answer::Clean
        );
        let other = (b"abd".to_vec(), 3);
        assert!(matches!(
            decide(&plain, &enc, ok, r, b"abc", Some(&other)),
            Answer::Blocked(_)
        ));
        let longer = (b"abc".to_vec(), 4);
        assert!(matches!(
            decide(&plain, &enc, ok, r, b"abc", Some(&longer)),
            Answer::Blocked(_)
        ));
        assert!(matches!(
            decide(&plain, &enc, ok, r, b"abc", None),
            Answer::Blocked(_)
        ));
        let page = b"HTTP/1.0 403 Forbidden\r\n\r\n";
        assert!(
            matches!(decide(&plain, &enc, page, r, b"abc", Some(&same)), Answer::Blocked(s) if s.contains("403"))
        );
        let named = head("ICAP/1.0 200 OK\r\nX-Virus-ID: EICAR\r\n\r\n");
        assert_eq!(
            decide(&named, &enc, ok, r, b"abc", Some(&same)),
            Answer::Threat("EICAR".into())
        );
        let req = wire::parse_encapsulated("req-hdr=0, req-body=19").unwrap();
        let q = IcapMethod::Reqmod;
        assert_eq!(
            decide(
                &plain,
                &req,
                b"PUT / HTTP/1.1\r\n\r\n",
                q,
                b"abc",
                Some(&same)
            ),
            Answer::Clean
        );
        assert!(matches!(
            decide(&plain, &enc, page, q, b"abc", Some(&same)),
            Answer::Blocked(_)
        ));
    }

    #[test]
    fn options_are_read() {
        let o = ServerOptions::from_head(&head(
            "ICAP/1.0 200 OK\r\nMethods: RESPMOD, REQMOD\r\nPreview: 1024\r\nAllow: 204\r\nOptions-TTL: 3\r\n\r\n",
        ));
        assert_eq!(o.methods, ["RESPMOD", "REQMOD"]);
        assert_eq!(
            (o.preview, o.allow_204, o.ttl),
            (Some(1024), true, Duration::from_secs(10))
        );
        let bare = ServerOptions::from_head(&head("ICAP/1.0 200 OK\r\n\r\n"));
        assert!(bare.methods.is_empty() && bare.preview.is_none() && !bare.allow_204);
        assert_eq!(bare.ttl, DEFAULT_TTL);
        assert_eq!(bare.transfer.sending(Some("exe")), Sending::Preview);
    }

    /// RFC 3507 §4.10.2's example: preview by default, some extensions never sent, HTML whole.
    #[test]
    fn transfer_lists_pick_how_a_file_is_sent() {
        let o = ServerOptions::from_head(&head(
            "ICAP/1.0 200 OK\r\nTransfer-Preview: *\r\nTransfer-Ignore: asp, bat, .EXE, com, ole\r\nTransfer-Complete: html\r\n\r\n",
        ));
        let t = &o.transfer;
        assert_eq!(t.sending(Some("exe")), Sending::Ignore);
        assert_eq!(t.sending(Some("html")), Sending::Complete);
        assert_eq!(t.sending(Some("pdf")), Sending::Preview);
        assert_eq!(t.sending(None), Sending::Preview);
        let all_whole = Transfer::from_head(&head(
            "ICAP/1.0 200 OK\r\nTransfer-Complete: *\r\nTransfer-Preview: zip\r\n\r\n",
        ));
        assert_eq!(all_whole.sending(Some("doc")), Sending::Complete);
        assert_eq!(all_whole.sending(Some("zip")), Sending::Preview);
        let m = |target, file_name| Message {
            target,
            file_name,
            ..Message::default()
        };
        assert_eq!(
            extension(&m("/dl/Setup.EXE?x=1.2", None)).as_deref(),
            Some("exe")
        );
        assert_eq!(extension(&m("/dl/", None)), None);
        assert_eq!(extension(&m("/a.b/file", None)), None);
        assert_eq!(
            extension(&m("/x", Some("report.PDF"))).as_deref(),
            Some("pdf")
        );
    }

    /// A server whose OPTIONS ignore `.exe` is never sent one: only OPTIONS reach it.
    #[tokio::test]
    async fn ignored_extensions_are_not_sent() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let first = text.lines().next().unwrap_or("").to_string();
                        log.lock().unwrap().push(first.clone());
                        let answer: &[u8] = if first.starts_with("OPTIONS") {
                            b"ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nTransfer-Ignore: exe\r\nEncapsulated: null-body=0\r\n\r\n"
                        } else {
                            b"ICAP/1.0 500 Server Error\r\nEncapsulated: null-body=0\r\n\r\n"
                        };
                        let _ = s.write_all(answer).await;
                    }
                });
            }
        });
        let cfg: IcapConfig = toml::from_str(&format!(
            "url = \"icap://{addr}/avscan\"\nmethod = \"respmod\"\npreview = 0\n"
        ))
        .unwrap();
        let c = IcapClient::new(cfg).unwrap();
        let m = Message {
            method: "GET",
            host: "files.test",
            target: "/setup.exe",
            ..Message::default()
        };
        let a = c.ask(&m, b"MZ...", Duration::from_secs(5)).await.unwrap();
        assert_eq!(a, Answer::Ignored);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].starts_with("OPTIONS"), "{seen:?}");
    }
}
