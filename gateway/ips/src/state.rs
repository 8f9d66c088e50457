//! Rule state beyond flowbits: `flowint` (integers kept per flow) and `xbits` (bits kept per
//! host or host pair across flows, with an expiry), as Suricata 8 runs them
//! (`src/detect-flowint.c`, `src/detect-xbits.c`, `src/host-bit.c`, `src/ippair-bit.c`):
//! conditions are checked with the rule's other matches, changes are made only once the whole
//! rule matched, in rule order, whether or not it alerts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The most flowint variables one flow keeps.
pub const MAX_FLOWINTS: usize = 256;
/// The most xbits the gateway keeps (all hosts and pairs together); past it a `set` finds no
/// room once expired bits are gone, and is counted.
pub const MAX_XBITS: usize = 100_000;
/// `expire` when a rule names none (Suricata's default).
pub const DEFAULT_EXPIRE: u32 = 30;

/// `flowint`'s operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowintOp {
    /// `=`.
    Set,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `isset`.
    IsSet,
    /// `notset` / `isnotset`.
    NotSet,
}

/// A `flowint` operand: a number or another variable (0 when unset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowintVal {
    /// A number.
    Num(u32),
    /// Another flowint variable.
    Var(String),
}

/// One `flowint` keyword.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flowint {
    /// The variable.
    pub name: String,
    /// The operation.
    pub op: FlowintOp,
    /// The operand.
    pub value: Option<FlowintVal>,
}

impl Flowint {
    /// Parses `name, op[, value]` (Suricata's pattern: a name of two or more characters from a
    /// letter, `_ . /` allowed; a value of at most 10 digits within u32, or a variable name).
    pub fn parse(v: &str) -> Result<Flowint, String> {
        let bad = || format!("{:?} is not a valid setting for flowint", v.trim());
        let mut parts = v.splitn(3, ',').map(str::trim);
        let name = parts
            .next()
            .filter(|n| valid_name(n, b"_./"))
            .ok_or_else(bad)?;
        let op = match parts.next().ok_or_else(bad)? {
            "=" => FlowintOp::Set,
            "+" => FlowintOp::Add,
            "-" => FlowintOp::Sub,
            "==" => FlowintOp::Eq,
            "!=" => FlowintOp::Ne,
            "<" => FlowintOp::Lt,
            "<=" => FlowintOp::Le,
            ">" => FlowintOp::Gt,
            ">=" => FlowintOp::Ge,
            "isset" => FlowintOp::IsSet,
            "notset" | "isnotset" => FlowintOp::NotSet,
            _ => return Err(bad()),
        };
        let value = match parts.next().filter(|s| !s.is_empty()) {
            None => None,
            Some(d) if d.bytes().all(|b| b.is_ascii_digit()) => {
                if d.len() > 10 {
                    return Err(bad());
                }
                Some(FlowintVal::Num(d.parse().map_err(|_| {
                    format!("flowint: {d} does not fit in 32 bits")
                })?))
            }
            Some(n) if valid_name(n, b"") => Some(FlowintVal::Var(n.to_string())),
            Some(_) => return Err(bad()),
        };
        if value.is_none() && !matches!(op, FlowintOp::IsSet | FlowintOp::NotSet) {
            return Err(format!("flowint: {} needs a value", v.trim()));
        }
        Ok(Flowint {
            name: name.to_string(),
            op,
            value,
        })
    }

    /// True for `=`, `+`, `-` (made once the rule matched).
    pub fn is_change(&self) -> bool {
        matches!(self.op, FlowintOp::Set | FlowintOp::Add | FlowintOp::Sub)
    }

    fn operand(&self, vars: &HashMap<String, u32>) -> u32 {
        match &self.value {
            Some(FlowintVal::Num(n)) => *n,
            Some(FlowintVal::Var(v)) => vars.get(v).copied().unwrap_or(0),
            None => 0,
        }
    }

    /// A condition on the flow's variables (changes always hold here).
    pub fn holds(&self, vars: &HashMap<String, u32>) -> bool {
        let have = vars.get(&self.name).copied();
        let v = self.operand(vars);
        match (self.op, have) {
            (FlowintOp::IsSet, h) => h.is_some(),
            (FlowintOp::NotSet, h) => h.is_none(),
            (_, None) if !self.is_change() => false,
            (FlowintOp::Eq, Some(h)) => h == v,
            (FlowintOp::Ne, Some(h)) => h != v,
            (FlowintOp::Lt, Some(h)) => h < v,
            (FlowintOp::Le, Some(h)) => h <= v,
            (FlowintOp::Gt, Some(h)) => h > v,
            (FlowintOp::Ge, Some(h)) => h >= v,
            _ => true,
        }
    }

    /// Makes the change (u32 arithmetic wraps; `-` on an unset variable does nothing).
    pub fn apply(&self, vars: &mut HashMap<String, u32>) {
        let v = self.operand(vars);
        let have = vars.get(&self.name).copied();
        let new = match (self.op, have) {
            (FlowintOp::Set, _) => v,
            (FlowintOp::Add, h) => h.unwrap_or(0).wrapping_add(v),
            (FlowintOp::Sub, Some(h)) => h.wrapping_sub(v),
            _ => return,
        };
        if have.is_some() || vars.len() < MAX_FLOWINTS {
            vars.insert(self.name.clone(), new);
        }
    }
}

fn valid_name(n: &str, extra: &[u8]) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || extra.contains(c))
}

/// `xbits`' command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XbitCmd {
    /// `set`.
    Set,
    /// `unset`.
    Unset,
    /// `toggle`.
    Toggle,
    /// `isset`.
    IsSet,
    /// `isnotset`.
    IsNotSet,
}

/// Whose bit: the packet's source host, its destination host, or the pair (either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XbitTrack {
    /// `ip_src`.
    IpSrc,
    /// `ip_dst`.
    IpDst,
    /// `ip_pair`.
    IpPair,
}

/// One `xbits` keyword.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xbit {
    /// The command.
    pub cmd: XbitCmd,
    /// The bit.
    pub name: String,
    /// Whose (none: the keyword never matches and sets nothing, as in Suricata).
    pub track: Option<XbitTrack>,
    /// Seconds a set bit lives.
    pub expire: u32,
}

/// What `xbits:` holds: a bit, or `noalert`.
#[derive(Debug, PartialEq, Eq)]
pub enum XbitsOption {
    /// A bit command.
    Bit(Xbit),
    /// `xbits:noalert`.
    NoAlert,
}

impl Xbit {
    /// Parses `cmd,name[,track T][,expire N]`; `Err((unsupported, message))`.
    pub fn parse(v: &str) -> Result<XbitsOption, (bool, String)> {
        let syntax = |m: String| (false, m);
        let tokens: Vec<&str> = v.split(',').map(str::trim_start).collect();
        if tokens.len() == 1 && tokens[0].trim() == "noalert" {
            return Ok(XbitsOption::NoAlert);
        }
        let cmd = match tokens[0].trim() {
            "set" => XbitCmd::Set,
            "unset" => XbitCmd::Unset,
            "toggle" => XbitCmd::Toggle,
            "isset" => XbitCmd::IsSet,
            "isnotset" => XbitCmd::IsNotSet,
            o => return Err(syntax(format!("invalid xbits cmd: {o}"))),
        };
        let name = tokens
            .get(1)
            .map(|n| n.trim())
            .filter(|n| !n.is_empty() && !n.contains(' '))
            .ok_or_else(|| syntax(format!("xbits:{} needs a name", tokens[0].trim())))?;
        let (mut track, mut expire) = (None, None);
        for t in &tokens[2..] {
            let (k, val) = t.split_once(' ').unwrap_or((t, ""));
            match k {
                "track" => {
                    if track.is_some() {
                        return Err(syntax("xbits: track given twice".into()));
                    }
                    track = Some(match val {
                        "ip_src" => XbitTrack::IpSrc,
                        "ip_dst" => XbitTrack::IpDst,
                        "ip_pair" => XbitTrack::IpPair,
                        "tx" => return Err((true, "xbits track tx (rule hooks)".into())),
                        o => return Err(syntax(format!("invalid xbits tracker: {o}"))),
                    });
                }
                "expire" => {
                    let n: u32 = val
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| syntax(format!("invalid expire value: {val}")))?;
                    if expire.replace(n).is_some() {
                        return Err(syntax("xbits: expire given twice".into()));
                    }
                }
                o => return Err(syntax(format!("invalid xbits keyword: {o}"))),
            }
        }
        Ok(XbitsOption::Bit(Xbit {
            cmd,
            name: name.to_string(),
            track,
            expire: expire.unwrap_or(DEFAULT_EXPIRE),
        }))
    }

    /// True for `set`, `unset`, `toggle` (made once the rule matched).
    pub fn is_change(&self) -> bool {
        matches!(self.cmd, XbitCmd::Set | XbitCmd::Unset | XbitCmd::Toggle)
    }
}

/// Where a bit lives: one host, or an unordered pair of hosts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// One host.
    Host(IpAddr),
    /// Two hosts, the lower address first.
    Pair(IpAddr, IpAddr),
}

/// The longest bit name a bus message may carry.
const MAX_NAME: usize = 256;

/// A change made to the xbits, as the cluster's bus carries it: `set` with the bit's
/// lifetime in seconds, or `unset` (a toggle is sent as what it did).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XbitChange {
    owner: Owner,
    name: String,
    set: Option<u32>,
}

impl XbitChange {
    /// `s SECS h IP NAME`, `u h IP NAME`, `s SECS p IP IP NAME` … (names hold no spaces).
    pub fn encode(&self) -> Vec<u8> {
        let owner = crate::hosts::owner_text(&self.owner);
        match self.set {
            Some(secs) => format!("s {secs} {owner} {}", self.name),
            None => format!("u {owner} {}", self.name),
        }
        .into_bytes()
    }

    /// The change `encode` wrote; `None` for anything else.
    pub fn decode(p: &[u8]) -> Option<XbitChange> {
        let text = std::str::from_utf8(p).ok()?;
        let mut it = text.split(' ');
        let set = match it.next()? {
            "s" => Some(
                it.next()?
                    .parse::<u32>()
                    .ok()
                    .filter(|s| u64::from(*s) <= crate::hosts::MAX_SECS)?,
            ),
            "u" => None,
            _ => return None,
        };
        let owner = match it.next()? {
            "h" => Owner::Host(it.next()?.parse().ok()?),
            "p" => Owner::Pair(it.next()?.parse().ok()?, it.next()?.parse().ok()?),
            _ => return None,
        };
        let name = it
            .next()
            .filter(|n| !n.is_empty() && n.len() <= MAX_NAME)?
            .to_string();
        if it.next().is_some() {
            return None;
        }
        Some(XbitChange { owner, name, set })
    }
}

/// The gateway's xbits, bounded ([`MAX_XBITS`]).
#[derive(Debug, Default)]
pub struct XbitStore {
    bits: HashMap<(Owner, String), Instant>,
    /// Sets refused for want of room.
    pub full: u64,
}

impl XbitStore {
    fn owner(x: &Xbit, src: IpAddr, dst: Option<IpAddr>) -> Option<Owner> {
        Some(match x.track? {
            XbitTrack::IpSrc => Owner::Host(src),
            XbitTrack::IpDst => Owner::Host(dst?),
            XbitTrack::IpPair => {
                let d = dst?;
                Owner::Pair(src.min(d), src.max(d))
            }
        })
    }

    /// An `isset` / `isnotset` condition for a packet from `src` to `dst`; an expired bit is
    /// dropped when seen.
    pub fn holds(&mut self, x: &Xbit, src: IpAddr, dst: Option<IpAddr>, now: Instant) -> bool {
        let Some(owner) = Self::owner(x, src, dst) else {
            return false;
        };
        let key = (owner, x.name.clone());
        let live = match self.bits.get(&key) {
            Some(exp) if *exp >= now => true,
            Some(_) => {
                self.bits.remove(&key);
                false
            }
            None => false,
        };
        match x.cmd {
            XbitCmd::IsSet => live,
            XbitCmd::IsNotSet => !live,
            _ => true,
        }
    }

    /// Makes a `set` / `unset` / `toggle` change. `set` leaves a bit already there as it is
    /// (its expiry is not renewed, as in Suricata). Returns what changed, for the other nodes.
    pub fn apply(
        &mut self,
        x: &Xbit,
        src: IpAddr,
        dst: Option<IpAddr>,
        now: Instant,
    ) -> Option<XbitChange> {
        let owner = Self::owner(x, src, dst)?;
        let key = (owner, x.name.clone());
        let until = now + Duration::from_secs(u64::from(x.expire));
        let live = matches!(self.bits.get(&key), Some(exp) if *exp >= now);
        let set = match x.cmd {
            XbitCmd::Set if !live => Some(x.expire),
            XbitCmd::Unset => None,
            XbitCmd::Toggle if !live => Some(x.expire),
            XbitCmd::Toggle => None,
            _ => return None,
        };
        match set {
            Some(_) => {
                self.bits.remove(&key);
                self.insert(key.clone(), until, now);
            }
            None => {
                // Sent even when this node holds no such bit: another may (its set may have
                // reached it and not this node), and an unset is harmless where there is none.
                self.bits.remove(&key);
            }
        }
        Some(XbitChange {
            owner: key.0,
            name: key.1,
            set,
        })
    }

    /// Applies a change another node made.
    pub fn receive(&mut self, c: XbitChange, now: Instant) {
        let key = (c.owner, c.name);
        match c.set {
            Some(secs) => {
                if !matches!(self.bits.get(&key), Some(exp) if *exp >= now) {
                    self.bits.remove(&key);
                    self.insert(key, now + Duration::from_secs(u64::from(secs)), now);
                }
            }
            None => {
                self.bits.remove(&key);
            }
        }
    }

    fn insert(&mut self, key: (Owner, String), until: Instant, now: Instant) {
        if self.bits.len() >= MAX_XBITS {
            self.bits.retain(|_, exp| *exp >= now);
        }
        if self.bits.len() >= MAX_XBITS {
            self.full += 1;
            return;
        }
        self.bits.insert(key, until);
    }

    /// Bits held.
    pub fn len(&self) -> usize {
        self.bits.len()
    }

    /// True when no bit is held.
    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fi(v: &str) -> Flowint {
        Flowint::parse(v).unwrap()
    }

    #[test]
    fn flowint_conditions_and_changes() {
        let mut vars = HashMap::new();
        assert!(!fi("cnt, >, 0").holds(&vars), "unset never compares");
        assert!(fi("cnt, notset").holds(&vars));
        fi("cnt, -, 1").apply(&mut vars);
        assert!(vars.is_empty(), "- on unset does nothing");
        fi("cnt, +, 5").apply(&mut vars);
        assert_eq!(vars["cnt"], 5);
        fi("cnt, +, 1").apply(&mut vars);
        assert!(fi("cnt, ==, 6").holds(&vars) && fi("cnt, isset").holds(&vars));
        fi("lim, =, 6").apply(&mut vars);
        assert!(fi("cnt, >=, lim").holds(&vars) && !fi("cnt, >, lim").holds(&vars));
        assert!(fi("cnt, >, other").holds(&vars), "an unset operand is 0");
        fi("cnt, =, 0").apply(&mut vars);
        fi("cnt, -, 1").apply(&mut vars);
        assert_eq!(vars["cnt"], u32::MAX, "wraps");
        for bad in [
            "c, +, 1",
            "1x, +, 1",
            "cnt, ~, 1",
            "cnt, +",
            "cnt, +, 12345678901",
            "cnt, +, 9999999999",
            "cnt, ==, -1",
        ] {
            assert!(Flowint::parse(bad).is_err(), "{bad}");
        }
        assert!(Flowint::parse("name.x/y, isset,").is_ok());
    }

    #[test]
    fn xbits_by_host_and_pair_with_expiry() {
        let bit = |v: &str| match Xbit::parse(v).unwrap() {
            XbitsOption::Bit(b) => b,
            XbitsOption::NoAlert => panic!("noalert"),
        };
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "192.0.2.9".parse().unwrap());
        let t0 = Instant::now();
        let mut s = XbitStore::default();
        s.apply(&bit("set,seen,track ip_src,expire 10"), a, Some(b), t0);
        // The host's bit, whichever side of the next packet it is on.
        assert!(s.holds(&bit("isset,seen,track ip_dst"), b, Some(a), t0));
        assert!(!s.holds(&bit("isset,seen,track ip_src"), b, Some(a), t0));
        assert!(
            !s.holds(
                &bit("isset,seen,track ip_src"),
                a,
                Some(b),
                t0 + Duration::from_secs(11)
            ),
            "expired"
        );
        assert_eq!(s.len(), 0, "dropped when seen expired");
        s.apply(&bit("set,p,track ip_pair"), a, Some(b), t0);
        assert!(
            s.holds(&bit("isset,p,track ip_pair"), b, Some(a), t0),
            "pairs ignore direction"
        );
        s.apply(&bit("toggle,p,track ip_pair"), a, Some(b), t0);
        assert!(s.holds(&bit("isnotset,p,track ip_pair"), a, Some(b), t0));
        // No track: never matches, sets nothing.
        s.apply(&bit("set,q"), a, Some(b), t0);
        assert!(
            !s.holds(&bit("isset,q"), a, Some(b), t0)
                && !s.holds(&bit("isnotset,q"), a, Some(b), t0)
        );
        assert_eq!(Xbit::parse("noalert").unwrap(), XbitsOption::NoAlert);
        for bad in [
            "sett,x,track ip_src",
            "set,x,track ip_srcx",
            "set,x,track ip_src,expire 0",
            "set,,track ip_src",
            "set,x,track ip_src,color red",
        ] {
            assert!(matches!(Xbit::parse(bad), Err((false, _))), "{bad}");
        }
        assert!(matches!(Xbit::parse("set,x,track tx"), Err((true, _))));
    }
}
