//! Kafka outputs: feature records (key = entity id, value = feature JSON, or
//! null for a tombstone) and the side topics for dead letters and late events,
//! which carry the original record with the reason and source in headers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

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

/// The producer's context: counts each record's acknowledgement into the
/// [`AckGroup`] of the batch that queued it (no allocation per record).
pub struct AckContext;

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Arc<AckGroup>;

    fn delivery(&self, result: &DeliveryResult<'_>, group: Arc<AckGroup>) {
        match result {
            Ok(_) => group.acknowledged(),
            Err((e, message)) => group.refused(message.topic(), e.to_string()),
        }
    }
}

/// The producer of the Kafka outputs.
pub type Producer = ThreadedProducer<AckContext>;

/// The acknowledgements of one batch's records, counted by the producer's
/// delivery callback; the first refusal is kept.
#[derive(Debug)]
pub struct AckGroup {
    acked: AtomicUsize,
    /// The count a waiter needs (`usize::MAX` until one waits): the callback
    /// wakes it when `acked` reaches it, not on every record.
    target: AtomicUsize,
    refused: Mutex<Option<SinkError>>,
    wake: tokio::sync::Notify,
}

impl Default for AckGroup {
    fn default() -> Self {
        Self {
            acked: AtomicUsize::new(0),
            target: AtomicUsize::new(usize::MAX),
            refused: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
        }
    }
}

impl AckGroup {
    fn acknowledged(&self) {
        let acked = self.acked.fetch_add(1, Ordering::SeqCst) + 1;
        if acked == self.target.load(Ordering::SeqCst) {
            self.wake.notify_one();
        }
    }

    fn refused(&self, topic: &str, reason: String) {
        let mut refused = self.refused.lock().expect("never poisoned");
        refused.get_or_insert(SinkError::Kafka {
            topic: topic.to_owned(),
            reason,
        });
        self.wake.notify_one();
    }
}

/// Records queued to the producer for one batch, until acknowledged.
#[derive(Debug, Default)]
pub struct Acks {
    group: Arc<AckGroup>,
    queued: usize,
}

impl Acks {
    /// Waits until every record is acknowledged; fails on the first refused one.
    pub async fn wait(self) -> Result<(), SinkError> {
        let group = &self.group;
        // Either the callback sees the target, or this check sees its count.
        group.target.store(self.queued, Ordering::SeqCst);
        loop {
            if let Some(e) = group.refused.lock().expect("never poisoned").take() {
                return Err(e);
            }
            if group.acked.load(Ordering::SeqCst) >= self.queued {
                return Ok(());
            }
            group.wake.notified().await;
        }
    }
}

/// The producer and the records of the current batch.
pub struct KafkaSink {
    producer: Producer,
    pending: Acks,
}

impl KafkaSink {
    pub fn new(producer: Producer) -> Self {
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
            let mut record = BaseRecord::<str, str, _>::with_opaque_to(topic, self.group())
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
        let mut record = BaseRecord::<[u8], [u8], _>::with_opaque_to(topic, self.group())
            .headers(headers(&pairs));
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
        let mut record = BaseRecord::<str, [u8], _>::with_opaque_to(topic, self.group())
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

    fn group(&self) -> Arc<AckGroup> {
        self.pending.group.clone()
    }

    fn enqueue<K, P>(
        &mut self,
        topic: &str,
        mut record: BaseRecord<'_, K, P, Arc<AckGroup>>,
    ) -> Result<(), SinkError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.pending.queued += 1;
                    return Ok(());
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    // The local queue is full (`PRODUCER_QUEUE_MESSAGES`, or a lower
                    // limit in the user's properties): let librdkafka drain it.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn batch(queued: usize) -> (Arc<AckGroup>, Acks) {
        let group = Arc::new(AckGroup::default());
        let acks = Acks {
            group: group.clone(),
            queued,
        };
        (group, acks)
    }

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn waits_for_every_record_of_its_batch() {
        let (group, acks) = batch(3);
        group.acknowledged();
        let mut wait = pin!(acks.wait());
        assert!(poll_once(wait.as_mut()).is_pending(), "1 of 3 acknowledged");
        group.acknowledged();
        assert!(poll_once(wait.as_mut()).is_pending(), "2 of 3 acknowledged");
        group.acknowledged();
        assert!(matches!(poll_once(wait.as_mut()), Poll::Ready(Ok(()))));
    }

    #[tokio::test]
    async fn acknowledgements_before_the_wait_count() {
        let (group, acks) = batch(2);
        group.acknowledged();
        group.acknowledged();
        acks.wait().await.unwrap();
        let (_, empty) = batch(0);
        empty.wait().await.unwrap();
    }

    #[tokio::test]
    async fn acknowledgements_from_another_thread_wake_the_waiter() {
        let (group, acks) = batch(1000);
        let acker = std::thread::spawn(move || {
            for _ in 0..1000 {
                group.acknowledged();
            }
        });
        tokio::time::timeout(Duration::from_secs(30), acks.wait())
            .await
            .expect("woken once all are acknowledged")
            .unwrap();
        acker.join().unwrap();
    }

    #[tokio::test]
    async fn the_first_refusal_fails_the_batch() {
        let (group, acks) = batch(3);
        group.acknowledged();
        group.refused("ml-features", "message too large".into());
        group.refused("dead-letters", "later".into());
        match acks.wait().await {
            Err(SinkError::Kafka { topic, reason }) => {
                assert_eq!(topic, "ml-features");
                assert_eq!(reason, "message too large");
            }
            other => panic!("expected the refusal, got {other:?}"),
        }
    }
}
