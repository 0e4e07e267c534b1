//! Raw events of a window (`events` aggregations) through real plugins: the
//! `rawevents` fixture (Rust) and the same logic in Python and JavaScript
//! (projects made by `wafer plugin new`, their module replaced by the fixture's
//! and built by `wafer plugin build`) compute features from the event lists of
//! a sliding and a session window, run by `wafer plugin test` (in-memory file
//! source) on a hand-worked timeline.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `wafer plugin test` of `plugin` on the hand-worked timeline, checked
/// against the hand-worked features.
fn check_features(binary: &Path, plugin: &Path, label: &str) {
    let dir = std::env::temp_dir().join(format!("wafer-raw-events-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("events.jsonl");
    let line = |user: &str, action: &str, value: f64, time: &str| {
        format!(
            r#"{{"user_id":"{user}","action":"{action}","value":{value},"timestamp":"2026-03-01T{time}Z"}}"#
        )
    };
    // `wafer plugin test` replays in event-time order, stably: the two events of
    // `a` at 09:20 arrive in file order (5.0, then 3.0).
    let lines = [
        line("a", "view", 1.0, "09:00:00"),
        line("a", "buy", 2.0, "09:02:00"),
        line("b", "view", 7.0, "09:05:00"),
        line("a", "view", 4.0, "09:06:00"),
        line("a", "buy", 5.0, "09:20:00"),
        line("a", "view", 3.0, "09:20:00"),
        line("b", "click", 8.0, "09:21:00"),
    ];
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let out = Command::new(binary)
        .args(["plugin", "test"])
        .arg(plugin)
        .arg("--events")
        .arg(&events)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Hand-worked, stream time 09:21:00 (no out-of-orderness):
    // - 30m sliding window (08:51, 09:21], newest two events (max-events 2):
    //   a: 09:20 5.0, 09:20 3.0 (arrival order) -> second newest 5.0;
    //   b: 09:05 7.0, 09:21 8.0 -> 7.0.
    // - Sessions with a 5-minute gap: a has [09:00, 09:06] (ends 09:11, fired)
    //   and [09:20, 09:20] (ends 09:25, not fired): the fired one shows, with
    //   gaps 2 and 4 minutes -> 240000 ms; its two newest actions: buy, view.
    //   b has [09:05] (fired) and [09:21] (not): one event -> no gap; view.
    let want = concat!(
        r#"features:a {"user_id":"a","second_newest_value_30m":5.0,"max_gap_ms_session":240000,"last_actions_session":"buy,view","computed_at":"2026-03-01T09:21:00.000Z"}"#,
        "\n",
        r#"features:b {"user_id":"b","second_newest_value_30m":7.0,"max_gap_ms_session":null,"last_actions_session":"view","computed_at":"2026-03-01T09:21:00.000Z"}"#,
        "\n",
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want, "{label}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_plugin_computes_features_from_raw_events() {
    let binary = wafer_tests::wafer_binary();
    let plugin = wafer_tests::fixture("rawevents.wasm");
    let text = wafer_tests::inspect(&plugin);
    assert!(
        text.contains("Events(value) over 30m, the newest 2 events"),
        "{text}"
    );
    check_features(&binary, &plugin, "rust");
}

/// A component of the fixture module `tests/fixtures/<name>/<file>`, built in a
/// project that `wafer plugin new --lang <lang> <name>` made (its module
/// replaced by the fixture's).
fn build_fixture(binary: &Path, lang: &str, name: &str, file: &str, module_dir: &str) -> PathBuf {
    let root = wafer_tests::repo_root();
    let parent =
        std::env::temp_dir().join(format!("wafer-raw-events-{lang}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&parent);
    std::fs::create_dir_all(&parent).unwrap();
    wafer_tests::succeeded(
        "wafer plugin new",
        Command::new(binary)
            .args(["plugin", "new", "--lang", lang, name, "--dir"])
            .arg(&parent)
            .output()
            .unwrap(),
    );
    let project = parent.join(name);
    std::fs::copy(
        root.join("tests/fixtures").join(name).join(file),
        project.join(module_dir).join(file),
    )
    .unwrap();
    let printed = wafer_tests::succeeded(
        "wafer plugin build",
        Command::new(binary)
            .args(["plugin", "build"])
            .arg(&project)
            .output()
            .unwrap(),
    );
    PathBuf::from(printed.trim())
}

#[test]
fn a_python_plugin_computes_the_same_features_from_raw_events() {
    let binary = wafer_tests::wafer_binary();
    let component = build_fixture(&binary, "python", "rawevents-py", "rawevents_py.py", ".");
    check_features(&binary, &component, "python");
}

#[test]
fn a_javascript_plugin_computes_the_same_features_from_raw_events() {
    let binary = wafer_tests::wafer_binary();
    let component = build_fixture(&binary, "js", "rawevents-js", "rawevents_js.js", "src");
    check_features(&binary, &component, "js");
}
