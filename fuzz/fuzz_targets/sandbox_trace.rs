//! The sandbox's readers of what a sample controls: strace output (the sample chooses its
//! paths, arguments and sent bytes, and so what the trace lines hold), the resolver queries
//! and first bytes its make-believe network reads, and behaviour rule text. None panics; the
//! trace keeps at most its bound of events; the resolver answers at most four questions a
//! query; an error in a rule file names a line of it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sekisho_sandbox::trace::Trace;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut t = Trace::new("/tmp/scratch", 64);
    for line in text.lines() {
        t.line(line);
    }
    assert!(t.events.len() <= 64);
    let _ = sekisho_sandbox::trace::dns_name(data);
    let mut names = sekisho_sandbox::netsim::Names::default();
    if let Some((_, seen)) = sekisho_sandbox::netsim::answer(data, &mut names) {
        assert!(seen.len() <= 4);
    }
    let dst = std::net::SocketAddr::from(([198, 18, 0, 1], 80));
    let _ = sekisho_sandbox::netsim::describe(dst, None, data);
    if let Err(errors) = sekisho_sandbox::rules::parse(Path::new("fuzz.toml"), &text) {
        let lines = text.lines().count().max(1);
        for e in errors {
            assert!(e.line <= lines + 1, "line {} of {lines}: {e}", e.line);
        }
    }
});
