//! The Kafka sink (cargo feature `kafka`, librdkafka built from source by `rdkafka`): each spool
//! batch is produced with `acks=all` and idempotence; the batch is acknowledged when every
//! record's delivery report is a success, otherwise the sink backs off and sends it again.

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
        let futs = recs.iter().map(|(_, r)| {
            p.send(
                FutureRecord::<(), [u8]>::to(&self.topic).payload(&r[..]),
                Duration::from_secs(0),
            )
        });
        for r in futures_util::future::join_all(futs).await {
            if let Err((e, _)) = r {
                return Err(format!("kafka delivery failed: {e}"));
            }
        }
        Ok(())
    }
}
