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
//! rebuild replays the same admissions and drops the same copies. They are
//! encoded compactly (about 6 bytes per input partition, [`Seen::checkpoint`])
//! because brokers refuse commit metadata over `offset.metadata.max.bytes`
//! (4096 by default); the Kafka source stops with an error naming that setting
//! when they do.

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

/// Opens the compact dedup state; never the first character of a topic name,
/// so the earlier `<topic>:<partition>=<offset>,...` format is told apart.
const COMPACT: char = '~';

/// The digits of the compact dedup state: a number is written 5 bits per
/// character, lowest first, as `DIGITS[bits]` for its last character and
/// `DIGITS[32 + bits]` for the others (base64url's alphabet, so no separator
/// of the metadata appears in it).
const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

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

    /// The number of input partitions in `key`'s dedup state (0 off a repartition topic).
    pub fn dedup_sources(&self, key: PartitionKey) -> usize {
        self.dedup
            .as_ref()
            .and_then(|d| d.partitions.get(&key))
            .map_or(0, |seen| seen.sources.len())
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
    /// ([`Seen::checkpoint`]), forgetting the admissions before it: a rebuild
    /// replays from there.
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
#[derive(Debug, Default, Clone)]
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

    /// Folds the admissions before `rebuild_from` into `base` and encodes it:
    /// `~<topic>:<entries>;<topic>:<entries>...`, only the input partitions
    /// admitted from. Per topic, the entries in partition order are two
    /// numbers each ([`DIGITS`], zigzag-signed): the partition's distance from
    /// the previous one plus one (0 for the next partition, one character),
    /// and the offset's difference from the previous entry's offset (the first
    /// entry's: from 0). Input partitions of similar sizes have close offsets:
    /// 6 bytes per partition when neighbours are within 8 million records of
    /// each other, 7 within 268 million, 14 at most.
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
        let mut out = String::new();
        for (n, (topic, list)) in by_topic.iter_mut().enumerate() {
            out.push(if n == 0 { COMPACT } else { ';' });
            out.push_str(topic);
            out.push(':');
            list.sort_unstable();
            let (mut partition, mut offset) = (-1i64, 0i64);
            for &(p, o) in list.iter() {
                push_number(&mut out, zigzag(i64::from(p) - partition - 1));
                push_number(&mut out, zigzag(o.wrapping_sub(offset)));
                (partition, offset) = (i64::from(p), o);
            }
        }
        out
    }

    /// Reads a state written by [`Seen::checkpoint`], or in the earlier
    /// `<topic>:<partition>=<offset>,...;...` format.
    fn decode(s: &str) -> Option<Self> {
        let mut seen = Self::default();
        let mut restore = |topic: &str, partition: i64, offset: i64| -> Option<()> {
            let i = seen.index(topic, i32::try_from(partition).ok()?);
            seen.base[i] = Some(offset);
            seen.max[i] = Some(offset);
            Some(())
        };
        if let Some(compact) = s.strip_prefix(COMPACT) {
            for part in compact.split(';') {
                let (topic, entries) = part.split_once(':')?;
                let (bytes, mut at) = (entries.as_bytes(), 0);
                let (mut partition, mut offset) = (-1i64, 0i64);
                while at < bytes.len() {
                    partition = partition
                        .checked_add(1)?
                        .checked_add(unzigzag(read_number(bytes, &mut at)?))?;
                    offset = offset.wrapping_add(unzigzag(read_number(bytes, &mut at)?));
                    restore(topic, partition, offset)?;
                }
            }
        } else {
            for part in s.split(';').filter(|p| !p.is_empty()) {
                let (topic, list) = part.split_once(':')?;
                for entry in list.split(',') {
                    let (partition, offset) = entry.split_once('=')?;
                    restore(topic, partition.parse().ok()?, offset.parse().ok()?)?;
                }
            }
        }
        Some(seen)
    }
}

/// A signed number as an unsigned one, small in magnitude → small.
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `v` in [`DIGITS`].
fn push_number(out: &mut String, mut v: u64) {
    loop {
        let bits = (v & 31) as usize;
        v >>= 5;
        if v == 0 {
            out.push(DIGITS[bits] as char);
            return;
        }
        out.push(DIGITS[32 + bits] as char);
    }
}

/// Reads a number written by [`push_number`] at `*at`; `None` when the text
/// ends inside it, has another character or runs over 64 bits.
fn read_number(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(5) {
        let digit = DIGITS.iter().position(|d| Some(d) == bytes.get(*at))? as u64;
        *at += 1;
        let bits = digit & 31;
        if shift == 60 && bits > 15 {
            return None;
        }
        v |= bits << shift;
        if digit < 32 {
            return Some(v);
        }
    }
    None
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

    /// The state of (topic, partition, highest offset) entries, admitted in that order.
    fn seen_of(entries: &[(&str, i32, i64)]) -> Seen {
        let mut seen = Seen::default();
        for (i, (topic, partition, offset)) in entries.iter().enumerate() {
            let origin = Origin {
                topic: (*topic).to_owned(),
                partition: *partition,
                offset: *offset,
            };
            assert!(seen.admit(i as i64, &origin));
        }
        seen
    }

    /// Which of `probes` (topic, partition, offset) `seen` admits, each on a fresh copy.
    fn admits(state: &str, probes: &[(&str, i32, i64)]) -> Vec<bool> {
        let decoded = Seen::decode(state).expect("a readable state");
        probes
            .iter()
            .map(|(topic, partition, offset)| {
                let mut seen = decoded.clone();
                let origin = Origin {
                    topic: (*topic).to_owned(),
                    partition: *partition,
                    offset: *offset,
                };
                seen.admit(0, &origin)
            })
            .collect()
    }

    #[test]
    fn the_compact_dedup_state_is_hand_worked_and_reads_the_earlier_format() {
        let entries = [("t", 3, 5000), ("t", 0, 100), ("u", 2, 7), ("t", 1, 90)];
        // t, by partition: 0 -> 100, 1 -> 90, 3 -> 5000; u: 2 -> 7.
        // t0: distance 0 -> "A"; offset +100, zigzag 200 = 8 + 6 * 32 -> DIGITS[40] DIGITS[6] = "oG".
        // t1: "A"; -10, zigzag 19 -> "T".
        // t3: distance 1, zigzag 2 -> "C"; +4910, zigzag 9820 = 28 + 18 * 32 + 9 * 1024 -> "8yJ".
        // u2: distance 2, zigzag 4 -> "E"; +7, zigzag 14 -> "O".
        let want = "~t:AoGATC8yJ;u:EO";
        assert_eq!(seen_of(&entries).checkpoint(i64::MAX), want);
        let probes = [
            ("t", 0, 100),
            ("t", 0, 101),
            ("t", 1, 90),
            ("t", 1, 91),
            ("t", 2, 0),
            ("t", 3, 4999),
            ("t", 3, 5001),
            ("u", 2, 7),
            ("u", 2, 8),
            ("u", 3, 0),
        ];
        let admitted = [
            false, true, false, true, true, false, true, false, true, true,
        ];
        assert_eq!(admits(want, &probes), admitted);
        // The format before: the same state, read alike and written compactly.
        let earlier = "t:3=5000,0=100,1=90;u:2=7";
        assert_eq!(admits(earlier, &probes), admitted);
        let mut upgraded = Seen::decode(earlier).unwrap();
        assert_eq!(upgraded.checkpoint(i64::MAX), want);
        assert_eq!(Seen::default().checkpoint(0), "");
        assert_eq!(admits("", &[("t", 0, 0)]), [true]);
        for bad in ["~t:A", "~t:o", "~t:A!", "~tAA", "~t:A__________________"] {
            assert!(Seen::decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_compact_dedup_state_is_bounded_per_input_partition() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let topic = "user-events";
        let header = COMPACT.len_utf8() + topic.len() + 1;
        // 600 input partitions of a topic about 500 billion records deep, each
        // within 4 million records of the others: 6 bytes each (a distance of
        // one character, a difference under 2^23: 5 characters), the first 1 + 8.
        let close: Vec<(&str, i32, i64)> = (0..600)
            .map(|p| (topic, p, 500_000_000_000 + (next() % 4_000_000) as i64))
            .collect();
        let state = seen_of(&close).checkpoint(i64::MAX);
        assert!(state.len() <= header + 9 + 599 * 6, "{} bytes", state.len());
        assert!(state.len() < 4096 - 200, "room for the window checkpoints");
        let probes: Vec<(&str, i32, i64)> = close
            .iter()
            .flat_map(|&(t, p, o)| [(t, p, o), (t, p, o + 1)])
            .collect();
        let want: Vec<bool> = (0..probes.len()).map(|i| i % 2 == 1).collect();
        assert_eq!(admits(&state, &probes), want);
        // Any offsets, scattered partitions: at most 1 + 13 characters per
        // number (64 bits, 5 per character), and read back alike.
        let scattered: Vec<(&str, i32, i64)> = (0..200)
            .map(|i| {
                (
                    topic,
                    (i * 37 + (next() % 30) as i32) % 10_000,
                    (next() >> 1) as i64,
                )
            })
            .collect();
        let mut distinct = scattered.clone();
        distinct.sort_by_key(|e| e.1);
        distinct.dedup_by_key(|e| e.1);
        let state = seen_of(&distinct).checkpoint(i64::MAX);
        assert!(state.len() <= header + distinct.len() * 2 * 13);
        let probes: Vec<(&str, i32, i64)> = distinct
            .iter()
            .flat_map(|&(t, p, o)| [(t, p, o), (t, p, o.saturating_add(1))])
            .collect();
        let want: Vec<bool> = (0..probes.len()).map(|i| i % 2 == 1).collect();
        assert_eq!(admits(&state, &probes), want);
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
