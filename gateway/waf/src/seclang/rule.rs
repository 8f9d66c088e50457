//! A rule's three parts: the variables (`ARGS|!ARGS:foo|&TX:x|REQUEST_HEADERS:/^x-/`), the
//! operator (`@rx …`, `!@within …`, a bare regex meaning `@rx`) and the actions
//! (`id:1,phase:2,t:none,msg:'a, b',setvar:'tx.x=+1'`), each checked against the names
//! ModSecurity knows.

use super::names;

/// One variable of a rule (or an exclusion from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The variable or collection, upper case (`ARGS`, `TX`, `XML`).
    pub name: String,
    /// The key selecting members of a collection (`ARGS:foo`, `ARGS:/^id_/`).
    pub key: Option<Key>,
    /// `&`: the number of members instead of their values.
    pub count: bool,
    /// `!`: removes members from the rule's targets.
    pub exclude: bool,
}

/// How a variable's key selects members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A name (case-insensitive for most collections); for `XML`, an XPath.
    Name(String),
    /// A regex between slashes.
    Regex(String),
}

/// A rule's operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The name as ModSecurity spells it (`rx`, `pmFromFile`, `detectSQLi`).
    pub name: &'static str,
    /// `!@op`: the rule matches when the operator does not.
    pub negated: bool,
    /// The parameter, macros unexpanded.
    pub param: String,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The name as ModSecurity spells it (`id`, `setvar`, `t`, `skipAfter`).
    pub name: &'static str,
    /// The value after `:`, unquoted.
    pub value: Option<String>,
}

/// Parses `VAR|VAR:key|!VAR:key|&VAR` (`|` inside `/regex/` or `'quotes'` does not split).
pub fn parse_variables(text: &str) -> Result<Vec<Variable>, String> {
    let mut out = Vec::new();
    for part in split_outside(text, '|')? {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!("empty variable in {text:?}"));
        }
        out.push(variable(part)?);
    }
    Ok(out)
}

fn variable(part: &str) -> Result<Variable, String> {
    let (exclude, rest) = match part.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, part),
    };
    let (count, rest) = match rest.strip_prefix('&') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (name, key) = match rest.split_once(':') {
        // An XML key is an XPath (`XML:/*`), never a regex.
        Some((n, k)) if n.trim().eq_ignore_ascii_case("XML") => {
            (n, Some(Key::Name(k.trim().to_string())))
        }
        Some((n, k)) => (n, Some(key(k)?)),
        None => (rest, None),
    };
    let upper = name.trim().to_ascii_uppercase();
    if !names::VARIABLES.contains(&upper.as_str()) {
        return Err(format!("unknown variable {name:?}"));
    }
    Ok(Variable {
        name: upper,
        key,
        count,
        exclude,
    })
}

fn key(k: &str) -> Result<Key, String> {
    let k = k.trim();
    if let Some(inner) = k.strip_prefix('/') {
        let re = inner
            .strip_suffix('/')
            .ok_or_else(|| format!("regex key {k:?} is not closed with /"))?;
        return Ok(Key::Regex(re.to_string()));
    }
    let unquoted = k
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or(k);
    if unquoted.is_empty() {
        return Err("empty key after ':'".into());
    }
    Ok(Key::Name(unquoted.to_string()))
}

/// Parses an operator: `@name param`, `!@name param`, or a bare regex (`@rx`).
pub fn parse_operator(text: &str) -> Result<Operator, String> {
    let (negated, rest) = match text.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let Some(named) = rest.strip_prefix('@') else {
        return Ok(Operator {
            name: "rx",
            negated,
            param: rest.to_string(),
        });
    };
    let (word, param) = match named.find(char::is_whitespace) {
        Some(i) => (&named[..i], named[i..].trim_start()),
        None => (named, ""),
    };
    let name = names::OPERATORS
        .iter()
        .find(|o| o.eq_ignore_ascii_case(word))
        .ok_or_else(|| format!("unknown operator @{word}"))?;
    Ok(Operator {
        name,
        negated,
        param: param.to_string(),
    })
}

/// Parses `name,name:value,name:'quoted, with commas'`; `t:` values must be known
/// transformations.
pub fn parse_actions(text: &str) -> Result<Vec<Action>, String> {
    let mut out = Vec::new();
    for part in split_outside(text, ',')? {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (word, value) = match part.split_once(':') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
            None => (part, None),
        };
        let name = names::ACTIONS
            .iter()
            .find(|a| a.eq_ignore_ascii_case(word))
            .ok_or_else(|| format!("unknown action {word:?}"))?;
        if *name == "t" {
            let t = value.as_deref().unwrap_or("");
            if !names::TRANSFORMATIONS
                .iter()
                .any(|k| k.eq_ignore_ascii_case(t))
            {
                return Err(format!("unknown transformation t:{t}"));
            }
        }
        out.push(Action { name, value });
    }
    Ok(out)
}

/// A single-quoted value without its quotes, `\'` as a quote.
fn unquote(v: &str) -> String {
    match v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        Some(inner) => inner.replace("\\'", "'"),
        None => v.to_string(),
    }
}

/// Splits on `sep` outside single quotes and `/regex/` keys (a `/` right after `:` opens one,
/// except after `XML:`, whose key is an XPath).
fn split_outside(text: &str, sep: char) -> Result<Vec<&str>, String> {
    let (mut parts, mut start) = (Vec::new(), 0);
    let (mut quote, mut regex, mut escaped) = (false, false, false);
    let mut prev = '\0';
    let xml_key = |start: usize, colon: usize| {
        text[start..colon]
            .trim_start_matches(['!', '&', ' '])
            .eq_ignore_ascii_case("XML")
    };
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '\'' && !regex {
            quote = !quote;
        } else if c == '/'
            && !quote
            && sep == '|'
            && (regex || (prev == ':' && !xml_key(start, i - 1)))
        {
            regex = !regex;
        } else if c == sep && !quote && !regex {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
        prev = c;
    }
    if quote {
        return Err(format!("a single quote is not closed in {text:?}"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}
