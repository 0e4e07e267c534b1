//! The Kafka source: a consumer-group member that feeds every view and owns
//! the delivery rule.
//!
//! **Delivery rule.** An offset is committed only after every write derived
//! from the records before it (Redis, the feature topics, dead letters, late
//! events) is acknowledged. Each commit carries, as metadata, every view's
//! window checkpoint: its stream time, the first offset a replay must read,
//! the stream time before that offset and the idle advances since.
//!
//! **Assignment.** A partition assigned to this host (at start, restart or
//! after a rebalance) is rebuilt before any of its records is processed: read
//! the committed checkpoints and replay each view from its `rebuild_from` up to
//! the committed offset, judging every event as when it was first read (same
//! stream time, watermark and idle advances) without emitting anything. The
//! windows then hold exactly what the previous owner had at its last commit.
//! Each partition's progress (assigned → rebuilding → ready) is reported to
//! [`Readiness`], with the group's first assignment; the host is ready once
//! every source's group has assigned and every assigned partition is ready.
//!
//! **Repartitioning.** A source may also forward every record to the
//! repartition topics of views keyed by another field, or be the source of
//! one such topic, dropping re-forwarded copies ([`crate::repartition`]);
//! forwards are writes like the others, acknowledged before the commit.
//!
//! **Flushes overlap consumption.** A flush turns the changes since the last
//! one into a batch (plugin calls, feature records queued to the producer, the
//! commit with the checkpoints and dedup state as of that boundary, the
//! acknowledgements of every record queued for it, forwards included) and
//! hands it to the writer ([`super::writer`]), whose two stages write (Redis)
//! and then commit batches in order, while this loop consumes and applies the
//! next records. At most
//! `max_in_flight_batches` are handed off and not completed; a failed batch
//! stops the source and nothing after it is committed.
//!
//! **Revocation.** Rebalance callbacks run inside the consumer's poll; a
//! revoke waits there until every batch handed to the writer is committed
//! (or failed), so a revoked partition has no write in flight once the revoke
//! completes; its unflushed changes are dropped and the next owner re-reads
//! them from the last commit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaConfig, PipelineConfig};
use crate::kafka_client;
use crate::metrics::Counters;
use crate::offline::OfflineWriter;
use crate::pipeline::{FailurePolicy, FeatureUpdate, Outcome, PartitionKey, PluginFailure, Record};
use crate::repartition::{self, Routing};
use crate::sinks::kafka::{AckContext, Acks, KafkaSink, Producer, Source};
use crate::sinks::redis::{RedisSink, ViewWrites};
use crate::sources::writer::{Commit, InFlight, Write, Writer};
use crate::status::{DeadLetter, Readiness, Replay, Status};
use crate::view::View;
use crate::window::Checkpoint;
use crate::RunError;

const METADATA_PREFIX: &str = "wafer3";
/// The format before watermarks: `wafer2;<view>=<stream time|->:<rebuild from>;...`
/// (sliding windows only), still read so that a running pipeline can be upgraded.
const METADATA_PREFIX_V2: &str = "wafer2";
const BLOCKING_TIMEOUT: Duration = Duration::from_secs(30);
/// Records already fetched are applied this many at a time (runs of one
/// partition's records are each one batch for the windows, which then load
/// the state of the entities ahead while applying the records before).
const CHUNK: usize = 64;
/// A revoke waits for the batches in flight, warning this often while it does...
const REVOKE_WARN_EVERY: Duration = Duration::from_secs(10);
/// ...and at most this long: a write or commit that never ends must not hold
/// the consumer inside its rebalance (and the member in the group) forever.
const REVOKE_WAIT_LIMIT: Duration = Duration::from_secs(120);

/// Encodes the views' checkpoints as commit metadata:
/// `wafer3;<view>=<stream time>:<rebuild from>:<rebuild time>[:<offset>@<time>...];...`,
/// times `-` when unset; the optional tail lists the idle advances.
pub fn encode_checkpoints(checkpoints: &BTreeMap<String, Checkpoint>) -> String {
    let time = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
    let mut out = METADATA_PREFIX.to_owned();
    for (view, c) in checkpoints {
        out.push_str(&format!(
            ";{view}={}:{}:{}",
            time(c.stream_time),
            c.rebuild_from,
            time(c.rebuild_time)
        ));
        for (at, to) in &c.jumps {
            out.push_str(&format!(":{at}@{to}"));
        }
    }
    out
}

/// Decodes commit metadata written by [`encode_checkpoints`] (or its `wafer2` predecessor).
pub fn decode_checkpoints(s: &str) -> Option<BTreeMap<String, Checkpoint>> {
    let mut parts = s.split(';');
    let v2 = match parts.next()? {
        METADATA_PREFIX => false,
        METADATA_PREFIX_V2 => true,
        _ => return None,
    };
    let time = |t: &str| -> Option<Option<i64>> {
        if t == "-" {
            Some(None)
        } else {
            Some(Some(t.parse().ok()?))
        }
    };
    let mut out = BTreeMap::new();
    for part in parts {
        let (view, rest) = part.split_once('=')?;
        let mut fields = rest.split(':');
        let stream_time = time(fields.next()?)?;
        let rebuild_from = fields.next()?.parse().ok()?;
        // A wafer2 replay started from the final stream time.
        let rebuild_time = if v2 {
            stream_time
        } else {
            time(fields.next()?)?
        };
        let jumps = fields
            .map(|j| {
                let (at, to) = j.split_once('@')?;
                Some((at.parse().ok()?, to.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        out.insert(
            view.to_owned(),
            Checkpoint {
                stream_time,
                rebuild_from,
                rebuild_time,
                jumps,
            },
        );
    }
    Some(out)
}

/// A change of this member's assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Assigned,
    Revoked,
}

/// Records the assignment changes announced by the group protocol, in order,
/// reports them to the host's readiness at once, and wakes the source loop
/// (an assignment must be rebuilt even if no record follows).
struct GroupContext {
    /// The consumer group, as readiness knows it.
    group: String,
    changes: Mutex<Vec<(Change, String, i32)>>,
    readiness: Readiness,
    rebalanced: tokio::sync::Notify,
    /// The batches handed to the writer: a revoke waits for them.
    in_flight: Arc<InFlight>,
}

impl GroupContext {
    fn record(&self, change: Change, tpl: &TopicPartitionList) -> Vec<(String, i32)> {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let mut changes = self.changes.lock().expect("never poisoned");
        changes.extend(partitions.iter().map(|(t, p)| (change, t.clone(), *p)));
        self.rebalanced.notify_one();
        partitions
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = self.record(Change::Revoked, tpl);
            self.readiness.revoked(&revoked);
            // The revoke completes when this returns: every batch handed to
            // the writer is committed (or has failed) first, so the next owner
            // starts from this host's last commit. The callback runs inside
            // the consumer's poll on the source's task, hence `block_in_place`
            // (the writer's task runs meanwhile).
            if self.in_flight.busy() {
                let started = std::time::Instant::now();
                let idle = tokio::task::block_in_place(|| {
                    self.in_flight
                        .wait_idle(REVOKE_WARN_EVERY, REVOKE_WAIT_LIMIT)
                });
                if idle {
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "revoke waited for the batches in flight"
                    );
                } else {
                    tracing::error!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "revoke gave up waiting for the batches in flight; a late commit of them \
                         may move a revoked partition's committed offset back (its records are \
                         then processed again)"
                    );
                }
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = self.record(Change::Assigned, tpl);
            self.readiness.assigned(&self.group, &assigned);
        }
    }
}

type Group = StreamConsumer<GroupContext>;

/// The group member and its outputs.
struct Member<'a> {
    cfg: &'a KafkaConfig,
    consumer: Arc<Group>,
    replayer: Option<BaseConsumer>,
    sink: KafkaSink,
    /// Completes flushed batches (writes, acknowledgements, commit) while
    /// the member goes on consuming.
    writer: Writer<RedisStage, CommitStage>,
    /// Next offset to commit, per partition touched since the last batch
    /// that carried a commit.
    positions: BTreeMap<PartitionKey, i64>,
    /// When the last batch carrying a commit was handed off (`None`: the
    /// next one commits, whatever the interval).
    last_commit: Option<Instant>,
    /// `[pipeline] commit_interval_ms`.
    commit_every: Duration,
    /// The last position handed to the writer, per partition: a position
    /// whose commit failed is retried only when no later batch carries one.
    handed: BTreeMap<PartitionKey, i64>,
    /// Partitions this host holds (rebuilt), with the wall-clock time of their
    /// last record and the next offset to read.
    owned: BTreeMap<PartitionKey, Activity>,
    /// Set when a view's plugin is quarantined under the `pause` policy.
    paused: bool,
    /// Flush latencies and recent dead letters, for the HTTP server.
    status: &'a Status,
    /// What this source forwards to repartition topics, or how it drops copies.
    routing: Routing,
}

/// When a partition last received a record, and where it stands.
#[derive(Debug, Clone, Copy)]
struct Activity {
    last_record: Instant,
    next_offset: i64,
}

/// What woke the consumption loop.
enum Wake<'m> {
    Reload,
    Rebalance,
    Completed(Done),
    Received(Result<Result<BorrowedMessage<'m>, KafkaError>, tokio::time::error::Elapsed>),
}

/// Consumes until `shutdown`, then flushes, waits for every write and commit
/// and returns. `ready` is notified when any view has a new plugin version queued.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: &KafkaConfig,
    pipeline: &PipelineConfig,
    views: &mut [View],
    routing: Routing,
    ready: Arc<tokio::sync::Notify>,
    redis: Option<RedisSink>,
    status: &Status,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let in_flight = Arc::new(InFlight::default());
    let consumer: Group = kafka_client::group_consumer(cfg)
        .create_with_context(GroupContext {
            group: cfg.group.clone(),
            changes: Mutex::default(),
            readiness: status.readiness.clone(),
            rebalanced: tokio::sync::Notify::new(),
            in_flight: in_flight.clone(),
        })
        .map_err(|e| RunError::Kafka(format!("cannot create consumer: {e}")))?;
    let consumer = Arc::new(consumer);
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| RunError::Kafka(format!("cannot subscribe to {topics:?}: {e}")))?;
    let producer: Producer = kafka_client::producer(cfg)
        .create_with_context(AckContext)
        .map_err(|e| RunError::Kafka(format!("cannot create producer: {e}")))?;
    let write_stage = RedisStage {
        redis,
        status: status.clone(),
    };
    let commit_stage = CommitStage {
        consumer: consumer.clone(),
        group: cfg.group.clone(),
        topics: cfg.topics.clone(),
        status: status.clone(),
    };
    let mut member = Member {
        cfg,
        consumer,
        replayer: None,
        sink: KafkaSink::new(producer),
        writer: Writer::start(
            write_stage,
            commit_stage,
            pipeline.max_in_flight_batches,
            in_flight,
        ),
        positions: BTreeMap::new(),
        last_commit: None,
        commit_every: Duration::from_millis(pipeline.commit_interval_ms),
        handed: BTreeMap::new(),
        owned: Default::default(),
        paused: false,
        status,
        routing,
    };
    let names: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
    tracing::info!(topics = ?cfg.topics, group = %cfg.group, views = ?names, "consuming");
    let consumed = member.consume(views, pipeline, &ready, &shutdown).await;
    // The writer's task ends before the consumer is dropped (it holds a handle
    // on it); after an error, the batch it was completing is abandoned uncommitted.
    member.writer.stop().await;
    consumed?;
    tracing::info!("kafka source drained and committed");
    Ok(())
}

/// The output of `future` if it is ready without waiting (a record the
/// consumer has already fetched); `None` otherwise, the future dropped.
fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    match future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// Swaps in every queued plugin version; true if any was.
fn swap_pending(views: &mut [View]) -> bool {
    views
        .iter_mut()
        .fold(false, |any, v| v.swap_if_pending() | any)
}

impl Member<'_> {
    /// The consumption loop: applies records, flushes every `batch_size`
    /// records or `linger_ms` (while the writer is behind, up to
    /// `max_batch_size` records, once a batch completes), hands each flushed
    /// batch to the writer and handles what it reports; at `shutdown`,
    /// flushes and drains the writer.
    async fn consume(
        &mut self,
        views: &mut [View],
        pipeline: &PipelineConfig,
        ready: &tokio::sync::Notify,
        shutdown: &CancellationToken,
    ) -> Result<(), RunError> {
        let consumer = self.consumer.clone();
        let linger = Duration::from_millis(pipeline.linger_ms);
        let idle_timeout =
            (pipeline.idle_timeout_ms > 0).then(|| Duration::from_millis(pipeline.idle_timeout_ms));
        let mut in_batch = 0usize;
        let mut flush_at: Option<Instant> = None;
        loop {
            if self.paused {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ready.notified() => {
                        if swap_pending(views) {
                            self.paused = false;
                            self.flush(views, shutdown).await?;
                        }
                    }
                    done = self.writer.next_done() => self.completed(views, done?),
                }
                continue;
            }
            // While every in-flight slot is taken, a flush would only wait:
            // the batch grows instead, and is flushed once a batch completes.
            let backlog = self.writer.full();
            let mut wait_until = flush_at
                .filter(|_| !backlog)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            if let Some(due) = self.commit_due_at().filter(|_| !backlog) {
                wait_until = wait_until.min(due);
            }
            if let Some(idle) = idle_timeout.filter(|_| !self.owned.is_empty()) {
                wait_until = wait_until.min(Instant::now() + idle / 2);
            }
            let wake = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = ready.notified() => Wake::Reload,
                _ = consumer.context().rebalanced.notified() => Wake::Rebalance,
                done = self.writer.next_done() => Wake::Completed(done?),
                r = tokio::time::timeout_at(wait_until, consumer.recv()) => Wake::Received(r),
            };
            self.apply_rebalance(views)?;
            match wake {
                Wake::Reload => {
                    // A new plugin version: the batch so far is computed with
                    // the old one (its writes may still be in flight), then swap.
                    self.flush(views, shutdown).await?;
                    in_batch = 0;
                    flush_at = None;
                    swap_pending(views);
                }
                Wake::Rebalance => {}
                Wake::Completed(done) => {
                    self.completed(views, done);
                    if in_batch >= pipeline.batch_size {
                        // A batch grown while the writer was behind.
                        self.flush(views, shutdown).await?;
                        in_batch = 0;
                        flush_at = None;
                    }
                }
                Wake::Received(Err(_linger_or_idle_check)) => {
                    if let Some(idle) = idle_timeout {
                        self.advance_idle_partitions(views, idle);
                    }
                    self.flush(views, shutdown).await?;
                    in_batch = 0;
                    flush_at = None;
                }
                Wake::Received(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Wake::Received(Ok(Ok(message))) => {
                    let now = Instant::now();
                    // Records already fetched are taken without going back
                    // through the select above (its timers and wake-ups cost
                    // more than applying a record), up to the batch's end, and
                    // applied in chunks (see `on_records`).
                    let mut chunk = Vec::with_capacity(CHUNK);
                    chunk.push(message);
                    loop {
                        let taken = in_batch + chunk.len();
                        if taken >= pipeline.batch_size && self.writer.full() {
                            // Growing: a completed batch frees a slot, and
                            // this one is then flushed at once.
                            if let Some(done) = self.writer.try_next_done()? {
                                self.completed(views, done);
                            }
                        }
                        if taken >= self.batch_limit(pipeline) {
                            break;
                        }
                        if chunk.len() == CHUNK {
                            in_batch += self.on_records(views, &chunk, now)?;
                            chunk.clear();
                        }
                        let Some(next) = ready_now(consumer.recv()) else {
                            break;
                        };
                        // The records taken came before this poll's
                        // assignment changes: they are applied first.
                        if self.rebalance_pending() {
                            in_batch += self.on_records(views, &chunk, now)?;
                            chunk.clear();
                            self.apply_rebalance(views)?;
                        }
                        match next {
                            Ok(message) => chunk.push(message),
                            Err(e) => {
                                tracing::warn!(error = %e, "kafka consumer error");
                                break;
                            }
                        }
                    }
                    in_batch += self.on_records(views, &chunk, now)?;
                    if in_batch > 0 {
                        flush_at.get_or_insert_with(|| now + linger);
                    }
                    if in_batch >= self.batch_limit(pipeline) {
                        self.flush(views, shutdown).await?;
                        in_batch = 0;
                        flush_at = None;
                    }
                }
            }
        }
        // The last batch's writes are retried until they succeed, shutdown or
        // not (a paused source has nothing to flush: its outputs wait for a fix);
        // it commits whatever the interval.
        self.last_commit = None;
        if !self.paused {
            self.flush(views, &CancellationToken::new()).await?;
        }
        for done in self.writer.drain().await? {
            self.completed(views, done);
        }
        Ok(())
    }

    /// The records at which the batch being consumed is flushed:
    /// `batch_size`, or `max_batch_size` while every in-flight slot is taken.
    fn batch_limit(&self, pipeline: &PipelineConfig) -> usize {
        if self.writer.full() {
            pipeline.max_batch_size.max(pipeline.batch_size)
        } else {
            pipeline.batch_size
        }
    }

    /// Idle partitions (no record for `idle`) take the highest stream time of
    /// the host's other partitions of the same topic, per view, so that their
    /// windows decay; the new stream time is committed with the same offset.
    fn advance_idle_partitions(&mut self, views: &mut [View], idle: Duration) {
        let now = Instant::now();
        let idle_keys: Vec<PartitionKey> = self
            .owned
            .iter()
            .filter(|(_, a)| now.duration_since(a.last_record) >= idle)
            .map(|(k, _)| *k)
            .collect();
        for key in idle_keys {
            let mut advanced = false;
            for view in views.iter_mut() {
                let target = self
                    .owned
                    .keys()
                    .filter(|k| k.0 == key.0 && **k != key)
                    .filter_map(|k| view.processor.stream_time(*k))
                    .max();
                if let Some(target) = target {
                    advanced |= view.processor.advance_idle(key, target);
                }
            }
            if advanced {
                let next = self.owned[&key].next_offset;
                self.positions.entry(key).or_insert(next);
                tracing::info!(topic = %self.cfg.topics[key.0 as usize], partition = key.1,
                    "idle partition: stream time advanced to the host's highest");
            }
        }
    }

    /// True when the last poll changed the assignment (see [`Member::apply_rebalance`]).
    fn rebalance_pending(&self) -> bool {
        !self
            .consumer
            .context()
            .changes
            .lock()
            .expect("never poisoned")
            .is_empty()
    }

    /// Applies the assignment changes of the last poll, in order: a revoked
    /// partition's state is released; an assigned one is rebuilt now, so that
    /// it is ready before its first record (or without one).
    fn apply_rebalance(&mut self, views: &mut [View]) -> Result<(), RunError> {
        let changes = std::mem::take(
            &mut *self
                .consumer
                .context()
                .changes
                .lock()
                .expect("never poisoned"),
        );
        for (change, topic, partition) in changes {
            let Some(i) = self.cfg.topics.iter().position(|t| *t == topic) else {
                continue;
            };
            let key = (i as u32, partition);
            match change {
                Change::Revoked => {
                    for view in views.iter_mut() {
                        view.processor.release(key);
                    }
                    self.positions.remove(&key);
                    self.handed.remove(&key);
                    self.owned.remove(&key);
                    self.routing.release(key);
                    tracing::info!(%topic, partition, "partition revoked; state released");
                }
                Change::Assigned if !self.owned.contains_key(&key) => {
                    self.rebuild(views, key, None)?;
                }
                Change::Assigned => {}
            }
        }
        Ok(())
    }

    /// Applies consumed records (received at `now`), each run of one
    /// partition's records together, and notes the partitions' positions;
    /// returns how many records they add to the batch (those of a topic not
    /// subscribed add none).
    fn on_records(
        &mut self,
        views: &mut [View],
        messages: &[BorrowedMessage<'_>],
        now: Instant,
    ) -> Result<usize, RunError> {
        let mut added = 0;
        let runs =
            messages.chunk_by(|a, b| a.partition() == b.partition() && a.topic() == b.topic());
        for run in runs {
            let first = &run[0];
            let Some(topic_index) = self.cfg.topics.iter().position(|t| t == first.topic()) else {
                continue;
            };
            let key = (topic_index as u32, first.partition());
            if !self.owned.contains_key(&key) {
                self.rebuild(views, key, Some(first.offset()))?;
            }
            self.process(views, key, run)?;
            let next_offset = run[run.len() - 1].offset() + 1;
            self.owned.insert(
                key,
                Activity {
                    last_record: now,
                    next_offset,
                },
            );
            self.positions.insert(key, next_offset);
            added += run.len();
        }
        Ok(added)
    }

    /// Applies consecutive records of one partition to every view (each view
    /// takes them as one batch); side records go to their topics.
    fn process(
        &mut self,
        views: &mut [View],
        key: PartitionKey,
        run: &[BorrowedMessage<'_>],
    ) -> Result<(), RunError> {
        let mut admitted = Vec::with_capacity(run.len());
        for message in run {
            let origin = self.routing.origin(message);
            if self.routing.admit(key, message.offset(), origin.as_ref()) {
                admitted.push((message, origin));
            } else {
                for view in views.iter() {
                    view.processor.counters().add_duplicates(1);
                }
            }
        }
        let records: Vec<Record<'_>> = admitted
            .iter()
            .map(|(message, _)| Record {
                offset: message.offset(),
                reference_ms: message
                    .timestamp()
                    .to_millis()
                    .unwrap_or_else(|| chrono::Utc::now().timestamp_millis()),
                payload: message.payload(),
            })
            .collect();
        let several = self.routing.several_views;
        let mut outcomes = Vec::with_capacity(records.len());
        for view in views.iter_mut() {
            view.processor.process_batch(key, &records, &mut outcomes);
            for ((message, origin), outcome) in admitted.iter().zip(outcomes.drain(..)) {
                self.side_record(view, message, origin.as_ref(), outcome, several)?;
            }
        }
        for (message, _) in &admitted {
            self.forward(message)?;
        }
        Ok(())
    }

    /// Sends a record that `view` did not apply to the late-events or
    /// dead-letter topic, with the reason.
    fn side_record(
        &mut self,
        view: &View,
        message: &BorrowedMessage<'_>,
        origin: Option<&repartition::Origin>,
        outcome: Outcome,
        several: bool,
    ) -> Result<(), RunError> {
        let (side_topic, reason) = match outcome {
            Outcome::Applied => return Ok(()),
            Outcome::Late(reason) => (&self.cfg.late_topic, reason),
            Outcome::Dead(e) => (&self.cfg.dead_letter_topic, e.to_string()),
        };
        // Side records name the input record (a forwarded one's origin).
        let source = match origin {
            Some(o) => (o.topic.as_str(), o.partition, o.offset),
            None => (message.topic(), message.partition(), message.offset()),
        };
        if side_topic == &self.cfg.dead_letter_topic {
            self.status.recent.dead_letter(DeadLetter::new(
                &view.name,
                "decode",
                &reason,
                message.key(),
                source,
            ));
        }
        let view_header = [("wafer.view", view.name.as_str())];
        self.sink.send_side(
            side_topic,
            message.key(),
            message.payload(),
            &reason,
            Source {
                topic: source.0,
                partition: source.1,
                offset: source.2,
            },
            if several { &view_header } else { &[] },
        )?;
        Ok(())
    }

    /// Forwards `message` to each repartitioned view's topic, keyed by the
    /// view's entity id; a record without one is dead-lettered for that view.
    fn forward(&mut self, message: &BorrowedMessage<'_>) -> Result<(), RunError> {
        for f in &self.routing.forwarders {
            let e = match f.entity_id(message.payload()) {
                Ok(id) => {
                    self.sink.forward(
                        &f.topic,
                        &id,
                        message.payload(),
                        message.timestamp().to_millis(),
                        repartition::forwarded_headers(message),
                    )?;
                    continue;
                }
                Err(e) => e.to_string(),
            };
            f.counters.add_dead_letters(1);
            let source = (message.topic(), message.partition(), message.offset());
            self.status.recent.dead_letter(DeadLetter::new(
                &f.view,
                "decode",
                &e,
                message.key(),
                source,
            ));
            let view_header = [("wafer.view", f.view.as_str())];
            self.sink.send_side(
                &self.cfg.dead_letter_topic,
                message.key(),
                message.payload(),
                &e,
                Source {
                    topic: source.0,
                    partition: source.1,
                    offset: source.2,
                },
                if self.routing.several_views {
                    &view_header
                } else {
                    &[]
                },
            )?;
        }
        Ok(())
    }

    /// Restores `key`'s windows in every view from the committed checkpoints
    /// (see the module docs). `first_offset`: the offset of the record that
    /// revealed the partition, or `None` when rebuilding on assignment.
    fn rebuild(
        &mut self,
        views: &mut [View],
        key: PartitionKey,
        first_offset: Option<i64>,
    ) -> Result<(), RunError> {
        let topic = self.cfg.topics[key.0 as usize].clone();
        let readiness = self.status.readiness.clone();
        readiness.rebuilding(&topic, key.1);
        let replay = self.restore(views, key, &topic, first_offset)?;
        readiness.rebuilt(&topic, key.1, replay);
        Ok(())
    }

    /// The rebuild itself; returns what was replayed, if anything.
    fn restore(
        &mut self,
        views: &mut [View],
        key: PartitionKey,
        topic: &str,
        first_offset: Option<i64>,
    ) -> Result<Option<Replay>, RunError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, key.1);
        let consumer = self.consumer.clone();
        let committed =
            tokio::task::block_in_place(|| consumer.committed_offsets(tpl, BLOCKING_TIMEOUT))
                .map_err(|e| {
                    RunError::Kafka(format!(
                        "cannot read committed offset of {topic}/{}: {e}",
                        key.1
                    ))
                })?;
        let (end, checkpoints) = match committed.find_partition(topic, key.1) {
            Some(e) => match e.offset() {
                Offset::Offset(o) => (
                    Some(o),
                    decode_checkpoints(self.routing.restore(key, e.metadata())),
                ),
                _ => (None, None),
            },
            None => (None, None),
        };
        if end.is_none() {
            self.routing.restore(key, "");
        }
        // Without a commit, stream time starts unknown and the offset is only
        // used once a record has set it.
        self.owned.insert(
            key,
            Activity {
                last_record: Instant::now(),
                next_offset: first_offset.or(end).unwrap_or(0),
            },
        );
        let (Some(end), Some(checkpoints)) = (end, checkpoints) else {
            if end.is_some() {
                tracing::warn!(%topic, partition = key.1, "committed offset has no Wafer checkpoint; window state starts empty");
            }
            for view in views.iter_mut() {
                view.processor.restore(key, None);
            }
            return Ok(None);
        };
        if let Some(first_offset) = first_offset.filter(|o| *o != end) {
            tracing::warn!(%topic, partition = key.1, committed = end, first_offset, "consumption does not resume at the committed offset");
        }
        // Per view: the offset its replay starts from (None: nothing to replay).
        let mut from: Vec<Option<i64>> = Vec::with_capacity(views.len());
        for view in views.iter_mut() {
            match checkpoints.get(&view.name) {
                Some(c) => {
                    view.processor.restore(key, Some(c));
                    from.push((c.rebuild_from < end).then_some(c.rebuild_from));
                }
                None => {
                    tracing::warn!(view = %view.name, %topic, partition = key.1,
                        "no checkpoint for this view (new view?); its window state starts empty");
                    view.processor.restore(key, None);
                    from.push(None);
                }
            }
        }
        let Some(start) = from.iter().flatten().copied().min() else {
            for view in views.iter_mut() {
                view.processor.finish_rebuild(key);
            }
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let replayed =
            tokio::task::block_in_place(|| self.replay(views, &from, key, topic, start, end))?;
        for view in views.iter_mut() {
            view.processor.finish_rebuild(key);
        }
        for view in views.iter() {
            view.processor.counters().add_replayed(replayed);
        }
        tracing::info!(%topic, partition = key.1, from = start, to = end, replayed,
            elapsed_ms = started.elapsed().as_millis() as u64, "window state rebuilt");
        Ok(Some(Replay {
            from: start,
            to: end,
            records: replayed,
        }))
    }

    fn replay(
        &mut self,
        views: &mut [View],
        from: &[Option<i64>],
        key: PartitionKey,
        topic: &str,
        start: i64,
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
        tpl.add_partition_offset(topic, key.1, Offset::Offset(start))
            .map_err(kafka_err)?;
        replayer.assign(&tpl).map_err(kafka_err)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        let mut count = 0;
        let mut next = start;
        let mut at_end = false;
        // Admitted records not replayed yet: up to CHUNK, applied as one run.
        let mut pending = Vec::with_capacity(CHUNK);
        while next < end && !at_end {
            if std::time::Instant::now() > deadline {
                return Err(RunError::Kafka(format!(
                    "replaying {topic}/{} stalled at offset {next} (target {end})",
                    key.1
                )));
            }
            // The first record of a run is waited for; the others are only
            // those already fetched.
            let mut wait = Duration::from_millis(500);
            while pending.len() < CHUNK && next < end {
                match replayer.poll(wait) {
                    None => break,
                    Some(Err(KafkaError::PartitionEOF(_))) => {
                        at_end = true;
                        break;
                    }
                    Some(Err(e)) => return Err(kafka_err(e)),
                    Some(Ok(m)) => {
                        if m.offset() >= end {
                            at_end = true;
                            break;
                        }
                        count += 1;
                        next = m.offset() + 1;
                        let origin = self.routing.origin(&m);
                        if self.routing.admit(key, m.offset(), origin.as_ref()) {
                            pending.push(m);
                        }
                        wait = Duration::ZERO;
                    }
                }
            }
            let records: Vec<Record<'_>> = pending
                .iter()
                .map(|m| Record {
                    offset: m.offset(),
                    reference_ms: m.timestamp().to_millis().unwrap_or(0),
                    payload: m.payload(),
                })
                .collect();
            for (view, from) in views.iter_mut().zip(from) {
                if let Some(from) = from {
                    let first = records.partition_point(|r| r.offset < *from);
                    view.processor.replay_batch(key, &records[first..]);
                }
            }
            pending.clear();
        }
        replayer.unassign().map_err(kafka_err)?;
        Ok(count)
    }

    /// Flushes every view's changes since the last flush into a batch (plugin
    /// calls, feature records queued to the producer, the commit with its
    /// checkpoints as of now) and hands it to the writer, which writes it
    /// while consumption goes on. Waits while `max_in_flight_batches` are
    /// being written. `give_up`: once cancelled, the batch's failing writes
    /// stop being retried.
    async fn flush(
        &mut self,
        views: &mut [View],
        give_up: &CancellationToken,
    ) -> Result<(), RunError> {
        let started = Instant::now();
        let Some(batch) = self.prepare(views, give_up)? else {
            return Ok(());
        };
        self.status.timings.observe_flush(started.elapsed());
        let started = Instant::now();
        let done = self.writer.hand_off(batch).await?;
        self.status.timings.observe_writer_wait(started.elapsed());
        for done in done {
            self.completed(views, done);
        }
        Ok(())
    }

    /// True when a batch flushed now carries the positions to commit: none
    /// was committed yet, or the last commit is `commit_interval_ms` old.
    fn commit_due(&self) -> bool {
        self.last_commit
            .is_none_or(|at| at.elapsed() >= self.commit_every)
    }

    /// When positions waiting for a commit must be flushed even without new
    /// records (`None`: none wait, or the next flush commits anyway).
    fn commit_due_at(&self) -> Option<Instant> {
        if self.positions.is_empty() {
            return None;
        }
        self.last_commit.map(|at| at + self.commit_every)
    }

    /// The batch of a flush; `None` when a plugin quarantined under the
    /// `pause` policy holds everything back.
    fn prepare(
        &mut self,
        views: &mut [View],
        give_up: &CancellationToken,
    ) -> Result<Option<Batch>, RunError> {
        let mut all: Vec<(usize, PartitionKey, crate::pipeline::Flush)> = Vec::new();
        for (i, view) in views.iter_mut().enumerate() {
            for key in view.processor.partitions() {
                all.push((i, key, view.processor.flush(key)));
            }
        }
        let pause = views
            .iter()
            .any(|v| v.processor.quarantined() && v.policy == FailurePolicy::Pause);
        if pause {
            // Nothing of this batch is written or committed: its outputs wait
            // for a fixed version, and a restart reprocesses it from the commit.
            for (i, key, flush) in all {
                views[i].processor.defer(key, flush);
            }
            self.paused = true;
            tracing::error!(
                "consumption paused: a plugin is quarantined under the `pause` policy; \
                 load a fixed version (plugin file or admin endpoint) or restart"
            );
            return Ok(None);
        }
        let mut redis: Vec<ViewWrites> = Vec::with_capacity(all.len());
        // The counters of each entry's view, for the updates Redis skipped.
        let mut counters: Vec<Counters> = Vec::with_capacity(all.len());
        // Per view with an offline log: its writer and its entries of `redis`.
        let mut offline: Vec<(OfflineWriter, Vec<usize>)> = Vec::new();
        let mut offline_of: Vec<Option<usize>> = Vec::with_capacity(views.len());
        for view in views.iter() {
            offline_of.push(view.offline_writer().map(|w| {
                offline.push((w, Vec::new()));
                offline.len() - 1
            }));
        }
        for (i, _, flush) in all {
            let view = &views[i];
            let tag = view.plugin_tag();
            let computed = flush.updates.iter().filter(|u| u.value.is_some()).count();
            view.manager
                .count(computed as u64, flush.failures.len() as u64);
            for failure in &flush.failures {
                let several = self.routing.several_views;
                self.dead_letter_plugin_failure(failure, &view.name, &tag, several)?;
                view.processor.counters().add_plugin_dead_letters(1);
            }
            if let Some(topic) = &view.output_topic {
                self.sink.send_features(topic, &flush.updates, &tag)?;
            }
            if let Some(o) = offline_of[i] {
                offline[o].1.push(redis.len());
            }
            redis.push((view.online.clone(), flush.updates));
            counters.push(view.processor.counters().clone());
        }
        // The checkpoints (and, on a repartition topic, the dedup state) are
        // taken now, at the batch boundary: consumption goes on while the
        // batch is written. Between commits, positions wait for a later batch,
        // whose commit follows this one's writes.
        let positions = if self.commit_due() {
            if !self.positions.is_empty() {
                self.last_commit = Some(Instant::now());
            }
            std::mem::take(&mut self.positions)
        } else {
            BTreeMap::new()
        };
        let mut commit = Vec::with_capacity(positions.len());
        let mut largest: Option<Largest> = None;
        for (key, next) in positions {
            let checkpoints: BTreeMap<String, Checkpoint> = views
                .iter()
                .map(|v| (v.name.clone(), v.processor.checkpoint(key, next)))
                .collect();
            let rebuild_from = checkpoints.values().map(|c| c.rebuild_from).min();
            let metadata = self.routing.metadata(
                key,
                encode_checkpoints(&checkpoints),
                rebuild_from.unwrap_or(next),
            );
            if largest.as_ref().is_none_or(|l| metadata.len() > l.bytes) {
                largest = Some(Largest {
                    key,
                    bytes: metadata.len(),
                    views: views.len(),
                    dedup_sources: self
                        .routing
                        .dedup
                        .is_some()
                        .then(|| self.routing.dedup_sources(key)),
                });
            }
            self.handed.insert(key, next);
            commit.push(Position {
                key,
                next,
                metadata,
            });
        }
        Ok(Some(Batch {
            redis,
            counters,
            offline,
            acks: self.sink.take_pending(),
            commit,
            largest,
            give_up: give_up.clone(),
        }))
    }

    /// Handles a completed batch: counts its commit, or keeps the positions
    /// of a failed commit for the next flush (unless a later batch carries
    /// the partition or it changed hands meanwhile).
    fn completed(&mut self, views: &[View], done: Done) {
        if done.committed {
            for v in views {
                v.processor.counters().add_commits(1);
            }
        }
        for (key, next) in done.uncommitted {
            let current = self.handed.get(&key) == Some(&next)
                && self.owned.get(&key).is_some_and(|a| a.next_offset >= next);
            if current {
                self.positions.entry(key).or_insert(next);
            }
        }
    }

    /// Dead-letters one entity a plugin failed on: key = entity id, value =
    /// a JSON description (view, plugin, error kind and message, source position).
    fn dead_letter_plugin_failure(
        &mut self,
        f: &PluginFailure,
        view: &str,
        plugin: &str,
        several: bool,
    ) -> Result<(), RunError> {
        let topic = &self.cfg.topics[f.partition.0 as usize];
        let reason = f.error.to_string();
        self.status.recent.dead_letter(DeadLetter::new(
            view,
            f.error.kind(),
            &reason,
            Some(f.entity.as_bytes()),
            (topic, f.partition.1, f.offset),
        ));
        let value = serde_json::json!({
            "view": view,
            "plugin": plugin,
            "kind": f.error.kind(),
            "error": reason,
            "entity": f.entity,
            "source": { "topic": topic, "partition": f.partition.1, "offset": f.offset },
        })
        .to_string();
        let mut headers = vec![
            ("wafer.plugin", plugin),
            ("wafer.error.kind", f.error.kind()),
        ];
        if several {
            headers.push(("wafer.view", view));
        }
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
            &headers,
        )?;
        Ok(())
    }
}

/// A partition's commit: the next offset and its metadata (the views'
/// checkpoints and, on a repartition topic, the dedup state).
struct Position {
    key: PartitionKey,
    next: i64,
    metadata: String,
}

/// The partition of a batch's commit with the largest metadata, and what it
/// holds: named if the brokers refuse the commit for its size.
struct Largest {
    key: PartitionKey,
    bytes: usize,
    /// Views whose checkpoints it carries.
    views: usize,
    /// Input partitions in its dedup state (on a repartition topic).
    dedup_sources: Option<usize>,
}

/// One flushed batch: its derived writes, the acknowledgements they wait
/// for, and the commit that follows them.
struct Batch {
    /// Every view's updates, per flushed partition.
    redis: Vec<ViewWrites>,
    /// The counters of each entry of `redis`'s view (updates Redis skipped).
    counters: Vec<Counters>,
    /// Per view with an offline log: its writer and its entries of `redis`.
    offline: Vec<(OfflineWriter, Vec<usize>)>,
    /// Every record produced for the batch (features, dead letters, late
    /// events, records forwarded to repartition topics).
    acks: Acks,
    /// Committed once everything above succeeded.
    commit: Vec<Position>,
    /// The entry of `commit` with the largest metadata.
    largest: Option<Largest>,
    /// Once cancelled, failing writes stop being retried.
    give_up: CancellationToken,
}

/// What the writer reports of a batch it completed.
struct Done {
    /// The offsets were committed.
    committed: bool,
    /// Positions whose commit failed (typically a rebalance in progress).
    uncommitted: Vec<(PartitionKey, i64)>,
}

/// The write stage: the online store (Redis).
struct RedisStage {
    redis: Option<RedisSink>,
    status: Status,
}

/// The commit stage: acknowledgements, offline logs and offset commits.
struct CommitStage {
    consumer: Arc<Group>,
    group: String,
    topics: Vec<String>,
    status: Status,
}

impl Write for RedisStage {
    type Batch = Batch;
    type Written = Batch;

    fn write(
        &mut self,
        batch: Batch,
    ) -> impl std::future::Future<Output = Result<Batch, RunError>> + Send {
        self.write_redis(batch)
    }
}

impl Commit for CommitStage {
    type Written = Batch;
    type Done = Done;

    fn commit(
        &mut self,
        batch: Batch,
    ) -> impl std::future::Future<Output = Result<Done, RunError>> + Send {
        self.complete(batch)
    }
}

impl RedisStage {
    /// Writes `batch` to Redis, retrying until it succeeds (or three more
    /// attempts once the run gives up), and counts the skipped updates.
    async fn write_redis(&mut self, batch: Batch) -> Result<Batch, RunError> {
        if let Some(redis) = &mut self.redis {
            let started = Instant::now();
            let mut attempt = 0u32;
            let skipped = loop {
                match redis.write(&batch.redis).await {
                    Ok(skipped) => break skipped,
                    Err(e) => {
                        attempt += 1;
                        tracing::warn!(error = %e, attempt, "redis write failed; retrying");
                        if batch.give_up.is_cancelled() && attempt >= 3 {
                            return Err(e.into());
                        }
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10))))
                            .await;
                    }
                }
            };
            self.status.timings.observe_redis_write(started.elapsed());
            for (c, n) in batch.counters.iter().zip(skipped) {
                c.add_redis_skipped(n);
            }
        }
        Ok(batch)
    }
}

impl CommitStage {
    /// Waits for the producer's acknowledgements of a written batch, appends
    /// to the offline logs (fsync'd), then commits.
    async fn complete(&mut self, batch: Batch) -> Result<Done, RunError> {
        let Batch {
            redis: updates,
            offline,
            acks,
            commit,
            largest,
            give_up,
            ..
        } = batch;
        let started = Instant::now();
        acks.wait().await?;
        self.status.timings.observe_kafka_ack(started.elapsed());
        let offline: Vec<(OfflineWriter, Vec<&[FeatureUpdate]>)> = offline
            .into_iter()
            .map(|(w, entries)| {
                let batches = entries.iter().map(|e| updates[*e].1.as_slice()).collect();
                (w, batches)
            })
            .collect();
        crate::offline::write_flush(&offline, &give_up).await?;
        self.commit_offsets(commit, largest)
    }

    fn commit_offsets(
        &self,
        positions: Vec<Position>,
        largest: Option<Largest>,
    ) -> Result<Done, RunError> {
        if positions.is_empty() {
            return Ok(Done {
                committed: false,
                uncommitted: Vec::new(),
            });
        }
        let mut tpl = TopicPartitionList::new();
        for p in &positions {
            let topic = &self.topics[p.key.0 as usize];
            tpl.add_partition_offset(topic, p.key.1, Offset::Offset(p.next))
                .map_err(|e| RunError::Kafka(e.to_string()))?;
            if let Some(mut e) = tpl.find_partition(topic, p.key.1) {
                e.set_metadata(p.metadata.clone());
            }
        }
        let consumer = &self.consumer;
        let started = Instant::now();
        let committed = tokio::task::block_in_place(|| consumer.commit(&tpl, CommitMode::Sync));
        self.status.timings.observe_commit(started.elapsed());
        match committed {
            Ok(()) => Ok(Done {
                committed: true,
                uncommitted: Vec::new(),
            }),
            // Retrying cannot help, and never committing would let the lag
            // and the next rebuild grow without bound.
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetMetadataTooLarge) => {
                let l = largest.expect("a commit has partitions");
                let mut contents = format!("the window checkpoints of {} view(s)", l.views);
                if let Some(sources) = l.dedup_sources {
                    contents.push_str(&format!(
                        " and the dedup state of {sources} input partitions"
                    ));
                }
                Err(RunError::CommitMetadataTooLarge {
                    group: self.group.clone(),
                    topic: self.topics[l.key.0 as usize].clone(),
                    partition: l.key.1,
                    bytes: l.bytes,
                    contents,
                })
            }
            // Typically a rebalance in progress: the next owner re-reads from the
            // previous commit, rewriting the same values.
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; positions kept for the next flush");
                Ok(Done {
                    committed: false,
                    uncommitted: positions.iter().map(|p| (p.key, p.next)).collect(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_metadata_round_trips() {
        let checkpoint =
            |stream_time, rebuild_from, rebuild_time, jumps: &[(i64, i64)]| Checkpoint {
                stream_time,
                rebuild_from,
                rebuild_time,
                jumps: jumps.to_vec(),
            };
        let map = BTreeMap::from([
            (
                "user-activity".to_owned(),
                checkpoint(
                    Some(1_772_366_400_000),
                    42,
                    Some(1_772_366_000_000),
                    &[(50, 1_772_366_100_000), (61, 1_772_366_400_000)],
                ),
            ),
            ("items".to_owned(), checkpoint(None, 0, None, &[])),
            ("neg".to_owned(), checkpoint(Some(-5), 7, Some(-9), &[])),
        ]);
        assert_eq!(decode_checkpoints(&encode_checkpoints(&map)), Some(map));
        assert_eq!(decode_checkpoints("wafer3"), Some(BTreeMap::new()));
        assert_eq!(decode_checkpoints(""), None);
        assert_eq!(decode_checkpoints("wafer1:1:2"), None);
        assert_eq!(decode_checkpoints("wafer3;v=x:2:-"), None);
        assert_eq!(decode_checkpoints("wafer3;v=1:2:1:3@x"), None);
    }

    #[test]
    fn checkpoints_of_the_previous_format_replay_from_their_stream_time() {
        assert_eq!(
            decode_checkpoints("wafer2;a=100:7;b=-:3"),
            Some(BTreeMap::from([
                (
                    "a".to_owned(),
                    Checkpoint {
                        stream_time: Some(100),
                        rebuild_from: 7,
                        rebuild_time: Some(100),
                        jumps: Vec::new(),
                    }
                ),
                (
                    "b".to_owned(),
                    Checkpoint {
                        stream_time: None,
                        rebuild_from: 3,
                        rebuild_time: None,
                        jumps: Vec::new(),
                    }
                ),
            ]))
        );
    }
}
