//! Event-time window state, per partition and per entity.
//!
//! Stream time T of a partition is the largest event time it has seen. A
//! sliding window of length W holds an entity's events with time in
//! (T - W, T]. An event with time <= T - Wmax on arrival (Wmax the longest
//! window) is late and is not applied. As T advances, events leave windows;
//! the entities they belong to are marked dirty so that their new values (or a
//! tombstone, once nothing is left) are emitted at the next flush.
//!
//! - [`plan`]: what to store and aggregate, derived from the plugin descriptor;
//! - [`entity`]: one entity's events and incremental aggregates;
//! - [`sum`]: the compensated running sum.
//!
//! A partition also remembers, per coarse bucket of event time, the first
//! offset of an applied event, so a checkpoint can say from which offset a
//! replay rebuilds the windows exactly (see `docs/architecture.md`).

pub mod entity;
pub mod plan;
pub mod sum;

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

pub use entity::{AggCell, EntityWindow};
pub use plan::Plan;

/// Where a partition stands, stored with its committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Stream time (ms), if any event was seen.
    pub stream_time: Option<i64>,
    /// First offset a replay must read to rebuild every window exactly.
    pub rebuild_from: i64,
}

/// An event that arrived too late to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    pub stream_time: i64,
    pub window_ms: i64,
}

/// One entity's aggregation row.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: Box<str>,
    /// Aggregation cells, in plan order.
    pub cells: Vec<AggCell>,
    /// Offset of the last event applied to the entity.
    pub offset: i64,
}

/// What one flush emits for a partition.
#[derive(Debug, Default)]
pub struct Emission {
    /// Entities with events left.
    pub rows: Vec<Row>,
    /// Entities whose windows became empty.
    pub tombstones: Vec<Box<str>>,
}

struct Slot {
    key: Box<str>,
    window: EntityWindow,
    indexed: Option<i64>,
    dirty: bool,
    last_offset: i64,
}

/// All window state of one partition.
pub struct Partition {
    stream_time: Option<i64>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    ids: FxHashMap<Box<str>, u32>,
    /// (next change time, slot): entities in order of their next eviction.
    expiries: BTreeSet<(i64, u32)>,
    dirty: Vec<u32>,
    /// Event-time bucket -> first offset applied in it.
    buckets: BTreeMap<i64, i64>,
    bucket_ms: i64,
    events_held: usize,
}

impl Partition {
    /// An empty partition (no event seen yet).
    pub fn new(plan: &Plan) -> Self {
        Self::restored(plan, None)
    }

    /// A partition whose stream time is `stream_time`, to be filled by [`Partition::replay`].
    pub fn restored(plan: &Plan, stream_time: Option<i64>) -> Self {
        Self {
            stream_time,
            slots: Vec::new(),
            free: Vec::new(),
            ids: FxHashMap::default(),
            expiries: BTreeSet::new(),
            dirty: Vec::new(),
            buckets: BTreeMap::new(),
            bucket_ms: (plan.max_window / 64).max(1000),
            events_held: 0,
        }
    }

    /// Stream time, if any event was seen.
    pub fn stream_time(&self) -> Option<i64> {
        self.stream_time
    }

    /// Number of entities with state.
    pub fn entities(&self) -> usize {
        self.ids.len()
    }

    /// Number of events held in windows.
    pub fn events_held(&self) -> usize {
        self.events_held
    }

    /// Applies an event read at `offset`: advances stream time (evicting what
    /// leaves its windows) and inserts the event, or reports it late.
    pub fn apply(
        &mut self,
        plan: &Plan,
        offset: i64,
        entity: &str,
        t: i64,
        cells: &[u64],
    ) -> Result<(), Late> {
        if let Some(now) = self.stream_time {
            if t <= now - plan.max_window {
                return Err(Late {
                    stream_time: now,
                    window_ms: plan.max_window,
                });
            }
        }
        if self.stream_time.is_none_or(|now| t > now) {
            self.advance(plan, t);
        }
        let now = self.stream_time.expect("stream time set above");
        let slot = self.insert(plan, offset, entity, t, cells, now);
        self.mark_dirty(slot);
        Ok(())
    }

    /// Re-applies an event during a rebuild: stream time stays as restored,
    /// nothing is marked for emission, events outside every window are skipped.
    pub fn replay(&mut self, plan: &Plan, offset: i64, entity: &str, t: i64, cells: &[u64]) {
        let Some(now) = self.stream_time else { return };
        if t <= now - plan.max_window || t > now {
            return;
        }
        self.insert(plan, offset, entity, t, cells, now);
    }

    fn insert(
        &mut self,
        plan: &Plan,
        offset: i64,
        entity: &str,
        t: i64,
        cells: &[u64],
        now: i64,
    ) -> u32 {
        let id = match self.ids.get(entity) {
            Some(id) => *id,
            None => self.allocate(plan, entity),
        };
        let slot = self.slots[id as usize].as_mut().expect("live id");
        slot.window.insert(plan, t, cells, now);
        slot.last_offset = offset;
        self.events_held += 1;
        self.buckets
            .entry(t.div_euclid(self.bucket_ms))
            .or_insert(offset);
        self.reindex(plan, id);
        id
    }

    fn allocate(&mut self, plan: &Plan, entity: &str) -> u32 {
        let key: Box<str> = entity.into();
        let slot = Slot {
            key: key.clone(),
            window: EntityWindow::new(plan),
            indexed: None,
            dirty: false,
            last_offset: -1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(key, id);
        id
    }

    fn reindex(&mut self, plan: &Plan, id: u32) {
        let slot = self.slots[id as usize].as_mut().expect("live id");
        let next = slot.window.next_change(plan);
        if slot.indexed != next {
            if let Some(old) = slot.indexed {
                self.expiries.remove(&(old, id));
            }
            if let Some(new) = next {
                self.expiries.insert((new, id));
            }
            slot.indexed = next;
        }
    }

    /// Marks `entity` for emission at the next flush; false if it has no state.
    pub fn touch(&mut self, entity: &str) -> bool {
        match self.ids.get(entity) {
            Some(&id) => {
                self.mark_dirty(id);
                true
            }
            None => false,
        }
    }

    fn mark_dirty(&mut self, id: u32) {
        let slot = self.slots[id as usize].as_mut().expect("live id");
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Moves stream time forward to `to` without an event (idle partition):
    /// evicts what leaves the windows and marks those entities for emission.
    /// Returns false (and does nothing) unless `to` is ahead of stream time.
    pub fn advance_to(&mut self, plan: &Plan, to: i64) -> bool {
        if self.stream_time.is_some_and(|now| to > now) {
            self.advance(plan, to);
            true
        } else {
            false
        }
    }

    /// Moves stream time forward to `now`, evicting what leaves the windows.
    fn advance(&mut self, plan: &Plan, now: i64) {
        self.stream_time = Some(now);
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            let slot = self.slots[id as usize]
                .as_mut()
                .expect("indexed ids are live");
            slot.indexed = None;
            let before = slot.window.len();
            slot.window.advance(plan, now);
            self.events_held -= before - slot.window.len();
            self.reindex(plan, id);
            self.mark_dirty(id);
        }
        let horizon = now - plan.max_window;
        let bucket_ms = self.bucket_ms;
        while let Some((&b, _)) = self.buckets.first_key_value() {
            if (b + 1) * bucket_ms - 1 > horizon {
                break;
            }
            self.buckets.pop_first();
        }
    }

    /// Takes every entity changed since the last call: their aggregation rows,
    /// and tombstones for entities left with no event (their state is dropped).
    pub fn drain(&mut self, plan: &Plan) -> Emission {
        let mut out = Emission::default();
        for id in std::mem::take(&mut self.dirty) {
            let slot = self.slots[id as usize]
                .as_mut()
                .expect("dirty ids are live");
            slot.dirty = false;
            if slot.window.is_empty() {
                let slot = self.slots[id as usize].take().expect("live");
                self.ids.remove(&slot.key);
                self.free.push(id);
                out.tombstones.push(slot.key);
            } else {
                let cells = (0..plan.aggs.len())
                    .map(|a| slot.window.aggregate(plan, a))
                    .collect();
                out.rows.push(Row {
                    key: slot.key.clone(),
                    cells,
                    offset: slot.last_offset,
                });
            }
        }
        out
    }

    /// Every entity's current aggregation cells, by key (inspection and tests).
    pub fn snapshot(&self, plan: &Plan) -> BTreeMap<String, Vec<AggCell>> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| !s.window.is_empty())
            .map(|s| {
                let cells = (0..plan.aggs.len())
                    .map(|a| s.window.aggregate(plan, a))
                    .collect();
                (s.key.to_string(), cells)
            })
            .collect()
    }

    /// The checkpoint to store with committed offset `next_offset`.
    pub fn checkpoint(&self, next_offset: i64) -> Checkpoint {
        Checkpoint {
            stream_time: self.stream_time,
            rebuild_from: self
                .buckets
                .values()
                .copied()
                .min()
                .unwrap_or(next_offset)
                .min(next_offset),
        }
    }
}

#[cfg(test)]
mod tests;
