//! Hot loading plugin versions into a running host, through the admin
//! endpoint and by replacing the plugin file, against real Kafka and Redis.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wafer_tests::outputs::assert_outputs;
use wafer_tests::reference;
use wafer_tests::{Env, Host};

const CAUGHT_UP: Duration = Duration::from_secs(120);

/// A private copy of the v1 plugin that a test may overwrite.
fn plugin_copy(env: &Env) -> PathBuf {
    let dir = std::env::temp_dir().join(&env.name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("user_activity.wasm");
    std::fs::copy(wafer_tests::user_activity_plugin(), &path).unwrap();
    path
}

/// Replaces `path` atomically with `from` (as a deployment would).
fn replace_file(from: &Path, path: &Path) {
    let tmp = path.with_extension("wasm.new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Admin {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Admin {
    fn new(port: u16, token: Option<&str>) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            token: token.map(str::to_owned),
            http: reqwest::Client::new(),
        }
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn upload(&self, wasm: &Path) -> (u16, serde_json::Value) {
        let body = std::fs::read(wasm).unwrap();
        let r = self
            .auth(self.http.post(format!("{}/plugins", self.base)).body(body))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn rollback(&self) -> (u16, serde_json::Value) {
        let r = self
            .auth(self.http.post(format!("{}/plugins/rollback", self.base)))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn versions(&self) -> Vec<serde_json::Value> {
        let r = self
            .auth(self.http.get(format!("{}/plugins", self.base)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        v["versions"].as_array().unwrap().clone()
    }

    /// Waits until the active version is `version`.
    async fn wait_active(&self, version: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let versions = self.versions().await;
            if versions
                .iter()
                .any(|v| v["state"] == "active" && v["version"] == version)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{version} never became active: {versions:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the admin endpoint answers.
    async fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "admin endpoint never came up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn admin_config(env: &Env, port: u16, token: Option<&str>) -> wafer::config::Config {
    let mut config = env.config();
    config.plugin_mut().path = plugin_copy(env);
    config.plugin_mut().watch = false;
    config.pipeline.batch_size = 100;
    config.admin = Some(wafer::config::AdminConfig {
        listen: format!("127.0.0.1:{port}"),
        token: token.map(str::to_owned),
    });
    config
}

/// The `wafer.plugin` header of every ml-features record, in order.
fn plugin_tags(env: &Env) -> Vec<String> {
    env.read_topic(&env.output)
        .unwrap()
        .into_iter()
        .map(|r| r.headers["wafer.plugin"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_loses_and_duplicates_nothing() {
    let env = Arc::new(Env::new("reload", 4).await.unwrap());
    let events = reference::generate(83, 6000, 300, 4);
    let exp = reference::expect(&events);
    let port = wafer_tests::free_port();
    let admin = Admin::new(port, None);
    let host = Host::start(admin_config(&env, port, None));
    admin.wait_up().await;

    let producer = {
        let env = env.clone();
        let records = reference::records(&events);
        tokio::spawn(async move {
            for chunk in records.chunks(200) {
                env.produce(chunk).await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let deadline = Instant::now() + CAUGHT_UP;
    while env
        .committed()
        .unwrap()
        .iter()
        .filter(|o| **o > 0)
        .sum::<i64>()
        < 1500
    {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = admin
        .upload(&wafer_tests::fixture("user_activity_v2.wasm"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], "0.2.0-reload");
    admin.wait_active("0.2.0-reload").await;
    assert!(
        !producer.is_finished(),
        "the reload should happen under load"
    );
    producer.await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    assert_eq!(report.counters.reloads, 1);
    assert_eq!(report.plugin, "user-activity@0.2.0-reload");
    let count = |version: &str| {
        report
            .versions
            .iter()
            .find(|v| v.version == version)
            .map(|v| v.updates)
            .unwrap()
    };
    assert!(count("0.1.0") > 0 && count("0.2.0-reload") > 0);
    // The swap's pause is recorded on the version swapped in, not on the first one.
    let pause = |version: &str| {
        report
            .versions
            .iter()
            .find(|v| v.version == version)
            .and_then(|v| v.swap_pause_us)
    };
    assert_eq!(pause("0.1.0"), None);
    assert!(pause("0.2.0-reload").is_some());
    assert_eq!(
        count("0.1.0") + count("0.2.0-reload"),
        report.counters.updates
    );

    // Nothing lost, nothing counted twice: the end state is the reference's.
    assert_outputs(&env, &events, &exp, true, &BTreeSet::new()).await;
    // The version tag switches once, at a batch boundary, and never back.
    let tags = plugin_tags(&env);
    let first_v2 = tags
        .iter()
        .position(|t| t.starts_with("user-activity@0.2.0-reload#"))
        .unwrap();
    assert!(first_v2 > 0, "v1 computed the first records");
    assert!(tags[..first_v2]
        .iter()
        .all(|t| t.starts_with("user-activity@0.1.0#")));
    assert!(tags[first_v2..]
        .iter()
        .all(|t| t.starts_with("user-activity@0.2.0-reload#")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_versions_are_rejected_and_rollback_restores_the_previous() {
    let env = Env::new("reject", 2).await.unwrap();
    let events = reference::generate(89, 2000, 100, 2);
    let (first, second) = events.split_at(1000);
    let port = wafer_tests::free_port();
    let token = "s3cret";
    let admin = Admin::new(port, Some(token));
    let host = Host::start(admin_config(&env, port, Some(token)));
    admin.wait_up().await;

    let anonymous = Admin::new(port, None);
    let r = anonymous
        .http
        .get(format!("{}/plugins", anonymous.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "the token is required");

    env.produce(&reference::records(first)).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();

    let garbage = std::env::temp_dir().join(format!("{}-garbage.wasm", env.name));
    std::fs::write(&garbage, b"\0asm definitely not a component").unwrap();
    for (wasm, reason) in [
        (garbage.clone(), "not a valid feature-plugin component"),
        (wafer_tests::fixture("wasi_import.wasm"), "does not grant"),
        (
            wafer_tests::fixture("misbehave.wasm"),
            "incompatible with the running version",
        ),
    ] {
        let (status, body) = admin.upload(&wasm).await;
        assert_eq!(status, 422, "{} should be rejected: {body}", wasm.display());
        assert!(body["error"].as_str().unwrap().contains(reason), "{body}");
    }
    let versions = admin.versions().await;
    assert_eq!(
        versions.iter().filter(|v| v["state"] == "rejected").count(),
        3
    );
    assert!(versions
        .iter()
        .any(|v| v["state"] == "active" && v["version"] == "0.1.0"));

    assert_eq!(admin.rollback().await.0, 409, "nothing to roll back to yet");
    assert_eq!(
        admin
            .upload(&wafer_tests::fixture("user_activity_v2.wasm"))
            .await
            .0,
        200
    );
    admin.wait_active("0.2.0-reload").await;
    let (status, body) = admin.rollback().await;
    assert_eq!(status, 200, "{body}");
    admin.wait_active("0.1.0").await;

    let before = plugin_tags(&env).len();
    env.produce(&reference::records(second)).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    let report = host.stop().await.unwrap();
    assert_eq!(report.counters.reloads, 2);
    let tags = plugin_tags(&env);
    assert!(tags.len() > before);
    assert!(
        tags[before..]
            .iter()
            .all(|t| t.starts_with("user-activity@0.1.0#")),
        "rolled back to v1"
    );
    let exp = reference::expect(&events);
    assert_outputs(&env, &events, &exp, true, &BTreeSet::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_plugin_file_is_hot_loaded_unless_it_breaks_the_pin() {
    let env = Env::new("watch", 2).await.unwrap();
    let events = reference::generate(97, 2000, 100, 2);
    let (first, second) = events.split_at(1000);
    let port = wafer_tests::free_port();
    let admin = Admin::new(port, None);
    let mut config = admin_config(&env, port, None);
    config.plugin_mut().watch = true;
    config.plugin_mut().watch_interval_ms = 100;
    let path = config.plugin_mut().path.clone();
    let host = Host::start(config);
    admin.wait_up().await;
    env.produce(&reference::records(first)).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();

    replace_file(&wafer_tests::fixture("user_activity_v2.wasm"), &path);
    admin.wait_active("0.2.0-reload").await;
    env.produce(&reference::records(second)).await.unwrap();
    env.wait_caught_up(CAUGHT_UP).await.unwrap();
    host.stop().await.unwrap();
    let exp = reference::expect(&events);
    assert_outputs(&env, &events, &exp, true, &BTreeSet::new()).await;

    // Pinned to v1's sha256: a replaced file is refused and v1 keeps running.
    let env = Env::new("pinned", 2).await.unwrap();
    let port = wafer_tests::free_port();
    let admin = Admin::new(port, None);
    let mut config = admin_config(&env, port, None);
    config.plugin_mut().watch = true;
    config.plugin_mut().watch_interval_ms = 100;
    let v1 = std::fs::read(&config.plugin_mut().path).unwrap();
    config.plugin_mut().sha256 = Some(wafer::plugin::engine::sha256_hex(&v1));
    let path = config.plugin_mut().path.clone();
    let host = Host::start(config);
    admin.wait_up().await;
    replace_file(&wafer_tests::fixture("user_activity_v2.wasm"), &path);
    let deadline = Instant::now() + Duration::from_secs(30);
    let rejected = loop {
        let versions = admin.versions().await;
        if let Some(r) = versions.iter().find(|v| v["state"] == "rejected") {
            break r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the pinned file change was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("does not match the pinned"),
        "{rejected}"
    );
    let report = host.stop().await.unwrap();
    assert_eq!(report.plugin, "user-activity@0.1.0");
}
