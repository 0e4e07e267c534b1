//! The Kafka source: a consumer-group member that feeds the processor and owns
//! the delivery rule.
//!
//! **Delivery rule.** An offset is committed only after every write derived
//! from the records before it (Redis, the feature topic, dead letters, late
//! events) is acknowledged. Each commit carries, as metadata, the partition's
//! window checkpoint: its stream time and the first offset a replay must read.
//!
//! **Assignment.** The first record of a partition this host does not hold
//! (at start, restart or after a rebalance) triggers a rebuild: read the
//! committed checkpoint, restore the stream time, and replay
//! `[rebuild_from, committed)` into the windows without emitting anything. The
//! windows then hold exactly what the previous owner had at its last commit.
//!
//! **Revocation.** Flushes finish before the consumer is polled again, and
//! rebalance callbacks run inside that poll, so a revoked partition has no
//! write in flight; its unflushed changes are dropped and the next owner
//! re-reads them from the last commit.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaConfig, PipelineConfig};
use crate::kafka_client;
use crate::pipeline::{
    FailurePolicy, FeatureUpdate, Outcome, PartitionKey, PluginFailure, Processor,
};
use crate::plugin::PluginManager;
use crate::sinks::kafka::{KafkaSink, Source};
use crate::sinks::redis::RedisSink;
use crate::window::Checkpoint;
use crate::RunError;

const METADATA_PREFIX: &str = "wafer1";
const BLOCKING_TIMEOUT: Duration = Duration::from_secs(30);

/// Encodes a checkpoint as commit metadata: `wafer1:<stream time|->:<rebuild from>`.
pub fn encode_checkpoint(c: &Checkpoint) -> String {
    let t = c
        .stream_time
        .map_or_else(|| "-".to_owned(), |t| t.to_string());
    format!("{METADATA_PREFIX}:{t}:{}", c.rebuild_from)
}

/// Decodes commit metadata written by [`encode_checkpoint`].
pub fn decode_checkpoint(s: &str) -> Option<Checkpoint> {
    let mut parts = s.split(':');
    if parts.next()? != METADATA_PREFIX {
        return None;
    }
    let t = parts.next()?;
    let stream_time = if t == "-" {
        None
    } else {
        Some(t.parse().ok()?)
    };
    let rebuild_from = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Checkpoint {
        stream_time,
        rebuild_from,
    })
}

type Group = StreamConsumer<GroupContext>;

/// Records revocations announced by the group protocol.
#[derive(Default)]
struct GroupContext {
    revoked: Mutex<Vec<(String, i32)>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().expect("never poisoned");
            for e in tpl.elements() {
                revoked.push((e.topic().to_owned(), e.partition()));
            }
        }
    }
}

/// The group member and its outputs.
struct Member<'a> {
    cfg: &'a KafkaConfig,
    replayer: Option<BaseConsumer>,
    sink: KafkaSink,
    redis: Option<RedisSink>,
    /// Next offset to commit, per partition touched since the last flush.
    positions: BTreeMap<PartitionKey, i64>,
    policy: FailurePolicy,
    /// Set when the plugin is quarantined under the `pause` policy.
    paused: bool,
    manager: &'a PluginManager,
}

/// Consumes until `shutdown`, then flushes, commits and returns.
pub async fn run(
    cfg: &KafkaConfig,
    pipeline: &PipelineConfig,
    policy: FailurePolicy,
    processor: &mut Processor,
    manager: &PluginManager,
    redis: Option<RedisSink>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let consumer: StreamConsumer<GroupContext> = kafka_client::group_consumer(cfg)
        .create_with_context(GroupContext::default())
        .map_err(|e| RunError::Kafka(format!("cannot create consumer: {e}")))?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| RunError::Kafka(format!("cannot subscribe to {topics:?}: {e}")))?;
    let producer: FutureProducer = kafka_client::producer(cfg)
        .create()
        .map_err(|e| RunError::Kafka(format!("cannot create producer: {e}")))?;
    let mut member = Member {
        cfg,
        replayer: None,
        sink: KafkaSink::new(producer),
        redis,
        positions: BTreeMap::new(),
        policy,
        paused: false,
        manager,
    };
    tracing::info!(topics = ?cfg.topics, group = %cfg.group, plugin = %processor.plugin().name(), "consuming");

    let linger = Duration::from_millis(pipeline.linger_ms);
    let mut in_batch = 0usize;
    let mut flush_at: Option<Instant> = None;
    loop {
        if member.paused {
            tracing::error!(plugin = %processor.plugin().name(),
                "consumption paused: the plugin is quarantined under the `pause` policy; \
                 load a fixed version (plugin file or admin endpoint) or restart");
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = manager.ready() => {}
            }
            if swap_if_pending(processor, manager) {
                member.paused = false;
                member.flush(&consumer, processor, &shutdown).await?;
            }
            continue;
        }
        let wait_until = flush_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let received = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = manager.ready() => {
                // A new plugin version: finish the batch with the old one, then swap.
                member.flush(&consumer, processor, &shutdown).await?;
                in_batch = 0;
                flush_at = None;
                swap_if_pending(processor, manager);
                continue;
            }
            r = tokio::time::timeout_at(wait_until, consumer.recv()) => r,
        };
        member.apply_revocations(&consumer, processor);
        match received {
            Err(_linger_elapsed) => {
                member.flush(&consumer, processor, &shutdown).await?;
                in_batch = 0;
                flush_at = None;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "kafka consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Ok(message)) => {
                let Some(topic_index) = cfg.topics.iter().position(|t| t == message.topic()) else {
                    continue;
                };
                let key = (topic_index as u32, message.partition());
                if !processor.owns(key) {
                    member.rebuild(&consumer, processor, key, message.offset())?;
                }
                let reference_ms = message
                    .timestamp()
                    .to_millis()
                    .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                let outcome =
                    processor.process(key, message.offset(), reference_ms, message.payload());
                let (side_topic, reason) = match outcome {
                    Outcome::Applied => (None, String::new()),
                    Outcome::Late(reason) => (Some(&cfg.late_topic), reason),
                    Outcome::Dead(e) => (Some(&cfg.dead_letter_topic), e.to_string()),
                };
                if let Some(side_topic) = side_topic {
                    member.sink.send_side(
                        side_topic,
                        message.key(),
                        message.payload(),
                        &reason,
                        Source {
                            topic: message.topic(),
                            partition: message.partition(),
                            offset: message.offset(),
                        },
                        &[],
                    )?;
                }
                member.positions.insert(key, message.offset() + 1);
                in_batch += 1;
                flush_at.get_or_insert_with(|| Instant::now() + linger);
                if in_batch >= pipeline.batch_size {
                    member.flush(&consumer, processor, &shutdown).await?;
                    in_batch = 0;
                    flush_at = None;
                }
            }
        }
    }
    member
        .flush(&consumer, processor, &CancellationToken::new())
        .await?;
    tracing::info!("kafka source drained and committed");
    Ok(())
}

/// Swaps in a validated new plugin version, if one is queued. The caller has
/// just flushed, so the swap falls on a batch boundary.
pub fn swap_if_pending(processor: &mut Processor, manager: &PluginManager) -> bool {
    let Some(new) = manager.take_pending() else {
        return false;
    };
    let started = std::time::Instant::now();
    let name = new.name().to_owned();
    let old = processor.swap_plugin(new);
    tracing::info!(from = %old.name(), to = %name, pause_us = started.elapsed().as_micros() as u64,
        "plugin version swapped in");
    processor.counters().add_reloads(1);
    manager.swapped(old);
    true
}

impl Member<'_> {
    fn apply_revocations(&mut self, consumer: &Group, processor: &mut Processor) {
        let revoked =
            std::mem::take(&mut *consumer.context().revoked.lock().expect("never poisoned"));
        for (topic, partition) in revoked {
            if let Some(i) = self.cfg.topics.iter().position(|t| *t == topic) {
                let key = (i as u32, partition);
                processor.release(key);
                self.positions.remove(&key);
                tracing::info!(%topic, partition, "partition revoked; state released");
            }
        }
    }

    /// Restores `key`'s windows from its committed checkpoint (see module docs).
    fn rebuild(
        &mut self,
        consumer: &Group,
        processor: &mut Processor,
        key: PartitionKey,
        first_offset: i64,
    ) -> Result<(), RunError> {
        let topic = self.cfg.topics[key.0 as usize].clone();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, key.1);
        let committed =
            tokio::task::block_in_place(|| consumer.committed_offsets(tpl, BLOCKING_TIMEOUT))
                .map_err(|e| {
                    RunError::Kafka(format!(
                        "cannot read committed offset of {topic}/{}: {e}",
                        key.1
                    ))
                })?;
        let element = committed.find_partition(&topic, key.1);
        let (committed_offset, checkpoint) = match element {
            Some(e) => match e.offset() {
                Offset::Offset(o) => (Some(o), decode_checkpoint(e.metadata())),
                _ => (None, None),
            },
            None => (None, None),
        };
        let Some(checkpoint) = checkpoint else {
            if committed_offset.is_some() {
                tracing::warn!(%topic, partition = key.1, "committed offset has no Wafer checkpoint; window state starts empty");
            }
            processor.restore(key, None);
            return Ok(());
        };
        let end = committed_offset.expect("a checkpoint comes with an offset");
        if first_offset != end {
            tracing::warn!(%topic, partition = key.1, committed = end, first_offset, "consumption does not resume at the committed offset");
        }
        processor.restore(key, checkpoint.stream_time);
        let started = std::time::Instant::now();
        let replayed = if checkpoint.rebuild_from < end {
            tokio::task::block_in_place(|| {
                self.replay(processor, key, &topic, checkpoint.rebuild_from, end)
            })?
        } else {
            0
        };
        processor.counters().add_replayed(replayed);
        tracing::info!(%topic, partition = key.1, from = checkpoint.rebuild_from, to = end, replayed,
            elapsed_ms = started.elapsed().as_millis() as u64, "window state rebuilt");
        Ok(())
    }

    fn replay(
        &mut self,
        processor: &mut Processor,
        key: PartitionKey,
        topic: &str,
        from: i64,
        end: i64,
    ) -> Result<u64, RunError> {
        let kafka_err =
            |e: KafkaError| RunError::Kafka(format!("replaying {topic}/{}: {e}", key.1));
        if self.replayer.is_none() {
            self.replayer = Some(
                kafka_client::replay_consumer(self.cfg)
                    .create()
                    .map_err(kafka_err)?,
            );
        }
        let replayer = self.replayer.as_ref().expect("created above");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, key.1, Offset::Offset(from))
            .map_err(kafka_err)?;
        replayer.assign(&tpl).map_err(kafka_err)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        let mut count = 0;
        let mut next = from;
        while next < end {
            if std::time::Instant::now() > deadline {
                return Err(RunError::Kafka(format!(
                    "replaying {topic}/{} stalled at offset {next} (target {end})",
                    key.1
                )));
            }
            match replayer.poll(Duration::from_millis(500)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(kafka_err(e)),
                Some(Ok(m)) => {
                    if m.offset() >= end {
                        break;
                    }
                    let reference_ms = m.timestamp().to_millis().unwrap_or(0);
                    processor.replay(key, m.offset(), reference_ms, m.payload());
                    count += 1;
                    next = m.offset() + 1;
                }
            }
        }
        replayer.unassign().map_err(kafka_err)?;
        Ok(count)
    }

    /// Writes every change since the last flush, waits for the acknowledgements,
    /// then commits the positions with their checkpoints.
    async fn flush(
        &mut self,
        consumer: &Group,
        processor: &mut Processor,
        shutdown: &CancellationToken,
    ) -> Result<(), RunError> {
        let flushes: Vec<_> = processor
            .partitions()
            .into_iter()
            .map(|key| (key, processor.flush(key)))
            .collect();
        if processor.quarantined() && self.policy == FailurePolicy::Pause {
            // Nothing of this batch is written or committed: its outputs wait
            // for a fixed version, and a restart reprocesses it from the commit.
            for (key, flush) in flushes {
                processor.defer(key, flush);
            }
            self.paused = true;
            return Ok(());
        }
        let mut updates: Vec<FeatureUpdate> = Vec::new();
        let mut failures: Vec<PluginFailure> = Vec::new();
        for (_, flush) in flushes {
            updates.extend(flush.updates);
            failures.extend(flush.failures);
        }
        let computed = updates.iter().filter(|u| u.value.is_some()).count();
        self.manager.count(computed as u64, failures.len() as u64);
        let plugin_tag = format!(
            "{}#{}",
            processor.plugin().name(),
            processor.plugin().content_hash()
        );
        for failure in &failures {
            self.dead_letter_plugin_failure(failure, &plugin_tag)?;
            processor.counters().add_plugin_dead_letters(1);
        }
        if let Some(redis) = &mut self.redis {
            let mut attempt = 0u32;
            while let Err(e) = redis.write(&updates).await {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "redis write failed; retrying");
                if shutdown.is_cancelled() && attempt >= 3 {
                    return Err(e.into());
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)))).await;
            }
        }
        if let Some(topic) = &self.cfg.output_topic {
            self.sink.send_features(topic, &updates, &plugin_tag)?;
        }
        self.sink.flush().await?;
        self.commit(consumer, processor)
    }

    /// Dead-letters one entity the plugin failed on: key = entity id, value =
    /// a JSON description (plugin, error kind and message, source position).
    fn dead_letter_plugin_failure(
        &mut self,
        f: &PluginFailure,
        plugin: &str,
    ) -> Result<(), RunError> {
        let topic = &self.cfg.topics[f.partition.0 as usize];
        let reason = f.error.to_string();
        let value = serde_json::json!({
            "plugin": plugin,
            "kind": f.error.kind(),
            "error": reason,
            "entity": f.entity,
            "source": { "topic": topic, "partition": f.partition.1, "offset": f.offset },
        })
        .to_string();
        self.sink.send_side(
            &self.cfg.dead_letter_topic,
            Some(f.entity.as_bytes()),
            Some(value.as_bytes()),
            &reason,
            Source {
                topic,
                partition: f.partition.1,
                offset: f.offset,
            },
            &[
                ("wafer.plugin", plugin),
                ("wafer.error.kind", f.error.kind()),
            ],
        )?;
        Ok(())
    }

    fn commit(&mut self, consumer: &Group, processor: &Processor) -> Result<(), RunError> {
        if self.positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (key, next) in &self.positions {
            let topic = &self.cfg.topics[key.0 as usize];
            let checkpoint = processor.checkpoint(*key, *next);
            tpl.add_partition_offset(topic, key.1, Offset::Offset(*next))
                .map_err(|e| RunError::Kafka(e.to_string()))?;
            if let Some(mut e) = tpl.find_partition(topic, key.1) {
                e.set_metadata(encode_checkpoint(&checkpoint));
            }
        }
        match tokio::task::block_in_place(|| consumer.commit(&tpl, CommitMode::Sync)) {
            Ok(()) => {
                processor.counters().add_commits(1);
                self.positions.clear();
            }
            // Typically a rebalance in progress: the next owner re-reads from the
            // previous commit, rewriting the same values.
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; positions kept for the next flush")
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_metadata_round_trips() {
        for c in [
            Checkpoint {
                stream_time: Some(1_772_366_400_000),
                rebuild_from: 42,
            },
            Checkpoint {
                stream_time: None,
                rebuild_from: 0,
            },
            Checkpoint {
                stream_time: Some(-5),
                rebuild_from: 7,
            },
        ] {
            assert_eq!(decode_checkpoint(&encode_checkpoint(&c)), Some(c));
        }
        assert_eq!(decode_checkpoint(""), None);
        assert_eq!(decode_checkpoint("other:1:2"), None);
        assert_eq!(decode_checkpoint("wafer1:x:2"), None);
    }
}
