//! Clients that refuse the gateway's minted certificate right after receiving it (an
//! `unknown_ca`, `bad_certificate`, `certificate_unknown` or `unsupported_certificate` alert):
//! certificate pinning, or a device without the gateway CA installed. Each refusal is counted;
//! one event per host an hour says so; and for hosts the operator lists in `[tls]
//! pinning_splice` (only those: never an automatic splice outside the operator's lists), the
//! host's tunnels are spliced for a day after a refusal, so the pinned application works.
//! A client that just closes the connection without an alert is not told apart from other
//! failed handshakes.

use std::time::{Duration, Instant};

use rustls::AlertDescription;

use crate::autosplice::Remembered;
use crate::hostmatch::HostMatcher;
use crate::shed::Windows;

/// One event per host per this long.
const EVENT_WINDOW: Duration = Duration::from_secs(3600);

/// Refusals of minted certificates by host.
pub(crate) struct Pinning {
    splice_list: HostMatcher,
    events: Windows<String>,
    refused: Remembered,
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
            events: Windows::spanning(EVENT_WINDOW),
            refused: Remembered::new(),
        }
    }

    /// Records a refusal by a client of `host`.
    pub(crate) fn refused(&self, host: &str, now: Instant) -> Refused {
        let splice_next = self.splice_list.matches(host);
        if splice_next {
            self.refused.remember(host);
        }
        Refused {
            event_due: self.events.open_window(host.to_ascii_lowercase(), now),
            splice_next,
        }
    }

    /// Whether tunnels to `host` are spliced now: listed, and refused within the last day.
    pub(crate) fn splice(&self, host: &str) -> bool {
        self.splice_list.matches(host) && self.refused.recent(host)
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
        assert!(!p.splice("app.bank.test"), "nothing refused yet");
        let r = p.refused("app.bank.test", t0);
        assert_eq!(r.event_due, Some(0));
        assert!(r.splice_next);
        assert!(p.splice("app.bank.test"));
        assert!(p.refused("app.bank.test", t0).event_due.is_none());
        assert!(p.refused("app.bank.test", t0).event_due.is_none());
        let later = t0 + EVENT_WINDOW;
        assert_eq!(p.refused("app.bank.test", later).event_due, Some(2));
        // Unlisted: an event, never a splice.
        let r = p.refused("news.test", t0);
        assert_eq!(r.event_due, Some(0));
        assert!(!r.splice_next && !p.splice("news.test"));
    }
}
