//! The plugin engine: one wasmtime `Engine` per process, configured for pure
//! feature plugins (component model, no WASI, epoch interruption, memory caps).
//!
//! A [`Plugin`] is one compiled component with its validated descriptor and a
//! long-lived instance. A trap poisons an instance, so it is dropped and the
//! next call instantiates a fresh one from the cached `InstancePre`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};

use super::bindings::{FeaturePlugin, FeaturePluginPre};
use super::{descriptor, type_name, Batch, Column, ColumnData, Descriptor, DescriptorError};

/// How often the epoch ticker advances; call deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The only imports a plugin may have: the shared types and the log channel.
const GRANTED_IMPORTS: [&str; 2] = ["wafer:plugin/types@0.2.0", "wafer:plugin/log@0.2.0"];

/// The contract version this host implements (`wit/wafer.wit`).
const CONTRACT: &str = "wafer:plugin@0.2.0";

/// Errors loading or calling a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The bytes are not a component implementing `wafer:plugin/feature-plugin`.
    #[error("plugin {path} is not a valid feature-plugin component: {reason}")]
    Invalid { path: String, reason: String },
    /// The plugin's self-description cannot be served.
    #[error("plugin {plugin} describes itself wrongly: {source}")]
    Descriptor {
        plugin: String,
        source: DescriptorError,
    },
    /// The plugin returned an error for a batch (its own `result` error).
    #[error("plugin {plugin} returned an error: {message}")]
    Returned { plugin: String, message: String },
    /// The plugin trapped, ran past its deadline or hit its memory cap.
    #[error("plugin {plugin} trapped: {message}")]
    Trap { plugin: String, message: String },
    /// The plugin's output does not match its descriptor.
    #[error("plugin {plugin} returned malformed output: {message}")]
    BadOutput { plugin: String, message: String },
}

/// Per-plugin resource limits.
#[derive(Debug, Clone, Copy)]
pub struct PluginLimits {
    /// Cap on each linear memory, in bytes.
    pub max_memory_bytes: usize,
    /// Longest time one call may run.
    pub call_timeout: Duration,
    /// Cap on the bytes one call may return (text bytes plus 8 per value).
    pub max_output_bytes: usize,
    /// Cap on core instances, tables and memories per plugin instance.
    pub max_instances: usize,
    /// Cap on the elements of each table.
    pub max_table_elements: usize,
}

impl PluginError {
    /// Short kind, as written in dead letters and metrics: `trap`, `error`, `bad-output` or `load`.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Trap { .. } => "trap",
            PluginError::Returned { .. } => "error",
            PluginError::BadOutput { .. } => "bad-output",
            _ => "load",
        }
    }
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            max_memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(1),
            max_output_bytes: 16 << 20,
            max_instances: 64,
            max_table_elements: 100_000,
        }
    }
}

/// State of one store: its resource limiter and the plugin's log channel.
struct StoreState {
    limits: StoreLimits,
    log: super::log::PluginLog,
}

/// The shared wasmtime engine, its linker, the epoch ticker thread and the
/// precompiled-artifact cache.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<StoreState>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
    cache_dir: Option<PathBuf>,
}

impl PluginEngine {
    /// Creates the engine without an artifact cache. Plugins get no imports
    /// but logging: no WASI, no clock, no I/O.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_cache(None)
    }

    /// Creates the engine; compiled plugins are cached in `cache_dir`, keyed by
    /// the component's sha256 and the engine's compatibility hash.
    pub fn with_cache(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        super::bindings::wafer::plugin::log::add_to_linker::<
            StoreState,
            wasmtime::component::HasSelf<StoreState>,
        >(&mut linker, |state| state)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wafer-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?
        };
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            engine,
            linker,
            stop,
            ticker: Some(ticker),
            cache_dir,
        })
    }

    /// Compiles `bytes`, or loads the artifact cached for `hash` by an earlier
    /// compilation. Only artifacts this engine wrote into its own cache
    /// directory are ever deserialized.
    fn compile(&self, bytes: &[u8], hash: &str) -> wasmtime::Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes);
        };
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(
            &self.engine.precompile_compatibility_hash(),
            &mut engine_hash,
        );
        let engine_hash = std::hash::Hasher::finish(&engine_hash);
        let path = dir.join(format!("{hash}-{engine_hash:016x}.cwasm"));
        if !path.exists() {
            let artifact = self.engine.precompile_component(bytes)?;
            // A name of its own per compilation: two loads of the same plugin
            // at once in one process (parallel tests, several hosts) must not
            // rename each other's file away.
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(".{hash}-{}-{n}.tmp", std::process::id()));
            std::fs::write(&tmp, &artifact)?;
            std::fs::rename(&tmp, &path)?;
        }
        // SAFETY: the file was produced by `precompile_component` of an engine
        // with the same compatibility hash and written under a fresh name into
        // Wafer's own cache directory; it is never modified afterwards.
        unsafe { Component::deserialize_file(&self.engine, &path) }
    }

    /// Loads, compiles, instantiates and validates the plugin at `path`.
    pub fn load_file(&self, path: &Path, limits: PluginLimits) -> Result<Plugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load(&bytes, &path.display().to_string(), limits)
    }

    /// Compiles `bytes` (named `origin` in errors) and prepares a plugin.
    pub fn load(
        &self,
        bytes: &[u8],
        origin: &str,
        limits: PluginLimits,
    ) -> Result<Plugin, PluginError> {
        let invalid = |e: wasmtime::Error| PluginError::Invalid {
            path: origin.to_owned(),
            reason: format!("{e:#}"),
        };
        let hash = sha256_hex(bytes);
        let component = self.compile(bytes, &hash).map_err(invalid)?;
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let denied: Vec<&str> = imports
            .iter()
            .map(String::as_str)
            .filter(|name| !GRANTED_IMPORTS.contains(name))
            .collect();
        if let Some(old) = denied.iter().find(|n| n.starts_with("wafer:plugin/")) {
            return Err(PluginError::Invalid {
                path: origin.to_owned(),
                reason: format!(
                    "it was built against another version of the plugin contract ({old}); this host \
                     implements {CONTRACT}: rebuild the plugin with the current SDK"
                ),
            });
        }
        if !denied.is_empty() {
            return Err(PluginError::Invalid {
                path: origin.to_owned(),
                reason: format!(
                    "it imports {} which Wafer does not grant: a plugin gets no WASI, filesystem, network, \
                     environment, clock or randomness, only {}",
                    denied.join(", "),
                    GRANTED_IMPORTS.join(" and ")
                ),
            });
        }
        let pre = self.linker.instantiate_pre(&component).map_err(invalid)?;
        let pre = FeaturePluginPre::new(pre).map_err(invalid)?;
        let mut plugin = Plugin {
            engine: self.engine.clone(),
            pre,
            limits,
            name: origin.to_owned(),
            descriptor: None,
            instance: None,
            content_hash: hash,
            imports,
        };
        let described = plugin.describe_fresh()?;
        descriptor::validate(&described).map_err(|source| PluginError::Descriptor {
            plugin: origin.to_owned(),
            source,
        })?;
        plugin.name = format!("{}@{}", described.name, described.version);
        if let Some((store, _)) = &mut plugin.instance {
            // The instance that described itself logs under its real name from now on.
            store.data_mut().log = super::log::PluginLog::new(&plugin.name);
        }
        plugin.descriptor = Some(described);
        Ok(plugin)
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// A loaded plugin with its long-lived instance.
pub struct Plugin {
    engine: Engine,
    pre: FeaturePluginPre<StoreState>,
    limits: PluginLimits,
    name: String,
    descriptor: Option<Descriptor>,
    instance: Option<(Store<StoreState>, FeaturePlugin)>,
    content_hash: String,
    imports: Vec<String>,
}

impl Plugin {
    /// The interfaces the component imports (all granted, or it would not load).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// `name@version`, as the plugin describes itself.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The validated self-description.
    pub fn descriptor(&self) -> &Descriptor {
        self.descriptor
            .as_ref()
            .expect("a Plugin is only handed out after describe succeeded")
    }

    /// Hex sha256 of the component bytes.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    fn describe_fresh(&mut self) -> Result<Descriptor, PluginError> {
        let name = self.name.clone();
        self.with_instance(|store, bindings| bindings.call_describe(store))
            .map_err(|message| PluginError::Trap {
                plugin: name,
                message,
            })
    }

    /// Computes the feature columns for `batch`, checked against the descriptor.
    pub fn compute(&mut self, batch: &Batch) -> Result<Vec<Column>, PluginError> {
        let plugin = self.name.clone();
        let result = self
            .with_instance(|store, bindings| bindings.call_compute(store, batch))
            .map_err(|message| PluginError::Trap {
                plugin: plugin.clone(),
                message,
            })?;
        let columns = result.map_err(|message| PluginError::Returned {
            plugin: plugin.clone(),
            message,
        })?;
        check_output(
            self.descriptor(),
            batch.rows,
            &columns,
            self.limits.max_output_bytes,
        )
        .map_err(|message| PluginError::BadOutput { plugin, message })?;
        Ok(columns)
    }

    /// Runs `f` on the live instance (instantiating it if needed) under the call
    /// deadline. On a trap the instance is discarded.
    fn with_instance<R>(
        &mut self,
        f: impl FnOnce(&mut Store<StoreState>, &FeaturePlugin) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        if self.instance.is_none() {
            let limits = StoreLimitsBuilder::new()
                .memory_size(self.limits.max_memory_bytes)
                .table_elements(self.limits.max_table_elements)
                .instances(self.limits.max_instances)
                .tables(self.limits.max_instances)
                .memories(self.limits.max_instances)
                .trap_on_grow_failure(true)
                .build();
            let log = super::log::PluginLog::new(&self.name);
            let mut store = Store::new(&self.engine, StoreState { limits, log });
            store.limiter(|s| &mut s.limits);
            store.set_epoch_deadline(u64::MAX / 2);
            let bindings = self
                .pre
                .instantiate(&mut store)
                .map_err(|e| format!("instantiation failed: {e:#}"))?;
            self.instance = Some((store, bindings));
        }
        let (store, bindings) = self.instance.as_mut().expect("instance was just created");
        let ticks = (self.limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        match f(store, bindings) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.instance = None;
                Err(self.describe_trap(&e))
            }
        }
    }
}

impl super::bindings::wafer::plugin::log::Host for StoreState {
    fn emit(
        &mut self,
        level: super::bindings::wafer::plugin::log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) {
        self.log.emit(level, &message, &fields);
    }
}

impl Plugin {
    /// One line saying why a call trapped, naming the limit when one was hit.
    fn describe_trap(&self, e: &wasmtime::Error) -> String {
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => format!(
                "ran past its {} ms call deadline and was interrupted",
                self.limits.call_timeout.as_millis()
            ),
            Some(wasmtime::Trap::UnreachableCodeReached) => {
                "panicked (wasm `unreachable` executed)".to_owned()
            }
            Some(trap) => format!("wasm trap: {trap}"),
            None => {
                let cause = e.root_cause().to_string();
                if cause.contains("growing memory") {
                    format!(
                        "hit its {} MiB memory cap ({cause})",
                        self.limits.max_memory_bytes >> 20
                    )
                } else {
                    cause
                }
            }
        }
    }
}

/// Checks that `columns` has one column per feature, of its type, with `rows`
/// rows, within `max_bytes`.
fn check_output(
    d: &Descriptor,
    rows: u32,
    columns: &[Column],
    max_bytes: usize,
) -> Result<(), String> {
    let bytes: usize = columns
        .iter()
        .map(|c| match &c.data {
            ColumnData::Text(t) => {
                t.dictionary.iter().map(String::len).sum::<usize>() + 4 * t.codes.len()
            }
            ColumnData::Int64(v) => 8 * v.len(),
            ColumnData::Float64(v) => 8 * v.len(),
            ColumnData::Boolean(v) => v.len(),
            ColumnData::EventList(l) => 8 * l.times.len(),
        })
        .sum();
    if bytes > max_bytes {
        return Err(format!(
            "{bytes} bytes returned, more than the {max_bytes}-byte output cap"
        ));
    }
    if columns.len() != d.features.len() {
        return Err(format!(
            "{} columns returned, {} features declared",
            columns.len(),
            d.features.len()
        ));
    }
    let rows = rows as usize;
    for (feature, column) in d.features.iter().zip(columns) {
        let (kind, len) = match &column.data {
            ColumnData::Int64(v) => (super::ValueType::Int64, v.len()),
            ColumnData::Float64(v) => (super::ValueType::Float64, v.len()),
            ColumnData::Boolean(v) => (super::ValueType::Boolean, v.len()),
            ColumnData::Text(t) => {
                let valid_row = |i: usize| column.valid.get(i).copied().unwrap_or(true);
                if let Some((_, bad)) = t
                    .codes
                    .iter()
                    .enumerate()
                    .find(|(i, c)| valid_row(*i) && **c as usize >= t.dictionary.len())
                {
                    return Err(format!(
                        "feature `{}`: code {bad} outside its dictionary of {}",
                        feature.name,
                        t.dictionary.len()
                    ));
                }
                (super::ValueType::Text, t.codes.len())
            }
            ColumnData::EventList(_) => {
                return Err(format!(
                    "feature `{}`: an event list is not a feature value",
                    feature.name
                ))
            }
        };
        if kind != feature.kind {
            return Err(format!(
                "feature `{}` is declared {} but returned as {}",
                feature.name,
                type_name(feature.kind),
                type_name(kind)
            ));
        }
        if len != rows || !(column.valid.is_empty() || column.valid.len() == rows) {
            return Err(format!(
                "feature `{}` has {len} rows, expected {rows}",
                feature.name
            ));
        }
    }
    Ok(())
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
