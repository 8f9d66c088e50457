//! A client certificate's subjectDirectoryAttributes extension value: the hcRole (ISO 17090)
//! reader and the attribute string reader. A certificate is verified before its roles are read,
//! but the CA that signed it is not ours to trust with the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_proxy::hpki::{hc_roles, string_attribute, HC_ACTOR_OID};

fuzz_target!(|data: &[u8]| {
    if let Ok(roles) = hc_roles(data) {
        // Every role came out of the input: no more roles than bytes.
        assert!(roles.len() <= data.len());
        for r in &roles {
            assert!(r.value.as_ref().is_none_or(|v| v.len() <= 4 * data.len()));
        }
    }
    let _ = string_attribute(data, HC_ACTOR_OID);
    let _ = string_attribute(data, "1.3.6.1.5.5.7.9.4");
});
