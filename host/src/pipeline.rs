//! The processing core shared by every source: decode an event, apply it to
//! its partition's windows, and at flush time turn the changed entities into
//! feature updates through the plugin. No I/O happens here, so the Kafka
//! source, the file source, the tests and the benchmarks run the same code.

use rustc_hash::FxHashMap;

use crate::event::{format_time, DecodeError, FieldValue, Schema};
use crate::metrics::Counters;
use crate::plugin::{Batch, Column, ColumnData, Plugin, PluginError, TextColumn, ValueType};
use crate::window::{AggCell, Checkpoint, Late, Partition, Plan, Row};

/// A source partition: (index of the topic in the source's topic list, partition).
pub type PartitionKey = (u32, i32);

/// What happened to one consumed event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied to its entity's windows.
    Applied,
    /// Too late for its window: not applied, goes to the late-events topic.
    Late(String),
    /// Malformed: not applied, goes to the dead-letter topic.
    Dead(DecodeError),
}

/// One write to the online store and the feature topic.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureUpdate {
    /// Entity id (the Kafka record key).
    pub entity: String,
    /// Online-store key.
    pub key: String,
    /// Time to live of the online-store key, in seconds (0 = none).
    pub ttl_secs: u64,
    /// Feature JSON, or `None` for a tombstone (the entity's windows are empty).
    pub value: Option<String>,
}

/// A plugin failure isolated to one entity: its update is not written, and
/// the failure goes to the dead-letter topic.
#[derive(Debug)]
pub struct PluginFailure {
    pub entity: String,
    pub partition: PartitionKey,
    /// Offset of the last event applied to the entity.
    pub offset: i64,
    pub error: PluginError,
}

/// What one flush produced.
#[derive(Debug, Default)]
pub struct Flush {
    /// Updates to write.
    pub updates: Vec<FeatureUpdate>,
    /// Entities whose features the plugin failed to compute.
    pub failures: Vec<PluginFailure>,
    /// Updates not computed because the plugin is quarantined.
    pub skipped: usize,
}

/// What to do once a plugin has failed `max_consecutive_failures` calls in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Keep consuming, skip the plugin's outputs (counted), commit.
    Quarantine,
    /// Stop consuming and committing until the host is restarted with a fixed plugin.
    Pause,
}

/// Outputs held back while the plugin is quarantined or paused.
#[derive(Debug, Default)]
struct Deferred {
    entities: Vec<Box<str>>,
    tombstones: Vec<Box<str>>,
}

/// A recent plugin input, shared between the processor and plugin validation.
pub type RecentBatch = std::sync::Arc<std::sync::Mutex<Option<Batch>>>;

/// Largest batch kept for smoke-testing a new plugin version.
const RECENT_BATCH_ROWS: u32 = 512;

/// How feature records are laid out.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Online-store key template, `{entity}` or `{<entity key>}` replaced by the id.
    pub key_template: String,
    /// Time to live of online-store keys, in seconds (0 = none).
    pub ttl_secs: u64,
}

/// Interns text values so windows store 8-byte cells.
#[derive(Default)]
struct Interner {
    ids: FxHashMap<Box<str>, u32>,
    strings: Vec<Box<str>>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    fn get(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }
}

/// Decoding, window state of every owned partition, and the plugin.
pub struct Processor {
    plugin: Plugin,
    plan: Plan,
    schema: Schema,
    layout: Layout,
    interner: Interner,
    partitions: FxHashMap<PartitionKey, Partition>,
    counters: Counters,
    cells: Vec<u64>,
    /// Entities and tombstones whose outputs were not written (quarantine,
    /// pause), emitted again once a working plugin is swapped in.
    deferred: FxHashMap<PartitionKey, Deferred>,
    /// A recent plugin input, for smoke-testing a new plugin version.
    recent_batch: RecentBatch,
    /// Plugin calls that failed in a row.
    failure_streak: u32,
    max_consecutive_failures: u32,
    quarantined: bool,
}

impl Processor {
    /// A processor for `plugin`; `max_future_ms` and `timestamp_field` tune decoding.
    pub fn new(
        plugin: Plugin,
        timestamp_field: &str,
        max_future_ms: i64,
        key_template: Option<&str>,
        ttl_secs: u64,
        counters: Counters,
    ) -> Self {
        let d = plugin.descriptor();
        let plan = Plan::new(d);
        let schema = Schema {
            entity_key: d.entity_key.clone(),
            timestamp_field: timestamp_field.to_owned(),
            inputs: d.inputs.iter().map(|i| (i.name.clone(), i.kind)).collect(),
            max_future_ms,
        };
        let key_template = key_template
            .map(str::to_owned)
            .unwrap_or_else(|| format!("features:{{{}}}", d.entity_key));
        Self {
            plan,
            schema,
            layout: Layout {
                key_template,
                ttl_secs,
            },
            interner: Interner::default(),
            partitions: FxHashMap::default(),
            counters,
            cells: Vec::new(),
            deferred: FxHashMap::default(),
            recent_batch: RecentBatch::default(),
            failure_streak: 0,
            max_consecutive_failures: 10,
            quarantined: false,
            plugin,
        }
    }

    /// Quarantines the plugin after `n` failed calls in a row (at least 1).
    pub fn with_max_consecutive_failures(mut self, n: u32) -> Self {
        self.max_consecutive_failures = n.max(1);
        self
    }

    /// Holds back everything `flush` produced for `partition` (its writes were
    /// not made): the entities are emitted again and the tombstones repeated at
    /// the first flush after a working plugin is swapped in.
    pub fn defer(&mut self, partition: PartitionKey, flush: Flush) {
        let deferred = self.deferred.entry(partition).or_default();
        for u in flush.updates {
            match u.value {
                Some(_) => deferred.entities.push(u.entity.into()),
                None => deferred.tombstones.push(u.entity.into()),
            }
        }
        deferred
            .entities
            .extend(flush.failures.into_iter().map(|f| f.entity.into()));
    }

    /// Puts `plugin` in place of the current one, between two flushes; window
    /// state carries over. Clears a quarantine. Returns the replaced plugin.
    pub fn swap_plugin(&mut self, plugin: Plugin) -> Plugin {
        self.failure_streak = 0;
        self.quarantined = false;
        std::mem::replace(&mut self.plugin, plugin)
    }

    /// The slot holding a recent plugin input (at most a few hundred rows),
    /// shared with whoever validates new plugin versions.
    pub fn recent_batch(&self) -> RecentBatch {
        self.recent_batch.clone()
    }

    /// True once the plugin failed too many calls in a row.
    pub fn quarantined(&self) -> bool {
        self.quarantined
    }

    /// The plugin in use.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The shared counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sets the allowed out-of-orderness of event times (watermark = stream
    /// time minus `ms`); before any partition has state.
    pub fn with_out_of_orderness(mut self, ms: u64) -> Self {
        self.plan = Plan::new(self.plugin.descriptor()).with_out_of_orderness(ms as i64);
        self
    }

    /// True when `partition` has window state here.
    pub fn owns(&self, partition: PartitionKey) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Starts `partition` from `checkpoint` (empty without one), before
    /// [`Processor::replay`] and [`Processor::finish_rebuild`].
    pub fn restore(&mut self, partition: PartitionKey, checkpoint: Option<&Checkpoint>) {
        let state = match checkpoint {
            Some(c) => Partition::restored(&self.plan, c),
            None => Partition::new(&self.plan),
        };
        self.partitions.insert(partition, state);
    }

    /// Ends the rebuild of `partition`: stream time reaches the checkpoint's
    /// and nothing is pending for emission.
    pub fn finish_rebuild(&mut self, partition: PartitionKey) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.finish_replay(&self.plan);
        }
    }

    /// Forgets `partition` (revoked): its unflushed changes are dropped, so the
    /// next owner re-reads them from the last commit.
    pub fn release(&mut self, partition: PartitionKey) {
        self.partitions.remove(&partition);
    }

    /// Applies one consumed record. `reference_ms` is its Kafka timestamp (or the
    /// wall clock), used to reject absurd future event times.
    pub fn process(
        &mut self,
        partition: PartitionKey,
        offset: i64,
        reference_ms: i64,
        payload: Option<&[u8]>,
    ) -> Outcome {
        self.counters.add_events_in(1);
        let event = match self.schema.decode(payload, reference_ms) {
            Ok(e) => e,
            Err(e) => {
                self.counters.add_dead_letters(1);
                return Outcome::Dead(e);
            }
        };
        self.fill_cells(&event.fields);
        let state = self
            .partitions
            .entry(partition)
            .or_insert_with(|| Partition::new(&self.plan));
        match state.apply(
            &self.plan,
            offset,
            &event.entity,
            event.time_ms,
            &self.cells,
        ) {
            Ok(()) => Outcome::Applied,
            Err(Late { reason, .. }) => {
                self.counters.add_late(1);
                Outcome::Late(reason)
            }
        }
    }

    /// Re-applies a record while rebuilding `partition` (see [`Partition::replay`]).
    /// Malformed records are skipped: they were dead-lettered when first read.
    pub fn replay(
        &mut self,
        partition: PartitionKey,
        offset: i64,
        reference_ms: i64,
        payload: Option<&[u8]>,
    ) {
        let Ok(event) = self.schema.decode(payload, reference_ms) else {
            return;
        };
        self.fill_cells(&event.fields);
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.replay(
                &self.plan,
                offset,
                &event.entity,
                event.time_ms,
                &self.cells,
            );
        }
    }

    fn fill_cells(&mut self, fields: &[FieldValue]) {
        self.cells.clear();
        for (input, _) in &self.plan.stored {
            let cell = match &fields[*input] {
                FieldValue::Int(v) => *v as u64,
                FieldValue::Float(v) => v.to_bits(),
                FieldValue::Bool(v) => u64::from(*v),
                FieldValue::Text(s) => u64::from(self.interner.intern(s)),
            };
            self.cells.push(cell);
        }
    }

    /// The checkpoint to commit with `next_offset` for `partition`.
    pub fn checkpoint(&self, partition: PartitionKey, next_offset: i64) -> Checkpoint {
        match self.partitions.get(&partition) {
            Some(p) => p.checkpoint(next_offset),
            None => Checkpoint {
                stream_time: None,
                rebuild_from: next_offset,
                rebuild_time: None,
                jumps: Vec::new(),
            },
        }
    }

    /// Stream time of `partition`, if it has seen an event.
    pub fn stream_time(&self, partition: PartitionKey) -> Option<i64> {
        self.partitions
            .get(&partition)
            .and_then(Partition::stream_time)
    }

    /// Advances an idle `partition`'s stream time to `to` (see
    /// `docs/semantics.md`); its entities decay as if an event at `to` had
    /// arrived. False when `to` is not ahead.
    pub fn advance_idle(&mut self, partition: PartitionKey, to: i64) -> bool {
        match self.partitions.get_mut(&partition) {
            Some(p) => p.advance_to(&self.plan, to),
            None => false,
        }
    }

    /// Window state size of every partition: (entities, events held).
    pub fn state_size(&self) -> (usize, usize) {
        self.partitions
            .values()
            .fold((0, 0), |(e, n), p| (e + p.entities(), n + p.events_held()))
    }

    /// Feature updates for every entity of `partition` changed since the last
    /// flush, in as few plugin calls as possible: one for all of them, unless
    /// the plugin fails, in which case the batch is split in halves until the
    /// failing entities are isolated (each becomes a [`PluginFailure`]).
    pub fn flush(&mut self, partition: PartitionKey) -> Flush {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return Flush::default();
        };
        let computed_at = state.stream_time().map(format_time).unwrap_or_default();
        let mut carried_tombstones = Vec::new();
        if !self.quarantined {
            if let Some(deferred) = self.deferred.remove(&partition) {
                for entity in &deferred.entities {
                    state.touch(entity);
                }
                carried_tombstones = deferred.tombstones;
            }
        }
        let mut emission = state.drain(&self.plan);
        emission.tombstones.extend(carried_tombstones);
        let mut flush = Flush::default();
        let mut pending = Vec::with_capacity(8);
        pending.push(0..emission.rows.len());
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            if self.quarantined {
                flush.skipped += range.len();
                let deferred = self.deferred.entry(partition).or_default();
                deferred
                    .entities
                    .extend(emission.rows[range].iter().map(|r| r.key.clone()));
                continue;
            }
            let rows = &emission.rows[range.clone()];
            let batch = self.batch(rows);
            match self.plugin.compute(&batch) {
                Ok(columns) => {
                    self.failure_streak = 0;
                    if batch.rows <= RECENT_BATCH_ROWS {
                        *self.recent_batch.lock().expect("never poisoned") = Some(batch);
                    }
                    for (i, row) in rows.iter().enumerate() {
                        let value = self.feature_json(&row.key, &columns, i, &computed_at);
                        flush.updates.push(FeatureUpdate {
                            key: self.key(&row.key),
                            entity: row.key.to_string(),
                            ttl_secs: self.layout.ttl_secs,
                            value: Some(value),
                        });
                    }
                }
                Err(error) => {
                    self.count_failure(&error);
                    if range.len() == 1 {
                        let row = &rows[0];
                        flush.failures.push(PluginFailure {
                            entity: row.key.to_string(),
                            partition,
                            offset: row.offset,
                            error,
                        });
                    } else {
                        let mid = range.start + range.len() / 2;
                        pending.push(mid..range.end);
                        pending.push(range.start..mid);
                    }
                }
            }
        }
        self.counters.add_updates(flush.updates.len() as u64);
        self.counters.add_plugin_skipped(flush.skipped as u64);
        self.counters
            .add_tombstones(emission.tombstones.len() as u64);
        for entity in emission.tombstones {
            flush.updates.push(FeatureUpdate {
                key: self.key(&entity),
                entity: entity.into(),
                ttl_secs: self.layout.ttl_secs,
                value: None,
            });
        }
        flush
    }

    fn count_failure(&mut self, error: &PluginError) {
        match error {
            PluginError::Trap { .. } => self.counters.add_plugin_traps(1),
            _ => self.counters.add_plugin_errors(1),
        }
        self.failure_streak += 1;
        if self.failure_streak >= self.max_consecutive_failures && !self.quarantined {
            self.quarantined = true;
            self.counters.add_quarantines(1);
            tracing::error!(
                plugin = %self.plugin.name(),
                failures = self.failure_streak,
                last_error = %error,
                "plugin quarantined after consecutive failures: its outputs are no longer computed"
            );
        }
    }

    /// Partitions with window state here.
    pub fn partitions(&self) -> Vec<PartitionKey> {
        let mut v: Vec<PartitionKey> = self.partitions.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn key(&self, entity: &str) -> String {
        self.layout
            .key_template
            .replace("{entity}", entity)
            .replace(&format!("{{{}}}", self.schema.entity_key), entity)
    }

    /// Builds the plugin's input: one column per aggregation.
    fn batch(&self, rows: &[Row]) -> Batch {
        let columns = self
            .plan
            .aggs
            .iter()
            .enumerate()
            .map(|(a, op)| {
                let cells = rows.iter().map(|r| r.cells[a]);
                let valid: Vec<bool> = cells.clone().map(|c| c != AggCell::Null).collect();
                let valid = if valid.iter().all(|v| *v) {
                    Vec::new()
                } else {
                    valid
                };
                let stored = |c: AggCell| match c {
                    AggCell::Stored(x) => x,
                    _ => 0,
                };
                let data = match (op.kind, op.field_type) {
                    (
                        crate::plugin::AggregationKind::First
                        | crate::plugin::AggregationKind::Last,
                        Some(kind),
                    ) => match kind {
                        ValueType::Int64 => {
                            ColumnData::Int64(cells.map(|c| stored(c) as i64).collect())
                        }
                        ValueType::Float64 => {
                            ColumnData::Float64(cells.map(|c| f64::from_bits(stored(c))).collect())
                        }
                        ValueType::Boolean => {
                            ColumnData::Boolean(cells.map(|c| stored(c) != 0).collect())
                        }
                        ValueType::Text => self.text_column(cells.map(stored)),
                    },
                    _ => match cells.clone().find(|c| *c != AggCell::Null) {
                        Some(AggCell::Int(_)) => ColumnData::Int64(
                            cells
                                .map(|c| if let AggCell::Int(v) = c { v } else { 0 })
                                .collect(),
                        ),
                        _ => ColumnData::Float64(
                            cells
                                .map(|c| if let AggCell::Float(v) = c { v } else { 0.0 })
                                .collect(),
                        ),
                    },
                };
                Column { data, valid }
            })
            .collect();
        Batch {
            rows: rows.len() as u32,
            columns,
        }
    }

    fn text_column(&self, ids: impl Iterator<Item = u64>) -> ColumnData {
        let mut local: FxHashMap<u32, u32> = FxHashMap::default();
        let mut dictionary = Vec::new();
        let codes = ids
            .map(|id| {
                let id = id as u32;
                *local.entry(id).or_insert_with(|| {
                    dictionary.push(self.interner.get(id).to_owned());
                    (dictionary.len() - 1) as u32
                })
            })
            .collect();
        ColumnData::Text(TextColumn { dictionary, codes })
    }

    fn feature_json(
        &self,
        entity: &str,
        columns: &[Column],
        row: usize,
        computed_at: &str,
    ) -> String {
        let mut out = String::with_capacity(128);
        out.push('{');
        push_json_str(&mut out, &self.schema.entity_key);
        out.push(':');
        push_json_str(&mut out, entity);
        for (feature, column) in self.plugin.descriptor().features.iter().zip(columns) {
            out.push(',');
            push_json_str(&mut out, &feature.name);
            out.push(':');
            if !column.valid.is_empty() && !column.valid[row] {
                out.push_str("null");
                continue;
            }
            match &column.data {
                ColumnData::Int64(v) => out.push_str(&v[row].to_string()),
                ColumnData::Float64(v) => match serde_json::Number::from_f64(v[row]) {
                    Some(n) => out.push_str(&n.to_string()),
                    None => out.push_str("null"),
                },
                ColumnData::Boolean(v) => out.push_str(if v[row] { "true" } else { "false" }),
                ColumnData::Text(t) => {
                    push_json_str(&mut out, &t.dictionary[t.codes[row] as usize])
                }
                // Refused by the engine's output check.
                ColumnData::EventList(_) => out.push_str("null"),
            }
        }
        out.push_str(",\"computed_at\":");
        push_json_str(&mut out, computed_at);
        out.push('}');
        out
    }
}

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("strings always serialize"));
}
