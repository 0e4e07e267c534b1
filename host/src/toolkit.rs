//! The plugin author's toolkit behind `wafer plugin`: scaffold a project,
//! build its component, describe a component, and replay events through it
//! with the real host engine, without Kafka or Redis.
//!
//! - [`scaffold`]: `wafer plugin new` (templates, embedded WIT and SDKs);
//! - [`build`]: `wafer plugin build` (per-language toolchains);
//! - this module: `wafer plugin inspect` and `wafer plugin test`.

pub mod build;
pub mod scaffold;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::plugin::{type_name, PluginEngine, PluginLimits, WindowKind};
use crate::RunError;

/// A language plugins are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    Js,
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
        })
    }
}

/// Why scaffolding or building a plugin project failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolkitError {
    /// The plugin name cannot be used.
    #[error("invalid plugin name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// The project directory exists and is not empty.
    #[error("{} already exists and is not empty: choose another name or --dir", .0.display())]
    Exists(PathBuf),
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The directory holds no project of a known language.
    #[error(
        "{}: not a plugin project (no Cargo.toml for Rust, pyproject.toml or app.py for Python, package.json for JavaScript)",
        .0.display()
    )]
    UnknownProject(PathBuf),
    /// The project lacks something the build needs.
    #[error("{}: {what}", path.display())]
    Incomplete { path: PathBuf, what: String },
    /// A build tool is not installed.
    #[error("{tool} not found: {install}")]
    ToolchainMissing { tool: String, install: String },
    /// A build tool ran and failed.
    #[error("`{command}` failed ({status}); its output is above")]
    ToolFailed { command: String, status: String },
}

impl ToolkitError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ToolkitError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A readable self-description of the component at `path`: name, version,
/// entity key, inputs, windows, aggregations, features and imports.
pub fn inspect(path: &Path) -> Result<String, RunError> {
    let engine = PluginEngine::new().map_err(|e| RunError::Engine(format!("{e:#}")))?;
    let plugin = engine.load_file(path, PluginLimits::default())?;
    let d = plugin.descriptor();
    let mut out = String::new();
    let _ = writeln!(out, "plugin      {}@{}", d.name, d.version);
    let _ = writeln!(out, "sha256      {}", plugin.content_hash());
    let _ = writeln!(out, "entity key  {}", d.entity_key);
    let _ = writeln!(out, "inputs");
    for i in &d.inputs {
        let _ = writeln!(out, "  {:<24} {}", i.name, type_name(i.kind));
    }
    let _ = writeln!(out, "windows");
    for w in &d.windows {
        let mut spec = format!("{} {} ms", window_kind_name(w.kind), w.length_ms);
        if let Some(hop) = w.hop_ms {
            let _ = write!(spec, ", every {hop} ms");
        }
        if let Some(gap) = w.gap_ms {
            let _ = write!(spec, ", gap {gap} ms");
        }
        if w.grace_ms > 0 {
            let _ = write!(spec, ", grace {} ms", w.grace_ms);
        }
        if w.early_results {
            spec.push_str(", early results");
        }
        let _ = writeln!(out, "  {:<24} {spec}", w.name);
    }
    let _ = writeln!(out, "aggregations (in the order compute receives them)");
    for (i, a) in d.aggregations.iter().enumerate() {
        let field = a.field.as_deref().unwrap_or("-");
        let bound = a
            .max_events
            .map(|n| format!(", the newest {n} events"))
            .or_else(|| a.quantile.map(|q| format!(", quantile {q}")))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {i:>2} {:?}({field}) over {}{bound}",
            a.kind, a.window
        );
    }
    let _ = writeln!(out, "features (in the order compute returns them)");
    for f in &d.features {
        let _ = writeln!(out, "  {:<24} {}", f.name, type_name(f.kind));
    }
    let _ = writeln!(out, "imports");
    for i in plugin.imports() {
        let _ = writeln!(out, "  {i}");
    }
    Ok(out)
}

/// A window kind as the WIT contract names it.
fn window_kind_name(kind: WindowKind) -> &'static str {
    match kind {
        WindowKind::Sliding => "sliding",
        WindowKind::Tumbling => "tumbling",
        WindowKind::Hopping => "hopping",
        WindowKind::Session => "session",
    }
}

/// Replays the JSONL `events` in event-time order (stable for equal times;
/// lines without a readable time keep their place) through `plugin` and
/// returns the final features by online-store key.
pub async fn replay(plugin: &Path, events: &Path) -> Result<BTreeMap<String, String>, RunError> {
    let text = std::fs::read_to_string(events)
        .map_err(|e| RunError::Source(format!("cannot read {}: {e}", events.display())))?;
    let sorted = sort_by_event_time(&text, "timestamp");
    let dir = std::env::temp_dir().join(format!("wafer-plugin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| RunError::Source(e.to_string()))?;
    let file = dir.join("events.jsonl");
    std::fs::write(&file, sorted).map_err(|e| RunError::Source(e.to_string()))?;
    let config = format!(
        "[file]\npath = {}\n[plugin]\npath = {}\nwatch = false\n",
        toml_string(&file.display().to_string()),
        toml_string(&plugin.display().to_string()),
    );
    let config = Config::parse(&config, "wafer plugin test")?;
    let report = crate::run(config, CancellationToken::new()).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report?.store.unwrap_or_default())
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// `text`'s lines in event-time order (stable).
fn sort_by_event_time(text: &str, field: &str) -> String {
    let mut lines: Vec<(usize, Option<i64>, &str)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| (i, event_time(l, field), l))
        .collect();
    // Lines without a time sort as if they carried the previous line's time.
    let mut previous = i64::MIN;
    for line in &mut lines {
        match line.1 {
            Some(t) => previous = t,
            None => line.1 = Some(previous),
        }
    }
    lines.sort_by_key(|(i, t, _)| (t.unwrap_or(i64::MIN), *i));
    lines.iter().map(|(_, _, l)| format!("{l}\n")).collect()
}

fn event_time(line: &str, field: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    match v.get(field)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => crate::event::parse_timestamp(s).ok(),
        _ => None,
    }
}

/// Formats features as `wafer plugin test` prints them: `<key> <json>` lines.
pub fn format_features(features: &BTreeMap<String, String>) -> String {
    features.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
}

/// Differences between `got` and the expectations in `expected` (the format
/// of [`format_features`]); numbers equal within 1e-9 relative count as equal.
pub fn diff(got: &BTreeMap<String, String>, expected: &str) -> Vec<String> {
    let mut want = BTreeMap::new();
    for line in expected.lines().filter(|l| !l.trim().is_empty()) {
        match line.split_once(' ') {
            Some((k, v)) => want.insert(k.to_owned(), v.to_owned()),
            None => return vec![format!("malformed expectation line: {line}")],
        };
    }
    let mut out = Vec::new();
    for (k, w) in &want {
        match got.get(k) {
            None => out.push(format!("- {k} {w}")),
            Some(g) if !same_json(g, w) => {
                out.push(format!("- {k} {w}"));
                out.push(format!("+ {k} {g}"));
            }
            Some(_) => {}
        }
    }
    for (k, g) in got {
        if !want.contains_key(k) {
            out.push(format!("+ {k} {g}"));
        }
    }
    out
}

fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => same_value(&a, &b),
        _ => a == b,
    }
}

fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_value(v, w))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_by_event_time_stably() {
        let text = concat!(
            r#"{"timestamp": 30, "n": 1}"#,
            "\n",
            r#"{"timestamp": "1970-01-01T00:00:00.010Z", "n": 2}"#,
            "\n",
            "not json\n",
            r#"{"timestamp": 10, "n": 4}"#,
            "\n",
        );
        let sorted = sort_by_event_time(text, "timestamp");
        let order: Vec<&str> = sorted.lines().collect();
        assert_eq!(
            order,
            [
                r#"{"timestamp": "1970-01-01T00:00:00.010Z", "n": 2}"#,
                "not json",
                r#"{"timestamp": 10, "n": 4}"#,
                r#"{"timestamp": 30, "n": 1}"#,
            ]
        );
    }

    #[test]
    fn diff_reports_missing_unexpected_and_changed() {
        let got = BTreeMap::from([
            ("a".to_owned(), r#"{"x":1.0000000000001}"#.to_owned()),
            ("b".to_owned(), r#"{"x":2}"#.to_owned()),
            ("c".to_owned(), r#"{"x":3}"#.to_owned()),
        ]);
        let expected = "a {\"x\":1}\nb {\"x\":5}\nd {\"x\":4}\n";
        assert_eq!(
            diff(&got, expected),
            [
                "- b {\"x\":5}",
                "+ b {\"x\":2}",
                "- d {\"x\":4}",
                "+ c {\"x\":3}"
            ]
        );
        assert!(diff(&got, &format_features(&got)).is_empty());
    }
}
