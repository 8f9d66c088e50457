#![allow(clippy::unwrap_used)]
use super::*;

fn html(reason: Reason, lang: Option<&str>) -> String {
    let pages = Pages::default();
    let id = uuid::Uuid::nil();
    Page::new(reason, "a&b.test", Some(id)).render(&pages, pages.pick(lang))
}

#[test]
fn every_reason_names_itself_escapes_and_carries_the_event_id() {
    let cases = [
        (Reason::Category("adult".into()), "category “adult”"),
        (Reason::Listed("bad.test".into()), "list of blocked sites"),
        (Reason::Policy, "gateway policy"),
        (
            Reason::Malware("Eicar-Test-Signature".into()),
            "contains Eicar-Test-Signature",
        ),
        (Reason::Attack("ET <x>".into()), "signature “ET &lt;x&gt;”"),
        (Reason::TooLarge(100 << 20), "too large to scan (100 MiB)"),
        (Reason::Uninspected("timeout".into()), "could not inspect"),
        (
            Reason::Destination("in deny_networks".into()),
            "does not connect to a&amp;b.test",
        ),
        (
            Reason::Certificate("certificate not valid for this name".into()),
            "certificate not valid for this name",
        ),
        (Reason::NotFound, "was not found"),
        (
            Reason::Unreachable("connection refused".into()),
            "connection refused",
        ),
        (Reason::Timeout("900 s".into()), "within 900 s"),
        (
            Reason::Facility {
                facility: "H-0001".into(),
                roles: "Pharmacist".into(),
                route: "claims".into(),
                path: "/admin".into(),
            },
            "Facility H-0001 (roles: Pharmacist) is not allowed to access /admin on a&amp;b.test",
        ),
        (Reason::NoCertificate, "presented none"),
        (
            Reason::BadRequest("both".into()),
            "refused this request: both",
        ),
    ];
    for (reason, words) in cases {
        let h = html(reason.clone(), None);
        assert!(h.contains(words), "{reason:?}: {h}");
        assert!(h.contains("<code id=\"event-id\">00000000-0000-0000-0000-000000000000</code>"));
        assert!(!h.contains("a&b.test"), "host escaped");
        assert!(!h.contains("{{") && !h.contains("{host}"), "{h}");
        assert!(
            !h.contains("http://") && !h.contains("https://"),
            "no external resources"
        );
        assert!(h.contains("<html lang=\"en\">"));
    }
}

#[test]
fn japanese_pages_for_japanese_clients() {
    let h = html(Reason::TooLarge(32 << 20), Some("ja,en;q=0.5"));
    assert!(h.contains("<html lang=\"ja\">"));
    assert!(h.contains("サイズが大きすぎて検査できません"));
    assert!(h.contains("32 MiB"));
    assert!(h.contains("イベント ID"));
}

#[test]
fn warn_pages_link_on_and_say_so_in_headers() {
    let pages = Pages::default();
    let p = Page::new(
        Reason::Warn {
            category: "shopping".into(),
            continue_url: "http://h/.sekisho/continue?token=a&b=\"".into(),
        },
        "h",
        None,
    );
    let r = p.response(StatusCode::FORBIDDEN, &pages, pages.pick(None));
    assert_eq!(r.headers()["x-sekisho-action"], "warn");
    assert_eq!(r.headers()["content-language"], "en");
    let body = String::from_utf8(r.body().to_vec()).unwrap();
    assert!(body.contains("href=\"http://h/.sekisho/continue?token=a&amp;b=&quot;\""));
    assert!(body.contains("Continue to h"));
    assert!(body.contains("<code id=\"event-id\">-</code>"));
}

#[test]
fn findings_map_to_reasons() {
    use sekisho_core::{Evidence, Severity};
    let mut f = Finding::new(
        "av",
        "Eicar-Test-Signature",
        "m",
        Severity::High,
        "malware",
        Evidence::default(),
    );
    f.stage = "av";
    assert_eq!(
        Reason::of_finding(&f),
        Reason::Malware("Eicar-Test-Signature".into())
    );
    f.rule_id = "hold-limit".into();
    f.message = "stage av could not inspect the response body: too large to scan (over the per-flow hold limit of 33554432 bytes)".into();
    assert_eq!(Reason::of_finding(&f), Reason::TooLarge(33554432));
    assert_eq!(bytes_in_words(33554432), "32 MiB");
    assert_eq!(bytes_in_words(1536), "1.5 KiB");
    assert_eq!(bytes_in_words(10), "10 bytes");
}
