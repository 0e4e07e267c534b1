//! Several feature views on one stream: each view has its own plugin, online
//! keys, output topic and window state; a failing plugin in one view leaves
//! the other exact; both are rebuilt exactly after a restart.

use std::collections::BTreeSet;
use std::time::Duration;

use wafer_tests::outputs::{assert_view_outputs, ViewOutputs};
use wafer_tests::reference::{self, GenEvent};
use wafer_tests::{Env, Host};

const CAUGHT_UP: Duration = Duration::from_secs(120);

fn two_views(env: &Env, shadow_topic: &str) -> wafer::config::Config {
    let fixture = wafer_tests::repo_root().join("target/fixtures/misbehave.wasm");
    assert!(
        fixture.exists(),
        "{} is missing: run `make fixtures`",
        fixture.display()
    );
    let text = format!(
        r#"{sources}
[[views]]
name = "main"
[views.plugin]
path = "{main}"
key_template = "{prefix}:features:{{user_id}}"
watch = false

[[views]]
name = "shadow"
output_topic = "{shadow_topic}"
[views.plugin]
path = "{shadow}"
key_template = "{prefix}:shadow:{{user_id}}"
call_timeout_ms = 250
watch = false
"#,
        sources = env.sources_toml(200),
        main = wafer_tests::user_activity_plugin().display(),
        shadow = fixture.display(),
        prefix = env.key_prefix,
    );
    wafer::config::Config::parse(&text, "views test").unwrap()
}

fn event(user: &str, partition: i32, time_ms: i64, action: &str) -> GenEvent {
    let payload = serde_json::json!({
        "user_id": user, "action": action, "value": 2.5, "timestamp": time_ms,
    })
    .to_string();
    GenEvent {
        partition,
        user: user.to_owned(),
        action: action.to_owned(),
        value: 2.5,
        time_ms,
        payload,
        malformed: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_views_on_one_stream_are_independent_and_survive_a_restart() {
    let env = Env::new("views", 4).await.unwrap();
    let shadow_topic = format!("{}.shadow-features", env.name);
    let mut events = reference::generate(101, 5000, 250, 4);
    let end = events
        .iter()
        .filter(|e| e.partition == 2)
        .map(|e| e.time_ms)
        .max()
        .unwrap();
    for k in 0..3 {
        events.push(event("bad_explode", 2, end - 1000 * k, "explode"));
    }
    let exp = reference::expect(&events);
    let records: Vec<_> = events
        .iter()
        .map(|e| (e.partition, e.user.clone(), e.payload.clone()))
        .collect();
    let (before, after) = records.split_at(2500);

    // A first run takes half the stream; the second run must rebuild both
    // views' windows from their checkpoints to compute the rest exactly.
    env.produce(before).await.unwrap();
    let host = Host::start(two_views(&env, &shadow_topic));
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let first = host.stop().await.unwrap();
    assert_eq!(first.views.len(), 2);
    env.produce(after).await.unwrap();
    let host = Host::start(two_views(&env, &shadow_topic));
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    assert!(
        report.views.iter().all(|v| v.counters.replayed > 0),
        "both views rebuild"
    );
    let names: Vec<&str> = report.views.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["main", "shadow"]);

    // The user-activity view is exact for everyone, the poisoned user included.
    let main = ViewOutputs {
        infix: "features",
        topic: &env.output,
        view: Some("main"),
    };
    assert_view_outputs(&env, &main, &events, &exp, false, &BTreeSet::new()).await;
    // The misbehaving view is exact for everyone but the user it fails on.
    let shadow = ViewOutputs {
        infix: "shadow",
        topic: &shadow_topic,
        view: Some("shadow"),
    };
    let excluded = BTreeSet::from(["bad_explode".to_owned()]);
    assert_view_outputs(&env, &shadow, &events, &exp, false, &excluded).await;

    let plugin_failures: Vec<_> = env
        .read_topic(&env.dead_letters)
        .unwrap()
        .into_iter()
        .filter(|r| r.headers.contains_key("wafer.plugin"))
        .collect();
    assert!(!plugin_failures.is_empty());
    assert!(plugin_failures
        .iter()
        .all(|r| r.headers["wafer.view"] == "shadow" && r.key.as_deref() == Some("bad_explode")));
}
