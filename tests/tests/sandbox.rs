//! Misbehaving plugins (fixtures built by `make fixtures`) must not hurt the
//! host: the offending entities are isolated and dead-lettered, the other
//! entities' features stay exact, and a plugin that keeps failing is
//! quarantined or paused as configured.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use wafer::pipeline::FailurePolicy;
use wafer::plugin::{PluginEngine, PluginLimits};
use wafer_tests::outputs::assert_outputs;
use wafer_tests::reference::{self, GenEvent};
use wafer_tests::{Env, Host};

const CAUGHT_UP: Duration = Duration::from_secs(180);

/// An event of `user` on `partition` at `time_ms` with `action`.
fn event(user: &str, partition: i32, time_ms: i64, action: &str, value: f64) -> GenEvent {
    let payload = serde_json::json!({
        "user_id": user,
        "action": action,
        "value": value,
        "timestamp": time_ms,
    })
    .to_string();
    GenEvent {
        partition,
        user: user.to_owned(),
        action: action.to_owned(),
        value,
        time_ms,
        payload,
        malformed: None,
    }
}

#[test]
fn a_plugin_importing_wasi_is_refused_at_load() {
    let engine = PluginEngine::new().unwrap();
    let err = engine
        .load_file(
            &wafer_tests::fixture("wasi_import.wasm"),
            PluginLimits::default(),
        )
        .err()
        .expect("a plugin importing WASI must not load")
        .to_string();
    assert!(err.contains("does not grant"), "{err}");
    assert!(err.contains("wasi:cli/stdout"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_entities_are_isolated_and_dead_lettered() {
    let env = Env::new("sandbox", 4).await.unwrap();
    let mut events = reference::generate(71, 3000, 200, 4);
    let mut end_of: BTreeMap<i32, i64> = BTreeMap::new();
    for e in &events {
        let t = end_of.entry(e.partition).or_insert(e.time_ms);
        *t = (*t).max(e.time_ms);
    }
    // (action, failure kind, words of the reason)
    let kinds = [
        ("explode", "trap", "panicked"),
        ("spin", "trap", "call deadline"),
        ("hog", "trap", "memory cap"),
        ("huge", "bad-output", "output cap"),
        ("arity", "bad-output", "3 columns returned"),
        (
            "wrongtype",
            "bad-output",
            "declared float64 but returned as int64",
        ),
        ("error", "error", "refusing on purpose"),
    ];
    let mut excluded = BTreeSet::new();
    for (i, (action, _, _)) in kinds.iter().enumerate() {
        let user = format!("bad_{action}");
        let partition = (i % 4) as i32;
        for k in 0..3 {
            events.push(event(
                &user,
                partition,
                end_of[&partition] - 1000 * k,
                action,
                1.0 + k as f64,
            ));
        }
        excluded.insert(user);
    }
    // A slow plugin call is within its deadline: that user's features are exact.
    events.push(event("slow_user", 1, end_of[&1] - 5, "slow", 4.0));
    let exp = reference::expect(&events);
    env.produce(&reference::records(&events)).await.unwrap();

    let mut config = env.config();
    config.plugin_mut().path = wafer_tests::fixture("misbehave.wasm");
    config.plugin_mut().call_timeout_ms = 250;
    config.plugin_mut().max_output_mb = 4;
    let host = Host::start(config);
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    assert!(report.counters.plugin_traps >= 3, "{:?}", report.counters);
    assert_eq!(report.counters.quarantines, 0);

    assert_outputs(&env, &events, &exp, true, &excluded).await;
    assert!(env
        .redis_features()
        .await
        .unwrap()
        .contains_key("slow_user"));

    // Each offending entity is dead-lettered with the plugin, the kind of
    // failure and the source position of one of its events.
    let input = env.read_topic(&env.input).unwrap();
    let plugin_dead: Vec<_> = env
        .read_topic(&env.dead_letters)
        .unwrap()
        .into_iter()
        .filter(|r| r.headers.contains_key("wafer.plugin"))
        .collect();
    for (action, kind, reason) in kinds {
        let user = format!("bad_{action}");
        let mine: Vec<_> = plugin_dead
            .iter()
            .filter(|r| r.key.as_deref() == Some(&user))
            .collect();
        assert!(!mine.is_empty(), "{user} was not dead-lettered");
        for r in mine {
            assert!(r.headers["wafer.plugin"].starts_with("misbehave@0.1.0#"));
            assert_eq!(r.headers["wafer.error.kind"], kind, "{user}");
            let said = &r.headers["wafer.reason"];
            assert!(said.contains(reason), "{user}: {said}");
            let v: serde_json::Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
            assert_eq!(v["entity"], user.as_str());
            assert_eq!(v["source"]["topic"], env.input.as_str());
            let (p, o) = (
                v["source"]["partition"].as_i64().unwrap(),
                v["source"]["offset"].as_i64().unwrap(),
            );
            let source = input
                .iter()
                .find(|r| i64::from(r.partition) == p && r.offset == o)
                .unwrap();
            assert_eq!(
                source.key.as_deref(),
                Some(user.as_str()),
                "{user}: source position"
            );
        }
    }
    assert!(plugin_dead
        .iter()
        .all(|r| excluded.contains(r.key.as_deref().unwrap())));
}

/// 300 events over 20 users whose every action makes the fixture return an error.
fn always_failing() -> Vec<GenEvent> {
    (0..300)
        .map(|i| {
            let user = format!("user_{}", i % 20);
            event(
                &user,
                i % 20 % 2,
                reference::START_MS + i64::from(i) * 1000,
                "error",
                1.0,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_failing_every_call_is_quarantined() {
    let env = Env::new("quarantine", 2).await.unwrap();
    env.produce(&reference::records(&always_failing()))
        .await
        .unwrap();
    let mut config = env.config();
    config.plugin_mut().path = wafer_tests::fixture("misbehave.wasm");
    config.plugin_mut().max_consecutive_failures = 3;
    config.pipeline.batch_size = 50;
    let host = Host::start(config);
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    assert_eq!(report.counters.quarantines, 1);
    assert_eq!(
        report.counters.plugin_errors, 3,
        "no call after the quarantine"
    );
    assert!(report.counters.plugin_skipped > 0);
    assert!(env.redis_features().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pause_policy_stops_consuming_and_committing() {
    let env = Env::new("pause", 2).await.unwrap();
    env.produce(&reference::records(&always_failing()))
        .await
        .unwrap();
    let mut config = env.config();
    config.plugin_mut().path = wafer_tests::fixture("misbehave.wasm");
    config.plugin_mut().max_consecutive_failures = 3;
    config.plugin_mut().on_failure = FailurePolicy::Pause;
    config.pipeline.batch_size = 50;
    let host = Host::start(config);
    // Give it time to consume everything it could; it must commit nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = host.stop().await.unwrap();
    assert_eq!(report.counters.quarantines, 1);
    assert_eq!(
        env.committed().unwrap(),
        vec![-1, -1],
        "nothing may be committed"
    );
    assert!(env.redis_features().await.unwrap().is_empty());
}
