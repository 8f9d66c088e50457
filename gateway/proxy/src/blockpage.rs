//! The HTML block page.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

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

/// What a block page says.
pub struct BlockInfo<'a> {
    /// Page title.
    pub title: &'a str,
    /// Why.
    pub reason: &'a str,
    /// The host asked for.
    pub host: &'a str,
    /// The category or rule.
    pub category: &'a str,
    /// The event id, to quote to the help desk.
    pub event_id: Option<uuid::Uuid>,
}

/// Renders the block page.
pub fn render(info: &BlockInfo<'_>) -> String {
    page_html(
        info,
        "#a00",
        "<p>If you believe this is a mistake, contact your security team and quote the event ID.</p>\n",
    )
}

/// Renders the warning page: the same facts plus a continue link.
pub fn render_warn(info: &BlockInfo<'_>, continue_url: &str) -> String {
    let tail = format!(
        "<p>Your organisation's policy asks you to confirm before visiting this site. \
The visit is logged.</p>\n<p><a id=\"continue\" href=\"{href}\">Continue to {host}</a></p>\n",
        href = escape(continue_url),
        host = escape(info.host),
    );
    page_html(info, "#b60", &tail)
}

/// The page skeleton: title, reason, host, category, event id, then `tail` (trusted HTML).
fn page_html(info: &BlockInfo<'_>, color: &str, tail: &str) -> String {
    let id = info
        .event_id
        .map(|i| i.to_string())
        .unwrap_or_else(|| "-".into());
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>{title}</title>\
<style>body{{font-family:sans-serif;max-width:40em;margin:4em auto;color:#222}}\
h1{{color:{color}}}code{{background:#eee;padding:.1em .3em}}</style></head>\n<body>\
<h1>{title}</h1>\n<p>{reason}</p>\n<table>\
<tr><th align=left>Host</th><td><code>{host}</code></td></tr>\
<tr><th align=left>Category</th><td>{category}</td></tr>\
<tr><th align=left>Event ID</th><td><code id=\"event-id\">{id}</code></td></tr></table>\n\
{tail}<p><small>Sekisho security gateway</small></p></body></html>\n",
        title = escape(info.title),
        reason = escape(info.reason),
        host = escape(info.host),
        category = escape(info.category),
    )
}

/// A block page response with `X-Sekisho-Event-Id`.
pub fn response(status: StatusCode, info: &BlockInfo<'_>) -> Response<Bytes> {
    page(status, info, render(info))
}

/// A warning page response (`X-Sekisho-Action: warn`).
pub fn warn_response(info: &BlockInfo<'_>, continue_url: &str) -> Response<Bytes> {
    let mut r = page(StatusCode::FORBIDDEN, info, render_warn(info, continue_url));
    r.headers_mut()
        .insert("x-sekisho-action", HeaderValue::from_static("warn"));
    r
}

fn page(status: StatusCode, info: &BlockInfo<'_>, body: String) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(id) = info.event_id {
        if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
            h.insert("x-sekisho-event-id", v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_names_event() {
        let id = uuid::Uuid::now_v7();
        let html = render(&BlockInfo {
            title: "Blocked",
            reason: "<script>",
            host: "a&b",
            category: "policy",
            event_id: Some(id),
        });
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("a&amp;b"));
        assert!(html.contains(&id.to_string()));
        let warn = render_warn(
            &BlockInfo {
                title: "Warning",
                reason: "r",
                host: "h",
                category: "shopping",
                event_id: Some(id),
            },
            "http://h/.sekisho/continue?token=a&b=\"",
        );
        assert!(warn.contains("href=\"http://h/.sekisho/continue?token=a&amp;b=&quot;\""));
        assert!(warn.contains("shopping"));
    }
}
