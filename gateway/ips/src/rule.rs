//! The rule model and the Suricata rule parser.
//!
//! A rule is `action proto src sport dir dst dport (options)`. Options are `key[:value];`; content
//! and its modifiers, sticky buffers (`http.uri; content:…`) and the legacy content modifiers
//! (`content:…; http_uri;`) are gathered into one ordered item list per buffer, as Suricata does.

use sekisho_core::Direction;

use crate::content::{parse_content, Content};
use crate::matchers::{ByteJump, ByteTest, NumCmp, Pcre, PcreLimits};
use crate::transform::{Transform, MAX_CHAIN};
use crate::vars::{parse_addr, parse_port, AddrExpr, PortExpr, Vars};

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RuleAction {
    /// Stop inspecting the flow; no alert.
    Pass,
    /// Alert only.
    Alert,
    /// Drop (block in prevent mode).
    Drop,
    /// Reject (block with a refusal in prevent mode).
    Reject,
}

impl RuleAction {
    fn parse(s: &str) -> Option<(RuleAction, &'static str)> {
        Some(match s {
            "alert" => (RuleAction::Alert, "alert"),
            "pass" => (RuleAction::Pass, "pass"),
            "drop" => (RuleAction::Drop, "drop"),
            "reject" => (RuleAction::Reject, "reject"),
            "rejectsrc" => (RuleAction::Reject, "rejectsrc"),
            "rejectdst" => (RuleAction::Reject, "rejectdst"),
            "rejectboth" => (RuleAction::Reject, "rejectboth"),
            _ => return None,
        })
    }

    /// True for drop and reject.
    pub fn blocks(self) -> bool {
        matches!(self, RuleAction::Drop | RuleAction::Reject)
    }
}

/// The rule's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `http`, `http1`, `http2`.
    Http,
    /// `tls`.
    Tls,
    /// `dns`.
    Dns,
    /// `tcp`, `tcp-stream`.
    Tcp,
    /// `ip`.
    Ip,
    /// `websocket`: the frames of an upgraded WebSocket connection.
    WebSocket,
}

/// A condition on a WebSocket frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsCond {
    /// `websocket.opcode`.
    Opcode(crate::uint::Uint),
    /// `websocket.mask` (a frame without a mask does not match).
    Mask(crate::uint::Uint),
    /// `websocket.flags` (the first byte's upper four bits).
    Flags(crate::uint::Uint),
}

impl WsCond {
    /// Whether the frame meets the condition.
    pub fn holds(&self, f: &crate::ruleset::WsHead) -> bool {
        match self {
            WsCond::Opcode(u) => u.test(u64::from(f.opcode)),
            WsCond::Mask(u) => f.mask.is_some_and(|m| u.test(u64::from(m))),
            WsCond::Flags(u) => u.test(u64::from(f.flags)),
        }
    }
}

/// `websocket.opcode` names (Suricata's `WebSocketOpcode`).
const WS_OPCODES: &[(&str, u64)] = &[
    ("continuation", 0),
    ("text", 1),
    ("binary", 2),
    ("close", 8),
    ("ping", 9),
    ("pong", 10),
];

/// `websocket.flags` names.
const WS_FLAGS: &[(&str, u64)] = &[("fin", 0x80), ("comp", 0x40)];

/// A sticky buffer.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Buf {
    /// The reconstructed message (request or response line, headers, body): `pkt_data`.
    Stream,
    Uri,
    UriRaw,
    Method,
    Host,
    HostRaw,
    Header,
    HeaderRaw,
    HeaderNames,
    UserAgent,
    Cookie,
    ContentType,
    ContentLen,
    RequestBody,
    ResponseBody,
    StatCode,
    StatMsg,
    Protocol,
    Start,
    RequestLine,
    ResponseLine,
    Server,
    Location,
    Accept,
    AcceptEnc,
    AcceptLang,
    Referer,
    Connection,
    FileData,
    TlsSni,
    TlsCertSubject,
    TlsCertIssuer,
    TlsCertSerial,
    TlsCerts,
    /// `tls.subjectaltname`: one instance per Subject Alternative Name of the server's
    /// certificate (DNS names and URIs as written, addresses as Suricata prints them).
    TlsSubjectAltName,
    /// `tls.cert_fingerprint`: the SHA-1 of the server's certificate, `4a:a3:…` (lower case).
    TlsCertFingerprint,
    /// `tls.alpn`: one instance per ALPN protocol the client offers.
    TlsAlpn,
    Ja3Hash,
    Ja3String,
    /// `ja4.hash`: the ClientHello's JA4 fingerprint (Suricata 8).
    Ja4Hash,
    /// `tls.random`: the ClientHello's 32 random bytes (the ServerHello's are not exposed).
    TlsRandom,
    /// `tls.random_time`: their first 4 bytes.
    TlsRandomTime,
    /// `tls.random_bytes`: their last 28 bytes.
    TlsRandomBytes,
    /// `http.request_header`: one instance per header, `Name: value`.
    RequestHeader,
    /// `http.response_header`: one instance per header, `Name: value`.
    ResponseHeader,
    /// `base64_data`: what the rule's `base64_decode` decoded.
    Base64Data,
    /// `file.name`: a download's or upload's name.
    FileName,
    /// `file.magic`: libmagic's description of the file.
    FileMagic,
    /// `ip.src`: the source address of the inspected direction (4 or 16 bytes).
    IpSrc,
    /// `ip.dst`: its destination address.
    IpDst,
    /// `websocket.payload`: a WebSocket frame's payload, unmasked (a fragmented message's
    /// whole payload on its final frame; inflated when compressed).
    WsPayload,
    /// `frame:websocket.header`: a frame's header as sent.
    WsHeader,
    /// `frame:websocket.pdu`: a frame as sent (header and inspected payload, masked).
    WsPdu,
    /// `frame:websocket.data`: a frame's payload as sent (masked when it was).
    WsData,
    DnsQuery,
}

impl Buf {
    /// The keyword (Suricata 5+ name).
    pub fn name(self) -> &'static str {
        use Buf::*;
        match self {
            Stream => "pkt_data",
            Uri => "http.uri",
            UriRaw => "http.uri.raw",
            Method => "http.method",
            Host => "http.host",
            HostRaw => "http.host.raw",
            Header => "http.header",
            HeaderRaw => "http.header.raw",
            HeaderNames => "http.header_names",
            UserAgent => "http.user_agent",
            Cookie => "http.cookie",
            ContentType => "http.content_type",
            ContentLen => "http.content_len",
            RequestBody => "http.request_body",
            ResponseBody => "http.response_body",
            StatCode => "http.stat_code",
            StatMsg => "http.stat_msg",
            Protocol => "http.protocol",
            Start => "http.start",
            RequestLine => "http.request_line",
            ResponseLine => "http.response_line",
            Server => "http.server",
            Location => "http.location",
            Accept => "http.accept",
            AcceptEnc => "http.accept_enc",
            AcceptLang => "http.accept_lang",
            Referer => "http.referer",
            Connection => "http.connection",
            FileData => "file.data",
            TlsSni => "tls.sni",
            TlsCertSubject => "tls.cert_subject",
            TlsCertIssuer => "tls.cert_issuer",
            TlsCertSerial => "tls.cert_serial",
            TlsCerts => "tls.certs",
            TlsSubjectAltName => "tls.subjectaltname",
            TlsCertFingerprint => "tls.cert_fingerprint",
            TlsAlpn => "tls.alpn",
            Ja3Hash => "ja3.hash",
            Ja3String => "ja3.string",
            Ja4Hash => "ja4.hash",
            TlsRandom => "tls.random",
            TlsRandomTime => "tls.random_time",
            TlsRandomBytes => "tls.random_bytes",
            RequestHeader => "http.request_header",
            ResponseHeader => "http.response_header",
            Base64Data => "base64_data",
            FileName => "file.name",
            FileMagic => "file.magic",
            IpSrc => "ip.src",
            IpDst => "ip.dst",
            WsPayload => "websocket.payload",
            WsHeader => "frame:websocket.header",
            WsPdu => "frame:websocket.pdu",
            WsData => "frame:websocket.data",
            DnsQuery => "dns.query",
        }
    }

    /// Sticky-buffer keywords (current and Suricata 4 names).
    fn sticky(kw: &str) -> Option<Buf> {
        use Buf::*;
        Some(match kw {
            "pkt_data" => Stream,
            "http.uri" => Uri,
            "http.uri.raw" => UriRaw,
            "http.method" => Method,
            "http.host" => Host,
            "http.host.raw" => HostRaw,
            "http.header" => Header,
            "http.header.raw" => HeaderRaw,
            "http.header_names" | "http_header_names" => HeaderNames,
            "http.user_agent" => UserAgent,
            "http.cookie" => Cookie,
            "http.content_type" => ContentType,
            "http.content_len" => ContentLen,
            "http.request_body" | "http.client_body" => RequestBody,
            "http.response_body" | "http.server_body" => ResponseBody,
            "http.stat_code" => StatCode,
            "http.stat_msg" => StatMsg,
            "http.protocol" | "http_protocol" => Protocol,
            "http.start" | "http_start" => Start,
            "http.request_line" | "http_request_line" => RequestLine,
            "http.response_line" | "http_response_line" => ResponseLine,
            "http.server" => Server,
            "http.location" => Location,
            "http.accept" | "http_accept" => Accept,
            "http.accept_enc" | "http_accept_enc" => AcceptEnc,
            "http.accept_lang" | "http_accept_lang" => AcceptLang,
            "http.referer" | "http_referer" => Referer,
            "http.connection" | "http_connection" => Connection,
            "file.data" | "file_data" => FileData,
            "tls.sni" | "tls_sni" => TlsSni,
            "tls.cert_subject" | "tls_cert_subject" => TlsCertSubject,
            "tls.cert_issuer" | "tls_cert_issuer" => TlsCertIssuer,
            "tls.cert_serial" | "tls_cert_serial" => TlsCertSerial,
            "tls.certs" => TlsCerts,
            "tls.subjectaltname" => TlsSubjectAltName,
            "tls.cert_fingerprint" | "tls_cert_fingerprint" => TlsCertFingerprint,
            "tls.alpn" => TlsAlpn,
            "ja3.hash" | "ja3_hash" => Ja3Hash,
            "ja3.string" | "ja3_string" => Ja3String,
            "ja4.hash" => Ja4Hash,
            "tls.random" => TlsRandom,
            "tls.random_time" => TlsRandomTime,
            "tls.random_bytes" => TlsRandomBytes,
            "http.request_header" => RequestHeader,
            "http.response_header" => ResponseHeader,
            "file.name" | "file_name" => FileName,
            "file.magic" => FileMagic,
            "ip.src" => IpSrc,
            "ip.dst" => IpDst,
            "websocket.payload" => WsPayload,
            "dns.query" | "dns_query" => DnsQuery,
            _ => return None,
        })
    }

    /// Legacy content modifiers (`content:…; http_uri;`).
    fn legacy_modifier(kw: &str) -> Option<Buf> {
        use Buf::*;
        Some(match kw {
            "http_uri" => Uri,
            "http_raw_uri" => UriRaw,
            "http_method" => Method,
            "http_host" => Host,
            "http_raw_host" => HostRaw,
            "http_header" => Header,
            "http_raw_header" => HeaderRaw,
            "http_cookie" => Cookie,
            "http_user_agent" => UserAgent,
            "http_client_body" => RequestBody,
            "http_server_body" => ResponseBody,
            "http_stat_code" => StatCode,
            "http_stat_msg" => StatMsg,
            "http_content_type" => ContentType,
            "http_content_len" => ContentLen,
            _ => return None,
        })
    }

    /// pcre buffer flags.
    pub(crate) fn pcre_flag(c: char) -> Option<Buf> {
        use Buf::*;
        Some(match c {
            'U' => Uri,
            'I' => UriRaw,
            'P' => RequestBody,
            'Q' => FileData,
            'H' => Header,
            'D' => HeaderRaw,
            'M' => Method,
            'C' | 'K' => Cookie,
            'S' => StatCode,
            'Y' => StatMsg,
            'V' => UserAgent,
            'W' => Host,
            'Z' => HostRaw,
            _ => return None,
        })
    }

    /// The side a buffer always comes from, if it is not chosen by the rule's direction.
    pub fn fixed_side(self) -> Option<Direction> {
        use Buf::*;
        match self {
            Uri | UriRaw | Method | Host | HostRaw | UserAgent | RequestBody | RequestLine
            | Accept | AcceptEnc | AcceptLang | Referer | RequestHeader => Some(Direction::Request),
            StatCode | StatMsg | ResponseLine | Server | Location | ResponseBody
            | ResponseHeader => Some(Direction::Response),
            _ => None,
        }
    }

    /// Whether the keyword takes a direction argument (`http.content_type: to_client`):
    /// Suricata 8's `SIGMATCH_SUPPORT_DIR` keywords, the header buffers of
    /// `detect-http-headers-stub.h` that have a request side and the file buffers.
    pub fn takes_side(self) -> bool {
        use Buf::*;
        matches!(
            self,
            Connection
                | ContentType
                | ContentLen
                | Accept
                | AcceptEnc
                | AcceptLang
                | Referer
                | FileData
                | FileName
                | FileMagic
        )
    }

    /// True for buffers Suricata 7+ matches as several instances when a rule names them again
    /// (`file.data; content:"a"; file.data; content:"b";`: each group on any file), its
    /// "multi buffer" keywords; naming another buffer again adds to its first group.
    pub fn multi_capable(self) -> bool {
        matches!(
            self,
            Buf::FileData
                | Buf::FileName
                | Buf::FileMagic
                | Buf::RequestHeader
                | Buf::ResponseHeader
                | Buf::TlsCerts
                | Buf::TlsSubjectAltName
                | Buf::TlsAlpn
        )
    }

    /// True for buffers with one instance per item (each inspected on its own).
    pub fn is_multi(self) -> bool {
        matches!(
            self,
            Buf::TlsCerts
                | Buf::TlsSubjectAltName
                | Buf::TlsAlpn
                | Buf::RequestHeader
                | Buf::ResponseHeader
        )
    }

    /// True for buffers that need the message body.
    pub fn needs_body(self) -> bool {
        matches!(
            self,
            Buf::Stream | Buf::RequestBody | Buf::ResponseBody | Buf::FileData
        )
    }

    /// True for TLS ClientHello buffers.
    pub fn is_client_hello(self) -> bool {
        matches!(
            self,
            Buf::TlsSni
                | Buf::Ja3Hash
                | Buf::Ja3String
                | Buf::Ja4Hash
                | Buf::TlsAlpn
                | Buf::TlsRandom
                | Buf::TlsRandomTime
                | Buf::TlsRandomBytes
        )
    }

    /// True for the upstream certificate buffers.
    pub fn is_cert(self) -> bool {
        matches!(
            self,
            Buf::TlsCertSubject
                | Buf::TlsCertIssuer
                | Buf::TlsCertSerial
                | Buf::TlsCerts
                | Buf::TlsSubjectAltName
                | Buf::TlsCertFingerprint
        )
    }

    /// True for HTTP buffers.
    pub fn is_http(self) -> bool {
        !(self.is_client_hello() || self.is_cert() || self == Buf::DnsQuery || self.is_websocket())
    }

    /// True for the buffers of a WebSocket frame.
    pub fn is_websocket(self) -> bool {
        matches!(
            self,
            Buf::WsPayload | Buf::WsHeader | Buf::WsPdu | Buf::WsData
        )
    }
}

/// One detection keyword inside a buffer's list.
#[derive(Debug)]
pub enum Item {
    /// `content` with modifiers.
    Content(Content),
    /// `pcre`.
    Pcre(Box<Pcre>),
    /// `isdataat`.
    IsDataAt {
        /// Offset.
        n: u32,
        /// Relative to the previous match.
        relative: bool,
        /// `!`.
        negated: bool,
        /// The offset from a `byte_extract` / `byte_math` variable.
        var: Option<u8>,
    },
    /// `bsize`.
    Bsize(NumCmp),
    /// `byte_test`.
    ByteTest(ByteTest),
    /// `byte_jump`.
    ByteJump(ByteJump),
    /// `absent` (the buffer must not exist) or `absent: or_else` (it must not exist, or the
    /// items after it must match); always the group's first item.
    Absent {
        /// `or_else`.
        or_else: bool,
    },
    /// `base64_decode`: decodes (RFC 4648, as Suricata) the buffer from the start or the
    /// previous match, for the rule's `base64_data`; ends its list (what follows never runs).
    Base64Decode {
        /// Encoded bytes read at most.
        bytes: u32,
        /// Skipped first.
        offset: u32,
        /// From the end of the previous match.
        relative: bool,
    },
    /// `dataset` / `datarep`: the whole buffer looked up in (or added to) a named set.
    Dataset(Box<crate::datasets::DatasetUse>),
    /// `byte_extract`.
    ByteExtract(crate::bytevars::ByteExtract),
    /// `byte_math`.
    ByteMath(crate::bytevars::ByteMath),
}

impl Item {
    /// True when the item depends on the previous match's end.
    pub fn relative(&self) -> bool {
        match self {
            Item::Content(c) => c.distance.is_some() || c.within.is_some(),
            Item::Pcre(p) => p.relative,
            Item::IsDataAt { relative, .. } => *relative,
            Item::Bsize(_) => false,
            Item::ByteTest(b) => b.relative,
            Item::ByteJump(b) => b.relative,
            Item::Absent { .. } => false,
            Item::Base64Decode { relative, .. } => *relative,
            Item::Dataset(_) => false,
            Item::ByteExtract(e) => e.relative,
            Item::ByteMath(m) => m.relative,
        }
    }

    /// True for `absent`.
    pub fn is_absent(&self) -> bool {
        matches!(self, Item::Absent { .. })
    }
}

/// The items of one buffer.
#[derive(Debug)]
pub struct Group {
    /// The buffer.
    pub buf: Buf,
    /// The transformations applied to it, in order (`dotprefix`, `to_lowercase` …).
    pub transforms: Vec<Transform>,
    /// The chain's id in the rule set (0: none), set when the rule set is built.
    pub xform: u32,
    /// Items in rule order.
    pub items: Vec<Item>,
    /// The side the rule named for a buffer that exists on both (`http.content_type:
    /// to_client`, Suricata 8's direction argument).
    pub forced_side: Option<Direction>,
}

impl Group {
    /// The side the buffer is read from when the rule's direction does not choose it: the
    /// one the rule named, or the one the buffer always comes from.
    pub fn side(&self) -> Option<Direction> {
        self.forced_side.or(self.buf.fixed_side())
    }

    /// Whether the chain is `dotprefix` alone (domain-suffix indicators).
    pub fn dotprefix_only(&self) -> bool {
        matches!(self.transforms.as_slice(), [Transform::DotPrefix])
    }
}

/// `threshold` / `detection_filter` tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Track {
    /// By source address.
    BySrc,
    /// By destination address.
    ByDst,
    /// One counter for the rule.
    ByRule,
    /// By source and destination.
    ByBoth,
}

/// Threshold type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdKind {
    /// Alert on the first `count` matches per window.
    Limit,
    /// Alert on every `count`th match in a window.
    Threshold,
    /// Alert once per window after `count` matches.
    Both,
    /// Alert on every match after the first `count` in a window (`detection_filter`).
    DetectionFilter,
}

/// A threshold setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold {
    /// Type.
    pub kind: ThresholdKind,
    /// Tracking.
    pub track: Track,
    /// Count.
    pub count: u32,
    /// Window.
    pub seconds: u32,
}

/// A flowbits operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flowbit {
    /// `set`.
    Set(Vec<String>),
    /// `unset`.
    Unset(Vec<String>),
    /// `toggle`.
    Toggle(Vec<String>),
    /// `isset` (any of `a|b`).
    IsSet(Vec<String>),
    /// `isnotset` (none of `a|b`... all not set).
    IsNotSet(Vec<String>),
}

/// A parsed rule.
#[derive(Debug)]
pub struct Rule {
    /// Action.
    pub action: RuleAction,
    /// Action as written (`rejectsrc` …).
    pub action_name: &'static str,
    /// Protocol.
    pub proto: Proto,
    /// Source addresses.
    pub src: AddrExpr,
    /// Source ports.
    pub sport: PortExpr,
    /// `<>`.
    pub bidirectional: bool,
    /// `=>` (Suricata 8): one transaction's request and response buffers together; the header
    /// reads client → server.
    pub txboth: bool,
    /// Destination addresses.
    pub dst: AddrExpr,
    /// Destination ports.
    pub dport: PortExpr,
    /// `msg`.
    pub msg: String,
    /// `sid`.
    pub sid: u32,
    /// `gid` (1 by default).
    pub gid: u32,
    /// `rev`.
    pub rev: u32,
    /// `classtype`.
    pub classtype: Option<String>,
    /// `priority` (from the rule, else the classtype's).
    pub priority: Option<u8>,
    /// `reference` values.
    pub references: Vec<String>,
    /// `metadata` entries (`key value`).
    pub metadata: Vec<String>,
    /// `target`.
    pub target: Option<String>,
    /// `flow` direction.
    pub flow_dir: Option<Direction>,
    /// Buffers and their items.
    pub groups: Vec<Group>,
    /// `urilen`.
    pub urilen: Option<(NumCmp, bool)>,
    /// `flowbits`.
    pub flowbits: Vec<Flowbit>,
    /// `flowint`, in rule order.
    pub flowints: Vec<crate::state::Flowint>,
    /// `xbits`, in rule order.
    pub xbits: Vec<crate::state::Xbit>,
    /// `filestore`.
    pub filestore: Option<crate::filestore::StoreSpec>,
    /// `app-layer-event` ids (every one must have been raised on the transaction).
    pub app_events: Vec<u8>,
    /// `filesize`.
    pub filesize: Option<NumCmp>,
    /// The side `filesize` names (`filesize: to_client, >100`), when it names one.
    pub filesize_side: Option<Direction>,
    /// `filemd5` / `filesha1` / `filesha256`.
    pub file_hashes: Vec<crate::files::FileHash>,
    /// `noalert` (or `flowbits:noalert`).
    pub noalert: bool,
    /// `threshold`.
    pub threshold: Option<Threshold>,
    /// `detection_filter`.
    pub detection_filter: Option<Threshold>,
    /// `tls.version`.
    pub tls_version: Option<u16>,
    /// `websocket.opcode`, `websocket.mask`, `websocket.flags`.
    pub ws: Vec<WsCond>,
    /// `tls.cert_chain_len`.
    pub cert_chain_len: Option<crate::uint::Uint>,
    /// `tls_cert_notbefore`, `tls_cert_notafter`, `tls_cert_expired`, `tls_cert_valid`.
    pub cert_validity: Vec<crate::validity::Validity>,
    /// Source file.
    pub file: String,
    /// Line in the file.
    pub line: u32,
}

/// Why a rule did not load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleError {
    /// A malformed rule.
    Syntax(String),
    /// A well-formed rule using a keyword (or protocol) this engine does not run.
    Unsupported {
        /// The keyword.
        keyword: String,
        /// Detail.
        reason: String,
    },
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleError::Syntax(s) => write!(f, "syntax error: {s}"),
            RuleError::Unsupported { keyword, reason } => {
                write!(f, "unsupported keyword {keyword}: {reason}")
            }
        }
    }
}

fn syntax(s: impl Into<String>) -> RuleError {
    RuleError::Syntax(s.into())
}

fn unsupported(kw: &str, reason: impl Into<String>) -> RuleError {
    RuleError::Unsupported {
        keyword: kw.to_string(),
        reason: reason.into(),
    }
}

/// Splits the option block on unescaped `;` (as Suricata does: quotes do not protect a `;`, so
/// `pcre:"/^["']?x/"` is one option).
pub fn split_options(body: &str) -> Result<Vec<(&str, Option<&str>)>, RuleError> {
    let mut out = Vec::new();
    let (mut start, mut escaped) = (0usize, false);
    let bytes = body.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b';' => {
                push_opt(&body[start..i], &mut out)?;
                start = i + 1;
            }
            _ => {}
        }
    }
    if !body[start..].trim().is_empty() {
        return Err(syntax(format!(
            "option without a terminating ';': {:?}",
            clip(body[start..].trim())
        )));
    }
    Ok(out)
}

fn push_opt<'a>(raw: &'a str, out: &mut Vec<(&'a str, Option<&'a str>)>) -> Result<(), RuleError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(());
    }
    match raw.split_once(':') {
        Some((k, v)) => out.push((k.trim(), Some(v.trim()))),
        None => out.push((raw, None)),
    }
    Ok(())
}

fn clip(s: &str) -> &str {
    let mut end = s.len().min(60);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Removes surrounding quotes and the rule-level escapes `\"`, `\;`, `\\`.
pub fn unquote(v: &str) -> String {
    let v = v.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v);
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('"' | ';' | '\\' | ':')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn num<T: std::str::FromStr>(kw: &str, v: Option<&str>) -> Result<T, RuleError> {
    let v = v.ok_or_else(|| syntax(format!("{kw} needs a value")))?;
    v.trim()
        .parse()
        .map_err(|_| syntax(format!("{kw}: bad number {:?}", clip(v))))
}

/// Where a SID can be read from even when the rule does not parse (for error messages).
pub fn sniff_sid(line: &str) -> Option<u32> {
    let i = line.find("sid:")?;
    let rest = &line[i + 4..];
    let end = rest.find(';').unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Parser state: where the last content lives, the current sticky buffer and its
/// transformations.
struct Builder<'v> {
    groups: Vec<Group>,
    sticky: Buf,
    /// The side the current sticky buffer was named with, if any.
    sticky_side: Option<Direction>,
    /// The transformations written after the current sticky buffer.
    sticky_xf: Vec<Transform>,
    /// Whether a transformation may still follow: until a match takes the transformations
    /// written so far (Suricata lets `dns.query; content:…; dotprefix; content:…` start a
    /// transformed instance of the buffer after untransformed matches).
    xf_open: bool,
    /// Transformations written that no match has taken yet.
    xf_pending: bool,
    /// Whether a `base64_decode` came (for `base64_data`).
    base64_decode: bool,
    /// The group the current sticky buffer's matches go to, once one went there.
    sticky_group: Option<usize>,
    last_content: Option<(usize, usize)>,
    /// The group of the last content or pcre: where a `relative` keyword goes when no sticky
    /// buffer is named (Suricata places it in the list of the previous match).
    last_match: Option<usize>,
    limits: &'v PcreLimits,
    /// `byte_extract` / `byte_math` variables defined so far.
    names: crate::bytevars::Names,
}

impl Builder<'_> {
    fn group_index(&mut self, buf: Buf, chain: &[Transform], side: Option<Direction>) -> usize {
        if let Some(i) = self
            .groups
            .iter()
            .position(|g| g.buf == buf && g.transforms == chain && g.forced_side == side)
        {
            return i;
        }
        self.groups.push(Group {
            buf,
            transforms: chain.to_vec(),
            xform: 0,
            items: Vec::new(),
            forced_side: side,
        });
        self.groups.len() - 1
    }

    /// Adds `item` to `buf` untransformed (a legacy modifier, a pcre flag buffer).
    fn push(&mut self, buf: Buf, item: Item) -> (usize, usize) {
        let g = self.group_index(buf, &[], None);
        self.groups[g].items.push(item);
        (g, self.groups[g].items.len() - 1)
    }

    /// `item`, relative to the previous match when `relative`: into that match's buffer when it
    /// is not the sticky one and no sticky buffer is named (`uricontent`, `http_uri`-style
    /// modifiers, a pcre's `U` flag), else into the sticky buffer.
    fn push_relative(&mut self, item: Item, relative: bool) -> (usize, usize) {
        let previous = self.last_match.filter(|&g| {
            relative
                && self.sticky == Buf::Stream
                && self.groups.get(g).is_some_and(|x| x.buf != Buf::Stream)
        });
        match previous {
            Some(g) => {
                self.groups[g].items.push(item);
                (g, self.groups[g].items.len() - 1)
            }
            None => self.push_sticky(item),
        }
    }

    /// Adds `item` to the sticky buffer as its transformations leave it.
    fn push_sticky(&mut self, item: Item) -> (usize, usize) {
        let chain = std::mem::take(&mut self.sticky_xf);
        let current = self
            .sticky_group
            .filter(|&g| self.groups.get(g).is_some_and(|x| x.transforms == chain));
        let g = match current {
            Some(g) => g,
            None if self.new_instance() => {
                self.groups.push(Group {
                    buf: self.sticky,
                    transforms: chain.clone(),
                    xform: 0,
                    items: Vec::new(),
                    forced_side: self.sticky_side,
                });
                self.groups.len() - 1
            }
            None => self.group_index(self.sticky, &chain, self.sticky_side),
        };
        self.sticky_group = Some(g);
        self.sticky_xf = chain;
        if self.xf_pending {
            self.xf_pending = false;
            self.xf_open = false;
        }
        self.groups[g].items.push(item);
        (g, self.groups[g].items.len() - 1)
    }

    /// Whether the current sticky buffer is a multi-capable one that already has a group: a
    /// match not yet placed starts a group of its own (naming it again is another instance).
    fn new_instance(&self) -> bool {
        self.sticky.multi_capable()
            && self
                .groups
                .iter()
                .any(|g| g.buf == self.sticky && g.forced_side == self.sticky_side)
    }

    /// A sticky buffer is named: transformations may follow; ones left without a match on the
    /// previous buffer are an error, as in Suricata.
    fn start_sticky(&mut self, buf: Buf, side: Option<Direction>) -> Result<(), RuleError> {
        if self.xf_pending {
            return Err(syntax(format!(
                "no match follows the transformations of {}",
                self.sticky.name()
            )));
        }
        self.sticky = buf;
        self.sticky_side = side;
        self.sticky_group = None;
        self.sticky_xf.clear();
        self.xf_open = true;
        Ok(())
    }

    fn add_transform(&mut self, t: Transform) -> Result<(), RuleError> {
        if !self.xf_open {
            return Err(syntax(format!(
                "{}: transformations must directly follow a sticky buffer",
                t.name()
            )));
        }
        if self.sticky_xf.len() >= MAX_CHAIN {
            return Err(syntax(format!("more than {MAX_CHAIN} transformations")));
        }
        self.sticky_xf.push(t);
        self.xf_pending = true;
        Ok(())
    }

    fn last_content(&mut self, kw: &str) -> Result<&mut Content, RuleError> {
        let (g, i) = self
            .last_content
            .ok_or_else(|| syntax(format!("{kw} without a preceding content")))?;
        match &mut self.groups[g].items[i] {
            Item::Content(c) => Ok(c),
            _ => Err(syntax(format!("{kw} without a preceding content"))),
        }
    }
}

/// Parses one rule line. `vars` expands `$VARS` in the header.
pub fn parse_rule(
    line: &str,
    vars: &Vars,
    limits: &PcreLimits,
    file: &str,
    lineno: u32,
) -> Result<Rule, RuleError> {
    let line = line.trim();
    let open = line
        .find('(')
        .ok_or_else(|| syntax("missing '(' before the options"))?;
    let close = line
        .rfind(')')
        .filter(|&c| c > open)
        .ok_or_else(|| syntax("missing ')' after the options"))?;
    if !line[close + 1..].trim().is_empty() {
        return Err(syntax("text after the closing ')'"));
    }
    let options = split_options(&line[open + 1..close])?;
    // `requires` first, as Suricata reads it: a rule for a newer engine is skipped for what it
    // requires, whatever else in it this engine cannot read.
    for (kw, val) in &options {
        if *kw == "requires" {
            match crate::requires::check(val.unwrap_or_default(), keyword_known) {
                Ok(()) => {}
                Err(crate::requires::Unmet::Skip(why)) => return Err(unsupported("requires", why)),
                Err(crate::requires::Unmet::Error(e)) => {
                    return Err(syntax(format!("requires: {e}")))
                }
            }
        }
    }
    let header: Vec<&str> = line[..open].split_whitespace().collect();
    if header.len() != 7 {
        return Err(syntax(format!(
            "header needs 7 fields (action proto src sport dir dst dport), found {}",
            header.len()
        )));
    }
    let (action, action_name) = RuleAction::parse(header[0])
        .ok_or_else(|| syntax(format!("unknown action {:?}", header[0])))?;
    let proto = match header[1] {
        "http" | "http1" | "http2" => Proto::Http,
        "tls" => Proto::Tls,
        "dns" => Proto::Dns,
        "tcp" | "tcp-stream" | "tcp-pkt" => Proto::Tcp,
        "ip" => Proto::Ip,
        "websocket" => Proto::WebSocket,
        other => return Err(unsupported(
            other,
            "protocol not inspected by the gateway (only http, tls, dns, websocket, tcp and ip)",
        )),
    };
    let src = parse_addr(header[2], vars).map_err(|e| syntax(format!("source: {e}")))?;
    let sport = parse_port(header[3], vars).map_err(|e| syntax(format!("source port: {e}")))?;
    let (bidirectional, txboth) = match header[4] {
        "->" => (false, false),
        "<>" => (true, false),
        "=>" => (false, true),
        d => return Err(syntax(format!("bad direction {d:?} (->, <> or =>)"))),
    };
    let dst = parse_addr(header[5], vars).map_err(|e| syntax(format!("destination: {e}")))?;
    let dport =
        parse_port(header[6], vars).map_err(|e| syntax(format!("destination port: {e}")))?;

    let mut rule = Rule {
        action,
        action_name,
        proto,
        src,
        sport,
        bidirectional,
        txboth,
        dst,
        dport,
        msg: String::new(),
        sid: 0,
        gid: 1,
        rev: 0,
        classtype: None,
        priority: None,
        references: Vec::new(),
        metadata: Vec::new(),
        target: None,
        flow_dir: None,
        groups: Vec::new(),
        urilen: None,
        flowbits: Vec::new(),
        flowints: Vec::new(),
        xbits: Vec::new(),
        app_events: Vec::new(),
        filestore: None,
        filesize: None,
        filesize_side: None,
        file_hashes: Vec::new(),
        noalert: false,
        threshold: None,
        detection_filter: None,
        tls_version: None,
        ws: Vec::new(),
        cert_chain_len: None,
        cert_validity: Vec::new(),
        file: file.to_string(),
        line: lineno,
    };
    let mut b = Builder {
        groups: Vec::new(),
        sticky: Buf::Stream,
        sticky_side: None,
        sticky_xf: Vec::new(),
        xf_open: false,
        xf_pending: false,
        base64_decode: false,
        sticky_group: None,
        last_content: None,
        last_match: None,
        limits,
        names: crate::bytevars::Names::default(),
    };
    // Unsupported keywords are remembered and reported after a full syntax pass, so a broken
    // rule is always reported as broken.
    let mut first_unsupported: Option<RuleError> = None;
    for (kw, val) in options {
        if let Err(e) = option(&mut rule, &mut b, kw, val) {
            match e {
                RuleError::Syntax(_) => return Err(e),
                u @ RuleError::Unsupported { .. } => {
                    first_unsupported.get_or_insert(u);
                }
            }
        }
    }
    if rule.sid == 0 {
        return Err(syntax("missing sid"));
    }
    if let Some(u) = first_unsupported {
        return Err(u);
    }
    for g in &b.groups {
        if g.items.is_empty() {
            return Err(syntax(format!(
                "sticky buffer {} without a match",
                g.buf.name()
            )));
        }
    }
    for g in &b.groups {
        check_absent(g)?;
    }
    if b.base64_decode && !b.groups.iter().any(|g| g.buf == Buf::Base64Data) {
        return Err(unsupported(
            "base64_decode",
            "no base64_data follows: the rule can never match (Suricata loads it and never alerts)",
        ));
    }
    rule.groups = b.groups;
    // `urilen` alone makes a TCP rule an HTTP one, as Suricata sets the app-layer protocol of a
    // rule from its HTTP keywords.
    if rule.proto == Proto::Tcp && rule.urilen.is_some() && rule.groups.is_empty() {
        rule.proto = Proto::Http;
    }
    // So do `tls.cert_chain_len` and the WebSocket keywords (Suricata's
    // `SCDetectSignatureSetAppProto`).
    let cert_checks = rule.cert_chain_len.is_some() || !rule.cert_validity.is_empty();
    if cert_checks && matches!(rule.proto, Proto::Tcp | Proto::Ip) {
        rule.proto = Proto::Tls;
    }
    let websocket = !rule.ws.is_empty() || rule.groups.iter().any(|g| g.buf.is_websocket());
    if websocket && matches!(rule.proto, Proto::Tcp | Proto::Ip) {
        rule.proto = Proto::WebSocket;
    }
    validate(&rule)?;
    Ok(rule)
}

/// `base64_decode[:bytes N[,] offset N[,] relative]`, in that order (Suricata's pattern);
/// `bytes` 0 or absent reads up to 65,535 encoded bytes.
fn parse_base64_decode(v: &str) -> Result<Item, RuleError> {
    let words: Vec<&str> = v
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let (mut bytes, mut offset, mut relative) = (0u32, 0u32, false);
    let mut i = 0;
    let number = |i: usize, what: &str, max: u64| -> Result<u32, RuleError> {
        words
            .get(i + 1)
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n <= max)
            .map(|n| n as u32)
            .ok_or_else(|| syntax(format!("base64_decode: bad value for {what}")))
    };
    if words.first() == Some(&"bytes") {
        bytes = number(0, "bytes", u64::from(u16::MAX))?;
        i = 2;
    }
    if words.get(i) == Some(&"offset") {
        offset = number(i, "offset", u64::from(u32::MAX))?;
        i += 2;
    }
    match words.get(i..) {
        Some(["relative"]) => relative = true,
        Some([]) | None => {}
        Some(rest) => {
            return Err(syntax(format!(
                "base64_decode: invalid argument {:?}",
                rest.join(" ")
            )))
        }
    }
    Ok(Item::Base64Decode {
        bytes: if bytes == 0 {
            u32::from(u16::MAX)
        } else {
            bytes
        },
        offset,
        relative,
    })
}

/// Suricata's checks of `absent`: plain `absent` tests nothing else on the buffer, `or_else`
/// needs something after it, and neither takes a fast pattern there.
fn check_absent(g: &Group) -> Result<(), RuleError> {
    let Some(Item::Absent { or_else }) = g.items.first() else {
        return Ok(());
    };
    if g.items
        .iter()
        .any(|it| matches!(it, Item::Content(c) if c.fast_pattern))
    {
        return Err(syntax(format!(
            "{}: absent and fast_pattern on the same buffer",
            g.buf.name()
        )));
    }
    match (or_else, g.items.len()) {
        (false, n) if n > 1 => Err(syntax(format!(
            "{}: a buffer tested absent cannot be tested with other keywords such as content",
            g.buf.name()
        ))),
        (true, 1) => Err(syntax(format!(
            "{}: absent: or_else expects other keywords to test, such as content",
            g.buf.name()
        ))),
        _ => Ok(()),
    }
}

/// Suricata's checks of a `=>` rule: no `flow` direction, every buffer tied to one side
/// (`http.uri`, `http.stat_code` …, not `http.header`), and both sides used.
fn validate_txboth(rule: &Rule) -> Result<(), RuleError> {
    if rule.flow_dir.is_some() {
        return Err(syntax(
            "a => rule uses both directions: it cannot specify a flow direction",
        ));
    }
    if let Some(g) = rule
        .groups
        .iter()
        .find(|g| g.side().is_none() && g.buf != Buf::Base64Data)
    {
        return Err(syntax(format!(
            "a => rule uses both directions: {} is ambiguous about its direction (name one: \
             {}: to_server or to_client, where the buffer takes it)",
            g.buf.name(),
            g.buf.name()
        )));
    }
    let has = |d: Direction| {
        rule.groups.iter().any(|g| g.side() == Some(d)) || rule.filesize_side == Some(d)
    };
    if !(has(Direction::Request) && has(Direction::Response)) {
        return Err(syntax("a => rule should use both directions, but does not"));
    }
    Ok(())
}

/// Option keywords this parser runs (besides sticky buffers, legacy modifiers and
/// transformations), for `requires: keyword`.
const OPTION_KEYWORDS: &[&str] = &[
    "msg",
    "sid",
    "gid",
    "rev",
    "classtype",
    "priority",
    "reference",
    "metadata",
    "target",
    "flow",
    "content",
    "uricontent",
    "nocase",
    "rawbytes",
    "depth",
    "offset",
    "distance",
    "within",
    "startswith",
    "endswith",
    "fast_pattern",
    "isdataat",
    "bsize",
    "dataset",
    "datarep",
    "app-layer-event",
    "urilen",
    "pcre",
    "byte_test",
    "byte_jump",
    "byte_extract",
    "byte_math",
    "flowbits",
    "noalert",
    "threshold",
    "detection_filter",
    "tls.version",
    "tls_version",
    "requires",
    "absent",
    "filename",
    "fileext",
    "filemagic",
    "filestore",
    "filesize",
    "filemd5",
    "filesha1",
    "filesha256",
    "flowint",
    "xbits",
    "base64_decode",
    "base64_data",
    "frame",
    "websocket.opcode",
    "websocket.mask",
    "websocket.flags",
    "tls.cert_chain_len",
    "tls_cert_notbefore",
    "tls_cert_notafter",
    "tls_cert_expired",
    "tls_cert_valid",
    "tls.subject",
    "tls.issuerdn",
    "tls.fingerprint",
];

/// Whether `kw` is a rule keyword the gateway runs.
fn keyword_known(kw: &str) -> bool {
    Buf::sticky(kw).is_some()
        || Buf::legacy_modifier(kw).is_some()
        || Transform::parse(kw, None).is_some()
        || OPTION_KEYWORDS.contains(&kw)
}

/// The side named by a sticky buffer's argument (`http.content_type: to_client`): Suricata 8
/// takes `to_client` or `to_server` on the buffers that exist on both sides (the header
/// buffers and the file buffers) and nothing else on any sticky buffer.
fn sticky_side(
    rule: &mut Rule,
    kw: &str,
    buf: Buf,
    val: Option<&str>,
) -> Result<Option<Direction>, RuleError> {
    let Some(v) = val.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if !buf.takes_side() {
        return Err(syntax(format!("unexpected option to {kw}: {:?}", clip(v))));
    }
    let d = match v {
        "to_client" => Direction::Response,
        "to_server" => Direction::Request,
        _ => {
            return Err(syntax(format!(
                "{kw}: unknown option {:?}: only to_server or to_client",
                clip(v)
            )))
        }
    };
    if buf.fixed_side().is_some_and(|f| f != d) {
        return Err(syntax(format!("{kw} has no {v} side")));
    }
    rule_side(rule, d)?;
    Ok(Some(d))
}

/// A keyword named side `d`: outside a `=>` rule, that is the rule's direction (as
/// `flow:to_client` would say); one that names the other side contradicts it.
fn rule_side(rule: &mut Rule, d: Direction) -> Result<(), RuleError> {
    if rule.txboth {
        return Ok(());
    }
    match rule.flow_dir {
        Some(f) if f != d => Err(syntax("contradictory directions")),
        _ => {
            rule.flow_dir = Some(d);
            Ok(())
        }
    }
}

/// A leading `to_client,` / `to_server,` (Suricata 8's direction argument of `filesize`) and
/// the rest of the value.
fn leading_side(v: &str) -> (Option<Direction>, &str) {
    let t = v.trim_start();
    for (word, d) in [
        ("to_client", Direction::Response),
        ("to_server", Direction::Request),
    ] {
        if let Some(rest) = t.strip_prefix(word) {
            if let Some(rest) = rest.trim_start().strip_prefix(',') {
                return (Some(d), rest);
            }
        }
    }
    (None, v)
}

/// Checks that the rule is something the gateway can run.
fn validate(rule: &Rule) -> Result<(), RuleError> {
    let bufs: Vec<Buf> = rule.groups.iter().map(|g| g.buf).collect();
    if rule.txboth {
        validate_txboth(rule)?;
    }
    match rule.proto {
        Proto::Tcp | Proto::Ip => {
            // Their payload keywords read the reassembled stream of each side of the HTTP the
            // gateway carries (`pkt_data`); a rule with none is about packets alone.
            if bufs.is_empty() {
                return Err(unsupported(
                    "pkt_data",
                    "packet rule without payload keywords: the gateway inspects streams, not packets",
                ));
            }
        }
        Proto::Tls => {
            if bufs.contains(&Buf::Stream) && rule.flow_dir == Some(Direction::Response) {
                return Err(unsupported(
                    "pkt_data",
                    "raw TLS records from the server are not kept",
                ));
            }
        }
        Proto::Dns => {
            if bufs.iter().any(|b| *b != Buf::DnsQuery) {
                return Err(unsupported(
                    "dns",
                    "only dns.query is inspected (names the proxy resolves)",
                ));
            }
        }
        Proto::Http => {}
        Proto::WebSocket => {
            let other = bufs
                .iter()
                .find(|b| !(b.is_websocket() || **b == Buf::Base64Data));
            if let Some(b) = other {
                return Err(syntax(format!("{} in a websocket rule", b.name())));
            }
            if rule.app_events.iter().any(|&id| !crate::events::is_ws(id)) {
                return Err(syntax("an http app-layer-event in a websocket rule"));
            }
        }
    }
    let ws_keywords = !rule.ws.is_empty() || bufs.iter().any(|b| b.is_websocket());
    if ws_keywords && rule.proto != Proto::WebSocket {
        return Err(syntax("websocket keywords in a non-websocket rule"));
    }
    if rule.proto != Proto::WebSocket && rule.app_events.iter().any(|&id| crate::events::is_ws(id))
    {
        return Err(syntax(
            "a websocket app-layer-event in a non-websocket rule",
        ));
    }
    if bufs.contains(&Buf::DnsQuery) && rule.proto != Proto::Dns {
        return Err(syntax("dns.query in a non-dns rule"));
    }
    let tls = bufs.iter().any(|b| b.is_client_hello() || b.is_cert());
    let http = bufs.iter().any(|b| b.is_http() && *b != Buf::Stream);
    if tls && http {
        return Err(syntax("TLS and HTTP buffers in one rule"));
    }
    if bufs.iter().any(|b| b.is_client_hello()) && bufs.iter().any(|b| b.is_cert()) {
        return Err(unsupported(
            "tls.certs",
            "ClientHello and certificate buffers in one rule",
        ));
    }
    let random = |b: &Buf| matches!(b, Buf::TlsRandom | Buf::TlsRandomTime | Buf::TlsRandomBytes);
    if rule.flow_dir == Some(Direction::Response) && bufs.iter().any(random) {
        return Err(unsupported(
            "tls.random",
            "the upstream ServerHello's random is not exposed by the TLS library",
        ));
    }
    if rule.cert_chain_len.is_some() && rule.proto != Proto::Tls {
        return Err(syntax("tls.cert_chain_len in a non-tls rule"));
    }
    if !rule.cert_validity.is_empty() && rule.proto != Proto::Tls {
        return Err(syntax("a tls_cert validity keyword in a non-tls rule"));
    }
    if rule.urilen.is_some() && !matches!(rule.proto, Proto::Http | Proto::Tcp) {
        return Err(syntax("urilen in a non-http rule"));
    }
    Ok(())
}

fn option(
    rule: &mut Rule,
    b: &mut Builder<'_>,
    kw: &str,
    val: Option<&str>,
) -> Result<(), RuleError> {
    if kw == "frame" {
        // Suricata's frames: the WebSocket ones are carried (other protocols' are not).
        let buf = match val.unwrap_or_default().trim() {
            "websocket.header" => Buf::WsHeader,
            "websocket.pdu" => Buf::WsPdu,
            "websocket.data" => Buf::WsData,
            "" => return Err(syntax("frame needs a frame name")),
            other => return Err(unsupported(kw, format!("frame {other:?} is not carried"))),
        };
        return b.start_sticky(buf, None);
    }
    if let Some(buf) = Buf::sticky(kw) {
        let side = sticky_side(rule, kw, buf, val)?;
        return b.start_sticky(buf, side);
    }
    if let Some(t) = Transform::parse(kw, val) {
        let t = t.map_err(syntax)?;
        return b.add_transform(t);
    }
    if let Some(buf) = Buf::legacy_modifier(kw) {
        let (g, i) = b
            .last_content
            .ok_or_else(|| syntax(format!("{kw} without a preceding content")))?;
        if b.groups[g].buf == buf {
            return Ok(());
        }
        let item = b.groups[g].items.remove(i);
        if b.groups[g].items.is_empty() {
            b.groups.remove(g);
        }
        let at = b.push(buf, item);
        b.last_content = Some(at);
        b.last_match = Some(at.0);
        return Ok(());
    }
    match kw {
        "requires" => {}
        "msg" => rule.msg = unquote(val.unwrap_or_default()),
        "sid" => rule.sid = num(kw, val)?,
        "gid" => rule.gid = num(kw, val)?,
        "rev" => rule.rev = num(kw, val)?,
        "classtype" => rule.classtype = val.map(|v| v.trim().to_string()),
        "priority" => rule.priority = Some(num(kw, val)?),
        "reference" => rule.references.push(val.unwrap_or_default().to_string()),
        "metadata" => rule.metadata.extend(
            val.unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        ),
        "target" => match val.map(str::trim) {
            Some(t @ ("src_ip" | "dest_ip")) => rule.target = Some(t.to_string()),
            other => {
                return Err(syntax(format!(
                    "target: {other:?} is not src_ip or dest_ip"
                )))
            }
        },
        "flow" => {
            for part in val.unwrap_or_default().split(',').map(str::trim) {
                match part {
                    "to_server" | "from_client" => rule.flow_dir = Some(Direction::Request),
                    "to_client" | "from_server" => rule.flow_dir = Some(Direction::Response),
                    "established" | "stateless" | "only_stream" | "no_stream" | "" => {}
                    "not_established" | "only_frag" | "no_frag" => {
                        return Err(unsupported("flow", format!("flow:{part} (packet-level)")))
                    }
                    other => return Err(syntax(format!("flow: unknown option {other:?}"))),
                }
            }
        }
        "tls.subject" | "tls.issuerdn" | "tls.fingerprint" => {
            // Suricata's legacy certificate keywords: a (negatable) substring of the subject,
            // the issuer or the SHA-1 fingerprint, as a content on that buffer.
            let v = val.unwrap_or_default();
            if !v.contains('"') {
                return Err(syntax(format!("{kw} needs a quoted value")));
            }
            let c = parse_content(v).map_err(|e| syntax(format!("{kw}: {e}")))?;
            let buf = match kw {
                "tls.subject" => Buf::TlsCertSubject,
                "tls.issuerdn" => Buf::TlsCertIssuer,
                _ => Buf::TlsCertFingerprint,
            };
            let at = b.push(buf, Item::Content(c));
            b.last_content = Some(at);
            b.last_match = Some(at.0);
        }
        "content" | "uricontent" => {
            let v = val.ok_or_else(|| syntax("content needs a value"))?;
            let c = parse_content(v).map_err(|e| syntax(format!("content: {e}")))?;
            if kw == "uricontent" {
                let at = b.push(Buf::Uri, Item::Content(c));
                b.last_content = Some(at);
                b.last_match = Some(at.0);
            } else {
                if let Some(name) = b
                    .sticky_xf
                    .iter()
                    .filter(|_| !c.negated)
                    .find_map(|t| t.refuses_content(&c.pattern))
                {
                    return Err(syntax(format!(
                        "content {:?} is incompatible with the {name} transform",
                        String::from_utf8_lossy(&c.pattern)
                    )));
                }
                let at = b.push_sticky(Item::Content(c));
                b.last_content = Some(at);
                b.last_match = Some(at.0);
            }
        }
        "nocase" => b.last_content(kw)?.set_nocase(),
        "rawbytes" => {
            b.last_content(kw)?;
        }
        "depth" | "offset" | "distance" | "within" => content_modifier(b, kw, val)?,
        "byte_extract" => {
            let e = crate::bytevars::parse_extract(val.unwrap_or_default(), &mut b.names)
                .map_err(|e| syntax(format!("byte_extract: {e}")))?;
            let relative = e.relative;
            b.push_relative(Item::ByteExtract(e), relative);
        }
        "byte_math" => {
            let m = crate::bytevars::parse_math(val.unwrap_or_default(), &mut b.names)
                .map_err(|e| syntax(format!("byte_math: {e}")))?;
            let relative = m.relative;
            b.push_relative(Item::ByteMath(m), relative);
        }
        "startswith" => b.last_content(kw)?.startswith = true,
        "endswith" => b.last_content(kw)?.endswith = true,
        "fast_pattern" => {
            if b.sticky == Buf::Base64Data {
                return Err(syntax("fast_pattern cannot be used with base64_data"));
            }
            let c = b.last_content(kw)?;
            c.fast_pattern = true;
            if let Some(v) = val.map(str::trim) {
                if v != "only" {
                    let (o, l) = v
                        .split_once(',')
                        .ok_or_else(|| syntax(format!("fast_pattern: bad value {v:?}")))?;
                    let o: usize = o
                        .trim()
                        .parse()
                        .map_err(|_| syntax("fast_pattern offset"))?;
                    let l: usize = l
                        .trim()
                        .parse()
                        .map_err(|_| syntax("fast_pattern length"))?;
                    if o + l > c.pattern.len() || l == 0 {
                        return Err(syntax("fast_pattern chop outside the content"));
                    }
                    c.fp_chop = Some((o, l));
                }
            }
        }
        "isdataat" => {
            let v = val.ok_or_else(|| syntax("isdataat needs a value"))?;
            let mut parts = v.split(',').map(str::trim);
            let first = parts.next().unwrap_or_default();
            let (negated, n) = match first.strip_prefix('!') {
                Some(r) => (true, r.trim()),
                None => (false, first),
            };
            let (n, var) = match (n.parse::<u32>(), b.names.get(n)) {
                (Ok(n), _) => (n, None),
                (Err(_), Some(i)) => (0, Some(i)),
                (Err(_), None) => return Err(syntax(format!("isdataat: bad value {n:?}"))),
            };
            let mut relative = false;
            for p in parts {
                match p {
                    "relative" => relative = true,
                    "rawbytes" => {}
                    o => return Err(syntax(format!("isdataat: unknown option {o:?}"))),
                }
            }
            b.push_relative(
                Item::IsDataAt {
                    n,
                    relative,
                    negated,
                    var,
                },
                relative,
            );
        }
        "base64_decode" => {
            let item = parse_base64_decode(val.unwrap_or_default())?;
            b.base64_decode = true;
            // Into the sticky buffer, else the buffer of the last content (`http_uri`-style
            // modifiers), else the payload.
            match b.last_content.filter(|&(g, _)| b.groups[g].buf != b.sticky) {
                Some((g, _)) if b.sticky == Buf::Stream => b.groups[g].items.push(item),
                _ => {
                    b.push_sticky(item);
                }
            }
        }
        "base64_data" => {
            if !b.base64_decode {
                return Err(syntax("base64_data without a preceding base64_decode"));
            }
            if val.is_some_and(|v| !v.trim().is_empty()) {
                return Err(syntax("base64_data takes no option"));
            }
            b.start_sticky(Buf::Base64Data, None)?;
        }
        "absent" => {
            let or_else = match val.map(str::trim) {
                None | Some("") => false,
                Some("or_else") => true,
                Some(o) => return Err(syntax(format!("unhandled value for absent keyword: {o}"))),
            };
            if b.sticky == Buf::Stream {
                return Err(syntax(
                    "absent needs a sticky buffer (the payload is never absent)",
                ));
            }
            let chain = b.sticky_xf.clone();
            let taken = match b.sticky_group {
                Some(g) => b.groups.get(g).is_some_and(|g| g.transforms == chain),
                None => {
                    !b.new_instance()
                        && b.groups.iter().any(|g| {
                            g.buf == b.sticky && g.transforms == chain && !g.items.is_empty()
                        })
                }
            };
            if taken {
                return Err(syntax("absent must come first right after the buffer"));
            }
            b.push_sticky(Item::Absent { or_else });
        }
        "dataset" | "datarep" => {
            if b.sticky == Buf::Stream {
                return Err(syntax(format!(
                    "{kw}: datasets are only supported for sticky buffers"
                )));
            }
            let v = val.unwrap_or_default();
            let u = if kw == "dataset" {
                crate::datasets::parse_dataset(v)
            } else {
                crate::datasets::parse_datarep(v)
            };
            b.push_sticky(Item::Dataset(Box::new(u.map_err(syntax)?)));
        }
        "bsize" => {
            let c = NumCmp::parse(val.unwrap_or_default())
                .map_err(|e| syntax(format!("bsize: {e}")))?;
            b.push_sticky(Item::Bsize(c));
        }
        "urilen" => {
            let v = val.unwrap_or_default();
            let (cmp, raw) = match v.split_once(',').map(|(c, o)| (c, o.trim())) {
                Some((c, "raw")) => (c, true),
                Some((c, "norm")) => (c, false),
                Some((_, o)) => return Err(syntax(format!("urilen: unknown option {o:?}"))),
                None => (v, false),
            };
            let c = NumCmp::parse(cmp).map_err(|e| syntax(format!("urilen: {e}")))?;
            rule.urilen = Some((c, raw));
        }
        "pcre" => {
            let v = val.ok_or_else(|| syntax("pcre needs a value"))?;
            let (pcre, flag_buf) = Pcre::parse(v, b.limits).map_err(|e| match e {
                crate::matchers::PcreError::Syntax(s) => syntax(format!("pcre: {s}")),
                crate::matchers::PcreError::Unsupported(s) => unsupported("pcre", s),
            })?;
            let relative = pcre.relative;
            let at = match flag_buf {
                Some(buf) => b.push(buf, Item::Pcre(Box::new(pcre))),
                None => b.push_relative(Item::Pcre(Box::new(pcre)), relative),
            };
            b.last_match = Some(at.0);
        }
        "byte_test" => {
            // A value or offset named by a variable reads as 0 here and from the variable when
            // the rule runs.
            let (v, vars) = with_vars(val.unwrap_or_default(), &[2, 3], &b.names);
            let mut t = ByteTest::parse(&v).map_err(|e| byte_err("byte_test", e))?;
            (t.value_var, t.offset_var) = (vars[0], vars[1]);
            let relative = t.relative;
            b.push_relative(Item::ByteTest(t), relative);
        }
        "byte_jump" => {
            let (v, vars) = with_vars(val.unwrap_or_default(), &[1], &b.names);
            let mut j = ByteJump::parse(&v).map_err(|e| byte_err("byte_jump", e))?;
            j.offset_var = vars[0];
            let relative = j.relative;
            b.push_relative(Item::ByteJump(j), relative);
        }
        "flowbits" => {
            let v = val.ok_or_else(|| syntax("flowbits needs a value"))?;
            let (cmd, names) = match v.split_once(',') {
                Some((c, n)) => (c.trim(), n.trim()),
                None => (v.trim(), ""),
            };
            let split = |s: &str, sep: char| -> Vec<String> {
                s.split(sep)
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            };
            let need = |n: Vec<String>| -> Result<Vec<String>, RuleError> {
                if n.is_empty() {
                    Err(syntax(format!("flowbits:{cmd} needs a name")))
                } else {
                    Ok(n)
                }
            };
            match cmd {
                "noalert" => rule.noalert = true,
                "set" => rule.flowbits.push(Flowbit::Set(need(split(names, '&'))?)),
                "unset" => rule.flowbits.push(Flowbit::Unset(need(split(names, '&'))?)),
                "toggle" => rule
                    .flowbits
                    .push(Flowbit::Toggle(need(split(names, '&'))?)),
                "isset" => rule.flowbits.push(Flowbit::IsSet(need(split(names, '|'))?)),
                "isnotset" => rule
                    .flowbits
                    .push(Flowbit::IsNotSet(need(split(names, '|'))?)),
                o => return Err(syntax(format!("flowbits: unknown command {o:?}"))),
            }
        }
        "filestore" => {
            if rule.filestore.is_some() {
                return Err(syntax("filestore: only one per rule"));
            }
            rule.filestore = Some(crate::filestore::parse(val).map_err(syntax)?);
        }
        "filemagic" => {
            // Suricata's legacy form: `file.magic; content:…; nocase;`.
            let v = val.ok_or_else(|| syntax("filemagic needs a value"))?;
            let mut c = parse_content(v).map_err(|e| syntax(format!("{kw}: {e}")))?;
            c.set_nocase();
            b.last_content = Some(b.push(Buf::FileMagic, Item::Content(c)));
        }
        "filename" | "fileext" => {
            let v = val.ok_or_else(|| syntax(format!("{kw} needs a value")))?;
            let mut c = parse_content(v).map_err(|e| syntax(format!("{kw}: {e}")))?;
            if kw == "fileext" {
                c.pattern.insert(0, b'.');
                c.endswith = true;
            }
            c.set_nocase();
            b.last_content = Some(b.push(Buf::FileName, Item::Content(c)));
        }
        "filesize" => {
            let (side, rest) = leading_side(val.unwrap_or_default());
            if let Some(d) = side {
                rule_side(rule, d)?;
                rule.filesize_side = Some(d);
            }
            rule.filesize = Some(crate::files::parse_filesize(rest).map_err(syntax)?)
        }
        "filemd5" | "filesha1" | "filesha256" => {
            use crate::files::{FileHash, HashKind};
            let kind = match kw {
                "filemd5" => HashKind::Md5,
                "filesha1" => HashKind::Sha1,
                _ => HashKind::Sha256,
            };
            let h = FileHash::load(kind, val.unwrap_or_default(), &rule.file).map_err(syntax)?;
            rule.file_hashes.push(h);
        }
        "flowint" => rule
            .flowints
            .push(crate::state::Flowint::parse(val.unwrap_or_default()).map_err(syntax)?),
        "xbits" => match crate::state::Xbit::parse(val.unwrap_or_default()) {
            Ok(crate::state::XbitsOption::Bit(x)) => rule.xbits.push(x),
            Ok(crate::state::XbitsOption::NoAlert) => rule.noalert = true,
            Err((true, why)) => return Err(unsupported("xbits", why)),
            Err((false, why)) => return Err(syntax(why)),
        },
        "noalert" => rule.noalert = true,
        "threshold" => rule.threshold = Some(parse_threshold(val.unwrap_or_default(), false)?),
        "detection_filter" => {
            rule.detection_filter = Some(parse_threshold(val.unwrap_or_default(), true)?)
        }
        "tls.version" | "tls_version" => {
            let v = val.unwrap_or_default().trim();
            rule.tls_version = Some(match v {
                "1.0" => 0x0301,
                "1.1" => 0x0302,
                "1.2" => 0x0303,
                "1.3" => 0x0304,
                "3.0" | "ssl3" => 0x0300,
                other => {
                    let hex = other.trim_start_matches("0x");
                    u16::from_str_radix(hex, 16)
                        .map_err(|_| syntax(format!("tls.version: bad version {other:?}")))?
                }
            });
        }
        "ja3s.hash" | "ja3s_hash" | "ja3s.string" => {
            return Err(unsupported(
                kw,
                "the upstream ServerHello is not exposed by the TLS library",
            ))
        }
        "tls_cert_notbefore" | "tls_cert_notafter" => {
            let v = val.ok_or_else(|| syntax(format!("{kw} needs a date")))?;
            let after = kw == "tls_cert_notafter";
            let c = crate::validity::Validity::parse_date(v, after)
                .map_err(|e| syntax(format!("{kw}: {e}")))?;
            rule.cert_validity.push(c);
        }
        "tls_cert_expired" | "tls_cert_valid" => {
            if val.is_some_and(|v| !v.trim().is_empty()) {
                return Err(syntax(format!("{kw} takes no value")));
            }
            rule.cert_validity.push(match kw {
                "tls_cert_expired" => crate::validity::Validity::Expired,
                _ => crate::validity::Validity::Valid,
            });
        }
        "tls.cert_chain_len" => {
            let v = val.ok_or_else(|| syntax("tls.cert_chain_len needs a value"))?;
            let u = crate::uint::Uint::parse(v, u64::from(u32::MAX))
                .map_err(|e| syntax(format!("tls.cert_chain_len: {e}")))?;
            rule.cert_chain_len = Some(u);
        }
        "websocket.opcode" | "websocket.mask" | "websocket.flags" => {
            let v = val.ok_or_else(|| syntax(format!("{kw} needs a value")))?;
            let bad = |e: String| syntax(format!("{kw}: {e}"));
            rule.ws.push(match kw {
                "websocket.opcode" => WsCond::Opcode(
                    crate::uint::Uint::parse_enum(v, u64::from(u8::MAX), WS_OPCODES)
                        .map_err(bad)?,
                ),
                "websocket.mask" => {
                    WsCond::Mask(crate::uint::Uint::parse(v, u64::from(u32::MAX)).map_err(bad)?)
                }
                _ => WsCond::Flags(
                    crate::uint::Uint::parse_flags(v, u64::from(u8::MAX), WS_FLAGS, true)
                        .map_err(bad)?,
                ),
            });
        }
        "app-layer-event" => {
            let id = crate::events::parse_keyword(val.unwrap_or_default()).map_err(|e| {
                // Suricata warns and skips a rule naming an event it does not know.
                if e.contains("unknown") || e.contains("not carried") {
                    unsupported(kw, e)
                } else {
                    syntax(e)
                }
            })?;
            rule.app_events.push(id);
        }
        "tag" | "dsize" | "stream_size" | "flags" | "asn1" | "ftpbounce" | "ip_proto" | "ttl"
        | "itype" | "icode" | "fragbits" | "window" | "ack" | "seq" | "lua" | "luajit"
        | "replace" | "http.uri.len" => return Err(unsupported(kw, "keyword not implemented")),
        "domain" | "tld" => {
            return Err(unsupported(
                kw,
                "transform not implemented (needs the Public Suffix List)",
            ))
        }
        "luaxform" => return Err(unsupported(kw, "Lua is not embedded")),
        other => {
            return Err(unsupported(other, "unknown keyword"));
        }
    }
    Ok(())
}

fn byte_err(kw: &str, e: crate::matchers::ByteError) -> RuleError {
    match e {
        crate::matchers::ByteError::Syntax(s) => syntax(format!("{kw}: {s}")),
        crate::matchers::ByteError::Unsupported(s) => unsupported(kw, s),
    }
}

/// `byte_test` / `byte_jump` arguments with the variables at `positions` replaced by `0`, and
/// which variable each of those positions named.
fn with_vars(
    v: &str,
    positions: &[usize],
    names: &crate::bytevars::Names,
) -> (String, Vec<Option<u8>>) {
    let mut args: Vec<String> = v.split(',').map(|a| a.trim().to_string()).collect();
    let vars = positions
        .iter()
        .map(|&p| {
            let i = args.get(p).and_then(|a| names.get(a))?;
            args[p] = "0".into();
            Some(i)
        })
        .collect();
    (args.join(","), vars)
}

/// `depth`, `offset`, `distance`, `within`: a number, or a `byte_extract` / `byte_math`
/// variable (the modifier then holds 0 until the rule runs).
fn content_modifier(b: &mut Builder<'_>, kw: &str, val: Option<&str>) -> Result<(), RuleError> {
    let s = val.unwrap_or_default().trim();
    let var = b.names.get(s);
    let c = b.last_content(kw)?;
    if let Some(i) = var {
        let v = c.vars.get_or_insert_with(Default::default);
        match kw {
            "depth" => (v.depth, c.depth) = (Some(i), Some(0)),
            "offset" => (v.offset, c.offset) = (Some(i), Some(0)),
            "distance" => (v.distance, c.distance) = (Some(i), Some(0)),
            _ => (v.within, c.within) = (Some(i), Some(0)),
        }
        return Ok(());
    }
    match kw {
        "depth" => c.depth = Some(num(kw, val)?),
        "offset" => c.offset = Some(num(kw, val)?),
        "distance" => c.distance = Some(num_or_var(kw, val)?),
        _ => c.within = Some(num_or_var(kw, val)?),
    }
    Ok(())
}

fn num_or_var(kw: &str, v: Option<&str>) -> Result<i32, RuleError> {
    let s = v
        .ok_or_else(|| syntax(format!("{kw} needs a value")))?
        .trim();
    match s.parse() {
        Ok(n) => Ok(n),
        Err(_) if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => Err(unsupported(
            "byte_extract",
            format!("{kw} from an extracted variable"),
        )),
        Err(_) => Err(syntax(format!("{kw}: bad number {s:?}"))),
    }
}

fn parse_threshold(v: &str, detection_filter: bool) -> Result<Threshold, RuleError> {
    let kw = if detection_filter {
        "detection_filter"
    } else {
        "threshold"
    };
    let (mut kind, mut track, mut count, mut seconds) = (
        if detection_filter {
            Some(ThresholdKind::DetectionFilter)
        } else {
            None
        },
        None,
        None,
        None,
    );
    for part in v.split(',') {
        let mut it = part.split_whitespace();
        let (Some(k), Some(val), None) = (it.next(), it.next(), it.next()) else {
            return Err(syntax(format!("{kw}: bad part {:?}", part.trim())));
        };
        match k {
            "type" if !detection_filter => {
                kind = Some(match val {
                    "limit" => ThresholdKind::Limit,
                    "threshold" => ThresholdKind::Threshold,
                    "both" => ThresholdKind::Both,
                    o => return Err(syntax(format!("{kw}: unknown type {o:?}"))),
                })
            }
            "track" => {
                track = Some(
                    parse_track(val)
                        .ok_or_else(|| syntax(format!("{kw}: unknown track {val:?}")))?,
                )
            }
            "count" => {
                count = Some(
                    val.parse()
                        .map_err(|_| syntax(format!("{kw}: bad count")))?,
                )
            }
            "seconds" => {
                seconds = Some(
                    val.parse()
                        .map_err(|_| syntax(format!("{kw}: bad seconds")))?,
                )
            }
            o => return Err(syntax(format!("{kw}: unknown part {o:?}"))),
        }
    }
    match (kind, track, count, seconds) {
        (Some(kind), Some(track), Some(count), Some(seconds)) => Ok(Threshold {
            kind,
            track,
            count,
            seconds,
        }),
        _ => Err(syntax(format!("{kw} needs type, track, count and seconds"))),
    }
}

/// Parses a `threshold` clause (`type limit, track by_src, count 1, seconds 60`), as in a rule
/// or a threshold.config line.
pub fn parse_threshold_clause(v: &str) -> Result<Threshold, RuleError> {
    parse_threshold(v, false)
}

/// Parses a `track` value.
pub fn parse_track(v: &str) -> Option<Track> {
    Some(match v {
        "by_src" => Track::BySrc,
        "by_dst" => Track::ByDst,
        "by_rule" => Track::ByRule,
        "by_both" => Track::ByBoth,
        _ => return None,
    })
}
