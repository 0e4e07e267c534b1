//! The pipeline configuration: one TOML file, validated once.
//!
//! Every field's doc comment is the user documentation (see `docs/config.md`).
//! `WAFER_KAFKA_BROKERS` and `WAFER_REDIS_URL` override the addresses.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid config {origin}: {source}")]
    Parse {
        origin: String,
        source: Box<toml::de::Error>,
    },
    /// The values do not make a runnable pipeline.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// A whole pipeline: one source, one feature plugin, the outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Batching and validation of events.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Consume events from Kafka (the production source). Exactly one of `kafka` and `file`.
    pub kafka: Option<KafkaConfig>,
    /// Read events from a JSONL file, one event per line, as one partition (demo and tests).
    pub file: Option<FileConfig>,
    /// A single feature view: its plugin and how its features are stored. Use either
    /// `[plugin]` or `[[views]]`.
    pub plugin: Option<PluginConfig>,
    /// Several feature views over the same events, each with its own plugin (entity key,
    /// windows, aggregations), online keys and output topic.
    #[serde(default)]
    pub views: Vec<ViewConfig>,
    /// The Redis online store. Without it, features go to an embedded in-memory store.
    pub redis: Option<RedisConfig>,
    /// The host's HTTP server: plugin versions (list, load, roll back), feature lookups,
    /// Prometheus metrics and probes (see `docs/operations.md`). Off when absent.
    pub admin: Option<AdminConfig>,
    /// The offline log: every feature row also appended to Parquet files for training
    /// (see `docs/operations.md`). Off when absent.
    pub offline: Option<crate::offline::OfflineConfig>,
}

/// One feature view of `[[views]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// Name of the view (letters, digits, `-`, `_`): in logs, dead letters, the admin
    /// endpoint and checkpoints.
    pub name: String,
    /// Topic for this view's feature records; default: `[kafka] output_topic`.
    pub output_topic: Option<String>,
    /// For a view keyed by another field than the input topics' key: the topic the host
    /// re-keys the input records into by this view's entity id (created when missing).
    /// The view consumes it instead of the input topics, in its own consumer group
    /// `<group>.<name>` (see docs/config.md, "Repartitioned views").
    pub repartition_topic: Option<String>,
    /// Partitions of `repartition_topic` when Wafer creates it; default: the input
    /// topics' largest partition count.
    pub repartition_partitions: Option<i32>,
    /// The view's plugin and how its features are stored.
    pub plugin: PluginConfig,
}

/// Where a repartitioned view reads its records from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepartitionSpec {
    /// The topic the input records are re-keyed into.
    pub topic: String,
    /// Its partition count when created (None: the input topics' largest).
    pub partitions: Option<i32>,
}

/// A view to run, from `[plugin]` or `[[views]]`.
#[derive(Debug, Clone)]
pub struct ViewSpec {
    /// The configured name; `None` for `[plugin]`, named after the plugin itself.
    pub name: Option<String>,
    pub output_topic: Option<String>,
    /// Set for a view fed through a repartition topic.
    pub repartition: Option<RepartitionSpec>,
    pub plugin: PluginConfig,
}

/// The host's HTTP server (`[admin]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on. Keep it on loopback unless a token is set and the network is trusted.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// When set, every request but `/healthz` and `/readyz` must carry
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9100".to_owned()
}

/// Batching and validation of events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most events applied before features are flushed and offsets committed.
    pub batch_size: usize,
    /// Longest time in milliseconds between two flushes while events arrive.
    pub linger_ms: u64,
    /// Flushed batches whose writes and commit may be in flight at once while
    /// the Kafka source consumes the next batch (0 to 4); a flush past this
    /// waits for the oldest batch. 0: each flush waits for its own writes and
    /// commit before consumption resumes; from 2, a batch's Redis write may
    /// also overlap the previous batch's commit.
    pub max_in_flight_batches: usize,
    /// Kafka source: while every in-flight slot is taken (the writes fall
    /// behind), the batch being consumed keeps growing past `batch_size` up
    /// to this many records instead of waiting, and is flushed as soon as a
    /// slot frees; its entities' updates are coalesced, so a backlog costs
    /// fewer writes per event. A value at or below `batch_size` disables it.
    pub max_batch_size: usize,
    /// Kafka source: offsets are committed with a flushed batch at most this
    /// often (milliseconds); the batches between carry theirs to the next
    /// commit. The first commit and the last (at shutdown) are made at once.
    /// 0 commits every flush.
    pub commit_interval_ms: u64,
    /// An event whose time is more than this many milliseconds after its Kafka record
    /// timestamp (or the wall clock, for files) is dead-lettered as absurdly far in the future.
    pub max_future_ms: i64,
    /// Event field holding the event time: an ISO-8601 string (no offset = UTC) or epoch ms.
    pub timestamp_field: String,
    /// A partition that receives no record for this many milliseconds (wall clock) is idle:
    /// its stream time follows the highest stream time of the host's other partitions of the
    /// same topic, so its windows still decay (see docs/semantics.md). 0 disables.
    pub idle_timeout_ms: u64,
    /// Allowed out-of-orderness of event times, in milliseconds: a partition's watermark is
    /// its stream time minus this. Tumbling, hopping and session windows fire and close on
    /// the watermark (see docs/semantics.md); sliding windows follow stream time itself.
    pub out_of_orderness_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_size: 5000,
            linger_ms: 10,
            max_in_flight_batches: 2,
            max_batch_size: 100_000,
            commit_interval_ms: 250,
            max_future_ms: 86_400_000,
            timestamp_field: "timestamp".to_owned(),
            idle_timeout_ms: 60_000,
            out_of_orderness_ms: 0,
        }
    }
}

/// Kafka source and Kafka outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`. Overridden by `WAFER_KAFKA_BROKERS`.
    pub brokers: String,
    /// Consumer group; hosts sharing it split the partitions.
    pub group: String,
    /// Topics of raw events, keyed by entity id.
    pub topics: Vec<String>,
    /// Topic that receives every feature update (key = entity id, null value = tombstone).
    /// Omit to write features to the online store only.
    pub output_topic: Option<String>,
    /// Topic for malformed events, with the reason and source in record headers.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// Topic for events that arrive later than their window allows.
    #[serde(default = "default_late_topic")]
    pub late_topic: String,
    /// Extra librdkafka settings applied to every Kafka client, e.g. `"security.protocol" = "SSL"`.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

fn default_dead_letter_topic() -> String {
    "wafer-dead-letters".to_owned()
}

fn default_late_topic() -> String {
    "wafer-late-events".to_owned()
}

/// A JSONL file of events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Path of the file, relative to the working directory.
    pub path: PathBuf,
    /// Entities whose final features are printed at the end (demo); 0 prints none.
    #[serde(default)]
    pub print_entities: usize,
}

/// The feature plugin and its online layout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Path of the plugin component (`.wasm`).
    pub path: PathBuf,
    /// Online-store key; `{entity}` or `{<entity key field>}` is replaced by the entity id.
    /// Default: `features:{<entity key field>}`, e.g. `features:{user_id}`.
    pub key_template: Option<String>,
    /// Time to live of each online-store key, in seconds (0 = no expiry). With the `feast`
    /// layout, the TTL of the entity's whole hash, shared by the views writing to it.
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
    /// Event fields identifying an entity, instead of the plugin's entity key, e.g.
    /// `["user_id", "device"]`: events are grouped by the tuple of their values. The tuple's
    /// id is the values joined by `:` (`\` and `:` in values escaped with `\`).
    pub entity_fields: Option<Vec<String>>,
    /// How features are stored in Redis: `"json"` (one JSON string per entity, the default),
    /// `"hash"` (one hash per entity, a field per feature) or `"feast"` (Feast's own layout).
    #[serde(default)]
    pub layout: LayoutKind,
    /// The Feast feature view this view writes (required with `layout = "feast"`).
    pub feast: Option<FeastConfig>,
    /// Cap on the plugin's linear memory, in MiB.
    #[serde(default = "default_memory")]
    pub max_memory_mb: u64,
    /// Longest time one plugin call may run, in milliseconds, before it is interrupted.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_ms: u64,
    /// Cap on what one plugin call may return, in MiB.
    #[serde(default = "default_output")]
    pub max_output_mb: u64,
    /// Cap on the core instances, tables and memories of one plugin instance.
    #[serde(default = "default_instances")]
    pub max_instances: usize,
    /// Failed plugin calls in a row after which `on_failure` applies.
    #[serde(default = "default_failures")]
    pub max_consecutive_failures: u32,
    /// `distinct-count`: distinct values per window counted exactly (a sliding window keeps a
    /// count per value, about 40 bytes each, up to this many); beyond, the count is a
    /// HyperLogLog estimate (1.6% standard error). See docs/semantics.md.
    #[serde(default = "default_distinct_exact_limit")]
    pub distinct_exact_limit: usize,
    /// `"quarantine"`: keep consuming and committing, skip the plugin's outputs (counted);
    /// `"pause"`: stop consuming and committing until a fixed version is loaded.
    #[serde(default = "default_policy")]
    pub on_failure: crate::pipeline::FailurePolicy,
    /// Expected sha256 (hex) of the file at `path`; a file that differs is refused,
    /// at start and on reload.
    pub sha256: Option<String>,
    /// Reload the plugin when the file at `path` changes (checked every `watch_interval_ms`).
    #[serde(default = "default_watch")]
    pub watch: bool,
    /// How often the plugin file is checked for a new version, in milliseconds.
    #[serde(default = "default_watch_interval")]
    pub watch_interval_ms: u64,
    /// Directory of precompiled plugin artifacts, keyed by content hash and engine.
    /// Default: `$XDG_CACHE_HOME/wafer/artifacts` or `~/.cache/wafer/artifacts`.
    pub cache_dir: Option<PathBuf>,
    /// Tile (time bucket) of tiled sliding windows, in milliseconds (tiled
    /// tumbling, hopping and session windows use their instances and
    /// sessions); 0 tiles nothing.
    #[serde(default = "default_tile")]
    pub tile_ms: u64,
    /// Sliding windows at least this long (ms) keep per-tile partial aggregates
    /// instead of their events (their length must be a multiple of `tile_ms`);
    /// tumbling and hopping windows keep one per instance, session windows
    /// (by their visible length) one per session.
    #[serde(default = "default_tile_min_window")]
    pub tile_min_window_ms: u64,
}

impl PluginConfig {
    /// Which windows are tiled, and how finely.
    pub fn tiling(&self) -> crate::window::Tiling {
        crate::window::Tiling {
            tile_ms: self.tile_ms,
            min_window_ms: self.tile_min_window_ms,
        }
    }
}

/// How a view's features are stored in Redis (see docs/config.md, "Online layouts").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// `SET <key> <feature JSON>`: the feature record's JSON text.
    #[default]
    Json,
    /// `HSET <key>`: one field per feature plus `_as_of_ms`.
    Hash,
    /// Feast's Redis online-store layout, readable by `get_online_features`.
    Feast,
}

/// Where a `feast`-layout view writes in Feast's online store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeastConfig {
    /// The Feast project (`project` in `feature_store.yaml`), appended to every Redis key.
    pub project: String,
    /// The Feast feature view holding this view's features (same feature names and types).
    pub feature_view: String,
    /// Value type of each join key whose Feast entity is not a string, by entity field:
    /// `"int64"` or `"int32"` (e.g. `{ merchant_id = "int64" }`); others are `"string"`.
    /// Join keys are named like the entity fields.
    #[serde(default)]
    pub join_key_types: std::collections::BTreeMap<String, JoinKeyType>,
}

/// The Feast value type of a join key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinKeyType {
    #[default]
    String,
    Int64,
    Int32,
}

fn default_distinct_exact_limit() -> usize {
    crate::window::sketch::DEFAULT_DISTINCT_EXACT_LIMIT
}

fn default_watch() -> bool {
    true
}

fn default_watch_interval() -> u64 {
    1000
}

/// The default artifact cache directory, if a home or cache directory is known.
pub fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("wafer").join("artifacts"))
}

fn default_output() -> u64 {
    16
}

fn default_instances() -> usize {
    64
}

fn default_failures() -> u32 {
    10
}

fn default_policy() -> crate::pipeline::FailurePolicy {
    crate::pipeline::FailurePolicy::Quarantine
}

fn default_tile() -> u64 {
    crate::window::tiles::DEFAULT_TILE_MS
}

fn default_tile_min_window() -> u64 {
    crate::window::tiles::DEFAULT_TILE_MIN_WINDOW_MS
}

fn default_ttl() -> u64 {
    3600
}

fn default_memory() -> u64 {
    64
}

fn default_call_timeout() -> u64 {
    1000
}

/// The Redis online store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`. Overridden by `WAFER_REDIS_URL`.
    pub url: String,
}

/// The embedded quickstart configuration used by `wafer demo`.
pub const QUICKSTART: &str = include_str!("../../examples/quickstart.toml");

impl Config {
    /// Reads, parses, applies environment overrides to and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses `text` (named `origin` in errors), applies environment overrides, validates.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_owned(),
            source: Box::new(source),
        })?;
        config.apply_env();
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self) {
        if let (Some(kafka), Ok(brokers)) = (&mut self.kafka, std::env::var("WAFER_KAFKA_BROKERS"))
        {
            kafka.brokers = brokers;
        }
        if let (Some(redis), Ok(url)) = (&mut self.redis, std::env::var("WAFER_REDIS_URL")) {
            redis.url = url;
        }
    }

    /// The views to run, in order.
    pub fn view_specs(&self) -> Vec<ViewSpec> {
        let default_topic = self.kafka.as_ref().and_then(|k| k.output_topic.clone());
        match &self.plugin {
            Some(p) => vec![ViewSpec {
                name: None,
                output_topic: default_topic,
                repartition: None,
                plugin: p.clone(),
            }],
            None => self
                .views
                .iter()
                .map(|v| ViewSpec {
                    name: Some(v.name.clone()),
                    output_topic: v.output_topic.clone().or_else(|| default_topic.clone()),
                    repartition: v.repartition_topic.clone().map(|topic| RepartitionSpec {
                        topic,
                        partitions: v.repartition_partitions,
                    }),
                    plugin: v.plugin.clone(),
                })
                .collect(),
        }
    }

    /// The single view's plugin config (`[plugin]`, or the only `[[views]]` entry).
    pub fn plugin_mut(&mut self) -> &mut PluginConfig {
        match (&mut self.plugin, self.views.len()) {
            (Some(p), _) => p,
            (None, 1) => &mut self.views[0].plugin,
            _ => panic!("plugin_mut needs exactly one view"),
        }
    }

    /// Checks that the values make a runnable pipeline.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        match (&self.plugin, self.views.is_empty()) {
            (Some(_), false) => return invalid("set either [plugin] or [[views]], not both"),
            (None, true) => return invalid("set a feature view: [plugin] or [[views]]"),
            _ => {}
        }
        if self.pipeline.out_of_orderness_ms > 10 * 366 * 86_400_000 {
            return invalid("[pipeline] out_of_orderness_ms must be at most 10 years");
        }
        let mut names = std::collections::HashSet::new();
        for v in &self.views {
            let ok = !v.name.is_empty()
                && v.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return invalid("[[views]] name must be letters, digits, '-' or '_'");
            }
            if !names.insert(&v.name) {
                return invalid("[[views]] names must be unique");
            }
        }
        for spec in self.view_specs() {
            Self::validate_plugin(&spec.plugin)?;
        }
        match (&self.kafka, &self.file) {
            (Some(_), Some(_)) => return invalid("set either [kafka] or [file], not both"),
            (None, None) => return invalid("set a source: [kafka] or [file]"),
            _ => {}
        }
        if let Some(kafka) = &self.kafka {
            if kafka.topics.is_empty() {
                return invalid("[kafka] topics must name at least one topic");
            }
            if kafka.brokers.trim().is_empty() || kafka.group.trim().is_empty() {
                return invalid("[kafka] brokers and group must not be empty");
            }
        }
        self.validate_repartition()?;
        if self.pipeline.batch_size == 0 {
            return invalid("[pipeline] batch_size must be at least 1");
        }
        if self.pipeline.commit_interval_ms > 60_000 {
            return invalid(
                "[pipeline] commit_interval_ms must be at most 60000 (a crash replays up to that much input)",
            );
        }
        if self.pipeline.max_in_flight_batches > 4 {
            return invalid("[pipeline] max_in_flight_batches must be between 0 and 4");
        }
        if self.pipeline.max_future_ms < 0 {
            return invalid("[pipeline] max_future_ms must not be negative");
        }
        if let Some(admin) = &self.admin {
            if admin.listen.parse::<std::net::SocketAddr>().is_err() {
                return invalid("[admin] listen must be an address like 127.0.0.1:9100");
            }
        }
        Ok(())
    }

    /// Repartition topics: valid Kafka topic names, none shared with another
    /// view or used for anything else, positive partition counts.
    fn validate_repartition(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let mut taken: Vec<&str> = Vec::new();
        if let Some(k) = &self.kafka {
            taken.extend(k.topics.iter().map(String::as_str));
            taken.extend(k.output_topic.as_deref());
            taken.push(&k.dead_letter_topic);
            taken.push(&k.late_topic);
        }
        taken.extend(self.views.iter().filter_map(|v| v.output_topic.as_deref()));
        for v in &self.views {
            let Some(topic) = &v.repartition_topic else {
                if v.repartition_partitions.is_some() {
                    return invalid(format!(
                        "[[views]] `{}`: repartition_partitions needs repartition_topic",
                        v.name
                    ));
                }
                continue;
            };
            let legal = !topic.is_empty()
                && topic.len() <= 249
                && topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
            if !legal {
                return invalid(format!(
                    "[[views]] `{}`: repartition_topic must be a Kafka topic name (letters, digits, '.', '_', '-')",
                    v.name
                ));
            }
            if taken.contains(&topic.as_str()) {
                return invalid(format!(
                    "[[views]] `{}`: repartition_topic `{topic}` is already used by the pipeline \
                     (an input, output, dead-letter, late or another view's repartition topic)",
                    v.name
                ));
            }
            taken.push(topic);
            if v.repartition_partitions.is_some_and(|n| n < 1) {
                return invalid(format!(
                    "[[views]] `{}`: repartition_partitions must be at least 1",
                    v.name
                ));
            }
        }
        Ok(())
    }

    fn validate_plugin(p: &PluginConfig) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if p.max_memory_mb == 0 || p.call_timeout_ms == 0 || p.max_output_mb == 0 {
            return invalid(
                "[plugin] max_memory_mb, call_timeout_ms and max_output_mb must be positive",
            );
        }
        if p.watch_interval_ms == 0 {
            return invalid("[plugin] watch_interval_ms must be positive");
        }
        if let Some(pin) = &p.sha256 {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid("[plugin] sha256 must be 64 hexadecimal digits");
            }
        }
        if p.max_instances == 0 || p.max_consecutive_failures == 0 {
            return invalid("[plugin] max_instances and max_consecutive_failures must be positive");
        }
        if let Some(fields) = &p.entity_fields {
            let unique: std::collections::HashSet<&String> = fields.iter().collect();
            if fields.is_empty() || fields.iter().any(String::is_empty) {
                return invalid("[plugin] entity_fields must name at least one field");
            }
            if unique.len() != fields.len() {
                return invalid("[plugin] entity_fields must not repeat a field");
            }
        }
        match (p.layout, &p.feast) {
            (LayoutKind::Feast, None) => {
                return invalid(
                    "[plugin] layout = \"feast\" needs a [plugin.feast] section (project, feature_view)",
                )
            }
            (LayoutKind::Json | LayoutKind::Hash, Some(_)) => {
                return invalid("[plugin.feast] is only used with layout = \"feast\"")
            }
            _ => {}
        }
        if let Some(feast) = &p.feast {
            if feast.project.is_empty() || feast.feature_view.is_empty() {
                return invalid("[plugin.feast] project and feature_view must not be empty");
            }
            for name in feast.join_key_types.keys() {
                if !name.is_ascii() {
                    return invalid("[plugin.feast] join key names must be ASCII (Feast before 0.61 encodes others differently)");
                }
                if let Some(fields) = &p.entity_fields {
                    if !fields.contains(name) {
                        return Err(ConfigError::Invalid(format!(
                            "[plugin.feast] join_key_types names `{name}`, which is not in entity_fields"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quickstart_parses() {
        let c = Config::parse(QUICKSTART, "quickstart").unwrap();
        assert!(c.file.is_some());
        assert_eq!(c.plugin.as_ref().unwrap().ttl_secs, 3600);
    }

    #[test]
    fn distinct_exact_limit_defaults_to_the_documented_bound() {
        let base = "[file]\npath = 'x'\n[plugin]\npath = 'p.wasm'\n";
        let c = Config::parse(base, "t").unwrap();
        assert_eq!(c.plugin.unwrap().distinct_exact_limit, 1000);
        let c = Config::parse(&format!("{base}distinct_exact_limit = 50\n"), "t").unwrap();
        assert_eq!(c.plugin.unwrap().distinct_exact_limit, 50);
    }

    #[test]
    fn max_in_flight_batches_is_at_most_four() {
        let base = "[file]\npath = 'x'\n[plugin]\npath = 'p.wasm'\n";
        let c = Config::parse(base, "t").unwrap();
        assert_eq!(c.pipeline.max_in_flight_batches, 2);
        for n in [0, 4] {
            let c = Config::parse(
                &format!("[pipeline]\nmax_in_flight_batches = {n}\n{base}"),
                "t",
            )
            .unwrap();
            assert_eq!(c.pipeline.max_in_flight_batches, n);
        }
        let err = Config::parse(
            &format!("[pipeline]\nmax_in_flight_batches = 5\n{base}"),
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("between 0 and 4"), "{err}");
    }

    #[test]
    fn max_batch_size_defaults_to_100_000() {
        let base = "[file]\npath = 'x'\n[plugin]\npath = 'p.wasm'\n";
        let c = Config::parse(base, "t").unwrap();
        assert_eq!(c.pipeline.max_batch_size, 100_000);
        let c = Config::parse(&format!("[pipeline]\nmax_batch_size = 0\n{base}"), "t").unwrap();
        assert_eq!(c.pipeline.max_batch_size, 0);
    }

    #[test]
    fn commit_interval_defaults_to_250_ms_and_is_at_most_a_minute() {
        let base = "[file]\npath = 'x'\n[plugin]\npath = 'p.wasm'\n";
        let c = Config::parse(base, "t").unwrap();
        assert_eq!(c.pipeline.commit_interval_ms, 250);
        for n in [0, 60_000] {
            let c = Config::parse(
                &format!("[pipeline]\ncommit_interval_ms = {n}\n{base}"),
                "t",
            )
            .unwrap();
            assert_eq!(c.pipeline.commit_interval_ms, n);
        }
        let err = Config::parse(
            &format!("[pipeline]\ncommit_interval_ms = 60001\n{base}"),
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("at most 60000"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::parse(
            "[file]\npath = 'x'\nbogus = 1\n[plugin]\npath = 'p.wasm'\n",
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn layouts_and_entity_fields_are_checked() {
        let base = "[file]\npath = 'x'\n[plugin]\npath = 'p.wasm'\n";
        let c = Config::parse(base, "t").unwrap();
        assert_eq!(c.plugin.unwrap().layout, LayoutKind::Json);
        let c = Config::parse(
            &format!(
                "{base}entity_fields = ['user_id', 'shop']\nlayout = 'feast'\n\
                 [plugin.feast]\nproject = 'demo'\nfeature_view = 'fv'\n\
                 join_key_types = {{ shop = 'int64' }}\n"
            ),
            "t",
        )
        .unwrap();
        let p = c.plugin.unwrap();
        assert_eq!(p.layout, LayoutKind::Feast);
        assert_eq!(p.feast.unwrap().join_key_types["shop"], JoinKeyType::Int64);
        for (extra, reason) in [
            ("layout = 'feast'\n", "needs a [plugin.feast]"),
            ("layout = 'tree'\n", "unknown variant"),
            ("entity_fields = []\n", "at least one field"),
            ("entity_fields = ['a', 'a']\n", "must not repeat"),
            (
                "[plugin.feast]\nproject = 'd'\nfeature_view = 'f'\n",
                "only used with layout",
            ),
            (
                "entity_fields = ['a']\nlayout = 'feast'\n[plugin.feast]\nproject = 'd'\n\
                 feature_view = 'f'\njoin_key_types = { b = 'int64' }\n",
                "not in entity_fields",
            ),
        ] {
            let err = Config::parse(&format!("{base}{extra}"), "t").unwrap_err();
            assert!(err.to_string().contains(reason), "{extra}: {err}");
        }
    }

    #[test]
    fn repartition_topics_are_checked() {
        let base = "[kafka]\nbrokers = 'b'\ngroup = 'g'\ntopics = ['in']\noutput_topic = 'out'\n\
                    [[views]]\nname = 'users'\n[views.plugin]\npath = 'p.wasm'\n";
        let view = |extra: &str| {
            format!("{base}[[views]]\nname = 'items'\n{extra}[views.plugin]\npath = 'p.wasm'\n")
        };
        let c = Config::parse(
            &view("repartition_topic = 'in-by-item'\nrepartition_partitions = 8\n"),
            "t",
        )
        .unwrap();
        let specs = c.view_specs();
        assert_eq!(specs[0].repartition, None);
        assert_eq!(
            specs[1].repartition,
            Some(RepartitionSpec {
                topic: "in-by-item".into(),
                partitions: Some(8)
            })
        );
        for (extra, reason) in [
            ("repartition_topic = 'in'\n", "already used"),
            ("repartition_topic = 'out'\n", "already used"),
            ("repartition_topic = 'wafer-dead-letters'\n", "already used"),
            ("repartition_topic = 'a b'\n", "Kafka topic name"),
            ("repartition_topic = ''\n", "Kafka topic name"),
            (
                "repartition_topic = 'x'\nrepartition_partitions = 0\n",
                "at least 1",
            ),
            ("repartition_partitions = 3\n", "needs repartition_topic"),
        ] {
            let err = Config::parse(&view(extra), "t").unwrap_err();
            assert!(err.to_string().contains(reason), "{extra}: {err}");
        }
    }

    #[test]
    fn a_source_is_required() {
        let err = Config::parse("[plugin]\npath = 'p.wasm'\n", "t").unwrap_err();
        assert!(err.to_string().contains("set a source"), "{err}");
    }
}
