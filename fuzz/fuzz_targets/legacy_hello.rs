//! What a legacy server answers the gateway's probe ClientHello with: any bytes, read as the
//! records that should start with a ServerHello.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_proxy::legacyprobe::{describe, server_hello, Hello};

fuzz_target!(|data: &[u8]| {
    let whole = server_hello(data);
    if let Hello::Found(version, suite) = whole {
        assert!(!describe(version, suite).is_empty());
        // More bytes after a complete ServerHello change nothing.
        let mut more = data.to_vec();
        more.extend_from_slice(&[0x16, 3, 3, 0, 0]);
        assert_eq!(server_hello(&more), Hello::Found(version, suite));
    }
});
