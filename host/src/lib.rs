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
//! - [`entity`]: entity keys of one field or a tuple of fields, and their ids;
//! - [`window`]: event-time window state per partition and entity;
//! - [`plugin`]: the wasmtime engine and the plugin contract;
//! - [`pipeline`]: decode → windows → plugin → feature updates, no I/O;
//! - [`view`]: a feature view (one plugin, its processor and versions);
//! - [`repartition`]: views keyed by another field than the input topics' key;
//! - [`sources`]: Kafka consumer group, JSONL file;
//! - [`sinks`]: Redis, Kafka, embedded in-memory store;
//! - [`kafka_client`]: every Kafka client's settings;
//! - [`metrics`]: pipeline counters;
//! - [`offline`]: the offline log (Parquet files for training);
//! - [`backfill`]: recomputing views from recorded events into the offline log;
//! - [`admin`]: the host's HTTP server (plugin versions, features, metrics, probes, status page);
//! - [`serving`]: what that server reads from the running pipeline;
//! - [`status`]: per-partition readiness, flush latencies, recent dead letters and the status page.
//!
//! [`run`] is what the CLI, the tests and the benchmarks call.

pub mod admin;
pub mod backfill;
pub mod config;
pub mod entity;
pub mod event;
pub mod kafka_client;
pub mod metrics;
pub mod offline;
pub mod pipeline;
pub mod plugin;
pub mod repartition;
pub mod serving;
pub mod sinks;
pub mod sources;
pub mod status;
pub mod toolkit;
pub mod view;
pub mod window;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use config::Config;
use metrics::Snapshot;
use plugin::{PluginEngine, PluginManager};
use sinks::memory::MemoryStore;
use sinks::redis::RedisSink;
use view::{View, ViewReport};

/// How often the HTTP server's consumer-lag gauges are refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(2);

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
    /// The offline log could not be written.
    #[error(transparent)]
    Offline(#[from] offline::OfflineError),
    /// A repartition topic could not be prepared.
    #[error(transparent)]
    Repartition(#[from] repartition::RepartitionError),
    /// The brokers refused an offset commit whose metadata is larger than
    /// their `offset.metadata.max.bytes`.
    #[error(
        "the brokers refused the offset commit of group `{group}`: the metadata of {topic} partition \
         {partition} is {bytes} bytes ({contents}), more than their offset.metadata.max.bytes \
         (4096 by default). Raise offset.metadata.max.bytes above {bytes} on every broker and \
         start the host again (it resumes from the last commit; nothing is lost); see \
         docs/config.md, \"Repartitioned views\""
    )]
    CommitMetadataTooLarge {
        group: String,
        topic: String,
        partition: i32,
        bytes: usize,
        /// What the metadata holds: checkpoints of so many views, dedup state of so many input partitions.
        contents: String,
    },
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// `name@version` of the first view's plugin at the end.
    pub plugin: String,
    /// Counters at the end of the run, summed over the views (with several
    /// views, each view counts every event it reads).
    pub counters: Snapshot,
    /// Contents of the embedded store, when no Redis was configured.
    pub store: Option<BTreeMap<String, String>>,
    /// Entities and events held in windows at the end, summed over the views.
    pub state: (usize, usize),
    /// Every plugin version the first view saw.
    pub versions: Vec<plugin::VersionInfo>,
    /// Each view's report.
    pub views: Vec<ViewReport>,
    /// Where the admin endpoint listened, if it ran.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// The Kafka source's writes: count and total time of each step.
    pub writes: metrics::WriteTotals,
}

/// Runs the pipeline of `config` until its source ends (file) or `shutdown`
/// is cancelled (Kafka), then flushes, commits and reports. Needs a
/// multi-threaded tokio runtime (Kafka calls block in place).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<RunReport, RunError> {
    config.validate()?;
    let specs = config.view_specs();
    let cache_dir = specs[0]
        .plugin
        .cache_dir
        .clone()
        .or_else(config::default_cache_dir);
    let engine =
        PluginEngine::with_cache(cache_dir).map_err(|e| RunError::Engine(format!("{e:#}")))?;
    let engine = Arc::new(engine);
    // The Kafka source each view reads from: 0 for the input topics, one more
    // per repartitioned view. Each source waits for its own views' new versions.
    let source_of = source_of_views(&config, &specs);
    let sources = source_of.iter().max().map_or(1, |n| n + 1);
    let readies: Vec<Arc<tokio::sync::Notify>> = (0..sources)
        .map(|_| Arc::new(tokio::sync::Notify::new()))
        .collect();
    let mut views = Vec::with_capacity(specs.len());
    for (spec, source) in specs.iter().zip(&source_of) {
        let view = View::build(spec, &config.pipeline, &engine, readies[*source].clone())?;
        if views.iter().any(|v: &View| v.name == view.name) {
            return Err(RunError::Config(config::ConfigError::Invalid(format!(
                "two views are named `{}`",
                view.name
            ))));
        }
        views.push(view);
    }
    if let Some(offline) = &config.offline {
        for view in &mut views {
            view.open_offline(&offline.dir, offline.roll_policy(), true)?;
        }
    }
    // Stops the watchers, the HTTP server and the lag reader when this run ends.
    let run_scope = shutdown.child_token();
    let redis = match &config.redis {
        Some(r) => Some(RedisSink::connect(&r.url).await?),
        None => None,
    };
    let memory = MemoryStore::default();
    let uses_memory = redis.is_none();
    let store = match &redis {
        Some(r) => serving::Store::Redis(r.clone()),
        None => serving::Store::Memory(memory.clone()),
    };
    let served = views.iter().map(serving::ServedView::new).collect();
    let serving = serving::Serving::new(served, store);
    // Readiness waits for every Kafka source's group: the input topics' and
    // each repartitioned view's `<group>.<view>`.
    let groups = match &config.kafka {
        Some(kafka) => std::iter::once(kafka.group.clone())
            .chain(
                views
                    .iter()
                    .zip(&specs)
                    .zip(&source_of)
                    .filter(|(_, source)| **source > 0)
                    .filter_map(|((view, spec), _)| {
                        let r = spec.repartition.as_ref()?;
                        Some(repartition::source_config(kafka, &view.name, &r.topic).group)
                    }),
            )
            .collect(),
        None => Vec::new(),
    };
    let status = status::Status::new(serving.ready.clone(), groups);
    let admin_addr = match &config.admin {
        Some(admin) => {
            let addr = admin::serve(
                &admin.listen,
                admin.token.clone(),
                serving.clone(),
                status.clone(),
                run_scope.clone(),
            )
            .await
            .map_err(|e| RunError::Admin(format!("cannot listen on {}: {e}", admin.listen)))?;
            if let Some(kafka) = &config.kafka {
                let mut sources = vec![kafka.clone()];
                for spec in &specs {
                    if let (Some(name), Some(r)) = (&spec.name, &spec.repartition) {
                        sources.push(repartition::source_config(kafka, name, &r.topic));
                    }
                }
                serving::spawn_lag_task(
                    &sources,
                    serving.lag.clone(),
                    LAG_INTERVAL,
                    run_scope.clone(),
                )
                .map_err(RunError::Admin)?;
            }
            Some(addr)
        }
        None => None,
    };
    for (view, spec) in views.iter().zip(&specs) {
        if spec.plugin.watch {
            tokio::spawn(watch_plugin_file(
                view.plugin_path.clone(),
                Duration::from_millis(spec.plugin.watch_interval_ms),
                view.manager.clone(),
                run_scope.clone(),
            ));
        }
    }
    status.readiness.set_running(true);
    let ran = if let Some(kafka) = &config.kafka {
        let sources = KafkaSources {
            input: kafka,
            pipeline: &config.pipeline,
            specs: &specs,
            source_of: &source_of,
            readies,
        };
        sources.run(&mut views, redis, &status, shutdown).await
    } else if let Some(file) = &config.file {
        sources::file::run(file, &config.pipeline, &mut views, redis, &memory, shutdown).await
    } else {
        Ok(())
    };
    status.readiness.set_running(false);
    run_scope.cancel();
    let closed: Result<(), offline::OfflineError> =
        views.iter_mut().try_for_each(View::close_offline);
    ran?;
    closed?;
    let reports: Vec<ViewReport> = views.iter().map(View::report).collect();
    let counters = reports
        .iter()
        .fold(Snapshot::default(), |sum, r| sum.plus(&r.counters));
    Ok(RunReport {
        plugin: reports[0].plugin.clone(),
        counters,
        store: uses_memory.then(|| memory.contents()),
        state: reports
            .iter()
            .fold((0, 0), |(e, n), r| (e + r.state.0, n + r.state.1)),
        versions: reports[0].versions.clone(),
        views: reports,
        admin_addr,
        writes: status.timings.totals(),
    })
}

/// The Kafka source of each view: 0 (the input topics) for a view keyed like
/// them, 1, 2, ... for each view with a repartition topic, in order.
fn source_of_views(config: &Config, specs: &[config::ViewSpec]) -> Vec<usize> {
    let mut next = 0;
    specs
        .iter()
        .map(|s| match (&config.kafka, &s.repartition) {
            (Some(_), Some(_)) => {
                next += 1;
                next
            }
            _ => 0,
        })
        .collect()
}

/// The Kafka sources of a run: one for the input topics (feeding the views
/// keyed like them and forwarding to the repartition topics), one per
/// repartitioned view.
struct KafkaSources<'a> {
    input: &'a config::KafkaConfig,
    pipeline: &'a config::PipelineConfig,
    specs: &'a [config::ViewSpec],
    source_of: &'a [usize],
    readies: Vec<Arc<tokio::sync::Notify>>,
}

impl KafkaSources<'_> {
    /// Runs every source as its own task until `shutdown`; the first that
    /// fails stops the others (which drain and commit). `views` is handed to
    /// the sources and put back in order.
    async fn run(
        self,
        views: &mut Vec<View>,
        redis: Option<RedisSink>,
        status: &status::Status,
        shutdown: CancellationToken,
    ) -> Result<(), RunError> {
        let repartitioned: Vec<config::RepartitionSpec> = self
            .specs
            .iter()
            .zip(self.source_of)
            .filter(|(_, source)| **source > 0)
            .filter_map(|(spec, _)| spec.repartition.clone())
            .collect();
        repartition::ensure_topics(self.input, &repartitioned).await?;
        let routing = || repartition::Routing {
            several_views: views.len() > 1,
            ..Default::default()
        };
        let mut groups: Vec<(config::KafkaConfig, Vec<View>, repartition::Routing)> =
            (0..self.readies.len())
                .map(|_| (self.input.clone(), Vec::new(), routing()))
                .collect();
        for ((view, spec), source) in views.drain(..).zip(self.specs).zip(self.source_of) {
            if let (Some(r), true) = (&spec.repartition, *source > 0) {
                groups[0].2.forwarders.push(repartition::Forwarder::new(
                    &view.name,
                    &r.topic,
                    view.processor.entity_key().clone(),
                    view.processor.counters().clone(),
                ));
                let group = &mut groups[*source];
                group.0 = repartition::source_config(self.input, &view.name, &r.topic);
                group.2.dedup = Some(repartition::Dedup::default());
            }
            groups[*source].1.push(view);
        }
        let stop = shutdown.child_token();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, ((cfg, mut views, routing), ready)) in
            groups.into_iter().zip(self.readies).enumerate()
        {
            let (pipeline, redis, status, stop) = (
                self.pipeline.clone(),
                redis.clone(),
                status.clone(),
                stop.clone(),
            );
            tasks.spawn(async move {
                let ran = sources::kafka::run(
                    &cfg, &pipeline, &mut views, routing, ready, redis, &status, stop,
                )
                .await;
                (i, views, ran)
            });
        }
        let mut returned: Vec<Option<std::collections::VecDeque<View>>> =
            (0..tasks.len()).map(|_| None).collect();
        let mut failed = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, v, ran)) => {
                    returned[i] = Some(v.into());
                    if let Err(e) = ran {
                        stop.cancel();
                        failed.get_or_insert(e);
                    }
                }
                Err(e) => {
                    stop.cancel();
                    failed.get_or_insert(RunError::Source(format!(
                        "a Kafka source task failed: {e}"
                    )));
                }
            }
        }
        // A source that panicked took its views with it; the others come back
        // (their offline logs are closed by the caller).
        for source in self.source_of {
            if let Some(view) = returned[*source].as_mut().and_then(|v| v.pop_front()) {
                views.push(view);
            }
        }
        failed.map_or(Ok(()), Err)
    }
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
