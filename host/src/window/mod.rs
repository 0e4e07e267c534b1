//! Event-time window state, per partition and per entity.
//!
//! Stream time T of a partition is the largest event time it has seen (or an
//! idle advance set); its watermark is T minus the allowed out-of-orderness.
//! A sliding window of length L holds an entity's events with time in
//! (T - L, T]. Tumbling and hopping windows are aligned instances
//! [start, end) that fire when the watermark reaches their end; session windows
//! group an entity's events closer than a gap. An instance accepts events until
//! the watermark reaches end + grace (it is then closed). An event that a
//! closed instance should have held, or that no window takes, is late: it is
//! reported (and applied to the windows that still take it). As time advances,
//! the entities whose shown values change are marked dirty, so that their new
//! values (or a tombstone, once nothing is shown) are emitted at the next flush.
//! `docs/semantics.md` has the exact rules.
//!
//! - [`plan`]: window shapes and what to store and aggregate, from the descriptor;
//! - [`entity`]: one entity's events, sliding aggregates and sessions;
//! - `expiry`: the entities in order of their next change (a calendar queue);
//! - `slots`: the entities' slots by id, in chunks that never move;
//! - [`sum`]: compensated running sums and moments;
//! - [`tiles`]: tiled windows (partial aggregates per time bucket, or per
//!   instance) for long windows.
//! - [`sketch`]: distinct counts beyond a bound and quantiles, with documented error.
//!
//! A partition also remembers, per bucket of event time (1/64 of the plan's
//! reach), how many events it holds in it and the offset of the first one
//! applied, with the stream time before it; plus the idle advances since. A
//! checkpoint then says from which offset, and from which stream time, a
//! replay rebuilds the windows exactly (see `docs/architecture.md`): the
//! earliest of those offsets, at or before that of every held event.

pub mod entity;
mod expiry;
mod index;
pub mod plan;
pub mod sketch;
mod slots;
pub mod sum;
pub mod tiles;

use std::collections::BTreeMap;

use std::hash::BuildHasher;

use rustc_hash::FxBuildHasher;

pub use entity::{AggCell, EntityWindow};
pub use plan::{Plan, Shape};
pub use tiles::Tiling;

use crate::event::format_time;
use entity::Verdict;
use expiry::Expiries;
use index::Index;
use slots::Slots;

/// Idle advances kept in a checkpoint at most (commit metadata is small).
pub const MAX_JUMPS: usize = 16;

/// How many entities ahead [`Partition::drain`] and [`Partition::advance`]
/// prefetch: their slots this far ahead, the heap state a slot points to
/// half as far, and (advance) the distinct-count lists that state points to
/// a quarter as far (each level's address is read from the one before).
const PREFETCH_AHEAD: usize = 8;

/// Hints the CPU to load the cache lines of `x` (no effect off x86-64).
/// With tens of thousands of entities their state is not in cache: handling
/// them one after the other waits for each miss in turn; prefetched, the
/// misses of the next few entities overlap.
#[inline(always)]
fn prefetch<T>(x: Option<&T>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = x {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let start = (x as *const T).cast::<i8>();
        for line in (0..std::mem::size_of::<T>().max(1)).step_by(64) {
            // SAFETY: SSE is part of x86-64, and a prefetch is a hint: it
            // reads nothing into the program and cannot fault, whatever the
            // address (here within a live reference's bytes).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// How many events ahead [`Partition::apply_batch`] starts loading an
/// entity's index line; its slot half as far, the state the slot points to a
/// quarter as far, its distinct-count lists an eighth.
const BATCH_AHEAD: usize = 16;

/// The hash an entity's key is indexed by.
fn hash_key(entity: &str) -> u64 {
    FxBuildHasher.hash_one(entity)
}

/// An event for [`Partition::apply_batch`], decoded: its offset, entity, time
/// and stored cells (as for [`Partition::apply`]).
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub offset: i64,
    pub entity: &'a str,
    pub t: i64,
    pub cells: &'a [u64],
}

/// Where a partition stands, stored with its committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Stream time (ms), if any event was seen.
    pub stream_time: Option<i64>,
    /// First offset a replay must read to rebuild every window exactly.
    pub rebuild_from: i64,
    /// Stream time just before `rebuild_from`, where the replay starts.
    pub rebuild_time: Option<i64>,
    /// Idle advances after `rebuild_from`: (next offset then, new stream time).
    pub jumps: Vec<(i64, i64)>,
}

/// An event that is late for at least one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    /// Why, naming the windows concerned.
    pub reason: String,
    /// Whether some other window still took it.
    pub applied: bool,
}

/// A row's aggregation cells: inline up to 4 (most plans), so that
/// emitting a row allocates nothing for them.
pub type RowCells = smallvec::SmallVec<[AggCell; 4]>;

/// One entity's aggregation row.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: Box<str>,
    /// Aggregation cells, in plan order.
    pub cells: RowCells,
    /// Offset of the last event applied to the entity.
    pub offset: i64,
}

/// What one flush emits for a partition.
#[derive(Debug, Default)]
pub struct Emission {
    /// Entities showing something.
    pub rows: Vec<Row>,
    /// Entities whose windows show nothing any more.
    pub tombstones: Vec<Box<str>>,
}

/// An entity key, kept in its slot: inline up to 22 bytes (most keys; no
/// allocation, and comparing it reads the slot's own memory), boxed beyond.
enum Key {
    Inline { len: u8, bytes: [u8; 22] },
    Boxed(Box<str>),
}

impl Key {
    fn new(s: &str) -> Self {
        let mut bytes = [0u8; 22];
        match bytes.get_mut(..s.len()) {
            Some(prefix) => {
                prefix.copy_from_slice(s.as_bytes());
                Key::Inline {
                    len: s.len() as u8,
                    bytes,
                }
            }
            None => Key::Boxed(s.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Boxed(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("copied from a str")
    }
}

struct Slot {
    key: Key,
    window: EntityWindow,
    /// The next-change time under which `expiries` holds the slot, or
    /// [`NOT_INDEXED`] (kept as a bare time: 8 bytes less per entity).
    indexed: i64,
    last_offset: i64,
}

/// `Slot::indexed` of a slot in no expiry: next-change times are after a
/// stream time, so never this.
const NOT_INDEXED: i64 = i64::MIN;

/// The expiry index's buckets per plan reach (a bucket of a 1 h reach spans
/// about 14 s).
const EXPIRY_BUCKETS_PER_REACH: i64 = 256;

/// Whether the expiry entry (`at`, `id`) is live: the slot is indexed at `at`.
fn indexed_at(slots: &Slots<Option<Slot>>, at: i64, id: u32) -> bool {
    slots
        .get(id)
        .and_then(Option::as_ref)
        .is_some_and(|s| s.indexed == at)
}

impl Slot {
    fn indexed(&self) -> Option<i64> {
        (self.indexed != NOT_INDEXED).then_some(self.indexed)
    }
}

/// Held events with times in one bucket of event time.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Offset of the first of them applied (at or before all of them).
    first: i64,
    /// Stream time just before that event was applied.
    before: i64,
    /// How many are held.
    held: u32,
}

/// A rebuild in progress: where stream time must end, and the idle advances to redo.
#[derive(Debug, Default)]
struct Rebuild {
    target: Option<i64>,
    jumps: Vec<(i64, i64)>,
}

/// All window state of one partition.
pub struct Partition {
    stream_time: Option<i64>,
    slots: Slots<Option<Slot>>,
    free: Vec<u32>,
    /// Slot ids by their key's hash (keys are kept once, in the slots).
    ids: Index,
    /// (next change time, slot): entities in order of their next change
    /// (an entry is live while its time is the slot's `indexed`).
    expiries: Expiries,
    /// Slots marked for emission at the next flush, and the same as one bit
    /// per slot id (a flag in the slot would cost 8 bytes per entity).
    dirty: Vec<u32>,
    marked: Vec<u64>,
    /// Held events by bucket of event time (`t.div_euclid(bucket_ms)`).
    buckets: BTreeMap<i64, Bucket>,
    bucket_ms: i64,
    /// Events held.
    held: usize,
    /// Offset of the first event of live tiles (their anchor) -> (stream time
    /// just before it was applied, tiles it anchors).
    anchors: BTreeMap<i64, (i64, u32)>,
    /// Tiles held over every entity.
    tiles: usize,
    /// Idle advances: (next offset then, new stream time), oldest first.
    jumps: Vec<(i64, i64)>,
    /// One past the last offset applied or judged late.
    next_offset: i64,
    rebuild: Option<Rebuild>,
    /// Per-window verdicts of the event being applied (kept to avoid an allocation per event).
    verdicts: Vec<Verdict>,
    /// The keys' hashes and likely slots of the batch being applied (kept
    /// to avoid allocations per batch).
    ahead: Vec<(u64, Option<u32>)>,
    /// Entities the last advance of stream time took from the expiry index.
    popped: usize,
}

impl Partition {
    /// An empty partition (no event seen yet).
    pub fn new(plan: &Plan) -> Self {
        Self {
            stream_time: None,
            slots: Slots::default(),
            free: Vec::new(),
            ids: Index::default(),
            expiries: Expiries::new(plan.reach_ms() / EXPIRY_BUCKETS_PER_REACH),
            dirty: Vec::new(),
            marked: Vec::new(),
            buckets: BTreeMap::new(),
            bucket_ms: (plan.reach_ms() / 64).max(1),
            held: 0,
            anchors: BTreeMap::new(),
            tiles: 0,
            jumps: Vec::new(),
            next_offset: 0,
            rebuild: None,
            verdicts: Vec::new(),
            ahead: Vec::new(),
            popped: 0,
        }
    }

    /// A partition to be rebuilt from `checkpoint` by [`Partition::replay`]
    /// of the records from its `rebuild_from`, then [`Partition::finish_replay`].
    pub fn restored(plan: &Plan, checkpoint: &Checkpoint) -> Self {
        let mut p = Self::new(plan);
        p.stream_time = checkpoint.rebuild_time.or(checkpoint.stream_time);
        p.next_offset = checkpoint.rebuild_from;
        p.rebuild = Some(Rebuild {
            target: checkpoint.stream_time,
            jumps: checkpoint.jumps.clone(),
        });
        p
    }

    /// Stream time, if any event was seen.
    pub fn stream_time(&self) -> Option<i64> {
        self.stream_time
    }

    /// Number of entities with state.
    pub fn entities(&self) -> usize {
        self.ids.len()
    }

    /// Number of events held in windows (tiled windows hold none).
    pub fn events_held(&self) -> usize {
        self.held
    }

    /// Number of tiles held by tiled windows.
    pub fn tiles_held(&self) -> usize {
        self.tiles
    }

    /// The oldest offset some held event or live tile depends on, with the
    /// stream time just before it was applied.
    fn oldest_anchor(&self) -> Option<(i64, i64)> {
        let raw = self.oldest_held();
        let tile = self.anchors.first_key_value().map(|(o, (t, _))| (*o, *t));
        match (raw, tile) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Watermark: stream time minus the allowed out-of-orderness.
    fn watermark(plan: &Plan, now: i64) -> i64 {
        now - plan.out_of_orderness
    }

    /// Applies an event read at `offset`: advances stream time (what leaves
    /// or fires marks entities dirty) and inserts the event into the windows
    /// that take it. `Err` when some window cannot (see [`Late`]).
    pub fn apply(
        &mut self,
        plan: &Plan,
        offset: i64,
        entity: &str,
        t: i64,
        cells: &[u64],
    ) -> Result<(), Late> {
        self.apply_hashed(plan, offset, entity, hash_key(entity), t, cells)
    }

    /// Applies `events` in order, exactly as [`Partition::apply`] one by one
    /// would, and reports each one's result with its index, in order. Faster
    /// for many events: each entity's state is loaded a few events before its
    /// event is applied, in stages (its index line, its slot, the state the
    /// slot points to, its distinct-count lists; each stage's addresses are
    /// read from the one before), so that the cache misses of successive
    /// events overlap instead of following one another.
    pub fn apply_batch(
        &mut self,
        plan: &Plan,
        events: &[Arrival<'_>],
        mut result: impl FnMut(usize, Result<(), Late>),
    ) {
        let mut ahead = std::mem::take(&mut self.ahead);
        ahead.clear();
        ahead.extend(events.iter().map(|e| (hash_key(e.entity), None)));
        for (i, e) in events.iter().enumerate() {
            if let Some((hash, _)) = ahead.get(i + BATCH_AHEAD) {
                self.ids.prefetch(*hash);
            }
            if let Some((hash, likely)) = ahead.get_mut(i + BATCH_AHEAD / 2) {
                *likely = self.ids.candidate(*hash);
                prefetch(likely.and_then(|id| self.slots.get(id)));
            }
            let slot = |k: usize| {
                let id = ahead.get(k).and_then(|(_, likely)| *likely)?;
                self.slots.get(id)?.as_ref()
            };
            if let Some(near) = slot(i + BATCH_AHEAD / 4) {
                near.window.prefetch();
            }
            if let Some(next) = slot(i + BATCH_AHEAD / 8) {
                next.window.prefetch_lists();
            }
            let hash = ahead[i].0;
            result(
                i,
                self.apply_hashed(plan, e.offset, e.entity, hash, e.t, e.cells),
            );
        }
        self.ahead = ahead;
    }

    /// [`Partition::apply`] with the key's hash already computed.
    fn apply_hashed(
        &mut self,
        plan: &Plan,
        offset: i64,
        entity: &str,
        hash: u64,
        t: i64,
        cells: &[u64],
    ) -> Result<(), Late> {
        self.next_offset = offset + 1;
        let before = self.stream_time.unwrap_or(t);
        if self.stream_time.is_none_or(|now| t > now) {
            self.advance(plan, t);
        }
        let now = self.stream_time.expect("stream time set above");
        let wm = Self::watermark(plan, now);
        let mut verdicts = std::mem::take(&mut self.verdicts);
        verdicts.clear();
        verdicts.extend((0..plan.shapes.len()).map(|w| tiles::verdict(plan, w, t, now, wm)));
        let counted = verdicts
            .iter()
            .any(|v| matches!(v, Verdict::Counted | Verdict::Closed { counted: true, .. }));
        let closed: Vec<String> = verdicts
            .iter()
            .zip(&plan.shapes)
            .filter_map(|(v, shape)| match (v, shape) {
                (Verdict::Closed { end, .. }, Shape::Session { .. }) => Some(format!(
                    "its session would end at {} and is past its grace period",
                    format_time(*end)
                )),
                (Verdict::Closed { end, .. }, _) => Some(format!(
                    "the window instance ending at {} is closed (past its grace period)",
                    format_time(*end)
                )),
                _ => None,
            })
            .collect();
        if counted {
            let id = match self.find(hash, entity) {
                Some(id) => id,
                None => self.allocate(plan, entity, hash),
            };
            let slot = self.slots[id].as_mut().expect("live id");
            let raw = plan.tiles.holds_raw(&verdicts);
            let mut shown = raw && slot.window.insert(plan, t, cells, now, wm, &verdicts);
            let mut merged = Vec::new();
            let (tiled, opened) = slot.window.tiles.insert(
                plan,
                (t, offset),
                cells,
                &verdicts,
                (now, wm),
                &mut |anchor| merged.push(anchor),
            );
            shown |= tiled;
            slot.last_offset = offset;
            if raw {
                self.held += 1;
                self.buckets
                    .entry(t.div_euclid(self.bucket_ms))
                    .or_insert(Bucket {
                        first: offset,
                        before,
                        held: 0,
                    })
                    .held += 1;
            }
            if opened > 0 {
                self.anchors.entry(offset).or_insert((before, 0)).1 += opened;
                self.tiles += opened as usize;
            }
            if merged.into_iter().fold(false, |e, a| self.release(a) | e) {
                self.prune_jumps();
            }
            self.reindex(plan, id);
            if shown {
                self.mark_dirty(id);
            }
        }
        self.verdicts = verdicts;
        if counted && closed.is_empty() {
            return Ok(());
        }
        let reason = if let Some(reason) =
            tiles::expired_reason(plan, t, now).filter(|_| closed.is_empty())
        {
            reason
        } else if closed.is_empty() {
            format!(
                "event time {} is at or before stream time {} minus the {} ms window",
                format_time(t),
                format_time(now),
                plan.max_sliding().unwrap_or(0)
            )
        } else {
            format!(
                "event time {} is late at watermark {}: {}",
                format_time(t),
                format_time(wm),
                closed.join("; ")
            )
        };
        Err(Late {
            reason,
            applied: counted,
        })
    }

    /// Re-applies an event during a rebuild (see [`Partition::replay_batch`]).
    pub fn replay(&mut self, plan: &Plan, offset: i64, entity: &str, t: i64, cells: &[u64]) {
        let event = Arrival {
            offset,
            entity,
            t,
            cells,
        };
        self.replay_batch(plan, &[event]);
    }

    /// Re-applies `events` in order during a rebuild (after
    /// [`Partition::restored`]): the same decisions as when they were first
    /// read, with the recorded idle advances redone at their offsets; nothing
    /// emitted. The events between two idle advances go through
    /// [`Partition::apply_batch`] as one run.
    pub fn replay_batch(&mut self, plan: &Plan, events: &[Arrival<'_>]) {
        let mut rest = events;
        while let Some(first) = rest.first() {
            self.redo_jumps(plan, Some(first.offset));
            // Idle advances still to redo were taken after `first`: the run
            // stops before the first event they must precede.
            let next_jump = self
                .rebuild
                .as_ref()
                .and_then(|r| r.jumps.first())
                .map(|(at, _)| *at);
            let len = next_jump.map_or(rest.len(), |at| {
                rest.iter().take_while(|e| e.offset < at).count().max(1)
            });
            let (run, after) = rest.split_at(len);
            // While a rebuild has no stream time its events are skipped; the
            // gate is checked once for the run, since only an applied event or
            // an idle advance could set stream time.
            if self.stream_time.is_some() || self.rebuild.is_none() {
                self.apply_batch(plan, run, |_, _| {});
            }
            rest = after;
        }
    }

    /// Ends a rebuild: redoes the remaining idle advances and moves stream
    /// time to the checkpoint's; nothing is marked for emission.
    pub fn finish_replay(&mut self, plan: &Plan) {
        self.redo_jumps(plan, None);
        if let Some(target) = self.rebuild.take().and_then(|r| r.target) {
            self.advance_to(plan, target);
        }
        for id in std::mem::take(&mut self.dirty) {
            self.unmark(id);
        }
    }

    /// Redoes the recorded idle advances taken before `offset` (all with `None`).
    fn redo_jumps(&mut self, plan: &Plan, offset: Option<i64>) {
        let Some(rebuild) = self.rebuild.as_mut() else {
            return;
        };
        let due = rebuild
            .jumps
            .iter()
            .take_while(|(at, _)| offset.is_none_or(|o| *at <= o))
            .count();
        let jumps: Vec<(i64, i64)> = rebuild.jumps.drain(..due).collect();
        for (at, to) in jumps {
            self.next_offset = self.next_offset.max(at);
            self.advance_to(plan, to);
        }
    }

    fn allocate(&mut self, plan: &Plan, entity: &str, hash: u64) -> u32 {
        let slot = Slot {
            key: Key::new(entity),
            window: EntityWindow::new(plan),
            indexed: NOT_INDEXED,
            last_offset: -1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id] = Some(slot);
                id
            }
            None => self.slots.push(Some(slot)),
        };
        self.ids.insert(hash, id);
        id
    }

    /// The slot id of `entity` (whose key hashes to `hash`), if it has state.
    fn find(&self, hash: u64, entity: &str) -> Option<u32> {
        self.ids.find(hash, |id| {
            self.slots[id]
                .as_ref()
                .is_some_and(|s| s.key.as_bytes() == entity.as_bytes())
        })
    }

    fn reindex(&mut self, plan: &Plan, id: u32) {
        let now = self
            .stream_time
            .expect("an entity exists only after an event");
        let wm = Self::watermark(plan, now);
        let slot = self.slots[id].as_mut().expect("live id");
        let next = slot.window.next_change(plan, now, wm);
        if slot.indexed() != next {
            if slot.indexed().is_some() {
                self.expiries.forget();
            }
            if let Some(new) = next {
                self.expiries.push(new, id);
            }
            slot.indexed = next.unwrap_or(NOT_INDEXED);
            if self.expiries.needs_sweep() {
                let slots = &self.slots;
                self.expiries.sweep(|at, id| indexed_at(slots, at, id));
            }
        }
    }

    /// Marks `entity` for emission at the next flush; false if it has no state.
    pub fn touch(&mut self, entity: &str) -> bool {
        match self.find(hash_key(entity), entity) {
            Some(id) => {
                self.mark_dirty(id);
                true
            }
            None => false,
        }
    }

    fn mark_dirty(&mut self, id: u32) {
        let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
        if self.marked.len() <= word {
            self.marked.resize(word + 1, 0);
        }
        if self.marked[word] & bit == 0 {
            self.marked[word] |= bit;
            self.dirty.push(id);
        }
    }

    fn unmark(&mut self, id: u32) {
        self.marked[id as usize / 64] &= !(1u64 << (id % 64));
    }

    /// Moves stream time forward to `to` without an event (idle partition):
    /// what leaves or fires marks its entities for emission, and the advance
    /// is remembered for the checkpoint. Returns false (and does nothing)
    /// unless `to` is ahead of stream time.
    pub fn advance_to(&mut self, plan: &Plan, to: i64) -> bool {
        if self.stream_time.is_none_or(|now| to <= now) {
            return false;
        }
        match self.jumps.last_mut() {
            Some((at, t)) if *at == self.next_offset => *t = to,
            _ => {
                self.prune_jumps();
                self.jumps.push((self.next_offset, to));
            }
        }
        if self.jumps.len() > MAX_JUMPS {
            tracing::warn!(
                kept = MAX_JUMPS,
                "more idle advances than a checkpoint keeps since the oldest held event; \
                 a rebuild may judge events between the oldest ones against an earlier watermark"
            );
            self.jumps.remove(0);
        }
        self.advance(plan, to);
        true
    }

    /// Moves stream time forward to `now`, updating every entity whose next
    /// change is due.
    fn advance(&mut self, plan: &Plan, now: i64) {
        self.stream_time = Some(now);
        let wm = Self::watermark(plan, now);
        // Entities are advanced in expiry order, mostly a few per event: the
        // next ones in the index are due within a few events. Start loading
        // them, in stages by their place in the index: the slot at
        // PREFETCH_AHEAD, the state it points to at half, the lists at a
        // quarter. The last advance moved every entry `shift` places closer:
        // each stage takes the entries that reached or passed its place since.
        let shift = self.popped.clamp(1, PREFETCH_AHEAD / 4);
        let stage = |k: usize, at: usize| k <= at && k + shift > at;
        for (k, id) in self.expiries.soon().take(PREFETCH_AHEAD + 1).enumerate() {
            let Some(slot) = self.slots.get(id) else {
                continue;
            };
            if stage(k, PREFETCH_AHEAD) {
                prefetch(Some(slot));
            } else if let Some(slot) = slot.as_ref() {
                if stage(k, PREFETCH_AHEAD / 2) {
                    slot.window.prefetch();
                } else if stage(k, PREFETCH_AHEAD / 4) {
                    slot.window.prefetch_lists();
                }
            }
        }
        let mut popped = 0;
        let mut emptied = false;
        let mut untiled = Vec::new();
        loop {
            let slots = &self.slots;
            let Some((_, id)) = self
                .expiries
                .pop_due(now, |at, id| indexed_at(slots, at, id))
            else {
                break;
            };
            popped += 1;
            let slot = self.slots[id].as_mut().expect("indexed ids are live");
            slot.indexed = NOT_INDEXED;
            // Dropped events come oldest first: release them bucket by bucket.
            let (buckets, bucket_ms) = (&mut self.buckets, self.bucket_ms);
            let mut run: Option<(i64, u32)> = None;
            let mut release = |bucket: i64, n: u32| {
                let b = buckets.get_mut(&bucket).expect("a held event's bucket");
                b.held -= n;
                if b.held == 0 {
                    buckets.remove(&bucket);
                    emptied = true;
                }
            };
            let mut dropped = 0;
            slot.window.advance(plan, now, wm, &mut |t| {
                dropped += 1;
                let bucket = t.div_euclid(bucket_ms);
                match &mut run {
                    Some((b, n)) if *b == bucket => *n += 1,
                    _ => {
                        if let Some((b, n)) = run.replace((bucket, 1)) {
                            release(b, n);
                        }
                    }
                }
            });
            if let Some((b, n)) = run {
                release(b, n);
            }
            self.held -= dropped;
            slot.window
                .tiles
                .advance(plan, now, wm, &mut |anchor| untiled.push(anchor));
            self.reindex(plan, id);
            self.mark_dirty(id);
        }
        self.popped = popped;
        for anchor in untiled {
            emptied |= self.release(anchor);
        }
        if emptied {
            self.prune_jumps();
        }
    }

    /// Forgets a tile (or partial) anchored at `anchor`, dropped or merged
    /// into another; true when no live tile is anchored there any more.
    fn release(&mut self, anchor: i64) -> bool {
        self.tiles -= 1;
        let Some((_, refs)) = self.anchors.get_mut(&anchor) else {
            return false;
        };
        *refs -= 1;
        if *refs == 0 {
            self.anchors.remove(&anchor);
            return true;
        }
        false
    }

    /// The earliest offset a replay must start from (with the stream time
    /// before it), if the partition holds events.
    fn oldest_held(&self) -> Option<(i64, i64)> {
        self.buckets
            .values()
            .map(|b| (b.first, b.before))
            .min_by_key(|(first, _)| *first)
    }

    /// Forgets the idle advances taken before every held event and live tile.
    fn prune_jumps(&mut self) {
        if self.jumps.is_empty() {
            return;
        }
        let oldest = self.oldest_anchor().map_or(self.next_offset, |(o, _)| o);
        self.jumps.retain(|(at, _)| *at > oldest);
    }

    /// Takes every entity changed since the last call: their aggregation rows,
    /// and tombstones for entities that show nothing (their state is dropped
    /// once they hold nothing either).
    pub fn drain(&mut self, plan: &Plan) -> Emission {
        let Some(now) = self.stream_time else {
            return Emission::default();
        };
        let wm = Self::watermark(plan, now);
        let dirty = std::mem::take(&mut self.dirty);
        let mut out = Emission {
            rows: Vec::with_capacity(dirty.len()),
            tombstones: Vec::new(),
        };
        for (k, &id) in dirty.iter().enumerate() {
            if let Some(&ahead) = dirty.get(k + PREFETCH_AHEAD) {
                prefetch(self.slots.get(ahead));
            }
            if let Some(Some(near)) = dirty
                .get(k + PREFETCH_AHEAD / 2)
                .and_then(|&near| self.slots.get(near))
            {
                near.window.prefetch();
            }
            self.unmark(id);
            let slot = self.slots[id].as_mut().expect("dirty ids are live");
            if !slot.window.shows_nothing(plan, now, wm) {
                let cells = (0..plan.aggs.len())
                    .map(|a| slot.window.aggregate(plan, a, now, wm))
                    .collect();
                out.rows.push(Row {
                    key: slot.key.as_str().into(),
                    cells,
                    offset: slot.last_offset,
                });
                continue;
            }
            out.tombstones.push(slot.key.as_str().into());
            if slot.window.is_empty() {
                let slot = self.slots[id].take().expect("live");
                if slot.indexed().is_some() {
                    self.expiries.forget();
                }
                self.ids.remove(hash_key(slot.key.as_str()), id);
                self.free.push(id);
            }
        }
        out
    }

    /// Every entity's shown aggregation cells, by key (inspection and tests);
    /// entities that show nothing are left out.
    pub fn snapshot(&self, plan: &Plan) -> BTreeMap<String, Vec<AggCell>> {
        let Some(now) = self.stream_time else {
            return BTreeMap::new();
        };
        let wm = Self::watermark(plan, now);
        self.slots
            .iter()
            .flatten()
            .filter(|s| !s.window.shows_nothing(plan, now, wm))
            .map(|s| {
                let cells = (0..plan.aggs.len())
                    .map(|a| s.window.aggregate(plan, a, now, wm))
                    .collect();
                (s.key.as_str().to_owned(), cells)
            })
            .collect()
    }

    /// The checkpoint to store with committed offset `next_offset`.
    pub fn checkpoint(&self, next_offset: i64) -> Checkpoint {
        let (rebuild_from, rebuild_time) = match self.oldest_anchor() {
            Some((offset, time)) if offset < next_offset => (offset, Some(time)),
            _ => (next_offset, self.stream_time),
        };
        Checkpoint {
            stream_time: self.stream_time,
            rebuild_from,
            rebuild_time,
            jumps: self
                .jumps
                .iter()
                .copied()
                .filter(|(at, _)| *at > rebuild_from)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
