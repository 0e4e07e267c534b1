//! An idle partition must not keep stale features forever: after the idle
//! timeout its stream time follows the host's other partitions, so its
//! entities decay, and the new stream time survives a restart.

use std::time::{Duration, Instant};

use wafer_tests::reference::START_MS;
use wafer_tests::{Env, Host};

const HOUR: i64 = 3_600_000;

fn event(user: &str, time_ms: i64) -> String {
    serde_json::json!({ "user_id": user, "action": "view", "value": 1.0, "timestamp": time_ms })
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_partition_follows_the_others_and_its_entities_decay() {
    let env = Env::new("idle", 2).await.unwrap();
    // Partition 0: "quiet" is active for ten minutes, then the partition goes silent.
    // Partition 1: "busy" keeps going for three hours of event time.
    let mut records = Vec::new();
    for i in 0..10 {
        records.push((0, "quiet".to_owned(), event("quiet", START_MS + i * 60_000)));
    }
    for i in 0..=180 {
        records.push((1, "busy".to_owned(), event("busy", START_MS + i * 60_000)));
    }
    env.produce(&records).await.unwrap();

    let mut config = env.config();
    config.pipeline.idle_timeout_ms = 1000;
    let host = Host::start(config.clone());
    env.wait_caught_up(Duration::from_secs(60)).await.unwrap();

    // Partition 0's stream time is 00:09 until it has been idle for a second;
    // then it follows partition 1 to 03:00, and "quiet" (last event 00:09) leaves
    // its one-hour window: its key is deleted and a tombstone published.
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.redis_features().await.unwrap().contains_key("quiet") {
        assert!(
            Instant::now() < deadline,
            "the idle partition's entity never decayed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.wait_caught_up(Duration::from_secs(60)).await.unwrap();
    host.stop().await.unwrap();

    let redis = env.redis_features().await.unwrap();
    assert_eq!(redis.keys().collect::<Vec<_>>(), ["busy"]);
    let busy: serde_json::Value = serde_json::from_str(&redis["busy"].0).unwrap();
    // Events at 02:00 (exclusive) .. 03:00: minutes 121..=180.
    assert_eq!(busy["event_count_1h"], 60);
    let output = env.read_topic(&env.output).unwrap();
    let last_quiet = output
        .iter()
        .rev()
        .find(|r| r.key.as_deref() == Some("quiet"))
        .unwrap();
    assert_eq!(
        last_quiet.value, None,
        "the last record of an emptied entity is a tombstone"
    );

    // The advanced stream time was committed: after a restart, an event at 01:30
    // on partition 0 is late (at or before 03:00 minus one hour).
    env.produce(&[(
        0,
        "quiet".to_owned(),
        event("quiet", START_MS + HOUR + HOUR / 2),
    )])
    .await
    .unwrap();
    let host = Host::start(config);
    env.wait_caught_up(Duration::from_secs(60)).await.unwrap();
    let report = host.stop().await.unwrap();
    assert_eq!(report.counters.late, 1, "{:?}", report.counters);
    assert!(!env.redis_features().await.unwrap().contains_key("quiet"));
}
