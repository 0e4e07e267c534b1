//! The user-activity plugin written in Rust, Python and JavaScript, run through
//! the in-process host: the three must describe themselves alike, compute the
//! same feature columns for the same batch (nulls and dictionaries included),
//! and end a file-sourced pipeline with byte-identical stores that match the
//! naive reference model. No Kafka or Redis needed.
//!
//! Needs the built components: `make plugins` (Rust),
//! `scripts/build-plugins-py.sh` (Python) and `scripts/build-plugins-js.sh`
//! (JavaScript).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use wafer::plugin::{Batch, Column, ColumnData, PluginEngine, PluginLimits, TextColumn};
use wafer_tests::reference;

/// The three components: (language, file under target/plugins, how to build it).
const COMPONENTS: [(&str, &str, &str); 3] = [
    ("rust", "user_activity.wasm", "make plugins"),
    (
        "python",
        "user_activity_py.wasm",
        "scripts/build-plugins-py.sh",
    ),
    (
        "javascript",
        "user_activity_js.wasm",
        "scripts/build-plugins-js.sh",
    ),
];

/// Every component's path, failing with the missing file and its build command.
fn components() -> Vec<(&'static str, PathBuf)> {
    COMPONENTS
        .iter()
        .map(|(language, file, build)| {
            let p = wafer_tests::repo_root().join("target/plugins").join(file);
            assert!(
                p.exists(),
                "{} is missing: the {language} user-activity plugin is not built; run `{build}` first",
                p.display()
            );
            (*language, p)
        })
        .collect()
}

/// Limits for interpreted guests on a busy 2-core machine: the deadline is
/// generous because this test is about equivalence, not about the sandbox.
fn limits() -> PluginLimits {
    PluginLimits {
        call_timeout: std::time::Duration::from_secs(10),
        ..PluginLimits::default()
    }
}

fn text(dictionary: &[&str], codes: &[u32]) -> ColumnData {
    ColumnData::Text(TextColumn {
        dictionary: dictionary.iter().map(|s| (*s).to_owned()).collect(),
        codes: codes.to_vec(),
    })
}

/// A batch as the host builds it for user-activity: count, distinct count, sum
/// and last action, with an empty window (null last action) and shared
/// dictionary entries.
fn batch() -> Batch {
    Batch {
        rows: 5,
        columns: vec![
            Column {
                data: ColumnData::Int64(vec![4, 0, 1, 3, 7]),
                valid: vec![],
            },
            Column {
                data: ColumnData::Int64(vec![2, 0, 1, 3, 1]),
                valid: vec![],
            },
            Column {
                data: ColumnData::Float64(vec![10.0, 0.0, 0.1, 1e300, -7.7]),
                valid: vec![],
            },
            Column {
                data: text(&["buy", "view", "späť 🛒"], &[0, 0, 1, 2, 1]),
                valid: vec![true, false, true, true, true],
            },
        ],
    }
}

#[test]
fn the_three_languages_describe_and_compute_alike() {
    let engine = PluginEngine::new().unwrap();
    let mut results = Vec::new();
    let mut rust_columns = None;
    for (language, path) in components() {
        let mut plugin = engine
            .load_file(&path, limits())
            .unwrap_or_else(|e| panic!("{language}: {e}"));
        let columns = plugin
            .compute(&batch())
            .unwrap_or_else(|e| panic!("{language}: {e}"));
        results.push((
            language,
            plugin.name().to_owned(),
            format!("{:?}", plugin.descriptor()),
            format!("{columns:?}"),
        ));
        if rust_columns.is_none() {
            rust_columns = Some(columns);
        }
    }
    let (_, name, descriptor, columns) = &results[0];
    assert_eq!(name, "user-activity@0.1.0");
    for (language, n, d, c) in &results[1..] {
        assert_eq!(n, name, "{language}: name@version differs from rust");
        assert_eq!(d, descriptor, "{language}: descriptor differs from rust");
        assert_eq!(c, columns, "{language}: feature columns differ from rust");
    }
    // What they all return, spelled out once.
    let rust = &rust_columns.expect("rust ran first");
    let ints = |c: &Column| match &c.data {
        ColumnData::Int64(v) => v.clone(),
        other => panic!("not int64: {other:?}"),
    };
    assert_eq!(ints(&rust[0]), [4, 0, 1, 3, 7]);
    assert_eq!(ints(&rust[1]), [2, 0, 1, 3, 1]);
    match &rust[2].data {
        ColumnData::Float64(v) => assert_eq!(v, &[10.0 / 4.0, 0.0, 0.1, 1e300 / 3.0, -7.7 / 7.0]),
        other => panic!("not float64: {other:?}"),
    }
    match &rust[3].data {
        ColumnData::Text(t) => {
            assert_eq!(t.dictionary, ["buy", "view", "späť 🛒"]);
            assert_eq!(t.codes, [0, 0, 1, 2, 1]);
        }
        other => panic!("not text: {other:?}"),
    }
    assert_eq!(rust[3].valid, [true, false, true, true, true]);
    assert!(rust[..3].iter().all(|c| c.valid.is_empty()));
}

/// Writes `events` as a JSONL file and runs the pipeline on it with `plugin`.
async fn run_file(events_path: &Path, plugin: &Path) -> wafer::RunReport {
    for p in [events_path, plugin] {
        assert!(!p.to_string_lossy().contains('\''), "{}", p.display());
    }
    let toml = format!(
        "[pipeline]\nbatch_size = 250\n\n\
         [file]\npath = '{}'\n\n\
         [plugin]\npath = '{}'\ncall_timeout_ms = 10000\n",
        events_path.display(),
        plugin.display()
    );
    let config = wafer::config::Config::parse(&toml, "languages test").unwrap();
    wafer::run(config, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", plugin.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_languages_end_a_pipeline_with_the_same_features() {
    let plugins = components();
    let events = reference::generate(2027, 6000, 150, 1);
    let exp = reference::expect(&events);
    let dir = std::env::temp_dir().join(format!("wafer-languages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events_path = dir.join("events.jsonl");
    let mut jsonl = String::new();
    for e in &events {
        jsonl.push_str(&e.payload);
        jsonl.push('\n');
    }
    std::fs::write(&events_path, jsonl).unwrap();

    let mut stores: Vec<(&str, BTreeMap<String, String>)> = Vec::new();
    for (language, path) in &plugins {
        let report = run_file(&events_path, path).await;
        let c = &report.counters;
        assert_eq!(report.plugin, "user-activity@0.1.0", "{language}");
        assert_eq!(c.events_in, events.len() as u64, "{language} events in");
        assert_eq!(c.late, exp.late.len() as u64, "{language} late");
        assert_eq!(c.dead_letters, exp.dead.len() as u64, "{language} dead");
        assert_eq!(
            (c.plugin_errors, c.plugin_traps),
            (0, 0),
            "{language}: the plugin failed"
        );
        let store = report
            .store
            .unwrap_or_else(|| panic!("{language}: no embedded store"));
        stores.push((*language, store));
    }
    let _ = std::fs::remove_dir_all(&dir);

    // Byte-identical stores: same keys, same JSON, same float formatting.
    let (_, rust) = &stores[0];
    for (language, store) in &stores[1..] {
        assert_eq!(
            store.keys().collect::<Vec<_>>(),
            rust.keys().collect::<Vec<_>>(),
            "{language} keys differ from rust"
        );
        for (key, value) in store {
            assert_eq!(value, &rust[key], "{language} differs from rust at {key}");
        }
    }

    // And equal to the reference model.
    assert_eq!(
        rust.keys().cloned().collect::<Vec<_>>(),
        exp.features
            .keys()
            .map(|u| format!("features:{u}"))
            .collect::<Vec<_>>(),
        "keys differ from the reference"
    );
    assert!(exp.features.len() > 50, "too few users to mean anything");
    let stream_time = exp.stream_time[&0];
    for (user, want) in &exp.features {
        let value = &rust[&format!("features:{user}")];
        let got: serde_json::Value = serde_json::from_str(value).unwrap();
        assert_eq!(got["user_id"], user.as_str(), "{value}");
        assert_eq!(got["event_count_1h"], want.count, "{user} count");
        assert_eq!(got["unique_actions_1h"], want.unique, "{user} unique");
        let avg = got["avg_value_1h"].as_f64().unwrap();
        assert!(
            (avg - want.avg).abs() <= 1e-9 * want.avg.abs().max(1.0),
            "{user} avg {avg} vs {}",
            want.avg
        );
        assert_eq!(got["last_action"], want.last_action.as_str(), "{user} last");
        let computed_at =
            wafer::event::parse_timestamp(got["computed_at"].as_str().unwrap()).unwrap();
        assert!(
            want.newest_ms <= computed_at && computed_at <= stream_time,
            "{user}: computed_at {computed_at} outside [{}, {stream_time}]",
            want.newest_ms
        );
    }
}
