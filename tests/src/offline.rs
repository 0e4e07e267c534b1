//! Reading the offline log's Parquet files (with the parquet crate's reader,
//! none of the host's code) and the reference features of a user-activity
//! user at any point of a partition's history.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
};
use arrow_array::Array;
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::reference::{GenEvent, WINDOW_MS};

/// One offline row of the user-activity view.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineRow {
    /// The Parquet file, relative to the log's root.
    pub file: String,
    pub user: String,
    pub as_of_ms: i64,
    pub count: Option<i64>,
    pub unique: Option<i64>,
    pub avg: Option<f64>,
    pub last_action: Option<String>,
    pub tombstone: bool,
    pub plugin: String,
    pub written_at_us: i64,
}

impl OfflineRow {
    /// Everything but where and when it was written, for comparing runs.
    pub fn content(&self) -> String {
        format!(
            "{} {} {:?} {:?} {:?} {:?} {} {}",
            self.user,
            self.as_of_ms,
            self.count,
            self.unique,
            self.avg.map(f64::to_bits),
            self.last_action,
            self.tombstone,
            self.plugin
        )
    }
}

/// Every file under `dir`, relative to it, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Every row of the user-activity view's Parquet files under `dir`, checking
/// the column types and that each file sits in its rows' as-of hour.
pub fn read_user_activity(dir: &Path) -> Vec<OfflineRow> {
    let mut out = Vec::new();
    for name in files(dir).into_iter().filter(|f| f.ends_with(".parquet")) {
        let file = std::fs::File::open(dir.join(&name)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let schema = batch.schema();
            let types: Vec<(&str, &DataType)> = schema
                .fields()
                .iter()
                .map(|f| (f.name().as_str(), f.data_type()))
                .collect();
            let utc = Some("UTC".into());
            assert_eq!(
                types,
                [
                    ("user_id", &DataType::Utf8),
                    (
                        "as_of",
                        &DataType::Timestamp(TimeUnit::Millisecond, utc.clone())
                    ),
                    ("event_count_1h", &DataType::Int64),
                    ("unique_actions_1h", &DataType::Int64),
                    ("avg_value_1h", &DataType::Float64),
                    ("last_action", &DataType::Utf8),
                    ("tombstone", &DataType::Boolean),
                    ("plugin", &DataType::Utf8),
                    (
                        "written_at",
                        &DataType::Timestamp(TimeUnit::Microsecond, utc)
                    ),
                ],
                "{name}"
            );
            let c = |i: usize| batch.column(i).clone();
            let (user, as_of, count, unique, avg, last, tomb, plugin, written) =
                (c(0), c(1), c(2), c(3), c(4), c(5), c(6), c(7), c(8));
            for r in 0..batch.num_rows() {
                let some = |a: &std::sync::Arc<dyn Array>| !a.is_null(r);
                let row = OfflineRow {
                    file: name.clone(),
                    user: user.as_string::<i32>().value(r).to_owned(),
                    as_of_ms: as_of.as_primitive::<TimestampMillisecondType>().value(r),
                    count: some(&count).then(|| count.as_primitive::<Int64Type>().value(r)),
                    unique: some(&unique).then(|| unique.as_primitive::<Int64Type>().value(r)),
                    avg: some(&avg).then(|| avg.as_primitive::<Float64Type>().value(r)),
                    last_action: some(&last).then(|| last.as_string::<i32>().value(r).to_owned()),
                    tombstone: tomb.as_boolean().value(r),
                    plugin: plugin.as_string::<i32>().value(r).to_owned(),
                    written_at_us: written.as_primitive::<TimestampMicrosecondType>().value(r),
                };
                let hour = chrono::DateTime::from_timestamp_millis(row.as_of_ms)
                    .unwrap()
                    .format("date=%Y-%m-%d/hour=%H/")
                    .to_string();
                assert!(name.contains(&hour), "{name} holds a row as of {hour}");
                out.push(row);
            }
        }
    }
    out
}

/// The latest row of each user: largest as-of time, then largest `written_at`.
pub fn latest(rows: &[OfflineRow]) -> BTreeMap<String, OfflineRow> {
    let mut out: BTreeMap<String, OfflineRow> = BTreeMap::new();
    for r in rows {
        let newer = out
            .get(&r.user)
            .is_none_or(|o| (r.as_of_ms, r.written_at_us) > (o.as_of_ms, o.written_at_us));
        if newer {
            out.insert(r.user.clone(), r.clone());
        }
    }
    out
}

/// One partition's history as the reference sees it: per arrival, its stream
/// time after the event and whether the event was applied.
pub struct History<'a> {
    events: Vec<&'a GenEvent>,
    applied: Vec<bool>,
    /// Stream time after each arrival (None before the first well-formed event).
    stream_time: Vec<Option<i64>>,
}

impl<'a> History<'a> {
    /// The history of `partition` in `events` (arrival order).
    pub fn new(events: &'a [GenEvent], partition: i32) -> Self {
        let events: Vec<&GenEvent> = events.iter().filter(|e| e.partition == partition).collect();
        let mut applied = Vec::with_capacity(events.len());
        let mut stream_time = Vec::with_capacity(events.len());
        let mut t: Option<i64> = None;
        for e in &events {
            let ok = e.malformed.is_none() && t.is_none_or(|t| e.time_ms > t - WINDOW_MS);
            if ok {
                t = Some(t.map_or(e.time_ms, |t| t.max(e.time_ms)));
            }
            applied.push(ok);
            stream_time.push(t);
        }
        Self {
            events,
            applied,
            stream_time,
        }
    }

    /// The user-activity features of `user` after the first `k` arrivals, as
    /// (count, unique, avg, last action); None when its window is empty.
    pub fn features_after(&self, k: usize, user: &str) -> Option<(i64, i64, f64, String)> {
        let t = self.stream_time[k - 1]?;
        let window: Vec<(usize, &GenEvent)> = (0..k)
            .filter(|i| self.applied[*i])
            .map(|i| (i, self.events[i]))
            .filter(|(_, e)| e.user == user && e.time_ms > t - WINDOW_MS)
            .collect();
        if window.is_empty() {
            return None;
        }
        let count = window.len() as i64;
        let unique = window
            .iter()
            .map(|(_, e)| e.action.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len() as i64;
        let avg = window.iter().map(|(_, e)| e.value).sum::<f64>() / count as f64;
        let last = window
            .iter()
            .max_by_key(|(i, e)| (e.time_ms, *i))
            .map(|(_, e)| e.action.clone())
            .expect("non-empty");
        Some((count, unique, avg, last))
    }

    /// True when `row` equals the reference after some prefix of the history
    /// whose stream time is the row's as-of time (a flush happened there).
    pub fn explains(&self, row: &OfflineRow) -> bool {
        (1..=self.events.len())
            .filter(|k| self.stream_time[k - 1] == Some(row.as_of_ms))
            .any(|k| {
                let ever = (0..k).any(|i| self.applied[i] && self.events[i].user == row.user);
                match (self.features_after(k, &row.user), row.tombstone) {
                    (None, true) => ever,
                    (Some((count, unique, avg, last)), false) => {
                        row.count == Some(count)
                            && row.unique == Some(unique)
                            && row
                                .avg
                                .is_some_and(|a| (a - avg).abs() <= 1e-9 * avg.abs().max(1.0))
                            && row.last_action.as_deref() == Some(last.as_str())
                    }
                    _ => false,
                }
            })
    }
}
