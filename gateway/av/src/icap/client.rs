//! One ICAP server: OPTIONS learned and refreshed by their TTL, a bounded pool of kept-alive
//! connections, and the preview exchange of RFC 3507 §4.5.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::wire::{self, Head, Message, Offer};
use super::{Answer, IcapConfig, IcapError, IcapMethod, IcapTarget};

type Conn = BufReader<TcpStream>;

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
    fetched: Instant,
    ttl: Duration,
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
        let preview = h.get("preview").and_then(|p| p.trim().parse().ok());
        let allow_204 = h
            .get("allow")
            .is_some_and(|a| a.split(',').any(|t| t.trim() == "204"));
        let ttl = h
            .get("options-ttl")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map_or(DEFAULT_TTL, |s| Duration::from_secs(s.clamp(10, 86_400)));
        ServerOptions {
            methods,
            preview,
            allow_204,
            fetched: Instant::now(),
            ttl,
        }
    }
}

/// A client of one `[[av.icap]]` server.
pub struct IcapClient {
    cfg: IcapConfig,
    target: IcapTarget,
    label: String,
    permits: Semaphore,
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
        let offer = Offer {
            allow_204: self.cfg.allow_204 && opts.allow_204,
            preview: (self.cfg.preview > 0)
                .then_some(self.cfg.preview as usize)
                // A preview only to a server whose OPTIONS offer one, at most its size.
                .and_then(|p| opts.preview.map(|server| p.min(server)))
                .map(|p| p.min(body.len())),
        };
        // A kept-alive connection the server has closed meanwhile fails before any answer:
        // the exchange is tried once more on a new connection.
        for _ in 0..2 {
            let (conn, reused) = self.connection().await?;
            match self.exchange(conn, m, body, offer).await {
                Err(e) if reused && e.is_stale() => continue,
                Err(e) => return Err(e),
                Ok((answer, conn)) => {
                    if let Some(c) = conn {
                        self.keep(c);
                    }
                    return Ok(answer);
                }
            }
        }
        Err(IcapError::Closed)
    }

    /// The server's OPTIONS, asked when missing or past their TTL.
    async fn options(&self) -> Result<ServerOptions, IcapError> {
        let mut cached = self.options.lock().await;
        if let Some(o) = cached.as_ref().filter(|o| o.fetched.elapsed() < o.ttl) {
            return Ok(o.clone());
        }
        let mut result = Err(IcapError::Closed);
        for _ in 0..2 {
            let (mut conn, reused) = self.connection().await?;
            result = self.ask_options(&mut conn).await.map(|(o, keep)| {
                if keep {
                    self.keep(conn);
                }
                o
            });
            match &result {
                Err(e) if reused && e.is_stale() => continue,
                _ => break,
            }
        }
        let o = result?;
        *cached = Some(o.clone());
        Ok(o)
    }

    async fn ask_options(&self, conn: &mut Conn) -> Result<(ServerOptions, bool), IcapError> {
        let req = wire::options_head(&self.target.uri, &self.target.authority);
        conn.get_mut().write_all(&req).await?;
        let head = wire::parse_head(&wire::read_head(conn, wire::MAX_HEAD).await?)?;
        if head.status != 200 {
            return Err(IcapError::Status(head.status, head.reason));
        }
        let enc = match head.get("encapsulated") {
            Some(v) => wire::parse_encapsulated(v)?,
            None => wire::Encapsulated::default(),
        };
        let mut keep = !head.closes();
        if enc.has_body() {
            keep &= wire::read_chunked(conn, 0, wire::MAX_HEAD).await?.is_some();
        }
        Ok((ServerOptions::from_head(&head), keep))
    }

    /// A pooled connection (`true`) or a new one.
    async fn connection(&self) -> Result<(Conn, bool), IcapError> {
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|(_, at)| at.elapsed() < IDLE_FOR);
            idle.pop()
        };
        if let Some((c, _)) = reused {
            return Ok((c, true));
        }
        let addr = (self.target.host.as_str(), self.target.port);
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| IcapError::Connect(self.target.authority.clone(), e))?;
        s.set_nodelay(true)?;
        Ok((BufReader::new(s), false))
    }

    fn keep(&self, conn: Conn) {
        // Bytes the server sent beyond its answer make the connection unusable.
        if !conn.buffer().is_empty() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.cfg.max_connections as usize {
            idle.push((conn, Instant::now()));
        }
    }

    /// One REQMOD/RESPMOD: head, preview, the rest on `100 Continue`, the answer. Gives the
    /// connection back when it can carry another exchange.
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
        let w = conn.get_mut();
        w.write_all(&head).await?;
        let sent = match offer.preview {
            Some(p) => {
                if p > 0 {
                    w.write_all(&wire::chunk(&body[..p])).await?;
                }
                w.write_all(wire::last_chunk(p == body.len())).await?;
                w.flush().await?;
                p
            }
            None => 0,
        };
        let mut answer = None;
        if offer.preview.is_some() && sent < body.len() {
            let h = wire::parse_head(&wire::read_head(&mut conn, wire::MAX_HEAD).await?)?;
            if h.status != 100 {
                // Decided on the preview; the rest is not sent.
                answer = Some(h);
            }
        }
        let head = match answer {
            Some(h) => h,
            None => {
                if offer.preview.is_none() || sent < body.len() {
                    send_rest(conn.get_mut(), &body[sent..]).await?;
                }
                wire::parse_head(&wire::read_head(&mut conn, wire::MAX_HEAD).await?)?
            }
        };
        self.judge(conn, head, method, body).await
    }

    async fn judge(
        &self,
        mut conn: Conn,
        head: Head,
        method: IcapMethod,
        body: &[u8],
    ) -> Result<(Answer, Option<Conn>), IcapError> {
        match head.status {
            204 => {
                let keep = !head.closes();
                Ok((Answer::Clean, keep.then_some(conn)))
            }
            200 => {
                let enc = match head.get("encapsulated") {
                    Some(v) => wire::parse_encapsulated(v)?,
                    None => wire::Encapsulated::default(),
                };
                let hb = enc.header_bytes();
                if hb > wire::MAX_HTTP_HEAD {
                    return Err(IcapError::Protocol(format!(
                        "encapsulated headers of {hb} bytes"
                    )));
                }
                let mut http = vec![0u8; hb];
                conn.read_exact(&mut http).await?;
                let adapted = if enc.has_body() {
                    wire::read_chunked(&mut conn, body.len() + 1, body.len() + ADAPTED_SLACK)
                        .await?
                } else {
                    Some((Vec::new(), 0))
                };
                let keep = adapted.is_some() && !head.closes();
                let answer = decide(&head, &enc, &http, method, body, adapted.as_ref());
                Ok((answer, keep.then_some(conn)))
            }
            s => Err(IcapError::Status(s, head.reason)),
        }
    }
}

async fn send_rest(w: &mut TcpStream, rest: &[u8]) -> Result<(), IcapError> {
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
    }
}
