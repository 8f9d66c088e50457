//! Canonicalization never panics, stays bounded and is idempotent on its own output.

use proptest::prelude::*;
use sekisho_urlfilter::canonicalize;

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn any_input(s in ".{0,300}") {
        let c = canonicalize(&s);
        prop_assert!(c.path.starts_with('/'));
        prop_assert!(c.url().len() <= sekisho_urlfilter::canonical::MAX_URL * 3 + 64);
    }

    #[test]
    fn url_like_input_is_idempotent(
        host in "[a-zA-Z0-9.%-]{1,30}",
        path in "[a-zA-Z0-9/.%~_-]{0,40}",
        query in proptest::option::of("[a-z0-9=&%/]{0,20}"),
    ) {
        let s = match &query {
            Some(q) => format!("http://{host}/{path}?{q}"),
            None => format!("http://{host}/{path}"),
        };
        let once = canonicalize(&s).url();
        prop_assert_eq!(canonicalize(&once).url(), once.clone(), "{}", s);
    }
}
