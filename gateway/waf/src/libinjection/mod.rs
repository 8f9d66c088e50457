//! `@detectSQLi` and `@detectXSS`: a port of libinjection 3.10.0, the version ModSecurity
//! 2.9.2 to 2.9.8 bundle (`apache2/libinjection/`), written from its C source and checked
//! against its test files and against the C library itself (see `notes/libinjection.md`).
//!
//! Inputs are bytes; nothing here allocates more than a few small buffers, recurses, or can
//! panic, whatever the input.

mod html5;
mod html5_markup;
mod sqli;
mod xss;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod upstream;

pub use sqli::Fingerprint;

/// libinjection's SQLi detector: `Some(fingerprint)` when the input is SQL injection
/// (ModSecurity puts the fingerprint in `TX:0` with `capture` and logs "detected SQLi using
/// libinjection with fingerprint 's&1'").
pub fn sqli(input: &[u8]) -> Option<Fingerprint> {
    sqli::detect(input)
}

/// libinjection's XSS detector (with `capture`, ModSecurity puts the whole input in `TX:0`).
pub fn xss(input: &[u8]) -> bool {
    xss::detect(input)
}
