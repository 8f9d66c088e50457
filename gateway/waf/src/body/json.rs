//! JSON bodies flattened into arguments as ModSecurity v2 names them (apache2/msc_json.c):
//! `{"a":{"b":1}}` gives `a.b`, an array repeats its key for every element (`{"a":[1,2]}` gives
//! `a.a` twice), a top-level array is called `array` (`[1]` gives `array.array`), and a scalar
//! with no key has an empty name. Values are strings unescaped, numbers as written, `true`,
//! `false`, and the empty string for `null`.

mod lexer;
mod naming;
mod parser;

use super::{ArgList, Limits};

/// Parses a JSON body, adding its values to `args` (origin [`super::ArgOrigin::Json`]) as they
/// are met; returns `REQBODY_ERROR_MSG` when the body sets `REQBODY_ERROR`. Arguments added
/// before an error stay, as in v2. An empty body is no error; one of only whitespace is.
pub fn json(body: &[u8], limits: &Limits, args: &mut ArgList) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let mut names = naming::Naming::new(limits, args);
    parser::parse(body, &mut names).err().map(|e| e.message())
}

#[cfg(test)]
mod tests;
