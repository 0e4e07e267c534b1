//! The user-activity pipeline against a real Kafka broker and a real Redis:
//! outputs compared with the naive reference model, across restarts and a
//! second host joining and leaving the group.

use std::collections::BTreeSet;
use std::time::Duration;

use wafer_tests::outputs::assert_outputs;
use wafer_tests::reference::{self, GenEvent};
use wafer_tests::{Env, Host};

const CAUGHT_UP: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_matches_the_reference() {
    let env = Env::new("e2e", 4).await.unwrap();
    let events = reference::generate(11, 6000, 400, 4);
    let exp = reference::expect(&events);
    assert!(!exp.late.is_empty() && !exp.dead.is_empty());
    env.produce(&reference::records(&events)).await.unwrap();

    let host = Host::start(env.config());
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    assert_eq!(report.counters.events_in, events.len() as u64);
    assert_eq!(report.counters.late, exp.late.len() as u64);
    assert_eq!(report.counters.dead_letters, exp.dead.len() as u64);
    assert_eq!(report.counters.plugin_errors, 0);
    assert_outputs(&env, &events, &exp, true, &BTreeSet::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_then_sigterm_drains_and_commits() {
    // Events arrive while the host runs; stopping it flushes and commits all.
    let env = Env::new("live", 4).await.unwrap();
    let events = reference::generate(23, 3000, 150, 4);
    let exp = reference::expect(&events);
    let host = Host::start(env.config());
    for chunk in events.chunks(500) {
        env.produce(&reference::records(chunk)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    host.stop().await.unwrap();
    assert_outputs(&env, &events, &exp, true, &BTreeSet::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_at_most_once_per_commit_interval() {
    // Small batches flushed often: their offsets wait for the next commit due,
    // and the last positions are committed once due with no new record and
    // no shutdown.
    let env = Env::new("commit-interval", 4).await.unwrap();
    let events = reference::generate(29, 3000, 150, 4);
    let exp = reference::expect(&events);
    let mut config = env.config();
    config.pipeline.batch_size = 50;
    config.pipeline.max_batch_size = 50;
    config.pipeline.commit_interval_ms = 1500;
    let started = std::time::Instant::now();
    let host = Host::start(config);
    for chunk in events.chunks(300) {
        env.produce(&reference::records(chunk)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let (batches, commits) = (report.writes.redis_write.0, report.writes.commit.0);
    assert!(
        batches >= (events.len() / 50) as u64,
        "{batches} batches for {} events",
        events.len()
    );
    // One commit per interval at most, plus the first and the last (shutdown).
    let bound = (elapsed / 1.5).ceil() as u64 + 2;
    assert!(
        commits <= bound,
        "{commits} commits in {elapsed:.1} s ({batches} batches), at most {bound} expected"
    );
    assert_eq!(report.counters.commits, commits);
    assert_outputs(&env, &events, &exp, true, &BTreeSet::new()).await;
}

/// Runs `config` over `events` produced beforehand; the number of batches
/// it wrote once caught up (the outputs checked against the reference).
async fn batches_written(env: &Env, events: &[GenEvent], config: wafer::config::Config) -> u64 {
    let exp = reference::expect(events);
    env.produce(&reference::records(events)).await.unwrap();
    let host = Host::start(config);
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    assert_outputs(env, events, &exp, true, &BTreeSet::new()).await;
    report.writes.redis_write.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_grow_while_the_writer_is_behind() {
    // Batches of 20 records against one in-flight slot: each batch's writes
    // (Redis, the producer's acknowledgements) take longer than consuming 20
    // records. Without growth that is at least one batch per 20 records;
    // with it, the batch consumed while the slot is taken grows (up to
    // max_batch_size) and is flushed once the slot frees, so far fewer
    // batches carry the same events, and the outputs stay exact.
    let events = reference::generate(61, 6000, 300, 4);
    let least = (events.len() / 20) as u64;
    let mut found = Vec::new();
    for grow_to in [0, 3000] {
        let env = Env::new(&format!("grow-{grow_to}"), 4).await.unwrap();
        let mut config = env.config();
        config.pipeline.batch_size = 20;
        config.pipeline.max_in_flight_batches = 1;
        config.pipeline.max_batch_size = grow_to;
        found.push(batches_written(&env, &events, config).await);
    }
    assert!(found[0] >= least, "no growth: {} batches", found[0]);
    assert!(
        found[1] * 3 <= least,
        "growth: {} batches, at least {least} without",
        found[1]
    );
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
    // The second half of the stream is only produced once the host is down,
    // so it always goes down mid-stream, however slow the machine.
    let (host_down, producer) = env.produce_in_halves(reference::records(&events));
    env.wait_committed(1500, CAUGHT_UP).await;
    if kill {
        host.kill().await;
    } else {
        host.stop().await.unwrap();
    }
    let host = Host::start(config);
    host_down.send(()).unwrap();
    producer.await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    assert!(
        report.counters.replayed > 0,
        "the new host should rebuild state by replay"
    );
    assert_outputs(&env, &events, &exp, false, &BTreeSet::new()).await;
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
    env.produce(&reference::records(parts[0])).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();

    // B joins: the cooperative assignor moves some partitions to it.
    let b = Host::start(env.config());
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.produce(&reference::records(parts[1])).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report_b = b.stop().await.unwrap();
    assert!(
        report_b.counters.events_in > 0,
        "the second host should have taken partitions"
    );

    // B left: A takes its partitions back and rebuilds them from B's commits.
    env.produce(&reference::records(parts[2])).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report_a = a.stop().await.unwrap();
    assert!(
        report_a.counters.replayed > 0,
        "A should rebuild the partitions it got back"
    );
    assert_outputs(&env, &events, &exp, false, &BTreeSet::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_zero_on_sigterm_after_committing() {
    let env = Env::new("sigterm", 2).await.unwrap();
    let events = reference::generate(61, 1500, 80, 2);
    let exp = reference::expect(&events);
    env.produce(&reference::records(&events)).await.unwrap();

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
    assert_outputs(&env, &events, &exp, true, &BTreeSet::new()).await;
}

/// Commit metadata larger than the brokers' `offset.metadata.max.bytes` (4096
/// by default; here a view name of 4100 characters, in every checkpoint) is
/// refused: the host stops with an error naming the setting, the partition and
/// the size, rather than running on without ever committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_metadata_over_the_brokers_limit_stops_the_host_with_a_clear_error() {
    let env = Env::new("bigmeta", 1).await.unwrap();
    let name = "v".repeat(4100);
    let text = format!(
        r#"{sources}
[[views]]
name = "{name}"
[views.plugin]
path = "{plugin}"
key_template = "{template}"
watch = false
"#,
        sources = env.sources_toml(300),
        plugin = wafer_tests::user_activity_plugin().display(),
        template = env.key_template(),
    );
    let config = wafer::config::Config::parse(&text, "bigmeta test").unwrap();
    let events = reference::generate(5, 50, 10, 1);
    env.produce(&reference::records(&events)).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ran = tokio::time::timeout(Duration::from_secs(120), wafer::run(config, shutdown))
        .await
        .expect("the host stops by itself at its first commit");
    let err = ran.expect_err("the commit is refused");
    match &err {
        wafer::RunError::CommitMetadataTooLarge {
            group,
            topic,
            partition,
            bytes,
            ..
        } => {
            assert_eq!((group, topic, *partition), (&env.group, &env.input, 0));
            assert!(*bytes > 4100, "{bytes}");
        }
        other => panic!("unexpected error: {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("offset.metadata.max.bytes"), "{message}");
    assert!(message.contains("1 view(s)"), "{message}");
    assert_eq!(env.committed().unwrap(), [-1], "nothing committed");
}
