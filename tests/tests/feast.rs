//! Feast reads what Wafer wrote: Wafer runs end to end on real Kafka and Redis
//! with two `feast`-layout views (keyed by user, and by the (user, shop) pair
//! with an int64 join key), then Feast's own SDK (`get_online_features`, in
//! the pinned venv of scripts/feast/setup-venv.sh) reads the features and
//! their event timestamps, which are compared with the reference model.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use wafer_tests::reference::{self, Expected, GenEvent, Rng};
use wafer_tests::{Env, Host};

const CAUGHT_UP: Duration = Duration::from_secs(120);
const FEATURES: [&str; 4] = [
    "event_count_1h",
    "unique_actions_1h",
    "avg_value_1h",
    "last_action",
];

fn feast_python() -> PathBuf {
    let python = wafer_tests::repo_root().join(".toolchains/feast-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/feast/setup-venv.sh (`make test` does) to install the pinned Feast",
        python.display()
    );
    python
}

/// The `host:port[,db=N]` Feast connection string of the test's Redis.
fn feast_connection_string() -> String {
    let url = wafer_tests::redis_url();
    let rest = url.trim_start_matches("redis://");
    match rest.split_once('/') {
        Some((addr, db)) if !db.is_empty() => format!("{addr},db={db}"),
        Some((addr, _)) => addr.to_owned(),
        None => rest.to_owned(),
    }
}

fn config(env: &Env, project: &str) -> wafer::config::Config {
    let text = format!(
        r#"{sources}
[[views]]
name = "activity"
[views.plugin]
path = "{plugin}"
layout = "feast"
ttl_secs = 3600
watch = false
[views.plugin.feast]
project = "{project}"
feature_view = "user_activity"

[[views]]
name = "by_shop"
[views.plugin]
path = "{plugin}"
entity_fields = ["user_id", "shop"]
layout = "feast"
ttl_secs = 3600
watch = false
[views.plugin.feast]
project = "{project}"
feature_view = "user_shop_activity"
join_key_types = {{ shop = "int64" }}
"#,
        sources = env.sources_toml(300),
        plugin = wafer_tests::user_activity_plugin().display(),
    );
    wafer::config::Config::parse(&text, "feast test").unwrap()
}

/// Adds a `shop` (1 to 3) to every JSON event; returns the events and, for the
/// reference of the (user, shop) view, the same events with the pair's id as user.
fn with_shops(events: Vec<GenEvent>) -> (Vec<GenEvent>, Vec<GenEvent>) {
    let mut rng = Rng::new(7);
    let mut by_shop = Vec::with_capacity(events.len());
    let mut out = Vec::with_capacity(events.len());
    for mut e in events {
        let shop = 1 + rng.below(3);
        let mut pair = e.clone();
        if let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(&e.payload) {
            object.insert("shop".into(), shop.into());
            e.payload = Value::Object(object).to_string();
            pair.payload = e.payload.clone();
            pair.user = format!("{}:{shop}", e.user);
        }
        out.push(e);
        by_shop.push(pair);
    }
    (out, by_shop)
}

/// Asks Feast for `features` of `view` for every entity of `exp` (tombstoned ones too).
fn request(view: &str, exp: &Expected, rows: impl Fn(&str) -> Value) -> Value {
    json!({
        "feature_view": view,
        "features": FEATURES,
        "entity_rows": exp.ever_applied.iter().map(|e| rows(e)).collect::<Vec<_>>(),
    })
}

/// Checks one Feast answer against the reference and the `computed_at` of the
/// entity's last feature record.
fn check(
    view: &str,
    answer: &Value,
    exp: &Expected,
    events: &[GenEvent],
    computed_at: &BTreeMap<String, i64>,
) {
    let partition_of: BTreeMap<&str, i32> = events
        .iter()
        .map(|e| (e.user.as_str(), e.partition))
        .collect();
    let values = &answer["values"];
    let mut present = 0;
    for (i, entity) in exp.ever_applied.iter().enumerate() {
        let got = |f: &str| &values[f][i];
        let ts = |f: &str| answer["event_ms"][f][i].as_i64();
        let Some(want) = exp.features.get(entity) else {
            for f in FEATURES {
                assert!(
                    got(f).is_null(),
                    "{view} {entity}: tombstoned, but {f} = {}",
                    got(f)
                );
                assert_eq!(
                    ts(f),
                    None,
                    "{view} {entity}: tombstoned, but has an event time"
                );
            }
            continue;
        };
        present += 1;
        assert_eq!(
            got("event_count_1h"),
            &json!(want.count),
            "{view} {entity} count"
        );
        assert_eq!(
            got("unique_actions_1h"),
            &json!(want.unique),
            "{view} {entity} unique"
        );
        let avg = got("avg_value_1h").as_f64().unwrap();
        assert!(
            (avg - want.avg).abs() <= 1e-9 * want.avg.abs().max(1.0),
            "{view} {entity} avg {avg} vs {}",
            want.avg
        );
        assert_eq!(
            got("last_action"),
            &json!(want.last_action),
            "{view} {entity} last_action"
        );
        let stream_time = exp.stream_time[&partition_of[entity.as_str()]];
        for f in FEATURES {
            let at = ts(f).unwrap_or_else(|| panic!("{view} {entity}: no event time"));
            assert!(
                want.newest_ms <= at && at <= stream_time,
                "{view} {entity}: event time {at} outside [{}, {stream_time}]",
                want.newest_ms
            );
            assert_eq!(
                Some(&at),
                computed_at.get(entity),
                "{view} {entity}: event time vs computed_at"
            );
        }
    }
    assert!(
        present > 10,
        "{view}: too few entities with features ({present})"
    );
    assert!(
        present < exp.ever_applied.len(),
        "{view}: the stream should empty some windows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feast_reads_what_wafer_wrote() {
    let python = feast_python();
    let env = Env::new("feast", 2).await.unwrap();
    let (events, by_shop) = with_shops(reference::generate(71, 3000, 60, 2));
    let exp_user = reference::expect(&events);
    let exp_pair = reference::expect(&by_shop);
    let project = env
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>();

    let host = Host::start(config(&env, &project));
    let records: Vec<(i32, String, String)> = events
        .iter()
        .map(|e| (e.partition, e.user.clone(), e.payload.clone()))
        .collect();
    env.produce(&records).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    host.stop().await.unwrap();

    // The as-of time of each entity's last feature record (both views share the topic).
    let mut computed_at = BTreeMap::new();
    for r in env.read_topic(&env.output).unwrap() {
        let key = r.key.unwrap();
        match r.value {
            Some(v) => {
                let v: Value = serde_json::from_str(&v).unwrap();
                let at = wafer::event::parse_timestamp(v["computed_at"].as_str().unwrap()).unwrap();
                computed_at.insert(key, at);
            }
            None => {
                computed_at.remove(&key);
            }
        }
    }

    let repo = std::env::temp_dir().join(format!("{}-feast-repo", env.name));
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("feature_store.yaml"),
        format!(
            "project: {project}\nprovider: local\nregistry: {registry}\n\
             online_store:\n  type: redis\n  connection_string: \"{redis}\"\n\
             offline_store:\n  type: file\nentity_key_serialization_version: 3\n",
            registry = repo.join("registry.db").display(),
            redis = feast_connection_string(),
        ),
    )
    .unwrap();
    let requests = json!([
        request("user_activity", &exp_user, |u| json!({ "user_id": u })),
        request("user_shop_activity", &exp_pair, |pair| {
            let (user, shop) = pair.split_once(':').unwrap();
            json!({ "user_id": user, "shop": shop.parse::<i64>().unwrap() })
        }),
    ]);
    let script = wafer_tests::repo_root().join("tests/feast/read_online.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(&repo)
        .env("WAFER_FEAST_DATA", repo.join("data.parquet"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(requests.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Value = serde_json::from_slice(&output.stdout).unwrap();
    check(
        "user_activity",
        &answers[0],
        &exp_user,
        &events,
        &computed_at,
    );
    check(
        "user_shop_activity",
        &answers[1],
        &exp_pair,
        &by_shop,
        &computed_at,
    );
    let _ = std::fs::remove_dir_all(&repo);
}
