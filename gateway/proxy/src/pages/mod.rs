//! The pages the gateway shows instead of a site (blocks, warnings, failures): the reason in words
//! in the client's language, the facts as a list, always the event id; no external resources.

mod catalogue;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use sekisho_core::Finding;

pub use catalogue::{Catalogue, Pages};

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Why the page is shown: each is a title, a sentence and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A URL category the policy blocks.
    Category(String),
    /// A host on the operator's own block list (`deny_hosts`, a URL list).
    Listed(String),
    /// Another policy decision.
    Policy,
    /// The antivirus found this signature.
    Malware(String),
    /// An intrusion-prevention signature matched.
    Attack(String),
    /// A body over the hold limit (bytes) that the policy does not pass unscanned.
    TooLarge(u64),
    /// A stage could not inspect the content (timeout, failure).
    Uninspected(String),
    /// The destination policy refused where the request would go.
    Destination(String),
    /// The upstream's certificate did not verify (the reason in words).
    Certificate(String),
    /// The upstream's name did not resolve.
    NotFound,
    /// The upstream could not be reached.
    Unreachable(String),
    /// The upstream did not answer in time (the duration in words).
    Timeout(String),
    /// A reverse route does not admit this facility on this path.
    Facility {
        /// The facility ID from the client certificate.
        facility: String,
        /// The certificate's roles, comma-separated (`none` when it has none).
        roles: String,
        /// The route that refused.
        route: String,
        /// The canonical path asked for.
        path: String,
    },
    /// A reverse route admits only clients with a certificate, and none was presented.
    NoCertificate,
    /// A request the gateway refuses to forward as written.
    BadRequest(String),
    /// A category the policy asks the user to confirm; the link continues.
    Warn {
        /// The category that asks for confirmation.
        category: String,
        /// Where the continue link leads.
        continue_url: String,
    },
}

impl Reason {
    /// The message key (`title.<key>`, `reason.<key>`).
    fn key(&self) -> &'static str {
        match self {
            Reason::Category(_) => "category",
            Reason::Listed(_) => "listed",
            Reason::Policy => "policy",
            Reason::Malware(_) => "malware",
            Reason::Attack(_) => "attack",
            Reason::TooLarge(_) => "too_large",
            Reason::Uninspected(_) => "uninspected",
            Reason::Destination(_) => "destination",
            Reason::Certificate(_) => "certificate",
            Reason::NotFound => "not_found",
            Reason::Unreachable(_) => "unreachable",
            Reason::Timeout(_) => "timeout",
            Reason::Facility { .. } => "facility",
            Reason::NoCertificate => "no_certificate",
            Reason::BadRequest(_) => "bad_request",
            Reason::Warn { .. } => "warn",
        }
    }

    /// The title's key: the reasons of an ordinary block share one.
    fn title_key(&self) -> &'static str {
        match self {
            Reason::Category(_) | Reason::Listed(_) | Reason::Policy | Reason::Attack(_) => {
                "blocked"
            }
            other => other.key(),
        }
    }

    /// The reason a blocking finding gives: its URL category, signature or hold failure.
    pub fn of_finding(f: &Finding) -> Reason {
        if let Some(url) = &f.url {
            return match url.source.as_str() {
                "list" => Reason::Listed(url.category.clone()),
                _ => Reason::Category(url.category.clone()),
            };
        }
        match (f.stage, f.rule_id.as_str()) {
            (_, "hold-limit") => match f
                .message
                .split_once("limit of ")
                .and_then(|(_, t)| t.split(' ').next())
                .and_then(|n| n.parse().ok())
            {
                Some(n) => Reason::TooLarge(n),
                None => Reason::Uninspected(f.message.clone()),
            },
            (_, "hold-failed" | "stage-timeout" | "stage-error" | "stage-panic") => {
                Reason::Uninspected(f.message.clone())
            }
            ("av", _) => Reason::Malware(f.rule_id.clone()),
            ("ips", _) => Reason::Attack(f.message.clone()),
            ("host_policy", _) => Reason::Listed(f.rule_id.clone()),
            _ => Reason::Policy,
        }
    }

    /// Placeholder values of the sentence, and the facts listed under it (label key, value).
    fn facts(&self) -> (Facts, Facts) {
        let one = |k: &'static str, v: &String| (vec![(k, v.clone())], vec![(k, v.clone())]);
        match self {
            Reason::Category(c) | Reason::Warn { category: c, .. } => one("category", c),
            Reason::Listed(c) => one("category", c),
            Reason::Malware(s) | Reason::Attack(s) => one("signature", s),
            Reason::TooLarge(n) => (vec![("limit", bytes_in_words(*n))], vec![]),
            Reason::Uninspected(d)
            | Reason::Destination(d)
            | Reason::Certificate(d)
            | Reason::Unreachable(d)
            | Reason::Timeout(d)
            | Reason::BadRequest(d) => one("detail", d),
            Reason::Facility {
                facility,
                roles,
                route,
                path,
            } => {
                let v = vec![
                    ("facility", facility.clone()),
                    ("roles", roles.clone()),
                    ("route", route.clone()),
                    ("path", path.clone()),
                ];
                (v.clone(), v)
            }
            Reason::Policy | Reason::NotFound | Reason::NoCertificate => (vec![], vec![]),
        }
    }
}

/// Named values: (message key, value).
type Facts = Vec<(&'static str, String)>;

/// `32 MiB`, `1.5 GiB`, `512 bytes`.
pub fn bytes_in_words(n: u64) -> String {
    const UNITS: &[(u64, &str)] = &[(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= *size {
            return if n % size == 0 {
                format!("{} {unit}", n / size)
            } else {
                format!("{:.1} {unit}", n as f64 / *size as f64)
            };
        }
    }
    format!("{n} bytes")
}

/// What one page says, whatever its language.
#[derive(Debug, Clone)]
pub struct Page {
    /// Why.
    pub reason: Reason,
    /// The site asked for.
    pub host: String,
    /// The event to quote to the help desk.
    pub event_id: Option<uuid::Uuid>,
}

impl Page {
    /// A page for `host`.
    pub fn new(reason: Reason, host: &str, event_id: Option<uuid::Uuid>) -> Page {
        Page {
            reason,
            host: host.to_string(),
            event_id,
        }
    }

    /// The page's HTML in `lang`.
    pub fn render(&self, pages: &Pages, lang: &Catalogue) -> String {
        let en = pages.english();
        let text = |k: &str| lang.text(k, en);
        let (values, facts) = self.reason.facts();
        let fill = |template: &str| {
            let mut s = escape(template);
            s = s.replace("{host}", &escape(&self.host));
            for (k, v) in &values {
                s = s.replace(&format!("{{{k}}}"), &escape(v));
            }
            s
        };
        let mut details = format!(
            "<dt>{}</dt><dd><code id=\"host\">{}</code></dd>\n",
            escape(text("label.host")),
            escape(&self.host)
        );
        for (k, v) in &facts {
            details.push_str(&format!(
                "<dt>{}</dt><dd id=\"{k}\">{}</dd>\n",
                escape(text(&format!("label.{k}"))),
                escape(v)
            ));
        }
        details.push_str(&format!(
            "<dt>{}</dt><dd><time>{}</time></dd>",
            escape(text("label.time")),
            sekisho_core::event::now_rfc3339()
        ));
        let next = match &self.reason {
            Reason::Warn { continue_url, .. } => format!(
                "<p>{}</p>\n<p><a id=\"continue\" href=\"{}\">{}</a></p>",
                escape(text("warn_help")),
                escape(continue_url),
                fill(text("continue"))
            ),
            _ => format!("<p>{}</p>", escape(text("help"))),
        };
        let color = match self.reason {
            Reason::Warn { .. } => "#8a4b00",
            _ => "#a00000",
        };
        let id = self
            .event_id
            .map(|i| i.to_string())
            .unwrap_or_else(|| "-".into());
        lang.template()
            .replace("{{lang}}", &escape(&lang.lang))
            .replace(
                "{{title}}",
                &escape(text(&format!("title.{}", self.reason.title_key()))),
            )
            .replace("{{color}}", color)
            .replace(
                "{{reason}}",
                &fill(text(&format!("reason.{}", self.reason.key()))),
            )
            .replace("{{details}}", &details)
            .replace("{{event_label}}", &escape(text("label.event_id")))
            .replace("{{event_id}}", &id)
            .replace("{{next}}", &next)
            .replace("{{footer}}", &escape(text("footer")))
    }

    /// The page as a response: `status`, `text/html`, `no-store`, `X-Sekisho-Event-Id`, and
    /// `X-Sekisho-Action: warn` for a warning.
    pub fn response(&self, status: StatusCode, pages: &Pages, lang: &Catalogue) -> Response<Bytes> {
        let mut r = Response::new(Bytes::from(self.render(pages, lang)));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&lang.lang) {
            h.insert(header::CONTENT_LANGUAGE, v);
        }
        if let Some(id) = self.event_id {
            if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
                h.insert("x-sekisho-event-id", v);
            }
        }
        if matches!(self.reason, Reason::Warn { .. }) {
            h.insert("x-sekisho-action", HeaderValue::from_static("warn"));
        }
        r
    }
}

#[cfg(test)]
mod tests;
