//! Two views on one topic keyed by `user_id`: one per user, one per item
//! through a repartition topic, against real Kafka and Redis. Two hosts in one
//! group split both the input and the repartition topic; a restart that
//! re-forwards records already applied by the item view counts nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};
use wafer_tests::outputs::{assert_feature_record, assert_view_outputs, ViewOutputs};
use wafer_tests::reference::{self, Expected, GenEvent};
use wafer_tests::{Env, Host, Record};

const CAUGHT_UP: Duration = Duration::from_secs(120);
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
/// The `tumbling` fixture's grace period.
const GRACE: i64 = 10 * MIN;

/// The item view's names in a test's namespace.
struct Items {
    repartition: String,
    output: String,
    group: String,
}

impl Items {
    fn of(env: &Env) -> Self {
        Self {
            repartition: format!("{}.by-item", env.name),
            output: format!("{}.item-features", env.name),
            group: format!("{}.items", env.group),
        }
    }
}

/// A `users` view running `users_plugin` on the input topic and an `items`
/// view (user-activity keyed by `item_id`) on the repartition topic.
fn config(env: &Env, users_plugin: &std::path::Path, lag_ms: u64) -> wafer::config::Config {
    let mut config =
        wafer::config::Config::parse(&config_text(env, users_plugin), "repartition test").unwrap();
    config.pipeline.out_of_orderness_ms = lag_ms;
    config
}

/// The TOML text of [`config`] (no out-of-orderness).
fn config_text(env: &Env, users_plugin: &std::path::Path) -> String {
    let items = Items::of(env);
    format!(
        r#"{sources}
[[views]]
name = "users"
[views.plugin]
path = "{users}"
key_template = "{prefix}:users:{{user_id}}"
watch = false

[[views]]
name = "items"
repartition_topic = "{repartition}"
output_topic = "{output}"
[views.plugin]
path = "{items}"
entity_fields = ["item_id"]
key_template = "{prefix}:items:{{item_id}}"
watch = false
"#,
        sources = env.sources_toml(150),
        users = users_plugin.display(),
        items = wafer_tests::user_activity_plugin().display(),
        prefix = env.key_prefix,
        repartition = items.repartition,
        output = items.output,
    )
}

/// A generated stream with items.
struct Stream {
    events: Vec<GenEvent>,
    /// Each event's item.
    items: Vec<Option<String>>,
    /// Each event's (partition, offset) in the input topic (produced in order
    /// to fresh partitions).
    positions: Vec<(i32, i64)>,
}

fn stream(seed: u64, n: usize) -> Stream {
    let mut events = reference::generate(seed, n, 200, 4);
    let items = reference::add_items(&mut events, seed + 1, 60);
    let mut next = BTreeMap::new();
    let positions = events
        .iter()
        .map(|e| {
            let offset = next.entry(e.partition).or_insert(0i64);
            *offset += 1;
            (e.partition, *offset - 1)
        })
        .collect();
    Stream {
        events,
        items,
        positions,
    }
}

/// Reads the repartition topic and checks every record: keyed by its item,
/// carrying the original value and its provenance, each item in one
/// partition. Returns the records and each item's partition.
fn read_repartition(
    env: &Env,
    items: &Items,
    events: &[GenEvent],
    positions: &[(i32, i64)],
) -> (Vec<Record>, BTreeMap<String, i32>) {
    let by_position: BTreeMap<(i32, i64), &GenEvent> =
        positions.iter().copied().zip(events).collect();
    let forwarded = env.read_topic(&items.repartition).unwrap();
    let mut partition_of = BTreeMap::new();
    for r in &forwarded {
        assert_eq!(r.headers["wafer.source.topic"], env.input);
        let source = (
            r.headers["wafer.source.partition"].parse::<i32>().unwrap(),
            r.headers["wafer.source.offset"].parse::<i64>().unwrap(),
        );
        let original = by_position[&source];
        assert_eq!(r.value.as_ref(), Some(&original.payload), "{source:?}");
        let item = r.key.clone().expect("forwarded records are keyed");
        let payload: serde_json::Value = serde_json::from_str(&original.payload).unwrap();
        assert_eq!(payload["item_id"], item.as_str());
        let first = *partition_of.entry(item.clone()).or_insert(r.partition);
        assert_eq!(first, r.partition, "{item} is in two partitions");
    }
    (forwarded, partition_of)
}

/// Checks the item view's Redis values, feature topic and dead letters
/// against the reference computed per item. `view`: the `wafer.view` header
/// of its dead letters (none when it is the pipeline's only view).
async fn assert_items(
    env: &Env,
    items: &Items,
    view: Option<&str>,
    events: &[GenEvent],
    per_item: &[GenEvent],
    exp: &Expected,
) {
    // Redis: exactly the items with a non-empty window, with the reference values.
    let redis = env.redis_values("items").await.unwrap();
    assert_eq!(
        redis.keys().collect::<Vec<_>>(),
        exp.features.keys().collect::<Vec<_>>(),
        "item redis keys"
    );
    let partition_of: BTreeMap<&str, i32> = per_item
        .iter()
        .filter(|e| e.malformed.is_none())
        .map(|e| (e.user.as_str(), e.partition))
        .collect();
    for (item, (value, ttl)) in &redis {
        let stream_time = exp.stream_time[&partition_of[item.as_str()]];
        assert_feature_record(
            "item_id",
            item,
            value,
            *ttl,
            &exp.features[item],
            stream_time,
        );
    }

    // The item feature topic: the last record of each key is the Redis value,
    // or a tombstone for an item whose window emptied.
    let mut last: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in env.read_topic(&items.output).unwrap() {
        last.insert(r.key.clone().unwrap(), r.value.clone());
    }
    let mut tombstones = 0;
    for (item, value) in &last {
        assert!(
            partition_of.contains_key(item.as_str()),
            "unknown key {item}"
        );
        match (value, redis.get(item)) {
            (Some(v), Some((stored, _))) => assert_eq!(v, stored, "{item}: topic and redis differ"),
            (None, None) => tombstones += 1,
            (v, r) => panic!("{item}: last feature record {v:?} but redis {r:?}"),
        }
    }
    assert!(redis.keys().all(|k| last.contains_key(k)));
    assert!(tombstones > 0, "the stream should empty some item windows");

    // Dead letters of the item view: every event malformed for it, with its
    // input position (the forwarder's and the view's alike), and no other.
    let dead: Vec<Record> = env
        .read_topic(&env.dead_letters)
        .unwrap()
        .into_iter()
        .filter(|r| r.headers.get("wafer.view").map(String::as_str) == view)
        .collect();
    for r in &dead {
        assert!(!r.headers["wafer.reason"].is_empty());
        assert_eq!(r.headers["wafer.source.topic"], env.input);
        let payload = r.value.clone().unwrap();
        let source = events
            .iter()
            .find(|e| e.payload == payload)
            .expect("dead letter of a produced event");
        assert_eq!(
            r.headers["wafer.source.partition"],
            source.partition.to_string()
        );
    }
    let got: BTreeSet<String> = dead.iter().map(|r| r.value.clone().unwrap()).collect();
    let want: BTreeSet<String> = per_item
        .iter()
        .filter(|e| e.malformed.is_some())
        .map(|e| e.payload.clone())
        .collect();
    assert_eq!(got, want, "item dead letters");
    assert!(dead
        .iter()
        .any(|r| r.headers["wafer.reason"] == "missing field `item_id`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_compute_per_user_and_per_item_views_from_one_topic() {
    let env = Env::new("repartition", 4).await.unwrap();
    let items = Items::of(&env);
    let lag = 2 * MIN;
    let Stream {
        events,
        items: item_of,
        positions,
    } = stream(97, 5000);
    let config = config(&env, &wafer_tests::fixture("tumbling.wasm"), lag as u64);
    let records = reference::records(&events);
    let (first, second) = records.split_at(records.len() / 2);

    let ports = [wafer_tests::free_port(), wafer_tests::free_port()];
    let with_admin = |port: u16| {
        let mut config = config.clone();
        config.admin = Some(wafer::config::AdminConfig {
            listen: format!("127.0.0.1:{port}"),
            token: None,
        });
        config
    };
    let a = Host::start(with_admin(ports[0]));
    let b = Host::start(with_admin(ports[1]));
    // Both hosts hold partitions of both topics, and together all of them,
    // before any record is produced: item events really reach both hosts.
    let deadline = std::time::Instant::now() + CAUGHT_UP;
    loop {
        let mut held = Vec::new();
        for port in ports {
            held.push(ready_partitions(port).await);
        }
        let spread = |topic: &str| {
            let counts: Vec<usize> = held
                .iter()
                .map(|h| h.iter().filter(|t| t.as_str() == topic).count())
                .collect();
            counts.iter().all(|c| *c > 0) && counts.iter().sum::<usize>() == 4
        };
        if spread(&env.input) && spread(&items.repartition) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the two hosts never shared both topics: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.produce(first).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    env.wait_group_caught_up(&items.group, &items.repartition, CAUGHT_UP)
        .await
        .unwrap();
    env.produce(second).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    env.wait_group_caught_up(&items.group, &items.repartition, CAUGHT_UP)
        .await
        .unwrap();
    let report_a = a.stop().await.unwrap();
    let report_b = b.stop().await.unwrap();
    for report in [&report_a, &report_b] {
        let names: Vec<&str> = report.views.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["users", "items"]);
        assert!(
            report.views[1].counters.events_in > 0,
            "each host should consume part of the repartition topic"
        );
    }

    let (_, partition_of) = read_repartition(&env, &items, &events, &positions);
    assert!(
        partition_of.values().collect::<BTreeSet<_>>().len() > 1,
        "items should spread over the repartition topic's partitions"
    );
    let per_item = reference::per_item(&events, &item_of, |i| partition_of[i]);
    let exp_items = reference::expect(&per_item);
    assert_items(&env, &items, Some("items"), &events, &per_item, &exp_items).await;

    // The per-user view (a tumbling hour with grace) is exact too.
    let exp_users = reference::expect_tumbling(&events, HOUR, GRACE, lag);
    let got: BTreeMap<String, serde_json::Value> = env
        .redis_values("users")
        .await
        .unwrap()
        .into_iter()
        .map(|(user, (value, _))| (user, serde_json::from_str(&value).unwrap()))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        exp_users.features.keys().collect::<Vec<_>>(),
        "user redis keys"
    );
    for (user, want) in &exp_users.features {
        let v = &got[user];
        assert_eq!(v["events_last_hour"].as_i64(), Some(want.count), "{user}");
        assert_eq!(
            v["last_action_last_hour"].as_str(),
            Some(want.last_action.as_str()),
            "{user}"
        );
        let sum = v["value_sum_last_hour"].as_f64().unwrap();
        assert!(
            (sum - want.sum).abs() <= 1e-9 * want.sum.abs().max(1.0),
            "{user} sum"
        );
    }
    let user_dead: BTreeSet<String> = env
        .read_topic(&env.dead_letters)
        .unwrap()
        .into_iter()
        .filter(|r| r.headers.get("wafer.view").map(String::as_str) == Some("users"))
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(
        user_dead,
        exp_users.dead.iter().cloned().collect::<BTreeSet<_>>(),
        "user dead letters"
    );
}

/// The topic of each partition the host on `port` holds and has rebuilt
/// (`GET /partitions`); empty while its admin endpoint is not up.
async fn ready_partitions(port: u16) -> Vec<String> {
    let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/partitions")).await else {
        return Vec::new();
    };
    let Ok(snapshot) = r.json::<serde_json::Value>().await else {
        return Vec::new();
    };
    snapshot["partitions"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p["state"] == "ready")
                .filter_map(|p| p["topic"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The input group's committed offsets with their metadata.
fn input_commit(env: &Env) -> TopicPartitionList {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", wafer_tests::brokers())
        .set("group.id", &env.group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..env.partitions {
        tpl.add_partition(&env.input, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
}

/// Commits `tpl` (offsets and metadata) for the input group, which has no
/// member: the state a crash right after that commit would have left.
async fn recommit(env: &Env, tpl: &TopicPartitionList) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", wafer_tests::brokers())
        .set("group.id", &env.group)
        .create()
        .unwrap();
    let deadline = std::time::Instant::now() + CAUGHT_UP;
    while let Err(e) = consumer.commit(tpl, CommitMode::Sync) {
        // The stopped host's membership may take a moment to go.
        assert!(std::time::Instant::now() < deadline, "cannot commit: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_forwarded_again_after_a_crash_count_once() {
    let env = Env::new("repartition-crash", 4).await.unwrap();
    let items = Items::of(&env);
    let Stream {
        events,
        items: item_of,
        positions,
    } = stream(131, 6000);
    let config = config(&env, &wafer_tests::user_activity_plugin(), 0);
    let records = reference::records(&events);
    let quarter = records.len() / 4;
    let (q1, rest) = records.split_at(quarter);
    let (q2, second_half) = rest.split_at(quarter);
    let caught_up = || async {
        env.wait_caught_up(CAUGHT_UP).await.unwrap();
        env.wait_group_caught_up(&items.group, &items.repartition, CAUGHT_UP)
            .await
            .unwrap();
    };

    // The first host reads two quarters; the item view applies and commits
    // both. Then the input's commit is set back to the end of the first
    // quarter: exactly what a crash after forwarding the second quarter (its
    // forwards acknowledged) but before committing its input offsets leaves.
    env.produce(q1).await.unwrap();
    let host = Host::start(config.clone());
    caught_up().await;
    let after_q1 = input_commit(&env);
    env.produce(q2).await.unwrap();
    caught_up().await;
    host.stop().await.unwrap();
    recommit(&env, &after_q1).await;

    // The next host forwards the second quarter again; the second half of the
    // stream is produced only now that the first host is down.
    let port = wafer_tests::free_port();
    let mut config = config;
    config.admin = Some(wafer::config::AdminConfig {
        listen: format!("127.0.0.1:{port}"),
        token: None,
    });
    let host = Host::start(config);
    env.produce(second_half).await.unwrap();
    caught_up().await;
    // The repartition topic's lag is reported, and reaches 0 on every partition.
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let deadline = std::time::Instant::now() + CAUGHT_UP;
    loop {
        let text = match reqwest::get(&metrics).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let lags: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("wafer_consumer_lag{")
                    && l.contains(&format!("topic=\"{}\"", items.repartition))
            })
            .collect();
        if lags.len() == env.partitions as usize && lags.iter().all(|l| l.ends_with(" 0")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "repartition lag never reached 0 on every partition: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = host.stop().await.unwrap();

    let forwardable = |part: &[Option<String>]| part.iter().filter(|i| i.is_some()).count();
    let again = forwardable(&item_of[quarter..2 * quarter]);
    assert!(again > 0);
    let items_report = &report.views[1];
    assert_eq!(items_report.name, "items");
    assert_eq!(
        items_report.counters.duplicates, again as u64,
        "every record forwarded again is dropped as a copy"
    );
    let (forwarded, partition_of) = read_repartition(&env, &items, &events, &positions);
    assert_eq!(forwarded.len(), forwardable(&item_of) + again);

    let per_item = reference::per_item(&events, &item_of, |i| partition_of[i]);
    let exp_items = reference::expect(&per_item);
    assert_items(&env, &items, Some("items"), &events, &per_item, &exp_items).await;
    let exp_users = reference::expect(&events);
    let users = ViewOutputs {
        infix: "users",
        topic: &env.output,
        view: Some("users"),
    };
    assert_view_outputs(&env, &users, &events, &exp_users, false, &BTreeSet::new()).await;

    // A backfill of the item view from its repartition topic drops the same
    // copies: every forwarded record is decided once.
    let dir = std::env::temp_dir().join(format!("wafer-{}", env.name));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("wafer.toml");
    std::fs::write(
        &config_path,
        config_text(&env, &wafer_tests::user_activity_plugin()),
    )
    .unwrap();
    let output = std::process::Command::new(wafer_tests::wafer_binary())
        .args(["backfill", "--config"])
        .arg(&config_path)
        .arg("--out")
        .arg(dir.join("backfill"))
        .args(["--topic", &items.repartition, "--view", "items"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    wafer_tests::succeeded("wafer backfill", output);
    // Each record once: the events read (applied, late or malformed) are
    // the forwardable records, the copies exactly those forwarded again.
    let line = format!(
        "backfill read {} events ({again} re-forwarded copies dropped)",
        forwardable(&item_of)
    );
    assert!(stderr.contains(&line), "`{line}` not in:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_stream_is_replaced_exactly() {
    let env = std::sync::Arc::new(Env::new("repartition-kill", 4).await.unwrap());
    let items = Items::of(&env);
    let Stream {
        events,
        items: item_of,
        positions,
    } = stream(151, 6000);
    let mut config = config(&env, &wafer_tests::user_activity_plugin(), 0);
    config.pipeline.batch_size = 100;

    let host = Host::start(config.clone());
    // The second half of the stream is only produced once the host is down,
    // so it always goes down mid-stream, however slow the machine.
    let (host_down, producer) = env.produce_in_halves(reference::records(&events));
    env.wait_committed(1500, CAUGHT_UP).await;
    host.kill().await;
    let host = Host::start(config);
    host_down.send(()).unwrap();
    producer.await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    env.wait_group_caught_up(&items.group, &items.repartition, CAUGHT_UP)
        .await
        .unwrap();
    let report = host.stop().await.unwrap();
    assert!(
        report.views[0].counters.replayed > 0,
        "the user view rebuilds"
    );

    // Whatever the crash left forwarded twice was dropped once per copy.
    let (forwarded, partition_of) = read_repartition(&env, &items, &events, &positions);
    let copies = forwarded.len() - item_of.iter().filter(|i| i.is_some()).count();
    assert_eq!(report.views[1].counters.duplicates, copies as u64);
    let per_item = reference::per_item(&events, &item_of, |i| partition_of[i]);
    let exp_items = reference::expect(&per_item);
    assert_items(&env, &items, Some("items"), &events, &per_item, &exp_items).await;
    let exp_users = reference::expect(&events);
    let users = ViewOutputs {
        infix: "users",
        topic: &env.output,
        view: Some("users"),
    };
    assert_view_outputs(&env, &users, &events, &exp_users, false, &BTreeSet::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_one_repartitioned_view_forwards_and_computes_it() {
    // The input source feeds no view of its own: it only forwards.
    let env = Env::new("repartition-only", 4).await.unwrap();
    let items = Items::of(&env);
    let Stream {
        events,
        items: item_of,
        positions,
    } = stream(173, 3000);
    let text = format!(
        r#"{sources}
[[views]]
name = "items"
repartition_topic = "{repartition}"
repartition_partitions = 2
output_topic = "{output}"
[views.plugin]
path = "{plugin}"
entity_fields = ["item_id"]
key_template = "{prefix}:items:{{item_id}}"
watch = false
"#,
        sources = env.sources_toml(200),
        repartition = items.repartition,
        output = items.output,
        plugin = wafer_tests::user_activity_plugin().display(),
        prefix = env.key_prefix,
    );
    let config = wafer::config::Config::parse(&text, "one view").unwrap();
    env.produce(&reference::records(&events)).await.unwrap();
    let host = Host::start(config);
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    env.wait_group_caught_up(&items.group, &items.repartition, CAUGHT_UP)
        .await
        .unwrap();
    let report = host.stop().await.unwrap();
    assert_eq!(report.views.len(), 1);
    assert_eq!(report.views[0].counters.duplicates, 0);

    let (forwarded, partition_of) = read_repartition(&env, &items, &events, &positions);
    assert_eq!(
        forwarded.len(),
        item_of.iter().filter(|i| i.is_some()).count()
    );
    assert_eq!(
        partition_of.values().collect::<BTreeSet<_>>(),
        BTreeSet::from([&0, &1]),
        "the configured partition count"
    );
    let per_item = reference::per_item(&events, &item_of, |i| partition_of[i]);
    let exp_items = reference::expect(&per_item);
    assert_items(&env, &items, None, &events, &per_item, &exp_items).await;
}

/// The host is ready only once both of its consumer groups have assigned their
/// partitions and every one of them is rebuilt: the input topic's group and the
/// item view's `<group>.items`, which join separately. A member of the item
/// group that stops polling holds its rebalance (the eager `range` assignor, so
/// it must give its partitions back before the group can assign them) until its
/// `max.poll.interval.ms` has passed, while the input group, the host alone,
/// assigns at once. Every snapshot of `GET /partitions` is checked: one ready
/// with only the input group's partitions fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_the_repartition_group_assignment() {
    let env = Env::new("repartition-ready", 3).await.unwrap();
    let items = Items::of(&env);
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", wafer_tests::brokers())
            .create()
            .unwrap();
    let topic = rdkafka::admin::NewTopic::new(
        &items.repartition,
        3,
        rdkafka::admin::TopicReplication::Fixed(1),
    );
    for created in admin
        .create_topics([&topic], &rdkafka::admin::AdminOptions::new())
        .await
        .unwrap()
    {
        created.unwrap();
    }
    let stalled: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", wafer_tests::brokers())
        .set("group.id", &items.group)
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "8000")
        .create()
        .unwrap();
    stalled.subscribe(&[&items.repartition]).unwrap();
    let deadline = std::time::Instant::now() + CAUGHT_UP;
    while stalled.assignment().unwrap().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "never assigned");
        stalled.poll(Duration::from_millis(100));
    }
    // From here on it is never polled again.

    let port = wafer_tests::free_port();
    let mut config = config(&env, &wafer_tests::user_activity_plugin(), 0);
    config.admin = Some(wafer::config::AdminConfig {
        listen: format!("127.0.0.1:{port}"),
        token: None,
    });
    let kafka = config.kafka.as_mut().unwrap();
    kafka
        .properties
        .insert("partition.assignment.strategy".into(), "range".into());
    let host = Host::start(config);
    let mut snapshots: Vec<serde_json::Value> = Vec::new();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "never ready; last: {:?}",
            snapshots.last()
        );
        let snapshot = match reqwest::get(format!("http://127.0.0.1:{port}/partitions")).await {
            Ok(r) => r.json::<serde_json::Value>().await.unwrap(),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        snapshots.push(snapshot.clone());
        if snapshot["ready"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let topic_partitions =
        |topic: &str| -> Vec<(String, i64)> { (0..3).map(|p| (topic.to_owned(), p)).collect() };
    let inputs: BTreeSet<(String, i64)> = topic_partitions(&env.input).into_iter().collect();
    // Once the stalled member is gone, the host holds every partition of both topics.
    let all: BTreeSet<(String, i64)> = inputs
        .iter()
        .cloned()
        .chain(topic_partitions(&items.repartition))
        .collect();
    let mut held_back = 0;
    for s in &snapshots {
        let parts = s["partitions"].as_array().unwrap();
        let listed: BTreeSet<(String, i64)> = parts
            .iter()
            .map(|p| {
                (
                    p["topic"].as_str().unwrap().to_owned(),
                    p["partition"].as_i64().unwrap(),
                )
            })
            .collect();
        let waiting: Vec<&str> = s["waiting_for"]
            .as_array()
            .map(|w| w.iter().map(|g| g.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert!(
            waiting
                .iter()
                .all(|g| *g == env.group.as_str() || *g == items.group.as_str()),
            "{s}"
        );
        let all_ready = parts.iter().all(|p| p["state"] == "ready");
        assert_eq!(
            s["ready"] == true,
            s["running"] == true && waiting.is_empty() && all_ready,
            "inconsistent snapshot {s}"
        );
        assert_eq!(s["joined"] == true, waiting.is_empty(), "{s}");
        if s["ready"] == true {
            assert_eq!(listed, all, "ready with partitions missing: {s}");
        }
        if listed == inputs && all_ready && waiting == [items.group.as_str()] {
            held_back += 1;
        }
    }
    assert!(
        held_back > 0,
        "never seen: the input group's partitions rebuilt while the item group is held"
    );
    host.stop().await.unwrap();
    tokio::task::spawn_blocking(move || drop(stalled))
        .await
        .unwrap();
}
