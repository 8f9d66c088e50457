//! `[urlfilter]` configuration, policies and decisions.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use sekisho_core::StagePolicy;
use serde::{Deserialize, Serialize};

use crate::canonical::{canonicalize, Canonical};
use crate::db::{Db, DbError, Match, MatchKind};

/// What a policy does with a category or list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Pass, no event.
    #[default]
    Allow,
    /// Pass and log a threat event.
    Alert,
    /// Show a warning page with a continue link (remembered per client and host).
    Warn,
    /// Refuse with a block page (or refuse the CONNECT / TLS tunnel).
    Block,
}

impl Action {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Alert => "alert",
            Action::Warn => "warn",
            Action::Block => "block",
        }
    }
}

/// `[[urlfilter.list]]`: one of our own lists.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListConfig {
    /// The name policies use.
    pub name: String,
    /// A file (one domain, IP or URL per line) or a folder in the squidGuard layout.
    pub path: PathBuf,
}

/// `[[urlfilter.policy]]`: actions by category and list, and the default action.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Name (in events).
    pub name: String,
    /// Clients this policy applies to (CIDR); empty: every client.
    #[serde(default)]
    pub clients: Vec<IpNet>,
    /// Listeners this policy applies to (by name); empty: every listener.
    #[serde(default)]
    pub listeners: Vec<String>,
    /// The action for URLs no named category or list matches. `block` makes an allow-list.
    #[serde(default)]
    pub default: Action,
    /// Categories and lists passed.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Categories and lists passed with an event.
    #[serde(default)]
    pub alert: Vec<String>,
    /// Categories and lists behind a warning page.
    #[serde(default)]
    pub warn: Vec<String>,
    /// Categories and lists refused.
    #[serde(default)]
    pub block: Vec<String>,
}

/// `[urlfilter]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlFilterConfig {
    /// Folders in the UT1 / squidGuard layout: each sub-folder is a category with `domains`,
    /// `urls` and `expressions` files.
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub category_dirs: Vec<PathBuf>,
    /// Load only these categories (default: all).
    #[serde(default, deserialize_with = "sekisho_core::de::opt_one_or_many")]
    pub categories: Option<Vec<String>>,
    /// Our own lists.
    #[serde(default, rename = "list")]
    pub lists: Vec<ListConfig>,
    /// Policies, first match by listener and client wins. None: one policy blocking `malware`,
    /// `phishing` and `cryptojacking` (those that are loaded) and allowing the rest.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyConfig>,
    /// Categories and lists tunnelled without decryption (unless blocked). Default: `bank` and
    /// `health` (names that are not loaded are ignored).
    #[serde(
        default = "d_splice",
        deserialize_with = "sekisho_core::de::one_or_many"
    )]
    pub splice: Vec<String>,
    /// How long a client's "continue" past a warning page lasts for that host (default 3600 s).
    #[serde(default = "d_warn_ttl")]
    pub warn_ttl_secs: u64,
    /// Most expressions loaded (default 1,000).
    #[serde(default = "d_max_expr")]
    pub max_expressions: usize,
    /// `mode`, `on_error`, `on_overflow`.
    #[serde(flatten)]
    pub stage: StagePolicy,
}

fn d_splice() -> Vec<String> {
    vec!["bank".into(), "health".into()]
}
fn d_warn_ttl() -> u64 {
    3600
}
fn d_max_expr() -> usize {
    1000
}

impl Default for UrlFilterConfig {
    fn default() -> Self {
        UrlFilterConfig {
            category_dirs: Vec::new(),
            categories: None,
            lists: Vec::new(),
            policies: Vec::new(),
            splice: d_splice(),
            warn_ttl_secs: d_warn_ttl(),
            max_expressions: d_max_expr(),
            stage: StagePolicy::default(),
        }
    }
}

impl UrlFilterConfig {
    /// The stage policy.
    pub fn policy(&self) -> StagePolicy {
        self.stage
    }

    /// Resolves relative paths: kept when they exist from the current directory, else taken
    /// beside the config file (`base`).
    pub fn resolve_paths(&mut self, base: Option<&Path>) {
        let Some(base) = base else { return };
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.category_dirs.iter_mut().for_each(fix);
        self.lists.iter_mut().for_each(|l| fix(&mut l.path));
    }

    /// Checks what can be checked without reading lists. Errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.category_dirs.is_empty() && self.lists.is_empty() {
            return Err("urlfilter: neither category_dirs nor [[urlfilter.list]]".into());
        }
        if self.warn_ttl_secs == 0 {
            return Err("urlfilter.warn_ttl_secs: must be at least 1".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, l) in self.lists.iter().enumerate() {
            if l.name.is_empty() || !seen.insert(l.name.as_str()) {
                return Err(format!(
                    "urlfilter.list[{i}].name: empty or duplicate list name {:?}",
                    l.name
                ));
            }
        }
        let mut pnames = std::collections::HashSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            if !pnames.insert(p.name.as_str()) {
                return Err(format!(
                    "urlfilter.policy[{i}].name: duplicate policy {:?}",
                    p.name
                ));
            }
            let mut named = std::collections::HashMap::new();
            for (key, names) in [
                ("allow", &p.allow),
                ("alert", &p.alert),
                ("warn", &p.warn),
                ("block", &p.block),
            ] {
                for n in names {
                    if let Some(prev) = named.insert(n.as_str(), key) {
                        return Err(format!(
                            "urlfilter.policy[{i}].{key}: {n:?} is also in {prev}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Errors loading the URL filter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlFilterError {
    /// Config.
    #[error("{0}")]
    Config(String),
    /// Lists.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A compiled policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Name.
    pub name: String,
    clients: Vec<IpNet>,
    listeners: Vec<String>,
    /// Default action.
    pub default: Action,
    /// Action by name id.
    actions: Vec<Option<Action>>,
}

impl Policy {
    /// The action configured for a category or list id.
    pub fn action_for(&self, id: u16) -> Option<Action> {
        self.actions.get(id as usize).copied().flatten()
    }
}

/// The outcome for one URL or host.
#[derive(Clone, Debug)]
pub struct Decision {
    /// The action.
    pub action: Action,
    /// Index of the policy that decided.
    pub policy: usize,
    /// The match that set the action (none: the policy default).
    pub deciding: Option<Match>,
    /// Every match.
    pub matches: Vec<Match>,
}

/// A match in words, for events and `rules test-url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchInfo {
    /// Category or list name.
    pub category: String,
    /// `category` or `list`.
    pub source: &'static str,
    /// The list file.
    pub list: String,
    /// Entry kind.
    pub kind: MatchKind,
    /// The entry.
    pub entry: String,
}

/// Lists plus policies: everything the URL stage and the splice decision need. Immutable;
/// reload builds a new one.
#[derive(Debug)]
pub struct UrlFilter {
    db: Db,
    policies: Vec<Policy>,
    splice: Vec<bool>,
    /// Time the load took.
    pub load_time: Duration,
    /// `warn_ttl_secs`.
    pub warn_ttl: Duration,
}

impl UrlFilter {
    /// Reads every list and compiles the policies. Malformed lines are kept in
    /// [`Db::errors`]; unreadable folders, unknown names in policies and limits fail.
    pub fn load(cfg: &UrlFilterConfig) -> Result<UrlFilter, UrlFilterError> {
        cfg.validate().map_err(UrlFilterError::Config)?;
        let t = Instant::now();
        let mut db = Db::new(cfg.max_expressions);
        for d in &cfg.category_dirs {
            db.add_categories(d, cfg.categories.as_deref())?;
        }
        for l in &cfg.lists {
            db.add_list(&l.name, &l.path)?;
        }
        db.finish()?;
        let n = db.names().len();
        let mut policies = Vec::new();
        let configured: Vec<PolicyConfig> = if cfg.policies.is_empty() {
            vec![PolicyConfig {
                name: "default".into(),
                clients: Vec::new(),
                listeners: Vec::new(),
                default: Action::Allow,
                allow: Vec::new(),
                alert: Vec::new(),
                warn: Vec::new(),
                block: ["malware", "phishing", "cryptojacking"]
                    .iter()
                    .filter(|c| db.id(c).is_some())
                    .map(|c| c.to_string())
                    .collect(),
            }]
        } else {
            cfg.policies.clone()
        };
        for (i, p) in configured.iter().enumerate() {
            let mut actions = vec![None; n];
            for (key, names, action) in [
                ("allow", &p.allow, Action::Allow),
                ("alert", &p.alert, Action::Alert),
                ("warn", &p.warn, Action::Warn),
                ("block", &p.block, Action::Block),
            ] {
                for name in names {
                    let Some(id) = db.id(name) else {
                        let mut known: Vec<&str> =
                            db.names().iter().map(|n| n.name.as_str()).collect();
                        known.sort_unstable();
                        return Err(UrlFilterError::Config(format!(
                            "urlfilter.policy[{i}].{key}: no category or list named {name:?} (loaded: {})",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        )));
                    };
                    actions[id as usize] = Some(action);
                }
            }
            policies.push(Policy {
                name: p.name.clone(),
                clients: p.clients.clone(),
                listeners: p.listeners.clone(),
                default: p.default,
                actions,
            });
        }
        let mut splice = vec![false; n];
        for s in &cfg.splice {
            if let Some(id) = db.id(s) {
                splice[id as usize] = true;
            }
        }
        Ok(UrlFilter {
            db,
            policies,
            splice,
            load_time: t.elapsed(),
            warn_ttl: Duration::from_secs(cfg.warn_ttl_secs),
        })
    }

    /// The lists.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The policies, in order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The first policy for this listener and client (the last one when none matches).
    pub fn policy_for(&self, listener: &str, client: IpAddr) -> usize {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(client),
            v4 => v4,
        };
        self.policies
            .iter()
            .position(|p| {
                (p.listeners.is_empty() || p.listeners.iter().any(|l| l == listener))
                    && (p.clients.is_empty() || p.clients.iter().any(|c| c.contains(&client)))
            })
            .unwrap_or(self.policies.len().saturating_sub(1))
    }

    fn decide(&self, policy: usize, mut matches: Vec<Match>) -> Decision {
        matches.sort_by_key(|m| (m.kind, m.name));
        matches.dedup();
        let Some(p) = self.policies.get(policy) else {
            return Decision {
                action: Action::Allow,
                policy,
                deciding: None,
                matches,
            };
        };
        let names = self.db.names();
        let acted = |m: &&Match| p.action_for(m.name).is_some();
        // Operator lists the policy names take precedence over categories.
        let lists_hit = matches
            .iter()
            .filter(acted)
            .any(|m| names.get(m.name as usize).is_some_and(|n| n.is_list));
        let deciding = matches
            .iter()
            .filter(acted)
            .filter(|m| !lists_hit || names.get(m.name as usize).is_some_and(|n| n.is_list))
            .max_by_key(|m| (p.action_for(m.name), std::cmp::Reverse((m.kind, m.name))))
            .cloned();
        let action = deciding
            .as_ref()
            .and_then(|m| p.action_for(m.name))
            .unwrap_or(p.default);
        Decision {
            action,
            policy,
            deciding,
            matches,
        }
    }

    /// Decides a canonical URL (an HTTP request, decrypted or not).
    pub fn decide_url(&self, policy: usize, url: &Canonical) -> Decision {
        let mut m = Vec::new();
        self.db.match_url(url, &mut m);
        self.decide(policy, m)
    }

    /// Decides a host (CONNECT host or TLS SNI, before decryption): domain, IP and whole-host
    /// URL entries.
    pub fn decide_host(&self, policy: usize, host: &str) -> Decision {
        self.decide_canonical_host(policy, &canonical_host(host))
    }

    /// [`UrlFilter::decide_host`] for a host already in canonical form.
    pub fn decide_canonical_host(&self, policy: usize, c: &Canonical) -> Decision {
        let mut m = Vec::new();
        self.db.match_host(&c.host, c.ip, &mut m);
        self.decide(policy, m)
    }

    /// The splice category or list naming `host`, if any.
    pub fn splice_match(&self, host: &str) -> Option<String> {
        if !self.splice.iter().any(|s| *s) {
            return None;
        }
        let c = canonical_host(host);
        let mut m = Vec::new();
        self.db.match_host(&c.host, c.ip, &mut m);
        m.iter()
            .find(|m| self.splice.get(m.name as usize).copied().unwrap_or(false))
            .map(|m| self.name(m.name).to_string())
    }

    /// The categories and lists `host` is in.
    pub fn host_categories(&self, host: &str) -> Vec<String> {
        let c = canonical_host(host);
        let mut m = Vec::new();
        self.db.match_host(&c.host, c.ip, &mut m);
        let mut names: Vec<String> = m.iter().map(|m| self.name(m.name).to_string()).collect();
        names.dedup();
        names
    }

    /// A category or list name.
    pub fn name(&self, id: u16) -> &str {
        self.db
            .names()
            .get(id as usize)
            .map(|n| n.name.as_str())
            .unwrap_or("?")
    }

    /// A match in words.
    pub fn describe(&self, m: &Match) -> MatchInfo {
        let is_list = self
            .db
            .names()
            .get(m.name as usize)
            .is_some_and(|n| n.is_list);
        MatchInfo {
            category: self.name(m.name).to_string(),
            source: if is_list { "list" } else { "category" },
            list: self.db.list_file(m.name, m.kind),
            kind: m.kind,
            entry: m.entry.clone(),
        }
    }
}

/// A host (with or without port, brackets, trailing dots, IDN) in canonical form.
pub fn canonical_host(host: &str) -> Canonical {
    let h = host.trim();
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        return canonicalize(&format!("http://[{h}]/"));
    }
    if h.contains(['/', '?', '#']) {
        // Not a host: judge what parses as one.
        return canonicalize(&format!(
            "http://{}/",
            h.split(['/', '?', '#']).next().unwrap_or("")
        ));
    }
    canonicalize(&format!("http://{h}/"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn setup(policies: &str) -> (UrlFilter, PathBuf) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sekisho-urlf-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        for (cat, domains) in [
            ("malware", "evil.test\nbad.care.test\n"),
            ("shopping", "shop.test\ncare.test\n"),
            ("bank", "bank.test\n"),
        ] {
            std::fs::create_dir_all(dir.join("cats").join(cat)).unwrap();
            std::fs::write(dir.join("cats").join(cat).join("domains"), domains).unwrap();
        }
        std::fs::write(dir.join("care.list"), "care.test\n# comment\n10.1.2.3\n").unwrap();
        let toml_text = format!(
            "category_dirs = [{:?}]\n[[list]]\nname = \"care\"\npath = {:?}\n{policies}",
            dir.join("cats"),
            dir.join("care.list")
        );
        let cfg: UrlFilterConfig = toml::from_str(&toml_text).unwrap();
        (UrlFilter::load(&cfg).unwrap(), dir)
    }

    fn action(f: &UrlFilter, p: usize, url: &str) -> Action {
        f.decide_url(p, &canonicalize(url)).action
    }

    #[test]
    fn allow_list_mode_and_precedence() {
        let (f, dir) = setup(
            "[[policy]]\nname = \"hospital\"\nclients = [\"10.0.0.0/8\"]\ndefault = \"block\"\nallow = [\"care\"]\nblock = [\"malware\"]\n\
             [[policy]]\nname = \"office\"\nwarn = [\"shopping\"]\nblock = [\"malware\"]\nalert = [\"bank\"]\n",
        );
        let h = f.policy_for("forward", "10.9.9.9".parse().unwrap());
        let o = f.policy_for("forward", "192.168.1.1".parse().unwrap());
        assert_eq!((h, o), (0, 1));
        assert_eq!(
            f.policy_for("forward", "::ffff:10.0.0.1".parse().unwrap()),
            0
        );
        assert_eq!(action(&f, h, "http://www.care.test/x"), Action::Allow);
        assert_eq!(action(&f, h, "http://unknown.test/"), Action::Block);
        assert_eq!(action(&f, h, "http://10.1.2.3/"), Action::Allow);
        // Operator lists win over categories: bad.care.test is in malware and (as a subdomain)
        // in the care list.
        assert_eq!(action(&f, h, "http://bad.care.test/"), Action::Allow);
        assert_eq!(action(&f, o, "http://bad.care.test/"), Action::Block);
        assert_eq!(action(&f, o, "http://shop.test/"), Action::Warn);
        assert_eq!(action(&f, o, "http://x.bank.test/"), Action::Alert);
        assert_eq!(action(&f, o, "http://other.test/"), Action::Allow);
        let d = f.decide_url(h, &canonicalize("http://unknown.test/"));
        assert!(d.deciding.is_none());
        let d = f.decide_host(o, "EVIL.test.:443");
        assert_eq!(d.action, Action::Block);
        let info = f.describe(d.deciding.as_ref().unwrap());
        assert_eq!(info.category, "malware");
        assert_eq!(info.entry, "evil.test");
        assert!(info.list.ends_with("malware/domains"), "{}", info.list);
        assert_eq!(f.splice_match("www.bank.test").as_deref(), Some("bank"));
        assert_eq!(f.splice_match("shop.test"), None);
        assert_eq!(canonical_host("::1").host, "[::1]");
        assert_eq!(canonical_host("[::1]:443").host, "[::1]");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_names_and_conflicts_are_config_errors() {
        let cfg: UrlFilterConfig = toml::from_str(
            "category_dirs = [\"/nonexistent\"]\n[[policy]]\nname=\"p\"\nblock=[\"a\"]\nallow=[\"a\"]\n",
        )
        .unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(
            e.contains("policy[0].block") && e.contains("also in allow"),
            "{e}"
        );
        let (_, dir) = setup("");
        let cfg: UrlFilterConfig = toml::from_str(&format!(
            "category_dirs = [{:?}]\n[[policy]]\nname=\"p\"\nblock=[\"malwar\"]\n",
            dir.join("cats")
        ))
        .unwrap();
        let e = UrlFilter::load(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("policy[0].block") && e.contains("\"malwar\""),
            "{e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn default_policy_blocks_malware() {
        let (f, dir) = setup("");
        assert_eq!(f.policies()[0].name, "default");
        assert_eq!(action(&f, 0, "http://evil.test/"), Action::Block);
        assert_eq!(action(&f, 0, "http://shop.test/"), Action::Allow);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
