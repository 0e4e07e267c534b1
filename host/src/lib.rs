//! Wafer: a WebAssembly-plugin feature runtime.
//!
//! Raw events flow in from Kafka (or a JSONL file); the host keeps per-entity
//! event-time windows, asks a sandboxed feature plugin (a WebAssembly
//! component implementing `wit/`) to turn window aggregates into features, and
//! writes them to Redis and to a Kafka topic.
//!
//! Layout:
//! - [`config`]: the TOML pipeline configuration;
//! - [`event`]: decoding raw JSON events;
//! - [`window`]: event-time window state per partition and entity;
//! - [`plugin`]: the wasmtime engine and the plugin contract;
//! - [`pipeline`]: decode → windows → plugin → feature updates, no I/O;
//! - [`sources`]: Kafka consumer group, JSONL file;
//! - [`sinks`]: Redis, Kafka, embedded in-memory store;
//! - [`kafka_client`]: every Kafka client's settings;
//! - [`metrics`]: pipeline counters;
//! - [`admin`]: the admin HTTP endpoint (plugin versions).
//!
//! [`run`] is what the CLI, the tests and the benchmarks call.

pub mod admin;
pub mod config;
pub mod event;
pub mod kafka_client;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod sinks;
pub mod sources;
pub mod window;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use config::Config;
use metrics::{Counters, Snapshot};
use pipeline::Processor;
use plugin::{PluginEngine, PluginLimits, PluginManager};
use sinks::memory::MemoryStore;
use sinks::redis::RedisSink;

/// Why a pipeline run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The plugin could not be loaded or validated.
    #[error(transparent)]
    Plugin(#[from] plugin::PluginError),
    /// The wasm engine could not start.
    #[error("cannot start the plugin engine: {0}")]
    Engine(String),
    /// A Kafka client failed in a way the pipeline cannot ride out.
    #[error("kafka: {0}")]
    Kafka(String),
    /// A sink write was not acknowledged.
    #[error(transparent)]
    Sink(#[from] sinks::SinkError),
    /// The event source could not be read.
    #[error("source: {0}")]
    Source(String),
    /// The plugin file does not match its pinned sha256.
    #[error("plugin refused: {0}")]
    Reload(#[from] plugin::ReloadError),
    /// The admin endpoint could not start.
    #[error("admin endpoint: {0}")]
    Admin(String),
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// `name@version` of the plugin.
    pub plugin: String,
    /// Counters at the end of the run.
    pub counters: Snapshot,
    /// Contents of the embedded store, when no Redis was configured.
    pub store: Option<BTreeMap<String, String>>,
    /// Entities and events held in windows at the end.
    pub state: (usize, usize),
    /// Every plugin version seen during the run.
    pub versions: Vec<plugin::VersionInfo>,
    /// Where the admin endpoint listened, if it ran.
    pub admin_addr: Option<std::net::SocketAddr>,
}

/// Runs the pipeline of `config` until its source ends (file) or `shutdown`
/// is cancelled (Kafka), then flushes, commits and reports. Needs a
/// multi-threaded tokio runtime (Kafka calls block in place).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<RunReport, RunError> {
    config.validate()?;
    let cache_dir = config
        .plugin
        .cache_dir
        .clone()
        .or_else(config::default_cache_dir);
    let engine =
        PluginEngine::with_cache(cache_dir).map_err(|e| RunError::Engine(format!("{e:#}")))?;
    let engine = Arc::new(engine);
    let limits = PluginLimits {
        max_memory_bytes: (config.plugin.max_memory_mb as usize) << 20,
        call_timeout: Duration::from_millis(config.plugin.call_timeout_ms),
        max_output_bytes: (config.plugin.max_output_mb as usize) << 20,
        max_instances: config.plugin.max_instances,
        ..PluginLimits::default()
    };
    let origin = config.plugin.path.display().to_string();
    let bytes = std::fs::read(&config.plugin.path).map_err(|source| plugin::PluginError::Read {
        path: origin.clone(),
        source,
    })?;
    if let Some(pinned) = &config.plugin.sha256 {
        let actual = plugin::engine::sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(pinned) {
            return Err(RunError::Reload(plugin::ReloadError::PinMismatch {
                pinned: pinned.clone(),
                actual,
            }));
        }
    }
    let plugin = engine.load(&bytes, &origin, limits)?;
    tracing::info!(plugin = %plugin.name(), sha256 = %plugin.content_hash(), "plugin loaded");
    let counters = Counters::default();
    let mut processor = Processor::new(
        plugin,
        &config.pipeline.timestamp_field,
        config.pipeline.max_future_ms,
        config.plugin.key_template.as_deref(),
        counters.clone(),
    )
    .with_max_consecutive_failures(config.plugin.max_consecutive_failures);
    let manager = Arc::new(PluginManager::new(
        engine,
        limits,
        config.plugin.sha256.clone(),
        processor.plugin(),
        &origin,
        processor.recent_batch(),
    ));
    // Stops the watcher and the admin endpoint when this run ends.
    let run_scope = shutdown.child_token();
    let admin_addr = match &config.admin {
        Some(admin) => Some(
            admin::serve(
                &admin.listen,
                admin.token.clone(),
                manager.clone(),
                run_scope.clone(),
            )
            .await
            .map_err(|e| RunError::Admin(format!("cannot listen on {}: {e}", admin.listen)))?,
        ),
        None => None,
    };
    if config.plugin.watch {
        tokio::spawn(watch_plugin_file(
            config.plugin.path.clone(),
            Duration::from_millis(config.plugin.watch_interval_ms),
            manager.clone(),
            run_scope.clone(),
        ));
    }
    let redis = match &config.redis {
        Some(r) => Some(RedisSink::connect(&r.url, config.plugin.ttl_secs).await?),
        None => None,
    };
    let memory = MemoryStore::default();
    let uses_memory = redis.is_none();
    if let Some(kafka) = &config.kafka {
        sources::kafka::run(
            kafka,
            &config.pipeline,
            config.plugin.on_failure,
            &mut processor,
            &manager,
            redis,
            shutdown,
        )
        .await?;
    } else if let Some(file) = &config.file {
        sources::file::run(
            file,
            &config.pipeline,
            &mut processor,
            redis,
            &memory,
            shutdown,
        )
        .await?;
    }
    run_scope.cancel();
    Ok(RunReport {
        plugin: processor.plugin().name().to_owned(),
        counters: counters.snapshot(),
        store: uses_memory.then(|| memory.contents()),
        state: processor.state_size(),
        versions: manager.versions(),
        admin_addr,
    })
}

/// Polls the plugin file and loads it as a new version when its content changes.
async fn watch_plugin_file(
    path: std::path::PathBuf,
    every: Duration,
    manager: Arc<PluginManager>,
    shutdown: CancellationToken,
) {
    let mut last_seen: Option<(std::time::SystemTime, u64)> = std::fs::metadata(&path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())));
    let mut last_tried = manager.active_sha256();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let seen = meta.modified().ok().map(|m| (m, meta.len()));
        if seen.is_none() || seen == last_seen {
            continue;
        }
        last_seen = seen;
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let sha = plugin::engine::sha256_hex(&bytes);
        if last_tried.as_deref() == Some(sha.as_str()) {
            continue;
        }
        last_tried = Some(sha);
        let manager = manager.clone();
        let origin = path.display().to_string();
        // The outcome is logged and listed by the manager.
        let _ = tokio::task::spawn_blocking(move || manager.load(&bytes, &origin, true)).await;
    }
}
