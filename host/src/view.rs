//! Feature views: one plugin over the source's events, with its own entity
//! key, windows, online keys, TTL and output topic. Several views share one
//! source, its partitions and its offset commits; each keeps its own window
//! state and plugin versions.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{PipelineConfig, ViewSpec};
use crate::entity::EntityKey;
use crate::metrics::{Counters, Snapshot};
use crate::pipeline::{FailurePolicy, Processor};
use crate::plugin::{self, PluginEngine, PluginLimits, PluginManager, VersionInfo};
use crate::sinks::redis::OnlineLayout;
use crate::RunError;

/// One running view.
pub struct View {
    /// The configured name, or the plugin's own name for a `[plugin]` config.
    pub name: String,
    pub processor: Processor,
    pub manager: Arc<PluginManager>,
    pub policy: FailurePolicy,
    /// Topic of this view's feature records.
    pub output_topic: Option<String>,
    /// Where the plugin was loaded from (watched for new versions).
    pub plugin_path: std::path::PathBuf,
    /// How the view's features are stored in Redis.
    pub online: Arc<OnlineLayout>,
    /// The view's offline log, when `[offline]` is configured.
    pub offline: Option<crate::offline::SharedLog>,
}

/// What a view did during a run.
#[derive(Debug, Clone)]
pub struct ViewReport {
    pub name: String,
    /// `name@version` of the plugin at the end.
    pub plugin: String,
    pub counters: Snapshot,
    /// Every plugin version seen.
    pub versions: Vec<VersionInfo>,
    /// Entities and events held in windows at the end.
    pub state: (usize, usize),
}

/// The view's entity key: `entity_fields` when configured, else the plugin's
/// entity key; integer Feast join keys must hold integers.
fn entity_key(p: &crate::config::PluginConfig, plugin_key: &str) -> EntityKey {
    let mut key = match &p.entity_fields {
        Some(fields) => EntityKey::new(fields.clone()),
        None => EntityKey::single(plugin_key),
    };
    if let Some(feast) = &p.feast {
        for (field, kind) in &feast.join_key_types {
            if *kind != crate::config::JoinKeyType::String {
                key.require_integer(field);
            }
        }
    }
    key
}

/// Resource limits of a view's plugin, from its config.
fn limits(spec: &ViewSpec) -> PluginLimits {
    let p = &spec.plugin;
    PluginLimits {
        max_memory_bytes: (p.max_memory_mb as usize) << 20,
        call_timeout: Duration::from_millis(p.call_timeout_ms),
        max_output_bytes: (p.max_output_mb as usize) << 20,
        max_instances: p.max_instances,
        ..PluginLimits::default()
    }
}

impl View {
    /// Loads the view's plugin (checking its pin) and prepares its processor.
    /// `ready` is shared by every view's plugin manager, so that one source can
    /// wait for a new version of any of them.
    pub fn build(
        spec: &ViewSpec,
        pipeline: &PipelineConfig,
        engine: &Arc<PluginEngine>,
        ready: Arc<tokio::sync::Notify>,
    ) -> Result<Self, RunError> {
        let p = &spec.plugin;
        let origin = p.path.display().to_string();
        let bytes = std::fs::read(&p.path).map_err(|source| plugin::PluginError::Read {
            path: origin.clone(),
            source,
        })?;
        if let Some(pinned) = &p.sha256 {
            let actual = plugin::engine::sha256_hex(&bytes);
            if !actual.eq_ignore_ascii_case(pinned) {
                return Err(RunError::Reload(plugin::ReloadError::PinMismatch {
                    pinned: pinned.clone(),
                    actual,
                }));
            }
        }
        let limits = limits(spec);
        let loaded = engine.load(&bytes, &origin, limits)?;
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| loaded.descriptor().name.clone());
        tracing::info!(view = %name, plugin = %loaded.name(), sha256 = %loaded.content_hash(), "plugin loaded");
        let processor = Processor::new(
            loaded,
            &pipeline.timestamp_field,
            pipeline.max_future_ms,
            Counters::default(),
        )
        .with_max_consecutive_failures(p.max_consecutive_failures)
        .with_out_of_orderness(pipeline.out_of_orderness_ms)
        .with_distinct_exact_limit(p.distinct_exact_limit)
        .with_tiling(p.tiling())
        .map_err(|e| {
            RunError::Config(crate::config::ConfigError::Invalid(format!(
                "view `{name}`: {e}"
            )))
        })?;
        let descriptor = processor.plugin().descriptor().clone();
        let entity = entity_key(p, &descriptor.entity_key);
        let key_template = p
            .key_template
            .clone()
            .unwrap_or_else(|| entity.default_template());
        let processor = processor.with_entity_key(entity.clone());
        let online = OnlineLayout::new(
            p.layout,
            entity,
            key_template,
            p.ttl_secs,
            p.feast.as_ref(),
            descriptor.features.clone().into(),
        )
        .map_err(|e| {
            RunError::Config(crate::config::ConfigError::Invalid(format!(
                "view `{name}`: {e}"
            )))
        })?;
        let manager = Arc::new(PluginManager::new(
            engine.clone(),
            limits,
            p.sha256.clone(),
            processor.plugin(),
            &origin,
            processor.recent_batch(),
            ready,
        ));
        Ok(Self {
            name,
            processor,
            manager,
            policy: p.on_failure,
            output_topic: spec.output_topic.clone(),
            plugin_path: p.path.clone(),
            online: Arc::new(online),
            offline: None,
        })
    }

    /// Swaps in a validated new plugin version, if one is queued. The caller
    /// has just flushed, so the swap falls on a batch boundary. The pause (from
    /// taking the queued version to the replaced one being kept for rollback and
    /// the one before it dropped) goes to the `wafer_plugin_swap_pause_seconds`
    /// histogram, the new version's `swap_pause_us` and the log.
    pub fn swap_if_pending(&mut self) -> bool {
        let started = std::time::Instant::now();
        let Some(new) = self.manager.take_pending() else {
            return false;
        };
        let old = self.processor.swap_plugin(new);
        let from = old.name().to_owned();
        self.manager.swapped(old);
        let pause = started.elapsed();
        self.manager.record_swap_pause(pause);
        let counters = self.processor.counters();
        counters.observe_plugin_swap(pause);
        counters.add_reloads(1);
        tracing::info!(view = %self.name, %from, to = %self.processor.plugin().name(),
            pause_us = pause.as_micros() as u64, "plugin version swapped in");
        true
    }

    /// The plugin tag of feature records: `name@version#sha256`.
    pub fn plugin_tag(&self) -> String {
        self.processor.plugin_tag().to_owned()
    }

    /// The view's report.
    pub fn report(&self) -> ViewReport {
        ViewReport {
            name: self.name.clone(),
            plugin: self.processor.plugin().name().to_owned(),
            counters: self.processor.counters().snapshot(),
            versions: self.manager.versions(),
            state: self.processor.state_size(),
        }
    }
}
