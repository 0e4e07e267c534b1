//! Kafka outputs: feature records (key = entity id, value = feature JSON, or
//! null for a tombstone) and the side topics for dead letters and late events,
//! which carry the original record with the reason and source in headers.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::SinkError;
use crate::pipeline::FeatureUpdate;

fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(*value),
        })
    })
}

/// Where a side record came from.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The producer and the records awaiting acknowledgement.
pub struct KafkaSink {
    producer: FutureProducer,
    pending: Acks,
}

/// Records queued to the producer, with their topics, until acknowledged.
#[derive(Default)]
pub struct Acks(Vec<(String, DeliveryFuture)>);

impl Acks {
    /// Waits until every record is acknowledged; fails on the first refused one.
    pub async fn wait(self) -> Result<(), SinkError> {
        for (topic, future) in self.0 {
            match future.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    return Err(SinkError::Kafka {
                        topic,
                        reason: e.to_string(),
                    })
                }
                Err(_) => {
                    return Err(SinkError::Kafka {
                        topic,
                        reason: "the producer was dropped before acknowledging".into(),
                    })
                }
            }
        }
        Ok(())
    }
}

impl KafkaSink {
    pub fn new(producer: FutureProducer) -> Self {
        Self {
            producer,
            pending: Acks::default(),
        }
    }

    /// Queues feature records to `topic`, each with a `wafer.plugin` header
    /// naming the plugin (`name@version#hash`) that computed it.
    pub fn send_features(
        &mut self,
        topic: &str,
        updates: &[FeatureUpdate],
        plugin: &str,
    ) -> Result<(), SinkError> {
        for u in updates {
            let mut record = FutureRecord::<str, str>::to(topic)
                .key(&u.entity)
                .headers(headers(&[("wafer.plugin", plugin)]));
            if let Some(v) = &u.value {
                record = record.payload(v);
            }
            self.enqueue(topic, record)?;
        }
        Ok(())
    }

    /// Queues a side record with headers `wafer.reason`, `wafer.source.topic`,
    /// `wafer.source.partition`, `wafer.source.offset`, then the `extra` ones.
    pub fn send_side(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        reason: &str,
        source: Source<'_>,
        extra: &[(&str, &str)],
    ) -> Result<(), SinkError> {
        let partition = source.partition.to_string();
        let offset = source.offset.to_string();
        let mut pairs = vec![
            ("wafer.reason", reason),
            ("wafer.source.topic", source.topic),
            ("wafer.source.partition", partition.as_str()),
            ("wafer.source.offset", offset.as_str()),
        ];
        pairs.extend_from_slice(extra);
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers(&pairs));
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        self.enqueue(topic, record)
    }

    /// Queues a forwarded record (see [`crate::repartition`]): `payload` to
    /// `topic` under `key`, with the original record's `timestamp` and `headers`.
    pub fn forward(
        &mut self,
        topic: &str,
        key: &str,
        payload: Option<&[u8]>,
        timestamp: Option<i64>,
        headers: OwnedHeaders,
    ) -> Result<(), SinkError> {
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .key(key)
            .headers(headers);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(t) = timestamp {
            record = record.timestamp(t);
        }
        self.enqueue(topic, record)
    }

    fn enqueue<K, P>(
        &mut self,
        topic: &str,
        mut record: FutureRecord<'_, K, P>,
    ) -> Result<(), SinkError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match self.producer.send_result(record) {
                Ok(future) => {
                    self.pending.0.push((topic.to_owned(), future));
                    return Ok(());
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    // The local queue is full: give librdkafka a moment to drain it.
                    std::thread::sleep(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => {
                    return Err(SinkError::Kafka {
                        topic: topic.to_owned(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    }

    /// Takes the records queued since the last call, to be awaited by the
    /// writer of the batch they belong to.
    pub fn take_pending(&mut self) -> Acks {
        std::mem::take(&mut self.pending)
    }
}
