//! `sekisho_av_*`: what the AV stage scanned and found, across reloads (the engine owns them,
//! every stage it builds counts into them).

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

use crate::icap::Asked;
use crate::scan::ScanReport;

/// The AV metrics; clones share the same series.
#[derive(Clone)]
pub struct AvMetrics {
    scans: IntCounter,
    pieces: IntCounter,
    bytes: IntCounter,
    seconds: Histogram,
    findings: IntCounterVec,
    issues: IntCounterVec,
    icap: IntCounterVec,
    icap_seconds: HistogramVec,
}

impl AvMetrics {
    /// Fresh series.
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(AvMetrics {
            scans: IntCounter::new("sekisho_av_scans_total", "bodies the AV stage scanned")?,
            pieces: IntCounter::new(
                "sekisho_av_pieces_total",
                "pieces scanned: bodies and every member, stream and part extracted from them",
            )?,
            bytes: IntCounter::new("sekisho_av_scanned_bytes_total", "body bytes scanned")?,
            seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "sekisho_av_scan_seconds",
                    "time to extract and scan one body",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0,
                ]),
            )?,
            findings: IntCounterVec::new(
                Opts::new("sekisho_av_findings_total", "detections, by engine"),
                &["engine"],
            )?,
            issues: IntCounterVec::new(
                Opts::new(
                    "sekisho_av_issues_total",
                    "pieces not fully inspected, by kind (limit, encrypted, corrupt)",
                ),
                &["kind"],
            )?,
            icap: IntCounterVec::new(
                Opts::new(
                    "sekisho_av_icap_requests_total",
                    "bodies sent to ICAP servers, by server and outcome (clean, threat, blocked, error)",
                ),
                &["server", "outcome"],
            )?,
            icap_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "sekisho_av_icap_seconds",
                    "time for one ICAP exchange, by server",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
                &["server"],
            )?,
        })
    }

    /// Counts one body's scan.
    pub fn record(&self, report: &ScanReport, bytes: usize, elapsed: std::time::Duration) {
        self.scans.inc();
        self.pieces.inc_by(u64::from(report.pieces));
        self.bytes.inc_by(bytes as u64);
        self.seconds.observe(elapsed.as_secs_f64());
        for h in &report.hits {
            self.findings.with_label_values(&[h.detection.engine]).inc();
        }
        for i in &report.issues {
            self.issues.with_label_values(&[i.kind.as_str()]).inc();
        }
    }
}

impl AvMetrics {
    /// Counts one ICAP exchange (and its detection under `sekisho_av_findings_total`).
    pub fn record_icap(&self, asked: &Asked) {
        self.icap
            .with_label_values(&[asked.server.as_str(), asked.outcome()])
            .inc();
        self.icap_seconds
            .with_label_values(&[asked.server.as_str()])
            .observe(asked.elapsed.as_secs_f64());
        if matches!(asked.outcome(), "threat" | "blocked") {
            self.findings.with_label_values(&["icap"]).inc();
        }
    }
}

impl Collector for AvMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.scans.desc();
        d.extend(self.pieces.desc());
        d.extend(self.bytes.desc());
        d.extend(self.seconds.desc());
        d.extend(self.findings.desc());
        d.extend(self.issues.desc());
        d.extend(self.icap.desc());
        d.extend(self.icap_seconds.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut m = self.scans.collect();
        m.extend(self.pieces.collect());
        m.extend(self.bytes.collect());
        m.extend(self.seconds.collect());
        m.extend(self.findings.collect());
        m.extend(self.issues.collect());
        m.extend(self.icap.collect());
        m.extend(self.icap_seconds.collect());
        m
    }
}
