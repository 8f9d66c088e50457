//! Address and port expressions of a rule header, with variables from config.
//!
//! Grammar (Suricata): `any`, `$VAR`, an IP, a CIDR, a port, a range `a:b` / `a:` / `:b`, a list
//! `[x, y, ...]` (nested lists allowed) and negation `!x`. In a list the positive entries are
//! or-ed and the negated ones excluded; a list of only negations means "anything but".

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Variables (`HOME_NET`, `HTTP_PORTS` …) by name, without the `$`.
pub type Vars = BTreeMap<String, String>;

/// The defaults: every address variable `any` (the gateway only sees the traffic it proxies), port
/// variables as Suricata's `suricata.yaml`, except `HTTP_PORTS` and `FILE_DATA_PORTS` = `any`:
/// the gateway only runs HTTP rules on flows it parsed as HTTP, whatever the port.
pub fn default_vars() -> Vars {
    let mut v = Vars::new();
    for a in [
        "HOME_NET",
        "EXTERNAL_NET",
        "HTTP_SERVERS",
        "SMTP_SERVERS",
        "SQL_SERVERS",
        "DNS_SERVERS",
        "TELNET_SERVERS",
        "AIM_SERVERS",
        "DC_SERVERS",
        "DNP3_SERVER",
        "DNP3_CLIENT",
        "MODBUS_CLIENT",
        "MODBUS_SERVER",
        "ENIP_CLIENT",
        "ENIP_SERVER",
    ] {
        v.insert(a.into(), "any".into());
    }
    for (k, p) in [
        ("HTTP_PORTS", "any"),
        ("FILE_DATA_PORTS", "any"),
        ("SHELLCODE_PORTS", "!80"),
        ("ORACLE_PORTS", "1521"),
        ("SSH_PORTS", "22"),
        ("DNP3_PORTS", "20000"),
        ("MODBUS_PORTS", "502"),
        ("FTP_PORTS", "21"),
        ("GENEVE_PORTS", "6081"),
        ("VXLAN_PORTS", "4789"),
        ("TEREDO_PORTS", "3544"),
    ] {
        v.insert(k.into(), p.into());
    }
    v
}

/// A parsed address expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrExpr {
    /// Any address.
    Any,
    /// One network (a single IP is a /32 or /128).
    Net(IpNet),
    /// Anything but.
    Not(Box<AddrExpr>),
    /// Positives or-ed, negatives excluded.
    List(Vec<AddrExpr>),
}

impl AddrExpr {
    /// Whether `ip` matches. An unknown address (an upstream not yet resolved) matches `any` and
    /// negations ("not my network"), never a positive network.
    pub fn matches(&self, ip: Option<IpAddr>) -> bool {
        match self {
            AddrExpr::Any => true,
            AddrExpr::Net(n) => ip.is_some_and(|ip| n.contains(&canonical(ip))),
            AddrExpr::Not(inner) => match ip {
                None => true,
                Some(_) => !inner.matches(ip),
            },
            AddrExpr::List(items) => {
                let mut pos = items.iter().filter(|i| !matches!(i, AddrExpr::Not(_)));
                let has_pos = items.iter().any(|i| !matches!(i, AddrExpr::Not(_)));
                let pos_ok = !has_pos || pos.any(|i| i.matches(ip));
                pos_ok
                    && items.iter().all(|i| match i {
                        AddrExpr::Not(_) => i.matches(ip),
                        _ => true,
                    })
            }
        }
    }

    /// True when this is `any`.
    pub fn is_any(&self) -> bool {
        matches!(self, AddrExpr::Any)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A parsed port expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortExpr {
    /// Any port.
    Any,
    /// An inclusive range (a single port is `p..=p`).
    Range(u16, u16),
    /// Anything but.
    Not(Box<PortExpr>),
    /// Positives or-ed, negatives excluded.
    List(Vec<PortExpr>),
}

impl PortExpr {
    /// Whether `port` matches; an unknown port matches `any` and negations only.
    pub fn matches(&self, port: Option<u16>) -> bool {
        match self {
            PortExpr::Any => true,
            PortExpr::Range(a, b) => port.is_some_and(|p| (*a..=*b).contains(&p)),
            PortExpr::Not(inner) => port.is_none() || !inner.matches(port),
            PortExpr::List(items) => {
                let has_pos = items.iter().any(|i| !matches!(i, PortExpr::Not(_)));
                let pos_ok = !has_pos
                    || items
                        .iter()
                        .filter(|i| !matches!(i, PortExpr::Not(_)))
                        .any(|i| i.matches(port));
                pos_ok
                    && items.iter().all(|i| match i {
                        PortExpr::Not(_) => i.matches(port),
                        _ => true,
                    })
            }
        }
    }
}

const MAX_DEPTH: usize = 16;

/// Parses an address expression, expanding variables.
pub fn parse_addr(s: &str, vars: &Vars) -> Result<AddrExpr, String> {
    parse_expr(s.trim(), vars, 0, &|atom| {
        if atom.eq_ignore_ascii_case("any") {
            return Ok(AddrExpr::Any);
        }
        if let Ok(n) = atom.parse::<IpNet>() {
            return Ok(AddrExpr::Net(n.trunc()));
        }
        if let Ok(ip) = atom.parse::<IpAddr>() {
            return Ok(AddrExpr::Net(IpNet::from(canonical(ip))));
        }
        Err(format!("bad address {atom:?}"))
    })
}

/// Parses a port expression, expanding variables.
pub fn parse_port(s: &str, vars: &Vars) -> Result<PortExpr, String> {
    parse_expr(s.trim(), vars, 0, &|atom| {
        if atom.eq_ignore_ascii_case("any") {
            return Ok(PortExpr::Any);
        }
        let num = |t: &str, d: u16| -> Result<u16, String> {
            if t.is_empty() {
                Ok(d)
            } else {
                t.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("bad port {atom:?}"))
            }
        };
        match atom.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (num(a, 0)?, num(b, u16::MAX)?);
                if a > b {
                    return Err(format!("bad port range {atom:?}"));
                }
                Ok(PortExpr::Range(a, b))
            }
            None => {
                let p = num(atom, 0)?;
                Ok(PortExpr::Range(p, p))
            }
        }
    })
}

trait Expr: Sized {
    fn not(self) -> Self;
    fn list(v: Vec<Self>) -> Self;
}
impl Expr for AddrExpr {
    fn not(self) -> Self {
        AddrExpr::Not(Box::new(self))
    }
    fn list(v: Vec<Self>) -> Self {
        AddrExpr::List(v)
    }
}
impl Expr for PortExpr {
    fn not(self) -> Self {
        PortExpr::Not(Box::new(self))
    }
    fn list(v: Vec<Self>) -> Self {
        PortExpr::List(v)
    }
}

fn parse_expr<T: Expr>(
    s: &str,
    vars: &Vars,
    depth: usize,
    atom: &dyn Fn(&str) -> Result<T, String>,
) -> Result<T, String> {
    if depth > MAX_DEPTH {
        return Err("variables nest too deeply (a cycle?)".into());
    }
    let s = s.trim();
    if s.is_empty() {
        return Err("empty address or port".into());
    }
    if let Some(rest) = s.strip_prefix('!') {
        return Ok(parse_expr(rest, vars, depth + 1, atom)?.not());
    }
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unclosed list in {s:?}"))?;
        let mut items = Vec::new();
        for part in split_top(inner)? {
            items.push(parse_expr(part, vars, depth + 1, atom)?);
        }
        if items.is_empty() {
            return Err("empty list".into());
        }
        return Ok(T::list(items));
    }
    if let Some(name) = s.strip_prefix('$') {
        let v = vars
            .get(name)
            .ok_or_else(|| format!("unknown variable ${name}"))?;
        return parse_expr(v, vars, depth + 1, atom);
    }
    atom(s)
}

/// Splits a list body on top-level commas.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut level, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '[' => level += 1,
            ']' => {
                level -= 1;
                if level < 0 {
                    return Err(format!("unbalanced ']' in {s:?}"));
                }
            }
            ',' if level == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if level != 0 {
        return Err(format!("unbalanced '[' in {s:?}"));
    }
    let last = s[start..].trim();
    if !last.is_empty() {
        out.push(last);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn addresses_lists_negation_vars() {
        let mut v = default_vars();
        v.insert("HOME_NET".into(), "[10.0.0.0/8,192.168.0.0/16]".into());
        v.insert("EXTERNAL_NET".into(), "!$HOME_NET".into());
        let home = parse_addr("$HOME_NET", &v).unwrap();
        let ext = parse_addr("$EXTERNAL_NET", &v).unwrap();
        assert!(home.matches(ip("10.1.2.3")));
        assert!(!home.matches(ip("8.8.8.8")));
        assert!(ext.matches(ip("8.8.8.8")));
        assert!(!ext.matches(ip("192.168.1.1")));
        assert!(ext.matches(None), "unknown upstream counts as external");
        assert!(!home.matches(None));
        let l = parse_addr("[1.2.3.0/24,![1.2.3.4,1.2.3.5]]", &v).unwrap();
        assert!(l.matches(ip("1.2.3.9")));
        assert!(!l.matches(ip("1.2.3.4")));
        assert!(!l.matches(ip("1.2.4.1")));
        let only_neg = parse_addr("[!1.2.3.4]", &v).unwrap();
        assert!(only_neg.matches(ip("9.9.9.9")));
        assert!(!only_neg.matches(ip("1.2.3.4")));
        let v6 = parse_addr("[2001:db8::/32, ::1]", &v).unwrap();
        assert!(v6.matches(ip("2001:db8::5")));
        assert!(v6.matches(ip("::1")));
        let mapped = parse_addr("127.0.0.1", &v).unwrap();
        assert!(mapped.matches(ip("::ffff:127.0.0.1")));
        assert!(parse_addr("$NOPE", &v).unwrap_err().contains("$NOPE"));
        assert!(parse_addr("[1.2.3.4", &v).is_err());
        assert!(parse_addr("1.2.3.400", &v).is_err());
        v.insert("LOOP".into(), "$LOOP".into());
        assert!(parse_addr("$LOOP", &v).unwrap_err().contains("nest"));
    }

    #[test]
    fn ports_ranges_and_negation() {
        let v = default_vars();
        let p = parse_port("[80,443,8000:8100,!8080]", &v).unwrap();
        assert!(p.matches(Some(80)) && p.matches(Some(8050)));
        assert!(!p.matches(Some(8080)) && !p.matches(Some(22)));
        assert!(parse_port("1024:", &v).unwrap().matches(Some(65535)));
        assert!(!parse_port(":1023", &v).unwrap().matches(Some(1024)));
        assert!(parse_port("!80", &v).unwrap().matches(Some(81)));
        assert!(parse_port("$SHELLCODE_PORTS", &v)
            .unwrap()
            .matches(Some(443)));
        assert!(parse_port("$HTTP_PORTS", &v).unwrap().matches(Some(31337)));
        assert!(parse_port("90:80", &v).is_err());
        assert!(parse_port("http", &v).is_err());
    }
}
