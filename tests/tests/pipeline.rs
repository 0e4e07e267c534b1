//! The user-activity pipeline against a real Kafka broker and a real Redis:
//! outputs compared with the naive reference model, across restarts and a
//! second host joining and leaving the group.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use wafer_tests::reference::{self, Expected, GenEvent};
use wafer_tests::{Env, Host};

const CAUGHT_UP: Duration = Duration::from_secs(120);

fn records(events: &[GenEvent]) -> Vec<(i32, String, String)> {
    events
        .iter()
        .map(|e| (e.partition, e.user.clone(), e.payload.clone()))
        .collect()
}

fn multiset(items: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_insert(0) += 1;
    }
    m
}

/// Checks Redis, `ml-features`, dead letters and late events against `exp`.
/// With `exactly_once`, side records must appear once each (no replay happened).
async fn assert_outputs(env: &Env, events: &[GenEvent], exp: &Expected, exactly_once: bool) {
    // Redis: exactly the users with a non-empty window, with the reference values.
    let redis = env.redis_features().await.unwrap();
    assert_eq!(
        redis.keys().collect::<Vec<_>>(),
        exp.features.keys().collect::<Vec<_>>(),
        "redis keys"
    );
    let partition_of: BTreeMap<&str, i32> = events
        .iter()
        .map(|e| (e.user.as_str(), e.partition))
        .collect();
    for (user, (value, ttl)) in &redis {
        let want = &exp.features[user];
        let got: serde_json::Value = serde_json::from_str(value).unwrap();
        let fields: BTreeSet<&str> = got
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            BTreeSet::from([
                "user_id",
                "event_count_1h",
                "unique_actions_1h",
                "avg_value_1h",
                "last_action",
                "computed_at"
            ]),
            "{user}"
        );
        assert_eq!(got["user_id"], user.as_str());
        assert_eq!(got["event_count_1h"], want.count, "{user} count");
        assert_eq!(got["unique_actions_1h"], want.unique, "{user} unique");
        let avg = got["avg_value_1h"].as_f64().unwrap();
        assert!(
            (avg - want.avg).abs() <= 1e-9 * want.avg.abs().max(1.0),
            "{user} avg {avg} vs {}",
            want.avg
        );
        assert_eq!(
            got["last_action"],
            want.last_action.as_str(),
            "{user} last_action"
        );
        let computed_at =
            wafer::event::parse_timestamp(got["computed_at"].as_str().unwrap()).unwrap();
        let stream_time = exp.stream_time[&partition_of[user.as_str()]];
        assert!(
            want.newest_ms <= computed_at && computed_at <= stream_time,
            "{user}: computed_at {computed_at} outside [{}, {stream_time}]",
            want.newest_ms
        );
        assert!((1..=3600).contains(ttl), "{user} ttl {ttl}");
    }

    // ml-features: one key per user ever applied; the last record of each key
    // is the Redis value, or a tombstone when the window ended empty.
    let output = env.read_topic(&env.output).unwrap();
    let mut last: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in &output {
        last.insert(
            r.key.clone().expect("feature records are keyed"),
            r.value.clone(),
        );
    }
    assert_eq!(
        last.keys().cloned().collect::<BTreeSet<_>>(),
        exp.ever_applied,
        "ml-features keys"
    );
    let mut tombstones = 0;
    for (user, value) in &last {
        match (value, redis.get(user)) {
            (Some(v), Some((stored, _))) => assert_eq!(v, stored, "{user}: topic and redis differ"),
            (None, None) => tombstones += 1,
            (v, r) => panic!("{user}: last ml-features record {v:?} but redis {r:?}"),
        }
    }
    assert!(tombstones > 0, "the stream should empty some windows");

    // Dead letters and late events: the reference's, with reasons and sources.
    let dead = env.read_topic(&env.dead_letters).unwrap();
    let late = env.read_topic(&env.late).unwrap();
    for r in dead.iter().chain(&late) {
        assert!(!r.headers["wafer.reason"].is_empty());
        assert_eq!(r.headers["wafer.source.topic"], env.input);
        let payload = r.value.clone().unwrap();
        let source = events
            .iter()
            .find(|e| e.payload == payload)
            .expect("side record of a produced event");
        assert_eq!(
            r.headers["wafer.source.partition"],
            source.partition.to_string()
        );
        assert!(r.headers["wafer.source.offset"].parse::<i64>().is_ok());
    }
    assert!(late
        .iter()
        .all(|r| r.headers["wafer.reason"].contains("window")));
    let got_dead = multiset(dead.iter().map(|r| r.value.clone().unwrap()));
    let got_late = multiset(late.iter().map(|r| r.value.clone().unwrap()));
    let want_dead = multiset(exp.dead.iter().cloned());
    let want_late = multiset(exp.late.iter().cloned());
    if exactly_once {
        assert_eq!(got_dead, want_dead, "dead letters");
        assert_eq!(got_late, want_late, "late events");
    } else {
        assert_eq!(
            got_dead.keys().collect::<Vec<_>>(),
            want_dead.keys().collect::<Vec<_>>(),
            "dead letters"
        );
        assert_eq!(
            got_late.keys().collect::<Vec<_>>(),
            want_late.keys().collect::<Vec<_>>(),
            "late events"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_matches_the_reference() {
    let env = Env::new("e2e", 4).await.unwrap();
    let events = reference::generate(11, 6000, 400, 4);
    let exp = reference::expect(&events);
    assert!(!exp.late.is_empty() && !exp.dead.is_empty());
    env.produce(&records(&events)).await.unwrap();

    let host = Host::start(env.config());
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    assert_eq!(report.counters.events_in, events.len() as u64);
    assert_eq!(report.counters.late, exp.late.len() as u64);
    assert_eq!(report.counters.dead_letters, exp.dead.len() as u64);
    assert_eq!(report.counters.plugin_errors, 0);
    assert_outputs(&env, &events, &exp, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_then_sigterm_drains_and_commits() {
    // Events arrive while the host runs; stopping it flushes and commits all.
    let env = Env::new("live", 4).await.unwrap();
    let events = reference::generate(23, 3000, 150, 4);
    let exp = reference::expect(&events);
    let host = Host::start(env.config());
    for chunk in events.chunks(500) {
        env.produce(&records(chunk)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    host.stop().await.unwrap();
    assert_outputs(&env, &events, &exp, true).await;
}

/// Runs a host while a producer streams `events`, takes the host down once
/// some offsets are committed (gracefully or by killing it), then starts a new
/// host and checks the end state against the reference.
async fn restart_while_streaming(test: &str, seed: u64, kill: bool) {
    let env = std::sync::Arc::new(Env::new(test, 4).await.unwrap());
    let events = reference::generate(seed, 6000, 300, 4);
    let exp = reference::expect(&events);
    let mut config = env.config();
    config.pipeline.batch_size = 100;

    let host = Host::start(config.clone());
    let producer = {
        let env = env.clone();
        let records = records(&events);
        tokio::spawn(async move {
            for chunk in records.chunks(200) {
                env.produce(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let deadline = std::time::Instant::now() + CAUGHT_UP;
    while env
        .committed()
        .unwrap()
        .iter()
        .filter(|o| **o > 0)
        .sum::<i64>()
        < 1500
    {
        assert!(std::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if kill {
        host.kill().await;
    } else {
        host.stop().await.unwrap();
    }
    assert!(
        !producer.is_finished(),
        "the host should go down mid-stream"
    );

    let host = Host::start(config);
    producer.await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    assert!(
        report.counters.replayed > 0,
        "the new host should rebuild state by replay"
    );
    assert_outputs(&env, &events, &exp, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_is_exact() {
    restart_while_streaming("restart", 37, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_batch_and_restart_is_exact() {
    restart_while_streaming("crash", 41, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_host_joining_then_leaving_is_exact() {
    let env = Env::new("rebalance", 4).await.unwrap();
    let events = reference::generate(53, 6000, 300, 4);
    let exp = reference::expect(&events);
    let parts: Vec<&[GenEvent]> = events.chunks(2000).collect();

    let a = Host::start(env.config());
    env.produce(&records(parts[0])).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();

    // B joins: the cooperative assignor moves some partitions to it.
    let b = Host::start(env.config());
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.produce(&records(parts[1])).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report_b = b.stop().await.unwrap();
    assert!(
        report_b.counters.events_in > 0,
        "the second host should have taken partitions"
    );

    // B left: A takes its partitions back and rebuilds them from B's commits.
    env.produce(&records(parts[2])).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report_a = a.stop().await.unwrap();
    assert!(
        report_a.counters.replayed > 0,
        "A should rebuild the partitions it got back"
    );
    assert_outputs(&env, &events, &exp, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_zero_on_sigterm_after_committing() {
    let env = Env::new("sigterm", 2).await.unwrap();
    let events = reference::generate(61, 1500, 80, 2);
    let exp = reference::expect(&events);
    env.produce(&records(&events)).await.unwrap();

    let config_path = std::env::temp_dir().join(format!("{}.toml", env.name));
    std::fs::write(&config_path, env.config_toml()).unwrap();
    let binary = wafer_tests::repo_root().join("target/release/wafer");
    let mut child = std::process::Command::new(&binary)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (run `make host`)", binary.display()));
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "wafer should exit 0 after SIGTERM");
    let _ = std::fs::remove_file(&config_path);
    assert_outputs(&env, &events, &exp, true).await;
}
