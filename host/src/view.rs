//! Feature views: one plugin over the source's events, with its own entity
//! key, windows, online keys, TTL and output topic. Several views share one
//! source, its partitions and its offset commits; each keeps its own window
//! state and plugin versions.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{PipelineConfig, ViewSpec};
use crate::metrics::{Counters, Snapshot};
use crate::pipeline::{FailurePolicy, Processor};
use crate::plugin::{self, PluginEngine, PluginLimits, PluginManager, VersionInfo};
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
            p.key_template.as_deref(),
            p.ttl_secs,
            Counters::default(),
        )
        .with_max_consecutive_failures(p.max_consecutive_failures)
        .with_out_of_orderness(pipeline.out_of_orderness_ms);
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
        })
    }

    /// Swaps in a validated new plugin version, if one is queued. The caller
    /// has just flushed, so the swap falls on a batch boundary.
    pub fn swap_if_pending(&mut self) -> bool {
        let Some(new) = self.manager.take_pending() else {
            return false;
        };
        let started = std::time::Instant::now();
        let to = new.name().to_owned();
        let old = self.processor.swap_plugin(new);
        tracing::info!(view = %self.name, from = %old.name(), %to,
            pause_us = started.elapsed().as_micros() as u64, "plugin version swapped in");
        self.processor.counters().add_reloads(1);
        self.manager.swapped(old);
        true
    }

    /// The plugin tag of feature records: `name@version#sha256`.
    pub fn plugin_tag(&self) -> String {
        let p = self.processor.plugin();
        format!("{}#{}", p.name(), p.content_hash())
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
