//! PROVISIONAL (replaced by the waf-rx branch): @rx on regex::bytes.
#![allow(missing_docs)]

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RxError(String);

#[derive(Debug)]
pub struct Rx(regex::bytes::Regex);

impl Rx {
    pub fn compile(p: &str) -> Result<Rx, RxError> {
        regex::bytes::RegexBuilder::new(&format!("(?-u){p}"))
            .dot_matches_new_line(true)
            .size_limit(64 << 20)
            .build()
            .or_else(|_| {
                regex::bytes::RegexBuilder::new(p)
                    .dot_matches_new_line(true)
                    .size_limit(64 << 20)
                    .build()
            })
            .map(Rx)
            .map_err(|e| RxError(e.to_string()))
    }
    pub fn engine(&self) -> &'static str {
        "regex"
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    pub fn is_match(&self, h: &[u8]) -> Result<bool, RxError> {
        Ok(self.0.is_match(h))
    }
    pub fn captures(&self, h: &[u8]) -> Result<Option<Vec<Option<Vec<u8>>>>, RxError> {
        Ok(self.0.captures(h).map(|c| {
            (0..10)
                .map(|i| c.get(i).map(|m| m.as_bytes().to_vec()))
                .collect()
        }))
    }
}
