//! The gateway's TOML config as `check-config` and `run` read it: the proxy's own tables
//! (listeners, routes, TLS, limits, events, MSS) and the engines' tables (IPS, URL filter).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/sekisho.toml");
    let _ = sekisho_proxy::Config::parse_with(text, path, &["ips", "av", "urlfilter", "policy"]);
    if let Ok(top) = toml::from_str::<toml::Table>(text) {
        if let Some(t) = top.get("ips") {
            if let Ok(c) = t.clone().try_into::<sekisho_ips::IpsConfig>() {
                let _ = c.load_options(Some(Path::new("/nonexistent")));
            }
        }
        if let Some(t) = top.get("urlfilter") {
            let _ = t.clone().try_into::<sekisho_urlfilter::UrlFilterConfig>();
        }
    }
});
