//! The offline log's writer: rows read back with the parquet crate's reader,
//! roll rules, and recovery of staging files a crash left behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::log::{column_names, recover};
use super::{OfflineLog, RollPolicy};
use crate::pipeline::{FeatureColumns, FeatureRow, FeatureUpdate};
use crate::plugin::{Column, ColumnData, FeatureSpec, TextColumn, ValueType};

/// 2026-03-01T10:00:00Z.
const TEN: i64 = 1_772_359_200_000;
const PLUGIN: &str = "p@1.0.0#abc";

fn specs() -> Vec<FeatureSpec> {
    vec![
        FeatureSpec {
            name: "count".into(),
            kind: ValueType::Int64,
        },
        FeatureSpec {
            name: "avg".into(),
            kind: ValueType::Float64,
        },
        FeatureSpec {
            name: "last".into(),
            kind: ValueType::Text,
        },
        FeatureSpec {
            name: "flag".into(),
            kind: ValueType::Boolean,
        },
    ]
}

/// One hand-written row: (entity, as-of, Some((count, avg or null, last, flag)) or None = tombstone).
type Row = (
    &'static str,
    i64,
    Option<(i64, Option<f64>, &'static str, bool)>,
);

/// Feature updates for `rows`, as one plugin call returns them.
fn updates(specs: &[FeatureSpec], rows: &[Row]) -> Vec<FeatureUpdate> {
    let live: Vec<_> = rows.iter().filter_map(|r| r.2).collect();
    let mut dictionary: Vec<String> = Vec::new();
    let codes = live
        .iter()
        .map(|r| match dictionary.iter().position(|d| d == r.2) {
            Some(i) => i as u32,
            None => {
                dictionary.push(r.2.to_owned());
                (dictionary.len() - 1) as u32
            }
        })
        .collect();
    let columns = Arc::new(FeatureColumns {
        specs: specs.to_vec().into(),
        plugin: PLUGIN.into(),
        columns: vec![
            Column {
                data: ColumnData::Int64(live.iter().map(|r| r.0).collect()),
                valid: Vec::new(),
            },
            Column {
                data: ColumnData::Float64(live.iter().map(|r| r.1.unwrap_or(0.0)).collect()),
                valid: live.iter().map(|r| r.1.is_some()).collect(),
            },
            Column {
                data: ColumnData::Text(TextColumn { dictionary, codes }),
                valid: Vec::new(),
            },
            Column {
                data: ColumnData::Boolean(live.iter().map(|r| r.3).collect()),
                valid: Vec::new(),
            },
        ],
    });
    let mut next = 0;
    rows.iter()
        .map(|(entity, as_of, values)| {
            let features = values.map(|_| {
                next += 1;
                FeatureRow {
                    columns: columns.clone(),
                    row: next - 1,
                }
            });
            FeatureUpdate {
                entity: (*entity).to_owned(),
                as_of_ms: *as_of,
                value: values.map(|_| "{}".to_owned()),
                features,
            }
        })
        .collect()
}

fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wafer-offline-{test}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
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

/// A row as read back: (entity, as-of, count, avg, last, flag, tombstone, plugin).
type ReadRow = (
    String,
    i64,
    Option<i64>,
    Option<f64>,
    Option<String>,
    Option<bool>,
    bool,
    String,
);

fn read_file(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every row of every Parquet file under `dir`, with its file, sorted by file then row.
fn read_rows(dir: &Path) -> Vec<(String, ReadRow, i64)> {
    let mut out = Vec::new();
    for name in files(dir).into_iter().filter(|f| f.ends_with(".parquet")) {
        for batch in read_file(&dir.join(&name)) {
            let s = batch.schema();
            assert_eq!(s.field(0).name(), "user_id");
            assert_eq!(
                s.field(1).data_type(),
                &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
            );
            let col = |n: &str| batch.column_by_name(n).unwrap().clone();
            let (key, as_of, count, avg, last, flag, tomb, plugin, written) = (
                col("user_id"),
                col("as_of"),
                col("count"),
                col("avg"),
                col("last"),
                col("flag"),
                col("tombstone"),
                col("plugin"),
                col("written_at"),
            );
            for r in 0..batch.num_rows() {
                let opt = |a: &Arc<dyn Array>| !a.is_null(r);
                out.push((
                    name.clone(),
                    (
                        key.as_string::<i32>().value(r).to_owned(),
                        as_of.as_primitive::<TimestampMillisecondType>().value(r),
                        opt(&count).then(|| count.as_primitive::<Int64Type>().value(r)),
                        opt(&avg).then(|| avg.as_primitive::<Float64Type>().value(r)),
                        opt(&last).then(|| last.as_string::<i32>().value(r).to_owned()),
                        opt(&flag).then(|| flag.as_boolean().value(r)),
                        tomb.as_boolean().value(r),
                        plugin.as_string::<i32>().value(r).to_owned(),
                    ),
                    written.as_primitive::<TimestampMicrosecondType>().value(r),
                ));
            }
        }
    }
    out
}

fn expected(rows: &[Row]) -> Vec<ReadRow> {
    rows.iter()
        .map(|(e, t, v)| {
            (
                (*e).to_owned(),
                *t,
                v.map(|v| v.0),
                v.and_then(|v| v.1),
                v.map(|v| v.2.to_owned()),
                v.map(|v| v.3),
                v.is_none(),
                PLUGIN.to_owned(),
            )
        })
        .collect()
}

fn never() -> RollPolicy {
    RollPolicy {
        interval: Duration::from_secs(3600),
        bytes: u64::MAX,
    }
}

#[test]
fn rows_round_trip_through_parquet_partitioned_by_as_of_hour() {
    let dir = temp_dir("roundtrip");
    let specs = specs();
    let first: Vec<Row> = vec![
        ("u1", TEN + 5, Some((3, Some(2.5), "click", true))),
        ("u2", TEN + 3_599_999, Some((1, None, "view", false))),
        (
            "u3",
            TEN + 3_600_000,
            Some((7, Some(-1.25), "click", false)),
        ),
    ];
    let second: Vec<Row> = vec![
        ("u1", TEN + 60_000, None),
        ("u2", TEN + 3_700_000, Some((2, Some(1e300), "buy", true))),
    ];
    let (mut log, recovery) =
        OfflineLog::open(&dir, "user-activity", "user_id", never(), true).unwrap();
    assert_eq!(recovery, Default::default());
    assert_eq!(
        log.append(&updates(&specs, &first), &specs, PLUGIN)
            .unwrap(),
        3
    );
    assert_eq!(
        log.append(&updates(&specs, &second), &specs, PLUGIN)
            .unwrap(),
        2
    );
    // Before the roll, only staging files exist: nothing readers would pick up.
    assert!(
        files(&dir).iter().all(|f| f.ends_with(".arrows")),
        "{:?}",
        files(&dir)
    );
    log.close().unwrap();

    let names = files(&dir);
    assert_eq!(names.len(), 2, "one file per hour: {names:?}");
    assert!(names[0].starts_with("view=user-activity/date=2026-03-01/hour=10/part-"));
    assert!(names[1].starts_with("view=user-activity/date=2026-03-01/hour=11/part-"));
    let rows = read_rows(&dir);
    let hour10: Vec<ReadRow> = rows
        .iter()
        .filter(|r| r.0 == names[0])
        .map(|r| r.1.clone())
        .collect();
    let hour11: Vec<ReadRow> = rows
        .iter()
        .filter(|r| r.0 == names[1])
        .map(|r| r.1.clone())
        .collect();
    assert_eq!(
        hour10,
        expected(&[first[0], first[1], second[0]]),
        "hour 10: appends in order"
    );
    assert_eq!(hour11, expected(&[first[2], second[1]]));
    // Rows of a later append are written later.
    let written = |e: &str, t: i64| rows.iter().find(|r| r.1 .0 == e && r.1 .1 == t).unwrap().2;
    assert!(written("u1", TEN + 60_000) > written("u1", TEN + 5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_staging_file_left_by_a_crash_is_recovered_without_its_incomplete_append() {
    let dir = temp_dir("recover");
    let specs = specs();
    let rows: Vec<Row> = vec![
        ("a", TEN, Some((1, Some(1.0), "x", true))),
        ("b", TEN + 1, Some((2, None, "y", false))),
    ];
    let more: Vec<Row> = vec![("c", TEN + 2, None)];
    let (mut log, _) = OfflineLog::open(&dir, "v", "user_id", never(), true).unwrap();
    log.append(&updates(&specs, &rows), &specs, PLUGIN).unwrap();
    log.append(&updates(&specs, &more), &specs, PLUGIN).unwrap();
    // The crash: no close; and the process died in the middle of a third append.
    drop(log);
    let staging: Vec<String> = files(&dir);
    assert_eq!(staging.len(), 1);
    assert!(staging[0].ends_with(".arrows"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(&staging[0]))
        .unwrap();
    f.write_all(&[0xff, 0xff, 0xff, 0xff, 0x40, 0x01, 0, 0, 1, 2, 3])
        .unwrap();
    drop(f);

    let (mut log, recovery) = OfflineLog::open(&dir, "v", "user_id", never(), true).unwrap();
    assert_eq!(recovery.recovered, 1);
    assert_eq!(recovery.rows, 3);
    assert_eq!(recovery.truncated, 1);
    let names = files(&dir);
    assert_eq!(names.len(), 1);
    assert!(names[0].ends_with(".parquet") && names[0].contains("/part-"));
    let got: Vec<ReadRow> = read_rows(&dir).into_iter().map(|r| r.1).collect();
    assert_eq!(got, expected(&[rows[0], rows[1], more[0]]));
    // The new process writes new files next to the recovered one.
    log.append(&updates(&specs, &more), &specs, PLUGIN).unwrap();
    log.close().unwrap();
    assert_eq!(files(&dir).len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn recovery_after_the_rename_only_removes_the_staging_file() {
    let dir = temp_dir("renamed");
    let specs = specs();
    let rows: Vec<Row> = vec![("a", TEN, Some((1, Some(1.0), "x", true)))];
    let (mut log, _) = OfflineLog::open(&dir, "v", "user_id", never(), true).unwrap();
    log.append(&updates(&specs, &rows), &specs, PLUGIN).unwrap();
    drop(log);
    let staging = dir.join(&files(&dir)[0]);
    let copy = staging.with_extension("copy");
    std::fs::copy(&staging, &copy).unwrap();
    // First start: converted. Then put the staging file back, as if the
    // process had died after the rename but before removing it.
    let root = dir.join("view=v");
    assert_eq!(recover(&root).unwrap().recovered, 1);
    std::fs::rename(&copy, &staging).unwrap();
    // A temporary Parquet file of an interrupted roll is removed too.
    std::fs::write(staging.with_file_name(".part-x.parquet.tmp"), b"partial").unwrap();
    assert_eq!(recover(&root).unwrap().recovered, 0);
    let names = files(&dir);
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(read_rows(&dir).len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_roll_on_size_and_on_a_new_plugin_schema() {
    let dir = temp_dir("roll");
    let specs = specs();
    let rows: Vec<Row> = vec![("a", TEN, Some((1, Some(1.0), "x", true)))];
    let tiny = RollPolicy {
        interval: Duration::from_secs(3600),
        bytes: 1,
    };
    let (mut log, _) = OfflineLog::open(&dir, "v", "user_id", tiny, true).unwrap();
    log.append(&updates(&specs, &rows), &specs, PLUGIN).unwrap();
    log.append(&updates(&specs, &rows), &specs, PLUGIN).unwrap();
    assert_eq!(
        files(&dir)
            .iter()
            .filter(|f| f.ends_with(".parquet"))
            .count(),
        2,
        "each append reaches the size limit"
    );
    let (mut log, _) = OfflineLog::open(&dir, "w", "user_id", never(), true).unwrap();
    log.append(&updates(&specs, &rows), &specs, PLUGIN).unwrap();
    // A new plugin version dropped `flag`: its tombstones get the new schema.
    let fewer = &specs[..3];
    log.append(&updates(&specs, &[("b", TEN, None)]), fewer, PLUGIN)
        .unwrap();
    log.close().unwrap();
    let w: Vec<String> = files(&dir.join("view=w"));
    assert_eq!(w.len(), 2, "{w:?}");
    let columns: Vec<usize> = w
        .iter()
        .map(|f| read_file(&dir.join("view=w").join(f))[0].num_columns())
        .collect();
    let mut sorted = columns.clone();
    sorted.sort();
    assert_eq!(sorted, [8, 9]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn column_names_never_collide() {
    let spec = |n: &str| FeatureSpec {
        name: n.into(),
        kind: ValueType::Int64,
    };
    let (key, names) = column_names(
        "user_id",
        &[
            spec("as_of"),
            spec("feature_as_of"),
            spec("user_id"),
            spec("n"),
        ],
    );
    assert_eq!(key, "user_id");
    assert_eq!(
        names,
        [
            "feature_as_of",
            "feature_feature_as_of",
            "feature_user_id",
            "n"
        ]
    );
    assert_eq!(column_names("plugin", &[]).0, "entity");
}

#[test]
fn the_offline_section_parses_with_defaults() {
    let text =
        "[file]\npath = 'e.jsonl'\n[plugin]\npath = 'p.wasm'\n[offline]\ndir = '/data/offline'\n";
    let config = crate::config::Config::parse(text, "t").unwrap();
    let offline = config.offline.unwrap();
    assert_eq!(offline.dir, PathBuf::from("/data/offline"));
    let roll = offline.roll_policy();
    assert_eq!(roll.interval, Duration::from_secs(600));
    assert_eq!(roll.bytes, 256 << 20);
    let err = crate::config::Config::parse(&format!("{text}rol_mb = 3\n"), "t").unwrap_err();
    assert!(err.to_string().contains("rol_mb"), "{err}");
}
