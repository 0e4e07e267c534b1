//! `wafer backfill`: recomputes feature views from recorded events into the
//! offline log, with the view's plugin and the streaming path's engine
//! ([`crate::pipeline::Processor`]: same decoding, windows, late rule, flush
//! and plugin call), writing rows in the offline log's layout.
//!
//! **Files.** The input is read in file order as one partition, like the
//! `[file]` source: line (or row) numbers are the offsets, and the wall clock
//! is the reference of `max_future_ms`.
//!
//! **A Kafka topic.** Each partition is read on its own, as its own engine
//! partition, with a plain consumer (assigned, never committing), from a start
//! offset to the end offset it had when the backfill started; the record
//! timestamp is the reference of `max_future_ms`, as in the streaming path.
//! Without `from` the start is the partition's first offset; with it, the
//! first offset whose record timestamp is at or after `from − W_max − lead`
//! (`W_max` the longest window of the views, `lead` default `W_max`), so that
//! earlier events fill the windows at `from`. On a view's repartition topic,
//! copies of forwarded records are dropped by the streaming path's rule
//! ([`Dedup`]). A partition stops early once
//! every view's stream time has reached `to`: no later flush can give a row
//! before it. The exactness rule is in docs/operations.md (Backfill).
//!
//! The processor is flushed every `batch_size` events of a partition; the rows
//! are the streaming path's for the same partition order and flush points
//! (`batch_size` 1: after every event, as a host with `batch_size = 1` does).

use std::fs::File;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{Config, KafkaConfig};
use crate::offline::RollPolicy;
use crate::pipeline::{Outcome, PartitionKey, Record};
use crate::plugin::PluginEngine;
use crate::repartition::{Dedup, Origin};
use crate::view::View;
use crate::RunError;

/// Timeout of one metadata, watermark or offset-for-time request.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// A partition read that gets no record (nor its end) for this long fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Records are applied this many at a time (see [`Processor::process_batch`]).
///
/// [`Processor::process_batch`]: crate::pipeline::Processor::process_batch
const RUN: usize = 64;

/// Where the events come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// One JSON event per line.
    Jsonl(PathBuf),
    /// A Parquet file, one event per row: column names are event fields;
    /// integer, float, boolean, string (plain or dictionary) and timestamp
    /// columns (as epoch milliseconds) are read, nulls are left out.
    Parquet(PathBuf),
    /// A topic of the config's `[kafka]` cluster (brokers and properties).
    Kafka {
        topic: String,
        /// Record time read before `from − W_max` (default `W_max`), in ms.
        lead_ms: Option<i64>,
    },
}

impl Input {
    /// Parquet for a `.parquet` file, JSONL otherwise.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("parquet") => Self::Parquet(path.to_owned()),
            _ => Self::Jsonl(path.to_owned()),
        }
    }
}

/// What to backfill.
#[derive(Debug, Clone)]
pub struct Options {
    pub input: Input,
    /// Views to recompute (all of the config's when empty).
    pub views: Vec<String>,
    /// Root directory of the offline log written.
    pub out: PathBuf,
    /// Only rows with an as-of event time at or after this (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Only rows with an as-of event time before this.
    pub to_ms: Option<i64>,
    /// Events of a partition between two flushes; default `[pipeline] batch_size`.
    pub batch_size: Option<usize>,
}

/// What a backfill wrote, per view.
#[derive(Debug, Clone)]
pub struct ViewReport {
    pub view: String,
    /// Rows written to the offline log (tombstones included).
    pub rows: u64,
    /// Rows computed but outside `--from`/`--to`.
    pub skipped: u64,
    /// Events applied, late and malformed.
    pub applied: u64,
    pub late: u64,
    pub dead: u64,
    /// Entities the plugin failed on (logged).
    pub failures: u64,
}

/// The offsets read from one Kafka partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRead {
    pub partition: i32,
    /// First offset read (by `from`), and the offset after the last record read.
    pub start: i64,
    pub stop: i64,
    /// The partition's end offset when the backfill started.
    pub end: i64,
    /// Records read.
    pub records: u64,
}

/// What a backfill did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Events read.
    pub events: u64,
    /// Records of a repartition topic dropped as copies of records read
    /// before them (forwarded again after a crash or a rebalance).
    pub copies: u64,
    pub views: Vec<ViewReport>,
    /// Per partition, for a Kafka input.
    pub partitions: Vec<PartitionRead>,
}

/// Recomputes the views of `config` selected by `options` from its input.
pub fn run(config: &Config, options: &Options) -> Result<Report, RunError> {
    config.validate()?;
    let specs: Vec<_> = config.view_specs();
    let cache_dir = specs[0]
        .plugin
        .cache_dir
        .clone()
        .or_else(crate::config::default_cache_dir);
    let engine =
        PluginEngine::with_cache(cache_dir).map_err(|e| RunError::Engine(format!("{e:#}")))?;
    let engine = Arc::new(engine);
    let ready = Arc::new(tokio::sync::Notify::new());
    let mut views = Vec::new();
    for spec in &specs {
        let view = View::build(spec, &config.pipeline, &engine, ready.clone())?;
        if options.views.is_empty() || options.views.contains(&view.name) {
            views.push(view);
        }
    }
    if let Some(missing) = options
        .views
        .iter()
        .find(|n| !views.iter().any(|v| &v.name == *n))
    {
        let names: Vec<&str> = specs.iter().filter_map(|s| s.name.as_deref()).collect();
        return Err(RunError::Config(crate::config::ConfigError::Invalid(format!(
            "no view named `{missing}` in the config (views: {names:?}; a [plugin] config's view is named after its plugin)"
        ))));
    }
    if let Input::Kafka { topic, .. } = &options.input {
        // A view keyed by another field than the input topics' key needs its
        // events by its own key: its repartition topic holds them so.
        for spec in &specs {
            if let (Some(name), Some(r)) = (&spec.name, &spec.repartition) {
                if r.topic != *topic && views.iter().any(|v| &v.name == name) {
                    return Err(RunError::Config(crate::config::ConfigError::Invalid(format!(
                        "view `{name}` reads the repartition topic `{t}`: backfill it from there (--topic {t} --view {name})",
                        t = r.topic
                    ))));
                }
            }
        }
    }
    let roll = config
        .offline
        .as_ref()
        .map_or(RollPolicy::default(), |o| o.roll_policy());
    for view in &mut views {
        view.open_offline(&options.out, roll, false)?;
    }
    let batch_size = options
        .batch_size
        .unwrap_or(config.pipeline.batch_size)
        .max(1);
    let reports = views
        .iter()
        .map(|v| ViewReport {
            view: v.name.clone(),
            rows: 0,
            skipped: 0,
            applied: 0,
            late: 0,
            dead: 0,
            failures: 0,
        })
        .collect();
    // A repartition topic may hold copies of forwarded records: the
    // streaming path's rule drops them.
    let dedup = match &options.input {
        Input::Kafka { topic, .. } => specs
            .iter()
            .any(|s| s.repartition.as_ref().is_some_and(|r| r.topic == *topic))
            .then(Dedup::one_pass),
        _ => None,
    };
    let mut backfill = Backfill {
        views,
        reports,
        options,
        batch_size,
        events: 0,
        in_batch: 0,
        pending: Pending::default(),
        dedup,
        copies: 0,
    };
    let mut partitions = Vec::new();
    let file_partition: PartitionKey = (0, 0);
    let now = || chrono::Utc::now().timestamp_millis();
    match &options.input {
        Input::Jsonl(path) => {
            read_jsonl(path, |o, p| {
                backfill
                    .apply(file_partition, o, now(), Some(p))
                    .map(|_| ())
            })?;
            backfill.flush(file_partition)?;
        }
        Input::Parquet(path) => {
            read_parquet(path, |o, p| {
                backfill
                    .apply(file_partition, o, now(), Some(p))
                    .map(|_| ())
            })?;
            backfill.flush(file_partition)?;
        }
        Input::Kafka { topic, lead_ms } => {
            let kafka = config.kafka.as_ref().ok_or_else(|| {
                RunError::Config(crate::config::ConfigError::Invalid(
                    "backfill from a topic needs the config's [kafka] section (brokers, properties)"
                        .into(),
                ))
            })?;
            partitions = read_kafka(kafka, topic, *lead_ms, &mut backfill)?;
        }
    }
    for view in &mut backfill.views {
        view.close_offline()?;
    }
    Ok(Report {
        events: backfill.events,
        copies: backfill.copies,
        views: backfill.reports,
        partitions,
    })
}

/// The views being recomputed and what they did.
struct Backfill<'a> {
    views: Vec<View>,
    reports: Vec<ViewReport>,
    options: &'a Options,
    batch_size: usize,
    events: u64,
    /// Set when reading a repartition topic.
    dedup: Option<Dedup>,
    copies: u64,
    /// Events of the current partition since its last flush.
    in_batch: usize,
    /// Records taken but not applied yet (applied as one run).
    pending: Pending,
}

/// Records of one partition waiting to be applied as a run, with copies of
/// their payloads (the readers lend each payload only for its call).
#[derive(Default)]
struct Pending {
    partition: PartitionKey,
    /// (offset, reference time, payload's range in `bytes`, if any) per record.
    records: Vec<(i64, i64, Option<std::ops::Range<usize>>)>,
    bytes: Vec<u8>,
    /// Outcomes of the last run applied to a view (kept to avoid allocations).
    outcomes: Vec<Outcome>,
}

impl Backfill<'_> {
    /// Takes one record for every view; flushes `partition` every `batch_size`
    /// records. Records are applied in runs of up to [`RUN`] (as the sources
    /// apply them): exactly as one by one, and always before a flush. True
    /// when it flushed.
    fn apply(
        &mut self,
        partition: PartitionKey,
        offset: i64,
        reference_ms: i64,
        payload: Option<&[u8]>,
    ) -> Result<bool, RunError> {
        if self.pending.partition != partition {
            self.apply_pending();
            self.pending.partition = partition;
        }
        let range = payload.map(|p| {
            let start = self.pending.bytes.len();
            self.pending.bytes.extend_from_slice(p);
            start..self.pending.bytes.len()
        });
        self.pending.records.push((offset, reference_ms, range));
        if self.pending.records.len() >= RUN {
            self.apply_pending();
        }
        self.events += 1;
        self.in_batch += 1;
        if self.in_batch < self.batch_size {
            return Ok(false);
        }
        self.flush(partition)?;
        Ok(true)
    }

    /// Applies the records taken so far to every view.
    fn apply_pending(&mut self) {
        let pending = &mut self.pending;
        if pending.records.is_empty() {
            return;
        }
        let records: Vec<Record<'_>> = pending
            .records
            .iter()
            .map(|(offset, reference_ms, range)| Record {
                offset: *offset,
                reference_ms: *reference_ms,
                payload: range.clone().map(|r| &pending.bytes[r]),
            })
            .collect();
        for (view, report) in self.views.iter_mut().zip(self.reports.iter_mut()) {
            view.processor
                .process_batch(pending.partition, &records, &mut pending.outcomes);
            for outcome in &pending.outcomes {
                match outcome {
                    Outcome::Applied => report.applied += 1,
                    Outcome::Late(_) => report.late += 1,
                    Outcome::Dead(_) => report.dead += 1,
                }
            }
        }
        pending.records.clear();
        pending.bytes.clear();
    }

    /// Writes `partition`'s changed entities (as of its stream time) in the
    /// `--from`/`--to` range.
    fn flush(&mut self, partition: PartitionKey) -> Result<(), RunError> {
        self.apply_pending();
        self.in_batch = 0;
        let (from, to) = (self.options.from_ms, self.options.to_ms);
        let in_range = |t: i64| from.is_none_or(|from| t >= from) && to.is_none_or(|to| t < to);
        for (view, report) in self.views.iter_mut().zip(self.reports.iter_mut()) {
            let flush = view.processor.flush(partition);
            for f in &flush.failures {
                report.failures += 1;
                tracing::warn!(view = %view.name, entity = %f.entity, offset = f.offset,
                    kind = f.error.kind(), error = %f.error, "plugin failed for an entity");
            }
            let (keep, skip): (Vec<_>, Vec<_>) =
                flush.updates.iter().partition(|u| in_range(u.as_of_ms));
            report.skipped += skip.len() as u64;
            report.rows += view.write_offline(keep)? as u64;
        }
        Ok(())
    }

    /// True when every view's stream time on `partition` is at or after `to`:
    /// every later flush is as of `to` or later.
    fn past(&self, partition: PartitionKey, to: i64) -> bool {
        self.views
            .iter()
            .all(|v| v.processor.stream_time(partition).is_some_and(|t| t >= to))
    }
}

/// Reads every partition of `topic` in turn (see the module documentation).
fn read_kafka(
    cfg: &KafkaConfig,
    topic: &str,
    lead_ms: Option<i64>,
    backfill: &mut Backfill<'_>,
) -> Result<Vec<PartitionRead>, RunError> {
    let kafka_err = |what: &str, e: KafkaError| RunError::Kafka(format!("{what} {topic}: {e}"));
    let consumer: BaseConsumer = crate::kafka_client::replay_consumer(cfg)
        .create()
        .map_err(|e| kafka_err("cannot create a consumer for", e))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
        .map_err(|e| kafka_err("cannot read the metadata of", e))?;
    let mut ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Err(RunError::Kafka(format!(
            "topic {topic} not found on {} (check --topic and [kafka] brokers)",
            cfg.brokers
        )));
    }
    // End offsets first: records produced during the backfill are not read.
    let mut ranges = Vec::with_capacity(ids.len());
    for &p in &ids {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, KAFKA_TIMEOUT)
            .map_err(|e| kafka_err("cannot read the offsets of", e))?;
        ranges.push((p, low, high));
    }
    let starts: Vec<i64> = match backfill.options.from_ms {
        None => ranges.iter().map(|r| r.1).collect(),
        Some(from) => {
            let w_max = backfill
                .views
                .iter()
                .map(|v| v.processor.max_window_ms())
                .max()
                .unwrap_or(0);
            let target = from - w_max - lead_ms.unwrap_or(w_max);
            let mut tpl = TopicPartitionList::new();
            for &(p, _, _) in &ranges {
                tpl.add_partition_offset(topic, p, Offset::Offset(target))
                    .map_err(|e| kafka_err("bad partition of", e))?;
            }
            let found = consumer
                .offsets_for_times(tpl, KAFKA_TIMEOUT)
                .map_err(|e| kafka_err("cannot look up offsets by time in", e))?;
            ranges
                .iter()
                .map(|&(p, low, high)| {
                    match found.find_partition(topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o.clamp(low, high),
                        // No record at or after the time.
                        Some(Offset::End) => high,
                        _ => low,
                    }
                })
                .collect()
        }
    };
    let topic_index = cfg.topics.iter().position(|t| t == topic).unwrap_or(0) as u32;
    let mut reads = Vec::with_capacity(ranges.len());
    for (&(p, _, end), &start) in ranges.iter().zip(&starts) {
        reads.push(read_partition(
            &consumer,
            topic,
            (topic_index, p),
            start,
            end,
            backfill,
        )?);
    }
    Ok(reads)
}

/// Reads `[start, end)` of one partition into the views (stopping early once
/// past `to`), flushes, and releases the partition's window state.
fn read_partition(
    consumer: &BaseConsumer,
    topic: &str,
    key: PartitionKey,
    start: i64,
    end: i64,
    backfill: &mut Backfill<'_>,
) -> Result<PartitionRead, RunError> {
    let kafka_err = |e: KafkaError| RunError::Kafka(format!("reading {topic}/{}: {e}", key.1));
    let mut read = PartitionRead {
        partition: key.1,
        start,
        stop: start,
        end,
        records: 0,
    };
    let to = backfill.options.to_ms;
    if start < end {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, key.1, Offset::Offset(start))
            .map_err(kafka_err)?;
        consumer.assign(&tpl).map_err(kafka_err)?;
        let mut last_progress = Instant::now();
        while read.stop < end {
            let m = match consumer.poll(Duration::from_millis(500)) {
                None if last_progress.elapsed() > STALL_TIMEOUT => {
                    return Err(RunError::Kafka(format!(
                        "reading {topic}/{} stalled at offset {} (end {end}); is the broker up?",
                        key.1, read.stop
                    )))
                }
                None => continue,
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(m) => m.map_err(kafka_err)?,
            };
            last_progress = Instant::now();
            if m.offset() >= end {
                break;
            }
            let reference_ms = m
                .timestamp()
                .to_millis()
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            read.stop = m.offset() + 1;
            read.records += 1;
            if let (Some(dedup), Some(origin)) = (&mut backfill.dedup, Origin::of(&m)) {
                if !dedup.admit(key, m.offset(), &origin) {
                    backfill.copies += 1;
                    continue;
                }
            }
            let flushed = backfill.apply(key, m.offset(), reference_ms, m.payload())?;
            if flushed && to.is_some_and(|to| backfill.past(key, to)) {
                break;
            }
        }
        consumer.unassign().map_err(kafka_err)?;
    }
    backfill.flush(key)?;
    for view in &mut backfill.views {
        view.processor.release(key);
    }
    Ok(read)
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> RunError {
    RunError::Source(format!("reading {}: {e}", path.display()))
}

/// Calls `f(line number, line)` for every non-blank line.
fn read_jsonl(
    path: &Path,
    mut f: impl FnMut(i64, &[u8]) -> Result<(), RunError>,
) -> Result<(), RunError> {
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| read_error(path, e))?;
        if !line.trim().is_empty() {
            f(n as i64, line.as_bytes())?;
        }
    }
    Ok(())
}

/// Calls `f(row number, row as a JSON object)` for every row.
fn read_parquet(
    path: &Path,
    mut f: impl FnMut(i64, &[u8]) -> Result<(), RunError>,
) -> Result<(), RunError> {
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| read_error(path, e))?;
    let mut row = 0i64;
    for batch in reader {
        let batch = batch.map_err(|e| read_error(path, e))?;
        for object in rows_as_json(&batch).map_err(|e| read_error(path, e))? {
            f(row, object.as_bytes())?;
            row += 1;
        }
    }
    Ok(())
}

/// Each row of `batch` as a JSON object text.
fn rows_as_json(batch: &RecordBatch) -> Result<Vec<String>, String> {
    let schema = batch.schema();
    let columns: Vec<(&str, Vec<serde_json::Value>)> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, array)| {
            json_values(array.as_ref())
                .map(|v| (field.name().as_str(), v))
                .map_err(|t| format!("column `{}` has unsupported type {t}", field.name()))
        })
        .collect::<Result<_, _>>()?;
    Ok((0..batch.num_rows())
        .map(|r| {
            let object: serde_json::Map<String, serde_json::Value> = columns
                .iter()
                .filter(|(_, v)| !v[r].is_null())
                .map(|(name, v)| ((*name).to_owned(), v[r].clone()))
                .collect();
            serde_json::Value::Object(object).to_string()
        })
        .collect())
}

/// The values of `array` as JSON (null for nulls); the unsupported type otherwise.
fn json_values(array: &dyn Array) -> Result<Vec<serde_json::Value>, DataType> {
    use serde_json::Value as J;
    fn each<T>(a: &dyn Array, get: impl Fn(usize) -> T, conv: impl Fn(T) -> J) -> Vec<J> {
        (0..a.len())
            .map(|i| if a.is_null(i) { J::Null } else { conv(get(i)) })
            .collect()
    }
    let float = |x: f64| serde_json::Number::from_f64(x).map_or(J::Null, J::Number);
    Ok(match array.data_type() {
        DataType::Int8 => each(
            array,
            |i| array.as_primitive::<Int8Type>().value(i),
            J::from,
        ),
        DataType::Int16 => each(
            array,
            |i| array.as_primitive::<Int16Type>().value(i),
            J::from,
        ),
        DataType::Int32 => each(
            array,
            |i| array.as_primitive::<Int32Type>().value(i),
            J::from,
        ),
        DataType::Int64 => each(
            array,
            |i| array.as_primitive::<Int64Type>().value(i),
            J::from,
        ),
        DataType::UInt8 => each(
            array,
            |i| array.as_primitive::<UInt8Type>().value(i),
            J::from,
        ),
        DataType::UInt16 => each(
            array,
            |i| array.as_primitive::<UInt16Type>().value(i),
            J::from,
        ),
        DataType::UInt32 => each(
            array,
            |i| array.as_primitive::<UInt32Type>().value(i),
            J::from,
        ),
        DataType::UInt64 => each(
            array,
            |i| array.as_primitive::<UInt64Type>().value(i),
            J::from,
        ),
        DataType::Float32 => each(
            array,
            |i| array.as_primitive::<Float32Type>().value(i),
            |x| float(f64::from(x)),
        ),
        DataType::Float64 => each(
            array,
            |i| array.as_primitive::<Float64Type>().value(i),
            float,
        ),
        DataType::Boolean => each(array, |i| array.as_boolean().value(i), J::from),
        DataType::Utf8 => each(array, |i| array.as_string::<i32>().value(i), J::from),
        DataType::LargeUtf8 => each(array, |i| array.as_string::<i64>().value(i), J::from),
        DataType::Utf8View => each(array, |i| array.as_string_view().value(i), J::from),
        DataType::Timestamp(unit, _) => {
            let ms = |i: usize| match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(i)
                    .saturating_mul(1000),
                TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(i),
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(i) / 1000
                }
                TimeUnit::Nanosecond => {
                    array.as_primitive::<TimestampNanosecondType>().value(i) / 1_000_000
                }
            };
            each(array, ms, J::from)
        }
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            let values = json_values(dict.values().as_ref())?;
            let keys = dict.normalized_keys();
            (0..array.len())
                .map(|i| {
                    if array.is_null(i) {
                        J::Null
                    } else {
                        values[keys[i]].clone()
                    }
                })
                .collect()
        }
        other => return Err(other.clone()),
    })
}

/// Reads `--from`/`--to`: ISO-8601 (no offset = UTC) or epoch milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    crate::event::parse_timestamp(s)
        .map_err(|_| format!("`{s}` is not an ISO-8601 date-time or epoch milliseconds"))
}
