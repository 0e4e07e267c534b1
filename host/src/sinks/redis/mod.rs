//! The Redis online store, in one of three layouts per view (see
//! docs/config.md, "Online layouts"):
//!
//! - `json`: `SET <key> <feature JSON> EX ttl`, the record of `ml-features`;
//! - `hash`: one hash per entity, a field per feature plus `_as_of_ms`;
//! - `feast`: Feast's own layout ([`feast`]), readable by `get_online_features`.
//!
//! Every write (and tombstone) of an entity compares, in a server-side script,
//! the stored as-of event time with the update's and writes only when the
//! update is not older, so a write is atomic per entity and never moves an
//! entity back in event time. One script call carries up to
//! [`ENTITIES_PER_CALL`] entities of one view (all their keys in `KEYS`), each
//! guarded on its own: Redis spends a fixed cost on every call, which one call
//! per entity paid for each update. A flush's calls go out in pipelines of
//! [`CALLS_PER_PIPELINE`] (one round trip each, so that no reply takes longer
//! than the client's response timeout); the scripts are loaded at connect and
//! again on `NOSCRIPT`.
//! The keys of one call may hash to different Redis Cluster slots: Redis
//! Cluster is not supported (one server, or a primary with replicas).
//! Feature lookups ([`RedisSink::read`]) read any layout back into the JSON record.

pub mod feast;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::aio::MultiplexedConnection;

use super::SinkError;
use crate::config::{FeastConfig, JoinKeyType, LayoutKind};
use crate::entity::{EntityKey, KeyTemplate};
use crate::event::format_time;
use crate::pipeline::{record_json, FeatureUpdate, FeatureValue};
use crate::plugin::{FeatureSpec, ValueType};

/// The field of a `hash`-layout entity holding the as-of event time (epoch ms).
pub const AS_OF_FIELD: &str = "_as_of_ms";

const JSON_SCRIPT: &str = include_str!("json.lua");
const HASH_SCRIPT: &str = include_str!("hash.lua");
const FEAST_SCRIPT: &str = include_str!("feast.lua");

/// The most script calls one pipeline carries (about 4,000 entities, tens of
/// milliseconds of Redis time). A flush's calls go out in pipelines of this
/// many, one after the other: the reply to a whole large flush in one
/// pipeline could take longer than the client's response timeout (500 ms),
/// and the write would then fail and be retried forever.
pub const CALLS_PER_PIPELINE: usize = 32;

/// The most entities one script call writes. Redis spends a fixed cost on each
/// call (argument tables, the script's entry and return) besides the commands
/// inside; one call per entity made that cost about a third of the total. 128
/// keeps a call under a millisecond of Redis time, so other clients wait little.
pub const ENTITIES_PER_CALL: usize = 128;

/// Where a `feast`-layout view writes.
#[derive(Debug)]
struct FeastTarget {
    project: String,
    feature_view: String,
    /// `_ts:<feature view>`.
    ts_field: Vec<u8>,
    /// Feast type of each entity field, in the entity key's order.
    key_types: Vec<JoinKeyType>,
}

/// How one view's features are stored: its layout, entity key, key template and TTL.
#[derive(Debug)]
pub struct OnlineLayout {
    kind: LayoutKind,
    entity: EntityKey,
    /// Key template of the `json` and `hash` layouts (resolved), and of the
    /// embedded store in every layout.
    key_template: KeyTemplate,
    ttl_secs: u64,
    feast: Option<FeastTarget>,
    /// The features of the view's latest plugin version: the fields a `feast`
    /// tombstone deletes, and the types lookups read values back with.
    features: Mutex<Arc<[FeatureSpec]>>,
}

impl OnlineLayout {
    /// The layout of a view keyed by `entity` whose plugin declares `features`.
    /// Fails when a Feast join key type names no entity field.
    pub fn new(
        kind: LayoutKind,
        entity: EntityKey,
        key_template: String,
        ttl_secs: u64,
        feast: Option<&FeastConfig>,
        features: Arc<[FeatureSpec]>,
    ) -> Result<Self, String> {
        let feast = match (kind, feast) {
            (LayoutKind::Feast, Some(f)) => {
                if let Some(unknown) = f
                    .join_key_types
                    .keys()
                    .find(|k| !entity.fields().contains(k))
                {
                    return Err(format!(
                        "[plugin.feast] join_key_types names `{unknown}`, which is not an entity field ({:?})",
                        entity.fields()
                    ));
                }
                if let Some(bad) = entity.fields().iter().find(|f| !f.is_ascii()) {
                    return Err(format!(
                        "Feast join key `{bad}` must be ASCII (older Feast versions encode others differently)"
                    ));
                }
                Some(FeastTarget {
                    project: f.project.clone(),
                    feature_view: f.feature_view.clone(),
                    ts_field: feast::timestamp_field(&f.feature_view),
                    key_types: entity
                        .fields()
                        .iter()
                        .map(|field| f.join_key_types.get(field).copied().unwrap_or_default())
                        .collect(),
                })
            }
            (LayoutKind::Feast, None) => {
                return Err("layout = \"feast\" needs a [plugin.feast] section".into())
            }
            _ => None,
        };
        Ok(Self {
            kind,
            key_template: KeyTemplate::new(&entity, &key_template),
            entity,
            ttl_secs,
            feast,
            features: Mutex::new(features),
        })
    }

    /// The layout kind.
    pub fn kind(&self) -> LayoutKind {
        self.kind
    }

    /// The fields identifying an entity.
    pub fn entity(&self) -> &EntityKey {
        &self.entity
    }

    /// The Redis key of entity `id` (an id of [`OnlineLayout::entity`]); `None`
    /// when `id` is not one, or an integer Feast join key is not an integer.
    pub fn key(&self, id: &str) -> Option<Vec<u8>> {
        match &self.feast {
            None => self.template_key(id).map(String::into_bytes),
            Some(f) => {
                let values = self.entity.split(id)?;
                let mut join_keys = Vec::with_capacity(values.len());
                for ((name, value), kind) in
                    self.entity.fields().iter().zip(&values).zip(&f.key_types)
                {
                    join_keys.push((name.as_str(), feast::KeyValue::parse(*kind, value)?));
                }
                Some(feast::redis_key(&join_keys, &f.project))
            }
        }
    }

    /// The `key_template` key of entity `id`: the embedded store's key in every layout.
    pub fn template_key(&self, id: &str) -> Option<String> {
        self.key_template.render(id)
    }

    fn features(&self) -> Arc<[FeatureSpec]> {
        self.features.lock().expect("never poisoned").clone()
    }

    /// Remembers the specs of a new plugin version.
    fn observe(&self, specs: &Arc<[FeatureSpec]>) {
        let mut current = self.features.lock().expect("never poisoned");
        if !Arc::ptr_eq(&current, specs) {
            *current = specs.clone();
        }
    }

    /// Adds the script calls writing `updates` to `calls`: one call per
    /// [`ENTITIES_PER_CALL`] updates. An update whose entity has no valid key in
    /// this layout is logged and left out. Returns the number of entities each
    /// added call carries, in order (each call replies how many it wrote).
    fn push_calls(
        &self,
        scripts: &Scripts,
        calls: &mut Vec<redis::Cmd>,
        updates: &[FeatureUpdate],
    ) -> Vec<usize> {
        let mut carried = Vec::with_capacity(updates.len().div_ceil(ENTITIES_PER_CALL));
        for chunk in updates.chunks(ENTITIES_PER_CALL) {
            let entries: Vec<(Vec<u8>, &FeatureUpdate)> = chunk
                .iter()
                .filter_map(|u| match self.key(&u.entity) {
                    Some(key) => Some((key, u)),
                    None => {
                        tracing::error!(entity = %u.entity, layout = ?self.kind, "entity has no key in this layout (not an id of its entity key, or an integer Feast join key is not an integer); not written");
                        None
                    }
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            let sha = match self.kind {
                LayoutKind::Json => &scripts.json,
                LayoutKind::Hash => &scripts.hash,
                LayoutKind::Feast => &scripts.feast,
            };
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(sha).arg(entries.len());
            for (key, _) in &entries {
                cmd.arg(&key[..]);
            }
            match self.kind {
                LayoutKind::Json => {
                    cmd.arg(self.ttl_secs);
                    // A flush's updates share their as-of time: formatted once.
                    let mut as_of: Option<(i64, String)> = None;
                    for (_, u) in &entries {
                        let text = match &as_of {
                            Some((ms, text)) if *ms == u.as_of_ms => text,
                            _ => &as_of.insert((u.as_of_ms, format_time(u.as_of_ms))).1,
                        };
                        // The feature JSON is never empty: "" is a tombstone.
                        cmd.arg(text).arg(u.value.as_deref().unwrap_or(""));
                    }
                }
                LayoutKind::Hash => {
                    cmd.arg(self.ttl_secs);
                    for (_, u) in &entries {
                        cmd.arg(u.as_of_ms);
                        match &u.features {
                            None => {
                                cmd.arg(-1);
                            }
                            Some(row) => {
                                self.observe(&row.columns.specs);
                                let fields: Vec<(&str, String)> = row
                                    .values()
                                    .filter_map(|(name, value)| Some((name, hash_text(value)?)))
                                    .collect();
                                cmd.arg(fields.len());
                                for (name, text) in fields {
                                    cmd.arg(name).arg(text);
                                }
                            }
                        }
                    }
                }
                LayoutKind::Feast => {
                    let f = self.feast.as_ref().expect("feast layouts have a target");
                    cmd.arg(&f.ts_field).arg(self.ttl_secs);
                    for (_, u) in &entries {
                        let (seconds, nanos) = feast::seconds_nanos(u.as_of_ms);
                        cmd.arg(seconds)
                            .arg(nanos)
                            .arg(feast::encode_timestamp(u.as_of_ms));
                        match &u.features {
                            Some(row) => {
                                self.observe(&row.columns.specs);
                                cmd.arg("set").arg(2 * row.values().count());
                                for (name, value) in row.values() {
                                    cmd.arg(&feast::field_name(&f.feature_view, name)[..])
                                        .arg(feast::encode_value(value));
                                }
                            }
                            None => {
                                let specs = self.features();
                                cmd.arg("del").arg(specs.len());
                                for spec in specs.iter() {
                                    cmd.arg(&feast::field_name(&f.feature_view, &spec.name)[..]);
                                }
                            }
                        }
                    }
                }
            }
            calls.push(cmd);
            carried.push(entries.len());
        }
        carried
    }
}

/// A feature value as a `hash`-layout field: integers and floats as their JSON
/// text, `true`/`false`, text as is; `None` for a null (the field is left out).
fn hash_text(value: FeatureValue<'_>) -> Option<String> {
    match value {
        FeatureValue::Null => None,
        FeatureValue::Int64(v) => Some(v.to_string()),
        FeatureValue::Float64(v) => serde_json::Number::from_f64(v).map(|n| n.to_string()),
        FeatureValue::Boolean(v) => Some(v.to_string()),
        FeatureValue::Text(t) => Some(t.to_owned()),
    }
}

/// A `hash`-layout field read back as a value of type `kind`.
fn parse_hash_text(kind: ValueType, text: &str) -> Option<feast::OwnedValue> {
    use feast::OwnedValue as V;
    match kind {
        ValueType::Int64 => text.parse().ok().map(V::Int64),
        ValueType::Float64 => text.parse().ok().map(V::Float64),
        ValueType::Boolean => text.parse().ok().map(V::Boolean),
        ValueType::Text => Some(V::Text(text.to_owned())),
    }
}

/// The SHA1 digests the scripts are called by.
#[derive(Debug, Clone)]
struct Scripts {
    json: String,
    hash: String,
    feast: String,
}

/// Updates of one view, written with its layout.
pub type ViewWrites = (Arc<OnlineLayout>, Vec<FeatureUpdate>);

/// A connection to the online store.
#[derive(Clone)]
pub struct RedisSink {
    conn: MultiplexedConnection,
    scripts: Scripts,
}

impl RedisSink {
    /// Connects to `url` and loads the write scripts.
    pub async fn connect(url: &str) -> Result<Self, SinkError> {
        let client = redis::Client::open(url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        let mut sink = Self {
            conn,
            scripts: Scripts {
                json: redis::Script::new(JSON_SCRIPT).get_hash().to_owned(),
                hash: redis::Script::new(HASH_SCRIPT).get_hash().to_owned(),
                feast: redis::Script::new(FEAST_SCRIPT).get_hash().to_owned(),
            },
        };
        sink.load_scripts().await?;
        Ok(sink)
    }

    async fn load_scripts(&mut self) -> Result<(), SinkError> {
        let mut pipe = redis::pipe();
        for script in [JSON_SCRIPT, HASH_SCRIPT, FEAST_SCRIPT] {
            pipe.cmd("SCRIPT").arg("LOAD").arg(script).ignore();
        }
        pipe.query_async::<()>(&mut self.conn).await?;
        Ok(())
    }

    /// Writes every view's updates in pipelines of [`CALLS_PER_PIPELINE`]
    /// script calls, one after the other, and waits for every reply. An
    /// update older than what is stored for its entity is skipped by the
    /// guard; returns, for each entry of `writes`, how many of its updates were
    /// skipped so. An update of an equal event time is written (so a retried
    /// write is not counted as skipped), and an update left out for having no
    /// key is not counted.
    pub async fn write(&mut self, writes: &[ViewWrites]) -> Result<Vec<u64>, SinkError> {
        let mut calls = Vec::new();
        let carried: Vec<Vec<usize>> = writes
            .iter()
            .map(|(layout, updates)| layout.push_calls(&self.scripts, &mut calls, updates))
            .collect();
        let mut written: Vec<u64> = Vec::with_capacity(calls.len());
        let mut calls = calls.into_iter();
        loop {
            let mut pipe = redis::pipe();
            for cmd in calls.by_ref().take(CALLS_PER_PIPELINE) {
                pipe.add_command(cmd);
            }
            if pipe.is_empty() {
                break;
            }
            written.extend(self.query(&pipe).await?);
        }
        let mut replies = written.into_iter();
        Ok(carried
            .iter()
            .map(|calls| {
                calls
                    .iter()
                    .zip(replies.by_ref())
                    .map(|(&sent, wrote)| (sent as u64).saturating_sub(wrote))
                    .sum()
            })
            .collect())
    }

    /// Sends one pipeline of script calls; their replies (entities written).
    async fn query(&mut self, pipe: &redis::Pipeline) -> Result<Vec<u64>, SinkError> {
        match pipe.query_async(&mut self.conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // The server lost its scripts (restart, SCRIPT FLUSH). Every
                // call is idempotent, so the whole pipeline is sent again.
                tracing::info!("redis lost the write scripts; loading them again");
                self.load_scripts().await?;
                Ok(pipe.query_async(&mut self.conn).await?)
            }
            other => Ok(other?),
        }
    }

    /// The feature record of entity `id` in `layout` (the JSON of `ml-features`,
    /// whatever the layout), for the feature-serving API; `None` when absent.
    pub async fn read(&self, layout: &OnlineLayout, id: &str) -> Result<Option<String>, SinkError> {
        let Some(key) = layout.key(id) else {
            return Ok(None);
        };
        let mut conn = self.conn.clone();
        let specs = layout.features();
        let corrupt = |reason: String| SinkError::Corrupt {
            key: String::from_utf8_lossy(&key).into_owned(),
            reason,
        };
        let (values, as_of_ms) = match layout.kind {
            LayoutKind::Json => {
                let value: Option<String> =
                    redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                return Ok(value);
            }
            LayoutKind::Hash => {
                let stored: HashMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?;
                let Some(as_of) = stored.get(AS_OF_FIELD) else {
                    return Ok(None);
                };
                let as_of_ms: i64 = as_of
                    .parse()
                    .map_err(|_| corrupt(format!("{AS_OF_FIELD} is `{as_of}`")))?;
                let mut values = Vec::with_capacity(specs.len());
                for spec in specs.iter() {
                    values.push(match stored.get(&spec.name) {
                        None => feast::OwnedValue::Null,
                        Some(text) => parse_hash_text(spec.kind, text).ok_or_else(|| {
                            corrupt(format!(
                                "field `{}` is not {}: `{text}`",
                                spec.name,
                                crate::plugin::type_name(spec.kind)
                            ))
                        })?,
                    });
                }
                (values, as_of_ms)
            }
            LayoutKind::Feast => {
                let f = layout.feast.as_ref().expect("feast layouts have a target");
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(&key);
                for spec in specs.iter() {
                    cmd.arg(&feast::field_name(&f.feature_view, &spec.name)[..]);
                }
                cmd.arg(&f.ts_field);
                let mut stored: Vec<Option<Vec<u8>>> = cmd.query_async(&mut conn).await?;
                let Some(ts) = stored.pop().flatten() else {
                    return Ok(None);
                };
                let as_of_ms = feast::decode_timestamp(&ts)
                    .ok_or_else(|| corrupt(format!("_ts:{} is not a Timestamp", f.feature_view)))?;
                let mut values = Vec::with_capacity(specs.len());
                for (spec, bytes) in specs.iter().zip(stored) {
                    values.push(match bytes {
                        None => feast::OwnedValue::Null,
                        Some(b) => feast::decode_value(&b).ok_or_else(|| {
                            corrupt(format!(
                                "feature `{}` is not a feast.types.Value",
                                spec.name
                            ))
                        })?,
                    });
                }
                (values, as_of_ms)
            }
        };
        let named = specs
            .iter()
            .zip(&values)
            .map(|(s, v)| (s.name.as_str(), v.as_value()));
        Ok(Some(record_json(
            &layout.entity,
            id,
            named,
            &format_time(as_of_ms),
        )))
    }
}
