//! The regex engine behind `@rx`, regex keys of variables (`ARGS:/^id_/`) and the tag and
//! message regexes of `SecRuleRemoveByTag` / `ctl:ruleRemoveByTag`, with ModSecurity v2's PCRE
//! semantics: bytes, not UTF-8 (`.` and classes match single bytes, `\w \d \s \b` and caseless
//! matching are ASCII-only as PCRE's default tables make them), DOTALL, `$` only at the very end
//! (DOLLAR_ENDONLY), first match found by backtracking order.
//!
//! A pattern is translated into the `regex` crate's syntax (see `notes/regex.md`), which runs
//! in linear time, whenever the translation provably means the same; anything that needs
//! backtracking (lookaround, backreferences, atomic groups that matter, `\K`, conditionals,
//! recursion, verbs) runs on PCRE2 with ModSecurity's match limits instead.

mod ast;
mod atomic;
mod class;
mod emit;
mod escape;
mod lex;
mod loops;
mod pcre;
mod set;
#[cfg(test)]
mod tests;

use lex::{Flags, Tok, Token};

/// How large a translated pattern may grow once compiled: the `regex` crate's default is
/// 10 MiB and CRS's largest needs 468 KiB (`notes/regex.md`); larger ones go to PCRE2.
const SIZE_LIMIT: usize = 16 << 20;

/// A problem compiling or running a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RxError {
    /// The pattern is not valid PCRE (PCRE2's message), or uses something neither engine runs.
    #[error("pattern does not compile: {0}")]
    Compile(String),
    /// PCRE2 gave up at the match or depth limit. ModSecurity v2 then sets
    /// `TX:MSC_PCRE_LIMITS_EXCEEDED`, logs, and treats the operator as not matching.
    #[error("PCRE match limit exceeded")]
    MatchLimit,
    /// Another PCRE2 matching error (ModSecurity: "Regex execution failed", no match).
    #[error("PCRE matching failed: {0}")]
    Match(String),
}

/// The PCRE options a pattern is compiled with, by where ModSecurity v2 uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxOptions {
    /// PCRE_CASELESS (ASCII letters only).
    pub caseless: bool,
    /// PCRE_DOTALL: `.` matches `\n`.
    pub dotall: bool,
    /// PCRE_DOLLAR_ENDONLY: `$` (outside `(?m)`) matches only at the very end.
    pub dollar_endonly: bool,
    /// The PCRE2 match limit (`SecPcreMatchLimit`); 0 leaves PCRE2's own (10,000,000).
    pub match_limit: u32,
    /// The PCRE2 depth limit (`SecPcreMatchLimitRecursion`); 0 leaves PCRE2's own.
    pub depth_limit: u32,
}

/// ModSecurity v2's compiled-in limits, used when `SecPcreMatchLimit` and
/// `SecPcreMatchLimitRecursion` are not set (`configure` default 1500 each; the recommended
/// `modsecurity.conf` sets 1000, CRS's container images 100000).
pub const DEFAULT_LIMIT: u32 = 1500;

impl RxOptions {
    /// `@rx`: DOTALL | DOLLAR_ENDONLY, default limits.
    pub const OPERATOR: RxOptions = RxOptions {
        caseless: false,
        dotall: true,
        dollar_endonly: true,
        match_limit: DEFAULT_LIMIT,
        depth_limit: DEFAULT_LIMIT,
    };
    /// A regex key of a variable (`ARGS:/^id_/`): CASELESS | DOTALL | DOLLAR_ENDONLY.
    pub const VARIABLE_KEY: RxOptions = RxOptions {
        caseless: true,
        ..RxOptions::OPERATOR
    };
    /// Tag and message regexes (`SecRuleRemoveByTag`, `ctl:ruleRemoveByTag`, `…ByMsg`,
    /// `SecRuleUpdateTargetByTag`): no options, so `$` also matches before a final newline.
    pub const PLAIN: RxOptions = RxOptions {
        caseless: false,
        dotall: false,
        dollar_endonly: false,
        ..RxOptions::OPERATOR
    };

    /// The same options with other limits (`SecPcreMatchLimit`,
    /// `SecPcreMatchLimitRecursion`).
    pub fn with_limits(self, match_limit: u32, depth_limit: u32) -> RxOptions {
        RxOptions {
            match_limit,
            depth_limit,
            ..self
        }
    }
}

/// A compiled pattern. `Send + Sync`: one per rule, shared by every transaction.
#[derive(Debug, Clone)]
pub struct Rx {
    engine: Engine,
    /// Capture groups, group 0 not counted.
    groups: usize,
}

#[derive(Debug, Clone)]
enum Engine {
    Regex(regex::bytes::Regex),
    Pcre(pcre2::bytes::Regex, &'static str),
}

impl Rx {
    /// Compiles a pattern as ModSecurity's `@rx` does ([`RxOptions::OPERATOR`]).
    pub fn compile(pattern: &str) -> Result<Rx, RxError> {
        Rx::compile_with(pattern, RxOptions::OPERATOR)
    }

    /// Compiles a pattern with the given options.
    pub fn compile_with(pattern: &str, opts: RxOptions) -> Result<Rx, RxError> {
        let base = Flags {
            caseless: opts.caseless,
            dotall: opts.dotall,
            ..Flags::default()
        };
        let tokens = match lex::lex(pattern.as_bytes(), base) {
            Ok(t) => t,
            Err(e) => return unreadable(pattern, &opts, e),
        };
        let why = match translate(&tokens, &opts) {
            Ok(rx) => return Ok(rx),
            Err(why) => why,
        };
        let re = pcre::build(pattern, &end_only_dollars(&tokens, &opts), &opts)?;
        let groups = re.captures_len().saturating_sub(1);
        Ok(Rx {
            engine: Engine::Pcre(re, why),
            groups,
        })
    }

    /// Whether the pattern matches anywhere in `hay` (bytes, not UTF-8).
    pub fn is_match(&self, hay: &[u8]) -> Result<bool, RxError> {
        match &self.engine {
            Engine::Regex(re) => Ok(re.is_match(hay)),
            Engine::Pcre(re, _) => re.is_match(hay).map_err(pcre::match_error),
        }
    }

    /// The first match's groups 0..=9 (what `capture` puts in TX.0..TX.9), `None` if no match.
    /// The vector has one entry per group the pattern has, up to 10; an entry is `None` when
    /// its group took no part in the match (ModSecurity v2 then writes an empty TX value for
    /// it if a later group matched, and clears it otherwise).
    pub fn captures(&self, hay: &[u8]) -> Result<Option<Vec<Option<Vec<u8>>>>, RxError> {
        let n = (self.groups + 1).min(10);
        let take = |get: &dyn Fn(usize) -> Option<Vec<u8>>| (0..n).map(get).collect();
        Ok(match &self.engine {
            Engine::Regex(re) => re
                .captures(hay)
                .map(|c| take(&|i| c.get(i).map(|m| m.as_bytes().to_vec()))),
            Engine::Pcre(re, _) => re
                .captures(hay)
                .map_err(pcre::match_error)?
                .map(|c| take(&|i| c.get(i).map(|m| m.as_bytes().to_vec()))),
        })
    }

    /// Which engine runs it: `"regex"` or `"pcre2"`.
    pub fn engine(&self) -> &'static str {
        match self.engine {
            Engine::Regex(_) => "regex",
            Engine::Pcre(..) => "pcre2",
        }
    }

    /// Why the pattern runs on PCRE2 (the first construct the translation does not do), or
    /// `None` when it runs on `regex`.
    pub fn pcre_reason(&self) -> Option<&'static str> {
        match self.engine {
            Engine::Regex(_) => None,
            Engine::Pcre(_, why) => Some(why),
        }
    }

    /// The pattern as the engine runs it: the translation in `regex` syntax, or the PCRE2
    /// pattern with its limits and `\z` rewrites.
    pub fn as_str(&self) -> &str {
        match &self.engine {
            Engine::Regex(re) => re.as_str(),
            Engine::Pcre(re, _) => re.as_str(),
        }
    }

    /// How many capture groups the pattern has (group 0 not counted).
    pub fn groups(&self) -> usize {
        self.groups
    }
}

/// Where the `$` that DOLLAR_ENDONLY restricts stand (none without that option; under
/// multiline PCRE ignores it).
fn end_only_dollars(tokens: &[Token], opts: &RxOptions) -> Vec<usize> {
    tokens
        .iter()
        .filter(|t| opts.dollar_endonly && t.tok == Tok::Dollar && !t.flags.multiline)
        .map(|t| t.at)
        .collect()
}

/// `pattern` as PCRE2 without DOLLAR_ENDONLY reads it the way ModSecurity's PCRE does with
/// `opts` (those `$` written `\z`); for checking against PCRE2 directly.
#[cfg(test)]
fn end_only_text(pattern: &str, opts: &RxOptions) -> Result<String, RxError> {
    let base = Flags {
        caseless: opts.caseless,
        dotall: opts.dotall,
        ..Flags::default()
    };
    let tokens = lex::lex(pattern.as_bytes(), base).map_err(RxError::Compile)?;
    pcre::end_only(pattern, &end_only_dollars(&tokens, opts))
}

/// The `regex` engine for the tokens, or why not.
fn translate(tokens: &[Token], opts: &RxOptions) -> Result<Rx, &'static str> {
    let tree = ast::parse(tokens, opts.dollar_endonly)?;
    let root = atomic::resolve(tree.root)?;
    loops::check(&root)?;
    let syntax = emit::emit(&root);
    let re = regex::bytes::RegexBuilder::new(&syntax)
        .unicode(false)
        .size_limit(SIZE_LIMIT)
        .nest_limit(1000)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "larger than the regex size limit",
            _ => "translation refused by regex (a bug)",
        })?;
    let groups = tree.groups as usize;
    if re.captures_len() != groups + 1 {
        return Err("capture groups miscounted (a bug)");
    }
    Ok(Rx {
        engine: Engine::Regex(re),
        groups,
    })
}

/// The reader refused the pattern: PCRE2 decides. Without a `$`, nothing needs rewriting;
/// with one, where it stands is unknown, so the pattern is refused rather than run with the
/// wrong `$`.
fn unreadable(pattern: &str, opts: &RxOptions, err: String) -> Result<Rx, RxError> {
    let re = pcre::build(pattern, &[], opts)?;
    if opts.dollar_endonly && pattern.contains('$') {
        return Err(RxError::Compile(format!("unsupported pattern: {err}")));
    }
    let groups = re.captures_len().saturating_sub(1);
    Ok(Rx {
        engine: Engine::Pcre(re, "pattern the translation cannot read"),
        groups,
    })
}
