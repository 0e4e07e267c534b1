//! Tumbling windows with a grace period against real Kafka and Redis (the
//! `tumbling` fixture: the last completed hour, ten minutes of grace): results
//! when an hour fires, a correction when a late event arrives within grace,
//! the late-events topic once the hour is closed, and the end state of a
//! generated stream compared with the naive reference, with and without a
//! crash and a rebuild from the checkpoint, and with the hour tiled (one
//! partial aggregate per instance, no event held).

use std::collections::BTreeMap;
use std::time::Duration;

use wafer_tests::reference::{self, START_MS};
use wafer_tests::{Env, Host};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const GRACE: i64 = 10 * MIN;
const CAUGHT_UP: Duration = Duration::from_secs(120);

fn config(env: &Env, out_of_orderness_ms: u64) -> wafer::config::Config {
    let mut config = env.config();
    config.plugin_mut().path = wafer_tests::fixture("tumbling.wasm");
    config.pipeline.out_of_orderness_ms = out_of_orderness_ms;
    config
}

/// The same, with the hour kept as one partial aggregate per instance (tiled:
/// windows from one hour up are).
fn tiled_config(env: &Env, out_of_orderness_ms: u64) -> wafer::config::Config {
    let mut config = config(env, out_of_orderness_ms);
    config.plugin_mut().tile_min_window_ms = HOUR as u64;
    config
}

fn event(user: &str, minute: i64, action: &str, value: f64) -> (i32, String, String) {
    let payload = serde_json::json!({
        "user_id": user, "action": action, "value": value, "timestamp": START_MS + minute * MIN,
    });
    (0, user.to_owned(), payload.to_string())
}

/// Redis values by user, as JSON.
async fn features(env: &Env) -> BTreeMap<String, serde_json::Value> {
    env.redis_features()
        .await
        .unwrap()
        .into_iter()
        .map(|(user, (value, _))| (user, serde_json::from_str(&value).unwrap()))
        .collect()
}

/// (events, sum, variance, last action) of a feature record.
fn hour(v: &serde_json::Value) -> (i64, f64, f64, String) {
    (
        v["events_last_hour"].as_i64().unwrap(),
        v["value_sum_last_hour"].as_f64().unwrap(),
        v["value_variance_last_hour"].as_f64().unwrap(),
        v["last_action_last_hour"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_fires_takes_a_correction_within_grace_then_sends_late_events_aside() {
    hand_worked_hours("tumbling", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiled_hour_fires_and_takes_corrections_the_same() {
    hand_worked_hours("tumbling-tiled-hours", true).await;
}

/// Hours by hand: firing, a correction within grace, a late event past it,
/// tombstones once nothing is shown; `tiled` keeps the hour as partials.
async fn hand_worked_hours(test: &str, tiled: bool) {
    let config = if tiled { tiled_config } else { config };
    let env = Env::new(test, 1).await.unwrap();
    let host = Host::start(config(&env, 0));
    let step = |records: Vec<(i32, String, String)>| {
        let env = &env;
        async move {
            env.produce(&records).await.unwrap();
            env.wait_caught_up(CAUGHT_UP).await.unwrap();
        }
    };

    // Hour 00:00-01:00 fires when the watermark (= stream time here) reaches 01:00.
    step(vec![
        event("a", 10, "view", 1.0),
        event("a", 20, "click", 3.0),
        event("b", 30, "view", 5.0),
        event("c", 65, "view", 7.0),
    ])
    .await;
    let got = features(&env).await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["a", "b"],
        "c's hour has not fired"
    );
    assert_eq!(hour(&got["a"]), (2, 4.0, 1.0, "click".into()));
    assert_eq!(hour(&got["b"]), (1, 5.0, 0.0, "view".into()));

    // At watermark 01:05 the hour is within its grace period: a late event
    // updates it and a's features are re-emitted (the correction).
    step(vec![event("a", 50, "buy", 2.0)]).await;
    let got = features(&env).await;
    let (n, sum, var, last) = hour(&got["a"]);
    assert_eq!((n, sum, last.as_str()), (3, 6.0, "buy"));
    assert!((var - 2.0 / 3.0).abs() < 1e-12, "{var}");
    assert_eq!(hour(&got["b"]), (1, 5.0, 0.0, "view".into()));

    // At 01:15 the hour is closed (01:00 + 10 min grace): b's event at 00:40 goes
    // to the late-events topic with the reason, and b keeps its values.
    step(vec![
        event("c", 75, "view", 9.0),
        event("b", 40, "click", 100.0),
    ])
    .await;
    assert_eq!(
        hour(&features(&env).await["b"]),
        (1, 5.0, 0.0, "view".into())
    );

    // At 02:00 the next hour fires: c shows {01:05, 01:15}; a and b show nothing,
    // so their keys are deleted and tombstones published.
    step(vec![event("d", 120, "view", 1.0)]).await;
    let report = host.stop().await.unwrap();
    assert_eq!(report.counters.late, 1, "{:?}", report.counters);
    if tiled {
        // c's fired hour and d's open one are partials; no event is held.
        assert_eq!(report.state, (2, 0));
    }
    let got = features(&env).await;
    assert_eq!(got.keys().collect::<Vec<_>>(), ["c"]);
    assert_eq!(hour(&got["c"]), (2, 16.0, 1.0, "view".into()));

    let late = env.read_topic(&env.late).unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(
        late[0].value.as_deref(),
        Some(event("b", 40, "click", 100.0).2.as_str())
    );
    let reason = &late[0].headers["wafer.reason"];
    assert!(reason.contains("closed"), "{reason}");

    // The feature topic tells the story: a's on-time result, its correction, its tombstone.
    let output = env.read_topic(&env.output).unwrap();
    let of = |user: &str| -> Vec<Option<i64>> {
        output
            .iter()
            .filter(|r| r.key.as_deref() == Some(user))
            .map(|r| {
                r.value
                    .as_deref()
                    .map(|v| hour(&serde_json::from_str(v).unwrap()).0)
            })
            .collect()
    };
    assert_eq!(of("a"), [Some(2), Some(3), None]);
    assert_eq!(of("b"), [Some(1), None]);
    assert_eq!(of("c"), [Some(2)]);
}

/// Runs a generated stream through hosts running the fixture with two minutes
/// of out-of-orderness; with `crash`, the first host is killed after half the
/// stream and a second one rebuilds the windows from the committed checkpoint.
async fn generated_stream(test: &str, seed: u64, crash: bool, tiled: bool) {
    let config = if tiled { tiled_config } else { config };
    let env = Env::new(test, 2).await.unwrap();
    let events = reference::generate(seed, 3000, 120, 2);
    let lag = 2 * MIN;
    let exp = reference::expect_tumbling(&events, HOUR, GRACE, lag);
    assert!(!exp.late.is_empty() && !exp.features.is_empty());
    let records: Vec<(i32, String, String)> = events
        .iter()
        .map(|e| (e.partition, e.user.clone(), e.payload.clone()))
        .collect();
    let (first, second) = records.split_at(if crash {
        records.len() / 2
    } else {
        records.len()
    });
    env.produce(first).await.unwrap();
    let mut host = Host::start(config(&env, lag as u64));
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    if crash {
        host.kill().await;
        env.produce(second).await.unwrap();
        host = Host::start(config(&env, lag as u64));
        env.wait_caught_up(CAUGHT_UP).await.unwrap();
    }
    let report = host.stop().await.unwrap();
    if tiled {
        assert_eq!(report.state.1, 0, "a tiled hour holds no event");
    }
    if crash {
        assert!(
            report.counters.replayed > 0,
            "the second host should rebuild by replay"
        );
    } else {
        assert_eq!(report.counters.late, exp.late.len() as u64);
        assert_eq!(report.counters.dead_letters, exp.dead.len() as u64);
    }

    let got = features(&env).await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        exp.features.keys().collect::<Vec<_>>()
    );
    for (user, want) in &exp.features {
        let (n, sum, var, last) = hour(&got[user]);
        assert_eq!(
            (n, last.as_str()),
            (want.count, want.last_action.as_str()),
            "{user}"
        );
        assert!(
            (sum - want.sum).abs() <= 1e-9 * want.sum.abs().max(1.0),
            "{user} sum"
        );
        assert!(
            (var - want.variance).abs() <= 1e-9 * want.variance.abs().max(1.0),
            "{user} variance {var} vs {}",
            want.variance
        );
    }
    // Each late event once (the crash came after a commit of everything read).
    let mut late: Vec<String> = env
        .read_topic(&env.late)
        .unwrap()
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    let mut want_late = exp.late.clone();
    late.sort();
    want_late.sort();
    assert_eq!(late, want_late, "late events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_stream_ends_as_the_reference_says() {
    generated_stream("tumbling-ref", 71, false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_a_rebuild_from_the_checkpoint_change_nothing() {
    generated_stream("tumbling-crash", 83, true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiled_hour_holds_no_event_and_ends_as_the_reference_says() {
    generated_stream("tumbling-tiled", 71, false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiled_hour_rebuilt_from_the_checkpoint_after_a_crash_changes_nothing() {
    generated_stream("tumbling-tiled-crash", 83, true, true).await;
}
