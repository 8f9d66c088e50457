//! A rule's compiled targets: which variable, which members (a name, a regex, an XPath, or
//! all), counted or not; and exclusions (`!ARGS:foo`, `ctl:ruleRemoveTargetById`).

#![allow(missing_docs)]

use crate::rx::Rx;
use crate::seclang::{Key, Variable};

/// How a target selects members of a collection.
#[derive(Debug, Clone)]
pub enum Select {
    /// Every member (or the scalar's value).
    All,
    /// Members whose name equals this one (case-insensitively; stored lower case).
    Name(String),
    /// Members whose name matches the regex (case-insensitively).
    Regex(Rx),
    /// Members whose name begins with this (case-insensitively): a regex key that is `^` and
    /// a plain word (`TX:/^header_name_920450_/`), compared without the regex engine.
    Prefix(Vec<u8>),
}

/// Which variable a target reads, decided once when rules load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Args,
    ArgsGet,
    ArgsPost,
    ArgsNames,
    ArgsGetNames,
    ArgsPostNames,
    Headers,
    HeaderNames,
    Cookies,
    CookieNames,
    ResponseHeaders,
    ResponseHeaderNames,
    Files,
    FileNames,
    FilesSizes,
    FilesContent,
    PartHeaders,
    MatchedVars,
    MatchedVarsNames,
    MatchedVar,
    MatchedVarName,
    Xml,
    ArgsCombinedSize,
    FilesCombinedSize,
    HighestSeverity,
    /// A collection rules write (`TX`, `IP`) or a scalar (`REQUEST_URI`). The last kind:
    /// tables by kind are sized by it.
    Other,
}

impl Kind {
    /// Whether the kind is a list of named members (`Transaction::lists` gives them).
    pub fn is_list(self) -> bool {
        use Kind::*;
        !matches!(
            self,
            MatchedVar
                | MatchedVarName
                | Xml
                | ArgsCombinedSize
                | FilesCombinedSize
                | HighestSeverity
                | Other
        )
    }

    /// The kind of variable `name` (upper case).
    pub fn of(name: &str) -> Kind {
        use Kind::*;
        match name {
            "ARGS" => Args,
            "ARGS_GET" => ArgsGet,
            "ARGS_POST" => ArgsPost,
            "ARGS_NAMES" => ArgsNames,
            "ARGS_GET_NAMES" => ArgsGetNames,
            "ARGS_POST_NAMES" => ArgsPostNames,
            "REQUEST_HEADERS" => Headers,
            "REQUEST_HEADERS_NAMES" => HeaderNames,
            "REQUEST_COOKIES" => Cookies,
            "REQUEST_COOKIES_NAMES" => CookieNames,
            "RESPONSE_HEADERS" => ResponseHeaders,
            "RESPONSE_HEADERS_NAMES" => ResponseHeaderNames,
            "FILES" => Files,
            "FILES_NAMES" => FileNames,
            "FILES_SIZES" => FilesSizes,
            "FILES_TMP_CONTENT" => FilesContent,
            "MULTIPART_PART_HEADERS" => PartHeaders,
            "MATCHED_VARS" => MatchedVars,
            "MATCHED_VARS_NAMES" => MatchedVarsNames,
            "MATCHED_VAR" => MatchedVar,
            "MATCHED_VAR_NAME" => MatchedVarName,
            "XML" => Xml,
            "ARGS_COMBINED_SIZE" => ArgsCombinedSize,
            "FILES_COMBINED_SIZE" => FilesCombinedSize,
            "HIGHEST_SEVERITY" => HighestSeverity,
            _ => Other,
        }
    }
}

/// One compiled target.
#[derive(Debug)]
pub struct Target {
    /// The variable, upper case, as ModSecurity names it.
    pub var: &'static str,
    /// Which variable, as a kind.
    pub kind: Kind,
    /// Which members.
    pub select: Select,
    /// `&`: the count instead of the values.
    pub count: bool,
    /// The variable's index in the name table (where a scalar's value is kept).
    pub index: usize,
    /// A selected name as a value (the member's key, shared by every read).
    pub key: Option<crate::engine::tx::Val>,
    /// Where the target's values are summarised for rule-level checks (see `bound`);
    /// `None` for counts and for what rules write within a phase.
    pub(crate) slot: Option<Slot>,
}

/// A source of values summarised as a whole for rule-level checks: a collection by its
/// kind, or a scalar (kind `Other`) by its index in the name table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Slot {
    pub(crate) kind: Kind,
    pub(crate) index: u16,
}

impl Slot {
    /// The slot of a target, when it has one: not a count, not `TX` (rules write it), not
    /// `MATCHED_VARS` (each rule changes it), not a value worked out from others.
    fn of(var: &str, kind: Kind, index: usize, count: bool) -> Option<Slot> {
        if count {
            return None;
        }
        match kind {
            Kind::Other if var == "TX" => None,
            Kind::Other => u16::try_from(index).ok().map(|index| Slot { kind, index }),
            Kind::Xml => Some(Slot { kind, index: 0 }),
            k if k.is_list() && !matches!(k, Kind::MatchedVars | Kind::MatchedVarsNames) => {
                Some(Slot { kind, index: 0 })
            }
            _ => None,
        }
    }
}

impl Target {
    /// Compiles a parsed variable (its `exclude` flag is the caller's).
    pub fn compile(v: &Variable) -> Result<Target, String> {
        let select = match &v.key {
            None => Select::All,
            Some(Key::Name(n)) if v.name == "XML" => Select::Name(n.clone()),
            Some(Key::Name(n)) => Select::Name(n.to_ascii_lowercase()),
            Some(Key::Regex(r)) if plain_prefix(r).is_some() => {
                Select::Prefix(plain_prefix(r).unwrap_or_default())
            }
            Some(Key::Regex(r)) => Select::Regex(
                Rx::compile_with(r, crate::rx::RxOptions::VARIABLE_KEY)
                    .map_err(|e| format!("{}:/{r}/: {e}", v.name))?,
            ),
        };
        let var = static_name(&v.name).ok_or_else(|| format!("unknown variable {}", v.name))?;
        Ok(Target::new(var, select, v.count))
    }

    /// A target of variable `var` (a name from the table).
    pub fn new(var: &'static str, select: Select, count: bool) -> Target {
        let key = match &select {
            Select::Name(n) => Some(std::sync::Arc::from(n.as_bytes())),
            _ => None,
        };
        let kind = Kind::of(var);
        let index = super::store::index_of(var).unwrap_or(usize::MAX);
        Target {
            var,
            kind,
            index,
            key,
            select,
            count,
            slot: Slot::of(var, kind, index, count),
        }
    }

    /// Whether a member named `name` (of this target's variable) is selected.
    pub fn selects(&self, name: &[u8]) -> bool {
        match &self.select {
            Select::All => true,
            Select::Name(n) => name.eq_ignore_ascii_case(n.as_bytes()),
            Select::Regex(r) => r.is_match(name).unwrap_or(false),
            Select::Prefix(p) => name
                .get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p)),
        }
    }

    /// Whether this (as an exclusion) removes the member `name` of variable `var`.
    pub fn excludes(&self, var: &str, name: &[u8]) -> bool {
        self.var == var && self.selects(name)
    }
}

/// The static spelling of a variable name (upper case).
pub fn static_name(name: &str) -> Option<&'static str> {
    super::store::index_of(name).and_then(|i| crate::seclang::names::VARIABLES.get(i).copied())
}

/// Parses `ARGS:foo|!REQUEST_COOKIES:/^x/` (the target list of `ctl:ruleRemoveTargetById`
/// and `SecRuleUpdateTargetById`) into targets.
pub fn parse_list(text: &str) -> Result<Vec<(Target, bool)>, String> {
    crate::seclang::parse_variables(text)?
        .iter()
        .map(|v| Ok((Target::compile(v)?, v.exclude)))
        .collect()
}

/// The word of a regex key that is `^` and letters, digits, `_` or `-` only.
fn plain_prefix(r: &str) -> Option<Vec<u8>> {
    let word = r.strip_prefix('^')?;
    let plain = word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    (plain && !word.is_empty()).then(|| word.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_prefixes_select_like_their_regex() {
        assert_eq!(
            plain_prefix("^header_name_920450_"),
            Some(b"header_name_920450_".to_vec())
        );
        assert_eq!(plain_prefix("^a.b"), None);
        assert_eq!(plain_prefix("header"), None);
        let rx = Rx::compile_with("^Header_Name_", crate::rx::RxOptions::VARIABLE_KEY)
            .expect("compiles");
        let pre = Select::Prefix(b"Header_Name_".to_vec());
        for name in [
            "header_name_x",
            "HEADER_NAME_",
            "xheader_name_",
            "header_nam",
            "",
        ] {
            let t = |select| Target::new("TX", select, false);
            assert_eq!(
                t(Select::Regex(rx.clone())).selects(name.as_bytes()),
                t(pre.clone()).selects(name.as_bytes()),
                "{name}"
            );
        }
    }
}
