//! The host's HTTP server on a real pipeline (Kafka + Redis): feature lookups
//! against Redis and the reference model, Prometheus metrics against the run
//! report, consumer lag, probes and the bearer token.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wafer_tests::reference;
use wafer_tests::{Env, Host};

const CAUGHT_UP: Duration = Duration::from_secs(120);
const TOKEN: &str = "http-test-token";
const VIEW: &str = "user-activity";

/// One sample of a Prometheus text exposition: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (samples only; comments skipped).
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut value = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => value.push('\n'),
                                Some(other) => value.push(other),
                                None => panic!("dangling escape in {line}"),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert(key, value);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name.to_owned(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The value of `name` whose labels include `labels`.
fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn get(&self, path: &str, token: bool) -> (u16, String) {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if token {
            r = r.bearer_auth(TOKEN);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "HTTP server never came up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metrics(&self) -> Vec<Sample> {
        let (status, text) = self.get("/metrics", true).await;
        assert_eq!(status, 200, "{text}");
        parse_metrics(&text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_metrics_and_probes_match_the_run() {
    let env = Env::new("http", 4).await.unwrap();
    let events = reference::generate(31, 3000, 150, 4);
    let exp = reference::expect(&events);
    assert!(!exp.late.is_empty() && !exp.dead.is_empty());
    env.produce(&reference::records(&events)).await.unwrap();

    let port = wafer_tests::free_port();
    let mut config = env.config();
    config.admin = Some(wafer::config::AdminConfig {
        listen: format!("127.0.0.1:{port}"),
        token: Some(TOKEN.into()),
    });
    let client = Client {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let host = Host::start(config);
    client.wait_up().await;
    env.wait_caught_up(CAUGHT_UP).await.unwrap();

    // Probes need no token; everything else does.
    assert_eq!(client.get("/healthz", false).await.0, 200);
    assert_eq!(client.get("/readyz", false).await, (200, "ready".into()));
    assert_eq!(client.get("/metrics", false).await.0, 401);
    let some_user = exp.features.keys().next().unwrap().clone();
    assert_eq!(
        client
            .get(&format!("/features/{VIEW}/{some_user}"), false)
            .await
            .0,
        401
    );

    // Features: byte-for-byte the Redis value, and the reference's numbers.
    let redis = env.redis_features().await.unwrap();
    assert_eq!(redis.len(), exp.features.len());
    for user in exp.features.keys().step_by(7).take(12) {
        let (status, body) = client.get(&format!("/features/{VIEW}/{user}"), true).await;
        assert_eq!(status, 200, "{user}: {body}");
        assert_eq!(
            body, redis[user].0,
            "{user}: served value differs from Redis"
        );
        let got: serde_json::Value = serde_json::from_str(&body).unwrap();
        let want = &exp.features[user];
        assert_eq!(got["user_id"], user.as_str());
        assert_eq!(got["event_count_1h"], want.count, "{user}");
        assert_eq!(got["unique_actions_1h"], want.unique, "{user}");
        assert_eq!(got["last_action"], want.last_action.as_str(), "{user}");
        let avg = got["avg_value_1h"].as_f64().unwrap();
        assert!((avg - want.avg).abs() <= 1e-9 * want.avg.abs().max(1.0));
    }
    let (status, body) = client
        .get(&format!("/features/{VIEW}/no-such-user"), true)
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = client
        .get(&format!("/features/no-such-view/{some_user}"), true)
        .await;
    assert_eq!(status, 404, "{body}");

    // Metrics: the counters of the view, and zero lag once the lag reader has
    // seen the final commits.
    let deadline = Instant::now() + Duration::from_secs(30);
    let samples = loop {
        let samples = client.metrics().await;
        let lags: Vec<f64> = (0..env.partitions)
            .filter_map(|p| {
                value_of(
                    &samples,
                    "wafer_consumer_lag",
                    &[("topic", &env.input), ("partition", &p.to_string())],
                )
            })
            .collect();
        if lags.len() == env.partitions as usize && lags.iter().all(|l| *l == 0.0) {
            break samples;
        }
        assert!(
            Instant::now() < deadline,
            "lag never reached 0 on every partition: {lags:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let view = [("view", VIEW)];
    let metric = |name: &str| value_of(&samples, name, &view).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(metric("wafer_events_in_total"), events.len() as f64);
    assert_eq!(metric("wafer_late_total"), exp.late.len() as f64);
    assert_eq!(metric("wafer_dead_letters_total"), exp.dead.len() as f64);
    assert_eq!(metric("wafer_plugin_errors_total"), 0.0);
    assert!(metric("wafer_commits_total") >= 1.0);
    assert_eq!(value_of(&samples, "wafer_ready", &[]), Some(1.0));
    assert_eq!(
        value_of(
            &samples,
            "wafer_plugin_info",
            &[("view", VIEW), ("version", "0.1.0"), ("state", "active")]
        ),
        Some(1.0)
    );
    for p in 0..env.partitions {
        let labels = [("topic", env.input.as_str()), ("partition", &p.to_string())];
        let committed = value_of(&samples, "wafer_consumer_committed_offset", &labels).unwrap();
        let end = value_of(&samples, "wafer_consumer_end_offset", &labels).unwrap();
        assert_eq!(committed, end, "partition {p}");
    }

    // Latency histograms: every flush wrote Redis once and waited for its
    // Kafka acknowledgements once; every commit was timed; the plugin ran.
    let count = |name: &str, labels: &[(&str, &str)]| {
        value_of(&samples, &format!("{name}_count"), labels)
            .unwrap_or_else(|| panic!("{name}_count"))
    };
    let inf = |name: &str, labels: &[(&str, &str)]| {
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        value_of(&samples, &format!("{name}_bucket"), &with_le).unwrap()
    };
    let plugin_calls = count("wafer_plugin_call_duration_seconds", &view);
    assert!(plugin_calls >= 1.0);
    assert_eq!(
        inf("wafer_plugin_call_duration_seconds", &view),
        plugin_calls
    );
    // One swap-pause observation per swap: none here (no reload).
    assert_eq!(
        count("wafer_plugin_swap_pause_seconds", &view),
        metric("wafer_reloads_total")
    );
    let redis_writes = count("wafer_redis_write_duration_seconds", &[]);
    assert!(redis_writes >= 1.0);
    assert_eq!(
        count("wafer_kafka_ack_wait_duration_seconds", &[]),
        redis_writes
    );
    assert!(count("wafer_kafka_commit_duration_seconds", &[]) >= metric("wafer_commits_total"));
    // Every batch written was flushed and handed off once.
    assert_eq!(count("wafer_flush_duration_seconds", &[]), redis_writes);
    assert_eq!(
        count("wafer_writer_wait_duration_seconds", &[]),
        redis_writes
    );
    assert_eq!(metric("wafer_plugin_quarantined"), 0.0);
    // Window state: the entities with a non-empty window and their events,
    // as the reference model counts them.
    let held: i64 = exp.features.values().map(|f| f.count).sum();
    assert_eq!(metric("wafer_window_entities"), exp.features.len() as f64);
    assert_eq!(metric("wafer_window_events"), held as f64);
    for p in 0..env.partitions {
        let labels = [("topic", env.input.as_str()), ("partition", &p.to_string())];
        assert_eq!(
            value_of(&samples, "wafer_partition_ready", &labels),
            Some(1.0)
        );
    }

    // Per-partition readiness: a fresh group has nothing to replay.
    let (status, body) = client.get("/partitions", true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(client.get("/partitions", false).await.0, 401);
    let partitions: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(partitions["ready"], true);
    let listed = partitions["partitions"].as_array().unwrap();
    assert_eq!(listed.len(), env.partitions as usize);
    for p in listed {
        assert_eq!(p["state"], "ready", "{p}");
        assert!(p.get("replay").is_none(), "{p}");
    }

    let report = host.stop().await.unwrap();
    assert_eq!(
        (
            metric("wafer_window_entities") as usize,
            metric("wafer_window_events") as usize
        ),
        report.state
    );
    let counters = &report
        .views
        .iter()
        .find(|v| v.name == VIEW)
        .unwrap()
        .counters;
    assert_eq!(metric("wafer_events_in_total"), counters.events_in as f64);
    assert_eq!(metric("wafer_late_total"), counters.late as f64);
    assert_eq!(
        metric("wafer_dead_letters_total"),
        counters.dead_letters as f64
    );
    assert_eq!(metric("wafer_updates_total"), counters.updates as f64);
    assert_eq!(metric("wafer_tombstones_total"), counters.tombstones as f64);
}

#[test]
fn the_metrics_parser_reads_labels_and_escapes() {
    let samples = parse_metrics(
        "# HELP x y\n# TYPE x counter\nx{a=\"1\",b=\"q\\\"u\\\\o\"} 3\nwafer_ready 1\n",
    );
    assert_eq!(samples.len(), 2);
    assert_eq!(
        value_of(&samples, "x", &[("a", "1"), ("b", "q\"u\\o")]),
        Some(3.0)
    );
    assert_eq!(value_of(&samples, "wafer_ready", &[]), Some(1.0));
}
