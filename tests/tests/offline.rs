//! The offline log against real Kafka and Redis: training/serving
//! consistency (every online value is the latest offline row of its entity,
//! every offline row is the reference's features at its as-of time), across a
//! crash; and `wafer backfill` from the same events as JSONL, as Parquet and
//! from the Kafka topic (whole, and a time range) giving the streaming path's
//! rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use wafer::offline::OfflineConfig;
use wafer_tests::offline::{files, latest, read_user_activity, History, OfflineRow};
use wafer_tests::reference::{self, GenEvent};
use wafer_tests::{Env, Host};

const CAUGHT_UP: Duration = Duration::from_secs(120);

fn temp_dir(env: &Env) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wafer-offline-{}", env.name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn offline(dir: &Path, roll_interval_secs: u64) -> Option<OfflineConfig> {
    Some(OfflineConfig {
        dir: dir.to_owned(),
        roll_interval_secs,
        roll_mb: 256,
    })
}

/// The number `field` of a JSON object text, parsed by the standard library
/// (correctly rounded, so bit-exact for the shortest representation the host
/// writes; serde_json's default parser may be off by one unit in the last place).
fn raw_number(json: &str, field: &str) -> Option<f64> {
    let at = json.find(&format!("\"{field}\":"))? + field.len() + 3;
    let rest = &json[at..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

/// Training/serving consistency of a finished run whose offline log is `dir`.
async fn assert_consistent(env: &Env, events: &[GenEvent], dir: &Path, partitions: i32) {
    let names = files(dir);
    assert!(
        names.iter().all(|f| f.ends_with(".parquet")),
        "no staging file after a clean stop: {names:?}"
    );
    let rows = read_user_activity(&dir.join("view=user-activity"));
    assert!(!rows.is_empty());
    assert!(rows.iter().any(|r| r.tombstone), "some windows empty");

    // Serving: each online value is the latest offline row of its entity;
    // an entity without an online value ended with a tombstone.
    let redis = env.redis_features().await.unwrap();
    let latest = latest(&rows);
    assert!(!redis.is_empty());
    for (user, row) in &latest {
        match redis.get(user) {
            None => assert!(row.tombstone, "{user}: no online value but {row:?}"),
            Some((value, _)) => {
                let v: serde_json::Value = serde_json::from_str(value).unwrap();
                assert!(
                    !row.tombstone,
                    "{user}: online {value} but offline tombstone"
                );
                assert_eq!(v["event_count_1h"].as_i64(), row.count, "{user}");
                assert_eq!(v["unique_actions_1h"].as_i64(), row.unique, "{user}");
                assert_eq!(raw_number(value, "avg_value_1h"), row.avg, "{user}");
                assert_eq!(
                    v["last_action"].as_str(),
                    row.last_action.as_deref(),
                    "{user}"
                );
                let computed_at =
                    wafer::event::parse_timestamp(v["computed_at"].as_str().unwrap()).unwrap();
                assert_eq!(computed_at, row.as_of_ms, "{user}: as-of time");
            }
        }
    }
    for user in redis.keys() {
        assert!(latest.contains_key(user), "{user} online but not offline");
    }

    // Training: every offline row is the reference's features at its as-of time.
    let histories: BTreeMap<i32, History> = (0..partitions)
        .map(|p| (p, History::new(events, p)))
        .collect();
    let partition_of: BTreeMap<&str, i32> = events
        .iter()
        .map(|e| (e.user.as_str(), e.partition))
        .collect();
    for row in &rows {
        assert!(
            row.plugin.starts_with("user-activity@") && row.plugin.contains('#'),
            "{}",
            row.plugin
        );
        let history = &histories[&partition_of[row.user.as_str()]];
        assert!(
            history.explains(row),
            "not the reference at its as-of time: {row:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_rows_are_what_was_served_and_the_reference() {
    let env = Env::new("offline", 4).await.unwrap();
    let events = reference::generate(71, 4000, 200, 4);
    env.produce(&reference::records(&events)).await.unwrap();
    let dir = temp_dir(&env);
    let mut config = env.config();
    // Roll at (almost) every flush: many files, rows of one hour in several.
    config.offline = offline(&dir, 1);
    config.pipeline.batch_size = 200;

    let host = Host::start(config);
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    host.stop().await.unwrap();
    assert_consistent(&env, &events, &dir, 4).await;
    assert_python_readers_agree(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// pyarrow + pandas and DuckDB (scripts/offline-read.sh) read the same rows
/// as the parquet crate: counts, and the latest row of every user.
fn assert_python_readers_agree(dir: &Path) {
    let script = wafer_tests::repo_root().join("scripts/offline-read.sh");
    let out = std::process::Command::new(&script)
        .arg(dir)
        .arg("user-activity")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = read_user_activity(&dir.join("view=user-activity"));
    let latest: serde_json::Map<String, serde_json::Value> = latest(&rows)
        .into_iter()
        .map(|(user, r)| {
            let count = if r.tombstone { None } else { r.count };
            (user, serde_json::json!([r.as_of_ms, r.tombstone, count]))
        })
        .collect();
    let users: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.user.as_str()).collect();
    let want = serde_json::json!({
        "rows": rows.len(),
        "users": users.len(),
        "tombstones": rows.iter().filter(|r| r.tombstone).count(),
        "event_count_sum": rows.iter().filter_map(|r| r.count).sum::<i64>(),
        "latest": latest,
    });
    assert_eq!(got["pyarrow"], want, "pyarrow + pandas");
    assert_eq!(got["duckdb"], want, "duckdb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_leaves_staging_files_that_the_next_start_recovers() {
    let env = Arc::new(Env::new("offline-crash", 4).await.unwrap());
    let events = reference::generate(79, 5000, 250, 4);
    let dir = temp_dir(&env);
    let mut config = env.config();
    config.offline = offline(&dir, 600);
    config.pipeline.batch_size = 100;

    let host = Host::start(config.clone());
    let producer = {
        let env = env.clone();
        let records = reference::records(&events);
        tokio::spawn(async move {
            for chunk in records.chunks(200) {
                env.produce(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    env.wait_committed(1500, CAUGHT_UP).await;
    host.kill().await;
    let staging: Vec<String> = files(&dir)
        .into_iter()
        .filter(|f| f.ends_with(".arrows"))
        .collect();
    assert!(!staging.is_empty(), "the crash should leave staging files");

    let host = Host::start(config);
    producer.await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    host.stop().await.unwrap();
    // Each staging file became the Parquet file of the same id.
    let names = files(&dir);
    for s in &staging {
        let finished = s
            .replace("/_part-", "/part-")
            .replace(".arrows", ".parquet");
        assert!(
            names.contains(&finished),
            "{s} not recovered into {finished}"
        );
    }
    assert_consistent(&env, &events, &dir, 4).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes the well-formed events as a Parquet file of typed columns (the
/// event time as a UTC timestamp); malformed events change no row.
fn write_events_parquet(events: &[GenEvent], path: &Path) {
    let good: Vec<&GenEvent> = events.iter().filter(|e| e.malformed.is_none()).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(good.iter().map(|e| &e.user))),
        Arc::new(StringArray::from_iter_values(
            good.iter().map(|e| &e.action),
        )),
        Arc::new(Float64Array::from_iter_values(good.iter().map(|e| e.value))),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(good.iter().map(|e| e.time_ms))
                .with_timezone("UTC"),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn backfill(config: &Path, input: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["--input", input.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_backfill(config, out, 1, &args);
}

/// Runs `wafer backfill --batch-size <batch_size>` and returns what it printed
/// on stderr.
fn run_backfill(config: &Path, out: &Path, batch_size: usize, args: &[&str]) -> String {
    let binary = wafer_tests::repo_root().join("target/release/wafer");
    let output = std::process::Command::new(&binary)
        .arg("backfill")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(["--batch-size", &batch_size.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (run `make host`)", binary.display()));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "wafer backfill failed: {stderr}");
    stderr
}

fn contents(rows: &[OfflineRow]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.content()).or_insert(0) += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_from_jsonl_and_parquet_gives_the_streaming_rows() {
    // One partition and a flush after every record: the streaming path's
    // flush points are then a function of the events alone.
    let env = Env::new("backfill", 1).await.unwrap();
    let events = reference::generate(83, 1500, 60, 1);
    env.produce(&reference::records(&events)).await.unwrap();
    let dir = temp_dir(&env);
    let mut config = env.config();
    config.pipeline.batch_size = 1;
    // No batch grows past one record while the writer is behind.
    config.pipeline.max_batch_size = 1;
    config.offline = offline(&dir.join("stream"), 600);
    let host = Host::start(config);
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    host.stop().await.unwrap();
    let streamed = read_user_activity(&dir.join("stream/view=user-activity"));
    assert!(streamed.len() > 1000, "a row per changed entity per record");

    let config_path = dir.join("wafer.toml");
    std::fs::write(&config_path, env.config_toml()).unwrap();
    let jsonl = dir.join("events.jsonl");
    let text: String = events.iter().map(|e| format!("{}\n", e.payload)).collect();
    std::fs::write(&jsonl, text).unwrap();
    backfill(&config_path, &jsonl, &dir.join("jsonl"), &[]);
    let parquet = dir.join("events.parquet");
    write_events_parquet(&events, &parquet);
    backfill(&config_path, &parquet, &dir.join("parquet"), &[]);

    let from_jsonl = read_user_activity(&dir.join("jsonl/view=user-activity"));
    let from_parquet = read_user_activity(&dir.join("parquet/view=user-activity"));
    let want = contents(&streamed);
    assert_eq!(contents(&from_jsonl), want, "backfill from JSONL");
    assert_eq!(contents(&from_parquet), want, "backfill from Parquet");

    // A flush every 150 records (applied in runs of up to 64 within): each row
    // is the reference's features at its as-of time.
    run_backfill(
        &config_path,
        &dir.join("coarse"),
        150,
        &["--input", jsonl.to_str().unwrap()],
    );
    let coarse = read_user_activity(&dir.join("coarse/view=user-activity"));
    let history = History::new(&events, 0);
    assert!(coarse.len() > 200, "{} rows", coarse.len());
    for row in &coarse {
        assert!(
            history.explains(row),
            "not the reference at its as-of time: {row:?}"
        );
    }

    // --from/--to keep the rows of that as-of range; earlier events still count.
    let mut times: Vec<i64> = streamed.iter().map(|r| r.as_of_ms).collect();
    times.sort_unstable();
    let (from, to) = (times[times.len() / 3], times[2 * times.len() / 3]);
    backfill(
        &config_path,
        &jsonl,
        &dir.join("range"),
        &["--from", &iso(from), "--to", &to.to_string()],
    );
    let ranged = read_user_activity(&dir.join("range/view=user-activity"));
    let in_range: Vec<OfflineRow> = streamed
        .iter()
        .filter(|r| from <= r.as_of_ms && r.as_of_ms < to)
        .cloned()
        .collect();
    assert!(!in_range.is_empty());
    assert_eq!(contents(&ranged), contents(&in_range), "--from/--to");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ms` as ISO-8601 UTC with milliseconds.
fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Produces `events` in order with each record's Kafka timestamp set to its
/// event time, as producers that stamp records with the event's own time do.
/// The topic keeps them whatever their age (no time-based retention), since
/// the generated times are in the past.
async fn produce_at_event_times(env: &Env, events: &[GenEvent]) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let client = |c: &mut rdkafka::ClientConfig| {
        c.set("bootstrap.servers", wafer_tests::brokers());
    };
    let mut admin_config = rdkafka::ClientConfig::new();
    client(&mut admin_config);
    let admin: AdminClient<_> = admin_config.create().unwrap();
    let retention =
        AlterConfig::new(ResourceSpecifier::Topic(&env.input)).set("retention.ms", "-1");
    for result in admin
        .alter_configs(&[retention], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap_or_else(|(topic, code)| panic!("altering {topic:?}: {code}"));
    }
    let mut producer_config = rdkafka::ClientConfig::new();
    client(&mut producer_config);
    let producer: FutureProducer = producer_config
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for chunk in events.chunks(500) {
        let mut acks = Vec::with_capacity(chunk.len());
        for e in chunk {
            let record = FutureRecord::to(&env.input)
                .partition(e.partition)
                .key(&e.user)
                .payload(&e.payload)
                .timestamp(e.time_ms);
            acks.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for ack in acks {
            ack.await.unwrap().unwrap();
        }
    }
}

/// The `(start, stop, end)` offsets each partition was read over, from the
/// backfill's `partition P: read offsets A..B (N records; end offset E)` lines.
fn partition_reads(stderr: &str) -> BTreeMap<i32, (i64, i64, i64)> {
    let mut reads = BTreeMap::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("wafer: partition ") else {
            continue;
        };
        let (p, rest) = rest.split_once(": read offsets ").unwrap();
        let (range, rest) = rest.split_once(" (").unwrap();
        let (start, stop) = range.split_once("..").unwrap();
        let end = rest
            .rsplit_once("end offset ")
            .unwrap()
            .1
            .trim_end_matches(')');
        reads.insert(
            p.parse().unwrap(),
            (
                start.parse().unwrap(),
                stop.parse().unwrap(),
                end.parse().unwrap(),
            ),
        );
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_from_a_kafka_time_range_gives_the_streaming_rows() {
    // Several partitions and a flush after every record: each flush changes
    // the entities of one partition only, so the streaming rows are a function
    // of each partition's records, as the backfill's are.
    let partitions = 3;
    let env = Env::new("backfill-kafka", partitions).await.unwrap();
    let events = reference::generate(89, 3000, 90, partitions);
    produce_at_event_times(&env, &events).await;
    let dir = temp_dir(&env);
    let mut config = env.config();
    config.pipeline.batch_size = 1;
    // No batch grows past one record while the writer is behind.
    config.pipeline.max_batch_size = 1;
    config.offline = offline(&dir.join("stream"), 600);
    let host = Host::start(config);
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    host.stop().await.unwrap();
    let streamed = read_user_activity(&dir.join("stream/view=user-activity"));
    assert!(streamed.len() > 2000, "a row per changed entity per record");
    let config_path = dir.join("wafer.toml");
    std::fs::write(&config_path, env.config_toml()).unwrap();
    let by_partition: Vec<Vec<&GenEvent>> = (0..partitions)
        .map(|p| events.iter().filter(|e| e.partition == p).collect())
        .collect();

    // The whole topic: every partition from its first offset to its end.
    let stderr = run_backfill(&config_path, &dir.join("full"), 1, &["--topic", &env.input]);
    let whole: BTreeMap<i32, (i64, i64, i64)> = by_partition
        .iter()
        .enumerate()
        .map(|(p, e)| (p as i32, (0, e.len() as i64, e.len() as i64)))
        .collect();
    assert_eq!(partition_reads(&stderr), whole, "{stderr}");
    let full = read_user_activity(&dir.join("full/view=user-activity"));
    assert_eq!(contents(&full), contents(&streamed), "whole topic");

    // A time range: each partition from its first record stamped at or after
    // from - W_max - lead, up to the record whose event time takes the
    // stream time to `to`; the rows are the streamed rows as of [from, to).
    let mut times: Vec<i64> = streamed.iter().map(|r| r.as_of_ms).collect();
    times.sort_unstable();
    let (from, to) = (times[times.len() * 6 / 10], times[times.len() * 85 / 100]);
    let lead_ms = 600_000;
    let stderr = run_backfill(
        &config_path,
        &dir.join("range"),
        1,
        &[
            "--topic",
            &env.input,
            "--from",
            &iso(from),
            "--to",
            &to.to_string(),
            "--lead-ms",
            &lead_ms.to_string(),
        ],
    );
    let seek_to = from - reference::WINDOW_MS - lead_ms;
    let want_reads: BTreeMap<i32, (i64, i64, i64)> = by_partition
        .iter()
        .enumerate()
        .map(|(p, records)| {
            let end = records.len();
            let start = records
                .iter()
                .position(|e| e.time_ms >= seek_to)
                .unwrap_or(end);
            let mut stream_time = i64::MIN;
            let mut stop = end;
            for (offset, e) in records.iter().enumerate().skip(start) {
                if e.malformed.is_none() {
                    stream_time = stream_time.max(e.time_ms);
                }
                if stream_time >= to {
                    stop = offset + 1;
                    break;
                }
            }
            (p as i32, (start as i64, stop as i64, end as i64))
        })
        .collect();
    assert_eq!(partition_reads(&stderr), want_reads, "{stderr}");
    assert!(
        want_reads
            .values()
            .all(|(start, stop, end)| *start > 0 && stop < end),
        "the range should skip records at both ends of every partition: {want_reads:?}"
    );
    let ranged = read_user_activity(&dir.join("range/view=user-activity"));
    let in_range: Vec<OfflineRow> = streamed
        .iter()
        .filter(|r| from <= r.as_of_ms && r.as_of_ms < to)
        .cloned()
        .collect();
    assert!(in_range.len() > 300);
    assert_eq!(contents(&ranged), contents(&in_range), "--from/--to");
    let _ = std::fs::remove_dir_all(&dir);
}
