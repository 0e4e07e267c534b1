//! Plugin versions of a running pipeline and the hot-load workflow.
//!
//! The processor owns the active plugin. A new version (from the watched
//! plugin file or the admin endpoint) is compiled (through the artifact
//! cache), instantiated, asked for its descriptor, checked for compatibility
//! with the active one, and smoke-run on a recent real input; only then is it
//! queued. The source swaps it in between two batches, so every batch is
//! computed by exactly one version and the window state carries over. The
//! replaced version is kept for rollback.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{Descriptor, Plugin, PluginEngine, PluginError, PluginLimits};
use crate::pipeline::RecentBatch;
use crate::window::Plan;

/// Why a new version was refused. The active version keeps running.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not have the sha256 pinned in the config.
    #[error("sha256 {actual} does not match the pinned {pinned}")]
    PinMismatch { pinned: String, actual: String },
    /// It does not compile, instantiate or describe itself validly.
    #[error(transparent)]
    Load(#[from] PluginError),
    /// Its descriptor cannot take over the active version's window state.
    #[error("incompatible with the running version: {0}")]
    Incompatible(String),
    /// It failed on a recent real input.
    #[error("smoke run on recent events failed: {0}")]
    Smoke(PluginError),
    /// There is no previous version.
    #[error("no previous version to roll back to")]
    NothingToRollBack,
}

/// One version as listed by the admin endpoint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VersionInfo {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// `active`, `pending` (validated, swapped in at the next batch boundary),
    /// `previous` (available for rollback), `retired` or `rejected`.
    pub state: String,
    /// Where it came from: a file path or `admin upload`.
    pub origin: String,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it reached its state (RFC 3339, wall clock).
    pub since: String,
    /// Feature values this version computed.
    pub updates: u64,
    /// Entities this version failed on (dead-lettered).
    pub failures: u64,
    /// How long processing stood still the last time this version was swapped
    /// in (absent for the version the run started with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap_pause_us: Option<u64>,
}

struct Inner {
    /// What a new version must match: entity key, inputs and aggregation plan.
    required: (String, Vec<(String, super::ValueType)>, Plan, String),
    pending: Option<Plugin>,
    previous: Option<Plugin>,
    versions: Vec<VersionInfo>,
}

/// Shared handle on the plugin versions of one view. A queued version is
/// announced on the `ready` notifier the view's source waits on.
pub struct PluginManager {
    engine: Arc<PluginEngine>,
    limits: PluginLimits,
    pinned_sha256: Option<String>,
    recent: RecentBatch,
    inner: Mutex<Inner>,
    ready: Arc<tokio::sync::Notify>,
}

fn requirements(d: &Descriptor) -> (String, Vec<(String, super::ValueType)>, Plan, String) {
    (
        d.entity_key.clone(),
        d.inputs.iter().map(|i| (i.name.clone(), i.kind)).collect(),
        Plan::new(d),
        d.name.clone(),
    )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn info(plugin: &Plugin, state: &str, origin: &str) -> VersionInfo {
    let d = plugin.descriptor();
    VersionInfo {
        name: d.name.clone(),
        version: d.version.clone(),
        sha256: plugin.content_hash().to_owned(),
        state: state.to_owned(),
        origin: origin.to_owned(),
        reason: None,
        since: now(),
        updates: 0,
        failures: 0,
        swap_pause_us: None,
    }
}

impl PluginManager {
    /// A manager whose active version is `active` (loaded from `origin`).
    pub fn new(
        engine: Arc<PluginEngine>,
        limits: PluginLimits,
        pinned_sha256: Option<String>,
        active: &Plugin,
        origin: &str,
        recent: RecentBatch,
        ready: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            engine,
            limits,
            pinned_sha256,
            recent,
            inner: Mutex::new(Inner {
                required: requirements(active.descriptor()),
                pending: None,
                previous: None,
                versions: vec![info(active, "active", origin)],
            }),
            ready,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("never poisoned")
    }

    /// Every version seen, newest last.
    pub fn versions(&self) -> Vec<VersionInfo> {
        self.lock().versions.clone()
    }

    /// The sha256 of the active version.
    pub fn active_sha256(&self) -> Option<String> {
        self.lock()
            .versions
            .iter()
            .rev()
            .find(|v| v.state == "active")
            .map(|v| v.sha256.clone())
    }

    /// Validates `bytes` as a new version and queues it. Blocking (compiles):
    /// call it off the async executor. `check_pin` applies the configured
    /// sha256 pin (to the watched file).
    pub fn load(
        &self,
        bytes: &[u8],
        origin: &str,
        check_pin: bool,
    ) -> Result<VersionInfo, ReloadError> {
        let result = self.validate(bytes, origin, check_pin);
        let mut inner = self.lock();
        match result {
            Ok(plugin) => {
                let info = info(&plugin, "pending", origin);
                for v in inner.versions.iter_mut().filter(|v| v.state == "pending") {
                    v.state = "retired".into();
                }
                inner.pending = Some(plugin);
                inner.versions.push(info.clone());
                drop(inner);
                tracing::info!(plugin = %info.name, version = %info.version, sha256 = %info.sha256, %origin,
                    "new plugin version validated; swapping it in at the next batch boundary");
                self.ready.notify_one();
                Ok(info)
            }
            Err(e) => {
                tracing::warn!(%origin, error = %e, "new plugin version rejected; the running version keeps running");
                inner.versions.push(VersionInfo {
                    name: String::new(),
                    version: String::new(),
                    sha256: super::engine::sha256_hex(bytes),
                    state: "rejected".into(),
                    origin: origin.to_owned(),
                    reason: Some(e.to_string()),
                    since: now(),
                    updates: 0,
                    failures: 0,
                    swap_pause_us: None,
                });
                Err(e)
            }
        }
    }

    fn validate(&self, bytes: &[u8], origin: &str, check_pin: bool) -> Result<Plugin, ReloadError> {
        if let (true, Some(pinned)) = (check_pin, &self.pinned_sha256) {
            let actual = super::engine::sha256_hex(bytes);
            if !actual.eq_ignore_ascii_case(pinned) {
                return Err(ReloadError::PinMismatch {
                    pinned: pinned.clone(),
                    actual,
                });
            }
        }
        let mut plugin = self.engine.load(bytes, origin, self.limits)?;
        let found = requirements(plugin.descriptor());
        let required = self.lock().required.clone();
        if found.3 != required.3 {
            return Err(ReloadError::Incompatible(format!(
                "it is plugin `{}`, the running plugin is `{}`",
                found.3, required.3
            )));
        }
        if found.0 != required.0 || found.1 != required.1 {
            return Err(ReloadError::Incompatible(
                "its entity key or input fields differ".into(),
            ));
        }
        if found.2 != required.2 {
            return Err(ReloadError::Incompatible(
                "its windows or aggregations differ, so the window state cannot carry over".into(),
            ));
        }
        let recent = self.recent.lock().expect("never poisoned").clone();
        if let Some(batch) = recent {
            plugin.compute(&batch).map_err(ReloadError::Smoke)?;
        }
        Ok(plugin)
    }

    /// Queues the previous version again.
    pub fn rollback(&self) -> Result<VersionInfo, ReloadError> {
        let mut inner = self.lock();
        let plugin = inner
            .previous
            .take()
            .ok_or(ReloadError::NothingToRollBack)?;
        let mut info = info(&plugin, "pending", "rollback");
        if let Some(v) = inner
            .versions
            .iter_mut()
            .rev()
            .find(|v| v.state == "previous")
        {
            v.state = "pending".into();
            v.since = info.since.clone();
            info = v.clone();
        }
        inner.pending = Some(plugin);
        drop(inner);
        tracing::info!(plugin = %info.name, version = %info.version, "rollback queued");
        self.ready.notify_one();
        Ok(info)
    }

    /// Adds to the counters of the active version.
    pub fn count(&self, updates: u64, failures: u64) {
        let mut inner = self.lock();
        if let Some(v) = inner
            .versions
            .iter_mut()
            .rev()
            .find(|v| v.state == "active")
        {
            v.updates += updates;
            v.failures += failures;
        }
    }

    /// Takes the queued version, if any (called by the source between batches).
    pub fn take_pending(&self) -> Option<Plugin> {
        self.lock().pending.take()
    }

    /// Records that `old` was replaced by the version just taken: `old`
    /// becomes the rollback target.
    pub fn swapped(&self, old: Plugin) {
        let mut inner = self.lock();
        let since = now();
        for v in inner.versions.iter_mut() {
            match v.state.as_str() {
                "previous" => v.state = "retired".into(),
                "active" => {
                    v.state = "previous".into();
                    v.since = since.clone();
                }
                _ => {}
            }
        }
        if let Some(v) = inner
            .versions
            .iter_mut()
            .rev()
            .find(|v| v.state == "pending")
        {
            v.state = "active".into();
            v.since = since;
        }
        inner.previous = Some(old);
    }

    /// Records the pause of the swap that made the active version active.
    pub fn record_swap_pause(&self, pause: std::time::Duration) {
        let mut inner = self.lock();
        if let Some(v) = inner
            .versions
            .iter_mut()
            .rev()
            .find(|v| v.state == "active")
        {
            v.swap_pause_us = Some(pause.as_micros() as u64);
        }
    }
}
