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
//! - [`metrics`]: pipeline counters.
//!
//! [`run`] is what the CLI, the tests and the benchmarks call.

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
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use config::Config;
use metrics::{Counters, Snapshot};
use pipeline::Processor;
use plugin::{PluginEngine, PluginLimits};
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
}

/// Runs the pipeline of `config` until its source ends (file) or `shutdown`
/// is cancelled (Kafka), then flushes, commits and reports.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<RunReport, RunError> {
    config.validate()?;
    let engine = PluginEngine::new().map_err(|e| RunError::Engine(format!("{e:#}")))?;
    let limits = PluginLimits {
        max_memory_bytes: (config.plugin.max_memory_mb as usize) << 20,
        call_timeout: Duration::from_millis(config.plugin.call_timeout_ms),
        max_output_bytes: (config.plugin.max_output_mb as usize) << 20,
        max_instances: config.plugin.max_instances,
        ..PluginLimits::default()
    };
    let plugin = engine.load_file(&config.plugin.path, limits)?;
    tracing::info!(plugin = %plugin.name(), hash = %plugin.content_hash(), "plugin loaded");
    let counters = Counters::default();
    let mut processor = Processor::new(
        plugin,
        &config.pipeline.timestamp_field,
        config.pipeline.max_future_ms,
        config.plugin.key_template.as_deref(),
        counters.clone(),
    )
    .with_max_consecutive_failures(config.plugin.max_consecutive_failures);
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
    Ok(RunReport {
        plugin: processor.plugin().name().to_owned(),
        counters: counters.snapshot(),
        store: uses_memory.then(|| memory.contents()),
        state: processor.state_size(),
    })
}
