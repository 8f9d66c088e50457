//! Masking of personal data before events leave: query values, body excerpts, named headers and
//! any field named by a JSON pointer become `masked:<16 hex>` — the first 64 bits of
//! HMAC-SHA-256 under the gateway's key, so equal values still correlate across events while
//! the value itself cannot be read back (nor guessed without the key). A field named by pointer
//! keeps its JSON type (a number stays a number, an IP address becomes one in 2001:db8::/32),
//! so the index mapping takes masked events too.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// `[mss.mask]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// Mask every query value in URLs (`http.url`, `url_filter.canonical`, the communication
    /// log's `path`, URL evidence); parameter names stay.
    #[serde(default)]
    pub query: bool,
    /// Mask evidence excerpts taken from bodies and files.
    #[serde(default)]
    pub body: bool,
    /// Header names (case-insensitive) whose values are masked: in header evidence, in
    /// `http.user_agent` for `user-agent`.
    #[serde(default)]
    pub headers: Vec<String>,
    /// More fields to mask, as JSON pointers (`/source/ip`, `/facility/id`).
    #[serde(default)]
    pub fields: Vec<String>,
}

impl MaskConfig {
    /// True when something is to be masked.
    pub fn enabled(&self) -> bool {
        self.query || self.body || !self.headers.is_empty() || !self.fields.is_empty()
    }
}

/// Errors reading or creating the key.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyError {
    /// Key file.
    pub path: PathBuf,
    /// Why.
    pub message: String,
}

/// Reads the key file (at least 16 bytes), creating it (32 random bytes, mode 0600) when missing.
pub fn load_or_create_key(path: &Path) -> Result<Vec<u8>, KeyError> {
    let err = |m: String| KeyError {
        path: path.to_path_buf(),
        message: m,
    };
    match std::fs::read(path) {
        Ok(k) if k.len() >= 16 => Ok(k),
        Ok(k) => Err(err(format!(
            "key too short ({} bytes, at least 16 needed)",
            k.len()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 32];
            rustls::crypto::aws_lc_rs::default_provider()
                .secure_random
                .fill(&mut key)
                .map_err(|_| err("no secure random source".into()))?;
            if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d).map_err(|e| err(format!("creating folder: {e}")))?;
            }
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let mut f = o.open(path).map_err(|e| err(format!("creating: {e}")))?;
            f.write_all(&key)
                .and_then(|_| f.sync_all())
                .map_err(|e| err(format!("writing: {e}")))?;
            Ok(key)
        }
        Err(e) => Err(err(format!("reading: {e}"))),
    }
}

/// HMAC-SHA-256 of `data` under `key`.
pub fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).expect("a 32-byte key is valid")
    });
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Applies a [`MaskConfig`] with a key.
#[derive(Clone)]
pub struct Masker {
    key: Vec<u8>,
    query: bool,
    body: bool,
    headers: Vec<String>,
    fields: Vec<String>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Masker")
            .field("query", &self.query)
            .field("body", &self.body)
            .field("headers", &self.headers)
            .field("fields", &self.fields)
            .finish()
    }
}

const URL_EVIDENCE: &[&str] = &[
    "request.url",
    "http.uri",
    "http.uri.raw",
    "http.request_line",
    "http.start",
];

impl Masker {
    /// A masker for `cfg` keyed by `key`.
    pub fn new(cfg: &MaskConfig, key: Vec<u8>) -> Masker {
        Masker {
            key,
            query: cfg.query,
            body: cfg.body,
            headers: cfg.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            fields: cfg.fields.clone(),
        }
    }

    /// The masked form of `value`: `masked:` and 16 hex digits of its keyed hash.
    pub fn token(&self, value: &str) -> String {
        let h = hmac256(&self.key, &[value.as_bytes()]);
        format!("masked:{}", hex::encode(&h[..8]))
    }

    /// `url` with every query value masked (names kept; a fragment dropped).
    pub fn mask_query(&self, url: &str) -> String {
        let Some((head, q)) = url.split_once('?') else {
            return url.to_string();
        };
        let q = q.split('#').next().unwrap_or("");
        let parts: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, v)) if !v.is_empty() => format!("{k}={}", self.token(v)),
                Some((k, _)) => format!("{k}="),
                None if p.is_empty() => String::new(),
                None => self.token(p),
            })
            .collect();
        format!("{head}?{}", parts.join("&"))
    }

    /// Masks the values of named headers in `Name: value` lines.
    fn mask_header_lines(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let masked = line.split_once(':').and_then(|(name, value)| {
                let n = name.trim().to_ascii_lowercase();
                self.headers.contains(&n).then(|| {
                    let v = value.trim().trim_end_matches('\r');
                    let cr = if line.ends_with('\r') { "\r" } else { "" };
                    format!("{name}: {}{cr}", self.token(v))
                })
            });
            out.push_str(masked.as_deref().unwrap_or(line));
        }
        out
    }

    fn mask_str(v: &mut Value, f: impl FnOnce(&str) -> String) {
        if let Some(s) = v.as_str() {
            *v = Value::String(f(s));
        }
    }

    /// The masked evidence excerpt for a buffer `location`, or `None` when it stays.
    fn mask_excerpt(&self, location: &str, excerpt: &str) -> Option<String> {
        let location = location.to_ascii_lowercase();
        if location.is_empty() {
            return None;
        }
        let is_body =
            location.contains("body") || location.starts_with("file") || location == "pkt_data";
        let header_buffer = location
            .strip_prefix("request.header.")
            .or_else(|| location.strip_prefix("http."))
            .map(|h| h.trim_end_matches(".raw").replace('_', "-"));
        let named_header = header_buffer.is_some_and(|h| self.headers.contains(&h));
        if (self.body && is_body) || named_header {
            Some(self.token(excerpt))
        } else if self.query && URL_EVIDENCE.contains(&location.as_str()) {
            Some(self.mask_query(excerpt))
        } else if !self.headers.is_empty()
            && (location.contains("header") || location == "http.start")
        {
            Some(self.mask_header_lines(excerpt))
        } else {
            None
        }
    }

    /// True when [`Masker::apply_event`] covers everything configured (no JSON pointers).
    pub fn typed(&self) -> bool {
        self.fields.is_empty()
    }

    /// Masks a threat event in place without going through JSON (what [`Masker::apply`] does
    /// to its JSON form, except `fields`; see [`Masker::typed`]).
    pub fn apply_event(&self, ev: &mut sekisho_core::ThreatEvent) {
        if self.query {
            if let Some(h) = ev.http.as_mut() {
                h.url = self.mask_query(&h.url);
            }
            if let Some(u) = ev.url_filter.as_mut() {
                u.canonical = self.mask_query(&u.canonical);
            }
        }
        if let Some(m) = self.mask_excerpt(&ev.evidence.location, &ev.evidence.excerpt) {
            ev.evidence.excerpt = m;
        }
        if self.headers.iter().any(|h| h == "user-agent") {
            if let Some(ua) = ev.http.as_mut().and_then(|h| h.user_agent.as_mut()) {
                *ua = self.token(ua);
            }
        }
    }

    /// Masks a communication-log line in place (its `path`), as [`Masker::apply`] would.
    pub fn apply_flow(&self, line: &mut sekisho_core::CommLog) {
        if self.query {
            if let Some(p) = line.path.as_mut() {
                *p = self.mask_query(p);
            }
        }
    }

    /// Masks `ev` in place.
    pub fn apply(&self, ev: &mut Value) {
        if self.query {
            if let Some(v) = ev.pointer_mut("/http/url") {
                Self::mask_str(v, |s| self.mask_query(s));
            }
            if let Some(v) = ev.pointer_mut("/url_filter/canonical") {
                Self::mask_str(v, |s| self.mask_query(s));
            }
            if ev.get("event_type").and_then(Value::as_str) == Some("flow") {
                if let Some(v) = ev.pointer_mut("/path") {
                    Self::mask_str(v, |s| self.mask_query(s));
                }
            }
        }
        let location = ev
            .pointer("/evidence/location")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(v) = ev.pointer_mut("/evidence/excerpt") {
            if let Some(m) = v.as_str().and_then(|x| self.mask_excerpt(&location, x)) {
                *v = Value::String(m);
            }
        }
        if self.headers.iter().any(|h| h == "user-agent") {
            if let Some(v) = ev.pointer_mut("/http/user_agent") {
                Self::mask_str(v, |s| self.token(s));
            }
        }
        for p in &self.fields {
            if let Some(v) = ev.pointer_mut(p) {
                self.mask_keeping_type(v);
            }
        }
    }

    /// Masks a field named by pointer and keeps its JSON type, so an index mapping still takes
    /// the event: a number becomes a number (53 bits of the HMAC), an IP address an address in
    /// 2001:db8::/32 (the documentation prefix: never a real host), other text a token.
    fn mask_keeping_type(&self, v: &mut Value) {
        match v {
            Value::Number(n) => {
                let h = hmac256(&self.key, &[b"number:", n.to_string().as_bytes()]);
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[..8]);
                *v = Value::from(u64::from_be_bytes(b) >> 11);
            }
            Value::String(s) if s.parse::<std::net::IpAddr>().is_ok() => {
                let h = hmac256(&self.key, &[b"ip:", s.as_bytes()]);
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                b[4..].copy_from_slice(&h[..12]);
                *v = Value::String(std::net::Ipv6Addr::from(b).to_string());
            }
            Value::String(s) => *v = Value::String(self.token(s)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn masker() -> Masker {
        Masker::new(
            &MaskConfig {
                query: true,
                body: true,
                headers: vec!["Cookie".into(), "user-agent".into()],
                fields: vec!["/source/ip".into(), "/source/port".into()],
            },
            b"0123456789abcdef0123456789abcdef".to_vec(),
        )
    }

    #[test]
    fn masks_query_values_keeps_names_and_correlates() {
        let m = masker();
        let a = m.mask_query("http://h/p?patient=12345&x=&flag#frag");
        assert!(a.starts_with("http://h/p?patient=masked:"), "{a}");
        assert!(!a.contains("12345") && !a.contains("frag"), "{a}");
        assert!(a.contains("&x=&masked:"), "{a}");
        assert_eq!(a, m.mask_query("http://h/p?patient=12345&x=&flag"));
        assert_ne!(
            m.mask_query("http://h/?patient=12345"),
            m.mask_query("http://h/?patient=12346")
        );
        let other = Masker::new(&MaskConfig::default(), b"another key 0123456789".to_vec());
        assert_ne!(m.token("12345"), other.token("12345"));
        assert_eq!(m.mask_query("http://h/p"), "http://h/p");
    }

    #[test]
    fn masks_event_fields() {
        let m = masker();
        let mut ev = serde_json::json!({
            "event_type": "alert",
            "http": {"url": "http://h/a?name=Taro", "user_agent": "curl/8"},
            "url_filter": {"canonical": "http://h/a?name=Taro"},
            "evidence": {"location": "http.header", "excerpt": "Host: h\r\nCookie: sid=secret\r\n"},
            "source": {"ip": "10.1.2.3", "port": 4000}
        });
        m.apply(&mut ev);
        let t = ev.to_string();
        for secret in ["Taro", "curl/8", "sid=secret", "10.1.2.3", "4000"] {
            assert!(!t.contains(secret), "{secret} in {t}");
        }
        // Fields named by pointer keep their JSON type (the index mapping takes them).
        let ip = ev["source"]["ip"].as_str().unwrap();
        assert!(ip.starts_with("2001:db8:"), "{ip}");
        assert!(ip.parse::<std::net::Ipv6Addr>().is_ok(), "{ip}");
        let port = ev["source"]["port"].as_u64().unwrap();
        assert!(port < 1 << 53, "{port}");
        let mut again = serde_json::json!({"source": {"ip": "10.1.2.3", "port": 4000}});
        m.apply(&mut again);
        assert_eq!(again["source"], ev["source"], "equal values correlate");
        assert!(t.contains("Host: h\\r\\nCookie: masked:"), "{t}");
        let mut body = serde_json::json!({"evidence": {"location": "http.request_body", "excerpt": "<PatientName>Yamada</PatientName>"}});
        m.apply(&mut body);
        assert!(body["evidence"]["excerpt"]
            .as_str()
            .unwrap()
            .starts_with("masked:"));
        let mut cookie =
            serde_json::json!({"evidence": {"location": "http.cookie", "excerpt": "sid=1"}});
        m.apply(&mut cookie);
        assert_eq!(cookie["evidence"]["excerpt"], m.token("sid=1"));
        let mut flow = serde_json::json!({"event_type": "flow", "path": "/s?q=1"});
        m.apply(&mut flow);
        assert_eq!(flow["path"], format!("/s?q={}", m.token("1")));
    }

    #[test]
    fn typed_and_json_masking_agree() {
        use sekisho_core::{
            DestinationInfo, Evidence, Finding, FlowMeta, HttpInfo, Observer, Severity, ThreatEvent,
        };
        let m = Masker::new(
            &MaskConfig {
                query: true,
                body: true,
                headers: vec!["user-agent".into()],
                fields: vec![],
            },
            b"0123456789abcdef".to_vec(),
        );
        for (loc, excerpt) in [
            ("http.uri", "/a?patient=1"),
            ("http.request_body", "<Name>Yamada</Name>"),
            ("http.user_agent", "curl/8"),
        ] {
            let f = Finding::new(
                "ips",
                "1",
                "x",
                Severity::High,
                "c",
                Evidence::new(loc, excerpt),
            );
            let meta = FlowMeta::new(
                1,
                "l",
                "10.0.0.1:1".parse().unwrap(),
                "10.0.0.2:2".parse().unwrap(),
            );
            let http = HttpInfo {
                method: "GET".into(),
                url: "http://h/a?patient=1".into(),
                hostname: None,
                status: None,
                user_agent: Some("curl/8".into()),
                request_id: None,
            };
            let mut ev = ThreatEvent::from_finding(
                &f,
                &meta,
                &Observer::default(),
                DestinationInfo::default(),
                Some(http),
            );
            let mut v = serde_json::to_value(&ev).unwrap();
            m.apply(&mut v);
            m.apply_event(&mut ev);
            assert_eq!(serde_json::to_value(&ev).unwrap(), v, "{loc}");
            assert!(!v.to_string().contains("patient=1"));
        }
    }

    #[test]
    fn key_created_0600_and_reused() {
        let d = std::env::temp_dir().join(format!("sekisho-mask-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let p = d.join("mss.key");
        let k = load_or_create_key(&p).unwrap();
        assert_eq!(k.len(), 32);
        assert_eq!(load_or_create_key(&p).unwrap(), k);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, b"short").unwrap();
        assert!(load_or_create_key(&p)
            .unwrap_err()
            .to_string()
            .contains("too short"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
