//! The processing core shared by every source: decode an event, apply it to
//! its partition's windows, and at flush time turn the changed entities into
//! feature updates through the plugin. No I/O happens here, so the Kafka
//! source, the file source, the tests and the benchmarks run the same code.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::entity::EntityKey;
use crate::event::{format_time, DecodeError, FieldValue, Schema};
use crate::metrics::Counters;
use crate::plugin::{
    AggregationKind, Batch, Column, ColumnData, EventListColumn, EventValues, FeatureSpec, Plugin,
    PluginError, TextColumn, ValueType,
};
use crate::window::tiles::TileError;
use crate::window::{AggCell, Arrival, Checkpoint, Late, Partition, Plan, Row};

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

/// A consumed record, for [`Processor::process_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub offset: i64,
    /// Its Kafka timestamp (or the wall clock), see [`Processor::process`].
    pub reference_ms: i64,
    pub payload: Option<&'a [u8]>,
}

/// One write to the online store and the feature topic.
#[derive(Debug, Clone)]
pub struct FeatureUpdate {
    /// Entity id (the Kafka record key; each online layout makes its key from it).
    pub entity: String,
    /// Event time the values are as of: the partition's stream time at the
    /// flush, in ms since the epoch (`computed_at` of the JSON record).
    pub as_of_ms: i64,
    /// Feature JSON, or `None` for a tombstone (the entity's windows are empty).
    pub value: Option<String>,
    /// The same values, typed, or `None` for a tombstone.
    pub features: Option<FeatureRow>,
}

/// The feature columns one plugin call returned, shared by the updates of
/// its rows so that no update copies its values.
#[derive(Debug)]
pub struct FeatureColumns {
    /// Name and type of each feature, in declaration order.
    pub specs: Arc<[FeatureSpec]>,
    /// `name@version#sha256` of the plugin that computed them.
    pub plugin: Arc<str>,
    /// One column per feature, as the plugin returned them (checked by the engine).
    pub columns: Vec<Column>,
}

/// One entity's features: a row of a [`FeatureColumns`].
#[derive(Debug, Clone)]
pub struct FeatureRow {
    pub columns: Arc<FeatureColumns>,
    pub row: usize,
}

/// A typed feature value, borrowed from its column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeatureValue<'a> {
    Null,
    Int64(i64),
    Float64(f64),
    Boolean(bool),
    Text(&'a str),
}

impl FeatureRow {
    /// Name and type of every feature, in declaration order.
    pub fn specs(&self) -> &[FeatureSpec] {
        &self.columns.specs
    }

    /// `name@version#sha256` of the plugin that computed the row.
    pub fn plugin(&self) -> &str {
        &self.columns.plugin
    }

    /// Value of feature `f` (declaration order).
    pub fn get(&self, f: usize) -> FeatureValue<'_> {
        let column = &self.columns.columns[f];
        let row = self.row;
        if !column.valid.is_empty() && !column.valid[row] {
            return FeatureValue::Null;
        }
        match &column.data {
            ColumnData::Int64(v) => FeatureValue::Int64(v[row]),
            ColumnData::Float64(v) => FeatureValue::Float64(v[row]),
            ColumnData::Boolean(v) => FeatureValue::Boolean(v[row]),
            ColumnData::Text(t) => FeatureValue::Text(&t.dictionary[t.codes[row] as usize]),
            // Not a feature type: the engine's output check refuses it.
            ColumnData::EventList(_) => FeatureValue::Null,
        }
    }

    /// Every feature as (name, value), in declaration order.
    pub fn values(&self) -> impl Iterator<Item = (&str, FeatureValue<'_>)> + '_ {
        self.specs()
            .iter()
            .enumerate()
            .map(|(f, spec)| (spec.name.as_str(), self.get(f)))
    }
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
    /// The plugin's feature specs and `name@version`, shared by its outputs.
    feature_specs: Arc<[FeatureSpec]>,
    plugin_tag: Arc<str>,
    /// The fixed text of the feature records, for the entity key and specs.
    records: RecordTemplate,
    plan: Plan,
    schema: Schema,
    interner: Interner,
    partitions: FxHashMap<PartitionKey, Partition>,
    counters: Counters,
    cells: Vec<u64>,
    /// The cells of the records of a batch, one after the other.
    batch_cells: Vec<u64>,
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
        counters: Counters,
    ) -> Self {
        let d = plugin.descriptor();
        let plan = Plan::new(d);
        let schema = Schema {
            entity: EntityKey::single(&d.entity_key),
            timestamp_field: timestamp_field.to_owned(),
            inputs: d.inputs.iter().map(|i| (i.name.clone(), i.kind)).collect(),
            max_future_ms,
        };
        let records = RecordTemplate::new(&schema.entity, &d.features);
        Self {
            records,
            plan,
            schema,
            interner: Interner::default(),
            partitions: FxHashMap::default(),
            counters,
            cells: Vec::new(),
            batch_cells: Vec::new(),
            deferred: FxHashMap::default(),
            recent_batch: RecentBatch::default(),
            failure_streak: 0,
            max_consecutive_failures: 10,
            quarantined: false,
            feature_specs: d.features.clone().into(),
            plugin_tag: plugin_tag(&plugin),
            plugin,
        }
    }

    /// Groups events by `entity` instead of the plugin's entity key.
    pub fn with_entity_key(mut self, entity: EntityKey) -> Self {
        self.records = RecordTemplate::new(&entity, &self.feature_specs);
        self.schema.entity = entity;
        self
    }

    /// The fields identifying an entity.
    pub fn entity_key(&self) -> &EntityKey {
        &self.schema.entity
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
        self.counters.set_quarantined(false);
        self.feature_specs = plugin.descriptor().features.clone().into();
        self.records = RecordTemplate::new(&self.schema.entity, &self.feature_specs);
        self.plugin_tag = plugin_tag(&plugin);
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

    /// `name@version#sha256` of the plugin in use, the tag of its outputs.
    pub fn plugin_tag(&self) -> &str {
        &self.plugin_tag
    }

    /// The shared counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sets the allowed out-of-orderness of event times (watermark = stream
    /// time minus `ms`); before any partition has state.
    pub fn with_out_of_orderness(mut self, ms: u64) -> Self {
        self.plan = self.plan.clone().with_out_of_orderness(ms as i64);
        self
    }

    /// Sets how many distinct values `distinct-count` counts exactly (beyond,
    /// it estimates); before any partition has state.
    pub fn with_distinct_exact_limit(mut self, limit: usize) -> Self {
        self.plan = self.plan.clone().with_distinct_exact_limit(limit);
        self
    }

    /// Tiles the sliding windows `tiling` selects (see `docs/semantics.md`),
    /// before any partition has state; refused when the plugin's windows do not
    /// fit the tiling.
    pub fn with_tiling(mut self, tiling: crate::window::Tiling) -> Result<Self, TileError> {
        crate::window::tiles::check(self.plugin.descriptor(), tiling)?;
        self.plan = self.plan.with_tiling(tiling);
        Ok(self)
    }

    /// How far before stream time an event can still count in some window,
    /// in ms (see [`Plan::reach_ms`]).
    pub fn max_window_ms(&self) -> i64 {
        self.plan.reach_ms()
    }

    /// True when `partition` has window state here.
    pub fn owns(&self, partition: PartitionKey) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Starts `partition` from `checkpoint` (empty without one), before
    /// [`Processor::replay`] (or [`Processor::replay_batch`]) and
    /// [`Processor::finish_rebuild`].
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

    /// Applies consumed records of `partition`, in order, exactly as
    /// [`Processor::process`] one by one would; `outcomes` is set to their
    /// outcomes, in the same order. Faster for many records: the partition is
    /// looked up once, and the windows load each entity's state a few events
    /// ahead (see [`Partition::apply_batch`]).
    pub fn process_batch(
        &mut self,
        partition: PartitionKey,
        records: &[Record<'_>],
        outcomes: &mut Vec<Outcome>,
    ) {
        outcomes.clear();
        if records.is_empty() {
            return;
        }
        self.counters.add_events_in(records.len() as u64);
        outcomes.extend(records.iter().map(|_| Outcome::Applied));
        let mut cells = std::mem::take(&mut self.batch_cells);
        let decoded = self.decode_run(records, &mut cells, |i, e| outcomes[i] = Outcome::Dead(e));
        self.counters
            .add_dead_letters((records.len() - decoded.len()) as u64);
        let arrivals = arrivals(records, &decoded, &cells, self.plan.stored.len());
        let state = self
            .partitions
            .entry(partition)
            .or_insert_with(|| Partition::new(&self.plan));
        let counters = &self.counters;
        state.apply_batch(&self.plan, &arrivals, |k, result| {
            if let Err(Late { reason, .. }) = result {
                counters.add_late(1);
                outcomes[decoded[k].0] = Outcome::Late(reason);
            }
        });
        drop(arrivals);
        self.batch_cells = cells;
    }

    /// Re-applies a record while rebuilding `partition` (see [`Processor::replay_batch`]).
    pub fn replay(
        &mut self,
        partition: PartitionKey,
        offset: i64,
        reference_ms: i64,
        payload: Option<&[u8]>,
    ) {
        let record = Record {
            offset,
            reference_ms,
            payload,
        };
        self.replay_batch(partition, &[record]);
    }

    /// Re-applies records of `partition` while rebuilding it, in order (see
    /// [`Partition::replay_batch`]). Malformed records are skipped: they were
    /// dead-lettered when first read.
    pub fn replay_batch(&mut self, partition: PartitionKey, records: &[Record<'_>]) {
        if records.is_empty() || !self.partitions.contains_key(&partition) {
            return;
        }
        let mut cells = std::mem::take(&mut self.batch_cells);
        let decoded = self.decode_run(records, &mut cells, |_, _| {});
        let arrivals = arrivals(records, &decoded, &cells, self.plan.stored.len());
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.replay_batch(&self.plan, &arrivals);
        }
        drop(arrivals);
        self.batch_cells = cells;
    }

    /// Decodes a run of records: the stored cells of each one decoded go into
    /// `cells` (cleared first), one record's after another, and its (index in
    /// `records`, entity, event time) into the result, in order; `rejected`
    /// gets the index of each record that does not decode, and why.
    fn decode_run<'a>(
        &mut self,
        records: &[Record<'a>],
        cells: &mut Vec<u64>,
        mut rejected: impl FnMut(usize, DecodeError),
    ) -> Vec<(usize, Cow<'a, str>, i64)> {
        cells.clear();
        let mut decoded = Vec::with_capacity(records.len());
        let mut fields = Vec::new();
        for (i, r) in records.iter().enumerate() {
            match self.schema.decode_into(r.payload, r.reference_ms, fields) {
                Ok(event) => {
                    self.fill_cells(&event.fields);
                    cells.extend_from_slice(&self.cells);
                    decoded.push((i, event.entity, event.time_ms));
                    fields = event.fields;
                }
                Err(e) => {
                    rejected(i, e);
                    fields = Vec::new();
                }
            }
        }
        decoded
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

    /// Tiles held by the tiled windows of every partition.
    pub fn tiles_held(&self) -> usize {
        self.partitions.values().map(Partition::tiles_held).sum()
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
        let as_of_ms = state.stream_time().unwrap_or_default();
        let mut computed_at = String::new();
        push_json_str(
            &mut computed_at,
            &state.stream_time().map(format_time).unwrap_or_default(),
        );
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
        let mut flush = Flush {
            updates: Vec::with_capacity(emission.rows.len() + emission.tombstones.len()),
            ..Flush::default()
        };
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
            let rows = &mut emission.rows[range.clone()];
            let batch = self.batch(rows);
            let started = std::time::Instant::now();
            let computed = self.plugin.compute(&batch);
            self.counters.observe_plugin_call(started.elapsed());
            match computed {
                Ok(columns) => {
                    self.failure_streak = 0;
                    if batch.rows <= RECENT_BATCH_ROWS {
                        *self.recent_batch.lock().expect("never poisoned") = Some(batch);
                    }
                    let columns = Arc::new(FeatureColumns {
                        specs: self.feature_specs.clone(),
                        plugin: self.plugin_tag.clone(),
                        columns,
                    });
                    for (i, row) in rows.iter_mut().enumerate() {
                        let features = FeatureRow {
                            columns: columns.clone(),
                            row: i,
                        };
                        let value = self.records.render(
                            &self.schema.entity,
                            &row.key,
                            &features,
                            &computed_at,
                        );
                        flush.updates.push(FeatureUpdate {
                            // Each row is computed once: its key moves into the update.
                            entity: std::mem::take(&mut row.key).into_string(),
                            as_of_ms,
                            value: Some(value),
                            features: Some(features),
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
        self.counters.set_window_state(self.state_size());
        self.counters.set_window_tiles(self.tiles_held());
        self.counters.add_updates(flush.updates.len() as u64);
        self.counters.add_plugin_skipped(flush.skipped as u64);
        self.counters
            .add_tombstones(emission.tombstones.len() as u64);
        for entity in emission.tombstones {
            flush.updates.push(FeatureUpdate {
                entity: entity.into(),
                as_of_ms,
                value: None,
                features: None,
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
            self.counters.set_quarantined(true);
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

    /// Builds the plugin's input: one column per aggregation.
    fn batch(&self, rows: &[Row]) -> Batch {
        let columns = self
            .plan
            .aggs
            .iter()
            .enumerate()
            .map(|(a, op)| {
                let cells = rows.iter().map(|r| &r.cells[a]);
                let valid: Vec<bool> = cells.clone().map(|c| *c != AggCell::Null).collect();
                let valid = if valid.iter().all(|v| *v) {
                    Vec::new()
                } else {
                    valid
                };
                let stored = |c: &AggCell| match c {
                    AggCell::Stored(x) => *x,
                    _ => 0,
                };
                let data = match (op.kind, op.field_type) {
                    (AggregationKind::Events, Some(kind)) => self.event_list_column(cells, kind),
                    (AggregationKind::First | AggregationKind::Last, Some(kind)) => {
                        self.typed_column(cells.map(stored), kind)
                    }
                    _ => match cells.clone().find(|c| **c != AggCell::Null) {
                        Some(AggCell::Int(_)) => ColumnData::Int64(
                            cells
                                .map(|c| if let AggCell::Int(v) = c { *v } else { 0 })
                                .collect(),
                        ),
                        _ => ColumnData::Float64(
                            cells
                                .map(|c| if let AggCell::Float(v) = c { *v } else { 0.0 })
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

    /// A column of stored field values of type `kind`.
    fn typed_column(&self, values: impl Iterator<Item = u64>, kind: ValueType) -> ColumnData {
        match kind {
            ValueType::Int64 => ColumnData::Int64(values.map(|v| v as i64).collect()),
            ValueType::Float64 => ColumnData::Float64(values.map(f64::from_bits).collect()),
            ValueType::Boolean => ColumnData::Boolean(values.map(|v| v != 0).collect()),
            ValueType::Text => ColumnData::Text(self.text_column(values)),
        }
    }

    /// An `event-list` column of `events` cells over a field of type `kind`.
    fn event_list_column<'a>(
        &self,
        cells: impl Iterator<Item = &'a AggCell> + Clone,
        kind: ValueType,
    ) -> ColumnData {
        let lists = cells.map(|c| match c {
            AggCell::Events(events) => events.as_slice(),
            _ => &[],
        });
        let mut offsets = Vec::with_capacity(lists.clone().count() + 1);
        offsets.push(0u32);
        let mut times = Vec::new();
        for list in lists.clone() {
            times.extend(list.iter().map(|(t, _)| *t));
            offsets.push(times.len() as u32);
        }
        let values = lists.flat_map(|list| list.iter().map(|(_, v)| *v));
        let values = match kind {
            ValueType::Int64 => EventValues::Int64(values.map(|v| v as i64).collect()),
            ValueType::Float64 => EventValues::Float64(values.map(f64::from_bits).collect()),
            ValueType::Boolean => EventValues::Boolean(values.map(|v| v != 0).collect()),
            ValueType::Text => EventValues::Text(self.text_column(values)),
        };
        ColumnData::EventList(EventListColumn {
            offsets,
            times,
            values,
        })
    }

    fn text_column(&self, ids: impl Iterator<Item = u64>) -> TextColumn {
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
        TextColumn { dictionary, codes }
    }
}

/// The windows' view of a decoded run (see [`Processor::decode_run`]): each
/// decoded record's offset, entity, event time and its `width` stored cells.
fn arrivals<'b>(
    records: &[Record<'_>],
    decoded: &'b [(usize, Cow<'_, str>, i64)],
    cells: &'b [u64],
    width: usize,
) -> Vec<Arrival<'b>> {
    decoded
        .iter()
        .enumerate()
        .map(|(k, (i, entity, t))| Arrival {
            offset: records[*i].offset,
            entity,
            t: *t,
            cells: &cells[k * width..(k + 1) * width],
        })
        .collect()
}

/// The feature record of `entity` (an id of `key`): its entity fields, the
/// features in order, and `computed_at` (the as-of event time, ISO-8601). The
/// text of the `ml-features` records, the `json` layout and feature lookups.
pub fn record_json<'a>(
    key: &EntityKey,
    entity: &str,
    values: impl Iterator<Item = (&'a str, FeatureValue<'a>)>,
    computed_at: &str,
) -> String {
    // Room for the usual record at once (names and numbers run to about 40
    // bytes a feature): growing it would copy it, often twice.
    let mut out =
        String::with_capacity(48 + entity.len() + computed_at.len() + 40 * values.size_hint().0);
    out.push('{');
    push_entity_fields(&mut out, key, entity);
    for (name, value) in values {
        out.push(',');
        push_json_str(&mut out, name);
        out.push(':');
        push_feature_value(&mut out, value);
    }
    out.push_str(",\"computed_at\":");
    push_json_str(&mut out, computed_at);
    out.push('}');
    out
}

/// The text of [`record_json`] that is the same for every record of a view,
/// escaped once: the opening up to the entity id (a single-field key), and
/// each feature's `,"name":`.
#[derive(Debug, Clone)]
struct RecordTemplate {
    /// `{"field":` of a single-field key; `None`: the key fields are written
    /// per record.
    head: Option<String>,
    names: Vec<String>,
}

impl RecordTemplate {
    fn new(key: &EntityKey, specs: &[FeatureSpec]) -> Self {
        let head = match key.fields() {
            [field] => {
                let mut head = String::from("{");
                push_json_str(&mut head, field);
                head.push(':');
                Some(head)
            }
            _ => None,
        };
        let names = specs
            .iter()
            .map(|spec| {
                let mut name = String::from(",");
                push_json_str(&mut name, &spec.name);
                name.push(':');
                name
            })
            .collect();
        Self { head, names }
    }

    /// The record of [`record_json`] for `entity`'s `features`;
    /// `computed_at_json` is the `computed_at` time as a JSON string.
    fn render(
        &self,
        key: &EntityKey,
        entity: &str,
        features: &FeatureRow,
        computed_at_json: &str,
    ) -> String {
        let mut out = String::with_capacity(
            48 + entity.len() + computed_at_json.len() + 40 * self.names.len(),
        );
        match &self.head {
            Some(head) => {
                out.push_str(head);
                push_json_str(&mut out, entity);
            }
            None => {
                out.push('{');
                push_entity_fields(&mut out, key, entity);
            }
        }
        for (f, name) in self.names.iter().enumerate() {
            out.push_str(name);
            push_feature_value(&mut out, features.get(f));
        }
        out.push_str(",\"computed_at\":");
        out.push_str(computed_at_json);
        out.push('}');
        out
    }
}

/// Appends the entity fields of `entity` (an id of `key`) as JSON members,
/// comma-separated.
fn push_entity_fields(out: &mut String, key: &EntityKey, entity: &str) {
    if let [field] = key.fields() {
        push_json_str(out, field);
        out.push(':');
        push_json_str(out, entity);
        return;
    }
    let parts = key
        .split(entity)
        .expect("entity ids come from the same key");
    for (i, (field, part)) in key.fields().iter().zip(&parts).enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, field);
        out.push(':');
        push_json_str(out, part);
    }
}

/// Appends a feature value as JSON.
fn push_feature_value(out: &mut String, value: FeatureValue<'_>) {
    match value {
        FeatureValue::Null => out.push_str("null"),
        FeatureValue::Int64(v) => out.push_str(itoa::Buffer::new().format(v)),
        // As serde_json prints a float; JSON has no NaN or infinity.
        FeatureValue::Float64(v) if v.is_finite() => {
            out.push_str(zmij::Buffer::new().format_finite(v))
        }
        FeatureValue::Float64(_) => out.push_str("null"),
        FeatureValue::Boolean(v) => out.push_str(if v { "true" } else { "false" }),
        FeatureValue::Text(t) => push_json_str(out, t),
    }
}

/// `name@version#sha256` of `plugin`, the tag of its outputs.
fn plugin_tag(plugin: &Plugin) -> Arc<str> {
    format!("{}#{}", plugin.name(), plugin.content_hash()).into()
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(&serde_json::to_string(s).expect("strings always serialize"));
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view's record template writes exactly what `record_json` writes: a
    /// single and a composite key, names and values that need escaping,
    /// nulls and a non-finite float.
    #[test]
    fn record_templates_write_what_record_json_writes() {
        let specs: Arc<[FeatureSpec]> = [
            ("count", ValueType::Int64),
            ("avg \"x\"", ValueType::Float64),
            ("flag", ValueType::Boolean),
            ("label\n", ValueType::Text),
        ]
        .map(|(name, kind)| FeatureSpec {
            name: name.into(),
            kind,
        })
        .into();
        let columns = Arc::new(FeatureColumns {
            specs: specs.clone(),
            plugin: "t@1#00".into(),
            columns: vec![
                Column {
                    data: ColumnData::Int64(vec![0, -5, i64::MAX]),
                    valid: Vec::new(),
                },
                Column {
                    data: ColumnData::Float64(vec![1.5, f64::NAN, 0.1]),
                    valid: vec![true, true, false],
                },
                Column {
                    data: ColumnData::Boolean(vec![true, false, true]),
                    valid: Vec::new(),
                },
                Column {
                    data: ColumnData::Text(TextColumn {
                        dictionary: vec!["a\"b".into(), "é".into()],
                        codes: vec![0, 1, 0],
                    }),
                    valid: vec![true, true, false],
                },
            ],
        });
        let composite = EntityKey::new(vec!["user_id".into(), "n".into()]);
        let composite_id = composite.id(&["u\\1", "7"]);
        let computed_at = format_time(1_772_323_201_000);
        let mut computed_at_json = String::new();
        push_json_str(&mut computed_at_json, &computed_at);
        for (key, entity) in [
            (EntityKey::single("user \"id"), "u\"1".to_owned()),
            (composite, composite_id),
        ] {
            let template = RecordTemplate::new(&key, &specs);
            for row in 0..3 {
                let features = FeatureRow {
                    columns: columns.clone(),
                    row,
                };
                let got = template.render(&key, &entity, &features, &computed_at_json);
                let want = record_json(&key, &entity, features.values(), &computed_at);
                assert_eq!(got, want);
                let parsed: serde_json::Value = serde_json::from_str(&got).unwrap();
                assert_eq!(parsed["computed_at"], computed_at.as_str());
            }
        }
    }

    #[test]
    fn json_strings_and_numbers_match_serde_json() {
        let strings = [
            "",
            "plain",
            "quote\"",
            "back\\slash",
            "new\nline",
            "\u{1}",
            "é☃",
            "\u{7f}",
        ];
        for s in strings {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
        for f in [
            0.0,
            -0.0,
            1.5,
            1e16,
            1e-7,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            let ours = zmij::Buffer::new().format_finite(f).to_owned();
            assert_eq!(ours, serde_json::to_string(&f).unwrap());
            assert_eq!(ours, serde_json::Number::from_f64(f).unwrap().to_string());
        }
        for i in [0i64, -1, i64::MAX, i64::MIN] {
            assert_eq!(
                itoa::Buffer::new().format(i),
                serde_json::to_string(&i).unwrap()
            );
        }
    }
}
