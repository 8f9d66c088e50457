//! The Kafka sink (cargo feature `kafka`, librdkafka built from source by `rdkafka`): each spool
//! batch is produced with `acks=all` and idempotence; the batch is acknowledged when every
//! record's delivery report is a success, otherwise the sink backs off and sends it again.
//! Each record's key is its facility ([`partition_key`]): one facility's events stay in order in
//! one partition, and a consumer can follow one facility.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::spool::Pos;

/// Kafka TLS: the CA file and the client certificate and key.
#[derive(Clone, Debug, Default)]
pub struct KafkaTls {
    /// `ssl.ca.location`.
    pub ca: Option<PathBuf>,
    /// `ssl.certificate.location` and `ssl.key.location`.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Where and how to produce.
#[derive(Clone, Debug)]
pub struct KafkaTarget {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topic.
    pub topic: String,
    /// TLS: CA file, client certificate and key.
    pub tls: Option<KafkaTls>,
    /// `message.timeout.ms`.
    pub timeout: Duration,
}

impl KafkaTarget {
    /// A producer (librdkafka connects in the background).
    pub fn producer(&self) -> Result<FutureProducer, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("message.timeout.ms", self.timeout.as_millis().to_string())
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("client.id", "sekisho");
        if let Some(KafkaTls { ca, client }) = &self.tls {
            c.set("security.protocol", "ssl");
            if let Some(ca) = ca {
                c.set("ssl.ca.location", ca.display().to_string());
            }
            if let Some((cert, key)) = client {
                c.set("ssl.certificate.location", cert.display().to_string())
                    .set("ssl.key.location", key.display().to_string());
            }
        }
        c.create().map_err(|e| format!("kafka producer: {e}"))
    }

    /// Produces every record; Ok when all are acknowledged by the brokers.
    pub async fn send(&self, p: &FutureProducer, recs: &[(Pos, Vec<u8>)]) -> Result<(), String> {
        let keys: Vec<Option<String>> = recs.iter().map(|(_, r)| partition_key(r)).collect();
        let futs = recs.iter().zip(&keys).map(|((_, r), key)| {
            let mut rec = FutureRecord::<str, [u8]>::to(&self.topic).payload(&r[..]);
            if let Some(k) = key {
                rec = rec.key(k.as_str());
            }
            p.send(rec, Duration::from_secs(0))
        });
        for r in futures_util::future::join_all(futs).await {
            if let Err((e, _)) = r {
                return Err(format!("kafka delivery failed: {e}"));
            }
        }
        Ok(())
    }
}

/// A record's Kafka key: the facility (`facility.id` of a threat event, `facility_id` of a flow
/// line), else the client address (`source.ip`: events from the forward proxy, where no facility
/// certificate names one). `None` for records that hold no JSON object (CEF): those go to the
/// partitions in turn.
pub fn partition_key(record: &[u8]) -> Option<String> {
    let start = record.iter().position(|b| *b == b'{')?;
    let v: serde_json::Value = serde_json::from_slice(record.get(start..)?).ok()?;
    let text = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_string);
    text("/facility/id")
        .or_else(|| text("/facility_id"))
        .or_else(|| text("/source/ip"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_keyed_by_facility_then_client() {
        let ev = br#"{"facility":{"id":"F-1310001"},"source":{"ip":"10.0.0.5"}}"#;
        assert_eq!(partition_key(ev).as_deref(), Some("F-1310001"));
        let flow = br#"{"event_type":"flow","facility_id":"F-2","source":{"ip":"::1"}}"#;
        assert_eq!(partition_key(flow).as_deref(), Some("F-2"));
        let fwd = br#"{"source":{"ip":"10.0.0.5","port":1}}"#;
        assert_eq!(partition_key(fwd).as_deref(), Some("10.0.0.5"));
        // RFC 5424 framing before the JSON.
        let framed =
            br#"<134>1 2026-12-06T00:00:00Z gw sekisho - alert - {"facility":{"id":"F-3"}}"#;
        assert_eq!(partition_key(framed).as_deref(), Some("F-3"));
        assert_eq!(
            partition_key(b"CEF:0|Sekisho|Sekisho|0.1|1|x|3|src=1.2.3.4"),
            None
        );
    }
}
