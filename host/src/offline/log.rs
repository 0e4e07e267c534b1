//! One view's offline log: staging files (Arrow IPC streams) rolled into
//! Parquet files, and the recovery of staging files a crash left behind.
//!
//! Layout under the view's directory `<dir>/view=<view>/`:
//!
//! - `date=YYYY-MM-DD/hour=HH/part-<id>.parquet`: finished files, hour of the
//!   rows' as-of event time (UTC);
//! - `date=YYYY-MM-DD/hour=HH/_part-<id>.arrows`: the staging file the
//!   finished file `part-<id>.parquet` will be made from (ignored by readers:
//!   not `.parquet`, and pyarrow skips names starting with `_`);
//! - `.part-<id>.parquet.tmp`: a Parquet file being written, renamed when
//!   complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use crate::pipeline::{FeatureUpdate, FeatureValue};
use crate::plugin::{FeatureSpec, ValueType};

/// Event time (ms since the epoch, UTC) of a row, as a column name.
pub const AS_OF: &str = "as_of";
/// True for a tombstone row (the entity's windows became empty; features null).
pub const TOMBSTONE: &str = "tombstone";
/// `name@version#sha256` of the plugin that computed the row.
pub const PLUGIN: &str = "plugin";
/// Wall-clock time the row was appended (µs, UTC), strictly increasing per
/// process: the tie-break between rows of one entity with the same as-of time.
pub const WRITTEN_AT: &str = "written_at";

const RESERVED: [&str; 4] = [AS_OF, TOMBSTONE, PLUGIN, WRITTEN_AT];
const HOUR_MS: i64 = 3_600_000;
/// Staging files open at once per view (hours written to); beyond it the
/// least recently written is rolled.
const MAX_OPEN: usize = 48;

/// An offline log operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("offline log: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("offline log: {what} {path}: {source}")]
    Arrow {
        what: &'static str,
        path: PathBuf,
        source: ArrowError,
    },
    #[error("offline log: {what} {path}: {source}")]
    Parquet {
        what: &'static str,
        path: PathBuf,
        source: ParquetError,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OfflineError {
    let path = path.to_owned();
    move |source| OfflineError::Io { what, path, source }
}

fn arrow(what: &'static str, path: &Path) -> impl FnOnce(ArrowError) -> OfflineError {
    let path = path.to_owned();
    move |source| OfflineError::Arrow { what, path, source }
}

fn parquet(what: &'static str, path: &Path) -> impl FnOnce(ParquetError) -> OfflineError {
    let path = path.to_owned();
    move |source| OfflineError::Parquet { what, path, source }
}

/// When staging files are rolled into Parquet files (besides shutdown).
#[derive(Debug, Clone, Copy)]
pub struct RollPolicy {
    /// Age of a staging file (wall clock since its first row).
    pub interval: Duration,
    /// Size of a staging file.
    pub bytes: u64,
}

impl Default for RollPolicy {
    /// The `[offline]` defaults: 10 minutes, 256 MiB.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            bytes: 256 << 20,
        }
    }
}

/// What the recovery of leftover staging files found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Staging files turned into Parquet files.
    pub recovered: usize,
    /// Rows they held.
    pub rows: u64,
    /// Staging files whose last write was incomplete (a flush that was not
    /// committed, so its rows are written again after the restart).
    pub truncated: usize,
}

/// An open staging file: the rows of one hour, appended flush by flush.
struct Staging {
    id: String,
    dir: PathBuf,
    path: PathBuf,
    schema: SchemaRef,
    writer: StreamWriter<BufWriter<File>>,
    opened: Instant,
    /// Length of the file after its last complete append.
    bytes: u64,
    /// Sequence of the last append, for rolling the least recently written.
    last_append: u64,
}

/// The offline log of one view.
pub struct OfflineLog {
    root: PathBuf,
    view: String,
    entity_key: String,
    roll: RollPolicy,
    durable: bool,
    open: BTreeMap<i64, Staging>,
    instance: String,
    files: u64,
    appends: u64,
    written_at_us: i64,
}

impl OfflineLog {
    /// The log of `view` under `dir` (rows keyed by `entity_key`). Staging
    /// files a previous process left under the view's directory are turned
    /// into Parquet files first. With `durable`, every append is fsync'd
    /// before it returns (the streaming path); without, data is synced only
    /// when a file is rolled (backfill).
    pub fn open(
        dir: &Path,
        view: &str,
        entity_key: &str,
        roll: RollPolicy,
        durable: bool,
    ) -> Result<(Self, Recovery), OfflineError> {
        let root = dir.join(format!("view={}", path_value(view)));
        create_dirs(&root)?;
        let recovery = recover(&root)?;
        let now = chrono::Utc::now().timestamp_millis();
        Ok((
            Self {
                root,
                view: view.to_owned(),
                entity_key: entity_key.to_owned(),
                roll,
                durable,
                open: BTreeMap::new(),
                instance: format!("{now}-{}", std::process::id()),
                files: 0,
                appends: 0,
                written_at_us: 0,
            },
            recovery,
        ))
    }

    /// The view's directory, `<dir>/view=<view>`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Appends one row per update (a tombstone row for a tombstone) to the
    /// staging file of its as-of hour, syncs them if durable, then rolls the
    /// staging files that are due. `specs` and `plugin` are the view's current
    /// plugin's, used for tombstones (which carry no values). Returns the
    /// number of rows appended.
    ///
    /// On error, the staging files written to are closed at their last
    /// complete append (and rolled when possible), so a retry starts clean;
    /// rows appended before the error may then be appended twice.
    pub fn append<'a>(
        &mut self,
        updates: impl IntoIterator<Item = &'a FeatureUpdate>,
        specs: &[FeatureSpec],
        plugin: &str,
    ) -> Result<usize, OfflineError> {
        let mut by_hour: BTreeMap<i64, Vec<&FeatureUpdate>> = BTreeMap::new();
        for u in updates {
            by_hour
                .entry(u.as_of_ms.div_euclid(HOUR_MS))
                .or_default()
                .push(u);
        }
        let mut rows = 0;
        if !by_hour.is_empty() {
            self.appends += 1;
            let written_at = self.next_written_at();
            let schema = Arc::new(schema(&self.view, &self.entity_key, specs));
            let mut touched = Vec::with_capacity(by_hour.len());
            for (hour, updates) in &by_hour {
                let batch = build_batch(&schema, specs, updates, plugin, written_at)
                    .map_err(arrow("building a batch for", &self.root))?;
                if let Err(e) = self.write(*hour, &schema, &batch) {
                    self.abandon(*hour);
                    return Err(e);
                }
                touched.push(*hour);
                rows += updates.len();
            }
            if self.durable {
                for hour in touched {
                    if let Err(e) = self.sync(hour) {
                        self.abandon(hour);
                        return Err(e);
                    }
                }
            }
        }
        self.roll_due()?;
        Ok(rows)
    }

    /// Rolls every staging file into its Parquet file (shutdown).
    pub fn close(&mut self) -> Result<(), OfflineError> {
        let hours: Vec<i64> = self.open.keys().copied().collect();
        for hour in hours {
            self.roll_hour(hour)?;
        }
        Ok(())
    }

    fn next_written_at(&mut self) -> i64 {
        let now = chrono::Utc::now().timestamp_micros();
        self.written_at_us = now.max(self.written_at_us + 1);
        self.written_at_us
    }

    fn write(
        &mut self,
        hour: i64,
        schema: &SchemaRef,
        batch: &RecordBatch,
    ) -> Result<(), OfflineError> {
        if self.open.get(&hour).is_some_and(|s| s.schema != *schema) {
            // A new plugin version with other features: a new file.
            self.roll_hour(hour)?;
        }
        if !self.open.contains_key(&hour) {
            let staging = self.create(hour, schema)?;
            self.open.insert(hour, staging);
        }
        let appends = self.appends;
        let staging = self.open.get_mut(&hour).expect("inserted above");
        staging
            .writer
            .write(batch)
            .and_then(|()| staging.writer.flush())
            .map_err(arrow("appending to", &staging.path))?;
        staging.last_append = appends;
        Ok(())
    }

    fn sync(&mut self, hour: i64) -> Result<(), OfflineError> {
        let staging = self.open.get_mut(&hour).expect("written before syncing");
        let file = staging.writer.get_ref().get_ref();
        file.sync_data().map_err(io("syncing", &staging.path))?;
        staging.bytes = file
            .metadata()
            .map_err(io("reading the size of", &staging.path))?
            .len();
        Ok(())
    }

    fn create(&mut self, hour: i64, schema: &SchemaRef) -> Result<Staging, OfflineError> {
        let dir = self.root.join(hour_dir(hour));
        create_dirs(&dir)?;
        self.files += 1;
        let id = format!("{}-{:06}", self.instance, self.files);
        let path = dir.join(format!("_part-{id}.arrows"));
        let file = File::create_new(&path).map_err(io("creating", &path))?;
        let mut writer = StreamWriter::try_new(BufWriter::new(file), schema)
            .map_err(arrow("writing the schema of", &path))?;
        writer
            .flush()
            .map_err(arrow("writing the schema of", &path))?;
        if self.durable {
            sync_dir(&dir)?;
        }
        let bytes = writer
            .get_ref()
            .get_ref()
            .metadata()
            .map_err(io("reading the size of", &path))?
            .len();
        Ok(Staging {
            id,
            dir,
            path,
            schema: schema.clone(),
            writer,
            opened: Instant::now(),
            bytes,
            last_append: self.appends,
        })
    }

    /// Rolls the staging files older than the interval or larger than the
    /// size limit, and the least recently written beyond [`MAX_OPEN`].
    fn roll_due(&mut self) -> Result<(), OfflineError> {
        let mut due: Vec<i64> = self
            .open
            .iter()
            .filter(|(_, s)| s.opened.elapsed() >= self.roll.interval || s.bytes >= self.roll.bytes)
            .map(|(h, _)| *h)
            .collect();
        if self.open.len() - due.len() > MAX_OPEN {
            let mut rest: Vec<(u64, i64)> = self
                .open
                .iter()
                .filter(|(h, _)| !due.contains(h))
                .map(|(h, s)| (s.last_append, *h))
                .collect();
            rest.sort_unstable();
            let excess = rest.len() - MAX_OPEN;
            due.extend(rest.into_iter().take(excess).map(|(_, h)| h));
        }
        for hour in due {
            self.roll_hour(hour)?;
        }
        Ok(())
    }

    fn roll_hour(&mut self, hour: i64) -> Result<(), OfflineError> {
        let Some(mut staging) = self.open.remove(&hour) else {
            return Ok(());
        };
        let closed = staging
            .writer
            .finish()
            .map_err(arrow("closing", &staging.path))
            .and_then(|()| {
                staging
                    .writer
                    .get_ref()
                    .get_ref()
                    .sync_data()
                    .map_err(io("syncing", &staging.path))
            });
        if let Err(e) = closed {
            // Keep the complete appends; the rest was never committed.
            truncate(&staging.path, staging.bytes);
            return Err(e);
        }
        drop(staging.writer);
        let finished = staging.dir.join(format!("part-{}.parquet", staging.id));
        let converted = convert(&staging.path, &finished)?;
        if converted.truncated {
            tracing::warn!(view = %self.view, file = %staging.path.display(),
                "staging file ended in an incomplete append; its complete rows were kept");
        }
        Ok(())
    }

    /// Closes a staging file after a failed append: keeps its complete
    /// appends and tries to roll them; what cannot be rolled now is recovered
    /// at the next start.
    fn abandon(&mut self, hour: i64) {
        let Some(staging) = self.open.remove(&hour) else {
            return;
        };
        drop(staging.writer);
        truncate(&staging.path, staging.bytes);
        let finished = staging.dir.join(format!("part-{}.parquet", staging.id));
        if let Err(e) = convert(&staging.path, &finished) {
            tracing::warn!(view = %self.view, error = %e,
                "cannot roll a staging file after a failed append; it is recovered at the next start");
        }
    }
}

fn truncate(path: &Path, len: u64) {
    let result = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len).and_then(|()| f.sync_data()));
    if let Err(e) = result {
        tracing::warn!(file = %path.display(), error = %e, "cannot truncate a staging file to its last complete append");
    }
}

/// Column name of the entity key and of each feature: the entity key field's
/// name and the features' names, with `feature_` prepended to a feature whose
/// name is taken by another column (and `entity` for an entity key named
/// like a fixed column).
pub fn column_names(entity_key: &str, specs: &[FeatureSpec]) -> (String, Vec<String>) {
    let key = if RESERVED.contains(&entity_key) {
        "entity".to_owned()
    } else {
        entity_key.to_owned()
    };
    let mut taken: Vec<String> = RESERVED.iter().map(|s| s.to_string()).collect();
    taken.push(key.clone());
    let mut names = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut name = spec.name.clone();
        while taken.contains(&name) {
            name = format!("feature_{name}");
        }
        taken.push(name.clone());
        names.push(name);
    }
    (key, names)
}

/// The Arrow schema of a view's rows: entity key, `as_of`, one nullable
/// column per feature, `tombstone`, `plugin`, `written_at`.
pub fn schema(view: &str, entity_key: &str, specs: &[FeatureSpec]) -> Schema {
    let utc = || Some(Arc::from("UTC"));
    let (key, features) = column_names(entity_key, specs);
    let mut fields = vec![
        Field::new(key, DataType::Utf8, false),
        Field::new(
            AS_OF,
            DataType::Timestamp(TimeUnit::Millisecond, utc()),
            false,
        ),
    ];
    for (spec, name) in specs.iter().zip(features) {
        fields.push(Field::new(name, arrow_type(spec.kind), true));
    }
    fields.push(Field::new(TOMBSTONE, DataType::Boolean, false));
    fields.push(Field::new(PLUGIN, DataType::Utf8, false));
    fields.push(Field::new(
        WRITTEN_AT,
        DataType::Timestamp(TimeUnit::Microsecond, utc()),
        false,
    ));
    let metadata: std::collections::HashMap<String, String> = [
        ("wafer.view".to_owned(), view.to_owned()),
        ("wafer.entity_key".to_owned(), entity_key.to_owned()),
    ]
    .into();
    Schema::new(fields).with_metadata(metadata)
}

fn arrow_type(kind: ValueType) -> DataType {
    match kind {
        ValueType::Int64 => DataType::Int64,
        ValueType::Float64 => DataType::Float64,
        ValueType::Boolean => DataType::Boolean,
        ValueType::Text => DataType::Utf8,
    }
}

/// Value of feature `f` of `specs` in `u`, looked up by name when the row was
/// computed with other specs; `Null` for a tombstone or a type mismatch.
fn value<'a>(u: &'a FeatureUpdate, specs: &[FeatureSpec], f: usize) -> FeatureValue<'a> {
    let Some(row) = &u.features else {
        return FeatureValue::Null;
    };
    let spec = &specs[f];
    let at = if row.specs().get(f).is_some_and(|s| s.name == spec.name) {
        Some(f)
    } else {
        row.specs().iter().position(|s| s.name == spec.name)
    };
    match at {
        Some(i) if row.specs()[i].kind == spec.kind => row.get(i),
        _ => FeatureValue::Null,
    }
}

fn build_batch(
    schema: &SchemaRef,
    specs: &[FeatureSpec],
    updates: &[&FeatureUpdate],
    plugin: &str,
    written_at: i64,
) -> Result<RecordBatch, ArrowError> {
    let n = updates.len();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(specs.len() + 5);
    let mut keys = StringBuilder::with_capacity(n, n * 16);
    let mut as_of = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    for u in updates {
        keys.append_value(&u.entity);
        as_of.append_value(u.as_of_ms);
    }
    columns.push(Arc::new(keys.finish()));
    columns.push(Arc::new(as_of.finish()));
    for (f, spec) in specs.iter().enumerate() {
        let values = updates.iter().map(|u| value(u, specs, f));
        let column: ArrayRef = match spec.kind {
            ValueType::Int64 => {
                let mut b = Int64Builder::with_capacity(n);
                for v in values {
                    match v {
                        FeatureValue::Int64(x) => b.append_value(x),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            ValueType::Float64 => {
                let mut b = Float64Builder::with_capacity(n);
                for v in values {
                    match v {
                        FeatureValue::Float64(x) => b.append_value(x),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            ValueType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(n);
                for v in values {
                    match v {
                        FeatureValue::Boolean(x) => b.append_value(x),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            ValueType::Text => {
                let mut b = StringBuilder::new();
                for v in values {
                    match v {
                        FeatureValue::Text(x) => b.append_value(x),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
        };
        columns.push(column);
    }
    let mut tombstone = BooleanBuilder::with_capacity(n);
    let mut plugins = StringBuilder::with_capacity(n, n * plugin.len());
    let mut written = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    for u in updates {
        tombstone.append_value(u.features.is_none());
        plugins.append_value(u.features.as_ref().map_or(plugin, |r| r.plugin()));
        written.append_value(written_at);
    }
    columns.push(Arc::new(tombstone.finish()));
    columns.push(Arc::new(plugins.finish()));
    columns.push(Arc::new(written.finish()));
    RecordBatch::try_new(schema.clone(), columns)
}

/// `date=YYYY-MM-DD/hour=HH` of an hour since the epoch (UTC).
fn hour_dir(hour: i64) -> PathBuf {
    match chrono::DateTime::from_timestamp_millis(hour.saturating_mul(HOUR_MS)) {
        Some(t) => PathBuf::from(t.format("date=%Y-%m-%d").to_string())
            .join(t.format("hour=%H").to_string()),
        None => PathBuf::from("date=invalid").join("hour=00"),
    }
}

/// `s` as a path segment: letters, digits, `-`, `_`, `.` kept, other bytes
/// percent-encoded (as Hive does).
fn path_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn create_dirs(dir: &Path) -> Result<(), OfflineError> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at.to_owned());
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    std::fs::create_dir_all(dir).map_err(io("creating directory", dir))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), OfflineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))
}

/// What converting a staging file produced.
struct Converted {
    rows: u64,
    /// The staging file ended in an incomplete append (dropped).
    truncated: bool,
}

/// Writes the complete record batches of the staging file `staging` into the
/// Parquet file `finished` (through a temporary file, synced, renamed), then
/// removes the staging file. A staging file without rows is just removed.
fn convert(staging: &Path, finished: &Path) -> Result<Converted, OfflineError> {
    let dir = finished
        .parent()
        .expect("finished files are in a directory");
    let name = finished
        .file_name()
        .expect("finished files have a name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = File::open(staging).map_err(io("opening", staging))?;
    let mut out = Converted {
        rows: 0,
        truncated: false,
    };
    let mut reader = match StreamReader::try_new(BufReader::new(file), None) {
        Ok(r) => Some(r),
        // Not even a complete schema: the process died while creating it.
        Err(_) => {
            out.truncated = true;
            None
        }
    };
    let mut writer: Option<ArrowWriter<File>> = None;
    while let Some(next) = reader.as_mut().and_then(Iterator::next) {
        let batch = match next {
            Ok(b) => b,
            Err(_) => {
                out.truncated = true;
                break;
            }
        };
        if writer.is_none() {
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build();
            let file = File::create(&tmp).map_err(io("creating", &tmp))?;
            writer = Some(
                ArrowWriter::try_new(file, batch.schema(), Some(props))
                    .map_err(parquet("starting", &tmp))?,
            );
        }
        let w = writer.as_mut().expect("created above");
        w.write(&batch).map_err(parquet("writing", &tmp))?;
        out.rows += batch.num_rows() as u64;
    }
    if let Some(writer) = writer {
        let file = writer.into_inner().map_err(parquet("finishing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, finished).map_err(io("renaming", &tmp))?;
        sync_dir(dir)?;
    }
    std::fs::remove_file(staging).map_err(io("removing", staging))?;
    sync_dir(dir)?;
    Ok(out)
}

/// Turns every staging file under `root` into its Parquet file (or removes it
/// when that file already exists: the process died between the rename and the
/// removal), and removes temporary Parquet files.
pub fn recover(root: &Path) -> Result<Recovery, OfflineError> {
    let mut report = Recovery::default();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(io("listing", &dir))?;
        for entry in entries {
            let entry = entry.map_err(io("listing", &dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                dirs.push(path);
            } else if name.starts_with(".part-") && name.ends_with(".parquet.tmp") {
                std::fs::remove_file(&path).map_err(io("removing", &path))?;
            } else if let Some(id) = name
                .strip_prefix("_part-")
                .and_then(|n| n.strip_suffix(".arrows"))
            {
                let finished = dir.join(format!("part-{id}.parquet"));
                if finished.exists() {
                    std::fs::remove_file(&path).map_err(io("removing", &path))?;
                    continue;
                }
                let converted = convert(&path, &finished)?;
                report.recovered += 1;
                report.rows += converted.rows;
                report.truncated += usize::from(converted.truncated);
            }
        }
    }
    Ok(report)
}
