//! The `url` stage: decides CONNECT hosts and TLS SNIs before decryption and every HTTP request
//! URL (plain or decrypted) by the flow's policy.

use std::sync::Arc;

use sekisho_core::{
    Action as EventAction, Cx, Evidence, Finding, FlowMeta, Inspector, RequestHead, Respond,
    Severity, Stage, TlsHello, TlsMode, UrlCategoryInfo, Verdict,
};

use crate::canonical::canonicalize;
use crate::filter::{Action, Decision, UrlFilter};
use crate::warn::{WarnStore, CONTINUE_PATH};

/// The stage. Holds one filter snapshot; reload builds a new stage.
pub struct UrlStage {
    filter: Arc<UrlFilter>,
    warn: Arc<WarnStore>,
}

impl UrlStage {
    /// A stage deciding with `filter`; warning acknowledgements live in `warn`.
    pub fn new(filter: Arc<UrlFilter>, warn: Arc<WarnStore>) -> Self {
        UrlStage { filter, warn }
    }
}

impl Stage for UrlStage {
    fn name(&self) -> &'static str {
        "url"
    }
    fn new_flow(&self, meta: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(UrlInspector {
            policy: self.filter.policy_for(&meta.listener, meta.client.ip()),
            filter: Arc::clone(&self.filter),
            warn: Arc::clone(&self.warn),
            connect_host: None,
        })
    }
    fn never_decrypt(&self, host: &str) -> Option<String> {
        self.filter
            .splice_match(host)
            .map(|category| format!("category {category} is spliced"))
    }
    fn host_categories(&self, host: &str) -> Vec<String> {
        self.filter.host_categories(host)
    }
}

struct UrlInspector {
    filter: Arc<UrlFilter>,
    warn: Arc<WarnStore>,
    policy: usize,
    connect_host: Option<String>,
}

/// What was judged, where.
#[derive(Clone, Copy)]
struct Judged<'a> {
    /// Evidence location (`request.url`, `connect.host`, `tls.sni` …).
    location: &'a str,
    /// The canonical URL or host.
    judged: &'a str,
    /// The canonical host (warn acknowledgements are per client and host).
    host: &'a str,
    /// CONNECT / SNI: `warn` passes (the page comes on the decrypted request).
    host_only: bool,
    /// Where a continue link sends the client back to.
    return_url: &'a str,
}

fn severity(category: &str, action: Action) -> Severity {
    match (category, action) {
        ("malware" | "phishing" | "cryptojacking" | "ddos" | "stalkerware", _) => Severity::High,
        (_, Action::Block) => Severity::Medium,
        _ => Severity::Low,
    }
}

impl UrlInspector {
    /// Turns a decision into a verdict and (unless allowed) a finding. `host_only` decisions
    /// (CONNECT, SNI) let `warn` through: the page is shown on the decrypted request.
    fn act(&self, cx: &mut Cx<'_>, d: &Decision, j: &Judged<'_>) -> Verdict {
        let Judged {
            location,
            judged,
            host,
            host_only,
            return_url,
        } = *j;
        let policy = self
            .filter
            .policies()
            .get(d.policy)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let client = cx.meta().client.ip();
        let verdict = match d.action {
            Action::Allow => return Verdict::Allow,
            Action::Alert => Verdict::Alert,
            Action::Block => Verdict::Block,
            Action::Warn if host_only => return Verdict::Allow,
            Action::Warn => {
                if self.warn.acknowledged(client, host) {
                    return Verdict::Allow;
                }
                let category = d
                    .deciding
                    .as_ref()
                    .map(|m| self.filter.name(m.name).to_string())
                    .unwrap_or_else(|| "default".into());
                let token =
                    self.warn
                        .issue(client, host, return_url, &category, self.filter.warn_ttl);
                let scheme = if cx.meta().tls == TlsMode::Decrypted {
                    "https"
                } else {
                    "http"
                };
                let port = cx.meta().target_port.unwrap_or(0);
                let authority = match (scheme, port) {
                    ("https", 443) | ("http", 80) | (_, 0) => host_authority(host),
                    _ => format!("{}:{port}", host_authority(host)),
                };
                cx.respond(Respond::Warn {
                    continue_url: format!("{scheme}://{authority}{CONTINUE_PATH}?token={token}"),
                });
                Verdict::Block
            }
        };
        let info = match &d.deciding {
            Some(m) => {
                let i = self.filter.describe(m);
                UrlCategoryInfo {
                    category: i.category,
                    source: i.source.to_string(),
                    list: i.list,
                    entry: i.entry,
                    match_type: i.kind.as_str().to_string(),
                    policy,
                    policy_action: d.action.as_str().to_string(),
                    canonical: judged.to_string(),
                }
            }
            None => UrlCategoryInfo {
                category: "default".into(),
                source: "default".into(),
                list: String::new(),
                entry: String::new(),
                match_type: "none".into(),
                policy,
                policy_action: d.action.as_str().to_string(),
                canonical: judged.to_string(),
            },
        };
        let message = if info.match_type == "none" {
            format!(
                "URL filter: {judged} is in no allowed category or list; policy {} default is {}",
                info.policy, info.policy_action
            )
        } else {
            format!(
                "URL filter: {judged} is in {} {} ({} entry {} in {}); policy {} says {}",
                info.source,
                info.category,
                info.match_type,
                info.entry,
                info.list,
                info.policy,
                info.policy_action
            )
        };
        let mut f = Finding::new(
            "urlfilter",
            if info.entry.is_empty() {
                format!("{}:default", info.policy)
            } else {
                format!("{}:{}", info.category, info.entry)
            },
            message,
            severity(&info.category, d.action),
            info.category.clone(),
            Evidence::new(location, judged),
        );
        f.matched.transforms = vec!["canonicalized".into()];
        if !info.list.is_empty() {
            f.source = Some((info.list.clone(), 0));
        }
        f.url = Some(info);
        cx.report(f);
        verdict
    }

    fn check_host(&mut self, cx: &mut Cx<'_>, host: &str, location: &str) -> Verdict {
        let c = crate::filter::canonical_host(host);
        let d = self.filter.decide_canonical_host(self.policy, &c);
        self.act(
            cx,
            &d,
            &Judged {
                location,
                judged: &c.host,
                host: &c.host,
                host_only: true,
                return_url: "",
            },
        )
    }
}

impl UrlInspector {
    /// Judges `scheme://host{pq}` (canonicalized) and acts on the decision.
    fn check_url(
        &self,
        cx: &mut Cx<'_>,
        scheme: &str,
        host: &str,
        pq: &str,
        location: &str,
        original: &str,
    ) -> Verdict {
        let c = canonicalize(&format!("{scheme}://{}{pq}", host_authority(host)));
        let d = self.filter.decide_url(self.policy, &c);
        if d.action == Action::Allow {
            return Verdict::Allow; // the common case: no strings built
        }
        let judged = c.url();
        let bare = c.host.trim_start_matches('[').trim_end_matches(']');
        self.act(
            cx,
            &d,
            &Judged {
                location,
                judged: &judged,
                host: bare,
                host_only: false,
                return_url: original,
            },
        )
    }
}

/// A host as it appears in a URL authority (IPv6 in brackets).
fn host_authority(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl UrlInspector {
    /// A click on a warning page's continue link: remembers the acknowledgement for this client
    /// and host, reports it, and answers with a redirect to the URL first asked for; a link that
    /// is unknown, expired or another client's gets a 403 answer.
    fn continue_link(&self, cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        let token = head
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .unwrap_or("");
        let host = crate::filter::canonical_host(&head.host).host;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match self.warn.accept(token, cx.meta().client.ip(), host) {
            Ok(a) => {
                let mut f = Finding::new(
                    "urlfilter",
                    format!("{}:continue", a.category),
                    format!(
                        "URL filter: the user continued past the {} warning for {}",
                        a.category, a.host
                    ),
                    Severity::Low,
                    a.category.clone(),
                    Evidence::new("request.url", &a.url),
                );
                f.action = EventAction::Allowed;
                cx.report(f);
                cx.respond(Respond::Redirect {
                    status: 303,
                    location: a.url,
                });
            }
            Err(why) => {
                tracing::debug!(host, reason = why, "warning-page continue link refused");
                cx.respond(Respond::Status(403));
            }
        }
        Verdict::Allow
    }

    /// At the ClientHello: the tunnel is spliced when its CONNECT host or SNI is in a category
    /// or list marked `splice`.
    fn splice(&self, cx: &mut Cx<'_>, sni: Option<&str>) {
        let matched = self
            .connect_host
            .as_deref()
            .and_then(|h| self.filter.splice_match(h))
            .or_else(|| sni.and_then(|s| self.filter.splice_match(s)));
        if let Some(category) = matched {
            cx.splice(format!("category {category} is spliced"));
        }
    }
}

impl Inspector for UrlInspector {
    fn on_tls_hello(&mut self, cx: &mut Cx<'_>, hello: &TlsHello) -> Verdict {
        self.splice(cx, hello.sni.as_deref());
        let Some(sni) = &hello.sni else {
            return Verdict::Allow;
        };
        if self
            .connect_host
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(sni))
        {
            return Verdict::Allow;
        }
        self.check_host(cx, sni, "tls.sni")
    }

    fn on_request_head(&mut self, cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        if head.method == http::Method::CONNECT {
            if head.host.is_empty() {
                return Verdict::Allow;
            }
            self.connect_host = Some(head.host.clone());
            return self.check_host(cx, &head.host, "connect.host");
        }
        if head.uri.path() == CONTINUE_PATH {
            return self.continue_link(cx, head);
        }
        let scheme = if cx.meta().tls == TlsMode::Decrypted {
            "https"
        } else {
            head.uri.scheme_str().unwrap_or("http")
        };
        let pq = head.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let original = head.uri.to_string();
        let v = self.check_url(cx, scheme, &head.host, pq, "request.url", &original);
        if v == Verdict::Block {
            return v;
        }
        // Inside a decrypted tunnel the Host header may name another host than the SNI.
        if let Some(h) = head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            let (hh, _) = sekisho_core::split_host_port(h, 0);
            if !hh.is_empty() && !hh.eq_ignore_ascii_case(&head.host) {
                return v.max(self.check_url(
                    cx,
                    scheme,
                    &hh,
                    pq,
                    "request.header.host",
                    &original,
                ));
            }
        }
        v
    }
}
