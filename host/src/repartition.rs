//! Repartitioning: feature views keyed by another field than the one the input
//! topics are partitioned by (e.g. per-item features from a per-user topic).
//!
//! **Forwarding.** The Kafka source of the input topics hands every record to
//! one [`Forwarder`] per repartitioned view, which re-keys it by the view's
//! entity id and produces it to the view's repartition topic: the original
//! value, timestamp and headers, then the provenance headers
//! `wafer.source.topic`, `wafer.source.partition` and `wafer.source.offset`.
//! Forwarded records are outputs of the input source like any other: its
//! offsets are committed only after they are acknowledged. A record that has
//! no entity id for the view (invalid JSON, key field missing or mistyped) is
//! dead-lettered once, by the forwarder, and not forwarded.
//!
//! **Consuming.** Each repartitioned view has its own Kafka source on its
//! repartition topic, in its own consumer group `<group>.<view>`, with its own
//! partitions, checkpoints, readiness and rebuilds ([`source_config`]).
//!
//! **Deduplication.** When an input partition is taken over after a crash or
//! a rebalance, the records since its last commit are forwarded again.
//! [`Dedup`] drops those copies: per repartition partition and source
//! partition it keeps the highest source offset admitted and drops a record at
//! or below it. The producer is idempotent (retries keep the order), so one
//! host's forwards of a source partition reach each repartition partition in
//! source-offset order; and a new owner starts forwarding at the committed
//! offset C, which was committed only after every forward before C was
//! acknowledged. So the first copy of every record arrives before any record
//! forwarded after it, and every later copy is at or below the maximum by then
//! (docs/architecture.md has the argument). The highest offsets *before* the
//! view's `rebuild from` ride in the repartition topic's commit metadata, so a
//! rebuild replays the same admissions and drops the same copies.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::{KafkaConfig, RepartitionSpec};
use crate::entity::EntityKey;
use crate::event::DecodeError;
use crate::metrics::Counters;
use crate::pipeline::PartitionKey;

/// Header naming the input topic of a forwarded record.
pub const SOURCE_TOPIC: &str = "wafer.source.topic";
/// Header naming the input partition of a forwarded record.
pub const SOURCE_PARTITION: &str = "wafer.source.partition";
/// Header naming the input offset of a forwarded record.
pub const SOURCE_OFFSET: &str = "wafer.source.offset";

/// Separates the window checkpoints from the dedup state in commit metadata.
const METADATA_SEPARATOR: char = '|';

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the repartition topics could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum RepartitionError {
    /// The cluster's topics could not be listed.
    #[error("cannot read the topics of the cluster: {0}")]
    Metadata(String),
    /// An input topic does not exist, so the repartition topic's size is unknown.
    #[error("input topic `{0}` does not exist (create it, or set repartition_partitions)")]
    NoInput(String),
    /// Creating a repartition topic failed.
    #[error("cannot create repartition topic `{topic}`: {reason}")]
    Create { topic: String, reason: String },
}

/// The source config of a repartitioned view: the input config, reading the
/// view's repartition topic in the consumer group `<group>.<view>`.
pub fn source_config(input: &KafkaConfig, view: &str, topic: &str) -> KafkaConfig {
    KafkaConfig {
        group: format!("{}.{view}", input.group),
        topics: vec![topic.to_owned()],
        ..input.clone()
    }
}

/// Creates each repartition topic that does not exist yet, with its configured
/// partition count or the input topics' largest; an existing topic is kept
/// (a warning names a partition count other than the configured one).
pub async fn ensure_topics(
    cfg: &KafkaConfig,
    topics: &[RepartitionSpec],
) -> Result<(), RepartitionError> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = crate::kafka_client::admin(cfg)
        .create()
        .map_err(|e| RepartitionError::Metadata(e.to_string()))?;
    let metadata =
        tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, ADMIN_TIMEOUT))
            .map_err(|e| RepartitionError::Metadata(e.to_string()))?;
    let partitions_of = |topic: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
    };
    let mut input_partitions = None;
    let mut missing = Vec::new();
    for spec in topics {
        if let Some(existing) = partitions_of(&spec.topic) {
            if spec.partitions.is_some_and(|n| n != existing) {
                tracing::warn!(topic = %spec.topic, existing, configured = spec.partitions,
                    "repartition topic exists with another partition count; keeping it");
            }
            continue;
        }
        let n = match spec.partitions {
            Some(n) => n,
            None => match input_partitions {
                Some(n) => n,
                None => {
                    let mut largest = 0;
                    for t in &cfg.topics {
                        largest = largest.max(
                            partitions_of(t).ok_or_else(|| RepartitionError::NoInput(t.clone()))?,
                        );
                    }
                    *input_partitions.insert(largest)
                }
            },
        };
        missing.push(NewTopic::new(&spec.topic, n, TopicReplication::Fixed(-1)));
    }
    if !missing.is_empty() {
        create(&admin, &missing).await?;
    }
    // A consumer that subscribes before the brokers report the topic leaves it
    // out of its group subscription until its next metadata refresh (minutes).
    let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
    for spec in topics {
        loop {
            let known = tokio::task::block_in_place(|| {
                admin
                    .inner()
                    .fetch_metadata(Some(&spec.topic), ADMIN_TIMEOUT)
            })
            .ok()
            .is_some_and(|m| {
                m.topics().iter().any(|t| {
                    t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            });
            if known {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(RepartitionError::Create {
                    topic: spec.topic.clone(),
                    reason: "the brokers do not report it after creation".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Creates `topics`; one that another host created first is fine.
async fn create(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[NewTopic<'_>],
) -> Result<(), RepartitionError> {
    let created = admin
        .create_topics(
            topics,
            &AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT)),
        )
        .await
        .map_err(|e| RepartitionError::Metadata(e.to_string()))?;
    for result in created {
        match result {
            Ok(topic) => tracing::info!(%topic, "repartition topic created"),
            // Another host of the group created it first.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, e)) => {
                return Err(RepartitionError::Create {
                    topic,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Re-keys input records for one repartitioned view.
pub struct Forwarder {
    /// The view's name (the `wafer.view` header of its dead letters).
    pub view: String,
    /// The view's repartition topic.
    pub topic: String,
    key: EntityKey,
    /// The view's counters (the forwarder's dead letters are the view's).
    pub counters: Counters,
}

impl Forwarder {
    pub fn new(view: &str, topic: &str, key: EntityKey, counters: Counters) -> Self {
        Self {
            view: view.to_owned(),
            topic: topic.to_owned(),
            key,
            counters,
        }
    }

    /// The view's entity id of `payload` (as the view's decoder computes it),
    /// or why it has none.
    pub fn entity_id(&self, payload: Option<&[u8]>) -> Result<String, DecodeError> {
        use serde_json::Value;
        let payload = payload.ok_or(DecodeError::Empty)?;
        let value: Value =
            serde_json::from_slice(payload).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
        let Value::Object(object) = value else {
            return Err(DecodeError::InvalidJson(
                "expected an object, found another JSON value".into(),
            ));
        };
        let mut parts = Vec::with_capacity(self.key.fields().len());
        for (i, field) in self.key.fields().iter().enumerate() {
            let part = match object.get(field) {
                None | Some(Value::Null) => return Err(DecodeError::MissingField(field.clone())),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
                Some(other) => {
                    return Err(DecodeError::WrongType {
                        field: field.clone(),
                        expected: "a string",
                        found: match other {
                            Value::Bool(_) => "a boolean",
                            Value::Number(_) => "a number",
                            Value::Array(_) => "an array",
                            _ => "an object",
                        }
                        .to_owned(),
                    })
                }
            };
            if self.key.is_integer(i) && part.parse::<i64>().is_err() {
                return Err(DecodeError::WrongType {
                    field: field.clone(),
                    expected: "an integer (it is an integer Feast join key)",
                    found: format!("`{part}`"),
                });
            }
            parts.push(part);
        }
        Ok(self.key.id(&parts))
    }
}

/// The headers of a forwarded record: the original record's, then its provenance.
pub fn forwarded_headers(message: &impl Message) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(headers) = message.headers() {
        for h in headers.iter() {
            out = out.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    for (key, value) in [
        (SOURCE_TOPIC, message.topic()),
        (SOURCE_PARTITION, partition.as_str()),
        (SOURCE_OFFSET, offset.as_str()),
    ] {
        out = out.insert(Header {
            key,
            value: Some(value),
        });
    }
    out
}

/// Where a forwarded record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Origin {
    /// The provenance of a forwarded record (the last header of each name, so
    /// an original record's own `wafer.source.*` headers are overridden);
    /// `None` when a header is missing or unreadable.
    pub fn of(message: &impl Message) -> Option<Self> {
        let (mut topic, mut partition, mut offset) = (None, None, None);
        for h in message.headers()?.iter() {
            let Some(value) = h.value.and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            match h.key {
                SOURCE_TOPIC => topic = Some(value.to_owned()),
                SOURCE_PARTITION => partition = value.parse().ok(),
                SOURCE_OFFSET => offset = value.parse().ok(),
                _ => {}
            }
        }
        Some(Self {
            topic: topic?,
            partition: partition?,
            offset: offset?,
        })
    }
}

/// A Kafka source's part in repartitioning.
#[derive(Default)]
pub struct Routing {
    /// The repartitioned views the source of the input topics forwards to.
    pub forwarders: Vec<Forwarder>,
    /// Set on the source of a repartition topic: drops re-forwarded copies.
    pub dedup: Option<Dedup>,
    /// The pipeline runs several views, so side records carry `wafer.view`.
    pub several_views: bool,
}

impl Routing {
    /// The provenance of `message`, on the source of a repartition topic.
    pub fn origin(&self, message: &impl Message) -> Option<Origin> {
        self.dedup.as_ref().and_then(|_| Origin::of(message))
    }

    /// False when the record at `offset` of `key` is a copy of one already
    /// admitted (then it must be skipped); true otherwise.
    pub fn admit(&mut self, key: PartitionKey, offset: i64, origin: Option<&Origin>) -> bool {
        match (&mut self.dedup, origin) {
            (Some(dedup), Some(origin)) => dedup.admit(key, offset, origin),
            _ => true,
        }
    }

    /// The commit metadata of `key`: `checkpoints`, then, on a repartition
    /// topic, `|` and the dedup state before `rebuild_from`.
    pub fn metadata(
        &mut self,
        key: PartitionKey,
        checkpoints: String,
        rebuild_from: i64,
    ) -> String {
        match &mut self.dedup {
            Some(dedup) => format!(
                "{checkpoints}{METADATA_SEPARATOR}{}",
                dedup.checkpoint(key, rebuild_from)
            ),
            None => checkpoints,
        }
    }

    /// Splits committed metadata into the checkpoints and, on a repartition
    /// topic, restores `key`'s dedup state from the rest.
    pub fn restore<'m>(&mut self, key: PartitionKey, metadata: &'m str) -> &'m str {
        let (checkpoints, dedup_state) = match metadata.split_once(METADATA_SEPARATOR) {
            Some((c, d)) => (c, Some(d)),
            None => (metadata, None),
        };
        if let Some(dedup) = &mut self.dedup {
            dedup.restore(key, dedup_state);
        }
        checkpoints
    }

    /// Forgets a revoked partition.
    pub fn release(&mut self, key: PartitionKey) {
        if let Some(dedup) = &mut self.dedup {
            dedup.partitions.remove(&key);
        }
    }
}

/// The dedup state of every partition of a repartition topic this host holds.
#[derive(Debug, Default)]
pub struct Dedup {
    partitions: HashMap<PartitionKey, Seen>,
    /// Never checkpointed (a one-pass read): keeps no admission history.
    one_pass: bool,
}

impl Dedup {
    /// The dedup of a one-pass read of a repartition topic (`wafer
    /// backfill`): the same rule, with no checkpoints, so it keeps only the
    /// highest source offsets.
    pub fn one_pass() -> Self {
        Self {
            partitions: HashMap::new(),
            one_pass: true,
        }
    }

    /// False when the record at `offset` of `key`, from `origin`, is a copy
    /// of one already admitted.
    pub fn admit(&mut self, key: PartitionKey, offset: i64, origin: &Origin) -> bool {
        let one_pass = self.one_pass;
        self.partitions
            .entry(key)
            .or_insert_with(|| Seen {
                one_pass,
                ..Seen::default()
            })
            .admit(offset, origin)
    }

    /// Encodes `key`'s highest admitted source offsets before `rebuild_from`
    /// (`<topic>:<partition>=<offset>,...;...`), forgetting the admissions
    /// before it: a rebuild replays from there.
    fn checkpoint(&mut self, key: PartitionKey, rebuild_from: i64) -> String {
        self.partitions
            .entry(key)
            .or_default()
            .checkpoint(rebuild_from)
    }

    fn restore(&mut self, key: PartitionKey, state: Option<&str>) {
        let seen = match state.map(Seen::decode) {
            Some(Some(seen)) => seen,
            Some(None) => {
                tracing::warn!(partition = key.1, "unreadable dedup state in the commit metadata; starting without it (re-forwarded records may count twice)");
                Seen::default()
            }
            None => Seen::default(),
        };
        self.partitions.insert(key, seen);
    }
}

/// One repartition partition's admissions.
#[derive(Debug, Default)]
struct Seen {
    /// Source partitions, by index.
    sources: Vec<(String, i32)>,
    /// Highest source offset admitted, per source index.
    max: Vec<Option<i64>>,
    /// Highest source offset admitted before the first entry of `history`.
    base: Vec<Option<i64>>,
    /// Admitted records not yet folded into `base`: (offset in the
    /// repartition partition, source index, source offset).
    history: VecDeque<(i64, usize, i64)>,
    /// No checkpoint will fold `history`: it is not kept.
    one_pass: bool,
}

impl Seen {
    fn index(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(i) = self
            .sources
            .iter()
            .position(|(t, p)| t == topic && *p == partition)
        {
            return i;
        }
        self.sources.push((topic.to_owned(), partition));
        self.max.push(None);
        self.base.push(None);
        self.sources.len() - 1
    }

    fn admit(&mut self, offset: i64, origin: &Origin) -> bool {
        let i = self.index(&origin.topic, origin.partition);
        if self.max[i].is_some_and(|m| origin.offset <= m) {
            return false;
        }
        self.max[i] = Some(origin.offset);
        if !self.one_pass {
            self.history.push_back((offset, i, origin.offset));
        }
        true
    }

    fn checkpoint(&mut self, rebuild_from: i64) -> String {
        while let Some(&(offset, i, source_offset)) = self.history.front() {
            if offset >= rebuild_from {
                break;
            }
            self.base[i] = Some(source_offset);
            self.history.pop_front();
        }
        let mut by_topic: Vec<(&str, Vec<(i32, i64)>)> = Vec::new();
        for ((topic, partition), base) in self.sources.iter().zip(&self.base) {
            let Some(base) = base else { continue };
            match by_topic.iter_mut().find(|(t, _)| t == topic) {
                Some((_, list)) => list.push((*partition, *base)),
                None => by_topic.push((topic, vec![(*partition, *base)])),
            }
        }
        by_topic
            .iter()
            .map(|(topic, list)| {
                let list: Vec<String> = list.iter().map(|(p, o)| format!("{p}={o}")).collect();
                format!("{topic}:{}", list.join(","))
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    fn decode(s: &str) -> Option<Self> {
        let mut seen = Self::default();
        for part in s.split(';').filter(|p| !p.is_empty()) {
            let (topic, list) = part.split_once(':')?;
            for entry in list.split(',') {
                let (partition, offset) = entry.split_once('=')?;
                let i = seen.index(topic, partition.parse().ok()?);
                let offset = Some(offset.parse().ok()?);
                seen.base[i] = offset;
                seen.max[i] = offset;
            }
        }
        Some(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(partition: i32, offset: i64) -> Origin {
        Origin {
            topic: "user-events".into(),
            partition,
            offset,
        }
    }

    /// The naive rule: a record is a copy when an earlier record of the
    /// repartition partition came from the same source at the same or a later offset.
    fn naive(records: &[(i32, i64)]) -> Vec<bool> {
        records
            .iter()
            .enumerate()
            .map(|(i, (p, o))| !records[..i].iter().any(|(q, e)| q == p && e >= o))
            .collect()
    }

    #[test]
    fn copies_of_a_takeover_are_dropped_and_the_rest_admitted() {
        // Source 0 forwards 0..6, is taken over at committed offset 3 and
        // forwarded again from there; source 1 interleaves.
        let records = [
            (0, 0),
            (1, 0),
            (0, 1),
            (0, 2),
            (0, 3),
            (1, 1),
            (0, 4),
            (0, 3),
            (0, 4),
            (1, 2),
            (0, 5),
        ];
        let mut dedup = Dedup::default();
        let got: Vec<bool> = records
            .iter()
            .enumerate()
            .map(|(i, (p, o))| dedup.admit((0, 0), i as i64, &origin(*p, *o)))
            .collect();
        assert_eq!(got, naive(&records));
        assert_eq!(got.iter().filter(|a| !**a).count(), 2);
    }

    #[test]
    fn a_rebuild_from_the_checkpoint_decides_like_the_first_run() {
        // Random streams of takeovers; at a random commit point with a random
        // rebuild start, replaying from the checkpointed state must admit the
        // same records as the first run did.
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for _ in 0..200 {
            let mut forwarded = [0i64; 3];
            let mut records = Vec::new();
            for _ in 0..60 {
                let p = next(3) as usize;
                if next(10) == 0 {
                    // A takeover: forwarding restarts a few offsets back.
                    forwarded[p] = (forwarded[p] - next(5) as i64).max(0);
                }
                records.push((p as i32, forwarded[p]));
                forwarded[p] += 1;
            }
            let expected = naive(&records);
            let mut first = Dedup::default();
            let commit = next(records.len() as u64) as usize;
            let rebuild_from = next(commit as u64 + 1) as i64;
            let mut metadata = String::new();
            for (i, (p, o)) in records.iter().enumerate() {
                if i == commit {
                    metadata = first.checkpoint((0, 0), rebuild_from);
                }
                assert_eq!(first.admit((0, 0), i as i64, &origin(*p, *o)), expected[i]);
            }
            let mut routing = Routing {
                dedup: Some(Dedup::default()),
                ..Routing::default()
            };
            let committed = format!("wafer3|{metadata}");
            assert_eq!(routing.restore((0, 0), &committed), "wafer3");
            for (i, (p, o)) in records.iter().enumerate().skip(rebuild_from as usize) {
                assert_eq!(
                    routing.admit((0, 0), i as i64, Some(&origin(*p, *o))),
                    expected[i],
                    "record {i} after a rebuild from {rebuild_from} (commit at {commit})"
                );
            }
        }
    }

    #[test]
    fn entity_ids_follow_the_decoder() {
        let f = Forwarder::new(
            "items",
            "t",
            EntityKey::new(vec!["item_id".into(), "shop".into()]),
            Counters::default(),
        );
        assert_eq!(
            f.entity_id(Some(br#"{"item_id":"a:b","shop":7,"x":1}"#)),
            Ok(r"a\:b:7".to_owned())
        );
        assert_eq!(
            f.entity_id(Some(br#"{"shop":7}"#)),
            Err(DecodeError::MissingField("item_id".into()))
        );
        assert!(matches!(
            f.entity_id(Some(br#"{"item_id":1.5,"shop":7}"#)),
            Err(DecodeError::WrongType { .. })
        ));
        assert!(matches!(
            f.entity_id(Some(b"{oops")),
            Err(DecodeError::InvalidJson(_))
        ));
        assert_eq!(f.entity_id(None), Err(DecodeError::Empty));
    }
}
