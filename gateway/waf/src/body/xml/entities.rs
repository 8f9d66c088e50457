//! References in text and attribute values: character references, the five predefined
//! entities, and general entities declared with a literal value in the internal DTD subset.
//! External entities are never read (v2 installs a loader that loads nothing, and libxml2 does
//! not fetch them without `XML_PARSE_NOENT`), so they expand to nothing. Expansion is iterative,
//! refuses reference loops, and stops when its byte budget is spent: the billion laughs end in
//! an error, as in libxml2's amplification check.

use std::collections::HashMap;

/// Nested entity references allowed (libxml2 stops near 40 without `XML_PARSE_HUGE`).
const MAX_NESTING: usize = 40;

/// A declared general entity.
#[derive(Debug)]
enum Entity {
    /// The literal replacement text.
    Internal(String),
    /// `SYSTEM` or `PUBLIC`: not loaded.
    External,
}

/// The internal subset's general entities and the expansion budget left.
#[derive(Debug)]
pub(super) struct Entities {
    declared: HashMap<String, Entity>,
    budget: Budget,
}

/// Bytes entity expansion may still produce.
#[derive(Debug)]
struct Budget(usize);

impl Entities {
    pub(super) fn new(budget: usize) -> Self {
        Entities {
            declared: HashMap::new(),
            budget: Budget(budget),
        }
    }

    /// Reads `<!ENTITY name "value">` and `<!ENTITY name SYSTEM ...>` from a DOCTYPE's content;
    /// parameter entities and everything else are ignored. The first declaration of a name wins.
    pub(super) fn declare_from_doctype(&mut self, doctype: &str) {
        let mut rest = doctype;
        while let Some(at) = rest.find("<!ENTITY") {
            rest = &rest[at + "<!ENTITY".len()..];
            let body = rest.trim_start();
            if body.starts_with('%') {
                continue;
            }
            let name_len = body.find(|c: char| c.is_whitespace()).unwrap_or(body.len());
            let (name, after) = body.split_at(name_len);
            let entity = match literal(after.trim_start()) {
                Some(value) => Entity::Internal(value.to_string()),
                None => Entity::External,
            };
            self.declared.entry(name.to_string()).or_insert(entity);
        }
    }

    /// Appends the expansion of `&name;` (`name` without `&` and `;`) to `out`; in attribute
    /// values literal whitespace becomes spaces.
    pub(super) fn expand(
        &mut self,
        name: &str,
        out: &mut String,
        in_attribute: bool,
    ) -> Result<(), String> {
        let (declared, budget) = (&self.declared, &mut self.budget);
        if let Some(c) = predefined_or_char(name)? {
            return budget.emit(out, c, false);
        }
        let mut stack: Vec<(&str, &str)> = Vec::new();
        push(declared, &mut stack, name)?;
        while let Some((entity, text)) = stack.pop() {
            let Some(amp) = text.find('&') else {
                budget.emit_str(out, text, in_attribute)?;
                continue;
            };
            budget.emit_str(out, &text[..amp], in_attribute)?;
            let after = &text[amp + 1..];
            let semi = after
                .find(';')
                .ok_or_else(|| format!("entity '{entity}': reference without ';'"))?;
            stack.push((entity, &after[semi + 1..]));
            let inner = &after[..semi];
            match predefined_or_char(inner)? {
                Some(c) => budget.emit(out, c, false)?,
                None => push(declared, &mut stack, inner)?,
            }
        }
        Ok(())
    }
}

/// Puts a named entity's replacement text on the stack; loops and deep nesting are errors.
fn push<'s>(
    declared: &'s HashMap<String, Entity>,
    stack: &mut Vec<(&'s str, &'s str)>,
    name: &'s str,
) -> Result<(), String> {
    if stack.iter().any(|(open, _)| *open == name) || stack.len() >= MAX_NESTING {
        return Err(format!(
            "entity '{name}': reference loop or nesting too deep"
        ));
    }
    match declared.get(name) {
        Some(Entity::Internal(text)) => {
            stack.push((name, text.as_str()));
            Ok(())
        }
        Some(Entity::External) => Ok(()),
        None => Err(format!("entity '{name}' not defined")),
    }
}

impl Budget {
    fn emit_str(&mut self, out: &mut String, text: &str, in_attribute: bool) -> Result<(), String> {
        for c in text.chars() {
            self.emit(out, c, in_attribute)?;
        }
        Ok(())
    }

    fn emit(&mut self, out: &mut String, c: char, in_attribute: bool) -> Result<(), String> {
        self.0 = self
            .0
            .checked_sub(c.len_utf8())
            .ok_or("entity expansion exceeds the amplification budget")?;
        out.push(if in_attribute && matches!(c, '\t' | '\n' | '\r') {
            ' '
        } else {
            c
        });
        Ok(())
    }
}

/// A quoted literal at the start of `text`.
fn literal(text: &str) -> Option<&str> {
    let quote = text.chars().next().filter(|q| *q == '"' || *q == '\'')?;
    let value = &text[1..];
    value.find(quote).map(|end| &value[..end])
}

/// `lt`, `gt`, `amp`, `apos`, `quot`, `#N`, `#xH`; `None` for another name.
pub(super) fn predefined_or_char(name: &str) -> Result<Option<char>, String> {
    Ok(Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => match name.strip_prefix('#') {
            Some(number) => char_ref(number)?,
            None => return Ok(None),
        },
    }))
}

fn char_ref(number: &str) -> Result<char, String> {
    let value = match number.strip_prefix('x') {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()
        }
        None if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            number.parse().ok()
        }
        _ => None,
    };
    value
        .and_then(char::from_u32)
        .filter(|c| is_xml_char(*c))
        .ok_or_else(|| format!("invalid character reference &#{number};"))
}

/// XML 1.0's `Char` production.
pub(super) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}
