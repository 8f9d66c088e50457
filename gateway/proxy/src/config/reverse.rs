//! Checks of reverse listeners and `[[route]]` tables (their files are read when the gateway
//! starts, and on reload).

use super::{ClientAuth, Config, ListenerConfig, ListenerKind, MissingCert, RouteConfig};
use crate::error::Result;
use crate::hostmatch::HostMatcher;

impl Config {
    /// Reverse-listener keys and `[[route]]` tables.
    pub(super) fn validate_reverse(&self) -> Result<()> {
        for (i, l) in self.listeners.iter().enumerate() {
            match l.kind {
                ListenerKind::Forward => self.check_forward_keys(i, l)?,
                ListenerKind::Reverse => self.check_reverse_listener(i, l)?,
            }
        }
        self.check_facility_groups()?;
        for (i, r) in self.routes.iter().enumerate() {
            self.check_route(i, r)?;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let name = self.listener_name(i);
            if l.kind == ListenerKind::Reverse && !self.routes.iter().any(|r| r.listener == name) {
                return Err(self.err(
                    format!("listener[{i}]"),
                    format!("no [[route]] has listener = {name:?}: the listener would answer 404 to everything"),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for i in 0..self.routes.len() {
            if !names.insert(self.route_name(i)) {
                return Err(self.err(format!("route[{i}].name"), "duplicate route name"));
            }
        }
        Ok(())
    }

    /// A forward listener sets none of the reverse-only keys.
    fn check_forward_keys(&self, i: usize, l: &ListenerConfig) -> Result<()> {
        let set: Vec<&str> = [
            ("cert", l.cert.is_some()),
            ("key", l.key.is_some()),
            ("certificates", !l.certificates.is_empty()),
            ("client_auth", l.client_auth != ClientAuth::None),
            ("client_ca", !l.client_ca.is_empty()),
            ("crl", !l.crl.is_empty()),
            ("crl_refresh", l.crl_refresh.is_some()),
            ("facility_id", l.facility_id.is_some()),
            ("facility_header", l.facility_header.is_some()),
            ("role_id", l.role_id.is_some()),
            ("role_header", l.role_header.is_some()),
            ("client_policies", !l.client_policies.is_empty()),
            ("missing_cert", l.missing_cert != MissingCert::Tls),
            ("forward_raw_path", l.forward_raw_path),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| k)
        .collect();
        if !set.is_empty() {
            return Err(self.err(
                format!("listener[{i}]"),
                format!("{} only apply to kind = \"reverse\"", set.join(", ")),
            ));
        }
        Ok(())
    }

    /// Certificates, client authentication and the facility rule of a reverse listener.
    fn check_reverse_listener(&self, i: usize, l: &ListenerConfig) -> Result<()> {
        let key = format!("listener[{i}]");
        if l.cert.is_some() != l.key.is_some() {
            return Err(self.err(&key, "cert and key go together"));
        }
        if l.cert.is_none() && l.certificates.is_empty() && l.client_auth != ClientAuth::None {
            return Err(self.err(
                &key,
                "client_auth needs TLS: give cert and key (a reverse listener without them serves plain HTTP)",
            ));
        }
        if l.client_auth != ClientAuth::None && l.client_ca.is_empty() {
            return Err(self.err(
                format!("{key}.client_ca"),
                "client_auth needs at least one CA bundle to verify client certificates",
            ));
        }
        if l.client_auth == ClientAuth::None {
            for (k, on) in [
                ("client_ca", !l.client_ca.is_empty()),
                ("crl", !l.crl.is_empty()),
                ("crl_refresh", l.crl_refresh.is_some()),
                ("facility_id", l.facility_id.is_some()),
                ("role_id", l.role_id.is_some()),
                ("client_policies", !l.client_policies.is_empty()),
            ] {
                if on {
                    return Err(self.err(
                        format!("{key}.{k}"),
                        "needs client_auth = \"required\" or \"optional\"",
                    ));
                }
            }
        }
        if l.missing_cert == MissingCert::Forbidden && l.client_auth != ClientAuth::Required {
            return Err(self.err(
                format!("{key}.missing_cert"),
                "only applies with client_auth = \"required\"",
            ));
        }
        if let Some(rule) = &l.facility_id {
            crate::clientauth::AttrRule::parse(rule)
                .map_err(|e| self.err(format!("{key}.facility_id"), e))?;
        }
        if let Some(rule) = &l.role_id {
            crate::clientauth::AttrRule::parse(rule)
                .map_err(|e| self.err(format!("{key}.role_id"), e))?;
        }
        for (k, name) in [
            ("facility_header", l.facility_header_name()),
            ("role_header", l.role_header_name()),
        ] {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(self.err(format!("{key}.{k}"), "not a valid header name"));
            }
        }
        if l.facility_header_name() == l.role_header_name() {
            return Err(self.err(
                format!("{key}.role_header"),
                "must differ from facility_header",
            ));
        }
        if let Some(r) = &l.crl_refresh {
            r.validate()
                .map_err(|e| self.err(format!("{key}.crl_refresh"), e))?;
        }
        for p in &l.client_policies {
            crate::clientauth::policy_oid(p)
                .map_err(|e| self.err(format!("{key}.client_policies"), e))?;
        }
        Ok(())
    }

    /// One `[[route]]`: its listener, a canonical path prefix, host, upstreams, facility and
    /// attribute rules, health checks, timeouts.
    fn check_route(&self, i: usize, r: &RouteConfig) -> Result<()> {
        let key = format!("route[{i}]");
        let target = (0..self.listeners.len()).find(|&j| self.listener_name(j) == r.listener);
        let listener = match target {
            None => {
                return Err(self.err(
                    format!("{key}.listener"),
                    format!("no listener is named {:?}", r.listener),
                ))
            }
            Some(j) if self.listeners[j].kind != ListenerKind::Reverse => {
                return Err(self.err(
                    format!("{key}.listener"),
                    format!("{:?} is not a reverse listener", r.listener),
                ))
            }
            Some(j) => &self.listeners[j],
        };
        self.check_path_prefix(&key, &r.path_prefix)?;
        if let Some(h) = &r.host {
            HostMatcher::new(std::slice::from_ref(h))
                .map_err(|e| self.err(format!("{key}.host"), e))?;
        }
        if r.upstreams.is_empty() {
            return Err(self.err(format!("{key}.upstreams"), "at least one upstream URL"));
        }
        for u in &r.upstreams {
            upstream_base(u).map_err(|e| self.err(format!("{key}.upstreams"), e))?;
        }
        self.check_route_access(&key, r, listener)?;
        if let Some(p) = &r.health_check {
            if !p.starts_with('/') {
                return Err(self.err(format!("{key}.health_check"), "a path starting with /"));
            }
        }
        if r.health_interval_secs == 0 || r.fail_timeout_secs == 0 {
            return Err(self.err(
                &key,
                "health_interval_secs and fail_timeout_secs must be at least 1",
            ));
        }
        if r.timeout_secs == Some(0) {
            return Err(self.err(format!("{key}.timeout_secs"), "at least 1"));
        }
        if r.retries > 10 {
            return Err(self.err(format!("{key}.retries"), "at most 10"));
        }
        Ok(())
    }

    /// A route prefix must be written in the canonical form requests are routed on.
    fn check_path_prefix(&self, key: &str, prefix: &str) -> Result<()> {
        if !prefix.starts_with('/') {
            return Err(self.err(format!("{key}.path_prefix"), "must start with /"));
        }
        match sekisho_core::canonical_path(prefix) {
            Ok(c) if c == prefix || c.trim_end_matches('/') == prefix => Ok(()),
            Ok(c) => Err(self.err(
                format!("{key}.path_prefix"),
                format!(
                    "not in canonical form: write {c:?} (requests are routed on canonical paths)"
                ),
            )),
            Err(e) => Err(self.err(format!("{key}.path_prefix"), e.to_string())),
        }
    }

    /// Group names are unique and non-empty; each group has members or a file.
    fn check_facility_groups(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for (i, g) in self.facility_groups.iter().enumerate() {
            let key = format!("facility_group[{i}]");
            if g.name.is_empty() || g.name.contains(char::is_whitespace) {
                return Err(self.err(format!("{key}.name"), "a name without spaces is required"));
            }
            if !seen.insert(g.name.as_str()) {
                return Err(self.err(
                    format!("{key}.name"),
                    format!("duplicate group {:?}", g.name),
                ));
            }
            if g.members.is_none() && g.file.is_none() {
                return Err(self.err(&key, "give members = [...] or file = \"PATH\""));
            }
        }
        Ok(())
    }

    /// `facilities` needs the listener's facility rule, `require` its client certificates.
    fn check_route_access(&self, key: &str, r: &RouteConfig, l: &ListenerConfig) -> Result<()> {
        if let Some(f) = &r.facilities {
            if f.iter().any(|p| p.is_empty()) {
                return Err(self.err(format!("{key}.facilities"), "empty pattern"));
            }
            for name in f.iter().filter_map(|p| p.strip_prefix('@')) {
                if !self.facility_groups.iter().any(|g| g.name == name) {
                    return Err(self.err(
                        format!("{key}.facilities"),
                        format!("\"@{name}\": no [[facility_group]] named {name:?}"),
                    ));
                }
            }
            if l.facility_id.is_none() {
                return Err(self.err(
                    format!("{key}.facilities"),
                    format!(
                        "listener {:?} has no facility_id rule to read facility IDs with",
                        r.listener
                    ),
                ));
            }
        }
        if let Some(roles) = &r.roles {
            if roles.iter().any(|p| p.is_empty()) {
                return Err(self.err(format!("{key}.roles"), "empty pattern"));
            }
            if l.role_id.is_none() {
                return Err(self.err(
                    format!("{key}.roles"),
                    format!(
                        "listener {:?} has no role_id rule to read roles with (e.g. role_id = \"hpki:role\")",
                        r.listener
                    ),
                ));
            }
        }
        if !r.require.is_empty() && l.client_auth == ClientAuth::None {
            return Err(self.err(
                format!("{key}.require"),
                format!(
                    "listener {:?} does not ask for client certificates (client_auth)",
                    r.listener
                ),
            ));
        }
        for k in r.require.keys() {
            crate::clientauth::AttrRule::parse(k)
                .map_err(|e| self.err(format!("{key}.require"), e))?;
        }
        Ok(())
    }
}

/// Checks an upstream URL and returns its `scheme://authority` (default ports made explicit).
pub(crate) fn upstream_base(u: &str) -> std::result::Result<String, String> {
    let uri: http::Uri = u.parse().map_err(|e| format!("{u:?}: {e}"))?;
    let scheme = match uri.scheme_str() {
        Some(s @ ("http" | "https")) => s,
        _ => return Err(format!("{u:?}: the scheme must be http or https")),
    };
    let Some(auth) = uri.authority() else {
        return Err(format!("{u:?}: no host"));
    };
    if auth.as_str().contains('@') {
        return Err(format!("{u:?}: user information is not allowed"));
    }
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return Err(format!(
            "{u:?}: give scheme://host:port only (requests keep their path)"
        ));
    }
    let port = auth
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let host = auth.host();
    Ok(format!("{scheme}://{host}:{port}"))
}
