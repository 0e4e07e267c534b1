//! `wafer plugin inspect` and `wafer plugin test`, through the release binary.

use std::process::Command;

fn wafer() -> Command {
    let binary = wafer_tests::repo_root().join("target/release/wafer");
    assert!(
        binary.exists(),
        "{} is missing: run `make host`",
        binary.display()
    );
    Command::new(binary)
}

#[test]
fn inspect_prints_the_self_description() {
    let out = wafer()
        .args(["plugin", "inspect"])
        .arg(wafer_tests::user_activity_plugin())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "user-activity@0.1.0",
        "entity key  user_id",
        "avg_value_1h",
        "3600000 ms",
        "wafer:plugin/types@0.2.0",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
}

#[test]
fn test_replays_events_and_checks_expectations() {
    let dir = std::env::temp_dir().join(format!("wafer-toolkit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Out of order on purpose: the replay sorts by event time, so the 00:30
    // event is applied before the 01:10 one and is not late.
    let events = dir.join("events.jsonl");
    std::fs::write(
        &events,
        concat!(
            r#"{"user_id":"a","action":"view","value":1,"timestamp":"2026-03-01T01:10:00Z"}"#,
            "\n",
            r#"{"user_id":"a","action":"buy","value":3,"timestamp":"2026-03-01T00:30:00Z"}"#,
            "\n",
            r#"{"user_id":"b","action":"view","value":5,"timestamp":"2026-03-01T01:00:00Z"}"#,
            "\n",
        ),
    )
    .unwrap();
    let run = |expect: Option<&std::path::Path>| {
        let mut c = wafer();
        c.args(["plugin", "test"])
            .arg(wafer_tests::user_activity_plugin())
            .arg("--events")
            .arg(&events);
        if let Some(e) = expect {
            c.arg("--expect").arg(e);
        }
        c.output().unwrap()
    };
    let out = run(None);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    // Hand-worked: stream time 01:10; a's window (00:10, 01:10] holds both events.
    let want = concat!(
        r#"features:a {"user_id":"a","event_count_1h":2,"unique_actions_1h":2,"avg_value_1h":2.0,"last_action":"view","computed_at":"2026-03-01T01:10:00.000Z"}"#,
        "\n",
        r#"features:b {"user_id":"b","event_count_1h":1,"unique_actions_1h":1,"avg_value_1h":5.0,"last_action":"view","computed_at":"2026-03-01T01:10:00.000Z"}"#,
        "\n",
    );
    assert_eq!(printed, want);

    let expect = dir.join("expect.txt");
    std::fs::write(&expect, want).unwrap();
    assert!(run(Some(&expect)).status.success());
    std::fs::write(
        &expect,
        want.replace("\"avg_value_1h\":5.0", "\"avg_value_1h\":6.0"),
    )
    .unwrap();
    let out = run(Some(&expect));
    assert_eq!(out.status.code(), Some(1));
    let diff = String::from_utf8(out.stdout).unwrap();
    assert!(
        diff.contains("- features:b") && diff.contains("+ features:b"),
        "{diff}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
