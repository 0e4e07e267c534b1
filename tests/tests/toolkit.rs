//! The plugin toolkit through the release binary: `wafer plugin inspect` and
//! `wafer plugin test` on the built plugins, and, for each language, the whole
//! author's path: `wafer plugin new`, the project's own native tests,
//! `wafer plugin build`, then `inspect` and `test` on the component.
//!
//! Python and JavaScript builds use the toolchains the repository's scripts
//! installed (`scripts/build-plugins-{py,js}.sh install`); the Rust build runs
//! offline from the registry cache into `target/plugin-new`, so later runs are
//! incremental.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// A window's full declaration: kind, length, grace and early results (the
/// `tumbling` fixture declares one hour, ten minutes of grace, no early results).
#[test]
fn inspect_prints_each_window_declaration() {
    let fixture = wafer_tests::repo_root().join("target/fixtures/tumbling.wasm");
    assert!(
        fixture.exists(),
        "{} is missing: run `make fixtures`",
        fixture.display()
    );
    let out = wafer()
        .args(["plugin", "inspect"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("hour "))
        .unwrap_or_else(|| panic!("no `hour` window in:\n{text}"));
    assert_eq!(
        line.split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" "),
        "tumbling 3600000 ms, grace 600000 ms"
    );
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

/// The features `wafer plugin test` must end with on the sample events every
/// template ships (`events.jsonl`), worked out by hand from the template's
/// logic: stream time ends at 09:12:00, so the 10-minute sliding window is
/// (09:02:00, 09:12:00].
/// - alice: 09:00 (view, 10.0) has left; 09:04 (buy, 25.0) and 09:09:30 (view,
///   4.0) remain: 2 events, mean (25 + 4) / 2 = 14.5, max 25.0, last view.
/// - bob: 09:01 (view, 3.5) has left; 09:12 (buy, 12.5) remains: 1 event,
///   mean 12.5, max 12.5, last buy.
/// - carol: her only event, 09:01:30, has left, so her key is deleted.
const TEMPLATE_FEATURES: &str = concat!(
    r#"features:alice {"user_id":"alice","events_10m":2,"avg_value_10m":14.5,"max_value_10m":25.0,"last_action":"view","computed_at":"2026-03-01T09:12:00.000Z"}"#,
    "\n",
    r#"features:bob {"user_id":"bob","events_10m":1,"avg_value_10m":12.5,"max_value_10m":12.5,"last_action":"buy","computed_at":"2026-03-01T09:12:00.000Z"}"#,
    "\n",
);

/// A fresh, empty directory for one test's projects.
fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wafer-plugin-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `output`, or a panic showing what `what` printed.
fn succeeded(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Environment of every build step: the Rust one offline and incremental.
fn build_env(c: &mut Command) -> &mut Command {
    c.env("CARGO_NET_OFFLINE", "true").env(
        "CARGO_TARGET_DIR",
        wafer_tests::repo_root().join("target/plugin-new"),
    )
}

/// `wafer plugin new`, the project's own tests, `wafer plugin build`, then
/// `inspect` and `test` of the component, checked against hand-worked values.
fn author_path(lang: &str, native_test: &[&str]) {
    let parent = scratch(lang);
    let name = format!("clicks-{lang}");
    let module = name.replace('-', "_");

    let printed = succeeded(
        "wafer plugin new",
        wafer()
            .args(["plugin", "new", "--lang", lang, &name, "--dir"])
            .arg(&parent)
            .output()
            .unwrap(),
    );
    let project = parent.join(&name);
    assert_eq!(Path::new(printed.trim()), project);

    succeeded(
        &native_test.join(" "),
        build_env(Command::new(native_test[0]).args(&native_test[1..]))
            .current_dir(&project)
            .output()
            .unwrap(),
    );

    let printed = succeeded(
        "wafer plugin build",
        build_env(wafer().args(["plugin", "build"]).arg(&project))
            .output()
            .unwrap(),
    );
    let component = project.join("dist").join(format!("{module}.wasm"));
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        [component.to_str().unwrap()]
    );
    assert!(component.is_file());

    let described = succeeded(
        "wafer plugin inspect",
        wafer()
            .args(["plugin", "inspect"])
            .arg(&component)
            .output()
            .unwrap(),
    );
    for expected in [
        format!("plugin      {name}@0.1.0"),
        "entity key  user_id".to_owned(),
        "10m                      WindowKind::Sliding 600000 ms".to_owned(),
        "0 AggregationKind::Count(-) over 10m".to_owned(),
        "2 AggregationKind::Max(value) over 10m".to_owned(),
        "max_value_10m            float64".to_owned(),
        "last_action              text".to_owned(),
    ] {
        assert!(
            described.contains(&expected),
            "missing `{expected}` in:\n{described}"
        );
    }
    let imports: Vec<&str> = described
        .lines()
        .skip_while(|l| *l != "imports")
        .skip(1)
        .collect();
    assert!(
        imports
            .iter()
            .all(|i| i.trim().starts_with("wafer:plugin/")),
        "imports beyond the WIT's: {imports:?}"
    );

    let features = succeeded(
        "wafer plugin test",
        wafer()
            .args(["plugin", "test"])
            .arg(&component)
            .arg("--events")
            .arg(project.join("events.jsonl"))
            .output()
            .unwrap(),
    );
    assert_eq!(features, TEMPLATE_FEATURES);
    succeeded(
        "wafer plugin test --expect",
        wafer()
            .args(["plugin", "test"])
            .arg(&component)
            .arg("--events")
            .arg(project.join("events.jsonl"))
            .arg("--expect")
            .arg(project.join("expected.txt"))
            .output()
            .unwrap(),
    );
    let _ = std::fs::remove_dir_all(&parent);
}

#[test]
fn rust_plugin_from_new_to_test() {
    author_path("rust", &["cargo", "test"]);
}

#[test]
fn python_plugin_from_new_to_test() {
    author_path("python", &["python3", "-m", "pytest", "-q"]);
}

#[test]
fn js_plugin_from_new_to_test() {
    author_path("js", &["node", "--test"]);
}

#[test]
fn build_names_the_script_that_installs_a_missing_toolchain() {
    let parent = scratch("missing");
    let empty = parent.join("no-toolchains");
    std::fs::create_dir_all(&empty).unwrap();
    for (lang, script) in [
        ("python", "scripts/build-plugins-py.sh install"),
        ("js", "scripts/build-plugins-js.sh install"),
    ] {
        succeeded(
            "wafer plugin new",
            wafer()
                .args(["plugin", "new", "--lang", lang, "bare", "--dir"])
                .arg(parent.join(lang))
                .output()
                .unwrap(),
        );
        // An empty toolchain directory, and no componentize-py on PATH.
        let out = wafer()
            .args(["plugin", "build", "--toolchains"])
            .arg(&empty)
            .arg(parent.join(lang).join("bare"))
            .env("PATH", &empty)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{lang} built without a toolchain");
        assert!(
            stderr.contains("not found") && stderr.contains(script),
            "{lang}: the error does not name `{script}`:\n{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&parent);
}
