//! `wafer backfill`: recomputes feature views from recorded events into the
//! offline log, with the view's plugin and the streaming path's engine
//! ([`crate::pipeline::Processor`]: same decoding, windows, late rule, flush
//! and plugin call), writing rows in the offline log's layout.
//!
//! The input is read in file order as one partition, like the `[file]`
//! source: line (or row) numbers are the offsets, and the wall clock is the
//! reference of `max_future_ms`. The processor is flushed every `batch_size`
//! events; the rows are the streaming path's for the same partition order and
//! flush points (`--batch-size 1`: after every event, as a host with
//! `batch_size = 1` on a one-partition topic does).

use std::fs::File;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::config::Config;
use crate::offline::RollPolicy;
use crate::pipeline::{Outcome, PartitionKey};
use crate::plugin::PluginEngine;
use crate::view::View;
use crate::RunError;

/// Where the events come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// One JSON event per line.
    Jsonl(PathBuf),
    /// A Parquet file, one event per row: column names are event fields;
    /// integer, float, boolean, string (plain or dictionary) and timestamp
    /// columns (as epoch milliseconds) are read, nulls are left out.
    Parquet(PathBuf),
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
    /// Events between two flushes; default `[pipeline] batch_size`.
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

/// What a backfill did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Events read.
    pub events: u64,
    pub views: Vec<ViewReport>,
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
    let mut reports: Vec<ViewReport> = views
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
    let partition: PartitionKey = (0, 0);
    let mut events = 0u64;
    let mut in_batch = 0usize;
    let mut apply = |offset: i64, payload: &[u8], views: &mut [View]| -> Result<(), RunError> {
        let now = chrono::Utc::now().timestamp_millis();
        for (view, report) in views.iter_mut().zip(reports.iter_mut()) {
            match view
                .processor
                .process(partition, offset, now, Some(payload))
            {
                Outcome::Applied => report.applied += 1,
                Outcome::Late(_) => report.late += 1,
                Outcome::Dead(_) => report.dead += 1,
            }
        }
        events += 1;
        in_batch += 1;
        if in_batch >= batch_size {
            in_batch = 0;
            flush(views, &mut reports, options)?;
        }
        Ok(())
    };
    match &options.input {
        Input::Jsonl(path) => read_jsonl(path, |o, p| apply(o, p, &mut views))?,
        Input::Parquet(path) => read_parquet(path, |o, p| apply(o, p, &mut views))?,
    }
    flush(&mut views, &mut reports, options)?;
    for view in &mut views {
        view.close_offline()?;
    }
    Ok(Report {
        events,
        views: reports,
    })
}

fn flush(
    views: &mut [View],
    reports: &mut [ViewReport],
    options: &Options,
) -> Result<(), RunError> {
    let in_range = |t: i64| {
        options.from_ms.is_none_or(|from| t >= from) && options.to_ms.is_none_or(|to| t < to)
    };
    for (view, report) in views.iter_mut().zip(reports.iter_mut()) {
        for partition in view.processor.partitions() {
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
    }
    Ok(())
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
