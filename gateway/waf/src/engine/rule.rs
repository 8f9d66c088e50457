//! A rule compiled for evaluation: targets and exclusions, operator, transformations, the
//! actions run on a match, its disruptive action and flow, and its metadata.

use std::path::Path;

use super::actions::{Ctl, SetVar};
use super::macros::Macro;
use super::ops::Op;
use super::target::Target;
use crate::seclang::{Action, Operator, Variable};
use crate::transform::Transform;

/// What a rule does to the transaction when its chain matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruptive {
    /// Go on.
    Pass,
    /// Refuse with the rule's status (403 unless `status:` says otherwise).
    Deny,
    /// Close the connection.
    Drop,
    /// Stop inspecting: the whole transaction, the request phases, or this phase.
    Allow(AllowScope),
    /// Redirect to the rule's `redirect:` location.
    Redirect,
    /// `block`: the phase's default disruptive action.
    Block,
}

/// How much `allow` lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowScope {
    /// Every remaining phase (`allow`).
    All,
    /// The rest of the request phases (`allow:request`).
    Request,
    /// The rest of this phase (`allow:phase`).
    Phase,
}

/// A non-disruptive action run when the rule (one link of a chain) matches a value.
#[derive(Debug)]
pub enum Effect {
    /// `setvar`.
    SetVar(SetVar),
    /// `ctl`.
    Ctl(Ctl),
    /// `initcol:col=key`: the collection exists from now on (kept in the transaction).
    InitCol(String),
}

/// A compiled rule (one link of a chain).
#[derive(Debug)]
pub struct CRule {
    /// `id` (0 for chained links and markers).
    pub id: u64,
    /// Phase 1 to 5.
    pub phase: u8,
    /// Where it was written (`file:line`).
    pub origin: String,
    /// `SecMarker` name, for a marker.
    pub marker: Option<String>,
    /// Targets.
    pub targets: Vec<Target>,
    /// Exclusions (`!VAR:key`).
    pub exclusions: Vec<Target>,
    /// The operator; `None` for `SecAction` (always matches once).
    pub op: Option<Op>,
    /// `!@op`.
    pub negated: bool,
    /// Transformations after `t:none` handling (defaults included).
    pub transforms: Vec<Transform>,
    /// The id of this transformation chain in the rule set (rules with equal chains share
    /// it, and so share cached results).
    pub chain_id: u32,
    /// Byte sets a value must draw from for the operator to match (see `needs`), and their
    /// rule-level check through the link's chain.
    pub(crate) bytes: super::carry::ByteCheck,
    /// The rule's slot in its chain's prefilter, when its operator has required literals.
    pub pf_slot: Option<u32>,
    /// The link's slot in the rule set's automaton of every link's literals (for the
    /// rule-level check on untransformed values).
    pub lit_slot: Option<u32>,
    /// A `multiMatch` link's own literal prefilter (its candidates are not the chain's final
    /// value, so they cannot share the chain's).
    pub own_pf: Option<super::prefilter::Prefilter>,
    /// `multiMatch`.
    pub multi_match: bool,
    /// For `multiMatch`: the chain's nodes from the first transformation to the last (the
    /// candidates' places in the transformation cache).
    pub(crate) chain_path: Box<[u32]>,
    /// `capture`.
    pub capture: bool,
    /// Non-disruptive actions, in order.
    pub effects: Vec<Effect>,
    /// The disruptive action (a chain starter's decides).
    pub disruptive: Disruptive,
    /// `status:`.
    pub status: Option<u16>,
    /// `redirect:`.
    pub redirect: Option<Macro>,
    /// `skip:N`.
    pub skip: u32,
    /// `skipAfter:MARKER`.
    pub skip_after: Option<String>,
    /// Where `skipAfter` lands in the rule's phase: the index of the marker (or the rule
    /// whose id it names) after which evaluation goes on; `u32::MAX` when none follows (the
    /// rest of the phase is skipped).
    pub(crate) skip_to: u32,
    /// `log` (default) or `nolog`.
    pub log: bool,
    /// `msg:`.
    pub msg: Option<Macro>,
    /// `logdata:`.
    pub logdata: Option<Macro>,
    /// `severity:` as 0 (emergency) to 7 (debug).
    pub severity: Option<u8>,
    /// `tag:` values.
    pub tags: Vec<String>,
    /// `ver:`.
    pub ver: Option<String>,
    /// The next link of the chain.
    pub chained: Option<Box<CRule>>,
    /// The rule's place in the rule set (chain starters, all phases), for selections.
    pub(crate) index: u32,
    /// The outcome every transaction shares, when the rule set decides it (see `fold`).
    pub(crate) folded: Option<super::fold::Folded>,
    /// The link's slot in the rule set's value memo, when its operator reads nothing but its
    /// input (see `memo`).
    pub(crate) memo: Option<u32>,
}

/// Severity names ModSecurity accepts, by number.
const SEVERITIES: [&str; 8] = [
    "EMERGENCY",
    "ALERT",
    "CRITICAL",
    "ERROR",
    "WARNING",
    "NOTICE",
    "INFO",
    "DEBUG",
];

/// The severity as a number (a name or a digit).
pub fn severity(v: &str) -> Option<u8> {
    let v = v.trim();
    if let Ok(n) = v.parse::<u8>() {
        return (n < 8).then_some(n);
    }
    SEVERITIES
        .iter()
        .position(|s| s.eq_ignore_ascii_case(v))
        .map(|p| p as u8)
}

/// The name of a severity number.
pub fn severity_name(n: u8) -> &'static str {
    SEVERITIES.get(usize::from(n)).copied().unwrap_or("UNKNOWN")
}

/// What a rule is made of before compiling: its variables, operator and actions (the phase's
/// default actions first).
pub struct Source<'a> {
    /// Variables (empty for `SecAction`).
    pub variables: &'a [Variable],
    /// The operator (`None` for `SecAction`).
    pub operator: Option<&'a Operator>,
    /// Default actions, then the rule's.
    pub actions: Vec<Action>,
    /// Folder for operator files.
    pub dir: &'a Path,
    /// `file:line`.
    pub origin: String,
}

impl CRule {
    /// Compiles one link.
    pub fn compile(src: Source<'_>) -> Result<CRule, String> {
        let mut r = CRule::empty(src.origin.clone());
        for v in src.variables {
            let t = Target::compile(v)?;
            if v.exclude {
                r.exclusions.push(t);
            } else {
                r.targets.push(t);
            }
        }
        if let Some(op) = src.operator {
            r.op = Some(Op::compile(op, src.dir)?);
            r.negated = op.negated;
        }
        for a in &src.actions {
            r.apply_action(a)?;
        }
        Ok(r)
    }

    /// A rule with nothing set.
    pub fn empty(origin: String) -> CRule {
        CRule {
            id: 0,
            phase: 2,
            origin,
            marker: None,
            targets: Vec::new(),
            exclusions: Vec::new(),
            op: None,
            negated: false,
            transforms: Vec::new(),
            chain_id: 0,
            bytes: Default::default(),
            pf_slot: None,
            own_pf: None,
            lit_slot: None,
            multi_match: false,
            chain_path: Box::new([]),
            capture: false,
            effects: Vec::new(),
            disruptive: Disruptive::Pass,
            status: None,
            redirect: None,
            skip: 0,
            skip_after: None,
            skip_to: u32::MAX,
            log: true,
            msg: None,
            logdata: None,
            severity: None,
            tags: Vec::new(),
            ver: None,
            chained: None,
            folded: None,
            index: u32::MAX,
            memo: None,
        }
    }

    fn apply_action(&mut self, a: &Action) -> Result<(), String> {
        let v = a.value.as_deref().unwrap_or("");
        match a.name {
            "id" => {
                self.id = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("id:{v} is not a number"))?
            }
            "phase" => self.phase = phase(v)?,
            "t" => match Transform::from_name(v) {
                Some(Transform::None) => self.transforms.clear(),
                Some(t) => self.transforms.push(t),
                None => return Err(format!("unknown transformation t:{v}")),
            },
            "multiMatch" => self.multi_match = true,
            "capture" => self.capture = true,
            "setvar" => self.effects.push(Effect::SetVar(SetVar::parse(v)?)),
            "ctl" => self.effects.push(Effect::Ctl(Ctl::parse(v)?)),
            "initcol" => self.effects.push(Effect::InitCol(
                v.split('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_uppercase(),
            )),
            "pass" => self.disruptive = Disruptive::Pass,
            "deny" => self.disruptive = Disruptive::Deny,
            "drop" => self.disruptive = Disruptive::Drop,
            "block" => self.disruptive = Disruptive::Block,
            "redirect" => {
                self.disruptive = Disruptive::Redirect;
                self.redirect = Some(Macro::parse(v));
            }
            "allow" => self.disruptive = Disruptive::Allow(allow_scope(v)),
            "status" => self.status = Some(v.trim().parse().map_err(|_| format!("status:{v}"))?),
            "skip" => self.skip = v.trim().parse().map_err(|_| format!("skip:{v}"))?,
            "skipAfter" => self.skip_after = Some(v.trim().to_string()),
            "log" => self.log = true,
            "nolog" => self.log = false,
            "msg" => self.msg = Some(Macro::parse(v)),
            "logdata" => self.logdata = Some(Macro::parse(v)),
            "severity" => self.severity = severity(v),
            "tag" => self.tags.push(v.to_string()),
            "ver" => self.ver = Some(v.to_string()),
            "exec" | "proxy" | "pause" | "setenv" | "setsid" | "setuid" | "setrsc"
            | "deprecatevar" | "append" | "prepend" => {
                return Err(format!("action {} is not supported", a.name))
            }
            // Metadata and audit-log controls: accepted, nothing to do here.
            _ => {}
        }
        Ok(())
    }
}

fn phase(v: &str) -> Result<u8, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "request" => Ok(1),
        "2" => Ok(2),
        "3" => Ok(3),
        "4" | "response" => Ok(4),
        "5" | "logging" => Ok(5),
        _ => Err(format!("phase:{v} is not 1 to 5")),
    }
}

fn allow_scope(v: &str) -> AllowScope {
    match v.trim().to_ascii_lowercase().as_str() {
        "request" => AllowScope::Request,
        "phase" => AllowScope::Phase,
        _ => AllowScope::All,
    }
}
