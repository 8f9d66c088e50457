//! Clients that refuse the gateway's minted certificate right after receiving it (an
//! `unknown_ca`, `bad_certificate`, `certificate_unknown` or `unsupported_certificate` alert):
//! certificate pinning, or a device without the gateway CA installed. Each refusal is counted;
//! one event per host an hour says so; and for hosts the operator lists in `[tls]
//! pinning_splice` (only those: never an automatic splice outside the operator's lists), the
//! host's tunnels are spliced for a day after a refusal, so the pinned application works.
//! A client that just closes the connection without an alert is not told apart from other
//! failed handshakes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls::AlertDescription;

use crate::hostmatch::HostMatcher;

/// One event per host per this long.
const EVENT_WINDOW: Duration = Duration::from_secs(3600);
/// A listed host is spliced for this long after its last refusal.
const SPLICE_FOR: Duration = Duration::from_secs(24 * 3600);
/// Hosts remembered at most.
const MAX_HOSTS: usize = 65_536;

#[derive(Clone, Copy)]
struct Seen {
    window_start: Instant,
    in_window: u64,
    last: Instant,
}

/// Refusals of minted certificates by host.
pub(crate) struct Pinning {
    splice_list: HostMatcher,
    seen: Mutex<HashMap<String, Seen>>,
}

/// What a refusal calls for.
pub(crate) struct Refused {
    /// Refusals of this host in the previous window not reported (when an event is due).
    pub(crate) event_due: Option<u64>,
    /// Whether the host's next tunnels are spliced (`pinning_splice`).
    pub(crate) splice_next: bool,
}

/// Whether a client's handshake error is its refusal of the certificate we presented.
pub(crate) fn refused_certificate(e: &std::io::Error) -> Option<AlertDescription> {
    let r = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match r {
        rustls::Error::AlertReceived(
            a @ (AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate),
        ) => Some(*a),
        _ => None,
    }
}

impl Pinning {
    /// Refusals remembered; hosts matching `splice_list` are spliced after one.
    pub(crate) fn new(splice_list: HostMatcher) -> Pinning {
        Pinning {
            splice_list,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records a refusal by a client of `host`.
    pub(crate) fn refused(&self, host: &str, now: Instant) -> Refused {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_HOSTS && !seen.contains_key(host) {
            seen.retain(|_, s| now.duration_since(s.last) < EVENT_WINDOW);
            if seen.len() >= MAX_HOSTS {
                seen.clear();
            }
        }
        let s = seen.entry(host.to_string()).or_insert(Seen {
            window_start: now,
            in_window: 0,
            last: now,
        });
        s.last = now;
        let event_due = if s.in_window == 0 {
            s.in_window = 1;
            Some(0)
        } else if now.duration_since(s.window_start) >= EVENT_WINDOW {
            let suppressed = s.in_window - 1;
            s.window_start = now;
            s.in_window = 1;
            Some(suppressed)
        } else {
            s.in_window += 1;
            None
        };
        Refused {
            event_due,
            splice_next: self.splice_list.matches(host),
        }
    }

    /// Whether tunnels to `host` are spliced now: listed, and refused within the last day.
    pub(crate) fn splice(&self, host: &str, now: Instant) -> bool {
        if !self.splice_list.matches(host) {
            return false;
        }
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(host)
            .is_some_and(|s| now.duration_since(s.last) < SPLICE_FOR)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_event_an_hour_and_splices_only_listed_hosts() {
        let p = Pinning::new(HostMatcher::new(&["*.bank.test".to_string()]).unwrap());
        let t0 = Instant::now();
        assert!(!p.splice("app.bank.test", t0), "nothing refused yet");
        let r = p.refused("app.bank.test", t0);
        assert_eq!(r.event_due, Some(0));
        assert!(r.splice_next);
        assert!(p.splice("app.bank.test", t0));
        assert!(p.refused("app.bank.test", t0).event_due.is_none());
        assert!(p.refused("app.bank.test", t0).event_due.is_none());
        let later = t0 + EVENT_WINDOW;
        assert_eq!(p.refused("app.bank.test", later).event_due, Some(2));
        assert!(
            !p.splice("app.bank.test", later + SPLICE_FOR),
            "a day later: inspected again"
        );
        // Unlisted: an event, never a splice.
        let r = p.refused("news.test", t0);
        assert_eq!(r.event_due, Some(0));
        assert!(!r.splice_next && !p.splice("news.test", t0));
    }
}
