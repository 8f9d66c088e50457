//! Faults the gateway meets while serving, which are not attacks: an upstream that resets in the
//! middle of a response or whose name does not resolve, a reload that fails (a rule file that
//! does not compile, a CA key that cannot be read). Each has its defined behaviour where it
//! happens (the client's response cut, a 502, the running policy kept); here it is counted in
//! `sekisho_faults_total{fault}` and raises one event (`event.kind = event`, `rule.id` the fault)
//! per fault and subject (an upstream host, a config file) per minute.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use sekisho_core::{Action, DestinationInfo, Evidence, Finding, FlowMeta, Severity, ThreatEvent};

use crate::flowstate::FlowState;
use crate::shared::Shared;

/// A fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Fault {
    /// The upstream connection failed while the response body was being relayed.
    UpstreamReset,
    /// The upstream host name did not resolve.
    UpstreamUnresolvable,
    /// A reload (SIGHUP) failed; the running policy stays.
    ReloadFailed,
    /// The last run ended without a clean stop (SIGKILL, a crash, power loss).
    UncleanStop,
    /// An upstream certificate did not verify and `[tls] allow_invalid_upstream` let it pass.
    UpstreamCertificateAllowed,
    /// A tunnel spliced because its server asks for a client certificate.
    UninspectedClientCertificate,
}

impl Fault {
    /// `rule.id` of the event and the metric label.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Fault::UpstreamReset => "upstream-reset",
            Fault::UpstreamUnresolvable => "upstream-unresolvable",
            Fault::ReloadFailed => "reload-failed",
            Fault::UncleanStop => "unclean-stop",
            Fault::UpstreamCertificateAllowed => "upstream-certificate-allowed-invalid",
            Fault::UninspectedClientCertificate => "uninspected-client-certificate",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Fault::UpstreamReset => "upstream connection failed mid-response; the client's response was cut, never completed",
            Fault::UpstreamUnresolvable => "upstream host name did not resolve; the client got 502",
            Fault::ReloadFailed => "reload failed; the running policy stays in service",
            Fault::UncleanStop => "the last run did not stop cleanly (killed or crashed); spooled events are resent, at least once",
            Fault::UpstreamCertificateAllowed => "upstream certificate does not verify; passed because [tls] allow_invalid_upstream lists the host",
            Fault::UninspectedClientCertificate => "uninspected: the server requires a client certificate, so its tunnels are spliced ([tls] on_client_certificate_request)",
        }
    }

    fn category(self) -> &'static str {
        match self {
            Fault::UpstreamReset | Fault::UpstreamUnresolvable => "network",
            Fault::ReloadFailed => "configuration",
            Fault::UncleanStop => "host",
            Fault::UpstreamCertificateAllowed => "tls-upstream-certificate",
            Fault::UninspectedClientCertificate => "uninspected",
        }
    }
}

/// Counts `fault`; whether it opens a window for `subject` (so deserves an event), with the
/// event's message.
fn count(shared: &Shared, fault: Fault, subject: &str) -> Option<String> {
    shared.metrics.faults.with_label_values(&[fault.id()]).inc();
    let suppressed = shared
        .faults
        .open_window((fault, subject.to_string()), Instant::now())?;
    let mut message = format!("{}: {subject}", fault.what());
    if suppressed > 0 {
        message.push_str(&format!(
            " ({suppressed} more in the previous {}s window)",
            crate::shed::WINDOW.as_secs()
        ));
    }
    Some(message)
}

fn finding(fault: Fault, message: String, detail: &str) -> Finding {
    let mut f = Finding::new(
        "gateway",
        fault.id(),
        message,
        Severity::Low,
        fault.category(),
        Evidence::new("gateway", detail),
    );
    f.stage = "gateway";
    f.action = Action::Allowed;
    f
}

/// Reports a fault met by a flow (its event carries the flow's client and destination).
pub(crate) async fn on_flow(state: &FlowState, fault: Fault, subject: &str, detail: &str) {
    let Some(message) = count(&state.shared, fault, subject) else {
        return;
    };
    tracing::warn!(fault = fault.id(), subject, detail, "gateway fault");
    state
        .emit_own_as(finding(fault, message, detail), "event")
        .await;
}

/// Reports a fault of the gateway itself (no client: `source.ip` is 0.0.0.0).
pub(crate) async fn on_gateway(shared: &Shared, fault: Fault, subject: &str, detail: &str) {
    let Some(message) = count(shared, fault, subject) else {
        return;
    };
    tracing::warn!(fault = fault.id(), subject, detail, "gateway fault");
    let f = finding(fault, message, detail);
    let none = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let meta = FlowMeta::new(shared.next_flow_id(), "gateway", none, none);
    let mut event = ThreatEvent::from_finding(
        &f,
        &meta,
        &shared.observer,
        DestinationInfo::default(),
        None,
    );
    event.event.kind = "event".into();
    shared.events.threat(&event).await;
}

/// At start: reports an unclean stop when `marker` survived the last run, then (re)writes it
/// with this process's id; a clean stop removes it.
pub(crate) async fn check_unclean_stop(shared: &Shared, marker: &std::path::Path) {
    if let Ok(last) = std::fs::read_to_string(marker) {
        let detail = format!(
            "{} was left by process {} (never stopped cleanly)",
            marker.display(),
            last.trim()
        );
        on_gateway(shared, Fault::UncleanStop, "gateway", &detail).await;
    }
    if let Err(e) = std::fs::write(marker, std::process::id().to_string()) {
        tracing::warn!(path = %marker.display(), error = %e, "cannot write the running marker");
    }
}
