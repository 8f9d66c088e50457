//! Verification of one buffer's item list, with Suricata's relative-match retry semantics:
//! when a later relative item fails, the content (or pcre) it depends on is searched again from
//! one byte after its previous match; an independent item that fails ends the search.

use std::cell::OnceCell;
use std::time::{Duration, Instant};

use crate::content::Content;
use crate::rule::Item;

/// The most recursion steps one buffer inspection may take (Suricata's default is 3,000).
pub const MAX_STEPS: u32 = 3000;

/// Per-flow work counters and the pcre time budget.
#[derive(Debug, Default)]
pub struct Scratch {
    steps: u32,
    /// Time spent in pcre on this flow.
    pub pcre_time: Duration,
    /// The flow's pcre budget (zero = unlimited).
    pub pcre_budget: Duration,
    /// PCRE2 match-limit hits.
    pub limit_hits: u64,
    /// Set once the budget ran out; later pcre items do not run.
    pub budget_exhausted: bool,
    /// Inspections cut by the recursion limit.
    pub step_limit_hits: u64,
    /// Rules that already matched in this transaction (a rule indexed in two phases alerts
    /// once).
    pub fired: std::collections::HashSet<u32>,
    /// What the current rule's `base64_decode` decoded (its `base64_data`).
    pub base64: Option<Vec<u8>>,
    /// `byte_extract` / `byte_math` variables of the rule being inspected.
    pub vars: crate::bytevars::Vars,
    /// `filestore` requests of the rules that matched (alerting or not), for the stage.
    pub store: Vec<(crate::filestore::StoreDir, crate::filestore::Scope)>,
}

impl Scratch {
    /// Counters for a flow with a pcre time budget.
    pub fn with_budget(pcre_budget: Duration) -> Self {
        Scratch {
            pcre_budget,
            ..Scratch::default()
        }
    }
}

/// A buffer with a lazily built lower-cased copy for `nocase` contents.
pub struct Data<'a> {
    raw: &'a [u8],
    lower: OnceCell<Vec<u8>>,
}

impl<'a> Data<'a> {
    /// Wraps a buffer.
    pub fn new(raw: &'a [u8]) -> Self {
        Data {
            raw,
            lower: OnceCell::new(),
        }
    }

    /// The bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    fn lower(&self) -> &[u8] {
        self.lower.get_or_init(|| self.raw.to_ascii_lowercase())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Match,
    NoMatch,
    Discontinue,
}

/// Whether the items match the buffer; on a match, returns where the last positive content or
/// pcre matched (for the evidence excerpt).
pub fn inspect(items: &[Item], data: &Data<'_>, scratch: &mut Scratch) -> Option<(usize, usize)> {
    scratch.steps = 0;
    let mut at = None;
    let r = run(items, 0, data, 0, scratch, &mut at);
    if scratch.steps >= MAX_STEPS {
        scratch.step_limit_hits += 1;
    }
    (r == Outcome::Match).then(|| at.unwrap_or((0, data.raw.len().min(64))))
}

fn fail(item: &Item) -> Outcome {
    if item.relative() {
        Outcome::NoMatch
    } else {
        Outcome::Discontinue
    }
}

fn next_relative(items: &[Item], i: usize) -> bool {
    items.get(i + 1).is_some_and(Item::relative)
}

fn run(
    items: &[Item],
    i: usize,
    data: &Data<'_>,
    prev: usize,
    s: &mut Scratch,
    at: &mut Option<(usize, usize)>,
) -> Outcome {
    let Some(item) = items.get(i) else {
        return Outcome::Match;
    };
    s.steps += 1;
    if s.steps >= MAX_STEPS {
        return Outcome::Discontinue;
    }
    let buf = data.raw;
    match item {
        Item::Content(c) if c.vars.is_some() => {
            let c = c.resolved(&s.vars);
            content(items, i, &c, data, prev, s, at)
        }
        Item::Content(c) => content(items, i, c, data, prev, s, at),
        Item::ByteExtract(e) => match e.run(buf, prev) {
            Some((v, cursor)) => {
                s.vars[usize::from(e.var) % s.vars.len()] = v;
                run(items, i + 1, data, cursor, s, at)
            }
            None => fail(item),
        },
        Item::ByteMath(m) => match m.run(buf, prev, &s.vars) {
            Some((v, cursor)) => {
                s.vars[usize::from(m.var) % s.vars.len()] = v;
                run(items, i + 1, data, cursor, s, at)
            }
            None => fail(item),
        },
        Item::Pcre(p) => {
            let base = if p.relative { prev.min(buf.len()) } else { 0 };
            let mut from = 0usize;
            loop {
                if s.budget_exhausted {
                    return Outcome::Discontinue;
                }
                let t0 = Instant::now();
                let r = p.find_at(buf, base, from);
                s.pcre_time += t0.elapsed();
                if !s.pcre_budget.is_zero() && s.pcre_time > s.pcre_budget {
                    s.budget_exhausted = true;
                }
                let found = match r {
                    Ok(f) => f,
                    Err(_) => {
                        s.limit_hits += 1;
                        return Outcome::Discontinue;
                    }
                };
                match (found, p.negated) {
                    (None, true) => return run(items, i + 1, data, prev, s, at),
                    (None, false) => return fail(item),
                    (Some(_), true) => return fail(item),
                    (Some((ms, me)), false) => {
                        let r = run(items, i + 1, data, me, s, at);
                        match r {
                            Outcome::Match => {
                                if at.is_none() {
                                    *at = Some((ms, me));
                                }
                                return Outcome::Match;
                            }
                            Outcome::Discontinue => return r,
                            Outcome::NoMatch if !next_relative(items, i) => {
                                return Outcome::Discontinue
                            }
                            Outcome::NoMatch => {
                                s.steps += 1;
                                if s.steps >= MAX_STEPS || ms + 1 > buf.len() {
                                    return Outcome::Discontinue;
                                }
                                from = ms + 1 - base;
                            }
                        }
                    }
                }
            }
        }
        Item::IsDataAt {
            n,
            relative,
            negated,
            var,
        } => {
            let n = match var {
                Some(v) => {
                    usize::try_from(s.vars[usize::from(*v) % s.vars.len()]).unwrap_or(usize::MAX)
                }
                None => *n as usize,
            };
            let has = if *relative {
                prev.saturating_add(n) <= buf.len()
            } else {
                n < buf.len()
            };
            if has != *negated {
                run(items, i + 1, data, prev, s, at)
            } else {
                fail(item)
            }
        }
        Item::Bsize(c) => {
            if c.test(buf.len() as u64) {
                run(items, i + 1, data, prev, s, at)
            } else {
                Outcome::Discontinue
            }
        }
        Item::ByteTest(t) => {
            if t.test_vars(buf, prev, &s.vars) {
                run(items, i + 1, data, prev, s, at)
            } else {
                fail(item)
            }
        }
        Item::ByteJump(j) => match j.jump_vars(buf, prev, &s.vars) {
            Some(p) => run(items, i + 1, data, p, s, at),
            None => fail(item),
        },
        Item::Base64Decode {
            bytes,
            offset,
            relative,
        } => {
            let base = if *relative { prev } else { 0 };
            let start = base.saturating_add(*offset as usize);
            if start >= buf.len() {
                return fail(item);
            }
            let end = start.saturating_add(*bytes as usize).min(buf.len());
            let decoded = crate::transform::decode_rfc4648(&buf[start..end]);
            if decoded.is_empty() {
                return fail(item);
            }
            s.base64 = Some(decoded);
            // The end of its list: what follows never runs (Suricata's final match).
            Outcome::Match
        }
        // The whole buffer, whatever matched before (Suricata's DETECT_DATASET).
        Item::Dataset(d) => {
            if d.matches(buf) {
                run(items, i + 1, data, prev, s, at)
            } else {
                Outcome::Discontinue
            }
        }
        // The buffer is there: plain `absent` fails, `or_else` goes on to what follows.
        Item::Absent { or_else: true } => run(items, i + 1, data, prev, s, at),
        Item::Absent { or_else: false } => Outcome::Discontinue,
    }
}

/// The search window `[offset, depth)` of a content, as Suricata computes it.
fn window(c: &Content, prev: usize, len: usize) -> (usize, usize) {
    let relative = c.distance.is_some() || c.within.is_some();
    if relative {
        let dist = i64::from(c.distance.unwrap_or(0));
        let prev_i = prev as i64;
        let mut offset = if dist < 0 && -dist > prev_i {
            0
        } else {
            prev_i + dist
        };
        let mut depth = len as i64;
        if let Some(w) = c.within {
            let lim = prev_i + i64::from(w) + dist;
            if depth > lim {
                depth = lim.max(0);
            }
        }
        if let Some(d) = c.depth {
            if prev_i + i64::from(d) < depth {
                depth = prev_i + i64::from(d);
            }
        }
        if let Some(o) = c.offset {
            offset = offset.max(i64::from(o));
        }
        (offset.max(0) as usize, depth.max(0) as usize)
    } else {
        let offset = c.offset.unwrap_or(0) as usize;
        let depth = if c.startswith {
            offset + c.pattern.len()
        } else {
            c.depth.map(|d| offset + d as usize).unwrap_or(len)
        };
        (offset, depth)
    }
}

fn content(
    items: &[Item],
    i: usize,
    c: &Content,
    data: &Data<'_>,
    prev: usize,
    s: &mut Scratch,
    at: &mut Option<(usize, usize)>,
) -> Outcome {
    let relative = c.distance.is_some() || c.within.is_some();
    let single = !relative && c.depth.is_none() && c.offset.is_none() && !c.startswith;
    let len = data.raw.len();
    let (offset, depth) = window(c, prev, len);
    let depth = depth.min(len);
    let hay = if c.nocase { data.lower() } else { data.raw };
    let pat = &c.pattern[..];
    let mut from = offset;
    loop {
        if from > depth || depth == 0 {
            return if c.negated {
                run(items, i + 1, data, prev, s, at)
            } else if relative {
                Outcome::NoMatch
            } else {
                Outcome::Discontinue
            };
        }
        let found = if (c.endswith && depth < len) || pat.len() > depth - from {
            None
        } else {
            memchr::memmem::find(&hay[from..depth], pat).map(|p| p + from)
        };
        let Some(pos) = found else {
            if c.negated {
                return run(items, i + 1, data, prev, s, at);
            }
            return if relative {
                Outcome::NoMatch
            } else {
                Outcome::Discontinue
            };
        };
        let mend = pos + pat.len();
        if c.negated {
            if c.endswith && mend != len {
                return run(items, i + 1, data, prev, s, at);
            }
            return if single {
                Outcome::Discontinue
            } else {
                Outcome::NoMatch
            };
        }
        if !c.endswith || mend == len {
            let r = run(items, i + 1, data, mend, s, at);
            match r {
                Outcome::Match => {
                    if at.is_none() {
                        *at = Some((pos, mend));
                    }
                    return Outcome::Match;
                }
                Outcome::Discontinue => return r,
                Outcome::NoMatch if !next_relative(items, i) => return Outcome::Discontinue,
                Outcome::NoMatch => {}
            }
        }
        s.steps += 1;
        if s.steps >= MAX_STEPS {
            return Outcome::Discontinue;
        }
        from = pos + 1;
    }
}
