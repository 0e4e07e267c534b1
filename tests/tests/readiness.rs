//! Per-partition readiness on a real restart: a host restarted on a topic whose
//! committed checkpoints hold a long window is not ready until every assigned
//! partition's replay is done. Checked without clocks: the host numbers every
//! transition from one sequence, and the replay it reports is compared with
//! the checkpoint the previous host committed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use wafer_tests::reference::START_MS;
use wafer_tests::{Env, Host};

const CAUGHT_UP: Duration = Duration::from_secs(120);
const TOKEN: &str = "readiness-test-token";
const PARTITIONS: i32 = 3;
/// Events per partition, all within the plugin's one-hour window, so the
/// replay after the restart re-reads every one of them.
const PER_PARTITION: usize = 6000;

/// `(partition, key, payload)` records: 40 users per partition, 10 ms apart
/// in event time (the whole stream spans one minute).
fn records() -> Vec<(i32, String, String)> {
    let mut out = Vec::new();
    for i in 0..PER_PARTITION {
        for p in 0..PARTITIONS {
            let user = format!("user_{p}_{:02}", i % 40);
            let action = ["click", "view", "purchase"][i % 3];
            let payload = serde_json::json!({
                "user_id": user,
                "action": action,
                "value": (i % 100) as f64 / 4.0,
                "timestamp": START_MS + (i as i64) * 10,
            });
            out.push((p, user, payload.to_string()));
        }
    }
    out
}

/// The group's committed offset and checkpoint metadata of each input partition.
fn committed_with_metadata(env: &Env) -> BTreeMap<i32, (i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", wafer_tests::brokers())
        .set("group.id", &env.group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..env.partitions {
        tpl.add_partition(&env.input, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), (o, e.metadata().to_owned())),
            other => panic!("partition {} has no commit: {other:?}", e.partition()),
        })
        .collect()
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    let r = http.get(url).bearer_auth(TOKEN).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_is_ready_only_after_every_partition_is_rebuilt() {
    let env = Env::new("readiness", PARTITIONS).await.unwrap();
    env.produce(&records()).await.unwrap();

    // First host: consumes everything and commits its checkpoints on stop.
    let first = Host::start(env.config());
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    first.stop().await.unwrap();
    let commits = committed_with_metadata(&env);
    let view = "user-activity";
    let mut expected_replay = BTreeMap::new();
    for (p, (end, metadata)) in &commits {
        assert_eq!(*end, PER_PARTITION as i64, "partition {p} fully committed");
        let checkpoints = wafer::sources::kafka::decode_checkpoints(metadata)
            .unwrap_or_else(|| panic!("partition {p}: no Wafer checkpoint in {metadata:?}"));
        let from = checkpoints[view].rebuild_from;
        // Every event is inside the window: the replay must re-read them all.
        assert_eq!(from, 0, "partition {p}");
        expected_replay.insert(*p, (from, *end, (*end - from) as u64));
    }

    // Second host, same group: watch its readiness from before it joins.
    let port = wafer_tests::free_port();
    let mut config = env.config();
    config.admin = Some(wafer::config::AdminConfig {
        listen: format!("127.0.0.1:{port}"),
        token: Some(TOKEN.into()),
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let second = Host::start(config);
    let deadline = Instant::now() + CAUGHT_UP;
    let mut snapshots: Vec<serde_json::Value> = Vec::new();
    let final_snapshot = loop {
        assert!(
            Instant::now() < deadline,
            "never ready; last: {:?}",
            snapshots.last()
        );
        let Ok(r) = http
            .get(format!("{base}/partitions"))
            .bearer_auth(TOKEN)
            .send()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        assert_eq!(r.status().as_u16(), 200);
        let snapshot: serde_json::Value = r.json().await.unwrap();
        snapshots.push(snapshot.clone());
        if snapshot["ready"] == true {
            break snapshot;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    // Each snapshot is consistent: ready exactly when running, joined and
    // every listed partition is ready.
    for s in &snapshots {
        let parts = s["partitions"].as_array().unwrap();
        let all_ready = parts.iter().all(|p| p["state"] == "ready");
        let expect = s["running"] == true && s["joined"] == true && all_ready;
        assert_eq!(s["ready"] == true, expect, "inconsistent snapshot {s}");
    }

    // Every partition went assigned -> rebuilding -> ready, replayed exactly
    // what the first host's checkpoint asked for, and the host became ready
    // only after the last of them.
    let parts = final_snapshot["partitions"].as_array().unwrap();
    let listed: Vec<i64> = parts
        .iter()
        .map(|p| p["partition"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, (0..PARTITIONS as i64).collect::<Vec<_>>());
    let mut last_rebuilt = 0;
    for p in parts {
        let n = p["partition"].as_i64().unwrap() as i32;
        assert_eq!(p["topic"], env.input.as_str());
        let transitions = p["transitions"].as_array().unwrap();
        let states: Vec<&str> = transitions
            .iter()
            .map(|t| t["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["assigned", "rebuilding", "ready"], "partition {n}");
        let seqs: Vec<u64> = transitions
            .iter()
            .map(|t| t["seq"].as_u64().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "partition {n}: {seqs:?}"
        );
        last_rebuilt = last_rebuilt.max(seqs[2]);
        let (from, to, records) = expected_replay[&n];
        assert_eq!(p["replay"]["from"], from, "partition {n}");
        assert_eq!(p["replay"]["to"], to, "partition {n}");
        assert_eq!(p["replay"]["records"], records, "partition {n}");
    }
    let ready_seq = final_snapshot["ready_seq"].as_u64().unwrap();
    assert!(
        ready_seq > last_rebuilt,
        "ready at {ready_seq} before the last rebuild at {last_rebuilt}"
    );
    let not_ready_seen = snapshots.iter().filter(|s| s["ready"] == false).count();
    eprintln!(
        "{} snapshots before ready ({not_ready_seen} not ready)",
        snapshots.len()
    );

    // The probe and the metrics agree with the snapshot.
    assert_eq!(
        get(&http, &format!("{base}/readyz")).await,
        (200, "ready".into())
    );
    let (status, metrics) = get(&http, &format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for p in 0..PARTITIONS {
        let line = format!(
            "wafer_partition_ready{{topic=\"{}\",partition=\"{p}\"}} 1",
            env.input
        );
        assert!(metrics.lines().any(|l| l == line), "{line} missing");
    }
    let replayed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wafer_replayed_total{view=\"user-activity\"} "))
        .unwrap();
    assert_eq!(replayed, (PARTITIONS as usize * PER_PARTITION).to_string());
    second.stop().await.unwrap();
}
