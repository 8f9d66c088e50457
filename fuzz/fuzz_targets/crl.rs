//! A CRL as a file or a distribution point delivers it (PEM or DER): read without its entries
//! materialised, its extensions understood, every entry walked (kept pending: no CA given).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_proxy::revocation::Revocation;

fuzz_target!(|data: &[u8]| {
    let mut r = Revocation::default();
    if r.add(std::path::Path::new("fuzz.crl"), data, &[]).is_ok() {
        // Every serial came out of the input.
        assert!(r.len() <= data.len() / 4 + 1);
    }
});
