//! Approximate aggregations through a real plugin: the `sketches` fixture
//! hands `approx-quantile` and `distinct-count` of a sliding and a tumbling
//! window through as features, run by `wafer plugin test` (in-memory file
//! source, default `distinct_exact_limit` 1000). Expected values come from a
//! direct computation over the events here: exact distinct counts up to the
//! bound, within 4 standard errors beyond, quantiles within 1% of the exact
//! (nearest-rank) value.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// (user, time ms, action, value)
type Event = (&'static str, i64, String, f64);

/// The exact quantile: 0-based rank floor(q * (n - 1)) of the sorted values.
fn exact_quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[(q * (v.len() as f64 - 1.0)) as usize])
}

fn assert_near(what: &str, got: &serde_json::Value, want: Option<f64>) {
    match (got.as_f64(), want) {
        (Some(g), Some(w)) => assert!(
            (g - w).abs() <= 0.01 * w.abs() * (1.0 + 1e-9),
            "{what}: {g} is not within 1% of {w}"
        ),
        (None, None) => {}
        _ => panic!("{what}: {got} vs {want:?}"),
    }
}

#[test]
fn quantiles_and_distinct_counts_stay_within_their_documented_error() {
    let root = wafer_tests::repo_root();
    let binary = root.join("target/release/wafer");
    let plugin = root.join("target/fixtures/sketches.wasm");
    for (path, make) in [(&binary, "make host"), (&plugin, "make fixtures")] {
        assert!(path.exists(), "{} is missing: run `{make}`", path.display());
    }
    let inspect = Command::new(&binary)
        .args(["plugin", "inspect"])
        .arg(&plugin)
        .output()
        .unwrap();
    let text = String::from_utf8(inspect.stdout).unwrap();
    assert!(
        text.contains("ApproxQuantile(value) over 1h, quantile 0.9"),
        "{text}"
    );

    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .timestamp_millis();
    let minute = 60_000;
    let mut events: Vec<Event> = Vec::new();
    // `wide`: 2400 events over 50 minutes, 1800 distinct actions (past the
    // bound of 1000 in the hour), values spread over four decades.
    for i in 0..2400i64 {
        let value = (((i * 7919) % 1000) as f64 / 100.0).exp();
        events.push(("wide", start + i * 1250, format!("a{}", i % 1800), value));
    }
    // `narrow`: 30 events, 4 actions, values around 0 (negative ones too).
    for i in 0..30i64 {
        let action = ["view", "click", "buy", "share"][(i % 4) as usize];
        events.push((
            "narrow",
            start + 5 * minute + i * 37_000,
            action.into(),
            (i - 12) as f64 * 0.75,
        ));
    }
    // Moves stream time to 09:50: the tumbling instance [09:40, 09:50) fires.
    let now = start + 50 * minute;
    events.push(("clock", now, "tick".into(), 1.0));

    let dir = std::env::temp_dir().join(format!("wafer-sketches-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    let lines: Vec<String> = events
        .iter()
        .map(|(user, t, action, value)| {
            serde_json::json!({"user_id": user, "action": action, "value": value, "timestamp": t})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = Command::new(&binary)
        .args(["plugin", "test"])
        .arg(&plugin)
        .arg("--events")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let features: BTreeMap<String, serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (key, json) = line.split_once(' ').expect("`key json` lines");
            (key.to_owned(), serde_json::from_str(json).unwrap())
        })
        .collect();

    for user in ["wide", "narrow"] {
        let got = &features[&format!("features:{user}")];
        let mine = || events.iter().filter(|e| e.0 == user);
        // Sliding hour (T - 1h, T]; tumbling: the latest fired instance, [09:40, 09:50).
        let hour: Vec<&Event> = mine().filter(|e| e.1 > now - 60 * minute).collect();
        let ten: Vec<&Event> = mine()
            .filter(|e| (now - 10 * minute..now).contains(&e.1))
            .collect();
        let values = |es: &[&Event]| es.iter().map(|e| e.3).collect::<Vec<f64>>();
        let distinct =
            |es: &[&Event]| es.iter().map(|e| &e.2).collect::<BTreeSet<_>>().len() as i64;
        assert_eq!(got["count_1h"], hour.len() as i64, "{user}: {got}");
        assert_near(
            &format!("{user} p50_value_1h"),
            &got["p50_value_1h"],
            exact_quantile(&values(&hour), 0.5),
        );
        assert_near(
            &format!("{user} p90_value_1h"),
            &got["p90_value_1h"],
            exact_quantile(&values(&hour), 0.9),
        );
        assert_near(
            &format!("{user} p99_value_10m"),
            &got["p99_value_10m"],
            exact_quantile(&values(&ten), 0.99),
        );
        let (d_hour, d_ten) = (distinct(&hour), distinct(&ten));
        let got_hour = got["distinct_actions_1h"].as_i64().unwrap();
        if d_hour <= 1000 {
            assert_eq!(got_hour, d_hour, "{user}: exact below the bound");
        } else {
            // 4 standard errors of 1.6%.
            let error = (got_hour as f64 / d_hour as f64 - 1.0).abs();
            assert!(
                got_hour > 1000 && error <= 0.065,
                "{user}: {got_hour} vs {d_hour}"
            );
        }
        assert_eq!(got["distinct_actions_10m"], d_ten, "{user}: {got}");
    }
    // The test covers both sides of the bound, and a window with no fired instance.
    let wide = &features["features:wide"];
    assert!(wide["distinct_actions_1h"].as_i64().unwrap() > 1000);
    assert!(features["features:narrow"]["p99_value_10m"].is_null());
    let _ = std::fs::remove_dir_all(&dir);
}
